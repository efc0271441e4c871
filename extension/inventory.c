/*
 * inventory.c — hotel nights: a reservation takes one room on each night it
 * holds, all or nothing, and gives back the nights it stops holding.
 *
 * A reservation holds [arrival_date, held_until) of its (hotel, room type).
 * The BEFORE trigger below sees the old and the new holding of a row.  The
 * common cases are one statement each: a new stay takes its nights with one
 * UPDATE ... SET available = available - 1 WHERE <its nights> AND available
 * > 0 (rows locked by night first; a night it could not take, missing or
 * full, aborts the statement and is named in the error), a cancel or early
 * departure gives nights back with one UPDATE.  A change that both gives and
 * takes (new dates, length or room type) moves the difference in one step:
 *
 *   1. Lock every inventory row of the old and the new nights with one
 *      SELECT ... ORDER BY room_type, night FOR UPDATE.  Locks are taken in
 *      that order by every writer (api.adjust_inventory too), so writers
 *      racing for the same nights queue instead of deadlocking.  Under READ
 *      COMMITTED the locked rows are the latest committed versions.
 *   2. With the rows locked, check the new stay: every night has an
 *      inventory row (the horizon), the stay restrictions of its arrival and
 *      departure dates, and a free room on every night, counting the rooms
 *      the old holding gives back (so shortening or moving within the same
 *      nights never needs a spare room).
 *   3. Apply both sides in one UPDATE while the locks are held; they are
 *      released at commit, when the reservation row is visible too.
 *
 * "Free" is available > 0, one rule for every room sold: available is
 * total + allowance - held - blocked, so the overbooking allowance and the
 * rooms held by group blocks are already in it (section "overbooking
 * allowance and group allotments" of pg_booking--1.0--1.1.sql), and a stay
 * drawn from a block has had its room handed back to available by the
 * reservations_block trigger, which fires before this one.
 *
 * Any error aborts the statement, so the old nights stay held when the new
 * ones cannot be had.  The work runs as the table's owner: a guest may take a
 * room without being allowed to write the inventory.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "access/xact.h"
#include "access/htup_details.h"

#include "pg_booking.h"

PG_FUNCTION_INFO_V1(reservation_nights);

/* The stay_length CHECK of booking.reservations. */
#define MAX_STAY_NIGHTS 30

/* The nights one version of a reservation row holds, and its stay. */
typedef struct Holding
{
	bool		present;		/* row version exists (not INSERT's OLD) */
	int64		hotel_id;
	char	   *room_type;
	DateADT		arrival;
	DateADT		held_until;		/* exclusive */
	int32		stay_length;
	char	   *status;
} Holding;

static SPIPlanPtr lock_plan = NULL;
static SPIPlanPtr apply_plan = NULL;
static SPIPlanPtr type_plan = NULL;
static SPIPlanPtr rules_plan = NULL;
static SPIPlanPtr take_plan = NULL;
static SPIPlanPtr give_plan = NULL;
static SPIPlanPtr night_plan = NULL;

/* $1 hotel, $2..$4 old (type, from, to), $5..$7 new (type, from, to) */
#define NIGHTS_WHERE \
	" WHERE hotel_id = $1" \
	"   AND ((room_type = $2 AND night >= $3 AND night < $4)" \
	"     OR (room_type = $5 AND night >= $6 AND night < $7))"

static const char *lock_sql =
"SELECT room_type, night, available FROM booking.inventory" NIGHTS_WHERE
" ORDER BY room_type, night FOR UPDATE";

static const char *apply_sql =
"UPDATE booking.inventory"
"   SET available = available"
"       + CASE WHEN room_type = $2 AND night >= $3 AND night < $4 THEN 1 ELSE 0 END"
"       - CASE WHEN room_type = $5 AND night >= $6 AND night < $7 THEN 1 ELSE 0 END"
NIGHTS_WHERE;

/*
 * The common cases, one statement each: a new stay only takes nights, a
 * cancel or early departure only gives some back.  A plain UPDATE locks rows
 * in the order its plan meets them, which for a bitmap scan is the heap's
 * order, not the nights' (seen: creates deadlocking each other in t/063), so
 * an InitPlan locks the rows first, by night (the order of lock_sql), and
 * the UPDATE then writes rows this transaction already holds.  Under READ
 * COMMITTED the UPDATE re-checks "available > 0" on the latest version of a
 * row it had to wait for.
 */
#define RANGE_WHERE \
	" WHERE hotel_id = $1 AND room_type = $2 AND night >= $3 AND night < $4"
