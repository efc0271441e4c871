-- Hotel KPIs (issue 15): after a scripted load, every KPI the api and the
-- dashboard views report (occupancy %, ADR, RevPAR, revenue by night and by
-- room type, pickup, lead time, cancellation and no-show rates, ALOS,
-- fees) equals an independent recomputation from raw rows, to the cent
-- (public.kpi_recount, test/kpi_recount.sql); two negative controls show the
-- comparison can fail.
\set SHOW_CONTEXT never
SET timezone TO 'UTC';
\i test/kpi_recount.sql

-- Two hotels: one priced (EUR, cancellation free until 3 days before, then
-- 50 %), one not priced (no currency: revenue 0, the stay rates still count).
SELECT t_as('h.admin@hotel.test', 'booking_admin');
SET ROLE booking_admin;
SELECT api.create_hotel('KPI Inn', 'Faro') ->> 'name';
SELECT api.create_hotel('KPI Plain', 'Faro') ->> 'name';
SELECT jsonb_array_length(api.adjust_inventory(t_hotel('KPI Inn'), 'double', '2024-03-01', '2024-03-24', total => 10));
SELECT jsonb_array_length(api.adjust_inventory(t_hotel('KPI Inn'), 'suite', '2024-03-01', '2024-03-24', total => 5));
SELECT jsonb_array_length(api.adjust_inventory(t_hotel('KPI Plain'), 'double', '2024-03-01', '2024-03-24', total => 6));
SELECT api.set_hotel_currency(t_hotel('KPI Inn'), 'EUR') ->> 'currency';
SELECT api.set_cancellation_policy(t_hotel('KPI Inn'), 3, 'percent', 50) -> 'cancellation_policy';
-- 2024-03-02, 09, 16, 23 are Saturdays.
SELECT jsonb_array_length(api.set_rates(t_hotel('KPI Inn'), 'double', '2024-03-01', '2024-03-24',
                                        amount => 100, weekday_amounts => '{"sat": 140.50}') -> 'rates');
SELECT jsonb_array_length(api.set_rates(t_hotel('KPI Inn'), 'suite', '2024-03-01', '2024-03-24', amount => 250.25) -> 'rates');
RESET ROLE;
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL AS claims_reset;

-- The load: stays made 0 to 119 days before arrival (created_at written
-- directly: the past cannot be booked through the api), arriving 2024-03-01
-- to 03-18 for 1 to 4 nights; the triggers take the nights and price them.
INSERT INTO booking.reservations (hotel_id, room_type, user_id, guest_name, arrival_date, stay_length, adults, held_until, created_at)
SELECT h.id, CASE WHEN i % 3 = 0 THEN 'suite' ELSE 'double' END, t_id('guest1@hotel.test'), 'Load ' || i,
       a.arrival, 1 + i % 4, 1, a.arrival + 1 + i % 4,
       (a.arrival - (i * 13) % 120)::timestamp AT TIME ZONE 'UTC' + make_interval(hours => i % 24)
  FROM generate_series(1, 48) i
 CROSS JOIN LATERAL (SELECT date '2024-03-01' + (i * 7) % 18 AS arrival) a
  JOIN booking.hotels h ON h.name = CASE WHEN i % 4 = 3 AND i % 3 <> 0 THEN 'KPI Plain' ELSE 'KPI Inn' END;
SELECT h.name, r.room_type, count(*) AS stays, count(r.total_amount) AS priced, sum(r.total_amount) AS total
  FROM booking.reservations r JOIN booking.hotels h ON h.id = r.hotel_id
 WHERE h.name IN ('KPI Inn', 'KPI Plain') GROUP BY 1, 2 ORDER BY 1, 2;
-- A rate change after booking keeps the stored prices; a stay lengthened
-- afterwards pays the new rate for its new night only.
SET ROLE booking_admin;
SELECT t_as('h.admin@hotel.test', 'booking_admin');
SELECT jsonb_array_length(api.set_rates(t_hotel('KPI Inn'), 'double', '2024-03-01', '2024-03-24', amount => 90) -> 'rates');
RESET ROLE;
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL AS claims_reset;
UPDATE booking.reservations SET stay_length = stay_length + 1, held_until = held_until + 1
 WHERE guest_name = 'Load 8' RETURNING arrival_date, stay_length, nightly_prices, total_amount;
