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
