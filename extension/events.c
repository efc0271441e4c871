/*
 * events.c — the events of a statement on booking.bookings, queued from C.
 *
 * booking.booking_events() is the statement trigger of INSERT, UPDATE and
 * DELETE on booking.bookings (transition tables new_rows / old_rows).  It
 * appends one row per event to booking.event_queue in the writer's own
 * transaction (so nothing is queued for a rollback and nothing is lost for a
 * commit; the publisher, events_publisher.c, moves committed rows on), and
 * asks for the publisher to be woken at commit.
 *
 * Until 1.1 this was PL/pgSQL: one INSERT ... SELECT per statement that
 * built each payload with booking.booking_event_payload(), a SQL function
 * that cannot be inlined (it is declared IMMUTABLE and calls the STABLE
 * jsonb_build_object), so every row paid a SQL function call and every
 * statement a new parse of its body: about 60 us of a 110 us single-row
 * insert.  Here the rows of the transition table are read one by one, the
 * payload is built as a JsonbValue and the queue row is inserted directly
 * (ExecSimpleRelationInsert: constraints, indexes and any triggers of the
 * queue are honoured), with its qid from the identity sequence and its "at"
 * from the clock, as the column defaults would give them.  Memory is reset
 * per row: a statement of any size writes its events (no array is built).
 *
 * The events are those of 1.1's SQL (the fallback below still runs it):
 *   INSERT   booking.created            payload of the new row
 *   DELETE   booking.deleted            payload of the old row
 *   UPDATE   booking.<new status>       when the status changed
 *            booking.rescheduled        else when room or times changed,
 *                                       with "previous": {room_id, starts_at, ends_at}
 *            (nothing for a retitle)
 * each with the caller (booking.current_user_id()) as user_id, in booking id
 * order.  A statement's transition tables are normally in id order already
 * (and, for an UPDATE, old and new rows are captured pairwise); the first
 * pass checks that.  When it does not hold, the statement runs the 1.1 SQL
 * (INSERT ... SELECT ... ORDER BY, which sorts on disk if it must), as the
 * owner of the queue.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "pg_booking.h"

PG_FUNCTION_INFO_V1(pgb_booking_events);
PG_FUNCTION_INFO_V1(pgb_reservation_events);

/* The queue and the bookings' columns, looked up once per backend. */
typedef struct EventsSchema
{
	bool		valid;
	Oid			queue;
	Oid			queue_seq;		/* of the identity column qid */
	AttrNumber	q_qid;
	AttrNumber	q_at;
	AttrNumber	q_kind;
	AttrNumber	q_entity;
	AttrNumber	q_entity_id;
	AttrNumber	q_user_id;
	AttrNumber	q_payload;
	Oid			bookings;
	AttrNumber	b_id;
	AttrNumber	b_room_id;
	AttrNumber	b_user_id;
	AttrNumber	b_status;
	AttrNumber	b_starts_at;
	AttrNumber	b_ends_at;
	AttrNumber	b_series_id;
	Oid			reservations;
	AttrNumber	r_id;
	AttrNumber	r_hotel_id;
	AttrNumber	r_room_type;
	AttrNumber	r_user_id;
	AttrNumber	r_status;
	AttrNumber	r_arrival_date;
	AttrNumber	r_stay_length;
} EventsSchema;

static EventsSchema schema;
static bool schema_callback_registered = false;

/*
 * Under Citus (docs/citus.md) the trigger fires on a shard of bookings
 * (booking.bookings_102008 on a worker), not on booking.bookings: the same
 * queue (each node's own booking.event_queue, a plain table there), with the
 * shard's own column numbers (a shard is created from the table's
 * definition, so a column dropped from the table is no hole in the shard).
 * Kept for the last shard seen, forgotten with the schema.
 */
static EventsSchema shard_schema;
static EventsSchema reservations_shard_schema;	/* the same, for reservations */
static bool kept_writer_stale = false;	/* the queue's relcache entry changed (below) */

static void
forget_schema(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == schema.queue || relid == schema.bookings ||
		relid == schema.reservations)
		schema.valid = false;
	if (!OidIsValid(relid) || relid == schema.queue || relid == shard_schema.bookings)
		shard_schema.valid = false;
	if (!OidIsValid(relid) || relid == schema.queue || relid == reservations_shard_schema.reservations)
		reservations_shard_schema.valid = false;
	/* (the kept queue writer, below, is reopened on its next use) */
	if (!OidIsValid(relid) || relid == schema.queue)
		kept_writer_stale = true;
}

