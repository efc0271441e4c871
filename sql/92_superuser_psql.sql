-- psql as documented (issue 10): a superuser session without claims passes
-- every role check, and the calls that act as a user say so.
SET client_min_messages = warning;
\set VERBOSITY terse
SELECT set_config('request.jwt.claims', '', false);
SELECT jsonb_typeof(api.list_rooms()) AS list_rooms, jsonb_typeof(api.list_users()) AS list_users,
       jsonb_typeof(api.list_bookings()) AS list_bookings, jsonb_typeof(api.list_reservations()) AS list_reservations,
       jsonb_typeof(api.list_hotels()) AS list_hotels;
SELECT api.get_room((SELECT min(id) FROM booking.rooms)) ? 'id' AS get_room;
SELECT api.me();
SELECT api.create_booking((SELECT min(id) FROM booking.rooms), '2099-01-01T10:00:00Z', '2099-01-01T11:00:00Z', 'nobody');
SELECT api.set_my_availability('[]');
-- With claims naming a user, the same session acts as that user.
SELECT set_config('request.jwt.claims', json_build_object('sub', (SELECT min(id) FROM booking.users), 'role', 'booking_user')::text, false);
SELECT api.me() ? 'email' AS me_with_claims;
SELECT set_config('request.jwt.claims', '', false);
