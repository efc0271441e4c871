-- pg_booking 1.0 → 1.1.
--
-- Every change to the SQL of the extension after 1.0 goes here, in sections
-- by concern; the fresh install of 1.1 is 1.0 followed by this file
-- (Makefile), so both paths run the same statements.  Once 1.1 is released
-- this file is frozen like the 1.0 script.

\echo Use "ALTER EXTENSION pg_booking UPDATE TO '1.1'" to load this file. \quit
