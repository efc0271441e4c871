/*
 * metrics.h — Prometheus counters: requests by route and status, latency
 * histogram by route, errors by error_code; breaker and pool read at scrape.
 */
#ifndef ADAPTER_METRICS_H
#define ADAPTER_METRICS_H

#include "breaker.h"

#define METRICS_MAX_ROUTES 128

void        metrics_init(int nroutes, const char *const *route_labels);
void        metrics_observe(int route, int status, double ms, const char *error_code);
/* The exposition text (malloc'd); replica NULL when there is no read replica. */
char       *metrics_render(breaker *b, int pool_in_use, int pool_size, breaker *replica, int replica_in_use);

#endif
