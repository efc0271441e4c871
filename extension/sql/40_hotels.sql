-- Hotels: per-night inventory, stay restrictions, reservations.
--
-- A reservation holds one room of its type on each night of
-- [arrival_date, held_until); held_until is the departure date until the stay
-- is cancelled, checked out early or released by the nightly checkout, which
-- move it back to give the nights not yet passed back.  Every change of the
-- held nights goes through one C trigger (extension/inventory.c) that locks
-- the inventory rows involved and moves the rooms atomically, so for every
-- (hotel, room type, night): available = total - reservations holding it.
--
-- The inventory horizon: a night is sellable only if it has an inventory row.
-- Rows are made by api.adjust_inventory; a stay reaching past the last row is
-- refused with the first missing night.

CREATE TABLE booking.hotels (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL,
    location   text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT hotels_name_length CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    CONSTRAINT hotels_location_length CHECK (length(btrim(location)) BETWEEN 1 AND 200)
);
CREATE INDEX hotels_location_idx ON booking.hotels (lower(location));
COMMENT ON TABLE booking.hotels IS 'hotels; location is matched case-insensitively by searches';

CREATE TABLE booking.inventory (
    hotel_id  bigint NOT NULL REFERENCES booking.hotels,
    room_type text NOT NULL,
    night     date NOT NULL,
    total     integer NOT NULL,
    available integer NOT NULL,
    PRIMARY KEY (hotel_id, room_type, night),
    CONSTRAINT inventory_room_type_length CHECK (length(btrim(room_type)) BETWEEN 1 AND 50),
    CONSTRAINT inventory_available_range CHECK (available >= 0 AND available <= total)
);
-- Availability searches go from a location's hotels to a range of nights:
-- the primary key serves (hotel, type, nights); this serves "which hotels
-- have rooms on these nights" without knowing the hotel.
CREATE INDEX inventory_night_idx ON booking.inventory (night, room_type) INCLUDE (hotel_id, available);
COMMENT ON TABLE booking.inventory IS 'rooms per (hotel, room type, night); available = total - rooms held by reservations';

CREATE TABLE booking.stay_restrictions (
    hotel_id            bigint NOT NULL REFERENCES booking.hotels,
    room_type           text NOT NULL,
    night               date NOT NULL,
    min_stay            integer,
    max_stay            integer,
    closed_to_arrival   boolean NOT NULL DEFAULT false,
    closed_to_departure boolean NOT NULL DEFAULT false,
    PRIMARY KEY (hotel_id, room_type, night),
    CONSTRAINT stay_restrictions_min CHECK (min_stay IS NULL OR min_stay BETWEEN 1 AND 30),
    CONSTRAINT stay_restrictions_max CHECK (max_stay IS NULL OR max_stay BETWEEN 1 AND 30),
    CONSTRAINT stay_restrictions_order CHECK (min_stay IS NULL OR max_stay IS NULL OR min_stay <= max_stay)
);
COMMENT ON TABLE booking.stay_restrictions IS 'per date: min/max stay and closed to arrival apply to stays arriving that date, closed to departure to stays leaving that date';

CREATE TABLE booking.reservations (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    hotel_id       bigint NOT NULL REFERENCES booking.hotels,
    room_type      text NOT NULL,
    user_id        bigint NOT NULL REFERENCES booking.users,
    guest_name     text NOT NULL,
    arrival_date   date NOT NULL,
    stay_length    integer NOT NULL,
    departure_date date GENERATED ALWAYS AS (arrival_date + stay_length) STORED,
    adults         integer NOT NULL,
    children       integer NOT NULL DEFAULT 0,
    status         text NOT NULL DEFAULT 'confirmed',
    held_until     date NOT NULL,
    checked_in_at  timestamptz,
    checked_out_at timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT reservations_status_check
        CHECK (status IN ('confirmed', 'checked_in', 'completed', 'cancelled', 'no_show')),
    CONSTRAINT reservations_stay_length CHECK (stay_length BETWEEN 1 AND 30),
    CONSTRAINT reservations_adults CHECK (adults >= 1),
    CONSTRAINT reservations_children CHECK (children >= 0),
    CONSTRAINT reservations_guest_name CHECK (length(btrim(guest_name)) BETWEEN 1 AND 200),
    CONSTRAINT reservations_held_nights CHECK (held_until >= arrival_date AND held_until <= arrival_date + stay_length)
);
CREATE INDEX reservations_user_idx ON booking.reservations (user_id, arrival_date);
CREATE INDEX reservations_hotel_idx ON booking.reservations (hotel_id, room_type, arrival_date);
-- The nightly checkout's two scans: stays whose departure has come, and
-- finished stays that still hold nights.
CREATE INDEX reservations_staying_idx ON booking.reservations (departure_date)
    WHERE status IN ('confirmed', 'checked_in');
