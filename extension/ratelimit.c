/*
 * ratelimit.c — rate-limit accounting in shared memory.
 *
 * Algorithm: a sliding log.  For a rule "at most N requests in any window of
 * T ms" each key keeps the times of its last N admitted requests; a request
 * at time t is admitted iff fewer than N of them lie in (t - T, t].  This is
 * exact: no window of length T ever holds more than N admissions, and a
 * denied caller is told the exact wait (the oldest counted admission + T - t).
 * Burst limiters (GCRA, token bucket) need O(1) state but admit up to 2N - 1
 * in some window, and a sliding-window counter only approximates; exactness
 * is the requirement here, so we pay 4 bytes per allowed request per key.
 *
 * Layout: one pool per rule (so a flood on one rule cannot evict another
 * rule's keys), each split into RL_PARTITIONS partitions by key hash, each
 * partition with its own LWLock (so unrelated keys rarely share a lock), a
 * chained hash index, a free list and an LRU list ordered by last admission.
 * A full partition first reuses its least recently admitted entry if that
 * entry's window has passed (lossless: it can never matter again); only
 * otherwise is a live entry evicted, and such forced evictions are counted.
 *
 * Time: CLOCK_MONOTONIC in milliseconds, read under the partition lock so
 * that times are non-decreasing in lock order.  An admission is recorded at
 * the next millisecond (ceiling) and decisions use the current millisecond
 * (floor), so the guarantee holds in real time, not only at ms resolution
 * (the price: a wait told can be T + 1 ms).
 * Tests pass an explicit time instead (the at_ms argument).
 *
 * Keys are held as 64-bit hashes of their text: two keys of one rule share a
 * log only if their hashes collide (odds about k^2 / 2^65 for k live keys).
 *
 * Shared memory is not transactional: a hit counts even when the calling
 * transaction rolls back, which is what a limiter wants.
 */
#include "postgres.h"

#include <time.h>

#include "access/htup_details.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "pg_booking.h"

#define RL_TRANCHE		"pg_booking_rate_limit"
#define RL_PARTITIONS	16
#define RL_NIL			PG_UINT32_MAX
#define RL_MAX_REQUESTS 1000
/* Stamps are kept as uint32 ages in ms, so windows stay well below 2^31 ms. */
#define RL_MAX_WINDOW_MS ((int64) 24 * 24 * 3600 * 1000)

/* settings */
int			pgb_rate_limit_rules = 16;
int			pgb_rate_limit_pool_kb = 512;
bool		pgb_rate_limit_enabled = true;

/*
 * One key's log.  The newest admission is kept in full; the older ones as
 * ages (ms before newest), oldest first, so an entry costs 32 + 4 (N - 1)
 * bytes.  count == 0 marks a free entry.
 */
typedef struct RlEntry
{
	uint64		key;			/* 64-bit hash of the key text */
	int64		newest;			/* ms of the newest admission */
	uint32		chain;			/* next entry in the bucket (or free list) */
	uint32		newer;			/* LRU neighbours, by last admission */
	uint32		older;
	uint32		count;			/* admissions held, 1..N */
	uint32		age[FLEXIBLE_ARRAY_MEMBER];
} RlEntry;

/*
 * A partition: header, then nbuckets bucket heads, then capacity entries of
 * slot_size bytes, all inside a fixed region of the pool.
 */
typedef struct RlPartition
{
	uint32		capacity;
	uint32		used;
	uint32		free_head;
	uint32		newest;			/* LRU head (most recently admitted) */
	uint32		oldest;			/* LRU tail */
	uint64		admitted;
	uint64		denied;
	uint64		evicted_expired;
	uint64		evicted_forced;
} RlPartition;

/*
 * A pool serves one rule.  endpoint, max_requests, window_ms and slot_size
 * change only while every partition lock of the pool is held exclusively,
 * so holding any one of them is enough to read them.
 */
