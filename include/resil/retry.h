/* resil: the retry engine.
 *
 * A resil_retry_policy is immutable once created and may be shared by any
 * number of threads. Each logical call keeps its own resil_retry_state (a value
 * on the caller's stack: no allocation per call).
 *
 * Two APIs drive one state machine:
 *
 *   Step API (event loops; the caller does the waiting):
 *       resil_retry_state st;
 *       resil_retry_begin(&st, policy, cancel, call_ud);
 *       for (;;) {
 *         resil_step s = resil_retry_attempt(&st);  // breaker and budget gate
 *         if (s.kind == RESIL_STEP_STOP) break;
 *         if (s.delay > 0) { wait s.delay; continue; } // waiting for a probe
 *         resil_outcome o = run_attempt();          // with resil_retry_attempt_timeout()
 *         s = resil_retry_next(&st, &o);
 *         if (s.kind == RESIL_STEP_STOP) break;     // s.reason says why
 *         wait s.delay on your loop's timer;         // then, if s.verify, check
 *       }                                           // and maybe resil_retry_verified()
 *       resil_retry_result r; resil_retry_result_get(&st, &r);
 *
 *   Blocking API: resil_retry_call() runs the loop above, sleeping on the
 *   policy's clock; a resil_cancel fired from another thread wakes the sleep at
 *   once and ends the call with RESIL_STOP_CANCELLED.
 *
 * Before each attempt (resil_retry_attempt; the blocking call does this):
 *   - first attempt, with a budget: resil_budget_request(); a local rejection
 *     (ADAPTIVE) -> stop BUDGET
 *   - with a breaker: resil_breaker_acquire(); when open -> stop CIRCUIT_OPEN,
 *     unless wait_for_probe is set and the time to the next probe fits both
 *     the deadline and retry_after_max: then wait that long and ask again.
 *
 * Decision order after each attempt (resil_retry_next):
 *   0. the attempt is recorded in the breaker (SUCCESS -> success, RETRYABLE
 *      and RETRY_AFTER -> failure, FATAL -> ignored: a 404 or a bad request
 *      says nothing about the dependency's health) and in the budget
 *   1. SUCCESS outcome           -> stop SUCCESS
 *   2. FATAL outcome             -> stop FATAL
 *   3. cancel token fired        -> stop CANCELLED
 *   4. attempts == max_attempts  -> stop ATTEMPTS
 *   5. delay = backoff(n); with a server-requested delay R (RETRY_AFTER):
 *        R > retry_after_max     -> stop RETRY_AFTER (or, with
 *                                   retry_after_clamp, R = retry_after_max)
 *        delay = max(delay, R)   (the server's delay is a floor, and may exceed
 *                                 the backoff cap)
 *   6. now + delay > deadline    -> stop DEADLINE: never sleep past a deadline
 *   7. budget denies the retry   -> stop BUDGET (asked last, so a retry that
 *                                   would not happen anyway is never charged)
 *   8. otherwise                 -> RETRY after delay; on_retry is called.
 * on_give_up is called once for every stop other than SUCCESS and VERIFIED.
 *
 * Composition with a breaker: every attempt (first or retry) is one breaker
 * call, so a request that fails 5 times counts 5 failures. That is what makes
 * a breaker open quickly under retries; the budget is what keeps those
 * retries from multiplying load. An open breaker stops the retry loop at once
 * rather than burning attempts against it.
 */
#ifndef RESIL_RETRY_H
#define RESIL_RETRY_H

#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "backoff.h"
#include "breaker.h"
#include "budget.h"
#include "error.h"
#include "export.h"
#include "rng.h"
#include "time.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How one attempt ended. */
typedef enum resil_outcome_kind {
  RESIL_OUTCOME_UNSET = 0,      /* op did not say: the policy's classify decides */
  RESIL_OUTCOME_SUCCESS = 1,
  RESIL_OUTCOME_RETRYABLE = 2,  /* transient failure: back off and retry */
  RESIL_OUTCOME_FATAL = 3,      /* permanent failure: stop now */
  RESIL_OUTCOME_RETRY_AFTER = 4 /* transient, and the server asked for a delay */
} resil_outcome_kind;

