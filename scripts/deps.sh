#!/usr/bin/env bash
# Install the Debian packages pg_booking needs, when missing (as root).
# deps.sh containers: the ones make compose-test needs.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

packages=(make gcc postgresql-15 postgresql-client-15 postgresql-server-dev-15 postgresql-contrib
          libpq-dev libjansson-dev libmicrohttpd-dev libjwt-dev libssl-dev libipc-run-perl jq curl
          valgrind  # adapter: the memcheck run of make test
          prometheus prometheus-postgres-exporter libyaml-libyaml-perl  # observability tests (adapter/t/036, 041)
          # Citus built from CITUS_TARBALL for t/100_citus.pl (scripts/citus.sh)
          libcurl4-openssl-dev liblz4-dev libzstd-dev libkrb5-dev libselinux1-dev libxslt1-dev libpam0g-dev libreadline-dev
          python3-icalendar python3-recurring-ical-events  # calendar feeds checked by real parsers (adapter/t/052)
          ${EXTRA_PACKAGES:-})
# make compose-test (scripts/compose-test.sh): podman with runc, both compose
# implementations it checks, and debootstrap for the local base image.
if [ "${1:-}" = containers ]; then
    packages=(podman runc podman-compose docker-compose debootstrap jq curl python3)
fi
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "pg_booking: missing Debian packages: ${missing[*]}; run as root or install them" >&2
    exit 1
fi
say "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
