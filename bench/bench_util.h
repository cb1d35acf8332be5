/* Small timing helpers shared by the benchmarks. */
#ifndef RESIL_BENCH_UTIL_H
#define RESIL_BENCH_UTIL_H

#include <stdint.h>

/* Monotonic nanoseconds. */
int64_t bench_now(void);

/* Run fn(ud, iters) `repeats` times and return the median ns per iteration. */
double bench_median_ns(void (*fn)(void *ud, uint64_t iters), void *ud, uint64_t iters,
                       int repeats);

/* Keep a value alive so the compiler cannot delete the work producing it. */
void bench_sink(uint64_t v);

#endif
