-- An independent recomputation of every hotel KPI from raw rows
-- (reservations, their stored nightly prices, inventory), compared with what
-- the api and the dashboard views report (issue 15).  Used by
-- sql/88_hotel_kpis.sql (\i, from the top folder) and t/087_price_concurrency.pl.
--
-- public.kpi_recount(hotel, from, to) returns one row per figure that
-- differs (reported NULL: missing from the report; recounted NULL: reported
-- but not expected); none when every KPI is exact.  Nights, arrivals and
-- prices are taken here with generate_series over each stay and explicit
-- status lists, not with the views or functions under test.  Call it as a
-- superuser without claims (the api functions then let it read).
CREATE OR REPLACE FUNCTION public.kpi_recount(hotel bigint, f date, t date)
RETURNS TABLE (kpi text, key text, reported numeric, recounted numeric)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    k jsonb := api.analytics_hotel_kpis(hotel, to_char(f, 'YYYY-MM-DD'), to_char(t, 'YYYY-MM-DD'));
    p jsonb := api.analytics_hotel_pickup(hotel, to_char(f, 'YYYY-MM-DD'), to_char(t, 'YYYY-MM-DD'));
    l jsonb := api.analytics_hotel_lead_time(hotel, to_char(f, 'YYYY-MM-DD'), to_char(t, 'YYYY-MM-DD'));
    minor integer := coalesce((SELECT c.minor_units FROM booking.hotels h JOIN booking.currencies c ON c.code = h.currency
                                WHERE h.id = hotel), 2);
    today date := (now() AT TIME ZONE coalesce(nullif(current_setting('pg_booking.checkout_time_zone', true), ''), 'UTC'))::date;