#define RANGE_LOCKED \
	" WHERE hotel_id = $1 AND room_type = $2" \
	"   AND night = ANY (ARRAY(SELECT night FROM booking.inventory" RANGE_WHERE \
	"                          ORDER BY night FOR UPDATE))"

static const char *take_sql =
"UPDATE booking.inventory SET available = available - 1" RANGE_LOCKED
"   AND available > 0 RETURNING night";

static const char *give_sql =
"UPDATE booking.inventory SET available = available + 1" RANGE_LOCKED;

static const char *night_sql =
"SELECT 1 FROM booking.inventory WHERE hotel_id = $1 AND room_type = $2 AND night = $3";

static const char *type_sql =
"SELECT 1 FROM booking.inventory WHERE hotel_id = $1 AND room_type = $2 LIMIT 1";

static const char *rules_sql =
"SELECT night, min_stay, max_stay, closed_to_arrival, closed_to_departure"
"  FROM booking.stay_restrictions"
" WHERE hotel_id = $1 AND room_type = $2 AND night IN ($3, $4)";

/* A date as YYYY-MM-DD whatever the DateStyle: messages and details are an API. */
static char *
date_text(DateADT d)
{
	int			year,
				month,
				day;

	j2date(d + POSTGRES_EPOCH_JDATE, &year, &month, &day);
	return psprintf("%04d-%02d-%02d", year, month, day);
}

/* "key": "value" for an error's details, the value JSON-escaped. */
static char *
json_member(const char *key, const char *value)
{
	StringInfoData buf;

	initStringInfo(&buf);
	escape_json(&buf, key);
	appendStringInfoString(&buf, ": ");
	escape_json(&buf, value);
	return buf.data;
}

static char *
stay_details(const Holding *h, const char *extra)
{
	return psprintf("\"hotel_id\": %lld, %s%s%s", (long long) h->hotel_id,
					json_member("room_type", h->room_type),
					extra ? ", " : "", extra ? extra : "");
}

static void
raise_restriction(const Holding *h, const char *rule, DateADT day, const char *message)
{
	ereport(ERROR,
			(errcode(PGB_ERRCODE_422),
			 errmsg("%s", message),
			 errdetail_internal("%s", pgb_error_detail("RESTRICTION_VIOLATION",
													   stay_details(h, psprintf("%s, %s",
																				json_member("rule", rule),
																				json_member("date", date_text(day)))))),
			 errhint("Choose other dates or another room type.")));
}

/* The stay restrictions of the arrival and departure dates of h. */
static void
check_restrictions(const Holding *h)
{
	Oid			argtypes[4] = {INT8OID, TEXTOID, DATEOID, DATEOID};
	Datum		values[4];
	DateADT		departure = h->arrival + h->stay_length;
	uint64		i;
	int			rc;

	values[0] = Int64GetDatum(h->hotel_id);
	values[1] = CStringGetTextDatum(h->room_type);
	values[2] = DateADTGetDatum(h->arrival);
	values[3] = DateADTGetDatum(departure);
	rc = SPI_execute_plan(pgb_keep_plan(&rules_plan, rules_sql, 4, argtypes), values, NULL, true, 2);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "stay restrictions query failed: %s", SPI_result_code_string(rc));

	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		DateADT		day = DatumGetDateADT(SPI_getbinval(row, desc, 1, &isnull));
		Datum		v;

		if (day == h->arrival)
		{
			v = SPI_getbinval(row, desc, 2, &isnull);
			if (!isnull && h->stay_length < DatumGetInt32(v))
				raise_restriction(h, "min_stay", day,
								  psprintf("stays arriving on %s must last at least %d nights",
										   date_text(day), DatumGetInt32(v)));
			v = SPI_getbinval(row, desc, 3, &isnull);
			if (!isnull && h->stay_length > DatumGetInt32(v))
				raise_restriction(h, "max_stay", day,
								  psprintf("stays arriving on %s may last at most %d nights",
										   date_text(day), DatumGetInt32(v)));
			v = SPI_getbinval(row, desc, 4, &isnull);
			if (!isnull && DatumGetBool(v))
				raise_restriction(h, "closed_to_arrival", day,
								  psprintf("room type \"%s\" is closed to arrival on %s",
										   h->room_type, date_text(day)));
		}
		if (day == departure)
		{
			v = SPI_getbinval(row, desc, 5, &isnull);
			if (!isnull && DatumGetBool(v))
				raise_restriction(h, "closed_to_departure", day,
								  psprintf("room type \"%s\" is closed to departure on %s",
										   h->room_type, date_text(day)));
		}
	}
}

