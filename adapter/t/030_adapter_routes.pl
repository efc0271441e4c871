# The adapter over real HTTP against a real cluster: every route that exists
# in SQL, as each role, the RLS boundaries, tokens, errors, operations, logs.
use strict;
use warnings;
use lib 't';
use AdapterTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use POSIX ();

my $node = setup_node();
# Test-only functions: raise any SQLSTATE, and sleep (statement timeout, drain).
$node->safe_psql('postgres', q{
CREATE FUNCTION api.test_raise(state text, detail text DEFAULT NULL) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF detail IS NULL THEN RAISE EXCEPTION 'raised %', state USING ERRCODE = state; END IF;
    RAISE EXCEPTION 'raised %', state USING ERRCODE = state, DETAIL = detail;
END $$;
CREATE FUNCTION api.test_sleep(seconds float8) RETURNS jsonb LANGUAGE sql AS
  $$ SELECT jsonb_build_object('slept', pg_sleep(seconds) IS NULL) $$;
GRANT EXECUTE ON FUNCTION api.test_raise(text, text), api.test_sleep(float8) TO booking_api;
});

my $t0 = time;
my $a = start_adapter($node, env => { ADAPTER_STATEMENT_TIMEOUT_MS => 1000 });
note sprintf('adapter answered /health %.1f ms after fork', ($a->{ready_after} - $t0) * 1000);

# --- operations ---
my $r = http($a, 'GET', '/health');
is($r->{status}, 200, 'health 200');
like($r->{headers}{'x-request-id'}, qr/^[0-9a-f-]{36}$/, 'a request id is generated');
$r = http($a, 'GET', '/health', undef, undef, { 'X-Request-Id' => 'abc-123' });
is($r->{headers}{'x-request-id'}, 'abc-123', 'a sent request id is kept');
$r = http($a, 'GET', '/ready');
is_deeply([ $r->{status}, $r->{json}{breaker} ], [ 200, 'closed' ], 'ready: database up, breaker closed');
$r = http($a, 'GET', '/openapi.json');
is($r->{status}, 200, 'openapi 200');
ok($r->{json}{paths}{'/bookings'}{post}, 'openapi has POST /bookings');
is($r->{json}{paths}{'/rooms/{room_id}/availability'}{get}{operationId}, 'room_availability', 'openapi names the function');
{
	my %procs = map { $_ => 1 } split /\n/,
	  $node->safe_psql('postgres', q{SELECT proname FROM pg_proc WHERE pronamespace = 'api'::regnamespace});
	my @ops = grep { defined } map { my $p = $_; map { $_->{operationId} } values %$p } values %{ $r->{json}{paths} };
	is_deeply([ grep { !$procs{$_} } @ops ], [], 'openapi lists only routes whose function is in the database');
}
is_deeply($r->{json}{paths}{'/bookings'}{post}{requestBody}{content}{'application/json'}{schema}{required},
	[qw(room_id starts_at ends_at title)], 'openapi: required body fields from the signature');

# --- users ---
$r = http($a, 'POST', '/users/register', { email => 'ann@example.com', password => 'password-user', full_name => 'Ann' });
is($r->{status}, 201, 'register 201');
my $ann_id = $r->{json}{id};
ok(!exists $r->{json}{password_hash}, 'no password hash in the answer');
$r = http($a, 'POST', '/users/register', { email => 'ANN@example.com', password => 'password-user', full_name => 'Ann' });
is_deeply([ $r->{status}, $r->{json}{error_code} ], [ 409, 'ALREADY_EXISTS' ], 'register twice: 409 ALREADY_EXISTS');
$r = http($a, 'POST', '/users/register', { email => 'bob@example.com', password => 'short', full_name => 'Bob' });
is_deeply([ $r->{status}, $r->{json}{error_code}, $r->{json}{details}{field} ], [ 422, 'VALIDATION_ERROR', 'password' ],
	'short password: 422 VALIDATION_ERROR on field password');
is($r->{json}{request_id}, $r->{headers}{'x-request-id'}, 'the envelope carries the request id');

