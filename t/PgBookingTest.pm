# PgBookingTest — shared by the root TAP tests: a started node with the
# extension, and for the concurrency tests a pgbench runner and a summary of
# the outcomes table their hammer functions fill in.
package PgBookingTest;

use strict;
use warnings;
use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(booking_node write_pgbench_script run_pgbench outcomes_summary citus_missing citus_cluster
  citus_start_checkout citus_workers_idle_ok);

# A started node with pg_booking preloaded and created in "postgres";
# $extra_conf is appended to postgresql.conf.
sub booking_node
{
	my ($name, $extra_conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_booking'
pg_booking.jwt_secret = 'tap-secret-0123456789abcdef0123456789abcdef'
} . ($extra_conf // ''));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION pg_booking CASCADE');
	return $node;
}

# Why the Citus tests cannot run here (undef when they can): the
# installation has no citus extension (scripts/citus.sh installs one for make
# test from CITUS_TARBALL).
sub citus_missing
{
	my $sharedir = `pg_config --sharedir`;
	chomp $sharedir;
	return undef if -f "$sharedir/extension/citus.control";
	return "Citus is not installed in this PostgreSQL ($sharedir/extension/citus.control missing): "
	  . 'the Citus tests are SKIPPED (make test builds it when CITUS_TARBALL names the Citus 13.2.2 tarball, see scripts/citus.sh)';
}

# A Citus cluster: a coordinator (in the metadata, so reference tables get a
# copy there) and two workers, citus before pg_booking (Citus insists on
# being first), both extensions created on every node.  Returns
# ($coordinator, @workers).
sub citus_cluster
{
	my ($prefix) = @_;
	my @nodes;
	for my $name ('coordinator', 'worker1', 'worker2')
	{
		my $node = PostgreSQL::Test::Cluster->new(($prefix // '') . $name);
		$node->init;
		$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'citus,pg_booking'
pg_booking.jwt_secret = 'tap-secret-0123456789abcdef0123456789abcdef'
max_connections = 80
max_prepared_transactions = 40
citus.shard_count = 8
});
		$node->start;
		$node->safe_psql('postgres', 'CREATE EXTENSION citus');
		$node->safe_psql('postgres', 'CREATE EXTENSION pg_booking CASCADE');
		push @nodes, $node;
	}
	my ($coord, @workers) = @nodes;
	$coord->safe_psql('postgres', sprintf("SELECT citus_set_coordinator_host('%s', %d)", $coord->host, $coord->port));
	$coord->safe_psql('postgres', sprintf("SELECT citus_add_node('%s', %d)", $_->host, $_->port)) for @workers;
	return ($coord, @workers);
}

# Start the checkout worker of every node given (pg_booking.checkout_database
# names "postgres"); returns each node's log size before, in the same order,
# for reading what the workers logged since.
sub citus_start_checkout
{
	my @nodes = @_;
	my @offsets = map { -s $_->logfile } @nodes;
	for my $n (@nodes)
	{
		$n->safe_psql('postgres', "ALTER SYSTEM SET pg_booking.checkout_database = 'postgres'");
		$n->reload;
	}
	return @offsets;
}

# The checkout worker of each Citus worker node stays idle and says why
# (waiting at most a minute per node for the line after its log offset).
sub citus_workers_idle_ok
{
	my ($workers, $offsets) = @_;
	for my $i (0 .. $#$workers)
	{
		my $w = $workers->[$i];
		my $deadline = time() + 60;
		sleep 1 while time() < $deadline && slurp_file($w->logfile, $offsets->[$i]) !~ /this node is a Citus worker node, idle/;
		like(slurp_file($w->logfile, $offsets->[$i]), qr/this node is a Citus worker node, idle/,
			'the checkout worker of the worker node at port ' . $w->port . ' stays idle and says why');
	}
}

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
