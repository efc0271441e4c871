-- Hotels in several time zones (issue 15): each hotel's zone (validated),
-- its today and the nights that have passed there, which of its business
-- dates are due on a test clock, its checkout run once per hotel and date,
-- and DST days (a run time that comes twice, one that never comes).
\set SHOW_CONTEXT never
SET timezone TO 'UTC';
-- The whole file runs in one transaction rolled back at the end, and the
-- sequences it moved are put back, so the files after it see the database
-- (and the ids) as they would without it: its checkout runs of 2026 dates
-- must not give back the nights of earlier files' stays.
CREATE TEMP TABLE seqs_before AS
SELECT c.oid::regclass AS seq, pg_sequence_last_value(c.oid) AS last_value, s.seqstart
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_sequence s ON s.seqrelid = c.oid
 WHERE c.relkind = 'S' AND n.nspname = 'booking';
BEGIN;
-- Errors as SQLSTATE, error_code and field (messages may carry today's dates).
CREATE FUNCTION pg_temp.try(q text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    st text;
    det text;
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, det = PG_EXCEPTION_DETAIL;
    RETURN st || ' ' || coalesce(det::jsonb ->> 'error_code', '') || coalesce(' field=' || (det::jsonb ->> 'field'), '');
END
$$;
GRANT EXECUTE ON FUNCTION pg_temp.try(text) TO PUBLIC;

-- A chain in UTC-10, UTC and UTC+14.  Without a zone a hotel gets the
-- server's setting (UTC here).
SELECT t_as('h.admin@hotel.test', 'booking_admin');
SET ROLE booking_admin;
SELECT t_strip(api.create_hotel('Honolulu Inn', 'Honolulu', time_zone => 'Pacific/Honolulu')) - 'id' AS honolulu;
SELECT t_strip(api.create_hotel('Greenwich Inn', 'London')) - 'id' AS greenwich;
SELECT t_strip(api.create_hotel('Line Islands Inn', 'Kiritimati', time_zone => 'Pacific/Kiritimati')) - 'id' AS kiritimati;

-- Bad zones and run times: 422 VALIDATION_ERROR, nothing written.
SELECT count(*) AS hotels_before FROM booking.hotels \gset
SELECT pg_temp.try($$SELECT api.create_hotel('Mars Inn', 'Olympus', time_zone => 'Mars/Olympus_Mons')$$) AS unknown_zone;
SELECT pg_temp.try($$SELECT api.create_hotel('Mars Inn', 'Olympus', time_zone => '')$$) AS empty_zone;
SELECT pg_temp.try($$SELECT api.create_hotel('Mars Inn', 'Olympus', time_zone => 'UTC', checkout_time => '25:00')$$) AS bad_run_time;
SELECT pg_temp.try(format($$SELECT api.set_hotel_time_zone(%s, time_zone => 'Europe/Atlantis')$$, t_hotel('Greenwich Inn'))) AS set_unknown;
SELECT pg_temp.try(format($$SELECT api.set_hotel_time_zone(%s, checkout_time => 'soon')$$, t_hotel('Greenwich Inn'))) AS set_bad_time;
SELECT pg_temp.try(format($$SELECT api.set_hotel_time_zone(%s)$$, t_hotel('Greenwich Inn'))) AS set_nothing;
SELECT pg_temp.try($$SELECT api.set_hotel_time_zone(999999, time_zone => 'UTC')$$) AS unknown_hotel;
RESET ROLE;
-- psql obeys the same rule (the hotels trigger).
SELECT pg_temp.try($$INSERT INTO booking.hotels (name, location, time_zone) VALUES ('Psql Inn', 'X', 'Nowhere/Land')$$) AS psql_insert;
SELECT pg_temp.try(format($$UPDATE booking.hotels SET time_zone = 'Europe/Gondor' WHERE id = %s$$, t_hotel('Greenwich Inn'))) AS psql_update;
SELECT (SELECT count(*) FROM booking.hotels) - :hotels_before AS hotels_written,
       (SELECT time_zone || ' ' || booking.hotel_checkout_time(id) FROM booking.hotels WHERE name = 'Greenwich Inn') AS greenwich_unchanged;
-- Plain users may not set a zone.
SELECT t_as('guest1@hotel.test', 'booking_user');
SET ROLE booking_user;
SELECT pg_temp.try(format($$SELECT api.set_hotel_time_zone(%s, time_zone => 'Asia/Tokyo')$$, t_hotel('Greenwich Inn'))) AS as_user;
RESET ROLE;

-- Each hotel's today is its local date: at one instant (the site's clock
-- 05:00 UTC) Honolulu is still on the day before, Kiritimati a day ahead of it.
SELECT h.name, to_char(timestamptz '2099-06-15 05:00+00' AT TIME ZONE h.time_zone, 'YYYY-MM-DD HH24:MI') AS local_time,
       booking.local_date('2099-06-15 05:00+00', booking.hotel_time_zone(h.id)) AS today_there
  FROM booking.hotels h WHERE h.name IN ('Honolulu Inn', 'Greenwich Inn', 'Line Islands Inn') ORDER BY h.id;
-- booking.hotel_today(hotel) is that date at now(): whatever the real time,
-- Kiritimati's today is Honolulu's plus one and UTC's is one of the two.
SELECT booking.hotel_today(t_hotel('Line Islands Inn')) - booking.hotel_today(t_hotel('Honolulu Inn')) AS kiritimati_minus_honolulu,
       booking.hotel_today(t_hotel('Greenwich Inn')) IN (booking.hotel_today(t_hotel('Honolulu Inn')),
                                                         booking.hotel_today(t_hotel('Line Islands Inn'))) AS utc_is_one_of_them,
       booking.hotel_today(t_hotel('Greenwich Inn')) = booking.hotel_today() AS site_today_is_utc;

-- Nights that have passed are the hotel's: a stay arriving on Honolulu's
-- today (Kiritimati's yesterday), 3 nights, at both hotels.
SELECT t_as('h.admin@hotel.test', 'booking_admin');
SET ROLE booking_admin;
SELECT jsonb_array_length(api.adjust_inventory(t_hotel(n), 'double', to_char(booking.hotel_today(t_hotel(n)) - 3, 'YYYY-MM-DD'),
                                               to_char(booking.hotel_today(t_hotel(n)) + 5, 'YYYY-MM-DD'), total => 2)) AS nights
  FROM unnest(ARRAY['Honolulu Inn', 'Line Islands Inn']) n;
SELECT api.create_reservation(t_hotel('Honolulu Inn'), 'double', 'Aloha', to_char(booking.hotel_today(t_hotel('Honolulu Inn')), 'YYYY-MM-DD'), 3) ->> 'id' AS hnl \gset
SELECT api.create_reservation(t_hotel('Line Islands Inn'), 'double', 'Mauri', to_char(booking.hotel_today(t_hotel('Honolulu Inn')), 'YYYY-MM-DD'), 3) ->> 'id' AS cxi \gset
-- Moving the arrival a day later: free in Honolulu (tonight has not
-- passed there), refused in Kiritimati (that night has passed there).
-- The rule is in the C trigger, which asks booking.hotel_today(hotel).
SELECT pg_temp.try(format($$SELECT api.update_reservation(%L, arrival_date => %L)$$, :'hnl',
                          to_char(booking.hotel_today(t_hotel('Honolulu Inn')) + 1, 'YYYY-MM-DD'))) AS honolulu_moved,
       pg_temp.try(format($$SELECT api.update_reservation(%L, arrival_date => %L)$$, :'cxi',
                          to_char(booking.hotel_today(t_hotel('Honolulu Inn')) + 1, 'YYYY-MM-DD'))) AS kiritimati_moved;
-- Cancelling gives back the nights not passed at each hotel: every night
-- in Honolulu (the stay now arrives tomorrow); Kiritimati keeps the one
-- that has passed there.
SELECT api.cancel_reservation(:'hnl') ->> 'nights_held' AS honolulu_nights_kept,
       api.cancel_reservation(:'cxi') ->> 'nights_held' AS kiritimati_nights_kept;
RESET ROLE;
-- A guest may arrive on Honolulu's today in Honolulu, not in Kiritimati
-- (that date is Kiritimati's yesterday).
SELECT t_as('guest1@hotel.test', 'booking_user');
SET ROLE booking_user;
SELECT pg_temp.try(format($$SELECT api.create_reservation(%s, 'double', 'Guest', %L, 1)$$, t_hotel('Honolulu Inn'),
                          to_char(booking.hotel_today(t_hotel('Honolulu Inn')), 'YYYY-MM-DD'))) AS guest_honolulu,
       pg_temp.try(format($$SELECT api.create_reservation(%s, 'double', 'Guest', %L, 1)$$, t_hotel('Line Islands Inn'),
                          to_char(booking.hotel_today(t_hotel('Honolulu Inn')), 'YYYY-MM-DD'))) AS guest_kiritimati;
RESET ROLE;
SELECT t_violations() AS violations;

-- The checkout on a test clock.  Stays of 2026-06-12 for 2 nights (they
-- depart on 06-14) in the three chain hotels.
SET pg_booking.checkout_test_clock = '2026-06-14 12:00+00';
SELECT t_as('h.admin@hotel.test', 'booking_admin');
SET ROLE booking_admin;
SELECT jsonb_array_length(api.adjust_inventory(t_hotel(n), 'double', '2026-06-10', '2026-06-20', total => 2)) AS nights
  FROM unnest(ARRAY['Honolulu Inn', 'Greenwich Inn', 'Line Islands Inn']) n;
SELECT t_pin(api.create_reservation(t_hotel('Honolulu Inn'), 'double', 'Departs HNL', '2026-06-12', 2) ->> 'id', 4601) IS NOT NULL AS hnl,
       t_pin(api.create_reservation(t_hotel('Greenwich Inn'), 'double', 'Departs UTC', '2026-06-12', 2) ->> 'id', 4602) IS NOT NULL AS utc,
       t_pin(api.create_reservation(t_hotel('Line Islands Inn'), 'double', 'Departs CXI', '2026-06-12', 2) ->> 'id', 4603) IS NOT NULL AS cxi;
-- At 12:00 UTC it is 02:00 of 06-14 in Honolulu (run time 03:00 not
-- reached: 06-13 is the latest date due), 12:00 in UTC and 02:00 of 06-15
-- in Kiritimati (06-14 due, 06-15 not yet).
SELECT h.name, to_char(booking.checkout_clock() AT TIME ZONE h.time_zone, 'YYYY-MM-DD HH24:MI') AS local_time,
       booking.checkout_latest_due(h.id) AS latest_due
  FROM booking.hotels h WHERE h.name IN ('Honolulu Inn', 'Greenwich Inn', 'Line Islands Inn') ORDER BY h.id;
-- 06-14 for the site and every hotel where it is due: Honolulu is skipped
-- and named; its stay stays, the others depart.
SELECT r ->> 'business_date' AS business_date, r ->> 'already_done' AS already_done,
       r -> 'hotels_not_due' = jsonb_build_array(t_hotel('Honolulu Inn')) AS honolulu_not_due
  FROM api.run_checkout('2026-06-14') r;
RESET ROLE;
SELECT guest_name, status FROM booking.reservations WHERE guest_name LIKE 'Departs%' ORDER BY guest_name;
-- Honolulu's own 06-14 is refused (naming its run time and zone); nothing written.
SELECT count(*) AS runs_before FROM booking.checkout_runs \gset
SET ROLE booking_admin;
DO $$
DECLARE
    msg text;
    detail jsonb;
    hint text;
BEGIN
    PERFORM api.run_checkout('2026-06-14', hotel_id => t_hotel('Honolulu Inn'));
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
    RAISE NOTICE '% | % latest_allowed=% hotel=% | %', msg, detail ->> 'error_code', detail ->> 'latest_allowed',
        (detail ->> 'hotel_id')::bigint = t_hotel('Honolulu Inn'), hint;
END $$;
RESET ROLE;
SELECT count(*) - :runs_before AS runs_written FROM booking.checkout_runs;
-- 13:30 UTC: 03:30 in Honolulu, 06-14 is due there; 03:30 of 06-15 in Kiritimati.
SET pg_booking.checkout_test_clock = '2026-06-14 13:30+00';
SET ROLE booking_admin;
SELECT r ->> 'business_date' AS business_date, r ->> 'completed_stays' AS completed_stays, r ->> 'already_done' AS already_done,
       (r ->> 'hotel_id')::bigint = t_hotel('Honolulu Inn') AS honolulu
  FROM api.run_checkout(hotel_id => t_hotel('Honolulu Inn')) r;
SELECT r ->> 'business_date' AS business_date, r ->> 'already_done' AS already_done
  FROM api.run_checkout(hotel_id => t_hotel('Honolulu Inn')) r;
SELECT r ->> 'business_date' AS kiritimati_default_date FROM api.run_checkout(hotel_id => t_hotel('Line Islands Inn')) r;
RESET ROLE;
SELECT guest_name, status FROM booking.reservations WHERE guest_name LIKE 'Departs%' ORDER BY guest_name;
-- The history: one run per hotel and date (the site's has no hotel).
SELECT coalesce(h.name, '(site)') AS calendar, r.business_date, r.source, r.completed_stays
  FROM booking.checkout_runs r LEFT JOIN booking.hotels h ON h.id = r.hotel_id
 WHERE r.business_date BETWEEN '2026-06-13' AND '2026-06-15'
   AND (r.hotel_id IS NULL OR h.name IN ('Honolulu Inn', 'Greenwich Inn', 'Line Islands Inn'))
 ORDER BY r.business_date, r.hotel_id NULLS FIRST;
SELECT count(*) AS dates_run_twice FROM (SELECT 1 FROM booking.checkout_runs WHERE error IS NULL
                                         GROUP BY hotel_id, business_date HAVING count(*) > 1) x;
SELECT t_violations() AS violations;

-- What the worker runs (booking.checkout_todo): at 14:00 UTC of 06-14 the
-- three chain hotels have nothing left but Kiritimati (06-15 done already);
-- at 10:00 UTC of 06-15 Honolulu (00:00 there) has nothing due, UTC's 06-15
-- is due, Kiritimati's 06-16 not yet (00:00 of 06-16 there).
SELECT to_char(at, 'MM-DD HH24:MI') AS at_utc, coalesce(h.name, '(site)') AS calendar, t.business_date
  FROM unnest(ARRAY[timestamptz '2026-06-14 14:00+00', '2026-06-15 10:00+00']) at
 CROSS JOIN LATERAL booking.checkout_todo(at) t
  LEFT JOIN booking.hotels h ON h.id = t.hotel_id
 WHERE h.name IN ('Honolulu Inn', 'Greenwich Inn', 'Line Islands Inn')
 ORDER BY at, t.due_at, t.hotel_id;
-- The next date to fall due after 10:00 UTC of 06-15: Honolulu's 06-15
-- and Kiritimati's 06-16, both at 03:00 there, 13:00 UTC (UTC's 06-16 only
-- at 03:00 UTC the next day).
SELECT booking.checkout_next_due('2026-06-15 10:00+00') AS next_due;

-- Two hotels with DST and run times of their own (made now, so they have
-- no history: the worker starts them at the date due).
SELECT t_as('h.admin@hotel.test', 'booking_admin');
SET ROLE booking_admin;
SELECT t_strip(api.create_hotel('Manhattan Inn', 'New York', time_zone => 'America/New_York', checkout_time => '01:30')) - 'id' AS new_york;
SELECT t_strip(api.create_hotel('Spree Inn', 'Berlin', time_zone => 'Europe/Berlin', checkout_time => '02:30')) - 'id' AS berlin;
RESET ROLE;

-- DST, New York, fall back (2026-11-01 02:00 EDT -> 01:00 EST): the run time
-- 01:30 comes twice; the date falls due at the first and runs once.
SELECT to_char(i AT TIME ZONE 'America/New_York', 'HH24:MI') AS local_time, i AS at_utc,
       booking.checkout_due_date(i, booking.hotel_checkout_time(t_hotel('Manhattan Inn')), 'America/New_York') AS due,
       (SELECT string_agg(t.business_date::text, ',') FROM booking.checkout_todo(i) t WHERE t.hotel_id = t_hotel('Manhattan Inn')) AS worker_would_run
  FROM unnest(ARRAY[timestamptz '2026-11-01 05:29:59+00', '2026-11-01 05:30:00+00']) i;
SET pg_booking.checkout_test_clock = '2026-11-01 05:45+00';
SET ROLE booking_admin;
SELECT r ->> 'business_date' AS first_01_30, r ->> 'already_done' AS already_done
  FROM api.run_checkout(hotel_id => t_hotel('Manhattan Inn')) r;
RESET ROLE;
SET pg_booking.checkout_test_clock = '2026-11-01 06:45+00';
SELECT to_char(booking.checkout_clock() AT TIME ZONE 'America/New_York', 'HH24:MI TZ') AS second_01_30,
       (SELECT count(*) FROM booking.checkout_todo(booking.checkout_clock()) t WHERE t.hotel_id = t_hotel('Manhattan Inn')) AS worker_would_run;
SET ROLE booking_admin;
SELECT r ->> 'business_date' AS again, r ->> 'already_done' AS already_done
  FROM api.run_checkout(hotel_id => t_hotel('Manhattan Inn')) r;
RESET ROLE;
SELECT count(*) AS new_york_runs_of_11_01 FROM booking.checkout_runs
 WHERE hotel_id = t_hotel('Manhattan Inn') AND business_date = '2026-11-01';

-- Berlin, spring forward (2026-03-29 02:00 CET -> 03:00 CEST): the run time
-- 02:30 never comes; the date falls due when the clocks jump, once.
SELECT to_char(i AT TIME ZONE 'Europe/Berlin', 'HH24:MI:SS') AS local_time,
       booking.checkout_due_date(i, booking.hotel_checkout_time(t_hotel('Spree Inn')), 'Europe/Berlin') AS due
  FROM unnest(ARRAY[timestamptz '2026-03-29 00:59:59+00', '2026-03-29 01:00:00+00']) i;
SET pg_booking.checkout_test_clock = '2026-03-29 00:59:59+00';
SET ROLE booking_admin;
SELECT pg_temp.try(format($$SELECT api.run_checkout('2026-03-29', hotel_id => %s)$$, t_hotel('Spree Inn'))) AS before_the_jump;
RESET ROLE;
SET pg_booking.checkout_test_clock = '2026-03-29 01:00:00+00';
SET ROLE booking_admin;
SELECT r ->> 'business_date' AS at_the_jump, r ->> 'already_done' AS already_done
  FROM api.run_checkout(hotel_id => t_hotel('Spree Inn')) r;
RESET ROLE;
SET pg_booking.checkout_test_clock = '2026-03-29 05:00:00+00';
SET ROLE booking_admin;
SELECT r ->> 'business_date' AS later_that_day, r ->> 'already_done' AS already_done
  FROM api.run_checkout(hotel_id => t_hotel('Spree Inn')) r;
RESET ROLE;
SELECT count(*) AS berlin_runs_of_03_29 FROM booking.checkout_runs
 WHERE hotel_id = t_hotel('Spree Inn') AND business_date = '2026-03-29';

-- Moving a hotel to another zone (and run time) through the api: its dates
-- already run stay run.
SET ROLE booking_admin;
SELECT t_strip(api.set_hotel_time_zone(t_hotel('Spree Inn'), time_zone => 'Europe/Lisbon', checkout_time => '04:00')) - 'id' AS moved;
SELECT api.set_hotel_time_zone(t_hotel('Spree Inn'), checkout_time => 'default') ->> 'checkout_time' AS back_to_the_setting;
SELECT r ->> 'already_done' AS already_done FROM api.run_checkout('2026-03-29', hotel_id => t_hotel('Spree Inn')) r;
RESET ROLE;
RESET pg_booking.checkout_test_clock;
ROLLBACK;
SELECT count(*) > 0 AS sequences_put_back
  FROM (SELECT setval(seq, coalesce(last_value, seqstart), last_value IS NOT NULL) FROM seqs_before) x;
SELECT count(*) AS sequences_not_as_before FROM seqs_before WHERE pg_sequence_last_value(seq) IS DISTINCT FROM last_value;
SELECT count(*) AS hotels_left FROM booking.hotels WHERE name LIKE '% Inn' AND time_zone <> 'UTC';
