/* resil: circuit breaker.
 *
 * When a dependency is down, retrying it is wasted work that also keeps it
 * down. A breaker watches call results and, once they look bad enough,
 * "opens": calls fail fast with RESIL_ECIRCUIT_OPEN instead of reaching the
 * dependency. After the open duration it lets a limited number of probe calls
 * through ("half-open"); enough probe successes close it again, a probe
 * failure re-opens it.
 *
 *            trip rule met                 open duration over
 *   CLOSED ----------------> OPEN -------------------------------> HALF_OPEN
 *     ^                       ^   probe failure / probe expired        |
 *     |                       +----------------------------------------+
 *     +----------------------------------------------------------------+
 *                       success_threshold probe successes
 *
 * Manual modes: FORCED_OPEN (reject everything), DISABLED (admit everything,
 * record nothing), METRICS_ONLY (admit everything, record, never trip).
 *
 * Trip rules (cfg.trip):
 *   CONSECUTIVE   `failure_threshold` failures in a row (a success resets).
 *   COUNT_WINDOW  over the last `window_calls` calls, once at least
 *                 `minimum_calls` were seen: failure rate >= failure_rate, or
 *                 slow-call rate >= slow_call_rate.
 *   TIME_WINDOW   the same over the last `window_time`, kept in
 *                 `window_buckets` buckets.
 * A call is slow when its duration is >= slow_call_duration (0 disables slow
 * calls). A slow call counts toward the slow rate whether it succeeded or
 * failed. COUNT_WINDOW uses min(minimum_calls, window_calls) as its minimum.
 * The windows and the consecutive count start empty whenever the breaker
 * enters CLOSED or METRICS_ONLY; while OPEN they keep what tripped it.
 *
 * Open duration: open_duration * open_multiplier^(trips in a row - 1), capped
 * at open_duration_max, then multiplied by U(1 - open_jitter, 1 + open_jitter)
 * (still capped). A breaker that closes resets the trip count.
 *
 * Probes: half-open admits at most `half_open_probes` calls at a time. A
 * probe permit that is not recorded within `probe_timeout` expires and counts
 * as a probe failure, so a caller that crashed or forgot to record can never
 * wedge the breaker half-open. An expiry is noticed by the next acquire,
 * record or snapshot; a record arriving after its probe expired decides
 * nothing. A probe's result is its SUCCESS or FAILURE (whether it was slow
 * does not matter); IGNORED frees the probe slot and decides nothing.
 *
 * Thread-safety: every function on a resil_breaker is thread-safe. In the
 * CLOSED state acquire/record are lock-free (atomics only; no clock read
 * unless slow calls or a time window need one), and so are rejections while
 * OPEN or FORCED_OPEN. State changes take an internal mutex. A record that
 * races with a state change may be counted on either side of it.
 *
 * State-change callback: called once per transition (never for X -> X),
 * after the internal mutex is released, in the order the transitions
 * happened, and never two at a time. It may run on another thread that is
 * delivering callbacks at that moment, so a function that changed the state
 * can return before its callback has run. It may call back into the breaker
 * (cast away the const); a change it makes is delivered after it returns. */
#ifndef RESIL_BREAKER_H
#define RESIL_BREAKER_H

#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "error.h"
#include "export.h"
#include "time.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum resil_breaker_state {
  RESIL_BREAKER_CLOSED = 0,
  RESIL_BREAKER_OPEN = 1,
  RESIL_BREAKER_HALF_OPEN = 2,
  RESIL_BREAKER_FORCED_OPEN = 3,
  RESIL_BREAKER_DISABLED = 4,
  RESIL_BREAKER_METRICS_ONLY = 5
} resil_breaker_state;

typedef enum resil_breaker_trip {
  RESIL_TRIP_CONSECUTIVE = 0,
  RESIL_TRIP_COUNT_WINDOW = 1,
  RESIL_TRIP_TIME_WINDOW = 2
} resil_breaker_trip;

