/*
 * metrics.c — counters updated with atomics on the request path; the text
 * format is built only when /metrics is scraped.
 */
#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double bucket_ms[] = {1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000};
#define NBUCKETS (sizeof(bucket_ms) / sizeof(bucket_ms[0]))
#define MAX_CODES 64

typedef struct route_stats {
    uint64_t    by_status[600];
    uint64_t    buckets[NBUCKETS + 1];
    uint64_t    count;
    uint64_t    sum_us;
} route_stats;

static route_stats *stats;
static int  nroutes;            /* labels in use; only grows */
static char *labels[METRICS_MAX_ROUTES];
static pthread_mutex_t labels_lock = PTHREAD_MUTEX_INITIALIZER;

static pthread_mutex_t codes_lock = PTHREAD_MUTEX_INITIALIZER;
static char codes[MAX_CODES][48];
static uint64_t code_counts[MAX_CODES];
static int  ncodes;

void
metrics_init(void)
{
    stats = calloc(METRICS_MAX_ROUTES, sizeof(route_stats));
}

int
metrics_route(const char *label)
{
    int         i;
    int         n = __atomic_load_n(&nroutes, __ATOMIC_ACQUIRE);

    /* Labels never change once published, so the common case takes no lock. */
    for (i = 0; i < n; i++)
        if (strcmp(labels[i], label) == 0)
            return i;
    pthread_mutex_lock(&labels_lock);
    for (i = 0; i < nroutes && strcmp(labels[i], label) != 0; i++)
        ;
    if (i == nroutes)
    {
        if (nroutes < METRICS_MAX_ROUTES - 1)
            labels[i] = strdup(label);
        else
        {
            i = METRICS_MAX_ROUTES - 1;
            if (nroutes == i)
                labels[i] = strdup("other");
        }
        if (i == nroutes)
            __atomic_store_n(&nroutes, nroutes + 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&labels_lock);
    return i;
}

const char *
metrics_route_name(int route)
{
    return route >= 0 && route < __atomic_load_n(&nroutes, __ATOMIC_ACQUIRE) ? labels[route] : "unmatched";
}

void
metrics_observe(int route, int status, double ms, const char *error_code)
{
    route_stats *r;
    size_t      b = 0;

    if (route < 0 || route >= METRICS_MAX_ROUTES || status < 100 || status >= 600)
        return;
    r = &stats[route];
    __atomic_fetch_add(&r->by_status[status], 1, __ATOMIC_RELAXED);
    while (b < NBUCKETS && ms > bucket_ms[b])
        b++;
    __atomic_fetch_add(&r->buckets[b], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&r->count, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&r->sum_us, (uint64_t) (ms * 1000), __ATOMIC_RELAXED);
    if (error_code)
    {
        int         i;

        pthread_mutex_lock(&codes_lock);
        for (i = 0; i < ncodes && strcmp(codes[i], error_code) != 0; i++)
            ;
        if (i == ncodes && ncodes < MAX_CODES)
            snprintf(codes[ncodes++], sizeof(codes[0]), "%s", error_code);
        if (i < ncodes)
            code_counts[i]++;
        pthread_mutex_unlock(&codes_lock);
    }
}

typedef struct buf {
    char       *s;
    size_t      len;
    size_t      cap;
} buf;

static void
add(buf *b, const char *fmt,...) __attribute__((format(printf, 2, 3)));

static void
add(buf *b, const char *fmt,...)
{
    va_list     ap;
    int         n;

    for (;;)
    {
        va_start(ap, fmt);
        n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t) n < b->cap - b->len)
            break;
        b->cap = b->cap * 2 + (size_t) n + 1;
        b->s = realloc(b->s, b->cap);
    }
    b->len += n;
}

char *
metrics_render(breaker *br, int pool_in_use, int pool_size)
{
    buf         b = {.s = malloc(65536), .cap = 65536};
    breaker_state st;
    uint64_t    tr[3][3];
    uint64_t    rejected;
    int         probes;

    int         nlabels = __atomic_load_n(&nroutes, __ATOMIC_ACQUIRE);

    b.s[0] = '\0';
    add(&b, "# HELP pg_booking_http_requests_total HTTP requests by route and status.\n"
        "# TYPE pg_booking_http_requests_total counter\n");
    for (int r = 0; r < nlabels; r++)
        for (int s = 100; s < 600; s++)
        {
            uint64_t    n = __atomic_load_n(&stats[r].by_status[s], __ATOMIC_RELAXED);

            if (n)
                add(&b, "pg_booking_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                    labels[r], s, (unsigned long long) n);
        }
    add(&b, "# HELP pg_booking_http_request_duration_seconds Request latency by route.\n"
        "# TYPE pg_booking_http_request_duration_seconds histogram\n");
    for (int r = 0; r < nlabels; r++)
    {
        uint64_t    cum = 0;
        uint64_t    count = __atomic_load_n(&stats[r].count, __ATOMIC_RELAXED);

        if (!count)
            continue;
        for (size_t k = 0; k <= NBUCKETS; k++)
        {
            cum += __atomic_load_n(&stats[r].buckets[k], __ATOMIC_RELAXED);
            if (k < NBUCKETS)
                add(&b, "pg_booking_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                    labels[r], bucket_ms[k] / 1000.0, (unsigned long long) cum);
            else
                add(&b, "pg_booking_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
                    labels[r], (unsigned long long) cum);
        }
        add(&b, "pg_booking_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n"
            "pg_booking_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
            labels[r], __atomic_load_n(&stats[r].sum_us, __ATOMIC_RELAXED) / 1e6,
            labels[r], (unsigned long long) count);
    }
    add(&b, "# HELP pg_booking_http_errors_total Error responses by error_code.\n"
        "# TYPE pg_booking_http_errors_total counter\n");
    pthread_mutex_lock(&codes_lock);
    for (int i = 0; i < ncodes; i++)
        add(&b, "pg_booking_http_errors_total{error_code=\"%s\"} %llu\n", codes[i],
            (unsigned long long) code_counts[i]);
    pthread_mutex_unlock(&codes_lock);

    breaker_snapshot(br, &st, tr, &rejected, &probes);
    add(&b, "# HELP pg_booking_breaker_state Circuit breaker state (1 for the current one).\n"
        "# TYPE pg_booking_breaker_state gauge\n");
    for (int s = 0; s < 3; s++)
        add(&b, "pg_booking_breaker_state{state=\"%s\"} %d\n", breaker_state_name(s), (int) st == s);
    add(&b, "# HELP pg_booking_breaker_transitions_total Circuit breaker transitions.\n"
        "# TYPE pg_booking_breaker_transitions_total counter\n");
    for (int f = 0; f < 3; f++)
        for (int t = 0; t < 3; t++)
            if (f != t)
                add(&b, "pg_booking_breaker_transitions_total{from=\"%s\",to=\"%s\"} %llu\n",
                    breaker_state_name(f), breaker_state_name(t), (unsigned long long) tr[f][t]);
    add(&b, "# HELP pg_booking_breaker_rejected_total Requests answered 503 by the open breaker.\n"
        "# TYPE pg_booking_breaker_rejected_total counter\n"
        "pg_booking_breaker_rejected_total %llu\n", (unsigned long long) rejected);
    add(&b, "# HELP pg_booking_db_pool_connections Database connections in use and in total.\n"
        "# TYPE pg_booking_db_pool_connections gauge\n"
        "pg_booking_db_pool_connections{state=\"in_use\"} %d\n"
        "pg_booking_db_pool_connections{state=\"size\"} %d\n", pool_in_use, pool_size);
    return b.s;
}