typedef struct RlPool
{
	char		endpoint[NAMEDATALEN];	/* empty: free pool */
	int32		max_requests;
	int64		window_ms;
	Size		slot_size;
	TimestampTz stats_since;
} RlPool;

typedef struct RlShared
{
	int			npools;
	Size		partition_bytes;
	RlPool		pools[FLEXIBLE_ARRAY_MEMBER];
} RlShared;

static RlShared *rl = NULL;
static LWLockPadded *rl_locks = NULL;	/* [0] binds rules to pools */
static char *rl_regions = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
rl_header_size(int npools)
{
	return MAXALIGN(add_size(offsetof(RlShared, pools), mul_size(sizeof(RlPool), npools)));
}

static Size
rl_partition_bytes(void)
{
	return MAXALIGN((Size) pgb_rate_limit_pool_kb * 1024 / RL_PARTITIONS);
}

static Size
rl_shmem_size(void)
{
	return add_size(rl_header_size(pgb_rate_limit_rules),
					mul_size(rl_partition_bytes(), mul_size(pgb_rate_limit_rules, RL_PARTITIONS)));
}

static void
rl_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(rl_shmem_size());
	RequestNamedLWLockTranche(RL_TRANCHE, 1 + pgb_rate_limit_rules * RL_PARTITIONS);
}

