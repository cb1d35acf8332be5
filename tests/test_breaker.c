#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "resil/resil.h"
#include "test_util.h"

/* Internal (src/core/breaker.c, hidden in the shared library): the window
 * aggregates and a recount of the ring or buckets. */
void resil__breaker_window_check(resil_breaker *b, int64_t agg[3], int64_t recount[3]);

#define S RESIL_CALL_SUCCESS
#define F RESIL_CALL_FAILURE
#define I RESIL_CALL_IGNORED
#define CLOSED RESIL_BREAKER_CLOSED
#define OPEN RESIL_BREAKER_OPEN
#define HALF RESIL_BREAKER_HALF_OPEN
#define FORCED RESIL_BREAKER_FORCED_OPEN
#define DISABLED RESIL_BREAKER_DISABLED
#define METRICS RESIL_BREAKER_METRICS_ONLY

/* ---- fixture ------------------------------------------------------------ */

typedef struct {
  resil_fakeclock *fc;
  resil_breaker_config cfg;
  resil_breaker *b;
  /* state-change recording */
  int n;
  resil_breaker_state from[256], to[256];
  int depth, max_depth; /* callback nesting */
  int reenter;          /* callback behaviour for the re-entrancy tests */
} fx;

static void on_change(void *ud, const resil_breaker *b, resil_breaker_state from,
                      resil_breaker_state to) {
  fx *f = ud;
  assert_ptr_equal(b, f->b);
  if (f->n < 256) {
    f->from[f->n] = from;
    f->to[f->n] = to;
  }
  f->n++;
  f->depth++;
  if (f->depth > f->max_depth) f->max_depth = f->depth;
  resil_breaker *mb = (resil_breaker *)b;
  if (f->reenter == 1 && to == OPEN) {
    /* Change the state from inside the callback: must not deadlock, and the
     * new transition must be delivered after this one. */
    resil_breaker_snapshot sn;
    resil_breaker_snapshot_get(mb, &sn);
    assert_int_equal(resil_breaker_force(mb, FORCED), RESIL_OK);
  } else if (f->reenter == 2) {
    /* Many changes from inside one callback: more than the queue holds. */
    f->reenter = 0;
    for (int i = 0; i < 50; i++)
      assert_int_equal(resil_breaker_force(mb, (i & 1) ? CLOSED : DISABLED), RESIL_OK);
  }
  f->depth--;
}

static int setup(void **state) {
  fx *f = calloc(1, sizeof *f);
  if (f == NULL || resil_fakeclock_new(&f->fc, 1000 * RESIL_SEC, 0) != RESIL_OK) return -1;
  resil_breaker_config_init(&f->cfg);
  f->cfg.clock = resil_fakeclock_clock(f->fc);
  f->cfg.on_state_change = on_change;
  f->cfg.ud = f;
  f->cfg.use_seed = 1;
  f->cfg.seed = 7;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx *f = *state;
  resil_breaker_free(f->b);
  resil_fakeclock_free(f->fc);
  free(f);
  return 0;
}

static void make(fx *f) {
  resil_breaker_free(f->b);
  f->b = NULL;
  f->n = 0;
  assert_int_equal(resil_breaker_new(&f->b, &f->cfg), RESIL_OK);
}

static void advance(fx *f, resil_ns d) { resil_fakeclock_advance(f->fc, d); }

/* acquire, then record with the given duration (-1 = measure). */
static resil_err call_d(fx *f, resil_call_result r, resil_ns d) {
  resil_permit p;
  resil_err rc = resil_breaker_acquire(f->b, &p, NULL);
  if (rc == RESIL_OK) resil_breaker_record(f->b, &p, r, d);
  return rc;
}
static resil_err call(fx *f, resil_call_result r) { return call_d(f, r, -1); }
static void calls(fx *f, resil_call_result r, int n) {
  for (int i = 0; i < n; i++) assert_int_equal(call(f, r), RESIL_OK);
}

static resil_breaker_snapshot snap(fx *f) {
  resil_breaker_snapshot s;
  resil_breaker_snapshot_get(f->b, &s);
  return s;
}
static resil_breaker_state state_of(fx *f) { return snap(f).state; }

static void assert_change(fx *f, int i, resil_breaker_state from, resil_breaker_state to) {
  assert_true(i < f->n);
  assert_int_equal(f->from[i], from);
  assert_int_equal(f->to[i], to);
}

static void assert_window_exact(resil_breaker *b) {
  int64_t agg[3], re[3];
  resil__breaker_window_check(b, agg, re);
  for (int i = 0; i < 3; i++) assert_int_equal(agg[i], re[i]);
}

/* Trip a CONSECUTIVE breaker with threshold 1 (or whatever it takes). */
static void trip_now(fx *f) {
  while (state_of(f) == CLOSED) assert_int_equal(call(f, F), RESIL_OK);
  assert_int_equal(state_of(f), OPEN);
}

/* From OPEN: wait out the open duration and take a probe permit. */
static resil_permit probe_after_open(fx *f) {
  advance(f, snap(f).retry_in);
  resil_permit p;
  assert_int_equal(resil_breaker_acquire(f->b, &p, NULL), RESIL_OK);
  assert_int_equal(state_of(f), HALF);
  return p;
}

/* ---- config ------------------------------------------------------------- */

static void test_config_defaults(void **state) {
  (void)state;
  resil_breaker_config c;
  resil_breaker_config_init(&c);
  assert_int_equal(c.size, sizeof c);
  assert_string_equal(c.name, "default");
  assert_int_equal(c.trip, RESIL_TRIP_CONSECUTIVE);
  assert_int_equal(c.failure_threshold, 5);
  assert_int_equal(c.window_calls, 100);
  assert_true(c.window_time == 60 * RESIL_SEC);
  assert_int_equal(c.window_buckets, 60);
  assert_int_equal(c.minimum_calls, 20);
  assert_true(c.failure_rate == 0.5);
  assert_true(c.slow_call_duration == 0);
  assert_true(c.slow_call_rate == 1.0);
  assert_true(c.open_duration == 30 * RESIL_SEC);
  assert_true(c.open_multiplier == 1.0);
  assert_true(c.open_duration_max == 5 * RESIL_MIN);
  assert_true(c.open_jitter == 0.0);
  assert_int_equal(c.half_open_probes, 1);
  assert_int_equal(c.success_threshold, 1);
  assert_true(c.probe_timeout == 60 * RESIL_SEC);
  assert_null(c.on_state_change);
  assert_non_null(c.clock.now);
  assert_non_null(c.alloc.malloc);

  resil_breaker *b = NULL;
  assert_int_equal(resil_breaker_new(&b, &c), RESIL_OK);
  assert_string_equal(resil_breaker_name(b), "default");
  resil_breaker_snapshot s;
  resil_breaker_snapshot_get(b, &s);
  assert_int_equal(s.state, CLOSED);
  assert_int_equal(s.calls, 0);
  assert_true(s.retry_in == 0);
  resil_breaker_free(b);
  resil_breaker_free(NULL);

  /* The name is copied; NULL means "default". */
  char name[] = "payments";
  c.name = name;
  assert_int_equal(resil_breaker_new(&b, &c), RESIL_OK);
  name[0] = 'X';
  assert_string_equal(resil_breaker_name(b), "payments");
  resil_breaker_free(b);
  c.name = NULL;
  assert_int_equal(resil_breaker_new(&b, &c), RESIL_OK);
  assert_string_equal(resil_breaker_name(b), "default");
  resil_breaker_free(b);

  assert_string_equal(resil_breaker_state_name(CLOSED), "closed");
  assert_string_equal(resil_breaker_state_name(OPEN), "open");
  assert_string_equal(resil_breaker_state_name(HALF), "half-open");
  assert_string_equal(resil_breaker_state_name(FORCED), "forced-open");
  assert_string_equal(resil_breaker_state_name(DISABLED), "disabled");
  assert_string_equal(resil_breaker_state_name(METRICS), "metrics-only");
  assert_string_equal(resil_breaker_state_name((resil_breaker_state)42), "unknown");
}

static void *dummy_malloc(void *ud, size_t n) {
  (void)ud;
  return malloc(n);
}

