#!/usr/bin/env bash
# Caller identity (issue 11): the cost of "who is calling" per call, as 1.0
# did it (PL/pgSQL and SQL functions parsing request.jwt.claims as jsonb on
# every call) against 1.1 (extension/caller.c: parsed once per transaction,
# keyed by the setting's text, with the session check included).  One
# statement makes N calls of current_user_id() and current_app_role(), as
# the api functions, policies and the rate limiter of one request do; the
# figure is the ratio of the two, measured in this run.  A third line adds
# to the 1.0 parse the session lookup 1.1 performs, done in SQL on every
# call (what a check without the cache would cost).
# Run by scripts/bench.sh (PGHOST, PGPORT, PGUSER and PATH set).
set -euo pipefail
calls=${BENCH_CALLER_CALLS:-20000}
rounds=${BENCH_ROUNDS:-3}
db=bench_caller
psql() { command psql -qXAt -v ON_ERROR_STOP=1 -d $db "$@"; }
dropdb --if-exists $db 2>/dev/null; createdb $db

psql <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION pg_booking CASCADE;
INSERT INTO booking.users (email, full_name, password_hash) VALUES ('bench@example.com', 'Bench', 'x');
INSERT INTO booking.sessions (user_id) SELECT id FROM booking.users;
-- 1.0's functions, verbatim but for their names.
CREATE FUNCTION v10_claims() RETURNS jsonb LANGUAGE sql STABLE
AS $$ SELECT nullif(current_setting('request.jwt.claims', true), '')::jsonb $$;
CREATE FUNCTION v10_current_user_id() RETURNS bigint LANGUAGE sql STABLE
AS $$ SELECT (v10_claims() ->> 'sub')::bigint $$;
CREATE FUNCTION v10_current_app_role() RETURNS text LANGUAGE plpgsql STABLE
AS $$
DECLARE
    c jsonb := v10_claims();
    r text;
BEGIN
    IF c IS NULL OR c ->> 'role' IS NULL THEN
        RETURN CASE WHEN (SELECT rolsuper FROM pg_roles WHERE rolname = session_user) THEN 'superuser' ELSE 'anon' END;
    END IF;
    r := c ->> 'role';
    IF r = 'booking_anon' THEN
        RETURN 'anon';
    END IF;
    IF r NOT LIKE 'booking\_%' OR NOT (substr(r, 9) IN ('user', 'admin', 'facility_manager', 'auditor', 'moderator', 'service_account')) THEN
        RAISE EXCEPTION 'unknown role';
    END IF;
    RETURN substr(r, 9);
END
$$;
-- 1.0's parse plus the session lookup of 1.1, in SQL, on every call.
CREATE FUNCTION v10_checked_role() RETURNS text LANGUAGE plpgsql STABLE
AS $$
DECLARE
    c jsonb := v10_claims();
    r text := v10_current_app_role();
BEGIN
    IF NOT EXISTS (SELECT 1 FROM booking.users u JOIN booking.sessions s ON s.user_id = u.id
                    WHERE u.id = (c ->> 'sub')::bigint AND u.active AND 'booking_' || u.role = c ->> 'role'
                      AND s.id = (c ->> 'sid')::bigint AND s.ended_at IS NULL) THEN
        RAISE EXCEPTION 'session ended';
    END IF;
    RETURN r;
END
$$;
CREATE FUNCTION bench_ms(q text) RETURNS float8 LANGUAGE plpgsql
AS $$
DECLARE
    t timestamptz := clock_timestamp();
BEGIN
    EXECUTE q;
    RETURN extract(epoch FROM clock_timestamp() - t) * 1000;
END
$$;
SQL

claims=$(psql -c "SELECT json_build_object('sub', u.id::text, 'role', 'booking_user', 'sid', s.id, 'iat', floor(extract(epoch FROM now())), 'exp', floor(extract(epoch FROM now())) + 900)
                    FROM booking.users u JOIN booking.sessions s ON s.user_id = u.id")
q10="SELECT count(v10_current_user_id()) + count(v10_current_app_role()) FROM generate_series(1, $calls)"
q10c="SELECT count(v10_current_user_id()) + count(v10_checked_role()) FROM generate_series(1, $calls)"
q11="SELECT count(booking.current_user_id()) + count(booking.current_app_role()) FROM generate_series(1, $calls)"
best10=; best10c=; best11=
for r in $(seq "$rounds"); do
    # Interleaved rounds, each in a fresh transaction (1.1 parses once per transaction).
    read -r a b c < <(psql -c "SELECT set_config('request.jwt.claims', '$claims', false)" \
        -c "SELECT round(bench_ms('$q10')::numeric, 2), round(bench_ms('$q10c')::numeric, 2), round(bench_ms('$q11')::numeric, 2)" | tail -1 | tr '|' ' ')
    best10=$(printf '%s\n' $best10 $a | sort -g | head -1)
    best10c=$(printf '%s\n' $best10c $b | sort -g | head -1)
    best11=$(printf '%s\n' $best11 $c | sort -g | head -1)
done
awk -v a="$best10" -v b="$best10c" -v c="$best11" -v n="$calls" 'BEGIN {
    printf "caller identity, %d calls of current_user_id() + current_app_role() in one statement (best of rounds):\n", n;
    printf "  1.0 PL/pgSQL/jsonb parse per call:            %8.2f ms  (%.2f us per pair)\n", a, a * 1000 / n;
    printf "  1.0 parse + SQL session lookup per call:      %8.2f ms  (%.2f us per pair)\n", b, b * 1000 / n;
    printf "  1.1 C, parsed once per transaction + check:   %8.2f ms  (%.2f us per pair)\n", c, c * 1000 / n;
    printf "  ratio 1.1 / 1.0 parse: %.3f   1.1 / 1.0 parse+lookup: %.3f\n", c / a, c / b;
}'
dropdb $db
