-- The HTTP routes are rows of booking.http_routes (issue 10): checked when
-- written, and each rule they imply exists once.
SET client_min_messages = warning;
\set VERBOSITY terse

-- Every route names an api function and binds only its arguments.
SELECT r.method, r.path FROM booking.http_routes r
 WHERE NOT EXISTS (SELECT 1 FROM pg_proc p WHERE p.pronamespace = 'api'::regnamespace AND p.proname = r.function_name);
BEGIN;
INSERT INTO booking.http_routes (method, path, function_name, success_status, operation_id)
VALUES ('GET', '/nowhere', 'no_such_function', 200, 'nowhere');
COMMIT;
BEGIN;
INSERT INTO booking.http_routes (method, path, function_name, success_status, operation_id)
VALUES ('GET', '/rooms/{room}/x', 'get_room', 200, 'x');
COMMIT;
-- Every DELETE answers 200 with its function's result; GET never 204.
INSERT INTO booking.http_routes (method, path, function_name, success_status, operation_id)
VALUES ('DELETE', '/rooms/{id}/gone', 'delete_room', 204, 'gone');
INSERT INTO booking.http_routes (method, path, function_name, success_status, operation_id)
VALUES ('GET', '/rooms/{id}/empty', 'get_room', 204, 'empty');
-- operationIds are unique (a second route of a function needs its own).
INSERT INTO booking.http_routes (method, path, function_name, success_status)
VALUES ('GET', '/rooms/{id}/again', 'get_room', 200);
SELECT method, success_status, count(*) FROM booking.http_routes WHERE method = 'DELETE' GROUP BY 1, 2;

-- What the adapter reads: HTTP names of list arguments, writes, routes.
SELECT name, http_names, writes, jsonb_array_length(routes) AS routes
  FROM booking.http_functions WHERE name IN ('list_users', 'list_inventory', 'cancel_booking', 'me') ORDER BY 1;
SELECT role FROM booking.http_token_roles ORDER BY 1;

-- Each rule once: a range of days is checked by booking.parse_nights, a
-- window of time by booking.parse_window, and by no other function.
SELECT n.nspname, p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname IN ('api', 'booking')
   AND p.prosrc ~ '''"to" [^'']*(before|after) "from"'
 ORDER BY 1, 2;
-- The analytics day ranges go through it (same message as inventory).
SELECT api.analytics_bookings_per_day('2097-03-03', '2097-03-01');
SELECT api.analytics_occupancy(1, '2097-03-03', '2097-03-01');
