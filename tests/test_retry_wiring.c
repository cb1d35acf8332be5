/* The retry engine with a circuit breaker and a retry budget attached: the
 * composition rules at the top of include/resil/retry.h, on a fake clock. */
#include <stdlib.h>
#include <string.h>

#include "resil/resil.h"
#include "test_util.h"

typedef struct {
  resil_fakeclock *fc;
  resil_breaker *breaker;
  resil_budget *budget;
  resil_retry_policy *policy;
  resil_retry_config cfg;
} fx;

static int setup(void **state) {
  fx *f = calloc(1, sizeof *f);
  if (f == NULL || resil_fakeclock_new(&f->fc, RESIL_SEC, 0) != RESIL_OK) return -1;
  resil_retry_config_init(&f->cfg);
  f->cfg.clock = resil_fakeclock_clock(f->fc);
  f->cfg.backoff.jitter = RESIL_JITTER_NONE;
  f->cfg.backoff.base = 100 * RESIL_MSEC;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx *f = *state;
  resil_retry_policy_free(f->policy);
  resil_breaker_free(f->breaker);
  resil_budget_free(f->budget);
  resil_fakeclock_free(f->fc);
  free(f);
  return 0;
}

static void add_breaker(fx *f, uint32_t failures, resil_ns open_for) {
  resil_breaker_config bc;
  resil_breaker_config_init(&bc);
  bc.failure_threshold = failures;
  bc.open_duration = open_for;
  bc.clock = f->cfg.clock;
  assert_int_equal(resil_breaker_new(&f->breaker, &bc), RESIL_OK);
  f->cfg.breaker = f->breaker;
}

static void make(fx *f) {
  resil_retry_policy_free(f->policy);
  f->policy = NULL;
  assert_int_equal(resil_retry_policy_new(&f->policy, &f->cfg), RESIL_OK);
}

typedef struct {
  int calls;
  int fail_first;      /* this many calls fail ... */
  resil_outcome_kind fail_kind; /* ... with this kind */
} op_ctx;

static int op(void *ud, resil_outcome *out) {
  op_ctx *c = ud;
  if (c->calls++ < c->fail_first) {
    out->kind = c->fail_kind ? c->fail_kind : RESIL_OUTCOME_RETRYABLE;
    return 503;
  }
  return 0;
}

static void test_every_attempt_is_a_breaker_call(void **state) {
  fx *f = *state;
  add_breaker(f, 3, 10 * RESIL_SEC);
  f->cfg.max_attempts = 10;
  make(f);
  op_ctx c = {0, 100, 0};
  resil_retry_result r;
  assert_int_equal(resil_retry_call(f->policy, op, NULL, &c, NULL, &r), RESIL_EFAILED);
  /* Three failures open the breaker; the fourth attempt is never made. */
  assert_int_equal(r.reason, RESIL_STOP_CIRCUIT_OPEN);
  assert_int_equal(c.calls, 3);
  assert_int_equal(r.attempts, 3);
  assert_int_equal(r.last.code, 503); /* the last real outcome is kept */
  assert_true(r.refused_delay > 0 && r.refused_delay <= 10 * RESIL_SEC);
  resil_breaker_snapshot s;
  resil_breaker_snapshot_get(f->breaker, &s);
  assert_int_equal(s.state, RESIL_BREAKER_OPEN);
  assert_int_equal(s.failures, 3);
  assert_int_equal(s.rejected, 0); /* stopped before asking again */
  assert_int_equal(resil_fakeclock_slept(f->fc), 300 * RESIL_MSEC); /* no sleep after the trip */

  /* While open, a new call fails fast without calling the operation. */
  op_ctx c2 = {0, 0, 0};
  assert_int_equal(resil_retry_call(f->policy, op, NULL, &c2, NULL, &r), RESIL_EFAILED);
  assert_int_equal(r.reason, RESIL_STOP_CIRCUIT_OPEN);
  assert_int_equal(c2.calls, 0);
  assert_int_equal(r.attempts, 0);
  resil_breaker_snapshot_get(f->breaker, &s);
  assert_int_equal(s.rejected, 1);
}

