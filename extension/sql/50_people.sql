-- Availability of people (W2Meet): users publish when they are free; the
-- engine intersects attendees' free time and suggests meeting slots with a
-- free room of enough capacity, best first.

CREATE TABLE booking.user_availability (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES booking.users ON DELETE CASCADE,
    during  tstzrange NOT NULL,
    CONSTRAINT user_availability_bounded CHECK (NOT isempty(during) AND lower_inc(during) AND NOT upper_inc(during)
                                                AND NOT lower_inf(during) AND NOT upper_inf(during))
);
CREATE INDEX user_availability_user_idx ON booking.user_availability (user_id);
COMMENT ON TABLE booking.user_availability IS 'intervals in which a user is free to meet, as they published them';

-- Anyone signed in may see when others are free; only the owner writes.
ALTER TABLE booking.user_availability ENABLE ROW LEVEL SECURITY;
CREATE POLICY user_availability_read ON booking.user_availability FOR SELECT TO booking_api USING (true);
CREATE POLICY user_availability_own ON booking.user_availability TO booking_api
    USING (user_id = booking.current_user_id()) WITH CHECK (user_id = booking.current_user_id());
GRANT SELECT, INSERT, DELETE ON booking.user_availability TO booking_api;

-- When a user is free in a window: what they published, minus the meetings
-- they booked themselves.  Reads everyone's bookings, hence SECURITY
-- DEFINER; it reveals free time only, never what the bookings are.
CREATE FUNCTION booking.user_free(user_id bigint, win tstzrange) RETURNS tstzmultirange
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (coalesce((SELECT range_agg(a.during * win) FROM booking.user_availability a
                       WHERE a.user_id = user_free.user_id AND a.during && win), '{}'::tstzmultirange))
         - (coalesce((SELECT range_agg(tstzrange(b.starts_at, b.ends_at)) FROM booking.bookings b
                       WHERE b.user_id = user_free.user_id AND b.status = 'confirmed'
                         AND b.starts_at < upper(win) AND b.ends_at > lower(win)), '{}'::tstzmultirange))
$$;

CREATE FUNCTION booking.intervals_json(m tstzmultirange) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('starts_at', lower(r), 'ends_at', upper(r)) ORDER BY lower(r)), '[]')
      FROM unnest(m) r
$$;

-- A list of user ids that all exist, without repeats; 1 to 50 of them.
CREATE FUNCTION booking.parse_attendees(ids bigint[], field text) RETURNS bigint[]
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    missing bigint;
    uniq bigint[] := ARRAY(SELECT DISTINCT x FROM unnest(ids) x WHERE x IS NOT NULL ORDER BY 1);
BEGIN
    IF coalesce(cardinality(uniq), 0) NOT BETWEEN 1 AND 50 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('%s must name 1 to 50 users', field),
            jsonb_build_object('field', field));
    END IF;
    SELECT x INTO missing FROM unnest(uniq) x
     WHERE NOT EXISTS (SELECT 1 FROM booking.users u WHERE u.id = x AND u.active) LIMIT 1;
    IF missing IS NOT NULL THEN
        PERFORM booking.raise_error(404, 'NOT_FOUND', format('user %s not found', missing),
            jsonb_build_object('field', field, 'user_id', missing));
    END IF;
    RETURN uniq;
END
$$;

GRANT EXECUTE ON FUNCTION booking.user_free(bigint, tstzrange), booking.intervals_json(tstzmultirange),
    booking.parse_attendees(bigint[], text) TO booking_api;

CREATE FUNCTION api.set_my_availability(intervals jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    uid bigint := booking.require_user();
    item jsonb;
    s timestamptz;
    e timestamptz;
    n integer := 0;
BEGIN
    IF jsonb_typeof(intervals) IS DISTINCT FROM 'array' OR jsonb_array_length(intervals) > 200 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'availability must be an array of at most 200 intervals',
            jsonb_build_object('field', 'intervals'));
    END IF;
    DELETE FROM booking.user_availability WHERE user_id = uid;
    FOR item IN SELECT * FROM jsonb_array_elements(intervals) LOOP
        n := n + 1;
        IF jsonb_typeof(item) <> 'object' THEN
            PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('interval %s is not an object', n),
                jsonb_build_object('field', format('intervals[%s]', n - 1)));
        END IF;
        s := booking.parse_instant(item ->> 'starts_at', format('intervals[%s].starts_at', n - 1));
        e := booking.parse_instant(item ->> 'ends_at', format('intervals[%s].ends_at', n - 1));
        IF e <= s THEN
            PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('interval %s must end after it starts', n),
                jsonb_build_object('field', format('intervals[%s].ends_at', n - 1)));
        END IF;
        IF e - s > interval '31 days' THEN
            PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('interval %s is longer than 31 days', n),
                jsonb_build_object('field', format('intervals[%s].ends_at', n - 1)));
        END IF;
        INSERT INTO booking.user_availability (user_id, during) VALUES (uid, tstzrange(s, e));
    END LOOP;
    RETURN api.user_availability(uid);
