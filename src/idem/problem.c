/* RFC 9457 problem details (application/problem+json) and JSON string
 * escaping (RFC 8259). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/internal.h"
#include "idem/internal.h"

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when it is not one
 * (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF). */
static size_t utf8_seq(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (n < len) return 0;
  if (s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < len; i++)
    if (s[i] < 0x80 || s[i] > 0xBF) return 0;
  return len;
}

static size_t put(char *buf, size_t at, const char *s, size_t n) {
  if (buf) memcpy(buf + at, s, n);
  return n;
}

size_t resil__json_escape(char *buf, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *p = (const unsigned char *)s;
  size_t out = 0, i = 0;
  while (i < n) {
    unsigned char c = p[i];
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      out += put(buf, out, e, 2);
      i++;
    } else if (c < 0x20 || c == 0x7F) {
      char e[6];
      size_t k;
      switch (c) {
        case '\b': k = 2, e[0] = '\\', e[1] = 'b'; break;
        case '\f': k = 2, e[0] = '\\', e[1] = 'f'; break;
        case '\n': k = 2, e[0] = '\\', e[1] = 'n'; break;
        case '\r': k = 2, e[0] = '\\', e[1] = 'r'; break;
        case '\t': k = 2, e[0] = '\\', e[1] = 't'; break;
        default:
          k = 6;
          memcpy(e, "\\u00", 4);
          e[4] = hex[c >> 4];
          e[5] = hex[c & 15];
      }
      out += put(buf, out, e, k);
      i++;
    } else {
      size_t k = utf8_seq(p + i, n - i);
      if (k == 0) {
        out += put(buf, out, "\\ufffd", 6); /* one invalid byte */
        i++;
      } else {
        out += put(buf, out, s + i, k);
        i += k;
      }
    }
  }
  return out;
}

char *resil__idem_problem(const resil_allocator *a, const char *type, const char *title,
                          int status, size_t *len, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int dn = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (dn < 0) return NULL;
  char *detail = resil__alloc(a, (size_t)dn + 1);
  if (detail == NULL) return NULL;
  vsnprintf(detail, (size_t)dn + 1, fmt, ap);

  char num[16];
  snprintf(num, sizeof num, "%d", status);
  struct {
    const char *s;
    int escape;
  } parts[] = {{"{\"type\":\"", 0}, {type, 1},   {"\",\"title\":\"", 0},
               {title, 1},          {"\",\"status\":", 0}, {num, 0},
               {",\"detail\":\"", 0}, {detail, 1}, {"\"}", 0}};
  size_t total = 0;
  for (size_t i = 0; i < RESIL_ARRAY_LEN(parts); i++) {
    size_t n = strlen(parts[i].s);
    total += parts[i].escape ? resil__json_escape(NULL, parts[i].s, n) : n;
  }
  char *body = resil__alloc(a, total + 1);
  if (body != NULL) {
    size_t at = 0;
    for (size_t i = 0; i < RESIL_ARRAY_LEN(parts); i++) {
      size_t n = strlen(parts[i].s);
      at += parts[i].escape ? resil__json_escape(body + at, parts[i].s, n)
                            : put(body, at, parts[i].s, n);
    }
    body[at] = '\0';
    if (len) *len = at;
  }
  resil__free(a, detail);
  return body;
}
