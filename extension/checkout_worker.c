/*
 * checkout_worker.c — the nightly checkout as a background worker.
 *
 * Two processes, so that neither ever crash-loops:
 *
 *   launcher  registered from _PG_init (shared_preload_libraries), starts
 *             when recovery has finished (a standby runs nothing until it is
 *             promoted).  It connects to no database, so it can wait quietly
 *             for pg_booking.checkout_database to exist, then starts the
 *             checkout worker there (and the events publisher,
 *             events_publisher.c), and starts each again (after a pause) if
 *             it ever stops.
 *   worker    connected to that database.  It waits quietly until CREATE
 *             EXTENSION pg_booking has run there, then wakes at least every
 *             minute (so clock, DST and setting changes are noticed) and runs
 *             every business date due and not yet run, oldest first, of
 *             each calendar: the site's (meeting rooms) and every hotel's,
 *             each at its own local run time in its own time zone (issue
 *             15); days missed while the server was down are caught up,
 *             each once per hotel.
 *             The same minute tick expires holds and approval requests
 *             past their expiry (booking.expire_holds(), issue 14), releases
 *             no-shows (booking.release_no_shows()) and expires waitlist
 *             entries whose slot has started (booking.expire_waitlist(),
 *             which also offers every queue its free slots once more).
 *
 * The work itself is SQL (the checkout section of extension/pg_booking--1.0.sql): start a run,
 * batches in their own transactions until none is left, finish.  A run that
 * raises an ERROR is caught here, its error recorded in the history and
 * logged, and the worker goes on with the next date; a date with a recorded
 * run (finished or failed) is never run again by the worker.
 *
 * Signals: SIGHUP reloads the settings (a new database restarts the worker
 * there); SIGTERM ends either process through die(), with exit code 1, so
 * the postmaster restarts the launcher instead of forgetting it (exit code 0
 * would unregister it for good); postmaster death ends both.
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/pmsignal.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "pgtime.h"

#include "pg_booking.h"

PGDLLEXPORT void pgb_checkout_launcher_main(Datum main_arg);
PGDLLEXPORT void pgb_checkout_worker_main(Datum main_arg);

char	   *pgb_checkout_database = NULL;
char	   *pgb_checkout_time = NULL;
char	   *pgb_checkout_time_zone = NULL;
bool		pgb_checkout_release_no_shows = false;
int			pgb_checkout_test_clock_offset = 0;
char	   *pgb_checkout_test_clock = NULL;
int			pgb_series_no_show_limit = 3;

#define CHECKOUT_BATCH_SIZE		5000
#define MAX_SLEEP_MS			(60 * 1000)
#define LAUNCHER_RETRY_MS		(60 * 1000)
#define WAITING_POLL_MS			(10 * 1000)

/* Launcher: the database its current worker serves. */
static char serving_database[BGW_EXTRALEN];

static bool
check_checkout_time(char **newval, void **extra, GucSource source)
{
	int			h,
				m,
				s = 0;
	char		tail;

	if (*newval == NULL ||
		(sscanf(*newval, "%d:%d:%d%c", &h, &m, &s, &tail) != 3 &&
		 sscanf(*newval, "%d:%d%c", &h, &m, &tail) != 2) ||
		h < 0 || h > 23 || m < 0 || m > 59 || s < 0 || s > 59)
	{
		GUC_check_errdetail("The run time must be a local time of day such as \"03:00\" or \"03:00:30\".");
		return false;
	}
	return true;
}

/*
 * A time zone this server knows: the one rule of the setting below and of
 * every hotel's zone (booking.is_time_zone, issue 15).  pg_tzset caches the
 * zones it loaded, so a check costs a lookup, not a scan of the zone files
 * (pg_timezone_names reads them all).
 */
bool
pgb_time_zone_known(const char *name)
{
	return name != NULL && name[0] != '\0' && pg_tzset(name) != NULL;
}

PG_FUNCTION_INFO_V1(pgb_is_time_zone);

Datum
pgb_is_time_zone(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(pgb_time_zone_known(text_to_cstring(PG_GETARG_TEXT_PP(0))));
}

