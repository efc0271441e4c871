/*
 * conflicts.c — two confirmed bookings of one meeting room never overlap.
 *
 * How it stays correct under concurrency (READ COMMITTED or stronger, any
 * number of concurrent inserts and reschedules):
 *
 *   1. Before looking, the writer takes a transaction-scoped exclusive
 *      advisory lock on the room (class PGB_LOCK_ROOM).  Every path that
 *      places a confirmed booking in a room goes through the trigger below,
 *      so all such writers of one room are serialised until commit or abort;
 *      writers of different rooms never wait for each other.
 *   2. Only then does it look for clashes, with a snapshot taken after the
 *      lock was granted (GetLatestSnapshot, as the RI triggers do), so it
 *      sees every booking committed by the previous holder, even under
 *      REPEATABLE READ, and the rows its own transaction wrote before.
 *   3. The row is written while the lock is still held, and the lock is only
 *      released at commit: the next writer's snapshot contains it.
 *
 * The check runs as the table's owner with row-level security off, as the RI
 * triggers do: a user must not be able to book over a booking they cannot see.
 * Buffers: a room's buffer_before/after minutes widen every booking of the
 * room, so two bookings clash when they come closer than before + after.
 * Bookings are at most 24 h long (a CHECK constraint), which bounds the index
 * range scanned on (room_id, starts_at) to the window around the new booking.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "access/htup_details.h"
#include "catalog/pg_class.h"

#include "pg_booking.h"

PG_FUNCTION_INFO_V1(booking_conflicts);
PG_FUNCTION_INFO_V1(check_booking_conflict);

#define MAX_BOOKING_LENGTH	((int64) 24 * USECS_PER_HOUR)

/* What one look at a room found. */
typedef struct RoomCheck
{
	bool		room_found;
	bool		room_active;
	char	   *conflicts;		/* JSON array, or NULL when none */
} RoomCheck;

static SPIPlanPtr room_check_plan = NULL;

static const char *room_check_sql =
"SELECT r.active,"
"       (SELECT jsonb_agg(jsonb_build_object('booking_id', b.id, 'starts_at', b.starts_at,"
"                                            'ends_at', b.ends_at) ORDER BY b.starts_at)"
"          FROM booking.bookings b"
"         WHERE b.room_id = r.id AND b.status = 'confirmed' AND b.id <> coalesce($4, 0)"
"           AND b.starts_at < $3 + g.gap"
"           AND b.starts_at > $2 - g.gap - interval '24 hours'"
"           AND b.ends_at > $2 - g.gap)"
"  FROM booking.rooms r"
" CROSS JOIN LATERAL (SELECT make_interval(mins => r.buffer_before_minutes + r.buffer_after_minutes) AS gap) g"
" WHERE r.id = $1";

/* Serialise every writer of confirmed bookings of this room until commit. */
static void
lock_room(int64 room_id)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId,
						 (uint32) ((uint64) room_id >> 32), (uint32) room_id,
						 PGB_LOCK_ROOM);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

static Oid
bookings_owner(void)
{
	Oid			nsp = get_namespace_oid("booking", false);
	Oid			relid = get_relname_relid("bookings", nsp);
	HeapTuple	tup;
	Oid			owner;

	if (!OidIsValid(relid))
		elog(ERROR, "table booking.bookings does not exist");
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * Lock the room, then look at it: does it exist, is it active, which
 * confirmed bookings (other than exclude_id) clash with [start, end)?
 */
static void
check_room(Oid owner, int64 room_id, TimestampTz start, TimestampTz end,
		   int64 exclude_id, bool has_exclude, RoomCheck *result)
{
	Oid			save_userid;
	int			save_sec_context;
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	MemoryContext caller_cxt = CurrentMemoryContext;
	int			rc;

	lock_room(room_id);

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(owner, save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_NOFORCE_RLS);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	if (room_check_plan == NULL)
	{
		Oid			argtypes[4] = {INT8OID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT8OID};
		SPIPlanPtr	plan = SPI_prepare(room_check_sql, 4, argtypes);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		room_check_plan = plan;
	}

	values[0] = Int64GetDatum(room_id);
	values[1] = TimestampTzGetDatum(start);
	values[2] = TimestampTzGetDatum(end);
	values[3] = Int64GetDatum(exclude_id);
	if (!has_exclude)
		nulls[3] = 'n';

	/* A snapshot taken now, after the lock: see the previous holder's rows. */
	rc = SPI_execute_snapshot(room_check_plan, values, nulls,
							  GetLatestSnapshot(), InvalidSnapshot,
							  false, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "room check query failed: %s", SPI_result_code_string(rc));

	result->room_found = (SPI_processed == 1);
	result->room_active = false;
	result->conflicts = NULL;
	if (result->room_found)
	{
		HeapTuple	row = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		active = SPI_getbinval(row, desc, 1, &isnull);
		char	   *conflicts;

		result->room_active = !isnull && DatumGetBool(active);
		conflicts = SPI_getvalue(row, desc, 2);
		if (conflicts != NULL)
			result->conflicts = MemoryContextStrdup(caller_cxt, conflicts);
	}

	SPI_finish();
	SetUserIdAndSecContext(save_userid, save_sec_context);
}

/*
 * booking.booking_conflicts(room_id, starts_at, ends_at, exclude_id)
 *   -> jsonb array of the confirmed bookings that clash, or NULL.
 *
 * Takes the room's lock (kept until the transaction ends), so a caller that
 * checks several occurrences and then inserts the free ones cannot be raced.
 * The clashing bookings are named by id and time only: their owners and
 * titles stay private.
 */
Datum
booking_conflicts(PG_FUNCTION_ARGS)
{
	RoomCheck	check;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_NULL();

	check_room(bookings_owner(), PG_GETARG_INT64(0),
			   PG_GETARG_TIMESTAMPTZ(1), PG_GETARG_TIMESTAMPTZ(2),
			   PG_ARGISNULL(3) ? 0 : PG_GETARG_INT64(3), !PG_ARGISNULL(3),
			   &check);

	if (check.conflicts == NULL)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(check.conflicts)));
}

