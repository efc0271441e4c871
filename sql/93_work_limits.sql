-- Limits that count the work (issue 9): a recurring booking is charged one
-- unit of booking_occurrences per occurrence, before anything is written;
-- the limiter takes several units at once, all or nothing.
\set SHOW_CONTEXT never
SELECT set_config('request.jwt.claims', '', false) = '' AS superuser_session;
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
    -- Retry-After counts down while the file runs: a whole window, give or
    -- take the seconds a loaded machine spends between charge and denial.
    RETURN st || ' ' || msg || ' ' || (CASE WHEN det::jsonb #> '{headers,Retry-After}' IS NULL THEN det::jsonb
        ELSE jsonb_set(det::jsonb, '{headers,Retry-After}', to_jsonb(CASE
            WHEN (det::jsonb #>> '{headers,Retry-After}')::int BETWEEN (det::jsonb ->> 'window_seconds')::int - 5
                                                                AND (det::jsonb ->> 'window_seconds')::int
            THEN 'the window, within 5 s' ELSE det::jsonb #>> '{headers,Retry-After}' END)) END
        - 'retry_after_ms' - 'retry_after_seconds')::text;
END
$$;

-- The limiter with a cost, on its test clock (at_ms).
SELECT allowed, remaining FROM booking.rate_limit_charge('cost_demo', 'k', 5, 1000, 3, at_ms => 0);
SELECT allowed, remaining, retry_after_ms FROM booking.rate_limit_charge('cost_demo', 'k', 5, 1000, 3, at_ms => 10);
SELECT allowed, remaining FROM booking.rate_limit_charge('cost_demo', 'k', 5, 1000, 2, at_ms => 10);
SELECT allowed, retry_after_ms FROM booking.rate_limit_charge('cost_demo', 'k', 5, 1000, 1, at_ms => 20);
SELECT allowed, remaining FROM booking.rate_limit_charge('cost_demo', 'k', 5, 1000, 3, at_ms => 1000);  -- the first 3 left
SELECT * FROM booking.rate_limit_charge('cost_demo', 'k', 5, 1000, 6, at_ms => 5000);
SELECT * FROM booking.rate_limit_charge('cost_demo', 'k', 5, 1000, 0, at_ms => 5000);
SELECT booking.rate_limit_reset('cost_demo') >= 0 AS reset;

-- A user books series: 300 occurrences fit the 400 per hour, 200 more do not.
SET pg_booking.rate_limit_enabled = on;
SELECT set_config('request.client_ip', '203.0.113.93', false) IS NOT NULL AS remote;
SELECT t_strip(api.register('rec@limits.test', 'rec-password', 'Rec Urring')) ->> 'email' AS rec;
INSERT INTO booking.rooms (name, location, capacity) VALUES ('Series Room', 'Annex', 6), ('Series Room 2', 'Annex', 6);
SELECT t_as('rec@limits.test', 'booking_user');
SET ROLE booking_user;
SELECT jsonb_array_length(api.create_booking(t_room('Series Room'), '2031-01-01T09:00:00Z', '2031-01-01T09:30:00Z', 'Daily',
       '{"frequency": "daily", "count": 300}') -> 'bookings') AS booked;
SELECT pg_temp.try($$SELECT api.create_booking(t_room('Series Room 2'), '2031-01-01T09:00:00Z', '2031-01-01T09:30:00Z', 'Daily',
       '{"frequency": "daily", "count": 200}')$$) AS second_series;
-- Nothing of the refused series was written.
SELECT count(*) AS in_room_2 FROM booking.bookings WHERE room_id = t_room('Series Room 2');
-- A series larger than the rule itself is a 422, not a wait.
RESET ROLE;
UPDATE booking.rate_limits SET max_requests = 100 WHERE endpoint = 'booking_occurrences';
SET ROLE booking_user;
SELECT pg_temp.try($$SELECT api.create_booking(t_room('Series Room 2'), '2032-01-01T09:00:00Z', '2032-01-01T09:30:00Z', 'Weekly',
       '{"frequency": "weekly", "count": 101}')$$) AS too_long;
SELECT count(*) AS in_room_2 FROM booking.bookings WHERE room_id = t_room('Series Room 2');
-- A single booking is one occurrence.
SELECT api.create_booking(t_room('Series Room 2'), '2033-01-01T09:00:00Z', '2033-01-01T09:30:00Z', 'Single') ->> 'status' AS single;
RESET ROLE;
UPDATE booking.rate_limits SET max_requests = 400 WHERE endpoint = 'booking_occurrences';

-- Password changes: per user (5 per 15 minutes), checked before hashing.
SELECT t_as('rec@limits.test', 'booking_user');
SET ROLE booking_user;
SELECT pg_temp.try(format($$SELECT api.update_me(password => 'rec-password-%s', current_password => 'wrong-password')$$, n)) AS change
  FROM generate_series(1, 6) n;
RESET ROLE;
SELECT set_config('request.client_ip', '', false) = '' AS local_again;
SET pg_booking.rate_limit_enabled = off;
SELECT set_config('request.jwt.claims', '', false) = '' AS superuser_session;

-- bcrypt slots: a hash holds one of pg_booking.password_hash_slots
-- advisory locks to the end of its transaction (adapter/t/071_adapter_password_hashing.pl
-- shows other requests keep their speed while one user hammers).
SHOW pg_booking.password_hash_slots;
BEGIN;
SELECT booking.password_hash_slot();
SELECT count(*) AS slot_locks FROM pg_locks WHERE locktype = 'advisory' AND classid = x'5204'::integer AND pid = pg_backend_pid();
ROLLBACK;
