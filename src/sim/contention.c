/* Scenario `contention`: the experiment of the AWS Architecture Blog post
 * "Exponential Backoff And Jitter" (Marc Brooker, 2015).
 *
 * Model, as published. N clients all start at t = 0; each wants one
 * successful optimistic write to a single row. The server holds a version
 * number and answers instantly. A client reads the version (one network hop
 * to the server, one back), then sends write(version); the write succeeds
 * only if the version is unchanged (the server then increments it),
 * otherwise it fails. Every one-way hop takes |Normal(10ms, 2ms)|. After a
 * failed write the client increments its attempt count (the first retry
 * uses attempt 1) and sends its next read hop + backoff(attempt) after the
 * server handled the write (the hop is the failure's reply travelling back);
 * after one successful write it stops.
 *
 * Metrics per run: time = when the reply of the last successful write
 * reaches its client; calls = write calls (reads are not counted).
 *
 * Backoff, with base 5ms and cap 2s, through resil_backoff_delay:
 *   none          no wait at all (resil has no zero-delay backoff; no call)
 *   exponential   jitter NONE:  min(cap, base * 2^attempt)
 *   full          jitter FULL:  U(0, min(cap, base * 2^attempt))
 *   equal         jitter EQUAL: t/2 + U(0, t/2), t as above
 *   decorrelated  jitter DECORRELATED: min(cap, U(base, 3 * previous)),
 *                 previous starting at base
 * resil numbers retries from 1 and its exponential is base * mult^(n - 1)
 * for retry n, so the article's base * 2^attempt is retry n = attempt + 1.
 *
 * Events. Only the server's steps are events (a read or a write arriving):
 * what a client does on a reply is to send its next message at once, so
 * each client has exactly one pending event, the heap never holds more than
 * N, and each hop is still drawn separately: a read arriving at t schedules
 * the write at t + hop (reply) + hop (write); a failed write at t schedules
 * the next read at t + hop (reply) + backoff + hop (read). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sim/sim.h"

enum { EV_READ = 0, EV_WRITE = 1 };

typedef struct client {
  uint32_t version; /* the version its last read returned */
  uint32_t attempt; /* failed writes so far */
  resil_ns prev;    /* previous backoff delay (decorrelated) */
} client;

/* Scratch memory reused by every run of a sweep. */
typedef struct workspace {
  sim_heap heap;
  client *clients;
  uint32_t cap;
} workspace;

void sim_contention_config_init(sim_contention_config *c) {
  memset(c, 0, sizeof *c);
  c->seed = 1;
  c->runs = 100;
  c->clients_from = 10;
  c->clients_to = 190;
  c->clients_step = 10;
  for (unsigned i = 0; i < SIM_STRAT_COUNT; i++) c->strategies[i] = (sim_strategy)i;
  c->nstrategies = SIM_STRAT_COUNT;
  c->base = 5 * RESIL_MSEC;
  c->cap = 2000 * RESIL_MSEC;
  c->hop_mean = 10 * RESIL_MSEC;
  c->hop_sd = 2 * RESIL_MSEC;
}

resil_err sim_contention_validate(const sim_contention_config *c) {
  if (c->runs < 1 || c->nstrategies < 1 || c->nstrategies > SIM_STRAT_COUNT) return RESIL_EINVAL;
  if (c->clients_from < 1 || c->clients_to < c->clients_from || c->clients_step < 1)
    return RESIL_EINVAL;
  if (c->clients_to > 1000000) return RESIL_EINVAL;
  for (size_t i = 0; i < c->nstrategies; i++)
    if ((unsigned)c->strategies[i] >= SIM_STRAT_COUNT) return RESIL_EINVAL;
  if (c->base <= 0 || c->cap < c->base || c->hop_mean < 0 || c->hop_sd < 0) return RESIL_EINVAL;
  return RESIL_OK;
}

static void backoff_for(const sim_contention_config *c, sim_strategy s, resil_backoff *b) {
  resil_backoff_init(b);
  b->kind = RESIL_BACKOFF_EXPONENTIAL;
  b->multiplier = 2.0;
  b->base = c->base;
  b->cap = c->cap;
  switch (s) {
    case SIM_STRAT_FULL: b->jitter = RESIL_JITTER_FULL; break;
    case SIM_STRAT_EQUAL: b->jitter = RESIL_JITTER_EQUAL; break;
    case SIM_STRAT_DECORRELATED: b->jitter = RESIL_JITTER_DECORRELATED; break;
    default: b->jitter = RESIL_JITTER_NONE; break;
  }
}

static resil_err ws_reserve(workspace *ws, uint32_t clients) {
  if (ws->heap.ev == NULL) {
    resil_err e = sim_heap_init(&ws->heap, clients);
    if (e != RESIL_OK) return e;
  }
  if (clients > ws->cap) {
    client *cl = realloc(ws->clients, (size_t)clients * sizeof *cl);
    if (cl == NULL) return RESIL_ENOMEM;
    ws->clients = cl;
    ws->cap = clients;
  }
  return RESIL_OK;
}

static void ws_free(workspace *ws) {
  sim_heap_free(&ws->heap);
  free(ws->clients);
  memset(ws, 0, sizeof *ws);
}

