# The success schemas of /openapi.json (booking.http_schemas and
# booking.http_results) say what the functions really answer: every
# function with a declared schema is called through the adapter over the
# demo data, and Ajv validates each answer against the schema the document
# declares for that route and status.  A schema without a call here fails
# (so a new one comes with its proof), and two negative controls show the
# validation can fail: an answer with a member taken out, and a schema
# changed in SQL to require a member no answer has.
use strict;
use warnings;
use POSIX ();
use lib 't';
use AdapterTest;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use Time::HiRes qw(usleep);

my $nodedir = "$ENV{TESTDIR}/../test/node";
plan skip_all => "npm ci has not run in $nodedir" unless -x "$nodedir/node_modules/.bin/redocly";

my $root = "$ENV{TESTDIR}/..";
my $node = setup_node();
my ($rc, $out, $err) = $node->psql('postgres', slurp_file("$root/scripts/demo.sql"), extra_params => [ '-v', 'ON_ERROR_STOP=1' ]);
is($rc, 0, 'demo.sql loads') or diag $err;
my $a = start_adapter($node);
my $tmp = $PostgreSQL::Test::Utils::tmp_check;
my $json = JSON::PP->new->canonical;

my %tok = map { my $r = http($a, 'POST', '/users/login', { email => "$_\@demo.pg-booking.test", password => "$_-demo-pw" });
	($_ => $r->{json}{access_token}) } qw(user admin);
my $q = sub { $node->safe_psql('postgres', shift) };
my $room = $q->(q{SELECT id FROM booking.rooms WHERE name = 'Boardroom'}) + 0;
my $hotel = $q->(q{SELECT id FROM booking.hotels WHERE name = 'Grand Lisbon'}) + 0;
my $today = $q->(q{SELECT booking.hotel_today()});
my $day = sub { $q->("SELECT (date '$today' + $_[0])::text") };

