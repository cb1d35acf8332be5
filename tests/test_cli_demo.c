/* `resil demo`, tested end to end: the real binary, with a short
 * configuration (3s per run, 8 clients) so the whole file takes seconds.
 *
 * Each test points TMPDIR into its own fixture directory, so the demo's
 * temporary directory (the SQLite store) is created there and the test can
 * check that nothing is left behind. What is checked is what the demo
 * promises, not exact numbers (they depend on timing): the table's rows,
 * zero duplicates for resil, naive sending more requests than resil, and a
 * well-formed chart with both series. */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_harness.h"

/* ---- helpers --------------------------------------------------------------- */

/* TMPDIR for the demo: an empty directory inside the fixture. */
static void use_tmpdir(const fixture *f, char *buf, size_t len) {
  path_in(f, "tmp", buf, len);
  assert_int_equal(mkdir(buf, 0700), 0);
  setenv("TMPDIR", buf, 1);
}

static int entries_in(const char *dir) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
  closedir(d);
  return n;
}

/* A table row: "NAME intended created duplicates requests amplif. ...". */
typedef struct row {
  unsigned long long intended, created, duplicates, requests;
} row;

static int find_row(const char *out, const char *name, row *r) {
  size_t k = strlen(name);
  for (const char *line = out; *line;) {
    const char *end = strchr(line, '\n');
    if (end == NULL) end = line + strlen(line);
    if ((size_t)(end - line) > k && strncmp(line, name, k) == 0 && line[k] == ' ')
      return sscanf(line + k, "%llu %llu %llu %llu", &r->intended, &r->created, &r->duplicates,
                    &r->requests) == 4;
    line = *end ? end + 1 : end;
  }
  return 0;
}

/* Well-formed enough to be sure no element is cut or left open: every
 * start tag is closed by its own end tag, in order, once the prolog and
 * comments are skipped. Returns NULL or what is wrong. */
static const char *xml_problem(const char *s) {
  char stack[64][32];
  int depth = 0, roots = 0;
  while ((s = strchr(s, '<')) != NULL) {
    if (strncmp(s, "<?", 2) == 0) {
      if ((s = strstr(s, "?>")) == NULL) return "unterminated <?";
      continue;
    }
    if (strncmp(s, "<!--", 4) == 0) {
      if ((s = strstr(s, "-->")) == NULL) return "unterminated comment";
      continue;
    }
    const char *gt = strchr(s, '>');
    if (gt == NULL) return "unterminated tag";
    int closing = s[1] == '/';
    const char *name = s + 1 + closing;
    size_t n = strcspn(name, " \t\n/>");
    if (n == 0 || n >= sizeof stack[0]) return "bad tag name";
    if (closing) {
      if (depth == 0 || strlen(stack[depth - 1]) != n || strncmp(stack[depth - 1], name, n) != 0)
        return "mismatched end tag";
      depth--;
    } else if (gt[-1] != '/') {
      if (depth == 0 && roots++ > 0) return "more than one root element";
      if (depth == 64) return "too deep";
      memcpy(stack[depth], name, n);
      stack[depth++][n] = '\0';
    }
    s = gt + 1;
  }
  return depth == 0 && roots == 1 ? NULL : "unclosed elements";
}

