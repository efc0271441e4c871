-- pgbench: the same SQL the adapter runs, in one round trip as the adapter
-- does (a pipeline: one implicit transaction) for GET /rooms (read-only).
\startpipeline
SELECT set_config('role', 'booking_user', true), set_config('request.jwt.claims', '{"sub":"1","role":"booking_user"}', true),
       set_config('transaction_read_only', 'on', true);
SELECT api.list_rooms()::text;
\endpipeline
