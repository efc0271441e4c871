# A primary and a streaming standby (docs/design.md: "a streaming standby serves
# dashboards; the worker runs only on a primary").
#
#   - On the standby, booking_grafana (the dashboards' role, grafana/) reads
#     every view granted to it and sees exactly what the primary committed
#     (after wait_for_catchup), the counters included.
#   - The checkout worker stays idle there: its clock says the next business
#     day is due, yet no run is recorded, no worker process exists, and the
#     log says nothing of it (no error loop).
#   - A write api function fails with the read-only error (SQLSTATE 25006),
#     which the adapter answers 503 DATABASE_READ_ONLY
#     (adapter/t/047_adapter_read_replica.pl).
#   - After the primary is lost and the standby promoted, the worker runs
#     the business day the old primary had not reached, exactly once, also
#     across a restart.
#
# The worker's clocks are pinned with pg_booking.checkout_test_clock_offset
# (as t/021_checkout_worker.pl does): the primary reads noon of today (UTC),
# the standby noon of tomorrow, whatever the real time, so the test never
# races midnight.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $day = 86400;
my $now = int(time());
my $noon_offset = int($now / $day) * $day + $day / 2 - $now;    # seconds to today's 12:00 UTC

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_booking'
pg_booking.jwt_secret = 'tap-secret-0123456789abcdef0123456789abcdef'
pg_booking.checkout_database = 'booking'
pg_booking.checkout_time_zone = 'UTC'
pg_booking.checkout_time = '03:00'
pg_booking.checkout_test_clock_offset = $noon_offset
timezone = 'UTC'
});
$primary->start;
$primary->safe_psql('postgres', 'CREATE DATABASE booking');

# The business date the primary's worker is at (its clock: noon today).
my $today = $primary->safe_psql('postgres', "SELECT (now() + make_interval(secs => $noon_offset))::date");
my $tomorrow = $primary->safe_psql('postgres', "SELECT '$today'::date + 1");

# A fixture with something in every view: rooms, users, bookings of every
# status (one ending this morning, which the run of tomorrow completes),
# reviews, a hotel with inventory and stays (one departing tomorrow).
$primary->safe_psql('booking', qq{
CREATE EXTENSION pg_booking CASCADE;
ALTER ROLE booking_grafana LOGIN;
INSERT INTO booking.rooms (name, location, capacity) VALUES ('Alpha', 'HQ', 4), ('Beta', 'HQ', 8), ('Gamma', 'Annex', 12);
-- Admins: the clients act as booking_admin, and a token's role must be its user's.
INSERT INTO booking.users (email, full_name, password_hash, role)
SELECT 'user' || i || '\@example.com', 'User ' || i, 'x', 'admin' FROM generate_series(1, 4) i;
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at, status)
SELECT 1 + i % 3, 1 + i % 4, 'fixture', timestamptz '2099-01-05 09:00+00' + make_interval(days => i),
       timestamptz '2099-01-05 10:00+00' + make_interval(days => i), (ARRAY['confirmed', 'cancelled'])[1 + i % 2]
  FROM generate_series(0, 29) i;
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
VALUES (2, 1, 'this morning', '$today 08:00+00', '$today 09:00+00');
INSERT INTO booking.reviews (room_id, user_id, rating) VALUES (1, 1, 4), (1, 2, 5), (2, 3, 2);
INSERT INTO booking.hotels (name, location) VALUES ('H1', 'Lisbon');
INSERT INTO booking.inventory (hotel_id, room_type, night, total, available)
SELECT 1, 'double', n::date, 5, 5 FROM generate_series('$today'::date - 2, '$today'::date + 10, interval '1 day') n;
INSERT INTO booking.reservations (hotel_id, room_type, user_id, guest_name, arrival_date, stay_length, adults, held_until)
VALUES (1, 'double', 1, 'Leaving tomorrow', '$today'::date - 1, 2, 1, '$today'::date + 1),
       (1, 'double', 2, 'Staying on', '$today', 5, 2, '$today'::date + 5);
});

# One run per calendar and date: the site's (meeting rooms) and hotel 1's (issue 15).
my $runs = "SELECT string_agg(coalesce('h' || hotel_id, 'site') || ':' || business_date || ':' || coalesce(error, 'ok')
                              || ':' || (finished_at IS NOT NULL), ' '
                              ORDER BY business_date, hotel_id NULLS FIRST, id) FROM booking.checkout_runs";
