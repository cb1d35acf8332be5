/* Scenario `collapse`: metastable failure under load.
 *
 * Model. New requests arrive as a Poisson process: `rate` per second (40),
 * `spike_rate` (80) during [spike_from, spike_to) (20s..25s), for `duration`
 * (80s). Each request makes up to `attempts` (3) attempts. An attempt travels
 * to the server in Exp(net_mean) (100ms), the server works on it, and the
 * reply travels back in Exp(net_mean). The server's latency grows with
 * concurrency: with L attempts in progress, each takes work_base +
 * work_per_inflight * L (1s + 10ms * L), processor-sharing style (server.c):
 * when L grows, the work already inside slows down too. The client gives up on an attempt `timeout` (3s)
 * after sending it; a reply after that is ignored, but the server did (and
 * still does) the work. When an attempt times out, the client retries if
 * the policy allows it: at once (immediate) or after resil's exponential
 * backoff with full jitter (1s base, 10s cap; retry n = the attempt that
 * failed).
 *
 * Why it is metastable: served work per second is in-flight / latency =
 * L / (1 + 0.01 L) < 100 for every L, so any offered load above 100 attempts
 * per second grows the backlog without end. 40/s settles at L = 67 (1.7s per
 * attempt, well inside the timeout); the spike pushes latencies past 3s, and
 * once most attempts time out, every request makes 3 of them: 120/s, which
 * keeps the server past the timeout for ever, although the load that caused
 * it is long gone.
 *
 * Guards, all resil objects on the simulated clock, shared by the whole
 * client population (resil's budgets and breakers are process-wide):
 *   budget    token bucket (4 retries/s, burst 10): a retry needs a token
 *   breaker   count window (100 calls, at least 20, 50 % failures), open 5s,
 *             one probe; checked before every attempt, and every attempt's
 *             result (success, or timeout = failure) is recorded
 *   adaptive  SRE client-side throttling (k = 2 over 10s): every attempt,
 *             first or retry, may be rejected locally
 * A request refused by a guard fails at once (counted as `rejected`), and
 * the order of the checks is the retry engine's: budget_request, then
 * breaker_acquire before each attempt; after it, the breaker and the budgets
 * record the result; budget_retry last, before a retry.
 *
 * Randomness: arrivals come from their own generator, seeded without the
 * policy, so every policy faces exactly the same requests in a given run
 * (common random numbers: the comparison is fair even for one run); the
 * network and the jitter come from a generator seeded with the policy too.
 *
 * Time. Before t = 0 the system runs for `warmup` (20s) at the base rate,
 * unrecorded, so each run starts in steady state: the server's backlog is
 * at its usual level and the guards have a history (adaptive throttling
 * started cold would reject most of the first requests: no attempt has
 * been accepted yet). The spike's times and the series count from t = 0.
 * The run ends when every request has succeeded or failed (arrivals stop at
 * `duration`); the per-second series cover [0, duration). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sim/sim.h"

enum { EV_ARRIVE, EV_SEND, EV_SRV_IN, EV_SRV_DONE, EV_REPLY, EV_TIMEOUT };
enum { OPEN = 0, SUCCEEDED = 1, FAILED = 2 };
#define NO_SECOND UINT32_MAX

typedef struct request {
  resil_ns sent_at;  /* the current attempt's */
  resil_ns prev;     /* previous backoff delay */
  resil_permit permit;
  uint32_t attempt;  /* attempts sent so far; the current one's number */
  uint32_t second;   /* arrival second, or NO_SECOND during the warm-up */
  uint8_t pending;   /* the current attempt awaits its reply or timeout */
  uint8_t state;
} request;

