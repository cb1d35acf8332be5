#include <limits.h>
#include <string.h>

#include "resil/backoff.h"
#include "test_util.h"

static resil_backoff mk(resil_backoff_kind k, resil_jitter j, resil_ns base, resil_ns cap) {
  resil_backoff b;
  resil_backoff_init(&b);
  b.kind = k;
  b.jitter = j;
  b.base = base;
  b.cap = cap;
  return b;
}

static void test_defaults_and_validation(void **state) {
  (void)state;
  resil_backoff b;
  resil_backoff_init(&b);
  assert_int_equal(b.kind, RESIL_BACKOFF_EXPONENTIAL);
  assert_int_equal(b.jitter, RESIL_JITTER_FULL);
  assert_int_equal(b.base, RESIL_SEC);
  assert_int_equal(b.cap, 30 * RESIL_SEC);
  assert_int_equal(resil_backoff_validate(&b), RESIL_OK);

  resil_backoff x;
#define BAD(stmt)                                                              \
  x = b;                                                                       \
  stmt;                                                                        \
  assert_int_equal(resil_backoff_validate(&x), RESIL_EINVAL);
  BAD(x.base = 0);
  BAD(x.base = -1);
  BAD(x.cap = x.base - 1);
  BAD(x.min = -1);
  BAD(x.min = x.cap + 1);
  BAD(x.step = -1);
  BAD(x.jitter_max = -1);
  BAD(x.multiplier = 0.5);
  BAD(x.multiplier = 1.0 / (x.jitter_fraction - x.jitter_fraction)); /* inf */
  BAD(x.multiplier = (x.jitter_fraction - x.jitter_fraction) / 0.0); /* NaN */
  BAD(x.jitter_fraction = 1.5);
  BAD(x.jitter_fraction = -0.1);
  BAD(x.kind = (resil_backoff_kind)7);
  BAD(x.jitter = (resil_jitter)-1);
#undef BAD
  assert_int_equal(resil_backoff_validate(NULL), RESIL_EINVAL);
  x = b;
  x.cap = x.base; /* cap == base is allowed */
  assert_int_equal(resil_backoff_validate(&x), RESIL_OK);
}

static void test_base_delays(void **state) {
  (void)state;
  resil_backoff c = mk(RESIL_BACKOFF_CONSTANT, RESIL_JITTER_NONE, 100, 1000);
  resil_backoff l = mk(RESIL_BACKOFF_LINEAR, RESIL_JITTER_NONE, 100, 1000);
  resil_backoff e = mk(RESIL_BACKOFF_EXPONENTIAL, RESIL_JITTER_NONE, 100, 1000);
  static const resil_ns want_c[] = {100, 100, 100, 100, 100, 100};
  static const resil_ns want_l[] = {100, 200, 300, 400, 500, 600};
  static const resil_ns want_e[] = {100, 200, 400, 800, 1000, 1000};
  for (uint32_t n = 1; n <= 6; n++) {
    assert_int_equal(resil_backoff_delay(&c, n, 0, NULL), want_c[n - 1]);
    assert_int_equal(resil_backoff_delay(&l, n, 0, NULL), want_l[n - 1]);
    assert_int_equal(resil_backoff_delay(&e, n, 0, NULL), want_e[n - 1]);
  }
  l.step = 50;
  assert_int_equal(resil_backoff_base_delay(&l, 3), 200);
  assert_int_equal(resil_backoff_base_delay(&l, 0), 100); /* n = 0 acts as 1 */
  e.multiplier = 3.0;
  assert_int_equal(resil_backoff_base_delay(&e, 3), 900);
  e.multiplier = 1.5;
  e.cap = 100000;
  assert_int_equal(resil_backoff_base_delay(&e, 4), 337); /* 100 * 3.375 */
  e.multiplier = 1.0;
  assert_int_equal(resil_backoff_base_delay(&e, 1000), 100);
}

/* Attempt numbers up to UINT32_MAX (beyond INT_MAX) and caps of years never
 * overflow: every result is within [min, cap]. UBSan checks the arithmetic. */
