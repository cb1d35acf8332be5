/* resil: HTTP dates, Retry-After and rate-limit reset headers.
 *
 * Parsing is independent of locale and TZ (no strptime/mktime/timegm) and of
 * any global state; "now" always comes from the caller's wall clock, so tests
 * can pin it. All functions are thread-safe (pure). */
#ifndef RESIL_HTTP_DATE_H
#define RESIL_HTTP_DATE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "export.h"
#include "time.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes needed by resil_http_date_format(), including the NUL. */
#define RESIL_HTTP_DATE_SIZE 30

/* Parse an HTTP-date (RFC 9110 section 5.6.7) in any of its three forms:
 *   IMF-fixdate  "Sun, 06 Nov 1994 08:49:37 GMT"
 *   RFC 850      "Sunday, 06-Nov-94 08:49:37 GMT"
 *   asctime      "Sun Nov  6 08:49:37 1994"
 * Day and month names and the zone are case-insensitive, and "UTC" is
 * accepted in place of "GMT"; surrounding SP/HTAB is allowed, but inside the
 * value the RFC grammar is followed exactly (single spaces, fixed field
 * widths: 2-digit day except asctime's "SP D", 4-digit year 0001..9999,
 * 2-digit hh:mm:ss). The weekday must be a real day name (short, or long for
 * RFC 850) but is not checked against the date. Invalid calendar dates
 * (Feb 30, Feb 29 of a non-leap year, Apr 31, hour 24, minute 60) are
 * rejected; second 60 (a leap second) is accepted and counts as second 0 of
 * the next minute. The RFC 850 two-digit year is resolved with RFC 9110's
 * rule: the timestamp may be at most 50 years after now_unix (compared as
 * calendar date and time, now's year + 50), otherwise it means the most recent
 * past year with the same last two digits.
 * s need not be NUL-terminated; only len bytes are read. Returns RESIL_OK with
 * *out_unix (seconds since the epoch), RESIL_EPARSE (out_unix untouched), or
 * RESIL_EINVAL when out_unix is NULL or s is NULL with len > 0. */
RESIL_API resil_err resil_http_date_parse(const char *s, size_t len,
                                          int64_t now_unix, int64_t *out_unix);

/* Format unix seconds as IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT").
 * Needs RESIL_HTTP_DATE_SIZE bytes. Returns the text length (29) or 0 when
 * buf is NULL, len is too small or the year falls outside 0001..9999; on
 * failure buf (when len > 0) holds the empty string. */
RESIL_API size_t resil_http_date_format(int64_t unix_seconds, char *buf,
                                        size_t len);

/* Retry-After value (delta-seconds or HTTP-date) -> delay from the wall clock
 * wc (NULL = system wall clock; it is only read for dates).
 * delta-seconds is 1*DIGIT: no sign, fraction or inner space. Surrounding
 * SP/HTAB is allowed; value need not be NUL-terminated.
 * Returns 1 with *delay set when the value is a usable hint: a date in the
 * past or equal to now gives 0, a future date gives date - now to the
 * nanosecond, and delays too large to represent give RESIL_NS_MAX.
 * Returns 0 ("no hint", distinct from a zero delay) for empty, negative,
 * fractional or otherwise malformed values, for NULL value or delay, and for
 * a date when wc->now is NULL; *delay is then untouched. */
RESIL_API int resil_retry_after_parse(const char *value, size_t len,
                                      const resil_wallclock *wc,
                                      resil_ns *delay);

/* Rate-limit reset headers -> delay, same return convention. name is a
 * NUL-terminated header name matched case-insensitively (exactly, no
 * surrounding space):
 *   "RateLimit-Reset"    delta-seconds (IETF draft)
 *   "RateLimit"          the t= parameter of the IETF structured field
 *                        ("default";r=0;t=30 or limit;r=50;t=30); t must be
 *                        a non-negative integer. With several list members
 *                        (one per policy) the delay is the largest t among
 *                        members with r=0 (every exhausted quota must reset),
 *                        otherwise the first t. A malformed field, or one
 *                        without t, gives no hint. Parameter keys are
 *                        lowercase as RFC 8941 requires.
 *   "X-RateLimit-Reset"  unix seconds when >= 1e9 (GitHub style; a time in
 *                        the past gives 0), otherwise delta-seconds (others)
 *   "Retry-After"        as resil_retry_after_parse()
 * Integers are 1*DIGIT (no sign or fraction) and saturate at RESIL_NS_MAX.
 * Any other name: 0. */
RESIL_API int resil_ratelimit_reset_parse(const char *name, const char *value,
                                          size_t len, const resil_wallclock *wc,
                                          resil_ns *delay);

#ifdef __cplusplus
}
#endif
#endif /* RESIL_HTTP_DATE_H */
