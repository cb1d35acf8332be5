/* `resil sim`: retry-storm simulations.
 *
 *   resil sim contention|collapse|independent [OPTIONS]
 *
 * The simulations live in src/sim/ (sim.h); they drive resil's real backoff,
 * budget and breaker code on a simulated clock. This file parses the command
 * line into a scenario's configuration, runs it, prints the result (a table,
 * CSV or JSON) and writes the chart (--svg). Options may come before or
 * after the scenario's name; an option that does not apply to the scenario
 * is a usage error rather than silently ignored. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "resil/resil.h"
#include "sim/sim.h"

#define CMD "sim"

/* Which scenarios an option applies to. */
#define S_CONT 0x1u
#define S_COLL 0x2u
#define S_INDE 0x4u
#define S_ALL (S_CONT | S_COLL | S_INDE)

enum {
  OPT_SEED,
  OPT_RUNS,
  OPT_CLIENTS,
  OPT_FORMAT,
  OPT_SVG,
  OPT_STRATEGIES,
  OPT_POLICIES,
  OPT_P,
  OPT_DURATION,
  OPT_RATE,
  OPT_SPIKE,
  OPT_TIMEOUT,
  OPT_ATTEMPTS,
  OPT_BASE,
  OPT_CAP,
  OPT_BUDGET_RATE,
  OPT_BUDGET_BURST,
  OPT_QUIET,
  OPT_HELP,
  OPT_COUNT
};

static const cli_option sim_options[] = {
    {"seed", 0, 1, OPT_SEED},
    {"runs", 0, 1, OPT_RUNS},
    {"clients", 0, 1, OPT_CLIENTS},
    {"format", 0, 1, OPT_FORMAT},
    {"svg", 0, 1, OPT_SVG},
    {"strategies", 0, 1, OPT_STRATEGIES},
    {"policies", 0, 1, OPT_POLICIES},
    {"p", 0, 1, OPT_P},
    {"duration", 0, 1, OPT_DURATION},
    {"rate", 0, 1, OPT_RATE},
    {"spike", 0, 1, OPT_SPIKE},
    {"timeout", 0, 1, OPT_TIMEOUT},
    {"attempts", 0, 1, OPT_ATTEMPTS},
    {"base", 0, 1, OPT_BASE},
    {"cap", 0, 1, OPT_CAP},
    {"budget-rate", 0, 1, OPT_BUDGET_RATE},
    {"budget-burst", 0, 1, OPT_BUDGET_BURST},
    {"quiet", 'q', 0, OPT_QUIET},
    {"help", 'h', 0, OPT_HELP},
    {NULL, 0, 0, 0},
};

static const unsigned applies[OPT_COUNT] = {
    [OPT_SEED] = S_ALL,          [OPT_RUNS] = S_ALL,         [OPT_CLIENTS] = S_CONT | S_INDE,
    [OPT_FORMAT] = S_ALL,        [OPT_SVG] = S_ALL,          [OPT_STRATEGIES] = S_CONT,
    [OPT_POLICIES] = S_COLL | S_INDE, [OPT_P] = S_INDE,      [OPT_DURATION] = S_COLL | S_INDE,
    [OPT_RATE] = S_COLL | S_INDE, [OPT_SPIKE] = S_COLL,      [OPT_TIMEOUT] = S_COLL,
    [OPT_ATTEMPTS] = S_COLL | S_INDE, [OPT_BASE] = S_ALL,    [OPT_CAP] = S_ALL,
    [OPT_BUDGET_RATE] = S_COLL | S_INDE, [OPT_BUDGET_BURST] = S_COLL | S_INDE,
    [OPT_QUIET] = S_ALL,         [OPT_HELP] = S_ALL,
};

