/* `resil run --breaker` and `resil breaker`, tested end to end against the
 * real binary: state shared through a SQLite file between separate
 * processes, some of them running at the same time.
 *
 * Open durations are short (300ms) and the tests wait well past them
 * (600ms): the margins are for correctness on a loaded machine, not speed
 * checks. Every test points XDG_STATE_HOME into its own directory, so
 * nothing here can touch the real ~/.local/state. */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli_harness.h"
#include "resil/time.h"

#define OPEN_SHORT "300ms"
#define PAST_OPEN_SHORT 0.6 /* seconds: safely after OPEN_SHORT */

/* ---- helpers --------------------------------------------------------------- */

static void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

static int setup(void **state) {
  if (fixture_setup(state) != 0) return -1;
  fixture *f = *state;
  char xdg[256];
  path_in(f, "xdg", xdg, sizeof xdg);
  setenv("XDG_STATE_HOME", xdg, 1);
  return 0;
}

static int teardown(void **state) { return fixture_teardown(state); }

typedef struct paths {
  char state[256];   /* the --state file */
  char started[256]; /* one line per command that ran */
} paths;

static void paths_of(const fixture *f, paths *p) {
  path_in(f, "state.db", p->state, sizeof p->state);
  path_in(f, "started", p->started, sizeof p->started);
}

static int lines_in(const char *path) {
  char *s = slurp(path);
  int n = count_lines(s);
  free(s);
  return n;
}

static int exists(const char *path) { return access(path, F_OK) == 0; }

/* The value of "key:   value" in `resil breaker show` output. */
static const char *field_of(const char *show, const char *key, char *buf, size_t len) {
  size_t k = strlen(key);
  const char *line = show;
  while (*line) {
    const char *end = strchr(line, '\n');
    if (end == NULL) end = line + strlen(line);
    if ((size_t)(end - line) > k && strncmp(line, key, k) == 0 && line[k] == ':') {
      const char *v = line + k + 1;
      while (*v == ' ') v++;
      snprintf(buf, len, "%.*s", (int)(end - v), v);
      return buf;
    }
    line = *end ? end + 1 : end;
  }
  print_error("no field '%s' in:\n%s", key, show);
  fail();
  return NULL;
}

static long long num_field(const char *show, const char *key) {
  char buf[128];
  return atoll(field_of(show, key, buf, sizeof buf));
}

static void assert_field(const char *show, const char *key, const char *want) {
  char buf[256];
  assert_string_equal(field_of(show, key, buf, sizeof buf), want);
}

/* `resil breaker show NAME --state PATH`, which must succeed. */
static void show_breaker(capture *c, const char *state, const char *name) {
  RUN(c, "breaker", "show", name, "--state", state);
  if (c->status != 0) print_error("show %s: status %d, stderr:\n%s", name, c->status, c->err);
  assert_int_equal(c->status, 0);
  assert_string_equal(c->err, "");
}

/* err is exactly "resil: circuit NAME is open; next probe in DUR\n" with
 * 0 < DUR <= max. */
static void assert_open_message(const char *err, const char *name, resil_ns max) {
  char prefix[256];
  snprintf(prefix, sizeof prefix, "resil: circuit %s is open; next probe in ", name);
  if (strncmp(err, prefix, strlen(prefix)) != 0) print_error("stderr:\n%s", err);
  assert_int_equal(strncmp(err, prefix, strlen(prefix)), 0);
  const char *d = err + strlen(prefix);
  const char *nl = strchr(d, '\n');
  assert_non_null(nl);
  assert_string_equal(nl, "\n");
  char dur[32];
  assert_true((size_t)(nl - d) < sizeof dur);
  snprintf(dur, sizeof dur, "%.*s", (int)(nl - d), d);
  resil_ns v = 0;
  assert_int_equal(resil_duration_parse(dur, &v), RESIL_OK);
  assert_true(v > 0);
  assert_true(v <= max);
}

