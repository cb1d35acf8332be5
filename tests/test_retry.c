#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "resil/resil.h"
#include "test_util.h"

/* ---- allocation counting: the test links with -Wl,--wrap=malloc etc., so
 * every allocation made by resil's (static) objects passes through here. */
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
static _Atomic long heap_calls;
void *__wrap_malloc(size_t n) {
  heap_calls++;
  return __real_malloc(n);
}
void *__wrap_calloc(size_t n, size_t m) {
  heap_calls++;
  return __real_calloc(n, m);
}
void *__wrap_realloc(void *p, size_t n) {
  heap_calls++;
  return __real_realloc(p, n);
}

/* ---- fixtures ------------------------------------------------------------ */

typedef struct {
  resil_fakeclock *fc;
  resil_retry_config cfg;
  resil_retry_policy *policy;
  /* hook recording */
  int retries, give_ups;
  uint32_t attempts_seen[64];
  resil_ns delays[64];
  resil_retry_result give_up;
  resil_ns deadline_abs; /* for the never-past-deadline check, or 0 */
  int deadline_violations;
} fx;

static void on_retry(void *ud, const resil_retry_event *ev) {
  fx *f = ud;
  if (f->retries < 64) {
    f->attempts_seen[f->retries] = ev->attempt;
    f->delays[f->retries] = ev->delay;
  }
  f->retries++;
  if (f->deadline_abs && resil_fakeclock_now(f->fc) + ev->delay > f->deadline_abs)
    f->deadline_violations++;
}

static void on_give_up(void *ud, const resil_retry_result *r, void *call_ud) {
  (void)call_ud;
  fx *f = ud;
  f->give_ups++;
  f->give_up = *r;
}

static int setup(void **state) {
  fx *f = calloc(1, sizeof *f);
  if (resil_fakeclock_new(&f->fc, 1000 * RESIL_SEC, 0) != RESIL_OK) return -1;
  resil_retry_config_init(&f->cfg);
  f->cfg.clock = resil_fakeclock_clock(f->fc);
  f->cfg.backoff.jitter = RESIL_JITTER_NONE;
  f->cfg.backoff.base = 100 * RESIL_MSEC;
  f->cfg.backoff.cap = 10 * RESIL_SEC;
  f->cfg.on_retry = on_retry;
  f->cfg.on_give_up = on_give_up;
  f->cfg.ud = f;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx *f = *state;
  resil_retry_policy_free(f->policy);
  resil_fakeclock_free(f->fc);
  free(f);
  return 0;
}

static void make(fx *f) {
  resil_retry_policy_free(f->policy);
  f->policy = NULL;
  assert_int_equal(resil_retry_policy_new(&f->policy, &f->cfg), RESIL_OK);
}

/* An operation scripted by a list of outcomes; the last one repeats. */
typedef struct {
  resil_outcome script[16];
  int n, calls;
  resil_ns cost; /* fake time each attempt takes */
  resil_fakeclock *fc;
  int verify_answer, verify_calls;
} scripted;

static int scripted_op(void *ud, resil_outcome *out) {
  scripted *s = ud;
  int i = s->calls < s->n ? s->calls : s->n - 1;
  s->calls++;
  if (s->fc && s->cost) resil_fakeclock_advance(s->fc, s->cost);
  *out = s->script[i];
  return s->script[i].code;
}

static int scripted_verify(void *ud, const resil_outcome *last) {
  scripted *s = ud;
  assert_true(last->uncertain);
  s->verify_calls++;
  return s->verify_answer;
}

static resil_outcome oc(resil_outcome_kind k, int code) {
  resil_outcome o = {k, code, 0, 0};
  return o;
}

/* ---- tests --------------------------------------------------------------- */

static void test_config_defaults(void **state) {
  (void)state;
  resil_retry_config c;
  resil_retry_config_init(&c);
  assert_int_equal(c.size, sizeof c);
  assert_int_equal(c.max_attempts, 5);
  assert_int_equal(c.max_elapsed, RESIL_NS_MAX);
  assert_int_equal(c.retry_after_max, 60 * RESIL_SEC);
  assert_int_equal(c.retry_after_clamp, 0);
  assert_int_equal(c.measure_time, 1);
  assert_int_equal(c.backoff.base, RESIL_SEC);
  assert_int_equal(c.backoff.cap, 30 * RESIL_SEC);
  assert_int_equal(c.backoff.jitter, RESIL_JITTER_FULL);
}

