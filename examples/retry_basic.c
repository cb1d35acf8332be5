/* retry_basic: retry a flaky operation with exponential backoff and jitter.
 *
 * The operation fails twice with a transient error, then succeeds. resil
 * decides when to try again; the on_retry hook shows each decision.
 *
 *   cc retry_basic.c $(pkg-config --cflags --libs resil) && ./a.out
 */
#include <errno.h>
#include <stdio.h>

#include <resil/resil.h>

struct flaky {
  int calls;
  int failures_left;
};

/* One attempt. Return 0 for success; anything else is classified by the
 * policy (here: the default, non-zero = retryable). */
static int flaky_op(void *ud, resil_outcome *out) {
  struct flaky *f = ud;
  (void)out;
  f->calls++;
  if (f->failures_left > 0) {
    f->failures_left--;
    return ECONNRESET;
  }
  return 0;
}

static void on_retry(void *ud, const resil_retry_event *ev) {
  (void)ud;
  char d[32];
  resil_duration_format(ev->delay, d, sizeof d);
  printf("attempt %u/%u failed (code %d); retrying in %s\n", ev->attempt, ev->max_attempts,
         ev->outcome->code, d);
}

int main(void) {
  resil_retry_config cfg;
  resil_retry_config_init(&cfg);
  cfg.max_attempts = 5;
  cfg.backoff.base = 10 * RESIL_MSEC; /* short, so the example runs quickly */
  cfg.backoff.cap = 200 * RESIL_MSEC;
  cfg.on_retry = on_retry;

  resil_retry_policy *policy;
  resil_err err = resil_retry_policy_new(&policy, &cfg);
  if (err != RESIL_OK) {
    fprintf(stderr, "policy: %s\n", resil_strerror(err));
    return 1;
  }

  struct flaky f = {0, 2};
  resil_retry_result res;
  err = resil_retry_call(policy, flaky_op, NULL, &f, NULL, &res);
  printf("resil %s: %s after %u attempts (%s)\n", resil_version(), resil_strerror(err),
         res.attempts, resil_stop_reason_text(res.reason));
  resil_retry_policy_free(policy);
  return err == RESIL_OK && f.calls == 3 ? 0 : 1;
}
