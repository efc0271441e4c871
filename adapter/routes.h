/*
 * routes.h — from a method and a path to an api function and its route.
 *
 * The routes are rows of booking.http_routes, read from the database with
 * the function catalog (db.h); nothing here lists them.
 */
#ifndef ADAPTER_ROUTES_H
#define ADAPTER_ROUTES_H

#include <stddef.h>

#include "db.h"

#define ROUTE_MAX_PARAMS 4

typedef struct route_match {
    const api_function *fn;
    const api_route *route;
    int         nparams;
    char        names[ROUTE_MAX_PARAMS][64];
    char        values[ROUTE_MAX_PARAMS][128];
} route_match;

/*
 * 0: matched (m filled); 404: no such path; 405: the path is known but not
 * the method (allow filled); 503: the catalog could not be read.  HEAD
 * matches the GET route of a path.
 */
int         routes_match(const char *method, const char *path, route_match *m,
                         char *allow, size_t allowlen);
/*
 * The metrics label ("METHOD /template") of a request, from the routes as
 * last read, without asking the database (for answers the breaker gives).
 */
bool        routes_label(const char *method, const char *path, char *label, size_t len);
/* The OpenAPI 3 document (malloc'd JSON), or NULL when the catalog could not be read. */
char       *routes_openapi(void);

#endif
