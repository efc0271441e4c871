-- Reviews of meeting rooms, votes, flags and moderation.
--
-- Every rule lives in the tables' row-level security and constraints, so a
-- direct INSERT in psql is held to the same rules as the api: one review per
-- user and room, rating 1..5, only after a booking of that room has ended,
-- never a vote on one's own review.  The api functions check first, to
-- answer with a clear error rather than a policy violation.

CREATE TABLE booking.reviews (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room_id    bigint NOT NULL REFERENCES booking.rooms,
    user_id    bigint NOT NULL REFERENCES booking.users,
    rating     integer NOT NULL,
    comment    text NOT NULL DEFAULT '',
    status     text NOT NULL DEFAULT 'visible',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT reviews_one_per_user_and_room UNIQUE (room_id, user_id),
    CONSTRAINT reviews_rating_range CHECK (rating BETWEEN 1 AND 5),
    CONSTRAINT reviews_comment_length CHECK (length(comment) <= 4000),
    CONSTRAINT reviews_status_check CHECK (status IN ('visible', 'flagged', 'hidden'))
);
CREATE INDEX reviews_user_idx ON booking.reviews (user_id);
CREATE INDEX reviews_moderation_idx ON booking.reviews (status, updated_at) WHERE status <> 'visible';
COMMENT ON TABLE booking.reviews IS 'room reviews, one per user and room, by users whose booking of the room has ended; hidden ones are seen by moderators and their author only';

CREATE TABLE booking.review_votes (
    review_id  bigint NOT NULL REFERENCES booking.reviews ON DELETE CASCADE,
    user_id    bigint NOT NULL REFERENCES booking.users,
    helpful    boolean NOT NULL,
    voted_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (review_id, user_id)
);
COMMENT ON TABLE booking.review_votes IS 'helpful/unhelpful votes, one per user and review (a second vote changes the first)';

CREATE TABLE booking.review_flags (
    review_id  bigint NOT NULL REFERENCES booking.reviews ON DELETE CASCADE,
    user_id    bigint NOT NULL REFERENCES booking.users,
    reason     text NOT NULL DEFAULT '',
    flagged_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (review_id, user_id),
    CONSTRAINT review_flags_reason_length CHECK (length(reason) <= 500)
);
COMMENT ON TABLE booking.review_flags IS 'who flagged which review and why; a flag moves a visible review to the moderation queue';

-- Has this user a booking of this room that has ended (and was held, not
-- cancelled)?  Reads every user's bookings, hence SECURITY DEFINER; it
-- answers yes or no only.
CREATE FUNCTION booking.may_review(room_id bigint, user_id bigint) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM booking.bookings b
                    WHERE b.room_id = may_review.room_id AND b.user_id = may_review.user_id
                      AND b.status IN ('confirmed', 'completed') AND b.ends_at <= now())
$$;
COMMENT ON FUNCTION booking.may_review IS 'true when the user has a confirmed or completed booking of the room that has ended';

-- The author of a review, whatever its status (votes must not go to one's
-- own review, even a hidden one the voter cannot see).
CREATE FUNCTION booking.review_author(review_id bigint) RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT r.user_id FROM booking.reviews r WHERE r.id = review_author.review_id $$;

-- Row-level security.  Everyone signed in reads the reviews that are not
-- hidden, and their own; moderators and admins read and moderate all.
ALTER TABLE booking.reviews ENABLE ROW LEVEL SECURITY;
CREATE POLICY reviews_read ON booking.reviews FOR SELECT TO booking_api
    USING (status <> 'hidden' OR user_id = booking.current_user_id());
CREATE POLICY reviews_write_own ON booking.reviews FOR INSERT TO booking_api
    WITH CHECK (user_id = booking.current_user_id() AND status = 'visible'
                AND booking.may_review(room_id, user_id));
CREATE POLICY reviews_change_own ON booking.reviews FOR UPDATE TO booking_api
    USING (user_id = booking.current_user_id()) WITH CHECK (user_id = booking.current_user_id());
CREATE POLICY reviews_delete_own ON booking.reviews FOR DELETE TO booking_api
    USING (user_id = booking.current_user_id());
CREATE POLICY reviews_moderate ON booking.reviews TO booking_moderator, booking_admin
    USING (true) WITH CHECK (true);