static void test_extremes_never_overflow(void **state) {
  (void)state;
  const resil_ns year = 365 * 24 * RESIL_HOUR;
  const resil_ns caps[] = {RESIL_SEC, 100 * year, RESIL_NS_MAX};
  const double mults[] = {1.0, 1.0000001, 1.5, 2.0, 10.0, 1e300};
  const uint32_t ns[] = {1, 2, 62, 63, 64, 65, 1000, (uint32_t)INT_MAX, (uint32_t)INT_MAX + 1u,
                         UINT32_MAX};
  resil_rng rng;
  resil_rng_seed(&rng, 5);
  for (resil_jitter j = RESIL_JITTER_NONE; j <= RESIL_JITTER_PROPORTIONAL; j++)
    for (int k = 0; k <= 2; k++)
      for (size_t ci = 0; ci < ARRAY_LEN(caps); ci++)
        for (size_t mi = 0; mi < ARRAY_LEN(mults); mi++)
          for (size_t ni = 0; ni < ARRAY_LEN(ns); ni++) {
            resil_backoff b = mk((resil_backoff_kind)k, j, RESIL_MSEC, caps[ci]);
            b.multiplier = mults[mi];
            b.min = RESIL_MSEC / 2;
            assert_int_equal(resil_backoff_validate(&b), RESIL_OK);
            resil_ns prev = caps[ci];
            resil_ns d = resil_backoff_delay(&b, ns[ni], prev, &rng);
            if (d < b.min || d > b.cap)
              fail_msg("jitter %d kind %d cap %lld mult %g n %u -> %lld", j, k,
                       (long long)caps[ci], mults[mi], ns[ni], (long long)d);
            /* Exponential without jitter reaches the cap for huge n. */
            if (k == RESIL_BACKOFF_EXPONENTIAL && j == RESIL_JITTER_NONE && mults[mi] >= 1.5 &&
                ns[ni] >= 1000)
              assert_int_equal(d, b.cap);
          }
  /* Linear with a huge step saturates at the cap too. */
  resil_backoff l = mk(RESIL_BACKOFF_LINEAR, RESIL_JITTER_NONE, RESIL_SEC, RESIL_NS_MAX);
  l.step = RESIL_NS_MAX / 2;
  assert_int_equal(resil_backoff_base_delay(&l, UINT32_MAX), RESIL_NS_MAX);
  /* Base near the max with the largest cap. */
  resil_backoff e = mk(RESIL_BACKOFF_EXPONENTIAL, RESIL_JITTER_NONE, RESIL_NS_MAX / 2, RESIL_NS_MAX);
  assert_int_equal(resil_backoff_base_delay(&e, 2), RESIL_NS_MAX - 1);
  assert_int_equal(resil_backoff_base_delay(&e, 3), RESIL_NS_MAX);
}

/* Each jitter mode's documented range, checked over many draws, and the mean
 * within a few percent of the formula's expectation. */
static void test_jitter_ranges(void **state) {
  (void)state;
  const resil_ns t = 800 * RESIL_MSEC; /* base 100ms, n = 4 */
  resil_rng rng;
  resil_rng_seed(&rng, 11);
  struct {
    resil_jitter j;
    resil_ns lo, hi;
    double mean;
  } cases[] = {
      {RESIL_JITTER_NONE, t, t, (double)t},
      {RESIL_JITTER_FULL, 0, t, t / 2.0},
      {RESIL_JITTER_EQUAL, t / 2, t, t * 0.75},
      {RESIL_JITTER_ADDITIVE, t, 2 * t, t * 1.5},
      {RESIL_JITTER_PROPORTIONAL, (resil_ns)(t * 0.8), (resil_ns)(t * 1.2), (double)t},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    resil_backoff b = mk(RESIL_BACKOFF_EXPONENTIAL, cases[i].j, 100 * RESIL_MSEC, 30 * RESIL_SEC);
    double sum = 0;
    const int n = 20000;
    resil_ns lo = RESIL_NS_MAX, hi = 0;
    for (int k = 0; k < n; k++) {
      resil_ns d = resil_backoff_delay(&b, 4, 0, &rng);
      assert_true(d >= cases[i].lo && d <= cases[i].hi);
      lo = d < lo ? d : lo;
      hi = d > hi ? d : hi;
      sum += (double)d;
    }
    double mean = sum / n;
    if (mean < cases[i].mean * 0.97 || mean > cases[i].mean * 1.03)
      fail_msg("%s: mean %g want %g", resil_jitter_name(cases[i].j), mean, cases[i].mean);
    if (cases[i].j != RESIL_JITTER_NONE) assert_true(hi - lo > t / 4); /* it really varies */
  }
  /* Additive with a fixed J: t + U(0, J). */
  resil_backoff a = mk(RESIL_BACKOFF_EXPONENTIAL, RESIL_JITTER_ADDITIVE, 100 * RESIL_MSEC, 30 * RESIL_SEC);
  a.jitter_max = 50 * RESIL_MSEC;
  for (int k = 0; k < 1000; k++) {
    resil_ns d = resil_backoff_delay(&a, 4, 0, &rng);
    assert_true(d >= t && d <= t + 50 * RESIL_MSEC);
  }
  /* Proportional with f = 0 is exact; f = 1 spans [0, 2t]. */
  resil_backoff p = mk(RESIL_BACKOFF_EXPONENTIAL, RESIL_JITTER_PROPORTIONAL, 100 * RESIL_MSEC, 30 * RESIL_SEC);
  p.jitter_fraction = 0;
  assert_int_equal(resil_backoff_delay(&p, 4, 0, &rng), t);
}

