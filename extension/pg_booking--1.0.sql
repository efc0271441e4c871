-- pg_booking 1.0 — base: schemas, roles, errors, request context.
--
-- The install script is assembled from the numbered files of extension/sql/,
-- in file-name order; each file holds one concern.

\echo Use "CREATE EXTENSION pg_booking CASCADE" to load this file. \quit

-- The schema "booking" is created by CREATE EXTENSION (control file: schema).
CREATE SCHEMA api;
COMMENT ON SCHEMA api IS 'pg_booking public functions: the same for psql, the HTTP adapter and PostgREST';
COMMENT ON SCHEMA booking IS 'pg_booking tables and internals';

-- Roles, in PostgREST's style: one NOLOGIN role per application role (the
-- JWT "role" claim names it), an anonymous role, and an authenticator that
-- may switch to any of them.  Roles are cluster-wide, so they survive a
-- DROP EXTENSION and are created only when missing.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['booking_anon', 'booking_user', 'booking_admin',
                             'booking_facility_manager', 'booking_auditor',
                             'booking_moderator', 'booking_service_account']
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
    -- booking_api: what every signed-in role may use (the app roles inherit it).
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'booking_api') THEN
        CREATE ROLE booking_api NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'booking_authenticator') THEN
        CREATE ROLE booking_authenticator LOGIN NOINHERIT;
    END IF;
    GRANT booking_api TO booking_user, booking_admin, booking_facility_manager,
          booking_auditor, booking_moderator, booking_service_account;
    GRANT booking_anon, booking_user, booking_admin, booking_facility_manager,
          booking_auditor, booking_moderator, booking_service_account
       TO booking_authenticator;
END
$$;

-- Nothing in api or booking is callable by PUBLIC: 99_grants.sql revokes
-- PUBLIC's EXECUTE once every function exists and grants the api to the
-- roles.  Internals are granted to booking_api (signed-in callers) by name.
GRANT USAGE ON SCHEMA api, booking TO booking_anon, booking_api;

-- Application roles, as stored in booking.users.role.
CREATE DOMAIN booking.app_role AS text
    CHECK (VALUE IN ('user', 'admin', 'facility_manager', 'auditor', 'moderator', 'service_account'));

-- pgcrypto may live in any schema: bind to it once, here, through wrappers.
DO $$
DECLARE
    s name;
BEGIN
    SELECT n.nspname INTO STRICT s
      FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'pgcrypto';
    EXECUTE format($f$
        CREATE FUNCTION booking.hash_password(password text) RETURNS text
        LANGUAGE sql VOLATILE PARALLEL SAFE
        AS 'SELECT %1$I.crypt(password, %1$I.gen_salt(''bf'', 10))'$f$, s);
    EXECUTE format($f$
        CREATE FUNCTION booking.password_matches(password text, hash text) RETURNS boolean
        LANGUAGE sql STABLE PARALLEL SAFE
        AS 'SELECT hash IS NOT NULL AND %1$I.crypt(password, hash) = hash'$f$, s);
    EXECUTE format($f$
        CREATE FUNCTION booking.hmac_sha256(data text, key text) RETURNS bytea
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        AS 'SELECT %1$I.hmac(convert_to(data, ''UTF8''), convert_to(key, ''UTF8''), ''sha256'')'$f$, s);
    EXECUTE format($f$
        CREATE FUNCTION booking.random_token(nbytes integer) RETURNS text
        LANGUAGE sql VOLATILE PARALLEL SAFE
        AS 'SELECT translate(encode(%1$I.gen_random_bytes(nbytes), ''base64''), E''+/=\n'', ''-_'')'$f$, s);
END
$$;

-- Errors.  Every business error is raised here: SQLSTATE PTxyz gives the HTTP
-- status (PostgREST's convention), the message follows the PostgreSQL style
-- guide, and DETAIL is a JSON object whose "error_code" the adapter returns
-- (further keys are the error's details).  C code raises the same shape
-- (see extension/errors.h).
CREATE FUNCTION booking.raise_error(http_status integer, error_code text, message text,
                                    details jsonb DEFAULT '{}', hint text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    detail text := (jsonb_build_object('error_code', error_code) || coalesce(details, '{}'))::text;
BEGIN
    IF hint IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PT' || http_status::text, MESSAGE = message, DETAIL = detail;
    END IF;
    RAISE EXCEPTION USING ERRCODE = 'PT' || http_status::text, MESSAGE = message, DETAIL = detail, HINT = hint;
END
$$;
COMMENT ON FUNCTION booking.raise_error IS 'raise a pg_booking error: SQLSTATE PT<status>, DETAIL a JSON object with error_code';
GRANT EXECUTE ON FUNCTION booking.raise_error TO booking_anon, booking_api;

-- Request context, as PostgREST sets it: the JWT claims in
-- request.jwt.claims.  A superuser session without claims (psql) may do
-- everything; to act as a user in psql, set request.jwt.claims.
CREATE FUNCTION booking.claims() RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT nullif(current_setting('request.jwt.claims', true), '')::jsonb $$;

CREATE FUNCTION booking.current_user_id() RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT (booking.claims() ->> 'sub')::bigint $$;
COMMENT ON FUNCTION booking.current_user_id IS 'the calling user''s id, from the "sub" claim; NULL when anonymous';

-- The caller's application role.  The "role" claim must name one of our
-- database roles ("booking_<app role>"); anything else is refused, so a
-- forged or stale claim cannot widen access.
CREATE FUNCTION booking.current_app_role() RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
DECLARE
    c jsonb := booking.claims();
    r text;
BEGIN
    IF c IS NULL OR c ->> 'role' IS NULL THEN
        -- session_user, not current_user: inside a SECURITY DEFINER function
        -- current_user is the owner, never the caller.
        RETURN CASE WHEN (SELECT rolsuper FROM pg_roles WHERE rolname = session_user)
                    THEN 'superuser' ELSE 'anon' END;
    END IF;
    r := c ->> 'role';
    IF r = 'booking_anon' THEN
        RETURN 'anon';
    END IF;
    IF r NOT LIKE 'booking\_%' OR NOT (substr(r, 9) IN ('user', 'admin', 'facility_manager', 'auditor', 'moderator', 'service_account')) THEN
        PERFORM booking.raise_error(401, 'UNAUTHORIZED', format('unknown role "%s" in token claims', r));
    END IF;
    RETURN substr(r, 9);
END
$$;
COMMENT ON FUNCTION booking.current_app_role IS 'the caller''s application role from the "role" claim (superuser in psql without claims)';

-- True when the caller's role is one of the given application roles.  A
-- superuser without claims passes every check.
CREATE FUNCTION booking.caller_is(VARIADIC roles text[]) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT booking.current_app_role() = 'superuser' OR booking.current_app_role() = ANY (roles) $$;

-- Refuse the call unless the caller has one of the given roles.
CREATE FUNCTION booking.require_role(VARIADIC roles text[]) RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
BEGIN
    IF booking.current_app_role() = 'anon' THEN
        PERFORM booking.raise_error(401, 'UNAUTHORIZED', 'authentication required');
    END IF;
    IF NOT booking.caller_is(VARIADIC roles) THEN
        PERFORM booking.raise_error(403, 'FORBIDDEN',
            format('role "%s" may not do this', booking.current_app_role()),
            jsonb_build_object('allowed_roles', to_jsonb(roles)));
    END IF;
END
$$;

-- The calling user's id; refuses anonymous callers.
CREATE FUNCTION booking.require_user() RETURNS bigint
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
DECLARE
    uid bigint := booking.current_user_id();
BEGIN
    -- Validates the role claim too: a token with an unknown role is refused.
    IF booking.current_app_role() = 'anon' OR uid IS NULL THEN
        PERFORM booking.raise_error(401, 'UNAUTHORIZED', 'authentication required');
    END IF;
    RETURN uid;
END
$$;

-- Parse an instant given as text.  A time without an explicit zone or offset
-- is refused: "10:00" means different things in different places.
CREATE FUNCTION booking.parse_instant(value text, field text) RETURNS timestamptz
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
BEGIN
    IF value IS NULL THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('%s is required', field),
                                    jsonb_build_object('field', field));
    END IF;
    IF value !~ '^\s*\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|z|[+-]\d{2}(:?\d{2})?)\s*$' THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('%s "%s" is not a timestamp with a time zone', field, value),
            jsonb_build_object('field', field),
            'Give an RFC 3339 timestamp with an offset, such as 2026-12-01T09:00:00+01:00.');
    END IF;
    RETURN value::timestamptz;
EXCEPTION
    WHEN datetime_field_overflow OR invalid_datetime_format THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('%s "%s" is not a valid timestamp', field, value), jsonb_build_object('field', field));
END
$$;

-- Parse a date given as text (YYYY-MM-DD).
CREATE FUNCTION booking.parse_date(value text, field text) RETURNS date
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
BEGIN
    IF value IS NULL THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('%s is required', field),
                                    jsonb_build_object('field', field));
    END IF;
    IF value !~ '^\d{4}-\d{2}-\d{2}$' THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('%s "%s" is not a date in the form YYYY-MM-DD', field, value), jsonb_build_object('field', field));
    END IF;
    RETURN value::date;
EXCEPTION
    WHEN datetime_field_overflow OR invalid_datetime_format THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('%s "%s" is not a valid date', field, value), jsonb_build_object('field', field));
END
$$;

-- Lists: limit defaults to 50, at most 500.
CREATE FUNCTION booking.check_page(lim integer, off integer) RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF lim IS NULL OR lim < 1 OR lim > 500 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('limit %s is out of range', coalesce(lim::text, 'NULL')),
            jsonb_build_object('field', 'limit', 'min', 1, 'max', 500));
    END IF;
    IF off IS NULL OR off < 0 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('offset %s is out of range', coalesce(off::text, 'NULL')),
            jsonb_build_object('field', 'offset', 'min', 0));
    END IF;
END
$$;

GRANT EXECUTE ON FUNCTION booking.claims(), booking.current_user_id(), booking.current_app_role(),
    booking.caller_is(text[]), booking.require_role(text[]), booking.require_user(),
    booking.parse_instant(text, text), booking.parse_date(text, text), booking.check_page(integer, integer)
  TO booking_anon, booking_api;

-- Rate limits: the api functions of limited endpoints call
-- booking.rate_limit_hit(endpoint), defined in 60_ratelimits.sql.
-- Users, passwords and tokens.

CREATE TABLE booking.users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email         text NOT NULL,
    full_name     text NOT NULL,
    password_hash text NOT NULL,
    role          booking.app_role NOT NULL DEFAULT 'user',
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_email_format CHECK (email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' AND length(email) <= 254),
    CONSTRAINT users_full_name_length CHECK (length(btrim(full_name)) BETWEEN 1 AND 200)
);
-- Emails are unique whatever their case.
CREATE UNIQUE INDEX users_email_key ON booking.users (lower(email));
COMMENT ON TABLE booking.users IS 'people who book; password_hash is bcrypt (pgcrypto), never readable through the api';

-- Refresh tokens are stored as SHA-256 hashes: a copy of this table does not
-- let anyone sign in.
CREATE TABLE booking.refresh_tokens (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES booking.users ON DELETE CASCADE,
    token_hash  bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX refresh_tokens_user_idx ON booking.refresh_tokens (user_id) WHERE revoked_at IS NULL;

-- Row-level security: a user sees and changes their own row; admins all;
-- auditors read all.  Someone else's row is simply not there (404).
ALTER TABLE booking.users ENABLE ROW LEVEL SECURITY;
CREATE POLICY users_self ON booking.users TO booking_api
    USING (id = booking.current_user_id());
CREATE POLICY users_admin ON booking.users TO booking_admin USING (true);
CREATE POLICY users_auditor_read ON booking.users FOR SELECT TO booking_auditor USING (true);
GRANT SELECT (id, email, full_name, role, active, created_at, updated_at) ON booking.users TO booking_api;
GRANT UPDATE (full_name, password_hash, updated_at) ON booking.users TO booking_api;
GRANT UPDATE (role, active) ON booking.users TO booking_admin;
ALTER TABLE booking.refresh_tokens ENABLE ROW LEVEL SECURITY;

CREATE FUNCTION booking.user_json(u booking.users) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object('id', u.id, 'email', u.email, 'full_name', u.full_name,
                              'role', u.role, 'active', u.active,
                              'created_at', u.created_at, 'updated_at', u.updated_at)
$$;
GRANT EXECUTE ON FUNCTION booking.user_json(booking.users) TO booking_anon, booking_api;

CREATE FUNCTION booking.validate_password(password text) RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF password IS NULL OR length(password) < 8 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'password is too short',
            jsonb_build_object('field', 'password', 'min_length', 8));
    END IF;
    -- bcrypt reads at most 72 bytes; refuse rather than silently truncate.
    IF octet_length(password) > 72 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'password is too long',
            jsonb_build_object('field', 'password', 'max_bytes', 72));
    END IF;
END
$$;

CREATE FUNCTION booking.validate_full_name(full_name text) RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF full_name IS NULL OR length(btrim(full_name)) NOT BETWEEN 1 AND 200 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'full_name must have 1 to 200 characters',
            jsonb_build_object('field', 'full_name'));
    END IF;
END
$$;
GRANT EXECUTE ON FUNCTION booking.validate_password(text), booking.validate_full_name(text),
    booking.hash_password(text) TO booking_api;

-- base64url without padding (RFC 7515).
CREATE FUNCTION booking.base64url(data bytea) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT translate(encode(data, 'base64'), E'+/=\n', '-_') $$;

-- Sign claims as an HS256 JWT with the secret in pg_booking.jwt_secret, a
-- setting only superusers can read.  Only SECURITY DEFINER functions owned
-- by the extension's owner (login, refresh) call this.
CREATE FUNCTION booking.sign_jwt(claims jsonb) RETURNS text
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    secret text := current_setting('pg_booking.jwt_secret', true);
    signing_input text;
BEGIN
    IF secret IS NULL OR length(secret) < 32 THEN
        RAISE EXCEPTION 'pg_booking.jwt_secret is not set or shorter than 32 bytes'
            USING ERRCODE = 'PT500', DETAIL = '{"error_code": "INTERNAL_ERROR"}',
                  HINT = 'Set pg_booking.jwt_secret in postgresql.conf (make run does this).';
    END IF;
    signing_input := booking.base64url(convert_to('{"alg":"HS256","typ":"JWT"}', 'UTF8')) || '.' ||
                     booking.base64url(convert_to(claims::text, 'UTF8'));
    RETURN signing_input || '.' || booking.base64url(booking.hmac_sha256(signing_input, secret));
END
$$;

CREATE FUNCTION booking.access_token(u booking.users) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    ttl integer := current_setting('pg_booking.access_token_ttl')::integer;
    now_epoch bigint := floor(extract(epoch FROM clock_timestamp()))::bigint;
BEGIN
    RETURN jsonb_build_object(
        'access_token', booking.sign_jwt(jsonb_build_object(
            'sub', u.id::text, 'role', 'booking_' || u.role,
            'iat', now_epoch, 'exp', now_epoch + ttl)),
        'token_type', 'bearer',
        'expires_in', ttl);
END
$$;

CREATE FUNCTION api.register(email text, password text, full_name text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    u booking.users;
BEGIN
    IF email IS NULL OR email !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' OR length(email) > 254 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('email "%s" is not a valid address', email),
            jsonb_build_object('field', 'email'));
    END IF;
    PERFORM booking.validate_password(password);
    PERFORM booking.validate_full_name(full_name);
    PERFORM booking.rate_limit_hit('register');
    BEGIN
        INSERT INTO booking.users (email, full_name, password_hash)
        VALUES (btrim(email), btrim(full_name), booking.hash_password(password))
        RETURNING * INTO u;
    EXCEPTION WHEN unique_violation THEN
        PERFORM booking.raise_error(409, 'ALREADY_EXISTS', 'a user with this email already exists',
            jsonb_build_object('field', 'email'));
    END;
    RETURN booking.user_json(u);
END
$$;
COMMENT ON FUNCTION api.register IS 'POST /users/register (public): create a user with role "user"; 409 ALREADY_EXISTS, 422 VALIDATION_ERROR';

