/* `resil run`: run a command, retrying it with backoff and jitter.
 *
 * The retry decisions are the library's: a resil_retry_policy built from the
 * options, driven with the step API (resil_retry_begin / resil_retry_next),
 * because each attempt needs resil_retry_attempt_timeout() from the call's
 * state. The policy's clock is our own: its sleep() waits on proc.c's
 * self-pipe, so a SIGINT during a backoff wait ends it at once. The policy's
 * hooks (on_retry, on_give_up) print resil's progress lines.
 *
 * With --breaker NAME each attempt is also one call through a circuit
 * breaker shared by every process that names it, kept in a SQLite state
 * file (breaker_store.h): before the attempt, one transaction acquires a
 * permit (or is refused: the command is not started); after it, another
 * records the result. The breaker logic is the library's; this file only
 * decides what a result means and what to print. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "breaker_store.h"
#include "cli.h"
#include "proc.h"
#include "resil/resil.h"

#define CMD "run"

/* ---- options ------------------------------------------------------------- */

enum {
  OPT_ATTEMPTS,
  OPT_MAX_TIME,
  OPT_BACKOFF,
  OPT_BASE,
  OPT_CAP,
  OPT_JITTER,
  OPT_ATTEMPT_TIMEOUT,
  OPT_KILL_AFTER,
  OPT_RETRY_ON,
  OPT_STOP_ON,
  OPT_SEED,
  OPT_BREAKER,
  OPT_BREAKER_FAILURES,
  OPT_BREAKER_OPEN,
  OPT_STATE,
  OPT_QUIET,
  OPT_VERBOSE,
  OPT_HELP
};

static const cli_option run_options[] = {
    {"attempts", 'n', 1, OPT_ATTEMPTS},
    {"max-time", 0, 1, OPT_MAX_TIME},
    {"backoff", 0, 1, OPT_BACKOFF},
    {"base", 0, 1, OPT_BASE},
    {"cap", 0, 1, OPT_CAP},
    {"jitter", 0, 1, OPT_JITTER},
    {"attempt-timeout", 0, 1, OPT_ATTEMPT_TIMEOUT},
    {"kill-after", 0, 1, OPT_KILL_AFTER},
    {"retry-on", 0, 1, OPT_RETRY_ON},
    {"stop-on", 0, 1, OPT_STOP_ON},
    {"seed", 0, 1, OPT_SEED},
    {"breaker", 0, 1, OPT_BREAKER},
    {"breaker-failures", 0, 1, OPT_BREAKER_FAILURES},
    {"breaker-open", 0, 1, OPT_BREAKER_OPEN},
    {"state", 0, 1, OPT_STATE},
    {"quiet", 'q', 0, OPT_QUIET},
    {"verbose", 'v', 0, OPT_VERBOSE},
    {"help", 'h', 0, OPT_HELP},
    {NULL, 0, 0, 0},
};

enum { QUIET = -1, NORMAL = 0, VERBOSE = 1 };

typedef struct run_opts {
  uint32_t attempts;        /* total attempts; 0 = unlimited */
  resil_ns max_time;        /* RESIL_NS_MAX = no deadline */
  resil_backoff backoff;
  resil_ns attempt_timeout; /* RESIL_NS_MAX = none */
  resil_ns kill_after;
  resil_codeset retry_on, stop_on;
  int has_retry_on, has_stop_on;
  int use_seed;
  uint64_t seed;
  const char *breaker;      /* --breaker NAME, or NULL */
  breaker_settings bset;    /* --breaker-failures, --breaker-open */
  const char *state;        /* --state PATH, or NULL for the default */
  int verbosity;
  char **command; /* NULL-terminated, argv style */
} run_opts;

