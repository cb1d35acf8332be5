/* Core benchmarks: what the retry engine costs on the success path, compared
 * with calling the operation directly in the same run, and what one backoff
 * draw costs for each jitter mode.
 *
 * Targets (issue 2): <= 5 ns added per guarded call; <= 20 ns per draw. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <resil/resil.h>

#include "bench_util.h"

#define ITERS 20000000ull
#define REPEATS 7

/* The operation under test: as cheap as a call can be, and opaque to the
 * optimiser so neither loop can be folded away. */
__attribute__((noinline)) static int op_success(void *ud, resil_outcome *out) {
  (void)out;
  (*(uint64_t *)ud)++;
  return 0;
}

static int (*volatile op_ptr)(void *, resil_outcome *) = op_success;

static void loop_bare(void *ud, uint64_t n) {
  (void)ud;
  uint64_t counter = 0;
  int (*op)(void *, resil_outcome *) = op_ptr;
  for (uint64_t i = 0; i < n; i++) {
    resil_outcome o = {RESIL_OUTCOME_UNSET, 0, 0, 0};
    if (op(&counter, &o) != 0) abort();
  }
  bench_sink(counter);
}

struct guarded {
  resil_retry_policy *policy;
};

static void loop_guarded(void *ud, uint64_t n) {
  struct guarded *g = ud;
  uint64_t counter = 0;
  for (uint64_t i = 0; i < n; i++)
    if (resil_retry_call(g->policy, op_ptr, NULL, &counter, NULL, NULL) != RESIL_OK) abort();
  bench_sink(counter);
}

static void loop_step(void *ud, uint64_t n) {
  struct guarded *g = ud;
  uint64_t counter = 0;
  int (*op)(void *, resil_outcome *) = op_ptr;
  for (uint64_t i = 0; i < n; i++) {
    resil_retry_state st;
    resil_retry_begin(&st, g->policy, NULL, NULL);
    resil_outcome o = {RESIL_OUTCOME_UNSET, 0, 0, 0};
    o.code = op(&counter, &o);
    if (resil_retry_next(&st, &o).kind != RESIL_STEP_STOP) abort();
  }
  bench_sink(counter);
}

struct draw {
  resil_backoff b;
  resil_rng rng;
};

static void loop_draw(void *ud, uint64_t n) {
  struct draw *d = ud;
  resil_ns prev = 0, acc = 0;
  for (uint64_t i = 0; i < n; i++) {
    prev = resil_backoff_delay(&d->b, (uint32_t)(i & 15) + 1, prev, &d->rng);
    acc += prev;
  }
  bench_sink((uint64_t)acc);
}

static void loop_clock(void *ud, uint64_t n) {
  resil_clock *c = ud;
  resil_ns acc = 0;
  for (uint64_t i = 0; i < n; i++) acc += c->now(c->ud);
  bench_sink((uint64_t)acc);
}

static resil_retry_policy *make_policy(int measure_time, resil_ns max_elapsed) {
  resil_retry_config cfg;
  resil_retry_config_init(&cfg);
  cfg.measure_time = measure_time;
  cfg.max_elapsed = max_elapsed;
  resil_retry_policy *p = NULL;
  if (resil_retry_policy_new(&p, &cfg) != RESIL_OK) abort();
  return p;
}

int main(int argc, char **argv) {
  uint64_t iters = ITERS;
  if (argc > 1) iters = strtoull(argv[1], NULL, 10);
  if (iters == 0) iters = ITERS;

  printf("resil %s core benchmarks (%llu iterations, median of %d runs)\n\n", resil_version(),
         (unsigned long long)iters, REPEATS);

  double bare = bench_median_ns(loop_bare, NULL, iters, REPEATS);

  struct {
    const char *name;
    int measure_time;
    resil_ns max_elapsed;
    void (*loop)(void *, uint64_t);
  } cases[] = {
      {"resil_retry_call, no timing", 0, RESIL_NS_MAX, loop_guarded},
      {"step API, no timing", 0, RESIL_NS_MAX, loop_step},
      {"resil_retry_call, default (elapsed)", 1, RESIL_NS_MAX, loop_guarded},
      {"resil_retry_call, 10s deadline", 1, 10 * RESIL_SEC, loop_guarded},
  };

  printf("Success path: guarded call vs bare call (target <= 5 ns added)\n");
  printf("%-40s %10s %10s %8s\n", "case", "ns/call", "added ns", "ratio");
  printf("%-40s %10.2f %10s %8s\n", "bare call (baseline)", bare, "-", "1.00");
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct guarded g = {make_policy(cases[i].measure_time, cases[i].max_elapsed)};
    double ns = bench_median_ns(cases[i].loop, &g, iters, REPEATS);
    printf("%-40s %10.2f %10.2f %8.2f\n", cases[i].name, ns, ns - bare, ns / bare);
    resil_retry_policy_free(g.policy);
  }

  resil_clock clk = resil_clock_system();
  double clock_ns = bench_median_ns(loop_clock, &clk, iters / 4, REPEATS);
  printf("%-40s %10.2f   (the timed rows read it twice per call)\n", "one clock read (CLOCK_MONOTONIC)",
         clock_ns);

  printf("\nBackoff draw (exponential, base 100ms, cap 30s; target <= 20 ns)\n");
  printf("%-40s %10s\n", "jitter", "ns/draw");
  for (int j = RESIL_JITTER_NONE; j <= RESIL_JITTER_PROPORTIONAL; j++) {
    struct draw d;
    resil_backoff_init(&d.b);
    d.b.base = 100 * RESIL_MSEC;
    d.b.jitter = (resil_jitter)j;
    resil_rng_seed(&d.rng, 42);
    double ns = bench_median_ns(loop_draw, &d, iters, REPEATS);
    printf("%-40s %10.2f\n", resil_jitter_name((resil_jitter)j), ns);
  }
  {
    struct draw d;
    resil_backoff_init(&d.b);
    d.b.base = 100 * RESIL_MSEC;
    d.b.multiplier = 1.5; /* the non-power-of-two path */
    resil_rng_seed(&d.rng, 42);
    double ns = bench_median_ns(loop_draw, &d, iters, REPEATS);
    printf("%-40s %10.2f\n", "full, multiplier 1.5", ns);
  }
  return 0;
}