typedef struct resil_outcome {
  resil_outcome_kind kind;
  int code;             /* the caller's error code, HTTP status or exit status;
                           kept in the result untouched */
  resil_ns retry_after; /* RETRY_AFTER only: the requested delay, >= 0 */
  int uncertain;        /* non-zero when the failed attempt may have taken
                           effect (timeout or reset after sending): a verify
                           step runs before the retry */
} resil_outcome;

/* Why a call stopped. Values are pinned; new reasons are appended. */
#define RESIL_STOP_MAP(X)                                                      \
  X(NONE, 0, "in progress")                                                    \
  X(SUCCESS, 1, "success")                                                     \
  X(FATAL, 2, "fatal error")                                                   \
  X(ATTEMPTS, 3, "attempts exhausted")                                         \
  X(DEADLINE, 4, "deadline would be exceeded")                                 \
  X(RETRY_AFTER, 5, "server-requested delay exceeds retry_after_max")          \
  X(CANCELLED, 6, "cancelled")                                                 \
  X(VERIFIED, 7, "verified: the operation had already taken effect")         \
  X(BUDGET, 8, "retry budget exhausted")                                       \
  X(CIRCUIT_OPEN, 9, "circuit open")

typedef enum resil_stop_reason {
#define RESIL__STOP_ENUM(name, value, text) RESIL_STOP_##name = (value),
  RESIL_STOP_MAP(RESIL__STOP_ENUM)
#undef RESIL__STOP_ENUM
} resil_stop_reason;

/* Static text for a stop reason ("attempts exhausted"). Thread-safe. */
RESIL_API const char *resil_stop_reason_text(resil_stop_reason r);
/* Short lower-case name ("attempts", "retry_after"). Thread-safe. */
RESIL_API const char *resil_stop_reason_name(resil_stop_reason r);

typedef struct resil_retry_result {
  resil_stop_reason reason;
  uint32_t attempts;    /* attempts made (>= 1 once an outcome was reported) */
  resil_outcome last;   /* the last attempt's outcome, as reported */
  resil_ns slept;       /* sum of the delays handed out (the blocking call
                           counts what it actually slept) */
  resil_ns elapsed;     /* begin to stop on the policy clock; -1 when the policy
                           measures no time (measure_time = 0, no deadline) */
  resil_ns refused_delay; /* for DEADLINE / RETRY_AFTER: the delay the engine
                             refused to wait; for CIRCUIT_OPEN: the time until
                             the breaker admits a probe; else 0 */
} resil_retry_result;

/* Passed to on_retry before each wait. */
typedef struct resil_retry_event {
  uint32_t attempt;      /* the attempt that just failed, 1-based */
  uint32_t max_attempts; /* 0 = unlimited */
  resil_ns delay;        /* the wait before the next attempt */
  const resil_outcome *outcome; /* the failed attempt's outcome */
  resil_ns elapsed;      /* since begin, or -1 when not measured */
  void *call_ud;         /* the call's ud (from begin / resil_retry_call) */
} resil_retry_event;