CREATE FUNCTION api.login(email text, password text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    u booking.users;
    refresh text;
BEGIN
    PERFORM booking.rate_limit_hit('login');
    SELECT * INTO u FROM booking.users WHERE lower(users.email) = lower(btrim(login.email)) AND active;
    -- Hash even when the user is unknown, so timing does not reveal which emails exist.
    IF NOT booking.password_matches(coalesce(password, ''),
               coalesce(u.password_hash, '$2a$10$0000000000000000000000000000000000000000000000000000.')) OR u.id IS NULL THEN
        PERFORM booking.raise_error(401, 'UNAUTHORIZED', 'invalid email or password');
    END IF;
    refresh := booking.random_token(32);
    INSERT INTO booking.refresh_tokens (user_id, token_hash, expires_at)
    VALUES (u.id, sha256(convert_to(refresh, 'UTF8')),
            now() + make_interval(secs => current_setting('pg_booking.refresh_token_ttl')::integer));
    RETURN booking.access_token(u) || jsonb_build_object('refresh_token', refresh);
END
$$;
COMMENT ON FUNCTION api.login IS 'POST /users/login (public, 5 per 10 s per client IP): access token (HS256 JWT) and refresh token; 401 UNAUTHORIZED';

CREATE FUNCTION api.refresh(refresh_token text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    u booking.users;
BEGIN
    SELECT us.* INTO u
      FROM booking.refresh_tokens t JOIN booking.users us ON us.id = t.user_id
     WHERE t.token_hash = sha256(convert_to(coalesce(refresh_token, ''), 'UTF8'))
       AND t.revoked_at IS NULL AND t.expires_at > now() AND us.active;
    IF u.id IS NULL THEN
        PERFORM booking.raise_error(401, 'UNAUTHORIZED', 'refresh token is invalid, expired or revoked');
    END IF;
    RETURN booking.access_token(u);
END
$$;
COMMENT ON FUNCTION api.refresh IS 'POST /users/refresh (public): a new access token for a valid refresh token; 401 UNAUTHORIZED';

-- Revoke every live refresh token of a user (logout: self; deactivation: admin).
CREATE FUNCTION booking.revoke_refresh_tokens(user_id bigint) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    IF user_id IS DISTINCT FROM booking.current_user_id() THEN
        PERFORM booking.require_role('admin');
    END IF;
    UPDATE booking.refresh_tokens t SET revoked_at = now()
     WHERE t.user_id = revoke_refresh_tokens.user_id AND t.revoked_at IS NULL;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

CREATE FUNCTION api.logout() RETURNS jsonb
LANGUAGE sql VOLATILE
AS $$ SELECT jsonb_build_object('revoked_refresh_tokens', booking.revoke_refresh_tokens(booking.require_user())) $$;
GRANT EXECUTE ON FUNCTION booking.revoke_refresh_tokens(bigint) TO booking_api;
COMMENT ON FUNCTION api.logout IS 'POST /users/logout (self): revokes every refresh token of the caller';

-- The caller's own row, through row-level security.
CREATE FUNCTION api.me() RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    u booking.users;
BEGIN
    SELECT id, email, full_name, NULL, role, active, created_at, updated_at INTO u
      FROM booking.users WHERE id = booking.require_user();
    IF u.id IS NULL THEN
        PERFORM booking.raise_error(404, 'NOT_FOUND', 'user not found');
    END IF;
    RETURN booking.user_json(u);
END
$$;
COMMENT ON FUNCTION api.me IS 'GET /users/me (self)';

CREATE FUNCTION api.update_me(full_name text DEFAULT NULL, password text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    uid bigint := booking.require_user();
BEGIN
    IF full_name IS NOT NULL THEN
        PERFORM booking.validate_full_name(full_name);
    END IF;
    IF password IS NOT NULL THEN
        PERFORM booking.validate_password(password);
    END IF;
    -- Two statements: the caller may write password_hash but never read it.
    IF full_name IS NOT NULL THEN
        UPDATE booking.users u SET full_name = btrim(update_me.full_name), updated_at = now() WHERE u.id = uid;
    END IF;
    IF password IS NOT NULL THEN
        UPDATE booking.users u SET password_hash = booking.hash_password(update_me.password), updated_at = now()
         WHERE u.id = uid;
    END IF;
    RETURN api.me();
END
$$;
COMMENT ON FUNCTION api.update_me IS 'PATCH /users/me (self): change full_name and/or password';

CREATE FUNCTION api.list_users(lim integer DEFAULT 50, off integer DEFAULT 0) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_role('admin', 'auditor');
    PERFORM booking.check_page(lim, off);
    RETURN coalesce((
        SELECT jsonb_agg(booking.user_json(x) ORDER BY x.id)
          FROM (SELECT id, email, full_name, NULL::text AS password_hash, role, active, created_at, updated_at
                  FROM booking.users ORDER BY id LIMIT lim OFFSET off) x), '[]');
END
$$;
COMMENT ON FUNCTION api.list_users IS 'GET /users (admin; auditor read)';

CREATE FUNCTION api.get_user(id bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    u booking.users;
BEGIN
    PERFORM booking.require_role('admin', 'auditor');
    SELECT x.id, x.email, x.full_name, NULL, x.role, x.active, x.created_at, x.updated_at INTO u
      FROM booking.users x WHERE x.id = get_user.id;
    IF u.id IS NULL THEN
        PERFORM booking.raise_error(404, 'NOT_FOUND', format('user %s not found', id));
    END IF;
    RETURN booking.user_json(u);
END
$$;
COMMENT ON FUNCTION api.get_user IS 'GET /users/{id} (admin; auditor read); 404 NOT_FOUND';

CREATE FUNCTION api.update_user(id bigint, role text DEFAULT NULL, active boolean DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM booking.require_role('admin');
    IF role IS NOT NULL AND role NOT IN ('user', 'admin', 'facility_manager', 'auditor', 'moderator', 'service_account') THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('role "%s" is not a known role', role),
            jsonb_build_object('field', 'role'));
    END IF;
    UPDATE booking.users u
       SET role = coalesce(update_user.role, u.role),
           active = coalesce(update_user.active, u.active),
           updated_at = now()
     WHERE u.id = update_user.id;
    IF NOT FOUND THEN
        PERFORM booking.raise_error(404, 'NOT_FOUND', format('user %s not found', id));
    END IF;
    IF active IS FALSE THEN
        PERFORM booking.revoke_refresh_tokens(update_user.id);
    END IF;
    RETURN api.get_user(id);
END
$$;
COMMENT ON FUNCTION api.update_user IS 'PATCH /users/{id} (admin): change role and/or active; 404 NOT_FOUND';
-- Meeting rooms.

CREATE TABLE booking.rooms (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                  text NOT NULL,
    location              text NOT NULL,
    capacity              integer NOT NULL,
    amenities             text[] NOT NULL DEFAULT '{}',
    buffer_before_minutes integer NOT NULL DEFAULT 0,
    buffer_after_minutes  integer NOT NULL DEFAULT 0,
    active                boolean NOT NULL DEFAULT true,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT rooms_name_length CHECK (length(btrim(name)) BETWEEN 1 AND 100),
    CONSTRAINT rooms_location_length CHECK (length(btrim(location)) BETWEEN 1 AND 200),
    CONSTRAINT rooms_capacity_positive CHECK (capacity > 0),
    CONSTRAINT rooms_buffers_range CHECK (buffer_before_minutes BETWEEN 0 AND 240
                                          AND buffer_after_minutes BETWEEN 0 AND 240)
);
-- Names are unique whatever their case: "Aquarium" and "aquarium" are one room.
CREATE UNIQUE INDEX rooms_name_key ON booking.rooms (lower(name));
CREATE INDEX rooms_location_idx ON booking.rooms (lower(location));
CREATE INDEX rooms_amenities_idx ON booking.rooms USING gin (amenities);
COMMENT ON TABLE booking.rooms IS 'meeting rooms, booked by the hour; buffers widen every booking of the room';

-- Every signed-in role reads rooms; admins and facility managers change them.
GRANT SELECT ON booking.rooms TO booking_api;
GRANT INSERT, UPDATE ON booking.rooms TO booking_admin, booking_facility_manager;

CREATE FUNCTION booking.room_json(r booking.rooms) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object('id', r.id, 'name', r.name, 'location', r.location,
                              'capacity', r.capacity, 'amenities', to_jsonb(r.amenities),
                              'buffer_before_minutes', r.buffer_before_minutes,
                              'buffer_after_minutes', r.buffer_after_minutes,
                              'active', r.active, 'created_at', r.created_at, 'updated_at', r.updated_at)
$$;

-- Room fields are validated here once, for create and update alike.
CREATE FUNCTION booking.validate_room(name text, location text, capacity integer,
                                      buffer_before_minutes integer, buffer_after_minutes integer)
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF name IS NOT NULL AND length(btrim(name)) NOT BETWEEN 1 AND 100 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'name must have 1 to 100 characters',
            jsonb_build_object('field', 'name'));
    END IF;
    IF location IS NOT NULL AND length(btrim(location)) NOT BETWEEN 1 AND 200 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'location must have 1 to 200 characters',
            jsonb_build_object('field', 'location'));
    END IF;
    IF capacity IS NOT NULL AND capacity < 1 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('capacity %s is not positive', capacity),
            jsonb_build_object('field', 'capacity'));
    END IF;
    IF buffer_before_minutes IS NOT NULL AND buffer_before_minutes NOT BETWEEN 0 AND 240 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('buffer_before_minutes %s is out of range', buffer_before_minutes),
            jsonb_build_object('field', 'buffer_before_minutes', 'min', 0, 'max', 240));
    END IF;
    IF buffer_after_minutes IS NOT NULL AND buffer_after_minutes NOT BETWEEN 0 AND 240 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('buffer_after_minutes %s is out of range', buffer_after_minutes),
            jsonb_build_object('field', 'buffer_after_minutes', 'min', 0, 'max', 240));
    END IF;
END
$$;

-- A room, or 404.  Inactive rooms are found too: callers decide.
CREATE FUNCTION booking.find_room(room_id bigint) RETURNS booking.rooms
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    r booking.rooms;
BEGIN
    SELECT * INTO r FROM booking.rooms WHERE id = room_id;
    IF r.id IS NULL THEN
        PERFORM booking.raise_error(404, 'NOT_FOUND', format('room %s not found', coalesce(room_id::text, 'NULL')),
            jsonb_build_object('room_id', room_id));
    END IF;
    RETURN r;
END
$$;

-- A window given as two texts, checked: both with zones, from < to, at most
-- max_days long.
CREATE FUNCTION booking.parse_window(from_text text, to_text text, max_days integer DEFAULT 62)
RETURNS tstzrange
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    f timestamptz := booking.parse_instant(from_text, 'from');
    t timestamptz := booking.parse_instant(to_text, 'to');
BEGIN
    IF t <= f THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', '"to" must be after "from"',
            jsonb_build_object('field', 'to'));
    END IF;
    IF t - f > make_interval(days => max_days) THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('window is longer than %s days', max_days),
            jsonb_build_object('field', 'to', 'max_days', max_days));
    END IF;
    RETURN tstzrange(f, t);
END
$$;

GRANT EXECUTE ON FUNCTION booking.room_json(booking.rooms),
    booking.validate_room(text, text, integer, integer, integer), booking.find_room(bigint),
    booking.parse_window(text, text, integer)
  TO booking_api;

CREATE FUNCTION api.create_room(name text, location text, capacity integer,
                                amenities text[] DEFAULT '{}',
                                buffer_before_minutes integer DEFAULT 0,
                                buffer_after_minutes integer DEFAULT 0) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r booking.rooms;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager');
    IF name IS NULL OR location IS NULL OR capacity IS NULL THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'name, location and capacity are required');
    END IF;
    PERFORM booking.validate_room(name, location, capacity, buffer_before_minutes, buffer_after_minutes);
    BEGIN
        INSERT INTO booking.rooms (name, location, capacity, amenities, buffer_before_minutes, buffer_after_minutes)
        VALUES (btrim(name), btrim(location), capacity, coalesce(amenities, '{}'),
                coalesce(buffer_before_minutes, 0), coalesce(buffer_after_minutes, 0))
        RETURNING * INTO r;
    EXCEPTION WHEN unique_violation THEN
        PERFORM booking.raise_error(409, 'ALREADY_EXISTS', format('a room named "%s" already exists', btrim(name)),
            jsonb_build_object('field', 'name'));
    END;
    RETURN booking.room_json(r);
END
$$;
COMMENT ON FUNCTION api.create_room IS 'POST /rooms (admin, facility_manager); 409 ALREADY_EXISTS when the name is taken';

CREATE FUNCTION api.update_room(id bigint, name text DEFAULT NULL, location text DEFAULT NULL,
                                capacity integer DEFAULT NULL, amenities text[] DEFAULT NULL,
                                buffer_before_minutes integer DEFAULT NULL,
                                buffer_after_minutes integer DEFAULT NULL,
                                active boolean DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r booking.rooms;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager');
    PERFORM booking.find_room(id);
    PERFORM booking.validate_room(name, location, capacity, buffer_before_minutes, buffer_after_minutes);
    BEGIN
        UPDATE booking.rooms x
           SET name = coalesce(btrim(update_room.name), x.name),
               location = coalesce(btrim(update_room.location), x.location),
               capacity = coalesce(update_room.capacity, x.capacity),
               amenities = coalesce(update_room.amenities, x.amenities),
               buffer_before_minutes = coalesce(update_room.buffer_before_minutes, x.buffer_before_minutes),
               buffer_after_minutes = coalesce(update_room.buffer_after_minutes, x.buffer_after_minutes),
               active = coalesce(update_room.active, x.active),
               updated_at = now()
         WHERE x.id = update_room.id
        RETURNING * INTO r;
    EXCEPTION WHEN unique_violation THEN
        PERFORM booking.raise_error(409, 'ALREADY_EXISTS', format('a room named "%s" already exists', btrim(name)),
            jsonb_build_object('field', 'name'));
    END;
    RETURN booking.room_json(r);
END
$$;
COMMENT ON FUNCTION api.update_room IS 'PATCH /rooms/{id} (admin, facility_manager); buffers apply to bookings made from now on';

CREATE FUNCTION api.delete_room(id bigint) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager');
    PERFORM booking.find_room(id);
    UPDATE booking.rooms x SET active = false, updated_at = now() WHERE x.id = delete_room.id;
    RETURN jsonb_build_object('id', id, 'active', false);
END
$$;
COMMENT ON FUNCTION api.delete_room IS 'DELETE /rooms/{id} (admin, facility_manager): deactivates the room; its bookings stay, no new ones are taken';

CREATE FUNCTION api.get_room(id bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_user();
    RETURN booking.room_json(booking.find_room(id));
END
$$;
COMMENT ON FUNCTION api.get_room IS 'GET /rooms/{id} (any user); 404 NOT_FOUND';

CREATE FUNCTION api.list_rooms(min_capacity integer DEFAULT NULL, amenity text DEFAULT NULL,
                               location text DEFAULT NULL, available_from text DEFAULT NULL,
                               available_to text DEFAULT NULL, include_inactive boolean DEFAULT false,
                               lim integer DEFAULT 50, off integer DEFAULT 0) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    w tstzrange;
BEGIN
    PERFORM booking.require_user();
    PERFORM booking.check_page(lim, off);
    IF (available_from IS NULL) <> (available_to IS NULL) THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'available_from and available_to go together',
            jsonb_build_object('field', CASE WHEN available_from IS NULL THEN 'available_from' ELSE 'available_to' END));
    END IF;
    IF available_from IS NOT NULL THEN
        w := booking.parse_window(available_from, available_to);
    END IF;
    RETURN coalesce((
        SELECT jsonb_agg(booking.room_json(x) ORDER BY x.name)
          FROM (SELECT r.* FROM booking.rooms r
                 WHERE (r.active OR (include_inactive AND booking.caller_is('admin', 'facility_manager', 'auditor')))
                   AND (min_capacity IS NULL OR r.capacity >= min_capacity)
                   AND (amenity IS NULL OR r.amenities @> ARRAY[amenity])
                   AND (list_rooms.location IS NULL OR lower(r.location) = lower(list_rooms.location))
                   AND (w IS NULL OR NOT booking.room_busy(r.id, lower(w), upper(w)) && w)
                 ORDER BY r.name LIMIT lim OFFSET off) x), '[]');
END
$$;
COMMENT ON FUNCTION api.list_rooms IS 'GET /rooms (any user): active rooms, filtered by min_capacity, amenity, location, and free in [available_from, available_to)';
-- Meeting-room bookings: the table, the C conflict check, the api.

CREATE TABLE booking.bookings (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room_id    bigint NOT NULL REFERENCES booking.rooms,
    user_id    bigint NOT NULL REFERENCES booking.users,
    title      text NOT NULL,
    starts_at  timestamptz NOT NULL,
    ends_at    timestamptz NOT NULL,
    status     text NOT NULL DEFAULT 'confirmed',
    series_id  uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT bookings_status_check CHECK (status IN ('confirmed', 'cancelled', 'completed')),
    CONSTRAINT bookings_title_length CHECK (length(btrim(title)) BETWEEN 1 AND 200),
    CONSTRAINT bookings_times_order CHECK (starts_at < ends_at),
    -- The conflict check relies on this bound (see extension/conflicts.c).
    CONSTRAINT bookings_max_length CHECK (ends_at - starts_at <= interval '24 hours')
);
-- The conflict check scans this index: a room's confirmed bookings by start.
CREATE INDEX bookings_room_confirmed_idx ON booking.bookings (room_id, starts_at) WHERE status = 'confirmed';
CREATE INDEX bookings_user_idx ON booking.bookings (user_id, starts_at);
CREATE INDEX bookings_series_idx ON booking.bookings (series_id) WHERE series_id IS NOT NULL;
COMMENT ON TABLE booking.bookings IS 'meeting-room bookings, [starts_at, ends_at) half-open; confirmed ones never overlap within a room';

CREATE FUNCTION booking.booking_conflicts(room_id bigint, starts_at timestamptz, ends_at timestamptz,
                                          exclude_id bigint DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'booking_conflicts'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION booking.booking_conflicts IS 'lock the room until commit and list the confirmed bookings (id, times) that [starts_at, ends_at) would clash with, buffers included; NULL when none';

CREATE FUNCTION booking.check_booking_conflict() RETURNS trigger
AS 'MODULE_PATHNAME', 'check_booking_conflict'
LANGUAGE C;
COMMENT ON FUNCTION booking.check_booking_conflict IS 'trigger: refuse a confirmed booking that clashes with another of its room (BOOKING_CONFLICT), or is in an unknown or inactive room';

-- Every write that can place a confirmed booking goes through this trigger,
-- whatever the path (api, psql, a batch job).
CREATE TRIGGER bookings_conflict_check
    BEFORE INSERT OR UPDATE OF room_id, starts_at, ends_at, status ON booking.bookings
    FOR EACH ROW EXECUTE FUNCTION booking.check_booking_conflict();

-- Row-level security: a user sees and changes their own bookings; admins
-- and facility managers all; auditors and service accounts read all.
ALTER TABLE booking.bookings ENABLE ROW LEVEL SECURITY;
CREATE POLICY bookings_own ON booking.bookings TO booking_api
    USING (user_id = booking.current_user_id()) WITH CHECK (user_id = booking.current_user_id());
CREATE POLICY bookings_staff ON booking.bookings TO booking_admin, booking_facility_manager USING (true);
CREATE POLICY bookings_read_all ON booking.bookings FOR SELECT TO booking_auditor, booking_service_account USING (true);
GRANT SELECT, INSERT, UPDATE ON booking.bookings TO booking_api;

-- The busy time of a room in a window, as the intervals in which no new
-- booking may lie: each confirmed booking widened by the room's buffers on
-- both sides (its own and the newcomer's).  Reads every user's bookings,
-- hence SECURITY DEFINER; it reveals times only.
CREATE FUNCTION booking.room_busy(room_id bigint, from_ts timestamptz, to_ts timestamptz)
RETURNS tstzmultirange
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(range_agg(tstzrange(b.starts_at - g.gap, b.ends_at + g.gap)), '{}'::tstzmultirange)
      FROM booking.rooms r
     CROSS JOIN LATERAL (SELECT make_interval(mins => r.buffer_before_minutes + r.buffer_after_minutes) AS gap) g
      JOIN booking.bookings b ON b.room_id = r.id AND b.status = 'confirmed'
                             AND b.starts_at < to_ts + g.gap
                             AND b.starts_at > from_ts - g.gap - interval '24 hours'
                             AND b.ends_at > from_ts - g.gap
     WHERE r.id = room_busy.room_id
$$;
COMMENT ON FUNCTION booking.room_busy IS 'intervals of a room in which no new booking may lie (confirmed bookings widened by buffers)';

CREATE FUNCTION booking.booking_json(b booking.bookings) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object('id', b.id, 'room_id', b.room_id, 'user_id', b.user_id, 'title', b.title,
                              'starts_at', b.starts_at, 'ends_at', b.ends_at, 'status', b.status,
                              'series_id', b.series_id, 'created_at', b.created_at, 'updated_at', b.updated_at)
$$;

-- The times of a booking, checked the same way for create and reschedule:
-- both with zones, end after start, at most 24 h, and (plain users) not in
-- the past.
CREATE FUNCTION booking.validate_booking_times(starts_at timestamptz, ends_at timestamptz) RETURNS void
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF ends_at <= starts_at THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'booking must end after it starts',
            jsonb_build_object('field', 'ends_at', 'starts_at', starts_at, 'ends_at', ends_at));
    END IF;
    IF ends_at - starts_at > interval '24 hours' THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'booking is longer than 24 hours',
            jsonb_build_object('field', 'ends_at', 'max_hours', 24));
    END IF;
    IF starts_at < now() AND NOT booking.caller_is('admin', 'facility_manager') THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('booking starts in the past (%s)', to_json(starts_at) #>> '{}'),
            jsonb_build_object('field', 'starts_at'));
    END IF;
END
$$;

CREATE FUNCTION booking.validate_title(title text) RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF title IS NULL OR length(btrim(title)) NOT BETWEEN 1 AND 200 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'title must have 1 to 200 characters',
            jsonb_build_object('field', 'title'));
    END IF;
END
$$;

-- A room that can take new bookings, or the reason it cannot.
CREATE FUNCTION booking.bookable_room(room_id bigint) RETURNS booking.rooms
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    r booking.rooms := booking.find_room(room_id);
BEGIN
    IF NOT r.active THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('room %s is not active', room_id),
            jsonb_build_object('field', 'room_id', 'room_id', room_id));
    END IF;
    RETURN r;
END
$$;

-- The start instants of a recurrence, in the given time zone so that a
-- weekly 10:00 meeting stays at 10:00 local time across DST changes.
--   {"frequency": "daily"|"weekly", "interval": n, "count": n | "until": "YYYY-MM-DD",
--    "on_conflict": "fail"|"skip", "time_zone": "Europe/Paris"}
CREATE FUNCTION booking.recurrence_starts(first_start timestamptz, recurrence jsonb) RETURNS SETOF timestamptz
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    unknown text;
    freq text := recurrence ->> 'frequency';
    step_days integer;
    every integer;
    n integer;
    until_date date;
    tz text := coalesce(recurrence ->> 'time_zone', current_setting('TimeZone'));
    local_first timestamp;
BEGIN
    IF jsonb_typeof(recurrence) <> 'object' THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'recurrence must be an object',
            jsonb_build_object('field', 'recurrence'));
    END IF;
    SELECT k INTO unknown FROM jsonb_object_keys(recurrence) k
     WHERE k NOT IN ('frequency', 'interval', 'count', 'until', 'on_conflict', 'time_zone') LIMIT 1;
    IF unknown IS NOT NULL THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('recurrence has an unknown field "%s"', unknown),
            jsonb_build_object('field', 'recurrence.' || unknown));
    END IF;
    IF freq IS NULL OR freq NOT IN ('daily', 'weekly') THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('recurrence frequency "%s" is not "daily" or "weekly"', coalesce(freq, '')),
            jsonb_build_object('field', 'recurrence.frequency'));
    END IF;
    step_days := CASE freq WHEN 'daily' THEN 1 ELSE 7 END;
    IF recurrence ? 'interval' AND (jsonb_typeof(recurrence -> 'interval') <> 'number'
                                   OR (recurrence ->> 'interval') !~ '^\d+$'
                                   OR (recurrence ->> 'interval')::numeric NOT BETWEEN 1 AND 366) THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'recurrence interval must be a whole number from 1 to 366',
            jsonb_build_object('field', 'recurrence.interval'));
    END IF;
    every := coalesce((recurrence ->> 'interval')::integer, 1);
    IF (recurrence ? 'count') = (recurrence ? 'until') THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'recurrence needs exactly one of count and until',
            jsonb_build_object('field', 'recurrence'));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = tz) THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('time zone "%s" is not known', tz),
            jsonb_build_object('field', 'recurrence.time_zone'));
    END IF;
    local_first := first_start AT TIME ZONE tz;
    IF recurrence ? 'count' THEN
        IF jsonb_typeof(recurrence -> 'count') <> 'number' OR (recurrence ->> 'count') !~ '^\d+$'
           OR (recurrence ->> 'count')::numeric NOT BETWEEN 1 AND 366 THEN
            PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'recurrence count must be a whole number from 1 to 366',
                jsonb_build_object('field', 'recurrence.count', 'max', 366));
        END IF;
        n := (recurrence ->> 'count')::integer;
    ELSE
        until_date := booking.parse_date(recurrence ->> 'until', 'recurrence.until');
        IF until_date < local_first::date THEN
            PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'recurrence until is before the first occurrence',
                jsonb_build_object('field', 'recurrence.until'));
        END IF;
        n := (until_date - local_first::date) / (step_days * every) + 1;
        IF n > 366 THEN
            PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
                format('recurrence has %s occurrences, more than 366', n),
                jsonb_build_object('field', 'recurrence.until', 'max', 366));
        END IF;
    END IF;
    IF coalesce(recurrence ->> 'on_conflict', 'fail') NOT IN ('fail', 'skip') THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('recurrence on_conflict "%s" is not "fail" or "skip"', recurrence ->> 'on_conflict'),
            jsonb_build_object('field', 'recurrence.on_conflict'));
    END IF;
    RETURN QUERY
        SELECT (local_first + make_interval(days => i * step_days * every)) AT TIME ZONE tz
          FROM generate_series(0, n - 1) i;
