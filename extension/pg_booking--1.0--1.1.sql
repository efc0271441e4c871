-- pg_booking 1.0 → 1.1.
--
-- Every change to the SQL of the extension after 1.0 goes here, in sections
-- by concern; the fresh install of 1.1 is 1.0 followed by this file
-- (Makefile), so both paths run the same statements.  Once 1.1 is released
-- this file is frozen like the 1.0 script.

\echo Use "ALTER EXTENSION pg_booking UPDATE TO '1.1'" to load this file. \quit

-- ==== backup: what pg_dump keeps (issue 8) ====
--
-- Every table of an extension belongs to it, so pg_dump writes only CREATE
-- EXTENSION and no rows, unless the table is registered here as
-- configuration (https://www.postgresql.org/docs/15/extend-extensions.html,
-- "Extension Configuration Tables").  The rule: a table holding what users
-- or operators wrote is dumped, and so is the sequence behind its identity
-- column (registered at the end of this section for every registered
-- table; pg_dump then writes its setval, so restored ids continue and are
-- never handed out twice).  Tables added later are registered in the
-- section that adds them; t/061_dump_restore.pl compares every table of the
-- extension after a dump and restore, so a forgotten one fails it.
--
-- Restoring runs no business trigger a second time: scripts/restore.sh runs
-- pg_restore with session_replication_role = replica, in which ordinary
-- (ENABLE ORIGIN) triggers do not fire, so a restored reservation does not
-- take its nights again, counters are not counted twice and no event is
-- written or announced again.  The rows come back exactly as they were
-- dumped, from one snapshot, so they are consistent with each other
-- (inventory with reservations, counters with bookings).  None of our
-- triggers may be ENABLE ALWAYS (the test checks); the one ENABLE REPLICA
-- trigger below only merges restored rate-limit rules.

-- People and their sessions.  Refresh tokens are stored hashed; dumping
-- them keeps users signed in across a restore and, above all, keeps revoked
-- tokens revoked.
SELECT pg_catalog.pg_extension_config_dump('booking.users', '');
SELECT pg_catalog.pg_extension_config_dump('booking.refresh_tokens', '');

-- Meeting rooms, their bookings, and the free time people published.
SELECT pg_catalog.pg_extension_config_dump('booking.rooms', '');
SELECT pg_catalog.pg_extension_config_dump('booking.bookings', '');
SELECT pg_catalog.pg_extension_config_dump('booking.user_availability', '');

-- Hotels.  inventory.available is kept by the reservations trigger; it is
-- dumped as it stands (same snapshot as the reservations), and the restore
-- does not run the trigger, so nights are neither taken nor given twice.
-- Reservation ids are uuids: no sequence.
SELECT pg_catalog.pg_extension_config_dump('booking.hotels', '');
SELECT pg_catalog.pg_extension_config_dump('booking.inventory', '');
SELECT pg_catalog.pg_extension_config_dump('booking.stay_restrictions', '');
SELECT pg_catalog.pg_extension_config_dump('booking.reservations', '');

-- The nightly checkout's history: "once per business day" is decided by
-- these rows, so without them a restored database would run every day
-- again.
SELECT pg_catalog.pg_extension_config_dump('booking.checkout_runs', '');

-- Reviews, votes and flags.
SELECT pg_catalog.pg_extension_config_dump('booking.reviews', '');
SELECT pg_catalog.pg_extension_config_dump('booking.review_votes', '');
SELECT pg_catalog.pg_extension_config_dump('booking.review_flags', '');

-- Analytics counters (derived: kept by the count_* triggers).  Dumped, not
-- rebuilt: they come from the same snapshot as the bookings and reviews they
-- count, the restore does not fire the triggers, so they are right as
-- restored (booking.analytics_check() says so) and a plain pg_restore with
-- our settings needs no extra step.
SELECT pg_catalog.pg_extension_config_dump('booking.room_booking_counts', '');
SELECT pg_catalog.pg_extension_config_dump('booking.room_rating_counts', '');

-- The events log: consumers resume after the last id they saw, so the rows
-- and the id sequence come back as they were.
SELECT pg_catalog.pg_extension_config_dump('booking.events', '');

