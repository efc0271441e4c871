-- Meeting-room bookings: the table, the C conflict check, the api.

CREATE TABLE booking.bookings (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room_id    bigint NOT NULL REFERENCES booking.rooms,
    user_id    bigint NOT NULL REFERENCES booking.users,
    title      text NOT NULL,
    starts_at  timestamptz NOT NULL,
    ends_at    timestamptz NOT NULL,
    status     text NOT NULL DEFAULT 'confirmed',
    series_id  uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT bookings_status_check CHECK (status IN ('confirmed', 'cancelled', 'completed')),
    CONSTRAINT bookings_title_length CHECK (length(btrim(title)) BETWEEN 1 AND 200),
    CONSTRAINT bookings_times_order CHECK (starts_at < ends_at),
    -- The conflict check relies on this bound (see extension/conflicts.c).
    CONSTRAINT bookings_max_length CHECK (ends_at - starts_at <= interval '24 hours')
);
-- The conflict check scans this index: a room's confirmed bookings by start.
CREATE INDEX bookings_room_confirmed_idx ON booking.bookings (room_id, starts_at) WHERE status = 'confirmed';
CREATE INDEX bookings_user_idx ON booking.bookings (user_id, starts_at);
CREATE INDEX bookings_series_idx ON booking.bookings (series_id) WHERE series_id IS NOT NULL;
COMMENT ON TABLE booking.bookings IS 'meeting-room bookings, [starts_at, ends_at) half-open; confirmed ones never overlap within a room';

CREATE FUNCTION booking.booking_conflicts(room_id bigint, starts_at timestamptz, ends_at timestamptz,
                                          exclude_id bigint DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'booking_conflicts'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION booking.booking_conflicts IS 'lock the room until commit and list the confirmed bookings (id, times) that [starts_at, ends_at) would clash with, buffers included; NULL when none';

CREATE FUNCTION booking.check_booking_conflict() RETURNS trigger
AS 'MODULE_PATHNAME', 'check_booking_conflict'
LANGUAGE C;
COMMENT ON FUNCTION booking.check_booking_conflict IS 'trigger: refuse a confirmed booking that clashes with another of its room (BOOKING_CONFLICT), or is in an unknown or inactive room';

-- Every write that can place a confirmed booking goes through this trigger,
-- whatever the path (api, psql, a batch job).
CREATE TRIGGER bookings_conflict_check
    BEFORE INSERT OR UPDATE OF room_id, starts_at, ends_at, status ON booking.bookings
    FOR EACH ROW EXECUTE FUNCTION booking.check_booking_conflict();

-- Row-level security: a user sees and changes their own bookings; admins
-- and facility managers all; auditors and service accounts read all.
ALTER TABLE booking.bookings ENABLE ROW LEVEL SECURITY;
CREATE POLICY bookings_own ON booking.bookings TO booking_api
    USING (user_id = booking.current_user_id()) WITH CHECK (user_id = booking.current_user_id());
CREATE POLICY bookings_staff ON booking.bookings TO booking_admin, booking_facility_manager USING (true);
CREATE POLICY bookings_read_all ON booking.bookings FOR SELECT TO booking_auditor, booking_service_account USING (true);
GRANT SELECT, INSERT, UPDATE ON booking.bookings TO booking_api;

-- The busy time of a room in a window, as the intervals in which no new
-- booking may lie: each confirmed booking widened by the room's buffers on
-- both sides (its own and the newcomer's).  Reads every user's bookings,
-- hence SECURITY DEFINER; it reveals times only.
CREATE FUNCTION booking.room_busy(room_id bigint, from_ts timestamptz, to_ts timestamptz)
RETURNS tstzmultirange
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(range_agg(tstzrange(b.starts_at - g.gap, b.ends_at + g.gap)), '{}'::tstzmultirange)
      FROM booking.rooms r
     CROSS JOIN LATERAL (SELECT make_interval(mins => r.buffer_before_minutes + r.buffer_after_minutes) AS gap) g
      JOIN booking.bookings b ON b.room_id = r.id AND b.status = 'confirmed'
                             AND b.starts_at < to_ts + g.gap
                             AND b.starts_at > from_ts - g.gap - interval '24 hours'
                             AND b.ends_at > from_ts - g.gap
     WHERE r.id = room_busy.room_id
$$;
COMMENT ON FUNCTION booking.room_busy IS 'intervals of a room in which no new booking may lie (confirmed bookings widened by buffers)';

CREATE FUNCTION booking.booking_json(b booking.bookings) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object('id', b.id, 'room_id', b.room_id, 'user_id', b.user_id, 'title', b.title,
                              'starts_at', b.starts_at, 'ends_at', b.ends_at, 'status', b.status,
                              'series_id', b.series_id, 'created_at', b.created_at, 'updated_at', b.updated_at)
$$;

-- The times of a booking, checked the same way for create and reschedule:
-- both with zones, end after start, at most 24 h, and (plain users) not in
-- the past.
CREATE FUNCTION booking.validate_booking_times(starts_at timestamptz, ends_at timestamptz) RETURNS void
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF ends_at <= starts_at THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'booking must end after it starts',
            jsonb_build_object('field', 'ends_at', 'starts_at', starts_at, 'ends_at', ends_at));
    END IF;
    IF ends_at - starts_at > interval '24 hours' THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'booking is longer than 24 hours',
            jsonb_build_object('field', 'ends_at', 'max_hours', 24));
    END IF;
    IF starts_at < now() AND NOT booking.caller_is('admin', 'facility_manager') THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('booking starts in the past (%s)', to_json(starts_at) #>> '{}'),
            jsonb_build_object('field', 'starts_at'));
    END IF;
