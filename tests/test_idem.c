#include <stdlib.h>
#include <string.h>

#include "resil/idem.h"
#include "test_util.h"

static int is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

static void check_uuid_shape(const char *u, char version) {
  assert_int_equal(strlen(u), 36);
  for (int i = 0; i < 36; i++) {
    if (i == 8 || i == 13 || i == 18 || i == 23) assert_int_equal(u[i], '-');
    else assert_true(is_hex(u[i]));
  }
  assert_int_equal(u[14], version);
  assert_true(u[19] == '8' || u[19] == '9' || u[19] == 'a' || u[19] == 'b'); /* variant 10xx */
}

static int cmp_str(const void *a, const void *b) { return strcmp(a, b); }

static void test_uuid_v4(void **state) {
  (void)state;
  enum { N = 20000 };
  char(*keys)[RESIL_UUID_SIZE] = malloc(sizeof *keys * N);
  assert_non_null(keys);
  for (int i = 0; i < N; i++) {
    assert_int_equal(resil_uuid_v4(keys[i], NULL), RESIL_OK);
    check_uuid_shape(keys[i], '4');
  }
  qsort(keys, N, sizeof *keys, cmp_str);
  for (int i = 1; i < N; i++) assert_true(strcmp(keys[i - 1], keys[i]) != 0);
  free(keys);
  /* Seeded: reproducible. */
  resil_rng a, b;
  resil_rng_seed(&a, 9);
  resil_rng_seed(&b, 9);
  char x[RESIL_UUID_SIZE], y[RESIL_UUID_SIZE];
  assert_int_equal(resil_uuid_v4(x, &a), RESIL_OK);
  assert_int_equal(resil_uuid_v4(y, &b), RESIL_OK);
  assert_string_equal(x, y);
  check_uuid_shape(x, '4');
}

static resil_ns fixed_wall(void *ud) { return *(resil_ns *)ud; }

static void test_uuid_v7(void **state) {
  (void)state;
  /* 2022-02-22T19:22:22Z = 1645557742000 ms = 0x017F22E279B0 (RFC 9562's
   * example timestamp). */
  resil_ns t = (resil_ns)1645557742000 * RESIL_MSEC;
  resil_wallclock wc = {fixed_wall, &t};
  char u[RESIL_UUID_SIZE];
  assert_int_equal(resil_uuid_v7(u, &wc, NULL), RESIL_OK);
  check_uuid_shape(u, '7');
  assert_memory_equal(u, "017f22e2-79b0-7", 15);
  /* Later keys sort after earlier ones (different milliseconds). */
  char prev[RESIL_UUID_SIZE];
  memcpy(prev, u, sizeof prev);
  for (int i = 0; i < 100; i++) {
    t += RESIL_MSEC;
    assert_int_equal(resil_uuid_v7(u, &wc, NULL), RESIL_OK);
    assert_true(strcmp(prev, u) < 0);
    memcpy(prev, u, sizeof prev);
  }
  assert_int_equal(resil_uuid_v7(u, NULL, NULL), RESIL_OK); /* system clock */
  check_uuid_shape(u, '7');
}

static void test_key_parse(void **state) {
  (void)state;
  static const struct {
    const char *in;
    const char *want; /* NULL: error */
    resil_err err;
  } cases[] = {
      {"abc", "abc", RESIL_OK},
      {"  8e03978e-40d5-43e8-bc93-6894a57f9324\t", "8e03978e-40d5-43e8-bc93-6894a57f9324", RESIL_OK},
      {"\"8e03978e\"", "8e03978e", RESIL_OK},
      {"\"with space\"", "with space", RESIL_OK},
      {"\"a\\\"b\\\\c\"", "a\"b\\c", RESIL_OK},
      {"", NULL, RESIL_EPARSE},
      {"   ", NULL, RESIL_EPARSE},
      {"\"\"", NULL, RESIL_EPARSE},
      {"a b", NULL, RESIL_EPARSE},
      {"\"unterminated", NULL, RESIL_EPARSE},
      {"\"x\"y", NULL, RESIL_EPARSE},
      {"\"bad\\escape\"", NULL, RESIL_EPARSE},
      {"tab\there", NULL, RESIL_EPARSE},
      {"caf\xc3\xa9", NULL, RESIL_EPARSE},
      {"\"ctrl\x01\"", NULL, RESIL_EPARSE},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    char out[RESIL_IDEM_KEY_MAX + 1];
    size_t n = 999;
    resil_err e = resil_idem_key_parse(cases[i].in, strlen(cases[i].in), out, &n);
    if (e != cases[i].err) fail_msg("'%s': got %d want %d", cases[i].in, e, cases[i].err);
    if (cases[i].want) {
      assert_string_equal(out, cases[i].want);
      assert_int_equal(n, strlen(cases[i].want));
    }
  }
  /* Length limits: 255 is fine, 256 is not, quoted or bare. */
  char big[300], quoted[310], out[RESIL_IDEM_KEY_MAX + 1];
  memset(big, 'k', sizeof big);
  assert_int_equal(resil_idem_key_parse(big, 255, out, NULL), RESIL_OK);
  assert_int_equal(strlen(out), 255);
  assert_int_equal(resil_idem_key_parse(big, 256, out, NULL), RESIL_ERANGE);
  quoted[0] = '"';
  memset(quoted + 1, 'q', 256);
  quoted[257] = '"';
  assert_int_equal(resil_idem_key_parse(quoted, 258, out, NULL), RESIL_ERANGE);
  assert_int_equal(resil_idem_key_parse(quoted, 257 - 1, out, NULL), RESIL_EPARSE); /* no close */
  /* Not NUL-terminated input: only len bytes are read. */
  assert_int_equal(resil_idem_key_parse("abcdef", 3, out, NULL), RESIL_OK);
  assert_string_equal(out, "abc");
  assert_int_equal(resil_idem_key_parse(NULL, 0, out, NULL), RESIL_EPARSE);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_uuid_v4),
      cmocka_unit_test(test_uuid_v7),
      cmocka_unit_test(test_key_parse),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