static void
set_side(Datum *values, char *nulls, int first, const Holding *h)
{
	if (h->present && h->held_until > h->arrival)
	{
		values[first] = CStringGetTextDatum(h->room_type);
		values[first + 1] = DateADTGetDatum(h->arrival);
		values[first + 2] = DateADTGetDatum(h->held_until);
	}
	else
		nulls[first] = nulls[first + 1] = nulls[first + 2] = 'n';
}

/* The error for a stay whose night could not be taken: which rule failed. */
static void
raise_untakeable(const Holding *h, DateADT night)
{
	Oid			argtypes[3] = {INT8OID, TEXTOID, DATEOID};
	Datum		values[3] = {Int64GetDatum(h->hotel_id), CStringGetTextDatum(h->room_type), DateADTGetDatum(night)};
	int			rc;

	rc = SPI_execute_plan(pgb_keep_plan(&type_plan, type_sql, 2, argtypes), values, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "room type query failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(PGB_ERRCODE_422),
				 errmsg("hotel %lld has no room type \"%s\"", (long long) h->hotel_id, h->room_type),
				 errdetail_internal("%s", pgb_error_detail("VALIDATION_ERROR",
														   stay_details(h, "\"field\": \"room_type\"")))));
	rc = SPI_execute_plan(pgb_keep_plan(&night_plan, night_sql, 3, argtypes), values, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "inventory night query failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(PGB_ERRCODE_422),
				 errmsg("no inventory of room type \"%s\" for the night of %s",
						h->room_type, date_text(night)),
				 errdetail_internal("%s", pgb_error_detail("VALIDATION_ERROR",
														   stay_details(h, psprintf("\"field\": \"stay_length\", %s",
																					  json_member("night", date_text(night)))))),
				 errhint("Nights beyond the inventory horizon cannot be sold yet; choose an earlier departure.")));
	ereport(ERROR,
			(errcode(PGB_ERRCODE_409),
			 errmsg("no room of type \"%s\" is available on the night of %s",
					h->room_type, date_text(night)),
			 errdetail_internal("%s", pgb_error_detail("NO_AVAILABILITY",
													   stay_details(h, json_member("night", date_text(night))))),
			 errhint("GET /availability lists hotels with rooms free on every night.")));
}

/*
 * Take one room on every night of h, in one UPDATE; if a night is missing or
 * full, the error aborts the statement and with it the rooms just taken.
 */
static void
take_nights(const Holding *h, Datum hotel)
{
	Oid			argtypes[4] = {INT8OID, TEXTOID, DATEOID, DATEOID};
	Datum		take_values[4] = {hotel, CStringGetTextDatum(h->room_type),
								  DateADTGetDatum(h->arrival), DateADTGetDatum(h->held_until)};
	int			nights = h->held_until - h->arrival;
	bool		taken[MAX_STAY_NIGHTS];
	uint64		i;
	int			k;
	int			rc;

	if (nights > MAX_STAY_NIGHTS)
		elog(ERROR, "a reservation holds at most %d nights", MAX_STAY_NIGHTS);
	rc = SPI_execute_plan(pgb_keep_plan(&take_plan, take_sql, 4, argtypes), take_values, NULL, false, 0);
	if (rc != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "inventory take failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == (uint64) nights)
		return;

	memset(taken, 0, sizeof(taken));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		DateADT		night = DatumGetDateADT(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));

		taken[night - h->arrival] = true;
	}
	for (k = 0; k < nights && taken[k]; k++)
		;
	raise_untakeable(h, h->arrival + k);
}

/*
 * Move the holding from old to new (same hotel).  check_stay: the new stay
 * is new or changed, check its restrictions.
 */
