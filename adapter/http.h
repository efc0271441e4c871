/*
 * http.h — the HTTP server (libmicrohttpd) and the request pipeline.
 */
#ifndef ADAPTER_HTTP_H
#define ADAPTER_HTTP_H

#include "breaker.h"

extern breaker db_breaker;     /* the primary (ADAPTER_DB) */
extern breaker read_breaker;   /* the read replica (ADAPTER_READ_DSN), when set */

int         http_start(void);
/* Stop accepting, wait up to timeout_s for requests in flight, stop. */
void        http_drain_and_stop(int timeout_s);

#endif
