/* resil sim (src/sim/): the event heap, the simulated clock, determinism,
 * each scenario's published or provable result, and the output formats;
 * plus the real `resil sim` binary when the CLI is built (RESIL_CLI_PATH).
 *
 * Every simulation here runs with a fixed seed, so each check is
 * deterministic; the statistical tolerances are derived from the sample
 * size (several standard errors), so they would also hold for other seeds. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/sim.h"
#include "test_util.h"
#ifdef RESIL_CLI_PATH
#include "cli_harness.h"
#endif

/* ---- helpers ------------------------------------------------------------------ */

/* What fn writes to a FILE, as a NUL-terminated string. */
typedef int (*writer)(FILE *out, const void *ud);

static char *capture_output(writer fn, const void *ud, int *rc) {
  FILE *f = tmpfile();
  assert_non_null(f);
  *rc = fn(f, ud);
  long n = ftell(f);
  assert_true(n >= 0);
  rewind(f);
  char *buf = malloc((size_t)n + 1);
  assert_non_null(buf);
  assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

static int count_lines_in(const char *s) {
  int n = 0;
  for (; *s; s++)
    if (*s == '\n') n++;
  return n;
}

static const char *line_end(const char *s) {
  const char *e = strchr(s, '\n');
  return e ? e : s + strlen(s);
}

/* Well-formed XML as far as a writer like svg.c can get it wrong: every
 * element closed in order, exactly one root <svg>, and every '&' the start
 * of an entity. Returns NULL or what is wrong. */
static const char *xml_problem(const char *s) {
  static char why[128];
  char stack[64][32];
  int depth = 0, roots = 0;
  for (const char *p = s; *p; p++) {
    if (*p == '&') {
      static const char *const ents[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
      int ok = 0;
      for (int i = 0; i < 5; i++) ok |= strncmp(p, ents[i], strlen(ents[i])) == 0;
      if (!ok) return "a bare '&'";
      continue;
    }
    if (*p == '>') return "a bare '>' in text";
    if (*p != '<') continue;
    if (strncmp(p, "<?", 2) == 0) {
      const char *e = strstr(p, "?>");
      if (!e) return "unterminated <?";
      p = e + 1;
      continue;
    }
    if (strncmp(p, "<!--", 4) == 0) {
      const char *e = strstr(p, "-->");
      if (!e) return "unterminated comment";
      p = e + 2;
      continue;
    }
    const char *e = strchr(p, '>');
    if (!e) return "unterminated tag";
    for (const char *q = p + 1; q < e; q++)
      if (*q == '<') return "'<' inside a tag";
    int closing = p[1] == '/';
    const char *name = p + 1 + closing;
    size_t len = strcspn(name, " \t\n/>");
    if (len == 0 || len >= 32) return "bad tag name";
    if (closing) {
      if (depth == 0) return "closing tag without an open one";
      depth--;
      if (strlen(stack[depth]) != len || strncmp(stack[depth], name, len) != 0) {
        snprintf(why, sizeof why, "</%.*s> closes <%.31s>", (int)(len & 31), name, stack[depth]);
        return why;
      }
    } else if (e[-1] != '/') {
      if (depth == 0) roots++;
      if (depth == 64) return "too deep";
      memcpy(stack[depth], name, len);
      stack[depth++][len] = '\0';
    } else if (depth == 0) {
      roots++;
    }
    p = e;
  }
  if (depth != 0) return "unclosed elements at the end";
  if (roots != 1) return "not exactly one root element";
  return NULL;
}

static void assert_wellformed_svg(const char *svg) {
  const char *why = xml_problem(svg);
  if (why) {
    print_error("SVG not well-formed: %s\n", why);
    fail();
  }
  assert_true(strncmp(svg, "<?xml version=\"1.0\"", 19) == 0);
  assert_non_null(strstr(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\""));
  assert_non_null(strstr(svg, "</svg>\n"));
}

/* Brackets and braces balance outside strings, and it is one object. */
static void assert_json_shape(const char *s) {
  int depth = 0, in_str = 0;
  assert_int_equal(s[0], '{');
  for (const char *p = s; *p; p++) {
    if (in_str) {
      if (*p == '\\') p++;
      else if (*p == '"') in_str = 0;
      continue;
    }
    if (*p == '"') in_str = 1;
    else if (*p == '{' || *p == '[') depth++;
    else if (*p == '}' || *p == ']') {
      depth--;
      assert_true(depth >= 0);
      if (depth == 0) assert_string_equal(p, "}\n");
    }
  }
  assert_int_equal(depth, 0);
  /* JSON has no NaN or infinity (and "inflight" is a key, so look at values). */
  static const char *const bad[] = {": nan", ": inf", ": -nan", ": -inf", "[nan", "[inf",
                                    ", nan", ", inf", ", -inf"};
  for (size_t i = 0; i < ARRAY_LEN(bad); i++) assert_null(strstr(s, bad[i]));
}

/* ---- the event heap and the clock ---------------------------------------------------- */

static void heap_orders_events(void **state) {
  (void)state;
  sim_heap h;
  assert_int_equal(sim_heap_init(&h, 1), RESIL_OK); /* grows from the minimum */
  resil_rng rng;
  resil_rng_seed(&rng, 42);
  enum { N = 20000 };
  for (uint32_t i = 0; i < N; i++)
    assert_int_equal(sim_heap_push(&h, (resil_ns)resil_rng_below(&rng, 1000), 0, i, 0), RESIL_OK);
  sim_event ev, prev = {0, 0, 0, 0, 0};
  size_t n = 0;
  while (sim_heap_pop(&h, &ev)) {
    if (n) {
      assert_true(ev.t >= prev.t);
      if (ev.t == prev.t) assert_true(ev.seq > prev.seq); /* and pushes were in id order */
      if (ev.t == prev.t) assert_true(ev.id > prev.id);
    }
    prev = ev;
    n++;
  }
  assert_int_equal(n, N);
  assert_int_equal(sim_heap_pop(&h, &ev), 0);
  sim_heap_free(&h);
}

static void heap_is_stable_for_equal_times(void **state) {
  (void)state;
  sim_heap h;
  assert_int_equal(sim_heap_init(&h, 4), RESIL_OK);
  /* Interleave three timestamps; within each, pop order must be push order,
   * including pushes made between pops. */
  for (uint32_t i = 0; i < 30; i++) assert_int_equal(sim_heap_push(&h, (i % 3) * 10, 0, i, 0), 0);
  sim_event ev;
  uint32_t last = 0;
  for (int k = 0; k < 5; k++) { /* five events at t = 0 */
    assert_true(sim_heap_pop(&h, &ev));
    assert_int_equal(ev.t, 0);
    if (k) assert_true(ev.id > last);
    last = ev.id;
  }
  assert_int_equal(sim_heap_push(&h, 0, 0, 100, 0), RESIL_OK);  /* after the other t = 0 */
  assert_int_equal(sim_heap_push(&h, 10, 0, 101, 0), RESIL_OK); /* after the other t = 10 */
  uint32_t want0[] = {15, 18, 21, 24, 27, 100};
  for (size_t k = 0; k < ARRAY_LEN(want0); k++) {
    assert_true(sim_heap_pop(&h, &ev));
    assert_int_equal(ev.t, 0);
    assert_int_equal(ev.id, want0[k]);
  }
  for (uint32_t i = 1; i < 30; i += 3) {
    assert_true(sim_heap_pop(&h, &ev));
    assert_int_equal(ev.t, 10);
    assert_int_equal(ev.id, i);
  }
  assert_true(sim_heap_pop(&h, &ev));
  assert_int_equal(ev.id, 101);
  sim_heap_clear(&h);
  assert_int_equal(sim_heap_pop(&h, &ev), 0);
  sim_heap_free(&h);
  sim_heap_free(&h); /* twice is harmless */
}

static void clock_follows_events(void **state) {
  (void)state;
  sim_clock c;
  assert_int_equal(sim_clock_init(&c), RESIL_OK);
  resil_clock clk = sim_clock_get(&c);
  assert_int_equal(clk.now(clk.ud), 0);
  sim_clock_set(&c, 5 * RESIL_SEC);
  assert_int_equal(clk.now(clk.ud), 5 * RESIL_SEC);
  sim_clock_set(&c, 2 * RESIL_SEC); /* never backwards */
  assert_int_equal(clk.now(clk.ud), 5 * RESIL_SEC);

  /* A breaker on it opens, and half-opens exactly when simulated time says. */
  resil_breaker_config bc;
  resil_breaker_config_init(&bc);
  bc.failure_threshold = 1;
  bc.open_duration = 10 * RESIL_SEC;
  bc.clock = clk;
  resil_breaker *b;
  assert_int_equal(resil_breaker_new(&b, &bc), RESIL_OK);
  resil_permit pm;
  assert_int_equal(resil_breaker_acquire(b, &pm, NULL), RESIL_OK);
  resil_breaker_record(b, &pm, RESIL_CALL_FAILURE, 0);
  resil_ns retry_in;
  assert_int_equal(resil_breaker_acquire(b, &pm, &retry_in), RESIL_ECIRCUIT_OPEN);
  assert_int_equal(retry_in, 10 * RESIL_SEC);
  sim_clock_set(&c, 15 * RESIL_SEC - 1);
  assert_int_equal(resil_breaker_acquire(b, &pm, NULL), RESIL_ECIRCUIT_OPEN);
  sim_clock_set(&c, 15 * RESIL_SEC);
  assert_int_equal(resil_breaker_acquire(b, &pm, NULL), RESIL_OK);
  resil_breaker_record(b, &pm, RESIL_CALL_SUCCESS, 0);
  resil_breaker_free(b);
  sim_clock_free(&c);
}

static void ps_server_slows_with_load(void **state) {
  (void)state;
  sim_ps_server s;
  assert_int_equal(sim_ps_init(&s, RESIL_SEC, 10 * RESIL_MSEC, 1), RESIL_OK);
  assert_int_equal(sim_ps_next_done(&s), -1);
  /* Alone: base + per * 1. */
  assert_int_equal(sim_ps_arrive(&s, 0, 1, 7), RESIL_OK);
  assert_int_equal(sim_ps_next_done(&s), RESIL_SEC + 10 * RESIL_MSEC);
  uint32_t id, aux;
  sim_ps_complete(&s, RESIL_SEC + 10 * RESIL_MSEC, &id, &aux);
  assert_int_equal(id, 1);
  assert_int_equal(aux, 7);
  /* 100 at once (the ring grows): all finish together at base + per * 100. */
  resil_ns t0 = 5 * RESIL_SEC;
  for (uint32_t i = 0; i < 100; i++) assert_int_equal(sim_ps_arrive(&s, t0, i, 0), RESIL_OK);
  assert_int_equal(sim_ps_inflight(&s), 100);
  for (uint32_t i = 0; i < 100; i++) {
    resil_ns t = sim_ps_next_done(&s);
    assert_true(llabs(t - (t0 + 2 * RESIL_SEC)) <= 1);
    sim_ps_complete(&s, t, &id, &aux);
    assert_int_equal(id, i); /* first in, first out */
  }
  /* A second job halfway through slows the first: 0.5s of work done alone
   * at 1.01 ns per unit, the other 0.5s at 1.02: done at 0.505 + 0.51. */
  t0 = 20 * RESIL_SEC;
  assert_int_equal(sim_ps_arrive(&s, t0, 1, 0), RESIL_OK);
  assert_int_equal(sim_ps_arrive(&s, t0 + 505 * RESIL_MSEC, 2, 0), RESIL_OK);
  assert_true(llabs(sim_ps_next_done(&s) - (t0 + 1015 * RESIL_MSEC)) <= 2);
  sim_ps_free(&s);
}

static void seeds_and_distributions(void **state) {
  (void)state;
  assert_true(sim_seed(1, 1, 0, 10, 0) == sim_seed(1, 1, 0, 10, 0));
  assert_true(sim_seed(1, 1, 0, 10, 0) != sim_seed(2, 1, 0, 10, 0));
  assert_true(sim_seed(1, 1, 0, 10, 0) != sim_seed(1, 2, 0, 10, 0));
  assert_true(sim_seed(1, 1, 0, 10, 0) != sim_seed(1, 1, 1, 10, 0));
  assert_true(sim_seed(1, 1, 0, 10, 0) != sim_seed(1, 1, 0, 11, 0));
  assert_true(sim_seed(1, 1, 0, 10, 0) != sim_seed(1, 1, 0, 10, 1));
  assert_true(sim_double_bits(0.0) == sim_double_bits(-0.0));

  /* Normal(0, 1) and Exp(mean): sample means within 5 standard errors. */
  resil_rng rng;
  resil_rng_seed(&rng, 7);
  sim_normal g;
  sim_normal_init(&g, &rng);
  enum { N = 200000 };
  double sum = 0, sq = 0, esum = 0;
  for (int i = 0; i < N; i++) {
    double z = sim_normal_next(&g);
    sum += z;
    sq += z * z;
    esum += (double)sim_exp_ns(&rng, 100 * RESIL_MSEC);
  }
  double se = 1 / sqrt((double)N);
  assert_true(fabs(sum / N) < 5 * se);
  assert_true(fabs(sq / N - 1) < 5 * sqrt(2.0) * se);
  assert_true(fabs(esum / N / (100 * RESIL_MSEC) - 1) < 5 * se);
}

static void policy_names(void **state) {
  (void)state;
  static const struct {
    const char *in, *canonical;
  } ok[] = {
      {"none", "none"},
      {"immediate", "immediate"},
      {"backoff", "backoff"},
      {"budget", "immediate+budget"},
      {"breaker+backoff", "backoff+breaker"},
      {"adaptive+backoff+budget", "backoff+budget+adaptive"},
      {"none+breaker", "none+breaker"},
  };
  char buf[SIM_POLICY_NAME_MAX];
  for (size_t i = 0; i < ARRAY_LEN(ok); i++) {
    sim_policy p;
    assert_int_equal(sim_policy_parse(ok[i].in, &p), RESIL_OK);
    assert_string_equal(sim_policy_name(p, buf), ok[i].canonical);
    sim_policy q;
    assert_int_equal(sim_policy_parse(buf, &q), RESIL_OK);
    assert_true(sim_policy_equal(p, q));
  }
  static const char *const bad[] = {"", "+", "backoff+", "fast", "backoff+immediate",
                                    "budget+budget", "Backoff", "backoff+budget+x"};
  for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
    sim_policy p;
    assert_int_equal(sim_policy_parse(bad[i], &p), RESIL_EINVAL);
  }
  for (int s = 0; s < SIM_STRAT_COUNT; s++) {
    sim_strategy t;
    assert_int_equal(sim_strategy_parse(sim_strategy_name((sim_strategy)s), &t), RESIL_OK);
    assert_int_equal(t, s);
  }
  sim_strategy t;
  assert_int_equal(sim_strategy_parse("jitter", &t), RESIL_EINVAL);
}

/* ---- determinism ------------------------------------------------------------------ */

static void same_seed_same_results(void **state) {
  (void)state;
  sim_contention_config c;
  sim_contention_config_init(&c);
  c.seed = 99;
  for (int s = 0; s < SIM_STRAT_COUNT; s++) {
    sim_contention_run a, b, d;
    assert_int_equal(sim_contention_once(&c, (sim_strategy)s, 60, 3, &a), RESIL_OK);
    assert_int_equal(sim_contention_once(&c, (sim_strategy)s, 60, 3, &b), RESIL_OK);
    assert_memory_equal(&a, &b, sizeof a);
    c.seed = 100;
    assert_int_equal(sim_contention_once(&c, (sim_strategy)s, 60, 3, &d), RESIL_OK);
    c.seed = 99;
    assert_true(a.time != d.time || a.calls != d.calls); /* another seed, another run */
  }

  sim_collapse_config k;
  sim_collapse_config_init(&k);
  size_t nsec = (size_t)(k.duration / RESIL_SEC);
  sim_collapse_second *s1 = calloc(nsec, sizeof *s1), *s2 = calloc(nsec, sizeof *s2);
  assert_non_null(s1);
  assert_non_null(s2);
  sim_policy pol = {SIM_RETRY_BACKOFF, SIM_GUARD_BUDGET | SIM_GUARD_BREAKER | SIM_GUARD_ADAPTIVE};
  sim_collapse_run r1, r2;
  assert_int_equal(sim_collapse_once(&k, pol, 0, s1, nsec, &r1), RESIL_OK);
  assert_int_equal(sim_collapse_once(&k, pol, 0, s2, nsec, &r2), RESIL_OK);
  assert_memory_equal(s1, s2, nsec * sizeof *s1);
  assert_memory_equal(&r1, &r2, sizeof r1);
  k.seed = 2;
  assert_int_equal(sim_collapse_once(&k, pol, 0, s2, nsec, &r2), RESIL_OK);
  assert_true(memcmp(s1, s2, nsec * sizeof *s1) != 0);
  free(s1);
  free(s2);

  sim_independent_config ic;
  sim_independent_config_init(&ic);
  ic.duration = 5 * RESIL_SEC;
  sim_independent_point p1, p2;
  assert_int_equal(sim_independent_once(&ic, pol, 0.3, 0, &p1), RESIL_OK);
  assert_int_equal(sim_independent_once(&ic, pol, 0.3, 0, &p2), RESIL_OK);
  assert_memory_equal(&p1, &p2, sizeof p1);
  ic.seed = 2;
  assert_int_equal(sim_independent_once(&ic, pol, 0.3, 0, &p2), RESIL_OK);
  assert_true(p1.calls != p2.calls || p1.requests != p2.requests);
}

/* A sweep's points do not depend on what else was simulated or in which
 * order: each equals the runs of that point simulated on their own. */
static void results_independent_of_order(void **state) {
  (void)state;
  sim_contention_config c;
  sim_contention_config_init(&c);
  c.runs = 3;
  c.clients_from = 10;
  c.clients_to = 30;
  c.clients_step = 10;
  sim_contention_result fwd, rev;
  assert_int_equal(sim_contention_sweep(&c, &fwd), RESIL_OK);
  for (size_t i = 0; i < SIM_STRAT_COUNT; i++)
    c.strategies[i] = (sim_strategy)(SIM_STRAT_COUNT - 1 - i);
  assert_int_equal(sim_contention_sweep(&c, &rev), RESIL_OK);
  assert_int_equal(fwd.npoints, 15);
  assert_int_equal(rev.npoints, 15);
  for (size_t i = 0; i < fwd.npoints; i++) {
    const sim_contention_point *a = &fwd.points[i];
    const sim_contention_point *b = NULL;
    for (size_t j = 0; j < rev.npoints; j++)
      if (rev.points[j].strategy == a->strategy && rev.points[j].clients == a->clients)
        b = &rev.points[j];
    assert_non_null(b);
    assert_true(a->time_ms == b->time_ms && a->calls == b->calls);
    double calls = 0;
    for (uint32_t r = 0; r < c.runs; r++) {
      sim_contention_run one;
      assert_int_equal(sim_contention_once(&c, a->strategy, a->clients, r, &one), RESIL_OK);
      calls += (double)one.calls;
    }
    assert_true(fabs(calls / c.runs - a->calls) < 1e-9);
  }
  sim_contention_result_free(&fwd);
  sim_contention_result_free(&rev);
}

/* ---- contention ---------------------------------------------------------------------- */

static double mean_calls(sim_strategy s, uint32_t n, uint32_t runs, double *time_ms) {
  sim_contention_config c;
  sim_contention_config_init(&c);
  c.runs = runs;
  c.clients_from = c.clients_to = n;
  c.strategies[0] = s;
  c.nstrategies = 1;
  sim_contention_result r;
  assert_int_equal(sim_contention_sweep(&c, &r), RESIL_OK);
  assert_int_equal(r.npoints, 1);
  assert_int_equal(r.points[0].incomplete_runs, 0);
  double calls = r.points[0].calls;
  if (time_ms) *time_ms = r.points[0].time_ms;
  sim_contention_result_free(&r);
  return calls;
}

static void contention_no_backoff_is_quadratic(void **state) {
  (void)state;
  double c20 = mean_calls(SIM_STRAT_NONE, 20, 30, NULL);
  double c40 = mean_calls(SIM_STRAT_NONE, 40, 30, NULL);
  double c80 = mean_calls(SIM_STRAT_NONE, 80, 30, NULL);
  double c160 = mean_calls(SIM_STRAT_NONE, 160, 10, NULL);
  /* Doubling N roughly quadruples the calls (linear would double them). */
  assert_true(c40 / c20 > 2.8 && c40 / c20 < 4.5);
  assert_true(c80 / c40 > 3.0 && c80 / c40 < 4.5);
  assert_true(c160 / c80 > 3.0 && c160 / c80 < 4.5);
  double slope = log(c160 / c20) / log(8.0); /* log-log slope */
  assert_true(slope > 1.7 && slope < 2.2);
}

static void contention_jitter_needs_fewer_calls(void **state) {
  (void)state;
  double t_exp, t_full, t_dec;
  double exp = mean_calls(SIM_STRAT_EXPONENTIAL, 100, 30, &t_exp);
  double full = mean_calls(SIM_STRAT_FULL, 100, 30, &t_full);
  double dec = mean_calls(SIM_STRAT_DECORRELATED, 100, 30, &t_dec);
  double equal = mean_calls(SIM_STRAT_EQUAL, 100, 30, NULL);
  double none = mean_calls(SIM_STRAT_NONE, 100, 30, NULL);
  print_message("N=100 calls: none %.0f exponential %.0f full %.0f equal %.0f decorrelated %.0f\n",
                none, exp, full, equal, dec);
  /* The article's result: jitter cuts the work, and the time too. */
  assert_true(full < 0.6 * exp);
  assert_true(dec < 0.65 * exp);
  assert_true(equal < 0.6 * exp);
  assert_true(exp < none);
  assert_true(t_full < 0.2 * t_exp);
  assert_true(t_dec < 0.2 * t_exp);
}

static void contention_every_client_succeeds(void **state) {
  (void)state;
  sim_contention_config c;
  sim_contention_config_init(&c);
  for (int s = 0; s < SIM_STRAT_COUNT; s++)
    for (uint32_t n = 1; n <= 121; n += 30)
      for (uint32_t r = 0; r < 3; r++) {
        sim_contention_run one;
        assert_int_equal(sim_contention_once(&c, (sim_strategy)s, n, r, &one), RESIL_OK);
        assert_int_equal(one.succeeded, n);
        assert_true(one.calls >= n);
        assert_true(one.reads == one.calls); /* one read before each write */
        assert_true(one.time >= 4 * 5 * RESIL_MSEC); /* four hops, at least */
      }
  /* One client alone: one read and one write, about four hops. */
  sim_contention_run one;
  assert_int_equal(sim_contention_once(&c, SIM_STRAT_FULL, 1, 0, &one), RESIL_OK);
  assert_int_equal(one.calls, 1);
  assert_true(one.time > 20 * RESIL_MSEC && one.time < 60 * RESIL_MSEC);
}

/* ---- independent ----------------------------------------------------------------------- */

/* Variance of the calls one request makes when each fails with p and it
 * stops after a attempts: X = k with p^(k-1)(1-p) for k < a, a with p^(a-1). */
static double calls_variance(double p, uint32_t a) {
  double m1 = 0, m2 = 0, pk = 1;
  for (uint32_t k = 1; k <= a; k++) {
    double prob = k < a ? pk * (1 - p) : pk;
    m1 += k * prob;
    m2 += (double)k * k * prob;
    pk *= p;
  }
  return m2 - m1 * m1;
}

static void independent_matches_formulas(void **state) {
  (void)state;
  sim_independent_config c;
  sim_independent_config_init(&c); /* 100 clients x 10/s x 60s: ~60000 requests */
  static const double ps[] = {0.05, 0.2, 0.5, 0.7, 0.9};
  static const sim_policy pols[] = {{SIM_RETRY_BACKOFF, 0}, {SIM_RETRY_IMMEDIATE, 0}};
  for (size_t k = 0; k < ARRAY_LEN(pols); k++)
    for (size_t i = 0; i < ARRAY_LEN(ps); i++) {
      double p = ps[i];
      sim_independent_point pt;
      assert_int_equal(sim_independent_once(&c, pols[k], p, 0, &pt), RESIL_OK);
      double n = (double)pt.requests;
      assert_true(n > 55000);
      double want_load = 1 + p + p * p + p * p * p, want_ok = 1 - p * p * p * p;
      assert_true(fabs(sim_theory_load(p, 4) - want_load) < 1e-12);
      assert_true(fabs(sim_theory_success(p, 4) - want_ok) < 1e-12);
      /* Five standard errors of the mean over n independent requests. */
      double tol_load = 5 * sqrt(calls_variance(p, 4) / n);
      double tol_ok = 5 * sqrt(want_ok * (1 - want_ok) / n);
      print_message("p=%.2f load %.4f (want %.4f +- %.4f) success %.5f (want %.5f +- %.5f)\n", p,
                    pt.load, want_load, tol_load, pt.success_rate, want_ok, tol_ok);
      assert_true(fabs(pt.load - want_load) <= tol_load);
      assert_true(fabs(pt.success_rate - want_ok) <= tol_ok + 1e-12);
      assert_int_equal(pt.rejected, 0);
      assert_int_equal(pt.calls, pt.requests + pt.retries);
    }
  /* No retries: exactly one call per request, success 1 - p. */
  sim_independent_point pt;
  sim_policy none = {SIM_RETRY_NONE, 0};
  assert_int_equal(sim_independent_once(&c, none, 0.3, 0, &pt), RESIL_OK);
  assert_int_equal(pt.calls, pt.requests);
  assert_true(fabs(pt.success_rate - 0.7) <= 5 * sqrt(0.21 / (double)pt.requests));
}

static void token_bucket_bounds_retries(void **state) {
  (void)state;
  sim_independent_config c;
  sim_independent_config_init(&c);
  c.duration = 30 * RESIL_SEC;
  sim_policy pol = {SIM_RETRY_BACKOFF, SIM_GUARD_BUDGET};
  static const double rates[] = {1, 2.5};
  static const double bursts[] = {10, 3};
  for (size_t i = 0; i < ARRAY_LEN(rates); i++) {
    c.guard.budget_rate = rates[i];
    c.guard.budget_burst = bursts[i];
    /* Every call fails, so every request wants 3 retries: far more than
     * the budget allows, which must then be the limit. */
    sim_independent_point pt;
    assert_int_equal(sim_independent_once(&c, pol, 1.0, 0, &pt), RESIL_OK);
    double span = (double)pt.end_time / 1e9;
    double bound = c.guard.budget_burst + c.guard.budget_rate * span;
    print_message("rate %.1f burst %.0f: max %llu retries per client, bound %.1f\n",
                  c.guard.budget_rate, c.guard.budget_burst, (unsigned long long)pt.max_client_retries,
                  bound);
    assert_true((double)pt.max_client_retries <= bound);
    assert_true((double)pt.retries <= c.clients * bound);
    /* ... and reached: demand (30 retries/s per client) lasts the whole
     * duration, so each bucket grants about burst + rate * duration. */
    double reached = c.guard.budget_burst + c.guard.budget_rate * (double)c.duration / 1e9 - 1;
    assert_true((double)pt.retries >= 0.97 * c.clients * reached);
    assert_int_equal(pt.successes, 0);
    /* Load: 1 + what the budget lets through. */
    assert_true(pt.load <= 1 + c.clients * bound / (double)pt.requests);
  }
  /* With a budget, amplification stays near 1 + rate / request rate. */
  c.guard.budget_rate = 1;
  c.guard.budget_burst = 10;
  c.duration = 60 * RESIL_SEC;
  sim_independent_point pt;
  assert_int_equal(sim_independent_once(&c, pol, 0.7, 0, &pt), RESIL_OK);
  assert_true(pt.load < 1.13); /* 1 + (10 + 60) / 600 = 1.117 */
  assert_true(pt.load > 1.09);
}

/* ---- collapse ------------------------------------------------------------------------- */

static const sim_collapse_series *find_series(const sim_collapse_result *r, const char *name) {
  char buf[SIM_POLICY_NAME_MAX];
  for (size_t i = 0; i < r->nseries; i++)
    if (strcmp(sim_policy_name(r->series[i].policy, buf), name) == 0) return &r->series[i];
  print_error("no series %s\n", name);
  fail();
  return NULL;
}

static void collapse_retries_keep_it_down(void **state) {
  (void)state;
  sim_collapse_config c;
  sim_collapse_config_init(&c);
  c.runs = 3;
  sim_collapse_result r;
  assert_int_equal(sim_collapse_simulate(&c, &r), RESIL_OK);
  assert_int_equal(r.nseries, c.npolicies);
  for (size_t i = 0; i < r.nseries; i++) {
    char buf[SIM_POLICY_NAME_MAX];
    const sim_collapse_series *s = &r.series[i];
    print_message("%-24s recovered %d at %.1f (%u/3) success %.3f\n",
                  sim_policy_name(s->policy, buf), s->recovered, s->recovered_at_s,
                  (unsigned)s->runs_recovered, s->success_rate);
  }
  /* Retries without a guard turn the 5s spike into a lasting outage: no
   * run recovers, and at the end nothing succeeds while the server's
   * backlog keeps growing. */
  static const char *const stuck[] = {"immediate", "backoff"};
  for (size_t i = 0; i < ARRAY_LEN(stuck); i++) {
    const sim_collapse_series *s = find_series(&r, stuck[i]);
    assert_int_equal(s->recovered, 0);
    assert_int_equal(s->runs_recovered, 0);
    assert_true(s->recovered_at_s == -1);
    const sim_collapse_second *end = &s->sec[s->nsec - 1];
    assert_true(end->succeeded_share < 0.05);
    assert_true(end->inflight > 1000);
    assert_true(end->retries > end->new_requests); /* most load is retries */
    assert_true(s->attempts_per_request > 1.8);
  }
  /* Without retries, or with a budget, a breaker, or adaptive throttling,
   * the system recovers once the spike is over. */
  static const char *const fine[] = {"none", "immediate+budget", "backoff+budget",
                                     "backoff+breaker", "backoff+adaptive",
                                     "backoff+budget+breaker"};
  for (size_t i = 0; i < ARRAY_LEN(fine); i++) {
    const sim_collapse_series *s = find_series(&r, fine[i]);
    assert_int_equal(s->recovered, 1);
    assert_int_equal(s->runs_recovered, 3);
    assert_true(s->recovered_at_s >= 25 && s->recovered_at_s < 70);
    const sim_collapse_second *end = &s->sec[s->nsec - 1];
    assert_true(end->succeeded_share >= SIM_HEALTHY_SHARE);
    assert_true(end->inflight < 200);
  }
  /* The budgets recover almost at once, and cheaply. */
  const sim_collapse_series *b = find_series(&r, "backoff+budget");
  assert_true(b->recovered_at_s < 30);
  assert_true(b->attempts_per_request < 1.1);
  sim_collapse_result_free(&r);
}

static void collapse_run_invariants(void **state) {
  (void)state;
  sim_collapse_config c;
  sim_collapse_config_init(&c);
  size_t nsec = (size_t)(c.duration / RESIL_SEC);
  sim_collapse_second *sec = calloc(nsec, sizeof *sec);
  assert_non_null(sec);
  for (size_t i = 0; i < c.npolicies; i++) {
    sim_collapse_run r;
    assert_int_equal(sim_collapse_once(&c, c.policies[i], 0, sec, nsec, &r), RESIL_OK);
    /* Every attempt ended: answered in time or timed out. */
    assert_int_equal(r.attempts, r.successes + r.timeouts);
    assert_true(r.successes <= r.requests);
    double attempts = 0, retries = 0;
    for (size_t s = 0; s < nsec; s++) {
      attempts += sec[s].attempts;
      retries += sec[s].retries;
      assert_true(sec[s].succeeded_share >= 0 && sec[s].succeeded_share <= 1);
    }
    assert_true(attempts <= (double)r.attempts); /* the rest after the end */
    if (c.policies[i].retry == SIM_RETRY_NONE) assert_true(retries == 0);
  }
  /* The wrong number of seconds is refused. */
  sim_collapse_run r;
  assert_int_equal(sim_collapse_once(&c, c.policies[0], 0, sec, nsec - 1, &r), RESIL_EINVAL);
  free(sec);
}

static void collapse_verdict_rule(void **state) {
  (void)state;
  sim_collapse_config c;
  sim_collapse_config_init(&c); /* spike ends at 25s, 80 seconds */
  sim_collapse_second sec[80];
  memset(sec, 0, sizeof sec);
  for (int i = 0; i < 80; i++) sec[i].succeeded_share = 1;
  double at = 0;
  assert_int_equal(sim_collapse_verdict(&c, sec, 80, &at), 1);
  assert_true(at == 25); /* healthy all along: recovered when the spike ended */
  for (int i = 20; i < 40; i++) sec[i].succeeded_share = 0.2;
  sec[39].succeeded_share = 0.89; /* just short of healthy */
  assert_int_equal(sim_collapse_verdict(&c, sec, 80, &at), 1);
  assert_true(at == 40);
  sec[77].succeeded_share = 0.5; /* a relapse near the end: only 2s healthy */
  assert_int_equal(sim_collapse_verdict(&c, sec, 80, &at), 0);
  sec[77].succeeded_share = 1;
  sec[74].succeeded_share = 0.5; /* 5 healthy seconds at the end suffice */
  assert_int_equal(sim_collapse_verdict(&c, sec, 80, &at), 1);
  assert_true(at == 75);
}

/* ---- output -------------------------------------------------------------------------- */

static int print_contention_csv(FILE *f, const void *r) {
  sim_contention_print(f, r, SIM_FMT_CSV);
  return 0;
}
static int print_contention_json(FILE *f, const void *r) {
  sim_contention_print(f, r, SIM_FMT_JSON);
  return 0;
}
static int print_contention_table(FILE *f, const void *r) {
  sim_contention_print(f, r, SIM_FMT_TABLE);
  return 0;
}
static int svg_contention(FILE *f, const void *r) { return sim_contention_svg(f, r); }
static int print_collapse_csv(FILE *f, const void *r) {
  sim_collapse_print(f, r, SIM_FMT_CSV);
  return 0;
}
static int print_collapse_json(FILE *f, const void *r) {
  sim_collapse_print(f, r, SIM_FMT_JSON);
  return 0;
}
static int print_collapse_table(FILE *f, const void *r) {
  sim_collapse_print(f, r, SIM_FMT_TABLE);
  return 0;
}
static int svg_collapse(FILE *f, const void *r) { return sim_collapse_svg(f, r); }
static int print_independent_csv(FILE *f, const void *r) {
  sim_independent_print(f, r, SIM_FMT_CSV);
  return 0;
}
static int print_independent_json(FILE *f, const void *r) {
  sim_independent_print(f, r, SIM_FMT_JSON);
  return 0;
}
static int svg_independent(FILE *f, const void *r) { return sim_independent_svg(f, r); }

static void contention_outputs(void **state) {
  (void)state;
  sim_contention_config c;
  sim_contention_config_init(&c);
  c.runs = 2;
  c.clients_from = 10;
  c.clients_to = 30;
  sim_contention_result r;
  assert_int_equal(sim_contention_sweep(&c, &r), RESIL_OK);
  int rc;
  char *csv = capture_output(print_contention_csv, &r, &rc);
  assert_true(strncmp(csv, "strategy,clients,time_ms,calls\n", 31) == 0);
  assert_int_equal(count_lines_in(csv), 1 + 5 * 3);
  for (const char *l = strchr(csv, '\n') + 1; *l; l = line_end(l) + 1) {
    int commas = 0;
    for (const char *q = l; q < line_end(l); q++) commas += *q == ',';
    assert_int_equal(commas, 3);
  }
  assert_non_null(strstr(csv, "\nnone,10,"));
  assert_non_null(strstr(csv, "\ndecorrelated,30,"));
  free(csv);

  char *json = capture_output(print_contention_json, &r, &rc);
  assert_json_shape(json);
  assert_non_null(strstr(json, "\"scenario\": \"contention\""));
  assert_non_null(strstr(json, "\"strategy\": \"equal\", \"clients\": 20"));
  free(json);

  char *table = capture_output(print_contention_table, &r, &rc);
  assert_non_null(strstr(table, "Write calls"));
  assert_non_null(strstr(table, "decorrelated"));
  free(table);

  char *svg = capture_output(svg_contention, &r, &rc);
  assert_int_equal(rc, 0);
  assert_wellformed_svg(svg);
  static const char *const want[] = {">none<", ">exponential<", ">full<", ">equal<",
                                     ">decorrelated<", ">clients<", ">calls<", ">time (ms)<",
                                     "<title>resil sim contention"};
  for (size_t i = 0; i < ARRAY_LEN(want); i++) assert_non_null(strstr(svg, want[i]));
  free(svg);
  sim_contention_result_free(&r);
}

static void collapse_and_independent_outputs(void **state) {
  (void)state;
  sim_collapse_config k;
  sim_collapse_config_init(&k);
  k.duration = 40 * RESIL_SEC;
  sim_collapse_result kr;
  assert_int_equal(sim_collapse_simulate(&k, &kr), RESIL_OK);
  int rc;
  char *csv = capture_output(print_collapse_csv, &kr, &rc);
  assert_true(strncmp(csv,
                      "policy,second,new,attempts,retries,timeouts,successes,rejected,inflight,"
                      "succeeded_share\n",
                      88) == 0);
  assert_int_equal(count_lines_in(csv), 1 + (int)k.npolicies * 40);
  free(csv);
  char *json = capture_output(print_collapse_json, &kr, &rc);
  assert_json_shape(json);
  assert_non_null(strstr(json, "\"policy\": \"backoff+budget\""));
  assert_non_null(strstr(json, "\"recovered\": false"));
  assert_non_null(strstr(json, "\"recovered_at_s\": null"));
  free(json);
  char *table = capture_output(print_collapse_table, &kr, &rc);
  assert_non_null(strstr(table, "stayed collapsed"));
  assert_non_null(strstr(table, "recovered at"));
  free(table);
  char *svg = capture_output(svg_collapse, &kr, &rc);
  assert_int_equal(rc, 0);
  assert_wellformed_svg(svg);
  static const char *const want[] = {">immediate<", ">backoff+budget<", ">time (s)<",
                                     ">succeeded<", ">attempts / s<", "spike: 80 req/s"};
  for (size_t i = 0; i < ARRAY_LEN(want); i++) assert_non_null(strstr(svg, want[i]));
  free(svg);
  sim_collapse_result_free(&kr);

  sim_independent_config ic;
  sim_independent_config_init(&ic);
  ic.duration = 5 * RESIL_SEC;
  ic.np = 3;
  ic.p[0] = 0;
  ic.p[1] = 0.5;
  ic.p[2] = 1;
  sim_independent_result ir;
  assert_int_equal(sim_independent_simulate(&ic, &ir), RESIL_OK);
  csv = capture_output(print_independent_csv, &ir, &rc);
  assert_true(strncmp(csv, "policy,p,requests,calls,retries,rejected,successes,load,success_rate\n",
                      69) == 0);
  assert_int_equal(count_lines_in(csv), 1 + 4 * 3);
  free(csv);
  json = capture_output(print_independent_json, &ir, &rc);
  assert_json_shape(json);
  assert_non_null(strstr(json, "\"theory\""));
  free(json);
  svg = capture_output(svg_independent, &ir, &rc);
  assert_int_equal(rc, 0);
  assert_wellformed_svg(svg);
  static const char *const want2[] = {">none<", ">backoff+budget<", ">backoff+breaker<",
                                      ">1 + p + p\xc2\xb2 + p\xc2\xb3<", ">calls / request<",
                                      ">success rate<", "the probability that one call fails"};
  for (size_t i = 0; i < ARRAY_LEN(want2); i++) assert_non_null(strstr(svg, want2[i]));
  free(svg);
  sim_independent_result_free(&ir);
}

typedef struct svg_case {
  const sim_panel *panels;
  size_t n;
} svg_case;

static int write_case(FILE *f, const void *ud) {
  const svg_case *c = ud;
  return sim_svg_write(f, "T <&> \"q\" 'a'", NULL, c->panels, c->n);
}

static void svg_escapes_and_degenerate_data(void **state) {
  (void)state;
  double x[] = {0, 1, 2}, y[] = {0, 0, 0}, ylog[] = {0, 1e-3, 5e6}, ynan[] = {1, NAN, 2};
  sim_series s[] = {
      {"a<b & c>d", x, y, 3, 0, NULL},
      {"flat", x, y, 3, 1, "#000000"},
      {"gap", x, ynan, 3, 0, NULL},
  };
  sim_series logs[] = {{"log", x, ylog, 3, 0, NULL}};
  sim_band band = {0.5, 1.5, "band & co"};
  sim_panel p[3];
  memset(p, 0, sizeof p);
  p[0].title = "x<y";
  p[0].xlabel = "\"x\"";
  p[0].ylabel = "y & z";
  p[0].series = s;
  p[0].nseries = 3;
  p[0].bands = &band;
  p[0].nbands = 1;
  p[1].title = "log";
  p[1].series = logs;
  p[1].nseries = 1;
  p[1].y_log = 1;
  p[2].title = "empty";
  svg_case c = {p, 3};
  int rc;
  char *svg = capture_output(write_case, &c, &rc);
  assert_int_equal(rc, 0);
  assert_wellformed_svg(svg);
  assert_non_null(strstr(svg, "a&lt;b &amp; c&gt;d"));
  assert_non_null(strstr(svg, "T &lt;&amp;&gt; &quot;q&quot; &apos;a&apos;"));
  assert_non_null(strstr(svg, "band &amp; co"));
  assert_non_null(strstr(svg, ">5,000,000<")); /* the log axis's top, grouped */
  assert_null(strstr(svg, "nan"));
  assert_null(strstr(svg, "inf"));
  free(svg);
}

/* ---- the real binary -------------------------------------------------------------------- */

#ifdef RESIL_CLI_PATH
static void cli_contention_csv(void **state) {
  (void)state;
  capture a, b;
  RUN(&a, "sim", "contention", "--format", "csv", "--runs", "2", "--clients", "10:30:10");
  assert_int_equal(a.status, 0);
  assert_true(strncmp(a.out, "strategy,clients,time_ms,calls\n", 31) == 0);
  assert_int_equal(count_lines_in(a.out), 16);
  assert_string_equal(a.err, "");
  /* Options before the scenario too; same seed, same bytes. */
  RUN(&b, "sim", "--seed", "1", "--format=csv", "contention", "--runs", "2", "--clients",
      "10:30:10");
  assert_int_equal(b.status, 0);
  assert_string_equal(a.out, b.out);
  capture_free(&a);
  capture_free(&b);
}

static void cli_usage_errors(void **state) {
  (void)state;
  static const struct {
    const char *args[6]; /* NULL-terminated */
    const char *says;
  } cases[] = {
      {{"sim", NULL}, "missing scenario"},
      {{"sim", "storm", NULL}, "unknown scenario 'storm'"},
      {{"sim", "contention", "--p", "0.5"}, "--p does not apply to 'contention'"},
      {{"sim", "collapse", "--policies", "fast"}, "invalid policy 'fast'"},
      {{"sim", "independent", "--p", "2"}, "--p must be between 0 and 1"},
      {{"sim", "contention", "--clients", "9:1"}, "--clients range ends before it starts"},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    capture c;
    const char *const *a = cases[i].args;
    run_resil_argv(&c, NULL, a);
    assert_int_equal(c.status, 64);
    assert_string_equal(c.out, "");
    if (strstr(c.err, cases[i].says) == NULL) {
      print_error("stderr '%s' lacks '%s'\n", c.err, cases[i].says);
      fail();
    }
    assert_non_null(strstr(c.err, "Try 'resil sim --help'."));
    capture_free(&c);
  }
}

static void cli_svg_file(void **state) {
  fixture *f = *state;
  char path[256];
  path_in(f, "chart.svg", path, sizeof path);
  capture c;
  RUN(&c, "sim", "independent", "--p", "0.1,0.9", "--duration", "3s", "--svg", path, "--format",
      "json");
  assert_int_equal(c.status, 0);
  assert_json_shape(c.out);
  assert_non_null(strstr(c.err, "wrote the charts to"));
  capture_free(&c);
  char *svg = slurp(path);
  assert_wellformed_svg(svg);
  free(svg);
  path_in(f, "no/such/dir/chart.svg", path, sizeof path);
  RUN(&c, "sim", "-q", "independent", "--duration", "1s", "--svg", path);
  assert_int_equal(c.status, 74);
  assert_string_equal(c.out, ""); /* refused before simulating */
  capture_free(&c);
}
#endif

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(heap_orders_events),
      cmocka_unit_test(heap_is_stable_for_equal_times),
      cmocka_unit_test(clock_follows_events),
      cmocka_unit_test(ps_server_slows_with_load),
      cmocka_unit_test(seeds_and_distributions),
      cmocka_unit_test(policy_names),
      cmocka_unit_test(same_seed_same_results),
      cmocka_unit_test(results_independent_of_order),
      cmocka_unit_test(contention_no_backoff_is_quadratic),
      cmocka_unit_test(contention_jitter_needs_fewer_calls),
      cmocka_unit_test(contention_every_client_succeeds),
      cmocka_unit_test(independent_matches_formulas),
      cmocka_unit_test(token_bucket_bounds_retries),
      cmocka_unit_test(collapse_retries_keep_it_down),
      cmocka_unit_test(collapse_run_invariants),
      cmocka_unit_test(collapse_verdict_rule),
      cmocka_unit_test(contention_outputs),
      cmocka_unit_test(collapse_and_independent_outputs),
      cmocka_unit_test(svg_escapes_and_degenerate_data),
#ifdef RESIL_CLI_PATH
      cmocka_unit_test(cli_contention_csv),
      cmocka_unit_test(cli_usage_errors),
      cmocka_unit_test_setup_teardown(cli_svg_file, fixture_setup, fixture_teardown),
#endif
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
