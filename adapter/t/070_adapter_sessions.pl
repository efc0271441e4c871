# Sessions that end, over HTTP (issue 9): logout, a password change, a role
# change and a deactivation stop the tokens at once (checked in the
# request's own transaction); passed nights stay held; the audit trail at
# GET /admin/audit; business errors leave no user-supplied value in the
# server's log.
use strict;
use warnings;
use lib 't';
use AdapterTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = setup_node();
# The server's logging as make run sets it (scripts/run-cluster.sh); the
# test framework's default logs every statement with its parameters.
$node->append_conf('postgresql.conf', q{
log_statement = 'none'
log_min_error_statement = fatal
log_error_verbosity = terse
});
$node->reload;
my $a = start_adapter($node);
my %id;
$id{$_->[0]} = make_user($node, "$_->[0]\@example.com", $_->[1])
  for ([ 'admin', 'admin' ], [ 'fm', 'facility_manager' ], [ 'aud', 'auditor' ], [ 'ann', 'user' ], [ 'bob', 'user' ]);
my %role = (admin => 'admin', fm => 'facility_manager', aud => 'auditor', ann => 'user', bob => 'user');
my %tok = map { $_ => token_for($a, "$_\@example.com", $role{$_}) } keys %id;
my $r;
sub st { my ($r) = @_; return [ $r->{status}, $r->{json} ? $r->{json}{error_code} : undef ]; }

# --- logout ends the access token ---
my $login = http($a, 'POST', '/users/login', { email => 'bob@example.com', password => 'password-user' })->{json};
is(http($a, 'GET', '/users/me', undef, $login->{access_token})->{status}, 200, 'a fresh token works');
is(http($a, 'POST', '/users/logout', undef, $login->{access_token})->{status}, 204, 'logout');
is_deeply(st(http($a, 'GET', '/users/me', undef, $login->{access_token})), [ 401, 'UNAUTHORIZED' ],
	'after logout the same access token is refused');
is_deeply(st(http($a, 'POST', '/users/refresh', { refresh_token => $login->{refresh_token} })), [ 401, 'UNAUTHORIZED' ],
	'and so is its refresh token');
is(http($a, 'GET', '/users/me', undef, $tok{bob})->{status}, 401, "logout ended bob's other session too");
$tok{bob} = token_for($a, 'bob@example.com', 'user');
is(http($a, 'GET', '/users/me', undef, $tok{bob})->{status}, 200, 'a new login works at once');

# --- a password change needs the current one, ends the other sessions ---
my $other = http($a, 'POST', '/users/login', { email => 'ann@example.com', password => 'password-user' })->{json};
is_deeply(st(http($a, 'PATCH', '/users/me', { password => 'ann-new-password' }, $tok{ann})), [ 422, 'VALIDATION_ERROR' ],
	'no current_password: 422');
is_deeply(st(http($a, 'PATCH', '/users/me', { password => 'ann-new-password', current_password => 'nope-nope' }, $tok{ann})),
	[ 403, 'FORBIDDEN' ], 'wrong current_password: 403');
is(http($a, 'PATCH', '/users/me', { password => 'ann-new-password', current_password => 'password-user' }, $tok{ann})->{status},
	200, 'password changed');
is(http($a, 'GET', '/users/me', undef, $tok{ann})->{status}, 200, 'the session that changed it goes on');
is(http($a, 'GET', '/users/me', undef, $other->{access_token})->{status}, 401, 'the other session ended');
is(http($a, 'POST', '/users/refresh', { refresh_token => $other->{refresh_token} })->{status}, 401, 'its refresh token too');
is(http($a, 'POST', '/users/login', { email => 'ann@example.com', password => 'password-user' })->{status}, 401,
	'the old password is refused');
$tok{ann} = http($a, 'POST', '/users/login', { email => 'ann@example.com', password => 'ann-new-password' })->{json}{access_token};
ok($tok{ann}, 'the new password signs in');

# --- a demoted facility manager, a deactivated user ---
my $room = http($a, 'POST', '/rooms', { name => 'Before', location => 'HQ', capacity => 4 }, $tok{fm});
is($room->{status}, 201, 'the facility manager creates a room');
is(http($a, 'PATCH', "/users/$id{fm}", { role => 'user' }, $tok{admin})->{status}, 200, 'admin demotes the facility manager');
is_deeply(st(http($a, 'POST', '/rooms', { name => 'After', location => 'HQ', capacity => 4 }, $tok{fm})), [ 401, 'UNAUTHORIZED' ],
	"the demoted manager's token no longer creates rooms");
is(http($a, 'GET', '/rooms', undef, $tok{fm})->{status}, 401, 'nor reads anything');
is(http($a, 'PATCH', "/users/$id{bob}", { active => JSON::PP::false }, $tok{admin})->{status}, 200, 'admin deactivates bob');
is_deeply(st(http($a, 'POST', '/bookings', { room_id => $room->{json}{id}, starts_at => '2031-01-01T09:00:00Z',
	ends_at => '2031-01-01T10:00:00Z', title => 'still here?' }, $tok{bob})), [ 401, 'UNAUTHORIZED' ],
	"the deactivated user's token books nothing");
is($node->safe_psql('postgres', "SELECT count(*) FROM booking.bookings WHERE title = 'still here?'"), '0', 'nothing written');
# A token signed with the secret but older than the last logout (no session id).
my $now = time;
is(http($a, 'GET', '/users/me', undef, mint_jwt({ sub => "$id{ann}", role => 'booking_user', iat => int($now) - 3600,
	exp => int($now) + 600 }))->{status}, 401, 'a token issued before the last password change is refused');

