-- The checkout at speed (issue 11): the revenue counters' trigger writes
-- nothing for an UPDATE that changes nothing sold (extension/revenue_counts.c)
-- and runs the SQL deltas for every other statement; the counters stay equal
-- to the recount (booking.analytics_check() empty) through each kind of
-- statement.  The reservation events (extension/events.c) are those of the
-- SQL trigger: kinds, payloads, no event for a change of nothing they report.
\set SHOW_CONTEXT never
SET timezone TO 'UTC';
SELECT t_as('h.admin@hotel.test', 'booking_admin');
SET ROLE booking_admin;
SELECT api.create_hotel('Speed Inn', 'Faro') ->> 'name';
SELECT jsonb_array_length(api.adjust_inventory(t_hotel('Speed Inn'), 'double', '2099-07-01', '2099-07-10', total => 10));
SELECT jsonb_array_length(api.adjust_inventory(t_hotel('Speed Inn'), 'suite', '2099-07-01', '2099-07-10', total => 10));
SELECT api.set_hotel_currency(t_hotel('Speed Inn'), 'EUR') ->> 'currency';
SELECT jsonb_array_length(api.set_rates(t_hotel('Speed Inn'), 'double', '2099-07-01', '2099-07-10', amount => 100) -> 'rates');
SELECT jsonb_array_length(api.set_rates(t_hotel('Speed Inn'), 'suite', '2099-07-01', '2099-07-10', amount => 200) -> 'rates');
RESET ROLE;
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL AS claims_reset;
SELECT booking.publish_events() >= 0 AS published;
SELECT coalesce(max(id), 0) AS before FROM booking.events \gset

INSERT INTO booking.reservations (hotel_id, room_type, user_id, guest_name, arrival_date, stay_length, adults, held_until)
SELECT t_hotel('Speed Inn'), 'double', t_id('guest1@hotel.test'), 'Speed ' || i, date '2099-07-01' + i % 3, 1 + i % 2, 1,
       date '2099-07-01' + i % 3 + 1 + i % 2
  FROM generate_series(1, 6) i;
-- What the counters hold for the hotel, and whether they match the recount.
CREATE FUNCTION pg_temp.sold() RETURNS TABLE (rooms_sold bigint, revenue numeric, check_rows bigint)
LANGUAGE sql AS $$
    SELECT sum(c.rooms_sold)::bigint, sum(c.revenue), (SELECT count(*) FROM booking.analytics_check())
      FROM booking.revenue_night_counts c WHERE c.hotel_id = t_hotel('Speed Inn')
$$;
SELECT * FROM pg_temp.sold();
-- A check-in and the checkout's completions sell the same nights: nothing moves.
UPDATE booking.reservations SET status = 'checked_in', checked_in_at = now() WHERE guest_name IN ('Speed 1', 'Speed 2');
UPDATE booking.reservations SET status = 'completed' WHERE guest_name LIKE 'Speed %' AND status IN ('confirmed', 'checked_in');
SELECT * FROM pg_temp.sold();
-- One statement, most rows unchanged and one lengthened: the lengthened
-- stay's night (and its price) is counted.
UPDATE booking.reservations SET stay_length = stay_length + CASE WHEN guest_name = 'Speed 3' THEN 1 ELSE 0 END,
       held_until = held_until + CASE WHEN guest_name = 'Speed 3' THEN 1 ELSE 0 END
 WHERE guest_name LIKE 'Speed %';
SELECT * FROM pg_temp.sold();
-- A status that stops selling with its nights still held (a no-show not
-- yet released), and one that sells again.
UPDATE booking.reservations SET status = 'no_show' WHERE guest_name = 'Speed 4';
SELECT * FROM pg_temp.sold();
UPDATE booking.reservations SET status = 'completed' WHERE guest_name = 'Speed 4';
SELECT * FROM pg_temp.sold();
-- Another room type: counted out of one and into the other.
UPDATE booking.reservations SET room_type = 'suite' WHERE guest_name = 'Speed 5';
SELECT * FROM pg_temp.sold();
-- New ids: the pairs no longer match by id, the SQL counts out and back in.
UPDATE booking.reservations SET id = gen_random_uuid() WHERE guest_name LIKE 'Speed %';
SELECT * FROM pg_temp.sold();
DELETE FROM booking.reservations WHERE guest_name = 'Speed 6';
SELECT * FROM pg_temp.sold();
-- Negative control: a counter off by one room is seen.
UPDATE booking.revenue_night_counts SET rooms_sold = rooms_sold + 1
 WHERE (hotel_id, room_type, night) = (SELECT hotel_id, room_type, night FROM booking.revenue_night_counts
                                        WHERE hotel_id = t_hotel('Speed Inn') ORDER BY night LIMIT 1);
SELECT * FROM pg_temp.sold();
SELECT count(*) AS rebuilt FROM (SELECT booking.analytics_rebuild()) r;
SELECT * FROM pg_temp.sold();

-- The events of those statements, as the SQL trigger wrote them.
SELECT booking.publish_events() > 0 AS published;
SELECT kind, entity, payload, count(*)
  FROM (SELECT kind, entity, payload - 'hotel_id' - 'owner_id' AS payload FROM booking.events WHERE id > :before) e
 GROUP BY 1, 2, 3 ORDER BY kind, payload::text;
SELECT count(*) AS entity_ids_of_reservations
  FROM booking.events e WHERE e.id > :before AND e.entity_id ~ '^[0-9a-f-]{36}$';
SELECT count(*) AS events_naming_the_guest FROM booking.events WHERE id > :before AND payload::text LIKE '%Speed%';
DELETE FROM booking.reservations WHERE guest_name LIKE 'Speed %';