/* |Normal(mean, sd)|, in whole nanoseconds. */
static inline resil_ns hop(sim_normal *g, resil_ns mean, resil_ns sd) {
  double x = (double)mean + (double)sd * sim_normal_next(g);
  return (resil_ns)fabs(x);
}

static resil_err run_once(workspace *ws, const sim_contention_config *c, sim_strategy s,
                          uint32_t n, uint32_t run, sim_contention_run *out) {
  memset(out, 0, sizeof *out);
  resil_err e = ws_reserve(ws, n);
  if (e != RESIL_OK) return e;
  resil_rng rng;
  resil_rng_seed(&rng, sim_seed(c->seed, SIM_CONTENTION, (uint32_t)s, n, run));
  sim_normal g;
  sim_normal_init(&g, &rng);
  resil_backoff b;
  backoff_for(c, s, &b);
  const resil_ns mean = c->hop_mean, sd = c->hop_sd;

  sim_heap *h = &ws->heap;
  sim_heap_clear(h);
  client *cl = ws->clients;
  memset(cl, 0, (size_t)n * sizeof *cl);
  /* Every client sends its first read at t = 0. The heap has room for n. */
  for (uint32_t i = 0; i < n; i++) (void)sim_heap_push(h, hop(&g, mean, sd), EV_READ, i, 0);

  uint32_t version = 0;
  sim_event ev;
  while (sim_heap_pop(h, &ev)) {
    client *k = &cl[ev.id];
    if (ev.kind == EV_READ) {
      out->reads++;
      k->version = version;
      resil_ns t = ev.t + hop(&g, mean, sd);        /* the read's reply */
      (void)sim_heap_push(h, t + hop(&g, mean, sd), EV_WRITE, ev.id, 0);
      continue;
    }
    out->calls++;
    resil_ns reply = ev.t + hop(&g, mean, sd);
    if (k->version == version) {
      version++;
      out->succeeded++;
      if (reply > out->time) out->time = reply;
      continue;
    }
    k->attempt++;
    resil_ns delay = 0;
    if (s != SIM_STRAT_NONE) {
      /* The article's attempt a is resil's retry n = a + 1 (see above). */
      uint32_t retry = k->attempt == UINT32_MAX ? UINT32_MAX : k->attempt + 1;
      delay = resil_backoff_delay(&b, retry, k->prev, &rng);
      k->prev = delay;
    }
    (void)sim_heap_push(h, resil_ns_add(resil_ns_add(reply, delay), hop(&g, mean, sd)),
                        EV_READ, ev.id, 0);
  }
  return RESIL_OK;
}

resil_err sim_contention_once(const sim_contention_config *c, sim_strategy s,
                              uint32_t clients, uint32_t run, sim_contention_run *out) {
  if (sim_contention_validate(c) != RESIL_OK || (unsigned)s >= SIM_STRAT_COUNT || clients < 1)
    return RESIL_EINVAL;
  workspace ws;
  memset(&ws, 0, sizeof ws);
  resil_err e = run_once(&ws, c, s, clients, run, out);
  ws_free(&ws);
  return e;
}

resil_err sim_contention_sweep(const sim_contention_config *c, sim_contention_result *out) {
  memset(out, 0, sizeof *out);
  resil_err e = sim_contention_validate(c);
  if (e != RESIL_OK) return e;
  out->cfg = *c;
  size_t per = (c->clients_to - c->clients_from) / c->clients_step + 1;
  out->points = calloc(per * c->nstrategies, sizeof *out->points);
  if (out->points == NULL) return RESIL_ENOMEM;

  workspace ws;
  memset(&ws, 0, sizeof ws);
  for (size_t si = 0; si < c->nstrategies; si++) {
    sim_strategy s = c->strategies[si];
    for (uint32_t n = c->clients_from; n <= c->clients_to; n += c->clients_step) {
      /* Welford's running mean and variance, over runs. */
      double mt = 0, vt = 0, mc = 0, vc = 0;
      uint32_t incomplete = 0;
      for (uint32_t r = 0; r < c->runs; r++) {
        sim_contention_run one;
        e = run_once(&ws, c, s, n, r, &one);
        if (e != RESIL_OK) goto fail;
        if (one.succeeded != n) incomplete++;
        double t = (double)one.time / (double)RESIL_MSEC, k = (double)one.calls;
        double dt = t - mt, dc = k - mc;
        mt += dt / (r + 1);
        mc += dc / (r + 1);
        vt += dt * (t - mt);
        vc += dc * (k - mc);
      }
      sim_contention_point *pt = &out->points[out->npoints++];
      pt->strategy = s;
      pt->clients = n;
      pt->runs = c->runs;
      pt->time_ms = mt;
      pt->calls = mc;
      pt->time_ms_sd = c->runs > 1 ? sqrt(vt / (c->runs - 1)) : 0;
      pt->calls_sd = c->runs > 1 ? sqrt(vc / (c->runs - 1)) : 0;
      pt->incomplete_runs = incomplete;
      if (c->clients_to - n < c->clients_step) break; /* no wrap past UINT32_MAX */
    }
  }
  ws_free(&ws);
  return RESIL_OK;
fail:
  ws_free(&ws);
  sim_contention_result_free(out);
  return e;
}

void sim_contention_result_free(sim_contention_result *r) {
  if (r == NULL) return;
  free(r->points);
  r->points = NULL;
  r->npoints = 0;
}
