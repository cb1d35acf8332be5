/* The demo's numbers: one row per run, and the chart (drawn by the
 * simulator's SVG writer, src/sim/svg.c). */
#include <stdlib.h>
#include <string.h>

#include "demo/demo.h"
#include "resil/resil.h"
#include "sim/sim.h"

/* The chart's resolution: requests are counted in DEMO_BIN bins and drawn in
 * bins of CHART_BIN, as a rate per second. */
#define CHART_BIN (250 * RESIL_MSEC)
#define PEAK_WINDOW RESIL_SEC

static int cmp_ns(const void *a, const void *b) {
  resil_ns x = *(const resil_ns *)a, y = *(const resil_ns *)b;
  return (x > y) - (x < y);
}

/* Nearest rank: the smallest value with at least q of the values <= it. */
static resil_ns quantile(const resil_ns *sorted, size_t n, double q) {
  if (n == 0) return -1;
  size_t rank = (size_t)(q * (double)n + 0.999999);
  if (rank < 1) rank = 1;
  if (rank > n) rank = n;
  return sorted[rank - 1];
}

/* The highest rate over any window of PEAK_WINDOW (or the whole span, when
 * shorter) inside [from, to), sliding by one bin. */
static double peak_rate(const demo_run *r, resil_ns from, resil_ns to) {
  size_t b0 = (size_t)((from + DEMO_BIN - 1) / DEMO_BIN), b1 = (size_t)(to / DEMO_BIN);
  if (b1 > r->used_bins) b1 = r->used_bins;
  if (b1 <= b0) return 0;
  size_t w = (size_t)(PEAK_WINDOW / DEMO_BIN);
  if (w > b1 - b0) w = b1 - b0;
  uint64_t sum = 0, best = 0;
  for (size_t i = b0; i < b1; i++) {
    sum += r->req_bins[i];
    if (i >= b0 + w) sum -= r->req_bins[i - w];
    if (i + 1 >= b0 + w && sum > best) best = sum;
  }
  return (double)best / ((double)(w * (size_t)DEMO_BIN) / 1e9);
}

void demo_summarize(const demo_config *c, const demo_run *r, demo_summary *out) {
  memset(out, 0, sizeof *out);
  out->intended = r->intended;
  out->created = r->created;
  /* Every confirmed order accounts for one order on the server; any other
   * order there is one nobody was told about: a second copy of a confirmed
   * order, or an order whose customer was told it failed. Orders still in
   * hand when the run ended may or may not exist, so with any of them this
   * is the least there must be. */
  uint64_t known = r->confirmed + r->unfinished;
  out->duplicates = r->created > known ? r->created - known : 0;
  out->lost = r->confirmed > r->created ? r->confirmed - r->created : 0;
  out->requests = r->requests;
  out->server_requests = r->server_requests;
  out->amplification = r->intended ? (double)r->requests / (double)r->intended : 0;
  out->success = r->intended ? (double)r->confirmed / (double)r->intended : 0;
  out->p50 = out->p99 = -1;
  if (r->nlatency > 0) {
    resil_ns *s = malloc(r->nlatency * sizeof *s);
    if (s) {
      memcpy(s, r->latency, r->nlatency * sizeof *s);
      qsort(s, r->nlatency, sizeof *s, cmp_ns);
      out->p50 = quantile(s, r->nlatency, 0.50);
      out->p99 = quantile(s, r->nlatency, 0.99);
      free(s);
    }
  }
  out->peak_outage = peak_rate(r, c->outage_start, c->outage_start + c->outage_len);
}

void demo_print_table(FILE *out, const demo_run *const *runs, const demo_summary *sums,
                      size_t n) {
  fprintf(out, "%-6s %9s %8s %11s %9s %8s %8s %7s %7s  %s\n", "run", "intended", "created",
          "duplicates", "requests", "amplif.", "success", "p50", "p99", "peak req/s (outage)");
  for (size_t i = 0; i < n; i++) {
    const demo_summary *s = &sums[i];
    char p50[32] = "-", p99[32] = "-", amp[32], succ[32];
    if (s->p50 >= 0) resil_duration_format(s->p50, p50, sizeof p50);
    if (s->p99 >= 0) resil_duration_format(s->p99, p99, sizeof p99);
    snprintf(amp, sizeof amp, "%.2fx", s->amplification);
    snprintf(succ, sizeof succ, "%.1f%%", s->success * 100);
    fprintf(out, "%-6s %9llu %8llu %11llu %9llu %8s %8s %7s %7s  %19.0f\n",
            demo_kind_name(runs[i]->kind), (unsigned long long)s->intended,
            (unsigned long long)s->created, (unsigned long long)s->duplicates,
            (unsigned long long)s->requests, amp, succ, p50, p99, s->peak_outage);
  }
}

