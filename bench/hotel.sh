#!/usr/bin/env bash
# Hotel reservations and the nightly checkout.
#
# 1. Reservations per second, 8 clients, 50 hotels x 2 room types x 365
#    nights, stays of 1-5 nights:
#      c_take    booking.reservations with the C trigger (the product):
#                one UPDATE for all the nights (plus the restriction look-up)
#      plpgsql   the same table with a PL/pgSQL trigger doing one
#                UPDATE ... WHERE available > 0 per night (the baseline)
#    Both insert through the same wrapper; the ratio is printed.
# 2. The checkout of 100,000 due stays, batched as the worker does (one
#    transaction per batch of 5,000), while 4 clients keep making
#    reservations: its time, and their throughput during it against the
#    throughput without it.
set -euo pipefail
source "$ROOT_DIR/scripts/bench_summary.sh"
stays=${BENCH_STAYS:-100000}
dir=$(cd "$(dirname "$0")" && pwd)
secs=${BENCH_SECONDS:-8}
db=bench_hotel
dropdb --if-exists $db 2>/dev/null; createdb $db
psql -X -q -d $db -v ON_ERROR_STOP=1 <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION pg_booking CASCADE;
INSERT INTO booking.users (email, full_name, password_hash) VALUES ('bench@example.com', 'Bench', 'x');
INSERT INTO booking.hotels (name, location) SELECT 'Hotel ' || i, 'City ' || (i % 5) FROM generate_series(1, 50) i;
CREATE FUNCTION bench_inventory() RETURNS void LANGUAGE sql AS $$
    TRUNCATE booking.reservations;
    DELETE FROM booking.inventory;
    INSERT INTO booking.inventory (hotel_id, room_type, night, total, available)
    SELECT h, t, n::date, 1000, 1000
      FROM generate_series(1, 50) h, unnest(ARRAY['double', 'suite']) t,
           generate_series(date '2099-01-01', date '2099-12-31', interval '1 day') n;
$$;
CREATE FUNCTION bench_reserve(hotel integer, type integer, arrival integer, len integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO booking.reservations (hotel_id, room_type, user_id, guest_name, arrival_date, stay_length, adults, held_until)
    VALUES (hotel, CASE type WHEN 0 THEN 'double' ELSE 'suite' END, 1, 'Bench', date '2099-01-01' + arrival, len, 1,
            date '2099-01-01' + arrival + len);
EXCEPTION WHEN SQLSTATE 'PT409' THEN
    NULL;
END
$$;
-- The baseline: the same take, one UPDATE per night, in PL/pgSQL.
CREATE FUNCTION bench_plpgsql_nights() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n date;
BEGIN
    FOR n IN SELECT generate_series(NEW.arrival_date, NEW.held_until - 1, interval '1 day')::date LOOP
        UPDATE booking.inventory SET available = available - 1
         WHERE hotel_id = NEW.hotel_id AND room_type = NEW.room_type AND night = n AND available > 0;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'PT409', MESSAGE = format('no room on the night of %s', n);
        END IF;
    END LOOP;
    RETURN NEW;
END
$$;
CREATE TRIGGER bench_plpgsql_nights BEFORE INSERT ON booking.reservations
    FOR EACH ROW EXECUTE FUNCTION bench_plpgsql_nights();
SQL

set_variant() {
    psql -X -q -d $db -c "SELECT bench_inventory()" >/dev/null
    case $1 in
    c_take)  psql -X -q -d $db -c "ALTER TABLE booking.reservations ENABLE TRIGGER reservations_nights" \
                  -c "ALTER TABLE booking.reservations DISABLE TRIGGER bench_plpgsql_nights" ;;
    plpgsql) psql -X -q -d $db -c "ALTER TABLE booking.reservations DISABLE TRIGGER reservations_nights" \
                  -c "ALTER TABLE booking.reservations ENABLE TRIGGER bench_plpgsql_nights" ;;
    esac
    psql -X -q -d $db -c "VACUUM ANALYZE booking.inventory" >/dev/null
}
run() {
    pgbench -n -c 8 -j 2 -T "$secs" -f "$dir/hotel_reserve.sql" $db 2>/dev/null | awk '/^tps/ {printf "%.0f", $3}'
}
# Turns alternate round after round; tps is the median of the rounds.
rounds=${BENCH_ROUNDS:-3}
declare -A samples
for r in $(seq 1 "$rounds"); do
    for v in plpgsql c_take; do
        set_variant $v
        samples[$v]="${samples[$v]:-} $(run)"
        bad=$(psql -X -qAt -d $db -c "SELECT count(*) FROM booking.inventory_violations()")
        [ "$v" = c_take ] && [ "$bad" != 0 ] && { echo "invariant broken after c_take: $bad" >&2; exit 1; }
    done
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
c=$(median "${samples[c_take]}"); p=$(median "${samples[plpgsql]}")
printf 'reservations/s, 8 clients, stays of 1-5 nights (median of %s rounds of %s s):\n' "$rounds" "$secs"
printf '  C take (one UPDATE for all the nights)    %6s   samples:%s\n' "$c" "${samples[c_take]}"
printf '  PL/pgSQL, one UPDATE per night (baseline) %6s   samples:%s\n' "$p" "${samples[plpgsql]}"
printf '  ratio C / PL/pgSQL                        %6.2f\n' "$(echo "$c / $p" | bc -l)"

