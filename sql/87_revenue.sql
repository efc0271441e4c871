-- Revenue: rates, prices of stays, cancellation fees, hotel KPIs (issue 15).
\set SHOW_CONTEXT never
SET timezone TO 'UTC';
CREATE FUNCTION public.t_err(q text) RETURNS text
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    st text; msg text; det text;
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
    RETURN st || ' ' || CASE WHEN det LIKE '{%' THEN (det::jsonb ->> 'error_code') ELSE '-' END || ': ' || msg;
END
$$;
GRANT EXECUTE ON FUNCTION public.t_err(text) TO PUBLIC;

SELECT t_as('h.admin@hotel.test', 'booking_admin');
SET ROLE booking_admin;
SELECT api.create_hotel('Rate Inn', 'Porto') ->> 'name';
SELECT jsonb_array_length(api.adjust_inventory(t_hotel('Rate Inn'), 'double', '2099-06-01', '2099-06-30', total => 3));
SELECT jsonb_array_length(api.adjust_inventory(t_hotel('Rate Inn'), 'suite', '2099-06-01', '2099-06-30', total => 1));
-- Rates need a currency first.
SELECT t_err($$SELECT api.set_rates(t_hotel('Rate Inn'), 'double', '2099-06-01', '2099-06-30', 100)$$);
-- Bad currencies, then a good one (lower case accepted).
SELECT t_err($$SELECT api.set_hotel_currency(t_hotel('Rate Inn'), 'EURO')$$);
SELECT t_err($$SELECT api.set_hotel_currency(t_hotel('Rate Inn'), 'XYZ')$$);
SELECT t_err($$SELECT api.set_hotel_currency(t_hotel('Rate Inn'), NULL)$$);
SELECT api.set_hotel_currency(t_hotel('Rate Inn'), 'eur') ->> 'currency';
SELECT t_err($$SELECT api.set_hotel_currency(t_hotel('Rate Inn'), 'USD')$$);
-- Bad rates, each refused with nothing written.
SELECT t_err($$SELECT api.set_rates(t_hotel('Rate Inn'), 'double', '2099-06-01', '2099-06-30', -1)$$);
SELECT t_err($$SELECT api.set_rates(t_hotel('Rate Inn'), 'double', '2099-06-01', '2099-06-30', 10.005)$$);
SELECT t_err($$SELECT api.set_rates(t_hotel('Rate Inn'), 'double', '2099-06-01', '2099-07-02', 100)$$);
SELECT t_err($$SELECT api.set_rates(t_hotel('Rate Inn'), 'penthouse', '2099-06-01', '2099-06-02', 100)$$);
SELECT t_err($$SELECT api.set_rates(t_hotel('Rate Inn'), 'double', '2099-06-01', '2099-06-30')$$);
SELECT t_err($$SELECT api.set_rates(t_hotel('Rate Inn'), 'double', '2099-06-01', '2099-06-30', weekday_amounts => '{"sat": -5}', amount => 1)$$);
SELECT t_err($$SELECT api.set_rates(t_hotel('Rate Inn'), 'double', '2099-06-01', '2099-06-30', weekday_amounts => '{"funday": 5}', amount => 1)$$);
SELECT t_err($$SELECT api.set_rates(t_hotel('Rate Inn'), 'double', '2099-06-01', '2099-06-30', weekday_amounts => '{"sat": "5"}', amount => 1)$$);
SELECT t_err($$SELECT api.set_rates(t_hotel('Rate Inn'), 'double', '2099-06-01', '2099-06-30', weekday_amounts => '{"sat": 150}')$$);
SELECT t_err($$SELECT api.set_rates(t_hotel('Rate Inn'), 'double', '2099-06-30', '2099-06-01', 100)$$);
SELECT t_err($$SELECT api.set_rates(999999, 'double', '2099-06-01', '2099-06-30', 100)$$);
RESET ROLE;
SELECT count(*) AS rates_after_bad_input FROM booking.rates WHERE hotel_id = t_hotel('Rate Inn');
SET ROLE booking_admin;
-- Weekday rates: 2099-06-06 is a Saturday; Fri and Sat cost more, other days 100.
SELECT extract(isodow FROM date '2099-06-06') AS saturday_isodow;
SELECT jsonb_array_length(api.set_rates(t_hotel('Rate Inn'), 'double', '2099-06-01', '2099-06-25',
                                        amount => 100, weekday_amounts => '{"fri": 120.50, "sat": 140}') -> 'rates');
SELECT r.night, r.amount FROM booking.rates r
 WHERE r.hotel_id = t_hotel('Rate Inn') AND r.room_type = 'double' AND r.night BETWEEN '2099-06-04' AND '2099-06-08'
 ORDER BY r.night;