/* ---- the chart ------------------------------------------------------------ */

typedef struct curve {
  double *x, *y;
  size_t n;
} curve;

/* bins (DEMO_BIN wide) regrouped CHART_BIN wide, as a rate per second. */
static int make_curve(curve *cv, const uint32_t *bins, size_t used) {
  size_t per = (size_t)(CHART_BIN / DEMO_BIN);
  size_t n = (used + per - 1) / per;
  cv->x = calloc(n ? n : 1, sizeof *cv->x);
  cv->y = calloc(n ? n : 1, sizeof *cv->y);
  cv->n = n;
  if (cv->x == NULL || cv->y == NULL) return -1;
  double width_s = (double)CHART_BIN / 1e9;
  for (size_t i = 0; i < n; i++) {
    uint64_t sum = 0;
    for (size_t j = i * per; j < (i + 1) * per && j < used; j++) sum += bins[j];
    cv->x[i] = ((double)i + 0.5) * width_s;
    cv->y[i] = (double)sum / width_s;
  }
  return 0;
}

/* "WHAT: naive 6638 requests, resil 1518" */
static void title_with_totals(char *buf, size_t len, const char *what, const char *unit,
                              const demo_run *const *runs, size_t n, int confirmed) {
  size_t o = (size_t)snprintf(buf, len, "%s:", what);
  for (size_t i = 0; i < n && o < len; i++) {
    uint64_t v = confirmed ? runs[i]->confirmed : runs[i]->requests;
    o += (size_t)snprintf(buf + o, len - o, "%s %s %llu%s%s", i ? "," : "",
                          demo_kind_name(runs[i]->kind), (unsigned long long)v, i ? "" : " ",
                          i ? "" : unit);
  }
}

static const char *color_of(demo_kind k) { return k == DEMO_NAIVE ? "#d62728" : "#1f77b4"; }

int demo_write_svg(FILE *out, const demo_config *c, const demo_run *const *runs, size_t n) {
  if (n > 4) n = 4;
  curve req[4], done[4];
  sim_series rs[4], ds[4];
  memset(req, 0, sizeof req);
  memset(done, 0, sizeof done);
  int rc = -1;
  for (size_t i = 0; i < n; i++) {
    if (make_curve(&req[i], runs[i]->req_bins, runs[i]->used_bins) ||
        make_curve(&done[i], runs[i]->done_bins, runs[i]->used_bins))
      goto out;
    const char *name = demo_kind_name(runs[i]->kind);
    rs[i] = (sim_series){name, req[i].x, req[i].y, req[i].n, 0, color_of(runs[i]->kind)};
    ds[i] = (sim_series){name, done[i].x, done[i].y, done[i].n, 0, color_of(runs[i]->kind)};
  }
  sim_band band = {(double)c->outage_start / 1e9,
                   (double)(c->outage_start + c->outage_len) / 1e9, "outage"};
  sim_panel panels[2];
  memset(panels, 0, sizeof panels);
  /* The totals go in the titles: longer legend entries would make the two
   * panels' plots different widths, and their time axes would not line up. */
  char t0[160], t1[160];
  title_with_totals(t0, sizeof t0, "Requests per second (every attempt)", "requests", runs, n, 0);
  title_with_totals(t1, sizeof t1, "Orders confirmed per second", "orders", runs, n, 1);
  panels[0].title = t0;
  panels[0].xlabel = "time since the run started (s)";
  panels[0].ylabel = "requests / s";
  panels[0].series = rs;
  panels[0].nseries = n;
  panels[0].bands = &band;
  panels[0].nbands = 1;
  panels[1] = panels[0];
  panels[1].title = t1;
  panels[1].ylabel = "orders / s";
  panels[1].series = ds;
  char title[96], sub[200];
  snprintf(title, sizeof title, "resil demo: %u clients placing orders through an outage",
           c->clients);
  snprintf(sub, sizeof sub,
           "naive: immediate retries, no keys, no budget, no breaker.   "
           "resil: jittered backoff, budget, breaker, idempotency keys.");
  rc = sim_svg_write(out, title, sub, panels, 2);
out:
  for (size_t i = 0; i < n; i++) {
    free(req[i].x);
    free(req[i].y);
    free(done[i].x);
    free(done[i].y);
  }
  return rc;
}
