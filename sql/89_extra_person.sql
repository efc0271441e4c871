-- Extra-person charges: adults above a base occupancy, children (issue 15).
\set SHOW_CONTEXT never
SET timezone TO 'UTC';
-- The price fields of a reservation or quote.
CREATE FUNCTION public.t_pick(j jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE
AS $$ SELECT jsonb_build_object('room_type', j -> 'room_type', 'adults', j -> 'adults', 'children', j -> 'children',
                                'nightly_prices', j -> 'nightly_prices', 'total_amount', j -> 'total_amount') $$;
GRANT EXECUTE ON FUNCTION public.t_pick(jsonb) TO PUBLIC;

SELECT t_as('h.admin@hotel.test', 'booking_admin');
SET ROLE booking_admin;
SELECT api.create_hotel('Party Inn', 'Faro') ->> 'name';
SELECT jsonb_array_length(api.adjust_inventory(t_hotel('Party Inn'), 'double', '2099-07-01', '2099-07-10', total => 3));
SELECT jsonb_array_length(api.adjust_inventory(t_hotel('Party Inn'), 'single', '2099-07-01', '2099-07-10', total => 2));
-- Charges need a currency first (nothing written).
SELECT t_err($$SELECT api.set_extra_person_charges(t_hotel('Party Inn'), 'double', 2, 25, 10)$$);
SELECT api.set_hotel_currency(t_hotel('Party Inn'), 'EUR') ->> 'currency';
SELECT jsonb_array_length(api.set_rates(t_hotel('Party Inn'), 'double', '2099-07-01', '2099-07-10', 100) -> 'rates');
SELECT jsonb_array_length(api.set_rates(t_hotel('Party Inn'), 'double', '2099-07-03', '2099-07-03', 120) -> 'rates');
SELECT jsonb_array_length(api.set_rates(t_hotel('Party Inn'), 'single', '2099-07-01', '2099-07-10', 60) -> 'rates');
-- No charges set: the rate is the price whatever the party (base 2 adults, extras 0).
SELECT api.quote_reservation(t_hotel('Party Inn'), 'double', '2099-07-02', 2, adults => 4, children => 3)
       -> 'nightly_prices' AS no_charges;
-- Bad charges, each refused with nothing written.
SELECT t_err($$SELECT api.set_extra_person_charges(t_hotel('Party Inn'), 'double', 2, -1, 10)$$);
SELECT t_err($$SELECT api.set_extra_person_charges(t_hotel('Party Inn'), 'double', 2, 25, -0.01)$$);
SELECT t_err($$SELECT api.set_extra_person_charges(t_hotel('Party Inn'), 'double', 2, 25.001, 10)$$);
SELECT t_err($$SELECT api.set_extra_person_charges(t_hotel('Party Inn'), 'double', 2, NULL, 10)$$);
SELECT t_err($$SELECT api.set_extra_person_charges(t_hotel('Party Inn'), 'double', 0, 25, 10)$$);
SELECT t_err($$SELECT api.set_extra_person_charges(t_hotel('Party Inn'), 'double', 21, 25, 10)$$);
SELECT t_err($$SELECT api.set_extra_person_charges(t_hotel('Party Inn'), 'double', NULL, 25, 10)$$);
SELECT t_err($$SELECT api.set_extra_person_charges(t_hotel('Party Inn'), 'penthouse', 2, 25, 10)$$);
SELECT t_err($$SELECT api.set_extra_person_charges(t_hotel('Party Inn'), 'Bad Type!', 2, 25, 10)$$);
SELECT t_err($$SELECT api.set_extra_person_charges(999999, 'double', 2, 25, 10)$$);
RESET ROLE;
SELECT count(*) AS charges_after_bad_input FROM booking.extra_person_charges WHERE hotel_id = t_hotel('Party Inn');
-- A user may not set charges; a facility manager may.
SELECT t_as('guest1@hotel.test', 'booking_user');
SET ROLE booking_user;
SELECT t_err($$SELECT api.set_extra_person_charges(t_hotel('Party Inn'), 'double', 2, 25, 10)$$);
RESET ROLE;
SELECT count(*) AS charges_after_user FROM booking.extra_person_charges WHERE hotel_id = t_hotel('Party Inn');
SELECT t_as('h.fm@hotel.test', 'booking_facility_manager');
SET ROLE booking_facility_manager;
-- Double: two adults included, 25 per further adult, 10.50 per child, per night.
SELECT api.set_extra_person_charges(t_hotel('Party Inn'), 'double', 2, 25, 10.50) - 'updated_at' - 'hotel_id';
-- Single: one adult included, 15 per further adult, children free (default).
SELECT api.set_extra_person_charges(t_hotel('Party Inn'), 'single', 1, 15) - 'updated_at' - 'hotel_id';
-- Setting again replaces (same row).
SELECT api.set_extra_person_charges(t_hotel('Party Inn'), 'single', 1, 20) -> 'extra_adult_amount' AS single_extra;
RESET ROLE;
SELECT room_type, base_adults, extra_adult_amount, child_amount FROM booking.extra_person_charges
 WHERE hotel_id = t_hotel('Party Inn') ORDER BY room_type;
SELECT action, split_part(target_id, '/', 2) AS room_type, after - 'hotel_id' AS after FROM booking.audit_log
 WHERE action = 'inventory.extra_person_charges' ORDER BY id;

-- Quotes across parties: nights 07-02 (100) and 07-03 (120).
SELECT t_as('guest1@hotel.test', 'booking_user');
SET ROLE booking_user;
-- Defaults as create_reservation: one adult, no child: the rates alone.
SELECT api.quote_reservation(t_hotel('Party Inn'), 'double', '2099-07-02', 2) - 'hotel_id' AS one_adult;
-- Two adults: still the base.
SELECT api.quote_reservation(t_hotel('Party Inn'), 'double', '2099-07-02', 2, adults => 2) -> 'total_amount' AS two_adults;
-- Three adults, two children: +25 +2 x 10.50 = +46 a night: 146 + 166 = 312.
SELECT api.quote_reservation(t_hotel('Party Inn'), 'double', '2099-07-02', 2, adults => 3, children => 2)
       - 'hotel_id' AS three_adults_two_children;
-- Single, two adults: 60 + 20.
SELECT api.quote_reservation(t_hotel('Party Inn'), 'single', '2099-07-02', 1, adults => 2, children => 1)
       -> 'nightly_prices' AS single_two_adults;
-- Bad parties.
SELECT t_err($$SELECT api.quote_reservation(t_hotel('Party Inn'), 'double', '2099-07-02', 2, adults => 0)$$);
SELECT t_err($$SELECT api.quote_reservation(t_hotel('Party Inn'), 'double', '2099-07-02', 2, children => -1)$$);
SELECT t_err($$SELECT api.quote_reservation(t_hotel('Party Inn'), 'double', '2099-07-02', 2, adults => NULL)$$);

-- A reservation gets the quoted price, stored per night.
SELECT api.create_reservation(t_hotel('Party Inn'), 'double', 'Family', '2099-07-02', 2, adults => 3, children => 2) ->> 'id' AS p1 \gset
SELECT t_pick(api.get_reservation(:'p1')) AS family;
RESET ROLE;

-- A later change of the charges does not reprice the stay.
SELECT t_as('h.admin@hotel.test', 'booking_admin');
SET ROLE booking_admin;
SELECT api.set_extra_person_charges(t_hotel('Party Inn'), 'double', 2, 40, 10.50) -> 'extra_adult_amount' AS new_extra;
SELECT api.get_reservation(:'p1') -> 'total_amount' AS unchanged_total;
-- A change of dates keeps the nights it had; the new night 07-04 is priced now: 100 + 40 + 21.
SELECT api.update_reservation(:'p1', stay_length => 3) -> 'nightly_prices' AS one_night_longer;
-- A change of party reprices every night at today's rates and charges:
-- two adults, no child: the base, 100 + 120 + 100.
SELECT t_pick(api.update_reservation(:'p1', adults => 2, children => 0)) AS two_adults_now;
-- One child more: every night + 10.50.
SELECT t_pick(api.update_reservation(:'p1', children => 1)) AS with_a_child;
-- A bad party is refused, the stay keeps its party and price.
SELECT t_err(format($$SELECT api.update_reservation(%L, adults => 0)$$, :'p1'));
SELECT t_err(format($$SELECT api.update_reservation(%L, children => -2)$$, :'p1'));
SELECT t_pick(api.get_reservation(:'p1')) AS after_bad_party;
-- A change of name alone does not reprice (charges raised meanwhile).
SELECT api.set_extra_person_charges(t_hotel('Party Inn'), 'double', 2, 40, 99) -> 'child_amount' AS child_now;
SELECT t_pick(api.update_reservation(:'p1', guest_name => 'The Family')) AS after_rename;
-- A change of party to the same party does not reprice either.
SELECT t_pick(api.update_reservation(:'p1', adults => 2, children => 1)) AS same_party;
-- A change of room type reprices every night with the party: single, 2 adults, 1 child: 60 + 20 (children free).
SELECT t_pick(api.update_reservation(:'p1', room_type => 'single')) AS single_now;
RESET ROLE;

-- Every stored total is the sum of its nightly prices.
SELECT count(*) AS bad_totals FROM booking.reservations r
 WHERE r.currency IS NOT NULL
   AND r.total_amount <> (SELECT sum(v::text::numeric) FROM jsonb_each(r.nightly_prices) e(k, v));
SELECT t_violations();
-- The charges are dumped with the data.
SELECT c.relname FROM pg_extension e, unnest(e.extconfig) x JOIN pg_class c ON c.oid = x
 WHERE e.extname = 'pg_booking' AND c.relname = 'extra_person_charges';
