/*
 * analytics.c — summary tables kept exact by triggers, so dashboards read
 * O(rooms) rows instead of scanning every booking and review.
 *
 *   booking.room_booking_counts  (room_id, confirmed, cancelled, completed)
 *   booking.room_rating_counts   (room_id, review_count, rating_sum) over the
 *                                reviews that are not hidden
 *
 * Statement-level AFTER triggers with transition tables: each INSERT,
 * UPDATE or DELETE of booking.bookings or booking.reviews sums what its rows
 * took away (old_rows) and added (new_rows) per room, and adds the net
 * deltas to each touched room's counter row with UPDATE ... SET n = n + d,
 * in the writer's own transaction:
 *
 *   - exact under concurrency: the UPDATE locks the counter row and adds to
 *     its latest committed version (READ COMMITTED re-evaluates on the new
 *     version), so concurrent writers queue instead of losing increments; a
 *     rollback, of a transaction or of a subtransaction, takes its deltas
 *     with it.  Under REPEATABLE READ a concurrent change of the same
 *     counter raises a serialization failure, never a wrong sum.
 *   - no deadlock between counters: every statement locks the counter rows
 *     it touches in room-id order, so two writers never wait for each other
 *     in a cycle, however many rooms their statements span.
 *   - one counter update per room and statement: a bulk load of n bookings
 *     of a room costs one update, not n versions of the same row.
 *   - changes that move nothing (a retitle, a reschedule within the room)
 *     net to zero and write nothing.
 *   - the counter row of a room is created with the room (row trigger on
 *     booking.rooms), so rooms without bookings read as zeros; an upsert
 *     creates a row missing since before the trigger existed.
 *   - TRUNCATE of a counted table zeroes its counters.
 *
 * The counters run as the owner of the counted table with row-level
 * security off (as the RI triggers do): a user may move their own booking
 * and must not be able to write a counter directly.
 * booking.analytics_check() compares every counter with a full recount.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/rel.h"

#include "pg_booking.h"

PG_FUNCTION_INFO_V1(count_bookings);
PG_FUNCTION_INFO_V1(count_reviews);
PG_FUNCTION_INFO_V1(count_rooms);

#define MAX_COUNTERS	3

/* Which transition tables a statement has. */
typedef enum ChangeKind
{
	CHANGE_INSERT,				/* new_rows */
	CHANGE_UPDATE,				/* old_rows and new_rows */
	CHANGE_DELETE,				/* old_rows */
	NUM_CHANGE_KINDS
} ChangeKind;

/*
 * One summary table.  The delta queries read the transition tables, which
 * the triggers must name old_rows and new_rows, and return one row per room
 * with a non-zero change: room_id, then the counters' deltas, by room_id.
 */
typedef struct CounterTable
{
	const char *deltas_sql[NUM_CHANGE_KINDS];
	const char *update_sql;		/* $1 room_id, $2.. the deltas */
	const char *upsert_sql;		/* the same, creating a missing row */
	const char *reset_sql;		/* zero every counter (after TRUNCATE) */
	int			ncounters;
	SPIPlanPtr	deltas_plan[NUM_CHANGE_KINDS];
	SPIPlanPtr	update_plan;
	SPIPlanPtr	upsert_plan;
} CounterTable;

/* A booking counts once, in the column of its status. */
#define BOOKING_SIDE(rows, sign) \
	"SELECT room_id, " sign "(status = 'confirmed')::int AS confirmed, " \
	sign "(status = 'cancelled')::int AS cancelled, " \
	sign "(status = 'completed')::int AS completed FROM " rows
#define BOOKING_SUM(sides) \
	"SELECT room_id, sum(confirmed)::int8, sum(cancelled)::int8, sum(completed)::int8" \
	" FROM (" sides ") d GROUP BY room_id" \
	" HAVING sum(confirmed) <> 0 OR sum(cancelled) <> 0 OR sum(completed) <> 0" \
	" ORDER BY room_id"

