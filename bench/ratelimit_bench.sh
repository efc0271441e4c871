#!/usr/bin/env bash
# Rate limits: checks per second of the shared-memory limiter against an
# UNLOGGED-table sliding-log limiter (the same exact rule: at most 50 per
# second per key, 500 keys), in one run; and bytes of shared memory per key.
#
# Two measurements: (1) in the database, one statement making 100,000
# checks (the limiter's own cost); (2) pgbench, 2 clients for 5 s each, one
# check per transaction (what a caller sees, round trips included).
# Run by scripts/bench.sh (PGHOST, PGPORT, PGUSER and PATH set); uses its
# own database.
set -euo pipefail
source "$ROOT_DIR/scripts/bench_summary.sh"
seconds=${BENCH_SECONDS:-5}
checks=${BENCH_CHECKS:-100000}
db=bench_ratelimit
psql() { command psql -qXAt -v ON_ERROR_STOP=1 -d $db "$@"; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dropdb --if-exists $db 2>/dev/null; createdb $db

psql <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION pg_booking CASCADE;
-- The baseline: a sliding log in an UNLOGGED table.  The advisory lock makes
-- it exact under concurrency (two sessions cannot both see count < N).
CREATE UNLOGGED TABLE bench_rl_hits (key text NOT NULL, at timestamptz NOT NULL);
CREATE INDEX ON bench_rl_hits (key, at);
CREATE FUNCTION bench_table_check(k text, max_requests integer, win interval) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    t timestamptz := clock_timestamp();
    n integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(k));
    DELETE FROM bench_rl_hits WHERE key = k AND at <= t - win;
    SELECT count(*) INTO n FROM bench_rl_hits WHERE key = k;
    IF n >= max_requests THEN
        RETURN false;
    END IF;
    INSERT INTO bench_rl_hits VALUES (k, t);
    RETURN true;
END
$$;
SQL

# (1) in the database
read -r shm_ms shm_ok <<<"$(psql -F ' ' -c "
    SELECT extract(epoch FROM clock_timestamp() - t0) * 1000, ok FROM (
      SELECT clock_timestamp() AS t0) s,
      LATERAL (SELECT count(*) FILTER (WHERE (booking.rate_limit_check('bench', 'k' || (g % 500), 50, 1000)).allowed) AS ok
                 FROM generate_series(1, $checks) g) c")"
read -r tab_ms tab_ok <<<"$(psql -F ' ' -c "
    SELECT extract(epoch FROM clock_timestamp() - t0) * 1000, ok FROM (
      SELECT clock_timestamp() AS t0) s,
      LATERAL (SELECT count(*) FILTER (WHERE bench_table_check('k' || (g % 500), 50, '1 second')) AS ok
                 FROM generate_series(1, $checks) g) c")"

# (2) pgbench
echo "\\set k random(1, 500)
SELECT (booking.rate_limit_check('bench2', 'k' || :k, 50, 1000)).allowed;" > "$work/shm.sql"
echo "\\set k random(1, 500)
SELECT bench_table_check('k' || :k, 50, '1 second');" > "$work/table.sql"
tps() {
    pgbench -n -M prepared -c 2 -j 2 -T "$seconds" -f "$1" $db 2>/dev/null |
        sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}
shm_tps=$(tps "$work/shm.sql")
tab_tps=$(tps "$work/table.sql")

# Bytes of shared memory per key, for each default rule: the entry (32 bytes
# + 4 per further request in the window) plus its hash-index slot; and the
# whole pool divided by the keys it holds (headers and alignment included).
psql -c "SELECT booking.rate_limit_check(endpoint, 'probe', max_requests,
                (extract(epoch FROM window_length) * 1000)::bigint, 0, true)
           FROM booking.rate_limits" >/dev/null
pool_bytes=$(psql -c "SELECT setting::bigint * 1024 FROM pg_settings WHERE name = 'pg_booking.rate_limit_pool_size'")

awk -v c="$checks" -v sm="$shm_ms" -v so="$shm_ok" -v tm="$tab_ms" -v to="$tab_ok" \
    -v st="$shm_tps" -v tt="$tab_tps" -v s="$seconds" 'BEGIN {
    printf "rate limits, %d checks in one statement (50 per s per key, 500 keys):\n", c
    printf "  shared memory   %10.0f checks/s  (%d admitted)\n", c / (sm / 1000), so
    printf "  UNLOGGED table  %10.0f checks/s  (%d admitted)\n", c / (tm / 1000), to
    printf "  ratio           %10.1fx  (goal >= 2x)\n", (c / (sm / 1000)) / (c / (tm / 1000))
    printf "rate limits, pgbench 2 clients x %d s, one check per transaction:\n", s
    printf "  shared memory   %10.0f checks/s\n", st
    printf "  UNLOGGED table  %10.0f checks/s\n", tt
    printf "  ratio           %10.1fx  (goal >= 2x)\n", st / tt
}'
summary_add ratelimit "shared memory / UNLOGGED table, in-statement checks/s (x)" \
    "$(awk -v sm="$shm_ms" -v tm="$tab_ms" 'BEGIN {printf "%.1f", tm / sm}')" ">= 2"
summary_add ratelimit "shared memory / UNLOGGED table, pgbench 2 clients (x)" \
    "$(awk -v st="$shm_tps" -v tt="$tab_tps" 'BEGIN {printf "%.1f", st / tt}')" ">= 2"
echo "rate limits, shared memory per key (goal <= 64 bytes):"
psql -F ' ' -c "SELECT endpoint, max_requests, bytes_per_key, capacity, round($pool_bytes::numeric / capacity, 1)
                  FROM booking.rate_limit_stats() s
                 WHERE endpoint IN (SELECT endpoint FROM booking.rate_limits)
                 ORDER BY max_requests, endpoint" |
    awk '{ printf "  %-20s N=%-4d %4d bytes/key (entry + index), %7d keys per pool, %6.1f bytes/key of the whole pool\n", $1, $2, $3, $4, $5 }'
