-- Sessions that end (issue 9): a token stands while its user is active,
-- holds the token's role and its session has not ended.  Checked where the
-- caller is decided (booking.current_user_id / current_app_role, in C),
-- so api functions and row-level security policies refuse alike.
\set SHOW_CONTEXT never
SELECT t_strip(api.register('sam@sessions.test', 'sam-password', 'Sam Session')) ->> 'email' AS sam;
SELECT t_strip(api.register('sue@sessions.test', 'sue-password', 'Sue Session')) ->> 'email' AS sue;
-- The claims of an access token, as the adapter sets them after verifying it.
CREATE FUNCTION pg_temp.claims_of(login jsonb) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$ SELECT convert_from(decode(rpad(translate(split_part(login ->> 'access_token', '.', 2), '-_', '+/'),
                                      4 * ceil(length(split_part(login ->> 'access_token', '.', 2)) / 4.0)::int, '='),
                                 'base64'), 'UTF8') $$;
CREATE FUNCTION pg_temp.act(claims text) RETURNS boolean
LANGUAGE sql VOLATILE
AS $$ SELECT set_config('request.jwt.claims', claims, false) IS NOT NULL $$;

-- A login opens a session: its id is the "sid" claim of the access token.
SELECT api.login('sam@sessions.test', 'sam-password') AS sam1 \gset
SELECT api.login('sam@sessions.test', 'sam-password') AS sam2 \gset
SELECT (pg_temp.claims_of(:'sam1')::jsonb ? 'sid') AS has_sid,
       (pg_temp.claims_of(:'sam1')::jsonb ->> 'sid') <> (pg_temp.claims_of(:'sam2')::jsonb ->> 'sid') AS two_sessions;
SELECT count(*) AS live_sessions FROM booking.sessions WHERE user_id = t_id('sam@sessions.test') AND ended_at IS NULL;
SELECT pg_temp.act(pg_temp.claims_of(:'sam1'));
SELECT api.me() ->> 'email' AS me_first;
SELECT pg_temp.act(pg_temp.claims_of(:'sam2'));
SELECT api.me() ->> 'email' AS me_second;

-- Logout ends every session of the caller: both access tokens stop at once.
SELECT pg_temp.act(pg_temp.claims_of(:'sam1'));
SET ROLE booking_user;
SELECT api.logout();
SELECT api.me();
-- Row-level security asks the same question: reading a table refuses too.
SELECT count(*) FROM booking.bookings;
RESET ROLE;
SELECT pg_temp.act(pg_temp.claims_of(:'sam2'));
SET ROLE booking_user;
SELECT api.me();
RESET ROLE;
SELECT end_reason, count(*) FROM booking.sessions WHERE user_id = t_id('sam@sessions.test') GROUP BY 1;
-- ... and the refresh tokens of the sessions are revoked.
SET ROLE booking_anon;
SELECT pg_temp.act('');
SELECT api.refresh(:'sam1'::jsonb ->> 'refresh_token');
RESET ROLE;
-- A new login works at once (a session of its own).
SELECT api.login('sam@sessions.test', 'sam-password') AS sam3 \gset
SELECT pg_temp.act(pg_temp.claims_of(:'sam3'));
SET ROLE booking_user;
SELECT api.me() ->> 'email' AS after_new_login;
RESET ROLE;

-- A password change needs the current password, and ends every other
-- session and every refresh token; the session that changed it goes on.
SELECT api.login('sam@sessions.test', 'sam-password') AS sam4 \gset
SELECT pg_temp.act(pg_temp.claims_of(:'sam3'));
SET ROLE booking_user;
SELECT api.update_me(password => 'sam-new-password');
SELECT api.update_me(password => 'sam-new-password', current_password => 'wrong-password');
SELECT api.update_me(password => 'short', current_password => 'sam-password');
SELECT api.update_me(password => 'sam-new-password', current_password => 'sam-password') ->> 'email' AS changed;
SELECT api.me() ->> 'email' AS same_session_goes_on;
RESET ROLE;
SELECT pg_temp.act(pg_temp.claims_of(:'sam4'));
SET ROLE booking_user;
SELECT api.me();
RESET ROLE;
SELECT pg_temp.act('');
SET ROLE booking_anon;
SELECT api.refresh(:'sam3'::jsonb ->> 'refresh_token');
SELECT api.refresh(:'sam4'::jsonb ->> 'refresh_token');
SELECT api.login('sam@sessions.test', 'sam-password');
SELECT api.login('sam@sessions.test', 'sam-new-password') ? 'access_token' AS new_password_works;
RESET ROLE;
-- Nothing of the password reaches the trail or the sessions.
SELECT count(*) AS hashes_anywhere FROM booking.audit_log WHERE before::text LIKE '%$2a$%' OR after::text LIKE '%$2a$%';

