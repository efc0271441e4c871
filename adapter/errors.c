/*
 * errors.c — SQLSTATE to HTTP status, and the one error envelope of
 * docs/design.md: {"error_code", "message", "details", "request_id"} plus
 * PostgREST's "code" (the SQLSTATE) and "hint".
 *
 * Business errors come as SQLSTATE PTxyz (status xyz) with DETAIL a JSON
 * object holding error_code and details.  Other SQLSTATEs map the way
 * PostgREST maps them.
 */
#include "errors.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/random.h>
#include <time.h>

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if none. */
static size_t
utf8_sequence(const unsigned char *s, size_t n)
{
    size_t      len;
    unsigned    cp;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF)
        len = 2, cp = s[0] & 0x1F;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF)
        len = 3, cp = s[0] & 0x0F;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4)
        len = 4, cp = s[0] & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
    {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    /* Overlong forms, surrogates and code points past U+10FFFF. */
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* A lead byte followed only by continuation bytes, fewer than it needs. */
static bool
is_cut_character(const unsigned char *s, size_t n)
{
    size_t      need = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : 2;

    if (s[0] < 0xC2 || s[0] > 0xF4 || n >= need)
        return false;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80)
            return false;
    return true;
}

/*
 * Make s valid UTF-8 in place: a sequence cut by truncation at the end is
 * dropped, any other invalid byte becomes '?'.  JSON strings must be UTF-8,
 * and a message that is not would vanish from the envelope.
 */
void
utf8_make_valid(char *s)
{
    size_t      n = strlen(s);
    size_t      i = 0;

    while (i < n)
    {
        size_t      len = utf8_sequence((const unsigned char *) s + i, n - i);

        if (len)
        {
            i += len;
            continue;
        }
        if (is_cut_character((const unsigned char *) s + i, n - i))
        {
            s[i] = '\0';
            return;
        }
        s[i++] = '?';
    }
}

/*
 * Request ids need to be unique, not secret: a per-thread xorshift128+
 * generator, seeded once from the kernel, saves a getrandom() call per
 * request.
 */
static __thread uint64_t rid_state[2];

static uint64_t
rid_next(void)
{
    uint64_t    x = rid_state[0];
    uint64_t    const y = rid_state[1];

    rid_state[0] = y;
    x ^= x << 23;
    rid_state[1] = x ^ y ^ (x >> 17) ^ (y >> 26);
    return rid_state[1] + y;
}

void
request_id_new(char *out, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    char        text[37];
    int         k = 0;

    if (rid_state[0] == 0 && rid_state[1] == 0)
    {
        if (getrandom(rid_state, sizeof(rid_state), 0) != sizeof(rid_state) ||
            (rid_state[0] == 0 && rid_state[1] == 0))
        {
            rid_state[0] = (uint64_t) (uintptr_t) &rid_state ^ (uint64_t) time(NULL);
            rid_state[1] = 0x9e3779b97f4a7c15ULL;
        }
    }
    {
        uint64_t    r0 = rid_next(),
                    r1 = rid_next();

        memcpy(b, &r0, 8);
        memcpy(b + 8, &r1, 8);
    }
    /* 8-4-4-4-12 hex digits, as before */
    for (int i = 0; i < 16; i++)
    {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            text[k++] = '-';
        text[k++] = hex[b[i] >> 4];
        text[k++] = hex[b[i] & 15];
    }
    text[k] = '\0';
    snprintf(out, len, "%s", text);
}

void
error_set(http_error *e, int status, const char *code, const char *fmt,...)
{
    va_list     ap;
    char        buf[512];

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    utf8_make_valid(buf);
    e->status = status;
    snprintf(e->code_buf, sizeof(e->code_buf), "%s", code);
    e->error_code = e->code_buf;
    free(e->message);
    e->message = strdup(buf);
    if (!e->details)
        e->details = json_object();
}

bool
sqlstate_is_outage(const char *s)
{
    return strncmp(s, "08", 2) == 0 ||  /* connection exception */
        strncmp(s, "53", 2) == 0 ||     /* insufficient resources */
        strcmp(s, "57P01") == 0 || strcmp(s, "57P02") == 0 || strcmp(s, "57P03") == 0 ||
        strcmp(s, "57014") == 0 ||      /* statement timeout */
        strncmp(s, "58", 2) == 0 ||     /* system error */
        strncmp(s, "XX", 2) == 0;       /* internal error */
}

typedef struct sqlstate_map {
    const char *prefix;         /* a SQLSTATE or a class (two characters) */
    int         status;
    const char *code;
} sqlstate_map;