void cmd_run_help(FILE *out) {
  fputs(
      "Usage: resil run [OPTIONS] [--] COMMAND [ARG...]\n"
      "\n"
      "Run COMMAND; if it fails, run it again after a growing, randomized delay.\n"
      "Option parsing stops at the first argument that is not an option, so the\n"
      "command's own options are left alone; '--' also ends the options.\n"
      "\n"
      "Attempts and time:\n"
      "  -n, --attempts N         total attempts, the first included (default 5);\n"
      "                           0 = no limit (needs --max-time)\n"
      "      --max-time DUR       overall deadline: never wait for a retry that\n"
      "                           would start after it, and stop a running\n"
      "                           attempt when it passes (default: none)\n"
      "      --attempt-timeout DUR  stop an attempt that runs longer than DUR:\n"
      "                           SIGTERM, then SIGKILL (default: none; 0 = none)\n"
      "      --kill-after DUR     grace between SIGTERM and SIGKILL (default 5s)\n"
      "\n"
      "Backoff:\n"
      "      --backoff KIND       exponential, constant, linear or decorrelated\n"
      "                           (default exponential; decorrelated is\n"
      "                           exponential with decorrelated jitter)\n"
      "      --base DUR           first delay (default 1s)\n"
      "      --cap DUR            longest delay (default 30s, or --base if larger)\n"
      "      --jitter MODE        full, equal or none (default full); also\n"
      "                           decorrelated, additive, proportional\n"
      "      --seed N             seed the jitter, for reproducible delays\n"
      "\n"
      "Which failures to retry (CODES: e.g. 1,75 or 1-9,!4):\n"
      "      --retry-on CODES     retry only these statuses (default: any non-zero)\n"
      "      --stop-on CODES      never retry these statuses (wins over --retry-on)\n"
      "  A timed-out attempt has status 124 and one killed by signal N has 128+N,\n"
      "  so --stop-on 124 makes timeouts final.\n"
      "\n"
      "Circuit breaker (shared by every resil run naming it, across processes):\n"
      "      --breaker NAME       after --breaker-failures failures in a row, stop\n"
      "                           running COMMAND: exit 75 at once for\n"
      "                           --breaker-open, then let one run probe (its\n"
      "                           success closes the circuit, its failure re-opens\n"
      "                           it); failures that open it also end the retries\n"
      "      --breaker-failures N consecutive failures that open it (default 5)\n"
      "      --breaker-open DUR   how long it stays open before a probe (default 30s)\n"
      "      --state PATH         the breakers' state file (default\n"
      "                           $XDG_STATE_HOME/resil/breakers.db, or\n"
      "                           ~/.local/state/resil/breakers.db)\n"
      "  Final statuses (--stop-on, not in --retry-on, 126, 127) and interrupted\n"
      "  attempts count neither way. See also 'resil breaker --help'.\n"
      "\n"
      "Output:\n"
      "  -q, --quiet              print nothing but usage errors and errors of\n"
      "                           resil itself\n"
      "  -v, --verbose            also report each attempt's start and success\n"
      "  -h, --help               show this help\n"
      "\n"
      "DUR is a duration such as 250ms, 1.5s, 2m or 1h30m; a bare number is seconds.\n"
      "\n"
      "Exit status:\n"
      "  the last attempt's exit status (0 on success)\n"
      "  64   usage error: nothing was run\n"
      "  69   --breaker, but this resil was built without SQLite: nothing was run\n"
      "  74   --breaker state file unusable: nothing was run (or, after an attempt,\n"
      "       its result could not be recorded; the message says how it ended)\n"
      "  75   --breaker circuit open (or its one probe already running): the\n"
      "       command was not started\n"
      "  124  the last attempt was stopped by --attempt-timeout or --max-time\n"
      "  125  resil itself failed (could not start a process)\n"
      "  126  COMMAND cannot be executed (not retried)\n"
      "  127  COMMAND not found (not retried)\n"
      "  128+N  the last attempt died from signal N, or resil was interrupted by\n"
      "       signal N while waiting to retry\n"
      "\n"
      "SIGINT, SIGTERM and SIGHUP are passed on to the running command and stop\n"
      "further retries.\n"
      "\n"
      "Examples:\n"
      "  resil run -- curl -fsS https://example.com/health\n"
      "  resil run -n 0 --max-time 2m --base 500ms -- ./deploy.sh\n"
      "  resil run --attempt-timeout 10s --stop-on 2 -- make test\n"
      "  resil run --breaker backup-host -n 3 -- rsync -a src/ backup:dst/\n",
      out);
}

