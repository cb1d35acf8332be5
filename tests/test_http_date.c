/* Tests for resil/http_date.h: HTTP-date parsing and formatting, Retry-After
 * and rate-limit reset headers. Deterministic: every test that needs "now"
 * uses a fixed fake wall clock, except one smoke test of the system clock. */
#define _POSIX_C_SOURCE 200809L /* gmtime_r, used as an independent oracle */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "resil/http_date.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define SENTINEL ((resil_ns)-777)

/* 2024-06-15T12:00:00Z */
#define NOW_2024 INT64_C(1718452800)
/* Sun, 06 Nov 1994 08:49:37 GMT, the RFC's example. */
#define RFC_EXAMPLE INT64_C(784111777)

/* ---- helpers ------------------------------------------------------------ */

typedef struct fixed_wall {
  resil_ns now;
} fixed_wall;

static resil_ns fixed_wall_now(void *ud) {
  return ((const fixed_wall *)ud)->now;
}

static resil_wallclock wall_at(fixed_wall *fw, resil_ns now) {
  resil_wallclock wc = {fixed_wall_now, fw};
  fw->now = now;
  return wc;
}

/* A deliberately naive oracle for y-m-d h:m:s -> unix seconds: count days
 * year by year. Independent of the library's era arithmetic. */
static int naive_leap(int64_t y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}
static int64_t naive_unix(int64_t y, int mon, int d, int h, int mi, int s) {
  static const int mdays[12] = {31, 28, 31, 30, 31, 30,
                                31, 31, 30, 31, 30, 31};
  int64_t days = 0;
  for (int64_t yy = 1970; yy < y; yy++) days += 365 + naive_leap(yy);
  for (int64_t yy = y; yy < 1970; yy++) days -= 365 + naive_leap(yy);
  for (int m = 1; m < mon; m++) days += mdays[m - 1] + (m == 2 && naive_leap(y));
  days += d - 1;
  return days * 86400 + h * 3600 + mi * 60 + s;
}

static int64_t parse_ok(const char *s, int64_t now) {
  int64_t out = -12345;
  resil_err rc = resil_http_date_parse(s, strlen(s), now, &out);
  if (rc != RESIL_OK) fail_msg("parse(\"%s\") failed: %d", s, (int)rc);
  return out;
}

/* ---- HTTP-date parsing -------------------------------------------------- */

typedef struct date_case {
  const char *in;
  int64_t want;
} date_case;

