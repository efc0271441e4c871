# The read replica (ADAPTER_READ_DSN): a primary, a streaming standby, and
# one adapter with both DSNs.
#
#   - GETs are answered by the standby, writes by the primary: proved with
#     replay paused on the standby (a GET right after a POST does not see it,
#     until replay resumes) and by each node's pg_stat_activity (each pool
#     names itself with application_name).
#   - X-Read-From: primary reads one's own writes at once.
#   - A GET of a VOLATILE function (the rate-limit counters, which live in
#     each server's shared memory) goes to the primary.
#   - The standby down: GETs fall back to the primary, the replica's breaker
#     opens, the primary's stays closed, /ready stays 200 and says so, as
#     /metrics does; the standby back: GETs return to it.
#   - The primary down: the replica still serves GETs; writes are 503 and
#     open the primary's breaker only; /ready is 503 and reports the replica.
#   - Without a read DSN every call goes to the primary.
#   - A write that reaches a read-only server (an adapter whose primary DSN
#     names the standby) is 503 DATABASE_READ_ONLY with Retry-After, never a
#     500, writes nothing, and does not open the breaker.
use strict;
use warnings;
use lib 't';
use AdapterTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $bin = $ENV{ADAPTER_BIN} or die 'ADAPTER_BIN is not set';
my ($help, $herr);
IPC::Run::run([ $bin, '--help' ], '>', \$help, '2>', \$herr);
like($help, qr/--read-dsn\s+ADAPTER_READ_DSN\s+\S/, '--help lists --read-dsn / ADAPTER_READ_DSN');

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_booking'
pg_booking.jwt_secret = '$SECRET'
timezone = 'UTC'
max_connections = 60
});
$primary->start;
$primary->safe_psql('postgres', q{
CREATE EXTENSION pg_booking CASCADE;
UPDATE booking.rate_limits SET max_requests = 1000;
INSERT INTO booking.rooms (name, location, capacity) VALUES ('Alpha', 'HQ', 4);
});
my $admin_id = make_user($primary, 'admin@example.com', 'admin');
$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby, 'replay');

sub dsn
{
	my ($node, $name) = @_;
	return 'host=' . $node->host . ' port=' . $node->port
	  . " dbname=postgres user=booking_authenticator connect_timeout=2 application_name=$name";
}
my %breaker = (ADAPTER_BREAKER_FAILURES => 2, ADAPTER_BREAKER_OPEN_MS => 500);
my @answers;
my $deadline;
my $ad = start_adapter($primary, env => { ADAPTER_DB => dsn($primary, 'rw_primary'),
	ADAPTER_READ_DSN => dsn($standby, 'rw_replica'), %breaker });
my $token = token_for($ad, 'admin@example.com', 'admin');
$primary->wait_for_catchup($standby, 'replay');

sub conns
{
	my ($node, $app) = @_;
	return $node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE application_name = '$app'");
}

# --- both paths ---
my $r = http($ad, 'GET', '/rooms', undef, $token);
is($r->{status}, 200, 'GET /rooms: 200');
is($r->{headers}{'x-read-from'}, 'replica', 'answered by the replica (X-Read-From: replica)');
cmp_ok(conns($standby, 'rw_replica'), '>', 0, 'the read pool is connected to the standby');
is(conns($primary, 'rw_replica'), '0', 'and not to the primary');
is(conns($standby, 'rw_primary'), '0', 'the primary pool has no connection on the standby');

# Replay paused: the standby is frozen in time, the primary goes on.
$standby->safe_psql('postgres', 'SELECT pg_wal_replay_pause()');
$r = http($ad, 'POST', '/rooms', { name => 'Beta', location => 'HQ', capacity => 8 }, $token);
is($r->{status}, 201, 'POST /rooms: 201 (written on the primary)') or diag $r->{content};
my $beta = $r->{json}{id};
is($primary->safe_psql('postgres', "SELECT name FROM booking.rooms WHERE id = $beta"), 'Beta', 'the room is on the primary');
$r = http($ad, 'GET', "/rooms/$beta", undef, $token);
is_deeply([ $r->{status}, $r->{json}{error_code}, $r->{headers}{'x-read-from'} ], [ 404, 'NOT_FOUND', 'replica' ],
	'GET right after the POST: 404 from the paused replica (a stale read, as documented)');