static bool
check_checkout_time_zone(char **newval, void **extra, GucSource source)
{
	if (!pgb_time_zone_known(*newval))
	{
		GUC_check_errdetail("\"%s\" is not a time zone known to this server (use an IANA name such as \"Europe/Lisbon\").",
							*newval ? *newval : "");
		return false;
	}
	return true;
}

void
pgb_checkout_define_settings(void)
{
	DefineCustomStringVariable("pg_booking.checkout_database",
							   "Database in which the nightly checkout runs.",
							   NULL,
							   &pgb_checkout_database,
							   "booking",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("pg_booking.checkout_time",
							   "Local time of day (HH:MM or HH:MM:SS) at which the nightly checkout runs.",
							   NULL,
							   &pgb_checkout_time,
							   "03:00",
							   PGC_SUSET,
							   0,
							   check_checkout_time, NULL, NULL);
	DefineCustomStringVariable("pg_booking.checkout_time_zone",
							   "Time zone (IANA name) of the nightly checkout's run time and business dates.",
							   NULL,
							   &pgb_checkout_time_zone,
							   "UTC",
							   PGC_SUSET,
							   0,
							   check_checkout_time_zone, NULL, NULL);
	DefineCustomBoolVariable("pg_booking.checkout_release_no_shows",
							 "Whether the nightly checkout marks stays never checked in as no-shows and releases their nights.",
							 NULL,
							 &pgb_checkout_release_no_shows,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);
	/*
	 * Read by booking.series_no_show_limit() (booking.release_no_shows(), on
	 * the minute tick); defined here so a wrong value is refused when set,
	 * not when the worker meets it.
	 */
	DefineCustomIntVariable("pg_booking.series_no_show_limit",
							"Consecutive no-shows of a recurring series that cancel its future occurrences (0: never).",
							NULL,
							&pgb_series_no_show_limit,
							3, 0, 1000,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);
	/*
	 * For tests only: the instant a session's checkout goes by
	 * (booking.checkout_clock(): which business dates are due), so the
	 * regression tests can run the checkout of fixed dates years ahead.
	 * Superuser only, like every way of running a date early.
	 */
	DefineCustomStringVariable("pg_booking.checkout_test_clock",
							   "For tests only: the instant (timestamptz) the checkout goes by in this session; empty means the real clock.",
							   NULL,
							   &pgb_checkout_test_clock,
							   "",
							   PGC_SUSET,
							   GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);
	/* For tests only: lets a test move the worker's clock instead of waiting days. */
	DefineCustomIntVariable("pg_booking.checkout_test_clock_offset",
							"For tests only: seconds added to the clock the checkout worker reads.",
							NULL,
							&pgb_checkout_test_clock_offset,
							0, -400 * 86400, 400 * 86400,
							PGC_SIGHUP,
							GUC_NOT_IN_SAMPLE | GUC_UNIT_S,
							NULL, NULL, NULL);
}

void
pgb_checkout_register_worker(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pg_booking");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "pgb_checkout_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "pg_booking checkout launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "pg_booking checkout launcher");
	RegisterBackgroundWorker(&worker);
}

static void
reload_settings_if_asked(void)
{
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

static void
wait_ms(long ms)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

/*
 * Whether a database exists.  Without a database of our own only the shared
 * catalogs can be read, and only by a plain heap scan (as autovacuum's
 * launcher lists databases).
 */
static bool
database_exists(const char *name)
{
	bool		found = false;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (!found && HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		found = (strcmp(NameStr(db->datname), name) == 0);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return found;
}

/*
 * The workers the launcher keeps running in pg_booking.checkout_database:
 * the nightly checkout, and the events publisher (events_publisher.c).
 */
typedef struct ServedWorker
{
	const char *function;
	const char *name;
	BackgroundWorkerHandle *handle;
} ServedWorker;

static ServedWorker served_workers[] = {
	{"pgb_checkout_worker_main", "pg_booking checkout", NULL},
	{"pgb_events_publisher_main", "pg_booking events", NULL},
};

static void
start_served_worker(ServedWorker *w)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pg_booking");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "%s", w->function);
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s", w->name);
	snprintf(worker.bgw_type, BGW_MAXLEN, "%s", w->name);
	strlcpy(worker.bgw_extra, pgb_checkout_database, BGW_EXTRALEN);
	worker.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&worker, &w->handle))
	{
		ereport(WARNING,
				(errmsg("pg_booking: could not start the background worker \"%s\"", w->name),
				 errhint("Raise max_worker_processes.")));
		w->handle = NULL;
	}
}

