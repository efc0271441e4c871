/*
 * events.c — server-sent events over LISTEN/NOTIFY.
 *
 * Who may read events is decided by SQL: the stream is only opened after
 * api.list_events answered for the caller, and its answer is the backlog.
 * One LISTEN connection (the hub, a thread of its own) serves every stream:
 * a NOTIFY only says that events were published, so the hub just bumps a
 * generation number and wakes the streams, and each stream then reads, as
 * its caller, every event after the last id it sent (api.list_events on a
 * pooled connection, held for that one read only).  A live event is thus
 * the same row, with the same payload, as a replayed one, and ids arrive in
 * order without gaps or repeats (events are published in id order, see the
 * 1.1 upgrade script).  A stream takes the generation before it reads, so
 * an event published while it reads wakes it again; when the hub loses its
 * connection it listens again and bumps the generation, so every stream
 * reads what was published meanwhile.  A comment every 15 s (or half the
 * client timeout) keeps neither us nor a proxy from closing an idle stream.
 *
 * A stream thus holds no database connection of its own; it still holds
 * its connection's thread (libmicrohttpd's thread-per-connection mode,
 * which the request path keeps: see http.c), sleeping on the hub's
 * condition variable between events.
 *
 * A stream is bound to its token: it ends, with a last "end" event saying
 * why, when the token expires, after the maximum stream lifetime, or when
 * the caller no longer passes api.me() (deactivated, demoted, logged out:
 * the session rules live in SQL), which is asked again with the stream's
 * claims at every keepalive in a short read-only transaction.
 */
#include "events.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <microhttpd.h>

#include "db.h"
#include "errors.h"
#include "log.h"

#define SLICE_MS 200            /* how often a waiting stream checks for shutdown */
#define EVENTS_PAGE 500         /* events read per call of api.list_events */
#define EVENTS_PAGE_TEXT "500"
#define HUB_READY_WAIT_MS 3000  /* how long a new stream waits for the hub to listen */
/*
 * A stream reads at most this often: publishes that come faster are read
 * together, so busy writers cost each stream at most 40 pooled reads a
 * second, and an event still reaches the stream within this of its publish.
 */
#define MIN_READ_INTERVAL_MS 25

static int  streams;
static int  max_streams = 16;
static int  keepalive_ms = 15000;
static int  stopping;
static int  max_lifetime_s = 3600;

/* The one LISTEN connection, and what it tells the streams. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;     /* generation moved, listening changed, or stop */
    unsigned long long generation;  /* bumped on every NOTIFY and every (re)LISTEN */
    bool        started;
    bool        listening;
    bool        stop;
    pthread_t   thread;
    char       *conninfo;
} hub = {.lock = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER};

typedef struct stream {
    char       *role;           /* the caller, for reading events as them */
    char       *claims;
    char       *client_ip;
    long long   last_id;        /* the last event id sent */
    unsigned long long generation;  /* the hub's, as of the last read */
    bool        reread;         /* the last read did not happen: try again */
    char       *pending;        /* formatted SSE text not yet sent */
    size_t      len;
    size_t      sent;
    long long   sent_ms;        /* monotonic: last bytes queued (for keepalives) */
    long long   read_ms;        /* monotonic: last read of events */
    /* what binds the stream to its caller (role and claims above) */
    time_t      token_expires;  /* the token's "exp" */
    time_t      ends;           /* opened + max lifetime */
    bool        ended;          /* the "end" event is queued: stop after it */
    bool        db_gone;        /* the database could not be reached: end with an error */
    long long   checked_ms;     /* monotonic: last check_binding */
} stream;

static long long
monotonic_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long) t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void
events_configure(int streams_max, int idle_timeout_s)
{
    max_streams = streams_max;
    /* A comment well before the server's idle timeout would cut the stream. */
    keepalive_ms = idle_timeout_s > 0 ? idle_timeout_s * 1000 / 2 : 15000;
    if (keepalive_ms > 15000)
        keepalive_ms = 15000;
    if (keepalive_ms < SLICE_MS)
        keepalive_ms = SLICE_MS;
}

void
events_set_max_lifetime(int seconds)
{
    max_lifetime_s = seconds > 0 ? seconds : 3600;
}