typedef struct resil_retry_config {
  size_t size;           /* sizeof(resil_retry_config); set by _init */
  uint32_t max_attempts; /* total attempts including the first; default 5;
                            0 = unlimited (bound the call with max_elapsed or a
                            cancel token) */
  resil_ns max_elapsed;  /* overall deadline measured from begin; default
                            RESIL_NS_MAX = none */
  resil_backoff backoff; /* default: resil_backoff_init() */
  resil_ns retry_after_max; /* largest server-requested delay honoured;
                               default 60s */
  int retry_after_clamp; /* 0 (default): a longer request stops the call with
                            RESIL_STOP_RETRY_AFTER; 1: wait retry_after_max */
  int measure_time;      /* default 1: read the clock at begin and stop so the
                            result has `elapsed`. 0 skips both clock reads on
                            the success path when there is no deadline (saves
                            ~20 ns per call) */
  /* Map an op's return code to an outcome when the op left it UNSET. Default
   * (NULL): rc == 0 is SUCCESS, anything else RETRYABLE; code = rc. */
  void (*classify)(void *ud, int rc, resil_outcome *out);
  /* Called before each wait. Default NULL (silent). */
  void (*on_retry)(void *ud, const resil_retry_event *ev);
  /* Called once when a call stops for any reason but SUCCESS or VERIFIED. */
  void (*on_give_up)(void *ud, const resil_retry_result *r, void *call_ud);
  void *ud;              /* passed to classify, on_retry and on_give_up */
  resil_clock clock;     /* default resil_clock_system() */
  resil_allocator alloc; /* default libc */
  int use_seed;          /* 0 (default): jitter seeded from getrandom() */
  uint64_t seed;         /* with use_seed: call k (in the order calls first
                            retry) draws from a stream derived from (seed, k),
                            so a single-threaded program is reproducible */
  resil_breaker *breaker; /* optional, not owned; may be shared by policies */
  resil_budget *budget;   /* optional, not owned; may be shared by policies.
                             A retry after an uncertain failure is charged as
                             a timeout (RESIL_BUDGET_TIMEOUT) */
  int wait_for_probe;     /* default 0: an open breaker stops the call; 1: wait
                             for the next probe when that fits (see above) */
} resil_retry_config;

/* Fill cfg with the documented defaults. Thread-safe. */
RESIL_API void resil_retry_config_init(resil_retry_config *cfg);

typedef struct resil_retry_policy resil_retry_policy;

/* Validate cfg and create an immutable policy. Returns RESIL_EINVAL (with no
 * policy) for a NULL argument, a config whose size is unknown, an invalid
 * backoff, negative durations, or a clock without now/sleep. Thread-safe. */
RESIL_API resil_err resil_retry_policy_new(resil_retry_policy **out,
                                           const resil_retry_config *cfg);
/* NULL-safe. No call may be using the policy. */
RESIL_API void resil_retry_policy_free(resil_retry_policy *p);
/* A copy of the policy's (validated) config. Thread-safe. */
RESIL_API void resil_retry_policy_config(const resil_retry_policy *p,
                                         resil_retry_config *out);

/* ---- Step API ---------------------------------------------------------- */

/* Per-call state. A value type so calls need no allocation; every field is
 * private and may change between versions. Not thread-safe: one call, one
 * thread at a time. */
typedef struct resil_retry_state {
  const resil_retry_policy *policy_;
  resil_cancel *cancel_;
  void *call_ud_;
  resil_ns start_, deadline_, end_, slept_, prev_delay_, refused_;
  uint32_t attempts_;
  int reason_;
  int rng_ready_;
  int has_permit_;
  int requested_;
  int prev_uncertain_;
  resil_ns pending_wait_, pending_since_;
  resil_outcome last_;
  resil_permit permit_;
  resil_rng rng_;
} resil_retry_state;

typedef enum resil_step_kind {
  RESIL_STEP_STOP = 0,
  RESIL_STEP_RETRY = 1
} resil_step_kind;

typedef struct resil_step {
  resil_step_kind kind;
  resil_ns delay;           /* RETRY: wait this long, then run the attempt */
  resil_stop_reason reason; /* STOP: why */
  int verify;               /* RETRY: the failure was uncertain; check whether
                               the operation took effect before repeating it,
                               and call resil_retry_verified() if it did */
} resil_step;

/* Start a call. cancel and call_ud may be NULL. Reads the clock once unless
 * the policy has no deadline and measure_time is 0. */
RESIL_API void resil_retry_begin(resil_retry_state *st,
                                 const resil_retry_policy *p,
                                 resil_cancel *cancel, void *call_ud);