/* Open breaker NAME with one failure (its --breaker-failures is 1). */
static void trip(const paths *p, const char *name, const char *open) {
  capture c;
  RUN(&c, "run", "--breaker", name, "--state", p->state, "--breaker-failures", "1",
      "--breaker-open", open, "-n", "1", "--", "sh", "-c", "exit 1");
  assert_int_equal(c.status, 1);
  char want[256];
  snprintf(want, sizeof want,
           "resil: circuit %s opened after 1 consecutive failure; not retrying (exit 1)\n", name);
  assert_string_equal(c.err, want);
  capture_free(&c);
}

/* The command the tests run: note that it started, then exit with CODE. */
#define STARTED_THEN(code) "sh", "-c", "echo x >> \"$1\"; exit " code, "sh"

/* ---- opening ----------------------------------------------------------------- */

static void test_failures_open_the_breaker(void **state) {
  paths p;
  paths_of(*state, &p);
  capture c;
  for (int i = 1; i <= 3; i++) {
    RUN(&c, "run", "--breaker", "svc", "--state", p.state, "--breaker-failures", "3", "-n", "1",
        "--", STARTED_THEN("1"), p.started);
    assert_int_equal(c.status, 1);
    if (i < 3) assert_string_equal(c.err, "resil: giving up after 1 attempt (exit 1)\n");
    else
      assert_string_equal(
          c.err, "resil: circuit svc opened after 3 consecutive failures; not retrying (exit 1)\n");
    capture_free(&c);
  }
  assert_int_equal(lines_in(p.started), 3);

  show_breaker(&c, p.state, "svc");
  assert_field(c.out, "state", "open");
  assert_int_equal(num_field(c.out, "consecutive failures"), 3);
  assert_int_equal(num_field(c.out, "calls"), 3);
  assert_int_equal(num_field(c.out, "failures"), 3);
  assert_int_equal(num_field(c.out, "rejected"), 0);
  assert_int_equal(num_field(c.out, "trips"), 1);
  assert_int_equal(num_field(c.out, "failures to open"), 3);
  assert_field(c.out, "open duration", "30s");
  capture_free(&c);
}

static void test_success_resets_the_count(void **state) {
  paths p;
  paths_of(*state, &p);
  capture c;
  const char *codes[] = {"1", "1", "0", "1", "1"};
  for (size_t i = 0; i < ARRAY_LEN(codes); i++) {
    RUN(&c, "run", "-q", "--breaker", "svc", "--state", p.state, "--breaker-failures", "3", "-n",
        "1", "--", "sh", "-c", codes[i][0] == '0' ? "exit 0" : "exit 1");
    assert_int_equal(c.status, codes[i][0] - '0');
    capture_free(&c);
  }
  /* 1, 1, success, 1, 1: never three in a row. */
  show_breaker(&c, p.state, "svc");
  assert_field(c.out, "state", "closed");
  assert_int_equal(num_field(c.out, "consecutive failures"), 2);
  assert_int_equal(num_field(c.out, "calls"), 5);
  assert_int_equal(num_field(c.out, "successes"), 1);
  capture_free(&c);
}

static void test_open_breaker_does_not_start_the_command(void **state) {
  paths p;
  paths_of(*state, &p);
  trip(&p, "svc", "30s");
  capture c;
  RUN(&c, "run", "--breaker", "svc", "--state", p.state, "--breaker-failures", "1", "--",
      STARTED_THEN("0"), p.started);
  assert_int_equal(c.status, 75);
  assert_open_message(c.err, "svc", 30 * RESIL_SEC);
  assert_string_equal(c.out, "");
  assert_false(exists(p.started));
  capture_free(&c);

  /* --quiet: the status alone says it. */
  RUN(&c, "run", "-q", "--breaker", "svc", "--state", p.state, "--", STARTED_THEN("0"),
      p.started);
  assert_int_equal(c.status, 75);
  assert_string_equal(c.err, "");
  assert_false(exists(p.started));
  capture_free(&c);

  show_breaker(&c, p.state, "svc");
  assert_int_equal(num_field(c.out, "rejected"), 2);
  assert_int_equal(num_field(c.out, "calls"), 1);
  capture_free(&c);
}