# 2. The checkout of 100,000 due stays.
psql -X -q -d $db -v ON_ERROR_STOP=1 -v stays="$stays" <<'SQL' >/dev/null
SET client_min_messages = warning;
SELECT bench_inventory();
ALTER TABLE booking.reservations DISABLE TRIGGER bench_plpgsql_nights;
-- 100,000 stays that departed by 2099-06-01, loaded without the trigger,
-- then the inventory set to match (the invariant is checked below).
ALTER TABLE booking.reservations DISABLE TRIGGER reservations_nights;
INSERT INTO booking.reservations (hotel_id, room_type, user_id, guest_name, arrival_date, stay_length, adults, held_until, status)
SELECT 1 + i % 50, CASE WHEN i % 2 = 0 THEN 'double' ELSE 'suite' END, 1, 'Due', a, len, 1, a + len,
       CASE WHEN i % 3 = 0 THEN 'checked_in' ELSE 'confirmed' END
  FROM generate_series(1, :stays) i
 CROSS JOIN LATERAL (SELECT 1 + i % 5 AS len) l
 CROSS JOIN LATERAL (SELECT date '2099-06-01' - len - (i % 20) AS a) d;
ALTER TABLE booking.reservations ENABLE TRIGGER reservations_nights;
UPDATE booking.inventory i SET available = i.total - h.n
  FROM (SELECT hotel_id, room_type, g::date AS night, count(*) AS n
          FROM booking.reservations, generate_series(arrival_date, held_until - 1, interval '1 day') g
         GROUP BY 1, 2, 3) h
 WHERE i.hotel_id = h.hotel_id AND i.room_type = h.room_type AND i.night = h.night;
VACUUM ANALYZE;
-- As the worker does it: each hotel's run of d (a run per hotel and date),
-- batches committed one by one.
CREATE PROCEDURE bench_checkout(d date) LANGUAGE plpgsql AS $$
DECLARE
    h bigint;
    run_id bigint;
BEGIN
    FOR h IN SELECT id FROM booking.hotels ORDER BY id LOOP
        run_id := booking.checkout_start(h, d, 'manual');
        COMMIT;
        WHILE booking.checkout_batch(run_id, 5000) > 0 LOOP
            COMMIT;
        END LOOP;
        PERFORM booking.checkout_finish(run_id);
        COMMIT;
    END LOOP;
END
$$;
SQL
[ "$(psql -X -qAt -d $db -c "SELECT count(*) FROM booking.inventory_violations()")" = 0 ] || { echo "bench setup broke the invariant" >&2; exit 1; }
# Concurrent reservations go to nights after 06-01 (arrivals from day 160).
cat > "$BENCH_WORK/hotel_during.sql" <<'PGB'
\set hotel random(1, 50)
\set type random(0, 1)
\set arrival random(160, 330)
\set len random(1, 5)
SELECT bench_reserve(:hotel, :type, :arrival, :len);
PGB
window=${CHECKOUT_WINDOW:-10}
quiet=$(pgbench -n -c 4 -j 2 -T "$window" -f "$BENCH_WORK/hotel_during.sql" $db 2>/dev/null | awk '/^tps/ {printf "%.0f", $3}')
pgbench -n -c 4 -j 2 -T "$window" -P 1 -f "$BENCH_WORK/hotel_during.sql" $db > "$BENCH_WORK/during.out" 2> "$BENCH_WORK/during.err" &
pgb=$!
sleep 2
start=$(date +%s.%N)
psql -X -q -d $db -v ON_ERROR_STOP=1 -c "SET pg_booking.checkout_test_clock = '2099-06-01 04:00+00'" -c "CALL bench_checkout('2099-06-01')"
end=$(date +%s.%N)
wait $pgb
during=$(awk '/^tps/ {printf "%.0f", $3}' "$BENCH_WORK/during.out")
worst=$(awk '/^progress/ {print $4}' "$BENCH_WORK/during.err" | sort -n | head -1)
done_count=$(psql -X -qAt -d $db -c "SELECT sum(completed_stays) FROM booking.checkout_runs WHERE business_date = '2099-06-01'")
bad=$(psql -X -qAt -d $db -c "SELECT count(*) FROM booking.inventory_violations()")
printf 'nightly checkout of %s due stays (batches of 5,000, one transaction each):\n' "$stays"
printf '  stays completed %s in %.2f s (goal: <= 2 s); invariant violations afterwards: %s\n' "$done_count" "$(echo "$end - $start" | bc -l)" "$bad"
printf '  reservations/s by 4 clients: %s without the checkout, %s over a %s s window containing it (worst second %s)\n' \
    "$quiet" "$during" "$window" "${worst:-?}"
checkout_s=$(echo "$end - $start" | bc -l)
summary_add hotel "reservations/s, C take / PL/pgSQL per night (x)" "$(printf '%.2f' "$(echo "$c / $p" | bc -l)")" ">= 1"
summary_add hotel "checkout of $stays due stays (s)" "$(printf '%.2f' "$checkout_s")" "<= 2"
summary_add hotel "reservations/s during the checkout / without it (x)" \
    "$(awk -v d="$during" -v q="$quiet" 'BEGIN {printf "%.2f", (q > 0 ? d / q : 0)}')" ">= 0.8"
summary_add hotel "inventory violations after the checkout" "$bad" "<= 0"
