/*
 * common.c — helpers the concerns share, written once: saved SPI plans,
 * columns looked up by name, and the extension's own advisory lock on a
 * checkout date, and the extension's one relcache callback.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/date.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/builtins.h"
#include "utils/rel.h"

#include "pg_booking.h"

/*
 * A plan prepared on first use and kept for the backend's life (the
 * statements are fixed texts over the extension's own tables).
 */
SPIPlanPtr
pgb_keep_plan(SPIPlanPtr *cache, const char *sql, int nargs, Oid *argtypes)
{
	if (*cache == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql, SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		*cache = plan;
	}
	return *cache;
}

/*
 * The attribute number of a column of ours, by name (the syscache, so it
 * also works outside SPI); a missing one is a broken installation.
 */
AttrNumber
pgb_attnum(Oid relid, const char *name)
{
	AttrNumber	attnum = get_attnum(relid, name);

	if (attnum == InvalidAttrNumber)
		elog(ERROR, "column \"%s\" not found in \"%s\"", name, get_rel_name(relid));
	return attnum;
}

/*
 * Is rel a Citus shard of booking.<table> (Citus names a shard
 * <table>_<shard id>, in the table's schema; docs/citus.md)?  table NULL:
 * a shard of any of our tables.  Only a database with Citus's catalog has
 * shards, so a table of ours that merely ends in digits is none.
 */
bool
pgb_is_citus_shard(Relation rel, const char *table)
{
	const char *name = RelationGetRelationName(rel);
	const char *digits;

	if (table != NULL)
	{
		size_t		len = strlen(table);

		if (strncmp(name, table, len) != 0 || name[len] != '_')
			return false;
		digits = name + len + 1;
	}
	else
	{
		digits = strrchr(name, '_');
		if (digits == NULL)
			return false;
		digits++;
	}
	if (*digits == '\0')
		return false;
	for (; *digits; digits++)
		if (*digits < '0' || *digits > '9')
			return false;
	return RelationGetNamespace(rel) == get_namespace_oid("booking", false) &&
		OidIsValid(get_relname_relid("pg_dist_partition", PG_CATALOG_NAMESPACE));
}

/*
 * What this node is to Citus: not a Citus database (no Citus catalog here),
 * the coordinator (local group 0; also a single node with citus), or a
 * worker node.  Read from pg_dist_local_group directly (one row; no SPI, so
 * callers need not be inside one): a database without Citus pays one
 * syscache probe.  The checkout worker stays idle on a worker node, the
 * limiter counts on the coordinator, and the coordinator has no bookings of
 * its own to look at (docs/citus.md).  Inside a transaction.
 */
PgbCitusNode
pgb_citus_node(void)
{
	Oid			relid = get_relname_relid("pg_dist_local_group", PG_CATALOG_NAMESPACE);
	Relation	rel;
	SysScanDesc scan;
	HeapTuple	tup;
	PgbCitusNode kind = PGB_CITUS_COORDINATOR;

	if (!OidIsValid(relid))
		return PGB_NOT_CITUS;
	rel = table_open(relid, AccessShareLock);
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	if (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool		isnull;
		Datum		groupid = heap_getattr(tup, pgb_attnum(relid, "groupid"), RelationGetDescr(rel), &isnull);

		if (!isnull && DatumGetInt32(groupid) != 0)
			kind = PGB_CITUS_WORKER;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return kind;
}

PG_FUNCTION_INFO_V1(pgb_citus_node_sql);

/* booking.citus_node(): NULL, 'coordinator' or 'worker' (pgb_citus_node). */
Datum
pgb_citus_node_sql(PG_FUNCTION_ARGS)
{
	switch (pgb_citus_node())
	{
		case PGB_CITUS_COORDINATOR:
			PG_RETURN_TEXT_P(cstring_to_text("coordinator"));
		case PGB_CITUS_WORKER:
			PG_RETURN_TEXT_P(cstring_to_text("worker"));
		case PGB_NOT_CITUS:
			break;
	}
	PG_RETURN_NULL();
}

/* A column of a row version of rel, by name. */
Datum
pgb_column(Relation rel, HeapTuple tup, const char *name, bool *isnull)
{
	return heap_getattr(tup, pgb_attnum(RelationGetRelid(rel), name), RelationGetDescr(rel), isnull);
}

/*
 * booking.checkout_date_lock(date): serialise the starters of one business
 * date's checkout (the worker and a manual run) until commit, in the
 * extension's own advisory lock class, so no pg_advisory_lock() of a user
 * can collide with it.
 */
PG_FUNCTION_INFO_V1(pgb_checkout_date_lock);

Datum
pgb_checkout_date_lock(PG_FUNCTION_ARGS)
{
	DateADT		d = PG_GETARG_DATEADT(0);
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) d, 0, PGB_LOCK_CHECKOUT_DATE);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
	PG_RETURN_VOID();
}

/*
 * One relcache callback slot for the whole extension.  PostgreSQL has ten
 * per backend (MAX_RELCACHE_CALLBACKS), shared with every other library:
 * Citus alone takes most of them, and a backend that loads both ran out
 * ("out of relcache_callback_list slots", FATAL) once each of our caches
 * registered its own.  So our caches register here, and one callback calls
 * them all.
 */
#define PGB_MAX_RELCACHE_CALLBACKS 16

static RelcacheCallbackFunction pgb_relcache_callbacks[PGB_MAX_RELCACHE_CALLBACKS];
static int	pgb_nrelcache_callbacks = 0;

static void
pgb_relcache_dispatch(Datum arg, Oid relid)
{
	for (int i = 0; i < pgb_nrelcache_callbacks; i++)
		pgb_relcache_callbacks[i] ((Datum) 0, relid);
}

void
pgb_register_relcache_callback(RelcacheCallbackFunction func)
{
	if (pgb_nrelcache_callbacks == PGB_MAX_RELCACHE_CALLBACKS)
		elog(FATAL, "pg_booking: out of relcache callback slots");
	if (pgb_nrelcache_callbacks == 0)
		CacheRegisterRelcacheCallback(pgb_relcache_dispatch, (Datum) 0);
	pgb_relcache_callbacks[pgb_nrelcache_callbacks++] = func;
}