/* What a call's result means for the breaker. */
typedef enum resil_call_result {
  RESIL_CALL_SUCCESS = 0,
  RESIL_CALL_FAILURE = 1,
  RESIL_CALL_IGNORED = 2 /* neither: releases the permit, counts nothing
                            (e.g. a 404, which says nothing about health) */
} resil_call_result;

typedef struct resil_breaker resil_breaker;

typedef void (*resil_breaker_change_fn)(void *ud, const resil_breaker *b,
                                        resil_breaker_state from,
                                        resil_breaker_state to);

typedef struct resil_breaker_config {
  size_t size;                 /* sizeof(resil_breaker_config); set by _init */
  const char *name;            /* copied; default "default" (NULL too) */
  resil_breaker_trip trip;     /* default CONSECUTIVE */
  uint32_t failure_threshold;  /* CONSECUTIVE: default 5; >= 1 */
  uint32_t window_calls;       /* COUNT_WINDOW: default 100; 1..1000000 */
  resil_ns window_time;        /* TIME_WINDOW: default 60s; >= window_buckets ns */
  uint32_t window_buckets;     /* TIME_WINDOW: default 60 (1s each); 1..65536 */
  uint32_t minimum_calls;      /* windows: default 20; >= 1 */
  double failure_rate;         /* windows: default 0.5, in (0, 1] */
  resil_ns slow_call_duration; /* default 0 = slow calls not tracked; >= 0 */
  double slow_call_rate;       /* default 1.0, in (0, 1] */
  resil_ns open_duration;      /* default 30s; > 0 */
  double open_multiplier;      /* default 1.0 (fixed); >= 1, finite */
  resil_ns open_duration_max;  /* default 5m; >= open_duration */
  double open_jitter;          /* default 0; in [0, 1) */
  uint32_t half_open_probes;   /* default 1; 1..64 */
  uint32_t success_threshold;  /* probe successes to close; default 1; >= 1 */
  resil_ns probe_timeout;      /* default 60s; > 0 */
  resil_breaker_change_fn on_state_change; /* default NULL */
  void *ud;
  resil_clock clock;           /* default resil_clock_system(); only now() is
                                  used (the breaker never sleeps) */
  resil_allocator alloc;       /* default libc */
  uint64_t seed;               /* with use_seed: jitter of open durations */
  int use_seed;
} resil_breaker_config;

/* Fill cfg with the documented defaults. Thread-safe. */
RESIL_API void resil_breaker_config_init(resil_breaker_config *cfg);

/* RESIL_EINVAL for out-of-range settings (listed above; every field is
 * checked, whichever trip rule is chosen), RESIL_ENOMEM, RESIL_ESYS if the
 * mutex cannot be set up. Allocates once; nothing allocates afterwards.
 * Thread-safe. */
RESIL_API resil_err resil_breaker_new(resil_breaker **out,
                                      const resil_breaker_config *cfg);
/* NULL-safe. No other thread may use the breaker. */
RESIL_API void resil_breaker_free(resil_breaker *b);
RESIL_API const char *resil_breaker_name(const resil_breaker *b);

/* Permission for one call. A value type; treat the fields as private. */
typedef struct resil_permit {
  uint64_t epoch_;  /* state epoch when acquired */
  resil_ns start_;  /* acquire time, or -1 when the breaker needs no timing */
  uint32_t probe_;  /* probe slot + 1, or 0 for an ordinary call */
  uint32_t flags_;
} resil_permit;

/* Ask to make a call. RESIL_OK fills *permit (and sets *retry_in to 0); the
 * caller must later pass it to resil_breaker_record (exactly once).
 * RESIL_ECIRCUIT_OPEN means fail fast; *retry_in (may be NULL) gets the time
 * until a probe may be admitted (RESIL_NS_MAX when FORCED_OPEN; when
 * half-open with every probe slot taken, the time until the first probe
 * would expire). */
RESIL_API resil_err resil_breaker_acquire(resil_breaker *b, resil_permit *permit,
                                          resil_ns *retry_in);