-- Statuses: cancelled before arrival (nights given back, the fee charged:
-- the arrival has passed, so 50 %), no-shows (first night kept), stays
-- checked out early, completed, checked in; the others stay confirmed.
UPDATE booking.reservations SET status = 'cancelled', held_until = arrival_date
 WHERE guest_name ~ '^Load \d*1$';
UPDATE booking.reservations SET status = 'no_show', held_until = arrival_date + 1
 WHERE guest_name ~ '^Load \d*2$';
UPDATE booking.reservations SET status = 'completed', held_until = arrival_date + 1
 WHERE guest_name ~ '^Load \d*3$' AND stay_length > 1;
UPDATE booking.reservations SET status = 'completed' WHERE guest_name ~ '^Load \d*[45]$';
UPDATE booking.reservations SET status = 'checked_in' WHERE guest_name ~ '^Load \d*6$';
-- The cancellations got their time from the trigger (now); give them a
-- history (days after they were made, before arrival) with the trigger off.
SELECT count(*) AS cancelled, count(*) FILTER (WHERE cancelled_at = now()) AS stamped_now,
       sum(cancellation_fee) AS fees
  FROM booking.reservations WHERE status = 'cancelled' AND guest_name LIKE 'Load %';
ALTER TABLE booking.reservations DISABLE TRIGGER reservations_cancelled_at_change;
UPDATE booking.reservations
   SET cancelled_at = least(created_at + make_interval(days => (substr(guest_name, 6)::integer * 5) % 40),
                            arrival_date::timestamp AT TIME ZONE 'UTC')
 WHERE status = 'cancelled' AND guest_name LIKE 'Load %';
ALTER TABLE booking.reservations ENABLE TRIGGER reservations_cancelled_at_change;
SELECT status, count(*) FROM booking.reservations WHERE guest_name LIKE 'Load %' GROUP BY 1 ORDER BY 1;
SELECT t_violations() AS violations;

-- The figures, as an auditor reads them.
SELECT t_as('h.auditor@hotel.test', 'booking_auditor');
SET ROLE booking_auditor;
SELECT jsonb_pretty(api.analytics_hotel_kpis(t_hotel('KPI Inn'), '2024-03-01', '2024-03-24') - 'by_night' - 'hotel_id');
SELECT jsonb_pretty(api.analytics_hotel_kpis(t_hotel('KPI Plain'), '2024-03-01', '2024-03-24') - 'by_night' - 'hotel_id' - 'by_room_type');
SELECT jsonb_pretty(api.analytics_hotel_kpis(t_hotel('KPI Inn'), '2024-03-01', '2024-03-24') -> 'by_night' -> 8);
SELECT l - 'buckets' - 'hotel_id' AS lead_time, b.*
  FROM api.analytics_hotel_lead_time(t_hotel('KPI Inn'), '2024-03-01', '2024-03-24') l,
       jsonb_to_recordset(l -> 'buckets') b(bucket text, min_days integer, max_days integer, reservations integer, cancelled integer);
-- Pickup of one night: the rooms on the books as it came closer.
SELECT n.*
  FROM jsonb_to_recordset(api.analytics_hotel_pickup(t_hotel('KPI Inn'), '2024-03-09', '2024-03-09') -> 'nights')
       n(room_type text, days_before integer, as_of date, rooms_available integer, rooms_on_books integer);
SELECT api.analytics_hotel_pickup(t_hotel('KPI Inn'), '2024-03-09', '2024-03-09') -> 'days_before' AS days_before;
RESET ROLE;
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL AS claims_reset;

-- The proof: nothing differs from the recomputation, over a window of the
-- load, a part of it, and a window that cuts stays in two.
SELECT * FROM kpi_recount(t_hotel('KPI Inn'), '2024-03-01', '2024-03-24');
SELECT * FROM kpi_recount(t_hotel('KPI Inn'), '2024-03-06', '2024-03-12');
SELECT * FROM kpi_recount(t_hotel('KPI Plain'), '2024-03-01', '2024-03-24');
SELECT kpi_recount_size(t_hotel('KPI Inn'), '2024-03-01', '2024-03-24') AS figures_compared,
       kpi_recount_size(t_hotel('KPI Plain'), '2024-03-01', '2024-03-24') AS plain_figures_compared;
