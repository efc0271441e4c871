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

mkdir -p "$RUN_DIR"
give_to_pg "$RUN_DIR"
# A development secret for signing tokens, generated once, kept out of git.
if [ ! -s "$RUN_DIR/jwt_secret" ]; then
    umask 077
    head -c 48 /dev/urandom | base64 | tr -d '\n/+=' > "$RUN_DIR/jwt_secret"
    give_to_pg "$RUN_DIR/jwt_secret"
fi

if [ ! -f "$RUN_DIR/data/PG_VERSION" ]; then
    say "creating a cluster in $RUN_DIR/data"
    as_pg "$PG_BINDIR/initdb" -D "$RUN_DIR/data" -U postgres --auth-local=trust --auth-host=trust >/dev/null
    cat >> "$RUN_DIR/data/postgresql.conf" <<CONF

# pg_booking development cluster (scripts/run.sh)
port = $PGPORT
listen_addresses = 'localhost'
unix_socket_directories = '$RUN_DIR'
shared_preload_libraries = 'pg_booking'
pg_booking.checkout_database = 'booking'
include_if_exists = 'secrets.conf'
# Business errors (a clash, a wrong password) are normal answers: do not copy
# the failing statement, which may carry a password or a guest name, into
# the log.
log_min_error_statement = fatal
# The adapter sets application_name to the request id per request: %a puts
# it on the lines of failed and slow statements (without parameter values).
log_line_prefix = '%m [%p] %q%u@%d app=%a '
log_min_duration_statement = 500
log_parameter_max_length = 0
CONF
fi
# The secret lives in a file only the postgres user can read.
( umask 077; printf "pg_booking.jwt_secret = '%s'\n" "$(cat "$RUN_DIR/jwt_secret")" > "$RUN_DIR/data/secrets.conf" )
give_to_pg "$RUN_DIR/data/secrets.conf"

if ! as_pg "$PG_BINDIR/pg_ctl" -D "$RUN_DIR/data" status >/dev/null 2>&1; then
    say "starting PostgreSQL on port $PGPORT"
    as_pg "$PG_BINDIR/pg_ctl" -D "$RUN_DIR/data" -l "$RUN_DIR/postgresql.log" -w start >/dev/null
else
    say "PostgreSQL already running on port $PGPORT; reloading settings"
    as_pg "$PG_BINDIR/pg_ctl" -D "$RUN_DIR/data" reload >/dev/null
fi

psql_run() { as_pg "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$RUN_DIR" -p "$PGPORT" -U postgres "$@"; }
if [ -z "$(psql_run -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'booking'")" ]; then
    psql_run -d postgres -c "CREATE DATABASE booking"
fi
psql_run -d booking -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS pg_booking CASCADE"
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
