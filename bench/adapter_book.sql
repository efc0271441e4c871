-- pgbench: the statements the adapter sends for POST /bookings, as it sends
-- them (booking_authenticator, prepared, one pipeline = one implicit
-- transaction), each client in its own room, the next hour each time.
\set n :n + 1
\set room :client_id + 51
\startpipeline
SELECT set_config('role', 'booking_user', true), set_config('request.jwt.claims', '{"sub":"1","role":"booking_user"}', true),
       set_config('request.id', 'pgbench', true), set_config('request.client_ip', '127.0.0.1', true),
       set_config('statement_timeout', '5000', true), set_config('transaction_read_only', 'off', true);
SELECT api.create_booking(room_id => :room::bigint, starts_at => (timestamptz '2200-01-01 00:00+00' + make_interval(hours => :n::int))::text, ends_at => (timestamptz '2200-01-01 01:00+00' + make_interval(hours => :n::int))::text, title => 'bench')::text,
       nullif(current_setting('response.headers', true), '');
\endpipeline