/*
 * One look at a served worker: forget it when it stopped; start it when
 * none runs.  Returns how long the launcher may sleep as far as this worker
 * is concerned.
 */
static long
tend_served_worker(ServedWorker *w)
{
	pid_t		pid;

	if (w->handle != NULL && GetBackgroundWorkerPid(w->handle, &pid) == BGWH_STOPPED)
	{
		/* Stopped (a new database, or it failed): start it again after a pause. */
		pfree(w->handle);
		w->handle = NULL;
		return strcmp(pgb_checkout_database, serving_database) != 0 ? 0 : LAUNCHER_RETRY_MS;
	}
	if (w->handle == NULL)
		start_served_worker(w);
	return MAX_SLEEP_MS;
}

void
pgb_checkout_launcher_main(Datum main_arg)
{
	char	   *waiting_for = NULL;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	for (;;)
	{
		long		sleep_ms = MAX_SLEEP_MS;
		bool		any_running = false;

		CHECK_FOR_INTERRUPTS();
		reload_settings_if_asked();

		for (int i = 0; i < lengthof(served_workers); i++)
			any_running |= (served_workers[i].handle != NULL);

		if (!any_running && !database_exists(pgb_checkout_database))
		{
			/* Say it once per database name, then wait quietly. */
			if (waiting_for == NULL || strcmp(waiting_for, pgb_checkout_database) != 0)
			{
				ereport(LOG,
						(errmsg("pg_booking checkout: database \"%s\" does not exist, waiting for it",
								pgb_checkout_database)));
				if (waiting_for)
					pfree(waiting_for);
				waiting_for = MemoryContextStrdup(TopMemoryContext, pgb_checkout_database);
			}
			sleep_ms = WAITING_POLL_MS;
		}
		else
		{
			if (waiting_for)
			{
				pfree(waiting_for);
				waiting_for = NULL;
			}
			for (int i = 0; i < lengthof(served_workers); i++)
				sleep_ms = Min(sleep_ms, tend_served_worker(&served_workers[i]));
			/* Remember which database they serve, to notice a change. */
			strlcpy(serving_database, pgb_checkout_database, BGW_EXTRALEN);
		}
		if (sleep_ms > 0)
			wait_ms(sleep_ms);
	}
}

/*
 * Before each commit and between batches: an orphan whose postmaster is
 * gone must not write on (a new postmaster may already be recovering the
 * same data, and nobody would see or stop this process).  Exiting here
 * leaves the open transaction uncommitted.  Cheap: on Linux a flag set by
 * a signal.
 */
static void
exit_if_postmaster_gone(void)
{
	if (!PostmasterIsAlive())
		proc_exit(1);
}

