-- Analytics: summary tables kept exact by C triggers (extension/analytics.c),
-- the views dashboards read, a check against a full recount, the api.

CREATE TABLE booking.room_booking_counts (
    room_id   bigint PRIMARY KEY REFERENCES booking.rooms ON DELETE CASCADE,
    confirmed bigint NOT NULL DEFAULT 0,
    cancelled bigint NOT NULL DEFAULT 0,
    completed bigint NOT NULL DEFAULT 0,
    CONSTRAINT room_booking_counts_not_negative CHECK (confirmed >= 0 AND cancelled >= 0 AND completed >= 0)
);
COMMENT ON TABLE booking.room_booking_counts IS 'bookings per room and status, kept exact by the count_bookings triggers; compare with booking.analytics_check()';

CREATE TABLE booking.room_rating_counts (
    room_id      bigint PRIMARY KEY REFERENCES booking.rooms ON DELETE CASCADE,
    review_count bigint NOT NULL DEFAULT 0,
    rating_sum   bigint NOT NULL DEFAULT 0,
    CONSTRAINT room_rating_counts_not_negative CHECK (review_count >= 0 AND rating_sum >= 0)
);
COMMENT ON TABLE booking.room_rating_counts IS 'number and sum of the ratings of each room''s reviews that are not hidden, kept exact by the count_reviews triggers';

-- Nobody but the owner writes the counters; the views below read them.
REVOKE ALL ON booking.room_booking_counts, booking.room_rating_counts FROM PUBLIC;

CREATE FUNCTION booking.count_bookings() RETURNS trigger
AS 'MODULE_PATHNAME', 'count_bookings' LANGUAGE C;
COMMENT ON FUNCTION booking.count_bookings IS 'statement trigger: add the net change of a statement on booking.bookings to booking.room_booking_counts';
CREATE FUNCTION booking.count_reviews() RETURNS trigger
AS 'MODULE_PATHNAME', 'count_reviews' LANGUAGE C;
COMMENT ON FUNCTION booking.count_reviews IS 'statement trigger: add the net change of a statement on booking.reviews to booking.room_rating_counts';
CREATE FUNCTION booking.count_rooms() RETURNS trigger
AS 'MODULE_PATHNAME', 'count_rooms' LANGUAGE C;
COMMENT ON FUNCTION booking.count_rooms IS 'trigger: a new room''s counters start at zero';

-- Statement triggers with transition tables (named old_rows and new_rows,
-- as analytics.c expects): one counter update per touched room and
-- statement, in room order.  One event each: PostgreSQL allows transition
-- tables only on single-event triggers.
CREATE TRIGGER bookings_count_insert AFTER INSERT ON booking.bookings
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION booking.count_bookings();
CREATE TRIGGER bookings_count_update AFTER UPDATE ON booking.bookings
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION booking.count_bookings();
CREATE TRIGGER bookings_count_delete AFTER DELETE ON booking.bookings
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION booking.count_bookings();
CREATE TRIGGER bookings_count_truncate AFTER TRUNCATE ON booking.bookings
    FOR EACH STATEMENT EXECUTE FUNCTION booking.count_bookings();
CREATE TRIGGER reviews_count_insert AFTER INSERT ON booking.reviews
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION booking.count_reviews();
CREATE TRIGGER reviews_count_update AFTER UPDATE ON booking.reviews
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION booking.count_reviews();
CREATE TRIGGER reviews_count_delete AFTER DELETE ON booking.reviews
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION booking.count_reviews();
CREATE TRIGGER reviews_count_truncate AFTER TRUNCATE ON booking.reviews
    FOR EACH STATEMENT EXECUTE FUNCTION booking.count_reviews();
CREATE TRIGGER rooms_count AFTER INSERT ON booking.rooms
    FOR EACH ROW EXECUTE FUNCTION booking.count_rooms();

-- Bookings per day are read for a window of days: a filter on the view's
-- day column is pushed below its GROUP BY onto this index.
CREATE INDEX bookings_start_day_idx ON booking.bookings (((starts_at AT TIME ZONE 'UTC')::date));

