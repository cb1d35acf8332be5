/* `resil demo`: the showcase. A fleet of clients places orders through an
 * injected outage twice, once with naive retries and once with resil's, and
 * the two runs are compared in a table and a chart.
 *
 * Everything is embedded: the fault server runs in this process on a free
 * loopback port (resil/faultserver.h, idempotent orders), its idempotency
 * store is SQLite in a temporary directory, and both are gone when the
 * command ends, interrupted or not. The runs themselves are src/demo/
 * (fleet.c drives the clients, report.c computes the table and the chart);
 * this file is the command line, the setup and the cleanup.
 *
 * SIGINT, SIGTERM and SIGPIPE only set a flag: the run notices it within
 * 100ms, stops its clients and server, and the ordinary path cleans up and
 * exits 128+N. */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cli.h"
#include "demo/demo.h"
#include "resil/http.h"
#include "resil/resil.h"

#define CMD "demo"
#define DEFAULT_SVG "resil-demo.svg"
#define DEFAULT_DURATION (12 * RESIL_SEC)
#define MAX_CLIENTS 1000
#define PLAIN_EVERY (2 * RESIL_SEC) /* progress when stderr is not a TTY */

enum {
  OPT_SEED,
  OPT_CLIENTS,
  OPT_DURATION,
  OPT_SVG,
  OPT_NO_CHART,
  OPT_STORE,
  OPT_QUIET,
  OPT_HELP
};

static const cli_option demo_options[] = {
    {"seed", 0, 1, OPT_SEED},
    {"clients", 0, 1, OPT_CLIENTS},
    {"duration", 0, 1, OPT_DURATION},
    {"svg", 0, 1, OPT_SVG},
    {"no-chart", 0, 0, OPT_NO_CHART},
    {"store", 0, 1, OPT_STORE},
    {"quiet", 'q', 0, OPT_QUIET},
    {"help", 'h', 0, OPT_HELP},
    {NULL, 0, 0, 0},
};

void cmd_demo_help(FILE *out) {
  fputs(
      "Usage: resil demo [OPTIONS]\n"
      "\n"
      "See what retries do to a dependency in an outage, and what resil does\n"
      "about it. An HTTP server that creates orders runs in this process, on a\n"
      "free loopback port; it goes down for a while (503 with Retry-After), and\n"
      "some of its failures happen after the order was created (the connection\n"
      "drops: the client cannot tell). A fleet of clients places orders through\n"
      "it twice:\n"
      "  naive  immediate retries (10 attempts, 1ms apart, Retry-After ignored),\n"
      "         no Idempotency-Key, no retry budget, no circuit breaker; when\n"
      "         they all fail, the customer gets an error\n"
      "  resil  exponential backoff with full jitter, Retry-After, a token-bucket\n"
      "         retry budget, a circuit breaker, and an Idempotency-Key generated\n"
      "         for each order; when a call gives up, the order is sent again\n"
      "         later with the same key, until the server confirms it\n"
      "Then a table compares the runs and a chart of requests per second is\n"
      "written. Both runs take about 25s in all.\n"
      "\n"
      "Columns: orders intended (placed by the clients) and created (by the\n"
      "server); duplicates: orders created beyond one per confirmed order;\n"
      "requests sent (every attempt) and their ratio to orders (amplif.);\n"
      "success: orders confirmed; p50/p99: time to confirmation or error;\n"
      "peak req/s (outage): the most requests in one second of the outage.\n"
      "\n"
      "Options:\n"
      "      --clients N      clients placing orders at once (default 40)\n"
      "      --duration DUR   how long each run places new orders (default 12s;\n"
      "                       the outage starts after a quarter of it and lasts a\n"
      "                       third)\n"
      "      --seed N         seed for every random draw (default: random)\n"
      "      --svg FILE       write the chart to FILE (default ./" DEFAULT_SVG ")\n"
      "      --no-chart       do not write the chart\n"
      "      --store URL      the server's idempotency store (default: SQLite in\n"
      "                       a temporary directory, removed afterwards)\n"
      "  -q, --quiet          no progress on stderr (the table is still printed)\n"
      "  -h, --help           show this help\n"
      "\n"
      "DUR is a duration such as 250ms, 1.5s or 2m; a bare number is seconds.\n"
      "\n"
      "Exit status:\n"
      "  0    done, and the resil run created every order exactly once\n"
      "  1    the resil run duplicated or lost an order (the demo checks itself)\n"
      "  64   usage error\n"
      "  69   this resil was built without the HTTP client, the server or SQLite\n"
      "  71   the server could not listen on a loopback port\n"
      "  74   the chart or the store cannot be written\n"
      "  125  resil itself failed (out of memory)\n"
      "  130  interrupted (SIGINT; 143 SIGTERM; 141 SIGPIPE), after cleaning up\n"
      "\n"
      "Examples:\n"
      "  resil demo\n"
      "  resil demo --clients 100 --duration 20s --svg /tmp/storm.svg\n",
      out);
}

