-- Rate limits: rules, the exact sliding log on a test clock, the api
-- endpoints that check their rule (login per IP, booking creation per user),
-- rollbacks still counting, denial counters, bad rules, privileges.
\set SHOW_CONTEXT never
SET timezone TO 'UTC';
-- regress.conf turns the limits off for the other files; this one tests them.
SET pg_booking.rate_limit_enabled = on;

SELECT endpoint, max_requests, window_length, key_kind, exempt_roles FROM booking.rate_limits ORDER BY endpoint;

-- try(sql): run a statement and show its outcome as one line: the api
-- answer, or the SQLSTATE, message and DETAIL with the wait replaced by
-- whether it is in range, since it depends on timing: 1 ms .. the window
-- + 1 ms (an admission counts from the end of the millisecond it came in).
CREATE FUNCTION pg_temp.try(q text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    r jsonb;
    st text;
    msg text;
    det text;
    d jsonb;
BEGIN
    EXECUTE q INTO r;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
    d := nullif(det, '')::jsonb;
    IF d ? 'retry_after_seconds' THEN
        d := d - 'retry_after_ms' - 'retry_after_seconds' - 'headers'
             || jsonb_build_object('wait_in_range',
                    (d ->> 'retry_after_ms')::bigint BETWEEN 1 AND 1000 * (d ->> 'window_seconds')::numeric + 1
                    AND (d ->> 'retry_after_seconds')::bigint = ceil((d ->> 'retry_after_ms')::bigint / 1000.0)
                    -- the Retry-After header the error asks the adapter for says the same
                    AND d -> 'headers' ->> 'Retry-After' = d ->> 'retry_after_seconds');
    END IF;
    RETURN st || ' ' || msg || coalesce(' ' || d::text, '');
END
$$;

-- The algorithm on a test clock (at_ms): 3 per 1000 ms.  The 4th request
-- waits until the 1st leaves the window, to the millisecond; a dry run
-- answers without counting.
SELECT t, allowed, remaining, retry_after_ms
  FROM unnest(ARRAY[0, 1, 2, 3, 999]) t,
       LATERAL booking.rate_limit_check('clock_demo', 'k1', 3, 1000, t) c;
SELECT allowed, retry_after_ms FROM booking.rate_limit_check('clock_demo', 'k1', 3, 1000, 999, dry_run => true);
SELECT allowed, remaining FROM booking.rate_limit_check('clock_demo', 'k1', 3, 1000, 1000);   -- the 1st left at 1000
SELECT allowed, retry_after_ms FROM booking.rate_limit_check('clock_demo', 'k1', 3, 1000, 1000);  -- the 2nd leaves at 1001
-- Another key has its own log.
SELECT allowed, remaining FROM booking.rate_limit_check('clock_demo', 'k2', 3, 1000, 1000);
-- Exact, unlike a burst limiter: 3 at the end of one window and 3 at the
-- start of the next would be 6 within 2 ms; here the 4th waits a full window.
SELECT string_agg(allowed::text, ' ' ORDER BY t)
  FROM unnest(ARRAY[5000, 5998, 5999, 6000, 6001, 6998, 6999]) t,
       LATERAL booking.rate_limit_check('clock_demo', 'k3', 3, 1000, t) c;
-- Bad arguments.
SELECT * FROM booking.rate_limit_check('clock_demo', 'k1', 3, 0);
SELECT * FROM booking.rate_limit_check('clock_demo', 'k1', 3, -1000);
SELECT * FROM booking.rate_limit_check('clock_demo', 'k1', 0, 1000);
SELECT * FROM booking.rate_limit_check('', 'k1', 3, 1000);
SELECT * FROM booking.rate_limit_check('clock_demo', NULL, 3, 1000);

-- Login: 5 per 10 s per client IP (the adapter sets request.client_ip).
SELECT set_config('request.client_ip', '203.0.113.7', false) IS NOT NULL AS ip_set;
SELECT t_strip(api.register('limits@example.com', 'limits-password', 'Lim Its')) ->> 'email' AS registered;
SELECT pg_temp.try($$SELECT api.login('limits@example.com', 'limits-password')$$) AS login
  FROM generate_series(1, 5);
-- the 6th in 10 s from this IP, right password or not
SELECT pg_temp.try($$SELECT api.login('limits@example.com', 'limits-password')$$) AS sixth_login;
SELECT pg_temp.try($$SELECT api.login('limits@example.com', 'wrong-password')$$) AS seventh_login;
-- another IP still logs in
SELECT set_config('request.client_ip', '198.51.100.23', false) IS NOT NULL AS ip_set;
SELECT pg_temp.try($$SELECT api.login('limits@example.com', 'limits-password')$$) AS other_ip;
-- Within the limit, the RateLimit headers go to response.headers.
BEGIN;
SELECT api.login('limits@example.com', 'limits-password') ? 'access_token' AS logged_in;
-- (RateLimit-Reset depends on timing: shown as whether it is within 1 .. 11 s)
SELECT jsonb_object_agg(k, CASE WHEN k = 'RateLimit-Reset' THEN to_jsonb(v::integer BETWEEN 1 AND 11) ELSE to_jsonb(v) END) AS headers
  FROM jsonb_array_elements(current_setting('response.headers')::jsonb) h, jsonb_each_text(h) x(k, v);
COMMIT;

-- A hit counts even when the calling transaction rolls back.
SELECT set_config('request.client_ip', '192.0.2.99', false) IS NOT NULL AS ip_set;
BEGIN; SELECT api.login('limits@example.com', 'limits-password') ? 'access_token' AS rolled_back; ROLLBACK;
BEGIN; SELECT api.login('limits@example.com', 'limits-password') ? 'access_token' AS rolled_back; ROLLBACK;
BEGIN; SELECT api.login('limits@example.com', 'limits-password') ? 'access_token' AS rolled_back; ROLLBACK;
BEGIN; SELECT api.login('limits@example.com', 'limits-password') ? 'access_token' AS rolled_back; ROLLBACK;
BEGIN; SELECT api.login('limits@example.com', 'limits-password') ? 'access_token' AS rolled_back; ROLLBACK;
SELECT pg_temp.try($$SELECT api.login('limits@example.com', 'limits-password')$$) AS after_rollbacks;

-- Registration: per IP too; the refused one creates no user.
UPDATE booking.rate_limits SET max_requests = 2 WHERE endpoint = 'register';
SELECT set_config('request.client_ip', '192.0.2.200', false) IS NOT NULL AS ip_set;
SELECT pg_temp.try(format($$SELECT api.register('signup%s@example.com', 'signup-password', 'Sign Up')$$, i)) AS register
  FROM generate_series(1, 3) i;
SELECT count(*) AS signups FROM booking.users WHERE email LIKE 'signup%';
UPDATE booking.rate_limits SET max_requests = 10 WHERE endpoint = 'register';

-- A session on a local socket without a client IP is the database host
-- itself: not limited (this is how the other test files run).
SELECT set_config('request.client_ip', '', false) IS NOT NULL AS ip_cleared;
SELECT booking.rate_limit_key('ip') AS local_key;
SELECT count(*) FILTER (WHERE pg_temp.try($$SELECT api.login('limits@example.com', 'limits-password')$$) = 'ok') AS local_logins
  FROM generate_series(1, 7);

-- Booking creation: per user.  Changing a rule starts its accounting afresh.
UPDATE booking.rate_limits SET max_requests = 2 WHERE endpoint = 'create_booking';
SELECT t_as('limits@example.com', 'booking_user');
SELECT booking.rate_limit_key('user') = t_id('limits@example.com')::text AS keyed_by_user;
SET ROLE booking_user;
-- A hold (the third) is a create like any other and counts; a hold_minutes
-- out of range (the first) is refused before anything is counted.
SELECT pg_temp.try(format($$SELECT api.create_booking(%s, '2099-03-0%sT09:00:00Z', '2099-03-0%sT10:00:00Z', 'Limited', hold_minutes => %s)$$,
                          t_room('Cupboard'), d, d, CASE d WHEN 1 THEN '0' WHEN 3 THEN '5' ELSE 'NULL' END)) AS create_booking
  FROM generate_series(1, 4) d;
-- the refused one wrote nothing
SELECT count(*) AS my_bookings FROM booking.bookings WHERE title = 'Limited';
RESET ROLE;
-- another user has a budget of their own
SELECT t_as('bob@example.com', 'booking_user');
SET ROLE booking_user;
SELECT pg_temp.try(format($$SELECT api.create_booking(%s, '2099-03-05T09:00:00Z', '2099-03-05T10:00:00Z', 'Limited')$$,
                          t_room('Cupboard'))) AS bob_creates;
RESET ROLE;
-- admins are exempt from the per-user rules
SELECT t_as('admin@example.com', 'booking_admin');
SET ROLE booking_admin;
SELECT count(*) FILTER (WHERE pg_temp.try(format($$SELECT api.create_booking(%s, '2099-04-0%sT09:00:00Z', '2099-04-0%sT10:00:00Z', 'Admin')$$,
                                                  t_room('Cupboard'), d, d)) = 'ok') AS admin_creates
  FROM generate_series(1, 4) d;
RESET ROLE;
UPDATE booking.rate_limits SET max_requests = 30 WHERE endpoint = 'create_booking';
SELECT set_config('request.jwt.claims', '', false) = '' AS anonymous;

-- An endpoint without a rule is not limited; nor is anyone when the limits
-- are off (superusers only).
SELECT set_config('request.client_ip', '203.0.113.7', false) IS NOT NULL AS ip_set;
SELECT count(*) AS unruled FROM generate_series(1, 20), LATERAL booking.rate_limit_hit('no_such_endpoint');
INSERT INTO booking.rate_limits VALUES ('regress_probe', 1, '1 hour', 'ip');
SELECT pg_temp.try($$SELECT '{}'::jsonb FROM booking.rate_limit_hit('regress_probe')$$) AS first_probe;
SELECT pg_temp.try($$SELECT '{}'::jsonb FROM booking.rate_limit_hit('regress_probe')$$) AS second_probe;
SET pg_booking.rate_limit_enabled = off;
SELECT pg_temp.try($$SELECT '{}'::jsonb FROM booking.rate_limit_hit('regress_probe')$$) AS limits_off;
SET pg_booking.rate_limit_enabled = on;
DELETE FROM booking.rate_limits WHERE endpoint = 'regress_probe';
SET ROLE booking_user;
SET pg_booking.rate_limit_enabled = off;
RESET ROLE;

-- Denials per endpoint, for analytics.
SELECT endpoint, denials, admitted, keys_tracked, forced_evictions
  FROM booking.rate_limit_denials WHERE endpoint IN ('login', 'create_booking') ORDER BY endpoint;
SELECT endpoint, keys, denied, bytes_per_key, capacity > 1000 AS roomy
  FROM booking.rate_limit_stats() WHERE endpoint = 'clock_demo';

-- Bad rules: each a clear error, nothing written.
INSERT INTO booking.rate_limits VALUES ('search', 10, '0 seconds', 'ip');
INSERT INTO booking.rate_limits VALUES ('search', 10, '-5 seconds', 'ip');
INSERT INTO booking.rate_limits VALUES ('search', 0, '1 minute', 'ip');
INSERT INTO booking.rate_limits VALUES ('search', -3, '1 minute', 'ip');
INSERT INTO booking.rate_limits VALUES ('search', 10, '1 month', 'ip');
INSERT INTO booking.rate_limits VALUES ('search', 10, '25 days', 'ip');
INSERT INTO booking.rate_limits VALUES ('search', 10, '0.0005 seconds', 'ip');
INSERT INTO booking.rate_limits VALUES ('search', 10, '1 minute', 'cookie');
INSERT INTO booking.rate_limits VALUES ('Search Page', 10, '1 minute', 'ip');
INSERT INTO booking.rate_limits VALUES ('search', 10, '1 minute', 'user', '{janitor}');
-- pg_booking.rate_limit_rules (16 by default) pools: a 17th rule is refused.
INSERT INTO booking.rate_limits SELECT 'extra_' || i, 10, '1 minute', 'ip' FROM generate_series(1, 12) i;
UPDATE booking.rate_limits SET window_length = '0 seconds' WHERE endpoint = 'login';
UPDATE booking.rate_limits SET window_length = '-10 seconds' WHERE endpoint = 'login';
SELECT count(*) AS rules, count(*) FILTER (WHERE endpoint = 'search') AS search
  FROM booking.rate_limits;
SELECT window_length FROM booking.rate_limits WHERE endpoint = 'login';

-- Privileges: application roles reach the limiter only through the api;
-- admins and auditors read the counters, plain users do not.
SET ROLE booking_user;
SELECT * FROM booking.rate_limit_check('clock_demo', 'k1', 3, 1000, 0);
SELECT count(*) FROM booking.rate_limit_denials;
UPDATE booking.rate_limits SET max_requests = 1000 WHERE endpoint = 'login';
RESET ROLE;
SET ROLE booking_auditor;
SELECT count(*) AS rules_seen FROM booking.rate_limit_denials;
RESET ROLE;

SELECT booking.rate_limit_reset('clock_demo') AS keys_forgotten;
SELECT keys FROM booking.rate_limit_stats() WHERE endpoint = 'clock_demo';
SELECT set_config('request.client_ip', '', false) = '' AS ip_cleared;
