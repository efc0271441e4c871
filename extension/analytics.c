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
 * took away (old_rows) and added (new_rows) per room, in C, reading the
 * transition tables directly.  The net deltas wait in memory until the
 * top-level statement ends (see "Deltas kept for the end of the statement"
 * below), then each touched room's counter row gets old + delta, in the
 * writer's own transaction:
 *
 *   - exact under concurrency: the row's latest version is locked (a
 *     concurrent writer of the same counter is waited for) and the sum is
 *     made on it, so concurrent writers queue instead of losing increments,
 *     at any isolation level; a rollback, of a transaction or of a
 *     subtransaction, takes its deltas with it.
 *   - no deadlock between counters: every application locks the counter rows
 *     it touches in room-id order, so two writers never wait for each other
 *     in a cycle, however many rooms their statements span.
 *   - one counter update per room and top-level statement: a bulk load, or a
 *     loop of single-row inserts, of n bookings of a room costs one update,
 *     not n versions of the same row.
 *   - changes that move nothing (a retitle, a reschedule within the room)
 *     net to zero and write nothing.
 *   - the counter row of a room is created with the room (row trigger on
 *     booking.rooms), so rooms without bookings read as zeros; an upsert
 *     (SPI, as the owner) creates a row missing since before the trigger
 *     existed.
 *   - TRUNCATE of a counted table zeroes its counters.
 *
 * The SPI statements (upsert, reset, a new room's zeros) run as the owner of
 * the counted table with row-level security off (as the RI triggers do): a
 * user may move their own booking and must not be able to write a counter
 * directly; the C updates need no privilege.
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
#include "access/xact.h"
#include "access/genam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "tcop/utility.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "storage/lmgr.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
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
	int			number;			/* its place in counter_tables[] */
	const char *summary;		/* the summary table, in schema booking */
	const char *summary_columns[MAX_COUNTERS];	/* its counters, as the deltas */
	Oid			owner;			/* of the counted table: who applies */
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
	NULL, NULL, NULL, 0, 0,
	"room_booking_counts", {NULL}, InvalidOid, NULL, NULL,
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
		pgb_register_relcache_callback(forget_booking_counts);
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
	for (int i = 0; i < nbooking_statuses; i++)
		table->summary_columns[i] = booking_statuses[i];
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
	2, 1,
	"room_rating_counts", {"review_count", "rating_sum"}, InvalidOid, NULL, NULL, NULL
};

static CounterTable *const counter_tables[] = {&booking_counts, &rating_counts};

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
 * Adding deltas to counter rows from C, for the deltas of a statement
 * (flush_pending below), as an UPDATE ... SET n = n + d would under READ
 * COMMITTED: the latest version of the room's row is found by the primary
 * key (with a dirty snapshot, waiting for a writer still in progress), the
 * new version old + delta is checked against the table's constraints and
 * written with table_tuple_update, which waits for a concurrent updater;
 * when one committed in between, the row is looked up again and the sum
 * made anew on its latest version.  Adding to the latest version is what
 * keeps the sums exact under concurrency, at any isolation level (under
 * REPEATABLE READ a concurrent change of the counter no longer fails the
 * transaction).  Indexes and triggers are kept as for any update.  The SPI
 * UPDATE cost about 15 us per room (executor start, the settings below);
 * this costs a few.  A missing row (made before the room trigger existed)
 * goes the SPI way, which upserts.
 *
 * The compiled CHECK constraints of a summary table are kept for the backend
 * (dropped when its relcache entry changes): compiling them for each
 * statement's executor state was a third of the update.
 */
typedef struct CounterWriter
{
	Relation	rel;
	Relation	pkey_rel;
	IndexScanDesc scan;
	SnapshotData dirty;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *found;
	TupleTableSlot *updated;
	AttrNumber	room_att;
	AttrNumber	counter_att[MAX_COUNTERS];
} CounterWriter;

typedef struct CheckCache
{
	Oid			relid;
	int			ncheck;
	ExprState **exprs;			/* in check_cxt */
} CheckCache;