/* ---- arguments -------------------------------------------------------------- */

typedef struct demo_args {
  uint64_t seed;
  int have_seed;
  uint32_t clients;
  resil_ns duration;
  const char *svg;
  int no_chart;
  const char *store;
  int quiet;
} demo_args;

/* Returns -1 to go on, or an exit status. */
static int parse_args(int argc, char **argv, demo_args *a) {
  memset(a, 0, sizeof *a);
  a->clients = 40;
  a->duration = DEFAULT_DURATION;
  a->svg = DEFAULT_SVG;
  cli_optparser p;
  cli_optparser_init(&p, argc, argv, CMD, demo_options);
  for (;;) {
    const char *name, *val;
    int id = cli_optparser_next(&p, &name, &val);
    if (id == CLI_OPT_DONE) break;
    if (id == CLI_OPT_ERROR) return CLI_EXIT_USAGE;
    uint64_t u = 0;
    switch (id) {
      case OPT_SEED:
        if (cli_parse_uint(CMD, name, val, UINT64_MAX, &a->seed)) return CLI_EXIT_USAGE;
        a->have_seed = 1;
        break;
      case OPT_CLIENTS:
        if (cli_parse_uint(CMD, name, val, MAX_CLIENTS, &u)) return CLI_EXIT_USAGE;
        if (u == 0) return cli_usage_error(CMD, "--clients must be at least 1");
        a->clients = (uint32_t)u;
        break;
      case OPT_DURATION:
        if (cli_parse_duration(CMD, name, val, &a->duration)) return CLI_EXIT_USAGE;
        if (a->duration < RESIL_SEC || a->duration > 10 * RESIL_MIN)
          return cli_usage_error(CMD, "--duration must be from 1s to 10m, not '%s'", val);
        break;
      case OPT_SVG:
        if (val[0] == '\0') return cli_usage_error(CMD, "--svg needs a file name");
        a->svg = val;
        break;
      case OPT_NO_CHART: a->no_chart = 1; break;
      case OPT_STORE:
        if (val[0] == '\0') return cli_usage_error(CMD, "--store needs a URL");
        a->store = val;
        break;
      case OPT_QUIET: a->quiet = 1; break;
      case OPT_HELP: cmd_demo_help(stdout); return CLI_EXIT_OK;
      default: break;
    }
  }
  if (p.index < argc) return cli_usage_error(CMD, "unexpected argument '%s'", argv[p.index]);
  return -1;
}

/* ---- signals ------------------------------------------------------------------ */

static volatile sig_atomic_t g_signal;

static void on_signal(int signo) { g_signal = signo; }

/* SIGPIPE too: `resil demo | head` must not leave the store behind. */
static const int caught[] = {SIGINT, SIGTERM, SIGPIPE};
#define N_CAUGHT (sizeof caught / sizeof caught[0])

static void catch_signals(struct sigaction old[N_CAUGHT]) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  for (size_t i = 0; i < N_CAUGHT; i++) sigaction(caught[i], &sa, &old[i]);
}

