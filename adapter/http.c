/*
 * http.c — from an HTTP request to one api call and back.
 *
 * Per request: match the route (404/405 first), read the token, turn path,
 * query and body into named arguments checked against the function's
 * signature, take a breaker permit, run the call in one transaction, map
 * the answer.  Every path through handle() ends in respond(), which gives
 * the permit back, counts, logs and sends.
 */
#include "http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "config.h"
#include "conn_guard.h"
#include "db.h"
#include "errors.h"
#include "events.h"
#include "jwt_auth.h"
#include "log.h"
#include "metrics.h"
#include "mhd_envelope.h"
#include "routes.h"

#define MAX_BODY (1024 * 1024)
/* Past these the request is refused before anything is parsed further. */
#define MAX_URI_BYTES 8192
#define MAX_QUERY_PARAMS 100
/*
 * Memory libmicrohttpd may use per connection for the request head and its
 * parsed parameters, headers and cookies: its default, said explicitly.
 * Its parameters are the risk: a few hundred exhaust it and the library
 * closes without a word, which is why on_request_line answers more than
 * MAX_QUERY_PARAMS before the library parses them.  Do not raise it: with
 * 256 KiB, 50,000 parameters or a Cookie header of 20,000 pairs crash
 * 0.9.75 (SEGV in MHD_http_unescape once the pool runs out); at 32 KiB the
 * same exhaustion comes while the head is read (431, or a silent close).
 */
#define CONNECTION_MEMORY (32 * 1024)

breaker db_breaker;
breaker read_breaker;
static struct MHD_Daemon *daemon_handle;
static int in_flight;

typedef struct request {
    char       *body;
    size_t      len;
    bool        too_big;
    struct timespec started;
    unsigned long long started_ms;  /* guard clock: the body deadline counts from here */
} request;

/* Everything handle() decides, sent by respond(). */
typedef struct reply {
    int         status;
    char       *body;           /* malloc'd JSON, or NULL */
    const char *content_type;
    char        allow[64];
    bool        www_authenticate;
    int         retry_after;
    const char *error_code;
    char        error_code_buf[64];
    int         route_label;
    char        request_id[80];
    char        user_id[64];
    breaker     *breaker;       /* whose permit: db_breaker, or read_breaker for the replica */
    breaker_permit permit;
    breaker_outcome outcome;
    const char *read_from;      /* X-Read-From of a GET's answer: "primary" or "replica" */
    json_t     *headers;        /* response.headers from SQL: [{"Name": "value"}, ...] */
    struct MHD_Response *stream;    /* GET /events as text/event-stream */
} reply;

static void
fail(reply *r, http_error *e)
{
    r->status = e->status;
    r->retry_after = e->retry_after;
    snprintf(r->error_code_buf, sizeof(r->error_code_buf), "%s", e->error_code ? e->error_code : "INTERNAL_ERROR");
    r->error_code = r->error_code_buf;
    free(r->body);
    r->body = error_envelope(e, r->request_id);
    /* Headers the SQL asked for in its error (DETAIL's "headers"), e.g. Retry-After. */
    if (json_is_array(e->headers) && json_array_size(e->headers))
    {
        if (!json_is_array(r->headers))
        {
            json_decref(r->headers);
            r->headers = json_array();
        }
        json_array_extend(r->headers, e->headers);
    }
    error_free(e);
}

static void
fail_with(reply *r, int status, const char *code, const char *message, json_t *details)
{
    http_error  e = {0};

    error_set(&e, status, code, "%s", message);
    if (details)
    {
        json_decref(e.details);
        e.details = details;
    }
    if (status == 503)
        e.retry_after = 1;
    fail(r, &e);
}

static double
ms_since(const struct timespec *t0)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1e3 + (t.tv_nsec - t0->tv_nsec) / 1e6;
}