/* Report how the call went. duration < 0 means "measure it": the time since
 * acquire when the breaker timed the permit (it does when slow calls are
 * tracked), else 0. A permit from before a state change (or an expired
 * probe) still counts in the totals but not toward the new state's
 * decisions. A permit acquired while DISABLED counts nowhere. */
RESIL_API void resil_breaker_record(resil_breaker *b, const resil_permit *permit,
                                    resil_call_result result, resil_ns duration);

/* Manual control. force(OPEN is not accepted; use FORCED_OPEN). `state` may be
 * FORCED_OPEN, DISABLED, METRICS_ONLY, or CLOSED (back to normal operation,
 * windows cleared); anything else is RESIL_EINVAL. Forcing the mode the
 * breaker is already in changes nothing, except CLOSED. */
RESIL_API resil_err resil_breaker_force(resil_breaker *b, resil_breaker_state state);
/* Back to CLOSED with empty windows, no failures in a row and no trips in a
 * row. The lifetime totals are kept. */
RESIL_API void resil_breaker_reset(resil_breaker *b);

typedef struct resil_breaker_snapshot {
  resil_breaker_state state;
  /* lifetime totals */
  uint64_t calls, successes, failures, ignored, slow, rejected, trips;
  /* the current trip rule's view */
  uint32_t consecutive_failures;
  uint64_t window_calls, window_failures, window_slow;
  double failure_rate; /* window_failures / window_calls, 0 when empty */
  double slow_rate;
  uint32_t probes_in_flight;
  uint32_t probe_successes;
  resil_ns retry_in;   /* OPEN: time until a probe may go (0 once it may);
                          FORCED_OPEN: RESIL_NS_MAX; else 0 */
} resil_breaker_snapshot;

/* A consistent-enough view (each number is read atomically; they are not read
 * under one lock). O(1) for CONSECUTIVE and COUNT_WINDOW, O(buckets) at worst
 * for TIME_WINDOW. */
RESIL_API void resil_breaker_snapshot_get(resil_breaker *b, resil_breaker_snapshot *out);

/* "closed", "open", "half-open", "forced-open", "disabled", "metrics-only". */
RESIL_API const char *resil_breaker_state_name(resil_breaker_state s);

/* ---- Persistence -------------------------------------------------------
 * A breaker's decision state as a plain value, so another process can carry
 * it on (resil run keeps it in SQLite between invocations). Times are on the
 * breaker's clock, so a breaker meant to be persisted should use a clock that
 * means the same in every process (e.g. the wall clock). Window contents are
 * not exported: only CONSECUTIVE breakers round-trip exactly. */
#define RESIL_BREAKER_MAX_PROBES 64
typedef struct resil_breaker_persisted {
  resil_breaker_state state;
  uint64_t epoch;
  uint32_t consecutive_failures;
  uint32_t trips_in_row;
  uint32_t probe_successes;
  resil_ns open_until;       /* OPEN: when probes may start */
  uint32_t probes;           /* half-open probe slots in use ... */
  resil_ns probe_expires[RESIL_BREAKER_MAX_PROBES]; /* ... and their expiry,
                                                       0 = free */
  uint64_t calls, successes, failures, rejected, trips;
} resil_breaker_persisted;

RESIL_API void resil_breaker_export(resil_breaker *b, resil_breaker_persisted *out);
/* Replace the breaker's decision state and lifetime totals (`slow`, which is
 * not persisted, keeps its value; `ignored` becomes calls - successes -
 * failures; the windows start empty). The epoch becomes in->epoch, or the
 * current epoch + 1 if that is larger, so permits from before the import are
 * stale, while a permit acquired from the breaker that exported the value
 * (in another process, say) can still be recorded: probe slots keep their
 * index. RESIL_EINVAL for an invalid value, e.g. an inconsistent state, more
 * probes than exist, totals that do not add up, or a probe slot or
 * probe_successes this breaker's configuration cannot have; the breaker is
 * then unchanged. */
RESIL_API resil_err resil_breaker_import(resil_breaker *b,
                                         const resil_breaker_persisted *in);

#ifdef __cplusplus
}
#endif
#endif /* RESIL_BREAKER_H */
