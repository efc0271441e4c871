/*
 * analytics.c — summary tables kept exact by triggers, so dashboards read
 * O(rooms) rows instead of scanning every booking and review.
 *
 *   booking.room_booking_counts  (room_id, one counter per booking status:
 *                                confirmed, cancelled, completed, and from
 *                                1.1 held, pending, released, expired,
 *                                rejected)
 *   booking.room_rating_counts   (room_id, review_count, rating_sum) over the
 *                                reviews that are not hidden
 *
 * Statement-level AFTER triggers with transition tables: each INSERT,
 * UPDATE or DELETE of booking.bookings or booking.reviews sums what its rows
 * took away (old_rows) and added (new_rows) per room, and adds the net
 * deltas to each touched room's counter row with UPDATE ... SET n = n + d,
 * in the writer's own transaction.  The sums are made in C, reading the
 * transition tables directly (no query, no SPI for a statement that moves
 * nothing); only the counter updates go through SPI, with plans kept for
 * the session:
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
 *
 * Which statuses are counted is not written here: the counter columns of
 * booking.room_booking_counts are named after the statuses (1.1 adds a
 * column with every status of booking.booking_statuses(); sql/33 checks
 * they agree), and the statements that add to them are built from the
 * table's columns, on first use and again after the table changes.  So the
 * same code counts what 1.0's table has and what 1.1's has.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "pg_booking.h"

PG_FUNCTION_INFO_V1(count_bookings);
PG_FUNCTION_INFO_V1(count_reviews);
PG_FUNCTION_INFO_V1(count_rooms);

#define MAX_COUNTERS	16

/* A room's net change. */
typedef struct Contribution
{
	int64		room_id;		/* the hash key: first */
	int64		delta[MAX_COUNTERS];
} Contribution;

/*
 * How one row of a counted table counts: false when it counts nowhere,
 * else its contribution to each counter.  attnums are the columns named by
 * the table's columns[], in that order (the first is room_id).
 */
typedef bool (*RowCounts) (TupleTableSlot *slot, const AttrNumber *attnums, int64 *counts);

/*
 * One summary table: how a row counts, and the statements that add deltas
 * to a room's row ($1 room_id, $2.. the deltas).
 */
typedef struct CounterTable CounterTable;
struct CounterTable
{
	const char *columns[MAX_COUNTERS + 1];	/* of the counted table, NULL-ended */
	RowCounts	row_counts;
	const char *update_sql;		/* $1 room_id, $2.. the deltas */
	const char *upsert_sql;		/* the same, creating a missing row */
	const char *reset_sql;		/* zero every counter (after TRUNCATE) */
	int			ncounters;
	SPIPlanPtr	update_plan;
	SPIPlanPtr	upsert_plan;
	void		(*prepare) (CounterTable *table);	/* builds the statements; NULL: fixed */
};

static bool
text_is(Datum value, const char *word)
{
	text	   *t = DatumGetTextPP(value);
	size_t		len = strlen(word);

	return VARSIZE_ANY_EXHDR(t) == len && memcmp(VARDATA_ANY(t), word, len) == 0;
}

/* The statuses counted: the counter columns of booking.room_booking_counts. */
static char *booking_statuses[MAX_COUNTERS];
static int	nbooking_statuses = 0;

/* A booking counts once, in the column of its status. */
static bool
booking_counts_row(TupleTableSlot *slot, const AttrNumber *attnums, int64 *counts)
{
	bool		isnull;
	Datum		status = slot_getattr(slot, attnums[1], &isnull);
	bool		counted = false;

	if (isnull)
		return false;
	for (int i = 0; i < nbooking_statuses; i++)
		counted |= (counts[i] = text_is(status, booking_statuses[i])) != 0;
	return counted;
}

/* A review counts (once, with its rating) unless it is hidden. */
static bool
review_counts_row(TupleTableSlot *slot, const AttrNumber *attnums, int64 *counts)
{
	bool		isnull;
	Datum		status = slot_getattr(slot, attnums[2], &isnull);
	Datum		rating;

	if (isnull || text_is(status, "hidden"))
		return false;
	rating = slot_getattr(slot, attnums[1], &isnull);
	counts[0] = 1;
	counts[1] = isnull ? 0 : DatumGetInt32(rating);
	return true;
}

