# Holds and approval rooms over HTTP (issue 14): each route as the roles
# that may and may not call it, each bad input a 4xx with its error_code,
# and nothing written by any of them.
use strict;
use warnings;
use lib 't';
use AdapterTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = setup_node();
my $a = start_adapter($node);
my %id;
$id{$_->[0]} = make_user($node, "$_->[0]\@example.com", $_->[1])
  for ([ 'admin', 'admin' ], [ 'fm', 'facility_manager' ], [ 'aud', 'auditor' ], [ 'ann', 'user' ], [ 'bob', 'user' ]);
my %tok = map { $_ => token_for($a, "$_\@example.com",
		{ admin => 'admin', fm => 'facility_manager', aud => 'auditor', ann => 'user', bob => 'user' }->{$_}) } keys %id;
my $q = sub { $node->safe_psql('postgres', shift) };
my $room = http($a, 'POST', '/rooms', { name => 'Hold', location => 'HQ', capacity => 4 }, $tok{admin})->{json}{id};
my $aroom = http($a, 'POST', '/rooms', { name => 'Ask', location => 'HQ', capacity => 4 }, $tok{admin})->{json}{id};
my $state = q{SELECT count(*) || ' ' || md5(coalesce(string_agg(b::text, ',' ORDER BY id), '')) FROM booking.bookings b};
my $slot = sub { my ($d, $h) = @_; ("2031-01-${d}T${h}:00:00Z", "2031-01-${d}T${h}:30:00Z") };
sub book
{
	my ($who, $room, $d, $h, %extra) = @_;
	my ($s, $e) = $slot->($d, $h);
	return http($a, 'POST', '/bookings', { room_id => $room, title => "$who $d $h", starts_at => $s, ends_at => $e, %extra }, $tok{$who});
}
sub status_code { my $r = shift; return "$r->{status} " . ($r->{json}{error_code} // $r->{json}{status} // '') }

# --- holds ---
my $before = $q->($state);
is(status_code(book(ann => $room, 10, 10, hold_minutes => 0)), '422 VALIDATION_ERROR', 'hold of 0 minutes: 422');
is(status_code(book(ann => $room, 10, 10, hold_minutes => 90)), '422 VALIDATION_ERROR', 'hold of 90 minutes: 422');
is(status_code(book(ann => $room, 10, 10, hold_minutes => 'ten')), '422 VALIDATION_ERROR', 'hold of "ten" minutes: 422');
is($q->($state), $before, 'the bad holds wrote nothing');

my $h = book(ann => $room, 10, 10, hold_minutes => 10);
is(status_code($h), '201 held', 'POST /bookings with hold_minutes: 201, held');
ok(defined $h->{json}{hold_expires_at}, 'the answer says when the hold expires');
is(status_code(book(bob => $room, 10, 10)), '409 BOOKING_CONFLICT', 'the hold blocks the slot for others');
$before = $q->($state);
is(status_code(http($a, 'POST', "/bookings/$h->{json}{id}/confirm", {}, $tok{bob})), '404 NOT_FOUND',
	"confirming someone else's hold: 404");
is(status_code(http($a, 'POST', "/bookings/$h->{json}{id}/confirm", {}, $tok{aud})), '403 FORBIDDEN',
	'the auditor may read it, not confirm it: 403');
is($q->($state), $before, 'nothing written');
is(status_code(http($a, 'POST', "/bookings/$h->{json}{id}/confirm", {}, $tok{ann})), '200 confirmed', 'the owner confirms: 200');
is(status_code(http($a, 'POST', "/bookings/$h->{json}{id}/confirm", {}, $tok{ann})), '409 INVALID_STATE', 'confirming twice: 409');

# An expired hold: cannot be confirmed, and frees its slot before any job runs.
my $h2 = book(ann => $room, 11, 10, hold_minutes => 5)->{json}{id};
$q->("UPDATE booking.bookings SET hold_expires_at = now() - interval '1 second' WHERE id = $h2");
$before = $q->($state);
is(status_code(http($a, 'POST', "/bookings/$h2/confirm", {}, $tok{ann})), '409 HOLD_EXPIRED', 'confirming an expired hold: 409 HOLD_EXPIRED');
is($q->($state), $before, 'and nothing written');
is($q->("SELECT status FROM booking.bookings WHERE id = $h2"), 'held', 'not yet marked by the worker');
is(status_code(book(bob => $room, 11, 10)), '201 confirmed', 'the slot of the expired hold is free');

# --- approval rooms ---
$before = $q->($state);
is(status_code(http($a, 'PUT', "/rooms/$aroom/approval", { requires_approval => JSON::PP::true }, $tok{ann})), '403 FORBIDDEN',
	'a plain user cannot make a room require approval');
is(status_code(http($a, 'PUT', "/rooms/$aroom/approval", { requires_approval => JSON::PP::true, approval_expiry_minutes => 0 }, $tok{fm})),
	'422 VALIDATION_ERROR', 'an expiry of 0 minutes: 422');
my $r = http($a, 'PUT', "/rooms/$aroom/approval", { requires_approval => JSON::PP::true }, $tok{fm});
is_deeply([ $r->{status}, $r->{json}{requires_approval} ], [ 200, JSON::PP::true ], 'the facility manager makes it require approval');
my $p1 = book(ann => $aroom, 12, 10);
is(status_code($p1), '201 pending', "a plain user's booking of it is pending");
my $p2 = book(ann => $aroom, 12, 11)->{json}{id};
is(status_code(book(bob => $aroom, 12, 10)), '409 BOOKING_CONFLICT', 'the request blocks the slot');
is(status_code(book(fm => $aroom, 12, 14)), '201 confirmed', 'a facility manager books it directly');
$before = $q->($state);
is(status_code(http($a, 'POST', "/bookings/$p1->{json}{id}/approve", {}, $tok{ann})), '403 FORBIDDEN', 'approving as a plain user: 403');
is(status_code(http($a, 'POST', "/bookings/$p1->{json}{id}/reject", {}, $tok{ann})), '403 FORBIDDEN', 'rejecting as a plain user: 403');
is(status_code(http($a, 'POST', "/bookings/$p1->{json}{id}/approve", {}, $tok{aud})), '403 FORBIDDEN', 'approving as the auditor: 403');
is(http($a, 'GET', '/bookings/pending', undef, $tok{ann})->{status}, 403, 'the pending list is for managers: 403');
is($q->($state), $before, 'nothing written by the refused decisions');
$r = http($a, 'GET', "/bookings/pending?room_id=$aroom", undef, $tok{fm});
is_deeply([ $r->{status}, [ map { $_->{id} } @{ $r->{json} } ] ], [ 200, [ $p1->{json}{id}, $p2 ] ], 'GET /bookings/pending: oldest first');
is(status_code(http($a, 'POST', "/bookings/$p1->{json}{id}/approve", {}, $tok{fm})), '200 confirmed', 'the facility manager approves: confirmed');
is(status_code(http($a, 'POST', "/bookings/$p2/reject", {}, $tok{admin})), '200 rejected', 'the admin rejects: rejected');
is(status_code(http($a, 'POST', "/bookings/$p2/approve", {}, $tok{fm})), '409 INVALID_STATE', 'a decided request: 409');
is(status_code(book(bob => $aroom, 12, 11)), '201 pending', 'the rejected slot is free again');
is_deeply(http($a, 'GET', "/bookings/pending?room_id=$aroom", undef, $tok{fm})->{json}[0]{title}, 'bob 12 11', 'only the new request waits');

stop_adapter($a);
done_testing();
