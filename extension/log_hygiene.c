/*
 * log_hygiene.c — business errors stay out of the server's own log.
 *
 * A business error (SQLSTATE class PT) is a normal answer to a caller, and
 * its message may quote the offending value, which may be an email, a title
 * or a guest name.  So do the errors PostgreSQL raises on bad input that
 * reaches it (class 22: "invalid input syntax for type uuid: ..."; class 23:
 * a constraint's "Failing row contains (...)").  The caller gets them as
 * always; the server log does not, unless pg_booking.log_business_errors is
 * on.  Business errors that quote nothing are logged as usual.  The
 * adapter logs every request with its status and error code, without the
 * values (adapter/log.c), so nothing is lost for an operator.  Other errors
 * (internal ones, connection problems) are logged as usual.
 *
 * make run also sets log_min_error_statement = fatal and
 * log_error_verbosity = terse, so no statement text or DETAIL reaches the
 * log for the errors that are still written.
 */
#include "postgres.h"

#include "utils/elog.h"
#include "utils/guc.h"

#include "pg_booking.h"

bool		pgb_log_business_errors = false;

static emit_log_hook_type prev_emit_log_hook = NULL;

static bool
is_input_error(int sqlerrcode)
{
	char		class0 = PGUNSIXBIT(sqlerrcode);
	char		class1 = PGUNSIXBIT(sqlerrcode >> 6);

	return (class0 == 'P' && class1 == 'T') ||	/* business errors */
		(class0 == '2' && class1 == '2') ||		/* data exceptions */
		(class0 == '2' && class1 == '3');		/* integrity violations */
}

/*
 * Our messages quote the offending value in double quotes (the style
 * guide's rule): a business error without a quote ("room 5 is already
 * booked at that time") names no user-supplied text and is logged as
 * usual, with the request id in application_name.  PostgreSQL's own
 * bad-input errors always echo the input.
 */
static bool
echoes_input(const ErrorData *edata)
{
	char		class0 = PGUNSIXBIT(edata->sqlerrcode);
	char		class1 = PGUNSIXBIT(edata->sqlerrcode >> 6);

	if (class0 == 'P' && class1 == 'T')
		return edata->message != NULL && strchr(edata->message, '"') != NULL;
	return is_input_error(edata->sqlerrcode);
}

static void
hide_input_errors(ErrorData *edata)
{
	if (!pgb_log_business_errors && edata->elevel == ERROR && echoes_input(edata))
		edata->output_to_server = false;
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

void
pgb_log_hygiene_init(void)
{
	DefineCustomBoolVariable("pg_booking.log_business_errors",
							 "Write business and bad-input errors (SQLSTATE classes PT, 22, 23) to the server log.",
							 "Off: they carry user-supplied values (emails, titles, guest names); the caller still gets them.",
							 &pgb_log_business_errors,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = hide_input_errors;
}
