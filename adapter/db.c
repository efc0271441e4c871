/*
 * db.c — connection pool and the per-request transaction.
 *
 * A request is one round trip: in pipeline mode we send the request settings
 * (role, claims, request id, client IP, statement timeout, read-only) and the
 * function call, then a Sync.  Statements before a Sync form one implicit
 * transaction, so set_config(..., true) lasts exactly as long as the call,
 * an error rolls everything back, and success commits at the Sync.
 */
#include "db.h"

#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "metrics.h"

/*
 * Statements are prepared once per connection: the setup statement and one
 * per (function, argument names) seen on it.  A statement is found again by
 * the catalog's own pointers (the function, and its argument names in the
 * order given), so a request whose statement is prepared builds no SQL text:
 * a reloaded catalog has new pointers and prepares afresh (the catalog
 * version is the key), and the old catalogs' pointers stay valid until
 * shutdown (db.c keeps them).  A new connection starts with an empty cache.
 */
#define MAX_PREPARED 64
struct conn_pool;
typedef struct prepared_stmt {
    const api_function *fn;
    int         nargs;
    const char **argnames;      /* the catalog's strings: compared by address */
} prepared_stmt;

typedef struct slot {
    struct conn_pool *owner;
    PGconn     *conn;
    bool        in_use;         /* atomic: taken by compare-and-swap */
    bool        setup_prepared;
    bool        explicit_tx;    /* BEGIN/COMMIT around the call: a Citus database */
    int         nprepared;
    prepared_stmt prepared[MAX_PREPARED];   /* statement name is "s<index>" */
} slot;

static void forget_prepared(slot *s);

/*
 * Two pools of the same kind: the primary's (every write, the catalog, and
 * every read when no read DSN is set) and the read replica's (ADAPTER_READ_DSN,
 * GETs of STABLE functions; size 0 when unset).
 */
typedef struct conn_pool {
    const char *name;           /* the upstream's name in /metrics */
    pthread_mutex_t lock;       /* only for waiting: taking and giving back are atomic */
    pthread_cond_t freed;
    slot       *slots;
    int         size;
    int         in_use;         /* atomic */
    int         waiters;        /* atomic: callers asleep on freed */
    int         wait_ms;
    char        timeout[32];
    char       *conninfo;
} conn_pool;

static conn_pool pool = {.name = "primary", .lock = PTHREAD_MUTEX_INITIALIZER, .freed = PTHREAD_COND_INITIALIZER};
static conn_pool read_pool = {.name = "replica", .lock = PTHREAD_MUTEX_INITIALIZER, .freed = PTHREAD_COND_INITIALIZER};

typedef struct catalog {
    api_function *fns;
    int         n;
    char       *roles;          /* ",role,role,": what a token may name */
    char       *schemas;        /* booking.http_schemas as one JSON object, or NULL */
    uint64_t    fingerprint;    /* of the catalog query's answer */
    struct catalog *older;      /* replaced catalogs stay valid until shutdown; only a
                                 * changed catalog replaces one */
} catalog;

static pthread_mutex_t catalog_lock = PTHREAD_MUTEX_INITIALIZER;
static catalog *current_catalog;
static time_t catalog_loaded_at;
static bool catalog_loading;
#define CATALOG_TTL 10

static int
pool_init(conn_pool *p, const char *conninfo, int pool_size, int wait_ms, int statement_timeout_ms)
{
    p->slots = calloc(pool_size, sizeof(slot));
    if (!p->slots)
        return -1;
    for (int i = 0; i < pool_size; i++)
        p->slots[i].owner = p;
    p->size = pool_size;
    p->wait_ms = wait_ms;
    p->conninfo = strdup(conninfo);
    snprintf(p->timeout, sizeof(p->timeout), "%d", statement_timeout_ms);
    return 0;
}

int
db_init(const char *conninfo, int pool_size, int wait_ms, int statement_timeout_ms)
{
    return pool_init(&pool, conninfo, pool_size, wait_ms, statement_timeout_ms);
}

int
db_init_read(const char *conninfo, int pool_size, int wait_ms, int statement_timeout_ms)
{
    return pool_init(&read_pool, conninfo, pool_size, wait_ms, statement_timeout_ms);
}

bool
db_has_read_pool(void)
{
    return read_pool.size > 0;
}

