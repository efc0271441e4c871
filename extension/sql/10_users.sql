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
