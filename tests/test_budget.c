/* Retry budgets: every algorithm driven by a fake clock, then all of them
 * hammered by threads on the real clock. */
#define _POSIX_C_SOURCE 200809L
#include <math.h> /* NAN, INFINITY, isfinite: macros, no libm needed */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "resil/resil.h"
#include "test_util.h"

/* ---- fixtures ------------------------------------------------------------ */

typedef struct {
  resil_fakeclock *fc;
  resil_budget_config cfg;
  resil_budget *b;
} fx;

static int setup(void **state) {
  fx *f = calloc(1, sizeof *f);
  if (f == NULL || resil_fakeclock_new(&f->fc, 1000 * RESIL_SEC, 0) != RESIL_OK) return -1;
  resil_budget_config_init(&f->cfg);
  f->cfg.clock = resil_fakeclock_clock(f->fc);
  f->cfg.use_seed = 1;
  f->cfg.seed = 42;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx *f = *state;
  resil_budget_free(f->b);
  resil_fakeclock_free(f->fc);
  free(f);
  return 0;
}

/* (Re)create the budget from f->cfg. */
static void make(fx *f) {
  resil_budget_free(f->b);
  f->b = NULL;
  assert_int_equal(resil_budget_new(&f->b, &f->cfg), RESIL_OK);
  assert_non_null(f->b);
}

static void adv(fx *f, resil_ns d) { resil_fakeclock_advance(f->fc, d); }

/* Retries granted in a row until the first denial (at most `limit`). */
static int drain(resil_budget *b, unsigned flags, int limit) {
  int n = 0;
  while (n < limit && resil_budget_retry(b, flags) == RESIL_OK) n++;
  return n;
}

static resil_budget_snapshot snap(resil_budget *b) {
  resil_budget_snapshot s;
  resil_budget_snapshot_get(b, &s);
  return s;
}

static double dabs(double x) { return x < 0 ? -x : x; }
#define assert_near(a, b, eps) assert_true(dabs((double)(a) - (double)(b)) <= (eps))

/* ---- config, names, lifetime --------------------------------------------- */

static void test_config_defaults(void **state) {
  (void)state;
  resil_budget_config c;
  resil_budget_config_init(&c);
  assert_int_equal(c.size, sizeof c);
  assert_int_equal(c.kind, RESIL_BUDGET_TOKEN_BUCKET);
  assert_true(c.rate == 10 && c.burst == 10);
  assert_true(c.ratio == 0.2 && c.min_per_sec == 10);
  assert_int_equal(c.window, 0);
  assert_int_equal(c.window_buckets, 10);
  assert_true(c.max_tokens == 100 && c.token_ratio == 0.1);
  assert_int_equal(c.capacity, 500);
  assert_int_equal(c.retry_cost, 5);
  assert_int_equal(c.timeout_cost, 10);
  assert_true(c.k == 2.0);
  assert_null(c.name);
  assert_non_null(c.clock.now);
  assert_int_equal(c.use_seed, 0);
  /* Defaults make a valid budget of every kind. */
  for (int k = RESIL_BUDGET_TOKEN_BUCKET; k <= RESIL_BUDGET_ADAPTIVE; k++) {
    resil_budget *b = NULL;
    c.kind = (resil_budget_kind)k;
    assert_int_equal(resil_budget_new(&b, &c), RESIL_OK);
    assert_string_equal(resil_budget_name(b), "default");
    resil_budget_snapshot s = snap(b);
    assert_int_equal(s.kind, k);
    assert_int_equal(s.requests, 0);
    resil_budget_free(b);
  }
}

static void test_config_validation(void **state) {
  (void)state;
  resil_budget *b = (resil_budget *)1;
  resil_budget_config c;
  resil_budget_config_init(&c);
  assert_int_equal(resil_budget_new(NULL, &c), RESIL_EINVAL);
  assert_int_equal(resil_budget_new(&b, NULL), RESIL_EINVAL);
  assert_null(b);
  const double nan = NAN, inf = INFINITY;
#define BAD(stmt)                                                              \
  do {                                                                         \
    resil_budget_config_init(&c);                                              \
    stmt;                                                                      \
    b = (resil_budget *)1;                                                     \
    assert_int_equal(resil_budget_new(&b, &c), RESIL_EINVAL);                  \
    assert_null(b);                                                            \
  } while (0)
#define GOOD(stmt)                                                             \
  do {                                                                         \
    resil_budget_config_init(&c);                                              \
    stmt;                                                                      \
    assert_int_equal(resil_budget_new(&b, &c), RESIL_OK);                      \
    resil_budget_free(b);                                                      \
  } while (0)
  BAD(c.size = 8);
  BAD(c.size = sizeof c + 8);
  BAD(c.kind = (resil_budget_kind)5);
  BAD(c.kind = (resil_budget_kind)-1);
  BAD(c.rate = 0);
  BAD(c.rate = -1);
  BAD(c.rate = 1e-10);
  BAD(c.rate = nan);
  BAD(c.rate = inf);
  BAD(c.burst = 0.999);
  BAD(c.burst = nan);
  BAD(c.burst = inf);
  BAD(c.ratio = 0);
  BAD(c.ratio = 1.0001);
  BAD(c.ratio = nan);
  BAD(c.min_per_sec = -0.5);
  BAD(c.min_per_sec = nan);
  BAD(c.min_per_sec = inf);
  BAD(c.window = -1);
  BAD(c.window = 9);          /* fewer ns than buckets */
  BAD(c.window_buckets = 0);
  BAD(c.window_buckets = 1025);
  BAD(c.max_tokens = 0);
  BAD(c.max_tokens = 1000.5);
  BAD(c.max_tokens = 1e-7);   /* rounds to 0 millionths */
  BAD(c.max_tokens = nan);
  BAD(c.token_ratio = 0);
  BAD(c.token_ratio = -0.1);
  BAD(c.token_ratio = 1e-7);
  BAD(c.token_ratio = nan);
  BAD(c.token_ratio = inf);
  BAD(c.capacity = 0);
  BAD(c.retry_cost = 0);
  BAD(c.retry_cost = 501);
  BAD(c.timeout_cost = 0);
  BAD(c.timeout_cost = 501);
  BAD(c.k = 0.99);
  BAD(c.k = nan);
  BAD(c.k = inf);
  BAD(c.clock.now = NULL);
  BAD(c.alloc.free = NULL);
  BAD(c.alloc.realloc = NULL);
  /* Edges that are fine. */
  GOOD(c.rate = 1e-9);
  GOOD(c.rate = 1e12);
  GOOD(c.burst = 1);
  GOOD(c.burst = 1e300);
  GOOD(c.ratio = 1);
  GOOD(c.min_per_sec = 0);
  GOOD(c.window = 10);
  GOOD(c.window = RESIL_NS_MAX; c.kind = RESIL_BUDGET_RATIO);
  GOOD(c.window_buckets = 1; c.kind = RESIL_BUDGET_ADAPTIVE);
  GOOD(c.window_buckets = 1024; c.kind = RESIL_BUDGET_RATIO);
  GOOD(c.max_tokens = 1000; c.token_ratio = 5000);
  GOOD(c.retry_cost = 500; c.timeout_cost = 500);
  GOOD(c.k = 1);
  GOOD(c.clock.sleep = NULL);
  GOOD(c.alloc.malloc = NULL; c.alloc.free = NULL);
#undef BAD
#undef GOOD
}