static void test_config_validation(void **state) {
  (void)state;
  resil_breaker *b = (resil_breaker *)&b;
  resil_breaker_config c;
  resil_breaker_config_init(&c);
  assert_int_equal(resil_breaker_new(NULL, &c), RESIL_EINVAL);
  assert_int_equal(resil_breaker_new(&b, NULL), RESIL_EINVAL);
  assert_null(b);

  for (int i = 0;; i++) {
    resil_breaker_config_init(&c);
    switch (i) {
      case 0: c.size--; break;
      case 1: c.trip = (resil_breaker_trip)3; break;
      case 2: c.failure_threshold = 0; break;
      case 3: c.window_calls = 0; break;
      case 4: c.window_calls = 1000001; break;
      case 5: c.window_time = 0; break;
      case 6: c.window_time = -RESIL_SEC; break;
      case 7: c.window_buckets = 0; break;
      case 8: c.window_buckets = 65537; break;
      case 9: c.window_time = 10, c.window_buckets = 20; break; /* < 1 ns per bucket */
      case 10: c.minimum_calls = 0; break;
      case 11: c.failure_rate = 0.0; break;
      case 12: c.failure_rate = 1.5; break;
      case 13: c.failure_rate = NAN; break;
      case 14: c.slow_call_rate = 0.0; break;
      case 15: c.slow_call_rate = 1.01; break;
      case 16: c.slow_call_rate = NAN; break;
      case 17: c.slow_call_duration = -1; break;
      case 18: c.open_duration = 0; break;
      case 19: c.open_duration_max = c.open_duration - 1; break;
      case 20: c.open_multiplier = 0.5; break;
      case 21: c.open_multiplier = INFINITY; break;
      case 22: c.open_multiplier = NAN; break;
      case 23: c.open_jitter = -0.1; break;
      case 24: c.open_jitter = 1.0; break;
      case 25: c.open_jitter = NAN; break;
      case 26: c.half_open_probes = 0; break;
      case 27: c.half_open_probes = 65; break;
      case 28: c.success_threshold = 0; break;
      case 29: c.probe_timeout = 0; break;
      case 30: c.clock.now = NULL; break;
      case 31: c.alloc.malloc = dummy_malloc, c.alloc.free = NULL; break;
      case 32: c.alloc.malloc = dummy_malloc, c.alloc.realloc = NULL; break;
      default: goto valid;
    }
    b = (resil_breaker *)&b;
    if (resil_breaker_new(&b, &c) != RESIL_EINVAL) fail_msg("bad config case %d accepted", i);
    assert_null(b);
  }

valid:
  /* Edges that are allowed. */
  for (int i = 0; i < 7; i++) {
    resil_breaker_config_init(&c);
    switch (i) {
      case 0: c.failure_rate = 1.0, c.slow_call_rate = 1.0; break;
      case 1: c.open_jitter = 0.99; break;
      case 2: c.half_open_probes = 64; break;
      case 3: c.trip = RESIL_TRIP_COUNT_WINDOW, c.window_calls = 1000000; break;
      case 4: c.trip = RESIL_TRIP_COUNT_WINDOW, c.window_calls = 5; break; /* minimum 20 > 5 */
      case 5: c.trip = RESIL_TRIP_TIME_WINDOW, c.window_time = 20, c.window_buckets = 20; break;
      case 6: c.open_duration_max = c.open_duration, c.open_multiplier = 3.0; break;
    }
    if (resil_breaker_new(&b, &c) != RESIL_OK) fail_msg("valid config case %d rejected", i);
    resil_breaker_free(b);
  }
}

static int alloc_fail;
static long alloc_calls, free_calls;
static void *my_malloc(void *ud, size_t n) {
  (void)ud;
  if (alloc_fail) return NULL;
  alloc_calls++;
  return malloc(n);
}
static void *my_realloc(void *ud, void *p, size_t n) {
  (void)ud;
  if (alloc_fail) return NULL;
  return realloc(p, n);
}
static void my_free(void *ud, void *p) {
  (void)ud;
  free_calls++;
  free(p);
}

static void test_allocation_failure(void **state) {
  (void)state;
  for (int trip = 0; trip < 3; trip++) {
    resil_breaker_config c;
    resil_breaker_config_init(&c);
    c.trip = (resil_breaker_trip)trip;
    c.alloc.malloc = my_malloc;
    c.alloc.realloc = my_realloc;
    c.alloc.free = my_free;
    alloc_calls = free_calls = 0;
    resil_breaker *b = NULL;
    assert_int_equal(resil_breaker_new(&b, &c), RESIL_OK);
    assert_int_equal(alloc_calls, 1);
    resil_permit p;
    assert_int_equal(resil_breaker_acquire(b, &p, NULL), RESIL_OK);
    resil_breaker_record(b, &p, F, 0);
    assert_int_equal(alloc_calls, 1); /* nothing allocates after creation */
    resil_breaker_free(b);
    assert_int_equal(free_calls, 1);

    alloc_fail = 1;
    b = (resil_breaker *)&b;
    assert_int_equal(resil_breaker_new(&b, &c), RESIL_ENOMEM);
    assert_null(b);
    alloc_fail = 0;
  }
}

/* ---- trip rules --------------------------------------------------------- */

static void test_consecutive_trip_and_reset_by_success(void **state) {
  fx *f = *state;
  f->cfg.failure_threshold = 3;
  make(f);
  calls(f, F, 2);
  assert_int_equal(snap(f).consecutive_failures, 2);
  calls(f, S, 1);
  assert_int_equal(snap(f).consecutive_failures, 0);
  calls(f, F, 2);
  assert_int_equal(state_of(f), CLOSED);
  assert_int_equal(f->n, 0);
  calls(f, F, 1);
  resil_breaker_snapshot s = snap(f);
  assert_int_equal(s.state, OPEN);
  assert_int_equal(s.trips, 1);
  assert_int_equal(s.failures, 5);
  assert_int_equal(s.successes, 1);
  assert_int_equal(s.calls, 6);
  assert_int_equal(f->n, 1);
  assert_change(f, 0, CLOSED, OPEN);

  resil_permit p;
  resil_ns retry_in = -5;
  assert_int_equal(resil_breaker_acquire(f->b, &p, &retry_in), RESIL_ECIRCUIT_OPEN);
  assert_true(retry_in == 30 * RESIL_SEC);
  advance(f, 10 * RESIL_SEC);
  assert_int_equal(resil_breaker_acquire(f->b, &p, &retry_in), RESIL_ECIRCUIT_OPEN);
  assert_true(retry_in == 20 * RESIL_SEC);
  assert_int_equal(resil_breaker_acquire(f->b, &p, NULL), RESIL_ECIRCUIT_OPEN);
  assert_int_equal(snap(f).rejected, 3);
}

static void use_count_window(fx *f, uint32_t window, uint32_t min, double rate) {
  f->cfg.trip = RESIL_TRIP_COUNT_WINDOW;
  f->cfg.window_calls = window;
  f->cfg.minimum_calls = min;
  f->cfg.failure_rate = rate;
  make(f);
}

static void test_count_window_minimum_calls(void **state) {
  fx *f = *state;
  use_count_window(f, 10, 5, 0.5);
  calls(f, F, 4);
  resil_breaker_snapshot s = snap(f);
  assert_int_equal(s.state, CLOSED);
  assert_int_equal(s.window_calls, 4);
  assert_true(s.failure_rate == 1.0);
  calls(f, F, 1);
  assert_int_equal(state_of(f), OPEN);

  /* minimum_calls larger than the window: the window size is the minimum. */
  use_count_window(f, 4, 20, 0.5);
  calls(f, F, 3);
  assert_int_equal(state_of(f), CLOSED);
  calls(f, F, 1);
  assert_int_equal(state_of(f), OPEN);
}

static void test_count_window_rate_boundary(void **state) {
  fx *f = *state;
  /* 2 of 10 failed: 0.2 < 0.3. */
  use_count_window(f, 10, 10, 0.3);
  calls(f, S, 8);
  calls(f, F, 2);
  assert_int_equal(state_of(f), CLOSED);
  assert_true(snap(f).failure_rate == 0.2);
  /* 3 of 10 failed: exactly the threshold trips. */
  use_count_window(f, 10, 10, 0.3);
  calls(f, S, 7);
  calls(f, F, 2);
  assert_int_equal(state_of(f), CLOSED);
  calls(f, F, 1);
  resil_breaker_snapshot s = snap(f);
  assert_int_equal(s.state, OPEN);
  assert_true(s.failure_rate == 0.3);
  /* Reaching minimum_calls with a success trips when the rate is already
   * over the threshold. */
  use_count_window(f, 10, 10, 0.5);
  calls(f, F, 5);
  calls(f, S, 4);
  assert_int_equal(state_of(f), CLOSED);
  calls(f, S, 1);
  assert_int_equal(state_of(f), OPEN);
  assert_window_exact(f->b);
}