void cmd_sim_help(FILE *out) {
  fputs(
      "Usage: resil sim contention|collapse|independent [OPTIONS]\n"
      "\n"
      "Simulate what a retry policy does in an outage, on a simulated clock, with\n"
      "resil's own backoff, retry budget and circuit breaker code. The same --seed\n"
      "always gives the same results.\n"
      "\n"
      "Scenarios:\n"
      "  contention   N clients each want one optimistic write to one row (the AWS\n"
      "               \"Exponential Backoff And Jitter\" experiment): time and write\n"
      "               calls for each backoff strategy, N = 10, 20, ... 190\n"
      "  collapse     40 req/s with a spike to 80 req/s from 20s to 25s against a\n"
      "               server that slows down with load; 3s timeouts, 3 attempts:\n"
      "               which policies recover after the spike, and when\n"
      "  independent  100 clients x 10 req/s; each call fails with probability p:\n"
      "               calls per request and success rate for each policy\n"
      "\n"
      "Common options:\n"
      "      --seed N            seed for every random draw (default 1)\n"
      "      --runs N            runs per point, averaged (default 100 for\n"
      "                          contention, 1 otherwise)\n"
      "      --format FORMAT     table (default), csv or json\n"
      "      --svg FILE          also write the charts to FILE (SVG)\n"
      "      --base DUR          backoff base (contention 5ms, collapse 1s,\n"
      "                          independent 100ms)\n"
      "      --cap DUR           backoff cap (contention 2s, collapse 10s,\n"
      "                          independent 2s)\n"
      "  -q, --quiet             no messages on stderr (results are still printed)\n"
      "  -h, --help              show this help\n"
      "\n"
      "contention:\n"
      "      --clients A:B:STEP  client counts to simulate (default 10:190:10); N\n"
      "                          alone is one count\n"
      "      --strategies LIST   of none, exponential, full, equal, decorrelated\n"
      "                          (default all five)\n"
      "\n"
      "collapse and independent:\n"
      "      --policies LIST     comma-separated policies, each a retry mode (none,\n"
      "                          immediate, backoff) and any guards (budget, breaker,\n"
      "                          adaptive) joined by '+', e.g. backoff+budget; a\n"
      "                          guard alone retries immediately\n"
      "      --duration DUR      how long new requests arrive (80s; independent 60s)\n"
      "      --rate N            new requests per second (40; independent: per\n"
      "                          client, 10)\n"
      "      --attempts N        attempts per request, the first included (3;\n"
      "                          independent 4)\n"
      "      --budget-rate N     token bucket: retries per second (4; independent:\n"
      "                          per client, 1)\n"
      "      --budget-burst N    token bucket: burst (10)\n"
      "  collapse only:\n"
      "      --spike RATE:FROM:TO  the spike (default 80:20s:25s)\n"
      "      --timeout DUR       per attempt (3s)\n"
      "  independent only:\n"
      "      --clients N         clients (100)\n"
      "      --p LIST            failure probabilities (default\n"
      "                          0,0.05,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1)\n"
      "\n"
      "DUR is a duration such as 250ms, 1.5s or 2m; a bare number is seconds.\n"
      "\n"
      "Exit status: 0 on success, 64 for a usage error, 74 when the --svg file\n"
      "cannot be written, 125 when resil itself failed (out of memory).\n"
      "\n"
      "Examples:\n"
      "  resil sim contention\n"
      "  resil sim contention --format csv --runs 20 --clients 10:100:10\n"
      "  resil sim collapse --svg collapse.svg\n"
      "  resil sim collapse --policies immediate,backoff+budget --spike 90:20s:24s\n"
      "  resil sim independent --p 0.1,0.5,0.9 --format json\n",
      out);
}

/* ---- parsing ------------------------------------------------------------------ */

typedef struct sim_args {
  unsigned given[OPT_COUNT]; /* set for each option seen */
  sim_format format;
  const char *svg;
  int quiet;
  uint64_t seed, runs;
  uint32_t c_from, c_to, c_step;
  sim_strategy strategies[SIM_STRAT_COUNT];
  size_t nstrategies;
  sim_policy policies[SIM_MAX_POLICIES];
  size_t npolicies;
  double p[SIM_MAX_P];
  size_t np;
  resil_ns duration, timeout, base, cap, spike_from, spike_to;
  double rate, spike_rate, budget_rate, budget_burst;
  uint64_t attempts;
} sim_args;

