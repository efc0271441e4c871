/*
 * routes.c — the route table of API.md.  Adding a route is one line.
 *
 * Path parameters are named after the function's arguments; query string
 * and JSON body keys are argument names too ("limit" and "offset" are the
 * lists' "lim" and "off").  A route whose function does not exist in the
 * database yet answers 404; POST /rpc/{function} reaches every function.
 */
#include "routes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "db.h"

static const route table[] = {
    /* users */
    {"POST", "/users/register", "register", 201},
    {"POST", "/users/login", "login", 200},
    {"POST", "/users/refresh", "refresh", 200},
    {"POST", "/users/logout", "logout", 204},
    {"GET", "/users/me", "me", 200},
    {"PATCH", "/users/me", "update_me", 200},
    {"PUT", "/users/me/availability", "set_my_availability", 200, "intervals"},
    {"GET", "/users", "list_users", 200},
    {"GET", "/users/{id}", "get_user", 200},
    {"PATCH", "/users/{id}", "update_user", 200},
    {"GET", "/users/{user_id}/availability", "user_availability", 200},
    /* rooms and bookings */
    {"GET", "/rooms", "list_rooms", 200},
    {"POST", "/rooms", "create_room", 201},
    {"GET", "/rooms/{id}", "get_room", 200},
    {"PATCH", "/rooms/{id}", "update_room", 200},
    {"DELETE", "/rooms/{id}", "delete_room", 204},
    {"GET", "/rooms/{room_id}/availability", "room_availability", 200},
    {"GET", "/rooms/{room_id}/schedule", "room_schedule", 200},
    {"GET", "/rooms/{room_id}/reviews", "list_room_reviews", 200},
    {"POST", "/bookings", "create_booking", 201},
    {"GET", "/bookings", "list_bookings", 200},
    {"GET", "/bookings/{id}", "get_booking", 200},
    {"PATCH", "/bookings/{id}", "update_booking", 200},
    {"DELETE", "/bookings/{id}", "cancel_booking", 200},
    /* reviews */
    {"POST", "/reviews", "create_review", 201},
    {"PATCH", "/reviews/{id}", "update_review", 200},
    {"DELETE", "/reviews/{id}", "delete_review", 204},
    {"POST", "/reviews/{id}/votes", "vote_review", 200},
    {"POST", "/reviews/{id}/flag", "flag_review", 200},
    {"GET", "/moderation/reviews", "moderation_reviews", 200},
    {"POST", "/moderation/reviews/{id}/hide", "hide_review", 200},
    {"POST", "/moderation/reviews/{id}/restore", "restore_review", 200},
    /* hotels, inventory, reservations */
    {"GET", "/hotels", "list_hotels", 200},
    {"POST", "/hotels", "create_hotel", 201},
    {"GET", "/hotels/{id}", "get_hotel", 200},
    {"GET", "/inventory", "list_inventory", 200},
    {"GET", "/inventory/{hotel_id}", "list_inventory", 200},
    {"GET", "/inventory/hotel_name/{hotel_id}", "hotel_name", 200},
    {"POST", "/inventory/{hotel_id}/adjust", "adjust_inventory", 200},
    {"PUT", "/inventory/{hotel_id}/restrictions", "set_restrictions", 200},
    {"GET", "/availability", "search_availability", 200},
    {"GET", "/availability/common", "common_availability", 200},
    {"POST", "/meetings/suggest", "suggest_meetings", 200},
    {"POST", "/reservations", "create_reservation", 201},
    {"GET", "/reservations", "list_reservations", 200},
    {"GET", "/reservations/{id}", "get_reservation", 200},
    {"PATCH", "/reservations/{id}", "update_reservation", 200},
    {"DELETE", "/reservations/{id}", "cancel_reservation", 200},
    {"POST", "/reservations/{id}/check-in", "check_in", 200},
    {"POST", "/reservations/{id}/check-out", "check_out", 200},
    /* analytics and jobs */
    {"GET", "/admin/analytics/bookings/summary", "analytics_bookings_summary", 200},
    {"GET", "/admin/analytics/bookings/by-room", "analytics_bookings_by_room", 200},
    {"GET", "/admin/analytics/bookings/per-day", "analytics_bookings_per_day", 200},
    {"GET", "/admin/analytics/reviews/average-rating-by-room", "analytics_average_rating_by_room", 200},
    {"GET", "/admin/analytics/occupancy", "analytics_occupancy", 200},
    {"GET", "/admin/analytics/rate-limits", "analytics_rate_limits", 200},
    {"POST", "/admin/jobs/checkout/run", "run_checkout", 200},
    {"GET", "/admin/jobs", "list_jobs", 200},
    {"GET", "/admin/audit", "list_audit", 200},
    {"GET", "/events", "list_events", 200},
};
#define NROUTES ((int) (sizeof(table) / sizeof(table[0])))

static const char *special_labels[ROUTE_NSPECIAL] = {
    "POST /rpc/{function}", "GET /health", "GET /ready", "GET /metrics", "GET /openapi.json", "unmatched"
};
static const char *labels[NROUTES + ROUTE_NSPECIAL];

int
routes_count(void)
{
    return NROUTES + ROUTE_NSPECIAL;
}

const char *const *
routes_labels(void)
{
    if (!labels[0])
    {
        for (int i = 0; i < NROUTES; i++)
        {
            char        l[160];

            snprintf(l, sizeof(l), "%s %s", table[i].method, table[i].pattern);
            labels[i] = strdup(l);
        }
        for (int i = 0; i < ROUTE_NSPECIAL; i++)
            labels[NROUTES + i] = special_labels[i];
    }
    return labels;
}

