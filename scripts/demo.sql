-- Demo data for make run: a data set that exercises every feature, so the
-- first GETs and every Grafana panel show something at once.  Loaded once
-- (the bookings and the rest are skipped when the demo hotel exists).
-- Everything goes through the api functions, as the users themselves would
-- do it, except the past (no one can book yesterday): those rows are
-- written directly, and the triggers still check them.
-- Demo passwords are "<name>-demo-pw": for a local cluster only.
SET client_min_messages = warning;
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT * FROM (VALUES
        ('user', 'user', 'Uma User'), ('admin', 'admin', 'Ada Admin'), ('facility_manager', 'facility_manager', 'Fay Facilities'),
        ('auditor', 'auditor', 'Aldo Auditor'), ('moderator', 'moderator', 'Mona Moderator'),
        ('service_account', 'service_account', 'Grafana Service'),
        ('ann', 'user', 'Ann Smith'), ('bob', 'user', 'Bob Jones'), ('cleo', 'user', 'Cleo Park')) v(name, role, full_name)
    LOOP
        IF NOT EXISTS (SELECT 1 FROM booking.users WHERE email = r.name || '@demo.pg-booking.test') THEN
            PERFORM api.register(r.name || '@demo.pg-booking.test', r.name || '-demo-pw', r.full_name);
            UPDATE booking.users SET role = r.role WHERE email = r.name || '@demo.pg-booking.test';
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

CREATE FUNCTION pg_temp.demo_as(name text) RETURNS void LANGUAGE sql AS $$
    SELECT set_config('request.jwt.claims',
                      CASE WHEN name IS NULL THEN '' ELSE
                      (SELECT json_build_object('sub', u.id::text, 'role', 'booking_' || u.role)::text
                         FROM booking.users u WHERE u.email = name || '@demo.pg-booking.test') END, false)
$$;
CREATE FUNCTION pg_temp.demo_user(name text) RETURNS bigint LANGUAGE sql AS
  $$ SELECT id FROM booking.users WHERE email = name || '@demo.pg-booking.test' $$;
CREATE FUNCTION pg_temp.demo_room(name text) RETURNS bigint LANGUAGE sql AS
  $$ SELECT id FROM booking.rooms WHERE rooms.name = demo_room.name $$;

DO $$
DECLARE
    today date := booking.hotel_today();
    monday timestamptz := date_trunc('week', now() + interval '7 days');   -- next Monday, 00:00 UTC
    b jsonb;
    rev record;
    h1 bigint;
    h2 bigint;
    stay uuid;
