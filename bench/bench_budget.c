/* Retry-budget benchmarks.
 *
 * 1. Token bucket, side by side in one run: resil's lock-free GCRA bucket vs
 *    a straightforward mutex-protected bucket written here (tokens as a double
 *    plus the last refill time, refilled on every call). Both read
 *    CLOCK_MONOTONIC once per check, outside any lock, and both are given the
 *    same rate and burst. With 1 and 2 threads hammering one shared bucket.
 *    Two regimes, each printed with the fraction of checks granted so the
 *    work is visibly the same:
 *      granted:  rate 1e9/s, burst 1e6: (nearly) every check is granted and
 *                writes the shared state (the fair, worst case for resil).
 *      denied:   rate 1000/s, burst 10: almost every check is denied; resil
 *                then only reads its word, the mutex bucket still locks.
 * 2. Every other kind, single-threaded: ns per resil_budget_retry and per
 *    request + retry + result cycle (the realistic cost per retried call).
 *
 * Usage: bench_budget [iterations per thread]. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <resil/resil.h>

#include "bench_util.h"

#define ITERS 2000000ull
#define REPEATS 5
#define MAX_THREADS 2

/* ---- the baseline: a mutex-protected token bucket ------------------------ */

typedef struct {
  pthread_mutex_t mu;
  double tokens, burst, per_ns;
  int64_t last;
  uint64_t granted, denied;
} mutex_bucket;

static void mb_init(mutex_bucket *m, double rate, double burst) {
  pthread_mutex_init(&m->mu, NULL);
  m->tokens = burst;
  m->burst = burst;
  m->per_ns = rate / 1e9;
  m->last = bench_now();
  m->granted = m->denied = 0;
}

static int mb_try(mutex_bucket *m) {
  int64_t now = bench_now();
  pthread_mutex_lock(&m->mu);
  if (now > m->last) {
    double t = m->tokens + (double)(now - m->last) * m->per_ns;
    m->tokens = t < m->burst ? t : m->burst;
    m->last = now;
  }
  int ok = m->tokens >= 1;
  if (ok) {
    m->tokens -= 1;
    m->granted++;
  } else {
    m->denied++;
  }
  pthread_mutex_unlock(&m->mu);
  return ok;
}

/* ---- running N threads on one shared bucket ----------------------------- */

typedef struct {
  int use_resil;
  resil_budget *b;
  mutex_bucket *m;
  uint64_t iters;
  _Atomic int *go;
  uint64_t granted;
} job;

static void *tb_worker(void *arg) {
  job *j = arg;
  while (!atomic_load_explicit(j->go, memory_order_acquire)) {
  }
  uint64_t g = 0;
  if (j->use_resil) {
    for (uint64_t i = 0; i < j->iters; i++) g += resil_budget_retry(j->b, 0) == RESIL_OK;
  } else {
    for (uint64_t i = 0; i < j->iters; i++) g += (uint64_t)mb_try(j->m);
  }
  j->granted = g;
  return NULL;
}

typedef struct {
  double ns_per_check; /* wall time * threads / checks: what one check costs a thread */
  double mchecks;      /* all threads together, millions per second */
  double granted;      /* fraction of checks granted */
} tb_result;

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* One run on a fresh bucket: wall ns, and the grants through *granted. */
static double run_tb_once(int use_resil, int threads, double rate, double burst, uint64_t iters,
                          uint64_t *granted) {
  resil_budget *b = NULL;
  mutex_bucket m;
  if (use_resil) {
    resil_budget_config c;
    resil_budget_config_init(&c);
    c.rate = rate;
    c.burst = burst;
    if (resil_budget_new(&b, &c) != RESIL_OK) abort();
  } else {
    mb_init(&m, rate, burst);
  }
  _Atomic int go = 0;
  job jobs[MAX_THREADS];
  pthread_t t[MAX_THREADS];
  for (int i = 0; i < threads; i++) {
    jobs[i] = (job){use_resil, b, &m, iters, &go, 0};
    if (pthread_create(&t[i], NULL, tb_worker, &jobs[i]) != 0) abort();
  }
  int64_t t0 = bench_now();
  atomic_store_explicit(&go, 1, memory_order_release);
  uint64_t g = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(t[i], NULL);
    g += jobs[i].granted;
  }
  double wall = (double)(bench_now() - t0);
  bench_sink(g);
  *granted = g;
  if (use_resil)
    resil_budget_free(b);
  else
    pthread_mutex_destroy(&m.mu);
  return wall;
}

/* The mutex bucket and resil's, alternating run by run so both see the same
 * machine (this matters on a small shared box); medians of TB_REPEATS. */
#define TB_REPEATS 9
static void run_tb_pair(int threads, double rate, double burst, uint64_t iters, tb_result *mx,
                        tb_result *rs) {
  double walls[2][TB_REPEATS], grants[2] = {0, 0};
  (void)run_tb_once(1, threads, rate, burst, iters / 10 + 1, &(uint64_t){0}); /* warm up */
  for (int r = 0; r < TB_REPEATS; r++) {
    for (int impl = 0; impl < 2; impl++) {
      uint64_t g;
      walls[impl][r] = run_tb_once(impl, threads, rate, burst, iters, &g);
      grants[impl] += (double)g;
    }
  }
  double checks = (double)iters * threads;
  tb_result *out[2] = {mx, rs};
  for (int impl = 0; impl < 2; impl++) {
    qsort(walls[impl], TB_REPEATS, sizeof walls[impl][0], cmp_double);
    double wall = walls[impl][TB_REPEATS / 2];
    out[impl]->ns_per_check = wall * threads / checks;
    out[impl]->mchecks = checks / wall * 1e3;
    out[impl]->granted = grants[impl] / (checks * TB_REPEATS);
  }
}