int
route_label_special(int which)
{
    return NROUTES + which;
}

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
                static __thread char names[ROUTE_MAX_PARAMS][64];

                snprintf(names[n], sizeof(names[n]), "%.*s", (int) (close - p - 1), p + 1);
                m->names[n] = names[n];
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

int
routes_match(const char *method, const char *path, route_match *m, char *allow, size_t allowlen)
{
    size_t      alen = 0;
    const route *literal = NULL;

    allow[0] = '\0';
    /* A literal segment beats a parameter: /users/me before /users/{id}. */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < NROUTES; i++)
        {
            bool        has_param = strchr(table[i].pattern, '{') != NULL;

            if (has_param != (pass == 1) || !path_matches(table[i].pattern, path, NULL))
                continue;
            if (literal && has_param)
                continue;       /* a literal route owns this path */
            if (!has_param)
                literal = &table[i];
            if (strcmp(table[i].method, method) == 0)
            {
                m->route = &table[i];
                m->index = i;
                path_matches(table[i].pattern, path, m);
                return 0;
            }
            if (!strstr(allow, table[i].method))
                alen += snprintf(allow + alen, allowlen - alen, "%s%s", alen ? ", " : "", table[i].method);
        }
    return alen ? 405 : 404;
}

static const char *
openapi_type(arg_kind k)
{
    switch (k)
    {
        case ARG_INT:
            return "integer";
        case ARG_NUMERIC:
            return "number";
        case ARG_BOOL:
            return "boolean";
        case ARG_TEXT_ARRAY:
        case ARG_INT_ARRAY:
            return "array";
        case ARG_JSON:
            return "object";
        default:
            return "string";
    }
}

static json_t *
error_response(const char *what)
{
    return json_pack("{s:s, s:{s:{s:{s:s}}}}", "description", what,
                     "content", "application/json", "schema", "$ref", "#/components/schemas/Error");
}

char *
routes_openapi(void)
{
    json_t     *paths = json_object();
    json_t     *doc;
    char       *s;

    for (int i = 0; i < NROUTES; i++)
    {
        const route *r = &table[i];
        const api_function *f = db_find_function(r->function);
        json_t     *item = json_object_get(paths, r->pattern);
        json_t     *op = json_object();
        json_t     *params = json_array();
        json_t     *props = json_object();
        json_t     *required = json_array();
        json_t     *responses = json_object();
        char        method[16];
        char        status[8];

        if (!f)
        {
            json_decref(op);
            json_decref(params);
            json_decref(props);
            json_decref(required);
            json_decref(responses);
            continue;           /* not in this database (yet) */
        }
        if (!item)
        {
            item = json_object();
            json_object_set_new(paths, r->pattern, item);
        }
        for (int a = 0; a < f->nargs; a++)
        {
            char        placeholder[80];
            const char *name = f->argnames[a];
            const char *in;

            snprintf(placeholder, sizeof(placeholder), "{%s}", name);
            if (strstr(r->pattern, placeholder))
                in = "path";
            else if (strcmp(r->method, "GET") == 0 || strcmp(r->method, "DELETE") == 0)
                in = "query";
            else
            {
                json_object_set_new(props, name, json_pack("{s:s}", "type", openapi_type(f->argkinds[a])));
                if (a < f->nrequired)
                    json_array_append_new(required, json_string(name));
                continue;
            }
            json_array_append_new(params, json_pack("{s:s, s:s, s:b, s:{s:s}}",
                                                    "name", strcmp(name, "lim") == 0 ? "limit" :
                                                    strcmp(name, "off") == 0 ? "offset" : name,
                                                    "in", in, "required", strcmp(in, "path") == 0 || a < f->nrequired,
                                                    "schema", "type", openapi_type(f->argkinds[a])));
        }
        json_object_set_new(op, "operationId", json_string(r->function));
        json_object_set_new(op, "summary", json_string(f->comment));
        json_object_set_new(op, "parameters", params);
        if (json_object_size(props))
            json_object_set_new(op, "requestBody", json_pack("{s:b, s:{s:{s:{s:s, s:o, s:o}}}}",
                                                             "required", 1, "content", "application/json", "schema",
                                                             "type", "object", "properties", props, "required", required));
        else
        {
            json_decref(props);
            json_decref(required);
        }
        snprintf(status, sizeof(status), "%d", r->success);
        json_object_set_new(responses, status, json_pack("{s:s}", "description", "success"));
        json_object_set_new(responses, "4XX", error_response("client error (envelope)"));
        json_object_set_new(responses, "503", error_response("database unavailable or circuit open"));
        json_object_set_new(op, "responses", responses);
        for (int c = 0; r->method[c] && c < 15; c++)
            method[c] = r->method[c] + ('a' - 'A'), method[c + 1] = '\0';
        json_object_set_new(item, method, op);
    }
    json_object_set_new(paths, "/rpc/{function}", json_pack("{s:{s:s, s:[{s:s, s:s, s:b, s:{s:s}}], s:{s:{s:s}}}}",
                                                            "post", "summary", "call any api function with a JSON object of named arguments",
                                                            "parameters", "name", "function", "in", "path", "required", 1, "schema", "type", "string",
                                                            "responses", "200", "description", "the function's result"));
    doc = json_pack("{s:s, s:{s:s, s:s}, s:o, s:{s:{s:{s:s, s:{s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}}}}, s:{s:{s:s, s:s, s:s}}}, s:[{s:[]}]}",
                    "openapi", "3.0.3",
                    "info", "title", "pg_booking", "version", PGB_VERSION,
                    "paths", paths,
                    "components", "schemas", "Error", "type", "object", "properties",
                    "error_code", "type", "string", "message", "type", "string",
                    "details", "type", "object", "request_id", "type", "string",
                    "securitySchemes", "bearer", "type", "http", "scheme", "bearer", "bearerFormat", "JWT",
                    "security", "bearer");
    s = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return s;
}
