/* Circuit breaker benchmark: what acquire + record costs in the closed state,
 * resil's breaker against a straightforward mutex-protected breaker written
 * here (one pthread mutex around a consecutive counter, or around a ring of
 * outcomes with aggregates), with 1 and with 2 threads, in one run.
 *
 * Targets: 1 thread <= 15 ns per pair (consecutive), <= 40 ns (count
 * window); 2 threads >= 2x the mutex baseline's throughput. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <resil/resil.h>

#include "bench_util.h"

#define ITERS 10000000ull
#define REPEATS 5
#define WINDOW 100

/* ---- the baseline: the obvious design, one mutex around everything ------ */

typedef struct naive_breaker {
  pthread_mutex_t mu;
  int open;
  int window; /* 0: consecutive failures, else a count window */
  uint32_t consec, threshold;
  uint8_t ring[WINDOW];
  uint32_t head, calls, failures, minimum;
  double rate;
  uint64_t successes, failed;
} naive_breaker;

static void naive_init(naive_breaker *n, int window) {
  memset(n, 0, sizeof *n);
  pthread_mutex_init(&n->mu, NULL);
  n->window = window;
  n->threshold = 5;
  n->minimum = 20;
  n->rate = 0.5;
}

static int naive_acquire(naive_breaker *n) {
  pthread_mutex_lock(&n->mu);
  int ok = !n->open;
  pthread_mutex_unlock(&n->mu);
  return ok;
}

static void naive_record(naive_breaker *n, int failed) {
  pthread_mutex_lock(&n->mu);
  if (failed)
    n->failed++;
  else
    n->successes++;
  if (!n->window) {
    if (failed) {
      if (++n->consec >= n->threshold) n->open = 1;
    } else {
      n->consec = 0;
    }
  } else {
    uint8_t code = (uint8_t)(1 | (failed ? 2 : 0));
    uint8_t old = n->ring[n->head];
    n->ring[n->head] = code;
    n->head = (n->head + 1) % WINDOW;
    if (!old) n->calls++;
    n->failures += (uint32_t)((code >> 1) & 1) - (uint32_t)((old >> 1) & 1);
    if (n->calls >= n->minimum && (double)n->failures / n->calls >= n->rate) n->open = 1;
  }
  pthread_mutex_unlock(&n->mu);
}

/* ---- the loops ---------------------------------------------------------- */

typedef struct subject {
  resil_breaker *b; /* or */
  naive_breaker *n;
  unsigned fail_every; /* every Nth call fails (0: none) */
} subject;

static void loop_resil(subject *s, uint64_t iters) {
  resil_breaker *b = s->b;
  uint64_t ok = 0;
  for (uint64_t i = 0; i < iters; i++) {
    resil_permit p;
    if (resil_breaker_acquire(b, &p, NULL) == RESIL_OK) {
      int failed = s->fail_every && i % s->fail_every == 0;
      resil_breaker_record(b, &p, failed ? RESIL_CALL_FAILURE : RESIL_CALL_SUCCESS, 0);
      ok++;
    }
  }
  bench_sink(ok);
}

static void loop_naive(subject *s, uint64_t iters) {
  naive_breaker *n = s->n;
  uint64_t ok = 0;
  for (uint64_t i = 0; i < iters; i++) {
    if (naive_acquire(n)) {
      naive_record(n, s->fail_every && i % s->fail_every == 0);
      ok++;
    }
  }
  bench_sink(ok);
}

/* ---- running on N threads ----------------------------------------------- */

typedef struct run {
  void (*loop)(subject *, uint64_t);
  subject *s;
  uint64_t iters;
  int cpu;
  pthread_barrier_t *start;
} run;

static void *thread_main(void *arg) {
  run *r = arg;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(r->cpu, &set);
  (void)pthread_setaffinity_np(pthread_self(), sizeof set, &set); /* best effort */
  pthread_barrier_wait(r->start);
  r->loop(r->s, r->iters);
  return NULL;
}

typedef struct rate {
  double median, lo, hi; /* total pairs per second over REPEATS runs */
} rate;

/* Wall time for `threads` threads doing `iters` pairs each. */
static rate throughput(void (*loop)(subject *, uint64_t), subject *s, int threads,
                       uint64_t iters) {
  double r[REPEATS];
  int ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (ncpu < 1) ncpu = 1;
  loop(s, iters / 10 + 1); /* warm up */
  for (int k = 0; k < REPEATS; k++) {
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
    pthread_t t[8];
    run runs[8];
    for (int i = 0; i < threads; i++) {
      runs[i] = (run){loop, s, iters, i % ncpu, &start};
      if (pthread_create(&t[i], NULL, thread_main, &runs[i]) != 0) abort();
    }
    pthread_barrier_wait(&start);
    int64_t t0 = bench_now();
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    int64_t dt = bench_now() - t0;
    pthread_barrier_destroy(&start);
    r[k] = (double)iters * threads / ((double)dt / 1e9);
  }
  /* median */
  for (int i = 1; i < REPEATS; i++)
    for (int j = i; j > 0 && r[j - 1] > r[j]; j--) {
      double x = r[j];
      r[j] = r[j - 1];
      r[j - 1] = x;
    }
  return (rate){r[REPEATS / 2], r[0], r[REPEATS - 1]};
}

