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
-- The anonymous role may call only the public routes.
SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'api' AND has_function_privilege('booking_anon', p.oid, 'EXECUTE') ORDER BY 1;
-- Every SECURITY DEFINER function pins its search_path.
SELECT p.oid::regprocedure FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname IN ('api', 'booking') AND p.prosecdef
   AND NOT coalesce(p.proconfig::text LIKE '%search_path%', false);
-- The JWT secret is hidden from everyone but superusers.
SET ROLE booking_user;
SHOW pg_booking.jwt_secret;
SELECT current_setting('pg_booking.jwt_secret');
RESET ROLE;

-- Test helpers, used by the later files (they run in this database).
-- t_strip: drop the keys whose values change from run to run.
CREATE FUNCTION public.t_strip(j jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE jsonb_typeof(j)
        WHEN 'object' THEN (SELECT coalesce(jsonb_object_agg(k, public.t_strip(v)), '{}')
                              FROM jsonb_each(j) e(k, v)
                             WHERE k NOT IN ('created_at', 'updated_at', 'series_id', 'access_token',
                                             'refresh_token', 'request_id'))
        WHEN 'array' THEN (SELECT coalesce(jsonb_agg(public.t_strip(v) ORDER BY n), '[]')
                             FROM jsonb_array_elements(j) WITH ORDINALITY a(v, n))
        ELSE j END
$$;
-- t_as: act as the user with this email in this session (the adapter does
-- the same per request, with the claims of the verified token); then
-- SET ROLE to the matching database role.
CREATE FUNCTION public.t_as(email text, role text) RETURNS boolean
LANGUAGE sql VOLATILE SECURITY DEFINER
AS $$ SELECT set_config('request.jwt.claims',
                        jsonb_build_object('sub', (SELECT id FROM booking.users u WHERE u.email = t_as.email)::text,
                                           'role', role)::text, false) IS NOT NULL $$;
-- t_id: a user's id by email (ids depend on the order of the test files).
CREATE FUNCTION public.t_id(email text) RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER
AS $$ SELECT id FROM booking.users u WHERE u.email = t_id.email $$;
GRANT EXECUTE ON FUNCTION public.t_strip(jsonb), public.t_as(text, text), public.t_id(text) TO PUBLIC;
-- t_room: a room's id by name.
CREATE FUNCTION public.t_room(name text) RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER
AS $$ SELECT id FROM booking.rooms r WHERE r.name = t_room.name $$;
GRANT EXECUTE ON FUNCTION public.t_room(text) TO PUBLIC;
