-- Hotels: hotels, inventory, restrictions, availability search,
-- reservations (create, change, cancel, check-in, check-out) and the
-- invariant after every scenario.
\set SHOW_CONTEXT never
SET timezone TO 'UTC';

-- People of the hotel tests (a token's role must be its user's role).
INSERT INTO booking.users (email, full_name, password_hash, role) VALUES
    ('h.admin@hotel.test', 'Hotel Admin', 'x', 'admin'), ('h.fm@hotel.test', 'Hotel Manager', 'x', 'facility_manager'),
    ('h.auditor@hotel.test', 'Hotel Auditor', 'x', 'auditor'), ('h.svc@hotel.test', 'Hotel Service', 'x', 'service_account'),
    ('guest1@hotel.test', 'Guest One', 'x', 'user'), ('guest2@hotel.test', 'Guest Two', 'x', 'user');

-- Helpers: a hotel's id by name; the rooms available per night as a line;
-- the invariant (number of violations, 0 when all is well).
CREATE FUNCTION public.t_hotel(name text) RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER
AS $$ SELECT id FROM booking.hotels h WHERE h.name = t_hotel.name $$;
CREATE FUNCTION public.t_nights(hotel text, room_type text, first date, last date) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER
AS $$ SELECT string_agg(to_char(i.night, 'DD') || ':' || i.available || '/' || i.total, ' ' ORDER BY i.night)
        FROM booking.inventory i
       WHERE i.hotel_id = public.t_hotel(hotel) AND i.room_type = t_nights.room_type
         AND i.night BETWEEN first AND last $$;
CREATE FUNCTION public.t_violations() RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER
AS $$ SELECT count(*) FROM booking.inventory_violations() $$;
-- t_pin: give a new reservation a fixed id, so that the expected output
-- does not depend on random UUIDs.
CREATE FUNCTION public.t_pin(id text, n integer) RETURNS uuid
LANGUAGE sql VOLATILE SECURITY DEFINER
AS $$ UPDATE booking.reservations r SET id = ('00000000-0000-0000-0000-' || lpad(n::text, 12, '0'))::uuid
       WHERE r.id = t_pin.id::uuid RETURNING r.id $$;
GRANT EXECUTE ON FUNCTION public.t_hotel(text), public.t_nights(text, text, date, date), public.t_violations(),
    public.t_pin(text, integer) TO PUBLIC;

-- Hotels: admins create; everyone signed in reads and searches by location.
SELECT t_as('h.admin@hotel.test', 'booking_admin');
SET ROLE booking_admin;
SELECT t_strip(api.create_hotel('Grand Lisbon', 'Lisbon')) - 'id';
SELECT api.create_hotel('Little Lisbon', ' lisbon ') ->> 'location';
SELECT api.create_hotel('Porto Palace', 'Porto') ->> 'name';
-- Inventory: 2 doubles for 2099-03-01..10 (both dates included), 1 suite;
-- then grow the horizon and adjust by delta and to a total.
SELECT jsonb_array_length(api.adjust_inventory(t_hotel('Grand Lisbon'), 'double', '2099-03-01', '2099-03-10', total => 2));
SELECT jsonb_array_length(api.adjust_inventory(t_hotel('Grand Lisbon'), 'suite', '2099-03-01', '2099-03-10', total => 1));
SELECT api.adjust_inventory(t_hotel('Grand Lisbon'), 'double', '2099-03-09', '2099-03-11', delta => 1);
SELECT t_nights('Grand Lisbon', 'double', '2099-03-01', '2099-03-11');
SELECT jsonb_array_length(api.adjust_inventory(t_hotel('Little Lisbon'), 'double', '2099-03-01', '2099-03-10', total => 1));
SELECT jsonb_array_length(api.adjust_inventory(t_hotel('Porto Palace'), 'double', '2099-03-01', '2099-03-10', total => 5));
RESET ROLE;
SELECT t_violations() AS violations;

SELECT t_as('guest1@hotel.test', 'booking_user');
SET ROLE booking_user;
SELECT jsonb_path_query_array(api.list_hotels(), '$[*].name') AS all_hotels;
SELECT jsonb_path_query_array(api.list_hotels(location => 'LISBON'), '$[*].name') AS in_lisbon;
SELECT t_strip(api.get_hotel(t_hotel('Porto Palace'))) - 'id';
SELECT api.hotel_name(t_hotel('Porto Palace')) - 'hotel_id';
SELECT api.list_inventory(t_hotel('Grand Lisbon'), '2099-03-02', '2099-03-03', 'suite') #- '{0,hotel_id}' #- '{1,hotel_id}';
SELECT jsonb_array_length(api.list_inventory(lim => 500)) AS all_inventory_rows;
-- Availability: hotels of the location with enough rooms free every night.
SELECT api.search_availability('Lisbon', '2099-03-02', 3) #- '{0,hotel_id}' #- '{1,hotel_id}' #- '{2,hotel_id}';
SELECT jsonb_path_query_array(api.search_availability('lisbon', '2099-03-02', 3, 'double', 2), '$[*].name') AS two_doubles;
SELECT jsonb_path_query_array(api.search_availability('Lisbon', '2099-03-08', 5), '$[*].name') AS past_horizon_of_some;