static void prepare_booking_counts(CounterTable *table);

/* The statements are built from the table's columns (prepare_booking_counts). */
static CounterTable booking_counts = {
	{"room_id", "status", NULL},
	booking_counts_row,
	NULL, NULL, NULL, 0, NULL, NULL,
	prepare_booking_counts
};
static bool booking_counts_valid = false;
static bool booking_counts_callback = false;

static void
forget_booking_counts(Datum arg, Oid relid)
{
	/* Any relation: the counter table's OID may itself have changed. */
	booking_counts_valid = false;
}

/*
 * Read the counter columns of booking.room_booking_counts (every bigint
 * column but room_id, in column order) and build the statements that add
 * to them.  Plans of an older set are dropped.
 */
static void
prepare_booking_counts(CounterTable *table)
{
	Oid			relid;
	HeapTuple	tup;
	MemoryContext old;
	StringInfoData update;
	StringInfoData insert;
	StringInfoData values;
	StringInfoData upsert;
	StringInfoData reset;

	if (booking_counts_valid)
		return;
	if (!booking_counts_callback)
	{
		CacheRegisterRelcacheCallback(forget_booking_counts, (Datum) 0);
		booking_counts_callback = true;
	}
	relid = get_relname_relid("room_booking_counts", get_namespace_oid("booking", false));
	if (!OidIsValid(relid))
		elog(ERROR, "relation booking.room_booking_counts does not exist");

	old = MemoryContextSwitchTo(TopMemoryContext);
	for (int i = 0; i < nbooking_statuses; i++)
		pfree(booking_statuses[i]);
	nbooking_statuses = 0;
	for (AttrNumber a = 1;; a++)
	{
		Form_pg_attribute att;

		tup = SearchSysCache2(ATTNUM, ObjectIdGetDatum(relid), Int16GetDatum(a));
		if (!HeapTupleIsValid(tup))
			break;				/* past the last column */
		att = (Form_pg_attribute) GETSTRUCT(tup);
		if (!att->attisdropped && att->atttypid == INT8OID && strcmp(NameStr(att->attname), "room_id") != 0)
		{
			if (nbooking_statuses == MAX_COUNTERS)
				elog(ERROR, "booking.room_booking_counts has more than %d counters", MAX_COUNTERS);
			booking_statuses[nbooking_statuses++] = pstrdup(NameStr(att->attname));
		}
		ReleaseSysCache(tup);
	}

	initStringInfo(&update);
	initStringInfo(&insert);
	initStringInfo(&values);
	initStringInfo(&upsert);
	initStringInfo(&reset);
	appendStringInfoString(&update, "UPDATE booking.room_booking_counts SET ");
	appendStringInfoString(&insert, "INSERT INTO booking.room_booking_counts AS c (room_id");
	appendStringInfoString(&values, " VALUES ($1");
	appendStringInfoString(&upsert, " ON CONFLICT (room_id) DO UPDATE SET ");
	appendStringInfoString(&reset, "UPDATE booking.room_booking_counts SET ");
	for (int i = 0; i < nbooking_statuses; i++)
	{
		const char *col = quote_identifier(booking_statuses[i]);

		appendStringInfo(&update, "%s%s = %s + $%d", i ? ", " : "", col, col, i + 2);
		appendStringInfo(&insert, ", %s", col);
		appendStringInfo(&values, ", $%d", i + 2);
		appendStringInfo(&upsert, "%s%s = c.%s + excluded.%s", i ? ", " : "", col, col, col);
		appendStringInfo(&reset, "%s%s = 0", i ? ", " : "", col);
	}
	appendStringInfoString(&update, " WHERE room_id = $1");
	appendStringInfo(&insert, ")%s)%s", values.data, upsert.data);
	if (table->update_sql)
		pfree((char *) table->update_sql);
	if (table->upsert_sql)
		pfree((char *) table->upsert_sql);
	if (table->reset_sql)
		pfree((char *) table->reset_sql);
	table->update_sql = update.data;
	table->upsert_sql = insert.data;
	table->reset_sql = reset.data;
	table->ncounters = nbooking_statuses;
	pfree(values.data);
	pfree(upsert.data);
	MemoryContextSwitchTo(old);
	if (table->update_plan)
		SPI_freeplan(table->update_plan);
	if (table->upsert_plan)
		SPI_freeplan(table->upsert_plan);
	table->update_plan = NULL;
	table->upsert_plan = NULL;
	booking_counts_valid = true;
}

