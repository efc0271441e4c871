/*
 * metrics.h — Prometheus counters: requests by route and status, latency
 * histogram by route, errors by error_code; breaker and pool read at scrape.
 */
#ifndef ADAPTER_METRICS_H
#define ADAPTER_METRICS_H

#include "breaker.h"

#define METRICS_MAX_ROUTES 256

void        metrics_init(void);
/*
 * The index of a route label ("GET /rooms/{id}"), added on first use: the
 * routes come from the database and may grow while the adapter runs.  Past
 * METRICS_MAX_ROUTES labels, the last one ("other") counts the rest.
 */
int         metrics_route(const char *label);
const char *metrics_route_name(int route);
void        metrics_observe(int route, int status, double ms, const char *error_code);
/* The exposition text (malloc'd). */
char       *metrics_render(breaker *b, int pool_in_use, int pool_size);

#endif
