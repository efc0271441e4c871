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
