#!/usr/bin/env bash
# make backup: a custom-format dump (pg_dump -Fc) of the database of make run,
# with a timestamped name, in a folder only its owner can read.
#
#   DB=booking                 the database to dump
#   BACKUP_DIR=$RUN_DIR/backups  where the files go (made 0700; files 0600)
#   PGHOST, PGPORT             the server (default: the make run cluster)
#
# Writes <DB>-<UTC time>.dump and, next to it, <DB>-<UTC time>.globals.sql
# (pg_dumpall --globals-only: the roles, which live outside any database and
# which a dump of one database does not hold).  The dump is written under a
# temporary name and renamed once pg_restore can read its table of contents,
# so a file with the final name is a complete archive.  The last line printed
# is the dump's path.  Restore with: make restore FILE=<that path>.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$ROOT_DIR/scripts/run-env.sh"
DB=${DB:-booking}
HOST=${PGHOST:-$RUN_DIR}
BACKUP_DIR=${BACKUP_DIR:-$RUN_DIR/backups}

umask 077
mkdir -p "$BACKUP_DIR"
chmod 700 "$BACKUP_DIR"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
dump="$BACKUP_DIR/$DB-$stamp.dump"
globals="$BACKUP_DIR/$DB-$stamp.globals.sql"
[ -e "$dump" ] && { echo "pg_booking: $dump already exists" >&2; exit 1; }
trap 'rm -f "$dump.partial" "$globals.partial"' EXIT

say "dumping database $DB (port $PGPORT) to $dump"
# pg_dump reads everything in one repeatable-read snapshot: the counters,
# inventory and events it writes agree with the bookings and reservations.
# Our shell writes the file, so the postgres user needs no access to it.
as_pg "$PG_BINDIR/pg_dump" -h "$HOST" -p "$PGPORT" -U postgres -Fc -d "$DB" > "$dump.partial"
as_pg "$PG_BINDIR/pg_restore" --list < "$dump.partial" > /dev/null
as_pg "$PG_BINDIR/pg_dumpall" -h "$HOST" -p "$PGPORT" -U postgres --globals-only > "$globals.partial"
mv "$globals.partial" "$globals"
mv "$dump.partial" "$dump"
say "backup written ($(du -h "$dump" | cut -f1)); roles in $globals"
echo "$dump"
