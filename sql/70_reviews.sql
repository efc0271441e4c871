-- Reviews: who may write one, votes, flags, moderation; the rating counters
-- are compared with a full recount after every scenario.
\set SHOW_CONTEXT never
SET timezone TO 'UTC';
SELECT set_config('request.jwt.claims', '', false) = '' AS superuser_session;

-- Two rooms and bookings in the past, made as a superuser (users cannot book
-- the past).  Alice: an ended booking of Library, a cancelled one of Studio.
-- Bob: an ended booking of Library, a future one of Studio.  Mo (moderator):
-- an ended booking of Studio.
-- Fixed ids keep this file's output stable whatever earlier files create.
INSERT INTO booking.rooms (id, name, location, capacity) OVERRIDING SYSTEM VALUE
VALUES (7001, 'Library', 'HQ 2nd floor', 8), (7002, 'Studio', 'Annex', 4);
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at, status)
SELECT t_room(room), t_id(email), 'Review fixture', now() + starts, now() + starts + interval '1 hour', status
  FROM (VALUES ('Library', 'alice@example.com', interval '-3 days', 'completed'),
               ('Studio', 'alice@example.com', interval '-3 days', 'cancelled'),
               ('Library', 'bob@example.com', interval '-2 days', 'confirmed'),
               ('Studio', 'bob@example.com', interval '2 days', 'confirmed'),
               ('Studio', 'mod@example.com', interval '-1 day', 'confirmed')) v(room, email, starts, status);

-- Alice reviews Library.  Bad input: each a clear error, nothing written.
SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
SELECT t_strip(api.create_review(t_room('Library'), 5, 'Quiet and bright')) - 'id' - 'room_id' - 'user_id' AS created;
SELECT api.create_review(t_room('Library'), 4, 'Again');          -- one per user and room
SELECT api.create_review(t_room('Studio'), 4, 'Cancelled stay');  -- her Studio booking was cancelled
SELECT api.create_review(t_room('Studio'), 0, 'Zero');            -- rating 1..5
SELECT api.create_review(t_room('Studio'), 6, 'Six');
SELECT api.create_review(t_room('Studio'), NULL, 'No rating');
SELECT api.create_review(999999, 3, 'No such room');
-- Going around the api does not help: the table's policy holds the same rule.
INSERT INTO booking.reviews (room_id, user_id, rating, comment) VALUES (t_room('Studio'), t_id('alice@example.com'), 5, 'Sneaky');
INSERT INTO booking.reviews (room_id, user_id, rating, comment) VALUES (t_room('Library'), t_id('bob@example.com'), 1, 'In Bob''s name');
RESET ROLE;
SELECT count(*) AS reviews FROM booking.reviews;