-- Authors change their text and rating; only moderators change the status.
GRANT SELECT, DELETE ON booking.reviews TO booking_api;
GRANT INSERT (room_id, user_id, rating, comment) ON booking.reviews TO booking_api;
GRANT UPDATE (rating, comment, updated_at) ON booking.reviews TO booking_api;
GRANT UPDATE (status, updated_at) ON booking.reviews TO booking_moderator, booking_admin;

ALTER TABLE booking.review_votes ENABLE ROW LEVEL SECURITY;
CREATE POLICY review_votes_own ON booking.review_votes TO booking_api
    USING (user_id = booking.current_user_id())
    WITH CHECK (user_id = booking.current_user_id()
                AND booking.review_author(review_id) IS DISTINCT FROM user_id);
CREATE POLICY review_votes_staff_read ON booking.review_votes FOR SELECT
    TO booking_moderator, booking_admin USING (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON booking.review_votes TO booking_api;

ALTER TABLE booking.review_flags ENABLE ROW LEVEL SECURITY;
CREATE POLICY review_flags_own ON booking.review_flags TO booking_api
    USING (user_id = booking.current_user_id()) WITH CHECK (user_id = booking.current_user_id());
CREATE POLICY review_flags_staff_read ON booking.review_flags FOR SELECT
    TO booking_moderator, booking_admin USING (true);
GRANT SELECT, INSERT, UPDATE ON booking.review_flags TO booking_api;

-- A flag moves a visible review to the moderation queue.  The flagger may
-- not change someone else's review, hence SECURITY DEFINER; a hidden review
-- stays hidden.
CREATE FUNCTION booking.review_flagged() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE booking.reviews SET status = 'flagged', updated_at = now()
     WHERE id = NEW.review_id AND status = 'visible';
    RETURN NULL;
END
$$;
CREATE TRIGGER review_flags_queue AFTER INSERT ON booking.review_flags
    FOR EACH ROW EXECUTE FUNCTION booking.review_flagged();

-- Vote counts of a review: every user's votes count, though each user sees
-- only their own rows.
CREATE FUNCTION booking.review_vote_counts(review_id bigint, OUT helpful bigint, OUT unhelpful bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(*) FILTER (WHERE v.helpful), count(*) FILTER (WHERE NOT v.helpful)
      FROM booking.review_votes v WHERE v.review_id = review_vote_counts.review_id
$$;

CREATE FUNCTION booking.review_json(r booking.reviews) RETURNS jsonb
LANGUAGE sql STABLE
AS $$
    SELECT jsonb_build_object('id', r.id, 'room_id', r.room_id, 'user_id', r.user_id,
                              'rating', r.rating, 'comment', r.comment, 'status', r.status,
                              'helpful_votes', c.helpful, 'unhelpful_votes', c.unhelpful,
                              'created_at', r.created_at, 'updated_at', r.updated_at)
      FROM booking.review_vote_counts(r.id) c
$$;

CREATE FUNCTION booking.validate_review(rating integer, comment text) RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF rating IS NOT NULL AND rating NOT BETWEEN 1 AND 5 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('rating %s is not between 1 and 5', rating),
            jsonb_build_object('field', 'rating', 'min', 1, 'max', 5));
    END IF;
    IF comment IS NOT NULL AND length(comment) > 4000 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'comment is longer than 4000 characters',
            jsonb_build_object('field', 'comment', 'max_length', 4000));
    END IF;
END
$$;

-- A review the caller may see, or 404.
CREATE FUNCTION booking.find_review(review_id bigint) RETURNS booking.reviews
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    r booking.reviews;
BEGIN
    SELECT * INTO r FROM booking.reviews WHERE id = review_id;
    IF r.id IS NULL THEN
        PERFORM booking.raise_error(404, 'NOT_FOUND', format('review %s not found', coalesce(review_id::text, 'NULL')),
            jsonb_build_object('review_id', review_id));
    END IF;
    RETURN r;
END
$$;

-- A review the caller wrote: 404 when there is none, 403 when it is someone else's.
CREATE FUNCTION booking.find_own_review(review_id bigint) RETURNS booking.reviews
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    uid bigint := booking.require_user();
    r booking.reviews := booking.find_review(review_id);
BEGIN
    IF r.user_id <> uid THEN
        PERFORM booking.raise_error(403, 'FORBIDDEN', format('review %s is not yours', review_id),
            jsonb_build_object('review_id', review_id));
    END IF;
    RETURN r;
END
$$;

GRANT EXECUTE ON FUNCTION booking.find_own_review(bigint), booking.may_review(bigint, bigint), booking.review_author(bigint),
    booking.review_vote_counts(bigint), booking.review_json(booking.reviews),
    booking.validate_review(integer, text), booking.find_review(bigint)
  TO booking_api;

