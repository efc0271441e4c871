# The routes of the other areas that exist in SQL now: availability of
# people, reviews and moderation, analytics, events, as each role.
use strict;
use warnings;
use lib 't';
use AdapterTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = setup_node();
# A short client timeout: the event stream must outlive it (keepalives).
my $a = start_adapter($node, env => { ADAPTER_CLIENT_TIMEOUT_S => 2 });
my %id;
$id{$_->[0]} = make_user($node, "$_->[0]\@example.com", $_->[1])
  for ([ 'admin', 'admin' ], [ 'fm', 'facility_manager' ], [ 'aud', 'auditor' ], [ 'mod', 'moderator' ],
	[ 'svc', 'service_account' ], [ 'ann', 'user' ], [ 'bob', 'user' ]);
my %tok = map { $_ => token_for($a, "$_\@example.com",
		{ admin => 'admin', fm => 'facility_manager', aud => 'auditor', mod => 'moderator',
			svc => 'service_account', ann => 'user', bob => 'user' }->{$_}) } keys %id;
my $room = http($a, 'POST', '/rooms', { name => 'Blue', location => 'HQ', capacity => 8 }, $tok{admin})->{json}{id};
# An ended booking of Ann's, so she may review the room.
$node->safe_psql('postgres', qq{INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
  VALUES ($room, $id{ann}, 'past', now() - interval '3 hours', now() - interval '2 hours')});
my $r;

# --- availability of people ---
$r = http($a, 'PUT', '/users/me/availability',
	[ { starts_at => '2030-05-01T09:00:00Z', ends_at => '2030-05-01T17:00:00Z' } ], $tok{ann});