/* A finite decimal number in [lo, hi]. */
static int parse_number(const char *opt, const char *text, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double v = strtod(text, &end);
  if (text[0] == '\0' || *end != '\0' || errno == ERANGE || !isfinite(v) || text[0] == ' ')
    return cli_usage_error(CMD, "invalid number for %s: '%s'", opt, text);
  if (v < lo || v > hi)
    return cli_usage_error(CMD, "%s must be between %g and %g, not '%s'", opt, lo, hi, text);
  *out = v;
  return 0;
}

/* The next comma-separated item of *s into buf; 0 at the end of the list,
 * -1 for an item too long or empty. */
static int next_item(const char **s, char *buf, size_t len) {
  if (**s == '\0') return 0;
  const char *comma = strchr(*s, ',');
  size_t n = comma ? (size_t)(comma - *s) : strlen(*s);
  if (n == 0 || n >= len) return -1;
  memcpy(buf, *s, n);
  buf[n] = '\0';
  *s += comma ? n + 1 : n;
  if (comma && **s == '\0') return -1; /* trailing comma */
  return 1;
}

static int parse_clients(const char *text, sim_args *a) {
  uint64_t v[3] = {0, 0, 1};
  int n = 0;
  const char *s = text;
  char part[32];
  while (n < 3) {
    const char *colon = strchr(s, ':');
    size_t len = colon ? (size_t)(colon - s) : strlen(s);
    if (len == 0 || len >= sizeof part) goto bad;
    memcpy(part, s, len);
    part[len] = '\0';
    for (const char *c = part; *c; c++)
      if (*c < '0' || *c > '9') goto bad;
    if (cli_parse_uint(CMD, "--clients", part, 1000000, &v[n]) != 0) return CLI_EXIT_USAGE;
    n++;
    if (!colon) break;
    s = colon + 1;
    if (n == 3) goto bad; /* a fourth part */
  }
  if (n == 1) v[1] = v[0];
  if (v[0] == 0 || v[2] == 0)
    return cli_usage_error(CMD, "--clients needs counts and a step of at least 1, not '%s'", text);
  if (v[1] < v[0])
    return cli_usage_error(CMD, "--clients range ends before it starts: '%s'", text);
  a->c_from = (uint32_t)v[0];
  a->c_to = (uint32_t)v[1];
  a->c_step = (uint32_t)v[2];
  a->given[OPT_CLIENTS] = (unsigned)n;
  return 0;
bad:
  return cli_usage_error(CMD, "invalid --clients '%s' (use A:B:STEP such as 10:190:10, or N)",
                         text);
}

static int parse_strategies(const char *text, sim_args *a) {
  const char *s = text;
  char item[32];
  int r;
  a->nstrategies = 0;
  while ((r = next_item(&s, item, sizeof item)) == 1) {
    sim_strategy st;
    if (sim_strategy_parse(item, &st) != RESIL_OK)
      return cli_usage_error(CMD,
                             "unknown strategy '%s' in --strategies (use none, exponential, "
                             "full, equal, decorrelated)",
                             item);
    for (size_t i = 0; i < a->nstrategies; i++)
      if (a->strategies[i] == st)
        return cli_usage_error(CMD, "strategy '%s' is listed twice in --strategies", item);
    a->strategies[a->nstrategies++] = st;
  }
  if (r < 0 || a->nstrategies == 0)
    return cli_usage_error(CMD, "invalid --strategies '%s' (use e.g. none,full)", text);
  return 0;
}