static void test_kind_names(void **state) {
  (void)state;
  static const char *names[] = {"token-bucket", "ratio", "grpc", "quota", "adaptive"};
  for (int k = 0; k < 5; k++) {
    assert_string_equal(resil_budget_kind_name((resil_budget_kind)k), names[k]);
    resil_budget_kind out = (resil_budget_kind)99;
    assert_int_equal(resil_budget_kind_parse(names[k], &out), RESIL_OK);
    assert_int_equal(out, k);
  }
  assert_string_equal(resil_budget_kind_name((resil_budget_kind)5), "unknown");
  assert_string_equal(resil_budget_kind_name((resil_budget_kind)-1), "unknown");
  resil_budget_kind out = RESIL_BUDGET_QUOTA;
  assert_int_equal(resil_budget_kind_parse("Token-Bucket", &out), RESIL_OK);
  assert_int_equal(out, RESIL_BUDGET_TOKEN_BUCKET);
  assert_int_equal(resil_budget_kind_parse("ADAPTIVE", &out), RESIL_OK);
  assert_int_equal(out, RESIL_BUDGET_ADAPTIVE);
  out = RESIL_BUDGET_QUOTA;
  const char *bad[] = {"", "token", "tokenbucket", "grpcx", "ratio ", " quota"};
  for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
    assert_int_equal(resil_budget_kind_parse(bad[i], &out), RESIL_EINVAL);
    assert_int_equal(out, RESIL_BUDGET_QUOTA); /* untouched */
  }
  assert_int_equal(resil_budget_kind_parse(NULL, &out), RESIL_EINVAL);
  assert_int_equal(resil_budget_kind_parse("grpc", NULL), RESIL_EINVAL);
}

static void test_name_and_null_handles(void **state) {
  fx *f = *state;
  char buf[32] = "payments-api";
  f->cfg.name = buf;
  make(f);
  strcpy(buf, "changed");
  assert_string_equal(resil_budget_name(f->b), "payments-api"); /* copied */
  assert_null(resil_budget_name(NULL));
  assert_int_equal(resil_budget_request(NULL), RESIL_EINVAL);
  assert_int_equal(resil_budget_retry(NULL, 0), RESIL_EINVAL);
  resil_budget_result(NULL, 1, 0);
  resil_budget_snapshot s;
  memset(&s, 0xff, sizeof s);
  resil_budget_snapshot_get(NULL, &s);
  assert_int_equal(s.requests, 0);
  resil_budget_snapshot_get(f->b, NULL);
  resil_budget_free(NULL);
}

static _Atomic int alloc_calls, free_calls, alloc_fail;
static void *my_malloc(void *ud, size_t n) {
  (void)ud;
  alloc_calls++;
  return alloc_fail ? NULL : malloc(n);
}
static void *my_realloc(void *ud, void *p, size_t n) {
  (void)ud;
  alloc_calls++;
  return alloc_fail ? NULL : realloc(p, n);
}
static void my_free(void *ud, void *p) {
  (void)ud;
  free_calls++;
  free(p);
}

static void test_injected_allocator_and_no_later_allocation(void **state) {
  fx *f = *state;
  f->cfg.alloc.malloc = my_malloc;
  f->cfg.alloc.realloc = my_realloc;
  f->cfg.alloc.free = my_free;
  for (int k = RESIL_BUDGET_TOKEN_BUCKET; k <= RESIL_BUDGET_ADAPTIVE; k++) {
    f->cfg.kind = (resil_budget_kind)k;
    alloc_calls = free_calls = 0;
    resil_budget *b = NULL;
    assert_int_equal(resil_budget_new(&b, &f->cfg), RESIL_OK);
    assert_int_equal(alloc_calls, 1);
    for (int i = 0; i < 200; i++) {
      (void)resil_budget_request(b);
      (void)resil_budget_retry(b, (unsigned)i & RESIL_BUDGET_TIMEOUT);
      resil_budget_result(b, i & 1, RESIL_BUDGET_RETRY);
      (void)snap(b);
      adv(f, 777 * RESIL_MSEC); /* crosses many bucket boundaries */
    }
    assert_int_equal(alloc_calls, 1); /* nothing after creation */
    resil_budget_free(b);
    assert_int_equal(free_calls, 1);
    alloc_fail = 1;
    b = (resil_budget *)1;
    assert_int_equal(resil_budget_new(&b, &f->cfg), RESIL_ENOMEM);
    assert_null(b);
    alloc_fail = 0;
  }
}

/* ---- TOKEN_BUCKET ------------------------------------------------------- */

