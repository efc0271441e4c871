-- Grants, once every function exists.  PUBLIC may execute nothing of ours;
-- the api functions check the caller's role themselves and the tables carry
-- row-level security, so every signed-in role may call every api function.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA api, booking FROM PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA api TO booking_api;
GRANT EXECUTE ON FUNCTION api.register(text, text, text), api.login(text, text),
    api.refresh(text) TO booking_anon;
