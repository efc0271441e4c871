# PostgREST compatibility, checked with PostgREST's own JavaScript client
# (@supabase/postgrest-js, test/node/postgrest-js.mjs): login and
# create_booking through .rpc(), a clash whose PostgrestError carries code,
# details and hint, an unauthorised call (401), GET and HEAD /rpc of a
# function that does not write (and 405 for one that writes), throwOnError().
use strict;
use warnings;
use lib 't';
use AdapterTest;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;

my $nodedir = "$ENV{TESTDIR}/../test/node";
plan skip_all => "npm ci has not run in $nodedir" unless -d "$nodedir/node_modules/\@supabase/postgrest-js";

my $node = setup_node();
my $a = start_adapter($node);
make_user($node, 'js@example.com', 'user');
my $room = $node->safe_psql('postgres', q{INSERT INTO booking.rooms (name, location, capacity) VALUES ('JS room', 'HQ', 6) RETURNING id});

my $out = `node $nodedir/postgrest-js.mjs $a->{url} js\@example.com password-user $room`;
note $out;
my $s = eval { decode_json($out) } or BAIL_OUT("postgrest-js printed no JSON: $out");

is_deeply([ $s->{login}{status}, $s->{login}{error}, $s->{login}{token_type} ], [ 200, undef, 'bearer' ], 'rpc(login): 200, a token');
is_deeply([ $s->{create_booking}{status}, $s->{create_booking}{error}, $s->{create_booking}{room_id} ], [ 200, undef, $room ],
	'rpc(create_booking): 200 (as PostgREST answers an rpc), the booking');

my $e = $s->{clash}{error} // {};
is($s->{clash}{status}, 409, 'the same slot again: 409');
is($e->{code}, 'PT409', 'PostgrestError.code is the SQLSTATE');
ok(ref $e->{details} eq 'HASH' && @{ $e->{details}{conflicts} // [] } == 1, 'PostgrestError.details lists the clash');
like($e->{hint} // '', qr/another time or room/i, 'PostgrestError.hint is the SQL HINT');
like($e->{message} // '', qr/already booked/, 'PostgrestError.message');
is($e->{error_code}, 'BOOKING_CONFLICT', 'our envelope is still there (error_code)');

is_deeply([ $s->{unauthorised}{status}, $s->{unauthorised}{error}{error_code}, $s->{unauthorised}{error}{message} ],
	[ 401, 'UNAUTHORIZED', 'a bearer token is required' ], 'rpc(me) without a token: 401, what is missing');

is_deeply([ $s->{get_rpc}{status}, $s->{get_rpc}{error} ], [ 200, undef ], 'rpc(list_rooms, {get: true}): GET /rpc, 200');
cmp_ok($s->{get_rpc}{rooms} // 0, '>=', 1, 'GET /rpc: the rooms');
is_deeply([ $s->{get_rpc_writing}{status}, $s->{get_rpc_writing}{error}{code} ], [ 405, 'PT405' ],
	'GET /rpc of a writing function: 405');
is_deeply([ $s->{head_rpc}{status}, $s->{head_rpc}{error} ], [ 200, undef ], 'rpc(list_rooms, {head: true}): HEAD /rpc, 200');

is_deeply([ @{ $s->{throw_on_error} }{qw(thrown name code)} ], [ JSON::PP::true, 'PostgrestError', 'PT409' ],
	'throwOnError(): throws a PostgrestError with its code');
like($s->{throw_on_error}{hint} // '', qr/another time or room/i, 'throwOnError(): the hint too');

is($node->safe_psql('postgres', q{SELECT count(*) FROM booking.bookings WHERE title = 'js'}), 1, 'one booking written, no more');
stop_adapter($a);
done_testing();