static void test_parse_valid(void **state) {
  (void)state;
  const int64_t leap2000 = naive_unix(2000, 2, 29, 0, 0, 0);
  const int64_t leap2024 = naive_unix(2024, 2, 29, 12, 0, 0);
  const date_case cases[] = {
      /* The three forms of RFC 9110's example. */
      {"Sun, 06 Nov 1994 08:49:37 GMT", RFC_EXAMPLE},
      {"Sunday, 06-Nov-94 08:49:37 GMT", RFC_EXAMPLE},
      {"Sun Nov  6 08:49:37 1994", RFC_EXAMPLE},
      {"Sun Nov 06 08:49:37 1994", RFC_EXAMPLE},
      /* Case-insensitive names and zone. */
      {"sun, 06 nov 1994 08:49:37 gmt", RFC_EXAMPLE},
      {"SUN, 06 NOV 1994 08:49:37 GMT", RFC_EXAMPLE},
      {"sUnDaY, 06-nOv-94 08:49:37 GmT", RFC_EXAMPLE},
      {"SUN NOV  6 08:49:37 1994", RFC_EXAMPLE},
      /* UTC is accepted in place of GMT. */
      {"Sun, 06 Nov 1994 08:49:37 UTC", RFC_EXAMPLE},
      {"Sunday, 06-Nov-94 08:49:37 utc", RFC_EXAMPLE},
      /* Surrounding SP / HTAB. */
      {"  Sun, 06 Nov 1994 08:49:37 GMT", RFC_EXAMPLE},
      {"Sun, 06 Nov 1994 08:49:37 GMT \t ", RFC_EXAMPLE},
      {"\tSunday, 06-Nov-94 08:49:37 GMT\t", RFC_EXAMPLE},
      {" Sun Nov  6 08:49:37 1994 ", RFC_EXAMPLE},
      /* The weekday is not checked against the date. */
      {"Mon, 06 Nov 1994 08:49:37 GMT", RFC_EXAMPLE},
      {"Wednesday, 06-Nov-94 08:49:37 GMT", RFC_EXAMPLE},
      /* Every month name. */
      {"Thu, 01 Jan 1970 00:00:00 GMT", 0},
      {"Sun, 01 Feb 1970 00:00:00 GMT", naive_unix(1970, 2, 1, 0, 0, 0)},
      {"Sun, 01 Mar 1970 00:00:00 GMT", naive_unix(1970, 3, 1, 0, 0, 0)},
      {"Wed, 01 Apr 1970 00:00:00 GMT", naive_unix(1970, 4, 1, 0, 0, 0)},
      {"Fri, 01 May 1970 00:00:00 GMT", naive_unix(1970, 5, 1, 0, 0, 0)},
      {"Mon, 01 Jun 1970 00:00:00 GMT", naive_unix(1970, 6, 1, 0, 0, 0)},
      {"Wed, 01 Jul 1970 00:00:00 GMT", naive_unix(1970, 7, 1, 0, 0, 0)},
      {"Sat, 01 Aug 1970 00:00:00 GMT", naive_unix(1970, 8, 1, 0, 0, 0)},
      {"Tue, 01 Sep 1970 00:00:00 GMT", naive_unix(1970, 9, 1, 0, 0, 0)},
      {"Thu, 01 Oct 1970 00:00:00 GMT", naive_unix(1970, 10, 1, 0, 0, 0)},
      {"Sun, 01 Nov 1970 00:00:00 GMT", naive_unix(1970, 11, 1, 0, 0, 0)},
      {"Tue, 01 Dec 1970 00:00:00 GMT", naive_unix(1970, 12, 1, 0, 0, 0)},
      /* Month lengths: the last day of each 30/31-day month. */
      {"Sat, 31 Jan 2022 23:59:59 GMT", naive_unix(2022, 1, 31, 23, 59, 59)},
      {"Sat, 30 Apr 2022 00:00:00 GMT", naive_unix(2022, 4, 30, 0, 0, 0)},
      {"Tue, 31 May 2022 00:00:00 GMT", naive_unix(2022, 5, 31, 0, 0, 0)},
      {"Thu, 30 Jun 2022 00:00:00 GMT", naive_unix(2022, 6, 30, 0, 0, 0)},
      {"Fri, 30 Sep 2022 00:00:00 GMT", naive_unix(2022, 9, 30, 0, 0, 0)},
      {"Wed, 30 Nov 2022 00:00:00 GMT", naive_unix(2022, 11, 30, 0, 0, 0)},
      {"Sat, 31 Dec 2022 00:00:00 GMT", naive_unix(2022, 12, 31, 0, 0, 0)},
      /* Leap years: 2000 (divisible by 400) and 2024 are, 1900 is not. */
      {"Tue, 29 Feb 2000 00:00:00 GMT", leap2000},
      {"Tue, 29 Feb 2000 00:00:00 GMT", INT64_C(951782400)},
      {"Thu, 29 Feb 2024 12:00:00 GMT", leap2024},
      {"Thu, 29 Feb 2024 12:00:00 GMT", INT64_C(1709208000)},
      {"Thu Feb 29 12:00:00 2024", leap2024},
      {"Wed, 28 Feb 1900 23:59:59 GMT", INT64_C(-2203891201)},
      {"Thu, 01 Mar 1900 00:00:00 GMT", INT64_C(-2203891200)},
      /* Before 1970. */
      {"Wed, 31 Dec 1969 23:59:59 GMT", -1},
      {"Sun, 20 Jul 1969 20:17:40 GMT", INT64_C(-14182940)},
      {"Sun Jul 20 20:17:40 1969", INT64_C(-14182940)},
      /* The ends of the 4-digit range. */
      {"Mon, 01 Jan 0001 00:00:00 GMT", INT64_C(-62135596800)},
      {"Fri, 31 Dec 9999 23:59:59 GMT", INT64_C(253402300799)},
      {"Fri Dec 31 23:59:59 9999", INT64_C(253402300799)},
      /* A leap second is accepted and lands on the next minute. */
      {"Sat, 31 Dec 2016 23:59:60 GMT", naive_unix(2017, 1, 1, 0, 0, 0)},
      {"Sun, 06 Nov 1994 08:49:60 GMT", RFC_EXAMPLE + 23},
      /* Field edges: 23:59:59 and a two-digit asctime day. */
      {"Sun Nov 16 23:59:59 1994", naive_unix(1994, 11, 16, 23, 59, 59)},
      {"Sun Nov  1 00:00:00 1994", naive_unix(1994, 11, 1, 0, 0, 0)},
  };
  for (size_t i = 0; i < N_ELEMS(cases); i++) {
    int64_t got = -12345;
    resil_err rc = resil_http_date_parse(cases[i].in, strlen(cases[i].in),
                                         NOW_2024, &got);
    if (rc != RESIL_OK || got != cases[i].want)
      fail_msg("row %zu \"%s\": rc=%d got %" PRId64 " want %" PRId64, i,
               cases[i].in, (int)rc, got, cases[i].want);
  }
}

