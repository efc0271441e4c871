-- Demo data for make run: a few rooms and one user per role.  Idempotent.
-- Demo passwords are "<name>-demo-pw": for a local cluster only.
SET client_min_messages = warning;
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT * FROM (VALUES
        ('user', 'Uma User'), ('admin', 'Ada Admin'), ('facility_manager', 'Fay Facilities'),
        ('auditor', 'Aldo Auditor'), ('moderator', 'Mona Moderator'), ('service_account', 'Grafana Service')) v(role, name)
    LOOP
        IF NOT EXISTS (SELECT 1 FROM booking.users WHERE email = r.role || '@demo.pg-booking.test') THEN
            PERFORM api.register(r.role || '@demo.pg-booking.test', r.role || '-demo-pw', r.name);
            UPDATE booking.users SET role = r.role WHERE email = r.role || '@demo.pg-booking.test';
        END IF;
    END LOOP;
END
$$;
INSERT INTO booking.rooms (name, location, capacity, amenities, buffer_before_minutes, buffer_after_minutes)
VALUES ('Aquarium', 'HQ 1st floor', 6, '{screen,whiteboard}', 0, 0),
       ('Boardroom', 'HQ 5th floor', 20, '{screen,videoconf,catering}', 15, 15),
       ('Library', 'HQ 2nd floor', 4, '{whiteboard}', 0, 5),
       ('Garden room', 'Annex', 12, '{screen}', 10, 10)
ON CONFLICT DO NOTHING;