static void
free_catalog(catalog *c)
{
    while (c)
    {
        catalog    *older = c->older;

        for (int i = 0; i < c->n; i++)
        {
            api_function *f = &c->fns[i];

            for (int a = 0; a < f->nargs; a++)
            {
                free(f->argnames[a]);
                free(f->httpnames[a]);
                free(f->argtypes[a]);
            }
            for (int r = 0; r < f->nroutes; r++)
            {
                free(f->routes[r].method);
                free(f->routes[r].path);
                free(f->routes[r].operation_id);
                free(f->routes[r].body_argument);
                free(f->routes[r].produces);
            }
            free(f->routes);
            free(f->argnames);
            free(f->httpnames);
            free(f->argtypes);
            free(f->argkinds);
            free(f->name);
            free(f->comment);
            free(f->result_schema);
        }
        free(c->fns);
        free(c->roles);
        free(c->schemas);
        free(c);
        c = older;
    }
}

static void
pool_shutdown(conn_pool *p)
{
    pthread_mutex_lock(&p->lock);
    for (int i = 0; i < p->size; i++)
    {
        if (p->slots[i].conn)
            PQfinish(p->slots[i].conn);
        forget_prepared(&p->slots[i]);
    }
    free(p->slots);
    p->slots = NULL;
    p->size = 0;
    free(p->conninfo);
    p->conninfo = NULL;
    pthread_mutex_unlock(&p->lock);
}

void
db_shutdown(void)
{
    pool_shutdown(&pool);
    pool_shutdown(&read_pool);
    free_catalog(current_catalog);
    current_catalog = NULL;
}

int
db_pool_in_use(void)
{
    return __atomic_load_n(&pool.in_use, __ATOMIC_RELAXED);
}

int
db_pool_size(void)
{
    return pool.size;
}

int
db_read_pool_in_use(void)
{
    return __atomic_load_n(&read_pool.in_use, __ATOMIC_RELAXED);
}

int
db_read_pool_size(void)
{
    return read_pool.size;
}

/*
 * An idle pooled connection has nothing to say: the server sends it nothing
 * until it is asked.  If its socket is readable, the server closed it or is
 * closing it (the message before an immediate shutdown, then EOF).  Found
 * before use, a restart costs no failed request and no half-open probe
 * lands on a connection that died with the old server.
 */
static bool
idle_connection_alive(PGconn *conn)
{
    struct pollfd p = {.fd = PQsocket(conn), .events = POLLIN};

    return PQstatus(conn) == CONNECTION_OK && p.fd >= 0 && poll(&p, 1, 0) == 0;
}

static bool
try_take(slot *s)
{
    bool        expected = false;

    return __atomic_compare_exchange_n(&s->in_use, &expected, true, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}

/*
 * Give a slot back: a plain atomic store, and a wake-up only when someone
 * sleeps.  A waiter counts itself and then looks for a slot under the lock,
 * so a slot freed before it sleeps is seen, and one freed after is signalled.
 */
static void
give_back(slot *s)
{
    conn_pool  *p = s->owner;

    __atomic_store_n(&s->in_use, false, __ATOMIC_SEQ_CST);
    __atomic_sub_fetch(&p->in_use, 1, __ATOMIC_RELAXED);
    if (__atomic_load_n(&p->waiters, __ATOMIC_SEQ_CST) > 0)
    {
        pthread_mutex_lock(&p->lock);
        pthread_cond_signal(&p->freed);
        pthread_mutex_unlock(&p->lock);
    }
}

/* After a connection failure: every dead idle connection goes at once, not one per request. */
static void
sweep_after_failure(conn_pool *p)
{
    for (int i = 0; i < p->size; i++)
    {
        slot       *s = &p->slots[i];

        if (!try_take(s))
            continue;
        __atomic_add_fetch(&p->in_use, 1, __ATOMIC_RELAXED);
        if (s->conn && !idle_connection_alive(s->conn))
        {
            PQfinish(s->conn);
            s->conn = NULL;
            forget_prepared(s);
        }
        give_back(s);
    }
}

/*
 * Each thread starts looking at a slot of its own, so threads that run side
 * by side take different slots without fighting over one, and a thread
 * usually finds the connection (and the prepared statements) it used last.
 */
static __thread unsigned preferred_slot;
static unsigned next_preferred;

/* A free slot, taken without a lock; connected ones first.  NULL when none is free. */
static slot *
take_free(conn_pool *p)
{
    unsigned    start;

    if (p->size == 0)
        return NULL;
    if (preferred_slot == 0)
        preferred_slot = __atomic_add_fetch(&next_preferred, 1, __ATOMIC_RELAXED);
    start = preferred_slot % (unsigned) p->size;
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < p->size; k++)
        {
            slot       *s = &p->slots[(start + k) % (unsigned) p->size];

            if (__atomic_load_n(&s->in_use, __ATOMIC_RELAXED) || (pass == 0 && !s->conn))
                continue;
            if (try_take(s))
            {
                __atomic_add_fetch(&p->in_use, 1, __ATOMIC_RELAXED);
                return s;
            }
        }
    return NULL;
}