static void test_tb_burst_then_refill_at_rate(void **state) {
  fx *f = *state;
  make(f); /* 10/s, burst 10 */
  assert_near(snap(f->b).available, 10, 1e-9);
  assert_int_equal(drain(f->b, 0, 100), 10);
  assert_near(snap(f->b).available, 0, 1e-9);
  adv(f, 100 * RESIL_MSEC - 1);
  assert_int_equal(resil_budget_retry(f->b, 0), RESIL_EBUDGET);
  adv(f, 1);
  assert_int_equal(drain(f->b, 0, 100), 1);
  adv(f, 250 * RESIL_MSEC);
  assert_int_equal(drain(f->b, 0, 100), 2); /* 2.5 tokens: 2 now ... */
  adv(f, 50 * RESIL_MSEC);
  assert_int_equal(drain(f->b, 0, 100), 1); /* ... the half completes */
  /* A long idle period refills to burst, never beyond. */
  adv(f, RESIL_HOUR);
  assert_near(snap(f->b).available, 10, 1e-9);
  assert_int_equal(drain(f->b, 0, 100), 10);
  /* Hammered every millisecond for 10 s: exactly rate * 10 s. */
  int n = 0;
  for (int i = 0; i < 10000; i++) {
    adv(f, RESIL_MSEC);
    n += drain(f->b, 0, 100);
  }
  assert_int_equal(n, 100);
  resil_budget_snapshot s = snap(f->b);
  assert_int_equal(s.retries_granted, 10 + 1 + 2 + 1 + 10 + 100);
  assert_true(s.retries_denied >= 10000 - 100);
  assert_int_equal(s.requests, 0);
  /* request() and result() do not touch the bucket. */
  for (int i = 0; i < 5; i++) {
    assert_int_equal(resil_budget_request(f->b), RESIL_OK);
    resil_budget_result(f->b, 1, RESIL_BUDGET_RETRY);
  }
  assert_int_equal(snap(f->b).requests, 5);
  assert_int_equal(resil_budget_retry(f->b, 0), RESIL_EBUDGET);
}

static void test_tb_fractional_rate_and_burst(void **state) {
  fx *f = *state;
  f->cfg.rate = 0.5;
  f->cfg.burst = 1;
  make(f);
  assert_int_equal(drain(f->b, 0, 10), 1);
  adv(f, 2 * RESIL_SEC - 1);
  assert_int_equal(drain(f->b, 0, 10), 0);
  assert_near(snap(f->b).available, 1 - 1e-9 / 2, 1e-12);
  adv(f, 1);
  assert_int_equal(drain(f->b, 0, 10), 1);
  int n = 0;
  for (int i = 0; i < 600; i++) { /* one minute in 100 ms steps */
    adv(f, 100 * RESIL_MSEC);
    n += drain(f->b, 0, 10);
  }
  assert_int_equal(n, 30);

  /* burst 2.5: two at once, the third half an interval later. */
  f->cfg.rate = 1;
  f->cfg.burst = 2.5;
  make(f);
  assert_near(snap(f->b).available, 2.5, 1e-9);
  assert_int_equal(drain(f->b, 0, 10), 2);
  adv(f, 500 * RESIL_MSEC - 1);
  assert_int_equal(drain(f->b, 0, 10), 0);
  adv(f, 1);
  assert_int_equal(drain(f->b, 0, 10), 1);

  /* 2.5/s: an exact 400 ms interval. */
  f->cfg.rate = 2.5;
  f->cfg.burst = 3;
  make(f);
  assert_int_equal(drain(f->b, 0, 10), 3);
  n = 0;
  for (int i = 0; i < 1000; i++) { /* 10 s */
    adv(f, 10 * RESIL_MSEC);
    n += drain(f->b, 0, 10);
  }
  assert_int_equal(n, 25);
}

/* Never more than burst + rate * t over any interval; and a caller that keeps
 * asking gets (almost) all of it. Random rates, bursts and clock steps. */
static void test_tb_bound_property(void **state) {
  fx *f = *state;
  resil_rng rng;
  resil_rng_seed(&rng, 20240601);
  static const double rates[] = {0.5, 1, 3, 7.3, 10, 33.3, 1000, 123456.7};
  enum { MAXG = 2500 };
  static resil_ns times[MAXG];
  for (int round = 0; round < 40; round++) {
    double rate = rates[resil_rng_below(&rng, ARRAY_LEN(rates))];
    double burst = 1 + (double)resil_rng_below(&rng, 20) + (resil_rng_below(&rng, 2) ? 0.5 : 0);
    f->cfg.rate = rate;
    f->cfg.burst = burst;
    adv(f, (resil_ns)resil_rng_below(&rng, 1000) * RESIL_SEC);
    make(f);
    resil_ns interval = (resil_ns)(1e9 / rate);
    resil_ns start = resil_fakeclock_now(f->fc);
    int n = 0;
    while (n < MAXG - 64) {
      /* Steps from 0 to ~3 intervals; bursts of asking from 0 to 40. */
      adv(f, (resil_ns)resil_rng_below(&rng, (uint64_t)(3 * interval) + 1));
      int asks = (int)resil_rng_below(&rng, 41);
      for (int a = 0; a < asks && n < MAXG; a++)
        if (resil_budget_retry(f->b, 0) == RESIL_OK) times[n++] = resil_fakeclock_now(f->fc);
      if (resil_fakeclock_now(f->fc) - start > 4000 * interval) break;
    }
    /* Every pair (i, j): j - i + 1 grants inside [times[i], times[j]]. */
    for (int i = 0; i < n; i++)
      for (int j = i; j < n; j++) {
        double t = (double)(times[j] - times[i]) / 1e9;
        if ((double)(j - i + 1) > burst + rate * t + 1e-9)
          fail_msg("rate %g burst %g: %d grants in %.9f s", rate, burst, j - i + 1, t);
      }
    resil_budget_snapshot s = snap(f->b);
    assert_int_equal(s.retries_granted, (uint64_t)n);
  }
}

static _Atomic resil_ns manual_ns;
static resil_ns manual_now(void *ud) {
  (void)ud;
  return manual_ns;
}

