/* The retry engine: one state machine (resil_retry_next) behind the step API
 * and the blocking call. See include/resil/retry.h for the decision order. */
#include <stdatomic.h>
#include <string.h>

#include "core/internal.h"
#include "resil/retry.h"

struct resil_retry_policy {
  resil_retry_config cfg;
  resil_allocator alloc;
  /* Only the seeded-jitter stream counter changes after creation; it is
   * touched on the retry path, never on the success path. */
  atomic_uint_fast64_t streams;
  int timed; /* read the clock at begin/stop */
};

/* ---- names -------------------------------------------------------------- */

const char *resil_stop_reason_text(resil_stop_reason r) {
  switch (r) {
#define RESIL__STOP_TEXT(name, value, text)                                    \
  case RESIL_STOP_##name:                                                      \
    return text;
    RESIL_STOP_MAP(RESIL__STOP_TEXT)
#undef RESIL__STOP_TEXT
  }
  return "unknown";
}

const char *resil_stop_reason_name(resil_stop_reason r) {
  switch (r) {
    case RESIL_STOP_NONE: return "none";
    case RESIL_STOP_SUCCESS: return "success";
    case RESIL_STOP_FATAL: return "fatal";
    case RESIL_STOP_ATTEMPTS: return "attempts";
    case RESIL_STOP_DEADLINE: return "deadline";
    case RESIL_STOP_RETRY_AFTER: return "retry_after";
    case RESIL_STOP_CANCELLED: return "cancelled";
    case RESIL_STOP_VERIFIED: return "verified";
    case RESIL_STOP_BUDGET: return "budget";
    case RESIL_STOP_CIRCUIT_OPEN: return "circuit_open";
  }
  return "unknown";
}

/* ---- policy ------------------------------------------------------------- */

void resil_retry_config_init(resil_retry_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->size = sizeof *cfg;
  cfg->max_attempts = 5;
  cfg->max_elapsed = RESIL_NS_MAX;
  resil_backoff_init(&cfg->backoff);
  cfg->retry_after_max = 60 * RESIL_SEC;
  cfg->retry_after_clamp = 0;
  cfg->measure_time = 1;
  cfg->clock = resil_clock_system();
  cfg->alloc = resil_allocator_default();
}

resil_err resil_retry_policy_new(resil_retry_policy **out, const resil_retry_config *cfg) {
  if (out == NULL) return RESIL_EINVAL;
  *out = NULL;
  /* This is the first version of the struct: it must be exactly as large as
   * ours. Later versions will accept older (smaller) sizes and default the
   * fields those callers do not know. */
  if (cfg == NULL || cfg->size != sizeof *cfg) return RESIL_EINVAL;
  if (resil_backoff_validate(&cfg->backoff) != RESIL_OK) return RESIL_EINVAL;
  if (cfg->max_elapsed <= 0 || cfg->retry_after_max < 0) return RESIL_EINVAL;
  if (cfg->clock.now == NULL || cfg->clock.sleep == NULL) return RESIL_EINVAL;
  if (cfg->alloc.malloc && (cfg->alloc.free == NULL || cfg->alloc.realloc == NULL))
    return RESIL_EINVAL;

  resil_allocator a = resil__alloc_resolve(&cfg->alloc);
  resil_retry_policy *p = resil__calloc(&a, sizeof *p);
  if (p == NULL) return RESIL_ENOMEM;
  p->cfg = *cfg;
  p->alloc = a;
  p->cfg.alloc = a;
  atomic_init(&p->streams, 0);
  p->timed = cfg->measure_time || cfg->max_elapsed != RESIL_NS_MAX;
  *out = p;
  return RESIL_OK;
}

void resil_retry_policy_free(resil_retry_policy *p) {
  if (p == NULL) return;
  resil_allocator a = p->alloc;
  resil__free(&a, p);
}

void resil_retry_policy_config(const resil_retry_policy *p, resil_retry_config *out) {
  *out = p->cfg;
}

/* ---- state machine ------------------------------------------------------ */

static resil_ns now_of(const resil_retry_policy *p) {
  return p->cfg.clock.now(p->cfg.clock.ud);
}