static void
rl_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	rl = ShmemInitStruct("pg_booking rate limits", rl_shmem_size(), &found);
	rl_locks = GetNamedLWLockTranche(RL_TRANCHE);
	rl_regions = (char *) rl + rl_header_size(pgb_rate_limit_rules);
	if (!found)
	{
		rl->npools = pgb_rate_limit_rules;
		rl->partition_bytes = rl_partition_bytes();
		for (int i = 0; i < rl->npools; i++)
			memset(&rl->pools[i], 0, sizeof(RlPool));
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Called from _PG_init: the settings, and the shared-memory hooks when the
 * library is being preloaded (otherwise the functions refuse to run).
 */
void
pgb_rate_limit_init(void)
{
	DefineCustomBoolVariable("pg_booking.rate_limit_enabled",
							 "Whether the api functions enforce the rate-limit rules.",
							 "Only superusers may turn the limits off, e.g. for load tests.",
							 &pgb_rate_limit_enabled,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	/*
	 * The sizes of shared memory can only be set at server start, and only
	 * matter when the library is preloaded (PGC_POSTMASTER settings cannot
	 * even be defined later).
	 */
	if (!process_shared_preload_libraries_in_progress)
		return;

	DefineCustomIntVariable("pg_booking.rate_limit_rules",
							"Number of rate-limit rules that can be tracked at once (one pool each).",
							NULL,
							&pgb_rate_limit_rules,
							16, 1, 256,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pg_booking.rate_limit_pool_size",
							"Shared memory per rate-limit rule; bounds the keys a rule can track.",
							NULL,
							&pgb_rate_limit_pool_kb,
							512, 64, 1024 * 1024,
							PGC_POSTMASTER,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = rl_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = rl_shmem_startup;
}

static void
rl_require_shmem(void)
{
	if (rl == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_booking rate limits are not available"),
				 errdetail("The rate-limit accounting lives in shared memory, which is reserved only when the library is preloaded."),
				 errhint("Add pg_booking to shared_preload_libraries and restart the server.")));
}

/* --- partitions ---------------------------------------------------------- */

static inline RlPartition *
rl_partition(int pool, int part)
{
	return (RlPartition *) (rl_regions + (Size) (pool * RL_PARTITIONS + part) * rl->partition_bytes);
}

static inline LWLock *
rl_partition_lock(int pool, int part)
{
	return &rl_locks[1 + pool * RL_PARTITIONS + part].lock;
}

static inline uint32 *
rl_buckets(RlPartition *p)
{
	return (uint32 *) ((char *) p + MAXALIGN(sizeof(RlPartition)));
}

/* The bucket count equals the capacity: the index costs 4 bytes per key. */
static inline RlEntry *
rl_entry(RlPartition *p, Size slot_size, uint32 i)
{
	return (RlEntry *) ((char *) rl_buckets(p) + MAXALIGN(sizeof(uint32) * p->capacity) + (Size) i * slot_size);
}

static Size
rl_slot_size(int max_requests)
{
	return MAXALIGN(offsetof(RlEntry, age) + sizeof(uint32) * (max_requests - 1));
}

static uint32
rl_capacity(Size slot_size)
{
	Size		room = rl->partition_bytes - MAXALIGN(sizeof(RlPartition)) - MAXALIGN(1);

	return (uint32) (room / (slot_size + sizeof(uint32)));
}

/* Empty a partition (caller holds its lock exclusively); stats survive. */
static void
rl_partition_clear(RlPartition *p, Size slot_size)
{
	uint32	   *buckets;

	p->capacity = rl_capacity(slot_size);
	p->used = 0;
	p->newest = p->oldest = RL_NIL;
	buckets = rl_buckets(p);
	for (uint32 i = 0; i < p->capacity; i++)
	{
		RlEntry    *e = rl_entry(p, slot_size, i);

		buckets[i] = RL_NIL;
		e->count = 0;
		e->chain = (i + 1 < p->capacity) ? i + 1 : RL_NIL;
	}
	p->free_head = p->capacity > 0 ? 0 : RL_NIL;
}

static void
rl_lock_pool(int pool, LWLockMode mode)
{
	for (int part = 0; part < RL_PARTITIONS; part++)
		LWLockAcquire(rl_partition_lock(pool, part), mode);
}

static void
rl_unlock_pool(int pool)
{
	for (int part = RL_PARTITIONS - 1; part >= 0; part--)
		LWLockRelease(rl_partition_lock(pool, part));
}

/* --- binding rules to pools ---------------------------------------------- */

/* Which pool each endpoint was last found in, per backend. */
typedef struct RlCacheEntry
{
	char		endpoint[NAMEDATALEN];
	int			pool;
} RlCacheEntry;

static RlCacheEntry rl_cache[8];
static int	rl_cache_next = 0;

static int
rl_cached_pool(const char *endpoint)
{
	for (int i = 0; i < lengthof(rl_cache); i++)
		if (rl_cache[i].endpoint[0] && strcmp(rl_cache[i].endpoint, endpoint) == 0)
			return rl_cache[i].pool;
	return -1;
}

static void
rl_cache_pool(const char *endpoint, int pool)
{
	for (int i = 0; i < lengthof(rl_cache); i++)
		if (strcmp(rl_cache[i].endpoint, endpoint) == 0)
		{
			rl_cache[i].pool = pool;
			return;
		}
	strlcpy(rl_cache[rl_cache_next].endpoint, endpoint, NAMEDATALEN);
	rl_cache[rl_cache_next].pool = pool;
	rl_cache_next = (rl_cache_next + 1) % lengthof(rl_cache);
}

/*
 * Find or make the pool of a rule.  A rule whose limits changed gets its
 * pool emptied (its accounting starts afresh); a new rule takes a free pool,
 * else the pool whose last admission is oldest (a rule no longer in use).
 */
static int
rl_bind(const char *endpoint, int max_requests, int64 window_ms)
{
	LWLock	   *bind_lock = &rl_locks[0].lock;
	int			pool = -1;
	RlPool	   *pl;

	LWLockAcquire(bind_lock, LW_EXCLUSIVE);
	for (int i = 0; i < rl->npools && pool < 0; i++)
		if (strcmp(rl->pools[i].endpoint, endpoint) == 0)
			pool = i;
	for (int i = 0; i < rl->npools && pool < 0; i++)
		if (rl->pools[i].endpoint[0] == '\0')
			pool = i;
	if (pool < 0)
	{
		int64		best = PG_INT64_MAX;

		for (int i = 0; i < rl->npools; i++)
		{
			int64		last = PG_INT64_MIN;

			rl_lock_pool(i, LW_SHARED);
			for (int part = 0; part < RL_PARTITIONS; part++)
			{
				RlPartition *p = rl_partition(i, part);

				if (p->newest != RL_NIL)
					last = Max(last, rl_entry(p, rl->pools[i].slot_size, p->newest)->newest);
			}
			rl_unlock_pool(i);
			if (last < best)
			{
				best = last;
				pool = i;
			}
		}
	}

	pl = &rl->pools[pool];
	rl_lock_pool(pool, LW_EXCLUSIVE);
	if (strcmp(pl->endpoint, endpoint) != 0 || pl->max_requests != max_requests ||
		pl->window_ms != window_ms)
	{
		Size		slot_size = rl_slot_size(max_requests);

		if (rl_capacity(slot_size) < 1)
		{
			rl_unlock_pool(pool);
			LWLockRelease(bind_lock);
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("rate-limit pool too small for %d requests per window", max_requests),
					 errhint("Raise pg_booking.rate_limit_pool_size or lower the rule's max_requests.")));
		}
		if (strcmp(pl->endpoint, endpoint) != 0)
		{
			for (int part = 0; part < RL_PARTITIONS; part++)
			{
				RlPartition *p = rl_partition(pool, part);

				p->admitted = p->denied = p->evicted_expired = p->evicted_forced = 0;
			}
			pl->stats_since = GetCurrentTimestamp();
			strlcpy(pl->endpoint, endpoint, NAMEDATALEN);
		}
		pl->max_requests = max_requests;
		pl->window_ms = window_ms;
		pl->slot_size = slot_size;
		for (int part = 0; part < RL_PARTITIONS; part++)
			rl_partition_clear(rl_partition(pool, part), slot_size);
	}
	rl_unlock_pool(pool);
	LWLockRelease(bind_lock);
	rl_cache_pool(endpoint, pool);
	return pool;
}

