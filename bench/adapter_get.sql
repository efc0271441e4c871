-- pgbench: the statements the adapter sends for GET /bookings/{id}, as it
-- sends them (booking_authenticator, prepared, one pipeline, read-only).
\startpipeline
SELECT set_config('role', 'booking_user', true), set_config('request.jwt.claims', '{"sub":"1","role":"booking_user"}', true),
       set_config('request.id', 'pgbench', true), set_config('request.client_ip', '127.0.0.1', true),
       set_config('statement_timeout', '5000', true), set_config('transaction_read_only', 'on', true);
SELECT api.get_booking(id => :booking::bigint)::text, nullif(current_setting('response.headers', true), '');
\endpipeline
