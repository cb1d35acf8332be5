/* resil sim: retry-storm simulations on a simulated clock.
 *
 * Internal API shared by the CLI (src/cli/cmd_sim.c) and tests/test_sim.c.
 * Everything here is a client of the public API in include/resil/ only: the
 * backoff delays are resil_backoff_delay(), the budgets and breakers are real
 * resil_budget / resil_breaker objects whose clock is a resil_fakeclock, and
 * all randomness comes from resil_rng.
 *
 * Each scenario is a discrete-event simulation: a binary min-heap of
 * timestamped events (events.c); the loop pops the earliest, moves the fake
 * clock to its time (sim_clock_set) and handles it, which may push later
 * events. Runs are independent: each one seeds its own generators from
 * (seed, scenario, strategy or policy, clients or p, run index) with
 * sim_seed(), so a result never depends on the order runs are evaluated in.
 *
 * Files, one job each:
 *   events.c       the event heap and the simulated clock
 *   random.c       seeding and the distributions (normal, exponential)
 *   server.c       a processor-sharing server that slows down with load
 *   policy.c       names: contention strategies, collapse/independent policies
 *   contention.c   the AWS "Exponential Backoff And Jitter" experiment
 *   collapse.c     metastable failure after a load spike
 *   independent.c  load amplification by failure probability
 *   output.c       tables, CSV and JSON
 *   svg.c          a small SVG 1.1 line-chart writer
 *   charts.c       which charts each scenario draws
 *
 * Functions return RESIL_OK, RESIL_EINVAL (bad configuration) or
 * RESIL_ENOMEM. Nothing here is thread-safe; distinct runs share nothing, so
 * they could run on different threads. */
#ifndef RESIL_SIM_H
#define RESIL_SIM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "resil/resil.h"

/* ---- the event queue (events.c) ------------------------------------------ */

typedef struct sim_event {
  resil_ns t;    /* simulated time */
  uint64_t seq;  /* push order: equal times pop first-in first-out */
  uint32_t kind; /* scenario-defined */
  uint32_t id;   /* scenario-defined: client or request index */
  uint32_t aux;  /* scenario-defined: e.g. the attempt the event belongs to */
} sim_event;

/* A binary min-heap ordered by (t, seq). It grows by doubling; popping and
 * pushing never allocate once it is big enough, so a run allocates only
 * while the number of pending events reaches a new high. */
typedef struct sim_heap {
  sim_event *ev;
  size_t n, cap;
  uint64_t next_seq;
} sim_heap;

resil_err sim_heap_init(sim_heap *h, size_t cap_hint);
void sim_heap_free(sim_heap *h);
/* Empty it (keeping the memory) and restart the sequence numbers. */
void sim_heap_clear(sim_heap *h);
resil_err sim_heap_push(sim_heap *h, resil_ns t, uint32_t kind, uint32_t id, uint32_t aux);
/* 1 and the earliest event in *out, or 0 when empty. */
int sim_heap_pop(sim_heap *h, sim_event *out);

/* The simulated clock: a resil_fakeclock that the loop moves forward to each
 * event's time before handling it, so breakers and budgets built on
 * sim_clock_get() see simulated time. */
typedef struct sim_clock {
  resil_fakeclock *fc;
  resil_ns now;
} sim_clock;

resil_err sim_clock_init(sim_clock *c); /* starts at 0 */
void sim_clock_free(sim_clock *c);
/* Advance to t (resil_fakeclock_advance by the difference); never backwards. */
void sim_clock_set(sim_clock *c, resil_ns t);
resil_clock sim_clock_get(sim_clock *c);

/* ---- a server that slows down with load (server.c) -------------------------- */

/* Processor sharing: with L jobs inside, each advances at base / (base +
 * per * L) units of work per ns and needs `base` units, so at constant L a
 * job takes base + per * L, and all of them slow down when L grows. They
 * finish in arrival order. */
typedef struct sim_ps_job {
  double done_at; /* the progress counter's value when it is done */
  uint32_t id, aux;
} sim_ps_job;