-- Rate-limit rules.  CREATE EXTENSION seeds the default rules, so a restore
-- (which runs CREATE EXTENSION first) would collide with dumped copies of
-- them.  The seeded rows are marked and left out of the dump, so a restore
-- gets the defaults of the version it installs; a rule someone added or
-- edited (any change clears "seeded", trigger below) is dumped, and on
-- restore it replaces the row of its endpoint that CREATE EXTENSION just
-- made (rate_limits_restore, fired in replica mode only, i.e. by the
-- restore), so nothing collides even if a seed was not marked.  A section
-- below this one that seeds rules inserts them with seeded = true.  A
-- deleted default comes back with the next CREATE EXTENSION, so a restore
-- brings it back: to switch a default off, exempt the roles or raise its
-- limit instead (README, operations).
ALTER TABLE booking.rate_limits ADD COLUMN seeded boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN booking.rate_limits.seeded IS
'true for a default rule as an extension script made it (not dumped); any change of the rule clears it';
-- The seeds: the rows this script's own transaction wrote (a fresh install:
-- every row; an upgrade: those of the sections above), and the 1.0
-- defaults a database upgraded from 1.0 still has unedited.  Bookkeeping,
-- not a change of a rule: no trigger (validation, audit) is to see it.
DO $$
DECLARE
    prev text := current_setting('session_replication_role');
BEGIN
    PERFORM set_config('session_replication_role', 'replica', true);
    UPDATE booking.rate_limits l SET seeded = true
     WHERE l.xmin = pg_current_xact_id()::xid
        OR (l.endpoint, l.max_requests, l.window_length, l.key_kind, l.exempt_roles) IN (
               ('login',              5,  interval '10 seconds', 'ip',   '{}'::text[]),
               ('register',           10, interval '1 hour',     'ip',   '{}'),
               ('create_booking',     30, interval '1 minute',   'user', '{admin,service_account}'),
               ('create_reservation', 30, interval '1 minute',   'user', '{admin,service_account}'),
               ('create_review',      10, interval '1 hour',     'user', '{admin,service_account}'));
    PERFORM set_config('session_replication_role', prev, true);
END
$$;

CREATE FUNCTION booking.rate_limits_mark_edited() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF (NEW.endpoint, NEW.max_requests, NEW.window_length, NEW.key_kind, NEW.exempt_roles)
       IS DISTINCT FROM (OLD.endpoint, OLD.max_requests, OLD.window_length, OLD.key_kind, OLD.exempt_roles) THEN
        NEW.seeded := false;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION booking.rate_limits_mark_edited IS 'trigger: a rate-limit rule that is changed is no longer a seeded default, so pg_dump keeps it';
CREATE TRIGGER rate_limits_mark_edited BEFORE UPDATE ON booking.rate_limits
    FOR EACH ROW EXECUTE FUNCTION booking.rate_limits_mark_edited();

-- A dumped rule arriving in a restore replaces the rule of its endpoint
-- that CREATE EXTENSION made.  ENABLE REPLICA: it fires only with
-- session_replication_role = replica (the restore, or a logical
-- replication subscriber, where the same replacement is right), never for
-- an ordinary INSERT, which still fails on a duplicate endpoint.
CREATE FUNCTION booking.rate_limits_restore() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM booking.rate_limits l WHERE l.endpoint = NEW.endpoint;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION booking.rate_limits_restore IS 'trigger (restore only): a restored rate-limit rule replaces the rule CREATE EXTENSION made for its endpoint';
CREATE TRIGGER rate_limits_restore BEFORE INSERT ON booking.rate_limits
    FOR EACH ROW EXECUTE FUNCTION booking.rate_limits_restore();
ALTER TABLE booking.rate_limits ENABLE REPLICA TRIGGER rate_limits_restore;

-- Trigger functions: nobody calls them (the 1.0 rule: PUBLIC executes nothing).
REVOKE EXECUTE ON FUNCTION booking.rate_limits_mark_edited(), booking.rate_limits_restore() FROM PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('booking.rate_limits', 'WHERE NOT seeded');

-- The sequences behind the identity columns of every table registered so
-- far (here and in the sections above), so that restored ids continue and
-- none is handed out twice.  A section below this one registers its own.
DO $$
DECLARE
    seq regclass;
BEGIN
    FOR seq IN
        SELECT pg_get_serial_sequence(c.oid::regclass::text, a.attname)::regclass
          FROM pg_extension e
         CROSS JOIN LATERAL unnest(e.extconfig) AS cfg(oid)
          JOIN pg_class c ON c.oid = cfg.oid AND c.relkind IN ('r', 'p')
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         WHERE e.extname = 'pg_booking' AND pg_get_serial_sequence(c.oid::regclass::text, a.attname) IS NOT NULL
         ORDER BY c.oid::regclass::text, a.attnum
    LOOP
        PERFORM pg_catalog.pg_extension_config_dump(seq, '');
    END LOOP;
END
$$;