static void
move_nights(Oid owner, const Holding *old, const Holding *new, bool check_stay)
{
	Oid			argtypes[7] = {INT8OID, TEXTOID, DATEOID, DATEOID, TEXTOID, DATEOID, DATEOID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	bool		takes = new->present && new->held_until > new->arrival;
	bool		gives = old->present && old->held_until > old->arrival;
	Oid			save_userid;
	int			save_sec_context;
	int			rc;
	uint64		i;
	int			nights = takes ? new->held_until - new->arrival : 0;
	int			found = 0;
	bool		has_missing = false;
	DateADT		missing = 0;
	bool		has_sold_out = false;
	DateADT		sold_out = 0;

	if (!takes && !gives && !check_stay)
		return;

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(owner, save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_NOFORCE_RLS);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	values[0] = Int64GetDatum(takes ? new->hotel_id : old->hotel_id);
	set_side(values, nulls, 1, old);
	set_side(values, nulls, 4, new);

	if (takes != gives)
	{
		if (takes && check_stay)
			check_restrictions(new);
		if (takes)
			take_nights(new, values[0]);
		else
		{
			rc = SPI_execute_plan(pgb_keep_plan(&give_plan, give_sql, 4, argtypes), values, nulls, false, 0);
			if (rc != SPI_OK_UPDATE)
				elog(ERROR, "inventory give-back failed: %s", SPI_result_code_string(rc));
		}
		SPI_finish();
		SetUserIdAndSecContext(save_userid, save_sec_context);
		return;
	}

	if (takes || gives)
	{
		rc = SPI_execute_plan(pgb_keep_plan(&lock_plan, lock_sql, 7, argtypes), values, nulls, false, 0);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "inventory lock query failed: %s", SPI_result_code_string(rc));
	}

	/* Rows come sorted by (room_type, night): the new type's nights in order. */
	for (i = 0; takes && i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		char	   *type = TextDatumGetCString(SPI_getbinval(row, desc, 1, &isnull));
		DateADT		night = DatumGetDateADT(SPI_getbinval(row, desc, 2, &isnull));
		int32		available = DatumGetInt32(SPI_getbinval(row, desc, 3, &isnull));

		if (strcmp(type, new->room_type) != 0 || night < new->arrival || night >= new->held_until)
			continue;
		if (!has_missing && night != new->arrival + found)
		{
			has_missing = true;
			missing = new->arrival + found;
		}
		found++;
		if (gives && strcmp(type, old->room_type) == 0 && night >= old->arrival && night < old->held_until)
			available++;
		if (available < 1 && !has_sold_out)
		{
			has_sold_out = true;
			sold_out = night;
		}
	}
	if (takes && !has_missing && found < nights)
	{
		has_missing = true;
		missing = new->arrival + found;
	}

	if (has_missing)
	{
		Datum		tvalues[2] = {Int64GetDatum(new->hotel_id), CStringGetTextDatum(new->room_type)};

		rc = SPI_execute_plan(pgb_keep_plan(&type_plan, type_sql, 2, argtypes), tvalues, NULL, true, 1);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "room type query failed: %s", SPI_result_code_string(rc));
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(PGB_ERRCODE_422),
					 errmsg("hotel %lld has no room type \"%s\"", (long long) new->hotel_id, new->room_type),
					 errdetail_internal("%s", pgb_error_detail("VALIDATION_ERROR",
															   stay_details(new, "\"field\": \"room_type\"")))));
		ereport(ERROR,
				(errcode(PGB_ERRCODE_422),
				 errmsg("no inventory of room type \"%s\" for the night of %s",
						new->room_type, date_text(missing)),
				 errdetail_internal("%s", pgb_error_detail("VALIDATION_ERROR",
														   stay_details(new, psprintf("\"field\": \"stay_length\", %s",
																					  json_member("night", date_text(missing)))))),
				 errhint("Nights beyond the inventory horizon cannot be sold yet; choose an earlier departure.")));
	}

	if (check_stay && new->present)
		check_restrictions(new);

	if (has_sold_out)
		ereport(ERROR,
				(errcode(PGB_ERRCODE_409),
				 errmsg("no room of type \"%s\" is available on the night of %s",
						new->room_type, date_text(sold_out)),
				 errdetail_internal("%s", pgb_error_detail("NO_AVAILABILITY",
														   stay_details(new, json_member("night", date_text(sold_out))))),
				 errhint("GET /availability lists hotels with rooms free on every night.")));

	if (takes || gives)
	{
		rc = SPI_execute_plan(pgb_keep_plan(&apply_plan, apply_sql, 7, argtypes), values, nulls, false, 0);
		if (rc != SPI_OK_UPDATE)
			elog(ERROR, "inventory update failed: %s", SPI_result_code_string(rc));
	}

	SPI_finish();
	SetUserIdAndSecContext(save_userid, save_sec_context);
}

/*
 * The hotels' current date (booking.hotel_today(): the transaction's start
 * in the checkout time zone).
 */
static DateADT
hotel_today(void)
{
	const char *zone = pgb_checkout_time_zone && pgb_checkout_time_zone[0] ? pgb_checkout_time_zone : "UTC";
	Datum		local = DirectFunctionCall2(timestamptz_zone, CStringGetTextDatum(zone),
											TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()));

	return DatumGetDateADT(DirectFunctionCall1(timestamp_date, local));
}

