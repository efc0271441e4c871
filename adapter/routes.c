/*
 * routes.c — the routes of booking.http_routes: matching a request, and the
 * OpenAPI document.
 *
 * Every route is a row in SQL next to its function (extension script,
 * "HTTP routes declared once"); the adapter reads the rows with the function
 * catalog (db.c) and holds no list of its own.  Path segments "{name}" bind
 * the function's argument "name"; for GET and DELETE the other arguments
 * come from the query string, otherwise from a JSON object body.  The
 * OpenAPI document is built from the same rows and signatures, so it cannot
 * drift from what is served; docs/api.md is generated from the document.
 */
#include "routes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* Does path match pattern?  Fills the parameters when m is given. */
static bool
path_matches(const char *pattern, const char *path, route_match *m)
{
    const char *p = pattern;
    const char *s = path;
    int         n = 0;

    while (*p && *s)
    {
        if (*p == '{')
        {
            const char *close = strchr(p, '}');
            size_t      len = strcspn(s, "/");

            if (!close || len == 0 || len >= sizeof(m->values[0]) || n >= ROUTE_MAX_PARAMS)
                return false;
            if (m)
            {
                snprintf(m->names[n], sizeof(m->names[n]), "%.*s", (int) (close - p - 1), p + 1);
                snprintf(m->values[n], sizeof(m->values[n]), "%.*s", (int) len, s);
            }
            n++;
            p = close + 1;
            s += len;
        }
        else if (*p++ != *s++)
            return false;
    }
    if (*p || *s)
        return false;
    if (m)
        m->nparams = n;
    return true;
}

static void
allow_add(char *allow, size_t allowlen, const char *method)
{
    size_t      len = strlen(allow);

    if (!strstr(allow, method))
        snprintf(allow + len, allowlen - len, "%s%s", len ? ", " : "", method);
}

static int
match_in(const api_function *fns, int n, const char *method, const char *path, route_match *m,
         char *allow, size_t allowlen)
{
    bool        literal_seen = false;
    const char *want = strcmp(method, "HEAD") == 0 ? "GET" : method;

    allow[0] = '\0';
    if (!fns)
        return 503;
    /* A literal path beats a parameter: /users/me before /users/{id}. */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n; i++)
            for (int k = 0; k < fns[i].nroutes; k++)
            {
                const api_route *r = &fns[i].routes[k];
                bool        has_param = strchr(r->path, '{') != NULL;

                if (has_param != (pass == 1) || (has_param && literal_seen) ||
                    !path_matches(r->path, path, NULL))
                    continue;
                literal_seen |= !has_param;
                if (strcmp(r->method, want) == 0)
                {
                    m->fn = &fns[i];
                    m->route = r;
                    path_matches(r->path, path, m);
                    allow[0] = '\0';
                    return 0;
                }
                allow_add(allow, allowlen, r->method);
                if (strcmp(r->method, "GET") == 0)
                    allow_add(allow, allowlen, "HEAD");
            }
    return allow[0] ? 405 : 404;
}

int
routes_match(const char *method, const char *path, route_match *m, char *allow, size_t allowlen)
{
    int         n;
    const api_function *fns = db_functions(&n);

    return match_in(fns, n, method, path, m, allow, allowlen);
}

bool
routes_label(const char *method, const char *path, char *label, size_t len)
{
    int         n;
    const api_function *fns = db_functions_cached(&n);
    route_match m = {0};
    char        allow[64];

    if (match_in(fns, n, method, path, &m, allow, sizeof(allow)) != 0)
        return false;
    snprintf(label, len, "%s %s", m.route->method, m.route->path);
    return true;
}

