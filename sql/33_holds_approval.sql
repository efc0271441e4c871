-- Booking statuses, holds and approval rooms (issue 14): the one table of
-- statuses, each api function, each bad input a clear error with its
-- error_code and nothing written, and the conflict check stepping over an
-- expired hold without missing the real booking behind it.
--
-- All in one transaction, rolled back at the end, so the files after this
-- one see the database as it was (psql rolls back only the failed
-- statement: ON_ERROR_ROLLBACK).  Expiry is made by moving a booking's
-- hold_expires_at into the past, as time would.
\set SHOW_CONTEXT never
\set ON_ERROR_ROLLBACK on
SET timezone TO 'UTC';
BEGIN;

-- try(sql): run a statement, and show its error as one line with what
-- changes from run to run masked (instants, the rate limiter's waits, the
-- failing row of a CHECK).
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
    det := CASE WHEN det LIKE '{%' THEN (det::jsonb - 'retry_after_ms' - 'retry_after_seconds' - 'headers')::text END;
    RETURN regexp_replace(st || ' ' || msg || coalesce(' ' || det, ''),
                          '\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00', '<instant>', 'g');
END
$$;

-- Every status, and whether it may occupy the room / ends by itself.
SELECT s AS status, booking.status_occupies(s) AS may_occupy, booking.status_expires(s) AS expires
  FROM unnest(booking.booking_statuses()) s;
-- The rule at an instant (10:00): a hold or a request past its expiry occupies no more.
SELECT s AS status, e AS hold_expires_at, booking.booking_occupies(s, e::timestamptz, '2099-01-01 10:00+00') AS occupies
  FROM (VALUES ('held', '2099-01-01 10:00:01+00'), ('held', '2099-01-01 10:00+00'), ('pending', NULL),
               ('pending', '2099-01-01 09:59+00'), ('confirmed', NULL), ('completed', NULL),
               ('cancelled', NULL), ('released', NULL), ('expired', '2099-01-01 09:00+00'), ('rejected', NULL)) v(s, e);
-- The index the C check scans holds what may occupy; the trigger fires on an expiry change too.
SELECT pg_get_expr(i.indpred, i.indrelid) AS conflict_index_predicate
  FROM pg_index i WHERE i.indexrelid = 'booking.bookings_room_occupying_idx'::regclass;
SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t WHERE t.tgname = 'bookings_conflict_check';

-- Rooms: one plain, one that requires approval, one whose requests expire.
SELECT t_as('admin@example.com', 'booking_admin');
SET ROLE booking_admin;
SELECT t_strip(api.create_room('Hold Room', 'HQ 2nd floor', 4));
SELECT t_strip(api.create_room('Approval Room', 'HQ 7th floor', 12));
SELECT t_strip(api.set_room_approval(t_room('Approval Room'), true));
SELECT t_strip(api.create_room('Expiring Approval Room', 'HQ 7th floor', 8)) ->> 'requires_approval' AS requires_approval;
SELECT t_strip(api.set_room_approval(t_room('Expiring Approval Room'), true, 30)) ->> 'approval_expiry_minutes' AS expiry;
-- Bad input: each 422 or 404, nothing changed.
SELECT api.set_room_approval(t_room('Hold Room'), NULL);
SELECT api.set_room_approval(t_room('Hold Room'), true, 0);
SELECT api.set_room_approval(t_room('Hold Room'), true, 10081);
SELECT api.set_room_approval(999999, true);
RESET ROLE;
SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.set_room_approval(t_room('Hold Room'), true);       -- plain user: 403
RESET ROLE;
SELECT name, requires_approval, approval_expiry_minutes FROM booking.rooms
 WHERE name IN ('Hold Room', 'Approval Room', 'Expiring Approval Room') ORDER BY name;

-- Snapshot of every booking, to show that the errors below write nothing.
CREATE TEMP VIEW t_bookings_state AS
    SELECT count(*) AS n, md5(coalesce(string_agg(b::text, ',' ORDER BY b.id), '')) AS digest FROM booking.bookings b;
SELECT n AS bookings_before, digest AS digest_before FROM t_bookings_state \gset