static void test_policy_validation(void **state) {
  (void)state;
  resil_retry_policy *p = (resil_retry_policy *)1;
  resil_retry_config c;
  resil_retry_config_init(&c);
  assert_int_equal(resil_retry_policy_new(NULL, &c), RESIL_EINVAL);
  assert_int_equal(resil_retry_policy_new(&p, NULL), RESIL_EINVAL);
  assert_null(p);
#define BAD(stmt)                                                              \
  resil_retry_config_init(&c);                                                 \
  stmt;                                                                        \
  assert_int_equal(resil_retry_policy_new(&p, &c), RESIL_EINVAL);              \
  assert_null(p);
  BAD(c.size = 8);
  BAD(c.backoff.base = 0);
  BAD(c.max_elapsed = 0);
  BAD(c.retry_after_max = -1);
  BAD(c.clock.now = NULL);
  BAD(c.clock.sleep = NULL);
  BAD(c.alloc.free = NULL);
#undef BAD
  resil_retry_config_init(&c);
  assert_int_equal(resil_retry_policy_new(&p, &c), RESIL_OK);
  resil_retry_config back;
  resil_retry_policy_config(p, &back);
  assert_int_equal(back.max_attempts, 5);
  resil_retry_policy_free(p);
  resil_retry_policy_free(NULL);
  assert_int_equal(resil_retry_call(NULL, scripted_op, NULL, NULL, NULL, NULL), RESIL_EINVAL);
}

static void test_success_first_attempt(void **state) {
  fx *f = *state;
  make(f);
  scripted s = {.script = {oc(RESIL_OUTCOME_UNSET, 0)}, .n = 1};
  resil_retry_result r;
  assert_int_equal(resil_retry_call(f->policy, scripted_op, NULL, &s, NULL, &r), RESIL_OK);
  assert_int_equal(r.reason, RESIL_STOP_SUCCESS);
  assert_int_equal(r.attempts, 1);
  assert_int_equal(r.slept, 0);
  assert_int_equal(r.elapsed, 0);
  assert_int_equal(f->retries, 0);
  assert_int_equal(f->give_ups, 0);
  assert_int_equal(resil_fakeclock_sleeps(f->fc), 0);
}

static void test_fails_then_succeeds_with_exact_delays(void **state) {
  fx *f = *state;
  make(f);
  scripted s = {.script = {oc(RESIL_OUTCOME_UNSET, 7), oc(RESIL_OUTCOME_UNSET, 7),
                           oc(RESIL_OUTCOME_UNSET, 7), oc(RESIL_OUTCOME_UNSET, 0)},
                .n = 4};
  resil_retry_result r;
  assert_int_equal(resil_retry_call(f->policy, scripted_op, NULL, &s, NULL, &r), RESIL_OK);
  assert_int_equal(r.reason, RESIL_STOP_SUCCESS);
  assert_int_equal(r.attempts, 4);
  assert_int_equal(f->retries, 3);
  assert_int_equal(f->attempts_seen[0], 1);
  assert_int_equal(f->attempts_seen[2], 3);
  assert_int_equal(f->delays[0], 100 * RESIL_MSEC);
  assert_int_equal(f->delays[1], 200 * RESIL_MSEC);
  assert_int_equal(f->delays[2], 400 * RESIL_MSEC);
  assert_int_equal(r.slept, 700 * RESIL_MSEC);
  assert_int_equal(resil_fakeclock_slept(f->fc), 700 * RESIL_MSEC);
  assert_int_equal(r.elapsed, 700 * RESIL_MSEC);
  assert_int_equal(f->give_ups, 0);
}

static void test_attempts_exhausted_keeps_last_code(void **state) {
  fx *f = *state;
  f->cfg.max_attempts = 3;
  make(f);
  scripted s = {.script = {oc(RESIL_OUTCOME_UNSET, 11), oc(RESIL_OUTCOME_UNSET, 12),
                           oc(RESIL_OUTCOME_UNSET, 13)},
                .n = 3};
  resil_retry_result r;
  assert_int_equal(resil_retry_call(f->policy, scripted_op, NULL, &s, NULL, &r), RESIL_EFAILED);
  assert_int_equal(r.reason, RESIL_STOP_ATTEMPTS);
  assert_int_equal(r.attempts, 3);
  assert_int_equal(r.last.code, 13);
  assert_int_equal(r.last.kind, RESIL_OUTCOME_RETRYABLE);
  assert_int_equal(s.calls, 3);
  assert_int_equal(f->retries, 2);
  assert_int_equal(f->give_ups, 1);
  assert_int_equal(f->give_up.reason, RESIL_STOP_ATTEMPTS);
  assert_int_equal(f->give_up.last.code, 13);
}

