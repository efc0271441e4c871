-- Events: every state change of a booking, a reservation or a review is appended here, in
-- the writer's transaction, and announced with NOTIFY on the channel
-- pg_booking_events (delivered at commit, dropped on rollback, like the row).
-- The adapter LISTENs and streams them (GET /events); a client that missed
-- some reads them back with api.list_events(after_id).
--
-- Payloads carry ids, statuses and times only: no titles, comments, guest
-- names or anything else a log line must not show.

CREATE TABLE booking.events (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind      text NOT NULL,
    entity    text NOT NULL,
    entity_id text NOT NULL,
    user_id   bigint,
    payload   jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX events_entity_idx ON booking.events (entity, entity_id);
COMMENT ON TABLE booking.events IS 'append-only log of state changes (kind e.g. booking.created, review.flagged); user_id is who made the change, NULL for psql or a job';
COMMENT ON COLUMN booking.events.user_id IS 'the caller (sub claim) that made the change; NULL for a superuser session or a background job';

ALTER TABLE booking.events ENABLE ROW LEVEL SECURITY;
CREATE POLICY events_read ON booking.events FOR SELECT TO booking_admin, booking_service_account USING (true);
GRANT SELECT ON booking.events TO booking_admin, booking_service_account;

-- Append events (kind, entity, entity_id, payload) with the caller as
-- user_id, and announce each.  SECURITY DEFINER: the writer of a booking may
-- not write the log directly.  The statement triggers pass all of a
-- statement's events at once (one INSERT, one pass of NOTIFYs), so a batch
-- such as the nightly checkout does not pay a function call per row.
CREATE FUNCTION booking.emit_events(batch jsonb) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    WITH ins AS (
        INSERT INTO booking.events (kind, entity, entity_id, user_id, payload)
        SELECT e ->> 'kind', e ->> 'entity', e ->> 'entity_id', booking.current_user_id(), coalesce(e -> 'payload', '{}')
          FROM jsonb_array_elements(batch) WITH ORDINALITY AS x(e, i)
         ORDER BY i
        RETURNING id, kind, entity, entity_id)
    SELECT count(pg_notify('pg_booking_events',
                           jsonb_build_object('id', id, 'kind', kind, 'entity', entity, 'entity_id', entity_id)::text))
      INTO n
      FROM (SELECT * FROM ins ORDER BY id) o;
    RETURN n;
END
$$;

-- What an event says of a booking or a reservation: ids, statuses, times;
-- never a title or a guest name.
CREATE FUNCTION booking.booking_event_payload(b booking.bookings) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object('room_id', b.room_id, 'owner_id', b.user_id, 'status', b.status,
                              'starts_at', b.starts_at, 'ends_at', b.ends_at, 'series_id', b.series_id)
$$;
CREATE FUNCTION booking.reservation_event_payload(r booking.reservations) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object('hotel_id', r.hotel_id, 'room_type', r.room_type, 'owner_id', r.user_id,
                              'status', r.status, 'arrival_date', r.arrival_date, 'stay_length', r.stay_length)
$$;

-- Bookings: created, rescheduled (room or times), and every status change.
-- Statement triggers over the transition tables; a retitle is no event.
CREATE FUNCTION booking.booking_events() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM booking.emit_events(coalesce(jsonb_agg(jsonb_build_object(
                    'kind', 'booking.created', 'entity', 'booking', 'entity_id', n.id::text,
                    'payload', booking.booking_event_payload(n))), '[]'))
           FROM new_rows n;
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM booking.emit_events(coalesce(jsonb_agg(jsonb_build_object(
                    'kind', 'booking.deleted', 'entity', 'booking', 'entity_id', o.id::text,
                    'payload', booking.booking_event_payload(o))), '[]'))
           FROM old_rows o;
    ELSE
        PERFORM booking.emit_events(coalesce(jsonb_agg(jsonb_build_object(
                    'kind', c.kind, 'entity', 'booking', 'entity_id', c.id::text,
                    'payload', c.payload
                               || CASE WHEN c.kind = 'booking.rescheduled'
                                       THEN jsonb_build_object('previous', jsonb_build_object('room_id', c.old_room_id,
                                            'starts_at', c.old_starts_at, 'ends_at', c.old_ends_at))
                                       ELSE '{}' END)), '[]'))
           FROM (SELECT n.id, booking.booking_event_payload(n) AS payload, o.room_id AS old_room_id, o.starts_at AS old_starts_at, o.ends_at AS old_ends_at,
                        CASE WHEN n.status <> o.status THEN 'booking.' || n.status
                             WHEN (n.room_id, n.starts_at, n.ends_at) IS DISTINCT FROM (o.room_id, o.starts_at, o.ends_at)
                             THEN 'booking.rescheduled' END AS kind
                   FROM new_rows n JOIN old_rows o ON o.id = n.id) c
          WHERE c.kind IS NOT NULL;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER bookings_event_insert AFTER INSERT ON booking.bookings
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION booking.booking_events();
CREATE TRIGGER bookings_event_update AFTER UPDATE ON booking.bookings
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION booking.booking_events();
CREATE TRIGGER bookings_event_delete AFTER DELETE ON booking.bookings
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION booking.booking_events();

CREATE FUNCTION booking.review_event() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kind text;
    r booking.reviews := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
BEGIN
    IF TG_OP = 'INSERT' THEN
        kind := 'review.created';
    ELSIF TG_OP = 'DELETE' THEN
        kind := 'review.deleted';
    ELSIF NEW.status <> OLD.status THEN
        kind := CASE NEW.status WHEN 'flagged' THEN 'review.flagged' WHEN 'hidden' THEN 'review.hidden'
                                ELSE 'review.restored' END;
    ELSIF NEW.rating <> OLD.rating OR NEW.comment <> OLD.comment THEN
        kind := 'review.updated';
    ELSE
        RETURN NULL;
    END IF;
    PERFORM booking.emit_events(jsonb_build_array(jsonb_build_object(
        'kind', kind, 'entity', 'review', 'entity_id', r.id::text,
        'payload', jsonb_build_object('room_id', r.room_id, 'author_id', r.user_id, 'status', r.status,
                                      'rating', r.rating))));
    RETURN NULL;
END
$$;
CREATE TRIGGER reviews_event AFTER INSERT OR UPDATE OR DELETE ON booking.reviews
    FOR EACH ROW EXECUTE FUNCTION booking.review_event();

-- Reservations: created, changed (dates, length, room type), and every
-- status (checked_in, completed, cancelled, no_show).  Never the guest name.
CREATE FUNCTION booking.reservation_events() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM booking.emit_events(coalesce(jsonb_agg(jsonb_build_object(
                    'kind', 'reservation.created', 'entity', 'reservation', 'entity_id', n.id::text,
                    'payload', booking.reservation_event_payload(n))), '[]'))
           FROM new_rows n;
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM booking.emit_events(coalesce(jsonb_agg(jsonb_build_object(
                    'kind', 'reservation.deleted', 'entity', 'reservation', 'entity_id', o.id::text,
                    'payload', booking.reservation_event_payload(o))), '[]'))
           FROM old_rows o;
    ELSE
        PERFORM booking.emit_events(coalesce(jsonb_agg(jsonb_build_object(
                    'kind', c.kind, 'entity', 'reservation', 'entity_id', c.id::text,
                    'payload', c.payload
                               || CASE WHEN c.kind = 'reservation.changed'
                                       THEN jsonb_build_object('previous', jsonb_build_object('room_type', c.old_room_type,
                                            'arrival_date', c.old_arrival_date, 'stay_length', c.old_stay_length))
                                       ELSE '{}' END)), '[]'))
           FROM (SELECT n.id, booking.reservation_event_payload(n) AS payload, o.room_type AS old_room_type, o.arrival_date AS old_arrival_date,
                        o.stay_length AS old_stay_length,
                        CASE WHEN n.status <> o.status THEN 'reservation.' || n.status
                             WHEN (n.arrival_date, n.stay_length, n.room_type) IS DISTINCT FROM
                                  (o.arrival_date, o.stay_length, o.room_type)
                             THEN 'reservation.changed' END AS kind
                   FROM new_rows n JOIN old_rows o ON o.id = n.id) c
          WHERE c.kind IS NOT NULL;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER reservations_event_insert AFTER INSERT ON booking.reservations
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION booking.reservation_events();
CREATE TRIGGER reservations_event_update AFTER UPDATE ON booking.reservations
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION booking.reservation_events();
CREATE TRIGGER reservations_event_delete AFTER DELETE ON booking.reservations
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION booking.reservation_events();

CREATE FUNCTION api.list_events(after_id bigint DEFAULT 0, kind text DEFAULT NULL, lim integer DEFAULT 50)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_role('admin', 'service_account');
    PERFORM booking.check_page(lim, 0);
    RETURN coalesce((
        SELECT jsonb_agg(to_jsonb(e) ORDER BY e.id)
          FROM (SELECT * FROM booking.events x
                 WHERE x.id > coalesce(after_id, 0)
                   AND (list_events.kind IS NULL OR x.kind LIKE list_events.kind || '%')
                 ORDER BY x.id LIMIT lim) e), '[]');
END
$$;
COMMENT ON FUNCTION api.list_events IS 'GET /events (admin, service_account): events after after_id, oldest first, optionally by kind prefix ("review."); the live stream is NOTIFY pg_booking_events';
