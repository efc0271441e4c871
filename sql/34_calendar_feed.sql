-- Calendar feeds (issue 14): a room's and a user's bookings as RFC 5545
-- iCalendar, a secret feed token per user, and each bad input a clear
-- error with nothing written.  adapter/t/052 fetches the same feeds over
-- HTTP and checks them with real parsers.
\set SHOW_CONTEXT never
SET timezone TO 'UTC';
-- One transaction, rolled back at the end, so the later files see none of
-- this (each failing statement alone is undone: ON_ERROR_ROLLBACK).
\set ON_ERROR_ROLLBACK on
BEGIN;
INSERT INTO booking.users (email, full_name, password_hash, role) VALUES
    ('ics.owner@example.com', 'Ics Owner', 'x', 'user'), ('ics.other@example.com', 'Ics Other', 'x', 'user'),
    ('ics.staff@example.com', 'Ics Staff', 'x', 'facility_manager');
INSERT INTO booking.rooms (name, location, capacity) VALUES ('Ics, Room; North', 'HQ', 8), ('Ics Side', 'HQ', 4);
-- The lines of a feed, one per row, with what changes from run to run
-- (DTSTAMP, booking ids, series uuids) replaced by placeholders.
CREATE FUNCTION pg_temp.lines(feed text) RETURNS SETOF text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT regexp_replace(regexp_replace(regexp_replace(l, '^DTSTAMP:\d{8}T\d{6}Z$', 'DTSTAMP:<now>'),
                                         'booking-\d+@', 'booking-<id>@'),
                          'series-[0-9a-f-]{36}@', 'series-<uuid>@')
      FROM regexp_split_to_table(feed, E'\r\n') l
$$;

-- The owner's bookings: one with a title that needs escaping, and a
-- weekly series in Paris time (the UTC times move with daylight saving).
SELECT t_as('ics.owner@example.com', 'booking_user');
SET ROLE booking_user;
SELECT (api.create_booking(t_room('Ics, Room; North'), '2031-03-03T09:00:00Z', '2031-03-03T10:00:00Z',
        E'Budget, Q3; draft \\ notes\nsecond line') ->> 'id')::bigint AS single \gset
SELECT api.create_booking(t_room('Ics, Room; North'), '2031-03-17T09:00:00Z', '2031-03-17T09:30:00Z', 'Stand-up',
        '{"frequency": "weekly", "count": 4, "time_zone": "Europe/Paris"}') ->> 'series_id' AS series \gset
RESET ROLE;
SELECT array_agg(id ORDER BY starts_at) AS occ FROM booking.bookings WHERE series_id = :'series' \gset
SELECT t_as('ics.other@example.com', 'booking_user');
SET ROLE booking_user;
SELECT (api.create_booking(t_room('Ics, Room; North'), '2031-03-04T12:00:00Z', '2031-03-04T13:00:00Z', 'Other''s lunch') ->> 'id')::bigint AS others \gset
RESET ROLE;

