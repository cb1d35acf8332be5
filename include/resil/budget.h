/* resil: retry budgets.
 *
 * A breaker protects one dependency from calls; a budget protects it from
 * *retries*: it caps how much extra traffic retrying may add, process-wide,
 * so an outage cannot be amplified into a retry storm. Five algorithms sit
 * behind one interface:
 *
 *   resil_budget_request(b)        a logical request starts (first attempt).
 *                                  RESIL_EBUDGET only for ADAPTIVE, which may
 *                                  reject requests locally (the request is
 *                                  then not sent: report no result for it).
 *   resil_budget_retry(b, flags)   may this request retry? RESIL_OK (the retry
 *                                  is charged) or RESIL_EBUDGET.
 *   resil_budget_result(b, r, flags) an attempt finished: success (r != 0) or
 *                                  failure. flags: RESIL_BUDGET_RETRY if the
 *                                  attempt was a granted retry, plus the
 *                                  RESIL_BUDGET_TIMEOUT flag that was passed
 *                                  to the resil_budget_retry call granting it
 *                                  (QUOTA refunds what that retry was charged).
 * A NULL budget gives RESIL_EINVAL (result: no-op).
 *
 * Algorithms (cfg.kind), with their defaults:
 *   TOKEN_BUCKET  `rate` retries per second, `burst` at most (10/s, 10).
 *                 Refilled continuously. Over any interval of length t the
 *                 bucket grants at most burst + rate * t retries; a fresh
 *                 bucket grants floor(burst) at once. Implemented as a GCRA
 *                 (one atomic timestamp), lock-free. It works in whole
 *                 nanoseconds: one retry per ceil(1e9 / rate) ns, so rates
 *                 above 1e9/s act as 1e9/s, and a burst worth more than 2^63 ns
 *                 of refill (about 292 years) is capped there.
 *   RATIO         retries <= `ratio` of requests over the last `window`
 *                 (20 % over 10 s, as Finagle), but always at least
 *                 `min_per_sec` retries per second (10): a retry is granted
 *                 iff, counting it, retries <= max(ratio * requests,
 *                 min_per_sec * window_seconds), both over the window.
 *                 The window slides in steps of window / window_buckets.
 *   GRPC          gRPC retry throttling: tokens start at `max_tokens` (100);
 *                 a failed attempt costs 1, a success adds `token_ratio`
 *                 (0.1); retries are allowed while tokens > max_tokens / 2.
 *                 A retry itself is not charged (its failure will be). Tokens
 *                 are kept in millionths and stay within [0, max_tokens].
 *   QUOTA         AWS SDK retry quota: `capacity` (500) tokens; a retry costs
 *                 `retry_cost` (5), or `timeout_cost` (10) after a timeout
 *                 (RESIL_BUDGET_TIMEOUT); a successful retry refunds its cost,
 *                 a success without retries refunds 1 (up to capacity). The
 *                 refund is chosen by the flags given to resil_budget_result:
 *                 RETRY refunds retry_cost, RETRY|TIMEOUT timeout_cost.
 *   ADAPTIVE      Google SRE client-side throttling: over `window` (2 min),
 *                 a request is rejected locally with probability
 *                 max(0, (requests - k * accepts) / (requests + 1)), k = 2.
 *                 `accepts` are attempts the backend answered successfully
 *                 (resil_budget_result with success); `requests` counts every
 *                 attempt asked for, retries included, admitted or not.
 *                 Retries go through the same check. The draws come from a
 *                 lock-free per-budget stream (with use_seed, the same
 *                 decisions every run when one thread drives the budget).
 *
 * Thread-safety: every function is thread-safe. TOKEN_BUCKET, GRPC and QUOTA
 * are lock-free (compare-and-swap on one word); RATIO and ADAPTIVE use atomic
 * per-bucket counters and take a mutex only to rotate a bucket (at most once
 * per bucket width). No allocation after creation. */
#ifndef RESIL_BUDGET_H
#define RESIL_BUDGET_H

#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "error.h"
#include "export.h"
#include "log.h"
#include "time.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum resil_budget_kind {
  RESIL_BUDGET_TOKEN_BUCKET = 0,
  RESIL_BUDGET_RATIO = 1,
  RESIL_BUDGET_GRPC = 2,
  RESIL_BUDGET_QUOTA = 3,
  RESIL_BUDGET_ADAPTIVE = 4
} resil_budget_kind;

/* Flags for resil_budget_retry / resil_budget_result. */
#define RESIL_BUDGET_TIMEOUT 0x1u /* (retry) the failure being retried was a
                                     timeout; (result, with RETRY) the retry
                                     was granted with this flag */
#define RESIL_BUDGET_RETRY 0x2u   /* (result) this attempt was a granted retry */