typedef struct run {
  const sim_collapse_config *c;
  sim_policy pol;
  resil_ns off;      /* the warm-up: simulated time T is run time T - off */
  sim_heap heap;
  sim_clock clock;
  resil_rng arrivals, rng;
  resil_backoff backoff;
  resil_budget *bucket, *adaptive;
  resil_breaker *breaker;
  request *req;
  size_t nreq, capreq, open;
  int arriving;            /* an EV_ARRIVE is pending */
  sim_ps_server server;
  sim_collapse_second *sec;
  size_t nsec, cur_sec;    /* seconds whose in-flight was recorded */
  double *succ_by_arrival; /* nsec of them */
  sim_collapse_run *out;
} run;

void sim_collapse_config_init(sim_collapse_config *c) {
  memset(c, 0, sizeof *c);
  c->seed = 1;
  c->runs = 1;
  c->rate = 40;
  c->spike_rate = 80;
  c->spike_from = 20 * RESIL_SEC;
  c->spike_to = 25 * RESIL_SEC;
  c->duration = 80 * RESIL_SEC;
  c->warmup = 20 * RESIL_SEC;
  c->timeout = 3 * RESIL_SEC;
  c->attempts = 3;
  c->net_mean = 100 * RESIL_MSEC;
  c->work_base = RESIL_SEC;
  c->work_per_inflight = 10 * RESIL_MSEC;
  c->base = RESIL_SEC;
  c->cap = 10 * RESIL_SEC;
  sim_guard_config_init(&c->guard, 4, 10);
  static const sim_policy defaults[] = {
      {SIM_RETRY_NONE, 0},
      {SIM_RETRY_IMMEDIATE, 0},
      {SIM_RETRY_BACKOFF, 0},
      {SIM_RETRY_IMMEDIATE, SIM_GUARD_BUDGET},
      {SIM_RETRY_BACKOFF, SIM_GUARD_BUDGET},
      {SIM_RETRY_BACKOFF, SIM_GUARD_BREAKER},
      {SIM_RETRY_BACKOFF, SIM_GUARD_ADAPTIVE},
      {SIM_RETRY_BACKOFF, SIM_GUARD_BUDGET | SIM_GUARD_BREAKER},
  };
  c->npolicies = sizeof defaults / sizeof defaults[0];
  memcpy(c->policies, defaults, sizeof defaults);
}

resil_err sim_collapse_validate(const sim_collapse_config *c) {
  if (c->runs < 1 || c->npolicies < 1 || c->npolicies > SIM_MAX_POLICIES) return RESIL_EINVAL;
  if (!(c->rate > 0 && c->rate <= 1e6) || !(c->spike_rate > 0 && c->spike_rate <= 1e6))
    return RESIL_EINVAL;
  if (c->duration < RESIL_SEC || c->duration > 24 * RESIL_HOUR) return RESIL_EINVAL;
  if (c->warmup < 0 || c->warmup > 24 * RESIL_HOUR) return RESIL_EINVAL;
  if (c->spike_from < 0 || c->spike_to <= c->spike_from) return RESIL_EINVAL;
  /* The verdict needs SIM_RECOVERY_TAIL seconds after the spike. */
  if (c->spike_to > c->duration - SIM_RECOVERY_TAIL * RESIL_SEC) return RESIL_EINVAL;
  if (c->timeout <= 0 || c->attempts < 1 || c->net_mean < 0) return RESIL_EINVAL;
  if (c->work_base < 0 || c->work_per_inflight < 0) return RESIL_EINVAL;
  if (c->base <= 0 || c->cap < c->base) return RESIL_EINVAL;
  if (sim_guard_config_validate(&c->guard) != RESIL_OK) return RESIL_EINVAL;
  for (size_t i = 0; i < c->npolicies; i++)
    if ((unsigned)c->policies[i].retry > SIM_RETRY_BACKOFF || (c->policies[i].guards & ~7u))
      return RESIL_EINVAL;
  return RESIL_OK;
}

/* ---- setting up and tearing down a run -------------------------------------- */

static void run_free(run *r) {
  sim_heap_free(&r->heap);
  sim_ps_free(&r->server);
  resil_budget_free(r->bucket);
  resil_budget_free(r->adaptive);
  resil_breaker_free(r->breaker);
  sim_clock_free(&r->clock);
  free(r->req);
  free(r->succ_by_arrival);
}