static void test_count_window_eviction(void **state) {
  fx *f = *state;
  use_count_window(f, 4, 4, 0.75);
  calls(f, F, 2);
  calls(f, S, 2); /* [F F S S] */
  resil_breaker_snapshot s = snap(f);
  assert_int_equal(s.window_calls, 4);
  assert_int_equal(s.window_failures, 2);
  calls(f, S, 1); /* [S F S S]: the oldest F left */
  s = snap(f);
  assert_int_equal(s.window_calls, 4);
  assert_int_equal(s.window_failures, 1);
  calls(f, S, 1); /* [S S S S] */
  assert_int_equal(snap(f).window_failures, 0);
  calls(f, F, 2); /* [F F S S] */
  assert_int_equal(snap(f).window_failures, 2);
  assert_int_equal(state_of(f), CLOSED);
  assert_window_exact(f->b);
  calls(f, F, 1); /* [F F F S]: 3/4 */
  s = snap(f);
  assert_int_equal(s.state, OPEN);
  assert_int_equal(s.window_failures, 3);
  assert_true(s.failure_rate == 0.75);
  assert_int_equal(s.calls, 9);
  assert_window_exact(f->b);
}

static void use_time_window(fx *f, resil_ns window, uint32_t buckets, uint32_t min, double rate) {
  f->cfg.trip = RESIL_TRIP_TIME_WINDOW;
  f->cfg.window_time = window;
  f->cfg.window_buckets = buckets;
  f->cfg.minimum_calls = min;
  f->cfg.failure_rate = rate;
  make(f);
}

static void test_time_window_buckets_expire(void **state) {
  fx *f = *state;
  use_time_window(f, 10 * RESIL_SEC, 10, 1000, 1.0); /* 1 s buckets, never trips */
  calls(f, F, 3);
  advance(f, 5 * RESIL_SEC);
  calls(f, S, 2);
  resil_breaker_snapshot s = snap(f);
  assert_int_equal(s.window_calls, 5);
  assert_int_equal(s.window_failures, 3);
  assert_true(s.failure_rate == 0.6);
  advance(f, 5 * RESIL_SEC); /* t = 10 s: the first second left the window */
  s = snap(f);
  assert_int_equal(s.window_calls, 2);
  assert_int_equal(s.window_failures, 0);
  advance(f, 5 * RESIL_SEC - 1); /* t = 15 s - 1 ns: the calls at 5 s remain */
  assert_int_equal(snap(f).window_calls, 2);
  advance(f, 1); /* idle: the snapshot alone empties the window */
  s = snap(f);
  assert_int_equal(s.window_calls, 0);
  assert_true(s.failure_rate == 0.0);
  assert_int_equal(s.calls, 5);
  assert_window_exact(f->b);

  /* A jump of many windows at once. */
  calls(f, F, 4);
  advance(f, 1000 * RESIL_SEC);
  assert_int_equal(snap(f).window_calls, 0);
  calls(f, S, 1);
  assert_int_equal(snap(f).window_calls, 1);
  assert_window_exact(f->b);
}

static void test_time_window_trip(void **state) {
  fx *f = *state;
  use_time_window(f, 10 * RESIL_SEC, 10, 3, 0.5);
  calls(f, F, 2);
  advance(f, 10 * RESIL_SEC); /* those two are out of the window */
  calls(f, F, 2);
  assert_int_equal(state_of(f), CLOSED);
  assert_int_equal(snap(f).window_calls, 2);
  advance(f, 3 * RESIL_SEC);
  calls(f, S, 1); /* 2 of 3 within 10 s: rate 0.67 at the minimum */
  resil_breaker_snapshot s = snap(f);
  assert_int_equal(s.state, OPEN);
  assert_int_equal(s.window_calls, 3);
  assert_int_equal(s.window_failures, 2);
}

static void test_slow_calls(void **state) {
  fx *f = *state;
  f->cfg.slow_call_duration = 100 * RESIL_MSEC;
  f->cfg.slow_call_rate = 0.5;
  use_count_window(f, 4, 4, 1.0);
  assert_int_equal(call_d(f, S, 200 * RESIL_MSEC), RESIL_OK); /* slow */
  assert_int_equal(call_d(f, S, 50 * RESIL_MSEC), RESIL_OK);
  assert_int_equal(call_d(f, I, 500 * RESIL_MSEC), RESIL_OK); /* ignored: not slow either */
  assert_int_equal(call_d(f, S, 100 * RESIL_MSEC), RESIL_OK); /* slow: >= the threshold */
  resil_breaker_snapshot s = snap(f);
  assert_int_equal(s.state, CLOSED);
  assert_int_equal(s.window_calls, 3);
  assert_int_equal(s.window_slow, 2);
  assert_int_equal(s.slow, 2);
  assert_int_equal(call_d(f, S, 0), RESIL_OK); /* 2 slow of 4: 0.5 trips */
  s = snap(f);
  assert_int_equal(s.state, OPEN);
  assert_true(s.slow_rate == 0.5);
  assert_true(s.failure_rate == 0.0);

  /* Measured durations: the permit is timed on the breaker's clock. */
  make(f);
  resil_permit p;
  assert_int_equal(resil_breaker_acquire(f->b, &p, NULL), RESIL_OK);
  advance(f, 150 * RESIL_MSEC);
  resil_breaker_record(f->b, &p, F, -1); /* slow failure: both */
  assert_int_equal(resil_breaker_acquire(f->b, &p, NULL), RESIL_OK);
  advance(f, 10 * RESIL_MSEC);
  resil_breaker_record(f->b, &p, S, -1);
  s = snap(f);
  assert_int_equal(s.slow, 1);
  assert_int_equal(s.window_slow, 1);
  assert_int_equal(s.window_failures, 1);

  /* CONSECUTIVE counts slow calls in the totals only. */
  f->cfg.trip = RESIL_TRIP_CONSECUTIVE;
  make(f);
  assert_int_equal(call_d(f, S, RESIL_SEC), RESIL_OK);
  s = snap(f);
  assert_int_equal(s.slow, 1);
  assert_int_equal(s.state, CLOSED);

  /* Without slow-call tracking a permit carries no time and nothing is slow. */
  f->cfg.slow_call_duration = 0;
  make(f);
  assert_int_equal(call_d(f, S, RESIL_HOUR), RESIL_OK);
  assert_int_equal(snap(f).slow, 0);
}

/* ---- open durations ----------------------------------------------------- */

/* From OPEN, take a probe and fail it; returns the new open duration. */
static resil_ns reopen(fx *f) {
  resil_permit p = probe_after_open(f);
  resil_breaker_record(f->b, &p, F, 0);
  resil_breaker_snapshot s = snap(f);
  assert_int_equal(s.state, OPEN);
  return s.retry_in;
}

static void test_open_duration_fixed(void **state) {
  fx *f = *state;
  f->cfg.failure_threshold = 1;
  f->cfg.open_duration = 10 * RESIL_SEC;
  make(f);
  trip_now(f);
  assert_true(snap(f).retry_in == 10 * RESIL_SEC);
  for (int i = 0; i < 5; i++) assert_true(reopen(f) == 10 * RESIL_SEC);
  assert_int_equal(snap(f).trips, 6);
}