static void restore_signals(const struct sigaction old[N_CAUGHT]) {
  for (size_t i = 0; i < N_CAUGHT; i++) sigaction(caught[i], &old[i], NULL);
}

/* ---- the temporary directory ---------------------------------------------------- */

/* Remove dir and the files in it (the store: idem.db and its -wal, -shm). */
static void remove_tree(const char *dir) {
  DIR *d = opendir(dir);
  if (d) {
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d)) != NULL) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
      snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
      unlink(path);
    }
    closedir(d);
  }
  if (rmdir(dir) != 0 && errno != ENOENT)
    cli_msg("demo: cannot remove %s: %s", dir, strerror(errno));
}

/* ---- progress ------------------------------------------------------------------- */

typedef struct progress_state {
  int tty;
  int quiet;
  resil_ns next_line; /* not a TTY: one line every PLAIN_EVERY */
  int drawn;          /* a TTY line is on screen */
} progress_state;

static void on_progress(void *ud, const demo_progress *p) {
  progress_state *ps = ud;
  if (ps->quiet) return;
  char t[32];
  resil_duration_format(p->t - p->t % (100 * RESIL_MSEC), t, sizeof t);
  const char *name = demo_kind_name(p->run->kind);
  if (ps->tty) {
    /* One line, redrawn: never wider than the terminal, or it would wrap
     * and \r would no longer reach its start. */
    char line[256];
    snprintf(line, sizeof line,
             "%s %5s  orders %llu (%llu done)  %.0f req/s  server: %llu orders%s", name, t,
             (unsigned long long)p->run->intended, (unsigned long long)p->run->confirmed,
             p->req_rate, (unsigned long long)p->server_orders, p->in_outage ? "  [outage]" : "");
    struct winsize ws;
    size_t width = 80;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) width = ws.ws_col;
    if (strlen(line) >= width) line[width - 1] = '\0';
    fprintf(stderr, "\r\033[K%s", line);
    fflush(stderr);
    ps->drawn = 1;
  } else if (p->t >= ps->next_line) {
    cli_msg("demo: %s %s: %llu orders placed, %llu confirmed, %.0f req/s, server: %llu "
            "orders%s",
            name, t, (unsigned long long)p->run->intended,
            (unsigned long long)p->run->confirmed, p->req_rate,
            (unsigned long long)p->server_orders, p->in_outage ? " (outage)" : "");
    ps->next_line = p->t + PLAIN_EVERY;
  }
}

static void end_progress(progress_state *ps, const demo_run *r, const demo_summary *s) {
  if (ps->quiet) return;
  char t[32];
  resil_duration_format(r->elapsed, t, sizeof t);
  if (ps->tty && ps->drawn) fputs("\r\033[K", stderr);
  ps->drawn = 0;
  ps->next_line = PLAIN_EVERY;
  cli_msg("demo: %s done in %s: %llu orders, %llu requests, server: %llu orders", 
          demo_kind_name(r->kind), t, (unsigned long long)r->intended,
          (unsigned long long)r->requests, (unsigned long long)s->created);
}

/* ---- main ------------------------------------------------------------------------ */

static int exit_for(resil_err e) {
  switch (e) {
    case RESIL_EUNSUPPORTED: return CLI_EXIT_NOT_BUILT;
    case RESIL_ESYS: return CLI_EXIT_OSERR;
    case RESIL_ESTORE: return CLI_EXIT_IOERR;
    default: return CLI_EXIT_INTERNAL;
  }
}

/* Is the HTTP client built in? (The server says so when it starts.) */
static int check_client(void) {
  resil_http_client_config cc;
  resil_http_client_config_init(&cc);
  resil_http_client *c = NULL;
  resil_err e = resil_http_client_new(&c, &cc);
  resil_http_client_free(c);
  if (e == RESIL_OK) return 0;
  if (e == RESIL_EUNSUPPORTED) cli_msg("demo: this resil was built without the HTTP client");
  else cli_msg("demo: cannot create the HTTP client: %s", resil_strerror(e));
  return exit_for(e);
}

