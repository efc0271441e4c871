/*
 * mhd_envelope.h — error replies written straight to a client's socket, for
 * the moments libmicrohttpd cannot queue one: its own refusals (see
 * mhd_envelope.c), a head or body past its deadline.
 */
#ifndef ADAPTER_MHD_ENVELOPE_H
#define ADAPTER_MHD_ENVELOPE_H

#include <stdbool.h>

#include <microhttpd.h>

/*
 * The envelope for status, as a complete HTTP/1.1 reply with Connection:
 * close; message NULL: the usual one for that status.
 */
void        envelope_write(int fd, unsigned int status, const char *message, bool wait);
/* The same on a connection's socket; the caller then has it closed. */
bool        envelope_write_to(struct MHD_Connection *connection, unsigned int status, const char *message);

#endif