static void test_wait_for_probe_when_it_fits(void **state) {
  fx *f = *state;
  add_breaker(f, 1, 2 * RESIL_SEC);
  f->cfg.wait_for_probe = 1;
  f->cfg.max_elapsed = 10 * RESIL_SEC;
  f->cfg.max_attempts = 3;
  make(f);
  /* First call: one failure opens the breaker; the engine then waits the
   * 2s until the probe instead of giving up, and the probe succeeds. */
  op_ctx c = {0, 1, 0};
  resil_retry_result r;
  resil_ns t0 = resil_fakeclock_now(f->fc);
  assert_int_equal(resil_retry_call(f->policy, op, NULL, &c, NULL, &r), RESIL_OK);
  assert_int_equal(c.calls, 2);
  assert_true(resil_fakeclock_now(f->fc) - t0 >= 2 * RESIL_SEC);
  resil_breaker_snapshot s;
  resil_breaker_snapshot_get(f->breaker, &s);
  assert_int_equal(s.state, RESIL_BREAKER_CLOSED);

  /* A deadline that the wait would pass: fail fast instead. */
  f->cfg.max_elapsed = RESIL_SEC;
  make(f);
  op_ctx c2 = {0, 1, 0};
  assert_int_equal(resil_retry_call(f->policy, op, NULL, &c2, NULL, &r), RESIL_EFAILED);
  assert_int_equal(r.reason, RESIL_STOP_CIRCUIT_OPEN);
  assert_int_equal(c2.calls, 1);
}

static void test_fatal_is_ignored_by_the_breaker(void **state) {
  fx *f = *state;
  add_breaker(f, 1, RESIL_SEC);
  make(f);
  op_ctx c = {0, 1, RESIL_OUTCOME_FATAL};
  resil_retry_result r;
  assert_int_equal(resil_retry_call(f->policy, op, NULL, &c, NULL, &r), RESIL_EFAILED);
  assert_int_equal(r.reason, RESIL_STOP_FATAL);
  resil_breaker_snapshot s;
  resil_breaker_snapshot_get(f->breaker, &s);
  assert_int_equal(s.state, RESIL_BREAKER_CLOSED);
  assert_int_equal(s.ignored, 1);
  assert_int_equal(s.failures, 0);
}

static void test_budget_denial_stops_retrying(void **state) {
  fx *f = *state;
  resil_budget_config bc;
  resil_budget_config_init(&bc);
  bc.kind = RESIL_BUDGET_TOKEN_BUCKET;
  bc.burst = 2;
  bc.rate = 0.001; /* effectively no refill during the test */
  bc.clock = f->cfg.clock;
  assert_int_equal(resil_budget_new(&f->budget, &bc), RESIL_OK);
  f->cfg.budget = f->budget;
  f->cfg.max_attempts = 10;
  make(f);
  op_ctx c = {0, 100, 0};
  resil_retry_result r;
  assert_int_equal(resil_retry_call(f->policy, op, NULL, &c, NULL, &r), RESIL_EFAILED);
  /* Two retries from the burst, then the budget says no. */
  assert_int_equal(r.reason, RESIL_STOP_BUDGET);
  assert_int_equal(c.calls, 3);
  /* A second call gets no retries at all, but its first attempt runs. */
  op_ctx c2 = {0, 100, 0};
  assert_int_equal(resil_retry_call(f->policy, op, NULL, &c2, NULL, &r), RESIL_EFAILED);
  assert_int_equal(r.reason, RESIL_STOP_BUDGET);
  assert_int_equal(c2.calls, 1);
  resil_budget_snapshot s;
  resil_budget_snapshot_get(f->budget, &s);
  assert_int_equal(s.retries_granted, 2);
  assert_int_equal(s.retries_denied, 2);
  assert_int_equal(s.requests, 2);
  /* Not charged when the call would stop anyway (attempts exhausted). */
  f->cfg.max_attempts = 1;
  make(f);
  op_ctx c3 = {0, 100, 0};
  assert_int_equal(resil_retry_call(f->policy, op, NULL, &c3, NULL, &r), RESIL_EFAILED);
  assert_int_equal(r.reason, RESIL_STOP_ATTEMPTS);
  resil_budget_snapshot_get(f->budget, &s);
  assert_int_equal(s.retries_denied, 2);
}

