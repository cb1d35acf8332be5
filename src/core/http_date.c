/* HTTP dates (RFC 9110 section 5.6.7), Retry-After and rate-limit reset
 * headers.
 *
 * Everything here is ASCII-only and does its own calendar arithmetic on the
 * proleptic Gregorian calendar, so neither the locale nor TZ nor any libc
 * time function can change a result. No function keeps state between calls.
 */
#include <stdint.h>
#include <string.h>

#include "core/internal.h"
#include "resil/http_date.h"

#define SECS_PER_DAY INT64_C(86400)
#define NS_PER_SEC INT64_C(1000000000)

static const char k_wday_short[7][4] = {"Sun", "Mon", "Tue", "Wed",
                                        "Thu", "Fri", "Sat"};
static const char *const k_wday_long[7] = {
    "Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
    "Saturday"};
static const char k_month[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* ------------------------------------------------------------------------ */
/* Integer and calendar arithmetic. */

/* Division and remainder rounding toward negative infinity (b > 0). */
static int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b) < 0) q--;
  return q;
}
static int64_t floor_mod(int64_t a, int64_t b) {
  int64_t r = a % b; /* never overflows, unlike a - floor_div(a, b) * b */
  return r < 0 ? r + b : r;
}

static int is_leap(int64_t y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m) {
  static const unsigned char k_days[12] = {31, 28, 31, 30, 31, 30,
                                           31, 31, 30, 31, 30, 31};
  return (m == 2 && is_leap(y)) ? 29 : k_days[m - 1];
}

/* Days from 1970-01-01 to y-m-d. The year is shifted to start in March so
 * the leap day is the last day of its year; the calendar then repeats every
 * 400-year era of 146097 days. */
static int64_t days_from_civil(int64_t y, int m, int d) {
  if (m <= 2) y--;
  int64_t era = floor_div(y, 400);
  int64_t yoe = y - era * 400;                /* year of era, 0..399 */
  int64_t mar = m > 2 ? m - 3 : m + 9;        /* months since March, 0..11 */
  int64_t doy = (153 * mar + 2) / 5 + d - 1;  /* day of (March) year */
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; /* day of era */
  /* 719468 = days from 0000-03-01 to 1970-01-01. */
  return era * 146097 + doe - 719468;
}

/* Inverse of days_from_civil(). */
static void civil_from_days(int64_t days, int64_t *y, int *m, int *d) {
  int64_t z = days + 719468;
  int64_t era = floor_div(z, 146097);
  int64_t doe = z - era * 146097; /* 0..146096 */
  /* Years of era: remove the leap days accumulated so far, then divide. */
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (yoe * 365 + yoe / 4 - yoe / 100);
  int64_t mar = (5 * doy + 2) / 153;
  *d = (int)(doy - (153 * mar + 2) / 5 + 1);
  *m = (int)(mar < 10 ? mar + 3 : mar - 9);
  *y = yoe + era * 400 + (*m <= 2);
}

/* Seconds -> nanoseconds, saturating (s >= 0). */
static resil_ns secs_to_ns(int64_t s) {
  if (s > RESIL_NS_MAX / NS_PER_SEC) return RESIL_NS_MAX;
  return s * NS_PER_SEC;
}

/* Delay from now_ns (ns since the epoch) until unix second `when`; 0 when it
 * is not in the future, RESIL_NS_MAX when too far away to represent. */
static resil_ns delay_until(int64_t when, resil_ns now_ns) {
  int64_t now_s = floor_div(now_ns, NS_PER_SEC);
  int64_t frac = floor_mod(now_ns, NS_PER_SEC); /* 0..999999999 */
  if (when <= now_s) return 0;
  /* when > now_s, so the true difference is positive and below 2^64. */
  uint64_t diff = (uint64_t)when - (uint64_t)now_s;
  if (diff > (uint64_t)(RESIL_NS_MAX / NS_PER_SEC)) return RESIL_NS_MAX;
  return (resil_ns)diff * NS_PER_SEC - frac;
}

/* ------------------------------------------------------------------------ */
/* Scanning. */

typedef struct cursor {
  const char *p;
  const char *end;
} cursor;

