#!/usr/bin/env bash
# Bookings per second through a Citus coordinator with two workers vs one
# node (issue 16), on this one machine: 8 pgbench clients, each transaction
# one api.create_booking (claims, rate limit, conflict check, counters,
# events) into 50 rooms, random 1-2 h bookings over years, so clashes are
# rare.  The single node is the bench's own cluster; the three Citus nodes
# are started here (citus before pg_booking, the extension distributed by
# booking.distribute()).  All four share the machine's 2 cores, so the ratio
# says what the distributed path costs per booking, not what more machines
# would give (docs/citus.md, "The plan for N workers").  The two take turns
# round after round; the figure is the median of the rounds' ratios.
# Without a citus extension in the installation the benchmark says it is
# skipped and reports nothing.
set -euo pipefail
source "$ROOT_DIR/scripts/bench_summary.sh"
secs=${BENCH_SECONDS:-8}
rounds=${BENCH_ROUNDS:-3}
sharedir=$(pg_config --sharedir)
if [ ! -f "$sharedir/extension/citus.control" ]; then
    echo "citus: SKIPPED, no citus extension in this installation ($sharedir/extension/citus.control; scripts/citus.sh installs one)"
    exit 0
fi

base=$BENCH_WORK/citus
mkdir -p "$base"
ports=($((PGPORT + 11)) $((PGPORT + 12)) $((PGPORT + 13)))   # coordinator, worker 1, worker 2
stop_nodes() {
    for i in 0 1 2; do pg_ctl -D "$base/node$i" -m fast stop >/dev/null 2>&1 || true; done
}
trap stop_nodes EXIT
for i in 0 1 2; do
    initdb -D "$base/node$i" -A trust -U postgres >/dev/null
    cat >> "$base/node$i/postgresql.conf" <<CONF
port = ${ports[$i]}
listen_addresses = ''
unix_socket_directories = '$base'
shared_preload_libraries = 'citus,pg_booking'
pg_booking.jwt_secret = 'bench-secret-0123456789abcdef0123456789abcdef'
max_connections = 100
max_prepared_transactions = 100
shared_buffers = 128MB
synchronous_commit = off
citus.shard_count = 8
CONF
    pg_ctl -D "$base/node$i" -l "$base/node$i.log" -w start >/dev/null || { tail -20 "$base/node$i.log" >&2; exit 1; }
    psql -X -q -h "$base" -p "${ports[$i]}" -d postgres -v ON_ERROR_STOP=1 \
        -c "SET client_min_messages = warning" -c "CREATE EXTENSION citus" -c "CREATE EXTENSION pg_booking CASCADE"
done
coord=(-h "$base" -p "${ports[0]}" -d postgres)
psql -X -q "${coord[@]}" -v ON_ERROR_STOP=1 -c "SELECT citus_set_coordinator_host('$base', ${ports[0]})" \
    -c "SELECT citus_add_node('$base', ${ports[1]})" -c "SELECT citus_add_node('$base', ${ports[2]})" >/dev/null

single=(-d bench_citus_single)
dropdb --if-exists bench_citus_single 2>/dev/null; createdb bench_citus_single
psql -X -q "${single[@]}" -v ON_ERROR_STOP=1 -c "SET client_min_messages = warning" -c "CREATE EXTENSION pg_booking CASCADE"
# The same rooms, people and wrapper on both (the wrapper catches the rare
# clash: pgbench would stop a client at the first error).
setup="
INSERT INTO booking.rooms (name, location, capacity) SELECT 'Room ' || i, 'HQ', 8 FROM generate_series(1, 50) i;
INSERT INTO booking.users (email, full_name, password_hash, role)
SELECT 'bench' || i || '@example.com', 'Bench ' || i, 'x', 'admin' FROM generate_series(1, 16) i;
CREATE FUNCTION bench_book(client integer, room integer, slot integer, minutes integer) RETURNS void
LANGUAGE plpgsql AS \$\$
BEGIN
    PERFORM set_config('request.jwt.claims', json_build_object('sub', client::text, 'role', 'booking_admin')::text, true);
    PERFORM api.create_booking(room, to_json(timestamptz '2099-01-01 00:00+00' + make_interval(mins => 15 * slot)) #>> '{}',
                               to_json(timestamptz '2099-01-01 00:00+00' + make_interval(mins => 15 * slot + minutes)) #>> '{}',
                               'bench');
EXCEPTION WHEN SQLSTATE 'PT409' THEN
    NULL;
END
\$\$;"
psql -X -q "${single[@]}" -v ON_ERROR_STOP=1 -c "$setup"
psql -X -q "${coord[@]}" -v ON_ERROR_STOP=1 -c "$setup"
psql -X -q "${coord[@]}" -v ON_ERROR_STOP=1 -c "SET client_min_messages = warning" \
    -c "SELECT count(*) FROM booking.distribute()" >/dev/null
placed=$(psql -X -qAt "${coord[@]}" -c "SELECT count(DISTINCT p.nodeport) FROM pg_dist_shard s JOIN pg_dist_shard_placement p USING (shardid)
                                        WHERE s.logicalrelid = 'booking.bookings'::regclass")
[ "$placed" = 2 ] || { echo "citus: the bookings shards are on $placed workers, not 2" >&2; exit 1; }

script=$base/book.sql
cat > "$script" <<'SQL'
\set client random(1, 16)
\set room random(1, 50)
\set slot random(0, 400000)
\set minutes random(4, 8) * 15
SELECT bench_book(:client, :room, :slot, :minutes);
SQL
run() {   # psql connection arguments -> tps
    pgbench -n -c 8 -j 2 -T "$secs" -f "$script" "$@" 2>/dev/null | awk '/^tps/ {printf "%.0f", $3}'
}
declare -A samples
ratios=""
for r in $(seq 1 "$rounds"); do
    a=$(run "${single[@]}"); b=$(run "${coord[@]}")
    samples[single]+=" $a"; samples[citus]+=" $b"
    ratios="$ratios $(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.3f", (a > 0 ? b / a : 0)}')"
done
median() { echo "$@" | tr ' ' '\n' | sort -g | awk 'NF {a[++n]=$1} END {print a[int((n+1)/2)]}'; }
# The invariant after the load, on the distributed side: no clash anywhere.
clashes=$(psql -X -qAt "${coord[@]}" -c "SELECT count(*) FROM booking.bookings a JOIN booking.bookings b
                                         ON a.room_id = b.room_id AND a.id < b.id
                                        WHERE a.status = 'confirmed' AND b.status = 'confirmed'
                                          AND a.starts_at < b.ends_at AND b.starts_at < a.ends_at")
rows=$(psql -X -qAt "${coord[@]}" -c "SELECT count(*) FROM booking.bookings")
echo "bookings/s, 8 clients: single node${samples[single]} (median $(median ${samples[single]})); coordinator + 2 workers${samples[citus]} (median $(median ${samples[citus]}))"
echo "per-round ratios:$ratios; $rows bookings on the workers' shards, $clashes clashes"
[ "$clashes" = 0 ] || { echo "citus: $clashes clashing bookings through the coordinator" >&2; exit 1; }
ratio=$(median $ratios)
awk -v x="$ratio" 'BEGIN { printf "bookings/s through a Citus coordinator with 2 workers vs one node, same machine: %.2fx\n", x }'
summary_add citus "bookings/s, coordinator + 2 workers / single node (x)" "$(awk -v x="$ratio" 'BEGIN {printf "%.2f", x}')" "-"
dropdb bench_citus_single
