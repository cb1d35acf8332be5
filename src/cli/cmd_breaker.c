/* `resil breaker`: inspect and reset the circuit breakers that
 * `resil run --breaker NAME` keeps in its state file (breaker_store.h).
 *
 *   list          a table, one line per breaker
 *   show NAME     every stored field of one breaker
 *   reset NAME    back to closed, through the library's resil_breaker_reset
 *
 * list and show only read; they never move a breaker on (an open breaker
 * whose time is up stays "open" here until a `resil run` asks it). */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "breaker_store.h"
#include "cli.h"
#include "resil/resil.h"

#define CMD "breaker"

enum { OPT_STATE, OPT_HELP };

static const cli_option breaker_options[] = {
    {"state", 0, 1, OPT_STATE},
    {"help", 'h', 0, OPT_HELP},
    {NULL, 0, 0, 0},
};

void cmd_breaker_help(FILE *out) {
  fputs("Usage: resil breaker list [--state PATH]\n"
        "       resil breaker show NAME [--state PATH]\n"
        "       resil breaker reset NAME [--state PATH]\n"
        "\n"
        "Inspect and reset the circuit breakers of 'resil run --breaker NAME'.\n"
        "\n"
        "Actions:\n"
        "  list         one line per breaker: its state, failures in a row, when\n"
        "               the next probe may run, and its calls, failures and\n"
        "               rejected runs so far (nothing when there are none)\n"
        "  show NAME    every stored field of one breaker\n"
        "  reset NAME   close the breaker now (its totals are kept)\n"
        "\n"
        "Options:\n"
        "      --state PATH  the state file (default $XDG_STATE_HOME/resil/breakers.db,\n"
        "                    or ~/.local/state/resil/breakers.db)\n"
        "  -h, --help        show this help\n"
        "\n"
        "Exit status:\n"
        "  0   success (list: also when there is no state file yet)\n"
        "  1   show, reset: there is no breaker named NAME\n"
        "  64  usage error\n"
        "  69  this resil was built without SQLite\n"
        "  74  the state file cannot be opened, read or written\n"
        "\n"
        "Examples:\n"
        "  resil breaker list\n"
        "  resil breaker show backup-host\n"
        "  resil breaker reset backup-host --state /var/lib/myjob/breakers.db\n",
        out);
}

/* ---- formatting ---------------------------------------------------------- */