-- A facility manager may set rates too; a user may not.
RESET ROLE;
SELECT t_as('guest1@hotel.test', 'booking_user');
SET ROLE booking_user;
SELECT t_err($$SELECT api.set_rates(t_hotel('Rate Inn'), 'suite', '2099-06-01', '2099-06-30', 300)$$);
SELECT t_err($$SELECT api.set_hotel_currency(t_hotel('Rate Inn'), 'EUR')$$);
-- Quote: Thu 06-04 to Sun 06-07 (3 nights: 100 + 120.50 + 140).
SELECT api.quote_reservation(t_hotel('Rate Inn'), 'double', '2099-06-04', 3) - 'hotel_id';
-- The quote wrote nothing.
SELECT t_nights('Rate Inn', 'double', '2099-06-04', '2099-06-06');
-- A reservation gets the same price, stored with it.
SELECT api.create_reservation(t_hotel('Rate Inn'), 'double', 'Ana', '2099-06-04', 3) ->> 'id' AS r1 \gset
SELECT t_pin(:'r1', 8701) AS r1 \gset
SELECT t_strip(api.get_reservation(:'r1')) - 'user_id';
-- A night without a rate is not sellable (06-26 has inventory but no rate): 409 naming it, nothing held.
SELECT t_err($$SELECT api.create_reservation(t_hotel('Rate Inn'), 'double', 'Bo', '2099-06-24', 4)$$);
SELECT t_err($$SELECT api.quote_reservation(t_hotel('Rate Inn'), 'double', '2099-06-24', 4)$$);
SELECT t_err($$SELECT api.create_reservation(t_hotel('Rate Inn'), 'suite', 'Bo', '2099-06-10', 1)$$);
SELECT t_nights('Rate Inn', 'double', '2099-06-24', '2099-06-27');
SELECT t_nights('Rate Inn', 'suite', '2099-06-10', '2099-06-10');
-- Price columns are written by the trigger only.
SELECT t_err($$UPDATE booking.reservations SET total_amount = 1, nightly_prices = '{}' WHERE id = '00000000-0000-0000-0000-000000008701'$$);
SELECT total_amount, nightly_prices FROM booking.reservations WHERE id = :'r1';
RESET ROLE;

-- A rate change does not change an existing stay; moving the stay keeps the
-- price of the nights it had and prices only the new ones.
SELECT t_as('h.admin@hotel.test', 'booking_admin');
SET ROLE booking_admin;
SELECT jsonb_array_length(api.set_rates(t_hotel('Rate Inn'), 'double', '2099-06-01', '2099-06-25', 90) -> 'rates');
SELECT api.get_reservation(:'r1') -> 'total_amount' AS unchanged_total;
-- One night longer: 06-07 at the new 90.
SELECT api.update_reservation(:'r1', stay_length => 4) -> 'nightly_prices';
-- Arrive a day later (06-05..06-08): 06-04 is dropped, 06-08 is new (90).
SELECT (api.update_reservation(:'r1', arrival_date => '2099-06-05') - 'created_at' - 'updated_at' - 'user_id' - 'id')
       -> 'nightly_prices';
SELECT api.get_reservation(:'r1') -> 'total_amount' AS moved_total;
-- Other room type: every night repriced (suite has no rate: 409, the old nights stay held and priced).
SELECT t_err(format($$SELECT api.update_reservation(%L, room_type => 'suite')$$, :'r1'));
SELECT api.get_reservation(:'r1') -> 'total_amount' AS still_total, t_nights('Rate Inn', 'double', '2099-06-05', '2099-06-08');
SELECT jsonb_array_length(api.set_rates(t_hotel('Rate Inn'), 'suite', '2099-06-01', '2099-06-30', 250) -> 'rates');
SELECT api.update_reservation(:'r1', room_type => 'suite') -> 'total_amount' AS suite_total;
-- A change of name does not reprice.
SELECT jsonb_array_length(api.set_rates(t_hotel('Rate Inn'), 'suite', '2099-06-01', '2099-06-30', 10) -> 'rates');
SELECT api.update_reservation(:'r1', guest_name => 'Ana Maria') -> 'total_amount' AS after_rename;

-- Cancellation policy: bad input, then free until 7 days before arrival, then the first night.
SELECT t_err($$SELECT api.set_cancellation_policy(t_hotel('Rate Inn'), -1, 'first_night')$$);
SELECT t_err($$SELECT api.set_cancellation_policy(t_hotel('Rate Inn'), 7, 'everything')$$);
SELECT t_err($$SELECT api.set_cancellation_policy(t_hotel('Rate Inn'), 7, 'percent')$$);
SELECT t_err($$SELECT api.set_cancellation_policy(t_hotel('Rate Inn'), 7, 'percent', 120)$$);
SELECT t_err($$SELECT api.set_cancellation_policy(t_hotel('Rate Inn'), 7, 'first_night', 10)$$);
SELECT api.set_cancellation_policy(t_hotel('Rate Inn'), 7, 'first_night') -> 'cancellation_policy';
-- Nights near today: inventory and a 80/night rate for the next 20 days.
SELECT jsonb_array_length(api.adjust_inventory(t_hotel('Rate Inn'), 'double', to_char(current_date, 'YYYY-MM-DD'),
                                               to_char(current_date + 20, 'YYYY-MM-DD'), total => 5));
