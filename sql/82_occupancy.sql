-- GET /admin/analytics/occupancy: rooms held per night and room type.
\set SHOW_CONTEXT never
SET timezone TO 'UTC';
SELECT t_as('fm@example.com', 'booking_facility_manager');
SET ROLE booking_facility_manager;
SELECT o ->> 'night' AS night, o ->> 'room_type' AS room_type, o -> 'total' AS total, o -> 'held' AS held,
       o -> 'occupancy_percent' AS pct
  FROM jsonb_array_elements(api.analytics_occupancy(t_hotel('Grand Lisbon'), '2099-03-01', '2099-03-05')) o;
RESET ROLE;
-- The route agrees with the reservations that hold each night.
SELECT count(*) AS nights_disagreeing
  FROM booking.analytics_occupancy o
 WHERE o.held <> (SELECT count(*) FROM booking.reservations r
                   WHERE r.hotel_id = o.hotel_id AND r.room_type = o.room_type
                     AND o.night >= r.arrival_date AND o.night < r.held_until);
SELECT t_as('auditor@example.com', 'booking_auditor');
SET ROLE booking_auditor;
SELECT jsonb_array_length(api.analytics_occupancy(t_hotel('Porto Palace'), '2099-03-01', '2099-03-10')) AS porto_rows;
SELECT api.analytics_occupancy(999999, '2099-03-01', '2099-03-10');
SELECT api.analytics_occupancy(t_hotel('Porto Palace'), '2099-03-10', '2099-03-01');
SELECT api.analytics_occupancy(t_hotel('Porto Palace'), '2099-03-01', 'soon');
RESET ROLE;
SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.analytics_occupancy(t_hotel('Porto Palace'), '2099-03-01', '2099-03-10');
RESET ROLE;
