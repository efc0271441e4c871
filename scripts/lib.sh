# Shared by the scripts: where things are, and running as the postgres user.
# PostgreSQL refuses to run as root; when we are root, servers, initdb and
# tests run as the "postgres" system user, in folders that user owns.

PG_MAJOR=15
PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/$PG_MAJOR/bin}
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

# Copy the sources into $1/src (a folder the postgres user owns), build there
# with warnings as errors, and make $1/pg a private copy of the PostgreSQL
# installation with the extension installed.  PostgreSQL finds its share and
# lib folders relative to its binaries, so $1/pg/usr/lib/postgresql/15/bin
# runs with our extension while the system installation stays untouched.
prepare_private_install() {
    local work=$1
    say "copying sources to $work"
    mkdir -p "$work/src"
    tar -C "$ROOT_DIR" --exclude=./.git --exclude=./.run --exclude=./.test-results \
        --exclude='*.o' --exclude='*.so' --exclude='*.bc' --exclude=./tmp_check --exclude=./tmp_regress \
        --exclude=./results --exclude=node_modules -cf - . | tar -C "$work/src" -xf -
    give_to_pg "$work"
    say "building (warnings are errors)"
    as_pg make -C "$work/src" -s PG_WERROR=1 all
    as_pg make -C "$work/src" -s install DESTDIR="$work/stage" >/dev/null
    say "private PostgreSQL installation"
    mkdir -p "$work/pg/usr/lib/postgresql" "$work/pg/usr/share/postgresql"
    cp -a "/usr/lib/postgresql/$PG_MAJOR" "$work/pg/usr/lib/postgresql/"
    cp -a "/usr/share/postgresql/$PG_MAJOR" "$work/pg/usr/share/postgresql/"
    cp -a --remove-destination "$work/stage/usr/." "$work/pg/usr/"
    give_to_pg "$work/pg"
}
