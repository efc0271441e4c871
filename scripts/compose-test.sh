#!/usr/bin/env bash
# make compose-test: docker/compose.yaml brought up for real, under podman.
#
# Sets up podman (Debian's podman, runc, podman-compose, docker-compose;
# /etc/containers/containers.conf for this kind of machine), makes the base
# image localhost/debian:bookworm-slim with debootstrap when it is missing
# (no image registry is reachable here), builds the images once (layers stay
# in podman's store, so a second run builds from cache), then runs one
# scenario under podman-compose 1.0 and again under docker-compose 1.29
# (through a podman API socket of its own): a throwaway project name,
# loopback-only ports, and asserts, through the load balancer and the
# containers: every health check, /health, /ready, register, login, a
# booking, a clash (409), the 6th login from one address (429, and both
# replicas answered logins), /metrics of both replicas and the exporter
# scraped by Prometheus (its API), the analytics view read as the Grafana
# role, the booking still there after the database container restarts, the
# init scripts run once per volume (recreated containers, same volume), and
# `down -v` leaving no container, volume, network or pod.
# Grafana, Loki and promtail (official images that cannot be fetched here)
# are not started; the output says so.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

COMPOSE_FILE="$ROOT_DIR/docker/compose.yaml"
BASE_IMAGE=localhost/debian:bookworm-slim
SERVICES=(postgres adapter lb postgres-exporter prometheus)
# Grafana, Loki and promtail are official images (Debian packages none of
# them) that cannot be fetched here: the services the test does not start.
SKIPPED="grafana loki promtail"
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
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
secret() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
export POSTGRES_DB=pg_booking POSTGRES_USER=postgres PGB_PUBLISH_ADDRESS=127.0.0.1 GRAFANA_ADMIN_USER=admin
new_secrets() { # every run of the stack: new secrets and free loopback ports
    export PGB_HTTP_PORT=$(free_port) PROMETHEUS_PORT=$(free_port) GRAFANA_PORT=$(free_port)
    export POSTGRES_PASSWORD=$(secret 12) PGB_JWT_SECRET=$(secret 32) PGB_AUTHENTICATOR_PASSWORD=$(secret 12)
    export PGB_GRAFANA_DB_PASSWORD=$(secret 12) GRAFANA_ADMIN_PASSWORD=$(secret 12)
    export PGB_EXPORTER_DB_PASSWORD=$(secret 12)
}
new_secrets
# HEALTHCHECK is a Docker-format instruction: OCI images would drop it.
export BUILDAH_FORMAT=docker
# The images of this run carry a tag of their own, so that test runs of
# other checkouts on the machine at the same time cannot swap them; the
# tested images are tagged :local at the end (the layers are shared anyway).
export PGB_IMAGE_TAG="test$$$(secret 3)"
IMAGES="postgres adapter nginx postgres-exporter prometheus"
untag_run_images() { # untag_run_images [keep]: drop this run's tag (keep: tag :local first)
    local i
    for i in $IMAGES; do
        podman image exists "pg_booking/$i:$PGB_IMAGE_TAG" || continue
        [ "${1:-}" = keep ] && podman tag "pg_booking/$i:$PGB_IMAGE_TAG" "pg_booking/$i:local"
        podman untag "pg_booking/$i:$PGB_IMAGE_TAG" "localhost/pg_booking/$i:$PGB_IMAGE_TAG" 2>/dev/null || true
    done
}

# pc ARGS: the compose implementation of this run ($impl) on this project.
# docker-compose 1.29 talks to podman's Docker-compatible socket ($sock).
pc() {
    case $impl in
    podman-compose) podman-compose --no-ansi -p "$project" -f "$COMPOSE_FILE" "$@" ;;
    docker-compose) DOCKER_HOST="unix://${sock:-/nonexistent}" docker-compose --ansi never -p "$project" -f "$COMPOSE_FILE" "$@" ;;
    esac
}
pc_up() {
    case $impl in
    podman-compose) pc up -d "${SERVICES[@]}" ;;
    # It waits for "condition: service_healthy", so health checks must run
    # meanwhile (health_runner); bounded.
    docker-compose) timeout "$HEALTH_TIMEOUT_S" bash -c "$(declare -f pc); impl=$impl project=$project COMPOSE_FILE=$COMPOSE_FILE sock=$sock; pc up -d --no-build ${SERVICES[*]}" ;;
    esac
}
# podman-compose 1.0 removes containers, pods and volumes on down -v, but
# never the network it made: after the assertion, that one is removed too.
pc_down() {
    pc down -v >/dev/null 2>&1
    podman network exists "${project}_default" && podman network rm "${project}_default" >/dev/null
    true
}
project_label() { [ "$impl" = podman-compose ] && echo io.podman.compose.project || echo com.docker.compose.project; }
containers() { podman ps -a --filter "label=$(project_label)=$project" --format '{{.Names}}'; }
leftovers() {
    containers
    podman volume ls --format '{{.Name}}' | grep "^${project}_" || true
    podman network ls --format '{{.Name}}' | grep "^${project}_" || true
    podman pod ls --format '{{.Name}}' | grep "^pod_${project}$" || true
}