static void test_adaptive_rejects_before_the_first_attempt(void **state) {
  fx *f = *state;
  resil_budget_config bc;
  resil_budget_config_init(&bc);
  bc.kind = RESIL_BUDGET_ADAPTIVE;
  bc.clock = f->cfg.clock;
  bc.use_seed = 1;
  bc.seed = 3;
  assert_int_equal(resil_budget_new(&f->budget, &bc), RESIL_OK);
  f->cfg.budget = f->budget;
  f->cfg.max_attempts = 1;
  make(f);
  /* The backend rejects everything: soon most requests are rejected locally
   * and never reach the operation. */
  int local = 0, calls_before;
  for (int i = 0; i < 200; i++) {
    op_ctx c = {0, 100, 0};
    resil_retry_result r;
    calls_before = c.calls;
    resil_retry_call(f->policy, op, NULL, &c, NULL, &r);
    if (r.reason == RESIL_STOP_BUDGET) {
      local++;
      assert_int_equal(c.calls, calls_before);
      assert_int_equal(r.attempts, 0);
    }
  }
  assert_true(local > 100);
}

static void test_step_api_gate_and_abort_release_the_probe(void **state) {
  fx *f = *state;
  add_breaker(f, 1, RESIL_SEC);
  make(f);
  /* Open it. */
  resil_retry_state st;
  resil_retry_begin(&st, f->policy, NULL, NULL);
  resil_step s = resil_retry_attempt(&st);
  assert_int_equal(s.kind, RESIL_STEP_RETRY);
  assert_int_equal(s.delay, 0);
  resil_outcome bad = {RESIL_OUTCOME_RETRYABLE, 1, 0, 0};
  s = resil_retry_next(&st, &bad); /* that failure opened it: stop at once */
  assert_int_equal(s.kind, RESIL_STEP_STOP);
  assert_int_equal(s.reason, RESIL_STOP_CIRCUIT_OPEN);
  s = resil_retry_attempt(&st); /* stopped is sticky */
  assert_int_equal(s.reason, RESIL_STOP_CIRCUIT_OPEN);
  resil_retry_begin(&st, f->policy, NULL, NULL);
  s = resil_retry_attempt(&st); /* a new call is refused at the gate */
  assert_int_equal(s.kind, RESIL_STEP_STOP);
  assert_int_equal(s.reason, RESIL_STOP_CIRCUIT_OPEN);

  /* Half-open: take the only probe, then abort: the probe must come back. */
  resil_fakeclock_advance(f->fc, 2 * RESIL_SEC);
  resil_retry_begin(&st, f->policy, NULL, NULL);
  s = resil_retry_attempt(&st);
  assert_int_equal(s.kind, RESIL_STEP_RETRY);
  resil_breaker_snapshot snap;
  resil_breaker_snapshot_get(f->breaker, &snap);
  assert_int_equal(snap.state, RESIL_BREAKER_HALF_OPEN);
  assert_int_equal(snap.probes_in_flight, 1);
  resil_retry_abort(&st);
  resil_breaker_snapshot_get(f->breaker, &snap);
  assert_int_equal(snap.probes_in_flight, 0);
  /* Another call can probe at once and close it. */
  op_ctx c = {0, 0, 0};
  assert_int_equal(resil_retry_call(f->policy, op, NULL, &c, NULL, NULL), RESIL_OK);
  resil_breaker_snapshot_get(f->breaker, &snap);
  assert_int_equal(snap.state, RESIL_BREAKER_CLOSED);
}


/* A half-open breaker whose probe slot is taken refuses the next attempt:
 * stop now, before the budget is charged for a retry that cannot happen. */