static const EventsSchema *
events_schema(void)
{
	Oid			nsp;

	if (schema.valid)
		return &schema;
	if (!schema_callback_registered)
	{
		pgb_register_relcache_callback(forget_schema);
		schema_callback_registered = true;
	}
	nsp = get_namespace_oid("booking", false);
	schema.queue = get_relname_relid("event_queue", nsp);
	schema.bookings = get_relname_relid("bookings", nsp);
	schema.reservations = get_relname_relid("reservations", nsp);
	if (!OidIsValid(schema.queue) || !OidIsValid(schema.bookings) || !OidIsValid(schema.reservations))
		elog(ERROR, "booking.event_queue, booking.bookings or booking.reservations does not exist");
	schema.q_qid = pgb_attnum(schema.queue, "qid");
	schema.q_at = pgb_attnum(schema.queue, "at");
	schema.q_kind = pgb_attnum(schema.queue, "kind");
	schema.q_entity = pgb_attnum(schema.queue, "entity");
	schema.q_entity_id = pgb_attnum(schema.queue, "entity_id");
	schema.q_user_id = pgb_attnum(schema.queue, "user_id");
	schema.q_payload = pgb_attnum(schema.queue, "payload");
	schema.queue_seq = getIdentitySequence(schema.queue, schema.q_qid, false);
	schema.b_id = pgb_attnum(schema.bookings, "id");
	schema.b_room_id = pgb_attnum(schema.bookings, "room_id");
	schema.b_user_id = pgb_attnum(schema.bookings, "user_id");
	schema.b_status = pgb_attnum(schema.bookings, "status");
	schema.b_starts_at = pgb_attnum(schema.bookings, "starts_at");
	schema.b_ends_at = pgb_attnum(schema.bookings, "ends_at");
	schema.b_series_id = pgb_attnum(schema.bookings, "series_id");
	schema.r_id = pgb_attnum(schema.reservations, "id");
	schema.r_hotel_id = pgb_attnum(schema.reservations, "hotel_id");
	schema.r_room_type = pgb_attnum(schema.reservations, "room_type");
	schema.r_user_id = pgb_attnum(schema.reservations, "user_id");
	schema.r_status = pgb_attnum(schema.reservations, "status");
	schema.r_arrival_date = pgb_attnum(schema.reservations, "arrival_date");
	schema.r_stay_length = pgb_attnum(schema.reservations, "stay_length");
	schema.valid = true;
	return &schema;
}

/* The schema for the relation the trigger fired on: the table, or a shard. */
static const EventsSchema *
events_schema_for(Relation rel)
{
	const EventsSchema *s = events_schema();
	Oid			relid = RelationGetRelid(rel);

	if (relid == s->bookings)
		return s;
	if (shard_schema.valid && shard_schema.bookings == relid)
		return &shard_schema;
	if (!pgb_is_citus_shard(rel, "bookings"))
		elog(ERROR, "booking_events: fired on \"%s\", not on booking.bookings",
			 RelationGetRelationName(rel));
	shard_schema = *s;
	shard_schema.bookings = relid;
	shard_schema.b_id = pgb_attnum(relid, "id");
	shard_schema.b_room_id = pgb_attnum(relid, "room_id");
	shard_schema.b_user_id = pgb_attnum(relid, "user_id");
	shard_schema.b_status = pgb_attnum(relid, "status");
	shard_schema.b_starts_at = pgb_attnum(relid, "starts_at");
	shard_schema.b_ends_at = pgb_attnum(relid, "ends_at");
	shard_schema.b_series_id = pgb_attnum(relid, "series_id");
	shard_schema.valid = true;
	return &shard_schema;
}

/* The same for the reservations trigger: the table, or a shard of it. */
static const EventsSchema *
reservation_events_schema_for(Relation rel)
{
	const EventsSchema *s = events_schema();
	Oid			relid = RelationGetRelid(rel);

	if (relid == s->reservations)
		return s;
	if (reservations_shard_schema.valid && reservations_shard_schema.reservations == relid)
		return &reservations_shard_schema;
	if (!pgb_is_citus_shard(rel, "reservations"))
		elog(ERROR, "reservation_events: fired on \"%s\", not on booking.reservations",
			 RelationGetRelationName(rel));
	reservations_shard_schema = *s;
	reservations_shard_schema.reservations = relid;
	reservations_shard_schema.r_id = pgb_attnum(relid, "id");
	reservations_shard_schema.r_hotel_id = pgb_attnum(relid, "hotel_id");
	reservations_shard_schema.r_room_type = pgb_attnum(relid, "room_type");
	reservations_shard_schema.r_user_id = pgb_attnum(relid, "user_id");
	reservations_shard_schema.r_status = pgb_attnum(relid, "status");
	reservations_shard_schema.r_arrival_date = pgb_attnum(relid, "arrival_date");
	reservations_shard_schema.r_stay_length = pgb_attnum(relid, "stay_length");
	reservations_shard_schema.valid = true;
	return &reservations_shard_schema;
}

/*
 * Appending to booking.event_queue: an executor state, the way logical
 * replication applies rows (ExecSimpleRelationInsert).  Setting it up (the
 * queue and its index opened, an EState) was a quarter of the trigger's cost
 * for a single-row statement, so it is kept for the rest of the transaction:
 * made in TopTransactionContext, its relations held by the transaction's
 * resource owner, closed at PRE_COMMIT / PRE_PREPARE (an abort releases
 * them).  Subtransactions need nothing: the rows they wrote go with them,
 * the state holds none.  When the queue has triggers of its own (none of
 * ours), a state per statement fires them as any insert would.
 */
