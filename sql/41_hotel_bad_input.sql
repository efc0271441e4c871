-- Hotels: bad input.  Each call fails with a clear message and error_code,
-- and nothing is written (checked at the end).
\set SHOW_CONTEXT never
SET timezone TO 'UTC';

SELECT t_as('h.admin@hotel.test', 'booking_admin');
SET ROLE booking_admin;
SELECT api.create_hotel('Bad Input Inn', 'Faro') ->> 'name';
SELECT jsonb_array_length(api.adjust_inventory(t_hotel('Bad Input Inn'), 'single', '2099-04-01', '2099-04-10', total => 1));
RESET ROLE;
SELECT t_nights('Bad Input Inn', 'single', '2099-04-01', '2099-04-10') AS nights_before \gset

SELECT t_as('guest1@hotel.test', 'booking_user');
SET ROLE booking_user;
-- 1-3: stay length 0, negative, over 30 nights.
SELECT api.create_reservation(t_hotel('Bad Input Inn'), 'single', 'Guest', '2099-04-02', 0);
SELECT api.create_reservation(t_hotel('Bad Input Inn'), 'single', 'Guest', '2099-04-02', -2);
SELECT api.create_reservation(t_hotel('Bad Input Inn'), 'single', 'Guest', '2099-04-02', 31);
-- 4-5: no adult; negative children.
SELECT api.create_reservation(t_hotel('Bad Input Inn'), 'single', 'Guest', '2099-04-02', 1, adults => 0);
SELECT api.create_reservation(t_hotel('Bad Input Inn'), 'single', 'Guest', '2099-04-02', 1, children => -1);
-- 6: arrival in the past (a plain user).
SELECT api.create_reservation(t_hotel('Bad Input Inn'), 'single', 'Guest', '2000-01-01', 1);
-- 7: departure beyond the inventory horizon (the last night sold is 04-10).
SELECT api.create_reservation(t_hotel('Bad Input Inn'), 'single', 'Guest', '2099-04-08', 4);
-- 8-9: unknown hotel; unknown room type.
SELECT api.create_reservation(999999, 'single', 'Guest', '2099-04-02', 1);
SELECT api.create_reservation(t_hotel('Bad Input Inn'), 'penthouse', 'Guest', '2099-04-02', 1);
-- 10: empty guest name.
SELECT api.create_reservation(t_hotel('Bad Input Inn'), 'single', '   ', '2099-04-02', 1);
-- 11-12: malformed and impossible dates.
SELECT api.create_reservation(t_hotel('Bad Input Inn'), 'single', 'Guest', '02/04/2099', 1);
SELECT api.create_reservation(t_hotel('Bad Input Inn'), 'single', 'Guest', '2099-02-30', 1);
-- 13: search for 0 nights.
SELECT api.search_availability('Faro', '2099-04-02', 0);
-- 14: unknown reservation.
SELECT api.get_reservation('00000000-0000-0000-0000-999999999999');
RESET ROLE;

SELECT t_as('h.admin@hotel.test', 'booking_admin');
SET ROLE booking_admin;
-- 15-17: adjust leaving available below zero; below the rooms held; both delta and total.
SELECT api.adjust_inventory(t_hotel('Bad Input Inn'), 'single', '2099-04-01', '2099-04-03', delta => -2);
SELECT t_pin(api.create_reservation(t_hotel('Bad Input Inn'), 'single', 'Held', '2099-04-05', 2) ->> 'id', 41) AS held \gset
SELECT api.adjust_inventory(t_hotel('Bad Input Inn'), 'single', '2099-04-01', '2099-04-10', total => 0);
SELECT api.adjust_inventory(t_hotel('Bad Input Inn'), 'single', '2099-04-01', '2099-04-03', delta => 1, total => 3);
-- 18: restrictions with min above max.
SELECT api.set_restrictions(t_hotel('Bad Input Inn'), 'single', '2099-04-01', '2099-04-03', min_stay => 5, max_stay => 2);
-- 19-21: check-out before check-in; cancel twice; check-in of a cancelled stay.
SELECT api.check_out(:'held');
SELECT api.cancel_reservation(:'held') ->> 'status';
SELECT api.cancel_reservation(:'held');
SELECT api.check_in(:'held');
-- 22: a change to a stay of 0 nights is refused like a new one.
SELECT t_pin(api.create_reservation(t_hotel('Bad Input Inn'), 'single', 'Other', '2099-04-05', 2) ->> 'id', 42) AS other \gset
SELECT api.update_reservation(:'other', stay_length => 0);
SELECT api.cancel_reservation(:'other') ->> 'status';
RESET ROLE;

-- Nothing was written by the failed calls: the two stays made for the
-- state checks were cancelled and gave their nights back.
SELECT count(*) AS stays_in_hotel, count(*) FILTER (WHERE status <> 'cancelled') AS not_cancelled
  FROM booking.reservations r JOIN booking.hotels h ON h.id = r.hotel_id AND h.name = 'Bad Input Inn';
SELECT t_nights('Bad Input Inn', 'single', '2099-04-01', '2099-04-10') = :'nights_before' AS inventory_unchanged;
SELECT t_violations() AS violations;