/* The one connection about to be used is checked, not every idle one. */
static void
drop_if_dead(slot *s)
{
    if (s->conn && !idle_connection_alive(s->conn))
    {
        PQfinish(s->conn);
        s->conn = NULL;
        forget_prepared(s);
    }
}

/* A free slot of pool p, waiting up to wait_ms; NULL when none came free. */
static slot *
acquire_slot(conn_pool *p)
{
    struct timespec deadline;
    slot       *s = take_free(p);

    if (s)
        goto found;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += p->wait_ms / 1000;
    deadline.tv_nsec += (long) (p->wait_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000)
    {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&p->lock);
    __atomic_add_fetch(&p->waiters, 1, __ATOMIC_SEQ_CST);
    while (!(s = take_free(p)) && pthread_cond_timedwait(&p->freed, &p->lock, &deadline) == 0)
        ;
    __atomic_sub_fetch(&p->waiters, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&p->lock);
    if (!s)
        return NULL;
found:
    drop_if_dead(s);
    return s;
}

/* acquire_slot, with the wait shown in /metrics (waiters now, time waited). */
static slot *
acquire_slot_measured(conn_pool *p)
{
    struct timespec t0,
                t1;
    slot       *s;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    if ((s = take_free(p)) != NULL)
    {
        /* Free at once: no wait to show but the one observation. */
        drop_if_dead(s);
        metrics_pool_waited(p->name, 0.0, true);
        return s;
    }
    metrics_pool_waiting(p->name, 1);
    s = acquire_slot(p);
    metrics_pool_waiting(p->name, -1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    metrics_pool_waited(p->name, (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9, s != NULL);
    return s;
}

/*
 * A request is normally an implicit transaction (the pipeline's Sync ends
 * it).  On a Citus coordinator the row-level security policies run on the
 * worker nodes and learn the caller only from settings Citus passes on
 * inside a transaction block, which it opens there for a read only within
 * an explicit BEGIN (docs/citus.md, finding 20): in a database with
 * Citus's catalog the call is wrapped in BEGIN/COMMIT.
 */
static bool
in_citus_database(PGconn *conn)
{
    PGresult   *res = PQexec(conn, "SELECT to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL");
    bool        citus = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
        strcmp(PQgetvalue(res, 0, 0), "t") == 0;

    PQclear(res);
    return citus;
}

static void
forget_prepared(slot *s)
{
    for (int i = 0; i < s->nprepared; i++)
        free(s->prepared[i].argnames);
    s->nprepared = 0;
    s->setup_prepared = false;
}

static void
release_slot(slot *s)
{
    /* A broken connection is closed now, so outages leak no descriptors. */
    if (s->conn && PQstatus(s->conn) != CONNECTION_OK)
    {
        PQfinish(s->conn);
        s->conn = NULL;
        forget_prepared(s);
    }
    give_back(s);
}

static bool
ensure_connected(slot *s)
{
    if (s->conn && PQstatus(s->conn) == CONNECTION_OK)
        return true;
    if (s->conn)
        PQfinish(s->conn);
    forget_prepared(s);
    s->conn = PQconnectdb(s->owner->conninfo);
    if (PQstatus(s->conn) != CONNECTION_OK)
    {
        PQfinish(s->conn);
        s->conn = NULL;
        return false;
    }
    s->explicit_tx = in_citus_database(s->conn);
    return true;
}

static char *
dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void
take_error(db_result *out, const PGresult *res, PGconn *conn)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

    if (!state)
    {
        /* No SQLSTATE: libpq lost the connection. */
        out->status = DB_CONNECTION_FAILED;
        out->message = strdup(PQerrorMessage(conn));
        return;
    }
    out->status = DB_SQL_ERROR;
    snprintf(out->sqlstate, sizeof(out->sqlstate), "%s", state);
    out->message = dup_or_null(PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
    out->detail = dup_or_null(PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL));
    out->hint = dup_or_null(PQresultErrorField(res, PG_DIAG_MESSAGE_HINT));
}

/*
 * The setup statement fails only when SET ROLE does: the token names a role
 * that does not exist or that the authenticator may not take.  That is a
 * bad token (401), whatever SQLSTATE the server chose for it.
 */
static void
role_refused(db_result *out)
{
    if (out->status != DB_SQL_ERROR ||
        (strcmp(out->sqlstate, "22023") != 0 && strcmp(out->sqlstate, "42501") != 0 &&
         strcmp(out->sqlstate, "42704") != 0))
        return;
    strcpy(out->sqlstate, "28000");
    free(out->message);
    free(out->detail);
    free(out->hint);
    out->message = strdup("the token's role is not one of the application's roles");
    out->detail = NULL;
    out->hint = NULL;
}

/*
 * The request id goes into application_name too, for the transaction only:
 * pg_stat_activity shows which request a backend is serving, and a server
 * log_line_prefix with %a puts it on the log lines of a slow or failed
 * statement, so one request can be followed from the adapter's log into the
 * server's.
 *
 * A read sets transaction_read_only; a write leaves the server's default:
 * asking for read-write on a standby fails before the call (25001), while
 * left alone the call's first write fails with 25006, which says what it is
 * (http.c: 503 DATABASE_READ_ONLY).
 */
static const char setup_sql[] =
    "SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true), "
    "set_config('request.id', $3, true), set_config('request.client_ip', $4, true), "
    "set_config('statement_timeout', $5, true), "
    "CASE WHEN $6 = 'on' THEN set_config('transaction_read_only', 'on', true) END, "
    "set_config('application_name', $3, true)";

/* The call's statement as SQL text (into sql); false when it does not fit. */
static bool
call_sql(const db_call *call, char *sql, size_t size)
{
    size_t      len;

    /* Names come from the catalog; quoting keeps them identifiers anyway. */
    len = snprintf(sql, size, "SELECT api.\"%s\"(", call->fn->name);
    for (int i = 0; i < call->nargs && len < size; i++)
        len += snprintf(sql + len, size - len, "%s\"%s\" => $%d",
                        i ? ", " : "", call->argnames[i], i + 1);
    if (len < size)
        len += snprintf(sql + len, size - len,
                        ")::text, nullif(current_setting('response.headers', true), '')");
    return len < size;
}

/* The index of the call's prepared statement on this slot, or -1. */
static int
find_prepared(const slot *sl, const db_call *call)
{
    for (int i = 0; i < sl->nprepared; i++)
    {
        const prepared_stmt *p = &sl->prepared[i];

        if (p->fn == call->fn && p->nargs == call->nargs &&
            memcmp(p->argnames, call->argnames, sizeof(char *) * call->nargs) == 0)
            return i;
    }
    return -1;
}

static void
remember_prepared(slot *sl, const db_call *call)
{
    prepared_stmt *p = &sl->prepared[sl->nprepared];

    p->argnames = malloc(sizeof(char *) * (call->nargs ? call->nargs : 1));
    if (!p->argnames)
        return;
    memcpy(p->argnames, call->argnames, sizeof(char *) * call->nargs);
    p->fn = call->fn;
    p->nargs = call->nargs;
    sl->nprepared++;
}

/* One pipelined transaction on a connected slot. */
static void
run_call(slot *sl, const db_call *call, db_result *out)
{
    PGconn     *conn = sl->conn;
    char        sql[8192];
    char        name[16];
    const char *setup_values[6] = {call->role, call->claims, call->request_id, call->client_ip,
    sl->owner->timeout, call->read_only ? "on" : "off"};
    PGresult   *res;
    bool        failed = false;
    int         done_cmds = 0;
    int         ncmds = 0;
    int         setup_prep_cmd = -1;
    int         call_prep_cmd = -1;
    int         setup_cmd;
    int         call_cmd;
    int         cached = find_prepared(sl, call);

    /* The SQL text only when the statement is not prepared yet. */
    if (cached < 0 && !call_sql(call, sql, sizeof(sql)))
    {
        out->status = DB_SQL_ERROR;
        strcpy(out->sqlstate, "54000");
        out->message = strdup("too many arguments");
        return;
    }

    if (!PQenterPipelineMode(conn))
        goto send_failed;
    if (sl->explicit_tx)
    {
        if (!PQsendQueryParams(conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0))
            goto send_failed;
        ncmds++;
    }
    if (!sl->setup_prepared)
    {
        if (!PQsendPrepare(conn, "setup", setup_sql, 6, NULL))
            goto send_failed;
        setup_prep_cmd = ncmds++;
    }
    if (!PQsendQueryPrepared(conn, "setup", 6, setup_values, NULL, NULL, 0))
        goto send_failed;
    setup_cmd = ncmds++;
    if (cached < 0 && sl->nprepared < MAX_PREPARED)
    {
        cached = sl->nprepared;
        snprintf(name, sizeof(name), "s%d", cached);
        if (!PQsendPrepare(conn, name, sql, call->nargs, NULL))
            goto send_failed;
        call_prep_cmd = ncmds++;
    }
    snprintf(name, sizeof(name), "s%d", cached);
    if (cached >= 0 ? !PQsendQueryPrepared(conn, name, call->nargs, call->argvalues, NULL, NULL, 0) :
        !PQsendQueryParams(conn, sql, call->nargs, NULL, call->argvalues, NULL, NULL, 0))
        goto send_failed;
    call_cmd = ncmds++;
    if (sl->explicit_tx)
    {
        if (!PQsendQueryParams(conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0))
            goto send_failed;
        ncmds++;
    }
    if (!PQpipelineSync(conn))
        goto send_failed;

    /* Each command's results end with a NULL; then comes the Sync. */
    for (;;)
    {
        res = PQgetResult(conn);
        if (res == NULL)
        {
            if (++done_cmds > ncmds || PQstatus(conn) != CONNECTION_OK)
                break;
            continue;
        }
        switch (PQresultStatus(res))
        {
            case PGRES_PIPELINE_SYNC:
                PQclear(res);
                goto done;
            case PGRES_COMMAND_OK:
                /* A statement is known prepared only once the server said so. */
                if (done_cmds == setup_prep_cmd)
                    sl->setup_prepared = true;
                else if (done_cmds == call_prep_cmd)
                    remember_prepared(sl, call);
                break;
            case PGRES_TUPLES_OK:
                if (done_cmds == call_cmd && !failed && PQntuples(res) == 1)
                {
                    out->value = PQgetisnull(res, 0, 0) ? NULL : strdup(PQgetvalue(res, 0, 0));
                    out->headers = PQgetisnull(res, 0, 1) ? NULL : strdup(PQgetvalue(res, 0, 1));
                }
                break;
            case PGRES_PIPELINE_ABORTED:
                break;
            default:
                if (!failed)
                {
                    take_error(out, res, conn);
                    if (done_cmds == setup_cmd)
                        role_refused(out);
                }
                failed = true;
                break;
        }
        PQclear(res);
    }
    /* Left the loop without a Sync: the connection is gone. */
    if (!failed)
    {
        out->status = DB_CONNECTION_FAILED;
        out->message = strdup(PQerrorMessage(conn));
    }
    failed = true;
done:
    /* Fails only with results pending, i.e. on a broken connection: dropped on release. */
    if (PQpipelineStatus(conn) != PQ_PIPELINE_OFF)
        (void) PQexitPipelineMode(conn);
    /* An explicit block that failed outlives the Sync: end it here. */
    if (failed && PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) != PQTRANS_IDLE)
        PQclear(PQexec(conn, "ROLLBACK"));
    if (!failed)
        out->status = DB_OK;
    return;

send_failed:
    out->status = DB_CONNECTION_FAILED;
    out->message = strdup(PQerrorMessage(conn));
    if (PQpipelineStatus(conn) != PQ_PIPELINE_OFF)
        (void) PQexitPipelineMode(conn);
}

