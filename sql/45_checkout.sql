-- The nightly checkout: the business date due at an instant (zones, DST),
-- the settings' validation, api.run_checkout (idempotent per date), what a
-- run changes, and the jobs api.
\set SHOW_CONTEXT never
SET timezone TO 'UTC';

-- The business date due: the local date once the local run time is reached.
SELECT booking.checkout_due_date('2099-05-03 02:59:59+00', '03:00', 'UTC') AS before_time,
       booking.checkout_due_date('2099-05-03 03:00:00+00', '03:00', 'UTC') AS at_time;
-- Tokyo is 9 hours ahead: 18:00 UTC is 03:00 the next day there.
SELECT booking.checkout_due_date('2099-05-02 17:59:59+00', '03:00', 'Asia/Tokyo') AS before_tokyo,
       booking.checkout_due_date('2099-05-02 18:00:00+00', '03:00', 'Asia/Tokyo') AS at_tokyo;
-- New York, spring forward (2026-03-08, 02:00 EST -> 03:00 EDT): a run time
-- of 02:30 does not exist that day; the date falls due when the clocks jump.
SELECT booking.checkout_due_date('2026-03-08 06:59:59+00', '02:30', 'America/New_York') AS at_01_59_est,
       booking.checkout_due_date('2026-03-08 07:00:00+00', '02:30', 'America/New_York') AS at_03_00_edt;
SELECT booking.checkout_instant('2026-03-08', '02:30', 'America/New_York') AS instant_of_skipped_time;
-- Fall back (2026-11-01, 02:00 EDT -> 01:00 EST): 01:30 comes twice; both
-- give the same date, which the history runs once.
SELECT booking.checkout_due_date('2026-11-01 05:29:59+00', '01:30', 'America/New_York') AS before_first,
       booking.checkout_due_date('2026-11-01 05:30:00+00', '01:30', 'America/New_York') AS first_01_30,
       booking.checkout_due_date('2026-11-01 06:30:00+00', '01:30', 'America/New_York') AS second_01_30;
-- Settings are validated.
SET pg_booking.checkout_time_zone = 'Mars/Olympus_Mons';
SET pg_booking.checkout_time = '25:00';
SET pg_booking.checkout_time = 'soon';
SET pg_booking.checkout_time = '03:15:30';
SET pg_booking.checkout_time_zone = 'Europe/Lisbon';
SELECT booking.checkout_time(), booking.checkout_time_zone();
RESET pg_booking.checkout_time;
RESET pg_booking.checkout_time_zone;
SHOW pg_booking.checkout_database;
-- The dates below are years ahead: the checkout refuses a date not yet due
-- (sql/95_checkout_calendar.sql), so this file moves the checkout's clock.
SET pg_booking.checkout_test_clock = '2099-12-31 12:00+00';

-- A hotel for the night audit: 3 doubles for the nights of 2099-05-01..10.
SELECT t_as('h.admin@hotel.test', 'booking_admin');
SET ROLE booking_admin;
SELECT api.create_hotel('Night Audit Hotel', 'Faro') ->> 'name';
SELECT jsonb_array_length(api.adjust_inventory(t_hotel('Night Audit Hotel'), 'double', '2099-05-01', '2099-05-10', total => 3));
-- Staying: arrives 05-01, leaves 05-04, checked in.
SELECT t_pin(api.create_reservation(t_hotel('Night Audit Hotel'), 'double', 'Staying', '2099-05-01', 3) ->> 'id', 61) AS staying \gset
SELECT api.check_in(:'staying') ->> 'status';
-- Never arrives: 05-02 for 4 nights, never checked in.
SELECT t_pin(api.create_reservation(t_hotel('Night Audit Hotel'), 'double', 'Absent', '2099-05-02', 4) ->> 'id', 62) AS absent \gset
-- Left without the api: 05-01 for 5 nights, status set to cancelled by
-- hand, so it still holds its nights.
SELECT t_pin(api.create_reservation(t_hotel('Night Audit Hotel'), 'double', 'Leftover', '2099-05-01', 5) ->> 'id', 63) AS leftover \gset
RESET ROLE;
UPDATE booking.reservations SET status = 'cancelled' WHERE id = :'leftover';
-- A meeting that ends during the night of 05-02.
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
VALUES (t_room('Aquarium'), t_id('h.admin@hotel.test'), 'Night audit meeting', '2099-05-02 22:00+00', '2099-05-02 23:00+00');
SELECT t_nights('Night Audit Hotel', 'double', '2099-05-01', '2099-05-07');
SELECT t_violations() AS violations;

