-- Labels that do not lie, and the extension's own lock space (issue 10).
SET client_min_messages = warning;
\set VERBOSITY terse
-- No PARALLEL SAFE function of ours has an EXCEPTION block (a subtransaction).
SELECT p.oid::regprocedure FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname IN ('api', 'booking') AND p.proparallel = 's' AND p.prosrc ~* '\mEXCEPTION\s+WHEN';
-- ... nor calls one of ours that is not PARALLEL SAFE.
SELECT p.oid::regprocedure AS safe, q.oid::regprocedure AS calls
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace,
       pg_proc q JOIN pg_namespace m ON m.oid = q.pronamespace
 WHERE n.nspname IN ('api', 'booking') AND m.nspname IN ('api', 'booking')
   AND p.proparallel = 's' AND q.proparallel <> 's' AND p.prosrc ~ (m.nspname || '\.' || q.proname || '\(');
-- No IMMUTABLE function raises unconditionally by design (raise_error is VOLATILE).
SELECT p.proname, p.provolatile FROM pg_proc p WHERE p.oid = 'booking.raise_error'::regproc;
-- No advisory lock of ours in the classes SQL's pg_advisory_lock() uses.
SELECT p.oid::regprocedure FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname IN ('api', 'booking') AND p.prosrc ~ 'pg_advisory';
BEGIN;
SELECT booking.checkout_date_lock('2030-01-01');
SELECT locktype, classid::int = ('2030-01-01'::date - '2000-01-01'::date) AS keyed_by_the_date, objsubid = x'5203'::int AS own_class, mode
  FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
ROLLBACK;
-- The checkout still runs once per date through the new lock.
SELECT api.run_checkout(as_of => '2020-01-01') ->> 'business_date' AS ran;
SELECT api.run_checkout(as_of => '2020-01-01') ->> 'business_date' AS again;
-- ... which is the lock checkout_start takes.
SELECT prosrc ~ 'booking\.checkout_date_lock\(d\)' AS checkout_start_uses_it FROM pg_proc WHERE oid = 'booking.checkout_start'::regproc;
-- Each rule of a booking's shape once (extension/booking_rules.c): no SQL of
-- ours restates the clash gap (buffer before + after), the longest booking,
-- the order of a booking's times or a room's activeness check ...
SELECT p.oid::regprocedure FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname IN ('api', 'booking')
   AND p.prosrc ~* 'buffer_before_minutes\s*\+|interval ''24 hours''|ends_at\s*<=\s*starts_at|NOT\s+r\.active';
-- ... nor a CHECK of booking.bookings (the trigger checks every row's times).
SELECT conname FROM pg_constraint WHERE conrelid = 'booking.bookings'::regclass AND contype = 'c' AND conname IN ('bookings_times_order', 'bookings_max_length');
-- The same rule answers from SQL and from the trigger, with the same words.
\set VERBOSITY default
SELECT booking.check_booking_times('2099-01-01 10:00+00', '2099-01-01 09:00+00');
SELECT booking.clash_gap(15, 10), booking.max_booking_length();