/* --- the log ------------------------------------------------------------- */

static inline int64
rl_stamp(RlEntry *e, uint32 i)
{
	return (i + 1 == e->count) ? e->newest : e->newest - (int64) e->age[i];
}

static void
rl_lru_unlink(RlPartition *p, Size slot_size, uint32 i)
{
	RlEntry    *e = rl_entry(p, slot_size, i);

	if (e->newer != RL_NIL)
		rl_entry(p, slot_size, e->newer)->older = e->older;
	else
		p->newest = e->older;
	if (e->older != RL_NIL)
		rl_entry(p, slot_size, e->older)->newer = e->newer;
	else
		p->oldest = e->newer;
}

static void
rl_lru_push(RlPartition *p, Size slot_size, uint32 i)
{
	RlEntry    *e = rl_entry(p, slot_size, i);

	e->newer = RL_NIL;
	e->older = p->newest;
	if (p->newest != RL_NIL)
		rl_entry(p, slot_size, p->newest)->newer = i;
	else
		p->oldest = i;
	p->newest = i;
}

static void
rl_bucket_unlink(RlPartition *p, Size slot_size, uint32 i)
{
	RlEntry    *e = rl_entry(p, slot_size, i);
	uint32	   *link = &rl_buckets(p)[e->key % p->capacity];

	while (*link != i)
		link = &rl_entry(p, slot_size, *link)->chain;
	*link = e->chain;
}

/*
 * An entry for a new key: a free one, else the least recently admitted one
 * (lossless when its window has passed, forced otherwise).
 */
static uint32
rl_take_entry(RlPartition *p, Size slot_size, int64 now, int64 window_ms)
{
	uint32		i;
	RlEntry    *e;

	if (p->free_head != RL_NIL)
	{
		i = p->free_head;
		p->free_head = rl_entry(p, slot_size, i)->chain;
		p->used++;
		return i;
	}
	i = p->oldest;
	e = rl_entry(p, slot_size, i);
	if (e->newest <= now - window_ms)
		p->evicted_expired++;
	else
		p->evicted_forced++;
	rl_lru_unlink(p, slot_size, i);
	rl_bucket_unlink(p, slot_size, i);
	return i;
}

