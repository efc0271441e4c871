-- pg_booking 1.0 → 1.1.
--
-- Every change to the SQL of the extension after 1.0 goes here, in sections
-- by concern; the fresh install of 1.1 is 1.0 followed by this file
-- (Makefile), so both paths run the same statements.  Once 1.1 is released
-- this file is frozen like the 1.0 script.

\echo Use "ALTER EXTENSION pg_booking UPDATE TO '1.1'" to load this file. \quit

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
-- one query: room_busy and user_free are now these for one room or user,
-- so each rule is written once.  Plain SQL functions, so they are inlined
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
                      WHERE b.room_id = r.id AND b.status = 'confirmed'
                        AND b.starts_at < to_ts + interval '480 minutes'
                        AND b.starts_at > from_ts - interval '480 minutes' - interval '24 hours'
                        AND b.starts_at < to_ts + g.gap
                        AND b.starts_at > from_ts - g.gap - interval '24 hours'
                        AND b.ends_at > from_ts - g.gap), '{}'::tstzmultirange)
      FROM booking.rooms r
     CROSS JOIN LATERAL (SELECT make_interval(mins => r.buffer_before_minutes + r.buffer_after_minutes) AS gap) g
     WHERE r.id = ANY (room_ids)
$$;
COMMENT ON FUNCTION booking.rooms_busy IS 'for each of the rooms, the intervals in which no new booking may lie (confirmed bookings widened by buffers); call from SECURITY DEFINER functions';

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
                      WHERE b.user_id = u.id AND b.status = 'confirmed'
                        AND b.starts_at < upper(win) AND b.starts_at > lower(win) - interval '24 hours'
                        AND b.ends_at > lower(win)), '{}'::tstzmultirange)
      FROM unnest(user_ids) u(id)
$$;
COMMENT ON FUNCTION booking.users_free IS 'for each of the users, the intervals of a window in which they are free (published availability minus their own confirmed bookings); call from SECURITY DEFINER functions';

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
