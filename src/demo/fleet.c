/* One run of the demo: the fault server, one HTTP client configured naive
 * or resil, and the fleet of clients placing orders through it (demo.h has
 * the model).
 *
 * One thread drives everything through resil_http_multi: every client's call
 * is a transfer (or a retry waiting on the multi's timer heap), and clients
 * between orders wait on their own wake-up time, which the loop below turns
 * into the multi's max_wait. A blocking resil_http_do per client thread would
 * do as well, but it would need 40 threads (and a lock around the counters)
 * where one loop is enough, and the multi is the part of resil's client that
 * a service placing many calls at once would use. */
#define _POSIX_C_SOURCE 200809L

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "demo/demo.h"
#include "resil/resil.h"
#include "resil/faultserver.h"
#include "resil/http.h"

/* The resil run's policy. */
#define R_ATTEMPTS 6
#define R_BASE (100 * RESIL_MSEC)   /* exponential, full jitter */
#define R_CAP (2 * RESIL_SEC)
#define R_CALL_DEADLINE (10 * RESIL_SEC) /* one call, retries included */
#define R_RETRY_AFTER_MAX (10 * RESIL_SEC)
#define R_BREAKER_FAILURES 10       /* in a row, across the fleet */
#define R_BREAKER_OPEN (500 * RESIL_MSEC)
#define R_BREAKER_PROBES 3
/* Placing an order again after a call gave up (breaker open, budget spent,
 * attempts or deadline): backoff over the times it was placed again, with
 * the server's Retry-After and the breaker's open time as floors. */
#define REPLACE_BASE (250 * RESIL_MSEC)
#define REPLACE_CAP (2 * RESIL_SEC)
#define REPLACE_SPREAD (200 * RESIL_MSEC)
/* The naive run's policy: immediate retries. */
#define N_ATTEMPTS 10
#define N_DELAY RESIL_MSEC

#define PROGRESS_EVERY (100 * RESIL_MSEC)
#define IDLE_WAIT (100 * RESIL_MSEC)

const char *demo_kind_name(demo_kind k) { return k == DEMO_NAIVE ? "naive" : "resil"; }

void demo_config_init(demo_config *c, resil_ns duration) {
  memset(c, 0, sizeof *c);
  c->clients = 40;
  c->duration = duration;
  c->outage_start = duration / 4;
  c->outage_len = duration / 3;
  c->drain = 10 * RESIL_SEC;
  c->think_min = 100 * RESIL_MSEC;
  c->think_max = 300 * RESIL_MSEC;
  c->latency = 10 * RESIL_MSEC;
  c->fail_rate = 0.02;
  c->lost_response_rate = 0.2;
  c->attempt_timeout = RESIL_SEC;
  c->seed = 1;
  c->store_url = "memory:";
}

/* ---- state --------------------------------------------------------------- */

enum { C_WAIT, C_CALL, C_DONE };

typedef struct order {
  resil_ns start;
  uint32_t calls;
  uint32_t replaced;          /* times placed again */
  char key[256];              /* resil: the key of the first call */
  char body[128];
  size_t body_len;
} order;

typedef struct fleet fleet;

typedef struct client {
  fleet *f;
  uint32_t index;
  int state;
  int has_order;
  resil_ns wake;              /* C_WAIT: when to place (or place again) */
  uint32_t orders;
  order o;
} client;

struct fleet {
  const demo_config *cfg;
  demo_kind kind;
  demo_run *run;
  resil_clock clock;
  resil_ns t0;
  resil_faultserver *srv;
  resil_budget *budget;
  resil_http_client *http;
  resil_http_multi *m;
  client *cl;
  resil_rng rng;
  resil_backoff replace;
  char orders_url[96];
  const char *origin;
  int closing;
  resil_err err;
  char *errbuf;
  size_t errlen;
};

static resil_ns since_start(const fleet *f) { return f->clock.now(f->clock.ud) - f->t0; }

