/*
 * db.h — the libpq connection pool, the catalog of api functions, and one
 * call of an api function in one transaction.
 */
#ifndef ADAPTER_DB_H
#define ADAPTER_DB_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { ARG_TEXT, ARG_INT, ARG_NUMERIC, ARG_BOOL, ARG_JSON, ARG_TEXT_ARRAY, ARG_INT_ARRAY, ARG_OTHER } arg_kind;

/* One row of booking.http_routes: the route is declared in SQL, next to its function. */
typedef struct api_route {
    char       *method;
    char       *path;           /* "{name}" segments bind the argument "name" */
    char       *operation_id;
    char       *body_argument;  /* when set, the whole JSON body is this argument */
    int         success;        /* HTTP status on success */
    bool        is_public;      /* no token needed */
    bool        event_stream;   /* GET with Accept: text/event-stream streams events */
    char       *produces;       /* Content-Type of the success answer (application/json unless declared) */
} api_route;

/* One row of booking.http_functions. */
typedef struct api_function {
    char       *name;
    int         nargs;
    int         nrequired;      /* the first nrequired arguments have no default */
    char      **argnames;
    char      **httpnames;      /* what HTTP clients call them (lim: limit, off: offset) */
    char      **argtypes;       /* format_type() */
    arg_kind   *argkinds;
    bool        writes;         /* VOLATILE: never called with GET */
    char       *comment;
    char       *result_schema;  /* JSON schema of the success answer (booking.http_results), or NULL */
    bool        stable;         /* STABLE or IMMUTABLE: a GET may run it on the read replica */
    int         nroutes;
    api_route  *routes;
} api_function;

typedef enum {
    DB_OK,                      /* value holds the function's jsonb, as text */
    DB_SQL_ERROR,               /* the server raised an error: sqlstate etc. */
    DB_CONNECTION_FAILED,       /* could not connect, or the connection broke */
    DB_POOL_BUSY                /* no free connection in time */
} db_status;

typedef struct db_result {
    db_status   status;
    char       *value;          /* NULL when the function returned NULL */
    char       *headers;        /* response.headers set by the call (JSON), or NULL */
    char        sqlstate[6];
    char       *message;
    char       *detail;
    char       *hint;
} db_result;

typedef struct db_call {
    const char *role;
    const char *claims;         /* JSON text or "" */
    const char *request_id;
    const char *client_ip;
    bool        read_only;
    bool        on_replica;     /* run on the read replica's pool (when there is one) */
    const api_function *fn;
    int         nargs;
    const char *argnames[64];
    const char *argvalues[64];  /* NULL: SQL NULL */
} db_call;

int         db_init(const char *conninfo, int pool_size, int wait_ms, int statement_timeout_ms);
/* A second pool, on the read replica (ADAPTER_READ_DSN). */
int         db_init_read(const char *conninfo, int pool_size, int wait_ms, int statement_timeout_ms);
bool        db_has_read_pool(void);
void        db_shutdown(void);
void        db_call_function(const db_call *call, db_result *out);
void        db_result_free(db_result *r);
/* Cheap check that the database answers: used by /ready. */
bool        db_ping(char *why, size_t whylen);
/* The same, saying why not: DB_OK, DB_CONNECTION_FAILED or DB_POOL_BUSY. */
db_status   db_check(char *why, size_t whylen);
/* Whether the read replica answers (with a read DSN). */
bool        db_ping_read(char *why, size_t whylen);
int         db_pool_in_use(void);
int         db_pool_size(void);
int         db_read_pool_in_use(void);
int         db_read_pool_size(void);

/* Catalog of the api schema, loaded on first use and reloaded on a miss. */
const api_function *db_find_function(const char *name);
/*
 * Every known function (*n of them), refreshed like db_find_function.  The
 * array stays valid until db_shutdown (a replaced catalog is kept).
 */
const api_function *db_functions(int *n);
/* The same, as last read, never asking the database (NULL before the first read). */
const api_function *db_functions_cached(int *n);
/* The named result schemas (booking.http_schemas) as one JSON object, or NULL. */
const char *db_result_schemas(void);
/* May a token name this database role (booking.http_token_roles)? */
bool        db_role_allowed(const char *role);
bool        db_catalog_loaded(void);
/* Read the catalog again before the next call (after a 42883). */
void        db_catalog_invalidate(void);

#endif
