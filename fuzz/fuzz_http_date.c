/* libFuzzer harness for resil/http_date.h.
 *
 * Feeds the input to the HTTP-date parser (with several values of "now",
 * including the int64 extremes), to Retry-After and to every rate-limit
 * header name, and checks properties that must hold for any input:
 *   - a parse either succeeds or returns RESIL_EPARSE;
 *   - a parsed date inside 0001..9999 formats to 29 bytes of IMF-fixdate that
 *     parse back to the same value, and one outside that range does not
 *     format;
 *   - a hint is a delay >= 0; "no hint" leaves *delay untouched;
 *   - anything that parses as an HTTP-date is a usable Retry-After hint.
 * A violation calls abort(). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "resil/http_date.h"

#define MIN_FORMATTABLE INT64_C(-62135596800) /* 0001-01-01T00:00:00Z */
#define MAX_FORMATTABLE INT64_C(253402300799) /* 9999-12-31T23:59:59Z */
#define SENTINEL ((resil_ns)-42)

/* Fixed fake wall clock: 2024-06-15T12:00:00.123456789Z. */
#define FAKE_NOW_NS (INT64_C(1718452800) * RESIL_SEC + INT64_C(123456789))

static resil_ns fake_now(void *ud) {
  (void)ud;
  return FAKE_NOW_NS;
}

static void check(int cond) {
  if (!cond) abort();
}

static void check_date(const char *s, size_t len, int64_t now) {
  int64_t t = SENTINEL;
  resil_err rc = resil_http_date_parse(s, len, now, &t);
  check(rc == RESIL_OK || rc == RESIL_EPARSE);
  if (rc != RESIL_OK) {
    check(t == SENTINEL);
    return;
  }
  char buf[RESIL_HTTP_DATE_SIZE + 8];
  memset(buf, 'x', sizeof buf);
  size_t n = resil_http_date_format(t, buf, RESIL_HTTP_DATE_SIZE);
  check(buf[RESIL_HTTP_DATE_SIZE] == 'x');
  if (t < MIN_FORMATTABLE || t > MAX_FORMATTABLE) {
    check(n == 0);
    return;
  }
  check(n == 29 && strlen(buf) == 29);
  int64_t back = SENTINEL;
  check(resil_http_date_parse(buf, n, now, &back) == RESIL_OK);
  check(back == t);
}

static void check_hint(int rc, resil_ns d) {
  check(rc == 0 || rc == 1);
  if (rc == 1)
    check(d >= 0);
  else
    check(d == SENTINEL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char k_empty[1] = "";
  const char *s = size ? (const char *)data : k_empty;
  static const int64_t k_nows[] = {
      FAKE_NOW_NS / RESIL_SEC, 0, -1, INT64_C(-62135596800),
      INT64_C(253402300799), INT64_MIN, INT64_MAX};
  for (size_t i = 0; i < sizeof k_nows / sizeof k_nows[0]; i++)
    check_date(s, size, k_nows[i]);

  resil_wallclock wc = {fake_now, NULL};
  resil_ns d = SENTINEL;
  int rc = resil_retry_after_parse(s, size, &wc, &d);
  check_hint(rc, d);

  int64_t t;
  if (resil_http_date_parse(s, size, FAKE_NOW_NS / RESIL_SEC, &t) == RESIL_OK)
    check(rc == 1);

  static const char *const k_names[] = {
      "Retry-After", "RateLimit-Reset",   "RateLimit",
      "X-RateLimit-Reset", "x-ratelimit-reset", "X-Unknown-Header"};
  for (size_t i = 0; i < sizeof k_names / sizeof k_names[0]; i++) {
    d = SENTINEL;
    int r = resil_ratelimit_reset_parse(k_names[i], s, size, &wc, &d);
    check_hint(r, d);
    if (i == 0) check(r == rc); /* Retry-After is the same parser */
    if (i == 5) check(r == 0);
  }
  return 0;
}
