# The circuit breaker against a real outage: stop the database, watch the
# breaker open after N failures and answer fast, restart it, watch a probe
# close it; ten outage cycles leak no descriptors or connections.  Also the
# operator switches: forced open (SIGUSR1/SIGUSR2) and disabled.
use strict;
use warnings;
use lib 't';
use AdapterTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = setup_node();
my $uid = make_user($node, 'u@example.com', 'user');
my $token = mint_jwt({ sub => "$uid", role => 'booking_user', exp => time + 3600 });
my $N = 3;
my $ad = start_adapter($node, env => { ADAPTER_BREAKER_FAILURES => $N, ADAPTER_BREAKER_OPEN_MS => 1000,
	ADAPTER_BREAKER_PROBES => 1, ADAPTER_POOL_SIZE => 2 });

sub fd_count { my @fds = glob("/proc/$ad->{pid}/fd/*"); return scalar @fds; }
sub db_conns
{
	return $node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE usename = 'booking_authenticator'});
}
sub metric
{
	my ($re) = @_;
	my $m = http($ad, 'GET', '/metrics')->{content};
	return $m =~ /^$re (\d+)$/m ? $1 : undef;
}
sub rooms { return http($ad, 'GET', '/rooms', undef, $token); }

is(rooms()->{status}, 200, 'database up: 200');
my $fds_before = fd_count() - db_conns();

# --- outage ---
$node->stop('fast');
my @codes;
for (1 .. $N + 2) { push @codes, rooms()->{json}{error_code}; }
is_deeply(\@codes, [ ('DATABASE_UNAVAILABLE') x $N, 'CIRCUIT_OPEN', 'CIRCUIT_OPEN' ],
	"$N failures answer DATABASE_UNAVAILABLE, then the circuit is open");
my @ms;
my $r;
for (1 .. 30)
{
	$r = rooms();
	push @ms, $r->{ms};
}
@ms = sort { $a <=> $b } @ms;
is_deeply([ $r->{status}, $r->{json}{error_code} ], [ 503, 'CIRCUIT_OPEN' ], 'open: 503 CIRCUIT_OPEN');
ok($r->{headers}{'retry-after'} >= 1, 'CIRCUIT_OPEN carries Retry-After');
cmp_ok($ms[15], '<', 5, sprintf('open answers in well under 5 ms (median %.2f ms, max %.2f ms, client side)', $ms[15], $ms[-1]));
diag sprintf('CIRCUIT_OPEN latency: median %.3f ms, max %.3f ms', $ms[15], $ms[-1]);
$r = http($ad, 'GET', '/ready');
is_deeply([ $r->{status}, $r->{json}{error_code} ], [ 503, 'NOT_READY' ], 'ready: 503 while open');
ok($r->{headers}{'retry-after'}, 'every 503 carries Retry-After');
is(metric('pg_booking_breaker_state\{upstream="primary",state="open"\}'), 1, 'metrics: breaker open');
is(metric('pg_booking_breaker_transitions_total\{upstream="primary",from="closed",to="open"\}'), 1, 'metrics: one closed -> open');
is(http($ad, 'GET', '/health')->{status}, 200, 'health stays 200 (no database)');

# After the open timeout a probe goes through; the database is still down,
# so the probe fails and the circuit opens again.
usleep(1_100_000);
$r = rooms();
is($r->{json}{error_code}, 'DATABASE_UNAVAILABLE', 'half-open: one probe reaches the (down) database');
is(rooms()->{json}{error_code}, 'CIRCUIT_OPEN', 'the failed probe opens the circuit again');
is(metric('pg_booking_breaker_transitions_total\{upstream="primary",from="half_open",to="open"\}'), 1, 'metrics: half_open -> open');

# --- recovery ---
$node->start;
usleep(1_100_000);
$r = rooms();
is($r->{status}, 200, 'database back: after the open timeout a probe succeeds');
is(metric('pg_booking_breaker_state\{upstream="primary",state="closed"\}'), 1, 'and the circuit is closed');
is(rooms()->{status}, 200, 'traffic flows');

# --- ten outage cycles ---
my $cycles_ok = 0;
for my $cycle (1 .. 10)
{
	$node->stop('fast');
	my $open = 0;
	for (1 .. $N + 3) { if ((rooms()->{json}{error_code} // '') eq 'CIRCUIT_OPEN') { $open = 1; last; } }
	$node->start;
	usleep(1_050_000);
	my $back = 0;
	for (1 .. 20)
	{
		if (rooms()->{status} == 200) { $back = 1; last; }
		usleep(100_000);
	}
	$cycles_ok++ if $open && $back;
}
is($cycles_ok, 10, 'ten outage cycles: each opened and recovered');
for (1 .. 4) { rooms(); }
cmp_ok(db_conns(), '<=', 2, 'connections to the database stay within the pool size');
is(fd_count() - db_conns(), $fds_before, 'no descriptors leaked over the outages');

# --- operator switches ---
kill 'USR1', $ad->{pid};
usleep(100_000);
$r = rooms();
is_deeply([ $r->{status}, $r->{json}{error_code} ], [ 503, 'CIRCUIT_OPEN' ], 'SIGUSR1 forces the circuit open');
kill 'USR2', $ad->{pid};
usleep(1_100_000);
is(rooms()->{status}, 200, 'SIGUSR2 gives it back to automatic');
is(stop_adapter($ad), 0, 'adapter stops cleanly');

my $d = start_adapter($node, env => { ADAPTER_BREAKER_MODE => 'disabled', ADAPTER_BREAKER_FAILURES => 1 });
$node->stop('fast');
my %seen;
for (1 .. 5) { $seen{ http($d, 'GET', '/rooms', undef, $token)->{json}{error_code} }++; }
is_deeply(\%seen, { DATABASE_UNAVAILABLE => 5 }, 'breaker disabled: never CIRCUIT_OPEN');
is(stop_adapter($d), 0, 'stops cleanly');
my $o = start_adapter($node, env => { ADAPTER_BREAKER_MODE => 'open' });
is(http($o, 'GET', '/rooms', undef, $token)->{json}{error_code}, 'CIRCUIT_OPEN', 'breaker forced open by setting');
is(stop_adapter($o), 0, 'stops cleanly');
$node->start;
done_testing();