-- A refresh gives a token of the same session, which ends with it.
SELECT api.login('sue@sessions.test', 'sue-password') AS sue1 \gset
SET ROLE booking_anon;
SELECT api.refresh(:'sue1'::jsonb ->> 'refresh_token') AS sue1r \gset
RESET ROLE;
SELECT pg_temp.claims_of(:'sue1r')::jsonb ->> 'sid' = pg_temp.claims_of(:'sue1')::jsonb ->> 'sid' AS same_session;

-- A role change ends the user's sessions: a token with the old role, or
-- one re-signed with the new role in the old session, is refused.
SELECT api.update_user(t_id('sue@sessions.test'), role => 'facility_manager') ->> 'role' AS sue_role;
SELECT pg_temp.act(pg_temp.claims_of(:'sue1r'));
SET ROLE booking_user;
SELECT api.me();
SELECT api.list_rooms();
RESET ROLE;
SELECT pg_temp.act((pg_temp.claims_of(:'sue1r')::jsonb || '{"role": "booking_facility_manager"}')::text);
SET ROLE booking_facility_manager;
SELECT api.create_room('Demoted Room', 'Nowhere', 4);
RESET ROLE;
SELECT pg_temp.act('');
-- A fresh login has the new role.
SELECT api.login('sue@sessions.test', 'sue-password') AS sue2 \gset
SELECT pg_temp.claims_of(:'sue2')::jsonb ->> 'role' AS new_token_role;

-- Deactivation: every token of the user stops, with or without a session.
SELECT api.update_user(t_id('sue@sessions.test'), active => false) ->> 'active' AS sue_active;
SELECT pg_temp.act(pg_temp.claims_of(:'sue2'));
SET ROLE booking_facility_manager;
SELECT api.me() ->> 'email';
RESET ROLE;
SELECT t_as('sue@sessions.test', 'booking_facility_manager');
SET ROLE booking_facility_manager;
SELECT api.me() ->> 'email';
RESET ROLE;
SELECT pg_temp.act('');
SELECT api.update_user(t_id('sue@sessions.test'), active => true) ->> 'active' AS sue_active;
SELECT end_reason, count(*) FROM booking.sessions WHERE user_id = t_id('sue@sessions.test') GROUP BY 1 ORDER BY 1;

-- Tokens without a session id (signed by hand with the secret) are held to
-- the user's cutoff by "iat": one issued before the last logout is refused.
SELECT pg_temp.act(format('{"sub": "%s", "role": "booking_user", "iat": %s}',
                          t_id('sam@sessions.test'), floor(extract(epoch FROM now())) - 3600));
SET ROLE booking_user;
SELECT api.me();
RESET ROLE;
SELECT pg_temp.act(format('{"sub": "%s", "role": "booking_user", "iat": %s}',
                          t_id('sam@sessions.test'), floor(extract(epoch FROM now())) + 1));
SET ROLE booking_user;
SELECT api.me() ->> 'email' AS later_iat_accepted;
RESET ROLE;
-- A session id of another user is no session of this one.
SELECT pg_temp.act(format('{"sub": "%s", "role": "booking_user", "sid": %s}',
                          t_id('sam@sessions.test'), pg_temp.claims_of(:'sue2')::jsonb ->> 'sid'));
SET ROLE booking_user;
SELECT api.me();
RESET ROLE;
SELECT pg_temp.act('');

-- The claims are parsed once per transaction, keyed by the setting's text:
-- in one transaction, a change of the setting is seen at once.
BEGIN;
SELECT t_as('sam@sessions.test', 'booking_user');
SELECT booking.current_user_id() = t_id('sam@sessions.test') AS first_caller;
SELECT t_as('alice@example.com', 'booking_user');
SELECT booking.current_user_id() = t_id('alice@example.com') AS second_caller, booking.current_app_role();
SELECT set_config('request.jwt.claims', '{"sub": "1", "role": "booking_wizard"}', true) IS NOT NULL;
SELECT booking.current_app_role();
ROLLBACK;
SELECT set_config('request.jwt.claims', 'not json', false) IS NOT NULL;
SELECT booking.current_user_id();
SELECT pg_temp.act('');
SELECT booking.current_app_role() AS psql_without_claims;