/* First match wins: exact SQLSTATEs before their class. */
static const sqlstate_map sqlstate_table[] = {
    {"28", 401, "UNAUTHORIZED"},    /* the token's role was refused (db.c) */
    {"23505", 409, "ALREADY_EXISTS"},
    {"23503", 409, "CONFLICT"},
    {"23P01", 409, "CONFLICT"},
    {"23", 422, "VALIDATION_ERROR"},
    {"22", 422, "VALIDATION_ERROR"},
    {"42501", 403, "FORBIDDEN"},
    {"42883", 404, "NOT_FOUND"},
    {"42P01", 404, "NOT_FOUND"},
    {"42", 400, "BAD_REQUEST"},
    {"P0001", 400, "BAD_REQUEST"},
    {"P0002", 404, "NOT_FOUND"},
    {"P0003", 500, "INTERNAL_ERROR"},
    {"25006", 405, "METHOD_NOT_ALLOWED"},
    {"25", 500, "INTERNAL_ERROR"},
    {"40", 409, "CONFLICT"},       /* after one retry */
    {"57014", 504, "TIMEOUT"},
    {"08", 503, "DATABASE_UNAVAILABLE"},
    {"53", 503, "DATABASE_UNAVAILABLE"},
    {"57", 503, "DATABASE_UNAVAILABLE"},
    {"58", 503, "DATABASE_UNAVAILABLE"},
    {"54", 413, "PAYLOAD_TOO_LARGE"},
    {"", 500, "INTERNAL_ERROR"},
};

/*
 * A business error may ask for response headers, as PostgREST lets a
 * RAISE do: DETAIL {"headers": {"Retry-After": "3"}}.  They are sent, not
 * shown in the details.  Which headers, and when, is the SQL's business.
 */
static void
take_headers(http_error *e, json_t *d)
{
    json_t     *h = json_object_get(d, "headers");
    const char *k;
    json_t     *v;

    if (!json_is_object(h))
        return;
    json_decref(e->headers);
    e->headers = json_array();
    json_object_foreach(h, k, v)
        if (json_is_string(v))
        json_array_append_new(e->headers, json_pack("{s:O}", k, v));
    json_object_del(d, "headers");
}

void
error_from_sql(http_error *e, const char *sqlstate, const char *message,
               const char *detail, const char *hint, bool anonymous)
{
    json_t     *d = NULL;

    free(e->message);
    e->message = strdup(message ? message : "database error");
    if (detail && detail[0] == '{')
        d = json_loads(detail, 0, NULL);
    if (!json_is_object(d))
    {
        json_decref(d);
        d = json_object();
        if (detail && sqlstate[0] != 'X')
            json_object_set_new(d, "detail", json_string(detail));
    }
    snprintf(e->sqlstate, sizeof(e->sqlstate), "%s", sqlstate);
    free(e->hint);
    e->hint = hint ? strdup(hint) : NULL;
    take_headers(e, d);

    if (sqlstate[0] == 'P' && sqlstate[1] == 'T' && strspn(sqlstate + 2, "0123456789") == 3)
    {
        json_t     *code = json_object_get(d, "error_code");

        e->status = atoi(sqlstate + 2);
        if (e->status < 400 || e->status > 599)
            e->status = 500;
        snprintf(e->code_buf, sizeof(e->code_buf), "%s",
                 json_is_string(code) ? json_string_value(code) : "ERROR");
        e->error_code = e->code_buf;
        json_object_del(d, "error_code");
    }
    else
    {
        for (const sqlstate_map *m = sqlstate_table;; m++)
            if (strncmp(sqlstate, m->prefix, strlen(m->prefix)) == 0)
            {
                e->status = m->status;
                snprintf(e->code_buf, sizeof(e->code_buf), "%s", m->code);
                break;
            }
        e->error_code = e->code_buf;
        /* As PostgREST: a privilege error without a token asks for one. */
        if (strcmp(sqlstate, "42501") == 0 && anonymous)
        {
            e->status = 401;
            snprintf(e->code_buf, sizeof(e->code_buf), "UNAUTHORIZED");
            free(e->message);
            e->message = strdup("a bearer token is required");
        }
        json_object_set_new(d, "sqlstate", json_string(sqlstate));
        /* Internal errors say nothing of the server's insides. */
        if (e->status >= 500)
        {
            free(e->message);
            e->message = strdup(e->status == 503 ? "the database is unavailable" :
                                e->status == 504 ? "the database did not answer in time" :
                                "internal error");
            json_object_clear(d);
            json_object_set_new(d, "sqlstate", json_string(sqlstate));
            free(e->hint);
            e->hint = NULL;
        }
        if (e->status == 503)
            e->retry_after = 1;
    }
    json_decref(e->details);
    e->details = d;
}

char *
error_envelope(http_error *e, const char *request_id)
{
    json_t     *o = json_object();
    char       *s;

    json_object_set_new(o, "error_code", json_string(e->error_code ? e->error_code : "INTERNAL_ERROR"));
    if (e->message)
        utf8_make_valid(e->message);
    json_object_set_new(o, "message", json_string(e->message ? e->message : ""));
    if (!e->details)
        e->details = json_object();
    json_object_set(o, "details", e->details);
    json_object_set_new(o, "request_id", json_string(request_id));
    if (e->sqlstate[0])
        json_object_set_new(o, "code", json_string(e->sqlstate));
    else
    {
        char        code[8];

        snprintf(code, sizeof(code), "PT%03d", e->status);
        json_object_set_new(o, "code", json_string(code));
    }
    json_object_set_new(o, "hint", e->hint ? json_string(e->hint) : json_null());
    s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

void
error_free(http_error *e)
{
    free(e->message);
    free(e->hint);
    json_decref(e->details);
    json_decref(e->headers);
    e->message = NULL;
    e->hint = NULL;
    e->details = NULL;
    e->headers = NULL;
}
