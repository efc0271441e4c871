/*
 * metrics.c — the adapter's Prometheus metrics.
 *
 * Names follow Prometheus's conventions: a pg_booking_ prefix, the unit in
 * the name (seconds), counters ending in _total, histograms whose buckets
 * resolve 0.5 ms to 5 s.  Every label has a bounded set of values: method
 * and route come from the route table ("/bookings/{id}", never the path a
 * client sent), status is one of the few codes the adapter answers, error
 * codes are capped at MAX_CODES ("OTHER" past that), upstreams are
 * registered at start.  `promtool check metrics` accepts the output
 * (adapter/t/036_prometheus.pl).
 *
 * The request path only does relaxed atomic adds (plus one short mutex to
 * intern a new error code); the text is built when /metrics is scraped.
 */
#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Upper bounds in seconds: 0.5 ms to 5 s. */
static const double bucket_s[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
#define NBUCKETS (sizeof(bucket_s) / sizeof(bucket_s[0]))
#define MAX_CODES 64
#define NSTATUS 600

typedef struct histogram {
    uint64_t    buckets[NBUCKETS + 1];  /* not cumulative; the last is +Inf */
    uint64_t    count;
    uint64_t    sum_us;
} histogram;

typedef struct route_stats {
    uint64_t    by_status[NSTATUS];
    uint64_t    by_code[MAX_CODES];
    uint64_t    rate_limited;
    histogram   latency;
} route_stats;

typedef struct upstream {
    const char *name;
    breaker    *breaker;
    int         (*pool_in_use) (void);
    int         (*pool_size) (void);
    int         waiting;
    uint64_t    exhausted;
    histogram   wait;
} upstream;

static route_stats *stats;
static int  nroutes;
static char **route_method;     /* "POST" of "POST /bookings" */
static char **route_path;       /* "/bookings" */

static pthread_mutex_t codes_lock = PTHREAD_MUTEX_INITIALIZER;
static char codes[MAX_CODES][48];
static int  ncodes;

static upstream upstreams[METRICS_MAX_UPSTREAMS];
static int  nupstreams;
static time_t started_at;

void
metrics_init(int n, const char *const *route_labels)
{
    nroutes = n < METRICS_MAX_ROUTES ? n : METRICS_MAX_ROUTES;
    stats = calloc(nroutes, sizeof(route_stats));
    route_method = calloc(nroutes, sizeof(char *));
    route_path = calloc(nroutes, sizeof(char *));
    /* Labels are "METHOD /template"; the special "unmatched" has no method. */
    for (int i = 0; i < nroutes; i++)
    {
        const char *sp = strchr(route_labels[i], ' ');

        route_method[i] = sp ? strndup(route_labels[i], sp - route_labels[i]) : strdup("ANY");
        route_path[i] = strdup(sp ? sp + 1 : route_labels[i]);
    }
    started_at = time(NULL);
}

void
metrics_add_upstream(const char *name, breaker *b, int (*pool_in_use) (void), int (*pool_size) (void))
{
    if (nupstreams >= METRICS_MAX_UPSTREAMS)
        return;
    upstreams[nupstreams] = (upstream) {.name = name, .breaker = b, .pool_in_use = pool_in_use,
    .pool_size = pool_size};
    nupstreams++;
}

static upstream *
find_upstream(const char *name)
{
    for (int i = 0; i < nupstreams; i++)
        if (strcmp(upstreams[i].name, name) == 0)
            return &upstreams[i];
    return NULL;
}

static void
histogram_observe(histogram *h, double seconds)
{
    size_t      b = 0;

    while (b < NBUCKETS && seconds > bucket_s[b])
        b++;
    __atomic_fetch_add(&h->buckets[b], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&h->count, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&h->sum_us, (uint64_t) (seconds * 1e6), __ATOMIC_RELAXED);
}

/* The index of an error code, interned on first sight; "OTHER" when full. */
static int
code_index(const char *error_code)
{
    char        clean[48];
    size_t      n = 0;
    int         i;

    /* Codes come from SQL: keep them to [A-Z0-9_] so a label needs no escaping. */
    for (const char *p = error_code; *p && n < sizeof(clean) - 1; p++)
        clean[n++] = (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", *p) != NULL) ? *p : '_';
    clean[n] = '\0';
    pthread_mutex_lock(&codes_lock);
    for (i = 0; i < ncodes && strcmp(codes[i], clean) != 0; i++)
        ;
    if (i == ncodes)
    {
        if (ncodes < MAX_CODES - 1)
            snprintf(codes[ncodes++], sizeof(codes[0]), "%s", clean);
        else
        {
            for (i = 0; i < ncodes && strcmp(codes[i], "OTHER") != 0; i++)
                ;
            if (i == ncodes)
                snprintf(codes[ncodes++], sizeof(codes[0]), "OTHER");
        }
    }
    pthread_mutex_unlock(&codes_lock);
    return i;
}

void
metrics_observe(int route, int status, double ms, const char *error_code)
{
    route_stats *r;

    if (route < 0 || route >= nroutes || status < 100 || status >= NSTATUS)
        return;
    r = &stats[route];
    __atomic_fetch_add(&r->by_status[status], 1, __ATOMIC_RELAXED);
    histogram_observe(&r->latency, ms / 1000.0);
    if (error_code)
        __atomic_fetch_add(&r->by_code[code_index(error_code)], 1, __ATOMIC_RELAXED);
    if (status == 429)
        __atomic_fetch_add(&r->rate_limited, 1, __ATOMIC_RELAXED);
}

void
metrics_pool_waiting(const char *name, int delta)
{
    upstream   *u = find_upstream(name);

    if (u)
        __atomic_fetch_add(&u->waiting, delta, __ATOMIC_RELAXED);
}

void
metrics_pool_waited(const char *name, double seconds, bool got)
{
    upstream   *u = find_upstream(name);

    if (!u)
        return;
    histogram_observe(&u->wait, seconds);
    if (!got)
        __atomic_fetch_add(&u->exhausted, 1, __ATOMIC_RELAXED);
}

typedef struct buf {
    char       *s;
    size_t      len;
    size_t      cap;
} buf;

static void add(buf *b, const char *fmt,...) __attribute__((format(printf, 2, 3)));

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

static void
family(buf *b, const char *name, const char *type, const char *help)
{
    add(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static uint64_t
load(const uint64_t *v)
{
    return __atomic_load_n(v, __ATOMIC_RELAXED);
}

/* The series of one histogram; labels is "k=\"v\",..." without braces. */
static void
render_histogram(buf *b, const char *name, const char *labels, const histogram *h)
{
    uint64_t    cum = 0;

    for (size_t k = 0; k <= NBUCKETS; k++)
    {
        cum += load(&h->buckets[k]);
        if (k < NBUCKETS)
            add(b, "%s_bucket{%s,le=\"%g\"} %llu\n", name, labels, bucket_s[k], (unsigned long long) cum);
        else
            add(b, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels, (unsigned long long) cum);
    }
    add(b, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, labels, load(&h->sum_us) / 1e6,
        name, labels, (unsigned long long) load(&h->count));
}

static void
render_requests(buf *b)
{
    char        labels[256];

    family(b, "pg_booking_http_requests_total", "counter",
           "HTTP requests answered, by route template, status class and status.");
    for (int r = 0; r < nroutes; r++)
        for (int s = 100; s < NSTATUS; s++)
        {
            uint64_t    n = load(&stats[r].by_status[s]);

            if (n)
                add(b, "pg_booking_http_requests_total{method=\"%s\",route=\"%s\",status_class=\"%dxx\",status=\"%d\"} %llu\n",
                    route_method[r], route_path[r], s / 100, s, (unsigned long long) n);
        }
    family(b, "pg_booking_http_request_duration_seconds", "histogram",
           "Time from the request's arrival to its answer being queued, by route template.");
    for (int r = 0; r < nroutes; r++)
    {
        if (!load(&stats[r].latency.count))
            continue;
        snprintf(labels, sizeof(labels), "method=\"%s\",route=\"%s\"", route_method[r], route_path[r]);
        render_histogram(b, "pg_booking_http_request_duration_seconds", labels, &stats[r].latency);
    }
    family(b, "pg_booking_http_errors_total", "counter",
           "Error responses by route template and error_code of the envelope.");
    pthread_mutex_lock(&codes_lock);
    for (int r = 0; r < nroutes; r++)
        for (int c = 0; c < ncodes; c++)
        {
            uint64_t    n = load(&stats[r].by_code[c]);

            if (n)
                add(b, "pg_booking_http_errors_total{method=\"%s\",route=\"%s\",error_code=\"%s\"} %llu\n",
                    route_method[r], route_path[r], codes[c], (unsigned long long) n);
        }
    pthread_mutex_unlock(&codes_lock);
    family(b, "pg_booking_http_rate_limited_total", "counter",
           "Requests refused by a rate limit (429), by route template.");
    for (int r = 0; r < nroutes; r++)
        if (load(&stats[r].rate_limited))
            add(b, "pg_booking_http_rate_limited_total{method=\"%s\",route=\"%s\"} %llu\n",
                route_method[r], route_path[r], (unsigned long long) load(&stats[r].rate_limited));
}

static void
render_breakers(buf *b)
{
    breaker_state st[METRICS_MAX_UPSTREAMS];
    uint64_t    tr[METRICS_MAX_UPSTREAMS][3][3];
    uint64_t    rejected[METRICS_MAX_UPSTREAMS];
    int         probes[METRICS_MAX_UPSTREAMS];

    for (int u = 0; u < nupstreams; u++)
        breaker_snapshot(upstreams[u].breaker, &st[u], tr[u], &rejected[u], &probes[u]);
    family(b, "pg_booking_breaker_state", "gauge",
           "Circuit breaker state per upstream: 1 for the current state, 0 for the others.");
    for (int u = 0; u < nupstreams; u++)
        for (int s = 0; s < 3; s++)
            add(b, "pg_booking_breaker_state{upstream=\"%s\",state=\"%s\"} %d\n", upstreams[u].name,
                breaker_state_name(s), (int) st[u] == s);
    family(b, "pg_booking_breaker_transitions_total", "counter", "Circuit breaker transitions per upstream.");
    for (int u = 0; u < nupstreams; u++)
        for (int f = 0; f < 3; f++)
            for (int t = 0; t < 3; t++)
                if (f != t)
                    add(b, "pg_booking_breaker_transitions_total{upstream=\"%s\",from=\"%s\",to=\"%s\"} %llu\n",
                        upstreams[u].name, breaker_state_name(f), breaker_state_name(t),
                        (unsigned long long) tr[u][f][t]);
    family(b, "pg_booking_breaker_rejected_total", "counter",
           "Requests answered 503 CIRCUIT_OPEN without calling the upstream.");
    for (int u = 0; u < nupstreams; u++)
        add(b, "pg_booking_breaker_rejected_total{upstream=\"%s\"} %llu\n", upstreams[u].name,
            (unsigned long long) rejected[u]);
    family(b, "pg_booking_breaker_probes_in_flight", "gauge", "Half-open probe calls not answered yet.");
    for (int u = 0; u < nupstreams; u++)
        add(b, "pg_booking_breaker_probes_in_flight{upstream=\"%s\"} %d\n", upstreams[u].name, probes[u]);
}

static void
render_pools(buf *b)
{
    char        labels[96];

    family(b, "pg_booking_db_pool_connections_in_use", "gauge", "Pool connections lent to a request now.");
    for (int u = 0; u < nupstreams; u++)
        add(b, "pg_booking_db_pool_connections_in_use{upstream=\"%s\"} %d\n", upstreams[u].name,
            upstreams[u].pool_in_use());
    family(b, "pg_booking_db_pool_connections_max", "gauge", "Pool size: connections the adapter may open.");
    for (int u = 0; u < nupstreams; u++)
        add(b, "pg_booking_db_pool_connections_max{upstream=\"%s\"} %d\n", upstreams[u].name,
            upstreams[u].pool_size());
    family(b, "pg_booking_db_pool_waiters", "gauge", "Requests waiting for a pool connection now.");
    for (int u = 0; u < nupstreams; u++)
        add(b, "pg_booking_db_pool_waiters{upstream=\"%s\"} %d\n", upstreams[u].name,
            __atomic_load_n(&upstreams[u].waiting, __ATOMIC_RELAXED));
    family(b, "pg_booking_db_pool_wait_seconds", "histogram", "Time a request waited for a pool connection.");
    for (int u = 0; u < nupstreams; u++)
    {
        snprintf(labels, sizeof(labels), "upstream=\"%s\"", upstreams[u].name);
        render_histogram(b, "pg_booking_db_pool_wait_seconds", labels, &upstreams[u].wait);
    }
    family(b, "pg_booking_db_pool_exhausted_total", "counter",
           "Requests that found no free connection within the pool wait (answered 503).");
    for (int u = 0; u < nupstreams; u++)
        add(b, "pg_booking_db_pool_exhausted_total{upstream=\"%s\"} %llu\n", upstreams[u].name,
            (unsigned long long) load(&upstreams[u].exhausted));
}

char *
metrics_render(int requests_in_flight, int sse_clients)
{
    buf         b = {.s = malloc(65536), .cap = 65536};

    b.s[0] = '\0';
    family(&b, "pg_booking_build_info", "gauge", "Always 1; the labels say which build answers.");
    add(&b, "pg_booking_build_info{version=\"%s\"} 1\n", PGB_VERSION);
    family(&b, "process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch in seconds.");
    add(&b, "process_start_time_seconds %lld\n", (long long) started_at);
    family(&b, "pg_booking_http_requests_in_flight", "gauge",
           "Requests being handled now (event streams included, this scrape too).");
    add(&b, "pg_booking_http_requests_in_flight %d\n", requests_in_flight);
    family(&b, "pg_booking_sse_clients", "gauge", "Clients connected to the event stream (GET /events).");
    add(&b, "pg_booking_sse_clients %d\n", sse_clients);
    render_requests(&b);
    render_breakers(&b);
    render_pools(&b);
    return b.s;
}