static int count_of(const char *s, const char *needle) {
  int n = 0;
  for (const char *p = s; (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
  return n;
}

/* ---- tests ------------------------------------------------------------------ */

static void test_short_demo(void **state) {
  fixture *f = *state;
  char tmp[256], svg[256];
  use_tmpdir(f, tmp, sizeof tmp);
  path_in(f, "x.svg", svg, sizeof svg);
  capture c;
  RUN(&c, "demo", "--duration", "3s", "--clients", "8", "--seed", "3", "--svg", svg);
  if (c.status != 0) print_error("stdout:\n%s\nstderr:\n%s\n", c.out, c.err);
  assert_int_equal(c.status, 0);

  assert_non_null(strstr(c.out, "intended"));
  assert_non_null(strstr(c.out, "peak req/s (outage)"));
  row naive, resil;
  assert_true(find_row(c.out, "naive", &naive));
  assert_true(find_row(c.out, "resil", &resil));
  assert_true(naive.intended > 0 && resil.intended > 0);
  assert_int_equal(resil.duplicates, 0);
  assert_int_equal(resil.created, resil.intended);
  assert_true(naive.requests > resil.requests);
  assert_non_null(strstr(c.out, "every order created exactly once"));
  assert_non_null(strstr(c.out, svg)); /* the chart's path is printed */
  /* Progress went to stderr (not a TTY here: plain lines). */
  assert_non_null(strstr(c.err, "resil: demo: "));

  char *doc = slurp(svg);
  assert_true(strncmp(doc, "<?xml", 5) == 0);
  const char *why = xml_problem(doc);
  if (why) print_error("chart: %s\n", why);
  assert_null(why);
  assert_true(count_of(doc, "<polyline") >= 4); /* two panels, two runs each */
  assert_true(count_of(doc, ">naive</text>") >= 2); /* each panel's legend */
  assert_true(count_of(doc, ">resil</text>") >= 2);
  assert_non_null(strstr(doc, ">outage</text>"));
  free(doc);

  assert_int_equal(entries_in(tmp), 0); /* the store's directory is gone */
  capture_free(&c);
}

static void test_quiet_no_chart_memory_store(void **state) {
  fixture *f = *state;
  char tmp[256], svg[256];
  use_tmpdir(f, tmp, sizeof tmp);
  path_in(f, "none.svg", svg, sizeof svg);
  capture c;
  RUN(&c, "demo", "--duration", "2s", "--clients", "4", "--store", "memory:", "--no-chart",
      "--svg", svg, "--quiet");
  assert_int_equal(c.status, 0);
  assert_string_equal(c.err, "");
  row r;
  assert_true(find_row(c.out, "resil", &r));
  assert_int_equal(r.duplicates, 0);
  assert_null(strstr(c.out, "chart:"));
  assert_int_equal(access(svg, F_OK), -1);
  assert_int_equal(entries_in(tmp), 0); /* --store given: no directory at all */
  capture_free(&c);
}

static void test_interrupted_cleans_up(void **state) {
  fixture *f = *state;
  char tmp[256], svg[256];
  use_tmpdir(f, tmp, sizeof tmp);
  path_in(f, "x.svg", svg, sizeof svg);
  action act = {NULL, "orders placed", SIGINT}; /* the first progress line */
  capture c;
  RUN_WITH(&c, &act, "demo", "--duration", "6s", "--clients", "4", "--svg", svg);
  assert_int_equal(c.status, 130);
  assert_true(c.elapsed < 10);
  assert_non_null(strstr(c.err, "interrupted"));
  assert_int_equal(access(svg, F_OK), -1);
  assert_int_equal(entries_in(tmp), 0);
  capture_free(&c);
}

static void test_help(void **state) {
  (void)state;
  capture c;
  RUN(&c, "demo", "--help");
  assert_int_equal(c.status, 0);
  assert_non_null(strstr(c.out, "Usage: resil demo"));
  assert_non_null(strstr(c.out, "--no-chart"));
  assert_non_null(strstr(c.out, "--store URL"));
  capture_free(&c);
  RUN(&c, "help", "demo");
  assert_int_equal(c.status, 0);
  assert_non_null(strstr(c.out, "Usage: resil demo"));
  capture_free(&c);
  RUN(&c, "--help");
  assert_non_null(strstr(c.out, "  demo "));
  capture_free(&c);
}

static void test_usage_errors(void **state) {
  (void)state;
  static const char *const bad[][3] = {
      {"--clients", "0", NULL},      {"--clients", "1001", NULL}, {"--clients", "x", NULL},
      {"--duration", "500ms", NULL}, {"--duration", "11m", NULL}, {"--duration", "soon", NULL},
      {"--seed", "-1", NULL},        {"--svg", "", NULL},         {"--store", "", NULL},
      {"--store", "nosuch:x", NULL}, {"--bogus", NULL, NULL},     {"extra", NULL, NULL},
  };
  for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
    capture c;
    const char *args[] = {"demo", bad[i][0], bad[i][1], NULL};
    run_resil_argv(&c, NULL, args);
    if (c.status != 64)
      print_error("demo %s %s: status %d\n", bad[i][0], bad[i][1] ? bad[i][1] : "", c.status);
    assert_int_equal(c.status, 64);
    assert_non_null(strstr(c.err, "resil: demo: "));
    assert_string_equal(c.out, "");
    capture_free(&c);
  }
}

static void test_unwritable_chart(void **state) {
  fixture *f = *state;
  char tmp[256];
  use_tmpdir(f, tmp, sizeof tmp);
  capture c;
  RUN(&c, "demo", "--duration", "1s", "--clients", "2", "--quiet", "--svg",
      "/nonexistent-dir/x.svg");
  assert_int_equal(c.status, 74);
  assert_non_null(strstr(c.err, "/nonexistent-dir/x.svg"));
  assert_int_equal(entries_in(tmp), 0);
  capture_free(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_short_demo, fixture_setup, fixture_teardown),
      cmocka_unit_test_setup_teardown(test_quiet_no_chart_memory_store, fixture_setup,
                                      fixture_teardown),
      cmocka_unit_test_setup_teardown(test_interrupted_cleans_up, fixture_setup,
                                      fixture_teardown),
      cmocka_unit_test_setup_teardown(test_unwritable_chart, fixture_setup, fixture_teardown),
      cmocka_unit_test(test_help),
      cmocka_unit_test(test_usage_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
