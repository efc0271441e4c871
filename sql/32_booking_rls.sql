-- Row-level security on bookings: user A vs user B vs each staff role.
\set SHOW_CONTEXT never
SET timezone TO 'UTC';

SELECT id AS bobs FROM booking.bookings WHERE title = 'Board meeting' \gset
-- Alice cannot see, change or cancel Bob's booking: it is simply not there.
SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.get_booking(:bobs);
SELECT api.update_booking(:bobs, title => 'Hijacked');
SELECT api.cancel_booking(:bobs);
SELECT count(*) AS bobs_rows_visible FROM booking.bookings WHERE user_id = t_id('bob@example.com');
-- Direct SQL cannot go around it either.
UPDATE booking.bookings SET title = 'Hijacked' WHERE id = :bobs;
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
VALUES (t_room('Cupboard'), t_id('bob@example.com'), 'In Bob''s name', '2099-04-01T10:00:00Z', '2099-04-01T11:00:00Z');
DELETE FROM booking.bookings WHERE id = :bobs;
RESET ROLE;
SELECT title FROM booking.bookings WHERE id = :bobs;

-- Each role's view of all bookings, and what it may do with Bob's.
SELECT count(*) AS total FROM booking.bookings \gset
SELECT t_as('fm@example.com', 'booking_facility_manager');
SET ROLE booking_facility_manager;
SELECT jsonb_array_length(api.list_bookings(lim => 500)) = :total AS fm_sees_all;
SELECT api.update_booking(:bobs, title => 'Board meeting (moved by FM)') ->> 'title';
RESET ROLE;
SELECT t_as('auditor@example.com', 'booking_auditor');
SET ROLE booking_auditor;
SELECT jsonb_array_length(api.list_bookings(lim => 500)) = :total AS auditor_sees_all;
SELECT api.get_booking(:bobs) ->> 'title';
SELECT api.cancel_booking(:bobs);
RESET ROLE;
SELECT t_as('mod@example.com', 'booking_moderator');
SET ROLE booking_moderator;
SELECT jsonb_array_length(api.list_bookings(lim => 500)) AS moderator_sees_own_only;
SELECT api.get_booking(:bobs);
RESET ROLE;
SELECT t_as('svc@example.com', 'booking_service_account');
SET ROLE booking_service_account;
SELECT jsonb_array_length(api.list_bookings(lim => 500)) = :total AS service_account_reads_all;
SELECT api.cancel_booking(:bobs);
RESET ROLE;
SELECT t_as('admin@example.com', 'booking_admin');
SET ROLE booking_admin;
SELECT jsonb_array_length(api.list_bookings(lim => 500)) = :total AS admin_sees_all;
SELECT api.cancel_booking(:bobs) ->> 'status' AS admin_cancels;
RESET ROLE;
-- Anonymous callers get nothing.
SELECT set_config('request.jwt.claims', '', false) = '' AS anonymous;
SET ROLE booking_anon;
SELECT api.list_bookings();
SELECT count(*) FROM booking.bookings;
RESET ROLE;