static CheckCache check_cache[lengthof(counter_tables)];
static MemoryContext check_cxt = NULL;
static bool check_callback_registered = false;

static void
forget_checks(Datum arg, Oid relid)
{
	for (int i = 0; i < lengthof(check_cache); i++)
		if (!OidIsValid(relid) || relid == check_cache[i].relid)
			check_cache[i].exprs = NULL;	/* memory freed when rebuilt */
}

/* The table's CHECK constraints, compiled once per backend. */
static ExprState **
cached_checks(CounterTable *table, Relation rel)
{
	CheckCache *cc = &check_cache[table->number];
	TupleConstr *constr = rel->rd_att->constr;
	int			ncheck = constr ? constr->num_check : 0;
	MemoryContext old;

	if (cc->exprs != NULL && cc->relid == RelationGetRelid(rel) && cc->ncheck == ncheck)
		return cc->exprs;
	if (!check_callback_registered)
	{
		pgb_register_relcache_callback(forget_checks);
		check_callback_registered = true;
	}
	if (check_cxt == NULL)
		check_cxt = AllocSetContextCreate(TopMemoryContext, "pg_booking counter checks",
										  ALLOCSET_SMALL_SIZES);
	else
	{
		bool		any = false;

		for (int i = 0; i < lengthof(check_cache); i++)
			any |= (i != table->number && check_cache[i].exprs != NULL);
		if (!any)
			MemoryContextReset(check_cxt);
	}
	old = MemoryContextSwitchTo(check_cxt);
	cc->exprs = palloc(Max(ncheck, 1) * sizeof(ExprState *));
	for (int i = 0; i < ncheck; i++)
		cc->exprs[i] = ExecInitExpr(expression_planner((Expr *) stringToNode(constr->check[i].ccbin)), NULL);
	MemoryContextSwitchTo(old);
	cc->relid = RelationGetRelid(rel);
	cc->ncheck = ncheck;
	return cc->exprs;
}

/*
 * The counters relation a statement on rel adds to: InvalidOid for
 * booking.<summary> itself (looked up by name when written), or, when rel is
 * a Citus shard of the counted table (docs/citus.md: the trigger fires on
 * booking.bookings_102008 on a worker), the co-located shard of the counters
 * on this node.  Not the counters table by name: on a worker that is Citus's
 * empty shell, whose heap the C writer would write (and SQL on it from a
 * shard is a nested distributed query, which Citus refuses).  Found as the
 * relation named <summary>_<digits> whose foreign key references the same
 * rooms relation (the co-located rooms shard) as rel's key on room_id.
 */
