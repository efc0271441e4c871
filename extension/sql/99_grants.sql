-- Grants, once every function exists.  PUBLIC may execute nothing of ours;
-- the api functions check the caller's role themselves and the tables carry
-- row-level security, so every signed-in role may call every api function.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA api, booking FROM PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA api TO booking_api;
GRANT EXECUTE ON FUNCTION api.register(text, text, text), api.login(text, text),
    api.refresh(text) TO booking_anon;

-- The dashboards' read-only role (made by the analytics part, when present)
-- reads the rate-limit denials, which call the shared-memory counters.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'booking_grafana') THEN
        GRANT SELECT ON booking.rate_limit_denials TO booking_grafana;
        GRANT EXECUTE ON FUNCTION booking.rate_limit_stats() TO booking_grafana;
    END IF;
END
$$;
