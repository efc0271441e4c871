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

CREATE OR REPLACE FUNCTION booking.room_busy(room_id bigint, from_ts timestamptz, to_ts timestamptz)
RETURNS tstzmultirange
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(range_agg(tstzrange(b.starts_at - g.gap, b.ends_at + g.gap)), '{}'::tstzmultirange)
      FROM booking.rooms r
     CROSS JOIN LATERAL (SELECT make_interval(mins => r.buffer_before_minutes + r.buffer_after_minutes) AS gap) g
      JOIN booking.bookings b ON b.room_id = r.id AND booking.status_occupies(b.status)
                             AND b.starts_at < to_ts + g.gap
                             AND b.starts_at > from_ts - g.gap - interval '24 hours'
                             AND b.ends_at > from_ts - g.gap
     WHERE r.id = room_busy.room_id
$$;
COMMENT ON FUNCTION booking.room_busy IS 'intervals of a room in which no new booking may lie (occupying bookings widened by buffers)';

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

CREATE OR REPLACE FUNCTION booking.user_free(user_id bigint, win tstzrange) RETURNS tstzmultirange
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (coalesce((SELECT range_agg(a.during * win) FROM booking.user_availability a
                       WHERE a.user_id = user_free.user_id AND a.during && win), '{}'::tstzmultirange))
         - (coalesce((SELECT range_agg(tstzrange(b.starts_at, b.ends_at)) FROM booking.bookings b
                       WHERE b.user_id = user_free.user_id AND booking.status_occupies(b.status)
                         AND b.starts_at < upper(win) AND b.ends_at > lower(win)), '{}'::tstzmultirange))
$$;

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
    PERFORM pg_advisory_xact_lock(x'5203'::integer, d - date '2000-01-01');
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

-- ==== sessions that end, caller identity (issue 9, issue 11) ====
-- A token stands while its user is active, holds the token's role, and its
-- session has not ended (DESIGN.md, Sessions).  Logins open a session; the
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
    d := booking.rate_limit_charge(r.endpoint, key, r.max_requests, window_ms, greatest(cost, 1), dry_run => dry_run);
    IF NOT d.allowed THEN
        PERFORM booking.raise_error(429, 'RATE_LIMIT_EXCEEDED',
            format('too many requests to "%s"', r.endpoint),
            jsonb_build_object('endpoint', r.endpoint, 'limit', r.max_requests,
                               'window_seconds', trim_scale(window_ms / 1000.0), 'remaining', 0,
                               'retry_after_seconds', ceil(d.retry_after_ms / 1000.0)::bigint,
                               'retry_after_ms', d.retry_after_ms)
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