typedef struct QueueWriter
{
	const EventsSchema *s;
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
	bool		has_triggers;
	bool		has_user;
	int64		user_id;
	int64		queued;
} QueueWriter;

static QueueWriter *kept_writer = NULL;	/* valid in its transaction only */
static bool writer_callback_registered = false;

static QueueWriter *
queue_writer_make(const EventsSchema *s)
{
	QueueWriter *w = palloc0(sizeof(QueueWriter));
	RangeTblEntry *rte;

	w->s = s;
	w->rel = table_open(s->queue, RowExclusiveLock);
	w->estate = CreateExecutorState();
	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = s->queue;
	rte->relkind = w->rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	ExecInitRangeTable(w->estate, list_make1(rte));
	w->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(w->rri, w->rel, 1, NULL, 0);
	ExecOpenIndices(w->rri, false);
	w->slot = ExecInitExtraTupleSlot(w->estate, RelationGetDescr(w->rel), &TTSOpsVirtual);
	w->has_triggers = w->rri->ri_TrigDesc != NULL;
	return w;
}

static void
queue_writer_free(QueueWriter *w)
{
	ExecCloseIndices(w->rri);
	ExecCloseResultRelations(w->estate);	/* opened by triggers it fired */
	ExecCloseRangeTableRelations(w->estate);
	ExecResetTupleTable(w->estate->es_tupleTable, false);
	FreeExecutorState(w->estate);
	table_close(w->rel, NoLock);
	pfree(w);
}

static void
close_kept_writer(void)
{
	ResourceOwner save = CurrentResourceOwner;

	CurrentResourceOwner = TopTransactionResourceOwner;
	queue_writer_free(kept_writer);
	CurrentResourceOwner = save;
	kept_writer = NULL;
}

static void
writer_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			if (kept_writer != NULL)
				close_kept_writer();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* memory and relations went with the transaction */
			kept_writer = NULL;
			kept_writer_stale = false;
			break;
		default:
			break;
	}
}

static QueueWriter *
queue_open(const EventsSchema *s)
{
	QueueWriter *w;

	if (kept_writer != NULL && kept_writer_stale)
		close_kept_writer();
	kept_writer_stale = false;
	if (kept_writer == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
		ResourceOwner save = CurrentResourceOwner;

		if (!writer_callback_registered)
		{
			RegisterXactCallback(writer_xact_callback, NULL);
			writer_callback_registered = true;
		}
		CurrentResourceOwner = TopTransactionResourceOwner;
		PG_TRY();
		{
			w = queue_writer_make(s);
		}
		PG_FINALLY();
		{
			CurrentResourceOwner = save;
			MemoryContextSwitchTo(old);
		}
		PG_END_TRY();
		if (w->has_triggers)
		{
			/* not kept: its triggers fire per statement */
			CurrentResourceOwner = TopTransactionResourceOwner;
			queue_writer_free(w);
			CurrentResourceOwner = save;
			w = queue_writer_make(s);
		}
		else
			kept_writer = w;
	}
	else
		w = kept_writer;
	w->queued = 0;
	w->has_user = pgb_caller_user_id(&w->user_id);
	w->estate->es_output_cid = GetCurrentCommandId(true);
	if (w->has_triggers)
		AfterTriggerBeginQuery();
	return w;
}

static void
queue_close(QueueWriter *w)
{
	if (w->queued > 0)
		pgb_wake_publisher_at_commit();
	if (w != kept_writer)
	{
		AfterTriggerEndQuery(w->estate);
		queue_writer_free(w);
	}
}

/* One queue row; the caller resets the memory it was built in. */
static void
queue_event(QueueWriter *w, const char *kind, const char *entity, const char *id, Jsonb *payload)
{
	const EventsSchema *s = w->s;
	TupleTableSlot *slot = w->slot;

	ExecClearTuple(slot);
	memset(slot->tts_isnull, false, slot->tts_tupleDescriptor->natts * sizeof(bool));
	slot->tts_values[s->q_qid - 1] = Int64GetDatum(nextval_internal(s->queue_seq, false));
	slot->tts_values[s->q_at - 1] = TimestampTzGetDatum(GetCurrentTimestamp());
	slot->tts_values[s->q_kind - 1] = CStringGetTextDatum(kind);
	slot->tts_values[s->q_entity - 1] = CStringGetTextDatum(entity);
	slot->tts_values[s->q_entity_id - 1] = CStringGetTextDatum(id);
	slot->tts_values[s->q_user_id - 1] = Int64GetDatum(w->user_id);
	slot->tts_isnull[s->q_user_id - 1] = !w->has_user;
	slot->tts_values[s->q_payload - 1] = JsonbPGetDatum(payload);
	ExecStoreVirtualTuple(slot);
	ExecSimpleRelationInsert(w->rri, w->estate, slot);
	ResetPerTupleExprContext(w->estate);
	w->queued++;
}

