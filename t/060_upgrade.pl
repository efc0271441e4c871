# Versioned upgrades (issue 8): 1.0 installed and loaded with data through
# its own functions (running on today's C library), then ALTER EXTENSION
# pg_booking UPDATE, equals a fresh install of the current version: the same
# objects with the same definitions, grants and comments.  The data
# survives, the upgraded database works, and an adapter started before the
# upgrade serves the new functions without a restart.
#
# Written without a list of objects: whatever the upgrade scripts add is
# compared, so this keeps holding as they grow.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use Time::HiRes qw(time sleep);
use PgBookingData;

my $root = $ENV{TESTDIR} or die 'TESTDIR is not set';

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'pg_booking'
pg_booking.jwt_secret = 'tap-secret-0123456789abcdef0123456789abcdef'
timezone = 'UTC'
});
$node->start;

my $current = $node->safe_psql('postgres',
	q{SELECT default_version FROM pg_available_extensions WHERE name = 'pg_booking'});
my $versions = $node->safe_psql('postgres',
	q{SELECT string_agg(version, ',' ORDER BY version) FROM pg_available_extension_versions WHERE name = 'pg_booking'});
note "installed versions: $versions; default $current";
like($versions, qr/(^|,)1\.0(,|$)/, 'version 1.0 is installable');
isnt($current, '1.0', "the default version ($current) is newer than 1.0");

$node->safe_psql('postgres', 'CREATE DATABASE old');
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('old', q{CREATE EXTENSION pg_booking VERSION '1.0' CASCADE});
$node->safe_psql('fresh', q{CREATE EXTENSION pg_booking CASCADE});
is($node->safe_psql('old', q{SELECT extversion FROM pg_extension WHERE extname = 'pg_booking'}), '1.0',
	'database "old" runs 1.0');
# CREATE FUNCTION ... LANGUAGE C looks its symbol up in the library, so 1.0
# installing at all shows today's library still has every symbol 1.0 names.
my $c_functions = $node->safe_psql('old', q{SELECT count(*) FROM pg_proc
  WHERE prolang = (SELECT oid FROM pg_language WHERE lanname = 'c') AND probin LIKE '%pg_booking%'});
cmp_ok($c_functions, '>', 5, "the $c_functions C functions of 1.0 resolve in the new library");

# The api functions only the new version has (the adapter test below).
my $api_names = q{SELECT string_agg(proname, ',' ORDER BY proname) FROM
  (SELECT DISTINCT proname FROM pg_proc WHERE pronamespace = 'api'::regnamespace AND prokind = 'f') p};
my %old_api = map { $_ => 1 } split /,/, $node->safe_psql('old', $api_names);
my @new_api = grep { !$old_api{$_} } split /,/, $node->safe_psql('fresh', $api_names);
note 'api functions new in ' . $current . ': ' . (@new_api ? "@new_api" : 'none');

# An adapter serving the 1.0 database, started before the upgrade.
my $adapter_bin = "$root/adapter/pg_booking_adapter";
system('make', '-C', "$root/adapter", '-s', 'pg_booking_adapter') == 0 or die 'building the adapter failed';
$ENV{ADAPTER_BIN} = $adapter_bin;
unshift @INC, "$root/adapter/t";
require AdapterTest;
AdapterTest->import(qw(start_adapter stop_adapter http mint_jwt));
my $adapter = start_adapter($node, env => { ADAPTER_DB => 'host=' . $node->host . ' port=' . $node->port
	  . ' dbname=old user=booking_authenticator connect_timeout=2' });
