-- Random data for meeting suggestions (sql/51_suggest_oracle.sql and
-- bench/suggest.sh): rooms with bookings, buffers and cancellations, people
-- who publish when they are free and book meetings themselves.
--   suggest_fixture(rooms, people, first_day, days, seed[, own_share,
--   free_days]) fills suggest_rooms(id) and suggest_people(id) with what it
--   made.
CREATE TEMP TABLE suggest_rooms (id bigint PRIMARY KEY);
CREATE TEMP TABLE suggest_people (id bigint PRIMARY KEY);
CREATE PROCEDURE suggest_fixture(n_rooms integer, n_people integer, first_day date, days integer, seed float8,
                                 own_share float8 DEFAULT 0.3, free_days float8 DEFAULT 0.85)
LANGUAGE plpgsql AS $$
DECLARE
    tag text := md5(random()::text || clock_timestamp()::text);
    people bigint[];
    outsider bigint;
BEGIN
    PERFORM setseed(seed);
    TRUNCATE suggest_rooms, suggest_people;
    WITH r AS (INSERT INTO booking.rooms (name, location, capacity)
               SELECT format('sg %s %s', tag, i), 'HQ', 1 + (random() * 60)::int FROM generate_series(1, n_rooms) i
               RETURNING id)
    INSERT INTO suggest_rooms SELECT id FROM r;
    WITH u AS (INSERT INTO booking.users (email, full_name, password_hash)
               SELECT format('sg-%s-%s@example.com', tag, i), 'Suggest ' || i, 'x' FROM generate_series(1, n_people) i
               RETURNING id)
    INSERT INTO suggest_people SELECT id FROM u;
    people := ARRAY(SELECT id FROM suggest_people ORDER BY id);
    INSERT INTO booking.users (email, full_name, password_hash)
    VALUES (format('sg-%s-other@example.com', tag), 'Someone else', 'x') RETURNING id INTO outsider;

    -- Free time: on a share free_days of the days a stretch from 07:00-10:00
    -- to 15:00-19:00, some off the 15-minute grid, sometimes a second one in
    -- the evening.
    INSERT INTO booking.user_availability (user_id, during)
    SELECT p, tstzrange(d + make_interval(mins => 420 + 15 * (random() * 12)::int + (random() < 0.2)::int * floor(random() * 14)::int),
                        d + make_interval(mins => 900 + 15 * (random() * 16)::int))
      FROM unnest(people) p, generate_series(0, days - 1) k, LATERAL (SELECT first_day + k AS day) dd,
           LATERAL (SELECT (dd.day || ' 00:00+00')::timestamptz AS d) x
     WHERE random() < free_days;
    INSERT INTO booking.user_availability (user_id, during)
    SELECT p, tstzrange(d + interval '19 hours 30 minutes', d + interval '21 hours')
      FROM unnest(people) p, generate_series(0, days - 1) k, LATERAL (SELECT first_day + k AS day) dd,
           LATERAL (SELECT (dd.day || ' 00:00+00')::timestamptz AS d) x
     WHERE random() < 0.2;

    -- Bookings: in each two-hour block of 06:00-20:00, a booking of 30 to
    -- 60 minutes with probability 0.45, by one of the people (so they are
    -- busy then too: own_share of the bookings) or someone else; one in
    -- ten cancelled.  They cannot
    -- clash by construction; buffers come after, so they widen busy time.
    INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at, status)
    SELECT r, CASE WHEN random() < own_share THEN people[1 + (random() * (cardinality(people) - 1))::int] ELSE outsider END, 'sg',
           s, s + make_interval(mins => 30 + 15 * floor(random() * 3)::int),
           CASE WHEN random() < 0.1 THEN 'cancelled' ELSE 'confirmed' END
      FROM suggest_rooms sr(r), generate_series(0, days - 1) k, LATERAL (SELECT first_day + k AS day) dd,
           generate_series(6, 18, 2) h,
           LATERAL (SELECT (dd.day || ' 00:00+00')::timestamptz + make_interval(hours => h, mins => 15 * floor(random() * 3)::int
                           + (random() < 0.1)::int * floor(random() * 14)::int) AS s) x
     WHERE random() < 0.45;
    UPDATE booking.rooms SET buffer_before_minutes = (random() * 3)::int * 5, buffer_after_minutes = (random() * 2)::int * 10
     WHERE id IN (SELECT id FROM suggest_rooms) AND random() < 0.3;
    UPDATE booking.rooms SET active = false WHERE id IN (SELECT id FROM suggest_rooms) AND random() < 0.05;
END
$$;
