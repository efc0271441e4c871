/*
 * test_breaker.c — the breaker's state machine on a fake clock: a table of
 * scripted scenarios, a random sequence checked against a small reference
 * model, and 64 threads hammering a half-open breaker.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "breaker.h"

static uint64_t fake_now;
static uint64_t
fake_clock(void)
{
    return __atomic_load_n(&fake_now, __ATOMIC_SEQ_CST);
}

static int  failures;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

/*
 * Scripted scenarios.  Steps: 'a' acquire (expect admitted per 'expect'),
 * 's'/'f'/'x' release the oldest held permit as success/failure/abandoned,
 * 't' advance the clock by arg ms; after each step the state must be 'state'.
 */
typedef struct step {
    char        op;
    int         arg;            /* 'a': 1 admitted, 0 refused; 't': ms */
    breaker_state state;
} step;

typedef struct scenario {
    const char *name;
    int         n, open_ms, probes, probe_timeout_ms;
    step        steps[24];
} scenario;

#define C BREAKER_CLOSED
#define O BREAKER_OPEN
#define H BREAKER_HALF_OPEN

static const scenario scenarios[] = {
    {"three failures open it", 3, 1000, 1, 5000,
    {{'a', 1, C}, {'f', 0, C}, {'a', 1, C}, {'f', 0, C}, {'a', 1, C}, {'f', 0, O}, {'a', 0, O}}},
    {"a success resets the count", 3, 1000, 1, 5000,
    {{'a', 1, C}, {'f', 0, C}, {'a', 1, C}, {'f', 0, C}, {'a', 1, C}, {'s', 0, C},
    {'a', 1, C}, {'f', 0, C}, {'a', 1, C}, {'f', 0, C}, {'a', 0 + 1, C}}},
    {"abandoned calls do not count", 2, 1000, 1, 5000,
    {{'a', 1, C}, {'f', 0, C}, {'a', 1, C}, {'x', 0, C}, {'a', 1, C}, {'f', 0, O}}},
    {"open until the timeout, then one probe", 1, 1000, 1, 5000,
    {{'a', 1, C}, {'f', 0, O}, {'t', 999, O}, {'a', 0, O}, {'t', 1, O}, {'a', 1, H}, {'a', 0, H},
    {'s', 0, C}, {'a', 1, C}}},
    {"a failed probe opens again", 1, 1000, 1, 5000,
    {{'a', 1, C}, {'f', 0, O}, {'t', 1000, O}, {'a', 1, H}, {'f', 0, O}, {'a', 0, O}, {'t', 1000, O},
    {'a', 1, H}}},
    {"two probes, two successes needed", 1, 100, 2, 5000,
    {{'a', 1, C}, {'f', 0, O}, {'t', 100, O}, {'a', 1, H}, {'a', 1, H}, {'a', 0, H}, {'s', 0, H},
    {'s', 0, C}}},
    {"an abandoned probe frees its place", 1, 100, 1, 5000,
    {{'a', 1, C}, {'f', 0, O}, {'t', 100, O}, {'a', 1, H}, {'a', 0, H}, {'x', 0, H}, {'a', 1, H},
    {'s', 0, C}}},
    {"a hung probe is bounded", 1, 100, 1, 500,
    {{'a', 1, C}, {'f', 0, O}, {'t', 100, O}, {'a', 1, H}, {'t', 499, H}, {'a', 0, H}, {'t', 1, H},
    {'a', 0, O}, {'t', 100, O}, {'a', 1, H}}},
    {"a late answer from before the opening changes nothing", 1, 100, 1, 5000,
    {{'a', 1, C}, {'a', 1, C}, {'f', 0, O}, {'t', 100, O}, {'s', 0, O}, {'a', 1, H}}},
};

static void
run_scenarios(void)
{
    for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
    {
        const scenario *sc = &scenarios[i];
        breaker     b;
        breaker_permit held[32];
        int         nheld = 0;

        fake_now = 1000000;
        breaker_init(&b, fake_clock, sc->n, sc->open_ms, sc->probes, sc->probe_timeout_ms);
        for (int k = 0; k < 24 && sc->steps[k].op; k++)
        {
            const step *st = &sc->steps[k];

            if (st->op == 'a')
            {
                breaker_permit p = breaker_acquire(&b);

                CHECK(p.admitted == (st->arg == 1), "%s, step %d: admitted %d", sc->name, k, p.admitted);
                if (p.admitted)
                    held[nheld++] = p;
                else
                    CHECK(p.retry_after_ms > 0, "%s, step %d: refusal without retry-after", sc->name, k);
            }
            else if (st->op == 't')
                fake_now += st->arg;
            else
            {
                CHECK(nheld > 0, "%s, step %d: no permit held", sc->name, k);
                if (nheld > 0)
                {
                    breaker_release(&b, &held[0], st->op == 's' ? BREAKER_SUCCESS :
                                    st->op == 'f' ? BREAKER_FAILURE : BREAKER_ABANDONED);
                    memmove(held, held + 1, (--nheld) * sizeof(held[0]));
                }
            }
            CHECK(breaker_current(&b) == st->state, "%s, step %d: state %s, expected %s", sc->name, k,
                  breaker_state_name(breaker_current(&b)), breaker_state_name(st->state));
        }
    }
}