-- Holds: bad hold_minutes, a hold with a recurrence, a hold of an approval room.
SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.create_booking(t_room('Hold Room'), '2099-06-01T10:00:00Z', '2099-06-01T11:00:00Z', 'Zero', hold_minutes => 0);
SELECT api.create_booking(t_room('Hold Room'), '2099-06-01T10:00:00Z', '2099-06-01T11:00:00Z', 'Ninety', hold_minutes => 90);
SELECT api.create_booking(t_room('Hold Room'), '2099-06-01T10:00:00Z', '2099-06-01T11:00:00Z', 'Negative', hold_minutes => -5);
SELECT api.create_booking(t_room('Hold Room'), '2099-06-01T10:00:00Z', '2099-06-01T11:00:00Z', 'Series', '{"frequency": "daily", "count": 2}', 10);
SELECT api.create_booking(t_room('Approval Room'), '2099-06-01T10:00:00Z', '2099-06-01T11:00:00Z', 'Hold a request', hold_minutes => 10);
RESET ROLE;
-- A status outside the table, and a hold without an expiry, are refused by the table itself.
SELECT pg_temp.try($$INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at, status)
  VALUES (t_room('Hold Room'), t_id('alice@example.com'), 'Tentative', '2099-06-01T10:00:00Z', '2099-06-01T11:00:00Z', 'tentative')$$);
SELECT pg_temp.try($$INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at, status)
  VALUES (t_room('Hold Room'), t_id('alice@example.com'), 'Held for ever', '2099-06-01T10:00:00Z', '2099-06-01T11:00:00Z', 'held')$$);
SELECT n = :bookings_before AND digest = :'digest_before' AS nothing_written FROM t_bookings_state;

-- A 10-minute hold: status held, expiring 10 minutes after it was made.
SET ROLE booking_user;
SELECT x ->> 'status' AS status, (x ->> 'hold_expires_at')::timestamptz = now() + interval '10 minutes' AS expires_in_10_minutes
  FROM (SELECT api.create_booking(t_room('Hold Room'), '2099-06-01T10:00:00Z', '2099-06-01T11:00:00Z', 'Alice holds',
                                  hold_minutes => 10) x) s;
