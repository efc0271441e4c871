/*
 * log.c — the request log.  Only the fields below are ever written: never a
 * body, a header, a token, a password or a guest name.
 */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <jansson.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static void
now_iso(char *out, size_t len)
{
    struct timespec ts;
    struct tm   tm;
    char        base[32];

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, len, "%s.%03dZ", base, (int) (ts.tv_nsec / 1000000) % 1000);
}

static void
emit(FILE *f, json_t *o)
{
    char       *line = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));

    if (line)
    {
        pthread_mutex_lock(&log_lock);
        fputs(line, f);
        fputc('\n', f);
        fflush(f);
        pthread_mutex_unlock(&log_lock);
        free(line);
    }
    json_decref(o);
}

void
log_request(const request_log *r)
{
    char        t[64];

    now_iso(t, sizeof(t));
    emit(stdout, json_pack("{s:s, s:s, s:s, s:s, s:i, s:f, s:o, s:o}",
                           "time", t, "request_id", r->request_id, "method", r->method,
                           "route", r->route, "status", r->status, "ms", r->ms,
                           "user_id", r->user_id && r->user_id[0] ? json_string(r->user_id) : json_null(),
                           "error_code", r->error_code ? json_string(r->error_code) : json_null()));
}

void
log_event(const char *level, const char *fmt,...)
{
    char        t[64];
    char        msg[1024];
    va_list     ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    now_iso(t, sizeof(t));
    emit(stderr, json_pack("{s:s, s:s, s:s}", "time", t, "level", level, "message", msg));
}
