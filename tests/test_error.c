#include <string.h>

#include "resil/resil.h"
#include "test_util.h"

static void test_every_code_has_text_and_name(void **state) {
  (void)state;
#define CHECK(name, value, msg)                                                \
  assert_string_equal(resil_strerror(RESIL_##name), msg);                      \
  assert_string_equal(resil_err_name(RESIL_##name), #name);                    \
  assert_int_equal((int)RESIL_##name, value);
  RESIL_ERR_MAP(CHECK)
#undef CHECK
}

static void test_unknown_code(void **state) {
  (void)state;
  assert_string_equal(resil_strerror((resil_err)-9999), "unknown error");
  assert_string_equal(resil_err_name((resil_err)12345), "UNKNOWN");
}

static void test_version(void **state) {
  (void)state;
  assert_string_equal(resil_version(), RESIL_VERSION_STRING);
  assert_int_equal(resil_version_num(), RESIL_VERSION_NUM);
  assert_true(RESIL_AT_LEAST_VERSION(0, 1, 0));
  assert_false(RESIL_AT_LEAST_VERSION(99, 0, 0));
}

static void test_stop_reasons(void **state) {
  (void)state;
#define CHECK(name, value, text)                                               \
  assert_string_equal(resil_stop_reason_text(RESIL_STOP_##name), text);        \
  assert_string_not_equal(resil_stop_reason_name(RESIL_STOP_##name), "unknown");
  RESIL_STOP_MAP(CHECK)
#undef CHECK
  assert_string_equal(resil_stop_reason_text((resil_stop_reason)99), "unknown");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_code_has_text_and_name),
      cmocka_unit_test(test_unknown_code),
      cmocka_unit_test(test_version),
      cmocka_unit_test(test_stop_reasons),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