/* --- payloads, as booking.booking_event_payload() and to_jsonb() write them */

static void
push_key(JsonbParseState **st, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	(void) pushJsonbValue(st, WJB_KEY, &k);
}

static void
push_string(JsonbParseState **st, char *str, int len)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = str;
	v.val.string.len = len;
	(void) pushJsonbValue(st, WJB_VALUE, &v);
}

static void
push_null(JsonbParseState **st)
{
	JsonbValue	v;

	v.type = jbvNull;
	(void) pushJsonbValue(st, WJB_VALUE, &v);
}

static void
push_int8(JsonbParseState **st, const char *key, TupleTableSlot *slot, AttrNumber att)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, att, &isnull);
	JsonbValue	v;

	push_key(st, key);
	if (isnull)
		return push_null(st);
	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(DatumGetInt64(d));
	(void) pushJsonbValue(st, WJB_VALUE, &v);
}

static void
push_text(JsonbParseState **st, const char *key, TupleTableSlot *slot, AttrNumber att)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, att, &isnull);
	text	   *t;

	push_key(st, key);
	if (isnull)
		return push_null(st);
	t = DatumGetTextPP(d);
	push_string(st, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
}

static void
push_timestamptz(JsonbParseState **st, const char *key, TupleTableSlot *slot, AttrNumber att)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, att, &isnull);
	char		buf[MAXDATELEN + 1];

	push_key(st, key);
	if (isnull)
		return push_null(st);
	JsonEncodeDateTime(buf, d, TIMESTAMPTZOID, NULL);
	push_string(st, pstrdup(buf), strlen(buf));
}

static void
push_uuid(JsonbParseState **st, const char *key, TupleTableSlot *slot, AttrNumber att)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, att, &isnull);
	char	   *str;

	push_key(st, key);
	if (isnull)
		return push_null(st);
	str = DatumGetCString(DirectFunctionCall1(uuid_out, d));
	push_string(st, str, strlen(str));
}

/*
 * {"room_id", "owner_id", "status", "starts_at", "ends_at", "series_id"}
 * of a booking, plus "previous" {room_id, starts_at, ends_at} of the old
 * row when given (a reschedule).
 */
