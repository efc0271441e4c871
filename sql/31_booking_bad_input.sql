-- Bad input for bookings: each a clear error with its error_code, nothing written.
\set SHOW_CONTEXT never
SET timezone TO 'UTC';

SELECT count(*) AS bookings_before FROM booking.bookings \gset
SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.create_booking(t_room('Aquarium'), '2099-02-01T10:00:00Z', '2099-02-01T10:00:00Z', 'End equals start');
SELECT api.create_booking(t_room('Aquarium'), '2099-02-01T10:00:00Z', '2099-02-01T09:00:00Z', 'End before start');
SELECT api.create_booking(t_room('Aquarium'), '2099-02-01T10:00:00Z', '2099-02-02T10:00:01Z', 'Longer than 24 h');
SELECT api.create_booking(t_room('Aquarium'), '2099-02-01T10:00:00', '2099-02-01T11:00:00Z', 'Start without a zone');
SELECT api.create_booking(t_room('Aquarium'), '2099-02-01T10:00:00Z', '2099-02-01 11:00', 'End without a zone');
SELECT api.create_booking(t_room('Aquarium'), 'tomorrow', '2099-02-01T11:00:00Z', 'Not a time');
SELECT api.create_booking(t_room('Aquarium'), '2099-02-30T10:00:00Z', '2099-02-30T11:00:00Z', 'No such day');
SELECT api.create_booking(t_room('Aquarium'), NULL, '2099-02-01T11:00:00Z', 'Missing start');
SELECT api.create_booking(999999, '2099-02-01T10:00:00Z', '2099-02-01T11:00:00Z', 'Unknown room');
SELECT api.create_booking(t_room('Doomed'), '2099-02-01T10:00:00Z', '2099-02-01T11:00:00Z', 'Inactive room');
SELECT api.create_booking(t_room('Aquarium'), '2001-02-01T10:00:00Z', '2001-02-01T11:00:00Z', 'In the past');
SELECT api.create_booking(t_room('Aquarium'), '2099-02-01T10:00:00Z', '2099-02-01T11:00:00Z', '');
SELECT api.create_booking(t_room('Aquarium'), '2099-02-01T10:00:00Z', '2099-02-01T11:00:00Z', repeat('x', 201));
SELECT api.create_booking(t_room('Aquarium'), '2099-02-01T10:00:00Z', '2099-02-01T11:00:00Z', 'Recurrence over the cap',
                          '{"frequency": "daily", "count": 367}');
SELECT api.create_booking(t_room('Aquarium'), '2099-02-01T10:00:00Z', '2099-02-01T11:00:00Z', 'Until over the cap',
                          '{"frequency": "daily", "until": "2100-02-03"}');
SELECT api.create_booking(t_room('Aquarium'), '2099-02-01T10:00:00Z', '2099-02-01T11:00:00Z', 'Both count and until',
                          '{"frequency": "daily", "count": 3, "until": "2099-02-10"}');
SELECT api.create_booking(t_room('Aquarium'), '2099-02-01T10:00:00Z', '2099-02-01T11:00:00Z', 'Neither count nor until',
                          '{"frequency": "weekly"}');
SELECT api.create_booking(t_room('Aquarium'), '2099-02-01T10:00:00Z', '2099-02-01T11:00:00Z', 'Monthly',
                          '{"frequency": "monthly", "count": 3}');
SELECT api.create_booking(t_room('Aquarium'), '2099-02-01T10:00:00Z', '2099-02-01T11:00:00Z', 'Zero interval',
                          '{"frequency": "daily", "interval": 0, "count": 3}');
SELECT api.create_booking(t_room('Aquarium'), '2099-02-01T10:00:00Z', '2099-02-01T11:00:00Z', 'Fractional count',
                          '{"frequency": "daily", "count": 2.5}');
SELECT api.create_booking(t_room('Aquarium'), '2099-02-01T10:00:00Z', '2099-02-01T11:00:00Z', 'Unknown key',
                          '{"frequency": "daily", "count": 2, "every": 3}');
SELECT api.create_booking(t_room('Aquarium'), '2099-02-01T10:00:00Z', '2099-02-01T11:00:00Z', 'Bad zone',
                          '{"frequency": "daily", "count": 2, "time_zone": "Mars/Olympus"}');
SELECT api.create_booking(t_room('Aquarium'), '2099-02-01T10:00:00Z', '2099-02-01T11:00:00Z', 'Until before start',
                          '{"frequency": "daily", "until": "2099-01-01"}');
SELECT api.create_booking(t_room('Aquarium'), '2099-02-01T10:00:00Z', '2099-02-01T11:00:00Z', 'Bad on_conflict',
                          '{"frequency": "daily", "count": 2, "on_conflict": "maybe"}');
SELECT api.create_booking(t_room('Aquarium'), '2099-02-01T10:00:00Z', '2099-02-01T11:00:00Z', 'Not an object', '[1, 2]');
SELECT api.room_availability(t_room('Aquarium'), '2099-02-01T10:00:00Z', '2099-05-01T10:00:00Z');   -- window too long
SELECT api.room_availability(t_room('Aquarium'), '2099-02-01', '2099-02-02');                      -- dates, not instants
-- SQL injection strings are stored as plain data.
SELECT api.create_booking(t_room('Aquarium'), '2099-02-01T10:00:00Z', '2099-02-01T11:00:00Z',
                          'x''); DELETE FROM booking.bookings; --') ->> 'title' AS title;
SELECT api.list_bookings(status => 'confirmed''; DROP TABLE booking.bookings; --');
RESET ROLE;
-- Exactly one row was written (the injection string, as data).
SELECT count(*) - :bookings_before AS written FROM booking.bookings;

-- The trigger is the last word: even a superuser's direct INSERT cannot overlap.
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
VALUES (t_room('Aquarium'), t_id('bob@example.com'), 'Direct insert', '2099-02-01T10:30:00Z', '2099-02-01T10:45:00Z');
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
VALUES (t_room('Boardroom'), t_id('bob@example.com'), 'Within the buffer', '2099-01-05T11:10:00Z', '2099-01-05T11:20:00Z');
-- ...nor can two rows of one statement overlap each other.
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
VALUES (t_room('Cupboard'), t_id('bob@example.com'), 'Twin 1', '2099-03-01T10:00:00Z', '2099-03-01T11:00:00Z'),
       (t_room('Cupboard'), t_id('bob@example.com'), 'Twin 2', '2099-03-01T10:30:00Z', '2099-03-01T11:30:00Z');
-- ...nor an UPDATE that reconfirms a cancelled booking into a taken slot.
UPDATE booking.bookings SET status = 'confirmed' WHERE title = 'Daily standup';
-- ...nor a booking over 24 h.
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
VALUES (t_room('Cupboard'), t_id('bob@example.com'), 'Marathon', '2099-03-02T10:00:00Z', '2099-03-03T11:00:00Z');
SELECT count(*) - :bookings_before AS written FROM booking.bookings;

-- The invariant over everything written so far: no two confirmed bookings of a room overlap.
SELECT count(*) AS overlapping_pairs
  FROM booking.bookings a JOIN booking.bookings b
    ON a.room_id = b.room_id AND a.id < b.id AND a.status = 'confirmed' AND b.status = 'confirmed'
   AND a.starts_at < b.ends_at AND b.starts_at < a.ends_at;
