#!/usr/bin/env bash
# make test, as root: the cluster of make run (scripts/run-cluster.sh) lets
# no other OS user in.  It is made in a scratch folder with the private
# installation, then the unprivileged user "nobody" tries every role over
# TCP and the socket, and every file that holds a secret; each must fail.
# Controls that the test can fail: the cluster's own user connects by peer,
# the adapter's DSN connects with its passfile, and nobody *with* the
# password connects (so the refusals are the authentication, not a typo).
#   test-local-auth.sh WORK BINDIR
set -euo pipefail
source "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || { echo "local auth: skipped (needs root to act as nobody)"; exit 0; }
work=$1
export PG_BINDIR=$2
export RUN_DIR="$work/run-auth"
psql=/usr/lib/postgresql/$PG_MAJOR/bin/psql
passed=0 failed=0
result() {   # result OK|FAIL description
    if [ "$1" = OK ]; then passed=$((passed + 1)); echo "ok - $2"
    else failed=$((failed + 1)); echo "not ok - $2"; fi
}
works()   { local d=$1; shift; if "$@" >/dev/null 2>&1; then result OK "$d"; else result FAIL "$d"; fi; }
refused() { local d=$1; shift; if "$@" >/dev/null 2>&1; then result FAIL "$d"; else result OK "$d"; fi; }
as_nobody() { runuser -u nobody -- env -i PATH=/usr/bin:/bin HOME=/nonexistent "$@"; }
stop() { as_pg "$PG_BINDIR/pg_ctl" -D "$RUN_DIR/data" -m immediate stop >/dev/null 2>&1 || true; }
trap stop EXIT

# A free port (another test run may take one meanwhile: try a few).
for attempt in 1 2 3 4 5; do
    export PGPORT=$((54300 + RANDOM % 600))
    ss -ltnH "sport = :$PGPORT" | grep -q . && continue
    rm -rf "$RUN_DIR"
    if bash "$(dirname "$0")/run-cluster.sh" >/dev/null 2>&1; then break; fi
    stop
    [ "$attempt" = 5 ] && { echo "local auth: the cluster did not start" >&2; cat "$RUN_DIR/postgresql.log" >&2; exit 1; }
done

for role in postgres booking_authenticator booking_admin booking_user booking_grafana nobody; do
    refused "nobody cannot connect over TCP as $role" \
        as_nobody "$psql" -X -w -h 127.0.0.1 -p "$PGPORT" -U "$role" -d booking -c 'SELECT 1'
    refused "nobody cannot connect over the socket as $role" \
        as_nobody "$psql" -X -w -h "$RUN_DIR" -p "$PGPORT" -U "$role" -d booking -c 'SELECT 1'
done
for f in jwt_secret authenticator_password adapter.pgpass adapter.dsn data/secrets.conf data/postgresql.conf \
         postgresql.log; do
    [ -e "$RUN_DIR/$f" ] || { result FAIL "$f exists"; continue; }
    refused "nobody cannot read $f" as_nobody cat "$RUN_DIR/$f"
done
refused "nobody cannot list the run folder" as_nobody ls "$RUN_DIR"
[ "$(stat -c %a "$RUN_DIR")" = 700 ] && result OK "the run folder is 0700" || result FAIL "the run folder is 0700"
grep -Eqv '^\s*(#|$)' "$RUN_DIR/data/pg_hba.conf" && ! grep -Eq '^\s*[^#].*\btrust\b' "$RUN_DIR/data/pg_hba.conf" \
    && result OK "pg_hba.conf has no trust line" || result FAIL "pg_hba.conf has no trust line"

works "the cluster's user connects by peer" \
    as_pg "$psql" -X -w -h "$RUN_DIR" -p "$PGPORT" -U postgres -d booking -c 'SELECT 1'
works "the adapter's DSN connects with its passfile" "$psql" "$(cat "$RUN_DIR/adapter.dsn")" -X -w -c 'SELECT 1'
works "nobody with the password connects over TCP (control)" \
    as_nobody env PGPASSWORD="$(cat "$RUN_DIR/authenticator_password")" \
    "$psql" -X -w -h 127.0.0.1 -p "$PGPORT" -U booking_authenticator -d booking -c 'SELECT 1'
refused "the authenticator cannot read the JWT secret" \
    "$psql" "$(cat "$RUN_DIR/adapter.dsn")" -X -w -v ON_ERROR_STOP=1 -c 'SHOW pg_booking.jwt_secret'
echo "local auth: $passed passed, $failed failed"
[ "$failed" = 0 ]