static void test_decorrelated(void **state) {
  (void)state;
  resil_backoff b = mk(RESIL_BACKOFF_EXPONENTIAL, RESIL_JITTER_DECORRELATED, 10 * RESIL_MSEC, RESIL_SEC);
  resil_rng rng;
  resil_rng_seed(&rng, 12);
  resil_ns prev = 0;
  int hit_cap = 0;
  for (uint32_t n = 1; n <= 200; n++) {
    resil_ns d = resil_backoff_delay(&b, n, prev, &rng);
    resil_ns p = prev < b.base ? b.base : prev;
    resil_ns hi = 3 * p < b.cap ? 3 * p : b.cap;
    assert_true(d >= b.base && d <= hi);
    hit_cap |= d == b.cap;
    prev = d;
  }
  assert_true(hit_cap); /* min(cap, U(base, 3*prev)) piles up at the cap */
  /* prev of years saturates instead of overflowing in 3 * prev. */
  resil_backoff big = mk(RESIL_BACKOFF_EXPONENTIAL, RESIL_JITTER_DECORRELATED, RESIL_SEC, RESIL_NS_MAX);
  resil_ns d = resil_backoff_delay(&big, 5, RESIL_NS_MAX - 1, &rng);
  assert_true(d >= RESIL_SEC);
}

static void test_cap_and_min_clamp(void **state) {
  (void)state;
  resil_rng rng;
  resil_rng_seed(&rng, 13);
  resil_backoff b = mk(RESIL_BACKOFF_EXPONENTIAL, RESIL_JITTER_ADDITIVE, RESIL_SEC, 2 * RESIL_SEC);
  b.min = 1500 * RESIL_MSEC;
  for (int i = 0; i < 1000; i++) {
    resil_ns d = resil_backoff_delay(&b, 3, 0, &rng);
    assert_int_equal(d, 2 * RESIL_SEC); /* t = cap; additive past the cap is clamped */
  }
  /* t = 1s, U(0, 1s) is always below the 1.5s floor. */
  b.jitter = RESIL_JITTER_FULL;
  for (int i = 0; i < 1000; i++) assert_int_equal(resil_backoff_delay(&b, 1, 0, &rng), b.min);
}

static void test_seeded_sequence_reproducible(void **state) {
  (void)state;
  resil_backoff b = mk(RESIL_BACKOFF_EXPONENTIAL, RESIL_JITTER_FULL, RESIL_MSEC, RESIL_SEC);
  resil_rng r1, r2;
  resil_rng_seed(&r1, 77);
  resil_rng_seed(&r2, 77);
  for (uint32_t n = 1; n < 50; n++)
    assert_int_equal(resil_backoff_delay(&b, n, 0, &r1), resil_backoff_delay(&b, n, 0, &r2));
}

static void test_names(void **state) {
  (void)state;
  for (int k = 0; k <= 2; k++) {
    resil_backoff_kind out;
    assert_int_equal(resil_backoff_kind_parse(resil_backoff_kind_name((resil_backoff_kind)k), &out), RESIL_OK);
    assert_int_equal(out, k);
  }
  for (int j = 0; j <= 5; j++) {
    resil_jitter out;
    assert_int_equal(resil_jitter_parse(resil_jitter_name((resil_jitter)j), &out), RESIL_OK);
    assert_int_equal(out, j);
  }
  resil_jitter j;
  resil_backoff_kind k;
  assert_int_equal(resil_jitter_parse("FULL", &j), RESIL_OK);
  assert_int_equal(j, RESIL_JITTER_FULL);
  assert_int_equal(resil_jitter_parse("fuller", &j), RESIL_EINVAL);
  assert_int_equal(resil_jitter_parse(NULL, &j), RESIL_EINVAL);
  assert_int_equal(resil_backoff_kind_parse("exp", &k), RESIL_EINVAL);
  assert_string_equal(resil_backoff_kind_name((resil_backoff_kind)9), "unknown");
  assert_string_equal(resil_jitter_name((resil_jitter)9), "unknown");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults_and_validation),
      cmocka_unit_test(test_base_delays),
      cmocka_unit_test(test_extremes_never_overflow),
      cmocka_unit_test(test_jitter_ranges),
      cmocka_unit_test(test_decorrelated),
      cmocka_unit_test(test_cap_and_min_clamp),
      cmocka_unit_test(test_seeded_sequence_reproducible),
      cmocka_unit_test(test_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
