#!/usr/bin/env bash
# make stop: stop the services and the cluster of make run.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$ROOT_DIR/scripts/run-env.sh"
for hook in "$ROOT_DIR"/scripts/stop.d/*.sh; do
    [ -e "$hook" ] && bash "$hook"
done
if [ -f "$RUN_DIR/data/PG_VERSION" ] && as_pg "$PG_BINDIR/pg_ctl" -D "$RUN_DIR/data" status >/dev/null 2>&1; then
    as_pg "$PG_BINDIR/pg_ctl" -D "$RUN_DIR/data" -m fast stop >/dev/null
    say "PostgreSQL stopped (data kept in $RUN_DIR/data)"
else
    say "nothing running"
fi
