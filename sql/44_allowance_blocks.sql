-- Overbooking allowance and group blocks (issue 15): the invariant
-- available = total + allowance - held - blocked, allowance edges, block
-- pick-up and release; bad inputs each a clear error with nothing written.
\set SHOW_CONTEXT never
SET timezone TO 'UTC';
-- One transaction, rolled back at the end: the later files see none of
-- this (errors are caught by t_fails, so the transaction lives on).
BEGIN;
CREATE FUNCTION public.t_fails(q text) RETURNS text
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
GRANT EXECUTE ON FUNCTION public.t_fails(text) TO PUBLIC;
-- What a night looks like: physical rooms, allowance, still sellable, held, blocked.
CREATE FUNCTION public.t_night(room_type text, night date) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER
AS $$
    SELECT format('total %s allowance %s available %s held %s blocked %s', o.total, o.allowance,
                  i.available, o.held, o.blocked)
      FROM booking.analytics_occupancy o
      JOIN booking.inventory i USING (hotel_id, room_type, night)
     WHERE o.hotel_id = (SELECT id FROM booking.hotels WHERE name = 'Little Lisbon')
       AND o.room_type = t_night.room_type AND o.night = t_night.night
$$;
GRANT EXECUTE ON FUNCTION public.t_night(text, date) TO PUBLIC;
CREATE FUNCTION public.t_written() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER
AS $$
    SELECT format('settings %s, allowance nights %s, blocks %s, block nights %s, releases %s, reservations %s, available %s',
                  (SELECT count(*) FROM booking.overbooking o JOIN booking.hotels h ON h.id = o.hotel_id WHERE h.name = 'Little Lisbon'),
                  (SELECT count(*) FILTER (WHERE i.allowance > 0) FROM booking.inventory i JOIN booking.hotels h ON h.id = i.hotel_id WHERE h.name = 'Little Lisbon'),
                  (SELECT count(*) FROM booking.blocks b JOIN booking.hotels h ON h.id = b.hotel_id WHERE h.name = 'Little Lisbon'),
                  (SELECT count(*) FROM booking.block_nights n JOIN booking.blocks b ON b.id = n.block_id JOIN booking.hotels h ON h.id = b.hotel_id WHERE h.name = 'Little Lisbon'),
                  (SELECT count(*) FROM booking.block_releases),
                  (SELECT count(*) FROM booking.reservations r JOIN booking.hotels h ON h.id = r.hotel_id WHERE h.name = 'Little Lisbon'),
                  (SELECT sum(i.available) FROM booking.inventory i JOIN booking.hotels h ON h.id = i.hotel_id WHERE h.name = 'Little Lisbon'))
$$;
GRANT EXECUTE ON FUNCTION public.t_written() TO PUBLIC;

SELECT t_as('h.admin@hotel.test', 'booking_admin');
SET ROLE booking_admin;
SELECT jsonb_array_length(api.adjust_inventory(t_hotel('Little Lisbon'), 'family', '2099-08-01', '2099-08-10', total => 4));
SELECT jsonb_array_length(api.adjust_inventory(t_hotel('Little Lisbon'), 'loft', '2099-08-01', '2099-08-10', total => 2));
SELECT t_written() AS before_bad_allowances;

-- Allowance: bad inputs, each refused with nothing written.
SELECT t_fails($$SELECT api.set_overbooking(t_hotel('Little Lisbon'), 'family', rooms => -1)$$);
SELECT t_fails($$SELECT api.set_overbooking(t_hotel('Little Lisbon'), 'family', percent => -5)$$);
SELECT t_fails($$SELECT api.set_overbooking(t_hotel('Little Lisbon'), 'family', percent => 150)$$);
SELECT t_fails($$SELECT api.set_overbooking(t_hotel('Little Lisbon'), 'family', percent => 10.125)$$);
SELECT t_fails($$SELECT api.set_overbooking(t_hotel('Little Lisbon'), 'family', rooms => 1, percent => 10)$$);
SELECT t_fails($$SELECT api.set_overbooking(t_hotel('Little Lisbon'), 'family')$$);
SELECT t_fails($$SELECT api.set_overbooking(t_hotel('Little Lisbon'), 'penthouse', rooms => 1)$$);
SELECT t_fails($$SELECT api.set_overbooking(999999, 'family', rooms => 1)$$);
RESET ROLE;
SELECT t_as('guest1@hotel.test', 'booking_user');
SET ROLE booking_user;
SELECT t_fails($$SELECT api.set_overbooking(t_hotel('Little Lisbon'), 'family', rooms => 1)$$);
RESET ROLE;
SELECT t_written() AS after_bad_allowances;

