-- Analytics: the counters equal a full recount after every kind of change;
-- the routes answer only the roles docs/api.md lists; Grafana's role reads the
-- views and nothing else.
\set SHOW_CONTEXT never
SET timezone TO 'UTC';
SELECT set_config('request.jwt.claims', '', false) = '' AS superuser_session;

-- Every earlier test file's bookings are counted.
SELECT * FROM booking.analytics_check();
-- The views read the counters; the same GROUP BY over the bookings agrees.
SELECT (SELECT to_jsonb(s) FROM booking.analytics_bookings_summary s)
     = (SELECT jsonb_build_object('total', (SELECT count(*) FROM booking.bookings))
               || jsonb_object_agg(st, (SELECT count(*) FROM booking.bookings b WHERE b.status = st))
          FROM unnest(booking.booking_statuses()) st) AS summary_matches;
SELECT count(*) AS by_room_mismatches
  FROM booking.analytics_bookings_by_room v
  FULL JOIN (SELECT r.id, count(b.id) AS total, count(b.id) FILTER (WHERE b.status = 'confirmed') AS confirmed
               FROM booking.rooms r LEFT JOIN booking.bookings b ON b.room_id = r.id GROUP BY r.id) g
    ON g.id = v.room_id
 WHERE (v.total, v.confirmed) IS DISTINCT FROM (g.total, g.confirmed);

-- A fresh room starts at zero.
INSERT INTO booking.rooms (id, name, location, capacity) OVERRIDING SYSTEM VALUE
VALUES (8001, 'Counting House', 'HQ', 6);
SELECT room_name, total, confirmed, cancelled, completed FROM booking.analytics_bookings_by_room
 WHERE room_name = 'Counting House';

-- Scenarios, each followed by the check: create, reschedule, move to another
-- room, cancel, complete, delete, a rolled-back create, a failed create.
SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.create_booking(t_room('Counting House'), '2097-03-01T09:00:00Z', '2097-03-01T10:00:00Z', 'Count me') ->> 'status' AS created;
SELECT jsonb_array_length(api.create_booking(t_room('Counting House'), '2097-03-02T09:00:00Z', '2097-03-02T10:00:00Z', 'Series',
                          '{"frequency": "daily", "count": 3}') -> 'bookings') AS series;
RESET ROLE;
SELECT * FROM booking.analytics_check();
SELECT id AS counted FROM booking.bookings WHERE title = 'Count me' \gset
SET ROLE booking_user;
SELECT api.update_booking(:counted, starts_at => '2097-03-01T11:00:00Z', ends_at => '2097-03-01T12:00:00Z') ->> 'starts_at' AS rescheduled;
RESET ROLE;
SELECT * FROM booking.analytics_check();
SET ROLE booking_user;
SELECT api.update_booking(:counted, room_id => t_room('Library')) ->> 'status' AS moved;
RESET ROLE;
SELECT * FROM booking.analytics_check();
SELECT room_name, total, confirmed FROM booking.analytics_bookings_by_room
 WHERE room_name IN ('Counting House', 'Library') ORDER BY 1;
SET ROLE booking_user;
SELECT api.cancel_booking(:counted) ->> 'status' AS cancelled;
-- A create that clashes writes nothing, counters included.
DO $$
BEGIN
    PERFORM api.create_booking(t_room('Counting House'), '2097-03-02T09:30:00Z', '2097-03-02T10:30:00Z', 'Clash');
EXCEPTION WHEN SQLSTATE 'PT409' THEN
    RAISE NOTICE 'refused with %', SQLSTATE;
END
$$;
RESET ROLE;
SELECT * FROM booking.analytics_check();
UPDATE booking.bookings SET status = 'completed' WHERE title = 'Series' AND starts_at < '2097-03-03T00:00:00Z';
SELECT * FROM booking.analytics_check();
BEGIN;
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
VALUES (t_room('Counting House'), t_id('bob@example.com'), 'Rolled back', '2097-04-01T09:00:00Z', '2097-04-01T10:00:00Z');
SELECT confirmed FROM booking.analytics_bookings_by_room WHERE room_name = 'Counting House';
ROLLBACK;
SELECT confirmed FROM booking.analytics_bookings_by_room WHERE room_name = 'Counting House';
DELETE FROM booking.bookings WHERE title = 'Series' AND status = 'completed';
SELECT * FROM booking.analytics_check();
SELECT room_name, total, confirmed, cancelled, completed FROM booking.analytics_bookings_by_room
 WHERE room_name IN ('Counting House', 'Library') ORDER BY 1;
-- One statement across rooms and statuses: its net change per room.
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at, status)
SELECT r, t_id('bob@example.com'), 'Bulk', timestamptz '2097-05-01 09:00+00' + make_interval(hours => 2 * i),
       timestamptz '2097-05-01 10:00+00' + make_interval(hours => 2 * i), (ARRAY['confirmed', 'cancelled', 'completed'])[1 + i % 3]
  FROM unnest(ARRAY[t_room('Counting House'), t_room('Library')]) r, generate_series(0, 5) i;
SELECT * FROM booking.analytics_check();
UPDATE booking.bookings
   SET room_id = CASE WHEN room_id = t_room('Library') THEN t_room('Counting House') ELSE t_room('Library') END,
       status = CASE status WHEN 'cancelled' THEN 'completed' ELSE 'cancelled' END
 WHERE title = 'Bulk' AND status <> 'confirmed';
SELECT * FROM booking.analytics_check();
SELECT room_name, total, confirmed, cancelled, completed FROM booking.analytics_bookings_by_room
 WHERE room_name IN ('Counting House', 'Library') ORDER BY 1;