CREATE INDEX reservations_released_holding_idx ON booking.reservations (held_until)
    WHERE status IN ('cancelled', 'completed', 'no_show') AND held_until > arrival_date;
COMMENT ON TABLE booking.reservations IS 'hotel stays; each holds one room on every night of [arrival_date, held_until)';
COMMENT ON COLUMN booking.reservations.held_until IS 'end (exclusive) of the nights this reservation holds; departure_date unless nights were given back';

CREATE FUNCTION booking.reservation_nights() RETURNS trigger
AS 'MODULE_PATHNAME', 'reservation_nights'
LANGUAGE C;
COMMENT ON FUNCTION booking.reservation_nights IS 'trigger: take and give back the nights a reservation holds, atomically, with stay restrictions (NO_AVAILABILITY, RESTRICTION_VIOLATION, VALIDATION_ERROR)';

-- Every write that changes the nights held goes through this trigger,
-- whatever the path (api, psql, the nightly checkout).
CREATE TRIGGER reservations_nights
    BEFORE INSERT OR DELETE OR UPDATE OF hotel_id, room_type, arrival_date, stay_length, held_until
    ON booking.reservations
    FOR EACH ROW EXECUTE FUNCTION booking.reservation_nights();

-- Row-level security as for bookings.
ALTER TABLE booking.reservations ENABLE ROW LEVEL SECURITY;
CREATE POLICY reservations_own ON booking.reservations TO booking_api
    USING (user_id = booking.current_user_id()) WITH CHECK (user_id = booking.current_user_id());
CREATE POLICY reservations_staff ON booking.reservations TO booking_admin, booking_facility_manager USING (true);
CREATE POLICY reservations_read_all ON booking.reservations FOR SELECT
    TO booking_auditor, booking_service_account USING (true);
GRANT SELECT, INSERT, UPDATE ON booking.reservations TO booking_api;
GRANT SELECT ON booking.hotels, booking.inventory, booking.stay_restrictions TO booking_api;
GRANT INSERT ON booking.hotels TO booking_admin;
GRANT INSERT, UPDATE ON booking.inventory TO booking_admin, booking_facility_manager;
GRANT INSERT, UPDATE, DELETE ON booking.stay_restrictions TO booking_admin, booking_facility_manager;

-- The hotels' current date: the calendar date in the checkout time zone.
-- Nights before it have passed and are never given back.
CREATE FUNCTION booking.hotel_today() RETURNS date
LANGUAGE sql STABLE
AS $$ SELECT (now() AT TIME ZONE coalesce(nullif(current_setting('pg_booking.checkout_time_zone', true), ''), 'UTC'))::date $$;

CREATE FUNCTION booking.hotel_json(h booking.hotels) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object('id', h.id, 'name', h.name, 'location', h.location,
                              'created_at', h.created_at, 'updated_at', h.updated_at)
$$;

CREATE FUNCTION booking.reservation_json(r booking.reservations) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object('id', r.id, 'hotel_id', r.hotel_id, 'room_type', r.room_type,
                              'user_id', r.user_id, 'guest_name', r.guest_name,
                              'arrival_date', r.arrival_date, 'stay_length', r.stay_length,
                              'departure_date', r.departure_date, 'adults', r.adults,
                              'children', r.children, 'status', r.status,
                              'nights_held', r.held_until - r.arrival_date,
                              'checked_in_at', r.checked_in_at, 'checked_out_at', r.checked_out_at,
                              'created_at', r.created_at, 'updated_at', r.updated_at)
$$;

CREATE FUNCTION booking.find_hotel(hotel_id bigint) RETURNS booking.hotels
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    h booking.hotels;
BEGIN
    SELECT * INTO h FROM booking.hotels WHERE id = hotel_id;
    IF h.id IS NULL THEN
        PERFORM booking.raise_error(404, 'NOT_FOUND', format('hotel %s not found', coalesce(hotel_id::text, 'NULL')),
            jsonb_build_object('hotel_id', hotel_id));
    END IF;
    RETURN h;
END
$$;