static Jsonb *
booking_payload(const EventsSchema *s, TupleTableSlot *row, TupleTableSlot *previous)
{
	JsonbParseState *st = NULL;
	JsonbValue *res;

	(void) pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	push_int8(&st, "room_id", row, s->b_room_id);
	push_int8(&st, "owner_id", row, s->b_user_id);
	push_text(&st, "status", row, s->b_status);
	push_timestamptz(&st, "starts_at", row, s->b_starts_at);
	push_timestamptz(&st, "ends_at", row, s->b_ends_at);
	push_uuid(&st, "series_id", row, s->b_series_id);
	if (previous != NULL)
	{
		push_key(&st, "previous");
		(void) pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
		push_int8(&st, "room_id", previous, s->b_room_id);
		push_timestamptz(&st, "starts_at", previous, s->b_starts_at);
		push_timestamptz(&st, "ends_at", previous, s->b_ends_at);
		(void) pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	}
	res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

/* --- reading the transition tables */

/* A read pointer of our own, so other triggers reading the table are not disturbed. */
static void
rows_rewind(Tuplestorestate *rows, int *readptr)
{
	if (*readptr < 0)
		*readptr = tuplestore_alloc_read_pointer(rows, EXEC_FLAG_REWIND);
	tuplestore_select_read_pointer(rows, *readptr);
	tuplestore_rescan(rows);
}

static int64
booking_id_of(TupleTableSlot *slot, const EventsSchema *s, bool *isnull)
{
	Datum		d = slot_getattr(slot, s->b_id, isnull);

	return *isnull ? 0 : DatumGetInt64(d);
}

/* NOT DISTINCT, for int8 and timestamptz (8-byte values compared by value). */
static bool
same_int8(TupleTableSlot *a, TupleTableSlot *b, AttrNumber att)
{
	bool		na;
	bool		nb;
	Datum		da = slot_getattr(a, att, &na);
	Datum		db = slot_getattr(b, att, &nb);

	if (na || nb)
		return na == nb;
	return DatumGetInt64(da) == DatumGetInt64(db);
}

/* a <> b for text (deterministic collation: bytes); false when either is NULL, as in SQL. */
static bool
text_differs(TupleTableSlot *a, TupleTableSlot *b, AttrNumber att)
{
	bool		na;
	bool		nb;
	Datum		da = slot_getattr(a, att, &na);
	Datum		db = slot_getattr(b, att, &nb);
	text	   *ta;
	text	   *tb;

	if (na || nb)
		return false;
	ta = DatumGetTextPP(da);
	tb = DatumGetTextPP(db);
	return VARSIZE_ANY_EXHDR(ta) != VARSIZE_ANY_EXHDR(tb) ||
		memcmp(VARDATA_ANY(ta), VARDATA_ANY(tb), VARSIZE_ANY_EXHDR(ta)) != 0;
}

/*
 * First pass: are the rows in ascending id order, and (UPDATE) is each old
 * row the previous version of the new row at the same place?
 */
static bool
rows_in_order(Tuplestorestate *rows, Tuplestorestate *pairs, TupleTableSlot *slot,
			  TupleTableSlot *pslot, int *readptr, int *preadptr, const EventsSchema *s)
{
	bool		first = true;
	int64		last = 0;
	bool		ok = true;

	rows_rewind(rows, readptr);
	if (pairs != NULL)
		rows_rewind(pairs, preadptr);
	while (tuplestore_gettupleslot(rows, true, false, slot))
	{
		bool		isnull;
		int64		id = booking_id_of(slot, s, &isnull);

		if (isnull || (!first && id <= last))
		{
			ok = false;
			break;
		}
		if (pairs != NULL)
		{
			bool		pnull;

			tuplestore_select_read_pointer(pairs, *preadptr);
			if (!tuplestore_gettupleslot(pairs, true, false, pslot) ||
				booking_id_of(pslot, s, &pnull) != id || pnull)
			{
				ok = false;
				break;
			}
			tuplestore_select_read_pointer(rows, *readptr);
		}
		first = false;
		last = id;
	}
	if (ok && pairs != NULL)
	{
		tuplestore_select_read_pointer(pairs, *preadptr);
		if (tuplestore_gettupleslot(pairs, true, false, pslot))
			ok = false;			/* more old rows than new */
	}
	ExecClearTuple(slot);
	if (pslot != NULL)
		ExecClearTuple(pslot);
	return ok;
}

/*
 * The 1.1 SQL, for transition tables that are not in id order: a sort of
 * any size, then the same rows (payloads by booking_event_payload()).
 */
static void
queue_by_sql(TriggerData *trigdata, const EventsSchema *s)
{
	const char *sql;
	Oid			save_userid;
	int			save_sec_context;
	int			rc;
	HeapTuple	tup;
	Oid			owner;

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		sql = "INSERT INTO booking.event_queue (kind, entity, entity_id, user_id, payload)"
			" SELECT 'booking.created', 'booking', x.id::text, booking.current_user_id(),"
			"        booking.booking_event_payload(x)"
			"   FROM new_rows x ORDER BY x.id";
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		sql = "INSERT INTO booking.event_queue (kind, entity, entity_id, user_id, payload)"
			" SELECT 'booking.deleted', 'booking', x.id::text, booking.current_user_id(),"
			"        booking.booking_event_payload(x)"
			"   FROM old_rows x ORDER BY x.id";
	else
		sql = "INSERT INTO booking.event_queue (kind, entity, entity_id, user_id, payload)"
			" SELECT c.kind, 'booking', c.id::text, booking.current_user_id(),"
			"        c.payload || CASE WHEN c.kind = 'booking.rescheduled'"
			"                          THEN jsonb_build_object('previous', jsonb_build_object('room_id', c.old_room_id,"
			"                               'starts_at', c.old_starts_at, 'ends_at', c.old_ends_at))"
			"                          ELSE '{}' END"
			"   FROM (SELECT n.id, booking.booking_event_payload(n) AS payload, o.room_id AS old_room_id,"
			"                o.starts_at AS old_starts_at, o.ends_at AS old_ends_at,"
			"                CASE WHEN n.status <> o.status THEN 'booking.' || n.status"
			"                     WHEN (n.room_id, n.starts_at, n.ends_at) IS DISTINCT FROM (o.room_id, o.starts_at, o.ends_at)"
			"                     THEN 'booking.rescheduled' END AS kind"
			"           FROM new_rows n JOIN old_rows o ON o.id = n.id) c"
			"  WHERE c.kind IS NOT NULL"
			"  ORDER BY c.id";

	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(s->queue));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "booking.event_queue not found");
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);

	/* current_user_id() reads the claims, which the change of user leaves alone. */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(owner, save_sec_context | SECURITY_LOCAL_USERID_CHANGE | SECURITY_NOFORCE_RLS);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_register_trigger_data(trigdata) != SPI_OK_TD_REGISTER)
		elog(ERROR, "SPI_register_trigger_data failed");
	rc = SPI_execute(sql, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "queueing the events failed: %s", SPI_result_code_string(rc));
	if (SPI_processed > 0)
		pgb_wake_publisher_at_commit();
	SPI_finish();
	SetUserIdAndSecContext(save_userid, save_sec_context);
}

/*
 * AFTER INSERT / UPDATE / DELETE, FOR EACH STATEMENT, on booking.bookings,
 * REFERENCING NEW TABLE AS new_rows / OLD TABLE AS old_rows.
 */