static void classify_two_is_fatal(void *ud, int rc, resil_outcome *out) {
  (void)ud;
  if (rc == 2) out->kind = RESIL_OUTCOME_FATAL;
  /* other codes left UNSET: the default rule applies */
}

static void test_classify_and_fatal(void **state) {
  fx *f = *state;
  f->cfg.classify = classify_two_is_fatal;
  make(f);
  scripted s = {.script = {oc(RESIL_OUTCOME_UNSET, 1), oc(RESIL_OUTCOME_UNSET, 2)}, .n = 2};
  resil_retry_result r;
  assert_int_equal(resil_retry_call(f->policy, scripted_op, NULL, &s, NULL, &r), RESIL_EFAILED);
  assert_int_equal(r.reason, RESIL_STOP_FATAL);
  assert_int_equal(r.attempts, 2);
  assert_int_equal(r.last.code, 2);
  /* An explicit FATAL from the op wins without classify. */
  scripted s2 = {.script = {oc(RESIL_OUTCOME_FATAL, 0)}, .n = 1};
  assert_int_equal(resil_retry_call(f->policy, scripted_op, NULL, &s2, NULL, &r), RESIL_EFAILED);
  assert_int_equal(r.reason, RESIL_STOP_FATAL);
  assert_int_equal(r.attempts, 1);
}

static resil_outcome ra(resil_ns d) {
  resil_outcome o = {RESIL_OUTCOME_RETRY_AFTER, 503, d, 0};
  return o;
}

static void test_retry_after_is_a_floor(void **state) {
  fx *f = *state;
  make(f);
  scripted s = {.script = {ra(2 * RESIL_SEC), ra(50 * RESIL_MSEC), oc(RESIL_OUTCOME_SUCCESS, 200)},
                .n = 3};
  resil_retry_result r;
  assert_int_equal(resil_retry_call(f->policy, scripted_op, NULL, &s, NULL, &r), RESIL_OK);
  assert_int_equal(f->delays[0], 2 * RESIL_SEC);       /* above backoff 100ms */
  assert_int_equal(f->delays[1], 200 * RESIL_MSEC);    /* backoff wins over 50ms */
  assert_int_equal(r.slept, 2200 * RESIL_MSEC);
  assert_int_equal(r.last.code, 200);
}

static void test_retry_after_too_long_gives_up_now(void **state) {
  fx *f = *state;
  f->cfg.retry_after_max = 30 * RESIL_SEC;
  make(f);
  scripted s = {.script = {ra(RESIL_HOUR)}, .n = 1};
  resil_retry_result r;
  assert_int_equal(resil_retry_call(f->policy, scripted_op, NULL, &s, NULL, &r), RESIL_EFAILED);
  assert_int_equal(r.reason, RESIL_STOP_RETRY_AFTER);
  assert_int_equal(r.attempts, 1);
  assert_int_equal(r.refused_delay, RESIL_HOUR);
  assert_int_equal(r.slept, 0);
  assert_int_equal(resil_fakeclock_sleeps(f->fc), 0); /* gave up without sleeping */
  assert_int_equal(f->give_ups, 1);
  /* Exactly the max is still honoured. */
  scripted s2 = {.script = {ra(30 * RESIL_SEC), oc(RESIL_OUTCOME_SUCCESS, 0)}, .n = 2};
  assert_int_equal(resil_retry_call(f->policy, scripted_op, NULL, &s2, NULL, &r), RESIL_OK);
  assert_int_equal(r.slept, 30 * RESIL_SEC);
}

static void test_retry_after_clamp(void **state) {
  fx *f = *state;
  f->cfg.retry_after_max = 30 * RESIL_SEC;
  f->cfg.retry_after_clamp = 1;
  make(f);
  scripted s = {.script = {ra(RESIL_HOUR), oc(RESIL_OUTCOME_SUCCESS, 0)}, .n = 2};
  resil_retry_result r;
  assert_int_equal(resil_retry_call(f->policy, scripted_op, NULL, &s, NULL, &r), RESIL_OK);
  assert_int_equal(r.slept, 30 * RESIL_SEC);
  /* A negative server delay means "now": the backoff applies. */
  scripted s2 = {.script = {ra(-5), oc(RESIL_OUTCOME_SUCCESS, 0)}, .n = 2};
  assert_int_equal(resil_retry_call(f->policy, scripted_op, NULL, &s2, NULL, &r), RESIL_OK);
  assert_int_equal(r.slept, 100 * RESIL_MSEC);
}