typedef struct RlDecision
{
	bool		allowed;
	int32		remaining;		/* admissions left in the window after this one */
	int64		retry_after_ms; /* 0 when allowed */
	int64		reset_ms;		/* until the oldest counted admission leaves the window */
} RlDecision;

static void
rl_check(int pool, uint64 key, int32 cost, bool have_at, int64 at_ms, bool dry_run, RlDecision *d)
{
	RlPool	   *pl = &rl->pools[pool];
	int			part = (int) (key >> 60) % RL_PARTITIONS;
	RlPartition *p = rl_partition(pool, part);
	Size		slot_size = pl->slot_size;
	int64		window = pl->window_ms;
	int32		max = pl->max_requests;
	int64		now,
				record_at;
	uint32		i,
				first,
				live;
	RlEntry    *e = NULL;

	if (have_at)
		now = record_at = at_ms;
	else
	{
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		now = (int64) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
		record_at = now + (ts.tv_nsec % 1000000 != 0);
	}

	for (i = rl_buckets(p)[key % p->capacity]; i != RL_NIL; i = e->chain)
	{
		e = rl_entry(p, slot_size, i);
		if (e->key == key)
			break;
	}
	if (i == RL_NIL)
		e = NULL;

	/* Stamps at or before now - window are out of the window. */
	first = 0;
	if (e)
		while (first < e->count && rl_stamp(e, first) <= now - window)
			first++;
	live = e ? e->count - first : 0;

	/* cost units at once, all or nothing (callers refuse cost > max) */
	if (live + (uint32) cost > (uint32) max)
	{
		d->allowed = false;
		d->remaining = 0;
		/* until enough of the oldest stamps leave the window */
		d->retry_after_ms = live + cost - max <= live
			? rl_stamp(e, first + (live + cost - max) - 1) + window - now
			: window;
		d->reset_ms = d->retry_after_ms;
		if (!dry_run)
			p->denied++;
		return;
	}

	d->allowed = true;
	d->remaining = max - (int32) live - cost;
	d->retry_after_ms = 0;
	d->reset_ms = (live > 0 ? rl_stamp(e, first) : Max(record_at, e ? e->newest : record_at)) + window - now;
	if (dry_run)
		return;

	p->admitted++;
	if (e == NULL)
	{
		uint32	   *bucket;

		i = rl_take_entry(p, slot_size, now, window);
		e = rl_entry(p, slot_size, i);
		e->key = key;
		e->count = 0;
		e->newest = record_at;
		bucket = &rl_buckets(p)[key % p->capacity];
		e->chain = *bucket;
		*bucket = i;
	}
	else
		rl_lru_unlink(p, slot_size, i);

	/*
	 * Keep the live stamps and append the new one; ages are re-based on the
	 * new newest.  A stamp never moves backwards in lock order, but take the
	 * maximum anyway so a stray earlier time cannot corrupt the order.
	 */
	record_at = Max(record_at, e->newest);
	{
		uint32		n = 0;

		for (uint32 j = first; j < e->count; j++)
			e->age[n++] = (uint32) (record_at - rl_stamp(e, j));
		/* the newest stamp is kept in full; the other new ones are age 0 */
		for (int32 c = 1; c < cost; c++)
			e->age[n++] = 0;
		e->count = n + 1;
		e->newest = record_at;
	}
	rl_lru_push(p, slot_size, i);
}

/* --- SQL ----------------------------------------------------------------- */