static void test_tb_extreme_clocks_and_sizes(void **state) {
  fx *f = *state;
  /* A clock that starts near INT64_MAX and then saturates there. */
  resil_fakeclock *hi;
  assert_int_equal(resil_fakeclock_new(&hi, RESIL_NS_MAX - 10 * RESIL_SEC, 0), RESIL_OK);
  f->cfg.clock = resil_fakeclock_clock(hi);
  make(f);
  assert_int_equal(drain(f->b, 0, 100), 10);
  resil_fakeclock_advance(hi, 100 * RESIL_MSEC);
  assert_int_equal(drain(f->b, 0, 100), 1);
  resil_fakeclock_advance(hi, RESIL_NS_MAX); /* saturates at INT64_MAX */
  int n = drain(f->b, 0, 1000);
  assert_true(n == 10); /* full again, and no more */
  for (int i = 0; i < 10; i++) {
    resil_fakeclock_advance(hi, RESIL_SEC);
    assert_int_equal(drain(f->b, 0, 1000), 0); /* clock stuck: no refill */
  }
  /* Negative readings (the origin is arbitrary), and one at INT64_MIN. */
  resil_clock neg = {manual_now, NULL, NULL};
  f->cfg.clock = neg;
  manual_ns = -5 * RESIL_SEC;
  make(f);
  assert_int_equal(drain(f->b, 0, 100), 10);
  manual_ns += 500 * RESIL_MSEC; /* still negative */
  assert_int_equal(drain(f->b, 0, 100), 5);
  manual_ns = INT64_MIN;
  make(f);
  assert_int_equal(drain(f->b, 0, 100), 10);
  manual_ns = RESIL_NS_MAX; /* 2^64 - 1 ns later: clamped, no wrap */
  assert_int_equal(drain(f->b, 0, 100), 10);
  assert_int_equal(drain(f->b, 0, 100), 0);
  manual_ns = INT64_MIN + RESIL_SEC; /* backwards: no refill, no crash */
  assert_int_equal(drain(f->b, 0, 100), 0);
  /* A clock at 0. */
  resil_fakeclock *lo;
  assert_int_equal(resil_fakeclock_new(&lo, 0, 0), RESIL_OK);
  f->cfg.clock = resil_fakeclock_clock(lo);
  make(f);
  assert_int_equal(drain(f->b, 0, 100), 10);
  resil_fakeclock_advance(lo, 300 * RESIL_MSEC);
  assert_int_equal(drain(f->b, 0, 100), 3);

  /* A huge burst: effectively unlimited now, still finite and sane. */
  f->cfg.burst = 1e300;
  make(f);
  assert_int_equal(drain(f->b, 0, 100000), 100000);
  double avail = snap(f->b).available;
  assert_true(avail > 1e9 && isfinite(avail));
  /* The slowest rate: one retry per ~31.7 years. */
  f->cfg.burst = 1;
  f->cfg.rate = 1e-9;
  make(f);
  assert_int_equal(drain(f->b, 0, 10), 1);
  resil_fakeclock_advance(lo, 30 * 365 * 24 * RESIL_HOUR);
  assert_int_equal(drain(f->b, 0, 10), 0);
  resil_fakeclock_advance(lo, 2 * 365 * 24 * RESIL_HOUR);
  assert_int_equal(drain(f->b, 0, 10), 1);
  /* Above 1e9/s the bucket works at one per nanosecond. */
  f->cfg.rate = 1e12;
  make(f);
  assert_int_equal(drain(f->b, 0, 10), 1);
  resil_fakeclock_advance(lo, 5);
  assert_int_equal(drain(f->b, 0, 10), 1); /* capped at burst 1 */
  resil_budget_free(f->b);
  f->b = NULL;
  resil_fakeclock_free(lo);
  resil_fakeclock_free(hi);
}

/* ---- RATIO -------------------------------------------------------------- */

static void test_ratio_follows_percentage(void **state) {
  fx *f = *state;
  f->cfg.kind = RESIL_BUDGET_RATIO;
  f->cfg.min_per_sec = 0;
  make(f); /* 20 % over 10 s */
  assert_int_equal(drain(f->b, 0, 1000), 0); /* no requests, no floor */
  for (int i = 0; i < 100; i++) assert_int_equal(resil_budget_request(f->b), RESIL_OK);
  assert_near(snap(f->b).available, 20, 1e-9);
  assert_int_equal(drain(f->b, 0, 1000), 20);
  assert_near(snap(f->b).available, 0, 1e-9);
  for (int i = 0; i < 4; i++) (void)resil_budget_request(f->b);
  assert_near(snap(f->b).available, 0.8, 1e-9);
  assert_int_equal(drain(f->b, 0, 1000), 0); /* a 21st would exceed 20.8 */
  (void)resil_budget_request(f->b);
  assert_int_equal(drain(f->b, 0, 1000), 1); /* 105 * 0.2 = 21 */
  /* 0.2 of one request is not a whole retry. */
  make(f);
  for (int i = 0; i < 4; i++) {
    (void)resil_budget_request(f->b);
    assert_int_equal(drain(f->b, 0, 1000), 0);
  }
  (void)resil_budget_request(f->b);
  assert_int_equal(drain(f->b, 0, 1000), 1);
  /* ratio 1: one retry per request. */
  f->cfg.ratio = 1;
  make(f);
  for (int i = 0; i < 7; i++) (void)resil_budget_request(f->b);
  assert_int_equal(drain(f->b, 0, 1000), 7);
  resil_budget_snapshot s = snap(f->b);
  assert_int_equal(s.requests, 7);
  assert_int_equal(s.retries_granted, 7);
  assert_int_equal(s.retries_denied, 1);
}

static void test_ratio_per_second_floor(void **state) {
  fx *f = *state;
  f->cfg.kind = RESIL_BUDGET_RATIO;
  make(f); /* floor: 10/s * 10 s = 100 per window */
  assert_near(snap(f->b).available, 100, 1e-9);
  assert_int_equal(drain(f->b, 0, 1000), 100);
  for (int i = 0; i < 600; i++) (void)resil_budget_request(f->b);
  assert_int_equal(drain(f->b, 0, 1000), 20); /* 0.2 * 600 = 120 > floor */
  /* Short window: 2 s at 10/s gives 20. */
  f->cfg.window = 2 * RESIL_SEC;
  f->cfg.window_buckets = 4;
  make(f);
  assert_int_equal(drain(f->b, 0, 1000), 20);
  f->cfg.min_per_sec = 2.5; /* 5 per window */
  make(f);
  assert_int_equal(drain(f->b, 0, 1000), 5);
}