static void test_parse_invalid(void **state) {
  (void)state;
  const char *const cases[] = {
      "",
      " ",
      " \t ",
      "garbage",
      "Sun",
      "Sun,",
      "Sun, ",
      "Sun, 06 Nov 1994",
      "Sun, 06 Nov 1994 08:49:37",
      "Sun, 06 Nov 1994 08:49:37 ",
      "Sun, 06 Nov 1994 08:49:37 GM",
      "Sun, 06 Nov 1994 08:49:37 GMTX",
      "Sun, 06 Nov 1994 08:49:37 GMT x",
      "Sun, 06 Nov 1994 08:49:37 EST",
      "Sun, 06 Nov 1994 08:49:37 +0000",
      "Sun, 06 Nov 1994 08:49:37 Z",
      /* Unknown or misspelled names. */
      "Sonday, 06-Nov-94 08:49:37 GMT",
      "Snu, 06 Nov 1994 08:49:37 GMT",
      "Sun, 06 Nox 1994 08:49:37 GMT",
      "Sun, 06 November 1994 08:49:37 GMT",
      "Su, 06 Nov 1994 08:49:37 GMT",
      /* Field widths (IMF-fixdate). */
      "Sun, 6 Nov 1994 08:49:37 GMT",
      "Sun, 006 Nov 1994 08:49:37 GMT",
      "Sun, 06 Nov 94 08:49:37 GMT",
      "Sun, 06 Nov 01994 08:49:37 GMT",
      "Sun, 06 Nov 1994 8:49:37 GMT",
      "Sun, 06 Nov 1994 08:9:37 GMT",
      "Sun, 06 Nov 1994 08:49:7 GMT",
      "Sun, 06 Nov 1994 08:49 GMT",
      "Sun,  06 Nov 1994 08:49:37 GMT",
      "Sun, 06  Nov 1994 08:49:37 GMT",
      "Sun, 06 Nov 1994  08:49:37 GMT",
      "Sun, 06 Nov 1994 08:49:37  GMT",
      "Sun,06 Nov 1994 08:49:37 GMT",
      "Sun, 06\tNov 1994 08:49:37 GMT",
      "Sun, 06-Nov-1994 08:49:37 GMT",
      "Sun 06 Nov 1994 08:49:37 GMT",
      "Sun, +6 Nov 1994 08:49:37 GMT",
      "Sun, 06 Nov 1994 08:49:37.5 GMT",
      /* Forms mixed up. */
      "Sunday, 06 Nov 1994 08:49:37 GMT", /* long name in IMF-fixdate */
      "Sun, 06-Nov-94 08:49:37 GMT",      /* short name in RFC 850 */
      "Sunday, 06-Nov-1994 08:49:37 GMT", /* 4-digit year in RFC 850 */
      "Sunday, 6-Nov-94 08:49:37 GMT",
      "Sunday, 06-Nov-94 08:49:37",
      "Sunday Nov  6 08:49:37 1994", /* long name in asctime */
      "Sun, Nov  6 08:49:37 1994",
      "Sun Nov 6 08:49:37 1994",   /* asctime needs "SP D" or "DD" */
      "Sun Nov   6 08:49:37 1994",
      "Sun Nov  6 08:49:37 94",
      "Sun Nov  6 08:49:37 1994 GMT",
      "Sun 06 Nov 08:49:37 1994",
      /* Invalid calendar dates and times. */
      "Fri, 30 Feb 2024 00:00:00 GMT",
      "Thu, 29 Feb 1900 00:00:00 GMT",
      "Wed, 29 Feb 2023 00:00:00 GMT",
      "Thu, 31 Apr 2024 00:00:00 GMT",
      "Mon, 31 Jun 2024 00:00:00 GMT",
      "Mon, 31 Sep 2024 00:00:00 GMT",
      "Mon, 31 Nov 2024 00:00:00 GMT",
      "Mon, 32 Jan 2024 00:00:00 GMT",
      "Mon, 00 Jan 2024 00:00:00 GMT",
      "Mon, 01 Jan 2024 24:00:00 GMT",
      "Mon, 01 Jan 2024 23:60:00 GMT",
      "Mon, 01 Jan 2024 23:59:61 GMT",
      "Mon, 01 Jan 2024 99:99:99 GMT",
      "Sat, 01 Jan 0000 00:00:00 GMT", /* years are 0001..9999 */
      "Thu Feb 30 00:00:00 2024",
      "Thu Feb 29 00:00:00 1900",
      "Thu Feb  0 00:00:00 2024",
      "Thursday, 30-Feb-24 00:00:00 GMT",
      "Thursday, 31-Apr-24 00:00:00 GMT",
      "Thursday, 01-Apr-24 24:00:00 GMT",
      /* Other whitespace is not trimmed. */
      "\r\nSun, 06 Nov 1994 08:49:37 GMT",
      "Sun, 06 Nov 1994 08:49:37 GMT\r\n",
      "\vSun, 06 Nov 1994 08:49:37 GMT",
  };
  for (size_t i = 0; i < N_ELEMS(cases); i++) {
    int64_t got = -12345;
    resil_err rc =
        resil_http_date_parse(cases[i], strlen(cases[i]), NOW_2024, &got);
    if (rc != RESIL_EPARSE || got != -12345)
      fail_msg("row %zu \"%s\": rc=%d got %" PRId64 " (want EPARSE)", i,
               cases[i], (int)rc, got);
  }
}

static void test_parse_length_and_nul(void **state) {
  (void)state;
  int64_t got = 0;
  /* s need not be NUL-terminated: only len bytes are read. */
  const char buf[] = "Sun, 06 Nov 1994 08:49:37 GMTjunk";
  assert_int_equal(resil_http_date_parse(buf, 29, 0, &got), RESIL_OK);
  assert_int_equal(got, RFC_EXAMPLE);
  assert_int_equal(resil_http_date_parse(buf, 28, 0, &got), RESIL_EPARSE);
  assert_int_equal(resil_http_date_parse(buf, 30, 0, &got), RESIL_EPARSE);
  /* An embedded NUL is just a bad byte. */
  const char nul[] = "Sun, 06 Nov 1994 08:49:37 GMT\0";
  assert_int_equal(resil_http_date_parse(nul, sizeof nul - 1, 0, &got),
                   RESIL_EPARSE);
  const char nul2[] = "Sun, 06 N\0v 1994 08:49:37 GMT";
  assert_int_equal(resil_http_date_parse(nul2, sizeof nul2 - 1, 0, &got),
                   RESIL_EPARSE);
  /* Argument errors. */
  assert_int_equal(resil_http_date_parse(buf, 29, 0, NULL), RESIL_EINVAL);
  assert_int_equal(resil_http_date_parse(NULL, 5, 0, &got), RESIL_EINVAL);
  assert_int_equal(resil_http_date_parse(NULL, 0, 0, &got), RESIL_EPARSE);
  assert_int_equal(got, RFC_EXAMPLE);
}

/* RFC 850 two-digit years (RFC 9110 5.6.7): a year more than 50 years in the
 * future means the most recent past year with the same last two digits. */
typedef struct yy_case {
  int64_t now;
  const char *in;
  int64_t want; /* -1: EPARSE */
} yy_case;