static enum MHD_Result
respond(struct MHD_Connection *conn, const char *method, request *req, reply *r)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;
    double      ms;
    char        num[16];

    /* The permit goes back on every path: success, error or abandon. */
    breaker_release(r->breaker, &r->permit, r->outcome);

    if (r->status == 204)
    {
        free(r->body);
        r->body = NULL;
    }
    if (r->stream)
    {
        resp = r->stream;
        free(r->body);
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
    }
    else
    {
        resp = MHD_create_response_from_buffer(r->body ? strlen(r->body) : 0, r->body ? r->body : (void *) "",
                                               r->body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
        if (r->status != 204)
            MHD_add_response_header(resp, "Content-Type", r->content_type ? r->content_type : "application/json");
    }
    r->body = NULL;
    MHD_add_response_header(resp, "X-Request-Id", r->request_id);
    if (r->allow[0])
        MHD_add_response_header(resp, "Allow", r->allow);
    if (r->read_from)
        MHD_add_response_header(resp, "X-Read-From", r->read_from);
    if (r->www_authenticate)
        MHD_add_response_header(resp, "WWW-Authenticate", "Bearer realm=\"pg_booking\", error=\"invalid_token\"");
    /* Headers the SQL asked for (PostgREST's response.headers), e.g. RateLimit-*. */
    if (json_is_array(r->headers))
    {
        size_t      i;
        json_t     *h;

        json_array_foreach(r->headers, i, h)
        {
            const char *k;
            json_t     *v;

            json_object_foreach(h, k, v)
                if (json_is_string(v) && strlen(k) < 64 &&
                    strspn(k, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-") == strlen(k) &&
                    strpbrk(json_string_value(v), "\r\n") == NULL)
                    MHD_add_response_header(resp, k, json_string_value(v));
        }
    }
    json_decref(r->headers);
    r->headers = NULL;
    /* The adapter's own 503s; a 429's Retry-After is the SQL's (DETAIL "headers"). */
    if (r->status == 503)
    {
        snprintf(num, sizeof(num), "%d", r->retry_after > 0 ? r->retry_after : 1);
        MHD_add_response_header(resp, "Retry-After", num);
    }
    ret = MHD_queue_response(conn, r->status, resp);
    MHD_destroy_response(resp);

    ms = ms_since(&req->started);
    metrics_observe(r->route_label, r->status, ms, r->error_code);
    if (config.log_requests)
    {
        request_log l = {r->request_id, method, metrics_route_name(r->route_label), r->status, ms,
        r->user_id, r->error_code};

        log_request(&l);
    }
    return ret;
}

static bool
request_id_acceptable(const char *s)
{
    size_t      n = strlen(s);

    return n > 0 && n <= 64 &&
        strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:") == n;
}

/* Is addr (text) one of the trusted proxies: an exact address or an IPv4 CIDR? */
static bool
is_trusted_proxy(const char *addr)
{
    const char *p = config.trusted_proxies;
    struct in_addr a4;
    bool        is_v4 = inet_pton(AF_INET, addr, &a4) == 1;

    while (p && *p)
    {
        char        item[64];
        size_t      n = strcspn(p, ",");
        char       *slash;

        if (n > 0 && n < sizeof(item))
        {
            memcpy(item, p, n);
            item[n] = '\0';
            slash = strchr(item, '/');
            if (!slash && strcmp(item, addr) == 0)
                return true;
            if (slash && is_v4)
            {
                struct in_addr net;
                int         bits = atoi(slash + 1);

                *slash = '\0';
                if (bits >= 0 && bits <= 32 && inet_pton(AF_INET, item, &net) == 1)
                {
                    uint32_t    mask = bits == 0 ? 0 : htonl(~(uint32_t) 0 << (32 - bits));

                    if ((a4.s_addr & mask) == (net.s_addr & mask))
                        return true;
                }
            }
        }
        p += n;
        if (*p == ',')
            p++;
    }
    return false;
}

/*
 * The client's address, which per-IP rate limits key on.  Behind a trusted
 * load balancer it is the last address that balancer appended to
 * X-Forwarded-For; from anyone else the header is ignored, so a client
 * cannot choose its own key.
 */
static void
client_ip(struct MHD_Connection *conn, char *out, size_t len)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const char *xff;

    snprintf(out, len, "unknown");
    if (!ci || !ci->client_addr)
        return;
    if (ci->client_addr->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *) ci->client_addr)->sin_addr, out, len);
    else if (ci->client_addr->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *) ci->client_addr)->sin6_addr, out, len);

    xff = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Forwarded-For");
    if (xff && config.trusted_proxies && is_trusted_proxy(out))
    {
        const char *last = strrchr(xff, ',');
        char        candidate[INET6_ADDRSTRLEN + 1];
        unsigned char buf[sizeof(struct in6_addr)];
        size_t      n;

        last = last ? last + 1 : xff;
        last += strspn(last, " \t");
        n = strcspn(last, " \t");
        if (n > 0 && n < sizeof(candidate))
        {
            memcpy(candidate, last, n);
            candidate[n] = '\0';
            /* Only a well-formed address replaces the peer's. */
            if (inet_pton(AF_INET, candidate, buf) == 1 || inet_pton(AF_INET6, candidate, buf) == 1)
                snprintf(out, len, "%s", candidate);
        }
    }
}

/* Arguments being gathered for one call. */
typedef struct args {
    db_call     call;
    char       *owned[64];
    int         nowned;
    const api_function *fn;
    http_error  err;
    bool        failed;
} args;

static void
args_fail(args *a, int status, const char *field, const char *fmt, const char *value)
{
    if (a->failed)
        return;
    a->failed = true;
    error_set(&a->err, status, status == 400 ? "BAD_REQUEST" : "VALIDATION_ERROR", fmt, value);
    if (field)
        json_object_set_new(a->err.details, "field", json_string(field));
}

static const char *
keep(args *a, char *s)
{
    if (a->nowned < 64)
        a->owned[a->nowned++] = s;
    return s;
}

static void
args_free(args *a)
{
    for (int i = 0; i < a->nowned; i++)
        free(a->owned[i]);
    error_free(&a->err);
}

/* An argument by its name or by its HTTP name (booking.http_functions). */
static int
arg_index(const api_function *f, const char *name)
{
    for (int i = 0; i < f->nargs; i++)
        if (strcmp(f->argnames[i], name) == 0 || strcmp(f->httpnames[i], name) == 0)
            return i;
    return -1;
}

static void
args_add(args *a, const char *name, const char *value)
{
    int         i = arg_index(a->fn, name);

    if (a->failed)
        return;
    if (i < 0)
    {
        args_fail(a, 422, name, "unknown field \"%s\"", name);
        return;
    }
    for (int k = 0; k < a->call.nargs; k++)
        if (strcmp(a->call.argnames[k], a->fn->argnames[i]) == 0)
        {
            args_fail(a, 422, name, "field \"%s\" is given twice", name);
            return;
        }
    if (a->call.nargs >= 64)
    {
        args_fail(a, 422, name, "too many fields (at most 64), at \"%s\"", name);
        return;
    }
    a->call.argnames[a->call.nargs] = a->fn->argnames[i];
    a->call.argvalues[a->call.nargs] = value;
    a->call.nargs++;
}