static int64
rl_window_arg(int64 window_ms)
{
	if (window_ms <= 0 || window_ms > RL_MAX_WINDOW_MS)
		ereport(ERROR,
				(errcode(PGB_ERRCODE_422),
				 errmsg("rate-limit window of %lld ms is out of range", (long long) window_ms),
				 errdetail_internal("%s", pgb_error_detail("VALIDATION_ERROR", "\"field\": \"window\""))));
	return window_ms;
}

static int
rl_pool_for(const char *endpoint, int max_requests, int64 window_ms)
{
	if (endpoint[0] == '\0' || strlen(endpoint) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(PGB_ERRCODE_422),
				 errmsg("rate-limit endpoint \"%s\" is empty or too long", endpoint),
				 errdetail_internal("%s", pgb_error_detail("VALIDATION_ERROR", "\"field\": \"endpoint\""))));
	if (max_requests < 1 || max_requests > RL_MAX_REQUESTS)
		ereport(ERROR,
				(errcode(PGB_ERRCODE_422),
				 errmsg("rate-limit max_requests %d is out of range", max_requests),
				 errdetail_internal("%s", pgb_error_detail("VALIDATION_ERROR", "\"field\": \"max_requests\", \"min\": 1, \"max\": 1000"))));
	rl_window_arg(window_ms);
	return rl_cached_pool(endpoint);
}

/*
 * The work of rate_limit_check and its cost variant: cost units of key at
 * once.  Arguments from arg 4 on (at_ms, dry_run) start at first_opt.
 */
static Datum
rl_check_call(FunctionCallInfo fcinfo, int32 cost, int first_opt)
{
	char	   *endpoint;
	text	   *key;
	int32		max_requests;
	int64		window_ms;
	uint64		hash;
	int			pool;
	RlDecision	d;
	TupleDesc	tupdesc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};
	bool		have_at = !PG_ARGISNULL(first_opt);
	int64		at_ms = have_at ? PG_GETARG_INT64(first_opt) : 0;
	bool		dry_run = !PG_ARGISNULL(first_opt + 1) && PG_GETARG_BOOL(first_opt + 1);

	rl_require_shmem();
	for (int a = 0; a < 4; a++)
		if (PG_ARGISNULL(a))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("rate_limit_check needs an endpoint, a key, max_requests and window_ms")));
	endpoint = text_to_cstring(PG_GETARG_TEXT_PP(0));
	key = PG_GETARG_TEXT_PP(1);
	max_requests = PG_GETARG_INT32(2);
	window_ms = PG_GETARG_INT64(3);
	pool = rl_pool_for(endpoint, max_requests, window_ms);
	if (cost < 1 || cost > max_requests)
		ereport(ERROR,
				(errcode(PGB_ERRCODE_422),
				 errmsg("rate-limit cost %d is out of range", cost),
				 errdetail_internal("%s", pgb_error_detail("VALIDATION_ERROR",
														   psprintf("\"field\": \"cost\", \"min\": 1, \"max\": %d", max_requests)))));
	hash = hash_bytes_extended((const unsigned char *) VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key),
							   UINT64CONST(0x5242524c));

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	for (;;)
	{
		if (pool >= 0)
		{
			RlPool	   *pl = &rl->pools[pool];
			LWLock	   *lock = rl_partition_lock(pool, (int) (hash >> 60) % RL_PARTITIONS);

			LWLockAcquire(lock, LW_EXCLUSIVE);
			if (strcmp(pl->endpoint, endpoint) == 0 && pl->max_requests == max_requests &&
				pl->window_ms == window_ms)
			{
				rl_check(pool, hash, cost, have_at, at_ms, dry_run, &d);
				LWLockRelease(lock);
				break;
			}
			LWLockRelease(lock);
		}
		pool = rl_bind(endpoint, max_requests, window_ms);
	}

	values[0] = BoolGetDatum(d.allowed);
	values[1] = Int32GetDatum(d.remaining);
	values[2] = Int64GetDatum(d.retry_after_ms);
	values[3] = Int64GetDatum(d.reset_ms);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}