END
$$;

GRANT EXECUTE ON FUNCTION booking.booking_conflicts(bigint, timestamptz, timestamptz, bigint),
    booking.booking_json(booking.bookings), booking.validate_booking_times(timestamptz, timestamptz),
    booking.validate_title(text), booking.bookable_room(bigint),
    booking.recurrence_starts(timestamptz, jsonb), booking.room_busy(bigint, timestamptz, timestamptz)
  TO booking_api;

CREATE FUNCTION api.create_booking(room_id bigint, starts_at text, ends_at text, title text,
                                   recurrence jsonb DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    uid bigint := booking.require_user();
    s timestamptz;
    e timestamptz;
    duration interval;
    b booking.bookings;
    occurrence timestamptz;
    i integer := 0;
    clash jsonb;
    clashes jsonb := '[]';
    created jsonb := '[]';
    series uuid;
BEGIN
    PERFORM booking.require_role('user', 'admin', 'facility_manager', 'moderator', 'service_account');
    PERFORM booking.validate_title(title);
    s := booking.parse_instant(starts_at, 'starts_at');
    e := booking.parse_instant(ends_at, 'ends_at');
    PERFORM booking.validate_booking_times(s, e);
    PERFORM booking.bookable_room(room_id);
    PERFORM booking.rate_limit_hit('create_booking');

    IF recurrence IS NULL OR recurrence = 'null'::jsonb THEN
        -- The trigger checks for clashes and raises BOOKING_CONFLICT.
        INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
        VALUES (room_id, uid, btrim(title), s, e) RETURNING * INTO b;
        RETURN booking.booking_json(b);
    END IF;

    -- Recurring: look at every occurrence (the first look locks the room
    -- until commit), book the free ones, and either fail with every clash
    -- listed or report the skipped ones.
    duration := e - s;
    series := gen_random_uuid();
    FOR occurrence IN SELECT * FROM booking.recurrence_starts(s, recurrence) LOOP
        i := i + 1;
        clash := booking.booking_conflicts(room_id, occurrence, occurrence + duration);
        IF clash IS NOT NULL THEN
            clashes := clashes || jsonb_build_object('occurrence', i, 'starts_at', occurrence,
                                                     'ends_at', occurrence + duration, 'conflicts', clash);
        ELSE
            INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at, series_id)
            VALUES (room_id, uid, btrim(title), occurrence, occurrence + duration, series) RETURNING * INTO b;
            created := created || booking.booking_json(b);
        END IF;
    END LOOP;

    IF jsonb_array_length(clashes) > 0
       AND (coalesce(recurrence ->> 'on_conflict', 'fail') = 'fail' OR jsonb_array_length(created) = 0) THEN
        PERFORM booking.raise_error(409, 'BOOKING_CONFLICT',
            format('%s of %s occurrences clash with existing bookings of room %s',
                   jsonb_array_length(clashes), i, room_id),
            jsonb_build_object('room_id', room_id, 'conflicting_occurrences', clashes),
            CASE WHEN coalesce(recurrence ->> 'on_conflict', 'fail') = 'fail'
                 THEN 'Nothing was booked.  Use "on_conflict": "skip" to book the free occurrences.'
                 ELSE 'Nothing was booked: every occurrence clashes.' END);
    END IF;
    RETURN jsonb_build_object('series_id', series, 'bookings', created, 'skipped', clashes);
END
$$;
COMMENT ON FUNCTION api.create_booking IS 'POST /bookings (user+, rate-limited): one booking, or a recurring series (all-or-nothing, or "on_conflict": "skip"); 409 BOOKING_CONFLICT lists every clash, 422 VALIDATION_ERROR';

-- A booking the caller may see, or 404 (row-level security makes someone
-- else's booking indistinguishable from a missing one).
CREATE FUNCTION booking.find_booking(booking_id bigint) RETURNS booking.bookings
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    b booking.bookings;
BEGIN
    SELECT * INTO b FROM booking.bookings WHERE id = booking_id;
    IF b.id IS NULL THEN
        PERFORM booking.raise_error(404, 'NOT_FOUND', format('booking %s not found', coalesce(booking_id::text, 'NULL')),
            jsonb_build_object('booking_id', booking_id));
    END IF;
    RETURN b;
END
$$;
GRANT EXECUTE ON FUNCTION booking.find_booking(bigint) TO booking_api;

-- After an UPDATE through row-level security: a row the caller can read but
-- not change (auditors, service accounts) is forbidden, not silently kept.
CREATE FUNCTION booking.require_changed(changed boolean, what text, id bigint) RETURNS void
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF NOT changed THEN
        PERFORM booking.raise_error(403, 'FORBIDDEN', format('role "%s" may not change %s %s', booking.current_app_role(), what, id),
            jsonb_build_object(what || '_id', id));
    END IF;
END
$$;
GRANT EXECUTE ON FUNCTION booking.require_changed(boolean, text, bigint) TO booking_api;

CREATE FUNCTION api.get_booking(id bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_user();
    RETURN booking.booking_json(booking.find_booking(id));
END
$$;
COMMENT ON FUNCTION api.get_booking IS 'GET /bookings/{id} (owner; admin, facility_manager, auditor); 404 NOT_FOUND';

CREATE FUNCTION api.list_bookings("from" text DEFAULT NULL, "to" text DEFAULT NULL, status text DEFAULT NULL,
                                  room_id bigint DEFAULT NULL, lim integer DEFAULT 50, off integer DEFAULT 0)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    f timestamptz;
    t timestamptz;
BEGIN
    PERFORM booking.require_user();
    PERFORM booking.check_page(lim, off);
    IF "from" IS NOT NULL THEN f := booking.parse_instant("from", 'from'); END IF;
    IF "to" IS NOT NULL THEN t := booking.parse_instant("to", 'to'); END IF;
    IF status IS NOT NULL AND status NOT IN ('confirmed', 'cancelled', 'completed') THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('status "%s" is not a booking status', status),
            jsonb_build_object('field', 'status'));
    END IF;
    RETURN coalesce((
        SELECT jsonb_agg(booking.booking_json(x) ORDER BY x.starts_at, x.id)
          FROM (SELECT b.* FROM booking.bookings b
                 WHERE (f IS NULL OR b.ends_at > f) AND (t IS NULL OR b.starts_at < t)
                   AND (list_bookings.status IS NULL OR b.status = list_bookings.status)
                   AND (list_bookings.room_id IS NULL OR b.room_id = list_bookings.room_id)
                 ORDER BY b.starts_at, b.id LIMIT lim OFFSET off) x), '[]');
END
$$;
COMMENT ON FUNCTION api.list_bookings IS 'GET /bookings (own; admin, facility_manager, auditor all): filtered by overlap with [from, to), status, room';

CREATE FUNCTION api.update_booking(id bigint, starts_at text DEFAULT NULL, ends_at text DEFAULT NULL,
                                   title text DEFAULT NULL, room_id bigint DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    b booking.bookings;
    s timestamptz;
    e timestamptz;
BEGIN
    PERFORM booking.require_user();
    b := booking.find_booking(id);
    IF b.status <> 'confirmed' THEN
        PERFORM booking.raise_error(409, 'INVALID_STATE', format('booking %s is %s and cannot be changed', id, b.status),
            jsonb_build_object('booking_id', id, 'status', b.status));
    END IF;
    IF title IS NOT NULL THEN
        PERFORM booking.validate_title(title);
    END IF;
    s := CASE WHEN starts_at IS NULL THEN b.starts_at ELSE booking.parse_instant(starts_at, 'starts_at') END;
    e := CASE WHEN ends_at IS NULL THEN b.ends_at ELSE booking.parse_instant(ends_at, 'ends_at') END;
    IF s <> b.starts_at OR e <> b.ends_at OR coalesce(room_id, b.room_id) <> b.room_id THEN
        PERFORM booking.validate_booking_times(s, e);
        PERFORM booking.bookable_room(coalesce(room_id, b.room_id));
    END IF;
    UPDATE booking.bookings x
       SET starts_at = s, ends_at = e, title = coalesce(btrim(update_booking.title), x.title),
           room_id = coalesce(update_booking.room_id, x.room_id), updated_at = now()
     WHERE x.id = update_booking.id
    RETURNING * INTO b;
    PERFORM booking.require_changed(FOUND, 'booking', id);
    RETURN booking.booking_json(b);
END
$$;
COMMENT ON FUNCTION api.update_booking IS 'PATCH /bookings/{id} (owner, admin, facility_manager): reschedule, move or retitle a confirmed booking; 404, 409 BOOKING_CONFLICT';

CREATE FUNCTION api.cancel_booking(id bigint) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    b booking.bookings;
BEGIN
    PERFORM booking.require_user();
    b := booking.find_booking(id);
    IF b.status <> 'confirmed' THEN
        PERFORM booking.raise_error(409, 'INVALID_STATE', format('booking %s is already %s', id, b.status),
            jsonb_build_object('booking_id', id, 'status', b.status));
    END IF;
    UPDATE booking.bookings x SET status = 'cancelled', updated_at = now()
     WHERE x.id = cancel_booking.id RETURNING * INTO b;
    PERFORM booking.require_changed(FOUND, 'booking', id);
    RETURN booking.booking_json(b);
END
$$;
COMMENT ON FUNCTION api.cancel_booking IS 'DELETE /bookings/{id} (owner, admin, facility_manager): status becomes cancelled; 404, 409 when not confirmed';

CREATE FUNCTION api.room_availability(room_id bigint, "from" text, "to" text) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    w tstzrange;
BEGIN
    PERFORM booking.require_user();
    PERFORM booking.find_room(room_id);
    w := booking.parse_window("from", "to");
    RETURN coalesce((
        SELECT jsonb_agg(jsonb_build_object('starts_at', lower(f), 'ends_at', upper(f)) ORDER BY lower(f))
          FROM unnest(tstzmultirange(w) - booking.room_busy(room_id, lower(w), upper(w))) f), '[]');
END
$$;
COMMENT ON FUNCTION api.room_availability IS 'GET /rooms/{id}/availability (any user): the free intervals of [from, to) in which a new booking fits (buffers applied); 422 for a bad window';

-- Reads every user's bookings, hence SECURITY DEFINER; who may see titles is
-- decided here from the caller's claims, not by an argument.
CREATE FUNCTION booking.room_schedule(room_id bigint, from_ts timestamptz, to_ts timestamptz) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'id', b.id, 'starts_at', b.starts_at, 'ends_at', b.ends_at, 'status', b.status,
               'mine', b.user_id = booking.current_user_id(),
               'title', CASE WHEN booking.caller_is('admin', 'facility_manager', 'auditor')
                               OR b.user_id = booking.current_user_id() THEN b.title END)
             ORDER BY b.starts_at), '[]')
      FROM booking.bookings b
     WHERE b.room_id = room_schedule.room_id AND b.status IN ('confirmed', 'completed')
       AND b.starts_at < to_ts AND b.ends_at > from_ts
$$;
COMMENT ON FUNCTION booking.room_schedule IS 'a room''s calendar; titles only for the caller''s own bookings unless staff';
GRANT EXECUTE ON FUNCTION booking.room_schedule(bigint, timestamptz, timestamptz) TO booking_api;

CREATE FUNCTION api.room_schedule(room_id bigint, "from" text, "to" text) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    w tstzrange;
BEGIN
    PERFORM booking.find_room(room_id);
    w := booking.parse_window("from", "to");
    PERFORM booking.require_user();
    RETURN booking.room_schedule(room_id, lower(w), upper(w));
END
$$;
COMMENT ON FUNCTION api.room_schedule IS 'GET /rooms/{id}/schedule (any user): bookings of the room in [from, to); titles of others'' bookings hidden from plain users';
-- Hotels: per-night inventory, stay restrictions, reservations.
--
-- A reservation holds one room of its type on each night of
-- [arrival_date, held_until); held_until is the departure date until the stay
-- is cancelled, checked out early or released by the nightly checkout, which
-- move it back to give the nights not yet passed back.  Every change of the
-- held nights goes through one C trigger (extension/inventory.c) that locks
-- the inventory rows involved and moves the rooms atomically, so for every
-- (hotel, room type, night): available = total - reservations holding it.
--
-- The inventory horizon: a night is sellable only if it has an inventory row.
-- Rows are made by api.adjust_inventory; a stay reaching past the last row is
-- refused with the first missing night.

CREATE TABLE booking.hotels (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL,
    location   text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT hotels_name_length CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    CONSTRAINT hotels_location_length CHECK (length(btrim(location)) BETWEEN 1 AND 200)
);
CREATE INDEX hotels_location_idx ON booking.hotels (lower(location));
COMMENT ON TABLE booking.hotels IS 'hotels; location is matched case-insensitively by searches';

CREATE TABLE booking.inventory (
    hotel_id  bigint NOT NULL REFERENCES booking.hotels,
    room_type text NOT NULL,
    night     date NOT NULL,
    total     integer NOT NULL,
    available integer NOT NULL,
    PRIMARY KEY (hotel_id, room_type, night),
    CONSTRAINT inventory_room_type_length CHECK (length(btrim(room_type)) BETWEEN 1 AND 50),
    CONSTRAINT inventory_available_range CHECK (available >= 0 AND available <= total)
);
-- Availability searches go from a location's hotels to a range of nights:
-- the primary key serves (hotel, type, nights); this serves "which hotels
-- have rooms on these nights" without knowing the hotel.
CREATE INDEX inventory_night_idx ON booking.inventory (night, room_type) INCLUDE (hotel_id, available);
COMMENT ON TABLE booking.inventory IS 'rooms per (hotel, room type, night); available = total - rooms held by reservations';

CREATE TABLE booking.stay_restrictions (
    hotel_id            bigint NOT NULL REFERENCES booking.hotels,
    room_type           text NOT NULL,
    night               date NOT NULL,
    min_stay            integer,
    max_stay            integer,
    closed_to_arrival   boolean NOT NULL DEFAULT false,
    closed_to_departure boolean NOT NULL DEFAULT false,
    PRIMARY KEY (hotel_id, room_type, night),
    CONSTRAINT stay_restrictions_min CHECK (min_stay IS NULL OR min_stay BETWEEN 1 AND 30),
    CONSTRAINT stay_restrictions_max CHECK (max_stay IS NULL OR max_stay BETWEEN 1 AND 30),
    CONSTRAINT stay_restrictions_order CHECK (min_stay IS NULL OR max_stay IS NULL OR min_stay <= max_stay)
);
COMMENT ON TABLE booking.stay_restrictions IS 'per date: min/max stay and closed to arrival apply to stays arriving that date, closed to departure to stays leaving that date';

CREATE TABLE booking.reservations (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    hotel_id       bigint NOT NULL REFERENCES booking.hotels,
    room_type      text NOT NULL,
    user_id        bigint NOT NULL REFERENCES booking.users,
    guest_name     text NOT NULL,
    arrival_date   date NOT NULL,
    stay_length    integer NOT NULL,
    departure_date date GENERATED ALWAYS AS (arrival_date + stay_length) STORED,
    adults         integer NOT NULL,
    children       integer NOT NULL DEFAULT 0,
    status         text NOT NULL DEFAULT 'confirmed',
    held_until     date NOT NULL,
    checked_in_at  timestamptz,
    checked_out_at timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT reservations_status_check
        CHECK (status IN ('confirmed', 'checked_in', 'completed', 'cancelled', 'no_show')),
    CONSTRAINT reservations_stay_length CHECK (stay_length BETWEEN 1 AND 30),
    CONSTRAINT reservations_adults CHECK (adults >= 1),
    CONSTRAINT reservations_children CHECK (children >= 0),
    CONSTRAINT reservations_guest_name CHECK (length(btrim(guest_name)) BETWEEN 1 AND 200),
    CONSTRAINT reservations_held_nights CHECK (held_until >= arrival_date AND held_until <= arrival_date + stay_length)
);
CREATE INDEX reservations_user_idx ON booking.reservations (user_id, arrival_date);
CREATE INDEX reservations_hotel_idx ON booking.reservations (hotel_id, room_type, arrival_date);
-- The nightly checkout's two scans: stays whose departure has come, and
-- finished stays that still hold nights.
CREATE INDEX reservations_staying_idx ON booking.reservations (departure_date)
    WHERE status IN ('confirmed', 'checked_in');
CREATE INDEX reservations_released_holding_idx ON booking.reservations (held_until)
    WHERE status IN ('cancelled', 'completed', 'no_show') AND held_until > arrival_date;
COMMENT ON TABLE booking.reservations IS 'hotel stays; each holds one room on every night of [arrival_date, held_until)';
COMMENT ON COLUMN booking.reservations.held_until IS 'end (exclusive) of the nights this reservation holds; departure_date unless nights were given back';

CREATE FUNCTION booking.reservation_nights() RETURNS trigger
AS 'MODULE_PATHNAME', 'reservation_nights'
LANGUAGE C;
COMMENT ON FUNCTION booking.reservation_nights IS 'trigger: take and give back the nights a reservation holds, atomically, with stay restrictions (NO_AVAILABILITY, RESTRICTION_VIOLATION, VALIDATION_ERROR)';

-- Every write that changes the nights held goes through this trigger,
-- whatever the path (api, psql, the nightly checkout).
CREATE TRIGGER reservations_nights
    BEFORE INSERT OR DELETE OR UPDATE OF hotel_id, room_type, arrival_date, stay_length, held_until
    ON booking.reservations
    FOR EACH ROW EXECUTE FUNCTION booking.reservation_nights();

-- Row-level security as for bookings.
ALTER TABLE booking.reservations ENABLE ROW LEVEL SECURITY;
CREATE POLICY reservations_own ON booking.reservations TO booking_api
    USING (user_id = booking.current_user_id()) WITH CHECK (user_id = booking.current_user_id());
CREATE POLICY reservations_staff ON booking.reservations TO booking_admin, booking_facility_manager USING (true);
CREATE POLICY reservations_read_all ON booking.reservations FOR SELECT
    TO booking_auditor, booking_service_account USING (true);
GRANT SELECT, INSERT, UPDATE ON booking.reservations TO booking_api;
GRANT SELECT ON booking.hotels, booking.inventory, booking.stay_restrictions TO booking_api;
GRANT INSERT ON booking.hotels TO booking_admin;
GRANT INSERT, UPDATE ON booking.inventory TO booking_admin, booking_facility_manager;
GRANT INSERT, UPDATE, DELETE ON booking.stay_restrictions TO booking_admin, booking_facility_manager;

-- The hotels' current date: the calendar date in the checkout time zone.
-- Nights before it have passed and are never given back.
CREATE FUNCTION booking.hotel_today() RETURNS date
LANGUAGE sql STABLE
AS $$ SELECT (now() AT TIME ZONE coalesce(nullif(current_setting('pg_booking.checkout_time_zone', true), ''), 'UTC'))::date $$;

CREATE FUNCTION booking.hotel_json(h booking.hotels) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object('id', h.id, 'name', h.name, 'location', h.location,
                              'created_at', h.created_at, 'updated_at', h.updated_at)
$$;