/* Can the store be opened? Says why not, and returns the exit status. */
static int check_store(const char *url) {
  resil_store *s = NULL;
  char why[256] = "";
  resil_err e = resil_store_open(&s, url, NULL, why, sizeof why);
  resil_store_close(s);
  if (e == RESIL_OK) return 0;
  if (e == RESIL_EINVAL) return cli_usage_error(CMD, "invalid --store URL '%s': %s", url, why);
  if (e == RESIL_EUNSUPPORTED)
    cli_msg("demo: this resil was built without the store for %s%s%s", url, why[0] ? ": " : "",
            why);
  else cli_msg("demo: cannot open the store %s: %s", url, why[0] ? why : resil_strerror(e));
  return exit_for(e);
}

/* The chart file, opened before the runs so that a path that cannot be
 * written fails at once rather than after them. */
static int open_chart(const demo_args *a, FILE **out) {
  *out = NULL;
  if (a->no_chart) return 0;
  if ((*out = fopen(a->svg, "w")) != NULL) return 0;
  cli_msg("demo: cannot write %s: %s", a->svg, strerror(errno));
  return CLI_EXIT_IOERR;
}

/* Write the chart into f and close it; on any failure the file is removed. */
static int finish_chart(const demo_args *a, FILE *f, const demo_config *c,
                        const demo_run *const *runs) {
  int bad = runs != NULL && demo_write_svg(f, c, runs, 2) != 0;
  int e = errno;
  if (fclose(f) != 0 && !bad) {
    bad = 1;
    e = errno;
  }
  if (runs == NULL || bad) remove(a->svg);
  if (!bad) return 0;
  cli_msg("demo: cannot write %s: %s", a->svg, e ? strerror(e) : "write failed");
  return CLI_EXIT_IOERR;
}

/* The lines under the table; returns 1 when resil failed its check. */
static int verdict(const demo_run *const *runs, const demo_summary *s) {
  const demo_run *nv = runs[0], *rs = runs[1];
  const demo_summary *ns = &s[0], *rsum = &s[1];
  printf("naive: %llu duplicate orders: the server created %llu orders for %llu confirmed\n"
         "       (after a lost response, a retry without a key creates the order again);\n"
         "       %llu customers were told their order failed.\n",
         (unsigned long long)ns->duplicates, (unsigned long long)ns->created,
         (unsigned long long)nv->confirmed, (unsigned long long)nv->failed);
  if (rsum->requests > 0) {
    printf("resil: %.1fx fewer requests, %.0f instead of %.0f req/s at the outage's peak",
           (double)ns->requests / (double)rsum->requests, rsum->peak_outage, ns->peak_outage);
    if (rs->breaker_trips > 0)
      printf(";\n       the breaker opened %llu times and refused %llu calls",
             (unsigned long long)rs->breaker_trips, (unsigned long long)rs->breaker_rejected);
    if (rs->budget_denied > 0)
      printf(";\n       the retry budget refused %llu retries",
             (unsigned long long)rs->budget_denied);
    printf(".\n");
  }
  int failed = rsum->duplicates > 0 || rsum->lost > 0 || rs->unfinished > 0;
  if (!failed)
    printf("resil: every order created exactly once (%llu lost responses replayed from the\n"
           "       idempotency store instead of creating the order again).\n",
           (unsigned long long)rs->replayed);
  else
    printf("resil: CHECK FAILED: %llu duplicate, %llu lost, %llu unconfirmed orders.\n",
           (unsigned long long)rsum->duplicates, (unsigned long long)rsum->lost,
           (unsigned long long)rs->unfinished);
  /* The clients count what they sent, the server what it received. */
  printf("cross-check: the server counted %llu and %llu requests, the clients %llu and %llu.\n",
         (unsigned long long)nv->server_requests, (unsigned long long)rs->server_requests,
         (unsigned long long)nv->requests, (unsigned long long)rs->requests);
  return failed;
}