static int parse_policies(const char *text, sim_args *a) {
  const char *s = text;
  char item[64];
  int r;
  a->npolicies = 0;
  while ((r = next_item(&s, item, sizeof item)) == 1) {
    sim_policy p;
    if (sim_policy_parse(item, &p) != RESIL_OK)
      return cli_usage_error(CMD,
                             "invalid policy '%s' in --policies (use none, immediate or backoff, "
                             "optionally +budget, +breaker, +adaptive)",
                             item);
    for (size_t i = 0; i < a->npolicies; i++)
      if (sim_policy_equal(a->policies[i], p))
        return cli_usage_error(CMD, "policy '%s' is listed twice in --policies", item);
    if (a->npolicies == SIM_MAX_POLICIES)
      return cli_usage_error(CMD, "too many --policies (at most %d)", SIM_MAX_POLICIES);
    a->policies[a->npolicies++] = p;
  }
  if (r < 0 || a->npolicies == 0)
    return cli_usage_error(CMD, "invalid --policies '%s' (use e.g. immediate,backoff+budget)",
                           text);
  return 0;
}

static int parse_p(const char *text, sim_args *a) {
  const char *s = text;
  char item[32];
  int r;
  a->np = 0;
  while ((r = next_item(&s, item, sizeof item)) == 1) {
    if (a->np == SIM_MAX_P) return cli_usage_error(CMD, "too many values in --p (at most %d)",
                                                   SIM_MAX_P);
    if (parse_number("--p", item, 0, 1, &a->p[a->np]) != 0) return CLI_EXIT_USAGE;
    a->np++;
  }
  if (r < 0 || a->np == 0)
    return cli_usage_error(CMD, "invalid --p '%s' (use probabilities such as 0.1,0.5)", text);
  return 0;
}