static void test_open_duration_growth_and_cap(void **state) {
  fx *f = *state;
  f->cfg.failure_threshold = 1;
  f->cfg.open_duration = RESIL_SEC;
  f->cfg.open_multiplier = 2.0;
  f->cfg.open_duration_max = 5 * RESIL_SEC;
  make(f);
  trip_now(f);
  assert_true(snap(f).retry_in == RESIL_SEC);
  const resil_ns want[] = {2 * RESIL_SEC, 4 * RESIL_SEC, 5 * RESIL_SEC, 5 * RESIL_SEC};
  for (size_t i = 0; i < ARRAY_LEN(want); i++) assert_true(reopen(f) == want[i]);
  /* Closing resets the growth. */
  resil_permit p = probe_after_open(f);
  resil_breaker_record(f->b, &p, S, 0);
  assert_int_equal(state_of(f), CLOSED);
  trip_now(f);
  assert_true(snap(f).retry_in == RESIL_SEC);

  /* Non-integer multiplier: 1s * 1.5^(k-1). */
  f->cfg.open_multiplier = 1.5;
  f->cfg.open_duration_max = RESIL_HOUR;
  make(f);
  trip_now(f);
  assert_true(reopen(f) == 1500 * RESIL_MSEC);
  assert_true(reopen(f) == 2250 * RESIL_MSEC);

  /* Huge multipliers and trip counts saturate at the cap, never overflow. */
  f->cfg.open_multiplier = 1e300;
  make(f);
  trip_now(f);
  assert_true(reopen(f) == RESIL_HOUR);
  const resil_ns century = 100 * 365 * 24 * RESIL_HOUR;
  f->cfg.open_multiplier = 1.0000001;
  f->cfg.open_duration_max = century;
  make(f);
  resil_breaker_persisted ps;
  resil_breaker_export(f->b, &ps);
  ps.state = OPEN;
  ps.trips_in_row = UINT32_MAX - 1;
  ps.trips = UINT32_MAX;
  ps.open_until = resil_fakeclock_now(f->fc);
  assert_int_equal(resil_breaker_import(f->b, &ps), RESIL_OK);
  resil_ns d = reopen(f); /* 1.0000001^(2^32-2) s is about 10^186 s */
  assert_true(d == century);
  d = reopen(f); /* trips in a row saturates at UINT32_MAX */
  assert_true(d == century);
}

static void test_open_duration_jitter(void **state) {
  fx *f = *state;
  f->cfg.failure_threshold = 1;
  f->cfg.open_duration = 10 * RESIL_SEC;
  f->cfg.open_duration_max = 12 * RESIL_SEC;
  f->cfg.open_jitter = 0.5;
  resil_ns seq[2][100];
  for (int run = 0; run < 2; run++) {
    make(f);
    trip_now(f);
    seq[run][0] = snap(f).retry_in;
    for (int i = 1; i < 100; i++) seq[run][i] = reopen(f);
  }
  resil_ns lo = RESIL_NS_MAX, hi = 0;
  int capped = 0;
  for (int i = 0; i < 100; i++) {
    assert_true(seq[0][i] == seq[1][i]); /* same seed, same sequence */
    assert_true(seq[0][i] >= 5 * RESIL_SEC && seq[0][i] <= 12 * RESIL_SEC);
    if (seq[0][i] < lo) lo = seq[0][i];
    if (seq[0][i] > hi) hi = seq[0][i];
    capped += seq[0][i] == 12 * RESIL_SEC;
  }
  assert_true(lo < 7 * RESIL_SEC);  /* really spread out ... */
  assert_true(capped > 10);         /* ... and capped: U(5, 15) is >= 12 30% of the time */
  assert_true(hi == 12 * RESIL_SEC);

  f->cfg.seed = 8; /* another seed, another sequence */
  make(f);
  trip_now(f);
  int same = snap(f).retry_in == seq[0][0];
  for (int i = 1; i < 10; i++) same += reopen(f) == seq[0][i];
  assert_true(same < 10);
}

/* ---- half-open ---------------------------------------------------------- */

static void test_half_open_probe_limit(void **state) {
  fx *f = *state;
  f->cfg.failure_threshold = 1;
  f->cfg.open_duration = RESIL_SEC;
  f->cfg.half_open_probes = 2;
  f->cfg.probe_timeout = 5 * RESIL_SEC;
  make(f);
  trip_now(f);
  advance(f, RESIL_SEC - 1);
  resil_permit p1, p2, p3;
  resil_ns retry_in = 0;
  assert_int_equal(resil_breaker_acquire(f->b, &p1, &retry_in), RESIL_ECIRCUIT_OPEN);
  assert_true(retry_in == 1);
  advance(f, 1);
  assert_int_equal(resil_breaker_acquire(f->b, &p1, &retry_in), RESIL_OK);
  assert_true(retry_in == 0);
  advance(f, RESIL_SEC);
  assert_int_equal(resil_breaker_acquire(f->b, &p2, NULL), RESIL_OK);
  assert_int_equal(resil_breaker_acquire(f->b, &p3, &retry_in), RESIL_ECIRCUIT_OPEN);
  assert_true(retry_in == 4 * RESIL_SEC); /* until the first probe expires */
  resil_breaker_snapshot s = snap(f);
  assert_int_equal(s.state, HALF);
  assert_int_equal(s.probes_in_flight, 2);
  assert_true(s.retry_in == 0);
  /* The first success closes (success_threshold 1); the other probe is then
   * from an earlier state: it counts in the totals only. */
  resil_breaker_record(f->b, &p1, S, 0);
  assert_int_equal(state_of(f), CLOSED);
  resil_breaker_record(f->b, &p2, F, 0);
  s = snap(f);
  assert_int_equal(s.state, CLOSED);
  assert_int_equal(s.consecutive_failures, 0);
  assert_int_equal(s.failures, 2);
  assert_int_equal(s.rejected, 2);
  assert_int_equal(f->n, 3);
  assert_change(f, 0, CLOSED, OPEN);
  assert_change(f, 1, OPEN, HALF);
  assert_change(f, 2, HALF, CLOSED);
}

static void test_success_threshold(void **state) {
  fx *f = *state;
  f->cfg.failure_threshold = 1;
  f->cfg.success_threshold = 3;
  make(f);
  trip_now(f);
  resil_permit p = probe_after_open(f);
  resil_breaker_record(f->b, &p, S, 0);
  resil_breaker_snapshot s = snap(f);
  assert_int_equal(s.state, HALF);
  assert_int_equal(s.probe_successes, 1);
  assert_int_equal(s.probes_in_flight, 0);
  /* An ignored probe frees its slot and decides nothing. */
  assert_int_equal(call(f, I), RESIL_OK);
  assert_int_equal(snap(f).probe_successes, 1);
  calls(f, S, 1);
  assert_int_equal(state_of(f), HALF);
  calls(f, S, 1);
  assert_int_equal(state_of(f), CLOSED);
  assert_int_equal(snap(f).probe_successes, 0);
}

static void test_probe_failure_reopens(void **state) {
  fx *f = *state;
  f->cfg.failure_threshold = 1;
  f->cfg.half_open_probes = 2;
  f->cfg.success_threshold = 2;
  f->cfg.open_duration = RESIL_SEC;
  f->cfg.open_multiplier = 3.0;
  make(f);
  trip_now(f);
  resil_permit p1 = probe_after_open(f), p2;
  assert_int_equal(resil_breaker_acquire(f->b, &p2, NULL), RESIL_OK);
  resil_breaker_record(f->b, &p1, S, 0);
  assert_int_equal(state_of(f), HALF);
  resil_breaker_record(f->b, &p2, F, 0);
  resil_breaker_snapshot s = snap(f);
  assert_int_equal(s.state, OPEN);
  assert_true(s.retry_in == 3 * RESIL_SEC); /* grown: second trip in a row */
  assert_int_equal(s.trips, 2);
  assert_int_equal(f->n, 3);
  assert_change(f, 2, HALF, OPEN);
}

static void test_probe_expiry_unwedges(void **state) {
  fx *f = *state;
  f->cfg.failure_threshold = 1;
  f->cfg.open_duration = RESIL_SEC;
  f->cfg.probe_timeout = 5 * RESIL_SEC;
  make(f);
  trip_now(f);
  (void)probe_after_open(f); /* never recorded: the caller "crashed" */
  resil_permit p;
  resil_ns retry_in;
  assert_int_equal(resil_breaker_acquire(f->b, &p, &retry_in), RESIL_ECIRCUIT_OPEN);
  assert_true(retry_in == 5 * RESIL_SEC);
  advance(f, 5 * RESIL_SEC - 1);
  assert_int_equal(resil_breaker_acquire(f->b, &p, NULL), RESIL_ECIRCUIT_OPEN);
  assert_int_equal(state_of(f), HALF);
  advance(f, 1);
  /* Noticed by acquire: the expired probe is a probe failure. */
  assert_int_equal(resil_breaker_acquire(f->b, &p, &retry_in), RESIL_ECIRCUIT_OPEN);
  assert_true(retry_in == RESIL_SEC);
  assert_int_equal(state_of(f), OPEN);
  assert_int_equal(snap(f).trips, 2);
  /* And the breaker works again afterwards. */
  p = probe_after_open(f);
  resil_breaker_record(f->b, &p, S, 0);
  assert_int_equal(state_of(f), CLOSED);

  /* Noticed by a snapshot. */
  trip_now(f);
  (void)probe_after_open(f);
  advance(f, 5 * RESIL_SEC);
  resil_breaker_snapshot s = snap(f);
  assert_int_equal(s.state, OPEN);
  assert_true(s.retry_in == RESIL_SEC);

  /* Noticed by another probe's record: its success decides nothing. */
  f->cfg.half_open_probes = 2;
  make(f);
  trip_now(f);
  (void)probe_after_open(f);
  advance(f, RESIL_SEC);
  assert_int_equal(resil_breaker_acquire(f->b, &p, NULL), RESIL_OK);
  advance(f, 4 * RESIL_SEC); /* the first probe expires now, the second in 1 s */
  resil_breaker_record(f->b, &p, S, 0);
  assert_int_equal(state_of(f), OPEN);
  assert_int_equal(f->n, 3);
  assert_change(f, 2, HALF, OPEN);
}

