#!/usr/bin/env bash
# Citus for the tests (issue 16): make the `citus` extension available in the
# test suite's private PostgreSQL installation (scripts/lib.sh,
# prepare_private_install), or say clearly that the Citus tests will be
# skipped.
#
#   scripts/citus.sh <private installation root>     (the folder holding usr/)
#
# In order:
#   1. the installation already has a `citus` extension (a user who installed
#      Citus from its own packages, a copied system installation): use it;
#   2. CITUS_TARBALL names the Citus 13.2.2 source tarball (unset: the
#      shared one next to the checkout, ../shared/vendor or
#      ../../shared/vendor, when it exists): check its sha256, apply
#      CITUS_PATCH (the one-line fix for Debian's 15.20 headers; by default
#      the .patch next to the tarball), `./configure PG_CONFIG=<private
#      pg_config> && make -j2 && make install` into the installation.  The
#      installed files are cached under
#      ${PGB_CACHE_DIR:-~/.cache/pg_booking}/citus-13.2.2-<PostgreSQL version>/
#      and installed from there on later runs; a lock (bounded wait) keeps two
#      runs from building at once.
#   3. neither: the Citus tests are SKIPPED, and this says so (exit 0).
# A tarball that is given but does not check out or does not build is an
# error (exit 1): CI asked for Citus and must not silently lose it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

CITUS_VERSION=13.2.2
CITUS_SHA256=${CITUS_SHA256:-dc43c63e32a6c86456409dd5a54e2d76c73253b8f4026e689fbc3028a638d0ae}
LOCK_WAIT=${CITUS_LOCK_WAIT:-900}

root=${1:?usage: citus.sh <private installation root>}
root=$(cd "$root" && pwd)
pg_config="$root/usr/lib/postgresql/$PG_MAJOR/bin/pg_config"
[ -x "$pg_config" ] || { echo "citus.sh: no pg_config at $pg_config" >&2; exit 1; }
sharedir=$("$pg_config" --sharedir)
pkglibdir=$("$pg_config" --pkglibdir)

if [ -f "$sharedir/extension/citus.control" ] && [ -f "$pkglibdir/citus.so" ]; then
    say "citus: an installed citus extension is there ($(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$sharedir/extension/citus.control")); using it"
    exit 0
fi

# CITUS_TARBALL unset (not merely empty): the shared vendor tarball next to
# the checkout, when there is one.
if [ -z "${CITUS_TARBALL+set}" ]; then
    for d in "$ROOT_DIR/../shared/vendor" "$ROOT_DIR/../../shared/vendor"; do
        [ -f "$d/citus-$CITUS_VERSION.tar.gz" ] && { CITUS_TARBALL=$(cd "$d" && pwd)/citus-$CITUS_VERSION.tar.gz; break; }
    done
fi
if [ -z "${CITUS_TARBALL:-}" ]; then
    say "citus: no installed citus extension and CITUS_TARBALL is not set: the Citus tests (t/100_citus.pl, t/101_citus_*.pl) and bench/citus.sh will be SKIPPED"
    exit 0
fi
[ -f "$CITUS_TARBALL" ] || { echo "citus.sh: CITUS_TARBALL=$CITUS_TARBALL does not exist" >&2; exit 1; }
patch_file=${CITUS_PATCH:-$(dirname "$CITUS_TARBALL")/citus-$CITUS_VERSION-pg15.20.patch}

pg_version=$("$pg_config" --version | awk '{print $2}')
cache=${PGB_CACHE_DIR:-${HOME:-/root}/.cache/pg_booking}/citus-$CITUS_VERSION-$pg_version
mkdir -p "$(dirname "$cache")"

# Copy the cached files (paths relative to the installation root) in.  Only
# lib and share: the headers Citus installs are not needed to run it, and the
# build's include folder is a link to the system's (see below).
install_from_cache() {
    cp -a "$cache/tree/usr/lib/." "$root/usr/lib/"
    cp -a "$cache/tree/usr/share/." "$root/usr/share/"
    give_to_pg "$root/usr/lib" "$root/usr/share"
    say "citus: $CITUS_VERSION installed from the cache $cache"
}

exec 9>"$cache.lock"
if ! flock -w "$LOCK_WAIT" 9; then
    echo "citus.sh: another run has held $cache.lock for over $LOCK_WAIT s; giving up" >&2
    exit 1
fi
# The marker names the tarball and the patch the cache was built from.
patch_sha=none
[ -f "$patch_file" ] && patch_sha=$(sha256sum "$patch_file" | awk '{print $1}')
want="$CITUS_SHA256 $patch_sha"
if [ -f "$cache/complete" ] && [ "$(cat "$cache/complete")" = "$want" ]; then
    install_from_cache
    exit 0
fi

say "citus: building $CITUS_VERSION from $CITUS_TARBALL (cached in $cache afterwards)"
echo "$CITUS_SHA256  $CITUS_TARBALL" | sha256sum --quiet -c - || {
    echo "citus.sh: $CITUS_TARBALL does not have the sha256 $CITUS_SHA256" >&2; exit 1; }
build=$(mktemp -d /tmp/pg_booking-citus-build.XXXXXX)
trap 'rm -rf "$build"' EXIT
tar -C "$build" -xzf "$CITUS_TARBALL"
src="$build/citus-$CITUS_VERSION"
if [ -f "$patch_file" ]; then
    (cd "$src" && patch -s -p1 < "$patch_file")
else
    say "citus: no patch at $patch_file; building unpatched"
fi
# The private pg_config reports every folder relative to itself, the server
# headers included, and prepare_private_install copies lib and share only:
# the headers are the system's.
if [ ! -e "$root/usr/include/postgresql" ]; then
    mkdir -p "$root/usr/include"
    ln -s /usr/include/postgresql "$root/usr/include/postgresql"
fi
log="$build/build.log"
if ! (cd "$src" && ./configure PG_CONFIG="$pg_config" && make -j2 && make install DESTDIR="$build/stage") >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "citus.sh: building Citus failed (log above)" >&2
    exit 1
fi
rm -rf "$cache"
mkdir -p "$cache/tree/usr"
cp -a "$build/stage$root/usr/lib" "$build/stage$root/usr/share" "$cache/tree/usr/"
echo "$want" > "$cache/complete"
install_from_cache
