#include <string.h>

#include "resil/rng.h"
#include "test_util.h"

static void test_seed_is_reproducible(void **state) {
  (void)state;
  resil_rng a, b, c;
  resil_rng_seed(&a, 42);
  resil_rng_seed(&b, 42);
  resil_rng_seed(&c, 43);
  int differs = 0;
  for (int i = 0; i < 1000; i++) {
    uint64_t x = resil_rng_next(&a);
    assert_true(x == resil_rng_next(&b));
    differs |= x != resil_rng_next(&c);
  }
  assert_true(differs);
  /* Seed 0 is fine (splitmix64 expands it to a non-zero state). */
  resil_rng z;
  resil_rng_seed(&z, 0);
  assert_true((z.s[0] | z.s[1] | z.s[2] | z.s[3]) != 0);
}

static void test_os_seed_gives_distinct_streams(void **state) {
  (void)state;
  resil_rng a, b;
  assert_int_equal(resil_rng_seed_os(&a), RESIL_OK);
  assert_int_equal(resil_rng_seed_os(&b), RESIL_OK);
  assert_true(memcmp(&a, &b, sizeof a) != 0);
}

static void test_below_range_and_uniformity(void **state) {
  (void)state;
  resil_rng r;
  resil_rng_seed(&r, 7);
  assert_int_equal(resil_rng_below(&r, 0), 0);
  assert_int_equal(resil_rng_below(&r, 1), 0);
  /* Chi-square over 6 buckets: 5 degrees of freedom; 20.5 is p = 0.001. The
   * seed is fixed, so this is deterministic, not flaky. */
  enum { N = 600000, K = 6 };
  long counts[K] = {0};
  for (int i = 0; i < N; i++) {
    uint64_t v = resil_rng_below(&r, K);
    assert_true(v < K);
    counts[v]++;
  }
  double chi = 0, expect = (double)N / K;
  for (int k = 0; k < K; k++) chi += (counts[k] - expect) * (counts[k] - expect) / expect;
  assert_true(chi < 20.5);
}

/* With bound = 2/3 * 2^64, `next() % bound` makes the lower half of the range
 * twice as likely as the upper half (P(lower) = 2/3). An unbiased draw gives
 * 1/2. */
static void test_no_modulo_bias(void **state) {
  (void)state;
  resil_rng r;
  resil_rng_seed(&r, 99);
  const uint64_t bound = (UINT64_MAX / 3) * 2;
  int lower = 0;
  const int n = 200000;
  for (int i = 0; i < n; i++) lower += resil_rng_below(&r, bound) < bound / 2;
  double p = (double)lower / n;
  assert_true(p > 0.49 && p < 0.51);
}

static void test_between(void **state) {
  (void)state;
  resil_rng r;
  resil_rng_seed(&r, 1);
  assert_int_equal(resil_rng_between(&r, 5, 5), 5);
  for (int i = 0; i < 10000; i++) {
    resil_ns v = resil_rng_between(&r, 10, 20);
    assert_true(v >= 10 && v <= 20);
    v = resil_rng_between(&r, 20, 10); /* swapped */
    assert_true(v >= 10 && v <= 20);
    v = resil_rng_between(&r, 0, RESIL_NS_MAX); /* the full span */
    assert_true(v >= 0);
    v = resil_rng_between(&r, -50, -10); /* negatives clamp to 0 */
    assert_int_equal(v, 0);
  }
  /* Both ends are reachable. */
  int saw_lo = 0, saw_hi = 0;
  for (int i = 0; i < 1000; i++) {
    resil_ns v = resil_rng_between(&r, 0, 3);
    saw_lo |= v == 0;
    saw_hi |= v == 3;
  }
  assert_true(saw_lo && saw_hi);
}

static void test_unit(void **state) {
  (void)state;
  resil_rng r;
  resil_rng_seed(&r, 3);
  double sum = 0;
  for (int i = 0; i < 100000; i++) {
    double u = resil_rng_unit(&r);
    assert_true(u >= 0.0 && u < 1.0);
    sum += u;
  }
  assert_true(sum / 100000 > 0.49 && sum / 100000 < 0.51);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_seed_is_reproducible),
      cmocka_unit_test(test_os_seed_gives_distinct_streams),
      cmocka_unit_test(test_below_range_and_uniformity),
      cmocka_unit_test(test_no_modulo_bias),
      cmocka_unit_test(test_between),
      cmocka_unit_test(test_unit),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