/* A JSON array of strings as a PostgreSQL array literal. */
static char *
text_array_literal(json_t *arr)
{
    size_t      cap = 16, len = 0;
    char       *out = malloc(cap);
    size_t      i;
    json_t     *v;

    out[len++] = '{';
    json_array_foreach(arr, i, v)
    {
        const char *s = json_string_value(v);
        size_t      need = strlen(s) * 2 + 4;

        if (len + need + 2 > cap)
        {
            cap = (len + need + 2) * 2;
            out = realloc(out, cap);
        }
        if (i)
            out[len++] = ',';
        out[len++] = '"';
        for (; *s; s++)
        {
            if (*s == '"' || *s == '\\')
                out[len++] = '\\';
            out[len++] = *s;
        }
        out[len++] = '"';
    }
    out[len++] = '}';
    out[len] = '\0';
    return out;
}

/* One JSON body value, checked against the argument's type. */
static void
args_add_json(args *a, const char *name, json_t *v)
{
    int         i = arg_index(a->fn, name);
    char        buf[64];
    arg_kind    k;

    if (i < 0)
    {
        args_fail(a, 422, name, "unknown field \"%s\"", name);
        return;
    }
    k = a->fn->argkinds[i];
    if (json_is_null(v))
    {
        args_add(a, name, NULL);
        return;
    }
    switch (k)
    {
        case ARG_INT:
            if (!json_is_integer(v))
                goto wrong;
            snprintf(buf, sizeof(buf), "%lld", (long long) json_integer_value(v));
            args_add(a, name, keep(a, strdup(buf)));
            return;
        case ARG_NUMERIC:
            if (!json_is_number(v))
                goto wrong;
            snprintf(buf, sizeof(buf), "%.17g", json_number_value(v));
            args_add(a, name, keep(a, strdup(buf)));
            return;
        case ARG_BOOL:
            if (!json_is_boolean(v))
                goto wrong;
            args_add(a, name, json_is_true(v) ? "true" : "false");
            return;
        case ARG_TEXT:
            if (!json_is_string(v))
                goto wrong;
            args_add(a, name, json_string_value(v));
            return;
        case ARG_TEXT_ARRAY:
            {
                size_t      j;
                json_t     *e;

                if (!json_is_array(v))
                    goto wrong;
                json_array_foreach(v, j, e)
                    if (!json_is_string(e))
                    goto wrong;
                args_add(a, name, keep(a, text_array_literal(v)));
                return;
            }
        case ARG_INT_ARRAY:
            {
                size_t      j;
                json_t     *e;

                if (!json_is_array(v))
                    goto wrong;
                json_array_foreach(v, j, e)
                    if (!json_is_integer(e))
                    goto wrong;
                /* [1,2,3] -> {1,2,3} */
                {
                    char       *d = json_dumps(v, JSON_COMPACT);

                    d[0] = '{';
                    d[strlen(d) - 1] = '}';
                    args_add(a, name, keep(a, d));
                }
                return;
            }
        case ARG_JSON:
            args_add(a, name, keep(a, json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY)));
            return;
        case ARG_OTHER:
            if (json_is_string(v))
                args_add(a, name, json_string_value(v));
            else if (json_is_number(v) || json_is_boolean(v))
                args_add(a, name, keep(a, json_dumps(v, JSON_ENCODE_ANY)));
            else
                goto wrong;
            return;
    }
wrong:
    if (!a->failed)
    {
        a->failed = true;
        error_set(&a->err, 422, "VALIDATION_ERROR", "field \"%s\" must be of type %s", name, a->fn->argtypes[i]);
        json_object_set_new(a->err.details, "field", json_string(name));
        json_object_set_new(a->err.details, "expected", json_string(a->fn->argtypes[i]));
    }
}

/*
 * A comma-separated query list as an array literal, element by element:
 * integers must be integers, text is quoted, so nothing in the value can
 * shape the literal (?users={1},{2} is refused, not spliced).  NULL after
 * args_fail when an element is not acceptable.
 */
static char *
query_list_literal(args *a, const char *key, bool integers, const char *value)
{
    /* Worst case: every byte escaped, every element quoted. */
    char       *out = malloc(strlen(value) * 5 + 8);
    size_t      len = 0;
    const char *p = value;

    if (!out)
        return NULL;
    out[len++] = '{';
    while (*value)              /* an empty value is the empty list */
    {
        size_t      n = strcspn(p, ",");
        size_t      digits = n > 0 && p[0] == '-' ? 1 : 0;

        if (integers && (n == 0 || n - digits > 18 || n == digits ||
                         strspn(p + digits, "0123456789") < n - digits))
        {
            free(out);
            args_fail(a, 422, key, "query parameter \"%s\" must be a comma-separated list of integers", key);
            json_object_set_new(a->err.details, "value", json_stringn(value, strlen(value)));
            return NULL;
        }
        if (len > 1)
            out[len++] = ',';
        if (!integers)
            out[len++] = '"';
        for (size_t k = 0; k < n; k++)
        {
            if (!integers && (p[k] == '"' || p[k] == '\\'))
                out[len++] = '\\';
            out[len++] = p[k];
        }
        if (!integers)
            out[len++] = '"';
        if (p[n] == '\0')
            break;
        p += n + 1;             /* after a trailing comma: one more, empty, element */
    }
    out[len++] = '}';
    out[len] = '\0';
    return out;
}

/*
 * Lists in a query string: comma separated (?users=1,2,3), repeated keys
 * (?users=1&users=2, what OpenAPI's form style sends), or both; each part
 * goes through query_list_literal.
 */
