/* Scenario `independent`: load amplification by failure probability.
 *
 * Model. `clients` (100) clients each send requests as a Poisson process of
 * `client_rate` (10) per second for `duration` (60s). Every call takes
 * `latency` (20ms) and fails independently with probability p, whatever
 * happened before: the server is neither overloaded nor recovering, so this
 * isolates what the client policy alone does to the load. A request makes up
 * to `attempts` (4: one call and 3 retries) calls while they fail, waiting
 * between them as its policy says (backoff: resil's exponential backoff with
 * full jitter, 100ms base, 2s cap).
 *
 * Guards are per client (each client is its own process with its own resil
 * objects), on the simulated clock:
 *   budget    token bucket, 1 retry/s (10 % of the client's requests), burst 10
 *   breaker   count window (100 calls, at least 20, 50 % failures), open 5s,
 *             one probe; a request refused by it fails without a call
 *   adaptive  SRE throttling (k = 2 over 10s) on every call
 *
 * Measured per (policy, p): calls / requests (the load multiplier the server
 * sees) and successes / requests. Without guards, retrying up to a attempts
 * gives 1 + p + ... + p^(a-1) calls per request and succeeds with 1 - p^a
 * (sim_theory_*); the test suite checks the simulation against both.
 *
 * Randomness: arrivals come from a generator seeded with neither the policy
 * nor p, so every point sees the same requests; call outcomes and jitter come
 * from one seeded with both. */
#include <stdlib.h>
#include <string.h>

#include "sim/sim.h"

enum { EV_ARRIVE, EV_ATTEMPT, EV_RESULT };

typedef struct client {
  resil_budget *bucket, *adaptive;
  resil_breaker *breaker;
} client;

typedef struct request {
  uint32_t client;
  uint32_t attempt;    /* calls made so far */
  uint32_t next_free;  /* free-list link */
  uint8_t failed;      /* the current call's outcome */
  uint8_t granted;     /* the current call is a retry the budget granted */
  resil_ns prev;       /* previous backoff delay */
  resil_permit permit;
} request;

typedef struct run {
  const sim_independent_config *c;
  sim_policy pol;
  double p;
  sim_heap heap;
  sim_clock clock;
  resil_rng arrivals, rng;
  resil_backoff backoff;
  client *cl;
  request *req;
  uint32_t nreq, capreq, free_head;
  sim_independent_point *out;
} run;

#define NO_REQ UINT32_MAX

void sim_independent_config_init(sim_independent_config *c) {
  memset(c, 0, sizeof *c);
  c->seed = 1;
  c->runs = 1;
  c->clients = 100;
  c->client_rate = 10;
  c->duration = 60 * RESIL_SEC;
  c->latency = 20 * RESIL_MSEC;
  c->attempts = 4;
  c->base = 100 * RESIL_MSEC;
  c->cap = 2 * RESIL_SEC;
  sim_guard_config_init(&c->guard, 1, 10);
  static const double ps[] = {0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1};
  c->np = sizeof ps / sizeof ps[0];
  memcpy(c->p, ps, sizeof ps);
  static const sim_policy pols[] = {
      {SIM_RETRY_NONE, 0},
      {SIM_RETRY_BACKOFF, 0},
      {SIM_RETRY_BACKOFF, SIM_GUARD_BUDGET},
      {SIM_RETRY_BACKOFF, SIM_GUARD_BREAKER},
  };
  c->npolicies = sizeof pols / sizeof pols[0];
  memcpy(c->policies, pols, sizeof pols);
}

resil_err sim_independent_validate(const sim_independent_config *c) {
  if (c->runs < 1 || c->clients < 1 || c->clients > 100000) return RESIL_EINVAL;
  if (!(c->client_rate > 0 && c->client_rate <= 1e6)) return RESIL_EINVAL;
  if (c->duration <= 0 || c->duration > 24 * RESIL_HOUR || c->latency < 0) return RESIL_EINVAL;
  if (c->attempts < 1 || c->base <= 0 || c->cap < c->base) return RESIL_EINVAL;
  if (sim_guard_config_validate(&c->guard) != RESIL_OK) return RESIL_EINVAL;
  if (c->np < 1 || c->np > SIM_MAX_P || c->npolicies < 1 || c->npolicies > SIM_MAX_POLICIES)
    return RESIL_EINVAL;
  for (size_t i = 0; i < c->np; i++)
    if (!(c->p[i] >= 0 && c->p[i] <= 1)) return RESIL_EINVAL;
  for (size_t i = 0; i < c->npolicies; i++)
    if ((unsigned)c->policies[i].retry > SIM_RETRY_BACKOFF || (c->policies[i].guards & ~7u))
      return RESIL_EINVAL;
  return RESIL_OK;
}

double sim_theory_load(double p, uint32_t attempts) {
  double sum = 0, term = 1;
  for (uint32_t k = 0; k < attempts; k++) {
    sum += term;
    term *= p;
  }
  return sum;
}

