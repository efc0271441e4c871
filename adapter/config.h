/*
 * config.h — the adapter's settings, from flags and environment variables.
 */
#ifndef ADAPTER_CONFIG_H
#define ADAPTER_CONFIG_H

#include <stdbool.h>

typedef struct adapter_config {
    const char *listen_address;
    int         port;
    const char *conninfo;
    const char *jwt_secret;
    const char *anon_role;
    int         pool_size;
    int         pool_wait_ms;
    int         statement_timeout_ms;
    int         client_timeout_s;
    int         breaker_failures;
    int         breaker_open_ms;
    int         breaker_probes;
    int         breaker_probe_timeout_ms;
    const char *breaker_mode;   /* auto, open, disabled */
    int         drain_timeout_s;
    int         max_event_streams;
    bool        log_requests;
    int         request_deadline_s; /* request head (and body) must arrive within this */
    int         max_connections_per_ip; /* 0: no cap */
    int         sse_max_seconds;    /* an event stream ends after this */
    const char *trusted_proxies;    /* comma list of addresses or IPv4 CIDRs; NULL: none */
} adapter_config;

extern adapter_config config;

/* Returns 0 to go on, or an exit status (after printing help or an error). */
int         config_load(int argc, char **argv);

#endif