static void test_late_record_of_expired_probe(void **state) {
  fx *f = *state;
  f->cfg.failure_threshold = 1;
  f->cfg.open_duration = RESIL_SEC;
  f->cfg.probe_timeout = 5 * RESIL_SEC;
  make(f);
  trip_now(f);
  resil_permit p = probe_after_open(f);
  advance(f, 5 * RESIL_SEC);
  assert_int_equal(state_of(f), OPEN); /* expiry noticed, re-opened */
  resil_breaker_record(f->b, &p, S, 0);
  resil_breaker_snapshot s = snap(f);
  assert_int_equal(s.state, OPEN); /* the late success is ignored ... */
  assert_int_equal(s.successes, 1); /* ... but counted */
  assert_int_equal(s.trips, 2);

  /* Expired but not noticed yet: the late record notices it, and its
   * success still does not close the breaker. */
  p = probe_after_open(f);
  advance(f, 6 * RESIL_SEC);
  resil_breaker_record(f->b, &p, S, 0);
  s = snap(f);
  assert_int_equal(s.state, OPEN);
  assert_int_equal(s.trips, 3);
  assert_int_equal(s.successes, 2);
}

/* ---- epochs, ignored, manual modes -------------------------------------- */

static void test_stale_permits(void **state) {
  fx *f = *state;
  f->cfg.failure_threshold = 2;
  make(f);
  resil_permit old;
  assert_int_equal(resil_breaker_acquire(f->b, &old, NULL), RESIL_OK);
  calls(f, F, 2);
  assert_int_equal(state_of(f), OPEN);
  resil_breaker_record(f->b, &old, S, 0); /* from CLOSED, recorded in OPEN */
  resil_breaker_snapshot s = snap(f);
  assert_int_equal(s.state, OPEN);
  assert_int_equal(s.successes, 1);
  assert_int_equal(s.calls, 3);

  /* A permit from before force(CLOSED) does not count toward the new
   * closed state's consecutive failures. */
  assert_int_equal(resil_breaker_force(f->b, CLOSED), RESIL_OK);
  calls(f, F, 1);
  assert_int_equal(resil_breaker_acquire(f->b, &old, NULL), RESIL_OK);
  resil_breaker_reset(f->b);
  resil_breaker_record(f->b, &old, F, 0);
  s = snap(f);
  assert_int_equal(s.state, CLOSED);
  assert_int_equal(s.consecutive_failures, 0);
  assert_int_equal(s.failures, 4);

  /* Same for a window. */
  use_count_window(f, 10, 1, 0.5);
  assert_int_equal(resil_breaker_acquire(f->b, &old, NULL), RESIL_OK);
  resil_breaker_reset(f->b);
  resil_breaker_record(f->b, &old, F, 0);
  s = snap(f);
  assert_int_equal(s.state, CLOSED);
  assert_int_equal(s.window_calls, 0);
  assert_int_equal(s.failures, 1);
  assert_window_exact(f->b);
}

static void test_ignored(void **state) {
  fx *f = *state;
  f->cfg.failure_threshold = 2;
  make(f);
  calls(f, F, 1);
  calls(f, I, 3); /* neither resets nor adds */
  assert_int_equal(snap(f).consecutive_failures, 1);
  calls(f, F, 1);
  resil_breaker_snapshot s = snap(f);
  assert_int_equal(s.state, OPEN);
  assert_int_equal(s.ignored, 3);
  assert_int_equal(s.calls, 5);

  use_count_window(f, 10, 1, 0.5);
  calls(f, I, 5);
  s = snap(f);
  assert_int_equal(s.window_calls, 0);
  assert_int_equal(s.calls, 5);
  assert_int_equal(s.ignored, 5);
  assert_int_equal(s.state, CLOSED);
}

static void test_forced_open(void **state) {
  fx *f = *state;
  make(f);
  assert_int_equal(resil_breaker_force(f->b, OPEN), RESIL_EINVAL);
  assert_int_equal(resil_breaker_force(f->b, HALF), RESIL_EINVAL);
  assert_int_equal(resil_breaker_force(f->b, (resil_breaker_state)9), RESIL_EINVAL);
  assert_int_equal(f->n, 0);
  assert_int_equal(resil_breaker_force(f->b, FORCED), RESIL_OK);
  assert_int_equal(resil_breaker_force(f->b, FORCED), RESIL_OK); /* no second callback */
  resil_permit p;
  resil_ns retry_in = 0;
  assert_int_equal(resil_breaker_acquire(f->b, &p, &retry_in), RESIL_ECIRCUIT_OPEN);
  assert_true(retry_in == RESIL_NS_MAX);
  advance(f, RESIL_HOUR); /* time does not help */
  assert_int_equal(resil_breaker_acquire(f->b, &p, &retry_in), RESIL_ECIRCUIT_OPEN);
  assert_true(retry_in == RESIL_NS_MAX);
  resil_breaker_snapshot s = snap(f);
  assert_int_equal(s.state, FORCED);
  assert_true(s.retry_in == RESIL_NS_MAX);
  assert_int_equal(s.rejected, 2);
  assert_int_equal(resil_breaker_force(f->b, CLOSED), RESIL_OK);
  assert_int_equal(call(f, S), RESIL_OK);
  assert_int_equal(f->n, 2);
  assert_change(f, 0, CLOSED, FORCED);
  assert_change(f, 1, FORCED, CLOSED);
}

static void test_disabled(void **state) {
  fx *f = *state;
  f->cfg.failure_threshold = 1;
  make(f);
  resil_permit before;
  assert_int_equal(resil_breaker_acquire(f->b, &before, NULL), RESIL_OK);
  assert_int_equal(resil_breaker_force(f->b, DISABLED), RESIL_OK);
  calls(f, F, 10);
  resil_breaker_snapshot s = snap(f);
  assert_int_equal(s.state, DISABLED);
  assert_int_equal(s.calls, 0); /* records nothing */
  assert_int_equal(s.trips, 0);
  /* A permit from before the change still counts in the totals. */
  resil_breaker_record(f->b, &before, F, 0);
  s = snap(f);
  assert_int_equal(s.failures, 1);
  assert_int_equal(s.state, DISABLED);
}

static void test_metrics_only(void **state) {
  fx *f = *state;
  use_count_window(f, 10, 5, 0.5);
  assert_int_equal(resil_breaker_force(f->b, METRICS), RESIL_OK);
  calls(f, F, 20);
  resil_breaker_snapshot s = snap(f);
  assert_int_equal(s.state, METRICS);
  assert_int_equal(s.window_calls, 10);
  assert_int_equal(s.window_failures, 10);
  assert_true(s.failure_rate == 1.0);
  assert_int_equal(s.failures, 20);
  assert_int_equal(s.trips, 0);
  assert_window_exact(f->b);
  /* Back to normal: windows start empty. */
  assert_int_equal(resil_breaker_force(f->b, CLOSED), RESIL_OK);
  s = snap(f);
  assert_int_equal(s.window_calls, 0);
  assert_int_equal(s.state, CLOSED);
  assert_window_exact(f->b);

  f->cfg.trip = RESIL_TRIP_CONSECUTIVE;
  f->cfg.failure_threshold = 2;
  make(f);
  assert_int_equal(resil_breaker_force(f->b, METRICS), RESIL_OK);
  calls(f, F, 7);
  s = snap(f);
  assert_int_equal(s.consecutive_failures, 7);
  assert_int_equal(s.state, METRICS);
}

