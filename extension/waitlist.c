/*
 * waitlist.c — the room lock and the cheap question the waitlist asks on
 * every booking write (1.1, issue 14; the rules are SQL, section "the
 * waitlist" of pg_booking--1.0--1.1.sql).
 *
 * Before a booking is placed, the waiting entries its time touches are
 * promoted first (booking.waitlist_first), so that a newcomer never takes a
 * slot that an expired hold freed while someone was queued for it.  Almost
 * every room has an empty queue almost always, and a PL/pgSQL trigger that
 * looks costs a booking insert more than every other trigger together (its
 * call, a SECURITY DEFINER function, three queries).  So the trigger's WHEN
 * asks booking.room_has_waiters(room_id) first: it takes the room's lock
 * (the one the conflict check takes next anyway, so nothing is added to the
 * order of a room's writers) and then probes the queue's index.  Under the
 * lock it sees every entry whose join has committed (a join holds that lock
 * until it commits), so "no waiter" is exact, not a guess: the PL/pgSQL
 * trigger runs only when there is a queue to serve.  The scan is a direct
 * index probe, not SQL: row-level security must not hide another user's
 * entry from it, and it must not cost a plan.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "pg_booking.h"

PG_FUNCTION_INFO_V1(pgb_lock_room);
PG_FUNCTION_INFO_V1(pgb_room_has_waiters);

/*
 * booking.lock_room(room_id): take the room's lock until the transaction
 * ends, the very lock the conflict check takes.  The waitlist takes it
 * before it reads a room's queue, so a join, a promotion and a new booking
 * of one room go one after the other, in the same order as the room's
 * bookings.  Taking it again later (the check does) costs nothing.
 */
Datum
pgb_lock_room(PG_FUNCTION_ARGS)
{
	pgb_lock_room_until_commit(PG_GETARG_INT64(0));
	PG_RETURN_VOID();
}

/*
 * booking.room_has_waiters(room_id): under the room's lock, does anyone wait
 * in its queue (an entry with status 'waiting')?
 *
 * The index is waitlist_room_waiting_idx, (room_id, starts_at) WHERE status
 * = 'waiting'.  SnapshotSelf, as in the conflict check: every committed
 * entry and this transaction's own, whatever the statement's snapshot.  An
 * entry leaves the index's predicate only by an update that makes a new row
 * version (status is in the predicate, so the update is never HOT), but the
 * old version's index entry stays until vacuum, so the row found is checked
 * to be waiting.  A database without the table (Citus's shell of it on a
 * worker has no rows) answers false.
 */
Datum
pgb_room_has_waiters(PG_FUNCTION_ARGS)
{
	int64		room_id = PG_GETARG_INT64(0);
	Oid			nsp = get_namespace_oid("booking", false);
	Oid			relid = get_relname_relid("waitlist", nsp);
	Oid			indexid = get_relname_relid("waitlist_room_waiting_idx", nsp);
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tup;
	bool		found = false;

	pgb_lock_room_until_commit(room_id);
	if (!OidIsValid(relid) || !OidIsValid(indexid))
		PG_RETURN_BOOL(false);

	rel = table_open(relid, AccessShareLock);
	ScanKeyInit(&key, pgb_attnum(relid, "room_id"), BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(room_id));
	scan = systable_beginscan(rel, indexid, true, SnapshotSelf, 1, &key);
	while (!found && HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool		isnull;
		Datum		status = pgb_column(rel, tup, "status", &isnull);

		found = !isnull && strcmp(TextDatumGetCString(status), "waiting") == 0;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	PG_RETURN_BOOL(found);
}
