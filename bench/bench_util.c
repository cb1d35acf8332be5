#define _POSIX_C_SOURCE 200809L
#include "bench_util.h"

#include <stdlib.h>
#include <time.h>

int64_t bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double bench_median_ns(void (*fn)(void *ud, uint64_t iters), void *ud, uint64_t iters,
                       int repeats) {
  double r[32];
  if (repeats > 32) repeats = 32;
  fn(ud, iters / 10 + 1); /* warm caches and branch predictors */
  for (int i = 0; i < repeats; i++) {
    int64_t t0 = bench_now();
    fn(ud, iters);
    r[i] = (double)(bench_now() - t0) / (double)iters;
  }
  qsort(r, (size_t)repeats, sizeof r[0], cmp_double);
  return r[repeats / 2];
}

static volatile uint64_t sink;
void bench_sink(uint64_t v) { sink += v; }