-- The counters the revenue figures read (booking.revenue_night_counts)
-- equal a full recount.
SELECT * FROM booking.analytics_check();
SELECT count(*) AS counter_rows, sum(rooms_sold) AS rooms_sold, sum(revenue) AS revenue
  FROM booking.revenue_night_counts WHERE hotel_id IN (t_hotel('KPI Inn'), t_hotel('KPI Plain'));
-- Every pickup figure of the window was compared, and some changed as the
-- nights came closer (stays made late, stays cancelled on the way).
SELECT count(*) AS pickup_figures,
       count(DISTINCT (p.night, p.room_type)) FILTER (WHERE p.rooms_on_books > 0) AS nights_with_bookings,
       count(*) FILTER (WHERE p.rooms_on_books <> coalesce(q.rooms_on_books, -1)) AS changed_since_day_before
  FROM booking.hotel_pickup p
  LEFT JOIN booking.hotel_pickup q ON q.hotel_id = p.hotel_id AND q.room_type = p.room_type AND q.night = p.night
                                  AND q.days_before = (SELECT min(d.days_before) FROM booking.pickup_days d
                                                        WHERE d.days_before > p.days_before)
 WHERE p.hotel_id = t_hotel('KPI Inn');

-- Negative controls (rolled back): a nightly price one cent off; a rule
-- changed under the views (no-shows counted as sold: the stay rates see it at
-- once, the counters keep what each write sold); a status change the
-- counters miss (their trigger off); a counter a cent off.
BEGIN;
ALTER TABLE booking.reservations DISABLE TRIGGER reservations_price_change;
UPDATE booking.reservations
   SET nightly_prices = jsonb_set(nightly_prices, ARRAY[to_char(arrival_date, 'YYYY-MM-DD')],
                                  to_jsonb((nightly_prices ->> to_char(arrival_date, 'YYYY-MM-DD'))::numeric + 0.01))
 WHERE guest_name = 'Load 4';
