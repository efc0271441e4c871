-- Hotel occupancy per night and room type, for dashboards and
-- GET /admin/analytics/occupancy.
--
-- booking.inventory (one row per hotel, room type and night, with total and
-- available kept exact by the C take/give-back in extension/inventory.c)
-- already is the summary: a night's held rooms are total - available, read
-- in O(nights x room types).

CREATE VIEW booking.analytics_occupancy AS
    SELECT i.hotel_id, h.name AS hotel_name, i.room_type, i.night,
           i.total, i.total - i.available AS held,
           CASE WHEN i.total > 0 THEN round(100.0 * (i.total - i.available) / i.total, 1) END AS occupancy_percent
      FROM booking.inventory i JOIN booking.hotels h ON h.id = i.hotel_id;
COMMENT ON VIEW booking.analytics_occupancy IS 'held rooms (total - available) per hotel, room type and night';
GRANT SELECT ON booking.analytics_occupancy
  TO booking_admin, booking_facility_manager, booking_auditor, booking_grafana;

CREATE FUNCTION api.analytics_occupancy(hotel_id bigint, "from" text, "to" text) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    f date;
    t date;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager', 'auditor');
    f := booking.parse_date("from", 'from');
    t := booking.parse_date("to", 'to');
    IF t < f OR t - f > 366 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'window must run forward and last at most 366 days',
            jsonb_build_object('field', 'to', 'max_days', 366));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM booking.hotels h WHERE h.id = analytics_occupancy.hotel_id) THEN
        PERFORM booking.raise_error(404, 'NOT_FOUND', format('hotel %s not found', hotel_id),
            jsonb_build_object('hotel_id', hotel_id));
    END IF;
    RETURN coalesce((SELECT jsonb_agg(jsonb_build_object('night', o.night, 'room_type', o.room_type,
                                                         'total', o.total, 'held', o.held,
                                                         'occupancy_percent', o.occupancy_percent)
                                      ORDER BY o.night, o.room_type)
                       FROM booking.analytics_occupancy o
                      WHERE o.hotel_id = analytics_occupancy.hotel_id AND o.night BETWEEN f AND t), '[]');
END
$$;
COMMENT ON FUNCTION api.analytics_occupancy IS 'GET /admin/analytics/occupancy?hotel_id&from&to (admin, facility_manager, auditor): held rooms per night and room type, both dates included';
