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
