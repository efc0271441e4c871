/*
 * events_publisher.c — the background worker that publishes events.
 *
 * Writers append to booking.event_queue in their own transaction and call
 * booking.wake_event_publisher(), which arranges for this worker's latch to
 * be set when (and only if) the transaction commits.  The worker then calls
 * booking.publish_events() until the queue is empty, one transaction per
 * call: that SQL function moves committed queue rows into booking.events
 * under a table lock, so event ids become visible in order (why that matters
 * is in the 1.1 upgrade script, section "events in commit order").  Without
 * a wake-up it still looks every second, so nothing waits for long if a
 * latch is missed (a writer in a database the worker does not serve, or the
 * worker restarting).
 *
 * The worker is started by the checkout launcher (checkout_worker.c) in
 * pg_booking.checkout_database, so it never runs on a standby and waits
 * quietly until the extension, at a version that has publish_events, is
 * installed there.
 *
 * Shared memory holds one latch pointer, set by the worker at start and
 * cleared at exit, under a spinlock; a writer reads it at commit.  A stale
 * pointer is harmless: it is a PGPROC's latch, which lives as long as the
 * server, and a spurious wake-up only costs the new owner one loop.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "parser/parse_func.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/snapmgr.h"

#include "pg_booking.h"

PGDLLEXPORT void pgb_events_publisher_main(Datum main_arg);
PG_FUNCTION_INFO_V1(pgb_wake_event_publisher);

#define PUBLISH_BATCH		10000
#define IDLE_POLL_MS		1000
#define WAITING_POLL_MS		(10 * 1000)
/*
 * On a Citus coordinator the publisher also gathers the events its worker
 * nodes published (booking.gather_worker_events), and commits there do not
 * wake it: it looks this often.
 */
#define COORDINATOR_POLL_MS	100

static bool on_citus_coordinator = false;

typedef struct PublisherShared
{
	slock_t		mutex;
	Latch	   *latch;			/* the running publisher's, or NULL */
} PublisherShared;

static PublisherShared *publisher = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* This backend's transaction will wake the publisher at commit. */
static bool wake_at_commit = false;
static bool xact_callback_registered = false;

static void
publisher_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(PublisherShared)));
}

static void
publisher_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	/* Reset in case this is a restart within the postmaster. */
	publisher = NULL;
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	publisher = ShmemInitStruct("pg_booking events publisher", sizeof(PublisherShared), &found);
	if (!found)
	{
		SpinLockInit(&publisher->mutex);
		publisher->latch = NULL;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* From _PG_init, when preloaded. */
void
pgb_events_publisher_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = publisher_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = publisher_shmem_startup;
}

static void
wake_publisher_at_commit(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_at_commit && publisher != NULL)
			{
				Latch	   *latch;

				SpinLockAcquire(&publisher->mutex);
				latch = publisher->latch;
				SpinLockRelease(&publisher->mutex);
				if (latch != NULL)
					SetLatch(latch);
			}
			wake_at_commit = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_at_commit = false;
			break;
		default:
			break;
	}
}

/*
 * booking.wake_event_publisher(): the events a statement queued should be
 * published when the transaction commits.  Without shared memory (not
 * preloaded) there is no publisher to wake: events wait for a call of
 * booking.publish_events().
 */
Datum
pgb_wake_event_publisher(PG_FUNCTION_ARGS)
{
	pgb_wake_publisher_at_commit();
	PG_RETURN_VOID();
}

/* The same, from C (the events triggers, events.c). */
void
pgb_wake_publisher_at_commit(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(wake_publisher_at_commit, NULL);
		xact_callback_registered = true;
	}
	wake_at_commit = true;
}

static void
forget_latch(int code, Datum arg)
{
	SpinLockAcquire(&publisher->mutex);
	if (publisher->latch == MyLatch)
		publisher->latch = NULL;
	SpinLockRelease(&publisher->mutex);
}

/*
 * Whether this database has an extension version with publish_events (the
 * library may be newer than the installed SQL: then there is nothing to do).
 */
static bool
publisher_ready(void)
{
	bool		ready = false;

	StartTransactionCommand();
	if (OidIsValid(get_extension_oid("pg_booking", true)))
	{
		List	   *name = list_make2(makeString("booking"), makeString("publish_events"));
		Oid			argtypes[1] = {INT4OID};

		ready = OidIsValid(LookupFuncName(name, 1, argtypes, true));
	}
	CommitTransactionCommand();
	return ready;
}

/* One publish, in its own transaction; how many events it moved. */
static int64
publish_once(void)
{
	int64		n = 0;
	bool		isnull;
	int			rc;
	Datum		d;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "pg_booking events: publishing");
	rc = SPI_execute("SELECT booking.publish_events(" CppAsString2(PUBLISH_BATCH) ")::int8", false, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "pg_booking events: publish_events failed: %s", SPI_result_code_string(rc));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
		n = DatumGetInt64(d);
	on_citus_coordinator = pgb_citus_node() == PGB_CITUS_COORDINATOR;
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return n;
}

/* Publish until the queue is empty; an ERROR is logged and retried later. */
static void
publish_all(MemoryContext cxt)
{
	PG_TRY();
	{
		while (publish_once() >= PUBLISH_BATCH)
			CHECK_FOR_INTERRUPTS();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		pgstat_report_activity(STATE_IDLE, NULL);
	}
	PG_END_TRY();
}

void
pgb_events_publisher_main(Datum main_arg)
{
	char		database[BGW_EXTRALEN];
	MemoryContext loop_cxt;
	bool		said_waiting = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	strlcpy(database, MyBgworkerEntry->bgw_extra, sizeof(database));
	BackgroundWorkerInitializeConnection(database, NULL, 0);
	pgstat_report_appname("pg_booking events");

	SpinLockAcquire(&publisher->mutex);
	publisher->latch = MyLatch;
	SpinLockRelease(&publisher->mutex);
	on_shmem_exit(forget_latch, (Datum) 0);

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "pg_booking events", ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		long		sleep_ms = IDLE_POLL_MS;
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (strcmp(database, pgb_checkout_database) != 0)
			proc_exit(0);		/* a dynamic worker: the launcher starts the next one */

		old = MemoryContextSwitchTo(loop_cxt);
		if (!publisher_ready())
		{
			if (!said_waiting)
				ereport(LOG,
						(errmsg("pg_booking events: no publish_events in \"%s\" (extension missing or older than 1.1), waiting",
								database)));
			said_waiting = true;
			sleep_ms = WAITING_POLL_MS;
		}
		else
		{
			said_waiting = false;
			/* Reset before publishing: a commit during the publish wakes us again. */
			ResetLatch(MyLatch);
			publish_all(loop_cxt);
			if (on_citus_coordinator)
				sleep_ms = COORDINATOR_POLL_MS;
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(loop_cxt);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms, PG_WAIT_EXTENSION);
	}
}
