#!/usr/bin/env bash
# make bench: build a private installation, start one temporary cluster, and
# run every bench/*.sh against it, in name order.  Each benchmark measures a
# baseline in the same invocation and prints ratios, never bare timings.
#   BENCH=bookings make bench     runs only bench/bookings*.sh
#   BENCH_SIZE=tiny make bench    each script once on a tiny size (CI: make
#                                 test runs this, to prove the scripts work)
# At the end, one table of every figure the scripts reported
# (scripts/bench_summary.sh), so runs can be compared line by line.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/bench_summary.sh"
if [ "${BENCH_SIZE:-}" = tiny ]; then
    export BENCH_SECONDS=1 BENCH_ROUNDS=1 BENCH_BOOKINGS=20000 BENCH_READS=3 BENCH_INSERTS=500 \
           BENCH_CHECKS=5000 BENCH_STAYS=5000 CHECKOUT_WINDOW=3
fi

EXTRA_PACKAGES="wrk" bash "$ROOT_DIR/scripts/deps.sh"

work=$(mktemp -d /tmp/pg_booking-bench.XXXXXX)
export BENCH_WORK=$work
export BENCH_PORT=${BENCH_PORT:-55432}
prepare_private_install "$work"
# Citus for bench/citus.sh (scripts/citus.sh: an installed one, the
# CITUS_TARBALL build, cached; or that benchmark says it is skipped).
if [ -z "${BENCH:-}" ] || [[ citus == "$BENCH"* ]]; then
    bash "$ROOT_DIR/scripts/citus.sh" "$work/pg"
fi
mkdir -p "$work/summary.d"; give_to_pg "$work/summary.d"
export BENCH_BINDIR="$work/pg/usr/lib/postgresql/$PG_MAJOR/bin"
stop_cluster() {
    as_pg "$BENCH_BINDIR/pg_ctl" -D "$work/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap stop_cluster EXIT

say "temporary cluster on port $BENCH_PORT"
as_pg "$BENCH_BINDIR/initdb" -D "$work/data" -A trust -U postgres >/dev/null
cat >> "$work/data/postgresql.conf" <<CONF
port = $BENCH_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$work'
shared_preload_libraries = 'pg_booking'
pg_booking.jwt_secret = 'bench-secret-0123456789abcdef0123456789abcdef'
max_connections = 200
shared_buffers = 512MB
# Commits do not wait for the disk, so the figures compare the CPU cost of
# the code under test rather than the fsync latency of this machine.
synchronous_commit = off
CONF
as_pg "$BENCH_BINDIR/pg_ctl" -D "$work/data" -l "$work/server.log" -w start >/dev/null || { tail -20 "$work/server.log" >&2; exit 1; }
export PGHOST=$work PGPORT=$BENCH_PORT PGUSER=postgres
export PATH="$BENCH_BINDIR:$PATH"

# The benchmarks' own settings (BENCH_*, CHECKOUT_WINDOW) go through.
settings=()
for v in $(compgen -e | grep -E '^(BENCH_|CHECKOUT_WINDOW$)'); do settings+=("$v=${!v}"); done
failed=()
# The scripts run as postgres, from the copy of the tree it owns (the
# checkout may sit where that user cannot go, such as /root).
for b in "$work/src"/bench/${BENCH:-}*.sh; do
    [ -e "$b" ] || continue
    say "bench: $(basename "$b")"
    as_pg env PATH="$PATH" PGHOST="$PGHOST" PGPORT="$PGPORT" PGUSER="$PGUSER" ROOT_DIR="$work/src" "${settings[@]}" \
        bash "$b" || failed+=("$(basename "$b")")
done
say "summary${BENCH_SIZE:+ (BENCH_SIZE=$BENCH_SIZE: the figures prove the scripts run, nothing more)}"
summary_print
if [ ${#failed[@]} -gt 0 ]; then
    echo "benchmark scripts that failed: ${failed[*]}" >&2
    exit 1
fi