static void test_rfc850_two_digit_year(void **state) {
  (void)state;
  const int64_t now2050 = naive_unix(2050, 1, 1, 0, 0, 0);
  const int64_t now2050mar = naive_unix(2050, 3, 1, 0, 0, 0);
  const int64_t now2070 = naive_unix(2070, 1, 1, 0, 0, 0);
  const yy_case cases[] = {
      /* now = 2024-06-15 12:00:00: the boundary is 2074-06-15 12:00:00. */
      {NOW_2024, "Friday, 15-Jun-74 12:00:00 GMT",
       naive_unix(2074, 6, 15, 12, 0, 0)},
      {NOW_2024, "Friday, 15-Jun-74 12:00:01 GMT",
       naive_unix(1974, 6, 15, 12, 0, 1)},
      {NOW_2024, "Thursday, 14-Jun-74 23:59:59 GMT",
       naive_unix(2074, 6, 14, 23, 59, 59)},
      {NOW_2024, "Saturday, 16-Jun-74 00:00:00 GMT",
       naive_unix(1974, 6, 16, 0, 0, 0)},
      {NOW_2024, "Monday, 01-Jan-74 00:00:00 GMT",
       naive_unix(2074, 1, 1, 0, 0, 0)},
      {NOW_2024, "Sunday, 31-Dec-74 00:00:00 GMT",
       naive_unix(1974, 12, 31, 0, 0, 0)},
      {NOW_2024, "Sunday, 31-Dec-73 00:00:00 GMT",
       naive_unix(2073, 12, 31, 0, 0, 0)},
      {NOW_2024, "Monday, 01-Jan-75 00:00:00 GMT",
       naive_unix(1975, 1, 1, 0, 0, 0)},
      {NOW_2024, "Saturday, 15-Jun-24 12:00:00 GMT", NOW_2024},
      {NOW_2024, "Saturday, 01-Jan-00 00:00:00 GMT",
       naive_unix(2000, 1, 1, 0, 0, 0)},
      {NOW_2024, "Friday, 31-Dec-99 23:59:59 GMT",
       naive_unix(1999, 12, 31, 23, 59, 59)},
      {NOW_2024, "Sunday, 06-Nov-94 08:49:37 GMT", RFC_EXAMPLE},
      /* Same input, different now. */
      {RFC_EXAMPLE, "Sunday, 06-Nov-94 08:49:37 GMT", RFC_EXAMPLE},
      {0, "Sunday, 06-Nov-94 08:49:37 GMT", RFC_EXAMPLE},
      {0, "Wednesday, 01-Jan-20 00:00:00 GMT", naive_unix(2020, 1, 1, 0, 0, 0)},
      {0, "Thursday, 01-Jan-21 00:00:00 GMT", naive_unix(1921, 1, 1, 0, 0, 0)},
      {now2070, "Monday, 01-Jan-20 00:00:00 GMT",
       naive_unix(2120, 1, 1, 0, 0, 0)},
      {now2070, "Tuesday, 02-Jan-20 00:00:00 GMT",
       naive_unix(2020, 1, 2, 0, 0, 0)},
      /* Feb 29 is validated against the resolved year: from 2050-01-01,
       * 29-Feb-00 is past the 2100-01-01 boundary, so 2000 (leap): valid.
       * From 2050-03-01 it is 2100, not a leap year: invalid. */
      {now2050, "Tuesday, 29-Feb-00 00:00:00 GMT",
       naive_unix(2000, 2, 29, 0, 0, 0)},
      {now2050mar, "Monday, 29-Feb-00 00:00:00 GMT", -1},
      {now2050mar, "Sunday, 28-Feb-00 00:00:00 GMT",
       naive_unix(2100, 2, 28, 0, 0, 0)},
      /* Before 1970 too. */
      {naive_unix(1930, 1, 1, 0, 0, 0), "Friday, 01-Jan-80 00:00:00 GMT",
       naive_unix(1980, 1, 1, 0, 0, 0)},
      {naive_unix(1930, 1, 1, 0, 0, 0), "Friday, 02-Jan-80 00:00:00 GMT",
       naive_unix(1880, 1, 2, 0, 0, 0)},
  };
  for (size_t i = 0; i < N_ELEMS(cases); i++) {
    int64_t got = -12345;
    resil_err rc = resil_http_date_parse(cases[i].in, strlen(cases[i].in),
                                         cases[i].now, &got);
    int ok = cases[i].want == -1 ? rc == RESIL_EPARSE
                                 : rc == RESIL_OK && got == cases[i].want;
    if (!ok)
      fail_msg("row %zu \"%s\" now=%" PRId64 ": rc=%d got %" PRId64
               " want %" PRId64,
               i, cases[i].in, cases[i].now, (int)rc, got, cases[i].want);
  }
}

static void test_rfc850_extreme_now(void **state) {
  (void)state;
  /* No overflow or UB whatever now_unix is; the result is either a value
   * or EPARSE. */
  const int64_t nows[] = {INT64_MIN, INT64_MIN + 1, -(INT64_C(1) << 40), -1, 0,
                          INT64_C(1) << 40, INT64_MAX - 1, INT64_MAX};
  const char *in = "Sunday, 06-Nov-94 08:49:37 GMT";
  for (size_t i = 0; i < N_ELEMS(nows); i++) {
    int64_t got;
    resil_err rc = resil_http_date_parse(in, strlen(in), nows[i], &got);
    assert_true(rc == RESIL_OK || rc == RESIL_EPARSE);
  }
}

/* ---- formatting ---------------------------------------------------------- */

typedef struct fmt_case {
  int64_t unix_s;
  const char *want; /* NULL: out of range */
} fmt_case;