-- A reservation takes one room on each night of its stay.
SELECT t_strip(api.create_reservation(t_hotel('Grand Lisbon'), 'double', 'Ana Silva', '2099-03-02', 3, 2, 1))
       - 'id' - 'user_id' - 'hotel_id';
SELECT t_nights('Grand Lisbon', 'double', '2099-03-01', '2099-03-06');
SELECT t_pin(api.create_reservation(t_hotel('Grand Lisbon'), 'double', 'Bruno Costa', '2099-03-04', 2) ->> 'id', 1) AS bruno \gset
SELECT t_nights('Grand Lisbon', 'double', '2099-03-01', '2099-03-06');
-- The 4th is sold out now: a stay over it fails, naming the first sold-out night, and takes nothing.
SELECT api.create_reservation(t_hotel('Grand Lisbon'), 'double', 'Carla Dias', '2099-03-03', 4);
SELECT t_nights('Grand Lisbon', 'double', '2099-03-01', '2099-03-08');
-- Availability search sees it.
SELECT jsonb_path_query_array(api.search_availability('Lisbon', '2099-03-03', 2, 'double'), '$[*].name') AS doubles_3rd_4th;
RESET ROLE;
SELECT t_violations() AS violations;

-- Changes re-balance atomically.
SELECT t_as('guest1@hotel.test', 'booking_user');
SET ROLE booking_user;
-- Longer: the 6th is free, so 4..6 (was 4..5).
SELECT api.update_reservation(:'bruno', stay_length => 3) ->> 'departure_date';
SELECT t_nights('Grand Lisbon', 'double', '2099-03-01', '2099-03-08');
-- Shift by one day within mostly the same nights: the shared nights need no spare room.
SELECT api.update_reservation(:'bruno', arrival_date => '2099-03-05') ->> 'arrival_date';
SELECT t_nights('Grand Lisbon', 'double', '2099-03-01', '2099-03-08');
-- Onto a sold-out night: refused, and the old nights are kept.
SELECT api.create_reservation(t_hotel('Grand Lisbon'), 'suite', 'Suite Guest', '2099-03-01', 9) ->> 'status';
SELECT api.update_reservation(:'bruno', room_type => 'suite');
SELECT api.get_reservation(:'bruno') ->> 'room_type' AS still, t_nights('Grand Lisbon', 'double', '2099-03-05', '2099-03-07');
-- To another room type with free nights: the doubles are given back, the suite taken.
SELECT api.update_reservation(:'bruno', room_type => 'suite', arrival_date => '2099-03-10', stay_length => 1) ->> 'room_type';
SELECT t_nights('Grand Lisbon', 'double', '2099-03-01', '2099-03-08'), t_nights('Grand Lisbon', 'suite', '2099-03-01', '2099-03-10');
-- Guest name and party change without touching the nights.
SELECT t_strip(api.update_reservation(:'bruno', guest_name => 'Bruno Costa Jr', adults => 3, children => 2))
       - 'id' - 'user_id' - 'hotel_id';
RESET ROLE;
SELECT t_violations() AS violations;

-- Cancel gives the nights back (none has passed yet); twice is refused.
SELECT t_as('guest1@hotel.test', 'booking_user');
SET ROLE booking_user;
SELECT api.cancel_reservation(:'bruno') - 'id' - 'user_id' - 'hotel_id' - 'created_at' - 'updated_at';
SELECT t_nights('Grand Lisbon', 'suite', '2099-03-09', '2099-03-10');
SELECT api.cancel_reservation(:'bruno');
SELECT api.update_reservation(:'bruno', adults => 1);
SELECT jsonb_path_query_array(api.list_reservations(), '$[*].status') AS my_statuses;
SELECT jsonb_path_query_array(api.list_reservations(status => 'cancelled'), '$[*].guest_name') AS cancelled;
RESET ROLE;
SELECT t_violations() AS violations;

-- Check-in and check-out (staff); an early check-out returns the rest at once.
SELECT t_as('guest2@hotel.test', 'booking_user');
SET ROLE booking_user;
SELECT t_pin(api.create_reservation(t_hotel('Porto Palace'), 'double', 'Duarte', '2099-03-01', 5) ->> 'id', 2) AS duarte \gset
SELECT api.check_in(:'duarte');
RESET ROLE;
SELECT t_nights('Porto Palace', 'double', '2099-03-01', '2099-03-06');
SELECT t_as('h.fm@hotel.test', 'booking_facility_manager');
SET ROLE booking_facility_manager;
SELECT api.check_out(:'duarte');
SELECT api.check_in(:'duarte') ->> 'status';
SELECT api.get_reservation(:'duarte') ->> 'checked_in_at' IS NOT NULL AS stamped;
SELECT api.check_in(:'duarte');
SELECT r ->> 'status' AS status, r ->> 'nights_held' AS nights_held FROM api.check_out(:'duarte') r;
SELECT t_nights('Porto Palace', 'double', '2099-03-01', '2099-03-06');
SELECT api.check_out(:'duarte');
RESET ROLE;
SELECT t_violations() AS violations;

