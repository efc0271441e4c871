/*
 * pg_booking.c — module entry: settings and hooks, nothing else.
 *
 * Each concern has its own file: conflicts.c (the meeting-room conflict
 * check and the room's lock), waitlist.c (whether a room's queue has anyone
 * waiting), booking_rules.c (a booking's shape), inventory.c (the hotel
 * nights a reservation holds), analytics.c and revenue_counts.c (exact
 * counters for dashboards), events.c (the events of a statement, queued)
 * and events_publisher.c (the worker that announces them), caller.c (the
 * caller's claims, parsed once), ratelimit.c (the shared-memory limiter),
 * checkout_worker.c (the nightly checkout), errors.c (the error shape
 * shared with SQL), log_hygiene.c (business errors out of the server log)
 * and common.c (helpers they share).
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "pg_booking.h"

PG_MODULE_MAGIC;

char	   *pgb_jwt_secret = NULL;
int			pgb_access_token_ttl = 900;
int			pgb_refresh_token_ttl = 30 * 24 * 3600;
int			pgb_password_hash_slots = 1;

void		_PG_init(void);

void
_PG_init(void)
{
	/* rate-limit settings, and shared memory when preloaded (ratelimit.c) */
	pgb_rate_limit_init();

	/* business errors stay out of the server log (log_hygiene.c) */
	pgb_log_hygiene_init();

	/* counters applied at the end of each top-level statement (analytics.c) */
	pgb_analytics_init();

	/*
	 * The secret that signs access tokens.  Only superusers may read or set
	 * it, so SECURITY DEFINER functions owned by the extension's owner can
	 * mint tokens while no application role can see the key.
	 */
	DefineCustomStringVariable("pg_booking.jwt_secret",
							   "Secret (at least 32 bytes) that signs HS256 access tokens.",
							   NULL,
							   &pgb_jwt_secret,
							   NULL,
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("pg_booking.access_token_ttl",
							"Lifetime of access tokens, in seconds.",
							NULL,
							&pgb_access_token_ttl,
							900, 30, 24 * 3600,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pg_booking.refresh_token_ttl",
							"Lifetime of refresh tokens, in seconds.",
							NULL,
							&pgb_refresh_token_ttl,
							30 * 24 * 3600, 60, 365 * 24 * 3600,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	/*
	 * bcrypt costs ~50 ms of CPU: at most this many transactions hash at
	 * once (booking.password_hash_slot(), advisory locks of class
	 * PGB_LOCK_PASSWORD_HASH), so logins and password changes cannot take
	 * every core from the other requests.
	 */
	DefineCustomIntVariable("pg_booking.password_hash_slots",
							"Password hashes (bcrypt) computed at once, at most.",
							NULL,
							&pgb_password_hash_slots,
							1, 1, 64,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	/* The nightly checkout: its settings, and its worker when preloaded. */
	pgb_checkout_define_settings();
	if (process_shared_preload_libraries_in_progress)
	{
		pgb_checkout_register_worker();
		pgb_events_publisher_init();
	}

	MarkGUCPrefixReserved("pg_booking");
}
