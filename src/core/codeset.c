/* Code sets: a fixed bitset of the integers 0..RESIL_CODESET_MAX, with a
 * small text syntax for HTTP statuses and exit codes ("500-599,!501"). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/internal.h"
#include "resil/classify.h"

#define CODESET_WORDS RESIL_ARRAY_LEN(((resil_codeset *)0)->bits)

_Static_assert(sizeof(((resil_codeset *)0)->bits) * 8 == RESIL_CODESET_MAX + 1,
               "resil_codeset must cover exactly 0..RESIL_CODESET_MAX");

static void set_bit(resil_codeset *s, int c) {
  s->bits[(unsigned)c >> 6] |= (uint64_t)1 << ((unsigned)c & 63u);
}

static void clear_bit(resil_codeset *s, int c) {
  s->bits[(unsigned)c >> 6] &= ~((uint64_t)1 << ((unsigned)c & 63u));
}

/* Clamp [lo, hi] to [0, MAX]; 0 when nothing is left. */
static int clamp_range(int *lo, int *hi) {
  if (*lo < 0) *lo = 0;
  if (*hi > RESIL_CODESET_MAX) *hi = RESIL_CODESET_MAX;
  return *lo <= *hi;
}

void resil_codeset_clear(resil_codeset *s) {
  if (s) memset(s->bits, 0, sizeof s->bits);
}

void resil_codeset_add(resil_codeset *s, int lo, int hi) {
  if (s == NULL || !clamp_range(&lo, &hi)) return;
  for (int c = lo; c <= hi; c++) set_bit(s, c);
}

void resil_codeset_remove(resil_codeset *s, int lo, int hi) {
  if (s == NULL || !clamp_range(&lo, &hi)) return;
  for (int c = lo; c <= hi; c++) clear_bit(s, c);
}

int resil_codeset_has(const resil_codeset *s, int code) {
  if (s == NULL || code < 0 || code > RESIL_CODESET_MAX) return 0;
  return (int)((s->bits[(unsigned)code >> 6] >> ((unsigned)code & 63u)) & 1u);
}

int resil_codeset_empty(const resil_codeset *s) {
  if (s == NULL) return 1;
  for (size_t i = 0; i < CODESET_WORDS; i++)
    if (s->bits[i]) return 0;
  return 1;
}

/* ---- parsing ------------------------------------------------------------ */

static int is_blank(char c) { return c == ' ' || c == '\t'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* One or more decimal digits. The value saturates at RESIL_CODESET_MAX + 1,
 * so any length of digits is read without overflow. Returns 0 (and leaves *p
 * alone) when there is no digit. */
static int parse_num(const char **p, int *out) {
  const char *q = *p;
  int v = 0;
  if (!is_digit(*q)) return 0;
  for (; is_digit(*q); q++) {
    v = v * 10 + (*q - '0'); /* v <= 1024 here, so no overflow */
    if (v > RESIL_CODESET_MAX) v = RESIL_CODESET_MAX + 1;
  }
  *p = q;
  *out = v;
  return 1;
}

/* Items are applied left to right and the first bad item decides the error:
 * within an item the syntax is checked first (EPARSE), then the bounds
 * (ERANGE), then the order of the bounds (A > B: EPARSE). */
resil_err resil_codeset_parse(resil_codeset *s, const char *spec) {
  resil_codeset tmp;
  const char *p = spec;

  if (s == NULL || spec == NULL) return RESIL_EINVAL;
  memset(&tmp, 0, sizeof tmp);

  for (;;) {
    int neg = 0, lo, hi;

    while (is_blank(*p)) p++;
    if (*p == '!') {
      neg = 1;
      p++;
    }
    if (!parse_num(&p, &lo)) return RESIL_EPARSE;
    hi = lo;
    if (*p == '-') {
      p++;
      if (!parse_num(&p, &hi)) return RESIL_EPARSE;
    }
    while (is_blank(*p)) p++;
    if (*p != ',' && *p != '\0') return RESIL_EPARSE;

    if (lo > RESIL_CODESET_MAX || hi > RESIL_CODESET_MAX) return RESIL_ERANGE;
    if (lo > hi) return RESIL_EPARSE;
    if (neg)
      resil_codeset_remove(&tmp, lo, hi);
    else
      resil_codeset_add(&tmp, lo, hi);

    if (*p == '\0') break;
    p++; /* ',': another item must follow */
  }

  *s = tmp;
  return RESIL_OK;
}

/* ---- formatting --------------------------------------------------------- */

typedef struct out_buf {
  char *buf;
  size_t len; /* capacity including the NUL */
  size_t pos; /* characters produced so far (may exceed len) */
} out_buf;

static void put_char(out_buf *o, char c) {
  if (o->pos + 1 < o->len) o->buf[o->pos] = c;
  o->pos++;
}

static void put_uint(out_buf *o, int v) {
  char tmp[8];
  int n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v > 0);
  while (n > 0) put_char(o, tmp[--n]);
}

size_t resil_codeset_format(const resil_codeset *s, char *buf, size_t len) {
  out_buf o;
  int first = 1;

  o.buf = buf;
  o.len = buf ? len : 0;
  o.pos = 0;

  for (int c = 0; s != NULL && c <= RESIL_CODESET_MAX; c++) {
    int end;
    if (!resil_codeset_has(s, c)) continue;
    end = c;
    while (end < RESIL_CODESET_MAX && resil_codeset_has(s, end + 1)) end++;

    if (!first) put_char(&o, ',');
    first = 0;
    put_uint(&o, c);
    if (end - c >= 2) { /* a run of three or more */
      put_char(&o, '-');
      put_uint(&o, end);
    } else if (end == c + 1) { /* a pair */
      put_char(&o, ',');
      put_uint(&o, end);
    }
    c = end;
  }

  if (o.len > 0) o.buf[o.pos < o.len ? o.pos : o.len - 1] = '\0';
  return o.pos;
}