-- One room beyond the four: five stays of the night of 08-01, not six.
SELECT t_as('h.fm@hotel.test', 'booking_facility_manager');
SET ROLE booking_facility_manager;
SELECT api.set_overbooking(t_hotel('Little Lisbon'), 'family', rooms => 1) - 'updated_at' - 'applies_from' - 'hotel_id' AS allowance;
RESET ROLE;
SELECT t_night('family', '2099-08-01');
SELECT t_as('guest1@hotel.test', 'booking_user');
SET ROLE booking_user;
SELECT count(*) AS made FROM generate_series(1, 5) g,
       LATERAL api.create_reservation(t_hotel('Little Lisbon'), 'family', 'Guest ' || g, '2099-08-01', 1) r;
SELECT t_fails($$SELECT api.create_reservation(t_hotel('Little Lisbon'), 'family', 'Guest 6', '2099-08-01', 1)$$);
RESET ROLE;
SELECT t_night('family', '2099-08-01');
SELECT t_as('h.admin@hotel.test', 'booking_admin');
SET ROLE booking_admin;
-- The occupancy route shows the physical total, the rooms held and the allowance.
SELECT o - 'room_type' AS occupancy_0801
  FROM jsonb_array_elements(api.analytics_occupancy(t_hotel('Little Lisbon'), '2099-08-01', '2099-08-01')) o
 WHERE o ->> 'room_type' = 'family';
-- An allowance below what is sold is refused, naming the night; nothing changes.
SELECT t_fails($$SELECT api.set_overbooking(t_hotel('Little Lisbon'), 'family', rooms => 0)$$);
SELECT t_fails($$SELECT api.set_overbooking(t_hotel('Little Lisbon'), 'family', percent => 10)$$);
SELECT t_night('family', '2099-08-01'), t_written();
-- Percent of the night's total, rounded down: 25% of 4 is exactly the one room sold beyond.
SELECT api.set_overbooking(t_hotel('Little Lisbon'), 'family', percent => 25) ->> 'percent' AS percent;
SELECT t_night('family', '2099-08-01');
SELECT api.set_overbooking(t_hotel('Little Lisbon'), 'family', percent => 50) ->> 'percent' AS percent;
SELECT t_night('family', '2099-08-01'), t_night('family', '2099-08-02');
-- A percentage follows the total: 8 rooms -> 4 more; 3 rooms and 1 more cannot hold the 5 sold.
SELECT jsonb_path_query_array(api.adjust_inventory(t_hotel('Little Lisbon'), 'family', '2099-08-01', '2099-08-01', total => 8),
                              '$[*].available') AS available_at_8;
SELECT t_night('family', '2099-08-01');
SELECT t_fails($$SELECT api.adjust_inventory(t_hotel('Little Lisbon'), 'family', '2099-08-01', '2099-08-01', total => 3)$$);
SELECT jsonb_path_query_array(api.adjust_inventory(t_hotel('Little Lisbon'), 'family', '2099-08-01', '2099-08-01', total => 4),
                              '$[*].available') AS available_at_4;
SELECT t_night('family', '2099-08-01');
-- Back to one room beyond the total for the rest of the test.
SELECT api.set_overbooking(t_hotel('Little Lisbon'), 'family', rooms => 1) ->> 'rooms' AS rooms;
SELECT t_night('family', '2099-08-05');
RESET ROLE;
SELECT count(*) AS violations FROM booking.inventory_violations();

