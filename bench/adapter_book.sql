-- pgbench: the same SQL the adapter runs, in one round trip as the adapter
-- does (a pipeline: one implicit transaction) for POST /bookings (as
-- booking_authenticator: role and claims per transaction), each client in
-- its own room, the next hour each time.
\set n :n + 1
\set room :client_id + 51
\startpipeline
SELECT set_config('role', 'booking_user', true), set_config('request.jwt.claims', '{"sub":"1","role":"booking_user"}', true);
SELECT api.create_booking(room_id => :room::bigint, starts_at => (timestamptz '2200-01-01 00:00+00' + make_interval(hours => :n::int))::text, ends_at => (timestamptz '2200-01-01 01:00+00' + make_interval(hours => :n::int))::text, title => 'bench');
\endpipeline