static void fail(fleet *f, resil_err e, const char *what) {
  if (f->err == RESIL_OK) {
    f->err = e;
    snprintf(f->errbuf, f->errlen, "%s: %s", what, resil_strerror(e));
  }
}

static void count_in(uint32_t *bins, size_t nbins, resil_ns t) {
  if (t < 0) t = 0;
  size_t i = (size_t)(t / DEMO_BIN);
  if (i < nbins) bins[i]++;
}

/* ---- calls --------------------------------------------------------------- */

static void on_done(void *ud, resil_err err, resil_http_response *resp);

static void place(client *c) {
  fleet *f = c->f;
  static const resil_http_header json = {"Content-Type", "application/json"};
  resil_http_request req;
  resil_http_request_init(&req);
  req.method = "POST";
  req.url = f->orders_url;
  req.headers = &json;
  req.n_headers = 1;
  req.body = c->o.body;
  req.body_len = c->o.body_len;
  if (f->kind == DEMO_RESIL) req.idempotency_key = c->o.key[0] ? c->o.key : "auto";
  resil_err e = resil_http_multi_add(f->m, &req, on_done, c);
  if (e != RESIL_OK) {
    fail(f, e, "adding a request");
    c->state = C_DONE;
    return;
  }
  c->o.calls++;
  f->run->calls++;
  c->state = C_CALL;
}

static void start_order(client *c, resil_ns now) {
  fleet *f = c->f;
  memset(&c->o, 0, sizeof c->o);
  c->o.start = now;
  int n = snprintf(c->o.body, sizeof c->o.body,
                   "{\"client\":%u,\"order\":%u,\"item\":\"demo-widget\",\"quantity\":1}",
                   c->index + 1, c->orders + 1);
  c->o.body_len = (size_t)n;
  c->orders++;
  c->has_order = 1;
  f->run->intended++;
  place(c);
}

/* How long a resil client waits before sending an order again. When the
 * server said how long (Retry-After), that long; when the breaker is open,
 * until it lets a probe through; each with a little jitter, so the fleet
 * does not come back at one instant. Otherwise backoff with full jitter over
 * the times this order was sent again. */
static resil_ns replace_pause(client *c, const resil_http_response *resp) {
  fleet *f = c->f;
  size_t n = 0;
  const resil_http_attempt *h = resil_http_response_history(resp, &n);
  /* A Retry-After the call already waited out (delay > 0: it then stopped
   * at the breaker) is spent. */
  if (n > 0 && h[n - 1].retry_after >= 0 && h[n - 1].delay == 0)
    return h[n - 1].retry_after + resil_rng_between(&f->rng, 0, REPLACE_SPREAD);
  if (resil_http_response_stop_reason(resp) == RESIL_STOP_CIRCUIT_OPEN) {
    resil_breaker *b = resil_http_client_breaker(f->http, f->origin);
    resil_breaker_snapshot s;
    if (b) resil_breaker_snapshot_get(b, &s);
    if (b && s.state == RESIL_BREAKER_OPEN && s.retry_in != RESIL_NS_MAX)
      return s.retry_in + resil_rng_between(&f->rng, 0, REPLACE_SPREAD);
    /* Half-open with every probe slot taken: the probes decide within one
     * attempt. */
    return resil_rng_between(&f->rng, REPLACE_SPREAD / 4, REPLACE_SPREAD);
  }
  return resil_backoff_delay(&f->replace, c->o.replaced + 1, 0, &f->rng);
}

static int add_latency(demo_run *r, resil_ns d) {
  if (r->nlatency == r->cap_latency) {
    size_t cap = r->cap_latency ? r->cap_latency * 2 : 1024;
    resil_ns *p = realloc(r->latency, cap * sizeof *p);
    if (p == NULL) return -1;
    r->latency = p;
    r->cap_latency = cap;
  }
  r->latency[r->nlatency++] = d;
  return 0;
}