/* RATE:FROM:TO, e.g. 80:20s:25s. */
static int parse_spike(const char *text, sim_args *a) {
  char buf[96];
  if (strlen(text) >= sizeof buf) goto bad;
  strcpy(buf, text);
  char *c1 = strchr(buf, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
  if (c1 == NULL || c2 == NULL || strchr(c2 + 1, ':')) goto bad;
  *c1 = *c2 = '\0';
  if (parse_number("--spike", buf, 1e-3, 1e6, &a->spike_rate) != 0) return CLI_EXIT_USAGE;
  if (cli_parse_duration(CMD, "--spike", c1 + 1, &a->spike_from) != 0) return CLI_EXIT_USAGE;
  if (cli_parse_duration(CMD, "--spike", c2 + 1, &a->spike_to) != 0) return CLI_EXIT_USAGE;
  if (a->spike_to <= a->spike_from)
    return cli_usage_error(CMD, "--spike must end after it starts: '%s'", text);
  return 0;
bad:
  return cli_usage_error(CMD, "invalid --spike '%s' (use RATE:FROM:TO such as 80:20s:25s)", text);
}

static int parse_format(const char *text, sim_format *out) {
  if (strcmp(text, "table") == 0) *out = SIM_FMT_TABLE;
  else if (strcmp(text, "csv") == 0) *out = SIM_FMT_CSV;
  else if (strcmp(text, "json") == 0) *out = SIM_FMT_JSON;
  else return cli_usage_error(CMD, "invalid value for --format: '%s' (use table, csv or json)",
                              text);
  return 0;
}

static int parse_positive_duration(const char *opt, const char *text, resil_ns *out) {
  if (cli_parse_duration(CMD, opt, text, out) != 0) return CLI_EXIT_USAGE;
  if (*out == 0) return cli_usage_error(CMD, "%s must be more than 0", opt);
  return 0;
}

/* Handle one option (not --help). 0, or CLI_EXIT_USAGE. */
static int take_option(int id, const char *name, const char *val, sim_args *a) {
  a->given[id] = a->given[id] ? a->given[id] : 1;
  switch (id) {
    case OPT_SEED: return cli_parse_uint(CMD, name, val, UINT64_MAX, &a->seed);
    case OPT_RUNS:
      if (cli_parse_uint(CMD, name, val, 1000000, &a->runs) != 0) return CLI_EXIT_USAGE;
      return a->runs == 0 ? cli_usage_error(CMD, "--runs must be at least 1") : 0;
    case OPT_CLIENTS: return parse_clients(val, a);
    case OPT_FORMAT: return parse_format(val, &a->format);
    case OPT_SVG:
      if (val[0] == '\0') return cli_usage_error(CMD, "--svg needs a file name");
      a->svg = val;
      return 0;
    case OPT_STRATEGIES: return parse_strategies(val, a);
    case OPT_POLICIES: return parse_policies(val, a);
    case OPT_P: return parse_p(val, a);
    case OPT_DURATION: return parse_positive_duration(name, val, &a->duration);
    case OPT_RATE: return parse_number(name, val, 1e-3, 1e6, &a->rate);
    case OPT_SPIKE: return parse_spike(val, a);
    case OPT_TIMEOUT: return parse_positive_duration(name, val, &a->timeout);
    case OPT_ATTEMPTS:
      if (cli_parse_uint(CMD, name, val, 1000, &a->attempts) != 0) return CLI_EXIT_USAGE;
      return a->attempts == 0 ? cli_usage_error(CMD, "--attempts must be at least 1") : 0;
    case OPT_BASE: return parse_positive_duration(name, val, &a->base);
    case OPT_CAP: return parse_positive_duration(name, val, &a->cap);
    case OPT_BUDGET_RATE: return parse_number(name, val, 1e-3, 1e9, &a->budget_rate);
    case OPT_BUDGET_BURST: return parse_number(name, val, 1, 1e9, &a->budget_burst);
    case OPT_QUIET: a->quiet = 1; return 0;
    default: return 0;
  }
}

static const char *option_name(int id) {
  for (const cli_option *o = sim_options; o->name; o++)
    if (o->id == id) return o->name;
  return "?";
}

static const char *scenario_list(unsigned mask, char *buf, size_t len) {
  static const char *const names[] = {"contention", "collapse", "independent"};
  size_t n = 0;
  buf[0] = '\0';
  for (unsigned i = 0; i < 3; i++)
    if (mask & (1u << i))
      n += (size_t)snprintf(buf + n, n < len ? len - n : 0, "%s%s", n ? " and " : "", names[i]);
  return buf;
}

/* Parse argv. Returns -1 to go on, or an exit status. */
static int parse_args(int argc, char **argv, sim_args *a, unsigned *scenario) {
  memset(a, 0, sizeof *a);
  a->seed = 1;
  *scenario = 0;
  const char *scenario_name = NULL;
  cli_optparser p;
  cli_optparser_init(&p, argc, argv, CMD, sim_options);
  for (;;) {
    const char *name, *val;
    int id = cli_optparser_next(&p, &name, &val);
    if (id == CLI_OPT_ERROR) return CLI_EXIT_USAGE;
    if (id == CLI_OPT_DONE) {
      if (p.index >= p.argc) break;
      const char *operand = p.argv[p.index];
      if (scenario_name)
        return cli_usage_error(CMD, "unexpected argument '%s' after the scenario '%s'", operand,
                               scenario_name);
      scenario_name = operand;
      /* Options may follow the scenario: go on parsing after it. */
      cli_optparser_init(&p, p.argc - p.index, p.argv + p.index, CMD, sim_options);
      continue;
    }
    if (id == OPT_HELP) {
      cmd_sim_help(stdout);
      return CLI_EXIT_OK;
    }
    int rc = take_option(id, name, val, a);
    if (rc != 0) return rc;
  }
  if (scenario_name == NULL)
    return cli_usage_error(CMD, "missing scenario (use contention, collapse or independent)");
  if (strcmp(scenario_name, "contention") == 0) *scenario = S_CONT;
  else if (strcmp(scenario_name, "collapse") == 0) *scenario = S_COLL;
  else if (strcmp(scenario_name, "independent") == 0) *scenario = S_INDE;
  else
    return cli_usage_error(CMD, "unknown scenario '%s' (use contention, collapse or independent)",
                           scenario_name);
  for (int i = 0; i < OPT_COUNT; i++) {
    if (!a->given[i] || (applies[i] & *scenario)) continue;
    char list[64];
    return cli_usage_error(CMD, "--%s does not apply to '%s' (only to %s)", option_name(i),
                           scenario_name, scenario_list(applies[i], list, sizeof list));
  }
  if (*scenario == S_INDE && a->given[OPT_CLIENTS] > 1)
    return cli_usage_error(CMD, "independent takes one client count: --clients N");
  return -1;
}

/* ---- running -------------------------------------------------------------------- */

static int check_backoff(const sim_args *a, resil_ns *base, resil_ns *cap) {
  if (a->given[OPT_BASE]) *base = a->base;
  if (a->given[OPT_CAP]) *cap = a->cap;
  if (*cap < *base) {
    char b[32], c[32];
    return cli_usage_error(CMD, "--cap %s is less than --base %s", cli_fmt_duration(*cap, c),
                           cli_fmt_duration(*base, b));
  }
  return 0;
}

static int setup_contention(const sim_args *a, sim_contention_config *c) {
  sim_contention_config_init(c);
  c->seed = a->seed;
  if (a->given[OPT_RUNS]) c->runs = (uint32_t)a->runs;
  if (a->given[OPT_CLIENTS]) {
    c->clients_from = a->c_from;
    c->clients_to = a->c_to;
    c->clients_step = a->c_step;
  }
  if (a->nstrategies) {
    memcpy(c->strategies, a->strategies, sizeof a->strategies);
    c->nstrategies = a->nstrategies;
  }
  if (check_backoff(a, &c->base, &c->cap)) return CLI_EXIT_USAGE;
  if (sim_contention_validate(c) != RESIL_OK) return cli_usage_error(CMD, "invalid settings");
  return -1;
}

static int setup_collapse(const sim_args *a, sim_collapse_config *c) {
  sim_collapse_config_init(c);
  c->seed = a->seed;
  if (a->given[OPT_RUNS]) c->runs = (uint32_t)a->runs;
  if (a->npolicies) {
    memcpy(c->policies, a->policies, sizeof a->policies);
    c->npolicies = a->npolicies;
  }
  if (a->given[OPT_DURATION]) c->duration = a->duration;
  if (a->given[OPT_RATE]) c->rate = a->rate;
  if (a->given[OPT_SPIKE]) {
    c->spike_rate = a->spike_rate;
    c->spike_from = a->spike_from;
    c->spike_to = a->spike_to;
  }
  if (a->given[OPT_TIMEOUT]) c->timeout = a->timeout;
  if (a->given[OPT_ATTEMPTS]) c->attempts = (uint32_t)a->attempts;
  if (a->given[OPT_BUDGET_RATE]) c->guard.budget_rate = a->budget_rate;
  if (a->given[OPT_BUDGET_BURST]) c->guard.budget_burst = a->budget_burst;
  if (check_backoff(a, &c->base, &c->cap)) return CLI_EXIT_USAGE;
  if (c->duration > 24 * RESIL_HOUR)
    return cli_usage_error(CMD, "--duration is at most 24h");
  if (c->spike_to > c->duration - SIM_RECOVERY_TAIL * RESIL_SEC) {
    char d[32], e[32];
    return cli_usage_error(CMD,
                           "the spike (to %s) must end at least %ds before the end (--duration "
                           "%s), to tell recovery from collapse",
                           cli_fmt_duration(c->spike_to, e), SIM_RECOVERY_TAIL,
                           cli_fmt_duration(c->duration, d));
  }
  if (sim_collapse_validate(c) != RESIL_OK) return cli_usage_error(CMD, "invalid settings");
  return -1;
}

static int setup_independent(const sim_args *a, sim_independent_config *c) {
  sim_independent_config_init(c);
  c->seed = a->seed;
  if (a->given[OPT_RUNS]) c->runs = (uint32_t)a->runs;
  if (a->given[OPT_CLIENTS]) {
    if (a->c_from > 100000) return cli_usage_error(CMD, "--clients is at most 100000");
    c->clients = a->c_from;
  }
  if (a->npolicies) {
    memcpy(c->policies, a->policies, sizeof a->policies);
    c->npolicies = a->npolicies;
  }
  if (a->np) {
    memcpy(c->p, a->p, sizeof a->p);
    c->np = a->np;
  }
  if (a->given[OPT_DURATION]) c->duration = a->duration;
  if (a->given[OPT_RATE]) c->client_rate = a->rate;
  if (a->given[OPT_ATTEMPTS]) c->attempts = (uint32_t)a->attempts;
  if (a->given[OPT_BUDGET_RATE]) c->guard.budget_rate = a->budget_rate;
  if (a->given[OPT_BUDGET_BURST]) c->guard.budget_burst = a->budget_burst;
  if (check_backoff(a, &c->base, &c->cap)) return CLI_EXIT_USAGE;
  if (c->duration > 24 * RESIL_HOUR)
    return cli_usage_error(CMD, "--duration is at most 24h");
  if (sim_independent_validate(c) != RESIL_OK) return cli_usage_error(CMD, "invalid settings");
  return -1;
}

/* The --svg file, opened before simulating so a bad path fails at once.
 * Returns 0 (and *out, NULL without --svg) or the exit status. */
static int open_svg(const sim_args *a, FILE **out) {
  *out = NULL;
  if (a->svg == NULL) return 0;
  *out = fopen(a->svg, "w");
  if (*out != NULL) return 0;
  cli_msg("sim: cannot write %s: %s", a->svg, strerror(errno));
  return CLI_EXIT_IOERR;
}

/* Finish the chart written by `bad = sim_*_svg(f, ...)`: 0 or the status. */
static int close_svg(const sim_args *a, FILE *f, int bad) {
  if (f == NULL) return 0;
  int e = bad ? errno : 0;
  if (fclose(f) != 0 && !bad) {
    bad = 1;
    e = errno;
  }
  if (!bad) return 0;
  cli_msg("sim: cannot write %s: %s", a->svg, e ? strerror(e) : "write failed");
  return CLI_EXIT_IOERR;
}

static int failed(const sim_args *a, FILE *svg, resil_err e) {
  if (svg) {
    fclose(svg);
    remove(a->svg); /* do not leave an empty chart behind */
  }
  cli_msg("sim: %s", resil_strerror(e));
  return CLI_EXIT_INTERNAL;
}

int cmd_sim_main(int argc, char **argv) {
  sim_args a;
  unsigned scenario;
  int rc = parse_args(argc, argv, &a, &scenario);
  if (rc >= 0) return rc;

  sim_contention_config cc;
  sim_collapse_config kc;
  sim_independent_config ic;
  if (scenario == S_CONT) rc = setup_contention(&a, &cc);
  else if (scenario == S_COLL) rc = setup_collapse(&a, &kc);
  else rc = setup_independent(&a, &ic);
  if (rc >= 0) return rc;
  FILE *svg;
  if ((rc = open_svg(&a, &svg)) != 0) return rc;

  resil_err e;
  if (scenario == S_CONT) {
    sim_contention_result r;
    if ((e = sim_contention_sweep(&cc, &r)) != RESIL_OK) return failed(&a, svg, e);
    sim_contention_print(stdout, &r, a.format);
    rc = close_svg(&a, svg, svg && sim_contention_svg(svg, &r) != 0);
    sim_contention_result_free(&r);
  } else if (scenario == S_COLL) {
    sim_collapse_result r;
    if ((e = sim_collapse_simulate(&kc, &r)) != RESIL_OK) return failed(&a, svg, e);
    sim_collapse_print(stdout, &r, a.format);
    rc = close_svg(&a, svg, svg && sim_collapse_svg(svg, &r) != 0);
    sim_collapse_result_free(&r);
  } else {
    sim_independent_result r;
    if ((e = sim_independent_simulate(&ic, &r)) != RESIL_OK) return failed(&a, svg, e);
    sim_independent_print(stdout, &r, a.format);
    rc = close_svg(&a, svg, svg && sim_independent_svg(svg, &r) != 0);
    sim_independent_result_free(&r);
  }
  if (fflush(stdout) != 0 || ferror(stdout)) {
    cli_msg("sim: cannot write the results: %s", strerror(errno));
    return CLI_EXIT_IOERR;
  }
  if (rc == 0 && a.svg && !a.quiet) cli_msg("sim: wrote the charts to %s", a.svg);
  return rc;
}