void
db_call_function(const db_call *call, db_result *out)
{
    conn_pool  *p = call->on_replica && db_has_read_pool() ? &read_pool : &pool;
    slot       *s;

    memset(out, 0, sizeof(*out));
    if (!(s = acquire_slot_measured(p)))
    {
        out->status = DB_POOL_BUSY;
        return;
    }
    if (!ensure_connected(s))
    {
        out->status = DB_CONNECTION_FAILED;
        release_slot(s);
        sweep_after_failure(p);
        return;
    }
    run_call(s, call, out);
    /* A serialization failure or deadlock is retried once, then answered. */
    if (out->status == DB_SQL_ERROR &&
        (strcmp(out->sqlstate, "40001") == 0 || strcmp(out->sqlstate, "40P01") == 0))
    {
        db_result_free(out);
        memset(out, 0, sizeof(*out));
        run_call(s, call, out);
    }
    /*
     * A write that found the server read-only (a standby behind the primary's
     * DSN during a failover): drop the connection, so the next one connects
     * afresh and, with several hosts and target_session_attrs=read-write in
     * the DSN, finds the new primary.
     */
    if (!call->read_only && out->status == DB_SQL_ERROR && strcmp(out->sqlstate, "25006") == 0)
    {
        PQfinish(s->conn);
        s->conn = NULL;
        forget_prepared(s);
    }
    release_slot(s);
    if (out->status == DB_CONNECTION_FAILED)
        sweep_after_failure(p);
}