CREATE FUNCTION booking.reservation_json(r booking.reservations) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object('id', r.id, 'hotel_id', r.hotel_id, 'room_type', r.room_type,
                              'user_id', r.user_id, 'guest_name', r.guest_name,
                              'arrival_date', r.arrival_date, 'stay_length', r.stay_length,
                              'departure_date', r.departure_date, 'adults', r.adults,
                              'children', r.children, 'status', r.status,
                              'nights_held', r.held_until - r.arrival_date,
                              'checked_in_at', r.checked_in_at, 'checked_out_at', r.checked_out_at,
                              'created_at', r.created_at, 'updated_at', r.updated_at)
$$;

CREATE FUNCTION booking.find_hotel(hotel_id bigint) RETURNS booking.hotels
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    h booking.hotels;
BEGIN
    SELECT * INTO h FROM booking.hotels WHERE id = hotel_id;
    IF h.id IS NULL THEN
        PERFORM booking.raise_error(404, 'NOT_FOUND', format('hotel %s not found', coalesce(hotel_id::text, 'NULL')),
            jsonb_build_object('hotel_id', hotel_id));
    END IF;
    RETURN h;
END
$$;

-- A reservation the caller may see, locked for a change when asked, or 404.
CREATE FUNCTION booking.find_reservation(reservation_id uuid, for_update boolean DEFAULT false)
RETURNS booking.reservations
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r booking.reservations;
BEGIN
    IF for_update THEN
        SELECT * INTO r FROM booking.reservations WHERE id = reservation_id FOR UPDATE;
    ELSE
        SELECT * INTO r FROM booking.reservations WHERE id = reservation_id;
    END IF;
    IF r.id IS NULL THEN
        PERFORM booking.raise_error(404, 'NOT_FOUND',
            format('reservation %s not found', coalesce(reservation_id::text, 'NULL')),
            jsonb_build_object('reservation_id', reservation_id));
    END IF;
    RETURN r;
END
$$;

-- The fields of a stay, validated once for create and change.  Room type
-- and horizon are checked by the trigger, under the inventory locks.
CREATE FUNCTION booking.validate_stay(guest_name text, arrival date, stay_length integer,
                                      adults integer, children integer) RETURNS void
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF guest_name IS NULL OR length(btrim(guest_name)) NOT BETWEEN 1 AND 200 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'guest_name must have 1 to 200 characters',
            jsonb_build_object('field', 'guest_name'));
    END IF;
    IF stay_length IS NULL OR stay_length NOT BETWEEN 1 AND 30 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('stay_length %s is out of range', coalesce(stay_length::text, 'NULL')),
            jsonb_build_object('field', 'stay_length', 'min', 1, 'max', 30));
    END IF;
    IF adults IS NULL OR adults < 1 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('adults %s is out of range', coalesce(adults::text, 'NULL')),
            jsonb_build_object('field', 'adults', 'min', 1));
    END IF;
    IF children IS NULL OR children < 0 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('children %s is out of range', coalesce(children::text, 'NULL')),
            jsonb_build_object('field', 'children', 'min', 0));
    END IF;
    IF arrival < booking.hotel_today() AND NOT booking.caller_is('admin', 'facility_manager') THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('arrival_date %s is in the past', to_char(arrival, 'YYYY-MM-DD')),
            jsonb_build_object('field', 'arrival_date'));
    END IF;
END
$$;

-- A range of nights given as dates, both included.
CREATE FUNCTION booking.parse_nights(from_text text, to_text text, max_nights integer DEFAULT 400)
RETURNS daterange
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    f date := booking.parse_date(from_text, 'from');
    t date := booking.parse_date(to_text, 'to');
BEGIN
    IF t < f THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('"to" %s is before "from" %s', to_char(t, 'YYYY-MM-DD'), to_char(f, 'YYYY-MM-DD')),
            jsonb_build_object('field', 'to'));
    END IF;
    IF t - f + 1 > max_nights THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('range of %s nights is longer than %s', t - f + 1, max_nights),
            jsonb_build_object('field', 'to', 'max_nights', max_nights));
    END IF;
    RETURN daterange(f, t, '[]');
END
$$;

CREATE FUNCTION booking.validate_room_type(room_type text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF room_type IS NULL OR length(btrim(room_type)) NOT BETWEEN 1 AND 50 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'room_type must have 1 to 50 characters',
            jsonb_build_object('field', 'room_type'));
    END IF;
END
$$;

GRANT EXECUTE ON FUNCTION booking.hotel_today(), booking.hotel_json(booking.hotels),
    booking.reservation_json(booking.reservations), booking.find_hotel(bigint),
    booking.find_reservation(uuid, boolean), booking.validate_stay(text, date, integer, integer, integer),
    booking.parse_nights(text, text, integer), booking.validate_room_type(text)
  TO booking_api;

-- Hotels.

CREATE FUNCTION api.create_hotel(name text, location text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    h booking.hotels;
BEGIN
    PERFORM booking.require_role('admin');
    IF name IS NULL OR length(btrim(name)) NOT BETWEEN 1 AND 200 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'name must have 1 to 200 characters',
            jsonb_build_object('field', 'name'));
    END IF;
    IF location IS NULL OR length(btrim(location)) NOT BETWEEN 1 AND 200 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'location must have 1 to 200 characters',
            jsonb_build_object('field', 'location'));
    END IF;
    INSERT INTO booking.hotels (name, location) VALUES (btrim(name), btrim(location)) RETURNING * INTO h;
    RETURN booking.hotel_json(h);
END
$$;
COMMENT ON FUNCTION api.create_hotel IS 'POST /hotels (admin): a hotel; 422 VALIDATION_ERROR';

CREATE FUNCTION api.list_hotels(location text DEFAULT NULL, lim integer DEFAULT 50, off integer DEFAULT 0)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_user();
    PERFORM booking.check_page(lim, off);
    RETURN coalesce((
        SELECT jsonb_agg(booking.hotel_json(x) ORDER BY x.name, x.id)
          FROM (SELECT h.* FROM booking.hotels h
                 WHERE list_hotels.location IS NULL OR lower(h.location) = lower(btrim(list_hotels.location))
                 ORDER BY h.name, h.id LIMIT lim OFFSET off) x), '[]');
END
$$;
COMMENT ON FUNCTION api.list_hotels IS 'GET /hotels?location (any user): hotels, optionally in one location (case-insensitive)';

CREATE FUNCTION api.get_hotel(id bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_user();
    RETURN booking.hotel_json(booking.find_hotel(id));
END
$$;
COMMENT ON FUNCTION api.get_hotel IS 'GET /hotels/{id} (any user); 404 NOT_FOUND';

CREATE FUNCTION api.hotel_name(hotel_id bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_user();
    RETURN jsonb_build_object('hotel_id', hotel_id, 'name', (booking.find_hotel(hotel_id)).name);
END
$$;
COMMENT ON FUNCTION api.hotel_name IS 'GET /inventory/hotel_name/{hotel_id} (any user): {hotel_id, name}; 404 NOT_FOUND';

-- Inventory.

CREATE FUNCTION api.list_inventory(hotel_id bigint DEFAULT NULL, "from" text DEFAULT NULL, "to" text DEFAULT NULL,
                                   room_type text DEFAULT NULL, lim integer DEFAULT 50, off integer DEFAULT 0)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    f date;
    t date;
BEGIN
    PERFORM booking.require_user();
    PERFORM booking.check_page(lim, off);
    IF hotel_id IS NOT NULL THEN
        PERFORM booking.find_hotel(hotel_id);
    END IF;
    IF "from" IS NOT NULL THEN f := booking.parse_date("from", 'from'); END IF;
    IF "to" IS NOT NULL THEN t := booking.parse_date("to", 'to'); END IF;
    RETURN coalesce((
        SELECT jsonb_agg(jsonb_build_object('hotel_id', x.hotel_id, 'room_type', x.room_type, 'night', x.night,
                                            'total', x.total, 'available', x.available)
                         ORDER BY x.hotel_id, x.room_type, x.night)
          FROM (SELECT i.* FROM booking.inventory i
                 WHERE (list_inventory.hotel_id IS NULL OR i.hotel_id = list_inventory.hotel_id)
                   AND (f IS NULL OR i.night >= f) AND (t IS NULL OR i.night <= t)
                   AND (list_inventory.room_type IS NULL OR i.room_type = list_inventory.room_type)
                 ORDER BY i.hotel_id, i.room_type, i.night LIMIT lim OFFSET off) x), '[]');
END
$$;
COMMENT ON FUNCTION api.list_inventory IS 'GET /inventory, GET /inventory/{hotel_id}?from&to&room_type (any user): nights with total and available rooms, from and to included; 404 unknown hotel';

-- Set the rooms of a range of nights (both dates included), by a delta or
-- to a new total.  Missing nights are created (this is how the horizon
-- grows).  The rooms held by reservations stay held: a new total below them
-- is refused with the first such night.
CREATE FUNCTION api.adjust_inventory(hotel_id bigint, room_type text, "from" text, "to" text,
                                     delta integer DEFAULT NULL, total integer DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    nights daterange;
    bad record;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager');
    PERFORM booking.find_hotel(hotel_id);
    PERFORM booking.validate_room_type(room_type);
    nights := booking.parse_nights("from", "to");
    IF (delta IS NULL) = (total IS NULL) THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'give either delta or total',
            jsonb_build_object('field', 'delta'));
    END IF;
    IF total IS NOT NULL AND total < 0 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('total %s is negative', total),
            jsonb_build_object('field', 'total'));
    END IF;
    INSERT INTO booking.inventory (hotel_id, room_type, night, total, available)
    SELECT adjust_inventory.hotel_id, adjust_inventory.room_type, n::date, 0, 0
      FROM generate_series(lower(nights), upper(nights) - 1, interval '1 day') n
    ON CONFLICT DO NOTHING;
    -- Lock the nights in the order the reservation trigger does (by night),
    -- then look at what is held: nothing can take a room meanwhile.
    PERFORM 1 FROM booking.inventory i
      WHERE i.hotel_id = adjust_inventory.hotel_id AND i.room_type = adjust_inventory.room_type
        AND i.night <@ nights
      ORDER BY i.night FOR UPDATE;
    SELECT i.night, coalesce(adjust_inventory.total, i.total + delta) AS total, i.total - i.available AS held
      INTO bad
      FROM booking.inventory i
     WHERE i.hotel_id = adjust_inventory.hotel_id AND i.room_type = adjust_inventory.room_type
       AND i.night <@ nights AND coalesce(adjust_inventory.total, i.total + delta) < i.total - i.available
     ORDER BY i.night LIMIT 1;
    IF FOUND AND bad.total < 0 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('night %s would have %s rooms', to_char(bad.night, 'YYYY-MM-DD'), bad.total),
            jsonb_build_object('field', 'delta', 'night', bad.night, 'total', bad.total));
    END IF;
    IF FOUND THEN
        PERFORM booking.raise_error(409, 'INVENTORY_BELOW_HELD',
            format('night %s would have %s rooms but %s are held by reservations', to_char(bad.night, 'YYYY-MM-DD'), bad.total, bad.held),
            jsonb_build_object('hotel_id', hotel_id, 'room_type', room_type, 'night', bad.night,
                               'total', bad.total, 'held', bad.held),
            'Cancel or move reservations first, or adjust by a smaller amount.');
    END IF;
    UPDATE booking.inventory i
       SET total = coalesce(adjust_inventory.total, i.total + delta),
           available = coalesce(adjust_inventory.total, i.total + delta) - (i.total - i.available)
     WHERE i.hotel_id = adjust_inventory.hotel_id AND i.room_type = adjust_inventory.room_type
       AND i.night <@ nights;
    RETURN api.list_inventory(hotel_id, to_char(lower(nights), 'YYYY-MM-DD'), to_char(upper(nights) - 1, 'YYYY-MM-DD'),
                              room_type, lim => 500);
END
$$;
COMMENT ON FUNCTION api.adjust_inventory IS 'POST /inventory/{hotel_id}/adjust (admin, facility_manager): change the rooms of nights from..to (included) by delta or to total, creating missing nights; 409 INVENTORY_BELOW_HELD';

CREATE FUNCTION api.set_restrictions(hotel_id bigint, room_type text, "from" text, "to" text,
                                     min_stay integer DEFAULT NULL, max_stay integer DEFAULT NULL,
                                     closed_to_arrival boolean DEFAULT false,
                                     closed_to_departure boolean DEFAULT false) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    nights daterange;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager');
    PERFORM booking.find_hotel(hotel_id);
    PERFORM booking.validate_room_type(room_type);
    nights := booking.parse_nights("from", "to");
    IF min_stay IS NOT NULL AND min_stay NOT BETWEEN 1 AND 30 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('min_stay %s is out of range', min_stay),
            jsonb_build_object('field', 'min_stay', 'min', 1, 'max', 30));
    END IF;
    IF max_stay IS NOT NULL AND max_stay NOT BETWEEN 1 AND 30 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('max_stay %s is out of range', max_stay),
            jsonb_build_object('field', 'max_stay', 'min', 1, 'max', 30));
    END IF;
    IF min_stay > max_stay THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('min_stay %s is above max_stay %s', min_stay, max_stay),
            jsonb_build_object('field', 'min_stay'));
    END IF;
    -- PUT: the given rules replace those of these dates; no rule at all clears them.
    DELETE FROM booking.stay_restrictions s
     WHERE s.hotel_id = set_restrictions.hotel_id AND s.room_type = set_restrictions.room_type AND s.night <@ nights;
    IF min_stay IS NOT NULL OR max_stay IS NOT NULL OR closed_to_arrival OR closed_to_departure THEN
        INSERT INTO booking.stay_restrictions
        SELECT set_restrictions.hotel_id, set_restrictions.room_type, n::date, min_stay, max_stay,
               coalesce(closed_to_arrival, false), coalesce(closed_to_departure, false)
          FROM generate_series(lower(nights), upper(nights) - 1, interval '1 day') n;
    END IF;
    RETURN jsonb_build_object('hotel_id', hotel_id, 'room_type', room_type,
                              'from', lower(nights), 'to', upper(nights) - 1,
                              'min_stay', min_stay, 'max_stay', max_stay,
                              'closed_to_arrival', coalesce(closed_to_arrival, false),
                              'closed_to_departure', coalesce(closed_to_departure, false));
END
$$;
COMMENT ON FUNCTION api.set_restrictions IS 'PUT /inventory/{hotel_id}/restrictions (admin, facility_manager): stay rules for dates from..to (included); min/max stay and closed to arrival apply by arrival date, closed to departure by departure date; 422';

CREATE FUNCTION api.search_availability(location text, arrival text, nights integer,
                                        room_type text DEFAULT NULL, rooms integer DEFAULT 1) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    a date;
BEGIN
    PERFORM booking.require_user();
    a := booking.parse_date(arrival, 'arrival');
    IF location IS NULL OR btrim(location) = '' THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'location is required', jsonb_build_object('field', 'location'));
    END IF;
    IF nights IS NULL OR nights NOT BETWEEN 1 AND 30 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('nights %s is out of range', coalesce(nights::text, 'NULL')),
            jsonb_build_object('field', 'nights', 'min', 1, 'max', 30));
    END IF;
    IF rooms IS NULL OR rooms NOT BETWEEN 1 AND 100 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('rooms %s is out of range', coalesce(rooms::text, 'NULL')),
            jsonb_build_object('field', 'rooms', 'min', 1, 'max', 100));
    END IF;
    RETURN coalesce((
        SELECT jsonb_agg(jsonb_build_object('hotel_id', h.id, 'name', h.name, 'location', h.location,
                                            'room_type', x.room_type, 'min_available', x.min_available)
                         ORDER BY h.name, h.id, x.room_type)
          FROM booking.hotels h
          JOIN LATERAL (SELECT i.room_type, min(i.available) AS min_available
                          FROM booking.inventory i
                         WHERE i.hotel_id = h.id AND i.night >= a AND i.night < a + nights
                           AND (search_availability.room_type IS NULL OR i.room_type = search_availability.room_type)
                         GROUP BY i.room_type
                        HAVING count(*) = nights AND min(i.available) >= rooms) x ON true
         WHERE lower(h.location) = lower(btrim(search_availability.location))
           -- The stay restrictions the reservation itself would meet.
           AND NOT EXISTS (SELECT 1 FROM booking.stay_restrictions r
                            WHERE r.hotel_id = h.id AND r.room_type = x.room_type
                              AND ((r.night = a AND (r.closed_to_arrival OR r.min_stay > nights OR r.max_stay < nights))
                                   OR (r.night = a + nights AND r.closed_to_departure)))), '[]');
END
$$;
COMMENT ON FUNCTION api.search_availability IS 'GET /availability?location&arrival&nights&room_type&rooms (any user): hotels and room types with at least rooms free on every night of the stay and whose stay restrictions allow it; 422';

-- Reservations.

CREATE FUNCTION api.create_reservation(hotel_id bigint, room_type text, guest_name text, arrival_date text,
                                       stay_length integer, adults integer DEFAULT 1, children integer DEFAULT 0)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    uid bigint := booking.require_user();
    a date;
    r booking.reservations;
BEGIN
    PERFORM booking.require_role('user', 'admin', 'facility_manager', 'moderator', 'service_account');
    a := booking.parse_date(arrival_date, 'arrival_date');
    PERFORM booking.validate_room_type(room_type);
    PERFORM booking.validate_stay(guest_name, a, stay_length, adults, children);
    PERFORM booking.find_hotel(hotel_id);
    PERFORM booking.rate_limit_hit('create_reservation');
    -- The trigger takes the nights, all or nothing (NO_AVAILABILITY, restrictions).
    INSERT INTO booking.reservations (hotel_id, room_type, user_id, guest_name, arrival_date, stay_length,
                                      adults, children, held_until)
    VALUES (hotel_id, room_type, uid, btrim(guest_name), a, stay_length, adults, children, a + stay_length)
    RETURNING * INTO r;
    RETURN booking.reservation_json(r);
END
$$;
COMMENT ON FUNCTION api.create_reservation IS 'POST /reservations (user+, rate-limited): a stay taking one room on each night, all or nothing; 409 NO_AVAILABILITY (first sold-out night), 422 RESTRICTION_VIOLATION or VALIDATION_ERROR, 404 hotel';

CREATE FUNCTION api.get_reservation(id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    r booking.reservations;
BEGIN
    PERFORM booking.require_user();
    SELECT * INTO r FROM booking.reservations x WHERE x.id = get_reservation.id;
    IF r.id IS NULL THEN
        PERFORM booking.raise_error(404, 'NOT_FOUND', format('reservation %s not found', coalesce(id::text, 'NULL')),
            jsonb_build_object('reservation_id', id));
    END IF;
    RETURN booking.reservation_json(r);
END
$$;
COMMENT ON FUNCTION api.get_reservation IS 'GET /reservations/{id} (owner; staff); 404 NOT_FOUND';

CREATE FUNCTION api.list_reservations(hotel_id bigint DEFAULT NULL, status text DEFAULT NULL,
                                      lim integer DEFAULT 50, off integer DEFAULT 0) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_user();
    PERFORM booking.check_page(lim, off);
    IF status IS NOT NULL AND status NOT IN ('confirmed', 'checked_in', 'completed', 'cancelled', 'no_show') THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('status "%s" is not a reservation status', status),
            jsonb_build_object('field', 'status'));
    END IF;
    RETURN coalesce((
        SELECT jsonb_agg(booking.reservation_json(x) ORDER BY x.arrival_date, x.created_at, x.id)
          FROM (SELECT r.* FROM booking.reservations r
                 WHERE (list_reservations.hotel_id IS NULL OR r.hotel_id = list_reservations.hotel_id)
                   AND (list_reservations.status IS NULL OR r.status = list_reservations.status)
                 ORDER BY r.arrival_date, r.created_at, r.id LIMIT lim OFFSET off) x), '[]');
END
$$;
COMMENT ON FUNCTION api.list_reservations IS 'GET /reservations (own; admin, facility_manager, auditor, service_account all)';

