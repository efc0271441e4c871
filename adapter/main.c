/*
 * main.c — pg_booking_adapter: settings, start, and a clean stop on SIGTERM.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "breaker.h"
#include "config.h"
#include "db.h"
#include "events.h"
#include "http.h"
#include "jwt_auth.h"
#include "log.h"
#include "metrics.h"
#include "routes.h"

int
main(int argc, char **argv)
{
    sigset_t    sigs;
    int         sig = 0;
    int         rc = config_load(argc, argv);

    if (rc)
        return rc < 0 ? 0 : rc;

    /*
     * Signals are blocked in every thread and taken synchronously here, so no
     * handler runs in the middle of a request.
     */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGUSR1);
    sigaddset(&sigs, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    breaker_init(&db_breaker, NULL, config.breaker_failures, (uint64_t) config.breaker_open_ms,
                 config.breaker_probes, (uint64_t) config.breaker_probe_timeout_ms);
    if (strcmp(config.breaker_mode, "open") == 0)
        breaker_set_mode(&db_breaker, BREAKER_FORCE_OPEN);
    else if (strcmp(config.breaker_mode, "disabled") == 0)
        breaker_set_mode(&db_breaker, BREAKER_DISABLED);
    metrics_init(routes_count(), routes_labels());
    metrics_add_upstream("primary", &db_breaker, db_pool_in_use, db_pool_size);
    events_configure(config.max_event_streams, config.client_timeout_s);
    events_set_max_lifetime(config.sse_max_seconds);
    if (db_init(config.conninfo, config.pool_size, config.pool_wait_ms, config.statement_timeout_ms) != 0 ||
        http_start() != 0)
        return 1;
    log_event("info", "listening on %s:%d, pool of %d, breaker %s", config.listen_address, config.port,
              config.pool_size, config.breaker_mode);

    /* SIGUSR1 forces the breaker open, SIGUSR2 gives it back to automatic. */
    for (;;)
    {
        if (sigwait(&sigs, &sig) != 0)
            continue;
        if (sig == SIGUSR1)
        {
            breaker_set_mode(&db_breaker, BREAKER_FORCE_OPEN);
            log_event("info", "breaker forced open (SIGUSR1)");
        }
        else if (sig == SIGUSR2)
        {
            breaker_set_mode(&db_breaker, BREAKER_AUTO);
            log_event("info", "breaker back to automatic (SIGUSR2)");
        }
        else
            break;
    }
    log_event("info", "signal %d: draining requests in flight", sig);
    http_drain_and_stop(config.drain_timeout_s);
    db_shutdown();
    auth_cache_free();
    log_event("info", "stopped");
    return 0;
}