void
db_result_free(db_result *r)
{
    free(r->value);
    free(r->headers);
    free(r->message);
    free(r->detail);
    free(r->hint);
    r->value = r->headers = r->message = r->detail = r->hint = NULL;
}

static db_status
check_pool(conn_pool *p, char *why, size_t whylen)
{
    slot       *s = acquire_slot(p);
    PGresult   *res;
    db_status   st;

    if (!s)
    {
        snprintf(why, whylen, "no free connection in the pool");
        return DB_POOL_BUSY;
    }
    if (!ensure_connected(s))
    {
        snprintf(why, whylen, "cannot connect to the database");
        release_slot(s);
        sweep_after_failure(p);
        return DB_CONNECTION_FAILED;
    }
    res = PQexec(s->conn, "SELECT 1");
    st = PQresultStatus(res) == PGRES_TUPLES_OK ? DB_OK : DB_CONNECTION_FAILED;
    if (st != DB_OK)
        snprintf(why, whylen, "the database does not answer");
    PQclear(res);
    release_slot(s);
    if (st != DB_OK)
        sweep_after_failure(p);
    return st;
}

db_status
db_check(char *why, size_t whylen)
{
    return check_pool(&pool, why, whylen);
}

bool
db_ping(char *why, size_t whylen)
{
    return db_check(why, whylen) == DB_OK;
}