# Not served: no such function, or (the adapter reads its routes and
# signatures from booking.http_functions, which 1.0 does not have) the
# catalog cannot be read yet, 503 DATABASE_UNAVAILABLE, which soon opens
# the breaker (503 CIRCUIT_OPEN).
sub not_served
{
	my ($r) = @_;
	return ($r->{status} == 404 && ($r->{json}{message} // '') eq 'no such function')
	  || ($r->{status} == 503 && ($r->{json}{error_code} // '') =~ /^(DATABASE_UNAVAILABLE|CIRCUIT_OPEN)$/);
}

# Data, through the 1.0 functions, on the new C library.
load_realistic_data($node, 'old');
sub invariants
{
	my $overlaps = occupying_overlaps_sql($node, 'old');
	return $node->safe_psql('old', qq{SELECT (SELECT count(*) FROM booking.inventory_violations()) || ' '
	  || (SELECT count(*) FROM booking.analytics_check()) || ' ' || ($overlaps)});
}
is(invariants(), '0 0 0', '1.0 with data: inventory_violations(), analytics_check(), overlapping bookings: none');
my $columns = table_columns($node, 'old');
my $before = table_rows($node, 'old', $columns);
my $before_seq = table_fingerprints($node, 'old', {});    # sequences only
my $rows = 0;
$rows += @{ $before->{$_} } for keys %$before;
note "rows loaded into 1.0: $rows";

my $admin = $node->safe_psql('old', q{SELECT id FROM booking.users WHERE email = 'ada@example.org'});
my $token = mint_jwt({ sub => "$admin", role => 'booking_admin', iat => int(time()), exp => int(time()) + 600 });
for my $f (@new_api)
{
	ok(not_served(http($adapter, 'POST', "/rpc/$f", {}, $token)), "before the upgrade the adapter has no $f");
}

# The upgrade.
my ($ret, $out, $err) = $node->psql('old', 'ALTER EXTENSION pg_booking UPDATE');
is($ret, 0, 'ALTER EXTENSION pg_booking UPDATE succeeds') or diag $err;
is($node->safe_psql('old', q{SELECT extversion FROM pg_extension WHERE extname = 'pg_booking'}), $current,
	"database \"old\" now runs $current");

# 1.0 + upgrade is the same schema as a fresh install.
my @upgraded = split /\n/, extension_catalog($node, 'old');
my @fresh = split /\n/, extension_catalog($node, 'fresh');
my %in_fresh = map { $_ => 1 } @fresh;
my %in_upgraded = map { $_ => 1 } @upgraded;
my @only_upgraded = grep { !$in_fresh{$_} } @upgraded;
my @only_fresh = grep { !$in_upgraded{$_} } @fresh;
ok(@upgraded > 500, 'the catalog comparison covers the extension (' . scalar(@upgraded) . ' lines)');
ok(!@only_upgraded && !@only_fresh, 'upgraded and fresh install are identical')
  or diag join("\n", (map { "only after the upgrade: $_" } @only_upgraded),
	(map { "only in the fresh install: $_" } @only_fresh));
for my $kind (qw(member function column constraint index trigger policy config))
{
	my $n = grep { /^\Q$kind\E / } @upgraded;
	ok($n > 0, "compared $n ${kind}s");
}

# Negative control: the comparison sees a changed function body, a grant, a
# trigger's firing mode, a column default and a comment.
$node->safe_psql('postgres', 'CREATE DATABASE tampered');
$node->safe_psql('tampered', q{CREATE EXTENSION pg_booking CASCADE;
  CREATE OR REPLACE FUNCTION booking.hotel_today() RETURNS date LANGUAGE sql STABLE AS $$ SELECT current_date $$;
  GRANT SELECT ON booking.events TO booking_user;
  ALTER TABLE booking.bookings DISABLE TRIGGER bookings_conflict_check;
  ALTER TABLE booking.rooms ALTER COLUMN capacity SET DEFAULT 1;
  COMMENT ON TABLE booking.hotels IS 'changed'});
my %tampered = map { $_ => 1 } split /\n/, extension_catalog($node, 'tampered');
my @noticed = sort grep { !$in_fresh{$_} } keys %tampered;
note "negative control, lines only in the tampered database:\n  " . join("\n  ", map { substr($_, 0, 120) } @noticed);
for my $change ([ function => qr/^function booking\.hotel_today\(\)/ ],
	[ grant => qr/^relation booking\.events .*booking_user=r/ ],
	[ trigger => qr/^trigger .*bookings_conflict_check.* enabled=D/ ],
	[ default => qr/^column booking\.rooms #\d+ capacity .*default=1/ ],
	[ comment => qr/^member table booking\.hotels comment='changed'/ ])
{
	ok((grep { $_ =~ $change->[1] } @noticed), "negative control: a changed $change->[0] is noticed");
}

# The data survived: every row of every table, on the columns 1.0 had (an
# upgrade may add rows, such as new default rules, but loses or changes none).
my $after = table_rows($node, 'old', $columns);
my $kept = 0;
for my $t (sort keys %$before)
{
	my %left;
	$left{$_}++ for @{ $after->{$t} };
	my @lost = grep { !($left{$_}-- > 0) } @{ $before->{$t} };
	$kept += @{ $before->{$t} } - @lost;
	is(scalar(@lost), 0, "$t: all " . scalar(@{ $before->{$t} }) . ' rows unchanged by the upgrade'
		. (@{ $after->{$t} } > @{ $before->{$t} } ? ' (' . (@{ $after->{$t} } - @{ $before->{$t} }) . ' added)' : ''))
	  or diag "lost or changed: @lost[0 .. ($#lost < 4 ? $#lost : 4)]";
}
note "rows kept by the upgrade: $kept of $rows";
my $after_seq = table_fingerprints($node, 'old', {});
for my $s (sort keys %$before_seq)
{
	my ($was) = split / /, $before_seq->{$s};
	my ($is) = split / /, $after_seq->{$s} // '0';
	cmp_ok($is, '>=', $was, "$s: not moved back by the upgrade");
}
is(invariants(), '0 0 0', 'upgraded: the invariants hold');
is($node->safe_psql('old', q{SELECT string_agg(endpoint, ',' ORDER BY endpoint) FROM booking.rate_limits WHERE NOT seeded}),
	'create_booking,login,register,search_availability',
	'upgraded: the rules edited or added under 1.0 are not taken for seeds, the others are');
is($node->safe_psql('old', q{SELECT string_agg(endpoint, ',' ORDER BY endpoint) FROM booking.rate_limits_deleted}),
	'create_reservation', 'upgraded: the default deleted under 1.0 is remembered as deleted');

# The upgraded database works.
my $uma = act_sql('uma@example.org');
is($node->safe_psql('old', qq{SET timezone = UTC; $uma
  SELECT (api.create_booking((SELECT id FROM booking.rooms WHERE name = 'Aquarium'),
          to_char(current_date + 1, 'YYYY-MM-DD') || 'T15:00:00Z', to_char(current_date + 1, 'YYYY-MM-DD') || 'T16:00:00Z',
          'After the upgrade')) ->> 'status'}), 'confirmed', 'upgraded: a new booking works');
is($node->safe_psql('old', qq{$uma
  SELECT (api.create_reservation((SELECT id FROM booking.hotels WHERE name = 'Seaside'), 'double', 'New guest',
          to_char(current_date + 20, 'YYYY-MM-DD'), 2)) ->> 'status'}), 'confirmed', 'upgraded: a new reservation works');
is(invariants(), '0 0 0', 'upgraded, after new work: the invariants hold');

# The running adapter serves the new functions without a restart (it reads
# the catalog again every 10 s and after a 42883).
if (!@new_api)
{
	# Nothing new in the api yet: a function created now stands in for one,
	# to show a function that appears while the adapter runs is served.
	note 'no api function is new in this version; checking with a stand-in';
	$node->safe_psql('old', q{CREATE FUNCTION api.lifecycle_probe() RETURNS jsonb LANGUAGE sql
	  AS $$ SELECT '{"probe": true}'::jsonb $$});
	@new_api = ('lifecycle_probe');
}
for my $f (@new_api)
{
	my $deadline = time() + 40;
	my $r;
	do { $r = http($adapter, 'POST', "/rpc/$f", {}, $token); sleep 0.5 if not_served($r); }
	  while (not_served($r) && time() < $deadline);
	ok(!not_served($r), "the running adapter serves $f after the upgrade (answered $r->{status})")
	  or diag $r->{content};
}
is(stop_adapter($adapter), 0, 'the adapter stops cleanly');

unlike(slurp_file($node->logfile), qr/terminated by signal|server process .* was terminated/,
	'no backend crashed');

done_testing();
