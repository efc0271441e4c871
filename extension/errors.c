/*
 * errors.c — the shape of pg_booking's business errors, raised from C.
 */
#include "postgres.h"

#include "utils/json.h"

#include "pg_booking.h"

char *
pgb_error_detail(const char *error_code, const char *extra)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"error_code\": ");
	escape_json(&buf, error_code);
	if (extra != NULL && extra[0] != '\0')
	{
		appendStringInfoString(&buf, ", ");
		appendStringInfoString(&buf, extra);
	}
	appendStringInfoChar(&buf, '}');
	return buf.data;
}
