#!/usr/bin/env bash
# The write path: what the triggers of booking.bookings add to an insert.
# Variants: no trigger of ours at all (ALTER TABLE ... DISABLE TRIGGER USER:
# foreign keys still checked), the conflict check alone, the counters alone,
# every trigger (as shipped).  Each row lands in a room and hour of its own,
# so nothing clashes and every variant does the same writes.
#   1. in-statement: 20,000 single-row inserts in one PL/pgSQL loop (us per
#      insert; each set rolled back);
#   2. committed: pgbench, 8 clients, one insert per transaction (tps).
# The variants take turns, round after round; figures are medians.  Besides
# the clock, each run counts the CPU the server spent (the backend's own
# utime + stime for 1, the postmaster's reaped children for 2: /proc), so
# the ratios can be read on a machine that other work keeps busy: tps and
# wall time move with the neighbours' load, CPU per insert much less.
# Then one statement of any size: an INSERT, an UPDATE (cancel) and a
# DELETE of BENCH_BIG_ROWS bookings (1.1 M; 2,000 at the tiny size), each
# one statement with every trigger on.  Each must queue one event per row
# and leave the counters exact (booking.analytics_check() empty); the
# script fails otherwise.
# Run by scripts/bench.sh (PGHOST, PGPORT, PGUSER, PATH set).
set -euo pipefail
source "$ROOT_DIR/scripts/bench_summary.sh"
secs=${BENCH_SECONDS:-5}
rounds=${BENCH_ROUNDS:-5}
inserts=20000
big=${BENCH_BIG_ROWS:-1100000}
[ "${BENCH_SIZE:-}" = tiny ] && { secs=1; rounds=1; inserts=500; big=2000; }
db=bench_write_path
dropdb --if-exists $db 2>/dev/null; createdb $db
psql -X -q -d $db -v ON_ERROR_STOP=1 <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION pg_booking CASCADE;
INSERT INTO booking.rooms (name, location, capacity) SELECT 'Room ' || i, 'HQ', 8 FROM generate_series(1, 100) i;
INSERT INTO booking.users (email, full_name, password_hash) VALUES ('bench@example.com', 'Bench', 'x');
-- This backend's CPU time so far, in clock ticks (utime + stime).
CREATE FUNCTION bench_cpu_ticks() RETURNS bigint LANGUAGE sql AS $$
    SELECT f[12]::bigint + f[13]::bigint
      FROM (SELECT string_to_array(split_part(pg_read_file('/proc/self/stat'), ') ', 2), ' ') AS f) s
$$;
-- "<wall us> <cpu us>" per insert.
CREATE FUNCTION bench_inserts(n integer, base integer, tick_us integer) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
    c0 bigint := bench_cpu_ticks();
BEGIN
    FOR i IN 1 .. n LOOP
        INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
        VALUES (1 + i % 100, 1, 'probe', timestamptz '2300-01-01 00:00+00' + make_interval(hours => base + i),
                timestamptz '2300-01-01 01:00+00' + make_interval(hours => base + i));
    END LOOP;
    RETURN round(extract(epoch FROM clock_timestamp() - t0) * 1e6 / n, 2) || ' '
        || round((bench_cpu_ticks() - c0) * tick_us::numeric / n, 2);
END
$$;
SQL
cat > "$BENCH_WORK/write_path.sql" <<'PGB'
\set n :n + 1
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
VALUES (:client_id + 1, 1, 'bench', timestamptz '2200-01-01 00:00+00' + make_interval(hours => :n),
        timestamptz '2200-01-01 01:00+00' + make_interval(hours => :n));
PGB
# ALTER TABLE statements that make a variant (in the same transaction as
# the in-statement run, so they are rolled back with it).
variant_sql() {
    case $1 in
    none)      echo "ALTER TABLE booking.bookings DISABLE TRIGGER USER;" ;;
    conflict)  echo "ALTER TABLE booking.bookings DISABLE TRIGGER USER; ALTER TABLE booking.bookings ENABLE TRIGGER bookings_conflict_check;" ;;
    counters)  echo "ALTER TABLE booking.bookings DISABLE TRIGGER USER; ALTER TABLE booking.bookings ENABLE TRIGGER bookings_count_insert;" ;;
    events)    echo "ALTER TABLE booking.bookings DISABLE TRIGGER USER; ALTER TABLE booking.bookings ENABLE TRIGGER bookings_event_insert;" ;;
    all)       echo "ALTER TABLE booking.bookings ENABLE TRIGGER USER;" ;;
    esac
}
variants="none conflict counters events all"
tick_us=$(( 1000000 / $(getconf CLK_TCK) ))
pm_pid=$(head -1 "$BENCH_WORK/data/postmaster.pid" 2>/dev/null || echo)
children_ticks() {   # CPU of the postmaster's children that have exited (backends after pgbench)
    if [ -n "$pm_pid" ] && [ -r "/proc/$pm_pid/stat" ]; then awk '{print $16 + $17}' "/proc/$pm_pid/stat"; else echo 0; fi
}
declare -A us cpu tps tcpu
k=0
for r in $(seq 1 "$rounds"); do
    for v in $variants; do
        k=$((k + 1))   # each run books hours of its own (rows of earlier runs stay)
        read -r w c <<<"$(psql -X -qAt -d $db -c "BEGIN" -c "$(variant_sql $v)" \
                    -c "SELECT bench_inserts($inserts, 10000000, $tick_us)" -c "ROLLBACK" | grep -E '^[0-9.]+ [0-9.]+$')"
        us[$v]+=" $w"; cpu[$v]+=" $c"
        psql -X -q -d $db -c "$(variant_sql $v)" -c "VACUUM booking.bookings" >/dev/null
        sleep 0.3; c0=$(children_ticks)
        out=$(pgbench -n -c 8 -j 2 -T "$secs" -D n=$(( k * 100000 )) -f "$BENCH_WORK/write_path.sql" $db 2>/dev/null)
        sleep 0.3; c1=$(children_ticks)
        tps[$v]+=" $(awk '/^tps/ {printf "%.0f", $3}' <<<"$out")"
        tcpu[$v]+=" $(awk -v n="$(awk '/actually processed/ {print $NF}' <<<"$out")" -v d=$(( (c1 - c0) * tick_us )) \
                     'BEGIN {printf "%.1f", (n > 0 ? d / n : 0)}')"
    done
