/*
 * conflicts.c — two bookings that occupy one meeting room never overlap.
 *
 * Which bookings occupy the room is written once, in SQL (1.1, issue 14):
 * booking.booking_occupies(status, hold_expires_at, at) -- the status may
 * occupy (booking.status_occupies, the predicate of the partial index this
 * check scans, bookings_room_occupying_idx) and, for a hold or a request
 * (held, pending), its expiry has not passed at instant at.  This file does
 * not restate the rule: it compiles a call of that SQL function once per
 * backend (the planner inlines it into a plain expression) and evaluates it
 * on tuples, with at as a parameter.  So an expired hold blocks nobody even
 * before the worker marks it "expired", although it is still in the index:
 * the scans below step over index rows that no longer occupy.  (A status
 * change is never a HOT update, because the predicate's column is indexed.)
 * Under the 1.0 SQL, which has no such function and whose index holds
 * confirmed bookings only, the index's own predicate is the rule, and the
 * same code checks exactly what 1.0 did.
 *
 * The instant: not the transaction's start (now()), but the clock read
 * right after taking the room's lock (check_room).  Writers of a room hold
 * that lock in turn, so their instants go in the same order: a hold that
 * had expired for one writer is expired for every later one, and the
 * bookings that occupy at a writer's instant never overlap each other
 * (each was checked against all that occupied at its own, earlier,
 * instant).  With now() a long transaction could still see a hold that a
 * later writer had already booked over, and stop its backward scan at it.
 * Readers in SQL (availability, schedules, suggestions) use now().
 *
 * How it stays correct under concurrency (READ COMMITTED or stronger, any
 * number of concurrent inserts and reschedules):
 *
 *   1. Before looking, the writer takes a transaction-scoped exclusive
 *      advisory lock on the room (class PGB_LOCK_ROOM).  Every path that
 *      places an occupying booking in a room goes through the trigger below,
 *      so all such writers of one room are serialised until commit or abort;
 *      writers of different rooms never wait for each other.
 *   2. Only then does it look for clashes, with SnapshotSelf: every row
 *      committed by now (so every booking of the previous lock holder, even
 *      under REPEATABLE READ) and every row its own transaction wrote,
 *      including earlier rows of the same statement.  Rows of transactions
 *      still in progress cannot be bookings of this room: their writers
 *      would hold the lock.
 *   3. The row is written while the lock is still held, and the lock is only
 *      released at commit: the next writer's snapshot contains it.
 *
 * The check reads the index and the heap directly, not through the executor:
 * row-level security does not apply (a user must not be able to book over a
 * booking they cannot see), there is no plan to go stale, and it costs a few
 * index probes per booking.
 * Buffers: a room's buffer_before/after minutes widen every booking of the
 * room, so two bookings clash when they come closer than before + after
 * (pgb_clash_gap, booking_rules.c, which availability uses too).  A room's
 * being active is checked here only: every write that places a booking
 * passes this trigger.
 * The look reads only the bookings that can clash: see check_room.
 *
 * Under Citus (docs/citus.md) the trigger runs on a shard of bookings on a
 * worker: everything it reads is found from the trigger's own relation (its
 * index, its foreign key to the co-located rooms shard; see BookingSchema),
 * and the room's lock is taken on the node that holds the room, where every
 * writer of that room's bookings meets.  The rule's SQL function is found by
 * name: functions are not sharded, every node has booking.booking_occupies.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_index.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/params.h"
#include "optimizer/optimizer.h"
#include "parser/parse_func.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "pg_booking.h"

PG_FUNCTION_INFO_V1(booking_conflicts);
PG_FUNCTION_INFO_V1(check_booking_conflict);

/* What one look at a room found. */
typedef struct RoomCheck
{
	bool		room_found;
	bool		room_active;
	char	   *conflicts;		/* JSON array, or NULL when none */
} RoomCheck;

/*
 * Serialise every writer of occupying bookings of this room until commit
 * (also the waitlist's joins and promotions, waitlist.c).
 */
void
pgb_lock_room_until_commit(int64 room_id)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId,
						 (uint32) ((uint64) room_id >> 32), (uint32) room_id,
						 PGB_LOCK_ROOM);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