END
$$;

CREATE FUNCTION booking.validate_title(title text) RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF title IS NULL OR length(btrim(title)) NOT BETWEEN 1 AND 200 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'title must have 1 to 200 characters',
            jsonb_build_object('field', 'title'));
    END IF;
END
$$;

-- A room that can take new bookings, or the reason it cannot.
CREATE FUNCTION booking.bookable_room(room_id bigint) RETURNS booking.rooms
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    r booking.rooms := booking.find_room(room_id);
BEGIN
    IF NOT r.active THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('room %s is not active', room_id),
            jsonb_build_object('field', 'room_id', 'room_id', room_id));
    END IF;
    RETURN r;
END
$$;

-- The start instants of a recurrence, in the given time zone so that a
-- weekly 10:00 meeting stays at 10:00 local time across DST changes.
--   {"frequency": "daily"|"weekly", "interval": n, "count": n | "until": "YYYY-MM-DD",
--    "on_conflict": "fail"|"skip", "time_zone": "Europe/Paris"}
CREATE FUNCTION booking.recurrence_starts(first_start timestamptz, recurrence jsonb) RETURNS SETOF timestamptz
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    unknown text;
    freq text := recurrence ->> 'frequency';
    step_days integer;
    every integer;
    n integer;
    until_date date;
    tz text := coalesce(recurrence ->> 'time_zone', current_setting('TimeZone'));
    local_first timestamp;
BEGIN
    IF jsonb_typeof(recurrence) <> 'object' THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'recurrence must be an object',
            jsonb_build_object('field', 'recurrence'));
    END IF;
    SELECT k INTO unknown FROM jsonb_object_keys(recurrence) k
     WHERE k NOT IN ('frequency', 'interval', 'count', 'until', 'on_conflict', 'time_zone') LIMIT 1;
    IF unknown IS NOT NULL THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('recurrence has an unknown field "%s"', unknown),
            jsonb_build_object('field', 'recurrence.' || unknown));
    END IF;
    IF freq IS NULL OR freq NOT IN ('daily', 'weekly') THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('recurrence frequency "%s" is not "daily" or "weekly"', coalesce(freq, '')),
            jsonb_build_object('field', 'recurrence.frequency'));
    END IF;
    step_days := CASE freq WHEN 'daily' THEN 1 ELSE 7 END;
    IF recurrence ? 'interval' AND (jsonb_typeof(recurrence -> 'interval') <> 'number'
                                   OR (recurrence ->> 'interval') !~ '^\d+$'
                                   OR (recurrence ->> 'interval')::numeric NOT BETWEEN 1 AND 366) THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'recurrence interval must be a whole number from 1 to 366',
            jsonb_build_object('field', 'recurrence.interval'));
    END IF;
    every := coalesce((recurrence ->> 'interval')::integer, 1);
    IF (recurrence ? 'count') = (recurrence ? 'until') THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'recurrence needs exactly one of count and until',
            jsonb_build_object('field', 'recurrence'));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = tz) THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('time zone "%s" is not known', tz),
            jsonb_build_object('field', 'recurrence.time_zone'));
    END IF;
    local_first := first_start AT TIME ZONE tz;
    IF recurrence ? 'count' THEN
        IF jsonb_typeof(recurrence -> 'count') <> 'number' OR (recurrence ->> 'count') !~ '^\d+$'
           OR (recurrence ->> 'count')::numeric NOT BETWEEN 1 AND 366 THEN
            PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'recurrence count must be a whole number from 1 to 366',
                jsonb_build_object('field', 'recurrence.count', 'max', 366));
        END IF;
        n := (recurrence ->> 'count')::integer;
    ELSE
        until_date := booking.parse_date(recurrence ->> 'until', 'recurrence.until');
        IF until_date < local_first::date THEN
            PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'recurrence until is before the first occurrence',
                jsonb_build_object('field', 'recurrence.until'));
        END IF;
        n := (until_date - local_first::date) / (step_days * every) + 1;
        IF n > 366 THEN
            PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
                format('recurrence has %s occurrences, more than 366', n),
                jsonb_build_object('field', 'recurrence.until', 'max', 366));
        END IF;
    END IF;
    IF coalesce(recurrence ->> 'on_conflict', 'fail') NOT IN ('fail', 'skip') THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('recurrence on_conflict "%s" is not "fail" or "skip"', recurrence ->> 'on_conflict'),
            jsonb_build_object('field', 'recurrence.on_conflict'));
    END IF;
    RETURN QUERY
        SELECT (local_first + make_interval(days => i * step_days * every)) AT TIME ZONE tz
          FROM generate_series(0, n - 1) i;