-- Change a confirmed stay.  New dates, length or room type re-balance the
-- nights in one step of the trigger: if the new nights are not available
-- the error leaves the old ones held.
CREATE FUNCTION api.update_reservation(id uuid, guest_name text DEFAULT NULL, arrival_date text DEFAULT NULL,
                                       stay_length integer DEFAULT NULL, room_type text DEFAULT NULL,
                                       adults integer DEFAULT NULL, children integer DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r booking.reservations;
    a date;
    len integer;
BEGIN
    PERFORM booking.require_user();
    PERFORM booking.require_role('user', 'admin', 'facility_manager', 'moderator', 'service_account');
    r := booking.find_reservation(id, true);
    a := CASE WHEN arrival_date IS NULL THEN r.arrival_date ELSE booking.parse_date(arrival_date, 'arrival_date') END;
    len := coalesce(stay_length, r.stay_length);
    IF r.status <> 'confirmed' AND (a <> r.arrival_date OR len <> r.stay_length
                                    OR coalesce(room_type, r.room_type) <> r.room_type) THEN
        PERFORM booking.raise_error(409, 'INVALID_STATE',
            format('reservation %s is %s: its dates and room type can no longer change', id, r.status),
            jsonb_build_object('reservation_id', id, 'status', r.status));
    END IF;
    IF r.status IN ('completed', 'cancelled', 'no_show') THEN
        PERFORM booking.raise_error(409, 'INVALID_STATE', format('reservation %s is %s and cannot be changed', id, r.status),
            jsonb_build_object('reservation_id', id, 'status', r.status));
    END IF;
    IF room_type IS NOT NULL THEN
        PERFORM booking.validate_room_type(room_type);
    END IF;
    PERFORM booking.validate_stay(coalesce(guest_name, r.guest_name),
                                  CASE WHEN a <> r.arrival_date THEN a ELSE greatest(a, booking.hotel_today()) END,
                                  len, coalesce(adults, r.adults), coalesce(children, r.children));
    UPDATE booking.reservations x
       SET guest_name = coalesce(btrim(update_reservation.guest_name), x.guest_name),
           arrival_date = a, stay_length = len, held_until = a + len,
           room_type = coalesce(update_reservation.room_type, x.room_type),
           adults = coalesce(update_reservation.adults, x.adults),
           children = coalesce(update_reservation.children, x.children),
           updated_at = now()
     WHERE x.id = update_reservation.id
    RETURNING * INTO r;
    RETURN booking.reservation_json(r);
END
$$;
COMMENT ON FUNCTION api.update_reservation IS 'PATCH /reservations/{id} (owner, staff): change guest, party, dates, length or room type of a confirmed stay, atomically; 404, 409 NO_AVAILABILITY or INVALID_STATE, 422';

CREATE FUNCTION api.cancel_reservation(id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r booking.reservations;
BEGIN
    PERFORM booking.require_user();
    PERFORM booking.require_role('user', 'admin', 'facility_manager', 'moderator', 'service_account');
    r := booking.find_reservation(id, true);
    IF r.status <> 'confirmed' THEN
        PERFORM booking.raise_error(409, 'INVALID_STATE', format('reservation %s is %s and cannot be cancelled', id, r.status),
            jsonb_build_object('reservation_id', id, 'status', r.status));
    END IF;
    -- Nights already passed stay held; the others go back to the inventory.
    UPDATE booking.reservations x
       SET status = 'cancelled', updated_at = now(),
           held_until = greatest(x.arrival_date, least(x.held_until, booking.hotel_today()))
     WHERE x.id = cancel_reservation.id
    RETURNING * INTO r;
    RETURN booking.reservation_json(r);
END
$$;
COMMENT ON FUNCTION api.cancel_reservation IS 'DELETE /reservations/{id} (owner, staff): status cancelled, nights not yet passed returned; 404, 409 INVALID_STATE';

CREATE FUNCTION api.check_in(id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r booking.reservations;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager');
    r := booking.find_reservation(id, true);
    IF r.status <> 'confirmed' THEN
        PERFORM booking.raise_error(409, 'INVALID_STATE', format('reservation %s is %s and cannot be checked in', id, r.status),
            jsonb_build_object('reservation_id', id, 'status', r.status));
    END IF;
    UPDATE booking.reservations x SET status = 'checked_in', checked_in_at = now(), updated_at = now()
     WHERE x.id = check_in.id RETURNING * INTO r;
    RETURN booking.reservation_json(r);
END
$$;
COMMENT ON FUNCTION api.check_in IS 'POST /reservations/{id}/check-in (admin, facility_manager): confirmed to checked_in; 404, 409 INVALID_STATE';

CREATE FUNCTION api.check_out(id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r booking.reservations;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager');
    r := booking.find_reservation(id, true);
    IF r.status <> 'checked_in' THEN
        PERFORM booking.raise_error(409, 'INVALID_STATE',
            format('reservation %s is %s and cannot be checked out', id, r.status),
            jsonb_build_object('reservation_id', id, 'status', r.status),
            CASE WHEN r.status = 'confirmed' THEN 'Check the guest in first.' END);
    END IF;
    -- An early departure gives back tonight and every later night at once.
    UPDATE booking.reservations x
       SET status = 'completed', checked_out_at = now(), updated_at = now(),
           held_until = greatest(x.arrival_date, least(x.held_until, booking.hotel_today()))
     WHERE x.id = check_out.id RETURNING * INTO r;
    RETURN booking.reservation_json(r);
END
$$;
COMMENT ON FUNCTION api.check_out IS 'POST /reservations/{id}/check-out (admin, facility_manager): checked_in to completed, remaining nights returned at once; 404, 409 INVALID_STATE';

-- The invariant, over the whole database: for every (hotel, room type,
-- night), available = total - reservations holding the night, and
-- 0 <= available <= total; a held night without an inventory row is a
-- violation too.  Returns the violations (none when all is well).
CREATE FUNCTION booking.inventory_violations()
RETURNS TABLE (hotel_id bigint, room_type text, night date, total integer, available integer, held bigint, problem text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH held AS (
        SELECT r.hotel_id, r.room_type, n::date AS night, count(*) AS held
          FROM booking.reservations r
         CROSS JOIN LATERAL generate_series(r.arrival_date, r.held_until - 1, interval '1 day') n
         WHERE r.held_until > r.arrival_date
         GROUP BY 1, 2, 3)
    SELECT coalesce(i.hotel_id, h.hotel_id), coalesce(i.room_type, h.room_type), coalesce(i.night, h.night),
           i.total, i.available, coalesce(h.held, 0),
           CASE WHEN i.night IS NULL THEN 'held night has no inventory row'
                WHEN i.available < 0 OR i.available > i.total THEN 'available out of range'
                ELSE 'available is not total minus held' END
      FROM booking.inventory i
      FULL JOIN held h ON h.hotel_id = i.hotel_id AND h.room_type = i.room_type AND h.night = i.night
     WHERE i.night IS NULL OR i.available < 0 OR i.available > i.total
        OR i.available <> i.total - coalesce(h.held, 0)
     ORDER BY 1, 2, 3
$$;
COMMENT ON FUNCTION booking.inventory_violations IS 'the hotel invariant checked over the whole database: rows where available <> total - held or out of range; empty when all is well';
GRANT EXECUTE ON FUNCTION booking.inventory_violations() TO booking_admin, booking_auditor;
-- The nightly checkout (the hotel's night audit): history, the job itself,
-- and its api.  The background worker (extension/checkout_worker.c) runs
-- the same functions once per business day; api.run_checkout runs them on
-- demand for an explicit date.
--
-- Business date D is processed at the run time (pg_booking.checkout_time,
-- local to pg_booking.checkout_time_zone) on the calendar day D: by then the
-- night D-1 has passed.  A run for D
--   - completes confirmed and checked-in stays whose departure date is <= D,
--   - marks confirmed stays that never arrived (arrival < D) as no_show and
--     releases their nights from D on, when checkout_release_no_shows is on,
--   - gives back every night >= D still held by a cancelled, completed or
--     no-show reservation (whatever wrote its status),
--   - completes confirmed meeting-room bookings that ended by the run time.
-- Work is done in batches (one transaction each in the worker), so a large
-- backlog never holds many rows locked at once.

CREATE TABLE booking.checkout_runs (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    business_date      date NOT NULL,
    source             text NOT NULL,
    started_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at        timestamptz,
    completed_stays    integer NOT NULL DEFAULT 0,
    no_shows           integer NOT NULL DEFAULT 0,
    nights_returned    integer NOT NULL DEFAULT 0,
    completed_bookings integer NOT NULL DEFAULT 0,
    error              text,
    CONSTRAINT checkout_runs_source CHECK (source IN ('worker', 'manual'))
);
-- Exactly once per business day: one run that did not fail per date.
CREATE UNIQUE INDEX checkout_runs_once_per_day ON booking.checkout_runs (business_date) WHERE error IS NULL;
CREATE INDEX checkout_runs_date_idx ON booking.checkout_runs (business_date);
COMMENT ON TABLE booking.checkout_runs IS 'nightly checkout history: one row per run (failed runs keep their error)';

-- The run time and zone, as text settings read where they are needed.
CREATE FUNCTION booking.checkout_time() RETURNS time
LANGUAGE sql STABLE
AS $$ SELECT coalesce(nullif(current_setting('pg_booking.checkout_time', true), ''), '03:00')::time $$;
CREATE FUNCTION booking.checkout_time_zone() RETURNS text
LANGUAGE sql STABLE
AS $$ SELECT coalesce(nullif(current_setting('pg_booking.checkout_time_zone', true), ''), 'UTC') $$;

-- The business date whose run is due at instant "at": the local date if
-- the local time has reached the run time, else the day before.  Pure, so
-- DST and zone edges can be tested: on a spring-forward day a run time that
-- does not exist locally (02:30) falls due when the clocks jump past it; on
-- a fall-back day a repeated local time gives the same date twice, which the
-- history runs only once.
CREATE FUNCTION booking.checkout_due_date(at timestamptz, run_time time, time_zone text) RETURNS date
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT CASE WHEN (at AT TIME ZONE time_zone)::time >= run_time
                THEN (at AT TIME ZONE time_zone)::date
                ELSE (at AT TIME ZONE time_zone)::date - 1 END
$$;
COMMENT ON FUNCTION booking.checkout_due_date IS 'the latest business date whose checkout is due at an instant, for a local run time in a time zone';

-- The instant the run of business date d is due (its cut-off for meeting
-- bookings).  A run time skipped by a DST jump maps to the instant after.
CREATE FUNCTION booking.checkout_instant(d date, run_time time, time_zone text) RETURNS timestamptz
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT (d + run_time) AT TIME ZONE time_zone $$;

-- Start (or resume) the run of business date d.  NULL when d already has a
-- finished run that did not fail: a date is processed once.
CREATE FUNCTION booking.checkout_start(d date, source text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r booking.checkout_runs;
BEGIN
    PERFORM booking.require_role('admin');
    IF d IS NULL THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'as_of is required', jsonb_build_object('field', 'as_of'));
    END IF;
    -- Serialise starters of one date (the worker and a manual run), so the
    -- second sees the first's row instead of failing on the unique index.
    PERFORM pg_advisory_xact_lock(x'5203'::integer, d - date '2000-01-01');
    SELECT * INTO r FROM booking.checkout_runs WHERE business_date = d AND error IS NULL FOR UPDATE;
    IF r.id IS NOT NULL THEN
        RETURN CASE WHEN r.finished_at IS NULL THEN r.id END;
    END IF;
    INSERT INTO booking.checkout_runs (business_date, source) VALUES (d, source) RETURNING * INTO r;
    RETURN r.id;
END
$$;

-- One batch of the run: at most batch_size rows of each kind.  Returns the
-- number of rows changed; 0 when the date is done.
CREATE FUNCTION booking.checkout_batch(run_id bigint, batch_size integer DEFAULT 5000) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d date;
    cutoff timestamptz;
    release boolean := coalesce(nullif(current_setting('pg_booking.checkout_release_no_shows', true), '')::boolean, false);
    n_completed integer;
    n_no_shows integer;
    n_nights integer := 0;
    n_bookings integer;
    n_released integer;
    n integer;
BEGIN
    PERFORM booking.require_role('admin');
    SELECT business_date INTO d FROM booking.checkout_runs WHERE id = run_id AND finished_at IS NULL;
    IF d IS NULL THEN
        PERFORM booking.raise_error(404, 'NOT_FOUND', format('checkout run %s is not in progress', run_id),
            jsonb_build_object('run_id', run_id));
    END IF;
    cutoff := booking.checkout_instant(d, booking.checkout_time(), booking.checkout_time_zone());

    -- Departures: every night held has passed, nothing to give back.
    -- The batch is found by row address (a TID scan, so a batch costs its
    -- size, not the table's), without a FOR UPDATE pass: the UPDATE locks
    -- each row and, when it had to wait for one, re-checks the conditions on
    -- its latest version.
    UPDATE booking.reservations r SET status = 'completed', updated_at = now(),
           checked_out_at = CASE WHEN r.status = 'checked_in' THEN cutoff ELSE r.checked_out_at END
     WHERE r.ctid = ANY (ARRAY(SELECT x.ctid FROM booking.reservations x
                                WHERE x.status IN ('confirmed', 'checked_in') AND x.departure_date <= d
                                LIMIT batch_size))
       AND r.status IN ('confirmed', 'checked_in') AND r.departure_date <= d;
    GET DIAGNOSTICS n_completed = ROW_COUNT;

    -- No-shows: the arrival night passed without a check-in.
    n_no_shows := 0;
    IF release THEN
        WITH due AS (SELECT id, held_until FROM booking.reservations
                      WHERE status = 'confirmed' AND arrival_date < d AND departure_date > d
                      LIMIT batch_size FOR UPDATE),
             upd AS (UPDATE booking.reservations r SET status = 'no_show', updated_at = now(),
                            held_until = greatest(r.arrival_date, least(r.held_until, d))
                       FROM due WHERE r.id = due.id
                     RETURNING due.held_until - r.held_until AS returned)
        SELECT count(*), coalesce(sum(returned), 0) INTO n_no_shows, n FROM upd;
        n_nights := n_nights + n;
    END IF;

    -- Stays that no longer stay but still hold nights from d on.
    WITH due AS (SELECT id, held_until FROM booking.reservations
                  WHERE status IN ('cancelled', 'completed', 'no_show') AND held_until > arrival_date
                    AND held_until > d
                  LIMIT batch_size FOR UPDATE),
         upd AS (UPDATE booking.reservations r SET held_until = greatest(r.arrival_date, d), updated_at = now()
                   FROM due WHERE r.id = due.id
                 RETURNING due.held_until - r.held_until AS returned)
    SELECT count(*), coalesce(sum(returned), 0) INTO n_released, n FROM upd;
    n_nights := n_nights + n;

    -- Meeting-room bookings that ended by the run time.
    WITH due AS (SELECT id FROM booking.bookings
                  WHERE status = 'confirmed' AND ends_at <= cutoff
                  LIMIT batch_size FOR UPDATE)
    UPDATE booking.bookings b SET status = 'completed', updated_at = now() FROM due WHERE b.id = due.id;
    GET DIAGNOSTICS n_bookings = ROW_COUNT;

    UPDATE booking.checkout_runs
       SET completed_stays = completed_stays + n_completed, no_shows = no_shows + n_no_shows,
           nights_returned = nights_returned + n_nights, completed_bookings = completed_bookings + n_bookings
     WHERE id = run_id;
    RETURN n_completed + n_no_shows + n_released + n_bookings;
END
$$;

CREATE FUNCTION booking.checkout_finish(run_id bigint) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ UPDATE booking.checkout_runs SET finished_at = clock_timestamp() WHERE id = run_id AND finished_at IS NULL $$;

-- A failed run: its error is kept, and the date may be run again.
CREATE FUNCTION booking.checkout_failed(d date, run_id bigint, source text, message text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE booking.checkout_runs SET finished_at = clock_timestamp(), error = message
     WHERE id = run_id AND finished_at IS NULL;
    IF NOT FOUND THEN
        INSERT INTO booking.checkout_runs (business_date, source, finished_at, error)
        VALUES (d, source, clock_timestamp(), message);
    END IF;
END
$$;

CREATE FUNCTION booking.checkout_run_json(r booking.checkout_runs) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object('id', r.id, 'business_date', r.business_date, 'source', r.source,
                              'started_at', r.started_at, 'finished_at', r.finished_at,
                              'completed_stays', r.completed_stays, 'no_shows', r.no_shows,
                              'nights_returned', r.nights_returned, 'completed_bookings', r.completed_bookings,
                              'error', r.error)
$$;

-- The whole run of one date in the caller's transaction (the api's path).
CREATE FUNCTION booking.checkout_run(d date, source text DEFAULT 'manual') RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    run_id bigint := booking.checkout_start(d, source);
BEGIN
    IF run_id IS NULL THEN
        RETURN NULL;
    END IF;
    WHILE booking.checkout_batch(run_id) > 0 LOOP
    END LOOP;
    PERFORM booking.checkout_finish(run_id);
    RETURN run_id;
END
$$;

GRANT EXECUTE ON FUNCTION booking.checkout_time(), booking.checkout_time_zone(),
    booking.checkout_due_date(timestamptz, time, text), booking.checkout_instant(date, time, text),
    booking.checkout_start(date, text), booking.checkout_batch(bigint, integer), booking.checkout_finish(bigint),
    booking.checkout_run(date, text), booking.checkout_run_json(booking.checkout_runs)
  TO booking_admin;

CREATE FUNCTION api.run_checkout(as_of text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    d date;
    run_id bigint;
    r booking.checkout_runs;
BEGIN
    PERFORM booking.require_role('admin');
    d := CASE WHEN as_of IS NULL
              THEN booking.checkout_due_date(now(), booking.checkout_time(), booking.checkout_time_zone())
              ELSE booking.parse_date(as_of, 'as_of') END;
    run_id := booking.checkout_run(d, 'manual');
    IF run_id IS NULL THEN
        SELECT * INTO r FROM booking.checkout_runs WHERE business_date = d AND error IS NULL;
        RETURN booking.checkout_run_json(r) || jsonb_build_object('already_done', true);
    END IF;
    SELECT * INTO r FROM booking.checkout_runs WHERE id = run_id;
    RETURN booking.checkout_run_json(r) || jsonb_build_object('already_done', false);
END
$$;
COMMENT ON FUNCTION api.run_checkout IS 'POST /admin/jobs/checkout/run {as_of?} (admin): run the nightly checkout for a business date (default: the latest due); idempotent, a date done is not run again';

CREATE FUNCTION api.list_jobs(lim integer DEFAULT 50, off integer DEFAULT 0) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_role('admin');
    PERFORM booking.check_page(lim, off);
    RETURN coalesce((
        SELECT jsonb_agg(jsonb_build_object('job', 'checkout') || booking.checkout_run_json(x)
                         ORDER BY x.business_date DESC, x.id DESC)
          FROM (SELECT * FROM booking.checkout_runs
                 ORDER BY business_date DESC, id DESC LIMIT lim OFFSET off) x), '[]');
END
$$;
COMMENT ON FUNCTION api.list_jobs IS 'GET /admin/jobs (admin): the nightly checkout runs, newest business date first, with counts and errors';
GRANT SELECT ON booking.checkout_runs TO booking_admin;
-- Availability of people (W2Meet): users publish when they are free; the
-- engine intersects attendees' free time and suggests meeting slots with a
-- free room of enough capacity, best first.

CREATE TABLE booking.user_availability (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES booking.users ON DELETE CASCADE,
    during  tstzrange NOT NULL,
    CONSTRAINT user_availability_bounded CHECK (NOT isempty(during) AND lower_inc(during) AND NOT upper_inc(during)
                                                AND NOT lower_inf(during) AND NOT upper_inf(during))
);
CREATE INDEX user_availability_user_idx ON booking.user_availability (user_id);
COMMENT ON TABLE booking.user_availability IS 'intervals in which a user is free to meet, as they published them';

-- Anyone signed in may see when others are free; only the owner writes.
ALTER TABLE booking.user_availability ENABLE ROW LEVEL SECURITY;
CREATE POLICY user_availability_read ON booking.user_availability FOR SELECT TO booking_api USING (true);
CREATE POLICY user_availability_own ON booking.user_availability TO booking_api
    USING (user_id = booking.current_user_id()) WITH CHECK (user_id = booking.current_user_id());
GRANT SELECT, INSERT, DELETE ON booking.user_availability TO booking_api;

-- When a user is free in a window: what they published, minus the meetings
-- they booked themselves.  Reads everyone's bookings, hence SECURITY
-- DEFINER; it reveals free time only, never what the bookings are.
CREATE FUNCTION booking.user_free(user_id bigint, win tstzrange) RETURNS tstzmultirange
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (coalesce((SELECT range_agg(a.during * win) FROM booking.user_availability a
                       WHERE a.user_id = user_free.user_id AND a.during && win), '{}'::tstzmultirange))
         - (coalesce((SELECT range_agg(tstzrange(b.starts_at, b.ends_at)) FROM booking.bookings b
                       WHERE b.user_id = user_free.user_id AND b.status = 'confirmed'
                         AND b.starts_at < upper(win) AND b.ends_at > lower(win)), '{}'::tstzmultirange))
$$;

CREATE FUNCTION booking.intervals_json(m tstzmultirange) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('starts_at', lower(r), 'ends_at', upper(r)) ORDER BY lower(r)), '[]')
      FROM unnest(m) r
$$;

-- A list of user ids that all exist, without repeats; 1 to 50 of them.
CREATE FUNCTION booking.parse_attendees(ids bigint[], field text) RETURNS bigint[]
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    missing bigint;
    uniq bigint[] := ARRAY(SELECT DISTINCT x FROM unnest(ids) x WHERE x IS NOT NULL ORDER BY 1);
BEGIN
    IF coalesce(cardinality(uniq), 0) NOT BETWEEN 1 AND 50 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('%s must name 1 to 50 users', field),
            jsonb_build_object('field', field));
    END IF;
    SELECT x INTO missing FROM unnest(uniq) x
     WHERE NOT EXISTS (SELECT 1 FROM booking.users u WHERE u.id = x AND u.active) LIMIT 1;
    IF missing IS NOT NULL THEN
        PERFORM booking.raise_error(404, 'NOT_FOUND', format('user %s not found', missing),
            jsonb_build_object('field', field, 'user_id', missing));
    END IF;
    RETURN uniq;
END
$$;

GRANT EXECUTE ON FUNCTION booking.user_free(bigint, tstzrange), booking.intervals_json(tstzmultirange),
    booking.parse_attendees(bigint[], text) TO booking_api;

CREATE FUNCTION api.set_my_availability(intervals jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    uid bigint := booking.require_user();
    item jsonb;
    s timestamptz;
    e timestamptz;
    n integer := 0;
BEGIN
    IF jsonb_typeof(intervals) IS DISTINCT FROM 'array' OR jsonb_array_length(intervals) > 200 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'availability must be an array of at most 200 intervals',
            jsonb_build_object('field', 'intervals'));
    END IF;
    DELETE FROM booking.user_availability WHERE user_id = uid;
    FOR item IN SELECT * FROM jsonb_array_elements(intervals) LOOP
        n := n + 1;
        IF jsonb_typeof(item) <> 'object' THEN
            PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('interval %s is not an object', n),
                jsonb_build_object('field', format('intervals[%s]', n - 1)));
        END IF;
        s := booking.parse_instant(item ->> 'starts_at', format('intervals[%s].starts_at', n - 1));
        e := booking.parse_instant(item ->> 'ends_at', format('intervals[%s].ends_at', n - 1));
        IF e <= s THEN
            PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('interval %s must end after it starts', n),
                jsonb_build_object('field', format('intervals[%s].ends_at', n - 1)));
        END IF;
        IF e - s > interval '31 days' THEN
            PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('interval %s is longer than 31 days', n),
                jsonb_build_object('field', format('intervals[%s].ends_at', n - 1)));
        END IF;
        INSERT INTO booking.user_availability (user_id, during) VALUES (uid, tstzrange(s, e));
    END LOOP;
    RETURN api.user_availability(uid);
END
$$;
COMMENT ON FUNCTION api.set_my_availability IS 'PUT /users/me/availability (self): replace the caller''s free intervals with [{starts_at, ends_at}, ...] (at most 200); overlapping ones are merged';

CREATE FUNCTION api.user_availability(user_id bigint, "from" text DEFAULT NULL, "to" text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    w tstzrange := '(,)';
BEGIN
    PERFORM booking.require_user();
    PERFORM booking.parse_attendees(ARRAY[user_id], 'user_id');
    IF "from" IS NOT NULL OR "to" IS NOT NULL THEN
        w := booking.parse_window("from", "to", 366);
    END IF;
    RETURN booking.intervals_json((SELECT coalesce(range_agg(a.during * w), '{}') FROM booking.user_availability a
                                    WHERE a.user_id = user_availability.user_id AND a.during && w));
END
$$;
COMMENT ON FUNCTION api.user_availability IS 'GET /users/{id}/availability (any user): the user''s published free intervals, merged, optionally within [from, to)';

CREATE FUNCTION api.common_availability(users bigint[], "from" text, "to" text) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    w tstzrange;
    ids bigint[];
BEGIN
    PERFORM booking.require_user();
    ids := booking.parse_attendees(users, 'users');
    w := booking.parse_window("from", "to", 62);
    RETURN booking.intervals_json((SELECT range_intersect_agg(booking.user_free(u, w)) FROM unnest(ids) u));
END
$$;
COMMENT ON FUNCTION api.common_availability IS 'GET /availability/common?users=1,2,3&from&to (any user): the intervals of [from, to) in which every listed user is free (published availability minus their own bookings)';

CREATE FUNCTION api.suggest_meetings(attendees bigint[], duration_minutes integer, "from" text, "to" text,
                                     min_capacity integer DEFAULT NULL, lim integer DEFAULT 5) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    w tstzrange;
    ids bigint[];
    common tstzmultirange;
    need integer;
    dur interval;
BEGIN
    PERFORM booking.require_user();
    ids := booking.parse_attendees(attendees, 'attendees');
    w := booking.parse_window("from", "to", 14);
    IF duration_minutes IS NULL OR duration_minutes NOT BETWEEN 15 AND 1440 OR duration_minutes % 15 <> 0 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'duration_minutes must be a multiple of 15 from 15 to 1440',
            jsonb_build_object('field', 'duration_minutes'));
    END IF;
    IF lim IS NULL OR lim NOT BETWEEN 1 AND 50 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('limit %s is out of range', coalesce(lim::text, 'NULL')),
            jsonb_build_object('field', 'limit', 'min', 1, 'max', 50));
    END IF;
    need := coalesce(min_capacity, cardinality(ids));
    IF need < 1 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('min_capacity %s is not positive', need),
            jsonb_build_object('field', 'min_capacity'));
    END IF;
    dur := make_interval(mins => duration_minutes);
    common := (SELECT range_intersect_agg(booking.user_free(u, w)) FROM unnest(ids) u);

    -- Candidate starts on a 15-minute grid inside the common free time; for
    -- each, the best room that is free for the whole meeting (the smallest
    -- that fits, so big rooms stay free for big meetings).  Best first:
    -- earliest, then snuggest room.
    RETURN coalesce((
        SELECT jsonb_agg(jsonb_build_object('starts_at', c.s, 'ends_at', c.s + dur, 'room_id', c.room_id,
                                            'room_name', c.name, 'capacity', c.capacity)
                         ORDER BY c.s, c.capacity, c.name)
          FROM (SELECT DISTINCT ON (g.s) g.s, r.id AS room_id, r.name, r.capacity
                  FROM unnest(common) f
                 CROSS JOIN LATERAL generate_series(
                        date_bin('15 minutes', lower(f), timestamptz '2000-01-01 00:00+00')
                          + CASE WHEN date_bin('15 minutes', lower(f), timestamptz '2000-01-01 00:00+00') < lower(f)
                                 THEN interval '15 minutes' ELSE interval '0' END,
                        upper(f) - dur, interval '15 minutes') g(s)
                  JOIN (SELECT r.*, booking.room_busy(r.id, lower(w), upper(w)) AS busy
                          FROM booking.rooms r WHERE r.active AND r.capacity >= need) r
                    ON NOT r.busy && tstzrange(g.s, g.s + dur)
                 WHERE g.s >= now()
                 ORDER BY g.s, r.capacity, r.name
                 LIMIT lim) c), '[]');