static void test_opening_ends_the_retries(void **state) {
  paths p;
  paths_of(*state, &p);
  capture c;
  RUN(&c, "run", "--breaker", "svc", "--state", p.state, "--breaker-failures", "2", "-n", "5",
      "--base", "10ms", "--jitter", "none", "--", STARTED_THEN("3"), p.started);
  assert_int_equal(c.status, 3); /* the last attempt's status */
  assert_string_equal(c.err,
                      "resil: attempt 1/5 failed (exit 3); retrying in 10ms\n"
                      "resil: circuit svc opened after 2 consecutive failures; not retrying "
                      "(exit 3)\n");
  assert_int_equal(lines_in(p.started), 2);
  capture_free(&c);
}

/* ---- probes ------------------------------------------------------------------ */

static void test_probe_success_closes(void **state) {
  paths p;
  paths_of(*state, &p);
  trip(&p, "svc", OPEN_SHORT);
  sleep_s(PAST_OPEN_SHORT);
  capture c;
  RUN(&c, "run", "-v", "--breaker", "svc", "--state", p.state, "--breaker-failures", "1",
      "--breaker-open", OPEN_SHORT, "-n", "1", "--", STARTED_THEN("0"), p.started);
  assert_int_equal(c.status, 0);
  assert_non_null(strstr(c.err, "resil: circuit svc is half-open: this attempt is its probe\n"));
  assert_non_null(strstr(c.err, "resil: circuit svc is closed again: the probe succeeded\n"));
  assert_int_equal(lines_in(p.started), 1);
  capture_free(&c);

  show_breaker(&c, p.state, "svc");
  assert_field(c.out, "state", "closed");
  assert_field(c.out, "next probe", "-");
  assert_int_equal(num_field(c.out, "consecutive failures"), 0);
  assert_int_equal(num_field(c.out, "trips in a row"), 0);
  capture_free(&c);

  /* Closed: the next runs go straight through. */
  RUN(&c, "run", "--breaker", "svc", "--state", p.state, "--", STARTED_THEN("0"), p.started);
  assert_int_equal(c.status, 0);
  assert_int_equal(lines_in(p.started), 2);
  capture_free(&c);
}

static void test_failing_probe_reopens(void **state) {
  paths p;
  paths_of(*state, &p);
  trip(&p, "svc", OPEN_SHORT);
  sleep_s(PAST_OPEN_SHORT);
  capture c;
  RUN(&c, "run", "--breaker", "svc", "--state", p.state, "--breaker-failures", "1",
      "--breaker-open", "30s", "-n", "3", "--base", "10ms", "--", STARTED_THEN("1"), p.started);
  assert_int_equal(c.status, 1);
  assert_string_equal(c.err,
                      "resil: circuit svc re-opened because the probe failed; not retrying "
                      "(exit 1)\n");
  assert_int_equal(lines_in(p.started), 1); /* no retry after the failed probe */
  capture_free(&c);

  show_breaker(&c, p.state, "svc");
  assert_field(c.out, "state", "open");
  assert_int_equal(num_field(c.out, "trips"), 2);
  assert_int_equal(num_field(c.out, "trips in a row"), 2);
  capture_free(&c);

  /* Open again, for the new --breaker-open. */
  RUN(&c, "run", "--breaker", "svc", "--state", p.state, "--breaker-failures", "1",
      "--breaker-open", "30s", "--", STARTED_THEN("0"), p.started);
  assert_int_equal(c.status, 75);
  assert_open_message(c.err, "svc", 30 * RESIL_SEC);
  assert_int_equal(lines_in(p.started), 1);
  capture_free(&c);
}

/* ---- several processes at once ---------------------------------------------- */

