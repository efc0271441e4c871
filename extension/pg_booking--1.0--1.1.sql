-- pg_booking 1.0 → 1.1.
--
-- Every change to the SQL of the extension after 1.0 goes here, in sections
-- by concern; the fresh install of 1.1 is 1.0 followed by this file
-- (Makefile), so both paths run the same statements.  Once 1.1 is released
-- this file is frozen like the 1.0 script.

\echo Use "ALTER EXTENSION pg_booking UPDATE TO '1.1'" to load this file. \quit

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

-- The events log: its newest id and the events not yet announced.  Every
-- event is announced in its writer's commit today, so the backlog is 0; the
-- events outbox (issue 11) redefines this function to count what its
-- publisher has not published yet.
CREATE FUNCTION booking.metrics_events()
RETURNS TABLE (last_id bigint, backlog bigint, oldest_unpublished_age_seconds double precision)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT max(id) FROM booking.events), 0), 0::bigint, 0::double precision
$$;
COMMENT ON FUNCTION booking.metrics_events IS
'for the exporter: the newest event id, the events not announced yet and the age of the oldest of them';

REVOKE EXECUTE ON FUNCTION booking.metrics_rate_limits(), booking.metrics_checkout(), booking.metrics_events() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION booking.metrics_rate_limits(), booking.metrics_checkout(), booking.metrics_events()
  TO booking_exporter, booking_grafana;
