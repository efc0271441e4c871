# Prices under concurrency (issue 15): 16 clients for 20 s create, move,
# lengthen, retype and cancel stays on the last rooms of popular nights while
# others change the rates of those nights all the time.  Afterwards every
# priced reservation has exactly one stored price per night of its stay, its
# stored total is the sum of those prices, and the inventory invariant holds.
#
# Then every hotel KPI (occupancy, ADR, RevPAR, revenue by night and room
# type, pickup, lead time, cancellation and no-show rates, ALOS, fees) is
# compared with an independent recomputation from raw rows
# (test/kpi_recount.sql, as sql/88_hotel_kpis.sql does).  The nights are the
# fourteen from today on, so the pickup of "today" has figures.
#
# Negative control: the same load against a pricing trigger that reads the
# rates twice (once for the breakdown, once for the total, as a careless
# rewrite would) must leave totals that are not the sum of their nights.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use PgBookingTest;

my $clients = $ENV{PGB_HAMMER_CLIENTS} // 16;
my $seconds = $ENV{PGB_HAMMER_SECONDS} // 20;

my $node = booking_node('price_concurrency', qq{
pg_booking.checkout_database = 'none'
max_connections = 60
});

# The fourteen nights from today on (written 2099-07-01 .. 2099-07-14 in the
# SQL below, replaced by these dates).
my $first = $node->safe_psql('postgres', 'SELECT booking.hotel_today()');
my $last = $node->safe_psql('postgres', "SELECT date '$first' + 13");
sub nights { my ($sql) = @_; $sql =~ s/2099-07-01/$first/g; $sql =~ s/2099-07-14/$last/g; return $sql; }

$node->safe_psql('postgres', nights q{
INSERT INTO booking.hotels (name, location, currency) VALUES ('H1', 'Lisbon', 'EUR'), ('H2', 'Lisbon', 'EUR');
INSERT INTO booking.inventory (hotel_id, room_type, night, total, available)
SELECT h, t, n::date, 3, 3
  FROM generate_series(1, 2) h, unnest(ARRAY['double', 'suite']) t,
       generate_series(date '2099-07-01', date '2099-07-14', interval '1 day') n;
INSERT INTO booking.rates (hotel_id, room_type, night, amount)
SELECT hotel_id, room_type, night, 100 FROM booking.inventory;
-- Admins: the clients act as booking_admin, and a token's role must be its user's.
INSERT INTO booking.users (email, full_name, password_hash, role)
SELECT 'user' || i || '@example.com', 'User ' || i, 'x', 'admin' FROM generate_series(1, 16) i;
CREATE UNLOGGED TABLE outcomes (op text, result text);
CREATE FUNCTION hammer(client integer, op integer, hotel integer, arrival integer, len integer)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    a text := to_char(date '2099-07-01' + arrival, 'YYYY-MM-DD');
    type text := CASE WHEN op % 3 = 0 THEN 'suite' ELSE 'double' END;
    victim uuid;
    kind text;
BEGIN
    PERFORM set_config('request.jwt.claims',
        json_build_object('sub', client::text, 'role', 'booking_admin')::text, true);
    IF op < 20 THEN
        kind := 'rates';
        PERFORM api.set_rates(hotel, type, a, to_char(date '2099-07-01' + arrival + len, 'YYYY-MM-DD'),
                              amount => round(50 + (client * 7 + op) % 150 + (op % 100) / 100.0, 2),
                              weekday_amounts => CASE WHEN op % 2 = 0 THEN jsonb_build_object('sat', 200 + op) END);
    ELSIF op < 60 THEN
        kind := 'create';
        PERFORM api.create_reservation(hotel, type, 'Guest', a, len);
    ELSE
        SELECT id INTO victim FROM booking.reservations
         WHERE status = 'confirmed' AND hotel_id = hotel ORDER BY random() LIMIT 1;
        IF victim IS NULL THEN
            RETURN;
        END IF;
        IF op < 90 THEN
            kind := 'change';
            PERFORM api.update_reservation(victim, arrival_date => a, stay_length => len,
                                           room_type => CASE WHEN op % 4 = 0 THEN type END);
        ELSE
            kind := 'cancel';
            PERFORM api.cancel_reservation(victim);
        END IF;
    END IF;
    INSERT INTO outcomes VALUES (kind, 'ok');
EXCEPTION WHEN SQLSTATE 'PT409' OR SQLSTATE 'PT404' OR SQLSTATE 'PT422' THEN
    INSERT INTO outcomes VALUES (kind, CASE WHEN SQLERRM LIKE 'no room of type%' THEN 'sold_out' ELSE 'other' END);
END
$$;
});