/*
 * Where things are, for one bookings relation: booking.bookings itself, or
 * one of its shards when Citus has distributed it (booking.bookings_102008
 * on a worker; see docs/citus.md).  Everything is found from that relation,
 * never by name in booking, because a shard's neighbours have names of their
 * own: the index the check scans is the relation's own btree index on
 * (room_id, starts_at) with a predicate, the rooms relation is the one its
 * foreign key on room_id references (Citus creates the shard's key against
 * the co-located rooms shard, or the local copy of a reference table), and
 * the room is read through that relation's primary key.  Column numbers are
 * the relation's own too: a shard is created from the table's definition, so
 * a column dropped from the table is not a hole in the shard.
 *
 * Looked up once per relation and backend, and forgotten when any of the
 * relations involved changes.
 */
typedef struct BookingSchema
{
	Oid			bookings;		/* hash key */
	bool		valid;
	Oid			rooms;
	Oid			rooms_pkey;
	Oid			bookings_by_room;	/* (room_id, starts_at) WHERE it occupies */
	AttrNumber	room_id;
	AttrNumber	room_active;
	AttrNumber	room_buffer_before;
	AttrNumber	room_buffer_after;
	AttrNumber	b_id;
	AttrNumber	b_room_id;
	AttrNumber	b_starts_at;
	AttrNumber	b_ends_at;
	AttrNumber	b_status;
	AttrNumber	b_hold_expires_at;	/* 1.1; InvalidAttrNumber under 1.0 */
	Oid			booking_occupies;	/* booking.booking_occupies(text, timestamptz, timestamptz), 1.1 */

	/*
	 * The rule, booking.booking_occupies(status, hold_expires_at, $1) (or,
	 * under 1.0, the index's predicate), ready to evaluate on a tuple of this
	 * relation at the instant in params; built on first use, dropped with
	 * the entry.
	 */
	MemoryContext cxt;
	ExprState  *qual;
	ExprContext *econtext;
	TupleTableSlot *slot;
	ParamListInfo params;		/* $1: the instant */
} BookingSchema;

static HTAB *schemas = NULL;

static void
forget_schema(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	BookingSchema *bs;

	if (schemas == NULL)
		return;
	hash_seq_init(&status, schemas);
	while ((bs = hash_seq_search(&status)) != NULL)
	{
		if (!OidIsValid(relid) || relid == bs->bookings || relid == bs->rooms ||
			relid == bs->rooms_pkey || relid == bs->bookings_by_room)
		{
			/* Rebuilt on next use; memory freed then (not inside a callback). */
			bs->valid = false;
			bs->qual = NULL;
		}
	}
}

/* A function was changed: booking_occupies may have been replaced. */
static void
forget_rule(Datum arg, int cacheid, uint32 hashvalue)
{
	forget_schema(arg, InvalidOid);
}

/*
 * The index the check scans: a valid btree index of rel whose first two key
 * columns are room_id and starts_at and which has a predicate (the 1.1
 * occupying index, or the 1.0 confirmed-only one; never both at once).
 */
static Oid
find_bookings_by_room(Relation rel, AttrNumber room_id, AttrNumber starts_at)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	Oid			found = InvalidOid;

	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), AccessShareLock);
		Form_pg_index form = index->rd_index;

		if (index->rd_rel->relam == BTREE_AM_OID && form->indisvalid &&
			form->indnkeyatts >= 2 &&
			form->indkey.values[0] == room_id && form->indkey.values[1] == starts_at &&
			!heap_attisnull(index->rd_indextuple, Anum_pg_index_indpred, NULL))
			found = RelationGetRelid(index);
		index_close(index, AccessShareLock);
		if (OidIsValid(found))
			break;
	}
	list_free(indexes);
	if (!OidIsValid(found))
		elog(ERROR, "relation \"%s\" has no partial index on (room_id, starts_at) for the conflict check",
			 RelationGetRelationName(rel));
	return found;
}

/* The relation rel's single-column foreign key on room_id references. */
static Oid
find_rooms(Relation rel, AttrNumber room_id)
{
	List	   *fkeys = RelationGetFKeyList(rel);
	ListCell   *lc;

	foreach(lc, fkeys)
	{
		ForeignKeyCacheInfo *fk = lfirst_node(ForeignKeyCacheInfo, lc);

		if (fk->nkeys == 1 && fk->conkey[0] == room_id)
			return fk->confrelid;
	}
	elog(ERROR, "relation \"%s\" has no foreign key on room_id for the conflict check to find its rooms",
		 RelationGetRelationName(rel));
	return InvalidOid;			/* keep the compiler quiet */
}