static int is_ws(char c) { return c == ' ' || c == '\t'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Strip SP/HTAB from both ends of [*s, *s + *len). */
static void trim_ows(const char **s, size_t *len) {
  const char *p = *s, *e = *s + *len;
  while (p < e && is_ws(*p)) p++;
  while (e > p && is_ws(e[-1])) e--;
  *s = p;
  *len = (size_t)(e - p);
}

static int take_char(cursor *c, char ch) {
  if (c->p >= c->end || *c->p != ch) return 0;
  c->p++;
  return 1;
}

/* Exactly n digits (n <= 9). */
static int take_digits(cursor *c, int n, int *out) {
  int v = 0;
  if (c->end - c->p < n) return 0;
  for (int i = 0; i < n; i++) {
    if (!is_digit(c->p[i])) return 0;
    v = v * 10 + (c->p[i] - '0');
  }
  c->p += n;
  *out = v;
  return 1;
}

/* A case-insensitive word of exactly strlen(w) bytes. */
static int take_word(cursor *c, const char *w) {
  size_t n = strlen(w);
  if ((size_t)(c->end - c->p) < n || !resil__strncaseeq(c->p, w, n)) return 0;
  c->p += n;
  return 1;
}

static int take_month(cursor *c, int *mon) {
  for (int i = 0; i < 12; i++) {
    if (take_word(c, k_month[i])) {
      *mon = i + 1;
      return 1;
    }
  }
  return 0;
}

/* hour ":" minute ":" second, two digits each (ranges checked later). */
static int take_time(cursor *c, int *h, int *mi, int *s) {
  return take_digits(c, 2, h) && take_char(c, ':') && take_digits(c, 2, mi) &&
         take_char(c, ':') && take_digits(c, 2, s);
}

/* "GMT"; "UTC" is accepted too (both case-insensitive). */
static int take_zone(cursor *c) {
  return take_word(c, "GMT") || take_word(c, "UTC");
}

/* ------------------------------------------------------------------------ */
/* HTTP-date. */

typedef struct fields {
  int64_t year;
  int mon, day, hour, min, sec;
} fields;

/* Resolve an RFC 850 two-digit year against now (RFC 9110 5.6.7): the latest
 * year ending in yy whose timestamp is not more than 50 years after now, i.e.
 * not after now's calendar date and time with 50 added to the year. */
static int64_t resolve_two_digit_year(int yy, const fields *f,
                                      int64_t now_unix) {
  int64_t now_days = floor_div(now_unix, SECS_PER_DAY);
  int64_t now_sod = floor_mod(now_unix, SECS_PER_DAY);
  int64_t ny;
  int nm, nd;
  civil_from_days(now_days, &ny, &nm, &nd);

  int64_t limit = ny + 50;
  int64_t year = limit - floor_mod(limit - yy, 100);
  if (year == limit) {
    int64_t sod = (int64_t)f->hour * 3600 + f->min * 60 + f->sec;
    if (f->mon > nm || (f->mon == nm && f->day > nd) ||
        (f->mon == nm && f->day == nd && sod > now_sod))
      year -= 100;
  }
  return year;
}

static resil_err fields_to_unix(const fields *f, int64_t *out) {
  if (f->day < 1 || f->day > days_in_month(f->year, f->mon) || f->hour > 23 ||
      f->min > 59 || f->sec > 60)
    return RESIL_EPARSE;
  int64_t days = days_from_civil(f->year, f->mon, f->day);
  /* Keep days * 86400 + (up to 86400) inside int64_t. Only reachable with an
   * RFC 850 date and an absurd now_unix. */
  if (days > INT64_MAX / SECS_PER_DAY - 1 || days < INT64_MIN / SECS_PER_DAY)
    return RESIL_EPARSE;
  *out = days * SECS_PER_DAY + (int64_t)f->hour * 3600 + f->min * 60 + f->sec;
  return RESIL_OK;
}

resil_err resil_http_date_parse(const char *s, size_t len, int64_t now_unix,
                                int64_t *out_unix) {
  if (out_unix == NULL || (s == NULL && len > 0)) return RESIL_EINVAL;
  if (s == NULL) return RESIL_EPARSE;
  trim_ows(&s, &len);

  cursor c = {s, s + len};
  size_t name_len = 0;
  while (name_len < len && is_alpha(s[name_len])) name_len++;
  if (name_len >= len) return RESIL_EPARSE;

  int wday = -1, long_name = 0;
  for (int i = 0; i < 7 && wday < 0; i++) {
    if (name_len == 3 && resil__strncaseeq(s, k_wday_short[i], 3)) {
      wday = i;
    } else if (name_len == strlen(k_wday_long[i]) &&
               resil__strncaseeq(s, k_wday_long[i], name_len)) {
      wday = i;
      long_name = 1;
    }
  }
  if (wday < 0) return RESIL_EPARSE;
  c.p += name_len;

  fields f;
  int year;
  if (!long_name && take_char(&c, ',')) {
    /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
    if (!(take_char(&c, ' ') && take_digits(&c, 2, &f.day) &&
          take_char(&c, ' ') && take_month(&c, &f.mon) && take_char(&c, ' ') &&
          take_digits(&c, 4, &year) && take_char(&c, ' ') &&
          take_time(&c, &f.hour, &f.min, &f.sec) && take_char(&c, ' ') &&
          take_zone(&c)))
      return RESIL_EPARSE;
    f.year = year;
  } else if (long_name && take_char(&c, ',')) {
    /* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" */
    if (!(take_char(&c, ' ') && take_digits(&c, 2, &f.day) &&
          take_char(&c, '-') && take_month(&c, &f.mon) && take_char(&c, '-') &&
          take_digits(&c, 2, &year) && take_char(&c, ' ') &&
          take_time(&c, &f.hour, &f.min, &f.sec) && take_char(&c, ' ') &&
          take_zone(&c)))
      return RESIL_EPARSE;
    f.year = resolve_two_digit_year(year, &f, now_unix);
  } else if (!long_name && take_char(&c, ' ')) {
    /* asctime: "Sun Nov  6 08:49:37 1994" (day is "SP D" or "DD") */
    if (!(take_month(&c, &f.mon) && take_char(&c, ' ')))
      return RESIL_EPARSE;
    if (take_char(&c, ' ')) {
      if (!take_digits(&c, 1, &f.day)) return RESIL_EPARSE;
    } else if (!take_digits(&c, 2, &f.day)) {
      return RESIL_EPARSE;
    }
    if (!(take_char(&c, ' ') && take_time(&c, &f.hour, &f.min, &f.sec) &&
          take_char(&c, ' ') && take_digits(&c, 4, &year)))
      return RESIL_EPARSE;
    f.year = year;
  } else {
    return RESIL_EPARSE;
  }
  if (c.p != c.end) return RESIL_EPARSE;
  if (f.year < 1) return RESIL_EPARSE; /* 4-digit year 0000 */
  return fields_to_unix(&f, out_unix);
}

static char *put2(char *p, int v) {
  p[0] = (char)('0' + v / 10);
  p[1] = (char)('0' + v % 10);
  return p + 2;
}

size_t resil_http_date_format(int64_t unix_seconds, char *buf, size_t len) {
  if (buf == NULL || len == 0) return 0;
  buf[0] = '\0';
  if (len < RESIL_HTTP_DATE_SIZE) return 0;

  int64_t days = floor_div(unix_seconds, SECS_PER_DAY);
  int64_t sod = floor_mod(unix_seconds, SECS_PER_DAY); /* 0..86399 */
  int64_t y;
  int m, d;
  civil_from_days(days, &y, &m, &d);
  if (y < 1 || y > 9999) return 0;
  int wday = (int)floor_mod(days + 4, 7); /* 1970-01-01 was a Thursday */

  char *p = buf;
  memcpy(p, k_wday_short[wday], 3);
  p += 3;
  *p++ = ',';
  *p++ = ' ';
  p = put2(p, d);
  *p++ = ' ';
  memcpy(p, k_month[m - 1], 3);
  p += 3;
  *p++ = ' ';
  p = put2(p, (int)(y / 100));
  p = put2(p, (int)(y % 100));
  *p++ = ' ';
  p = put2(p, (int)(sod / 3600));
  *p++ = ':';
  p = put2(p, (int)(sod / 60 % 60));
  *p++ = ':';
  p = put2(p, (int)(sod % 60));
  memcpy(p, " GMT", 5);
  p += 4;
  return (size_t)(p - buf);
}

/* ------------------------------------------------------------------------ */
/* Header values. */

/* 1*DIGIT spanning all of [s, s+len); saturates at INT64_MAX. */
static int parse_uint(const char *s, size_t len, int64_t *out) {
  int64_t v = 0;
  if (len == 0) return 0;
  for (size_t i = 0; i < len; i++) {
    if (!is_digit(s[i])) return 0;
    int dgt = s[i] - '0';
    v = (v > (INT64_MAX - dgt) / 10) ? INT64_MAX : v * 10 + dgt;
  }
  *out = v;
  return 1;
}

static int wall_now(const resil_wallclock *wc, resil_ns *now) {
  resil_wallclock sys;
  if (wc == NULL) {
    sys = resil_wallclock_system();
    wc = &sys;
  }
  if (wc->now == NULL) return 0;
  *now = wc->now(wc->ud);
  return 1;
}

int resil_retry_after_parse(const char *value, size_t len,
                            const resil_wallclock *wc, resil_ns *delay) {
  if (delay == NULL || value == NULL) return 0;
  trim_ows(&value, &len);
  if (len == 0) return 0;

  int64_t secs;
  if (parse_uint(value, len, &secs)) {
    *delay = secs_to_ns(secs);
    return 1;
  }
  /* Only letters can start an HTTP-date; skip reading the clock otherwise. */
  if (!is_alpha(value[0])) return 0;
  resil_ns now;
  if (!wall_now(wc, &now)) return 0;
  int64_t when;
  if (resil_http_date_parse(value, len, floor_div(now, NS_PER_SEC), &when) !=
      RESIL_OK)
    return 0;
  *delay = delay_until(when, now);
  return 1;
}

/* ---- RateLimit structured field (RFC 8941 List) ------------------------- */

/* sf-string: DQUOTE *( unescaped / "\" ( DQUOTE / "\" ) ) DQUOTE */
static int sf_skip_string(cursor *c) {
  if (!take_char(c, '"')) return 0;
  while (c->p < c->end) {
    char ch = *c->p++;
    if (ch == '"') return 1;
    if (ch == '\\') {
      if (c->p >= c->end || (*c->p != '"' && *c->p != '\\')) return 0;
      c->p++;
    } else if (ch < 0x20 || ch > 0x7e) {
      return 0;
    }
  }
  return 0; /* unterminated */
}

/* Any other bare item (token, integer, decimal, boolean, byte sequence) is
 * skipped loosely: a non-empty run of visible characters up to a delimiter.
 * Only t's value is interpreted, strictly. */
static int sf_skip_bare_item(cursor *c, const char **start, size_t *n) {
  *start = c->p;
  if (c->p < c->end && *c->p == '"') {
    if (!sf_skip_string(c)) return 0;
  } else {
    while (c->p < c->end && *c->p > 0x20 && *c->p < 0x7f && *c->p != ';' &&
           *c->p != ',' && *c->p != '"' && *c->p != '(' && *c->p != ')')
      c->p++;
  }
  *n = (size_t)(c->p - *start);
  return *n > 0;
}

static int sf_is_key_char(char ch) {
  return (ch >= 'a' && ch <= 'z') || is_digit(ch) || ch == '_' || ch == '-' ||
         ch == '.' || ch == '*';
}

/* The t= parameter of the RateLimit field. With several list members (one
 * per quota policy) the delay is the largest t among members whose r=0 (all
 * exhausted quotas must reset); if none is exhausted, the first member's t. */
static int ratelimit_field(const char *s, size_t len, resil_ns *delay) {
  trim_ows(&s, &len);
  cursor c = {s, s + len};
  int have_first = 0, have_exhausted = 0;
  int64_t first_t = 0, exhausted_t = 0;

  if (len == 0) return 0;
  for (;;) {
    const char *item;
    size_t item_len;
    if (!sf_skip_bare_item(&c, &item, &item_len)) return 0;

    int have_t = 0, r_zero = 0;
    int64_t t = 0;
    while (take_char(&c, ';')) {
      while (take_char(&c, ' ')) {
      }
      const char *key = c.p;
      if (c.p >= c.end || !((*c.p >= 'a' && *c.p <= 'z') || *c.p == '*'))
        return 0;
      while (c.p < c.end && sf_is_key_char(*c.p)) c.p++;
      size_t key_len = (size_t)(c.p - key);
      const char *val = NULL;
      size_t val_len = 0;
      if (take_char(&c, '=') && !sf_skip_bare_item(&c, &val, &val_len))
        return 0;
      if (key_len == 1 && key[0] == 't') {
        /* Last one wins, as for any duplicate SF parameter. */
        if (val == NULL || !parse_uint(val, val_len, &t)) return 0;
        have_t = 1;
      } else if (key_len == 1 && key[0] == 'r') {
        int64_t r = -1;
        r_zero = val != NULL && parse_uint(val, val_len, &r) && r == 0;
      }
    }
    if (have_t && !have_first) {
      have_first = 1;
      first_t = t;
    }
    if (have_t && r_zero && (!have_exhausted || t > exhausted_t)) {
      have_exhausted = 1;
      exhausted_t = t;
    }

    while (c.p < c.end && is_ws(*c.p)) c.p++;
    if (c.p == c.end) break;
    if (!take_char(&c, ',')) return 0;
    while (c.p < c.end && is_ws(*c.p)) c.p++;
    if (c.p == c.end) return 0; /* trailing comma */
  }
  if (!have_first) return 0;
  *delay = secs_to_ns(have_exhausted ? exhausted_t : first_t);
  return 1;
}

static int name_is(const char *name, const char *want) {
  return resil__strcaseeq(name, want);
}

int resil_ratelimit_reset_parse(const char *name, const char *value,
                                size_t len, const resil_wallclock *wc,
                                resil_ns *delay) {
  if (name == NULL || value == NULL || delay == NULL) return 0;

  if (name_is(name, "Retry-After"))
    return resil_retry_after_parse(value, len, wc, delay);
  if (name_is(name, "RateLimit")) return ratelimit_field(value, len, delay);

  int x_style = name_is(name, "X-RateLimit-Reset");
  if (!x_style && !name_is(name, "RateLimit-Reset")) return 0;

  int64_t v;
  trim_ows(&value, &len);
  if (!parse_uint(value, len, &v)) return 0;
  if (x_style && v >= INT64_C(1000000000)) {
    resil_ns now;
    if (!wall_now(wc, &now)) return 0;
    *delay = delay_until(v, now);
  } else {
    *delay = secs_to_ns(v);
  }
  return 1;
}
