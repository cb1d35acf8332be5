/* resil: backoff delays.
 *
 * A resil_backoff is a plain value: fill it with resil_backoff_init(), change
 * fields, check it with resil_backoff_validate(). Computing a delay is pure
 * apart from the caller's RNG, so one resil_backoff can be shared by any number
 * of threads (each with its own resil_rng).
 *
 * Notation: n >= 1 is the retry number (n = 1 is the wait before the first
 * retry, i.e. the second attempt); U(a, b) is a uniform draw from [a, b];
 * prev is the previous delay returned for this call (base for n = 1).
 *
 * 1. The un-jittered delay t(n):
 *      CONSTANT     t = base
 *      LINEAR       t = min(cap, base + step * (n - 1))
 *      EXPONENTIAL  t = min(cap, base * multiplier^(n - 1))
 * 2. Jitter turns t into d:
 *      NONE          d = t
 *      FULL          d = U(0, t)                       (AWS "full jitter")
 *      EQUAL         d = t/2 + U(0, t/2)               (AWS "equal jitter")
 *      DECORRELATED  d = min(cap, U(base, 3 * prev))   (AWS; ignores kind)
 *      ADDITIVE      d = t + U(0, jitter_max), or t + U(0, t) when
 *                    jitter_max is 0                   (tenacity style)
 *      PROPORTIONAL  d = t * U(1 - jitter_fraction, 1 + jitter_fraction)
 *                                                      (gRPC: 0.2)
 * 3. The result is clamped: delay = max(min, min(cap, d)).
 *    The cap is a hard ceiling for every mode: no delay ever exceeds it.
 *
 * Every step saturates: n up to UINT32_MAX, multipliers up to 1e300 and caps up
 * to RESIL_NS_MAX never overflow and never hit undefined behaviour.
 */
#ifndef RESIL_BACKOFF_H
#define RESIL_BACKOFF_H

#include <stdint.h>

#include "error.h"
#include "export.h"
#include "rng.h"
#include "time.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum resil_backoff_kind {
  RESIL_BACKOFF_CONSTANT = 0,
  RESIL_BACKOFF_LINEAR = 1,
  RESIL_BACKOFF_EXPONENTIAL = 2
} resil_backoff_kind;

typedef enum resil_jitter {
  RESIL_JITTER_NONE = 0,
  RESIL_JITTER_FULL = 1,
  RESIL_JITTER_EQUAL = 2,
  RESIL_JITTER_DECORRELATED = 3,
  RESIL_JITTER_ADDITIVE = 4,
  RESIL_JITTER_PROPORTIONAL = 5
} resil_jitter;

typedef struct resil_backoff {
  resil_backoff_kind kind; /* default EXPONENTIAL */
  resil_jitter jitter;     /* default FULL */
  resil_ns base;           /* default 1s; > 0 */
  resil_ns cap;            /* default 30s; >= base and >= min */
  resil_ns min;            /* default 0; floor applied after jitter */
  resil_ns step;           /* LINEAR increment; default 0 = base */
  double multiplier;       /* EXPONENTIAL factor; default 2.0; >= 1 */
  double jitter_fraction;  /* PROPORTIONAL f; default 0.2; in [0, 1] */
  resil_ns jitter_max;     /* ADDITIVE J; default 0 = U(0, t) */
} resil_backoff;

/* Defaults: exponential, base 1s, multiplier 2, cap 30s, full jitter
 * (go-retryablehttp's range, with the jitter AWS recommends). Thread-safe. */
RESIL_API void resil_backoff_init(resil_backoff *b);

/* RESIL_OK, or RESIL_EINVAL for an unknown kind/jitter, base <= 0, cap < base,
 * min < 0, min > cap, multiplier < 1 or not finite, jitter_fraction outside
 * [0, 1], step < 0 or jitter_max < 0. Thread-safe (pure). */
RESIL_API resil_err resil_backoff_validate(const resil_backoff *b);

/* The un-jittered delay t(n) (step 1 above, capped). n = 0 is treated as 1.
 * Thread-safe (pure). */
RESIL_API resil_ns resil_backoff_base_delay(const resil_backoff *b, uint32_t n);

/* The delay before retry n, given the previous delay (ignored except by
 * DECORRELATED; pass 0 for n = 1). Draws from rng unless jitter is NONE (rng
 * may then be NULL). The backoff must be valid. Thread-safe when each thread
 * passes its own rng. */
RESIL_API resil_ns resil_backoff_delay(const resil_backoff *b, uint32_t n,
                                       resil_ns prev, resil_rng *rng);

/* Names used by the CLI and in messages: "constant", "linear",
 * "exponential"; "none", "full", "equal", "decorrelated", "additive",
 * "proportional". Parsing is case-insensitive and returns RESIL_EINVAL for an
 * unknown name. Thread-safe. */
RESIL_API const char *resil_backoff_kind_name(resil_backoff_kind k);
RESIL_API const char *resil_jitter_name(resil_jitter j);
RESIL_API resil_err resil_backoff_kind_parse(const char *s, resil_backoff_kind *out);
RESIL_API resil_err resil_jitter_parse(const char *s, resil_jitter *out);

#ifdef __cplusplus
}
#endif
#endif /* RESIL_BACKOFF_H */
