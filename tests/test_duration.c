#include <string.h>

#include "resil/time.h"
#include "test_util.h"

static volatile double zero = 0.0;

static void test_saturating_arithmetic(void **state) {
  (void)state;
  assert_int_equal(resil_ns_add(1, 2), 3);
  assert_int_equal(resil_ns_add(RESIL_NS_MAX, 1), RESIL_NS_MAX);
  assert_int_equal(resil_ns_add(RESIL_NS_MAX - 5, 5), RESIL_NS_MAX);
  assert_int_equal(resil_ns_add(RESIL_NS_MAX, RESIL_NS_MAX), RESIL_NS_MAX);
  assert_int_equal(resil_ns_add(-5, 3), 3);
  assert_int_equal(resil_ns_sub(5, 7), 0);
  assert_int_equal(resil_ns_sub(7, 5), 2);
  assert_int_equal(resil_ns_mul(RESIL_SEC, 60), RESIL_MIN);
  assert_int_equal(resil_ns_mul(RESIL_NS_MAX / 2 + 1, 2), RESIL_NS_MAX);
  assert_int_equal(resil_ns_mul(3, INT64_MAX), RESIL_NS_MAX);
  assert_int_equal(resil_ns_mul(-3, 2), 0);
  assert_int_equal(resil_ns_mul(3, -2), 0);
  assert_int_equal(resil_ns_scale(RESIL_SEC, 1.5), 1500 * RESIL_MSEC);
  assert_int_equal(resil_ns_scale(RESIL_NS_MAX, 2.0), RESIL_NS_MAX);
  assert_int_equal(resil_ns_scale(RESIL_NS_MAX, 1.0), RESIL_NS_MAX);
  assert_int_equal(resil_ns_scale(RESIL_SEC, 1.0 / zero), RESIL_NS_MAX); /* +inf */
  assert_int_equal(resil_ns_scale(RESIL_SEC, zero / zero), 0);           /* NaN */
  assert_int_equal(resil_ns_scale(RESIL_SEC, -1.0), 0);
}

static const struct {
  const char *in;
  resil_ns want;
} good[] = {
    {"250ms", 250 * RESIL_MSEC},
    {"1.5s", 1500 * RESIL_MSEC},
    {"2m", 2 * RESIL_MIN},
    {"1h", RESIL_HOUR},
    {"3", 3 * RESIL_SEC},
    {"0.5", 500 * RESIL_MSEC},
    {".5s", 500 * RESIL_MSEC},
    {"0", 0},
    {"0s", 0},
    {"1h30m", 90 * RESIL_MIN},
    {"1m30.5s", 90 * RESIL_SEC + 500 * RESIL_MSEC},
    {"10us", 10 * RESIL_USEC},
    {"7ns", 7},
    {"2d", 48 * RESIL_HOUR},
    {"  42ms\t", 42 * RESIL_MSEC},
    {"1.0000000001s", RESIL_SEC},
    {"0.0000000005s", 1}, /* rounds to nearest */
    {"9223372036854775807ns", RESIL_NS_MAX},
    {"106751d", 106751 * 24 * RESIL_HOUR},
};

static const struct {
  const char *in;
  resil_err want;
} bad[] = {
    {"", RESIL_EPARSE},
    {"   ", RESIL_EPARSE},
    {"-1s", RESIL_EPARSE},
    {"+1s", RESIL_EPARSE},
    {"1x", RESIL_EPARSE},
    {"s", RESIL_EPARSE},
    {".", RESIL_EPARSE},
    {"1s5", RESIL_EPARSE},
    {"5 1s", RESIL_EPARSE},
    {"1 s", RESIL_EPARSE},
    {"1sec", RESIL_EPARSE},
    {"1mss", RESIL_EPARSE},
    {"1.2.3s", RESIL_EPARSE},
    {"abc", RESIL_EPARSE},
    {"1h 30m", RESIL_EPARSE},
    {"9223372036854775808ns", RESIL_ERANGE},
    {"106752d", RESIL_ERANGE},
    {"99999999999999999999999999999s", RESIL_ERANGE},
    {"292y", RESIL_EPARSE},
    {"9223372036854775807ns1ns", RESIL_ERANGE},
};