static void
args_add_query_list(args *a, const char *key, int i, const char *value)
{
    char       *part = query_list_literal(a, key, a->fn->argkinds[i] == ARG_INT_ARRAY, value);

    if (!part)
        return;
    for (int k = 0; k < a->call.nargs; k++)
        if (strcmp(a->call.argnames[k], a->fn->argnames[i]) == 0 && a->call.argvalues[k] &&
            a->call.argvalues[k][0] == '{')
        {
            const char *old = a->call.argvalues[k];
            size_t      len = strlen(old);
            size_t      plen = strlen(part);
            char       *merged = malloc(len + plen + 2);

            /* "{1,2}" + "{3}" -> "{1,2,3}" */
            sprintf(merged, "%.*s%s%.*s}", (int) (len - 1), old, len > 2 && plen > 2 ? "," : "",
                    (int) (plen - 2), part + 1);
            free(part);
            a->call.argvalues[k] = keep(a, merged);
            return;
        }
    args_add(a, key, keep(a, part));
}

static enum MHD_Result
collect_query(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    args       *a = cls;
    int         i = arg_index(a->fn, key);

    (void) kind;
    if (i >= 0 && value && (a->fn->argkinds[i] == ARG_INT_ARRAY || a->fn->argkinds[i] == ARG_TEXT_ARRAY))
        args_add_query_list(a, key, i, value);
    else
        args_add(a, key, value ? value : "");
    return a->failed ? MHD_NO : MHD_YES;
}

static void
args_check_required(args *a)
{
    for (int i = 0; i < a->fn->nrequired && !a->failed; i++)
    {
        bool        given = false;

        for (int k = 0; k < a->call.nargs; k++)
            given |= strcmp(a->call.argnames[k], a->fn->argnames[i]) == 0;
        if (!given)
            args_fail(a, 422, a->fn->httpnames[i], "field \"%s\" is required", a->fn->httpnames[i]);
    }
}

static bool
wants_event_stream(struct MHD_Connection *conn)
{
    const char *accept = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept");

    return accept && strstr(accept, "text/event-stream") != NULL;
}

/* X-Read-From: primary — read your own writes (the replica may lag). */
static bool
wants_primary(struct MHD_Connection *conn)
{
    const char *from = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Read-From");

    return from && strcasecmp(from, "primary") == 0;
}

/*
 * /ready goes through the breaker like any database call: once the open
 * timeout has passed it is a probe, so a monitor that polls only /ready
 * still sees the database come back within one open period.  Ready means
 * the primary answers (writes need it); the read replica, when configured,
 * is reported but never makes the adapter unready, since its GETs fall back
 * to the primary.
 */