-- The views.  They run with their owner's rights, so a reader needs only
-- SELECT on the view (Grafana's role has nothing else); each is granted to
-- the roles API.md lists for the matching route.
CREATE VIEW booking.analytics_bookings_summary AS
    SELECT coalesce(sum(confirmed + cancelled + completed), 0)::bigint AS total,
           coalesce(sum(confirmed), 0)::bigint AS confirmed,
           coalesce(sum(cancelled), 0)::bigint AS cancelled,
           coalesce(sum(completed), 0)::bigint AS completed
      FROM booking.room_booking_counts;
COMMENT ON VIEW booking.analytics_bookings_summary IS 'bookings by status, from the counters: O(rooms)';

CREATE VIEW booking.analytics_bookings_by_room AS
    SELECT r.id AS room_id, r.name AS room_name,
           (c.confirmed + c.cancelled + c.completed) AS total, c.confirmed, c.cancelled, c.completed
      FROM booking.rooms r JOIN booking.room_booking_counts c ON c.room_id = r.id;
COMMENT ON VIEW booking.analytics_bookings_by_room IS 'bookings per room and status, from the counters: O(rooms)';

-- Days in UTC, by the day a booking starts.
CREATE VIEW booking.analytics_bookings_per_day AS
    SELECT (b.starts_at AT TIME ZONE 'UTC')::date AS day,
           count(*) AS total,
           count(*) FILTER (WHERE b.status = 'confirmed') AS confirmed,
           count(*) FILTER (WHERE b.status = 'cancelled') AS cancelled,
           count(*) FILTER (WHERE b.status = 'completed') AS completed
      FROM booking.bookings b
     GROUP BY 1;
COMMENT ON VIEW booking.analytics_bookings_per_day IS 'bookings by the UTC day they start; filter on day to read a window';

CREATE VIEW booking.analytics_rating_by_room AS
    SELECT r.id AS room_id, r.name AS room_name,
           CASE WHEN c.review_count > 0 THEN round(c.rating_sum::numeric / c.review_count, 2) END AS average_rating,
           c.review_count
      FROM booking.rooms r JOIN booking.room_rating_counts c ON c.room_id = r.id;
COMMENT ON VIEW booking.analytics_rating_by_room IS 'average rating and number of reviews (hidden ones left out) per room, from the counters: O(rooms)';

-- booking_grafana: the dashboards' read-only role.  It is a member of no
-- other role and may read the analytics views only.  It cannot log in until
-- the deployment gives it a password (docker/ does).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'booking_grafana') THEN
        CREATE ROLE booking_grafana NOLOGIN;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA booking TO booking_grafana;
GRANT SELECT ON booking.analytics_bookings_summary, booking.analytics_bookings_by_room,
    booking.analytics_bookings_per_day
  TO booking_admin, booking_facility_manager, booking_auditor, booking_service_account, booking_grafana;
GRANT SELECT ON booking.analytics_rating_by_room
  TO booking_admin, booking_moderator, booking_auditor, booking_grafana;

