/* Backoff delays. The formulas are documented in include/resil/backoff.h;
 * this file only has to make them exact and overflow-free. */
#include <math.h>
#include <string.h>

#include "core/internal.h"
#include "resil/backoff.h"

void resil_backoff_init(resil_backoff *b) {
  memset(b, 0, sizeof *b);
  b->kind = RESIL_BACKOFF_EXPONENTIAL;
  b->jitter = RESIL_JITTER_FULL;
  b->base = RESIL_SEC;
  b->cap = 30 * RESIL_SEC;
  b->min = 0;
  b->step = 0;
  b->multiplier = 2.0;
  b->jitter_fraction = 0.2;
  b->jitter_max = 0;
}

resil_err resil_backoff_validate(const resil_backoff *b) {
  if (b == NULL) return RESIL_EINVAL;
  if ((unsigned)b->kind > RESIL_BACKOFF_EXPONENTIAL) return RESIL_EINVAL;
  if ((unsigned)b->jitter > RESIL_JITTER_PROPORTIONAL) return RESIL_EINVAL;
  if (b->base <= 0 || b->cap < b->base || b->min < 0 || b->min > b->cap) return RESIL_EINVAL;
  if (b->step < 0 || b->jitter_max < 0) return RESIL_EINVAL;
  /* The comparisons are written so NaN fails them. */
  if (!(b->multiplier >= 1.0) || !isfinite(b->multiplier)) return RESIL_EINVAL;
  if (!(b->jitter_fraction >= 0.0 && b->jitter_fraction <= 1.0)) return RESIL_EINVAL;
  return RESIL_OK;
}

/* min(cap, base * m^e) without overflow: square-and-multiply on doubles with
 * an early exit once the product passes cap/base, so e up to UINT32_MAX costs
 * at most 32 steps and never produces inf. */
static resil_ns exp_delay(resil_ns base, double m, uint32_t e, resil_ns cap) {
  if (e == 0 || m == 1.0) return base < cap ? base : cap;
  if (m == 2.0) {
    /* The common case, exact in integers. */
    if (e >= 63 || base > (cap >> e)) return cap;
    return base << e;
  }
  double limit = (double)cap / (double)base;
  double result = 1.0, sq = m;
  for (;;) {
    if (e & 1u) {
      result *= sq;
      if (result >= limit) return cap;
    }
    e >>= 1;
    if (e == 0) break;
    if (sq >= limit) return cap; /* any further factor only grows */
    sq *= sq;
  }
  double d = (double)base * result;
  if (d >= (double)cap) return cap;
  return (resil_ns)d;
}

resil_ns resil_backoff_base_delay(const resil_backoff *b, uint32_t n) {
  if (n == 0) n = 1;
  resil_ns t;
  switch (b->kind) {
    case RESIL_BACKOFF_LINEAR:
      t = resil_ns_add(b->base, resil_ns_mul(b->step ? b->step : b->base, (int64_t)n - 1));
      break;
    case RESIL_BACKOFF_EXPONENTIAL:
      t = exp_delay(b->base, b->multiplier, n - 1, b->cap);
      break;
    case RESIL_BACKOFF_CONSTANT:
    default:
      t = b->base;
      break;
  }
  return t < b->cap ? t : b->cap;
}

resil_ns resil_backoff_delay(const resil_backoff *b, uint32_t n, resil_ns prev, resil_rng *rng) {
  resil_ns d;
  if (b->jitter == RESIL_JITTER_DECORRELATED) {
    resil_ns p = prev < b->base ? b->base : prev;
    d = resil_rng_between(rng, b->base, resil_ns_mul(p, 3));
  } else {
    resil_ns t = resil_backoff_base_delay(b, n);
    switch (b->jitter) {
      case RESIL_JITTER_FULL:
        d = resil_rng_between(rng, 0, t);
        break;
      case RESIL_JITTER_EQUAL: {
        resil_ns half = t / 2;
        d = half + resil_rng_between(rng, 0, t - half);
        break;
      }
      case RESIL_JITTER_ADDITIVE:
        d = resil_ns_add(t, resil_rng_between(rng, 0, b->jitter_max ? b->jitter_max : t));
        break;
      case RESIL_JITTER_PROPORTIONAL: {
        double f = b->jitter_fraction;
        d = resil_ns_scale(t, 1.0 - f + 2.0 * f * resil_rng_unit(rng));
        break;
      }
      case RESIL_JITTER_NONE:
      default:
        d = t;
        break;
    }
  }
  if (d > b->cap) d = b->cap;
  if (d < b->min) d = b->min;
  return d;
}

static const char *const kind_names[] = {"constant", "linear", "exponential"};
static const char *const jitter_names[] = {"none",         "full",     "equal",
                                           "decorrelated", "additive", "proportional"};

const char *resil_backoff_kind_name(resil_backoff_kind k) {
  return (unsigned)k < RESIL_ARRAY_LEN(kind_names) ? kind_names[k] : "unknown";
}

const char *resil_jitter_name(resil_jitter j) {
  return (unsigned)j < RESIL_ARRAY_LEN(jitter_names) ? jitter_names[j] : "unknown";
}

resil_err resil_backoff_kind_parse(const char *s, resil_backoff_kind *out) {
  for (unsigned i = 0; s && i < RESIL_ARRAY_LEN(kind_names); i++)
    if (resil__strcaseeq(s, kind_names[i])) {
      *out = (resil_backoff_kind)i;
      return RESIL_OK;
    }
  return RESIL_EINVAL;
}

resil_err resil_jitter_parse(const char *s, resil_jitter *out) {
  for (unsigned i = 0; s && i < RESIL_ARRAY_LEN(jitter_names); i++)
    if (resil__strcaseeq(s, jitter_names[i])) {
      *out = (resil_jitter)i;
      return RESIL_OK;
    }
  return RESIL_EINVAL;
}
