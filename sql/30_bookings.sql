-- Meeting-room bookings: create, conflicts (buffers included), recurrence,
-- get, list, reschedule, retitle, cancel, availability, schedule.
\set SHOW_CONTEXT never
SET timezone TO 'UTC';
\set VERBOSITY default

SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
-- Aquarium has no buffers: half-open intervals, back-to-back is fine.
SELECT t_strip(api.create_booking(t_room('Aquarium'), '2099-01-05T09:00:00Z', '2099-01-05T10:00:00Z', 'Standup')) - 'id' - 'user_id' - 'room_id';
SELECT api.create_booking(t_room('Aquarium'), '2099-01-05T10:00:00Z', '2099-01-05T11:00:00+00:00', 'Back to back') ->> 'status';
SELECT api.create_booking(t_room('Aquarium'), '2099-01-05T14:00:00+01:00', '2099-01-05T15:00:00+01:00', 'Given in +01:00') ->> 'starts_at';
-- Overlaps, in every shape, are refused and name the clashing booking(s).
SELECT api.create_booking(t_room('Aquarium'), '2099-01-05T09:30:00Z', '2099-01-05T09:45:00Z', 'Inside');
SELECT api.create_booking(t_room('Aquarium'), '2099-01-05T08:30:00Z', '2099-01-05T09:01:00Z', 'Overlaps the start');
SELECT api.create_booking(t_room('Aquarium'), '2099-01-05T08:00:00Z', '2099-01-05T12:00:00Z', 'Covers three');
SELECT api.create_booking(t_room('Aquarium'), '2099-01-05T09:00:00Z', '2099-01-05T10:00:00Z', 'Identical');
-- The same times in another room are fine.
SELECT api.create_booking(t_room('Cupboard'), '2099-01-05T09:00:00Z', '2099-01-05T10:00:00Z', 'Elsewhere') ->> 'status';
RESET ROLE;

