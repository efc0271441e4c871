# Calendar feeds over HTTP (issue 14): GET /rooms/{room_id}/calendar.ics,
# GET /users/me/calendar.ics and the bearer-less GET /calendar/{token}/
# calendar.ics answer text/calendar that parsers no one here wrote accept
# (Debian's python3-icalendar reads it, python3-recurring-ical-events
# expands RDATE, EXDATE and RECURRENCE-ID), and every occurrence they
# expand is a booking of the database, with its times, its title as the
# reader may see it, and its status; none is missing.  Negative controls:
# a feed with one line taken out, a booking deleted after the feed was
# read, and a feed whose folding is undone each make the check fail.
use strict;
use warnings;
use lib 't';
use AdapterTest;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;

my $python = '/usr/bin/python3';
my $expand = "$ENV{TESTDIR}/../test/ical/expand.py";
my $have = system($python, '-c', 'import icalendar, recurring_ical_events') == 0;
ok($have, 'python3-icalendar and python3-recurring-ical-events are installed (scripts/deps.sh)')
  or BAIL_OUT('the iCalendar parsers are missing: run scripts/deps.sh as root');

my $node = setup_node();
my $a = start_adapter($node);
my $tmp = $PostgreSQL::Test::Utils::tmp_check;
my %id = (owner => make_user($node, 'owner@example.com', 'user'), other => make_user($node, 'other@example.com', 'user'),
	staff => make_user($node, 'staff@example.com', 'facility_manager'));
my %tok = (owner => token_for($a, 'owner@example.com', 'user'), other => token_for($a, 'other@example.com', 'user'),
	staff => token_for($a, 'staff@example.com', 'facility_manager'));
my $room = $node->safe_psql('postgres', q{INSERT INTO booking.rooms (name, location, capacity) VALUES ('North, 1', 'HQ', 8) RETURNING id});
my $side = $node->safe_psql('postgres', q{INSERT INTO booking.rooms (name, location, capacity) VALUES ('Side', 'HQ', 4) RETURNING id});
my ($from, $to) = ('2031-03-01T00:00:00Z', '2031-06-01T00:00:00Z');
my $window = "from=$from&to=$to";

sub book
{
	my ($who, $body) = @_;
	my $r = http($a, 'POST', '/bookings', $body, $tok{$who});
	die "booking failed: $r->{status} $r->{content}" unless $r->{status} == 201;
	return $r->{json};
}

# The owner: a title that needs escaping and folding, a weekly series in
# Paris time across the change to summer time, a booking in another room.
my $long = book(owner => { room_id => 0 + $room, starts_at => '2031-03-03T09:00:00Z', ends_at => '2031-03-03T10:00:00Z',
	title => "Budget, Q3; draft \\ notes\nsecond line, " . ("é€😀 " x 20) });
my $series = book(owner => { room_id => 0 + $room, starts_at => '2031-03-17T09:00:00Z', ends_at => '2031-03-17T09:30:00Z',
	title => 'Stand-up', recurrence => { frequency => 'weekly', count => 8, time_zone => 'Europe/Paris' } });
my @occ = map { $_->{id} } @{ $series->{bookings} };
my $elsewhere = book(owner => { room_id => 0 + $side, starts_at => '2031-03-05T09:00:00Z', ends_at => '2031-03-05T10:00:00Z',
	title => 'Elsewhere' });
my $dropped = book(owner => { room_id => 0 + $room, starts_at => '2031-03-06T09:00:00Z', ends_at => '2031-03-06T10:00:00Z',
	title => 'Dropped' });
# The other user's booking in the same room.
my $others = book(other => { room_id => 0 + $room, starts_at => '2031-03-04T12:00:00Z', ends_at => '2031-03-04T13:00:00Z',
	title => 'Other lunch' });
# Changes: an occurrence cancelled (EXDATE), one longer, one retitled
# (overrides), one moved (another RDATE); a single booking cancelled.
is(http($a, 'DELETE', "/bookings/$occ[1]", undef, $tok{owner})->{status}, 200, 'an occurrence cancelled');
is(http($a, 'PATCH', "/bookings/$occ[2]", { ends_at => '2031-03-31T09:00:00Z' }, $tok{owner})->{status}, 200, 'one made longer');
is(http($a, 'PATCH', "/bookings/$occ[3]", { title => 'Stand-up, with guests' }, $tok{owner})->{status}, 200, 'one retitled');
is(http($a, 'PATCH', "/bookings/$occ[4]", { starts_at => '2031-04-14T13:00:00Z', ends_at => '2031-04-14T13:30:00Z' },
	$tok{owner})->{status}, 200, 'one moved');