END
$$;

GRANT EXECUTE ON FUNCTION booking.booking_conflicts(bigint, timestamptz, timestamptz, bigint),
    booking.booking_json(booking.bookings), booking.validate_booking_times(timestamptz, timestamptz),
    booking.validate_title(text), booking.bookable_room(bigint),
    booking.recurrence_starts(timestamptz, jsonb), booking.room_busy(bigint, timestamptz, timestamptz)
  TO booking_api;

CREATE FUNCTION api.create_booking(room_id bigint, starts_at text, ends_at text, title text,
                                   recurrence jsonb DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    uid bigint := booking.require_user();
    s timestamptz;
    e timestamptz;
    duration interval;
    b booking.bookings;
    occurrence timestamptz;
    i integer := 0;
    clash jsonb;
    clashes jsonb := '[]';
    created jsonb := '[]';
    series uuid;
BEGIN
    PERFORM booking.require_role('user', 'admin', 'facility_manager', 'moderator', 'service_account');
    PERFORM booking.validate_title(title);
    s := booking.parse_instant(starts_at, 'starts_at');
    e := booking.parse_instant(ends_at, 'ends_at');
    PERFORM booking.validate_booking_times(s, e);
    PERFORM booking.bookable_room(room_id);
    PERFORM booking.rate_limit_hit('create_booking');

    IF recurrence IS NULL OR recurrence = 'null'::jsonb THEN
        -- The trigger checks for clashes and raises BOOKING_CONFLICT.
        INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
        VALUES (room_id, uid, btrim(title), s, e) RETURNING * INTO b;
        RETURN booking.booking_json(b);
    END IF;

    -- Recurring: look at every occurrence (the first look locks the room
    -- until commit), book the free ones, and either fail with every clash
    -- listed or report the skipped ones.
    duration := e - s;
    series := gen_random_uuid();
    FOR occurrence IN SELECT * FROM booking.recurrence_starts(s, recurrence) LOOP
        i := i + 1;
        clash := booking.booking_conflicts(room_id, occurrence, occurrence + duration);
        IF clash IS NOT NULL THEN
            clashes := clashes || jsonb_build_object('occurrence', i, 'starts_at', occurrence,
                                                     'ends_at', occurrence + duration, 'conflicts', clash);
        ELSE
            INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at, series_id)
            VALUES (room_id, uid, btrim(title), occurrence, occurrence + duration, series) RETURNING * INTO b;
            created := created || booking.booking_json(b);
        END IF;
    END LOOP;

    IF jsonb_array_length(clashes) > 0
       AND (coalesce(recurrence ->> 'on_conflict', 'fail') = 'fail' OR jsonb_array_length(created) = 0) THEN
        PERFORM booking.raise_error(409, 'BOOKING_CONFLICT',
            format('%s of %s occurrences clash with existing bookings of room %s',
                   jsonb_array_length(clashes), i, room_id),
            jsonb_build_object('room_id', room_id, 'conflicting_occurrences', clashes),
            CASE WHEN coalesce(recurrence ->> 'on_conflict', 'fail') = 'fail'
                 THEN 'Nothing was booked.  Use "on_conflict": "skip" to book the free occurrences.'
                 ELSE 'Nothing was booked: every occurrence clashes.' END);
    END IF;
    RETURN jsonb_build_object('series_id', series, 'bookings', created, 'skipped', clashes);