impl=docker-compose project=pgbcheck
check "docker-compose 1.29 accepts the compose file (its Compose Specification schema)" pc config -q
check "the compose file has no top-level name: (1.29 rejects it; the Compose Specification leaves it out)" \
    bash -c "! grep -q '^name:' '$COMPOSE_FILE'"
# podman-compose 1.0 has no "config" (and its --dry-run still makes the
# volumes and the network): it reads the file for real in the first run.

service_pid='' runner_pid=''
stop_bg() { # stop_bg VARIABLE: end the background process whose id it holds
    local pid=${!1}
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    printf -v "$1" ''
}
cleanup() {
    rc=$?
    if [ -n "${project:-}" ] && [ "${down_done:-1}" != 1 ]; then
        echo "# cleaning up project $project after a failure"
        for c in $(containers); do
            echo "# --- logs of $c (last 30 lines)"; podman logs --tail 30 "$c" 2>&1 | sed 's/^/#   /'
        done
        pc_down
    fi
    stop_bg runner_pid
    stop_bg service_pid
    [ $rc -eq 0 ] && untag_run_images keep || untag_run_images
    exit $rc
}
trap cleanup EXIT

# --- build (once; both implementations use the images) ---------------------------
say "building the images"
build_t0=$(date +%s)
impl=podman-compose project=pgbbuild
pc build "${SERVICES[@]}" >"/tmp/pgb-compose-build.$$.log" 2>&1 ||
    { tail -40 "/tmp/pgb-compose-build.$$.log"; die "the image build failed"; }
rm -f "/tmp/pgb-compose-build.$$.log"
build_s=$(($(date +%s) - build_t0))
echo "# images built in $build_s s"

# --- health --------------------------------------------------------------------
cname() { echo "${project}_$1_${2:-1}"; }
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
health_runner() { # in the background while docker-compose waits on health
    local end=$(($(date +%s) + 3 * HEALTH_TIMEOUT_S)) c
    while [ "$(date +%s)" -lt "$end" ]; do
        for c in $(podman ps --filter "label=$(project_label)=$project" --format '{{.Names}}'); do
            podman healthcheck run "$c" >/dev/null 2>&1 || true
        done
        sleep 2
    done
}

