/*
 * caller.c — who is calling: the claims in request.jwt.claims, parsed once
 * per transaction, and the check that the caller's session is still alive.
 *
 * Every api function, every row-level security policy and the rate limiter
 * ask who the caller is (booking.current_user_id(), current_app_role(),
 * claims()).  In 1.0 each question parsed the claims JSON again, about ten
 * times per request.  Here the answer is kept for the rest of the
 * transaction, keyed by the exact text of the setting: a new value (a test
 * acting as someone else, a pooled connection's next request) is parsed
 * afresh, the same value is answered from memory.
 *
 * The same place decides whether a signed-in caller's token still stands
 * (docs/design.md, Sessions): the user exists and is active, still holds the
 * token's role, and the token's session has not ended (logout, password
 * change, role change, deactivation).  A token without a session id
 * ("sid"; minted elsewhere, or claims set by hand in psql) is checked
 * against the user's cutoff (booking.token_cutoffs) by its "iat" instead.  The check
 * reads two rows, once per transaction, so a request pays one index probe
 * and no extra round trip.  It runs as the owner of booking.users: the
 * caller cannot read sessions, and the users table's own policies call
 * back into this file.
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "pg_booking.h"

#define PGB_ERRCODE_401 MAKE_SQLSTATE('P','T','4','0','1')

typedef struct Caller
{
	LocalTransactionId lxid;	/* the transaction this answer belongs to */
	char	   *claims_text;	/* the setting's value it was parsed from */
	Jsonb	   *claims;			/* NULL: no claims */
	const char *app_role;		/* superuser, anon, user, admin, ... */
	bool		has_uid;
	int64		uid;
} Caller;

/* Lives in TopTransactionContext; valid only while lxid matches. */
static Caller caller = {InvalidLocalTransactionId, NULL, NULL, NULL, false, 0};
static SPIPlanPtr session_plan = NULL;
static bool checking = false;

static const char *const app_roles[] = {
	"user", "admin", "facility_manager", "auditor", "moderator", "service_account"
};

static void
raise_unauthorized(const char *message, const char *reason)
{
	ereport(ERROR,
			(errcode(PGB_ERRCODE_401),
			 errmsg("%s", message),
			 errdetail_internal("%s", pgb_error_detail("UNAUTHORIZED",
													   psprintf("\"reason\": \"%s\"", reason))),
			 errhint("Sign in again.")));
}

/* The text of a claim (strings as they are, numbers in their JSON form). */
static char *
claim_text(Jsonb *claims, const char *key)
{
	JsonbValue	k;
	JsonbValue *v;

	if (claims == NULL || !JB_ROOT_IS_OBJECT(claims))
		return NULL;
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(&claims->root, JB_FOBJECT, &k);
	if (v == NULL || v->type == jbvNull)
		return NULL;
	if (v->type == jbvString)
		return pnstrdup(v->val.string.val, v->val.string.len);
	if (v->type == jbvNumeric)
		return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	if (v->type == jbvBool)
		return pstrdup(v->val.boolean ? "true" : "false");
	return JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
}

/*
 * The application role named by the claims.  A role claim that is not
 * "booking_<app role>" is refused, so a forged or stale claim cannot widen
 * access (as in 1.0).
 */
static const char *
role_of(Jsonb *claims)
{
	char	   *r = claim_text(claims, "role");

	if (r == NULL)
		return superuser_arg(GetSessionUserId()) ? "superuser" : "anon";
	if (strcmp(r, "booking_anon") == 0)
		return "anon";
	if (strncmp(r, "booking_", 8) == 0)
		for (int i = 0; i < lengthof(app_roles); i++)
			if (strcmp(r + 8, app_roles[i]) == 0)
				return app_roles[i];
	ereport(ERROR,
			(errcode(PGB_ERRCODE_401),
			 errmsg("unknown role \"%s\" in token claims", r),
			 errdetail_internal("%s", pgb_error_detail("UNAUTHORIZED", NULL))));
	return NULL;				/* not reached */
}

/*
 * The table the session query reads, by name: ours, or on a Citus worker
 * node the local placement of the reference table (docs/citus.md, finding
 * 20).  There the check runs inside a policy of a shard's query, and a
 * query of booking.users itself would be a distributed query from a query
 * on a shard, which Citus refuses; the placement is a plain local table
 * with the same rows.  Inside SPI.
 */
