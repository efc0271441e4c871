-- Passed nights stay held (issue 9): a change of a stay that goes on never
-- gives back a night before the hotels' today (booking.hotel_today());
-- shortening a begun stay releases future nights only.  The rule is in the
-- reservation trigger (extension/inventory.c), so every path obeys it.
\set SHOW_CONTEXT never
SELECT set_config('request.jwt.claims', '', false) = '' AS superuser_session;
-- Errors as SQLSTATE and error_code (their messages carry today's dates).
CREATE FUNCTION pg_temp.try(q text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    st text;
    det text;
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, det = PG_EXCEPTION_DETAIL;
    RETURN st || ' ' || coalesce(det::jsonb ->> 'error_code', '')
              || coalesce(' night=today' || ((det::jsonb ->> 'night')::date - booking.hotel_today())::text, '');
END
$$;
-- Rooms held per night, relative to today.
CREATE FUNCTION pg_temp.held(hotel bigint) RETURNS text
LANGUAGE sql AS $$
    SELECT string_agg(format('%s:%s', i.night - booking.hotel_today(), i.total - i.available), ' ' ORDER BY i.night)
      FROM booking.inventory i WHERE i.hotel_id = hotel AND i.room_type = 'double'
$$;

SELECT t_as('h.admin@hotel.test', 'booking_admin');
SET ROLE booking_admin;
SELECT api.create_hotel('Passed Nights Inn', 'Faro') ->> 'id' AS inn \gset
SELECT jsonb_array_length(api.adjust_inventory(:inn, 'double', to_char(booking.hotel_today() - 5, 'YYYY-MM-DD'),
                                               to_char(booking.hotel_today() + 5, 'YYYY-MM-DD'), total => 3)) AS nights;
-- Staff may book a stay that has begun: arrival three days ago, five nights.
SELECT api.create_reservation(:inn, 'double', 'Early Bird', to_char(booking.hotel_today() - 3, 'YYYY-MM-DD'), 5) ->> 'id' AS res \gset
SELECT pg_temp.held(:inn) AS held;

-- Shortening to end before today would give back passed nights: refused.
SELECT pg_temp.try(format($$SELECT api.update_reservation(%L, stay_length => 1)$$, :'res')) AS to_one_night;
SELECT pg_temp.try(format($$SELECT api.update_reservation(%L, stay_length => 2)$$, :'res')) AS ending_yesterday;
-- Moving the arrival of a begun stay gives back its passed nights: refused.
SELECT pg_temp.try(format($$SELECT api.update_reservation(%L, arrival_date => %L)$$, :'res', to_char(booking.hotel_today() + 1, 'YYYY-MM-DD'))) AS moved;
SELECT pg_temp.try(format($$SELECT api.update_reservation(%L, room_type => 'suite')$$, :'res')) AS other_type;
SELECT pg_temp.held(:inn) AS unchanged;
-- Ending today is allowed: only today's and tomorrow's nights come back.
SELECT api.update_reservation(:'res', stay_length => 3) ->> 'stay_length' AS shortened;
SELECT pg_temp.held(:inn) AS held;
RESET ROLE;
-- The same holds for a direct UPDATE in psql (the trigger is the rule).
SELECT pg_temp.try(format($$UPDATE booking.reservations SET stay_length = 1, held_until = arrival_date + 1 WHERE id = %L$$, :'res')) AS psql_update;
SELECT pg_temp.held(:inn) AS held;
-- Cancelling keeps the passed nights too (as in 1.0); nothing oversold.
SET ROLE booking_admin;
SELECT api.cancel_reservation(:'res') ->> 'status' AS status;
SELECT pg_temp.held(:inn) AS held;
RESET ROLE;
SELECT count(*) AS violations FROM booking.inventory_violations();
-- A stay in the future changes freely.
SET ROLE booking_admin;
SELECT api.create_reservation(:inn, 'double', 'Later Bird', to_char(booking.hotel_today() + 1, 'YYYY-MM-DD'), 3) ->> 'id' AS later \gset
SELECT api.update_reservation(:'later', stay_length => 1) ->> 'stay_length' AS future_shortened;
SELECT pg_temp.held(:inn) AS held;
RESET ROLE;
SELECT set_config('request.jwt.claims', '', false) = '' AS superuser_session;
