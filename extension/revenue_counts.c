/*
 * revenue_counts.c — the revenue counters' trigger skips the updates that
 * sell nothing new.
 *
 * booking.count_revenue_nights() is the statement trigger that keeps
 * booking.revenue_night_counts exact (section "hotel KPIs" of the 1.1
 * script).  Its deltas stay in SQL (booking.count_revenue_nights_sql(), the
 * former body: booking.revenue_nights_of() is the one rule of which nights a
 * stay sells).  Most UPDATEs of reservations change none of what that rule
 * reads: a check-in, and every stay the nightly checkout completes
 * (confirmed or checked_in -> completed, both selling, same nights, same
 * prices).  For those the SQL still joined new_rows to old_rows (two sorts
 * on the uuid) to find that nothing moved: about a sixth of the checkout's
 * time.  Here an UPDATE's transition tables are read pairwise (the executor
 * captures old and new rows side by side) and, when every pair leaves
 * hotel, room type, arrival, held nights, whether the status sells and the
 * prices as they were, nothing is written, as the SQL would have written
 * nothing.  Anything else (a pair that changed, tables that do not pair up,
 * INSERT, DELETE, TRUNCATE) runs the SQL with the same trigger data, in the
 * writer's transaction, as before.
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "nodes/makefuncs.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/tuplestore.h"
#include "utils/uuid.h"

#include "pg_booking.h"

PG_FUNCTION_INFO_V1(pgb_count_revenue_nights);

typedef struct PairColumns
{
	AttrNumber	id;
	AttrNumber	hotel_id;
	AttrNumber	room_type;
	AttrNumber	arrival_date;
	AttrNumber	held_until;
	AttrNumber	status;
	AttrNumber	nightly_prices;
} PairColumns;

static Oid
booking_function(const char *name, int nargs, Oid *argtypes)
{
	return LookupFuncName(list_make2(makeString("booking"), makeString((char *) name)),
						  nargs, argtypes, false);
}

/* whether a status sells, by booking.reservation_sells(), asked once per status and statement */
typedef struct SellsMemo
{
	FmgrInfo	fn;
	int			n;
	text	   *status[8];
	bool		sells[8];
} SellsMemo;

static bool
status_sells(SellsMemo *memo, text *status)
{
	int			i;
	bool		sells;

	for (i = 0; i < memo->n; i++)
		if (VARSIZE_ANY_EXHDR(memo->status[i]) == VARSIZE_ANY_EXHDR(status) &&
			memcmp(VARDATA_ANY(memo->status[i]), VARDATA_ANY(status), VARSIZE_ANY_EXHDR(status)) == 0)
			return memo->sells[i];
	sells = DatumGetBool(FunctionCall1Coll(&memo->fn, DEFAULT_COLLATION_OID, PointerGetDatum(status)));
	if (memo->n < lengthof(memo->status))
	{
		memo->status[memo->n] = DatumGetTextPCopy(PointerGetDatum(status));
		memo->sells[memo->n] = sells;
		memo->n++;
	}
	return sells;
}

/* a = b for columns that are not NULL (NULL: not the same, as SQL's = says) */
static bool
same_value(TupleTableSlot *a, TupleTableSlot *b, AttrNumber att, bool by_text)
{
	bool		na;
	bool		nb;
	Datum		da = slot_getattr(a, att, &na);
	Datum		db = slot_getattr(b, att, &nb);

	if (na || nb)
		return false;
	if (by_text)
	{
		/* deterministic collation: equal text is equal bytes */
		text	   *ta = DatumGetTextPP(da);
		text	   *tb = DatumGetTextPP(db);

		return VARSIZE_ANY_EXHDR(ta) == VARSIZE_ANY_EXHDR(tb) &&
			memcmp(VARDATA_ANY(ta), VARDATA_ANY(tb), VARSIZE_ANY_EXHDR(ta)) == 0;
	}
	return da == db;			/* int8 and date, passed by value */
}

/*
 * The SQL's "same" test of one pair: hotel, room type, arrival and held
 * nights equal, the status selling on both sides or on neither, the prices
 * NOT DISTINCT.
 */