typedef struct sim_ps_server {
  resil_ns base, per;
  double progress;  /* work each job inside has received since t = 0 */
  resil_ns updated; /* when progress was brought up to date */
  sim_ps_job *q;    /* FIFO ring */
  size_t head, n, cap;
  uint32_t gen;     /* changes whenever the next completion time may change */
} sim_ps_server;

resil_err sim_ps_init(sim_ps_server *s, resil_ns base, resil_ns per, size_t cap_hint);
void sim_ps_free(sim_ps_server *s);
/* A job arrives at t (t never goes backwards). */
resil_err sim_ps_arrive(sim_ps_server *s, resil_ns t, uint32_t id, uint32_t aux);
size_t sim_ps_inflight(const sim_ps_server *s);
/* When the oldest job finishes if nothing else arrives; -1 when idle. */
resil_ns sim_ps_next_done(sim_ps_server *s);
/* Take the oldest job out at t, its next-done time. */
void sim_ps_complete(sim_ps_server *s, resil_ns t, uint32_t *id, uint32_t *aux);

/* ---- randomness (random.c) ------------------------------------------------ */

enum { SIM_CONTENTION = 1, SIM_COLLAPSE = 2, SIM_INDEPENDENT = 3 };

/* A 64-bit seed for one run, mixing every input through splitmix64 steps, so
 * neighbouring inputs give unrelated streams. */
uint64_t sim_seed(uint64_t seed, uint32_t scenario, uint32_t variant, uint64_t param,
                  uint32_t run);
/* The bits of a double, for using p as a sim_seed parameter. */
uint64_t sim_double_bits(double x);

/* Standard normal draws (Marsaglia's polar method, the spare value kept). */
typedef struct sim_normal {
  resil_rng *rng;
  double spare;
  int have_spare;
} sim_normal;

void sim_normal_init(sim_normal *g, resil_rng *rng);
double sim_normal_next(sim_normal *g);
/* An exponential duration with the given mean (inverse transform). */
resil_ns sim_exp_ns(resil_rng *rng, resil_ns mean);
/* An exponential gap for a Poisson process of `rate` events per second. */
resil_ns sim_poisson_gap(resil_rng *rng, double rate);

/* ---- names (policy.c) ----------------------------------------------------- */

/* Contention's retry strategies: the five curves of the AWS article. */
typedef enum sim_strategy {
  SIM_STRAT_NONE = 0,         /* retry at once */
  SIM_STRAT_EXPONENTIAL = 1,  /* min(cap, base * 2^attempt), no jitter */
  SIM_STRAT_FULL = 2,         /* U(0, that) */
  SIM_STRAT_EQUAL = 3,        /* that/2 + U(0, that/2) */
  SIM_STRAT_DECORRELATED = 4, /* min(cap, U(base, 3 * previous)) */
  SIM_STRAT_COUNT = 5
} sim_strategy;

const char *sim_strategy_name(sim_strategy s);
resil_err sim_strategy_parse(const char *s, sim_strategy *out);

/* Collapse's and independent's client policies: when to retry, and what
 * guards the retries. Written "backoff+budget", "immediate+breaker+adaptive":
 * one retry mode and any guards, joined by '+' in any order. A guard alone
 * ("budget") means immediate retries with that guard. */
typedef enum sim_retry_mode {
  SIM_RETRY_NONE = 0,      /* "none": one attempt only */
  SIM_RETRY_IMMEDIATE = 1, /* "immediate": retry as soon as an attempt fails */
  SIM_RETRY_BACKOFF = 2    /* "backoff": exponential backoff, full jitter */
} sim_retry_mode;

#define SIM_GUARD_BUDGET 0x1u   /* token bucket: retries need a token */
#define SIM_GUARD_BREAKER 0x2u  /* circuit breaker before every attempt */
#define SIM_GUARD_ADAPTIVE 0x4u /* SRE adaptive throttling of every attempt */

typedef struct sim_policy {
  sim_retry_mode retry;
  unsigned guards;
} sim_policy;