END
$$;
COMMENT ON FUNCTION api.set_my_availability IS 'PUT /users/me/availability (self): replace the caller''s free intervals with [{starts_at, ends_at}, ...] (at most 200); overlapping ones are merged';

CREATE FUNCTION api.user_availability(user_id bigint, "from" text DEFAULT NULL, "to" text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    w tstzrange := '(,)';
BEGIN
    PERFORM booking.require_user();
    PERFORM booking.parse_attendees(ARRAY[user_id], 'user_id');
    IF "from" IS NOT NULL OR "to" IS NOT NULL THEN
        w := booking.parse_window("from", "to", 366);
    END IF;
    RETURN booking.intervals_json((SELECT coalesce(range_agg(a.during * w), '{}') FROM booking.user_availability a
                                    WHERE a.user_id = user_availability.user_id AND a.during && w));
END
$$;
COMMENT ON FUNCTION api.user_availability IS 'GET /users/{id}/availability (any user): the user''s published free intervals, merged, optionally within [from, to)';

CREATE FUNCTION api.common_availability(users bigint[], "from" text, "to" text) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    w tstzrange;
    ids bigint[];
BEGIN
    PERFORM booking.require_user();
    ids := booking.parse_attendees(users, 'users');
    w := booking.parse_window("from", "to", 62);
    RETURN booking.intervals_json((SELECT range_intersect_agg(booking.user_free(u, w)) FROM unnest(ids) u));
END
$$;
COMMENT ON FUNCTION api.common_availability IS 'GET /availability/common?users=1,2,3&from&to (any user): the intervals of [from, to) in which every listed user is free (published availability minus their own bookings)';

CREATE FUNCTION api.suggest_meetings(attendees bigint[], duration_minutes integer, "from" text, "to" text,
                                     min_capacity integer DEFAULT NULL, lim integer DEFAULT 5) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    w tstzrange;
    ids bigint[];
    common tstzmultirange;
    need integer;
    dur interval;
BEGIN
    PERFORM booking.require_user();
    ids := booking.parse_attendees(attendees, 'attendees');
    w := booking.parse_window("from", "to", 14);
    IF duration_minutes IS NULL OR duration_minutes NOT BETWEEN 15 AND 1440 OR duration_minutes % 15 <> 0 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'duration_minutes must be a multiple of 15 from 15 to 1440',
            jsonb_build_object('field', 'duration_minutes'));
    END IF;
    IF lim IS NULL OR lim NOT BETWEEN 1 AND 50 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('limit %s is out of range', coalesce(lim::text, 'NULL')),
            jsonb_build_object('field', 'limit', 'min', 1, 'max', 50));
    END IF;
    need := coalesce(min_capacity, cardinality(ids));
    IF need < 1 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('min_capacity %s is not positive', need),
            jsonb_build_object('field', 'min_capacity'));
    END IF;
    dur := make_interval(mins => duration_minutes);
    common := (SELECT range_intersect_agg(booking.user_free(u, w)) FROM unnest(ids) u);

    -- Candidate starts on a 15-minute grid inside the common free time; for
    -- each, the best room that is free for the whole meeting (the smallest
    -- that fits, so big rooms stay free for big meetings).  Best first:
    -- earliest, then snuggest room.
    RETURN coalesce((
        SELECT jsonb_agg(jsonb_build_object('starts_at', c.s, 'ends_at', c.s + dur, 'room_id', c.room_id,
                                            'room_name', c.name, 'capacity', c.capacity)
                         ORDER BY c.s, c.capacity, c.name)
          FROM (SELECT DISTINCT ON (g.s) g.s, r.id AS room_id, r.name, r.capacity
                  FROM unnest(common) f
                 CROSS JOIN LATERAL generate_series(
                        date_bin('15 minutes', lower(f), timestamptz '2000-01-01 00:00+00')
                          + CASE WHEN date_bin('15 minutes', lower(f), timestamptz '2000-01-01 00:00+00') < lower(f)
                                 THEN interval '15 minutes' ELSE interval '0' END,
                        upper(f) - dur, interval '15 minutes') g(s)
                  JOIN (SELECT r.*, booking.room_busy(r.id, lower(w), upper(w)) AS busy
                          FROM booking.rooms r WHERE r.active AND r.capacity >= need) r
                    ON NOT r.busy && tstzrange(g.s, g.s + dur)
                 WHERE g.s >= now()
                 ORDER BY g.s, r.capacity, r.name
                 LIMIT lim) c), '[]');
END
$$;
COMMENT ON FUNCTION api.suggest_meetings IS 'POST /meetings/suggest (any user): up to lim slots {starts_at, ends_at, room_id} in [from, to) when every attendee is free and a room of min_capacity (default: number of attendees) is free, earliest and snuggest room first';