static void test_format(void **state) {
  (void)state;
  const fmt_case cases[] = {
      {0, "Thu, 01 Jan 1970 00:00:00 GMT"},
      {RFC_EXAMPLE, "Sun, 06 Nov 1994 08:49:37 GMT"},
      {-1, "Wed, 31 Dec 1969 23:59:59 GMT"},
      {-86400, "Wed, 31 Dec 1969 00:00:00 GMT"},
      {-86401, "Tue, 30 Dec 1969 23:59:59 GMT"},
      {INT64_C(-14182940), "Sun, 20 Jul 1969 20:17:40 GMT"},
      {INT64_C(-2203891201), "Wed, 28 Feb 1900 23:59:59 GMT"},
      {INT64_C(951782400), "Tue, 29 Feb 2000 00:00:00 GMT"},
      {INT64_C(1709208000), "Thu, 29 Feb 2024 12:00:00 GMT"},
      {INT64_C(-62135596800), "Mon, 01 Jan 0001 00:00:00 GMT"},
      {INT64_C(253402300799), "Fri, 31 Dec 9999 23:59:59 GMT"},
      {INT64_C(-62135596801), NULL},
      {INT64_C(253402300800), NULL},
      {INT64_MIN, NULL},
      {INT64_MIN + 1, NULL},
      {INT64_MAX, NULL},
  };
  for (size_t i = 0; i < N_ELEMS(cases); i++) {
    char buf[RESIL_HTTP_DATE_SIZE + 8];
    memset(buf, 'x', sizeof buf);
    size_t n = resil_http_date_format(cases[i].unix_s, buf, sizeof buf);
    if (cases[i].want == NULL) {
      if (n != 0 || buf[0] != '\0')
        fail_msg("row %zu: %" PRId64 " should not format (got %zu)", i,
                 cases[i].unix_s, n);
      continue;
    }
    if (n != 29 || strcmp(buf, cases[i].want) != 0)
      fail_msg("row %zu: %" PRId64 " -> \"%s\" (%zu), want \"%s\"", i,
               cases[i].unix_s, buf, n, cases[i].want);
    assert_int_equal(buf[30], 'x'); /* nothing past the NUL */
  }
}

static void test_format_small_buffer(void **state) {
  (void)state;
  char buf[RESIL_HTTP_DATE_SIZE];
  for (size_t len = 0; len < RESIL_HTTP_DATE_SIZE; len++) {
    memset(buf, 'x', sizeof buf);
    assert_int_equal(resil_http_date_format(RFC_EXAMPLE, buf, len), 0);
    if (len > 0) assert_int_equal(buf[0], '\0');
    for (size_t j = len > 0 ? 1 : 0; j < sizeof buf; j++)
      assert_int_equal(buf[j], 'x');
  }
  assert_int_equal(resil_http_date_format(RFC_EXAMPLE, NULL, 100), 0);
  assert_int_equal(resil_http_date_format(RFC_EXAMPLE, buf, sizeof buf), 29);
}

/* Format with resil, compare with an expected string built from gmtime_r,
 * then parse all three forms back. */
static const char *const k_wd[7] = {"Sun", "Mon", "Tue", "Wed",
                                    "Thu", "Fri", "Sat"};
static const char *const k_wdl[7] = {"Sunday",   "Monday", "Tuesday",
                                     "Wednesday", "Thursday", "Friday",
                                     "Saturday"};
static const char *const k_mon[12] = {"Jan", "Feb", "Mar", "Apr",
                                      "May", "Jun", "Jul", "Aug",
                                      "Sep", "Oct", "Nov", "Dec"};

static void check_round_trip(int64_t t) {
  char buf[RESIL_HTTP_DATE_SIZE];
  char want[64], rfc850[64], asc[64];
  size_t n = resil_http_date_format(t, buf, sizeof buf);
  if (n != 29) fail_msg("format(%" PRId64 ") returned %zu", t, n);

  time_t tt = (time_t)t;
  struct tm tm;
  if (gmtime_r(&tt, &tm) == NULL) fail_msg("gmtime_r(%" PRId64 ")", t);
  long year = (long)tm.tm_year + 1900;
  snprintf(want, sizeof want, "%s, %02d %s %04ld %02d:%02d:%02d GMT",
           k_wd[tm.tm_wday], tm.tm_mday, k_mon[tm.tm_mon], year, tm.tm_hour,
           tm.tm_min, tm.tm_sec);
  if (strcmp(buf, want) != 0)
    fail_msg("format(%" PRId64 ") = \"%s\", gmtime says \"%s\"", t, buf, want);

  int64_t back = parse_ok(buf, 0);
  if (back != t) fail_msg("\"%s\" -> %" PRId64 " != %" PRId64, buf, back, t);

  snprintf(asc, sizeof asc, "%s %s %2d %02d:%02d:%02d %04ld", k_wd[tm.tm_wday],
           k_mon[tm.tm_mon], tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
           year);
  back = parse_ok(asc, 0);
  if (back != t) fail_msg("\"%s\" -> %" PRId64 " != %" PRId64, asc, back, t);

  /* RFC 850 resolves relative to now; with now == t it is t's own year. */
  snprintf(rfc850, sizeof rfc850, "%s, %02d-%s-%02ld %02d:%02d:%02d GMT",
           k_wdl[tm.tm_wday], tm.tm_mday, k_mon[tm.tm_mon], year % 100,
           tm.tm_hour, tm.tm_min, tm.tm_sec);
  back = parse_ok(rfc850, t);
  if (back != t) fail_msg("\"%s\" -> %" PRId64 " != %" PRId64, rfc850, back, t);
}

static void test_round_trip(void **state) {
  (void)state;
  const int64_t lo = INT64_C(-62135596800), hi = INT64_C(253402300799);
  const int64_t edges[] = {lo,
                           lo + 1,
                           lo + 86399,
                           lo + 86400,
                           -INT64_C(2203891201),
                           -INT64_C(2203891200),
                           -86401,
                           -86400,
                           -86399,
                           -1,
                           0,
                           1,
                           86399,
                           86400,
                           INT64_C(951782399),
                           INT64_C(951782400),
                           INT64_C(951868800),
                           INT64_C(2147483647),
                           INT64_C(2147483648),
                           INT64_C(4107542400), /* 2100-03-01 */
                           hi - 86400,
                           hi - 1,
                           hi};
  for (size_t i = 0; i < N_ELEMS(edges); i++) check_round_trip(edges[i]);

  /* A uniform sweep across the whole range ... */
  const int64_t step = (hi - lo) / 20011;
  for (int64_t t = lo; t <= hi; t += step) check_round_trip(t);
  /* ... and pseudo-random points (fixed-seed LCG). */
  uint64_t x = 0x9e3779b97f4a7c15u;
  for (int i = 0; i < 20000; i++) {
    x = x * 6364136223846793005u + 1442695040888963407u;
    check_round_trip(lo + (int64_t)((x >> 11) % (uint64_t)(hi - lo + 1)));
  }
}

