/*
 * booking_rules.c — the rules of a booking's shape, written once.
 *
 * Every write of a booking passes the C trigger of conflicts.c, so the rules
 * it must check on every path (psql, the api, a batch job) live here, and
 * the SQL functions that need the same answer before writing call these
 * through the SQL wrappers below instead of restating them:
 *
 *   times        a booking ends after it starts and lasts at most
 *                PGB_MAX_BOOKING_LENGTH; booking.validate_booking_times
 *                (the api's check, which adds "not in the past" for plain
 *                users) calls booking.check_booking_times.
 *   clash gap    two bookings of a room clash when they come closer than
 *                the room's buffer_before + buffer_after minutes; the
 *                conflict check and booking.rooms_busy (availability,
 *                suggestions) both take it from booking.clash_gap, and the
 *                scans that rely on the longest booking take
 *                booking.max_booking_length.
 *   statuses     every status a booking may have: booking.booking_statuses,
 *                which the bookings' CHECK constraint, the counters' columns
 *                and the readers take.  It is C because the CHECK folds it
 *                to a constant each time a statement prepares its
 *                constraints: as an SQL function that meant parsing and
 *                planning its body once per INSERT or UPDATE statement
 *                (about a fifth of a single-row insert).
 */
#include "postgres.h"

#include "datatype/timestamp.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/timestamp.h"

#include "pg_booking.h"

PG_FUNCTION_INFO_V1(check_booking_times);
PG_FUNCTION_INFO_V1(clash_gap);
PG_FUNCTION_INFO_V1(max_booking_length);
PG_FUNCTION_INFO_V1(booking_statuses);

/* The statuses, in the order booking.booking_statuses() gives them. */
static const char *const statuses[] = {
	"confirmed", "held", "pending", "completed", "cancelled", "released", "expired", "rejected"
};

/* Refuse a booking whose times are malformed (VALIDATION_ERROR, 422). */
void
pgb_check_booking_times(TimestampTz start, TimestampTz end)
{
	if (end <= start)
	{
		char		s[MAXDATELEN + 1];
		char		e[MAXDATELEN + 1];

		ereport(ERROR,
				(errcode(PGB_ERRCODE_422),
				 errmsg("booking must end after it starts"),
				 errdetail_internal("%s", pgb_error_detail("VALIDATION_ERROR",
														   psprintf("\"field\": \"ends_at\", \"starts_at\": \"%s\", \"ends_at\": \"%s\"",
																	JsonEncodeDateTime(s, TimestampTzGetDatum(start), TIMESTAMPTZOID, NULL),
																	JsonEncodeDateTime(e, TimestampTzGetDatum(end), TIMESTAMPTZOID, NULL))))));
	}
	if (end - start > PGB_MAX_BOOKING_LENGTH)
		ereport(ERROR,
				(errcode(PGB_ERRCODE_422),
				 errmsg("booking is longer than %d hours",
						(int) (PGB_MAX_BOOKING_LENGTH / USECS_PER_HOUR)),
				 errdetail_internal("%s", pgb_error_detail("VALIDATION_ERROR",
														   psprintf("\"field\": \"ends_at\", \"max_hours\": %d",
																	(int) (PGB_MAX_BOOKING_LENGTH / USECS_PER_HOUR))))));
}

/* The clash gap of a room with these buffers, in microseconds. */
int64
pgb_clash_gap(int32 buffer_before_minutes, int32 buffer_after_minutes)
{
	return ((int64) buffer_before_minutes + buffer_after_minutes) * USECS_PER_MINUTE;
}

/* booking.check_booking_times(starts_at, ends_at): raises, or returns. */
Datum
check_booking_times(PG_FUNCTION_ARGS)
{
	if (!PG_ARGISNULL(0) && !PG_ARGISNULL(1))
		pgb_check_booking_times(PG_GETARG_TIMESTAMPTZ(0), PG_GETARG_TIMESTAMPTZ(1));
	PG_RETURN_VOID();
}

static Interval *
usecs_interval(int64 usecs)
{
	Interval   *result = palloc0(sizeof(Interval));

	result->time = usecs;
	return result;
}

/* booking.clash_gap(buffer_before_minutes, buffer_after_minutes) -> interval */
Datum
clash_gap(PG_FUNCTION_ARGS)
{
	PG_RETURN_INTERVAL_P(usecs_interval(pgb_clash_gap(PG_GETARG_INT32(0), PG_GETARG_INT32(1))));
}

/* booking.max_booking_length() -> interval */
Datum
max_booking_length(PG_FUNCTION_ARGS)
{
	PG_RETURN_INTERVAL_P(usecs_interval(PGB_MAX_BOOKING_LENGTH));
}

/* booking.booking_statuses() -> text[] */
Datum
booking_statuses(PG_FUNCTION_ARGS)
{
	Datum		items[lengthof(statuses)];

	for (int i = 0; i < lengthof(statuses); i++)
		items[i] = CStringGetTextDatum(statuses[i]);
	PG_RETURN_ARRAYTYPE_P(construct_array(items, lengthof(statuses), TEXTOID, -1, false, TYPALIGN_INT));
}