SELECT jsonb_array_length(api.set_rates(t_hotel('Rate Inn'), 'double', to_char(current_date, 'YYYY-MM-DD'),
                                        to_char(current_date + 20, 'YYYY-MM-DD'), 80) -> 'rates');
SELECT jsonb_array_length(api.set_rates(t_hotel('Rate Inn'), 'double', to_char(current_date + 7, 'YYYY-MM-DD'),
                                        to_char(current_date + 7, 'YYYY-MM-DD'), 95.25) -> 'rates');
SELECT jsonb_array_length(api.set_rates(t_hotel('Rate Inn'), 'double', to_char(current_date + 6, 'YYYY-MM-DD'),
                                        to_char(current_date + 6, 'YYYY-MM-DD'), 70) -> 'rates');
-- Arrival in exactly 7 days: still free.  In 6 days: the first night (70).
SELECT api.create_reservation(t_hotel('Rate Inn'), 'double', 'Free', to_char(current_date + 7, 'YYYY-MM-DD'), 2) ->> 'id' AS c1 \gset
SELECT api.create_reservation(t_hotel('Rate Inn'), 'double', 'Late', to_char(current_date + 6, 'YYYY-MM-DD'), 2) ->> 'id' AS c2 \gset
SELECT api.cancel_reservation(:'c1') -> 'cancellation_fee' AS fee_7_days_before;
SELECT api.cancel_reservation(:'c2') -> 'cancellation_fee' AS fee_6_days_before;
-- Percentage: 15% of the total (70 + 95.25 = 165.25 -> 24.7875 -> 24.79).
SELECT api.set_cancellation_policy(t_hotel('Rate Inn'), 7, 'percent', 15) -> 'cancellation_policy';
SELECT api.create_reservation(t_hotel('Rate Inn'), 'double', 'Pct', to_char(current_date + 6, 'YYYY-MM-DD'), 2) ->> 'id' AS c3 \gset
SELECT api.get_reservation(:'c3') -> 'total_amount' AS pct_total, api.cancel_reservation(:'c3') -> 'cancellation_fee' AS fee_15_pct;
-- No policy: always free.
SELECT api.set_cancellation_policy(t_hotel('Rate Inn')) -> 'cancellation_policy';
SELECT api.create_reservation(t_hotel('Rate Inn'), 'double', 'Any', to_char(current_date + 1, 'YYYY-MM-DD'), 1) ->> 'id' AS c4 \gset
SELECT api.cancel_reservation(:'c4') -> 'cancellation_fee' AS fee_no_policy;
-- A hotel without a currency keeps selling unpriced (as in 1.0).
SELECT api.create_hotel('Plain Inn', 'Porto') ->> 'name';
SELECT jsonb_array_length(api.adjust_inventory(t_hotel('Plain Inn'), 'single', '2099-06-01', '2099-06-10', total => 1));
SELECT api.create_reservation(t_hotel('Plain Inn'), 'single', 'Cy', '2099-06-02', 2) ? 'total_amount' AS plain_priced;
SELECT t_err($$SELECT api.quote_reservation(t_hotel('Plain Inn'), 'single', '2099-06-02', 2)$$);
RESET ROLE;
SELECT t_violations();

