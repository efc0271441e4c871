-- The write path in C (issue 11): the events of booking writes, queued by
-- extension/events.c, are the ones the 1.1 SQL queued (kinds, payloads,
-- user_id, id order), and the counters, applied at the end of each
-- top-level statement, follow transactions and subtransactions.
SET client_min_messages = warning;
INSERT INTO booking.users (email, full_name, password_hash, role)
VALUES ('writer@example.com', 'Writer', 'x', 'admin');
INSERT INTO booking.rooms (name, location, capacity) VALUES ('Write Path A', 'HQ', 4), ('Write Path B', 'HQ', 4);
CREATE TEMP TABLE mark AS SELECT coalesce(max(qid), 0) AS qid FROM booking.event_queue;
-- The events after the mark: ids relative to the first booking of this
-- file, the room by name, times and ids left out (checked below).
CREATE FUNCTION pg_temp.events() RETURNS TABLE (kind text, booking bigint, user_is_writer boolean,
                                                owner_is_writer boolean, has_previous boolean, payload jsonb)
LANGUAGE sql AS $$
    SELECT q.kind, q.entity_id::bigint - (SELECT min(id) - 1 FROM booking.bookings WHERE title LIKE 'wp%'),
           q.user_id = t_id('writer@example.com'), (q.payload ->> 'owner_id')::bigint = t_id('writer@example.com'),
           q.payload ? 'previous',
           (q.payload - 'starts_at' - 'ends_at' - 'series_id' - 'room_id' - 'owner_id' - 'previous')
           || jsonb_build_object('room', (SELECT r.name FROM booking.rooms r WHERE r.id = (q.payload ->> 'room_id')::bigint))
      FROM booking.event_queue q, mark
     WHERE q.qid > mark.qid AND q.entity = 'booking'
     ORDER BY q.qid
$$;
SELECT t_as('writer@example.com', 'booking_admin');  -- the claims the trigger reads
-- Two rows in one statement: two events, in id order, the caller as user_id.
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
SELECT t_room('Write Path A'), t_id('writer@example.com'), 'wp ' || i,
       timestamptz '2098-01-05 09:00+00' + make_interval(hours => 2 * i),
       timestamptz '2098-01-05 10:00+00' + make_interval(hours => 2 * i)
  FROM generate_series(0, 1) i;
-- A reschedule (with the previous room and times), a status change, a
-- retitle (no event), a delete.
UPDATE booking.bookings SET room_id = t_room('Write Path B'), starts_at = starts_at + interval '30 minutes'
 WHERE title = 'wp 0';
UPDATE booking.bookings SET status = 'cancelled' WHERE title = 'wp 1';
UPDATE booking.bookings SET title = title || '.' WHERE title LIKE 'wp%';
DELETE FROM booking.bookings WHERE title = 'wp 1.';
SELECT set_config('request.jwt.claims', '', false) = '' AS anonymous;
SELECT * FROM pg_temp.events();
SELECT q.payload -> 'previous' ->> 'starts_at' AS previous_start, q.payload ->> 'starts_at' AS new_start,
       (q.payload -> 'previous' ->> 'room_id')::bigint = t_room('Write Path A') AS previous_room_a
  FROM booking.event_queue q, mark WHERE q.qid > mark.qid AND q.kind = 'booking.rescheduled';
-- Each payload is what booking.booking_event_payload() says of the row
-- (this session's time zone, as the trigger's): the live booking's
-- rescheduled event, checked against the row as it is now.
SELECT count(*) AS payloads_differing
  FROM booking.event_queue q, mark, booking.bookings b
 WHERE q.qid > mark.qid AND q.kind = 'booking.rescheduled' AND b.id = q.entity_id::bigint
   AND q.payload - 'previous' IS DISTINCT FROM booking.booking_event_payload(b);
-- A statement whose rows are not in id order (ids given, descending) goes the
-- SQL way: its events still come in id order.
TRUNCATE mark;
INSERT INTO mark SELECT coalesce(max(qid), 0) FROM booking.event_queue;
INSERT INTO booking.bookings (id, room_id, user_id, title, starts_at, ends_at) OVERRIDING SYSTEM VALUE
VALUES (900000002, t_room('Write Path A'), t_id('writer@example.com'), 'wp high', '2098-02-01 09:00+00', '2098-02-01 10:00+00'),
       (900000001, t_room('Write Path A'), t_id('writer@example.com'), 'wp low', '2098-02-02 09:00+00', '2098-02-02 10:00+00');
