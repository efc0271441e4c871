/*
 * config.c — settings: defaults, then environment variables, then flags.
 * Every setting has both, and --help lists them with their defaults.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

adapter_config config = {
    .listen_address = "127.0.0.1",
    .port = 8080,
    .conninfo = "dbname=booking user=booking_authenticator",
    .anon_role = "booking_anon",
    .pool_size = 8,
    .pool_wait_ms = 2000,
    .statement_timeout_ms = 5000,
    .client_timeout_s = 10,
    .breaker_failures = 5,
    .breaker_open_ms = 5000,
    .breaker_probes = 1,
    .breaker_probe_timeout_ms = 10000,
    .breaker_mode = "auto",
    .drain_timeout_s = 10,
    .max_event_streams = 16,
    .log_requests = true,
    .request_deadline_s = 10,
    .max_connections_per_ip = 128,
    .sse_max_seconds = 3600,
};

typedef enum { S_STR, S_INT, S_BOOL } setting_kind;
typedef struct setting {
    const char *flag;
    const char *env;
    setting_kind kind;
    void       *target;
    const char *help;
} setting;

static const setting settings[] = {
    {"listen", "ADAPTER_LISTEN", S_STR, &config.listen_address, "address to listen on"},
    {"port", "ADAPTER_PORT", S_INT, &config.port, "HTTP port"},
    {"db", "ADAPTER_DB", S_STR, &config.conninfo, "libpq connection string (connect as booking_authenticator)"},
    {"read-dsn", "ADAPTER_READ_DSN", S_STR, &config.read_conninfo, "libpq connection string of a read replica (streaming standby) for GET routes; unset: the primary serves everything"},
    {"jwt-secret", "ADAPTER_JWT_SECRET", S_STR, &config.jwt_secret, "HS256 secret, at least 32 bytes (the database's pg_booking.jwt_secret); prefer the environment"},
    {"anon-role", "ADAPTER_ANON_ROLE", S_STR, &config.anon_role, "database role for requests without a token"},
    {"pool-size", "ADAPTER_POOL_SIZE", S_INT, &config.pool_size, "database connections in the pool"},
    {"pool-wait-ms", "ADAPTER_POOL_WAIT_MS", S_INT, &config.pool_wait_ms, "how long a request waits for a free connection"},
    {"statement-timeout-ms", "ADAPTER_STATEMENT_TIMEOUT_MS", S_INT, &config.statement_timeout_ms, "statement_timeout of every request"},
    {"client-timeout-s", "ADAPTER_CLIENT_TIMEOUT_S", S_INT, &config.client_timeout_s, "idle or slow clients are disconnected after this"},
    {"breaker-failures", "ADAPTER_BREAKER_FAILURES", S_INT, &config.breaker_failures, "consecutive database failures that open the circuit"},
    {"breaker-open-ms", "ADAPTER_BREAKER_OPEN_MS", S_INT, &config.breaker_open_ms, "how long the circuit stays open before probing"},
    {"breaker-probes", "ADAPTER_BREAKER_PROBES", S_INT, &config.breaker_probes, "probes admitted (and successes needed) while half-open"},
    {"breaker-probe-timeout-ms", "ADAPTER_BREAKER_PROBE_TIMEOUT_MS", S_INT, &config.breaker_probe_timeout_ms, "a probe not back after this counts as failed"},
    {"breaker-mode", "ADAPTER_BREAKER_MODE", S_STR, &config.breaker_mode, "auto, open (forced open) or disabled"},
    {"drain-timeout-s", "ADAPTER_DRAIN_TIMEOUT_S", S_INT, &config.drain_timeout_s, "on SIGTERM, wait this long for requests in flight"},
    {"max-event-streams", "ADAPTER_MAX_EVENT_STREAMS", S_INT, &config.max_event_streams, "GET /events streams open at once (each holds a thread; one LISTEN connection serves them all)"},
    {"request-deadline-s", "ADAPTER_REQUEST_DEADLINE_S", S_INT, &config.request_deadline_s, "a request's head, and then its body, must arrive within this however slowly bytes trickle in; 0: no deadline"},
    {"max-connections-per-ip", "ADAPTER_MAX_CONNECTIONS_PER_IP", S_INT, &config.max_connections_per_ip, "connections one client address may hold open (raise it behind a load balancer); 0: no cap"},
    {"sse-max-seconds", "ADAPTER_SSE_MAX_SECONDS", S_INT, &config.sse_max_seconds, "a GET /events stream ends after this long (the client reconnects with Last-Event-ID)"},
    {"log-requests", "ADAPTER_LOG_REQUESTS", S_BOOL, &config.log_requests, "one JSON line per request on stdout (true/false)"},
    {"trusted-proxies", "ADAPTER_TRUSTED_PROXIES", S_STR, &config.trusted_proxies, "load balancers (addresses or IPv4 CIDRs, comma-separated) whose X-Forwarded-For names the client; unset: the peer is the client"},
};
#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

static void
usage(FILE *out)
{
    fprintf(out, "pg_booking_adapter: HTTP adapter for the pg_booking api schema\n\n"
            "Usage: pg_booking_adapter [--setting=value ...]\n\n"
            "Every setting is a flag or an environment variable (flags win):\n");
    for (size_t i = 0; i < NSETTINGS; i++)
    {
        const setting *s = &settings[i];
        char        def[320] = "";

        if (s->kind == S_INT)
            snprintf(def, sizeof(def), " (default %d)", *(int *) s->target);
        else if (s->kind == S_BOOL)
            snprintf(def, sizeof(def), " (default %s)", *(bool *) s->target ? "true" : "false");
        else if (*(const char **) s->target && s->target != &config.jwt_secret)
            snprintf(def, sizeof(def), " (default \"%.300s\")", *(const char **) s->target);
        fprintf(out, "  --%-26s %-33s %s%s\n", s->flag, s->env, s->help, def);
    }
}

static int
assign(const setting *s, const char *value, const char *source)
{
    if (s->kind == S_STR)
        *(const char **) s->target = value;
    else if (s->kind == S_BOOL)
    {
        if (strcmp(value, "true") == 0 || strcmp(value, "1") == 0 || strcmp(value, "on") == 0)
            *(bool *) s->target = true;
        else if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0 || strcmp(value, "off") == 0)
            *(bool *) s->target = false;
        else
            goto bad;
    }
    else
    {
        char       *end;
        long        v;

        errno = 0;
        v = strtol(value, &end, 10);
        if (errno || *value == '\0' || *end != '\0' || v < 0 || v > 1000000000)
            goto bad;
        *(int *) s->target = (int) v;
    }
    return 0;
bad:
    fprintf(stderr, "pg_booking_adapter: invalid value \"%s\" for %s\n", value, source);
    return 2;
}

int
config_load(int argc, char **argv)
{
    for (size_t i = 0; i < NSETTINGS; i++)
    {
        const char *v = getenv(settings[i].env);

        if (v && assign(&settings[i], v, settings[i].env))
            return 2;
    }
    for (int a = 1; a < argc; a++)
    {
        const char *arg = argv[a];
        const char *eq;
        size_t      i;

        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)
        {
            usage(stdout);
            return -1;
        }
        if (strncmp(arg, "--", 2) != 0 || (eq = strchr(arg, '=')) == NULL)
        {
            fprintf(stderr, "pg_booking_adapter: unexpected argument \"%s\"; see --help\n", arg);
            return 2;
        }
        for (i = 0; i < NSETTINGS; i++)
            if (strlen(settings[i].flag) == (size_t) (eq - arg - 2) &&
                strncmp(settings[i].flag, arg + 2, eq - arg - 2) == 0)
                break;
        if (i == NSETTINGS)
        {
            fprintf(stderr, "pg_booking_adapter: unknown setting \"%.*s\"; see --help\n",
                    (int) (eq - arg), arg);
            return 2;
        }
        if (assign(&settings[i], eq + 1, arg))
            return 2;
    }
    if (config.jwt_secret == NULL || strlen(config.jwt_secret) < 32)
    {
        fprintf(stderr, "pg_booking_adapter: the JWT secret is %s; refusing to start\n"
                "Set ADAPTER_JWT_SECRET to the database's pg_booking.jwt_secret (at least 32 bytes).\n",
                config.jwt_secret ? "shorter than 32 bytes" : "missing");
        return 2;
    }
    if (strcmp(config.breaker_mode, "auto") != 0 && strcmp(config.breaker_mode, "open") != 0 &&
        strcmp(config.breaker_mode, "disabled") != 0)
    {
        fprintf(stderr, "pg_booking_adapter: breaker mode \"%s\" is not auto, open or disabled\n",
                config.breaker_mode);
        return 2;
    }
    if (config.pool_size < 1 || config.port < 1 || config.port > 65535)
    {
        fprintf(stderr, "pg_booking_adapter: pool size must be at least 1 and port in 1..65535\n");
        return 2;
    }
    return 0;
}