typedef struct resil_budget_config {
  size_t size;             /* sizeof(resil_budget_config); set by _init */
  resil_budget_kind kind;  /* default TOKEN_BUCKET */
  /* TOKEN_BUCKET */
  double rate;             /* retries per second; default 10; >= 1e-9 */
  double burst;            /* default 10; >= 1 */
  /* RATIO */
  double ratio;            /* default 0.2; in (0, 1] */
  double min_per_sec;      /* default 10; >= 0 */
  /* RATIO and ADAPTIVE */
  resil_ns window;         /* default 10s (RATIO) / 120s (ADAPTIVE); 0 (what
                              _init sets) picks the kind's default; else
                              >= window_buckets ns */
  uint32_t window_buckets; /* default 10; 1..1024 */
  /* GRPC */
  double max_tokens;       /* default 100; in (0, 1000] */
  double token_ratio;      /* default 0.1; > 0. Both are kept in millionths
                              (a value that rounds to 0 is EINVAL) */
  /* QUOTA */
  uint32_t capacity;       /* default 500; >= 1 */
  uint32_t retry_cost;     /* default 5; 1..capacity */
  uint32_t timeout_cost;   /* default 10; 1..capacity */
  /* ADAPTIVE */
  double k;                /* default 2.0; >= 1 */
  const char *name;        /* copied; default "default" */
  resil_clock clock;       /* default resil_clock_system(); only now() is
                              used (sleep may be NULL) */
  resil_allocator alloc;   /* default libc */
  uint64_t seed;           /* with use_seed: ADAPTIVE's random draws;
                              otherwise seeded from getrandom() */
  int use_seed;
} resil_budget_config;

RESIL_API void resil_budget_config_init(resil_budget_config *cfg);

typedef struct resil_budget resil_budget;

/* RESIL_OK, RESIL_EINVAL (bad config; *out set to NULL), RESIL_ENOMEM (the
 * config's allocator failed) or RESIL_ESYS (mutex init failed). Every field
 * is validated whatever the kind; NaN and infinities are rejected. */
RESIL_API resil_err resil_budget_new(resil_budget **out, const resil_budget_config *cfg);
RESIL_API void resil_budget_free(resil_budget *b); /* NULL-safe */
RESIL_API const char *resil_budget_name(const resil_budget *b);

RESIL_API resil_err resil_budget_request(resil_budget *b);
RESIL_API resil_err resil_budget_retry(resil_budget *b, unsigned flags);
RESIL_API void resil_budget_result(resil_budget *b, int success, unsigned flags);

typedef struct resil_budget_snapshot {
  resil_budget_kind kind;
  double available;       /* retries that would be granted right now
                             (tokens; for RATIO the remaining allowance;
                             for ADAPTIVE 1 - reject probability) */
  uint64_t requests;      /* lifetime totals */
  uint64_t retries_granted;
  uint64_t retries_denied;
  uint64_t requests_rejected; /* ADAPTIVE */
  /* Appended: a budget on a backend (resil_budget_new_backend) counts here
   * the retry decisions its local fallback made because the backend failed;
   * 0 for a local budget. */
  uint64_t fallbacks;
} resil_budget_snapshot;

/* Fill *out (zeroed for a NULL budget). Thread-safe; under concurrent use
 * each field is exact but they are read one after another, not at one
 * instant. */
RESIL_API void resil_budget_snapshot_get(resil_budget *b, resil_budget_snapshot *out);

/* ---- pluggable backends ---------------------------------------------------
 *
 * A budget whose retry decisions are made elsewhere (e.g. a token bucket
 * shared by a fleet in Redis: resil/fleet.h), as a versioned vtable in the
 * manner of sqlite3_vfs: the struct only grows at the end, and `version`
 * says how much of it the backend fills (1: everything below).
 *
 *   retry(ud, flags, &granted)   RESIL_OK with *granted 1 or 0, or an error
 *                                when the backend cannot decide (unreachable,
 *                                timed out): the budget then decides with its
 *                                local fallback instead.
 *   result(ud, success, flags)   optional (may be NULL): as resil_budget_result.
 *   close(ud)                    optional: called once by resil_budget_free.
 *   last_error(ud, buf, len)     optional: a one-line description of the
 *                                failure that made retry() return an error
 *                                (for the log), never a password.
 *
 * Every callback may be called from several threads at once. */
#define RESIL_BUDGET_BACKEND_VERSION 1

typedef struct resil_budget_backend {
  int version;      /* RESIL_BUDGET_BACKEND_VERSION */
  const char *name; /* e.g. "redis"; for the log */
  resil_err (*retry)(void *ud, unsigned flags, int *granted);
  void (*result)(void *ud, int success, unsigned flags);
  void (*close)(void *ud);
  void (*last_error)(void *ud, char *buf, size_t len);
} resil_budget_backend;

/* A budget that asks `be` whether a retry may happen, and falls back to a
 * local budget built from `fallback` (NULL: resil_budget_config_init's
 * defaults) whenever the backend fails. The first failure of an outage logs
 * one WARN ("fleet budget NAME unreachable: WHY; using the local budget"),
 * the first success after it one INFO; every decision made by the fallback
 * counts in snapshot.fallbacks. resil_budget_request and _result also reach
 * the fallback, so it is warm when needed. The budget's name and kind are
 * the fallback's (its config's name, or "default"); snapshot.available is
 * the fallback's. `be` must outlive the budget; ud is owned by it from a
 * successful call on (close(ud) at free), and left to the caller on error.
 * RESIL_OK, RESIL_EINVAL (NULL be or be->retry, version < 1, bad fallback
 * config), RESIL_ENOMEM, RESIL_ESYS. log may be NULL (silent). */
RESIL_API resil_err resil_budget_new_backend(resil_budget **out, const resil_budget_backend *be,
                                             void *ud, const resil_budget_config *fallback,
                                             resil_log_fn log, void *log_ud);

/* "token-bucket", "ratio", "grpc", "quota", "adaptive"; parse is
 * case-insensitive, RESIL_EINVAL for unknown names. */
RESIL_API const char *resil_budget_kind_name(resil_budget_kind k);
RESIL_API resil_err resil_budget_kind_parse(const char *s, resil_budget_kind *out);

#ifdef __cplusplus
}
#endif
#endif /* RESIL_BUDGET_H */
