/* Durations: saturating arithmetic, parsing and printing for people. */
#include <stdio.h>
#include <string.h>

#include "resil/time.h"

resil_ns resil_ns_add(resil_ns a, resil_ns b) {
  if (a < 0) a = 0;
  if (b < 0) b = 0;
  return a > RESIL_NS_MAX - b ? RESIL_NS_MAX : a + b;
}

resil_ns resil_ns_sub(resil_ns a, resil_ns b) {
  if (a < 0) a = 0;
  if (b < 0) b = 0;
  return a > b ? a - b : 0;
}

resil_ns resil_ns_mul(resil_ns d, int64_t k) {
  if (d <= 0 || k <= 0) return 0;
  return d > RESIL_NS_MAX / k ? RESIL_NS_MAX : d * k;
}

resil_ns resil_ns_scale(resil_ns d, double f) {
  if (d <= 0 || !(f > 0)) return 0; /* also catches NaN */
  double x = (double)d * f + 0.5; /* round to nearest */
  /* 2^63 is the first double not representable as int64_t; converting it (or
   * anything larger) would be undefined behaviour. */
  if (x >= 9223372036854775808.0) return RESIL_NS_MAX;
  return (resil_ns)x;
}

/* ---- parsing ------------------------------------------------------------ */

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* Longest match first, so "ms" is not read as "m" followed by junk. */
static const struct {
  const char *name;
  resil_ns ns;
} units[] = {
    {"ns", 1}, {"us", RESIL_USEC}, {"ms", RESIL_MSEC}, {"s", RESIL_SEC},
    {"m", RESIL_MIN}, {"h", RESIL_HOUR}, {"d", 24 * RESIL_HOUR},
};

static size_t match_unit(const char *p, resil_ns *unit) {
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
    size_t n = strlen(units[i].name);
    if (strncmp(p, units[i].name, n) == 0 && !(p[n] >= 'a' && p[n] <= 'z')) {
      *unit = units[i].ns;
      return n;
    }
  }
  return 0;
}

resil_err resil_duration_parse(const char *s, resil_ns *out) {
  if (s == NULL || out == NULL) return RESIL_EINVAL;
  const char *p = s;
  while (is_space(*p)) p++;
  if (*p == '\0') return RESIL_EPARSE;

  resil_ns total = 0;
  int components = 0, overflow = 0;
  while (*p && !is_space(*p)) {
    /* <digits>[.<digits>] with at least one digit overall. */
    uint64_t whole = 0;
    int nwhole = 0, big = 0;
    for (; is_digit(*p); p++, nwhole++) {
      if (whole > (UINT64_MAX - 9) / 10) big = 1;
      else whole = whole * 10 + (uint64_t)(*p - '0');
    }
    double frac = 0, scale = 0.1;
    int nfrac = 0;
    if (*p == '.') {
      for (p++; is_digit(*p); p++, nfrac++, scale /= 10) frac += (*p - '0') * scale;
    }
    if (nwhole + nfrac == 0) return RESIL_EPARSE;

    resil_ns unit;
    size_t ulen = match_unit(p, &unit);
    if (ulen == 0) {
      /* A bare number means seconds, but only as the whole input. */
      const char *q = p;
      while (is_space(*q)) q++;
      if (components > 0 || *q != '\0') return RESIL_EPARSE;
      unit = RESIL_SEC;
    }
    p += ulen;
    components++;

    /* Exact integer part, rounded fraction; any overflow is an error, not a
     * silently saturated value. */
    if (big || whole > (uint64_t)(RESIL_NS_MAX / unit)) {
      overflow = 1;
      continue;
    }
    resil_ns part = (resil_ns)whole * unit;
    resil_ns fpart = resil_ns_scale(unit, frac);
    if (part > RESIL_NS_MAX - fpart || total > RESIL_NS_MAX - (part + fpart))
      overflow = 1;
    else
      total += part + fpart;
  }
  while (is_space(*p)) p++;
  if (*p != '\0') return RESIL_EPARSE;
  if (overflow) return RESIL_ERANGE;
  *out = total;
  return RESIL_OK;
}

/* ---- formatting --------------------------------------------------------- */

/* v in tenths of a unit: "12" -> "1.2", "30" -> "3". */
static size_t fmt_tenths(char *buf, size_t len, long long tenths, const char *unit) {
  int n;
  if (tenths % 10 == 0) n = snprintf(buf, len, "%lld%s", tenths / 10, unit);
  else n = snprintf(buf, len, "%lld.%lld%s", tenths / 10, tenths % 10, unit);
  return n < 0 ? 0 : (size_t)n;
}

size_t resil_duration_format(resil_ns d, char *buf, size_t len) {
  char tmp[40];
  size_t n;
  if (buf == NULL) len = 0;
  if (d == RESIL_NS_MAX) {
    n = (size_t)snprintf(tmp, sizeof tmp, "inf");
  } else if (d <= 0) {
    n = (size_t)snprintf(tmp, sizeof tmp, "0s");
  } else if (d < RESIL_USEC) {
    n = (size_t)snprintf(tmp, sizeof tmp, "%lldns", (long long)d);
  } else if (d < RESIL_MSEC && (d + 50) / 100 < 10000) {
    n = fmt_tenths(tmp, sizeof tmp, (long long)((d + 50) / 100), "us");
  } else if (d < RESIL_SEC && (d + 50000) / 100000 < 10000) {
    n = fmt_tenths(tmp, sizeof tmp, (long long)((d + 50000) / 100000), "ms");
  } else if (d < RESIL_MIN && (d + 50000000) / 100000000 < 600) {
    n = fmt_tenths(tmp, sizeof tmp, (long long)((d + 50000000) / 100000000), "s");
  } else if (d < RESIL_HOUR && (d + RESIL_SEC / 2) / RESIL_SEC < 3600) {
    long long s = (long long)((d + RESIL_SEC / 2) / RESIL_SEC);
    if (s % 60) n = (size_t)snprintf(tmp, sizeof tmp, "%lldm%llds", s / 60, s % 60);
    else n = (size_t)snprintf(tmp, sizeof tmp, "%lldm", s / 60);
  } else {
    long long m = (long long)(d / RESIL_MIN + ((d % RESIL_MIN) >= RESIL_MIN / 2));
    if (m % 60) n = (size_t)snprintf(tmp, sizeof tmp, "%lldh%lldm", m / 60, m % 60);
    else n = (size_t)snprintf(tmp, sizeof tmp, "%lldh", m / 60);
  }
  if (len > 0) {
    size_t c = n < len - 1 ? n : len - 1;
    memcpy(buf, tmp, c);
    buf[c] = '\0';
  }
  return n;
}
