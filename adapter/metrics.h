/*
 * metrics.h — the adapter's Prometheus metrics (GET /metrics).
 *
 * Request counters and histograms are updated with atomics on the request
 * path; breaker state and pool use are read from their owners at scrape
 * time.  Labels are bounded: a route is its template from the route table
 * (never a raw path), statuses are grouped by class, upstreams are the
 * database connections the adapter was configured with.
 */
#ifndef ADAPTER_METRICS_H
#define ADAPTER_METRICS_H

#include <stdbool.h>

#include "breaker.h"

#define METRICS_MAX_ROUTES 128
#define METRICS_MAX_UPSTREAMS 4

void        metrics_init(int nroutes, const char *const *route_labels);

/*
 * An upstream (a database the adapter calls: "primary", later "replica"),
 * with its breaker and its pool's figures, read at scrape time.
 */
void        metrics_add_upstream(const char *name, breaker *b, int (*pool_in_use) (void),
                                 int (*pool_size) (void));

/* One answered request (route: label index of routes_labels()). */
void        metrics_observe(int route, int status, double ms, const char *error_code);

/* The pool of upstream: a caller starts or stops waiting for a connection. */
void        metrics_pool_waiting(const char *upstream, int delta);
/* The pool of upstream answered a caller after seconds; got: a connection. */
void        metrics_pool_waited(const char *upstream, double seconds, bool got);

/* The exposition text (malloc'd). */
char       *metrics_render(int requests_in_flight, int sse_clients);

#endif
