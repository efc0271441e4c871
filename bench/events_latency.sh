#!/usr/bin/env bash
# Commit to listener: how long after a booking commits does a client of the
# live event stream (GET /events, Accept: text/event-stream, through the
# adapter) read its event?  Writers commit bookings at a steady rate
# (pgbench -R, 8 clients, one insert per transaction); a Perl client reads
# the stream and, for every booking.created event, takes its arrival time
# minus the event's "at" (the queue row's clock_timestamp(), taken in the
# writer's statement just before its commit, so the figure slightly
# overstates the delay).  Same machine, same clock.  Goal (issue 11): p99
# <= 100 ms, and every committed booking's event arrives.
# Run by scripts/bench.sh (PGHOST, PGPORT, PGUSER, PATH, BENCH_WORK set).
set -euo pipefail
source "$ROOT_DIR/scripts/bench_summary.sh"
secs=${BENCH_SECONDS:-5}
rate=${BENCH_EVENT_RATE:-400}
[ "${BENCH_SIZE:-}" = tiny ] && { secs=1; rate=50; }
db=bench_events
port=$(( ${BENCH_HTTP_PORT:-56780} + 1 ))
src=${BENCH_WORK:?}/src/adapter
make -C "$src" -s pg_booking_adapter >/dev/null
bin=$src/pg_booking_adapter
secret='bench-secret-0123456789abcdef0123456789abcdef'

dropdb --if-exists $db 2>/dev/null; createdb $db
psql -X -q -d $db -v ON_ERROR_STOP=1 <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION pg_booking CASCADE;
INSERT INTO booking.rooms (name, location, capacity) SELECT 'Room ' || i, 'HQ', 8 FROM generate_series(1, 100) i;
INSERT INTO booking.users (email, full_name, password_hash, role) VALUES ('bench@example.com', 'Bench', 'x', 'admin');
SQL
# The events publisher (a background worker) serves pg_booking.checkout_database.
psql -X -q -d $db -c "ALTER SYSTEM SET pg_booking.checkout_database = '$db'" -c "SELECT pg_reload_conf()" >/dev/null
restore_settings() {
    psql -X -q -d postgres -c "ALTER SYSTEM RESET pg_booking.checkout_database" -c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
    [ -n "${apid:-}" ] && kill -TERM "$apid" 2>/dev/null || true
}
trap restore_settings EXIT
for _ in $(seq 1 100); do
    [ "$(psql -X -qAt -d postgres -c "SELECT count(*) FROM pg_stat_activity
         WHERE datname = '$db' AND backend_type = 'pg_booking events'")" = 1 ] && break
    sleep 0.1
done
[ "$(psql -X -qAt -d postgres -c "SELECT count(*) FROM pg_stat_activity
     WHERE datname = '$db' AND backend_type = 'pg_booking events'")" = 1 ] \
    || { echo "events_latency: the events publisher did not start in $db" >&2; exit 1; }

token=$(psql -X -qAt -d $db -c "SELECT booking.sign_jwt(jsonb_build_object('sub', '1', 'role', 'booking_admin',
    'exp', extract(epoch FROM now())::bigint + 3600))")
ADAPTER_JWT_SECRET=$secret ADAPTER_PORT=$port ADAPTER_POOL_SIZE=4 ADAPTER_LOG_REQUESTS=false \
  ADAPTER_DB="host=$PGHOST port=$PGPORT dbname=$db user=booking_authenticator" "$bin" >/dev/null 2>&1 &
apid=$!
for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break
    sleep 0.05
done

cat > "$BENCH_WORK/events_latency.sql" <<'PGB'
\set n random(1, 1000000000)
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
VALUES (1 + :n % 100, 1, 'latency', timestamptz '2400-01-01 00:00+00' + make_interval(mins => :n),
        timestamptz '2400-01-01 00:00+00' + make_interval(mins => :n + 1));
PGB

# The reader: connects, then reads for secs + 2 seconds (bounded), and
# prints "events p50_ms p99_ms max_ms".
out=$BENCH_WORK/events_latency.out
perl -MIO::Socket::INET -MTime::HiRes=time -MTime::Local=timegm -MJSON::PP -e '
    my ($port, $token, $secs) = @ARGV;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $port, Timeout => 5) or die "connect: $!";
    print $s "GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nAuthorization: Bearer $token\r\n\r\n";
    my @lat; my $end = time + $secs; my $buf = "";
    $s->blocking(0);
    while (time < $end) {
        my $rin = ""; vec($rin, fileno($s), 1) = 1;
        select(my $rout = $rin, undef, undef, 0.05) or next;
        my $n = sysread($s, my $chunk, 65536);
        last if defined $n && $n == 0;
        next unless $n;
        my $now = time;
        $buf .= $chunk;
        while ($buf =~ s/^([^\n]*)\n//) {
            my $line = $1;
            next unless $line =~ /^data: (\{.*)/;
            my $e = eval { decode_json($1) } or next;
            next unless ($e->{kind} // "") eq "booking.created";
            $e->{at} =~ /^(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)(\.\d+)?(?:Z|([+-])(\d+):(\d+))$/ or next;
            my $t = timegm($6, $5, $4, $3, $2 - 1, $1) + ($7 // 0);
            $t -= ($8 eq "+" ? 1 : -1) * ($9 * 3600 + $10 * 60) if defined $8;
            push @lat, ($now - $t) * 1000;
        }
    }
    my @s = sort { $a <=> $b } @lat;
    my $q = sub { @s ? $s[int($_[0] * $#s + 0.5)] : 0 };
    printf "%d %.1f %.1f %.1f\n", scalar @s, $q->(0.5), $q->(0.99), @s ? $s[-1] : 0;
' "$port" "$token" "$((secs + 2))" > "$out" &
reader=$!
sleep 0.5
pgbench -n -c 8 -j 2 -R "$rate" -T "$secs" -f "$BENCH_WORK/events_latency.sql" $db >/dev/null 2>&1
wait $reader
read -r got p50 p99 max < "$out"
committed=$(psql -X -qAt -d $db -c "SELECT count(*) FROM booking.bookings WHERE title = 'latency'")
printf '%-44s %s\n' "commit to SSE client (8 writers, $rate/s, ${secs}s)" \
    "events read $got of $committed committed; p50 $p50 ms, p99 $p99 ms, max $max ms (goal p99 <= 100 ms)"
summary_add events "commit to SSE client, p99 (ms)" "$p99" "<= 100"
summary_add events "committed bookings whose event the stream delivered (%)" \
    "$(awk -v a="$got" -v b="$committed" 'BEGIN {printf "%.1f", (b > 0 ? 100 * a / b : 0)}')" ">= 100"
