#!/usr/bin/env bash
# make compose-test: docker/compose.yaml brought up for real, under podman.
#
# Sets up podman (Debian's podman, runc, podman-compose, docker-compose;
# /etc/containers/containers.conf for this kind of machine), makes the base
# image localhost/debian:bookworm-slim with debootstrap when it is missing
# (no image registry is reachable here), builds the images (layers stay in
# podman's store, so a second run builds from cache), starts the stack under
# a throwaway project name with loopback-only ports and asserts, through the
# load balancer and the containers: every health check, /health, /ready,
# register, login, a booking, a clash (409), the 6th login from one address
# (429, and both replicas answered logins), /metrics of both replicas
# scraped by Prometheus (its API), the analytics view read as the Grafana
# role, the booking still there after the database container restarts, the
# init scripts run once per volume (recreated containers, same volume), and
# `down -v` leaving no container, volume or network.
# Grafana's official image cannot be fetched here: it is the one service
# not started (said so below).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

COMPOSE_FILE="$ROOT_DIR/docker/compose.yaml"
BASE_IMAGE=localhost/debian:bookworm-slim
SERVICES=(postgres adapter lb prometheus)
HEALTH_TIMEOUT_S=${PGB_HEALTH_TIMEOUT_S:-240}
t0=$(date +%s)
elapsed() { echo $(($(date +%s) - t0)); }

passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok $((passed + failed)) - $1"; }
not_ok() { failed=$((failed + 1)); echo "not ok $((passed + failed)) - $1"; }
check() { # check DESCRIPTION COMMAND...
    local what=$1; shift
    if "$@"; then ok "$what"; else not_ok "$what"; fi
}
die() { echo "compose-test: $*" >&2; not_ok "$*"; exit 1; }

# --- podman ------------------------------------------------------------------
bash "$ROOT_DIR/scripts/deps.sh" containers

# This machine cannot raise rlimits and has hybrid cgroups (crun refuses
# them): runc, cgroupfs, no default ulimits.
containers_conf='[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"'
if [ "$(cat /etc/containers/containers.conf 2>/dev/null)" != "$containers_conf" ]; then
    if [ -e /etc/containers/containers.conf ]; then
        cp /etc/containers/containers.conf /etc/containers/containers.conf.pg_booking-saved
        say "replacing /etc/containers/containers.conf (saved as containers.conf.pg_booking-saved)"
    else
        say "writing /etc/containers/containers.conf"
    fi
    mkdir -p /etc/containers
    printf '%s\n' "$containers_conf" >/etc/containers/containers.conf
fi

# The Debian mirror of this machine's apt sources (one-line or deb822).
apt_mirror() { # apt_mirror SUITE
    local suite=$1
    { grep -hs "^deb .* $suite " /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
          awk '{print $2}'
      awk -v s="$suite" 'BEGIN{RS=""} /Types:.*deb/ {
          u=""; ok=0; n=split($0, l, "\n")
          for (i=1;i<=n;i++) { if (l[i] ~ /^URIs:/) u=l[i]; if (l[i] ~ /^Suites:/ && (" " l[i] " ") ~ (" " s " ")) ok=1 }
          if (ok) { sub(/^URIs: */, "", u); split(u, a, " "); print a[1] } }' /etc/apt/sources.list.d/*.sources 2>/dev/null
    } | head -1
}

base_t0=$(date +%s)
if ! podman image exists "$BASE_IMAGE"; then
    mirror=$(apt_mirror bookworm)
    security=$(apt_mirror bookworm-security)
    [ -n "$mirror" ] || die "no bookworm mirror in the apt sources"
    say "making $BASE_IMAGE with debootstrap from $mirror (once per machine)"
    rootfs=$(mktemp -d /tmp/pg_booking-rootfs.XXXXXX)
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null
    {
        echo "deb $mirror bookworm main"
        echo "deb $mirror bookworm-updates main"
        [ -n "$security" ] && echo "deb $security bookworm-security main"
    } >"$rootfs/etc/apt/sources.list"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | podman import -q - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
    echo "# base image made in $(($(date +%s) - base_t0)) s"
else
    echo "# base image $BASE_IMAGE already there (podman's store)"
fi