static int parse_codes(const char *opt, const char *text, resil_codeset *out) {
  resil_err e = resil_codeset_parse(out, text);
  if (e == RESIL_OK) return 0;
  if (e == RESIL_ERANGE)
    return cli_usage_error(CMD, "exit code out of range in %s: '%s' (codes go up to %d)", opt,
                           text, RESIL_CODESET_MAX);
  return cli_usage_error(CMD, "invalid exit codes for %s: '%s' (use e.g. 1,75 or 1-9,!4)", opt,
                         text);
}

/* Parse argv into *o. Returns -1 to go on and run, or an exit status: 0
 * after --help, CLI_EXIT_USAGE after a usage error. */
static int parse_args(int argc, char **argv, run_opts *o) {
  memset(o, 0, sizeof *o);
  o->attempts = 5;
  o->max_time = RESIL_NS_MAX;
  o->attempt_timeout = RESIL_NS_MAX;
  o->kill_after = 5 * RESIL_SEC;
  breaker_settings_init(&o->bset);

  cli_backoff bo;
  cli_backoff_init(&bo);
  const char *breaker_opt = NULL; /* an option that needs --breaker */
  cli_optparser p;
  cli_optparser_init(&p, argc, argv, CMD, run_options);
  for (;;) {
    const char *name, *val;
    int id = cli_optparser_next(&p, &name, &val);
    if (id == CLI_OPT_DONE) break;
    if (id == CLI_OPT_ERROR) return CLI_EXIT_USAGE;

    uint64_t u = 0;
    resil_ns d = 0;
    int bad = 0;
    switch (id) {
      case OPT_ATTEMPTS:
        bad = cli_parse_uint(CMD, name, val, UINT32_MAX, &u);
        o->attempts = (uint32_t)u;
        break;
      case OPT_MAX_TIME:
        bad = cli_parse_duration(CMD, name, val, &d);
        if (!bad && d == 0) return cli_usage_error(CMD, "--max-time must be more than 0");
        o->max_time = d;
        break;
      case OPT_BACKOFF:
      case OPT_BASE:
      case OPT_CAP:
      case OPT_JITTER:
        bad = cli_backoff_option(CMD, name, val, &bo);
        break;
      case OPT_ATTEMPT_TIMEOUT:
        bad = cli_parse_duration(CMD, name, val, &d);
        o->attempt_timeout = d == 0 ? RESIL_NS_MAX : d;
        break;
      case OPT_KILL_AFTER:
        bad = cli_parse_duration(CMD, name, val, &o->kill_after);
        break;
      case OPT_RETRY_ON:
        bad = parse_codes(name, val, &o->retry_on);
        o->has_retry_on = 1;
        break;
      case OPT_STOP_ON:
        bad = parse_codes(name, val, &o->stop_on);
        o->has_stop_on = 1;
        break;
      case OPT_SEED:
        bad = cli_parse_uint(CMD, name, val, UINT64_MAX, &o->seed);
        o->use_seed = 1;
        break;
      case OPT_BREAKER:
        if (!breaker_name_valid(val))
          return cli_usage_error(CMD,
                                 "invalid breaker name for --breaker: '%s' (use 1 to %d letters, "
                                 "digits and . _ - : @ / +, not starting with -)",
                                 val, BREAKER_NAME_MAX);
        o->breaker = val;
        break;
      case OPT_BREAKER_FAILURES:
        bad = cli_parse_uint(CMD, name, val, UINT32_MAX, &u);
        if (!bad && u == 0) return cli_usage_error(CMD, "--breaker-failures must be at least 1");
        o->bset.failures = (uint32_t)u;
        breaker_opt = "--breaker-failures";
        break;
      case OPT_BREAKER_OPEN:
        bad = cli_parse_duration(CMD, name, val, &d);
        if (!bad && d == 0) return cli_usage_error(CMD, "--breaker-open must be more than 0");
        o->bset.open_duration = d;
        breaker_opt = "--breaker-open";
        break;
      case OPT_STATE:
        if (val[0] == '\0') return cli_usage_error(CMD, "--state needs a file name");
        o->state = val;
        breaker_opt = "--state";
        break;
      case OPT_QUIET: o->verbosity = QUIET; break;
      case OPT_VERBOSE: o->verbosity = VERBOSE; break;
      case OPT_HELP: cmd_run_help(stdout); return CLI_EXIT_OK;
      default: break;
    }
    if (bad) return CLI_EXIT_USAGE;
  }

  if (p.index >= argc) return cli_usage_error(CMD, "missing command to run");
  o->command = argv + p.index;

  if (o->attempts == 0 && o->max_time == RESIL_NS_MAX)
    return cli_usage_error(CMD, "--attempts 0 (no limit) needs --max-time");
  if (breaker_opt && o->breaker == NULL)
    return cli_usage_error(CMD, "%s needs --breaker NAME", breaker_opt);
  if (cli_backoff_finish(CMD, &bo) != 0) return CLI_EXIT_USAGE;
  o->backoff = bo.b;
  return -1;
}