ok($primary->poll_query_until('booking', $runs, "site:$today:ok:true h1:$today:ok:true"), "the primary's worker ran today ($today)");

# The standby: a base backup, streaming; its worker's clock is a day ahead,
# so on a primary the run of tomorrow would be due at once.
$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->append_conf('postgresql.conf', 'pg_booking.checkout_test_clock_offset = ' . ($noon_offset + $day) . "\n");
$standby->start;

# More committed changes on the primary after the backup: they reach the
# standby by streaming only.
$primary->safe_psql('booking', q{
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
SELECT 3, 1 + i % 4, 'streamed', timestamptz '2099-03-01 09:00+00' + make_interval(days => i),
       timestamptz '2099-03-01 11:00+00' + make_interval(days => i)
  FROM generate_series(1, 12) i;
UPDATE booking.bookings SET status = 'cancelled' WHERE title = 'streamed' AND starts_at < '2099-03-05';
INSERT INTO booking.reviews (room_id, user_id, rating) VALUES (3, 4, 1);
UPDATE booking.reviews SET status = 'hidden' WHERE room_id = 1 AND user_id = 2;
});
$primary->wait_for_catchup($standby, 'replay');
is($standby->safe_psql('booking', 'SELECT pg_is_in_recovery()'), 't', 'the standby is in recovery');

# Every view booking_grafana may read, and what it sees on each node.
my @views = split /\n/, $primary->safe_psql('booking', q{
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'booking' AND c.relkind IN ('v', 'm')
   AND has_table_privilege('booking_grafana', c.oid, 'SELECT') ORDER BY 1});
ok(scalar(grep { /^analytics_/ } @views) >= 5, 'booking_grafana reads the analytics views: ' . join(', ', @views));

sub as_grafana
{
	my ($node, $sql) = @_;
	my ($rc, $out, $err) = (0, '', '');
	$rc = $node->psql('booking', $sql, extra_params => [ '-U', 'booking_grafana', '-v', 'ON_ERROR_STOP=1' ],
		stdout => \$out, stderr => \$err);
	return ($rc, $out, $err);
}

for my $view (@views)
{
	my $q = "SELECT count(*) || ' rows ' || md5(coalesce(string_agg(v::text, '|' ORDER BY v::text), '')) FROM booking.$view v";
	my ($rc, $on_standby, $err) = as_grafana($standby, $q);
	is($rc, 0, "booking_grafana reads booking.$view on the standby") or diag $err;
	next if $view eq 'rate_limit_denials';    # shared memory of each server, not WAL: see below
	my (undef, $on_primary) = as_grafana($primary, $q);
	is($on_standby, $on_primary, "booking.$view is the same on both nodes ($on_standby)");
}

# The committed counts themselves, against a recount on the primary.
my $recount = $primary->safe_psql('booking', q{
SELECT count(*) || ' ' || count(*) FILTER (WHERE status = 'confirmed') || ' ' || count(*) FILTER (WHERE status = 'cancelled')
  FROM booking.bookings});
my (undef, $summary) = as_grafana($standby,
	'SELECT total || \' \' || confirmed || \' \' || cancelled FROM booking.analytics_bookings_summary');