BEGIN
    RETURN QUERY
    WITH inv AS (SELECT i.room_type, i.night, i.total FROM booking.inventory i
                  WHERE i.hotel_id = hotel AND i.night BETWEEN f AND t),
         sold AS (SELECT r.room_type, d::date AS night, (r.nightly_prices ->> to_char(d, 'YYYY-MM-DD'))::numeric AS price
                    FROM booking.reservations r, generate_series(r.arrival_date, r.held_until - 1, interval '1 day') d
                   WHERE r.hotel_id = hotel AND r.status IN ('confirmed', 'checked_in', 'completed')
                     AND d::date BETWEEN f AND t),
         per_night AS (SELECT i.room_type, i.night, i.total::numeric AS rooms,
                              (SELECT count(*) FROM sold s WHERE s.room_type = i.room_type AND s.night = i.night)::numeric AS sold,
                              coalesce((SELECT sum(s.price) FROM sold s WHERE s.room_type = i.room_type AND s.night = i.night), 0) AS revenue
                         FROM inv i),
         arr AS (SELECT r.* FROM booking.reservations r WHERE r.hotel_id = hotel AND r.arrival_date BETWEEN f AND t),
         figures(scope, key, rooms, sold, revenue) AS (
             SELECT 'total', 'all', sum(n.rooms), sum(n.sold), sum(n.revenue) FROM per_night n
             UNION ALL
             SELECT 'type', n.room_type, sum(n.rooms), sum(n.sold), sum(n.revenue) FROM per_night n GROUP BY n.room_type
             UNION ALL
             SELECT 'view_night', to_char(n.night, 'YYYY-MM-DD'), sum(n.rooms), sum(n.sold), sum(n.revenue) FROM per_night n GROUP BY n.night),
         pickup_days(n) AS (VALUES (0), (1), (3), (7), (14), (30), (60), (90)),
         booked AS (SELECT r.room_type, d::date AS night, (r.created_at AT TIME ZONE 'UTC')::date AS made,
                           CASE WHEN r.status = 'cancelled' THEN (r.cancelled_at AT TIME ZONE 'UTC')::date END AS cancelled_on
                      FROM booking.reservations r, generate_series(r.arrival_date, r.departure_date - 1, interval '1 day') d
                     WHERE r.hotel_id = hotel AND d::date BETWEEN f AND t),
         lead AS (SELECT a.status, a.arrival_date - (a.created_at AT TIME ZONE 'UTC')::date AS days FROM arr a),
         recounted(kpi, key, v) AS (
             SELECT x.scope || '.' || m.name, x.key, m.v
               FROM figures x
              CROSS JOIN LATERAL (VALUES ('rooms_available', x.rooms), ('rooms_sold', x.sold), ('room_revenue', x.revenue),
                                         ('occupancy_pct', round(100 * x.sold / nullif(x.rooms, 0), 2)),
                                         ('adr', round(x.revenue / nullif(x.sold, 0), minor)),
                                         ('revpar', round(x.revenue / nullif(x.rooms, 0), minor))) m(name, v)
             UNION ALL
             SELECT 'night.' || m.name, to_char(n.night, 'YYYY-MM-DD') || ' ' || n.room_type, m.v
               FROM per_night n
              CROSS JOIN LATERAL (VALUES ('rooms_available', n.rooms), ('rooms_sold', n.sold), ('room_revenue', n.revenue)) m(name, v)
             UNION ALL
             SELECT 'stays.' || m.name, 'all', m.v
               FROM (SELECT count(*)::numeric AS n, count(*) FILTER (WHERE a.status = 'cancelled')::numeric AS c,
                            count(*) FILTER (WHERE a.status = 'no_show')::numeric AS ns,
                            avg(a.stay_length) FILTER (WHERE a.status IN ('confirmed', 'checked_in', 'completed')) AS alos,
                            coalesce(sum(a.cancellation_fee), 0) AS fees FROM arr a) s
              CROSS JOIN LATERAL (VALUES ('reservations', s.n), ('cancellation_rate_pct', round(100 * s.c / nullif(s.n, 0), 2)),
                                         ('no_show_rate_pct', round(100 * s.ns / nullif(s.n - s.c, 0), 2)),
                                         ('alos', round(s.alos, 2)), ('cancellation_fees', s.fees)) m(name, v)
             UNION ALL
             SELECT 'pickup', to_char(i.night, 'YYYY-MM-DD') || ' ' || i.room_type || ' ' || d.n,
                    (SELECT count(*) FROM booked b
                      WHERE b.room_type = i.room_type AND b.night = i.night AND b.made <= i.night - d.n
                        AND (b.cancelled_on IS NULL OR b.cancelled_on > i.night - d.n))::numeric
               FROM inv i, pickup_days d WHERE i.night - d.n <= today
             UNION ALL
             SELECT 'lead_time.' || m.name, b.bucket, m.v
               FROM (VALUES ('0'), ('1-3'), ('4-7'), ('8-14'), ('15-30'), ('31-90'), ('91+')) b(bucket)
              CROSS JOIN LATERAL (SELECT count(*)::numeric AS n,
                                         count(*) FILTER (WHERE x.status = 'cancelled')::numeric AS c
                                    FROM lead x
                                   WHERE b.bucket = CASE WHEN x.days <= 0 THEN '0' WHEN x.days <= 3 THEN '1-3'
                                                         WHEN x.days <= 7 THEN '4-7' WHEN x.days <= 14 THEN '8-14'
                                                         WHEN x.days <= 30 THEN '15-30' WHEN x.days <= 90 THEN '31-90'
                                                         ELSE '91+' END) c
              CROSS JOIN LATERAL (VALUES ('reservations', c.n), ('cancelled', c.c)) m(name, v)
             UNION ALL
             SELECT 'lead_time.average_lead_days', 'all', round(avg(x.days), 2) FROM lead x
             UNION ALL
             -- Each priced stay: its total is the sum of one price per night of the stay.
             SELECT 'stay.total', r.id::text, r.total_amount FROM booking.reservations r
              WHERE r.hotel_id = hotel AND r.currency IS NOT NULL),
         reported(kpi, key, v) AS (
             SELECT 'total.' || m, 'all', (k ->> m)::numeric
               FROM unnest('{rooms_available,rooms_sold,room_revenue,occupancy_pct,adr,revpar}'::text[]) m
             UNION ALL
             SELECT 'type.' || m, x ->> 'room_type', (x ->> m)::numeric
               FROM jsonb_array_elements(k -> 'by_room_type') x,
                    unnest('{rooms_available,rooms_sold,room_revenue,occupancy_pct,adr,revpar}'::text[]) m
             UNION ALL
             SELECT 'night.' || m, (x ->> 'night') || ' ' || (x ->> 'room_type'), (x ->> m)::numeric
               FROM jsonb_array_elements(k -> 'by_night') x, unnest('{rooms_available,rooms_sold,room_revenue}'::text[]) m
             UNION ALL
             SELECT 'stays.' || m, 'all', (k ->> m)::numeric
               FROM unnest('{reservations,cancellation_rate_pct,no_show_rate_pct,alos,cancellation_fees}'::text[]) m
             UNION ALL
             -- The dashboard's view of the nights.
             SELECT 'view_night.' || m.name, to_char(v.night, 'YYYY-MM-DD'), m.v
               FROM booking.hotel_revenue_by_night v
              CROSS JOIN LATERAL (VALUES ('rooms_available', v.rooms_available), ('rooms_sold', v.rooms_sold),
                                         ('room_revenue', v.room_revenue), ('occupancy_pct', v.occupancy_pct),
                                         ('adr', v.adr), ('revpar', v.revpar)) m(name, v)
              WHERE v.hotel_id = hotel AND v.night BETWEEN f AND t
             UNION ALL
             SELECT 'pickup', (x ->> 'night') || ' ' || (x ->> 'room_type') || ' ' || (x ->> 'days_before'),
                    (x ->> 'rooms_on_books')::numeric
               FROM jsonb_array_elements(p -> 'nights') x
             UNION ALL
             SELECT 'lead_time.' || m, x ->> 'bucket', (x ->> m)::numeric
               FROM jsonb_array_elements(l -> 'buckets') x, unnest('{reservations,cancelled}'::text[]) m
             UNION ALL
             SELECT 'lead_time.average_lead_days', 'all', (l ->> 'average_lead_days')::numeric
             UNION ALL
             SELECT 'stay.total', r.id::text, (SELECT sum(e.value::text::numeric) FROM jsonb_each(r.nightly_prices) e
                                                WHERE e.key::date >= r.arrival_date AND e.key::date < r.departure_date
                                               HAVING count(*) = r.stay_length AND count(*) = (SELECT count(*) FROM jsonb_object_keys(r.nightly_prices)))
               FROM booking.reservations r
              WHERE r.hotel_id = hotel AND r.currency IS NOT NULL)
    SELECT coalesce(a.kpi, b.kpi), coalesce(a.key, b.key), a.v, b.v
      FROM reported a FULL JOIN recounted b ON b.kpi = a.kpi AND b.key = a.key
     WHERE a.v IS DISTINCT FROM b.v OR a.kpi IS NULL OR b.kpi IS NULL
     ORDER BY 1, 2;
END
$$;
-- How many figures a recount compares (a check that compared nothing proves nothing).
CREATE OR REPLACE FUNCTION public.kpi_recount_size(hotel bigint, f date, t date) RETURNS bigint
LANGUAGE sql STABLE
AS $$
    SELECT (SELECT count(*) FROM booking.inventory i WHERE i.hotel_id = hotel AND i.night BETWEEN f AND t) * 3
         + jsonb_array_length(api.analytics_hotel_pickup(hotel, to_char(f, 'YYYY-MM-DD'), to_char(t, 'YYYY-MM-DD')) -> 'nights')
         + (SELECT count(*) FROM booking.reservations r WHERE r.hotel_id = hotel AND r.arrival_date BETWEEN f AND t)
$$;