is($r->{status}, 200, 'PUT /users/me/availability with a JSON array body') or diag($r->{content});
http($a, 'PUT', '/users/me/availability', [ { starts_at => '2030-05-01T12:00:00Z', ends_at => '2030-05-01T18:00:00Z' } ], $tok{bob});
$r = http($a, 'GET', "/users/$id{ann}/availability", undef, $tok{bob});
is_deeply([ $r->{status}, scalar @{ $r->{json} // [] } ], [ 200, 1 ], 'GET /users/{id}/availability');
$r = http($a, 'GET', "/availability/common?users=$id{ann},$id{bob}&from=2030-05-01T00:00:00Z&to=2030-05-02T00:00:00Z", undef, $tok{ann});
is_deeply([ $r->{status}, $r->{json}[0]{starts_at} ], [ 200, '2030-05-01T12:00:00+00:00' ], 'GET /availability/common intersects');
$r = http($a, 'POST', '/meetings/suggest', { attendees => [ 0 + $id{ann}, 0 + $id{bob} ], duration_minutes => 60,
	from => '2030-05-01T00:00:00Z', to => '2030-05-02T00:00:00Z' }, $tok{ann});
is_deeply([ $r->{status}, $r->{json}[0]{room_id} ], [ 200, $room ], 'POST /meetings/suggest finds a slot and a room') or diag($r->{content});
$r = http($a, 'PUT', '/users/me/availability', { starts_at => 'x' }, $tok{ann});
cmp_ok($r->{status}, '>=', 400, 'availability body that is not a list: 4xx') and cmp_ok($r->{status}, '<', 500, '... not 5xx');

# --- reviews ---
$r = http($a, 'POST', '/reviews', { room_id => $room, rating => 5, comment => 'great' }, $tok{bob});
is_deeply([ $r->{status}, $r->{json}{error_code} ], [ 403, 'FORBIDDEN' ], 'review without an ended booking: 403');
$r = http($a, 'POST', '/reviews', { room_id => $room, rating => 9 }, $tok{ann});
is($r->{status}, 422, 'rating out of range: 422');
$r = http($a, 'POST', '/reviews', { room_id => $room, rating => 4, comment => 'good' }, $tok{ann});
is($r->{status}, 201, 'POST /reviews 201');
my $rev = $r->{json}{id};
$r = http($a, 'POST', '/reviews', { room_id => $room, rating => 4 }, $tok{ann});
is_deeply([ $r->{status}, $r->{json}{error_code} ], [ 409, 'ALREADY_EXISTS' ], 'second review: 409');
$r = http($a, 'GET', "/rooms/$room/reviews", undef, $tok{bob});
is_deeply([ $r->{status}, scalar @{ $r->{json} } ], [ 200, 1 ], 'GET /rooms/{id}/reviews');
$r = http($a, 'PATCH', "/reviews/$rev", { rating => 3 }, $tok{ann});
is_deeply([ $r->{status}, $r->{json}{rating} ], [ 200, 3 ], 'PATCH /reviews/{id} by the author');
$r = http($a, 'PATCH', "/reviews/$rev", { rating => 1 }, $tok{bob});
is($r->{status}, 403, "PATCH someone else's review: 403");
$r = http($a, 'POST', "/reviews/$rev/votes", { helpful => JSON::PP::true }, $tok{bob});
is($r->{status}, 200, 'POST /reviews/{id}/votes');
$r = http($a, 'POST', "/reviews/$rev/votes", { helpful => JSON::PP::true }, $tok{ann});
is($r->{status}, 403, 'the author may not vote');
$r = http($a, 'POST', "/reviews/$rev/votes", { helpful => 'yes' }, $tok{bob});
is($r->{status}, 422, 'vote with a string for a boolean: 422');
$r = http($a, 'POST', "/reviews/$rev/flag", { reason => 'spam' }, $tok{bob});
is($r->{status}, 200, 'POST /reviews/{id}/flag');
$r = http($a, 'GET', '/moderation/reviews?status=flagged', undef, $tok{ann});
is($r->{status}, 403, 'a user on /moderation: 403');
$r = http($a, 'GET', '/moderation/reviews?status=flagged', undef, $tok{mod});
is_deeply([ $r->{status}, scalar @{ $r->{json} } ], [ 200, 1 ], 'moderator sees the queue');
$r = http($a, 'POST', "/moderation/reviews/$rev/hide", undef, $tok{mod});
is($r->{status}, 200, 'moderator hides');
is(scalar @{ http($a, 'GET', "/rooms/$room/reviews", undef, $tok{bob})->{json} }, 0, 'hidden review gone from the list');
$r = http($a, 'POST', "/moderation/reviews/$rev/restore", undef, $tok{admin});
is($r->{status}, 200, 'admin restores');

# --- analytics: who may read what ---
my @analytics = (
	[ '/admin/analytics/bookings/summary', [qw(admin fm aud svc)] ],
	[ '/admin/analytics/bookings/by-room', [qw(admin fm aud svc)] ],
	[ '/admin/analytics/bookings/per-day?from=2030-01-01&to=2030-01-31', [qw(admin fm aud svc)] ],
	[ '/admin/analytics/reviews/average-rating-by-room', [qw(admin mod aud)] ],
	[ '/admin/analytics/rate-limits', [qw(admin aud)] ],
);
for my $an (@analytics)
{
	my ($path, $allowed) = @$an;
	my %ok = map { $_ => 1 } @$allowed;
	my @got = map { http($a, 'GET', $path, undef, $tok{$_})->{status} } sort keys %tok;
	my @want = map { $ok{$_} ? 200 : 403 } sort keys %tok;
	is_deeply(\@got, \@want, "GET $path: 200 for @$allowed, 403 for the others");
}
$r = http($a, 'GET', '/admin/analytics/bookings/summary', undef, $tok{admin});
cmp_ok($r->{json}{total}, '>=', 1, 'summary counts the booking');

# --- hotels, inventory, reservations, jobs ---
$r = http($a, 'POST', '/hotels', { name => 'Grand', location => 'Lisbon' }, $tok{ann});
is($r->{status}, 403, 'a user creates a hotel: 403');
$r = http($a, 'POST', '/hotels', { name => 'Grand', location => 'Lisbon' }, $tok{admin});
is($r->{status}, 201, 'POST /hotels 201') or diag($r->{content});
my $hotel = $r->{json}{id};
is(http($a, 'GET', '/hotels?location=lisbon', undef, $tok{ann})->{status}, 200, 'GET /hotels?location');
is_deeply([ @{ http($a, 'GET', "/hotels/$hotel", undef, $tok{ann})->{json} }{qw(id name)} ], [ $hotel, 'Grand' ], 'GET /hotels/{id}');
is(http($a, 'GET', "/inventory/hotel_name/$hotel", undef, $tok{ann})->{json}{name}, 'Grand', 'GET /inventory/hotel_name/{id}');
$r = http($a, 'POST', "/inventory/$hotel/adjust", { room_type => 'double', from => '2030-07-01', to => '2030-07-10', total => 1 }, $tok{fm});
is($r->{status}, 200, 'POST /inventory/{hotel_id}/adjust') or diag($r->{content});
$r = http($a, 'PUT', "/inventory/$hotel/restrictions", { room_type => 'double', from => '2030-07-01', to => '2030-07-10', min_stay => 1 }, $tok{fm});
is($r->{status}, 200, 'PUT /inventory/{hotel_id}/restrictions') or diag($r->{content});
$r = http($a, 'GET', "/inventory/$hotel?from=2030-07-01&to=2030-07-03&room_type=double", undef, $tok{ann});
is($r->{status}, 200, 'GET /inventory/{hotel_id}') or diag($r->{content});
$r = http($a, 'GET', '/availability?location=Lisbon&arrival=2030-07-02&nights=2', undef, $tok{ann});
is($r->{status}, 200, 'GET /availability') or diag($r->{content});
my %stay = (hotel_id => 0 + $hotel, room_type => 'double', guest_name => 'Secret Guestname', arrival_date => '2030-07-02', stay_length => 2);
$r = http($a, 'POST', '/reservations', \%stay, $tok{ann});
is($r->{status}, 201, 'POST /reservations 201') or diag($r->{content});
my $res = $r->{json}{id};
$r = http($a, 'POST', '/reservations', { %stay, guest_name => 'Other' }, $tok{bob});
is_deeply([ $r->{status}, $r->{json}{error_code} ], [ 409, 'NO_AVAILABILITY' ], 'the only room is taken: 409 NO_AVAILABILITY');
is(http($a, 'GET', "/reservations/$res", undef, $tok{ann})->{status}, 200, 'GET /reservations/{uuid} by the owner');
is(http($a, 'GET', "/reservations/$res", undef, $tok{bob})->{status}, 404, "someone else's reservation: 404");
is(http($a, 'GET', '/reservations/not-a-uuid', undef, $tok{ann})->{status}, 400, 'a bad uuid: 400');
is(scalar @{ http($a, 'GET', '/reservations', undef, $tok{ann})->{json} }, 1, 'GET /reservations: own');
$r = http($a, 'PATCH', "/reservations/$res", { adults => 2 }, $tok{ann});
is($r->{status}, 200, 'PATCH /reservations/{id}') or diag($r->{content});
is(http($a, 'POST', "/reservations/$res/check-in", undef, $tok{ann})->{status}, 403, 'a user checks in: 403');
is(http($a, 'POST', "/reservations/$res/check-in", undef, $tok{fm})->{status}, 200, 'POST /reservations/{id}/check-in');
is(http($a, 'POST', "/reservations/$res/check-out", undef, $tok{fm})->{status}, 200, 'POST /reservations/{id}/check-out');
is(http($a, 'DELETE', "/reservations/$res", undef, $tok{ann})->{status}, 409, 'cancelling a completed stay: 409');
my $runs_before = $node->safe_psql('postgres', 'SELECT count(*) FROM booking.checkout_runs');
$r = http($a, 'POST', '/admin/jobs/checkout/run', { as_of => '2030-07-05' }, $tok{admin});
is_deeply([ $r->{status}, $r->{json}{error_code}, $r->{json}{details}{as_of} ], [ 422, 'VALIDATION_ERROR', '2030-07-05' ],
	'POST /admin/jobs/checkout/run for a date not yet due: 422 naming it') or diag($r->{content});
ok(defined $r->{json}{details}{latest_allowed}, '... and the latest date allowed');
is($node->safe_psql('postgres', 'SELECT count(*) FROM booking.checkout_runs'), $runs_before, '... and no history row');
$r = http($a, 'POST', '/admin/jobs/checkout/run', {}, $tok{admin});
is($r->{status}, 200, 'POST /admin/jobs/checkout/run (the date due now)') or diag($r->{content});
is(http($a, 'GET', '/admin/jobs', undef, $tok{admin})->{status}, 200, 'GET /admin/jobs');
is(http($a, 'GET', '/admin/jobs', undef, $tok{ann})->{status}, 403, 'GET /admin/jobs as a user: 403');

# --- events (published by booking.publish_events: no publisher worker serves this database) ---
$node->safe_psql('postgres', 'SELECT booking.publish_events()');
$r = http($a, 'GET', '/events?after_id=0', undef, $tok{admin});
is($r->{status}, 200, 'GET /events (list) as admin');
ok(scalar(grep { $_->{kind} =~ /^review\./ } @{ $r->{json} }), 'review events are there');
is(http($a, 'GET', '/events', undef, $tok{ann})->{status}, 403, 'GET /events as a user: 403');

# --- events as a server-sent event stream ---
my $sse = $PostgreSQL::Test::Utils::tmp_check . '/sse.txt';
my $curl = IPC::Run::start([ 'curl', '-sN', '--max-time', '4', '-H', 'Accept: text/event-stream',
		'-H', "Authorization: Bearer $tok{admin}", "$a->{url}/events?after_id=0" ], '>', $sse);
select(undef, undef, undef, 1.0);
$r = http($a, 'POST', '/bookings', { room_id => $room, starts_at => '2030-06-01T09:00:00Z',
	ends_at => '2030-06-01T10:00:00Z', title => 'live' }, $tok{bob});
is($r->{status}, 201, 'a booking while the stream is open');
my $live_id = $r->{json}{id};
$node->safe_psql('postgres', 'SELECT booking.publish_events()');
# A NOTIFY that announces nothing new sends nothing (the stream reads the table).
$node->safe_psql('postgres', q{SELECT pg_notify('pg_booking_events', '{"last_id": 0}')});
select(undef, undef, undef, 2.2);    # past the 2 s client timeout, idle but for keepalives
$r = http($a, 'DELETE', "/bookings/$live_id", undef, $tok{bob});
is($r->{status}, 200, 'the booking is cancelled while the stream is open');
$node->safe_psql('postgres', 'SELECT booking.publish_events()');
select(undef, undef, undef, 0.5);
$curl->finish;
my $stream = slurp_file($sse);
like($stream, qr/^retry: 2000$/m, 'SSE: retry hint');
like($stream, qr/^event: review\.created\ndata: \{.*"kind":"review\.created"/m, 'SSE: the backlog (review.created)');
like($stream, qr/^id: \d+\nevent: booking\.created\ndata: \{.*"entity_id":"$live_id"/m, 'SSE: the live booking.created');
# Live events carry the same row as a replay: compare with GET /events.
my %listed = map { ($_->{id} => $_) } @{ http($a, 'GET', '/events?after_id=0&limit=500', undef, $tok{admin})->{json} };
my @flat = ($stream =~ /^id: (\d+)\nevent: [^\n]+\ndata: (\{[^\n]*\})$/mg);
my @sent = map { [ $flat[2 * $_], $flat[2 * $_ + 1] ] } 0 .. $#flat / 2;
my $json_pp = JSON::PP->new->canonical;
is(scalar(grep { my $l = $listed{$_->[0]}; !$l || $json_pp->encode($json_pp->decode($_->[1])) ne $json_pp->encode($l) } @sent), 0,
	'SSE: every event sent equals the row GET /events lists (live and replayed alike)');
my @ids = map { $_->[0] } @sent;
is(scalar(grep { $ids[$_] <= $ids[$_ - 1] } 1 .. $#ids), 0, 'SSE: ids strictly increasing, none twice') or diag "@ids";
like($stream, qr/^: keepalive$/m, 'SSE: keepalives while idle');
like($stream, qr/^id: \d+\nevent: booking\.cancelled\ndata: \{.*"entity_id":"$live_id"/m, 'SSE: the stream outlived the 2 s client timeout');
my ($out, $err) = ('', '');
IPC::Run::run([ 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '3', '-H', 'Accept: text/event-stream',
		'-H', "Authorization: Bearer $tok{ann}", "$a->{url}/events" ], '>', \$out, '2>', \$err);
is($out, '403', 'SSE as a plain user: 403, no stream');

# --- a signature that changes while the adapter runs (an upgrade) ---
$node->safe_psql('postgres', q{CREATE FUNCTION api.test_sig(a integer) RETURNS jsonb LANGUAGE sql AS $$ SELECT jsonb_build_object('a', a) $$;
  GRANT EXECUTE ON FUNCTION api.test_sig(integer) TO booking_api});
# A miss reloads the catalog at most once a second: let a second pass.
select(undef, undef, undef, 1.1);
is(http($a, 'POST', '/rpc/test_sig', { a => 1 }, $tok{bob})->{status}, 200, 'a new function is found (catalog reloaded on a miss)');
$node->safe_psql('postgres', q{DROP FUNCTION api.test_sig(integer);
  CREATE FUNCTION api.test_sig(b integer) RETURNS jsonb LANGUAGE sql AS $$ SELECT jsonb_build_object('b', b) $$;
  GRANT EXECUTE ON FUNCTION api.test_sig(integer) TO booking_api});
select(undef, undef, undef, 1.1);
$r = http($a, 'POST', '/rpc/test_sig', { a => 1 }, $tok{bob});
is($r->{status}, 404, 'the old signature: 404 (42883), which reloads the catalog');
$r = http($a, 'POST', '/rpc/test_sig', { b => 2 }, $tok{bob});
is_deeply([ $r->{status}, $r->{json}{b} ], [ 200, 2 ], 'the new signature works on the next call');

# --- the review is deleted last (204) ---
$r = http($a, 'DELETE', "/reviews/$rev", undef, $tok{ann});
is_deeply([ $r->{status}, $r->{content} // '' ], [ 204, '' ], 'DELETE /reviews/{id}: 204');
is(stop_adapter($a), 0, 'adapter stops cleanly');
unlike(join("\n", adapter_log_lines($a)), qr/Secret Guestname|password|eyJ/, 'no guest name, password or token in the log');
done_testing();