bool
db_ping_read(char *why, size_t whylen)
{
    return check_pool(&read_pool, why, whylen) == DB_OK;
}

static arg_kind
kind_of(const char *type)
{
    if (strcmp(type, "integer") == 0 || strcmp(type, "bigint") == 0 || strcmp(type, "smallint") == 0)
        return ARG_INT;
    if (strcmp(type, "numeric") == 0 || strcmp(type, "double precision") == 0 || strcmp(type, "real") == 0)
        return ARG_NUMERIC;
    if (strcmp(type, "boolean") == 0)
        return ARG_BOOL;
    if (strcmp(type, "jsonb") == 0 || strcmp(type, "json") == 0)
        return ARG_JSON;
    if (strcmp(type, "text[]") == 0)
        return ARG_TEXT_ARRAY;
    if (strcmp(type, "bigint[]") == 0 || strcmp(type, "integer[]") == 0)
        return ARG_INT_ARRAY;
    if (strcmp(type, "text") == 0 || strcmp(type, "date") == 0 || strcmp(type, "uuid") == 0 ||
        strncmp(type, "timestamp", 9) == 0 || strncmp(type, "character", 9) == 0)
        return ARG_TEXT;
    return ARG_OTHER;
}

/*
 * The catalog is the extension's view booking.http_functions (signatures,
 * HTTP names of the arguments, routes) and the roles a token may name: all
 * of it declared in SQL, none of it here.
 */
static const char catalog_sql[] =
    "SELECT name, nargs, nrequired, array_to_string(argnames, ','), array_to_string(http_names, ','), "
    "       array_to_string(argtypes, ','), writes, comment, routes::text, "
    "       (SELECT ',' || string_agg(role, ',') || ',' FROM booking.http_token_roles), "
    "       result_schema::text, (SELECT jsonb_object_agg(name, schema) FROM booking.http_schemas)::text "
    "  FROM booking.http_functions ORDER BY name";

/* Split a comma list into exactly n strings (missing ones empty). */
static char **
split(const char *s, int n)
{
    char      **out = calloc(n ? n : 1, sizeof(char *));
    const char *p = s;

    for (int i = 0; i < n; i++)
    {
        const char *c = p ? strchr(p, ',') : NULL;
        size_t      l = p ? (c ? (size_t) (c - p) : strlen(p)) : 0;

        out[i] = strndup(p ? p : "", l);
        p = c ? c + 1 : NULL;
    }
    return out;
}