static void test_deadline_cuts_backoff(void **state) {
  fx *f = *state;
  f->cfg.max_attempts = 0; /* unlimited: the deadline is the only bound */
  f->cfg.max_elapsed = RESIL_SEC;
  f->cfg.backoff.kind = RESIL_BACKOFF_CONSTANT;
  f->cfg.backoff.base = 400 * RESIL_MSEC;
  make(f);
  resil_ns start = resil_fakeclock_now(f->fc);
  f->deadline_abs = start + RESIL_SEC;
  scripted s = {.script = {oc(RESIL_OUTCOME_UNSET, 1)}, .n = 1};
  resil_retry_result r;
  assert_int_equal(resil_retry_call(f->policy, scripted_op, NULL, &s, NULL, &r), RESIL_EFAILED);
  /* attempts at 0, 400, 800 ms; waiting 400 ms more would end at 1200 ms */
  assert_int_equal(r.reason, RESIL_STOP_DEADLINE);
  assert_int_equal(r.attempts, 3);
  assert_int_equal(r.refused_delay, 400 * RESIL_MSEC);
  assert_int_equal(resil_fakeclock_now(f->fc) - start, 800 * RESIL_MSEC);
  assert_int_equal(r.elapsed, 800 * RESIL_MSEC);
  assert_int_equal(f->deadline_violations, 0);
}

/* Slow attempts use up the deadline too; a wait that would end past it is
 * refused, and the clock never moves past the deadline because of a sleep. */
static void test_deadline_with_slow_attempts_property(void **state) {
  fx *f = *state;
  resil_rng rng;
  resil_rng_seed(&rng, 2024);
  for (int trial = 0; trial < 300; trial++) {
    f->cfg.max_attempts = (uint32_t)resil_rng_below(&rng, 12);
    f->cfg.max_elapsed = resil_rng_between(&rng, RESIL_MSEC, 20 * RESIL_SEC);
    f->cfg.backoff.jitter = (resil_jitter)resil_rng_below(&rng, 6);
    f->cfg.backoff.base = resil_rng_between(&rng, RESIL_MSEC, RESIL_SEC);
    f->cfg.backoff.cap = f->cfg.backoff.base * 8;
    f->cfg.use_seed = 1;
    f->cfg.seed = (uint64_t)trial;
    if (f->cfg.max_attempts == 0) f->cfg.max_attempts = 50;
    make(f);
    resil_ns start = resil_fakeclock_now(f->fc);
    f->deadline_abs = start + f->cfg.max_elapsed;
    f->deadline_violations = 0;
    scripted s = {.script = {ra(resil_rng_between(&rng, 0, 2 * RESIL_SEC))},
                  .n = 1,
                  .cost = resil_rng_between(&rng, 0, 500 * RESIL_MSEC),
                  .fc = f->fc};
    resil_retry_result r;
    assert_int_equal(resil_retry_call(f->policy, scripted_op, NULL, &s, NULL, &r), RESIL_EFAILED);
    assert_int_equal(f->deadline_violations, 0);
    resil_ns slept = resil_fakeclock_slept(f->fc);
    (void)slept;
    assert_true(r.reason == RESIL_STOP_DEADLINE || r.reason == RESIL_STOP_ATTEMPTS);
    /* Time spent = attempts * cost + sleeps; the sleeps never cross the deadline. */
    resil_ns spent = resil_fakeclock_now(f->fc) - start;
    assert_true(spent - (resil_ns)s.calls * s.cost <= f->cfg.max_elapsed);
    assert_int_equal(r.elapsed, spent);
  }
}

