# The breaker recovers in one open period whatever the pool size (issue 9,
# item 3).  A full pool of 8 connections, a real outage (immediate stop,
# which kills every backend), the circuit opened, the database restarted:
# the first request to succeed comes within open time + 1 s of the restart,
# because no probe lands on a connection that died with the old server.
# The same through /ready alone, and the pool drops its dead connections at
# once.  (A functional deadline, not a speed test: the old pool needed one
# open period per stale connection, about 8 x 2 s here.)
use strict;
use warnings;
use lib 't';
use AdapterTest;
use PostgreSQL::Test::Utils;
use Test::More;
use POSIX ();
use Time::HiRes qw(time usleep);

my $POOL = 8;
my $OPEN_MS = 2000;
my $node = setup_node();
my $uid = make_user($node, 'u@example.com', 'user');
my $token = mint_jwt({ sub => "$uid", role => 'booking_user', exp => time + 3600 });
my $ad = start_adapter($node, env => { ADAPTER_BREAKER_FAILURES => 3, ADAPTER_BREAKER_OPEN_MS => $OPEN_MS,
	ADAPTER_BREAKER_PROBES => 1, ADAPTER_POOL_SIZE => $POOL, ADAPTER_CLIENT_TIMEOUT_S => 30 });

sub rooms { return http($ad, 'GET', '/rooms', undef, $token); }
sub db_conns
{
	return $node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE usename = 'booking_authenticator'});
}
sub sockets { return scalar grep { (readlink($_) // '') =~ /^socket:/ } glob("/proc/$ad->{pid}/fd/*"); }

# Fill the pool: $POOL clients at once, each holding its connection a moment.
sub fill_pool
{
	my @pids;
	for (1 .. $POOL)
	{
		my $pid = fork // die;
		if (!$pid)
		{
			my $c = { %$ad, http => HTTP::Tiny->new(timeout => 10) };
			http($c, 'POST', '/rpc/edge_sleep', {}, $token) for 1 .. 2;
			POSIX::_exit(0);
		}
		push @pids, $pid;
	}
	waitpid($_, 0) for @pids;
}
$node->safe_psql('postgres', q{
CREATE FUNCTION api.edge_sleep() RETURNS jsonb LANGUAGE sql AS $$ SELECT to_jsonb(pg_sleep(0.2)::text) $$;
GRANT EXECUTE ON FUNCTION api.edge_sleep TO booking_api;
COMMENT ON FUNCTION api.edge_sleep IS 'test only';});
# The adapter reads its catalog again on a miss, at most once a second.
for (1 .. 30) { last if http($ad, 'POST', '/rpc/edge_sleep', {}, $token)->{status} == 200; usleep(100_000); }

# Outage: immediate stop, requests until the circuit is open; then restart.
# Returns the time the restarted server accepted connections.
sub outage
{
	$node->stop('immediate');
	my $open = 0;
	for (1 .. 10)
	{
		my $r = rooms();
		if (($r->{json}{error_code} // '') eq 'CIRCUIT_OPEN') { $open = 1; last; }
	}
	ok($open, 'outage: the circuit opened');
	$node->start;
	return time;
}

sub first_success
{
	my ($t0, $what) = @_;
	my $deadline = $t0 + 30;
	while (time < $deadline)
	{
		my $r = $what eq 'ready' ? http($ad, 'GET', '/ready') : rooms();
		return time - $t0 if $r->{status} == 200;
		usleep(50_000);
	}
	return 999;
}

my $limit = $OPEN_MS / 1000 + 1;
for my $round (1 .. 2)
{
	fill_pool();
	is(db_conns(), $POOL, "round $round: the pool holds $POOL connections");
	my $t0 = outage();
	my $took = first_success($t0, 'rooms');
	cmp_ok($took, '<=', $limit, sprintf('round %d: first success %.2f s after the restart (open time %.1f s + 1 s)',
		$round, $took, $OPEN_MS / 1000));
	is(rooms()->{status}, 200, "round $round: traffic flows");
}

# /ready alone brings it back: it is a probe once the open time has passed.
fill_pool();
my $t0 = outage();
my $took = first_success($t0, 'ready');
cmp_ok($took, '<=', $limit, sprintf('/ready alone: 200 %.2f s after the restart', $took));
like(http($ad, 'GET', '/metrics')->{content}, qr/^pg_booking_breaker_state\{upstream="primary",state="closed"\} 1$/m, 'and the circuit is closed');

# The dead connections go at once: after an outage's first failure none is left.
fill_pool();
my $with_pool = sockets();
$node->stop('immediate');
my $r = rooms();
is($r->{json}{error_code}, 'DATABASE_UNAVAILABLE', 'outage: the first request fails');
cmp_ok($with_pool - sockets(), '>=', $POOL, "the $POOL dead connections were all dropped after one failure ("
	  . ($with_pool - sockets()) . ' sockets fewer)');
$node->start;
is(first_success(time, 'rooms') <= $limit, 1, 'recovered');
is(stop_adapter($ad), 0, 'adapter stops cleanly');
done_testing();