/* The schema of the bookings relation rel (booking.bookings or a shard). */
static BookingSchema *
booking_schema(Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	BookingSchema *bs;
	bool		found;
	Relation	rooms;

	if (schemas == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(BookingSchema);
		schemas = hash_create("pg_booking conflict check relations", 16, &ctl,
							  HASH_ELEM | HASH_BLOBS);
		pgb_register_relcache_callback(forget_schema);
		CacheRegisterSyscacheCallback(PROCOID, forget_rule, (Datum) 0);
	}
	bs = hash_search(schemas, &relid, HASH_ENTER, &found);
	if (!found)
	{
		bs->valid = false;
		bs->cxt = NULL;
		bs->qual = NULL;
	}
	if (bs->valid)
		return bs;

	bs->b_id = pgb_attnum(relid, "id");
	bs->b_room_id = pgb_attnum(relid, "room_id");
	bs->b_starts_at = pgb_attnum(relid, "starts_at");
	bs->b_ends_at = pgb_attnum(relid, "ends_at");
	bs->b_status = pgb_attnum(relid, "status");
	/* 1.1: absent under the 1.0 SQL (then the index's predicate is the rule) */
	bs->b_hold_expires_at = get_attnum(relid, "hold_expires_at");
	{
		Oid			argtypes[3] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID};

		bs->booking_occupies =
			LookupFuncName(list_make2(makeString("booking"), makeString("booking_occupies")),
						   3, argtypes, true);
	}
	bs->bookings_by_room = find_bookings_by_room(rel, bs->b_room_id, bs->b_starts_at);
	bs->rooms = find_rooms(rel, bs->b_room_id);
	rooms = table_open(bs->rooms, AccessShareLock);
	bs->rooms_pkey = RelationGetPrimaryKeyIndex(rooms);
	table_close(rooms, AccessShareLock);
	if (!OidIsValid(bs->rooms_pkey))
		elog(ERROR, "relation \"%s\" has no primary key for the conflict check", get_rel_name(bs->rooms));
	bs->room_id = pgb_attnum(bs->rooms, "id");
	bs->room_active = pgb_attnum(bs->rooms, "active");
	bs->room_buffer_before = pgb_attnum(bs->rooms, "buffer_before_minutes");
	bs->room_buffer_after = pgb_attnum(bs->rooms, "buffer_after_minutes");
	bs->valid = true;
	return bs;
}

/*
 * Build the evaluator of the rule for tuples of rel: a call of the SQL
 * function on the tuple's columns and the instant $1, planned as any query
 * would plan it (booking_occupies and status_occupies are inlined: no
 * function call per tuple).
 */
