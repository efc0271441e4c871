-- pg_booking 1.0 → 1.1.
--
-- Every change to the SQL of the extension after 1.0 goes here, in sections
-- by concern; the fresh install of 1.1 is 1.0 followed by this file
-- (Makefile), so both paths run the same statements.  Once 1.1 is released
-- this file is frozen like the 1.0 script.

\echo Use "ALTER EXTENSION pg_booking UPDATE TO '1.1'" to load this file. \quit

-- ==== events in commit order: an outbox published by one writer (issue 8) ====
--
-- In 1.0 an event got its id when the change was written, so ids became
-- visible in commit order, not id order: a reader of "events after id N"
-- could pass an event whose transaction committed after a later id, and
-- never see it.  Now a change only appends to booking.event_queue, in the
-- writer's own transaction (nothing for a rollback, nothing lost for a
-- commit), and booking.publish_events() moves committed queue rows into
-- booking.events.  Only the publisher writes booking.events, one publisher at
-- a time (a table lock), so the ids of one publish are all greater than
-- those of every earlier publish, which had committed before it began: once a
-- reader sees id N, every event with a smaller id is visible too.  A
-- consumer reading after the last id it saw never misses an event and never
-- sees one twice.
--
-- Writers pay one INSERT per statement and no NOTIFY: PostgreSQL serialises
-- the commits of transactions that NOTIFY, so a per-row NOTIFY put a global
-- lock on every write.  The publisher NOTIFYs once per publish
-- ('{"last_id": N}'); listeners read the events from the table, so a live
-- event and a replayed one are the same row.  The background worker
-- "pg_booking events" (extension/events_publisher.c) publishes within
-- milliseconds of a commit: writers set its latch when they commit.

CREATE TABLE booking.event_queue (
    qid       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind      text NOT NULL,
    entity    text NOT NULL,
    entity_id text NOT NULL,
    user_id   bigint,
    payload   jsonb NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE booking.event_queue IS 'events written by committed or running transactions and not yet published into booking.events (booking.publish_events)';
ALTER TABLE booking.event_queue ENABLE ROW LEVEL SECURITY;
-- Queued events are data a restore must keep (they will be published after it).
SELECT pg_catalog.pg_extension_config_dump('booking.event_queue', '');
SELECT pg_catalog.pg_extension_config_dump('booking.event_queue_qid_seq', '');

-- Set the publisher's latch when this transaction commits (C; nothing on
-- abort).  Cheap enough to call once per writing statement.
CREATE FUNCTION booking.wake_event_publisher() RETURNS void
AS 'MODULE_PATHNAME', 'pgb_wake_event_publisher'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION booking.wake_event_publisher IS 'ask the events publisher to run when the calling transaction commits';

CREATE FUNCTION booking.publish_events(max_events integer DEFAULT 10000) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
    gathered integer;
    gathered_last bigint;
    last_id bigint;
BEGIN
    -- One publisher at a time.  EXCLUSIVE conflicts with itself and with the
    -- ROW EXCLUSIVE of an INSERT, never with readers (ACCESS SHARE); the next
    -- statement takes its snapshot after the lock is granted, so it sees
    -- every row the previous publisher moved.
    LOCK TABLE booking.events IN EXCLUSIVE MODE;
    WITH batch AS (
        DELETE FROM booking.event_queue q
         WHERE q.qid IN (SELECT x.qid FROM booking.event_queue x ORDER BY x.qid LIMIT max_events)
        RETURNING q.*),
    published AS (
        INSERT INTO booking.events (at, kind, entity, entity_id, user_id, payload)
        SELECT b.at, b.kind, b.entity, b.entity_id, b.user_id, b.payload FROM batch b ORDER BY b.qid
        RETURNING id)
    SELECT count(*), max(id) INTO n, last_id FROM published;
    -- A Citus coordinator also gathers what its worker nodes published
    -- (section "Citus: one event stream, on the coordinator").
    IF booking.citus_node() = 'coordinator' THEN
        SELECT g.gathered, g.last_id INTO gathered, gathered_last
          FROM booking.gather_worker_events(max_events) g;
        n := n + gathered;
        last_id := greatest(last_id, gathered_last);
    END IF;
    IF n > 0 THEN
        PERFORM pg_notify('pg_booking_events', jsonb_build_object('last_id', last_id)::text);
    END IF;
    RETURN n;
END
$$;
COMMENT ON FUNCTION booking.publish_events IS 'move up to max_events committed events from booking.event_queue into booking.events, in one publish whose ids follow every earlier one; NOTIFY pg_booking_events once; returns how many';

-- emit_events keeps its 1.0 signature (the review trigger calls it) and now
-- queues.  Statement triggers below insert straight from their transition
-- tables: no jsonb array is built, so no statement is too big to log.
CREATE OR REPLACE FUNCTION booking.emit_events(batch jsonb) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    INSERT INTO booking.event_queue (kind, entity, entity_id, user_id, payload)
    SELECT e ->> 'kind', e ->> 'entity', e ->> 'entity_id', booking.current_user_id(), coalesce(e -> 'payload', '{}')
      FROM jsonb_array_elements(batch) WITH ORDINALITY AS x(e, i)
     ORDER BY i;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM booking.wake_event_publisher();
    END IF;
    RETURN n;
END
$$;

CREATE OR REPLACE FUNCTION booking.booking_events() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller bigint := booking.current_user_id();
    queued integer;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO booking.event_queue (kind, entity, entity_id, user_id, payload)
        SELECT 'booking.created', 'booking', x.id::text, caller, booking.booking_event_payload(x)
          FROM new_rows x ORDER BY x.id;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO booking.event_queue (kind, entity, entity_id, user_id, payload)
        SELECT 'booking.deleted', 'booking', x.id::text, caller, booking.booking_event_payload(x)
          FROM old_rows x ORDER BY x.id;
    ELSE
        INSERT INTO booking.event_queue (kind, entity, entity_id, user_id, payload)
        SELECT c.kind, 'booking', c.id::text, caller,
               c.payload || CASE WHEN c.kind = 'booking.rescheduled'
                                 THEN jsonb_build_object('previous', jsonb_build_object('room_id', c.old_room_id,
                                      'starts_at', c.old_starts_at, 'ends_at', c.old_ends_at))
                                 ELSE '{}' END
          FROM (SELECT n.id, booking.booking_event_payload(n) AS payload, o.room_id AS old_room_id,
                       o.starts_at AS old_starts_at, o.ends_at AS old_ends_at,
                       CASE WHEN n.status <> o.status THEN 'booking.' || n.status
                            WHEN (n.room_id, n.starts_at, n.ends_at) IS DISTINCT FROM (o.room_id, o.starts_at, o.ends_at)
                            THEN 'booking.rescheduled' END AS kind
                  FROM new_rows n JOIN old_rows o ON o.id = n.id) c
         WHERE c.kind IS NOT NULL
         ORDER BY c.id;
    END IF;
    GET DIAGNOSTICS queued = ROW_COUNT;
    IF queued > 0 THEN
        PERFORM booking.wake_event_publisher();
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION booking.reservation_events() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller bigint := booking.current_user_id();
    queued integer;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO booking.event_queue (kind, entity, entity_id, user_id, payload)
        SELECT 'reservation.created', 'reservation', x.id::text, caller, booking.reservation_event_payload(x)
          FROM new_rows x;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO booking.event_queue (kind, entity, entity_id, user_id, payload)
        SELECT 'reservation.deleted', 'reservation', x.id::text, caller, booking.reservation_event_payload(x)
          FROM old_rows x;
    ELSE
        INSERT INTO booking.event_queue (kind, entity, entity_id, user_id, payload)
        SELECT c.kind, 'reservation', c.id::text, caller,
               c.payload || CASE WHEN c.kind = 'reservation.changed'
                                 THEN jsonb_build_object('previous', jsonb_build_object('room_type', c.old_room_type,
                                      'arrival_date', c.old_arrival_date, 'stay_length', c.old_stay_length))
                                 ELSE '{}' END
          FROM (SELECT n.id, booking.reservation_event_payload(n) AS payload, o.room_type AS old_room_type,
                       o.arrival_date AS old_arrival_date, o.stay_length AS old_stay_length,
                       CASE WHEN n.status <> o.status THEN 'reservation.' || n.status
                            WHEN (n.arrival_date, n.stay_length, n.room_type) IS DISTINCT FROM
                                 (o.arrival_date, o.stay_length, o.room_type)
                            THEN 'reservation.changed' END AS kind
                  FROM new_rows n JOIN old_rows o ON o.id = n.id) c
         WHERE c.kind IS NOT NULL;
    END IF;
    GET DIAGNOSTICS queued = ROW_COUNT;
    IF queued > 0 THEN
        PERFORM booking.wake_event_publisher();
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION api.list_events IS 'GET /events (admin, service_account): published events after after_id, oldest first, optionally by kind prefix ("review."); ids are visible in order, so reading after the last id seen never misses one; the live stream is NOTIFY pg_booking_events ({"last_id": N})';

REVOKE EXECUTE ON FUNCTION booking.wake_event_publisher(), booking.publish_events(integer) FROM PUBLIC;

-- ==== which bookings occupy a room: one definition (issue 8) ====
--
-- A booking occupies its room while it is confirmed, and a completed one
-- keeps occupying the past slot it used (so no run of the checkout, and no
-- later write, can make room for a second booking over it); a cancelled one
-- does not.  booking.status_occupies is that rule, written once: it is the
-- predicate of the index the C conflict check scans (extension/conflicts.c
-- evaluates the index's own predicate), and availability, schedules and
-- people's free time call it.
CREATE FUNCTION booking.status_occupies(status text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT status IN ('confirmed', 'completed') $$;
COMMENT ON FUNCTION booking.status_occupies IS 'whether a booking in this status occupies its room: confirmed and completed do, cancelled does not';
GRANT EXECUTE ON FUNCTION booking.status_occupies(text) TO booking_api;

-- The conflict check scans a room's occupying bookings by start; ends_at is
-- carried in the index for the readers below.
CREATE INDEX bookings_room_occupying_idx ON booking.bookings (room_id, starts_at) INCLUDE (ends_at)
    WHERE booking.status_occupies(status);
DROP INDEX booking.bookings_room_confirmed_idx;


CREATE OR REPLACE FUNCTION booking.room_schedule(room_id bigint, from_ts timestamptz, to_ts timestamptz) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'id', b.id, 'starts_at', b.starts_at, 'ends_at', b.ends_at, 'status', b.status,
               'mine', b.user_id = booking.current_user_id(),
               'title', CASE WHEN booking.caller_is('admin', 'facility_manager', 'auditor')
                               OR b.user_id = booking.current_user_id() THEN b.title END)
             ORDER BY b.starts_at), '[]')
      FROM booking.bookings b
     WHERE b.room_id = room_schedule.room_id AND booking.status_occupies(b.status)
       AND b.starts_at < to_ts AND b.ends_at > from_ts
$$;


-- ==== each rule once: a booking's times, the clash gap, a room's activeness (issue 10) ====
--
-- In 1.0 a booking's times were checked three times (two CHECKs of
-- booking.bookings, booking.validate_booking_times, the C trigger) with
-- different DETAILs, a room's activeness twice (booking.bookable_room and
-- the C trigger), and the clash gap (buffer before + after, bookings of at
-- most 24 hours) both in the C check and in booking.room_busy.  Each now
-- has one definition, in extension/booking_rules.c (the C trigger, which
-- sees every write of a booking whatever its status or path, applies them):
-- SQL that needs the same answer before writing calls it.
CREATE FUNCTION booking.check_booking_times(starts_at timestamptz, ends_at timestamptz) RETURNS void
AS 'MODULE_PATHNAME', 'check_booking_times'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION booking.check_booking_times IS 'refuse (422 VALIDATION_ERROR) times a booking may not have: ending before it starts, longer than booking.max_booking_length()';

CREATE FUNCTION booking.max_booking_length() RETURNS interval
AS 'MODULE_PATHNAME', 'max_booking_length'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION booking.max_booking_length IS 'the longest a booking may last (scans of a room''s bookings before a time rely on it)';

CREATE FUNCTION booking.clash_gap(buffer_before_minutes integer, buffer_after_minutes integer) RETURNS interval
AS 'MODULE_PATHNAME', 'clash_gap'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION booking.clash_gap IS 'how close two bookings of a room with these buffers may come: closer, they clash';

GRANT EXECUTE ON FUNCTION booking.check_booking_times(timestamptz, timestamptz),
    booking.max_booking_length(), booking.clash_gap(integer, integer) TO booking_api;

-- The trigger checks every row's times (before the CHECKs would), so the
-- CHECKs only restated the rule.
ALTER TABLE booking.bookings DROP CONSTRAINT bookings_times_order, DROP CONSTRAINT bookings_max_length;

CREATE OR REPLACE FUNCTION booking.validate_booking_times(starts_at timestamptz, ends_at timestamptz) RETURNS void
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.check_booking_times(starts_at, ends_at);
    -- The api's own rule (not the table's: staff may record the past).
    IF starts_at < now() AND NOT booking.caller_is('admin', 'facility_manager') THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('booking starts in the past (%s)', to_json(starts_at) #>> '{}'),
            jsonb_build_object('field', 'starts_at'));
    END IF;
END
$$;
COMMENT ON FUNCTION booking.validate_booking_times IS 'the api''s check of a new booking''s times: booking.check_booking_times, and (plain users) not in the past';

-- Whether the room takes bookings is the C trigger's check (it sees every
-- write); this looks the room up for the api (404 when unknown).
CREATE OR REPLACE FUNCTION booking.bookable_room(room_id bigint) RETURNS booking.rooms
LANGUAGE sql STABLE
AS $$ SELECT booking.find_room(room_id) $$;
COMMENT ON FUNCTION booking.bookable_room IS 'the room a booking is for (404 NOT_FOUND when unknown); that it is active is checked by the conflict trigger on writing';

-- ==== the checkout never runs ahead of the calendar (issue 8) ====
--
-- A run of business date d completes meeting bookings that ended by d's run
-- time and stays departing by d, so a date after the latest one due would
-- complete bookings that have not happened and give back nights still to
-- be stayed.  checkout_start is the one door of every run (worker and api):
-- it refuses such a date before anything is written, history included.
-- The clock is the worker's (with the tests' offset), so both agree; the
-- regression tests set pg_booking.checkout_test_clock (superuser only) to
-- run fixed dates years ahead.
CREATE FUNCTION booking.checkout_clock() RETURNS timestamptz
LANGUAGE sql VOLATILE
AS $$
    SELECT coalesce(nullif(current_setting('pg_booking.checkout_test_clock', true), '')::timestamptz,
                    clock_timestamp()
                    + coalesce(nullif(current_setting('pg_booking.checkout_test_clock_offset', true), ''), '0')::interval)
$$;
COMMENT ON FUNCTION booking.checkout_clock IS 'the instant the checkout goes by: now plus pg_booking.checkout_test_clock_offset, or pg_booking.checkout_test_clock (both for tests only)';

CREATE FUNCTION booking.checkout_latest_due() RETURNS date
LANGUAGE sql VOLATILE
AS $$ SELECT booking.checkout_due_date(booking.checkout_clock(), booking.checkout_time(), booking.checkout_time_zone()) $$;
COMMENT ON FUNCTION booking.checkout_latest_due IS 'the latest business date whose checkout is due now; later dates are refused';

CREATE OR REPLACE FUNCTION booking.checkout_start(d date, source text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r booking.checkout_runs;
    latest date := booking.checkout_latest_due();
BEGIN
    PERFORM booking.require_role('admin');
    IF d IS NULL THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'as_of is required', jsonb_build_object('field', 'as_of'));
    END IF;
    IF d > latest THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('business date %s is not due yet', to_char(d, 'YYYY-MM-DD')),
            jsonb_build_object('field', 'as_of', 'as_of', d, 'latest_allowed', latest),
            format('The checkout of a date runs once its run time (%s %s) has passed; the latest date due now is %s.',
                   booking.checkout_time(), booking.checkout_time_zone(), to_char(latest, 'YYYY-MM-DD')));
    END IF;
    -- Serialise starters of one date (the worker and a manual run), so the
    -- second sees the first's row instead of failing on the unique index.
    -- (in the extension's own advisory class: booking.checkout_date_lock, issue 10)
    PERFORM booking.checkout_date_lock(d);
    SELECT * INTO r FROM booking.checkout_runs WHERE business_date = d AND error IS NULL FOR UPDATE;
    IF r.id IS NOT NULL THEN
        RETURN CASE WHEN r.finished_at IS NULL THEN r.id END;
    END IF;
    INSERT INTO booking.checkout_runs (business_date, source) VALUES (d, source) RETURNING * INTO r;
    RETURN r.id;
END
$$;
GRANT EXECUTE ON FUNCTION booking.checkout_clock(), booking.checkout_latest_due() TO booking_admin;

CREATE OR REPLACE FUNCTION api.run_checkout(as_of text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    d date;
    run_id bigint;
    r booking.checkout_runs;
BEGIN
    PERFORM booking.require_role('admin');
    d := CASE WHEN as_of IS NULL THEN booking.checkout_latest_due()
              ELSE booking.parse_date(as_of, 'as_of') END;
    run_id := booking.checkout_run(d, 'manual');
    IF run_id IS NULL THEN
        SELECT * INTO r FROM booking.checkout_runs WHERE business_date = d AND error IS NULL;
        RETURN booking.checkout_run_json(r) || jsonb_build_object('already_done', true);
    END IF;
    SELECT * INTO r FROM booking.checkout_runs WHERE id = run_id;
    RETURN booking.checkout_run_json(r) || jsonb_build_object('already_done', false);
END
$$;
COMMENT ON FUNCTION api.run_checkout IS 'POST /admin/jobs/checkout/run {as_of?} (admin): run the nightly checkout for a business date (default: the latest due; a later date is refused with 422); idempotent, a date done is not run again';

REVOKE EXECUTE ON FUNCTION booking.status_occupies(text), booking.checkout_clock(), booking.checkout_latest_due() FROM PUBLIC;

-- ==== meeting suggestions (issue 11) ====
-- api.suggest_meetings used to try every start of the 15-minute grid against
-- every room, asking room_busy once per pair (1,500 calls for 10 people, 50
-- rooms and a week).  booking.meeting_slots gives the same answer with one
-- busy-time query for all the rooms and no per-start work:
--   1. common: the time every attendee is free (as before);
--   2. per room, the starts at which it is free for the whole meeting: for
--      each stretch f of common minus the room's busy time, [lower(f),
--      upper(f) - duration] (a meeting fits in a stretch iff it starts
--      there), from now on;
--   3. the union of those over the rooms holds exactly the starts at which
--      some room fits; the first lim grid points of it are the answer's
--      starts (each stretch of the union gives at most lim of them);
--   4. for each, the snuggest room whose starts contain it.
-- test/suggest_meetings_reference.sql keeps the 1.0 search as the oracle;
-- sql/51_suggest_oracle.sql compares the two on random data.

-- The busy time of rooms and the free time of users, for many of them in
-- one query: room_busy and user_free (as the section on occupying bookings
-- above defines them, status_occupies included) are now these for one room
-- or user, so each rule is written once.  Plain SQL functions, so they are inlined
-- into the query that calls them (planned with it, and kept with a
-- PL/pgSQL caller's plan); they read every booking, so only SECURITY
-- DEFINER functions call them (called by anyone else, row-level security
-- shows them the caller's own bookings only).  One index scan per room or
-- user, bounded by constants that let it start and stop at the window
-- (bookings are at most 24 hours long, buffers at most 2 x 240 minutes)
-- instead of reading the whole history; the exact conditions follow.
CREATE FUNCTION booking.rooms_busy(room_ids bigint[], from_ts timestamptz, to_ts timestamptz)
RETURNS TABLE (room_id bigint, busy tstzmultirange)
LANGUAGE sql STABLE
AS $$
    SELECT r.id,
           coalesce((SELECT range_agg(tstzrange(b.starts_at - g.gap, b.ends_at + g.gap))
                       FROM booking.bookings b
                      WHERE b.room_id = r.id AND booking.status_occupies(b.status)
                        AND b.starts_at < to_ts + interval '480 minutes'
                        AND b.starts_at > from_ts - interval '480 minutes' - booking.max_booking_length()
                        AND b.starts_at < to_ts + g.gap
                        AND b.starts_at > from_ts - g.gap - booking.max_booking_length()
                        AND b.ends_at > from_ts - g.gap), '{}'::tstzmultirange)
      FROM booking.rooms r
     CROSS JOIN LATERAL (SELECT booking.clash_gap(r.buffer_before_minutes, r.buffer_after_minutes) AS gap) g
     WHERE r.id = ANY (room_ids)
$$;
COMMENT ON FUNCTION booking.rooms_busy IS 'for each of the rooms, the intervals in which no new booking may lie (occupying bookings widened by buffers); call from SECURITY DEFINER functions';

CREATE OR REPLACE FUNCTION booking.room_busy(room_id bigint, from_ts timestamptz, to_ts timestamptz)
RETURNS tstzmultirange
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT busy FROM booking.rooms_busy(ARRAY[room_id], from_ts, to_ts) $$;

CREATE FUNCTION booking.users_free(user_ids bigint[], win tstzrange)
RETURNS TABLE (user_id bigint, free tstzmultirange)
LANGUAGE sql STABLE
AS $$
    SELECT u.id,
           coalesce((SELECT range_agg(a.during * win) FROM booking.user_availability a
                      WHERE a.user_id = u.id AND a.during && win), '{}'::tstzmultirange)
         - coalesce((SELECT range_agg(tstzrange(b.starts_at, b.ends_at)) FROM booking.bookings b
                      WHERE b.user_id = u.id AND booking.status_occupies(b.status)
                        AND b.starts_at < upper(win) AND b.starts_at > lower(win) - booking.max_booking_length()
                        AND b.ends_at > lower(win)), '{}'::tstzmultirange)
      FROM unnest(user_ids) u(id)
$$;
COMMENT ON FUNCTION booking.users_free IS 'for each of the users, the intervals of a window in which they are free (published availability minus their own occupying bookings); call from SECURITY DEFINER functions';

CREATE OR REPLACE FUNCTION booking.user_free(user_id bigint, win tstzrange) RETURNS tstzmultirange
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT free FROM booking.users_free(ARRAY[user_id], win) $$;

-- SECURITY DEFINER: it reads everyone's bookings (through rooms_busy and
-- users_free) and reveals free slots only.  Its queries take parameters
-- whose values hardly change their best plan, so the generic plan is kept
-- rather than planning each step anew; they take milliseconds, which JIT
-- compilation (hundreds of them, set off by the planner's guesses for the
-- generated starts) would only lengthen.
CREATE FUNCTION booking.meeting_slots(ids bigint[], dur interval, w tstzrange, need integer, lim integer)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
DECLARE
    common tstzmultirange := (SELECT range_intersect_agg(free) FROM booking.users_free(ids, w));
    rooms bigint[] := ARRAY(SELECT id FROM booking.rooms WHERE active AND capacity >= need);
    found jsonb := '[]';
    span interval := interval '1 day';
    a timestamptz;
    b timestamptz;
BEGIN
    IF isempty(common) OR rooms = '{}' THEN
        RETURN found;
    END IF;
    -- Starts in [a, b), b - a doubling from a day, until lim are found: the
    -- answer is usually in the first day of a long window.  A meeting
    -- starting before b ends before b + dur, so the attendees' and rooms'
    -- time of [a, b + dur) decides the starts of [a, b).
    a := lower(common);
    WHILE a < upper(common) AND jsonb_array_length(found) < lim LOOP
        b := least(a + span, upper(common));
        found := found || booking.meeting_slots_between(common * tstzmultirange(tstzrange(a, b + dur)), rooms,
                                                        dur, a, b, lim - jsonb_array_length(found));
        a := b;
        span := span * 2;
    END LOOP;
    RETURN found;
END
$$;
COMMENT ON FUNCTION booking.meeting_slots IS 'the search of api.suggest_meetings (arguments checked): up to lim starts on the 15-minute grid, from now on, at which every attendee and an active room of capacity need are free for dur, each with its snuggest room';

-- One step of the search: the first lim starts in [a, b) at which one of
-- the rooms is free for dur, within the attendees' common free time.
CREATE FUNCTION booking.meeting_slots_between(common tstzmultirange, rooms bigint[], dur interval,
                                              a timestamptz, b timestamptz, lim integer)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
BEGIN
    RETURN (
    WITH room_starts AS MATERIALIZED (
        SELECT r.id, r.name, r.capacity, s.starts
          FROM booking.rooms_busy(rooms, a, b + dur) rb
          JOIN booking.rooms r ON r.id = rb.room_id
         CROSS JOIN LATERAL (
                SELECT range_agg(tstzrange(lower(f), upper(f) - dur, '[]'))
                       * tstzmultirange(tstzrange(greatest(a, now()), b)) AS starts
                  FROM unnest(common - rb.busy) f
                 WHERE upper(f) - dur >= lower(f)) s
         WHERE s.starts IS NOT NULL AND NOT isempty(s.starts)
    ), any_room AS (
        SELECT g FROM unnest((SELECT range_agg(g) FROM room_starts rs, unnest(rs.starts) g)) g
    ), first_starts AS (
        SELECT p.s
          FROM any_room x
         CROSS JOIN LATERAL (SELECT date_bin('15 minutes', lower(x.g), timestamptz '2000-01-01 00:00+00') AS d) d
         CROSS JOIN LATERAL generate_series(d.d, least(upper(x.g), d.d + lim * interval '15 minutes'),
                                            interval '15 minutes') p(s)
         WHERE x.g @> p.s
         ORDER BY p.s
         LIMIT lim
    )
    SELECT coalesce(jsonb_agg(jsonb_build_object('starts_at', f.s, 'ends_at', f.s + dur, 'room_id', r.id,
                                                 'room_name', r.name, 'capacity', r.capacity)
                              ORDER BY f.s), '[]')
      FROM first_starts f
     CROSS JOIN LATERAL (SELECT rs.id, rs.name, rs.capacity FROM room_starts rs
                          WHERE rs.starts @> f.s ORDER BY rs.capacity, rs.name LIMIT 1) r);
END
$$;
COMMENT ON FUNCTION booking.meeting_slots_between IS 'one step of booking.meeting_slots: the first lim starts in [a, b) at which the common free time and one of the rooms allow a meeting of dur';
REVOKE EXECUTE ON FUNCTION booking.rooms_busy(bigint[], timestamptz, timestamptz),
    booking.users_free(bigint[], tstzrange),
    booking.meeting_slots(bigint[], interval, tstzrange, integer, integer),
    booking.meeting_slots_between(tstzmultirange, bigint[], interval, timestamptz, timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION booking.meeting_slots(bigint[], interval, tstzrange, integer, integer),
    booking.meeting_slots_between(tstzmultirange, bigint[], interval, timestamptz, timestamptz, integer) TO booking_api;

-- The checks as in 1.0; the search is booking.meeting_slots.
CREATE OR REPLACE FUNCTION api.suggest_meetings(attendees bigint[], duration_minutes integer, "from" text, "to" text,
                                                min_capacity integer DEFAULT NULL, lim integer DEFAULT 5) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    w tstzrange;
    ids bigint[];
    need integer;
BEGIN
    PERFORM booking.require_user();
    ids := booking.parse_attendees(attendees, 'attendees');
    w := booking.parse_window("from", "to", 14);
    IF duration_minutes IS NULL OR duration_minutes NOT BETWEEN 15 AND 1440 OR duration_minutes % 15 <> 0 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'duration_minutes must be a multiple of 15 from 15 to 1440',
            jsonb_build_object('field', 'duration_minutes'));
    END IF;
    IF lim IS NULL OR lim NOT BETWEEN 1 AND 50 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('limit %s is out of range', coalesce(lim::text, 'NULL')),
            jsonb_build_object('field', 'limit', 'min', 1, 'max', 50));
    END IF;
    need := coalesce(min_capacity, cardinality(ids));
    IF need < 1 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('min_capacity %s is not positive', need),
            jsonb_build_object('field', 'min_capacity'));
    END IF;
    RETURN booking.meeting_slots(ids, make_interval(mins => duration_minutes), w, need, lim);
END
$$;

-- ==== Observability: the database's own figures for Prometheus (issue 12) ====
--
-- prometheus-postgres-exporter runs docker/prometheus/postgres-exporter-queries.yaml
-- against these functions, signed in as booking_exporter: a role that may
-- read the server's statistics (pg_monitor) and call these three functions,
-- nothing else.  It cannot log in until the deployment gives it a password
-- (docker/initdb does).  The dashboards' role may call them too.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'booking_exporter') THEN
        CREATE ROLE booking_exporter NOLOGIN;
    END IF;
END
$$;
GRANT pg_monitor TO booking_exporter;
GRANT USAGE ON SCHEMA booking TO booking_exporter;

-- Rate-limit pools: how full each rule's shared memory is, and its counters
-- since the server started (they live in shared memory, so they count the
-- calls of every adapter replica and of psql alike).
CREATE FUNCTION booking.metrics_rate_limits()
RETURNS TABLE (endpoint text, max_requests integer, window_seconds numeric, pool_keys bigint,
               pool_capacity_keys bigint, pool_used_ratio double precision, admitted_total bigint,
               denied_total bigint, forced_evictions_total bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.endpoint, r.max_requests, trim_scale(extract(epoch FROM r.window_length)),
           coalesce(s.keys, 0), coalesce(s.capacity, 0),
           CASE WHEN s.capacity > 0 THEN s.keys::double precision / s.capacity ELSE 0 END,
           coalesce(s.admitted, 0), coalesce(s.denied, 0), coalesce(s.evicted_forced, 0)
      FROM booking.rate_limits r
      LEFT JOIN booking.rate_limit_stats() s ON s.endpoint = r.endpoint
     ORDER BY r.endpoint
$$;
COMMENT ON FUNCTION booking.metrics_rate_limits IS
'for the exporter: per rate-limit rule, keys held against the pool''s capacity, admissions, denials and forced evictions since the server started';

-- The nightly checkout: when it last succeeded, and how far behind it is.
-- last_success_at falls back to the server's start when no run ever
-- succeeded, so "no successful run for 26 h" means a server up that long
-- without one.  lag_seconds: 0 when the business date due now has its run,
-- else the time since the first date without one was due.
CREATE FUNCTION booking.metrics_checkout()
RETURNS TABLE (last_success_timestamp_seconds double precision, last_business_date text,
               lag_seconds double precision, last_run_failed integer, failed_runs_total bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH done AS (
        SELECT max(finished_at) AS finished_at, max(business_date) AS business_date
          FROM booking.checkout_runs WHERE error IS NULL AND finished_at IS NOT NULL
    ), due AS (
        SELECT booking.checkout_due_date(now(), booking.checkout_time(), booking.checkout_time_zone()) AS d
    ), todo AS (
        SELECT coalesce(done.business_date + 1, due.d) AS d FROM done, due
    )
    SELECT extract(epoch FROM coalesce(done.finished_at, pg_postmaster_start_time()))::double precision,
           coalesce(done.business_date::text, ''),
           CASE WHEN todo.d > due.d THEN 0
                ELSE greatest(0, extract(epoch FROM now() - booking.checkout_instant(todo.d, booking.checkout_time(),
                                                                                     booking.checkout_time_zone())))
           END::double precision,
           coalesce((SELECT (l.error IS NOT NULL)::integer FROM booking.checkout_runs l ORDER BY l.id DESC LIMIT 1), 0),
           (SELECT count(*) FROM booking.checkout_runs f WHERE f.error IS NOT NULL)
      FROM done, due, todo
$$;
COMMENT ON FUNCTION booking.metrics_checkout IS
'for the exporter: when the nightly checkout last succeeded (the server''s start if never), the last business date done, its lag behind the date due now, whether the last run failed';

-- The events outbox: the newest published id, and the committed events the
-- publisher has not moved into booking.events yet (booking.event_queue; a
-- running transaction's rows are not visible, so they do not count).
CREATE FUNCTION booking.metrics_events()
RETURNS TABLE (last_id bigint, backlog bigint, oldest_unpublished_age_seconds double precision)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT max(e.id) FROM booking.events e), 0),
           (SELECT count(*) FROM booking.event_queue q),
           coalesce((SELECT greatest(0, extract(epoch FROM now() - min(q.at))) FROM booking.event_queue q), 0)::double precision
$$;
COMMENT ON FUNCTION booking.metrics_events IS
'for the exporter: the newest published event id, the committed events not published yet and the age of the oldest of them';

REVOKE EXECUTE ON FUNCTION booking.metrics_rate_limits(), booking.metrics_checkout(), booking.metrics_events() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION booking.metrics_rate_limits(), booking.metrics_checkout(), booking.metrics_events()
  TO booking_exporter, booking_grafana;

-- ==== read replica (issue 8) ====
-- The adapter sends a GET to the read replica only when its function is
-- STABLE or IMMUTABLE (as PostgREST allows GET for those only).  The
-- rate-limit counters live in each server's shared memory, not in WAL: on a
-- replica they are the replica's, not the primary's.  The function that reads
-- them can change its answer within a statement too, so VOLATILE is its true
-- label, and that keeps GET /admin/analytics/rate-limits on the primary.
ALTER FUNCTION api.analytics_rate_limits() VOLATILE;

-- ==== revenue: rates, prices of stays, cancellation fees, hotel KPIs (issue 15) ====
--
-- A hotel sells in one currency (ISO 4217, booking.currencies).  A hotel
-- with no currency is not priced (as in 1.0): its stays carry no amounts.
-- Once a currency is set, every night needs a rate (booking.rates, per hotel,
-- room type and night, numeric in the currency's minor units) to be sold.
--
-- The price of a stay is computed by one SQL function, booking.price_stay,
-- called by the trigger reservations_price (BEFORE INSERT/UPDATE, after
-- reservations_nights in trigger name order) and by api.quote_reservation.
-- It is not in the C trigger: the rule is written once in SQL, where the quote
-- uses it too, and inventory.c keeps one concern (nights held).  It runs in the
-- same statement as the take of the nights, so a stay that cannot be priced
-- holds nothing, and a stay is never held without its price.  The per-night
-- breakdown is stored on the row (nightly_prices {"YYYY-MM-DD": amount}) with
-- its total; a later rate change does not touch it.  A change of dates keeps
-- the stored price of every night the stay already had (same room type) and
-- prices only the new nights at today's rates; a change of room type
-- reprices every night.  The price columns are written by this trigger only.

CREATE TABLE booking.currencies (
    code        text PRIMARY KEY CHECK (code ~ '^[A-Z]{3}$'),
    minor_units integer NOT NULL CHECK (minor_units BETWEEN 0 AND 4)
);
COMMENT ON TABLE booking.currencies IS 'ISO 4217 currencies a hotel may sell in, with their minor units (decimals)';
INSERT INTO booking.currencies (code, minor_units)
SELECT c, CASE WHEN c IN ('BHD', 'IQD', 'JOD', 'KWD', 'LYD', 'OMR', 'TND') THEN 3
               WHEN c IN ('BIF', 'CLP', 'DJF', 'GNF', 'ISK', 'JPY', 'KMF', 'KRW', 'PYG', 'RWF', 'UGX',
                          'UYI', 'VND', 'VUV', 'XAF', 'XOF', 'XPF') THEN 0
               WHEN c IN ('CLF', 'UYW') THEN 4
               ELSE 2 END
  FROM unnest('{AED,AFN,ALL,AMD,ANG,AOA,ARS,AUD,AWG,AZN,BAM,BBD,BDT,BGN,BHD,BIF,BMD,BND,BOB,BOV,BRL,BSD,BTN,BWP,
                BYN,BZD,CAD,CDF,CHE,CHF,CHW,CLF,CLP,CNY,COP,COU,CRC,CUP,CVE,CZK,DJF,DKK,DOP,DZD,EGP,ERN,ETB,
                EUR,FJD,FKP,GBP,GEL,GHS,GIP,GMD,GNF,GTQ,GYD,HKD,HNL,HTG,HUF,IDR,ILS,INR,IQD,IRR,ISK,JMD,JOD,
                JPY,KES,KGS,KHR,KMF,KPW,KRW,KWD,KYD,KZT,LAK,LBP,LKR,LRD,LSL,LYD,MAD,MDL,MGA,MKD,MMK,MNT,MOP,
                MRU,MUR,MVR,MWK,MXN,MXV,MYR,MZN,NAD,NGN,NIO,NOK,NPR,NZD,OMR,PAB,PEN,PGK,PHP,PKR,PLN,PYG,QAR,
                RON,RSD,RUB,RWF,SAR,SBD,SCR,SDG,SEK,SGD,SHP,SLE,SOS,SRD,SSP,STN,SVC,SYP,SZL,THB,TJS,TMT,TND,
                TOP,TRY,TTD,TWD,TZS,UAH,UGX,USD,USN,UYI,UYU,UYW,UZS,VED,VES,VND,VUV,WST,XAF,XCD,XOF,XPF,YER,
                ZAR,ZMW,ZWG}'::text[]) c;
GRANT SELECT ON booking.currencies TO booking_api;

ALTER TABLE booking.hotels
    ADD COLUMN currency text REFERENCES booking.currencies,
    ADD COLUMN cancel_free_days integer,
    ADD COLUMN cancel_penalty text,
    ADD COLUMN cancel_percent numeric(5,2),
    ADD CONSTRAINT hotels_cancel_free_days CHECK (cancel_free_days IS NULL OR cancel_free_days BETWEEN 0 AND 365),
    ADD CONSTRAINT hotels_cancel_penalty CHECK (cancel_penalty IS NULL OR cancel_penalty IN ('first_night', 'percent')),
    ADD CONSTRAINT hotels_cancel_percent CHECK ((cancel_penalty = 'percent') = (cancel_percent IS NOT NULL)
                                                AND (cancel_percent IS NULL OR cancel_percent BETWEEN 0 AND 100)),
    ADD CONSTRAINT hotels_cancel_policy CHECK ((cancel_free_days IS NULL) = (cancel_penalty IS NULL));
COMMENT ON COLUMN booking.hotels.currency IS 'ISO 4217 code the hotel sells in; NULL: the hotel''s stays are not priced';
COMMENT ON COLUMN booking.hotels.cancel_free_days IS 'cancellation is free until this many days before arrival; NULL: always free';

CREATE TABLE booking.rates (
    hotel_id  bigint NOT NULL,
    room_type text NOT NULL,
    night     date NOT NULL,
    amount    numeric NOT NULL,
    PRIMARY KEY (hotel_id, room_type, night),
    -- A rate is for a night that exists: the range of set_rates must have inventory.
    FOREIGN KEY (hotel_id, room_type, night) REFERENCES booking.inventory,
    CONSTRAINT rates_amount_nonnegative CHECK (amount >= 0)
);
COMMENT ON TABLE booking.rates IS 'price of one room of a type for one night, in the hotel''s currency';
SELECT pg_catalog.pg_extension_config_dump('booking.rates', '');
GRANT SELECT ON booking.rates TO booking_api;
GRANT INSERT, UPDATE ON booking.rates TO booking_admin, booking_facility_manager;

ALTER TABLE booking.reservations
    ADD COLUMN currency text,
    ADD COLUMN nightly_prices jsonb,
    ADD COLUMN total_amount numeric,
    ADD COLUMN cancellation_fee numeric;
COMMENT ON COLUMN booking.reservations.nightly_prices IS 'the price of each night of the stay, {"YYYY-MM-DD": amount}, fixed when the night was booked';
COMMENT ON COLUMN booking.reservations.total_amount IS 'sum of nightly_prices';
COMMENT ON COLUMN booking.reservations.cancellation_fee IS 'fee charged when the stay was cancelled (hotel policy on the cancel date)';

-- An amount in a currency: not negative, no more decimals than the currency has.
CREATE FUNCTION booking.validate_amount(amount numeric, currency text, field text) RETURNS void
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF amount IS NULL OR amount < 0 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('%s %s is not a price: amounts are zero or more', field, coalesce(amount::text, 'NULL')),
            jsonb_build_object('field', field));
    END IF;
    IF scale(amount) > (SELECT c.minor_units FROM booking.currencies c WHERE c.code = currency) THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('%s %s has more decimals than %s has', field, amount, currency),
            jsonb_build_object('field', field, 'currency', currency));
    END IF;
END
$$;

-- The price of nights [arrival, arrival + nights) of (hotel, room type): keep
-- gives prices already fixed for some nights ({"YYYY-MM-DD": amount}); the
-- others take the current rate.  A night without a rate is not sellable.
-- {"currency", "nights", "total"}, all null for a hotel without a currency.
CREATE FUNCTION booking.price_stay(hotel_id bigint, room_type text, arrival date, nights integer,
                                   keep jsonb DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    cur text;
    priced jsonb;
    total numeric;
    missing date;
BEGIN
    SELECT h.currency INTO cur FROM booking.hotels h WHERE h.id = price_stay.hotel_id;
    IF cur IS NULL THEN
        RETURN jsonb_build_object('currency', NULL, 'nights', NULL, 'total', NULL);
    END IF;
    SELECT min(n.night) FILTER (WHERE n.amount IS NULL),
           jsonb_object_agg(to_char(n.night, 'YYYY-MM-DD'), n.amount), sum(n.amount)
      INTO missing, priced, total
      FROM (SELECT d::date AS night,
                   coalesce((keep ->> to_char(d, 'YYYY-MM-DD'))::numeric, r.amount) AS amount
              FROM generate_series(arrival, arrival + nights - 1, interval '1 day') d
              LEFT JOIN booking.rates r ON r.hotel_id = price_stay.hotel_id AND r.room_type = price_stay.room_type
                                       AND r.night = d::date) n;
    IF missing IS NOT NULL THEN
        PERFORM booking.raise_error(409, 'NO_RATE',
            format('room type "%s" has no rate for the night of %s', room_type, to_char(missing, 'YYYY-MM-DD')),
            jsonb_build_object('hotel_id', hotel_id, 'room_type', room_type, 'night', to_char(missing, 'YYYY-MM-DD')),
            'A night without a rate cannot be sold; PUT /inventory/{hotel_id}/rates sets rates.');
    END IF;
    RETURN jsonb_build_object('currency', cur, 'nights', priced, 'total', total);
END
$$;
COMMENT ON FUNCTION booking.price_stay IS 'the nightly prices and total of a stay (kept prices first, else current rates); 409 NO_RATE naming the first night without a rate';

-- The fee of cancelling r today under its hotel's policy.
CREATE FUNCTION booking.cancellation_fee(r booking.reservations) RETURNS numeric
LANGUAGE sql STABLE
AS $$
    SELECT CASE WHEN r.total_amount IS NULL OR h.cancel_free_days IS NULL
                  OR r.arrival_date - booking.hotel_today() >= h.cancel_free_days THEN
                    CASE WHEN r.total_amount IS NULL THEN NULL ELSE 0 END
                WHEN h.cancel_penalty = 'first_night' THEN (r.nightly_prices ->> to_char(r.arrival_date, 'YYYY-MM-DD'))::numeric
                ELSE round(r.total_amount * h.cancel_percent / 100, c.minor_units) END
      FROM booking.hotels h LEFT JOIN booking.currencies c ON c.code = r.currency
     WHERE h.id = r.hotel_id
$$;
COMMENT ON FUNCTION booking.cancellation_fee IS 'cancellation fee of a stay cancelled today: 0 until cancel_free_days before arrival, then the first night or cancel_percent of the total';

CREATE FUNCTION booking.reservation_price() RETURNS trigger
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    keep jsonb;
    p jsonb;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        NEW.currency := OLD.currency;
        NEW.nightly_prices := OLD.nightly_prices;
        NEW.total_amount := OLD.total_amount;
        NEW.cancellation_fee := CASE WHEN NEW.status = 'cancelled' AND OLD.status <> 'cancelled'
                                     THEN booking.cancellation_fee(OLD) ELSE OLD.cancellation_fee END;
        IF NEW.arrival_date = OLD.arrival_date AND NEW.stay_length = OLD.stay_length
           AND NEW.room_type = OLD.room_type THEN
            RETURN NEW;
        END IF;
        IF NEW.room_type = OLD.room_type THEN
            keep := OLD.nightly_prices;
        END IF;
    ELSE
        NEW.cancellation_fee := NULL;
    END IF;
    p := booking.price_stay(NEW.hotel_id, NEW.room_type, NEW.arrival_date, NEW.stay_length, keep);
    NEW.currency := p ->> 'currency';
    NEW.nightly_prices := p -> 'nights';
    NEW.total_amount := (p ->> 'total')::numeric;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION booking.reservation_price IS 'trigger: price a stay when it is made or its dates or room type change (NO_RATE); the price columns are written here only';

-- Both fire after reservations_nights (BEFORE triggers fire in name order):
-- the nights are taken, then priced, in the same statement.  The WHEN clause
-- keeps the many updates that change none of this (check-in, the nightly
-- checkout's status changes) from calling PL/pgSQL at all.
CREATE TRIGGER reservations_price
    BEFORE INSERT ON booking.reservations
    FOR EACH ROW EXECUTE FUNCTION booking.reservation_price();
CREATE TRIGGER reservations_price_change
    BEFORE UPDATE OF room_type, arrival_date, stay_length, status,
                     currency, nightly_prices, total_amount, cancellation_fee
    ON booking.reservations
    FOR EACH ROW
    WHEN (NEW.room_type IS DISTINCT FROM OLD.room_type OR NEW.arrival_date IS DISTINCT FROM OLD.arrival_date
          OR NEW.stay_length IS DISTINCT FROM OLD.stay_length
          OR (NEW.status = 'cancelled' AND OLD.status IS DISTINCT FROM 'cancelled')
          OR NEW.currency IS DISTINCT FROM OLD.currency OR NEW.nightly_prices IS DISTINCT FROM OLD.nightly_prices
          OR NEW.total_amount IS DISTINCT FROM OLD.total_amount
          OR NEW.cancellation_fee IS DISTINCT FROM OLD.cancellation_fee)
    EXECUTE FUNCTION booking.reservation_price();

CREATE OR REPLACE FUNCTION booking.reservation_json(r booking.reservations) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object('id', r.id, 'hotel_id', r.hotel_id, 'room_type', r.room_type,
                              'user_id', r.user_id, 'guest_name', r.guest_name,
                              'arrival_date', r.arrival_date, 'stay_length', r.stay_length,
                              'departure_date', r.departure_date, 'adults', r.adults,
                              'children', r.children, 'status', r.status,
                              'nights_held', r.held_until - r.arrival_date,
                              'checked_in_at', r.checked_in_at, 'checked_out_at', r.checked_out_at,
                              'created_at', r.created_at, 'updated_at', r.updated_at)
        -- Priced stays (hotels with a currency) answer with their price.
        || CASE WHEN r.currency IS NULL THEN '{}'::jsonb
                ELSE jsonb_build_object('currency', r.currency, 'nightly_prices', r.nightly_prices,
                                        'total_amount', r.total_amount, 'cancellation_fee', r.cancellation_fee) END
$$;

CREATE OR REPLACE FUNCTION booking.hotel_json(h booking.hotels) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object('id', h.id, 'name', h.name, 'location', h.location,
                              'created_at', h.created_at, 'updated_at', h.updated_at)
        || CASE WHEN h.currency IS NULL AND h.cancel_free_days IS NULL THEN '{}'::jsonb
                ELSE jsonb_build_object('currency', h.currency,
                                        'cancellation_policy', CASE WHEN h.cancel_free_days IS NOT NULL THEN
                                            jsonb_build_object('free_days', h.cancel_free_days, 'penalty', h.cancel_penalty,
                                                               'percent', h.cancel_percent) END) END
$$;

CREATE FUNCTION api.set_hotel_currency(hotel_id bigint, currency text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    h booking.hotels;
    iso text := upper(btrim(currency));
BEGIN
    PERFORM booking.require_role('admin');
    h := booking.find_hotel(hotel_id);
    IF iso IS NULL OR NOT EXISTS (SELECT 1 FROM booking.currencies c WHERE c.code = iso) THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('currency "%s" is not an ISO 4217 currency code', coalesce(currency, 'NULL')),
            jsonb_build_object('field', 'currency'));
    END IF;
    -- Stored prices are in the hotel's currency: it is set once.
    IF h.currency IS NOT NULL AND h.currency <> iso THEN
        PERFORM booking.raise_error(409, 'INVALID_STATE',
            format('hotel %s already sells in %s', hotel_id, h.currency),
            jsonb_build_object('hotel_id', hotel_id, 'currency', h.currency));
    END IF;
    UPDATE booking.hotels x SET currency = iso, updated_at = now() WHERE x.id = set_hotel_currency.hotel_id
    RETURNING * INTO h;
    RETURN booking.hotel_json(h);
END
$$;
COMMENT ON FUNCTION api.set_hotel_currency IS 'PUT /hotels/{hotel_id}/currency (admin): the ISO 4217 currency the hotel sells in, set once; its nights then need rates to be sold; 404, 409 INVALID_STATE, 422';

CREATE FUNCTION api.set_rates(hotel_id bigint, room_type text, "from" text, "to" text,
                              amount numeric DEFAULT NULL, weekday_amounts jsonb DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    h booking.hotels;
    nights daterange;
    days constant text[] := '{mon,tue,wed,thu,fri,sat,sun}';
    k text;
    v jsonb;
    missing date;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager');
    h := booking.find_hotel(hotel_id);
    PERFORM booking.validate_room_type(room_type);
    nights := booking.parse_nights("from", "to");
    IF h.currency IS NULL THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('hotel %s has no currency', hotel_id),
            jsonb_build_object('field', 'currency', 'hotel_id', hotel_id), 'PUT /hotels/{hotel_id}/currency sets it.');
    END IF;
    IF amount IS NULL AND weekday_amounts IS NULL THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'give amount or weekday_amounts',
            jsonb_build_object('field', 'amount'));
    END IF;
    IF amount IS NOT NULL THEN
        PERFORM booking.validate_amount(amount, h.currency, 'amount');
    END IF;
    IF weekday_amounts IS NOT NULL THEN
        IF jsonb_typeof(weekday_amounts) <> 'object' THEN
            PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'weekday_amounts must be an object like {"sat": 120}',
                jsonb_build_object('field', 'weekday_amounts'));
        END IF;
        FOR k, v IN SELECT * FROM jsonb_each(weekday_amounts) LOOP
            IF NOT (k = ANY (days)) OR jsonb_typeof(v) <> 'number' THEN
                PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
                    format('weekday_amounts: "%s" is not a weekday (mon..sun) with a number', k),
                    jsonb_build_object('field', 'weekday_amounts', 'key', k));
            END IF;
            PERFORM booking.validate_amount(v::text::numeric, h.currency, 'weekday_amounts.' || k);
        END LOOP;
        IF amount IS NULL AND (SELECT count(*) FROM jsonb_object_keys(weekday_amounts)) < 7 THEN
            PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
                'weekday_amounts must name all seven days unless amount is given for the others',
                jsonb_build_object('field', 'weekday_amounts'));
        END IF;
    END IF;
    SELECT min(d::date) INTO missing
      FROM generate_series(lower(nights), upper(nights) - 1, interval '1 day') d
     WHERE NOT EXISTS (SELECT 1 FROM booking.inventory i
                        WHERE i.hotel_id = set_rates.hotel_id AND i.room_type = set_rates.room_type AND i.night = d::date);
    IF missing IS NOT NULL THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('no inventory of room type "%s" for the night of %s', room_type, to_char(missing, 'YYYY-MM-DD')),
            jsonb_build_object('field', 'to', 'hotel_id', hotel_id, 'room_type', room_type,
                               'night', to_char(missing, 'YYYY-MM-DD')),
            'POST /inventory/{hotel_id}/adjust makes the nights first.');
    END IF;
    INSERT INTO booking.rates AS r (hotel_id, room_type, night, amount)
    SELECT set_rates.hotel_id, set_rates.room_type, d::date,
           coalesce((weekday_amounts ->> days[extract(isodow FROM d)::integer])::numeric, amount)
      FROM generate_series(lower(nights), upper(nights) - 1, interval '1 day') d
    ON CONFLICT ON CONSTRAINT rates_pkey DO UPDATE SET amount = EXCLUDED.amount;
    RETURN jsonb_build_object('hotel_id', hotel_id, 'room_type', room_type, 'currency', h.currency,
        'rates', (SELECT jsonb_agg(jsonb_build_object('night', r.night, 'amount', r.amount) ORDER BY r.night)
                    FROM booking.rates r
                   WHERE r.hotel_id = set_rates.hotel_id AND r.room_type = set_rates.room_type AND r.night <@ nights));
END
$$;
COMMENT ON FUNCTION api.set_rates IS 'PUT /inventory/{hotel_id}/rates (admin, facility_manager): the rate of nights from..to (included), amount or per weekday ({"mon".."sun"}, amount for the days not named); existing stays keep their prices; 404, 422';

CREATE FUNCTION api.quote_reservation(hotel_id bigint, room_type text, arrival_date text, stay_length integer)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    a date;
    p jsonb;
BEGIN
    PERFORM booking.require_user();
    a := booking.parse_date(arrival_date, 'arrival_date');
    PERFORM booking.validate_room_type(room_type);
    PERFORM booking.validate_stay('quote', a, stay_length, 1, 0);
    IF (booking.find_hotel(hotel_id)).currency IS NULL THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('hotel %s has no prices', hotel_id),
            jsonb_build_object('field', 'hotel_id', 'hotel_id', hotel_id));
    END IF;
    p := booking.price_stay(hotel_id, room_type, a, stay_length);
    RETURN jsonb_build_object('hotel_id', hotel_id, 'room_type', room_type, 'arrival_date', a,
                              'stay_length', stay_length, 'currency', p -> 'currency',
                              'nightly_prices', p -> 'nights', 'total_amount', p -> 'total');
END
$$;
COMMENT ON FUNCTION api.quote_reservation IS 'POST /reservations/quote (user+): the nightly prices and total a reservation made now would get, writing nothing (availability is not promised); 404, 409 NO_RATE, 422';

CREATE FUNCTION api.set_cancellation_policy(hotel_id bigint, free_days integer DEFAULT NULL,
                                            penalty text DEFAULT NULL, percent numeric DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    h booking.hotels;
BEGIN
    PERFORM booking.require_role('admin');
    PERFORM booking.find_hotel(hotel_id);
    IF free_days IS NOT NULL AND free_days NOT BETWEEN 0 AND 365 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('free_days %s is out of range', free_days),
            jsonb_build_object('field', 'free_days', 'min', 0, 'max', 365));
    END IF;
    IF (free_days IS NULL) <> (penalty IS NULL) OR penalty NOT IN ('first_night', 'percent') THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            'give free_days with a penalty "first_night" or "percent" (neither: cancellation is always free)',
            jsonb_build_object('field', 'penalty'));
    END IF;
    IF (penalty = 'percent') <> (percent IS NOT NULL) OR percent NOT BETWEEN 0 AND 100 OR scale(percent) > 2 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            'percent (0 to 100, two decimals at most) goes with penalty "percent" only',
            jsonb_build_object('field', 'percent'));
    END IF;
    UPDATE booking.hotels x
       SET cancel_free_days = free_days, cancel_penalty = penalty, cancel_percent = percent, updated_at = now()
     WHERE x.id = set_cancellation_policy.hotel_id
    RETURNING * INTO h;
    RETURN booking.hotel_json(h);
END
$$;
COMMENT ON FUNCTION api.set_cancellation_policy IS 'PUT /hotels/{hotel_id}/cancellation-policy (admin): free until free_days before arrival, then the first night or percent of the total; applies to cancellations from now on; 404, 422';

GRANT EXECUTE ON FUNCTION booking.validate_amount(numeric, text, text),
    booking.price_stay(bigint, text, date, integer, jsonb), booking.cancellation_fee(booking.reservations),
    booking.reservation_price() TO booking_api;
GRANT UPDATE (currency, cancel_free_days, cancel_penalty, cancel_percent, updated_at) ON booking.hotels TO booking_admin;
GRANT EXECUTE ON FUNCTION api.set_hotel_currency(bigint, text), api.set_rates(bigint, text, text, text, numeric, jsonb),
    api.quote_reservation(bigint, text, text, integer), api.set_cancellation_policy(bigint, integer, text, numeric)
  TO booking_api;

-- Hotel KPIs, computed where the data is.  A room night is sold when a
-- reservation that is confirmed, checked in or completed holds it (a
-- cancelled or no-show stay's held nights are not sold); its revenue is the
-- price stored for that night.  Occupancy = sold / rooms (inventory total),
-- ADR = revenue / sold, RevPAR = revenue / rooms; cancellation and no-show
-- rates and ALOS are over the reservations arriving in the range (no-shows
-- among those not cancelled; ALOS over those sold).
CREATE FUNCTION booking.reservation_sells(status text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT status IN ('confirmed', 'checked_in', 'completed') $$;
COMMENT ON FUNCTION booking.reservation_sells IS 'whether the nights a reservation in this status holds are sold room nights (revenue)';

CREATE VIEW booking.revenue_nights AS
SELECT i.hotel_id, i.room_type, i.night, i.total AS rooms_available,
       coalesce(s.rooms_sold, 0) AS rooms_sold, coalesce(s.revenue, 0) AS revenue
  FROM booking.inventory i
  LEFT JOIN LATERAL (
        SELECT count(*) AS rooms_sold,
               sum((r.nightly_prices ->> to_char(i.night, 'YYYY-MM-DD'))::numeric) AS revenue
          FROM booking.reservations r
         WHERE r.hotel_id = i.hotel_id AND r.room_type = i.room_type
           AND r.arrival_date <= i.night AND r.arrival_date > i.night - 30   -- stays last 30 nights at most
           AND i.night < r.held_until AND booking.reservation_sells(r.status)) s ON true;
COMMENT ON VIEW booking.revenue_nights IS 'per hotel, room type and night: rooms, rooms sold and room revenue (stored nightly prices)';
GRANT SELECT ON booking.revenue_nights TO booking_admin, booking_facility_manager, booking_auditor;

-- KPIs of a set of nights: x holds rooms_available, rooms_sold, revenue.
CREATE FUNCTION booking.kpi_json(available numeric, sold numeric, revenue numeric, minor integer) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object('rooms_available', available, 'rooms_sold', sold, 'room_revenue', revenue,
                              'occupancy_pct', round(100 * sold / nullif(available, 0), 2),
                              'adr', round(revenue / nullif(sold, 0), minor),
                              'revpar', round(revenue / nullif(available, 0), minor))
$$;

CREATE FUNCTION api.analytics_hotel_kpis(hotel_id bigint, "from" text, "to" text) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    h booking.hotels;
    nights daterange;
    m integer;
    result jsonb;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager', 'auditor');
    h := booking.find_hotel(hotel_id);
    nights := booking.parse_nights("from", "to");
    m := coalesce((SELECT c.minor_units FROM booking.currencies c WHERE c.code = h.currency), 2);
    WITH n AS (SELECT v.* FROM booking.revenue_nights v
                WHERE v.hotel_id = analytics_hotel_kpis.hotel_id AND v.night <@ nights),
         s AS (SELECT count(*) AS stays, count(*) FILTER (WHERE r.status = 'cancelled') AS cancelled,
                      count(*) FILTER (WHERE r.status = 'no_show') AS no_shows,
                      avg(r.stay_length) FILTER (WHERE booking.reservation_sells(r.status)) AS alos,
                      coalesce(sum(r.cancellation_fee), 0) AS fees
                 FROM booking.reservations r
                WHERE r.hotel_id = analytics_hotel_kpis.hotel_id AND r.arrival_date <@ nights)
    SELECT jsonb_build_object('hotel_id', hotel_id, 'currency', h.currency,
                              'from', lower(nights), 'to', upper(nights) - 1)
           || booking.kpi_json((SELECT coalesce(sum(rooms_available), 0) FROM n), (SELECT coalesce(sum(rooms_sold), 0) FROM n),
                               (SELECT coalesce(sum(revenue), 0) FROM n), m)
           || jsonb_build_object(
                'reservations', s.stays,
                'cancellation_rate_pct', round(100.0 * s.cancelled / nullif(s.stays, 0), 2),
                'no_show_rate_pct', round(100.0 * s.no_shows / nullif(s.stays - s.cancelled, 0), 2),
                'alos', round(s.alos, 2),
                'cancellation_fees', s.fees,
                'by_room_type', coalesce((SELECT jsonb_agg(jsonb_build_object('room_type', t.room_type)
                                                           || booking.kpi_json(t.a, t.s, t.r, m) ORDER BY t.room_type)
                                            FROM (SELECT room_type, sum(rooms_available) a, sum(rooms_sold) s, sum(revenue) r
                                                    FROM n GROUP BY room_type) t), '[]'),
                'by_night', coalesce((SELECT jsonb_agg(jsonb_build_object('night', n.night, 'room_type', n.room_type,
                                                                          'rooms_available', n.rooms_available,
                                                                          'rooms_sold', n.rooms_sold, 'room_revenue', n.revenue)
                                                       ORDER BY n.night, n.room_type) FROM n), '[]'))
      INTO result FROM s;
    RETURN result;
END
$$;
COMMENT ON FUNCTION api.analytics_hotel_kpis IS 'GET /admin/analytics/hotels/{hotel_id}/kpis?from&to (admin, facility_manager, auditor): occupancy %, ADR, RevPAR, room revenue by night and room type, cancellation and no-show rates, ALOS, cancellation fees; 404, 422';

REVOKE EXECUTE ON FUNCTION booking.validate_amount(numeric, text, text),
    booking.price_stay(bigint, text, date, integer, jsonb), booking.cancellation_fee(booking.reservations),
    booking.reservation_price(), booking.reservation_sells(text), booking.kpi_json(numeric, numeric, numeric, integer),
    api.set_hotel_currency(bigint, text), api.set_rates(bigint, text, text, text, numeric, jsonb),
    api.quote_reservation(bigint, text, text, integer), api.set_cancellation_policy(bigint, integer, text, numeric),
    api.analytics_hotel_kpis(bigint, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION booking.reservation_sells(text), booking.kpi_json(numeric, numeric, numeric, integer),
    api.analytics_hotel_kpis(bigint, text, text) TO booking_api;

-- ==== HTTP routes declared once (issue 10) ====
--
-- Each HTTP route is one row here, next to the api functions: the adapter
-- reads these rows with the function catalog (booking.http_functions, read
-- at start, every 10 s and after a 42883), and builds its route table, its
-- /openapi.json and, through it, docs/api.md from them.  Adding an endpoint
-- is one INSERT in an upgrade script; nothing in C changes.
--
-- Path segments "{name}" bind the function's argument "name"; for GET and
-- DELETE the other arguments come from the query string, otherwise from a
-- JSON object body (or, with body_argument, the whole body is that one
-- argument).  A function may have several routes; operation_id defaults to
-- the function's name and must be unique (OpenAPI's operationId).
CREATE TABLE booking.http_routes (
    method text NOT NULL CHECK (method IN ('GET', 'POST', 'PUT', 'PATCH', 'DELETE')),
    path text NOT NULL CHECK (path ~ '^(/([a-z0-9_.-]+|\{[a-z_][a-z0-9_]*\}))+$'),
    function_name name NOT NULL,
    success_status integer NOT NULL CHECK (success_status IN (200, 201, 204)),
    operation_id text CHECK (operation_id ~ '^[a-z_][a-z0-9_]*$'),
    body_argument name,
    public boolean NOT NULL DEFAULT false,      -- no token needed (OpenAPI: security [])
    event_stream boolean NOT NULL DEFAULT false, -- GET with Accept: text/event-stream streams events
    PRIMARY KEY (method, path),
    CONSTRAINT http_routes_get_has_a_body CHECK (success_status <> 204 OR method <> 'GET'),
    -- Every DELETE answers 200 with what its function returns (the cancelled
    -- row, the deactivated room...): one rule for all of them.
    CONSTRAINT http_routes_delete_answers_200 CHECK (method <> 'DELETE' OR success_status = 200),
    CONSTRAINT http_routes_streams_are_get CHECK (NOT event_stream OR method = 'GET')
);
CREATE UNIQUE INDEX http_routes_operation_id ON booking.http_routes ((coalesce(operation_id, function_name::text)));
COMMENT ON TABLE booking.http_routes IS
'the HTTP routes of the api functions: the one declaration the adapter, /openapi.json and docs/api.md are built from';

-- Every route names an existing api function and binds only its arguments.
-- Deferred, so an upgrade script may insert a route before creating its function.
CREATE FUNCTION booking.http_route_check() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    args text[];
    p text;
BEGIN
    SELECT coalesce(pr.proargnames[1:pr.pronargs], '{}') INTO args
      FROM pg_proc pr
     WHERE pr.pronamespace = 'api'::regnamespace AND pr.proname = NEW.function_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'route "% %" calls api.%, which does not exist', NEW.method, NEW.path, NEW.function_name
            USING ERRCODE = 'PT422', DETAIL = '{"error_code": "VALIDATION_ERROR", "field": "function_name"}';
    END IF;
    FOR p IN SELECT m[1] FROM regexp_matches(NEW.path, '\{([a-z0-9_]+)\}', 'g') AS m
             UNION ALL SELECT NEW.body_argument WHERE NEW.body_argument IS NOT NULL
    LOOP
        IF NOT p = ANY (args) THEN
            RAISE EXCEPTION 'route "% %" binds "%", which is not an argument of api.%',
                NEW.method, NEW.path, p, NEW.function_name
                USING ERRCODE = 'PT422', DETAIL = '{"error_code": "VALIDATION_ERROR", "field": "path"}';
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;
REVOKE EXECUTE ON FUNCTION booking.http_route_check() FROM PUBLIC;
CREATE CONSTRAINT TRIGGER http_route_check AFTER INSERT OR UPDATE ON booking.http_routes
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION booking.http_route_check();

INSERT INTO booking.http_routes (method, path, function_name, success_status, operation_id, body_argument, public, event_stream) VALUES
    -- users
    ('POST',   '/users/register',                       'register',            201, NULL, NULL, true, false),
    ('POST',   '/users/login',                          'login',               200, NULL, NULL, true, false),
    ('POST',   '/users/refresh',                        'refresh',             200, NULL, NULL, true, false),
    ('POST',   '/users/logout',                         'logout',              204, NULL, NULL, false, false),
    ('GET',    '/users/me',                             'me',                  200, NULL, NULL, false, false),
    ('PATCH',  '/users/me',                             'update_me',           200, NULL, NULL, false, false),
    ('PUT',    '/users/me/availability',                'set_my_availability', 200, NULL, 'intervals', false, false),
    ('GET',    '/users',                                'list_users',          200, NULL, NULL, false, false),
    ('GET',    '/users/{id}',                           'get_user',            200, NULL, NULL, false, false),
    ('PATCH',  '/users/{id}',                           'update_user',         200, NULL, NULL, false, false),
    ('GET',    '/users/{user_id}/availability',         'user_availability',   200, NULL, NULL, false, false),
    -- rooms and bookings
    ('GET',    '/rooms',                                'list_rooms',          200, NULL, NULL, false, false),
    ('POST',   '/rooms',                                'create_room',         201, NULL, NULL, false, false),
    ('GET',    '/rooms/{id}',                           'get_room',            200, NULL, NULL, false, false),
    ('PATCH',  '/rooms/{id}',                           'update_room',         200, NULL, NULL, false, false),
    ('DELETE', '/rooms/{id}',                           'delete_room',         200, NULL, NULL, false, false),
    ('GET',    '/rooms/{room_id}/availability',         'room_availability',   200, NULL, NULL, false, false),
    ('GET',    '/rooms/{room_id}/schedule',             'room_schedule',       200, NULL, NULL, false, false),
    ('GET',    '/rooms/{room_id}/reviews',              'list_room_reviews',   200, NULL, NULL, false, false),
    ('POST',   '/bookings',                             'create_booking',      201, NULL, NULL, false, false),
    ('GET',    '/bookings',                             'list_bookings',       200, NULL, NULL, false, false),
    ('GET',    '/bookings/{id}',                        'get_booking',         200, NULL, NULL, false, false),
    ('PATCH',  '/bookings/{id}',                        'update_booking',      200, NULL, NULL, false, false),
    ('DELETE', '/bookings/{id}',                        'cancel_booking',      200, NULL, NULL, false, false),
    -- reviews
    ('POST',   '/reviews',                              'create_review',       201, NULL, NULL, false, false),
    ('PATCH',  '/reviews/{id}',                         'update_review',       200, NULL, NULL, false, false),
    ('DELETE', '/reviews/{id}',                         'delete_review',       200, NULL, NULL, false, false),
    ('POST',   '/reviews/{id}/votes',                   'vote_review',         200, NULL, NULL, false, false),
    ('POST',   '/reviews/{id}/flag',                    'flag_review',         200, NULL, NULL, false, false),
    ('GET',    '/moderation/reviews',                   'moderation_reviews',  200, NULL, NULL, false, false),
    ('POST',   '/moderation/reviews/{id}/hide',         'hide_review',         200, NULL, NULL, false, false),
    ('POST',   '/moderation/reviews/{id}/restore',      'restore_review',      200, NULL, NULL, false, false),
    -- hotels, inventory, reservations
    ('GET',    '/hotels',                               'list_hotels',         200, NULL, NULL, false, false),
    ('POST',   '/hotels',                               'create_hotel',        201, NULL, NULL, false, false),
    ('GET',    '/hotels/{id}',                          'get_hotel',           200, NULL, NULL, false, false),
    ('GET',    '/hotels/{hotel_id}/name',               'hotel_name',          200, NULL, NULL, false, false),
    ('GET',    '/inventory',                            'list_inventory',      200, NULL, NULL, false, false),
    ('GET',    '/inventory/{hotel_id}',                 'list_inventory',      200, 'list_hotel_inventory', NULL, false, false),
    ('POST',   '/inventory/{hotel_id}/adjust',          'adjust_inventory',    200, NULL, NULL, false, false),
    ('PUT',    '/inventory/{hotel_id}/restrictions',    'set_restrictions',    200, NULL, NULL, false, false),
    ('GET',    '/availability',                         'search_availability', 200, NULL, NULL, false, false),
    ('GET',    '/availability/common',                  'common_availability', 200, NULL, NULL, false, false),
    ('POST',   '/meetings/suggest',                     'suggest_meetings',    200, NULL, NULL, false, false),
    ('POST',   '/reservations',                         'create_reservation',  201, NULL, NULL, false, false),
    ('GET',    '/reservations',                         'list_reservations',   200, NULL, NULL, false, false),
    ('GET',    '/reservations/{id}',                    'get_reservation',     200, NULL, NULL, false, false),
    ('PATCH',  '/reservations/{id}',                    'update_reservation',  200, NULL, NULL, false, false),
    ('DELETE', '/reservations/{id}',                    'cancel_reservation',  200, NULL, NULL, false, false),
    ('POST',   '/reservations/{id}/check-in',           'check_in',            200, NULL, NULL, false, false),
    ('POST',   '/reservations/{id}/check-out',          'check_out',           200, NULL, NULL, false, false),
    -- analytics and jobs
    ('GET',    '/admin/analytics/bookings/summary',     'analytics_bookings_summary', 200, NULL, NULL, false, false),
    ('GET',    '/admin/analytics/bookings/by-room',     'analytics_bookings_by_room', 200, NULL, NULL, false, false),
    ('GET',    '/admin/analytics/bookings/per-day',     'analytics_bookings_per_day', 200, NULL, NULL, false, false),
    ('GET',    '/admin/analytics/reviews/average-rating-by-room', 'analytics_average_rating_by_room', 200, NULL, NULL, false, false),
    ('GET',    '/admin/analytics/occupancy',            'analytics_occupancy', 200, NULL, NULL, false, false),
    ('GET',    '/admin/analytics/rate-limits',          'analytics_rate_limits', 200, NULL, NULL, false, false),
    ('POST',   '/admin/jobs/checkout/run',              'run_checkout',        200, NULL, NULL, false, false),
    ('GET',    '/admin/jobs',                           'list_jobs',           200, NULL, NULL, false, false),
    ('GET',    '/events',                               'list_events',         200, NULL, NULL, false, true);

-- What a function answers on success, for the OpenAPI document (and any
-- client generated from it): named schemas (OpenAPI 3.0 Schema Objects,
-- components.schemas; "#/components/schemas/<name>" refers to one) and,
-- per api function, the schema of its result.  A function without a row
-- answers "the function's jsonb result".  Declared beside the routes, read
-- by the adapter with the catalog; adapter/t/050 validates real answers of
-- every declared function against its schema, so a schema that drifts from
-- its function fails.  Objects admit members beyond those listed (a later
-- version may add some; names may grow, not change meaning).
CREATE TABLE booking.http_schemas (
    name   text PRIMARY KEY CHECK (name ~ '^[A-Z][A-Za-z]*$'),
    schema jsonb NOT NULL CHECK (jsonb_typeof(schema) = 'object')
);
COMMENT ON TABLE booking.http_schemas IS 'named JSON schemas of api results (OpenAPI components.schemas)';
CREATE TABLE booking.http_results (
    function_name name PRIMARY KEY,
    schema        jsonb NOT NULL CHECK (jsonb_typeof(schema) = 'object')
);
COMMENT ON TABLE booking.http_results IS 'the schema of each api function''s success answer (OpenAPI response schema)';

WITH t(ts, day, id, n, str, bool, ref) AS (
    SELECT '{"type": "string", "format": "date-time"}'::jsonb, '{"type": "string", "format": "date"}'::jsonb,
           '{"type": "integer", "format": "int64"}'::jsonb, '{"type": "integer"}'::jsonb,
           '{"type": "string"}'::jsonb, '{"type": "boolean"}'::jsonb, '#/components/schemas/')
INSERT INTO booking.http_schemas (name, schema)
SELECT v.name, jsonb_build_object('type', 'object', 'description', v.description,
                                  'required', (SELECT jsonb_agg(k ORDER BY k) FROM jsonb_object_keys(v.props) k),
                                  'properties', v.props)
  FROM t, LATERAL (VALUES
    ('Booking', 'a meeting-room booking, [starts_at, ends_at)',
     jsonb_build_object('id', t.id, 'room_id', t.id, 'user_id', t.id, 'title', t.str, 'starts_at', t.ts, 'ends_at', t.ts,
                        'status', t.str || '{"description": "see the README''s table of statuses"}',
                        'series_id', '{"type": "string", "format": "uuid", "nullable": true}'::jsonb,
                        'created_at', t.ts, 'updated_at', t.ts)),
    ('BookingSeries', 'the bookings a recurrence made, and the occurrences it skipped',
     jsonb_build_object('bookings', jsonb_build_object('type', 'array', 'items', jsonb_build_object('$ref', t.ref || 'Booking')),
                        'skipped', '{"type": "array", "items": {"type": "object"}}'::jsonb)),
    ('ScheduleEntry', 'a slot of a room''s schedule; the title only for its owner and staff',
     jsonb_build_object('id', t.id, 'starts_at', t.ts, 'ends_at', t.ts, 'status', t.str, 'mine', t.bool,
                        'title', '{"type": "string", "nullable": true}'::jsonb)),
    ('Room', 'a meeting room',
     jsonb_build_object('id', t.id, 'name', t.str, 'location', t.str, 'capacity', t.n, 'active', t.bool,
                        'amenities', '{"type": "array", "items": {"type": "string"}}'::jsonb,
                        'buffer_before_minutes', t.n, 'buffer_after_minutes', t.n, 'created_at', t.ts, 'updated_at', t.ts)),
    ('User', 'a person who signs in',
     jsonb_build_object('id', t.id, 'email', t.str, 'full_name', t.str, 'role', t.str, 'active', t.bool,
                        'created_at', t.ts, 'updated_at', t.ts)),
    ('Tokens', 'a signed-in session: a short-lived access token (bearer JWT) and the refresh token that renews it',
     jsonb_build_object('access_token', t.str, 'token_type', t.str, 'expires_in', t.n, 'refresh_token', t.str)),
    ('Hotel', 'a hotel',
     jsonb_build_object('id', t.id, 'name', t.str, 'location', t.str, 'created_at', t.ts, 'updated_at', t.ts)),
    ('Reservation', 'a hotel stay: the nights [arrival_date, departure_date)',
     jsonb_build_object('id', '{"type": "string", "format": "uuid"}'::jsonb, 'hotel_id', t.id, 'user_id', t.id,
                        'room_type', t.str, 'guest_name', t.str, 'arrival_date', t.day, 'departure_date', t.day,
                        'stay_length', t.n, 'adults', t.n, 'children', t.n, 'status', t.str, 'nights_held', t.n,
                        'checked_in_at', t.ts || '{"nullable": true}', 'checked_out_at', t.ts || '{"nullable": true}',
                        'created_at', t.ts, 'updated_at', t.ts)),
    ('InventoryNight', 'rooms of a type in a hotel on a night: in total and still available',
     jsonb_build_object('hotel_id', t.id, 'room_type', t.str, 'night', t.day, 'total', t.n, 'available', t.n)),
    ('Review', 'a review of a room',
     jsonb_build_object('id', t.id, 'room_id', t.id, 'user_id', t.id, 'rating', t.n,
                        'comment', '{"type": "string", "nullable": true}'::jsonb, 'status', t.str,
                        'helpful_votes', t.n, 'unhelpful_votes', t.n, 'created_at', t.ts, 'updated_at', t.ts)),
    ('Event', 'an entry of the events log, in commit order',
     jsonb_build_object('id', t.id, 'at', t.ts, 'kind', t.str, 'entity', t.str, 'entity_id', t.str,
                        'user_id', t.id || '{"nullable": true}', 'payload', '{"type": "object"}'::jsonb)),
    ('Interval', 'a free interval [starts_at, ends_at)',
     jsonb_build_object('starts_at', t.ts, 'ends_at', t.ts)),
    ('HotelName', 'a hotel''s name (public)',
     jsonb_build_object('hotel_id', t.id, 'name', t.str)),
    ('FlaggedReview', 'a review with the flags people raised on it',
     jsonb_build_object('id', t.id, 'room_id', t.id, 'user_id', t.id, 'rating', t.n,
                        'comment', '{"type": "string", "nullable": true}'::jsonb, 'status', t.str,
                        'helpful_votes', t.n, 'unhelpful_votes', t.n, 'created_at', t.ts, 'updated_at', t.ts,
                        'flags', jsonb_build_object('type', 'array', 'items', jsonb_build_object(
                                     'type', 'object', 'required', '["reason", "user_id"]'::jsonb,
                                     'properties', jsonb_build_object('reason', t.str, 'user_id', t.id))))),
    ('BookingCounts', 'bookings by status',
     jsonb_build_object('total', t.n, 'confirmed', t.n, 'cancelled', t.n, 'completed', t.n)),
    ('RoomBookingCounts', 'a room''s bookings by status',
     jsonb_build_object('room_id', t.id, 'room_name', t.str, 'total', t.n, 'confirmed', t.n, 'cancelled', t.n, 'completed', t.n)),
    ('RoomRating', 'a room''s visible reviews: how many, average rating',
     jsonb_build_object('room_id', t.id, 'room_name', t.str, 'review_count', t.n, 'average_rating', '{"type": "number", "nullable": true}'::jsonb)),
    ('RateLimitStats', 'a rate-limit rule and what its counters admitted and denied since the server started',
     jsonb_build_object('endpoint', t.str, 'key_kind', t.str, 'max_requests', t.n, 'window_seconds', t.n,
                        'admitted', t.n, 'denials', t.n, 'keys_tracked', t.n, 'forced_evictions', t.n,
                        'since', t.ts || '{"nullable": true}')),
    ('CheckoutRun', 'a run of the nightly checkout',
     jsonb_build_object('id', t.id, 'business_date', t.day, 'source', t.str, 'started_at', t.ts,
                        'finished_at', t.ts || '{"nullable": true}', 'error', '{"type": "string", "nullable": true}'::jsonb,
                        'completed_stays', t.n, 'no_shows', t.n, 'nights_returned', t.n, 'completed_bookings', t.n)),
    ('AuditEntry', 'who changed what: an entry of the audit trail',
     jsonb_build_object('id', t.id, 'at', t.ts, 'action', t.str, 'actor_id', t.id || '{"nullable": true}',
                        'actor_role', '{"type": "string", "nullable": true}'::jsonb, 'db_user', t.str,
                        'target_type', t.str, 'target_id', '{"type": "string", "nullable": true}'::jsonb,
                        'before', '{"type": "object", "nullable": true}'::jsonb,
                        'after', '{"type": "object", "nullable": true}'::jsonb,
                        'request_id', '{"type": "string", "nullable": true}'::jsonb))
,
    ('OccupancyNight', 'a hotel''s rooms of a type on a night: in total, held, and the share held',
     jsonb_build_object('night', t.day, 'room_type', t.str, 'total', t.n, 'held', t.n,
                        'occupancy_percent', '{"type": "number"}'::jsonb)),
    ('HotelAvailability', 'a hotel with rooms of a type free on every night of a stay',
     jsonb_build_object('hotel_id', t.id, 'name', t.str, 'location', t.str, 'room_type', t.str, 'min_available', t.n)),
    ('StayRestriction', 'the stay rules of a room type over a range of nights',
     jsonb_build_object('hotel_id', t.id, 'room_type', t.str, 'from', t.day, 'to', t.day,
                        'min_stay', t.n || '{"nullable": true}', 'max_stay', t.n || '{"nullable": true}',
                        'closed_to_arrival', t.bool, 'closed_to_departure', t.bool))
  ) AS v(name, description, props);

INSERT INTO booking.http_results (function_name, schema)
SELECT f, CASE WHEN many THEN jsonb_build_object('type', 'array', 'items', jsonb_build_object('$ref', '#/components/schemas/' || s))
               ELSE jsonb_build_object('$ref', '#/components/schemas/' || s) END
  FROM (VALUES
    ('get_booking', 'Booking', false), ('update_booking', 'Booking', false), ('cancel_booking', 'Booking', false),
    ('list_bookings', 'Booking', true), ('room_schedule', 'ScheduleEntry', true),
    ('get_room', 'Room', false), ('create_room', 'Room', false), ('update_room', 'Room', false), ('list_rooms', 'Room', true),
    ('get_user', 'User', false), ('update_user', 'User', false), ('me', 'User', false), ('update_me', 'User', false),
    ('register', 'User', false), ('list_users', 'User', true), ('login', 'Tokens', false),
    ('get_hotel', 'Hotel', false), ('create_hotel', 'Hotel', false), ('list_hotels', 'Hotel', true),
    ('get_reservation', 'Reservation', false), ('create_reservation', 'Reservation', false),
    ('update_reservation', 'Reservation', false), ('cancel_reservation', 'Reservation', false),
    ('check_in', 'Reservation', false), ('check_out', 'Reservation', false), ('list_reservations', 'Reservation', true),
    ('list_inventory', 'InventoryNight', true),
    ('list_room_reviews', 'Review', true), ('create_review', 'Review', false), ('update_review', 'Review', false),
    ('list_events', 'Event', true),
    ('room_availability', 'Interval', true), ('hotel_name', 'HotelName', false), ('adjust_inventory', 'InventoryNight', true),
    ('moderation_reviews', 'FlaggedReview', true),
    ('analytics_bookings_summary', 'BookingCounts', false), ('analytics_bookings_by_room', 'RoomBookingCounts', true),
    ('analytics_average_rating_by_room', 'RoomRating', true), ('analytics_rate_limits', 'RateLimitStats', true),
    ('list_jobs', 'CheckoutRun', true), ('list_audit', 'AuditEntry', true), ('run_checkout', 'CheckoutRun', false),
    ('hide_review', 'Review', false), ('restore_review', 'Review', false),
    ('analytics_occupancy', 'OccupancyNight', true), ('search_availability', 'HotelAvailability', true),
    ('set_my_availability', 'Interval', true), ('user_availability', 'Interval', true),
    ('set_restrictions', 'StayRestriction', false)
  ) AS r(f, s, many);
-- A booking with a recurrence answers its series.
INSERT INTO booking.http_results (function_name, schema)
VALUES ('create_booking', '{"oneOf": [{"$ref": "#/components/schemas/Booking"}, {"$ref": "#/components/schemas/BookingSeries"}]}');

-- The answers of the rates, quotes, KPIs, suggestions and the small
-- acknowledgements (a deleted review, a flag, a vote).
WITH t(ts, day, id, n, num, str, bool) AS (
    SELECT '{"type": "string", "format": "date-time"}'::jsonb, '{"type": "string", "format": "date"}'::jsonb,
           '{"type": "integer", "format": "int64"}'::jsonb, '{"type": "integer"}'::jsonb, '{"type": "number"}'::jsonb,
           '{"type": "string"}'::jsonb, '{"type": "boolean"}'::jsonb),
     k(props) AS (   -- the figures booking.kpi_json gives (a share is null when its divisor is 0)
    SELECT jsonb_build_object('rooms_available', t.num, 'rooms_sold', t.num, 'room_revenue', t.num,
                              'occupancy_pct', t.num || '{"nullable": true}', 'adr', t.num || '{"nullable": true}',
                              'revpar', t.num || '{"nullable": true}') FROM t)
INSERT INTO booking.http_schemas (name, schema)
SELECT v.name, jsonb_build_object('type', 'object', 'description', v.description,
                                  'required', (SELECT jsonb_agg(x ORDER BY x) FROM jsonb_object_keys(v.props) x),
                                  'properties', v.props)
  FROM t, k, LATERAL (VALUES
    ('DayBookingCounts', 'bookings starting on a UTC day, by status',
     jsonb_build_object('day', t.day, 'total', t.n, 'confirmed', t.n, 'cancelled', t.n, 'completed', t.n)),
    ('HotelKpis', 'a hotel''s revenue figures over a range of nights (amounts in the hotel''s currency)',
     k.props || jsonb_build_object('hotel_id', t.id, 'currency', t.str || '{"nullable": true}', 'from', t.day, 'to', t.day,
                        'reservations', t.n, 'cancellation_rate_pct', t.num || '{"nullable": true}',
                        'no_show_rate_pct', t.num || '{"nullable": true}', 'alos', t.num || '{"nullable": true}',
                        'cancellation_fees', t.num,
                        'by_room_type', jsonb_build_object('type', 'array', 'items', jsonb_build_object(
                            'type', 'object', 'properties', k.props || jsonb_build_object('room_type', t.str),
                            'required', (SELECT jsonb_agg(x ORDER BY x) FROM jsonb_object_keys(k.props || '{"room_type": 0}') x))),
                        'by_night', jsonb_build_object('type', 'array', 'items', jsonb_build_object(
                            'type', 'object', 'required', '["night", "room_revenue", "room_type", "rooms_available", "rooms_sold"]'::jsonb,
                            'properties', jsonb_build_object('night', t.day, 'room_type', t.str, 'rooms_available', t.num,
                                                             'rooms_sold', t.num, 'room_revenue', t.num))))),
    ('MeetingSlot', 'a start at which every attendee is free and a room fits them',
     jsonb_build_object('starts_at', t.ts, 'ends_at', t.ts, 'room_id', t.id, 'room_name', t.str, 'capacity', t.n)),
    ('NightlyRates', 'the rates of a room type''s nights, in the hotel''s currency',
     jsonb_build_object('hotel_id', t.id, 'room_type', t.str, 'currency', t.str,
                        'rates', jsonb_build_object('type', 'array', 'items', jsonb_build_object(
                            'type', 'object', 'required', '["amount", "night"]'::jsonb,
                            'properties', jsonb_build_object('night', t.day, 'amount', t.num))))),
    ('Quote', 'the prices a stay would get: per night (date to amount) and in total',
     jsonb_build_object('hotel_id', t.id, 'room_type', t.str, 'arrival_date', t.day, 'stay_length', t.n, 'currency', t.str,
                        'nightly_prices', jsonb_build_object('type', 'object', 'additionalProperties', t.num),
                        'total_amount', t.num)),
    ('HotelTerms', 'a hotel with its currency and cancellation policy',
     jsonb_build_object('id', t.id, 'name', t.str, 'location', t.str, 'currency', t.str || '{"nullable": true}',
                        'cancellation_policy', '{"type": "object", "nullable": true}'::jsonb,
                        'created_at', t.ts, 'updated_at', t.ts)),
    ('RoomDeactivated', 'a room taken out of service (its bookings and history stay)',
     jsonb_build_object('id', t.id, 'active', t.bool)),
    ('ReviewDeleted', 'a review deleted by its author',
     jsonb_build_object('id', t.id, 'deleted', t.bool)),
    ('AccessToken', 'a new access token (bearer JWT) of the refresh token''s session',
     jsonb_build_object('access_token', t.str, 'token_type', t.str, 'expires_in', t.n)),
    ('ReviewFlagged', 'a review flagged for moderation (flagging twice keeps the first flag)',
     jsonb_build_object('id', t.id, 'flagged', t.bool)),
    ('ReviewVote', 'a review with the caller''s vote on it',
     jsonb_build_object('id', t.id, 'room_id', t.id, 'helpful_votes', t.n, 'unhelpful_votes', t.n,
                        'your_vote', t.bool, 'changed', t.bool, 'previous_vote', t.bool || '{"nullable": true}'))
  ) AS v(name, description, props);

INSERT INTO booking.http_results (function_name, schema)
SELECT f, CASE WHEN many THEN jsonb_build_object('type', 'array', 'items', jsonb_build_object('$ref', '#/components/schemas/' || s))
               ELSE jsonb_build_object('$ref', '#/components/schemas/' || s) END
  FROM (VALUES
    ('analytics_bookings_per_day', 'DayBookingCounts', true), ('analytics_hotel_kpis', 'HotelKpis', false),
    ('suggest_meetings', 'MeetingSlot', true), ('common_availability', 'Interval', true),
    ('set_rates', 'NightlyRates', false), ('quote_reservation', 'Quote', false),
    ('set_hotel_currency', 'HotelTerms', false), ('set_cancellation_policy', 'HotelTerms', false),
    ('delete_room', 'RoomDeactivated', false), ('delete_review', 'ReviewDeleted', false),
    ('flag_review', 'ReviewFlagged', false), ('vote_review', 'ReviewVote', false), ('refresh', 'AccessToken', false)
  ) AS r(f, s, many);
GRANT SELECT ON booking.http_schemas, booking.http_results TO booking_authenticator, booking_api;

-- What the adapter reads: one row per api function, with its signature,
-- the HTTP name of each argument (lists take lim/off; HTTP clients say
-- limit/offset: the one place that says so), whether it may write (only
-- functions that do not may be called with GET /rpc/<name>), its COMMENT
-- and its routes.
CREATE VIEW booking.http_functions AS
SELECT p.proname::text AS name,
       p.pronargs AS nargs,
       p.pronargs - p.pronargdefaults AS nrequired,
       coalesce(p.proargnames[1:p.pronargs], '{}') AS argnames,
       coalesce((SELECT array_agg(CASE a.n WHEN 'lim' THEN 'limit' WHEN 'off' THEN 'offset' ELSE a.n END ORDER BY a.o)
                   FROM unnest(p.proargnames[1:p.pronargs]) WITH ORDINALITY AS a(n, o)), '{}') AS http_names,
       coalesce((SELECT array_agg(format_type(t, NULL) ORDER BY o)
                   FROM unnest(p.proargtypes) WITH ORDINALITY AS a(t, o)), '{}') AS argtypes,
       p.provolatile = 'v' AS writes,
       coalesce(obj_description(p.oid, 'pg_proc'), '') AS comment,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                     'method', r.method, 'path', r.path, 'success', r.success_status,
                     'operation_id', coalesce(r.operation_id, r.function_name::text),
                     'body_argument', r.body_argument, 'public', r.public, 'event_stream', r.event_stream)
                   ORDER BY r.path, r.method)
                   FROM booking.http_routes r WHERE r.function_name = p.proname), '[]') AS routes,
       (SELECT x.schema FROM booking.http_results x WHERE x.function_name = p.proname) AS result_schema
  FROM pg_proc p
 WHERE p.pronamespace = (SELECT n.oid FROM pg_namespace n WHERE n.nspname = 'api') AND p.prokind = 'f';
COMMENT ON VIEW booking.http_functions IS 'the api functions as the HTTP adapter sees them: signature, HTTP argument names, routes, result schema';

-- The roles a token may name: those the adapter's login role may switch to
-- (GRANTed to booking_authenticator), read by the adapter with the catalog.
-- (Names by pg_get_userbyid, not a join with pg_roles: on Citus the query
-- that reads this view with the routes is run with the views expanded, as
-- the reader, who may not read pg_authid under pg_roles; docs/citus.md,
-- finding 21.)
CREATE VIEW booking.http_token_roles AS
SELECT pg_get_userbyid(m.roleid)::text AS role
  FROM pg_auth_members m
 WHERE m.member = to_regrole('booking_authenticator');
COMMENT ON VIEW booking.http_token_roles IS 'database roles a bearer token''s "role" claim may name';

GRANT USAGE ON SCHEMA booking TO booking_authenticator;
GRANT SELECT ON booking.http_functions, booking.http_token_roles TO booking_authenticator;
-- The view's owner may read the routes, but on Citus the view's query runs
-- against the table's placement as the reader (docs/citus.md, finding 21):
-- the adapter's login role reads the routes itself.
GRANT SELECT ON booking.http_routes TO booking_authenticator;
GRANT SELECT ON booking.http_routes TO booking_api, booking_anon;

-- The COMMENTs say who may call a function and what it does; the route
-- lives in booking.http_routes alone (they used to start with a route,
-- which drifted from the adapter's table).
COMMENT ON FUNCTION api.register IS 'public: create a user with role "user"; 409 ALREADY_EXISTS, 422 VALIDATION_ERROR';
COMMENT ON FUNCTION api.login IS 'public, 5 per 10 s per client IP: access token (HS256 JWT) and refresh token; 401 UNAUTHORIZED';
COMMENT ON FUNCTION api.refresh IS 'public: a new access token for a valid refresh token; 401 UNAUTHORIZED';
COMMENT ON FUNCTION api.logout IS 'self: revokes every refresh token of the caller';
COMMENT ON FUNCTION api.me IS 'self: the caller''s profile';
COMMENT ON FUNCTION api.update_me IS 'self: change full_name and/or password';
COMMENT ON FUNCTION api.list_users IS 'admin; auditor read: every user, by id';
COMMENT ON FUNCTION api.get_user IS 'admin; auditor read: one user; 404 NOT_FOUND';
COMMENT ON FUNCTION api.update_user IS 'admin: change role and/or active; 404 NOT_FOUND';
COMMENT ON FUNCTION api.create_room IS 'admin, facility_manager: a meeting room, with optional buffers; 409 ALREADY_EXISTS when the name is taken';
COMMENT ON FUNCTION api.update_room IS 'admin, facility_manager: change a room; buffers apply to bookings made from now on; 404';
COMMENT ON FUNCTION api.delete_room IS 'admin, facility_manager: deactivates the room; its bookings stay, no new ones are taken';
COMMENT ON FUNCTION api.get_room IS 'any user: one room; 404 NOT_FOUND';
COMMENT ON FUNCTION api.list_rooms IS 'any user: active rooms, filtered by min_capacity, amenity, location, and free in [available_from, available_to)';
COMMENT ON FUNCTION api.create_booking IS 'user+, rate-limited: one booking, or a recurring series (all-or-nothing, or "on_conflict": "skip"); 409 BOOKING_CONFLICT lists every clash, 422 VALIDATION_ERROR';
COMMENT ON FUNCTION api.get_booking IS 'owner; admin, facility_manager, auditor: one booking; 404 NOT_FOUND';
COMMENT ON FUNCTION api.list_bookings IS 'own; admin, facility_manager, auditor all: filtered by overlap with [from, to), status, room';
COMMENT ON FUNCTION api.update_booking IS 'owner, admin, facility_manager: reschedule, move or retitle a confirmed booking; 404, 409 BOOKING_CONFLICT';
COMMENT ON FUNCTION api.cancel_booking IS 'owner, admin, facility_manager: status becomes cancelled; 404, 409 when not confirmed';
COMMENT ON FUNCTION api.room_availability IS 'any user: the free intervals of [from, to) in which a new booking fits (buffers applied); 422 for a bad window';
COMMENT ON FUNCTION api.room_schedule IS 'any user: bookings of the room in [from, to); titles of others'' bookings hidden from plain users';
COMMENT ON FUNCTION api.create_hotel IS 'admin: a hotel; 422 VALIDATION_ERROR';
COMMENT ON FUNCTION api.list_hotels IS 'any user: hotels, optionally in one location (case-insensitive)';
COMMENT ON FUNCTION api.get_hotel IS 'any user: one hotel; 404 NOT_FOUND';
COMMENT ON FUNCTION api.hotel_name IS 'any user: {hotel_id, name}; 404 NOT_FOUND';
COMMENT ON FUNCTION api.list_inventory IS 'any user: nights with total and available rooms, from and to included; 404 unknown hotel';
COMMENT ON FUNCTION api.adjust_inventory IS 'admin, facility_manager: change the rooms of nights from..to (included) by delta or to total, creating missing nights; 409 INVENTORY_BELOW_HELD';
COMMENT ON FUNCTION api.set_restrictions IS 'admin, facility_manager: stay rules for dates from..to (included); min/max stay and closed to arrival apply by arrival date, closed to departure by departure date; 422';
COMMENT ON FUNCTION api.search_availability IS 'any user: hotels and room types with at least rooms free on every night of the stay and whose stay restrictions allow it; 422';
COMMENT ON FUNCTION api.create_reservation IS 'user+, rate-limited: a stay taking one room on each night, all or nothing; 409 NO_AVAILABILITY (first sold-out night), 422 RESTRICTION_VIOLATION or VALIDATION_ERROR, 404 hotel';
COMMENT ON FUNCTION api.get_reservation IS 'owner; staff: one reservation; 404 NOT_FOUND';
COMMENT ON FUNCTION api.list_reservations IS 'own; admin, facility_manager, auditor, service_account all: reservations, newest first';
COMMENT ON FUNCTION api.update_reservation IS 'owner, staff: change guest, party, dates, length or room type of a confirmed stay, atomically; 404, 409 NO_AVAILABILITY or INVALID_STATE, 422';
COMMENT ON FUNCTION api.cancel_reservation IS 'owner, staff: status cancelled, nights not yet passed returned; 404, 409 INVALID_STATE';
COMMENT ON FUNCTION api.check_in IS 'admin, facility_manager: confirmed to checked_in; 404, 409 INVALID_STATE';
COMMENT ON FUNCTION api.check_out IS 'admin, facility_manager: checked_in to completed, remaining nights returned at once; 404, 409 INVALID_STATE';
COMMENT ON FUNCTION api.run_checkout IS 'admin: run the nightly checkout for a business date (default: the latest due); idempotent, a date done is not run again';
COMMENT ON FUNCTION api.list_jobs IS 'admin: the nightly checkout runs, newest business date first, with counts and errors';
COMMENT ON FUNCTION api.set_my_availability IS 'self: replace the caller''s free intervals with [{starts_at, ends_at}, ...] (at most 200); overlapping ones are merged';
COMMENT ON FUNCTION api.user_availability IS 'any user: the user''s published free intervals, merged, optionally within [from, to)';
COMMENT ON FUNCTION api.common_availability IS 'any user: the intervals of [from, to) in which every listed user is free (published availability minus their own bookings)';
COMMENT ON FUNCTION api.suggest_meetings IS 'any user: up to lim slots {starts_at, ends_at, room_id} in [from, to) when every attendee is free and a room of min_capacity (default: number of attendees) is free, earliest and snuggest room first';
COMMENT ON FUNCTION api.create_review IS 'a user with an ended booking of the room, rate-limited: 403 FORBIDDEN without one, 409 ALREADY_EXISTS for a second review, 422 for a rating outside 1..5';
COMMENT ON FUNCTION api.list_room_reviews IS 'any user: the room''s reviews, newest first, hidden ones omitted';
COMMENT ON FUNCTION api.update_review IS 'author: change rating or comment; 403 for someone else''s review, 404';
COMMENT ON FUNCTION api.delete_review IS 'author: deletes the review, answers {id, deleted}; 403 for someone else''s review, 404';
COMMENT ON FUNCTION api.vote_review IS 'any user but the author: helpful or not, one vote per user (a second vote changes it); 403 for the author';
COMMENT ON FUNCTION api.flag_review IS 'any user: puts the review in the moderation queue; 404';
COMMENT ON FUNCTION api.moderation_reviews IS 'moderator, admin: the queue, oldest first, with the flags; 403 for other roles';
COMMENT ON FUNCTION api.hide_review IS 'moderator, admin: the review disappears from listings and ratings; 403, 404';
COMMENT ON FUNCTION api.restore_review IS 'moderator, admin: visible again, flags settled; 403, 404';
COMMENT ON FUNCTION api.analytics_bookings_summary IS 'admin, facility_manager, auditor, service_account: {total, confirmed, cancelled, completed}';
COMMENT ON FUNCTION api.analytics_bookings_by_room IS 'admin, facility_manager, auditor, service_account: [{room_id, room_name, total, confirmed, cancelled, completed}]';
COMMENT ON FUNCTION api.analytics_bookings_per_day IS 'admin, facility_manager, auditor, service_account: bookings by UTC start day, both dates included, at most 366 days';
COMMENT ON FUNCTION api.analytics_average_rating_by_room IS 'admin, moderator, auditor: [{room_id, room_name, average_rating, review_count}], hidden reviews left out';
COMMENT ON FUNCTION api.analytics_rate_limits IS 'admin, auditor: per endpoint its rule, denials and admissions since the server started';
COMMENT ON FUNCTION api.analytics_occupancy IS 'admin, facility_manager, auditor: held rooms per night and room type, both dates included';
COMMENT ON FUNCTION api.list_events IS 'admin, service_account: events after after_id, oldest first, optionally by kind prefix ("review."); the live stream is NOTIFY pg_booking_events';

-- Retry-After is the rate limiter's to say, not the adapter's to dig out
-- of the details: the error asks for the header (DETAIL "headers", the way
-- PostgREST lets a RAISE set response headers).  Same function as 1.0 but
-- for that key.
CREATE OR REPLACE FUNCTION booking.rate_limit_hit(endpoint text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r booking.rate_limits;
    k text;
    window_ms bigint;
    d record;
    headers jsonb;
BEGIN
    -- Unset only when the library is not loaded yet (not preloaded): then
    -- the check below says clearly that preloading is needed.
    IF NOT coalesce(current_setting('pg_booking.rate_limit_enabled', true), 'on')::boolean THEN
        RETURN;
    END IF;
    SELECT * INTO r FROM booking.rate_limits l WHERE l.endpoint = rate_limit_hit.endpoint;
    IF NOT FOUND OR booking.current_app_role() = ANY (r.exempt_roles) THEN
        RETURN;
    END IF;
    k := booking.rate_limit_key(r.key_kind);
    IF k IS NULL THEN
        RETURN;
    END IF;
    window_ms := (extract(epoch FROM r.window_length) * 1000)::bigint;
    d := booking.rate_limit_check(r.endpoint, k, r.max_requests, window_ms);
    IF NOT d.allowed THEN
        PERFORM booking.raise_error(429, 'RATE_LIMIT_EXCEEDED',
            format('too many requests to "%s"', r.endpoint),
            jsonb_build_object('endpoint', r.endpoint, 'limit', r.max_requests,
                               'window_seconds', trim_scale(window_ms / 1000.0), 'remaining', 0,
                               'retry_after_seconds', ceil(d.retry_after_ms / 1000.0)::bigint,
                               'retry_after_ms', d.retry_after_ms,
                               'headers', jsonb_build_object('Retry-After', ceil(d.retry_after_ms / 1000.0)::bigint::text)),
            format('At most %s requests per %s; see retry_after_seconds.', r.max_requests, r.window_length));
    END IF;
    headers := coalesce(nullif(current_setting('response.headers', true), '')::jsonb, '[]')
        || jsonb_build_array(
               jsonb_build_object('RateLimit-Limit', r.max_requests::text),
               jsonb_build_object('RateLimit-Remaining', d.remaining::text),
               jsonb_build_object('RateLimit-Reset', ceil(d.reset_ms / 1000.0)::text),
               jsonb_build_object('RateLimit-Policy', format('%s;w=%s', r.max_requests, ceil(window_ms / 1000.0))));
    PERFORM set_config('response.headers', headers::text, true);
END
$$;

-- ==== API consistency (issue 10) ====

-- A reservation the caller may read but not change (auditors, service
-- accounts) is 403 on a change, not 404: FOR UPDATE applies the UPDATE
-- policies, which hide it, so look again without the lock before saying
-- it does not exist.  Someone else's reservation stays 404.
CREATE OR REPLACE FUNCTION booking.find_reservation(reservation_id uuid, for_update boolean DEFAULT false)
RETURNS booking.reservations
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r booking.reservations;
    hotel bigint;
BEGIN
    IF for_update THEN
        -- By id and hotel: on Citus a row lock must name the shard, and
        -- reservations are distributed by hotel_id (docs/citus.md); a
        -- reservation never changes hotel.
        SELECT y.hotel_id INTO hotel FROM booking.reservations y WHERE y.id = reservation_id;
        SELECT * INTO r FROM booking.reservations x
         WHERE x.id = reservation_id AND x.hotel_id = hotel FOR UPDATE;
        IF r.id IS NULL AND EXISTS (SELECT 1 FROM booking.reservations WHERE id = reservation_id) THEN
            PERFORM booking.raise_error(403, 'FORBIDDEN',
                format('role "%s" may not change reservation %s', booking.current_app_role(), reservation_id),
                jsonb_build_object('reservation_id', reservation_id));
        END IF;
    ELSE
        SELECT * INTO r FROM booking.reservations WHERE id = reservation_id;
    END IF;
    IF r.id IS NULL THEN
        PERFORM booking.raise_error(404, 'NOT_FOUND',
            format('reservation %s not found', coalesce(reservation_id::text, 'NULL')),
            jsonb_build_object('reservation_id', reservation_id));
    END IF;
    RETURN r;
END
$$;

-- One rule for a range of days: dates, both included, "to" not before
-- "from", at most N days -- booking.parse_nights, which inventory already
-- used; the analytics day ranges had their own copies with other messages.
-- (Time windows are timestamps, through booking.parse_window.)
CREATE OR REPLACE FUNCTION api.analytics_bookings_per_day("from" text, "to" text) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    days daterange;
    f date;
    t date;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager', 'auditor', 'service_account');
    days := booking.parse_nights("from", "to", 366);
    f := lower(days);
    t := upper(days) - 1;
    -- Every day of [from, to], zeros included, so charts have no gaps.
    RETURN (SELECT jsonb_agg(jsonb_build_object('day', d.day, 'total', coalesce(v.total, 0),
                                                'confirmed', coalesce(v.confirmed, 0),
                                                'cancelled', coalesce(v.cancelled, 0),
                                                'completed', coalesce(v.completed, 0)) ORDER BY d.day)
              FROM (SELECT g::date AS day FROM generate_series(f, t, interval '1 day') g) d
              LEFT JOIN (SELECT * FROM booking.analytics_bookings_per_day p WHERE p.day BETWEEN f AND t) v
                     ON v.day = d.day);
END
$$;
CREATE OR REPLACE FUNCTION api.analytics_occupancy(hotel_id bigint, "from" text, "to" text) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    nights daterange;
    f date;
    t date;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager', 'auditor');
    nights := booking.parse_nights("from", "to", 366);
    f := lower(nights);
    t := upper(nights) - 1;
    IF NOT EXISTS (SELECT 1 FROM booking.hotels h WHERE h.id = analytics_occupancy.hotel_id) THEN
        PERFORM booking.raise_error(404, 'NOT_FOUND', format('hotel %s not found', hotel_id),
            jsonb_build_object('hotel_id', hotel_id));
    END IF;
    RETURN coalesce((SELECT jsonb_agg(jsonb_build_object('night', o.night, 'room_type', o.room_type,
                                                         'total', o.total, 'held', o.held,
                                                         'occupancy_percent', o.occupancy_percent)
                                      ORDER BY o.night, o.room_type)
                       FROM booking.analytics_occupancy o
                      WHERE o.hotel_id = analytics_occupancy.hotel_id AND o.night BETWEEN f AND t), '[]');
END
$$;

-- ==== psql as documented (issue 10) ====

-- A superuser session without claims passes every role check (psql,
-- maintenance), but it is nobody.  Most api functions call require_user()
-- only to refuse anonymous callers (PERFORM booking.require_user()): those
-- work.  The ones that act as the caller use the id it returns; for them a
-- superuser without claims is a clear 401, not a NULL user id that fails
-- later in a constraint.  The two uses are told apart by the caller's
-- statement, which PL/pgSQL reports in PG_CONTEXT.
CREATE OR REPLACE FUNCTION booking.require_user() RETURNS bigint
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    uid bigint := booking.current_user_id();
    role text := booking.current_app_role();   -- validates the role claim too
    ctx text;
BEGIN
    IF role = 'superuser' AND uid IS NULL THEN
        GET DIAGNOSTICS ctx = PG_CONTEXT;
        -- The first function frame above this one: "... line N at PERFORM"?
        IF (SELECT l FROM unnest(string_to_array(ctx, E'\n')) WITH ORDINALITY AS c(l, n)
             WHERE n > 1 AND l ~ '^(PL/pgSQL|SQL) function' ORDER BY n LIMIT 1) LIKE '% at PERFORM' THEN
            RETURN NULL;
        END IF;
        PERFORM booking.raise_error(401, 'UNAUTHORIZED', 'this call acts as a user: set request.jwt.claims first',
            '{}', 'SELECT set_config(''request.jwt.claims'', ''{"sub": "1", "role": "booking_user"}'', false);');
    END IF;
    IF role = 'anon' OR uid IS NULL THEN
        PERFORM booking.raise_error(401, 'UNAUTHORIZED', 'authentication required');
    END IF;
    RETURN uid;
END
$$;

-- ==== code health: labels that lie, the checkout's lock class (issue 10) ====

-- EXCEPTION blocks start subtransactions, which no parallel worker (nor a
-- leader in parallel mode) may do: these two are not PARALLEL SAFE.
ALTER FUNCTION booking.parse_instant(text, text) PARALLEL UNSAFE;
ALTER FUNCTION booking.parse_date(text, text) PARALLEL UNSAFE;
-- raise_error is called for its effect: IMMUTABLE let the planner run it
-- while folding constants, raising in a branch that would not be taken.
ALTER FUNCTION booking.raise_error(integer, text, text, jsonb, text) VOLATILE;

-- The checkout's per-date lock in the extension's own advisory class
-- (PGB_LOCK_CHECKOUT_DATE, extension/pg_booking.h), not in the classes
-- pg_advisory_lock() shares with every user of the database.
CREATE FUNCTION booking.checkout_date_lock(d date) RETURNS void
AS 'MODULE_PATHNAME', 'pgb_checkout_date_lock'
LANGUAGE C STRICT VOLATILE;
REVOKE EXECUTE ON FUNCTION booking.checkout_date_lock(date) FROM PUBLIC;
COMMENT ON FUNCTION booking.checkout_date_lock IS 'serialise the starters of one business date''s checkout until commit (the extension''s advisory lock class)';

-- ==== sessions that end, caller identity (issue 9, issue 11) ====
-- A token stands while its user is active, holds the token's role, and its
-- session has not ended (docs/design.md, Sessions).  Logins open a session; the
-- access token carries its id ("sid") and every refresh token belongs to
-- one.  Logout, a password change, a role change and a deactivation end
-- sessions.  The check runs where the caller is decided, once per
-- transaction (extension/caller.c), so no request pays a round trip for it.

-- Tokens without a session id (minted by hand with the secret, or claims
-- set in psql) are checked by their "iat" against this instant instead.
-- (a table of its own: booking.users keeps the row type of 1.0).
CREATE TABLE booking.token_cutoffs (
    user_id            bigint PRIMARY KEY REFERENCES booking.users ON DELETE CASCADE,
    tokens_valid_after timestamptz NOT NULL
);
COMMENT ON TABLE booking.token_cutoffs IS
'tokens without a session id issued (iat) before this second are refused; set at logout, password change, role change and deactivation';
ALTER TABLE booking.token_cutoffs ENABLE ROW LEVEL SECURITY;
SELECT pg_catalog.pg_extension_config_dump('booking.token_cutoffs', '');

CREATE TABLE booking.sessions (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES booking.users ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    ended_at   timestamptz,
    end_reason text,
    CONSTRAINT sessions_end_reason CHECK (end_reason IN ('logout', 'password_change', 'role_change', 'deactivated'))
);
CREATE INDEX sessions_live_idx ON booking.sessions (user_id) WHERE ended_at IS NULL;
COMMENT ON TABLE booking.sessions IS 'sign-ins: the access tokens of a session (claim "sid") stand until it ends';
-- Nobody reads sessions through the api; the caller check runs as the owner.
ALTER TABLE booking.sessions ENABLE ROW LEVEL SECURITY;
SELECT pg_catalog.pg_extension_config_dump('booking.sessions', '');
SELECT pg_catalog.pg_extension_config_dump(pg_get_serial_sequence('booking.sessions', 'id')::regclass, '');

ALTER TABLE booking.refresh_tokens ADD COLUMN session_id bigint REFERENCES booking.sessions ON DELETE CASCADE;

-- The caller, from C: parsed once per transaction, keyed by the setting's
-- text; the same signatures as 1.0, so policies and functions that call
-- them are unchanged.
CREATE OR REPLACE FUNCTION booking.claims() RETURNS jsonb
LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pgb_caller_claims';
CREATE OR REPLACE FUNCTION booking.current_user_id() RETURNS bigint
LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pgb_current_user_id';
COMMENT ON FUNCTION booking.current_user_id IS
'the calling user''s id, from the "sub" claim; NULL when anonymous; 401 when the token''s session has ended';
CREATE OR REPLACE FUNCTION booking.current_app_role() RETURNS text
LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pgb_current_app_role';
COMMENT ON FUNCTION booking.current_app_role IS
'the caller''s application role from the "role" claim (superuser in psql without claims); 401 when the token no longer stands';

-- The session id of the caller's token, NULL without one.
CREATE FUNCTION booking.current_session_id() RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT (booking.claims() ->> 'sid')::bigint $$;
GRANT EXECUTE ON FUNCTION booking.current_session_id() TO booking_anon, booking_api;

-- An access token of a session.
CREATE FUNCTION booking.session_token(u booking.users, session_id bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    ttl integer := current_setting('pg_booking.access_token_ttl')::integer;
    now_epoch bigint := floor(extract(epoch FROM clock_timestamp()))::bigint;
BEGIN
    RETURN jsonb_build_object(
        'access_token', booking.sign_jwt(jsonb_build_object(
            'sub', u.id::text, 'role', 'booking_' || u.role, 'sid', session_id,
            'iat', now_epoch, 'exp', now_epoch + ttl)),
        'token_type', 'bearer',
        'expires_in', ttl);
END
$$;

-- End a user's sessions (all, or all but keep_session), revoke every
-- refresh token, and move tokens_valid_after.  Self, or an admin.
CREATE FUNCTION booking.end_sessions(user_id bigint, keep_session bigint, reason text) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    IF user_id IS DISTINCT FROM booking.current_user_id() THEN
        PERFORM booking.require_role('admin');
    END IF;
    UPDATE booking.sessions s SET ended_at = now(), end_reason = reason
     WHERE s.user_id = end_sessions.user_id AND s.ended_at IS NULL
       AND s.id IS DISTINCT FROM keep_session;
    GET DIAGNOSTICS n = ROW_COUNT;
    UPDATE booking.refresh_tokens t SET revoked_at = now()
     WHERE t.user_id = end_sessions.user_id AND t.revoked_at IS NULL;
    INSERT INTO booking.token_cutoffs AS c (user_id, tokens_valid_after) VALUES (end_sessions.user_id, now())
    ON CONFLICT ON CONSTRAINT token_cutoffs_pkey DO UPDATE SET tokens_valid_after = excluded.tokens_valid_after;
    RETURN n;
END
$$;
COMMENT ON FUNCTION booking.end_sessions IS
'end a user''s sessions but keep_session, revoke all their refresh tokens; self or admin';
GRANT EXECUTE ON FUNCTION booking.end_sessions(bigint, bigint, text) TO booking_api;

CREATE OR REPLACE FUNCTION api.logout() RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    uid bigint := booking.require_user();
    n integer := booking.revoke_refresh_tokens(uid);
BEGIN
    PERFORM booking.end_sessions(uid, NULL, 'logout');
    RETURN jsonb_build_object('revoked_refresh_tokens', n);
END
$$;
COMMENT ON FUNCTION api.logout IS
'POST /users/logout (self): ends every session of the caller: their access tokens stop working at once, refresh tokens are revoked';

CREATE OR REPLACE FUNCTION api.refresh(refresh_token text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    u booking.users;
    t booking.refresh_tokens;
BEGIN
    SELECT x.* INTO t FROM booking.refresh_tokens x
     WHERE x.token_hash = sha256(convert_to(coalesce(refresh_token, ''), 'UTF8'))
       AND x.revoked_at IS NULL AND x.expires_at > now();
    SELECT us.* INTO u FROM booking.users us WHERE us.id = t.user_id AND us.active;
    IF u.id IS NULL OR EXISTS (SELECT 1 FROM booking.sessions s WHERE s.id = t.session_id AND s.ended_at IS NOT NULL) THEN
        PERFORM booking.raise_error(401, 'UNAUTHORIZED', 'refresh token is invalid, expired or revoked');
    END IF;
    -- A refresh token from before sessions existed joins a new one.
    IF t.session_id IS NULL THEN
        INSERT INTO booking.sessions (user_id) VALUES (u.id) RETURNING id INTO t.session_id;
        UPDATE booking.refresh_tokens x SET session_id = t.session_id WHERE x.id = t.id;
    END IF;
    RETURN booking.session_token(u, t.session_id);
END
$$;
COMMENT ON FUNCTION api.refresh IS 'POST /users/refresh (public): a new access token of the refresh token''s session; 401 UNAUTHORIZED when revoked, expired or the session ended';

-- ==== limits that count the work, bcrypt throttle (issue 9) ====
-- A rule may be charged more than one unit (a recurring booking: one per
-- occurrence) and may be keyed explicitly (a login: the account signed in
-- to).  Password hashing (bcrypt, ~50 ms of CPU each) runs in at most
-- pg_booking.password_hash_slots transactions at once: a caller that finds
-- every slot taken is told to retry at once rather than queue, so waiting
-- hashes never hold the adapter's pooled connections.

CREATE FUNCTION booking.rate_limit_charge(endpoint text, key text, max_requests integer, window_ms bigint,
                                          cost integer, at_ms bigint DEFAULT NULL, dry_run boolean DEFAULT false,
                                         OUT allowed boolean, OUT remaining integer,
                                         OUT retry_after_ms bigint, OUT reset_ms bigint)
RETURNS record
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'pgb_rate_limit_check_cost';
COMMENT ON FUNCTION booking.rate_limit_charge(text, text, integer, bigint, integer, bigint, boolean) IS
'check and count cost units of key against "at most max_requests in any window_ms"; all or nothing';
REVOKE EXECUTE ON FUNCTION booking.rate_limit_charge(text, text, integer, bigint, integer, bigint, boolean) FROM PUBLIC;

-- Where a key is counted.  The limiter's state is the shared memory of one
-- server.  On Citus every node can run our functions (a client of a worker
-- node, a call delegated to a shard's node), and a key counted on each node
-- would be admitted max_requests times on every one of them: a worker node
-- has the coordinator count (docs/citus.md, the limiter).
CREATE FUNCTION booking.citus_node() RETURNS text
LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pgb_citus_node_sql';
COMMENT ON FUNCTION booking.citus_node() IS
'what this node is to Citus: coordinator, worker (Citus''s pg_dist_local_group names a group other than 0), or NULL without Citus';
REVOKE EXECUTE ON FUNCTION booking.citus_node() FROM PUBLIC;
-- (api.create_booking, which runs as its caller, asks it too.)
GRANT EXECUTE ON FUNCTION booking.citus_node() TO booking_api;

-- booking.rate_limit_charge on the coordinator, over a connection of its
-- own (Citus's run_command_on_coordinator): the count is shared memory,
-- not transactional, on one node as here.
CREATE FUNCTION booking.rate_limit_charge_on_coordinator(endpoint text, key text, max_requests integer, window_ms bigint,
                                                         cost integer, dry_run boolean,
                                                         OUT allowed boolean, OUT remaining integer,
                                                         OUT retry_after_ms bigint, OUT reset_ms bigint)
RETURNS record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ok boolean;
    answer text;
    d jsonb;
BEGIN
    SELECT c.success, c.result INTO ok, answer
      FROM pg_catalog.run_command_on_coordinator(format(
               'SELECT row_to_json(d) FROM booking.rate_limit_charge(%L, %L, %s, %s, %s, dry_run => %L) d',
               endpoint, key, max_requests, window_ms, cost, dry_run)) c;
    IF ok IS NOT TRUE THEN
        PERFORM booking.raise_error(503, 'DATABASE_UNAVAILABLE',
            'the rate limiter could not be asked',
            jsonb_build_object('endpoint', endpoint),
            'This node is a Citus worker node; its limits are counted on the coordinator, which did not answer: '
            || coalesce(answer, 'no coordinator in pg_dist_node'));
    END IF;
    d := answer::jsonb;
    allowed := (d ->> 'allowed')::boolean;
    remaining := (d ->> 'remaining')::integer;
    retry_after_ms := (d ->> 'retry_after_ms')::bigint;
    reset_ms := (d ->> 'reset_ms')::bigint;
END
$$;
COMMENT ON FUNCTION booking.rate_limit_charge_on_coordinator IS
'booking.rate_limit_charge run on the Citus coordinator (a worker node''s limits are counted there); 503 when it does not answer';
REVOKE EXECUTE ON FUNCTION booking.rate_limit_charge_on_coordinator(text, text, integer, bigint, integer, boolean) FROM PUBLIC;

-- Charge cost units of a rule to key (NULL key: not limited).
CREATE FUNCTION booking.rate_limit_hit_key(endpoint text, key text, cost integer, dry_run boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r booking.rate_limits;
    window_ms bigint;
    d record;
    headers jsonb;
BEGIN
    IF NOT coalesce(current_setting('pg_booking.rate_limit_enabled', true), 'on')::boolean OR key IS NULL THEN
        RETURN;
    END IF;
    SELECT * INTO r FROM booking.rate_limits l WHERE l.endpoint = rate_limit_hit_key.endpoint;
    IF NOT FOUND OR booking.current_app_role() = ANY (r.exempt_roles) THEN
        RETURN;
    END IF;
    window_ms := (extract(epoch FROM r.window_length) * 1000)::bigint;
    IF cost > r.max_requests THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('this request needs %s units of "%s", more than its limit of %s', cost, r.endpoint, r.max_requests),
            jsonb_build_object('endpoint', r.endpoint, 'limit', r.max_requests, 'cost', cost,
                               'window_seconds', trim_scale(window_ms / 1000.0)),
            'Book fewer occurrences at once.');
    END IF;
    IF booking.citus_node() = 'worker' THEN
        d := booking.rate_limit_charge_on_coordinator(r.endpoint, key, r.max_requests, window_ms, greatest(cost, 1), dry_run);
    ELSE
        d := booking.rate_limit_charge(r.endpoint, key, r.max_requests, window_ms, greatest(cost, 1), dry_run => dry_run);
    END IF;
    IF NOT d.allowed THEN
        PERFORM booking.raise_error(429, 'RATE_LIMIT_EXCEEDED',
            format('too many requests to "%s"', r.endpoint),
            jsonb_build_object('endpoint', r.endpoint, 'limit', r.max_requests,
                               'window_seconds', trim_scale(window_ms / 1000.0), 'remaining', 0,
                               'retry_after_seconds', ceil(d.retry_after_ms / 1000.0)::bigint,
                               'retry_after_ms', d.retry_after_ms,
                               'headers', jsonb_build_object('Retry-After', ceil(d.retry_after_ms / 1000.0)::bigint::text))
            || CASE WHEN cost > 1 THEN jsonb_build_object('cost', cost) ELSE '{}' END,
            format('At most %s requests per %s; see retry_after_seconds.', r.max_requests, r.window_length));
    END IF;
    IF dry_run THEN
        RETURN;
    END IF;
    headers := coalesce(nullif(current_setting('response.headers', true), '')::jsonb, '[]')
        || jsonb_build_array(
               jsonb_build_object('RateLimit-Limit', r.max_requests::text),
               jsonb_build_object('RateLimit-Remaining', d.remaining::text),
               jsonb_build_object('RateLimit-Reset', ceil(d.reset_ms / 1000.0)::text),
               jsonb_build_object('RateLimit-Policy', format('%s;w=%s', r.max_requests, ceil(window_ms / 1000.0))));
    PERFORM set_config('response.headers', headers::text, true);
END
$$;
COMMENT ON FUNCTION booking.rate_limit_hit_key IS
'charge cost units of endpoint''s rule to key; 429 RATE_LIMIT_EXCEEDED when over, 422 when cost exceeds the rule';

-- Charge cost units to the caller's key for the rule's key kind.
CREATE FUNCTION booking.rate_limit_hit(endpoint text, cost integer) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT booking.rate_limit_hit_key(endpoint,
        booking.rate_limit_key((SELECT l.key_kind FROM booking.rate_limits l WHERE l.endpoint = rate_limit_hit.endpoint)),
        cost)
$$;
COMMENT ON FUNCTION booking.rate_limit_hit(text, integer) IS
'charge cost units of endpoint''s rule to the caller (per IP or per user); 429 RATE_LIMIT_EXCEEDED when over';

CREATE OR REPLACE FUNCTION booking.rate_limit_hit(endpoint text) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT booking.rate_limit_hit(endpoint, 1) $$;
GRANT EXECUTE ON FUNCTION booking.rate_limit_hit(text, integer), booking.rate_limit_hit_key(text, text, integer, boolean)
   TO booking_anon, booking_api;
REVOKE EXECUTE ON FUNCTION booking.rate_limit_hit(text, integer), booking.rate_limit_hit_key(text, text, integer, boolean) FROM PUBLIC;

-- Rules of the work: occurrences of recurring bookings per user, logins per
-- account, password changes per user and per client IP.
INSERT INTO booking.rate_limits (endpoint, max_requests, window_length, key_kind, exempt_roles) VALUES
    ('booking_occurrences',   400, '1 hour',     'user', '{admin,service_account}'),
    ('login_account',         10,  '10 minutes', 'user', '{}'),   -- failed logins, keyed by email
    ('change_password',       5,   '15 minutes', 'user', '{}'),
    ('change_password_ip',    20,  '15 minutes', 'ip',   '{}')
ON CONFLICT (endpoint) DO NOTHING;

-- One of the password-hashing slots, held to the end of the transaction;
-- 429 (retry after 1 s) when all are busy.
CREATE FUNCTION booking.password_hash_slot() RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer := coalesce(nullif(current_setting('pg_booking.password_hash_slots', true), ''), '1')::integer;
BEGIN
    FOR i IN 0 .. n - 1 LOOP
        IF pg_try_advisory_xact_lock(x'5204'::integer, i) THEN
            RETURN;
        END IF;
    END LOOP;
    PERFORM booking.raise_error(429, 'RATE_LIMIT_EXCEEDED', 'password hashing is busy',
        jsonb_build_object('endpoint', 'password_hashing', 'limit', n,
                           'retry_after_seconds', 1, 'retry_after_ms', 1000),
        'Every password-hashing slot is in use; retry in a second.');
END
$$;
COMMENT ON FUNCTION booking.password_hash_slot IS
'take one of pg_booking.password_hash_slots bcrypt slots for this transaction, or 429 at once';
GRANT EXECUTE ON FUNCTION booking.password_hash_slot() TO booking_anon, booking_api;
REVOKE EXECUTE ON FUNCTION booking.password_hash_slot() FROM PUBLIC;

CREATE OR REPLACE FUNCTION api.register(email text, password text, full_name text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    u booking.users;
BEGIN
    -- The value is not echoed: error messages reach the server log.
    IF email IS NULL OR email !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' OR length(email) > 254 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'email is not a valid address',
            jsonb_build_object('field', 'email'));
    END IF;
    PERFORM booking.validate_password(password);
    PERFORM booking.validate_full_name(full_name);
    PERFORM booking.rate_limit_hit('register');
    PERFORM booking.password_hash_slot();
    BEGIN
        INSERT INTO booking.users (email, full_name, password_hash)
        VALUES (btrim(email), btrim(full_name), booking.hash_password(password))
        RETURNING * INTO u;
    EXCEPTION WHEN unique_violation THEN
        PERFORM booking.raise_error(409, 'ALREADY_EXISTS', 'a user with this email already exists',
            jsonb_build_object('field', 'email'));
    END;
    RETURN booking.user_json(u);
END
$$;

CREATE OR REPLACE FUNCTION api.login(email text, password text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    u booking.users;
    refresh text;
    sid bigint;
    account text;
BEGIN
    PERFORM booking.rate_limit_hit('login');
    -- Failed logins per account too, for remote callers (like the per-IP
    -- rule, a session on the database host's own socket is not limited):
    -- checked before hashing, charged when the password is wrong.
    account := CASE WHEN booking.rate_limit_key('ip') IS NOT NULL THEN lower(btrim(coalesce(email, ''))) END;
    PERFORM booking.rate_limit_hit_key('login_account', account, 1, dry_run => true);
    PERFORM booking.password_hash_slot();
    SELECT * INTO u FROM booking.users WHERE lower(users.email) = lower(btrim(login.email)) AND active;
    -- Hash even when the user is unknown, so timing does not reveal which emails exist.
    IF NOT booking.password_matches(coalesce(password, ''),
               coalesce(u.password_hash, '$2a$10$0000000000000000000000000000000000000000000000000000.')) OR u.id IS NULL THEN
        PERFORM booking.rate_limit_hit_key('login_account', account, 1);   -- counts though the call fails
        PERFORM booking.raise_error(401, 'UNAUTHORIZED', 'invalid email or password');
    END IF;
    INSERT INTO booking.sessions (user_id) VALUES (u.id) RETURNING id INTO sid;
    refresh := booking.random_token(32);
    INSERT INTO booking.refresh_tokens (user_id, token_hash, expires_at, session_id)
    VALUES (u.id, sha256(convert_to(refresh, 'UTF8')),
            now() + make_interval(secs => current_setting('pg_booking.refresh_token_ttl')::integer), sid);
    RETURN booking.session_token(u, sid) || jsonb_build_object('refresh_token', refresh);
END
$$;
COMMENT ON FUNCTION api.login IS
'POST /users/login (public, 5 per 10 s per client IP, 10 failures per 10 minutes per account): opens a session: access token (HS256 JWT, claim "sid") and refresh token; 401 UNAUTHORIZED';

-- A password change: the current password first, then the new hash; every
-- refresh token and every other session of the user ends.  Limited per
-- user and per client IP, and hashed in a slot.
CREATE FUNCTION booking.change_password(user_id bigint, current_password text, new_password text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h text;
BEGIN
    IF user_id IS DISTINCT FROM booking.require_user() THEN
        PERFORM booking.raise_error(403, 'FORBIDDEN', 'a password is changed by its owner only');
    END IF;
    PERFORM booking.validate_password(new_password);
    IF current_password IS NULL THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'current_password is required to change the password',
            jsonb_build_object('field', 'current_password'));
    END IF;
    PERFORM booking.rate_limit_hit('change_password');
    PERFORM booking.rate_limit_hit('change_password_ip');
    PERFORM booking.password_hash_slot();
    SELECT u.password_hash INTO h FROM booking.users u WHERE u.id = change_password.user_id;
    IF NOT booking.password_matches(current_password, h) THEN
        PERFORM booking.raise_error(403, 'FORBIDDEN', 'current_password is wrong',
            jsonb_build_object('field', 'current_password'));
    END IF;
    UPDATE booking.users u SET password_hash = booking.hash_password(new_password), updated_at = now()
     WHERE u.id = change_password.user_id;
    PERFORM booking.end_sessions(user_id, booking.current_session_id(), 'password_change');
END
$$;
COMMENT ON FUNCTION booking.change_password IS
'change the caller''s password given the current one; ends every other session and revokes every refresh token';
GRANT EXECUTE ON FUNCTION booking.change_password(bigint, text, text) TO booking_api;

-- PATCH /users/me now needs current_password to change the password.
DROP FUNCTION api.update_me(text, text);
CREATE FUNCTION api.update_me(full_name text DEFAULT NULL, password text DEFAULT NULL,
                              current_password text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    uid bigint := booking.require_user();
BEGIN
    IF full_name IS NOT NULL THEN
        PERFORM booking.validate_full_name(full_name);
    END IF;
    IF password IS NOT NULL THEN
        PERFORM booking.change_password(uid, current_password, password);
    END IF;
    IF full_name IS NOT NULL THEN
        UPDATE booking.users u SET full_name = btrim(update_me.full_name), updated_at = now() WHERE u.id = uid;
    END IF;
    RETURN api.me();
END
$$;
COMMENT ON FUNCTION api.update_me IS
'PATCH /users/me (self): change full_name and/or password (with current_password; ends every other session); 403 wrong current password, 422, 429';
GRANT EXECUTE ON FUNCTION api.update_me(text, text, text) TO booking_api;

-- A booking, or a series: one unit of create_booking per request and one
-- unit of booking_occurrences per occurrence.
CREATE OR REPLACE FUNCTION api.create_booking(room_id bigint, starts_at text, ends_at text, title text,
                                   recurrence jsonb DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    uid bigint := booking.require_user();
    s timestamptz;
    e timestamptz;
    duration interval;
    b booking.bookings;
    occurrence timestamptz;
    i integer := 0;
    clash jsonb;
    clashes jsonb := '[]';
    created jsonb := '[]';
    series uuid;
BEGIN
    PERFORM booking.require_role('user', 'admin', 'facility_manager', 'moderator', 'service_account');
    PERFORM booking.validate_title(title);
    s := booking.parse_instant(starts_at, 'starts_at');
    e := booking.parse_instant(ends_at, 'ends_at');
    PERFORM booking.validate_booking_times(s, e);
    PERFORM booking.bookable_room(room_id);
    PERFORM booking.rate_limit_hit('create_booking');
    -- The work is counted too: every occurrence of a series is one unit of
    -- booking_occurrences, all charged before anything is written.
    PERFORM booking.rate_limit_hit('booking_occurrences',
        CASE WHEN recurrence IS NULL OR recurrence = 'null'::jsonb THEN 1
             ELSE (SELECT count(*)::integer FROM booking.recurrence_starts(s, recurrence)) END);

    IF recurrence IS NULL OR recurrence = 'null'::jsonb THEN
        -- The trigger checks for clashes and raises BOOKING_CONFLICT.
        INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
        VALUES (room_id, uid, btrim(title), s, e) RETURNING * INTO b;
        RETURN booking.booking_json(b);
    END IF;

    -- Recurring: look at every occurrence (the first look locks the room
    -- until commit), book the free ones, and either fail with every clash
    -- listed or report the skipped ones.
    duration := e - s;
    series := gen_random_uuid();
    FOR occurrence IN SELECT * FROM booking.recurrence_starts(s, recurrence) LOOP
        i := i + 1;
        clash := booking.booking_conflicts(room_id, occurrence, occurrence + duration);
        IF clash IS NOT NULL THEN
            clashes := clashes || jsonb_build_object('occurrence', i, 'starts_at', occurrence,
                                                     'ends_at', occurrence + duration, 'conflicts', clash);
        ELSE
            INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at, series_id)
            VALUES (room_id, uid, btrim(title), occurrence, occurrence + duration, series) RETURNING * INTO b;
            created := created || booking.booking_json(b);
        END IF;
    END LOOP;

    IF jsonb_array_length(clashes) > 0
       AND (coalesce(recurrence ->> 'on_conflict', 'fail') = 'fail' OR jsonb_array_length(created) = 0) THEN
        PERFORM booking.raise_error(409, 'BOOKING_CONFLICT',
            format('%s of %s occurrences clash with existing bookings of room %s',
                   jsonb_array_length(clashes), i, room_id),
            jsonb_build_object('room_id', room_id, 'conflicting_occurrences', clashes),
            CASE WHEN coalesce(recurrence ->> 'on_conflict', 'fail') = 'fail'
                 THEN 'Nothing was booked.  Use "on_conflict": "skip" to book the free occurrences.'
                 ELSE 'Nothing was booked: every occurrence clashes.' END);
    END IF;
    RETURN jsonb_build_object('series_id', series, 'bookings', created, 'skipped', clashes);
END
$$;

-- ==== audit trail (issue 9) ====
-- Every privileged change is appended, in the transaction that makes it, to
-- booking.audit_log: who (user id and app role from the claims, the
-- database session user), what (action, target), the changed fields before
-- and after (never passwords, hashes or secrets) and the request id the
-- adapter sets.  Nobody changes or removes an entry: a trigger refuses
-- UPDATE, DELETE and TRUNCATE whoever asks (the owner's functions too), and
-- no role holds those privileges.  Writes go through booking.audit(), a
-- SECURITY DEFINER function; table triggers record the changes to users,
-- rooms, hotels and rate-limit rules whatever the path (api or psql), the
-- api functions record inventory, restrictions, checkout runs and
-- moderation, one entry per call.

CREATE TABLE booking.audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor_id    bigint,
    actor_role  text NOT NULL,
    db_user     text NOT NULL DEFAULT session_user,
    action      text NOT NULL,
    target_type text NOT NULL,
    target_id   text,
    before      jsonb,
    after       jsonb,
    request_id  text
);
CREATE INDEX audit_log_at_idx ON booking.audit_log (at);
CREATE INDEX audit_log_target_idx ON booking.audit_log (target_type, target_id);
COMMENT ON TABLE booking.audit_log IS
'append-only trail of privileged changes: actor, action, target, changed fields before/after, request id';
SELECT pg_catalog.pg_extension_config_dump('booking.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump(pg_get_serial_sequence('booking.audit_log', 'id')::regclass, '');

CREATE FUNCTION booking.audit_log_immutable() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'booking.audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'PT403', DETAIL = '{"error_code": "FORBIDDEN"}';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON booking.audit_log
    FOR EACH ROW EXECUTE FUNCTION booking.audit_log_immutable();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON booking.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION booking.audit_log_immutable();
REVOKE ALL ON booking.audit_log FROM PUBLIC;
ALTER TABLE booking.audit_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY audit_log_read ON booking.audit_log FOR SELECT TO booking_admin, booking_auditor USING (true);
GRANT SELECT ON booking.audit_log TO booking_admin, booking_auditor;
-- The owner holds no UPDATE, DELETE or TRUNCATE either (the trigger is the
-- guard that also binds superusers' sessions).
DO $$ BEGIN EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON booking.audit_log FROM %I', current_user); END $$;

-- The fields that differ between two versions of a row, as {before, after},
-- without the ones that are never shown (hashes, bookkeeping stamps).
CREATE FUNCTION booking.audit_diff(old_row jsonb, new_row jsonb, OUT before jsonb, OUT after jsonb)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT jsonb_object_agg(k, old_row -> k) FILTER (WHERE old_row ? k),
           jsonb_object_agg(k, new_row -> k) FILTER (WHERE new_row ? k)
      FROM (SELECT k FROM jsonb_object_keys(coalesce(old_row, '{}') || coalesce(new_row, '{}')) k) keys
     WHERE k NOT IN ('password_hash', 'updated_at', 'created_at')
       AND (old_row -> k) IS DISTINCT FROM (new_row -> k)
$$;

CREATE FUNCTION booking.audit(action text, target_type text, target_id text, before jsonb, after jsonb)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO booking.audit_log (actor_id, actor_role, action, target_type, target_id, before, after, request_id)
    VALUES (booking.current_user_id(), booking.current_app_role(), action, target_type, target_id,
            before, after, nullif(current_setting('request.id', true), ''))
$$;
COMMENT ON FUNCTION booking.audit IS 'append one entry to booking.audit_log for the caller, in the caller''s transaction';
GRANT EXECUTE ON FUNCTION booking.audit(text, text, text, jsonb, jsonb) TO booking_api;

-- Row triggers: users (role, active), rooms, hotels, rate-limit rules.
CREATE FUNCTION booking.audit_row() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o jsonb := CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END;
    n jsonb := CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END;
    d record;
    kind text := TG_ARGV[0];
    verb text := lower(TG_OP);
BEGIN
    d := booking.audit_diff(o, n);
    IF TG_OP = 'UPDATE' AND d.before IS NULL AND d.after IS NULL THEN
        RETURN NULL;            -- nothing an auditor would see changed
    END IF;
    IF TG_OP = 'INSERT' THEN
        verb := 'create';
    ELSIF kind = 'room' AND (o ->> 'active')::boolean AND NOT (n ->> 'active')::boolean THEN
        verb := 'delete';       -- DELETE /rooms/{id} deactivates
    ELSIF kind = 'user' AND d.after ? 'role' THEN
        verb := 'role_change';
    ELSIF kind = 'user' AND d.after ? 'active' THEN
        verb := CASE WHEN (n ->> 'active')::boolean THEN 'reactivate' ELSE 'deactivate' END;
    END IF;
    PERFORM booking.audit(kind || '.' || verb, kind,
                          coalesce(n, o) ->> coalesce(TG_ARGV[1], 'id'),
                          CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE coalesce(d.before, '{}') END,
                          CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE coalesce(d.after, '{}') END);
    RETURN NULL;
END
$$;
CREATE TRIGGER users_audit AFTER UPDATE OF role, active ON booking.users
    FOR EACH ROW WHEN (OLD.role IS DISTINCT FROM NEW.role OR OLD.active IS DISTINCT FROM NEW.active)
    EXECUTE FUNCTION booking.audit_row('user');
CREATE TRIGGER rooms_audit AFTER INSERT OR UPDATE OR DELETE ON booking.rooms
    FOR EACH ROW EXECUTE FUNCTION booking.audit_row('room');
CREATE TRIGGER hotels_audit AFTER INSERT OR UPDATE OR DELETE ON booking.hotels
    FOR EACH ROW EXECUTE FUNCTION booking.audit_row('hotel');
CREATE TRIGGER rate_limits_audit AFTER INSERT OR UPDATE OR DELETE ON booking.rate_limits
    FOR EACH ROW EXECUTE FUNCTION booking.audit_row('rate_limit', 'endpoint');

-- A role change or a deactivation ends the user's sessions (their tokens
-- stop at once); the trigger above records it.
CREATE OR REPLACE FUNCTION api.update_user(id bigint, role text DEFAULT NULL, active boolean DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    before booking.users;
BEGIN
    PERFORM booking.require_role('admin');
    IF role IS NOT NULL AND role NOT IN ('user', 'admin', 'facility_manager', 'auditor', 'moderator', 'service_account') THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('role "%s" is not a known role', role),
            jsonb_build_object('field', 'role'));
    END IF;
    SELECT u.id, u.email, u.full_name, NULL, u.role, u.active INTO before
      FROM booking.users u WHERE u.id = update_user.id FOR UPDATE;
    IF before.id IS NULL THEN
        PERFORM booking.raise_error(404, 'NOT_FOUND', format('user %s not found', id));
    END IF;
    UPDATE booking.users u
       SET role = coalesce(update_user.role, u.role),
           active = coalesce(update_user.active, u.active),
           updated_at = now()
     WHERE u.id = update_user.id;
    IF coalesce(role, before.role) IS DISTINCT FROM before.role THEN
        PERFORM booking.end_sessions(update_user.id, NULL, 'role_change');
    ELSIF active IS FALSE AND before.active THEN
        PERFORM booking.end_sessions(update_user.id, NULL, 'deactivated');
    ELSIF active IS FALSE THEN
        PERFORM booking.revoke_refresh_tokens(update_user.id);
    END IF;
    RETURN api.get_user(id);
END
$$;

-- Moderation decisions.
CREATE OR REPLACE FUNCTION booking.moderate_review(review_id bigint, new_status text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r booking.reviews;
    old_status text;
BEGIN
    PERFORM booking.require_role('moderator', 'admin');
    r := booking.find_review(review_id);
    old_status := r.status;
    UPDATE booking.reviews x SET status = new_status, updated_at = now()
     WHERE x.id = review_id RETURNING * INTO r;
    -- A restored review leaves the queue: its flags are settled.
    IF new_status = 'visible' THEN
        DELETE FROM booking.review_flags fl WHERE fl.review_id = moderate_review.review_id;
    END IF;
    PERFORM booking.audit(CASE WHEN new_status = 'hidden' THEN 'review.hide' ELSE 'review.restore' END,
                          'review', review_id::text,
                          jsonb_build_object('status', old_status), jsonb_build_object('status', new_status));
    RETURN booking.review_json(r);
END
$$;

-- Inventory adjustments: the totals of the nights before and after.
CREATE OR REPLACE FUNCTION api.adjust_inventory(hotel_id bigint, room_type text, "from" text, "to" text,
                                     delta integer DEFAULT NULL, total integer DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    nights daterange;
    bad record;
    before_totals jsonb;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager');
    PERFORM booking.find_hotel(hotel_id);
    PERFORM booking.validate_room_type(room_type);
    nights := booking.parse_nights("from", "to");
    IF (delta IS NULL) = (total IS NULL) THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'give either delta or total',
            jsonb_build_object('field', 'delta'));
    END IF;
    IF total IS NOT NULL AND total < 0 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('total %s is negative', total),
            jsonb_build_object('field', 'total'));
    END IF;
    INSERT INTO booking.inventory (hotel_id, room_type, night, total, available)
    SELECT adjust_inventory.hotel_id, adjust_inventory.room_type, n::date, 0, 0
      FROM generate_series(lower(nights), upper(nights) - 1, interval '1 day') n
    ON CONFLICT DO NOTHING;
    -- Lock the nights in the order the reservation trigger does (by night),
    -- then look at what is held: nothing can take a room meanwhile.
    PERFORM 1 FROM booking.inventory i
      WHERE i.hotel_id = adjust_inventory.hotel_id AND i.room_type = adjust_inventory.room_type
        AND i.night <@ nights
      ORDER BY i.night FOR UPDATE;
    SELECT i.night, coalesce(adjust_inventory.total, i.total + delta) AS total, i.total - i.available AS held
      INTO bad
      FROM booking.inventory i
     WHERE i.hotel_id = adjust_inventory.hotel_id AND i.room_type = adjust_inventory.room_type
       AND i.night <@ nights AND coalesce(adjust_inventory.total, i.total + delta) < i.total - i.available
     ORDER BY i.night LIMIT 1;
    IF FOUND AND bad.total < 0 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('night %s would have %s rooms', to_char(bad.night, 'YYYY-MM-DD'), bad.total),
            jsonb_build_object('field', 'delta', 'night', bad.night, 'total', bad.total));
    END IF;
    IF FOUND THEN
        PERFORM booking.raise_error(409, 'INVENTORY_BELOW_HELD',
            format('night %s would have %s rooms but %s are held by reservations', to_char(bad.night, 'YYYY-MM-DD'), bad.total, bad.held),
            jsonb_build_object('hotel_id', hotel_id, 'room_type', room_type, 'night', bad.night,
                               'total', bad.total, 'held', bad.held),
            'Cancel or move reservations first, or adjust by a smaller amount.');
    END IF;
    SELECT jsonb_object_agg(i.night, i.total) INTO before_totals
      FROM booking.inventory i
     WHERE i.hotel_id = adjust_inventory.hotel_id AND i.room_type = adjust_inventory.room_type
       AND i.night <@ nights;
    UPDATE booking.inventory i
       SET total = coalesce(adjust_inventory.total, i.total + delta),
           available = coalesce(adjust_inventory.total, i.total + delta) - (i.total - i.available)
     WHERE i.hotel_id = adjust_inventory.hotel_id AND i.room_type = adjust_inventory.room_type
       AND i.night <@ nights;
    PERFORM booking.audit('inventory.adjust', 'inventory', format('%s/%s', hotel_id, room_type),
        jsonb_build_object('totals', before_totals),
        jsonb_build_object('delta', delta, 'total', total, 'from', lower(nights), 'to', upper(nights) - 1,
                           'totals', (SELECT jsonb_object_agg(i.night, i.total) FROM booking.inventory i
                                       WHERE i.hotel_id = adjust_inventory.hotel_id
                                         AND i.room_type = adjust_inventory.room_type AND i.night <@ nights)));
    RETURN api.list_inventory(hotel_id, to_char(lower(nights), 'YYYY-MM-DD'), to_char(upper(nights) - 1, 'YYYY-MM-DD'),
                              room_type, lim => 500);
END
$$;

-- Restriction changes: the rules of the dates before and after.
CREATE OR REPLACE FUNCTION api.set_restrictions(hotel_id bigint, room_type text, "from" text, "to" text,
                                     min_stay integer DEFAULT NULL, max_stay integer DEFAULT NULL,
                                     closed_to_arrival boolean DEFAULT false,
                                     closed_to_departure boolean DEFAULT false) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    nights daterange;
    before_rules jsonb;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager');
    PERFORM booking.find_hotel(hotel_id);
    PERFORM booking.validate_room_type(room_type);
    nights := booking.parse_nights("from", "to");
    IF min_stay IS NOT NULL AND min_stay NOT BETWEEN 1 AND 30 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('min_stay %s is out of range', min_stay),
            jsonb_build_object('field', 'min_stay', 'min', 1, 'max', 30));
    END IF;
    IF max_stay IS NOT NULL AND max_stay NOT BETWEEN 1 AND 30 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('max_stay %s is out of range', max_stay),
            jsonb_build_object('field', 'max_stay', 'min', 1, 'max', 30));
    END IF;
    IF min_stay > max_stay THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('min_stay %s is above max_stay %s', min_stay, max_stay),
            jsonb_build_object('field', 'min_stay'));
    END IF;
    SELECT jsonb_agg(to_jsonb(s) - 'hotel_id' - 'room_type' ORDER BY s.night) INTO before_rules
      FROM booking.stay_restrictions s
     WHERE s.hotel_id = set_restrictions.hotel_id AND s.room_type = set_restrictions.room_type AND s.night <@ nights;
    -- PUT: the given rules replace those of these dates; no rule at all clears them.
    DELETE FROM booking.stay_restrictions s
     WHERE s.hotel_id = set_restrictions.hotel_id AND s.room_type = set_restrictions.room_type AND s.night <@ nights;
    IF min_stay IS NOT NULL OR max_stay IS NOT NULL OR closed_to_arrival OR closed_to_departure THEN
        INSERT INTO booking.stay_restrictions
        SELECT set_restrictions.hotel_id, set_restrictions.room_type, n::date, min_stay, max_stay,
               coalesce(closed_to_arrival, false), coalesce(closed_to_departure, false)
          FROM generate_series(lower(nights), upper(nights) - 1, interval '1 day') n;
    END IF;
    PERFORM booking.audit('restrictions.set', 'inventory', format('%s/%s', hotel_id, room_type),
        jsonb_build_object('rules', coalesce(before_rules, '[]')),
        jsonb_build_object('from', lower(nights), 'to', upper(nights) - 1, 'min_stay', min_stay, 'max_stay', max_stay,
                           'closed_to_arrival', coalesce(closed_to_arrival, false),
                           'closed_to_departure', coalesce(closed_to_departure, false)));
    RETURN jsonb_build_object('hotel_id', hotel_id, 'room_type', room_type,
                              'from', lower(nights), 'to', upper(nights) - 1,
                              'min_stay', min_stay, 'max_stay', max_stay,
                              'closed_to_arrival', coalesce(closed_to_arrival, false),
                              'closed_to_departure', coalesce(closed_to_departure, false));
END
$$;

-- Manual checkout runs (the worker's runs are in booking.checkout_runs).
CREATE OR REPLACE FUNCTION api.run_checkout(as_of text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    d date;
    run_id bigint;
    r booking.checkout_runs;
BEGIN
    PERFORM booking.require_role('admin');
    d := CASE WHEN as_of IS NULL THEN booking.checkout_latest_due()
              ELSE booking.parse_date(as_of, 'as_of') END;
    run_id := booking.checkout_run(d, 'manual');
    PERFORM booking.audit('checkout.run', 'checkout', d::text, NULL,
        jsonb_build_object('business_date', d, 'run_id', run_id, 'already_done', run_id IS NULL));
    IF run_id IS NULL THEN
        SELECT * INTO r FROM booking.checkout_runs WHERE business_date = d AND error IS NULL;
        RETURN booking.checkout_run_json(r) || jsonb_build_object('already_done', true);
    END IF;
    SELECT * INTO r FROM booking.checkout_runs WHERE id = run_id;
    RETURN booking.checkout_run_json(r) || jsonb_build_object('already_done', false);
END
$$;

CREATE FUNCTION api.list_audit(action text DEFAULT NULL, target_type text DEFAULT NULL, target_id text DEFAULT NULL,
                               actor_id bigint DEFAULT NULL, "from" text DEFAULT NULL, "to" text DEFAULT NULL,
                               lim integer DEFAULT 50, off integer DEFAULT 0) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    f timestamptz := CASE WHEN "from" IS NOT NULL THEN booking.parse_instant("from", 'from') END;
    t timestamptz := CASE WHEN "to" IS NOT NULL THEN booking.parse_instant("to", 'to') END;
BEGIN
    PERFORM booking.require_role('admin', 'auditor');
    PERFORM booking.check_page(lim, off);
    RETURN coalesce((
        SELECT jsonb_agg(to_jsonb(a) ORDER BY a.id DESC)
          FROM (SELECT * FROM booking.audit_log x
                 WHERE (list_audit.action IS NULL OR x.action = list_audit.action OR x.action LIKE list_audit.action || '.%')
                   AND (list_audit.target_type IS NULL OR x.target_type = list_audit.target_type)
                   AND (list_audit.target_id IS NULL OR x.target_id = list_audit.target_id)
                   AND (list_audit.actor_id IS NULL OR x.actor_id = list_audit.actor_id)
                   AND (f IS NULL OR x.at >= f) AND (t IS NULL OR x.at < t)
                 ORDER BY x.id DESC LIMIT lim OFFSET off) a), '[]');
END
$$;
COMMENT ON FUNCTION api.list_audit IS
'GET /admin/audit (admin, auditor): the audit trail, newest first; filters action (or its prefix such as "user"), target_type, target_id, actor_id, from/to';

-- The auditor reads the events too.
GRANT SELECT ON booking.events TO booking_auditor;
CREATE POLICY events_auditor_read ON booking.events FOR SELECT TO booking_auditor USING (true);

-- The functions of these sections, like those of 1.0: nothing for PUBLIC,
-- the api for every signed-in role.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA api, booking FROM PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA api TO booking_api;

-- ==== overbooking allowance and group allotments (issue 15) ====
--
-- Why: hotels sell a few rooms beyond the physical total because some
-- guests never come (the overbooking allowance), and hold rooms for groups
-- until a release date (blocks, allotments).  Both are folded into the one
-- number the take reads, so extension/inventory.c keeps its one rule (take a
-- night when available > 0, under the night's row lock):
--
--     available = total + allowance - held - blocked
--
-- held: reservations holding the night; blocked: rooms of group blocks not
-- picked up yet; allowance: the night's overbooking allowance.  The CHECK
-- 0 <= available <= total + allowance therefore says held + blocked <=
-- total + allowance, and every writer changes available under the row lock
-- of the night, so no concurrency exceeds it (t/088_allotment_concurrency.pl).
-- With no allowance and no block this is 1.0's available = total - held.
--
-- The allowance is set per (hotel, room type) as a number of rooms or a
-- percentage of the night's total (rounded down) in booking.overbooking;
-- each night's rooms are kept on its inventory row (inventory.allowance),
-- since a percentage depends on that night's total.  A change applies from
-- the hotels' today on (passed nights keep what they were sold with), and
-- api.adjust_inventory recomputes it when a total changes.
--
-- A block holds `rooms` rooms of a type on each night from..to for a group
-- code, until its release date.  Creating it takes the rooms from
-- available in one UPDATE that needs available >= rooms on every night
-- (all or nothing).  A reservation made with the group code draws from the
-- block first: when its stay lies within the block and the block has a room
-- left on each night, the reservations_block trigger (fires before
-- reservations_nights) counts the room as picked up and hands it to the
-- stay (available + 1), which the C take then holds (available - 1): the
-- night's count is unchanged and the block never gives more than it has;
-- otherwise the stay is sold from general inventory like any other.  A
-- group stay keeps its dates and room type (it may be shortened or
-- cancelled); the nights it gives back go back to the block until the block
-- is released, then to general inventory.  The release (on the release
-- date by the nightly checkout worker, booking.release_blocks, or by hand)
-- returns the rooms not picked up, exactly once: booking.block_releases has
-- one row per block.
--
-- Lock order, for every writer: the block's row (release only, FOR NO KEY
-- UPDATE, which does not block the reservations' foreign-key checks), then
-- inventory rows by night, then block_nights rows by night.

CREATE TABLE booking.overbooking (
    hotel_id   bigint NOT NULL REFERENCES booking.hotels,
    room_type  text NOT NULL,
    rooms      integer,
    percent    numeric(5,2),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (hotel_id, room_type),
    CONSTRAINT overbooking_rooms_or_percent CHECK ((rooms IS NULL) <> (percent IS NULL)),
    CONSTRAINT overbooking_rooms_range CHECK (rooms IS NULL OR rooms BETWEEN 0 AND 10000),
    CONSTRAINT overbooking_percent_range CHECK (percent IS NULL OR percent BETWEEN 0 AND 100)
);
COMMENT ON TABLE booking.overbooking IS 'overbooking allowance per hotel and room type: rooms, or percent of each night''s total (rounded down), sellable beyond the physical rooms';
SELECT pg_catalog.pg_extension_config_dump('booking.overbooking', '');
GRANT SELECT ON booking.overbooking TO booking_api;
GRANT INSERT, UPDATE ON booking.overbooking TO booking_admin, booking_facility_manager;

ALTER TABLE booking.inventory
    ADD COLUMN allowance integer NOT NULL DEFAULT 0,
    ADD CONSTRAINT inventory_allowance_range CHECK (allowance >= 0),
    DROP CONSTRAINT inventory_available_range,
    ADD CONSTRAINT inventory_available_range CHECK (available >= 0 AND available <= total + allowance);
COMMENT ON COLUMN booking.inventory.allowance IS 'rooms of this night sellable beyond total (overbooking allowance, from booking.overbooking)';
COMMENT ON COLUMN booking.inventory.available IS 'rooms still sellable: total + allowance - rooms held by reservations - rooms of group blocks not picked up';

-- The allowance of a night of `total` rooms under a setting.
CREATE FUNCTION booking.allowance_rooms(total integer, rooms integer, percent numeric) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT coalesce(rooms, floor(total * percent / 100)::integer, 0) $$;
COMMENT ON FUNCTION booking.allowance_rooms IS 'the overbooking allowance of a night with this total: rooms, or percent of total rounded down; 0 without a setting';

CREATE TABLE booking.blocks (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hotel_id     bigint NOT NULL REFERENCES booking.hotels,
    room_type    text NOT NULL,
    group_code   text NOT NULL,
    first_night  date NOT NULL,
    last_night   date NOT NULL,
    rooms        integer NOT NULL,
    release_date date NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT blocks_group_code UNIQUE (hotel_id, group_code),
    CONSTRAINT blocks_group_code_form CHECK (group_code ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,49}$'),
    CONSTRAINT blocks_rooms_range CHECK (rooms BETWEEN 1 AND 10000),
    CONSTRAINT blocks_nights_order CHECK (first_night <= last_night),
    CONSTRAINT blocks_release_first CHECK (release_date <= first_night)
);
COMMENT ON TABLE booking.blocks IS 'group allotments: rooms of a type held on nights first..last for a group code until release_date';

CREATE TABLE booking.block_nights (
    block_id bigint NOT NULL REFERENCES booking.blocks,
    night    date NOT NULL,
    rooms    integer NOT NULL,
    picked   integer NOT NULL DEFAULT 0,
    PRIMARY KEY (block_id, night),
    CONSTRAINT block_nights_picked_range CHECK (picked >= 0 AND picked <= rooms)
);
CREATE INDEX block_nights_night_idx ON booking.block_nights (night);
COMMENT ON TABLE booking.block_nights IS 'per block and night: rooms the block holds (after its release: those picked up) and rooms picked up by group stays';

CREATE TABLE booking.block_releases (
    block_id       bigint PRIMARY KEY REFERENCES booking.blocks,
    released_at    timestamptz NOT NULL DEFAULT now(),
    source         text NOT NULL CHECK (source IN ('worker', 'manual')),
    as_of          date,
    rooms_returned integer NOT NULL
);
COMMENT ON TABLE booking.block_releases IS 'the release of a block (at most one): room nights not picked up returned to general inventory';

SELECT pg_catalog.pg_extension_config_dump('booking.blocks', '');
SELECT pg_catalog.pg_extension_config_dump('booking.block_nights', '');
SELECT pg_catalog.pg_extension_config_dump('booking.block_releases', '');
GRANT SELECT ON booking.blocks, booking.block_nights, booking.block_releases TO booking_api;
-- Creating a block writes as its caller; the release and the stays' triggers
-- write as the owner (SECURITY DEFINER).
GRANT INSERT ON booking.blocks, booking.block_nights TO booking_admin, booking_facility_manager;

ALTER TABLE booking.reservations ADD COLUMN block_id bigint REFERENCES booking.blocks;
CREATE INDEX reservations_block_idx ON booking.reservations (block_id) WHERE block_id IS NOT NULL;
COMMENT ON COLUMN booking.reservations.block_id IS 'the group block the stay''s nights were drawn from (NULL: general inventory)';

-- The rooms of group blocks not picked up on a night of (hotel, room type).
-- Owner's rights: the occupancy view calls it for its readers (booking_grafana
-- among them), who read no block table.
-- A view, so that a reader of many nights joins it (on Citus a function
-- reading the blocks per inventory row is a nested distributed query from
-- the inventory shard, which Citus refuses; docs/citus.md).
CREATE VIEW booking.blocked_nights AS
SELECT b.hotel_id, b.room_type, n.night, sum(n.rooms - n.picked)::bigint AS blocked
  FROM booking.blocks b JOIN booking.block_nights n ON n.block_id = b.id
 GROUP BY b.hotel_id, b.room_type, n.night;
COMMENT ON VIEW booking.blocked_nights IS 'rooms held by group blocks and not picked up yet, per hotel, room type and night (nights with a block only)';

CREATE FUNCTION booking.blocked_rooms(hotel_id bigint, room_type text, night date) RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT k.blocked FROM booking.blocked_nights k
                      WHERE k.hotel_id = blocked_rooms.hotel_id AND k.room_type = blocked_rooms.room_type
                        AND k.night = blocked_rooms.night), 0)
$$;
COMMENT ON FUNCTION booking.blocked_rooms IS 'rooms of a night held by group blocks and not picked up yet';

-- Stays drawn from a block: the pick-up when one is made, the refusal of
-- moves, and (after the C trigger gave the nights back) their return.
CREATE FUNCTION booking.reservation_block() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b booking.blocks;
    nights integer;
    free integer;
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.block_id IS NULL THEN
            RETURN NEW;
        END IF;
        SELECT * INTO b FROM booking.blocks x WHERE x.id = NEW.block_id;
        nights := NEW.held_until - NEW.arrival_date;
        IF b.id IS NULL OR b.hotel_id <> NEW.hotel_id OR b.room_type <> NEW.room_type OR nights < 1
           OR NEW.status <> 'confirmed' OR NEW.arrival_date < b.first_night OR NEW.held_until - 1 > b.last_night
           OR EXISTS (SELECT 1 FROM booking.block_releases x WHERE x.block_id = b.id) THEN
            NEW.block_id := NULL;       -- not the block's: general inventory
            RETURN NEW;
        END IF;
        PERFORM 1 FROM booking.inventory i
         WHERE i.hotel_id = NEW.hotel_id AND i.room_type = NEW.room_type
           AND i.night >= NEW.arrival_date AND i.night < NEW.held_until
         ORDER BY i.night FOR UPDATE;
        PERFORM 1 FROM booking.block_nights n
         WHERE n.block_id = b.id AND n.night >= NEW.arrival_date AND n.night < NEW.held_until
         ORDER BY n.night FOR UPDATE;
        SELECT count(*) INTO free FROM booking.block_nights n
         WHERE n.block_id = b.id AND n.night >= NEW.arrival_date AND n.night < NEW.held_until AND n.picked < n.rooms;
        IF free < nights THEN
            NEW.block_id := NULL;       -- the block is full on a night: general inventory
            RETURN NEW;
        END IF;
        UPDATE booking.block_nights n SET picked = n.picked + 1
         WHERE n.block_id = b.id AND n.night >= NEW.arrival_date AND n.night < NEW.held_until;
        -- The block hands its room to the stay; the take holds it right after.
        UPDATE booking.inventory i SET available = i.available + 1
         WHERE i.hotel_id = NEW.hotel_id AND i.room_type = NEW.room_type
           AND i.night >= NEW.arrival_date AND i.night < NEW.held_until;
        RETURN NEW;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    IF NEW.block_id IS DISTINCT FROM OLD.block_id THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'a stay is drawn from a block only when it is made',
            jsonb_build_object('field', 'block_id', 'reservation_id', OLD.id));
    END IF;
    IF OLD.block_id IS NOT NULL AND (NEW.room_type <> OLD.room_type OR NEW.arrival_date <> OLD.arrival_date
                                     OR NEW.stay_length > OLD.stay_length OR NEW.held_until > OLD.held_until) THEN
        PERFORM booking.raise_error(409, 'INVALID_STATE',
            format('the stay was drawn from group block %s: it keeps its arrival date and room type and cannot grow', OLD.block_id),
            jsonb_build_object('reservation_id', OLD.id, 'block_id', OLD.block_id),
            'Shorten or cancel the stay, then book the new dates (with the group code while the block has rooms).');
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION booking.reservation_block IS 'trigger (before reservations_nights): a stay made with a block draws its nights from it when the block has a room on each; a group stay keeps its dates and room type';

CREATE FUNCTION booking.reservation_block_return() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kept date := CASE WHEN TG_OP = 'DELETE' THEN OLD.arrival_date ELSE NEW.held_until END;
    released boolean;
BEGIN
    IF kept >= OLD.held_until THEN
        RETURN NULL;
    END IF;
    -- The C trigger gave nights [kept, old held_until) back to available (rows
    -- locked); before the release they go back into the block.
    released := EXISTS (SELECT 1 FROM booking.block_releases x WHERE x.block_id = OLD.block_id);
    UPDATE booking.block_nights n
       SET picked = n.picked - 1, rooms = n.rooms - CASE WHEN released THEN 1 ELSE 0 END
     WHERE n.block_id = OLD.block_id AND n.night >= kept AND n.night < OLD.held_until;
    IF NOT released THEN
        UPDATE booking.inventory i SET available = i.available - 1
         WHERE i.hotel_id = OLD.hotel_id AND i.room_type = OLD.room_type
           AND i.night >= kept AND i.night < OLD.held_until;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION booking.reservation_block_return IS 'trigger: nights a group stay gives back return to its block until the block is released';

-- The WHEN clauses keep the stays of no block (nearly all) from calling
-- PL/pgSQL: the take of a plain stay costs what it did.
CREATE TRIGGER reservations_block BEFORE INSERT ON booking.reservations
    FOR EACH ROW WHEN (NEW.block_id IS NOT NULL) EXECUTE FUNCTION booking.reservation_block();
CREATE TRIGGER reservations_block_change BEFORE UPDATE OF block_id, room_type, arrival_date, stay_length, held_until
    ON booking.reservations
    FOR EACH ROW WHEN (OLD.block_id IS NOT NULL OR NEW.block_id IS NOT NULL) EXECUTE FUNCTION booking.reservation_block();
CREATE TRIGGER reservations_block_return AFTER UPDATE OF held_until OR DELETE ON booking.reservations
    FOR EACH ROW WHEN (OLD.block_id IS NOT NULL) EXECUTE FUNCTION booking.reservation_block_return();

-- The allowance, set for one room type of a hotel.
CREATE FUNCTION api.set_overbooking(hotel_id bigint, room_type text, rooms integer DEFAULT NULL,
                                    percent numeric DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    today date := booking.hotel_today(hotel_id);   -- the hotel's today (section "hotels in several time zones")
    bad record;
    before jsonb;
    o booking.overbooking;
    n integer;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager');
    PERFORM booking.find_hotel(hotel_id);
    PERFORM booking.validate_room_type(room_type);
    IF (rooms IS NULL) = (percent IS NULL) THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'give either rooms or percent',
            jsonb_build_object('field', 'rooms'));
    END IF;
    IF rooms < 0 OR rooms > 10000 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('rooms %s is out of range', rooms),
            jsonb_build_object('field', 'rooms', 'min', 0, 'max', 10000));
    END IF;
    IF percent < 0 OR percent > 100 OR scale(percent) > 2 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('percent %s is out of range (0 to 100, two decimals at most)', percent),
            jsonb_build_object('field', 'percent', 'min', 0, 'max', 100));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM booking.inventory i
                    WHERE i.hotel_id = set_overbooking.hotel_id AND i.room_type = set_overbooking.room_type) THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('hotel %s has no room type "%s"', hotel_id, room_type),
            jsonb_build_object('field', 'room_type', 'hotel_id', hotel_id, 'room_type', room_type));
    END IF;
    -- Lock the nights in the take's order, then compare with what is sold.
    PERFORM 1 FROM booking.inventory i
      WHERE i.hotel_id = set_overbooking.hotel_id AND i.room_type = set_overbooking.room_type AND i.night >= today
      ORDER BY i.night FOR UPDATE;
    SELECT i.night, i.total, booking.allowance_rooms(i.total, rooms, percent) AS allowance,
           i.total + i.allowance - i.available AS sold
      INTO bad
      FROM booking.inventory i
     WHERE i.hotel_id = set_overbooking.hotel_id AND i.room_type = set_overbooking.room_type AND i.night >= today
       AND i.available + booking.allowance_rooms(i.total, rooms, percent) - i.allowance < 0
     ORDER BY i.night LIMIT 1;
    IF FOUND THEN
        PERFORM booking.raise_error(409, 'ALLOWANCE_BELOW_SOLD',
            format('night %s has %s rooms sold (reservations and blocks) but %s rooms and an allowance of %s sell only %s',
                   to_char(bad.night, 'YYYY-MM-DD'), bad.sold, bad.total, bad.allowance, bad.total + bad.allowance),
            jsonb_build_object('hotel_id', hotel_id, 'room_type', room_type, 'night', bad.night,
                               'total', bad.total, 'allowance', bad.allowance, 'sold', bad.sold),
            'Cancel or move reservations first, or keep a larger allowance.');
    END IF;
    SELECT to_jsonb(x) - 'updated_at' INTO before FROM booking.overbooking x
     WHERE x.hotel_id = set_overbooking.hotel_id AND x.room_type = set_overbooking.room_type;
    INSERT INTO booking.overbooking AS x (hotel_id, room_type, rooms, percent)
    VALUES (hotel_id, room_type, rooms, percent)
    ON CONFLICT ON CONSTRAINT overbooking_pkey
    DO UPDATE SET rooms = EXCLUDED.rooms, percent = EXCLUDED.percent, updated_at = now()
    RETURNING * INTO o;
    UPDATE booking.inventory i
       SET allowance = booking.allowance_rooms(i.total, o.rooms, o.percent),
           available = i.available + booking.allowance_rooms(i.total, o.rooms, o.percent) - i.allowance
     WHERE i.hotel_id = set_overbooking.hotel_id AND i.room_type = set_overbooking.room_type AND i.night >= today;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM booking.audit('inventory.overbooking', 'inventory', format('%s/%s', hotel_id, room_type),
        before, to_jsonb(o) - 'updated_at');
    RETURN jsonb_build_object('hotel_id', o.hotel_id, 'room_type', o.room_type, 'rooms', o.rooms,
                              'percent', o.percent, 'applies_from', today, 'nights', n, 'updated_at', o.updated_at);
END
$$;
COMMENT ON FUNCTION api.set_overbooking IS 'admin, facility_manager: the overbooking allowance of a room type (rooms, or percent of each night''s total rounded down) for the nights from today on; 404, 409 ALLOWANCE_BELOW_SOLD (first night sold beyond it), 422';

-- Inventory adjustments keep the allowance: new nights get the room type's
-- setting, and a percentage follows the night's new total.  The rooms sold
-- (held and blocked) stay sold: a total that with its allowance sells fewer
-- is refused with the first such night.
CREATE OR REPLACE FUNCTION api.adjust_inventory(hotel_id bigint, room_type text, "from" text, "to" text,
                                     delta integer DEFAULT NULL, total integer DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    nights daterange;
    bad record;
    before_totals jsonb;
    o booking.overbooking;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager');
    PERFORM booking.find_hotel(hotel_id);
    PERFORM booking.validate_room_type(room_type);
    nights := booking.parse_nights("from", "to");
    IF (delta IS NULL) = (total IS NULL) THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'give either delta or total',
            jsonb_build_object('field', 'delta'));
    END IF;
    IF total IS NOT NULL AND total < 0 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('total %s is negative', total),
            jsonb_build_object('field', 'total'));
    END IF;
    SELECT * INTO o FROM booking.overbooking x
     WHERE x.hotel_id = adjust_inventory.hotel_id AND x.room_type = adjust_inventory.room_type;
    INSERT INTO booking.inventory (hotel_id, room_type, night, total, available)
    SELECT adjust_inventory.hotel_id, adjust_inventory.room_type, n::date, 0, 0
      FROM generate_series(lower(nights), upper(nights) - 1, interval '1 day') n
    ON CONFLICT DO NOTHING;
    -- Lock the nights in the order the reservation trigger does (by night),
    -- then look at what is sold: nothing can take a room meanwhile.
    PERFORM 1 FROM booking.inventory i
      WHERE i.hotel_id = adjust_inventory.hotel_id AND i.room_type = adjust_inventory.room_type
        AND i.night <@ nights
      ORDER BY i.night FOR UPDATE;
    SELECT i.night, coalesce(adjust_inventory.total, i.total + delta) AS total,
           i.total + i.allowance - i.available AS held,
           CASE WHEN o.hotel_id IS NULL OR i.night < booking.hotel_today(adjust_inventory.hotel_id) THEN i.allowance
                ELSE booking.allowance_rooms(greatest(coalesce(adjust_inventory.total, i.total + delta), 0), o.rooms, o.percent)
           END AS allowance
      INTO bad
      FROM booking.inventory i
     WHERE i.hotel_id = adjust_inventory.hotel_id AND i.room_type = adjust_inventory.room_type
       AND i.night <@ nights
       AND coalesce(adjust_inventory.total, i.total + delta)
           + CASE WHEN o.hotel_id IS NULL OR i.night < booking.hotel_today(adjust_inventory.hotel_id) THEN i.allowance
                  ELSE booking.allowance_rooms(greatest(coalesce(adjust_inventory.total, i.total + delta), 0), o.rooms, o.percent)
             END < i.total + i.allowance - i.available
     ORDER BY i.night LIMIT 1;
    IF FOUND AND bad.total < 0 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('night %s would have %s rooms', to_char(bad.night, 'YYYY-MM-DD'), bad.total),
            jsonb_build_object('field', 'delta', 'night', bad.night, 'total', bad.total));
    END IF;
    IF FOUND THEN
        PERFORM booking.raise_error(409, 'INVENTORY_BELOW_HELD',
            format('night %s would have %s rooms but %s are held by reservations', to_char(bad.night, 'YYYY-MM-DD'), bad.total, bad.held),
            jsonb_build_object('hotel_id', hotel_id, 'room_type', room_type, 'night', bad.night,
                               'total', bad.total, 'held', bad.held)
            || CASE WHEN bad.allowance > 0 THEN jsonb_build_object('allowance', bad.allowance) ELSE '{}' END,
            'Cancel or move reservations first, or adjust by a smaller amount.');
    END IF;
    IF EXISTS (SELECT 1 FROM booking.inventory i
                WHERE i.hotel_id = adjust_inventory.hotel_id AND i.room_type = adjust_inventory.room_type
                  AND i.night <@ nights AND coalesce(adjust_inventory.total, i.total + delta) < 0) THEN
        SELECT i.night, coalesce(adjust_inventory.total, i.total + delta) AS total INTO bad
          FROM booking.inventory i
         WHERE i.hotel_id = adjust_inventory.hotel_id AND i.room_type = adjust_inventory.room_type
           AND i.night <@ nights AND coalesce(adjust_inventory.total, i.total + delta) < 0
         ORDER BY i.night LIMIT 1;
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('night %s would have %s rooms', to_char(bad.night, 'YYYY-MM-DD'), bad.total),
            jsonb_build_object('field', 'delta', 'night', bad.night, 'total', bad.total));
    END IF;
    SELECT jsonb_object_agg(i.night, i.total) INTO before_totals
      FROM booking.inventory i
     WHERE i.hotel_id = adjust_inventory.hotel_id AND i.room_type = adjust_inventory.room_type
       AND i.night <@ nights;
    UPDATE booking.inventory i
       SET total = x.total, allowance = x.allowance,
           available = x.total + x.allowance - (i.total + i.allowance - i.available)
      FROM (SELECT j.night, coalesce(adjust_inventory.total, j.total + delta) AS total,
                   CASE WHEN o.hotel_id IS NULL OR j.night < booking.hotel_today(adjust_inventory.hotel_id) THEN j.allowance
                        ELSE booking.allowance_rooms(coalesce(adjust_inventory.total, j.total + delta), o.rooms, o.percent)
                   END AS allowance
              FROM booking.inventory j
             WHERE j.hotel_id = adjust_inventory.hotel_id AND j.room_type = adjust_inventory.room_type
               AND j.night <@ nights) x
     WHERE i.hotel_id = adjust_inventory.hotel_id AND i.room_type = adjust_inventory.room_type
       AND i.night = x.night;
    PERFORM booking.audit('inventory.adjust', 'inventory', format('%s/%s', hotel_id, room_type),
        jsonb_build_object('totals', before_totals),
        jsonb_build_object('delta', delta, 'total', total, 'from', lower(nights), 'to', upper(nights) - 1,
                           'totals', (SELECT jsonb_object_agg(i.night, i.total) FROM booking.inventory i
                                       WHERE i.hotel_id = adjust_inventory.hotel_id
                                         AND i.room_type = adjust_inventory.room_type AND i.night <@ nights)));
    RETURN api.list_inventory(hotel_id, to_char(lower(nights), 'YYYY-MM-DD'), to_char(upper(nights) - 1, 'YYYY-MM-DD'),
                              room_type, lim => 500);
END
$$;

-- A block as the api answers it.
CREATE FUNCTION booking.block_json(b booking.blocks) RETURNS jsonb
LANGUAGE sql STABLE
AS $$
    SELECT jsonb_build_object('id', b.id, 'hotel_id', b.hotel_id, 'room_type', b.room_type,
                              'group_code', b.group_code, 'from', b.first_night, 'to', b.last_night,
                              'rooms', b.rooms, 'release_date', b.release_date, 'created_at', b.created_at,
                              'picked_up', (SELECT coalesce(max(n.picked), 0) FROM booking.block_nights n WHERE n.block_id = b.id),
                              'released', (SELECT jsonb_build_object('released_at', r.released_at, 'source', r.source,
                                                                     'as_of', r.as_of, 'rooms_returned', r.rooms_returned)
                                             FROM booking.block_releases r WHERE r.block_id = b.id),
                              'nights', (SELECT jsonb_agg(jsonb_build_object('night', n.night, 'rooms', n.rooms, 'picked', n.picked)
                                                          ORDER BY n.night)
                                           FROM booking.block_nights n WHERE n.block_id = b.id))
$$;

CREATE FUNCTION booking.find_block(hotel_id bigint, block_id bigint) RETURNS booking.blocks
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    b booking.blocks;
BEGIN
    PERFORM booking.find_hotel(hotel_id);
    SELECT * INTO b FROM booking.blocks x WHERE x.id = block_id AND x.hotel_id = find_block.hotel_id;
    IF b.id IS NULL THEN
        PERFORM booking.raise_error(404, 'NOT_FOUND', format('block %s of hotel %s not found', coalesce(block_id::text, 'NULL'), hotel_id),
            jsonb_build_object('hotel_id', hotel_id, 'block_id', block_id));
    END IF;
    RETURN b;
END
$$;

CREATE FUNCTION api.create_block(hotel_id bigint, room_type text, group_code text, "from" text, "to" text,
                                 rooms integer, release_date text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    nights daterange;
    rel date;
    b booking.blocks;
    n integer;
    bad record;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager');
    PERFORM booking.find_hotel(hotel_id);
    PERFORM booking.validate_room_type(room_type);
    IF group_code IS NULL OR group_code !~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,49}$' THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            'group_code must have 1 to 50 letters, digits, "-" or "_", starting with a letter or digit',
            jsonb_build_object('field', 'group_code'));
    END IF;
    nights := booking.parse_nights("from", "to", 366);
    IF rooms IS NULL OR rooms NOT BETWEEN 1 AND 10000 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('rooms %s is out of range', coalesce(rooms::text, 'NULL')),
            jsonb_build_object('field', 'rooms', 'min', 1, 'max', 10000));
    END IF;
    rel := booking.parse_date(release_date, 'release_date');
    IF rel < booking.hotel_today(create_block.hotel_id) OR rel > lower(nights) THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('release_date %s must be between today and the block''s first night %s',
                   to_char(rel, 'YYYY-MM-DD'), to_char(lower(nights), 'YYYY-MM-DD')),
            jsonb_build_object('field', 'release_date'));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM booking.inventory i
                    WHERE i.hotel_id = create_block.hotel_id AND i.room_type = create_block.room_type) THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('hotel %s has no room type "%s"', hotel_id, room_type),
            jsonb_build_object('field', 'room_type', 'hotel_id', hotel_id, 'room_type', room_type));
    END IF;
    IF EXISTS (SELECT 1 FROM booking.blocks x WHERE x.hotel_id = create_block.hotel_id AND x.group_code = create_block.group_code) THEN
        PERFORM booking.raise_error(409, 'ALREADY_EXISTS',
            format('hotel %s already has a block with group code "%s"', hotel_id, group_code),
            jsonb_build_object('hotel_id', hotel_id, 'group_code', group_code));
    END IF;
    INSERT INTO booking.blocks (hotel_id, room_type, group_code, first_night, last_night, rooms, release_date)
    VALUES (hotel_id, room_type, group_code, lower(nights), upper(nights) - 1, rooms, rel)
    RETURNING * INTO b;
    -- The take of the block: every night or none (the rows locked by night).
    UPDATE booking.inventory i SET available = i.available - rooms
     WHERE i.hotel_id = create_block.hotel_id AND i.room_type = create_block.room_type
       AND i.night <@ nights AND i.available >= rooms;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n < upper(nights) - lower(nights) THEN
        SELECT d::date AS night, i.available INTO bad
          FROM generate_series(lower(nights), upper(nights) - 1, interval '1 day') d
          LEFT JOIN booking.inventory i ON i.hotel_id = create_block.hotel_id AND i.room_type = create_block.room_type
                                       AND i.night = d::date
         WHERE i.night IS NULL OR i.available < rooms
         ORDER BY d LIMIT 1;
        IF bad.available IS NULL THEN
            PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
                format('no inventory of room type "%s" for the night of %s', room_type, to_char(bad.night, 'YYYY-MM-DD')),
                jsonb_build_object('field', 'to', 'hotel_id', hotel_id, 'room_type', room_type,
                                   'night', to_char(bad.night, 'YYYY-MM-DD')),
                'POST /inventory/{hotel_id}/adjust makes the nights first.');
        END IF;
        PERFORM booking.raise_error(409, 'NO_AVAILABILITY',
            format('the night of %s has %s rooms of type "%s" free; the block needs %s',
                   to_char(bad.night, 'YYYY-MM-DD'), bad.available, room_type, rooms),
            jsonb_build_object('hotel_id', hotel_id, 'room_type', room_type, 'night', to_char(bad.night, 'YYYY-MM-DD'),
                               'available', bad.available, 'rooms', rooms),
            'A block takes its rooms from the rooms still free on every night.');
    END IF;
    INSERT INTO booking.block_nights (block_id, night, rooms)
    SELECT b.id, d::date, rooms FROM generate_series(lower(nights), upper(nights) - 1, interval '1 day') d;
    PERFORM booking.audit('block.create', 'block', b.id::text, NULL, to_jsonb(b));
    RETURN booking.block_json(b);
END
$$;
COMMENT ON FUNCTION api.create_block IS 'admin, facility_manager: a group block of rooms of a type on nights from..to (included) for group_code, taken from the rooms free on every night, until release_date; 404, 409 NO_AVAILABILITY or ALREADY_EXISTS, 422';

CREATE FUNCTION api.list_blocks(hotel_id bigint, lim integer DEFAULT 50, off integer DEFAULT 0) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager', 'auditor');
    PERFORM booking.check_page(lim, off);
    PERFORM booking.find_hotel(hotel_id);
    RETURN coalesce((SELECT jsonb_agg(booking.block_json(x) ORDER BY x.first_night, x.id)
                       FROM (SELECT b.* FROM booking.blocks b WHERE b.hotel_id = list_blocks.hotel_id
                              ORDER BY b.first_night, b.id LIMIT lim OFFSET off) x), '[]');
END
$$;
COMMENT ON FUNCTION api.list_blocks IS 'admin, facility_manager, auditor: the group blocks of a hotel with their pick-up per night; 404';

CREATE FUNCTION api.get_block(hotel_id bigint, id bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager', 'auditor');
    RETURN booking.block_json(booking.find_block(hotel_id, id));
END
$$;
COMMENT ON FUNCTION api.get_block IS 'admin, facility_manager, auditor: a group block with its pick-up per night and its release; 404';

-- Release a block: the rooms not picked up go back to general inventory,
-- once.  NULL when it was released already.
CREATE FUNCTION booking.release_block(block_id bigint, source text, as_of date DEFAULT NULL)
RETURNS booking.block_releases
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b booking.blocks;
    r booking.block_releases;
    returned integer;
BEGIN
    SELECT * INTO b FROM booking.blocks x WHERE x.id = release_block.block_id FOR NO KEY UPDATE;
    IF b.id IS NULL OR EXISTS (SELECT 1 FROM booking.block_releases x WHERE x.block_id = b.id) THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM booking.inventory i
      WHERE i.hotel_id = b.hotel_id AND i.room_type = b.room_type AND i.night BETWEEN b.first_night AND b.last_night
      ORDER BY i.night FOR UPDATE;
    PERFORM 1 FROM booking.block_nights n WHERE n.block_id = b.id ORDER BY n.night FOR UPDATE;
    SELECT coalesce(sum(n.rooms - n.picked), 0) INTO returned FROM booking.block_nights n WHERE n.block_id = b.id;
    UPDATE booking.inventory i SET available = i.available + (n.rooms - n.picked)
      FROM booking.block_nights n
     WHERE n.block_id = b.id AND n.rooms > n.picked
       AND i.hotel_id = b.hotel_id AND i.room_type = b.room_type AND i.night = n.night;
    UPDATE booking.block_nights n SET rooms = n.picked WHERE n.block_id = b.id AND n.rooms > n.picked;
    INSERT INTO booking.block_releases (block_id, source, as_of, rooms_returned)
    VALUES (b.id, release_block.source, release_block.as_of, returned)
    RETURNING * INTO r;
    PERFORM booking.audit('block.release', 'block', b.id::text, NULL, to_jsonb(r));
    RETURN r;
END
$$;
COMMENT ON FUNCTION booking.release_block IS 'give the rooms of a block not picked up back to general inventory, exactly once (NULL when released already)';

-- The nightly checkout worker calls this once per business date it runs.
CREATE FUNCTION booking.release_blocks(as_of date) RETURNS integer
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    id bigint;
    n integer := 0;
BEGIN
    FOR id IN SELECT b.id FROM booking.blocks b
               WHERE b.release_date <= as_of
                 AND NOT EXISTS (SELECT 1 FROM booking.block_releases r WHERE r.block_id = b.id)
               ORDER BY b.id
    LOOP
        IF booking.release_block(id, 'worker', as_of) IS NOT NULL THEN
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION booking.release_blocks IS 'release every block whose release date is on or before as_of (the checkout worker, once per business date); the number released';

CREATE FUNCTION api.release_block(hotel_id bigint, id bigint) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    b booking.blocks;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager');
    b := booking.find_block(hotel_id, id);
    IF booking.release_block(b.id, 'manual', booking.hotel_today(b.hotel_id)) IS NULL THEN
        PERFORM booking.raise_error(409, 'INVALID_STATE', format('block %s is released already', id),
            jsonb_build_object('hotel_id', hotel_id, 'block_id', id));
    END IF;
    RETURN booking.block_json(b);
END
$$;
COMMENT ON FUNCTION api.release_block IS 'admin, facility_manager: release a block now: its rooms not picked up go back to general inventory; 404, 409 INVALID_STATE (released already)';

-- Reservations: an optional group code draws the stay from its block.
DROP FUNCTION api.create_reservation(bigint, text, text, text, integer, integer, integer);
CREATE FUNCTION api.create_reservation(hotel_id bigint, room_type text, guest_name text, arrival_date text,
                                       stay_length integer, adults integer DEFAULT 1, children integer DEFAULT 0,
                                       group_code text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    uid bigint := booking.require_user();
    a date;
    r booking.reservations;
    block bigint;
BEGIN
    PERFORM booking.require_role('user', 'admin', 'facility_manager', 'moderator', 'service_account');
    a := booking.parse_date(arrival_date, 'arrival_date');
    PERFORM booking.validate_room_type(room_type);
    PERFORM booking.validate_stay(guest_name, a, stay_length, adults, children);
    PERFORM booking.find_hotel(hotel_id);
    IF group_code IS NOT NULL THEN
        SELECT b.id INTO block FROM booking.blocks b
         WHERE b.hotel_id = create_reservation.hotel_id AND b.group_code = create_reservation.group_code;
        IF block IS NULL THEN
            PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
                format('hotel %s has no group block "%s"', hotel_id, group_code),
                jsonb_build_object('field', 'group_code', 'hotel_id', hotel_id));
        END IF;
    END IF;
    PERFORM booking.rate_limit_hit('create_reservation');
    -- The triggers draw from the block when it has the rooms (reservations_block),
    -- then take the nights, all or nothing (NO_AVAILABILITY, restrictions).
    INSERT INTO booking.reservations (hotel_id, room_type, user_id, guest_name, arrival_date, stay_length,
                                      adults, children, held_until, block_id)
    VALUES (hotel_id, room_type, uid, btrim(guest_name), a, stay_length, adults, children, a + stay_length, block)
    RETURNING * INTO r;
    RETURN booking.reservation_json(r);
END
$$;
COMMENT ON FUNCTION api.create_reservation IS 'user+, rate-limited: a stay taking one room on each night, all or nothing; with group_code drawn from that group''s block when the block has a room on each night; 409 NO_AVAILABILITY (first sold-out night), 422 RESTRICTION_VIOLATION or VALIDATION_ERROR (unknown group_code), 404 hotel';

CREATE OR REPLACE FUNCTION booking.reservation_json(r booking.reservations) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object('id', r.id, 'hotel_id', r.hotel_id, 'room_type', r.room_type,
                              'user_id', r.user_id, 'guest_name', r.guest_name,
                              'arrival_date', r.arrival_date, 'stay_length', r.stay_length,
                              'departure_date', r.departure_date, 'adults', r.adults,
                              'children', r.children, 'status', r.status,
                              'nights_held', r.held_until - r.arrival_date,
                              'checked_in_at', r.checked_in_at, 'checked_out_at', r.checked_out_at,
                              'created_at', r.created_at, 'updated_at', r.updated_at)
        -- Priced stays (hotels with a currency) answer with their price.
        || CASE WHEN r.currency IS NULL THEN '{}'::jsonb
                ELSE jsonb_build_object('currency', r.currency, 'nightly_prices', r.nightly_prices,
                                        'total_amount', r.total_amount, 'cancellation_fee', r.cancellation_fee) END
        -- Stays drawn from a group block name it.
        || CASE WHEN r.block_id IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('block_id', r.block_id) END
$$;

-- The invariant over the whole database, with allowances and blocks:
-- available = total + allowance - held - blocked and 0 <= available <=
-- total + allowance on every night; a held night without an inventory row
-- is a violation too.
DROP FUNCTION booking.inventory_violations();
CREATE FUNCTION booking.inventory_violations()
RETURNS TABLE (hotel_id bigint, room_type text, night date, total integer, allowance integer, available integer,
               held bigint, blocked bigint, problem text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH held AS (
        SELECT r.hotel_id, r.room_type, n::date AS night, count(*) AS held
          FROM booking.reservations r
         CROSS JOIN LATERAL generate_series(r.arrival_date, r.held_until - 1, interval '1 day') n
         WHERE r.held_until > r.arrival_date
         GROUP BY 1, 2, 3),
    blocked AS (
        SELECT b.hotel_id, b.room_type, n.night, sum(n.rooms - n.picked) AS blocked
          FROM booking.blocks b JOIN booking.block_nights n ON n.block_id = b.id
         GROUP BY 1, 2, 3)
    SELECT coalesce(i.hotel_id, h.hotel_id), coalesce(i.room_type, h.room_type), coalesce(i.night, h.night),
           i.total, i.allowance, i.available, coalesce(h.held, 0), coalesce(k.blocked, 0),
           CASE WHEN i.night IS NULL THEN 'held night has no inventory row'
                WHEN i.available < 0 OR i.available > i.total + i.allowance THEN 'available out of range'
                ELSE 'available is not total + allowance - held - blocked' END
      FROM booking.inventory i
      FULL JOIN held h ON h.hotel_id = i.hotel_id AND h.room_type = i.room_type AND h.night = i.night
      LEFT JOIN blocked k ON k.hotel_id = coalesce(i.hotel_id, h.hotel_id) AND k.room_type = coalesce(i.room_type, h.room_type)
                         AND k.night = coalesce(i.night, h.night)
     WHERE i.night IS NULL OR i.available < 0 OR i.available > i.total + i.allowance
        OR i.available <> i.total + i.allowance - coalesce(h.held, 0) - coalesce(k.blocked, 0)
     ORDER BY 1, 2, 3
$$;
COMMENT ON FUNCTION booking.inventory_violations IS 'the hotel invariant checked over the whole database: rows where available <> total + allowance - held - blocked or out of range; empty when all is well';
REVOKE EXECUTE ON FUNCTION booking.inventory_violations() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION booking.inventory_violations() TO booking_admin, booking_auditor;

-- The blocks' own invariant: on every night a block's picked rooms are the
-- group stays drawn from it that hold the night, within the block's rooms.
CREATE FUNCTION booking.block_violations()
RETURNS TABLE (block_id bigint, night date, rooms integer, picked integer, drawn bigint, problem text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT n.block_id, n.night, n.rooms, n.picked, d.drawn,
           CASE WHEN n.picked < 0 OR n.picked > n.rooms OR n.rooms > b.rooms THEN 'picked or rooms out of range'
                ELSE 'picked is not the group stays holding the night' END
      FROM booking.block_nights n
      JOIN booking.blocks b ON b.id = n.block_id
     CROSS JOIN LATERAL (SELECT count(*) AS drawn FROM booking.reservations r
                          WHERE r.block_id = n.block_id AND n.night >= r.arrival_date AND n.night < r.held_until) d
     WHERE n.picked < 0 OR n.picked > n.rooms OR n.rooms > b.rooms OR n.picked <> d.drawn
     ORDER BY 1, 2
$$;
COMMENT ON FUNCTION booking.block_violations IS 'the group blocks'' invariant: nights where picked <> group stays holding the night or picked > rooms; empty when all is well';

-- Occupancy with the allowance and blocks: held stays the rooms held by
-- reservations; allowance and blocked (not picked up) are shown beside the
-- physical total.
CREATE OR REPLACE VIEW booking.analytics_occupancy AS
    SELECT i.hotel_id, h.name AS hotel_name, i.room_type, i.night,
           i.total, (i.total + i.allowance - i.available - coalesce(k.blocked, 0))::integer AS held,
           CASE WHEN i.total > 0
                THEN round(100.0 * (i.total + i.allowance - i.available - coalesce(k.blocked, 0)) / i.total, 1) END AS occupancy_percent,
           i.allowance, coalesce(k.blocked, 0)::integer AS blocked
      FROM booking.inventory i JOIN booking.hotels h ON h.id = i.hotel_id
      LEFT JOIN booking.blocked_nights k ON k.hotel_id = i.hotel_id AND k.room_type = i.room_type AND k.night = i.night;
COMMENT ON VIEW booking.analytics_occupancy IS 'per hotel, room type and night: physical rooms (total), rooms held by reservations (held, may pass total by the allowance), the overbooking allowance and block rooms not picked up';

CREATE OR REPLACE FUNCTION api.analytics_occupancy(hotel_id bigint, "from" text, "to" text) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    nights daterange;
    f date;
    t date;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager', 'auditor');
    nights := booking.parse_nights("from", "to", 366);
    f := lower(nights);
    t := upper(nights) - 1;
    IF NOT EXISTS (SELECT 1 FROM booking.hotels h WHERE h.id = analytics_occupancy.hotel_id) THEN
        PERFORM booking.raise_error(404, 'NOT_FOUND', format('hotel %s not found', hotel_id),
            jsonb_build_object('hotel_id', hotel_id));
    END IF;
    RETURN coalesce((SELECT jsonb_agg(jsonb_build_object('night', o.night, 'room_type', o.room_type,
                                                         'total', o.total, 'held', o.held,
                                                         'occupancy_percent', o.occupancy_percent,
                                                         'allowance', o.allowance, 'blocked', o.blocked)
                                      ORDER BY o.night, o.room_type)
                       FROM booking.analytics_occupancy o
                      WHERE o.hotel_id = analytics_occupancy.hotel_id AND o.night BETWEEN f AND t), '[]');
END
$$;

REVOKE EXECUTE ON FUNCTION booking.allowance_rooms(integer, integer, numeric),
    booking.blocked_rooms(bigint, text, date), booking.reservation_block(), booking.reservation_block_return(),
    api.set_overbooking(bigint, text, integer, numeric), booking.block_json(booking.blocks),
    booking.find_block(bigint, bigint), api.create_block(bigint, text, text, text, text, integer, text),
    api.list_blocks(bigint, integer, integer), api.get_block(bigint, bigint),
    booking.release_block(bigint, text, date), booking.release_blocks(date), api.release_block(bigint, bigint),
    api.create_reservation(bigint, text, text, text, integer, integer, integer, text),
    booking.block_violations() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION booking.allowance_rooms(integer, integer, numeric),
    booking.blocked_rooms(bigint, text, date), booking.block_json(booking.blocks), booking.find_block(bigint, bigint),
    api.set_overbooking(bigint, text, integer, numeric), api.create_block(bigint, text, text, text, text, integer, text),
    api.list_blocks(bigint, integer, integer), api.get_block(bigint, bigint), api.release_block(bigint, bigint),
    api.create_reservation(bigint, text, text, text, integer, integer, integer, text)
  TO booking_api;
GRANT EXECUTE ON FUNCTION booking.block_violations() TO booking_admin, booking_auditor;
GRANT EXECUTE ON FUNCTION booking.blocked_rooms(bigint, text, date) TO booking_grafana;
-- The release writes as the owner: only the roles that may release call it.
GRANT EXECUTE ON FUNCTION booking.release_block(bigint, text, date) TO booking_admin, booking_facility_manager;

INSERT INTO booking.http_routes (method, path, function_name, success_status, operation_id, body_argument, public, event_stream) VALUES
    ('PUT',  '/inventory/{hotel_id}/overbooking',          'set_overbooking', 200, NULL, NULL, false, false),
    ('POST', '/inventory/{hotel_id}/blocks',               'create_block',    201, NULL, NULL, false, false),
    ('GET',  '/inventory/{hotel_id}/blocks',               'list_blocks',     200, NULL, NULL, false, false),
    ('GET',  '/inventory/{hotel_id}/blocks/{id}',          'get_block',       200, NULL, NULL, false, false),
    ('POST', '/inventory/{hotel_id}/blocks/{id}/release',  'release_block',   200, NULL, NULL, false, false);

WITH t(ts, day, id, n, str) AS (
    SELECT '{"type": "string", "format": "date-time"}'::jsonb, '{"type": "string", "format": "date"}'::jsonb,
           '{"type": "integer", "format": "int64"}'::jsonb, '{"type": "integer"}'::jsonb, '{"type": "string"}'::jsonb)
INSERT INTO booking.http_schemas (name, schema)
SELECT v.name, jsonb_build_object('type', 'object', 'description', v.description,
                                  'required', (SELECT jsonb_agg(k ORDER BY k) FROM jsonb_object_keys(v.props) k),
                                  'properties', v.props)
  FROM t, LATERAL (VALUES
    ('Overbooking', 'the overbooking allowance of a room type: rooms, or percent of each night''s total (rounded down), from applies_from on',
     jsonb_build_object('hotel_id', t.id, 'room_type', t.str, 'rooms', t.n || '{"nullable": true}',
                        'percent', '{"type": "number", "nullable": true}'::jsonb, 'applies_from', t.day,
                        'nights', t.n || '{"description": "inventory nights the allowance was applied to"}',
                        'updated_at', t.ts)),
    ('Block', 'a group block (allotment): rooms of a type held on nights from..to for a group code until its release',
     jsonb_build_object('id', t.id, 'hotel_id', t.id, 'room_type', t.str, 'group_code', t.str,
                        'from', t.day, 'to', t.day, 'rooms', t.n, 'release_date', t.day, 'created_at', t.ts,
                        'picked_up', t.n || '{"description": "most rooms picked up on any night"}',
                        'released', jsonb_build_object('type', 'object', 'nullable', true,
                            'required', '["released_at", "source", "as_of", "rooms_returned"]'::jsonb,
                            'properties', jsonb_build_object('released_at', t.ts, 'source', t.str,
                                                             'as_of', t.day || '{"nullable": true}', 'rooms_returned', t.n)),
                        'nights', jsonb_build_object('type', 'array', 'items', jsonb_build_object('type', 'object',
                            'required', '["night", "picked", "rooms"]'::jsonb,
                            'properties', jsonb_build_object('night', t.day, 'rooms', t.n, 'picked', t.n)))))
  ) AS v(name, description, props);
INSERT INTO booking.http_results (function_name, schema)
SELECT f, CASE WHEN many THEN jsonb_build_object('type', 'array', 'items', jsonb_build_object('$ref', '#/components/schemas/' || s))
               ELSE jsonb_build_object('$ref', '#/components/schemas/' || s) END
  FROM (VALUES ('set_overbooking', 'Overbooking', false), ('create_block', 'Block', false),
               ('list_blocks', 'Block', true), ('get_block', 'Block', false), ('release_block', 'Block', false)) AS r(f, s, many);
-- Occupancy nights show the allowance and the block rooms beside the physical total.
UPDATE booking.http_schemas
   SET schema = jsonb_set(jsonb_set(schema, '{properties}', schema -> 'properties'
                          || '{"allowance": {"type": "integer"}, "blocked": {"type": "integer"}}'),
                          '{required}', schema -> 'required' || '["allowance", "blocked"]')
 WHERE name = 'OccupancyNight';

-- ==== calendar feeds: iCalendar of a room and of a user (issue 14) ====
--
-- Any calendar app can show a room's bookings or a user's own, by URL:
-- GET /rooms/{room_id}/calendar.ics and GET /users/me/calendar.ics (bearer
-- token), and GET /calendar/{token}/calendar.ics, whose secret per-user
-- token lets an app subscribe without a bearer header (a calendar app
-- cannot send one).  The answer is RFC 5545 text (text/calendar): the
-- route declares its media type (booking.http_routes.produces, below), the
-- function returns the text, and the adapter sends it as it is.
--
-- One VEVENT per booking: UID booking-<id>@pg_booking, all times in UTC,
-- SUMMARY the title where booking.shows_title lets the reader see it (else
-- "Busy"), STATUS from booking.ics_status, SEQUENCE the booking's revision.
-- A recurring series is one VEVENT (UID series-<uuid>@pg_booking) whose
-- recurrence set is its DTSTART and one RDATE per further occurrence:
-- the rule it was made with (frequency, interval, time zone) is not kept,
-- and occurrences are moved, retitled and cancelled one by one, so the set
-- of dates is the faithful description (RRULE would need the rule stored
-- and a VTIMEZONE).  Cancelled occurrences are EXDATEs; an occurrence that
-- differs from the first one (length, title, status, room) is an override
-- VEVENT with RECURRENCE-ID.  Occurrences skipped at creation were never
-- booked, so they are in no set.

-- SEQUENCE must grow with every change of a booking, whatever writes it
-- (api, psql, the checkout): a counter kept by a trigger, not by the
-- writers.  Named to fire after the other BEFORE UPDATE triggers (they fire
-- in name order), so it sees the row as they left it.
ALTER TABLE booking.bookings ADD COLUMN revision integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN booking.bookings.revision IS 'how many times the row changed (kept by trigger bookings_zz_revision): the SEQUENCE of its calendar entry';

CREATE FUNCTION booking.count_booking_revision() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    -- Whatever the writer put in revision is ignored: only a real change counts.
    NEW.revision := OLD.revision
        + CASE WHEN to_jsonb(NEW) - 'revision' IS DISTINCT FROM to_jsonb(OLD) - 'revision' THEN 1 ELSE 0 END;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION booking.count_booking_revision IS 'trigger: a booking''s revision grows by one with every UPDATE that changes anything else';
CREATE TRIGGER bookings_zz_revision BEFORE UPDATE ON booking.bookings
    FOR EACH ROW EXECUTE FUNCTION booking.count_booking_revision();

-- Who may read a booking's title: its owner, and staff (admin, facility
-- manager, auditor; a superuser in psql).  The one rule of the room
-- schedule and of the feeds; the viewer is an argument because a feed read
-- with a feed token is read as the token's user, not as the anonymous
-- caller.
CREATE FUNCTION booking.shows_title(owner_id bigint, viewer_id bigint, viewer_role text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT coalesce(viewer_role IN ('superuser', 'admin', 'facility_manager', 'auditor') OR owner_id = viewer_id, false) $$;
COMMENT ON FUNCTION booking.shows_title IS 'whether a viewer (id, application role) may read the title of a booking of owner_id: the owner and staff may';

CREATE OR REPLACE FUNCTION booking.room_schedule(room_id bigint, from_ts timestamptz, to_ts timestamptz) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'id', b.id, 'starts_at', b.starts_at, 'ends_at', b.ends_at, 'status', b.status,
               'mine', b.user_id = booking.current_user_id(),
               'title', CASE WHEN booking.shows_title(b.user_id, booking.current_user_id(), booking.current_app_role())
                             THEN b.title END)
             ORDER BY b.starts_at), '[]')
      FROM booking.bookings b
     WHERE b.room_id = room_schedule.room_id AND booking.status_occupies(b.status)
       AND b.starts_at < to_ts AND b.ends_at > from_ts
$$;

-- RFC 5545 3.3.11 TEXT: backslash, semicolon and comma escaped, a line
-- break written \n; other control characters are not allowed in TEXT and
-- are dropped.
CREATE FUNCTION booking.ics_text(value text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT regexp_replace(
               replace(replace(replace(replace(
                   regexp_replace(value, E'\r\n?', E'\n', 'g'),
                   '\', '\\'), ';', '\;'), ',', '\,'), E'\n', '\n'),
               E'[\\x01-\\x08\\x0b-\\x1f\\x7f]', '', 'g')
$$;
COMMENT ON FUNCTION booking.ics_text IS 'a value as iCalendar TEXT (RFC 5545 3.3.11): \\ ; , escaped, line breaks as \n';

-- RFC 5545 3.1: a content line longer than 75 octets is folded, CRLF and
-- one space, never inside a UTF-8 character.
CREATE FUNCTION booking.ics_fold(line text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
    folded text := '';
    rest text := line;
    room_left integer := 75;
    n integer;
BEGIN
    WHILE octet_length(rest) > room_left LOOP
        -- At most room_left characters; fewer while they take more octets.
        n := room_left;
        WHILE octet_length(left(rest, n)) > room_left LOOP
            n := n - greatest(1, (octet_length(left(rest, n)) - room_left) / 4);
        END LOOP;
        folded := folded || left(rest, n) || E'\r\n ';
        rest := substr(rest, n + 1);
        room_left := 74;            -- the leading space is one of the 75
    END LOOP;
    RETURN folded || rest;
END
$$;
COMMENT ON FUNCTION booking.ics_fold IS 'an iCalendar content line folded at 75 octets (RFC 5545 3.1), CRLF between the parts';

CREATE FUNCTION booking.ics_instant(t timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT to_char(t AT TIME ZONE 'UTC', 'YYYYMMDD"T"HH24MISS"Z"') $$;
COMMENT ON FUNCTION booking.ics_instant IS 'an instant as an iCalendar UTC DATE-TIME (19970714T173000Z)';

-- Content lines (NULL ones left out), folded, each ended by CRLF.
CREATE FUNCTION booking.ics_lines(lines text[]) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    -- (Most lines are short: the fold function only for the long ones.)
    SELECT coalesce(string_agg(CASE WHEN octet_length(l) <= 75 THEN l ELSE booking.ics_fold(l) END || E'\r\n', ''
                               ORDER BY n), '')
      FROM unnest(lines) WITH ORDINALITY AS u(l, n)
     WHERE l IS NOT NULL
$$;
COMMENT ON FUNCTION booking.ics_lines IS 'iCalendar content lines, folded, CRLF after each; NULL lines left out';

CREATE FUNCTION booking.ics_vevent(uid text, stamp timestamptz, starts_at timestamptz, ends_at timestamptz,
                                   summary text, location text, status text, sequence integer,
                                   recurrence_id timestamptz DEFAULT NULL, rdates timestamptz[] DEFAULT NULL,
                                   exdates timestamptz[] DEFAULT NULL) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT booking.ics_lines(
        ARRAY['BEGIN:VEVENT', 'UID:' || uid, 'DTSTAMP:' || booking.ics_instant(stamp),
              'RECURRENCE-ID:' || booking.ics_instant(recurrence_id),
              'DTSTART:' || booking.ics_instant(starts_at), 'DTEND:' || booking.ics_instant(ends_at),
              'SUMMARY:' || booking.ics_text(summary), 'LOCATION:' || booking.ics_text(location),
              'STATUS:' || status, 'SEQUENCE:' || sequence]
        || ARRAY(SELECT 'RDATE:' || booking.ics_instant(d) FROM unnest(rdates) d ORDER BY d)
        || ARRAY(SELECT 'EXDATE:' || booking.ics_instant(d) FROM unnest(exdates) d ORDER BY d)
        || ARRAY['END:VEVENT'])
$$;
COMMENT ON FUNCTION booking.ics_vevent IS 'one VEVENT, times in UTC; a series master with RDATE/EXDATE, an override with RECURRENCE-ID';

-- The window of a feed: [from, to), by default from 31 days ago for 400
-- days; at most 400 days (booking.parse_window's rule).
CREATE FUNCTION booking.calendar_window(from_text text, to_text text) RETURNS tstzrange
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    f timestamptz := CASE WHEN from_text IS NULL THEN date_trunc('day', now()) - interval '31 days'
                          ELSE booking.parse_instant(from_text, 'from') END;
BEGIN
    RETURN booking.parse_window(to_json(f) #>> '{}',
                                coalesce(to_text, to_json(f + interval '400 days') #>> '{}'), 400);
END
$$;
COMMENT ON FUNCTION booking.calendar_window IS 'the window [from, to) of a calendar feed: by default 31 days back, 400 days long; at most 400 days; 422';

-- The feed tokens: one per user at most, stored as its SHA-256 only (like
-- refresh tokens), so the table never holds a usable secret.
CREATE TABLE booking.calendar_tokens (
    user_id    bigint PRIMARY KEY REFERENCES booking.users ON DELETE CASCADE,
    token_hash bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE booking.calendar_tokens IS 'each user''s secret calendar feed token, as its SHA-256; read and written only by the api functions';
-- No policy and no grant: only the SECURITY DEFINER api functions touch it.
ALTER TABLE booking.calendar_tokens ENABLE ROW LEVEL SECURITY;
-- Dumped (a restore keeps subscriptions working; a revoked token, being
-- deleted, stays revoked).  The key is the user's: no sequence.
SELECT pg_catalog.pg_extension_config_dump('booking.calendar_tokens', '');

CREATE FUNCTION api.room_calendar(room_id bigint, "from" text DEFAULT NULL, "to" text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r booking.rooms;
    w tstzrange;
BEGIN
    PERFORM booking.require_user();
    r := booking.find_room(room_id);
    w := booking.calendar_window("from", "to");
    RETURN booking.calendar_ics(r.name, r.id, NULL, booking.current_user_id(), booking.current_app_role(), w);
END
$$;
COMMENT ON FUNCTION api.room_calendar IS 'any user: the room''s bookings in [from, to) (default: 31 days back, 400 days) as iCalendar (RFC 5545); titles of others'' bookings hidden as in the schedule; 404, 422';

CREATE FUNCTION api.my_calendar("from" text DEFAULT NULL, "to" text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    uid bigint := booking.require_user();
    w tstzrange := booking.calendar_window("from", "to");
BEGIN
    RETURN booking.calendar_ics('My bookings', NULL, uid, uid, booking.current_app_role(), w);
END
$$;
COMMENT ON FUNCTION api.my_calendar IS 'self: the caller''s bookings in [from, to) (default: 31 days back, 400 days) as iCalendar (RFC 5545); 422';

CREATE FUNCTION api.create_calendar_token() RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    uid bigint := booking.require_user();
    token text := booking.random_token(32);
    t booking.calendar_tokens;
    -- (A value: Citus allows only IMMUTABLE functions in DO UPDATE SET.)
    at timestamptz := now();
BEGIN
    INSERT INTO booking.calendar_tokens AS c (user_id, token_hash, created_at)
    VALUES (uid, sha256(convert_to(token, 'UTF8')), at)
    ON CONFLICT (user_id) DO UPDATE SET token_hash = excluded.token_hash, created_at = at
    RETURNING * INTO t;
    RETURN jsonb_build_object('token', token, 'path', format('/calendar/%s/calendar.ics', token),
                              'created_at', t.created_at);
END
$$;
COMMENT ON FUNCTION api.create_calendar_token IS 'self: a new secret calendar feed token (shown once; any earlier one stops working) and the path of the feed that needs no bearer token';

CREATE FUNCTION api.revoke_calendar_token() RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    uid bigint := booking.require_user();
BEGIN
    DELETE FROM booking.calendar_tokens c WHERE c.user_id = uid;
    IF NOT FOUND THEN
        PERFORM booking.raise_error(404, 'NOT_FOUND', 'you have no calendar feed token');
    END IF;
    RETURN jsonb_build_object('revoked', true);
END
$$;
COMMENT ON FUNCTION api.revoke_calendar_token IS 'self: the calendar feed token stops working at once; 404 NOT_FOUND when there is none';

CREATE FUNCTION api.calendar_feed(token text, "from" text DEFAULT NULL, "to" text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    u booking.users;
    w tstzrange;
BEGIN
    SELECT us.* INTO u
      FROM booking.calendar_tokens c JOIN booking.users us ON us.id = c.user_id
     WHERE c.token_hash = sha256(convert_to(coalesce(token, ''), 'UTF8')) AND us.active;
    IF u.id IS NULL THEN
        -- The same answer for a token never made, revoked, rotated or of a
        -- deactivated user: nothing to learn by trying.
        PERFORM booking.raise_error(404, 'NOT_FOUND', 'calendar feed token is unknown, revoked, or its user is deactivated');
    END IF;
    w := booking.calendar_window("from", "to");
    -- Read as the token's user: their own bookings, titles shown.
    RETURN booking.calendar_ics('My bookings', NULL, u.id, u.id, u.role, w);
END
$$;
COMMENT ON FUNCTION api.calendar_feed IS 'public, with the secret feed token in the path: its user''s bookings as iCalendar, like GET /users/me/calendar.ics; 404 NOT_FOUND for an unknown, revoked or deactivated user''s token';

REVOKE EXECUTE ON FUNCTION booking.count_booking_revision(), booking.shows_title(bigint, bigint, text),
    booking.ics_text(text), booking.ics_fold(text), booking.ics_instant(timestamptz),
    booking.ics_lines(text[]),
    booking.ics_vevent(text, timestamptz, timestamptz, timestamptz, text, text, text, integer, timestamptz, timestamptz[], timestamptz[]),
    booking.calendar_window(text, text),
    api.room_calendar(bigint, text, text), api.my_calendar(text, text), api.create_calendar_token(),
    api.revoke_calendar_token(), api.calendar_feed(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION booking.shows_title(bigint, bigint, text),
    booking.calendar_window(text, text), booking.ics_text(text), booking.ics_fold(text)
  TO booking_api;
GRANT EXECUTE ON FUNCTION api.room_calendar(bigint, text, text), api.my_calendar(text, text),
    api.create_calendar_token(), api.revoke_calendar_token(), api.calendar_feed(text, text, text) TO booking_api;
GRANT EXECUTE ON FUNCTION api.calendar_feed(text, text, text) TO booking_anon;

-- A route may answer something other than JSON: produces is the
-- Content-Type of its success answer (the function then returns text,
-- sent as it is).  Errors stay the JSON envelope.  The adapter reads it
-- with the routes (booking.http_functions) and /openapi.json declares it.
-- (The route checks still pending from the inserts above run first:
-- ALTER TABLE waits for no deferred trigger.)
SET CONSTRAINTS booking.http_route_check IMMEDIATE;
SET CONSTRAINTS booking.http_route_check DEFERRED;
ALTER TABLE booking.http_routes ADD COLUMN produces text NOT NULL DEFAULT 'application/json'
    CHECK (produces ~ '^[a-z]+/[a-z0-9.+-]+(; *[a-z]+=[A-Za-z0-9.-]+)*$');
COMMENT ON COLUMN booking.http_routes.produces IS 'Content-Type of the success answer: application/json (the function''s jsonb), or a text type the function''s text is sent as';

CREATE OR REPLACE VIEW booking.http_functions AS
SELECT p.proname::text AS name,
       p.pronargs AS nargs,
       p.pronargs - p.pronargdefaults AS nrequired,
       coalesce(p.proargnames[1:p.pronargs], '{}') AS argnames,
       coalesce((SELECT array_agg(CASE a.n WHEN 'lim' THEN 'limit' WHEN 'off' THEN 'offset' ELSE a.n END ORDER BY a.o)
                   FROM unnest(p.proargnames[1:p.pronargs]) WITH ORDINALITY AS a(n, o)), '{}') AS http_names,
       coalesce((SELECT array_agg(format_type(t, NULL) ORDER BY o)
                   FROM unnest(p.proargtypes) WITH ORDINALITY AS a(t, o)), '{}') AS argtypes,
       p.provolatile = 'v' AS writes,
       coalesce(obj_description(p.oid, 'pg_proc'), '') AS comment,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                     'method', r.method, 'path', r.path, 'success', r.success_status,
                     'operation_id', coalesce(r.operation_id, r.function_name::text),
                     'body_argument', r.body_argument, 'public', r.public, 'event_stream', r.event_stream,
                     'produces', r.produces)
                   ORDER BY r.path, r.method)
                   FROM booking.http_routes r WHERE r.function_name = p.proname), '[]') AS routes,
       (SELECT x.schema FROM booking.http_results x WHERE x.function_name = p.proname) AS result_schema
  FROM pg_proc p
 WHERE p.pronamespace = (SELECT n.oid FROM pg_namespace n WHERE n.nspname = 'api') AND p.prokind = 'f';

INSERT INTO booking.http_routes (method, path, function_name, success_status, public, produces) VALUES
    ('GET',    '/rooms/{room_id}/calendar.ics',    'room_calendar',         200, false, 'text/calendar; charset=utf-8'),
    ('GET',    '/users/me/calendar.ics',           'my_calendar',           200, false, 'text/calendar; charset=utf-8'),
    ('GET',    '/calendar/{token}/calendar.ics',   'calendar_feed',         200, true,  'text/calendar; charset=utf-8'),
    ('POST',   '/users/me/calendar-token',         'create_calendar_token', 201, false, 'application/json'),
    ('DELETE', '/users/me/calendar-token',         'revoke_calendar_token', 200, false, 'application/json');

INSERT INTO booking.http_schemas (name, schema) VALUES
    ('CalendarToken', '{"type": "object", "description": "a calendar feed token, shown once, and the path of its feed",
                        "required": ["created_at", "path", "token"],
                        "properties": {"token": {"type": "string"}, "path": {"type": "string"},
                                       "created_at": {"type": "string", "format": "date-time"}}}'),
    ('Revoked', '{"type": "object", "description": "the token was revoked", "required": ["revoked"],
                  "properties": {"revoked": {"type": "boolean"}}}');
INSERT INTO booking.http_results (function_name, schema) VALUES
    ('create_calendar_token', '{"$ref": "#/components/schemas/CalendarToken"}'),
    ('revoke_calendar_token', '{"$ref": "#/components/schemas/Revoked"}');
-- ==== the write path: events and counters from C (issue 11) ====
-- A single-row booking insert cost about 3 to 5 times an insert without our
-- triggers.  Most of it was the events trigger (PL/pgSQL, SECURITY DEFINER,
-- and booking_event_payload(), a SQL function the planner cannot inline,
-- called per row) and the counters' SPI UPDATE per statement.  Now:
--   - booking.booking_events() is C (extension/events.c): it reads the
--     transition table row by row, builds each payload as booking_event_payload()
--     does and appends to booking.event_queue directly, in the writer's
--     transaction; a statement of any size is queued without building
--     anything of its size.  The same events, user_id and order as before.
--   - the counter triggers keep their deltas until the end of the top-level
--     statement (extension/analytics.c), so a loop or a batch updates each
--     room's counter row once; they still run in the writer's transaction,
--     follow its subtransactions, and are applied at the latest at commit.
-- The triggers themselves are unchanged (names, events, transition tables).
CREATE OR REPLACE FUNCTION booking.booking_events() RETURNS trigger
AS 'MODULE_PATHNAME', 'pgb_booking_events'
LANGUAGE C;
COMMENT ON FUNCTION booking.booking_events IS 'statement trigger on booking.bookings: queue booking.created / booking.<status> / booking.rescheduled / booking.deleted events in booking.event_queue, in booking id order';

-- ==== booking statuses, holds, approval rooms (issue 14) ====
--
-- A booking can now be tentative: a hold (status held, POST /bookings with
-- hold_minutes) blocks its slot until it is confirmed or its
-- hold_expires_at passes, and a request for a room that requires approval
-- (status pending) blocks it until a facility manager approves or rejects
-- it (or, when the room says so, until it expires the same way).  Each is a
-- rule of the one conflict check, so it holds for every path that writes a
-- booking.  Three definitions, each written once and called everywhere:
--
--   booking.booking_statuses()   every status a booking may have;
--   booking.status_occupies(s)   whether a status may occupy the room: the
--                                predicate of the index the C check scans
--                                (held and pending are in it now);
--   booking.booking_occupies(status, hold_expires_at, at)
--                                whether a booking occupies its room at an
--                                instant: its status may occupy, and it is
--                                not a held or pending booking whose expiry
--                                has passed.  An expired hold blocks nobody,
--                                before any job marks it "expired".
--
-- Readers (availability, schedules, room search, meeting suggestions,
-- people's free time) call booking_occupies with now(), the transaction's
-- timestamp.  The C check (extension/conflicts.c) evaluates the same SQL
-- function, compiled once per backend, at the instant it reads right after
-- taking the room's lock: those instants go in the order of the room's
-- writers, so a hold one writer saw expire is expired for every later one,
-- and the bookings occupying at a writer's instant never overlap (the
-- backward scan relies on that; it steps over bookings that no longer
-- occupy instead of stopping at them).  The background worker marks
-- expired holds and requests "expired" within a minute
-- (booking.expire_holds(), from the checkout worker's minute tick), which
-- writes their event and takes them out of the index.

-- The list is C (extension/booking_rules.c): the CHECK below folds it to a
-- constant whenever a statement prepares its constraints, and as SQL that
-- was a parse and plan of its body per INSERT or UPDATE statement.
CREATE FUNCTION booking.booking_statuses() RETURNS text[]
AS 'MODULE_PATHNAME', 'booking_statuses'
LANGUAGE c IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION booking.booking_statuses IS 'every status a booking may have (README, "Booking statuses")';

CREATE OR REPLACE FUNCTION booking.status_occupies(status text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT status IN ('confirmed', 'completed', 'held', 'pending') $$;
COMMENT ON FUNCTION booking.status_occupies IS 'whether a booking in this status may occupy its room (confirmed, completed, held, pending); held and pending stop at their expiry: booking.booking_occupies';

-- Which occupying statuses end by themselves at hold_expires_at.
CREATE FUNCTION booking.status_expires(status text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT status IN ('held', 'pending') $$;
COMMENT ON FUNCTION booking.status_expires IS 'whether a booking in this status stops occupying at its hold_expires_at (held, pending)';

CREATE FUNCTION booking.booking_occupies(status text, hold_expires_at timestamptz, at timestamptz) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT booking.status_occupies(status)
             AND NOT coalesce(booking.status_expires(status) AND hold_expires_at <= at, false) $$;
COMMENT ON FUNCTION booking.booking_occupies IS 'whether a booking occupies its room at instant at: its status may occupy and, held or pending, its expiry has not passed (the one rule of the conflict check and every reader)';

ALTER TABLE booking.bookings ADD COLUMN hold_expires_at timestamptz;
COMMENT ON COLUMN booking.bookings.hold_expires_at IS
'held (always) or pending (when the room says so): the instant the booking stops occupying its room unless confirmed or approved';
-- 1.0's CHECK named three statuses; the list is booking_statuses() now.
ALTER TABLE booking.bookings DROP CONSTRAINT bookings_status_check,
    ADD CONSTRAINT bookings_status_known CHECK (status = ANY (booking.booking_statuses())),
    ADD CONSTRAINT bookings_hold_expires CHECK (status <> 'held' OR hold_expires_at IS NOT NULL);

-- Every backend caches the index's predicate (inlined): after the function
-- changed, the index is made again, so no backend keeps the old one, and it
-- holds the rows the new predicate admits.  status and hold_expires_at ride
-- along so readers decide booking_occupies from the index alone.
DROP INDEX booking.bookings_room_occupying_idx;
CREATE INDEX bookings_room_occupying_idx ON booking.bookings (room_id, starts_at)
    INCLUDE (ends_at, status, hold_expires_at)
    WHERE booking.status_occupies(status);
-- The worker's look for expired holds and requests.
CREATE INDEX bookings_expiring_idx ON booking.bookings (hold_expires_at) WHERE booking.status_expires(status);

-- The trigger now also fires when only the expiry changes (a hold made to
-- last longer must be checked again).
DROP TRIGGER bookings_conflict_check ON booking.bookings;
CREATE TRIGGER bookings_conflict_check
    BEFORE INSERT OR UPDATE OF room_id, starts_at, ends_at, status, hold_expires_at ON booking.bookings
    FOR EACH ROW EXECUTE FUNCTION booking.check_booking_conflict();
COMMENT ON FUNCTION booking.check_booking_conflict IS 'trigger: refuse a booking that occupies its room (booking.booking_occupies) and clashes with another that does (BOOKING_CONFLICT), or is in an unknown or inactive room';
COMMENT ON FUNCTION booking.booking_conflicts IS 'lock the room until commit and list the bookings occupying it (id, times) that [starts_at, ends_at) would clash with, buffers included; NULL when none';
COMMENT ON TABLE booking.bookings IS 'meeting-room bookings, [starts_at, ends_at) half-open; the ones occupying a room (booking.booking_occupies) never overlap within it';

-- Rooms that require approval, and how long a request waits (NULL: until
-- a manager decides).
ALTER TABLE booking.rooms ADD COLUMN requires_approval boolean NOT NULL DEFAULT false,
    ADD COLUMN approval_expiry_minutes integer,
    ADD CONSTRAINT rooms_approval_expiry_range CHECK (approval_expiry_minutes BETWEEN 1 AND 10080);
COMMENT ON COLUMN booking.rooms.requires_approval IS 'a plain user''s booking of the room is a pending request until a facility manager approves it';
COMMENT ON COLUMN booking.rooms.approval_expiry_minutes IS 'a pending request of the room expires this many minutes after it was made; NULL: it waits for a decision';

CREATE OR REPLACE FUNCTION booking.room_json(r booking.rooms) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object('id', r.id, 'name', r.name, 'location', r.location,
                              'capacity', r.capacity, 'amenities', to_jsonb(r.amenities),
                              'buffer_before_minutes', r.buffer_before_minutes,
                              'buffer_after_minutes', r.buffer_after_minutes,
                              'requires_approval', r.requires_approval,
                              'approval_expiry_minutes', r.approval_expiry_minutes,
                              'active', r.active, 'created_at', r.created_at, 'updated_at', r.updated_at)
$$;

CREATE OR REPLACE FUNCTION booking.booking_json(b booking.bookings) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object('id', b.id, 'room_id', b.room_id, 'user_id', b.user_id, 'title', b.title,
                              'starts_at', b.starts_at, 'ends_at', b.ends_at, 'status', b.status,
                              'hold_expires_at', b.hold_expires_at,
                              'series_id', b.series_id, 'created_at', b.created_at, 'updated_at', b.updated_at)
$$;

-- The readers, as the sections on occupying bookings, suggestions and
-- calendar feeds (room_schedule: booking.shows_title) defined them, with
-- booking_occupies at now() in place of status_occupies
-- (the index still serves them: its predicate is the first half of the rule).
CREATE OR REPLACE FUNCTION booking.rooms_busy(room_ids bigint[], from_ts timestamptz, to_ts timestamptz)
RETURNS TABLE (room_id bigint, busy tstzmultirange)
LANGUAGE sql STABLE
AS $$
    SELECT r.id,
           coalesce((SELECT range_agg(tstzrange(b.starts_at - g.gap, b.ends_at + g.gap))
                       FROM booking.bookings b
                      WHERE b.room_id = r.id AND booking.booking_occupies(b.status, b.hold_expires_at, now())
                        AND b.starts_at < to_ts + interval '480 minutes'
                        AND b.starts_at > from_ts - interval '480 minutes' - booking.max_booking_length()
                        AND b.starts_at < to_ts + g.gap
                        AND b.starts_at > from_ts - g.gap - booking.max_booking_length()
                        AND b.ends_at > from_ts - g.gap), '{}'::tstzmultirange)
      FROM booking.rooms r
     CROSS JOIN LATERAL (SELECT booking.clash_gap(r.buffer_before_minutes, r.buffer_after_minutes) AS gap) g
     WHERE r.id = ANY (room_ids)
$$;

CREATE OR REPLACE FUNCTION booking.users_free(user_ids bigint[], win tstzrange)
RETURNS TABLE (user_id bigint, free tstzmultirange)
LANGUAGE sql STABLE
AS $$
    SELECT u.id,
           coalesce((SELECT range_agg(a.during * win) FROM booking.user_availability a
                      WHERE a.user_id = u.id AND a.during && win), '{}'::tstzmultirange)
         - coalesce((SELECT range_agg(tstzrange(b.starts_at, b.ends_at)) FROM booking.bookings b
                      WHERE b.user_id = u.id AND booking.booking_occupies(b.status, b.hold_expires_at, now())
                        AND b.starts_at < upper(win) AND b.starts_at > lower(win) - booking.max_booking_length()
                        AND b.ends_at > lower(win)), '{}'::tstzmultirange)
      FROM unnest(user_ids) u(id)
$$;

CREATE OR REPLACE FUNCTION booking.room_schedule(room_id bigint, from_ts timestamptz, to_ts timestamptz) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'id', b.id, 'starts_at', b.starts_at, 'ends_at', b.ends_at, 'status', b.status,
               'mine', b.user_id = booking.current_user_id(),
               'title', CASE WHEN booking.shows_title(b.user_id, booking.current_user_id(), booking.current_app_role())
                             THEN b.title END)
             ORDER BY b.starts_at), '[]')
      FROM booking.bookings b
     WHERE b.room_id = room_schedule.room_id AND booking.booking_occupies(b.status, b.hold_expires_at, now())
       AND b.starts_at < to_ts AND b.ends_at > from_ts
$$;

-- A booking the caller may change, locked until commit: 404 when the
-- caller cannot see it (someone else's), 403 when they may only read it
-- (auditors, service accounts), as booking.find_reservation does.
--
-- The row lock names the distribution column too: on Citus (docs/citus.md)
-- a FOR UPDATE must be routed to one shard, and bookings are distributed by
-- room_id.  So the room is read first; should a concurrent move change it
-- before the lock is granted, the locking read finds nothing and the room is
-- read again.  The caller's rights (RLS) apply to both reads.
CREATE FUNCTION booking.lock_booking_row(booking_id bigint) RETURNS booking.bookings
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    b booking.bookings;
    room bigint;
BEGIN
    FOR attempt IN 1..3 LOOP
        SELECT x.room_id INTO room FROM booking.bookings x WHERE x.id = booking_id;
        EXIT WHEN room IS NULL;
        SELECT * INTO b FROM booking.bookings x WHERE x.id = booking_id AND x.room_id = room FOR UPDATE;
        EXIT WHEN b.id IS NOT NULL
               OR NOT EXISTS (SELECT 1 FROM booking.bookings x WHERE x.id = booking_id AND x.room_id <> room);
    END LOOP;
    RETURN b;
END
$$;
COMMENT ON FUNCTION booking.lock_booking_row IS 'the booking, locked FOR UPDATE by id and room (the distribution column on Citus), as the caller may change it; NULL when the caller cannot';

CREATE FUNCTION booking.find_booking_for_update(booking_id bigint) RETURNS booking.bookings
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    b booking.bookings;
BEGIN
    b := booking.lock_booking_row(booking_id);
    IF b.id IS NULL THEN
        PERFORM booking.find_booking(booking_id);       -- 404 when not even readable
        PERFORM booking.raise_error(403, 'FORBIDDEN',
            format('role "%s" may not change booking %s', booking.current_app_role(), booking_id),
            jsonb_build_object('booking_id', booking_id));
    END IF;
    RETURN b;
END
$$;

-- A decision on a tentative booking (confirm a hold; approve or reject a
-- request) needs the booking still awaiting it: in that status, and not
-- past its expiry (booking_occupies says so, as for everyone).
CREATE FUNCTION booking.require_awaiting(b booking.bookings, awaited text, decision text) RETURNS void
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF b.status = 'expired' OR (b.status = awaited AND NOT booking.booking_occupies(b.status, b.hold_expires_at, now())) THEN
        PERFORM booking.raise_error(409, 'HOLD_EXPIRED',
            format('booking %s expired at %s and cannot be %s', b.id, to_json(b.hold_expires_at) #>> '{}', decision),
            jsonb_build_object('booking_id', b.id, 'status', b.status, 'hold_expires_at', b.hold_expires_at),
            'Its slot is free again: book it anew if it still is.');
    END IF;
    IF b.status <> awaited THEN
        PERFORM booking.raise_error(409, 'INVALID_STATE',
            format('booking %s is %s, not %s, and cannot be %s', b.id, b.status, awaited, decision),
            jsonb_build_object('booking_id', b.id, 'status', b.status));
    END IF;
END
$$;

-- POST /bookings gains hold_minutes.  Everything else as before (section
-- "limits that count the work"): a hold is a create like any other, so it
-- is charged to the create_booking and booking_occurrences limits; its
-- minutes are checked before any of that, so a bad value writes nothing and
-- costs nothing.
DROP FUNCTION api.create_booking(bigint, text, text, text, jsonb);
CREATE FUNCTION api.create_booking(room_id bigint, starts_at text, ends_at text, title text,
                                   recurrence jsonb DEFAULT NULL, hold_minutes integer DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    uid bigint := booking.require_user();
    s timestamptz;
    e timestamptz;
    duration interval;
    room booking.rooms;
    b booking.bookings;
    st text := 'confirmed';
    expires timestamptz;
    occurrence timestamptz;
    i integer := 0;
    clash jsonb;
    clashes jsonb := '[]';
    created jsonb := '[]';
    series uuid;
    recurring boolean := recurrence IS NOT NULL AND recurrence <> 'null'::jsonb;
    on_citus boolean;
    refusal jsonb;
BEGIN
    PERFORM booking.require_role('user', 'admin', 'facility_manager', 'moderator', 'service_account');
    PERFORM booking.validate_title(title);
    s := booking.parse_instant(starts_at, 'starts_at');
    e := booking.parse_instant(ends_at, 'ends_at');
    PERFORM booking.validate_booking_times(s, e);
    room := booking.bookable_room(room_id);
    IF hold_minutes IS NOT NULL THEN
        IF hold_minutes NOT BETWEEN 1 AND 60 THEN
            PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
                format('hold_minutes %s is not between 1 and 60', hold_minutes),
                jsonb_build_object('field', 'hold_minutes', 'min', 1, 'max', 60));
        END IF;
        IF recurring THEN
            PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'a hold is one booking: hold_minutes and recurrence do not go together',
                jsonb_build_object('field', 'hold_minutes'));
        END IF;
        IF room.requires_approval THEN
            PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
                format('room %s requires approval: book it without hold_minutes to request it', room_id),
                jsonb_build_object('field', 'hold_minutes', 'room_id', room_id));
        END IF;
        st := 'held';
        expires := now() + make_interval(mins => hold_minutes);
    ELSIF room.requires_approval AND NOT booking.caller_is('admin', 'facility_manager') THEN
        -- Those who approve requests book such a room directly.
        st := 'pending';
        expires := now() + make_interval(mins => room.approval_expiry_minutes);
    END IF;
    PERFORM booking.rate_limit_hit('create_booking');
    -- The work is counted too: every occurrence of a series is one unit of
    -- booking_occurrences, all charged before anything is written.
    PERFORM booking.rate_limit_hit('booking_occurrences',
        CASE WHEN NOT recurring THEN 1
             ELSE (SELECT count(*)::integer FROM booking.recurrence_starts(s, recurrence)) END);

    IF NOT recurring THEN
        -- The trigger checks for clashes and raises BOOKING_CONFLICT.
        INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at, status, hold_expires_at)
        VALUES (room_id, uid, btrim(title), s, e, st, expires) RETURNING * INTO b;
        RETURN booking.booking_json(b);
    END IF;

    -- Recurring: look at every occurrence (the first look locks the room
    -- until commit), book the free ones, and either fail with every clash
    -- listed or report the skipped ones.
    duration := e - s;
    series := gen_random_uuid();
    -- On Citus the room's bookings are on its shard's node, where the look
    -- of booking_conflicts() cannot reach from here (docs/citus.md, finding
    -- 7): each occurrence is inserted in a subtransaction instead, and the
    -- conflict check on the shard, refusing it, names its clashes.
    on_citus := booking.citus_node() IS NOT NULL;
    FOR occurrence IN SELECT * FROM booking.recurrence_starts(s, recurrence) LOOP
        i := i + 1;
        clash := NULL;
        IF NOT on_citus THEN
            clash := booking.booking_conflicts(room_id, occurrence, occurrence + duration);
        END IF;
        IF clash IS NULL AND NOT on_citus THEN
            INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at, series_id, status, hold_expires_at)
            VALUES (room_id, uid, btrim(title), occurrence, occurrence + duration, series, st, expires) RETURNING * INTO b;
            created := created || booking.booking_json(b);
        ELSIF clash IS NULL THEN
            -- (A subtransaction each, on Citus only: one node pays none.)
            BEGIN
                INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at, series_id, status, hold_expires_at)
                VALUES (room_id, uid, btrim(title), occurrence, occurrence + duration, series, st, expires) RETURNING * INTO b;
                created := created || booking.booking_json(b);
            EXCEPTION WHEN SQLSTATE 'PT409' THEN
                GET STACKED DIAGNOSTICS refusal = PG_EXCEPTION_DETAIL;
                IF refusal ->> 'error_code' IS DISTINCT FROM 'BOOKING_CONFLICT' THEN
                    RAISE;
                END IF;
                clash := refusal -> 'conflicts';
            END;
        END IF;
        IF clash IS NOT NULL THEN
            clashes := clashes || jsonb_build_object('occurrence', i, 'starts_at', occurrence,
                                                     'ends_at', occurrence + duration, 'conflicts', clash);
        END IF;
    END LOOP;

    IF jsonb_array_length(clashes) > 0
       AND (coalesce(recurrence ->> 'on_conflict', 'fail') = 'fail' OR jsonb_array_length(created) = 0) THEN
        PERFORM booking.raise_error(409, 'BOOKING_CONFLICT',
            format('%s of %s occurrences clash with existing bookings of room %s',
                   jsonb_array_length(clashes), i, room_id),
            jsonb_build_object('room_id', room_id, 'conflicting_occurrences', clashes),
            CASE WHEN coalesce(recurrence ->> 'on_conflict', 'fail') = 'fail'
                 THEN 'Nothing was booked.  Use "on_conflict": "skip" to book the free occurrences.'
                 ELSE 'Nothing was booked: every occurrence clashes.' END);
    END IF;
    RETURN jsonb_build_object('series_id', series, 'bookings', created, 'skipped', clashes);
END
$$;
COMMENT ON FUNCTION api.create_booking IS 'user+, rate-limited: one booking, or a recurring series (all-or-nothing, or "on_conflict": "skip"); hold_minutes 1..60 makes a hold (status held) to confirm before it expires; in a room that requires approval a plain user''s booking is a pending request; 409 BOOKING_CONFLICT lists every clash, 422 VALIDATION_ERROR';

CREATE FUNCTION api.confirm_booking(id bigint) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    b booking.bookings;
BEGIN
    PERFORM booking.require_user();
    b := booking.find_booking_for_update(id);
    PERFORM booking.require_awaiting(b, 'held', 'confirmed');
    -- The trigger checks the slot again (at its own instant, see above).
    UPDATE booking.bookings x SET status = 'confirmed', hold_expires_at = NULL, updated_at = now()
     WHERE x.id = confirm_booking.id RETURNING * INTO b;
    RETURN booking.booking_json(b);
END
$$;
COMMENT ON FUNCTION api.confirm_booking IS 'owner, admin, facility_manager: a hold becomes confirmed; 409 HOLD_EXPIRED once its hold_expires_at has passed, 409 INVALID_STATE when not held, 404';

-- Approving and rejecting are staff decisions: recorded in the audit trail.
CREATE FUNCTION booking.decide_request(booking_id bigint, new_status text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    b booking.bookings;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager');
    b := booking.find_booking_for_update(booking_id);
    PERFORM booking.require_awaiting(b, 'pending', CASE new_status WHEN 'confirmed' THEN 'approved' ELSE 'rejected' END);
    UPDATE booking.bookings x SET status = new_status, hold_expires_at = NULL, updated_at = now()
     WHERE x.id = booking_id RETURNING * INTO b;
    PERFORM booking.audit(CASE new_status WHEN 'confirmed' THEN 'booking.approve' ELSE 'booking.reject' END,
                          'booking', booking_id::text,
                          jsonb_build_object('status', 'pending'), jsonb_build_object('status', new_status));
    RETURN booking.booking_json(b);
END
$$;

CREATE FUNCTION api.approve_booking(id bigint) RETURNS jsonb
LANGUAGE sql VOLATILE
AS $$ SELECT booking.decide_request(id, 'confirmed') $$;
COMMENT ON FUNCTION api.approve_booking IS 'admin, facility_manager: a pending request becomes confirmed (checked for clashes again); 403 for other roles, 409 HOLD_EXPIRED or INVALID_STATE, 404';

CREATE FUNCTION api.reject_booking(id bigint) RETURNS jsonb
LANGUAGE sql VOLATILE
AS $$ SELECT booking.decide_request(id, 'rejected') $$;
COMMENT ON FUNCTION api.reject_booking IS 'admin, facility_manager: a pending request becomes rejected and frees its slot; 403 for other roles, 409 HOLD_EXPIRED or INVALID_STATE, 404';

CREATE FUNCTION api.list_pending_bookings(room_id bigint DEFAULT NULL, lim integer DEFAULT 50, off integer DEFAULT 0)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager');
    PERFORM booking.check_page(lim, off);
    IF list_pending_bookings.room_id IS NOT NULL THEN
        PERFORM booking.find_room(list_pending_bookings.room_id);
    END IF;
    RETURN coalesce((
        SELECT jsonb_agg(booking.booking_json(x) ORDER BY x.created_at, x.id)
          FROM (SELECT b.* FROM booking.bookings b
                 WHERE b.status = 'pending' AND booking.booking_occupies(b.status, b.hold_expires_at, now())
                   AND (list_pending_bookings.room_id IS NULL OR b.room_id = list_pending_bookings.room_id)
                 ORDER BY b.created_at, b.id LIMIT lim OFFSET off) x), '[]');
END
$$;
COMMENT ON FUNCTION api.list_pending_bookings IS 'admin, facility_manager: the requests awaiting a decision (pending, not expired), oldest first, optionally of one room; 403 for other roles';

CREATE FUNCTION api.set_room_approval(id bigint, requires_approval boolean,
                                      approval_expiry_minutes integer DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r booking.rooms;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager');
    PERFORM booking.find_room(id);
    IF requires_approval IS NULL THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'requires_approval is required',
            jsonb_build_object('field', 'requires_approval'));
    END IF;
    IF approval_expiry_minutes IS NOT NULL AND approval_expiry_minutes NOT BETWEEN 1 AND 10080 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('approval_expiry_minutes %s is not between 1 and 10080 (a week)', approval_expiry_minutes),
            jsonb_build_object('field', 'approval_expiry_minutes', 'min', 1, 'max', 10080));
    END IF;
    UPDATE booking.rooms x
       SET requires_approval = set_room_approval.requires_approval,
           approval_expiry_minutes = set_room_approval.approval_expiry_minutes, updated_at = now()
     WHERE x.id = set_room_approval.id
    RETURNING * INTO r;
    RETURN booking.room_json(r);
END
$$;
COMMENT ON FUNCTION api.set_room_approval IS 'admin, facility_manager: whether plain users'' bookings of the room are requests awaiting approval, and after how many minutes (1..10080, none: never) a request expires; applies to requests made from now on; 404, 422';

-- A hold or a request may be withdrawn like a confirmed booking.
CREATE OR REPLACE FUNCTION api.cancel_booking(id bigint) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    b booking.bookings;
BEGIN
    PERFORM booking.require_user();
    b := booking.find_booking_for_update(id);
    IF b.status IN ('held', 'pending', 'expired') THEN
        PERFORM booking.require_awaiting(b, b.status, 'cancelled');
    ELSIF b.status <> 'confirmed' THEN
        PERFORM booking.raise_error(409, 'INVALID_STATE', format('booking %s is already %s', id, b.status),
            jsonb_build_object('booking_id', id, 'status', b.status));
    END IF;
    UPDATE booking.bookings x SET status = 'cancelled', updated_at = now()
     WHERE x.id = cancel_booking.id RETURNING * INTO b;
    RETURN booking.booking_json(b);
END
$$;
COMMENT ON FUNCTION api.cancel_booking IS 'owner, admin, facility_manager: a confirmed booking, a hold or a request becomes cancelled; 404, 409 INVALID_STATE or HOLD_EXPIRED';

CREATE OR REPLACE FUNCTION api.list_bookings("from" text DEFAULT NULL, "to" text DEFAULT NULL, status text DEFAULT NULL,
                                  room_id bigint DEFAULT NULL, lim integer DEFAULT 50, off integer DEFAULT 0)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    f timestamptz;
    t timestamptz;
BEGIN
    PERFORM booking.require_user();
    PERFORM booking.check_page(lim, off);
    IF "from" IS NOT NULL THEN f := booking.parse_instant("from", 'from'); END IF;
    IF "to" IS NOT NULL THEN t := booking.parse_instant("to", 'to'); END IF;
    IF status IS NOT NULL AND NOT status = ANY (booking.booking_statuses()) THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('status "%s" is not a booking status', status),
            jsonb_build_object('field', 'status'));
    END IF;
    RETURN coalesce((
        SELECT jsonb_agg(booking.booking_json(x) ORDER BY x.starts_at, x.id)
          FROM (SELECT b.* FROM booking.bookings b
                 WHERE (f IS NULL OR b.ends_at > f) AND (t IS NULL OR b.starts_at < t)
                   AND (list_bookings.status IS NULL OR b.status = list_bookings.status)
                   AND (list_bookings.room_id IS NULL OR b.room_id = list_bookings.room_id)
                 ORDER BY b.starts_at, b.id LIMIT lim OFFSET off) x), '[]');
END
$$;

-- The worker's minute tick: every hold and request past its expiry becomes
-- expired (event booking.expired, by the events trigger).  It changes
-- nothing about who may book (booking_occupies already says they are
-- free); it keeps the index small and says so to listeners.  The first two
-- conditions find the candidates on bookings_expiring_idx; the rule decides.
CREATE FUNCTION booking.expire_holds() RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
    -- The instant as a value: Citus refuses a STABLE function inside the
    -- rule's COALESCE in an UPDATE of a distributed table (docs/citus.md).
    at timestamptz := now();
BEGIN
    UPDATE booking.bookings b SET status = 'expired', updated_at = at
     WHERE booking.status_expires(b.status) AND b.hold_expires_at <= at
       AND NOT booking.booking_occupies(b.status, b.hold_expires_at, at);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION booking.expire_holds IS 'mark every held or pending booking past its hold_expires_at expired (the background worker calls it every minute); returns how many';

-- Analytics count every status.  The summary's total was the sum of three
-- counters, so a hold or a request was counted nowhere.  Each status of
-- booking.booking_statuses() now has a counter column of its own, named
-- after it (extension/analytics.c builds its statements from these
-- columns), and the views, the recount and the rebuild read the statuses
-- from booking_statuses().  Existing bookings have none of the new
-- statuses, so the new counters start right at zero.
ALTER TABLE booking.room_booking_counts
    ADD COLUMN held bigint NOT NULL DEFAULT 0, ADD COLUMN pending bigint NOT NULL DEFAULT 0,
    ADD COLUMN released bigint NOT NULL DEFAULT 0, ADD COLUMN expired bigint NOT NULL DEFAULT 0,
    ADD COLUMN rejected bigint NOT NULL DEFAULT 0,
    ADD CONSTRAINT room_booking_counts_statuses_not_negative
        CHECK (held >= 0 AND pending >= 0 AND released >= 0 AND expired >= 0 AND rejected >= 0);
COMMENT ON TABLE booking.room_booking_counts IS 'bookings per room and status (one counter column per status of booking.booking_statuses()), kept exact by the count_bookings triggers; compare with booking.analytics_check()';

CREATE OR REPLACE VIEW booking.analytics_bookings_summary AS
    SELECT coalesce(sum(confirmed + cancelled + completed + held + pending + released + expired + rejected), 0)::bigint AS total,
           coalesce(sum(confirmed), 0)::bigint AS confirmed,
           coalesce(sum(cancelled), 0)::bigint AS cancelled,
           coalesce(sum(completed), 0)::bigint AS completed,
           coalesce(sum(held), 0)::bigint AS held,
           coalesce(sum(pending), 0)::bigint AS pending,
           coalesce(sum(released), 0)::bigint AS released,
           coalesce(sum(expired), 0)::bigint AS expired,
           coalesce(sum(rejected), 0)::bigint AS rejected
      FROM booking.room_booking_counts;

CREATE OR REPLACE VIEW booking.analytics_bookings_by_room AS
    SELECT r.id AS room_id, r.name AS room_name,
           (c.confirmed + c.cancelled + c.completed + c.held + c.pending + c.released + c.expired + c.rejected) AS total,
           c.confirmed, c.cancelled, c.completed, c.held, c.pending, c.released, c.expired, c.rejected
      FROM booking.rooms r JOIN booking.room_booking_counts c ON c.room_id = r.id;

CREATE OR REPLACE VIEW booking.analytics_bookings_per_day AS
    SELECT (b.starts_at AT TIME ZONE 'UTC')::date AS day,
           count(*) AS total,
           count(*) FILTER (WHERE b.status = 'confirmed') AS confirmed,
           count(*) FILTER (WHERE b.status = 'cancelled') AS cancelled,
           count(*) FILTER (WHERE b.status = 'completed') AS completed,
           count(*) FILTER (WHERE b.status = 'held') AS held,
           count(*) FILTER (WHERE b.status = 'pending') AS pending,
           count(*) FILTER (WHERE b.status = 'released') AS released,
           count(*) FILTER (WHERE b.status = 'expired') AS expired,
           count(*) FILTER (WHERE b.status = 'rejected') AS rejected
      FROM booking.bookings b
     GROUP BY 1;

-- booking.analytics_check() and booking.analytics_rebuild() count every status
-- of booking.booking_statuses(): they are defined once, in section "hotel KPIs"
-- (which adds the revenue counters to them).

CREATE OR REPLACE FUNCTION api.analytics_bookings_per_day("from" text, "to" text) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    days daterange;
    f date;
    t date;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager', 'auditor', 'service_account');
    days := booking.parse_nights("from", "to", 366);
    f := lower(days);
    t := upper(days) - 1;
    -- Every day of [from, to], zeros included, so charts have no gaps.
    RETURN (SELECT jsonb_agg(jsonb_build_object('day', d.day, 'total', coalesce(v.total, 0))
                             || (SELECT jsonb_object_agg(s, coalesce((to_jsonb(v) ->> s)::bigint, 0))
                                   FROM unnest(booking.booking_statuses()) s)
                             ORDER BY d.day)
              FROM (SELECT g::date AS day FROM generate_series(f, t, interval '1 day') g) d
              LEFT JOIN (SELECT * FROM booking.analytics_bookings_per_day p WHERE p.day BETWEEN f AND t) v
                     ON v.day = d.day);
END
$$;
COMMENT ON FUNCTION api.analytics_bookings_summary IS 'admin, facility_manager, auditor, service_account: {total, and a count per status: confirmed, cancelled, completed, held, pending, released, expired, rejected}';
COMMENT ON FUNCTION api.analytics_bookings_by_room IS 'admin, facility_manager, auditor, service_account: [{room_id, room_name, total, and a count per status}]';
COMMENT ON FUNCTION api.analytics_bookings_per_day IS 'admin, facility_manager, auditor, service_account: bookings by UTC start day, total and per status, both dates included, at most 366 days';
UPDATE booking.http_schemas s
   SET schema = jsonb_set(jsonb_set(s.schema, '{properties}', s.schema -> 'properties' || v.props),
                          '{required}', (SELECT jsonb_agg(k ORDER BY k)
                                           FROM jsonb_object_keys(s.schema -> 'properties' || v.props) k))
  FROM (SELECT jsonb_object_agg(st, '{"type": "integer"}'::jsonb) AS props
          FROM unnest(booking.booking_statuses()) st) v
 WHERE s.name IN ('BookingCounts', 'RoomBookingCounts');

INSERT INTO booking.http_routes (method, path, function_name, success_status, operation_id, body_argument, public, event_stream) VALUES
    ('POST', '/bookings/{id}/confirm',  'confirm_booking',       200, NULL, NULL, false, false),
    ('POST', '/bookings/{id}/approve',  'approve_booking',       200, NULL, NULL, false, false),
    ('POST', '/bookings/{id}/reject',   'reject_booking',        200, NULL, NULL, false, false),
    ('GET',  '/bookings/pending',       'list_pending_bookings', 200, NULL, NULL, false, false),
    ('PUT',  '/rooms/{id}/approval',    'set_room_approval',     200, NULL, NULL, false, false);
INSERT INTO booking.http_results (function_name, schema) VALUES
    ('confirm_booking', '{"$ref": "#/components/schemas/Booking"}'),
    ('approve_booking', '{"$ref": "#/components/schemas/Booking"}'),
    ('reject_booking', '{"$ref": "#/components/schemas/Booking"}'),
    ('list_pending_bookings', '{"type": "array", "items": {"$ref": "#/components/schemas/Booking"}}'),
    ('set_room_approval', '{"$ref": "#/components/schemas/Room"}');
-- The answers' new members.
UPDATE booking.http_schemas s
   SET schema = jsonb_set(jsonb_set(s.schema, '{properties}', s.schema -> 'properties' || v.props),
                          '{required}', (SELECT jsonb_agg(k ORDER BY k)
                                           FROM jsonb_object_keys(s.schema -> 'properties' || v.props) k))
  FROM (VALUES
    ('Booking', '{"hold_expires_at": {"type": "string", "format": "date-time", "nullable": true,
                  "description": "held or pending: when it stops occupying the room unless confirmed or approved"}}'::jsonb),
    ('Room', '{"requires_approval": {"type": "boolean"},
               "approval_expiry_minutes": {"type": "integer", "nullable": true}}'::jsonb)) AS v(name, props)
 WHERE s.name = v.name;

REVOKE EXECUTE ON FUNCTION booking.booking_statuses(), booking.status_expires(text),
    booking.booking_occupies(text, timestamptz, timestamptz), booking.find_booking_for_update(bigint),
    booking.lock_booking_row(bigint),
    booking.require_awaiting(booking.bookings, text, text), booking.decide_request(bigint, text),
    booking.expire_holds(),
    api.create_booking(bigint, text, text, text, jsonb, integer), api.confirm_booking(bigint),
    api.approve_booking(bigint), api.reject_booking(bigint), api.list_pending_bookings(bigint, integer, integer),
    api.set_room_approval(bigint, boolean, integer)
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION booking.booking_statuses(), booking.status_expires(text),
    booking.booking_occupies(text, timestamptz, timestamptz), booking.find_booking_for_update(bigint),
    booking.lock_booking_row(bigint),
    booking.require_awaiting(booking.bookings, text, text), booking.decide_request(bigint, text),
    api.create_booking(bigint, text, text, text, jsonb, integer), api.confirm_booking(bigint),
    api.approve_booking(bigint), api.reject_booking(bigint), api.list_pending_bookings(bigint, integer, integer),
    api.set_room_approval(bigint, boolean, integer)
  TO booking_api;
-- ==== Citus: the distributed layout (issue 16) ====
-- pg_booking past one primary: booking.distribute() turns an installed
-- single-node database on a Citus coordinator into the layout of
-- docs/citus.md (rooms and what hangs off one room by room id, hotels and
-- their nights by hotel id, small shared tables as reference tables),
-- idempotently and with the data in place.  It lives in the extension, not
-- in a script, because the plan is part of the schema: every release that
-- adds a table says here where it goes (booking.distribution_plan), and
-- t/100_citus.pl distributes the very SQL it tests.  Nothing in it needs
-- Citus at install time (PL/pgSQL resolves Citus's functions when called),
-- so a single-node installation is unchanged; called without Citus it says so.

-- Where every table goes.  method: 'reference' (a full copy on every node),
-- 'hash' (sharded by distribution_column, co-located with colocate_with;
-- 'none' starts a co-location group), or 'local' (stays a plain table on each
-- node: see docs/citus.md for why events, the queue and the audit trail do).
-- Order matters: a table comes after the tables its foreign keys reference.
CREATE FUNCTION booking.distribution_plan()
RETURNS TABLE (step integer, table_name text, method text, distribution_column text, colocate_with text)
LANGUAGE sql IMMUTABLE
AS $$
    SELECT row_number() OVER ()::integer, * FROM (VALUES
        -- reference tables: small, shared, read everywhere (users by every
        -- write's foreign key, currencies by hotels, limiter rules and the
        -- route table by every request)
        ('booking.users',               'reference', NULL,        NULL),
        -- a user's feed token: looked up by its hash alone (GET of a feed
        -- carries only the token), so every node needs every row; one write
        -- per user and rotation
        ('booking.calendar_tokens',     'reference', NULL,        NULL),
        ('booking.currencies',          'reference', NULL,        NULL),
        ('booking.sessions',            'reference', NULL,        NULL),
        ('booking.refresh_tokens',      'reference', NULL,        NULL),
        ('booking.token_cutoffs',       'reference', NULL,        NULL),
        ('booking.user_availability',   'reference', NULL,        NULL),
        ('booking.rate_limits',         'reference', NULL,        NULL),
        ('booking.rate_limits_deleted', 'reference', NULL,        NULL),
        ('booking.checkout_runs',       'reference', NULL,        NULL),
        ('booking.http_routes',         'reference', NULL,        NULL),
        ('booking.http_schemas',        'reference', NULL,        NULL),
        ('booking.http_results',        'reference', NULL,        NULL),
        -- one room and everything that is only about that room
        ('booking.rooms',               'hash',      'id',        'none'),
        ('booking.room_booking_counts', 'hash',      'room_id',   'booking.rooms'),
        ('booking.room_rating_counts',  'hash',      'room_id',   'booking.rooms'),
        ('booking.bookings',            'hash',      'room_id',   'booking.rooms'),
        ('booking.reviews',             'hash',      'room_id',   'booking.rooms'),
        -- a room's queue (section "the waitlist"), next to its bookings
        ('booking.waitlist',            'hash',      'room_id',   'booking.rooms'),
        -- a review's votes and flags name the review only (no room id):
        -- their own group, by review id
        ('booking.review_votes',        'hash',      'review_id', 'none'),
        ('booking.review_flags',        'hash',      'review_id', 'booking.review_votes'),
        -- one hotel and its nights
        ('booking.hotels',              'hash',      'id',        'none'),
        ('booking.inventory',           'hash',      'hotel_id',  'booking.hotels'),
        ('booking.stay_restrictions',   'hash',      'hotel_id',  'booking.hotels'),
        ('booking.rates',               'hash',      'hotel_id',  'booking.hotels'),
        ('booking.reservations',        'hash',      'hotel_id',  'booking.hotels'),
        ('booking.overbooking',         'hash',      'hotel_id',  'booking.hotels'),
        ('booking.revenue_night_counts', 'hash',     'hotel_id',  'booking.hotels'),
        ('booking.extra_person_charges', 'hash',     'hotel_id',  'booking.hotels'),
        -- group blocks: block_nights and block_releases name their block by
        -- id only (no hotel id), so the three form a group of their own, by
        -- block id (docs/citus.md: a hotel id on them would let them join
        -- the hotel group)
        ('booking.blocks',              'hash',      'id',        'none'),
        ('booking.block_nights',        'hash',      'block_id',  'booking.blocks'),
        ('booking.block_releases',      'hash',      'block_id',  'booking.blocks'),
        -- written by triggers of distributed tables: stay on each node
        ('booking.events',              'local',     NULL,        NULL),
        ('booking.event_queue',         'local',     NULL,        NULL),
        ('booking.audit_log',           'local',     NULL,        NULL),
        -- the coordinator's record of the workers' events it gathered
        ('booking.event_sources',       'local',     NULL,        NULL)
    ) AS plan(table_name, method, distribution_column, colocate_with)
$$;
COMMENT ON FUNCTION booking.distribution_plan IS 'where each table goes under Citus (docs/citus.md): reference, hash by a column co-located with a group, or local; in the order booking.distribute() takes them';

-- Replace a unique constraint (or primary key) by one over the same columns
-- plus the distribution column, which Citus requires of every unique
-- constraint of a distributed table.  Idempotent: a key that already has the
-- column is left alone.
CREATE FUNCTION booking.citus_widen_key(tbl regclass, constraint_name text, dist_column text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    con record;
    cols text;
BEGIN
    SELECT c.contype, c.conkey,
           (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.ord)
              FROM unnest(c.conkey) WITH ORDINALITY k(attnum, ord)
              JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum) AS columns
      INTO con
      FROM pg_constraint c WHERE c.conrelid = tbl AND c.conname = constraint_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'constraint % of % not found', constraint_name, tbl;
    END IF;
    IF (SELECT attnum FROM pg_attribute WHERE attrelid = tbl AND attname = dist_column) = ANY (con.conkey) THEN
        RETURN false;
    END IF;
    cols := con.columns || ', ' || quote_ident(dist_column);
    EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I, ADD CONSTRAINT %I %s (%s)', tbl, constraint_name,
                   constraint_name, CASE con.contype WHEN 'p' THEN 'PRIMARY KEY' ELSE 'UNIQUE' END, cols);
    RETURN true;
END
$$;
COMMENT ON FUNCTION booking.citus_widen_key IS 'booking.distribute(): add the distribution column to a primary key or unique constraint (Citus requires it); false when it is there already';

-- What Citus cannot keep as it is (docs/citus.md, findings), changed the
-- same way on the coordinator and on each worker (booking.distribute calls
-- it on every node); idempotent.
CREATE FUNCTION booking.citus_prepare()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k record;
BEGIN
    -- Only before the tables are distributed: DDL on a distributed table
    -- goes to its shards, and would wait for the coordinator's transaction
    -- that called this on a worker.
    IF EXISTS (SELECT FROM pg_dist_partition d
                WHERE d.logicalrelid::text IN (SELECT p.table_name FROM booking.distribution_plan() p)) THEN
        RETURN;
    END IF;
    -- Unique constraints must include the distribution column.
    PERFORM booking.citus_widen_key('booking.bookings', 'bookings_pkey', 'room_id');
    -- Votes and flags reference a review by id alone; a foreign key between
    -- distributed tables must be between co-located ones on the distribution
    -- column, and these cannot carry the review's room.  So the keys go,
    -- and with them ON DELETE CASCADE: deleting a review leaves its votes
    -- and flags behind (docs/citus.md, missing).
    ALTER TABLE booking.review_votes DROP CONSTRAINT IF EXISTS review_votes_review_id_fkey;
    ALTER TABLE booking.review_flags DROP CONSTRAINT IF EXISTS review_flags_review_id_fkey;
    PERFORM booking.citus_widen_key('booking.reviews', 'reviews_pkey', 'room_id');
    -- The waitlist (a later section): its key, and "one entry per booking
    -- made", which becomes one per (room, booking): a booking has one room.
    IF to_regclass('booking.waitlist') IS NOT NULL THEN
        PERFORM booking.citus_widen_key('booking.waitlist', 'waitlist_pkey', 'room_id');
        DROP INDEX IF EXISTS booking.waitlist_booking_key;
        CREATE UNIQUE INDEX waitlist_booking_key ON booking.waitlist (room_id, booking_id) WHERE booking_id IS NOT NULL;
    END IF;
    PERFORM booking.citus_widen_key('booking.reservations', 'reservations_pkey', 'hotel_id');
    -- A group stay names its block by id, and a block its hotel; blocks are
    -- by block id, stays and hotels by hotel: not co-located, so both keys
    -- go (docs/citus.md, missing).
    ALTER TABLE booking.reservations DROP CONSTRAINT IF EXISTS reservations_block_id_fkey;
    ALTER TABLE booking.blocks DROP CONSTRAINT IF EXISTS blocks_hotel_id_fkey;
    -- The checkout history (a reference table) names the hotel of a run
    -- (section "hotels in several time zones"); a reference table cannot
    -- reference a distributed one, so that key goes too.
    ALTER TABLE booking.checkout_runs DROP CONSTRAINT IF EXISTS checkout_runs_hotel_id_fkey;
    -- A group code is unique per hotel: a unique constraint without the
    -- block id cannot be kept on blocks by id.  It becomes a plain index,
    -- enforced by no one (docs/citus.md, missing).
    IF EXISTS (SELECT FROM pg_constraint WHERE conrelid = 'booking.blocks'::regclass AND conname = 'blocks_group_code') THEN
        ALTER TABLE booking.blocks DROP CONSTRAINT blocks_group_code;
        CREATE INDEX blocks_group_code ON booking.blocks (hotel_id, group_code);
    END IF;
    -- A room's name is unique whatever its case: a unique index over an
    -- expression that does not include the distribution column cannot be
    -- kept on a distributed table.  It becomes a plain index; the rule is
    -- then enforced by no one (docs/citus.md, missing).
    IF EXISTS (SELECT FROM pg_index WHERE indexrelid = 'booking.rooms_name_key'::regclass AND indisunique) THEN
        DROP INDEX booking.rooms_name_key;
        CREATE INDEX rooms_name_key ON booking.rooms (lower(name));
    END IF;

    -- Citus plans a query on a distributed table only with its parameters'
    -- values: the price of a stay keeps one generic plan on a single node
    -- (section "extra-person charges", for speed), not under Citus.
    IF to_regprocedure('booking.price_stay(bigint, text, date, integer, jsonb, integer, integer)') IS NOT NULL THEN
        ALTER FUNCTION booking.price_stay(bigint, text, date, integer, jsonb, integer, integer) RESET plan_cache_mode;
    END IF;

    -- The foreign keys between the tables of the plan go first
    -- (booking.distribute re-adds them once every table is distributed,
    -- and then Citus creates each on the shards too).  Distributing a table
    -- that a plain table still references makes Citus convert the
    -- referencing one (and every table connected to it) into a "Citus local
    -- table", which recreates its identity sequence; an extension's
    -- sequence cannot be dropped, so the conversion fails (docs/citus.md).
    FOR k IN
        SELECT c.conrelid::regclass AS tbl, c.conname AS name
          FROM pg_constraint c
         WHERE c.contype = 'f' AND c.conrelid::regclass::text IN (SELECT d.table_name FROM booking.distribution_plan() d WHERE d.method <> 'local')
           AND NOT EXISTS (SELECT FROM pg_dist_partition d WHERE d.logicalrelid = c.conrelid)
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', k.tbl, k.name);
    END LOOP;
END
$$;
COMMENT ON FUNCTION booking.citus_prepare IS 'booking.distribute() on every node: widen the keys Citus needs, drop what it cannot keep (docs/citus.md)';

CREATE FUNCTION booking.distribute()
RETURNS TABLE (table_name text, method text, distribution_column text, colocate_with text, action text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p record;
    t regclass;
    already text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION USING ERRCODE = 'feature_not_supported',
            MESSAGE = 'booking.distribute() needs the citus extension in this database',
            HINT = 'On a Citus coordinator (shared_preload_libraries = ''citus,pg_booking''): CREATE EXTENSION citus, add the workers, then call it; see docs/citus.md.';
    END IF;
    -- The business triggers (conflict check, counters, events, inventory)
    -- run on the shards; Citus refuses to distribute a table with triggers
    -- unless told the triggers are meant to (docs/citus.md, findings).
    PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);

    -- 1. The foreign keys between the tables of the plan go first and come
    -- back at the end (booking.citus_prepare says why); remember them.
    CREATE TEMPORARY TABLE IF NOT EXISTS citus_fkeys (tbl regclass, name text, def text) ON COMMIT DROP;
    INSERT INTO citus_fkeys
    SELECT c.conrelid::regclass, c.conname, pg_get_constraintdef(c.oid)
      FROM pg_constraint c
     WHERE c.contype = 'f' AND c.conrelid::regclass::text IN (SELECT d.table_name FROM booking.distribution_plan() d WHERE d.method <> 'local')
       AND c.conname NOT IN ('review_votes_review_id_fkey', 'review_flags_review_id_fkey', 'reservations_block_id_fkey', 'blocks_hotel_id_fkey',
                           'checkout_runs_hotel_id_fkey')
       AND NOT EXISTS (SELECT FROM pg_dist_partition d WHERE d.logicalrelid = c.conrelid);
    -- 2. What Citus cannot keep as it is, here and on every worker: each
    -- node has the extension's own tables, and those are the tables Citus
    -- makes the workers' shells of, so their definitions must match.
    -- (The workers first: their connections are not this transaction's.)
    FOR p IN SELECT * FROM run_command_on_workers('SELECT booking.citus_prepare()') LOOP
        IF NOT p.success THEN
            RAISE EXCEPTION 'booking.citus_prepare() failed on worker %:%: %', p.nodename, p.nodeport, p.result;
        END IF;
    END LOOP;
    PERFORM booking.citus_prepare();
    -- One transaction creates every shard: sequential, so no statement
    -- meets the parallel connections of an earlier one.
    PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);
    -- The rows already in the tables were checked, counted and announced
    -- when they were written; Citus copies them into the shards, which have
    -- the triggers (and the conflict check would not even find its rooms:
    -- the foreign keys come back only at the end).  Session_replication_role
    -- = replica would not do: the restore's own triggers fire then.  So each
    -- table's triggers are off while it is distributed (Citus creates the
    -- shards' triggers in the state of the table's) and come back as they
    -- were (ENABLE, ENABLE REPLICA, ENABLE ALWAYS) afterwards.
    CREATE TEMPORARY TABLE IF NOT EXISTS citus_triggers (tbl regclass, name text, state "char") ON COMMIT DROP;

    -- 3. The tables, in the plan's order.
    FOR p IN SELECT * FROM booking.distribution_plan() ORDER BY step LOOP
        t := to_regclass(p.table_name);
        table_name := p.table_name;
        method := p.method;
        distribution_column := p.distribution_column;
        colocate_with := p.colocate_with;
        IF t IS NULL THEN
            action := 'missing';
        ELSIF p.method = 'local' THEN
            action := 'local';
        ELSE
            SELECT CASE d.partmethod WHEN 'n' THEN 'reference' WHEN 'h' THEN 'hash' ELSE d.partmethod::text END
              INTO already FROM pg_dist_partition d WHERE d.logicalrelid = t;
            IF already IS NOT NULL THEN
                action := 'already ' || already;
            ELSE
                INSERT INTO citus_triggers
                SELECT t, g.tgname, g.tgenabled FROM pg_trigger g
                 WHERE g.tgrelid = t AND NOT g.tgisinternal AND g.tgenabled <> 'D';
                IF FOUND THEN
                    EXECUTE format('ALTER TABLE %s DISABLE TRIGGER USER', t);
                END IF;
                IF p.method = 'reference' THEN
                    PERFORM create_reference_table(t);
                ELSE
                    PERFORM create_distributed_table(t, p.distribution_column, colocate_with => p.colocate_with);
                END IF;
                action := 'distributed';
            END IF;
            IF action = 'distributed' THEN
                -- The rows are in the shards now; the coordinator's own copy
                -- would only mislead a reader of the local heap.
                PERFORM truncate_local_data_after_distributing_table(t);
            END IF;
        END IF;
        RETURN NEXT;
    END LOOP;
    FOR p IN SELECT * FROM citus_triggers LOOP
        EXECUTE format('ALTER TABLE %s ENABLE %s TRIGGER %I', p.tbl,
                       CASE p.state WHEN 'R' THEN 'REPLICA' WHEN 'A' THEN 'ALWAYS' ELSE '' END, p.name);
    END LOOP;
    DROP TABLE citus_triggers;
    FOR p IN SELECT * FROM citus_fkeys LOOP
        EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s', p.tbl, p.name, p.def);
    END LOOP;
    DROP TABLE citus_fkeys;
    -- 4. Citus reaches the shards as the current role (docs/citus.md,
    -- finding 20): a token's role, which the adapter's login role switches
    -- to, and the dashboards' role must log in on the worker nodes.  Only
    -- there: the coordinator keeps them NOLOGIN.  (pg_hba.conf of a worker
    -- must admit them from the coordinator only.)
    FOR p IN
        SELECT * FROM run_command_on_workers((
            SELECT 'SET citus.enable_ddl_propagation = off; '
                   || string_agg(format('ALTER ROLE %I LOGIN', r.role), '; ' ORDER BY r.role)
              FROM (SELECT x.role FROM booking.http_token_roles x UNION SELECT 'booking_grafana') r))
    LOOP
        IF NOT p.success THEN
            RAISE EXCEPTION 'the api roles could not be let log in on worker %:%: %', p.nodename, p.nodeport, p.result;
        END IF;
    END LOOP;
    -- 5. Tables the plan does not name stay local: say so.
    FOR table_name IN
        SELECT c.oid::regclass::text FROM pg_class c
         WHERE c.relnamespace = 'booking'::regnamespace AND c.relkind IN ('r', 'p')
           AND c.oid::regclass::text NOT IN (SELECT d.table_name FROM booking.distribution_plan() d)
         ORDER BY 1
    LOOP
        method := 'local'; distribution_column := NULL; colocate_with := NULL;
        action := 'not in the plan';
        RAISE WARNING 'booking.distribute(): % is not in booking.distribution_plan(); it stays a local table of this node', table_name;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION booking.distribute IS 'on a Citus coordinator with its workers added: distribute the tables as booking.distribution_plan() says, keys widened where Citus needs it; idempotent, data kept (docs/citus.md)';
-- An operator's act (a superuser's, like CREATE EXTENSION citus): nobody else.
REVOKE ALL ON FUNCTION booking.distribution_plan(), booking.citus_widen_key(regclass, text, text),
    booking.citus_prepare(), booking.distribute() FROM PUBLIC;

-- ==== hotels in several time zones (issue 15) ====
--
-- A chain spans time zones, so "today", the nights that have passed and the
-- night audit are a hotel's own, not one global setting's.  Each hotel has
-- an IANA time zone (hotels.time_zone, the global pg_booking.checkout_time_zone
-- when it is created without one) and may have its own local run time of the
-- checkout (hotels.checkout_time; NULL follows pg_booking.checkout_time).
--
-- One definition of a hotel's today: booking.local_date(instant, zone), the
-- calendar date of an instant in a zone, at now() (the transaction's start)
-- in booking.hotel_time_zone(hotel).  booking.hotel_today(hotel_id) is that;
-- the C trigger (extension/inventory.c, the nights that have passed) calls it
-- through SPI instead of restating it, and every SQL caller that knows its
-- hotel passes it.  booking.hotel_today() (no hotel) is the site's today, the
-- calendar of pg_booking.checkout_time_zone, as in 1.0.
--
-- The nightly checkout runs per calendar: the site's (hotel_id NULL: meeting
-- rooms, at pg_booking.checkout_time in pg_booking.checkout_time_zone) and
-- each hotel's (its stays, at its run time in its zone).  The history has a
-- row per (hotel, business date), unique among the runs that did not fail,
-- so each hotel's date runs exactly once whoever starts it (worker or api),
-- whatever the DST does to the local clock: on a fall-back night the run time
-- comes twice and gives the same date twice (the unique index runs it once);
-- on a spring-forward night a skipped run time falls due when the clocks jump
-- past it (booking.checkout_due_date).  The worker asks booking.checkout_todo()
-- which (hotel, date) pairs are due and runs each once, oldest first; after
-- a hotel's run it releases that hotel's group blocks whose release date has
-- come (booking.release_blocks(hotel_id, date)).  The allowance and block
-- functions of the section above take the hotel's today as well.

ALTER TABLE booking.hotels
    ADD COLUMN time_zone text NOT NULL DEFAULT booking.checkout_time_zone(),
    ADD COLUMN checkout_time time;
COMMENT ON COLUMN booking.hotels.time_zone IS 'IANA time zone of the hotel: its today, its nights and its checkout run time are local to it';
COMMENT ON COLUMN booking.hotels.checkout_time IS 'local time of day of the hotel''s nightly checkout; NULL follows pg_booking.checkout_time';

-- A time zone this server knows: the rule of pg_booking.checkout_time_zone
-- (extension/checkout_worker.c, the setting's check calls the same C
-- function), so a hotel may have every zone the setting may.
CREATE FUNCTION booking.is_time_zone(name text) RETURNS boolean
AS 'MODULE_PATHNAME', 'pgb_is_time_zone'
LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION booking.is_time_zone IS 'whether the server knows this time zone (an IANA name such as "Europe/Berlin"), by the rule of pg_booking.checkout_time_zone';

-- 422 for a zone the server does not know.  The hotels trigger below
-- applies it to every write, so the api and psql obey the same rule.
CREATE FUNCTION booking.validate_time_zone(time_zone text, field text DEFAULT 'time_zone') RETURNS void
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF NOT coalesce(booking.is_time_zone(time_zone), false) THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('%s "%s" is not a time zone known to this server', field, coalesce(time_zone, 'NULL')),
            jsonb_build_object('field', field),
            'Use an IANA name such as "Europe/Berlin" or "Pacific/Honolulu" (pg_timezone_names lists them).');
    END IF;
END
$$;
COMMENT ON FUNCTION booking.validate_time_zone IS 'refuse (422 VALIDATION_ERROR) a name that is not an IANA time zone known to the server';

CREATE FUNCTION booking.hotels_check_time_zone() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM booking.validate_time_zone(NEW.time_zone);
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION booking.hotels_check_time_zone IS 'trigger: a hotel''s time zone is an IANA zone (booking.validate_time_zone), whatever writes it';
CREATE TRIGGER hotels_check_time_zone BEFORE INSERT OR UPDATE OF time_zone ON booking.hotels
    FOR EACH ROW EXECUTE FUNCTION booking.hotels_check_time_zone();

-- A local time of day as the api takes it ("03:00" or "03:00:30"), the
-- format of the pg_booking.checkout_time setting.
CREATE FUNCTION booking.parse_local_time(value text, field text) RETURNS time
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF value IS NULL OR value !~ '^([01]?[0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$' THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('%s "%s" is not a local time of day (HH:MM or HH:MM:SS)', field, coalesce(value, 'NULL')),
            jsonb_build_object('field', field));
    END IF;
    RETURN value::time;
END
$$;

-- The calendar date of an instant in a zone: the one definition every
-- hotel's "today" is made of.
CREATE FUNCTION booking.local_date(at timestamptz, time_zone text) RETURNS date
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT (at AT TIME ZONE time_zone)::date $$;
COMMENT ON FUNCTION booking.local_date IS 'the calendar date of an instant in a time zone';

-- A hotel's zone as stored (NULL: the setting) and the one it is, beside
-- booking.effective_checkout_time; hotel_time_zone and the calendars use it.
CREATE FUNCTION booking.effective_time_zone(stored text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT coalesce(stored, booking.checkout_time_zone()) $$;
COMMENT ON FUNCTION booking.effective_time_zone IS 'a hotel''s time zone: its own, or pg_booking.checkout_time_zone when it has none';
REVOKE EXECUTE ON FUNCTION booking.effective_time_zone(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION booking.effective_time_zone(text) TO booking_api;

-- A hotel's zone; NULL (the site, meeting rooms) is the global setting.
-- As its owner: a hotel's zone is no secret, and readers of the KPI views
-- (Grafana's role among them) need it without reading booking.hotels.
-- PL/pgSQL, not SQL: a SQL function that is not inlined passes its
-- argument as a parameter, which Citus cannot plan on a distributed table.
CREATE FUNCTION booking.hotel_time_zone(hotel_id bigint) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN booking.effective_time_zone((SELECT h.time_zone FROM booking.hotels h WHERE h.id = hotel_time_zone.hotel_id));
END
$$;
COMMENT ON FUNCTION booking.hotel_time_zone IS 'the time zone of a hotel (NULL: the site''s, pg_booking.checkout_time_zone)';

-- A run time as stored (NULL: the setting) and the one it is.
-- (Reading a setting is parallel safe: workers get the leader's settings.)
ALTER FUNCTION booking.checkout_time() PARALLEL SAFE;
ALTER FUNCTION booking.checkout_time_zone() PARALLEL SAFE;
CREATE FUNCTION booking.effective_checkout_time(stored time) RETURNS time
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT coalesce(stored, booking.checkout_time()) $$;
COMMENT ON FUNCTION booking.effective_checkout_time IS 'a hotel''s checkout run time: its own, or pg_booking.checkout_time when it has none';

-- PL/pgSQL for Citus, as booking.hotel_time_zone.
CREATE FUNCTION booking.hotel_checkout_time(hotel_id bigint) RETURNS time
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    RETURN booking.effective_checkout_time((SELECT h.checkout_time FROM booking.hotels h
                                             WHERE h.id = hotel_checkout_time.hotel_id));
END
$$;
COMMENT ON FUNCTION booking.hotel_checkout_time IS 'the local run time of a hotel''s nightly checkout (NULL: the site''s)';

CREATE FUNCTION booking.hotel_today(hotel_id bigint) RETURNS date
LANGUAGE sql STABLE
AS $$ SELECT booking.local_date(now(), booking.hotel_time_zone(hotel_id)) $$;
COMMENT ON FUNCTION booking.hotel_today(bigint) IS 'a hotel''s current date (its local date at the transaction''s start); nights before it have passed';

CREATE OR REPLACE FUNCTION booking.hotel_today() RETURNS date
LANGUAGE sql STABLE
AS $$ SELECT booking.hotel_today(NULL::bigint) $$;
COMMENT ON FUNCTION booking.hotel_today() IS 'the site''s current date (pg_booking.checkout_time_zone); a hotel''s is booking.hotel_today(hotel_id)';

-- Hotels answer with their zone and run time.
CREATE OR REPLACE FUNCTION booking.hotel_json(h booking.hotels) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object('id', h.id, 'name', h.name, 'location', h.location,
                              'time_zone', h.time_zone, 'checkout_time', booking.effective_checkout_time(h.checkout_time),
                              'created_at', h.created_at, 'updated_at', h.updated_at)
        || CASE WHEN h.currency IS NULL AND h.cancel_free_days IS NULL THEN '{}'::jsonb
                ELSE jsonb_build_object('currency', h.currency,
                                        'cancellation_policy', CASE WHEN h.cancel_free_days IS NOT NULL THEN
                                            jsonb_build_object('free_days', h.cancel_free_days, 'penalty', h.cancel_penalty,
                                                               'percent', h.cancel_percent) END) END
$$;

-- A new argument: the old signature goes, so a call by name is never ambiguous.
DROP FUNCTION api.create_hotel(text, text);
CREATE FUNCTION api.create_hotel(name text, location text, time_zone text DEFAULT NULL, checkout_time text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    h booking.hotels;
    t time := CASE WHEN checkout_time IS NOT NULL THEN booking.parse_local_time(checkout_time, 'checkout_time') END;
BEGIN
    PERFORM booking.require_role('admin');
    IF name IS NULL OR length(btrim(name)) NOT BETWEEN 1 AND 200 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'name must have 1 to 200 characters',
            jsonb_build_object('field', 'name'));
    END IF;
    IF location IS NULL OR length(btrim(location)) NOT BETWEEN 1 AND 200 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'location must have 1 to 200 characters',
            jsonb_build_object('field', 'location'));
    END IF;
    -- The zone is checked by the hotels trigger (booking.validate_time_zone).
    INSERT INTO booking.hotels (name, location, time_zone, checkout_time)
    VALUES (btrim(name), btrim(location), coalesce(create_hotel.time_zone, booking.checkout_time_zone()), t)
    RETURNING * INTO h;
    RETURN booking.hotel_json(h);
END
$$;
COMMENT ON FUNCTION api.create_hotel IS 'admin: a hotel, in an IANA time_zone (default: the server''s pg_booking.checkout_time_zone) with an optional local checkout_time; 422 VALIDATION_ERROR';

CREATE FUNCTION api.set_hotel_time_zone(hotel_id bigint, time_zone text DEFAULT NULL, checkout_time text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    h booking.hotels;
    t time;
BEGIN
    PERFORM booking.require_role('admin');
    h := booking.find_hotel(hotel_id);
    IF time_zone IS NULL AND checkout_time IS NULL THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'give time_zone, checkout_time or both',
            jsonb_build_object('field', 'time_zone'));
    END IF;
    IF checkout_time IS NOT NULL AND checkout_time <> 'default' THEN
        t := booking.parse_local_time(checkout_time, 'checkout_time');
    END IF;
    UPDATE booking.hotels x
       SET time_zone = coalesce(set_hotel_time_zone.time_zone, x.time_zone),
           checkout_time = CASE WHEN set_hotel_time_zone.checkout_time IS NULL THEN x.checkout_time ELSE t END,
           updated_at = now()
     WHERE x.id = set_hotel_time_zone.hotel_id
    RETURNING * INTO h;
    RETURN booking.hotel_json(h);
END
$$;
COMMENT ON FUNCTION api.set_hotel_time_zone IS 'admin: a hotel''s IANA time_zone and/or the local checkout_time of its nightly checkout ("default": follow pg_booking.checkout_time); dates already run are not run again; 404, 422';

GRANT UPDATE (time_zone, checkout_time) ON booking.hotels TO booking_admin;

-- Callers that know their hotel use its today.  validate_stay gains the
-- hotel (the old signature, kept for callers without one, is the site's).
CREATE FUNCTION booking.validate_stay(hotel_id bigint, guest_name text, arrival date, stay_length integer,
                                      adults integer, children integer) RETURNS void
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF guest_name IS NULL OR length(btrim(guest_name)) NOT BETWEEN 1 AND 200 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'guest_name must have 1 to 200 characters',
            jsonb_build_object('field', 'guest_name'));
    END IF;
    IF stay_length IS NULL OR stay_length NOT BETWEEN 1 AND 30 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('stay_length %s is out of range', coalesce(stay_length::text, 'NULL')),
            jsonb_build_object('field', 'stay_length', 'min', 1, 'max', 30));
    END IF;
    IF adults IS NULL OR adults < 1 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('adults %s is out of range', coalesce(adults::text, 'NULL')),
            jsonb_build_object('field', 'adults', 'min', 1));
    END IF;
    IF children IS NULL OR children < 0 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('children %s is out of range', coalesce(children::text, 'NULL')),
            jsonb_build_object('field', 'children', 'min', 0));
    END IF;
    IF arrival < booking.hotel_today(hotel_id) AND NOT booking.caller_is('admin', 'facility_manager') THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('arrival_date %s is in the past', to_char(arrival, 'YYYY-MM-DD')),
            jsonb_build_object('field', 'arrival_date'));
    END IF;
END
$$;
COMMENT ON FUNCTION booking.validate_stay(bigint, text, date, integer, integer, integer) IS
'the fields of a stay at a hotel, checked once for create, change and quote; arrival not before the hotel''s today (plain users)';

CREATE OR REPLACE FUNCTION booking.validate_stay(guest_name text, arrival date, stay_length integer,
                                                 adults integer, children integer) RETURNS void
LANGUAGE sql STABLE
AS $$ SELECT booking.validate_stay(NULL::bigint, guest_name, arrival, stay_length, adults, children) $$;

CREATE OR REPLACE FUNCTION api.create_reservation(hotel_id bigint, room_type text, guest_name text, arrival_date text,
                                                  stay_length integer, adults integer DEFAULT 1, children integer DEFAULT 0,
                                                  group_code text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    uid bigint := booking.require_user();
    a date;
    r booking.reservations;
    block bigint;
BEGIN
    PERFORM booking.require_role('user', 'admin', 'facility_manager', 'moderator', 'service_account');
    a := booking.parse_date(arrival_date, 'arrival_date');
    PERFORM booking.validate_room_type(room_type);
    PERFORM booking.find_hotel(hotel_id);
    PERFORM booking.validate_stay(hotel_id, guest_name, a, stay_length, adults, children);
    IF group_code IS NOT NULL THEN
        SELECT b.id INTO block FROM booking.blocks b
         WHERE b.hotel_id = create_reservation.hotel_id AND b.group_code = create_reservation.group_code;
        IF block IS NULL THEN
            PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
                format('hotel %s has no group block "%s"', hotel_id, group_code),
                jsonb_build_object('field', 'group_code', 'hotel_id', hotel_id));
        END IF;
    END IF;
    PERFORM booking.rate_limit_hit('create_reservation');
    -- The triggers draw from the block when it has the rooms (reservations_block),
    -- then take the nights, all or nothing (NO_AVAILABILITY, restrictions).
    INSERT INTO booking.reservations (hotel_id, room_type, user_id, guest_name, arrival_date, stay_length,
                                      adults, children, held_until, block_id)
    VALUES (hotel_id, room_type, uid, btrim(guest_name), a, stay_length, adults, children, a + stay_length, block)
    RETURNING * INTO r;
    RETURN booking.reservation_json(r);
END
$$;

CREATE OR REPLACE FUNCTION api.update_reservation(id uuid, guest_name text DEFAULT NULL, arrival_date text DEFAULT NULL,
                                                  stay_length integer DEFAULT NULL, room_type text DEFAULT NULL,
                                                  adults integer DEFAULT NULL, children integer DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r booking.reservations;
    a date;
    len integer;
BEGIN
    PERFORM booking.require_user();
    PERFORM booking.require_role('user', 'admin', 'facility_manager', 'moderator', 'service_account');
    r := booking.find_reservation(id, true);
    a := CASE WHEN arrival_date IS NULL THEN r.arrival_date ELSE booking.parse_date(arrival_date, 'arrival_date') END;
    len := coalesce(stay_length, r.stay_length);
    IF r.status <> 'confirmed' AND (a <> r.arrival_date OR len <> r.stay_length
                                    OR coalesce(room_type, r.room_type) <> r.room_type) THEN
        PERFORM booking.raise_error(409, 'INVALID_STATE',
            format('reservation %s is %s: its dates and room type can no longer change', id, r.status),
            jsonb_build_object('reservation_id', id, 'status', r.status));
    END IF;
    IF r.status IN ('completed', 'cancelled', 'no_show') THEN
        PERFORM booking.raise_error(409, 'INVALID_STATE', format('reservation %s is %s and cannot be changed', id, r.status),
            jsonb_build_object('reservation_id', id, 'status', r.status));
    END IF;
    IF room_type IS NOT NULL THEN
        PERFORM booking.validate_room_type(room_type);
    END IF;
    PERFORM booking.validate_stay(r.hotel_id, coalesce(guest_name, r.guest_name),
                                  CASE WHEN a <> r.arrival_date THEN a ELSE greatest(a, booking.hotel_today(r.hotel_id)) END,
                                  len, coalesce(adults, r.adults), coalesce(children, r.children));
    UPDATE booking.reservations x
       SET guest_name = coalesce(btrim(update_reservation.guest_name), x.guest_name),
           arrival_date = a, stay_length = len, held_until = a + len,
           room_type = coalesce(update_reservation.room_type, x.room_type),
           adults = coalesce(update_reservation.adults, x.adults),
           children = coalesce(update_reservation.children, x.children),
           updated_at = now()
     WHERE x.id = update_reservation.id AND x.hotel_id = r.hotel_id
    RETURNING * INTO r;
    RETURN booking.reservation_json(r);
END
$$;

CREATE OR REPLACE FUNCTION api.cancel_reservation(id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r booking.reservations;
BEGIN
    PERFORM booking.require_user();
    PERFORM booking.require_role('user', 'admin', 'facility_manager', 'moderator', 'service_account');
    r := booking.find_reservation(id, true);
    IF r.status <> 'confirmed' THEN
        PERFORM booking.raise_error(409, 'INVALID_STATE', format('reservation %s is %s and cannot be cancelled', id, r.status),
            jsonb_build_object('reservation_id', id, 'status', r.status));
    END IF;
    -- Nights already passed at the hotel stay held; the others go back to the
    -- inventory.  (The hotel's day and the hotel named from the locked row:
    -- Citus routes the UPDATE to the hotel's shard, and refuses a STABLE
    -- function of a column in an UPDATE.)
    UPDATE booking.reservations x
       SET status = 'cancelled', updated_at = now(),
           held_until = greatest(x.arrival_date, least(x.held_until, booking.hotel_today(r.hotel_id)))
     WHERE x.id = cancel_reservation.id AND x.hotel_id = r.hotel_id
    RETURNING * INTO r;
    RETURN booking.reservation_json(r);
END
$$;

CREATE OR REPLACE FUNCTION api.check_out(id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r booking.reservations;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager');
    r := booking.find_reservation(id, true);
    IF r.status <> 'checked_in' THEN
        PERFORM booking.raise_error(409, 'INVALID_STATE',
            format('reservation %s is %s and cannot be checked out', id, r.status),
            jsonb_build_object('reservation_id', id, 'status', r.status),
            CASE WHEN r.status = 'confirmed' THEN 'Check the guest in first.' END);
    END IF;
    -- An early departure gives back tonight (the hotel's) and every later night at once.
    UPDATE booking.reservations x
       SET status = 'completed', checked_out_at = now(), updated_at = now(),
           held_until = greatest(x.arrival_date, least(x.held_until, booking.hotel_today(r.hotel_id)))
     WHERE x.id = check_out.id AND x.hotel_id = r.hotel_id RETURNING * INTO r;
    RETURN booking.reservation_json(r);
END
$$;

CREATE OR REPLACE FUNCTION api.quote_reservation(hotel_id bigint, room_type text, arrival_date text, stay_length integer)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    a date;
    p jsonb;
BEGIN
    PERFORM booking.require_user();
    a := booking.parse_date(arrival_date, 'arrival_date');
    PERFORM booking.validate_room_type(room_type);
    IF (booking.find_hotel(hotel_id)).currency IS NULL THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('hotel %s has no prices', hotel_id),
            jsonb_build_object('field', 'hotel_id', 'hotel_id', hotel_id));
    END IF;
    PERFORM booking.validate_stay(hotel_id, 'quote', a, stay_length, 1, 0);
    p := booking.price_stay(hotel_id, room_type, a, stay_length);
    RETURN jsonb_build_object('hotel_id', hotel_id, 'room_type', room_type, 'arrival_date', a,
                              'stay_length', stay_length, 'currency', p -> 'currency',
                              'nightly_prices', p -> 'nights', 'total_amount', p -> 'total');
END
$$;

-- Days before arrival count from the hotel's today.  (PL/pgSQL: Citus
-- cannot plan a SQL function's parameter on a distributed table, here the
-- hotels, when the cancellation trigger runs on a reservations shard.)
CREATE OR REPLACE FUNCTION booking.cancellation_fee(r booking.reservations) RETURNS numeric
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    RETURN (
    SELECT CASE WHEN r.total_amount IS NULL OR h.cancel_free_days IS NULL
                  OR r.arrival_date - booking.hotel_today(r.hotel_id) >= h.cancel_free_days THEN
                    CASE WHEN r.total_amount IS NULL THEN NULL ELSE 0 END
                WHEN h.cancel_penalty = 'first_night' THEN (r.nightly_prices ->> to_char(r.arrival_date, 'YYYY-MM-DD'))::numeric
                ELSE round(r.total_amount * h.cancel_percent / 100, c.minor_units) END
      FROM booking.hotels h LEFT JOIN booking.currencies c ON c.code = r.currency
     WHERE h.id = r.hotel_id);
END
$$;

-- The checkout's history per hotel: hotel_id NULL is the site's run
-- (meeting rooms; every row 1.0 wrote is one).  Once per (hotel, date).
ALTER TABLE booking.checkout_runs ADD COLUMN hotel_id bigint REFERENCES booking.hotels;
COMMENT ON COLUMN booking.checkout_runs.hotel_id IS 'the hotel whose business date this run processed; NULL: the site''s run (meeting rooms)';
DROP INDEX booking.checkout_runs_once_per_day;
CREATE UNIQUE INDEX checkout_runs_once_per_hotel_day ON booking.checkout_runs (hotel_id, business_date) NULLS NOT DISTINCT
    WHERE error IS NULL;
CREATE INDEX checkout_runs_hotel_date_idx ON booking.checkout_runs (hotel_id, business_date);
-- A hotel's run scans its own stays.
CREATE INDEX reservations_hotel_staying_idx ON booking.reservations (hotel_id, departure_date)
    WHERE status IN ('confirmed', 'checked_in');
CREATE INDEX reservations_hotel_released_holding_idx ON booking.reservations (hotel_id, held_until)
    WHERE status IN ('cancelled', 'completed', 'no_show') AND held_until > arrival_date;
DROP INDEX booking.reservations_staying_idx;
DROP INDEX booking.reservations_released_holding_idx;

-- Every calendar the checkout runs: the site's, then each hotel's.
-- Each hotel's row read once, in one statement (Citus runs it over the
-- shards; a function per hotel would query them from there).
CREATE FUNCTION booking.checkout_calendars() RETURNS TABLE (hotel_id bigint, run_time time, time_zone text)
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    RETURN QUERY
    SELECT NULL::bigint, booking.hotel_checkout_time(NULL), booking.hotel_time_zone(NULL)
    UNION ALL
    SELECT h.id, booking.effective_checkout_time(h.checkout_time), booking.effective_time_zone(h.time_zone)
      FROM booking.hotels h;
END
$$;
COMMENT ON FUNCTION booking.checkout_calendars IS 'the site (hotel_id NULL) and every hotel, with the local run time and zone of its checkout';

CREATE FUNCTION booking.checkout_latest_due(hotel_id bigint) RETURNS date
LANGUAGE sql VOLATILE
AS $$
    SELECT booking.checkout_due_date(booking.checkout_clock(), booking.hotel_checkout_time(hotel_id),
                                     booking.hotel_time_zone(hotel_id))
$$;
COMMENT ON FUNCTION booking.checkout_latest_due(bigint) IS 'the latest business date of a hotel (NULL: the site) whose checkout is due now; later dates are refused';

CREATE OR REPLACE FUNCTION booking.checkout_latest_due() RETURNS date
LANGUAGE sql VOLATILE
AS $$ SELECT booking.checkout_latest_due(NULL::bigint) $$;

-- The run of (hotel, date) that did not fail, if any.
CREATE FUNCTION booking.checkout_done_run(hotel_id bigint, d date) RETURNS booking.checkout_runs
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    r booking.checkout_runs;
BEGIN
    IF hotel_id IS NULL THEN
        SELECT * INTO r FROM booking.checkout_runs x WHERE x.hotel_id IS NULL AND x.business_date = d AND x.error IS NULL;
    ELSE
        SELECT * INTO r FROM booking.checkout_runs x
         WHERE x.hotel_id = checkout_done_run.hotel_id AND x.business_date = d AND x.error IS NULL;
    END IF;
    RETURN r;
END
$$;

-- The one door of every run (worker and api), per hotel: refuses a date
-- not yet due on that hotel's calendar before anything is written.
DROP FUNCTION booking.checkout_run(date, text);
DROP FUNCTION booking.checkout_start(date, text);
DROP FUNCTION booking.checkout_failed(date, bigint, text, text);
CREATE FUNCTION booking.checkout_start(hotel_id bigint, d date, source text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r booking.checkout_runs;
    latest date;
BEGIN
    PERFORM booking.require_role('admin');
    IF d IS NULL THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'as_of is required', jsonb_build_object('field', 'as_of'));
    END IF;
    IF hotel_id IS NOT NULL THEN
        PERFORM booking.find_hotel(hotel_id);
    END IF;
    latest := booking.checkout_latest_due(hotel_id);
    IF d > latest THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('business date %s is not due yet', to_char(d, 'YYYY-MM-DD')),
            jsonb_build_object('field', 'as_of', 'as_of', d, 'latest_allowed', latest)
                || CASE WHEN hotel_id IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('hotel_id', hotel_id) END,
            format('The checkout of a date runs once its run time (%s %s) has passed; the latest date due now is %s.',
                   booking.hotel_checkout_time(hotel_id), booking.hotel_time_zone(hotel_id), to_char(latest, 'YYYY-MM-DD')));
    END IF;
    -- Serialise the starters of one date (the worker and a manual run), so
    -- the second sees the first's row instead of failing on the unique index.
    PERFORM booking.checkout_date_lock(d);
    IF hotel_id IS NULL THEN
        SELECT * INTO r FROM booking.checkout_runs x
         WHERE x.hotel_id IS NULL AND x.business_date = d AND x.error IS NULL FOR UPDATE;
    ELSE
        SELECT * INTO r FROM booking.checkout_runs x
         WHERE x.hotel_id = checkout_start.hotel_id AND x.business_date = d AND x.error IS NULL FOR UPDATE;
    END IF;
    IF r.id IS NOT NULL THEN
        RETURN CASE WHEN r.finished_at IS NULL THEN r.id END;
    END IF;
    INSERT INTO booking.checkout_runs (hotel_id, business_date, source) VALUES (hotel_id, d, source) RETURNING * INTO r;
    RETURN r.id;
END
$$;
COMMENT ON FUNCTION booking.checkout_start(bigint, date, text) IS 'start (or resume) the checkout of a hotel''s (NULL: the site''s) business date; NULL when it is done; 422 when not due yet';

-- One batch of a run: a hotel's run handles that hotel's stays, the site's
-- run the meeting-room bookings; the cut-off is the run time of the date in
-- the run's own zone.
-- On Citus every statement names its shard: a hotel's by hotel_id (each
-- of its statements runs on that one shard), the site's bookings by
-- (room_id, id).
CREATE OR REPLACE FUNCTION booking.checkout_batch(run_id bigint, batch_size integer DEFAULT 5000) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d date;
    h bigint;
    cutoff timestamptz;
    release boolean := coalesce(nullif(current_setting('pg_booking.checkout_release_no_shows', true), '')::boolean, false);
    n_completed integer := 0;
    n_no_shows integer := 0;
    n_nights integer := 0;
    n_bookings integer := 0;
    n_released integer := 0;
    n integer;
BEGIN
    PERFORM booking.require_role('admin');
    SELECT x.business_date, x.hotel_id INTO d, h FROM booking.checkout_runs x WHERE x.id = run_id AND x.finished_at IS NULL;
    IF d IS NULL THEN
        PERFORM booking.raise_error(404, 'NOT_FOUND', format('checkout run %s is not in progress', run_id),
            jsonb_build_object('run_id', run_id));
    END IF;
    cutoff := booking.checkout_instant(d, booking.hotel_checkout_time(h), booking.hotel_time_zone(h));

    IF h IS NULL THEN
        -- Meeting-room bookings that ended by the run time.
        -- The batch is found first, then each row is locked by the UPDATE,
        -- which re-checks the conditions on its latest version (no FOR
        -- UPDATE pass, which Citus refuses over several shards); rows are
        -- named by room and id, so on Citus each goes to its room's shard.
        UPDATE booking.bookings b SET status = 'completed', updated_at = now()
         WHERE (b.room_id, b.id) IN (SELECT x.room_id, x.id FROM booking.bookings x
                                      WHERE x.status = 'confirmed' AND x.ends_at <= cutoff
                                      LIMIT batch_size)
           AND b.status = 'confirmed' AND b.ends_at <= cutoff;
        GET DIAGNOSTICS n_bookings = ROW_COUNT;
    ELSE
        -- Departures: every night held has passed, nothing to give back.
        -- The batch is found by row address (a TID scan, so a batch costs
        -- its size), without a FOR UPDATE pass: the UPDATE locks each row
        -- and re-checks the conditions on its latest version.
        UPDATE booking.reservations r SET status = 'completed', updated_at = now(),
               checked_out_at = CASE WHEN r.status = 'checked_in' THEN cutoff ELSE r.checked_out_at END
         WHERE r.ctid = ANY (ARRAY(SELECT x.ctid FROM booking.reservations x
                                    WHERE x.hotel_id = h AND x.status IN ('confirmed', 'checked_in')
                                      AND x.departure_date <= d
                                    LIMIT batch_size))
           AND r.hotel_id = h AND r.status IN ('confirmed', 'checked_in') AND r.departure_date <= d;
        GET DIAGNOSTICS n_completed = ROW_COUNT;

        -- No-shows: the arrival night passed without a check-in.
        IF release THEN
            WITH due AS (SELECT id, held_until FROM booking.reservations
                          WHERE hotel_id = h AND status = 'confirmed' AND arrival_date < d AND departure_date > d
                          LIMIT batch_size FOR UPDATE),
                 upd AS (UPDATE booking.reservations r SET status = 'no_show', updated_at = now(),
                                held_until = greatest(r.arrival_date, least(r.held_until, d))
                           FROM due WHERE r.hotel_id = h AND r.id = due.id
                         RETURNING due.held_until - r.held_until AS returned)
            SELECT count(*), coalesce(sum(returned), 0) INTO n_no_shows, n FROM upd;
            n_nights := n_nights + n;
        END IF;

        -- Stays that no longer stay but still hold nights from d on.
        WITH due AS (SELECT id, held_until FROM booking.reservations
                      WHERE hotel_id = h AND status IN ('cancelled', 'completed', 'no_show')
                        AND held_until > arrival_date AND held_until > d
                      LIMIT batch_size FOR UPDATE),
             upd AS (UPDATE booking.reservations r SET held_until = greatest(r.arrival_date, d), updated_at = now()
                       FROM due WHERE r.hotel_id = h AND r.id = due.id
                     RETURNING due.held_until - r.held_until AS returned)
        SELECT count(*), coalesce(sum(returned), 0) INTO n_released, n FROM upd;
        n_nights := n_nights + n;
    END IF;

    UPDATE booking.checkout_runs
       SET completed_stays = completed_stays + n_completed, no_shows = no_shows + n_no_shows,
           nights_returned = nights_returned + n_nights, completed_bookings = completed_bookings + n_bookings
     WHERE id = run_id;
    RETURN n_completed + n_no_shows + n_released + n_bookings;
END
$$;

-- A failed run: its error is kept, and the date may be run again.
-- The instant a run ends is read first: Citus refuses a volatile function
-- (clock_timestamp()) in an UPDATE of checkout_runs, a reference table.
CREATE FUNCTION booking.checkout_failed(hotel_id bigint, d date, run_id bigint, source text, message text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ended timestamptz := clock_timestamp();
BEGIN
    UPDATE booking.checkout_runs SET finished_at = ended, error = message
     WHERE id = run_id AND finished_at IS NULL;
    IF NOT FOUND THEN
        INSERT INTO booking.checkout_runs (hotel_id, business_date, source, finished_at, error)
        VALUES (hotel_id, d, source, ended, message);
    END IF;
END
$$;

-- The same for the end of a run that went well.
CREATE OR REPLACE FUNCTION booking.checkout_finish(run_id bigint) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ended timestamptz := clock_timestamp();
BEGIN
    UPDATE booking.checkout_runs SET finished_at = ended WHERE id = run_id AND finished_at IS NULL;
END
$$;

-- The whole run of one (hotel, date) in the caller's transaction.
CREATE FUNCTION booking.checkout_run(hotel_id bigint, d date, source text DEFAULT 'manual') RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    run_id bigint := booking.checkout_start(hotel_id, d, source);
BEGIN
    IF run_id IS NULL THEN
        RETURN NULL;
    END IF;
    WHILE booking.checkout_batch(run_id) > 0 LOOP
    END LOOP;
    PERFORM booking.checkout_finish(run_id);
    RETURN run_id;
END
$$;

CREATE OR REPLACE FUNCTION booking.checkout_run_json(r booking.checkout_runs) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object('id', r.id, 'hotel_id', r.hotel_id, 'business_date', r.business_date, 'source', r.source,
                              'started_at', r.started_at, 'finished_at', r.finished_at,
                              'completed_stays', r.completed_stays, 'no_shows', r.no_shows,
                              'nights_returned', r.nights_returned, 'completed_bookings', r.completed_bookings,
                              'error', r.error)
$$;

-- Group blocks are released on their hotel's calendar: the worker calls
-- this after each hotel's run of a business date (NULL hotel: every hotel).
CREATE FUNCTION booking.release_blocks(hotel_id bigint, as_of date) RETURNS integer
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    id bigint;
    n integer := 0;
BEGIN
    FOR id IN SELECT b.id FROM booking.blocks b
               WHERE (release_blocks.hotel_id IS NULL OR b.hotel_id = release_blocks.hotel_id)
                 AND b.release_date <= as_of
                 AND NOT EXISTS (SELECT 1 FROM booking.block_releases r WHERE r.block_id = b.id)
               ORDER BY b.id
    LOOP
        IF booking.release_block(id, 'worker', as_of) IS NOT NULL THEN
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION booking.release_blocks(bigint, date) IS 'release every block of a hotel (NULL: of every hotel) whose release date is on or before as_of (the checkout worker, after the hotel''s run of that date); the number released';

CREATE OR REPLACE FUNCTION booking.release_blocks(as_of date) RETURNS integer
LANGUAGE sql VOLATILE
AS $$ SELECT booking.release_blocks(NULL::bigint, as_of) $$;

-- What the worker runs now: every (calendar, date) due at "at" and not yet
-- recorded, from the date after the last one recorded (finished or failed;
-- a run interrupted unfinished is resumed), or the date due when a calendar
-- has no history; oldest instant first.  And when the next date falls due.
-- PL/pgSQL with the instant as a literal, and the runs joined rather than
-- a correlated subquery per calendar: Citus plans neither a SQL function's
-- parameters nor that subquery over checkout_runs (a reference table).
CREATE FUNCTION booking.checkout_todo(at timestamptz)
RETURNS TABLE (hotel_id bigint, business_date date, due_at timestamptz)
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    RETURN QUERY EXECUTE format($q$
    WITH c AS (
        SELECT c.hotel_id, c.run_time, c.time_zone, booking.checkout_due_date(%L::timestamptz, c.run_time, c.time_zone) AS due
          FROM booking.checkout_calendars() c
    ), f AS (
        SELECT c.hotel_id, c.run_time, c.time_zone, c.due,
               coalesce(max(r.business_date) FILTER (WHERE r.business_date <= c.due) + 1, c.due) AS first
          FROM c
          LEFT JOIN booking.checkout_runs r
            ON coalesce(r.hotel_id, 0) = coalesce(c.hotel_id, 0) AND r.finished_at IS NOT NULL
         GROUP BY 1, 2, 3, 4
    )
    SELECT f.hotel_id, d::date, booking.checkout_instant(d::date, f.run_time, f.time_zone)
      FROM f CROSS JOIN LATERAL generate_series(f.first, f.due, interval '1 day') d
     ORDER BY 3, 1 NULLS FIRST, 2$q$, at);
END
$$;
COMMENT ON FUNCTION booking.checkout_todo IS 'the (hotel, business date) runs due at an instant and not yet recorded, oldest first (hotel_id NULL: the site''s run)';

CREATE FUNCTION booking.checkout_next_due(at timestamptz) RETURNS timestamptz
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    next_at timestamptz;
BEGIN
    EXECUTE format($q$
    SELECT min(booking.checkout_instant(booking.checkout_due_date(%1$L::timestamptz, c.run_time, c.time_zone) + 1,
                                        c.run_time, c.time_zone))
      FROM booking.checkout_calendars() c$q$, at) INTO next_at;
    RETURN next_at;
END
$$;
COMMENT ON FUNCTION booking.checkout_next_due IS 'the instant after "at" at which the next business date of some hotel (or the site) falls due';

-- The api: one hotel's date, or (no hotel_id) the site's date and that date
-- at every hotel where it is due (those where it is not yet are named).
DROP FUNCTION api.run_checkout(text);
CREATE FUNCTION api.run_checkout(as_of text DEFAULT NULL, hotel_id bigint DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    d date;
    run_id bigint;
    started boolean;
    h bigint;
    not_due bigint[] := '{}';
    r booking.checkout_runs;
    sums jsonb;
BEGIN
    PERFORM booking.require_role('admin');
    IF hotel_id IS NOT NULL THEN
        PERFORM booking.find_hotel(hotel_id);
    END IF;
    d := CASE WHEN as_of IS NULL THEN booking.checkout_latest_due(hotel_id)
              ELSE booking.parse_date(as_of, 'as_of') END;
    run_id := booking.checkout_run(hotel_id, d, 'manual');
    started := run_id IS NOT NULL;
    IF hotel_id IS NOT NULL THEN
        PERFORM booking.audit('checkout.run', 'checkout', hotel_id || '/' || d, NULL,
            jsonb_build_object('hotel_id', hotel_id, 'business_date', d, 'run_id', run_id, 'already_done', run_id IS NULL));
        r := booking.checkout_done_run(hotel_id, d);
        RETURN booking.checkout_run_json(r) || jsonb_build_object('already_done', NOT started);
    END IF;
    FOR h IN SELECT x.id FROM booking.hotels x ORDER BY x.id LOOP
        IF d <= booking.checkout_latest_due(h) THEN
            started := booking.checkout_run(h, d, 'manual') IS NOT NULL OR started;
        ELSE
            not_due := not_due || h;
        END IF;
    END LOOP;
    PERFORM booking.audit('checkout.run', 'checkout', d::text, NULL,
        jsonb_build_object('business_date', d, 'run_id', run_id, 'already_done', NOT started));
    r := booking.checkout_done_run(NULL, d);
    SELECT jsonb_build_object('completed_stays', sum(x.completed_stays), 'no_shows', sum(x.no_shows),
                              'nights_returned', sum(x.nights_returned), 'completed_bookings', sum(x.completed_bookings),
                              'hotel_runs', count(x.hotel_id))
      INTO sums FROM booking.checkout_runs x WHERE x.business_date = d AND x.error IS NULL;
    RETURN booking.checkout_run_json(r) || sums
        || jsonb_build_object('already_done', NOT started, 'hotels_not_due', to_jsonb(not_due));
END
$$;
COMMENT ON FUNCTION api.run_checkout IS 'admin: run the nightly checkout of a business date (default: the latest due) for one hotel, or for the site and each hotel where it is due; the answer counts all of that date''s runs; a later date is refused with 422; idempotent, a date done is not run again';

-- The exporter reads the site's calendar, as before.
CREATE OR REPLACE FUNCTION booking.metrics_checkout()
RETURNS TABLE (last_success_timestamp_seconds double precision, last_business_date text,
               lag_seconds double precision, last_run_failed integer, failed_runs_total bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH done AS (
        SELECT max(finished_at) AS finished_at, max(business_date) AS business_date
          FROM booking.checkout_runs WHERE error IS NULL AND finished_at IS NOT NULL AND hotel_id IS NULL
    ), due AS (
        SELECT booking.checkout_due_date(now(), booking.checkout_time(), booking.checkout_time_zone()) AS d
    ), todo AS (
        SELECT coalesce(done.business_date + 1, due.d) AS d FROM done, due
    )
    SELECT extract(epoch FROM coalesce(done.finished_at, pg_postmaster_start_time()))::double precision,
           coalesce(done.business_date::text, ''),
           CASE WHEN todo.d > due.d THEN 0
                ELSE greatest(0, extract(epoch FROM now() - booking.checkout_instant(todo.d, booking.checkout_time(),
                                                                                     booking.checkout_time_zone())))
           END::double precision,
           coalesce((SELECT (l.error IS NOT NULL)::integer FROM booking.checkout_runs l ORDER BY l.id DESC LIMIT 1), 0),
           (SELECT count(*) FROM booking.checkout_runs f WHERE f.error IS NOT NULL)
      FROM done, due, todo
$$;

-- Schemas of the answers: hotels carry their zone and run time, runs their hotel.
UPDATE booking.http_schemas s
   SET schema = jsonb_set(jsonb_set(s.schema, '{properties}', s.schema -> 'properties'
                    || '{"time_zone": {"type": "string", "description": "IANA time zone"},
                         "checkout_time": {"type": "string", "description": "local time of the nightly checkout, HH:MM:SS"}}'),
                '{required}', (s.schema -> 'required') || '["checkout_time", "time_zone"]')
 WHERE s.name = 'Hotel';
UPDATE booking.http_schemas s
   SET schema = jsonb_set(jsonb_set(s.schema, '{properties}', s.schema -> 'properties'
                    || '{"hotel_id": {"type": "integer", "nullable": true, "description": "the hotel; null: the site''s run (meeting rooms)"}}'),
                '{required}', (s.schema -> 'required') || '["hotel_id"]')
 WHERE s.name = 'CheckoutRun';

REVOKE EXECUTE ON FUNCTION booking.is_time_zone(text), booking.validate_time_zone(text, text), booking.hotels_check_time_zone(),
    booking.parse_local_time(text, text), booking.local_date(timestamptz, text), booking.hotel_time_zone(bigint),
    booking.effective_checkout_time(time), booking.hotel_checkout_time(bigint), booking.hotel_today(bigint),
    booking.validate_stay(bigint, text, date, integer, integer, integer),
    booking.checkout_calendars(), booking.checkout_latest_due(bigint), booking.checkout_done_run(bigint, date),
    booking.checkout_start(bigint, date, text), booking.checkout_failed(bigint, date, bigint, text, text),
    booking.checkout_run(bigint, date, text), booking.checkout_todo(timestamptz), booking.checkout_next_due(timestamptz),
    booking.release_blocks(bigint, date),
    api.create_hotel(text, text, text, text), api.set_hotel_time_zone(bigint, text, text),
    api.run_checkout(text, bigint) FROM PUBLIC;
-- A hotel's zone and run time fall back on the settings, read by every caller.
GRANT EXECUTE ON FUNCTION booking.checkout_time(), booking.checkout_time_zone() TO booking_api;
GRANT EXECUTE ON FUNCTION booking.is_time_zone(text), booking.validate_time_zone(text, text), booking.parse_local_time(text, text),
    booking.local_date(timestamptz, text), booking.hotel_time_zone(bigint), booking.effective_checkout_time(time),
    booking.hotel_checkout_time(bigint), booking.hotel_today(bigint),
    booking.validate_stay(bigint, text, date, integer, integer, integer),
    api.create_hotel(text, text, text, text), api.set_hotel_time_zone(bigint, text, text), api.run_checkout(text, bigint)
  TO booking_api;
GRANT EXECUTE ON FUNCTION booking.checkout_calendars(), booking.checkout_latest_due(bigint),
    booking.checkout_done_run(bigint, date), booking.checkout_start(bigint, date, text),
    booking.checkout_run(bigint, date, text), booking.checkout_todo(timestamptz), booking.checkout_next_due(timestamptz)
  TO booking_admin;

INSERT INTO booking.http_routes (method, path, function_name, success_status, operation_id, body_argument, public, event_stream) VALUES
    ('PUT', '/hotels/{hotel_id}/time-zone', 'set_hotel_time_zone', 200, NULL, NULL, false, false);
INSERT INTO booking.http_results (function_name, schema)
VALUES ('set_hotel_time_zone', '{"$ref": "#/components/schemas/Hotel"}');

-- ==== hotel KPIs: pickup, booking lead time, stay rates, the revenue dashboard (issue 15) ====
--
-- The KPIs a revenue manager reads beside occupancy, ADR and RevPAR (section
-- "revenue" above), as views the "Hotel revenue" Grafana dashboard reads as
-- booking_grafana, and analytics routes (admin, facility_manager, auditor).
--
-- Days.  A reservation was made on the calendar day of its created_at and
-- cancelled on the day of its cancelled_at, on the hotel's calendar:
-- booking.kpi_day is the one place that says which calendar (the hotel's
-- time zone, as booking.hotel_today(hotel_id)).
--
-- Pickup (booking.hotel_pickup): the rooms on the books for a night as of N
-- days before it, i.e. at the end of the day night - N: the reservations of
-- the room type whose stay [arrival_date, departure_date) contains the night,
-- made on or before that day and not cancelled by then (cancelled later, or
-- not at all).  A reservation counts with the dates and room type it has now:
-- a change of dates is not replayed (the row keeps no history of its dates);
-- a no-show or a stay checked out early counts, as it was booked on that
-- day.  A day that has not come yet (night - N after today) has no figure.
-- N is one of booking.pickup_days.  cancelled_at is new: a trigger sets it
-- when the status becomes cancelled; stays cancelled before the upgrade take
-- the time of their reservation.cancelled event, else their last update.
--
-- Lead time (booking.hotel_lead_time): arrival_date - the day the
-- reservation was made, counted in the buckets of booking.lead_time_buckets;
-- a stay entered on or after its arrival day (a walk-in, a late entry) is
-- in bucket "0".  Every reservation counts, cancelled ones too (they are
-- also counted apart).
--
-- Stay rates (booking.hotel_stays per hotel and arrival day, summed over any
-- window; booking.stay_rates_json makes the rates, for the kpis route too):
-- cancellation rate = cancelled / reservations, no-show rate = no-shows /
-- reservations not cancelled, ALOS = nights of the stays sold (confirmed,
-- checked in, completed) / stays sold, and the cancellation fees charged.

ALTER TABLE booking.reservations ADD COLUMN cancelled_at timestamptz;
COMMENT ON COLUMN booking.reservations.cancelled_at IS 'when the stay was cancelled (set by trigger when the status becomes cancelled; NULL otherwise)';
UPDATE booking.reservations r
   SET cancelled_at = coalesce((SELECT min(e.at) FROM (SELECT x.at FROM booking.events x
                                                        WHERE x.entity = 'reservation' AND x.entity_id = r.id::text
                                                          AND x.kind = 'reservation.cancelled'
                                                       UNION ALL
                                                       SELECT q.at FROM booking.event_queue q
                                                        WHERE q.entity = 'reservation' AND q.entity_id = r.id::text
                                                          AND q.kind = 'reservation.cancelled') e),
                               r.updated_at)
 WHERE r.status = 'cancelled';

CREATE FUNCTION booking.reservation_cancelled_at() RETURNS trigger
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF NEW.status <> 'cancelled' THEN
        NEW.cancelled_at := NULL;
    ELSIF TG_OP = 'UPDATE' AND OLD.status = 'cancelled' THEN
        NEW.cancelled_at := OLD.cancelled_at;
    ELSE
        NEW.cancelled_at := now();
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION booking.reservation_cancelled_at IS 'trigger: cancelled_at is the time the status became cancelled, written here only';
-- The WHEN clauses keep every other write (a new confirmed stay, the
-- checkout's completions and no-shows) from calling PL/pgSQL.
CREATE TRIGGER reservations_cancelled_at
    BEFORE INSERT ON booking.reservations
    FOR EACH ROW WHEN (NEW.status = 'cancelled' OR NEW.cancelled_at IS NOT NULL)
    EXECUTE FUNCTION booking.reservation_cancelled_at();
CREATE TRIGGER reservations_cancelled_at_change
    BEFORE UPDATE OF status, cancelled_at ON booking.reservations
    FOR EACH ROW WHEN ((NEW.status = 'cancelled') <> (OLD.status = 'cancelled')
                       OR NEW.cancelled_at IS DISTINCT FROM OLD.cancelled_at)
    EXECUTE FUNCTION booking.reservation_cancelled_at();

-- The hotel's time_zone column is given, not its id: the views join the
-- hotel anyway, and on Citus a look-up of the hotel from inside a query
-- pushed down to a shard is a nested distributed query, which Citus refuses
-- (docs/citus.md).
CREATE FUNCTION booking.kpi_day(stored_time_zone text, at timestamptz) RETURNS date
LANGUAGE sql STABLE
AS $$ SELECT booking.local_date(at, booking.effective_time_zone(stored_time_zone)) $$;
COMMENT ON FUNCTION booking.kpi_day IS 'the hotel''s calendar day of an instant (when a stay was made or cancelled), given its hotels.time_zone (NULL: the site''s): the calendar of booking.hotel_today(hotel_id)';

CREATE VIEW booking.pickup_days (days_before) AS VALUES (0), (1), (3), (7), (14), (30), (60), (90);
COMMENT ON VIEW booking.pickup_days IS 'the N of "rooms on the books N days before the night" that booking.hotel_pickup reports';

CREATE VIEW booking.hotel_pickup AS
SELECT i.hotel_id, h.name AS hotel_name, i.room_type, i.night, p.days_before, i.night - p.days_before AS as_of,
       i.total AS rooms_available,
       (SELECT count(*) FROM booking.reservations r
         WHERE r.hotel_id = i.hotel_id AND r.room_type = i.room_type
           AND r.arrival_date <= i.night AND r.arrival_date > i.night - 30   -- stays last 30 nights at most
           AND i.night < r.departure_date
           AND booking.kpi_day(h.time_zone, r.created_at) <= i.night - p.days_before
           AND (r.status <> 'cancelled' OR booking.kpi_day(h.time_zone, r.cancelled_at) > i.night - p.days_before)
       ) AS rooms_on_books
  FROM booking.inventory i
  JOIN booking.hotels h ON h.id = i.hotel_id
 CROSS JOIN booking.pickup_days p
 WHERE i.night - p.days_before <= booking.kpi_day(h.time_zone, now());
COMMENT ON VIEW booking.hotel_pickup IS 'rooms on the books per hotel, room type and night at the end of the day days_before before it (as_of, up to today)';

CREATE VIEW booking.lead_time_buckets (bucket_order, bucket, min_days, max_days) AS
VALUES (1, '0', NULL::integer, 0), (2, '1-3', 1, 3), (3, '4-7', 4, 7), (4, '8-14', 8, 14),
       (5, '15-30', 15, 30), (6, '31-90', 31, 90), (7, '91+', 91, NULL::integer);
COMMENT ON VIEW booking.lead_time_buckets IS 'booking lead time buckets, days from the day a stay was made to its arrival (both bounds included; NULL: open)';

CREATE VIEW booking.hotel_lead_time AS
SELECT r.hotel_id, h.name AS hotel_name, r.arrival_date, b.bucket_order, b.bucket, b.min_days, b.max_days,
       count(*) AS reservations, count(*) FILTER (WHERE r.status = 'cancelled') AS cancelled,
       sum(l.days) AS lead_days
  FROM booking.reservations r
  JOIN booking.hotels h ON h.id = r.hotel_id
 CROSS JOIN LATERAL (SELECT r.arrival_date - booking.kpi_day(h.time_zone, r.created_at) AS days) l
  JOIN booking.lead_time_buckets b ON (b.min_days IS NULL OR l.days >= b.min_days) AND (b.max_days IS NULL OR l.days <= b.max_days)
 GROUP BY r.hotel_id, h.name, r.arrival_date, b.bucket_order, b.bucket, b.min_days, b.max_days;
COMMENT ON VIEW booking.hotel_lead_time IS 'reservations per hotel, arrival day and lead time bucket (cancelled ones included and counted apart; lead_days: their sum)';

CREATE VIEW booking.hotel_stays AS
SELECT r.hotel_id, h.name AS hotel_name, h.currency, r.arrival_date, count(*) AS reservations,
       count(*) FILTER (WHERE r.status = 'cancelled') AS cancelled,
       count(*) FILTER (WHERE r.status = 'no_show') AS no_shows,
       count(*) FILTER (WHERE booking.reservation_sells(r.status)) AS sold,
       coalesce(sum(r.stay_length) FILTER (WHERE booking.reservation_sells(r.status)), 0) AS sold_nights,
       coalesce(sum(r.cancellation_fee), 0) AS cancellation_fees
  FROM booking.reservations r
  JOIN booking.hotels h ON h.id = r.hotel_id
 GROUP BY r.hotel_id, h.name, h.currency, r.arrival_date;
COMMENT ON VIEW booking.hotel_stays IS 'reservations per hotel and arrival day: all, cancelled, no-shows, sold, nights sold, cancellation fees (sum over a window, then booking.stay_rates_json)';

CREATE FUNCTION booking.stay_rates_json(reservations numeric, cancelled numeric, no_shows numeric,
                                        sold numeric, sold_nights numeric) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object('reservations', reservations,
                              'cancellation_rate_pct', round(100.0 * cancelled / nullif(reservations, 0), 2),
                              'no_show_rate_pct', round(100.0 * no_shows / nullif(reservations - cancelled, 0), 2),
                              'alos', round(sold_nights / nullif(sold, 0), 2))
$$;
COMMENT ON FUNCTION booking.stay_rates_json IS 'cancellation rate (of all), no-show rate (of those not cancelled), ALOS (nights per stay sold) of a set of reservations';

-- Revenue per hotel, room type and night with the hotel's name and currency,
-- and per hotel and night with its KPIs (booking.kpi_json): what the
-- dashboard plots.
CREATE VIEW booking.hotel_revenue AS
SELECT v.hotel_id, h.name AS hotel_name, h.currency, v.room_type, v.night,
       v.rooms_available, v.rooms_sold, v.revenue AS room_revenue
  FROM booking.revenue_nights v JOIN booking.hotels h ON h.id = v.hotel_id;
COMMENT ON VIEW booking.hotel_revenue IS 'booking.revenue_nights with the hotel''s name and currency';

CREATE VIEW booking.hotel_revenue_by_night AS
SELECT x.hotel_id, x.hotel_name, x.currency, x.night, x.rooms_available, x.rooms_sold, x.room_revenue,
       (k ->> 'occupancy_pct')::numeric AS occupancy_pct, (k ->> 'adr')::numeric AS adr, (k ->> 'revpar')::numeric AS revpar
  FROM (SELECT v.hotel_id, v.hotel_name, v.currency, v.night, sum(v.rooms_available) AS rooms_available,
               sum(v.rooms_sold) AS rooms_sold, sum(v.room_revenue) AS room_revenue
          FROM booking.hotel_revenue v GROUP BY v.hotel_id, v.hotel_name, v.currency, v.night) x
  LEFT JOIN booking.currencies c ON c.code = x.currency
 CROSS JOIN LATERAL booking.kpi_json(x.rooms_available, x.rooms_sold, x.room_revenue, coalesce(c.minor_units, 2)) k;
COMMENT ON VIEW booking.hotel_revenue_by_night IS 'per hotel and night: rooms, rooms sold, room revenue, occupancy %, ADR, RevPAR';

GRANT SELECT ON booking.pickup_days, booking.hotel_pickup, booking.lead_time_buckets, booking.hotel_lead_time,
    booking.hotel_stays, booking.hotel_revenue, booking.hotel_revenue_by_night, booking.revenue_nights
  TO booking_admin, booking_facility_manager, booking_auditor, booking_grafana;
-- A view's reader needs EXECUTE on the functions it calls.
GRANT EXECUTE ON FUNCTION booking.kpi_day(text, timestamptz), booking.checkout_time_zone(),
    booking.local_date(timestamptz, text), booking.hotel_time_zone(bigint), booking.effective_time_zone(text),
    booking.reservation_sells(text), booking.kpi_json(numeric, numeric, numeric, integer),
    booking.stay_rates_json(numeric, numeric, numeric, numeric, numeric)
  TO booking_api, booking_grafana;

-- Rooms sold and room revenue per (hotel, room type, night), kept exact by
-- statement-level counters like the booking analytics (extension/analytics.c):
-- booking.revenue_nights, which every occupancy, ADR, RevPAR and revenue
-- figure reads, is O(hotels x room types x nights), not O(reservations).
-- Each INSERT, UPDATE or DELETE of reservations adds, in the writer's own
-- transaction, what its rows sell (new_rows, +1 and the stored price per
-- night held by a selling stay) minus what they sold (old_rows), per
-- (hotel, room type, night), as one INSERT ... ON CONFLICT DO UPDATE in key
-- order:
--   - exact under concurrency: the upsert locks the counter row and adds to
--     its latest committed version (READ COMMITTED), or waits for the
--     concurrent insert of the same key; a rollback takes its deltas with it.
--   - no deadlock between counters: every statement locks its keys in one
--     order; the take (inventory.c) has already locked the inventory rows of
--     the same nights, so writers of the same nights are queued there first.
--   - an UPDATE that changes none of hotel, room type, arrival, held nights,
--     whether the status sells, or the prices (a check-in, the checkout's
--     completion of a stay that has left) writes nothing.
-- SQL, not C: the deltas come from the stored jsonb prices and one upsert
-- per statement; the rule "which nights a stay sells" is
-- booking.revenue_nights_of (below), used by the trigger, by the recount
-- of booking.analytics_check() and by booking.analytics_rebuild().
CREATE TABLE booking.revenue_night_counts (
    hotel_id   bigint NOT NULL,
    room_type  text NOT NULL,
    night      date NOT NULL,
    rooms_sold bigint NOT NULL DEFAULT 0,
    revenue    numeric NOT NULL DEFAULT 0,
    PRIMARY KEY (hotel_id, room_type, night)
);
COMMENT ON TABLE booking.revenue_night_counts IS 'rooms sold and room revenue per hotel, room type and night, kept exact by the count_revenue_nights triggers; compare with booking.analytics_check()';
REVOKE ALL ON booking.revenue_night_counts FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('booking.revenue_night_counts', '');

-- The nights a reservation sells and their stored prices (none unless its
-- status sells: booking.reservation_sells), one row per night held.  Of the
-- stay's columns, not of a booking.reservations row: on Citus the recount
-- runs on each shard, whose rows are of the shard's own row type.
CREATE FUNCTION booking.revenue_nights_of(stay_hotel_id bigint, stay_room_type text, arrival date,
                                          held_until date, status text, prices jsonb)
RETURNS TABLE (hotel_id bigint, room_type text, night date, price numeric)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT stay_hotel_id, stay_room_type, d::date, coalesce((prices ->> to_char(d, 'YYYY-MM-DD'))::numeric, 0)
      FROM generate_series(arrival, held_until - 1, interval '1 day') d
     WHERE booking.reservation_sells(status)
$$;
COMMENT ON FUNCTION booking.revenue_nights_of IS 'the nights a reservation sells (held nights of a selling status) with their stored prices (0 when unpriced), from the stay''s hotel_id, room_type, arrival_date, held_until, status and nightly_prices';

-- The full recount, from every reservation: what the counters must hold.
CREATE VIEW booking.revenue_nights_recount AS
SELECT n.hotel_id, n.room_type, n.night, count(*) AS rooms_sold, sum(n.price) AS revenue
  FROM booking.reservations r
 CROSS JOIN LATERAL booking.revenue_nights_of(r.hotel_id, r.room_type, r.arrival_date, r.held_until, r.status, r.nightly_prices) n
 GROUP BY n.hotel_id, n.room_type, n.night;
COMMENT ON VIEW booking.revenue_nights_recount IS 'rooms sold and room revenue per hotel, room type and night recounted from every reservation (O(reservations)): what booking.revenue_night_counts holds';
REVOKE ALL ON booking.revenue_nights_recount FROM PUBLIC;

CREATE FUNCTION booking.count_revenue_nights() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM booking.revenue_night_counts;
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO booking.revenue_night_counts AS c (hotel_id, room_type, night, rooms_sold, revenue)
        SELECT n.hotel_id, n.room_type, n.night, count(*), sum(n.price)
          FROM new_rows x CROSS JOIN LATERAL booking.revenue_nights_of(x.hotel_id, x.room_type, x.arrival_date, x.held_until, x.status, x.nightly_prices) n
         GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (hotel_id, room_type, night) DO UPDATE
           SET rooms_sold = c.rooms_sold + excluded.rooms_sold, revenue = c.revenue + excluded.revenue;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO booking.revenue_night_counts AS c (hotel_id, room_type, night, rooms_sold, revenue)
        SELECT n.hotel_id, n.room_type, n.night, -count(*), -sum(n.price)
          FROM old_rows x CROSS JOIN LATERAL booking.revenue_nights_of(x.hotel_id, x.room_type, x.arrival_date, x.held_until, x.status, x.nightly_prices) n
         GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (hotel_id, room_type, night) DO UPDATE
           SET rooms_sold = c.rooms_sold + excluded.rooms_sold, revenue = c.revenue + excluded.revenue;
    ELSE
        -- Rows whose sold nights cannot have moved are left out first (a row
        -- whose id changed is not among them: it counts out and back in).
        WITH same AS (
            SELECT n.id FROM new_rows n JOIN old_rows o ON o.id = n.id
             WHERE n.hotel_id = o.hotel_id AND n.room_type = o.room_type AND n.arrival_date = o.arrival_date
               AND n.held_until = o.held_until
               AND booking.reservation_sells(n.status) = booking.reservation_sells(o.status)
               AND n.nightly_prices IS NOT DISTINCT FROM o.nightly_prices),
        deltas AS (
            SELECT n.hotel_id, n.room_type, n.night, 1 AS sold, n.price
              FROM new_rows x CROSS JOIN LATERAL booking.revenue_nights_of(x.hotel_id, x.room_type, x.arrival_date, x.held_until, x.status, x.nightly_prices) n
             WHERE x.id NOT IN (SELECT s.id FROM same s)
            UNION ALL
            SELECT n.hotel_id, n.room_type, n.night, -1, -n.price
              FROM old_rows x CROSS JOIN LATERAL booking.revenue_nights_of(x.hotel_id, x.room_type, x.arrival_date, x.held_until, x.status, x.nightly_prices) n
             WHERE x.id NOT IN (SELECT s.id FROM same s))
        INSERT INTO booking.revenue_night_counts AS c (hotel_id, room_type, night, rooms_sold, revenue)
        SELECT d.hotel_id, d.room_type, d.night, sum(d.sold), sum(d.price)
          FROM deltas d
         GROUP BY 1, 2, 3 HAVING sum(d.sold) <> 0 OR sum(d.price) <> 0 ORDER BY 1, 2, 3
        ON CONFLICT (hotel_id, room_type, night) DO UPDATE
           SET rooms_sold = c.rooms_sold + excluded.rooms_sold, revenue = c.revenue + excluded.revenue;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION booking.count_revenue_nights IS 'statement trigger: add the net change of a statement on booking.reservations to booking.revenue_night_counts, in key order';
-- One event each (transition tables allow no more), as the booking counters.
CREATE TRIGGER reservations_count_revenue_insert AFTER INSERT ON booking.reservations
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION booking.count_revenue_nights();
CREATE TRIGGER reservations_count_revenue_update AFTER UPDATE ON booking.reservations
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION booking.count_revenue_nights();
CREATE TRIGGER reservations_count_revenue_delete AFTER DELETE ON booking.reservations
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION booking.count_revenue_nights();
CREATE TRIGGER reservations_count_revenue_truncate AFTER TRUNCATE ON booking.reservations
    FOR EACH STATEMENT EXECUTE FUNCTION booking.count_revenue_nights();

-- Reservations made before the counters existed (an upgrade).
INSERT INTO booking.revenue_night_counts (hotel_id, room_type, night, rooms_sold, revenue)
SELECT hotel_id, room_type, night, rooms_sold, revenue FROM booking.revenue_nights_recount;

-- The KPI view now reads the counters.  Revenue is shown with the
-- currency's minor units (a counter's scale is that of every amount it ever
-- added; the amounts never have more decimals than their currency).
CREATE OR REPLACE VIEW booking.revenue_nights AS
SELECT i.hotel_id, i.room_type, i.night, i.total AS rooms_available,
       coalesce(c.rooms_sold, 0) AS rooms_sold, round(coalesce(c.revenue, 0), coalesce(m.minor_units, 0)) AS revenue
  FROM booking.inventory i
  JOIN booking.hotels h ON h.id = i.hotel_id
  LEFT JOIN booking.currencies m ON m.code = h.currency
  LEFT JOIN booking.revenue_night_counts c ON c.hotel_id = i.hotel_id AND c.room_type = i.room_type AND c.night = i.night;

-- The check and the rebuild cover the revenue counters too.  A revenue
-- difference is shown in 1/10000 of the currency unit (kept and recounted
-- are bigint); it is found by comparing the exact amounts.
CREATE OR REPLACE FUNCTION booking.analytics_check()
RETURNS TABLE (summary text, room_id bigint, counter text, kept bigint, recounted bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH kept AS (
        SELECT c.room_id, k.key AS counter, k.value::bigint AS n
          FROM booking.room_booking_counts c
         CROSS JOIN LATERAL jsonb_each_text(to_jsonb(c) - 'room_id') k
    ), recount AS (
        SELECT r.id AS room_id, s.counter, count(b.id) AS n
          FROM booking.rooms r
         CROSS JOIN unnest(booking.booking_statuses()) s(counter)
          LEFT JOIN booking.bookings b ON b.room_id = r.id AND b.status = s.counter
         GROUP BY 1, 2
    ), kept_ratings AS (
        SELECT c.room_id, k.counter, k.n
          FROM booking.room_rating_counts c
         CROSS JOIN LATERAL (VALUES ('review_count', c.review_count), ('rating_sum', c.rating_sum)) k(counter, n)
    ), recount_ratings AS (
        SELECT r.id AS room_id, k.counter, k.n
          FROM booking.rooms r
          LEFT JOIN LATERAL (SELECT count(*) AS review_count, coalesce(sum(v.rating), 0) AS rating_sum
                               FROM booking.reviews v WHERE v.room_id = r.id AND v.status <> 'hidden') a ON true
         CROSS JOIN LATERAL (VALUES ('review_count', a.review_count), ('rating_sum', a.rating_sum)) k(counter, n)
    ), kept_revenue AS (
        SELECT c.* FROM booking.revenue_night_counts c WHERE c.rooms_sold <> 0 OR c.revenue <> 0
    )
    SELECT 'room_booking_counts', coalesce(k.room_id, r.room_id), coalesce(k.counter, r.counter), k.n, r.n
      FROM kept k FULL JOIN recount r ON r.room_id = k.room_id AND r.counter = k.counter
     WHERE k.n IS DISTINCT FROM r.n
    UNION ALL
    SELECT 'room_rating_counts', coalesce(k.room_id, r.room_id), coalesce(k.counter, r.counter), k.n, r.n
      FROM kept_ratings k FULL JOIN recount_ratings r ON r.room_id = k.room_id AND r.counter = k.counter
     WHERE k.n IS DISTINCT FROM r.n
    UNION ALL
    SELECT 'revenue_night_counts', coalesce(k.hotel_id, r.hotel_id),
           m.counter || ' ' || coalesce(k.room_type, r.room_type) || ' ' || to_char(coalesce(k.night, r.night), 'YYYY-MM-DD'),
           m.kept, m.recounted
      FROM kept_revenue k
      FULL JOIN booking.revenue_nights_recount r
             ON r.hotel_id = k.hotel_id AND r.room_type = k.room_type AND r.night = k.night
     CROSS JOIN LATERAL (VALUES
            ('rooms_sold', k.rooms_sold, coalesce(r.rooms_sold, 0), coalesce(k.rooms_sold, 0) <> coalesce(r.rooms_sold, 0)),
            ('revenue_1e-4', (k.revenue * 10000)::bigint, (coalesce(r.revenue, 0) * 10000)::bigint,
             coalesce(k.revenue, 0) <> coalesce(r.revenue, 0))) m(counter, kept, recounted, differs)
     WHERE m.differs
     ORDER BY 1, 2, 3
$$;

CREATE OR REPLACE FUNCTION booking.analytics_rebuild() RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    LOCK TABLE booking.bookings, booking.reviews, booking.reservations IN SHARE MODE;
    DELETE FROM booking.room_booking_counts;
    INSERT INTO booking.room_booking_counts
    SELECT (jsonb_populate_record(NULL::booking.room_booking_counts,
                jsonb_build_object('room_id', r.id)
                || (SELECT jsonb_object_agg(s, (SELECT count(*) FROM booking.bookings b WHERE b.room_id = r.id AND b.status = s))
                      FROM unnest(booking.booking_statuses()) s))).*
      FROM booking.rooms r;
    DELETE FROM booking.room_rating_counts;
    INSERT INTO booking.room_rating_counts (room_id, review_count, rating_sum)
    SELECT r.id, count(v.id), coalesce(sum(v.rating), 0)
      FROM booking.rooms r LEFT JOIN booking.reviews v ON v.room_id = r.id AND v.status <> 'hidden' GROUP BY r.id;
    DELETE FROM booking.revenue_night_counts;
    INSERT INTO booking.revenue_night_counts (hotel_id, room_type, night, rooms_sold, revenue)
    SELECT hotel_id, room_type, night, rooms_sold, revenue FROM booking.revenue_nights_recount;
END
$$;
COMMENT ON FUNCTION booking.analytics_rebuild IS 'recompute the summary tables (bookings, reviews, revenue nights) from the counted tables (superuser; blocks writers meanwhile)';

REVOKE EXECUTE ON FUNCTION booking.revenue_nights_of(bigint, text, date, date, text, jsonb), booking.count_revenue_nights() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION booking.revenue_nights_of(bigint, text, date, date, text, jsonb) TO booking_api;

-- The price of a stay, as in section "revenue", reading only the rates of
-- the stay's nights.  bench/pricing.sh found a priced reservation costing
-- about 2x an unpriced one: generate_series is estimated at 1000 rows, so
-- the planner hashed every rate of the room type (a year: ~270 heap pages
-- per reservation) to join three nights.  The range bound on r.night lets
-- the primary key fetch the stay's nights alone.  And the query was planned
-- anew at every call (a custom plan: ~120 us of the ~160 us a call cost);
-- its generic plan, the same join bounded by the range, costs ~40 us.
CREATE OR REPLACE FUNCTION booking.price_stay(hotel_id bigint, room_type text, arrival date, nights integer,
                                              keep jsonb DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    cur text;
    priced jsonb;
    total numeric;
    missing date;
BEGIN
    SELECT h.currency INTO cur FROM booking.hotels h WHERE h.id = price_stay.hotel_id;
    IF cur IS NULL THEN
        RETURN jsonb_build_object('currency', NULL, 'nights', NULL, 'total', NULL);
    END IF;
    SELECT min(n.night) FILTER (WHERE n.amount IS NULL),
           jsonb_object_agg(to_char(n.night, 'YYYY-MM-DD'), n.amount), sum(n.amount)
      INTO missing, priced, total
      FROM (SELECT d::date AS night,
                   coalesce((keep ->> to_char(d, 'YYYY-MM-DD'))::numeric, r.amount) AS amount
              FROM generate_series(arrival, arrival + nights - 1, interval '1 day') d
              LEFT JOIN booking.rates r ON r.hotel_id = price_stay.hotel_id AND r.room_type = price_stay.room_type
                                       AND r.night = d::date
                                       AND r.night BETWEEN arrival AND arrival + nights - 1) n;
    IF missing IS NOT NULL THEN
        PERFORM booking.raise_error(409, 'NO_RATE',
            format('room type "%s" has no rate for the night of %s', room_type, to_char(missing, 'YYYY-MM-DD')),
            jsonb_build_object('hotel_id', hotel_id, 'room_type', room_type, 'night', to_char(missing, 'YYYY-MM-DD')),
            'A night without a rate cannot be sold; PUT /inventory/{hotel_id}/rates sets rates.');
    END IF;
    RETURN jsonb_build_object('currency', cur, 'nights', priced, 'total', total);
END
$$;

-- One set of rules for the kpis route and the views: its stay rates now
-- come from booking.hotel_stays and booking.stay_rates_json.
CREATE OR REPLACE FUNCTION api.analytics_hotel_kpis(hotel_id bigint, "from" text, "to" text) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    h booking.hotels;
    nights daterange;
    m integer;
    result jsonb;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager', 'auditor');
    h := booking.find_hotel(hotel_id);
    nights := booking.parse_nights("from", "to");
    m := coalesce((SELECT c.minor_units FROM booking.currencies c WHERE c.code = h.currency), 2);
    WITH n AS (SELECT v.* FROM booking.revenue_nights v
                WHERE v.hotel_id = analytics_hotel_kpis.hotel_id AND v.night <@ nights),
         s AS (SELECT coalesce(sum(x.reservations), 0) AS stays, coalesce(sum(x.cancelled), 0) AS cancelled,
                      coalesce(sum(x.no_shows), 0) AS no_shows, coalesce(sum(x.sold), 0) AS sold,
                      coalesce(sum(x.sold_nights), 0) AS sold_nights, coalesce(sum(x.cancellation_fees), 0) AS fees
                 FROM booking.hotel_stays x
                WHERE x.hotel_id = analytics_hotel_kpis.hotel_id AND x.arrival_date <@ nights)
    SELECT jsonb_build_object('hotel_id', hotel_id, 'currency', h.currency,
                              'from', lower(nights), 'to', upper(nights) - 1)
           || booking.kpi_json((SELECT coalesce(sum(rooms_available), 0) FROM n), (SELECT coalesce(sum(rooms_sold), 0) FROM n),
                               (SELECT coalesce(sum(revenue), 0) FROM n), m)
           || booking.stay_rates_json(s.stays, s.cancelled, s.no_shows, s.sold, s.sold_nights)
           || jsonb_build_object(
                'cancellation_fees', s.fees,
                'by_room_type', coalesce((SELECT jsonb_agg(jsonb_build_object('room_type', t.room_type)
                                                           || booking.kpi_json(t.a, t.s, t.r, m) ORDER BY t.room_type)
                                            FROM (SELECT room_type, sum(rooms_available) a, sum(rooms_sold) s, sum(revenue) r
                                                    FROM n GROUP BY room_type) t), '[]'),
                'by_night', coalesce((SELECT jsonb_agg(jsonb_build_object('night', n.night, 'room_type', n.room_type,
                                                                          'rooms_available', n.rooms_available,
                                                                          'rooms_sold', n.rooms_sold, 'room_revenue', n.revenue)
                                                       ORDER BY n.night, n.room_type) FROM n), '[]'))
      INTO result FROM s;
    RETURN result;
END
$$;

CREATE FUNCTION api.analytics_hotel_pickup(hotel_id bigint, "from" text, "to" text) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    nights daterange;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager', 'auditor');
    PERFORM booking.find_hotel(hotel_id);
    nights := booking.parse_nights("from", "to");
    RETURN jsonb_build_object('hotel_id', hotel_id, 'from', lower(nights), 'to', upper(nights) - 1,
        'days_before', (SELECT jsonb_agg(d.days_before ORDER BY d.days_before) FROM booking.pickup_days d),
        'nights', coalesce((SELECT jsonb_agg(jsonb_build_object('night', p.night, 'room_type', p.room_type,
                                                                'days_before', p.days_before, 'as_of', p.as_of,
                                                                'rooms_available', p.rooms_available,
                                                                'rooms_on_books', p.rooms_on_books)
                                             ORDER BY p.night, p.room_type, p.days_before DESC)
                              FROM booking.hotel_pickup p
                             WHERE p.hotel_id = analytics_hotel_pickup.hotel_id AND p.night <@ nights), '[]'));
END
$$;
COMMENT ON FUNCTION api.analytics_hotel_pickup IS 'admin, facility_manager, auditor: rooms on the books per night and room type as of N days before the night (N in days_before; only days up to today), nights from..to included; 404, 422';

CREATE FUNCTION api.analytics_hotel_lead_time(hotel_id bigint, "from" text, "to" text) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    arrivals daterange;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager', 'auditor');
    PERFORM booking.find_hotel(hotel_id);
    arrivals := booking.parse_nights("from", "to");
    RETURN (SELECT jsonb_build_object('hotel_id', hotel_id, 'from', lower(arrivals), 'to', upper(arrivals) - 1,
                                      'reservations', coalesce(sum(t.reservations), 0),
                                      'average_lead_days', round(sum(t.lead_days) / nullif(sum(t.reservations), 0), 2),
                                      'buckets', jsonb_agg(jsonb_build_object('bucket', t.bucket, 'min_days', t.min_days,
                                                                              'max_days', t.max_days,
                                                                              'reservations', t.reservations,
                                                                              'cancelled', t.cancelled)
                                                           ORDER BY t.bucket_order))
              FROM (SELECT b.bucket_order, b.bucket, b.min_days, b.max_days,
                           coalesce(sum(l.reservations), 0) AS reservations, coalesce(sum(l.cancelled), 0) AS cancelled,
                           coalesce(sum(l.lead_days), 0) AS lead_days
                      FROM booking.lead_time_buckets b
                      LEFT JOIN booking.hotel_lead_time l
                             ON l.bucket_order = b.bucket_order AND l.hotel_id = analytics_hotel_lead_time.hotel_id
                            AND l.arrival_date <@ arrivals
                     GROUP BY b.bucket_order, b.bucket, b.min_days, b.max_days) t);
END
$$;
COMMENT ON FUNCTION api.analytics_hotel_lead_time IS 'admin, facility_manager, auditor: reservations arriving from..to (included) per lead time bucket (days from the day made to arrival; cancelled ones included and counted apart), and the average lead time; 404, 422';

REVOKE EXECUTE ON FUNCTION booking.reservation_cancelled_at(), booking.kpi_day(text, timestamptz),
    booking.stay_rates_json(numeric, numeric, numeric, numeric, numeric),
    api.analytics_hotel_pickup(bigint, text, text), api.analytics_hotel_lead_time(bigint, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api.analytics_hotel_pickup(bigint, text, text), api.analytics_hotel_lead_time(bigint, text, text)
  TO booking_api;

INSERT INTO booking.http_routes (method, path, function_name, success_status, operation_id, body_argument, public, event_stream) VALUES
    ('GET', '/admin/analytics/hotels/{hotel_id}/pickup',    'analytics_hotel_pickup',    200, NULL, NULL, false, false),
    ('GET', '/admin/analytics/hotels/{hotel_id}/lead-time', 'analytics_hotel_lead_time', 200, NULL, NULL, false, false);

WITH t(day, id, n, num, str) AS (
    SELECT '{"type": "string", "format": "date"}'::jsonb, '{"type": "integer", "format": "int64"}'::jsonb,
           '{"type": "integer"}'::jsonb, '{"type": "number"}'::jsonb, '{"type": "string"}'::jsonb)
INSERT INTO booking.http_schemas (name, schema)
SELECT v.name, jsonb_build_object('type', 'object', 'description', v.description,
                                  'required', (SELECT jsonb_agg(x ORDER BY x) FROM jsonb_object_keys(v.props) x),
                                  'properties', v.props)
  FROM t, LATERAL (VALUES
    ('HotelPickup', 'rooms on the books per night and room type as of N days before the night',
     jsonb_build_object('hotel_id', t.id, 'from', t.day, 'to', t.day,
                        'days_before', jsonb_build_object('type', 'array', 'items', t.n),
                        'nights', jsonb_build_object('type', 'array', 'items', jsonb_build_object(
                            'type', 'object',
                            'required', '["as_of", "days_before", "night", "room_type", "rooms_available", "rooms_on_books"]'::jsonb,
                            'properties', jsonb_build_object('night', t.day, 'room_type', t.str, 'days_before', t.n,
                                                             'as_of', t.day, 'rooms_available', t.n, 'rooms_on_books', t.n))))),
    ('HotelLeadTime', 'reservations arriving in a range of days per booking lead time bucket',
     jsonb_build_object('hotel_id', t.id, 'from', t.day, 'to', t.day, 'reservations', t.n,
                        'average_lead_days', t.num || '{"nullable": true}',
                        'buckets', jsonb_build_object('type', 'array', 'items', jsonb_build_object(
                            'type', 'object', 'required', '["bucket", "cancelled", "max_days", "min_days", "reservations"]'::jsonb,
                            'properties', jsonb_build_object('bucket', t.str, 'min_days', t.n || '{"nullable": true}',
                                                             'max_days', t.n || '{"nullable": true}',
                                                             'reservations', t.n, 'cancelled', t.n)))))
  ) AS v(name, description, props);
INSERT INTO booking.http_results (function_name, schema)
VALUES ('analytics_hotel_pickup', '{"$ref": "#/components/schemas/HotelPickup"}'),
       ('analytics_hotel_lead_time', '{"$ref": "#/components/schemas/HotelLeadTime"}');

-- ==== extra-person charges: adults above a base occupancy, children (issue 15) ====
--
-- A rate is the price of a room for its base occupancy.  Per (hotel, room
-- type) booking.extra_person_charges names how many adults the rate includes
-- (base_adults, 2 when the room type has no row) and what each further adult
-- (extra_adult_amount) and each child (child_amount) adds per night, in the
-- hotel's currency.  The price of a night is its rate plus the extras of the
-- stay's party, computed by booking.price_stay as before (one function for
-- the trigger and the quote) and stored per night in nightly_prices: a later
-- change of the charges, like a change of rates, does not touch a stay.
-- A change of adults or children changes the party of every night, so it
-- reprices every night of the stay at today's rates and charges (as a change
-- of room type does); a change of dates alone keeps the stored price of the
-- nights the stay already had.

CREATE TABLE booking.extra_person_charges (
    hotel_id           bigint NOT NULL REFERENCES booking.hotels,
    room_type          text NOT NULL,
    base_adults        integer NOT NULL DEFAULT 2,
    extra_adult_amount numeric NOT NULL DEFAULT 0,
    child_amount       numeric NOT NULL DEFAULT 0,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (hotel_id, room_type),
    CONSTRAINT extra_person_charges_base_adults CHECK (base_adults BETWEEN 1 AND 20),
    CONSTRAINT extra_person_charges_amounts_nonnegative CHECK (extra_adult_amount >= 0 AND child_amount >= 0)
);
COMMENT ON TABLE booking.extra_person_charges IS 'per hotel and room type: adults included in the rate (base_adults) and the nightly charge of each further adult and of each child, in the hotel''s currency';
SELECT pg_catalog.pg_extension_config_dump('booking.extra_person_charges', '');
GRANT SELECT ON booking.extra_person_charges TO booking_api;
GRANT INSERT, UPDATE ON booking.extra_person_charges TO booking_admin, booking_facility_manager;

-- The price of a stay, as in section "hotel KPIs" (one generic plan, only
-- the stay's nights read), plus the extras of the party on each night not
-- kept.  The charges are one primary-key row read with the currency.  The
-- party comes after keep so that callers of the former four- and
-- five-argument forms keep working (defaults: one adult, no child, as
-- api.create_reservation).
DROP FUNCTION booking.price_stay(bigint, text, date, integer, jsonb);
CREATE FUNCTION booking.price_stay(hotel_id bigint, room_type text, arrival date, nights integer,
                                   keep jsonb DEFAULT NULL, adults integer DEFAULT 1, children integer DEFAULT 0)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    cur text;
    extras numeric;
    priced jsonb;
    total numeric;
    missing date;
BEGIN
    SELECT h.currency,
           greatest(price_stay.adults - coalesce(x.base_adults, 2), 0) * coalesce(x.extra_adult_amount, 0)
           + price_stay.children * coalesce(x.child_amount, 0)
      INTO cur, extras
      FROM booking.hotels h
      LEFT JOIN booking.extra_person_charges x ON x.hotel_id = h.id AND x.room_type = price_stay.room_type
     WHERE h.id = price_stay.hotel_id;
    IF cur IS NULL THEN
        RETURN jsonb_build_object('currency', NULL, 'nights', NULL, 'total', NULL);
    END IF;
    SELECT min(n.night) FILTER (WHERE n.amount IS NULL),
           jsonb_object_agg(to_char(n.night, 'YYYY-MM-DD'), n.amount), sum(n.amount)
      INTO missing, priced, total
      FROM (SELECT d::date AS night,
                   coalesce((keep ->> to_char(d, 'YYYY-MM-DD'))::numeric, r.amount + extras) AS amount
              FROM generate_series(arrival, arrival + nights - 1, interval '1 day') d
              LEFT JOIN booking.rates r ON r.hotel_id = price_stay.hotel_id AND r.room_type = price_stay.room_type
                                       AND r.night = d::date
                                       AND r.night BETWEEN arrival AND arrival + nights - 1) n;
    IF missing IS NOT NULL THEN
        PERFORM booking.raise_error(409, 'NO_RATE',
            format('room type "%s" has no rate for the night of %s', room_type, to_char(missing, 'YYYY-MM-DD')),
            jsonb_build_object('hotel_id', hotel_id, 'room_type', room_type, 'night', to_char(missing, 'YYYY-MM-DD')),
            'A night without a rate cannot be sold; PUT /inventory/{hotel_id}/rates sets rates.');
    END IF;
    RETURN jsonb_build_object('currency', cur, 'nights', priced, 'total', total);
END
$$;
COMMENT ON FUNCTION booking.price_stay IS 'the nightly prices and total of a stay for a party (kept prices first, else current rate plus extra-person charges); 409 NO_RATE naming the first night without a rate';

-- The pricing trigger of section "revenue", with the party: a change of
-- adults or children reprices every night (nothing kept).
CREATE OR REPLACE FUNCTION booking.reservation_price() RETURNS trigger
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    keep jsonb;
    p jsonb;
    stay booking.reservations;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        NEW.currency := OLD.currency;
        NEW.nightly_prices := OLD.nightly_prices;
        NEW.total_amount := OLD.total_amount;
        -- (On Citus the trigger fires on a shard, whose rows are of the
        -- shard's row type: assigned column by column to the table's.)
        IF NEW.status = 'cancelled' AND OLD.status <> 'cancelled' THEN
            stay := OLD;
            NEW.cancellation_fee := booking.cancellation_fee(stay);
        ELSE
            NEW.cancellation_fee := OLD.cancellation_fee;
        END IF;
        IF NEW.arrival_date = OLD.arrival_date AND NEW.stay_length = OLD.stay_length
           AND NEW.room_type = OLD.room_type AND NEW.adults = OLD.adults AND NEW.children = OLD.children THEN
            RETURN NEW;
        END IF;
        IF NEW.room_type = OLD.room_type AND NEW.adults = OLD.adults AND NEW.children = OLD.children THEN
            keep := OLD.nightly_prices;
        END IF;
    ELSE
        NEW.cancellation_fee := NULL;
    END IF;
    p := booking.price_stay(NEW.hotel_id, NEW.room_type, NEW.arrival_date, NEW.stay_length, keep,
                            NEW.adults, NEW.children);
    NEW.currency := p ->> 'currency';
    NEW.nightly_prices := p -> 'nights';
    NEW.total_amount := (p ->> 'total')::numeric;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION booking.reservation_price IS 'trigger: price a stay when it is made or its dates, room type or party change (NO_RATE); the price columns are written here only';

-- The update trigger now also fires on a change of party.
DROP TRIGGER reservations_price_change ON booking.reservations;
CREATE TRIGGER reservations_price_change
    BEFORE UPDATE OF room_type, arrival_date, stay_length, adults, children, status,
                     currency, nightly_prices, total_amount, cancellation_fee
    ON booking.reservations
    FOR EACH ROW
    WHEN (NEW.room_type IS DISTINCT FROM OLD.room_type OR NEW.arrival_date IS DISTINCT FROM OLD.arrival_date
          OR NEW.stay_length IS DISTINCT FROM OLD.stay_length
          OR NEW.adults IS DISTINCT FROM OLD.adults OR NEW.children IS DISTINCT FROM OLD.children
          OR (NEW.status = 'cancelled' AND OLD.status IS DISTINCT FROM 'cancelled')
          OR NEW.currency IS DISTINCT FROM OLD.currency OR NEW.nightly_prices IS DISTINCT FROM OLD.nightly_prices
          OR NEW.total_amount IS DISTINCT FROM OLD.total_amount
          OR NEW.cancellation_fee IS DISTINCT FROM OLD.cancellation_fee)
    EXECUTE FUNCTION booking.reservation_price();

CREATE FUNCTION api.set_extra_person_charges(hotel_id bigint, room_type text, base_adults integer DEFAULT 2,
                                             extra_adult_amount numeric DEFAULT 0, child_amount numeric DEFAULT 0)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    h booking.hotels;
    before jsonb;
    x booking.extra_person_charges;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager');
    h := booking.find_hotel(hotel_id);
    PERFORM booking.validate_room_type(room_type);
    IF h.currency IS NULL THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('hotel %s has no currency', hotel_id),
            jsonb_build_object('field', 'currency', 'hotel_id', hotel_id), 'PUT /hotels/{hotel_id}/currency sets it.');
    END IF;
    IF base_adults IS NULL OR base_adults NOT BETWEEN 1 AND 20 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('base_adults %s is out of range', coalesce(base_adults::text, 'NULL')),
            jsonb_build_object('field', 'base_adults', 'min', 1, 'max', 20));
    END IF;
    PERFORM booking.validate_amount(extra_adult_amount, h.currency, 'extra_adult_amount');
    PERFORM booking.validate_amount(child_amount, h.currency, 'child_amount');
    IF NOT EXISTS (SELECT 1 FROM booking.inventory i
                    WHERE i.hotel_id = set_extra_person_charges.hotel_id
                      AND i.room_type = set_extra_person_charges.room_type) THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('hotel %s has no room type "%s"', hotel_id, room_type),
            jsonb_build_object('field', 'room_type', 'hotel_id', hotel_id, 'room_type', room_type));
    END IF;
    SELECT to_jsonb(c) - 'updated_at' INTO before FROM booking.extra_person_charges c
     WHERE c.hotel_id = set_extra_person_charges.hotel_id AND c.room_type = set_extra_person_charges.room_type;
    INSERT INTO booking.extra_person_charges AS c (hotel_id, room_type, base_adults, extra_adult_amount, child_amount)
    VALUES (hotel_id, room_type, base_adults, extra_adult_amount, child_amount)
    ON CONFLICT ON CONSTRAINT extra_person_charges_pkey
    DO UPDATE SET base_adults = EXCLUDED.base_adults, extra_adult_amount = EXCLUDED.extra_adult_amount,
                  child_amount = EXCLUDED.child_amount, updated_at = now()
    RETURNING * INTO x;
    PERFORM booking.audit('inventory.extra_person_charges', 'inventory', format('%s/%s', hotel_id, room_type),
        before, to_jsonb(x) - 'updated_at');
    RETURN jsonb_build_object('hotel_id', x.hotel_id, 'room_type', x.room_type, 'currency', h.currency,
                              'base_adults', x.base_adults, 'extra_adult_amount', x.extra_adult_amount,
                              'child_amount', x.child_amount, 'updated_at', x.updated_at);
END
$$;
COMMENT ON FUNCTION api.set_extra_person_charges IS 'admin, facility_manager: adults included in the rate of a room type (base_adults) and the nightly charge of each further adult and each child, for stays priced from now on (existing stays keep their prices); 404, 422';

-- The quote takes the party, with the defaults of api.create_reservation.
DROP FUNCTION api.quote_reservation(bigint, text, text, integer);
CREATE FUNCTION api.quote_reservation(hotel_id bigint, room_type text, arrival_date text, stay_length integer,
                                      adults integer DEFAULT 1, children integer DEFAULT 0)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    a date;
    p jsonb;
BEGIN
    PERFORM booking.require_user();
    a := booking.parse_date(arrival_date, 'arrival_date');
    PERFORM booking.validate_room_type(room_type);
    IF (booking.find_hotel(hotel_id)).currency IS NULL THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('hotel %s has no prices', hotel_id),
            jsonb_build_object('field', 'hotel_id', 'hotel_id', hotel_id));
    END IF;
    PERFORM booking.validate_stay(hotel_id, 'quote', a, stay_length, adults, children);
    p := booking.price_stay(hotel_id, room_type, a, stay_length, NULL, adults, children);
    RETURN jsonb_build_object('hotel_id', hotel_id, 'room_type', room_type, 'arrival_date', a,
                              'stay_length', stay_length, 'adults', adults, 'children', children,
                              'currency', p -> 'currency',
                              'nightly_prices', p -> 'nights', 'total_amount', p -> 'total');
END
$$;
COMMENT ON FUNCTION api.quote_reservation IS 'user+: the nightly prices (rate plus extra-person charges of the party) and total a reservation made now would get, writing nothing (availability is not promised); 404, 409 NO_RATE, 422';

REVOKE EXECUTE ON FUNCTION booking.price_stay(bigint, text, date, integer, jsonb, integer, integer),
    api.set_extra_person_charges(bigint, text, integer, numeric, numeric),
    api.quote_reservation(bigint, text, text, integer, integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION booking.price_stay(bigint, text, date, integer, jsonb, integer, integer),
    api.set_extra_person_charges(bigint, text, integer, numeric, numeric),
    api.quote_reservation(bigint, text, text, integer, integer, integer) TO booking_api;

INSERT INTO booking.http_routes (method, path, function_name, success_status, operation_id, body_argument, public, event_stream) VALUES
    ('PUT', '/inventory/{hotel_id}/extra-person-charges', 'set_extra_person_charges', 200, NULL, NULL, false, false);

WITH t(ts, id, n, num, str) AS (
    SELECT '{"type": "string", "format": "date-time"}'::jsonb, '{"type": "integer", "format": "int64"}'::jsonb,
           '{"type": "integer"}'::jsonb, '{"type": "number"}'::jsonb, '{"type": "string"}'::jsonb)
INSERT INTO booking.http_schemas (name, schema)
SELECT v.name, jsonb_build_object('type', 'object', 'description', v.description,
                                  'required', (SELECT jsonb_agg(k ORDER BY k) FROM jsonb_object_keys(v.props) k),
                                  'properties', v.props)
  FROM t, LATERAL (VALUES
    ('ExtraPersonCharges', 'the extra-person charges of a room type: adults included in the rate, the nightly charge of each further adult and of each child',
     jsonb_build_object('hotel_id', t.id, 'room_type', t.str, 'currency', t.str, 'base_adults', t.n,
                        'extra_adult_amount', t.num, 'child_amount', t.num, 'updated_at', t.ts))
  ) AS v(name, description, props);
INSERT INTO booking.http_results (function_name, schema)
VALUES ('set_extra_person_charges', '{"$ref": "#/components/schemas/ExtraPersonCharges"}');

-- The quote answers with its party.
UPDATE booking.http_schemas s
   SET schema = jsonb_set(jsonb_set(s.schema, '{properties}',
                                    s.schema -> 'properties' || '{"adults": {"type": "integer"}, "children": {"type": "integer"}}'),
                          '{required}',
                          (SELECT jsonb_agg(k ORDER BY k)
                             FROM jsonb_object_keys(s.schema -> 'properties' || '{"adults": 1, "children": 1}') k))
 WHERE s.name = 'Quote';
-- ==== the nightly checkout at speed: reservation events from C (issue 11) ====
-- The checkout of 100,000 due stays took about 10 s, and the reservation
-- events trigger was the largest single part of it: PL/pgSQL calling
-- booking.reservation_event_payload() (a SQL function the planner cannot
-- inline) once per row and joining new_rows to old_rows.  Like the booking
-- events (section "the write path: events and counters from C"),
-- booking.reservation_events() is now C (extension/events.c): it reads the
-- transition tables row by row, builds each payload as
-- reservation_event_payload() does and appends to booking.event_queue
-- directly, in the writer's transaction, with nothing built of the
-- statement's size.  The same kinds, payloads and user_id as before; the
-- triggers are unchanged.
CREATE OR REPLACE FUNCTION booking.reservation_events() RETURNS trigger
AS 'MODULE_PATHNAME', 'pgb_reservation_events'
LANGUAGE C;
COMMENT ON FUNCTION booking.reservation_events IS 'statement trigger on booking.reservations: queue reservation.created / reservation.<status> / reservation.changed / reservation.deleted events in booking.event_queue';

-- The revenue counters (section "hotel KPIs") joined an UPDATE's new_rows
-- to old_rows to find the stays whose sold nights moved; for the checkout's
-- completions (both statuses sell, same nights, same prices) that found
-- none, at about a sixth of the checkout's cost.  booking.count_revenue_nights()
-- is now C (extension/revenue_counts.c): it reads an UPDATE's pairs once and
-- writes nothing when none of them changes what is sold; otherwise, and for
-- INSERT, DELETE and TRUNCATE, it runs the former PL/pgSQL body, kept as
-- booking.count_revenue_nights_sql(), in the writer's transaction.  The
-- triggers are recreated on the C function under their names.
ALTER FUNCTION booking.count_revenue_nights() RENAME TO count_revenue_nights_sql;
COMMENT ON FUNCTION booking.count_revenue_nights_sql IS 'statement trigger body (called by booking.count_revenue_nights): add the net change of a statement on booking.reservations to booking.revenue_night_counts, in key order';
CREATE FUNCTION booking.count_revenue_nights() RETURNS trigger
AS 'MODULE_PATHNAME', 'pgb_count_revenue_nights'
LANGUAGE C;
COMMENT ON FUNCTION booking.count_revenue_nights IS 'statement trigger: keep booking.revenue_night_counts exact for a statement on booking.reservations (an UPDATE that changes nothing sold writes nothing)';
REVOKE EXECUTE ON FUNCTION booking.count_revenue_nights() FROM PUBLIC;
DROP TRIGGER reservations_count_revenue_insert ON booking.reservations;
DROP TRIGGER reservations_count_revenue_update ON booking.reservations;
DROP TRIGGER reservations_count_revenue_delete ON booking.reservations;
DROP TRIGGER reservations_count_revenue_truncate ON booking.reservations;
CREATE TRIGGER reservations_count_revenue_insert AFTER INSERT ON booking.reservations
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION booking.count_revenue_nights();
CREATE TRIGGER reservations_count_revenue_update AFTER UPDATE ON booking.reservations
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION booking.count_revenue_nights();
CREATE TRIGGER reservations_count_revenue_delete AFTER DELETE ON booking.reservations
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION booking.count_revenue_nights();
CREATE TRIGGER reservations_count_revenue_truncate AFTER TRUNCATE ON booking.reservations
    FOR EACH STATEMENT EXECUTE FUNCTION booking.count_revenue_nights();

-- ==== check-in and automatic release of no-shows (issue 14) ====
--
-- A room may require check-in (rooms.check_in_required): whoever booked it,
-- a facility manager, or the room's panel (a service account) checks the
-- booking in within [start - window, start + window]
-- (rooms.check_in_window_minutes, default 10).  A confirmed booking of such
-- a room not checked in by start + window is a no-show: the checkout
-- worker's minute tick (booking.release_no_shows()) makes it "released",
-- which does not occupy the room (booking.status_occupies()), so its time
-- is bookable at once; the events trigger writes booking.released and the
-- counters count it like any status.  A released occurrence of a series
-- leaves the rest alone, but pg_booking.series_no_show_limit (default 3;
-- 0: never) consecutive no-shows of one series cancel its future
-- occurrences: the room is evidently not used.  The window is one
-- definition (booking.check_in_window) for both the check-in and the
-- release, so a booking can never be both too late to check in and not yet
-- released, or the reverse.

ALTER TABLE booking.rooms ADD COLUMN check_in_required boolean NOT NULL DEFAULT false,
    ADD COLUMN check_in_window_minutes integer NOT NULL DEFAULT 10,
    ADD CONSTRAINT rooms_check_in_window_range CHECK (check_in_window_minutes BETWEEN 1 AND 120);
COMMENT ON COLUMN booking.rooms.check_in_required IS 'a confirmed booking of the room not checked in by its start + check_in_window_minutes is released';
COMMENT ON COLUMN booking.rooms.check_in_window_minutes IS 'check-in is open from this many minutes before a booking''s start to as many after it (1..120)';
ALTER TABLE booking.bookings ADD COLUMN checked_in_at timestamptz;
COMMENT ON COLUMN booking.bookings.checked_in_at IS 'when the booking was checked in (POST /bookings/{id}/check-in); NULL: not (yet)';

CREATE FUNCTION booking.check_in_window(starts_at timestamptz, window_minutes integer) RETURNS tstzrange
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT tstzrange(starts_at - make_interval(mins => window_minutes), starts_at + make_interval(mins => window_minutes), '[]') $$;
COMMENT ON FUNCTION booking.check_in_window IS 'the instants a booking starting at starts_at may be checked in, both ends included; after its upper end an unchecked booking is a no-show';

-- The setting, read where it is used; without the library loaded (pg_dump,
-- plain psql on a server without it) the default.
CREATE FUNCTION booking.series_no_show_limit() RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT coalesce(nullif(current_setting('pg_booking.series_no_show_limit', true), '')::integer, 3) $$;
COMMENT ON FUNCTION booking.series_no_show_limit IS 'pg_booking.series_no_show_limit: this many consecutive no-shows of a series cancel its future occurrences (0: never; default 3)';

CREATE OR REPLACE FUNCTION booking.room_json(r booking.rooms) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object('id', r.id, 'name', r.name, 'location', r.location,
                              'capacity', r.capacity, 'amenities', to_jsonb(r.amenities),
                              'buffer_before_minutes', r.buffer_before_minutes,
                              'buffer_after_minutes', r.buffer_after_minutes,
                              'requires_approval', r.requires_approval,
                              'approval_expiry_minutes', r.approval_expiry_minutes,
                              'check_in_required', r.check_in_required,
                              'check_in_window_minutes', r.check_in_window_minutes,
                              'active', r.active, 'created_at', r.created_at, 'updated_at', r.updated_at)
$$;

CREATE OR REPLACE FUNCTION booking.booking_json(b booking.bookings) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object('id', b.id, 'room_id', b.room_id, 'user_id', b.user_id, 'title', b.title,
                              'starts_at', b.starts_at, 'ends_at', b.ends_at, 'status', b.status,
                              'hold_expires_at', b.hold_expires_at, 'checked_in_at', b.checked_in_at,
                              'series_id', b.series_id, 'created_at', b.created_at, 'updated_at', b.updated_at)
$$;

CREATE FUNCTION api.set_room_check_in(id bigint, check_in_required boolean,
                                      check_in_window_minutes integer DEFAULT 10) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r booking.rooms;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager');
    PERFORM booking.find_room(id);
    IF check_in_required IS NULL THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'check_in_required is required',
            jsonb_build_object('field', 'check_in_required'));
    END IF;
    IF check_in_window_minutes IS NULL OR check_in_window_minutes NOT BETWEEN 1 AND 120 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('check_in_window_minutes %s is not between 1 and 120', coalesce(check_in_window_minutes::text, 'NULL')),
            jsonb_build_object('field', 'check_in_window_minutes', 'min', 1, 'max', 120));
    END IF;
    UPDATE booking.rooms x
       SET check_in_required = set_room_check_in.check_in_required,
           check_in_window_minutes = set_room_check_in.check_in_window_minutes, updated_at = now()
     WHERE x.id = set_room_check_in.id
    RETURNING * INTO r;
    RETURN booking.room_json(r);
END
$$;
COMMENT ON FUNCTION api.set_room_check_in IS 'admin, facility_manager: whether bookings of the room must be checked in, and the window in minutes either side of the start (1..120, default 10); applies to bookings not yet released; 404, 422';

-- The check-in itself.  SECURITY DEFINER because a room panel (a service
-- account) may read every booking but change none (RLS): api.check_in_booking
-- decides who may check in, this records it.  The booking is locked, so a
-- check-in and the worker's release of the same booking go one after the
-- other, and the later sees what the earlier did.
CREATE FUNCTION booking.record_check_in(booking_id bigint) RETURNS booking.bookings
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b booking.bookings;
    r booking.rooms;
    win tstzrange;
BEGIN
    b := booking.lock_booking_row(booking_id);
    -- The api function has answered 404/403 by the caller's own view (RLS);
    -- this guards a direct call: only the owner, staff and panels get on.
    IF b.id IS NULL OR NOT (b.user_id = booking.current_user_id()
                            OR booking.caller_is('admin', 'facility_manager', 'service_account')) THEN
        PERFORM booking.raise_error(404, 'NOT_FOUND', format('booking %s not found', coalesce(booking_id::text, 'NULL')),
            jsonb_build_object('booking_id', booking_id));
    END IF;
    SELECT * INTO r FROM booking.rooms x WHERE x.id = b.room_id;
    IF NOT r.check_in_required THEN
        PERFORM booking.raise_error(409, 'CHECK_IN_NOT_REQUIRED',
            format('room %s does not require check-in', r.id),
            jsonb_build_object('booking_id', b.id, 'room_id', r.id));
    END IF;
    IF b.checked_in_at IS NOT NULL THEN
        PERFORM booking.raise_error(409, 'ALREADY_CHECKED_IN',
            format('booking %s was checked in at %s', b.id, to_json(b.checked_in_at) #>> '{}'),
            jsonb_build_object('booking_id', b.id, 'checked_in_at', b.checked_in_at));
    END IF;
    IF b.status <> 'confirmed' THEN
        PERFORM booking.raise_error(409, 'INVALID_STATE',
            format('booking %s is %s, not confirmed, and cannot be checked in', b.id, b.status),
            jsonb_build_object('booking_id', b.id, 'status', b.status));
    END IF;
    win := booking.check_in_window(b.starts_at, r.check_in_window_minutes);
    IF NOT now() <@ win THEN
        PERFORM booking.raise_error(409, 'CHECK_IN_WINDOW',
            format('booking %s can be checked in from %s to %s', b.id,
                   to_json(lower(win)) #>> '{}', to_json(upper(win)) #>> '{}'),
            jsonb_build_object('booking_id', b.id, 'opens_at', lower(win), 'closes_at', upper(win),
                               'too', CASE WHEN now() < lower(win) THEN 'early' ELSE 'late' END));
    END IF;
    UPDATE booking.bookings x SET checked_in_at = now(), updated_at = now()
     WHERE x.id = booking_id AND x.room_id = b.room_id RETURNING * INTO b;
    RETURN b;
END
$$;
COMMENT ON FUNCTION booking.record_check_in IS 'record the check-in of a confirmed booking of a check-in room within its window (booking.check_in_window); 409 CHECK_IN_NOT_REQUIRED, ALREADY_CHECKED_IN, INVALID_STATE, CHECK_IN_WINDOW; the caller decides who may';

CREATE FUNCTION api.check_in_booking(id bigint) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM booking.require_user();
    IF booking.caller_is('service_account') THEN
        -- A room panel checks in whoever stands at the door: it may read
        -- every booking (404 for none), and change no other part of one.
        PERFORM booking.find_booking(id);
    ELSE
        -- 404 for someone else's booking, 403 for those who may only read
        -- it (auditors), as for every other change of a booking.
        PERFORM booking.find_booking_for_update(id);
    END IF;
    RETURN booking.booking_json(booking.record_check_in(id));
END
$$;
COMMENT ON FUNCTION api.check_in_booking IS 'owner, admin, facility_manager, service_account (a room panel): check in a confirmed booking of a room that requires it, within [start - window, start + window]; 404, 403, 409 CHECK_IN_WINDOW, CHECK_IN_NOT_REQUIRED, ALREADY_CHECKED_IN, INVALID_STATE';

-- The worker's minute tick (at: its clock, booking.checkout_clock()).  The
-- candidates come from the occupying index per check-in room (a booking
-- started at most max_booking_length() ago); only bookings with time left
-- are released (a no-show noticed after its end frees nothing; the
-- checkout completes it).  Then each series with a new no-show is looked at:
-- if its latest series_no_show_limit occurrences that have started (those
-- cancelled by their owner not counted) were all released, its occurrences
-- still to start are cancelled.  Returns the bookings released.
CREATE FUNCTION booking.release_no_shows(at timestamptz DEFAULT now()) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
    series uuid[];
    lim integer := booking.series_no_show_limit();
BEGIN
    IF at IS NULL THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'at is required', jsonb_build_object('field', 'at'));
    END IF;
    WITH released AS (
        UPDATE booking.bookings b SET status = 'released', updated_at = now()
          FROM booking.rooms r
         WHERE r.check_in_required AND b.room_id = r.id
           AND booking.status_occupies(b.status) AND b.status = 'confirmed'
           AND b.starts_at > at - booking.max_booking_length() AND b.starts_at < at
           AND b.ends_at > at AND b.checked_in_at IS NULL
           AND at > upper(booking.check_in_window(b.starts_at, r.check_in_window_minutes))
        RETURNING b.series_id
    )
    SELECT count(*), array_agg(DISTINCT x.series_id) FILTER (WHERE x.series_id IS NOT NULL)
      INTO n, series FROM released x;
    IF lim > 0 AND series IS NOT NULL THEN
        UPDATE booking.bookings b SET status = 'cancelled', updated_at = now()
         WHERE b.series_id = ANY (series) AND b.starts_at > at AND b.status IN ('confirmed', 'held', 'pending')
           AND (SELECT count(*) = lim AND bool_and(l.status = 'released')
                  FROM (SELECT p.status FROM booking.bookings p
                         WHERE p.series_id = b.series_id AND p.starts_at <= at AND p.status <> 'cancelled'
                         ORDER BY p.starts_at DESC LIMIT lim) l);
    END IF;
    RETURN n;
END
$$;
COMMENT ON FUNCTION booking.release_no_shows IS 'release every confirmed booking of a check-in room not checked in by start + window at instant at and not yet ended, and cancel the future occurrences of a series whose last pg_booking.series_no_show_limit occurrences were all released (the background worker calls it every minute); returns how many were released';

INSERT INTO booking.http_routes (method, path, function_name, success_status, operation_id, body_argument, public, event_stream) VALUES
    ('POST', '/bookings/{id}/check-in', 'check_in_booking',  200, NULL, NULL, false, false),
    ('PUT',  '/rooms/{id}/check-in',    'set_room_check_in', 200, NULL, NULL, false, false);
INSERT INTO booking.http_results (function_name, schema) VALUES
    ('check_in_booking', '{"$ref": "#/components/schemas/Booking"}'),
    ('set_room_check_in', '{"$ref": "#/components/schemas/Room"}');
UPDATE booking.http_schemas s
   SET schema = jsonb_set(jsonb_set(s.schema, '{properties}', s.schema -> 'properties' || v.props),
                          '{required}', (SELECT jsonb_agg(k ORDER BY k)
                                           FROM jsonb_object_keys(s.schema -> 'properties' || v.props) k))
  FROM (VALUES
    ('Booking', '{"checked_in_at": {"type": "string", "format": "date-time", "nullable": true,
                  "description": "when it was checked in (rooms that require check-in)"}}'::jsonb),
    ('Room', '{"check_in_required": {"type": "boolean"},
               "check_in_window_minutes": {"type": "integer", "minimum": 1, "maximum": 120}}'::jsonb)) AS v(name, props)
 WHERE s.name = v.name;

REVOKE EXECUTE ON FUNCTION booking.check_in_window(timestamptz, integer), booking.series_no_show_limit(),
    booking.record_check_in(bigint), booking.release_no_shows(timestamptz),
    api.set_room_check_in(bigint, boolean, integer), api.check_in_booking(bigint)
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION booking.check_in_window(timestamptz, integer), booking.series_no_show_limit(),
    booking.record_check_in(bigint),
    api.set_room_check_in(bigint, boolean, integer), api.check_in_booking(bigint)
  TO booking_api;

-- ==== Citus: the revenue counters leave the transition table first (issue 16) ====
-- On a Citus worker the reservations trigger fires on a shard, and its
-- INSERT INTO booking.revenue_night_counts (a distributed table there too)
-- is planned by Citus, which cannot read the trigger's transition tables
-- ("executor could not find named tuplestore").  So the net change per
-- (hotel, room type, night) is first computed from new_rows/old_rows alone,
-- a query PostgreSQL plans locally, into arrays; then one INSERT applies
-- them in key order.  On a single node that is one more short query per
-- statement; the rule (what a reservation sells, booking.revenue_nights_of)
-- is unchanged.
CREATE OR REPLACE FUNCTION booking.count_revenue_nights_sql() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    hotels bigint[];
    types text[];
    nights date[];
    sold bigint[];
    revenue numeric[];
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM booking.revenue_night_counts;
        RETURN NULL;
    ELSIF TG_OP = 'INSERT' THEN
        SELECT array_agg(d.hotel_id), array_agg(d.room_type), array_agg(d.night), array_agg(d.sold), array_agg(d.price)
          INTO hotels, types, nights, sold, revenue
          FROM (SELECT n.hotel_id, n.room_type, n.night, count(*) AS sold, sum(n.price) AS price
                  FROM new_rows x CROSS JOIN LATERAL booking.revenue_nights_of(x.hotel_id, x.room_type, x.arrival_date, x.held_until, x.status, x.nightly_prices) n
                 GROUP BY 1, 2, 3) d;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(d.hotel_id), array_agg(d.room_type), array_agg(d.night), array_agg(d.sold), array_agg(d.price)
          INTO hotels, types, nights, sold, revenue
          FROM (SELECT n.hotel_id, n.room_type, n.night, -count(*) AS sold, -sum(n.price) AS price
                  FROM old_rows x CROSS JOIN LATERAL booking.revenue_nights_of(x.hotel_id, x.room_type, x.arrival_date, x.held_until, x.status, x.nightly_prices) n
                 GROUP BY 1, 2, 3) d;
    ELSE
        -- Rows whose sold nights cannot have moved are left out first (a row
        -- whose id changed is not among them: it counts out and back in).
        WITH same AS (
            SELECT n.id FROM new_rows n JOIN old_rows o ON o.id = n.id
             WHERE n.hotel_id = o.hotel_id AND n.room_type = o.room_type AND n.arrival_date = o.arrival_date
               AND n.held_until = o.held_until
               AND booking.reservation_sells(n.status) = booking.reservation_sells(o.status)
               AND n.nightly_prices IS NOT DISTINCT FROM o.nightly_prices),
        deltas AS (
            SELECT n.hotel_id, n.room_type, n.night, 1 AS sold, n.price
              FROM new_rows x CROSS JOIN LATERAL booking.revenue_nights_of(x.hotel_id, x.room_type, x.arrival_date, x.held_until, x.status, x.nightly_prices) n
             WHERE x.id NOT IN (SELECT s.id FROM same s)
            UNION ALL
            SELECT n.hotel_id, n.room_type, n.night, -1, -n.price
              FROM old_rows x CROSS JOIN LATERAL booking.revenue_nights_of(x.hotel_id, x.room_type, x.arrival_date, x.held_until, x.status, x.nightly_prices) n
             WHERE x.id NOT IN (SELECT s.id FROM same s))
        SELECT array_agg(g.hotel_id), array_agg(g.room_type), array_agg(g.night), array_agg(g.sold), array_agg(g.price)
          INTO hotels, types, nights, sold, revenue
          FROM (SELECT d.hotel_id, d.room_type, d.night, sum(d.sold) AS sold, sum(d.price) AS price
                  FROM deltas d
                 GROUP BY 1, 2, 3 HAVING sum(d.sold) <> 0 OR sum(d.price) <> 0) g;
    END IF;
    IF hotels IS NOT NULL THEN
        INSERT INTO booking.revenue_night_counts AS c (hotel_id, room_type, night, rooms_sold, revenue)
        SELECT * FROM unnest(hotels, types, nights, sold, revenue) AS d(hotel_id, room_type, night, sold, price)
         ORDER BY 1, 2, 3
        ON CONFLICT (hotel_id, room_type, night) DO UPDATE
           SET rooms_sold = c.rooms_sold + excluded.rooms_sold, revenue = c.revenue + excluded.revenue;
    END IF;
    RETURN NULL;
END
$$;

-- ==== Citus: a reschedule names the room's shard (issue 16) ====
-- api.update_booking assigned room_id on every change, and Citus refuses an
-- UPDATE that assigns the distribution column even to the value it has.  A
-- reschedule or retitle in the same room now leaves room_id out and names it
-- in the WHERE clause (routed to the room's shard); only a move to another
-- room assigns it, which stays refused on Citus (the row would change shard;
-- docs/citus.md).  Everything else as before.
CREATE OR REPLACE FUNCTION api.update_booking(id bigint, starts_at text DEFAULT NULL, ends_at text DEFAULT NULL,
                                              title text DEFAULT NULL, room_id bigint DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    b booking.bookings;
    s timestamptz;
    e timestamptz;
BEGIN
    PERFORM booking.require_user();
    -- Locked first (404, or 403 for those who may only read it), so the
    -- room the UPDATE names is the room the row is in.
    b := booking.find_booking_for_update(id);
    IF b.status <> 'confirmed' THEN
        PERFORM booking.raise_error(409, 'INVALID_STATE', format('booking %s is %s and cannot be changed', id, b.status),
            jsonb_build_object('booking_id', id, 'status', b.status));
    END IF;
    IF title IS NOT NULL THEN
        PERFORM booking.validate_title(title);
    END IF;
    s := CASE WHEN starts_at IS NULL THEN b.starts_at ELSE booking.parse_instant(starts_at, 'starts_at') END;
    e := CASE WHEN ends_at IS NULL THEN b.ends_at ELSE booking.parse_instant(ends_at, 'ends_at') END;
    IF s <> b.starts_at OR e <> b.ends_at OR coalesce(room_id, b.room_id) <> b.room_id THEN
        PERFORM booking.validate_booking_times(s, e);
        PERFORM booking.bookable_room(coalesce(room_id, b.room_id));
    END IF;
    IF coalesce(room_id, b.room_id) = b.room_id THEN
        UPDATE booking.bookings x
           SET starts_at = s, ends_at = e, title = coalesce(btrim(update_booking.title), x.title), updated_at = now()
         WHERE x.id = update_booking.id AND x.room_id = b.room_id
        RETURNING * INTO b;
    ELSE
        UPDATE booking.bookings x
           SET starts_at = s, ends_at = e, title = coalesce(btrim(update_booking.title), x.title),
               room_id = update_booking.room_id, updated_at = now()
         WHERE x.id = update_booking.id AND x.room_id = b.room_id
        RETURNING * INTO b;
    END IF;
    PERFORM booking.require_changed(FOUND, 'booking', id);
    RETURN booking.booking_json(b);
END
$$;

-- ==== Citus: analytics answers name their members and run as their owner (issue 16) ====
-- to_jsonb of a view's row that Citus gathers from several shards arrives
-- as an anonymous record: its members came back as f1..f4 instead of
-- room_id, room_name, average_rating, review_count (t/101 compares every
-- analytics answer with a single node's).  The members are named here.
CREATE OR REPLACE FUNCTION api.analytics_average_rating_by_room() RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_role('admin', 'moderator', 'auditor');
    RETURN coalesce((SELECT jsonb_agg(jsonb_build_object('room_id', x.room_id, 'room_name', x.room_name,
                                                         'average_rating', x.average_rating,
                                                         'review_count', x.review_count)
                                      ORDER BY x.room_id)
                       FROM booking.analytics_rating_by_room x), '[]');
END
$$;

-- The analytics answers read views over tables their callers may not read
-- (the counters, the inventory, the blocks).  On one node a view reads
-- with its owner's rights; on Citus the shards are queried as the caller,
-- and a staff role was refused the counters (docs/citus.md, finding 21).
-- They run as their owner now: each first asks booking.require_role, and
-- what they return is the same aggregate for every staff role.
ALTER FUNCTION api.analytics_bookings_summary() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION api.analytics_bookings_by_room(integer, integer) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION api.analytics_bookings_per_day(text, text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION api.analytics_average_rating_by_room() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION api.analytics_occupancy(bigint, text, text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION api.analytics_hotel_kpis(bigint, text, text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION api.analytics_hotel_pickup(bigint, text, text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION api.analytics_hotel_lead_time(bigint, text, text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- ==== calendar feeds follow the occupancy rule, expiry included (issue 14) ====
-- The feed (section "calendar feeds") came before holds, so its STATUS
-- followed the status alone: a hold past its expiry that the worker had not
-- yet marked "expired" showed as TENTATIVE, though it blocks nobody.  The
-- STATUS mapping and the feed are defined here, after
-- booking.booking_occupies, and follow it.
-- STATUS of a booking's calendar entry.  Confirmed and completed bookings
-- are CONFIRMED; a booking that occupies its room in any other status
-- (a live hold, a request awaiting approval) is TENTATIVE; one that does
-- not occupy it now (cancelled, any status booking.status_occupies says
-- frees the room, and a hold or request past its expiry that the worker
-- has not marked yet) is CANCELLED.  The one mapping: it follows
-- booking.booking_occupies, the rule of the conflict check.
CREATE FUNCTION booking.ics_status(status text, hold_expires_at timestamptz DEFAULT NULL) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN status IN ('confirmed', 'completed') THEN 'CONFIRMED'
                WHEN booking.booking_occupies(status, hold_expires_at, now()) THEN 'TENTATIVE'
                ELSE 'CANCELLED' END
$$;
COMMENT ON FUNCTION booking.ics_status IS 'the iCalendar STATUS of a booking: CONFIRMED, TENTATIVE (occupies now, not confirmed) or CANCELLED (does not occupy now: booking.booking_occupies)';

-- The calendar: the bookings of a room or of a user (room or owner given)
-- overlapping the window, each whole series any of whose occurrences does,
-- as read by viewer (id and application role: whose titles show).  Reads
-- every user's bookings, hence SECURITY DEFINER; granted to no one: only
-- the api functions below call it, each naming the viewer it has checked.
-- (PL/pgSQL: Citus cannot plan an SQL function's parameters over the
-- distributed bookings; docs/citus.md.)
CREATE FUNCTION booking.calendar_ics(calendar_name text, room bigint, owner bigint,
                                     viewer_id bigint, viewer_role text, w tstzrange) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
    WITH hit AS (
        SELECT b.id, b.series_id FROM booking.bookings b
         WHERE (room IS NULL OR b.room_id = room) AND (owner IS NULL OR b.user_id = owner)
           AND b.starts_at < upper(w) AND b.ends_at > lower(w)
    ), picked AS (
        SELECT b.* FROM booking.bookings b WHERE b.id IN (SELECT h.id FROM hit h)
        UNION
        SELECT b.* FROM booking.bookings b
         WHERE b.series_id IN (SELECT h.series_id FROM hit h WHERE h.series_id IS NOT NULL)
           AND (room IS NULL OR b.room_id = room) AND (owner IS NULL OR b.user_id = owner)
    ), shown AS (
        SELECT p.id, p.series_id, p.starts_at, p.ends_at, p.revision,
               greatest(p.created_at, p.updated_at) AS stamp, booking.ics_status(p.status, p.hold_expires_at) AS st,
               CASE WHEN booking.shows_title(p.user_id, viewer_id, viewer_role) THEN p.title ELSE 'Busy' END AS summary,
               r.name AS place
          FROM picked p JOIN booking.rooms r ON r.id = p.room_id
    ), grouped AS (
        -- The first occurrence that is not cancelled (or, all cancelled,
        -- the first) gives the series its DTSTART and its common values;
        -- the recurrence set is the occurrences not cancelled (all, when
        -- every one is).
        SELECT s.*,
               first_value(s.id) OVER (PARTITION BY s.series_id ORDER BY s.st = 'CANCELLED', s.starts_at, s.id) AS first_id,
               s.st <> 'CANCELLED' OR NOT bool_or(s.st <> 'CANCELLED') OVER (PARTITION BY s.series_id) AS member,
               sum(s.revision) OVER (PARTITION BY s.series_id) AS series_revision,
               max(s.stamp) OVER (PARTITION BY s.series_id) AS series_stamp
          FROM shown s
         WHERE s.series_id IS NOT NULL
    ), masters AS (
        SELECT g.* FROM grouped g WHERE g.id = g.first_id
    ), components AS (
        SELECT s.starts_at AS k1, s.id AS k2, NULL::timestamptz AS k3,
               booking.ics_vevent('booking-' || s.id || '@pg_booking', s.stamp, s.starts_at, s.ends_at,
                                  s.summary, s.place, s.st, s.revision) AS vevent
          FROM shown s
         WHERE s.series_id IS NULL
        UNION ALL
        -- SEQUENCE of a series: the sum of its occurrences' revisions,
        -- which grows whenever any of them changes.
        SELECT m.starts_at, m.id, NULL,
               booking.ics_vevent('series-' || m.series_id || '@pg_booking', m.series_stamp, m.starts_at, m.ends_at,
                                  m.summary, m.place, m.st, m.series_revision::integer, NULL,
                                  ARRAY(SELECT g.starts_at FROM grouped g
                                         WHERE g.series_id = m.series_id AND g.member AND g.id <> m.id),
                                  ARRAY(SELECT DISTINCT g.starts_at FROM grouped g
                                         WHERE g.series_id = m.series_id AND NOT g.member
                                           AND NOT EXISTS (SELECT 1 FROM grouped o
                                                            WHERE o.series_id = g.series_id AND o.member
                                                              AND o.starts_at = g.starts_at)))
          FROM masters m
        UNION ALL
        SELECT m.starts_at, m.id, g.starts_at,
               booking.ics_vevent('series-' || m.series_id || '@pg_booking', m.series_stamp, g.starts_at, g.ends_at,
                                  g.summary, g.place, g.st, m.series_revision::integer, g.starts_at)
          FROM masters m
          JOIN grouped g ON g.series_id = m.series_id AND g.member AND g.id <> m.id
         WHERE (g.ends_at - g.starts_at, g.summary, g.st, g.place)
               IS DISTINCT FROM (m.ends_at - m.starts_at, m.summary, m.st, m.place)
    )
    SELECT booking.ics_lines(ARRAY['BEGIN:VCALENDAR', 'VERSION:2.0', 'PRODID:-//pg_booking//pg_booking//EN',
                                   'CALSCALE:GREGORIAN', 'NAME:' || booking.ics_text(calendar_name),
                                   'X-WR-CALNAME:' || booking.ics_text(calendar_name),
                                   'REFRESH-INTERVAL;VALUE=DURATION:PT15M', 'X-PUBLISHED-TTL:PT15M'])
           || coalesce((SELECT string_agg(c.vevent, '' ORDER BY c.k1, c.k2, c.k3 NULLS FIRST) FROM components c), '')
           || booking.ics_lines(ARRAY['END:VCALENDAR']));
END
$$;
COMMENT ON FUNCTION booking.calendar_ics IS 'the iCalendar text of a room''s or a user''s bookings in a window, as a given viewer may see them; called by the api functions only';

REVOKE EXECUTE ON FUNCTION booking.ics_status(text, timestamptz),
    booking.calendar_ics(text, bigint, bigint, bigint, text, tstzrange) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION booking.ics_status(text, timestamptz) TO booking_api;

-- ==== the waitlist: queued for a taken slot, promoted in the freeing transaction (issue 14) ====
--
-- POST /rooms/{room_id}/waitlist queues the caller for a slot that is
-- taken right now (a free slot is booked, not waited for).  When the slot
-- frees, the oldest waiting entries it fits (FIFO by created_at, id) become
-- bookings IN THE TRANSACTION THAT FREES IT, so nobody can take the slot in
-- between.  The rule, in one place (booking.promote_waitlist), reached from:
--
--   * bookings_waitlist_freed, AFTER UPDATE OR DELETE on booking.bookings:
--     a booking that may occupy its room stops doing so (cancelled,
--     released, expired, rejected), is deleted, or moves (times or room):
--     its old time is offered to the queue of its old room.  psql, the
--     adapter, the worker's release of no-shows and its marking of expired
--     holds all go through it.
--   * bookings_before_check_waitlist, BEFORE INSERT OR UPDATE, fired before
--     bookings_conflict_check (triggers fire in name order): a hold that
--     expires frees its slot with no transaction at all, so before a
--     booking is placed (inserted, moved, or confirmed from an expired
--     hold) the waiting entries its time touches are promoted first: a
--     newcomer never jumps the queue, it meets the promoted booking in the
--     conflict check.  (Its BOOKING_CONFLICT undoes its statement, the
--     promotion included: no transaction of its own has freed the slot.
--     The slot stays reserved for the queue, every newcomer being refused
--     the same way, until the worker's tick marks the hold expired, which
--     promotes for good, within a minute.)
--   * booking.expire_waitlist(at), on the worker's minute tick: entries
--     whose slot has started expire, and every room's queue is offered its
--     free slots once more (a sweep that catches what the two triggers
--     cannot see, e.g. a freeing transaction in REPEATABLE READ whose
--     snapshot predates a join).
--
-- "Fits" is decided by the one conflict check: a promotion is a plain
-- INSERT into booking.bookings, and a clash (BOOKING_CONFLICT) just moves
-- on to the next entry.  Joins, promotions and new bookings of a room are
-- serialised by the room's lock, the one the conflict check takes
-- (booking.lock_room, extension/conflicts.c), taken before the queue is
-- read; an entry's created_at is the clock read under that lock, so the
-- queue's order is the order in which the room's writers came.  A
-- promotion is a confirmed booking of the entry's user (a pending request
-- in a room that requires approval, unless the user is staff), with the
-- usual booking.created event and a waitlist.promoted one; joins,
-- withdrawals and expiries have their events too (waitlist.joined,
-- waitlist.withdrawn, waitlist.expired).

CREATE TABLE booking.waitlist (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room_id    bigint NOT NULL REFERENCES booking.rooms (id),
    user_id    bigint NOT NULL REFERENCES booking.users (id),
    title      text NOT NULL,
    starts_at  timestamptz NOT NULL,
    ends_at    timestamptz NOT NULL,
    status     text NOT NULL DEFAULT 'waiting',
    -- The booking a promotion made.  Not a foreign key (as events name
    -- their entity): the entry stays as history when that booking is
    -- deleted, and TRUNCATE booking.bookings still works.
    booking_id bigint,
    -- The clock under the room's lock (not now(), the transaction's start):
    -- the queue's order is the order of the room's writers.
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT waitlist_status_known CHECK (status IN ('waiting', 'promoted', 'expired', 'withdrawn')),
    CONSTRAINT waitlist_booking_if_promoted CHECK (booking_id IS NULL OR status = 'promoted'),
    CONSTRAINT waitlist_title_length CHECK (length(btrim(title)) BETWEEN 1 AND 200),
    CONSTRAINT waitlist_times_order CHECK (starts_at < ends_at)
);
COMMENT ON TABLE booking.waitlist IS 'people queued for a taken slot of a room, FIFO by (created_at, id); a waiting entry becomes a booking (promoted) in the transaction that frees its slot (booking.promote_waitlist)';
COMMENT ON COLUMN booking.waitlist.status IS 'waiting; promoted (booking_id: the booking made); expired (its slot started first); withdrawn (by its owner or staff)';
-- A room's queue in order, and a user waits once for a slot.
CREATE INDEX waitlist_room_waiting_idx ON booking.waitlist (room_id, starts_at) INCLUDE (ends_at) WHERE status = 'waiting';
CREATE UNIQUE INDEX waitlist_one_wait_per_slot ON booking.waitlist (room_id, user_id, starts_at, ends_at) WHERE status = 'waiting';
-- One booking per promotion, never two entries for one booking.
CREATE UNIQUE INDEX waitlist_booking_key ON booking.waitlist (booking_id) WHERE booking_id IS NOT NULL;
CREATE INDEX waitlist_user_idx ON booking.waitlist (user_id, starts_at);
CREATE INDEX waitlist_expiring_idx ON booking.waitlist (starts_at) WHERE status = 'waiting';

-- As bookings: a user sees and changes their own entries, staff all,
-- auditors and service accounts read all.
ALTER TABLE booking.waitlist ENABLE ROW LEVEL SECURITY;
CREATE POLICY waitlist_own ON booking.waitlist TO booking_api
    USING (user_id = booking.current_user_id()) WITH CHECK (user_id = booking.current_user_id());
CREATE POLICY waitlist_staff ON booking.waitlist TO booking_admin, booking_facility_manager USING (true);
CREATE POLICY waitlist_read_all ON booking.waitlist FOR SELECT TO booking_auditor, booking_service_account USING (true);
GRANT SELECT, INSERT, UPDATE ON booking.waitlist TO booking_api;
-- What users wrote: dumped, with its identity sequence (the backup
-- section registers the sequences of every table registered above it).
SELECT pg_catalog.pg_extension_config_dump('booking.waitlist', '');

CREATE FUNCTION booking.lock_room(room_id bigint) RETURNS void
AS 'MODULE_PATHNAME', 'pgb_lock_room'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION booking.lock_room IS 'take the room''s lock until the transaction ends: the lock the conflict check takes, which serialises a room''s bookings, joins of its waitlist and promotions';

-- The question every booking write asks first (bookings_before_check_waitlist's
-- WHEN), in C so that a room without a queue costs a booking nothing
-- measurable: under the room's lock, is anyone waiting?  extension/waitlist.c
-- says why the answer is exact.
CREATE FUNCTION booking.room_has_waiters(room_id bigint) RETURNS boolean
AS 'MODULE_PATHNAME', 'pgb_room_has_waiters'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION booking.room_has_waiters IS 'take the room''s lock, then: does anyone wait in its queue (a waitlist entry with status waiting, whoever''s)?';

-- An entry's place in its queue: 1 + the waiting entries of the same room
-- ahead of it whose slot overlaps its own (those it waits behind).  Reads
-- everyone's entries (times only), hence SECURITY DEFINER.
-- PL/pgSQL, the entry first and then its room's queue: Citus plans neither
-- an SQL function's parameter over a distributed table nor this count as a
-- correlated subquery (docs/citus.md); naming the room routes it to one
-- shard.
-- The place in a room's queue of a slot [s, e) joined at (created, entry):
-- 1 + the older waiting entries whose slots overlap it.  It counts entries
-- the caller's policies hide, hence SECURITY DEFINER; api.join_waitlist asks
-- it before the caller writes anything (under the room's lock, with entry =
-- the greatest id: after every entry there is), because on Citus a query as
-- another role on the room's shards (co-located: one connection per role)
-- after the caller wrote one of them is refused (docs/citus.md, finding 22).
CREATE FUNCTION booking.waitlist_place(room bigint, s timestamptz, e timestamptz, created timestamptz, entry bigint)
RETURNS integer
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN 1 + (SELECT count(*)::integer FROM booking.waitlist o
                 WHERE o.room_id = room AND o.status = 'waiting'
                   AND o.starts_at < e AND o.ends_at > s
                   AND (o.created_at, o.id) < (created, entry));
END
$$;
COMMENT ON FUNCTION booking.waitlist_place IS 'the place (1: next) in a room''s queue of a slot joined at (created, entry): one more than the older waiting entries whose slots overlap it';

CREATE FUNCTION booking.waitlist_position(entry_id bigint) RETURNS integer
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    w booking.waitlist;
BEGIN
    SELECT * INTO w FROM booking.waitlist x WHERE x.id = entry_id;
    IF w.status IS DISTINCT FROM 'waiting' THEN
        RETURN NULL;
    END IF;
    RETURN booking.waitlist_place(w.room_id, w.starts_at, w.ends_at, w.created_at, w.id);
END
$$;
COMMENT ON FUNCTION booking.waitlist_position IS 'a waiting entry''s place in its room''s queue (1: next), counting the older waiting entries whose slots overlap its own; NULL when not waiting';

-- An entry as the api answers it, with its place when known (join_waitlist
-- knows it before writing the entry); otherwise it is looked up, only for
-- an entry that is waiting (one withdrawn has none: nothing is read).
CREATE FUNCTION booking.waitlist_json(w booking.waitlist, place integer) RETURNS jsonb
LANGUAGE sql STABLE
AS $$
    SELECT jsonb_build_object('id', w.id, 'room_id', w.room_id, 'user_id', w.user_id, 'title', w.title,
                              'starts_at', w.starts_at, 'ends_at', w.ends_at, 'status', w.status,
                              'position', place, 'booking_id', w.booking_id,
                              'created_at', w.created_at, 'updated_at', w.updated_at)
$$;
CREATE FUNCTION booking.waitlist_json(w booking.waitlist) RETURNS jsonb
LANGUAGE sql STABLE
AS $$
    SELECT booking.waitlist_json(w, CASE WHEN w.status = 'waiting' THEN booking.waitlist_position(w.id) END)
$$;

-- The event of a change of an entry, queued like every other (emit_events).
CREATE FUNCTION booking.waitlist_event(kind text, w booking.waitlist) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM booking.emit_events(jsonb_build_array(jsonb_build_object(
        'kind', kind, 'entity', 'waitlist', 'entity_id', w.id::text,
        'payload', jsonb_build_object('id', w.id, 'room_id', w.room_id, 'user_id', w.user_id,
                                      'starts_at', w.starts_at, 'ends_at', w.ends_at,
                                      'status', w.status, 'booking_id', w.booking_id))));
END
$$;

-- The promotion.  Offers the time [s, e) of a room (widened by the room's
-- buffers: a freed booking also frees the gap around it) to the room's
-- waiting entries that touch it, oldest first; each becomes a booking if
-- the conflict check lets its INSERT through, else it waits on.  Entries
-- whose slot has started, or of deactivated users, are passed over (the
-- tick expires the former).  Takes the room's lock first (see above);
-- SECURITY DEFINER: the freeing transaction is usually someone else's, and
-- the booking is the entry owner's.  The bookings it inserts pass
-- bookings_before_check_waitlist without promoting again
-- (booking.waitlist_promoting, set for the INSERT only).
CREATE FUNCTION booking.promote_waitlist(room_id bigint, s timestamptz, e timestamptz) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r booking.rooms;
    w booking.waitlist;
    b booking.bookings;
    gap interval;
    st text;
    expires timestamptz;
    at timestamptz;
    n integer := 0;
BEGIN
    SELECT * INTO r FROM booking.rooms x WHERE x.id = promote_waitlist.room_id;
    IF r.id IS NULL THEN
        RETURN 0;
    END IF;
    gap := booking.clash_gap(r.buffer_before_minutes, r.buffer_after_minutes);
    PERFORM booking.lock_room(r.id);
    -- Each statement below sees every entry committed before the lock was granted.
    FOR w IN SELECT x.* FROM booking.waitlist x JOIN booking.users u ON u.id = x.user_id AND u.active
              WHERE x.room_id = r.id AND x.status = 'waiting' AND x.starts_at > now()
                AND x.starts_at < e + gap AND x.ends_at > s - gap
              ORDER BY x.created_at, x.id
                FOR UPDATE OF x
    LOOP
        -- The conflict check's own look, to spare a subtransaction for a
        -- slot plainly still taken; the INSERT's check decides.
        -- (On Citus the coordinator holds no bookings to look at: there
        -- the INSERT's check on the room's shard alone decides.)
        CONTINUE WHEN booking.citus_node() IS NULL
                  AND booking.booking_conflicts(r.id, w.starts_at, w.ends_at) IS NOT NULL;
        st := 'confirmed';
        expires := NULL;
        IF r.requires_approval
           AND (SELECT u.role::text FROM booking.users u WHERE u.id = w.user_id) NOT IN ('admin', 'facility_manager') THEN
            st := 'pending';
            expires := now() + make_interval(mins => r.approval_expiry_minutes);
        END IF;
        BEGIN
            PERFORM set_config('booking.waitlist_promoting', 'on', true);
            INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at, status, hold_expires_at)
            VALUES (r.id, w.user_id, w.title, w.starts_at, w.ends_at, st, expires) RETURNING * INTO b;
            PERFORM set_config('booking.waitlist_promoting', 'off', true);
        EXCEPTION WHEN SQLSTATE 'PT409' OR SQLSTATE 'PT422' THEN
            -- BOOKING_CONFLICT: does not fit; 422: the room is inactive.
            CONTINUE;
        END;
        -- The clock read first, and the room named: Citus refuses a
        -- VOLATILE function in an UPDATE of a distributed table, and the
        -- room routes it to one shard.
        at := clock_timestamp();
        UPDATE booking.waitlist x SET status = 'promoted', booking_id = b.id, updated_at = at
         WHERE x.id = w.id AND x.room_id = r.id RETURNING * INTO w;
        PERFORM booking.waitlist_event('waitlist.promoted', w);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION booking.promote_waitlist IS 'offer [s, e) of a room (buffers included) to its waiting entries, oldest first: each whose INSERT the conflict check lets through becomes a booking (confirmed, or pending in an approval room), with a waitlist.promoted event; returns how many';

CREATE FUNCTION booking.waitlist_freed() RETURNS trigger
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- On a Citus shard (docs/citus.md) the promotion would run distributed
    -- queries from inside the shard's statement, which Citus refuses: the
    -- waitlist is not promoted there (docs/citus.md, missing).
    IF TG_TABLE_NAME <> 'bookings' THEN
        RETURN NULL;
    END IF;
    -- Only a row that may have occupied its room frees anything.
    IF NOT booking.status_occupies(OLD.status) THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' OR NOT booking.status_occupies(NEW.status)
       OR (NEW.room_id, NEW.starts_at, NEW.ends_at) IS DISTINCT FROM (OLD.room_id, OLD.starts_at, OLD.ends_at) THEN
        PERFORM booking.promote_waitlist(OLD.room_id, OLD.starts_at, OLD.ends_at);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION booking.waitlist_freed IS 'trigger: a booking that stops occupying its room, is deleted or moves offers its old time to the room''s waitlist, in the same transaction (booking.promote_waitlist)';
-- (booking.room_has_waiters: see bookings_before_check_waitlist below.)
CREATE TRIGGER bookings_waitlist_freed
    AFTER UPDATE OF room_id, starts_at, ends_at, status OR DELETE ON booking.bookings
    FOR EACH ROW WHEN (booking.room_has_waiters(OLD.room_id))
    EXECUTE FUNCTION booking.waitlist_freed();

CREATE FUNCTION booking.waitlist_first() RETURNS trigger
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- (A Citus shard: see booking.waitlist_freed.)
    IF TG_TABLE_NAME <> 'bookings' OR current_setting('booking.waitlist_promoting', true) = 'on'
       OR NOT booking.booking_occupies(NEW.status, NEW.hold_expires_at, now()) THEN
        RETURN NEW;
    END IF;
    -- A booking staying where it occupied already takes nothing new.
    IF TG_OP = 'UPDATE' AND (NEW.room_id, NEW.starts_at, NEW.ends_at) = (OLD.room_id, OLD.starts_at, OLD.ends_at)
       AND booking.booking_occupies(OLD.status, OLD.hold_expires_at, now()) THEN
        RETURN NEW;
    END IF;
    PERFORM booking.promote_waitlist(NEW.room_id, NEW.starts_at, NEW.ends_at);
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION booking.waitlist_first IS 'trigger, before the conflict check: the waiting entries a booking''s time touches are promoted first when their slot is free (an expired hold frees it without a transaction), so no newcomer jumps the queue';
-- The name sorts before bookings_conflict_check: BEFORE triggers fire in name order.
-- The WHEN is booking.room_has_waiters alone: a room without a queue never
-- runs the function.  (Not also booking.status_occupies: PostgreSQL
-- prepares a trigger's WHEN for every statement it fires in, and inlining
-- an SQL function there costs an insert more than the rest of the check.)
CREATE TRIGGER bookings_before_check_waitlist
    BEFORE INSERT OR UPDATE OF room_id, starts_at, ends_at, status, hold_expires_at ON booking.bookings
    FOR EACH ROW WHEN (booking.room_has_waiters(NEW.room_id))
    EXECUTE FUNCTION booking.waitlist_first();

-- The worker's minute tick (at: its clock, booking.checkout_clock()).
CREATE FUNCTION booking.expire_waitlist(at timestamptz DEFAULT now()) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    w booking.waitlist;
    q record;
    now_at timestamptz;
    n integer := 0;
BEGIN
    IF at IS NULL THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'at is required', jsonb_build_object('field', 'at'));
    END IF;
    -- Room by room, each room's lock before its entries' (the order a
    -- promotion and a withdrawal take them in, so none waits for another
    -- in turn).
    FOR q IN SELECT x.room_id FROM booking.waitlist x WHERE x.status = 'waiting'
              GROUP BY x.room_id ORDER BY x.room_id
    LOOP
        PERFORM booking.lock_room(q.room_id);
        -- (The clock read first: Citus refuses clock_timestamp() in an
        -- UPDATE of a distributed table.)
        now_at := clock_timestamp();
        FOR w IN UPDATE booking.waitlist x SET status = 'expired', updated_at = now_at
                  WHERE x.room_id = q.room_id AND x.status = 'waiting' AND x.starts_at <= at RETURNING x.*
        LOOP
            PERFORM booking.waitlist_event('waitlist.expired', w);
            n := n + 1;
        END LOOP;
        n := n + booking.promote_waitlist(q.room_id, '-infinity', 'infinity');
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION booking.expire_waitlist IS 'expire the waiting entries whose slot has started by instant at, then offer every room''s free slots to its queue once more (the background worker calls it every minute); returns how many entries expired or were promoted';

-- POST /rooms/{room_id}/waitlist.  The slot must be taken right now: the
-- conflict check says so on a trial booking that is rolled back (so a free
-- slot, an inactive room and bad times are refused exactly as a booking
-- would be), after the queue ahead has been given its chance (promoted
-- entries may be what takes the slot).  Under the room's lock throughout.
CREATE FUNCTION api.join_waitlist(room_id bigint, starts_at text, ends_at text, title text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    uid bigint := booking.require_user();
    s timestamptz;
    e timestamptz;
    w booking.waitlist;
    free boolean;
    mine bigint;
    place integer;
BEGIN
    PERFORM booking.require_role('user', 'admin', 'facility_manager', 'moderator');
    PERFORM booking.validate_title(title);
    s := booking.parse_instant(starts_at, 'starts_at');
    e := booking.parse_instant(ends_at, 'ends_at');
    PERFORM booking.check_booking_times(s, e);
    IF s <= now() THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('the slot started at %s: a waitlist entry waits for a slot still to come', to_json(s) #>> '{}'),
            jsonb_build_object('field', 'starts_at'));
    END IF;
    PERFORM booking.find_room(room_id);
    PERFORM booking.lock_room(room_id);
    -- Entries whose slot is free by now go first.  (Not on Citus: the
    -- promotion writes the room's shards as the owner, after which Citus
    -- refuses the caller's own queries there (docs/citus.md, finding 22);
    -- there the minute tick's sweep promotes.)
    IF booking.citus_node() IS NULL THEN
        PERFORM booking.promote_waitlist(room_id, s, e);
    END IF;
    -- The entry's place, counted before the caller writes anything in the
    -- room's shards (booking.waitlist_place); nobody joins meanwhile.
    place := booking.waitlist_place(room_id, s, e, clock_timestamp(), 9223372036854775807);
    SELECT x.id INTO mine FROM booking.waitlist x
     WHERE x.room_id = join_waitlist.room_id AND x.user_id = uid AND x.status = 'waiting'
       AND x.starts_at = s AND x.ends_at = e;
    IF mine IS NOT NULL THEN
        PERFORM booking.raise_error(409, 'WAITLIST_DUPLICATE',
            format('you are already waiting for room %s at that time (entry %s)', room_id, mine),
            jsonb_build_object('room_id', room_id, 'waitlist_id', mine));
    END IF;
    BEGIN
        PERFORM set_config('booking.waitlist_promoting', 'on', true);
        INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
        VALUES (room_id, uid, btrim(title), s, e);
        RAISE EXCEPTION USING ERRCODE = 'PTW01';    -- roll the trial back (never escapes)
    EXCEPTION
        WHEN SQLSTATE 'PTW01' THEN free := true;
        WHEN SQLSTATE 'PT409' THEN free := false;   -- BOOKING_CONFLICT: taken
    END;
    IF free THEN
        PERFORM booking.raise_error(409, 'WAITLIST_SLOT_FREE',
            format('room %s is free at that time: book it instead of waiting', room_id),
            jsonb_build_object('room_id', room_id, 'starts_at', s, 'ends_at', e),
            'POST /bookings books a free slot.');
    END IF;
    INSERT INTO booking.waitlist (room_id, user_id, title, starts_at, ends_at)
    VALUES (room_id, uid, btrim(title), s, e) RETURNING * INTO w;
    PERFORM booking.waitlist_event('waitlist.joined', w);
    RETURN booking.waitlist_json(w, place);
END
$$;
COMMENT ON FUNCTION api.join_waitlist IS 'user+: queue for a slot of a room that is taken right now; the answer has the entry''s position (1: next); when the slot frees the entry becomes a booking in that same transaction; 409 WAITLIST_SLOT_FREE (book it instead), 409 WAITLIST_DUPLICATE, 422 VALIDATION_ERROR (times, a slot that has started, an inactive room), 404';

CREATE FUNCTION api.list_my_waitlist(lim integer DEFAULT 50, off integer DEFAULT 0) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    uid bigint := booking.require_user();
BEGIN
    PERFORM booking.check_page(lim, off);
    RETURN coalesce((
        SELECT jsonb_agg(booking.waitlist_json(x) ORDER BY x.starts_at, x.id)
          FROM (SELECT w.* FROM booking.waitlist w WHERE w.user_id = uid
                 ORDER BY w.starts_at, w.id LIMIT lim OFFSET off) x), '[]');
END
$$;
COMMENT ON FUNCTION api.list_my_waitlist IS 'user+: my waitlist entries by slot, each with its status and, while waiting, its position';

CREATE FUNCTION api.withdraw_waitlist(id bigint) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    w booking.waitlist;
    room bigint;
BEGIN
    PERFORM booking.require_user();
    -- The room's lock before the entry's (as a promotion takes them), so
    -- the two never wait for each other in turn.
    -- (The room named in the lock: Citus refuses FOR UPDATE across shards.)
    SELECT x.room_id INTO room FROM booking.waitlist x WHERE x.id = withdraw_waitlist.id;
    PERFORM booking.lock_room(room);
    SELECT * INTO w FROM booking.waitlist x WHERE x.id = withdraw_waitlist.id AND x.room_id = room FOR UPDATE;
    IF w.id IS NULL THEN
        IF EXISTS (SELECT 1 FROM booking.waitlist x WHERE x.id = withdraw_waitlist.id) THEN
            PERFORM booking.raise_error(403, 'FORBIDDEN',
                format('role "%s" may not change waitlist entry %s', booking.current_app_role(), id),
                jsonb_build_object('waitlist_id', id));
        END IF;
        PERFORM booking.raise_error(404, 'NOT_FOUND', format('waitlist entry %s not found', coalesce(id::text, 'NULL')),
            jsonb_build_object('waitlist_id', id));
    END IF;
    IF w.status <> 'waiting' THEN
        PERFORM booking.raise_error(409, 'INVALID_STATE', format('waitlist entry %s is %s, not waiting', id, w.status),
            jsonb_build_object('waitlist_id', id, 'status', w.status, 'booking_id', w.booking_id));
    END IF;
    w.updated_at := clock_timestamp();
    UPDATE booking.waitlist x SET status = 'withdrawn', updated_at = w.updated_at
     WHERE x.id = withdraw_waitlist.id AND x.room_id = room RETURNING * INTO w;
    PERFORM booking.waitlist_event('waitlist.withdrawn', w);
    RETURN booking.waitlist_json(w);
END
$$;
COMMENT ON FUNCTION api.withdraw_waitlist IS 'owner, admin, facility_manager: leave the queue (status withdrawn); a promoted entry is a booking: cancel that instead; 404, 403, 409 INVALID_STATE';

INSERT INTO booking.http_routes (method, path, function_name, success_status, operation_id, body_argument, public, event_stream) VALUES
    ('POST',   '/rooms/{room_id}/waitlist', 'join_waitlist',     201, NULL, NULL, false, false),
    ('GET',    '/users/me/waitlist',        'list_my_waitlist',  200, NULL, NULL, false, false),
    ('DELETE', '/waitlist/{id}',            'withdraw_waitlist', 200, NULL, NULL, false, false);
INSERT INTO booking.http_schemas (name, schema) VALUES
    ('WaitlistEntry', '{"type": "object", "description": "a place in a room''s queue for a slot; promoted: booking_id is the booking it became",
                        "required": ["booking_id", "created_at", "ends_at", "id", "position", "room_id", "starts_at", "status", "title", "updated_at", "user_id"],
                        "properties": {"id": {"type": "integer", "format": "int64"}, "room_id": {"type": "integer", "format": "int64"},
                                       "user_id": {"type": "integer", "format": "int64"}, "title": {"type": "string"},
                                       "starts_at": {"type": "string", "format": "date-time"},
                                       "ends_at": {"type": "string", "format": "date-time"},
                                       "status": {"type": "string", "enum": ["waiting", "promoted", "expired", "withdrawn"]},
                                       "position": {"type": "integer", "nullable": true, "description": "while waiting: 1 + the older waiting entries of the room whose slots overlap this one"},
                                       "booking_id": {"type": "integer", "format": "int64", "nullable": true},
                                       "created_at": {"type": "string", "format": "date-time"},
                                       "updated_at": {"type": "string", "format": "date-time"}}}');
INSERT INTO booking.http_results (function_name, schema) VALUES
    ('join_waitlist', '{"$ref": "#/components/schemas/WaitlistEntry"}'),
    ('list_my_waitlist', '{"type": "array", "items": {"$ref": "#/components/schemas/WaitlistEntry"}}'),
    ('withdraw_waitlist', '{"$ref": "#/components/schemas/WaitlistEntry"}');

REVOKE EXECUTE ON FUNCTION booking.lock_room(bigint), booking.room_has_waiters(bigint), booking.waitlist_position(bigint),
    booking.waitlist_place(bigint, timestamptz, timestamptz, timestamptz, bigint), booking.waitlist_json(booking.waitlist, integer),
    booking.waitlist_json(booking.waitlist), booking.waitlist_event(text, booking.waitlist),
    booking.promote_waitlist(bigint, timestamptz, timestamptz), booking.waitlist_freed(), booking.waitlist_first(),
    booking.expire_waitlist(timestamptz),
    api.join_waitlist(bigint, text, text, text), api.list_my_waitlist(integer, integer), api.withdraw_waitlist(bigint)
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION booking.lock_room(bigint), booking.room_has_waiters(bigint), booking.waitlist_position(bigint),
    booking.waitlist_place(bigint, timestamptz, timestamptz, timestamptz, bigint), booking.waitlist_json(booking.waitlist, integer),
    booking.waitlist_json(booking.waitlist), booking.waitlist_event(text, booking.waitlist),
    booking.promote_waitlist(bigint, timestamptz, timestamptz),
    api.join_waitlist(bigint, text, text, text), api.list_my_waitlist(integer, integer), api.withdraw_waitlist(bigint)
  TO booking_api;

-- ==== Citus: one event stream, on the coordinator (issue 16) ====
--
-- The events of a distributed table's rows are queued and published on the
-- worker node that holds the row's shard (their triggers fire there, and
-- booking.events and booking.event_queue stay plain tables on each node).
-- The coordinator's publisher gathers what each worker has published into
-- its own booking.events, in each worker's id order, in the same publish as
-- the coordinator's own queue: GET /events and the event stream on the
-- coordinator carry the whole cluster's events, with the promise of a single
-- node (the ids of a publish follow every earlier one; a reader after the
-- last id it saw misses none and sees none twice).
--
-- A worker's published events are a prefix of its ids at any instant (its
-- publisher's promise), so "after the last id gathered from it" misses none.
-- booking.event_sources keeps that id per worker group, written in the same
-- transaction as the gathered rows: a publish that fails gathers the same
-- events again, and none is gathered twice.  The workers are asked over
-- connections of their own (run_command_on_workers, a read): a worker that
-- does not answer is skipped with a warning, and its events wait on it
-- until it does.  The coordinator's publisher looks every 100 ms (it is not
-- woken by commits on the workers).
CREATE TABLE booking.event_sources (
    node_group  integer PRIMARY KEY,
    last_id     bigint NOT NULL,
    gathered_at timestamptz NOT NULL
);
COMMENT ON TABLE booking.event_sources IS 'Citus coordinator: per worker node group, the last id of its booking.events gathered into this node''s booking.events (booking.gather_worker_events)';
ALTER TABLE booking.event_sources ENABLE ROW LEVEL SECURITY;
-- Restored with the gathered events, so a restore gathers nothing twice.
SELECT pg_catalog.pg_extension_config_dump('booking.event_sources', '');

-- Run on a worker node: its published events after the id the coordinator
-- names for this node's group ({"<group>": <last id>}), at most max_events.
CREATE FUNCTION booking.events_after(after jsonb, max_events integer)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    node_group integer;
    since bigint;
BEGIN
    SELECT g.groupid INTO node_group FROM pg_catalog.pg_dist_local_group g;
    since := coalesce((after ->> node_group::text)::bigint, 0);
    RETURN jsonb_build_object('group', node_group, 'events',
        coalesce((SELECT jsonb_agg(to_jsonb(e) ORDER BY e.id)
                    FROM (SELECT x.* FROM booking.events x WHERE x.id > since ORDER BY x.id LIMIT max_events) e),
                 '[]'::jsonb));
END
$$;
COMMENT ON FUNCTION booking.events_after IS 'Citus worker node: its published events after the coordinator''s last gathered id for this node''s group, as {"group": g, "events": [...]}';
REVOKE EXECUTE ON FUNCTION booking.events_after(jsonb, integer) FROM PUBLIC;

-- Run on the coordinator by booking.publish_events, under its lock: append
-- each worker's new events to booking.events; returns how many and the
-- greatest id given.
CREATE FUNCTION booking.gather_worker_events(max_events integer, OUT gathered integer, OUT last_id bigint)
RETURNS record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    after jsonb;
    answer record;
    d jsonb;
    n integer;
    top bigint;
BEGIN
    gathered := 0;
    SELECT coalesce(jsonb_object_agg(s.node_group::text, s.last_id), '{}'::jsonb) INTO after FROM booking.event_sources s;
    FOR answer IN
        SELECT c.nodename, c.nodeport, c.success, c.result
          FROM pg_catalog.run_command_on_workers(format('SELECT booking.events_after(%L, %s)', after, max_events)) c
         ORDER BY c.nodename, c.nodeport
    LOOP
        IF NOT answer.success THEN
            RAISE WARNING 'pg_booking events: the worker node %:% did not answer; its events are gathered when it does',
                answer.nodename, answer.nodeport
                USING DETAIL = coalesce(answer.result, '');
            CONTINUE;
        END IF;
        d := answer.result::jsonb;
        IF jsonb_array_length(d -> 'events') = 0 THEN
            CONTINUE;
        END IF;
        WITH appended AS (
            INSERT INTO booking.events (at, kind, entity, entity_id, user_id, payload)
            SELECT (e ->> 'at')::timestamptz, e ->> 'kind', e ->> 'entity', e ->> 'entity_id',
                   (e ->> 'user_id')::bigint, e -> 'payload'
              FROM jsonb_array_elements(d -> 'events') WITH ORDINALITY AS x(e, k)
             ORDER BY x.k
            RETURNING id)
        SELECT count(*), max(a.id) INTO n, top FROM appended a;
        INSERT INTO booking.event_sources (node_group, last_id, gathered_at)
        VALUES ((d ->> 'group')::integer, (d -> 'events' -> -1 ->> 'id')::bigint, clock_timestamp())
        ON CONFLICT (node_group) DO UPDATE SET last_id = EXCLUDED.last_id, gathered_at = EXCLUDED.gathered_at;
        gathered := gathered + n;
        last_id := greatest(last_id, top);
    END LOOP;
END
$$;
COMMENT ON FUNCTION booking.gather_worker_events IS 'Citus coordinator: append the events the worker nodes published since the last gathering to booking.events (in each worker''s order), recording how far in booking.event_sources; called by booking.publish_events';
REVOKE EXECUTE ON FUNCTION booking.gather_worker_events(integer) FROM PUBLIC;

-- ==== routes of the sections above that come before booking.http_routes or after it (issues 9, 15) ====
-- (booking.http_routes is declared in section "HTTP routes declared once".)
INSERT INTO booking.http_routes (method, path, function_name, success_status, operation_id, body_argument, public, event_stream) VALUES
    ('PUT',  '/hotels/{hotel_id}/currency',              'set_hotel_currency',      200, NULL, NULL, false, false),
    ('PUT',  '/inventory/{hotel_id}/rates',              'set_rates',               200, NULL, NULL, false, false),
    ('POST', '/reservations/quote',                      'quote_reservation',       200, NULL, NULL, false, false),
    ('PUT',  '/hotels/{hotel_id}/cancellation-policy',   'set_cancellation_policy', 200, NULL, NULL, false, false),
    ('GET',  '/admin/analytics/hotels/{hotel_id}/kpis',  'analytics_hotel_kpis',    200, NULL, NULL, false, false),
    ('GET',  '/admin/audit',                             'list_audit',              200, NULL, NULL, false, false);
-- The route is a row of booking.http_routes, not the COMMENT (which says
-- who and what): comments written in the older style lose their route.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_proc p
              WHERE p.pronamespace = 'api'::regnamespace
                AND obj_description(p.oid, 'pg_proc') ~ '^(GET|PUT|POST|PATCH|DELETE) [^ ]+ \('
    LOOP
        EXECUTE format('COMMENT ON FUNCTION %s IS %L', f,
                       regexp_replace(obj_description(f, 'pg_proc'),
                                      '^(GET|PUT|POST|PATCH|DELETE) [^ ]+ \(([^)]*)\)', '\2'));
    END LOOP;
END
$$;

-- ==== backup: what pg_dump keeps (issue 8) ====
--
-- Every table of an extension belongs to it, so pg_dump writes only CREATE
-- EXTENSION and no rows, unless the table is registered here as
-- configuration (https://www.postgresql.org/docs/15/extend-extensions.html,
-- "Extension Configuration Tables").  The rule: a table holding what users
-- or operators wrote is dumped, and so is the sequence behind its identity
-- column (registered at the end of this section for every registered
-- table; pg_dump then writes its setval, so restored ids continue and are
-- never handed out twice).  Tables added later are registered in the
-- section that adds them; t/061_dump_restore.pl compares every table of the
-- extension after a dump and restore, so a forgotten one fails it.
--
-- Restoring runs no business trigger a second time: scripts/restore.sh runs
-- pg_restore with session_replication_role = replica, in which ordinary
-- (ENABLE ORIGIN) triggers do not fire, so a restored reservation does not
-- take its nights again, counters are not counted twice and no event is
-- written or announced again.  The rows come back exactly as they were
-- dumped, from one snapshot, so they are consistent with each other
-- (inventory with reservations, counters with bookings).  None of our
-- triggers may be ENABLE ALWAYS (the test checks); the two ENABLE REPLICA
-- triggers below only merge restored rate-limit rules with the defaults.

-- People and their sessions.  Refresh tokens are stored hashed; dumping
-- them keeps users signed in across a restore and, above all, keeps revoked
-- tokens revoked.
SELECT pg_catalog.pg_extension_config_dump('booking.users', '');
SELECT pg_catalog.pg_extension_config_dump('booking.refresh_tokens', '');

-- Meeting rooms, their bookings, and the free time people published.
SELECT pg_catalog.pg_extension_config_dump('booking.rooms', '');
SELECT pg_catalog.pg_extension_config_dump('booking.bookings', '');
SELECT pg_catalog.pg_extension_config_dump('booking.user_availability', '');

-- Hotels.  inventory.available is kept by the reservations trigger; it is
-- dumped as it stands (same snapshot as the reservations), and the restore
-- does not run the trigger, so nights are neither taken nor given twice.
-- Reservation ids are uuids: no sequence.
SELECT pg_catalog.pg_extension_config_dump('booking.hotels', '');
SELECT pg_catalog.pg_extension_config_dump('booking.inventory', '');
SELECT pg_catalog.pg_extension_config_dump('booking.stay_restrictions', '');
SELECT pg_catalog.pg_extension_config_dump('booking.reservations', '');

-- The nightly checkout's history: "once per business day" is decided by
-- these rows, so without them a restored database would run every day
-- again.
SELECT pg_catalog.pg_extension_config_dump('booking.checkout_runs', '');

-- Reviews, votes and flags.
SELECT pg_catalog.pg_extension_config_dump('booking.reviews', '');
SELECT pg_catalog.pg_extension_config_dump('booking.review_votes', '');
SELECT pg_catalog.pg_extension_config_dump('booking.review_flags', '');

-- Analytics counters (derived: kept by the count_* triggers).  Dumped, not
-- rebuilt: they come from the same snapshot as the bookings and reviews they
-- count, the restore does not fire the triggers, so they are right as
-- restored (booking.analytics_check() says so) and a plain pg_restore with
-- our settings needs no extra step.
SELECT pg_catalog.pg_extension_config_dump('booking.room_booking_counts', '');
SELECT pg_catalog.pg_extension_config_dump('booking.room_rating_counts', '');

-- The events log: consumers resume after the last id they saw, so the rows
-- and the id sequence come back as they were.
SELECT pg_catalog.pg_extension_config_dump('booking.events', '');

-- Rate-limit rules.  CREATE EXTENSION seeds the default rules, so a restore
-- (which runs CREATE EXTENSION first) would collide with dumped copies of
-- them.  The seeded rows are marked and left out of the dump, so a restore
-- gets the defaults of the version it installs; a rule someone added or
-- edited (any change clears "seeded", trigger below) is dumped, and on
-- restore it replaces the row of its endpoint that CREATE EXTENSION just
-- made (rate_limits_restore, fired in replica mode only, i.e. by the
-- restore), so nothing collides even if a seed was not marked.  A section
-- below this one that seeds rules inserts them with seeded = true.  A
-- deleted rule is remembered in booking.rate_limits_deleted (dumped), and
-- the restore deletes the default CREATE EXTENSION made for it again, so a
-- default someone removed stays removed.
ALTER TABLE booking.rate_limits ADD COLUMN seeded boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN booking.rate_limits.seeded IS
'true for a default rule as an extension script made it (not dumped); any change of the rule clears it';
CREATE TABLE booking.rate_limits_deleted (
    endpoint   text PRIMARY KEY,
    deleted_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE booking.rate_limits_deleted IS
'rate-limit rules deleted (and not made again): a restore deletes the defaults CREATE EXTENSION seeds for them';
GRANT SELECT ON booking.rate_limits_deleted TO booking_admin, booking_auditor;

-- The seeds: the rows this script's own transaction wrote (a fresh install:
-- every row; an upgrade: those of the sections above), and the 1.0
-- defaults a database upgraded from 1.0 still has unedited; a 1.0 default
-- it no longer has was deleted.  Bookkeeping, not a change of a rule: no
-- trigger (validation, audit) is to see it.
DO $$
DECLARE
    prev text := current_setting('session_replication_role');
    defaults_1_0 jsonb := '[
        {"endpoint": "login",              "max_requests": 5,  "window_length": "10 seconds", "key_kind": "ip",   "exempt_roles": []},
        {"endpoint": "register",           "max_requests": 10, "window_length": "1 hour",     "key_kind": "ip",   "exempt_roles": []},
        {"endpoint": "create_booking",     "max_requests": 30, "window_length": "1 minute",   "key_kind": "user", "exempt_roles": ["admin", "service_account"]},
        {"endpoint": "create_reservation", "max_requests": 30, "window_length": "1 minute",   "key_kind": "user", "exempt_roles": ["admin", "service_account"]},
        {"endpoint": "create_review",      "max_requests": 10, "window_length": "1 hour",     "key_kind": "user", "exempt_roles": ["admin", "service_account"]}]';
BEGIN
    PERFORM set_config('session_replication_role', 'replica', true);
    UPDATE booking.rate_limits l SET seeded = true
     WHERE l.xmin = pg_current_xact_id()::xid
        OR (l.endpoint, l.max_requests, l.window_length, l.key_kind, l.exempt_roles) IN (
               SELECT d.endpoint, d.max_requests, d.window_length, d.key_kind,
                      ARRAY(SELECT jsonb_array_elements_text(d.exempt_roles))
                 FROM jsonb_to_recordset(defaults_1_0)
                      AS d(endpoint text, max_requests integer, window_length interval, key_kind text, exempt_roles jsonb));
    INSERT INTO booking.rate_limits_deleted (endpoint)
    SELECT d.endpoint FROM jsonb_to_recordset(defaults_1_0) AS d(endpoint text)
     WHERE NOT EXISTS (SELECT 1 FROM booking.rate_limits l WHERE l.endpoint = d.endpoint);
    PERFORM set_config('session_replication_role', prev, true);
END
$$;

CREATE FUNCTION booking.rate_limits_mark_edited() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF (NEW.endpoint, NEW.max_requests, NEW.window_length, NEW.key_kind, NEW.exempt_roles)
       IS DISTINCT FROM (OLD.endpoint, OLD.max_requests, OLD.window_length, OLD.key_kind, OLD.exempt_roles) THEN
        NEW.seeded := false;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION booking.rate_limits_mark_edited IS 'trigger: a rate-limit rule that is changed is no longer a seeded default, so pg_dump keeps it';
CREATE TRIGGER rate_limits_mark_edited BEFORE UPDATE ON booking.rate_limits
    FOR EACH ROW EXECUTE FUNCTION booking.rate_limits_mark_edited();

-- A dumped rule arriving in a restore replaces the rule of its endpoint
-- that CREATE EXTENSION made.  ENABLE REPLICA: it fires only with
-- session_replication_role = replica (the restore, or a logical
-- replication subscriber, where the same replacement is right), never for
-- an ordinary INSERT, which still fails on a duplicate endpoint.  The same
-- function serves the restore of a remembered deletion (below): both drop
-- the rule CREATE EXTENSION made for the endpoint of the row arriving.
CREATE FUNCTION booking.rate_limits_restore() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM booking.rate_limits l WHERE l.endpoint = NEW.endpoint;
    RETURN NEW;     -- ignored when fired AFTER
END
$$;
COMMENT ON FUNCTION booking.rate_limits_restore IS 'trigger (restore only): a restored rate-limit rule, or a restored deletion of one, replaces the rule CREATE EXTENSION made for its endpoint';
CREATE TRIGGER rate_limits_restore BEFORE INSERT ON booking.rate_limits
    FOR EACH ROW EXECUTE FUNCTION booking.rate_limits_restore();
ALTER TABLE booking.rate_limits ENABLE REPLICA TRIGGER rate_limits_restore;

-- A deleted rule is remembered; making a rule for the endpoint again
-- forgets it.
CREATE FUNCTION booking.rate_limits_note_deleted() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO booking.rate_limits_deleted (endpoint) VALUES (OLD.endpoint)
        ON CONFLICT (endpoint) DO UPDATE SET deleted_at = EXCLUDED.deleted_at;
    ELSE
        DELETE FROM booking.rate_limits_deleted d WHERE d.endpoint = NEW.endpoint;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION booking.rate_limits_note_deleted IS 'trigger: remember deleted rate-limit rules (booking.rate_limits_deleted), forget them when made again';
CREATE TRIGGER rate_limits_note_deleted AFTER INSERT OR DELETE ON booking.rate_limits
    FOR EACH ROW EXECUTE FUNCTION booking.rate_limits_note_deleted();

-- In a restore, a remembered deletion deletes the default CREATE EXTENSION
-- just seeded for that endpoint (replica mode only, as above).
CREATE TRIGGER rate_limits_deleted_restore AFTER INSERT ON booking.rate_limits_deleted
    FOR EACH ROW EXECUTE FUNCTION booking.rate_limits_restore();
ALTER TABLE booking.rate_limits_deleted ENABLE REPLICA TRIGGER rate_limits_deleted_restore;

-- Trigger functions: nobody calls them (the 1.0 rule: PUBLIC executes nothing).
REVOKE EXECUTE ON FUNCTION booking.rate_limits_mark_edited(), booking.rate_limits_restore(),
    booking.rate_limits_note_deleted() FROM PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('booking.rate_limits', 'WHERE NOT seeded');
SELECT pg_catalog.pg_extension_config_dump('booking.rate_limits_deleted', '');

-- The sequences behind the identity columns of every table registered so
-- far (here and in the sections above), so that restored ids continue and
-- none is handed out twice.  A section below this one registers its own.
DO $$
DECLARE
    seq regclass;
BEGIN
    FOR seq IN
        SELECT pg_get_serial_sequence(c.oid::regclass::text, a.attname)::regclass
          FROM pg_extension e
         CROSS JOIN LATERAL unnest(e.extconfig) AS cfg(oid)
          JOIN pg_class c ON c.oid = cfg.oid AND c.relkind IN ('r', 'p')
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         WHERE e.extname = 'pg_booking' AND pg_get_serial_sequence(c.oid::regclass::text, a.attname) IS NOT NULL
         ORDER BY c.oid::regclass::text, a.attnum
    LOOP
        PERFORM pg_catalog.pg_extension_config_dump(seq, '');
    END LOOP;
END
$$;