SELECT q.kind, q.entity_id, q.user_id IS NULL AS by_psql FROM booking.event_queue q, mark WHERE q.qid > mark.qid ORDER BY q.qid;
DELETE FROM booking.bookings WHERE id IN (900000001, 900000002);
-- A rollback queues nothing, a rolled-back subtransaction neither.
TRUNCATE mark;
INSERT INTO mark SELECT coalesce(max(qid), 0) FROM booking.event_queue;
BEGIN;
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
VALUES (t_room('Write Path A'), t_id('writer@example.com'), 'wp gone', '2098-03-01 09:00+00', '2098-03-01 10:00+00');
ROLLBACK;
BEGIN;
SAVEPOINT s;
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
VALUES (t_room('Write Path A'), t_id('writer@example.com'), 'wp gone', '2098-03-01 09:00+00', '2098-03-01 10:00+00');
ROLLBACK TO s;
COMMIT;
SELECT count(*) AS queued FROM booking.event_queue q, mark WHERE q.qid > mark.qid;

-- Counters.  Within a transaction, every statement sees the counters of
-- the statements before it, subtransactions included.
SELECT room_name, confirmed, cancelled FROM booking.analytics_bookings_by_room WHERE room_name LIKE 'Write Path%' ORDER BY 1;
BEGIN;
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
VALUES (t_room('Write Path A'), t_id('writer@example.com'), 'wp c1', '2098-04-01 09:00+00', '2098-04-01 10:00+00');
SELECT confirmed FROM booking.analytics_bookings_by_room WHERE room_name = 'Write Path A';
SAVEPOINT s;
UPDATE booking.bookings SET status = 'cancelled' WHERE title = 'wp c1';
SELECT confirmed, cancelled FROM booking.analytics_bookings_by_room WHERE room_name = 'Write Path A';
ROLLBACK TO s;
SELECT confirmed, cancelled FROM booking.analytics_bookings_by_room WHERE room_name = 'Write Path A';
-- One statement: a loop of inserts, some in exception blocks that fail
-- (their deltas go with them), a move to the other room.
DO $$
BEGIN
    FOR i IN 1 .. 20 LOOP
        BEGIN
            INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
            VALUES (t_room('Write Path A'), t_id('writer@example.com'), 'wp loop ' || i,
                    timestamptz '2098-05-01 09:00+00' + make_interval(hours => 2 * i),
                    timestamptz '2098-05-01 10:00+00' + make_interval(hours => 2 * i));
            IF i % 4 = 0 THEN
                RAISE SQLSTATE 'PT499' USING MESSAGE = 'undo';
            END IF;
        EXCEPTION WHEN SQLSTATE 'PT499' THEN
            NULL;
        END;
    END LOOP;
    UPDATE booking.bookings SET room_id = t_room('Write Path B') WHERE title IN ('wp loop 1', 'wp loop 2');
END
$$;
SELECT room_name, confirmed, cancelled FROM booking.analytics_bookings_by_room WHERE room_name LIKE 'Write Path%' ORDER BY 1;
SELECT * FROM booking.analytics_check();
COMMIT;
SELECT * FROM booking.analytics_check();
-- Under REPEATABLE READ too, and TRUNCATE still zeroes (rolled back).
BEGIN ISOLATION LEVEL REPEATABLE READ;
DELETE FROM booking.bookings WHERE title LIKE 'wp loop%';
SELECT room_name, confirmed FROM booking.analytics_bookings_by_room WHERE room_name LIKE 'Write Path%' ORDER BY 1;
COMMIT;
-- (The insert's delta, pending when the TRUNCATE comes in the same
-- statement, is applied before the zeroing, not after it.)
BEGIN;
DO $$
BEGIN
    INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
    VALUES (t_room('Write Path A'), t_id('writer@example.com'), 'wp t', '2098-06-01 09:00+00', '2098-06-01 10:00+00');
    TRUNCATE booking.bookings CASCADE;
END
$$;
SELECT sum(confirmed + cancelled + completed) AS counted FROM booking.room_booking_counts;
ROLLBACK;
SELECT * FROM booking.analytics_check();
-- A procedure that commits and rolls back inside: what each transaction
-- wrote is counted with it, and later transactions still see their own
-- statements' counts.
CREATE PROCEDURE pg_temp.book_and_commit() LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
    VALUES (t_room('Write Path B'), t_id('writer@example.com'), 'wp p1', '2098-07-01 09:00+00', '2098-07-01 10:00+00');
    COMMIT;
    INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
    VALUES (t_room('Write Path B'), t_id('writer@example.com'), 'wp p2', '2098-07-02 09:00+00', '2098-07-02 10:00+00');
    ROLLBACK;
    INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
    VALUES (t_room('Write Path B'), t_id('writer@example.com'), 'wp p3', '2098-07-03 09:00+00', '2098-07-03 10:00+00');
END
$$;
CALL pg_temp.book_and_commit();
SELECT confirmed FROM booking.analytics_bookings_by_room WHERE room_name = 'Write Path B';
BEGIN;
UPDATE booking.bookings SET status = 'cancelled' WHERE title = 'wp p3';
SELECT confirmed, cancelled FROM booking.analytics_bookings_by_room WHERE room_name = 'Write Path B';
ROLLBACK;
SELECT * FROM booking.analytics_check();