/* begin with a start time the caller already read (-1 when untimed). */
static void begin_at(resil_retry_state *st, const resil_retry_policy *p, resil_cancel *cancel,
                     void *call_ud, resil_ns start) {
  st->policy_ = p;
  st->cancel_ = cancel;
  st->call_ud_ = call_ud;
  st->attempts_ = 0;
  st->reason_ = RESIL_STOP_NONE;
  st->rng_ready_ = 0;
  st->has_permit_ = 0;
  st->requested_ = 0;
  st->prev_uncertain_ = 0;
  st->pending_wait_ = 0;
  st->pending_since_ = -1;
  st->slept_ = 0;
  st->prev_delay_ = 0;
  st->refused_ = 0;
  st->end_ = -1;
  st->last_.kind = RESIL_OUTCOME_UNSET;
  st->last_.code = 0;
  st->last_.retry_after = 0;
  st->last_.uncertain = 0;
  st->start_ = start;
  st->deadline_ = RESIL_NS_MAX;
  if (start >= 0 && p->cfg.max_elapsed != RESIL_NS_MAX)
    st->deadline_ = resil_ns_add(start, p->cfg.max_elapsed);
}

void resil_retry_begin(resil_retry_state *st, const resil_retry_policy *p,
                       resil_cancel *cancel, void *call_ud) {
  begin_at(st, p, cancel, call_ud, p->timed ? now_of(p) : -1);
}

static resil_ns elapsed_at(const resil_retry_state *st, resil_ns now) {
  return st->start_ < 0 ? -1 : now - st->start_;
}

static resil_step stop_step(resil_stop_reason r) {
  resil_step s = {RESIL_STEP_STOP, 0, r, 0};
  return s;
}

static resil_step finish(resil_retry_state *st, resil_stop_reason r, resil_ns now) {
  const resil_retry_policy *p = st->policy_;
  st->reason_ = r;
  if (st->pending_wait_ > 0 && st->pending_since_ >= 0) {
    /* Stopped during a wait (cancelled): count only what passed of it. */
    if (now < 0) now = now_of(p);
    resil_ns waited = resil_ns_sub(now, st->pending_since_);
    if (waited < st->pending_wait_)
      st->slept_ = resil_ns_add(resil_ns_sub(st->slept_, st->pending_wait_), waited);
  }
  st->pending_wait_ = 0;
  if (st->has_permit_) {
    /* Stopped between acquire and outcome (aborted, verified): hand the
     * permit back without counting it either way. */
    resil_breaker_record(p->cfg.breaker, &st->permit_, RESIL_CALL_IGNORED, -1);
    st->has_permit_ = 0;
  }
  if (st->start_ >= 0) st->end_ = now >= 0 ? now : now_of(p);
  if (r != RESIL_STOP_SUCCESS && r != RESIL_STOP_VERIFIED && p->cfg.on_give_up) {
    resil_retry_result res;
    resil_retry_result_get(st, &res);
    p->cfg.on_give_up(p->cfg.ud, &res, st->call_ud_);
  }
  return stop_step(r);
}

static resil_rng *call_rng(resil_retry_state *st) {
  if (!st->rng_ready_) {
    const resil_retry_policy *p = st->policy_;
    if (p->cfg.use_seed) {
      uint64_t k = atomic_fetch_add_explicit((atomic_uint_fast64_t *)&p->streams, 1,
                                             memory_order_relaxed);
      resil_rng_seed(&st->rng_, p->cfg.seed ^ (k * 0xD1B54A32D192ED03ull));
    } else {
      (void)resil_rng_seed_os(&st->rng_); /* falls back to a clock-based seed */
    }
    st->rng_ready_ = 1;
  }
  return &st->rng_;
}

/* Resolve an UNSET outcome: the policy's classify first, then the default
 * rule (0 = success, anything else retryable). */
static inline void classify(const resil_retry_config *c, resil_outcome *o) {
  if (o->kind != RESIL_OUTCOME_UNSET) return;
  if (c->classify) c->classify(c->ud, o->code, o);
  if (o->kind == RESIL_OUTCOME_UNSET)
    o->kind = o->code == 0 ? RESIL_OUTCOME_SUCCESS : RESIL_OUTCOME_RETRYABLE;
}

static resil_step go_step(resil_ns delay) {
  resil_step s = {RESIL_STEP_RETRY, delay, RESIL_STOP_NONE, 0};
  return s;
}