/* The JSON schema of argument a, from its SQL type. */
static json_t *
arg_schema(const api_function *f, int a)
{
    const char *t = f->argtypes[a];

    switch (f->argkinds[a])
    {
        case ARG_INT:
            return json_pack("{s:s, s:s}", "type", "integer", "format", strcmp(t, "integer") == 0 ? "int32" : "int64");
        case ARG_NUMERIC:
            return json_pack("{s:s}", "type", "number");
        case ARG_BOOL:
            return json_pack("{s:s}", "type", "boolean");
        case ARG_TEXT_ARRAY:
            return json_pack("{s:s, s:{s:s}}", "type", "array", "items", "type", "string");
        case ARG_INT_ARRAY:
            return json_pack("{s:s, s:{s:s}}", "type", "array", "items", "type", "integer");
        case ARG_JSON:
            return json_pack("{s:s}", "description", "any JSON value (jsonb)");
        default:
            if (strcmp(t, "uuid") == 0)
                return json_pack("{s:s, s:s}", "type", "string", "format", "uuid");
            if (strcmp(t, "date") == 0)
                return json_pack("{s:s, s:s}", "type", "string", "format", "date");
            return json_pack("{s:s}", "type", "string");
    }
}

static json_t *
ref(const char *what, const char *name)
{
    char        s[128];

    snprintf(s, sizeof(s), "#/components/%s/%s", what, name);
    return json_pack("{s:s}", "$ref", s);
}

/*
 * The summary: the COMMENT ("who: what; errors...") up to the first ';'
 * after who may call it.
 */
static json_t *
summary_of(const char *comment)
{
    const char *colon = strchr(comment, ':');
    size_t      from = colon ? (size_t) (colon - comment) : 0;
    size_t      n = from + strcspn(comment + from, ";");

    return n ? json_stringn(comment, n) : json_string("(no comment)");
}

static json_t *
error_responses(json_t *responses)
{
    json_object_set_new(responses, "4XX", ref("responses", "ClientError"));
    json_object_set_new(responses, "5XX", ref("responses", "ServerError"));
    return responses;
}

/*
 * The success answer: the function's declared result schema
 * (booking.http_results), else the generic "the function's jsonb result".
 */
static json_t *
success_response(int status, json_t *responses, const char *result_schema, const char *produces)
{
    char        code[8];
    json_t     *schema = result_schema ? json_loads(result_schema, 0, NULL) : NULL;
    size_t      type_len = produces ? strcspn(produces, "; ") : 0;

    snprintf(code, sizeof(code), "%d", status);
    if (status == 204)
        json_object_set_new(responses, code, json_pack("{s:s}", "description", "done, no body"));
    else if (produces && !(type_len == strlen("application/json") && strncmp(produces, "application/json", type_len) == 0))
    {
        /* A text answer (booking.http_routes.produces): the function's text as it is. */
        char        media_type[128];

        snprintf(media_type, sizeof(media_type), "%.*s", (int) type_len, produces);
        json_object_set_new(responses, code, json_pack("{s:s, s:{s:{s:{s:s}}}}", "description", "the function's text",
                                                       "content", media_type, "schema", "type", "string"));
        json_decref(schema);
    }
    else if (schema)
        json_object_set_new(responses, code, json_pack("{s:s, s:{s:{s:o}}}", "description", "the function's result",
                                                       "content", "application/json", "schema", schema));
    else
        json_object_set_new(responses, code, ref("responses", "Result"));
    return error_responses(responses);
}