-- A reservation the caller may see, locked for a change when asked, or 404.
CREATE FUNCTION booking.find_reservation(reservation_id uuid, for_update boolean DEFAULT false)
RETURNS booking.reservations
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r booking.reservations;
BEGIN
    IF for_update THEN
        SELECT * INTO r FROM booking.reservations WHERE id = reservation_id FOR UPDATE;
    ELSE
        SELECT * INTO r FROM booking.reservations WHERE id = reservation_id;
    END IF;
    IF r.id IS NULL THEN
        PERFORM booking.raise_error(404, 'NOT_FOUND',
            format('reservation %s not found', coalesce(reservation_id::text, 'NULL')),
            jsonb_build_object('reservation_id', reservation_id));
    END IF;
    RETURN r;
END
$$;

-- The fields of a stay, validated once for create and change.  Room type
-- and horizon are checked by the trigger, under the inventory locks.
CREATE FUNCTION booking.validate_stay(guest_name text, arrival date, stay_length integer,
                                      adults integer, children integer) RETURNS void
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF guest_name IS NULL OR length(btrim(guest_name)) NOT BETWEEN 1 AND 200 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'guest_name must have 1 to 200 characters',
            jsonb_build_object('field', 'guest_name'));
    END IF;
    IF stay_length IS NULL OR stay_length NOT BETWEEN 1 AND 30 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('stay_length %s is out of range', coalesce(stay_length::text, 'NULL')),
            jsonb_build_object('field', 'stay_length', 'min', 1, 'max', 30));
    END IF;
    IF adults IS NULL OR adults < 1 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('adults %s is out of range', coalesce(adults::text, 'NULL')),
            jsonb_build_object('field', 'adults', 'min', 1));
    END IF;
    IF children IS NULL OR children < 0 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('children %s is out of range', coalesce(children::text, 'NULL')),
            jsonb_build_object('field', 'children', 'min', 0));
    END IF;
    IF arrival < booking.hotel_today() AND NOT booking.caller_is('admin', 'facility_manager') THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('arrival_date %s is in the past', to_char(arrival, 'YYYY-MM-DD')),
            jsonb_build_object('field', 'arrival_date'));
    END IF;
END
$$;

-- A range of nights given as dates, both included.
CREATE FUNCTION booking.parse_nights(from_text text, to_text text, max_nights integer DEFAULT 400)
RETURNS daterange
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    f date := booking.parse_date(from_text, 'from');
    t date := booking.parse_date(to_text, 'to');
BEGIN
    IF t < f THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('"to" %s is before "from" %s', to_char(t, 'YYYY-MM-DD'), to_char(f, 'YYYY-MM-DD')),
            jsonb_build_object('field', 'to'));
    END IF;
    IF t - f + 1 > max_nights THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('range of %s nights is longer than %s', t - f + 1, max_nights),
            jsonb_build_object('field', 'to', 'max_nights', max_nights));
    END IF;
    RETURN daterange(f, t, '[]');
END
$$;

CREATE FUNCTION booking.validate_room_type(room_type text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF room_type IS NULL OR length(btrim(room_type)) NOT BETWEEN 1 AND 50 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'room_type must have 1 to 50 characters',
            jsonb_build_object('field', 'room_type'));
    END IF;
END
$$;

GRANT EXECUTE ON FUNCTION booking.hotel_today(), booking.hotel_json(booking.hotels),
    booking.reservation_json(booking.reservations), booking.find_hotel(bigint),
    booking.find_reservation(uuid, boolean), booking.validate_stay(text, date, integer, integer, integer),
    booking.parse_nights(text, text, integer), booking.validate_room_type(text)
  TO booking_api;

-- Hotels.

CREATE FUNCTION api.create_hotel(name text, location text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    h booking.hotels;
BEGIN
    PERFORM booking.require_role('admin');
    IF name IS NULL OR length(btrim(name)) NOT BETWEEN 1 AND 200 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'name must have 1 to 200 characters',
            jsonb_build_object('field', 'name'));
    END IF;
    IF location IS NULL OR length(btrim(location)) NOT BETWEEN 1 AND 200 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'location must have 1 to 200 characters',
            jsonb_build_object('field', 'location'));
    END IF;
    INSERT INTO booking.hotels (name, location) VALUES (btrim(name), btrim(location)) RETURNING * INTO h;
    RETURN booking.hotel_json(h);
END
$$;
COMMENT ON FUNCTION api.create_hotel IS 'POST /hotels (admin): a hotel; 422 VALIDATION_ERROR';