static Oid
counters_relation(Relation rel, CounterTable *table)
{
	List	   *fkeys;
	ListCell   *lc;
	Oid			rooms = InvalidOid;
	AttrNumber	room_att;
	Oid			found = InvalidOid;
	Oid			argtypes[3] = {OIDOID, OIDOID, TEXTOID};
	Datum		values[3];
	int			rc;

	if (!pgb_is_citus_shard(rel, NULL))
		return InvalidOid;
	room_att = pgb_attnum(RelationGetRelid(rel), "room_id");
	fkeys = RelationGetFKeyList(rel);
	foreach(lc, fkeys)
	{
		ForeignKeyCacheInfo *fk = lfirst_node(ForeignKeyCacheInfo, lc);

		if (fk->nkeys == 1 && fk->conkey[0] == room_att)
			rooms = fk->confrelid;
	}
	if (!OidIsValid(rooms))
		elog(ERROR, "shard \"%s\" has no foreign key on room_id to find its counters by",
			 RelationGetRelationName(rel));
	values[0] = ObjectIdGetDatum(rooms);
	values[1] = ObjectIdGetDatum(RelationGetNamespace(rel));
	values[2] = CStringGetTextDatum(psprintf("^%s_[0-9]+$", table->summary));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = SPI_execute_with_args("SELECT c.conrelid FROM pg_catalog.pg_constraint c"
							   " JOIN pg_catalog.pg_class k ON k.oid = c.conrelid"
							   " WHERE c.contype = 'f' AND c.confrelid = $1 AND k.relnamespace = $2"
							   "   AND k.relname ~ $3",
							   3, argtypes, values, NULL, true, 2);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "looking up the counters shard failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 1)
	{
		bool		isnull;

		found = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	SPI_finish();
	if (!OidIsValid(found))
		elog(ERROR, "no single shard of booking.%s is co-located with \"%s\" on this node",
			 table->summary, RelationGetRelationName(rel));
	return found;
}

static void
counter_writer_open(CounterWriter *w, CounterTable *table, Oid summary)
{
	Oid			nsp = get_namespace_oid("booking", false);
	Oid			relid = OidIsValid(summary) ? summary : get_relname_relid(table->summary, nsp);
	Oid			pkey;
	RangeTblEntry *rte;

	if (!OidIsValid(relid))
		elog(ERROR, "relation booking.%s does not exist", table->summary);
	/* (so this statement's updates see the ones before it, as SPI's would) */
	CommandCounterIncrement();
	w->rel = table_open(relid, RowExclusiveLock);
	pkey = RelationGetPrimaryKeyIndex(w->rel);
	if (!OidIsValid(pkey))
		elog(ERROR, "booking.%s has no primary key", table->summary);
	w->room_att = pgb_attnum(relid, "room_id");
	for (int i = 0; i < table->ncounters; i++)
		w->counter_att[i] = pgb_attnum(relid, table->summary_columns[i]);
	w->estate = CreateExecutorState();
	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = relid;
	rte->relkind = w->rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	ExecInitRangeTable(w->estate, list_make1(rte));
	w->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(w->rri, w->rel, 1, NULL, 0);
	w->estate->es_output_cid = GetCurrentCommandId(true);
	ExecOpenIndices(w->rri, false);
	if (w->rel->rd_att->constr != NULL && w->rel->rd_att->constr->num_check > 0)
		w->rri->ri_ConstraintExprs = cached_checks(table, w->rel);
	w->pkey_rel = index_open(pkey, RowExclusiveLock);
	if (IndexRelationGetNumberOfKeyAttributes(w->pkey_rel) != 1 ||
		w->pkey_rel->rd_index->indkey.values[0] != w->room_att)
		elog(ERROR, "the primary key of booking.%s is not (room_id)", table->summary);
	InitDirtySnapshot(w->dirty);
	w->scan = index_beginscan(w->rel, w->pkey_rel, &w->dirty, 1, 0);
	w->found = table_slot_create(w->rel, &w->estate->es_tupleTable);
	w->updated = ExecInitExtraTupleSlot(w->estate, RelationGetDescr(w->rel), &TTSOpsVirtual);
	/* (the foreign key's trigger on room_id is queued only for rows of this transaction) */
	AfterTriggerBeginQuery();
}

static void
counter_writer_close(CounterWriter *w)
{
	AfterTriggerEndQuery(w->estate);
	index_endscan(w->scan);
	index_close(w->pkey_rel, NoLock);
	ExecCloseIndices(w->rri);
	ExecCloseResultRelations(w->estate);	/* opened by triggers it fired */
	ExecCloseRangeTableRelations(w->estate);
	ExecResetTupleTable(w->estate->es_tupleTable, false);
	FreeExecutorState(w->estate);
	table_close(w->rel, NoLock);
}

/*
 * The latest version of the room's row into w->found; false when there is
 * none.  A version a transaction still in progress wrote or is replacing is
 * waited for, then looked for again.
 */
static bool
counter_row_latest(CounterWriter *w, int64 room_id)
{
	ScanKeyData key;

	for (;;)
	{
		TransactionId xwait;

		ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(room_id));
		index_rescan(w->scan, &key, 1, NULL, 0);
		if (!index_getnext_slot(w->scan, ForwardScanDirection, w->found))
			return false;
		xwait = TransactionIdIsValid(w->dirty.xmin) ? w->dirty.xmin : w->dirty.xmax;
		if (!TransactionIdIsValid(xwait))
			return true;
		XactLockTableWait(xwait, w->rel, &w->found->tts_tid, XLTW_Update);
	}
}