static void test_verify_before_retry(void **state) {
  fx *f = *state;
  make(f);
  resil_outcome unc = {RESIL_OUTCOME_RETRYABLE, 110, 0, 1};
  scripted s = {.script = {unc}, .n = 1, .verify_answer = 1};
  resil_retry_result r;
  assert_int_equal(resil_retry_call(f->policy, scripted_op, scripted_verify, &s, NULL, &r), RESIL_OK);
  assert_int_equal(r.reason, RESIL_STOP_VERIFIED);
  assert_int_equal(s.calls, 1); /* not repeated */
  assert_int_equal(s.verify_calls, 1);
  assert_int_equal(f->give_ups, 0);

  /* "did not take effect" and "cannot tell" both retry. */
  scripted s2 = {.script = {unc, unc, oc(RESIL_OUTCOME_SUCCESS, 0)}, .n = 3, .verify_answer = 0};
  assert_int_equal(resil_retry_call(f->policy, scripted_op, scripted_verify, &s2, NULL, &r), RESIL_OK);
  assert_int_equal(r.reason, RESIL_STOP_SUCCESS);
  assert_int_equal(s2.calls, 3);
  assert_int_equal(s2.verify_calls, 2);
  scripted s3 = {.script = {unc, oc(RESIL_OUTCOME_SUCCESS, 0)}, .n = 2, .verify_answer = -1};
  assert_int_equal(resil_retry_call(f->policy, scripted_op, scripted_verify, &s3, NULL, &r), RESIL_OK);
  assert_int_equal(s3.calls, 2);

  /* Certain failures never ask (scripted_verify asserts uncertain). */
  scripted s4 = {.script = {oc(RESIL_OUTCOME_RETRYABLE, 5), oc(RESIL_OUTCOME_SUCCESS, 0)}, .n = 2,
                 .verify_answer = 1};
  assert_int_equal(resil_retry_call(f->policy, scripted_op, scripted_verify, &s4, NULL, &r), RESIL_OK);
  assert_int_equal(s4.verify_calls, 0);
  assert_int_equal(s4.calls, 2);
}

static void test_cancel_before_retry(void **state) {
  fx *f = *state;
  make(f);
  resil_cancel *c;
  assert_int_equal(resil_cancel_new(&c), RESIL_OK);
  resil_cancel_fire(c);
  scripted s = {.script = {oc(RESIL_OUTCOME_UNSET, 1)}, .n = 1};
  resil_retry_result r;
  assert_int_equal(resil_retry_call(f->policy, scripted_op, NULL, &s, c, &r), RESIL_ECANCELED);
  assert_int_equal(r.reason, RESIL_STOP_CANCELLED);
  assert_int_equal(r.attempts, 1);
  assert_int_equal(f->give_ups, 1);
  /* A success is still a success even with the token fired. */
  scripted s2 = {.script = {oc(RESIL_OUTCOME_UNSET, 0)}, .n = 1};
  assert_int_equal(resil_retry_call(f->policy, scripted_op, NULL, &s2, c, &r), RESIL_OK);
  resil_cancel_free(c);
}

struct canceller {
  resil_cancel *c;
};

static void *cancel_soon(void *arg) {
  struct canceller *k = arg;
  struct timespec ts = {0, 20 * 1000 * 1000};
  nanosleep(&ts, NULL);
  resil_cancel_fire(k->c);
  return NULL;
}

/* The real clock: a one-hour backoff is interrupted by another thread. */
static void test_cancel_wakes_blocking_call(void **state) {
  (void)state;
  resil_retry_config c;
  resil_retry_config_init(&c);
  c.backoff.jitter = RESIL_JITTER_NONE;
  c.backoff.base = RESIL_HOUR;
  c.backoff.cap = RESIL_HOUR;
  resil_retry_policy *p;
  assert_int_equal(resil_retry_policy_new(&p, &c), RESIL_OK);
  struct canceller k;
  assert_int_equal(resil_cancel_new(&k.c), RESIL_OK);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, cancel_soon, &k), 0);
  scripted s = {.script = {oc(RESIL_OUTCOME_UNSET, 1)}, .n = 1};
  resil_retry_result r;
  assert_int_equal(resil_retry_call(p, scripted_op, NULL, &s, k.c, &r), RESIL_ECANCELED);
  pthread_join(t, NULL);
  assert_int_equal(r.reason, RESIL_STOP_CANCELLED);
  assert_int_equal(s.calls, 1);
  assert_true(r.slept < RESIL_HOUR); /* counts what was actually waited */
  assert_true(r.slept > 0);
  resil_cancel_free(k.c);
  resil_retry_policy_free(p);
}