CREATE FUNCTION api.list_hotels(location text DEFAULT NULL, lim integer DEFAULT 50, off integer DEFAULT 0)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_user();
    PERFORM booking.check_page(lim, off);
    RETURN coalesce((
        SELECT jsonb_agg(booking.hotel_json(x) ORDER BY x.name, x.id)
          FROM (SELECT h.* FROM booking.hotels h
                 WHERE list_hotels.location IS NULL OR lower(h.location) = lower(btrim(list_hotels.location))
                 ORDER BY h.name, h.id LIMIT lim OFFSET off) x), '[]');
END
$$;
COMMENT ON FUNCTION api.list_hotels IS 'GET /hotels?location (any user): hotels, optionally in one location (case-insensitive)';

CREATE FUNCTION api.get_hotel(id bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_user();
    RETURN booking.hotel_json(booking.find_hotel(id));
END
$$;
COMMENT ON FUNCTION api.get_hotel IS 'GET /hotels/{id} (any user); 404 NOT_FOUND';

CREATE FUNCTION api.hotel_name(hotel_id bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_user();
    RETURN jsonb_build_object('hotel_id', hotel_id, 'name', (booking.find_hotel(hotel_id)).name);
END
$$;
COMMENT ON FUNCTION api.hotel_name IS 'GET /inventory/hotel_name/{hotel_id} (any user): {hotel_id, name}; 404 NOT_FOUND';

-- Inventory.

CREATE FUNCTION api.list_inventory(hotel_id bigint DEFAULT NULL, "from" text DEFAULT NULL, "to" text DEFAULT NULL,
                                   room_type text DEFAULT NULL, lim integer DEFAULT 50, off integer DEFAULT 0)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    f date;
    t date;
BEGIN
    PERFORM booking.require_user();
    PERFORM booking.check_page(lim, off);
    IF hotel_id IS NOT NULL THEN
        PERFORM booking.find_hotel(hotel_id);
    END IF;
    IF "from" IS NOT NULL THEN f := booking.parse_date("from", 'from'); END IF;
    IF "to" IS NOT NULL THEN t := booking.parse_date("to", 'to'); END IF;
    RETURN coalesce((
        SELECT jsonb_agg(jsonb_build_object('hotel_id', x.hotel_id, 'room_type', x.room_type, 'night', x.night,
                                            'total', x.total, 'available', x.available)
                         ORDER BY x.hotel_id, x.room_type, x.night)
          FROM (SELECT i.* FROM booking.inventory i
                 WHERE (list_inventory.hotel_id IS NULL OR i.hotel_id = list_inventory.hotel_id)
                   AND (f IS NULL OR i.night >= f) AND (t IS NULL OR i.night <= t)
                   AND (list_inventory.room_type IS NULL OR i.room_type = list_inventory.room_type)
                 ORDER BY i.hotel_id, i.room_type, i.night LIMIT lim OFFSET off) x), '[]');
END
$$;
COMMENT ON FUNCTION api.list_inventory IS 'GET /inventory, GET /inventory/{hotel_id}?from&to&room_type (any user): nights with total and available rooms, from and to included; 404 unknown hotel';

-- Set the rooms of a range of nights (both dates included), by a delta or
-- to a new total.  Missing nights are created (this is how the horizon
-- grows).  The rooms held by reservations stay held: a new total below them
-- is refused with the first such night.
CREATE FUNCTION api.adjust_inventory(hotel_id bigint, room_type text, "from" text, "to" text,
                                     delta integer DEFAULT NULL, total integer DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    nights daterange;
    bad record;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager');
    PERFORM booking.find_hotel(hotel_id);
    PERFORM booking.validate_room_type(room_type);
    nights := booking.parse_nights("from", "to");
    IF (delta IS NULL) = (total IS NULL) THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'give either delta or total',
            jsonb_build_object('field', 'delta'));
    END IF;
    IF total IS NOT NULL AND total < 0 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('total %s is negative', total),
            jsonb_build_object('field', 'total'));
    END IF;
    INSERT INTO booking.inventory (hotel_id, room_type, night, total, available)
    SELECT adjust_inventory.hotel_id, adjust_inventory.room_type, n::date, 0, 0
      FROM generate_series(lower(nights), upper(nights) - 1, interval '1 day') n
    ON CONFLICT DO NOTHING;
    -- Lock the nights in the order the reservation trigger does (by night),
    -- then look at what is held: nothing can take a room meanwhile.
    PERFORM 1 FROM booking.inventory i
      WHERE i.hotel_id = adjust_inventory.hotel_id AND i.room_type = adjust_inventory.room_type
        AND i.night <@ nights
      ORDER BY i.night FOR UPDATE;
    SELECT i.night, coalesce(adjust_inventory.total, i.total + delta) AS total, i.total - i.available AS held
      INTO bad
      FROM booking.inventory i
     WHERE i.hotel_id = adjust_inventory.hotel_id AND i.room_type = adjust_inventory.room_type
       AND i.night <@ nights AND coalesce(adjust_inventory.total, i.total + delta) < i.total - i.available
     ORDER BY i.night LIMIT 1;
    IF FOUND AND bad.total < 0 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('night %s would have %s rooms', to_char(bad.night, 'YYYY-MM-DD'), bad.total),
            jsonb_build_object('field', 'delta', 'night', bad.night, 'total', bad.total));
    END IF;
    IF FOUND THEN
        PERFORM booking.raise_error(409, 'INVENTORY_BELOW_HELD',
            format('night %s would have %s rooms but %s are held by reservations', to_char(bad.night, 'YYYY-MM-DD'), bad.total, bad.held),
            jsonb_build_object('hotel_id', hotel_id, 'room_type', room_type, 'night', bad.night,
                               'total', bad.total, 'held', bad.held),
            'Cancel or move reservations first, or adjust by a smaller amount.');
    END IF;
    UPDATE booking.inventory i
       SET total = coalesce(adjust_inventory.total, i.total + delta),
           available = coalesce(adjust_inventory.total, i.total + delta) - (i.total - i.available)
     WHERE i.hotel_id = adjust_inventory.hotel_id AND i.room_type = adjust_inventory.room_type
       AND i.night <@ nights;
    RETURN api.list_inventory(hotel_id, to_char(lower(nights), 'YYYY-MM-DD'), to_char(upper(nights) - 1, 'YYYY-MM-DD'),
                              room_type, lim => 500);