-- Boardroom has 15 + 15 minutes of buffers: bookings need a 30-minute gap.
SELECT t_as('bob@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.create_booking(t_room('Boardroom'), '2099-01-05T09:00:00Z', '2099-01-05T10:00:00Z', 'Board meeting') ->> 'status';
SELECT api.create_booking(t_room('Boardroom'), '2099-01-05T10:00:00Z', '2099-01-05T11:00:00Z', 'Too close after');
SELECT api.create_booking(t_room('Boardroom'), '2099-01-05T08:00:00Z', '2099-01-05T08:31:00Z', 'Too close before');
SELECT api.create_booking(t_room('Boardroom'), '2099-01-05T10:30:00Z', '2099-01-05T11:00:00Z', 'Just far enough') ->> 'status';
SELECT api.create_booking(t_room('Boardroom'), '2099-01-05T08:00:00Z', '2099-01-05T08:30:00Z', 'Just far enough before') ->> 'status';
-- Free intervals take the buffers into account: a new booking must fit inside one.
SELECT api.room_availability(t_room('Boardroom'), '2099-01-05T07:00:00Z', '2099-01-05T13:00:00Z');
SELECT api.room_availability(t_room('Aquarium'), '2099-01-05T08:00:00Z', '2099-01-05T12:00:00Z');
-- Rooms free in a window.
SELECT jsonb_path_query_array(api.list_rooms(available_from => '2099-01-05T09:15:00Z', available_to => '2099-01-05T09:45:00Z'), '$[*].name') AS free;
SELECT jsonb_path_query_array(api.list_rooms(available_from => '2099-01-05T12:30:00Z', available_to => '2099-01-05T13:00:00Z'), '$[*].name') AS free;
-- The schedule hides other people's titles from a plain user.
SELECT jsonb_path_query_array(api.room_schedule(t_room('Aquarium'), '2099-01-05T00:00:00Z', '2099-01-06T00:00:00Z'), '$[*].title') AS titles_seen_by_bob;
RESET ROLE;
SELECT t_as('auditor@example.com', 'booking_auditor');
SET ROLE booking_auditor;
SELECT jsonb_path_query_array(api.room_schedule(t_room('Aquarium'), '2099-01-05T00:00:00Z', '2099-01-06T00:00:00Z'), '$[*].title') AS titles_seen_by_auditor;
SELECT api.create_booking(t_room('Aquarium'), '2099-02-01T09:00:00Z', '2099-02-01T10:00:00Z', 'Auditors only read');
RESET ROLE;

-- Recurrence: all-or-nothing by default, every clash listed.
SELECT t_as('carol@example.com', 'booking_user');
SET ROLE booking_user;
SELECT r ->> 'series_id' IS NOT NULL AS has_series, jsonb_array_length(r -> 'bookings') AS booked, r -> 'skipped' AS skipped,
       jsonb_path_query_array(r, '$.bookings[*].starts_at') AS starts
  FROM api.create_booking(t_room('Cupboard'), '2099-01-06T09:00:00Z', '2099-01-06T10:00:00Z', 'Daily sync',
                          '{"frequency": "daily", "count": 5}') r;
SELECT jsonb_path_query_array(api.create_booking(t_room('Cupboard'), '2099-01-05T09:30:00Z', '2099-01-05T10:00:00Z', 'Every other day',
                          '{"frequency": "daily", "interval": 2, "count": 3}'), '$.bookings[*].starts_at');
SELECT api.create_booking(t_room('Cupboard'), '2099-01-05T09:30:00Z', '2099-01-05T10:00:00Z', 'Clashes every time',
                          '{"frequency": "daily", "count": 4}');
-- Skip conflicts on request: the free occurrences are booked, the others reported.
SELECT jsonb_path_query_array(r, '$.bookings[*].starts_at') AS booked, jsonb_path_query_array(r, '$.skipped[*].starts_at') AS skipped
  FROM api.create_booking(t_room('Cupboard'), '2099-01-09T09:30:00Z', '2099-01-09T10:00:00Z', 'Skipping',
                          '{"frequency": "daily", "count": 4, "on_conflict": "skip"}') r;
-- Weekly with until; a local time zone keeps 09:00 local across the DST change.
SELECT jsonb_path_query_array(r, '$.bookings[*].starts_at') AS booked
  FROM api.create_booking(t_room('Aquarium'), '2099-03-19T09:00:00+01:00', '2099-03-19T10:00:00+01:00', 'Paris weekly',
                          '{"frequency": "weekly", "until": "2099-04-09", "time_zone": "Europe/Paris"}') r;
RESET ROLE;
SELECT count(*) AS carol_bookings FROM booking.bookings WHERE user_id = t_id('carol@example.com');

-- Get, list, reschedule, retitle, cancel (as Alice, the owner).
SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
SELECT id AS standup FROM booking.bookings WHERE title = 'Standup' \gset
SELECT t_strip(api.get_booking(:standup)) - 'id' - 'user_id' - 'room_id';
SELECT jsonb_path_query_array(api.list_bookings(), '$[*].title') AS mine;
SELECT jsonb_path_query_array(api.list_bookings("from" => '2099-01-05T10:30:00Z', "to" => '2099-01-05T11:30:00Z'), '$[*].title') AS in_window;
SELECT jsonb_path_query_array(api.list_bookings(status => 'cancelled'), '$[*].title') AS cancelled;
SELECT api.list_bookings(status => 'lost');
SELECT api.update_booking(:standup, title => 'Daily standup') ->> 'title';
SELECT api.update_booking(:standup, starts_at => '2099-01-05T10:30:00Z', ends_at => '2099-01-05T11:30:00Z');
SELECT api.update_booking(:standup, starts_at => '2099-01-05T08:00:00Z', ends_at => '2099-01-05T09:00:00Z') ->> 'starts_at' AS moved_earlier;
SELECT api.update_booking(:standup, room_id => t_room('Boardroom'));   -- clashes with the buffers of Bob's 08:00
SELECT api.update_booking(:standup, room_id => t_room('Doomed'));      -- inactive room
SELECT api.update_booking(:standup, title => '');
SELECT api.cancel_booking(:standup) ->> 'status';
SELECT api.cancel_booking(:standup);
SELECT api.update_booking(:standup, title => 'Back from the dead');
-- A cancelled booking frees its slot.
SELECT api.create_booking(t_room('Aquarium'), '2099-01-05T08:00:00Z', '2099-01-05T09:00:00Z', 'Took the freed slot') ->> 'status';
RESET ROLE;
