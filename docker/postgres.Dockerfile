# PostgreSQL 15 (Debian's packages) with the pg_booking extension built in
# and preloaded.  Build from the repository root:
#   docker build -f docker/postgres.Dockerfile .
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
ENV LANG=C.UTF-8 PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data/pg15
# No cluster from the package: the entrypoint makes one in the volume.
RUN mkdir -p /etc/postgresql-common \
 && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf \
 && apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o postgres -g postgres -m 700 /var/lib/postgresql/data \
 && install -d -o postgres -g postgres -m 2775 /var/run/postgresql
COPY --from=build /stage/usr/ /usr/
COPY docker/postgres-entrypoint.sh /usr/local/bin/pg_booking-entrypoint
# Run once, on an empty data folder: creates the extension, stores the JWT
# secret and gives the login roles their passwords (from the environment).
COPY docker/initdb/ /docker-entrypoint-initdb.d/
USER postgres
VOLUME /var/lib/postgresql/data
EXPOSE 5432
# Healthy once the real server takes TCP connections: during the first
# start the init scripts run against a server on a private socket only.
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=5 \
    CMD pg_isready -q -h 127.0.0.1 -p 5432 -d "${POSTGRES_DB:-postgres}" || exit 1
# A fast shutdown on stop: SIGTERM (smart) would wait for the adapters'
# pooled connections to go away, and the engine would kill it after 10 s.
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/pg_booking-entrypoint"]
# The rate limiter's shared memory and the checkout worker need the library
# loaded at server start.  Failing statements (a wrong password is one) are
# not copied into the log.  Every log line names the session's
# application_name (%a), which the adapter sets to the request id for the
# length of each request; statements slower than 500 ms are logged, without
# their parameter values.
CMD ["postgres", "-c", "shared_preload_libraries=pg_booking", "-c", "log_min_error_statement=fatal", \
     "-c", "log_line_prefix=%m [%p] %q%u@%d app=%a ", "-c", "log_min_duration_statement=500ms", \
     "-c", "log_parameter_max_length=0"]