/* One operation of the document: a route of booking.http_routes. */
static json_t *
route_operation(const api_function *f, const api_route *r)
{
    bool        query = strcmp(r->method, "GET") == 0 || strcmp(r->method, "DELETE") == 0;
    json_t     *op = json_object();
    json_t     *params = json_array();
    json_t     *props = json_object();
    json_t     *required = json_array();
    char        desc[1200];

    for (int a = 0; a < f->nargs; a++)
    {
        char        placeholder[80];
        bool        in_path;

        snprintf(placeholder, sizeof(placeholder), "{%s}", f->argnames[a]);
        in_path = strstr(r->path, placeholder) != NULL;
        if (in_path || query)
            json_array_append_new(params, json_pack("{s:s, s:s, s:b, s:o}", "name", in_path ? f->argnames[a] : f->httpnames[a],
                                                    "in", in_path ? "path" : "query",
                                                    "required", in_path || a < f->nrequired, "schema", arg_schema(f, a)));
        else if (!r->body_argument)
        {
            json_object_set_new(props, f->httpnames[a], arg_schema(f, a));
            if (a < f->nrequired)
                json_array_append_new(required, json_string(f->httpnames[a]));
        }
        else if (strcmp(r->body_argument, f->argnames[a]) == 0)
            json_object_set_new(op, "requestBody", json_pack("{s:b, s:{s:{s:o}}}", "required", 1, "content",
                                                             "application/json", "schema", arg_schema(f, a)));
    }
    if (json_object_size(props))
    {
        json_t     *schema = json_pack("{s:s, s:o, s:b}", "type", "object", "properties", props,
                                       "additionalProperties", 0);

        /* OpenAPI 3.0 refuses an empty "required". */
        if (json_array_size(required))
            json_object_set(schema, "required", required);
        json_object_set_new(op, "requestBody", json_pack("{s:b, s:{s:{s:o}}}", "required", json_array_size(required) > 0,
                                                         "content", "application/json", "schema", schema));
    }
    else
        json_decref(props);
    json_decref(required);
    if (f->writes)
        snprintf(desc, sizeof(desc), "%s\n\nCalls `api.%s`.", f->comment, f->name);
    else
        snprintf(desc, sizeof(desc), "%s\n\nCalls `api.%s`; also `GET /rpc/%s`.", f->comment, f->name, f->name);
    json_object_set_new(op, "operationId", json_string(r->operation_id));
    json_object_set_new(op, "summary", summary_of(f->comment));
    json_object_set_new(op, "description", json_string(desc));
    json_object_set_new(op, "parameters", params);
    json_object_set_new(op, "responses", success_response(r->success, json_object(), f->result_schema, r->produces));
    if (r->is_public)
        json_object_set_new(op, "security", json_array());
    return op;
}

static void
set_operation(json_t *paths, const char *path, const char *method, json_t *op)
{
    json_t     *item = json_object_get(paths, path);
    char        lower[16];
    int         c;

    if (!item)
    {
        item = json_object();
        json_object_set_new(paths, path, item);
    }
    for (c = 0; method[c] && c < 15; c++)
        lower[c] = method[c] >= 'A' && method[c] <= 'Z' ? method[c] + ('a' - 'A') : method[c];
    lower[c] = '\0';
    json_object_set_new(item, lower, op);
}

/* POST and GET /rpc/{function}, and the adapter's own endpoints. */
static void
adapter_operations(json_t *paths)
{
    json_t     *fn_param = json_pack("{s:s, s:s, s:b, s:{s:s, s:s}}", "name", "function", "in", "path", "required", 1,
                                     "schema", "type", "string", "pattern", "^[a-z0-9_]+$");
    static const struct { const char *path; const char *id; const char *summary; } ops[] = {
        {"/health", "health", "liveness: the adapter answers (no database call)"},
        {"/ready", "ready", "readiness: the database answers and the circuit breaker is not open"},
        {"/metrics", "metrics", "Prometheus metrics: requests by route and status, latency, breaker, pool"},
        {"/openapi.json", "openapi", "this document, built from booking.http_routes and the api functions"},
    };

    set_operation(paths, "/rpc/{function}", "POST",
                  json_pack("{s:s, s:s, s:s, s:[O], s:{s:b, s:{s:{s:{s:s}}}}, s:o}",
                            "operationId", "call_function",
                            "summary", "call any api function with a JSON object of named arguments (PostgREST)",
                            "description", "The object's keys are the function's argument names.",
                            "parameters", fn_param,
                            "requestBody", "required", 0, "content", "application/json", "schema", "type", "object",
                            "responses", success_response(200, json_object(), NULL, NULL)));
    set_operation(paths, "/rpc/{function}", "GET",
                  json_pack("{s:s, s:s, s:s, s:[O, {s:s, s:s, s:s, s:b, s:{s:s}}], s:o}",
                            "operationId", "call_read_only_function",
                            "summary", "call an api function that does not write, arguments in the query string (PostgREST)",
                            "description", "Only functions declared STABLE or IMMUTABLE; a writing one answers 405.",
                            "parameters", fn_param, "name", "arguments", "in", "query", "style", "form", "explode", 1,
                            "schema", "type", "object",
                            "responses", success_response(200, json_object(), NULL, NULL)));
    json_decref(fn_param);
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
    {
        json_t     *responses = json_object();

        if (strcmp(ops[i].id, "metrics") == 0)
            json_object_set_new(responses, "200", json_pack("{s:s, s:{s:{s:{s:s}}}}", "description", "Prometheus text format",
                                                            "content", "text/plain", "schema", "type", "string"));
        else
            json_object_set_new(responses, "200", ref("responses", "Result"));
        json_object_set_new(responses, "503", ref("responses", "ServerError"));
        json_object_set_new(responses, "4XX", ref("responses", "ClientError"));
        set_operation(paths, ops[i].path, "GET", json_pack("{s:s, s:s, s:[], s:o}", "operationId", ops[i].id,
                                                           "summary", ops[i].summary, "security", "responses", responses));
    }
}

