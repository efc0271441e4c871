#!/usr/bin/env bash
# make run, the cluster: create (once) and start the local cluster in
# $RUN_DIR/data on port $PGPORT, with the extension in database "booking".
# Used by run.sh, and by scripts/test-local-auth.sh against a private
# installation (PG_BINDIR) and a scratch RUN_DIR.
#
# Secure by default, for any other user of this machine:
#   - $RUN_DIR is readable by its owner only: the socket, the server log, the
#     JWT secret and the adapter's password file are out of reach;
#   - the socket accepts the cluster's own OS user as "postgres" (peer) and
#     every other role with a password (scram-sha-256); TCP (localhost only)
#     takes scram-sha-256 for every role, and nothing without a password;
#   - booking_authenticator, the adapter's role, gets a generated password,
#     kept in $RUN_DIR/adapter.pgpass (a libpq passfile, 0600) and named by
#     the DSN in $RUN_DIR/adapter.dsn (0600): no password on a command line.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
: "${RUN_DIR:?}" "${PGPORT:?}"

# Whoever runs the server: postgres when we are root, else ourselves.
if [ "$(id -u)" = 0 ]; then cluster_user=postgres; else cluster_user=$(id -un); fi

secret_file() {   # secret_file PATH: 48 random bytes, base64 without / + =, owner only
    if [ ! -s "$1" ]; then
        ( umask 077; head -c 48 /dev/urandom | base64 | tr -d '\n/+=' > "$1" )
    fi
    chmod 600 "$1"
}

mkdir -p "$RUN_DIR"
chmod 700 "$RUN_DIR"
secret_file "$RUN_DIR/jwt_secret"
secret_file "$RUN_DIR/authenticator_password"
give_to_pg "$RUN_DIR"

if [ ! -f "$RUN_DIR/data/PG_VERSION" ]; then
    say "creating a cluster in $RUN_DIR/data"
    as_pg "$PG_BINDIR/initdb" -D "$RUN_DIR/data" -U postgres --auth-local=peer --auth-host=scram-sha-256 >/dev/null
    cat >> "$RUN_DIR/data/postgresql.conf" <<CONF

# pg_booking development cluster (scripts/run-cluster.sh)
port = $PGPORT
listen_addresses = 'localhost'
unix_socket_directories = '$RUN_DIR'
unix_socket_permissions = 0700
password_encryption = 'scram-sha-256'
shared_preload_libraries = 'pg_booking'
pg_booking.checkout_database = 'booking'
include_if_exists = 'secrets.conf'
# Business errors (a clash, a wrong password) are normal answers: the
# failing statement, which may carry a password or a guest name, is not
# copied into the log, nor are DETAIL lines (README: Security).
log_min_error_statement = fatal
log_error_verbosity = terse
# The adapter sets application_name to the request id per request: %a puts
# it on the lines of failed and slow statements (without parameter values).
log_line_prefix = '%m [%p] %q%u@%d app=%a '
log_min_duration_statement = 500
log_parameter_max_length = 0
CONF
fi
# Who may connect, rewritten on every start (a cluster made by an older make
# run had trust).  Order matters: the first matching line decides.
cat > "$RUN_DIR/data/pg_hba.conf" <<HBA
# pg_booking development cluster (scripts/run-cluster.sh): no trust anywhere.
local   all          postgres                       peer map=owner
local   all          all                            scram-sha-256
host    all          all         127.0.0.1/32       scram-sha-256
host    all          all         ::1/128            scram-sha-256
local   replication  postgres                       peer map=owner
host    replication  all         127.0.0.1/32       scram-sha-256
host    replication  all         ::1/128            scram-sha-256
HBA
printf 'owner  %s  postgres\n' "$cluster_user" > "$RUN_DIR/data/pg_ident.conf"
# The secret lives in a file only the cluster's user can read.
( umask 077; printf "pg_booking.jwt_secret = '%s'\n" "$(cat "$RUN_DIR/jwt_secret")" > "$RUN_DIR/data/secrets.conf" )
give_to_pg "$RUN_DIR"

if ! as_pg "$PG_BINDIR/pg_ctl" -D "$RUN_DIR/data" status >/dev/null 2>&1; then
    say "starting PostgreSQL on port $PGPORT"
    as_pg "$PG_BINDIR/pg_ctl" -D "$RUN_DIR/data" -l "$RUN_DIR/postgresql.log" -w start >/dev/null
else
    say "PostgreSQL already running on port $PGPORT; reloading settings"
    as_pg "$PG_BINDIR/pg_ctl" -D "$RUN_DIR/data" reload >/dev/null
fi
chmod 600 "$RUN_DIR/postgresql.log" 2>/dev/null || true

psql_run() { as_pg "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$RUN_DIR" -p "$PGPORT" -U postgres "$@"; }
if [ -z "$(psql_run -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'booking'")" ]; then
    psql_run -d postgres -c "CREATE DATABASE booking"
fi
psql_run -d booking -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS pg_booking CASCADE"

# The adapter's password: set from the file through psql's standard input
# (builtins only: it is on no command line), and handed to the adapter
# through a passfile.
{ echo "SET log_statement = 'none';"
  printf "ALTER ROLE booking_authenticator LOGIN PASSWORD '%s';\n" "$(cat "$RUN_DIR/authenticator_password")"
} | psql_run -d booking >/dev/null
( umask 077
  printf '*:%s:*:booking_authenticator:%s\n' "$PGPORT" "$(cat "$RUN_DIR/authenticator_password")" > "$RUN_DIR/adapter.pgpass"
  printf 'host=127.0.0.1 port=%s dbname=booking user=booking_authenticator passfile=%s\n' \
      "$PGPORT" "$RUN_DIR/adapter.pgpass" > "$RUN_DIR/adapter.dsn" )
chmod 600 "$RUN_DIR/adapter.pgpass" "$RUN_DIR/adapter.dsn"
give_to_pg "$RUN_DIR/adapter.pgpass" "$RUN_DIR/adapter.dsn"