/* Call before every attempt, the first included. Returns RETRY with delay 0:
 * go ahead now; RETRY with delay > 0: the breaker is open and the policy
 * waits for its next probe, so wait that long and call this again; or STOP
 * (BUDGET, CIRCUIT_OPEN, or an earlier stop). Without a breaker or budget it
 * always says go, so loops that never call it keep working, but a policy with
 * either needs it: otherwise attempts are not recorded. */
RESIL_API resil_step resil_retry_attempt(resil_retry_state *st);
/* Report the outcome of the attempt just made and get the next step. An UNSET
 * outcome is classified with the policy's classify (rc = o->code). After a
 * STOP, further calls return the same STOP. */
RESIL_API resil_step resil_retry_next(resil_retry_state *st,
                                      const resil_outcome *o);
/* End the call as RESIL_STOP_VERIFIED (the verify step found that the last
 * attempt had taken effect). Counts as success. */
RESIL_API void resil_retry_verified(resil_retry_state *st);
/* End the call now with `reason` (normally RESIL_STOP_FATAL) because the
 * caller cannot go on, e.g. a request body that cannot be replayed for the
 * retry just decided. The attempts already reported stay recorded as they
 * were (breaker, budget). Calls on_give_up unless reason is SUCCESS or
 * VERIFIED. Returns the STOP step; an earlier stop wins. */
RESIL_API resil_step resil_retry_stop(resil_retry_state *st, resil_stop_reason reason);
/* End the call as RESIL_STOP_CANCELLED (e.g. the caller's loop was told to
 * quit during a wait). Calls on_give_up. Returns the STOP step. */
RESIL_API resil_step resil_retry_abort(resil_retry_state *st);
/* Time left until the deadline (0 when past it, RESIL_NS_MAX with none). */
RESIL_API resil_ns resil_retry_remaining(const resil_retry_state *st);
/* min(per_attempt, remaining): the timeout to give the next attempt.
 * per_attempt <= 0 means no per-attempt limit. */
RESIL_API resil_ns resil_retry_attempt_timeout(const resil_retry_state *st,
                                               resil_ns per_attempt);
/* Number of attempts reported so far. */
RESIL_API uint32_t resil_retry_attempts(const resil_retry_state *st);
/* The result so far (final once a STOP was returned). */
RESIL_API void resil_retry_result_get(const resil_retry_state *st,
                                      resil_retry_result *out);

/* ---- Blocking API ------------------------------------------------------ */

/* One attempt. Return a code; optionally set out->kind (and retry_after,
 * uncertain) to classify the attempt yourself. out arrives zeroed with kind
 * UNSET; an UNSET outcome is classified by the policy from the return code. */
typedef int (*resil_op_fn)(void *call_ud, resil_outcome *out);

/* Read-before-write: called before retrying after an uncertain failure.
 * Return > 0 if the operation already took effect (the call ends as
 * RESIL_STOP_VERIFIED), 0 if it did not (retry), < 0 if it cannot tell (retry;
 * the operation must then be safe to repeat). */
typedef int (*resil_verify_fn)(void *call_ud, const resil_outcome *last);

/* Run op until the policy stops. verify, call_ud, cancel and result may be
 * NULL. Returns RESIL_OK on SUCCESS or VERIFIED, RESIL_ECANCELED when
 * cancelled, RESIL_EINVAL for NULL policy/op, and RESIL_EFAILED for every
 * other stop (result->reason says which, result->last keeps the last code).
 * Allocates nothing. Thread-safe: many threads may call with one policy. */
RESIL_API resil_err resil_retry_call(const resil_retry_policy *p, resil_op_fn op,
                                     resil_verify_fn verify, void *call_ud,
                                     resil_cancel *cancel,
                                     resil_retry_result *result);

#ifdef __cplusplus
}
#endif
#endif /* RESIL_RETRY_H */