static void
prepare_occupies(Relation rel, BookingSchema *bs)
{
	List	   *rule;
	MemoryContext old;

	if (bs->cxt != NULL)
		MemoryContextDelete(bs->cxt);
	bs->cxt = AllocSetContextCreate(TopMemoryContext, "pg_booking occupies rule",
									ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(bs->cxt);
	if (OidIsValid(bs->booking_occupies) && bs->b_hold_expires_at != InvalidAttrNumber)
	{
		Param	   *at = makeNode(Param);
		FuncExpr   *call;

		at->paramkind = PARAM_EXTERN;
		at->paramid = 1;
		at->paramtype = TIMESTAMPTZOID;
		at->paramtypmod = -1;
		at->paramcollid = InvalidOid;
		at->location = -1;
		call = makeFuncExpr(bs->booking_occupies, BOOLOID,
							list_make3(makeVar(1, bs->b_status, TEXTOID, -1, DEFAULT_COLLATION_OID, 0),
									   makeVar(1, bs->b_hold_expires_at, TIMESTAMPTZOID, -1, InvalidOid, 0),
									   at),
							InvalidOid, DEFAULT_COLLATION_OID, COERCE_EXPLICIT_CALL);
		rule = list_make1(expression_planner((Expr *) call));
	}
	else
	{
		/* 1.0: the index's predicate (status = 'confirmed') is the rule. */
		Relation	index = index_open(bs->bookings_by_room, AccessShareLock);

		rule = RelationGetIndexPredicate(index);	/* a copy, already simplified */
		index_close(index, AccessShareLock);
		if (rule == NIL)
			elog(ERROR, "index of the conflict check has no predicate");
	}
	bs->params = makeParamList(1);
	bs->params->params[0].ptype = TIMESTAMPTZOID;
	bs->params->params[0].pflags = PARAM_FLAG_CONST;
	bs->params->params[0].isnull = false;
	bs->qual = ExecInitQual(rule, NULL);
	bs->econtext = CreateStandaloneExprContext();
	bs->econtext->ecxt_param_list_info = bs->params;
	bs->slot = MakeSingleTupleTableSlot(CreateTupleDescCopy(RelationGetDescr(rel)), &TTSOpsHeapTuple);
	MemoryContextSwitchTo(old);
}

/*
 * Does this bookings tuple occupy its room at instant at (the rule)?  At
 * DT_NOEND: does it occupy for good, with no expiry that will pass?
 */
static bool
tuple_occupies(Relation rel, HeapTuple tuple, BookingSchema *bs, TimestampTz at)
{
	bool		result;

	if (bs->qual == NULL)
		prepare_occupies(rel, bs);
	bs->params->params[0].value = TimestampTzGetDatum(at);
	ExecStoreHeapTuple(tuple, bs->slot, false);
	bs->econtext->ecxt_scantuple = bs->slot;
	result = ExecQual(bs->qual, bs->econtext);
	ExecClearTuple(bs->slot);
	ResetExprContext(bs->econtext);
	return result;
}

static void
append_conflict(StringInfo buf, int64 id, Datum starts_at, Datum ends_at)
{
	char		ts[MAXDATELEN + 1];

	appendStringInfo(buf, "%s{\"booking_id\": %lld, \"starts_at\": \"%s\"",
					 buf->len > 1 ? ", " : "", (long long) id,
					 JsonEncodeDateTime(ts, starts_at, TIMESTAMPTZOID, NULL));
	appendStringInfo(buf, ", \"ends_at\": \"%s\"}",
					 JsonEncodeDateTime(ts, ends_at, TIMESTAMPTZOID, NULL));
}

/*
 * Lock the room, then look at it in the bookings relation given (the table
 * or the shard holding the room): does it exist, is it active, which
 * bookings occupying it (other than exclude_id) clash with [start, end)?
 */
static void
check_room(Relation bookings, int64 room_id, TimestampTz start, TimestampTz end,
		   int64 exclude_id, bool has_exclude, RoomCheck *result)
{
	Relation	rooms;
	Relation	index;
	SysScanDesc scan;
	ScanKeyData key[3];
	HeapTuple	tup;
	bool		isnull;
	int64		gap = 0;
	StringInfoData found;
	BookingSchema *bs;
	TimestampTz at;

	pgb_lock_room_until_commit(room_id);
	/* The instant the rule is applied at: read under the lock (file header). */
	at = GetCurrentTimestamp();
	bs = booking_schema(bookings);

	result->room_found = false;
	result->room_active = false;
	result->conflicts = NULL;

	/* The room: exists? active? buffers? */
	rooms = table_open(bs->rooms, AccessShareLock);
	ScanKeyInit(&key[0], bs->room_id, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(room_id));
	scan = systable_beginscan(rooms, bs->rooms_pkey, true, SnapshotSelf, 1, key);
	if (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		TupleDesc	desc = RelationGetDescr(rooms);
		Datum		d;

		result->room_found = true;
		d = heap_getattr(tup, bs->room_active, desc, &isnull);
		result->room_active = !isnull && DatumGetBool(d);
		{
			int32		before;
			int32		after;

			d = heap_getattr(tup, bs->room_buffer_before, desc, &isnull);
			before = isnull ? 0 : DatumGetInt32(d);
			d = heap_getattr(tup, bs->room_buffer_after, desc, &isnull);
			after = isnull ? 0 : DatumGetInt32(d);
			gap = pgb_clash_gap(before, after);
		}
	}
	systable_endscan(scan);
	table_close(rooms, AccessShareLock);
	if (!result->room_found)
		return;

	/*
	 * A booking clashes when it starts before end + gap and ends after
	 * start - gap.  No booking lasts longer than PGB_MAX_BOOKING_LENGTH (the
	 * rule of booking_rules.c, which this trigger applies to every write), so
	 * every booking that ends after start - gap starts after
	 * start - gap - PGB_MAX_BOOKING_LENGTH: one forward index scan over
	 * [start - gap - max length, end + gap) sees every candidate, in time
	 * order, and stops at its upper bound.  It reads the room's bookings of
	 * about a day, however long the room's history.  (A backward scan for
	 * "the latest booking before start - gap" read every earlier entry of
	 * the room on its index page: btree reads a page's matching entries at
	 * once, and in that direction only the room bounds the read.)
	 *
	 * Rows that no longer occupy at the instant (expired holds not yet
	 * marked, which may overlap a booking made over them) are skipped: the
	 * index holds every booking whose status may occupy.
	 */
	index = index_open(bs->bookings_by_room, AccessShareLock);
	initStringInfo(&found);
	appendStringInfoChar(&found, '[');
	{
		TupleDesc	desc = RelationGetDescr(bookings);
		TimestampTz from;

		/* (-infinity and its neighbours: from the beginning) */
		if (pg_sub_s64_overflow(start, gap + PGB_MAX_BOOKING_LENGTH, &from))
			from = PG_INT64_MIN;
		ScanKeyInit(&key[0], bs->b_room_id, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(room_id));
		ScanKeyInit(&key[1], bs->b_starts_at, BTGreaterEqualStrategyNumber, F_TIMESTAMPTZ_GE,
					TimestampTzGetDatum(from));
		ScanKeyInit(&key[2], bs->b_starts_at, BTLessStrategyNumber, F_TIMESTAMPTZ_LT,
					TimestampTzGetDatum(end + gap));
		scan = systable_beginscan_ordered(bookings, index, SnapshotSelf, 3, key);
		while (HeapTupleIsValid(tup = systable_getnext_ordered(scan, ForwardScanDirection)))
		{
			Datum		id = heap_getattr(tup, bs->b_id, desc, &isnull);
			Datum		b_end = heap_getattr(tup, bs->b_ends_at, desc, &isnull);

			if (has_exclude && DatumGetInt64(id) == exclude_id)
				continue;
			if (DatumGetTimestampTz(b_end) <= start - gap)
				continue;		/* ended before */
			if (!tuple_occupies(bookings, tup, bs, at))
				continue;		/* an expired hold */
			append_conflict(&found, DatumGetInt64(id),
							heap_getattr(tup, bs->b_starts_at, desc, &isnull), b_end);
		}
		systable_endscan_ordered(scan);
	}
	if (found.len > 1)
	{
		appendStringInfoChar(&found, ']');
		result->conflicts = found.data;
	}
	index_close(index, AccessShareLock);
}

/*
 * The relation that holds room_id's bookings on this node, for the SQL entry
 * point below (a trigger has its relation).  Single node: booking.bookings.
 * When Citus has distributed booking.bookings, the table here is a shell
 * without the rows; the room's shard is, when this node holds it (a call
 * delegated to the room's node, see docs/citus.md).  Elsewhere (the
 * coordinator) no answer read here would be right: refuse clearly rather
 * than report a free room.
 */
static Oid
room_bookings_relation(int64 room_id)
{
	Oid			nsp = get_namespace_oid("booking", false);
	Oid			relid = get_relname_relid("bookings", nsp);
	Oid			shard = InvalidOid;
	bool		distributed = false;
	char	   *shard_name = NULL;

	if (!OidIsValid(relid))
		elog(ERROR, "relation booking.bookings does not exist");
	if (!OidIsValid(get_relname_relid("pg_dist_partition", PG_CATALOG_NAMESPACE)))
		return relid;			/* no Citus in this database */

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	{
		Oid			argtypes[2] = {OIDOID, INT8OID};
		Datum		values[2] = {ObjectIdGetDatum(relid), Int64GetDatum(room_id)};
		int			rc;

		rc = SPI_execute_with_args("SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_partition"
								   " WHERE logicalrelid = $1 AND partmethod = 'h')",
								   1, argtypes, values, NULL, true, 1);
		if (rc != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "could not read pg_dist_partition");
		distributed = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &(bool){false}));
		if (distributed)
		{
			rc = SPI_execute_with_args("SELECT pg_catalog.to_regclass(pg_catalog.shard_name($1::regclass,"
									   " pg_catalog.get_shard_id_for_distribution_column($1::regclass, $2)))::oid,"
									   " pg_catalog.shard_name($1::regclass,"
									   " pg_catalog.get_shard_id_for_distribution_column($1::regclass, $2))",
									   2, argtypes, values, NULL, true, 1);
			if (rc != SPI_OK_SELECT || SPI_processed != 1)
				elog(ERROR, "could not find the shard of room %lld", (long long) room_id);
			{
				bool		isnull;
				Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

				if (!isnull)
					shard = DatumGetObjectId(d);
				shard_name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
				if (shard_name != NULL)
					shard_name = MemoryContextStrdup(TopTransactionContext, shard_name);
			}
		}
	}
	SPI_finish();
	if (!distributed)
		return relid;
	if (!OidIsValid(shard))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("the bookings of room %lld are not on this node", (long long) room_id),
				 errdetail("booking.bookings is distributed by Citus; its shard %s is on another node.",
						   shard_name ? shard_name : "?"),
				 errhint("Call booking.booking_conflicts() where the room's shard is (a function distributed by room_id), see docs/citus.md.")));
	return shard;
}