/* Add c's deltas to its room's row; false when the room has no row. */
static bool
counter_writer_add(CounterWriter *w, CounterTable *table, const Contribution *c)
{
	TupleDesc	desc = RelationGetDescr(w->rel);
	List	   *recheck = NIL;
	bool		update_indexes;

	for (;;)
	{
		TM_FailureData tmfd;
		LockTupleMode lockmode;
		TM_Result	result;

		if (!counter_row_latest(w, c->room_id))
			return false;
		slot_getallattrs(w->found);
		ExecClearTuple(w->updated);
		memcpy(w->updated->tts_values, w->found->tts_values, desc->natts * sizeof(Datum));
		memcpy(w->updated->tts_isnull, w->found->tts_isnull, desc->natts * sizeof(bool));
		for (int i = 0; i < table->ncounters; i++)
		{
			AttrNumber	a = w->counter_att[i];
			int64		sum;

			if (w->updated->tts_isnull[a - 1])
				elog(ERROR, "counter %s of room %lld is NULL", table->summary_columns[i], (long long) c->room_id);
			if (pg_add_s64_overflow(DatumGetInt64(w->updated->tts_values[a - 1]), c->delta[i], &sum))
				ereport(ERROR, (errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE), errmsg("bigint out of range")));
			w->updated->tts_values[a - 1] = Int64GetDatum(sum);
		}
		ExecStoreVirtualTuple(w->updated);
		if (w->rel->rd_att->constr != NULL)
			ExecConstraints(w->rri, w->updated, w->estate);
		result = table_tuple_update(w->rel, &w->found->tts_tid, w->updated,
									GetCurrentCommandId(true), InvalidSnapshot, InvalidSnapshot,
									true, &tmfd, &lockmode, &update_indexes);
		if (result == TM_Ok)
			break;
		if (result != TM_Updated && result != TM_Deleted)
			elog(ERROR, "counter row of room %lld: unexpected update result %d", (long long) c->room_id, result);
		/* a writer committed a newer version meanwhile: add to that one */
		ResetPerTupleExprContext(w->estate);
	}
	if (w->rri->ri_NumIndices > 0 && update_indexes)
		recheck = ExecInsertIndexTuples(w->rri, w->updated, w->estate, true, false, NULL, NIL);
	ExecARUpdateTriggers(w->estate, w->rri, NULL, NULL, &w->found->tts_tid, NULL, w->updated,
						 recheck, NULL, false);
	list_free(recheck);
	ResetPerTupleExprContext(w->estate);
	return true;
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
become_owner(Oid owner, OwnerContext *ctx)
{
	GetUserIdAndSecContext(&ctx->save_userid, &ctx->save_sec_context);
	SetUserIdAndSecContext(owner,
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
 * Deltas kept for the end of the statement.
 *
 * A counter update per statement made every single-row insert pay an SPI
 * UPDATE, and inside one transaction each update of a room's row had to step
 * over every version of it the transaction had made before (none can be
 * pruned until commit): a loop of 20,000 inserts cost 200 us per insert in
 * counters alone.  Now a statement trigger only adds its net change per room
 * to the transaction's pending deltas, in memory, and they are applied (the
 * same UPDATE, room-id order) when the top-level statement that caused them
 * ends: once per room for a whole PL/pgSQL loop, a batch job's statement or
 * a COPY.  The guarantees stay:
 *
 *   - in the writer's transaction: the updates run in it, before the
 *     statement returns; a later statement of the transaction, and
 *     analytics_check() after it, read exact counters.  (Inside the
 *     statement that wrote the bookings, the counters are those of its
 *     start.)
 *   - subtransactions: a delta belongs to the subtransaction level that
 *     made it; when a subtransaction commits its deltas go to its parent,
 *     when it aborts (ROLLBACK TO, a PL/pgSQL exception block) they are
 *     dropped, as its rows are.  Only the deltas of the current level are
 *     applied, in the current subtransaction.
 *   - commit: whatever is still pending (a statement whose end this file
 *     did not see) is applied at PRE_COMMIT / PRE_PREPARE, in the
 *     transaction.
 *   - no deadlock between counters within a statement's application: rooms
 *     in id order, booking counters before rating counters.
 *   - TRUNCATE applies what is pending for its table, then zeroes it.
 *
 * "The end of a top-level statement" is the end of ExecutorFinish (after
 * the statement's AFTER triggers) or of ProcessUtility (DO, CALL, COPY,
 * EXPLAIN ANALYZE) at depth 0; the executor and utility hooks below count
 * the depth, as pg_stat_statements does.  A statement trigger firing at
 * depth 0 (the library loaded by the statement itself) applies at once.
 */
typedef struct PendingKey
{
	int32		table;			/* counter_tables[] */
	Oid			summary;		/* counters_relation(): InvalidOid, or a shard */
	int32		level;			/* GetCurrentTransactionNestLevel() */
	int64		room_id;
} PendingKey;

typedef struct PendingDelta
{
	PendingKey	key;			/* the hash key: first */
	int64		delta[MAX_COUNTERS];
} PendingDelta;

static HTAB *pending = NULL;	/* in TopTransactionContext, NULL when empty */
static int	pending_deepest = 0;	/* no entry has a deeper level */
static int	statement_depth = 0;
static bool flushing = false;
static bool callbacks_registered = false;

static ExecutorRun_hook_type prev_ExecutorRun = NULL;
static ExecutorFinish_hook_type prev_ExecutorFinish = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

static bool moves_something(CounterTable *table, const Contribution *c);
static void pending_xact_callback(XactEvent event, void *arg);
static void pending_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
									 SubTransactionId parentSubid, void *arg);

