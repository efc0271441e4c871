#!/usr/bin/env bash
# make run: install what is missing, build and install the extension, start a
# local cluster (port $PGPORT, default 5433) with the extension and demo data.
# Running it again reuses the cluster.  RESET=1 starts from an empty one.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$ROOT_DIR/scripts/run-env.sh"

bash "$ROOT_DIR/scripts/deps.sh"

say "building and installing the extension"
make -C "$ROOT_DIR" -s all >/dev/null
make -C "$ROOT_DIR" -s install >/dev/null

if [ "${RESET:-}" = 1 ] && [ -d "$RUN_DIR/data" ]; then
    say "RESET=1: removing the cluster in $RUN_DIR"
    as_pg "$PG_BINDIR/pg_ctl" -D "$RUN_DIR/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$RUN_DIR/data"
fi

# The cluster, secure by default (scripts/run-cluster.sh: owner-only
# $RUN_DIR, peer/scram authentication, generated passwords).
bash "$ROOT_DIR/scripts/run-cluster.sh"

psql_run() { as_pg "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$RUN_DIR" -p "$PGPORT" -U postgres "$@"; }
say "loading demo data (idempotent)"
psql_run -d booking < "$ROOT_DIR/scripts/demo.sql" >/dev/null   # stdin: the checkout may be unreadable to postgres

# Further services started by make run (e.g. the HTTP adapter).
for hook in "$ROOT_DIR"/scripts/run.d/*.sh; do
    [ -e "$hook" ] && bash "$hook"
done

cat <<MSG

pg_booking is running.
  psql:     psql -h $RUN_DIR -p $PGPORT -U postgres booking
            (as root: runuser -u postgres -- psql -h $RUN_DIR -p $PGPORT booking)
  demo users (email / password / role):
$(psql_run -d booking -tAc "SELECT format('            %-40s %-26s %s', email, split_part(email, '@', 1) || '-demo-pw', role) FROM booking.users WHERE email LIKE '%@demo.pg-booking.test' ORDER BY id")
  try:      SELECT api.list_rooms();
            SELECT set_config('request.jwt.claims', '{"sub": "1", "role": "booking_user"}', false);
            SELECT api.create_booking(1, '2030-01-07T09:00:00Z', '2030-01-07T10:00:00Z', 'Planning');
  stop:     make stop
MSG