/* ---- Retry-After ---------------------------------------------------------- */

typedef struct ra_case {
  const char *in;
  resil_ns want;
} ra_case;

static void test_retry_after_delta(void **state) {
  (void)state;
  fixed_wall fw;
  resil_wallclock wc = wall_at(&fw, NOW_2024 * RESIL_SEC);
  const ra_case cases[] = {
      {"0", 0},
      {"1", RESIL_SEC},
      {"120", 120 * RESIL_SEC},
      {"007", 7 * RESIL_SEC},
      {" 5 ", 5 * RESIL_SEC},
      {"\t30\t", 30 * RESIL_SEC},
      {"86400", 86400 * RESIL_SEC},
      /* The largest whole second that fits, then saturation. */
      {"9223372036", INT64_C(9223372036) * RESIL_SEC},
      {"9223372037", RESIL_NS_MAX},
      {"99999999999999999999", RESIL_NS_MAX},
      {"18446744073709551616", RESIL_NS_MAX},
      {"100000000000000000000000000000000000000000000000000", RESIL_NS_MAX},
  };
  for (size_t i = 0; i < N_ELEMS(cases); i++) {
    resil_ns d = SENTINEL;
    int rc = resil_retry_after_parse(cases[i].in, strlen(cases[i].in), &wc, &d);
    if (rc != 1 || d != cases[i].want)
      fail_msg("row %zu \"%s\": rc=%d delay %" PRId64 " want %" PRId64, i,
               cases[i].in, rc, d, cases[i].want);
  }
}

static void test_retry_after_no_hint(void **state) {
  (void)state;
  fixed_wall fw;
  resil_wallclock wc = wall_at(&fw, NOW_2024 * RESIL_SEC);
  const char *const cases[] = {
      "",
      " ",
      "\t \t",
      "-5",
      "-0",
      "+5",
      "1.5",
      "1.",
      ".5",
      "1e3",
      "0x10",
      "5s",
      "1 0",
      "1\t0",
      "5\r\n",
      "\r\n5",
      "abc",
      "five",
      "Sun, 06 Nov 1994 08:49:37",
      "Fri, 30 Feb 2024 00:00:00 GMT",
      "Mon, 01 Jan 2024 24:00:00 GMT",
      "Sun, 06 Nov 1994 08:49:37 GMT 5",
      "5 Sun, 06 Nov 1994 08:49:37 GMT",
      "\xff\xfe",
  };
  for (size_t i = 0; i < N_ELEMS(cases); i++) {
    resil_ns d = SENTINEL;
    int rc = resil_retry_after_parse(cases[i], strlen(cases[i]), &wc, &d);
    if (rc != 0 || d != SENTINEL)
      fail_msg("row %zu \"%s\": rc=%d delay %" PRId64 " (want no hint)", i,
               cases[i], rc, d);
  }
  /* Length limits what is read. */
  resil_ns d = SENTINEL;
  assert_int_equal(resil_retry_after_parse("5", 0, &wc, &d), 0);
  assert_int_equal(resil_retry_after_parse("12x", 2, &wc, &d), 1);
  assert_int_equal(d, 12 * RESIL_SEC);
  /* Bad arguments: no hint. */
  d = SENTINEL;
  assert_int_equal(resil_retry_after_parse(NULL, 3, &wc, &d), 0);
  assert_int_equal(resil_retry_after_parse("5", 1, &wc, NULL), 0);
  /* A wall clock without now(): dates give no hint, delta-seconds still do. */
  resil_wallclock broken = {NULL, NULL};
  const char *date = "Sun, 06 Nov 2094 08:49:37 GMT";
  assert_int_equal(resil_retry_after_parse(date, strlen(date), &broken, &d), 0);
  assert_int_equal(d, SENTINEL);
  assert_int_equal(resil_retry_after_parse("3", 1, &broken, &d), 1);
  assert_int_equal(d, 3 * RESIL_SEC);
}

typedef struct ra_date_case {
  resil_ns now; /* ns since the epoch */
  const char *in;
  resil_ns want;
} ra_date_case;