$r = http($a, 'POST', '/users/login', { email => 'ann@example.com', password => 'password-user' });
is($r->{status}, 200, 'login 200');
is($r->{json}{token_type}, 'bearer', 'token type bearer');
my $ann = $r->{json}{access_token};
my $ann_refresh = $r->{json}{refresh_token};
$r = http($a, 'POST', '/users/login', { email => 'ann@example.com', password => 'wrong-password' });
is_deeply([ $r->{status}, $r->{json}{error_code} ], [ 401, 'UNAUTHORIZED' ], 'bad password: 401');
ok($r->{headers}{'www-authenticate'}, '401 carries WWW-Authenticate');

$r = http($a, 'POST', '/users/refresh', { refresh_token => $ann_refresh });
is($r->{status}, 200, 'refresh 200');
ok($r->{json}{access_token}, 'refresh gives an access token');

$r = http($a, 'GET', '/users/me', undef, $ann);
is_deeply([ $r->{status}, $r->{json}{email} ], [ 200, 'ann@example.com' ], 'GET /users/me');
$r = http($a, 'PATCH', '/users/me', { full_name => 'Ann Smith' }, $ann);
is_deeply([ $r->{status}, $r->{json}{full_name} ], [ 200, 'Ann Smith' ], 'PATCH /users/me');
$r = http($a, 'GET', '/users/me');
is($r->{status}, 401, 'GET /users/me without a token: 401');

make_user($node, 'admin@example.com', 'admin');
make_user($node, 'fm@example.com', 'facility_manager');
make_user($node, 'aud@example.com', 'auditor');
my $bob_id = make_user($node, 'bob@example.com', 'user');
my $admin = token_for($a, 'admin@example.com', 'admin');
my $fm = token_for($a, 'fm@example.com', 'facility_manager');
my $aud = token_for($a, 'aud@example.com', 'auditor');
my $bob = token_for($a, 'bob@example.com', 'user');

$r = http($a, 'GET', '/users?limit=2', undef, $admin);
is_deeply([ $r->{status}, scalar @{ $r->{json} } ], [ 200, 2 ], 'admin lists users, limit honoured');
$r = http($a, 'GET', '/users', undef, $aud);
is($r->{status}, 200, 'auditor lists users');
$r = http($a, 'GET', '/users', undef, $bob);
is_deeply([ $r->{status}, $r->{json}{error_code} ], [ 403, 'FORBIDDEN' ], 'user lists users: 403');
$r = http($a, 'GET', "/users/$ann_id", undef, $admin);
is_deeply([ $r->{status}, $r->{json}{id} ], [ 200, $ann_id ], 'admin reads a user');
$r = http($a, 'GET', '/users/999999', undef, $admin);
is_deeply([ $r->{status}, $r->{json}{error_code} ], [ 404, 'NOT_FOUND' ], 'missing user: 404');
$r = http($a, 'PATCH', "/users/$ann_id", { active => JSON::PP::true }, $aud);
is($r->{status}, 403, 'auditor may not change a user');
$r = http($a, 'PATCH', "/users/$ann_id", { role => 'user', active => JSON::PP::true }, $admin);
is($r->{status}, 200, 'admin changes a user');

