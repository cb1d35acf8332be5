/* The fleet-wide retry budget: a GCRA token bucket in Redis, behind a
 * resil_budget_backend. See include/resil/fleet.h.
 *
 * GCRA: T = ceil(1e6 / rate) us per retry, tau = floor((burst - 1) * T) us.
 * The state is TAT (the time the bucket is full again), in microseconds of
 * the server's clock. A retry at `now` is granted iff TAT - now <= tau, and
 * then TAT = max(TAT, now) + T. Redis runs a script with nothing else in
 * between, so the grants are ordered and, as for the local bucket (see
 * src/core/budget.c), n grants within t seconds need
 * (n - 1) * T - tau <= t * 1e6, i.e. n <= burst + rate * t. Rounding T up
 * only grants less. Microsecond times stay below 2^53, exact in Lua's
 * doubles.
 *
 * TIME in a script that writes: Redis >= 5 replicates a script's effects,
 * not the script, so it is allowed; on 3.2 / 4 the script first switches
 * to effects replication (redis.replicate_commands). */
#define _GNU_SOURCE
#include <math.h> /* isfinite only */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/redis_conn.h"
#include "resil/fleet.h"

static const char BUCKET_LUA[] =
    "if redis.replicate_commands then pcall(redis.replicate_commands) end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local T, tau = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0\n"
    "if tat < now then tat = now end\n"
    "if tat - now > tau then return 0 end\n"
    "tat = tat + T\n"
    "redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX',\n"
    "           math.floor((tat - now) / 1000) + 1000)\n"
    "return 1\n";

#define NAME_MAX_LEN 200

typedef struct fleet_budget {
  resil__fleet_conn conn;
  char sha[41];
  char key[sizeof(((resil__fleet_conn *)0)->prefix) + 8 + NAME_MAX_LEN];
  char interval[32], tau[32];
} fleet_budget;

static resil_err fb_retry(void *ud, unsigned flags, int *granted) {
  (void)flags;
  fleet_budget *f = ud;
  const char *argv[3] = {f->key, f->interval, f->tau};
  redisReply *r = NULL;
  resil_err e = resil__fleet_conn_eval(&f->conn, f->sha, BUCKET_LUA, 1, 3, argv, &r);
  if (e != RESIL_OK) return e;
  if (r->type != REDIS_REPLY_INTEGER) {
    freeReplyObject(r);
    return RESIL_ESTORE;
  }
  *granted = r->integer == 1;
  freeReplyObject(r);
  return RESIL_OK;
}

static void fb_close(void *ud) {
  fleet_budget *f = ud;
  resil__fleet_conn_free(&f->conn);
  free(f);
}

static void fb_last_error(void *ud, char *buf, size_t len) {
  fleet_budget *f = ud;
  resil__fleet_conn_error(&f->conn, buf, len);
}

static const resil_budget_backend fleet_budget_backend = {
    RESIL_BUDGET_BACKEND_VERSION, "redis", fb_retry, NULL, fb_close, fb_last_error,
};

static resil_err bad(char *errbuf, size_t errlen, const char *msg) {
  if (errbuf && errlen) snprintf(errbuf, errlen, "%s", msg);
  return RESIL_EINVAL;
}

resil_err resil_fleet_budget_open(resil_budget **out, const char *redis_url, const char *name,
                                  double rate, double burst, const resil_budget_config *fallback,
                                  resil_log_fn log, void *log_ud, char *errbuf, size_t errlen) {
  char scratch[8];
  if (errbuf == NULL || errlen == 0) {
    errbuf = scratch;
    errlen = sizeof scratch;
  }
  errbuf[0] = '\0';
  if (out == NULL) return bad(errbuf, errlen, "no output handle");
  *out = NULL;
  if (name == NULL || name[0] == '\0' || strlen(name) > NAME_MAX_LEN)
    return bad(errbuf, errlen, "the budget name must be 1 to 200 bytes");
  if (!(isfinite(rate) && rate >= 1e-6 && rate <= 1e6))
    return bad(errbuf, errlen, "the budget rate must be 1e-6 to 1e6 per second");
  if (!(isfinite(burst) && burst >= 1))
    return bad(errbuf, errlen, "the budget burst must be at least 1");
  /* ceil and floor without libm (the library does not link it). */
  double T = (double)(unsigned long long)(1e6 / rate);
  if (T < 1e6 / rate) T += 1;
  if (T < 1) T = 1;
  if (burst * T > 1e15)
    return bad(errbuf, errlen, "the budget burst is too large for its rate");
  double tau = (double)(unsigned long long)((burst - 1) * T);

  fleet_budget *f = calloc(1, sizeof *f);
  if (f == NULL) return RESIL_ENOMEM;
  resil_err e = resil__fleet_conn_init(&f->conn, redis_url, errbuf, errlen);
  if (e != RESIL_OK) {
    free(f);
    return e;
  }
  snprintf(f->key, sizeof f->key, "%sbudget:%s", f->conn.prefix, name);
  snprintf(f->interval, sizeof f->interval, "%.0f", T);
  snprintf(f->tau, sizeof f->tau, "%.0f", tau);

  resil_budget_config fb;
  if (fallback) {
    fb = *fallback;
  } else {
    resil_budget_config_init(&fb);
    fb.rate = rate;
    fb.burst = burst;
  }
  if (fb.name == NULL) fb.name = name;
  e = resil_budget_new_backend(out, &fleet_budget_backend, f, &fb, log, log_ud);
  if (e != RESIL_OK) {
    if (e == RESIL_EINVAL) bad(errbuf, errlen, "invalid fallback budget config");
    fb_close(f);
  }
  return e;
}