# --- the compose file, as each implementation reads it -------------------------
project="pgbtest$$$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
secret() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
export PGB_PUBLISH_ADDRESS=127.0.0.1 PGB_HTTP_PORT=$(free_port) PROMETHEUS_PORT=$(free_port) GRAFANA_PORT=$(free_port)
export POSTGRES_DB=pg_booking POSTGRES_USER=postgres POSTGRES_PASSWORD=$(secret 12)
export PGB_JWT_SECRET=$(secret 32) PGB_AUTHENTICATOR_PASSWORD=$(secret 12)
export PGB_GRAFANA_DB_PASSWORD=$(secret 12) GRAFANA_ADMIN_USER=admin GRAFANA_ADMIN_PASSWORD=$(secret 12)
# HEALTHCHECK is a Docker-format instruction: OCI images would drop it.
export BUILDAH_FORMAT=docker

check "docker-compose 1.29 accepts the compose file" docker-compose -p "$project" -f "$COMPOSE_FILE" config -q
check "the compose file has no top-level name: (the Compose Specification leaves it optional, 1.29 rejects it)" \
    bash -c "! grep -q '^name:' '$COMPOSE_FILE'"
pc() { podman-compose --no-ansi -p "$project" -f "$COMPOSE_FILE" "$@"; }
# podman-compose 1.0 removes containers, pods and volumes on down -v, but
# never the network it made: that one is removed here, and only that one.
pc_down() {
    pc down -v >/dev/null 2>&1
    podman network exists "${project}_default" && podman network rm "${project}_default" >/dev/null
    true
}
pc_dry_run() { pc --dry-run up -d "${SERVICES[@]}" >/dev/null 2>&1; }
check "podman-compose reads the compose file (dry run of up)" pc_dry_run

leftovers() {
    podman ps -a --filter "label=io.podman.compose.project=$project" --format '{{.Names}}'
    podman volume ls --format '{{.Name}}' | grep "^${project}_" || true
    podman network ls --format '{{.Name}}' | grep "^${project}_" || true
    podman pod ls --format '{{.Name}}' | grep "^pod_${project}$" || true
}
cleanup() {
    rc=$?
    if [ "${down_done:-0}" != 1 ]; then
        echo "# cleaning up project $project after a failure"
        if [ $rc -ne 0 ] && [ -n "$(leftovers)" ]; then
            for c in $(podman ps -a --filter "label=io.podman.compose.project=$project" --format '{{.Names}}'); do
                echo "# --- logs of $c (last 30 lines)"; podman logs --tail 30 "$c" 2>&1 | sed 's/^/#   /'
            done
        fi
        pc_down
    fi
    exit $rc
}
trap cleanup EXIT

# --- build --------------------------------------------------------------------
say "building the images (project $project)"
build_t0=$(date +%s)
pc build "${SERVICES[@]}" >"/tmp/$project-build.log" 2>&1 || { tail -40 "/tmp/$project-build.log"; die "the image build failed"; }
rm -f "/tmp/$project-build.log"
build_s=$(($(date +%s) - build_t0))
echo "# images built in $build_s s"

# --- up, and every health check ------------------------------------------------
cname() { echo "${project}_$1_${2:-1}"; }
containers() { podman ps -a --filter "label=io.podman.compose.project=$project" --format '{{.Names}}'; }
health() { podman inspect --format '{{.State.Health.Status}}' "$1" 2>/dev/null; }
# podman runs health checks from systemd timers; without systemd (as here)
# nobody would, so run each container's own HEALTHCHECK until it passes.
wait_healthy() { # wait_healthy CONTAINER...
    local deadline=$(($(date +%s) + HEALTH_TIMEOUT_S)) c
    for c in "$@"; do
        until [ "$(health "$c")" = healthy ]; do
            podman healthcheck run "$c" >/dev/null 2>&1 || true
            [ "$(health "$c")" = healthy ] && break
            if [ "$(date +%s)" -ge "$deadline" ]; then
                echo "# $c: $(health "$c") after ${HEALTH_TIMEOUT_S} s"; return 1
            fi
            sleep 2
        done
    done
}
up_t0=$(date +%s)
say "starting ${SERVICES[*]} (Grafana is not started: its official image cannot be fetched here)"
pc up -d "${SERVICES[@]}" >"/tmp/$project-up.log" 2>&1 || { tail -40 "/tmp/$project-up.log"; die "up failed"; }
rm -f "/tmp/$project-up.log"
expected="$(cname postgres) $(cname adapter 1) $(cname adapter 2) $(cname lb) $(cname prometheus)"
check "the five containers exist (two adapter replicas)" \
    test "$(containers | sort | tr '\n' ' ')" = "$(tr ' ' '\n' <<<"$expected" | sort | tr '\n' ' ')"