-- Stay restrictions, checked in the same take.
SELECT t_as('h.fm@hotel.test', 'booking_facility_manager');
SET ROLE booking_facility_manager;
SELECT api.set_restrictions(t_hotel('Porto Palace'), 'double', '2099-03-05', '2099-03-06', min_stay => 2, max_stay => 4) - 'hotel_id';
SELECT api.set_restrictions(t_hotel('Porto Palace'), 'double', '2099-03-07', '2099-03-07', closed_to_arrival => true) ->> 'closed_to_arrival';
SELECT api.set_restrictions(t_hotel('Porto Palace'), 'double', '2099-03-09', '2099-03-09', closed_to_departure => true) ->> 'closed_to_departure';
RESET ROLE;
SELECT t_as('guest2@hotel.test', 'booking_user');
SET ROLE booking_user;
SELECT api.create_reservation(t_hotel('Porto Palace'), 'double', 'Too short', '2099-03-05', 1);
SELECT api.create_reservation(t_hotel('Porto Palace'), 'double', 'Too long', '2099-03-06', 5);
SELECT api.create_reservation(t_hotel('Porto Palace'), 'double', 'Closed arrival', '2099-03-07', 1);
SELECT api.create_reservation(t_hotel('Porto Palace'), 'double', 'Closed departure', '2099-03-08', 1);
SELECT t_pin(api.create_reservation(t_hotel('Porto Palace'), 'double', 'Just right', '2099-03-05', 2) ->> 'id', 3) AS right_one \gset
-- A change must satisfy the rules of its new dates too; the old nights stay.
SELECT api.update_reservation(:'right_one', stay_length => 1);
SELECT api.get_reservation(:'right_one') ->> 'stay_length' AS still_two;
-- Rules of other dates do not matter; clearing the rules lifts them.
SELECT api.create_reservation(t_hotel('Porto Palace'), 'double', 'Elsewhere', '2099-03-02', 1) ->> 'status';
RESET ROLE;
SELECT t_as('h.fm@hotel.test', 'booking_facility_manager');
SET ROLE booking_facility_manager;
SELECT api.set_restrictions(t_hotel('Porto Palace'), 'double', '2099-03-07', '2099-03-07') ->> 'closed_to_arrival';
SELECT api.create_reservation(t_hotel('Porto Palace'), 'double', 'Now open', '2099-03-07', 1) ->> 'status';
RESET ROLE;
SELECT t_nights('Porto Palace', 'double', '2099-03-01', '2099-03-10');
SELECT t_violations() AS violations;

-- Adjusting inventory never goes below the rooms held.
SELECT t_as('h.admin@hotel.test', 'booking_admin');
SET ROLE booking_admin;
SELECT api.adjust_inventory(t_hotel('Grand Lisbon'), 'double', '2099-03-01', '2099-03-05', total => 0);
SELECT api.adjust_inventory(t_hotel('Grand Lisbon'), 'double', '2099-03-01', '2099-03-05', delta => -2);
SELECT jsonb_path_query_array(api.adjust_inventory(t_hotel('Grand Lisbon'), 'double', '2099-03-02', '2099-03-04', delta => -1), '$[*].available') AS available;
SELECT t_nights('Grand Lisbon', 'double', '2099-03-01', '2099-03-05');
-- The sold-out nights now refuse new stays; raising the total frees rooms.
SELECT api.create_reservation(t_hotel('Grand Lisbon'), 'double', 'Late', '2099-03-02', 1) -> 'status';
SELECT jsonb_path_query_array(api.adjust_inventory(t_hotel('Grand Lisbon'), 'double', '2099-03-02', '2099-03-04', total => 4), '$[*].available') AS available;
SELECT api.create_reservation(t_hotel('Grand Lisbon'), 'double', 'Late', '2099-03-02', 1) ->> 'status';
RESET ROLE;
SELECT t_violations() AS violations;

-- A write that bypasses the api (psql, a batch job) goes through the same trigger.
UPDATE booking.reservations SET held_until = arrival_date, status = 'cancelled' WHERE guest_name = 'Elsewhere';
DELETE FROM booking.reservations WHERE guest_name = 'Now open';
SELECT t_nights('Porto Palace', 'double', '2099-03-01', '2099-03-08');
SELECT t_violations() AS violations;

-- The invariant check can fail: damage a night behind the trigger's back.
UPDATE booking.inventory SET available = available + 1 WHERE hotel_id = t_hotel('Porto Palace') AND night = '2099-03-05';
SELECT room_type, night, total, available, held, problem FROM booking.inventory_violations();
UPDATE booking.inventory SET available = available - 1 WHERE hotel_id = t_hotel('Porto Palace') AND night = '2099-03-05';
SELECT t_violations() AS violations;