CREATE FUNCTION api.create_review(room_id bigint, rating integer, comment text DEFAULT '') RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    uid bigint := booking.require_user();
    r booking.reviews;
BEGIN
    PERFORM booking.find_room(room_id);
    IF rating IS NULL THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'rating is required', jsonb_build_object('field', 'rating'));
    END IF;
    PERFORM booking.validate_review(rating, comment);
    PERFORM booking.rate_limit_hit('create_review');
    IF NOT booking.may_review(room_id, uid) THEN
        PERFORM booking.raise_error(403, 'FORBIDDEN',
            format('no ended booking of room %s to review', room_id),
            jsonb_build_object('room_id', room_id),
            'A room can be reviewed once a booking of it has ended.');
    END IF;
    BEGIN
        INSERT INTO booking.reviews (room_id, user_id, rating, comment)
        VALUES (room_id, uid, rating, coalesce(comment, '')) RETURNING * INTO r;
    EXCEPTION WHEN unique_violation THEN
        PERFORM booking.raise_error(409, 'ALREADY_EXISTS', format('room %s is already reviewed by this user', room_id),
            jsonb_build_object('room_id', room_id), 'Change the existing review with PATCH /reviews/{id}.');
    END;
    RETURN booking.review_json(r);
END
$$;
COMMENT ON FUNCTION api.create_review IS 'POST /reviews (a user with an ended booking of the room, rate-limited): 403 FORBIDDEN without one, 409 ALREADY_EXISTS for a second review, 422 for a rating outside 1..5';

CREATE FUNCTION api.list_room_reviews(room_id bigint, lim integer DEFAULT 50, off integer DEFAULT 0) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_user();
    PERFORM booking.check_page(lim, off);
    PERFORM booking.find_room(room_id);
    -- Hidden reviews are left out for everyone here, moderators included:
    -- they see them in the moderation queue.
    RETURN coalesce((
        SELECT jsonb_agg(booking.review_json(x) ORDER BY x.created_at DESC, x.id DESC)
          FROM (SELECT r.* FROM booking.reviews r
                 WHERE r.room_id = list_room_reviews.room_id AND r.status <> 'hidden'
                 ORDER BY r.created_at DESC, r.id DESC LIMIT lim OFFSET off) x), '[]');
END
$$;
COMMENT ON FUNCTION api.list_room_reviews IS 'GET /rooms/{id}/reviews (any user): the room''s reviews, newest first, hidden ones omitted';

CREATE FUNCTION api.update_review(id bigint, rating integer DEFAULT NULL, comment text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r booking.reviews := booking.find_own_review(id);
BEGIN
    PERFORM booking.validate_review(rating, comment);
    UPDATE booking.reviews x
       SET rating = coalesce(update_review.rating, x.rating),
           comment = coalesce(update_review.comment, x.comment), updated_at = now()
     WHERE x.id = update_review.id
    RETURNING * INTO r;
    RETURN booking.review_json(r);
END
$$;
COMMENT ON FUNCTION api.update_review IS 'PATCH /reviews/{id} (author): change rating or comment; 403 for someone else''s review, 404';

CREATE FUNCTION api.delete_review(id bigint) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r booking.reviews := booking.find_own_review(id);
BEGIN
    DELETE FROM booking.reviews x WHERE x.id = delete_review.id;
    RETURN jsonb_build_object('id', id, 'deleted', true);
END
$$;
COMMENT ON FUNCTION api.delete_review IS 'DELETE /reviews/{id} (author): 204; 403 for someone else''s review, 404';

CREATE FUNCTION api.vote_review(id bigint, helpful boolean) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    uid bigint := booking.require_user();
    r booking.reviews := booking.find_review(id);
    previous boolean;
BEGIN
    IF helpful IS NULL THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'helpful is required', jsonb_build_object('field', 'helpful'));
    END IF;
    IF r.user_id = uid THEN
        PERFORM booking.raise_error(403, 'FORBIDDEN', 'authors may not vote on their own review',
            jsonb_build_object('review_id', id));
    END IF;
    SELECT v.helpful INTO previous FROM booking.review_votes v WHERE v.review_id = r.id AND v.user_id = uid;
    -- One vote per user: a second vote replaces the first.
    INSERT INTO booking.review_votes AS v (review_id, user_id, helpful) VALUES (r.id, uid, vote_review.helpful)
    ON CONFLICT (review_id, user_id) DO UPDATE SET helpful = excluded.helpful, voted_at = now();
    RETURN booking.review_json(r) || jsonb_build_object('your_vote', helpful, 'changed', previous IS NOT NULL AND previous <> helpful,
                                                        'previous_vote', previous);
