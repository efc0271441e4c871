# Shared by the scripts: where things are, and running as the postgres user.
# PostgreSQL refuses to run as root; when we are root, servers, initdb and
# tests run as the "postgres" system user, in folders that user owns.

PG_MAJOR=15
PG_BINDIR=/usr/lib/postgresql/$PG_MAJOR/bin
ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Run a command as the postgres user (or as ourselves when not root).
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- env "PATH=$PATH" "$@"
    else
        "$@"
    fi
}

# Give a folder to the postgres user (when we are root).
give_to_pg() {
    if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$@"; fi
}

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
