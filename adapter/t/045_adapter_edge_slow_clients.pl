# Slow clients (issue 9, item 11): 300 connections that trickle their
# request head one byte every 0.5 s (so the idle timeout never fires) are
# cut at the absolute deadline with a 408 envelope, while another client is
# served all along; one address past the per-IP cap has its extra
# connections closed as they are accepted.  The slow clients come from
# other loopback addresses (127.0.0.2-11), the served one from 127.0.0.1.
use strict;
use warnings;
use lib 't';
use AdapterTest;
use IO::Select;
use IO::Socket::INET;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $DEADLINE = 3;
my $CAP = 40;
my $node = setup_node();
my $uid = make_user($node, 'u@example.com', 'user');
my $token = mint_jwt({ sub => "$uid", role => 'booking_user', exp => time + 3600 });
my $ad = start_adapter($node, env => { ADAPTER_REQUEST_DEADLINE_S => $DEADLINE, ADAPTER_CLIENT_TIMEOUT_S => 10,
	ADAPTER_MAX_CONNECTIONS_PER_IP => $CAP });

sub connect_from
{
	my ($ip) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ad->{port}, LocalAddr => $ip, Timeout => 5)
	  or die "connect from $ip: $!";
	$s->blocking(0);
	return $s;
}

# 300 slow clients: 30 from each of ten addresses, each a head that never ends.
my %slow;    # fileno -> {sock, opened, closed_after, reply}
for my $ip (map { "127.0.0.$_" } 2 .. 11)
{
	for (1 .. 30)
	{
		my $s = connect_from($ip);
		syswrite($s, "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ");
		$slow{ fileno $s } = { sock => $s, opened => time, reply => '' };
	}
}
# One address over the cap: the connections past it are closed at once.
my @capped = map { connect_from('127.0.0.12') } 1 .. $CAP + 5;
usleep(500_000);
my $refused = 0;
for my $s (@capped)
{
	my $n = sysread($s, my $buf, 100);
	$refused++ if defined $n && $n == 0;    # EOF: closed by the server; undef: still open (EAGAIN)
}
is($refused, 5, "per-IP cap $CAP: the 5 connections past it were closed as accepted");
close $_ for @capped;

# Trickle, and meanwhile serve a client from 127.0.0.1.
my ($served, $failed) = (0, 0);
my $t0 = time;
while (time - $t0 < $DEADLINE + 5 && grep { !defined $_->{closed_after} } values %slow)
{
	for my $c (grep { !defined $_->{closed_after} } values %slow)
	{
		syswrite($c->{sock}, 'a');
		while (1)
		{
			my $n = sysread($c->{sock}, my $buf, 4096);
			if (defined $n && $n > 0) { $c->{reply} .= $buf; next; }
			$c->{closed_after} = time - $c->{opened} if defined $n;    # 0: EOF
			last;
		}
	}
	my $r = http($ad, 'GET', '/rooms', undef, $token);
	$r->{status} == 200 ? $served++ : $failed++;
	usleep(500_000);
}
my @slow = values %slow;
my @cut = grep { defined $_->{closed_after} } @slow;
is(scalar @cut, 300, 'all 300 slow connections were cut');
my @early = grep { $_->{closed_after} < $DEADLINE - 0.5 } @cut;
my @late = grep { $_->{closed_after} > $DEADLINE + 3 } @cut;
my ($min, $max) = (sort { $a <=> $b } map { $_->{closed_after} } @cut)[ 0, -1 ];
is(scalar @early + scalar @late, 0, sprintf('each at the %d s deadline (cut after %.1f to %.1f s), though bytes kept coming',
	$DEADLINE, $min // -1, $max // -1));
my @enveloped = grep {
	my @r = parse_reply($_->{reply});
	@r == 1 && ($r[0]{status} // 0) == 408 && (json_of($r[0]{body}) // {})->{error_code} eq 'REQUEST_TIMEOUT'
} @slow;
is(scalar @enveloped, 300, 'each got one 408 REQUEST_TIMEOUT envelope');
cmp_ok($served, '>=', 5, "the other client was served meanwhile ($served requests)");
is($failed, 0, 'and none of its requests failed');

# A slow body is cut at the same deadline, counted from its request line.
my $b = connect_from('127.0.0.13');
syswrite($b, "POST /users/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{");
my ($reply, $t1) = ('', time);
while (time - $t1 < $DEADLINE + 5)
{
	syswrite($b, ' ');
	my $n = sysread($b, my $buf, 4096);
	if (defined $n && $n > 0) { $reply .= $buf; next; }
	last if defined $n;
	usleep(300_000);
}
my @r = parse_reply($reply);
is_deeply([ map { $_->{status} // 'junk' } @r ], [408], sprintf('a trickled body: one 408 envelope after %.1f s', time - $t1));

is(http($ad, 'GET', '/health')->{status}, 200, 'still serving');
is(stop_adapter($ad), 0, 'adapter stops cleanly');
done_testing();