static void test_concurrent_runs_share_one_breaker(void **state) {
  paths p;
  paths_of(*state, &p);
  enum { N = 8 };
  cli_proc procs[N];
  for (int i = 0; i < N; i++) {
    const char *const args[] = {"run", "--breaker", "svc", "--state", p.state,
                                "--breaker-failures", "3", "--attempts", "1", "--",
                                STARTED_THEN("1"), p.started, NULL};
    cli_start(&procs[i], NULL, args);
  }
  cli_wait_all(procs, N);

  int failed = 0, refused = 0;
  for (int i = 0; i < N; i++) {
    capture *c = &procs[i].cap;
    if (c->status == 1) {
      failed++;
      int ok = strcmp(c->err, "resil: giving up after 1 attempt (exit 1)\n") == 0 ||
               strcmp(c->err, "resil: circuit svc opened after 3 consecutive failures; not "
                              "retrying (exit 1)\n") == 0;
      if (!ok) print_error("run %d: %s", i, c->err);
      assert_true(ok);
    } else {
      if (c->status != 75) print_error("run %d: status %d, stderr:\n%s", i, c->status, c->err);
      assert_int_equal(c->status, 75);
      assert_open_message(c->err, "svc", 30 * RESIL_SEC);
      refused++;
    }
    capture_free(c);
  }

  int started = lines_in(p.started);
  assert_int_equal(started, failed);
  assert_true(started >= 3); /* it takes 3 failures to open it */
  capture c;
  show_breaker(&c, p.state, "svc");
  assert_field(c.out, "state", "open");
  assert_int_equal(num_field(c.out, "failures"), started);
  assert_int_equal(num_field(c.out, "calls"), started);
  assert_int_equal(num_field(c.out, "rejected"), refused);
  assert_int_equal(started + num_field(c.out, "rejected"), N);
  assert_int_equal(num_field(c.out, "trips"), 1);
  capture_free(&c);

  /* The file is in WAL mode: header bytes 18 and 19 (the file format's
   * write and read versions) are 2. */
  FILE *fp = fopen(p.state, "rb");
  assert_non_null(fp);
  unsigned char hdr[20];
  assert_int_equal(fread(hdr, 1, sizeof hdr, fp), sizeof hdr);
  fclose(fp);
  assert_int_equal(hdr[18], 2);
  assert_int_equal(hdr[19], 2);
}

static void test_half_open_admits_one_probe(void **state) {
  paths p;
  paths_of(*state, &p);
  trip(&p, "svc", OPEN_SHORT);
  sleep_s(PAST_OPEN_SHORT);

  enum { N = 4 };
  cli_proc procs[N];
  for (int i = 0; i < N; i++) {
    const char *const args[] = {"run", "--breaker", "svc", "--state", p.state,
                                "--breaker-failures", "1", "--breaker-open", OPEN_SHORT,
                                "-n", "1", "--", "sh", "-c", "echo x >> \"$1\"; sleep 0.5",
                                "sh", p.started, NULL};
    cli_start(&procs[i], NULL, args);
  }
  cli_wait_all(procs, N);

  const char *prefix =
      "resil: circuit svc is half-open and a probe is already running (it times out in ";
  int probes = 0, refused = 0;
  for (int i = 0; i < N; i++) {
    capture *c = &procs[i].cap;
    if (c->status == 0) {
      probes++;
      assert_string_equal(c->err, "");
    } else {
      if (c->status != 75) print_error("run %d: status %d, stderr:\n%s", i, c->status, c->err);
      assert_int_equal(c->status, 75);
      assert_int_equal(strncmp(c->err, prefix, strlen(prefix)), 0);
      refused++;
    }
    capture_free(c);
  }
  assert_int_equal(probes, 1);
  assert_int_equal(refused, N - 1);
  assert_int_equal(lines_in(p.started), 1);

  capture c;
  show_breaker(&c, p.state, "svc");
  assert_field(c.out, "state", "closed");
  assert_int_equal(num_field(c.out, "rejected"), N - 1);
  capture_free(&c);
}

/* ---- which results count ----------------------------------------------------- */