is($summary, $recount, "the standby's summary counts what the primary committed ($summary)");
my (undef, $gamma) = as_grafana($standby, q{
SELECT total || ' ' || confirmed || ' ' || cancelled FROM booking.analytics_bookings_by_room WHERE room_id = 3});
is($gamma, $primary->safe_psql('booking',
	"SELECT count(*) || ' ' || count(*) FILTER (WHERE status = 'confirmed') || ' ' || count(*) FILTER (WHERE status = 'cancelled')
	   FROM booking.bookings WHERE room_id = 3"), "and per room, the streamed changes included ($gamma)");
my (undef, $ratings) = as_grafana($standby,
	'SELECT string_agg(room_id || \':\' || review_count, \' \' ORDER BY room_id) FROM booking.analytics_rating_by_room');
is($ratings, '1:1 2:1 3:1', 'the rating counts leave the hidden review out on the standby too');
my (undef, $denials) = as_grafana($standby, 'SELECT count(*) FROM booking.rate_limit_denials');
cmp_ok($denials, '>', 0, 'rate_limit_denials answers on the standby (its own shared memory)');
my ($rc, $out, $err) = as_grafana($standby, 'SELECT count(*) FROM booking.bookings');
like($err, qr/permission denied/, 'booking_grafana still reads no table on the standby');

# The worker stays idle: a day is due by its clock, nothing runs.
sleep 8;
is($standby->safe_psql('booking', $runs), "site:$today:ok:true h1:$today:ok:true", 'no checkout run on the standby, though its clock is a day ahead');
is($standby->safe_psql('postgres',
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'pg_booking%'"), '0',
	'no checkout launcher, checkout worker or events publisher on the standby');
my $standby_log = slurp_file($standby->logfile);
unlike($standby_log, qr/^\S+ \S+ UTC \[\d+\] \w+:  pg_booking (?:checkout|events)/m,
	'the standby log says nothing of the checkout or the events publisher (no error loop)');
unlike($standby_log, qr/exited with exit code|FATAL|PANIC/, 'and no process failed there');

# Writes fail with the read-only error, and write nothing.
my $admin = q{SELECT set_config('request.jwt.claims', '{"sub": "1", "role": "booking_admin"}', false);};
for my $write (
	[ 'api.create_booking', "SELECT api.create_booking(1, '2099-05-01T09:00:00Z', '2099-05-01T10:00:00Z', 'on the standby')" ],
	[ 'api.cancel_booking', 'SELECT api.cancel_booking(1)' ],
	[ 'api.create_reservation', "SELECT api.create_reservation(1, 'double', 'Guest', '$tomorrow', 1)" ],
	[ 'api.run_checkout', "SELECT api.run_checkout(as_of => '$today')" ])
{
	my ($name, $sql) = @$write;
	($rc, $out, $err) = $standby->psql('booking', "$admin\n\\set VERBOSITY verbose\n$sql");
	isnt($rc, 0, "$name fails on the standby");
	like($err, qr/ERROR:\s+25006: cannot execute .+ in a read-only transaction/,
		"$name: SQLSTATE 25006, \"cannot execute ... in a read-only transaction\"") or diag $err;
}
is($standby->safe_psql('booking', "SELECT count(*) FROM booking.bookings WHERE title = 'on the standby'"), '0',
	'nothing was written');

# Failover: the primary is lost, the standby promoted.  Its worker starts and
# runs the day the old primary never reached, once.
my $primary_last = $primary->safe_psql('booking', 'SELECT max(id) FROM booking.bookings');
$primary->stop('immediate');
$standby->promote;
is($standby->safe_psql('booking', 'SELECT pg_is_in_recovery()'), 'f', 'the standby is promoted');
ok($standby->poll_query_until('booking', $runs, "site:$today:ok:true h1:$today:ok:true site:$tomorrow:ok:true h1:$tomorrow:ok:true"),
	"the promoted node's worker ran the missed business day $tomorrow");
is($standby->safe_psql('booking', "SELECT status FROM booking.bookings WHERE title = 'this morning'"), 'completed',
	'that run completed the meeting that ended this morning');
is($standby->safe_psql('booking', "SELECT string_agg(guest_name || ':' || status, ' ' ORDER BY guest_name) FROM booking.reservations"),
	'Leaving tomorrow:completed Staying on:confirmed', 'and the stay departing tomorrow, nothing else');
is($standby->safe_psql('booking', "SELECT string_agg(completed_stays || ' ' || completed_bookings, ', ' ORDER BY hotel_id NULLS FIRST)
                                     FROM booking.checkout_runs WHERE business_date = '$tomorrow'"),
	'0 1, 1 0', "the site's run counts one meeting, the hotel's one stay");

$standby->restart;
sleep 5;
is($standby->safe_psql('booking', $runs), "site:$today:ok:true h1:$today:ok:true site:$tomorrow:ok:true h1:$tomorrow:ok:true",
	'a restart runs no day twice');
is($standby->safe_psql('booking', 'SELECT count(*) FROM booking.checkout_runs GROUP BY hotel_id, business_date HAVING count(*) > 1'), '',
	'every business day of each calendar has exactly one run');

# The promoted node takes writes; ids go on after the old primary's.
my $new = $standby->safe_psql('booking', "$admin
SELECT (api.create_booking(1, '2099-05-01T09:00:00Z', '2099-05-01T10:00:00Z', 'after failover') ->> 'id')");
$new =~ s/.*\n//s;
cmp_ok($new, '>', $primary_last, "a booking written after the failover gets a new id ($new > $primary_last)");
is($standby->safe_psql('booking', 'SELECT count(*) FROM booking.analytics_check()'), '0', 'the counters are exact after the failover');
is($standby->safe_psql('booking', 'SELECT count(*) FROM booking.inventory_violations()'), '0', 'so is the inventory');

$standby->stop;
done_testing();