int cmd_demo_main(int argc, char **argv) {
  demo_args a;
  int rc = parse_args(argc, argv, &a);
  if (rc >= 0) return rc;

  uint64_t seed = a.seed;
  if (!a.have_seed) {
    resil_rng r;
    resil_rng_seed_os(&r);
    seed = resil_rng_next(&r) % 1000000;
  }

  /* The store: SQLite in a fresh directory unless --store says otherwise. */
  char dir[4096] = "", url[4200];
  if (a.store == NULL) {
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || tmp[0] == '\0') tmp = "/tmp";
    snprintf(dir, sizeof dir, "%s/resil-demo.XXXXXX", tmp);
    if (mkdtemp(dir) == NULL) {
      cli_msg("demo: cannot create a temporary directory in %s: %s", tmp, strerror(errno));
      return CLI_EXIT_IOERR;
    }
    snprintf(url, sizeof url, "sqlite:%s/idem.db", dir);
  } else {
    snprintf(url, sizeof url, "%s", a.store);
  }

  struct sigaction old[N_CAUGHT];
  catch_signals(old);
  demo_config cfg;
  demo_config_init(&cfg, a.duration);
  cfg.clients = a.clients;
  cfg.seed = seed;
  cfg.store_url = url;
  demo_run runs[2];
  memset(runs, 0, sizeof runs);
  const demo_run *rp[2] = {&runs[0], &runs[1]};
  demo_summary sums[2];
  FILE *chart = NULL;
  int failed = 0;
  progress_state ps = {isatty(STDERR_FILENO), a.quiet, PLAIN_EVERY, 0};

  if ((rc = check_client()) != 0 || (rc = check_store(url)) != 0 ||
      (rc = open_chart(&a, &chart)) != 0)
    goto out;
  if (!a.quiet) {
    char d[32], o0[32], o1[32];
    resil_duration_format(cfg.duration, d, sizeof d);
    resil_duration_format(cfg.outage_start, o0, sizeof o0);
    resil_duration_format(cfg.outage_start + cfg.outage_len, o1, sizeof o1);
    cli_msg("demo: %u clients place orders for %s, twice; the server is down from %s to %s "
            "(seed %llu, store %s)",
            cfg.clients, d, o0, o1, (unsigned long long)seed, url);
  }
  for (int k = 0; k < 2; k++) {
    char why[256];
    resil_err e = demo_run_fleet(&cfg, (demo_kind)k, &runs[k], on_progress, &ps, &g_signal, why,
                                 sizeof why);
    if (ps.tty && ps.drawn && !a.quiet) fputs("\r\033[K", stderr);
    ps.drawn = 0;
    if (e != RESIL_OK) {
      if (e == RESIL_EUNSUPPORTED)
        cli_msg("demo: this resil was built without what the demo needs (%s)", why);
      else cli_msg("demo: %s", why);
      rc = exit_for(e);
      goto out;
    }
    if (runs[k].interrupted || g_signal) break;
    demo_summarize(&cfg, &runs[k], &sums[k]);
    end_progress(&ps, &runs[k], &sums[k]);
  }
  if (g_signal) goto out;

  if (!a.quiet) printf("\n");
  demo_print_table(stdout, rp, sums, 2);
  printf("\n");
  failed = verdict(rp, sums);
  if (chart) {
    rc = finish_chart(&a, chart, &cfg, rp);
    chart = NULL;
    if (rc != 0) goto out;
    printf("chart: %s\n", a.svg);
  }
  fflush(stdout);
  rc = failed ? 1 : CLI_EXIT_OK;

out:
  if (chart) finish_chart(&a, chart, &cfg, NULL); /* not written: removed */
  demo_run_free(&runs[0]);
  demo_run_free(&runs[1]);
  if (dir[0]) remove_tree(dir);
  restore_signals(old);
  if (g_signal) {
    if (!a.quiet) cli_msg("demo: interrupted; the server is stopped and its files removed");
    return CLI_EXIT_SIGNAL_BASE + g_signal;
  }
  return rc;
}