/* Would waiting for the breaker's next probe fit this call? It must be
 * allowed (wait_for_probe), finite, within retry_after_max and before the
 * deadline. */
static int probe_wait_fits(const resil_retry_state *st, resil_ns probe_in, resil_ns now) {
  const resil_retry_config *c = &st->policy_->cfg;
  if (!c->wait_for_probe || probe_in == RESIL_NS_MAX || probe_in > c->retry_after_max) return 0;
  if (st->deadline_ == RESIL_NS_MAX) return 1;
  if (now < 0) now = now_of(st->policy_);
  return now <= st->deadline_ && probe_in <= st->deadline_ - now;
}

/* 1 when the breaker will still refuse calls after this retry's delay and
 * waiting for it does not fit the call (*probe_in = time until it admits
 * one); 0 otherwise, with *probe_in the extra wait needed (0 when the
 * breaker admits calls by the time the backoff ends). */
static int breaker_is_open(const resil_retry_state *st, resil_ns now, resil_ns delay,
                           resil_ns *probe_in) {
  resil_ns in = resil__breaker_admit_in(st->policy_->cfg.breaker);
  *probe_in = 0;
  if (in <= delay) return 0;
  *probe_in = in;
  return !probe_wait_fits(st, in, now);
}

/* A wait handed out (a backoff or a breaker probe): counted in `slept` now,
 * corrected in finish() if the call is cancelled before it is over. */
static void wait_begins(resil_retry_state *st, resil_ns d, resil_ns now) {
  st->slept_ = resil_ns_add(st->slept_, d);
  st->pending_wait_ = d;
  st->pending_since_ = st->start_ >= 0 ? (now >= 0 ? now : now_of(st->policy_)) : -1;
}

resil_step resil_retry_attempt(resil_retry_state *st) {
  if (st->reason_ != RESIL_STOP_NONE) return stop_step((resil_stop_reason)st->reason_);
  st->pending_wait_ = 0; /* whatever wait preceded this call is over */
  const resil_retry_config *c = &st->policy_->cfg;
  if (c->budget && !st->requested_) {
    st->requested_ = 1;
    if (resil_budget_request(c->budget) != RESIL_OK) return finish(st, RESIL_STOP_BUDGET, -1);
  }
  if (c->breaker && !st->has_permit_) {
    resil_ns retry_in = 0;
    if (resil_breaker_acquire(c->breaker, &st->permit_, &retry_in) != RESIL_OK) {
      if (probe_wait_fits(st, retry_in, -1)) {
        resil_ns d = retry_in > 0 ? retry_in : 1;
        wait_begins(st, d, -1);
        return go_step(d);
      }
      st->refused_ = retry_in;
      return finish(st, RESIL_STOP_CIRCUIT_OPEN, -1);
    }
    st->has_permit_ = 1;
  }
  return go_step(0);
}

/* Tell the breaker and the budget how the attempt went. */
static void record_attempt(resil_retry_state *st, const resil_outcome *out) {
  const resil_retry_config *c = &st->policy_->cfg;
  int success = out->kind == RESIL_OUTCOME_SUCCESS;
  if (st->has_permit_) {
    resil_call_result r = success                           ? RESIL_CALL_SUCCESS
                          : out->kind == RESIL_OUTCOME_FATAL ? RESIL_CALL_IGNORED
                                                            : RESIL_CALL_FAILURE;
    resil_breaker_record(c->breaker, &st->permit_, r, -1);
    st->has_permit_ = 0;
  }
  if (c->budget && out->kind != RESIL_OUTCOME_FATAL)
    resil_budget_result(c->budget, success,
                        (st->attempts_ > 1 ? RESIL_BUDGET_RETRY : 0u) |
                            (st->prev_uncertain_ ? RESIL_BUDGET_TIMEOUT : 0u));
}

