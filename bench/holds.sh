#!/usr/bin/env bash
# Conflict check with tentative bookings present (issue 14): the cost of one
# booking insert through the C check (the other triggers off, so only the
# check is measured) when the rooms' history holds only confirmed bookings,
# and when a third of it is live holds, a sixth pending requests, and every
# free hour also holds an expired hold the worker has not marked yet (the
# check evaluates booking_occupies on each and steps over the expired ones).
# Goal: with / without at most 1.1x.
#
# Same layout as bench/conflict_growth.sh: 1-hour bookings every 2 hours in
# 100 rooms; new bookings are 30-minute ones in the free hours.  The two
# databases take turns, round after round; cost ratio = tps(without) /
# tps(with) per round, and the figure is the median of those ratios.
#   BENCH_SIZE=tiny   10,000 bookings, short runs (CI proves the script works)
set -euo pipefail
source "$ROOT_DIR/scripts/bench_summary.sh"
secs=${BENCH_SECONDS:-6}
n=100000
if [ "${BENCH_SIZE:-}" = tiny ]; then n=10000; secs=2; fi

setup() {   # db, tentative (0/1)
    dropdb --if-exists "$1" 2>/dev/null; createdb "$1"
    psql -X -q -d "$1" -v ON_ERROR_STOP=1 -v n="$n" -v tentative="$2" <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION pg_booking CASCADE;
INSERT INTO booking.rooms (name, location, capacity) SELECT 'Room ' || i, 'HQ', 8 FROM generate_series(1, 100) i;
INSERT INTO booking.users (email, full_name, password_hash) VALUES ('bench@example.com', 'Bench', 'x');
ALTER TABLE booking.bookings DISABLE TRIGGER USER;
ALTER TABLE booking.bookings ENABLE TRIGGER bookings_conflict_check;
SET session_replication_role = replica;
-- The history: confirmed, or (tentative) every third a live hold and every
-- sixth a pending request without expiry.
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at, status, hold_expires_at)
SELECT 1 + g % 100, 1, 'history', timestamptz '2090-01-01 00:00+00' + make_interval(hours => 2 * (g / 100)),
       timestamptz '2090-01-01 01:00+00' + make_interval(hours => 2 * (g / 100)),
       CASE WHEN :tentative = 1 AND g % 3 = 0 THEN 'held'
            WHEN :tentative = 1 AND g % 6 = 1 THEN 'pending' ELSE 'confirmed' END,
       CASE WHEN :tentative = 1 AND g % 3 = 0 THEN now() + interval '1 day' END
  FROM generate_series(0, :n - 1) g;
-- Expired holds in the free hours (tentative only), still in the index.
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at, status, hold_expires_at)
SELECT 1 + g % 100, 1, 'lapsed', timestamptz '2090-01-01 01:00+00' + make_interval(hours => 2 * (g / 100)),
       timestamptz '2090-01-01 02:00+00' + make_interval(hours => 2 * (g / 100)), 'held', now() - interval '1 minute'
  FROM generate_series(0, :n - 1) g WHERE :tentative = 1;
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
setup bench_holds_without 0
setup bench_holds_with 1
psql -X -qAt -d bench_holds_with -c "SELECT 'with: ' || string_agg(status || ' ' || c, ', ') FROM (SELECT status, count(*) c FROM booking.bookings GROUP BY 1 ORDER BY 1) x"
run() {   # db -> tps
    pgbench -n -c 1 -T "$secs" -D slots=$(( n / 100 )) -f "$script" "$1" 2>/dev/null | awk '/^tps/ {printf "%.0f", $3}'
}
# The two take turns; each round's ratio compares runs seconds apart, so a
# busy machine's swings cancel out; the figure is the median of the rounds'
# ratios (the medians of the tps are printed too).
declare -A samples
ratios=""
for r in $(seq 1 "${BENCH_ROUNDS:-5}"); do
    a=$(run bench_holds_without); b=$(run bench_holds_with)
    samples[without]="${samples[without]:-} $a"; samples[with]="${samples[with]:-} $b"
    ratios="$ratios $(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.3f", a / b}')"
done
median() { echo "$@" | tr ' ' '\n' | sort -g | awk 'NF {a[++n]=$1} END {print a[int((n+1)/2)]}'; }
t0=$(median ${samples[without]}); t1=$(median ${samples[with]}); ratio=$(median $ratios)
echo "inserts/s, confirmed history only:${samples[without]} (median $t0)"
echo "inserts/s, with holds, pending and expired holds:${samples[with]} (median $t1)"
echo "per-round ratios:$ratios"
awk -v x="$ratio" 'BEGIN { printf "conflict check with holds and pending bookings present vs without: %.2fx  (goal <= 1.1)\n", x }'
summary_add holds "conflict check, holds and pending present / without (x)" \
    "$(awk -v x="$ratio" 'BEGIN {printf "%.2f", x}')" "<= 1.1"
dropdb bench_holds_without; dropdb bench_holds_with
