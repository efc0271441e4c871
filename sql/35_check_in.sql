-- Check-in and automatic release of no-shows (issue 14): the room's
-- setting, the check-in (who may, the window, each bad input a clear error
-- with its error_code and nothing written), the release at an instant
-- given to booking.release_no_shows (the test clock: the worker passes its
-- own), its event and counters, the slot bookable again, and the series
-- rule (consecutive no-shows cancel the rest, configurable).
--
-- All in one transaction, rolled back at the end.  Bookings are placed
-- around now() (the transaction's instant, the check-in's clock).
\set SHOW_CONTEXT never
\set ON_ERROR_ROLLBACK on
SET timezone TO 'UTC';
BEGIN;

-- try(sql): run a statement, and show its error as one line with the
-- instants (around now(), so they change from run to run) masked.
CREATE FUNCTION pg_temp.try(q text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    st text;
    msg text;
    det text;
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
    RETURN regexp_replace(st || ' ' || msg || coalesce(' ' || det, ''),
                          '\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00', '<instant>', 'g');
END
$$;

-- The window: both ends included.
SELECT booking.check_in_window('2099-01-01 10:00+00', 10) AS check_in_window;
SELECT booking.series_no_show_limit() AS default_series_no_show_limit;

-- Rooms: two that require check-in, one that does not.
SELECT t_as('admin@example.com', 'booking_admin');
SET ROLE booking_admin;
SELECT t_strip(api.create_room('Check-in Room', 'HQ 3rd floor', 6)) ->> 'check_in_required' AS check_in_required_by_default;
SELECT t_strip(api.create_room('Walk-in Room', 'HQ 3rd floor', 6)) ->> 'check_in_window_minutes' AS window_by_default;
SELECT t_strip(api.create_room('Panel Room', 'HQ 3rd floor', 6)) IS NOT NULL AS created;
SELECT api.set_room_check_in(t_room('Panel Room'), true) ->> 'check_in_required' AS panel_room_check_in;
SELECT x ->> 'check_in_required' AS check_in_required, x ->> 'check_in_window_minutes' AS window_minutes
  FROM api.set_room_check_in(t_room('Check-in Room'), true, 15) x;
SELECT x ->> 'check_in_window_minutes' AS window_minutes
  FROM api.set_room_check_in(t_room('Check-in Room'), true) x;
-- Bad input: each 422 or 404, nothing changed.
SELECT api.set_room_check_in(t_room('Walk-in Room'), NULL);
SELECT api.set_room_check_in(t_room('Walk-in Room'), true, 0);
SELECT api.set_room_check_in(t_room('Walk-in Room'), true, 121);
SELECT api.set_room_check_in(t_room('Walk-in Room'), true, NULL);
SELECT api.set_room_check_in(999999, true);
RESET ROLE;
SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.set_room_check_in(t_room('Walk-in Room'), true);       -- plain user: 403
RESET ROLE;
SELECT name, check_in_required, check_in_window_minutes FROM booking.rooms
 WHERE name IN ('Check-in Room', 'Panel Room', 'Walk-in Room') ORDER BY name;

-- Bookings around now (written directly: some have started already).
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
SELECT t_room(v.room), t_id(v.email), v.title, now() + v.s::interval, now() + v.e::interval
  FROM (VALUES ('Check-in Room', 'alice@example.com', 'Alice soon',     '5 minutes',   '65 minutes'),
               ('Check-in Room', 'alice@example.com', 'Alice tomorrow', '1 day',       '1 day 1 hour'),
               ('Check-in Room', 'alice@example.com', 'Alice late',     '-25 minutes', '-11 minutes'),
               ('Panel Room',    'carol@example.com', 'Carol at the panel', '8 minutes', '68 minutes'),
               ('Check-in Room', 'carol@example.com', 'Carol by the manager', '-10 minutes', '-5 minutes'),
               ('Check-in Room', 'carol@example.com', 'Carol no-show', '90 minutes',  '150 minutes'),
               ('Walk-in Room',  'alice@example.com', 'Alice walks in', '5 minutes',   '65 minutes')) v(room, email, title, s, e);
SELECT id AS soon FROM booking.bookings WHERE title = 'Alice soon' \gset
SELECT id AS tomorrow FROM booking.bookings WHERE title = 'Alice tomorrow' \gset
SELECT id AS late FROM booking.bookings WHERE title = 'Alice late' \gset
SELECT id AS panel FROM booking.bookings WHERE title = 'Carol at the panel' \gset
SELECT id AS by_fm FROM booking.bookings WHERE title = 'Carol by the manager' \gset
SELECT id AS noshow FROM booking.bookings WHERE title = 'Carol no-show' \gset
SELECT id AS walkin FROM booking.bookings WHERE title = 'Alice walks in' \gset

-- Snapshot of every booking, to show that the errors below write nothing.
CREATE TEMP VIEW t_bookings_state AS
    SELECT count(*) AS n, md5(coalesce(string_agg(b::text, ',' ORDER BY b.id), '')) AS digest FROM booking.bookings b;
SELECT n AS bookings_before, digest AS digest_before FROM t_bookings_state \gset

-- Bad check-ins: too early, too late, a room without check-in, a booking
-- that does not exist, someone else's (404: Carol cannot see it), an
-- auditor (403: may read, not change).
SET ROLE booking_user;
SELECT pg_temp.try(format('SELECT api.check_in_booking(%s)', :tomorrow));
SELECT pg_temp.try(format('SELECT api.check_in_booking(%s)', :late));
SELECT api.check_in_booking(:walkin);
SELECT api.check_in_booking(999999);
RESET ROLE;
SELECT t_as('carol@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.check_in_booking(:soon);
-- nor by calling the recording function directly (it runs as its owner).
SELECT booking.record_check_in(:soon);
RESET ROLE;
SELECT t_as('auditor@example.com', 'booking_auditor');
SET ROLE booking_auditor;
SELECT api.check_in_booking(:soon);
RESET ROLE;
-- The panel cannot check in what does not exist, nor outside the window.
SELECT t_as('svc@example.com', 'booking_service_account');
SET ROLE booking_service_account;
SELECT api.check_in_booking(999999);
SELECT pg_temp.try(format('SELECT api.check_in_booking(%s)', :tomorrow));
RESET ROLE;
SELECT n = :bookings_before AND digest = :'digest_before' AS nothing_written FROM t_bookings_state;

-- Alice checks in 5 minutes early; a second time is 409 ALREADY_CHECKED_IN.
SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
SELECT x ->> 'status' AS status, (x ->> 'checked_in_at')::timestamptz = now() AS checked_in_now
  FROM api.check_in_booking(:soon) x;
SELECT pg_temp.try(format('SELECT api.check_in_booking(%s)', :soon));
RESET ROLE;
-- The room's panel checks in Carol's (a service account may, for anyone);
-- a facility manager checks in the one started 10 minutes ago (the window's end).
SELECT t_as('svc@example.com', 'booking_service_account');
SET ROLE booking_service_account;
SELECT (api.check_in_booking(:panel) ->> 'checked_in_at') IS NOT NULL AS panel_checked_in;
RESET ROLE;
SELECT t_as('fm@example.com', 'booking_facility_manager');
SET ROLE booking_facility_manager;
SELECT (api.check_in_booking(:by_fm) ->> 'checked_in_at') IS NOT NULL AS manager_checked_in;
RESET ROLE;

-- Release.  Alice's late booking (started 25 minutes ago, 10 minutes'
-- window): at its window's end nothing is released yet (check-in is still
-- allowed at that instant); one microsecond later it is.
SELECT booking.release_no_shows(now() - interval '15 minutes') AS released_at_window_end;
SELECT status FROM booking.bookings WHERE id = :late;
SELECT booking.release_no_shows(now() - interval '15 minutes' + interval '1 microsecond') AS released_just_after;
SELECT status FROM booking.bookings WHERE id = :late;
-- 20 minutes on: the checked-in bookings (windows over), the one of a room
-- without check-in, and those not yet started stay.
SELECT booking.release_no_shows(now() + interval '20 minutes') AS released_at_plus_20;
-- 100 minutes on, Carol's no-show (at 90) is at its window's end; just after, released.
SELECT booking.release_no_shows(now() + interval '100 minutes') AS released_at_plus_100;
SELECT booking.release_no_shows(now() + interval '100 minutes 1 microsecond') AS released_just_after;
-- A bad instant is refused.
SELECT booking.release_no_shows(NULL);
SELECT title, status, checked_in_at IS NOT NULL AS checked_in FROM booking.bookings
 WHERE id IN (:soon, :tomorrow, :late, :panel, :by_fm, :noshow, :walkin) ORDER BY id;
-- Released occupies nothing (the one table), has its event and its counter.
SELECT booking.status_occupies('released') AS released_occupies,
       booking.booking_occupies('released', NULL, now()) AS occupies_now;
SELECT kind, entity_id::bigint = :late AS is_late FROM booking.event_queue
 WHERE entity = 'booking' AND entity_id IN (:'late', :'noshow') AND kind LIKE 'booking.released' ORDER BY qid;
SELECT released FROM booking.room_booking_counts WHERE room_id = t_room('Check-in Room');
SELECT count(*) AS counters_off FROM booking.analytics_check();
-- A released booking cannot be checked in, and its time is bookable at once.
SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
SELECT pg_temp.try(format('SELECT api.check_in_booking(%s)', :late));
RESET ROLE;
SELECT t_as('carol@example.com', 'booking_user');
SET ROLE booking_user;
SELECT x ->> 'status' AS status FROM api.create_booking(t_room('Check-in Room'),
    to_json(now() + interval '90 minutes') #>> '{}', to_json(now() + interval '150 minutes') #>> '{}', 'Carol again') x;
RESET ROLE;

-- The series rule.  Three series of five daily occurrences in 2099: one
-- whose owner never comes, one checked in on its second day, one left
-- alone by the setting 0 (never).
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at, series_id)
SELECT t_room('Check-in Room'), t_id('alice@example.com'), v.title,
       v.day + make_interval(days => d), v.day + make_interval(days => d, hours => 1), v.series
  FROM (VALUES ('never comes', timestamptz '2099-03-01 10:00+00', '00000000-0000-0000-0000-000000000001'::uuid),
               ('comes once',  timestamptz '2099-03-01 12:00+00', '00000000-0000-0000-0000-000000000002'::uuid),
               ('no limit',    timestamptz '2099-03-01 14:00+00', '00000000-0000-0000-0000-000000000003'::uuid)) v(title, day, series),
       generate_series(0, 4) d;
UPDATE booking.bookings SET checked_in_at = starts_at WHERE title = 'comes once' AND starts_at = '2099-03-02 12:00+00';
-- A cancelled occurrence is no no-show and breaks no chain.
UPDATE booking.bookings SET status = 'cancelled' WHERE title = 'never comes' AND starts_at = '2099-03-02 10:00+00';
CREATE TEMP VIEW t_series AS
    SELECT title, string_agg(status, ' ' ORDER BY starts_at) AS statuses FROM booking.bookings
     WHERE series_id IS NOT NULL AND starts_at >= '2099-03-01' AND starts_at < '2099-03-06' GROUP BY title ORDER BY title;
-- Day one and day three: released, the rest untouched.
SELECT booking.release_no_shows(t) FROM (VALUES (timestamptz '2099-03-01 10:11+00'), ('2099-03-01 12:11+00'),
    ('2099-03-01 14:11+00'), ('2099-03-03 10:11+00'), ('2099-03-03 12:11+00')) v(t);
SELECT * FROM t_series;
-- The setting is a superuser's, 0..1000.
SET pg_booking.series_no_show_limit = -1;
SET pg_booking.series_no_show_limit = 0;
SELECT booking.release_no_shows(t) FROM (VALUES (timestamptz '2099-03-02 14:11+00'), ('2099-03-03 14:11+00')) v(t);
RESET pg_booking.series_no_show_limit;
-- Day four: the third no-show of "never comes" cancels its fifth day; "comes
-- once" has two in a row since its check-in; "no limit" had its three under 0.
SELECT booking.release_no_shows(t) FROM (VALUES (timestamptz '2099-03-04 10:11+00'), ('2099-03-04 12:11+00')) v(t);
SELECT * FROM t_series;
SELECT kind FROM booking.event_queue e JOIN booking.bookings b ON e.entity = 'booking' AND e.entity_id = b.id::text
 WHERE b.title = 'never comes' AND b.starts_at = '2099-03-05 10:00+00';
-- With the limit at 2, the fourth no-show of "no limit" cancels its fifth
-- day (a series is looked at when it has a new no-show).
SET pg_booking.series_no_show_limit = 2;
SELECT booking.release_no_shows('2099-03-04 14:11+00');
SELECT * FROM t_series;
RESET pg_booking.series_no_show_limit;
SELECT count(*) AS counters_off FROM booking.analytics_check();

-- The routes.
SELECT r.method, r.path, r.function_name, x.schema
  FROM booking.http_routes r LEFT JOIN booking.http_results x ON x.function_name = r.function_name
 WHERE r.function_name IN ('check_in_booking', 'set_room_check_in')
 ORDER BY r.path, r.method;

ROLLBACK;