static void test_final_statuses_count_neither_way(void **state) {
  paths p;
  paths_of(*state, &p);
  capture c;
  /* A --stop-on status, a command that is not found: neither opens it. */
  RUN(&c, "run", "--breaker", "svc", "--state", p.state, "--breaker-failures", "1",
      "--stop-on", "2", "--", "sh", "-c", "exit 2");
  assert_int_equal(c.status, 2);
  assert_string_equal(c.err, "resil: exit 2 is final (--stop-on)\n");
  capture_free(&c);
  RUN(&c, "run", "--breaker", "svc", "--state", p.state, "--breaker-failures", "1", "--",
      "resil-test-no-such-command");
  assert_int_equal(c.status, 127);
  capture_free(&c);

  show_breaker(&c, p.state, "svc");
  assert_field(c.out, "state", "closed");
  assert_int_equal(num_field(c.out, "calls"), 2);
  assert_int_equal(num_field(c.out, "failures"), 0);
  capture_free(&c);

  /* A retryable failure does. */
  RUN(&c, "run", "--breaker", "svc", "--state", p.state, "--breaker-failures", "1", "-n", "1",
      "--", "sh", "-c", "exit 1");
  assert_int_equal(c.status, 1);
  capture_free(&c);
  show_breaker(&c, p.state, "svc");
  assert_field(c.out, "state", "open");
  capture_free(&c);
}

/* ---- resil breaker ----------------------------------------------------------- */

/* Whitespace-separated words of line n (0-based) of s, into words[]. */
static int words_of_line(const char *s, int n, char words[][64], int max) {
  for (; n > 0 && *s; s++)
    if (*s == '\n') n--;
  int k = 0;
  while (*s && *s != '\n' && k < max) {
    while (*s == ' ') s++;
    if (*s == '\n' || *s == '\0') break;
    int len = 0;
    while (*s && *s != ' ' && *s != '\n') {
      if (len < 63) words[k][len++] = *s;
      s++;
    }
    words[k++][len] = '\0';
  }
  return k;
}

static void test_list_show_reset(void **state) {
  paths p;
  paths_of(*state, &p);
  capture c;
  RUN(&c, "run", "--breaker", "api", "--state", p.state, "--", "true");
  assert_int_equal(c.status, 0);
  capture_free(&c);
  trip(&p, "db", "30s");

  RUN(&c, "breaker", "list", "--state", p.state);
  assert_int_equal(c.status, 0);
  assert_string_equal(c.err, "");
  assert_int_equal(count_lines(c.out), 3);
  char w[10][64];
  /* NAME STATE IN A ROW NEXT PROBE CALLS FAILURES REJECTED */
  assert_int_equal(words_of_line(c.out, 0, w, 10), 10);
  assert_string_equal(w[0], "NAME");
  assert_string_equal(w[9], "REJECTED");
  /* Sorted by name. */
  assert_int_equal(words_of_line(c.out, 1, w, 10), 7);
  const char *want_api[] = {"api", "closed", "0/5", "-", "1", "0", "0"};
  for (int i = 0; i < 7; i++) assert_string_equal(w[i], want_api[i]);
  assert_int_equal(words_of_line(c.out, 2, w, 10), 8);
  const char *want_db[] = {"db", "open", "1/1", "in", NULL, "1", "1", "0"};
  for (int i = 0; i < 8; i++)
    if (want_db[i]) assert_string_equal(w[i], want_db[i]);
  capture_free(&c);

  /* show: every field, in this order. */
  show_breaker(&c, p.state, "db");
  static const char *const keys[] = {
      "name", "state", "next probe", "consecutive failures", "trips in a row", "open until",
      "probes running", "probe successes", "probe times out", "epoch", "calls", "successes",
      "failures", "rejected", "trips", "failures to open", "open duration", "probe timeout",
      "updated", "state file"};
  assert_int_equal(count_lines(c.out), (int)ARRAY_LEN(keys));
  const char *line = c.out;
  for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
    size_t k = strlen(keys[i]);
    if (strncmp(line, keys[i], k) != 0 || line[k] != ':') print_error("line %zu: %s", i, line);
    assert_int_equal(strncmp(line, keys[i], k), 0);
    line = strchr(line, '\n') + 1;
  }
  assert_field(c.out, "name", "db");
  assert_field(c.out, "state", "open");
  assert_field(c.out, "state file", p.state);
  assert_field(c.out, "probe timeout", "10m");
  capture_free(&c);

  /* reset: closed, totals kept. */
  RUN(&c, "breaker", "reset", "db", "--state", p.state);
  assert_int_equal(c.status, 0);
  assert_string_equal(c.err, "resil: circuit db reset to closed (was open)\n");
  assert_string_equal(c.out, "");
  capture_free(&c);
  show_breaker(&c, p.state, "db");
  assert_field(c.out, "state", "closed");
  assert_int_equal(num_field(c.out, "consecutive failures"), 0);
  assert_int_equal(num_field(c.out, "failures"), 1);
  assert_int_equal(num_field(c.out, "trips"), 1);
  capture_free(&c);

  RUN(&c, "run", "--breaker", "db", "--state", p.state, "--", STARTED_THEN("0"), p.started);
  assert_int_equal(c.status, 0);
  assert_int_equal(lines_in(p.started), 1);
  capture_free(&c);

  /* Options may also come first. */
  RUN(&c, "breaker", "--state", p.state, "show", "api");
  assert_int_equal(c.status, 0);
  assert_field(c.out, "name", "api");
  capture_free(&c);
}

