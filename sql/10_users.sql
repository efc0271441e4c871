-- Users: register, login, tokens, self-service, administration.
\set SHOW_CONTEXT never
SET timezone TO 'UTC';

-- Registration is public.
SET ROLE booking_anon;
SELECT t_strip(api.register('alice@example.com', 'alice-password', 'Alice Archer'));
SELECT t_strip(api.register('bob@example.com', 'bob-password', 'Bob Baker'));
SELECT t_strip(api.register('carol@example.com', 'carol-password', 'Carol Cole'));
-- Bad input: each a clear error and nothing written.
SELECT api.register('ALICE@Example.com', 'another-password', 'Alice Again');   -- duplicate, any case
SELECT api.register('dave@example.com', 'short', 'Dave');                      -- password < 8
SELECT api.register('dave@example.com', repeat('x', 73), 'Dave');              -- > 72 bytes (bcrypt)
SELECT api.register('not-an-email', 'dave-password', 'Dave');                  -- malformed email
SELECT api.register('dave@@example.com', 'dave-password', 'Dave');             -- malformed email
SELECT api.register(NULL, 'dave-password', 'Dave');                            -- missing email
SELECT api.register('dave@example.com', 'dave-password', '   ');               -- blank name
-- SQL injection strings are stored as plain data.
SELECT t_strip(api.register('mallory@example.com', 'mallory-password', 'Robert''); DROP TABLE booking.users; --'));
RESET ROLE;
SELECT count(*) AS users, count(*) FILTER (WHERE email LIKE 'dave%') AS daves FROM booking.users;
SELECT full_name FROM booking.users WHERE email = 'mallory@example.com';
-- Passwords are stored as bcrypt hashes.
SELECT email, password_hash LIKE '$2a$10$%' AS bcrypt FROM booking.users ORDER BY id;

-- Staff accounts are made by promoting users (a superuser in psql may do anything).
SELECT t_strip(api.register('admin@example.com', 'admin-password', 'Ada Admin'));
SELECT t_strip(api.register('fm@example.com', 'fm-password', 'Fred Facilities'));
SELECT t_strip(api.register('auditor@example.com', 'auditor-password', 'Aud Itor'));
SELECT t_strip(api.register('mod@example.com', 'mod-password', 'Mo Derator'));
SELECT t_strip(api.register('svc@example.com', 'svc-password', 'Service Account'));
SELECT email, api.update_user(t_id(email), role) ->> 'role' AS role
  FROM (VALUES ('admin@example.com', 'admin'), ('fm@example.com', 'facility_manager'),
               ('auditor@example.com', 'auditor'), ('mod@example.com', 'moderator'),
               ('svc@example.com', 'service_account')) v(email, role);

-- Login returns a signed HS256 JWT and a refresh token.
SET ROLE booking_anon;
SELECT t_strip(api.login('Alice@Example.com', 'alice-password')) AS login;
SELECT api.login('alice@example.com', 'wrong-password');
SELECT api.login('nobody@example.com', 'alice-password');
SELECT api.login('alice@example.com', NULL);
RESET ROLE;
-- Check the token: header, claims, and the signature recomputed with the secret.
SELECT api.login('alice@example.com', 'alice-password') AS tok \gset
SELECT convert_from(decode(rpad(translate(split_part(:'tok'::jsonb ->> 'access_token', '.', 1), '-_', '+/'),
                                4 * ceil(length(split_part(:'tok'::jsonb ->> 'access_token', '.', 1)) / 4.0)::int, '='),
                           'base64'), 'UTF8')::jsonb AS header;
SELECT c ->> 'sub' AS sub, c ->> 'role' AS role, (c ->> 'exp')::bigint - (c ->> 'iat')::bigint AS lifetime_s
  FROM (SELECT convert_from(decode(rpad(translate(split_part(:'tok'::jsonb ->> 'access_token', '.', 2), '-_', '+/'),
                                        4 * ceil(length(split_part(:'tok'::jsonb ->> 'access_token', '.', 2)) / 4.0)::int, '='),
                                   'base64'), 'UTF8')::jsonb AS c) x;