static void
handle_ready(reply *r)
{
    char        why[128] = "";
    db_status   st;
    json_t     *info = json_object();

    if (db_has_read_pool())
    {
        breaker_state rst = breaker_current(&read_breaker);
        char        rwhy[128] = "";

        json_object_set_new(info, "replica_breaker", json_string(breaker_state_name(rst)));
        json_object_set_new(info, "replica", json_string(rst != BREAKER_OPEN && db_ping_read(rwhy, sizeof(rwhy)) ?
                                                         "ready" : "unavailable"));
    }
    r->permit = breaker_acquire(&db_breaker);
    if (!r->permit.admitted)
    {
        json_object_set_new(info, "breaker", json_string(breaker_state_name(breaker_current(&db_breaker))));
        fail_with(r, 503, "NOT_READY", "the circuit breaker is open", info);
        r->retry_after = (int) ((r->permit.retry_after_ms + 999) / 1000);
        return;
    }
    st = db_check(why, sizeof(why));
    r->outcome = st == DB_OK ? BREAKER_SUCCESS : st == DB_POOL_BUSY ? BREAKER_ABANDONED : BREAKER_FAILURE;
    if (st != DB_OK)
    {
        json_object_set_new(info, "breaker", json_string(breaker_state_name(breaker_current(&db_breaker))));
        fail_with(r, 503, "NOT_READY", why, info);
        return;
    }
    json_object_set_new(info, "status", json_string("ready"));
    json_object_set_new(info, "breaker", json_string(r->permit.probe ? "half_open" : "closed"));
    r->status = 200;
    r->body = json_dumps(info, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(info);
}

static void
fail_circuit_open(reply *r)
{
    http_error  e = {0};

    error_set(&e, 503, "CIRCUIT_OPEN", "the database circuit is open");
    e.retry_after = (int) ((r->permit.retry_after_ms + 999) / 1000);
    json_object_set_new(e.details, "retry_after_ms", json_integer((json_int_t) r->permit.retry_after_ms));
    fail(r, &e);
}

/*
 * A permit of the upstream's breaker: the replica's when the request may go
 * there, else (or when the replica's breaker is open) the primary's.  Each
 * upstream has its own breaker, so an unreachable replica never stops the
 * writes, and an unreachable primary never stops the reads the replica
 * serves.  False when refused.
 */
static bool
take_permit(reply *r, bool replica)
{
    breaker_release(r->breaker, &r->permit, BREAKER_ABANDONED);
    r->breaker = replica ? &read_breaker : &db_breaker;
    r->permit = breaker_acquire(r->breaker);
    if (!r->permit.admitted && replica)
    {
        r->breaker = &db_breaker;
        r->permit = breaker_acquire(r->breaker);
    }
    return r->permit.admitted;
}

/* The replica did not answer at all (not: answered with an error). */
static bool
replica_unavailable(const db_result *res)
{
    return res->status == DB_CONNECTION_FAILED || res->status == DB_POOL_BUSY ||
        (res->status == DB_SQL_ERROR && (strncmp(res->sqlstate, "08", 2) == 0 ||
                                         strncmp(res->sqlstate, "53", 2) == 0 ||
                                         strncmp(res->sqlstate, "57P0", 4) == 0));
}

/*
 * Run the call on the upstream r holds a permit of.  A replica that cannot
 * answer is told to its breaker, and the primary answers instead.  False
 * when the primary's breaker then refuses.
 */
static bool
call_upstream(reply *r, db_call *call, db_result *res)
{
    call->on_replica = r->breaker == &read_breaker;
    db_call_function(call, res);
    if (call->on_replica && replica_unavailable(res))
    {
        r->outcome = res->status == DB_POOL_BUSY ? BREAKER_ABANDONED : BREAKER_FAILURE;
        breaker_release(r->breaker, &r->permit, r->outcome);
        r->permit = (breaker_permit) {0};
        r->outcome = BREAKER_ABANDONED;
        db_result_free(res);
        if (!take_permit(r, false))
            return false;
        call->on_replica = false;
        db_call_function(call, res);
    }
    if (call->read_only && db_has_read_pool())
        r->read_from = call->on_replica ? "replica" : "primary";
    return true;
}

/* The adapter's own endpoints: no token, no database (but /ready and /openapi.json). */
static bool
handle_operations(const char *url, bool is_get, reply *r)
{
    static const char *const ops[] = {"/health", "/ready", "/metrics", "/openapi.json"};
    char        label[64];
    size_t      i;

    for (i = 0; i < sizeof(ops) / sizeof(ops[0]) && strcmp(url, ops[i]) != 0; i++)
        ;
    if (i == sizeof(ops) / sizeof(ops[0]))
        return false;
    snprintf(label, sizeof(label), "GET %s", ops[i]);
    r->route_label = metrics_route(label);
    if (!is_get)
    {
        snprintf(r->allow, sizeof(r->allow), "GET, HEAD");
        fail_with(r, 405, "METHOD_NOT_ALLOWED", "method not allowed", json_pack("{s:s}", "allow", r->allow));
    }
    else if (i == 0)
    {
        r->status = 200;
        r->body = strdup("{\"status\":\"ok\"}");
    }
    else if (i == 1)
        handle_ready(r);
    else if (i == 2)
    {
        r->status = 200;
        r->content_type = "text/plain; version=0.0.4";
        r->body = metrics_render(__atomic_load_n(&in_flight, __ATOMIC_SEQ_CST), events_streams_open());
    }
    else
    {
        r->permit = breaker_acquire(&db_breaker);
        if (!r->permit.admitted)
            fail_with(r, 503, "CIRCUIT_OPEN", "the database circuit is open", NULL);
        else if (!(r->body = routes_openapi()))
        {
            r->outcome = BREAKER_FAILURE;
            fail_with(r, 503, "DATABASE_UNAVAILABLE", "the database is unavailable", NULL);
        }
        else
        {
            r->outcome = BREAKER_SUCCESS;
            r->status = 200;
        }
    }
    return true;
}

/* What a request calls: a route of booking.http_routes, or /rpc/<function>. */
typedef struct target {
    route_match m;              /* m.route is NULL for /rpc */
    const api_function *fn;
    int         success;
} target;

static void
catalog_unavailable(reply *r)
{
    r->outcome = BREAKER_FAILURE;
    fail_with(r, 503, "DATABASE_UNAVAILABLE", "the database is unavailable", NULL);
}

/* Only a STABLE or IMMUTABLE function reads nothing but replicated data. */
static bool
stays_on_upstream(const target *t, reply *r)
{
    if (r->breaker == &read_breaker && !t->fn->stable && !take_permit(r, false))
    {
        fail_circuit_open(r);
        return false;
    }
    return true;
}

/*
 * PostgREST's /rpc/<function>: POST for any api function; GET and HEAD
 * only for functions that do not write (STABLE or IMMUTABLE).
 */
static bool
resolve_rpc(const char *method, const char *fname, bool replica, target *t, reply *r)
{
    bool        is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;

    r->route_label = metrics_route(is_get ? "GET /rpc/{function}" : "POST /rpc/{function}");
    if (!is_get && strcmp(method, "POST") != 0)
    {
        snprintf(r->allow, sizeof(r->allow), "GET, HEAD, POST");
        fail_with(r, 405, "METHOD_NOT_ALLOWED", "method not allowed", json_pack("{s:s}", "allow", r->allow));
        return false;
    }
    if (!*fname || strspn(fname, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(fname))
    {
        fail_with(r, 404, "NOT_FOUND", "no such function", json_pack("{s:s}", "function", fname));
        return false;
    }
    if (!take_permit(r, replica && is_get))
    {
        fail_circuit_open(r);
        return false;
    }
    t->fn = db_find_function(fname);
    if (!t->fn)
    {
        if (!db_catalog_loaded())
            catalog_unavailable(r);
        else
            fail_with(r, 404, "NOT_FOUND", "no such function", json_pack("{s:s}", "function", fname));
        return false;
    }
    if (is_get && t->fn->writes)
    {
        snprintf(r->allow, sizeof(r->allow), "POST");
        fail_with(r, 405, "METHOD_NOT_ALLOWED", "this function may write: call it with POST",
                  json_pack("{s:s, s:s}", "function", fname, "allow", "POST"));
        return false;
    }
    t->success = 200;
    return stays_on_upstream(t, r);
}

static bool
resolve_route(const char *method, const char *url, bool replica, target *t, reply *r)
{
    int         rc;
    char        label[160];

    /* The routes are read from the database: ask the breaker first. */
    if (!take_permit(r, replica && (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)))
    {
        /* Counted under its route when the routes last read know it. */
        if (routes_label(method, url, label, sizeof(label)))
            r->route_label = metrics_route(label);
        fail_circuit_open(r);
        return false;
    }
    rc = routes_match(method, url, &t->m, r->allow, sizeof(r->allow));
    if (rc == 503)
        catalog_unavailable(r);
    else if (rc == 404)
        fail_with(r, 404, "NOT_FOUND", "no such route", json_pack("{s:s, s:s}", "method", method, "path", url));
    else if (rc == 405)
        fail_with(r, 405, "METHOD_NOT_ALLOWED", "method not allowed", json_pack("{s:s}", "allow", r->allow));
    if (rc != 0)
        return false;
    snprintf(label, sizeof(label), "%s %s", t->m.route->method, t->m.route->path);
    r->route_label = metrics_route(label);
    t->fn = t->m.fn;
    t->success = t->m.route->success;
    return stays_on_upstream(t, r);
}

/* The body: at most 1 MiB of JSON, an object unless the route takes it whole. */
static bool
read_body(const request *req, bool is_get, const target *t, json_t **body, reply *r)
{
    json_error_t jerr;

    if (req->too_big)
    {
        fail_with(r, 413, "PAYLOAD_TOO_LARGE", "the request body is larger than 1 MiB",
                  json_pack("{s:i}", "max_bytes", MAX_BODY));
        return false;
    }
    if (is_get || req->len == 0)
        return true;
    *body = json_loadb(req->body, req->len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (!*body)
    {
        fail_with(r, 400, "BAD_REQUEST", "the request body is not valid JSON",
                  json_pack("{s:s, s:i}", "reason", jerr.text, "position", jerr.position));
        return false;
    }
    if (!json_is_object(*body) && !(t->m.route && t->m.route->body_argument))
    {
        fail_with(r, 422, "VALIDATION_ERROR", "the request body must be a JSON object", NULL);
        return false;
    }
    return true;
}

/* The token: none means the anonymous role; a bad one, or a role the database does not let us take, is refused. */
static bool
authenticate(const char *authz, auth_result *auth, reply *r)
{
    if (!authz)
        return true;
    auth_verify(authz, config.jwt_secret, auth);
    if (auth->ok && !db_role_allowed(auth->role))
    {
        auth->ok = false;
        snprintf(auth->why, sizeof(auth->why), "the token's role \"%.60s\" is not one this database accepts", auth->role);
    }
    if (!auth->ok)
    {
        r->www_authenticate = true;
        fail_with(r, 401, "UNAUTHORIZED", auth->why, NULL);
        return false;
    }
    snprintf(r->user_id, sizeof(r->user_id), "%s", auth->sub);
    return true;
}

/* Path, query string and body become the call's named arguments, checked against the signature. */
static bool
gather_args(struct MHD_Connection *conn, const target *t, json_t *body, args *a, reply *r)
{
    a->fn = t->fn;
    for (int i = 0; i < t->m.nparams; i++)
        args_add(a, t->m.names[i], t->m.values[i]);
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_query, a);
    if (body && t->m.route && t->m.route->body_argument)
        args_add_json(a, t->m.route->body_argument, body);
    else if (body)
    {
        const char *k;
        json_t     *v;

        json_object_foreach(body, k, v)
            args_add_json(a, k, v);
    }
    args_check_required(a);
    if (a->failed)
        fail(r, &a->err);
    return !a->failed;
}

/* A route that streams (booking.http_routes.event_stream), asked for text/event-stream. */
static void
open_event_stream(struct MHD_Connection *conn, const db_call *call, reply *r)
{
    char        why[128];
    const char *after = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "after_id");

    if (!after)
        after = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Last-Event-ID");
    r->stream = events_stream(config.conninfo, call->role, call->claims, after, why, sizeof(why));
    if (!r->stream)
        fail_with(r, 503, "DATABASE_UNAVAILABLE", why, NULL);
}

/*
 * The Content-Type of a success: what the route declares (its row's
 * "produces"); through /rpc, what the function's routes declare, since the
 * function's result is the same text whichever way it is called.
 */
static const char *
answer_type(const target *t)
{
    const api_route *declared = t->m.route ? t->m.route : (t->fn->nroutes ? &t->fn->routes[0] : NULL);

    return declared && declared->produces ? declared->produces : "application/json";
}

/* One transaction: the call, then its answer or its error mapped to HTTP. */
static void
call_and_answer(struct MHD_Connection *conn, const target *t, args *a, const auth_result *auth,
                bool is_get, reply *r)
{
    db_result   res = {0};
    char        ip[64];

    client_ip(conn, ip, sizeof(ip));
    a->call.fn = a->fn;
    a->call.role = auth->ok ? auth->role : config.anon_role;
    a->call.claims = auth->ok ? auth->claims : "";
    a->call.request_id = r->request_id;
    a->call.client_ip = ip;
    a->call.read_only = is_get;
    if (!call_upstream(r, &a->call, &res))
    {
        fail_circuit_open(r);
        return;
    }
    switch (res.status)
    {
        case DB_OK:
            r->outcome = BREAKER_SUCCESS;
            r->status = t->success;
            r->body = res.value ? res.value : strdup("null");
            res.value = NULL;
            r->content_type = answer_type(t);
            if (res.headers)
                r->headers = json_loads(res.headers, 0, NULL);
            if (is_get && t->m.route && t->m.route->event_stream && wants_event_stream(conn))
                open_event_stream(conn, &a->call, r);
            break;
        case DB_SQL_ERROR:
            if (!a->call.read_only && strcmp(res.sqlstate, "25006") == 0)
            {
                /*
                 * A write reached a read-only server (a standby: a failover
                 * under way, or a DSN naming a replica).  The server answered,
                 * so the breaker is not told; reads go on.
                 */
                r->outcome = BREAKER_SUCCESS;
                fail_with(r, 503, "DATABASE_READ_ONLY", "the database is read-only, try again later",
                          json_pack("{s:s}", "sqlstate", res.sqlstate));
                break;
            }
            {
                http_error  e = {0};

                r->outcome = sqlstate_is_outage(res.sqlstate) ? BREAKER_FAILURE : BREAKER_SUCCESS;
                if (strcmp(res.sqlstate, "42883") == 0)
                    db_catalog_invalidate();
                error_from_sql(&e, res.sqlstate, res.message, res.detail, res.hint, !auth->ok);
                if (e.status == 401)
                    r->www_authenticate = true;
                fail(r, &e);
                break;
            }
        case DB_CONNECTION_FAILED:
            r->outcome = BREAKER_FAILURE;
            fail_with(r, 503, "DATABASE_UNAVAILABLE", "the database is unavailable", NULL);
            break;
        case DB_POOL_BUSY:
            fail_with(r, 503, "DATABASE_UNAVAILABLE", "every database connection is busy", NULL);
            break;
    }
    db_result_free(&res);
}

/*
 * One request, step by step; a step that fails has filled the reply, and
 * every path ends in respond().
 */
static enum MHD_Result
handle(struct MHD_Connection *conn, const char *url, const char *method, request *req)
{
    reply       r = {.status = 500, .outcome = BREAKER_ABANDONED, .breaker = &db_breaker};
    const char *rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    const char *authz = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    bool        is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    target      t = {0};
    auth_result auth = {0};
    args        a = {0};
    json_t     *body = NULL;
    bool        replica;
    enum MHD_Result ret;

    if (rid && request_id_acceptable(rid))
        snprintf(r.request_id, sizeof(r.request_id), "%s", rid);
    else
        request_id_new(r.request_id, sizeof(r.request_id));
    r.route_label = metrics_route("unmatched");

    /*
     * A GET may go to the read replica, unless it asks for the primary
     * (X-Read-From: primary, for read-your-writes) or streams events.
     */
    replica = is_get && db_has_read_pool() && !wants_event_stream(conn) && !wants_primary(conn);
    if (!handle_operations(url, is_get, &r) &&
        (strncmp(url, "/rpc/", 5) == 0 ? resolve_rpc(method, url + 5, replica, &t, &r)
         : resolve_route(method, url, replica, &t, &r)) &&
        read_body(req, is_get, &t, &body, &r) &&
        authenticate(authz, &auth, &r) &&
        gather_args(conn, &t, body, &a, &r))
        call_and_answer(conn, &t, &a, &auth, is_get, &r);

    ret = respond(conn, method, req, &r);
    json_decref(body);
    auth_result_free(&auth);
    args_free(&a);
    return ret;
}

/*
 * MHD_OPTION_URI_LOG_CALLBACK: the request line has arrived, not yet decoded
 * (libmicrohttpd turns %00 into a NUL that silently cuts the value).  What
 * we learn is kept with the connection (conn_guard.c), which is always
 * released; the request's own context is made at the first handler call.
 */
static void *
on_request_line(void *cls, const char *uri, struct MHD_Connection *conn)
{
    const char *q;
    int         query_params = 0;

    (void) cls;
    if ((q = strchr(uri, '?')) != NULL)
        for (query_params = 1; (q = strchr(q + 1, '&')) != NULL;)
            query_params++;
    guard_note_request_line(conn, uri);

    /*
     * Refused now, before libmicrohttpd parses the parameters: with enough
     * of them it runs out of connection memory and would close without a
     * word.  The reply is written here; the handler then just closes.
     */
    if (strlen(uri) > MAX_URI_BYTES || query_params > MAX_QUERY_PARAMS)
    {
        envelope_write_to(conn, 414, query_params > MAX_QUERY_PARAMS ?
                          "the request has more than 100 query parameters" :
                          "the request URL is longer than 8 KiB");
        guard_request_answered(conn);
    }
    return NULL;
}

/* An answer from the request's head or raw body, before handle() sees it. */
static enum MHD_Result
refuse(struct MHD_Connection *conn, const char *method, request *req, int status, const char *code,
       const char *message, json_t *details)
{
    reply       r = {.status = status, .outcome = BREAKER_ABANDONED};
    const char *rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");

    if (rid && request_id_acceptable(rid))
        snprintf(r.request_id, sizeof(r.request_id), "%s", rid);
    else
        request_id_new(r.request_id, sizeof(r.request_id));
    r.route_label = metrics_route("unmatched");
    fail_with(&r, status, code, message, details);
    return respond(conn, method, req, &r);
}

/* The request head's own limits: checked once, before any body is read. */
static enum MHD_Result
check_head(struct MHD_Connection *conn, const char *method, const char *version, request *req)
{
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    const char *expect = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Expect");
    unsigned long long announced = cl ? strtoull(cl, NULL, 10) : 0;

    if (guard_was_answered(conn))
        return MHD_NO;          /* on_request_line wrote the reply */
    if (guard_request_line_had_nul(conn, version))
        return refuse(conn, method, req, 400, "BAD_REQUEST",
                      "the request path or query contains a NUL byte (%00)", NULL);
    /*
     * A body announced too large is refused before it is sent when the
     * client waits for 100 Continue, or when reading it would cost too much.
     * Otherwise it is read and dropped, then answered 413: a client that
     * sends its body at once would find the connection closed under it.
     */
    if (announced > MAX_BODY &&
        ((expect && strcasecmp(expect, "100-continue") == 0) || announced > 8ULL * MAX_BODY))
        return refuse(conn, method, req, 413, "PAYLOAD_TOO_LARGE", "the request body is larger than 1 MiB",
                      json_pack("{s:i}", "max_bytes", MAX_BODY));
    return MHD_YES;
}

/*
 * Does this JSON text hold a \u0000 inside a string?  jansson refuses them
 * by default with a parse error; a NUL is a validation error of its own.
 */
static bool
json_text_has_nul(const char *s, size_t n)
{
    bool        in_string = false;

    for (size_t i = 0; i < n; i++)
    {
        if (!in_string)
            in_string = s[i] == '"';
        else if (s[i] == '"')
            in_string = false;
        else if (s[i] == '\\' && i + 1 < n)
        {
            if (s[i + 1] == 'u' && i + 5 < n && strncmp(s + i + 2, "0000", 4) == 0)
                return true;
            i++;
        }
    }
    return false;
}

/* Body bytes as they come: kept up to MAX_BODY, and only until the deadline. */
static enum MHD_Result
take_body(struct MHD_Connection *conn, request *req, const char *data, size_t *size)
{
    /* libmicrohttpd queues no reply mid-body: write it, then close. */
    if (guard_remaining_ms(req->started_ms) == 0)
    {
        *size = 0;
        envelope_write_to(conn, 408, "the request body did not arrive in time");
        return MHD_NO;
    }
    /* Past the limit the rest is read and dropped, then answered 413. */
    if (!req->too_big && req->len + *size <= MAX_BODY)
    {
        char       *grown = realloc(req->body, req->len + *size + 1);

        if (!grown)
            return MHD_NO;
        req->body = grown;
        memcpy(req->body + req->len, data, *size);
        req->len += *size;
    }
    else
    {
        req->too_big = true;
        free(req->body);
        req->body = NULL;
        req->len = 0;
    }
    *size = 0;
    return MHD_YES;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
           const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    request    *req = *con_cls;
    enum MHD_Result ret;

    (void) cls;
    if (!req)
    {
        req = calloc(1, sizeof(request));
        if (!req)
            return MHD_NO;
        clock_gettime(CLOCK_MONOTONIC, &req->started);
        req->started_ms = guard_now_ms();
        __atomic_fetch_add(&in_flight, 1, __ATOMIC_SEQ_CST);
        *con_cls = req;
        guard_request_handled(conn);
        return check_head(conn, method, version, req);
    }
    if (*upload_data_size)
        return take_body(conn, req, upload_data, upload_data_size);
    if (req->len > 0 && json_text_has_nul(req->body, req->len))
        return refuse(conn, method, req, 400, "BAD_REQUEST", "a JSON string contains a NUL byte (\\u0000)", NULL);
    ret = handle(conn, url, method, req);
    return ret;
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    request    *req = *con_cls;

    (void) cls;
    (void) toe;
    guard_request_done(conn);
    if (!req)
        return;
    free(req->body);
    free(req);
    *con_cls = NULL;
    __atomic_fetch_sub(&in_flight, 1, __ATOMIC_SEQ_CST);
}

/*
 * libmicrohttpd's own messages, as our log lines.  Its "Error processing
 * request" lines quote the HTML page it meant to send (mhd_envelope.c sent
 * the envelope instead): left out.
 */
static void
library_log(void *cls, const char *fmt, va_list ap)
{
    char        line[512];

    (void) cls;
    vsnprintf(line, sizeof(line), fmt, ap);
    line[strcspn(line, "\r\n")] = '\0';
    if (strncmp(line, "Error processing request", 24) == 0)
        return;
    log_event("warning", "http: %s", line);
}

int
http_start(void)
{
    struct sockaddr_in addr = {0};

    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t) config.port);
    if (inet_pton(AF_INET, config.listen_address, &addr.sin_addr) != 1)
    {
        log_event("error", "listen address \"%s\" is not an IPv4 address", config.listen_address);
        return -1;
    }
    if (guard_start(config.request_deadline_s) != 0)
        return -1;
    /*
     * One thread per connection: a request blocks on its database call.
     * CONNECTION_TIMEOUT is the idle limit; the guard adds the absolute
     * request-head deadline, and PER_IP_CONNECTION_LIMIT closes a client's
     * connections past the cap as they are accepted (0: no cap).
     */
    daemon_handle = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                                     MHD_USE_ITC | MHD_USE_ERROR_LOG,
                                     (uint16_t) config.port, NULL, NULL, on_request, NULL,
                                     MHD_OPTION_EXTERNAL_LOGGER, library_log, NULL,
                                     MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &addr,
                                     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) config.client_timeout_s,
                                     MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                                     MHD_OPTION_NOTIFY_CONNECTION, guard_notify_connection, NULL,
                                     MHD_OPTION_URI_LOG_CALLBACK, on_request_line, NULL,
                                     MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) CONNECTION_MEMORY,
                                     MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int) config.max_connections_per_ip,
                                     MHD_OPTION_THREAD_STACK_SIZE, (size_t) (1024 * 1024),
                                     MHD_OPTION_CONNECTION_LIMIT, (unsigned int) 1000,
                                     MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned int) 1,
                                     MHD_OPTION_END);
    if (!daemon_handle)
    {
        log_event("error", "could not listen on %s:%d", config.listen_address, config.port);
        return -1;
    }
    return 0;
}

void
http_drain_and_stop(int timeout_s)
{
    struct timespec t0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    MHD_quiesce_daemon(daemon_handle);
    events_stop_all();
    while (__atomic_load_n(&in_flight, __ATOMIC_SEQ_CST) > 0 && ms_since(&t0) < timeout_s * 1000.0)
        usleep(10 * 1000);
    MHD_stop_daemon(daemon_handle);
    guard_stop();
}
