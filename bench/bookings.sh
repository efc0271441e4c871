#!/usr/bin/env bash
# Booking inserts, 8 clients, 100 rooms, random 1-3 h bookings over a year:
#   c_check   booking.bookings with the C conflict trigger (the product)
#   exclusion the same table, trigger off, a btree_gist exclusion constraint
#   unchecked the same table, trigger off, no check at all
# Every variant inserts through the same PL/pgSQL wrapper, which catches the
# clash error (pgbench would stop a client at the first one), so the
# variants differ only in the check.
set -euo pipefail
source "$ROOT_DIR/scripts/bench_summary.sh"
dir=$(cd "$(dirname "$0")" && pwd)
secs=${BENCH_SECONDS:-8}
db=bench_bookings
dropdb --if-exists $db 2>/dev/null; createdb $db
psql -X -q -d $db -v ON_ERROR_STOP=1 <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION pg_booking CASCADE;
CREATE EXTENSION btree_gist;
INSERT INTO booking.rooms (name, location, capacity) SELECT 'Room ' || i, 'HQ', 8 FROM generate_series(1, 100) i;
INSERT INTO booking.users (email, full_name, password_hash) VALUES ('bench@example.com', 'Bench', 'x');
CREATE FUNCTION bench_insert(variant integer, room integer, h integer, minutes integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
    VALUES (room, 1, 'bench', timestamptz '2099-01-01 00:00+00' + make_interval(hours => h),
            timestamptz '2099-01-01 00:00+00' + make_interval(hours => h, mins => minutes));
EXCEPTION WHEN SQLSTATE 'PT409' OR exclusion_violation THEN
    NULL;
END
$$;
SQL

run() {   # variant-number name -> tps
    psql -X -q -d $db -c "VACUUM ANALYZE booking.bookings" >/dev/null
    pgbench -n -c 8 -j 2 -T "$secs" -D variant="$1" -D hours="${BENCH_HOURS:-8760}" -f "$dir/bookings_insert.sql" $db 2>/dev/null \
        | awk '/^tps/ {printf "%.0f", $3}'
}
set_variant() {
    psql -X -q -d $db -c "TRUNCATE booking.bookings"
    case $1 in
    c_check)   psql -X -q -d $db -c "ALTER TABLE booking.bookings ENABLE TRIGGER bookings_conflict_check" \
                    -c "ALTER TABLE booking.bookings DROP CONSTRAINT IF EXISTS bench_no_overlap" 2>/dev/null ;;
    exclusion) psql -X -q -d $db -c "ALTER TABLE booking.bookings DISABLE TRIGGER bookings_conflict_check" \
                    -c "ALTER TABLE booking.bookings ADD CONSTRAINT bench_no_overlap EXCLUDE USING gist
                        (room_id WITH =, tstzrange(starts_at, ends_at) WITH &&) WHERE (status = 'confirmed')" ;;
    unchecked) psql -X -q -d $db -c "ALTER TABLE booking.bookings DISABLE TRIGGER bookings_conflict_check" \
                    -c "ALTER TABLE booking.bookings DROP CONSTRAINT IF EXISTS bench_no_overlap" 2>/dev/null ;;
    esac
}
# The variants take turns, round after round, so that a change in the
# machine's load during the run hits all of them alike; tps is the median.
rounds=${BENCH_ROUNDS:-3}
declare -A tps rows samples
for r in $(seq 1 "$rounds"); do
    for v in ${VARIANTS:-unchecked exclusion c_check}; do
        set_variant $v
        samples[$v]="${samples[$v]:-} $(run 0 $v)"
        rows[$v]=$(psql -X -qAt -d $db -c "SELECT count(*) FROM booking.bookings")
    done
done
for v in "${!samples[@]}"; do
    tps[$v]=$(echo ${samples[$v]} | tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    echo "$v tps per round:${samples[$v]}"
done
clashes=$(psql -X -qAt -d $db -c "SELECT count(*) FROM booking.bookings a JOIN booking.bookings b ON a.room_id = b.room_id AND a.id < b.id AND a.starts_at < b.ends_at AND b.starts_at < a.ends_at")
printf '%-10s %10s %12s\n' variant tps rows_kept
for v in unchecked exclusion c_check; do printf '%-10s %10s %12s\n' $v "${tps[$v]:--}" "${rows[$v]:--}"; done
awk -v c="${tps[c_check]:-0}" -v e="${tps[exclusion]:-1}" -v u="${tps[unchecked]:-1}" 'BEGIN {
    printf "C check / exclusion constraint: %.2fx  (goal >= 1.0)\n", c / e;
    printf "C check / unchecked INSERT:     %.2fx  (goal >= 0.95)\n", c / u }'
echo "overlapping confirmed pairs after the C-check run: $clashes"
summary_add bookings "C check / exclusion constraint, tps (x)" \
    "$(awk -v c="${tps[c_check]:-0}" -v e="${tps[exclusion]:-1}" 'BEGIN {printf "%.2f", c / e}')" ">= 1.0"
summary_add bookings "C check / unchecked insert, tps (x)" \
    "$(awk -v c="${tps[c_check]:-0}" -v u="${tps[unchecked]:-1}" 'BEGIN {printf "%.2f", c / u}')" ">= 0.95"
summary_add bookings "overlapping confirmed pairs after the C-check run" "$clashes" "<= 0"
