# Bad requests: each is a 4xx with an error_code and the envelope, never a
# 5xx, and nothing is written (row counts before and after).
use strict;
use warnings;
use lib 't';
use AdapterTest;
use PostgreSQL::Test::Utils;
use Test::More;
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time);

my $node = setup_node();
my $a = start_adapter($node);
make_user($node, 'admin@example.com', 'admin');
my $u1 = make_user($node, 'u1@example.com', 'user');
my $admin = token_for($a, 'admin@example.com', 'admin');
my $user = token_for($a, 'u1@example.com', 'user');
my $room = http($a, 'POST', '/rooms', { name => 'Blue', location => 'HQ', capacity => 4 }, $admin)->{json}{id};
http($a, 'POST', '/bookings', { room_id => $room, starts_at => '2030-01-07T09:00:00Z',
	ends_at => '2030-01-07T10:00:00Z', title => 'Existing' }, $user)->{status} == 201 or die 'setup booking failed';

my $counts_sql = q{SELECT (SELECT count(*) FROM booking.users) || ' ' || (SELECT count(*) FROM booking.rooms) || ' '
  || (SELECT count(*) FROM booking.bookings) || ' ' || (SELECT count(*) FROM booking.refresh_tokens) || ' '
  || (SELECT count(*) FROM booking.bookings WHERE status = 'confirmed') || ' '
  || (SELECT string_agg(md5(r::text), '' ORDER BY id) FROM booking.rooms r)};
my $before = $node->safe_psql('postgres', $counts_sql);

my $now = time;
my $expired = mint_jwt({ sub => '2', role => 'booking_user', exp => $now - 5 });
my $none = mint_jwt({ sub => '1', role => 'booking_admin', exp => $now + 60 }, alg => 'none');
my $wrongkey = mint_jwt({ sub => '1', role => 'booking_admin', exp => $now + 60 }, secret => 'x' x 40);
# Claims (issue 9): "nbf" and "iat" in the future, roles that are not the app's.
my %claims = (sub => "$u1", role => 'booking_user', exp => $now + 600);
my $nbf_future = mint_jwt({ %claims, nbf => $now + 3600 });
my $iat_future = mint_jwt({ %claims, iat => $now + 3600 });
my $nbf_text = mint_jwt({ %claims, nbf => 'yesterday' });
my $iat_near = mint_jwt({ %claims, iat => $now + 5, nbf => $now + 5 });    # within the clock leeway
my %bad_role = map { $_ => mint_jwt({ %claims, role => $_ }) }
  qw(booking_nosuch booking_grafana booking_authenticator booking_api postgres pg_read_server_files BOOKING_ADMIN);
my $big = '{"title":"' . ('x' x (1024 * 1024 + 10)) . '"}';
my %good = (room_id => $room, starts_at => '2030-03-01T09:00:00Z', ends_at => '2030-03-01T10:00:00Z', title => 'T');

