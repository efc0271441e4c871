/*
 * pg_booking.h — declarations shared by the extension's C files.
 */
#ifndef PG_BOOKING_H
#define PG_BOOKING_H

#include "postgres.h"
#include "access/htup.h"
#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/relcache.h"

/*
 * Business errors: SQLSTATE PTxyz carries the HTTP status xyz (PostgREST's
 * convention); DETAIL is a JSON object with "error_code" (see raise_error in
 * extension/pg_booking--1.0.sql, which raises the same shape from SQL).
 */
#define PGB_ERRCODE_400 MAKE_SQLSTATE('P','T','4','0','0')
#define PGB_ERRCODE_404 MAKE_SQLSTATE('P','T','4','0','4')
#define PGB_ERRCODE_409 MAKE_SQLSTATE('P','T','4','0','9')
#define PGB_ERRCODE_422 MAKE_SQLSTATE('P','T','4','2','2')
#define PGB_ERRCODE_429 MAKE_SQLSTATE('P','T','4','2','9')
#define PGB_ERRCODE_500 MAKE_SQLSTATE('P','T','5','0','0')

/*
 * The DETAIL of a business error: {"error_code": code, <extra>}.  extra is
 * either NULL or the members of a JSON object without its braces.
 */
extern char *pgb_error_detail(const char *error_code, const char *extra);

/*
 * Advisory lock classes (the fourth field of an advisory LOCKTAG), distinct
 * from the 1 and 2 that pg_advisory_lock() uses, so user locks never collide
 * with ours.
 */
#define PGB_LOCK_ROOM		0x5201
#define PGB_LOCK_CHECKOUT	0x5202	/* one checkout worker per database */
#define PGB_LOCK_CHECKOUT_DATE	0x5203	/* starters of one business date (common.c) */
#define PGB_LOCK_PASSWORD_HASH	0x5204	/* bcrypt slots (SQL, booking.password_hash_slot) */

/* a booking's shape, booking_rules.c */
#define PGB_MAX_BOOKING_LENGTH	((int64) 24 * USECS_PER_HOUR)
extern void pgb_check_booking_times(TimestampTz start, TimestampTz end);
extern int64 pgb_clash_gap(int32 buffer_before_minutes, int32 buffer_after_minutes);

/* the room's lock, conflicts.c: held until the transaction ends */
extern void pgb_lock_room_until_commit(int64 room_id);

/* shared helpers, common.c */
extern SPIPlanPtr pgb_keep_plan(SPIPlanPtr *cache, const char *sql, int nargs, Oid *argtypes);
extern AttrNumber pgb_attnum(Oid relid, const char *name);
/* Our caches' relcache callbacks share one of PostgreSQL's slots (common.c). */
extern void pgb_register_relcache_callback(void (*func) (Datum arg, Oid relid));
extern Datum pgb_column(Relation rel, HeapTuple tup, const char *name, bool *isnull);
extern bool pgb_is_citus_shard(Relation rel, const char *table);
/* What this node is to Citus (common.c). */
typedef enum PgbCitusNode
{
	PGB_NOT_CITUS,
	PGB_CITUS_COORDINATOR,
	PGB_CITUS_WORKER
} PgbCitusNode;
extern PgbCitusNode pgb_citus_node(void);

/* rate limits, ratelimit.c */
extern bool pgb_rate_limit_enabled;
extern void pgb_rate_limit_init(void);

/* server log hygiene, log_hygiene.c */
extern bool pgb_log_business_errors;
extern void pgb_log_hygiene_init(void);

/* settings, pg_booking.c */
extern char *pgb_jwt_secret;
extern int	pgb_access_token_ttl;
extern int	pgb_refresh_token_ttl;
extern int	pgb_password_hash_slots;

/* nightly checkout, checkout_worker.c */
extern char *pgb_checkout_database;
extern char *pgb_checkout_time;
extern char *pgb_checkout_time_zone;
extern bool pgb_checkout_release_no_shows;
extern int	pgb_checkout_test_clock_offset;
extern char *pgb_checkout_test_clock;
extern int	pgb_series_no_show_limit;
extern bool pgb_time_zone_known(const char *name);
extern void pgb_checkout_define_settings(void);
extern void pgb_checkout_register_worker(void);

/* events publisher, events_publisher.c (started by the checkout launcher) */
extern void pgb_events_publisher_init(void);
extern void pgb_wake_publisher_at_commit(void);

/* the caller, caller.c: the "sub" claim; false when anonymous */
extern bool pgb_caller_user_id(int64 *uid);

/* counters applied at the end of each top-level statement, analytics.c */
extern void pgb_analytics_init(void);

#endif							/* PG_BOOKING_H */