static resil_err run_init(run *r, const sim_collapse_config *c, sim_policy p, uint32_t idx,
                          sim_collapse_second *sec, size_t nsec, sim_collapse_run *out) {
  memset(r, 0, sizeof *r);
  r->c = c;
  r->pol = p;
  r->off = c->warmup;
  r->sec = sec;
  r->nsec = nsec;
  r->out = out;
  memset(sec, 0, nsec * sizeof *sec);
  memset(out, 0, sizeof *out);

  uint32_t variant = p.retry | p.guards << 4;
  uint64_t param = sim_double_bits(c->rate) ^ sim_double_bits(c->spike_rate) << 1;
  resil_rng_seed(&r->arrivals, sim_seed(c->seed, SIM_COLLAPSE, 0xFFFFu, param, idx));
  resil_rng_seed(&r->rng, sim_seed(c->seed, SIM_COLLAPSE, variant, param, idx));

  resil_backoff_init(&r->backoff);
  r->backoff.kind = RESIL_BACKOFF_EXPONENTIAL;
  r->backoff.jitter = RESIL_JITTER_FULL;
  r->backoff.base = c->base;
  r->backoff.cap = c->cap;

  resil_err e = sim_clock_init(&r->clock);
  if (e != RESIL_OK) return e;
  /* Expected arrivals plus a margin; more grows the array. */
  double expect = c->rate * ((double)(c->duration + c->warmup) / 1e9) +
                  (c->spike_rate - c->rate) * ((double)(c->spike_to - c->spike_from) / 1e9);
  r->capreq = (size_t)(expect > 0 ? expect * 1.2 : 0) + 64;
  r->req = malloc(r->capreq * sizeof *r->req);
  r->succ_by_arrival = calloc(nsec, sizeof *r->succ_by_arrival);
  if (r->req == NULL || r->succ_by_arrival == NULL) return RESIL_ENOMEM;
  e = sim_heap_init(&r->heap, 4 * (size_t)(c->spike_rate > c->rate ? c->spike_rate : c->rate));
  if (e != RESIL_OK) return e;
  e = sim_ps_init(&r->server, c->work_base, c->work_per_inflight, 256);
  if (e != RESIL_OK) return e;

  resil_clock clk = sim_clock_get(&r->clock);
  e = sim_guards_new(&c->guard, p.guards, clk, &r->rng, &r->bucket, &r->adaptive, &r->breaker);
  if (e != RESIL_OK) return e;
  return RESIL_OK;
}

/* ---- the model -------------------------------------------------------------- */

static sim_collapse_second *second_at(run *r, resil_ns t) {
  if (t < r->off) return NULL;
  resil_ns s = (t - r->off) / RESIL_SEC;
  return (size_t)s < r->nsec ? &r->sec[s] : NULL;
}

#define COUNT(r, t, field)                                                     \
  do {                                                                         \
    sim_collapse_second *s_ = second_at((r), (t));                             \
    if (s_) s_->field += 1;                                                    \
  } while (0)

/* Record the server's in-flight count for every second that ended before t. */
static void seconds_until(run *r, resil_ns t) {
  while (r->cur_sec < r->nsec && t - r->off >= (resil_ns)(r->cur_sec + 1) * RESIL_SEC)
    r->sec[r->cur_sec++].inflight = (double)sim_ps_inflight(&r->server);
}

/* In simulated time (the warm-up included). */
static double rate_at(const run *r, resil_ns t) {
  const sim_collapse_config *c = r->c;
  return t >= c->spike_from + r->off && t < c->spike_to + r->off ? c->spike_rate : c->rate;
}

/* The next rate change after t (or the end of arrivals). */
static resil_ns segment_end(const run *r, resil_ns t) {
  const sim_collapse_config *c = r->c;
  if (t < c->spike_from + r->off) return c->spike_from + r->off;
  if (t < c->spike_to + r->off) return c->spike_to + r->off;
  return c->duration + r->off;
}