static void test_parse(void **state) {
  (void)state;
  for (size_t i = 0; i < ARRAY_LEN(good); i++) {
    resil_ns got = -1;
    resil_err e = resil_duration_parse(good[i].in, &got);
    if (e != RESIL_OK || got != good[i].want)
      fail_msg("'%s': err %d got %lld want %lld", good[i].in, e, (long long)got,
               (long long)good[i].want);
  }
  for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
    resil_ns got = 12345;
    resil_err e = resil_duration_parse(bad[i].in, &got);
    if (e != bad[i].want) fail_msg("'%s': err %d want %d", bad[i].in, e, bad[i].want);
    assert_int_equal(got, 12345); /* untouched on error */
  }
  resil_ns x;
  assert_int_equal(resil_duration_parse(NULL, &x), RESIL_EINVAL);
  assert_int_equal(resil_duration_parse("1s", NULL), RESIL_EINVAL);
}

static void test_format(void **state) {
  (void)state;
  static const struct {
    resil_ns in;
    const char *want;
  } cases[] = {
      {0, "0s"},
      {-5, "0s"},
      {850, "850ns"},
      {999, "999ns"},
      {1000, "1us"},
      {12500, "12.5us"},
      {999999, "1ms"}, /* rounding moves to the next unit */
      {250 * RESIL_MSEC, "250ms"},
      {1250 * RESIL_USEC, "1.3ms"},
      {1300 * RESIL_MSEC, "1.3s"},
      {1250 * RESIL_MSEC, "1.3s"},
      {45 * RESIL_SEC, "45s"},
      {59960 * RESIL_MSEC, "1m"},
      {2 * RESIL_MIN, "2m"},
      {150 * RESIL_SEC, "2m30s"},
      {RESIL_HOUR, "1h"},
      {65 * RESIL_MIN, "1h5m"},
      {RESIL_HOUR - 1, "1h"},
      {484289 * RESIL_HOUR, "484289h"},
      {RESIL_NS_MAX, "inf"},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    char buf[32];
    size_t n = resil_duration_format(cases[i].in, buf, sizeof buf);
    if (strcmp(buf, cases[i].want) != 0 || n != strlen(cases[i].want))
      fail_msg("%lld: got '%s' want '%s'", (long long)cases[i].in, buf, cases[i].want);
  }
  /* Truncation behaves like snprintf. */
  char small[4];
  assert_int_equal(resil_duration_format(250 * RESIL_MSEC, small, sizeof small), 5);
  assert_string_equal(small, "250");
  assert_int_equal(resil_duration_format(RESIL_SEC, NULL, 0), 2);
  /* The longest text fits in 32 bytes. */
  char buf[32];
  assert_true(resil_duration_format(RESIL_NS_MAX - 1, buf, sizeof buf) < 32);
}

static void test_format_parse_round_trip(void **state) {
  (void)state;
  /* Formatting keeps at most two significant digits below a minute, so the
   * parsed value is within 5% of the original. */
  for (resil_ns d = 1; d < 50 * RESIL_SEC; d = d * 3 + 7) {
    char buf[32];
    resil_duration_format(d, buf, sizeof buf);
    resil_ns back;
    assert_int_equal(resil_duration_parse(buf, &back), RESIL_OK);
    double rel = (double)(back > d ? back - d : d - back) / (double)d;
    if (rel > 0.05) fail_msg("%lld -> %s -> %lld", (long long)d, buf, (long long)back);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_saturating_arithmetic),
      cmocka_unit_test(test_parse),
      cmocka_unit_test(test_format),
      cmocka_unit_test(test_format_parse_round_trip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
