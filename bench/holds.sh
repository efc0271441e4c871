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
# 100 rooms; new bookings are 30-minute ones in the free hours (in the
# tentative database each overlaps an expired hold, which the check must
# step over).  Each run inserts one booking into every room's free hours in
# turn, in one PL/pgSQL loop and one transaction that is rolled back, so
# every insert finds its slot free and the history stays as it was.  The
# figure is the backend's CPU per insert (utime + stime from /proc, as in
# bench/write_path.sh): wall time on this shared machine moves with the
# neighbours' load (a single-client pgbench measured 0.91x to 1.94x over
# three runs), CPU much less.  The two databases take turns, round after
# round; ratio = cpu(with) / cpu(without) per round, the figure is the
# median of those ratios.
#   BENCH_SIZE=tiny   10,000 bookings, short runs (CI proves the script works)
set -euo pipefail
source "$ROOT_DIR/scripts/bench_summary.sh"
n=100000
inserts=20000
if [ "${BENCH_SIZE:-}" = tiny ]; then n=10000; inserts=1000; fi

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
-- This backend's CPU time so far, in clock ticks (utime + stime).
CREATE FUNCTION bench_cpu_ticks() RETURNS bigint LANGUAGE sql AS $$
    SELECT f[12]::bigint + f[13]::bigint
      FROM (SELECT string_to_array(split_part(pg_read_file('/proc/self/stat'), ') ', 2), ' ') AS f) s
$$;
-- "<wall us> <cpu us>" per insert: k inserts, room after room, slot after
-- slot of the free hours (each one free: the caller rolls them back).
CREATE FUNCTION bench_inserts(k integer, slots integer, tick_us integer) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
    c0 bigint := bench_cpu_ticks();
BEGIN
    FOR i IN 0 .. k - 1 LOOP
        INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
        VALUES (1 + i % 100, 1, 'new', timestamptz '2090-01-01 01:15+00' + make_interval(hours => 2 * ((i / 100) % slots)),
                timestamptz '2090-01-01 01:45+00' + make_interval(hours => 2 * ((i / 100) % slots)));
    END LOOP;
    RETURN round(extract(epoch FROM clock_timestamp() - t0) * 1e6 / k, 2) || ' '
        || round((bench_cpu_ticks() - c0) * tick_us::numeric / k, 2);
END
$$;
SQL
}
setup bench_holds_without 0
setup bench_holds_with 1
psql -X -qAt -d bench_holds_with -c "SELECT 'with: ' || string_agg(status || ' ' || c, ', ') FROM (SELECT status, count(*) c FROM booking.bookings GROUP BY 1 ORDER BY 1) x"
tick_us=$(( 1000000 / $(getconf CLK_TCK) ))
run() {   # db [sql before the inserts] -> "<wall us> <cpu us>" per insert
    psql -X -qAt -d "$1" -v ON_ERROR_STOP=1 -c "BEGIN" -c "${2:-SELECT}" \
        -c "SELECT bench_inserts($inserts, $(( n / 100 )), $tick_us)" -c "ROLLBACK" | tail -1
}
# Also the insert without the check (same database as "without"), so that
# the check's own cost can be read: (with - none) / (without - none).
no_check="ALTER TABLE booking.bookings DISABLE TRIGGER bookings_conflict_check"
# The two take turns; each round's ratio compares runs seconds apart, so a
# busy machine's swings cancel out; the figure is the median of the rounds'
# ratios.
declare -A wall cpu
ratios=""
for r in $(seq 1 "${BENCH_ROUNDS:-7}"); do
    read -r aw ac <<<"$(run bench_holds_without)"; read -r bw bc <<<"$(run bench_holds_with)"
    read -r nw nc <<<"$(run bench_holds_without "$no_check")"
    wall[without]+=" $aw"; cpu[without]+=" $ac"; wall[with]+=" $bw"; cpu[with]+=" $bc"; cpu[none]+=" $nc"
    ratios="$ratios $(awk -v a="$ac" -v b="$bc" 'BEGIN {printf "%.3f", (a > 0 ? b / a : 0)}')"
done
median() { echo "$@" | tr ' ' '\n' | sort -g | awk 'NF {a[++n]=$1} END {print a[int((n+1)/2)]}'; }
ratio=$(median $ratios)
echo "us per insert, confirmed history only: wall${wall[without]}; cpu${cpu[without]} (median $(median ${cpu[without]}))"
echo "us per insert, with holds, pending and expired holds: wall${wall[with]}; cpu${cpu[with]} (median $(median ${cpu[with]}))"
echo "us per insert, the same without the conflict check: cpu${cpu[none]} (median $(median ${cpu[none]}))"
echo "per-round cpu ratios:$ratios"
awk -v a="$(median ${cpu[without]})" -v b="$(median ${cpu[with]})" -v c="$(median ${cpu[none]})" 'BEGIN {
    if (a > c) printf "the check alone (insert minus insert without it): %.1f us without, %.1f us with: %.2fx\n", a - c, b - c, (b - c) / (a - c) }'
awk -v x="$ratio" 'BEGIN { printf "conflict check with holds and pending bookings present vs without: %.2fx cpu per insert  (goal <= 1.1)\n", x }'
summary_add holds "conflict check, holds and pending present / without (x)" \
    "$(awk -v x="$ratio" 'BEGIN {printf "%.2f", x}')" "<= 1.1"
dropdb bench_holds_without; dropdb bench_holds_with
