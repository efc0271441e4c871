/*
 * mhd_envelope.c — the replies libmicrohttpd makes itself, in the envelope.
 *
 * libmicrohttpd answers some requests before our handler ever sees them: a
 * malformed request line or chunked body (400), a request head larger than
 * the connection's memory (414, 431), a Content-Length it cannot hold (413),
 * an HTTP version it does not speak (505).  Its bodies are fixed HTML pages,
 * and 0.9.75 (Debian 12) has no option or callback to replace them.
 *
 * It does queue them through its own exported MHD_queue_response, called
 * through the PLT, so a definition in the executable takes the call first
 * (symbol interposition; the Makefile exports this one symbol).  A response
 * without X-Request-Id was made by the library, since every one of ours
 * carries it: for such a response the envelope with the same status is
 * sent instead, and nothing else.
 * adapter/t/036 sends each kind of request the library refuses, so a
 * libmicrohttpd that stops calling through the PLT fails the tests rather
 * than silently sending HTML again.
 */
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "conn_guard.h"
#include "errors.h"
#include "mhd_envelope.h"
#include "metrics.h"
#include "routes.h"

typedef enum MHD_Result (*queue_fn) (struct MHD_Connection *, unsigned int, struct MHD_Response *);

static queue_fn real_queue;
static pthread_once_t real_queue_once = PTHREAD_ONCE_INIT;

static void
find_real_queue(void)
{
    real_queue = (queue_fn) dlsym(RTLD_NEXT, "MHD_queue_response");
}

/* What the library's refusals mean, said our way. */
static void
library_error(unsigned int status, http_error *e)
{
    switch (status)
    {
        case 400:
            error_set(e, 400, "BAD_REQUEST", "the request is not valid HTTP/1.1");
            break;
        case 408:
            error_set(e, 408, "REQUEST_TIMEOUT", "the request did not arrive in time");
            break;
        case 413:
            error_set(e, 413, "PAYLOAD_TOO_LARGE", "the request's Content-Length is too large");
            break;
        case 414:
            error_set(e, 414, "URI_TOO_LONG", "the request line is too long");
            break;
        case 431:
            error_set(e, 431, "HEADERS_TOO_LARGE", "the request headers are too large");
            break;
        case 505:
            error_set(e, 505, "HTTP_VERSION_NOT_SUPPORTED", "only HTTP/1.0 and HTTP/1.1 are spoken here");
            break;
        default:
            error_set(e, (int) status, status >= 500 ? "INTERNAL_ERROR" : "BAD_REQUEST",
                      "the request was refused by the HTTP layer (status %u)", status);
            break;
    }
}

/* Write all of text to the client, waiting at most a second for room. */
static void
send_all(int fd, const char *text, size_t len)
{
    while (len > 0)
    {
        ssize_t     n = send(fd, text, len, MSG_NOSIGNAL);

        if (n > 0)
        {
            text += n;
            len -= (size_t) n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
        {
            struct pollfd p = {.fd = fd, .events = POLLOUT};

            if (poll(&p, 1, 1000) > 0)
                continue;
        }
        return;
    }
}

void
envelope_write(int fd, unsigned int status, const char *message, bool wait)
{
    http_error  e = {0};
    char        rid[80];
    char       *body;
    char       *text;
    const char *reason = MHD_get_reason_phrase_for(status);
    int         n;

    request_id_new(rid, sizeof(rid));
    library_error(status, &e);
    if (message)
    {
        free(e.message);
        e.message = strdup(message);
    }
    body = error_envelope(&e, rid);
    metrics_observe(route_label_special(ROUTE_LABEL_UNMATCHED), (int) status, 0.0, e.error_code);
    error_free(&e);
    if (!body)
        return;
    n = asprintf(&text, "HTTP/1.1 %u %s\r\nConnection: close\r\nContent-Type: application/json\r\n"
                 "X-Request-Id: %s\r\nContent-Length: %zu\r\n\r\n%s",
                 status, reason && *reason ? reason : "Error", rid, strlen(body), body);
    free(body);
    if (n < 0)
        return;
    if (wait)
        send_all(fd, text, (size_t) n);
    else
        (void) send(fd, text, (size_t) n, MSG_DONTWAIT | MSG_NOSIGNAL);
    free(text);
}

bool
envelope_write_to(struct MHD_Connection *connection, unsigned int status, const char *message)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);

    if (!ci)
        return false;
    envelope_write(ci->connect_fd, status, message, true);
    return true;
}

static void
shut_sending_side(struct MHD_Connection *connection)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);

    if (ci)
        shutdown(ci->connect_fd, SHUT_WR);
}

enum MHD_Result
MHD_queue_response(struct MHD_Connection *connection, unsigned int status_code,
                   struct MHD_Response *response)
{
    pthread_once(&real_queue_once, find_real_queue);
    if (!real_queue)
        abort();                /* cannot happen while we link libmicrohttpd */
    if (status_code < 400 || response == NULL ||
        MHD_get_response_header(response, "X-Request-Id") != NULL)
        return real_queue(connection, status_code, response);
    /*
     * The whole reply is written here and the socket's sending side shut,
     * then the library's own response is queued as usual: its control flow
     * stays the stock one (returning MHD_NO from inside its parameter
     * parsing makes 0.9.75 read a discarded buffer and crash), but what it
     * sends goes nowhere.  That also hides its second header block after an
     * overflowing Content-Length.
     */
    if (!guard_was_answered(connection))
        (void) envelope_write_to(connection, status_code, NULL);
    shut_sending_side(connection);
    return real_queue(connection, status_code, response);
}
