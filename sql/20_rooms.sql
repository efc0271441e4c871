-- Meeting rooms: create, update, deactivate, get, list with filters.
\set SHOW_CONTEXT never
SET timezone TO 'UTC';

SELECT t_as('fm@example.com', 'booking_facility_manager');
SET ROLE booking_facility_manager;
SELECT t_strip(api.create_room('Aquarium', 'HQ 1st floor', 6, '{screen,whiteboard}'));
SELECT t_strip(api.create_room('Boardroom', 'HQ 5th floor', 20, '{screen,videoconf}', buffer_before_minutes => 15, buffer_after_minutes => 15));
SELECT t_strip(api.create_room('Cupboard', 'Annex', 2));
SELECT t_strip(api.create_room('Doomed', 'Annex', 4, '{whiteboard}'));
-- Bad input: each a clear error and nothing written.
SELECT api.create_room('aquarium', 'elsewhere', 3);        -- names are unique, whatever their case
SELECT api.create_room('Aquarium', 'elsewhere', 3);
SELECT api.create_room('Empty', 'HQ', 0);                  -- capacity > 0
SELECT api.create_room('Negative buffer', 'HQ', 4, buffer_before_minutes => -5);
SELECT api.create_room('Huge buffer', 'HQ', 4, buffer_after_minutes => 241);
SELECT api.create_room('', 'HQ', 4);
SELECT api.create_room('No location', NULL, 4);
SELECT t_strip(api.update_room(t_room('Aquarium'), capacity => 8, amenities => '{screen,whiteboard,coffee}'));
SELECT api.update_room(t_room('Aquarium'), name => 'Boardroom');
SELECT api.update_room(999999, capacity => 3);
SELECT t_strip(api.delete_room(t_room('Doomed')));
SELECT api.delete_room(999999);
RESET ROLE;
SELECT name FROM booking.rooms ORDER BY id;

-- A plain user reads rooms but cannot change them.
SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.create_room('Mine', 'HQ', 4);
SELECT api.update_room(t_room('Aquarium'), capacity => 100);
SELECT api.delete_room(t_room('Aquarium'));
SELECT t_strip(api.get_room(t_room('Boardroom')));
SELECT api.get_room(999999);
-- Filters: inactive rooms are not listed; capacity, amenity, location.
SELECT jsonb_path_query_array(api.list_rooms(), '$[*].name') AS all_active;
SELECT jsonb_path_query_array(api.list_rooms(min_capacity => 6), '$[*].name') AS six_or_more;
SELECT jsonb_path_query_array(api.list_rooms(amenity => 'whiteboard'), '$[*].name') AS whiteboard;
SELECT jsonb_path_query_array(api.list_rooms(location => 'annex'), '$[*].name') AS annex;
SELECT jsonb_path_query_array(api.list_rooms(include_inactive => true), '$[*].name') AS user_cannot_see_inactive;
SELECT jsonb_path_query_array(api.list_rooms(lim => 1, off => 1), '$[*].name') AS second_page;
SELECT api.list_rooms(available_from => '2099-01-05T09:00:00Z');
SELECT api.list_rooms(available_from => '2099-01-05T09:00:00Z', available_to => '2099-01-05T08:00:00Z');
RESET ROLE;
SELECT t_as('admin@example.com', 'booking_admin');
SET ROLE booking_admin;
SELECT jsonb_path_query_array(api.list_rooms(include_inactive => true), '$[*].name') AS staff_sees_inactive;
RESET ROLE;
