#!/usr/bin/env bash
# The cost of pricing a stay (issue 15): reservations per second, 8 clients,
# stays of 1-5 nights on 50 hotels x 2 room types x 365 nights, in three
# variants measured in the same run, turns alternating round after round:
#   priced     hotels with a currency and a rate on every night, and
#              extra-person charges on their doubles (parties of 1-3 adults
#              and 0-1 child): the reservation's nightly prices and total
#              are computed in the take (trigger reservations_price ->
#              booking.price_stay)
#   unpriced   the same take on hotels without a currency (the baseline:
#              the pricing trigger still fires, finds no currency, and
#              stores no price -- a hotel that does not sell with prices)
#   no_trigger the pricing trigger disabled: the take as it was before
#              prices existed (for information)
# The goal: a priced reservation costs at most 1.2x an unpriced one.
set -euo pipefail
source "$ROOT_DIR/scripts/bench_summary.sh"
dir=$(cd "$(dirname "$0")" && pwd)
secs=${BENCH_SECONDS:-8}
db=bench_pricing
dropdb --if-exists $db 2>/dev/null; createdb $db
psql -X -q -d $db -v ON_ERROR_STOP=1 <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION pg_booking CASCADE;
INSERT INTO booking.users (email, full_name, password_hash) VALUES ('bench@example.com', 'Bench', 'x');
-- Hotels 1-50 are priced, 51-100 are not; the same inventory for all.
INSERT INTO booking.hotels (name, location, currency)
SELECT 'Hotel ' || i, 'City ' || (i % 5), CASE WHEN i <= 50 THEN 'EUR' END FROM generate_series(1, 100) i;
INSERT INTO booking.inventory (hotel_id, room_type, night, total, available)
SELECT h, t, n::date, 1000, 1000
  FROM generate_series(1, 100) h, unnest(ARRAY['double', 'suite']) t,
       generate_series(date '2099-01-01', date '2099-12-31', interval '1 day') n;
-- Rates differ per night (weekends dearer), as a real price list does.
INSERT INTO booking.rates (hotel_id, room_type, night, amount)
SELECT hotel_id, room_type, night,
       CASE WHEN extract(isodow FROM night) >= 5 THEN 140.50 ELSE 99.90 END + (hotel_id % 7)
  FROM booking.inventory WHERE hotel_id <= 50;
-- Doubles charge a third adult and each child (issue 15); suites do not.
INSERT INTO booking.extra_person_charges (hotel_id, room_type, base_adults, extra_adult_amount, child_amount)
SELECT h, 'double', 2, 30, 12.50 FROM generate_series(1, 50) h;
CREATE FUNCTION bench_reset() RETURNS void LANGUAGE sql AS $$
    TRUNCATE booking.reservations;
    UPDATE booking.inventory SET available = total WHERE available <> total;
$$;
CREATE FUNCTION bench_reserve(hotel integer, type integer, arrival integer, len integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO booking.reservations (hotel_id, room_type, user_id, guest_name, arrival_date, stay_length,
                                      adults, children, held_until)
    VALUES (hotel, CASE type WHEN 0 THEN 'double' ELSE 'suite' END, 1, 'Bench', date '2099-01-01' + arrival, len,
            1 + arrival % 3, (arrival + len) % 2, date '2099-01-01' + arrival + len);
EXCEPTION WHEN SQLSTATE 'PT409' THEN
    NULL;
END
$$;
VACUUM ANALYZE;
SQL
for v in priced unpriced; do
    first=$([ $v = priced ] && echo 1 || echo 51)
    cat > "$BENCH_WORK/pricing_$v.sql" <<PGB
\set hotel random($first, $((first + 49)))
\set type random(0, 1)
\set arrival random(0, 330)
\set len random(1, 5)
SELECT bench_reserve(:hotel, :type, :arrival, :len);
PGB
done
cp "$BENCH_WORK/pricing_unpriced.sql" "$BENCH_WORK/pricing_no_trigger.sql"

set_variant() {
    psql -X -q -d $db -c "SELECT bench_reset()" >/dev/null
    if [ "$1" = no_trigger ]; then
        psql -X -q -d $db -c "ALTER TABLE booking.reservations DISABLE TRIGGER reservations_price"
    else
        psql -X -q -d $db -c "ALTER TABLE booking.reservations ENABLE TRIGGER reservations_price"
    fi
    psql -X -q -d $db -c "VACUUM ANALYZE booking.reservations, booking.inventory" >/dev/null
}
run() {
    pgbench -n -c 8 -j 2 -T "$secs" -f "$BENCH_WORK/pricing_$1.sql" $db 2>/dev/null | awk '/^tps/ {printf "%.0f", $3}'
}
rounds=${BENCH_ROUNDS:-3}
declare -A samples
for r in $(seq 1 "$rounds"); do
    for v in unpriced priced no_trigger; do
        set_variant $v
        samples[$v]="${samples[$v]:-} $(run $v)"
    done
done
# Every priced stay has its total, and it is the sum of its nights; no unpriced one has a price.
set_variant priced
pgbench -n -c 2 -j 1 -t 200 -f "$BENCH_WORK/pricing_priced.sql" $db >/dev/null 2>&1
pgbench -n -c 2 -j 1 -t 200 -f "$BENCH_WORK/pricing_unpriced.sql" $db >/dev/null 2>&1
bad=$(psql -X -qAt -d $db -c "SELECT count(*) FROM booking.reservations r
        WHERE CASE WHEN r.hotel_id > 50 THEN r.total_amount IS NOT NULL
                   ELSE r.total_amount IS DISTINCT FROM
                        (SELECT sum(v::text::numeric) FROM jsonb_each(r.nightly_prices) e(k, v)) END")
[ "$bad" = 0 ] || { echo "pricing bench: $bad reservations with a wrong or missing price" >&2; exit 1; }
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
p=$(median "${samples[priced]}"); u=$(median "${samples[unpriced]}"); n=$(median "${samples[no_trigger]}")
ratio=$(echo "$u / $p" | bc -l)
printf 'reservations/s, 8 clients, stays of 1-5 nights (median of %s rounds of %s s):\n' "$rounds" "$secs"
printf '  priced (currency and nightly rates)          %6s   samples:%s\n' "$p" "${samples[priced]}"
printf '  unpriced (no currency: the baseline)         %6s   samples:%s\n' "$u" "${samples[unpriced]}"
printf '  pricing trigger disabled (for information)   %6s   samples:%s\n' "$n" "${samples[no_trigger]}"
printf '  a reservation with pricing costs %.2fx one without (goal <= 1.2); %.2fx one with no pricing trigger\n' \
    "$ratio" "$(echo "$n / $p" | bc -l)"
summary_add pricing "cost of a priced reservation / an unpriced one (x)" "$(printf '%.2f' "$ratio")" "<= 1.2"
summary_add pricing "cost of a priced reservation / no pricing trigger (x)" "$(printf '%.2f' "$(echo "$n / $p" | bc -l)")" "-"