static resil_breaker *make_resil(resil_breaker_trip trip) {
  resil_breaker_config c;
  resil_breaker_config_init(&c);
  c.trip = trip;
  c.window_calls = WINDOW;
  resil_breaker *b = NULL;
  if (resil_breaker_new(&b, &c) != RESIL_OK) abort();
  return b;
}

typedef struct row {
  const char *mode;
  rate naive[2], resil[2]; /* by thread count 1 and 2 */
} row;

int main(int argc, char **argv) {
  uint64_t iters = ITERS;
  if (argc > 1) iters = strtoull(argv[1], NULL, 10);
  if (iters == 0) iters = ITERS;
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

  printf("resil %s circuit breaker benchmark: acquire + record (success) in the closed state\n",
         resil_version());
  printf("(%llu pairs per thread, median of %d runs, %ld CPUs online; baseline: one pthread "
         "mutex\n around the same state, taken in acquire and in record)\n\n",
         (unsigned long long)iters, REPEATS, ncpu);

  /* The third row keeps failures in the window (1 call in 64 fails, well
   * under the 50% threshold), so resil takes its general path: the shared
   * ring head. The first two rows are the healthy steady state. */
  enum { NROWS = 3 };
  row rows[NROWS] = {{.mode = "consecutive"}, {.mode = "count window (100)"},
                     {.mode = "window, 1/64 fail"}};
  for (int m = 0; m < NROWS; m++) {
    naive_breaker n;
    naive_init(&n, m > 0);
    resil_breaker *b = make_resil(m ? RESIL_TRIP_COUNT_WINDOW : RESIL_TRIP_CONSECUTIVE);
    unsigned every = m == 2 ? 64 : 0;
    subject sn = {NULL, &n, every}, sr = {b, NULL, every};
    for (int t = 1; t <= 2; t++) {
      /* Contended mutexes are slow: fewer pairs keep the run short. */
      uint64_t it = t == 1 ? iters : iters / 2;
      rows[m].naive[t - 1] = throughput(loop_naive, &sn, t, it);
      rows[m].resil[t - 1] = throughput(loop_resil, &sr, t, it);
    }
    resil_breaker_snapshot s;
    resil_breaker_snapshot_get(b, &s);
    if (s.state != RESIL_BREAKER_CLOSED) abort();
    resil_breaker_free(b);
    pthread_mutex_destroy(&n.mu);
  }

  /* Mpairs/s: all threads together (median, and the slowest..fastest run);
   * ns/pair: the time one pair takes on one thread; ratio: throughput. */
  printf("%-20s %-8s %7s %10s %15s %9s %9s\n", "trip rule", "breaker", "threads", "Mpairs/s",
         "(min..max)", "ns/pair", "vs mutex");
  for (int m = 0; m < NROWS; m++) {
    for (int t = 1; t <= 2; t++) {
      for (int which = 0; which < 2; which++) {
        rate x = which ? rows[m].resil[t - 1] : rows[m].naive[t - 1];
        char spread[32], ratio[16];
        snprintf(spread, sizeof spread, "(%.1f..%.1f)", x.lo / 1e6, x.hi / 1e6);
        snprintf(ratio, sizeof ratio, "%.2fx", x.median / rows[m].naive[t - 1].median);
        printf("%-20s %-8s %7d %10.1f %15s %9.2f %9s\n", rows[m].mode, which ? "resil" : "mutex",
               t, x.median / 1e6, spread, t * 1e9 / x.median, ratio);
      }
    }
  }

  double c1 = 1e9 / rows[0].resil[0].median, w1 = 1e9 / rows[1].resil[0].median;
  double c2 = rows[0].resil[1].median / rows[0].naive[1].median;
  double w2 = rows[1].resil[1].median / rows[1].naive[1].median;
  printf("\nTargets\n");
  printf("  1 thread, consecutive   <= 15 ns/pair     %6.2f ns   %s\n", c1, c1 <= 15 ? "met" : "MISSED");
  printf("  1 thread, count window  <= 40 ns/pair     %6.2f ns   %s\n", w1, w1 <= 40 ? "met" : "MISSED");
  printf("  2 threads, consecutive  >= 2x the mutex   %6.2fx    %s\n", c2, c2 >= 2 ? "met" : "MISSED");
  printf("  2 threads, count window >= 2x the mutex   %6.2fx    %s\n", w2, w2 >= 2 ? "met" : "MISSED");
  if (ncpu < 2) printf("  (one CPU online: the 2-thread rows measure time slicing, not parallelism)\n");
  return 0;
}