#define SIM_POLICY_NAME_MAX 48
resil_err sim_policy_parse(const char *s, sim_policy *out);
/* The canonical name: the retry mode, then the guards in the order budget,
 * breaker, adaptive ("backoff+budget", "immediate+breaker"). */
const char *sim_policy_name(sim_policy p, char buf[SIM_POLICY_NAME_MAX]);
int sim_policy_equal(sim_policy a, sim_policy b);

/* ---- scenario: contention (contention.c) ----------------------------------- */

/* N clients want one successful optimistic write each to a single row; see
 * contention.c for the model. */
typedef struct sim_contention_config {
  uint64_t seed;
  uint32_t runs;                 /* default 100 */
  uint32_t clients_from, clients_to, clients_step; /* default 10:190:10 */
  sim_strategy strategies[SIM_STRAT_COUNT];
  size_t nstrategies;            /* default: all five in enum order */
  resil_ns base, cap;            /* default 5ms, 2s */
  resil_ns hop_mean, hop_sd;     /* one network hop: |Normal(10ms, 2ms)| */
} sim_contention_config;

void sim_contention_config_init(sim_contention_config *c);

/* One run. */
typedef struct sim_contention_run {
  resil_ns time;      /* reply of the last successful write */
  uint64_t calls;     /* write calls */
  uint64_t reads;
  uint32_t succeeded; /* clients that got their write in (always all) */
} sim_contention_run;

typedef struct sim_contention_point {
  sim_strategy strategy;
  uint32_t clients;
  uint32_t runs;
  double time_ms;     /* mean over runs */
  double calls;       /* mean over runs */
  double time_ms_sd, calls_sd;
  uint32_t incomplete_runs; /* runs where some client never succeeded (0) */
} sim_contention_point;

typedef struct sim_contention_result {
  sim_contention_config cfg;
  sim_contention_point *points; /* strategy-major: every N for strategy 0, ... */
  size_t npoints;
} sim_contention_result;

resil_err sim_contention_validate(const sim_contention_config *c);
/* One run of one strategy with `clients` clients, seeded for run `run`. */
resil_err sim_contention_once(const sim_contention_config *c, sim_strategy s,
                              uint32_t clients, uint32_t run, sim_contention_run *out);
/* The whole sweep. Free the result with sim_contention_result_free. */
resil_err sim_contention_sweep(const sim_contention_config *c, sim_contention_result *out);
void sim_contention_result_free(sim_contention_result *r);

/* ---- scenario: collapse (collapse.c) --------------------------------------- */

#define SIM_MAX_POLICIES 16

/* Open-loop Poisson load with a spike against a server that slows down as
 * work piles up; see collapse.c for the model. */
/* The guards a policy may add (SIM_GUARD_*), as the scenarios configure
 * them; all run on the simulated clock. */
typedef struct sim_guard_config {
  double budget_rate, budget_burst; /* token bucket */
  uint32_t breaker_window, breaker_minimum; /* count window; default 100, 20 */
  double breaker_failure_rate; /* default 0.5 */
  resil_ns breaker_open;       /* default 5s */
  resil_ns adaptive_window;    /* default 10s (SRE's 2 min outlasts a run) */
  double adaptive_k;           /* default 2 */
} sim_guard_config;

/* Defaults above, with the given token bucket. */
void sim_guard_config_init(sim_guard_config *g, double budget_rate, double budget_burst);
resil_err sim_guard_config_validate(const sim_guard_config *g);
/* Create the guards `guards` asks for (NULL for the others). Draws the
 * adaptive budget's seed, then the breaker's, from rng. */
resil_err sim_guards_new(const sim_guard_config *g, unsigned guards, resil_clock clk,
                         resil_rng *rng, resil_budget **bucket, resil_budget **adaptive,
                         resil_breaker **breaker);