static json_t *
components(void)
{
    const char *named = db_result_schemas();
    json_t     *schemas = named ? json_loads(named, 0, NULL) : NULL;
    json_t     *doc;
    json_t     *error = json_pack("{s:s, s:[s,s,s,s,s,s], s:{s:{s:s, s:s}, s:{s:s}, s:{s:s, s:b}, s:{s:s}, s:{s:s, s:s}, s:{s:s, s:b}}}",
                                  "type", "object",
                                  "required", "error_code", "message", "details", "request_id", "code", "hint",
                                  "properties",
                                  "error_code", "type", "string", "description", "what went wrong, e.g. BOOKING_CONFLICT",
                                  "message", "type", "string",
                                  "details", "type", "object", "additionalProperties", 1,
                                  "request_id", "type", "string",
                                  "code", "type", "string", "description", "the SQLSTATE (PTxyz: HTTP status xyz), as PostgREST",
                                  "hint", "type", "string", "nullable", 1);
    json_t     *result = json_pack("{s:[{s:s}, {s:s, s:{}}], s:s}", "oneOf", "type", "object", "type", "array", "items",
                                   "description", "the function's jsonb result");

    doc = json_pack("{s:{s:o, s:o}, s:{s:{s:s, s:{s:{s:o}}}, s:{s:s, s:{s:{s:o}}}, s:{s:s, s:{s:{s:o}}}}, "
                     "s:{s:{s:s, s:s, s:s}}}",
                     "schemas", "Error", error, "Result", result,
                     "responses",
                     "Result", "description", "the function's result", "content", "application/json",
                     "schema", ref("schemas", "Result"),
                     "ClientError", "description", "the error envelope (4xx)", "content", "application/json",
                     "schema", ref("schemas", "Error"),
                     "ServerError", "description", "the database is unavailable, the circuit is open, or an internal error",
                     "content", "application/json", "schema", ref("schemas", "Error"),
                     "securitySchemes", "bearer", "type", "http", "scheme", "bearer", "bearerFormat", "JWT");
    /* The declared result schemas (booking.http_schemas) beside ours. */
    if (json_is_object(schemas))
        json_object_update_missing(json_object_get(doc, "schemas"), schemas);
    json_decref(schemas);
    return doc;
}

char *
routes_openapi(void)
{
    int         n;
    const api_function *fns = db_functions(&n);
    json_t     *paths = json_object();
    json_t     *doc;
    char       *s;

    if (!fns)
    {
        json_decref(paths);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        for (int k = 0; k < fns[i].nroutes; k++)
            set_operation(paths, fns[i].routes[k].path, fns[i].routes[k].method,
                          route_operation(&fns[i], &fns[i].routes[k]));
    adapter_operations(paths);
    doc = json_pack("{s:s, s:{s:s, s:s, s:s, s:{s:s, s:s}}, s:[{s:s, s:s}], s:o, s:o, s:[{s:[]}]}",
                    "openapi", "3.0.3",
                    "info", "title", "pg_booking", "version", PGB_VERSION,
                    "description", "Meeting rooms and hotel rooms booked inside PostgreSQL. Every route calls one api function.",
                    "license", "name", "PostgreSQL License", "url", "https://opensource.org/license/postgresql",
                    "servers", "url", "/", "description", "the adapter that served this document",
                    "paths", paths,
                    "components", components(),
                    "security", "bearer");
    s = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(doc);
    return s;
}