/* ---- the other kinds, single-threaded ----------------------------------- */

/* Grants and checks of the last loop run, for the "granted" column. */
static uint64_t last_granted, last_checks;

static void loop_retry(void *ud, uint64_t n) {
  resil_budget *b = ud;
  uint64_t g = 0;
  for (uint64_t i = 0; i < n; i++) g += resil_budget_retry(b, 0) == RESIL_OK;
  last_granted = g;
  last_checks = n;
  bench_sink(g);
}

/* Logical requests as a healthy caller makes them: request + result, and
 * one first attempt in 16 fails and is retried (retry + the retry's
 * successful result). A mix every budget sustains, so retries are granted. */
static void loop_cycle(void *ud, uint64_t n) {
  resil_budget *b = ud;
  uint64_t g = 0, checks = 0;
  for (uint64_t i = 0; i < n; i++) {
    if (resil_budget_request(b) != RESIL_OK) continue;
    int fail = (i & 15) == 0;
    resil_budget_result(b, !fail, 0);
    if (!fail) continue;
    checks++;
    if (resil_budget_retry(b, 0) == RESIL_OK) {
      g++;
      resil_budget_result(b, 1, RESIL_BUDGET_RETRY);
    }
  }
  last_granted = g;
  last_checks = checks;
  bench_sink(g);
}

static void loop_clock(void *ud, uint64_t n) {
  (void)ud;
  int64_t acc = 0;
  for (uint64_t i = 0; i < n; i++) acc += bench_now();
  bench_sink((uint64_t)acc);
}

static resil_budget *make_kind(resil_budget_kind k) {
  resil_budget_config c;
  resil_budget_config_init(&c);
  c.kind = k;
  if (k == RESIL_BUDGET_TOKEN_BUCKET) {
    c.rate = 1e9;
    c.burst = 1e6;
  }
  resil_budget *b = NULL;
  if (resil_budget_new(&b, &c) != RESIL_OK) abort();
  return b;
}

int main(int argc, char **argv) {
  uint64_t iters = ITERS;
  if (argc > 1) iters = strtoull(argv[1], NULL, 10);
  if (iters == 0) iters = ITERS;

  printf("resil %s retry-budget benchmarks (%llu checks per thread and run; token bucket:\n"
         "median of %d runs, mutex and resil alternating; other kinds: median of %d)\n\n",
         resil_version(), (unsigned long long)iters, TB_REPEATS, REPEATS);
  printf("Token bucket: one retry-permission check = one clock read + the decision on a\n"
         "bucket shared by all threads. resil: lock-free GCRA (one CAS), plus its lifetime\n"
         "counters. mutex: tokens (double) + last refill time under a pthread mutex,\n"
         "refilled on every call, clock read outside the lock.\n"
         "ns/check = wall time x threads / checks (cost to each thread); ratio = mutex\n"
         "ns/check / resil ns/check (> 1: resil is faster).\n\n");

  struct {
    const char *name;
    double rate, burst;
  } regimes[] = {
      {"granted (rate 1e9/s, burst 1e6)", 1e9, 1e6},
      {"denied  (rate 1000/s, burst 10)", 1000, 10},
  };
  printf("%-33s %-7s %-6s %10s %10s %8s %8s\n", "regime", "impl", "thr", "ns/check", "Mchecks/s",
         "granted", "ratio");
  for (size_t r = 0; r < sizeof regimes / sizeof regimes[0]; r++) {
    for (int threads = 1; threads <= MAX_THREADS; threads++) {
      tb_result m, x;
      run_tb_pair(threads, regimes[r].rate, regimes[r].burst, iters, &m, &x);
      printf("%-33s %-7s %-6d %10.1f %10.2f %7.1f%% %8s\n", regimes[r].name, "mutex", threads,
             m.ns_per_check, m.mchecks, 100 * m.granted, "1.00");
      printf("%-33s %-7s %-6d %10.1f %10.2f %7.1f%% %8.2f\n", "", "resil", threads,
             x.ns_per_check, x.mchecks, 100 * x.granted, m.ns_per_check / x.ns_per_check);
    }
  }
  double clock_ns = bench_median_ns(loop_clock, NULL, iters, REPEATS);
  printf("%-33s %-7s %-6d %10.1f   (included in every check above)\n", "clock read alone", "-", 1,
         clock_ns);

  printf("\nEvery kind, single-threaded, default config (token bucket: rate 1e9/s, burst 1e6).\n"
         "retry = resil_budget_retry alone, in a loop (budgets that run dry then\n"
         "deny: see granted); request = one logical request: request + result, and\n"
         "1 in 16 fails and is retried (retry + result), 2.125 calls on average.\n"
         "RATIO and ADAPTIVE read the clock on every call; GRPC and QUOTA never do.\n\n");
  printf("%-14s %10s %8s %12s %8s\n", "kind", "ns/retry", "granted", "ns/request", "granted");
  for (int k = RESIL_BUDGET_TOKEN_BUCKET; k <= RESIL_BUDGET_ADAPTIVE; k++) {
    resil_budget *b = make_kind((resil_budget_kind)k);
    double cycle = bench_median_ns(loop_cycle, b, iters, REPEATS);
    double cycle_g = last_checks ? (double)last_granted / (double)last_checks : 0;
    resil_budget_free(b);
    b = make_kind((resil_budget_kind)k);
    double retry = bench_median_ns(loop_retry, b, iters, REPEATS);
    double retry_g = last_checks ? (double)last_granted / (double)last_checks : 0;
    resil_budget_free(b);
    printf("%-14s %10.1f %7.1f%% %12.1f %7.1f%%\n", resil_budget_kind_name((resil_budget_kind)k),
           retry, 100 * retry_g, cycle, 100 * cycle_g);
  }
  return 0;
}
