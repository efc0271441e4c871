#!/usr/bin/env bash
# make test: everything CI runs.
#
# The checkout may sit where the postgres user cannot go (/root), and several
# test runs may share a machine, so each run copies the sources into a fresh
# folder the postgres user owns, builds there, installs into a private copy
# of the PostgreSQL installation (PostgreSQL finds its share and lib folders
# relative to its binaries), and runs pg_regress and the TAP tests against
# temporary instances of that copy.  The system installation is not touched.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

bash "$ROOT_DIR/scripts/deps.sh"

# Released install and upgrade scripts are frozen (Makefile: versions).
say "released SQL scripts unchanged"
(cd "$ROOT_DIR" && sha256sum --quiet -c extension/released.sha256)

work=$(mktemp -d /tmp/pg_booking-test.XXXXXX)
results="$ROOT_DIR/.test-results"
finish() {
    rc=$?
    rm -rf "$results"; mkdir -p "$results"
    for f in regression.diffs regression.out results tmp_check/log adapter/tmp_check; do
        [ -e "$work/src/$f" ] && cp -r "$work/src/$f" "$results/" 2>/dev/null || true
    done
    if [ $rc -ne 0 ]; then
        [ -f "$work/src/regression.diffs" ] && cat "$work/src/regression.diffs"
        echo "pg_booking: tests FAILED; logs in $results (work folder $work)" >&2
    else
        rm -rf "$work"
    fi
    exit $rc
}
trap finish EXIT

prepare_private_install "$work"
bindir="$work/pg/usr/lib/postgresql/$PG_MAJOR/bin"

say "make run's cluster admits no other OS user"
bash "$work/src/scripts/test-local-auth.sh" "$work" "$bindir"

say "pg_regress and TAP tests"
as_pg make -C "$work/src" installcheck bindir="$bindir" ${PROVE_TESTS:+PROVE_TESTS="$PROVE_TESTS"} ${PROVE_FLAGS:+PROVE_FLAGS="$PROVE_FLAGS"}

if [ -f "$work/src/adapter/Makefile" ]; then
    say "adapter tests"
    as_pg make -C "$work/src/adapter" test bindir="$bindir" PROVE_TESTS="${ADAPTER_PROVE_TESTS:-}"
fi
say "all tests passed"
