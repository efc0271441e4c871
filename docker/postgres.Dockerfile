# PostgreSQL 15 with the pg_booking extension built in and preloaded.
# Build from the repository root:  docker build -f docker/postgres.Dockerfile .
FROM postgres:15-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential postgresql-server-dev-15 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY extension ./extension
# The same flags as `make test`: warnings are errors.
RUN make PG_WERROR=1 \
 && make install DESTDIR=/stage

FROM postgres:15-bookworm
COPY --from=build /stage/usr/ /usr/
# Run once, on an empty data folder: creates the extension, stores the JWT
# secret and gives the login roles their passwords (from the environment).
COPY docker/initdb/ /docker-entrypoint-initdb.d/
# The rate limiter's shared memory and the checkout worker need the library
# loaded at server start.  Failing statements (a wrong password is one) are
# not copied into the log.  Every log line names the session's
# application_name (%a), which the adapter sets to the request id for the
# length of each request; statements slower than 500 ms are logged, without
# their parameter values.
CMD ["postgres", "-c", "shared_preload_libraries=pg_booking", "-c", "log_min_error_statement=fatal", \
     "-c", "log_line_prefix=%m [%p] %q%u@%d app=%a ", "-c", "log_min_duration_statement=500ms", \
     "-c", "log_parameter_max_length=0"]