-- Blocks: bad inputs, each refused with nothing written.
SELECT t_written() AS before_bad_blocks;
SELECT t_as('h.fm@hotel.test', 'booking_facility_manager');
SET ROLE booking_facility_manager;
SELECT t_fails($$SELECT api.create_block(t_hotel('Little Lisbon'), 'family', 'SMITH', '2099-08-05', '2099-08-07', -1, '2099-08-03')$$);
SELECT t_fails($$SELECT api.create_block(t_hotel('Little Lisbon'), 'family', 'SMITH', '2099-08-05', '2099-08-07', 0, '2099-08-03')$$);
SELECT t_fails($$SELECT api.create_block(t_hotel('Little Lisbon'), 'family', 'smith wedding', '2099-08-05', '2099-08-07', 2, '2099-08-03')$$);
SELECT t_fails($$SELECT api.create_block(t_hotel('Little Lisbon'), 'family', NULL, '2099-08-05', '2099-08-07', 2, '2099-08-03')$$);
SELECT t_fails($$SELECT api.create_block(t_hotel('Little Lisbon'), 'family', 'SMITH', '2099-08-07', '2099-08-05', 2, '2099-08-03')$$);
SELECT t_fails($$SELECT api.create_block(t_hotel('Little Lisbon'), 'family', 'SMITH', '2099-08-05', '2099-08-07', 2, '2099-08-06')$$);
SELECT t_fails($$SELECT api.create_block(t_hotel('Little Lisbon'), 'family', 'SMITH', '2099-08-05', '2099-08-07', 2, '2020-01-01')$$);
SELECT t_fails($$SELECT api.create_block(t_hotel('Little Lisbon'), 'family', 'SMITH', '2099-08-05', '2099-08-07', 2, 'soon')$$);
SELECT t_fails($$SELECT api.create_block(t_hotel('Little Lisbon'), 'family', 'SMITH', '2099-08-09', '2099-08-12', 2, '2099-08-03')$$);
SELECT t_fails($$SELECT api.create_block(t_hotel('Little Lisbon'), 'penthouse', 'SMITH', '2099-08-05', '2099-08-07', 2, '2099-08-03')$$);
-- Bigger than the free rooms: the lofts have 2, the family rooms of 08-01 none.
SELECT t_fails($$SELECT api.create_block(t_hotel('Little Lisbon'), 'loft', 'SMITH', '2099-08-05', '2099-08-07', 3, '2099-08-03')$$);
SELECT t_fails($$SELECT api.create_block(t_hotel('Little Lisbon'), 'family', 'SMITH', '2099-08-01', '2099-08-02', 1, '2099-08-01')$$);
SELECT t_fails($$SELECT api.create_block(999999, 'family', 'SMITH', '2099-08-05', '2099-08-07', 2, '2099-08-03')$$);
RESET ROLE;
SELECT t_as('guest1@hotel.test', 'booking_user');
SET ROLE booking_user;
SELECT t_fails($$SELECT api.create_block(t_hotel('Little Lisbon'), 'family', 'SMITH', '2099-08-05', '2099-08-07', 2, '2099-08-03')$$);
SELECT t_fails($$SELECT api.list_blocks(t_hotel('Little Lisbon'))$$);
RESET ROLE;
SELECT t_written() AS after_bad_blocks;

-- A block of 2 family rooms on 08-05..08-07 for group SMITH, released on 08-03;
-- it may use the allowance like any sale.
SELECT t_as('h.fm@hotel.test', 'booking_facility_manager');
SET ROLE booking_facility_manager;
SELECT api.create_block(t_hotel('Little Lisbon'), 'family', 'SMITH', '2099-08-05', '2099-08-07', 2, '2099-08-03')
       - 'id' - 'hotel_id' - 'created_at' AS block;
