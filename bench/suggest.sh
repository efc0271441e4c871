#!/usr/bin/env bash
# Meeting suggestions: api.suggest_meetings against the 1.0 search kept as
# the oracle (test/suggest_meetings_reference.sql), in one run.
#   1. 10 attendees x 50 rooms x one week, 60-minute meeting: both take
#      turns, round after round; medians; the answers compared.
#   2. How booking.meeting_slots grows with attendees (2, 10, 50), rooms
#      (10, 50, 500) and window (1 day, 1 week, 4 weeks; the api takes at
#      most 14 days, so the search is called directly).
# JIT is off for the session (see below).
# Data: test/suggest_fixture.sql, 50 people free on 99% of the days (each
# booking about one meeting a day), rooms booked about half the day.
#   BENCH_SIZE=tiny: one small cell, one round (CI proves the script works).
set -euo pipefail
root=${ROOT_DIR:?}
source "$root/scripts/bench_summary.sh"
mkdir -p "$BENCH_WORK/summary.d"
db=bench_suggest
rounds=${BENCH_ROUNDS:-7}
if [ "${BENCH_SIZE:-}" = tiny ]; then
    rounds=1; attendees_list="2"; rooms_list="10"; windows="1"; headline_rooms=10; headline_people=2
else
    attendees_list="2 10 50"; rooms_list="10 50 500"; windows="1 7 28"; headline_rooms=50; headline_people=10
fi
dropdb --if-exists $db 2>/dev/null; createdb $db
# One session: the fixture's tables are temporary.
{
cat <<SQL
\set QUIET on
\set ON_ERROR_STOP on
SET client_min_messages = warning;
CREATE EXTENSION pg_booking CASCADE;
\i $root/test/suggest_meetings_reference.sql
\i $root/test/suggest_fixture.sql
SET timezone TO 'UTC';
-- The 1.0 search's estimates set off JIT compilation (0.4-1.7 s on this
-- data); it is measured without, so the ratio compares the searches.
-- booking.meeting_slots turns JIT off itself.
SET jit = off;
-- Median of runs of a query, in ms, and its result.
CREATE FUNCTION bench_time(query text, runs integer, OUT median_ms numeric, OUT result jsonb)
LANGUAGE plpgsql AS \$\$
DECLARE
    t0 timestamptz;
    times numeric[] := '{}';
BEGIN
    FOR i IN 1 .. runs LOOP
        t0 := clock_timestamp();
        EXECUTE query INTO result;
        times := times || extract(epoch FROM clock_timestamp() - t0) * 1000;
    END LOOP;
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t) INTO median_ms FROM unnest(times) t;
END
\$\$;
CREATE TEMP TABLE rounds (variant text, ms numeric, result jsonb);
CREATE TEMP TABLE growth (attendees integer, rooms integer, days integer, ms numeric, slots integer);
CREATE TEMP TABLE people50 AS SELECT 0::bigint AS id LIMIT 0;
SQL
for rooms in $rooms_list; do
    cat <<SQL
UPDATE booking.rooms SET active = false;
CALL suggest_fixture($rooms, 50, '2099-03-02', 28, 0.42, least(0.5, 50 / ($rooms * 3.15)), 0.99);
TRUNCATE people50; INSERT INTO people50 SELECT id FROM suggest_people;
VACUUM ANALYZE booking.bookings; VACUUM ANALYZE booking.user_availability; VACUUM ANALYZE booking.rooms;
SELECT set_config('request.jwt.claims', json_build_object('sub', min(id)::text, 'role', 'booking_user')::text, false)
  FROM people50 \gset
SQL
    if [ "$rooms" = "$headline_rooms" ]; then
        for r in $(seq 1 "$rounds"); do
            cat <<SQL
INSERT INTO rounds SELECT 'api', median_ms, result FROM bench_time(format(
    \$q\$SELECT api.suggest_meetings(%L, 60, '2099-03-02T00:00:00Z', '2099-03-09T00:00:00Z', min_capacity => 1)\$q\$,
    ARRAY(SELECT id FROM people50 ORDER BY id LIMIT $headline_people)), 1);
INSERT INTO rounds SELECT 'reference', median_ms, result FROM bench_time(format(
    \$q\$SELECT booking.suggest_meetings_reference(%L, interval '60 minutes', '[2099-03-02 00:00+00, 2099-03-09 00:00+00)', 1, 5)\$q\$,
    ARRAY(SELECT id FROM people50 ORDER BY id LIMIT $headline_people)), 1);
SQL
        done
    fi
    for n in $attendees_list; do
        for d in $windows; do
            cat <<SQL
INSERT INTO growth SELECT $n, $rooms, $d, median_ms, jsonb_array_length(result) FROM bench_time(format(
    \$q\$SELECT booking.meeting_slots(%L, interval '60 minutes', tstzrange('2099-03-02 00:00+00', timestamptz '2099-03-02 00:00+00' + interval '$d days'), 1, 5)\$q\$,
    ARRAY(SELECT id FROM people50 ORDER BY id LIMIT $n)), $rounds);
SQL
        done
    done
done
cat <<SQL
\set QUIET off
\echo
\echo 'meeting suggestions, $headline_people attendees x $headline_rooms rooms x 1 week, 60 minutes (median of $rounds interleaved rounds):'
SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE variant = 'api')::numeric, 2) AS api_ms,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE variant = 'reference')::numeric, 2) AS reference_1_0_ms,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE variant = 'reference')
            / percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE variant = 'api'))::numeric, 1) AS speedup,
       count(DISTINCT result) = 1 AS same_answers,
       max(jsonb_array_length(result)) AS slots
  FROM rounds;
\echo 'booking.meeting_slots growth (ms, median of $rounds; slots found):'
SELECT rooms, days || ' d' AS win,
       max(ms) FILTER (WHERE attendees = 2) AS att_2, max(ms) FILTER (WHERE attendees = 10) AS att_10,
       max(ms) FILTER (WHERE attendees = 50) AS att_50,
       string_agg(slots::text, '/' ORDER BY attendees) AS slots
  FROM (SELECT attendees, rooms, days, round(ms, 2) AS ms, slots FROM growth) g
 GROUP BY rooms, days ORDER BY rooms, days;
\set QUIET on
\pset format unaligned
\pset tuples_only on
\o $BENCH_WORK/summary.d/suggest.tsv
SELECT concat_ws(E'\t', 'suggest', 'api.suggest_meetings $headline_people att x $headline_rooms rooms x 1 week (ms)',
                 round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE variant = 'api')::numeric, 2), '<= 5')
  FROM rounds
UNION ALL
SELECT concat_ws(E'\t', 'suggest', 'the same, 1.0 search / new (x)',
                 round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE variant = 'reference')
                      / percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE variant = 'api'))::numeric, 1), '-')
  FROM rounds
UNION ALL
SELECT concat_ws(E'\t', 'suggest', 'answers differing from the 1.0 search', (count(DISTINCT result) - 1), '<= 0') FROM rounds
UNION ALL
SELECT concat_ws(E'\t', 'suggest', 'meeting_slots 50 att x 500 rooms x 4 weeks (ms)', ms, '-')
  FROM growth WHERE attendees = 50 AND rooms = 500 AND days = 28;
\o
SQL
} > "$BENCH_WORK/suggest.sql"
psql -X -d $db -f "$BENCH_WORK/suggest.sql"
dropdb $db