$r = http($ad, 'GET', '/rooms', undef, $token);
is(scalar @{ $r->{json} // [] }, 1, 'GET /rooms lists the old rooms only');
$r = http($ad, 'GET', "/rooms/$beta", undef, $token, { 'X-Read-From' => 'primary' });
is_deeply([ $r->{status}, $r->{json}{name}, $r->{headers}{'x-read-from'} ], [ 200, 'Beta', 'primary' ],
	'with X-Read-From: primary the client reads its own write');

# A VOLATILE function (shared-memory counters) is read from the primary.
$r = http($ad, 'GET', '/admin/analytics/rate-limits', undef, $token);
is($r->{headers}{'x-read-from'}, 'primary', 'GET /admin/analytics/rate-limits goes to the primary (VOLATILE)');
my ($login) = grep { $_->{endpoint} eq 'login' } @{ $r->{json} // [] };
cmp_ok($login->{admitted} // 0, '>', 0, "and shows the primary's login admissions ($login->{admitted})");

$standby->safe_psql('postgres', 'SELECT pg_wal_replay_resume()');
$primary->wait_for_catchup($standby, 'replay');
$r = http($ad, 'GET', "/rooms/$beta", undef, $token);
is_deeply([ $r->{status}, $r->{headers}{'x-read-from'} ], [ 200, 'replica' ], 'replay resumed: the replica has it');

# Writes never touch the standby: bookings through the adapter.
for my $i (1 .. 5)
{
	$r = http($ad, 'POST', '/bookings', { room_id => $beta, title => "b$i",
		starts_at => "2099-01-0${i}T09:00:00Z", ends_at => "2099-01-0${i}T10:00:00Z" }, $token);
	is($r->{status}, 201, "POST /bookings $i: 201") or diag $r->{content};
	ok(!defined $r->{headers}{'x-read-from'}, 'a write carries no X-Read-From') if $i == 1;
}
is(conns($standby, 'rw_primary'), '0', 'still no connection of the primary pool on the standby');

# --- /ready reports both ---
$r = http($ad, 'GET', '/ready');
is_deeply([ $r->{status}, $r->{json}{replica}, $r->{json}{replica_breaker} ], [ 200, 'ready', 'closed' ],
	'/ready: 200, replica ready') or diag $r->{content};

# --- the standby down: reads fall back, writes unaffected ---
$standby->stop('fast');
my @from;
for (1 .. 4)
{
	$r = http($ad, 'GET', "/rooms/$beta", undef, $token);
	push @from, "$r->{status}:" . ($r->{headers}{'x-read-from'} // '');
}
is("@from", '200:primary 200:primary 200:primary 200:primary', 'standby down: every GET answered by the primary');
$r = http($ad, 'GET', '/ready');
is_deeply([ $r->{status}, $r->{json}{breaker}, $r->{json}{replica}, $r->{json}{replica_breaker} ],
	[ 200, 'closed', 'unavailable', 'open' ],
	"/ready: still 200; the replica's breaker is open, the primary's closed") or diag $r->{content};
my $metrics = http($ad, 'GET', '/metrics')->{content};
like($metrics, qr/^pg_booking_breaker_state\{upstream="replica",state="open"\} 1$/m, '/metrics: the replica breaker open');
like($metrics, qr/^pg_booking_breaker_state\{upstream="primary",state="closed"\} 1$/m, '/metrics: the primary breaker closed');
like($metrics, qr/^pg_booking_db_pool_connections_max\{upstream="replica"\} 4$/m, '/metrics: the replica pool of 4');
$r = http($ad, 'POST', '/bookings', { room_id => $beta, title => 'during', starts_at => '2099-02-01T09:00:00Z',
	ends_at => '2099-02-01T10:00:00Z' }, $token);
is($r->{status}, 201, 'writes go on');
$standby->start;
my $back = '';
$deadline = time + 30;
while (time < $deadline)
{
	$r = http($ad, 'GET', "/rooms/$beta", undef, $token);
	$back = $r->{headers}{'x-read-from'} // '';
	last if $back eq 'replica';
	usleep(200_000);
}
is($back, 'replica', 'standby back: after the open time a probe returns GETs to it');

# --- the primary down: the replica still serves reads, writes are 503 ---
$primary->stop('fast');
$r = http($ad, 'GET', "/rooms/$beta", undef, $token);
is_deeply([ $r->{status}, $r->{headers}{'x-read-from'} ], [ 200, 'replica' ], 'primary down: GETs still answered by the replica');
@answers = ();
for (1 .. 3)
{
	$r = http($ad, 'POST', '/bookings', { room_id => $beta, title => 'down', starts_at => '2099-02-02T09:00:00Z',
		ends_at => '2099-02-02T10:00:00Z' }, $token);
	push @answers, "$r->{status} $r->{json}{error_code}";
}
is("@answers", '503 DATABASE_UNAVAILABLE 503 DATABASE_UNAVAILABLE 503 CIRCUIT_OPEN',
	"writes: 503, and the primary's breaker opens after 2 failures");
$r = http($ad, 'GET', "/rooms/$beta", undef, $token);
is_deeply([ $r->{status}, $r->{headers}{'x-read-from'} ], [ 200, 'replica' ], "the primary's open breaker does not stop the replica's reads");
$r = http($ad, 'GET', '/ready');
is_deeply([ $r->{status}, $r->{json}{error_code}, $r->{json}{details}{replica} ], [ 503, 'NOT_READY', 'ready' ],
	'/ready: 503 (writes impossible), the replica reported ready') or diag $r->{content};
my $late = start_adapter($primary, env => { ADAPTER_DB => dsn($primary, 'late'), ADAPTER_READ_DSN => dsn($standby, 'late_replica') });
$r = http($late, 'GET', "/rooms/$beta", undef, $token);
is_deeply([ $r->{status}, $r->{headers}{'x-read-from'} ], [ 200, 'replica' ],
	'an adapter started while the primary is down reads the catalog from the replica and serves GETs');
stop_adapter($late);
$primary->start;
my $written = 0;
$deadline = time + 30;
while (time < $deadline && !$written)
{
	$r = http($ad, 'POST', '/bookings', { room_id => $beta, title => 'back', starts_at => '2099-02-03T09:00:00Z',
		ends_at => '2099-02-03T10:00:00Z' }, $token);
	$written = $r->{status} == 201;
	usleep(200_000) unless $written;
}
ok($written, 'primary back: a probe closes its breaker, writes succeed again');

# --- no read DSN: the primary serves everything ---
my $solo = start_adapter($primary, env => { ADAPTER_DB => dsn($primary, 'solo') });
$standby->safe_psql('postgres', 'SELECT pg_wal_replay_pause()');
$r = http($solo, 'POST', '/rooms', { name => 'Gamma', location => 'HQ', capacity => 2 }, $token);
my $gamma = $r->{json}{id};
$r = http($solo, 'GET', "/rooms/$gamma", undef, $token);
is_deeply([ $r->{status}, $r->{json}{name} ], [ 200, 'Gamma' ], 'without a read DSN a GET right after a POST sees it');
ok(!defined $r->{headers}{'x-read-from'}, 'and carries no X-Read-From');
is(conns($standby, 'solo'), '0', 'that adapter has no connection on the standby');
cmp_ok(conns($primary, 'solo'), '>', 0, 'all of its connections are on the primary');
$standby->safe_psql('postgres', 'SELECT pg_wal_replay_resume()');
stop_adapter($solo);

# --- a write reaching a read-only server ---
$primary->wait_for_catchup($standby, 'replay');
my $ro = start_adapter($standby, env => { ADAPTER_DB => dsn($standby, 'on_standby'), %breaker });
@answers = ();
for my $i (1 .. 4)
{
	$r = http($ro, 'POST', '/bookings', { room_id => $beta, title => 'read-only', starts_at => "2099-03-0${i}T09:00:00Z",
		ends_at => "2099-03-0${i}T10:00:00Z" }, $token);
	push @answers, "$r->{status} " . ($r->{json}{error_code} // '');
}
is("@answers", join(' ', ('503 DATABASE_READ_ONLY') x 4), 'a write on a read-only server: 503 DATABASE_READ_ONLY, every time')
  or diag $r->{content};
ok(($r->{headers}{'retry-after'} // 0) >= 1, 'with Retry-After');
is($r->{json}{details}{sqlstate}, '25006', 'details name SQLSTATE 25006');
ok($r->{json}{request_id}, 'in the error envelope');
$r = http($ro, 'DELETE', "/bookings/1", undef, $token);
is_deeply([ $r->{status}, $r->{json}{error_code} ], [ 503, 'DATABASE_READ_ONLY' ], 'DELETE likewise');
$r = http($ro, 'GET', "/rooms/$beta", undef, $token);
is($r->{status}, 200, 'reads still work there: the read-only answers did not open the breaker');
is($primary->safe_psql('postgres', "SELECT count(*) FROM booking.bookings WHERE title = 'read-only'"), '0',
	'nothing was written anywhere');
stop_adapter($ro);

my @lines = adapter_log_lines($ad);
is(scalar(grep { /"status":500/ } @lines), 0, 'the two-DSN adapter never answered 500');
is(stop_adapter($ad), 0, 'the adapter stops cleanly');
$standby->stop;
$primary->stop;
done_testing();
