#!/usr/bin/env bash
# Entrypoint of docker/postgres.Dockerfile.  The image is Debian's
# PostgreSQL, not the official postgres image, so this does the part of the
# official entrypoint the stack uses, with the same variables:
#   POSTGRES_USER, POSTGRES_PASSWORD  the superuser made by initdb
#   POSTGRES_DB                       the database made for the extension
# On an empty data folder (a new volume), and only then: initdb, then every
# /docker-entrypoint-initdb.d/*.sh against a server that listens on a
# private socket only (so nothing connects, and the health check fails,
# before the roles have their passwords), then the real server.
set -euo pipefail

say() { echo "pg_booking-entrypoint: $*" >&2; }

first_start() {
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is not set (see .env.example)}"
    export POSTGRES_USER=${POSTGRES_USER:-postgres} POSTGRES_DB=${POSTGRES_DB:-postgres}
    say "empty data folder $PGDATA: initdb and the /docker-entrypoint-initdb.d scripts"
    local pwfile sockdir pid final=$PGDATA
    # Built aside and renamed when complete: a first start that fails
    # half-way leaves no data folder that a later start would take as done.
    export PGDATA=$final.initializing
    rm -rf "$PGDATA"
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    # Local (socket) connections inside the container are trusted, as in the
    # official image; over the network every role needs its password.
    initdb -D "$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" --encoding=UTF8 \
        --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >>"$PGDATA/postgresql.auto.conf"

    sockdir=$(mktemp -d)
    shift # "postgres": the server below gets the image's settings too
    postgres -D "$PGDATA" "$@" -c listen_addresses= -c unix_socket_directories="$sockdir" &
    pid=$!
    export PGHOST=$sockdir
    for _ in $(seq 1 60); do
        pg_isready -q && break
        kill -0 "$pid" 2>/dev/null || { say "the server did not start"; exit 1; }
        sleep 1
    done
    pg_isready -q || { say "the server did not become ready in 60 s"; exit 1; }
    if [ "$POSTGRES_DB" != postgres ]; then
        echo 'CREATE DATABASE :"db"' |
            psql -X -v ON_ERROR_STOP=1 -q -d postgres -U "$POSTGRES_USER" -v db="$POSTGRES_DB" >/dev/null
    fi
    for f in /docker-entrypoint-initdb.d/*.sh; do
        [ -e "$f" ] || continue
        say "running $f"
        bash "$f"
    done
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    unset PGHOST
    rmdir "$sockdir"
    mv "$PGDATA" "$final"
    export PGDATA=$final
    say "first start done"
}

if [ "${1:-}" = postgres ]; then
    if [ -s "$PGDATA/PG_VERSION" ]; then
        say "data folder $PGDATA in use: no initdb, init scripts not run"
    else
        first_start "$@"
    fi
fi
exec "$@"