END
$$;
COMMENT ON FUNCTION api.adjust_inventory IS 'POST /inventory/{hotel_id}/adjust (admin, facility_manager): change the rooms of nights from..to (included) by delta or to total, creating missing nights; 409 INVENTORY_BELOW_HELD';

CREATE FUNCTION api.set_restrictions(hotel_id bigint, room_type text, "from" text, "to" text,
                                     min_stay integer DEFAULT NULL, max_stay integer DEFAULT NULL,
                                     closed_to_arrival boolean DEFAULT false,
                                     closed_to_departure boolean DEFAULT false) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    nights daterange;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager');
    PERFORM booking.find_hotel(hotel_id);
    PERFORM booking.validate_room_type(room_type);
    nights := booking.parse_nights("from", "to");
    IF min_stay IS NOT NULL AND min_stay NOT BETWEEN 1 AND 30 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('min_stay %s is out of range', min_stay),
            jsonb_build_object('field', 'min_stay', 'min', 1, 'max', 30));
    END IF;
    IF max_stay IS NOT NULL AND max_stay NOT BETWEEN 1 AND 30 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('max_stay %s is out of range', max_stay),
            jsonb_build_object('field', 'max_stay', 'min', 1, 'max', 30));
    END IF;
    IF min_stay > max_stay THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('min_stay %s is above max_stay %s', min_stay, max_stay),
            jsonb_build_object('field', 'min_stay'));
    END IF;
    -- PUT: the given rules replace those of these dates; no rule at all clears them.
    DELETE FROM booking.stay_restrictions s
     WHERE s.hotel_id = set_restrictions.hotel_id AND s.room_type = set_restrictions.room_type AND s.night <@ nights;
    IF min_stay IS NOT NULL OR max_stay IS NOT NULL OR closed_to_arrival OR closed_to_departure THEN
        INSERT INTO booking.stay_restrictions
        SELECT set_restrictions.hotel_id, set_restrictions.room_type, n::date, min_stay, max_stay,
               coalesce(closed_to_arrival, false), coalesce(closed_to_departure, false)
          FROM generate_series(lower(nights), upper(nights) - 1, interval '1 day') n;
    END IF;
    RETURN jsonb_build_object('hotel_id', hotel_id, 'room_type', room_type,
                              'from', lower(nights), 'to', upper(nights) - 1,
                              'min_stay', min_stay, 'max_stay', max_stay,
                              'closed_to_arrival', coalesce(closed_to_arrival, false),
                              'closed_to_departure', coalesce(closed_to_departure, false));