# --- passed nights stay held ---
my $hotel = http($a, 'POST', '/hotels', { name => 'Inn', location => 'Faro' }, $tok{admin})->{json}{id};
my ($d_3, $d5, $d0) = map { $node->safe_psql('postgres', "SELECT to_char(booking.hotel_today() + $_, 'YYYY-MM-DD')") } (-3, 5, 0);
is(http($a, 'POST', "/inventory/$hotel/adjust", { room_type => 'double', from => $d_3, to => $d5, total => 2 }, $tok{admin})->{status},
	200, 'inventory');
my $res = http($a, 'POST', '/reservations', { hotel_id => $hotel, room_type => 'double', guest_name => 'Begun',
	arrival_date => $d_3, stay_length => 5, adults => 1 }, $tok{admin});
is($res->{status}, 201, 'a stay that began three days ago') or diag($res->{content});
my $held = "SELECT sum(total - available) FROM booking.inventory WHERE hotel_id = $hotel AND night < booking.hotel_today()";
is($node->safe_psql('postgres', $held), '3', 'holds its three passed nights');
is_deeply(st(http($a, 'PATCH', "/reservations/$res->{json}{id}", { stay_length => 1 }, $tok{admin})), [ 409, 'NIGHTS_PASSED' ],
	'shortening it to one night: 409 NIGHTS_PASSED');
is(http($a, 'PATCH', "/reservations/$res->{json}{id}", { stay_length => 3 }, $tok{admin})->{status}, 200, 'ending today: 200');
is($node->safe_psql('postgres', $held), '3', 'the passed nights are still held');
is($node->safe_psql('postgres', "SELECT sum(total - available) FROM booking.inventory WHERE hotel_id = $hotel AND night >= booking.hotel_today()"),
	'0', 'the future ones came back');

# --- the audit trail ---
$r = http($a, 'GET', '/admin/audit?limit=100', undef, $tok{aud});
is($r->{status}, 200, 'GET /admin/audit as auditor');
my %actions;
$actions{$_->{action}}++ for @{ $r->{json} // [] };
is_deeply([ @actions{qw(user.role_change user.deactivate room.create hotel.create inventory.adjust)} ], [ 1, 1, 1, 1, 1 ],
	'one entry per privileged action');
my @http = grep { $_->{actor_role} ne 'superuser' } @{ $r->{json} };
ok(@http && (grep { ($_->{request_id} // '') ne '' } @http) == @http, 'every entry made over HTTP carries the request id');
$r = http($a, 'GET', '/admin/audit?action=user', undef, $tok{admin});
is_deeply([ $r->{status}, scalar @{ $r->{json} } ], [ 200, 2 ], 'filtered by action');
is(http($a, 'GET', '/admin/audit', undef, $tok{ann})->{status}, 403, 'a user may not read it');

# --- the server log carries no user-supplied values ---
my $offset = -s $node->logfile;
my @bad = (
	[ 'POST', '/users/register', { email => 'MARKER-A-not-an-email', password => 'long-enough-pw', full_name => 'X' } ],
	[ 'POST', '/users/register', { email => 'ann@example.com', password => 'long-enough-pw', full_name => 'MARKER-B' } ],
	[ 'POST', '/users/login', { email => 'MARKER-C@example.com', password => 'MARKER-D-password' } ],
	[ 'POST', '/bookings', { room_id => $room->{json}{id}, starts_at => 'MARKER-E', ends_at => '2031-01-01T10:00:00Z', title => 'MARKER-F' }, $tok{ann} ],
	[ 'POST', '/rooms', { name => 'Before', location => 'MARKER-G', capacity => 4 }, $tok{admin} ],
	[ 'GET', '/reservations/MARKER-H', undef, $tok{ann} ],
	[ 'POST', '/reservations', { hotel_id => $hotel, room_type => 'MARKER-I', guest_name => 'MARKER-J',
		arrival_date => $d5, stay_length => 1, adults => 1 }, $tok{ann} ],
	[ 'POST', '/rpc/create_room', { name => 'Before', location => 'x', capacity => 'MARKER-K' }, $tok{admin} ],
);
for my $b (@bad)
{
	my $r = http($a, $b->[0], $b->[1], $b->[2], $b->[3]);
	cmp_ok($r->{status}, '>=', 400, "$b->[0] $b->[1]: refused ($r->{status})");
}
$node->safe_psql('postgres', 'SELECT 1');    # the log is written by now
my $log = slurp_file($node->logfile, $offset);
my @leaks = $log =~ /(MARKER-[A-K])/g;
is_deeply(\@leaks, [], 'no marker in the server log');
# Control: with business errors logged, the same inputs do leave markers.
$node->append_conf('postgresql.conf', "pg_booking.log_business_errors = on\n");
$node->reload;
$offset = -s $node->logfile;
http($a, $_->[0], $_->[1], $_->[2], $_->[3]) for @bad;
$node->safe_psql('postgres', 'SELECT 1');
my @control = slurp_file($node->logfile, $offset) =~ /(MARKER-[A-K])/g;
cmp_ok(scalar @control, '>', 0, 'control: with pg_booking.log_business_errors = on they do (' . scalar(@control) . ')');

stop_adapter($a);
done_testing();
