-- Meeting suggestions: booking.meeting_slots against the 1.0 search kept as
-- the oracle (test/suggest_meetings_reference.sql), on random rooms,
-- bookings, buffers and published availability; everything is rolled back.
SET timezone TO 'UTC';
-- The oracle's estimates are large enough to set off JIT compilation, which
-- would only make this test slow.
SET jit = off;
BEGIN;
\set ECHO none
\i test/suggest_meetings_reference.sql
\i test/suggest_fixture.sql
\set ECHO all
-- Only the rooms made here take part.
UPDATE booking.rooms SET active = false;

-- A meeting that starts in one step of the search and ends in the next:
-- Dora is free from 10:00 to 14:00 the next day, the one big room is taken
-- (by Erin) until 08:00 the next day, so the only four-hour slot starts at
-- 08:00, in the first step of the search, and ends in the second.
INSERT INTO booking.users (email, full_name, password_hash)
VALUES ('dora@example.com', 'Dora', 'x'), ('erin@example.com', 'Erin', 'x');
INSERT INTO booking.rooms (name, location, capacity) VALUES ('Hall', 'HQ', 99);
INSERT INTO booking.user_availability (user_id, during)
SELECT id, '[2099-08-03 10:00+00, 2099-08-04 14:00+00)' FROM booking.users WHERE email = 'dora@example.com';
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
SELECT r.id, u.id, 'set-up', '2099-08-03 10:00+00', '2099-08-04 08:00+00'
  FROM booking.rooms r, booking.users u WHERE r.name = 'Hall' AND u.email = 'erin@example.com';

-- Random questions against the data of several seeds: attendees, duration,
-- a window that may start off the 15-minute grid, capacity and limit.
-- Then Dora's question.  Returns how many were asked, how many had an
-- answer, how many of those had more than one slot, and how many differed
-- from the oracle.
CREATE FUNCTION suggest_compare(seeds integer, questions integer,
                                OUT asked integer, OUT answered integer, OUT several integer, OUT differing integer)
LANGUAGE plpgsql AS $$
DECLARE
    people bigint[];
    ids bigint[];
    w tstzrange;
    lo timestamptz;
    dur interval;
    need integer;
    lim integer;
    got jsonb;
    want jsonb;
BEGIN
    asked := 0; answered := 0; several := 0; differing := 0;
    FOR seed IN 1 .. seeds LOOP
        CALL suggest_fixture(8, 6, date '2099-07-06' + 7 * seed, 3, seed / 10.0);
        people := ARRAY(SELECT id FROM suggest_people ORDER BY id);
        FOR q IN 1 .. questions LOOP
            ids := ARRAY(SELECT p FROM unnest(people) p WHERE random() < 0.5);
            IF ids = '{}' THEN
                ids := people[1:1];
            END IF;
            dur := make_interval(mins => 15 * (1 + floor(random() * 12)::int));
            lo := (date '2099-07-06' + 7 * seed)::timestamp AT TIME ZONE 'UTC'
                  + make_interval(mins => floor(random() * 2 * 1440)::int);
            w := tstzrange(lo, lo + make_interval(mins => 60 + floor(random() * 1.5 * 1440)::int));
            need := 1 + floor(random() * 40)::int;
            lim := 1 + floor(random() * 12)::int;
            got := booking.meeting_slots(ids, dur, w, need, lim);
            want := booking.suggest_meetings_reference(ids, dur, w, need, lim);
            asked := asked + 1;
            answered := answered + (jsonb_array_length(want) > 0)::int;
            several := several + (jsonb_array_length(want) > 1)::int;
            differing := differing + (got IS DISTINCT FROM want)::int;
        END LOOP;
        UPDATE booking.rooms SET active = false WHERE id IN (SELECT id FROM suggest_rooms);
    END LOOP;
    ids := ARRAY(SELECT id FROM booking.users WHERE email = 'dora@example.com');
    w := '[2099-08-03 00:00+00, 2099-08-05 00:00+00)';
    got := booking.meeting_slots(ids, interval '4 hours', w, 99, 1);
    want := booking.suggest_meetings_reference(ids, interval '4 hours', w, 99, 1);
    asked := asked + 1;
    differing := differing + (got IS DISTINCT FROM want)::int;
END
$$;
SELECT setseed(0.5);
-- Dora's slot, as the oracle sees it.
SELECT booking.suggest_meetings_reference(ARRAY(SELECT id FROM booking.users WHERE email = 'dora@example.com'),
           interval '4 hours', '[2099-08-03 00:00+00, 2099-08-05 00:00+00)', 99, 1) -> 0 ->> 'starts_at' AS dora_starts_at;
SELECT asked, answered >= asked / 4 AS many_answered, several > 0 AS some_with_several, differing
  FROM suggest_compare(3, 40);

-- Negative controls: the same comparison must see a wrong search.  Each
-- mutant is the function with one plausible mistake, in a savepoint.
CREATE FUNCTION suggest_mutant(fn text, find text, replacement text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    def text := pg_get_functiondef(fn::regprocedure);
    n integer;
BEGIN
    IF position(find IN def) = 0 THEN
        RAISE EXCEPTION 'mutation "%" not found in %', find, fn;
    END IF;
    EXECUTE replace(def, find, replacement);
    SELECT differing INTO n FROM suggest_compare(2, 25);
    RETURN n;
END
$$;
-- the largest room that fits, not the snuggest
SAVEPOINT m;
SELECT suggest_mutant('booking.meeting_slots_between(tstzmultirange, bigint[], interval, timestamptz, timestamptz, integer)',
                      'ORDER BY rs.capacity, rs.name', 'ORDER BY rs.capacity DESC, rs.name') > 0 AS snuggest_mutant_seen;
ROLLBACK TO m;
-- a step that ignores meetings running past its end
SELECT suggest_mutant('booking.meeting_slots(bigint[], interval, tstzrange, integer, integer)',
                      'tstzrange(a, b + dur)', 'tstzrange(a, b)') > 0 AS step_end_mutant_seen;
ROLLBACK TO m;
-- busy time without the rooms' buffers
SELECT suggest_mutant('booking.meeting_slots_between(tstzmultirange, bigint[], interval, timestamptz, timestamptz, integer)',
                      'common - rb.busy', 'common - (SELECT range_agg(tstzrange(b.starts_at, b.ends_at)) FROM booking.bookings b WHERE b.room_id = r.id AND b.status = ''confirmed'')') > 0 AS buffer_mutant_seen;
ROLLBACK TO m;
-- starts off the 15-minute grid
SELECT suggest_mutant('booking.meeting_slots_between(tstzmultirange, bigint[], interval, timestamptz, timestamptz, integer)',
                      'generate_series(d.d,', 'generate_series(lower(x.g),') > 0 AS grid_mutant_seen;
ROLLBACK TO m;
ROLLBACK;