static void test_reset(void **state) {
  fx *f = *state;
  f->cfg.failure_threshold = 1;
  f->cfg.open_duration = RESIL_SEC;
  f->cfg.open_multiplier = 2.0;
  make(f);
  trip_now(f);
  assert_true(reopen(f) == 2 * RESIL_SEC);
  resil_breaker_reset(f->b);
  resil_breaker_snapshot s = snap(f);
  assert_int_equal(s.state, CLOSED);
  assert_int_equal(s.consecutive_failures, 0);
  assert_int_equal(s.trips, 2); /* lifetime totals stay */
  assert_int_equal(s.failures, 2);
  trip_now(f);
  assert_true(snap(f).retry_in == RESIL_SEC); /* trips in a row were reset */
  assert_change(f, f->n - 2, OPEN, CLOSED);

  /* Reset empties the windows. */
  use_count_window(f, 10, 10, 0.5);
  calls(f, F, 4);
  resil_breaker_reset(f->b);
  assert_int_equal(snap(f).window_calls, 0);
  assert_int_equal(f->n, 0); /* closed -> closed is not a transition */
  assert_window_exact(f->b);
  use_time_window(f, 10 * RESIL_SEC, 10, 10, 0.5);
  calls(f, F, 4);
  resil_breaker_reset(f->b);
  assert_int_equal(snap(f).window_calls, 0);
  assert_window_exact(f->b);
}

/* ---- persistence -------------------------------------------------------- */

static void test_export_import_round_trip(void **state) {
  fx *f = *state;
  f->cfg.failure_threshold = 5;
  f->cfg.half_open_probes = 2;
  f->cfg.success_threshold = 2;
  make(f);
  resil_breaker *other = NULL;
  resil_breaker_config oc = f->cfg;
  oc.on_state_change = NULL;
  assert_int_equal(resil_breaker_new(&other, &oc), RESIL_OK);
  resil_breaker_persisted a, b;

  /* CLOSED with 3 failures in a row: the next 2 trip it over there. */
  calls(f, S, 2);
  calls(f, I, 1);
  calls(f, F, 3);
  resil_breaker_export(f->b, &a);
  assert_int_equal(a.state, CLOSED);
  assert_int_equal(a.consecutive_failures, 3);
  assert_int_equal(a.calls, 6);
  assert_int_equal(a.successes, 2);
  assert_int_equal(a.failures, 3);
  resil_permit stale;
  assert_int_equal(resil_breaker_acquire(other, &stale, NULL), RESIL_OK);
  assert_int_equal(resil_breaker_import(other, &a), RESIL_OK);
  resil_breaker_export(other, &b);
  assert_true(b.epoch > 0); /* always a new epoch ... */
  a.epoch = b.epoch;
  assert_memory_equal(&a, &b, sizeof a); /* ... and otherwise exact */
  resil_breaker_record(other, &stale, F, 0); /* from before the import */
  resil_breaker_snapshot s;
  resil_breaker_snapshot_get(other, &s);
  assert_int_equal(s.consecutive_failures, 3);
  assert_int_equal(s.ignored, 1);
  assert_int_equal(s.calls, 7);
  for (int i = 0; i < 2; i++) {
    resil_permit p;
    assert_int_equal(resil_breaker_acquire(other, &p, NULL), RESIL_OK);
    resil_breaker_record(other, &p, F, 0);
  }
  resil_breaker_snapshot_get(other, &s);
  assert_int_equal(s.state, OPEN);

  /* OPEN: same open_until, so the same wait. */
  calls(f, F, 2);
  assert_int_equal(state_of(f), OPEN);
  advance(f, 7 * RESIL_SEC);
  resil_breaker_export(f->b, &a);
  assert_int_equal(a.state, OPEN);
  assert_int_equal(a.trips_in_row, 1);
  assert_int_equal(resil_breaker_import(other, &a), RESIL_OK);
  resil_breaker_export(other, &b);
  a.epoch = b.epoch;
  assert_memory_equal(&a, &b, sizeof a);
  resil_breaker_snapshot_get(other, &s);
  assert_int_equal(s.state, OPEN);
  assert_true(s.retry_in == 23 * RESIL_SEC);

  /* HALF_OPEN with a probe in flight and one success: the imported probe can
   * never be recorded here, so it expires and re-opens (no wedge). */
  resil_permit p = probe_after_open(f);
  resil_breaker_record(f->b, &p, S, 0);
  (void)probe_after_open(f);
  resil_breaker_export(f->b, &a);
  assert_int_equal(a.state, HALF);
  assert_int_equal(a.probes, 1);
  assert_int_equal(a.probe_successes, 1);
  assert_int_equal(resil_breaker_import(other, &a), RESIL_OK);
  resil_breaker_export(other, &b);
  a.epoch = b.epoch;
  assert_memory_equal(&a, &b, sizeof a);
  resil_breaker_snapshot_get(other, &s);
  assert_int_equal(s.state, HALF);
  assert_int_equal(s.probes_in_flight, 1);
  assert_int_equal(s.probe_successes, 1);
  advance(f, f->cfg.probe_timeout);
  resil_breaker_snapshot_get(other, &s);
  assert_int_equal(s.state, OPEN);
  assert_true(s.retry_in == f->cfg.open_duration);
  resil_breaker_free(other);

  /* The epoch: at least the imported one, always more than before. */
  resil_breaker_export(f->b, &a);
  a.state = CLOSED;
  a.probes = 0;
  a.probe_successes = 0;
  memset(a.probe_expires, 0, sizeof a.probe_expires);
  a.open_until = 0;
  a.epoch = 1000;
  assert_int_equal(resil_breaker_import(f->b, &a), RESIL_OK);
  resil_breaker_export(f->b, &b);
  assert_int_equal(b.epoch, 1000);
  a.epoch = 5;
  assert_int_equal(resil_breaker_import(f->b, &a), RESIL_OK);
  resil_breaker_export(f->b, &b);
  assert_int_equal(b.epoch, 1001);
}

static void test_import_validation(void **state) {
  fx *f = *state;
  f->cfg.half_open_probes = 2;
  f->cfg.success_threshold = 2;
  make(f);
  calls(f, S, 3);
  resil_breaker_persisted good, bad;
  resil_breaker_export(f->b, &good);
  assert_int_equal(resil_breaker_import(f->b, NULL), RESIL_EINVAL);
  for (int i = 0;; i++) {
    bad = good;
    switch (i) {
      case 0: bad.state = (resil_breaker_state)6; break;
      case 1: bad.epoch = UINT64_MAX; break;
      case 2: bad.open_until = -1; break;
      case 3: bad.probes = 65; break;
      case 4: bad.state = HALF, bad.trips_in_row = bad.trips = 1, bad.probes = 1; break;
      case 5:
        bad.state = HALF, bad.trips_in_row = bad.trips = 1, bad.probes = 1;
        bad.probe_expires[3] = -5;
        break;
      case 6: bad.probes = 1, bad.probe_expires[0] = 10; break; /* probes while CLOSED */
      case 7: bad.probe_successes = 1; break;                   /* ditto */
      case 8:
        bad.state = HALF, bad.trips_in_row = bad.trips = 1, bad.probes = 3;
        bad.probe_expires[0] = bad.probe_expires[1] = bad.probe_expires[2] = 10;
        break; /* more probes than this breaker has slots */
      case 9: bad.state = HALF, bad.trips_in_row = bad.trips = 1, bad.probe_successes = 2; break;
      case 10: bad.state = OPEN, bad.trips_in_row = 0; break;
      case 11: bad.trips = 1, bad.trips_in_row = 2; break;
      case 12: bad.successes = bad.calls + 1; break;
      case 13: bad.failures = bad.calls - bad.successes + 1; break;
      case 14: /* a slot this breaker does not have (half_open_probes 2) */
        bad.state = HALF, bad.trips_in_row = bad.trips = 1, bad.probes = 1;
        bad.probe_expires[2] = 10;
        break;
      default: goto done;
    }
    if (resil_breaker_import(f->b, &bad) != RESIL_EINVAL) fail_msg("bad persisted case %d", i);
  }
done:;
  resil_breaker_persisted now;
  resil_breaker_export(f->b, &now);
  assert_memory_equal(&now, &good, sizeof now); /* untouched */
  assert_int_equal(f->n, 0);
  /* A valid HALF_OPEN value, for contrast. */
  bad = good;
  bad.state = HALF;
  bad.trips_in_row = bad.trips = 1;
  bad.probes = 1;
  bad.probe_expires[1] = resil_fakeclock_now(f->fc) + RESIL_SEC;
  bad.probe_successes = 1;
  assert_int_equal(resil_breaker_import(f->b, &bad), RESIL_OK);
  assert_int_equal(f->n, 1);
  assert_change(f, 0, CLOSED, HALF);
  resil_breaker_snapshot s = snap(f);
  assert_int_equal(s.probes_in_flight, 1);
}