static char *
session_table(const char *table, PgbCitusNode node)
{
	char	   *qualified = psprintf("booking.%s", table);
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(qualified)};

	if (node != PGB_CITUS_WORKER)
		return qualified;
	if (SPI_execute_with_args("SELECT pg_catalog.shard_name(s.logicalrelid, s.shardid) FROM pg_catalog.pg_dist_shard s "
							  "WHERE s.logicalrelid = $1::regclass",
							  1, types, values, NULL, true, 2) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "%s has no single placement on this Citus worker node", qualified);
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/* Run the session query as the owner of booking.users (node: pgb_citus_node()). */
static void
query_session(int64 uid, bool has_sid, int64 sid, PgbCitusNode node)
{
	static PgbCitusNode plan_node = PGB_NOT_CITUS;
	Oid			nsp = get_namespace_oid("booking", false);
	Oid			rel = get_relname_relid("users", nsp);
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(rel));
	Oid			owner;
	Oid			save_user;
	int			save_sec;
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		values[2] = {Int64GetDatum(uid), Int64GetDatum(sid)};
	char		nulls[2] = {' ', has_sid ? ' ' : 'n'};

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "booking.users not found");
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);

	if (session_plan != NULL && plan_node != node)
	{
		SPI_freeplan(session_plan);
		session_plan = NULL;
	}
	if (session_plan == NULL)
	{
		char	   *cutoffs = session_table("token_cutoffs", node);
		char	   *sessions = session_table("sessions", node);
		char	   *users = session_table("users", node);
		SPIPlanPtr	p = SPI_prepare(psprintf(
			"SELECT u.active, u.role::text, "
			"       (SELECT extract(epoch FROM c.tokens_valid_after)::float8 "
			"          FROM %s c WHERE c.user_id = u.id), "
			"       (SELECT s.ended_at IS NULL FROM %s s "
			"         WHERE s.id = $2 AND s.user_id = u.id) "
			"  FROM %s u WHERE u.id = $1", cutoffs, sessions, users), 2, types);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "could not prepare the session check: %s", SPI_result_code_string(SPI_result));
		session_plan = p;
		plan_node = node;
	}
	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	PG_TRY();
	{
		if (SPI_execute_plan(session_plan, values, nulls, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "session check failed");
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_user, save_sec);
	}
	PG_END_TRY();
}

/*
 * Refuse a signed-in caller whose token no longer stands.  Reasons are
 * fixed words (no user-supplied value reaches the message).
 */
static void
check_session(Jsonb *claims, const char *app_role, int64 uid, PgbCitusNode node)
{
	char	   *sid_text = claim_text(claims, "sid");
	char	   *iat_text = claim_text(claims, "iat");
	int64		sid = 0;
	bool		isnull;
	const char *problem = NULL;

	if (sid_text != NULL)
		sid = DatumGetInt64(DirectFunctionCall1(int8in, CStringGetDatum(sid_text)));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	query_session(uid, sid_text != NULL, sid, node);
	if (SPI_processed == 0)
		problem = "user";
	else
	{
		HeapTuple	row = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		active = DatumGetBool(SPI_getbinval(row, desc, 1, &isnull));
		char	   *role = SPI_getvalue(row, desc, 2);
		Datum		cutoff = SPI_getbinval(row, desc, 3, &isnull);
		float8		valid_after = isnull ? -INFINITY : DatumGetFloat8(cutoff);
		Datum		live = SPI_getbinval(row, desc, 4, &isnull);

		if (!active)
			problem = "inactive";
		else if (strcmp(role, app_role) != 0)
			problem = "role";
		else if (sid_text != NULL && (isnull || !DatumGetBool(live)))
			problem = "session";
		else if (sid_text == NULL && iat_text != NULL &&
				 DatumGetFloat8(DirectFunctionCall1(float8in, CStringGetDatum(iat_text))) < floor(valid_after))
			problem = "session";
	}
	SPI_finish();
	if (problem == NULL)
		return;
	if (strcmp(problem, "user") == 0)
		raise_unauthorized("the token's user does not exist", "unknown_user");
	if (strcmp(problem, "inactive") == 0)
		raise_unauthorized("the token's user is deactivated", "user_inactive");
	if (strcmp(problem, "role") == 0)
		raise_unauthorized("the token's role is no longer the user's role", "role_changed");
	raise_unauthorized("the token's session has ended", "session_ended");
}

/*
 * The check's own query must not check again (a policy on a table it reads
 * would); it runs as the table owner, so this guard is only a backstop.
 */