END
$$;
COMMENT ON FUNCTION api.suggest_meetings IS 'POST /meetings/suggest (any user): up to lim slots {starts_at, ends_at, room_id} in [from, to) when every attendee is free and a room of min_capacity (default: number of attendees) is free, earliest and snuggest room first';
-- Rate limits: rules are rows of booking.rate_limits; the accounting lives in
-- shared memory (extension/ratelimit.c: an exact sliding log, one pool per
-- rule), so every adapter replica and every psql session share it and a hit
-- counts even when the calling transaction rolls back.

CREATE TABLE booking.rate_limits (
    endpoint      text PRIMARY KEY,
    max_requests  integer NOT NULL,
    window_length interval NOT NULL,
    key_kind      text NOT NULL,
    exempt_roles  text[] NOT NULL DEFAULT '{}',
    CHECK (endpoint ~ '^[a-z][a-z0-9_]{0,62}$'),
    CHECK (max_requests BETWEEN 1 AND 1000),
    CHECK (window_length > interval '0' AND window_length <= interval '24 days'),
    CHECK (key_kind IN ('ip', 'user'))
);
COMMENT ON TABLE booking.rate_limits IS
'rate-limit rules: at most max_requests calls of endpoint in any window_length, per client IP or per user; '
'roles in exempt_roles are not limited; changing a rule starts its accounting afresh';

-- A clear error for each bad rule (the CHECKs above are the backstop).
CREATE FUNCTION booking.rate_limits_validate() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ms numeric;
BEGIN
    IF NEW.endpoint IS NULL OR NEW.endpoint !~ '^[a-z][a-z0-9_]{0,62}$' THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('rate-limit endpoint "%s" is not a lower-case name', NEW.endpoint),
            jsonb_build_object('field', 'endpoint'),
            'Use letters, digits and underscores, at most 63 characters, starting with a letter.');
    END IF;
    IF NEW.max_requests IS NULL OR NEW.max_requests NOT BETWEEN 1 AND 1000 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('max_requests %s is out of range', coalesce(NEW.max_requests::text, 'NULL')),
            jsonb_build_object('field', 'max_requests', 'min', 1, 'max', 1000));
    END IF;
    IF NEW.window_length IS NULL OR extract(month FROM NEW.window_length) <> 0
       OR extract(year FROM NEW.window_length) <> 0 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('window "%s" must be given in days, hours, minutes or seconds', NEW.window_length),
            jsonb_build_object('field', 'window_length'));
    END IF;
    ms := extract(epoch FROM NEW.window_length) * 1000;
    IF ms <= 0 OR ms > 24 * 24 * 3600 * 1000 OR ms <> trunc(ms) THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('window "%s" is out of range', NEW.window_length),
            jsonb_build_object('field', 'window_length', 'min', '1 millisecond', 'max', '24 days'),
            'Give a positive window of whole milliseconds, at most 24 days.');
    END IF;
    IF NEW.key_kind IS NULL OR NEW.key_kind NOT IN ('ip', 'user') THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('key_kind "%s" is not one of ip, user', NEW.key_kind),
            jsonb_build_object('field', 'key_kind', 'allowed', jsonb_build_array('ip', 'user')));
    END IF;
    IF NOT NEW.exempt_roles <@ ARRAY['user', 'admin', 'facility_manager', 'auditor', 'moderator',
                                     'service_account', 'superuser'] THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('exempt_roles %s names an unknown role', NEW.exempt_roles),
            jsonb_build_object('field', 'exempt_roles'));
    END IF;
    -- Each rule needs a pool of shared memory; their number is fixed at start
    -- (the setting exists only when the library is preloaded).
    IF TG_OP = 'INSERT' AND (SELECT count(*) FROM booking.rate_limits)
                            >= current_setting('pg_booking.rate_limit_rules', true)::integer THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR',
            format('at most %s rate-limit rules can be tracked', current_setting('pg_booking.rate_limit_rules')),
            jsonb_build_object('field', 'endpoint'),
            'Raise pg_booking.rate_limit_rules and restart the server, or delete an unused rule.');
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER rate_limits_validate BEFORE INSERT OR UPDATE ON booking.rate_limits
    FOR EACH ROW EXECUTE FUNCTION booking.rate_limits_validate();

-- Defaults.  Logins and registrations come before anyone is signed in, so
-- they are counted per client IP; creations per user.  Staff accounts that
-- act in bulk (admin, service_account) are exempt from the per-user rules.
INSERT INTO booking.rate_limits (endpoint, max_requests, window_length, key_kind, exempt_roles) VALUES
    ('login',              5,  '10 seconds', 'ip',   '{}'),
    ('register',           10, '1 hour',     'ip',   '{}'),
    ('create_booking',     30, '1 minute',   'user', '{admin,service_account}'),
    ('create_reservation', 30, '1 minute',   'user', '{admin,service_account}'),
    ('create_review',      10, '1 hour',     'user', '{admin,service_account}');
-- Not marked as extension configuration: pg_dump would then dump these
-- default rows too and a restore would collide with the ones CREATE
-- EXTENSION makes.  Edited rules are re-applied after a restore by hand.

-- The shared-memory limiter (ratelimit.c).  at_ms replaces the monotonic
-- clock (tests only); dry_run answers without counting.  Superusers only:
-- callers go through booking.rate_limit_hit.
CREATE FUNCTION booking.rate_limit_check(endpoint text, key text, max_requests integer, window_ms bigint,
                                         at_ms bigint DEFAULT NULL, dry_run boolean DEFAULT false,
                                         OUT allowed boolean, OUT remaining integer,
                                         OUT retry_after_ms bigint, OUT reset_ms bigint)
RETURNS record
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'pgb_rate_limit_check';
COMMENT ON FUNCTION booking.rate_limit_check IS
'check and count one request of key against "at most max_requests in any window_ms" (exact sliding log in shared memory)';

CREATE FUNCTION booking.rate_limit_stats(OUT endpoint text, OUT max_requests integer, OUT window_ms bigint,
                                         OUT keys bigint, OUT capacity bigint, OUT bytes_per_key integer,
                                         OUT admitted bigint, OUT denied bigint,
                                         OUT evicted_expired bigint, OUT evicted_forced bigint,
                                         OUT since timestamptz)
RETURNS SETOF record
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'pgb_rate_limit_stats';
COMMENT ON FUNCTION booking.rate_limit_stats IS
'per rule in shared memory: keys held, capacity, bytes per key, admissions, denials, evictions (since the server started)';

CREATE FUNCTION booking.rate_limit_reset(endpoint text DEFAULT NULL) RETURNS bigint
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'pgb_rate_limit_reset';
COMMENT ON FUNCTION booking.rate_limit_reset IS
'forget every key of a rule (of every rule when NULL); counters are kept; returns the keys forgotten';

-- Who a request counts against, for a rule's key kind; NULL means "not
-- limited".  IP: the client address the adapter sets per request
-- (request.client_ip), else the address of a TCP connection; a session on a
-- local socket without request.client_ip is the database host itself and is
-- not limited (this is how pg_regress and operators in psql run).  User: the
-- caller's id from the claims.
CREATE FUNCTION booking.rate_limit_key(key_kind text) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE key_kind
        WHEN 'ip' THEN coalesce(lower(nullif(btrim(current_setting('request.client_ip', true)), '')),
                                host(inet_client_addr()))
        WHEN 'user' THEN booking.current_user_id()::text
    END
$$;