static void test_full_half_open_stops_before_charging(void **state) {
  fx *f = *state;
  add_breaker(f, 1, RESIL_SEC);
  resil_budget_config bc;
  resil_budget_config_init(&bc);
  bc.kind = RESIL_BUDGET_QUOTA;
  bc.clock = f->cfg.clock;
  assert_int_equal(resil_budget_new(&f->budget, &bc), RESIL_OK);
  f->cfg.budget = f->budget;
  make(f);
  /* Call A is admitted while closed ... */
  resil_retry_state a;
  resil_retry_begin(&a, f->policy, NULL, NULL);
  assert_int_equal(resil_retry_attempt(&a).kind, RESIL_STEP_RETRY);
  /* ... another caller trips the breaker, and once it half-opens takes the
   * only probe. */
  resil_permit p;
  assert_int_equal(resil_breaker_acquire(f->breaker, &p, NULL), RESIL_OK);
  resil_breaker_record(f->breaker, &p, RESIL_CALL_FAILURE, 0);
  resil_fakeclock_advance(f->fc, 2 * RESIL_SEC);
  resil_permit probe;
  assert_int_equal(resil_breaker_acquire(f->breaker, &probe, NULL), RESIL_OK);
  resil_budget_snapshot before, after;
  resil_budget_snapshot_get(f->budget, &before);
  /* A's failure: the breaker cannot admit A's retry, so A stops now. */
  resil_outcome bad = {RESIL_OUTCOME_RETRYABLE, 503, 0, 0};
  resil_step s = resil_retry_next(&a, &bad);
  assert_int_equal(s.kind, RESIL_STEP_STOP);
  assert_int_equal(s.reason, RESIL_STOP_CIRCUIT_OPEN);
  resil_budget_snapshot_get(f->budget, &after);
  assert_int_equal(after.retries_granted, before.retries_granted);
  resil_breaker_record(f->breaker, &probe, RESIL_CALL_SUCCESS, 0);
}

/* An open period shorter than the backoff does not stop the call: by the
 * time the wait ends the breaker admits a probe. */
static void test_short_open_period_does_not_stop(void **state) {
  fx *f = *state;
  add_breaker(f, 1, 50 * RESIL_MSEC);
  f->cfg.backoff.base = RESIL_SEC;
  f->cfg.backoff.cap = RESIL_SEC;
  make(f);
  op_ctx c = {0, 1, 0};
  resil_retry_result r;
  assert_int_equal(resil_retry_call(f->policy, op, NULL, &c, NULL, &r), RESIL_OK);
  assert_int_equal(c.calls, 2);
  assert_int_equal(r.reason, RESIL_STOP_SUCCESS);
}

/* A clock whose long sleeps are "interrupted" half-way by a cancel. */
typedef struct {
  resil_fakeclock *fc;
  resil_cancel *cancel;
} cancelling_clock;

static resil_ns cc_now(void *ud) { return resil_fakeclock_now(((cancelling_clock *)ud)->fc); }
static resil_err cc_sleep(void *ud, resil_ns d, resil_cancel *cancel) {
  cancelling_clock *cc = ud;
  if (d >= RESIL_SEC) {
    resil_fakeclock_advance(cc->fc, d / 2);
    resil_cancel_fire(cc->cancel);
    return RESIL_ECANCELED;
  }
  resil_clock fake = resil_fakeclock_clock(cc->fc);
  return fake.sleep(fake.ud, d, cancel);
}

/* Cancelled while waiting for the breaker's probe: `slept` counts what
 * passed of the wait, not the whole of it. */
static void test_cancel_during_probe_wait_counts_what_passed(void **state) {
  fx *f = *state;
  cancelling_clock cc = {f->fc, NULL};
  assert_int_equal(resil_cancel_new(&cc.cancel), RESIL_OK);
  resil_clock clk = {cc_now, cc_sleep, &cc};
  f->cfg.clock = clk;
  add_breaker(f, 1, 4 * RESIL_SEC);
  f->cfg.wait_for_probe = 1;
  f->cfg.max_elapsed = 10 * RESIL_SEC;
  make(f);
  op_ctx c = {0, 100, 0};
  resil_retry_result r;
  assert_int_equal(resil_retry_call(f->policy, op, NULL, &c, cc.cancel, &r), RESIL_ECANCELED);
  assert_int_equal(r.reason, RESIL_STOP_CANCELLED);
  assert_int_equal(c.calls, 1);
  assert_int_equal(r.slept, 2 * RESIL_SEC); /* half of the 4 s wait */
  assert_int_equal(r.elapsed, 2 * RESIL_SEC);
  resil_cancel_free(cc.cancel);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_every_attempt_is_a_breaker_call),
      T(test_wait_for_probe_when_it_fits),
      T(test_fatal_is_ignored_by_the_breaker),
      T(test_budget_denial_stops_retrying),
      T(test_adaptive_rejects_before_the_first_attempt),
      T(test_step_api_gate_and_abort_release_the_probe),
      T(test_full_half_open_stops_before_charging),
      T(test_short_open_period_does_not_stop),
      T(test_cancel_during_probe_wait_counts_what_passed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