PG_FUNCTION_INFO_V1(pgb_rate_limit_check);

/*
 * rate_limit_check(endpoint, key, max_requests, window_ms, at_ms, dry_run)
 * -> (allowed, remaining, retry_after_ms, reset_ms)
 *
 * at_ms NULL uses the monotonic clock; dry_run answers without counting.
 */
Datum
pgb_rate_limit_check(PG_FUNCTION_ARGS)
{
	return rl_check_call(fcinfo, 1, 4);
}

PG_FUNCTION_INFO_V1(pgb_rate_limit_check_cost);

/*
 * rate_limit_check(endpoint, key, max_requests, window_ms, cost, at_ms,
 * dry_run): cost units at once (a recurring booking's occurrences), admitted
 * only if all fit in the window.
 */
Datum
pgb_rate_limit_check_cost(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("rate_limit_check needs a cost")));
	return rl_check_call(fcinfo, PG_GETARG_INT32(4), 5);
}

PG_FUNCTION_INFO_V1(pgb_rate_limit_stats);

/*
 * One row per rule that has been checked since the server started: limits,
 * keys held, capacity, bytes of shared memory per key, and the counters.
 */
Datum
pgb_rate_limit_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	rl_require_shmem();
	InitMaterializedSRF(fcinfo, 0);

	for (int pool = 0; pool < rl->npools; pool++)
	{
		RlPool	   *pl = &rl->pools[pool];
		Datum		values[11];
		bool		nulls[11] = {0};
		int64		keys = 0,
					capacity = 0,
					admitted = 0,
					denied = 0,
					expired = 0,
					forced = 0;

		rl_lock_pool(pool, LW_SHARED);
		if (pl->endpoint[0] == '\0')
		{
			rl_unlock_pool(pool);
			continue;
		}
		for (int part = 0; part < RL_PARTITIONS; part++)
		{
			RlPartition *p = rl_partition(pool, part);

			keys += p->used;
			capacity += p->capacity;
			admitted += p->admitted;
			denied += p->denied;
			expired += p->evicted_expired;
			forced += p->evicted_forced;
		}
		values[0] = CStringGetTextDatum(pl->endpoint);
		values[1] = Int32GetDatum(pl->max_requests);
		values[2] = Int64GetDatum(pl->window_ms);
		values[3] = Int64GetDatum(keys);
		values[4] = Int64GetDatum(capacity);
		/* the entry plus its bucket head */
		values[5] = Int32GetDatum((int32) (pl->slot_size + sizeof(uint32)));
		values[6] = Int64GetDatum(admitted);
		values[7] = Int64GetDatum(denied);
		values[8] = Int64GetDatum(expired);
		values[9] = Int64GetDatum(forced);
		values[10] = TimestampTzGetDatum(pl->stats_since);
		rl_unlock_pool(pool);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(pgb_rate_limit_reset);

/*
 * Forget every key of a rule (all rules when NULL); counters survive.
 * Returns the number of keys forgotten.
 */
Datum
pgb_rate_limit_reset(PG_FUNCTION_ARGS)
{
	char	   *endpoint = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	int64		forgotten = 0;

	rl_require_shmem();
	LWLockAcquire(&rl_locks[0].lock, LW_EXCLUSIVE);
	for (int pool = 0; pool < rl->npools; pool++)
	{
		RlPool	   *pl = &rl->pools[pool];

		if (pl->endpoint[0] == '\0' || (endpoint && strcmp(pl->endpoint, endpoint) != 0))
			continue;
		rl_lock_pool(pool, LW_EXCLUSIVE);
		for (int part = 0; part < RL_PARTITIONS; part++)
		{
			forgotten += rl_partition(pool, part)->used;
			rl_partition_clear(rl_partition(pool, part), pl->slot_size);
		}
		rl_unlock_pool(pool);
	}
	LWLockRelease(&rl_locks[0].lock);
	PG_RETURN_INT64(forgotten);
}
