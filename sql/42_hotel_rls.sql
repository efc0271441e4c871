-- Hotels: who sees and changes what.  A guest sees only their own
-- reservations (someone else's is 404, not 403); admins and facility
-- managers all; auditors and service accounts read all; only staff manage
-- inventory, restrictions and check-in/out; only admins create hotels.
\set SHOW_CONTEXT never
SET timezone TO 'UTC';

SELECT t_as('guest1@hotel.test', 'booking_user');
SET ROLE booking_user;
SELECT t_pin(api.create_reservation(t_hotel('Porto Palace'), 'double', 'Private Guest', '2099-03-02', 1) ->> 'id', 51) AS g1 \gset
SELECT count(*) AS guest1_sees FROM jsonb_array_elements(api.list_reservations(lim => 500));
RESET ROLE;

SELECT t_as('guest2@hotel.test', 'booking_user');
SET ROLE booking_user;
SELECT api.get_reservation(:'g1');
SELECT api.update_reservation(:'g1', guest_name => 'Hijacked');
SELECT api.cancel_reservation(:'g1');
SELECT count(*) AS guest2_sees, bool_and(r ->> 'user_id' = t_id('guest2@hotel.test')::text) AS only_own
  FROM jsonb_array_elements(api.list_reservations(lim => 500)) r;
-- Direct table access is filtered the same way.
SELECT count(*) AS rows_of_others FROM booking.reservations WHERE user_id <> t_id('guest2@hotel.test');
UPDATE booking.reservations SET guest_name = 'Hijacked' WHERE id = :'g1';
-- Inventory is read-only for guests; the trigger writes it on their behalf.
UPDATE booking.inventory SET available = 99;
SELECT api.adjust_inventory(t_hotel('Porto Palace'), 'double', '2099-03-01', '2099-03-01', delta => 1);
SELECT api.set_restrictions(t_hotel('Porto Palace'), 'double', '2099-03-01', '2099-03-01', min_stay => 2);
SELECT api.create_hotel('Guest House', 'Porto');
SELECT api.check_in(:'g1');
SELECT * FROM booking.inventory_violations();
RESET ROLE;

-- Auditors and service accounts read every reservation, change none.
SELECT t_as('h.auditor@hotel.test', 'booking_auditor');
SET ROLE booking_auditor;
SELECT api.get_reservation(:'g1') ->> 'guest_name' AS auditor_reads;
SELECT count(*) > 3 AS auditor_sees_all FROM jsonb_array_elements(api.list_reservations(lim => 500));
SELECT api.cancel_reservation(:'g1');
SELECT api.create_reservation(t_hotel('Porto Palace'), 'double', 'Auditor', '2099-03-08', 1);
SELECT count(*) AS auditor_violations FROM booking.inventory_violations();
RESET ROLE;
SELECT t_as('h.svc@hotel.test', 'booking_service_account');
SET ROLE booking_service_account;
SELECT api.get_reservation(:'g1') ->> 'status' AS service_reads;
RESET ROLE;

-- Facility managers manage others' stays; an FM cannot create hotels.
SELECT t_as('h.fm@hotel.test', 'booking_facility_manager');
SET ROLE booking_facility_manager;
SELECT api.update_reservation(:'g1', adults => 2) ->> 'adults' AS fm_changed;
SELECT api.check_in(:'g1') ->> 'status';
SELECT api.create_hotel('FM Hotel', 'Porto');
RESET ROLE;
SELECT t_as('h.admin@hotel.test', 'booking_admin');
SET ROLE booking_admin;
SELECT api.check_out(:'g1') ->> 'status';
RESET ROLE;
-- Anonymous callers get nothing.
SELECT set_config('request.jwt.claims', '{"role": "booking_anon"}', false) IS NOT NULL;
SET ROLE booking_anon;
SELECT api.list_hotels();
RESET ROLE;
SELECT t_violations() AS violations;