/* ---- running ------------------------------------------------------------- */

/* One run's state, shared with the policy's hooks and clock through ud. */
typedef struct run_ctx {
  const run_opts *opts;
  resil_retry_state st;
  resil_cancel *cancel;
  resil_clock clock;  /* the policy's clock: system time, interruptible sleep */
  proc_result last;   /* the attempt just made */
  int last_by_deadline; /* its timeout was the time left before --max-time */
  int signo;          /* the interrupting signal, or 0 */
  int between;        /* it came while no attempt was running */
  breaker_store *store; /* --breaker: the open state file, else NULL */
  resil_permit permit;  /* the breaker's permit for the attempt running */
  int probe;            /* that attempt is the half-open probe */
} run_ctx;

static resil_ns ctx_now(void *ud) {
  (void)ud;
  resil_clock sys = resil_clock_system();
  return sys.now(sys.ud);
}

/* The backoff wait: returns early, with RESIL_ECANCELED, when an
 * interrupting signal arrives. */
static resil_err ctx_sleep(void *ud, resil_ns d, resil_cancel *cancel) {
  run_ctx *c = ud;
  if (resil_cancel_fired(cancel)) return RESIL_ECANCELED;
  int sig = proc_wait_interrupt(d);
  if (sig == 0) return RESIL_OK;
  c->signo = sig;
  c->between = 1;
  resil_cancel_fire(cancel);
  return RESIL_ECANCELED;
}

/* "2/5", or "2" with unlimited attempts. */
static const char *attempt_label(const run_opts *o, uint32_t n, char buf[32]) {
  if (o->attempts) snprintf(buf, 32, "%u/%u", (unsigned)n, (unsigned)o->attempts);
  else snprintf(buf, 32, "%u", (unsigned)n);
  return buf;
}

static void signal_text(int signo, char *buf, size_t len) {
  const char *name = proc_signal_name(signo);
  if (name) snprintf(buf, len, "killed by %s", name);
  else snprintf(buf, len, "killed by signal %d", signo);
}

/* How the last attempt ended, for the parentheses in progress lines:
 * "exit 1", "killed by SIGKILL", "timed out after 2s". */
static const char *describe(const run_ctx *c, char *buf, size_t len) {
  const proc_result *r = &c->last;
  char d[32];
  switch (r->end) {
    case PROC_EXITED: snprintf(buf, len, "exit %d", r->exit_code); break;
    case PROC_SIGNALED: signal_text(r->signo, buf, len); break;
    case PROC_TIMED_OUT:
      if (c->last_by_deadline) snprintf(buf, len, "timed out");
      else snprintf(buf, len, "timed out after %s", cli_fmt_duration(c->opts->attempt_timeout, d));
      if (r->escalated) {
        size_t n = strlen(buf);
        snprintf(buf + n, len - n, ", then killed by SIGKILL");
      }
      break;
    case PROC_EXEC_FAILED: snprintf(buf, len, "%s", strerror(r->exec_errno)); break;
  }
  return buf;
}

static void on_retry(void *ud, const resil_retry_event *ev) {
  run_ctx *c = ud;
  if (c->opts->verbosity == QUIET) return;
  char n[32], why[96], delay[32];
  cli_msg("attempt %s failed (%s); retrying in %s", attempt_label(c->opts, ev->attempt, n),
          describe(c, why, sizeof why), cli_fmt_duration(ev->delay, delay));
}