typedef struct sim_collapse_config {
  uint64_t seed;
  uint32_t runs;               /* default 1; series are averaged */
  double rate;                 /* new requests per second; default 40 */
  double spike_rate;           /* during [spike_from, spike_to); default 80 */
  resil_ns spike_from, spike_to; /* default 20s, 25s */
  resil_ns duration;           /* default 80s */
  resil_ns warmup;             /* base load before t = 0, not recorded, so
                                  the run starts in steady state; 20s */
  resil_ns timeout;            /* per attempt; default 3s */
  uint32_t attempts;           /* per request, the first included; default 3 */
  resil_ns net_mean;           /* one way, exponential; default 100ms */
  resil_ns work_base;          /* server latency: work_base + */
  resil_ns work_per_inflight;  /*   work_per_inflight * in-flight; 1s, 10ms */
  resil_ns base, cap;          /* backoff: default 1s, 10s, full jitter */
  sim_guard_config guard;      /* one budget and breaker for all clients (a
                                  process); budget 4/s, burst 10 */
  sim_policy policies[SIM_MAX_POLICIES];
  size_t npolicies;            /* default: see sim_collapse_config_init */
} sim_collapse_config;

void sim_collapse_config_init(sim_collapse_config *c);
resil_err sim_collapse_validate(const sim_collapse_config *c);

/* One simulated second (means over runs). By event time, except
 * `succeeded_share`, which follows the requests that *arrived* in that second
 * to their end. */
typedef struct sim_collapse_second {
  double new_requests;    /* requests that arrived */
  double attempts;        /* attempts sent to the server, first or retry */
  double retries;         /* of those, retries */
  double timeouts;        /* attempts that timed out */
  double successes;       /* attempts answered in time (= requests done) */
  double rejected;        /* attempts refused locally: breaker open, adaptive
                             throttling, or a retry denied by the budget */
  double inflight;        /* server work in progress at the end of the second */
  double succeeded_share; /* of the requests that arrived, the share that
                             eventually succeeded (1 when none arrived) */
} sim_collapse_second;

/* A second is healthy when at least this share of the requests that arrived
 * in it succeeded. The verdict: recovered at the start of the first second,
 * at or after the spike's end, from which every second to the end of the run
 * is healthy (at least SIM_RECOVERY_TAIL of them); otherwise collapsed. */
#define SIM_HEALTHY_SHARE 0.9
#define SIM_RECOVERY_TAIL 5

typedef struct sim_collapse_run {
  int recovered;
  double recovered_at_s;
  uint64_t requests, attempts, successes, timeouts, rejected;
  double peak_inflight;
} sim_collapse_run;

typedef struct sim_collapse_series {
  sim_policy policy;
  sim_collapse_second *sec;   /* nsec of them */
  size_t nsec;
  /* Verdict: recovered when every run recovered; recovered_at_s is then the
   * mean over runs (seconds since the start), else -1. */
  int recovered;
  double recovered_at_s;
  uint32_t runs_recovered;
  double success_rate;        /* successful requests / requests */
  double attempts_per_request;
  double peak_inflight;       /* mean over runs of each run's peak */
} sim_collapse_series;

typedef struct sim_collapse_result {
  sim_collapse_config cfg;
  sim_collapse_series *series; /* one per policy, in cfg order */
  size_t nseries;
} sim_collapse_result;

resil_err sim_collapse_once(const sim_collapse_config *c, sim_policy p, uint32_t run,
                            sim_collapse_second *sec, size_t nsec, sim_collapse_run *out);
resil_err sim_collapse_simulate(const sim_collapse_config *c, sim_collapse_result *out);
void sim_collapse_result_free(sim_collapse_result *r);
/* The verdict for a series of seconds (the rule above). Returns 1 and the
 * recovery time in *at_s, or 0. */
int sim_collapse_verdict(const sim_collapse_config *c, const sim_collapse_second *sec,
                         size_t nsec, double *at_s);

/* ---- scenario: independent (independent.c) --------------------------------- */

#define SIM_MAX_P 64

/* Clients whose calls fail independently with probability p; see
 * independent.c. */