# --- rooms ---
$r = http($a, 'POST', '/rooms', { name => 'Blue', location => 'HQ', capacity => 6, amenities => [ 'tv', 'wifi' ] }, $bob);
is_deeply([ $r->{status}, $r->{json}{error_code} ], [ 403, 'FORBIDDEN' ], 'user creates a room: 403');
$r = http($a, 'POST', '/rooms', { name => 'Blue', location => 'HQ', capacity => 6, amenities => [ 'tv', 'wifi' ] }, $admin);
is($r->{status}, 201, 'admin creates a room');
is_deeply($r->{json}{amenities}, [ 'tv', 'wifi' ], 'text[] arguments arrive as arrays');
my $blue = $r->{json}{id};
$r = http($a, 'POST', '/rooms', { name => 'Green', location => 'Annex', capacity => 2, buffer_after_minutes => 15 }, $fm);
is($r->{status}, 201, 'facility manager creates a room');
my $green = $r->{json}{id};
$r = http($a, 'POST', '/rooms', { name => 'Blue', location => 'HQ', capacity => 3 }, $admin);
is_deeply([ $r->{status}, $r->{json}{error_code} ], [ 409, 'ALREADY_EXISTS' ], 'room name taken: 409');
$r = http($a, 'GET', '/rooms?min_capacity=4', undef, $bob);
is_deeply([ $r->{status}, [ map { $_->{name} } @{ $r->{json} } ] ], [ 200, ['Blue'] ], 'GET /rooms filters by capacity');
$r = http($a, 'GET', '/rooms?amenity=wifi&location=HQ', undef, $bob);
is(scalar @{ $r->{json} }, 1, 'GET /rooms filters by amenity and location');
$r = http($a, 'GET', "/rooms/$blue", undef, $bob);
is_deeply([ $r->{status}, $r->{json}{name} ], [ 200, 'Blue' ], 'GET /rooms/{id}');
$r = http($a, 'GET', '/rooms/424242', undef, $bob);
is($r->{status}, 404, 'missing room: 404');
$r = http($a, 'PATCH', "/rooms/$green", { capacity => 3 }, $fm);
is_deeply([ $r->{status}, $r->{json}{capacity} ], [ 200, 3 ], 'PATCH /rooms/{id}');
$r = http($a, 'PATCH', "/rooms/$green", { capacity => 3 }, $bob);
is($r->{status}, 403, 'user patches a room: 403');

# --- bookings ---
my %b1 = (room_id => $blue, starts_at => '2030-01-07T09:00:00Z', ends_at => '2030-01-07T10:00:00Z', title => 'Ann planning');
$r = http($a, 'POST', '/bookings', \%b1, $ann);
is($r->{status}, 201, 'POST /bookings 201');
my $ann_booking = $r->{json}{id};
$r = http($a, 'POST', '/bookings', { %b1, starts_at => '2030-01-07T09:30:00Z', title => 'Bob clash' }, $bob);
is_deeply([ $r->{status}, $r->{json}{error_code} ], [ 409, 'BOOKING_CONFLICT' ], 'overlap: 409 BOOKING_CONFLICT');
is($r->{json}{details}{conflicts}[0]{booking_id}, $ann_booking, 'the conflict lists the clash');
$r = http($a, 'POST', '/bookings', { %b1, starts_at => '2030-01-07T10:00:00Z', ends_at => '2030-01-07T11:00:00Z', title => 'Bob next' }, $bob);
is($r->{status}, 201, 'back-to-back booking 201');
my $bob_booking = $r->{json}{id};
$r = http($a, 'POST', '/bookings', { room_id => $green, starts_at => '2030-02-02T09:00:00Z', ends_at => '2030-02-02T10:00:00Z',
	title => 'Weekly', recurrence => { frequency => 'weekly', count => 3 } }, $ann);
is($r->{status}, 201, 'recurring booking 201');
$r = http($a, 'POST', '/bookings', { %b1, starts_at => '2030-01-07T09:00:00' }, $ann);
is_deeply([ $r->{status}, $r->{json}{error_code} ], [ 422, 'VALIDATION_ERROR' ], 'time without a zone: 422');
$r = http($a, 'POST', '/bookings', \%b1);
is($r->{status}, 401, 'anonymous booking: 401');

$r = http($a, 'GET', '/bookings', undef, $ann);
is_deeply([ $r->{status}, [ sort map { $_->{title} } @{ $r->{json} } ] ], [ 200, [ 'Ann planning', ('Weekly') x 3 ] ],
	'GET /bookings: own bookings only');