Datum
pgb_booking_events(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TriggerEvent event;
	const EventsSchema *s;
	Tuplestorestate *rows;
	Tuplestorestate *pairs = NULL;
	TupleDesc	desc;
	TupleTableSlot *slot;
	TupleTableSlot *pslot = NULL;
	int			readptr = -1;
	int			preadptr = -1;
	bool		is_insert;
	bool		is_update;
	QueueWriter *w;
	MemoryContext rowcxt;
	MemoryContext old;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "booking_events: not called by trigger manager");
	event = trigdata->tg_event;
	if (!TRIGGER_FIRED_AFTER(event) || TRIGGER_FIRED_FOR_ROW(event))
		elog(ERROR, "booking_events: must be fired after the statement");
	is_insert = TRIGGER_FIRED_BY_INSERT(event);
	is_update = TRIGGER_FIRED_BY_UPDATE(event);
	if (!is_insert && !is_update && !TRIGGER_FIRED_BY_DELETE(event))
		elog(ERROR, "booking_events: fired for INSERT, UPDATE or DELETE only");
	rows = (is_insert || is_update) ? trigdata->tg_newtable : trigdata->tg_oldtable;
	if (is_update)
		pairs = trigdata->tg_oldtable;
	if (rows == NULL || (is_update && pairs == NULL))
		elog(ERROR, "booking_events: needs REFERENCING OLD TABLE AS old_rows / NEW TABLE AS new_rows");

	s = events_schema_for(trigdata->tg_relation);
	desc = RelationGetDescr(trigdata->tg_relation);
	slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	if (pairs != NULL)
		pslot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);

	if (!rows_in_order(rows, pairs, slot, pslot, &readptr, &preadptr, s))
	{
		ExecDropSingleTupleTableSlot(slot);
		if (pslot != NULL)
			ExecDropSingleTupleTableSlot(pslot);
		queue_by_sql(trigdata, s);
		return PointerGetDatum(NULL);
	}

	w = queue_open(s);
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "pg_booking event row", ALLOCSET_SMALL_SIZES);
	rows_rewind(rows, &readptr);
	if (pairs != NULL)
		rows_rewind(pairs, &preadptr);
	for (;;)
	{
		bool		isnull;
		const char *kind;
		TupleTableSlot *previous = NULL;

		tuplestore_select_read_pointer(rows, readptr);
		if (!tuplestore_gettupleslot(rows, true, false, slot))
			break;
		old = MemoryContextSwitchTo(rowcxt);
		if (is_insert)
			kind = "booking.created";
		else if (!is_update)
			kind = "booking.deleted";
		else
		{
			tuplestore_select_read_pointer(pairs, preadptr);
			if (!tuplestore_gettupleslot(pairs, true, false, pslot))
				elog(ERROR, "booking_events: fewer old rows than new ones");
			if (text_differs(slot, pslot, s->b_status))
				kind = psprintf("booking.%s",
								TextDatumGetCString(slot_getattr(slot, s->b_status, &isnull)));
			else if (!same_int8(slot, pslot, s->b_room_id) ||
					 !same_int8(slot, pslot, s->b_starts_at) ||
					 !same_int8(slot, pslot, s->b_ends_at))
			{
				kind = "booking.rescheduled";
				previous = pslot;
			}
			else
				kind = NULL;	/* a retitle is no event */
		}
		if (kind != NULL)
		{
			char		id[MAXINT8LEN + 1];

			pg_lltoa(booking_id_of(slot, s, &isnull), id);
			queue_event(w, kind, "booking", id, booking_payload(s, slot, previous));
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(rowcxt);
	}
	MemoryContextDelete(rowcxt);
	queue_close(w);
	ExecDropSingleTupleTableSlot(slot);
	if (pslot != NULL)
		ExecDropSingleTupleTableSlot(pslot);
	return PointerGetDatum(NULL);
}

/* --- reservations */

static void
push_int4(JsonbParseState **st, const char *key, TupleTableSlot *slot, AttrNumber att)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, att, &isnull);
	JsonbValue	v;

	push_key(st, key);
	if (isnull)
		return push_null(st);
	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(DatumGetInt32(d));
	(void) pushJsonbValue(st, WJB_VALUE, &v);
}

/* a date as to_jsonb() writes it ("2099-06-01", "infinity") */
static void
push_date(JsonbParseState **st, const char *key, TupleTableSlot *slot, AttrNumber att)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, att, &isnull);
	char		buf[MAXDATELEN + 1];

	push_key(st, key);
	if (isnull)
		return push_null(st);
	JsonEncodeDateTime(buf, d, DATEOID, NULL);
	push_string(st, pstrdup(buf), strlen(buf));
}

/*
 * booking.reservation_event_payload(): {"hotel_id", "room_type",
 * "owner_id", "status", "arrival_date", "stay_length"}, plus "previous"
 * {room_type, arrival_date, stay_length} of the old row when given (a
 * change).  Never the guest name.
 */