# --- one run of the stack under one implementation ---------------------------------
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
logins() { # logins CONTAINER STATUS: the login requests the replica logged
    podman logs "$1" 2>/dev/null | grep '^{' | jq -c "select(.route != null and (.route | test(\"login\")) and .status == $2)" 2>/dev/null | wc -l
}
psql_pg() { podman exec "$(cname postgres)" psql -X -qAt -d pg_booking -v ON_ERROR_STOP=1 -c "$1"; }
clash() {
    [ "$(req POST /bookings "{$slot,\"title\":\"second\"}" "$token")" = 409 ] &&
        jq -e '.error_code == "BOOKING_CONFLICT"' "$body" >/dev/null
}
prom() { # prom QUERY -> the first value
    curl -s --max-time 5 "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/query" --data-urlencode "query=$1" |
        jq -r '.data.result[0].value[1] // 0'
}
scraped() { local i; for i in $(seq 1 45); do [ "$(prom 'sum(up{job="pg_booking_adapter"})')" = 2 ] && return 0; sleep 2; done; return 1; }
exporter_scraped() {
    local i
    for i in $(seq 1 45); do
        [ "$(prom 'up{job="postgres"} * on() pg_up')" = 1 ] &&
            [ "$(prom 'count({job="postgres",__name__=~"pg_booking_.+"})')" -gt 0 ] && return 0
        sleep 2
    done
    return 1
}
as_grafana() {
    podman exec -e PGPASSWORD="$PGB_GRAFANA_DB_PASSWORD" "$(cname postgres)" \
        psql -X -qAt -h 127.0.0.1 -U booking_grafana -d pg_booking -c "$1" 2>/dev/null
}
grafana_kept_out() { ! as_grafana 'SELECT 1 FROM booking.bookings LIMIT 1' >/dev/null; }
sysid() { psql_pg 'SELECT system_identifier FROM pg_control_system()'; }
inits() { podman logs "$(cname postgres)" 2>&1 | grep -c 'running /docker-entrypoint-initdb.d/' || true; }
published_on_loopback() { # the port is published, and only on 127.0.0.1
    local p=$1 all
    all=$(podman port -a | grep ":$p\$") || return 1
    ! grep -vq "127.0.0.1:$p\$" <<<"$all"
}
booking_via_nginx() { ready && [ "$(req GET "/bookings/$booking" '' "$token")" = 200 ]; }

scenario() { # scenario IMPLEMENTATION
    impl=$1
    project="pgbtest$$$(secret 3)"
    new_secrets
    base="http://127.0.0.1:$PGB_HTTP_PORT"
    down_done=0
    echo "# --- $impl, project $project"
    local up_t0 expected c p statuses i a1 a2 id_before start_s
    up_t0=$(date +%s)
    say "$impl: starting ${SERVICES[*]} (not $SKIPPED: official images, which cannot be fetched here)"
    [ "$impl" = docker-compose ] && { health_runner & runner_pid=$!; }
    pc_up >"/tmp/$project-up.log" 2>&1 || { tail -40 "/tmp/$project-up.log"; die "$impl: up failed"; }
    rm -f "/tmp/$project-up.log"
    expected="$(cname postgres) $(cname adapter 1) $(cname adapter 2) $(cname lb) $(cname postgres-exporter) $(cname prometheus)"
    check "$impl: the six containers exist (two adapter replicas)" \
        test "$(containers | sort | tr '\n' ' ')" = "$(tr ' ' '\n' <<<"$expected" | sort | tr '\n' ' ')"
    for c in $expected; do
        check "$impl: $c has a health check (HEALTHCHECK of its image)" \
            test -n "$(podman inspect --format '{{.Config.Healthcheck}}' "$c" | grep -v '^<nil>$')"
    done
    # shellcheck disable=SC2086
    check "$impl: every container is healthy" wait_healthy $expected
    start_s=$(($(date +%s) - up_t0))
    echo "# $impl: stack up and healthy in $start_s s"
    start_times+=("$impl $start_s s")
    echo "# $impl: skipped: $SKIPPED (official images grafana/grafana-oss, grafana/loki, grafana/promtail: not buildable from Debian, no image registry reachable)"
    for c in $expected; do
        check "$impl: $c runs as a non-root user" test "$(podman exec "$c" id -u)" != 0
    done
    for p in "$PGB_HTTP_PORT" "$PROMETHEUS_PORT"; do
        check "$impl: port $p is published on loopback only" published_on_loopback "$p"
    done

    # Through the load balancer.
    check "$impl: GET /health is 200 through nginx" test "$(req GET /health)" = 200
    check "$impl: GET /ready is 200 through nginx (database and breaker)" ready
    email="compose-$project@example.com"
    check "$impl: register is 201" \
        test "$(req POST /users/register "{\"email\":\"$email\",\"password\":\"password-$project\",\"full_name\":\"Compose Test\"}")" = 201
    statuses=()
    for i in 1 2 3 4 5 6; do
        statuses+=("$(req POST /users/login "{\"email\":\"$email\",\"password\":\"password-$project\"}")")
        [ "$i" = 1 ] && token=$(jq -r .access_token "$body")
    done
    check "$impl: five logins from one address are admitted, the 6th is 429 (${statuses[*]})" \
        test "${statuses[*]}" = "200 200 200 200 200 429"
    a1=$(cname adapter 1) a2=$(cname adapter 2)
    echo "# $impl: logins answered: $a1 $(logins "$a1" 200) x 200, $(logins "$a1" 429) x 429; $a2 $(logins "$a2" 200) x 200, $(logins "$a2" 429) x 429"
    check "$impl: both replicas answered logins (the limit is shared)" \
        test "$(logins "$a1" 200)" -gt 0 -a "$(logins "$a2" 200)" -gt 0
    check "$impl: the 429 came from a replica" test $(($(logins "$a1" 429) + $(logins "$a2" 429))) = 1
    room=$(psql_pg "INSERT INTO booking.rooms (name, location, capacity) VALUES ('Compose room', 'test', 4) RETURNING id")
    slot="\"room_id\":$room,\"starts_at\":\"2031-03-04T10:00:00Z\",\"ends_at\":\"2031-03-04T11:00:00Z\""
    check "$impl: a booking is 201" test "$(req POST /bookings "{$slot,\"title\":\"first\"}" "$token")" = 201
    booking=$(jq -r '.id // .[0].id // empty' "$body")
    check "$impl: a clash is 409 BOOKING_CONFLICT" clash

    # Prometheus, through its API.
    check "$impl: Prometheus scrapes /metrics of both replicas (sum(up) = 2)" scraped
    check "$impl: ... and holds adapter series from both instances" \
        test "$(prom 'count(count by (instance) ({job="pg_booking_adapter",__name__=~".*request.*"}))')" = 2
    check "$impl: Prometheus scrapes the PostgreSQL exporter, which reaches the database as booking_exporter" exporter_scraped

    # The Grafana role.
    check "$impl: the analytics view, read as booking_grafana over TCP with its password, counts the booking" \
        test "$(as_grafana 'SELECT confirmed FROM booking.analytics_bookings_summary')" = 1
    check "$impl: booking_grafana cannot read the bookings table" grafana_kept_out

    # Restart, persistence, init once per volume.
    id_before=$(sysid)
    check "$impl: the init scripts ran on the new volume" test "$(inits)" = 1
    podman restart "$(cname postgres)" >/dev/null 2>&1
    check "$impl: postgres is healthy again after a restart" wait_healthy "$(cname postgres)"
    check "$impl: the booking is still there after the restart" \
        test "$(psql_pg "SELECT count(*) FROM booking.bookings WHERE id = $booking")" = 1
    check "$impl: the init scripts did not run again on restart" test "$(inits)" = 1
    check "$impl: the API answers /ready again after the restart" ready
    say "$impl: recreating the containers on the same volumes (down, up)"
    pc down >/dev/null 2>&1
    pc_up >/dev/null 2>&1
    # shellcheck disable=SC2086
    check "$impl: every recreated container is healthy" wait_healthy $expected
    check "$impl: a recreated postgres container keeps the volume's cluster (same system identifier)" \
        test "$(sysid)" = "$id_before"
    check "$impl: ... and did not run the init scripts" test "$(inits)" = 0
    check "$impl: ... and logs that the data folder is in use" \
        bash -c "podman logs '$(cname postgres)' 2>&1 | grep -q 'in use: no initdb'"
    check "$impl: the booking is there in the recreated stack (GET through nginx)" booking_via_nginx

    # down -v
    pc down -v >/dev/null 2>&1
    down_done=1
    stop_bg runner_pid
    left=$(leftovers)
    if [ "$impl" = podman-compose ]; then
        check "$impl: down -v leaves no container, volume or pod, only the project's network (podman-compose 1.0 keeps it)" \
            test -z "$(grep -vx "${project}_default" <<<"$left")"
        podman network exists "${project}_default" && podman network rm "${project}_default" >/dev/null
        left=$(leftovers)
    fi
    check "$impl: nothing of the project is left (container, volume, network, pod)" test -z "$left"
    [ -n "$left" ] && echo "# left behind: $left"
    true
}

start_times=()
scenario podman-compose
# docker-compose 1.29 through podman's Docker-compatible API, on a private
# socket this test starts and stops.
sock=$(mktemp -d /tmp/pgb-podman-api.XXXXXX)/podman.sock
podman system service --time=0 "unix://$sock" >/dev/null 2>&1 &
service_pid=$!
for _ in $(seq 1 30); do [ -S "$sock" ] && break; sleep 0.5; done
scenario docker-compose
stop_bg service_pid
rm -rf "$(dirname "$sock")" "$body"
echo "# compose test: build $build_s s, start to healthy: ${start_times[*]}; whole run $(elapsed) s"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