# [ description, method, path, body (ref: JSON; string: raw), token, expected status ]
my @cases = (
	[ 'malformed JSON', 'POST', '/bookings', '{"room_id": 1,', $user, 400 ],
	[ 'not JSON at all', 'POST', '/bookings', 'room_id=1&title=x', $user, 400 ],
	[ 'trailing garbage', 'POST', '/bookings', '{"room_id":1} extra', $user, 400 ],
	[ 'duplicate keys', 'POST', '/bookings', '{"room_id":1,"room_id":2}', $user, 400 ],
	[ 'JSON array body', 'POST', '/bookings', '[1,2,3]', $user, 422 ],
	[ 'JSON string body', 'POST', '/bookings', '"hello"', $user, 422 ],
	[ 'room_id as string', 'POST', '/bookings', { %good, room_id => 'one' }, $user, 422 ],
	[ 'room_id as float', 'POST', '/bookings', { %good, room_id => 1.5 }, $user, 422 ],
	[ 'room_id as object', 'POST', '/bookings', { %good, room_id => { id => 1 } }, $user, 422 ],
	[ 'title as number', 'POST', '/bookings', { %good, title => 42 }, $user, 422 ],
	[ 'title as array', 'POST', '/bookings', { %good, title => ['a'] }, $user, 422 ],
	[ 'unknown field', 'POST', '/bookings', { %good, colour => 'red' }, $user, 422 ],
	[ 'missing field', 'POST', '/bookings', { room_id => $room, starts_at => '2030-03-01T09:00:00Z' }, $user, 422 ],
	[ 'empty body', 'POST', '/bookings', '', $user, 422 ],
	[ 'bad date', 'POST', '/bookings', { %good, starts_at => '2030-02-30T09:00:00Z' }, $user, 422 ],
	[ 'date without zone', 'POST', '/bookings', { %good, starts_at => '2030-03-01T09:00:00' }, $user, 422 ],
	[ 'not a date', 'POST', '/bookings', { %good, ends_at => 'tomorrow' }, $user, 422 ],
	[ 'end before start', 'POST', '/bookings', { %good, ends_at => '2030-03-01T08:00:00Z' }, $user, 422 ],
	[ 'SQL injection in title', 'POST', '/bookings', { %good, title => "x'); DROP TABLE booking.bookings; --", starts_at => 'x\'' }, $user, 422 ],
	[ 'SQL injection in a path', 'GET', "/bookings/1;DELETE%20FROM%20booking.bookings", undef, $user, 400 ],
	[ 'SQL injection in a query', 'GET', "/rooms?min_capacity=1%20OR%201=1", undef, $user, 400 ],
	[ 'injection in an rpc name', 'POST', '/rpc/me();drop', '{}', $user, 404 ],
	[ 'quote in an rpc name', 'POST', '/rpc/me%22', '{}', $user, 404 ],
	[ 'path id not a number', 'GET', '/bookings/abc', undef, $user, 400 ],
	[ 'overflowing id', 'GET', '/bookings/99999999999999999999999', undef, $user, 400 ],
	[ 'bad recurrence', 'POST', '/bookings', { %good, recurrence => { frequency => 'hourly', count => 2 } }, $user, 422 ],
	[ 'recurrence too long', 'POST', '/bookings', { %good, recurrence => { frequency => 'daily', count => 5000 } }, $user, 422 ],
	[ 'conflicting booking', 'POST', '/bookings', { %good, starts_at => '2030-01-07T09:30:00Z', ends_at => '2030-01-07T09:45:00Z' }, $user, 409 ],
	[ 'limit too large', 'GET', '/bookings?limit=100000', undef, $user, 422 ],
	[ 'limit not a number', 'GET', '/bookings?limit=ten', undef, $user, 400 ],
	[ 'negative offset', 'GET', '/rooms?offset=-1', undef, $user, 422 ],
	[ 'unknown query parameter', 'GET', '/rooms?colour=red', undef, $user, 422 ],
	[ 'duplicate parameter', 'GET', '/rooms/1?id=2', undef, $user, 422 ],
	[ 'huge body', 'POST', '/bookings', $big, $user, 413 ],
	[ 'unknown route', 'GET', '/nope', undef, $user, 404 ],
	[ 'unknown nested route', 'GET', '/bookings/1/nope', undef, $user, 404 ],
	[ 'wrong method', 'PUT', '/bookings', '{}', $user, 405 ],
	[ 'wrong method on an item', 'POST', '/rooms/1', '{}', $user, 405 ],
	[ 'wrong method on health', 'POST', '/health', '{}', undef, 405 ],
	[ 'expired token', 'POST', '/bookings', \%good, $expired, 401 ],
	[ 'alg none token', 'POST', '/rooms', { name => 'Evil', location => 'X', capacity => 1 }, $none, 401 ],
	[ 'wrong key token', 'POST', '/rooms', { name => 'Evil', location => 'X', capacity => 1 }, $wrongkey, 401 ],
	[ 'garbage token', 'POST', '/bookings', \%good, 'abc.def.ghi', 401 ],
	[ 'no token', 'POST', '/bookings', \%good, undef, 401 ],
	[ 'token not valid yet (nbf)', 'GET', '/users/me', undef, $nbf_future, 401 ],
	[ 'token issued in the future (iat)', 'GET', '/users/me', undef, $iat_future, 401 ],
	[ 'nbf not a number', 'GET', '/users/me', undef, $nbf_text, 401 ],
	(map { [ "token role $_", 'GET', '/users/me', undef, $bad_role{$_}, 401 ] } sort keys %bad_role),
	[ 'user creates a room', 'POST', '/rooms', { name => 'Mine', location => 'X', capacity => 1 }, $user, 403 ],
	[ 'negative capacity', 'POST', '/rooms', { name => 'Neg', location => 'X', capacity => -1 }, $admin, 422 ],
	[ 'duplicate room name', 'POST', '/rooms', { name => 'Blue', location => 'X', capacity => 1 }, $admin, 409 ],
	[ 'amenities not strings', 'POST', '/rooms', { name => 'Am', location => 'X', capacity => 1, amenities => [1] }, $admin, 422 ],
	[ 'register bad email', 'POST', '/users/register', { email => 'not-an-email', password => 'password1', full_name => 'X' }, undef, 422 ],
	[ 'register short password', 'POST', '/users/register', { email => 'x@example.com', password => 'pw', full_name => 'X' }, undef, 422 ],
	[ 'register null name', 'POST', '/users/register', { email => 'y@example.com', password => 'password1', full_name => undef }, undef, 422 ],
	[ 'login wrong password', 'POST', '/users/login', { email => 'u1@example.com', password => 'nope-nope' }, undef, 401 ],
	[ 'refresh bogus token', 'POST', '/users/refresh', { refresh_token => "' OR 1=1 --" }, undef, 401 ],
	[ 'cancel a missing booking', 'DELETE', '/bookings/987654', undef, $user, 404 ],
	[ 'patch role as user', 'PATCH', '/users/1', { role => 'admin' }, $user, 403 ],
	[ 'NUL in a string', 'POST', '/bookings', '{"room_id":1,"starts_at":"a\u0000b","ends_at":"x","title":"t"}', $user, 400 ],
);
cmp_ok(scalar @cases, '>=', 40, 'at least 40 bad requests');
is(http($a, 'GET', '/users/me', undef, $iat_near)->{status}, 200, 'iat and nbf a few seconds ahead: within the clock leeway');