static PendingDelta *
pending_entry(int table, Oid summary, int level, int64 room_id)
{
	PendingKey	key;
	PendingDelta *e;
	bool		found;

	if (pending == NULL)
	{
		HASHCTL		ctl;

		if (!callbacks_registered)
		{
			RegisterXactCallback(pending_xact_callback, NULL);
			RegisterSubXactCallback(pending_subxact_callback, NULL);
			callbacks_registered = true;
		}
		ctl.keysize = sizeof(PendingKey);
		ctl.entrysize = sizeof(PendingDelta);
		ctl.hcxt = TopTransactionContext;
		pending = hash_create("pg_booking pending counter deltas", 64, &ctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		pending_deepest = 0;
	}
	memset(&key, 0, sizeof(key));
	key.table = table;
	key.summary = summary;
	key.level = level;
	key.room_id = room_id;
	e = hash_search(pending, &key, HASH_ENTER, &found);
	if (!found)
		memset(e->delta, 0, sizeof(e->delta));
	if (level > pending_deepest)
		pending_deepest = level;
	return e;
}

static void
add_pending(CounterTable *table, Oid summary, const Contribution *c)
{
	PendingDelta *e = pending_entry(table->number, summary, GetCurrentTransactionNestLevel(), c->room_id);

	for (int i = 0; i < table->ncounters; i++)
		e->delta[i] += c->delta[i];
}

static int
by_table_and_room(const void *a, const void *b)
{
	const PendingKey *x = &((const PendingDelta *) a)->key;
	const PendingKey *y = &((const PendingDelta *) b)->key;

	if (x->table != y->table)
		return x->table - y->table;
	if (x->summary != y->summary)
		return x->summary < y->summary ? -1 : 1;
	return (x->room_id > y->room_id) - (x->room_id < y->room_id);
}

/*
 * Apply the deltas of the current subtransaction level (of one table, or
 * of all when only is NULL), in (table, room id) order, and forget them.
 */
static void
flush_pending(CounterTable *only)
{
	int			level = GetCurrentTransactionNestLevel();
	HASH_SEQ_STATUS seq;
	PendingDelta *e;
	PendingDelta *batch;
	int			n = 0;
	OwnerContext ctx;

	if (pending == NULL || flushing)
		return;
	batch = palloc(sizeof(PendingDelta) * hash_get_num_entries(pending));
	hash_seq_init(&seq, pending);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		if (e->key.level != level || (only != NULL && e->key.table != only->number))
			continue;
		batch[n++] = *e;
		/* removing the entry just returned is allowed during a scan */
		(void) hash_search(pending, &e->key, HASH_REMOVE, NULL);
	}
	if (hash_get_num_entries(pending) == 0)
	{
		hash_destroy(pending);
		pending = NULL;
	}
	if (n == 0)
	{
		pfree(batch);
		return;
	}
	qsort(batch, n, sizeof(PendingDelta), by_table_and_room);
	flushing = true;
	PG_TRY();
	{
		int			current = -1;
		Oid			current_summary = InvalidOid;
		bool		pushed = false;
		CounterWriter w;

		/*
		 * The end of a top-level SELECT comes when its portal is dropped, and
		 * PRE_COMMIT after the last statement: no snapshot is active there.
		 * (An abort pops it.)
		 */
		if (!ActiveSnapshotSet())
		{
			PushActiveSnapshot(GetTransactionSnapshot());
			pushed = true;
		}
		for (int i = 0; i < n; i++)
		{
			CounterTable *table = counter_tables[batch[i].key.table];
			Contribution c;

			c.room_id = batch[i].key.room_id;
			memcpy(c.delta, batch[i].delta, sizeof(c.delta));
			if (!moves_something(table, &c))
				continue;
			if (batch[i].key.table != current || batch[i].key.summary != current_summary)
			{
				if (current >= 0)
					counter_writer_close(&w);
				counter_writer_open(&w, table, batch[i].key.summary);
				current = batch[i].key.table;
				current_summary = batch[i].key.summary;
			}
			if (!counter_writer_add(&w, table, &c))
			{
				/* (the SQL below names the table, not a shard: docs/citus.md) */
				if (OidIsValid(batch[i].key.summary))
					elog(ERROR, "the counter row of room %lld is missing from \"%s\"",
						 (long long) c.room_id, get_rel_name(batch[i].key.summary));
				become_owner(table->owner, &ctx);
				add_to_room(table, &c);
				stop_being_owner(&ctx);
			}
		}
		if (current >= 0)
			counter_writer_close(&w);
		if (pushed)
			PopActiveSnapshot();
	}
	PG_FINALLY();
	{
		flushing = false;
	}
	PG_END_TRY();
	pfree(batch);
}

