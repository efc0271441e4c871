# A bounded fuzz of the HTTP edge (issue 9, item 8): FUZZ_REQUESTS (3,000
# in make test; make fuzz runs more) mutated requests from a fixed seed
# (FUZZ_SEED), each on its own connection.  Every reply must be well-formed
# HTTP whose body is the envelope (errors) or JSON (successes), no 5xx but
# 505 (an HTTP version we do not speak), no hang, and the process alive.
# Silence is allowed only where HTTP gives the server nothing to answer: a
# head or body that never completed, or a first line with no method, target
# and version (libmicrohttpd 0.9.75 closes those without calling anything).
use strict;
use warnings;
use lib 't';
use AdapterTest;
use PostgreSQL::Test::Utils;
use Test::More;
use POSIX ();
use Time::HiRes qw(time);

my $N = $ENV{FUZZ_REQUESTS} // 3000;
my $SEED = $ENV{FUZZ_SEED} // 20260902;
my $node = setup_node();
my $uid = make_user($node, 'u@example.com', 'user');
my $aid = make_user($node, 'a@example.com', 'admin');
my $ad = start_adapter($node, env => { ADAPTER_LOG_REQUESTS => 'false', ADAPTER_REQUEST_DEADLINE_S => 3 });
my $user = mint_jwt({ sub => "$uid", role => 'booking_user', exp => time + 7200 });
my $admin = mint_jwt({ sub => "$aid", role => 'booking_admin', exp => time + 7200 });
my $room = http($ad, 'POST', '/rooms', { name => 'Fuzz', location => 'HQ', capacity => 4 }, $admin)->{json}{id};