my $script = write_pgbench_script('price_hammer', <<'SQL');
\set client random(1, 16)
\set op random(0, 99)
\set hotel random(1, 2)
\set arrival random(0, 10)
\set len random(1, 3)
SELECT hammer(:client, :op, :hotel, :arrival, :len);
SQL

# Totals that are not the sum of their nights, and stays whose breakdown does
# not name exactly the nights of the stay.
my $bad_totals = q{
SELECT count(*) FROM booking.reservations r
 WHERE r.total_amount IS DISTINCT FROM (SELECT sum(v::text::numeric) FROM jsonb_each(r.nightly_prices) e(k, v))};
my $bad_nights = q{
SELECT count(*) FROM booking.reservations r
 WHERE (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(r.nightly_prices) k)
       IS DISTINCT FROM (SELECT array_agg(to_char(d, 'YYYY-MM-DD') ORDER BY d)
                           FROM generate_series(r.arrival_date, r.arrival_date + r.stay_length - 1, interval '1 day') d)};
my $violations = 'SELECT count(*) FROM booking.inventory_violations()';

sub hammer { return run_pgbench($node, $script, $clients, $_[0]); }

hammer($seconds);
note 'outcomes: ' . outcomes_summary($node);
my ($creates, $sold_out, $changes, $rates) = split /\|/, $node->safe_psql('postgres',
	"SELECT count(*) FILTER (WHERE op = 'create' AND result = 'ok'),
	        count(*) FILTER (WHERE result = 'sold_out'),
	        count(*) FILTER (WHERE op = 'change' AND result = 'ok'),
	        count(*) FILTER (WHERE op = 'rates' AND result = 'ok') FROM outcomes");
cmp_ok($creates, '>', 100, "many reservations were made ($creates)");
cmp_ok($sold_out, '>', 100, "the clients raced for the last rooms: $sold_out refused NO_AVAILABILITY");
cmp_ok($changes, '>', 20, "changes succeeded too ($changes)");
cmp_ok($rates, '>', 50, "rates changed all the time ($rates)");
my $distinct = $node->safe_psql('postgres',
	"SELECT count(DISTINCT v) FROM booking.reservations r, jsonb_each(r.nightly_prices) e(k, v)");
cmp_ok($distinct, '>', 5, "stays carry prices of many rate versions ($distinct distinct nightly prices)");
is($node->safe_psql('postgres', $bad_totals), '0', 'every stored total is the sum of its nightly prices');
is($node->safe_psql('postgres', $bad_nights), '0', 'every stay has exactly one price per night');
is($node->safe_psql('postgres', $violations), '0', 'the inventory invariant holds on every night');

# Every KPI of the load against an independent recomputation from raw rows
# (nights of sold stays by generate_series, their stored prices), to the cent.
for my $hotel (1, 2)
{
	my $kpi_check = $node->safe_psql('postgres', nights qq{
WITH stays AS (SELECT r.* FROM booking.reservations r
                WHERE r.hotel_id = $hotel AND r.status IN ('confirmed', 'checked_in', 'completed')),
     sold AS (SELECT s.room_type, d::date AS night, (s.nightly_prices ->> to_char(d, 'YYYY-MM-DD'))::numeric AS price
                FROM stays s, generate_series(s.arrival_date, s.held_until - 1, interval '1 day') d
               WHERE d BETWEEN '2099-07-01' AND '2099-07-14'),
     rooms AS (SELECT sum(total) AS n FROM booking.inventory
                WHERE hotel_id = $hotel AND night BETWEEN '2099-07-01' AND '2099-07-14'),
     arr AS (SELECT * FROM booking.reservations WHERE hotel_id = $hotel
                AND arrival_date BETWEEN '2099-07-01' AND '2099-07-14'),
     k AS (SELECT api.analytics_hotel_kpis($hotel, '2099-07-01', '2099-07-14') AS j),
     mine AS (SELECT (SELECT n FROM rooms) AS rooms, (SELECT count(*) FROM sold) AS sold,
                     (SELECT sum(price) FROM sold) AS revenue,
                     (SELECT 100.0 * count(*) FILTER (WHERE status = 'cancelled') / count(*) FROM arr) AS canc,
                     (SELECT 100.0 * count(*) FILTER (WHERE status = 'no_show') / count(*) FILTER (WHERE status <> 'cancelled') FROM arr) AS ns,
                     (SELECT avg(stay_length) FROM arr WHERE status IN ('confirmed', 'checked_in', 'completed')) AS alos)
SELECT concat_ws(' ',
       (j ->> 'rooms_available')::numeric = rooms, (j ->> 'rooms_sold')::numeric = sold,
       (j ->> 'room_revenue')::numeric = revenue,
       (j ->> 'occupancy_pct')::numeric = round(100.0 * sold / rooms, 2),
       (j ->> 'adr')::numeric = round(revenue / sold, 2), (j ->> 'revpar')::numeric = round(revenue / rooms, 2),
       (j ->> 'cancellation_rate_pct')::numeric = round(canc, 2),
       coalesce((j ->> 'no_show_rate_pct')::numeric = round(ns, 2), true),
       (j ->> 'alos')::numeric = round(alos, 2),
       (SELECT bool_and((b ->> 'room_revenue')::numeric =
                        coalesce((SELECT sum(price) FROM sold WHERE sold.night = (b ->> 'night')::date
                                  AND sold.room_type = b ->> 'room_type'), 0))
          FROM jsonb_array_elements(j -> 'by_night') b)) || ' / sold ' || sold || ' revenue ' || revenue
  FROM k, mine});
	like($kpi_check, qr/^t t t t t t t t t t \//, "hotel $hotel: every KPI equals its recomputation from raw rows ($kpi_check)");
}

# Every KPI, the api's and the dashboard views', against the recomputation.
my $root = $ENV{TESTDIR} // '.';
$node->safe_psql('postgres', slurp_file("$root/test/kpi_recount.sql"));
for my $hotel (1, 2)
{
	my ($differences, $compared, $on_books) = split /\|/, $node->safe_psql('postgres', qq{
SELECT (SELECT count(*) || coalesce(': ' || string_agg(kpi || ' ' || key || ' ' || coalesce(reported::text, '-') || ' vs '
                                                       || coalesce(recounted::text, '-'), '; '), '')
          FROM kpi_recount($hotel, '$first', '$last')),
       kpi_recount_size($hotel, '$first', '$last'),
       (SELECT coalesce(sum(rooms_on_books), 0) FROM booking.hotel_pickup WHERE hotel_id = $hotel)});
	is($differences, '0', "hotel $hotel: every KPI equals its recomputation from raw rows after the load");
	cmp_ok($compared, '>', 100, "hotel $hotel: $compared figures compared");
	cmp_ok($on_books, '>', 0, "hotel $hotel: the pickup of today has rooms on the books ($on_books)");
}

# Negative control: breakdown and total from two reads of the rates.
$node->safe_psql('postgres', q{
CREATE FUNCTION racy_price() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.arrival_date = OLD.arrival_date AND NEW.stay_length = OLD.stay_length
       AND NEW.room_type = OLD.room_type THEN
        RETURN NEW;
    END IF;
    NEW.nightly_prices := booking.price_stay(NEW.hotel_id, NEW.room_type, NEW.arrival_date, NEW.stay_length) -> 'nights';
    PERFORM pg_sleep(0.005);
    NEW.total_amount := booking.price_stay(NEW.hotel_id, NEW.room_type, NEW.arrival_date, NEW.stay_length) ->> 'total';
    RETURN NEW;
END
$$;
DROP TRIGGER reservations_price ON booking.reservations;
DROP TRIGGER reservations_price_change ON booking.reservations;
CREATE TRIGGER reservations_price BEFORE INSERT OR UPDATE OF room_type, arrival_date, stay_length
    ON booking.reservations FOR EACH ROW EXECUTE FUNCTION racy_price();
});
hammer(5);
my $broken = $node->safe_psql('postgres', $bad_totals);
note "with the racy pricing: $broken totals differ from the sum of their nights";
cmp_ok($broken, '>', 0, 'with a racy pricing the total check finds bad totals (this test can fail)');

$node->stop;
done_testing();
