/*
 * routes.h — the route table: method + path pattern -> api function.
 */
#ifndef ADAPTER_ROUTES_H
#define ADAPTER_ROUTES_H

#include <stddef.h>

#define ROUTE_MAX_PARAMS 4

typedef struct route {
    const char *method;
    const char *pattern;        /* "{name}" segments bind the argument "name" */
    const char *function;       /* in schema api */
    int         success;        /* HTTP status on success */
    const char *body_arg;       /* when set, the whole JSON body is this argument */
} route;

typedef struct route_match {
    const route *route;
    int         index;          /* metrics label index */
    int         nparams;
    const char *names[ROUTE_MAX_PARAMS];
    char        values[ROUTE_MAX_PARAMS][128];
} route_match;

/* Special metrics labels, after the table's routes. */
enum { ROUTE_LABEL_RPC = 0, ROUTE_LABEL_HEALTH, ROUTE_LABEL_READY, ROUTE_LABEL_METRICS,
    ROUTE_LABEL_OPENAPI, ROUTE_LABEL_UNMATCHED, ROUTE_NSPECIAL };

int         routes_count(void);     /* table routes + special labels */
const char *const *routes_labels(void);
int         route_label_special(int which);
/* 0: matched; 404: no such path; 405: path known, method not (allow filled). */
int         routes_match(const char *method, const char *path, route_match *m,
                         char *allow, size_t allowlen);
/* The OpenAPI 3 document (malloc'd JSON). */
char       *routes_openapi(void);

#endif