static void on_done(void *ud, resil_err err, resil_http_response *resp) {
  client *c = ud;
  fleet *f = c->f;
  demo_run *r = f->run;
  int status = resil_http_response_status(resp);
  if (f->closing || err == RESIL_ECANCELED) {
    resil_http_response_free(resp);
    c->state = C_DONE;
    return;
  }
  resil_ns now = since_start(f);
  int ok = err == RESIL_OK && (status == 201 || status == 200);
  if (ok || f->kind == DEMO_NAIVE) {
    /* Confirmed; or, naive, failed: the customer sees an error and moves
     * on (placing it again without a key could only add copies). */
    if (ok) {
      r->confirmed++;
      const char *rep = resil_http_response_header(resp, "Idempotent-Replayed");
      if (rep && strcmp(rep, "true") == 0) r->replayed++;
      count_in(r->done_bins, r->nbins, now);
    } else {
      r->failed++;
    }
    if (add_latency(r, now - c->o.start)) fail(f, RESIL_ENOMEM, "recording latency");
    c->has_order = 0;
    c->wake = now + resil_rng_between(&f->rng, f->cfg->think_min, f->cfg->think_max);
  } else {
    /* resil: keep the order and its key, and send it again later. */
    const char *key = resil_http_response_idempotency_key(resp);
    if (c->o.key[0] == '\0' && key) snprintf(c->o.key, sizeof c->o.key, "%s", key);
    c->wake = now + replace_pause(c, resp);
    c->o.replaced++;
  }
  c->state = C_WAIT;
  resil_http_response_free(resp);
}

/* Every attempt the client sends, first or retry, by when it started. */
static void on_attempt(void *ud, const resil_http_attempt_event *ev) {
  fleet *f = ud;
  f->run->requests++;
  count_in(f->run->req_bins, f->run->nbins, since_start(f) - ev->attempt->duration);
}

/* ---- setting up ---------------------------------------------------------- */

static resil_err start_server(fleet *f) {
  const demo_config *c = f->cfg;
  resil_faultserver_config sc;
  resil_faultserver_config_init(&sc);
  sc.fail_rate = c->fail_rate;
  sc.latency = c->latency;
  sc.outage_start = c->outage_start;
  sc.outage_duration = c->outage_len;
  sc.use_seed = 1;
  sc.seed = c->seed ^ (f->kind == DEMO_NAIVE ? 0x6e61697665ULL : 0x726573696cULL);
  sc.idempotent = 1;
  sc.store_url = c->store_url;
  sc.lost_response_rate = c->lost_response_rate;
  resil_err e = resil_faultserver_start(&f->srv, &sc);
  if (e != RESIL_OK) {
    fail(f, e, "starting the server");
    return e;
  }
  const char *url = resil_faultserver_url(f->srv);
  snprintf(f->orders_url, sizeof f->orders_url, "%s/orders", url);
  f->origin = url;
  return RESIL_OK;
}

