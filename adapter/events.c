/*
 * events.c — server-sent events over LISTEN/NOTIFY.
 *
 * Who may read events is decided by SQL: the stream is only opened after
 * api.list_events answered for the caller, and its answer is the backlog.
 * Each stream then holds its own LISTEN connection (not one of the pool's,
 * so streams never starve requests).  A NOTIFY only says that events were
 * published; the stream then reads, as the caller, every event after the
 * last id it sent (api.list_events), so a live event is the same row, with
 * the same payload, as a replayed one, and ids arrive in order without gaps
 * or repeats (events are published in id order, see the 1.1 upgrade
 * script).  A comment every 15 s (or half the client timeout) keeps neither
 * us nor a proxy from closing an idle stream.
 *
 * A stream is bound to its token: it ends, with a last "end" event saying
 * why, when the token expires, after the maximum stream lifetime, or when
 * the caller no longer passes api.me() (deactivated, demoted, logged out:
 * the session rules live in SQL), which is asked again with the stream's
 * claims at every keepalive in a short read-only transaction.
 */
#include "events.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <microhttpd.h>

#define SLICE_MS 200            /* how often a waiting stream checks for shutdown */
#define EVENTS_PAGE 500         /* events read per call of api.list_events */
#define EVENTS_PAGE_TEXT "500"

static int  streams;
static int  max_streams = 16;
static int  keepalive_ms = 15000;
static int  stopping;
static int  max_lifetime_s = 3600;

typedef struct stream {
    PGconn     *conn;
    char       *role;           /* the caller, for reading events as them */
    char       *claims;
    long long   last_id;        /* the last event id sent */
    char       *pending;        /* formatted SSE text not yet sent */
    size_t      len;
    size_t      sent;
    int         idle_ms;
    /* what binds the stream to its caller (role and claims above) */
    time_t      token_expires;  /* the token's "exp" */
    time_t      ends;           /* opened + max lifetime */
    bool        ended;          /* the "end" event is queued: stop after it */
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

static void append_events_after(stream *s);

/* Published events: read what follows the last id sent. */
static void
collect_notifications(stream *s)
{
    PGnotify   *n;
    int         any = 0;

    while ((n = PQnotifies(s->conn)) != NULL)
    {
        any = 1;
        PQfreemem(n);
    }
    if (any)
        append_events_after(s);
}

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
    const char *setup[2] = {s->role, s->claims};
    PGresult   *res;
    char        state[6] = "";
    bool        refused;

    PQclear(PQexec(s->conn, "BEGIN READ ONLY"));
    PQclear(PQexecParams(s->conn, "SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true)",
                         2, NULL, setup, NULL, NULL, 0));
    res = PQexec(s->conn, "SELECT api.me()");
    if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultErrorField(res, PG_DIAG_SQLSTATE))
        snprintf(state, sizeof(state), "%s", PQresultErrorField(res, PG_DIAG_SQLSTATE));
    refused = strncmp(state, "PT4", 3) == 0 || strcmp(state, "42501") == 0 || strncmp(state, "28", 2) == 0 ||
        strcmp(state, "22023") == 0;
    if (refused)
        snprintf(why, whylen, "%s", PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) ?
                 PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : "the caller is no longer authorized");
    PQclear(res);
    PQclear(PQexec(s->conn, state[0] ? "ROLLBACK" : "COMMIT"));
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
        collect_notifications(s);   /* any that came during the check */
    }
}