-- The room as its owner sees it: own titles, the other's hidden ("Busy"),
-- exactly as GET /rooms/{id}/schedule hides them.
SELECT t_as('ics.owner@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.room_calendar(t_room('Ics, Room; North'), '2031-03-01T00:00:00Z', '2031-05-01T00:00:00Z') AS feed \gset
SELECT pg_temp.lines(:'feed');
-- Every line ends with CRLF, none is longer than 75 octets.
SELECT right(:'feed', 2) = E'\r\n' AS ends_with_crlf,
       position(E'\n' IN replace(:'feed', E'\r\n', '')) = 0 AS no_bare_lf,
       (SELECT max(octet_length(l)) FROM regexp_split_to_table(:'feed', E'\r\n') l) <= 75 AS folded;
-- The same rule as the schedule: whose titles show.
SELECT jsonb_agg(e ->> 'title' ORDER BY e ->> 'starts_at') AS schedule_titles
  FROM jsonb_array_elements(api.room_schedule(t_room('Ics, Room; North'), '2031-03-01T00:00:00Z', '2031-03-10T00:00:00Z')) e;
RESET ROLE;

-- The other user sees only their own title; staff see all.
SELECT t_as('ics.other@example.com', 'booking_user');
SET ROLE booking_user;
SELECT l FROM pg_temp.lines(api.room_calendar(t_room('Ics, Room; North'), '2031-03-01T00:00:00Z', '2031-05-01T00:00:00Z')) l
 WHERE l LIKE 'SUMMARY:%';
RESET ROLE;
SELECT t_as('ics.staff@example.com', 'booking_facility_manager');
SET ROLE booking_facility_manager;
SELECT l FROM pg_temp.lines(api.room_calendar(t_room('Ics, Room; North'), '2031-03-01T00:00:00Z', '2031-05-01T00:00:00Z')) l
 WHERE l LIKE 'SUMMARY:%';
RESET ROLE;

-- Changes: an occurrence cancelled becomes an EXDATE, one made longer an
-- override (RECURRENCE-ID), one moved a new RDATE; SEQUENCE grows with
-- every change.
SELECT t_as('ics.owner@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.cancel_booking((:'occ'::bigint[])[2]) ->> 'status' AS second_occurrence;
SELECT api.update_booking((:'occ'::bigint[])[3], ends_at => '2031-03-31T09:00:00Z') ->> 'ends_at' AS third_ends;
SELECT api.update_booking((:'occ'::bigint[])[4], starts_at => '2031-04-07T13:00:00Z', ends_at => '2031-04-07T13:30:00Z') ->> 'starts_at' AS fourth_starts;
SELECT api.update_booking(:single, title => 'Budget') ->> 'title' AS retitled;
SELECT l FROM pg_temp.lines(api.my_calendar('2031-03-01T00:00:00Z', '2031-05-01T00:00:00Z')) l;
RESET ROLE;

-- SEQUENCE is the revision the trigger counts: every real change, by any
-- writer, adds one; an UPDATE that changes nothing does not; a writer
-- cannot set it.
SELECT revision AS before FROM booking.bookings WHERE id = :others;
UPDATE booking.bookings SET title = 'Lunch, moved' WHERE id = :others;
UPDATE booking.bookings SET title = 'Lunch, moved' WHERE id = :others;
UPDATE booking.bookings SET revision = 100 WHERE id = :others;
UPDATE booking.bookings SET status = 'cancelled', revision = 0 WHERE id = :others;
SELECT revision AS after_two_changes, status FROM booking.bookings WHERE id = :others;
-- A cancelled booking stays in the feed, CANCELLED, so subscribed
-- calendars drop it.
SELECT t_as('ics.other@example.com', 'booking_user');
SET ROLE booking_user;
SELECT l FROM pg_temp.lines(api.my_calendar('2031-03-01T00:00:00Z', '2031-05-01T00:00:00Z')) l
 WHERE l ~ '^(SUMMARY|STATUS|SEQUENCE):';
RESET ROLE;

-- STATUS: one mapping.  Today's statuses, and for any other status the
-- rule: TENTATIVE while it occupies the room, CANCELLED once it does not.
SELECT s, booking.ics_status(s) FROM unnest(ARRAY['confirmed', 'completed', 'cancelled']) s;
SELECT bool_and(booking.ics_status(s) = CASE WHEN booking.status_occupies(s) THEN 'TENTATIVE' ELSE 'CANCELLED' END)
       AS others_follow_status_occupies
  FROM unnest(ARRAY['held', 'pending', 'released', 'expired', 'rejected']) s;
-- A hold or request past its expiry blocks nobody, even before the worker
-- marks it: CANCELLED, as the conflict check sees it (booking_occupies).
SELECT booking.ics_status('held', now() + interval '1 hour') AS live_hold,
       booking.ics_status('held', now() - interval '1 minute') AS unmarked_expired_hold,
       booking.ics_status('pending', now() - interval '1 minute') AS unmarked_expired_request,
       booking.ics_status('pending') AS request_without_expiry;

-- TEXT escaping and folding (RFC 5545 3.3.11, 3.1).
SELECT booking.ics_text(E'a\\b;c,d\ne\r\nf\rg\x01h');
SELECT booking.ics_fold(repeat('x', 75)) = repeat('x', 75) AS seventy_five_fit;
SELECT p, octet_length(p) FROM regexp_split_to_table(booking.ics_fold('SUMMARY:' || repeat('abcdefghij', 16)), E'\r\n') p;
-- Multi-byte characters are never split; unfolding gives the line back.
-- (2-, 3- and 4-octet characters: each part as full as 75 octets allow.)
SELECT n, octet_length(p) FROM regexp_split_to_table(booking.ics_fold('SUMMARY:' || repeat('é€😀', 40)), E'\r\n')
       WITH ORDINALITY AS x(p, n);
SELECT replace(booking.ics_fold('SUMMARY:' || repeat('é€😀', 40)), E'\r\n ', '') = 'SUMMARY:' || repeat('é€😀', 40) AS unfolds;

-- Feed tokens: made (shown once, stored as its SHA-256 only), read without
-- a bearer token, rotated, revoked.
SELECT count(*) AS tokens_before FROM booking.calendar_tokens \gset
SELECT t_as('ics.owner@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.create_calendar_token() AS made \gset
SELECT (:'made'::jsonb ->> 'path') = format('/calendar/%s/calendar.ics', :'made'::jsonb ->> 'token') AS path_names_token,
       length(:'made'::jsonb ->> 'token') >= 43 AS long_token;
RESET ROLE;
SELECT :'made'::jsonb ->> 'token' AS token \gset
SELECT count(*) AS rows, bool_and(token_hash = sha256(convert_to(:'token', 'UTF8'))) AS hash_only
  FROM booking.calendar_tokens WHERE user_id = t_id('ics.owner@example.com');
-- The table is not readable by the api roles.
SET ROLE booking_user;
SELECT count(*) FROM booking.calendar_tokens;
RESET ROLE;
-- Anonymous, with the token: the owner's bookings, titles shown.
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL AS anonymous;
SET ROLE booking_anon;
SELECT l FROM pg_temp.lines(api.calendar_feed(:'token', '2031-03-01T00:00:00Z', '2031-05-01T00:00:00Z')) l
 WHERE l ~ '^(UID|SUMMARY):';
SELECT api.calendar_feed(:'token', '2031-03-01T00:00:00Z', '2031-05-01T00:00:00Z') AS by_token \gset
RESET ROLE;
SELECT t_as('ics.owner@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.my_calendar('2031-03-01T00:00:00Z', '2031-05-01T00:00:00Z') = :'by_token' AS same_as_my_calendar;
RESET ROLE;
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL AS anonymous;
SET ROLE booking_anon;
-- The anonymous role may not read a room's feed or a user's without a token.
SELECT api.room_calendar(t_room('Ics, Room; North'));
SELECT api.my_calendar();
SELECT api.create_calendar_token();
-- Unknown tokens, and tokens that are nearly right.
SELECT api.calendar_feed('no-such-token');
SELECT api.calendar_feed(left(:'token', -1));
SELECT api.calendar_feed(NULL);
RESET ROLE;

-- Rotating: the old token stops working, the new one works.
SELECT t_as('ics.owner@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.create_calendar_token() ->> 'token' AS rotated \gset
RESET ROLE;
SELECT count(*) AS still_one_row FROM booking.calendar_tokens WHERE user_id = t_id('ics.owner@example.com');
SET ROLE booking_anon;
SELECT api.calendar_feed(:'token');
SELECT api.calendar_feed(:'rotated') LIKE E'BEGIN:VCALENDAR\r\n%' AS rotated_works;
RESET ROLE;
-- A deactivated user's token stops working; reactivated, it works again.
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL AS anonymous;
UPDATE booking.users SET active = false WHERE email = 'ics.owner@example.com';
SET ROLE booking_anon;
SELECT api.calendar_feed(:'rotated');
RESET ROLE;
UPDATE booking.users SET active = true WHERE email = 'ics.owner@example.com';
SET ROLE booking_anon;
SELECT api.calendar_feed(:'rotated') LIKE E'BEGIN:VCALENDAR\r\n%' AS works_again;
RESET ROLE;
-- Revoked: a clear 404, at once; revoking again is a 404 too.
SELECT t_as('ics.owner@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.revoke_calendar_token();
SELECT api.revoke_calendar_token();
RESET ROLE;
SET ROLE booking_anon;
SELECT api.calendar_feed(:'rotated');
RESET ROLE;
SELECT count(*) - :tokens_before AS tokens_left FROM booking.calendar_tokens;

-- Bad input: unknown room, bad windows.
SELECT t_as('ics.owner@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.room_calendar(999999);
SELECT api.room_calendar(t_room('Ics Side'), '2031-03-01T00:00:00Z', '2031-02-01T00:00:00Z');
SELECT api.room_calendar(t_room('Ics Side'), '2031-01-01T00:00:00Z', '2032-03-01T00:00:00Z');
SELECT api.my_calendar('next week');
SELECT api.my_calendar('2031-03-01T00:00:00');
-- An empty room is an empty calendar.
SELECT pg_temp.lines(api.room_calendar(t_room('Ics Side'), '2031-03-01T00:00:00Z'));
RESET ROLE;
-- The default window: from the start of the day 31 days back, 400 days
-- long; "from" alone keeps the length.
SELECT lower(w) = date_trunc('day', now()) - interval '31 days' AS from_31_days_back, upper(w) - lower(w) AS length
  FROM booking.calendar_window(NULL, NULL) w;
SELECT booking.calendar_window('2031-03-01T00:00:00Z', NULL);

-- The routes, and what they answer.
SELECT method, path, function_name, success_status, public, produces
  FROM booking.http_routes WHERE function_name IN ('room_calendar', 'my_calendar', 'calendar_feed',
                                                   'create_calendar_token', 'revoke_calendar_token')
 ORDER BY path, method;
-- A media type that is not one is refused.
\set VERBOSITY terse
INSERT INTO booking.http_routes (method, path, function_name, success_status, operation_id, produces)
VALUES ('GET', '/rooms/{room_id}/calendar', 'room_calendar', 200, 'room_calendar_bad', 'calendar');
ROLLBACK;