static void
check_session_once(Jsonb *claims, const char *app_role, int64 uid, PgbCitusNode node)
{
	if (checking)
		return;
	checking = true;
	PG_TRY();
	{
		check_session(claims, app_role, uid, node);
	}
	PG_FINALLY();
	{
		checking = false;
	}
	PG_END_TRY();
}

static Jsonb *
copy_jsonb(const Jsonb *j)
{
	Jsonb	   *copy = palloc(VARSIZE(j));

	memcpy(copy, j, VARSIZE(j));
	return copy;
}

/*
 * On a Citus coordinator the shards' policies run on the worker nodes,
 * which know the caller only if the claims travel with the transaction:
 * Citus passes a SET LOCAL on to every worker the transaction uses (and to
 * those it uses later) when citus.propagate_set_commands is "local".
 * set_config(), as the adapter sets the claims, is not passed on, so the
 * same value is set again here, once per transaction and claims (docs/
 * citus.md, finding 20).  Citus counts a call of a function as a
 * transaction block, so a single statement gets it too.
 */
static void
hand_claims_to_workers(const char *text)
{
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SET LOCAL citus.propagate_set_commands = 'local'", false, 0) != SPI_OK_UTILITY ||
		SPI_execute(psprintf("SET LOCAL request.jwt.claims = %s", quote_literal_cstr(text)), false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not pass the claims on to the Citus worker nodes");
	SPI_finish();
}

/* Parse the claims, check the session, remember the answer. */
static void
resolve_caller(const char *text)
{
	MemoryContext old;
	Jsonb	   *claims = NULL;
	const char *app_role;
	char	   *sub;
	bool		has_uid = false;
	int64		uid = 0;
	PgbCitusNode node = PGB_NOT_CITUS;

	if (text != NULL && text[0] != '\0')
		claims = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
	/* Asked once, for the session check and the hand-off (both need claims). */
	if (claims != NULL)
		node = pgb_citus_node();
	app_role = role_of(claims);
	sub = claim_text(claims, "sub");
	if (sub != NULL)
	{
		uid = DatumGetInt64(DirectFunctionCall1(int8in, CStringGetDatum(sub)));
		has_uid = true;
	}
	if (has_uid && strcmp(app_role, "anon") != 0 && strcmp(app_role, "superuser") != 0)
		check_session_once(claims, app_role, uid, node);
	/* (No SET in a parallel worker; the leader has set them.) */
	if (claims != NULL && !IsInParallelMode() && node == PGB_CITUS_COORDINATOR)
		hand_claims_to_workers(text);

	old = MemoryContextSwitchTo(TopTransactionContext);
	caller.claims_text = pstrdup(text ? text : "");
	caller.claims = claims ? copy_jsonb(claims) : NULL;
	caller.app_role = app_role;
	caller.has_uid = has_uid;
	caller.uid = uid;
	MemoryContextSwitchTo(old);
	caller.lxid = MyProc->lxid;
}

static Caller *
current_caller(void)
{
	const char *text = GetConfigOption("request.jwt.claims", true, false);

	if (caller.lxid != MyProc->lxid || strcmp(caller.claims_text, text ? text : "") != 0)
	{
		caller.lxid = InvalidLocalTransactionId;
		resolve_caller(text);
	}
	return &caller;
}

PG_FUNCTION_INFO_V1(pgb_caller_claims);

/* booking.claims() -> jsonb: the parsed claims, NULL without any. */
Datum
pgb_caller_claims(PG_FUNCTION_ARGS)
{
	Caller	   *c = current_caller();

	if (c->claims == NULL)
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(copy_jsonb(c->claims));
}

PG_FUNCTION_INFO_V1(pgb_current_user_id);

/* booking.current_user_id() -> bigint: the "sub" claim, NULL when anonymous. */
Datum
pgb_current_user_id(PG_FUNCTION_ARGS)
{
	Caller	   *c = current_caller();

	if (!c->has_uid)
		PG_RETURN_NULL();
	PG_RETURN_INT64(c->uid);
}

/*
 * The same from C (the events triggers, events.c): false when anonymous.
 * Errors as current_user_id() does when the token no longer stands.
 */
bool
pgb_caller_user_id(int64 *uid)
{
	Caller	   *c = current_caller();

	*uid = c->uid;
	return c->has_uid;
}

PG_FUNCTION_INFO_V1(pgb_current_app_role);

/* booking.current_app_role() -> text: the caller's application role. */
Datum
pgb_current_app_role(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(current_caller()->app_role));
}
