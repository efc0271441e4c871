/*
 * breaker.c — the circuit breaker state machine (see breaker.h).
 *
 * Every transition is taken under one mutex and is straight-line code: no
 * I/O happens while it is held.  The common case, a closed breaker that
 * admits a call and hears it succeeded, reads atomics and takes no lock.  Permits carry the epoch they were granted
 * in, so a late answer from a call that started before a transition cannot
 * change the state that followed it.
 */
#include "breaker.h"

#include <time.h>

uint64_t
breaker_monotonic_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

void
breaker_init(breaker *b, breaker_clock_fn now, int failure_threshold,
             uint64_t open_timeout_ms, int half_open_probes, uint64_t probe_timeout_ms)
{
    *b = (breaker) {0};
    pthread_mutex_init(&b->lock, NULL);
    b->now = now ? now : breaker_monotonic_ms;
    b->failure_threshold = failure_threshold < 1 ? 1 : failure_threshold;
    b->open_timeout_ms = open_timeout_ms;
    b->half_open_probes = half_open_probes < 1 ? 1 :
        (half_open_probes > BREAKER_MAX_PROBES ? BREAKER_MAX_PROBES : half_open_probes);
    b->probe_timeout_ms = probe_timeout_ms;
    b->state = BREAKER_CLOSED;
}

const char *
breaker_state_name(breaker_state s)
{
    switch (s)
    {
        case BREAKER_CLOSED:
            return "closed";
        case BREAKER_OPEN:
            return "open";
        case BREAKER_HALF_OPEN:
            return "half_open";
    }
    return "unknown";
}

/* Caller holds the lock. */
static void
move_to(breaker *b, breaker_state to, uint64_t now)
{
    b->transitions[b->state][to]++;
    /* The epoch first: a reader that sees the new state sees its epoch (breaker_acquire). */
    __atomic_store_n(&b->epoch, b->epoch + 1, __ATOMIC_RELEASE);
    __atomic_store_n(&b->state, to, __ATOMIC_RELEASE);
    b->consecutive_failures = 0;
    b->probes_in_flight = 0;
    b->probes_admitted = 0;
    b->probe_successes = 0;
    if (to == BREAKER_OPEN)
        b->opened_at = now;
    else if (to == BREAKER_HALF_OPEN)
        b->half_open_at = now;
}

void
breaker_set_mode(breaker *b, breaker_mode mode)
{
    pthread_mutex_lock(&b->lock);
    __atomic_store_n(&b->mode, mode, __ATOMIC_RELEASE);
    if (mode == BREAKER_FORCE_OPEN && b->state != BREAKER_OPEN)
        move_to(b, BREAKER_OPEN, b->now());
    else if (mode == BREAKER_DISABLED && b->state != BREAKER_CLOSED)
        move_to(b, BREAKER_CLOSED, b->now());
    pthread_mutex_unlock(&b->lock);
}

breaker_permit
breaker_acquire(breaker *b)
{
    breaker_permit p = {0};
    uint64_t    now;

    /*
     * Closed (the usual case): admitted without the lock, so requests do not
     * queue on it.  Every transition happens under the lock, as before.
     */
    if (__atomic_load_n(&b->mode, __ATOMIC_ACQUIRE) == BREAKER_AUTO &&
        __atomic_load_n(&b->state, __ATOMIC_ACQUIRE) == BREAKER_CLOSED)
    {
        p.epoch = __atomic_load_n(&b->epoch, __ATOMIC_ACQUIRE);
        p.admitted = true;
        return p;
    }
    pthread_mutex_lock(&b->lock);
    now = b->now();
    p.epoch = b->epoch;
    if (b->mode == BREAKER_DISABLED)
    {
        p.admitted = true;
        goto out;
    }
    if (b->mode == BREAKER_FORCE_OPEN)
    {
        p.retry_after_ms = b->open_timeout_ms;
        goto refuse;
    }
    /* A half-open episode whose probes never came back ends as a failure. */
    if (b->state == BREAKER_HALF_OPEN && b->probes_in_flight > 0 &&
        now - b->half_open_at >= b->probe_timeout_ms)
        move_to(b, BREAKER_OPEN, now);
    if (b->state == BREAKER_OPEN)
    {
        if (now - b->opened_at < b->open_timeout_ms)
        {
            p.retry_after_ms = b->open_timeout_ms - (now - b->opened_at);
            goto refuse;
        }
        move_to(b, BREAKER_HALF_OPEN, now);
    }
    if (b->state == BREAKER_HALF_OPEN)
    {
        if (b->probes_admitted >= b->half_open_probes)
        {
            uint64_t    waited = now - b->half_open_at;

            p.retry_after_ms = waited < b->probe_timeout_ms ? b->probe_timeout_ms - waited : 1;
            goto refuse;
        }
        b->probes_admitted++;
        b->probes_in_flight++;
        p.probe = true;
    }
    p.epoch = b->epoch;
    p.admitted = true;
    goto out;

refuse:
    b->rejected++;
out:
    pthread_mutex_unlock(&b->lock);
    return p;
}

void
breaker_release(breaker *b, const breaker_permit *p, breaker_outcome outcome)
{
    uint64_t    now;

    if (!p->admitted)
        return;
    /* A success while closed with no failures counted changes nothing: no lock. */
    if (outcome == BREAKER_SUCCESS && __atomic_load_n(&b->mode, __ATOMIC_ACQUIRE) == BREAKER_AUTO &&
        __atomic_load_n(&b->state, __ATOMIC_ACQUIRE) == BREAKER_CLOSED &&
        __atomic_load_n(&b->epoch, __ATOMIC_ACQUIRE) == p->epoch &&
        __atomic_load_n(&b->consecutive_failures, __ATOMIC_RELAXED) == 0)
        return;
    pthread_mutex_lock(&b->lock);
    now = b->now();
    /* Disabled, or an answer to a state that has since been left: ignore. */
    if (b->mode != BREAKER_AUTO || p->epoch != b->epoch)
        goto out;
    if (b->state == BREAKER_CLOSED)
    {
        if (outcome == BREAKER_SUCCESS)
            __atomic_store_n(&b->consecutive_failures, 0, __ATOMIC_RELAXED);
        else if (outcome == BREAKER_FAILURE)
        {
            __atomic_store_n(&b->consecutive_failures, b->consecutive_failures + 1, __ATOMIC_RELAXED);
            if (b->consecutive_failures >= b->failure_threshold)
                move_to(b, BREAKER_OPEN, now);
        }
    }
    else if (b->state == BREAKER_HALF_OPEN && p->probe)
    {
        b->probes_in_flight--;
        if (outcome == BREAKER_FAILURE)
            move_to(b, BREAKER_OPEN, now);
        else if (outcome == BREAKER_ABANDONED)
            b->probes_admitted--;   /* no verdict: let another probe in */
        else if (++b->probe_successes >= b->half_open_probes)
            move_to(b, BREAKER_CLOSED, now);
    }
out:
    pthread_mutex_unlock(&b->lock);
}

breaker_state
breaker_current(breaker *b)
{
    breaker_state s;

    pthread_mutex_lock(&b->lock);
    s = b->state;
    pthread_mutex_unlock(&b->lock);
    return s;
}

void
breaker_snapshot(breaker *b, breaker_state *state, uint64_t transitions[3][3],
                 uint64_t *rejected, int *probes_in_flight)
{
    pthread_mutex_lock(&b->lock);
    *state = b->state;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            transitions[i][j] = b->transitions[i][j];
    *rejected = b->rejected;
    *probes_in_flight = b->probes_in_flight;
    pthread_mutex_unlock(&b->lock);
}