/* The next arrival of the piecewise-constant Poisson process after t, or -1
 * after the end. A gap crossing a rate change is redrawn from the change:
 * exact, since the exponential is memoryless. */
static resil_ns next_arrival(run *r, resil_ns t) {
  while (t < r->c->duration + r->off) {
    resil_ns end = segment_end(r, t);
    resil_ns next = resil_ns_add(t, sim_poisson_gap(&r->arrivals, rate_at(r, t)));
    if (next < end) return next;
    t = end;
  }
  return -1;
}

static void finish(run *r, request *q, int state) {
  q->state = (uint8_t)state;
  r->open--;
  if (state == SUCCEEDED && q->second != NO_SECOND) r->succ_by_arrival[q->second] += 1;
}

static void reject(run *r, request *q, resil_ns t) {
  r->out->rejected++;
  COUNT(r, t, rejected);
  finish(r, q, FAILED);
}

static resil_err push(run *r, resil_ns t, uint32_t kind, uint32_t id, uint32_t aux) {
  return sim_heap_push(&r->heap, t, kind, id, aux);
}

/* Send the next attempt of request id at t, if the breaker lets it. */
static resil_err send_attempt(run *r, uint32_t id, resil_ns t) {
  request *q = &r->req[id];
  if (r->breaker && resil_breaker_acquire(r->breaker, &q->permit, NULL) != RESIL_OK) {
    reject(r, q, t);
    return RESIL_OK;
  }
  q->attempt++;
  q->pending = 1;
  q->sent_at = t;
  r->out->attempts++;
  COUNT(r, t, attempts);
  if (q->attempt > 1) COUNT(r, t, retries);
  resil_err e = push(r, resil_ns_add(t, sim_exp_ns(&r->rng, r->c->net_mean)), EV_SRV_IN, id,
                     q->attempt);
  if (e == RESIL_OK) e = push(r, resil_ns_add(t, r->c->timeout), EV_TIMEOUT, id, q->attempt);
  return e;
}

static unsigned result_flags(const request *q) {
  /* Every retry here follows a timeout and was granted with that flag. */
  return q->attempt > 1 ? RESIL_BUDGET_RETRY | RESIL_BUDGET_TIMEOUT : 0;
}

static void record(run *r, request *q, int success, resil_ns t) {
  if (r->breaker)
    resil_breaker_record(r->breaker, &q->permit, success ? RESIL_CALL_SUCCESS : RESIL_CALL_FAILURE,
                         t - q->sent_at);
  resil_budget_result(r->bucket, success, result_flags(q)); /* NULL: no-op */
  resil_budget_result(r->adaptive, success, result_flags(q));
}

static resil_err on_arrive(run *r, resil_ns t) {
  COUNT(r, t, new_requests);
  if (r->nreq == r->capreq) {
    size_t cap = r->capreq * 2;
    request *q = realloc(r->req, cap * sizeof *q);
    if (q == NULL) return RESIL_ENOMEM;
    r->req = q;
    r->capreq = cap;
  }
  uint32_t id = (uint32_t)r->nreq++;
  request *q = &r->req[id];
  memset(q, 0, sizeof *q);
  q->second = t < r->off ? NO_SECOND : (uint32_t)((t - r->off) / RESIL_SEC);
  r->open++;
  r->out->requests++;

  resil_err e = RESIL_OK;
  if (r->bucket) (void)resil_budget_request(r->bucket); /* never refuses */
  if (r->adaptive && resil_budget_request(r->adaptive) != RESIL_OK) reject(r, q, t);
  else e = send_attempt(r, id, t);
  if (e != RESIL_OK) return e;

  resil_ns next = next_arrival(r, t);
  r->arriving = next >= 0;
  return next < 0 ? RESIL_OK : push(r, next, EV_ARRIVE, 0, 0);
}

