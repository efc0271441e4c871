-- The waitlist (issue 14): joining a taken slot (the answer has the
-- entry's FIFO position), my entries, withdrawal; promotion in the freeing
-- transaction, oldest first, when the booking is cancelled, released (a
-- no-show), marked expired (a hold, by the worker's function), or when a
-- newcomer would take a slot freed by a hold that expired unmarked (the
-- queue goes first); entries whose slot has started expire.  Every bad
-- input: a clear error with its error_code, and nothing written (not even
-- the trial booking the join is checked with, nor its events).
--
-- All in one transaction, rolled back at the end.  Slots are in 2099,
-- except the one that has started.
\set SHOW_CONTEXT never
\set ON_ERROR_ROLLBACK on
SET timezone TO 'UTC';
BEGIN;

-- try(sql): run a statement, and show its error as one line.
CREATE FUNCTION pg_temp.try(q text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    st text;
    msg text;
    det text;
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
    RETURN regexp_replace(st || ' ' || msg || coalesce(' ' || det, ''),
                          '\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00', '<instant>', 'g');
END
$$;
-- An entry as the tests show it (no ids or instants of this run).
CREATE FUNCTION pg_temp.entry(j jsonb) RETURNS text
LANGUAGE sql AS $$
    SELECT format('%s %s..%s %s position %s%s', j ->> 'title', to_char((j ->> 'starts_at')::timestamptz, 'MM-DD HH24:MI'),
                  to_char((j ->> 'ends_at')::timestamptz, 'HH24:MI'), j ->> 'status', coalesce(j ->> 'position', '-'),
                  CASE WHEN j ->> 'booking_id' IS NOT NULL THEN ' (booked)' ELSE '' END)
$$;
-- The queue of a room as it stands: who waits for what, in order.
CREATE TEMP VIEW t_queue AS
    SELECT r.name AS room, u.email, w.title, to_char(w.starts_at, 'MM-DD HH24:MI') AS slot, w.status,
           booking.waitlist_position(w.id) AS position, b.status AS booking_status
      FROM booking.waitlist w JOIN booking.rooms r ON r.id = w.room_id JOIN booking.users u ON u.id = w.user_id
      LEFT JOIN booking.bookings b ON b.id = w.booking_id
     ORDER BY w.created_at, w.id;

-- Rooms: a plain one, one that requires check-in, an inactive one.
SELECT t_as('admin@example.com', 'booking_admin');
SET ROLE booking_admin;
SELECT t_strip(api.create_room('Queue Room', 'HQ 4th floor', 6)) IS NOT NULL AS created;
SELECT t_strip(api.create_room('Panel Queue Room', 'HQ 4th floor', 6)) IS NOT NULL AS created;
SELECT api.set_room_check_in(t_room('Panel Queue Room'), true) ->> 'check_in_required' AS check_in_required;
SELECT t_strip(api.create_room('Closed Queue Room', 'HQ 4th floor', 6)) IS NOT NULL AS created;
RESET ROLE;
-- The inactive room has a booking (made while it was open), so its slot is taken.
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
VALUES (t_room('Closed Queue Room'), t_id('bob@example.com'), 'before closing', '2099-05-01 09:00+00', '2099-05-01 10:00+00');
UPDATE booking.rooms SET active = false WHERE name = 'Closed Queue Room';

-- Bob books 10:00-11:00 of the Queue Room.
SELECT t_as('bob@example.com', 'booking_user');
SET ROLE booking_user;
SELECT (api.create_booking(t_room('Queue Room'), '2099-05-01T10:00:00Z', '2099-05-01T11:00:00Z', 'Bob''s meeting') ->> 'id') AS bob_booking \gset
RESET ROLE;

-- Alice, Carol and the manager queue for it, in that order: positions 1, 2, 3.
SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
SELECT pg_temp.entry(api.join_waitlist(t_room('Queue Room'), '2099-05-01T10:00:00Z', '2099-05-01T11:00:00Z', 'Alice waits')) AS alice;
RESET ROLE;
SELECT t_as('carol@example.com', 'booking_user');
SET ROLE booking_user;
SELECT pg_temp.entry(api.join_waitlist(t_room('Queue Room'), '2099-05-01T10:00:00Z', '2099-05-01T11:00:00Z', 'Carol waits')) AS carol;
-- Carol also wants the half hour 10:30-11:00: behind Alice and herself.
SELECT pg_temp.entry(api.join_waitlist(t_room('Queue Room'), '2099-05-01T10:30:00Z', '2099-05-01T11:00:00Z', 'Carol half')) AS carol_half;
RESET ROLE;
SELECT t_as('fm@example.com', 'booking_facility_manager');
SET ROLE booking_facility_manager;
SELECT pg_temp.entry(api.join_waitlist(t_room('Queue Room'), '2099-05-01T10:00:00Z', '2099-05-01T11:00:00Z', 'Fred waits')) AS fred;
RESET ROLE;
SELECT * FROM t_queue;

-- Snapshot of every booking, entry and queued event, to show that the
-- errors below write nothing.
CREATE TEMP VIEW t_state AS
    SELECT (SELECT count(*) FROM booking.bookings) AS bookings,
           (SELECT md5(string_agg(b::text, ',' ORDER BY b.id)) FROM booking.bookings b) AS bookings_digest,
           (SELECT count(*) FROM booking.waitlist) AS entries,
           (SELECT md5(coalesce(string_agg(w::text, ',' ORDER BY w.id), '')) FROM booking.waitlist w) AS entries_digest,
           (SELECT count(*) FROM booking.event_queue) AS events;
SELECT bookings, bookings_digest, entries, entries_digest, events FROM t_state \gset before_

-- Bad joins.
SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
-- The slot 12:00-13:00 is free: book it, do not wait for it.
SELECT api.join_waitlist(t_room('Queue Room'), '2099-05-01T12:00:00Z', '2099-05-01T13:00:00Z', 'free slot');
-- Alice waits already for 10:00-11:00.
SELECT api.join_waitlist(t_room('Queue Room'), '2099-05-01T10:00:00Z', '2099-05-01T11:00:00Z', 'again');
-- An inactive room, an unknown room.
SELECT api.join_waitlist(t_room('Closed Queue Room'), '2099-05-01T09:00:00Z', '2099-05-01T10:00:00Z', 'closed');
SELECT api.join_waitlist(999999, '2099-05-01T10:00:00Z', '2099-05-01T11:00:00Z', 'nowhere');
-- Times: ending before starting, longer than a booking may be, no zone, not a time.
SELECT api.join_waitlist(t_room('Queue Room'), '2099-05-01T11:00:00Z', '2099-05-01T10:00:00Z', 'backwards');
SELECT api.join_waitlist(t_room('Queue Room'), '2099-05-01T10:00:00Z', '2099-05-02T11:00:00Z', 'too long');
SELECT api.join_waitlist(t_room('Queue Room'), '2099-05-01T10:00:00', '2099-05-01T11:00:00Z', 'no zone');
SELECT api.join_waitlist(t_room('Queue Room'), 'soon', '2099-05-01T11:00:00Z', 'not a time');
-- A slot that has started (an hour ago) cannot be waited for.
SELECT pg_temp.try(format('SELECT api.join_waitlist(%s, %L, %L, %L)', t_room('Queue Room'),
    to_json(now() - interval '1 hour') #>> '{}', to_json(now() + interval '1 hour') #>> '{}', 'started'));
-- A blank title, none at all.
SELECT api.join_waitlist(t_room('Queue Room'), '2099-05-01T10:00:00Z', '2099-05-01T11:00:00Z', '   ');
SELECT api.join_waitlist(t_room('Queue Room'), '2099-05-01T10:00:00Z', '2099-05-01T11:00:00Z', NULL);
-- A bad page of my entries.
SELECT api.list_my_waitlist(0);
RESET ROLE;
-- Who may not queue: an auditor (reads only), a caller without a token.
SELECT t_as('auditor@example.com', 'booking_auditor');
SET ROLE booking_auditor;
SELECT api.join_waitlist(t_room('Queue Room'), '2099-05-01T10:00:00Z', '2099-05-01T11:00:00Z', 'audit');
RESET ROLE;
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL AS anonymous;
SET ROLE booking_user;
SELECT api.join_waitlist(t_room('Queue Room'), '2099-05-01T10:00:00Z', '2099-05-01T11:00:00Z', 'anon');
SELECT api.list_my_waitlist();
RESET ROLE;
SELECT bookings = :before_bookings AND bookings_digest = :'before_bookings_digest'
       AND entries = :before_entries AND entries_digest = :'before_entries_digest'
       AND events = :before_events AS nothing_written
  FROM t_state;

-- My entries, each with its position.
SELECT t_as('carol@example.com', 'booking_user');
SET ROLE booking_user;
SELECT pg_temp.entry(x) AS my_entries FROM jsonb_array_elements(api.list_my_waitlist()) x;
-- Nobody sees another's entries (row-level security).
SELECT count(*) AS entries_carol_sees FROM booking.waitlist;
RESET ROLE;

-- Bob cancels: in the same transaction, the first entry that fits (Alice,
-- the oldest) becomes a confirmed booking; the others wait on, a place up.
SELECT t_as('bob@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.cancel_booking(:bob_booking) ->> 'status' AS bob_cancels;
RESET ROLE;
SELECT * FROM t_queue;
SELECT b.title, b.status, u.email FROM booking.bookings b JOIN booking.users u ON u.id = b.user_id
 WHERE b.room_id = t_room('Queue Room') ORDER BY b.id;
-- Its events: booking.created of the new booking, waitlist.promoted of the entry.
SELECT e.kind, e.entity, e.payload ->> 'status' AS status
  FROM booking.event_queue e
 WHERE (e.entity = 'waitlist' AND e.kind = 'waitlist.promoted')
    OR (e.entity = 'booking' AND e.entity_id = (SELECT booking_id::text FROM booking.waitlist WHERE title = 'Alice waits'))
 ORDER BY e.qid;
-- Alice sees her entry promoted, with the booking it became.
SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
SELECT pg_temp.entry(x) AS alice_entries FROM jsonb_array_elements(api.list_my_waitlist()) x;
-- A promoted entry cannot be withdrawn (it is a booking now: cancel that).
SELECT api.withdraw_waitlist((SELECT id FROM booking.waitlist WHERE title = 'Alice waits'));
RESET ROLE;

-- Withdrawals: Carol's from someone else (404), from an auditor (403), an
-- unknown entry (404); then her own, and a second time (409).
SELECT id AS carol_half FROM booking.waitlist WHERE title = 'Carol half' \gset
SELECT t_as('bob@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.withdraw_waitlist(:carol_half);
SELECT api.withdraw_waitlist(999999);
RESET ROLE;
SELECT t_as('auditor@example.com', 'booking_auditor');
SET ROLE booking_auditor;
SELECT api.withdraw_waitlist(:carol_half);
RESET ROLE;
SELECT t_as('carol@example.com', 'booking_user');
SET ROLE booking_user;
SELECT pg_temp.entry(api.withdraw_waitlist(:carol_half)) AS withdrawn;
SELECT api.withdraw_waitlist(:carol_half);
RESET ROLE;
SELECT * FROM t_queue;

-- Alice cancels the booking she got: Carol is next.  Then an admin
-- withdraws Fred's entry.
SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.cancel_booking((SELECT booking_id FROM booking.waitlist WHERE title = 'Alice waits')) ->> 'status' AS alice_cancels;
RESET ROLE;
SELECT t_as('admin@example.com', 'booking_admin');
SET ROLE booking_admin;
SELECT pg_temp.entry(api.withdraw_waitlist((SELECT id FROM booking.waitlist WHERE title = 'Fred waits'))) AS admin_withdraws;
RESET ROLE;
SELECT * FROM t_queue;

-- Release of a no-show.  Bob's booking of the check-in room, 09:00-10:00,
-- is not checked in; Alice waits for it.  The worker's release (at 09:11,
-- its clock) frees the slot and promotes her in that transaction.
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
VALUES (t_room('Panel Queue Room'), t_id('bob@example.com'), 'Bob no-show', '2099-05-01 09:00+00', '2099-05-01 10:00+00');
SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
SELECT pg_temp.entry(api.join_waitlist(t_room('Panel Queue Room'), '2099-05-01T09:00:00Z', '2099-05-01T10:00:00Z', 'Alice after a no-show')) AS alice;
RESET ROLE;
SELECT booking.release_no_shows('2099-05-01 09:11+00') AS released;
SELECT room, email, title, slot, status, booking_status FROM t_queue WHERE room = 'Panel Queue Room';

-- Holds.  Bob holds 14:00-15:00 and 16:00-17:00; Carol waits for each.
SELECT t_as('bob@example.com', 'booking_user');
SET ROLE booking_user;
SELECT (api.create_booking(t_room('Queue Room'), '2099-05-01T14:00:00Z', '2099-05-01T15:00:00Z', 'Bob holds', hold_minutes => 5) ->> 'id') AS hold_a \gset
SELECT (api.create_booking(t_room('Queue Room'), '2099-05-01T16:00:00Z', '2099-05-01T17:00:00Z', 'Bob holds too', hold_minutes => 5) ->> 'id') AS hold_b \gset
RESET ROLE;
SELECT t_as('carol@example.com', 'booking_user');
SET ROLE booking_user;
SELECT pg_temp.entry(api.join_waitlist(t_room('Queue Room'), '2099-05-01T14:00:00Z', '2099-05-01T15:00:00Z', 'Carol after a hold')) AS carol;
SELECT pg_temp.entry(api.join_waitlist(t_room('Queue Room'), '2099-05-01T16:00:00Z', '2099-05-01T17:00:00Z', 'Carol after another hold')) AS carol;
RESET ROLE;
-- Both holds run out (made to have expired a second ago); nothing has marked them.
UPDATE booking.bookings SET hold_expires_at = now() - interval '1 second' WHERE id IN (:hold_a, :hold_b);
-- The first expired hold's slot: a newcomer (Bob) does not jump the queue:
-- the entry is promoted first and the newcomer meets it in the conflict
-- check (BOOKING_CONFLICT).  His failed statement takes that promotion with
-- it, so Carol still waits, and the slot stays hers to get.
SELECT t_as('bob@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.create_booking(t_room('Queue Room'), '2099-05-01T14:00:00Z', '2099-05-01T15:00:00Z', 'Bob again');
RESET ROLE;
SELECT title, slot, status, booking_status FROM t_queue WHERE title LIKE 'Carol after%';
-- The worker's marking of expired holds promotes in its transaction: both slots are Carol's.
SELECT booking.expire_holds() AS holds_expired;
SELECT title, slot, status, booking_status FROM t_queue WHERE title LIKE 'Carol after%';
SELECT status FROM booking.bookings WHERE id IN (:hold_a, :hold_b) ORDER BY id;

-- Entry expiry: Fred waits for Carol's new 16:00 booking; at 16:00 (the
-- worker's clock) his entry expires; promotion passes expired entries by.
SELECT t_as('fm@example.com', 'booking_facility_manager');
SET ROLE booking_facility_manager;
SELECT pg_temp.entry(api.join_waitlist(t_room('Queue Room'), '2099-05-01T16:00:00Z', '2099-05-01T17:00:00Z', 'Fred late')) AS fred;
RESET ROLE;
SELECT booking.expire_waitlist('2099-05-01 15:59:59+00') AS expired_before_start;
SELECT booking.expire_waitlist('2099-05-01 16:00+00') AS expired_at_start;
SELECT booking.expire_waitlist(NULL);
UPDATE booking.bookings SET status = 'cancelled'
 WHERE id = (SELECT booking_id FROM booking.waitlist WHERE title = 'Carol after another hold');
SELECT title, slot, status, booking_status FROM t_queue WHERE title IN ('Fred late', 'Carol after another hold');
SELECT kind, count(*) FROM booking.event_queue WHERE entity = 'waitlist' GROUP BY kind ORDER BY kind;

-- Moved times free time too: Bob books 18:00-19:00, Carol waits, Bob
-- moves his booking to 19:00-20:00 (plain UPDATE, as psql would): Carol
-- gets 18:00.  Deleting a booking frees its slot as well.
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
VALUES (t_room('Queue Room'), t_id('bob@example.com'), 'Bob moves', '2099-05-01 18:00+00', '2099-05-01 19:00+00'),
       (t_room('Queue Room'), t_id('bob@example.com'), 'Bob deleted', '2099-05-01 21:00+00', '2099-05-01 22:00+00');
SELECT t_as('carol@example.com', 'booking_user');
SET ROLE booking_user;
SELECT pg_temp.entry(api.join_waitlist(t_room('Queue Room'), '2099-05-01T18:00:00Z', '2099-05-01T19:00:00Z', 'Carol after a move')) AS carol;
SELECT pg_temp.entry(api.join_waitlist(t_room('Queue Room'), '2099-05-01T21:00:00Z', '2099-05-01T22:00:00Z', 'Carol after a delete')) AS carol;
RESET ROLE;
UPDATE booking.bookings SET starts_at = '2099-05-01 19:00+00', ends_at = '2099-05-01 20:00+00' WHERE title = 'Bob moves';
DELETE FROM booking.bookings WHERE title = 'Bob deleted';
SELECT title, slot, status, booking_status FROM t_queue WHERE title IN ('Carol after a move', 'Carol after a delete');

-- The invariants: no two occupying bookings of a room overlap; each
-- promoted entry has exactly one booking, of its user and slot.
SELECT count(*) AS overlaps FROM booking.bookings a JOIN booking.bookings b ON a.room_id = b.room_id AND a.id < b.id
 WHERE booking.booking_occupies(a.status, a.hold_expires_at, now()) AND booking.booking_occupies(b.status, b.hold_expires_at, now())
   AND a.starts_at < b.ends_at AND b.starts_at < a.ends_at;
SELECT count(*) AS promoted, count(DISTINCT w.booking_id) AS bookings,
       count(*) FILTER (WHERE b.user_id = w.user_id AND b.starts_at = w.starts_at AND b.ends_at = w.ends_at AND b.room_id = w.room_id) AS matching
  FROM booking.waitlist w JOIN booking.bookings b ON b.id = w.booking_id WHERE w.status = 'promoted';
SELECT count(*) AS counters_off FROM booking.analytics_check();

ROLLBACK;