static void test_unknown_breaker(void **state) {
  paths p;
  paths_of(*state, &p);
  capture c;
  char want[512];

  /* No state file yet: list shows nothing and succeeds; show and reset do
   * not find the breaker. None of them creates the file. */
  RUN(&c, "breaker", "list", "--state", p.state);
  assert_int_equal(c.status, 0);
  assert_string_equal(c.out, "");
  assert_string_equal(c.err, "");
  capture_free(&c);
  snprintf(want, sizeof want, "resil: no breaker named 'nope' (there is no state file %s)\n",
           p.state);
  RUN(&c, "breaker", "show", "nope", "--state", p.state);
  assert_int_equal(c.status, 1);
  assert_string_equal(c.err, want);
  capture_free(&c);
  RUN(&c, "breaker", "reset", "nope", "--state", p.state);
  assert_int_equal(c.status, 1);
  assert_string_equal(c.err, want);
  capture_free(&c);
  assert_false(exists(p.state));

  /* A state file without that breaker. */
  trip(&p, "svc", "30s");
  snprintf(want, sizeof want, "resil: no breaker named 'nope' in %s\n", p.state);
  RUN(&c, "breaker", "show", "nope", "--state", p.state);
  assert_int_equal(c.status, 1);
  assert_string_equal(c.err, want);
  assert_string_equal(c.out, "");
  capture_free(&c);
  RUN(&c, "breaker", "reset", "nope", "--state", p.state);
  assert_int_equal(c.status, 1);
  assert_string_equal(c.err, want);
  capture_free(&c);
}

/* ---- the state file ---------------------------------------------------------- */

static void test_unusable_state_file_fails_closed(void **state) {
  fixture *f = *state;
  paths p;
  paths_of(f, &p);
  char dir[256], garbage[256];
  path_in(f, "a-directory", dir, sizeof dir);
  assert_int_equal(mkdir(dir, 0700), 0);
  path_in(f, "garbage.db", garbage, sizeof garbage);
  FILE *fp = fopen(garbage, "w");
  assert_non_null(fp);
  for (int i = 0; i < 200; i++) fputs("this is not a database. ", fp);
  fclose(fp);

  const struct {
    const char *path;
    const char *detail;
  } cases[] = {
      {dir, "unable to open database file"},
      {"/proc/resil-test-no-such-dir/state.db", "unable to open database file"},
      {garbage, "file is not a database"},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    capture c;
    RUN(&c, "run", "--breaker", "svc", "--state", cases[i].path, "--", STARTED_THEN("0"),
        p.started);
    char head[512];
    snprintf(head, sizeof head, "resil: cannot open state file %s: %s", cases[i].path,
             cases[i].detail);
    const char *tail = "; not running the command\n";
    if (c.status != 74 || strncmp(c.err, head, strlen(head)) != 0)
      print_error("case %zu: status %d, stderr:\n%s", i, c.status, c.err);
    assert_int_equal(c.status, 74);
    assert_int_equal(strncmp(c.err, head, strlen(head)), 0);
    assert_true(c.err_len > strlen(tail));
    assert_string_equal(c.err + c.err_len - strlen(tail), tail);
    assert_int_equal(count_lines(c.err), 1);
    assert_false(exists(p.started));
    capture_free(&c);
  }

  /* resil breaker says the same, without the tail. */
  capture c;
  RUN(&c, "breaker", "list", "--state", garbage);
  assert_int_equal(c.status, 74);
  char want[512];
  snprintf(want, sizeof want, "resil: cannot open state file %s: file is not a database\n",
           garbage);
  assert_string_equal(c.err, want);
  capture_free(&c);
}

