# Where the local cluster of make run lives.  The checkout's .run/ folder,
# unless the postgres user cannot reach it (a checkout under /root): then a
# folder under /var/tmp named after the checkout's path.
PGPORT=${PGPORT:-5433}
RUN_DIR="$ROOT_DIR/.run"
mkdir -p "$RUN_DIR"
if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$RUN_DIR" 2>/dev/null; then
    RUN_DIR="/var/tmp/pg_booking-run-$(printf '%s' "$ROOT_DIR" | md5sum | cut -c1-12)"
    printf '%s\n' "$RUN_DIR" > "$ROOT_DIR/.run/location"
fi
export PGPORT RUN_DIR
