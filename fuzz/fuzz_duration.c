/* libFuzzer harness for resil_duration_parse() and resil_duration_format().
 *
 * Properties checked for any input (abort() on violation):
 *   - parse returns RESIL_OK, RESIL_EPARSE or RESIL_ERANGE and writes *out
 *     only on success, with a value >= 0;
 *   - formatting that value into a 32-byte buffer never writes past it,
 *     returns < 32 and NUL-terminates at the returned length;
 *   - with any smaller buffer it writes at most len bytes (NUL-terminated
 *     when len > 0) and returns the same full length. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "resil/time.h"

#define SENTINEL ((resil_ns)-42)
#define FMT_LEN 32
#define GUARD 16

static void check(int cond) {
  if (!cond) abort();
}

static void check_format(resil_ns v) {
  char buf[FMT_LEN + GUARD];
  memset(buf, 0x5a, sizeof buf);
  size_t n = resil_duration_format(v, buf, FMT_LEN);
  check(n < FMT_LEN);
  check(strlen(buf) == n);
  for (size_t i = FMT_LEN; i < sizeof buf; i++) check(buf[i] == 0x5a);

  char full[FMT_LEN];
  memcpy(full, buf, n + 1);
  for (size_t len = 0; len < FMT_LEN; len++) {
    memset(buf, 0x5a, sizeof buf);
    check(resil_duration_format(v, buf, len) == n);
    for (size_t i = len; i < sizeof buf; i++) check(buf[i] == 0x5a);
    if (len > 0) {
      size_t keep = n < len - 1 ? n : len - 1;
      check(memcmp(buf, full, keep) == 0 && buf[keep] == '\0');
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  if (s == NULL) return 0;
  if (size) memcpy(s, data, size);
  s[size] = '\0';

  resil_ns v = SENTINEL;
  resil_err rc = resil_duration_parse(s, &v);
  check(rc == RESIL_OK || rc == RESIL_EPARSE || rc == RESIL_ERANGE);
  if (rc == RESIL_OK) {
    check(v >= 0);
    check_format(v);
  } else {
    check(v == SENTINEL);
  }

  /* Also format the raw input bytes read as an integer: covers negative and
   * huge values the parser never produces. */
  if (size >= sizeof(int64_t)) {
    int64_t raw;
    memcpy(&raw, data, sizeof raw);
    check_format(raw);
  }
  free(s);
  return 0;
}
