# The PostgreSQL exporter for Prometheus, from Debian's package, run as its
# prometheus user.  Its queries file (docker/prometheus/) is mounted by the
# compose file.  Build from the repository root:
#   docker build -f docker/postgres-exporter.Dockerfile .
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends prometheus-postgres-exporter curl \
 && rm -rf /var/lib/apt/lists/*
USER prometheus
EXPOSE 9187
HEALTHCHECK --interval=5s --timeout=3s --retries=5 \
    CMD curl -fsS http://127.0.0.1:9187/metrics >/dev/null || exit 1
ENTRYPOINT ["/usr/bin/prometheus-postgres-exporter"]
