# PgBookingHammer — shared by the concurrency TAP tests: run a pgbench
# script of many clients against a node, and summarise the outcomes table
# the tests' hammer functions fill in.
package PgBookingHammer;

use strict;
use warnings;
use Exporter 'import';
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(write_pgbench_script run_pgbench outcomes_summary);

# Write a pgbench script into the test's tmp_check; returns its path.
sub write_pgbench_script
{
	my ($name, $text) = @_;
	my $path = "${PostgreSQL::Test::Utils::tmp_check}/$name.sql";
	open(my $fh, '>', $path) or die "$path: $!";
	print $fh $text;
	close $fh;
	return $path;
}

# pgbench -c $clients -T $seconds -f $script; one ok() for the run.
# Returns (stdout, stderr).
sub run_pgbench
{
	my ($node, $script, $clients, $seconds) = @_;
	my ($out, $err);
	my $ok = IPC::Run::run(
		[ 'pgbench', '-n', '-c', $clients, '-j', 2, '-T', $seconds, '-f', $script,
		  '-h', $node->host, '-p', $node->port, 'postgres' ],
		'>', \$out, '2>', \$err);
	note $out;
	ok($ok, "pgbench ran $clients clients for $seconds s") or diag $err;
	return ($out, $err);
}

# "op result count, ..." over the outcomes table.
sub outcomes_summary
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT string_agg(op || ' ' || result || ' ' || n, ', ' ORDER BY op, result)
		   FROM (SELECT op, result, count(*) n FROM outcomes GROUP BY 1, 2) x");
}

1;