static void test_ratio_old_buckets_expire(void **state) {
  fx *f = *state;
  f->cfg.kind = RESIL_BUDGET_RATIO;
  f->cfg.min_per_sec = 0;
  make(f); /* 10 buckets of 1 s */
  for (int i = 0; i < 100; i++) (void)resil_budget_request(f->b);
  assert_int_equal(drain(f->b, 0, 1000), 20);
  adv(f, 5 * RESIL_SEC);
  for (int i = 0; i < 50; i++) (void)resil_budget_request(f->b);
  assert_int_equal(drain(f->b, 0, 1000), 10); /* 150 * 0.2 = 30 */
  adv(f, 5 * RESIL_SEC - 1);
  assert_int_equal(drain(f->b, 0, 1000), 0); /* t = 10 s - 1 ns: all in window */
  adv(f, 1);
  /* t = 10 s: the first second's 100 requests and 20 retries are gone. */
  assert_near(snap(f->b).available, 0, 1e-9); /* 50 * 0.2 = 10, 10 used */
  for (int i = 0; i < 50; i++) (void)resil_budget_request(f->b);
  assert_int_equal(drain(f->b, 0, 1000), 10);
  adv(f, 5 * RESIL_SEC);
  /* t = 15 s: only the last 50 requests / 10 retries remain. */
  assert_near(snap(f->b).available, 0, 1e-9);
  adv(f, RESIL_HOUR); /* a jump past the whole window clears it */
  assert_near(snap(f->b).available, 0, 1e-9);
  for (int i = 0; i < 10; i++) (void)resil_budget_request(f->b);
  assert_int_equal(drain(f->b, 0, 1000), 2);
  resil_budget_snapshot s = snap(f->b);
  assert_int_equal(s.requests, 210);
  assert_int_equal(s.retries_granted, 42);
}

/* ---- GRPC --------------------------------------------------------------- */

static void test_grpc_throttling(void **state) {
  fx *f = *state;
  f->cfg.kind = RESIL_BUDGET_GRPC;
  make(f); /* max 100, ratio 0.1 */
  assert_near(snap(f->b).available, 100, 1e-9);
  assert_int_equal(resil_budget_retry(f->b, 0), RESIL_OK);
  assert_near(snap(f->b).available, 100, 1e-9); /* a retry itself is free */
  for (int i = 0; i < 49; i++) resil_budget_result(f->b, 0, 0);
  assert_near(snap(f->b).available, 51, 1e-9);
  assert_int_equal(resil_budget_retry(f->b, 0), RESIL_OK); /* 51 > 50 */
  resil_budget_result(f->b, 0, RESIL_BUDGET_RETRY);
  assert_near(snap(f->b).available, 50, 1e-9);
  assert_int_equal(resil_budget_retry(f->b, 0), RESIL_EBUDGET); /* 50 is not > 50 */
  resil_budget_result(f->b, 1, 0);
  assert_near(snap(f->b).available, 50.1, 1e-9);
  assert_int_equal(resil_budget_retry(f->b, 0), RESIL_OK);
  /* Drain to the floor of 0, never below. */
  for (int i = 0; i < 500; i++) resil_budget_result(f->b, 0, 0);
  assert_near(snap(f->b).available, 0, 1e-9);
  assert_int_equal(resil_budget_retry(f->b, 0), RESIL_EBUDGET);
  /* 501 successes make 50.1 tokens: retries resume exactly there. */
  for (int i = 0; i < 500; i++) resil_budget_result(f->b, 1, 0);
  assert_near(snap(f->b).available, 50, 1e-9);
  assert_int_equal(resil_budget_retry(f->b, 0), RESIL_EBUDGET);
  resil_budget_result(f->b, 1, 0);
  assert_int_equal(resil_budget_retry(f->b, 0), RESIL_OK);
  /* Successes stop at max_tokens. */
  for (int i = 0; i < 5000; i++) resil_budget_result(f->b, 1, 0);
  assert_near(snap(f->b).available, 100, 1e-9);
  resil_budget_snapshot s = snap(f->b);
  assert_int_equal(s.retries_granted, 4);
  assert_int_equal(s.retries_denied, 3);

  /* Fractional settings, as gRPC allows: max 3, ratio 0.25. */
  f->cfg.max_tokens = 3;
  f->cfg.token_ratio = 0.25;
  make(f);
  resil_budget_result(f->b, 0, 0);
  resil_budget_result(f->b, 0, 0);
  assert_int_equal(resil_budget_retry(f->b, 0), RESIL_EBUDGET); /* 1 <= 1.5 */
  resil_budget_result(f->b, 1, 0);
  resil_budget_result(f->b, 1, 0);
  assert_int_equal(resil_budget_retry(f->b, 0), RESIL_EBUDGET); /* 1.5 <= 1.5 */
  resil_budget_result(f->b, 1, 0);
  assert_int_equal(resil_budget_retry(f->b, 0), RESIL_OK); /* 1.75 */
}

/* ---- QUOTA -------------------------------------------------------------- */