resil_step resil_retry_next(resil_retry_state *st, const resil_outcome *o) {
  if (st->reason_ != RESIL_STOP_NONE) return stop_step((resil_stop_reason)st->reason_);
  const resil_retry_policy *p = st->policy_;
  const resil_retry_config *c = &p->cfg;

  resil_outcome out = *o;
  classify(c, &out);
  st->pending_wait_ = 0;
  st->attempts_++;
  st->last_ = out;
  if (c->breaker || c->budget) record_attempt(st, &out);

  if (RESIL_LIKELY(out.kind == RESIL_OUTCOME_SUCCESS)) return finish(st, RESIL_STOP_SUCCESS, -1);
  if (out.kind == RESIL_OUTCOME_FATAL || out.kind > RESIL_OUTCOME_RETRY_AFTER)
    return finish(st, RESIL_STOP_FATAL, -1);
  if (resil_cancel_fired(st->cancel_)) return finish(st, RESIL_STOP_CANCELLED, -1);
  if (c->max_attempts != 0 && st->attempts_ >= c->max_attempts)
    return finish(st, RESIL_STOP_ATTEMPTS, -1);

  resil_rng *rng = c->backoff.jitter == RESIL_JITTER_NONE ? NULL : call_rng(st);
  resil_ns backoff = resil_backoff_delay(&c->backoff, st->attempts_, st->prev_delay_, rng);
  resil_ns delay = backoff;
  if (out.kind == RESIL_OUTCOME_RETRY_AFTER) {
    resil_ns want = out.retry_after < 0 ? 0 : out.retry_after;
    if (want > c->retry_after_max) {
      if (!c->retry_after_clamp) {
        st->refused_ = want;
        return finish(st, RESIL_STOP_RETRY_AFTER, -1);
      }
      want = c->retry_after_max;
    }
    if (want > delay) delay = want;
  }

  resil_ns now = st->start_ >= 0 ? now_of(p) : -1;
  if (c->breaker) {
    /* This failure may have opened the breaker: stop now rather than sleep
     * and then be refused, unless the policy waits for the probe. */
    resil_ns probe_in = 0;
    if (breaker_is_open(st, now, delay, &probe_in)) {
      st->refused_ = probe_in;
      return finish(st, RESIL_STOP_CIRCUIT_OPEN, now);
    }
    if (probe_in > delay) delay = probe_in;
  }
  if (st->deadline_ != RESIL_NS_MAX && (now > st->deadline_ || delay > st->deadline_ - now)) {
    st->refused_ = delay;
    return finish(st, RESIL_STOP_DEADLINE, now);
  }

  if (c->budget &&
      resil_budget_retry(c->budget, out.uncertain ? RESIL_BUDGET_TIMEOUT : 0u) != RESIL_OK)
    return finish(st, RESIL_STOP_BUDGET, now);

  st->prev_delay_ = backoff;
  st->prev_uncertain_ = out.uncertain != 0;
  wait_begins(st, delay, now);
  if (c->on_retry) {
    resil_retry_event ev = {st->attempts_, c->max_attempts, delay, &st->last_,
                            now >= 0 ? elapsed_at(st, now) : -1, st->call_ud_};
    c->on_retry(c->ud, &ev);
  }
  resil_step s = {RESIL_STEP_RETRY, delay, RESIL_STOP_NONE, out.uncertain != 0};
  return s;
}

void resil_retry_verified(resil_retry_state *st) {
  if (st->reason_ == RESIL_STOP_NONE) finish(st, RESIL_STOP_VERIFIED, -1);
}

resil_step resil_retry_stop(resil_retry_state *st, resil_stop_reason reason) {
  if (st->reason_ != RESIL_STOP_NONE) return stop_step((resil_stop_reason)st->reason_);
  if (reason == RESIL_STOP_NONE) reason = RESIL_STOP_FATAL;
  return finish(st, reason, -1);
}

resil_step resil_retry_abort(resil_retry_state *st) {
  if (st->reason_ != RESIL_STOP_NONE) return stop_step((resil_stop_reason)st->reason_);
  return finish(st, RESIL_STOP_CANCELLED, -1);
}

resil_ns resil_retry_remaining(const resil_retry_state *st) {
  if (st->deadline_ == RESIL_NS_MAX) return RESIL_NS_MAX;
  resil_ns now = now_of(st->policy_);
  return now >= st->deadline_ ? 0 : st->deadline_ - now;
}

resil_ns resil_retry_attempt_timeout(const resil_retry_state *st, resil_ns per_attempt) {
  resil_ns left = resil_retry_remaining(st);
  if (per_attempt <= 0) return left;
  return per_attempt < left ? per_attempt : left;
}

uint32_t resil_retry_attempts(const resil_retry_state *st) { return st->attempts_; }