RESET ROLE;
SELECT id AS hold1 FROM booking.bookings WHERE title = 'Alice holds' \gset
-- It blocks the slot like a confirmed booking: for others, in availability, in the schedule.
SELECT t_as('carol@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.create_booking(t_room('Hold Room'), '2099-06-01T10:30:00Z', '2099-06-01T11:30:00Z', 'Carol over the hold');
SELECT api.room_availability(t_room('Hold Room'), '2099-06-01T09:00:00Z', '2099-06-01T12:00:00Z');
SELECT jsonb_path_query(api.room_schedule(t_room('Hold Room'), '2099-06-01T00:00:00Z', '2099-06-02T00:00:00Z'), '$[*].status') AS schedule;
-- Carol cannot confirm (or even see) Alice's hold; the auditor may read it, not confirm it.
SELECT api.confirm_booking(:hold1);
RESET ROLE;
SELECT t_as('auditor@example.com', 'booking_auditor');
SET ROLE booking_auditor;
SELECT api.confirm_booking(:hold1);
SELECT api.confirm_booking(999999);
RESET ROLE;
SELECT status FROM booking.bookings WHERE id = :hold1;
-- Alice confirms it: confirmed, no expiry; a second confirm is 409 INVALID_STATE.
SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
SELECT x ->> 'status' AS status, x -> 'hold_expires_at' AS hold_expires_at FROM api.confirm_booking(:hold1) x;
SELECT api.confirm_booking(:hold1);
RESET ROLE;

-- A hold that has expired (its instant moved into the past, as time would)
-- blocks nobody, before any job has run, and can no longer be confirmed.
SET ROLE booking_user;
SELECT api.create_booking(t_room('Hold Room'), '2099-06-02T10:00:00Z', '2099-06-02T11:00:00Z', 'Alice lets it lapse',
                          hold_minutes => 5) ->> 'status' AS status;
RESET ROLE;
SELECT id AS hold2 FROM booking.bookings WHERE title = 'Alice lets it lapse' \gset
UPDATE booking.bookings SET hold_expires_at = now() - interval '1 second' WHERE id = :hold2;
SELECT n AS bookings_before, digest AS digest_before FROM t_bookings_state \gset
SET ROLE booking_user;
SELECT pg_temp.try(format('SELECT api.confirm_booking(%s)', :hold2));
RESET ROLE;
SELECT n = :bookings_before AND digest = :'digest_before' AS nothing_written FROM t_bookings_state;
SELECT t_as('carol@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.room_availability(t_room('Hold Room'), '2099-06-02T09:00:00Z', '2099-06-02T12:00:00Z');
SELECT jsonb_array_length(api.room_schedule(t_room('Hold Room'), '2099-06-02T00:00:00Z', '2099-06-03T00:00:00Z')) AS schedule_entries;
SELECT api.create_booking(t_room('Hold Room'), '2099-06-02T10:00:00Z', '2099-06-02T11:00:00Z', 'Carol takes the lapsed slot') ->> 'status' AS status;
RESET ROLE;
-- Confirming it behind the api's back (a superuser's UPDATE) is refused by the trigger: the slot is Carol's now.
UPDATE booking.bookings SET status = 'confirmed', hold_expires_at = NULL WHERE id = :hold2;
-- The worker's job marks it expired, with its event; a second run finds nothing.
SELECT booking.expire_holds() AS expired;
SELECT booking.expire_holds() AS expired_again;
SELECT status FROM booking.bookings WHERE id = :hold2;
SELECT kind, payload ->> 'status' AS status FROM booking.event_queue WHERE entity = 'booking' AND entity_id = :'hold2' ORDER BY qid;
-- An expired booking is 409 HOLD_EXPIRED for confirm and cancel alike.
SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
SELECT pg_temp.try(format('SELECT api.confirm_booking(%s)', :hold2));
SELECT pg_temp.try(format('SELECT api.cancel_booking(%s)', :hold2));
-- A live hold may be withdrawn.
SELECT api.create_booking(t_room('Hold Room'), '2099-06-03T10:00:00Z', '2099-06-03T11:00:00Z', 'Alice changes her mind',
                          hold_minutes => 15) ->> 'status' AS status;
SELECT api.cancel_booking((SELECT id FROM booking.bookings WHERE title = 'Alice changes her mind')) ->> 'status' AS status;
SELECT api.list_bookings(status => 'held');
SELECT api.list_bookings(status => 'tentative');
RESET ROLE;

-- The conflict check behind an expired hold.  Layout in a room: a hold
-- [10:00, 10:30) that expired, then a confirmed booking [09:00, 12:00)
-- made over it.  A newcomer at [11:00, 11:30) clashes with the confirmed
-- booking, although the latest index row starting before 11:00 is the
-- expired hold, which ends before 11:00: a backward scan that stopped at
-- it would miss the clash (the negative control below shows the layout is
-- exactly that).
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at, status, hold_expires_at)
VALUES (t_room('Hold Room'), t_id('alice@example.com'), 'Expired hold', '2099-07-01T10:00:00Z', '2099-07-01T10:30:00Z',
        'held', now() + interval '10 minutes');
UPDATE booking.bookings SET hold_expires_at = now() - interval '1 second' WHERE title = 'Expired hold';
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
VALUES (t_room('Hold Room'), t_id('carol@example.com'), 'Long meeting over the expired hold', '2099-07-01T09:00:00Z', '2099-07-01T12:00:00Z');
-- Negative control: the index row just before 11:00 is the expired hold, and it does not reach 11:00.
SELECT title, ends_at <= '2099-07-01T11:00:00Z' AS ends_before_newcomer,
       booking.booking_occupies(status, hold_expires_at, now()) AS occupies
  FROM booking.bookings
 WHERE room_id = t_room('Hold Room') AND booking.status_occupies(status) AND starts_at < '2099-07-01T11:00:00Z'
 ORDER BY starts_at DESC LIMIT 1;