static void test_quota_costs_and_refunds(void **state) {
  fx *f = *state;
  f->cfg.kind = RESIL_BUDGET_QUOTA;
  make(f); /* 500, cost 5, timeout 10 */
  assert_near(snap(f->b).available, 500, 0);
  assert_int_equal(drain(f->b, 0, 1000), 100);
  assert_near(snap(f->b).available, 0, 0);
  resil_budget_result(f->b, 0, RESIL_BUDGET_RETRY); /* failures refund nothing */
  assert_near(snap(f->b).available, 0, 0);
  resil_budget_result(f->b, 1, RESIL_BUDGET_RETRY); /* a successful retry: +5 */
  assert_near(snap(f->b).available, 5, 0);
  assert_int_equal(resil_budget_retry(f->b, RESIL_BUDGET_TIMEOUT), RESIL_EBUDGET); /* 5 < 10 */
  assert_int_equal(resil_budget_retry(f->b, 0), RESIL_OK);
  resil_budget_result(f->b, 1, RESIL_BUDGET_RETRY | RESIL_BUDGET_TIMEOUT); /* +10 */
  assert_near(snap(f->b).available, 10, 0);
  assert_int_equal(resil_budget_retry(f->b, RESIL_BUDGET_TIMEOUT), RESIL_OK);
  assert_near(snap(f->b).available, 0, 0);
  for (int i = 0; i < 4; i++) resil_budget_result(f->b, 1, 0); /* +1 each */
  assert_int_equal(resil_budget_retry(f->b, 0), RESIL_EBUDGET); /* 4 < 5 */
  resil_budget_result(f->b, 1, RESIL_BUDGET_TIMEOUT); /* not a retry: +1 */
  assert_int_equal(resil_budget_retry(f->b, 0), RESIL_OK);
  /* Refunds stop at capacity. */
  for (int i = 0; i < 200; i++) resil_budget_result(f->b, 1, RESIL_BUDGET_RETRY | RESIL_BUDGET_TIMEOUT);
  assert_near(snap(f->b).available, 500, 0);
  resil_budget_snapshot s = snap(f->b);
  assert_int_equal(s.retries_granted, 103);
  assert_int_equal(s.retries_denied, 3);

  /* Small capacity, odd costs. */
  f->cfg.capacity = 12;
  f->cfg.retry_cost = 5;
  f->cfg.timeout_cost = 12;
  make(f);
  assert_int_equal(resil_budget_retry(f->b, 0), RESIL_OK); /* 7 left */
  assert_int_equal(resil_budget_retry(f->b, RESIL_BUDGET_TIMEOUT), RESIL_EBUDGET);
  assert_int_equal(resil_budget_retry(f->b, 0), RESIL_OK); /* 2 left */
  assert_int_equal(resil_budget_retry(f->b, 0), RESIL_EBUDGET);
  resil_budget_result(f->b, 1, RESIL_BUDGET_RETRY | RESIL_BUDGET_TIMEOUT);
  assert_near(snap(f->b).available, 12, 0); /* 2 + 12, capped */
  assert_int_equal(resil_budget_retry(f->b, RESIL_BUDGET_TIMEOUT), RESIL_OK);
  assert_near(snap(f->b).available, 0, 0);
}

/* ---- ADAPTIVE ----------------------------------------------------------- */

static void test_adaptive_no_rejection_while_accepting(void **state) {
  fx *f = *state;
  f->cfg.kind = RESIL_BUDGET_ADAPTIVE;
  make(f);
  assert_near(snap(f->b).available, 1, 0);
  /* A third of the attempts fail (one request in two fails, its retry
   * succeeds): at every check requests <= 2 * accepts, so p stays 0. */
  for (int i = 0; i < 5000; i++) {
    assert_int_equal(resil_budget_request(f->b), RESIL_OK);
    resil_budget_result(f->b, 1, 0);
    assert_int_equal(resil_budget_request(f->b), RESIL_OK);
    resil_budget_result(f->b, 0, 0);
    assert_int_equal(resil_budget_retry(f->b, 0), RESIL_OK);
    resil_budget_result(f->b, 1, RESIL_BUDGET_RETRY);
    if (i % 100 == 0) adv(f, RESIL_SEC);
  }
  resil_budget_snapshot s = snap(f->b);
  assert_near(s.available, 1, 0);
  assert_int_equal(s.requests, 10000);
  assert_int_equal(s.requests_rejected, 0);
  assert_int_equal(s.retries_granted, 5000);
  assert_int_equal(s.retries_denied, 0);
}

/* Expected rejections follow the formula: each attempt i sees requests R_i
 * (every earlier attempt, admitted or not) and accepts A, and is rejected
 * with p_i = max(0, (R_i - k A) / (R_i + 1)). Their sum is the mean and
 * sum p_i (1 - p_i) the variance; the seeded run must land within 5 sigma. */
static void check_adaptive_formula(fx *f, double k, uint64_t seed, int accepted, int attempts) {
  f->cfg.kind = RESIL_BUDGET_ADAPTIVE;
  f->cfg.k = k;
  f->cfg.seed = seed;
  make(f);
  for (int i = 0; i < accepted; i++) {
    assert_int_equal(resil_budget_request(f->b), RESIL_OK);
    resil_budget_result(f->b, 1, 0);
  }
  double mean = 0, var = 0;
  int rejected = 0;
  for (int i = 0; i < attempts; i++) {
    double r = (double)(accepted + i);
    double p = (r - k * accepted) / (r + 1);
    if (p < 0) p = 0;
    mean += p;
    var += p * (1 - p);
    resil_err e = (i & 1) ? resil_budget_retry(f->b, 0) : resil_budget_request(f->b);
    if (e == RESIL_EBUDGET) rejected++;
    else assert_int_equal(e, RESIL_OK);
    resil_budget_result(f->b, 0, 0); /* failures change nothing */
  }
  double dev = dabs(rejected - mean);
  if (dev > 1 && dev * dev > 25 * var) /* more than 5 sigma off */
    fail_msg("k=%g: %d rejected, expected %.1f (variance %.1f)", k, rejected, mean, var);
  double r = (double)(accepted + attempts);
  double p_end = (r - k * accepted) / (r + 1);
  assert_near(snap(f->b).available, 1 - (p_end > 0 ? p_end : 0), 1e-12);
  resil_budget_snapshot s = snap(f->b);
  assert_int_equal(s.requests_rejected + s.retries_denied, (uint64_t)rejected);
}

static void test_adaptive_rejection_matches_formula(void **state) {
  fx *f = *state;
  check_adaptive_formula(f, 2.0, 1, 1000, 20000);
  check_adaptive_formula(f, 2.0, 99, 50, 2000);
  check_adaptive_formula(f, 1.0, 7, 400, 8000);
  check_adaptive_formula(f, 3.5, 12345, 100, 30000);
}

