#!/usr/bin/env bash
# make restore FILE=<dump>: restore a dump of make backup (any pg_dump -Fc of
# a pg_booking database) into a new database.
#
#   FILE=...                   the dump (required)
#   DB=booking_restored        the database to create; if it exists, nothing
#                              is touched and the script stops (drop or
#                              rename it first, or choose another DB)
#   PGHOST, PGPORT             the server (default: the make run cluster)
#
# The restore runs pg_restore in one transaction (all or nothing) with
# session_replication_role = replica, which must be done by a superuser: in
# that mode ordinary triggers do not fire, so the restored rows are not run
# through the business triggers a second time (a reservation does not take
# its nights again, counters are not counted twice, no event is written or
# announced again).  The rows come back as pg_dump read them, from one
# snapshot.  Afterwards the invariants are checked: every night's inventory
# matches the reservations holding it, and the analytics counters match a
# recount; the script fails if not.
#
# The restored database is not the one make run serves (booking) unless you
# name it so: to put it in service, stop the adapter, rename the old
# database away and this one to booking (ALTER DATABASE ... RENAME TO).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$ROOT_DIR/scripts/run-env.sh"
FILE=${FILE:-}
DB=${DB:-booking_restored}
HOST=${PGHOST:-$RUN_DIR}

[ -n "$FILE" ] || { echo "pg_booking: give the dump to restore: make restore FILE=path/to/booking-....dump" >&2; exit 2; }
[ -r "$FILE" ] || { echo "pg_booking: cannot read $FILE" >&2; exit 2; }
psql_q() { as_pg "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$PGPORT" -U postgres "$@"; }

# The file is read by our shell and given on stdin: the postgres user need
# not be able to open the backup folder.
as_pg "$PG_BINDIR/pg_restore" --list < "$FILE" > /dev/null ||
    { echo "pg_booking: $FILE is not a pg_dump custom-format archive" >&2; exit 2; }
if [ -n "$(psql_q -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '${DB//\'/\'\'}'")" ]; then
    echo "pg_booking: database \"$DB\" already exists; nothing restored." >&2
    echo "  Choose another name (make restore FILE=... DB=name), or drop or rename it first." >&2
    exit 1
fi

say "creating database $DB (port $PGPORT)"
as_pg "$PG_BINDIR/createdb" -h "$HOST" -p "$PGPORT" -U postgres -T template0 "$DB"
say "restoring $FILE (one transaction, triggers off: session_replication_role = replica)"
if ! PGOPTIONS="${PGOPTIONS:-} -c session_replication_role=replica" \
     as_pg "$PG_BINDIR/pg_restore" -h "$HOST" -p "$PGPORT" -U postgres \
        --single-transaction --exit-on-error -d "$DB" < "$FILE"; then
    # Nothing was committed: drop the empty database we made.
    as_pg "$PG_BINDIR/dropdb" -h "$HOST" -p "$PGPORT" -U postgres "$DB" || true
    echo "pg_booking: restore failed; nothing restored (database $DB dropped again)" >&2
    exit 1
fi

say "checking the restored database"
bad=$(psql_q -d "$DB" -tAc "SELECT (SELECT count(*) FROM booking.inventory_violations())
                                 + (SELECT count(*) FROM booking.analytics_check())")
if [ "$bad" != 0 ]; then
    echo "pg_booking: the restored database $DB breaks $bad invariant(s):" >&2
    psql_q -d "$DB" -c "SELECT * FROM booking.inventory_violations()" -c "SELECT * FROM booking.analytics_check()" >&2
    echo "  It is kept for inspection; do not put it in service." >&2
    exit 1
fi
# pg_restore does not gather planner statistics.
psql_q -d "$DB" -c "ANALYZE"
psql_q -d "$DB" -c "SELECT c.relname AS \"table\", c.reltuples::bigint AS rows
                      FROM pg_depend d JOIN pg_class c ON c.oid = d.objid AND d.classid = 'pg_class'::regclass
                     WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_booking')
                       AND d.deptype = 'e' AND c.relkind = 'r' ORDER BY 1"
say "restored into database $DB"
