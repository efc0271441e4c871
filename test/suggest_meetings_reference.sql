-- The oracle for meeting suggestions: the search of api.suggest_meetings as
-- released in 1.0 (extension/pg_booking--1.0.sql), unchanged but for taking
-- the checked arguments directly.  It tries every start on the 15-minute
-- grid against every room (room_busy once per pair), which is slow and
-- obviously right; booking.meeting_slots must return the same result.
-- Created only by the tests and the benchmark, never by the extension.
CREATE FUNCTION booking.suggest_meetings_reference(ids bigint[], dur interval, w tstzrange, need integer, lim integer)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    common tstzmultirange;
BEGIN
    common := (SELECT range_intersect_agg(booking.user_free(u, w)) FROM unnest(ids) u);
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