static void test_adaptive_seeded_reproducible(void **state) {
  fx *f = *state;
  f->cfg.kind = RESIL_BUDGET_ADAPTIVE;
  unsigned char run[3][2000];
  uint64_t seeds[3] = {5, 5, 6};
  for (int r = 0; r < 3; r++) {
    f->cfg.seed = seeds[r];
    make(f);
    for (int i = 0; i < 2000; i++) run[r][i] = resil_budget_request(f->b) == RESIL_OK;
  }
  assert_memory_equal(run[0], run[1], sizeof run[0]);
  assert_memory_not_equal(run[0], run[2], sizeof run[0]);
}

static void test_adaptive_window_expiry(void **state) {
  fx *f = *state;
  f->cfg.kind = RESIL_BUDGET_ADAPTIVE;
  make(f); /* 120 s in 10 buckets of 12 s */
  for (int i = 0; i < 1000; i++) (void)resil_budget_request(f->b); /* all fail */
  double p = snap(f->b).available;
  assert_true(p < 0.01);
  int admitted = 0;
  for (int i = 0; i < 100; i++) admitted += resil_budget_request(f->b) == RESIL_OK;
  assert_true(admitted < 10);
  assert_true(drain(f->b, 0, 100) < 10);
  adv(f, 119 * RESIL_SEC);
  assert_true(snap(f->b).available < 0.01); /* still inside the window */
  adv(f, RESIL_SEC);
  assert_near(snap(f->b).available, 1, 0); /* t = 120 s: all gone */
  for (int i = 0; i < 100; i++) {
    assert_int_equal(resil_budget_request(f->b), RESIL_OK);
    resil_budget_result(f->b, 1, 0);
  }
  /* Partial expiry: failures at t = 120 s, successes at t = 180 s. */
  f->cfg.window = 10 * RESIL_SEC;
  f->cfg.window_buckets = 5;
  make(f);
  for (int i = 0; i < 300; i++) (void)resil_budget_request(f->b);
  adv(f, 6 * RESIL_SEC);
  for (int i = 0; i < 100; i++) resil_budget_result(f->b, 1, 0);
  /* requests 300, accepts 100: p = 100 / 301 */
  assert_near(snap(f->b).available, 1 - 100.0 / 301, 1e-12);
  adv(f, 4 * RESIL_SEC);
  /* the failures left the window, the accepts did not */
  assert_near(snap(f->b).available, 1, 0);
}

/* ---- threads, real clock ------------------------------------------------ */

#define THREADS 8

typedef struct {
  resil_budget *b;
  _Atomic int *go, *stop;
  int kind_case;
  uint64_t seed;
  /* what this thread did */
  uint64_t requests, rejected, retries, granted, denied, charged;
  int out_of_bounds;
  double max_tokens;
} worker;

static void *hammer(void *arg) {
  worker *w = arg;
  resil_rng rng;
  resil_rng_seed(&rng, w->seed);
  while (!atomic_load(w->go)) sched_yield(); /* let the others be created */
  for (uint64_t it = 0; !atomic_load_explicit(w->stop, memory_order_relaxed); it++) {
    w->requests++;
    if (resil_budget_request(w->b) != RESIL_OK) {
      w->rejected++;
      continue;
    }
    int ok = resil_rng_below(&rng, 4) == 0;
    unsigned tflag = resil_rng_below(&rng, 3) == 0 ? RESIL_BUDGET_TIMEOUT : 0;
    resil_budget_result(w->b, ok && w->kind_case != 3, 0);
    for (int a = 0; a < 3 && !ok; a++) {
      w->retries++;
      if (resil_budget_retry(w->b, tflag) != RESIL_OK) {
        w->denied++;
        break;
      }
      w->granted++;
      w->charged += tflag ? 10 : 5;
      ok = resil_rng_below(&rng, 3) == 0;
      /* case 3 (QUOTA conservation) never reports a success */
      resil_budget_result(w->b, ok && w->kind_case != 3, RESIL_BUDGET_RETRY | tflag);
    }
    if (w->max_tokens > 0 && (it & 63) == 0) {
      resil_budget_snapshot s;
      resil_budget_snapshot_get(w->b, &s);
      if (!(s.available >= 0 && s.available <= w->max_tokens + 1e-9)) w->out_of_bounds++;
    }
  }
  return NULL;
}

typedef struct {
  resil_budget_snapshot s;
  uint64_t requests, rejected, retries, granted, denied, charged;
  int out_of_bounds;
  resil_ns elapsed;
} run_result;

/* Run THREADS workers for `ms` on budget `b`; elapsed is measured with the
 * budget's clock from before its creation (the caller passes t0) to after the
 * last join. */
static run_result run_threads(resil_budget *b, resil_ns t0, int kind_case, double max_tokens,
                              int ms) {
  _Atomic int go = 0, stop = 0;
  worker w[THREADS];
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++) {
    memset(&w[i], 0, sizeof w[i]);
    w[i].b = b;
    w[i].go = &go;
    w[i].stop = &stop;
    w[i].kind_case = kind_case;
    w[i].seed = (uint64_t)i * 7919 + (uint64_t)kind_case;
    w[i].max_tokens = max_tokens;
    assert_int_equal(pthread_create(&t[i], NULL, hammer, &w[i]), 0);
  }
  atomic_store(&go, 1);
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
  atomic_store(&stop, 1);
  run_result r;
  memset(&r, 0, sizeof r);
  for (int i = 0; i < THREADS; i++) {
    pthread_join(t[i], NULL);
    r.requests += w[i].requests;
    r.rejected += w[i].rejected;
    r.retries += w[i].retries;
    r.granted += w[i].granted;
    r.denied += w[i].denied;
    r.charged += w[i].charged;
    r.out_of_bounds += w[i].out_of_bounds;
  }
  resil_clock clk = resil_clock_system();
  r.elapsed = clk.now(clk.ud) - t0;
  resil_budget_snapshot_get(b, &r.s);
  /* Totals add up. */
  assert_int_equal(r.s.requests, r.requests);
  assert_int_equal(r.s.requests_rejected, r.rejected);
  assert_int_equal(r.s.retries_granted, r.granted);
  assert_int_equal(r.s.retries_denied, r.denied);
  assert_int_equal(r.granted + r.denied, r.retries);
  assert_int_equal(r.out_of_bounds, 0);
  assert_true(r.requests > 0);
  return r;
}

