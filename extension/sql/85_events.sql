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

-- Append one event and announce it.  SECURITY DEFINER: the writer of a
-- booking may not write the log directly.
CREATE FUNCTION booking.emit_event(kind text, entity text, entity_id text, payload jsonb) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id bigint;
BEGIN
    INSERT INTO booking.events (kind, entity, entity_id, user_id, payload)
    VALUES (kind, entity, entity_id, booking.current_user_id(), coalesce(payload, '{}'))
    RETURNING id INTO new_id;
    PERFORM pg_notify('pg_booking_events',
                      jsonb_build_object('id', new_id, 'kind', kind, 'entity', entity, 'entity_id', entity_id)::text);
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION booking.emit_event IS 'append an event to booking.events and NOTIFY pg_booking_events with {id, kind, entity, entity_id}';

CREATE FUNCTION booking.booking_event() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kind text;
    r booking.bookings := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
BEGIN
    IF TG_OP = 'INSERT' THEN
        kind := 'booking.created';
    ELSIF TG_OP = 'DELETE' THEN
        kind := 'booking.deleted';
    ELSIF NEW.status <> OLD.status THEN
        kind := 'booking.' || NEW.status;
    ELSIF (NEW.room_id, NEW.starts_at, NEW.ends_at) IS DISTINCT FROM (OLD.room_id, OLD.starts_at, OLD.ends_at) THEN
        kind := 'booking.rescheduled';
    ELSE
        RETURN NULL;    -- a retitle is not a state change
    END IF;
    PERFORM booking.emit_event(kind, 'booking', r.id::text,
        jsonb_build_object('room_id', r.room_id, 'owner_id', r.user_id, 'status', r.status,
                           'starts_at', r.starts_at, 'ends_at', r.ends_at, 'series_id', r.series_id)
        || CASE WHEN kind = 'booking.rescheduled'
                THEN jsonb_build_object('previous', jsonb_build_object('room_id', OLD.room_id,
                                        'starts_at', OLD.starts_at, 'ends_at', OLD.ends_at))
                ELSE '{}' END);
    RETURN NULL;
END
$$;
CREATE TRIGGER bookings_event AFTER INSERT OR UPDATE OR DELETE ON booking.bookings
    FOR EACH ROW EXECUTE FUNCTION booking.booking_event();

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
    PERFORM booking.emit_event(kind, 'review', r.id::text,
        jsonb_build_object('room_id', r.room_id, 'author_id', r.user_id, 'status', r.status,
                           'rating', r.rating));
    RETURN NULL;
END
$$;
CREATE TRIGGER reviews_event AFTER INSERT OR UPDATE OR DELETE ON booking.reviews
    FOR EACH ROW EXECUTE FUNCTION booking.review_event();

-- Reservations: created, changed (dates, length, room type), and every
-- status (checked_in, completed, cancelled, no_show).  Never the guest name.
CREATE FUNCTION booking.reservation_event() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kind text;
    r booking.reservations := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
BEGIN
    IF TG_OP = 'INSERT' THEN
        kind := 'reservation.created';
    ELSIF TG_OP = 'DELETE' THEN
        kind := 'reservation.deleted';
    ELSIF NEW.status <> OLD.status THEN
        kind := 'reservation.' || NEW.status;
    ELSIF (NEW.arrival_date, NEW.stay_length, NEW.room_type) IS DISTINCT FROM (OLD.arrival_date, OLD.stay_length, OLD.room_type) THEN
        kind := 'reservation.changed';
    ELSE
        RETURN NULL;    -- guest details and bookkeeping are not state changes
    END IF;
    PERFORM booking.emit_event(kind, 'reservation', r.id::text,
        jsonb_build_object('hotel_id', r.hotel_id, 'room_type', r.room_type, 'owner_id', r.user_id,
                           'status', r.status, 'arrival_date', r.arrival_date, 'stay_length', r.stay_length)
        || CASE WHEN kind = 'reservation.changed'
                THEN jsonb_build_object('previous', jsonb_build_object('room_type', OLD.room_type,
                                        'arrival_date', OLD.arrival_date, 'stay_length', OLD.stay_length))
                ELSE '{}' END);
    RETURN NULL;
END
$$;
CREATE TRIGGER reservations_event AFTER INSERT OR UPDATE OR DELETE ON booking.reservations
    FOR EACH ROW EXECUTE FUNCTION booking.reservation_event();

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