END
$$;
COMMENT ON FUNCTION api.create_booking IS 'POST /bookings (user+, rate-limited): one booking, or a recurring series (all-or-nothing, or "on_conflict": "skip"); 409 BOOKING_CONFLICT lists every clash, 422 VALIDATION_ERROR';

-- A booking the caller may see, or 404 (row-level security makes someone
-- else's booking indistinguishable from a missing one).
CREATE FUNCTION booking.find_booking(booking_id bigint) RETURNS booking.bookings
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    b booking.bookings;
BEGIN
    SELECT * INTO b FROM booking.bookings WHERE id = booking_id;
    IF b.id IS NULL THEN
        PERFORM booking.raise_error(404, 'NOT_FOUND', format('booking %s not found', coalesce(booking_id::text, 'NULL')),
            jsonb_build_object('booking_id', booking_id));
    END IF;
    RETURN b;
END
$$;
GRANT EXECUTE ON FUNCTION booking.find_booking(bigint) TO booking_api;

-- After an UPDATE through row-level security: a row the caller can read but
-- not change (auditors, service accounts) is forbidden, not silently kept.
CREATE FUNCTION booking.require_changed(changed boolean, what text, id bigint) RETURNS void
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF NOT changed THEN
        PERFORM booking.raise_error(403, 'FORBIDDEN', format('role "%s" may not change %s %s', booking.current_app_role(), what, id),
            jsonb_build_object(what || '_id', id));
    END IF;
END
$$;
GRANT EXECUTE ON FUNCTION booking.require_changed(boolean, text, bigint) TO booking_api;

CREATE FUNCTION api.get_booking(id bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_user();
    RETURN booking.booking_json(booking.find_booking(id));
END
$$;
COMMENT ON FUNCTION api.get_booking IS 'GET /bookings/{id} (owner; admin, facility_manager, auditor); 404 NOT_FOUND';

CREATE FUNCTION api.list_bookings("from" text DEFAULT NULL, "to" text DEFAULT NULL, status text DEFAULT NULL,
                                  room_id bigint DEFAULT NULL, lim integer DEFAULT 50, off integer DEFAULT 0)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    f timestamptz;
    t timestamptz;
BEGIN
    PERFORM booking.require_user();
    PERFORM booking.check_page(lim, off);
    IF "from" IS NOT NULL THEN f := booking.parse_instant("from", 'from'); END IF;
    IF "to" IS NOT NULL THEN t := booking.parse_instant("to", 'to'); END IF;
    IF status IS NOT NULL AND status NOT IN ('confirmed', 'cancelled', 'completed') THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('status "%s" is not a booking status', status),
            jsonb_build_object('field', 'status'));
    END IF;
    RETURN coalesce((
        SELECT jsonb_agg(booking.booking_json(x) ORDER BY x.starts_at, x.id)
          FROM (SELECT b.* FROM booking.bookings b
                 WHERE (f IS NULL OR b.ends_at > f) AND (t IS NULL OR b.starts_at < t)
                   AND (list_bookings.status IS NULL OR b.status = list_bookings.status)
                   AND (list_bookings.room_id IS NULL OR b.room_id = list_bookings.room_id)
                 ORDER BY b.starts_at, b.id LIMIT lim OFFSET off) x), '[]');
END
$$;
COMMENT ON FUNCTION api.list_bookings IS 'GET /bookings (own; admin, facility_manager, auditor all): filtered by overlap with [from, to), status, room';

CREATE FUNCTION api.update_booking(id bigint, starts_at text DEFAULT NULL, ends_at text DEFAULT NULL,
                                   title text DEFAULT NULL, room_id bigint DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    b booking.bookings;
    s timestamptz;
    e timestamptz;
BEGIN
    PERFORM booking.require_user();
    b := booking.find_booking(id);
    IF b.status <> 'confirmed' THEN
        PERFORM booking.raise_error(409, 'INVALID_STATE', format('booking %s is %s and cannot be changed', id, b.status),
            jsonb_build_object('booking_id', id, 'status', b.status));
    END IF;
    IF title IS NOT NULL THEN
        PERFORM booking.validate_title(title);
    END IF;
    s := CASE WHEN starts_at IS NULL THEN b.starts_at ELSE booking.parse_instant(starts_at, 'starts_at') END;
    e := CASE WHEN ends_at IS NULL THEN b.ends_at ELSE booking.parse_instant(ends_at, 'ends_at') END;
    IF s <> b.starts_at OR e <> b.ends_at OR coalesce(room_id, b.room_id) <> b.room_id THEN
        PERFORM booking.validate_booking_times(s, e);
        PERFORM booking.bookable_room(coalesce(room_id, b.room_id));
    END IF;
    UPDATE booking.bookings x
       SET starts_at = s, ends_at = e, title = coalesce(btrim(update_booking.title), x.title),
           room_id = coalesce(update_booking.room_id, x.room_id), updated_at = now()
     WHERE x.id = update_booking.id
    RETURNING * INTO b;
    PERFORM booking.require_changed(FOUND, 'booking', id);
    RETURN booking.booking_json(b);
END
$$;
COMMENT ON FUNCTION api.update_booking IS 'PATCH /bookings/{id} (owner, admin, facility_manager): reschedule, move or retitle a confirmed booking; 404, 409 BOOKING_CONFLICT';

CREATE FUNCTION api.cancel_booking(id bigint) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    b booking.bookings;
BEGIN
    PERFORM booking.require_user();
    b := booking.find_booking(id);
    IF b.status <> 'confirmed' THEN
        PERFORM booking.raise_error(409, 'INVALID_STATE', format('booking %s is already %s', id, b.status),
            jsonb_build_object('booking_id', id, 'status', b.status));
    END IF;
    UPDATE booking.bookings x SET status = 'cancelled', updated_at = now()
     WHERE x.id = cancel_booking.id RETURNING * INTO b;
    PERFORM booking.require_changed(FOUND, 'booking', id);
    RETURN booking.booking_json(b);
END
$$;
COMMENT ON FUNCTION api.cancel_booking IS 'DELETE /bookings/{id} (owner, admin, facility_manager): status becomes cancelled; 404, 409 when not confirmed';

CREATE FUNCTION api.room_availability(room_id bigint, "from" text, "to" text) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    w tstzrange;
BEGIN
    PERFORM booking.require_user();
    PERFORM booking.find_room(room_id);
    w := booking.parse_window("from", "to");
    RETURN coalesce((
        SELECT jsonb_agg(jsonb_build_object('starts_at', lower(f), 'ends_at', upper(f)) ORDER BY lower(f))
          FROM unnest(tstzmultirange(w) - booking.room_busy(room_id, lower(w), upper(w))) f), '[]');
END
$$;
COMMENT ON FUNCTION api.room_availability IS 'GET /rooms/{id}/availability (any user): the free intervals of [from, to) in which a new booking fits (buffers applied); 422 for a bad window';

-- Reads every user's bookings, hence SECURITY DEFINER; who may see titles is
-- decided here from the caller's claims, not by an argument.
CREATE FUNCTION booking.room_schedule(room_id bigint, from_ts timestamptz, to_ts timestamptz) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'id', b.id, 'starts_at', b.starts_at, 'ends_at', b.ends_at, 'status', b.status,
               'mine', b.user_id = booking.current_user_id(),
               'title', CASE WHEN booking.caller_is('admin', 'facility_manager', 'auditor')
                               OR b.user_id = booking.current_user_id() THEN b.title END)
             ORDER BY b.starts_at), '[]')
      FROM booking.bookings b
     WHERE b.room_id = room_schedule.room_id AND b.status IN ('confirmed', 'completed')
       AND b.starts_at < to_ts AND b.ends_at > from_ts
$$;
COMMENT ON FUNCTION booking.room_schedule IS 'a room''s calendar; titles only for the caller''s own bookings unless staff';
GRANT EXECUTE ON FUNCTION booking.room_schedule(bigint, timestamptz, timestamptz) TO booking_api;

CREATE FUNCTION api.room_schedule(room_id bigint, "from" text, "to" text) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    w tstzrange;
BEGIN
    PERFORM booking.find_room(room_id);
    w := booking.parse_window("from", "to");
    PERFORM booking.require_user();
    RETURN booking.room_schedule(room_id, lower(w), upper(w));
END
$$;
COMMENT ON FUNCTION api.room_schedule IS 'GET /rooms/{id}/schedule (any user): bookings of the room in [from, to); titles of others'' bookings hidden from plain users';
