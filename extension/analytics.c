/*
 * analytics.c — summary tables kept exact by row triggers, so dashboards
 * read O(rooms) rows instead of scanning every booking and review.
 *
 *   booking.room_booking_counts  (room_id, confirmed, cancelled, completed)
 *   booking.room_rating_counts   (room_id, review_count, rating_sum) over the
 *                                reviews that are not hidden
 *
 * Each write to booking.bookings or booking.reviews adds its row's change to
 * the counter row of its room with one UPDATE ... SET n = n + delta, in the
 * writer's own transaction:
 *
 *   - exact under concurrency: the UPDATE locks the counter row and adds to
 *     its latest committed version (READ COMMITTED re-evaluates on the new
 *     version), so concurrent writers queue behind each other instead of
 *     losing increments; a rollback takes its delta back with it.  Under REPEATABLE READ a concurrent change of the same counter
 *     raises a serialization failure, never a wrong sum.
 *   - no deadlock between two rooms' counters within one row change: a move
 *     from one room to another touches the two rows in room-id order.
 *   - the counter row of a room is created with the room (trigger on
 *     booking.rooms), so rooms without bookings read as zeros; the upsert
 *     also covers rooms that predate the trigger.
 *   - TRUNCATE of a counted table zeroes its counters.
 *
 * The counters run as the owner of the counted table with row-level
 * security off (as the RI triggers do): a user may move their own booking,
 * and must not be able to write a counter directly.  booking.analytics_check()
 * compares every counter with a full recount.
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

/* One summary table: a room's row of counters, added to by one upsert. */
typedef struct CounterTable
{
	const char *update_sql;		/* $1 room_id, $2.. the deltas */
	const char *upsert_sql;		/* the same, creating a missing row */
	const char *reset_sql;		/* zero every counter (after TRUNCATE) */
	int			ncounters;
	SPIPlanPtr	update_plan;
	SPIPlanPtr	upsert_plan;
} CounterTable;

static CounterTable booking_counts = {
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
	3, NULL, NULL
};

static CounterTable rating_counts = {
	"UPDATE booking.room_rating_counts"
	" SET review_count = review_count + $2, rating_sum = rating_sum + $3"
	" WHERE room_id = $1",
	"INSERT INTO booking.room_rating_counts AS c (room_id, review_count, rating_sum)"
	" VALUES ($1, $2, $3)"
	" ON CONFLICT (room_id) DO UPDATE"
	" SET review_count = c.review_count + excluded.review_count,"
	"     rating_sum = c.rating_sum + excluded.rating_sum",
	"UPDATE booking.room_rating_counts SET review_count = 0, rating_sum = 0",
	2, NULL, NULL
};

/* What one row contributes to its room's counters. */
typedef struct Contribution
{
	int64		room_id;
	int64		delta[MAX_COUNTERS];
} Contribution;

static int
column_of(Relation rel, const char *name)
{
	int			attnum = SPI_fnumber(RelationGetDescr(rel), name);

	if (attnum <= 0)
		elog(ERROR, "column \"%s\" not found in \"%s\"", name, RelationGetRelationName(rel));
	return attnum;
}

static Datum
column_value(Relation rel, HeapTuple tuple, const char *name)
{
	bool		isnull;
	Datum		d = heap_getattr(tuple, column_of(rel, name), RelationGetDescr(rel), &isnull);

	/* The counted columns are all NOT NULL. */
	if (isnull)
		elog(ERROR, "column \"%s\" of \"%s\" is null", name, RelationGetRelationName(rel));
	return d;
}

