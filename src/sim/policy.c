/* Names of contention's strategies and of the client policies of collapse
 * and independent, in both directions. */
#include <stdio.h>
#include <string.h>

#include "sim/sim.h"

static const char *const strategy_names[SIM_STRAT_COUNT] = {"none", "exponential", "full",
                                                             "equal", "decorrelated"};

const char *sim_strategy_name(sim_strategy s) {
  return (unsigned)s < SIM_STRAT_COUNT ? strategy_names[s] : "unknown";
}

resil_err sim_strategy_parse(const char *s, sim_strategy *out) {
  for (unsigned i = 0; i < SIM_STRAT_COUNT; i++)
    if (strcmp(s, strategy_names[i]) == 0) {
      *out = (sim_strategy)i;
      return RESIL_OK;
    }
  return RESIL_EINVAL;
}

static const char *const retry_names[] = {"none", "immediate", "backoff"};
static const struct {
  const char *name;
  unsigned bit;
} guard_names[] = {
    {"budget", SIM_GUARD_BUDGET},
    {"breaker", SIM_GUARD_BREAKER},
    {"adaptive", SIM_GUARD_ADAPTIVE},
};
#define N_GUARDS (sizeof guard_names / sizeof guard_names[0])

resil_err sim_policy_parse(const char *s, sim_policy *out) {
  sim_policy p = {SIM_RETRY_IMMEDIATE, 0};
  int have_retry = 0;
  const char *part = s;
  for (;;) {
    const char *end = strchr(part, '+');
    size_t len = end ? (size_t)(end - part) : strlen(part);
    int matched = 0;
    for (unsigned i = 0; i < sizeof retry_names / sizeof retry_names[0] && !matched; i++) {
      if (strlen(retry_names[i]) == len && strncmp(part, retry_names[i], len) == 0) {
        if (have_retry) return RESIL_EINVAL; /* "backoff+immediate" */
        p.retry = (sim_retry_mode)i;
        have_retry = matched = 1;
      }
    }
    for (unsigned i = 0; i < N_GUARDS && !matched; i++) {
      if (strlen(guard_names[i].name) == len && strncmp(part, guard_names[i].name, len) == 0) {
        if (p.guards & guard_names[i].bit) return RESIL_EINVAL; /* twice */
        p.guards |= guard_names[i].bit;
        matched = 1;
      }
    }
    if (!matched) return RESIL_EINVAL;
    if (end == NULL) break;
    part = end + 1;
  }
  *out = p;
  return RESIL_OK;
}

const char *sim_policy_name(sim_policy p, char buf[SIM_POLICY_NAME_MAX]) {
  size_t n = (size_t)snprintf(buf, SIM_POLICY_NAME_MAX, "%s",
                              (unsigned)p.retry < 3 ? retry_names[p.retry] : "unknown");
  for (unsigned i = 0; i < N_GUARDS; i++)
    if ((p.guards & guard_names[i].bit) && n < SIM_POLICY_NAME_MAX)
      n += (size_t)snprintf(buf + n, SIM_POLICY_NAME_MAX - n, "+%s", guard_names[i].name);
  return buf;
}

int sim_policy_equal(sim_policy a, sim_policy b) {
  return a.retry == b.retry && a.guards == b.guards;
}

/* ---- guards ---------------------------------------------------------------- */

void sim_guard_config_init(sim_guard_config *g, double budget_rate, double budget_burst) {
  g->budget_rate = budget_rate;
  g->budget_burst = budget_burst;
  g->breaker_window = 100;
  g->breaker_minimum = 20;
  g->breaker_failure_rate = 0.5;
  g->breaker_open = 5 * RESIL_SEC;
  g->adaptive_window = 10 * RESIL_SEC;
  g->adaptive_k = 2;
}

resil_err sim_guard_config_validate(const sim_guard_config *g) {
  if (!(g->budget_rate >= 1e-9 && g->budget_rate <= 1e9) ||
      !(g->budget_burst >= 1 && g->budget_burst <= 1e9))
    return RESIL_EINVAL;
  if (g->breaker_window < 1 || g->breaker_minimum < 1 || g->breaker_open <= 0) return RESIL_EINVAL;
  if (!(g->breaker_failure_rate > 0 && g->breaker_failure_rate <= 1)) return RESIL_EINVAL;
  if (g->adaptive_window < 10 || !(g->adaptive_k >= 1 && g->adaptive_k <= 1e6))
    return RESIL_EINVAL;
  return RESIL_OK;
}

resil_err sim_guards_new(const sim_guard_config *g, unsigned guards, resil_clock clk,
                         resil_rng *rng, resil_budget **bucket, resil_budget **adaptive,
                         resil_breaker **breaker) {
  resil_err e;
  if (guards & SIM_GUARD_BUDGET) {
    resil_budget_config bc;
    resil_budget_config_init(&bc);
    bc.kind = RESIL_BUDGET_TOKEN_BUCKET;
    bc.rate = g->budget_rate;
    bc.burst = g->budget_burst;
    bc.name = "retries";
    bc.clock = clk;
    if ((e = resil_budget_new(bucket, &bc)) != RESIL_OK) return e;
  }
  if (guards & SIM_GUARD_ADAPTIVE) {
    resil_budget_config bc;
    resil_budget_config_init(&bc);
    bc.kind = RESIL_BUDGET_ADAPTIVE;
    bc.window = g->adaptive_window;
    bc.k = g->adaptive_k;
    bc.name = "adaptive";
    bc.clock = clk;
    bc.seed = resil_rng_next(rng);
    bc.use_seed = 1;
    if ((e = resil_budget_new(adaptive, &bc)) != RESIL_OK) return e;
  }
  if (guards & SIM_GUARD_BREAKER) {
    resil_breaker_config k;
    resil_breaker_config_init(&k);
    k.name = "server";
    k.trip = RESIL_TRIP_COUNT_WINDOW;
    k.window_calls = g->breaker_window;
    k.minimum_calls = g->breaker_minimum;
    k.failure_rate = g->breaker_failure_rate;
    k.open_duration = g->breaker_open;
    k.open_duration_max = g->breaker_open;
    k.half_open_probes = 1;
    k.success_threshold = 1;
    k.clock = clk;
    k.seed = resil_rng_next(rng);
    k.use_seed = 1;
    if ((e = resil_breaker_new(breaker, &k)) != RESIL_OK) return e;
  }
  return RESIL_OK;
}