static void report_final(const run_ctx *c) {
  const proc_result *r = &c->last;
  const run_opts *o = c->opts;
  if (r->end == PROC_EXEC_FAILED) {
    cli_msg("cannot run '%s': %s", o->command[0], strerror(r->exec_errno));
    return;
  }
  char what[128], why[96];
  if (r->end == PROC_EXITED) snprintf(what, sizeof what, "exit %d", r->exit_code);
  else snprintf(what, sizeof what, "status %d (%s)", r->status, describe(c, why, sizeof why));
  int by_stop = o->has_stop_on && resil_codeset_has(&o->stop_on, r->status);
  cli_msg("%s is final (%s)", what, by_stop ? "--stop-on" : "not in --retry-on");
}

static void on_give_up(void *ud, const resil_retry_result *res, void *call_ud) {
  run_ctx *c = ud;
  (void)call_ud;
  if (c->opts->verbosity == QUIET) return;
  char why[96], a[32], b[32];
  switch (res->reason) {
    case RESIL_STOP_FATAL: report_final(c); break;
    case RESIL_STOP_ATTEMPTS:
      cli_msg("giving up after %u attempt%s (%s)", (unsigned)res->attempts,
              res->attempts == 1 ? "" : "s", describe(c, why, sizeof why));
      break;
    case RESIL_STOP_DEADLINE:
      if (resil_retry_remaining(&c->st) == 0)
        cli_msg("giving up: --max-time %s reached (%s)", cli_fmt_duration(c->opts->max_time, a),
                describe(c, why, sizeof why));
      else
        cli_msg("giving up: the next retry (in %s) would pass --max-time %s (%s)",
                cli_fmt_duration(res->refused_delay, a), cli_fmt_duration(c->opts->max_time, b),
                describe(c, why, sizeof why));
      break;
    case RESIL_STOP_CANCELLED:
      if (c->between || res->attempts == 0) cli_msg("interrupted; not retrying");
      else cli_msg("interrupted; not retrying (%s)", describe(c, why, sizeof why));
      break;
    default: /* RETRY_AFTER: the CLI never asks for server delays */
      cli_msg("giving up: %s", resil_stop_reason_text(res->reason));
      break;
  }
}

static void report_policy(const run_opts *o) {
  char n[32], base[32], cap[32], mt[48] = "";
  if (o->attempts)
    snprintf(n, sizeof n, "up to %u attempt%s", (unsigned)o->attempts, o->attempts == 1 ? "" : "s");
  else snprintf(n, sizeof n, "unlimited attempts");
  if (o->max_time != RESIL_NS_MAX) {
    char d[32];
    snprintf(mt, sizeof mt, " within %s", cli_fmt_duration(o->max_time, d));
  }
  cli_msg("policy: %s%s; %s backoff from %s to %s, %s jitter", n, mt,
          resil_backoff_kind_name(o->backoff.kind), cli_fmt_duration(o->backoff.base, base),
          cli_fmt_duration(o->backoff.cap, cap),
          o->backoff.jitter == RESIL_JITTER_NONE ? "no" : resil_jitter_name(o->backoff.jitter));
}

/* Classify the attempt just made for the retry engine. */
static resil_outcome outcome_of(const run_ctx *c) {
  const run_opts *o = c->opts;
  if (c->last.end == PROC_EXEC_FAILED) {
    /* Not found / not executable will not fix itself: never retried. */
    resil_outcome fatal = {RESIL_OUTCOME_FATAL, c->last.status, 0, 0};
    return fatal;
  }
  return resil_classify_exit(c->last.status, o->has_retry_on ? &o->retry_on : NULL,
                             o->has_stop_on ? &o->stop_on : NULL);
}

/* ---- the circuit breaker (--breaker) -------------------------------------- */

typedef struct acquire_call {
  resil_err err;
  resil_permit permit;
  resil_ns retry_in;
} acquire_call;

static void do_acquire(resil_breaker *b, void *ud) {
  acquire_call *a = ud;
  a->err = resil_breaker_acquire(b, &a->permit, &a->retry_in);
}

typedef struct record_call {
  const resil_permit *permit;
  resil_call_result result;
} record_call;