typedef struct sim_independent_config {
  uint64_t seed;
  uint32_t runs;               /* default 1 */
  uint32_t clients;            /* default 100 */
  double client_rate;          /* requests per second per client; default 10 */
  resil_ns duration;           /* arrivals stop after it; default 60s */
  resil_ns latency;            /* each call's duration; default 20ms */
  uint32_t attempts;           /* per request, the first included; default 4 */
  resil_ns base, cap;          /* backoff: default 100ms, 2s */
  sim_guard_config guard;      /* per client; budget 1/s, burst 10 */
  double p[SIM_MAX_P];
  size_t np;                   /* default 0, 0.05, 0.1, 0.2, ..., 0.9, 1 */
  sim_policy policies[SIM_MAX_POLICIES];
  size_t npolicies;            /* default none, backoff, backoff+budget,
                                  backoff+breaker */
} sim_independent_config;

void sim_independent_config_init(sim_independent_config *c);
resil_err sim_independent_validate(const sim_independent_config *c);

typedef struct sim_independent_point {
  sim_policy policy;
  double p;
  uint64_t requests, calls, successes, retries, rejected;
  double load;          /* calls / requests */
  double success_rate;  /* successes / requests */
  /* The largest number of retries one client's budget granted in one run,
   * and the simulated time that run lasted (token-bucket bound checks). */
  uint64_t max_client_retries;
  resil_ns end_time;
} sim_independent_point;

typedef struct sim_independent_result {
  sim_independent_config cfg;
  sim_independent_point *points; /* policy-major */
  size_t npoints;
} sim_independent_result;

resil_err sim_independent_once(const sim_independent_config *c, sim_policy pol, double p,
                               uint32_t run, sim_independent_point *out);
resil_err sim_independent_simulate(const sim_independent_config *c, sim_independent_result *out);
void sim_independent_result_free(sim_independent_result *r);
/* What retrying up to `attempts` times must give when each call fails
 * independently with probability p: calls per request 1 + p + ... +
 * p^(attempts-1), success rate 1 - p^attempts. */
double sim_theory_load(double p, uint32_t attempts);
double sim_theory_success(double p, uint32_t attempts);

/* ---- output (output.c) --------------------------------------------------- */

typedef enum sim_format { SIM_FMT_TABLE = 0, SIM_FMT_CSV = 1, SIM_FMT_JSON = 2 } sim_format;

void sim_contention_print(FILE *out, const sim_contention_result *r, sim_format f);
void sim_collapse_print(FILE *out, const sim_collapse_result *r, sim_format f);
void sim_independent_print(FILE *out, const sim_independent_result *r, sim_format f);
/* A JSON string literal, quotes included. */
void sim_json_string(FILE *out, const char *s);

/* ---- charts (svg.c, charts.c) -------------------------------------------- */

typedef struct sim_series {
  const char *name;
  const double *x, *y;
  size_t n;
  int dashed;
  const char *color; /* "#rrggbb", or NULL for the palette's */
} sim_series;

/* A shaded vertical band, e.g. the load spike. */
typedef struct sim_band {
  double x0, x1;
  const char *label;
} sim_band;

typedef struct sim_panel {
  const char *title, *xlabel, *ylabel;
  const sim_series *series;
  size_t nseries;
  const sim_band *bands;
  size_t nbands;
  int y_percent; /* y values are fractions, ticks read 0%..100% */
  int y_log;     /* logarithmic y axis (values <= 0 sit on the bottom) */
} sim_panel;

/* One standalone SVG 1.1 document: a title and the panels stacked
 * vertically, each with axes, ticks, labels, a line per series (a colour
 * each, the same colour for the same name in every panel) and a legend.
 * Text is escaped. Returns 0, or -1 when writing failed. */
int sim_svg_write(FILE *out, const char *title, const char *subtitle, const sim_panel *panels,
                  size_t npanels);

/* The charts for each scenario's result. 0, or -1 (write error or ENOMEM). */
int sim_contention_svg(FILE *out, const sim_contention_result *r);
int sim_collapse_svg(FILE *out, const sim_collapse_result *r);
int sim_independent_svg(FILE *out, const sim_independent_result *r);

#endif /* RESIL_SIM_H */