double sim_theory_success(double p, uint32_t attempts) {
  double all_fail = 1;
  for (uint32_t k = 0; k < attempts; k++) all_fail *= p;
  return 1 - all_fail;
}

/* ---- setting up and tearing down a run -------------------------------------- */

static void run_free(run *r) {
  if (r->cl)
    for (uint32_t i = 0; i < r->c->clients; i++) {
      resil_budget_free(r->cl[i].bucket);
      resil_budget_free(r->cl[i].adaptive);
      resil_breaker_free(r->cl[i].breaker);
    }
  free(r->cl);
  free(r->req);
  sim_heap_free(&r->heap);
  sim_clock_free(&r->clock);
}

static resil_err client_init(run *r, client *k) {
  const sim_independent_config *c = r->c;
  resil_clock clk = sim_clock_get(&r->clock);
  resil_err e = RESIL_OK;
  e = sim_guards_new(&c->guard, r->pol.guards, clk, &r->rng, &k->bucket, &k->adaptive, &k->breaker);
  return e;
}

static resil_err run_init(run *r, const sim_independent_config *c, sim_policy pol, double p,
                          uint32_t idx, sim_independent_point *out) {
  memset(r, 0, sizeof *r);
  r->c = c;
  r->pol = pol;
  r->p = p;
  r->out = out;
  r->free_head = NO_REQ;
  memset(out, 0, sizeof *out);
  out->policy = pol;
  out->p = p;

  uint32_t variant = pol.retry | pol.guards << 4;
  resil_rng_seed(&r->arrivals, sim_seed(c->seed, SIM_INDEPENDENT, 0xFFFFu, c->clients, idx));
  resil_rng_seed(&r->rng, sim_seed(c->seed, SIM_INDEPENDENT, variant,
                                   sim_double_bits(p) ^ c->clients, idx));
  resil_backoff_init(&r->backoff);
  r->backoff.kind = RESIL_BACKOFF_EXPONENTIAL;
  r->backoff.jitter = RESIL_JITTER_FULL;
  r->backoff.base = c->base;
  r->backoff.cap = c->cap;

  resil_err e = sim_clock_init(&r->clock);
  if (e != RESIL_OK) return e;
  e = sim_heap_init(&r->heap, 4 * (size_t)c->clients);
  if (e != RESIL_OK) return e;
  r->cl = calloc(c->clients, sizeof *r->cl);
  if (r->cl == NULL) return RESIL_ENOMEM;
  for (uint32_t i = 0; i < c->clients; i++) {
    e = client_init(r, &r->cl[i]);
    if (e != RESIL_OK) return e;
  }
  return RESIL_OK;
}

/* ---- the model -------------------------------------------------------------- */

static resil_err new_request(run *r, uint32_t client_id, uint32_t *id) {
  if (r->free_head == NO_REQ) {
    if (r->nreq == r->capreq) {
      uint32_t cap = r->capreq ? r->capreq * 2 : 1024;
      request *q = realloc(r->req, (size_t)cap * sizeof *q);
      if (q == NULL) return RESIL_ENOMEM;
      r->req = q;
      r->capreq = cap;
    }
    *id = r->nreq++;
  } else {
    *id = r->free_head;
    r->free_head = r->req[*id].next_free;
  }
  request *q = &r->req[*id];
  memset(q, 0, sizeof *q);
  q->client = client_id;
  return RESIL_OK;
}

static void end_request(run *r, uint32_t id, int success) {
  if (success) r->out->successes++;
  r->req[id].next_free = r->free_head;
  r->free_head = id;
}

static resil_err call(run *r, uint32_t id, resil_ns t) {
  request *q = &r->req[id];
  client *k = &r->cl[q->client];
  if (k->breaker && resil_breaker_acquire(k->breaker, &q->permit, NULL) != RESIL_OK) {
    r->out->rejected++;
    end_request(r, id, 0);
    return RESIL_OK;
  }
  q->attempt++;
  r->out->calls++;
  if (q->attempt > 1) r->out->retries++;
  q->failed = resil_rng_unit(&r->rng) < r->p;
  return sim_heap_push(&r->heap, resil_ns_add(t, r->c->latency), EV_RESULT, id, 0);
}

static resil_err on_arrive(run *r, uint32_t client_id, resil_ns t) {
  resil_ns next = resil_ns_add(t, sim_poisson_gap(&r->arrivals, r->c->client_rate));
  if (next < r->c->duration) {
    resil_err e = sim_heap_push(&r->heap, next, EV_ARRIVE, client_id, 0);
    if (e != RESIL_OK) return e;
  }
  uint32_t id;
  resil_err e = new_request(r, client_id, &id);
  if (e != RESIL_OK) return e;
  r->out->requests++;
  client *k = &r->cl[client_id];
  if (k->adaptive && resil_budget_request(k->adaptive) != RESIL_OK) {
    r->out->rejected++;
    end_request(r, id, 0);
    return RESIL_OK;
  }
  if (k->bucket) (void)resil_budget_request(k->bucket);
  return call(r, id, t);
}