-- Every counter against a full recount: one row per difference, none when
-- the counters are exact.  Tests call it after every scenario and after
-- concurrent load.
CREATE FUNCTION booking.analytics_check()
RETURNS TABLE (summary text, room_id bigint, counter text, kept bigint, recounted bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH kept AS (
        SELECT c.room_id, k.counter, k.n
          FROM booking.room_booking_counts c
         CROSS JOIN LATERAL (VALUES ('confirmed', c.confirmed), ('cancelled', c.cancelled),
                                    ('completed', c.completed)) k(counter, n)
    ), recount AS (
        SELECT r.id AS room_id, s.counter, count(b.id) AS n
          FROM booking.rooms r
         CROSS JOIN (VALUES ('confirmed'), ('cancelled'), ('completed')) s(counter)
          LEFT JOIN booking.bookings b ON b.room_id = r.id AND b.status = s.counter
         GROUP BY 1, 2
    ), kept_ratings AS (
        SELECT c.room_id, k.counter, k.n
          FROM booking.room_rating_counts c
         CROSS JOIN LATERAL (VALUES ('review_count', c.review_count), ('rating_sum', c.rating_sum)) k(counter, n)
    ), recount_ratings AS (
        SELECT r.id AS room_id, k.counter, k.n
          FROM booking.rooms r
          LEFT JOIN LATERAL (SELECT count(*) AS review_count, coalesce(sum(v.rating), 0) AS rating_sum
                               FROM booking.reviews v WHERE v.room_id = r.id AND v.status <> 'hidden') a ON true
         CROSS JOIN LATERAL (VALUES ('review_count', a.review_count), ('rating_sum', a.rating_sum)) k(counter, n)
    )
    SELECT 'room_booking_counts', coalesce(k.room_id, r.room_id), coalesce(k.counter, r.counter), k.n, r.n
      FROM kept k FULL JOIN recount r ON r.room_id = k.room_id AND r.counter = k.counter
     WHERE k.n IS DISTINCT FROM r.n
    UNION ALL
    SELECT 'room_rating_counts', coalesce(k.room_id, r.room_id), coalesce(k.counter, r.counter), k.n, r.n
      FROM kept_ratings k FULL JOIN recount_ratings r ON r.room_id = k.room_id AND r.counter = k.counter
     WHERE k.n IS DISTINCT FROM r.n
     ORDER BY 1, 2, 3
$$;
COMMENT ON FUNCTION booking.analytics_check IS 'differences between the summary tables and a full recount (kept NULL: counter row missing); empty when exact';

-- Rebuild the counters from the tables, for a repair after a bulk load with
-- triggers disabled.  Blocks writers of the counted tables while it runs.
CREATE FUNCTION booking.analytics_rebuild() RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    LOCK TABLE booking.bookings, booking.reviews IN SHARE MODE;
    DELETE FROM booking.room_booking_counts;
    INSERT INTO booking.room_booking_counts (room_id, confirmed, cancelled, completed)
    SELECT r.id, count(b.id) FILTER (WHERE b.status = 'confirmed'), count(b.id) FILTER (WHERE b.status = 'cancelled'),
           count(b.id) FILTER (WHERE b.status = 'completed')
      FROM booking.rooms r LEFT JOIN booking.bookings b ON b.room_id = r.id GROUP BY r.id;
    DELETE FROM booking.room_rating_counts;
    INSERT INTO booking.room_rating_counts (room_id, review_count, rating_sum)
    SELECT r.id, count(v.id), coalesce(sum(v.rating), 0)
      FROM booking.rooms r LEFT JOIN booking.reviews v ON v.room_id = r.id AND v.status <> 'hidden' GROUP BY r.id;
END
$$;
COMMENT ON FUNCTION booking.analytics_rebuild IS 'recompute the summary tables from bookings and reviews (superuser; blocks writers meanwhile)';

-- The api.  Each route checks its roles (API.md); a plain user gets 403.
CREATE FUNCTION api.analytics_bookings_summary() RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager', 'auditor', 'service_account');
    RETURN (SELECT to_jsonb(s) FROM booking.analytics_bookings_summary s);
END
$$;
COMMENT ON FUNCTION api.analytics_bookings_summary IS 'GET /admin/analytics/bookings/summary (admin, facility_manager, auditor, service_account): {total, confirmed, cancelled, completed}';

CREATE FUNCTION api.analytics_bookings_by_room(lim integer DEFAULT 500, off integer DEFAULT 0) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager', 'auditor', 'service_account');
    PERFORM booking.check_page(lim, off);
    RETURN coalesce((SELECT jsonb_agg(to_jsonb(x) ORDER BY x.room_id)
                       FROM (SELECT * FROM booking.analytics_bookings_by_room
                              ORDER BY room_id LIMIT lim OFFSET off) x), '[]');
END
$$;
COMMENT ON FUNCTION api.analytics_bookings_by_room IS 'GET /admin/analytics/bookings/by-room (admin, facility_manager, auditor, service_account): [{room_id, room_name, total, confirmed, cancelled, completed}]';

CREATE FUNCTION api.analytics_bookings_per_day("from" text, "to" text) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    f date;
    t date;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager', 'auditor', 'service_account');
    f := booking.parse_date("from", 'from');
    t := booking.parse_date("to", 'to');
    IF t < f THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', '"to" is before "from"', jsonb_build_object('field', 'to'));
    END IF;
    IF t - f > 366 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('window of %s days is longer than 366 days', t - f + 1),
            jsonb_build_object('field', 'to', 'max_days', 366));
    END IF;
    -- Every day of [from, to], zeros included, so charts have no gaps.
    RETURN (SELECT jsonb_agg(jsonb_build_object('day', d.day, 'total', coalesce(v.total, 0),
                                                'confirmed', coalesce(v.confirmed, 0),
                                                'cancelled', coalesce(v.cancelled, 0),
                                                'completed', coalesce(v.completed, 0)) ORDER BY d.day)
              FROM (SELECT g::date AS day FROM generate_series(f, t, interval '1 day') g) d
              LEFT JOIN (SELECT * FROM booking.analytics_bookings_per_day p WHERE p.day BETWEEN f AND t) v
                     ON v.day = d.day);
END
$$;
COMMENT ON FUNCTION api.analytics_bookings_per_day IS 'GET /admin/analytics/bookings/per-day?from&to (admin, facility_manager, auditor, service_account): bookings by UTC start day, both dates included, at most 366 days';

CREATE FUNCTION api.analytics_average_rating_by_room() RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_role('admin', 'moderator', 'auditor');
    RETURN coalesce((SELECT jsonb_agg(to_jsonb(x) ORDER BY x.room_id)
                       FROM booking.analytics_rating_by_room x), '[]');
END
$$;
COMMENT ON FUNCTION api.analytics_average_rating_by_room IS 'GET /admin/analytics/reviews/average-rating-by-room (admin, moderator, auditor): [{room_id, room_name, average_rating, review_count}], hidden reviews left out';

CREATE FUNCTION api.analytics_rate_limits() RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_role('admin', 'auditor');
    RETURN coalesce((SELECT jsonb_agg(jsonb_build_object(
                         'endpoint', d.endpoint, 'max_requests', d.max_requests,
                         'window_seconds', extract(epoch FROM d.window_length)::float8, 'key_kind', d.key_kind,
                         'denials', d.denials, 'admitted', d.admitted, 'keys_tracked', d.keys_tracked,
                         'forced_evictions', d.forced_evictions, 'since', d.since) ORDER BY d.endpoint)
                       FROM booking.rate_limit_denials d), '[]');
END
$$;
COMMENT ON FUNCTION api.analytics_rate_limits IS 'GET /admin/analytics/rate-limits (admin, auditor): per endpoint its rule, denials and admissions since the server started';