for c in $expected; do
    check "$c has a health check (HEALTHCHECK of its image)" \
        test -n "$(podman inspect --format '{{.Config.Healthcheck}}' "$c" | grep -v '^<nil>$')"
done
# shellcheck disable=SC2086
check "every container is healthy" wait_healthy $expected
start_s=$(($(date +%s) - up_t0))
echo "# stack up and healthy in $start_s s"
echo "# skipped: grafana (official image grafana/grafana-oss is not buildable here, no registry reachable)"
for c in $expected; do
    check "$c runs as a non-root user" test "$(podman exec "$c" id -u)" != 0
done
for p in "$PGB_HTTP_PORT" "$PROMETHEUS_PORT"; do
    check "port $p is published on loopback only" \
        bash -c "podman port -a | grep -q ':$p\$' && ! podman port -a | grep ':$p\$' | grep -vq '127.0.0.1:$p\$'"
done

# --- through the load balancer --------------------------------------------------
base="http://127.0.0.1:$PGB_HTTP_PORT"
body=$(mktemp)
req() { # req METHOD PATH [JSON] [TOKEN] -> status; body in $body
    curl -s -o "$body" -w '%{http_code}' -X "$1" "$base$2" -H 'Content-Type: application/json' \
        ${3:+--data "$3"} ${4:+-H "Authorization: Bearer $4"} --max-time 10 || echo 000
}
ready() { # the adapters connect lazily: /ready may need a moment after health
    local i
    for i in $(seq 1 30); do [ "$(req GET /ready)" = 200 ] && return 0; sleep 1; done
    return 1
}
check "GET /health is 200 through nginx" test "$(req GET /health)" = 200
check "GET /ready is 200 through nginx (database and breaker)" ready
email="compose-$project@example.com"
check "register is 201" test "$(req POST /users/register "{\"email\":\"$email\",\"password\":\"password-$project\",\"full_name\":\"Compose Test\"}")" = 201
statuses=()
for i in 1 2 3 4 5 6; do
    statuses+=("$(req POST /users/login "{\"email\":\"$email\",\"password\":\"password-$project\"}")")
    [ "$i" = 1 ] && token=$(jq -r .access_token "$body")
done
check "five logins from one address are admitted, the 6th is 429 (${statuses[*]})" \
    test "${statuses[*]}" = "200 200 200 200 200 429"
logins() { # logins CONTAINER STATUS: the login requests the replica logged
    podman logs "$1" 2>/dev/null | grep '^{' | jq -c "select(.route != null and (.route | test(\"login\")) and .status == $2)" 2>/dev/null | wc -l
}
a1=$(cname adapter 1) a2=$(cname adapter 2)
echo "# logins answered: $a1 $(logins "$a1" 200) x 200, $(logins "$a1" 429) x 429; $a2 $(logins "$a2" 200) x 200, $(logins "$a2" 429) x 429"
check "both replicas answered logins (the limit is shared)" \
    test "$(logins "$a1" 200)" -gt 0 -a "$(logins "$a2" 200)" -gt 0
check "the 429 came from a replica" test $(($(logins "$a1" 429) + $(logins "$a2" 429))) = 1

psql_pg() { podman exec "$(cname postgres)" psql -X -qAt -d pg_booking -v ON_ERROR_STOP=1 -c "$1"; }
room=$(psql_pg "INSERT INTO booking.rooms (name, location, capacity) VALUES ('Compose room', 'test', 4) RETURNING id")
slot="\"room_id\":$room,\"starts_at\":\"2031-03-04T10:00:00Z\",\"ends_at\":\"2031-03-04T11:00:00Z\""
check "a booking is 201" test "$(req POST /bookings "{$slot,\"title\":\"first\"}" "$token")" = 201
booking=$(jq -r '.id // .[0].id // empty' "$body")
check "a clash is 409 BOOKING_CONFLICT" \
    bash -c "[ \"\$(curl -s -o '$body' -w '%{http_code}' -X POST '$base/bookings' -H 'Content-Type: application/json' \
        -H 'Authorization: Bearer $token' --data '{$slot,\"title\":\"second\"}')\" = 409 ] && jq -e '.error_code == \"BOOKING_CONFLICT\"' '$body' >/dev/null"

# --- Prometheus ------------------------------------------------------------------
prom_up() {
    curl -s --max-time 5 "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/query" \
        --data-urlencode 'query=sum(up{job="pg_booking_adapter"})' | jq -r '.data.result[0].value[1] // 0'
}
scraped() { local i; for i in $(seq 1 45); do [ "$(prom_up)" = 2 ] && return 0; sleep 2; done; return 1; }
check "Prometheus scrapes /metrics of both replicas (sum(up) = 2, its API)" scraped
check "the scraped metrics include the adapter's request counter from both replicas" bash -c "
    curl -s 'http://127.0.0.1:$PROMETHEUS_PORT/api/v1/query' --data-urlencode 'query=count(count by (instance) ({job=\"pg_booking_adapter\",__name__=~\".*request.*\"}))' |
    jq -e '.data.result[0].value[1] == \"2\"' >/dev/null"

# --- the Grafana role -------------------------------------------------------------
grafana_read() {
    podman exec -e PGPASSWORD="$PGB_GRAFANA_DB_PASSWORD" "$(cname postgres)" \
        psql -X -qAt -h 127.0.0.1 -U booking_grafana -d pg_booking -c 'SELECT confirmed FROM booking.analytics_bookings_summary'
}
check "the analytics view, read as booking_grafana over TCP with its password, counts the booking" \
    test "$(grafana_read)" = 1
check "booking_grafana cannot read the bookings table" bash -c "! podman exec -e PGPASSWORD='$PGB_GRAFANA_DB_PASSWORD' '$(cname postgres)' \
    psql -X -qAt -h 127.0.0.1 -U booking_grafana -d pg_booking -c 'SELECT 1 FROM booking.bookings LIMIT 1' 2>/dev/null"

# --- restart, persistence, init once per volume -------------------------------------
sysid() { psql_pg 'SELECT system_identifier FROM pg_control_system()'; }
inits() { podman logs "$(cname postgres)" 2>&1 | grep -c 'running /docker-entrypoint-initdb.d/' || true; }
id_before=$(sysid)
check "the init scripts ran on the new volume" test "$(inits)" = 1
podman restart "$(cname postgres)" >/dev/null 2>&1
check "postgres is healthy again after a restart" wait_healthy "$(cname postgres)"
check "the booking is still there after the restart" test "$(psql_pg "SELECT count(*) FROM booking.bookings WHERE id = $booking")" = 1
check "the init scripts did not run again on restart" test "$(inits)" = 1
check "the API answers /ready again after the restart" ready
say "recreating the containers on the same volumes (down, up)"
pc down >/dev/null 2>&1
pc up -d "${SERVICES[@]}" >/dev/null 2>&1
# shellcheck disable=SC2086
check "every recreated container is healthy" wait_healthy $expected
check "a recreated postgres container keeps the volume's cluster (same system identifier)" test "$(sysid)" = "$id_before"
check "... and did not run the init scripts" test "$(inits)" = 0
check "... and logs that the data folder is in use" bash -c "podman logs '$(cname postgres)' 2>&1 | grep -q 'in use: no initdb'"
check "the booking is there in the recreated stack (GET through nginx)" bash -c "$(declare -f req ready); base=$base body=$body; ready && [ \"\$(req GET /bookings/$booking '' $token)\" = 200 ]"

# --- down -v ------------------------------------------------------------------------
# podman-compose 1.0's down -v keeps the network it made (pc_down above).
pc down -v >/dev/null 2>&1
down_done=1
left=$(leftovers)
check "down -v leaves no container, volume or pod of the project, and only its network (podman-compose 1.0 keeps it)" \
    test -z "$(grep -vx "${project}_default" <<<"$left")"
podman network exists "${project}_default" && podman network rm "${project}_default" >/dev/null
left=$(leftovers)
check "after that nothing of the project is left (container, volume, network, pod)" test -z "$left"
[ -n "$left" ] && echo "# left behind: $left"
rm -f "$body"
echo "# compose test: build $build_s s, start to healthy $start_s s, whole run $(elapsed) s"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
