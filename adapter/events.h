/*
 * events.h — GET /events as a server-sent event stream: the backlog the api
 * function returned, then every event published after it, live (one LISTEN
 * connection on pg_booking_events serves every stream).
 */
#ifndef ADAPTER_EVENTS_H
#define ADAPTER_EVENTS_H

#include <stdbool.h>
#include <stddef.h>

struct MHD_Response;

/*
 * Call only after api.list_events answered for this caller (that is the
 * authorization).  NULL when the stream cannot start (too many streams, no
 * database).
 */
struct MHD_Response *events_stream(const char *conninfo, const char *role, const char *claims,
                                   const char *client_ip, const char *after_id, char *why, size_t whylen);
/* Make every stream end soon (SIGTERM). */
void        events_stop_all(void);
/* After every stream has ended: stop the LISTEN thread and close its connection. */
void        events_shutdown(void);
void        events_configure(int max_streams, int idle_timeout_s);
/* Streams open now (GET /metrics). */
int         events_streams_open(void);
/* A stream ends after this many seconds (the client reconnects with Last-Event-ID). */
void        events_set_max_lifetime(int seconds);

#endif