static void do_record(resil_breaker *b, void *ud) {
  record_call *r = ud;
  resil_breaker_record(b, r->permit, r->result, -1);
}

/* Why an attempt was refused: "is open; next probe in 42s" (with later:
 * "is open (next probe in 42s)", to be followed by "; not retrying"). */
static void refusal(const breaker_row *row, resil_ns retry_in, int later, char *buf,
                    size_t len) {
  char d[32];
  switch (row->st.state) {
    case RESIL_BREAKER_HALF_OPEN: {
      /* What comes next depends on the probe's result; all that is known
       * for sure is when it stops counting as running. */
      resil_ns now = breaker_wall_now(), first = RESIL_NS_MAX;
      for (int i = 0; i < RESIL_BREAKER_MAX_PROBES; i++) {
        resil_ns at = row->st.probe_expires[i];
        if (at != 0 && at < first) first = at;
      }
      resil_ns left = first == RESIL_NS_MAX ? retry_in : resil_ns_sub(first, now);
      snprintf(buf, len, "is half-open and a probe is already running (it times out in %s)",
               cli_fmt_duration(left, d));
      break;
    }
    case RESIL_BREAKER_FORCED_OPEN: snprintf(buf, len, "is forced open"); break;
    default:
      snprintf(buf, len, later ? "is open (next probe in %s)" : "is open; next probe in %s",
               cli_fmt_duration(retry_in, d));
      break;
  }
}

/* Before an attempt: ask the shared breaker for a permit. Returns -1 to go
 * ahead, or the exit status when the command must not be started. */
static int breaker_acquire(run_ctx *c, uint32_t attempt) {
  const run_opts *o = c->opts;
  acquire_call a;
  memset(&a, 0, sizeof a);
  breaker_row after;
  if (breaker_store_update(c->store, o->breaker, &o->bset, BSTORE_CREATE, do_acquire, &a, NULL,
                           &after) != BSTORE_OK) {
    /* Fail closed: without the breaker's word, the command does not run. */
    cli_msg("%s; not running the command", breaker_store_errmsg(c->store));
    return CLI_EXIT_IOERR;
  }
  if (a.err == RESIL_OK) {
    c->permit = a.permit;
    c->probe = after.st.state == RESIL_BREAKER_HALF_OPEN;
    if (c->probe && o->verbosity == VERBOSE)
      cli_msg("circuit %s is half-open: this attempt is its probe", o->breaker);
    return -1;
  }
  if (a.err != RESIL_ECIRCUIT_OPEN) {
    cli_msg("circuit %s: %s", o->breaker, resil_strerror(a.err));
    return CLI_EXIT_INTERNAL;
  }

  char text[128], why[96];
  refusal(&after, a.retry_in, attempt > 1, text, sizeof text);
  if (attempt == 1) {
    if (o->verbosity != QUIET) cli_msg("circuit %s %s", o->breaker, text);
    return CLI_EXIT_UNAVAILABLE;
  }
  /* Another process opened it while this one waited to retry. */
  if (o->verbosity != QUIET)
    cli_msg("circuit %s %s; not retrying (%s)", o->breaker, text, describe(c, why, sizeof why));
  return c->last.status;
}

/* What an attempt says about the dependency's health. A status the user
 * declared final (--stop-on, or not in --retry-on) is a verdict on this
 * request, not on the dependency (like a 404), and 126/127 mean the command
 * never ran; an attempt cut short by a signal to resil was stopped by the
 * user. None of those count either way. */
static resil_call_result call_result(const run_ctx *c, const resil_outcome *out) {
  if (c->last.interrupt) return RESIL_CALL_IGNORED;
  switch (out->kind) {
    case RESIL_OUTCOME_SUCCESS: return RESIL_CALL_SUCCESS;
    case RESIL_OUTCOME_RETRYABLE:
    case RESIL_OUTCOME_RETRY_AFTER: return RESIL_CALL_FAILURE;
    default: return RESIL_CALL_IGNORED;
  }
}

/* After an attempt: record its result in the shared breaker. Returns -1 to
 * go on, or the exit status when the breaker ends the run: this failure
 * opened it, or the state file failed (the attempt is then not recorded;
 * a probe's slot stays taken until the probe times out). */