done
psql -X -q -d $db -c "ALTER TABLE booking.bookings ENABLE TRIGGER USER"
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
diff_us() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", a - b}'; }
printf 'write path: booking inserts, median of %s interleaved rounds\n' "$rounds"
printf '  %-10s %10s %10s %14s %14s   %s\n' variant "us/insert" "cpu us" "tps 8 clients" "cpu us/commit" "samples: us | cpu us | tps | cpu us/commit"
for v in $variants; do
    printf '  %-10s %10s %10s %14s %14s   %s |%s |%s |%s\n' "$v" "$(median "${us[$v]}")" "$(median "${cpu[$v]}")" \
        "$(median "${tps[$v]}")" "$(median "${tcpu[$v]}")" "${us[$v]}" "${cpu[$v]}" "${tps[$v]}" "${tcpu[$v]}"
done
cost=$(ratio "$(median "${us[all]}")" "$(median "${us[none]}")")
cost_cpu=$(ratio "$(median "${cpu[all]}")" "$(median "${cpu[none]}")")
slow=$(ratio "$(median "${tps[none]}")" "$(median "${tps[all]}")")
slow_cpu=$(ratio "$(median "${tcpu[all]}")" "$(median "${tcpu[none]}")")
counters=$(diff_us "$(median "${cpu[counters]}")" "$(median "${cpu[none]}")")
conflict=$(diff_us "$(median "${cpu[conflict]}")" "$(median "${cpu[none]}")")
events=$(diff_us "$(median "${cpu[events]}")" "$(median "${cpu[none]}")")
echo "  every trigger / none, in-statement cost:          ${cost}x wall, ${cost_cpu}x cpu (goal <= 1.3)"
echo "  none / every trigger, 8 clients committed tps:    ${slow}x (goal <= 1.3); cpu per commit ${slow_cpu}x"
echo "  cpu added per single-row insert (in-statement): conflict check ${conflict} us, counters ${counters} us, events ${events} us"
summary_add write_path "insert cost, every trigger / none, in-statement (x)" "$cost" "<= 1.3"
summary_add write_path "insert cpu, every trigger / none, in-statement (x)" "$cost_cpu" "<= 1.3"
summary_add write_path "insert cost, every trigger / none, 8 clients tps (x)" "$slow" "<= 1.3"
summary_add write_path "insert cpu per commit, every trigger / none, 8 clients (x)" "$slow_cpu" "<= 1.3"
summary_add write_path "conflict check, cpu us per single-row insert" "$conflict" "-"
summary_add write_path "counters trigger, cpu us per single-row insert" "$counters" "-"
summary_add write_path "events trigger, cpu us per single-row insert" "$events" "-"

# One statement of $big rows: insert, cancel, delete.
q() { psql -X -qAt -d $db -v ON_ERROR_STOP=1 -c "$1"; }
q "VACUUM booking.bookings" >/dev/null
# (the variants without the counters trigger committed uncounted bookings)
q "SELECT booking.analytics_rebuild()" >/dev/null
before=$(q "SELECT coalesce(max(qid), 0) FROM booking.event_queue")
timed() {   # label sql -> seconds, or FAILED
    local t0 t1
    t0=$(date +%s.%N)
    if q "$2" >/dev/null; then
        t1=$(date +%s.%N); awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}'
    else
        echo FAILED
    fi
}
t_ins=$(timed insert "INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
    SELECT 1 + i % 100, 1, 'big', timestamptz '2500-01-01 00:00+00' + make_interval(hours => i),
           timestamptz '2500-01-01 00:30+00' + make_interval(hours => i) FROM generate_series(1, $big) i")
t_upd=$(timed cancel "UPDATE booking.bookings SET status = 'cancelled' WHERE title = 'big'")
t_del=$(timed delete "DELETE FROM booking.bookings WHERE title = 'big'")
read -r created cancelled deleted <<<"$(q "SELECT count(*) FILTER (WHERE kind = 'booking.created'),
    count(*) FILTER (WHERE kind = 'booking.cancelled'), count(*) FILTER (WHERE kind = 'booking.deleted')
    FROM booking.event_queue WHERE qid > $before AND entity = 'booking'" | tr '|' ' ')"
drift=$(q "SELECT count(*) FROM booking.analytics_check()")
printf 'one statement of %s bookings, every trigger on: insert %s s, cancel %s s, delete %s s\n' "$big" "$t_ins" "$t_upd" "$t_del"
printf '  events queued: %s created, %s cancelled, %s deleted (each must be %s); counters off a recount: %s\n' \
    "$created" "$cancelled" "$deleted" "$big" "$drift"
ok=0
if [ "$created" = "$big" ] && [ "$cancelled" = "$big" ] && [ "$deleted" = "$big" ] && [ "$drift" = 0 ]; then ok=$big; fi
summary_add write_path "rows in one statement, events and counters written" "$ok" \
    "$([ "${BENCH_SIZE:-}" = tiny ] && echo - || echo '>= 1100000')"
dropdb $db
[ "$ok" = "$big" ] || { echo "write path: the statement of $big rows did not queue every event or left the counters off" >&2; exit 1; }
