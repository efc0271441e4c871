# The checkout worker runs each hotel's business date at that hotel's local
# run time, exactly once per hotel and date (issue 15).  The worker's clock is
# pinned with pg_booking.checkout_test_clock_offset to instants chosen around
# 2026-10-30 .. 2026-11-01, with hotels in Pacific/Honolulu (UTC-10), UTC,
# Pacific/Kiritimati (UTC+14) and America/New_York (run time 01:30, which
# comes twice on 2026-11-01, when the clocks fall back from EDT to EST):
#
#   - at 12:00 UTC of 10-30 Honolulu (02:00 there) is not due for 10-30 while
#     UTC and Kiritimati are: a worker on one global calendar would run it;
#   - at 13:30 UTC Honolulu's 10-30 and Kiritimati's 10-31 run, once;
#   - a restart runs nothing again;
#   - New York's 11-01 runs at the first 01:30 and not at the second;
#   - negative control: with that history row deleted, the worker runs the
#     date again at once (so the history is what keeps it to one run, and the
#     test sees a second run when there is one);
#   - no (hotel, date) has two successful runs, the inventory is intact.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use Time::Local qw(timegm);

# Seconds to add to the real clock so the worker's clock reads this UTC instant.
sub offset_to
{
	my ($y, $mo, $d, $h, $mi) = @_;
	return int(timegm(0, $mi, $h, $d, $mo - 1, $y) - time());
}

sub wait_for
{
	my ($node, $query, $expected, $what) = @_;
	my $deadline = time() + 120;
	my $got = '';
	while (time() < $deadline)
	{
		$got = $node->safe_psql('booking', $query);
		return pass($what) if $got eq $expected;
		sleep 1;
	}
	return fail("$what: timed out, last result '$got', expected '$expected'");
}

my $node = PostgreSQL::Test::Cluster->new('time_zones');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_booking'
pg_booking.jwt_secret = 'tap-secret-0123456789abcdef0123456789abcdef'
pg_booking.checkout_database = 'not_yet'
pg_booking.checkout_time_zone = 'UTC'
pg_booking.checkout_time = '03:00'
pg_booking.checkout_test_clock_offset = @{[ offset_to(2026, 10, 30, 12, 0) ]}
timezone = 'UTC'
});
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE booking');
$node->safe_psql('booking', 'CREATE EXTENSION pg_booking CASCADE');

# The hotels, each with a stay of 10-28 for 2 nights (departing 10-30), and
# New York with one departing 11-01.
$node->safe_psql('booking', q{
INSERT INTO booking.users (email, full_name, password_hash) VALUES ('tz@example.com', 'TZ', 'x');
INSERT INTO booking.hotels (name, location, time_zone, checkout_time) VALUES
    ('Honolulu', 'HI', 'Pacific/Honolulu', NULL), ('Greenwich', 'UK', 'UTC', NULL),
    ('Kiritimati', 'KI', 'Pacific/Kiritimati', NULL), ('New York', 'NY', 'America/New_York', '01:30');
INSERT INTO booking.inventory (hotel_id, room_type, night, total, available)
SELECT h.id, 'double', n::date, 2, 2 FROM booking.hotels h, generate_series(date '2026-10-25', date '2026-11-05', interval '1 day') n;
INSERT INTO booking.reservations (hotel_id, room_type, user_id, guest_name, arrival_date, stay_length, adults, held_until)
SELECT h.id, 'double', u.id, h.name, date '2026-10-28', 2, 1, date '2026-10-30' FROM booking.hotels h, booking.users u;
INSERT INTO booking.reservations (hotel_id, room_type, user_id, guest_name, arrival_date, stay_length, adults, held_until)
SELECT h.id, 'double', u.id, 'NY late', date '2026-10-30', 2, 1, date '2026-11-01'
  FROM booking.hotels h, booking.users u WHERE h.name = 'New York';
});

my $runs = q{
SELECT string_agg(coalesce(h.name, 'site') || ':' || r.business_date || ':' || r.source || ':' || coalesce(r.error, 'ok'),
                  ' ' ORDER BY r.business_date, r.hotel_id NULLS FIRST, r.id)
  FROM booking.checkout_runs r LEFT JOIN booking.hotels h ON h.id = r.hotel_id};
my $stays = q{SELECT string_agg(guest_name || ':' || status, ' ' ORDER BY guest_name COLLATE "C") FROM booking.reservations};
my $twice = q{SELECT count(*) FROM (SELECT 1 FROM booking.checkout_runs WHERE error IS NULL
                                    GROUP BY hotel_id, business_date HAVING count(*) > 1) x};

# 12:00 UTC of 10-30: each calendar runs its date due, Honolulu's is 10-29.
$node->append_conf('postgresql.conf', "pg_booking.checkout_database = 'booking'\n");
$node->reload;
wait_for($node, $runs,
	'Honolulu:2026-10-29:worker:ok site:2026-10-30:worker:ok Greenwich:2026-10-30:worker:ok '
	  . 'Kiritimati:2026-10-30:worker:ok New York:2026-10-30:worker:ok',
	"12:00 UTC: each hotel ran its own date due (Honolulu's 10-29, the others' 10-30)");
is($node->safe_psql('booking', $stays),
	'Greenwich:completed Honolulu:confirmed Kiritimati:completed NY late:confirmed New York:completed',
	"Honolulu's stay departing 10-30 is still there: it is 02:00 of 10-30 in Honolulu");
# Control of the test itself: on one global calendar (UTC) the date due
# would be 10-30 for Honolulu too, which the worker did not run.
is($node->safe_psql('booking', q{SELECT booking.checkout_due_date(booking.checkout_clock(), '03:00', 'UTC') || ' '
                                     || booking.checkout_latest_due(id) FROM booking.hotels WHERE name = 'Honolulu'}),
	'2026-10-30 2026-10-29', "the global calendar's date (10-30) is not Honolulu's (10-29)");