/* At the end of a top-level statement, in a transaction that can still write. */
static void
flush_at_statement_end(void)
{
	if (pending != NULL && !flushing && IsTransactionState() && !IsAbortedTransactionBlockState())
		flush_pending(NULL);
}

static void
pending_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			/* every subtransaction has ended: all deltas are at level 1 */
			if (pending != NULL)
				flush_pending(NULL);
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* freed with TopTransactionContext */
			pending = NULL;
			pending_deepest = 0;
			flushing = false;
			/*
			 * (statement_depth stays: a procedure's COMMIT ends the
			 * transaction inside the CALL; the hooks unwind it, errors
			 * included.)
			 */
			break;
		default:
			break;
	}
}

/* A committed subtransaction's deltas go to its parent; an aborted one's are dropped. */
static void
pending_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	int			level;
	HASH_SEQ_STATUS seq;
	PendingDelta *e;
	PendingDelta *moved = NULL;
	int			n = 0;

	if (pending == NULL || (event != SUBXACT_EVENT_COMMIT_SUB && event != SUBXACT_EVENT_ABORT_SUB))
		return;
	level = GetCurrentTransactionNestLevel();
	if (pending_deepest < level)
		return;
	if (event == SUBXACT_EVENT_COMMIT_SUB)
		moved = MemoryContextAlloc(TopTransactionContext,
								   sizeof(PendingDelta) * hash_get_num_entries(pending));
	hash_seq_init(&seq, pending);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		if (e->key.level < level)
			continue;
		if (moved != NULL)
			moved[n++] = *e;
		(void) hash_search(pending, &e->key, HASH_REMOVE, NULL);
	}
	pending_deepest = level - 1;
	for (int i = 0; i < n; i++)
	{
		PendingDelta *to = pending_entry(moved[i].key.table, moved[i].key.summary, level - 1,
											  moved[i].key.room_id);

		for (int k = 0; k < MAX_COUNTERS; k++)
			to->delta[k] += moved[i].delta[k];
	}
	if (moved != NULL)
		pfree(moved);
}

