/* What each scenario draws (the writer is svg.c):
 *   contention   time to finish (log scale) and write calls, against clients
 *   collapse     the share of requests that succeed, attempts per second and
 *                the server's in-flight work (log scale), over time, with the
 *                spike shaded
 *   independent  the load multiplier and the success rate against p, with
 *                the no-guard formulas dashed */
#include <stdlib.h>
#include <string.h>

#include "sim/sim.h"

/* ---- contention ----------------------------------------------------------------- */

int sim_contention_svg(FILE *out, const sim_contention_result *r) {
  const sim_contention_config *c = &r->cfg;
  size_t ns = c->nstrategies, per = ns ? r->npoints / ns : 0;
  double *x = malloc((per + 1) * sizeof *x);
  double *t = malloc((r->npoints + 1) * sizeof *t);
  double *k = malloc((r->npoints + 1) * sizeof *k);
  sim_series *st = calloc(ns + 1, sizeof *st), *sk = calloc(ns + 1, sizeof *sk);
  int rc = -1;
  if (!x || !t || !k || !st || !sk) goto done;
  for (size_t j = 0; j < per; j++) x[j] = r->points[j].clients;
  for (size_t i = 0; i < r->npoints; i++) {
    t[i] = r->points[i].time_ms;
    k[i] = r->points[i].calls;
  }
  for (size_t s = 0; s < ns; s++) {
    const char *name = sim_strategy_name(c->strategies[s]);
    sim_series a = {name, x, t + s * per, per, 0, NULL}, b = {name, x, k + s * per, per, 0, NULL};
    st[s] = a;
    sk[s] = b;
  }
  sim_panel panels[2];
  memset(panels, 0, sizeof panels);
  panels[0].title = "Time until every client has written (mean, log scale)";
  panels[0].xlabel = "clients";
  panels[0].ylabel = "time (ms)";
  panels[0].series = st;
  panels[0].nseries = ns;
  panels[0].y_log = 1;
  panels[1].title = "Write calls (mean)";
  panels[1].xlabel = "clients";
  panels[1].ylabel = "calls";
  panels[1].series = sk;
  panels[1].nseries = ns;
  char sub[200], b1[32], b2[32];
  resil_duration_format(c->base, b1, sizeof b1);
  resil_duration_format(c->cap, b2, sizeof b2);
  snprintf(sub, sizeof sub,
           "Optimistic writes to one row; backoff base %s, cap %s; mean of %u runs, seed %llu",
           b1, b2, (unsigned)c->runs, (unsigned long long)c->seed);
  rc = sim_svg_write(out, "resil sim contention: backoff and jitter", sub, panels, 2);
done:
  free(x);
  free(t);
  free(k);
  free(st);
  free(sk);
  return rc;
}

/* ---- collapse ------------------------------------------------------------------- */

int sim_collapse_svg(FILE *out, const sim_collapse_result *r) {
  const sim_collapse_config *c = &r->cfg;
  size_t ns = r->nseries, nsec = ns ? r->series[0].nsec : 0;
  double *x = malloc((nsec + 1) * sizeof *x);
  double *v = malloc((3 * ns * nsec + 1) * sizeof *v);
  sim_series *s3 = calloc(3 * ns + 1, sizeof *s3);
  char(*names)[SIM_POLICY_NAME_MAX] = calloc(ns + 1, sizeof *names);
  int rc = -1;
  if (!x || !v || !s3 || !names) goto done;
  for (size_t j = 0; j < nsec; j++) x[j] = (double)j;
  for (size_t i = 0; i < ns; i++) {
    const sim_collapse_series *s = &r->series[i];
    double *share = v + (3 * i) * nsec, *att = share + nsec, *inf = att + nsec;
    for (size_t j = 0; j < nsec; j++) {
      share[j] = s->sec[j].succeeded_share;
      att[j] = s->sec[j].attempts;
      inf[j] = s->sec[j].inflight;
    }
    sim_policy_name(s->policy, names[i]);
    sim_series a = {names[i], x, share, nsec, 0, NULL};
    sim_series b = {names[i], x, att, nsec, 0, NULL};
    sim_series d = {names[i], x, inf, nsec, 0, NULL};
    s3[i] = a;
    s3[ns + i] = b;
    s3[2 * ns + i] = d;
  }
  char spike_label[48];
  snprintf(spike_label, sizeof spike_label, "spike: %g req/s", c->spike_rate);
  sim_band spike = {(double)c->spike_from / 1e9, (double)c->spike_to / 1e9, spike_label};
  sim_panel panels[3];
  memset(panels, 0, sizeof panels);
  panels[0].title = "Requests that succeed, by the second they arrived";
  panels[0].ylabel = "succeeded";
  panels[0].series = s3;
  panels[0].y_percent = 1;
  panels[1].title = "Attempts sent to the server per second (first attempts and retries)";
  panels[1].ylabel = "attempts / s";
  panels[1].series = s3 + ns;
  panels[2].title = "Work in progress on the server (log scale)";
  panels[2].ylabel = "attempts in flight";
  panels[2].series = s3 + 2 * ns;
  panels[2].y_log = 1;
  for (int i = 0; i < 3; i++) {
    panels[i].xlabel = "time (s)";
    panels[i].nseries = ns;
    panels[i].bands = &spike;
    panels[i].nbands = 1;
  }
  char sub[240], t1[32];
  resil_duration_format(c->timeout, t1, sizeof t1);
  snprintf(sub, sizeof sub,
           "%g req/s, %g req/s from %gs to %gs; timeout %s, up to %u attempts; "
           "%u run%s, seed %llu",
           c->rate, c->spike_rate, (double)c->spike_from / 1e9, (double)c->spike_to / 1e9, t1,
           (unsigned)c->attempts, (unsigned)c->runs, c->runs == 1 ? "" : "s (means)",
           (unsigned long long)c->seed);
  rc = sim_svg_write(out, "resil sim collapse: a 5-second spike, then what?", sub, panels, 3);
done:
  free(x);
  free(v);
  free(s3);
  free(names);
  return rc;
}