$r = http($a, 'GET', '/bookings?status=confirmed&limit=500', undef, $admin);
is(scalar @{ $r->{json} }, 5, 'admin sees every booking');
$r = http($a, 'GET', "/bookings/$bob_booking", undef, $ann);
is_deeply([ $r->{status}, $r->{json}{error_code} ], [ 404, 'NOT_FOUND' ], "someone else's booking: 404, not 403");
$r = http($a, 'GET', "/bookings/$bob_booking", undef, $aud);
is($r->{status}, 200, 'auditor reads any booking');
$r = http($a, 'PATCH', "/bookings/$bob_booking", { title => 'Hijack' }, $ann);
is($r->{status}, 404, "patching someone else's booking: 404");
$r = http($a, 'PATCH', "/bookings/$ann_booking", { title => 'Ann retitled' }, $ann);
is_deeply([ $r->{status}, $r->{json}{title} ], [ 200, 'Ann retitled' ], 'PATCH /bookings/{id}');
$r = http($a, 'GET', "/rooms/$blue/schedule?from=2030-01-07T00:00:00Z&to=2030-01-08T00:00:00Z", undef, $ann);
is_deeply([ $r->{status}, [ map { $_->{title} } @{ $r->{json} } ] ], [ 200, [ 'Ann retitled', undef ] ],
	"schedule: others' titles hidden");