SELECT t_fails($$SELECT api.create_block(t_hotel('Little Lisbon'), 'family', 'SMITH', '2099-08-08', '2099-08-09', 1, '2099-08-03')$$);
SELECT api.create_block(t_hotel('Little Lisbon'), 'loft', 'JONES', '2099-08-08', '2099-08-09', 2, '2099-08-08') ->> 'rooms' AS jones_rooms;
RESET ROLE;
SELECT t_night('family', '2099-08-05'), t_night('loft', '2099-08-08');
SELECT count(*) AS violations FROM booking.inventory_violations();
-- The lofts of 08-08 are all in the JONES block: a plain stay is refused.
SELECT t_as('guest2@hotel.test', 'booking_user');
SET ROLE booking_user;
SELECT t_fails($$SELECT api.create_reservation(t_hotel('Little Lisbon'), 'loft', 'Plain', '2099-08-08', 1)$$);
-- An unknown group code: refused, nothing written.
SELECT t_fails($$SELECT api.create_reservation(t_hotel('Little Lisbon'), 'family', 'Who', '2099-08-05', 2, group_code => 'NOBODY')$$);
RESET ROLE;
SELECT t_written() AS after_unknown_code;

-- Pick-up: two SMITH stays come from the block (the night's count does not
-- move), the third finds the block full and is sold from general inventory.
SELECT t_as('guest2@hotel.test', 'booking_user');
SET ROLE booking_user;
SELECT (r ->> 'block_id' IS NOT NULL) AS from_block, r ->> 'status' AS status
  FROM generate_series(1, 3) g,
       LATERAL api.create_reservation(t_hotel('Little Lisbon'), 'family', 'Smith ' || g, '2099-08-05', 2, group_code => 'SMITH') r
 ORDER BY g;
-- Outside the block's nights the code draws nothing.
SELECT api.create_reservation(t_hotel('Little Lisbon'), 'family', 'Smith late', '2099-08-07', 2, group_code => 'SMITH') ? 'block_id' AS late_from_block;
RESET ROLE;
SELECT n.night, n.rooms, n.picked FROM booking.block_nights n JOIN booking.blocks b ON b.id = n.block_id
 WHERE b.group_code = 'SMITH' ORDER BY n.night;
SELECT t_night('family', '2099-08-05'), t_night('family', '2099-08-07');
SELECT count(*) AS violations FROM booking.inventory_violations();
SELECT count(*) AS block_violations FROM booking.block_violations();
-- A group stay keeps its dates and room type.
SELECT t_as('guest2@hotel.test', 'booking_user');
SET ROLE booking_user;
SELECT t_fails(format($$SELECT api.update_reservation(%L, arrival_date => '2099-08-04')$$,
               (SELECT id FROM booking.reservations WHERE guest_name = 'Smith 1')));
SELECT t_fails(format($$SELECT api.update_reservation(%L, stay_length => 3)$$,
               (SELECT id FROM booking.reservations WHERE guest_name = 'Smith 1')));
SELECT t_fails(format($$SELECT api.update_reservation(%L, room_type => 'loft')$$,
               (SELECT id FROM booking.reservations WHERE guest_name = 'Smith 1')));
-- Shortened, its last night goes back to the block; cancelled, all of them.
SELECT api.update_reservation((SELECT id FROM booking.reservations WHERE guest_name = 'Smith 1'), stay_length => 1) ->> 'stay_length' AS shortened;
SELECT api.cancel_reservation((SELECT id FROM booking.reservations WHERE guest_name = 'Smith 2')) ->> 'status' AS cancelled;
RESET ROLE;
SELECT n.night, n.rooms, n.picked FROM booking.block_nights n JOIN booking.blocks b ON b.id = n.block_id
 WHERE b.group_code = 'SMITH' ORDER BY n.night;
SELECT t_night('family', '2099-08-05'), t_night('family', '2099-08-06');
SELECT count(*) AS violations FROM booking.inventory_violations();
SELECT count(*) AS block_violations FROM booking.block_violations();