-- The check finds the real clash behind it (and only that one).
SELECT booking.booking_conflicts(t_room('Hold Room'), '2099-07-01T11:00:00Z', '2099-07-01T11:30:00Z')
       @? '$[*] ? (@.starts_at == "2099-07-01T09:00:00+00:00")' AS finds_the_long_meeting,
       jsonb_array_length(booking.booking_conflicts(t_room('Hold Room'), '2099-07-01T11:00:00Z', '2099-07-01T11:30:00Z')) AS clashes;
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
VALUES (t_room('Hold Room'), t_id('alice@example.com'), 'Newcomer', '2099-07-01T11:00:00Z', '2099-07-01T11:30:00Z');
-- The expired hold itself is no clash: a newcomer inside it clashes only with the long meeting.
SELECT jsonb_array_length(booking.booking_conflicts(t_room('Hold Room'), '2099-07-01T10:00:00Z', '2099-07-01T10:15:00Z')) AS clashes;
-- No two bookings that occupy now overlap anywhere.
SELECT count(*) AS overlapping_pairs
  FROM booking.bookings a JOIN booking.bookings b ON a.room_id = b.room_id AND a.id < b.id
 WHERE booking.booking_occupies(a.status, a.hold_expires_at, now()) AND booking.booking_occupies(b.status, b.hold_expires_at, now())
   AND tstzrange(a.starts_at, a.ends_at) && tstzrange(b.starts_at, b.ends_at);

-- That holds count against the booking rate limit like any create is shown
-- in sql/60_ratelimits.sql (the limiter's counters outlive this file's
-- rollback, and that file reads them).

-- Approval rooms: a plain user's booking is a pending request that blocks the slot.
SELECT t_as('carol@example.com', 'booking_user');
SET ROLE booking_user;
SELECT x ->> 'status' AS status, x -> 'hold_expires_at' AS hold_expires_at
  FROM api.create_booking(t_room('Approval Room'), '2099-06-01T10:00:00Z', '2099-06-01T11:00:00Z', 'Carol asks') x;
SELECT api.create_booking(t_room('Approval Room'), '2099-06-01T14:00:00Z', '2099-06-01T15:00:00Z', 'Carol asks weekly',
                          '{"frequency": "weekly", "count": 2}') #> '{bookings}' @? '$[*] ? (@.status == "pending")' AS series_pending;
SELECT api.create_booking(t_room('Approval Room'), '2099-06-02T10:00:00Z', '2099-06-02T11:00:00Z', 'Carol asks again') ->> 'status' AS status;
RESET ROLE;
SELECT id AS req1 FROM booking.bookings WHERE title = 'Carol asks' \gset
SELECT id AS req2 FROM booking.bookings WHERE title = 'Carol asks again' \gset
SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.create_booking(t_room('Approval Room'), '2099-06-01T10:30:00Z', '2099-06-01T11:30:00Z', 'Alice over the request');
RESET ROLE;
-- Those who approve book such a room directly.
SELECT t_as('fm@example.com', 'booking_facility_manager');
SET ROLE booking_facility_manager;
SELECT api.create_booking(t_room('Approval Room'), '2099-06-05T10:00:00Z', '2099-06-05T11:00:00Z', 'FM books') ->> 'status' AS status;
RESET ROLE;