-- Called by the api function of a limited endpoint, before it writes.  Over
-- the limit: 429 RATE_LIMIT_EXCEEDED with the exact wait.  Within it: the
-- RateLimit headers go to response.headers (PostgREST's convention, which
-- the adapter follows too).
CREATE FUNCTION booking.rate_limit_hit(endpoint text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r booking.rate_limits;
    k text;
    window_ms bigint;
    d record;
    headers jsonb;
BEGIN
    -- Unset only when the library is not loaded yet (not preloaded): then
    -- the check below says clearly that preloading is needed.
    IF NOT coalesce(current_setting('pg_booking.rate_limit_enabled', true), 'on')::boolean THEN
        RETURN;
    END IF;
    SELECT * INTO r FROM booking.rate_limits l WHERE l.endpoint = rate_limit_hit.endpoint;
    IF NOT FOUND OR booking.current_app_role() = ANY (r.exempt_roles) THEN
        RETURN;
    END IF;
    k := booking.rate_limit_key(r.key_kind);
    IF k IS NULL THEN
        RETURN;
    END IF;
    window_ms := (extract(epoch FROM r.window_length) * 1000)::bigint;
    d := booking.rate_limit_check(r.endpoint, k, r.max_requests, window_ms);
    IF NOT d.allowed THEN
        PERFORM booking.raise_error(429, 'RATE_LIMIT_EXCEEDED',
            format('too many requests to "%s"', r.endpoint),
            jsonb_build_object('endpoint', r.endpoint, 'limit', r.max_requests,
                               'window_seconds', trim_scale(window_ms / 1000.0), 'remaining', 0,
                               'retry_after_seconds', ceil(d.retry_after_ms / 1000.0)::bigint,
                               'retry_after_ms', d.retry_after_ms),
            format('At most %s requests per %s; see retry_after_seconds.', r.max_requests, r.window_length));
    END IF;
    headers := coalesce(nullif(current_setting('response.headers', true), '')::jsonb, '[]')
        || jsonb_build_array(
               jsonb_build_object('RateLimit-Limit', r.max_requests::text),
               jsonb_build_object('RateLimit-Remaining', d.remaining::text),
               jsonb_build_object('RateLimit-Reset', ceil(d.reset_ms / 1000.0)::text),
               jsonb_build_object('RateLimit-Policy', format('%s;w=%s', r.max_requests, ceil(window_ms / 1000.0))));
    PERFORM set_config('response.headers', headers::text, true);
END
$$;
COMMENT ON FUNCTION booking.rate_limit_hit IS
'count one request to endpoint against its rule; 429 RATE_LIMIT_EXCEEDED (details: retry_after_seconds) when over the limit';
GRANT EXECUTE ON FUNCTION booking.rate_limit_hit(text) TO booking_anon, booking_api;

-- Denials per endpoint, for analytics (counters since the server started or
-- the rule's pool was bound).
CREATE VIEW booking.rate_limit_denials AS
SELECT r.endpoint, r.max_requests, r.window_length, r.key_kind,
       coalesce(s.denied, 0) AS denials,
       coalesce(s.admitted, 0) AS admitted,
       coalesce(s.keys, 0) AS keys_tracked,
       coalesce(s.evicted_forced, 0) AS forced_evictions,
       s.since
  FROM booking.rate_limits r
  LEFT JOIN booking.rate_limit_stats() s ON s.endpoint = r.endpoint;
COMMENT ON VIEW booking.rate_limit_denials IS 'rate-limit denials and admissions per endpoint since the server started';

GRANT SELECT ON booking.rate_limits, booking.rate_limit_denials TO booking_admin, booking_auditor;
GRANT EXECUTE ON FUNCTION booking.rate_limit_stats() TO booking_admin, booking_auditor;
-- Reviews of meeting rooms, votes, flags and moderation.
--
-- Every rule lives in the tables' row-level security and constraints, so a
-- direct INSERT in psql is held to the same rules as the api: one review per
-- user and room, rating 1..5, only after a booking of that room has ended,
-- never a vote on one's own review.  The api functions check first, to
-- answer with a clear error rather than a policy violation.

CREATE TABLE booking.reviews (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room_id    bigint NOT NULL REFERENCES booking.rooms,
    user_id    bigint NOT NULL REFERENCES booking.users,
    rating     integer NOT NULL,
    comment    text NOT NULL DEFAULT '',
    status     text NOT NULL DEFAULT 'visible',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT reviews_one_per_user_and_room UNIQUE (room_id, user_id),
    CONSTRAINT reviews_rating_range CHECK (rating BETWEEN 1 AND 5),
    CONSTRAINT reviews_comment_length CHECK (length(comment) <= 4000),
    CONSTRAINT reviews_status_check CHECK (status IN ('visible', 'flagged', 'hidden'))
);
CREATE INDEX reviews_user_idx ON booking.reviews (user_id);
CREATE INDEX reviews_moderation_idx ON booking.reviews (status, updated_at) WHERE status <> 'visible';
COMMENT ON TABLE booking.reviews IS 'room reviews, one per user and room, by users whose booking of the room has ended; hidden ones are seen by moderators and their author only';

CREATE TABLE booking.review_votes (
    review_id  bigint NOT NULL REFERENCES booking.reviews ON DELETE CASCADE,
    user_id    bigint NOT NULL REFERENCES booking.users,
    helpful    boolean NOT NULL,
    voted_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (review_id, user_id)
);
COMMENT ON TABLE booking.review_votes IS 'helpful/unhelpful votes, one per user and review (a second vote changes the first)';

CREATE TABLE booking.review_flags (
    review_id  bigint NOT NULL REFERENCES booking.reviews ON DELETE CASCADE,
    user_id    bigint NOT NULL REFERENCES booking.users,
    reason     text NOT NULL DEFAULT '',
    flagged_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (review_id, user_id),
    CONSTRAINT review_flags_reason_length CHECK (length(reason) <= 500)
);
COMMENT ON TABLE booking.review_flags IS 'who flagged which review and why; a flag moves a visible review to the moderation queue';

-- Has this user a booking of this room that has ended (and was held, not
-- cancelled)?  Reads every user's bookings, hence SECURITY DEFINER; it
-- answers yes or no only.
CREATE FUNCTION booking.may_review(room_id bigint, user_id bigint) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM booking.bookings b
                    WHERE b.room_id = may_review.room_id AND b.user_id = may_review.user_id
                      AND b.status IN ('confirmed', 'completed') AND b.ends_at <= now())
$$;
COMMENT ON FUNCTION booking.may_review IS 'true when the user has a confirmed or completed booking of the room that has ended';

-- The author of a review, whatever its status (votes must not go to one's
-- own review, even a hidden one the voter cannot see).
CREATE FUNCTION booking.review_author(review_id bigint) RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT r.user_id FROM booking.reviews r WHERE r.id = review_author.review_id $$;

-- Row-level security.  Everyone signed in reads the reviews that are not
-- hidden, and their own; moderators and admins read and moderate all.
ALTER TABLE booking.reviews ENABLE ROW LEVEL SECURITY;
CREATE POLICY reviews_read ON booking.reviews FOR SELECT TO booking_api
    USING (status <> 'hidden' OR user_id = booking.current_user_id());
CREATE POLICY reviews_write_own ON booking.reviews FOR INSERT TO booking_api
    WITH CHECK (user_id = booking.current_user_id() AND status = 'visible'
                AND booking.may_review(room_id, user_id));
CREATE POLICY reviews_change_own ON booking.reviews FOR UPDATE TO booking_api
    USING (user_id = booking.current_user_id()) WITH CHECK (user_id = booking.current_user_id());
CREATE POLICY reviews_delete_own ON booking.reviews FOR DELETE TO booking_api
    USING (user_id = booking.current_user_id());
CREATE POLICY reviews_moderate ON booking.reviews TO booking_moderator, booking_admin
    USING (true) WITH CHECK (true);
-- Authors change their text and rating; only moderators change the status.
GRANT SELECT, DELETE ON booking.reviews TO booking_api;
GRANT INSERT (room_id, user_id, rating, comment) ON booking.reviews TO booking_api;
GRANT UPDATE (rating, comment, updated_at) ON booking.reviews TO booking_api;
GRANT UPDATE (status, updated_at) ON booking.reviews TO booking_moderator, booking_admin;

ALTER TABLE booking.review_votes ENABLE ROW LEVEL SECURITY;
CREATE POLICY review_votes_own ON booking.review_votes TO booking_api
    USING (user_id = booking.current_user_id())
    WITH CHECK (user_id = booking.current_user_id()
                AND booking.review_author(review_id) IS DISTINCT FROM user_id);
CREATE POLICY review_votes_staff_read ON booking.review_votes FOR SELECT
    TO booking_moderator, booking_admin USING (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON booking.review_votes TO booking_api;

ALTER TABLE booking.review_flags ENABLE ROW LEVEL SECURITY;
CREATE POLICY review_flags_own ON booking.review_flags TO booking_api
    USING (user_id = booking.current_user_id()) WITH CHECK (user_id = booking.current_user_id());
CREATE POLICY review_flags_staff_read ON booking.review_flags FOR SELECT
    TO booking_moderator, booking_admin USING (true);
GRANT SELECT, INSERT, UPDATE ON booking.review_flags TO booking_api;

-- A flag moves a visible review to the moderation queue.  The flagger may
-- not change someone else's review, hence SECURITY DEFINER; a hidden review
-- stays hidden.
CREATE FUNCTION booking.review_flagged() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE booking.reviews SET status = 'flagged', updated_at = now()
     WHERE id = NEW.review_id AND status = 'visible';
    RETURN NULL;
END
$$;
CREATE TRIGGER review_flags_queue AFTER INSERT ON booking.review_flags
    FOR EACH ROW EXECUTE FUNCTION booking.review_flagged();

-- Vote counts of a review: every user's votes count, though each user sees
-- only their own rows.
CREATE FUNCTION booking.review_vote_counts(review_id bigint, OUT helpful bigint, OUT unhelpful bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(*) FILTER (WHERE v.helpful), count(*) FILTER (WHERE NOT v.helpful)
      FROM booking.review_votes v WHERE v.review_id = review_vote_counts.review_id
$$;

CREATE FUNCTION booking.review_json(r booking.reviews) RETURNS jsonb
LANGUAGE sql STABLE
AS $$
    SELECT jsonb_build_object('id', r.id, 'room_id', r.room_id, 'user_id', r.user_id,
                              'rating', r.rating, 'comment', r.comment, 'status', r.status,
                              'helpful_votes', c.helpful, 'unhelpful_votes', c.unhelpful,
                              'created_at', r.created_at, 'updated_at', r.updated_at)
      FROM booking.review_vote_counts(r.id) c
$$;

CREATE FUNCTION booking.validate_review(rating integer, comment text) RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF rating IS NOT NULL AND rating NOT BETWEEN 1 AND 5 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('rating %s is not between 1 and 5', rating),
            jsonb_build_object('field', 'rating', 'min', 1, 'max', 5));
    END IF;
    IF comment IS NOT NULL AND length(comment) > 4000 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'comment is longer than 4000 characters',
            jsonb_build_object('field', 'comment', 'max_length', 4000));
    END IF;
END
$$;

-- A review the caller may see, or 404.
CREATE FUNCTION booking.find_review(review_id bigint) RETURNS booking.reviews
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    r booking.reviews;
BEGIN
    SELECT * INTO r FROM booking.reviews WHERE id = review_id;
    IF r.id IS NULL THEN
        PERFORM booking.raise_error(404, 'NOT_FOUND', format('review %s not found', coalesce(review_id::text, 'NULL')),
            jsonb_build_object('review_id', review_id));
    END IF;
    RETURN r;
END
$$;

-- A review the caller wrote: 404 when there is none, 403 when it is someone else's.
CREATE FUNCTION booking.find_own_review(review_id bigint) RETURNS booking.reviews
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    uid bigint := booking.require_user();
    r booking.reviews := booking.find_review(review_id);
BEGIN
    IF r.user_id <> uid THEN
        PERFORM booking.raise_error(403, 'FORBIDDEN', format('review %s is not yours', review_id),
            jsonb_build_object('review_id', review_id));
    END IF;
    RETURN r;
END
$$;

GRANT EXECUTE ON FUNCTION booking.find_own_review(bigint), booking.may_review(bigint, bigint), booking.review_author(bigint),
    booking.review_vote_counts(bigint), booking.review_json(booking.reviews),
    booking.validate_review(integer, text), booking.find_review(bigint)
  TO booking_api;

CREATE FUNCTION api.create_review(room_id bigint, rating integer, comment text DEFAULT '') RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    uid bigint := booking.require_user();
    r booking.reviews;
BEGIN
    PERFORM booking.find_room(room_id);
    IF rating IS NULL THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'rating is required', jsonb_build_object('field', 'rating'));
    END IF;
    PERFORM booking.validate_review(rating, comment);
    PERFORM booking.rate_limit_hit('create_review');
    IF NOT booking.may_review(room_id, uid) THEN
        PERFORM booking.raise_error(403, 'FORBIDDEN',
            format('no ended booking of room %s to review', room_id),
            jsonb_build_object('room_id', room_id),
            'A room can be reviewed once a booking of it has ended.');
    END IF;
    BEGIN
        INSERT INTO booking.reviews (room_id, user_id, rating, comment)
        VALUES (room_id, uid, rating, coalesce(comment, '')) RETURNING * INTO r;
    EXCEPTION WHEN unique_violation THEN
        PERFORM booking.raise_error(409, 'ALREADY_EXISTS', format('room %s is already reviewed by this user', room_id),
            jsonb_build_object('room_id', room_id), 'Change the existing review with PATCH /reviews/{id}.');
    END;
    RETURN booking.review_json(r);
END
$$;
COMMENT ON FUNCTION api.create_review IS 'POST /reviews (a user with an ended booking of the room, rate-limited): 403 FORBIDDEN without one, 409 ALREADY_EXISTS for a second review, 422 for a rating outside 1..5';

CREATE FUNCTION api.list_room_reviews(room_id bigint, lim integer DEFAULT 50, off integer DEFAULT 0) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_user();
    PERFORM booking.check_page(lim, off);
    PERFORM booking.find_room(room_id);
    -- Hidden reviews are left out for everyone here, moderators included:
    -- they see them in the moderation queue.
    RETURN coalesce((
        SELECT jsonb_agg(booking.review_json(x) ORDER BY x.created_at DESC, x.id DESC)
          FROM (SELECT r.* FROM booking.reviews r
                 WHERE r.room_id = list_room_reviews.room_id AND r.status <> 'hidden'
                 ORDER BY r.created_at DESC, r.id DESC LIMIT lim OFFSET off) x), '[]');
END
$$;
COMMENT ON FUNCTION api.list_room_reviews IS 'GET /rooms/{id}/reviews (any user): the room''s reviews, newest first, hidden ones omitted';

CREATE FUNCTION api.update_review(id bigint, rating integer DEFAULT NULL, comment text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r booking.reviews := booking.find_own_review(id);
BEGIN
    PERFORM booking.validate_review(rating, comment);
    UPDATE booking.reviews x
       SET rating = coalesce(update_review.rating, x.rating),
           comment = coalesce(update_review.comment, x.comment), updated_at = now()
     WHERE x.id = update_review.id
    RETURNING * INTO r;
    RETURN booking.review_json(r);
END
$$;
COMMENT ON FUNCTION api.update_review IS 'PATCH /reviews/{id} (author): change rating or comment; 403 for someone else''s review, 404';

CREATE FUNCTION api.delete_review(id bigint) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r booking.reviews := booking.find_own_review(id);
BEGIN
    DELETE FROM booking.reviews x WHERE x.id = delete_review.id;
    RETURN jsonb_build_object('id', id, 'deleted', true);
END
$$;
COMMENT ON FUNCTION api.delete_review IS 'DELETE /reviews/{id} (author): 204; 403 for someone else''s review, 404';

CREATE FUNCTION api.vote_review(id bigint, helpful boolean) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    uid bigint := booking.require_user();
    r booking.reviews := booking.find_review(id);
    previous boolean;
BEGIN
    IF helpful IS NULL THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'helpful is required', jsonb_build_object('field', 'helpful'));
    END IF;
    IF r.user_id = uid THEN
        PERFORM booking.raise_error(403, 'FORBIDDEN', 'authors may not vote on their own review',
            jsonb_build_object('review_id', id));
    END IF;
    SELECT v.helpful INTO previous FROM booking.review_votes v WHERE v.review_id = r.id AND v.user_id = uid;
    -- One vote per user: a second vote replaces the first.
    INSERT INTO booking.review_votes AS v (review_id, user_id, helpful) VALUES (r.id, uid, vote_review.helpful)
    ON CONFLICT (review_id, user_id) DO UPDATE SET helpful = excluded.helpful, voted_at = now();
    RETURN booking.review_json(r) || jsonb_build_object('your_vote', helpful, 'changed', previous IS NOT NULL AND previous <> helpful,
                                                        'previous_vote', previous);
END
$$;
COMMENT ON FUNCTION api.vote_review IS 'POST /reviews/{id}/votes (any user but the author): helpful or not, one vote per user (a second vote changes it); 403 for the author';

CREATE FUNCTION api.flag_review(id bigint, reason text DEFAULT '') RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    uid bigint := booking.require_user();
    r booking.reviews := booking.find_review(id);
BEGIN
    IF length(coalesce(reason, '')) > 500 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'reason is longer than 500 characters',
            jsonb_build_object('field', 'reason', 'max_length', 500));
    END IF;
    -- Flagging twice is harmless: the first flag stands.
    INSERT INTO booking.review_flags (review_id, user_id, reason) VALUES (r.id, uid, coalesce(reason, ''))
    ON CONFLICT DO NOTHING;
    RETURN jsonb_build_object('id', r.id, 'flagged', true);
END
$$;
COMMENT ON FUNCTION api.flag_review IS 'POST /reviews/{id}/flag (any user): puts the review in the moderation queue; 404';

-- Moderation.
CREATE FUNCTION api.moderation_reviews(status text DEFAULT 'flagged', lim integer DEFAULT 50, off integer DEFAULT 0)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_role('moderator', 'admin');
    PERFORM booking.check_page(lim, off);
    IF status IS NULL OR status NOT IN ('visible', 'flagged', 'hidden') THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('status "%s" is not a review status', status),
            jsonb_build_object('field', 'status'));
    END IF;
    RETURN coalesce((
        SELECT jsonb_agg(booking.review_json(x) || jsonb_build_object('flags', f.flags) ORDER BY x.updated_at, x.id)
          FROM (SELECT r.* FROM booking.reviews r WHERE r.status = moderation_reviews.status
                 ORDER BY r.updated_at, r.id LIMIT lim OFFSET off) x
          CROSS JOIN LATERAL (
                SELECT coalesce(jsonb_agg(jsonb_build_object('user_id', fl.user_id, 'reason', fl.reason)
                                          ORDER BY fl.flagged_at, fl.user_id), '[]') AS flags
                  FROM booking.review_flags fl WHERE fl.review_id = x.id) f), '[]');
END
$$;
COMMENT ON FUNCTION api.moderation_reviews IS 'GET /moderation/reviews?status=flagged (moderator, admin): the queue, oldest first, with the flags; 403 for other roles';