SELECT kpi, reported - recounted AS off_by FROM kpi_recount(t_hotel('KPI Inn'), '2024-03-01', '2024-03-24');
ROLLBACK;
BEGIN;
CREATE OR REPLACE FUNCTION booking.reservation_sells(status text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT status IN ('confirmed', 'checked_in', 'completed', 'no_show') $$;
SELECT kpi, count(*) AS differences FROM kpi_recount(t_hotel('KPI Inn'), '2024-03-01', '2024-03-24') GROUP BY 1 ORDER BY 1;
ROLLBACK;
BEGIN;
ALTER TABLE booking.reservations DISABLE TRIGGER reservations_count_revenue_update;
UPDATE booking.reservations SET status = 'completed' WHERE guest_name = 'Load 2';
SELECT kpi, count(*) AS differences FROM kpi_recount(t_hotel('KPI Inn'), '2024-03-01', '2024-03-24')
 WHERE kpi NOT LIKE 'stays.%' GROUP BY 1 ORDER BY 1;
SELECT summary, counter, kept, recounted FROM booking.analytics_check();
ROLLBACK;
-- A counter a cent off: analytics_check() and the recount both see it.
BEGIN;
UPDATE booking.revenue_night_counts SET revenue = revenue + 0.01
 WHERE hotel_id = t_hotel('KPI Inn') AND room_type = 'suite' AND night = '2024-03-07';
SELECT summary, counter, kept - recounted AS off_by FROM booking.analytics_check();
SELECT kpi, key, reported - recounted AS off_by FROM kpi_recount(t_hotel('KPI Inn'), '2024-03-01', '2024-03-24');
ROLLBACK;
SELECT count(*) AS after_rollback FROM kpi_recount(t_hotel('KPI Inn'), '2024-03-01', '2024-03-24');
SELECT * FROM booking.analytics_check();

-- cancelled_at is written by its trigger only: set when the status becomes
-- cancelled, kept afterwards, NULL otherwise, whatever a writer asks.
SELECT t_as('h.admin@hotel.test', 'booking_admin');
SET ROLE booking_admin;
SELECT api.create_reservation(t_hotel('KPI Inn'), 'suite', 'Late', '2024-03-20', 1) ->> 'id' AS late \gset
RESET ROLE;
UPDATE booking.reservations SET cancelled_at = '2024-01-01' WHERE id = :'late' RETURNING status, cancelled_at;
BEGIN;
SET ROLE booking_admin;
SELECT api.cancel_reservation(:'late') ->> 'status';
RESET ROLE;
SELECT cancelled_at = now() AS cancelled_now FROM booking.reservations WHERE id = :'late';
COMMIT;
UPDATE booking.reservations SET cancelled_at = '2024-01-01', guest_name = 'Late, renamed' WHERE id = :'late'
RETURNING cancelled_at = '2024-01-01' AS overwritten, cancelled_at IS NOT NULL AS kept;
-- A stay inserted cancelled is stamped too.
INSERT INTO booking.reservations (hotel_id, room_type, user_id, guest_name, arrival_date, stay_length, adults, held_until, status, cancelled_at)
VALUES (t_hotel('KPI Inn'), 'suite', t_id('guest1@hotel.test'), 'Born cancelled', '2024-03-21', 1, 1, '2024-03-21', 'cancelled', '2000-01-01')
RETURNING cancelled_at = now() AS stamped_now;
SELECT count(*) AS after_late_changes FROM kpi_recount(t_hotel('KPI Inn'), '2024-03-01', '2024-03-24');
-- A rebuild gives the same counters; deleting the load counts it out.
SELECT booking.analytics_rebuild();
SELECT * FROM booking.analytics_check();
DELETE FROM booking.reservations WHERE hotel_id = t_hotel('KPI Plain') AND guest_name LIKE 'Load %';
SELECT sum(rooms_sold) AS plain_sold_after_delete, sum(revenue) AS plain_revenue
  FROM booking.revenue_night_counts WHERE hotel_id = t_hotel('KPI Plain');
SELECT * FROM booking.analytics_check();
SELECT count(*) AS plain_after_delete FROM kpi_recount(t_hotel('KPI Plain'), '2024-03-01', '2024-03-24');

-- Who may read: admin, facility_manager, auditor; not a user.  Bad input.
SELECT t_as('h.fm@hotel.test', 'booking_facility_manager');
SET ROLE booking_facility_manager;
SELECT jsonb_array_length(api.analytics_hotel_pickup(t_hotel('KPI Inn'), '2024-03-01', '2024-03-02') -> 'nights') AS fm_pickup;
SELECT api.analytics_hotel_lead_time(t_hotel('KPI Inn'), '2024-03-01', '2024-03-02') ->> 'reservations' AS fm_lead_time;
RESET ROLE;
SELECT t_as('guest1@hotel.test', 'booking_user');
SET ROLE booking_user;
SELECT t_err($$SELECT api.analytics_hotel_pickup(t_hotel('KPI Inn'), '2024-03-01', '2024-03-24')$$);
SELECT t_err($$SELECT api.analytics_hotel_lead_time(t_hotel('KPI Inn'), '2024-03-01', '2024-03-24')$$);
SELECT t_err($$SELECT count(*) FROM booking.hotel_pickup$$);
RESET ROLE;
SELECT t_as('h.admin@hotel.test', 'booking_admin');
SET ROLE booking_admin;
SELECT t_err($$SELECT api.analytics_hotel_pickup(t_hotel('KPI Inn'), '2024-03-24', '2024-03-01')$$);
SELECT t_err($$SELECT api.analytics_hotel_lead_time(t_hotel('KPI Inn'), '2024-03-01', 'tomorrow')$$);
SELECT t_err($$SELECT api.analytics_hotel_pickup(999999, '2024-03-01', '2024-03-24')$$);
SELECT t_err($$SELECT api.analytics_hotel_lead_time(999999, '2024-03-01', '2024-03-24')$$);
RESET ROLE;
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL AS claims_reset;
-- The dashboard's role reads the KPI views (and nothing else).
SET ROLE booking_grafana;
SELECT count(*) > 0 AS grafana_reads_pickup FROM booking.hotel_pickup WHERE hotel_name = 'KPI Inn';
SELECT sum(room_revenue) AS grafana_revenue FROM booking.hotel_revenue_by_night WHERE hotel_name = 'KPI Inn';
SELECT sum(reservations) AS grafana_stays FROM booking.hotel_stays WHERE hotel_name = 'KPI Inn';
SELECT sum(reservations) AS grafana_lead_time FROM booking.hotel_lead_time WHERE hotel_name = 'KPI Inn';
SELECT t_err($$SELECT count(*) FROM booking.reservations$$);
RESET ROLE;
