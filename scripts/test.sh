#!/usr/bin/env bash
# make test: everything CI runs (SKIP_BENCH=1: without the tiny benchmark
# run at the end).
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

say "every file the README, docs/ and the sources name exists"
bash "$ROOT_DIR/scripts/check-references.sh"

# Every psql example of the README runs as sql/91_readme_psql.sql.
say "README's psql examples are in sql/91_readme_psql.sql"
bash "$ROOT_DIR/scripts/readme-sql.sh" --check

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

# Citus for t/100_citus.pl, t/101_citus_*.pl and adapter/t/054_adapter_citus.pl (scripts/citus.sh): an installed one, else built
# from CITUS_TARBALL (default: the shared vendor tarball when there is one),
# else that test is skipped.  Not for a subset run that leaves t/100 out.
if [ -z "${PROVE_TESTS:-}" ] || [[ "${PROVE_TESTS:-}${ADAPTER_PROVE_TESTS:-}" == *_citus* ]]; then
    bash "$ROOT_DIR/scripts/citus.sh" "$work/pg"
fi

# Clients no one here wrote (OpenAPI validators, PostgREST's JavaScript
# client), pinned in test/node/package-lock.json; the adapter's tests use them.
say "npm ci (test/node)"
command -v npm >/dev/null || { echo "pg_booking: node and npm are needed for the adapter's tests" >&2; exit 1; }
(cd "$work/src/test/node" && npm ci --no-audit --no-fund --loglevel=error)
give_to_pg "$work/src/test/node"
say "make run's cluster admits no other OS user"
bash "$work/src/scripts/test-local-auth.sh" "$work" "$bindir"

say "pg_regress and TAP tests"
as_pg make -C "$work/src" installcheck bindir="$bindir" ${PROVE_TESTS:+PROVE_TESTS="$PROVE_TESTS"} ${PROVE_FLAGS:+PROVE_FLAGS="$PROVE_FLAGS"}

if [ -f "$work/src/adapter/Makefile" ]; then
    say "adapter tests"
    as_pg make -C "$work/src/adapter" test bindir="$bindir" PROVE_TESTS="${ADAPTER_PROVE_TESTS:-}"
fi
# Every benchmark script once, on a tiny size: proves they still run (the
# figures mean nothing at that size; make bench measures).  Own ports, so a
# make bench or another test run on the machine is not in the way.
if [ "${SKIP_BENCH:-}" != 1 ]; then
    say "benchmark scripts, tiny size"
    BENCH_SIZE=tiny BENCH_PORT=$((40000 + $$ % 5000)) BENCH_HTTP_PORT=$((45000 + $$ % 5000)) \
        bash "$ROOT_DIR/scripts/bench.sh"
fi
# The container stack (scripts/compose-test.sh) when podman is there or can
# be installed (as root); not for a subset run unless asked for.
# PGB_COMPOSE_TEST=1 forces it, 0 skips it.
compose=${PGB_COMPOSE_TEST:-auto}
if [ "$compose" = auto ]; then
    if [ -n "${PROVE_TESTS:-}${ADAPTER_PROVE_TESTS:-}" ]; then
        compose=0; echo "compose test skipped: a subset of the tests was asked for (PGB_COMPOSE_TEST=1 runs it)"
    elif command -v podman >/dev/null || [ "$(id -u)" = 0 ]; then
        compose=1
    else
        compose=0; echo "compose test skipped: no podman, and not root to install it"
    fi
fi
if [ "$compose" = 1 ]; then
    say "compose stack under podman"
    bash "$ROOT_DIR/scripts/compose-test.sh"
fi
say "all tests passed"