static void test_step_api(void **state) {
  fx *f = *state;
  f->cfg.max_elapsed = 10 * RESIL_SEC;
  f->cfg.max_attempts = 3;
  make(f);
  resil_retry_state st;
  int ud = 0;
  resil_retry_begin(&st, f->policy, NULL, &ud);
  assert_int_equal(resil_retry_remaining(&st), 10 * RESIL_SEC);
  assert_int_equal(resil_retry_attempt_timeout(&st, 2 * RESIL_SEC), 2 * RESIL_SEC);
  assert_int_equal(resil_retry_attempt_timeout(&st, 0), 10 * RESIL_SEC);
  resil_fakeclock_advance(f->fc, 9 * RESIL_SEC);
  assert_int_equal(resil_retry_attempt_timeout(&st, 2 * RESIL_SEC), RESIL_SEC);

  resil_outcome o = {RESIL_OUTCOME_RETRYABLE, 3, 0, 1};
  resil_step s = resil_retry_next(&st, &o);
  assert_int_equal(s.kind, RESIL_STEP_RETRY);
  assert_int_equal(s.delay, 100 * RESIL_MSEC);
  assert_true(s.verify);
  assert_int_equal(resil_retry_attempts(&st), 1);
  resil_fakeclock_advance(f->fc, s.delay);
  o.uncertain = 0;
  s = resil_retry_next(&st, &o);
  assert_int_equal(s.kind, RESIL_STEP_RETRY);
  assert_false(s.verify);
  s = resil_retry_next(&st, &o);
  assert_int_equal(s.kind, RESIL_STEP_STOP);
  assert_int_equal(s.reason, RESIL_STOP_ATTEMPTS);
  /* Stopped is sticky. */
  resil_outcome ok = {RESIL_OUTCOME_SUCCESS, 0, 0, 0};
  s = resil_retry_next(&st, &ok);
  assert_int_equal(s.reason, RESIL_STOP_ATTEMPTS);
  resil_retry_result r;
  resil_retry_result_get(&st, &r);
  assert_int_equal(r.attempts, 3);
  assert_int_equal(f->give_ups, 1);

  /* abort during a wait, and verified from the caller's own check. */
  resil_retry_begin(&st, f->policy, NULL, NULL);
  s = resil_retry_next(&st, &o);
  assert_int_equal(s.kind, RESIL_STEP_RETRY);
  s = resil_retry_abort(&st);
  assert_int_equal(s.reason, RESIL_STOP_CANCELLED);
  assert_int_equal(resil_retry_abort(&st).reason, RESIL_STOP_CANCELLED);
  resil_retry_begin(&st, f->policy, NULL, NULL);
  s = resil_retry_next(&st, &o);
  resil_retry_verified(&st);
  resil_retry_result_get(&st, &r);
  assert_int_equal(r.reason, RESIL_STOP_VERIFIED);
}

static void test_measure_time_off_reads_no_clock(void **state) {
  fx *f = *state;
  f->cfg.measure_time = 0;
  make(f);
  scripted s = {.script = {oc(RESIL_OUTCOME_UNSET, 1), oc(RESIL_OUTCOME_UNSET, 0)}, .n = 2};
  resil_retry_result r;
  assert_int_equal(resil_retry_call(f->policy, scripted_op, NULL, &s, NULL, &r), RESIL_OK);
  assert_int_equal(r.elapsed, -1);
  assert_int_equal(r.slept, 100 * RESIL_MSEC);
  /* With a deadline the clock is needed, whatever measure_time says. */
  f->cfg.max_elapsed = RESIL_MIN;
  make(f);
  s.calls = 0;
  assert_int_equal(resil_retry_call(f->policy, scripted_op, NULL, &s, NULL, &r), RESIL_OK);
  assert_int_equal(r.elapsed, 100 * RESIL_MSEC);
}

static void test_seeded_jitter_reproducible(void **state) {
  fx *f = *state;
  f->cfg.backoff.jitter = RESIL_JITTER_FULL;
  f->cfg.use_seed = 1;
  f->cfg.seed = 1234;
  f->cfg.max_attempts = 6;
  resil_ns first[5];
  for (int round = 0; round < 2; round++) {
    make(f); /* a fresh policy restarts the stream counter */
    f->retries = 0;
    scripted s = {.script = {oc(RESIL_OUTCOME_UNSET, 1)}, .n = 1};
    resil_retry_call(f->policy, scripted_op, NULL, &s, NULL, NULL);
    assert_int_equal(f->retries, 5);
    for (int i = 0; i < 5; i++) {
      if (round == 0) first[i] = f->delays[i];
      else assert_int_equal(first[i], f->delays[i]);
    }
  }
  /* A second call on the same policy draws a different stream. */
  f->retries = 0;
  scripted s = {.script = {oc(RESIL_OUTCOME_UNSET, 1)}, .n = 1};
  resil_retry_call(f->policy, scripted_op, NULL, &s, NULL, NULL);
  assert_true(memcmp(first, f->delays, sizeof first) != 0);
}