/*
 * A connected slot to read the catalog from: the primary's, or when the
 * primary cannot be reached the replica's (the same catalog, replayed), so
 * an adapter started during a primary outage still serves reads.
 */
static slot *
catalog_slot(void)
{
    conn_pool  *pools[2] = {&pool, &read_pool};

    for (int i = 0; i < 2; i++)
    {
        slot       *s;

        if (pools[i]->size == 0 || !(s = acquire_slot(pools[i])))
            continue;
        if (ensure_connected(s))
            return s;
        release_slot(s);
    }
    return NULL;
}

static char *
json_strdup(json_t *o, const char *key)
{
    json_t     *v = json_object_get(o, key);

    return json_is_string(v) ? strdup(json_string_value(v)) : NULL;
}

/* The function's routes, from the JSON array the view aggregates. */
static void
parse_routes(api_function *f, const char *text)
{
    json_t     *arr = json_loads(text, 0, NULL);
    size_t      i;
    json_t     *o;

    f->nroutes = 0;
    f->routes = calloc(json_array_size(arr) + 1, sizeof(api_route));
    json_array_foreach(arr, i, o)
    {
        api_route  *r = &f->routes[f->nroutes];

        r->method = json_strdup(o, "method");
        r->path = json_strdup(o, "path");
        r->operation_id = json_strdup(o, "operation_id");
        r->body_argument = json_strdup(o, "body_argument");
        r->success = (int) json_integer_value(json_object_get(o, "success"));
        r->is_public = json_is_true(json_object_get(o, "public"));
        r->event_stream = json_is_true(json_object_get(o, "event_stream"));
        r->produces = json_strdup(o, "produces");
        if (!r->produces)
            r->produces = strdup("application/json");
        if (r->method && r->path && r->operation_id)
            f->nroutes++;
    }
    json_decref(arr);
}