-- Deciding is for managers: a plain user, the owner, an auditor get 403, nothing written.
SELECT n AS bookings_before, digest AS digest_before FROM t_bookings_state \gset
SELECT count(*) AS audit_before FROM booking.audit_log \gset
SELECT t_as('carol@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.approve_booking(:req1);
SELECT api.reject_booking(:req1);
SELECT api.list_pending_bookings();
SELECT api.confirm_booking(:req1);            -- a request is not a hold: 409 INVALID_STATE
RESET ROLE;
SELECT t_as('auditor@example.com', 'booking_auditor');
SET ROLE booking_auditor;
SELECT api.approve_booking(:req1);
SELECT api.list_pending_bookings();
RESET ROLE;
SELECT t_as('fm@example.com', 'booking_facility_manager');
SET ROLE booking_facility_manager;
SELECT api.approve_booking(999999);
SELECT api.approve_booking(:hold1);           -- confirmed, not pending: 409 INVALID_STATE
SELECT api.list_pending_bookings(lim => 0);
SELECT api.list_pending_bookings(room_id => 999999);
RESET ROLE;
SELECT n = :bookings_before AND digest = :'digest_before' AS nothing_written,
       (SELECT count(*) FROM booking.audit_log) = :audit_before AS nothing_audited FROM t_bookings_state;

-- The facility manager's list: the requests awaiting a decision, oldest first.
SELECT t_as('fm@example.com', 'booking_facility_manager');
SET ROLE booking_facility_manager;
SELECT x ->> 'title' AS title, x ->> 'status' AS status FROM jsonb_array_elements(api.list_pending_bookings(room_id => t_room('Approval Room'))) x;
-- Approve one (checked again, now confirmed), reject the other (its slot is free again).
SELECT x ->> 'status' AS status, x -> 'hold_expires_at' AS hold_expires_at FROM api.approve_booking(:req1) x;
SELECT api.reject_booking(:req2) ->> 'status' AS status;
SELECT api.approve_booking(:req1);            -- decided already: 409 INVALID_STATE
SELECT api.reject_booking(:req2);
SELECT x ->> 'title' AS still_pending FROM jsonb_array_elements(api.list_pending_bookings(room_id => t_room('Approval Room'))) x;
RESET ROLE;
SELECT action, target_id::bigint IN (:req1, :req2) AS ours, before, after FROM booking.audit_log WHERE action LIKE 'booking.%' ORDER BY id;
SELECT kind FROM booking.event_queue WHERE entity = 'booking' AND entity_id IN (:'req1', :'req2') ORDER BY qid;
SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.create_booking(t_room('Approval Room'), '2099-06-02T10:00:00Z', '2099-06-02T11:00:00Z', 'Alice asks for the freed slot') ->> 'status' AS status;
RESET ROLE;

-- A room whose requests expire: a request past its expiry cannot be approved and blocks nobody.
SELECT t_as('carol@example.com', 'booking_user');
SET ROLE booking_user;
SELECT x ->> 'status' AS status, (x ->> 'hold_expires_at')::timestamptz = now() + interval '30 minutes' AS expires_in_30_minutes
  FROM api.create_booking(t_room('Expiring Approval Room'), '2099-06-01T10:00:00Z', '2099-06-01T11:00:00Z', 'Carol asks in time') x;
RESET ROLE;
SELECT id AS req3 FROM booking.bookings WHERE title = 'Carol asks in time' \gset
UPDATE booking.bookings SET hold_expires_at = now() - interval '1 second' WHERE id = :req3;
SELECT n AS bookings_before, digest AS digest_before FROM t_bookings_state \gset
SELECT t_as('fm@example.com', 'booking_facility_manager');
SET ROLE booking_facility_manager;
SELECT pg_temp.try(format('SELECT api.approve_booking(%s)', :req3));
SELECT pg_temp.try(format('SELECT api.reject_booking(%s)', :req3));
SELECT jsonb_array_length(api.list_pending_bookings(room_id => t_room('Expiring Approval Room'))) AS awaiting;
RESET ROLE;
SELECT n = :bookings_before AND digest = :'digest_before' AS nothing_written FROM t_bookings_state;
SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.create_booking(t_room('Expiring Approval Room'), '2099-06-01T10:00:00Z', '2099-06-01T11:00:00Z', 'Alice asks after it lapsed') ->> 'status' AS status;
RESET ROLE;
SELECT booking.expire_holds() AS expired;
SELECT status FROM booking.bookings WHERE id = :req3;

-- The analytics count every status: one counter column per status, and
-- after all of the above every counter equals a full recount.
SELECT array_agg(attname::text ORDER BY attname) = (SELECT array_agg(s ORDER BY s) FROM unnest(booking.booking_statuses()) s)
       AS one_counter_per_status
  FROM pg_attribute WHERE attrelid = 'booking.room_booking_counts'::regclass AND attnum > 0 AND NOT attisdropped AND attname <> 'room_id';
SELECT * FROM booking.analytics_check();
SELECT held, pending, expired, rejected, total = confirmed + cancelled + completed + held + pending + released + expired + rejected AS total_adds_up
  FROM booking.analytics_bookings_by_room WHERE room_name = 'Approval Room';

-- The routes, each declared once with its result schema.
SELECT r.method, r.path, r.function_name, r.success_status, x.schema
  FROM booking.http_routes r LEFT JOIN booking.http_results x ON x.function_name = r.function_name
 WHERE r.function_name IN ('confirm_booking', 'approve_booking', 'reject_booking', 'list_pending_bookings', 'set_room_approval')
 ORDER BY r.path, r.method;

ROLLBACK;
