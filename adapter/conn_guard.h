/*
 * conn_guard.h — what a connection may cost us before its request is
 * handled: an absolute deadline for the request head (and, checked by
 * http.c, the body), however slowly its bytes trickle in; and what its
 * current request line said before libmicrohttpd decoded it.
 */
#ifndef ADAPTER_CONN_GUARD_H
#define ADAPTER_CONN_GUARD_H

#include <stdbool.h>
#include <stddef.h>

#include <microhttpd.h>

/* Start the watchdog; deadline_s 0 disables it. */
int         guard_start(int deadline_s);
void        guard_stop(void);
/* MHD_OPTION_NOTIFY_CONNECTION: a connection opens or closes. */
void        guard_notify_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                                    enum MHD_ConnectionNotificationCode toe);
/* The request's head is complete (first access-handler call): no deadline while handled. */
void        guard_request_handled(struct MHD_Connection *conn);
/* What the raw request line said (before libmicrohttpd decoded it). */
void        guard_note_request_line(struct MHD_Connection *conn, const char *uri);
/* At the first handler call: did the line hold a NUL (%00, or raw before the version)? */
bool        guard_request_line_had_nul(struct MHD_Connection *conn, const char *version);
/* Refused from its request line (the reply is written): nothing else goes out. */
void        guard_request_answered(struct MHD_Connection *conn);
bool        guard_was_answered(struct MHD_Connection *conn);
/* The reply was sent: the next request's head has its own deadline. */
void        guard_request_done(struct MHD_Connection *conn);
/* Milliseconds left before the deadline, counted from started_ms (monotonic). */
long        guard_remaining_ms(unsigned long long started_ms);
unsigned long long guard_now_ms(void);

#endif