-- Plain users may not run it or read the history.
SELECT t_as('guest1@hotel.test', 'booking_user');
SET ROLE booking_user;
SELECT api.run_checkout('2099-05-03');
SELECT api.list_jobs();
RESET ROLE;

-- Business date 05-03 (no-shows released): the absent guest becomes a
-- no-show and the leftover stay gives back 05-03..05; the meeting is completed.
SET pg_booking.checkout_release_no_shows = on;
SELECT t_as('h.admin@hotel.test', 'booking_admin');
SET ROLE booking_admin;
SELECT r - 'id' - 'started_at' - 'finished_at' - 'completed_stays' - 'completed_bookings' AS run,
       (r ->> 'completed_bookings')::int > 0 AS completed_bookings, r ->> 'finished_at' IS NOT NULL AS finished
  FROM api.run_checkout('2099-05-03') r;
RESET ROLE;
SELECT guest_name, status, arrival_date, held_until FROM booking.reservations
 WHERE hotel_id = t_hotel('Night Audit Hotel') ORDER BY guest_name;
SELECT status FROM booking.bookings WHERE title = 'Night audit meeting';
SELECT t_nights('Night Audit Hotel', 'double', '2099-05-01', '2099-05-07');
SELECT t_violations() AS violations;
-- Earlier stays of the other hotel tests departed by 05-03: all completed.
SELECT count(*) AS still_staying_before_0503 FROM booking.reservations
 WHERE status IN ('confirmed', 'checked_in') AND departure_date <= '2099-05-03';

-- Idempotent: the same date again changes nothing.
SET ROLE booking_admin;
SELECT r ->> 'business_date' AS business_date, r ->> 'already_done' AS already_done,
       r ->> 'no_shows' AS no_shows FROM api.run_checkout('2099-05-03') r;
RESET ROLE;
SELECT t_nights('Night Audit Hotel', 'double', '2099-05-01', '2099-05-07');

-- Business date 05-04: the checked-in guest departs.
SET ROLE booking_admin;
SELECT r ->> 'completed_stays' AS completed_stays, r ->> 'nights_returned' AS nights_returned,
       r ->> 'already_done' AS already_done FROM api.run_checkout('2099-05-04') r;
RESET ROLE;
SELECT guest_name, status, checked_out_at IS NOT NULL AS checked_out FROM booking.reservations
 WHERE hotel_id = t_hotel('Night Audit Hotel') ORDER BY guest_name;
SELECT t_violations() AS violations;

-- The history through the jobs api: per date, the site's run (meeting
-- rooms) and one run per hotel (issue 15); a bad date is refused.
SET ROLE booking_admin;
SELECT j ->> 'business_date' AS business_date, count(*) FILTER (WHERE j -> 'hotel_id' = 'null') AS site_runs,
       count(*) FILTER (WHERE j -> 'hotel_id' <> 'null') AS hotel_runs,
       string_agg(DISTINCT j ->> 'source', ',') AS sources, count(j ->> 'error') AS errors
  FROM jsonb_array_elements(api.list_jobs()) j GROUP BY 1 ORDER BY 1 DESC;
SELECT api.run_checkout('2099-13-01');
RESET ROLE;
RESET pg_booking.checkout_release_no_shows;