static void test_retry_after_date(void **state) {
  (void)state;
  const resil_ns ex = RFC_EXAMPLE * RESIL_SEC;
  const ra_date_case cases[] = {
      /* Equal to now: 0. */
      {ex, "Sun, 06 Nov 1994 08:49:37 GMT", 0},
      /* Future, all three forms. */
      {ex, "Sun, 06 Nov 1994 09:49:37 GMT", RESIL_HOUR},
      {ex, "Sunday, 06-Nov-94 08:50:37 GMT", RESIL_MIN},
      {ex, "Sun Nov  6 08:49:38 1994", RESIL_SEC},
      {ex, "  Mon, 07 Nov 1994 08:49:37 GMT  ", 86400 * RESIL_SEC},
      /* Past: a usable hint of 0. */
      {ex, "Sun, 06 Nov 1994 08:49:36 GMT", 0},
      {ex, "Thu, 01 Jan 1970 00:00:00 GMT", 0},
      {ex, "Mon, 01 Jan 0001 00:00:00 GMT", 0},
      /* Sub-second now: the delay is exact to the nanosecond. */
      {ex + 250 * RESIL_MSEC, "Sun, 06 Nov 1994 08:49:38 GMT",
       750 * RESIL_MSEC},
      {ex + 1, "Sun, 06 Nov 1994 08:49:38 GMT", RESIL_SEC - 1},
      {ex + RESIL_SEC - 1, "Sun, 06 Nov 1994 08:49:38 GMT", 1},
      {ex + 250 * RESIL_MSEC, "Sun, 06 Nov 1994 08:49:37 GMT", 0},
      /* Now before 1970. */
      {-RESIL_SEC / 2, "Thu, 01 Jan 1970 00:00:00 GMT", RESIL_SEC / 2},
      {-86400 * RESIL_SEC, "Thu, 01 Jan 1970 00:00:00 GMT", 86400 * RESIL_SEC},
      {-86400 * RESIL_SEC, "Wed, 31 Dec 1969 00:00:00 GMT", 0},
      /* Far future: exact while it fits, then saturated. */
      {0, "Wed, 01 Jan 2200 00:00:00 GMT", INT64_C(7258118400) * RESIL_SEC},
      {0, "Fri, 11 Apr 2262 23:47:16 GMT", INT64_C(9223372036) * RESIL_SEC},
      {0, "Fri, 11 Apr 2262 23:47:17 GMT", RESIL_NS_MAX},
      {ex, "Fri, 31 Dec 9999 23:59:59 GMT", RESIL_NS_MAX},
      {INT64_MIN, "Thu, 01 Jan 1970 00:00:00 GMT", RESIL_NS_MAX},
      {INT64_MAX, "Fri, 31 Dec 9999 23:59:59 GMT", RESIL_NS_MAX},
      /* now = INT64_MAX ns = 2262-04-11 23:47:16.854775807 */
      {INT64_MAX, "Fri, 11 Apr 2262 23:47:17 GMT", INT64_C(145224193)},
      {INT64_MAX, "Fri, 11 Apr 2262 23:47:16 GMT", 0},
  };
  for (size_t i = 0; i < N_ELEMS(cases); i++) {
    fixed_wall fw;
    resil_wallclock wc = wall_at(&fw, cases[i].now);
    resil_ns d = SENTINEL;
    int rc = resil_retry_after_parse(cases[i].in, strlen(cases[i].in), &wc, &d);
    if (rc != 1 || d != cases[i].want)
      fail_msg("row %zu \"%s\": rc=%d delay %" PRId64 " want %" PRId64, i,
               cases[i].in, rc, d, cases[i].want);
  }
}

static void test_retry_after_system_clock(void **state) {
  (void)state;
  /* Smoke test of wc == NULL: the only place the real clock is used. */
  const char *far = "Fri, 31 Dec 9999 23:59:59 GMT";
  resil_ns d = SENTINEL;
  assert_int_equal(resil_retry_after_parse(far, strlen(far), NULL, &d), 1);
  assert_true(d > 100 * 365 * 24 * RESIL_HOUR);
  const char *past = "Thu, 01 Jan 1970 00:00:01 GMT";
  assert_int_equal(resil_retry_after_parse(past, strlen(past), NULL, &d), 1);
  assert_int_equal(d, 0);
  assert_int_equal(resil_retry_after_parse("42", 2, NULL, &d), 1);
  assert_int_equal(d, 42 * RESIL_SEC);
}

/* ---- rate-limit reset headers -------------------------------------------- */

typedef struct rl_case {
  const char *name;
  const char *value;
  int want_rc;
  resil_ns want; /* when want_rc == 1 */
} rl_case;

