# The limiter is shared by every session: 64 concurrent connections on one
# key get exactly N admissions; logins from one IP spread over several
# sessions (some rolled back) hit the limit together while another IP still
# signs in.  Pools are per rule: a flood of new keys on one rule evicts (and
# counts) only its own keys.  Without preloading, a clear error, no crash.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('rl_shared');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_booking'
pg_booking.jwt_secret = 'tap-secret-0123456789abcdef0123456789abcdef'
pg_booking.rate_limit_pool_size = 64kB
max_connections = 80
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION pg_booking CASCADE');

# --- 64 connections, one key ---------------------------------------------
# burst(): one request from 10.9.9.9 through the same path the api uses;
# the outcome goes to a table (a 429 would otherwise stop pgbench's client).
$node->safe_psql('postgres', q{
INSERT INTO booking.rate_limits VALUES ('burst', 100, '1 hour', 'ip');
CREATE UNLOGGED TABLE outcomes (result text);
CREATE FUNCTION burst() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('request.client_ip', '10.9.9.9', true);
    PERFORM booking.rate_limit_hit('burst');
    INSERT INTO outcomes VALUES ('admitted');
EXCEPTION WHEN SQLSTATE 'PT429' THEN
    INSERT INTO outcomes VALUES ('denied');
END
$$;
});
my $script = "${PostgreSQL::Test::Utils::tmp_check}/burst.sql";
open(my $fh, '>', $script) or die;
print $fh "SELECT burst();\n";
close $fh;
my ($out, $err);
my $ok = IPC::Run::run(
	[ 'pgbench', '-n', '-c', 64, '-j', 2, '-t', 10, '-f', $script,
	  '-h', $node->host, '-p', $node->port, 'postgres' ],
	'>', \$out, '2>', \$err);
ok($ok, 'pgbench: 64 connections, 10 requests each') or diag $err;
like($out, qr/number of clients: 64/, 'really 64 clients');
is($node->safe_psql('postgres', "SELECT string_agg(result || ' ' || n, ', ' ORDER BY result)
                                    FROM (SELECT result, count(*) n FROM outcomes GROUP BY 1) x"),
	'admitted 100, denied 540', 'exactly 100 of 640 concurrent requests admitted');
is($node->safe_psql('postgres', "SELECT admitted || ' ' || denied FROM booking.rate_limit_stats() WHERE endpoint = 'burst'"),
	'100 540', 'the shared counters agree');

# --- logins from one IP over several sessions ------------------------------
$node->safe_psql('postgres', q{
SELECT set_config('request.client_ip', '10.0.0.1', false);
SELECT api.register('tap@example.com', 'tap-password', 'Tap User');
});
sub login
{
	my ($ip, $prefix, $suffix) = @_;
	my ($ret, $stdout, $stderr) = $node->psql('postgres',
		"SET request.client_ip = '$ip'; $prefix SELECT api.login('tap\@example.com', 'tap-password') ? 'access_token'; $suffix");
	return $stderr =~ /RATE_LIMIT_EXCEEDED/ ? 'denied' : $stdout =~ /^t$/m ? 'ok' : "error: $stderr";
}
my @seen;
push @seen, login('203.0.113.50', '', '') for 1 .. 2;               # two sessions
push @seen, login('203.0.113.50', 'BEGIN;', 'ROLLBACK;') for 1 .. 3;    # three rolled back
is(join(' ', @seen), 'ok ok ok ok ok', 'five logins from one IP in five sessions');
is(login('203.0.113.50', '', ''), 'denied', 'the 6th in 10 s, in yet another session, gets 429');
is(login('203.0.113.51', '', ''), 'ok', 'another IP still signs in');

# --- pools per rule; lossless and forced eviction ------------------------
$node->safe_psql('postgres', q{
INSERT INTO booking.rate_limits VALUES ('victim', 1, '1 hour', 'user'), ('flood', 1, '1 hour', 'ip');
SELECT booking.rate_limit_check('victim', 'v', 1, 3600000);
});
my ($capacity) = $node->safe_psql('postgres', "SELECT capacity FROM booking.rate_limit_stats() WHERE endpoint = 'victim'");
note "keys per pool at 64kB and N = 1: $capacity";
# Short windows on a test clock: one new key per ms, 50 ms windows, so the
# partitions fill with expired keys only; every eviction is lossless.
is($node->safe_psql('postgres', q{
SELECT count(*) FILTER (WHERE c.allowed)
  FROM generate_series(1, 20000) g, LATERAL booking.rate_limit_check('short', 'k' || g, 1, 50, g) c}),
	'20000', 'short windows: 20000 new keys admitted');
is($node->safe_psql('postgres', "SELECT evicted_expired > 0 AND evicted_forced = 0 FROM booking.rate_limit_stats() WHERE endpoint = 'short'"),
	't', 'a full partition reuses expired entries first (lossless, none forced)');
# A flood of live keys on one rule: forced evictions, counted, no error.
is($node->safe_psql('postgres', q{
SELECT count(*) FILTER (WHERE c.allowed)
  FROM generate_series(1, 20000) g, LATERAL booking.rate_limit_check('flood', 'k' || g, 1, 3600000) c}),
	'20000', 'a flood of 20000 new keys is served without error');
my ($keys, $forced) = split /\|/, $node->safe_psql('postgres',
	"SELECT keys, evicted_forced FROM booking.rate_limit_stats() WHERE endpoint = 'flood'");
cmp_ok($forced, '>', 0, "forced evictions are metered ($forced)");
cmp_ok($keys, '<=', $capacity, "the pool stays bounded ($keys keys)");
is($node->safe_psql('postgres', "SELECT allowed FROM booking.rate_limit_check('victim', 'v', 1, 3600000)"),
	'f', 'the flood did not evict another rule\'s key');
is($node->safe_psql('postgres', "SELECT evicted_forced FROM booking.rate_limit_stats() WHERE endpoint = 'victim'"),
	'0', 'the other rule lost nothing');
$node->stop;

# --- not preloaded ----------------------------------------------------------
my $bare = PostgreSQL::Test::Cluster->new('rl_bare');
$bare->init;
$bare->append_conf('postgresql.conf', "pg_booking.jwt_secret = 'tap-secret-0123456789abcdef0123456789abcdef'\n");
$bare->start;
$bare->safe_psql('postgres', 'CREATE EXTENSION pg_booking CASCADE');
my ($ret, $stdout, $stderr) = $bare->psql('postgres',
	"SET request.client_ip = '10.0.0.2'; SELECT api.login('nobody\@example.com', 'whatever-password')");
like($stderr, qr/pg_booking rate limits are not available.*HINT:  Add pg_booking to shared_preload_libraries/s,
	'without preloading, a limited endpoint fails with a clear error');
($ret, $stdout, $stderr) = $bare->psql('postgres',
	"SET request.client_ip = '10.0.0.2'; SET pg_booking.rate_limit_enabled = off; SELECT api.login('nobody\@example.com', 'whatever-password')");
like($stderr, qr/UNAUTHORIZED/, 'with the limits turned off it works (the login itself answers)');
is($bare->safe_psql('postgres', 'SELECT 1'), '1', 'the server is still up');
$bare->stop;

done_testing();