static CounterTable booking_counts = {
	{
		BOOKING_SUM(BOOKING_SIDE("new_rows", "")),
		BOOKING_SUM(BOOKING_SIDE("new_rows", "") " UNION ALL " BOOKING_SIDE("old_rows", "-")),
		BOOKING_SUM(BOOKING_SIDE("old_rows", "-")),
	},
	"UPDATE booking.room_booking_counts"
	" SET confirmed = confirmed + $2, cancelled = cancelled + $3, completed = completed + $4"
	" WHERE room_id = $1",
	"INSERT INTO booking.room_booking_counts AS c (room_id, confirmed, cancelled, completed)"
	" VALUES ($1, $2, $3, $4)"
	" ON CONFLICT (room_id) DO UPDATE"
	" SET confirmed = c.confirmed + excluded.confirmed,"
	"     cancelled = c.cancelled + excluded.cancelled,"
	"     completed = c.completed + excluded.completed",
	"UPDATE booking.room_booking_counts SET confirmed = 0, cancelled = 0, completed = 0",
	3
};

/* A review counts (once, with its rating) unless it is hidden. */
#define REVIEW_SIDE(rows, sign) \
	"SELECT room_id, " sign "1 AS n, " sign "rating AS r FROM " rows " WHERE status <> 'hidden'"
#define REVIEW_SUM(sides) \
	"SELECT room_id, sum(n)::int8, sum(r)::int8" \
	" FROM (" sides ") d GROUP BY room_id" \
	" HAVING sum(n) <> 0 OR sum(r) <> 0" \
	" ORDER BY room_id"

static CounterTable rating_counts = {
	{
		REVIEW_SUM(REVIEW_SIDE("new_rows", "")),
		REVIEW_SUM(REVIEW_SIDE("new_rows", "") " UNION ALL " REVIEW_SIDE("old_rows", "-")),
		REVIEW_SUM(REVIEW_SIDE("old_rows", "-")),
	},
	"UPDATE booking.room_rating_counts"
	" SET review_count = review_count + $2, rating_sum = rating_sum + $3"
	" WHERE room_id = $1",
	"INSERT INTO booking.room_rating_counts AS c (room_id, review_count, rating_sum)"
	" VALUES ($1, $2, $3)"
	" ON CONFLICT (room_id) DO UPDATE"
	" SET review_count = c.review_count + excluded.review_count,"
	"     rating_sum = c.rating_sum + excluded.rating_sum",
	"UPDATE booking.room_rating_counts SET review_count = 0, rating_sum = 0",
	2
};

/* A room's net change. */
typedef struct Contribution
{
	int64		room_id;
	int64		delta[MAX_COUNTERS];
} Contribution;

static SPIPlanPtr
counter_plan(CounterTable *table, SPIPlanPtr *cache, const char *sql)
{
	Oid			argtypes[1 + MAX_COUNTERS];

	for (int i = 0; i <= table->ncounters; i++)
		argtypes[i] = INT8OID;
	return pgb_keep_plan(cache, sql, 1 + table->ncounters, argtypes);
}

/*
 * Add a room's deltas to its row.  A plain UPDATE first: the row exists
 * from the room's creation on, and an upsert would check the CHECK (n >= 0)
 * constraints on its proposed row of bare deltas, which are negative for a
 * cancel.  The upsert only creates a row missing since before the trigger.
 */
static void
add_to_room(CounterTable *table, const Contribution *c)
{
	Datum		values[1 + MAX_COUNTERS];
	int			rc;

	values[0] = Int64GetDatum(c->room_id);
	for (int i = 0; i < table->ncounters; i++)
		values[1 + i] = Int64GetDatum(c->delta[i]);
	rc = SPI_execute_plan(counter_plan(table, &table->update_plan, table->update_sql),
						  values, NULL, false, 0);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "counter update failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 1)
		return;
	rc = SPI_execute_plan(counter_plan(table, &table->upsert_plan, table->upsert_sql),
						  values, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "counter upsert failed: %s", SPI_result_code_string(rc));
}

/* Run statements as the counted table's owner, row-level security off. */
typedef struct OwnerContext
{
	Oid			save_userid;
	int			save_sec_context;
} OwnerContext;