static resil_err on_result(run *r, uint32_t id, resil_ns t) {
  request *q = &r->req[id];
  client *k = &r->cl[q->client];
  int ok = !q->failed;
  unsigned flags = q->granted ? RESIL_BUDGET_RETRY : 0;
  if (k->breaker)
    resil_breaker_record(k->breaker, &q->permit, ok ? RESIL_CALL_SUCCESS : RESIL_CALL_FAILURE,
                         r->c->latency);
  resil_budget_result(k->bucket, ok, flags);
  resil_budget_result(k->adaptive, ok, flags);
  if (ok || r->pol.retry == SIM_RETRY_NONE || q->attempt >= r->c->attempts) {
    end_request(r, id, ok);
    return RESIL_OK;
  }
  if ((k->bucket && resil_budget_retry(k->bucket, 0) != RESIL_OK) ||
      (k->adaptive && resil_budget_retry(k->adaptive, 0) != RESIL_OK)) {
    r->out->rejected++;
    end_request(r, id, 0);
    return RESIL_OK;
  }
  q->granted = 1;
  resil_ns delay = 0;
  if (r->pol.retry == SIM_RETRY_BACKOFF) {
    delay = resil_backoff_delay(&r->backoff, q->attempt, q->prev, &r->rng);
    q->prev = delay;
  }
  return sim_heap_push(&r->heap, resil_ns_add(t, delay), EV_ATTEMPT, id, 0);
}

resil_err sim_independent_once(const sim_independent_config *c, sim_policy pol, double p,
                               uint32_t idx, sim_independent_point *out) {
  resil_err e = sim_independent_validate(c);
  if (e != RESIL_OK) return e;
  if (!(p >= 0 && p <= 1)) return RESIL_EINVAL;
  run r;
  e = run_init(&r, c, pol, p, idx, out);
  /* Each client's first request. */
  for (uint32_t i = 0; e == RESIL_OK && i < c->clients; i++) {
    resil_ns first = sim_poisson_gap(&r.arrivals, c->client_rate);
    if (first < c->duration) e = sim_heap_push(&r.heap, first, EV_ARRIVE, i, 0);
  }
  sim_event ev;
  while (e == RESIL_OK && sim_heap_pop(&r.heap, &ev)) {
    sim_clock_set(&r.clock, ev.t);
    out->end_time = ev.t;
    switch (ev.kind) {
      case EV_ARRIVE: e = on_arrive(&r, ev.id, ev.t); break;
      case EV_ATTEMPT: e = call(&r, ev.id, ev.t); break;
      default: e = on_result(&r, ev.id, ev.t); break;
    }
  }
  if (e == RESIL_OK) {
    out->load = out->requests ? (double)out->calls / (double)out->requests : 0;
    out->success_rate = out->requests ? (double)out->successes / (double)out->requests : 0;
    for (uint32_t i = 0; i < c->clients; i++) {
      if (r.cl[i].bucket == NULL) break;
      resil_budget_snapshot snap;
      resil_budget_snapshot_get(r.cl[i].bucket, &snap);
      if (snap.retries_granted > out->max_client_retries)
        out->max_client_retries = snap.retries_granted;
    }
  }
  run_free(&r);
  return e;
}

resil_err sim_independent_simulate(const sim_independent_config *c, sim_independent_result *out) {
  memset(out, 0, sizeof *out);
  resil_err e = sim_independent_validate(c);
  if (e != RESIL_OK) return e;
  out->cfg = *c;
  out->points = calloc(c->npolicies * c->np, sizeof *out->points);
  if (out->points == NULL) return RESIL_ENOMEM;
  for (size_t i = 0; i < c->npolicies; i++) {
    for (size_t j = 0; j < c->np; j++) {
      sim_independent_point *pt = &out->points[out->npoints++];
      memset(pt, 0, sizeof *pt);
      pt->policy = c->policies[i];
      pt->p = c->p[j];
      for (uint32_t k = 0; k < c->runs; k++) {
        sim_independent_point one;
        e = sim_independent_once(c, c->policies[i], c->p[j], k, &one);
        if (e != RESIL_OK) {
          sim_independent_result_free(out);
          return e;
        }
        pt->requests += one.requests;
        pt->calls += one.calls;
        pt->successes += one.successes;
        pt->retries += one.retries;
        pt->rejected += one.rejected;
        if (one.max_client_retries > pt->max_client_retries)
          pt->max_client_retries = one.max_client_retries;
        if (one.end_time > pt->end_time) pt->end_time = one.end_time;
      }
      pt->load = pt->requests ? (double)pt->calls / (double)pt->requests : 0;
      pt->success_rate = pt->requests ? (double)pt->successes / (double)pt->requests : 0;
    }
  }
  return RESIL_OK;
}

void sim_independent_result_free(sim_independent_result *r) {
  if (r == NULL) return;
  free(r->points);
  r->points = NULL;
  r->npoints = 0;
}