static void test_default_state_path(void **state) {
  fixture *f = *state;
  char xdg[256], home[256], file[600], dir[512];
  path_in(f, "xdg", xdg, sizeof xdg);
  path_in(f, "home", home, sizeof home);
  assert_int_equal(mkdir(home, 0755), 0);
  capture c;
  struct stat st;

  /* $XDG_STATE_HOME/resil/breakers.db; the directories are made 0700. */
  RUN(&c, "run", "--breaker", "svc", "--", "true");
  assert_int_equal(c.status, 0);
  capture_free(&c);
  snprintf(dir, sizeof dir, "%s/resil", xdg);
  snprintf(file, sizeof file, "%s/breakers.db", dir);
  assert_true(exists(file));
  assert_int_equal(stat(dir, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0700);
  assert_int_equal(stat(xdg, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0700);
  RUN(&c, "breaker", "show", "svc");
  assert_int_equal(c.status, 0);
  assert_field(c.out, "state file", file);
  capture_free(&c);

  /* Unset, or relative (the XDG spec says to ignore it then):
   * $HOME/.local/state/resil/breakers.db. */
  const char *xdg_values[] = {NULL, "relative/dir"};
  for (size_t i = 0; i < ARRAY_LEN(xdg_values); i++) {
    if (xdg_values[i]) setenv("XDG_STATE_HOME", xdg_values[i], 1);
    else unsetenv("XDG_STATE_HOME");
    char *old_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    setenv("HOME", home, 1);
    RUN(&c, "run", "--breaker", "other", "--", "true");
    if (old_home) setenv("HOME", old_home, 1);
    else unsetenv("HOME");
    free(old_home);
    assert_int_equal(c.status, 0);
    capture_free(&c);
  }
  setenv("XDG_STATE_HOME", xdg, 1);
  snprintf(dir, sizeof dir, "%s/.local/state/resil", home);
  snprintf(file, sizeof file, "%s/breakers.db", dir);
  assert_true(exists(file));
  assert_int_equal(stat(dir, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0700);
  assert_false(exists("relative"));
}

/* ---- the command line -------------------------------------------------------- */

static void test_usage_errors(void **state) {
  (void)state;
  static const usage_case cases[] = {
      {{"run", "--breaker", "s", "--breaker-failures", "0", "true"},
       "resil: run: --breaker-failures must be at least 1\nTry 'resil run --help'.\n"},
      {{"run", "--breaker", "s", "--breaker-failures", "x", "true"},
       "resil: run: invalid number for --breaker-failures: 'x' (use a whole number like 3)\n"
       "Try 'resil run --help'.\n"},
      {{"run", "--breaker", "s", "--breaker-failures", "-1", "true"},
       "resil: run: invalid number for --breaker-failures: '-1' (use a whole number like 3)\n"
       "Try 'resil run --help'.\n"},
      {{"run", "--breaker", "s", "--breaker-open", "0", "true"},
       "resil: run: --breaker-open must be more than 0\nTry 'resil run --help'.\n"},
      {{"run", "--breaker", "s", "--breaker-open", "soon", "true"},
       "resil: run: invalid duration for --breaker-open: 'soon' (use e.g. 250ms, 1.5s, 2m)\n"
       "Try 'resil run --help'.\n"},
      {{"run", "--breaker-failures", "3", "true"},
       "resil: run: --breaker-failures needs --breaker NAME\nTry 'resil run --help'.\n"},
      {{"run", "--state", "/tmp/x.db", "true"},
       "resil: run: --state needs --breaker NAME\nTry 'resil run --help'.\n"},
      {{"run", "--breaker", "a b", "true"},
       "resil: run: invalid breaker name for --breaker: 'a b' (use 1 to 128 letters, digits "
       "and . _ - : @ / +, not starting with -)\nTry 'resil run --help'.\n"},
      {{"run", "--breaker", "-n", "true"},
       "resil: run: invalid breaker name for --breaker: '-n' (use 1 to 128 letters, digits "
       "and . _ - : @ / +, not starting with -)\nTry 'resil run --help'.\n"},
      {{"run", "--breaker", "s"}, "resil: run: missing command to run\nTry 'resil run --help'.\n"},
      {{"breaker"},
       "resil: breaker: missing action (list, show NAME or reset NAME)\n"
       "Try 'resil breaker --help'.\n"},
      {{"breaker", "frob"},
       "resil: breaker: unknown action 'frob' (use list, show or reset)\n"
       "Try 'resil breaker --help'.\n"},
      {{"breaker", "show"},
       "resil: breaker: show needs a breaker NAME\nTry 'resil breaker --help'.\n"},
      {{"breaker", "reset", "--state", "/tmp/x.db"},
       "resil: breaker: reset needs a breaker NAME\nTry 'resil breaker --help'.\n"},
      {{"breaker", "list", "svc"},
       "resil: breaker: list takes no NAME: 'svc'\nTry 'resil breaker --help'.\n"},
      {{"breaker", "show", "a", "b"},
       "resil: breaker: too many arguments: 'b'\nTry 'resil breaker --help'.\n"},
      {{"breaker", "show", "bad name"},
       "resil: breaker: invalid breaker name: 'bad name' (use 1 to 128 letters, digits and "
       ". _ - : @ / +, not starting with -)\nTry 'resil breaker --help'.\n"},
      {{"breaker", "--bogus", "list"},
       "resil: breaker: unknown option '--bogus'\nTry 'resil breaker --help'.\n"},
      {{"breaker", "list", "--state"},
       "resil: breaker: option '--state' needs a value\nTry 'resil breaker --help'.\n"},
  };
  expect_usage_errors(cases, ARRAY_LEN(cases));
}

static void test_help(void **state) {
  (void)state;
  capture c, d;
  RUN(&c, "breaker", "--help");
  RUN(&d, "help", "breaker");
  assert_int_equal(c.status, 0);
  assert_int_equal(d.status, 0);
  assert_int_equal(strncmp(c.out, "Usage: resil breaker list", 25), 0);
  assert_non_null(strstr(c.out, "Exit status"));
  assert_string_equal(c.out, d.out);
  capture_free(&c);
  capture_free(&d);

  RUN(&c, "run", "--help");
  assert_int_equal(c.status, 0);
  assert_non_null(strstr(c.out, "--breaker NAME"));
  assert_non_null(strstr(c.out, "  75 "));
  capture_free(&c);

  RUN(&c, "--help");
  assert_int_equal(c.status, 0);
  assert_non_null(strstr(c.out, "\n  breaker "));
  capture_free(&c);
}

int main(void) {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_failures_open_the_breaker),
      T(test_success_resets_the_count),
      T(test_open_breaker_does_not_start_the_command),
      T(test_opening_ends_the_retries),
      T(test_probe_success_closes),
      T(test_failing_probe_reopens),
      T(test_concurrent_runs_share_one_breaker),
      T(test_half_open_admits_one_probe),
      T(test_final_statuses_count_neither_way),
      T(test_list_show_reset),
      T(test_unknown_breaker),
      T(test_unusable_state_file_fails_closed),
      T(test_default_state_path),
      T(test_usage_errors),
      T(test_help),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
