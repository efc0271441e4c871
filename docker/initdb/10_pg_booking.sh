#!/usr/bin/env bash
# First start of the database container: create the extension, store the
# JWT secret (superuser-only setting, in postgresql.auto.conf, never on a
# command line) and set the passwords of the two login roles:
#   booking_authenticator  the adapter's connection (switches role per request)
#   booking_grafana        Grafana's read-only connection to the analytics views
set -euo pipefail
: "${PGB_JWT_SECRET:?PGB_JWT_SECRET is not set (see .env.example)}"
: "${PGB_AUTHENTICATOR_PASSWORD:?PGB_AUTHENTICATOR_PASSWORD is not set (see .env.example)}"
: "${PGB_GRAFANA_DB_PASSWORD:?PGB_GRAFANA_DB_PASSWORD is not set (see .env.example)}"
: "${PGB_EXPORTER_DB_PASSWORD:?PGB_EXPORTER_DB_PASSWORD is not set (see .env.example)}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v jwt_secret="$PGB_JWT_SECRET" \
     -v authenticator_password="$PGB_AUTHENTICATOR_PASSWORD" \
     -v grafana_password="$PGB_GRAFANA_DB_PASSWORD" \
     -v exporter_password="$PGB_EXPORTER_DB_PASSWORD" <<'SQL'
CREATE EXTENSION IF NOT EXISTS pg_booking CASCADE;
ALTER SYSTEM SET pg_booking.jwt_secret = :'jwt_secret';
-- The nightly checkout works in this database.  No reload: the image's
-- entrypoint restarts the server after these scripts, and a reload would
-- log the changed secret.
SELECT format('ALTER SYSTEM SET pg_booking.checkout_database = %L', current_database()) \gexec
ALTER ROLE booking_authenticator LOGIN PASSWORD :'authenticator_password';
ALTER ROLE booking_grafana LOGIN PASSWORD :'grafana_password';
ALTER ROLE booking_exporter LOGIN PASSWORD :'exporter_password';
SQL