is(http($a, 'DELETE', "/bookings/$dropped->{id}", undef, $tok{owner})->{status}, 200, 'a single booking cancelled');

# What the parsers make of a feed: {problems, calendar, occurrences}.
my $n = 0;
sub parse
{
	my ($text) = @_;
	my $file = "$tmp/feed_" . ++$n . '.ics';
	open my $fh, '>:raw', $file or die; print $fh $text; close $fh;
	my $out = `PYTHONIOENCODING=utf-8 $python $expand $file $from $to`;
	return eval { decode_json($out) } // { problems => [ "no answer: $out" ] };
}

# The occurrences the database says a reader sees: bookings of the room (or
# of the user) overlapping the window; the title for its owner and staff,
# "Busy" for anyone else; a cancelled occurrence of a series is no
# occurrence (EXDATE), a cancelled single booking is one, CANCELLED.
sub from_database
{
	my (%o) = @_;
	my $which = $o{room} ? "b.room_id = $o{room}" : "b.user_id = $o{owner}";
	my $staff = $o{staff} ? 'true' : 'false';
	my $rows = $node->safe_psql('postgres', qq{
SELECT coalesce(json_agg(json_build_object(
           'uid', CASE WHEN b.series_id IS NULL THEN 'booking-' || b.id ELSE 'series-' || b.series_id END || '\@pg_booking',
           'start', to_char(b.starts_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
           'end', to_char(b.ends_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
           'summary', CASE WHEN b.user_id = $o{viewer} OR $staff THEN b.title ELSE 'Busy' END,
           'status', CASE b.status WHEN 'cancelled' THEN 'CANCELLED' ELSE 'CONFIRMED' END)), '[]')
  FROM booking.bookings b
 WHERE $which AND b.starts_at < '$to' AND b.ends_at > '$from'
   AND (b.status <> 'cancelled' OR b.series_id IS NULL)});
	# ($::a: this file's $a is the adapter.)
	return [ sort { $::a->{start} cmp $::b->{start} || $::a->{uid} cmp $::b->{uid} } @{ decode_json($rows) } ];
}

sub occurrences
{
	my ($parsed) = @_;
	return [ map { my %o = %$_; delete $o{sequence}; \%o } @{ $parsed->{occurrences} // [] } ];
}

sub feed
{
	my ($who, $path) = @_;
	my $r = http($a, 'GET', $path, undef, defined $who ? $tok{$who} : undef);
	is($r->{status}, 200, "GET $path") or diag $r->{content};
	like($r->{headers}{'content-type'} // '', qr{^text/calendar; charset=utf-8$}, "$path is text/calendar");
	return $r->{content};
}

# --- a room's feed, as the owner, the other user and staff ---
my %seen;
for my $who (qw(owner other staff))
{
	my $text = feed($who, "/rooms/$room/calendar.ics?$window");
	my $p = parse($text);
	is_deeply($p->{problems}, [], "room feed as $who: parses, CRLF, folded at 75 octets, every VEVENT complete");
	is_deeply([ $p->{calendar}{version}, $p->{calendar}{prodid} ], [ '2.0', '-//pg_booking//pg_booking//EN' ], 'VERSION, PRODID');
	my $db = from_database(room => $room, viewer => $id{$who}, staff => $who eq 'staff');
	is_deeply(occurrences($p), $db, "room feed as $who: every expanded occurrence is a booking of the room, none missing")
	  or diag explain [ occurrences($p), $db ];
	$seen{$who} = $text;
}
# The data meant something: seven occurrences of the series, the others'
# title hidden from the owner, the cancelled booking there as CANCELLED.
my $owner_view = occurrences(parse($seen{owner}));
is(scalar(grep { $_->{uid} =~ /^series-/ } @$owner_view), 7, 'the series: 8 occurrences, one cancelled (EXDATE)');
is_deeply([ map { $_->{summary} } grep { $_->{uid} eq "booking-$others->{id}\@pg_booking" } @$owner_view ], ['Busy'],
	'the other user\'s title is hidden from the owner');
is_deeply([ map { $_->{status} } grep { $_->{uid} eq "booking-$dropped->{id}\@pg_booking" } @$owner_view ], ['CANCELLED'],
	'a cancelled booking is in the feed as CANCELLED');
like($seen{owner}, qr/\r\nRDATE:/, 'the series is one VEVENT with RDATEs');
like($seen{owner}, qr/\r\nEXDATE:/, '... an EXDATE for the cancelled occurrence');
like($seen{owner}, qr/\r\nRECURRENCE-ID:/, '... and overrides (RECURRENCE-ID) for the changed ones');
ok(!grep({ $_->{uid} eq "booking-$elsewhere->{id}\@pg_booking" } @$owner_view), 'a booking of another room is not in the feed');

# --- the user's own feed, with a bearer token and with the feed token ---
my $mine = feed(owner => "/users/me/calendar.ics?$window");
my $p = parse($mine);
is_deeply($p->{problems}, [], 'my feed parses');
is_deeply(occurrences($p), from_database(owner => $id{owner}, viewer => $id{owner}), 'my feed: exactly my bookings, both rooms');
my $r = http($a, 'POST', '/users/me/calendar-token', {}, $tok{owner});
is($r->{status}, 201, 'POST /users/me/calendar-token') or diag $r->{content};
my $feed_token = $r->{json}{token};
is($r->{json}{path}, "/calendar/$feed_token/calendar.ics", 'the answer names the feed\'s path');
my $by_token = feed(undef, "$r->{json}{path}?$window");
is($by_token, $mine, 'the token feed, without a bearer header, is the same calendar');
is($node->safe_psql('postgres', qq{SELECT count(*) FROM booking.calendar_tokens WHERE token_hash = sha256(convert_to('$feed_token', 'UTF8'))}),
	1, 'only the hash is stored');

# --- SEQUENCE grows when a booking changes ---
my %seq = map { $_->{uid} => $_->{sequence} } @{ $p->{occurrences} };
is(http($a, 'PATCH', "/bookings/$long->{id}", { title => 'Budget' }, $tok{owner})->{status}, 200, 'a booking retitled');
is(http($a, 'PATCH', "/bookings/$occ[5]", { title => 'Stand-up, moved' }, $tok{owner})->{status}, 200, 'an occurrence retitled');
my %seq2 = map { $_->{uid} => $_->{sequence} } @{ parse(feed(undef, "/calendar/$feed_token/calendar.ics?$window"))->{occurrences} };
cmp_ok($seq2{"booking-$long->{id}\@pg_booking"}, '>', $seq{"booking-$long->{id}\@pg_booking"}, 'SEQUENCE of the booking grew');
my $suid = "series-$series->{series_id}\@pg_booking";
cmp_ok($seq2{$suid}, '>', $seq{$suid}, 'SEQUENCE of the series grew');

# --- negative controls: the comparison can fail ---
my $db_now = from_database(owner => $id{owner}, viewer => $id{owner});
my $fresh = feed(owner => "/users/me/calendar.ics?$window");
is_deeply(occurrences(parse($fresh)), $db_now, 'the fresh feed agrees with the database');
# (The last RDATE: an occurrence with no override, which would keep it.)
(my $corrupt = $fresh) =~ s/(.*)\r\nRDATE:[^\r]*/$1/s;
is(scalar(@{ occurrences(parse($corrupt)) }), scalar(@$db_now) - 1, 'negative control: a feed with one RDATE taken out loses that occurrence');
ok(!eq_deeply_list(occurrences(parse($corrupt)), $db_now), '... and the comparison says so');
$node->safe_psql('postgres', "DELETE FROM booking.bookings WHERE id = $occ[6]");
ok(!eq_deeply_list(occurrences(parse($fresh)), from_database(owner => $id{owner}, viewer => $id{owner})),
	'negative control: after a booking is deleted, the feed read before disagrees with the database');
is_deeply(occurrences(parse(feed(owner => "/users/me/calendar.ics?$window"))), from_database(owner => $id{owner}, viewer => $id{owner}),
	'... and the feed read after agrees again');
like($seen{owner}, qr/\r\n /, 'the room feed has folded lines (the long title)');
(my $unfolded = $seen{owner}) =~ s/\r\n //g;
ok(scalar(grep { /more than 75/ } @{ parse($unfolded)->{problems} }), 'negative control: a feed with its folding undone is reported');

# --- errors: JSON envelopes with clear codes ---
$r = http($a, 'GET', "/rooms/$room/calendar.ics");
is_deeply([ $r->{status}, $r->{json}{error_code} ], [ 401, 'UNAUTHORIZED' ], 'a room feed without a token: 401');
$r = http($a, 'GET', '/rooms/999999/calendar.ics', undef, $tok{owner});
is_deeply([ $r->{status}, $r->{json}{error_code}, $r->{headers}{'content-type'} ], [ 404, 'NOT_FOUND', 'application/json' ],
	'an unknown room: 404, a JSON error');
$r = http($a, 'GET', "/rooms/$room/calendar.ics?from=2031-03-01T00:00:00Z&to=2031-01-01T00:00:00Z", undef, $tok{owner});
is_deeply([ $r->{status}, $r->{json}{error_code} ], [ 422, 'VALIDATION_ERROR' ], 'a window backwards: 422');
$r = http($a, 'GET', '/calendar/not-a-token/calendar.ics');
is_deeply([ $r->{status}, $r->{json}{error_code} ], [ 404, 'NOT_FOUND' ], 'an unknown feed token: 404');
# Deactivated: the feed token stops working.
$node->safe_psql('postgres', "UPDATE booking.users SET active = false WHERE id = $id{owner}");
$r = http($a, 'GET', "/calendar/$feed_token/calendar.ics");
is_deeply([ $r->{status}, $r->{json}{error_code} ], [ 404, 'NOT_FOUND' ], 'a deactivated user\'s feed token: 404');
$node->safe_psql('postgres', "UPDATE booking.users SET active = true WHERE id = $id{owner}");
$tok{owner} = token_for($a, 'owner@example.com', 'user');
is(http($a, 'GET', "/calendar/$feed_token/calendar.ics")->{status}, 200, 'reactivated: it works again');
# Rotated: the old token stops working.
my $rotated = http($a, 'POST', '/users/me/calendar-token', {}, $tok{owner})->{json}{token};
is(http($a, 'GET', "/calendar/$feed_token/calendar.ics")->{status}, 404, 'rotated: the old token is refused');
is(http($a, 'GET', "/calendar/$rotated/calendar.ics")->{status}, 200, '... the new one works');
# Revoked: at once.
$r = http($a, 'DELETE', '/users/me/calendar-token', undef, $tok{owner});
is_deeply([ $r->{status}, $r->{json}{revoked} ], [ 200, JSON::PP::true ], 'DELETE /users/me/calendar-token');
$r = http($a, 'GET', "/calendar/$rotated/calendar.ics");
is_deeply([ $r->{status}, $r->{json}{error_code} ], [ 404, 'NOT_FOUND' ], 'a revoked token: 404');
like($r->{json}{message} // '', qr/revoked/, '... saying so');
$r = http($a, 'DELETE', '/users/me/calendar-token', undef, $tok{owner});
is_deeply([ $r->{status}, $r->{json}{error_code} ], [ 404, 'NOT_FOUND' ], 'revoking twice: 404');

# --- /rpc and the OpenAPI document say the same media type ---
$r = http($a, 'GET', "/rpc/room_calendar?room_id=$room&$window", undef, $tok{owner});
is_deeply([ $r->{status}, $r->{headers}{'content-type'} ], [ 200, 'text/calendar; charset=utf-8' ], '/rpc/room_calendar answers text/calendar too');
my $doc = http($a, 'GET', '/openapi.json')->{json};
is_deeply([ sort keys %{ $doc->{paths}{'/rooms/{room_id}/calendar.ics'}{get}{responses}{200}{content} } ], ['text/calendar'],
	'/openapi.json: the feed answers text/calendar');
is_deeply($doc->{paths}{'/calendar/{token}/calendar.ics'}{get}{security}, [], '... and the token feed needs no bearer token');

stop_adapter($a);
done_testing();

# Deep equality without a test: true when the two structures are equal.
sub eq_deeply_list
{
	my ($x, $y) = @_;
	my $j = JSON::PP->new->canonical;
	return $j->encode($x) eq $j->encode($y);
}