static ssize_t
read_stream(void *cls, uint64_t pos, char *buf, size_t max)
{
    stream     *s = cls;

    (void) pos;
    for (;;)
    {
        if (s->sent < s->len)
        {
            size_t      n = s->len - s->sent < max ? s->len - s->sent : max;

            memcpy(buf, s->pending + s->sent, n);
            s->sent += n;
            if (s->sent == s->len)
                s->sent = s->len = 0;
            return (ssize_t) n;
        }
        if (s->ended || __atomic_load_n(&stopping, __ATOMIC_SEQ_CST))
            return MHD_CONTENT_READER_END_OF_STREAM;
        check_binding(s);
        if (s->ended)
            continue;           /* send the end event, then stop */
        {
            struct pollfd p = {.fd = PQsocket(s->conn), .events = POLLIN};
            int         rc = poll(&p, 1, SLICE_MS);

            if (rc < 0 || PQsocket(s->conn) < 0)
                return MHD_CONTENT_READER_END_WITH_ERROR;
            if (rc > 0)
            {
                if (!PQconsumeInput(s->conn))
                    return MHD_CONTENT_READER_END_WITH_ERROR;   /* database gone */
                collect_notifications(s);
                s->idle_ms = 0;
            }
            else if ((s->idle_ms += SLICE_MS) >= keepalive_ms)
            {
                append(s, ": keepalive\n\n");
                s->idle_ms = 0;
            }
        }
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

    PQfinish(s->conn);
    free(s->pending);
    free(s->role);
    free(s->claims);
    free(s);
    __atomic_sub_fetch(&streams, 1, __ATOMIC_SEQ_CST);
}

/*
 * The events after after_id, read as the caller on the stream's own
 * connection once it is listening, so nothing falls between the backlog and
 * the first notification.  A JSON array (malloc'd) or NULL.
 */
static char *
read_backlog(PGconn *conn, const char *role, const char *claims, const char *after_id)
{
    const char *setup[2] = {role, claims};
    const char *args[1] = {after_id && *after_id ? after_id : "0"};
    PGresult   *res;
    char       *out = NULL;

    PQclear(PQexec(conn, "BEGIN READ ONLY"));
    PQclear(PQexecParams(conn, "SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true)",
                         2, NULL, setup, NULL, NULL, 0));
    res = PQexecParams(conn, "SELECT api.list_events(after_id => $1::bigint, lim => " EVENTS_PAGE_TEXT ")::text",
                       1, NULL, args, NULL, NULL, 0);
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
        out = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    PQclear(PQexec(conn, "COMMIT"));
    return out;
}


/* Every event after s->last_id, as the caller, page by page. */
static void
append_events_after(stream *s)
{
    for (;;)
    {
        char        after[32];
        char       *page_json;
        json_t     *page;
        size_t      count = 0;

        snprintf(after, sizeof(after), "%lld", s->last_id);
        page_json = read_backlog(s->conn, s->role, s->claims, after);
        page = page_json ? json_loads(page_json, 0, NULL) : NULL;
        free(page_json);
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
events_stream(const char *conninfo, const char *role, const char *claims, const char *after_id,
              char *why, size_t whylen)
{
    stream     *s;
    PGresult   *res;
    struct MHD_Response *resp;

    if (__atomic_add_fetch(&streams, 1, __ATOMIC_SEQ_CST) > max_streams)
    {
        __atomic_sub_fetch(&streams, 1, __ATOMIC_SEQ_CST);
        snprintf(why, whylen, "too many event streams are open");
        return NULL;
    }
    s = calloc(1, sizeof(stream));
    bind_to_caller(s, claims);
    s->conn = PQconnectdb(conninfo);
    res = PQstatus(s->conn) == CONNECTION_OK ? PQexec(s->conn, "LISTEN pg_booking_events") : NULL;
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
    {
        PQclear(res);
        snprintf(why, whylen, "cannot listen for events");
        free_stream(s);
        return NULL;
    }
    PQclear(res);
    /* The backlog first: what happened before we were listening. */
    append(s, "retry: 2000\n\n");
    s->role = strdup(role);
    s->claims = strdup(claims);
    s->last_id = after_id && *after_id ? strtoll(after_id, NULL, 10) : 0;
    if (!s->role || !s->claims)
    {
        snprintf(why, whylen, "out of memory");
        free_stream(s);
        return NULL;
    }
    append_events_after(s);
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, read_stream, s, free_stream);
    if (!resp)
        free_stream(s);
    return resp;
}