static resil_err on_timeout(run *r, uint32_t id, resil_ns t) {
  request *q = &r->req[id];
  q->pending = 0;
  r->out->timeouts++;
  COUNT(r, t, timeouts);
  record(r, q, 0, t);
  if (r->pol.retry == SIM_RETRY_NONE || q->attempt >= r->c->attempts) {
    finish(r, q, FAILED);
    return RESIL_OK;
  }
  if ((r->bucket && resil_budget_retry(r->bucket, RESIL_BUDGET_TIMEOUT) != RESIL_OK) ||
      (r->adaptive && resil_budget_retry(r->adaptive, RESIL_BUDGET_TIMEOUT) != RESIL_OK)) {
    reject(r, q, t);
    return RESIL_OK;
  }
  resil_ns delay = 0;
  if (r->pol.retry == SIM_RETRY_BACKOFF) {
    delay = resil_backoff_delay(&r->backoff, q->attempt, q->prev, &r->rng);
    q->prev = delay;
  }
  if (delay == 0) return send_attempt(r, id, t);
  return push(r, resil_ns_add(t, delay), EV_SEND, id, 0);
}

/* (Re)schedule the server's next completion; older ones go stale. */
static resil_err server_next(run *r) {
  resil_ns t = sim_ps_next_done(&r->server);
  return t < 0 ? RESIL_OK : push(r, t, EV_SRV_DONE, 0, r->server.gen);
}

static resil_err handle(run *r, const sim_event *ev) {
  const sim_collapse_config *c = r->c;
  request *q = &r->req[ev->id];
  switch (ev->kind) {
    case EV_ARRIVE: return on_arrive(r, ev->t);
    case EV_SEND: return send_attempt(r, ev->id, ev->t);
    case EV_SRV_IN: {
      resil_err e = sim_ps_arrive(&r->server, ev->t, ev->id, ev->aux);
      double n = (double)sim_ps_inflight(&r->server);
      if (n > r->out->peak_inflight) r->out->peak_inflight = n;
      return e == RESIL_OK ? server_next(r) : e;
    }
    case EV_SRV_DONE: {
      if (ev->aux != r->server.gen) return RESIL_OK; /* rescheduled since */
      uint32_t id, attempt;
      sim_ps_complete(&r->server, ev->t, &id, &attempt);
      resil_err e = push(r, resil_ns_add(ev->t, sim_exp_ns(&r->rng, c->net_mean)), EV_REPLY, id,
                         attempt);
      return e == RESIL_OK ? server_next(r) : e;
    }
    case EV_REPLY:
      if (!q->pending || q->attempt != ev->aux) return RESIL_OK; /* too late */
      q->pending = 0;
      r->out->successes++;
      COUNT(r, ev->t, successes);
      record(r, q, 1, ev->t);
      finish(r, q, SUCCEEDED);
      return RESIL_OK;
    case EV_TIMEOUT:
      if (!q->pending || q->attempt != ev->aux) return RESIL_OK; /* answered */
      return on_timeout(r, ev->id, ev->t);
    default: return RESIL_EINVAL;
  }
}

int sim_collapse_verdict(const sim_collapse_config *c, const sim_collapse_second *sec,
                         size_t nsec, double *at_s) {
  size_t from = (size_t)((c->spike_to + RESIL_SEC - 1) / RESIL_SEC);
  size_t s = nsec;
  while (s > from && sec[s - 1].succeeded_share >= SIM_HEALTHY_SHARE) s--;
  if (nsec - s < SIM_RECOVERY_TAIL) return 0;
  *at_s = (double)s;
  return 1;
}