# One call: [who, METHOD, path template, values for its {names}, body or query].
my @samples;
my %calls;
sub call
{
	my ($who, $method, $template, $vars, $body) = @_;
	(my $url = $template) =~ s/\{([a-z_]+)\}/$vars->{$1}/g;
	my $query = $method =~ /^(GET|DELETE)$/ && $body
	  ? '?' . join('&', map { "$_=$body->{$_}" } sort keys %$body) : '';
	my $r = http($a, $method, "$url$query", $method =~ /^(GET|DELETE)$/ ? undef : ($body // {}), $tok{$who});
	push @samples, { method => $method, path => $template, status => $r->{status} + 0, body => $r->{json} };
	$calls{"$method $template"} = $r->{status};
	diag "$method $url$query as $who: $r->{status} $r->{content}" if $r->{status} >= 400;
	return $r->{json};
}

my $b = call(admin => 'POST', '/bookings', {},
	{ room_id => $room, title => 'Schema check', starts_at => $day->(61) . 'T10:00:00Z', ends_at => $day->(61) . 'T10:30:00Z' });
call(admin => 'POST', '/bookings', {},
	{ room_id => $room, title => 'Schema series', starts_at => $day->(60) . 'T09:00:00Z', ends_at => $day->(60) . 'T09:30:00Z',
	  recurrence => { frequency => 'daily', count => 2 } });
call(admin => 'GET', '/bookings', {}, { limit => 5 });
call(admin => 'GET', '/bookings/{id}', { id => $b->{id} });
call(admin => 'PATCH', '/bookings/{id}', { id => $b->{id} }, { title => 'Schema check, renamed' });
call(admin => 'DELETE', '/bookings/{id}', { id => $b->{id} });
call(user => 'GET', '/rooms/{room_id}/schedule', { room_id => $room },
	{ from => $day->(-30) . 'T00:00:00Z', to => $day->(30) . 'T00:00:00Z' });

my $r = call(admin => 'POST', '/rooms', {}, { name => 'Schema room', location => 'HQ', capacity => 3 });
call(user => 'GET', '/rooms', {});
call(user => 'GET', '/rooms/{id}', { id => $r->{id} });
call(admin => 'PATCH', '/rooms/{id}', { id => $r->{id} }, { capacity => 4 });

my $u = call(admin => 'POST', '/users/register', {}, { email => 'schema@example.com', password => 'a long enough password', full_name => 'Schema Check' });
call(admin => 'GET', '/users', {});
call(admin => 'GET', '/users/{id}', { id => $u->{id} });
call(admin => 'PATCH', '/users/{id}', { id => $u->{id} }, { active => JSON::PP::true });
call(user => 'GET', '/users/me', {});
call(user => 'PATCH', '/users/me', {}, { full_name => 'Uma U. User' });
call(user => 'POST', '/users/login', {}, { email => 'user@demo.pg-booking.test', password => 'user-demo-pw' });

my $h = call(admin => 'POST', '/hotels', {}, { name => 'Schema Inn', location => 'Porto' });
call(user => 'GET', '/hotels', {});
call(user => 'GET', '/hotels/{id}', { id => $h->{id} });
call(admin => 'PUT', '/hotels/{hotel_id}/time-zone', { hotel_id => $h->{id} }, { time_zone => 'Pacific/Honolulu', checkout_time => '02:30' });
call(user => 'GET', '/inventory', {}, { hotel_id => $hotel });

my $res = call(admin => 'POST', '/reservations', {},
	{ hotel_id => $hotel, room_type => 'double', guest_name => 'Schema Guest', arrival_date => $today, stay_length => 1 });
call(admin => 'GET', '/reservations', {});
call(admin => 'GET', '/reservations/{id}', { id => $res->{id} });
call(admin => 'PATCH', '/reservations/{id}', { id => $res->{id} }, { guest_name => 'Schema Guest Jr' });
call(admin => 'POST', '/reservations/{id}/check-in', { id => $res->{id} });
call(admin => 'POST', '/reservations/{id}/check-out', { id => $res->{id} });
my $res2 = call(admin => 'POST', '/reservations', {},
	{ hotel_id => $hotel, room_type => 'double', guest_name => 'Schema Guest II', arrival_date => $day->(40), stay_length => 2 });
call(admin => 'DELETE', '/reservations/{id}', { id => $res2->{id} });

# Only someone who used a room reviews it: Uma used the new room an hour ago.
$q->(qq{INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at, status)
  SELECT $r->{id}, id, 'Used it', now() - interval '2 hours', now() - interval '1 hour', 'completed'
    FROM booking.users WHERE email = 'user\@demo.pg-booking.test'});
my $rv = call(user => 'POST', '/reviews', {}, { room_id => $r->{id}, rating => 4, comment => 'Fits four.' });
call(user => 'PATCH', '/reviews/{id}', { id => $rv->{id} }, { rating => 5 });
call(user => 'GET', '/rooms/{room_id}/reviews', { room_id => $room });
call(admin => 'GET', '/events', {}, { limit => 20 });
call(user => 'GET', '/rooms/{room_id}/availability', { room_id => $room },
	{ from => $day->(1) . 'T00:00:00Z', to => $day->(2) . 'T00:00:00Z' });
call(user => 'GET', '/hotels/{hotel_id}/name', { hotel_id => $hotel });
call(admin => 'POST', '/inventory/{hotel_id}/adjust', { hotel_id => $hotel }, { room_type => 'double', from => $day->(5), to => $day->(6), delta => 1 });
call(admin => 'GET', '/moderation/reviews', {});
call(admin => 'GET', '/admin/analytics/bookings/summary', {});
call(admin => 'GET', '/admin/analytics/bookings/by-room', {});
call(admin => 'GET', '/admin/analytics/reviews/average-rating-by-room', {});
call(admin => 'GET', '/admin/analytics/rate-limits', {});
call(admin => 'GET', '/admin/jobs', {});
call(admin => 'GET', '/admin/audit', {});
call(admin => 'POST', '/moderation/reviews/{id}/hide', { id => $rv->{id} });
call(admin => 'POST', '/moderation/reviews/{id}/restore', { id => $rv->{id} });
call(admin => 'POST', '/admin/jobs/checkout/run', {});
call(admin => 'GET', '/admin/analytics/occupancy', {}, { hotel_id => $hotel, from => $today, to => $day->(7) });
call(user => 'GET', '/availability', {}, { location => 'Lisbon', arrival => $day->(3), nights => 2 });
call(user => 'PUT', '/users/me/availability', {},
	[ { starts_at => $day->(10) . 'T09:00:00Z', ends_at => $day->(10) . 'T12:00:00Z' } ]);	# the whole body is the list
my $me = http($a, 'GET', '/users/me', undef, $tok{user})->{json};
call(user => 'GET', '/users/{user_id}/availability', { user_id => $me->{id} });
call(admin => 'PUT', '/inventory/{hotel_id}/restrictions', { hotel_id => $hotel },
	{ room_type => 'double', from => $day->(20), to => $day->(21), min_stay => 2 });
call(admin => 'PUT', '/hotels/{hotel_id}/currency', { hotel_id => $hotel }, { currency => 'EUR' });
call(admin => 'PUT', '/hotels/{hotel_id}/cancellation-policy', { hotel_id => $hotel }, { free_days => 2, penalty => 'first_night' });
call(admin => 'PUT', '/inventory/{hotel_id}/rates', { hotel_id => $hotel }, { room_type => 'double', from => $day->(30), to => $day->(31), amount => 110 });
call(admin => 'PUT', '/inventory/{hotel_id}/extra-person-charges', { hotel_id => $hotel },
	{ room_type => 'double', base_adults => 2, extra_adult_amount => 25, child_amount => 10.5 });
call(user => 'POST', '/reservations/quote', {}, { hotel_id => $hotel, room_type => 'double', arrival_date => $day->(30), stay_length => 2,
	adults => 3, children => 1 });
call(admin => 'GET', '/admin/analytics/hotels/{hotel_id}/kpis', { hotel_id => $hotel }, { from => $day->(-7), to => $day->(7) });
call(admin => 'GET', '/admin/analytics/hotels/{hotel_id}/pickup', { hotel_id => $hotel }, { from => $day->(-7), to => $day->(7) });
call(admin => 'GET', '/admin/analytics/hotels/{hotel_id}/lead-time', { hotel_id => $hotel }, { from => $day->(-7), to => $day->(30) });
call(admin => 'GET', '/admin/analytics/bookings/per-day', {}, { from => $day->(-3), to => $today });
my $admin_id = http($a, 'GET', '/users/me', undef, $tok{admin})->{json}{id};
call(user => 'GET', '/availability/common', {},
	{ users => "$me->{id},$admin_id", from => $day->(10) . 'T00:00:00Z', to => $day->(11) . 'T00:00:00Z' });
call(user => 'POST', '/meetings/suggest', {},
	{ attendees => [ $me->{id} ], duration_minutes => 60, from => $day->(10) . 'T09:00:00Z', to => $day->(10) . 'T12:00:00Z' });
call(admin => 'POST', '/reviews/{id}/votes', { id => $rv->{id} }, { helpful => JSON::PP::true });
call(admin => 'POST', '/reviews/{id}/flag', { id => $rv->{id} }, { reason => 'schema check' });
call(user => 'DELETE', '/reviews/{id}', { id => $rv->{id} });
call(admin => 'DELETE', '/rooms/{id}', { id => $r->{id} });
my $login = http($a, 'POST', '/users/login', { email => 'user@demo.pg-booking.test', password => 'user-demo-pw' })->{json};
call(user => 'POST', '/users/refresh', {}, { refresh_token => $login->{refresh_token} });

call(admin => 'PUT', '/inventory/{hotel_id}/overbooking', { hotel_id => $hotel }, { room_type => 'suite', percent => 34 });
my $blk = call(admin => 'POST', '/inventory/{hotel_id}/blocks', { hotel_id => $hotel },
	{ room_type => 'double', group_code => 'SCHEMA-1', from => $day->(50), to => $day->(52), rooms => 2, release_date => $day->(45) });
call(admin => 'POST', '/reservations', {},
	{ hotel_id => $hotel, room_type => 'double', guest_name => 'Schema Group', arrival_date => $day->(50), stay_length => 2, group_code => 'SCHEMA-1' });
call(admin => 'GET', '/inventory/{hotel_id}/blocks', { hotel_id => $hotel });
call(admin => 'GET', '/inventory/{hotel_id}/blocks/{id}', { hotel_id => $hotel, id => $blk->{id} });
call(admin => 'POST', '/inventory/{hotel_id}/blocks/{id}/release', { hotel_id => $hotel, id => $blk->{id} });
call(user => 'POST', '/users/me/calendar-token', {});
call(user => 'DELETE', '/users/me/calendar-token', {});

# Holds and approval rooms (issue 14).
my $hold = call(user => 'POST', '/bookings', {},
	{ room_id => $room, title => 'Schema hold', starts_at => $day->(63) . 'T10:00:00Z', ends_at => $day->(63) . 'T10:30:00Z',
	  hold_minutes => 10 });
call(user => 'POST', '/bookings/{id}/confirm', { id => $hold->{id} });
my $ar = call(admin => 'POST', '/rooms', {}, { name => 'Schema approval room', location => 'HQ', capacity => 3 });
call(admin => 'PUT', '/rooms/{id}/approval', { id => $ar->{id} }, { requires_approval => JSON::PP::true, approval_expiry_minutes => 60 });
my @req = map { call(user => 'POST', '/bookings', {},
	{ room_id => $ar->{id}, title => "Schema request $_", starts_at => $day->(63) . "T1${_}:00:00Z", ends_at => $day->(63) . "T1${_}:30:00Z" }) } 1, 2;
call(admin => 'GET', '/bookings/pending', {}, { room_id => $ar->{id} });
call(admin => 'POST', '/bookings/{id}/approve', { id => $req[0]{id} });
call(admin => 'POST', '/bookings/{id}/reject', { id => $req[1]{id} });

# Check-in (issue 14): a booking starting in 5 minutes, inside its window.
my $cr = call(admin => 'POST', '/rooms', {}, { name => 'Schema check-in room', location => 'HQ', capacity => 3 });
call(admin => 'PUT', '/rooms/{id}/check-in', { id => $cr->{id} }, { check_in_required => JSON::PP::true, check_in_window_minutes => 10 });
my $soon = sub { POSIX::strftime('%Y-%m-%dT%H:%M:%SZ', gmtime(time() + shift)) };
my $cb = call(user => 'POST', '/bookings', {},
	{ room_id => $cr->{id}, title => 'Schema check-in', starts_at => $soon->(300), ends_at => $soon->(2100) });
call(user => 'POST', '/bookings/{id}/check-in', { id => $cb->{id} });

# The waitlist (issue 14): the user queues for a slot the admin has taken.
call(admin => 'POST', '/bookings', {},
	{ room_id => $room, title => 'Schema taken', starts_at => $day->(64) . 'T10:00:00Z', ends_at => $day->(64) . 'T11:00:00Z' });
my $wl = call(user => 'POST', '/rooms/{room_id}/waitlist', { room_id => $room },
	{ title => 'Schema wait', starts_at => $day->(64) . 'T10:00:00Z', ends_at => $day->(64) . 'T11:00:00Z' });
call(user => 'GET', '/users/me/waitlist', {});
call(user => 'DELETE', '/waitlist/{id}', { id => $wl->{id} });

my %success = map { my ($m, $p, $s) = split /\|/; ("$m $p" => $s) } split /\n/, $q->(q{SELECT method, path, success_status FROM booking.http_routes});
is_deeply([ grep { $calls{$_} != $success{$_} } sort keys %calls ], [], 'every call succeeded (its route\'s success status)')
  or diag explain { map { ($_ => $calls{$_}) } grep { $calls{$_} != $success{$_} } keys %calls };
my @uncalled = grep { my $f = $_; !grep { $calls{$_} } split /\n/, $q->(qq{
  SELECT method || ' ' || path FROM booking.http_routes WHERE function_name = '$f'}) }
  split /\n/, $q->(q{SELECT function_name FROM booking.http_results ORDER BY 1});
is_deeply(\@uncalled, [], 'every function with a declared result schema is called here');

sub check
{
	my ($samples, $label) = @_;
	my $doc = http($a, 'GET', '/openapi.json')->{content};
	open my $fh, '>', "$tmp/openapi-results.json" or die; print $fh $doc; close $fh;
	open $fh, '>', "$tmp/samples.json" or die; print $fh $json->encode($samples); close $fh;
	my $o = `node $nodedir/check-results.mjs $tmp/openapi-results.json $tmp/samples.json`;
	note "$label: $o";
	return eval { decode_json($o) } // { failures => [ "no answer: $o" ] };
}

my $v = check(\@samples, 'real answers');
is(scalar @{ $v->{failures} }, 0, 'Ajv: every answer matches the schema of its route') or diag explain $v->{failures};
is($v->{checked}, scalar(@samples), "all $v->{checked} answers had a declared schema");

# --- negative controls ---
my @broken = map { my %s = %$_; $s{body} = { %{ $s{body} } }; delete $s{body}{starts_at}; \%s }
  grep { $_->{path} eq '/bookings/{id}' && $_->{method} eq 'GET' } @samples;
$v = check(\@broken, 'a booking without starts_at');
is(scalar @{ $v->{failures} }, 1, 'negative control: an answer without a required member fails');

$q->(q{UPDATE booking.http_schemas SET schema = jsonb_set(schema, '{required}', schema -> 'required' || '["no_such_member"]')
  WHERE name = 'Room'});
# The adapter reads the catalog again on a miss (at most once a second).
usleep(1_100_000);
http($a, 'POST', '/rpc/no_such_function_here', {});
$v = check(\@samples, 'Room requires no_such_member');
is_deeply([ sort map { $_->{sample} } @{ $v->{failures} } ],
	[ sort map { "$_->{method} $_->{path} $_->{status}" } grep { $_->{path} =~ m{^/rooms(/\{id\}(/approval|/check-in)?)?$} && $_->{method} ne 'DELETE' } @samples ],
	'negative control: a schema changed in SQL is what the document declares, and every room answer now fails it');

stop_adapter($a);
done_testing();
