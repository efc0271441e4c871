#!/usr/bin/env bash
# The HTTP adapter against pgbench calling the same SQL, in one invocation:
#   GET /bookings/{id}, POST /bookings and GET /rooms through wrk vs pgbench
#   (ratios), p99 latencies, GET /health alone (the adapter's own cost),
#   adapter RSS when idle (goal <= 16 MB), start to ready (goal <= 50 ms).
set -euo pipefail
source "$ROOT_DIR/scripts/bench_summary.sh"
dir=$(cd "$(dirname "$0")" && pwd)
secs=${BENCH_SECONDS:-5}
conns=${BENCH_CONNECTIONS:-8}
db=bench_adapter
port=${BENCH_HTTP_PORT:-56780}
src=${BENCH_WORK:?}/src/adapter
make -C "$src" -s -B pg_booking_adapter >/dev/null   # -B: never a binary copied from the checkout
bin=$src/pg_booking_adapter
secret='bench-secret-0123456789abcdef0123456789abcdef'

dropdb --if-exists $db 2>/dev/null; createdb $db
psql -X -q -d $db -v ON_ERROR_STOP=1 <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION pg_booking CASCADE;
INSERT INTO booking.rooms (name, location, capacity, amenities)
SELECT 'Room ' || i, 'HQ', 2 + i % 10, ARRAY['tv'] FROM generate_series(1, 100) i;
INSERT INTO booking.users (email, full_name, password_hash) VALUES ('bench@example.com', 'Bench', 'x');
-- pgbench -M prepared parses every statement at connection start, before
-- any role is set: let the authenticator see the schema (bench database only).
GRANT USAGE ON SCHEMA api, booking TO booking_authenticator;
-- One user books thousands of times a second here: exempt plain users from
-- the per-user limits (the limiter still runs its check on every call).
DO $$ BEGIN
  IF to_regclass('booking.rate_limits') IS NOT NULL THEN
    UPDATE booking.rate_limits SET exempt_roles = exempt_roles || '{user}';
  END IF; END $$;
SQL
# The booking GET /bookings/{id} reads: the bench user's own.
booking_id=$(psql -X -qAt -d $db -c "INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
    VALUES (1, 1, 'read me', '2099-01-01 10:00+00', '2099-01-01 11:00+00') RETURNING id")
export BENCH_TOKEN=$(psql -X -qAt -d $db -c "SELECT booking.sign_jwt(jsonb_build_object('sub', '1', 'role', 'booking_user',
    'exp', extract(epoch FROM now())::bigint + 3600))")