static CounterTable rating_counts = {
	{"room_id", "rating", "status", NULL},
	review_counts_row,
	"UPDATE booking.room_rating_counts"
	" SET review_count = review_count + $2, rating_sum = rating_sum + $3"
	" WHERE room_id = $1",
	"INSERT INTO booking.room_rating_counts AS c (room_id, review_count, rating_sum)"
	" VALUES ($1, $2, $3)"
	" ON CONFLICT (room_id) DO UPDATE"
	" SET review_count = c.review_count + excluded.review_count,"
	"     rating_sum = c.rating_sum + excluded.rating_sum",
	"UPDATE booking.room_rating_counts SET review_count = 0, rating_sum = 0",
	2, NULL, NULL, NULL
};

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

/*
 * Run statements as the counted table's owner, row-level security off, and
 * with sequential scans off.  The last is not a taste: a counter table is
 * small, so the planner prefers a sequential scan to find a room's row, and
 * the plan is kept; but every counter update leaves a row version behind,
 * and within one transaction (a loop of inserts, a batch job) none can be
 * pruned, so each update would read every version made before it: the cost
 * of a statement grew with the number before it in the transaction.  The
 * primary key finds the row in the same few pages however many versions
 * there are.  (The setting is undone at stop_being_owner, or by the abort.)
 */
typedef struct OwnerContext
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
} OwnerContext;