/* ---- independent ------------------------------------------------------------------ */

/* "1 + p + p² + p³" for small attempt counts, with UTF-8 superscripts. */
static void formula_load(uint32_t attempts, char *buf, size_t len) {
  static const char *const sup[] = {"", "", "\xc2\xb2", "\xc2\xb3", "\xe2\x81\xb4",
                                    "\xe2\x81\xb5", "\xe2\x81\xb6", "\xe2\x81\xb7",
                                    "\xe2\x81\xb8", "\xe2\x81\xb9"};
  if (attempts > 9) {
    snprintf(buf, len, "no guard, in theory");
    return;
  }
  size_t n = (size_t)snprintf(buf, len, "1");
  for (uint32_t k = 1; k < attempts && n < len; k++)
    n += (size_t)snprintf(buf + n, len - n, " + p%s", sup[k]);
}

static void formula_success(uint32_t attempts, char *buf, size_t len) {
  static const char *const sup[] = {"", "", "\xc2\xb2", "\xc2\xb3", "\xe2\x81\xb4",
                                    "\xe2\x81\xb5", "\xe2\x81\xb6", "\xe2\x81\xb7",
                                    "\xe2\x81\xb8", "\xe2\x81\xb9"};
  if (attempts > 9) snprintf(buf, len, "no guard, in theory");
  else snprintf(buf, len, "1 \xe2\x88\x92 p%s", sup[attempts]);
}

int sim_independent_svg(FILE *out, const sim_independent_result *r) {
  const sim_independent_config *c = &r->cfg;
  size_t np = c->np, npol = c->npolicies;
  double *x = malloc((np + 1) * sizeof *x);
  double *v = malloc((2 * (npol + 1) * np + 1) * sizeof *v);
  sim_series *s2 = calloc(2 * (npol + 1) + 1, sizeof *s2);
  char(*names)[SIM_POLICY_NAME_MAX] = calloc(npol + 1, sizeof *names);
  int rc = -1;
  if (!x || !v || !s2 || !names) goto done;
  for (size_t j = 0; j < np; j++) x[j] = c->p[j];
  for (size_t i = 0; i < npol; i++) {
    double *load = v + 2 * i * np, *ok = load + np;
    for (size_t j = 0; j < np; j++) {
      load[j] = r->points[i * np + j].load;
      ok[j] = r->points[i * np + j].success_rate;
    }
    sim_policy_name(c->policies[i], names[i]);
    sim_series a = {names[i], x, load, np, 0, NULL}, b = {names[i], x, ok, np, 0, NULL};
    s2[i] = a;
    s2[npol + 1 + i] = b;
  }
  /* The formulas, dashed, last in each legend. */
  double *tl = v + 2 * npol * np, *ts = tl + np;
  for (size_t j = 0; j < np; j++) {
    tl[j] = sim_theory_load(c->p[j], c->attempts);
    ts[j] = sim_theory_success(c->p[j], c->attempts);
  }
  char fl[96], fs[96];
  formula_load(c->attempts, fl, sizeof fl);
  formula_success(c->attempts, fs, sizeof fs);
  sim_series th1 = {fl, x, tl, np, 1, "#000000"}, th2 = {fs, x, ts, np, 1, "#000000"};
  s2[npol] = th1;
  s2[2 * npol + 1] = th2;

  sim_panel panels[2];
  memset(panels, 0, sizeof panels);
  panels[0].title = "Load on the server: calls per request";
  panels[0].ylabel = "calls / request";
  panels[0].series = s2;
  panels[1].title = "Requests that succeed";
  panels[1].ylabel = "success rate";
  panels[1].series = s2 + npol + 1;
  panels[1].y_percent = 1;
  for (int i = 0; i < 2; i++) {
    panels[i].xlabel = "p, the probability that one call fails";
    panels[i].nseries = npol + 1;
  }
  char sub[240], d1[32];
  resil_duration_format(c->duration, d1, sizeof d1);
  snprintf(sub, sizeof sub,
           "%u clients x %g req/s for %s, up to %u attempts; budget per client %g/s, "
           "burst %g; seed %llu",
           (unsigned)c->clients, c->client_rate, d1, (unsigned)c->attempts, c->guard.budget_rate,
           c->guard.budget_burst, (unsigned long long)c->seed);
  rc = sim_svg_write(out, "resil sim independent: how retries multiply load", sub, panels, 2);
done:
  free(x);
  free(v);
  free(s2);
  free(names);
  return rc;
}