-- KPIs for June 2099 against an independent recomputation from raw rows.
SELECT t_as('h.admin@hotel.test', 'booking_admin');
SET ROLE booking_admin;
SELECT api.create_reservation(t_hotel('Rate Inn'), 'double', 'K1', '2099-06-10', 3) ->> 'id' AS k1 \gset
SELECT api.create_reservation(t_hotel('Rate Inn'), 'double', 'K2', '2099-06-11', 1) ->> 'id' AS k2 \gset
SELECT api.create_reservation(t_hotel('Rate Inn'), 'double', 'K3', '2099-06-12', 2) ->> 'id' AS k3 \gset
SELECT api.cancel_reservation(:'k3') ->> 'status';
RESET ROLE;
UPDATE booking.reservations SET status = 'no_show' WHERE id = :'k2';
SELECT t_as('h.auditor@hotel.test', 'booking_auditor');
SET ROLE booking_auditor;
SELECT api.analytics_hotel_kpis(t_hotel('Rate Inn'), '2099-06-01', '2099-06-30') - 'by_night' - 'hotel_id';
SELECT api.analytics_hotel_kpis(t_hotel('Rate Inn'), '2099-06-01', '2099-06-30') -> 'by_night' -> 9;
RESET ROLE;
-- The recomputation: nights of sold stays from generate_series and the stored prices.
WITH stays AS (SELECT r.* FROM booking.reservations r
                WHERE r.hotel_id = t_hotel('Rate Inn') AND r.status IN ('confirmed', 'checked_in', 'completed')),
     sold AS (SELECT s.room_type, d::date AS night, (s.nightly_prices ->> to_char(d, 'YYYY-MM-DD'))::numeric AS price
                FROM stays s, generate_series(s.arrival_date, s.held_until - 1, interval '1 day') d
               WHERE d BETWEEN '2099-06-01' AND '2099-06-30'),
     rooms AS (SELECT sum(total) AS n FROM booking.inventory
                WHERE hotel_id = t_hotel('Rate Inn') AND night BETWEEN '2099-06-01' AND '2099-06-30'),
     arr AS (SELECT * FROM booking.reservations WHERE hotel_id = t_hotel('Rate Inn')
                AND arrival_date BETWEEN '2099-06-01' AND '2099-06-30'),
     k AS (SELECT api.analytics_hotel_kpis(t_hotel('Rate Inn'), '2099-06-01', '2099-06-30') AS j),
     mine AS (SELECT (SELECT n FROM rooms) AS rooms, (SELECT count(*) FROM sold) AS sold,
                     (SELECT sum(price) FROM sold) AS revenue,
                     (SELECT 100.0 * count(*) FILTER (WHERE status = 'cancelled') / count(*) FROM arr) AS canc,
                     (SELECT 100.0 * count(*) FILTER (WHERE status = 'no_show') / count(*) FILTER (WHERE status <> 'cancelled') FROM arr) AS ns,
                     (SELECT avg(stay_length) FROM arr WHERE status IN ('confirmed', 'checked_in', 'completed')) AS alos)
SELECT (j ->> 'rooms_available')::numeric = rooms AS rooms_ok,
       (j ->> 'rooms_sold')::numeric = sold AS sold_ok,
       (j ->> 'room_revenue')::numeric = revenue AS revenue_ok,
       (j ->> 'occupancy_pct')::numeric = round(100.0 * sold / rooms, 2) AS occupancy_ok,
       (j ->> 'adr')::numeric = round(revenue / sold, 2) AS adr_ok,
       (j ->> 'revpar')::numeric = round(revenue / rooms, 2) AS revpar_ok,
       (j ->> 'cancellation_rate_pct')::numeric = round(canc, 2) AS canc_ok,
       (j ->> 'no_show_rate_pct')::numeric = round(ns, 2) AS no_show_ok,
       (j ->> 'alos')::numeric = round(alos, 2) AS alos_ok,
       (SELECT bool_and((b ->> 'room_revenue')::numeric =
                        coalesce((SELECT sum(price) FROM sold WHERE sold.night = (b ->> 'night')::date
                                  AND sold.room_type = b ->> 'room_type'), 0))
          FROM jsonb_array_elements(j -> 'by_night') b) AS by_night_ok,
       (SELECT bool_and((t ->> 'room_revenue')::numeric =
                        coalesce((SELECT sum(price) FROM sold WHERE sold.room_type = t ->> 'room_type'), 0))
          FROM jsonb_array_elements(j -> 'by_room_type') t) AS by_type_ok
  FROM k, mine;
-- Every stored total is the sum of its nightly prices.
SELECT count(*) AS bad_totals FROM booking.reservations r
 WHERE r.currency IS NOT NULL
   AND r.total_amount <> (SELECT sum(v::text::numeric) FROM jsonb_each(r.nightly_prices) e(k, v));
-- KPIs: a user may not; bad range.
SELECT t_as('guest1@hotel.test', 'booking_user');
SET ROLE booking_user;
SELECT t_err($$SELECT api.analytics_hotel_kpis(t_hotel('Rate Inn'), '2099-06-01', '2099-06-30')$$);
RESET ROLE;
SELECT t_as('h.admin@hotel.test', 'booking_admin');
SELECT t_err($$SELECT api.analytics_hotel_kpis(t_hotel('Rate Inn'), '2099-06-30', '2099-06-01')$$);
SELECT t_err($$SELECT api.analytics_hotel_kpis(999999, '2099-06-01', '2099-06-30')$$);
-- Rates are dumped with the data.
SELECT c.relname FROM pg_extension e, unnest(e.extconfig) x JOIN pg_class c ON c.oid = x
 WHERE e.extname = 'pg_booking' AND c.relname = 'rates';