static int
attnum_of(Relation rel, const char *name)
{
	int			attnum = SPI_fnumber(RelationGetDescr(rel), name);

	if (attnum <= 0)
		elog(ERROR, "column \"%s\" not found in \"%s\"", name, RelationGetRelationName(rel));
	return attnum;
}

/*
 * BEFORE INSERT OR UPDATE trigger on booking.bookings: refuses a confirmed
 * booking that is malformed, in an unknown or inactive room, or that clashes
 * with another confirmed booking of its room (buffers included).
 */
Datum
check_booking_conflict(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	HeapTuple	newtup;
	bool		is_update;
	bool		isnull;
	int64		room_id;
	int64		booking_id;
	TimestampTz start;
	TimestampTz end;
	Datum		d;
	RoomCheck	check;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "check_booking_conflict: not called by trigger manager");
	if (!TRIGGER_FIRED_BEFORE(trigdata->tg_event) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		elog(ERROR, "check_booking_conflict: must be fired before insert or update, for each row");

	rel = trigdata->tg_relation;
	desc = RelationGetDescr(rel);
	is_update = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event);
	newtup = is_update ? trigdata->tg_newtuple : trigdata->tg_trigtuple;

	/* Only confirmed bookings hold their room. */
	d = heap_getattr(newtup, attnum_of(rel, "status"), desc, &isnull);
	if (isnull || strcmp(TextDatumGetCString(d), "confirmed") != 0)
		return PointerGetDatum(newtup);

	d = heap_getattr(newtup, attnum_of(rel, "room_id"), desc, &isnull);
	if (isnull)
		return PointerGetDatum(newtup);		/* NOT NULL refuses it */
	room_id = DatumGetInt64(d);
	d = heap_getattr(newtup, attnum_of(rel, "starts_at"), desc, &isnull);
	if (isnull)
		return PointerGetDatum(newtup);
	start = DatumGetTimestampTz(d);
	d = heap_getattr(newtup, attnum_of(rel, "ends_at"), desc, &isnull);
	if (isnull)
		return PointerGetDatum(newtup);
	end = DatumGetTimestampTz(d);
	d = heap_getattr(newtup, attnum_of(rel, "id"), desc, &isnull);
	booking_id = isnull ? 0 : DatumGetInt64(d);

	/* A retitle, or any change that leaves the room and times alone, needs no look. */
	if (is_update)
	{
		HeapTuple	oldtup = trigdata->tg_trigtuple;
		Datum		old_status = heap_getattr(oldtup, attnum_of(rel, "status"), desc, &isnull);

		if (!isnull && strcmp(TextDatumGetCString(old_status), "confirmed") == 0 &&
			DatumGetInt64(heap_getattr(oldtup, attnum_of(rel, "room_id"), desc, &isnull)) == room_id &&
			DatumGetTimestampTz(heap_getattr(oldtup, attnum_of(rel, "starts_at"), desc, &isnull)) == start &&
			DatumGetTimestampTz(heap_getattr(oldtup, attnum_of(rel, "ends_at"), desc, &isnull)) == end)
			return PointerGetDatum(newtup);
	}

	if (end <= start)
		ereport(ERROR,
				(errcode(PGB_ERRCODE_422),
				 errmsg("booking must end after it starts"),
				 errdetail_internal("%s", pgb_error_detail("VALIDATION_ERROR",
														   "\"field\": \"ends_at\""))));
	if (end - start > MAX_BOOKING_LENGTH)
		ereport(ERROR,
				(errcode(PGB_ERRCODE_422),
				 errmsg("booking is longer than 24 hours"),
				 errdetail_internal("%s", pgb_error_detail("VALIDATION_ERROR",
														   "\"field\": \"ends_at\", \"max_hours\": 24"))));

	check_room(rel->rd_rel->relowner, room_id, start, end, booking_id, true, &check);

	if (!check.room_found)
		ereport(ERROR,
				(errcode(PGB_ERRCODE_404),
				 errmsg("room %lld not found", (long long) room_id),
				 errdetail_internal("%s", pgb_error_detail("NOT_FOUND",
														   psprintf("\"room_id\": %lld", (long long) room_id)))));
	if (!check.room_active)
		ereport(ERROR,
				(errcode(PGB_ERRCODE_422),
				 errmsg("room %lld is not active", (long long) room_id),
				 errdetail_internal("%s", pgb_error_detail("VALIDATION_ERROR",
														   psprintf("\"room_id\": %lld", (long long) room_id)))));
	if (check.conflicts != NULL)
		ereport(ERROR,
				(errcode(PGB_ERRCODE_409),
				 errmsg("room %lld is already booked at that time", (long long) room_id),
				 errdetail_internal("%s", pgb_error_detail("BOOKING_CONFLICT",
														   psprintf("\"room_id\": %lld, \"conflicts\": %s",
																	(long long) room_id, check.conflicts))),
				 errhint("Choose another time or room; GET /rooms/%lld/availability lists the free intervals.",
						 (long long) room_id)));

	return PointerGetDatum(newtup);
}