void resil_retry_result_get(const resil_retry_state *st, resil_retry_result *out) {
  out->reason = (resil_stop_reason)st->reason_;
  out->attempts = st->attempts_;
  out->last = st->last_;
  out->slept = st->slept_;
  out->refused_delay = st->refused_;
  if (st->start_ < 0) out->elapsed = -1;
  else if (st->end_ >= 0) out->elapsed = st->end_ - st->start_;
  else out->elapsed = now_of(st->policy_) - st->start_;
}

/* ---- blocking call ------------------------------------------------------ */

static resil_err err_of(resil_stop_reason r) {
  switch (r) {
    case RESIL_STOP_SUCCESS:
    case RESIL_STOP_VERIFIED: return RESIL_OK;
    case RESIL_STOP_CANCELLED: return RESIL_ECANCELED;
    default: return RESIL_EFAILED;
  }
}

/* Run resil_retry_attempt until it says go (1) or stop (0), sleeping while
 * the policy waits for a breaker probe. */
static int pass_gate(resil_retry_state *st, const resil_clock *clk, resil_cancel *cancel) {
  for (;;) {
    resil_step g = resil_retry_attempt(st);
    if (g.kind == RESIL_STEP_STOP) return 0;
    if (g.delay == 0) return 1;
    if (clk->sleep(clk->ud, g.delay, cancel) == RESIL_ECANCELED || resil_cancel_fired(cancel)) {
      resil_retry_abort(st);
      return 0;
    }
  }
}

resil_err resil_retry_call(const resil_retry_policy *p, resil_op_fn op, resil_verify_fn verify,
                           void *call_ud, resil_cancel *cancel, resil_retry_result *result) {
  if (p == NULL || op == NULL) return RESIL_EINVAL;
  const resil_retry_config *c = &p->cfg;
  const resil_clock *clk = &c->clock;
  resil_ns start = p->timed ? clk->now(clk->ud) : -1;
  const int gated = c->breaker != NULL || c->budget != NULL;
  resil_outcome o = {RESIL_OUTCOME_UNSET, 0, 0, 0};
  int rc;

  if (RESIL_LIKELY(!gated)) {
    /* First attempt outside the state machine: a call that succeeds at once
     * (the common case) costs one indirect call and a few compares, and never
     * touches the state, the RNG or the heap. */
    rc = op(call_ud, &o);
    if (o.kind == RESIL_OUTCOME_UNSET || o.code == 0) o.code = rc;
    classify(c, &o);
    if (RESIL_LIKELY(o.kind == RESIL_OUTCOME_SUCCESS)) {
      if (result) {
        result->reason = RESIL_STOP_SUCCESS;
        result->attempts = 1;
        result->last = o;
        result->slept = 0;
        result->elapsed = start >= 0 ? clk->now(clk->ud) - start : -1;
        result->refused_delay = 0;
      }
      return RESIL_OK;
    }
  }

  resil_retry_state st;
  begin_at(&st, p, cancel, call_ud, start);
  if (gated) {
    if (!pass_gate(&st, clk, cancel)) goto done;
    rc = op(call_ud, &o);
    if (o.kind == RESIL_OUTCOME_UNSET || o.code == 0) o.code = rc;
  }
  for (;;) {
    resil_step s = resil_retry_next(&st, &o);
    if (s.kind == RESIL_STEP_STOP) break;

    resil_err e = clk->sleep(clk->ud, s.delay, cancel);
    if (e == RESIL_ECANCELED || resil_cancel_fired(cancel)) {
      resil_retry_abort(&st); /* counts only the part of the wait that passed */
      break;
    }
    if (s.verify && verify && verify(call_ud, &st.last_) > 0) {
      resil_retry_verified(&st);
      break;
    }
    if (!pass_gate(&st, clk, cancel)) break;
    o.kind = RESIL_OUTCOME_UNSET;
    o.code = 0;
    o.retry_after = 0;
    o.uncertain = 0;
    rc = op(call_ud, &o);
    if (o.kind == RESIL_OUTCOME_UNSET || o.code == 0) o.code = rc;
  }
done:;
  resil_retry_result r;
  resil_retry_result_get(&st, &r);
  if (result) *result = r;
  return err_of(r.reason);
}
