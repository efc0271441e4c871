# The HTTP adapter (adapter/, built by `make -C adapter`).
# Build from the repository root:  docker build -f docker/adapter.Dockerfile .
FROM debian:bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config \
        libpq-dev libmicrohttpd-dev libjansson-dev libjwt-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY adapter ./adapter
RUN make -C adapter

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
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD curl -fsS "http://127.0.0.1:${ADAPTER_PORT}/health" >/dev/null || exit 1
ENTRYPOINT ["/usr/local/bin/pg_booking_adapter"]