/* Load the catalog; false when the database could not be asked. */
static bool
load_catalog(void)
{
    slot       *s = catalog_slot();
    PGresult   *res;
    catalog    *c;

    if (!s)
        return false;
    res = PQexec(s->conn, catalog_sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
    {
        PQclear(res);
        release_slot(s);
        return false;
    }
    {
        /* Unchanged since the last load (the usual case): keep the current one. */
        uint64_t    h = 1469598103934665603ULL;     /* FNV-1a */
        bool        same;

        for (int i = 0; i < PQntuples(res); i++)
            for (int j = 0; j < PQnfields(res); j++)
                for (const char *p = PQgetvalue(res, i, j);; p++)
                {
                    h = (h ^ (unsigned char) *p) * 1099511628211ULL;
                    if (!*p)
                        break;
                }
        pthread_mutex_lock(&catalog_lock);
        same = current_catalog && current_catalog->fingerprint == h;
        if (same)
            __atomic_store_n(&catalog_loaded_at, time(NULL), __ATOMIC_RELAXED);
        pthread_mutex_unlock(&catalog_lock);
        if (same)
        {
            PQclear(res);
            release_slot(s);
            return true;
        }
        c = calloc(1, sizeof(catalog));
        c->fingerprint = h;
    }
    c->n = PQntuples(res);
    c->fns = calloc(c->n ? c->n : 1, sizeof(api_function));
    for (int i = 0; i < c->n; i++)
    {
        api_function *f = &c->fns[i];

        f->name = strdup(PQgetvalue(res, i, 0));
        f->nargs = atoi(PQgetvalue(res, i, 1));
        f->nrequired = atoi(PQgetvalue(res, i, 2));
        f->argnames = split(PQgetvalue(res, i, 3), f->nargs);
        /* format_type() of text[] has no comma, so splitting on ',' is safe here. */
        f->httpnames = split(PQgetvalue(res, i, 4), f->nargs);
        f->argtypes = split(PQgetvalue(res, i, 5), f->nargs);
        f->argkinds = calloc(f->nargs ? f->nargs : 1, sizeof(arg_kind));
        for (int a = 0; a < f->nargs; a++)
            f->argkinds[a] = kind_of(f->argtypes[a]);
        f->writes = strcmp(PQgetvalue(res, i, 6), "t") == 0;
        f->comment = strdup(PQgetvalue(res, i, 7));
        parse_routes(f, PQgetvalue(res, i, 8));
        f->result_schema = PQgetisnull(res, i, 10) ? NULL : strdup(PQgetvalue(res, i, 10));
        /* Only a function that does not write may run on the read replica. */
        f->stable = !f->writes;
    }
    c->roles = strdup(c->n ? PQgetvalue(res, 0, 9) : "");
    c->schemas = c->n && !PQgetisnull(res, 0, 11) ? strdup(PQgetvalue(res, 0, 11)) : NULL;
    PQclear(res);
    release_slot(s);

    pthread_mutex_lock(&catalog_lock);
    c->older = current_catalog;
    __atomic_store_n(&current_catalog, c, __ATOMIC_RELEASE);
    __atomic_store_n(&catalog_loaded_at, time(NULL), __ATOMIC_RELAXED);
    pthread_mutex_unlock(&catalog_lock);
    return true;
}

/*
 * Readers take the current catalog with one atomic load and no lock: a
 * catalog is never changed once published, and replaced ones stay until
 * shutdown.  Only loading takes catalog_lock.
 */
static catalog *
catalog_now(void)
{
    return __atomic_load_n(&current_catalog, __ATOMIC_ACQUIRE);
}

static const api_function *
lookup(const char *name)
{
    catalog    *c = catalog_now();

    if (c)
        for (int i = 0; i < c->n; i++)
            if (strcmp(c->fns[i].name, name) == 0)
                return &c->fns[i];
    return NULL;
}

/*
 * Signatures change when the extension is upgraded: read the catalog again
 * after a 42883, and at least every CATALOG_TTL seconds (one thread does
 * it; the others go on with the current one).
 */
static void
refresh_if_due(void)
{
    bool        invalidated;
    time_t      loaded = __atomic_load_n(&catalog_loaded_at, __ATOMIC_RELAXED);

    if (catalog_now() == NULL || (loaded != 0 && time(NULL) - loaded < CATALOG_TTL))
        return;                 /* the usual case: no lock */
    pthread_mutex_lock(&catalog_lock);
    invalidated = current_catalog != NULL && !catalog_loading &&
        (catalog_loaded_at == 0 || time(NULL) - catalog_loaded_at >= CATALOG_TTL);
    if (invalidated)
        catalog_loading = true;
    pthread_mutex_unlock(&catalog_lock);
    if (invalidated)
    {
        load_catalog();
        pthread_mutex_lock(&catalog_lock);
        catalog_loading = false;
        pthread_mutex_unlock(&catalog_lock);
    }
}

const api_function *
db_find_function(const char *name)
{
    const api_function *f;
    bool        stale;

    refresh_if_due();
    f = lookup(name);
    if (f)
        return f;
    /* New functions appear when the extension is upgraded: reload, at most once a second. */
    stale = catalog_now() == NULL || time(NULL) != __atomic_load_n(&catalog_loaded_at, __ATOMIC_RELAXED);
    if (stale && load_catalog())
        return lookup(name);
    return NULL;
}

void
db_catalog_invalidate(void)
{
    __atomic_store_n(&catalog_loaded_at, 0, __ATOMIC_RELAXED);
}

bool
db_catalog_loaded(void)
{
    return catalog_now() != NULL;
}

const api_function *
db_functions(int *n)
{
    catalog    *c;

    if (!db_catalog_loaded())
        load_catalog();
    else
        refresh_if_due();
    c = catalog_now();
    /* Catalogs are never freed before shutdown, so c stays valid. */
    *n = c ? c->n : 0;
    return c ? c->fns : NULL;
}

const api_function *
db_functions_cached(int *n)
{
    catalog    *c = catalog_now();

    *n = c ? c->n : 0;
    return c ? c->fns : NULL;
}

const char *
db_result_schemas(void)
{
    catalog    *c = catalog_now();

    /* Catalogs are never freed before shutdown (see db_functions). */
    return c ? c->schemas : NULL;
}

bool
db_role_allowed(const char *role)
{
    char        needle[80];
    catalog    *c;

    if (!role[0] || strchr(role, ',') || snprintf(needle, sizeof(needle), ",%s,", role) >= (int) sizeof(needle))
        return false;
    if (!db_catalog_loaded())
        load_catalog();
    c = catalog_now();
    return c && c->roles && strstr(c->roles, needle) != NULL;
}