SELECT booking.base64url(booking.hmac_sha256(split_part(t, '.', 1) || '.' || split_part(t, '.', 2),
                                             current_setting('pg_booking.jwt_secret'))) = split_part(t, '.', 3) AS signature_ok
  FROM (SELECT :'tok'::jsonb ->> 'access_token' AS t) x;
-- Refresh tokens are stored hashed, never as given.
SELECT count(*) AS stored_in_clear FROM booking.refresh_tokens WHERE token_hash = convert_to(:'tok'::jsonb ->> 'refresh_token', 'UTF8');
SET ROLE booking_anon;
SELECT t_strip(api.refresh(:'tok'::jsonb ->> 'refresh_token')) AS refreshed;
SELECT api.refresh('not-a-refresh-token');
RESET ROLE;

-- Self-service as Alice.
SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
SELECT t_strip(api.me());
SELECT t_strip(api.update_me(full_name => 'Alice A. Archer'));
SELECT api.update_me(password => 'short');
SELECT t_strip(api.update_me(password => 'alice-new-password', current_password => 'alice-password')) ->> 'full_name' AS name;
-- A user sees only their own row; the admin routes are refused.
SELECT count(*) AS visible_users FROM booking.users;
SELECT api.list_users();
SELECT api.get_user(t_id('bob@example.com'));
SELECT api.update_user(t_id('alice@example.com'), role => 'admin');
-- Column privileges: a user cannot read password hashes, nor promote themselves directly.
SELECT password_hash FROM booking.users;
UPDATE booking.users SET role = 'admin';
-- Logout revokes every refresh token of the caller.
SELECT api.logout();
RESET ROLE;
SELECT api.login('alice@example.com', 'alice-password');  -- the old password is refused
SELECT t_strip(api.login('alice@example.com', 'alice-new-password')) AS new_password_accepted;
SELECT count(*) FILTER (WHERE revoked_at IS NULL) AS live, count(*) FILTER (WHERE revoked_at IS NOT NULL) AS revoked
  FROM booking.refresh_tokens WHERE user_id = t_id('alice@example.com');
SET ROLE booking_anon;
SELECT api.refresh(:'tok'::jsonb ->> 'refresh_token');
RESET ROLE;

-- Admin: list, get, update; bad input.
SELECT t_as('admin@example.com', 'booking_admin');
SET ROLE booking_admin;
SELECT jsonb_array_length(api.list_users()) AS users, jsonb_array_length(api.list_users(lim => 2, off => 1)) AS page;
SELECT api.list_users(lim => 501);
SELECT api.list_users(off => -1);
SELECT t_strip(api.get_user(t_id('bob@example.com')));
SELECT api.get_user(999);
SELECT api.update_user(t_id('bob@example.com'), role => 'superhero');
SELECT t_strip(api.update_user(t_id('carol@example.com'), active => false)) ->> 'active' AS carol_active;
RESET ROLE;
SELECT api.login('carol@example.com', 'carol-password');   -- deactivated users cannot sign in
SELECT api.update_user(t_id('carol@example.com'), active => true) ->> 'active' AS carol_active;

-- Auditor: reads, cannot change.
SELECT t_as('auditor@example.com', 'booking_auditor');
SET ROLE booking_auditor;
SELECT jsonb_array_length(api.list_users()) AS users;
SELECT api.update_user(t_id('bob@example.com'), active => false);
RESET ROLE;

-- Claims: an unknown role, an anonymous caller.
SELECT t_as('alice@example.com', 'booking_superhero');
SET ROLE booking_user;
SELECT api.me();
RESET ROLE;
SELECT set_config('request.jwt.claims', '', false) = '' AS anonymous;
SET ROLE booking_anon;
SELECT api.me();
RESET ROLE;