static Jsonb *
reservation_payload(const EventsSchema *s, TupleTableSlot *row, TupleTableSlot *previous)
{
	JsonbParseState *st = NULL;
	JsonbValue *res;

	(void) pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	push_int8(&st, "hotel_id", row, s->r_hotel_id);
	push_text(&st, "room_type", row, s->r_room_type);
	push_int8(&st, "owner_id", row, s->r_user_id);
	push_text(&st, "status", row, s->r_status);
	push_date(&st, "arrival_date", row, s->r_arrival_date);
	push_int4(&st, "stay_length", row, s->r_stay_length);
	if (previous != NULL)
	{
		push_key(&st, "previous");
		(void) pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
		push_text(&st, "room_type", previous, s->r_room_type);
		push_date(&st, "arrival_date", previous, s->r_arrival_date);
		push_int4(&st, "stay_length", previous, s->r_stay_length);
		(void) pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	}
	res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

/* NOT DISTINCT, for date and integer (4-byte values compared by value). */
static bool
same_int4(TupleTableSlot *a, TupleTableSlot *b, AttrNumber att)
{
	bool		na;
	bool		nb;
	Datum		da = slot_getattr(a, att, &na);
	Datum		db = slot_getattr(b, att, &nb);

	if (na || nb)
		return na == nb;
	return DatumGetInt32(da) == DatumGetInt32(db);
}

/* NOT DISTINCT, for text (deterministic collation: bytes). */
static bool
same_text(TupleTableSlot *a, TupleTableSlot *b, AttrNumber att)
{
	bool		na;
	bool		nb;

	(void) slot_getattr(a, att, &na);
	(void) slot_getattr(b, att, &nb);
	if (na || nb)
		return na == nb;
	return !text_differs(a, b, att);
}

/* The reservation's id (uuid), NULL when it has none. */
static pg_uuid_t *
reservation_id_of(TupleTableSlot *slot, const EventsSchema *s)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, s->r_id, &isnull);

	return isnull ? NULL : DatumGetUUIDP(d);
}

/*
 * UPDATE: is each old row the previous version of the new row at the same
 * place?  (What the SQL's join on id finds; the executor captures them
 * pairwise, so this holds unless something unforeseen wrote the tables.)
 */
static bool
reservations_paired(Tuplestorestate *rows, Tuplestorestate *pairs, TupleTableSlot *slot,
					TupleTableSlot *pslot, int *readptr, int *preadptr, const EventsSchema *s)
{
	bool		ok = true;

	rows_rewind(rows, readptr);
	rows_rewind(pairs, preadptr);
	for (;;)
	{
		bool		more;
		bool		pmore;
		pg_uuid_t  *id;
		pg_uuid_t  *pid;

		tuplestore_select_read_pointer(rows, *readptr);
		more = tuplestore_gettupleslot(rows, true, false, slot);
		tuplestore_select_read_pointer(pairs, *preadptr);
		pmore = tuplestore_gettupleslot(pairs, true, false, pslot);
		if (!more || !pmore)
		{
			ok = (more == pmore);
			break;
		}
		id = reservation_id_of(slot, s);
		pid = reservation_id_of(pslot, s);
		if (id == NULL || pid == NULL || memcmp(id, pid, UUID_LEN) != 0)
		{
			ok = false;
			break;
		}
	}
	ExecClearTuple(slot);
	ExecClearTuple(pslot);
	return ok;
}

/* The 1.1 SQL, for an UPDATE whose transition tables are not pairwise. */
static void
queue_reservations_by_sql(TriggerData *trigdata, const EventsSchema *s)
{
	const char *sql =
		"INSERT INTO booking.event_queue (kind, entity, entity_id, user_id, payload)"
		" SELECT c.kind, 'reservation', c.id::text, booking.current_user_id(),"
		"        c.payload || CASE WHEN c.kind = 'reservation.changed'"
		"                          THEN jsonb_build_object('previous', jsonb_build_object('room_type', c.old_room_type,"
		"                               'arrival_date', c.old_arrival_date, 'stay_length', c.old_stay_length))"
		"                          ELSE '{}' END"
		"   FROM (SELECT n.id, booking.reservation_event_payload(n) AS payload, o.room_type AS old_room_type,"
		"                o.arrival_date AS old_arrival_date, o.stay_length AS old_stay_length,"
		"                CASE WHEN n.status <> o.status THEN 'reservation.' || n.status"
		"                     WHEN (n.arrival_date, n.stay_length, n.room_type) IS DISTINCT FROM"
		"                          (o.arrival_date, o.stay_length, o.room_type)"
		"                     THEN 'reservation.changed' END AS kind"
		"           FROM new_rows n JOIN old_rows o ON o.id = n.id) c"
		"  WHERE c.kind IS NOT NULL";
	Oid			save_userid;
	int			save_sec_context;
	int			rc;
	HeapTuple	tup;
	Oid			owner;

	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(s->queue));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "booking.event_queue not found");
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(owner, save_sec_context | SECURITY_LOCAL_USERID_CHANGE | SECURITY_NOFORCE_RLS);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_register_trigger_data(trigdata) != SPI_OK_TD_REGISTER)
		elog(ERROR, "SPI_register_trigger_data failed");
	rc = SPI_execute(sql, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "queueing the events failed: %s", SPI_result_code_string(rc));
	if (SPI_processed > 0)
		pgb_wake_publisher_at_commit();
	SPI_finish();
	SetUserIdAndSecContext(save_userid, save_sec_context);
}

