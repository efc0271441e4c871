-- Analytics benchmark (run by bench/analytics.sh; variables bookings, rooms,
-- reads, inserts, summary: the file for the summary lines).  Figures are medians of :reads runs, in milliseconds, each read
-- materialising its whole result so neither side can skip work.
\set QUIET on
SET client_min_messages = warning;
CREATE EXTENSION pg_booking CASCADE;

INSERT INTO booking.rooms (name, location, capacity)
SELECT 'Room ' || i, 'HQ', 8 FROM generate_series(1, :rooms) i;
INSERT INTO booking.users (email, full_name, password_hash)
SELECT 'user' || i || '@example.com', 'User ' || i, 'x' FROM generate_series(1, 500) i;

-- Load: the bookings do not overlap by construction (each room's are two
-- hours apart), so the per-row conflict check and the event log are off for
-- the bulk load; the counting trigger stays on and keeps the counters as
-- the rows arrive.  Batches of 50,000 rows, each its own transaction.
ALTER TABLE booking.bookings DISABLE TRIGGER bookings_conflict_check;
ALTER TABLE booking.bookings DISABLE TRIGGER bookings_event_insert;
CREATE PROCEDURE bench_load(total integer, rooms integer) LANGUAGE plpgsql AS $$
DECLARE
    batch constant integer := 50000;
BEGIN
    FOR lo IN 0 .. total - 1 BY batch LOOP
        INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at, status)
        SELECT 1 + i % rooms, 1 + i % 500, 'bench',
               timestamptz '2030-01-01 00:00+00' + make_interval(hours => 2 * (i / rooms)),
               timestamptz '2030-01-01 01:00+00' + make_interval(hours => 2 * (i / rooms)),
               CASE WHEN i % 10 < 7 THEN 'confirmed' WHEN i % 10 < 9 THEN 'cancelled' ELSE 'completed' END
          FROM generate_series(lo, least(lo + batch, total) - 1) i;
        COMMIT;
    END LOOP;
END
$$;
SELECT clock_timestamp() AS t0 \gset
CALL bench_load(:bookings, :rooms);
SELECT round(extract(epoch FROM clock_timestamp() - :'t0'::timestamptz)::numeric, 1) AS load_seconds \gset
VACUUM ANALYZE booking.bookings;
VACUUM ANALYZE booking.room_booking_counts;

-- Median duration of :reads runs of a query, in ms, and its result.
CREATE FUNCTION bench_read(query text, runs integer, OUT median_ms numeric, OUT result text)
LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz;
    times numeric[] := '{}';
BEGIN
    FOR i IN 1 .. runs LOOP
        t0 := clock_timestamp();
        EXECUTE format('SELECT array_agg(q)::text FROM (%s) q', query) INTO result;
        times := times || extract(epoch FROM clock_timestamp() - t0) * 1000;
    END LOOP;
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t) INTO median_ms FROM unnest(times) t;
END
$$;

CREATE TEMP TABLE figures (read text, counters_ms numeric, group_by_ms numeric, equal boolean);
INSERT INTO figures
SELECT 'bookings summary', c.median_ms, g.median_ms, c.result = g.result
  FROM bench_read('SELECT total, confirmed, cancelled, completed FROM booking.analytics_bookings_summary', :reads) c,
       bench_read($q$SELECT count(*) AS total, count(*) FILTER (WHERE status = 'confirmed') AS confirmed,
                            count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
                            count(*) FILTER (WHERE status = 'completed') AS completed
                       FROM booking.bookings$q$, :reads) g;
INSERT INTO figures
SELECT 'bookings by room', c.median_ms, g.median_ms, c.result = g.result
  FROM bench_read('SELECT room_id, room_name, total, confirmed, cancelled, completed
                     FROM booking.analytics_bookings_by_room ORDER BY room_id', :reads) c,
       bench_read($q$SELECT r.id, r.name, count(b.id), count(b.id) FILTER (WHERE b.status = 'confirmed'),
                            count(b.id) FILTER (WHERE b.status = 'cancelled'),
                            count(b.id) FILTER (WHERE b.status = 'completed')
                       FROM booking.rooms r LEFT JOIN booking.bookings b ON b.room_id = r.id
                      GROUP BY r.id ORDER BY r.id$q$, :reads) g;

-- What the counting trigger adds to an insert: :inserts single-row inserts
-- with it and without it (each set rolled back), taking turns for five
-- rounds; the medians.
CREATE FUNCTION bench_inserts(n integer, rooms integer) RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
BEGIN
    FOR i IN 1 .. n LOOP
        INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
        VALUES (1 + i % rooms, 1, 'probe', timestamptz '2040-01-01 00:00+00' + make_interval(hours => 2 * i),
                timestamptz '2040-01-01 01:00+00' + make_interval(hours => 2 * i));
    END LOOP;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
END
$$;
CREATE PROCEDURE bench_insert_rounds(n integer, rooms integer, rounds integer,
                                     INOUT with_us numeric, INOUT without_us numeric)
LANGUAGE plpgsql AS $$
DECLARE
    w numeric[] := '{}';
    wo numeric[] := '{}';
BEGIN
    FOR r IN 1 .. rounds LOOP
        w := w || bench_inserts(n, rooms);
        ROLLBACK;
        ALTER TABLE booking.bookings DISABLE TRIGGER bookings_count_insert;
        wo := wo || bench_inserts(n, rooms);
        ROLLBACK;
    END LOOP;
    with_us := (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM unnest(w) x);
    without_us := (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM unnest(wo) x);
END
$$;
CALL bench_insert_rounds(:inserts, :rooms, 5, NULL, NULL) \gset
SELECT :with_us AS with_trigger_us, :without_us AS without_trigger_us \gset

\set QUIET off
\echo
\echo 'analytics: reads from the C-maintained counters vs the same GROUP BY over booking.bookings'
SELECT (SELECT count(*) FROM booking.bookings) AS bookings, (SELECT count(*) FROM booking.rooms) AS rooms,
       :'load_seconds' AS load_seconds_with_counting_trigger,
       (SELECT count(*) FROM booking.analytics_check()) AS counters_differing_from_recount;
SELECT read, round(counters_ms, 3) AS counters_ms, round(group_by_ms, 1) AS group_by_ms,
       round(group_by_ms / nullif(counters_ms, 0)) AS speedup, equal AS results_equal,
       CASE WHEN equal AND group_by_ms / nullif(counters_ms, 0) >= 50 THEN 'met' ELSE 'NOT MET' END AS goal_50x
  FROM figures;
SELECT round(:with_trigger_us, 1) AS insert_us_with_counting_trigger,
       round(:without_trigger_us, 1) AS insert_us_without,
       round(:with_trigger_us - :without_trigger_us, 1) AS trigger_cost_us;
-- The summary lines (scripts/bench_summary.sh): bench, measure, value, goal.
\set QUIET on
\pset format unaligned
\pset tuples_only on
\o :summary
SELECT concat_ws(E'\t', 'analytics', read || ', counters / GROUP BY speedup (x)',
                 CASE WHEN equal THEN round(group_by_ms / nullif(counters_ms, 0))::text ELSE 'unequal' END, '>= 50')
  FROM figures;
SELECT concat_ws(E'\t', 'analytics', 'counting trigger, us per single-row insert', round(:with_trigger_us - :without_trigger_us, 1), '-');
SELECT concat_ws(E'\t', 'analytics', 'counters differing from a recount', count(*), '<= 0') FROM booking.analytics_check();
\o