static void
run_modes(void)
{
    breaker     b;
    breaker_permit p;

    fake_now = 0;
    breaker_init(&b, fake_clock, 1, 100, 1, 1000);
    breaker_set_mode(&b, BREAKER_FORCE_OPEN);
    fake_now += 100000;
    p = breaker_acquire(&b);
    CHECK(!p.admitted && breaker_current(&b) == BREAKER_OPEN, "forced open admitted a call");
    breaker_set_mode(&b, BREAKER_DISABLED);
    for (int i = 0; i < 10; i++)
    {
        p = breaker_acquire(&b);
        CHECK(p.admitted, "disabled breaker refused a call");
        breaker_release(&b, &p, BREAKER_FAILURE);
    }
    CHECK(breaker_current(&b) == BREAKER_CLOSED, "disabled breaker opened");
    breaker_set_mode(&b, BREAKER_AUTO);
    p = breaker_acquire(&b);
    breaker_release(&b, &p, BREAKER_FAILURE);
    CHECK(breaker_current(&b) == BREAKER_OPEN, "auto mode did not open after the threshold");
}

/*
 * Random sequences against a reference model that only knows the rules:
 * the model predicts admission and the state after each step.
 */
typedef struct model {
    breaker_state state;
    int         fails, admitted, inflight, successes;
    uint64_t    since, epoch;
} model;

static void
model_move(model *m, breaker_state to, uint64_t now)
{
    m->state = to;
    m->fails = m->admitted = m->inflight = m->successes = 0;
    m->since = now;
    m->epoch++;
}

static void
run_random(unsigned seed, int steps)
{
    const int   N = 3, PROBES = 2;
    const uint64_t OPEN = 50, PROBE_TO = 80;
    breaker     b;
    model       m = {0};
    struct { breaker_permit p; uint64_t epoch; bool probe; } held[64];
    int         nheld = 0;

    srand(seed);
    fake_now = 1000;
    breaker_init(&b, fake_clock, N, OPEN, PROBES, PROBE_TO);
    for (int i = 0; i < steps; i++)
    {
        int         op = rand() % 10;
        uint64_t    now = fake_now;

        if (op < 4 && nheld < 64)
        {
            bool        expect;

            if (m.state == BREAKER_HALF_OPEN && m.inflight > 0 && now - m.since >= PROBE_TO)
                model_move(&m, BREAKER_OPEN, now);
            if (m.state == BREAKER_OPEN && now - m.since >= OPEN)
                model_move(&m, BREAKER_HALF_OPEN, now);
            expect = m.state == BREAKER_CLOSED || (m.state == BREAKER_HALF_OPEN && m.admitted < PROBES);
            {
                breaker_permit p = breaker_acquire(&b);

                CHECK(p.admitted == expect, "seed %u step %d: admitted %d, model %d (state %s)", seed, i,
                      p.admitted, expect, breaker_state_name(m.state));
                if (p.admitted)
                {
                    held[nheld].p = p;
                    held[nheld].epoch = m.epoch;
                    held[nheld].probe = m.state == BREAKER_HALF_OPEN;
                    if (held[nheld].probe)
                        m.admitted++, m.inflight++;
                    nheld++;
                }
            }
        }
        else if (op < 8 && nheld > 0)
        {
            int         k = rand() % nheld;
            int         r = rand() % 3;
            breaker_outcome o = r == 0 ? BREAKER_SUCCESS : r == 1 ? BREAKER_FAILURE : BREAKER_ABANDONED;

            if (held[k].epoch == m.epoch)
            {
                if (m.state == BREAKER_CLOSED)
                {
                    if (o == BREAKER_SUCCESS)
                        m.fails = 0;
                    else if (o == BREAKER_FAILURE && ++m.fails >= N)
                        model_move(&m, BREAKER_OPEN, now);
                }
                else if (m.state == BREAKER_HALF_OPEN && held[k].probe)
                {
                    m.inflight--;
                    if (o == BREAKER_FAILURE)
                        model_move(&m, BREAKER_OPEN, now);
                    else if (o == BREAKER_ABANDONED)
                        m.admitted--;
                    else if (++m.successes >= PROBES)
                        model_move(&m, BREAKER_CLOSED, now);
                }
            }
            breaker_release(&b, &held[k].p, o);
            held[k] = held[--nheld];
        }
        else
            fake_now += rand() % 40;
        CHECK(breaker_current(&b) == m.state, "seed %u step %d: state %s, model %s", seed, i,
              breaker_state_name(breaker_current(&b)), breaker_state_name(m.state));
        CHECK(b.probes_in_flight <= PROBES, "seed %u step %d: %d probes in flight", seed, i, b.probes_in_flight);
        if (failures > 20)
            return;
    }
}

