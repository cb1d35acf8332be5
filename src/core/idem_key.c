/* Idempotency keys: RFC 9562 UUIDs (versions 4 and 7) and header validation. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "resil/idem.h"

static resil_err random_bytes(unsigned char *buf, size_t n, resil_rng *rng) {
  if (rng) {
    for (size_t i = 0; i < n; i += 8) {
      uint64_t v = resil_rng_next(rng);
      size_t k = n - i < 8 ? n - i : 8;
      memcpy(buf + i, &v, k);
    }
    return RESIL_OK;
  }
  size_t got = 0;
  while (got < n) {
    ssize_t r = getrandom(buf + got, n - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return RESIL_ESYS;
    }
    got += (size_t)r;
  }
  return RESIL_OK;
}

static void format_uuid(const unsigned char b[16], char out[RESIL_UUID_SIZE]) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
    out[o++] = hex[b[i] >> 4];
    out[o++] = hex[b[i] & 15];
  }
  out[o] = '\0';
}

/* Version in the high nibble of byte 6, the RFC 9562 variant (10xx) in the
 * top bits of byte 8. */
static void stamp(unsigned char b[16], unsigned version) {
  b[6] = (unsigned char)((b[6] & 0x0F) | (version << 4));
  b[8] = (unsigned char)((b[8] & 0x3F) | 0x80);
}

resil_err resil_uuid_v4(char out[RESIL_UUID_SIZE], resil_rng *rng) {
  unsigned char b[16];
  resil_err e = random_bytes(b, sizeof b, rng);
  if (e != RESIL_OK) return e;
  stamp(b, 4);
  format_uuid(b, out);
  return RESIL_OK;
}

resil_err resil_uuid_v7(char out[RESIL_UUID_SIZE], const resil_wallclock *wc, resil_rng *rng) {
  unsigned char b[16];
  resil_err e = random_bytes(b, sizeof b, rng);
  if (e != RESIL_OK) return e;
  resil_wallclock sys = resil_wallclock_system();
  if (wc == NULL || wc->now == NULL) wc = &sys;
  resil_ns now = wc->now(wc->ud);
  uint64_t ms = now > 0 ? (uint64_t)(now / RESIL_MSEC) : 0;
  for (int i = 0; i < 6; i++) b[i] = (unsigned char)(ms >> (40 - 8 * i));
  stamp(b, 7);
  format_uuid(b, out);
  return RESIL_OK;
}

resil_err resil_idem_key_parse(const char *value, size_t len, char out[RESIL_IDEM_KEY_MAX + 1],
                               size_t *out_len) {
  if (value == NULL && len > 0) return RESIL_EPARSE;
  size_t i = 0, end = len;
  while (i < end && (value[i] == ' ' || value[i] == '\t')) i++;
  while (end > i && (value[end - 1] == ' ' || value[end - 1] == '\t')) end--;
  if (i == end) return RESIL_EPARSE;

  char key[RESIL_IDEM_KEY_MAX + 1];
  size_t n = 0;
  int too_long = 0;
  if (value[i] == '"') {
    /* sf-string: printable ASCII, only \" and \\ may be escaped. */
    size_t j = i + 1;
    int closed = 0;
    for (; j < end; j++) {
      unsigned char c = (unsigned char)value[j];
      if (c == '"') {
        closed = 1;
        j++;
        break;
      }
      if (c == '\\') {
        if (j + 1 >= end || (value[j + 1] != '"' && value[j + 1] != '\\')) return RESIL_EPARSE;
        c = (unsigned char)value[++j];
      } else if (c < 0x20 || c > 0x7E) {
        return RESIL_EPARSE;
      }
      if (n < RESIL_IDEM_KEY_MAX) key[n++] = (char)c;
      else too_long = 1;
    }
    if (!closed || j != end) return RESIL_EPARSE;
  } else {
    for (size_t j = i; j < end; j++) {
      unsigned char c = (unsigned char)value[j];
      if (c < 0x21 || c > 0x7E) return RESIL_EPARSE;
      if (n < RESIL_IDEM_KEY_MAX) key[n++] = (char)c;
      else too_long = 1;
    }
  }
  if (too_long) return RESIL_ERANGE;
  if (n == 0) return RESIL_EPARSE;
  memcpy(out, key, n);
  out[n] = '\0';
  if (out_len) *out_len = n;
  return RESIL_OK;
}