END
$$;
COMMENT ON FUNCTION api.set_restrictions IS 'PUT /inventory/{hotel_id}/restrictions (admin, facility_manager): stay rules for dates from..to (included); min/max stay and closed to arrival apply by arrival date, closed to departure by departure date; 422';

CREATE FUNCTION api.search_availability(location text, arrival text, nights integer,
                                        room_type text DEFAULT NULL, rooms integer DEFAULT 1) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    a date;
BEGIN
    PERFORM booking.require_user();
    a := booking.parse_date(arrival, 'arrival');
    IF location IS NULL OR btrim(location) = '' THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'location is required', jsonb_build_object('field', 'location'));
    END IF;
    IF nights IS NULL OR nights NOT BETWEEN 1 AND 30 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('nights %s is out of range', coalesce(nights::text, 'NULL')),
            jsonb_build_object('field', 'nights', 'min', 1, 'max', 30));
    END IF;
    IF rooms IS NULL OR rooms NOT BETWEEN 1 AND 100 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('rooms %s is out of range', coalesce(rooms::text, 'NULL')),
            jsonb_build_object('field', 'rooms', 'min', 1, 'max', 100));
    END IF;
    RETURN coalesce((
        SELECT jsonb_agg(jsonb_build_object('hotel_id', h.id, 'name', h.name, 'location', h.location,
                                            'room_type', x.room_type, 'min_available', x.min_available)
                         ORDER BY h.name, h.id, x.room_type)
          FROM booking.hotels h
          JOIN LATERAL (SELECT i.room_type, min(i.available) AS min_available
                          FROM booking.inventory i
                         WHERE i.hotel_id = h.id AND i.night >= a AND i.night < a + nights
                           AND (search_availability.room_type IS NULL OR i.room_type = search_availability.room_type)
                         GROUP BY i.room_type
                        HAVING count(*) = nights AND min(i.available) >= rooms) x ON true
         WHERE lower(h.location) = lower(btrim(search_availability.location))
           -- The stay restrictions the reservation itself would meet.
           AND NOT EXISTS (SELECT 1 FROM booking.stay_restrictions r
                            WHERE r.hotel_id = h.id AND r.room_type = x.room_type
                              AND ((r.night = a AND (r.closed_to_arrival OR r.min_stay > nights OR r.max_stay < nights))
                                   OR (r.night = a + nights AND r.closed_to_departure)))), '[]');
END
$$;
COMMENT ON FUNCTION api.search_availability IS 'GET /availability?location&arrival&nights&room_type&rooms (any user): hotels and room types with at least rooms free on every night of the stay and whose stay restrictions allow it; 422';

-- Reservations.

CREATE FUNCTION api.create_reservation(hotel_id bigint, room_type text, guest_name text, arrival_date text,
                                       stay_length integer, adults integer DEFAULT 1, children integer DEFAULT 0)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    uid bigint := booking.require_user();
    a date;
    r booking.reservations;
BEGIN
    PERFORM booking.require_role('user', 'admin', 'facility_manager', 'moderator', 'service_account');
    a := booking.parse_date(arrival_date, 'arrival_date');
    PERFORM booking.validate_room_type(room_type);
    PERFORM booking.validate_stay(guest_name, a, stay_length, adults, children);
    PERFORM booking.find_hotel(hotel_id);
    PERFORM booking.rate_limit_hit('create_reservation');
    -- The trigger takes the nights, all or nothing (NO_AVAILABILITY, restrictions).
    INSERT INTO booking.reservations (hotel_id, room_type, user_id, guest_name, arrival_date, stay_length,
                                      adults, children, held_until)
    VALUES (hotel_id, room_type, uid, btrim(guest_name), a, stay_length, adults, children, a + stay_length)
    RETURNING * INTO r;
    RETURN booking.reservation_json(r);
END
$$;
COMMENT ON FUNCTION api.create_reservation IS 'POST /reservations (user+, rate-limited): a stay taking one room on each night, all or nothing; 409 NO_AVAILABILITY (first sold-out night), 422 RESTRICTION_VIOLATION or VALIDATION_ERROR, 404 hotel';

