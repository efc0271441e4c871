#!/usr/bin/env bash
# Conflict check growth: the cost of one booking insert through the C check
# (the other triggers off, so only the check is measured) when the 100 rooms
# already hold a small and a large history of bookings.  Goal: the large
# history costs at most 1.5x the small one (issue 11).
#
# History: 1-hour bookings every 2 hours in every room; new bookings are
# 30-minute ones in the free hours, so the check reads a dense neighbourhood
# and (nearly) always admits.  The two sizes take turns, round after round;
# tps is the median; cost ratio = tps(small) / tps(large).
#   BENCH_SIZE=tiny   1,000 vs 10,000 bookings (CI proves the script works)
set -euo pipefail
secs=${BENCH_SECONDS:-6}
if [ "${BENCH_SIZE:-}" = tiny ]; then small=1000; large=10000; secs=2; else small=10000; large=1000000; fi

setup() {   # db, bookings
    dropdb --if-exists "$1" 2>/dev/null; createdb "$1"
    psql -X -q -d "$1" -v ON_ERROR_STOP=1 -v n="$2" <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION pg_booking CASCADE;
INSERT INTO booking.rooms (name, location, capacity) SELECT 'Room ' || i, 'HQ', 8 FROM generate_series(1, 100) i;
INSERT INTO booking.users (email, full_name, password_hash) VALUES ('bench@example.com', 'Bench', 'x');
-- Only the check under test fires.
ALTER TABLE booking.bookings DISABLE TRIGGER USER;
ALTER TABLE booking.bookings ENABLE TRIGGER bookings_conflict_check;
-- The history, loaded without the check (it is valid by construction).
SET session_replication_role = replica;
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
SELECT 1 + g % 100, 1, 'history', timestamptz '2090-01-01 00:00+00' + make_interval(hours => 2 * (g / 100)),
       timestamptz '2090-01-01 01:00+00' + make_interval(hours => 2 * (g / 100))
  FROM generate_series(0, :n - 1) g;
RESET session_replication_role;
VACUUM ANALYZE booking.bookings;
CREATE FUNCTION bench_insert(room integer, slot integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
    VALUES (room, 1, 'new', timestamptz '2090-01-01 01:15+00' + make_interval(hours => 2 * slot),
            timestamptz '2090-01-01 01:45+00' + make_interval(hours => 2 * slot));
EXCEPTION WHEN SQLSTATE 'PT409' THEN
    NULL;
END
$$;
SQL
}
script=$(mktemp); trap 'rm -f "$script"' EXIT
cat > "$script" <<'PGB'
\set room random(1, 100)
\set slot random(0, :slots - 1)
SELECT bench_insert(:room, :slot);
PGB
setup bench_growth_small $small
setup bench_growth_large $large
run() {   # db, bookings -> tps
    pgbench -n -c 1 -T "$secs" -D slots=$(( $2 / 100 )) -f "$script" "$1" 2>/dev/null | awk '/^tps/ {printf "%.0f", $3}'
}
declare -A samples
for r in $(seq 1 "${BENCH_ROUNDS:-3}"); do
    samples[small]="${samples[small]:-} $(run bench_growth_small $small)"
    samples[large]="${samples[large]:-} $(run bench_growth_large $large)"
done
median() { echo "$@" | tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ts=$(median ${samples[small]}); tl=$(median ${samples[large]})
echo "inserts/s with $small bookings:${samples[small]} (median $ts)"
echo "inserts/s with $large bookings:${samples[large]} (median $tl)"
awk -v s="$ts" -v l="$tl" -v a="$small" -v b="$large" 'BEGIN {
    printf "conflict check cost at %d / at %d bookings: %.2fx  (goal <= 1.5)\n", b, a, s / l }'
dropdb bench_growth_small; dropdb bench_growth_large
