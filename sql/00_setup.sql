-- The extension is loaded by pg_regress (--load-extension); check what it made.
SELECT extname, extversion FROM pg_extension WHERE extname IN ('pg_booking', 'pgcrypto') ORDER BY 1;
SELECT nspname FROM pg_namespace WHERE nspname IN ('api', 'booking') ORDER BY 1;
SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE 'booking\_%' ORDER BY 1;
-- Every api function has a comment.
SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'api' AND obj_description(p.oid, 'pg_proc') IS NULL;
-- PUBLIC may execute nothing of ours.
SELECT n.nspname, p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname IN ('api', 'booking') AND has_function_privilege('public', p.oid, 'EXECUTE');
-- The JWT secret is hidden from everyone but superusers.
SET ROLE booking_user;
SHOW pg_booking.jwt_secret;
RESET ROLE;