$r = http($a, 'GET', "/rooms/$blue/availability?from=2030-01-07T08:00:00Z&to=2030-01-07T12:00:00Z", undef, $bob);
is_deeply([ $r->{status}, scalar @{ $r->{json} } ], [ 200, 2 ], 'availability: two free intervals');
$r = http($a, 'GET', "/rooms/$blue/availability?from=2030-01-07T12:00:00Z&to=2030-01-07T08:00:00Z", undef, $bob);
is($r->{status}, 422, 'availability with a backwards window: 422');
$r = http($a, 'DELETE', "/bookings/$bob_booking", undef, $ann);
is($r->{status}, 404, "cancelling someone else's booking: 404");
$r = http($a, 'DELETE', "/bookings/$bob_booking", undef, $fm);
is_deeply([ $r->{status}, $r->{json}{status} ], [ 200, 'cancelled' ], 'facility manager cancels a booking');
$r = http($a, 'DELETE', "/rooms/$green", undef, $admin);
is_deeply([ $r->{status}, $r->{content} // '' ], [ 204, '' ], 'DELETE /rooms/{id}: 204, no body');

# --- /rpc ---
$r = http($a, 'POST', '/rpc/get_booking', { id => $ann_booking }, $ann);
is_deeply([ $r->{status}, $r->{json}{id} ], [ 200, $ann_booking ], 'POST /rpc/get_booking');
$r = http($a, 'POST', '/rpc/list_rooms', {}, $bob);
is($r->{status}, 200, 'POST /rpc/list_rooms with no arguments');
$r = http($a, 'POST', '/rpc/no_such_function', {}, $bob);
is_deeply([ $r->{status}, $r->{json}{error_code} ], [ 404, 'NOT_FOUND' ], 'rpc of an unknown function: 404');
$r = http($a, 'GET', '/rpc/me', undef, $bob);
is_deeply([ $r->{status}, $r->{headers}{allow} ], [ 405, 'POST' ], 'GET /rpc: 405 with Allow');

# --- SQLSTATE mapping ---
my %map = ('23505' => [ 409, 'ALREADY_EXISTS' ], '23503' => [ 409, 'CONFLICT' ], '22P02' => [ 400, 'VALIDATION_ERROR' ],
	'42501' => [ 403, 'FORBIDDEN' ], '42883' => [ 404, 'NOT_FOUND' ], 'P0001' => [ 400, 'BAD_REQUEST' ],
	'XX000' => [ 500, 'INTERNAL_ERROR' ], '53300' => [ 503, 'DATABASE_UNAVAILABLE' ], '40001' => [ 409, 'CONFLICT' ]);
for my $state (sort keys %map)
{
	$r = http($a, 'POST', '/rpc/test_raise', { state => $state }, $bob);
	is_deeply([ $r->{status}, $r->{json}{error_code} ], $map{$state}, "SQLSTATE $state -> $map{$state}[0] $map{$state}[1]");
}
$r = http($a, 'POST', '/rpc/test_raise', { state => 'PT429', detail => '{"error_code":"RATE_LIMIT_EXCEEDED","retry_after_seconds":7}' }, $bob);
is_deeply([ $r->{status}, $r->{json}{error_code}, $r->{headers}{'retry-after'} ], [ 429, 'RATE_LIMIT_EXCEEDED', 7 ],
	'PT429: 429 with Retry-After from the details');
$r = http($a, 'POST', '/rpc/test_raise', { state => 'PT418', detail => '{"error_code":"TEAPOT","x":1}' }, $bob);
is_deeply([ $r->{status}, $r->{json}{error_code}, $r->{json}{details} ], [ 418, 'TEAPOT', { x => 1 } ], 'PTxyz -> xyz, details kept');
$r = http($a, 'POST', '/rpc/test_raise', { state => '53300' }, $bob);
ok($r->{headers}{'retry-after'}, '503 carries Retry-After');
$r = http($a, 'POST', '/rpc/test_sleep', { seconds => 3 }, $bob);
is_deeply([ $r->{status}, $r->{json}{error_code} ], [ 504, 'TIMEOUT' ], 'statement timeout: 504 TIMEOUT');

# --- tokens ---
my $now = time;
my %good = (sub => "$ann_id", role => 'booking_user', iat => int($now), exp => int($now) + 600);
is(http($a, 'GET', '/users/me', undef, mint_jwt(\%good))->{status}, 200, 'a token minted with the secret works');
my @bad_tokens = (
	[ 'tampered payload' => do { my @p = split /\./, mint_jwt(\%good);
			$p[1] = MIME::Base64::encode_base64url('{"sub":"1","role":"booking_admin","exp":9999999999}'); join '.', @p } ],
	[ 'expired' => mint_jwt({ %good, exp => int($now) - 10 }) ],
	[ 'alg none' => mint_jwt(\%good, alg => 'none') ],
	[ 'wrong key' => mint_jwt(\%good, secret => 'another-secret-0123456789abcdef0123456789') ],
	[ 'malformed' => 'not.a.token' ],
	[ 'garbage' => 'xxxxxxxxxxxxxxxxxxxx' ],
	[ 'no exp' => mint_jwt({ sub => "$ann_id", role => 'booking_user' }) ],
	[ 'HS512' => mint_jwt(\%good, alg => 'HS512') ],
	[ 'role postgres' => mint_jwt({ %good, role => 'postgres' }) ],
	[ 'role authenticator' => mint_jwt({ %good, role => 'booking_authenticator' }) ],
	[ 'no role' => mint_jwt({ sub => "$ann_id", exp => int($now) + 60 }) ],
);
for my $bt (@bad_tokens)
{
	$r = http($a, 'GET', '/users/me', undef, $bt->[1]);
	is_deeply([ $r->{status}, $r->{json}{error_code}, defined $r->{headers}{'www-authenticate'} ? 1 : 0 ],
		[ 401, 'UNAUTHORIZED', 1 ], "token $bt->[0]: 401 UNAUTHORIZED with WWW-Authenticate");
}
# Verified tokens are cached: the cache must still honour exp.
my $short = mint_jwt({ %good, exp => int(time) + 2 });
is(http($a, 'GET', '/users/me', undef, $short)->{status}, 200, 'a short-lived token works (and is cached)');
is(http($a, 'GET', '/users/me', undef, $short)->{status}, 200, 'again, from the cache');
select(undef, undef, undef, 2.6);
is(http($a, 'GET', '/users/me', undef, $short)->{status}, 401, 'once expired, the cached token is refused');
$r = http($a, 'GET', '/users/me', undef, undef, { Authorization => 'Basic YTpi' });
is($r->{status}, 401, 'basic auth: 401');

# logout revokes refresh tokens
$r = http($a, 'POST', '/users/logout', undef, $ann);
is_deeply([ $r->{status}, $r->{content} // '' ], [ 204, '' ], 'logout 204');
$r = http($a, 'POST', '/users/refresh', { refresh_token => $ann_refresh });
is($r->{status}, 401, 'refresh after logout: 401');

# --- rate limits: 429 with Retry-After, RateLimit-* headers from response.headers ---
$node->safe_psql('postgres', q{UPDATE booking.rate_limits SET max_requests = 2 WHERE endpoint = 'login'});
my @rl = map { http($a, 'POST', '/users/login', { email => 'bob@example.com', password => 'password-user' }) } 1 .. 3;
is_deeply([ map { $_->{status} } @rl ], [ 200, 200, 429 ], 'login limited to 2: the third is 429');
is_deeply([ $rl[0]{headers}{'ratelimit-limit'}, $rl[1]{headers}{'ratelimit-remaining'} ], [ 2, 0 ],
	'RateLimit headers from response.headers');
is($rl[2]{json}{error_code}, 'RATE_LIMIT_EXCEEDED', '429 RATE_LIMIT_EXCEEDED');
cmp_ok($rl[2]{headers}{'retry-after'} // 0, '>=', 1, '429 carries Retry-After');
$node->safe_psql('postgres', q{UPDATE booking.rate_limits SET max_requests = 1000 WHERE endpoint = 'login'});

# --- array arguments (bigint[]) from JSON and from a query string ---
$r = http($a, 'GET', "/availability/common?users=$ann_id,$bob_id&from=2030-01-01T00:00:00Z&to=2030-01-02T00:00:00Z", undef, $bob);
is($r->{status}, 200, 'bigint[] from a comma-separated query parameter') or diag($r->{content});
$r = http($a, 'POST', '/rpc/common_availability', { users => [ $ann_id, 0 + $bob_id ], from => '2030-01-01T00:00:00Z', to => '2030-01-02T00:00:00Z' }, $bob);
is($r->{status}, 200, 'bigint[] from a JSON array') or diag($r->{content});
$r = http($a, 'POST', '/rpc/common_availability', { users => [ 'x' ], from => '2030-01-01T00:00:00Z', to => '2030-01-02T00:00:00Z' }, $bob);
is($r->{status}, 422, 'bigint[] with a string element: 422');

# --- metrics ---
$r = http($a, 'GET', '/metrics');
is($r->{status}, 200, 'metrics 200');
like($r->{content}, qr/^pg_booking_http_requests_total\{method="POST",route="\/bookings",status_class="2xx",status="201"\} 3$/m, 'requests by route template, status class and status');
like($r->{content}, qr/^pg_booking_http_request_duration_seconds_bucket\{method="GET",route="\/rooms",le="\+Inf"\} \d+$/m, 'latency histogram');
like($r->{content}, qr/^pg_booking_http_errors_total\{method="POST",route="\/bookings",error_code="BOOKING_CONFLICT"\} 1$/m, 'errors by route and error_code');
like($r->{content}, qr/^pg_booking_breaker_state\{upstream="primary",state="closed"\} 1$/m, 'breaker state per upstream');
like($r->{content}, qr/^pg_booking_db_pool_connections_in_use\{upstream="primary"\} \d+$/m, 'pool in use');
unlike($r->{content}, qr/route="\/(rooms|bookings)\/\d/, 'no raw path with an id is a label');

# --- SIGTERM drains a request in flight ---
my $pid = fork // die;
if ($pid == 0)
{
	my $rr = http($a, 'POST', '/rpc/test_sleep', { seconds => 0.7 }, $bob);
	POSIX::_exit($rr->{status} == 200 ? 0 : 1);    # no END blocks: they would stop the node
}
select(undef, undef, undef, 0.3);
is(stop_adapter($a), 0, 'SIGTERM: the adapter exits 0');
waitpid($pid, 0);
is($? >> 8, 0, 'the request in flight at SIGTERM was answered 200');

# --- the request log ---
my @lines = adapter_log_lines($a);
my @parsed = grep { defined } map { AdapterTest::json_of($_) } @lines;
is(scalar @parsed, scalar @lines, 'every log line is JSON');
my @keys = qw(time request_id method route status ms user_id error_code);
is(scalar(grep { my $l = $_; !grep { !exists $l->{$_} } @keys } @parsed), scalar @parsed, 'every line has the fields');
ok((grep { ($_->{user_id} // '') eq "$ann_id" } @parsed), 'the user id is logged');
my $all = join "\n", @lines;
unlike($all, qr/password|eyJ|tap-secret|Ann planning/, 'no password, token, secret or body in the log');
ok(!grep({ $_->{status} >= 500 && ($_->{route} !~ /rpc/) } @parsed), 'no 5xx outside the deliberate ones');

done_testing();
