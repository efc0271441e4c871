-- pgbench: the statements the adapter sends for GET /bookings/{id}, as it
-- sends them (booking_authenticator, prepared, one pipeline, read-only):
-- db.c's setup statement with a token's claims and a request id of the
-- adapter's length, which also names the transaction (application_name).
\startpipeline
SELECT set_config('role', 'booking_user', true), set_config('request.jwt.claims', '{"sub":"1","role":"booking_user","exp":4102444800}', true),
       set_config('request.id', '0b6c4f5e-1d2a-4e8b-9c3d-7a6b5c4d3e2f', true), set_config('request.client_ip', '127.0.0.1', true),
       set_config('statement_timeout', '5000', true), CASE WHEN 'on' = 'on' THEN set_config('transaction_read_only', 'on', true) END,
       set_config('application_name', '0b6c4f5e-1d2a-4e8b-9c3d-7a6b5c4d3e2f', true);
SELECT api.get_booking(id => :booking::bigint)::text, nullif(current_setting('response.headers', true), '');
\endpipeline