END
$$;
COMMENT ON FUNCTION api.vote_review IS 'POST /reviews/{id}/votes (any user but the author): helpful or not, one vote per user (a second vote changes it); 403 for the author';

CREATE FUNCTION api.flag_review(id bigint, reason text DEFAULT '') RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    uid bigint := booking.require_user();
    r booking.reviews := booking.find_review(id);
BEGIN
    IF length(coalesce(reason, '')) > 500 THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', 'reason is longer than 500 characters',
            jsonb_build_object('field', 'reason', 'max_length', 500));
    END IF;
    -- Flagging twice is harmless: the first flag stands.
    INSERT INTO booking.review_flags (review_id, user_id, reason) VALUES (r.id, uid, coalesce(reason, ''))
    ON CONFLICT DO NOTHING;
    RETURN jsonb_build_object('id', r.id, 'flagged', true);
END
$$;
COMMENT ON FUNCTION api.flag_review IS 'POST /reviews/{id}/flag (any user): puts the review in the moderation queue; 404';

-- Moderation.
CREATE FUNCTION api.moderation_reviews(status text DEFAULT 'flagged', lim integer DEFAULT 50, off integer DEFAULT 0)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM booking.require_role('moderator', 'admin');
    PERFORM booking.check_page(lim, off);
    IF status IS NULL OR status NOT IN ('visible', 'flagged', 'hidden') THEN
        PERFORM booking.raise_error(422, 'VALIDATION_ERROR', format('status "%s" is not a review status', status),
            jsonb_build_object('field', 'status'));
    END IF;
    RETURN coalesce((
        SELECT jsonb_agg(booking.review_json(x) || jsonb_build_object('flags', f.flags) ORDER BY x.updated_at, x.id)
          FROM (SELECT r.* FROM booking.reviews r WHERE r.status = moderation_reviews.status
                 ORDER BY r.updated_at, r.id LIMIT lim OFFSET off) x
          CROSS JOIN LATERAL (
                SELECT coalesce(jsonb_agg(jsonb_build_object('user_id', fl.user_id, 'reason', fl.reason)
                                          ORDER BY fl.flagged_at, fl.user_id), '[]') AS flags
                  FROM booking.review_flags fl WHERE fl.review_id = x.id) f), '[]');
END
$$;
COMMENT ON FUNCTION api.moderation_reviews IS 'GET /moderation/reviews?status=flagged (moderator, admin): the queue, oldest first, with the flags; 403 for other roles';

CREATE FUNCTION booking.moderate_review(review_id bigint, new_status text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r booking.reviews;
BEGIN
    PERFORM booking.require_role('moderator', 'admin');
    r := booking.find_review(review_id);
    UPDATE booking.reviews x SET status = new_status, updated_at = now()
     WHERE x.id = review_id RETURNING * INTO r;
    -- A restored review leaves the queue: its flags are settled.
    IF new_status = 'visible' THEN
        DELETE FROM booking.review_flags fl WHERE fl.review_id = moderate_review.review_id;
    END IF;
    RETURN booking.review_json(r);
END
$$;
GRANT EXECUTE ON FUNCTION booking.moderate_review(bigint, text) TO booking_api;
-- Settling flags on restore needs DELETE on them, for moderators only.
GRANT DELETE ON booking.review_flags TO booking_moderator, booking_admin;
CREATE POLICY review_flags_staff_settle ON booking.review_flags FOR DELETE
    TO booking_moderator, booking_admin USING (true);

CREATE FUNCTION api.hide_review(id bigint) RETURNS jsonb
LANGUAGE sql VOLATILE
AS $$ SELECT booking.moderate_review(id, 'hidden') $$;
COMMENT ON FUNCTION api.hide_review IS 'POST /moderation/reviews/{id}/hide (moderator, admin): the review disappears from listings and ratings; 403, 404';

CREATE FUNCTION api.restore_review(id bigint) RETURNS jsonb
LANGUAGE sql VOLATILE
AS $$ SELECT booking.moderate_review(id, 'visible') $$;
COMMENT ON FUNCTION api.restore_review IS 'POST /moderation/reviews/{id}/restore (moderator, admin): visible again, flags settled; 403, 404';