BEGIN
    IF EXISTS (SELECT 1 FROM booking.hotels WHERE name = 'Grand Lisbon') THEN
        RETURN;   -- loaded before
    END IF;

    -- The past two weeks: completed meetings in every room, a few cancelled
    -- (written directly: nobody books the past; the conflict trigger still checks).
    INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at, status)
    SELECT rm.id, pg_temp.demo_user((ARRAY['ann', 'bob', 'cleo', 'user'])[1 + (day + rm.id)::int % 4]),
           format('%s sync', rm.name),
           date_trunc('day', now()) - make_interval(days => day) + interval '9 hours' + make_interval(hours => (rm.id % 4)::int * 2),
           date_trunc('day', now()) - make_interval(days => day) + interval '10 hours' + make_interval(hours => (rm.id % 4)::int * 2),
           CASE WHEN day % 5 = 0 THEN 'cancelled' ELSE 'completed' END
      FROM booking.rooms rm, generate_series(1, 14) AS day
     WHERE rm.active;

    -- The weeks ahead, through the api: single bookings, a weekly series,
    -- one cancelled.
    PERFORM pg_temp.demo_as('ann');
    PERFORM api.create_booking(pg_temp.demo_room('Boardroom'), to_char(monday + interval '9 hours', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                               to_char(monday + interval '11 hours', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), 'Quarterly planning');
    PERFORM api.create_booking(pg_temp.demo_room('Aquarium'), to_char(monday + interval '14 hours', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                               to_char(monday + interval '15 hours', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), 'Team weekly',
                               recurrence => '{"frequency": "weekly", "interval": 1, "count": 8}');
    PERFORM pg_temp.demo_as('bob');
    b := api.create_booking(pg_temp.demo_room('Library'), to_char(monday + interval '1 day 10 hours', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                            to_char(monday + interval '1 day 11 hours', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), 'Interview');
    PERFORM api.cancel_booking((b ->> 'id')::bigint);
    PERFORM api.create_booking(pg_temp.demo_room('Garden room'), to_char(monday + interval '2 days 13 hours', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                               to_char(monday + interval '2 days 16 hours', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), 'Workshop',
                               recurrence => '{"frequency": "daily", "interval": 1, "count": 3}');
    -- People's availability (W2Meet) for next week.
    PERFORM pg_temp.demo_as('ann');
    PERFORM api.set_my_availability(jsonb_build_array(jsonb_build_object(
        'starts_at', to_char(monday + interval '8 hours', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'ends_at', to_char(monday + interval '4 days 17 hours', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))));
    PERFORM pg_temp.demo_as('bob');
    PERFORM api.set_my_availability(jsonb_build_array(jsonb_build_object(
        'starts_at', to_char(monday + interval '1 day 12 hours', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'ends_at', to_char(monday + interval '3 days 18 hours', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))));

    -- Reviews of rooms met in, votes, and one flagged for the moderators.
    FOR rev IN SELECT * FROM (VALUES ('ann', 'Boardroom', 5, 'Great screen, quiet.'),
                                     ('bob', 'Boardroom', 4, 'Catering was late.'),
                                     ('cleo', 'Aquarium', 3, 'A bit small for six.'),
                                     ('user', 'Library', 2, 'Whiteboard markers dry.'),
                                     ('ann', 'Garden room', 1, 'Spam spam spam, buy now')) v(who, room, rating, comment)
    LOOP
        PERFORM pg_temp.demo_as(rev.who);
        IF EXISTS (SELECT 1 FROM booking.bookings x WHERE x.room_id = pg_temp.demo_room(rev.room)
                     AND x.user_id = pg_temp.demo_user(rev.who) AND x.ends_at < now() AND x.status = 'completed') THEN
            PERFORM api.create_review(pg_temp.demo_room(rev.room), rev.rating, rev.comment);
        END IF;
    END LOOP;
    FOR rev IN SELECT v.id, v.user_id FROM booking.reviews v ORDER BY v.id LOOP
        PERFORM pg_temp.demo_as(CASE WHEN rev.user_id = pg_temp.demo_user('cleo') THEN 'bob' ELSE 'cleo' END);
        PERFORM api.vote_review(rev.id, rev.id % 3 <> 0);
    END LOOP;
    PERFORM pg_temp.demo_as('bob');
    PERFORM api.flag_review((SELECT max(id) FROM booking.reviews), 'looks like spam');

    -- Two hotels, 90 nights of inventory, stay rules.
    PERFORM pg_temp.demo_as('admin');
    h1 := (api.create_hotel('Grand Lisbon', 'Lisbon') ->> 'id')::bigint;
    h2 := (api.create_hotel('Porto Riverside', 'Porto') ->> 'id')::bigint;
    PERFORM api.adjust_inventory(h1, 'double', to_char(today - 10, 'YYYY-MM-DD'), to_char(today + 90, 'YYYY-MM-DD'), total => 12);
    PERFORM api.adjust_inventory(h1, 'suite', to_char(today - 10, 'YYYY-MM-DD'), to_char(today + 90, 'YYYY-MM-DD'), total => 3);
    PERFORM api.adjust_inventory(h2, 'double', to_char(today - 10, 'YYYY-MM-DD'), to_char(today + 90, 'YYYY-MM-DD'), total => 8);
    PERFORM api.adjust_inventory(h2, 'single', to_char(today - 10, 'YYYY-MM-DD'), to_char(today + 90, 'YYYY-MM-DD'), total => 5);
    -- Prices: a currency, nightly rates (weekends dearer in Lisbon) and a cancellation policy each.
    PERFORM api.set_hotel_currency(h1, 'EUR');
    PERFORM api.set_hotel_currency(h2, 'EUR');
    PERFORM api.set_rates(h1, 'double', to_char(today - 10, 'YYYY-MM-DD'), to_char(today + 90, 'YYYY-MM-DD'),
                          amount => 120, weekday_amounts => '{"fri": 150, "sat": 150}');
    PERFORM api.set_rates(h1, 'suite', to_char(today - 10, 'YYYY-MM-DD'), to_char(today + 90, 'YYYY-MM-DD'), amount => 260);
    PERFORM api.set_rates(h2, 'double', to_char(today - 10, 'YYYY-MM-DD'), to_char(today + 90, 'YYYY-MM-DD'), amount => 95);
    PERFORM api.set_rates(h2, 'single', to_char(today - 10, 'YYYY-MM-DD'), to_char(today + 90, 'YYYY-MM-DD'), amount => 70);
    PERFORM api.set_cancellation_policy(h1, 3, 'first_night');
    PERFORM api.set_cancellation_policy(h2, 7, 'percent', 50);
    PERFORM api.set_restrictions(h1, 'suite', to_char(today + 30, 'YYYY-MM-DD'), to_char(today + 33, 'YYYY-MM-DD'),
                                 min_stay => 2, closed_to_arrival => false, closed_to_departure => false);
    PERFORM api.set_restrictions(h2, 'double', to_char(today + 45, 'YYYY-MM-DD'), to_char(today + 45, 'YYYY-MM-DD'),
                                 min_stay => 1, closed_to_arrival => true, closed_to_departure => false);

    -- Reservations in every status.
    PERFORM pg_temp.demo_as('ann');
    PERFORM api.create_reservation(h1, 'double', 'Ann Smith', to_char(today + 7, 'YYYY-MM-DD'), 3, adults => 2, children => 1);
    PERFORM api.create_reservation(h2, 'single', 'Ann Smith', to_char(today + 20, 'YYYY-MM-DD'), 2, adults => 1);
    PERFORM pg_temp.demo_as('bob');
    stay := (api.create_reservation(h1, 'suite', 'Bob Jones', to_char(today + 14, 'YYYY-MM-DD'), 4, adults => 2) ->> 'id')::uuid;
    PERFORM api.cancel_reservation(stay);
    PERFORM pg_temp.demo_as('cleo');
    stay := (api.create_reservation(h2, 'double', 'Cleo Park', to_char(today, 'YYYY-MM-DD'), 3, adults => 2) ->> 'id')::uuid;
    PERFORM pg_temp.demo_as('facility_manager');
    PERFORM api.check_in(stay);                                       -- checked_in
    PERFORM pg_temp.demo_as('cleo');
    stay := (api.create_reservation(h1, 'double', 'Cleo Park', to_char(today, 'YYYY-MM-DD'), 1, adults => 1) ->> 'id')::uuid;
    PERFORM pg_temp.demo_as('facility_manager');
    PERFORM api.check_in(stay);
    PERFORM api.check_out(stay);                                      -- completed
    -- Stays that began in the past (written directly), then the night audit:
    -- the one never checked in becomes a no-show, and the run is recorded.
    PERFORM pg_temp.demo_as(NULL);
    INSERT INTO booking.reservations (hotel_id, room_type, user_id, guest_name, arrival_date, stay_length, adults, held_until)
    VALUES (h1, 'double', pg_temp.demo_user('bob'), 'Bob Jones', today - 3, 5, 1, today + 2),
           (h2, 'double', pg_temp.demo_user('user'), 'Uma User', today - 6, 2, 2, today - 4);
    PERFORM set_config('pg_booking.checkout_release_no_shows', 'on', true);
    PERFORM api.run_checkout(as_of => to_char(today - 2, 'YYYY-MM-DD'));
    PERFORM api.run_checkout();                                       -- the latest date due now
    PERFORM pg_temp.demo_as(NULL);
END
$$;
-- The events publisher serves pg_booking.checkout_database; elsewhere publish them now.
SELECT booking.publish_events() IS NOT NULL AS published;
