-- Meeting rooms.

CREATE TABLE booking.rooms (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                  text NOT NULL,
    location              text NOT NULL,
    capacity              integer NOT NULL,
    amenities             text[] NOT NULL DEFAULT '{}',
    buffer_before_minutes integer NOT NULL DEFAULT 0,
    buffer_after_minutes  integer NOT NULL DEFAULT 0,
    active                boolean NOT NULL DEFAULT true,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT rooms_name_length CHECK (length(btrim(name)) BETWEEN 1 AND 100),
    CONSTRAINT rooms_location_length CHECK (length(btrim(location)) BETWEEN 1 AND 200),
    CONSTRAINT rooms_capacity_positive CHECK (capacity > 0),
    CONSTRAINT rooms_buffers_range CHECK (buffer_before_minutes BETWEEN 0 AND 240
                                          AND buffer_after_minutes BETWEEN 0 AND 240)
);
-- Names are unique whatever their case: "Aquarium" and "aquarium" are one room.
CREATE UNIQUE INDEX rooms_name_key ON booking.rooms (lower(name));
CREATE INDEX rooms_location_idx ON booking.rooms (lower(location));
CREATE INDEX rooms_amenities_idx ON booking.rooms USING gin (amenities);
COMMENT ON TABLE booking.rooms IS 'meeting rooms, booked by the hour; buffers widen every booking of the room';

-- Every signed-in role reads rooms; admins and facility managers change them.
GRANT SELECT ON booking.rooms TO booking_api;
GRANT INSERT, UPDATE ON booking.rooms TO booking_admin, booking_facility_manager;

CREATE FUNCTION booking.room_json(r booking.rooms) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object('id', r.id, 'name', r.name, 'location', r.location,
                              'capacity', r.capacity, 'amenities', to_jsonb(r.amenities),
                              'buffer_before_minutes', r.buffer_before_minutes,
                              'buffer_after_minutes', r.buffer_after_minutes,
                              'active', r.active, 'created_at', r.created_at, 'updated_at', r.updated_at)
$$;

-- Room fields are validated here once, for create and update alike.
CREATE FUNCTION booking.validate_room(name text, location text, capacity integer,
                                      buffer_before_minutes integer, buffer_after_minutes integer)
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF name IS NOT NULL AND length(btrim(name)) NOT BETWEEN 1 AND 100 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'name must have 1 to 100 characters',
            jsonb_build_object('field', 'name'));
    END IF;
    IF location IS NOT NULL AND length(btrim(location)) NOT BETWEEN 1 AND 200 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'location must have 1 to 200 characters',
            jsonb_build_object('field', 'location'));
    END IF;
    IF capacity IS NOT NULL AND capacity < 1 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('capacity %s is not positive', capacity),
            jsonb_build_object('field', 'capacity'));
    END IF;
    IF buffer_before_minutes IS NOT NULL AND buffer_before_minutes NOT BETWEEN 0 AND 240 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('buffer_before_minutes %s is out of range', buffer_before_minutes),
            jsonb_build_object('field', 'buffer_before_minutes', 'min', 0, 'max', 240));
    END IF;
    IF buffer_after_minutes IS NOT NULL AND buffer_after_minutes NOT BETWEEN 0 AND 240 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('buffer_after_minutes %s is out of range', buffer_after_minutes),
            jsonb_build_object('field', 'buffer_after_minutes', 'min', 0, 'max', 240));
    END IF;
END
$$;

-- A room, or 404.  Inactive rooms are found too: callers decide.
CREATE FUNCTION booking.find_room(room_id bigint) RETURNS booking.rooms
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    r booking.rooms;
BEGIN
    SELECT * INTO r FROM booking.rooms WHERE id = room_id;
    IF r.id IS NULL THEN
        PERFORM booking.raise_error(404, 'NOT_FOUND', format('room %s not found', coalesce(room_id::text, 'NULL')),
            jsonb_build_object('room_id', room_id));
    END IF;
    RETURN r;
END
$$;

-- A window given as two texts, checked: both with zones, from < to, at most
-- max_days long.
CREATE FUNCTION booking.parse_window(from_text text, to_text text, max_days integer DEFAULT 62)
RETURNS tstzrange
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    f timestamptz := booking.parse_instant(from_text, 'from');
    t timestamptz := booking.parse_instant(to_text, 'to');
BEGIN
    IF t <= f THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', '"to" must be after "from"',
            jsonb_build_object('field', 'to'));
    END IF;
    IF t - f > make_interval(days => max_days) THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('window is longer than %s days', max_days),
            jsonb_build_object('field', 'to', 'max_days', max_days));
    END IF;
    RETURN tstzrange(f, t);
END
$$;

GRANT EXECUTE ON FUNCTION booking.room_json(booking.rooms),
    booking.validate_room(text, text, integer, integer, integer), booking.find_room(bigint),
    booking.parse_window(text, text, integer)
  TO booking_api;