/*
 * booking.reservation_events(): AFTER INSERT / UPDATE / DELETE, FOR EACH
 * STATEMENT, on booking.reservations, REFERENCING NEW TABLE AS new_rows /
 * OLD TABLE AS old_rows.  The events the 1.1 SQL wrote (it had no order:
 * they are queued in the order of the transition table):
 *   INSERT   reservation.created        payload of the new row
 *   DELETE   reservation.deleted        payload of the old row
 *   UPDATE   reservation.<new status>   when the status changed
 *            reservation.changed        else when arrival, length or room
 *                                       type changed, with "previous":
 *                                       {room_type, arrival_date, stay_length}
 *            (nothing for any other change: a check-in time, a price)
 * each with the caller as user_id, written row by row as for bookings (no
 * statement size limit; the nightly checkout's batches pay no SQL per row).
 */
Datum
pgb_reservation_events(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TriggerEvent event;
	const EventsSchema *s;
	Tuplestorestate *rows;
	Tuplestorestate *pairs = NULL;
	TupleDesc	desc;
	TupleTableSlot *slot;
	TupleTableSlot *pslot = NULL;
	int			readptr = -1;
	int			preadptr = -1;
	bool		is_insert;
	bool		is_update;
	QueueWriter *w;
	MemoryContext rowcxt;
	MemoryContext old;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "reservation_events: not called by trigger manager");
	event = trigdata->tg_event;
	if (!TRIGGER_FIRED_AFTER(event) || TRIGGER_FIRED_FOR_ROW(event))
		elog(ERROR, "reservation_events: must be fired after the statement");
	is_insert = TRIGGER_FIRED_BY_INSERT(event);
	is_update = TRIGGER_FIRED_BY_UPDATE(event);
	if (!is_insert && !is_update && !TRIGGER_FIRED_BY_DELETE(event))
		elog(ERROR, "reservation_events: fired for INSERT, UPDATE or DELETE only");
	rows = (is_insert || is_update) ? trigdata->tg_newtable : trigdata->tg_oldtable;
	if (is_update)
		pairs = trigdata->tg_oldtable;
	if (rows == NULL || (is_update && pairs == NULL))
		elog(ERROR, "reservation_events: needs REFERENCING OLD TABLE AS old_rows / NEW TABLE AS new_rows");

	s = reservation_events_schema_for(trigdata->tg_relation);
	desc = RelationGetDescr(trigdata->tg_relation);
	slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	if (pairs != NULL)
	{
		pslot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
		if (!reservations_paired(rows, pairs, slot, pslot, &readptr, &preadptr, s))
		{
			ExecDropSingleTupleTableSlot(slot);
			ExecDropSingleTupleTableSlot(pslot);
			queue_reservations_by_sql(trigdata, s);
			return PointerGetDatum(NULL);
		}
	}

	w = queue_open(s);
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "pg_booking event row", ALLOCSET_SMALL_SIZES);
	rows_rewind(rows, &readptr);
	if (pairs != NULL)
		rows_rewind(pairs, &preadptr);
	for (;;)
	{
		bool		isnull;
		const char *kind;
		TupleTableSlot *previous = NULL;
		pg_uuid_t  *id;

		tuplestore_select_read_pointer(rows, readptr);
		if (!tuplestore_gettupleslot(rows, true, false, slot))
			break;
		old = MemoryContextSwitchTo(rowcxt);
		if (is_insert)
			kind = "reservation.created";
		else if (!is_update)
			kind = "reservation.deleted";
		else
		{
			tuplestore_select_read_pointer(pairs, preadptr);
			if (!tuplestore_gettupleslot(pairs, true, false, pslot))
				elog(ERROR, "reservation_events: fewer old rows than new ones");
			if (text_differs(slot, pslot, s->r_status))
				kind = psprintf("reservation.%s",
								TextDatumGetCString(slot_getattr(slot, s->r_status, &isnull)));
			else if (!same_int4(slot, pslot, s->r_arrival_date) ||
					 !same_int4(slot, pslot, s->r_stay_length) ||
					 !same_text(slot, pslot, s->r_room_type))
			{
				kind = "reservation.changed";
				previous = pslot;
			}
			else
				kind = NULL;
		}
		if (kind != NULL)
		{
			id = reservation_id_of(slot, s);
			if (id == NULL)
				elog(ERROR, "reservation_events: a reservation without an id");
			queue_event(w, kind, "reservation",
						DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id))),
						reservation_payload(s, slot, previous));
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(rowcxt);
	}
	MemoryContextDelete(rowcxt);
	queue_close(w);
	ExecDropSingleTupleTableSlot(slot);
	if (pslot != NULL)
		ExecDropSingleTupleTableSlot(pslot);
	return PointerGetDatum(NULL);
}