static resil_err make_client(fleet *f) {
  const demo_config *c = f->cfg;
  resil_http_client_config hc;
  resil_http_client_config_init(&hc);
  hc.attempt_timeout = c->attempt_timeout;
  hc.connect_timeout = c->attempt_timeout;
  hc.retry.use_seed = 1;
  hc.retry.seed = c->seed + (uint64_t)f->kind;
  hc.on_attempt = on_attempt;
  hc.hook_ud = f;
  resil_err e;
  if (f->kind == DEMO_NAIVE) {
    /* Retry at once, ignore Retry-After (clamped to 0), retry POSTs without
     * a key, no budget, no breaker. */
    hc.retry.max_attempts = N_ATTEMPTS;
    hc.retry.backoff.kind = RESIL_BACKOFF_CONSTANT;
    hc.retry.backoff.jitter = RESIL_JITTER_NONE;
    hc.retry.backoff.base = N_DELAY;
    hc.retry.backoff.cap = N_DELAY;
    hc.retry.retry_after_max = 0;
    hc.retry.retry_after_clamp = 1;
    hc.retry_non_idempotent = 1;
  } else {
    resil_budget_config bc;
    resil_budget_config_init(&bc);
    bc.kind = RESIL_BUDGET_TOKEN_BUCKET;
    bc.rate = c->clients >= 8 ? c->clients / 4.0 : 2.0;
    bc.burst = c->clients >= 4 ? c->clients / 2.0 : 2.0;
    bc.name = "demo";
    if ((e = resil_budget_new(&f->budget, &bc)) != RESIL_OK) {
      fail(f, e, "creating the budget");
      return e;
    }
    hc.retry.max_attempts = R_ATTEMPTS;
    hc.retry.backoff.kind = RESIL_BACKOFF_EXPONENTIAL;
    hc.retry.backoff.jitter = RESIL_JITTER_FULL;
    hc.retry.backoff.base = R_BASE;
    hc.retry.backoff.cap = R_CAP;
    hc.retry.max_elapsed = R_CALL_DEADLINE;
    hc.retry.retry_after_max = R_RETRY_AFTER_MAX;
    hc.retry.budget = f->budget;
    hc.per_host_breakers = 1;
    hc.breaker.trip = RESIL_TRIP_CONSECUTIVE;
    hc.breaker.failure_threshold = R_BREAKER_FAILURES;
    hc.breaker.open_duration = R_BREAKER_OPEN;
    hc.breaker.open_jitter = 0.2;
    hc.breaker.half_open_probes = R_BREAKER_PROBES;
    hc.breaker.probe_timeout = c->attempt_timeout + RESIL_SEC;
    hc.breaker.use_seed = 1;
    hc.breaker.seed = c->seed;
  }
  if ((e = resil_http_client_new(&f->http, &hc)) != RESIL_OK) {
    fail(f, e, "creating the HTTP client");
    return e;
  }
  if ((e = resil_http_multi_new(&f->m, f->http)) != RESIL_OK) {
    fail(f, e, "creating the HTTP multi");
    return e;
  }
  resil_backoff_init(&f->replace);
  f->replace.base = REPLACE_BASE;
  f->replace.cap = REPLACE_CAP;
  return RESIL_OK;
}

static void sleep_ns(resil_ns d) {
  if (d <= 0) return;
  struct timespec ts = {(time_t)(d / RESIL_SEC), (long)(d % RESIL_SEC)};
  nanosleep(&ts, NULL); /* a signal cuts it short, which is what we want */
}

/* ---- the loop ------------------------------------------------------------ */

static void report(fleet *f, demo_progress_fn progress, void *ud, resil_ns now) {
  demo_run *r = f->run;
  size_t cur = (size_t)(now / DEMO_BIN);
  size_t per_s = (size_t)(RESIL_SEC / DEMO_BIN);
  uint64_t sum = 0;
  size_t from = cur > per_s ? cur - per_s : 0;
  for (size_t i = from; i < cur && i < r->nbins; i++) sum += r->req_bins[i];
  double span = (double)((cur - from) * (size_t)DEMO_BIN) / 1e9;
  demo_progress p;
  p.run = r;
  p.t = now;
  p.req_rate = span > 0 ? (double)sum / span : 0;
  p.server_orders = resil_faultserver_orders(f->srv);
  p.in_outage = now >= f->cfg->outage_start && now < f->cfg->outage_start + f->cfg->outage_len;
  progress(ud, &p);
}