static void
become_owner(Relation rel, OwnerContext *ctx)
{
	GetUserIdAndSecContext(&ctx->save_userid, &ctx->save_sec_context);
	SetUserIdAndSecContext(rel->rd_rel->relowner,
						   ctx->save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_NOFORCE_RLS);
	ctx->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

static void
stop_being_owner(OwnerContext *ctx)
{
	SPI_finish();
	AtEOXact_GUC(true, ctx->save_nestlevel);
	SetUserIdAndSecContext(ctx->save_userid, ctx->save_sec_context);
}

/*
 * The net changes of one statement, per room.  Most statements touch one
 * room, which is kept inline; a hash table is made when a second appears,
 * so a bulk statement costs O(rooms) memory, not O(rows).
 */
typedef struct RoomChanges
{
	Contribution one;
	bool		have_one;
	HTAB	   *rooms;
} RoomChanges;

static Contribution *
room_changes_for(RoomChanges *changes, int64 room_id)
{
	Contribution *c;
	bool		found;

	if (changes->rooms == NULL)
	{
		HASHCTL		ctl;

		if (!changes->have_one)
		{
			memset(&changes->one, 0, sizeof(Contribution));
			changes->one.room_id = room_id;
			changes->have_one = true;
			return &changes->one;
		}
		if (changes->one.room_id == room_id)
			return &changes->one;
		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(Contribution);
		ctl.hcxt = CurrentMemoryContext;
		changes->rooms = hash_create("pg_booking counter changes", 64, &ctl,
									 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		c = hash_search(changes->rooms, &changes->one.room_id, HASH_ENTER, &found);
		*c = changes->one;
	}
	c = hash_search(changes->rooms, &room_id, HASH_ENTER, &found);
	if (!found)
		memset(c->delta, 0, sizeof(c->delta));
	return c;
}

/*
 * Add sign x how each row of a transition table counts.  The table is read
 * through a read pointer of our own, as a scan of it in a query would be,
 * so other triggers reading it are not disturbed.
 */
static void
sum_rows(Tuplestorestate *rows, Relation rel, CounterTable *table, int sign, RoomChanges *changes)
{
	TupleDesc	desc = RelationGetDescr(rel);
	AttrNumber	attnums[MAX_COUNTERS + 1];
	TupleTableSlot *slot;
	int			readptr;

	for (int i = 0; table->columns[i] != NULL; i++)
	{
		attnums[i] = pgb_attnum(RelationGetRelid(rel), table->columns[i]);
	}
	slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	readptr = tuplestore_alloc_read_pointer(rows, EXEC_FLAG_REWIND);
	tuplestore_select_read_pointer(rows, readptr);
	tuplestore_rescan(rows);
	while (tuplestore_gettupleslot(rows, true, false, slot))
	{
		int64		counts[MAX_COUNTERS];
		bool		isnull;
		Datum		room;
		Contribution *c;

		if (!table->row_counts(slot, attnums, counts))
			continue;
		room = slot_getattr(slot, attnums[0], &isnull);
		if (isnull)
			continue;
		c = room_changes_for(changes, DatumGetInt64(room));
		for (int i = 0; i < table->ncounters; i++)
			c->delta[i] += sign * counts[i];
	}
	ExecDropSingleTupleTableSlot(slot);
}

static bool
moves_something(CounterTable *table, const Contribution *c)
{
	for (int i = 0; i < table->ncounters; i++)
		if (c->delta[i] != 0)
			return true;
	return false;
}

static int
by_room_id(const void *a, const void *b)
{
	int64		x = ((const Contribution *) a)->room_id;
	int64		y = ((const Contribution *) b)->room_id;

	return (x > y) - (x < y);
}

/* The rooms whose counters move, by room id; *n of them. */
static Contribution *
sorted_changes(CounterTable *table, RoomChanges *changes, int *n)
{
	Contribution *out;
	HASH_SEQ_STATUS seq;
	Contribution *c;

	*n = 0;
	if (changes->rooms == NULL)
	{
		if (!changes->have_one || !moves_something(table, &changes->one))
			return NULL;
		*n = 1;
		return &changes->one;
	}
	out = palloc(sizeof(Contribution) * hash_get_num_entries(changes->rooms));
	hash_seq_init(&seq, changes->rooms);
	while ((c = hash_seq_search(&seq)) != NULL)
		if (moves_something(table, c))
			out[(*n)++] = *c;
	qsort(out, *n, sizeof(Contribution), by_room_id);
	return out;
}

/*
 * Sum the statement's changes per room, then apply them in room-id order
 * (the order is the deadlock argument above).
 */
static void
apply_statement(TriggerData *trigdata, CounterTable *table)
{
	Relation	rel = trigdata->tg_relation;
	RoomChanges changes = {0};
	Contribution *moved;
	int			n;
	OwnerContext ctx;

	if (trigdata->tg_newtable != NULL)
		sum_rows(trigdata->tg_newtable, rel, table, 1, &changes);
	if (trigdata->tg_oldtable != NULL)
		sum_rows(trigdata->tg_oldtable, rel, table, -1, &changes);
	moved = sorted_changes(table, &changes, &n);
	if (n == 0)
		return;
	become_owner(rel, &ctx);
	for (int i = 0; i < n; i++)
		add_to_room(table, &moved[i]);
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
	if (table->prepare)
		table->prepare(table);

	if (TRIGGER_FIRED_BY_TRUNCATE(event))
		reset_counters(trigdata->tg_relation, table);
	else if ((TRIGGER_FIRED_BY_INSERT(event) && trigdata->tg_newtable != NULL) ||
			 (TRIGGER_FIRED_BY_UPDATE(event) && trigdata->tg_oldtable != NULL &&
			  trigdata->tg_newtable != NULL) ||
			 (TRIGGER_FIRED_BY_DELETE(event) && trigdata->tg_oldtable != NULL))
		apply_statement(trigdata, table);
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

	prepare_booking_counts(&booking_counts);
	memset(&zero, 0, sizeof(zero));
	zero.room_id = DatumGetInt64(heap_getattr(trigdata->tg_trigtuple, attnum, RelationGetDescr(rel), &isnull));
	become_owner(rel, &ctx);
	add_to_room(&booking_counts, &zero);
	add_to_room(&rating_counts, &zero);
	stop_being_owner(&ctx);
	return PointerGetDatum(NULL);
}