# Start to ready: fork the adapter and poll /ready (Perl: no process per poll).
adapter_pid_file=$BENCH_WORK/adapter.pid
start_ms=$(ADAPTER_JWT_SECRET=$secret ADAPTER_PORT=$port ADAPTER_POOL_SIZE=$conns ADAPTER_LOG_REQUESTS=false \
  ADAPTER_DB="host=$PGHOST port=$PGPORT dbname=$db user=booking_authenticator" \
  perl -MHTTP::Tiny -MTime::HiRes=time,usleep -e '
    my ($bin, $port, $pidfile) = @ARGV;
    my $t0 = time;
    my $pid = fork // die;
    if (!$pid) { open STDOUT, ">", "/dev/null"; exec $bin or die; }
    open my $f, ">", $pidfile; print $f $pid; close $f;
    my $h = HTTP::Tiny->new(timeout => 1);
    while (time - $t0 < 10) {
        my $r = $h->get("http://127.0.0.1:$port/ready");
        if ($r->{status} == 200) { printf "%.1f", (time - $t0) * 1000; exit 0; }
        usleep(500);
    }
    exit 1' "$bin" "$port" "$adapter_pid_file")
apid=$(cat "$adapter_pid_file")
trap 'kill -TERM $apid 2>/dev/null || true' EXIT
rss_kb() { awk '/VmRSS/ {print $2}' /proc/$apid/status; }
sleep 0.5
idle_rss=$(rss_kb)

h=http://127.0.0.1:$port
# The adapter's own CPU time (user + system, clock ticks), from /proc.
cpu_ticks() { awk '{print $14 + $15}' /proc/$apid/stat; }
hz=$(getconf CLK_TCK)
wrk_run() {   # wrk args... -> "rps p99 non2xx cpu_us_per_request"
    local c0 c1
    c0=$(cpu_ticks)
    wrk -t2 -c"$conns" -d"${secs}s" --latency "$@" 2>/dev/null > "$BENCH_WORK/wrk.out"
    c1=$(cpu_ticks)
    awk -v ticks=$((c1 - c0)) -v hz="$hz" '
        /requests in/ {n=$1}
        /Requests\/sec/ {rps=$2}
        /^ +99%/ {p=$2; if (p ~ /us$/) {sub(/us/,"",p); p=p/1000} else if (p ~ /ms$/) {sub(/ms/,"",p)} else if (p ~ /s$/) {sub(/s/,"",p); p=p*1000}; p99=p}
        /Non-2xx/ {bad=$NF}
        END {printf "%.0f %.2f %d %.0f", rps, p99, bad, (n > 0 ? ticks * 1e6 / hz / n : 0)}' "$BENCH_WORK/wrk.out"
}
pgb_run() {   # script -> "tps p99(ms)"
    local log=$BENCH_WORK/pgb_$(basename "$1" .sql)
    rm -rf "$log"; mkdir -p "$log"
    (cd "$log" && pgbench -n -M prepared -U booking_authenticator -c "$conns" -j 2 -T "$secs" -D n=$(( ${2:-0} * 100000 )) \
        -D booking="$booking_id" -l -f "$1" $db 2>/dev/null) \
        | awk '/^tps/ {printf "%.0f", $3}'
    printf ' %s' "$(cat "$log"/pgbench_log.* | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {printf "%.2f", a[int(NR*0.99)]/1000}')"
}

# Warm up first, as pgbench's figure leaves out its connection time: the
# pool connects lazily, so the first run would pay for its connections.
wrk -t2 -c"$conns" -d1s -H "Authorization: Bearer $BENCH_TOKEN" "$h/bookings/$booking_id" >/dev/null 2>&1 || true
# The runs take turns, round after round, so a change in the machine's
# load hits all of them alike; each figure is the median of the rounds.
rounds=${BENCH_ROUNDS:-3}
declare -A val
for r in $(seq 1 "$rounds"); do
    read -r a b c d <<<"$(wrk_run -H "Authorization: Bearer $BENCH_TOKEN" "$h/bookings/$booking_id")"
    val[wrk_get]+=" $a"; val[wrk_get_p99]+=" $b"; val[wrk_get_bad]+=" $c"; val[wrk_get_cpu]+=" $d"
    read -r a b <<<"$(pgb_run "$dir/adapter_get.sql")"
    val[pgb_get]+=" $a"; val[pgb_get_p99]+=" $b"
    read -r a b c d <<<"$(wrk_run "$h/health")"
    val[wrk_health]+=" $a"; val[wrk_health_p99]+=" $b"; val[wrk_health_cpu]+=" $d"
    read -r a b c d <<<"$(wrk_run -H "Authorization: Bearer $BENCH_TOKEN" "$h/rooms")"
    val[wrk_rooms]+=" $a"; val[wrk_rooms_p99]+=" $b"; val[wrk_rooms_bad]+=" $c"
    read -r a b <<<"$(pgb_run "$dir/adapter_rooms.sql")"
    val[pgb_rooms]+=" $a"; val[pgb_rooms_p99]+=" $b"
    read -r a b c d <<<"$(BENCH_ROUND=$r wrk_run -s "$dir/adapter_book.lua" "$h/bookings")"
    val[wrk_book]+=" $a"; val[wrk_book_p99]+=" $b"; val[wrk_book_bad]+=" $c"; val[wrk_book_cpu]+=" $d"
    read -r a b <<<"$(pgb_run "$dir/adapter_book.sql" "$r")"
    val[pgb_book]+=" $a"; val[pgb_book_p99]+=" $b"
done
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for k in "${!val[@]}"; do printf -v "$k" '%s' "$(median "${val[$k]}")"; done
busy_rss=$(rss_kb)
made=$(psql -X -qAt -d $db -c "SELECT count(*) FROM booking.bookings")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
printf '%-34s %10s %10s %8s   %s\n' "adapter vs pgbench ($conns conns, median of $rounds x ${secs}s)" "adapter/s" "pgbench/s" "ratio" "p99 adapter / pgbench"
printf '%-34s %10s %10s %8s   %s ms / %s ms  (non-2xx: %s)\n' "GET /bookings/{id}" "$wrk_get" "$pgb_get" \
    "$(ratio "$wrk_get" "$pgb_get")x" "$wrk_get_p99" "$pgb_get_p99" "${wrk_get_bad:-0}"
printf '%-34s %10s %10s %8s   %s ms\n' "GET /health (no database)" "$wrk_health" "-" "-" "$wrk_health_p99"
printf '%-34s %10s %10s %8s   %s ms / %s ms  (non-2xx: %s)\n' "GET /rooms (50 rooms)" "$wrk_rooms" "$pgb_rooms" \
    "$(ratio "$wrk_rooms" "$pgb_rooms")x" "$wrk_rooms_p99" "$pgb_rooms_p99" "${wrk_rooms_bad:-0}"
printf '%-34s %10s %10s %8s   %s ms / %s ms  (non-2xx: %s)\n' "POST /bookings" "$wrk_book" "$pgb_book" \
    "$(ratio "$wrk_book" "$pgb_book")x" "$wrk_book_p99" "$pgb_book_p99" "${wrk_book_bad:-0}"
summary_add adapter "GET /bookings/{id}, adapter / pgbench same SQL, req/s (x)" "$(ratio "$wrk_get" "$pgb_get")" ">= 0.8"
summary_add adapter "GET /bookings/{id}, p99 adapter / pgbench (x)" "$(ratio "$wrk_get_p99" "$pgb_get_p99")" "<= 2"
summary_add adapter "GET /health, req/s" "$wrk_health" "-"
# Less sensitive to the machine's other load than the ratios: the adapter's
# own CPU per answered request.
summary_add adapter "GET /bookings/{id}, adapter CPU per request (us)" "$wrk_get_cpu" "-"
summary_add adapter "POST /bookings, adapter CPU per request (us)" "$wrk_book_cpu" "-"
summary_add adapter "GET /health, adapter CPU per request (us)" "$wrk_health_cpu" "-"
summary_add adapter "GET /rooms, adapter / pgbench same SQL, req/s (x)" "$(ratio "$wrk_rooms" "$pgb_rooms")" ">= 0.8"
summary_add adapter "POST /bookings, adapter / pgbench same SQL, req/s (x)" "$(ratio "$wrk_book" "$pgb_book")" ">= 0.85"
summary_add adapter "POST /bookings, p99 adapter / pgbench (x)" "$(ratio "$wrk_book_p99" "$pgb_book_p99")" "<= 2"
summary_add adapter "GET /rooms, p99 adapter / pgbench (x)" "$(ratio "$wrk_rooms_p99" "$pgb_rooms_p99")" "<= 2"
summary_add adapter "idle RSS (MB)" "$((idle_rss / 1024)).$(( (idle_rss % 1024) * 10 / 1024 ))" "<= 16"
summary_add adapter "start to ready (ms)" "$start_ms" "<= 50"
echo "bookings written: $made"
echo "adapter start to ready: ${start_ms} ms (goal <= 50 ms)"
echo "adapter RSS: idle $((idle_rss / 1024)).$(( (idle_rss % 1024) * 10 / 1024 )) MB (goal <= 16 MB), after load $((busy_rss / 1024)) MB"
kill -TERM "$apid"; wait "$apid" 2>/dev/null || true
trap - EXIT