static void test_ratelimit_reset(void **state) {
  (void)state;
  fixed_wall fw;
  /* now = 1700000000.5 s */
  resil_wallclock wc =
      wall_at(&fw, INT64_C(1700000000) * RESIL_SEC + 500 * RESIL_MSEC);
  const rl_case cases[] = {
      /* RateLimit-Reset: delta-seconds. */
      {"RateLimit-Reset", "30", 1, 30 * RESIL_SEC},
      {"ratelimit-reset", " 0 ", 1, 0},
      {"RATELIMIT-RESET", "1700000010", 1, INT64_C(1700000010) * RESIL_SEC},
      {"RateLimit-Reset", "99999999999999999999", 1, RESIL_NS_MAX},
      {"RateLimit-Reset", "", 0, 0},
      {"RateLimit-Reset", "-1", 0, 0},
      {"RateLimit-Reset", "+1", 0, 0},
      {"RateLimit-Reset", "1.5", 0, 0},
      {"RateLimit-Reset", "Sun, 06 Nov 1994 08:49:37 GMT", 0, 0},
      /* X-RateLimit-Reset: unix seconds from 1e9 up, else delta-seconds. */
      {"X-RateLimit-Reset", "1700000010", 1, 9500 * RESIL_MSEC},
      {"x-ratelimit-reset", "1700000001", 1, 500 * RESIL_MSEC},
      {"X-RateLimit-Reset", "1700000000", 1, 0},
      {"X-RateLimit-Reset", "1000000000", 1, 0},
      {"X-RateLimit-Reset", "999999999", 1, INT64_C(999999999) * RESIL_SEC},
      {"X-RateLimit-Reset", "60", 1, 60 * RESIL_SEC},
      {"X-RateLimit-Reset", " 60\t", 1, 60 * RESIL_SEC},
      {"X-RateLimit-Reset", "99999999999999999999", 1, RESIL_NS_MAX},
      {"X-RateLimit-Reset", "1700000000.9", 0, 0},
      {"X-RateLimit-Reset", "-60", 0, 0},
      {"X-RateLimit-Reset", "", 0, 0},
      /* RateLimit: the t= parameter of the structured field. */
      {"RateLimit", "\"default\";r=0;t=30", 1, 30 * RESIL_SEC},
      {"ratelimit", "limit;r=50;t=30", 1, 30 * RESIL_SEC},
      {"RateLimit", "\"default\";t=30;r=0", 1, 30 * RESIL_SEC},
      {"RateLimit", "\"default\";t=0", 1, 0},
      {"RateLimit", "  \"default\"; r=0; t=7  ", 1, 7 * RESIL_SEC},
      {"RateLimit", "\"a\\\"b\\\\\";r=0;t=5", 1, 5 * RESIL_SEC},
      {"RateLimit", "\"default\";r=0;t=30;t=40", 1, 40 * RESIL_SEC},
      {"RateLimit", "\"default\";r=0;t=99999999999999999999", 1, RESIL_NS_MAX},
      {"RateLimit", "\"default\";r=0;flag;t=3;w=?1", 1, 3 * RESIL_SEC},
      /* Several policies: the largest t among exhausted (r=0) ones ... */
      {"RateLimit", "\"minute\";r=0;t=30, \"day\";r=0;t=3600", 1,
       3600 * RESIL_SEC},
      {"RateLimit", "\"minute\";r=5;t=10,\"day\";r=0;t=60", 1, 60 * RESIL_SEC},
      {"RateLimit", "\"a\";r=0;t=60 ,\t\"b\";r=0;t=20", 1, 60 * RESIL_SEC},
      /* ... otherwise the first member's t. */
      {"RateLimit", "\"minute\";r=5;t=10, \"day\";r=3;t=60", 1,
       10 * RESIL_SEC},
      {"RateLimit", "\"minute\";r=5, \"day\";r=3;t=60", 1, 60 * RESIL_SEC},
      /* No usable t. */
      {"RateLimit", "", 0, 0},
      {"RateLimit", "   ", 0, 0},
      {"RateLimit", "\"default\";r=0", 0, 0},
      {"RateLimit", "\"default\";q=100;w=60", 0, 0},
      {"RateLimit", "\"default\";r=0;t=-5", 0, 0},
      {"RateLimit", "\"default\";r=0;t=1.5", 0, 0},
      {"RateLimit", "\"default\";r=0;t=\"30\"", 0, 0},
      {"RateLimit", "\"default\";r=0;t", 0, 0},
      {"RateLimit", "\"default\";r=0;t=", 0, 0},
      {"RateLimit", "\"default\";r=0;T=30", 0, 0},
      {"RateLimit", ";t=30", 0, 0},
      {"RateLimit", "t=30", 0, 0},
      {"RateLimit", "30", 0, 0},
      {"RateLimit", "\"default;t=30", 0, 0},
      {"RateLimit", "\"bad\\escape\";t=30", 0, 0},
      {"RateLimit", "\"default\";r=0;t=30,", 0, 0},
      {"RateLimit", "\"default\";r=0;t=30 x", 0, 0},
      {"RateLimit", ",\"default\";t=30", 0, 0},
      {"RateLimit", "(\"a\" \"b\");t=30", 0, 0},
      {"RateLimit", "\"default\";;t=30", 0, 0},
      /* Retry-After through the same entry point. */
      {"Retry-After", "120", 1, 120 * RESIL_SEC},
      {"retry-after", "Tue, 14 Nov 2023 22:13:21 GMT", 1, 500 * RESIL_MSEC},
      {"Retry-After", "Tue, 14 Nov 2023 22:13:19 GMT", 1, 0},
      {"Retry-After", "-1", 0, 0},
      /* Unknown names. */
      {"X-RateLimit-Remaining", "30", 0, 0},
      {"RateLimit-Policy", "\"default\";q=100;w=60", 0, 0},
      {"RateLimit-Limit", "30", 0, 0},
      {"Retry-After-Ms", "30", 0, 0},
      {"Retry-Afte", "30", 0, 0},
      {"RateLimit ", "\"default\";t=30", 0, 0},
      {" RateLimit-Reset", "30", 0, 0},
      {"", "30", 0, 0},
  };
  for (size_t i = 0; i < N_ELEMS(cases); i++) {
    resil_ns d = SENTINEL;
    int rc = resil_ratelimit_reset_parse(cases[i].name, cases[i].value,
                                         strlen(cases[i].value), &wc, &d);
    resil_ns want = cases[i].want_rc ? cases[i].want : SENTINEL;
    if (rc != cases[i].want_rc || d != want)
      fail_msg("row %zu %s: \"%s\": rc=%d delay %" PRId64 " want rc=%d %" PRId64,
               i, cases[i].name, cases[i].value, rc, d, cases[i].want_rc, want);
  }
  resil_ns d = SENTINEL;
  assert_int_equal(resil_ratelimit_reset_parse(NULL, "30", 2, &wc, &d), 0);
  assert_int_equal(
      resil_ratelimit_reset_parse("RateLimit-Reset", NULL, 2, &wc, &d), 0);
  assert_int_equal(
      resil_ratelimit_reset_parse("RateLimit-Reset", "30", 2, &wc, NULL), 0);
  assert_int_equal(d, SENTINEL);
  /* Only len bytes are read. */
  assert_int_equal(
      resil_ratelimit_reset_parse("RateLimit", "\"d\";t=12;t=x", 8, &wc, &d),
      1);
  assert_int_equal(d, 12 * RESIL_SEC);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_valid),
      cmocka_unit_test(test_parse_invalid),
      cmocka_unit_test(test_parse_length_and_nul),
      cmocka_unit_test(test_rfc850_two_digit_year),
      cmocka_unit_test(test_rfc850_extreme_now),
      cmocka_unit_test(test_format),
      cmocka_unit_test(test_format_small_buffer),
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_retry_after_delta),
      cmocka_unit_test(test_retry_after_no_hint),
      cmocka_unit_test(test_retry_after_date),
      cmocka_unit_test(test_retry_after_system_clock),
      cmocka_unit_test(test_ratelimit_reset),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