static bool
holds_night(const Holding *h, const char *room_type, DateADT night)
{
	return h->present && strcmp(h->room_type, room_type) == 0 && night >= h->arrival && night < h->held_until;
}

/*
 * A stay that goes on (confirmed or checked in before and after) may not
 * give back a night that has passed: the guest had the room, or could have.
 * Cancellations, check-outs and the nightly checkout change the status and
 * keep the passed nights themselves (their SQL clamps held_until to today).
 */
static void
refuse_passed_give_back(const Holding *old, const Holding *new)
{
	DateADT		today;

	if (!old->present || !new->present || old->arrival >= old->held_until)
		return;
	if ((strcmp(old->status, "confirmed") != 0 && strcmp(old->status, "checked_in") != 0) ||
		(strcmp(new->status, "confirmed") != 0 && strcmp(new->status, "checked_in") != 0))
		return;
	today = hotel_today();
	for (DateADT night = old->arrival; night < old->held_until && night < today; night++)
		if (!holds_night(new, old->room_type, night))
			ereport(ERROR,
					(errcode(PGB_ERRCODE_409),
					 errmsg("the night of %s has passed and stays held by this reservation", date_text(night)),
					 errdetail_internal("%s", pgb_error_detail("NIGHTS_PASSED",
															   stay_details(old, json_member("night", date_text(night))))),
					 errhint("A stay that has begun can be shortened to end today at the earliest; its arrival date and room type stay.")));
}

/* Read a row version; a NULL in a NOT NULL column is left to the constraint. */
static bool
read_holding(Relation rel, HeapTuple tup, Holding *h)
{
	bool		n1, n2, n3, n4, n5, n6;
	Datum		hotel = pgb_column(rel, tup, "hotel_id", &n1);
	Datum		type = pgb_column(rel, tup, "room_type", &n2);
	Datum		arrival = pgb_column(rel, tup, "arrival_date", &n3);
	Datum		held = pgb_column(rel, tup, "held_until", &n4);
	Datum		len = pgb_column(rel, tup, "stay_length", &n5);
	Datum		status = pgb_column(rel, tup, "status", &n6);

	h->present = false;
	if (n1 || n2 || n3 || n4 || n5 || n6)
		return false;
	h->present = true;
	h->hotel_id = DatumGetInt64(hotel);
	h->room_type = TextDatumGetCString(type);
	h->arrival = DatumGetDateADT(arrival);
	h->held_until = DatumGetDateADT(held);
	h->stay_length = DatumGetInt32(len);
	h->status = TextDatumGetCString(status);
	return true;
}

/*
 * BEFORE INSERT OR UPDATE OR DELETE trigger on booking.reservations: moves
 * the nights the row holds (see the top of this file).
 */
Datum
reservation_nights(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	Holding		old = {0};
	Holding		new = {0};
	HeapTuple	result;
	bool		check_stay;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "reservation_nights: not called by trigger manager");
	if (!TRIGGER_FIRED_BEFORE(trigdata->tg_event) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		elog(ERROR, "reservation_nights: must be fired before, for each row");

	rel = trigdata->tg_relation;
	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		result = trigdata->tg_trigtuple;
		if (!read_holding(rel, result, &new))
			return PointerGetDatum(result);
	}
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
	{
		result = trigdata->tg_trigtuple;
		read_holding(rel, result, &old);
	}
	else
	{
		result = trigdata->tg_newtuple;
		read_holding(rel, trigdata->tg_trigtuple, &old);
		if (!read_holding(rel, result, &new))
			return PointerGetDatum(result);
	}

	/* Nights are held within one hotel; moving a stay elsewhere is a new stay. */
	if (old.present && new.present && old.hotel_id != new.hotel_id)
		ereport(ERROR,
				(errcode(PGB_ERRCODE_422),
				 errmsg("a reservation cannot move to another hotel"),
				 errdetail_internal("%s", pgb_error_detail("VALIDATION_ERROR", "\"field\": \"hotel_id\""))));

	refuse_passed_give_back(&old, &new);

	/* The rules bind a stay when it is made or its dates or type change. */
	check_stay = new.present && strcmp(new.status, "confirmed") == 0 &&
		(!old.present || old.arrival != new.arrival || old.stay_length != new.stay_length ||
		 strcmp(old.room_type, new.room_type) != 0);

	if (old.present && new.present && !check_stay &&
		old.arrival == new.arrival && old.held_until == new.held_until &&
		strcmp(old.room_type, new.room_type) == 0)
		return PointerGetDatum(result);

	move_nights(rel->rd_rel->relowner, &old, &new, check_stay);
	return PointerGetDatum(result);
}
