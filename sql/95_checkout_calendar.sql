-- The checkout never runs ahead of the calendar, and a booking that
-- occupies a room (confirmed, or completed in the past) is never overlapped.
-- Real clock here (45_checkout moves it); outputs are relative to today.
\set SHOW_CONTEXT never
SET timezone TO 'UTC';
INSERT INTO booking.users (email, full_name, password_hash, role)
VALUES ('cal.admin@example.com', 'Calendar Admin', 'x', 'admin'), ('cal.user@example.com', 'Calendar User', 'x', 'user');
INSERT INTO booking.rooms (name, location, capacity) VALUES ('Calendar Room', 'HQ', 6);
SELECT count(*) AS runs_before FROM booking.checkout_runs \gset

-- A booking tomorrow (the report of issue 8), and one that started a
-- little while ago and ends later today.
SELECT t_as('cal.user@example.com', 'booking_user');
SET ROLE booking_user;
SELECT (api.create_booking(t_room('Calendar Room'), to_char(date_trunc('hour', now()) + interval '1 day 2 hours', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        to_char(date_trunc('hour', now()) + interval '1 day 3 hours', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), 'Tomorrow') ->> 'id')::bigint AS tomorrow \gset
RESET ROLE;
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
VALUES (t_room('Calendar Room'), t_id('cal.user@example.com'), 'Later today', now() - interval '5 minutes', now() + interval '50 minutes')
RETURNING id AS later_today \gset

-- A date after the latest one due is refused, naming both dates; nothing
-- is written, not even a history row.
SELECT t_as('cal.admin@example.com', 'booking_admin');
SET ROLE booking_admin;
SELECT booking.checkout_latest_due() AS latest \gset
DO $$
DECLARE
    detail jsonb;
BEGIN
    PERFORM api.run_checkout(as_of => to_char(booking.checkout_latest_due() + 1, 'YYYY-MM-DD'));
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    RAISE NOTICE 'sqlstate %, error_code %, as_of is the date asked: %, latest_allowed is the date due: %', SQLSTATE,
        detail ->> 'error_code', (detail ->> 'as_of')::date = booking.checkout_latest_due() + 1,
        (detail ->> 'latest_allowed')::date = booking.checkout_latest_due();
END $$;
RESET ROLE;
SELECT count(*) - :runs_before AS runs_written FROM booking.checkout_runs;
SELECT status FROM booking.bookings WHERE id = :tomorrow;

-- The run due now leaves the booking that ends later today confirmed.
SET ROLE booking_admin;
SELECT (api.run_checkout() ->> 'business_date')::date = :'latest'::date AS ran_the_date_due;
RESET ROLE;
SELECT status FROM booking.bookings WHERE id = :later_today;
SELECT status FROM booking.bookings WHERE id = :tomorrow;

-- So the slot of tomorrow's booking is still taken.
SET ROLE booking_user;
DO $$
BEGIN
    PERFORM api.create_booking(t_room('Calendar Room'), to_char(date_trunc('hour', now()) + interval '1 day 2 hours', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
            to_char(date_trunc('hour', now()) + interval '1 day 3 hours', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), 'Second');
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'sqlstate %: %', SQLSTATE, regexp_replace(SQLERRM, '[0-9]+', 'N', 'g');
END $$;
RESET ROLE;

-- Which statuses occupy a room: one definition, the predicate of the index
-- the C check scans.
SELECT s AS status, booking.status_occupies(s) AS occupies
  FROM unnest(ARRAY['confirmed', 'completed', 'cancelled']) s;
SELECT pg_get_expr(i.indpred, i.indrelid) AS conflict_index_predicate
  FROM pg_index i WHERE i.indexrelid = 'booking.bookings_room_occupying_idx'::regclass;

-- Every transition, in a past slot of its own per case (as a superuser,
-- as a batch job would): an existing booking in status "held" and a
-- newcomer overlapping it written as "becomes"; the write must fail exactly
-- when both occupy.
CREATE TEMP TABLE transition_outcomes (held text, becomes text, via text, outcome text);
DO $$
DECLARE
    held text;
    becomes text;
    via text;
    slot timestamptz := '2001-01-01 09:00+00';
    other bigint;
    room bigint := (SELECT id FROM booking.rooms WHERE name = 'Calendar Room');
    usr bigint := (SELECT id FROM booking.users WHERE email = 'cal.user@example.com');
BEGIN
    FOREACH held IN ARRAY ARRAY['confirmed', 'completed', 'cancelled'] LOOP
        FOREACH becomes IN ARRAY ARRAY['confirmed', 'completed', 'cancelled'] LOOP
            FOREACH via IN ARRAY ARRAY['insert', 'update from cancelled', 'update from completed', 'update from confirmed elsewhere'] LOOP
                slot := slot + interval '1 day';
                INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at, status)
                VALUES (room, usr, 'held', slot, slot + interval '1 hour', held);
                BEGIN
                    IF via = 'insert' THEN
                        INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at, status)
                        VALUES (room, usr, 'newcomer', slot + interval '30 minutes', slot + interval '90 minutes', becomes);
                    ELSIF via = 'update from confirmed elsewhere' THEN
                        INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at, status)
                        VALUES (room, usr, 'newcomer', slot + interval '12 hours', slot + interval '13 hours', 'confirmed')
                        RETURNING id INTO other;
                        UPDATE booking.bookings SET starts_at = slot + interval '30 minutes', ends_at = slot + interval '90 minutes',
                               status = becomes WHERE id = other;
                    ELSE
                        INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at, status)
                        VALUES (room, usr, 'newcomer', slot + interval '30 minutes', slot + interval '90 minutes',
                                CASE via WHEN 'update from cancelled' THEN 'cancelled' ELSE 'completed' END)
                        RETURNING id INTO other;
                        UPDATE booking.bookings SET status = becomes WHERE id = other;
                    END IF;
                    INSERT INTO transition_outcomes VALUES (held, becomes, via, 'written');
                EXCEPTION WHEN SQLSTATE 'PT409' THEN
                    INSERT INTO transition_outcomes VALUES (held, becomes, via, 'BOOKING_CONFLICT');
                END;
            END LOOP;
        END LOOP;
    END LOOP;
END $$;
-- Rows where the outcome is not what the definition says (must be none):
-- the write fails exactly when the held booking and the newcomer occupy,
-- where a newcomer first written as completed already occupies.
SELECT held, becomes, via, outcome FROM transition_outcomes
 WHERE (outcome = 'BOOKING_CONFLICT') <>
       (booking.status_occupies(held)
        AND (booking.status_occupies(becomes) OR via = 'update from completed'));
SELECT held, becomes, string_agg(DISTINCT outcome, ', ') AS outcomes FROM transition_outcomes GROUP BY 1, 2 ORDER BY 1, 2;
-- No two occupying bookings overlap anywhere.
SELECT count(*) AS overlapping_pairs
  FROM booking.bookings a JOIN booking.bookings b ON a.room_id = b.room_id AND a.id < b.id
 WHERE booking.status_occupies(a.status) AND booking.status_occupies(b.status)
   AND tstzrange(a.starts_at, a.ends_at) && tstzrange(b.starts_at, b.ends_at);