void
events_stop_all(void)
{
    __atomic_store_n(&stopping, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_lock(&hub.lock);
    hub.stop = true;
    pthread_cond_broadcast(&hub.changed);
    pthread_mutex_unlock(&hub.lock);
}

void
events_shutdown(void)
{
    bool        started;

    events_stop_all();
    pthread_mutex_lock(&hub.lock);
    started = hub.started;
    hub.started = false;
    pthread_mutex_unlock(&hub.lock);
    if (started)
        pthread_join(hub.thread, NULL);
    free(hub.conninfo);
    hub.conninfo = NULL;
}

/* Wake every stream: events may have been published. */
static void
hub_bump(bool listening)
{
    pthread_mutex_lock(&hub.lock);
    hub.generation++;
    hub.listening = listening;
    pthread_cond_broadcast(&hub.changed);
    pthread_mutex_unlock(&hub.lock);
}

static bool
hub_stopping(void)
{
    return __atomic_load_n(&stopping, __ATOMIC_SEQ_CST) != 0;
}

/* The hub: LISTEN, and a bump for every notification; listen again when the connection goes. */
static void *
hub_main(void *arg)
{
    PGconn     *conn = NULL;
    int         backoff_ms = 100;

    (void) arg;
    while (!hub_stopping())
    {
        if (!conn)
        {
            PGresult   *res;

            conn = PQconnectdb(hub.conninfo);
            res = PQstatus(conn) == CONNECTION_OK ? PQexec(conn, "LISTEN pg_booking_events") : NULL;
            if (PQresultStatus(res) != PGRES_COMMAND_OK)
            {
                PQclear(res);
                PQfinish(conn);
                conn = NULL;
                for (int waited = 0; waited < backoff_ms && !hub_stopping(); waited += 50)
                    usleep(50 * 1000);
                backoff_ms = backoff_ms < 2000 ? backoff_ms * 2 : 2000;
                continue;
            }
            PQclear(res);
            backoff_ms = 100;
            /* Listening (again): every stream reads what it may have missed. */
            hub_bump(true);
        }
        {
            struct pollfd p = {.fd = PQsocket(conn), .events = POLLIN};
            int         rc = poll(&p, 1, SLICE_MS);
            PGnotify   *n;
            bool        any = false;

            if (rc > 0 && !PQconsumeInput(conn))
            {
                log_event("warning", "events: the LISTEN connection was lost, listening again");
                PQfinish(conn);
                conn = NULL;
                hub_bump(false);
                continue;
            }
            while ((n = PQnotifies(conn)) != NULL)
            {
                any = true;
                PQfreemem(n);
            }
            if (any)
                hub_bump(true);
        }
    }
    PQfinish(conn);
    return NULL;
}

/* Start the hub once; false when it is not listening within HUB_READY_WAIT_MS. */
static bool
hub_ready(const char *conninfo)
{
    struct timespec deadline;
    bool        ok;

    pthread_mutex_lock(&hub.lock);
    if (!hub.started && !hub.stop)
    {
        hub.conninfo = strdup(conninfo);
        if (hub.conninfo && pthread_create(&hub.thread, NULL, hub_main, NULL) == 0)
            hub.started = true;
    }
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += HUB_READY_WAIT_MS / 1000;
    while (hub.started && !hub.listening && !hub.stop &&
           pthread_cond_timedwait(&hub.changed, &hub.lock, &deadline) == 0)
        ;
    ok = hub.listening && !hub.stop;
    pthread_mutex_unlock(&hub.lock);
    return ok;
}

/* The hub's generation now. */
static unsigned long long
hub_generation(void)
{
    unsigned long long g;

    pthread_mutex_lock(&hub.lock);
    g = hub.generation;
    pthread_mutex_unlock(&hub.lock);
    return g;
}

/* Sleep until the generation moves past seen, or ms pass, or shutdown. */
static unsigned long long
hub_wait(unsigned long long seen, int ms)
{
    struct timespec deadline;
    unsigned long long g;

    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_nsec += (long) ms * 1000000;
    deadline.tv_sec += deadline.tv_nsec / 1000000000;
    deadline.tv_nsec %= 1000000000;
    pthread_mutex_lock(&hub.lock);
    while (hub.generation == seen && !hub.stop &&
           pthread_cond_timedwait(&hub.changed, &hub.lock, &deadline) == 0)
        ;
    g = hub.generation;
    pthread_mutex_unlock(&hub.lock);
    return g;
}

static void
append(stream *s, const char *text)
{
    size_t      n = strlen(text);
    char       *grown = realloc(s->pending, s->len + n + 1);

    if (!grown)
        return;
    s->pending = grown;
    memcpy(s->pending + s->len, text, n + 1);
    s->len += n;
    s->sent_ms = monotonic_ms();
}

/* One event (a JSON object with id and kind) as an SSE message. */
static void
append_event(stream *s, json_t *ev)
{
    char       *data = json_dumps(ev, JSON_COMPACT);
    json_t     *id = json_object_get(ev, "id");
    json_t     *kind = json_object_get(ev, "kind");
    char        head[160] = "";

    if (!data)
        return;
    if (json_is_integer(id))
    {
        snprintf(head, sizeof(head), "id: %lld\n", (long long) json_integer_value(id));
        if (json_integer_value(id) > s->last_id)
            s->last_id = json_integer_value(id);
    }
    if (json_is_string(kind) && strpbrk(json_string_value(kind), "\r\n") == NULL)
        snprintf(head + strlen(head), sizeof(head) - strlen(head), "event: %.100s\n", json_string_value(kind));
    append(s, head);
    append(s, "data: ");
    append(s, data);
    append(s, "\n\n");
    free(data);
}

/*
 * Call an api function as the stream's caller, read-only, on a pooled
 * connection (the function and its argument names from the catalog, as a
 * request would).  False with why filled when the function is unknown.
 */
static bool
call_as_caller(stream *s, const char *function, int nargs, const char *const *names,
               const char *const *values, db_result *out)
{
    const api_function *fn = db_find_function(function);
    db_call     call = {0};
    char        rid[80];

    memset(out, 0, sizeof(*out));
    if (!fn)
    {
        out->status = DB_CONNECTION_FAILED;
        return false;
    }
    request_id_new(rid, sizeof(rid));
    call.fn = fn;
    call.role = s->role;
    call.claims = s->claims;
    call.request_id = rid;
    call.client_ip = s->client_ip;
    call.read_only = true;
    for (int i = 0; i < nargs; i++)
        for (int a = 0; a < fn->nargs; a++)
            if (strcmp(fn->argnames[a], names[i]) == 0)
            {
                call.argnames[call.nargs] = fn->argnames[a];
                call.argvalues[call.nargs++] = values[i];
            }
    db_call_function(&call, out);
    return true;
}

static void append_events_after(stream *s);

/* The last event: why the stream ends (the client may reconnect with a new token). */
static void
end_stream(stream *s, const char *reason, const char *message)
{
    json_t     *o = json_pack("{s:s, s:s}", "reason", reason, "message", message);
    char       *data = o ? json_dumps(o, JSON_COMPACT) : NULL;

    append(s, "event: end\ndata: ");
    append(s, data ? data : "{}");
    append(s, "\n\n");
    free(data);
    json_decref(o);
    s->ended = true;
}

/*
 * Is the caller still who the token says?  api.me() with the stream's
 * claims answers that as every request's transaction would.  False only
 * when the database refused the caller (a 4xx business error, no privilege,
 * a role it will not take); a timeout or an unreachable database is no
 * verdict (the latter ends the stream as an error anyway).
 */
static bool
caller_still_valid(stream *s, char *why, size_t whylen)
{
    db_result   res;
    bool        refused = false;

    call_as_caller(s, "me", 0, NULL, NULL, &res);
    if (res.status == DB_SQL_ERROR)
    {
        refused = strncmp(res.sqlstate, "PT4", 3) == 0 || strcmp(res.sqlstate, "42501") == 0 ||
            strncmp(res.sqlstate, "28", 2) == 0 || strcmp(res.sqlstate, "22023") == 0;
        if (refused)
            snprintf(why, whylen, "%s", res.message ? res.message : "the caller is no longer authorized");
    }
    else if (res.status == DB_CONNECTION_FAILED)
        s->db_gone = true;
    db_result_free(&res);
    return !refused;
}

/*
 * Has the stream outlived its token, its lifetime or its caller?  The
 * clock every slice; the database once per keepalive period, busy or idle.
 */
static void
check_binding(stream *s)
{
    time_t      now = time(NULL);
    char        why[256];

    if (s->token_expires && now >= s->token_expires)
        end_stream(s, "token_expired", "the token has expired; reconnect with a new one");
    else if (now >= s->ends)
        end_stream(s, "max_lifetime", "the stream reached its maximum lifetime; reconnect to go on");
    else if (monotonic_ms() - s->checked_ms >= keepalive_ms)
    {
        s->checked_ms = monotonic_ms();
        if (!caller_still_valid(s, why, sizeof(why)))
            end_stream(s, "unauthorized", why);
    }
}

static ssize_t
read_stream(void *cls, uint64_t pos, char *buf, size_t max)
{
    stream     *s = cls;

    (void) pos;
    for (;;)
    {
        unsigned long long g;

        if (s->sent < s->len)
        {
            size_t      n = s->len - s->sent < max ? s->len - s->sent : max;

            memcpy(buf, s->pending + s->sent, n);
            s->sent += n;
            if (s->sent == s->len)
                s->sent = s->len = 0;
            return (ssize_t) n;
        }
        if (s->db_gone)
            return MHD_CONTENT_READER_END_WITH_ERROR;   /* database gone */
        if (s->ended || hub_stopping())
            return MHD_CONTENT_READER_END_OF_STREAM;
        check_binding(s);
        if (s->ended || s->db_gone)
            continue;           /* send the end event, then stop */
        g = s->reread ? hub_generation() : hub_wait(s->generation, SLICE_MS);
        if (g != s->generation || s->reread)
        {
            long long   since = monotonic_ms() - s->read_ms;

            if (since < MIN_READ_INTERVAL_MS)
                usleep((useconds_t) (MIN_READ_INTERVAL_MS - since) * 1000);
            /* Taken before the read: what is published during it wakes us again. */
            s->generation = hub_generation();
            append_events_after(s);
        }
        else if (monotonic_ms() - s->sent_ms >= keepalive_ms)
            append(s, ": keepalive\n\n");
    }
}

int
events_streams_open(void)
{
    return __atomic_load_n(&streams, __ATOMIC_SEQ_CST);
}

static void
free_stream(void *cls)
{
    stream     *s = cls;

    free(s->pending);
    free(s->role);
    free(s->claims);
    free(s->client_ip);
    free(s);
    __atomic_sub_fetch(&streams, 1, __ATOMIC_SEQ_CST);
}

/*
 * Every event after s->last_id, as the caller, page by page.  A read that
 * could not happen (no free connection) is tried again at the next slice;
 * a database that cannot be reached ends the stream.
 */
static void
append_events_after(stream *s)
{
    static const char *const names[2] = {"after_id", "lim"};

    s->reread = false;
    s->read_ms = monotonic_ms();
    for (;;)
    {
        char        after[32];
        const char *values[2] = {after, EVENTS_PAGE_TEXT};
        db_result   res;
        json_t     *page;
        size_t      count = 0;

        snprintf(after, sizeof(after), "%lld", s->last_id);
        call_as_caller(s, "list_events", 2, names, values, &res);
        if (res.status != DB_OK)
        {
            if (res.status == DB_CONNECTION_FAILED)
                s->db_gone = true;
            else
                s->reread = true;
            db_result_free(&res);
            return;
        }
        page = res.value ? json_loads(res.value, 0, NULL) : NULL;
        db_result_free(&res);
        if (json_is_array(page))
        {
            size_t      i;
            json_t     *ev;

            count = json_array_size(page);
            json_array_foreach(page, i, ev)
                append_event(s, ev);
        }
        json_decref(page);
        if (count < EVENTS_PAGE)
            return;
    }
}

/* The token's expiry and the stream's lifetime (role and claims are kept by events_stream). */
static void
bind_to_caller(stream *s, const char *claims)
{
    json_t     *c = json_loads(claims, 0, NULL);
    json_t     *exp = json_object_get(c, "exp");

    s->token_expires = json_is_number(exp) ? (time_t) json_number_value(exp) : 0;
    s->ends = time(NULL) + max_lifetime_s;
    s->checked_ms = monotonic_ms();
    json_decref(c);
}

struct MHD_Response *
events_stream(const char *conninfo, const char *role, const char *claims, const char *client_ip,
              const char *after_id, char *why, size_t whylen)
{
    stream     *s;
    struct MHD_Response *resp;

    if (__atomic_add_fetch(&streams, 1, __ATOMIC_SEQ_CST) > max_streams)
    {
        __atomic_sub_fetch(&streams, 1, __ATOMIC_SEQ_CST);
        snprintf(why, whylen, "too many event streams are open");
        return NULL;
    }
    s = calloc(1, sizeof(stream));
    if (!s)
    {
        __atomic_sub_fetch(&streams, 1, __ATOMIC_SEQ_CST);
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    bind_to_caller(s, claims);
    if (!hub_ready(conninfo))
    {
        snprintf(why, whylen, "cannot listen for events");
        free_stream(s);
        return NULL;
    }
    /* The backlog first: what happened before now (the hub already listens). */
    append(s, "retry: 2000\n\n");
    s->role = strdup(role);
    s->claims = strdup(claims);
    s->client_ip = strdup(client_ip ? client_ip : "");
    s->last_id = after_id && *after_id ? strtoll(after_id, NULL, 10) : 0;
    if (!s->role || !s->claims || !s->client_ip)
    {
        snprintf(why, whylen, "out of memory");
        free_stream(s);
        return NULL;
    }
    s->generation = hub_generation();
    append_events_after(s);
    if (s->db_gone)
    {
        snprintf(why, whylen, "cannot read events");
        free_stream(s);
        return NULL;
    }
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, read_stream, s, free_stream);
    if (!resp)
        free_stream(s);
    return resp;
}