/* --- the depth of statements, for "the end of a top-level statement" */

static void
pgb_ExecutorRun(QueryDesc *queryDesc, ScanDirection direction, uint64 count, bool execute_once)
{
	statement_depth++;
	PG_TRY();
	{
		if (prev_ExecutorRun)
			prev_ExecutorRun(queryDesc, direction, count, execute_once);
		else
			standard_ExecutorRun(queryDesc, direction, count, execute_once);
	}
	PG_FINALLY();
	{
		statement_depth--;
	}
	PG_END_TRY();
}

static void
pgb_ExecutorFinish(QueryDesc *queryDesc)
{
	statement_depth++;
	PG_TRY();
	{
		if (prev_ExecutorFinish)
			prev_ExecutorFinish(queryDesc);
		else
			standard_ExecutorFinish(queryDesc);
	}
	PG_FINALLY();
	{
		statement_depth--;
	}
	PG_END_TRY();
	if (statement_depth == 0)
		flush_at_statement_end();
}

static void
pgb_ProcessUtility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
				   ProcessUtilityContext context, ParamListInfo params,
				   QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	statement_depth++;
	PG_TRY();
	{
		if (prev_ProcessUtility)
			prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		statement_depth--;
	}
	PG_END_TRY();
	/* COMMIT, ROLLBACK (TO), SAVEPOINT: the transaction callbacks see to it */
	if (statement_depth == 0 && !IsA(pstmt->utilityStmt, TransactionStmt))
		flush_at_statement_end();
}

/* From _PG_init. */
void
pgb_analytics_init(void)
{
	prev_ExecutorRun = ExecutorRun_hook;
	ExecutorRun_hook = pgb_ExecutorRun;
	prev_ExecutorFinish = ExecutorFinish_hook;
	ExecutorFinish_hook = pgb_ExecutorFinish;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = pgb_ProcessUtility;
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
 * Sum the statement's changes per room and add them to the transaction's
 * pending deltas (applied at the end of the top-level statement, below).
 */
static void
apply_statement(TriggerData *trigdata, CounterTable *table)
{
	Relation	rel = trigdata->tg_relation;
	RoomChanges changes = {0};
	Contribution *moved;
	int			n;
	Oid			summary;

	if (trigdata->tg_newtable != NULL)
		sum_rows(trigdata->tg_newtable, rel, table, 1, &changes);
	if (trigdata->tg_oldtable != NULL)
		sum_rows(trigdata->tg_oldtable, rel, table, -1, &changes);
	moved = sorted_changes(table, &changes, &n);
	if (n == 0)
		return;
	table->owner = rel->rd_rel->relowner;
	if (statement_depth == 0 || flushing)
	{
		/*
		 * Not inside a statement this file sees the end of (the library was
		 * loaded by this very statement): apply now, as before.
		 */
		OwnerContext ctx;

		become_owner(table->owner, &ctx);
		for (int i = 0; i < n; i++)
			add_to_room(table, &moved[i]);
		stop_being_owner(&ctx);
		return;
	}
	summary = counters_relation(rel, table);
	for (int i = 0; i < n; i++)
		add_pending(table, summary, &moved[i]);
}

static void
reset_counters(Relation rel, CounterTable *table)
{
	OwnerContext ctx;

	/* What this statement counted so far goes first (its rows are gone now). */
	flush_pending(table);
	become_owner(rel->rd_rel->relowner, &ctx);
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
	become_owner(rel->rd_rel->relowner, &ctx);
	add_to_room(&booking_counts, &zero);
	add_to_room(&rating_counts, &zero);
	stop_being_owner(&ctx);
	return PointerGetDatum(NULL);
}
