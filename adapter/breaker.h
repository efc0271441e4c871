/*
 * breaker.h — circuit breaker around the database.
 *
 * CLOSED -> OPEN after failure_threshold consecutive failures; OPEN answers
 * at once until open_timeout_ms has passed; the next request then moves it
 * (lazily) to HALF_OPEN, which admits at most half_open_probes probes;
 * that many successes close it, any failure opens it again.  A probe that
 * has not reported back after probe_timeout_ms counts as failed, so a hung
 * probe cannot hold the breaker half-open for ever.
 *
 * The clock is a function pointer so the tests can drive it.
 */
#ifndef ADAPTER_BREAKER_H
#define ADAPTER_BREAKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum { BREAKER_CLOSED = 0, BREAKER_OPEN = 1, BREAKER_HALF_OPEN = 2 } breaker_state;
typedef enum { BREAKER_AUTO = 0, BREAKER_FORCE_OPEN, BREAKER_DISABLED } breaker_mode;
/* What a call reports when it gives its permit back. */
typedef enum {
    BREAKER_SUCCESS,            /* the database answered (business errors included) */
    BREAKER_FAILURE,            /* connection loss, timeout, server in trouble */
    BREAKER_ABANDONED           /* no verdict: client went away, pool busy */
} breaker_outcome;

typedef uint64_t (*breaker_clock_fn) (void);    /* milliseconds, monotonic */

typedef struct breaker_permit {
    bool        admitted;
    bool        probe;
    uint64_t    epoch;          /* state epoch the permit was granted in */
    uint64_t    retry_after_ms; /* when refused */
} breaker_permit;

#define BREAKER_MAX_PROBES 64

typedef struct breaker {
    pthread_mutex_t lock;
    breaker_clock_fn now;
    breaker_mode mode;
    /* settings */
    int         failure_threshold;
    uint64_t    open_timeout_ms;
    int         half_open_probes;
    uint64_t    probe_timeout_ms;
    /* state */
    breaker_state state;
    uint64_t    epoch;          /* bumped on every transition */
    int         consecutive_failures;
    uint64_t    opened_at;
    uint64_t    half_open_at;
    int         probes_in_flight;
    int         probes_admitted;
    int         probe_successes;
    /* counters for /metrics: transitions[from][to] */
    uint64_t    transitions[3][3];
    uint64_t    rejected;
} breaker;

void        breaker_init(breaker *b, breaker_clock_fn now, int failure_threshold,
                         uint64_t open_timeout_ms, int half_open_probes, uint64_t probe_timeout_ms);
void        breaker_set_mode(breaker *b, breaker_mode mode);
breaker_permit breaker_acquire(breaker *b);
void        breaker_release(breaker *b, const breaker_permit *p, breaker_outcome outcome);
breaker_state breaker_current(breaker *b);
const char *breaker_state_name(breaker_state s);
void        breaker_snapshot(breaker *b, breaker_state *state, uint64_t transitions[3][3],
                             uint64_t *rejected, int *probes_in_flight);
uint64_t    breaker_monotonic_ms(void);

#endif