static int breaker_record(run_ctx *c, resil_call_result result) {
  const run_opts *o = c->opts;
  record_call r = {&c->permit, result};
  breaker_row before, after;
  char why[96];
  if (breaker_store_update(c->store, o->breaker, &o->bset, BSTORE_CREATE, do_record, &r, &before,
                           &after) != BSTORE_OK) {
    cli_msg("%s; the attempt (%s) was not recorded", breaker_store_errmsg(c->store),
            describe(c, why, sizeof why));
    return CLI_EXIT_IOERR;
  }
  int opened = before.st.state != RESIL_BREAKER_OPEN && after.st.state == RESIL_BREAKER_OPEN;
  if (!opened) {
    if (c->probe && after.st.state == RESIL_BREAKER_CLOSED && o->verbosity == VERBOSE)
      cli_msg("circuit %s is closed again: the probe succeeded", o->breaker);
    return -1;
  }
  if (o->verbosity != QUIET) {
    if (c->probe)
      cli_msg("circuit %s re-opened because the probe failed; not retrying (%s)", o->breaker,
              describe(c, why, sizeof why));
    else
      cli_msg("circuit %s opened after %u consecutive failure%s; not retrying (%s)", o->breaker,
              (unsigned)o->bset.failures, o->bset.failures == 1 ? "" : "s",
              describe(c, why, sizeof why));
  }
  return c->last.status;
}

/* Returns resil's exit status. */
static int run_attempts(run_ctx *c, const resil_retry_policy *policy) {
  const run_opts *o = c->opts;
  resil_retry_state *st = &c->st;
  char n[32], d[32];

  resil_retry_begin(st, policy, c->cancel, c);
  for (;;) {
    /* A signal that arrived outside an attempt and outside the wait (for
     * example while we were printing) still means "stop". */
    int sig = proc_wait_interrupt(0);
    if (sig) {
      c->signo = sig;
      c->between = 1;
      resil_retry_abort(st);
      return CLI_EXIT_SIGNAL_BASE + sig;
    }

    uint32_t attempt = resil_retry_attempts(st) + 1;
    if (c->store) {
      int rc = breaker_acquire(c, attempt);
      if (rc >= 0) return rc;
    }

    resil_ns per = o->attempt_timeout == RESIL_NS_MAX ? 0 : o->attempt_timeout;
    resil_ns timeout = resil_retry_attempt_timeout(st, per);
    c->last_by_deadline = timeout != RESIL_NS_MAX && (per == 0 || timeout < per);
    if (o->verbosity == VERBOSE) {
      if (timeout == RESIL_NS_MAX) cli_msg("starting attempt %s", attempt_label(o, attempt, n));
      else
        cli_msg("starting attempt %s (%s %s)", attempt_label(o, attempt, n),
                c->last_by_deadline ? "--max-time leaves" : "timeout",
                cli_fmt_duration(timeout, d));
    }

    if (proc_run(o->command, timeout, o->kill_after, &c->last) < 0) {
      int e = errno;
      cli_msg("cannot start '%s': %s", o->command[0], strerror(e));
      if (c->store) {
        /* Nothing ran: hand the permit back without counting anything. */
        memset(&c->last, 0, sizeof c->last);
        c->last.end = PROC_EXEC_FAILED;
        c->last.exec_errno = e;
        (void)breaker_record(c, RESIL_CALL_IGNORED);
      }
      return CLI_EXIT_INTERNAL;
    }
    if (c->last.interrupt) {
      /* It was passed on to the command; no further attempts. */
      c->signo = c->last.interrupt;
      resil_cancel_fire(c->cancel);
    }

    resil_outcome out = outcome_of(c);
    if (c->store) {
      int rc = breaker_record(c, call_result(c, &out));
      if (rc >= 0) return rc;
    }
    resil_step step = resil_retry_next(st, &out);
    if (step.kind == RESIL_STEP_STOP) {
      if (step.reason == RESIL_STOP_SUCCESS && o->verbosity == VERBOSE) {
        resil_retry_result res;
        resil_retry_result_get(st, &res);
        cli_msg("attempt %s succeeded after %s in total", attempt_label(o, attempt, n),
                cli_fmt_duration(res.elapsed, d));
      }
      return c->last.status;
    }
    if (c->clock.sleep(c->clock.ud, step.delay, c->cancel) != RESIL_OK) {
      resil_retry_abort(st);
      return CLI_EXIT_SIGNAL_BASE + c->signo;
    }
  }
}

