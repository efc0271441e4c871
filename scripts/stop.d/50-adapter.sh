#!/usr/bin/env bash
# make stop: the HTTP adapter drains its requests on SIGTERM and exits.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
source "$ROOT_DIR/scripts/run-env.sh"
pidfile="$RUN_DIR/adapter.pid"
[ -f "$pidfile" ] || exit 0
pid=$(cat "$pidfile")
if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    say "HTTP adapter stopped"
fi
rm -f "$pidfile"
