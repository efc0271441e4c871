# The HTTP adapter (adapter/, built by `make adapter`).
# Build from the repository root:  docker build -f docker/adapter.Dockerfile .
# The build stage is the same in every image of docker/ (one cached layer):
# the extension and the adapter are built with the targets make test uses.
FROM debian:bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends make gcc libc6-dev pkg-config postgresql-server-dev-15 \
        libpq-dev libmicrohttpd-dev libjansson-dev libjwt-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY extension ./extension
COPY adapter ./adapter
# The same flags as `make test`: warnings are errors.
RUN make -s PG_WERROR=1 all \
 && make -s install DESTDIR=/stage \
 && make -s adapter

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq5 libmicrohttpd12 libjansson4 libjwt0 libssl3 curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --shell /usr/sbin/nologin pgb
COPY --from=build /src/adapter/pg_booking_adapter /usr/local/bin/pg_booking_adapter
USER pgb
# Settings are ADAPTER_* variables (pg_booking_adapter --help); the compose
# file gives the database, the secret and the trusted load balancer.
ENV ADAPTER_PORT=8080 ADAPTER_LISTEN=0.0.0.0
EXPOSE 8080
# /health needs no database: the adapter connects lazily, so it is healthy
# (and /ready says 503) while PostgreSQL is still starting.
HEALTHCHECK --interval=5s --timeout=3s --retries=5 \
    CMD curl -fsS "http://127.0.0.1:${ADAPTER_PORT}/health" >/dev/null || exit 1
ENTRYPOINT ["/usr/local/bin/pg_booking_adapter"]