# 13:30 UTC: 03:30 of 10-30 in Honolulu, 03:30 of 10-31 in Kiritimati.
my $offset = -s $node->logfile;
$node->append_conf('postgresql.conf', 'pg_booking.checkout_test_clock_offset = ' . offset_to(2026, 10, 30, 13, 30) . "\n");
$node->reload;
wait_for($node, "SELECT count(*) FROM booking.checkout_runs", '7', '13:30 UTC: two more runs');
is($node->safe_psql('booking', $runs),
	'Honolulu:2026-10-29:worker:ok site:2026-10-30:worker:ok Honolulu:2026-10-30:worker:ok Greenwich:2026-10-30:worker:ok '
	  . 'Kiritimati:2026-10-30:worker:ok New York:2026-10-30:worker:ok Kiritimati:2026-10-31:worker:ok',
	"Honolulu's 10-30 and Kiritimati's 10-31, once each");
is($node->safe_psql('booking', $stays),
	'Greenwich:completed Honolulu:completed Kiritimati:completed NY late:confirmed New York:completed',
	"Honolulu's stay departed with its own business date");
like(slurp_file($node->logfile, $offset), qr/pg_booking checkout: hotel \d+ business date 2026-10-31 done/,
	'the worker logs the run of a hotel with its id');

# A restart runs nothing again.
$node->restart;
sleep 8;
is($node->safe_psql('booking', "SELECT count(*) FROM booking.checkout_runs"), '7', 'a restart runs no date again');

# New York, 2026-11-01 05:45 UTC = 01:45 EDT, after the first 01:30: its
# 11-01 runs (with the other calendars' dates due by then, each once).
$node->append_conf('postgresql.conf', 'pg_booking.checkout_test_clock_offset = ' . offset_to(2026, 11, 1, 5, 45) . "\n");
$node->reload;
wait_for($node, q{SELECT count(*) FROM booking.checkout_runs r JOIN booking.hotels h ON h.id = r.hotel_id
                   WHERE h.name = 'New York' AND r.business_date = '2026-11-01'}, '1', "01:45 EDT: New York's 11-01 ran");
is($node->safe_psql('booking', q{SELECT string_agg(coalesce(h.name, 'site') || ':' || r.business_date, ' ' ORDER BY r.id)
                                   FROM booking.checkout_runs r LEFT JOIN booking.hotels h ON h.id = r.hotel_id WHERE r.id > 7}),
	'site:2026-10-31 Greenwich:2026-10-31 New York:2026-10-31 Honolulu:2026-10-31 Kiritimati:2026-11-01 site:2026-11-01 '
	  . 'Greenwich:2026-11-01 New York:2026-11-01',
	'every calendar caught up its dates in the order they fell due, once');
is($node->safe_psql('booking', "SELECT status FROM booking.reservations WHERE guest_name = 'NY late'"), 'completed',
	"New York's stay departing 11-01 completed");
my $ny_run = $node->safe_psql('booking', q{SELECT r.id FROM booking.checkout_runs r JOIN booking.hotels h ON h.id = r.hotel_id
                                            WHERE h.name = 'New York' AND r.business_date = '2026-11-01'});

# 06:45 UTC = 01:45 EST, after the second 01:30: the same date is due again
# by the local clock; the worker does not run it again.
$node->append_conf('postgresql.conf', 'pg_booking.checkout_test_clock_offset = ' . offset_to(2026, 11, 1, 6, 45) . "\n");
$node->reload;
is($node->safe_psql('booking', q{SELECT to_char(booking.checkout_clock() AT TIME ZONE 'America/New_York', 'HH24')
                                     || ' ' || booking.checkout_latest_due(id) FROM booking.hotels WHERE name = 'New York'}),
	'01 2026-11-01', 'the second 01:xx of New York: 11-01 is the date due again');
sleep 8;
is($node->safe_psql('booking', q{SELECT string_agg(r.id::text, ' ') FROM booking.checkout_runs r JOIN booking.hotels h ON h.id = r.hotel_id
                                   WHERE h.name = 'New York' AND r.business_date = '2026-11-01'}),
	$ny_run, "New York's 11-01 ran once across the fall-back hour");
is($node->safe_psql('booking', $twice), '0', 'no (hotel, date) has two successful runs');

# Negative control: without its history row, the worker runs the date again.
$node->safe_psql('booking', "DELETE FROM booking.checkout_runs WHERE id = $ny_run");
$node->reload;	# wakes the worker
wait_for($node, q{SELECT count(*) FROM booking.checkout_runs r JOIN booking.hotels h ON h.id = r.hotel_id
                   WHERE h.name = 'New York' AND r.business_date = '2026-11-01'}, '1',
	'negative control: with its history gone, New York\'s 11-01 runs again');
isnt($node->safe_psql('booking', q{SELECT r.id FROM booking.checkout_runs r JOIN booking.hotels h ON h.id = r.hotel_id
                                     WHERE h.name = 'New York' AND r.business_date = '2026-11-01'}),
	$ny_run, 'as a new run');

is($node->safe_psql('booking', $twice), '0', 'still no (hotel, date) with two successful runs');
is($node->safe_psql('booking', "SELECT count(*) FROM booking.checkout_runs WHERE error IS NOT NULL OR finished_at IS NULL"), '0',
	'every run finished without error');
is($node->safe_psql('booking', 'SELECT count(*) FROM booking.inventory_violations()'), '0', 'inventory intact');

$node->stop;
done_testing();