/* A permit acquired before an export can be recorded after the value is
 * imported into another breaker (resil run does this across processes):
 * the epoch and the probe slots carry over. */
static void test_permit_survives_export_import(void **state) {
  fx *f = *state;
  f->cfg.failure_threshold = 2;
  f->cfg.half_open_probes = 3;
  f->cfg.success_threshold = 2;
  f->cfg.open_duration = RESIL_SEC;
  f->cfg.on_state_change = NULL;
  make(f);
  resil_breaker_persisted ps;
  resil_breaker_export(f->b, &ps);
  assert_int_equal(resil_breaker_import(f->b, &ps), RESIL_OK); /* epoch >= 1 from now on */

  /* CLOSED: a failure recorded "in the next process" counts. */
  resil_permit p;
  assert_int_equal(resil_breaker_acquire(f->b, &p, NULL), RESIL_OK);
  resil_breaker_export(f->b, &ps);
  make(f);
  assert_int_equal(resil_breaker_import(f->b, &ps), RESIL_OK);
  resil_breaker_record(f->b, &p, F, 0);
  assert_int_equal(snap(f).consecutive_failures, 1);
  calls(f, F, 1);
  assert_int_equal(state_of(f), OPEN);

  /* HALF_OPEN: probes in slots 0 and 1; slot 0 is recorded, then slot 1
   * after another hop: both count, and the second success closes. */
  resil_permit p0 = probe_after_open(f), p1;
  assert_int_equal(resil_breaker_acquire(f->b, &p1, NULL), RESIL_OK);
  resil_breaker_record(f->b, &p0, S, 0);
  resil_breaker_export(f->b, &ps);
  assert_int_equal(ps.probes, 1);
  make(f);
  assert_int_equal(resil_breaker_import(f->b, &ps), RESIL_OK);
  assert_int_equal(snap(f).probe_successes, 1);
  resil_breaker_record(f->b, &p1, S, 0);
  assert_int_equal(state_of(f), CLOSED);
}

/* ---- snapshot and callbacks --------------------------------------------- */

static void test_snapshot_fields(void **state) {
  fx *f = *state;
  f->cfg.slow_call_duration = 100 * RESIL_MSEC;
  f->cfg.slow_call_rate = 0.9;
  f->cfg.open_duration = 30 * RESIL_SEC;
  use_count_window(f, 10, 10, 0.9);
  calls(f, F, 3);
  assert_int_equal(call_d(f, S, RESIL_SEC), RESIL_OK);
  calls(f, S, 6);
  resil_breaker_snapshot s = snap(f);
  assert_int_equal(s.state, CLOSED);
  assert_int_equal(s.window_calls, 10);
  assert_int_equal(s.window_failures, 3);
  assert_int_equal(s.window_slow, 1);
  assert_true(s.failure_rate == 0.3);
  assert_true(s.slow_rate == 0.1);
  assert_true(s.retry_in == 0);
  assert_int_equal(s.consecutive_failures, 0); /* not this rule's view */
  assert_int_equal(s.probes_in_flight, 0);
  calls(f, F, 9); /* 9 of 10 failed */
  s = snap(f);
  assert_int_equal(s.state, OPEN);
  assert_true(s.retry_in == 30 * RESIL_SEC);
  advance(f, 10 * RESIL_SEC);
  assert_true(snap(f).retry_in == 20 * RESIL_SEC);
  advance(f, 25 * RESIL_SEC);
  s = snap(f);
  assert_int_equal(s.state, OPEN); /* half-open begins with the next acquire */
  assert_true(s.retry_in == 0);
}

static void test_callback_order(void **state) {
  fx *f = *state;
  f->cfg.failure_threshold = 1;
  f->cfg.open_duration = RESIL_SEC;
  make(f);
  trip_now(f);
  resil_permit p = probe_after_open(f);
  resil_breaker_record(f->b, &p, S, 0);
  assert_int_equal(resil_breaker_force(f->b, FORCED), RESIL_OK);
  assert_int_equal(resil_breaker_force(f->b, DISABLED), RESIL_OK);
  assert_int_equal(resil_breaker_force(f->b, METRICS), RESIL_OK);
  assert_int_equal(resil_breaker_force(f->b, CLOSED), RESIL_OK);
  resil_breaker_reset(f->b); /* closed -> closed: no callback */
  trip_now(f);
  resil_breaker_reset(f->b);
  const resil_breaker_state want[][2] = {
      {CLOSED, OPEN},     {OPEN, HALF},         {HALF, CLOSED},    {CLOSED, FORCED},
      {FORCED, DISABLED}, {DISABLED, METRICS}, {METRICS, CLOSED}, {CLOSED, OPEN},
      {OPEN, CLOSED},
  };
  assert_int_equal(f->n, (int)ARRAY_LEN(want));
  for (int i = 0; i < f->n; i++) assert_change(f, i, want[i][0], want[i][1]);
  assert_int_equal(f->max_depth, 1);
}

static void test_callback_reentrant(void **state) {
  fx *f = *state;
  f->cfg.failure_threshold = 1;
  make(f);
  f->reenter = 1; /* on entering OPEN, force FORCED_OPEN from the callback */
  assert_int_equal(call(f, F), RESIL_OK);
  assert_int_equal(f->n, 2);
  assert_change(f, 0, CLOSED, OPEN);
  assert_change(f, 1, OPEN, FORCED);
  assert_int_equal(f->max_depth, 1); /* delivered after the first returned */
  assert_int_equal(state_of(f), FORCED);

  /* 50 changes from inside one callback overflow the queue: delivery nests
   * then, but stays in order and complete. */
  make(f);
  f->reenter = 2;
  f->max_depth = 0;
  assert_int_equal(resil_breaker_force(f->b, METRICS), RESIL_OK);
  assert_int_equal(f->n, 51);
  assert_change(f, 0, CLOSED, METRICS);
  for (int i = 1; i < f->n; i++) assert_int_equal(f->from[i], f->to[i - 1]);
  assert_int_equal(f->to[50], CLOSED);
  assert_int_equal(state_of(f), CLOSED);
}

/* ---- stress ------------------------------------------------------------- */

#define WORKERS 8
#define PROBE_EPOCHS (1u << 16)

typedef struct stress {
  resil_breaker *b;
  resil_fakeclock *fc; /* NULL: real clock */
  uint32_t probes_max;
  _Atomic int stop;
  _Atomic int done;
  /* per-epoch concurrent probe count, indexed by epoch mod PROBE_EPOCHS */
  _Atomic int probe_conc[PROBE_EPOCHS];
  _Atomic int probe_violations;
  _Atomic long probes;
  /* callback checks: deliveries never overlap and each starts where the
   * previous one ended */
  _Atomic int cb_active;
  int cb_overlap, cb_order_bad;
  long cb_count;
  resil_breaker_state cb_last;
} stress;

#define HEALTHY_PCT 10
#define OUTAGE_PCT 80

typedef struct worker {
  stress *st;
  uint64_t rng;
  uint64_t succ, fail, ign, rej;
} worker;

static void stress_cb(void *ud, const resil_breaker *b, resil_breaker_state from,
                      resil_breaker_state to) {
  (void)b;
  stress *st = ud;
  if (atomic_fetch_add(&st->cb_active, 1) != 0) st->cb_overlap++;
  if (from != st->cb_last) st->cb_order_bad++;
  st->cb_last = to;
  st->cb_count++;
  atomic_fetch_sub(&st->cb_active, 1);
}

static uint64_t xs(uint64_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return *x;
}