CREATE FUNCTION api.create_room(name text, location text, capacity integer,
                                amenities text[] DEFAULT '{}',
                                buffer_before_minutes integer DEFAULT 0,
                                buffer_after_minutes integer DEFAULT 0) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r booking.rooms;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager');
    IF name IS NULL OR location IS NULL OR capacity IS NULL THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'name, location and capacity are required');
    END IF;
    PERFORM booking.validate_room(name, location, capacity, buffer_before_minutes, buffer_after_minutes);
    BEGIN
        INSERT INTO booking.rooms (name, location, capacity, amenities, buffer_before_minutes, buffer_after_minutes)
        VALUES (btrim(name), btrim(location), capacity, coalesce(amenities, '{}'),
                coalesce(buffer_before_minutes, 0), coalesce(buffer_after_minutes, 0))
        RETURNING * INTO r;
    EXCEPTION WHEN unique_violation THEN
        PERFORM booking.raise_error(409, 'ALREADY_EXISTS', format('a room named "%s" already exists', btrim(name)),
            jsonb_build_object('field', 'name'));
    END;
    RETURN booking.room_json(r);
END
$$;
COMMENT ON FUNCTION api.create_room IS 'POST /rooms (admin, facility_manager); 409 ALREADY_EXISTS when the name is taken';

CREATE FUNCTION api.update_room(id bigint, name text DEFAULT NULL, location text DEFAULT NULL,
                                capacity integer DEFAULT NULL, amenities text[] DEFAULT NULL,
                                buffer_before_minutes integer DEFAULT NULL,
                                buffer_after_minutes integer DEFAULT NULL,
                                active boolean DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r booking.rooms;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager');
    PERFORM booking.find_room(id);
    PERFORM booking.validate_room(name, location, capacity, buffer_before_minutes, buffer_after_minutes);
    BEGIN
        UPDATE booking.rooms x
           SET name = coalesce(btrim(update_room.name), x.name),
               location = coalesce(btrim(update_room.location), x.location),
               capacity = coalesce(update_room.capacity, x.capacity),
               amenities = coalesce(update_room.amenities, x.amenities),
               buffer_before_minutes = coalesce(update_room.buffer_before_minutes, x.buffer_before_minutes),
               buffer_after_minutes = coalesce(update_room.buffer_after_minutes, x.buffer_after_minutes),
               active = coalesce(update_room.active, x.active),
               updated_at = now()
         WHERE x.id = update_room.id
        RETURNING * INTO r;
    EXCEPTION WHEN unique_violation THEN
        PERFORM booking.raise_error(409, 'ALREADY_EXISTS', format('a room named "%s" already exists', btrim(name)),
            jsonb_build_object('field', 'name'));
    END;
    RETURN booking.room_json(r);
END
$$;
COMMENT ON FUNCTION api.update_room IS 'PATCH /rooms/{id} (admin, facility_manager); buffers apply to bookings made from now on';

CREATE FUNCTION api.delete_room(id bigint) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager');
    PERFORM booking.find_room(id);
    UPDATE booking.rooms x SET active = false, updated_at = now() WHERE x.id = delete_room.id;
    RETURN jsonb_build_object('id', id, 'active', false);
END
$$;
COMMENT ON FUNCTION api.delete_room IS 'DELETE /rooms/{id} (admin, facility_manager): deactivates the room; its bookings stay, no new ones are taken';

CREATE FUNCTION api.get_room(id bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_user();
    RETURN booking.room_json(booking.find_room(id));
END
$$;
COMMENT ON FUNCTION api.get_room IS 'GET /rooms/{id} (any user); 404 NOT_FOUND';

CREATE FUNCTION api.list_rooms(min_capacity integer DEFAULT NULL, amenity text DEFAULT NULL,
                               location text DEFAULT NULL, available_from text DEFAULT NULL,
                               available_to text DEFAULT NULL, include_inactive boolean DEFAULT false,
                               lim integer DEFAULT 50, off integer DEFAULT 0) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    w tstzrange;
BEGIN
    PERFORM booking.require_user();
    PERFORM booking.check_page(lim, off);
    IF (available_from IS NULL) <> (available_to IS NULL) THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'available_from and available_to go together',
            jsonb_build_object('field', CASE WHEN available_from IS NULL THEN 'available_from' ELSE 'available_to' END));
    END IF;
    IF available_from IS NOT NULL THEN
        w := booking.parse_window(available_from, available_to);
    END IF;
    RETURN coalesce((
        SELECT jsonb_agg(booking.room_json(x) ORDER BY x.name)
          FROM (SELECT r.* FROM booking.rooms r
                 WHERE (r.active OR (include_inactive AND booking.caller_is('admin', 'facility_manager', 'auditor')))
                   AND (min_capacity IS NULL OR r.capacity >= min_capacity)
                   AND (amenity IS NULL OR r.amenities @> ARRAY[amenity])
                   AND (list_rooms.location IS NULL OR lower(r.location) = lower(list_rooms.location))
                   AND (w IS NULL OR NOT booking.room_busy(r.id, lower(w), upper(w)) && w)
                 ORDER BY r.name LIMIT lim OFFSET off) x), '[]');
END
$$;
COMMENT ON FUNCTION api.list_rooms IS 'GET /rooms (any user): active rooms, filtered by min_capacity, amenity, location, and free in [available_from, available_to)';
