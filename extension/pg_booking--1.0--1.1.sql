-- pg_booking 1.0 → 1.1.
--
-- Every change to the SQL of the extension after 1.0 goes here, in sections
-- by concern; the fresh install of 1.1 is 1.0 followed by this file
-- (Makefile), so both paths run the same statements.  Once 1.1 is released
-- this file is frozen like the 1.0 script.

\echo Use "ALTER EXTENSION pg_booking UPDATE TO '1.1'" to load this file. \quit

-- ==== read replica (issue 8) ====
-- The adapter sends a GET to the read replica only when its function is
-- STABLE or IMMUTABLE (as PostgREST allows GET for those only).  The
-- rate-limit counters live in each server's shared memory, not in WAL: on a
-- replica they are the replica's, not the primary's.  The function that reads
-- them can change its answer within a statement too, so VOLATILE is its true
-- label, and that keeps GET /admin/analytics/rate-limits on the primary.
ALTER FUNCTION api.analytics_rate_limits() VOLATILE;