/* The probe timeout: how long a probe may run before the breaker stops
 * waiting for its result and counts it as failed (so a `resil run` killed
 * with SIGKILL while probing cannot wedge the circuit half-open for longer).
 * It must outlast any attempt that is still running, so it follows the
 * attempt's own limit, plus the SIGKILL grace and a margin; with no limit,
 * 10 minutes. */
static resil_ns probe_timeout(const run_opts *o) {
  resil_ns limit = o->attempt_timeout < o->max_time ? o->attempt_timeout : o->max_time;
  if (limit == RESIL_NS_MAX) return 10 * RESIL_MIN;
  return resil_ns_add(resil_ns_add(limit, o->kill_after), 5 * RESIL_SEC);
}

/* --breaker: find and open the state file. Returns -1 on success, else the
 * exit status (after printing why). */
static int open_breaker(run_opts *o, run_ctx *c) {
  if (!breaker_store_available()) {
    cli_msg("this resil was built without SQLite; --breaker is unavailable");
    return CLI_EXIT_NOT_BUILT;
  }
  o->bset.probe_timeout = probe_timeout(o);
  char path[4096], err[512];
  const char *state = o->state;
  if (state == NULL) {
    if (breaker_default_path(path, sizeof path, 1, err, sizeof err) != 0) {
      cli_msg("%s; not running the command", err);
      return CLI_EXIT_IOERR;
    }
    state = path;
  }
  if (breaker_store_open(&c->store, state, BSTORE_CREATE) != BSTORE_OK) {
    cli_msg("%s; not running the command", breaker_store_errmsg(c->store));
    breaker_store_close(c->store);
    c->store = NULL;
    return CLI_EXIT_IOERR;
  }
  return -1;
}

int cmd_run_main(int argc, char **argv) {
  run_opts opts;
  int rc = parse_args(argc, argv, &opts);
  if (rc >= 0) return rc;

  run_ctx ctx;
  memset(&ctx, 0, sizeof ctx);
  if (opts.breaker) {
    rc = open_breaker(&opts, &ctx);
    if (rc >= 0) return rc;
  }

  if (proc_init() < 0) {
    cli_msg("cannot set up signal handling: %s", strerror(errno));
    breaker_store_close(ctx.store);
    return CLI_EXIT_INTERNAL;
  }

  ctx.opts = &opts;
  ctx.clock.now = ctx_now;
  ctx.clock.sleep = ctx_sleep;
  ctx.clock.ud = &ctx;
  if (resil_cancel_new(&ctx.cancel) != RESIL_OK) {
    cli_msg("out of memory");
    breaker_store_close(ctx.store);
    return CLI_EXIT_INTERNAL;
  }

  resil_retry_config cfg;
  resil_retry_config_init(&cfg);
  cfg.max_attempts = opts.attempts;
  cfg.max_elapsed = opts.max_time;
  cfg.backoff = opts.backoff;
  cfg.on_retry = on_retry;
  cfg.on_give_up = on_give_up;
  cfg.ud = &ctx;
  cfg.clock = ctx.clock;
  cfg.use_seed = opts.use_seed;
  cfg.seed = opts.seed;

  resil_retry_policy *policy = NULL;
  resil_err e = resil_retry_policy_new(&policy, &cfg);
  if (e != RESIL_OK) {
    resil_cancel_free(ctx.cancel);
    breaker_store_close(ctx.store);
    cli_msg("cannot create the retry policy: %s", resil_strerror(e));
    return CLI_EXIT_INTERNAL;
  }

  if (opts.verbosity == VERBOSE) report_policy(&opts);
  rc = run_attempts(&ctx, policy);

  resil_retry_policy_free(policy);
  resil_cancel_free(ctx.cancel);
  breaker_store_close(ctx.store);
  return rc;
}