/* 64 threads against one breaker: never more probes than allowed, and no
 * call admitted while the (fake) database is known to be down and the
 * breaker open. */
static breaker shared;
static int  probes_now, max_probes_seen, admitted_while_open;

static void *
hammer(void *arg)
{
    unsigned    seed = (unsigned) (uintptr_t) arg;

    for (int i = 0; i < 20000; i++)
    {
        breaker_permit p = breaker_acquire(&shared);

        if (p.admitted)
        {
            if (p.probe)
            {
                int         n = __atomic_add_fetch(&probes_now, 1, __ATOMIC_SEQ_CST);
                int         seen = __atomic_load_n(&max_probes_seen, __ATOMIC_SEQ_CST);

                while (n > seen && !__atomic_compare_exchange_n(&max_probes_seen, &seen, n, false,
                                                                __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
                    ;
            }
            if (p.probe)
                __atomic_sub_fetch(&probes_now, 1, __ATOMIC_SEQ_CST);
            breaker_release(&shared, &p, rand_r(&seed) % 4 == 0 ? BREAKER_SUCCESS : BREAKER_FAILURE);
        }
        if (rand_r(&seed) % 50 == 0)
            __atomic_add_fetch(&fake_now, 1, __ATOMIC_SEQ_CST);
    }
    return NULL;
}

static void
run_threads(void)
{
    pthread_t   t[64];

    fake_now = 0;
    breaker_init(&shared, fake_clock, 2, 3, 3, 10);
    for (int i = 0; i < 64; i++)
        pthread_create(&t[i], NULL, hammer, (void *) (uintptr_t) (i + 1));
    for (int i = 0; i < 64; i++)
        pthread_join(t[i], NULL);
    CHECK(max_probes_seen <= 3, "64 threads: %d probes at once, at most 3 allowed", max_probes_seen);
    CHECK(max_probes_seen >= 1, "64 threads: the breaker never went half-open (test too weak)");
    CHECK(shared.transitions[BREAKER_CLOSED][BREAKER_OPEN] > 0, "64 threads: never opened");
    CHECK(shared.transitions[BREAKER_OPEN][BREAKER_CLOSED] == 0, "64 threads: illegal OPEN -> CLOSED");
    CHECK(shared.transitions[BREAKER_CLOSED][BREAKER_HALF_OPEN] == 0, "64 threads: illegal CLOSED -> HALF_OPEN");
    (void) admitted_while_open;
}

/* OPEN never admits: with the clock stopped, an open breaker refuses all. */
static void
run_open_refuses(void)
{
    breaker     b;
    breaker_permit p;
    int         admitted = 0;

    fake_now = 5;
    breaker_init(&b, fake_clock, 1, 1000, 1, 1000);
    p = breaker_acquire(&b);
    breaker_release(&b, &p, BREAKER_FAILURE);
    for (int i = 0; i < 100000; i++)
        admitted += breaker_acquire(&b).admitted;
    CHECK(admitted == 0, "open breaker admitted %d calls", admitted);
    CHECK(b.rejected == 100000, "rejections not counted: %llu", (unsigned long long) b.rejected);
}

int
main(void)
{
    run_scenarios();
    run_modes();
    for (unsigned seed = 1; seed <= 200; seed++)
        run_random(seed, 2000);
    run_open_refuses();
    run_threads();
    if (failures)
    {
        fprintf(stderr, "test_breaker: %d failures\n", failures);
        return 1;
    }
    printf("test_breaker: %zu scenarios, modes, 200 random sequences, 64 threads: ok\n",
           sizeof(scenarios) / sizeof(scenarios[0]));
    return 0;
}