static void *stress_worker(void *arg) {
  worker *w = arg;
  stress *st = w->st;
  uint64_t attempts = 0;
  for (int i = 0; i < 200000 && !atomic_load_explicit(&st->stop, memory_order_relaxed);) {
    /* Every worker cycles through healthy, outage, healthy, healthy phases
     * of 4096 attempts each, so every trip rule trips and recovers. */
    int fail_pct = ((attempts++ >> 12) & 3) == 1 ? OUTAGE_PCT : HEALTHY_PCT;
    /* Time moves with the work too (and so every worker races to move the
     * time window into new buckets). */
    if (st->fc) resil_fakeclock_advance(st->fc, RESIL_USEC);
    resil_permit p;
    if (resil_breaker_acquire(st->b, &p, NULL) != RESIL_OK) {
      w->rej++;
      sched_yield(); /* let time move */
      continue;
    }
    i++;
    /* The test peeks at the permit's private fields to track probes per
     * half-open episode (epoch). */
    _Atomic int *conc = NULL;
    if (p.probe_ != 0) {
      atomic_fetch_add(&st->probes, 1);
      conc = &st->probe_conc[p.epoch_ % PROBE_EPOCHS];
      if ((uint32_t)atomic_fetch_add(conc, 1) + 1 > st->probes_max)
        atomic_fetch_add(&st->probe_violations, 1);
    }
    uint64_t r = xs(&w->rng);
    int pick = (int)(r % 100);
    resil_call_result res = pick < fail_pct ? F : pick < fail_pct + 5 ? I : S;
    resil_ns dur = (r >> 32) % 4 == 0 ? 200 * RESIL_MSEC : 0;
    if (conc) atomic_fetch_sub(conc, 1);
    resil_breaker_record(st->b, &p, res, dur);
    if (res == S) w->succ++;
    else if (res == F) w->fail++;
    else w->ign++;
  }
  atomic_fetch_add(&st->done, 1);
  return NULL;
}

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void run_stress(resil_breaker_config *c, int fake) {
  stress *st = calloc(1, sizeof *st);
  assert_non_null(st);
  if (fake) {
    assert_int_equal(resil_fakeclock_new(&st->fc, RESIL_SEC, 0), RESIL_OK);
    c->clock = resil_fakeclock_clock(st->fc);
  }
  c->on_state_change = stress_cb;
  c->ud = st;
  st->probes_max = c->half_open_probes;
  st->cb_last = CLOSED;
  assert_int_equal(resil_breaker_new(&st->b, c), RESIL_OK);

  pthread_t t[WORKERS];
  worker w[WORKERS];
  for (int i = 0; i < WORKERS; i++) {
    memset(&w[i], 0, sizeof w[i]);
    w[i].st = st;
    w[i].rng = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1);
    assert_int_equal(pthread_create(&t[i], NULL, stress_worker, &w[i]), 0);
  }
  /* This thread moves fake time, takes snapshots and now and then resets,
   * for at most 1 s of real time. */
  int64_t until = mono_ns() + 1000 * RESIL_MSEC;
  for (long tick = 0; atomic_load(&st->done) < WORKERS; tick++) {
    if (mono_ns() > until) atomic_store(&st->stop, 1);
    if (st->fc) resil_fakeclock_advance(st->fc, 50 * RESIL_USEC);
    if (tick % 16 == 0) {
      resil_breaker_snapshot s;
      resil_breaker_snapshot_get(st->b, &s);
    }
    if (tick % 5000 == 4999) resil_breaker_reset(st->b);
    struct timespec ts = {0, 20000};
    nanosleep(&ts, NULL);
  }
  for (int i = 0; i < WORKERS; i++) pthread_join(t[i], NULL);

  uint64_t succ = 0, fail = 0, ign = 0, rej = 0;
  for (int i = 0; i < WORKERS; i++) {
    succ += w[i].succ;
    fail += w[i].fail;
    ign += w[i].ign;
    rej += w[i].rej;
  }
  resil_breaker_snapshot s;
  resil_breaker_snapshot_get(st->b, &s);
  print_message("  %s: %llu calls, %llu rejected, %llu trips, %ld probes, %ld transitions\n",
                c->trip == RESIL_TRIP_CONSECUTIVE    ? "consecutive"
                : c->trip == RESIL_TRIP_COUNT_WINDOW ? "count window"
                                                     : "time window",
                (unsigned long long)s.calls, (unsigned long long)s.rejected,
                (unsigned long long)s.trips, atomic_load(&st->probes), st->cb_count);
  /* No lost counts. */
  assert_int_equal(s.successes, succ);
  assert_int_equal(s.failures, fail);
  assert_int_equal(s.ignored, ign);
  assert_int_equal(s.calls, succ + fail + ign);
  assert_int_equal(s.rejected, rej);
  /* Probes never exceeded the limit within one half-open episode. */
  assert_int_equal(atomic_load(&st->probe_violations), 0);
  /* Callbacks: one at a time, in transition order, all delivered. */
  assert_int_equal(st->cb_overlap, 0);
  assert_int_equal(st->cb_order_bad, 0);
  assert_int_equal(st->cb_last, s.state);
  /* The run exercised the state machine. */
  assert_true(s.trips > 0);
  assert_true(atomic_load(&st->probes) > 0);
  /* Window aggregates equal a recount. */
  assert_window_exact(st->b);
  if (c->trip == RESIL_TRIP_TIME_WINDOW) {
    /* And they empty exactly once the window has passed. */
    resil_fakeclock_advance(st->fc, c->window_time);
    resil_breaker_snapshot_get(st->b, &s);
    assert_int_equal(s.window_calls, 0);
    assert_int_equal(s.window_failures, 0);
    assert_int_equal(s.window_slow, 0);
    assert_window_exact(st->b);
  }
  resil_breaker_reset(st->b);
  resil_breaker_snapshot_get(st->b, &s);
  assert_int_equal(s.window_calls, 0);
  assert_window_exact(st->b);

  resil_breaker_free(st->b);
  resil_fakeclock_free(st->fc);
  free(st);
}

static void stress_config(resil_breaker_config *c) {
  resil_breaker_config_init(c);
  c->open_duration = 1 * RESIL_MSEC;
  c->open_multiplier = 2.0;
  c->open_duration_max = 4 * RESIL_MSEC;
  c->open_jitter = 0.2;
  c->half_open_probes = 3;
  c->success_threshold = 2;
  c->probe_timeout = 20 * RESIL_MSEC;
  c->slow_call_duration = 100 * RESIL_MSEC;
  c->slow_call_rate = 0.6;
  c->use_seed = 1;
  c->seed = 99;
}

static void test_stress_consecutive(void **state) {
  (void)state;
  resil_breaker_config c;
  stress_config(&c);
  c.failure_threshold = 3;
  run_stress(&c, 1);
  /* The same on the real clock. */
  stress_config(&c);
  c.failure_threshold = 3;
  c.open_duration = 100 * RESIL_USEC;
  c.open_duration_max = 400 * RESIL_USEC;
  run_stress(&c, 0);
}

static void test_stress_count_window(void **state) {
  (void)state;
  resil_breaker_config c;
  stress_config(&c);
  c.trip = RESIL_TRIP_COUNT_WINDOW;
  c.window_calls = 50;
  c.minimum_calls = 20;
  c.failure_rate = 0.5;
  run_stress(&c, 1);
}

static void test_stress_time_window(void **state) {
  (void)state;
  resil_breaker_config c;
  stress_config(&c);
  c.trip = RESIL_TRIP_TIME_WINDOW;
  c.window_time = 10 * RESIL_MSEC;
  c.window_buckets = 10;
  c.minimum_calls = 20;
  c.failure_rate = 0.5;
  run_stress(&c, 1);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_defaults),
      cmocka_unit_test(test_config_validation),
      cmocka_unit_test(test_allocation_failure),
      T(test_consecutive_trip_and_reset_by_success),
      T(test_count_window_minimum_calls),
      T(test_count_window_rate_boundary),
      T(test_count_window_eviction),
      T(test_time_window_buckets_expire),
      T(test_time_window_trip),
      T(test_slow_calls),
      T(test_open_duration_fixed),
      T(test_open_duration_growth_and_cap),
      T(test_open_duration_jitter),
      T(test_half_open_probe_limit),
      T(test_success_threshold),
      T(test_probe_failure_reopens),
      T(test_probe_expiry_unwedges),
      T(test_late_record_of_expired_probe),
      T(test_stale_permits),
      T(test_ignored),
      T(test_forced_open),
      T(test_disabled),
      T(test_metrics_only),
      T(test_reset),
      T(test_export_import_round_trip),
      T(test_import_validation),
      T(test_permit_survives_export_import),
      T(test_snapshot_fields),
      T(test_callback_order),
      T(test_callback_reentrant),
      cmocka_unit_test(test_stress_consecutive),
      cmocka_unit_test(test_stress_count_window),
      cmocka_unit_test(test_stress_time_window),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