CREATE FUNCTION api.get_reservation(id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    r booking.reservations;
BEGIN
    PERFORM booking.require_user();
    SELECT * INTO r FROM booking.reservations x WHERE x.id = get_reservation.id;
    IF r.id IS NULL THEN
        PERFORM booking.raise_error(404, 'NOT_FOUND', format('reservation %s not found', coalesce(id::text, 'NULL')),
            jsonb_build_object('reservation_id', id));
    END IF;
    RETURN booking.reservation_json(r);
END
$$;
COMMENT ON FUNCTION api.get_reservation IS 'GET /reservations/{id} (owner; staff); 404 NOT_FOUND';

CREATE FUNCTION api.list_reservations(hotel_id bigint DEFAULT NULL, status text DEFAULT NULL,
                                      lim integer DEFAULT 50, off integer DEFAULT 0) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_user();
    PERFORM booking.check_page(lim, off);
    IF status IS NOT NULL AND status NOT IN ('confirmed', 'checked_in', 'completed', 'cancelled', 'no_show') THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('status "%s" is not a reservation status', status),
            jsonb_build_object('field', 'status'));
    END IF;
    RETURN coalesce((
        SELECT jsonb_agg(booking.reservation_json(x) ORDER BY x.arrival_date, x.created_at, x.id)
          FROM (SELECT r.* FROM booking.reservations r
                 WHERE (list_reservations.hotel_id IS NULL OR r.hotel_id = list_reservations.hotel_id)
                   AND (list_reservations.status IS NULL OR r.status = list_reservations.status)
                 ORDER BY r.arrival_date, r.created_at, r.id LIMIT lim OFFSET off) x), '[]');
END
$$;
COMMENT ON FUNCTION api.list_reservations IS 'GET /reservations (own; admin, facility_manager, auditor, service_account all)';