static void test_no_allocation_on_success_path(void **state) {
  fx *f = *state;
  f->cfg.max_elapsed = RESIL_MIN;
  make(f);
  scripted s = {.script = {oc(RESIL_OUTCOME_UNSET, 0)}, .n = 1};
  long before = heap_calls;
  for (int i = 0; i < 1000; i++) {
    s.calls = 0;
    assert_int_equal(resil_retry_call(f->policy, scripted_op, NULL, &s, NULL, NULL), RESIL_OK);
  }
  assert_int_equal(heap_calls - before, 0);
  /* Policy creation does allocate (through the injected allocator). */
  before = heap_calls;
  make(f);
  assert_true(heap_calls - before >= 1);
}

static int alloc_calls, alloc_fail;
static void *my_malloc(void *ud, size_t n) {
  (void)ud;
  alloc_calls++;
  return alloc_fail ? NULL : __real_malloc(n);
}
static void *my_realloc(void *ud, void *p, size_t n) {
  (void)ud;
  return __real_realloc(p, n);
}
static void my_free(void *ud, void *p) {
  (void)ud;
  free(p);
}

static void test_injected_allocator(void **state) {
  (void)state;
  resil_retry_config c;
  resil_retry_config_init(&c);
  c.alloc.malloc = my_malloc;
  c.alloc.realloc = my_realloc;
  c.alloc.free = my_free;
  resil_retry_policy *p;
  alloc_calls = 0;
  assert_int_equal(resil_retry_policy_new(&p, &c), RESIL_OK);
  assert_int_equal(alloc_calls, 1);
  resil_retry_policy_free(p);
  alloc_fail = 1;
  assert_int_equal(resil_retry_policy_new(&p, &c), RESIL_ENOMEM);
  assert_null(p);
  alloc_fail = 0;
}

/* One policy shared by threads, each with its own fake-clock-free op. */
struct worker {
  resil_retry_policy *p;
  int ok;
};

static int fail_twice(void *ud, resil_outcome *out) {
  (void)out;
  int *n = ud;
  return (*n)++ < 2 ? 1 : 0;
}

static void *worker_main(void *arg) {
  struct worker *w = arg;
  for (int i = 0; i < 2000; i++) {
    int n = 0;
    resil_retry_result r;
    if (resil_retry_call(w->p, fail_twice, NULL, &n, NULL, &r) == RESIL_OK && r.attempts == 3) w->ok++;
  }
  return NULL;
}

static void test_shared_policy_threads(void **state) {
  fx *f = *state;
  f->cfg.on_retry = NULL; /* the fixture's recorder is not thread-safe */
  f->cfg.backoff.jitter = RESIL_JITTER_FULL;
  f->cfg.use_seed = 1;
  make(f);
  struct worker w[4];
  pthread_t t[4];
  for (int i = 0; i < 4; i++) {
    w[i].p = f->policy;
    w[i].ok = 0;
    assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
    assert_int_equal(w[i].ok, 2000);
  }
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_defaults),
      cmocka_unit_test(test_policy_validation),
      T(test_success_first_attempt),
      T(test_fails_then_succeeds_with_exact_delays),
      T(test_attempts_exhausted_keeps_last_code),
      T(test_classify_and_fatal),
      T(test_retry_after_is_a_floor),
      T(test_retry_after_too_long_gives_up_now),
      T(test_retry_after_clamp),
      T(test_deadline_cuts_backoff),
      T(test_deadline_with_slow_attempts_property),
      T(test_verify_before_retry),
      T(test_cancel_before_retry),
      cmocka_unit_test(test_cancel_wakes_blocking_call),
      T(test_step_api),
      T(test_measure_time_off_reads_no_clock),
      T(test_seeded_jitter_reproducible),
      T(test_no_allocation_on_success_path),
      cmocka_unit_test(test_injected_allocator),
      T(test_shared_policy_threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
