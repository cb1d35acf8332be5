/* A growable text buffer and JSON string escaping (RFC 8259). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/internal.h"

void resil__fs_buf_init(resil__fs_buf *b) { memset(b, 0, sizeof *b); }

void resil__fs_buf_free(resil__fs_buf *b) {
  free(b->data);
  memset(b, 0, sizeof *b);
}

/* Make room for n more bytes plus a NUL. */
static int reserve(resil__fs_buf *b, size_t n) {
  if (b->failed) return -1;
  if (n < b->cap - b->len) return 0; /* cap - len > n: room for the NUL too */
  if (n > SIZE_MAX / 2 - b->len) goto fail;
  size_t cap = b->cap ? b->cap : 256;
  while (cap - b->len <= n) cap *= 2;
  char *p = realloc(b->data, cap);
  if (p == NULL) goto fail;
  b->data = p;
  b->cap = cap;
  return 0;
fail:
  b->failed = 1;
  return -1;
}

void resil__fs_buf_add(resil__fs_buf *b, const char *s, size_t n) {
  if (reserve(b, n) != 0) return;
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
}

void resil__fs_buf_puts(resil__fs_buf *b, const char *s) { resil__fs_buf_add(b, s, strlen(s)); }

void resil__fs_buf_printf(resil__fs_buf *b, const char *fmt, ...) {
  char small[128];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0) {
    b->failed = 1;
    return;
  }
  if ((size_t)n < sizeof small) {
    resil__fs_buf_add(b, small, (size_t)n);
    return;
  }
  if (reserve(b, (size_t)n) != 0) return;
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 if the
 * bytes there are not one: no overlong forms, no surrogates, nothing above
 * U+10FFFF (RFC 3629, section 4). */
static size_t utf8_seq(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  size_t len;
  unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) len = 2;
  else if (c == 0xE0) len = 3, lo = 0xA0;
  else if (c == 0xED) len = 3, hi = 0x9F;
  else if (c >= 0xE1 && c <= 0xEF) len = 3;
  else if (c == 0xF0) len = 4, lo = 0x90;
  else if (c == 0xF4) len = 4, hi = 0x8F;
  else if (c >= 0xF1 && c <= 0xF3) len = 4;
  else return 0;
  if (n < len) return 0;
  if (s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < len; i++)
    if (s[i] < 0x80 || s[i] > 0xBF) return 0;
  return len;
}

void resil__fs_json_str(resil__fs_buf *b, const char *str, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *s = (const unsigned char *)str;
  resil__fs_buf_add(b, "\"", 1);
  size_t run = 0; /* bytes at s[i - run .. i) to copy as they are */
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    const char *esc = NULL;
    char u[6];
    size_t seq = 1;
    if (c == '"') esc = "\\\"";
    else if (c == '\\') esc = "\\\\";
    else if (c == '\n') esc = "\\n";
    else if (c == '\r') esc = "\\r";
    else if (c == '\t') esc = "\\t";
    else if (c == '\b') esc = "\\b";
    else if (c == '\f') esc = "\\f";
    else if (c < 0x20 || c == 0x7F) {
      u[0] = '\\', u[1] = 'u', u[2] = '0', u[3] = '0', u[4] = hex[c >> 4], u[5] = hex[c & 15];
    } else if (c >= 0x80) {
      seq = utf8_seq(s + i, n - i);
      if (seq == 0) esc = "\xEF\xBF\xBD"; /* U+FFFD for one bad byte */
    }
    if (esc == NULL && (c >= 0x20 && c != 0x7F)) { /* plain ASCII or valid UTF-8 */
      run += seq;
      i += seq;
      continue;
    }
    resil__fs_buf_add(b, (const char *)s + i - run, run);
    run = 0;
    if (esc) resil__fs_buf_puts(b, esc);
    else resil__fs_buf_add(b, u, sizeof u);
    i++;
  }
  resil__fs_buf_add(b, (const char *)s + n - run, run);
  resil__fs_buf_add(b, "\"", 1);
}