static void drive(fleet *f, demo_progress_fn progress, void *pud, volatile sig_atomic_t *stop) {
  const demo_config *c = f->cfg;
  resil_ns end = c->duration + c->drain, next_report = 0;
  for (;;) {
    if (stop && *stop) {
      f->run->interrupted = 1;
      break;
    }
    if (f->err != RESIL_OK) break;
    resil_ns now = since_start(f);
    if (now >= end) break;
    if (progress && now >= next_report) {
      report(f, progress, pud, now);
      next_report = now + PROGRESS_EVERY;
    }
    resil_ns next = progress ? next_report : now + IDLE_WAIT;
    int busy = 0;
    for (uint32_t i = 0; i < c->clients; i++) {
      client *cl = &f->cl[i];
      if (cl->state == C_WAIT && cl->wake <= now) {
        if (cl->has_order) place(cl);
        else if (now < c->duration) start_order(cl, now);
        else cl->state = C_DONE;
      }
      if (cl->state == C_WAIT && cl->wake < next) next = cl->wake;
      if (cl->state != C_DONE) busy = 1;
    }
    if (!busy) break;
    resil_ns wait = next - now;
    if (wait > IDLE_WAIT) wait = IDLE_WAIT;
    if (wait < 0) wait = 0;
    if (resil_http_multi_pending(f->m) > 0) resil_http_multi_perform(f->m, wait);
    else sleep_ns(wait);
  }
}

resil_err demo_run_fleet(const demo_config *c, demo_kind kind, demo_run *out,
                         demo_progress_fn progress, void *progress_ud,
                         volatile sig_atomic_t *stop, char *errbuf, size_t errlen) {
  memset(out, 0, sizeof *out);
  out->kind = kind;
  if (errlen) errbuf[0] = '\0';
  fleet f;
  memset(&f, 0, sizeof f);
  f.cfg = c;
  f.kind = kind;
  f.run = out;
  f.errbuf = errbuf;
  f.errlen = errlen;
  f.clock = resil_clock_system();
  resil_rng_seed(&f.rng, c->seed * 2 + (uint64_t)kind);

  out->nbins = (size_t)((c->duration + c->drain) / DEMO_BIN) + 2;
  out->req_bins = calloc(out->nbins, sizeof *out->req_bins);
  out->done_bins = calloc(out->nbins, sizeof *out->done_bins);
  f.cl = calloc(c->clients, sizeof *f.cl);
  if (out->req_bins == NULL || out->done_bins == NULL || f.cl == NULL) {
    free(f.cl);
    fail(&f, RESIL_ENOMEM, "allocating the fleet");
    return f.err;
  }
  if (make_client(&f) != RESIL_OK || start_server(&f) != RESIL_OK) goto done;

  /* The outage window counts from the server's start: so does the run. */
  f.t0 = f.clock.now(f.clock.ud);
  for (uint32_t i = 0; i < c->clients; i++) {
    client *cl = &f.cl[i];
    cl->f = &f;
    cl->index = i;
    cl->state = C_WAIT;
    cl->wake = resil_rng_between(&f.rng, 0, c->think_max); /* staggered */
  }
  drive(&f, progress, progress_ud, stop);
  out->elapsed = since_start(&f);

done:
  f.closing = 1;
  resil_http_multi_free(f.m); /* aborts calls still in flight */
  out->unfinished = out->intended - out->confirmed - out->failed;
  out->used_bins = (size_t)(out->elapsed / DEMO_BIN) + 1;
  if (out->used_bins > out->nbins) out->used_bins = out->nbins;
  resil_breaker *b = f.http && f.origin ? resil_http_client_breaker(f.http, f.origin) : NULL;
  if (b) {
    resil_breaker_snapshot bs;
    resil_breaker_snapshot_get(b, &bs);
    out->breaker_trips = bs.trips;
    out->breaker_rejected = bs.rejected;
  }
  if (f.budget) {
    resil_budget_snapshot us;
    resil_budget_snapshot_get(f.budget, &us);
    out->budget_denied = us.retries_denied;
  }
  if (f.srv) {
    out->server_requests = resil_faultserver_requests(f.srv);
    out->created = resil_faultserver_orders(f.srv);
  }
  resil_faultserver_stop(f.srv);
  resil_http_client_free(f.http);
  resil_budget_free(f.budget);
  free(f.cl);
  return f.err;
}

void demo_run_free(demo_run *r) {
  if (r == NULL) return;
  free(r->latency);
  free(r->req_bins);
  free(r->done_bins);
  memset(r, 0, sizeof *r);
}