sub req
{
	my ($method, $path, $token, $body, %h) = @_;
	my $head = "$method $path HTTP/1.1\r\nHost: 127.0.0.1\r\n";
	$head .= "Authorization: Bearer $token\r\n" if $token;
	$head .= "$_: $h{$_}\r\n" for sort keys %h;
	if (defined $body)
	{
		$head .= "Content-Type: application/json\r\nContent-Length: " . length($body) . "\r\n";
	}
	return "$head\r\n" . ($body // '');
}
my @corpus = (
	req('GET', '/health'),
	req('GET', '/rooms?min_capacity=2&location=HQ', $user),
	req('GET', "/rooms/$room", $user),
	req('GET', '/bookings?from=2030-01-01T00:00:00Z&to=2030-02-01T00:00:00Z&limit=5', $user),
	req('GET', "/availability/common?users=$uid,$aid&from=2030-01-01T00:00:00Z&to=2030-01-02T00:00:00Z", $user),
	req('POST', '/bookings', $user, qq({"room_id":$room,"starts_at":"2031-01-01T09:00:00Z","ends_at":"2031-01-01T10:00:00Z","title":"f"})),
	req('POST', '/users/login', undef, '{"email":"u@example.com","password":"wrong-password"}'),
	req('POST', '/rpc/me', $user, '{}'),
	req('PATCH', "/rooms/$room", $admin, '{"capacity":5,"amenities":["tv","é"]}'),
	req('DELETE', '/bookings/999999', $user),
	req('GET', '/users/me', $user, undef, 'X-Request-Id' => 'fuzz-1', Accept => 'application/json'),
	"POST /users/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
	  . "7\r\n{\"email\r\n0\r\n\r\n",
	"GET /health HTTP/1.0\r\n\r\n",
);
my @tokens = ("\0", "\r", "\n", "\r\n", "%00", "%", "%zz", ' ', "\t", ':', '?', '&', '=', ',', '{', '}', '"', '\\',
	'\u0000', "\xc3", "\xff", "\xe2\x82", '9' x 25, '-1', 'HTTP/1.1', 'Content-Length: 5', 'Transfer-Encoding: chunked',
	"\r\n\r\n", 'GET / HTTP/1.1', '../', '%2e%2e/', 'A' x 5000, '0' x 1000);

srand($SEED);
sub mutate
{
	my ($s) = @_;
	for (1 .. 1 + int(rand(4)))
	{
		my $len = length $s;
		my $at = int(rand($len + 1));
		my $op = int(rand(7));
		if ($op == 0) { substr($s, $at, 1, chr(int(rand(256)))) if $at < $len; }                      # replace a byte
		elsif ($op == 1) { substr($s, $at, 0, $tokens[ int(rand(@tokens)) ]); }                     # insert a token
		elsif ($op == 2) { substr($s, $at, 1 + int(rand(20)), ''); }                               # delete a run
		elsif ($op == 3) { my $n = 1 + int(rand(40)); substr($s, $at, 0, substr($s, $at, $n) x (1 + int(rand(50)))); } # repeat a run
		elsif ($op == 4) { $s = substr($s, 0, $at); }                                              # truncate
		elsif ($op == 5) { $s =~ s/(\d+)/'9' x (1 + int(rand(30)))/e; }                           # grow a number
		else { my $o = $corpus[ int(rand(@corpus)) ]; $s .= substr($o, int(rand(length $o))); }   # splice another
	}
	return $s;
}

# May a reply be missing for these bytes?
sub silence_allowed
{
	my ($bytes) = @_;
	my ($first) = $bytes =~ /\A([^\r\n]*)/;
	return 1 if $first !~ /^\S+ +\S+ +\S/;                       # no method, target and version
	return 1 if $bytes !~ /\r?\n\r?\n/;                          # the head never ended
	my ($head, $body) = split /\r?\n\r?\n/, $bytes, 2;
	return 1 if grep { $_ > length($body // '') } $head =~ /^content-length:\s*(\d+)/img;    # nor the body
	return 1 if $head =~ /^transfer-encoding:/im;                 # chunks that never ended
	return 1 if $bytes =~ /^[^\r\n]*\r?\n(?:[^\r\n]+\r?\n)*[ \t]/;  # folded or odd header lines
	return 0;
}

sub check_reply
{
	my ($bytes, $reply) = @_;
	return 'no reply' if $reply eq '' && !silence_allowed($bytes);
	my @r = parse_reply($reply);
	for my $x (@r)
	{
		return 'junk after the replies: ' . substr($x->{junk}, 0, 80) if exists $x->{junk} && $bytes !~ /^HEAD/m;
		next if exists $x->{junk} || $x->{status} < 200;
		return "status $x->{status}" if $x->{status} >= 500 && $x->{status} != 505;
		my $j = json_of($x->{body});
		next if $bytes =~ /^HEAD/;
		if ($x->{status} >= 400)
		{
			return "not the envelope ($x->{status}): " . substr($x->{body}, 0, 120)
			  unless ref $j eq 'HASH' && defined $j->{error_code} && defined $j->{message}
			  && ref $j->{details} eq 'HASH' && defined $j->{request_id};
		}
		elsif ($x->{status} != 204 && !defined $j && ($x->{headers}{'content-type'} // '') =~ /json/)
		{
			return "success that is not JSON ($x->{status})";
		}
	}
	return undef;
}

my (%status, %finding, $silent);
my $t0 = time;
my @cpu0 = (times)[ 0, 1 ];
for my $i (1 .. $N)
{
	my $bytes = mutate($corpus[ int(rand(@corpus)) ]);
	my ($reply, $closed) = raw_request($ad, $bytes, 10);
	my $why = check_reply($bytes, $reply);
	$why //= 'hang: no close within 10 s' unless $closed;
	if (defined $why)
	{
		$finding{$why} //= $bytes;
	}
	$silent++ if $reply eq '';
	$status{$1}++ while $reply =~ /^HTTP\/1\.[01] (\d{3})/mg;
	last if waitpid($ad->{pid}, POSIX::WNOHANG()) == $ad->{pid};
}
my $wall = time - $t0;
my $cpu = do { open my $f, '<', "/proc/$ad->{pid}/stat" or die; my @f = split ' ', <$f>; ($f[13] + $f[14]) / 100 };
diag(sprintf('fuzz: %d requests from seed %d in %.1f s; adapter CPU %.1f s (ASan build); statuses %s; %d closed silently',
	$N, $SEED, $wall, $cpu, join(' ', map { "$_:$status{$_}" } sort keys %status), $silent // 0));
is(scalar keys %finding, 0, 'every reply well-formed, the envelope or a success, no 5xx, no hang')
  or diag(join "\n", map { "$_ <- " . join('', map { sprintf(/[[:print:]]/ ? '%s' : '\\x%02x', /[[:print:]]/ ? $_ : ord) } split //, substr($finding{$_}, 0, 800)) } sort keys %finding);
is(http($ad, 'GET', '/health')->{status}, 200, 'the adapter is alive and serving');
is(stop_adapter($ad), 0, 'adapter stops cleanly (no sanitizer report)');
done_testing();