/* "2025-06-01T12:00:30Z". */
static const char *fmt_time(resil_ns t, char buf[32]) {
  time_t secs = (time_t)(t / RESIL_SEC);
  struct tm tm;
  if (gmtime_r(&secs, &tm) == NULL || strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    snprintf(buf, 32, "%lld", (long long)t);
  return buf;
}

/* "in 29.8s", "3s ago" or "now". */
static const char *fmt_relative(resil_ns t, resil_ns now, char buf[48]) {
  char d[32];
  if (t > now) snprintf(buf, 48, "in %s", cli_fmt_duration(t - now, d));
  else if (t < now) snprintf(buf, 48, "%s ago", cli_fmt_duration(now - t, d));
  else snprintf(buf, 48, "now");
  return buf;
}

/* The earliest busy probe slot's expiry, or 0 when no probe is running. */
static resil_ns first_probe_expiry(const breaker_row *r) {
  resil_ns first = 0;
  for (int i = 0; i < RESIL_BREAKER_MAX_PROBES; i++) {
    resil_ns at = r->st.probe_expires[i];
    if (at != 0 && (first == 0 || at < first)) first = at;
  }
  return first;
}

/* When the next `resil run` may probe: "in 29.8s", "now", "probe running",
 * "probe timed out" (the next run counts it as failed and re-opens), "never"
 * (forced open), or "-" (closed: every run goes through). */
static const char *next_probe(const breaker_row *r, resil_ns now, char buf[48]) {
  switch (r->st.state) {
    case RESIL_BREAKER_OPEN:
      if (r->st.open_until > now) return fmt_relative(r->st.open_until, now, buf);
      return "now";
    case RESIL_BREAKER_HALF_OPEN: {
      resil_ns exp = first_probe_expiry(r);
      if (exp == 0) return "now";
      return exp > now ? "probe running" : "probe timed out";
    }
    case RESIL_BREAKER_FORCED_OPEN: return "never";
    default: return "-";
  }
}

/* ---- list ---------------------------------------------------------------- */

enum { NCOL = 7 };
static const char *const heads[NCOL] = {"NAME",  "STATE",    "IN A ROW", "NEXT PROBE",
                                        "CALLS", "FAILURES", "REJECTED"};
static const int right_aligned[NCOL] = {0, 0, 1, 0, 1, 1, 1};

typedef char list_cells[NCOL][BREAKER_NAME_MAX + 1];

static int list(breaker_store *s) {
  breaker_row *rows;
  size_t n;
  if (breaker_store_list(s, &rows, &n) != BSTORE_OK) {
    cli_msg("%s", breaker_store_errmsg(s));
    return CLI_EXIT_IOERR;
  }
  if (n == 0) return CLI_EXIT_OK;
  list_cells *cells = malloc(n * sizeof *cells);
  if (cells == NULL) {
    free(rows);
    cli_msg("out of memory");
    return CLI_EXIT_INTERNAL;
  }
  size_t width[NCOL];
  for (int j = 0; j < NCOL; j++) width[j] = strlen(heads[j]);
  resil_ns now = breaker_wall_now();
  for (size_t i = 0; i < n; i++) {
    const breaker_row *r = &rows[i];
    char buf[48];
    snprintf(cells[i][0], sizeof cells[i][0], "%s", r->name);
    snprintf(cells[i][1], sizeof cells[i][1], "%s", resil_breaker_state_name(r->st.state));
    snprintf(cells[i][2], sizeof cells[i][2], "%u/%u", (unsigned)r->st.consecutive_failures,
             (unsigned)r->settings.failures);
    snprintf(cells[i][3], sizeof cells[i][3], "%s", next_probe(r, now, buf));
    snprintf(cells[i][4], sizeof cells[i][4], "%llu", (unsigned long long)r->st.calls);
    snprintf(cells[i][5], sizeof cells[i][5], "%llu", (unsigned long long)r->st.failures);
    snprintf(cells[i][6], sizeof cells[i][6], "%llu", (unsigned long long)r->st.rejected);
    for (int j = 0; j < NCOL; j++)
      if (strlen(cells[i][j]) > width[j]) width[j] = strlen(cells[i][j]);
  }
  for (size_t i = 0; i <= n; i++) {
    for (int j = 0; j < NCOL; j++) {
      const char *text = i == 0 ? heads[j] : cells[i - 1][j];
      int w = (int)width[j];
      const char *sep = j == NCOL - 1 ? "\n" : "  ";
      if (right_aligned[j]) printf("%*s%s", w, text, sep);
      else if (j == NCOL - 1) printf("%s%s", text, sep); /* no trailing blanks */
      else printf("%-*s%s", w, text, sep);
    }
  }
  free(cells);
  free(rows);
  return CLI_EXIT_OK;
}

/* ---- show ---------------------------------------------------------------- */

/* "key:                  value", the values aligned. */
static void field(const char *key, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void field(const char *key, const char *fmt, ...) {
  char value[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(value, sizeof value, fmt, ap);
  va_end(ap);
  char label[32];
  snprintf(label, sizeof label, "%s:", key);
  printf("%-22s%s\n", label, value);
}

static void show(const breaker_row *r, const char *path) {
  resil_ns now = breaker_wall_now();
  char a[48], b[48], t[32], d[32];
  const resil_breaker_persisted *p = &r->st;
  field("name", "%s", r->name);
  field("state", "%s", resil_breaker_state_name(p->state));
  field("next probe", "%s", next_probe(r, now, a));
  field("consecutive failures", "%u", (unsigned)p->consecutive_failures);
  field("trips in a row", "%u", (unsigned)p->trips_in_row);
  if (p->open_until != 0)
    field("open until", "%s (%s)", fmt_time(p->open_until, t), fmt_relative(p->open_until, now, a));
  else field("open until", "-");
  field("probes running", "%u", (unsigned)p->probes);
  field("probe successes", "%u", (unsigned)p->probe_successes);
  int any = 0;
  for (int i = 0; i < RESIL_BREAKER_MAX_PROBES; i++) {
    resil_ns at = p->probe_expires[i];
    if (at == 0) continue;
    char key[32];
    snprintf(key, sizeof key, "probe %d times out", i + 1);
    field(key, "%s (%s)", fmt_time(at, t), fmt_relative(at, now, a));
    any = 1;
  }
  if (!any) field("probe times out", "-");
  field("epoch", "%llu", (unsigned long long)p->epoch);
  field("calls", "%llu", (unsigned long long)p->calls);
  field("successes", "%llu", (unsigned long long)p->successes);
  field("failures", "%llu", (unsigned long long)p->failures);
  field("rejected", "%llu", (unsigned long long)p->rejected);
  field("trips", "%llu", (unsigned long long)p->trips);
  field("failures to open", "%u", (unsigned)r->settings.failures);
  field("open duration", "%s", cli_fmt_duration(r->settings.open_duration, d));
  field("probe timeout", "%s", cli_fmt_duration(r->settings.probe_timeout, d));
  field("updated", "%s (%s)", fmt_time(r->updated_at, t), fmt_relative(r->updated_at, now, b));
  field("state file", "%s", path);
}

/* ---- reset --------------------------------------------------------------- */

static void do_reset(resil_breaker *b, void *ud) {
  (void)ud;
  resil_breaker_reset(b);
}

/* ---- main ---------------------------------------------------------------- */

typedef struct breaker_args {
  const char *state;   /* --state, or NULL */
  const char *ops[2];  /* action, NAME */
  int nops;
} breaker_args;

static int add_operand(breaker_args *a, const char *op) {
  if (a->nops == 2) return cli_usage_error(CMD, "too many arguments: '%s'", op);
  a->ops[a->nops++] = op;
  return 0;
}

/* Options may come before or after the action and NAME. Returns -1 to go
 * on, or an exit status. */
static int parse_args(int argc, char **argv, breaker_args *a) {
  memset(a, 0, sizeof *a);
  cli_optparser p;
  cli_optparser_init(&p, argc, argv, CMD, breaker_options);
  for (;;) {
    const char *name, *val;
    int at = p.index;
    int id = cli_optparser_next(&p, &name, &val);
    if (id == CLI_OPT_ERROR) return CLI_EXIT_USAGE;
    if (id == CLI_OPT_DONE) {
      if (p.index > at) { /* it was "--": only operands follow */
        for (; p.index < argc; p.index++)
          if (add_operand(a, argv[p.index])) return CLI_EXIT_USAGE;
        break;
      }
      if (p.index >= argc) break;
      if (add_operand(a, argv[p.index++])) return CLI_EXIT_USAGE;
      continue;
    }
    switch (id) {
      case OPT_STATE:
        if (val[0] == '\0') return cli_usage_error(CMD, "--state needs a file name");
        a->state = val;
        break;
      case OPT_HELP: cmd_breaker_help(stdout); return CLI_EXIT_OK;
      default: break;
    }
  }

  if (a->nops == 0) return cli_usage_error(CMD, "missing action (list, show NAME or reset NAME)");
  const char *action = a->ops[0];
  if (strcmp(action, "list") == 0) {
    if (a->nops > 1) return cli_usage_error(CMD, "list takes no NAME: '%s'", a->ops[1]);
  } else if (strcmp(action, "show") == 0 || strcmp(action, "reset") == 0) {
    if (a->nops < 2) return cli_usage_error(CMD, "%s needs a breaker NAME", action);
    if (!breaker_name_valid(a->ops[1]))
      return cli_usage_error(CMD,
                             "invalid breaker name: '%s' (use 1 to %d letters, digits and "
                             ". _ - : @ / +, not starting with -)",
                             a->ops[1], BREAKER_NAME_MAX);
  } else {
    return cli_usage_error(CMD, "unknown action '%s' (use list, show or reset)", action);
  }
  return -1;
}

int cmd_breaker_main(int argc, char **argv) {
  breaker_args a;
  int rc = parse_args(argc, argv, &a);
  if (rc >= 0) return rc;
  if (!breaker_store_available()) {
    cli_msg("this resil was built without SQLite; 'resil breaker' is unavailable");
    return CLI_EXIT_NOT_BUILT;
  }

  const char *action = a.ops[0], *name = a.ops[1];
  char path[4096], err[512];
  const char *state = a.state;
  if (state == NULL) {
    /* Reading needs no directory: a missing one means no breakers yet. */
    if (breaker_default_path(path, sizeof path, 0, err, sizeof err) != 0) {
      cli_msg("%s", err);
      return CLI_EXIT_IOERR;
    }
    state = path;
  }

  breaker_store *s = NULL;
  rc = breaker_store_open(&s, state, 0);
  if (rc == BSTORE_NOT_FOUND) {
    breaker_store_close(s);
    if (strcmp(action, "list") == 0) return CLI_EXIT_OK;
    cli_msg("no breaker named '%s' (there is no state file %s)", name, state);
    return CLI_EXIT_NO_SUCH_BREAKER;
  }
  if (rc != BSTORE_OK) {
    cli_msg("%s", breaker_store_errmsg(s));
    breaker_store_close(s);
    return CLI_EXIT_IOERR;
  }

  if (strcmp(action, "list") == 0) {
    rc = list(s);
  } else if (strcmp(action, "show") == 0) {
    breaker_row row;
    int got = breaker_store_get(s, name, &row);
    if (got == BSTORE_OK) {
      show(&row, state);
      rc = CLI_EXIT_OK;
    } else if (got == BSTORE_NOT_FOUND) {
      cli_msg("no breaker named '%s' in %s", name, state);
      rc = CLI_EXIT_NO_SUCH_BREAKER;
    } else {
      cli_msg("%s", breaker_store_errmsg(s));
      rc = CLI_EXIT_IOERR;
    }
  } else { /* reset */
    breaker_row before, after;
    int got = breaker_store_update(s, name, NULL, BSTORE_FRESH_ON_INVALID, do_reset, NULL,
                                   &before, &after);
    if (got == BSTORE_OK) {
      cli_msg("circuit %s reset to %s (was %s)", name, resil_breaker_state_name(after.st.state),
              resil_breaker_state_name(before.st.state));
      rc = CLI_EXIT_OK;
    } else if (got == BSTORE_NOT_FOUND) {
      cli_msg("no breaker named '%s' in %s", name, state);
      rc = CLI_EXIT_NO_SUCH_BREAKER;
    } else {
      cli_msg("%s", breaker_store_errmsg(s));
      rc = CLI_EXIT_IOERR;
    }
  }
  breaker_store_close(s);
  return rc;
}