static resil_budget *real_budget(resil_budget_config *c, resil_ns *t0) {
  resil_clock clk = resil_clock_system();
  c->clock = clk;
  *t0 = clk.now(clk.ud);
  resil_budget *b = NULL;
  assert_int_equal(resil_budget_new(&b, c), RESIL_OK);
  return b;
}

static void test_threads_token_bucket(void **state) {
  (void)state;
  resil_budget_config c;
  resil_budget_config_init(&c);
  c.rate = 2000;
  c.burst = 50;
  resil_ns t0;
  resil_budget *b = real_budget(&c, &t0);
  run_result r = run_threads(b, t0, 0, 0, 200);
  double allowed = c.burst + c.rate * (double)r.elapsed / 1e9;
  if ((double)r.granted > allowed)
    fail_msg("token bucket granted %llu > %.1f", (unsigned long long)r.granted, allowed);
  /* Eight threads asking millions of times a second take (nearly) all of it;
   * a quarter leaves room for a heavily loaded machine. */
  if ((double)r.granted < allowed / 4)
    fail_msg("token bucket granted only %llu of %.1f", (unsigned long long)r.granted, allowed);
  assert_true(r.s.available >= 0 && r.s.available <= c.burst);
  resil_budget_free(b);
}

static void test_threads_ratio(void **state) {
  (void)state;
  resil_budget_config c;
  resil_budget_config_init(&c);
  c.kind = RESIL_BUDGET_RATIO;
  c.window = RESIL_HOUR; /* nothing expires during the run */
  c.min_per_sec = 0;
  resil_ns t0;
  resil_budget *b = real_budget(&c, &t0);
  run_result r = run_threads(b, t0, 1, 0, 150);
  if ((double)r.granted > c.ratio * (double)r.requests)
    fail_msg("ratio granted %llu of %llu requests", (unsigned long long)r.granted,
             (unsigned long long)r.requests);
  assert_true(r.granted > 0);
  resil_budget_free(b);

  /* Floor only (ratio negligible, no requests counted yet): exactly the
   * floor, however many threads race for it. */
  resil_budget_config_init(&c);
  c.kind = RESIL_BUDGET_RATIO;
  c.window = 400 * RESIL_SEC;
  c.ratio = 1e-12;
  c.min_per_sec = 0.25; /* 100 per window */
  b = real_budget(&c, &t0);
  r = run_threads(b, t0, 1, 0, 100);
  assert_int_equal(r.granted, 100);
  resil_budget_free(b);

  /* A short window so buckets rotate under load (totals still add up). */
  resil_budget_config_init(&c);
  c.kind = RESIL_BUDGET_RATIO;
  c.window = 20 * RESIL_MSEC;
  c.window_buckets = 4;
  b = real_budget(&c, &t0);
  r = run_threads(b, t0, 1, 0, 150);
  assert_true(r.s.available >= 0);
  resil_budget_free(b);
}

static void test_threads_grpc(void **state) {
  (void)state;
  resil_budget_config c;
  resil_budget_config_init(&c);
  c.kind = RESIL_BUDGET_GRPC;
  c.max_tokens = 10;
  c.token_ratio = 0.5;
  resil_ns t0;
  resil_budget *b = real_budget(&c, &t0);
  run_result r = run_threads(b, t0, 2, c.max_tokens, 150);
  assert_true(r.granted > 0 && r.denied > 0);
  resil_budget_free(b);
}

static void test_threads_quota(void **state) {
  (void)state;
  resil_budget_config c;
  resil_budget_config_init(&c);
  c.kind = RESIL_BUDGET_QUOTA;
  resil_ns t0;
  resil_budget *b = real_budget(&c, &t0);
  run_result r = run_threads(b, t0, 4, c.capacity, 150); /* with refunds */
  assert_true(r.granted > 0);
  resil_budget_free(b);

  /* No successes, so no refunds: what is left is exactly capacity minus
   * what the granted retries were charged. */
  c.capacity = 100000;
  b = real_budget(&c, &t0);
  r = run_threads(b, t0, 3, c.capacity, 150);
  assert_true(r.charged <= c.capacity);
  assert_near(r.s.available, (double)(c.capacity - r.charged), 0);
  resil_budget_free(b);
}

static void test_threads_adaptive(void **state) {
  (void)state;
  resil_budget_config c;
  resil_budget_config_init(&c);
  c.kind = RESIL_BUDGET_ADAPTIVE;
  c.window = 50 * RESIL_MSEC; /* rotates during the run */
  resil_ns t0;
  resil_budget *b = real_budget(&c, &t0);
  run_result r = run_threads(b, t0, 5, 1.0, 200);
  assert_true(r.rejected > 0); /* 3 of 4 first attempts fail */
  assert_true(r.s.available >= 0 && r.s.available <= 1);
  resil_budget_free(b);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_defaults),
      cmocka_unit_test(test_config_validation),
      cmocka_unit_test(test_kind_names),
      T(test_name_and_null_handles),
      T(test_injected_allocator_and_no_later_allocation),
      T(test_tb_burst_then_refill_at_rate),
      T(test_tb_fractional_rate_and_burst),
      T(test_tb_bound_property),
      T(test_tb_extreme_clocks_and_sizes),
      T(test_ratio_follows_percentage),
      T(test_ratio_per_second_floor),
      T(test_ratio_old_buckets_expire),
      T(test_grpc_throttling),
      T(test_quota_costs_and_refunds),
      T(test_adaptive_no_rejection_while_accepting),
      T(test_adaptive_rejection_matches_formula),
      T(test_adaptive_seeded_reproducible),
      T(test_adaptive_window_expiry),
      cmocka_unit_test(test_threads_token_bucket),
      cmocka_unit_test(test_threads_ratio),
      cmocka_unit_test(test_threads_grpc),
      cmocka_unit_test(test_threads_quota),
      cmocka_unit_test(test_threads_adaptive),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