resil_err sim_collapse_once(const sim_collapse_config *c, sim_policy p, uint32_t idx,
                            sim_collapse_second *sec, size_t nsec, sim_collapse_run *out) {
  resil_err e = sim_collapse_validate(c);
  if (e != RESIL_OK) return e;
  if (nsec != (size_t)((c->duration + RESIL_SEC - 1) / RESIL_SEC)) return RESIL_EINVAL;
  run r;
  e = run_init(&r, c, p, idx, sec, nsec, out);
  if (e == RESIL_OK) {
    resil_ns first = next_arrival(&r, 0);
    r.arriving = first >= 0;
    if (first >= 0) e = push(&r, first, EV_ARRIVE, 0, 0);
  }
  sim_event ev;
  while (e == RESIL_OK && sim_heap_pop(&r.heap, &ev)) {
    seconds_until(&r, ev.t);
    sim_clock_set(&r.clock, ev.t);
    e = handle(&r, &ev);
    /* Stop once arrivals are over and every request has ended: what is left
     * is late work that no longer changes any result. */
    if (!r.arriving && r.open == 0) break;
  }
  if (e == RESIL_OK) {
    seconds_until(&r, c->duration + r.off);
    for (size_t s = 0; s < nsec; s++)
      sec[s].succeeded_share = sec[s].new_requests > 0 ? r.succ_by_arrival[s] / sec[s].new_requests
                                                       : 1.0;
    out->recovered = sim_collapse_verdict(c, sec, nsec, &out->recovered_at_s);
    if (!out->recovered) out->recovered_at_s = -1;
  }
  run_free(&r);
  return e;
}

resil_err sim_collapse_simulate(const sim_collapse_config *c, sim_collapse_result *out) {
  memset(out, 0, sizeof *out);
  resil_err e = sim_collapse_validate(c);
  if (e != RESIL_OK) return e;
  out->cfg = *c;
  size_t nsec = (size_t)((c->duration + RESIL_SEC - 1) / RESIL_SEC);
  out->series = calloc(c->npolicies, sizeof *out->series);
  sim_collapse_second *one = calloc(nsec, sizeof *one);
  if (out->series == NULL || one == NULL) {
    free(one);
    sim_collapse_result_free(out);
    return RESIL_ENOMEM;
  }
  for (size_t i = 0; i < c->npolicies; i++) {
    sim_collapse_series *s = &out->series[out->nseries++];
    s->policy = c->policies[i];
    s->nsec = nsec;
    s->sec = calloc(nsec, sizeof *s->sec);
    if (s->sec == NULL) {
      e = RESIL_ENOMEM;
      break;
    }
    double requests = 0, successes = 0, attempts = 0, at = 0, peak = 0;
    for (uint32_t k = 0; k < c->runs && e == RESIL_OK; k++) {
      sim_collapse_run r1;
      e = sim_collapse_once(c, s->policy, k, one, nsec, &r1);
      if (e != RESIL_OK) break;
      for (size_t j = 0; j < nsec; j++) {
        sim_collapse_second *d = &s->sec[j];
        const sim_collapse_second *o = &one[j];
        d->new_requests += o->new_requests / c->runs;
        d->attempts += o->attempts / c->runs;
        d->retries += o->retries / c->runs;
        d->timeouts += o->timeouts / c->runs;
        d->successes += o->successes / c->runs;
        d->rejected += o->rejected / c->runs;
        d->inflight += o->inflight / c->runs;
        d->succeeded_share += o->succeeded_share / c->runs;
      }
      requests += (double)r1.requests;
      successes += (double)r1.successes;
      attempts += (double)r1.attempts;
      peak += r1.peak_inflight / c->runs;
      if (r1.recovered) {
        s->runs_recovered++;
        at += r1.recovered_at_s;
      }
    }
    if (e != RESIL_OK) break;
    s->recovered = s->runs_recovered == c->runs;
    s->recovered_at_s = s->recovered ? at / c->runs : -1;
    s->success_rate = requests > 0 ? successes / requests : 0;
    s->attempts_per_request = requests > 0 ? attempts / requests : 0;
    s->peak_inflight = peak;
  }
  free(one);
  if (e != RESIL_OK) sim_collapse_result_free(out);
  return e;
}

void sim_collapse_result_free(sim_collapse_result *r) {
  if (r == NULL) return;
  for (size_t i = 0; i < r->nseries; i++) free(r->series[i].sec);
  free(r->series);
  r->series = NULL;
  r->nseries = 0;
}
