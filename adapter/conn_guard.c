/*
 * conn_guard.c — the request-head deadline.
 *
 * libmicrohttpd's connection timeout is an idle timeout: a client that sends
 * one byte every few seconds resets it for ever and holds a thread.  Here
 * every connection is registered when it opens; a watchdog thread cuts any
 * connection whose request head has not been complete for deadline seconds
 * (since the connection opened, or since its previous reply was sent).  It
 * sends a 408 envelope to a connection that never got a reply (an idle
 * keep-alive connection just closes, as a client expects) and shuts the
 * socket down, which wakes the connection's thread: libmicrohttpd then
 * closes it as it would a client that went away.
 *
 * The socket is touched only under the lock and only while the connection
 * is registered: libmicrohttpd reports the close (which unregisters it)
 * before it closes the descriptor, so a reused descriptor is never cut.
 * A connection being handled (its head complete) is never cut here; its
 * body deadline is checked by http.c as the body arrives.
 */
#include "conn_guard.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mhd_envelope.h"

#define WATCH_SLICE_MS 200

typedef struct guarded {
    int         fd;
    unsigned long long since_ms;    /* opened, or previous reply sent */
    bool        handled;        /* head complete, reply not yet sent */
    bool        replied_once;
    bool        answered;       /* refused from the request line: no other reply */
    bool        line_had_nul;   /* the current request line had %00 */
    const char *raw_uri;        /* where the library holds it, and its length */
    size_t      raw_uri_len;
    bool        cut;
    struct guarded *prev, *next;
} guarded;

static pthread_mutex_t guard_lock = PTHREAD_MUTEX_INITIALIZER;
static guarded *watched;
static unsigned long long deadline_ms;
static pthread_t watchdog;
static bool running;
static volatile int stopping;

unsigned long long
guard_now_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (unsigned long long) t.tv_sec * 1000 + (unsigned long long) t.tv_nsec / 1000000;
}

long
guard_remaining_ms(unsigned long long started_ms)
{
    unsigned long long now = guard_now_ms();

    if (deadline_ms == 0)
        return 1L << 30;
    return now - started_ms >= deadline_ms ? 0 : (long) (deadline_ms - (now - started_ms));
}

static guarded *
guarded_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

    return ci ? (guarded *) ci->socket_context : NULL;
}

void
guard_notify_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                        enum MHD_ConnectionNotificationCode toe)
{
    guarded    *g = *socket_context;

    (void) cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED)
    {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);

        if (!ci || !(g = calloc(1, sizeof(guarded))))
            return;
        g->fd = ci->connect_fd;
        g->since_ms = guard_now_ms();
        pthread_mutex_lock(&guard_lock);
        g->next = watched;
        if (watched)
            watched->prev = g;
        watched = g;
        pthread_mutex_unlock(&guard_lock);
        *socket_context = g;
        return;
    }
    if (!g)
        return;
    pthread_mutex_lock(&guard_lock);
    if (g->prev)
        g->prev->next = g->next;
    else
        watched = g->next;
    if (g->next)
        g->next->prev = g->prev;
    pthread_mutex_unlock(&guard_lock);
    free(g);
    *socket_context = NULL;
}

/*
 * The calls below run on the connection's own thread, once or more per
 * request: no lock.  The fields the watchdog reads (handled, since_ms,
 * replied_once) are atomics; the others only the connection's thread uses.
 * The lock guards the list, so the watchdog never sees a freed entry.
 */
void
guard_request_handled(struct MHD_Connection *conn)
{
    guarded    *g = guarded_of(conn);

    if (g)
        __atomic_store_n(&g->handled, true, __ATOMIC_RELEASE);
}

void
guard_request_answered(struct MHD_Connection *conn)
{
    guarded    *g = guarded_of(conn);

    if (!g)
        return;
    g->answered = true;
    __atomic_store_n(&g->replied_once, true, __ATOMIC_RELEASE);   /* the deadline closes it, without a 408 */
}

void
guard_note_request_line(struct MHD_Connection *conn, const char *uri)
{
    guarded    *g = guarded_of(conn);

    if (!g)
        return;
    g->line_had_nul = strstr(uri, "%00") != NULL;
    g->raw_uri = uri;
    g->raw_uri_len = strlen(uri);
}

/*
 * A NUL in the request line, written as %00 or sent raw.  The library
 * splits the line in place (a NUL where each space was): the version then
 * starts right after the target, unless a raw NUL cut the target short.
 */
bool
guard_request_line_had_nul(struct MHD_Connection *conn, const char *version)
{
    guarded    *g = guarded_of(conn);
    bool        had;

    if (!g)
        return false;
    had = g->line_had_nul ||
        (g->raw_uri && version && version != g->raw_uri + g->raw_uri_len + 1);
    g->raw_uri = NULL;
    return had;
}

bool
guard_was_answered(struct MHD_Connection *conn)
{
    guarded    *g = guarded_of(conn);

    return g ? g->answered : false;
}

void
guard_request_done(struct MHD_Connection *conn)
{
    guarded    *g = guarded_of(conn);

    if (!g)
        return;
    __atomic_store_n(&g->since_ms, guard_now_ms(), __ATOMIC_RELAXED);
    __atomic_store_n(&g->replied_once, true, __ATOMIC_RELAXED);
    __atomic_store_n(&g->handled, false, __ATOMIC_RELEASE);
}

static void *
watch(void *arg)
{
    (void) arg;
    while (!stopping)
    {
        unsigned long long now = guard_now_ms();
        int         cut = 0;

        pthread_mutex_lock(&guard_lock);
        for (guarded *g = watched; g; g = g->next)
        {
            if (__atomic_load_n(&g->handled, __ATOMIC_ACQUIRE) || g->cut ||
                now - __atomic_load_n(&g->since_ms, __ATOMIC_RELAXED) < deadline_ms)
                continue;
            /* Never blocks (we hold the lock): a client that reads nothing loses it. */
            if (!__atomic_load_n(&g->replied_once, __ATOMIC_RELAXED))
                envelope_write(g->fd, 408, "the request head did not arrive in time", false);
            shutdown(g->fd, SHUT_RDWR);
            g->cut = true;
            cut++;
        }
        pthread_mutex_unlock(&guard_lock);
        if (cut)
            log_event("info", "cut %d connection(s) whose request head took over %llu s", cut, deadline_ms / 1000);
        usleep(WATCH_SLICE_MS * 1000);
    }
    return NULL;
}

int
guard_start(int deadline_s)
{
    deadline_ms = (unsigned long long) deadline_s * 1000;
    if (deadline_s <= 0)
        return 0;
    if (pthread_create(&watchdog, NULL, watch, NULL) != 0)
        return -1;
    running = true;
    return 0;
}

void
guard_stop(void)
{
    if (!running)
        return;
    stopping = 1;
    pthread_join(watchdog, NULL);
    running = false;
}
