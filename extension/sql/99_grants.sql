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
