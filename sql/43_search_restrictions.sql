-- Availability search honours the stay restrictions a reservation would meet.
\set SHOW_CONTEXT never
SET timezone TO 'UTC';
SELECT t_as('fm@example.com', 'booking_facility_manager');
SET ROLE booking_facility_manager;
SELECT api.set_restrictions(t_hotel('Porto Palace'), 'double', '2099-03-04', '2099-03-04', min_stay => 3) ->> 'min_stay' AS min_stay;
SELECT api.set_restrictions(t_hotel('Porto Palace'), 'double', '2099-03-06', '2099-03-06', closed_to_arrival => true) ->> 'closed_to_arrival' AS cta;
RESET ROLE;
SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
-- min_stay 3 on arrival 03-04: a 2-night search leaves Porto out, a 3-night one shows it.
SELECT jsonb_path_query_array(api.search_availability('Porto', '2099-03-04', 2, 'double'), '$[*].name') AS two_nights;
SELECT jsonb_path_query_array(api.search_availability('Porto', '2099-03-04', 3, 'double'), '$[*].name') AS three_nights;
-- Closed to arrival on 03-06.
SELECT jsonb_path_query_array(api.search_availability('Porto', '2099-03-06', 2, 'double'), '$[*].name') AS arrive_0306;
-- Closed to departure on 03-09 (set in 40_hotels): a stay 03-07..03-09 is left out, 03-07..03-08 is not.
SELECT jsonb_path_query_array(api.search_availability('Porto', '2099-03-07', 2, 'double'), '$[*].name') AS leave_0309;
SELECT jsonb_path_query_array(api.search_availability('Porto', '2099-03-07', 1, 'double'), '$[*].name') AS leave_0308;
-- The search agrees with the take: what it leaves out, a reservation is refused.
SELECT api.create_reservation(t_hotel('Porto Palace'), 'double', 'Guest', '2099-03-04', 2, 1, 0);
RESET ROLE;
SELECT count(*) AS violations FROM booking.inventory_violations();