/* Run one statement of the worker in its own transaction. */
static void
begin_work(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

static void
end_work(void)
{
	SPI_finish();
	PopActiveSnapshot();
	/* an orphan's work is not committed (see exit_if_postmaster_gone) */
	exit_if_postmaster_gone();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Whether the extension is installed, and at a version that has the
 * per-hotel checkout this library runs (booking.checkout_todo, 1.1): after
 * the library is replaced and before ALTER EXTENSION pg_booking UPDATE, the
 * worker waits (the dates due meanwhile are caught up after the update).
 */
typedef enum ExtensionState
{
	EXTENSION_MISSING,
	EXTENSION_OLDER,
	EXTENSION_READY,
	EXTENSION_CITUS_WORKER		/* ready, but a Citus worker node: idle */
} ExtensionState;

static ExtensionState
extension_state(void)
{
	ExtensionState state = EXTENSION_MISSING;

	StartTransactionCommand();
	if (OidIsValid(get_extension_oid("pg_booking", true)))
	{
		Oid			argtypes[1] = {TIMESTAMPTZOID};

		state = OidIsValid(LookupFuncName(list_make2(makeString("booking"), makeString("checkout_todo")),
										  1, argtypes, true))
			? EXTENSION_READY : EXTENSION_OLDER;
		/*
		 * On Citus every node has pg_booking and reaches every shard: a
		 * worker node's own worker would run each hotel's dates a second
		 * time, racing the coordinator's.  The checkout runs once, on the
		 * coordinator (local group 0, also a single node with citus).
		 */
		if (state == EXTENSION_READY && pgb_citus_node() == PGB_CITUS_WORKER)
			state = EXTENSION_CITUS_WORKER;
	}
	CommitTransactionCommand();
	return state;
}

/*
 * One run to do: a calendar (a hotel, or the site for meeting rooms) and
 * one of its business dates.
 */
typedef struct DueRun
{
	bool		site;			/* the site's run (hotel_id NULL) */
	int64		hotel_id;
	DateADT		day;
} DueRun;

/*
 * What is due (booking.checkout_todo: per hotel and for the site, every
 * business date due and not yet recorded, oldest first) at the worker's
 * clock, and the milliseconds until the next date of any calendar falls
 * due.  The runs are copied into cxt.
 */
static int
runs_due(MemoryContext cxt, DueRun **runs, long *next_ms)
{
	TimestampTz at = GetCurrentTimestamp() + (int64) pgb_checkout_test_clock_offset * USECS_PER_SEC;
	Oid			argtypes[1] = {TIMESTAMPTZOID};
	Datum		values[1] = {TimestampTzGetDatum(at)};
	bool		isnull;
	int			rc;
	int			n;

	begin_work("pg_booking checkout: looking for due dates");
	rc = SPI_execute_with_args("SELECT hotel_id, business_date FROM booking.checkout_todo($1)",
							   1, argtypes, values, NULL, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "pg_booking checkout: due date query failed: %s", SPI_result_code_string(rc));
	n = (int) SPI_processed;
	*runs = MemoryContextAllocZero(cxt, sizeof(DueRun) * (n + 1));
	for (int i = 0; i < n; i++)
	{
		Datum		hotel = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);

		(*runs)[i].site = isnull;
		(*runs)[i].hotel_id = isnull ? 0 : DatumGetInt64(hotel);
		(*runs)[i].day = DatumGetDateADT(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
	}
	rc = SPI_execute_with_args("SELECT (extract(epoch FROM booking.checkout_next_due($1) - $1) * 1000)::int8",
							   1, argtypes, values, NULL, true, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "pg_booking checkout: next due query failed: %s", SPI_result_code_string(rc));
	*next_ms = (long) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (isnull)
		*next_ms = MAX_SLEEP_MS;
	end_work();
	return n;
}

/* SELECT fn($1 date or int8, ...) returning one int8 (or NULL: -1). */
static int64
call_int8(const char *sql, int nargs, Oid *argtypes, Datum *values, const char *nulls, const char *activity)
{
	bool		isnull;
	Datum		d;
	int			rc;

	begin_work(activity);
	rc = SPI_execute_with_args(sql, nargs, argtypes, values, nulls, false, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "pg_booking checkout: \"%s\" failed: %s", sql, SPI_result_code_string(rc));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	end_work();
	return isnull ? -1 : DatumGetInt64(d);
}

static void
record_failure(const DueRun *due, int64 run_id, const char *message)
{
	Oid			argtypes[4] = {INT8OID, DATEOID, INT8OID, TEXTOID};
	Datum		values[4] = {Int64GetDatum(due->hotel_id), DateADTGetDatum(due->day), Int64GetDatum(run_id),
							 CStringGetTextDatum(message)};
	int			rc;

	begin_work("pg_booking checkout: recording a failed run");
	rc = SPI_execute_with_args("SELECT booking.checkout_failed($1, $2, $3, 'worker', $4)",
							   4, argtypes, values, due->site ? "n   " : "    ", false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "pg_booking checkout: could not record the failed run: %s", SPI_result_code_string(rc));
	end_work();
}

/*
 * Run one business date of one calendar: start, batches, finish, each in
 * its own transaction.  An ERROR is caught, recorded and logged; the
 * caller goes on.
 */
static void
run_day(const DueRun *due)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile int64 run_id = -1;
	char	   *date = DatumGetCString(DirectFunctionCall1(date_out, DateADTGetDatum(due->day)));
	/* the site's runs are named as before, a hotel's with its id */
	char	   *what = due->site ? psprintf("business date %s", date)
		: psprintf("hotel %lld business date %s", (long long) due->hotel_id, date);

	PG_TRY();
	{
		Oid			argtypes[2] = {INT8OID, DATEOID};
		Datum		values[2];
		int64		n;
		char	   *activity = psprintf("pg_booking checkout: %s", what);

		values[0] = Int64GetDatum(due->hotel_id);
		values[1] = DateADTGetDatum(due->day);
		run_id = call_int8("SELECT booking.checkout_start($1, $2, 'worker')", 2, argtypes, values,
						   due->site ? "n " : "  ", activity);
		if (run_id >= 0)
		{
			argtypes[0] = INT8OID;
			argtypes[1] = INT4OID;
			values[0] = Int64GetDatum(run_id);
			values[1] = Int32GetDatum(CHECKOUT_BATCH_SIZE);
			do
			{
				CHECK_FOR_INTERRUPTS();
				exit_if_postmaster_gone();
				n = call_int8("SELECT booking.checkout_batch($1, $2)::int8", 2, argtypes, values, NULL, activity);
			} while (n > 0);
			exit_if_postmaster_gone();
			(void) call_int8("SELECT 0::int8 FROM booking.checkout_finish($1)", 1, argtypes, values, NULL, activity);
			/*
			 * Group blocks of this hotel whose release date has come give back
			 * their unpicked rooms (issue 15), on the hotel's own calendar.
			 */
			if (!due->site)
			{
				argtypes[0] = INT8OID;
				argtypes[1] = DATEOID;
				values[0] = Int64GetDatum(due->hotel_id);
				values[1] = DateADTGetDatum(due->day);
				(void) call_int8("SELECT booking.release_blocks($1, $2)::int8", 2, argtypes, values, NULL, activity);
			}
			ereport(LOG,
					(errmsg("pg_booking checkout: %s done (run %lld)", what, (long long) run_id)));
		}
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		pgstat_report_activity(STATE_IDLE, NULL);
		ereport(LOG,
				(errmsg("pg_booking checkout: %s failed: %s", what, edata->message)));
		/* The failure must not stop the worker either. */
		PG_TRY();
		{
			record_failure(due, run_id, edata->message);
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(cxt);
			FlushErrorState();
			AbortCurrentTransaction();
			pgstat_report_activity(STATE_IDLE, NULL);
			ereport(LOG, (errmsg("pg_booking checkout: could not record the failure of %s", what)));
		}
		PG_END_TRY();
		FreeErrorData(edata);
	}
	PG_END_TRY();
}

/*
 * The minute tick's other jobs, each a function of the SQL that returns how
 * many bookings it changed (probed first: an older SQL may not have it):
 * holds and requests past their expiry become "expired"
 * (booking.expire_holds()), and no-shows of rooms that require check-in
 * become "released" (booking.release_no_shows(), at the checkout's clock so
 * the tests' offset moves it too).  Nobody waits for the first (an expired
 * hold already blocks no one); the second frees the room.  Both promote the
 * waitlist entries their freed slots fit, in their own transaction (the
 * triggers on booking.bookings).  The third expires the waitlist entries
 * whose slot has started by the checkout's clock and sweeps every queue
 * (booking.expire_waitlist()).  Each runs in a
 * transaction of its own, so one failing does not keep the other from
 * running; an error is logged and the worker goes on.
 */
static void
run_tick_job(MemoryContext cxt, const char *signature, const char *sql, const char *activity, const char *done)
{
	PG_TRY();
	{
		bool		isnull;
		int64		n = 0;
		Datum		sig = CStringGetTextDatum(signature);
		Oid			argtypes[1] = {TEXTOID};

		begin_work(activity);
		if (SPI_execute_with_args("SELECT to_regprocedure($1) IS NOT NULL", 1, argtypes, &sig, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "pg_booking checkout: could not look for %s", signature);
		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
		{
			if (SPI_execute(sql, false, 1) != SPI_OK_SELECT)
				elog(ERROR, "pg_booking checkout: %s failed", signature);
			n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		}
		end_work();
		if (n > 0)
			ereport(LOG, (errmsg("pg_booking checkout: %lld %s", (long long) n, done)));
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
pgb_checkout_worker_main(Datum main_arg)
{
	char		database[BGW_EXTRALEN];
	MemoryContext loop_cxt;
	volatile bool said_waiting = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	strlcpy(database, MyBgworkerEntry->bgw_extra, sizeof(database));
	BackgroundWorkerInitializeConnection(database, NULL, 0);
	pgstat_report_appname("pg_booking checkout");
	ereport(LOG, (errmsg("pg_booking checkout: started in database \"%s\"", database)));

	/*
	 * One worker per database: a launcher restarted after a SIGTERM starts a
	 * new worker while the old one may still run; the newcomer waits here.
	 */
	{
		LOCKTAG		tag;

		SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, 0, 0, PGB_LOCK_CHECKOUT);
		pgstat_report_activity(STATE_RUNNING, "pg_booking checkout: waiting for another checkout worker to end");
		StartTransactionCommand();
		(void) LockAcquire(&tag, ExclusiveLock, true, false);
		CommitTransactionCommand();
		pgstat_report_activity(STATE_IDLE, NULL);
	}

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "pg_booking checkout", ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		long		sleep_ms = MAX_SLEEP_MS;
		MemoryContext old;
		ExtensionState state;

		CHECK_FOR_INTERRUPTS();
		reload_settings_if_asked();
		if (strcmp(database, pgb_checkout_database) != 0)
		{
			ereport(LOG,
					(errmsg("pg_booking checkout: database changed from \"%s\" to \"%s\", restarting",
							database, pgb_checkout_database)));
			proc_exit(0);		/* a dynamic worker: the launcher starts the next one */
		}

		old = MemoryContextSwitchTo(loop_cxt);
		if ((state = extension_state()) != EXTENSION_READY)
		{
			if (!said_waiting && state == EXTENSION_CITUS_WORKER)
				ereport(LOG,
						(errmsg("pg_booking checkout: this node is a Citus worker node, idle"),
						 errdetail("The checkout, hold expiry, release of no-shows and waitlist expiry run once, on the coordinator, over every shard.")));
			else if (!said_waiting)
				ereport(LOG,
						(state == EXTENSION_MISSING
						 ? errmsg("pg_booking checkout: extension pg_booking is not installed in \"%s\", waiting",
								  database)
						 : errmsg("pg_booking checkout: extension pg_booking in \"%s\" is older than this library, waiting",
								  database),
						 state == EXTENSION_OLDER ? errhint("Run ALTER EXTENSION pg_booking UPDATE.") : 0));
			said_waiting = true;
			sleep_ms = WAITING_POLL_MS;
		}
		else
		{
			DueRun	   *runs = NULL;
			volatile int n = 0;
			long		next_ms = MAX_SLEEP_MS;
			volatile bool ok = true;

			said_waiting = false;
			PG_TRY();
			{
				n = runs_due(loop_cxt, &runs, &next_ms);
			}
			PG_CATCH();
			{
				MemoryContextSwitchTo(loop_cxt);
				EmitErrorReport();
				FlushErrorState();
				AbortCurrentTransaction();
				pgstat_report_activity(STATE_IDLE, NULL);
				ok = false;
			}
			PG_END_TRY();

			if (ok)
			{
				for (int i = 0; i < n; i++)
					run_day(&runs[i]);
				run_tick_job(loop_cxt, "booking.expire_holds()",
							 "SELECT booking.expire_holds()::int8",
							 "pg_booking checkout: expiring holds", "holds or requests expired");
				run_tick_job(loop_cxt, "booking.release_no_shows(timestamptz)",
							 "SELECT booking.release_no_shows(booking.checkout_clock())::int8",
							 "pg_booking checkout: releasing no-shows", "no-shows released");
				run_tick_job(loop_cxt, "booking.expire_waitlist(timestamptz)",
							 "SELECT booking.expire_waitlist(booking.checkout_clock())::int8",
							 "pg_booking checkout: expiring and promoting waitlist entries",
							 "waitlist entries expired or promoted");
				sleep_ms = Max(Min(next_ms, MAX_SLEEP_MS), 1000);
			}
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(loop_cxt);
		wait_ms(sleep_ms);
	}
}
