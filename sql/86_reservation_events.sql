-- Reservation state changes are events too (without guest names).
\set SHOW_CONTEXT never
SET timezone TO 'UTC';
SELECT booking.publish_events() >= 0 AS published;
SELECT max(id) AS before FROM booking.events \gset
SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.create_reservation(t_hotel('Porto Palace'), 'double', 'Guest Secret-Name', '2099-03-02', 2, 2, 0) ->> 'id' AS res \gset
SELECT api.update_reservation(:'res', stay_length => 3) ->> 'stay_length' AS stay_length;
SELECT api.update_reservation(:'res', guest_name => 'Another Secret') ->> 'status' AS renamed_only;
SELECT api.cancel_reservation(:'res') ->> 'status' AS status;
RESET ROLE;
SELECT booking.publish_events() AS published;
SELECT kind, entity, payload - 'arrival_date' - 'hotel_id' - 'owner_id' AS payload,
       user_id = t_id('alice@example.com') AS by_alice
  FROM booking.events WHERE id > :before ORDER BY id;
SELECT count(*) AS events_naming_the_guest FROM booking.events WHERE payload::text LIKE '%Secret%';
