/*
 * log.h — one JSON line per request on stdout; operator messages on stderr.
 */
#ifndef ADAPTER_LOG_H
#define ADAPTER_LOG_H

typedef struct request_log {
    const char *request_id;
    const char *method;
    const char *route;
    int         status;
    double      ms;
    const char *user_id;        /* may be empty */
    const char *error_code;     /* may be NULL */
} request_log;

void        log_request(const request_log *r);
void        log_event(const char *level, const char *fmt,...) __attribute__((format(printf, 2, 3)));

#endif