-- The release: the worker's call for business date 08-02 releases nothing,
-- for 08-03 the SMITH block (release date 08-03), once.
SELECT booking.release_blocks('2099-08-02') AS released_0802;
SELECT booking.release_blocks('2099-08-03') AS released_0803;
SELECT booking.release_blocks('2099-08-03') AS released_again;
SELECT b.group_code, r.source, r.as_of, r.rooms_returned
  FROM booking.block_releases r JOIN booking.blocks b ON b.id = r.block_id ORDER BY b.group_code;
SELECT n.night, n.rooms, n.picked FROM booking.block_nights n JOIN booking.blocks b ON b.id = n.block_id
 WHERE b.group_code = 'SMITH' ORDER BY n.night;
SELECT t_night('family', '2099-08-05'), t_night('family', '2099-08-06'), t_night('family', '2099-08-07');
-- Released, the code draws nothing, and a group stay given back returns to general inventory.
SELECT t_as('guest2@hotel.test', 'booking_user');
SET ROLE booking_user;
SELECT api.create_reservation(t_hotel('Little Lisbon'), 'family', 'Smith after', '2099-08-05', 1, group_code => 'SMITH') ? 'block_id' AS after_release_from_block;
SELECT api.cancel_reservation((SELECT id FROM booking.reservations WHERE guest_name = 'Smith 1')) ->> 'status' AS cancelled;
RESET ROLE;
SELECT n.night, n.rooms, n.picked FROM booking.block_nights n JOIN booking.blocks b ON b.id = n.block_id
 WHERE b.group_code = 'SMITH' ORDER BY n.night;
SELECT t_night('family', '2099-08-05');
SELECT count(*) AS violations FROM booking.inventory_violations();
SELECT count(*) AS block_violations FROM booking.block_violations();

-- Routes: list, get, release by hand (once); 404s.
SELECT t_as('h.fm@hotel.test', 'booking_facility_manager');
SET ROLE booking_facility_manager;
SELECT b ->> 'group_code' AS code, b -> 'picked_up' AS picked_up, b -> 'released' ? 'source' AS released
  FROM jsonb_array_elements(api.list_blocks(t_hotel('Little Lisbon'))) b;
SELECT (api.release_block(t_hotel('Little Lisbon'), (SELECT id FROM booking.blocks WHERE group_code = 'JONES')) -> 'released') - 'released_at' - 'as_of' AS jones_released;
SELECT t_fails(format($$SELECT api.release_block(t_hotel('Little Lisbon'), %s)$$, (SELECT id FROM booking.blocks WHERE group_code = 'JONES')));
SELECT t_fails(format($$SELECT api.release_block(t_hotel('Little Lisbon'), %s)$$, (SELECT id FROM booking.blocks WHERE group_code = 'JONES') + 1000));
SELECT t_fails(format($$SELECT api.get_block(t_hotel('Grand Lisbon'), %s)$$, (SELECT id FROM booking.blocks WHERE group_code = 'JONES')));
SELECT api.get_block(t_hotel('Little Lisbon'), (SELECT id FROM booking.blocks WHERE group_code = 'JONES')) -> 'nights' AS jones_nights;
RESET ROLE;
SELECT t_night('loft', '2099-08-08');
SELECT t_as('h.auditor@hotel.test', 'booking_auditor');
SET ROLE booking_auditor;
SELECT jsonb_array_length(api.list_blocks(t_hotel('Little Lisbon'))) AS auditor_sees;
SELECT t_fails(format($$SELECT api.release_block(t_hotel('Little Lisbon'), %s)$$, (SELECT id FROM booking.blocks WHERE group_code = 'SMITH')));
RESET ROLE;
SELECT count(*) AS violations FROM booking.inventory_violations();
SELECT count(*) AS block_violations FROM booking.block_violations();
-- Settings, blocks and releases are dumped with the data.
SELECT c.relname FROM pg_extension e, unnest(e.extconfig) x JOIN pg_class c ON c.oid = x
 WHERE e.extname = 'pg_booking' AND c.relname IN ('overbooking', 'blocks', 'block_nights', 'block_releases')
 ORDER BY 1;
ROLLBACK;