static void
become_owner(Relation rel, OwnerContext *ctx)
{
	GetUserIdAndSecContext(&ctx->save_userid, &ctx->save_sec_context);
	SetUserIdAndSecContext(rel->rd_rel->relowner,
						   ctx->save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_NOFORCE_RLS);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

static void
stop_being_owner(OwnerContext *ctx)
{
	SPI_finish();
	SetUserIdAndSecContext(ctx->save_userid, ctx->save_sec_context);
}

/*
 * Sum the statement's changes per room, then apply them in room-id order
 * (the order is the deadlock argument above).
 */
static void
apply_statement(TriggerData *trigdata, CounterTable *table, ChangeKind kind)
{
	OwnerContext ctx;
	int			rc;
	uint64		nrooms;
	Contribution *changes;

	become_owner(trigdata->tg_relation, &ctx);
	if (SPI_register_trigger_data(trigdata) != SPI_OK_TD_REGISTER)
		elog(ERROR, "SPI_register_trigger_data failed");

	rc = SPI_execute_plan(pgb_keep_plan(&table->deltas_plan[kind], table->deltas_sql[kind], 0, NULL),
						  NULL, NULL, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "counter deltas query failed: %s", SPI_result_code_string(rc));

	/* Copy the deltas out: the next SPI call replaces SPI_tuptable. */
	nrooms = SPI_processed;
	changes = palloc0(sizeof(Contribution) * Max(nrooms, 1));
	for (uint64 i = 0; i < nrooms; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		changes[i].room_id = DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull));
		for (int c = 0; c < table->ncounters; c++)
			changes[i].delta[c] = DatumGetInt64(SPI_getbinval(row, desc, 2 + c, &isnull));
	}

	for (uint64 i = 0; i < nrooms; i++)
		add_to_room(table, &changes[i]);
	stop_being_owner(&ctx);
}

static void
reset_counters(Relation rel, CounterTable *table)
{
	OwnerContext ctx;

	become_owner(rel, &ctx);
	if (SPI_execute(table->reset_sql, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "counter reset failed");
	stop_being_owner(&ctx);
}

static Datum
count_statement(FunctionCallInfo fcinfo, const char *name, CounterTable *table)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TriggerEvent event;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "%s: not called by trigger manager", name);
	event = trigdata->tg_event;
	if (!TRIGGER_FIRED_AFTER(event) || TRIGGER_FIRED_FOR_ROW(event))
		elog(ERROR, "%s: must be fired after the statement", name);

	if (TRIGGER_FIRED_BY_TRUNCATE(event))
		reset_counters(trigdata->tg_relation, table);
	else if (TRIGGER_FIRED_BY_INSERT(event) && trigdata->tg_newtable != NULL)
		apply_statement(trigdata, table, CHANGE_INSERT);
	else if (TRIGGER_FIRED_BY_UPDATE(event) && trigdata->tg_oldtable != NULL &&
			 trigdata->tg_newtable != NULL)
		apply_statement(trigdata, table, CHANGE_UPDATE);
	else if (TRIGGER_FIRED_BY_DELETE(event) && trigdata->tg_oldtable != NULL)
		apply_statement(trigdata, table, CHANGE_DELETE);
	else
		elog(ERROR, "%s: needs REFERENCING OLD TABLE AS old_rows / NEW TABLE AS new_rows", name);
	return PointerGetDatum(NULL);
}

/* AFTER INSERT / UPDATE / DELETE / TRUNCATE, for each statement, on booking.bookings. */
Datum
count_bookings(PG_FUNCTION_ARGS)
{
	return count_statement(fcinfo, "count_bookings", &booking_counts);
}

/* AFTER INSERT / UPDATE / DELETE / TRUNCATE, for each statement, on booking.reviews. */
Datum
count_reviews(PG_FUNCTION_ARGS)
{
	return count_statement(fcinfo, "count_reviews", &rating_counts);
}

/* AFTER INSERT on booking.rooms, for each row: the room's counters start at zero. */
Datum
count_rooms(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	Contribution zero;
	OwnerContext ctx;
	bool		isnull;
	int			attnum;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "count_rooms: not called by trigger manager");
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		elog(ERROR, "count_rooms: must be fired after insert, for each row");
	rel = trigdata->tg_relation;
	attnum = pgb_attnum(RelationGetRelid(rel), "id");
	if (attnum <= 0)
		elog(ERROR, "column \"id\" not found in \"%s\"", RelationGetRelationName(rel));

	memset(&zero, 0, sizeof(zero));
	zero.room_id = DatumGetInt64(heap_getattr(trigdata->tg_trigtuple, attnum, RelationGetDescr(rel), &isnull));
	become_owner(rel, &ctx);
	add_to_room(&booking_counts, &zero);
	add_to_room(&rating_counts, &zero);
	stop_being_owner(&ctx);
	return PointerGetDatum(NULL);
}
