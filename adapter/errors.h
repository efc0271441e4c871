/*
 * errors.h — from a database answer to an HTTP status and the error envelope.
 */
#ifndef ADAPTER_ERRORS_H
#define ADAPTER_ERRORS_H

#include <stdbool.h>
#include <jansson.h>

typedef struct http_error {
    int         status;
    const char *error_code;     /* static string, or owned by details */
    char        code_buf[64];
    char       *message;        /* malloc'd */
    json_t     *details;        /* object, owned */
    int         retry_after;    /* seconds; 0: none */
} http_error;

/* Map a SQL error (SQLSTATE, message, detail) to HTTP, as PostgREST does. */
void        error_from_sql(http_error *e, const char *sqlstate, const char *message,
                           const char *detail, const char *hint, bool anonymous);
/* True when the SQLSTATE says the database (not the request) is in trouble. */
bool        sqlstate_is_outage(const char *sqlstate);
void        error_set(http_error *e, int status, const char *code, const char *fmt,...)
            __attribute__((format(printf, 4, 5)));
/* The envelope as a malloc'd JSON string. */
char       *error_envelope(http_error *e, const char *request_id);

void        error_free(http_error *e);
/* Replace invalid UTF-8 in s (in place); a character cut at the end is dropped. */
void        utf8_make_valid(char *s);
/* A new random request id (a UUID's shape). */
void        request_id_new(char *out, size_t len);

#endif
