-- The nightly checkout (the hotel's night audit): history, the job itself,
-- and its api.  The background worker (extension/checkout_worker.c) runs
-- the same functions once per business day; api.run_checkout runs them on
-- demand for an explicit date.
--
-- Business date D is processed at the run time (pg_booking.checkout_time,
-- local to pg_booking.checkout_time_zone) on the calendar day D: by then the
-- night D-1 has passed.  A run for D
--   - completes confirmed and checked-in stays whose departure date is <= D,
--   - marks confirmed stays that never arrived (arrival < D) as no_show and
--     releases their nights from D on, when checkout_release_no_shows is on,
--   - gives back every night >= D still held by a cancelled, completed or
--     no-show reservation (whatever wrote its status),
--   - completes confirmed meeting-room bookings that ended by the run time.
-- Work is done in batches (one transaction each in the worker), so a large
-- backlog never holds many rows locked at once.

CREATE TABLE booking.checkout_runs (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    business_date      date NOT NULL,
    source             text NOT NULL,
    started_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at        timestamptz,
    completed_stays    integer NOT NULL DEFAULT 0,
    no_shows           integer NOT NULL DEFAULT 0,
    nights_returned    integer NOT NULL DEFAULT 0,
    completed_bookings integer NOT NULL DEFAULT 0,
    error              text,
    CONSTRAINT checkout_runs_source CHECK (source IN ('worker', 'manual'))
);
-- Exactly once per business day: one run that did not fail per date.
CREATE UNIQUE INDEX checkout_runs_once_per_day ON booking.checkout_runs (business_date) WHERE error IS NULL;
CREATE INDEX checkout_runs_date_idx ON booking.checkout_runs (business_date);
COMMENT ON TABLE booking.checkout_runs IS 'nightly checkout history: one row per run (failed runs keep their error)';

-- The run time and zone, as text settings read where they are needed.
CREATE FUNCTION booking.checkout_time() RETURNS time
LANGUAGE sql STABLE
AS $$ SELECT coalesce(nullif(current_setting('pg_booking.checkout_time', true), ''), '03:00')::time $$;
CREATE FUNCTION booking.checkout_time_zone() RETURNS text
LANGUAGE sql STABLE
AS $$ SELECT coalesce(nullif(current_setting('pg_booking.checkout_time_zone', true), ''), 'UTC') $$;

-- The business date whose run is due at instant "at": the local date if
-- the local time has reached the run time, else the day before.  Pure, so
-- DST and zone edges can be tested: on a spring-forward day a run time that
-- does not exist locally (02:30) falls due when the clocks jump past it; on
-- a fall-back day a repeated local time gives the same date twice, which the
-- history runs only once.
CREATE FUNCTION booking.checkout_due_date(at timestamptz, run_time time, time_zone text) RETURNS date
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT CASE WHEN (at AT TIME ZONE time_zone)::time >= run_time
                THEN (at AT TIME ZONE time_zone)::date
                ELSE (at AT TIME ZONE time_zone)::date - 1 END
$$;
COMMENT ON FUNCTION booking.checkout_due_date IS 'the latest business date whose checkout is due at an instant, for a local run time in a time zone';

-- The instant the run of business date d is due (its cut-off for meeting
-- bookings).  A run time skipped by a DST jump maps to the instant after.
CREATE FUNCTION booking.checkout_instant(d date, run_time time, time_zone text) RETURNS timestamptz
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT (d + run_time) AT TIME ZONE time_zone $$;

-- Start (or resume) the run of business date d.  NULL when d already has a
-- finished run that did not fail: a date is processed once.
CREATE FUNCTION booking.checkout_start(d date, source text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r booking.checkout_runs;
BEGIN
    PERFORM booking.require_role('admin');
    IF d IS NULL THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'as_of is required', jsonb_build_object('field', 'as_of'));
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

-- One batch of the run: at most batch_size rows of each kind.  Returns the
-- number of rows changed; 0 when the date is done.
CREATE FUNCTION booking.checkout_batch(run_id bigint, batch_size integer DEFAULT 5000) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d date;
    cutoff timestamptz;
    release boolean := coalesce(nullif(current_setting('pg_booking.checkout_release_no_shows', true), '')::boolean, false);
    n_completed integer;
    n_no_shows integer;
    n_nights integer := 0;
    n_bookings integer;
    n_released integer;
    n integer;
BEGIN
    PERFORM booking.require_role('admin');
    SELECT business_date INTO d FROM booking.checkout_runs WHERE id = run_id AND finished_at IS NULL;
    IF d IS NULL THEN
        PERFORM booking.raise_error(404, 'NOT_FOUND', format('checkout run %s is not in progress', run_id),
            jsonb_build_object('run_id', run_id));
    END IF;
    cutoff := booking.checkout_instant(d, booking.checkout_time(), booking.checkout_time_zone());

    -- Departures: every night held has passed, nothing to give back.
    -- The batch is found by row address (a TID scan, so a batch costs its
    -- size, not the table's), without a FOR UPDATE pass: the UPDATE locks
    -- each row and, when it had to wait for one, re-checks the conditions on
    -- its latest version.
    UPDATE booking.reservations r SET status = 'completed', updated_at = now(),
           checked_out_at = CASE WHEN r.status = 'checked_in' THEN cutoff ELSE r.checked_out_at END
     WHERE r.ctid = ANY (ARRAY(SELECT x.ctid FROM booking.reservations x
                                WHERE x.status IN ('confirmed', 'checked_in') AND x.departure_date <= d
                                LIMIT batch_size))
       AND r.status IN ('confirmed', 'checked_in') AND r.departure_date <= d;
    GET DIAGNOSTICS n_completed = ROW_COUNT;

    -- No-shows: the arrival night passed without a check-in.
    n_no_shows := 0;
    IF release THEN
        WITH due AS (SELECT id, held_until FROM booking.reservations
                      WHERE status = 'confirmed' AND arrival_date < d AND departure_date > d
                      LIMIT batch_size FOR UPDATE),
             upd AS (UPDATE booking.reservations r SET status = 'no_show', updated_at = now(),
                            held_until = greatest(r.arrival_date, least(r.held_until, d))
                       FROM due WHERE r.id = due.id
                     RETURNING due.held_until - r.held_until AS returned)
        SELECT count(*), coalesce(sum(returned), 0) INTO n_no_shows, n FROM upd;
        n_nights := n_nights + n;
    END IF;

    -- Stays that no longer stay but still hold nights from d on.
    WITH due AS (SELECT id, held_until FROM booking.reservations
                  WHERE status IN ('cancelled', 'completed', 'no_show') AND held_until > arrival_date
                    AND held_until > d
                  LIMIT batch_size FOR UPDATE),
         upd AS (UPDATE booking.reservations r SET held_until = greatest(r.arrival_date, d), updated_at = now()
                   FROM due WHERE r.id = due.id
                 RETURNING due.held_until - r.held_until AS returned)
    SELECT count(*), coalesce(sum(returned), 0) INTO n_released, n FROM upd;
    n_nights := n_nights + n;

    -- Meeting-room bookings that ended by the run time.
    WITH due AS (SELECT id FROM booking.bookings
                  WHERE status = 'confirmed' AND ends_at <= cutoff
                  LIMIT batch_size FOR UPDATE)
    UPDATE booking.bookings b SET status = 'completed', updated_at = now() FROM due WHERE b.id = due.id;
    GET DIAGNOSTICS n_bookings = ROW_COUNT;

    UPDATE booking.checkout_runs
       SET completed_stays = completed_stays + n_completed, no_shows = no_shows + n_no_shows,
           nights_returned = nights_returned + n_nights, completed_bookings = completed_bookings + n_bookings
     WHERE id = run_id;
    RETURN n_completed + n_no_shows + n_released + n_bookings;
END
$$;

CREATE FUNCTION booking.checkout_finish(run_id bigint) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ UPDATE booking.checkout_runs SET finished_at = clock_timestamp() WHERE id = run_id AND finished_at IS NULL $$;

-- A failed run: its error is kept, and the date may be run again.
CREATE FUNCTION booking.checkout_failed(d date, run_id bigint, source text, message text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE booking.checkout_runs SET finished_at = clock_timestamp(), error = message
     WHERE id = run_id AND finished_at IS NULL;
    IF NOT FOUND THEN
        INSERT INTO booking.checkout_runs (business_date, source, finished_at, error)
        VALUES (d, source, clock_timestamp(), message);
    END IF;
END
$$;

CREATE FUNCTION booking.checkout_run_json(r booking.checkout_runs) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object('id', r.id, 'business_date', r.business_date, 'source', r.source,
                              'started_at', r.started_at, 'finished_at', r.finished_at,
                              'completed_stays', r.completed_stays, 'no_shows', r.no_shows,
                              'nights_returned', r.nights_returned, 'completed_bookings', r.completed_bookings,
                              'error', r.error)
$$;

-- The whole run of one date in the caller's transaction (the api's path).
CREATE FUNCTION booking.checkout_run(d date, source text DEFAULT 'manual') RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    run_id bigint := booking.checkout_start(d, source);
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

GRANT EXECUTE ON FUNCTION booking.checkout_time(), booking.checkout_time_zone(),
    booking.checkout_due_date(timestamptz, time, text), booking.checkout_instant(date, time, text),
    booking.checkout_start(date, text), booking.checkout_batch(bigint, integer), booking.checkout_finish(bigint),
    booking.checkout_run(date, text), booking.checkout_run_json(booking.checkout_runs)
  TO booking_admin;

CREATE FUNCTION api.run_checkout(as_of text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    d date;
    run_id bigint;
    r booking.checkout_runs;
BEGIN
    PERFORM booking.require_role('admin');
    d := CASE WHEN as_of IS NULL
              THEN booking.checkout_due_date(now(), booking.checkout_time(), booking.checkout_time_zone())
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
COMMENT ON FUNCTION api.run_checkout IS 'POST /admin/jobs/checkout/run {as_of?} (admin): run the nightly checkout for a business date (default: the latest due); idempotent, a date done is not run again';

CREATE FUNCTION api.list_jobs(lim integer DEFAULT 50, off integer DEFAULT 0) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_role('admin');
    PERFORM booking.check_page(lim, off);
    RETURN coalesce((
        SELECT jsonb_agg(jsonb_build_object('job', 'checkout') || booking.checkout_run_json(x)
                         ORDER BY x.business_date DESC, x.id DESC)
          FROM (SELECT * FROM booking.checkout_runs
                 ORDER BY business_date DESC, id DESC LIMIT lim OFFSET off) x), '[]');
END
$$;
COMMENT ON FUNCTION api.list_jobs IS 'GET /admin/jobs (admin): the nightly checkout runs, newest business date first, with counts and errors';
GRANT SELECT ON booking.checkout_runs TO booking_admin;