CREATE FUNCTION booking.moderate_review(review_id bigint, new_status text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r booking.reviews;
BEGIN
    PERFORM booking.require_role('moderator', 'admin');
    r := booking.find_review(review_id);
    UPDATE booking.reviews x SET status = new_status, updated_at = now()
     WHERE x.id = review_id RETURNING * INTO r;
    -- A restored review leaves the queue: its flags are settled.
    IF new_status = 'visible' THEN
        DELETE FROM booking.review_flags fl WHERE fl.review_id = moderate_review.review_id;
    END IF;
    RETURN booking.review_json(r);
END
$$;
GRANT EXECUTE ON FUNCTION booking.moderate_review(bigint, text) TO booking_api;
-- Settling flags on restore needs DELETE on them, for moderators only.
GRANT DELETE ON booking.review_flags TO booking_moderator, booking_admin;
CREATE POLICY review_flags_staff_settle ON booking.review_flags FOR DELETE
    TO booking_moderator, booking_admin USING (true);

CREATE FUNCTION api.hide_review(id bigint) RETURNS jsonb
LANGUAGE sql VOLATILE
AS $$ SELECT booking.moderate_review(id, 'hidden') $$;
COMMENT ON FUNCTION api.hide_review IS 'POST /moderation/reviews/{id}/hide (moderator, admin): the review disappears from listings and ratings; 403, 404';

CREATE FUNCTION api.restore_review(id bigint) RETURNS jsonb
LANGUAGE sql VOLATILE
AS $$ SELECT booking.moderate_review(id, 'visible') $$;
COMMENT ON FUNCTION api.restore_review IS 'POST /moderation/reviews/{id}/restore (moderator, admin): visible again, flags settled; 403, 404';
-- Analytics: summary tables kept exact by C triggers (extension/analytics.c),
-- the views dashboards read, a check against a full recount, the api.

CREATE TABLE booking.room_booking_counts (
    room_id   bigint PRIMARY KEY REFERENCES booking.rooms ON DELETE CASCADE,
    confirmed bigint NOT NULL DEFAULT 0,
    cancelled bigint NOT NULL DEFAULT 0,
    completed bigint NOT NULL DEFAULT 0,
    CONSTRAINT room_booking_counts_not_negative CHECK (confirmed >= 0 AND cancelled >= 0 AND completed >= 0)
);
COMMENT ON TABLE booking.room_booking_counts IS 'bookings per room and status, kept exact by the count_bookings triggers; compare with booking.analytics_check()';

CREATE TABLE booking.room_rating_counts (
    room_id      bigint PRIMARY KEY REFERENCES booking.rooms ON DELETE CASCADE,
    review_count bigint NOT NULL DEFAULT 0,
    rating_sum   bigint NOT NULL DEFAULT 0,
    CONSTRAINT room_rating_counts_not_negative CHECK (review_count >= 0 AND rating_sum >= 0)
);
COMMENT ON TABLE booking.room_rating_counts IS 'number and sum of the ratings of each room''s reviews that are not hidden, kept exact by the count_reviews triggers';

-- Nobody but the owner writes the counters; the views below read them.
REVOKE ALL ON booking.room_booking_counts, booking.room_rating_counts FROM PUBLIC;

CREATE FUNCTION booking.count_bookings() RETURNS trigger
AS 'MODULE_PATHNAME', 'count_bookings' LANGUAGE C;
COMMENT ON FUNCTION booking.count_bookings IS 'statement trigger: add the net change of a statement on booking.bookings to booking.room_booking_counts';
CREATE FUNCTION booking.count_reviews() RETURNS trigger
AS 'MODULE_PATHNAME', 'count_reviews' LANGUAGE C;
COMMENT ON FUNCTION booking.count_reviews IS 'statement trigger: add the net change of a statement on booking.reviews to booking.room_rating_counts';
CREATE FUNCTION booking.count_rooms() RETURNS trigger
AS 'MODULE_PATHNAME', 'count_rooms' LANGUAGE C;
COMMENT ON FUNCTION booking.count_rooms IS 'trigger: a new room''s counters start at zero';

-- Statement triggers with transition tables (named old_rows and new_rows,
-- as analytics.c expects): one counter update per touched room and
-- statement, in room order.  One event each: PostgreSQL allows transition
-- tables only on single-event triggers.
CREATE TRIGGER bookings_count_insert AFTER INSERT ON booking.bookings
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION booking.count_bookings();
CREATE TRIGGER bookings_count_update AFTER UPDATE ON booking.bookings
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION booking.count_bookings();
CREATE TRIGGER bookings_count_delete AFTER DELETE ON booking.bookings
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION booking.count_bookings();
CREATE TRIGGER bookings_count_truncate AFTER TRUNCATE ON booking.bookings
    FOR EACH STATEMENT EXECUTE FUNCTION booking.count_bookings();
CREATE TRIGGER reviews_count_insert AFTER INSERT ON booking.reviews
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION booking.count_reviews();
CREATE TRIGGER reviews_count_update AFTER UPDATE ON booking.reviews
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION booking.count_reviews();
CREATE TRIGGER reviews_count_delete AFTER DELETE ON booking.reviews
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION booking.count_reviews();
CREATE TRIGGER reviews_count_truncate AFTER TRUNCATE ON booking.reviews
    FOR EACH STATEMENT EXECUTE FUNCTION booking.count_reviews();
CREATE TRIGGER rooms_count AFTER INSERT ON booking.rooms
    FOR EACH ROW EXECUTE FUNCTION booking.count_rooms();

-- Bookings per day are read for a window of days: a filter on the view's
-- day column is pushed below its GROUP BY onto this index.
CREATE INDEX bookings_start_day_idx ON booking.bookings (((starts_at AT TIME ZONE 'UTC')::date));

-- The views.  They run with their owner's rights, so a reader needs only
-- SELECT on the view (Grafana's role has nothing else); each is granted to
-- the roles API.md lists for the matching route.
CREATE VIEW booking.analytics_bookings_summary AS
    SELECT coalesce(sum(confirmed + cancelled + completed), 0)::bigint AS total,
           coalesce(sum(confirmed), 0)::bigint AS confirmed,
           coalesce(sum(cancelled), 0)::bigint AS cancelled,
           coalesce(sum(completed), 0)::bigint AS completed
      FROM booking.room_booking_counts;
COMMENT ON VIEW booking.analytics_bookings_summary IS 'bookings by status, from the counters: O(rooms)';

CREATE VIEW booking.analytics_bookings_by_room AS
    SELECT r.id AS room_id, r.name AS room_name,
           (c.confirmed + c.cancelled + c.completed) AS total, c.confirmed, c.cancelled, c.completed
      FROM booking.rooms r JOIN booking.room_booking_counts c ON c.room_id = r.id;
COMMENT ON VIEW booking.analytics_bookings_by_room IS 'bookings per room and status, from the counters: O(rooms)';

-- Days in UTC, by the day a booking starts.
CREATE VIEW booking.analytics_bookings_per_day AS
    SELECT (b.starts_at AT TIME ZONE 'UTC')::date AS day,
           count(*) AS total,
           count(*) FILTER (WHERE b.status = 'confirmed') AS confirmed,
           count(*) FILTER (WHERE b.status = 'cancelled') AS cancelled,
           count(*) FILTER (WHERE b.status = 'completed') AS completed
      FROM booking.bookings b
     GROUP BY 1;
COMMENT ON VIEW booking.analytics_bookings_per_day IS 'bookings by the UTC day they start; filter on day to read a window';

CREATE VIEW booking.analytics_rating_by_room AS
    SELECT r.id AS room_id, r.name AS room_name,
           CASE WHEN c.review_count > 0 THEN round(c.rating_sum::numeric / c.review_count, 2) END AS average_rating,
           c.review_count
      FROM booking.rooms r JOIN booking.room_rating_counts c ON c.room_id = r.id;
COMMENT ON VIEW booking.analytics_rating_by_room IS 'average rating and number of reviews (hidden ones left out) per room, from the counters: O(rooms)';

-- booking_grafana: the dashboards' read-only role.  It is a member of no
-- other role and may read the analytics views only.  It cannot log in until
-- the deployment gives it a password (docker/ does).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'booking_grafana') THEN
        CREATE ROLE booking_grafana NOLOGIN;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA booking TO booking_grafana;
GRANT SELECT ON booking.analytics_bookings_summary, booking.analytics_bookings_by_room,
    booking.analytics_bookings_per_day
  TO booking_admin, booking_facility_manager, booking_auditor, booking_service_account, booking_grafana;
GRANT SELECT ON booking.analytics_rating_by_room
  TO booking_admin, booking_moderator, booking_auditor, booking_grafana;

-- Every counter against a full recount: one row per difference, none when
-- the counters are exact.  Tests call it after every scenario and after
-- concurrent load.
CREATE FUNCTION booking.analytics_check()
RETURNS TABLE (summary text, room_id bigint, counter text, kept bigint, recounted bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH kept AS (
        SELECT c.room_id, k.counter, k.n
          FROM booking.room_booking_counts c
         CROSS JOIN LATERAL (VALUES ('confirmed', c.confirmed), ('cancelled', c.cancelled),
                                    ('completed', c.completed)) k(counter, n)
    ), recount AS (
        SELECT r.id AS room_id, s.counter, count(b.id) AS n
          FROM booking.rooms r
         CROSS JOIN (VALUES ('confirmed'), ('cancelled'), ('completed')) s(counter)
          LEFT JOIN booking.bookings b ON b.room_id = r.id AND b.status = s.counter
         GROUP BY 1, 2
    ), kept_ratings AS (
        SELECT c.room_id, k.counter, k.n
          FROM booking.room_rating_counts c
         CROSS JOIN LATERAL (VALUES ('review_count', c.review_count), ('rating_sum', c.rating_sum)) k(counter, n)
    ), recount_ratings AS (
        SELECT r.id AS room_id, k.counter, k.n
          FROM booking.rooms r
          LEFT JOIN LATERAL (SELECT count(*) AS review_count, coalesce(sum(v.rating), 0) AS rating_sum
                               FROM booking.reviews v WHERE v.room_id = r.id AND v.status <> 'hidden') a ON true
         CROSS JOIN LATERAL (VALUES ('review_count', a.review_count), ('rating_sum', a.rating_sum)) k(counter, n)
    )
    SELECT 'room_booking_counts', coalesce(k.room_id, r.room_id), coalesce(k.counter, r.counter), k.n, r.n
      FROM kept k FULL JOIN recount r ON r.room_id = k.room_id AND r.counter = k.counter
     WHERE k.n IS DISTINCT FROM r.n
    UNION ALL
    SELECT 'room_rating_counts', coalesce(k.room_id, r.room_id), coalesce(k.counter, r.counter), k.n, r.n
      FROM kept_ratings k FULL JOIN recount_ratings r ON r.room_id = k.room_id AND r.counter = k.counter
     WHERE k.n IS DISTINCT FROM r.n
     ORDER BY 1, 2, 3
$$;
COMMENT ON FUNCTION booking.analytics_check IS 'differences between the summary tables and a full recount (kept NULL: counter row missing); empty when exact';

-- Rebuild the counters from the tables, for a repair after a bulk load with
-- triggers disabled.  Blocks writers of the counted tables while it runs.
CREATE FUNCTION booking.analytics_rebuild() RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    LOCK TABLE booking.bookings, booking.reviews IN SHARE MODE;
    DELETE FROM booking.room_booking_counts;
    INSERT INTO booking.room_booking_counts (room_id, confirmed, cancelled, completed)
    SELECT r.id, count(b.id) FILTER (WHERE b.status = 'confirmed'), count(b.id) FILTER (WHERE b.status = 'cancelled'),
           count(b.id) FILTER (WHERE b.status = 'completed')
      FROM booking.rooms r LEFT JOIN booking.bookings b ON b.room_id = r.id GROUP BY r.id;
    DELETE FROM booking.room_rating_counts;
    INSERT INTO booking.room_rating_counts (room_id, review_count, rating_sum)
    SELECT r.id, count(v.id), coalesce(sum(v.rating), 0)
      FROM booking.rooms r LEFT JOIN booking.reviews v ON v.room_id = r.id AND v.status <> 'hidden' GROUP BY r.id;
END
$$;
COMMENT ON FUNCTION booking.analytics_rebuild IS 'recompute the summary tables from bookings and reviews (superuser; blocks writers meanwhile)';

-- The api.  Each route checks its roles (API.md); a plain user gets 403.
CREATE FUNCTION api.analytics_bookings_summary() RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager', 'auditor', 'service_account');
    RETURN (SELECT to_jsonb(s) FROM booking.analytics_bookings_summary s);
END
$$;
COMMENT ON FUNCTION api.analytics_bookings_summary IS 'GET /admin/analytics/bookings/summary (admin, facility_manager, auditor, service_account): {total, confirmed, cancelled, completed}';

CREATE FUNCTION api.analytics_bookings_by_room(lim integer DEFAULT 500, off integer DEFAULT 0) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager', 'auditor', 'service_account');
    PERFORM booking.check_page(lim, off);
    RETURN coalesce((SELECT jsonb_agg(to_jsonb(x) ORDER BY x.room_id)
                       FROM (SELECT * FROM booking.analytics_bookings_by_room
                              ORDER BY room_id LIMIT lim OFFSET off) x), '[]');
END
$$;
COMMENT ON FUNCTION api.analytics_bookings_by_room IS 'GET /admin/analytics/bookings/by-room (admin, facility_manager, auditor, service_account): [{room_id, room_name, total, confirmed, cancelled, completed}]';

CREATE FUNCTION api.analytics_bookings_per_day("from" text, "to" text) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    f date;
    t date;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager', 'auditor', 'service_account');
    f := booking.parse_date("from", 'from');
    t := booking.parse_date("to", 'to');
    IF t < f THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', '"to" is before "from"', jsonb_build_object('field', 'to'));
    END IF;
    IF t - f > 366 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('window of %s days is longer than 366 days', t - f + 1),
            jsonb_build_object('field', 'to', 'max_days', 366));
    END IF;
    -- Every day of [from, to], zeros included, so charts have no gaps.
    RETURN (SELECT jsonb_agg(jsonb_build_object('day', d.day, 'total', coalesce(v.total, 0),
                                                'confirmed', coalesce(v.confirmed, 0),
                                                'cancelled', coalesce(v.cancelled, 0),
                                                'completed', coalesce(v.completed, 0)) ORDER BY d.day)
              FROM (SELECT g::date AS day FROM generate_series(f, t, interval '1 day') g) d
              LEFT JOIN (SELECT * FROM booking.analytics_bookings_per_day p WHERE p.day BETWEEN f AND t) v
                     ON v.day = d.day);
END
$$;
COMMENT ON FUNCTION api.analytics_bookings_per_day IS 'GET /admin/analytics/bookings/per-day?from&to (admin, facility_manager, auditor, service_account): bookings by UTC start day, both dates included, at most 366 days';

CREATE FUNCTION api.analytics_average_rating_by_room() RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_role('admin', 'moderator', 'auditor');
    RETURN coalesce((SELECT jsonb_agg(to_jsonb(x) ORDER BY x.room_id)
                       FROM booking.analytics_rating_by_room x), '[]');
END
$$;
COMMENT ON FUNCTION api.analytics_average_rating_by_room IS 'GET /admin/analytics/reviews/average-rating-by-room (admin, moderator, auditor): [{room_id, room_name, average_rating, review_count}], hidden reviews left out';

CREATE FUNCTION api.analytics_rate_limits() RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_role('admin', 'auditor');
    RETURN coalesce((SELECT jsonb_agg(jsonb_build_object(
                         'endpoint', d.endpoint, 'max_requests', d.max_requests,
                         'window_seconds', extract(epoch FROM d.window_length)::float8, 'key_kind', d.key_kind,
                         'denials', d.denials, 'admitted', d.admitted, 'keys_tracked', d.keys_tracked,
                         'forced_evictions', d.forced_evictions, 'since', d.since) ORDER BY d.endpoint)
                       FROM booking.rate_limit_denials d), '[]');
END
$$;
COMMENT ON FUNCTION api.analytics_rate_limits IS 'GET /admin/analytics/rate-limits (admin, auditor): per endpoint its rule, denials and admissions since the server started';
-- Hotel occupancy per night and room type, for dashboards and
-- GET /admin/analytics/occupancy.
--
-- booking.inventory (one row per hotel, room type and night, with total and
-- available kept exact by the C take/give-back in extension/inventory.c)
-- already is the summary: a night's held rooms are total - available, read
-- in O(nights x room types).

CREATE VIEW booking.analytics_occupancy AS
    SELECT i.hotel_id, h.name AS hotel_name, i.room_type, i.night,
           i.total, i.total - i.available AS held,
           CASE WHEN i.total > 0 THEN round(100.0 * (i.total - i.available) / i.total, 1) END AS occupancy_percent
      FROM booking.inventory i JOIN booking.hotels h ON h.id = i.hotel_id;
COMMENT ON VIEW booking.analytics_occupancy IS 'held rooms (total - available) per hotel, room type and night';
GRANT SELECT ON booking.analytics_occupancy
  TO booking_admin, booking_facility_manager, booking_auditor, booking_grafana;

CREATE FUNCTION api.analytics_occupancy(hotel_id bigint, "from" text, "to" text) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    f date;
    t date;
BEGIN
    PERFORM booking.require_role('admin', 'facility_manager', 'auditor');
    f := booking.parse_date("from", 'from');
    t := booking.parse_date("to", 'to');
    IF t < f OR t - f > 366 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'window must run forward and last at most 366 days',
            jsonb_build_object('field', 'to', 'max_days', 366));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM booking.hotels h WHERE h.id = analytics_occupancy.hotel_id) THEN
        PERFORM booking.raise_error(404, 'NOT_FOUND', format('hotel %s not found', hotel_id),
            jsonb_build_object('hotel_id', hotel_id));
    END IF;
    RETURN coalesce((SELECT jsonb_agg(jsonb_build_object('night', o.night, 'room_type', o.room_type,
                                                         'total', o.total, 'held', o.held,
                                                         'occupancy_percent', o.occupancy_percent)
                                      ORDER BY o.night, o.room_type)
                       FROM booking.analytics_occupancy o
                      WHERE o.hotel_id = analytics_occupancy.hotel_id AND o.night BETWEEN f AND t), '[]');
END
$$;
COMMENT ON FUNCTION api.analytics_occupancy IS 'GET /admin/analytics/occupancy?hotel_id&from&to (admin, facility_manager, auditor): held rooms per night and room type, both dates included';
-- Events: every state change of a booking, a reservation or a review is appended here, in
-- the writer's transaction, and announced with NOTIFY on the channel
-- pg_booking_events (delivered at commit, dropped on rollback, like the row).
-- The adapter LISTENs and streams them (GET /events); a client that missed
-- some reads them back with api.list_events(after_id).
--
-- Payloads carry ids, statuses and times only: no titles, comments, guest
-- names or anything else a log line must not show.

CREATE TABLE booking.events (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind      text NOT NULL,
    entity    text NOT NULL,
    entity_id text NOT NULL,
    user_id   bigint,
    payload   jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX events_entity_idx ON booking.events (entity, entity_id);
COMMENT ON TABLE booking.events IS 'append-only log of state changes (kind e.g. booking.created, review.flagged); user_id is who made the change, NULL for psql or a job';
COMMENT ON COLUMN booking.events.user_id IS 'the caller (sub claim) that made the change; NULL for a superuser session or a background job';

ALTER TABLE booking.events ENABLE ROW LEVEL SECURITY;
CREATE POLICY events_read ON booking.events FOR SELECT TO booking_admin, booking_service_account USING (true);
GRANT SELECT ON booking.events TO booking_admin, booking_service_account;

-- Append events (kind, entity, entity_id, payload) with the caller as
-- user_id, and announce each.  SECURITY DEFINER: the writer of a booking may
-- not write the log directly.  The statement triggers pass all of a
-- statement's events at once (one INSERT, one pass of NOTIFYs), so a batch
-- such as the nightly checkout does not pay a function call per row.
CREATE FUNCTION booking.emit_events(batch jsonb) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    WITH ins AS (
        INSERT INTO booking.events (kind, entity, entity_id, user_id, payload)
        SELECT e ->> 'kind', e ->> 'entity', e ->> 'entity_id', booking.current_user_id(), coalesce(e -> 'payload', '{}')
          FROM jsonb_array_elements(batch) WITH ORDINALITY AS x(e, i)
         ORDER BY i
        RETURNING id, kind, entity, entity_id)
    SELECT count(pg_notify('pg_booking_events',
                           jsonb_build_object('id', id, 'kind', kind, 'entity', entity, 'entity_id', entity_id)::text))
      INTO n
      FROM (SELECT * FROM ins ORDER BY id) o;
    RETURN n;
END
$$;

-- What an event says of a booking or a reservation: ids, statuses, times;
-- never a title or a guest name.
CREATE FUNCTION booking.booking_event_payload(b booking.bookings) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object('room_id', b.room_id, 'owner_id', b.user_id, 'status', b.status,
                              'starts_at', b.starts_at, 'ends_at', b.ends_at, 'series_id', b.series_id)
$$;
CREATE FUNCTION booking.reservation_event_payload(r booking.reservations) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object('hotel_id', r.hotel_id, 'room_type', r.room_type, 'owner_id', r.user_id,
                              'status', r.status, 'arrival_date', r.arrival_date, 'stay_length', r.stay_length)
$$;

-- Bookings: created, rescheduled (room or times), and every status change.
-- Statement triggers over the transition tables; a retitle is no event.
CREATE FUNCTION booking.booking_events() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM booking.emit_events(coalesce(jsonb_agg(jsonb_build_object(
                    'kind', 'booking.created', 'entity', 'booking', 'entity_id', n.id::text,
                    'payload', booking.booking_event_payload(n))), '[]'))
           FROM new_rows n;
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM booking.emit_events(coalesce(jsonb_agg(jsonb_build_object(
                    'kind', 'booking.deleted', 'entity', 'booking', 'entity_id', o.id::text,
                    'payload', booking.booking_event_payload(o))), '[]'))
           FROM old_rows o;
    ELSE
        PERFORM booking.emit_events(coalesce(jsonb_agg(jsonb_build_object(
                    'kind', c.kind, 'entity', 'booking', 'entity_id', c.id::text,
                    'payload', c.payload
                               || CASE WHEN c.kind = 'booking.rescheduled'
                                       THEN jsonb_build_object('previous', jsonb_build_object('room_id', c.old_room_id,
                                            'starts_at', c.old_starts_at, 'ends_at', c.old_ends_at))
                                       ELSE '{}' END)), '[]'))
           FROM (SELECT n.id, booking.booking_event_payload(n) AS payload, o.room_id AS old_room_id, o.starts_at AS old_starts_at, o.ends_at AS old_ends_at,
                        CASE WHEN n.status <> o.status THEN 'booking.' || n.status
                             WHEN (n.room_id, n.starts_at, n.ends_at) IS DISTINCT FROM (o.room_id, o.starts_at, o.ends_at)
                             THEN 'booking.rescheduled' END AS kind
                   FROM new_rows n JOIN old_rows o ON o.id = n.id) c
          WHERE c.kind IS NOT NULL;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER bookings_event_insert AFTER INSERT ON booking.bookings
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION booking.booking_events();
CREATE TRIGGER bookings_event_update AFTER UPDATE ON booking.bookings
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION booking.booking_events();
CREATE TRIGGER bookings_event_delete AFTER DELETE ON booking.bookings
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION booking.booking_events();

CREATE FUNCTION booking.review_event() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kind text;
    r booking.reviews := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
BEGIN
    IF TG_OP = 'INSERT' THEN
        kind := 'review.created';
    ELSIF TG_OP = 'DELETE' THEN
        kind := 'review.deleted';
    ELSIF NEW.status <> OLD.status THEN
        kind := CASE NEW.status WHEN 'flagged' THEN 'review.flagged' WHEN 'hidden' THEN 'review.hidden'
                                ELSE 'review.restored' END;
    ELSIF NEW.rating <> OLD.rating OR NEW.comment <> OLD.comment THEN
        kind := 'review.updated';
    ELSE
        RETURN NULL;
    END IF;
    PERFORM booking.emit_events(jsonb_build_array(jsonb_build_object(
        'kind', kind, 'entity', 'review', 'entity_id', r.id::text,
        'payload', jsonb_build_object('room_id', r.room_id, 'author_id', r.user_id, 'status', r.status,
                                      'rating', r.rating))));
    RETURN NULL;
END
$$;
CREATE TRIGGER reviews_event AFTER INSERT OR UPDATE OR DELETE ON booking.reviews
    FOR EACH ROW EXECUTE FUNCTION booking.review_event();

-- Reservations: created, changed (dates, length, room type), and every
-- status (checked_in, completed, cancelled, no_show).  Never the guest name.
CREATE FUNCTION booking.reservation_events() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM booking.emit_events(coalesce(jsonb_agg(jsonb_build_object(
                    'kind', 'reservation.created', 'entity', 'reservation', 'entity_id', n.id::text,
                    'payload', booking.reservation_event_payload(n))), '[]'))
           FROM new_rows n;
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM booking.emit_events(coalesce(jsonb_agg(jsonb_build_object(
                    'kind', 'reservation.deleted', 'entity', 'reservation', 'entity_id', o.id::text,
                    'payload', booking.reservation_event_payload(o))), '[]'))
           FROM old_rows o;
    ELSE
        PERFORM booking.emit_events(coalesce(jsonb_agg(jsonb_build_object(
                    'kind', c.kind, 'entity', 'reservation', 'entity_id', c.id::text,
                    'payload', c.payload
                               || CASE WHEN c.kind = 'reservation.changed'
                                       THEN jsonb_build_object('previous', jsonb_build_object('room_type', c.old_room_type,
                                            'arrival_date', c.old_arrival_date, 'stay_length', c.old_stay_length))
                                       ELSE '{}' END)), '[]'))
           FROM (SELECT n.id, booking.reservation_event_payload(n) AS payload, o.room_type AS old_room_type, o.arrival_date AS old_arrival_date,
                        o.stay_length AS old_stay_length,
                        CASE WHEN n.status <> o.status THEN 'reservation.' || n.status
                             WHEN (n.arrival_date, n.stay_length, n.room_type) IS DISTINCT FROM
                                  (o.arrival_date, o.stay_length, o.room_type)
                             THEN 'reservation.changed' END AS kind
                   FROM new_rows n JOIN old_rows o ON o.id = n.id) c
          WHERE c.kind IS NOT NULL;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER reservations_event_insert AFTER INSERT ON booking.reservations
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION booking.reservation_events();
CREATE TRIGGER reservations_event_update AFTER UPDATE ON booking.reservations
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION booking.reservation_events();
CREATE TRIGGER reservations_event_delete AFTER DELETE ON booking.reservations
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION booking.reservation_events();

CREATE FUNCTION api.list_events(after_id bigint DEFAULT 0, kind text DEFAULT NULL, lim integer DEFAULT 50)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_role('admin', 'service_account');
    PERFORM booking.check_page(lim, 0);
    RETURN coalesce((
        SELECT jsonb_agg(to_jsonb(e) ORDER BY e.id)
          FROM (SELECT * FROM booking.events x
                 WHERE x.id > coalesce(after_id, 0)
                   AND (list_events.kind IS NULL OR x.kind LIKE list_events.kind || '%')
                 ORDER BY x.id LIMIT lim) e), '[]');
END
$$;
COMMENT ON FUNCTION api.list_events IS 'GET /events (admin, service_account): events after after_id, oldest first, optionally by kind prefix ("review."); the live stream is NOTIFY pg_booking_events';
-- Grants, once every function exists.  PUBLIC may execute nothing of ours;
-- the api functions check the caller's role themselves and the tables carry
-- row-level security, so every signed-in role may call every api function.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA api, booking FROM PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA api TO booking_api;
GRANT EXECUTE ON FUNCTION api.register(text, text, text), api.login(text, text),
    api.refresh(text) TO booking_anon;

-- The dashboards' read-only role (80_analytics.sql) also reads the
-- rate-limit denials (which call the shared-memory counters) and the
-- checkout history.
GRANT SELECT ON booking.rate_limit_denials, booking.checkout_runs TO booking_grafana;
GRANT EXECUTE ON FUNCTION booking.rate_limit_stats() TO booking_grafana;