-- Carol never booked Library.
SELECT t_as('carol@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.create_review(t_room('Library'), 3, 'Heard it is nice');
RESET ROLE;
-- Bob's booking of Studio has not ended yet; his Library one has.
SELECT t_as('bob@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.create_review(t_room('Studio'), 2, 'Too early');
SELECT t_strip(api.create_review(t_room('Library'), 2, 'Noisy neighbours')) - 'id' - 'room_id' - 'user_id' AS created;
RESET ROLE;
-- Mo's booking of Studio ended a day ago: the moderator reviews as any user.
SELECT t_as('mod@example.com', 'booking_moderator');
SET ROLE booking_moderator;
SELECT api.create_review(t_room('Studio'), 4, 'Cosy') ->> 'rating' AS mo_rating;
RESET ROLE;
SELECT * FROM booking.analytics_check();
SELECT room_name, average_rating, review_count FROM booking.analytics_rating_by_room
 WHERE room_name IN ('Library', 'Studio') ORDER BY 1;

SELECT id AS alices FROM booking.reviews WHERE comment = 'Quiet and bright' \gset
SELECT id AS bobs FROM booking.reviews WHERE comment = 'Noisy neighbours' \gset

-- Authors change their own review only, and never its status.
SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.update_review(:alices, rating => 4) ->> 'rating' AS alice_now;
SELECT api.update_review(:alices, rating => 6);
SELECT api.update_review(:bobs, comment => 'Vandalised');
SELECT api.delete_review(:bobs);
UPDATE booking.reviews SET status = 'hidden' WHERE id = :alices;
UPDATE booking.reviews SET comment = 'Vandalised' WHERE id = :bobs;
RESET ROLE;
SELECT comment FROM booking.reviews WHERE id = :bobs;
SELECT * FROM booking.analytics_check();

-- Votes: one per user (a second vote changes it), never by the author.
SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
SELECT r ->> 'helpful_votes' AS helpful, r ->> 'unhelpful_votes' AS unhelpful, r ->> 'changed' AS changed
  FROM api.vote_review(:bobs, true) r;
SELECT r ->> 'helpful_votes' AS helpful, r ->> 'unhelpful_votes' AS unhelpful, r ->> 'changed' AS changed
  FROM api.vote_review(:bobs, false) r;
SELECT r ->> 'helpful_votes' AS helpful, r ->> 'unhelpful_votes' AS unhelpful, r ->> 'changed' AS changed
  FROM api.vote_review(:bobs, false) r;
SELECT api.vote_review(:alices, true);                 -- her own review
SELECT api.vote_review(:bobs, NULL);
SELECT api.vote_review(999999, true);
INSERT INTO booking.review_votes (review_id, user_id, helpful) VALUES (:alices, t_id('alice@example.com'), true);
RESET ROLE;
SELECT t_as('fm@example.com', 'booking_facility_manager');
SET ROLE booking_facility_manager;
SELECT api.vote_review(:bobs, true) ->> 'helpful_votes' AS helpful;
-- Votes are private: Fred sees his own vote row only.
SELECT count(*) AS vote_rows_visible FROM booking.review_votes;
RESET ROLE;
SELECT count(*) AS votes FROM booking.review_votes;

-- Flags put a review in the moderation queue; it stays listed meanwhile.
SELECT t_as('carol@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.flag_review(:bobs, 'Rude about the neighbours') ->> 'flagged' AS flagged;
SELECT api.flag_review(:bobs, 'Twice') ->> 'flagged' AS flagged_again;
SELECT api.flag_review(:bobs, repeat('x', 501));
SELECT api.flag_review(999999);
SELECT jsonb_path_query_array(api.list_room_reviews(t_room('Library')), '$[*].status') AS listed;
-- A plain user does not moderate.
SELECT api.moderation_reviews();
SELECT api.hide_review(:bobs);
SELECT api.restore_review(:bobs);
RESET ROLE;
SELECT status FROM booking.reviews WHERE id = :bobs;

SELECT t_as('mod@example.com', 'booking_moderator');
SET ROLE booking_moderator;
SELECT r - 'id' - 'room_id' - 'user_id' - 'created_at' - 'updated_at' - 'flags' AS queued,
       jsonb_path_query_array(r -> 'flags', '$[*].reason') AS reasons
  FROM jsonb_array_elements(api.moderation_reviews()) r;
SELECT api.moderation_reviews(status => 'gone');
SELECT api.hide_review(:bobs) ->> 'status' AS status;
SELECT api.hide_review(999999);
RESET ROLE;
SELECT * FROM booking.analytics_check();
SELECT room_name, average_rating, review_count FROM booking.analytics_rating_by_room
 WHERE room_name = 'Library';

-- Hidden: gone from the listing for everyone, but its author still sees it.
SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
SELECT jsonb_path_query_array(api.list_room_reviews(t_room('Library')), '$[*].comment') AS listed;
SELECT api.vote_review(:bobs, true);
RESET ROLE;
SELECT t_as('bob@example.com', 'booking_user');
SET ROLE booking_user;
SELECT comment, status FROM booking.reviews WHERE id = :bobs;
RESET ROLE;

-- Restore: visible again, flags settled.
SELECT t_as('admin@example.com', 'booking_admin');
SET ROLE booking_admin;
SELECT jsonb_array_length(api.moderation_reviews(status => 'hidden')) AS hidden_queue;
SELECT api.restore_review(:bobs) ->> 'status' AS status;
SELECT jsonb_array_length(api.moderation_reviews()) AS flagged_queue;
RESET ROLE;
SELECT count(*) AS flags_left FROM booking.review_flags WHERE review_id = :bobs;
SELECT * FROM booking.analytics_check();

-- The author deletes; votes go with the review.
SELECT t_as('bob@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.delete_review(:bobs) ->> 'deleted' AS deleted;
SELECT api.delete_review(:bobs);
RESET ROLE;
SELECT count(*) AS votes_left FROM booking.review_votes WHERE review_id = :bobs;
SELECT * FROM booking.analytics_check();
SELECT room_name, average_rating, review_count FROM booking.analytics_rating_by_room
 WHERE room_name IN ('Library', 'Studio') ORDER BY 1;

-- Events: each state change of a review, in order (once published).
SELECT booking.publish_events() > 0 AS published;
SELECT kind, payload ->> 'status' AS status FROM booking.events WHERE entity = 'review' ORDER BY id;