for my $c (@cases)
{
	my ($what, $method, $path, $body, $token, $want) = @$c;
	my $r = http($a, $method, $path, $body, $token);
	my $env = $r->{json} // {};
	ok($r->{status} == $want && defined $env->{error_code} && defined $env->{message}
		  && ref $env->{details} eq 'HASH' && ($env->{request_id} // '') eq ($r->{headers}{'x-request-id'} // 'none'),
		"$what: $method $path -> $want $r->{status} " . ($env->{error_code} // 'no error_code'))
	  or diag($r->{content});
	ok($r->{headers}{allow}, "$what: 405 carries Allow") if $want == 405;
}

is($node->safe_psql('postgres', $counts_sql), $before, 'nothing was written by the bad requests');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_tables WHERE schemaname = 'booking' AND tablename = 'bookings'}),
	1, 'the bookings table is still there');

# GET runs in a read-only transaction: a function that writes fails there
# (25006, answered 405 as PostgREST does) and writes nothing.
$node->safe_psql('postgres', q{
CREATE OR REPLACE FUNCTION api.me() RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    UPDATE booking.users SET full_name = 'written by a GET' WHERE id = booking.current_user_id();
    RETURN '{}';
END $$});
my $ro = http($a, 'GET', '/users/me', undef, $user);
is_deeply([ $ro->{status}, $ro->{json}{details}{sqlstate} ], [ 405, '25006' ], 'GET is read-only: a writing function fails');
is($node->safe_psql('postgres', q{SELECT count(*) FROM booking.users WHERE full_name = 'written by a GET'}), 0,
	'and wrote nothing');
is(http($a, 'POST', '/rpc/me', {}, $user)->{status}, 200, 'the same function through POST may write');

# Slow clients: a request that never finishes its headers is cut off.
my $slow = start_adapter($node, env => { ADAPTER_CLIENT_TIMEOUT_S => 1 });
my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $slow->{port}) or die "connect: $!";
print $sock "GET /health HTTP/1.1\r\nHost: x\r\n";    # no blank line: the headers never end
my $t0 = time;
my $closed = 0;
while (time - $t0 < 5 && IO::Select->new($sock)->can_read(5 - (time - $t0)))
{
	my $n = sysread($sock, my $buf, 4096);
	if (!$n) { $closed = 1; last; }
}
ok($closed, sprintf('a slow client is disconnected by the server (after %.1f s, limit 1 s)', time - $t0));
is(stop_adapter($slow), 0, 'slow-client adapter stops cleanly');

my @fivexx = grep { /"status":5\d\d/ } adapter_log_lines($a);
is(scalar @fivexx, 0, 'no 5xx in the request log') or diag(join "\n", @fivexx);
is(stop_adapter($a), 0, 'adapter stops cleanly');
done_testing();
