# The background worker's minute tick releases no-shows (issue 14): a
# confirmed booking of a room that requires check-in, not checked in by its
# start + window, becomes "released" within a minute, with its event
# published, and its time can be booked again at once.  Controls: a booking
# checked in, one of a room without check-in, and one whose window is still
# open stay confirmed and keep blocking their slots (a booking over them is
# refused).  Then the worker's clock (pg_booking.checkout_test_clock_offset,
# the test clock the checkout goes by) is moved a day on, and a booking of
# tomorrow that nobody checked in is released by the next tick.  The rule at
# fixed instants, the window's edges and the series rule are
# sql/35_check_in.sql's.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = PostgreSQL::Test::Cluster->new('check_in_release');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'pg_booking'
pg_booking.jwt_secret = 'tap-secret-0123456789abcdef0123456789abcdef'
pg_booking.checkout_database = 'booking'
});
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE booking');
$node->safe_psql('booking', 'CREATE EXTENSION pg_booking CASCADE');
my $q = sub { $node->safe_psql('booking', shift) };

# Rooms: three that require check-in (one with a two-hour window), one that
# does not.  Bookings around now, each alone in its room.
$q->(q{
  INSERT INTO booking.users (email, full_name, password_hash) VALUES ('c@example.com', 'C', 'x');
  INSERT INTO booking.rooms (name, location, capacity, check_in_required, check_in_window_minutes)
  VALUES ('No-show Room', 'HQ', 4, true, 10), ('Checked-in Room', 'HQ', 4, true, 10),
         ('Open Window Room', 'HQ', 4, true, 120), ('Plain Room', 'HQ', 4, false, 10);
  INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at, checked_in_at)
  SELECT r.id, u.id, v.title, now() + v.s::interval, now() + v.e::interval,
         CASE WHEN v.checked_in THEN now() END
    FROM booking.users u,
         (VALUES ('No-show Room',     'no-show',     '-11 minutes', '49 minutes', false),
                 ('Checked-in Room',  'checked in',  '-11 minutes', '49 minutes', true),
                 ('Open Window Room', 'window open', '-11 minutes', '49 minutes', false),
                 ('Plain Room',       'plain room',  '-11 minutes', '49 minutes', false),
                 ('No-show Room',     'tomorrow',    '1 day',       '1 day 1 hour', false)) v(room, title, s, e, checked_in)
    JOIN booking.rooms r ON r.name = v.room;
});

# Poll until the query answers what is expected (generous: a loaded machine).
sub wait_for
{
	my ($query, $expected, $what, $timeout) = @_;
	my $deadline = time() + $timeout;
	my $got = '';
	while (time() < $deadline)
	{
		$got = $q->($query);
		return pass($what) if $got eq $expected;
		sleep 1;
	}
	return fail("$what: timed out, last result '$got'");
}
my $statuses = q{SELECT string_agg(title || ' ' || status, ', ' ORDER BY title) FROM booking.bookings};
# Book [now, now + 30 min) in a room: 'ok' or the error's code.
sub book_now
{
	my ($room) = @_;
	my ($rc, $out, $err) = $node->psql('booking', qq{
	  INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
	  SELECT r.id, 1, 'taken over', now(), now() + interval '30 minutes' FROM booking.rooms r WHERE r.name = '$room'});
	return $rc == 0 ? 'ok' : ($err =~ /(BOOKING_CONFLICT|conflict)/i ? 'conflict' : "error: $err");
}

# Before the tick has released anything, the slot of the window still open is taken.
is(book_now('Open Window Room'), 'conflict', 'control: a confirmed booking in its window blocks its slot');

my $t0 = time();
wait_for($statuses,
	'checked in confirmed, no-show released, plain room confirmed, tomorrow confirmed, window open confirmed',
	'the tick released the no-show, and only it', 150);
note sprintf('released after %.0f s', time() - $t0);
wait_for(q{SELECT string_agg(e.kind, ', ' ORDER BY e.id) FROM booking.events e
             JOIN booking.bookings b ON e.entity = 'booking' AND e.entity_id = b.id::text
            WHERE b.title = 'no-show'},
	'booking.created, booking.released', 'its booking.released event, published', 60);
is($q->(q{SELECT released FROM booking.analytics_bookings_summary}), '1', 'counted as released');
like(slurp_file($node->logfile), qr/1 no-shows released/, 'the worker logged what it released');

# Its remaining time is bookable at once; the others' is not.
is(book_now('No-show Room'), 'ok', 'the released slot is booked again');
is(book_now('Checked-in Room'), 'conflict', 'control: a checked-in booking keeps its slot');
is(book_now('Plain Room'), 'conflict', 'control: a room without check-in keeps its booking');
is(book_now('Open Window Room'), 'conflict', 'control: a booking whose window is open keeps its slot');

# The worker goes by the test clock: a day and 15 minutes on, tomorrow's
# booking is 15 minutes past its start and nobody checked it in.
$node->append_conf('postgresql.conf', 'pg_booking.checkout_test_clock_offset = ' . (86400 + 15 * 60) . "\n");
$node->reload;
wait_for(q{SELECT status FROM booking.bookings WHERE title = 'tomorrow'}, 'released',
	'on the test clock, tomorrow\'s no-show is released', 150);
is($q->(q{SELECT count(*) FROM booking.analytics_check()}), '0', 'the counters agree with the bookings');

$node->stop;
done_testing();
