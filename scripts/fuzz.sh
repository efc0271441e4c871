#!/usr/bin/env bash
# make fuzz: the adapter's HTTP edge under FUZZ_REQUESTS (default 50000)
# mutated requests from FUZZ_SEED, on a private installation as make test
# builds one (adapter/t/044; make test runs the same test with 3000).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

bash "$ROOT_DIR/scripts/deps.sh"
work=$(mktemp -d /tmp/pg_booking-fuzz.XXXXXX)
trap 'rc=$?; [ $rc -eq 0 ] && rm -rf "$work" || echo "pg_booking: fuzz FAILED; logs in $work/src/adapter/tmp_check" >&2; exit $rc' EXIT
prepare_private_install "$work"
bindir="$work/pg/usr/lib/postgresql/$PG_MAJOR/bin"
say "fuzzing the adapter (${FUZZ_REQUESTS:-50000} requests)"
as_pg make -C "$work/src/adapter" fuzz bindir="$bindir" FUZZ_REQUESTS="${FUZZ_REQUESTS:-50000}" ${FUZZ_SEED:+FUZZ_SEED="$FUZZ_SEED"}
