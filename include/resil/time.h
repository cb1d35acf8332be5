/* resil: durations, clocks and sleeping.
 *
 * A duration is an int64_t count of nanoseconds (resil_ns); about 292 years
 * fit. Arithmetic on durations saturates at RESIL_NS_MAX instead of
 * overflowing, so a cap "of years" or an attempt number near INT_MAX can never
 * wrap into a negative delay.
 *
 * Time is injected, never global. A resil_clock gives monotonic time and an
 * interruptible sleep; a resil_wallclock gives calendar time (only HTTP dates
 * need it). resil_fakeclock makes both deterministic for tests: its sleep
 * returns at once after advancing the fake time, so a test can "sleep" an hour
 * in microseconds. */
#ifndef RESIL_TIME_H
#define RESIL_TIME_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef int64_t resil_ns;

#define RESIL_NSEC ((resil_ns)1)
#define RESIL_USEC ((resil_ns)1000)
#define RESIL_MSEC ((resil_ns)1000000)
#define RESIL_SEC ((resil_ns)1000000000)
#define RESIL_MIN (60 * RESIL_SEC)
#define RESIL_HOUR (60 * RESIL_MIN)
/* The largest duration; also means "no limit" where a field says so. */
#define RESIL_NS_MAX ((resil_ns)INT64_MAX)

/* Saturating arithmetic on non-negative durations. Negative inputs are treated
 * as 0. Results are clamped to [0, RESIL_NS_MAX]. Thread-safe (pure). */
RESIL_API resil_ns resil_ns_add(resil_ns a, resil_ns b);
RESIL_API resil_ns resil_ns_sub(resil_ns a, resil_ns b); /* max(0, a - b) */
RESIL_API resil_ns resil_ns_mul(resil_ns d, int64_t k);
/* d * f for a finite f >= 0; NaN or negative f gives 0, +inf saturates. */
RESIL_API resil_ns resil_ns_scale(resil_ns d, double f);

/* Parse a human duration: a sequence of <number><unit> with units ns, us, ms,
 * s, m, h, d ("250ms", "1.5s", "2m", "1h30m"); a bare number means seconds
 * ("3", "0.5"). Decimals are allowed on each component. Leading/trailing
 * whitespace is allowed; signs, empty input and unknown units are not.
 * Returns RESIL_OK, RESIL_EPARSE (malformed) or RESIL_ERANGE (larger than
 * RESIL_NS_MAX). *out is written only on success. Thread-safe (pure). */
RESIL_API resil_err resil_duration_parse(const char *s, resil_ns *out);

/* Format d for people: "0s", "850ns", "12.5us", "250ms", "1.3s", "45s",
 * "2m", "2m30s", "1h", "1h5m". Sub-minute values keep at most one decimal
 * (rounded to nearest); from one minute up, seconds are whole and from one
 * hour up, seconds are dropped. RESIL_NS_MAX formats as "inf". Writes at most
 * len bytes including the NUL; returns the length the full text needs (like
 * snprintf), so a return >= len means it was truncated. 32 bytes always fit.
 * Thread-safe (pure). */
RESIL_API size_t resil_duration_format(resil_ns d, char *buf, size_t len);

/* ------------------------------------------------------------------------ */
/* Cancellation: a token one thread fires to stop another's sleep or retries. */

typedef struct resil_cancel resil_cancel;

/* Create an unfired token. Returns RESIL_ENOMEM or RESIL_ESYS on failure. */
RESIL_API resil_err resil_cancel_new(resil_cancel **out);
/* NULL is a no-op. Must not be called while another thread uses the token. */
RESIL_API void resil_cancel_free(resil_cancel *c);
/* Fire the token: every current and future resil_cancel_wait() on it returns
 * RESIL_ECANCELED at once. Idempotent. Thread-safe and async-signal-unsafe
 * (it signals a condition variable). */
RESIL_API void resil_cancel_fire(resil_cancel *c);
/* 1 if fired, else 0 (NULL token: 0). Thread-safe, lock-free. */
RESIL_API int resil_cancel_fired(const resil_cancel *c);
/* Unfire a token so it can be reused. Thread-safe. */
RESIL_API void resil_cancel_reset(resil_cancel *c);
/* Block for up to d on the real monotonic clock or until c fires, whichever
 * comes first. c may be NULL (plain sleep). Returns RESIL_OK when the time
 * elapsed, RESIL_ECANCELED when fired. Thread-safe. */
RESIL_API resil_err resil_cancel_wait(resil_cancel *c, resil_ns d);

/* ------------------------------------------------------------------------ */
/* Clocks. */

/* Monotonic time and an interruptible sleep. now() returns nanoseconds from
 * an arbitrary origin; sleep() waits d (or until cancel fires, returning
 * RESIL_ECANCELED; cancel may be NULL). Both must be thread-safe if the
 * object using the clock is shared between threads. */
typedef struct resil_clock {
  resil_ns (*now)(void *ud);
  resil_err (*sleep)(void *ud, resil_ns d, resil_cancel *cancel);
  void *ud;
} resil_clock;

/* Calendar time in nanoseconds since the Unix epoch (UTC). */
typedef struct resil_wallclock {
  resil_ns (*now)(void *ud);
  void *ud;
} resil_wallclock;

/* CLOCK_MONOTONIC and resil_cancel_wait(). Thread-safe. */
RESIL_API resil_clock resil_clock_system(void);
/* CLOCK_REALTIME. Thread-safe. */
RESIL_API resil_wallclock resil_wallclock_system(void);

/* A deterministic clock for tests and simulations. Its monotonic time starts
 * at `start`; its wall time starts at `wall_start` (ns since the epoch).
 * sleep(d) advances both by d and returns at once (RESIL_ECANCELED without
 * advancing if the token is already fired). All functions are thread-safe
 * (atomics), so one fake clock can drive several threads. */
typedef struct resil_fakeclock resil_fakeclock;

RESIL_API resil_err resil_fakeclock_new(resil_fakeclock **out, resil_ns start,
                                        resil_ns wall_start);
RESIL_API void resil_fakeclock_free(resil_fakeclock *fc); /* NULL-safe */
RESIL_API resil_clock resil_fakeclock_clock(resil_fakeclock *fc);
RESIL_API resil_wallclock resil_fakeclock_wallclock(resil_fakeclock *fc);
RESIL_API void resil_fakeclock_advance(resil_fakeclock *fc, resil_ns d);
RESIL_API resil_ns resil_fakeclock_now(const resil_fakeclock *fc);
/* Total time and number of calls passed to sleep() so far. */
RESIL_API resil_ns resil_fakeclock_slept(const resil_fakeclock *fc);
RESIL_API uint64_t resil_fakeclock_sleeps(const resil_fakeclock *fc);

#ifdef __cplusplus
}
#endif
#endif /* RESIL_TIME_H */
