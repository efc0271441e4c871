-- Availability of people (W2Meet): publish, read, intersect, suggest meetings.
\set SHOW_CONTEXT never
SET timezone TO 'UTC';

SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
-- Overlapping intervals are merged when read back.
SELECT api.set_my_availability('[{"starts_at": "2099-05-04T08:00:00Z", "ends_at": "2099-05-04T12:00:00Z"},
                                 {"starts_at": "2099-05-04T11:00:00Z", "ends_at": "2099-05-04T13:00:00Z"},
                                 {"starts_at": "2099-05-05T14:00:00Z", "ends_at": "2099-05-05T18:00:00Z"}]');
-- Bad input: nothing written (Alice's intervals stay).
SELECT api.set_my_availability('{"starts_at": "2099-05-04T08:00:00Z"}');
SELECT api.set_my_availability('[{"starts_at": "2099-05-04T08:00:00", "ends_at": "2099-05-04T12:00:00Z"}]');
SELECT api.set_my_availability('[{"starts_at": "2099-05-04T12:00:00Z", "ends_at": "2099-05-04T08:00:00Z"}]');
SELECT api.set_my_availability('[1]');
SELECT jsonb_array_length(api.user_availability(t_id('alice@example.com'))) AS alice_intervals;
RESET ROLE;
SELECT t_as('bob@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.set_my_availability('[{"starts_at": "2099-05-04T09:30:00Z", "ends_at": "2099-05-04T16:00:00Z"},
                                 {"starts_at": "2099-05-05T15:00:00Z", "ends_at": "2099-05-05T16:00:00Z"}]') IS NOT NULL AS published;
-- Bob cannot write Alice's availability, even directly.
INSERT INTO booking.user_availability (user_id, during) VALUES (t_id('alice@example.com'), '[2099-05-06 00:00+00, 2099-05-07 00:00+00)');
-- Anyone signed in may read anyone's availability.
SELECT api.user_availability(t_id('alice@example.com'), "from" => '2099-05-05T00:00:00Z', "to" => '2099-05-06T00:00:00Z');
SELECT api.user_availability(999999);
-- Common free time of Alice and Bob.
SELECT api.common_availability(ARRAY[t_id('alice@example.com'), t_id('bob@example.com')],
                               '2099-05-04T00:00:00Z', '2099-05-06T00:00:00Z');
-- Bob's own meeting (a booking he made) makes him busy.
SELECT api.create_booking(t_room('Cupboard'), '2099-05-04T10:00:00Z', '2099-05-04T10:30:00Z', 'Bob 1:1') ->> 'status';
SELECT api.common_availability(ARRAY[t_id('alice@example.com'), t_id('bob@example.com')],
                               '2099-05-04T00:00:00Z', '2099-05-06T00:00:00Z');
-- Suggestions: 60 minutes for Alice and Bob in a room for 6 or more; earliest first, snuggest room.
SELECT jsonb_path_query(api.suggest_meetings(ARRAY[t_id('alice@example.com'), t_id('bob@example.com')], 60,
                        '2099-05-04T00:00:00Z', '2099-05-06T00:00:00Z', min_capacity => 6, lim => 4), '$[*]') AS slot;
-- When Carol takes the Aquarium, those slots move to the next room that fits.
RESET ROLE;
SELECT t_as('carol@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.create_booking(t_room('Aquarium'), '2099-05-04T10:15:00Z', '2099-05-04T12:00:00Z', 'Aquarium taken') ->> 'status';
RESET ROLE;
SELECT t_as('bob@example.com', 'booking_user');
SET ROLE booking_user;
SELECT jsonb_path_query(api.suggest_meetings(ARRAY[t_id('alice@example.com'), t_id('bob@example.com')], 60,
                        '2099-05-04T00:00:00Z', '2099-05-06T00:00:00Z', min_capacity => 6, lim => 4), '$[*]') AS slot;
-- No common time: no suggestions.
SELECT api.suggest_meetings(ARRAY[t_id('alice@example.com'), t_id('carol@example.com')], 30,
                            '2099-05-04T00:00:00Z', '2099-05-06T00:00:00Z');
-- Bad input.
SELECT api.suggest_meetings(ARRAY[]::bigint[], 30, '2099-05-04T00:00:00Z', '2099-05-06T00:00:00Z');
SELECT api.suggest_meetings(ARRAY[t_id('alice@example.com'), 999999], 30, '2099-05-04T00:00:00Z', '2099-05-06T00:00:00Z');
SELECT api.suggest_meetings(ARRAY[t_id('alice@example.com')], 20, '2099-05-04T00:00:00Z', '2099-05-06T00:00:00Z');
SELECT api.suggest_meetings(ARRAY[t_id('alice@example.com')], 30, '2099-05-04T00:00:00Z', '2099-06-06T00:00:00Z');
SELECT api.suggest_meetings(ARRAY[t_id('alice@example.com')], 30, '2099-05-04T00:00:00Z', '2099-05-06T00:00:00Z', lim => 0);
SELECT api.common_availability(ARRAY[t_id('alice@example.com')], '2099-05-06T00:00:00Z', '2099-05-04T00:00:00Z');
RESET ROLE;
