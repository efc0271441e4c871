#!/usr/bin/env bash
# Analytics: the dashboards' summary and by-room reads from the counters
# kept by the C triggers, against the same GROUP BY over 1,000,000 bookings,
# in one run; the results are compared for equality.  Also the cost the
# counting trigger adds to each insert.  Run by scripts/bench.sh, which sets
# PGHOST, PGPORT, PGUSER and PATH to a temporary cluster.
#   BENCH_BOOKINGS (default 1000000), BENCH_ROOMS (200), BENCH_READS (21),
#   BENCH_INSERTS (20000)
set -euo pipefail
mkdir -p "$BENCH_WORK/summary.d"
here=$(cd "$(dirname "$0")" && pwd)
db=bench_analytics

psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "SET client_min_messages = warning" \
     -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
psql -X -q -v ON_ERROR_STOP=1 -d "$db" \
     -v bookings="${BENCH_BOOKINGS:-1000000}" -v rooms="${BENCH_ROOMS:-200}" -v reads="${BENCH_READS:-21}" \
     -v inserts="${BENCH_INSERTS:-20000}" -v summary="$BENCH_WORK/summary.d/analytics.tsv" \
     -f "$here/analytics.sql"
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "DROP DATABASE $db"