DELETE FROM booking.bookings WHERE title = 'Bulk';
SELECT * FROM booking.analytics_check();
-- TRUNCATE zeroes the counters (rolled back here: later files need the rows).
BEGIN;
TRUNCATE booking.bookings;
SELECT * FROM booking.analytics_bookings_summary;
SELECT * FROM booking.analytics_check();
ROLLBACK;
SELECT * FROM booking.analytics_check();
-- A counter that drifted is reported; the rebuild repairs it.
BEGIN;
UPDATE booking.room_booking_counts SET confirmed = confirmed + 1 WHERE room_id = t_room('Counting House');
SELECT summary, counter, kept - recounted AS drift FROM booking.analytics_check();
SELECT booking.analytics_rebuild();
SELECT * FROM booking.analytics_check();
ROLLBACK;

-- Nobody but the owner writes the counters.
SET ROLE booking_admin;
UPDATE booking.room_booking_counts SET confirmed = 1000;
SELECT * FROM booking.room_rating_counts;
RESET ROLE;

-- The routes, by role.  A plain user gets 403 on every one.
SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.analytics_bookings_summary();
SELECT api.analytics_bookings_by_room();
SELECT api.analytics_bookings_per_day('2097-03-01', '2097-03-03');
SELECT api.analytics_average_rating_by_room();
SELECT * FROM booking.analytics_bookings_summary;
RESET ROLE;
SELECT t_as('auditor@example.com', 'booking_auditor');
SET ROLE booking_auditor;
SELECT api.analytics_bookings_summary() = (SELECT to_jsonb(s) FROM booking.analytics_bookings_summary s) AS summary;
SELECT x - 'room_id' AS counting_house FROM jsonb_array_elements(api.analytics_bookings_by_room()) x
 WHERE x ->> 'room_name' = 'Counting House';
SELECT api.analytics_bookings_per_day('2097-03-01', '2097-03-03');
SELECT x - 'room_id' AS library FROM jsonb_array_elements(api.analytics_average_rating_by_room()) x
 WHERE x ->> 'room_name' = 'Library';
-- Bad input: each a clear error.
SELECT api.analytics_bookings_per_day('2097-03-03', '2097-03-01');
SELECT api.analytics_bookings_per_day('2097-01-01', '2098-06-01');
SELECT api.analytics_bookings_per_day('June 1st', '2097-03-03');
SELECT api.analytics_bookings_per_day(NULL, '2097-03-03');
SELECT api.analytics_bookings_by_room(lim => 0);
RESET ROLE;
-- Moderators read ratings only; facility managers bookings only.
SELECT t_as('mod@example.com', 'booking_moderator');
SET ROLE booking_moderator;
SELECT jsonb_typeof(api.analytics_average_rating_by_room()) AS ratings;
SELECT api.analytics_bookings_summary();
SELECT * FROM booking.analytics_bookings_by_room;
RESET ROLE;
SELECT t_as('fm@example.com', 'booking_facility_manager');
SET ROLE booking_facility_manager;
SELECT jsonb_typeof(api.analytics_bookings_summary()) AS summary;
SELECT api.analytics_average_rating_by_room();
RESET ROLE;
SELECT t_as('svc@example.com', 'booking_service_account');
SET ROLE booking_service_account;
SELECT jsonb_typeof(api.analytics_bookings_by_room()) AS by_room;
RESET ROLE;
SELECT set_config('request.jwt.claims', '', false) = '' AS anonymous;
SET ROLE booking_anon;
SELECT api.analytics_bookings_summary();
RESET ROLE;

-- Grafana's role: the views, nothing else.
SET ROLE booking_grafana;
SELECT total >= 0 AS reads_summary FROM booking.analytics_bookings_summary;
SELECT count(*) > 0 AS reads_ratings FROM booking.analytics_rating_by_room;
SELECT count(*) FROM booking.bookings;
SELECT count(*) FROM booking.users;
SELECT api.analytics_bookings_summary();
RESET ROLE;
SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
 WHERE m.member = 'booking_grafana'::regrole;

-- Events of bookings: created, rescheduled, cancelled, completed, deleted;
-- the rolled-back create left none.  Events are read once published.
SELECT booking.publish_events() > 0 AS published;
SELECT e.kind, count(*) FROM booking.events e
 WHERE e.entity = 'booking' AND (e.payload ->> 'room_id')::bigint = t_room('Counting House')
 GROUP BY 1 ORDER BY 1;
SELECT kind, payload -> 'previous' ->> 'starts_at' AS was, payload ->> 'starts_at' AS now,
       (payload -> 'previous' ->> 'room_id')::bigint = t_room('Counting House')
       AND (payload ->> 'room_id')::bigint = t_room('Library') AS moved_to_library
  FROM booking.events WHERE entity = 'booking' AND entity_id = :'counted' ORDER BY id;
-- Only admins and service accounts read events.
SELECT t_as('svc@example.com', 'booking_service_account');
SET ROLE booking_service_account;
SELECT jsonb_path_query_array(api.list_events(kind => 'review.'), '$[*].kind') AS review_events;
SELECT id AS third_last FROM booking.events ORDER BY id DESC OFFSET 2 LIMIT 1 \gset
SELECT jsonb_path_query_array(api.list_events(after_id => :third_last), '$[*].kind') AS last_two;
RESET ROLE;
SELECT t_as('auditor@example.com', 'booking_auditor');
SET ROLE booking_auditor;
SELECT api.list_events();
SELECT count(*) FROM booking.events;
RESET ROLE;
SELECT set_config('request.jwt.claims', '', false) = '' AS superuser_session;