-- Change a confirmed stay.  New dates, length or room type re-balance the
-- nights in one step of the trigger: if the new nights are not available
-- the error leaves the old ones held.
CREATE FUNCTION api.update_reservation(id uuid, guest_name text DEFAULT NULL, arrival_date text DEFAULT NULL,
                                       stay_length integer DEFAULT NULL, room_type text DEFAULT NULL,
                                       adults integer DEFAULT NULL, children integer DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r booking.reservations;
    a date;
    len integer;
BEGIN
    PERFORM booking.require_user();
    PERFORM booking.require_role('user', 'admin', 'facility_manager', 'moderator', 'service_account');
    r := booking.find_reservation(id, true);
    a := CASE WHEN arrival_date IS NULL THEN r.arrival_date ELSE booking.parse_date(arrival_date, 'arrival_date') END;
    len := coalesce(stay_length, r.stay_length);
    IF r.status <> 'confirmed' AND (a <> r.arrival_date OR len <> r.stay_length
                                    OR coalesce(room_type, r.room_type) <> r.room_type) THEN
        PERFORM booking.raise_error(409, 'INVALID_STATE',
            format('reservation %s is %s: its dates and room type can no longer change', id, r.status),
            jsonb_build_object('reservation_id', id, 'status', r.status));
    END IF;
    IF r.status IN ('completed', 'cancelled', 'no_show') THEN
        PERFORM booking.raise_error(409, 'INVALID_STATE', format('reservation %s is %s and cannot be changed', id, r.status),
            jsonb_build_object('reservation_id', id, 'status', r.status));
    END IF;
    IF room_type IS NOT NULL THEN
        PERFORM booking.validate_room_type(room_type);
    END IF;
    PERFORM booking.validate_stay(coalesce(guest_name, r.guest_name),
                                  CASE WHEN a <> r.arrival_date THEN a ELSE greatest(a, booking.hotel_today()) END,
                                  len, coalesce(adults, r.adults), coalesce(children, r.children));
    UPDATE booking.reservations x
       SET guest_name = coalesce(btrim(update_reservation.guest_name), x.guest_name),
           arrival_date = a, stay_length = len, held_until = a + len,
           room_type = coalesce(update_reservation.room_type, x.room_type),
           adults = coalesce(update_reservation.adults, x.adults),
           children = coalesce(update_reservation.children, x.children),
           updated_at = now()
     WHERE x.id = update_reservation.id
    RETURNING * INTO r;
    RETURN booking.reservation_json(r);
END
$$;
COMMENT ON FUNCTION api.update_reservation IS 'PATCH /reservations/{id} (owner, staff): change guest, party, dates, length or room type of a confirmed stay, atomically; 404, 409 NO_AVAILABILITY or INVALID_STATE, 422';

CREATE FUNCTION api.cancel_reservation(id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r booking.reservations;
BEGIN
    PERFORM booking.require_user();
    PERFORM booking.require_role('user', 'admin', 'facility_manager', 'moderator', 'service_account');
    r := booking.find_reservation(id, true);
    IF r.status <> 'confirmed' THEN
        PERFORM booking.raise_error(409, 'INVALID_STATE', format('reservation %s is %s and cannot be cancelled', id, r.status),
            jsonb_build_object('reservation_id', id, 'status', r.status));
    END IF;
    -- Nights already passed stay held; the others go back to the inventory.
    UPDATE booking.reservations x
       SET status = 'cancelled', updated_at = now(),
           held_until = greatest(x.arrival_date, least(x.held_until, booking.hotel_today()))
     WHERE x.id = cancel_reservation.id
    RETURNING * INTO r;
    RETURN booking.reservation_json(r);
END
$$;
COMMENT ON FUNCTION api.cancel_reservation IS 'DELETE /reservations/{id} (owner, staff): status cancelled, nights not yet passed returned; 404, 409 INVALID_STATE';

CREATE FUNCTION api.check_in(id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r booking.reservations;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager');
    r := booking.find_reservation(id, true);
    IF r.status <> 'confirmed' THEN
        PERFORM booking.raise_error(409, 'INVALID_STATE', format('reservation %s is %s and cannot be checked in', id, r.status),
            jsonb_build_object('reservation_id', id, 'status', r.status));
    END IF;
    UPDATE booking.reservations x SET status = 'checked_in', checked_in_at = now(), updated_at = now()
     WHERE x.id = check_in.id RETURNING * INTO r;
    RETURN booking.reservation_json(r);
END
$$;
COMMENT ON FUNCTION api.check_in IS 'POST /reservations/{id}/check-in (admin, facility_manager): confirmed to checked_in; 404, 409 INVALID_STATE';

CREATE FUNCTION api.check_out(id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r booking.reservations;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager');
    r := booking.find_reservation(id, true);
    IF r.status <> 'checked_in' THEN
        PERFORM booking.raise_error(409, 'INVALID_STATE',
            format('reservation %s is %s and cannot be checked out', id, r.status),
            jsonb_build_object('reservation_id', id, 'status', r.status),
            CASE WHEN r.status = 'confirmed' THEN 'Check the guest in first.' END);
    END IF;
    -- An early departure gives back tonight and every later night at once.
    UPDATE booking.reservations x
       SET status = 'completed', checked_out_at = now(), updated_at = now(),
           held_until = greatest(x.arrival_date, least(x.held_until, booking.hotel_today()))
     WHERE x.id = check_out.id RETURNING * INTO r;
    RETURN booking.reservation_json(r);
END
$$;
COMMENT ON FUNCTION api.check_out IS 'POST /reservations/{id}/check-out (admin, facility_manager): checked_in to completed, remaining nights returned at once; 404, 409 INVALID_STATE';

-- The invariant, over the whole database: for every (hotel, room type,
-- night), available = total - reservations holding the night, and
-- 0 <= available <= total; a held night without an inventory row is a
-- violation too.  Returns the violations (none when all is well).
CREATE FUNCTION booking.inventory_violations()
RETURNS TABLE (hotel_id bigint, room_type text, night date, total integer, available integer, held bigint, problem text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH held AS (
        SELECT r.hotel_id, r.room_type, n::date AS night, count(*) AS held
          FROM booking.reservations r
         CROSS JOIN LATERAL generate_series(r.arrival_date, r.held_until - 1, interval '1 day') n
         WHERE r.held_until > r.arrival_date
         GROUP BY 1, 2, 3)
    SELECT coalesce(i.hotel_id, h.hotel_id), coalesce(i.room_type, h.room_type), coalesce(i.night, h.night),
           i.total, i.available, coalesce(h.held, 0),
           CASE WHEN i.night IS NULL THEN 'held night has no inventory row'
                WHEN i.available < 0 OR i.available > i.total THEN 'available out of range'
                ELSE 'available is not total minus held' END
      FROM booking.inventory i
      FULL JOIN held h ON h.hotel_id = i.hotel_id AND h.room_type = i.room_type AND h.night = i.night
     WHERE i.night IS NULL OR i.available < 0 OR i.available > i.total
        OR i.available <> i.total - coalesce(h.held, 0)
     ORDER BY 1, 2, 3
$$;
COMMENT ON FUNCTION booking.inventory_violations IS 'the hotel invariant checked over the whole database: rows where available <> total - held or out of range; empty when all is well';
GRANT EXECUTE ON FUNCTION booking.inventory_violations() TO booking_admin, booking_auditor;