static bool
is_zero(const Contribution *c, int n)
{
	for (int i = 0; i < n; i++)
		if (c->delta[i] != 0)
			return false;
	return true;
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

static SPIPlanPtr
counter_plan(CounterTable *table, SPIPlanPtr *cache, const char *sql)
{
	if (*cache == NULL)
	{
		Oid			argtypes[1 + MAX_COUNTERS];
		SPIPlanPtr	plan;

		for (int i = 0; i <= table->ncounters; i++)
			argtypes[i] = INT8OID;
		plan = SPI_prepare(sql, 1 + table->ncounters, argtypes);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		*cache = plan;
	}
	return *cache;
}

/*
 * Add the deltas to the room's row.  A plain UPDATE first: the row exists
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

/*
 * Apply a row change: take the old row's contribution away and add the new
 * row's.  Same room: one upsert with the net deltas (none when they cancel
 * out, as for a retitle or a reschedule).  Two rooms: room-id order.
 */
static void
apply_change(Relation rel, CounterTable *table, Contribution *old, Contribution *new)
{
	OwnerContext ctx;
	Contribution *first = old;
	Contribution *second = new;

	if (old != NULL && new != NULL && old->room_id == new->room_id)
	{
		for (int i = 0; i < table->ncounters; i++)
			new->delta[i] += old->delta[i];
		first = NULL;
	}
	else if (old != NULL && new != NULL && new->room_id < old->room_id)
	{
		first = new;
		second = old;
	}
	if (first != NULL && is_zero(first, table->ncounters))
		first = NULL;
	if (second != NULL && is_zero(second, table->ncounters))
		second = NULL;
	if (first == NULL && second == NULL)
		return;

	become_owner(rel, &ctx);
	if (first != NULL)
		add_to_room(table, first);
	if (second != NULL)
		add_to_room(table, second);
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

static TriggerData *
counting_trigger(FunctionCallInfo fcinfo, const char *name)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "%s: not called by trigger manager", name);
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event))
		elog(ERROR, "%s: must be fired after the change", name);
	if (!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) && !TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		elog(ERROR, "%s: must be fired for each row (or for TRUNCATE)", name);
	return trigdata;
}

/* A booking counts once, in the column of its status. */
static void
booking_contribution(Relation rel, HeapTuple tuple, int sign, Contribution *c)
{
	char	   *status = TextDatumGetCString(column_value(rel, tuple, "status"));

	memset(c, 0, sizeof(*c));
	c->room_id = DatumGetInt64(column_value(rel, tuple, "room_id"));
	if (strcmp(status, "confirmed") == 0)
		c->delta[0] = sign;
	else if (strcmp(status, "cancelled") == 0)
		c->delta[1] = sign;
	else if (strcmp(status, "completed") == 0)
		c->delta[2] = sign;
	else
		elog(ERROR, "booking status \"%s\" has no counter", status);
}

/* A review counts (once, with its rating) unless it is hidden. */
static void
review_contribution(Relation rel, HeapTuple tuple, int sign, Contribution *c)
{
	char	   *status = TextDatumGetCString(column_value(rel, tuple, "status"));

	memset(c, 0, sizeof(*c));
	c->room_id = DatumGetInt64(column_value(rel, tuple, "room_id"));
	if (strcmp(status, "hidden") != 0)
	{
		c->delta[0] = sign;
		c->delta[1] = sign * (int64) DatumGetInt32(column_value(rel, tuple, "rating"));
	}
}

typedef void (*ContributionFn) (Relation rel, HeapTuple tuple, int sign, Contribution *c);

static Datum
count_rows(FunctionCallInfo fcinfo, const char *name, CounterTable *table, ContributionFn contribution)
{
	TriggerData *trigdata = counting_trigger(fcinfo, name);
	Relation	rel = trigdata->tg_relation;
	Contribution old;
	Contribution new;

	if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		reset_counters(rel, table);
	else if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		contribution(rel, trigdata->tg_trigtuple, 1, &new);
		apply_change(rel, table, NULL, &new);
	}
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
	{
		contribution(rel, trigdata->tg_trigtuple, -1, &old);
		apply_change(rel, table, &old, NULL);
	}
	else
	{
		contribution(rel, trigdata->tg_trigtuple, -1, &old);
		contribution(rel, trigdata->tg_newtuple, 1, &new);
		apply_change(rel, table, &old, &new);
	}
	return PointerGetDatum(NULL);
}

/* AFTER INSERT OR UPDATE OR DELETE (row) and AFTER TRUNCATE on booking.bookings. */
Datum
count_bookings(PG_FUNCTION_ARGS)
{
	return count_rows(fcinfo, "count_bookings", &booking_counts, booking_contribution);
}

/* AFTER INSERT OR UPDATE OR DELETE (row) and AFTER TRUNCATE on booking.reviews. */
Datum
count_reviews(PG_FUNCTION_ARGS)
{
	return count_rows(fcinfo, "count_reviews", &rating_counts, review_contribution);
}

/* AFTER INSERT on booking.rooms: the room's counters start at zero. */
Datum
count_rooms(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = counting_trigger(fcinfo, "count_rooms");
	Relation	rel = trigdata->tg_relation;
	Contribution zero;
	OwnerContext ctx;

	if (!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		elog(ERROR, "count_rooms: must be fired after insert");
	memset(&zero, 0, sizeof(zero));
	zero.room_id = DatumGetInt64(column_value(rel, trigdata->tg_trigtuple, "id"));
	become_owner(rel, &ctx);
	add_to_room(&booking_counts, &zero);
	add_to_room(&rating_counts, &zero);
	stop_being_owner(&ctx);
	return PointerGetDatum(NULL);
}