/*
 * booking.booking_conflicts(room_id, starts_at, ends_at, exclude_id)
 *   -> jsonb array of the occupying bookings that clash, or NULL.
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
	Relation	bookings;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_NULL();

	bookings = table_open(room_bookings_relation(PG_GETARG_INT64(0)), AccessShareLock);
	check_room(bookings, PG_GETARG_INT64(0),
			   PG_GETARG_TIMESTAMPTZ(1), PG_GETARG_TIMESTAMPTZ(2),
			   PG_ARGISNULL(3) ? 0 : PG_GETARG_INT64(3), !PG_ARGISNULL(3),
			   &check);
	table_close(bookings, AccessShareLock);

	if (check.conflicts == NULL)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(check.conflicts)));
}

/*
 * BEFORE INSERT OR UPDATE trigger on booking.bookings: refuses a booking
 * that is malformed, or that occupies its room and is in an unknown or
 * inactive room or clashes with another booking occupying it (buffers
 * included).
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
	BookingSchema *bs;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "check_booking_conflict: not called by trigger manager");
	if (!TRIGGER_FIRED_BEFORE(trigdata->tg_event) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		elog(ERROR, "check_booking_conflict: must be fired before insert or update, for each row");

	rel = trigdata->tg_relation;
	desc = RelationGetDescr(rel);
	is_update = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event);
	newtup = is_update ? trigdata->tg_newtuple : trigdata->tg_trigtuple;
	bs = booking_schema(rel);

	d = heap_getattr(newtup, bs->b_starts_at, desc, &isnull);
	if (isnull)
		return PointerGetDatum(newtup);		/* NOT NULL refuses it */
	start = DatumGetTimestampTz(d);
	d = heap_getattr(newtup, bs->b_ends_at, desc, &isnull);
	if (isnull)
		return PointerGetDatum(newtup);
	end = DatumGetTimestampTz(d);

	/*
	 * Every booking's times, whatever its status: this trigger is the one
	 * place that sees every write (the rule itself: booking_rules.c).
	 */
	pgb_check_booking_times(start, end);

	/*
	 * Only a booking that occupies its room can clash.  (Read before the
	 * lock: a booking that does not occupy now never will, its expiry being
	 * past; one that expires meanwhile is checked, which is on the safe side.)
	 */
	if (!tuple_occupies(rel, newtup, bs, GetCurrentTimestamp()))
		return PointerGetDatum(newtup);

	d = heap_getattr(newtup, bs->b_room_id, desc, &isnull);
	if (isnull)
		return PointerGetDatum(newtup);
	room_id = DatumGetInt64(d);
	d = heap_getattr(newtup, bs->b_id, desc, &isnull);
	booking_id = isnull ? 0 : DatumGetInt64(d);

	/*
	 * A retitle, or any change that leaves the room and times alone, needs no
	 * look, when the booking occupied before and goes on occupying for good.
	 * Not for a hold or a request with an expiry (confirming a hold, say):
	 * it may have expired for a writer that booked over it, so it is looked
	 * at again, under the lock.
	 */
	if (is_update)
	{
		HeapTuple	oldtup = trigdata->tg_trigtuple;
		TimestampTz forever;

		TIMESTAMP_NOEND(forever);
		if (tuple_occupies(rel, oldtup, bs, forever) && tuple_occupies(rel, newtup, bs, forever) &&
			DatumGetInt64(heap_getattr(oldtup, bs->b_room_id, desc, &isnull)) == room_id &&
			DatumGetTimestampTz(heap_getattr(oldtup, bs->b_starts_at, desc, &isnull)) == start &&
			DatumGetTimestampTz(heap_getattr(oldtup, bs->b_ends_at, desc, &isnull)) == end)
			return PointerGetDatum(newtup);
	}

	check_room(rel, room_id, start, end, booking_id, true, &check);

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
														   psprintf("\"field\": \"room_id\", \"room_id\": %lld",
																	(long long) room_id)))));
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