static bool
pair_unchanged(TupleTableSlot *n, TupleTableSlot *o, const PairColumns *c, SellsMemo *memo)
{
	bool		nn;
	bool		on;
	Datum		dn;
	Datum		dobj;

	if (!same_value(n, o, c->hotel_id, false) || !same_value(n, o, c->room_type, true) ||
		!same_value(n, o, c->arrival_date, false) || !same_value(n, o, c->held_until, false))
		return false;
	if (!same_value(n, o, c->status, true))
	{
		dn = slot_getattr(n, c->status, &nn);
		dobj = slot_getattr(o, c->status, &on);
		if (status_sells(memo, DatumGetTextPP(dn)) != status_sells(memo, DatumGetTextPP(dobj)))
			return false;
	}
	dn = slot_getattr(n, c->nightly_prices, &nn);
	dobj = slot_getattr(o, c->nightly_prices, &on);
	if (nn || on)
		return nn == on;
	return DatumGetBool(DirectFunctionCall2(jsonb_eq, dn, dobj));
}

/*
 * UPDATE only: does every new row pair with its old version (same id, same
 * place) and leave what is sold as it was?
 */
static bool
update_sells_nothing_new(TriggerData *trigdata)
{
	Relation	rel = trigdata->tg_relation;
	TupleDesc	desc = RelationGetDescr(rel);
	Tuplestorestate *rows = trigdata->tg_newtable;
	Tuplestorestate *pairs = trigdata->tg_oldtable;
	TupleTableSlot *n;
	TupleTableSlot *o;
	PairColumns c;
	SellsMemo	memo;
	MemoryContext cxt;
	MemoryContext old;
	Oid			argtypes[1] = {TEXTOID};
	int			rp;
	int			pp;
	bool		unchanged = true;

	if (rows == NULL || pairs == NULL)
		return false;
	cxt = AllocSetContextCreate(CurrentMemoryContext, "pg_booking revenue pairs", ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(cxt);
	c.id = pgb_attnum(RelationGetRelid(rel), "id");
	c.hotel_id = pgb_attnum(RelationGetRelid(rel), "hotel_id");
	c.room_type = pgb_attnum(RelationGetRelid(rel), "room_type");
	c.arrival_date = pgb_attnum(RelationGetRelid(rel), "arrival_date");
	c.held_until = pgb_attnum(RelationGetRelid(rel), "held_until");
	c.status = pgb_attnum(RelationGetRelid(rel), "status");
	c.nightly_prices = pgb_attnum(RelationGetRelid(rel), "nightly_prices");
	memo.n = 0;
	fmgr_info_cxt(booking_function("reservation_sells", 1, argtypes), &memo.fn, cxt);

	n = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	o = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	/* read pointers of our own: the other triggers read the same tables */
	rp = tuplestore_alloc_read_pointer(rows, EXEC_FLAG_REWIND);
	pp = tuplestore_alloc_read_pointer(pairs, EXEC_FLAG_REWIND);
	tuplestore_select_read_pointer(rows, rp);
	tuplestore_rescan(rows);
	tuplestore_select_read_pointer(pairs, pp);
	tuplestore_rescan(pairs);
	for (;;)
	{
		bool		more;
		bool		pmore;
		bool		ni;
		bool		oi;
		Datum		nid;
		Datum		oldid;

		tuplestore_select_read_pointer(rows, rp);
		more = tuplestore_gettupleslot(rows, true, false, n);
		tuplestore_select_read_pointer(pairs, pp);
		pmore = tuplestore_gettupleslot(pairs, true, false, o);
		if (!more || !pmore)
		{
			unchanged = (more == pmore);
			break;
		}
		nid = slot_getattr(n, c.id, &ni);
		oldid = slot_getattr(o, c.id, &oi);
		if (ni || oi || memcmp(DatumGetUUIDP(nid), DatumGetUUIDP(oldid), UUID_LEN) != 0 ||
			!pair_unchanged(n, o, &c, &memo))
		{
			unchanged = false;
			break;
		}
	}
	ExecDropSingleTupleTableSlot(n);
	ExecDropSingleTupleTableSlot(o);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	return unchanged;
}

/*
 * AFTER INSERT / UPDATE / DELETE (transition tables) and TRUNCATE, FOR EACH
 * STATEMENT, on booking.reservations.
 */
Datum
pgb_count_revenue_nights(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	FmgrInfo	flinfo;
	LOCAL_FCINFO(sqlfc, 0);

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "count_revenue_nights: not called by trigger manager");
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event) || TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		elog(ERROR, "count_revenue_nights: must be fired after the statement");
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) && update_sells_nothing_new(trigdata))
		return PointerGetDatum(NULL);

	/* the deltas, in SQL, with the same trigger data */
	fmgr_info(booking_function("count_revenue_nights_sql", 0, NULL), &flinfo);
	InitFunctionCallInfoData(*sqlfc, &flinfo, 0, InvalidOid, (Node *) trigdata, NULL);
	(void) FunctionCallInvoke(sqlfc);
	return PointerGetDatum(NULL);
}
