/* `resil run`, tested end to end: each test runs the real binary
 * (RESIL_CLI_PATH) and checks its exit status, its own stderr lines and the
 * command's stdout. Delays are tiny (--base 10ms), so the file runs in a few
 * seconds; timing checks only bound things from above, with generous slack,
 * to prove resil did not wait (they are not speed tests). */
#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_harness.h"
#include "resil/version.h"

#ifndef RESIL_TEST_FIXTURES
#error "RESIL_TEST_FIXTURES must name tests/fixtures"
#endif

#define FLAKY RESIL_TEST_FIXTURES "/flaky.sh"

/* ---- retrying ------------------------------------------------------------- */

static void test_success_after_failures(void **state) {
  fixture *f = *state;
  capture c;
  RUN(&c, "run", "--base", "10ms", "--jitter", "none", "--", "sh", FLAKY, f->counter, "2",
      "1");
  assert_int_equal(c.status, 0);
  assert_string_equal(c.err, "resil: attempt 1/5 failed (exit 1); retrying in 10ms\n"
                             "resil: attempt 2/5 failed (exit 1); retrying in 20ms\n");
  /* The command's stdout passes through untouched. */
  assert_string_equal(c.out, "attempt 1: failing with 1\n"
                             "attempt 2: failing with 1\n"
                             "attempt 3: ok\n");
  capture_free(&c);
}

static void test_attempts_exhausted(void **state) {
  fixture *f = *state;
  capture c;
  RUN(&c, "run", "-n", "3", "--base", "10ms", "--jitter", "none", "sh", FLAKY, f->counter,
      "10", "3");
  assert_int_equal(c.status, 3); /* the last attempt's status */
  assert_string_equal(c.err, "resil: attempt 1/3 failed (exit 3); retrying in 10ms\n"
                             "resil: attempt 2/3 failed (exit 3); retrying in 20ms\n"
                             "resil: giving up after 3 attempts (exit 3)\n");
  assert_int_equal(count_lines(c.out), 3);
  capture_free(&c);
}

static void test_unlimited_attempts_label(void **state) {
  fixture *f = *state;
  capture c;
  RUN(&c, "run", "--attempts=0", "--max-time=10s", "--base=10ms", "--jitter=none", "--", "sh",
      FLAKY, f->counter, "1");
  assert_int_equal(c.status, 0);
  assert_string_equal(c.err, "resil: attempt 1 failed (exit 1); retrying in 10ms\n");
  capture_free(&c);
}

static void test_stop_on_is_final(void **state) {
  fixture *f = *state;
  capture c;
  RUN(&c, "run", "--stop-on", "2,9", "--base", "10ms", "--", "sh", FLAKY, f->counter, "10",
      "2");
  assert_int_equal(c.status, 2);
  assert_string_equal(c.err, "resil: exit 2 is final (--stop-on)\n");
  assert_string_equal(c.out, "attempt 1: failing with 2\n");
  capture_free(&c);
}

static void test_stop_on_wins_over_retry_on(void **state) {
  fixture *f = *state;
  capture c;
  RUN(&c, "run", "--retry-on", "1-9", "--stop-on", "4", "--base", "10ms", "--", "sh", FLAKY,
      f->counter, "10", "4");
  assert_int_equal(c.status, 4);
  assert_string_equal(c.err, "resil: exit 4 is final (--stop-on)\n");
  capture_free(&c);
}

static void test_retry_on_restricts(void **state) {
  fixture *f = *state;
  capture c;
  /* 3 is not listed: final at once. */
  RUN(&c, "run", "--retry-on", "1,75", "--base", "10ms", "--", "sh", FLAKY, f->counter, "10",
      "3");
  assert_int_equal(c.status, 3);
  assert_string_equal(c.err, "resil: exit 3 is final (not in --retry-on)\n");
  capture_free(&c);

  /* 75 is listed: retried until it succeeds. */
  unlink(f->counter);
  RUN(&c, "run", "--retry-on", "1,75", "--base", "10ms", "--jitter", "none", "--", "sh", FLAKY,
      f->counter, "1", "75");
  assert_int_equal(c.status, 0);
  assert_string_equal(c.err, "resil: attempt 1/5 failed (exit 75); retrying in 10ms\n");
  capture_free(&c);
}

static void test_signal_death(void **state) {
  (void)state;
  capture c;
  RUN(&c, "run", "-n", "2", "--base", "10ms", "--jitter", "none", "--", "sh", "-c",
      "kill -KILL $$");
  assert_int_equal(c.status, 128 + SIGKILL);
  assert_string_equal(c.err, "resil: attempt 1/2 failed (killed by SIGKILL); retrying in 10ms\n"
                             "resil: giving up after 2 attempts (killed by SIGKILL)\n");
  capture_free(&c);
}

/* ---- commands that cannot run ---------------------------------------------- */

static void test_not_found_is_127_and_final(void **state) {
  (void)state;
  capture c;
  RUN(&c, "run", "--base", "10ms", "--", "resil-test-no-such-command");
  assert_int_equal(c.status, 127);
  assert_string_equal(
      c.err, "resil: cannot run 'resil-test-no-such-command': No such file or directory\n");
  capture_free(&c);
}

static void test_not_executable_is_126_and_final(void **state) {
  fixture *f = *state;
  char path[256];
  path_in(f, "not-executable.sh", path, sizeof path);
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  fputs("#!/bin/sh\nexit 0\n", fp);
  fclose(fp);
  assert_int_equal(chmod(path, 0644), 0);

  capture c;
  RUN(&c, "run", "--base", "10ms", "--", path);
  assert_int_equal(c.status, 126);
  char want[512];
  snprintf(want, sizeof want, "resil: cannot run '%s': Permission denied\n", path);
  assert_string_equal(c.err, want);
  capture_free(&c);
}

/* ---- usage errors ---------------------------------------------------------- */

static void test_usage_errors(void **state) {
  (void)state;
  static const usage_case cases[] = {
      {{"run", "--bogus", "true"},
       "resil: run: unknown option '--bogus'\nTry 'resil run --help'.\n"},
      {{"run", "-x", "true"}, "resil: run: unknown option '-x'\nTry 'resil run --help'.\n"},
      {{"run", "--base", "1x", "true"},
       "resil: run: invalid duration for --base: '1x' (use e.g. 250ms, 1.5s, 2m)\n"
       "Try 'resil run --help'.\n"},
      {{"run", "--max-time=soon", "true"},
       "resil: run: invalid duration for --max-time: 'soon' (use e.g. 250ms, 1.5s, 2m)\n"
       "Try 'resil run --help'.\n"},
      {{"run", "--retry-on", "1,,2", "true"},
       "resil: run: invalid exit codes for --retry-on: '1,,2' (use e.g. 1,75 or 1-9,!4)\n"
       "Try 'resil run --help'.\n"},
      {{"run", "--stop-on", "5000", "true"},
       "resil: run: exit code out of range in --stop-on: '5000' (codes go up to 1023)\n"
       "Try 'resil run --help'.\n"},
      {{"run", "-n", "3"}, "resil: run: missing command to run\nTry 'resil run --help'.\n"},
      {{"run", "--"}, "resil: run: missing command to run\nTry 'resil run --help'.\n"},
      {{"run", "-n", "x", "true"},
       "resil: run: invalid number for --attempts: 'x' (use a whole number like 3)\n"
       "Try 'resil run --help'.\n"},
      {{"run", "--attempts", "0", "true"},
       "resil: run: --attempts 0 (no limit) needs --max-time\nTry 'resil run --help'.\n"},
      {{"run", "--jitter", "wild", "true"},
       "resil: run: invalid value for --jitter: 'wild' (use full, equal, none, decorrelated, "
       "additive or proportional)\nTry 'resil run --help'.\n"},
      {{"run", "--backoff", "random", "true"},
       "resil: run: invalid value for --backoff: 'random' (use exponential, constant, linear or "
       "decorrelated)\nTry 'resil run --help'.\n"},
      {{"run", "--base"}, "resil: run: option '--base' needs a value\nTry 'resil run --help'.\n"},
      {{"run", "--quiet=yes", "true"},
       "resil: run: option '--quiet' takes no value\nTry 'resil run --help'.\n"},
      {{"run", "--cap", "1s", "--base", "2s", "true"},
       "resil: run: --cap 1s is less than --base 2s\nTry 'resil run --help'.\n"},
      {{"run", "--backoff", "decorrelated", "--jitter", "full", "true"},
       "resil: run: --backoff decorrelated sets its own jitter; drop --jitter full\n"
       "Try 'resil run --help'.\n"},
      /* --quiet does not silence usage errors. */
      {{"run", "-q", "--base", "-1s", "true"},
       "resil: run: invalid duration for --base: '-1s' (use e.g. 250ms, 1.5s, 2m)\n"
       "Try 'resil run --help'.\n"},
      {{"frobnicate"}, "resil: unknown command 'frobnicate'\nTry 'resil --help'.\n"},
      {{"--frobnicate"}, "resil: unknown option '--frobnicate'\nTry 'resil --help'.\n"},
  };
  expect_usage_errors(cases, ARRAY_LEN(cases));
}

/* ---- timeouts and deadlines ------------------------------------------------ */

static void test_attempt_timeout_sends_sigterm(void **state) {
  fixture *f = *state;
  char marker[256];
  path_in(f, "term", marker, sizeof marker);
  capture c;
  /* The trap proves SIGTERM arrived; the default 5s grace never elapses. */
  RUN(&c, "run", "-n", "1", "--attempt-timeout", "200ms", "--", "sh", "-c",
      "trap 'echo term > \"$1\"; kill $! 2>/dev/null; exit 0' TERM; "
      "sleep 10 >/dev/null 2>&1 & wait",
      "sh", marker);
  assert_int_equal(c.status, 124); /* even though the trap exited 0 */
  assert_string_equal(c.err, "resil: giving up after 1 attempt (timed out after 200ms)\n");
  char *m = slurp(marker);
  assert_string_equal(m, "term\n");
  free(m);
  assert_true(c.elapsed < 4.0);
  capture_free(&c);
}

static void test_attempt_timeout_sigkill_after_grace(void **state) {
  (void)state;
  capture c;
  RUN(&c, "run", "-n", "2", "--base", "10ms", "--jitter", "none", "--attempt-timeout", "100ms",
      "--kill-after", "200ms", "--", "sh", "-c", "trap '' TERM; exec sleep 10");
  assert_int_equal(c.status, 124);
  assert_string_equal(
      c.err,
      "resil: attempt 1/2 failed (timed out after 100ms, then killed by SIGKILL); retrying in "
      "10ms\n"
      "resil: giving up after 2 attempts (timed out after 100ms, then killed by SIGKILL)\n");
  assert_true(c.elapsed >= 0.5); /* 2 x (100ms + 200ms grace) */
  assert_true(c.elapsed < 8.0);  /* far below sleep 10 */
  capture_free(&c);
}

static void test_max_time_never_sleeps_past_deadline(void **state) {
  (void)state;
  capture c;
  /* Attempts at about 0, 0.4s and 0.8s; the next would start at 1.2s. */
  RUN(&c, "run", "-n", "0", "--max-time", "1s", "--backoff", "constant", "--base", "400ms",
      "--jitter", "none", "--", "sh", "-c", "exit 1");
  assert_int_equal(c.status, 1);
  const char *tail =
      "resil: giving up: the next retry (in 400ms) would pass --max-time 1s (exit 1)\n";
  assert_true(c.err_len >= strlen(tail));
  assert_string_equal(c.err + c.err_len - strlen(tail), tail);
  assert_true(c.elapsed < 3.0); /* a hang guard; the message proves the decision */
  capture_free(&c);

  /* A first delay longer than the whole budget: give up at once. */
  RUN(&c, "run", "--max-time", "1s", "--base", "5s", "--jitter", "none", "--", "sh", "-c",
      "exit 1");
  assert_int_equal(c.status, 1);
  assert_string_equal(
      c.err, "resil: giving up: the next retry (in 5s) would pass --max-time 1s (exit 1)\n");
  assert_true(c.elapsed < 4.0); /* the 5 s delay was not waited */
  capture_free(&c);
}

static void test_max_time_stops_running_attempt(void **state) {
  (void)state;
  capture c;
  RUN(&c, "run", "--max-time", "300ms", "--", "sleep", "10");
  assert_int_equal(c.status, 124);
  assert_string_equal(c.err, "resil: giving up: --max-time 300ms reached (timed out)\n");
  assert_true(c.elapsed < 4.0);
  capture_free(&c);
}

/* ---- signals --------------------------------------------------------------- */

static void test_sigterm_is_forwarded_and_stops_retries(void **state) {
  fixture *f = *state;
  char ready[256], marker[256];
  path_in(f, "ready", ready, sizeof ready);
  path_in(f, "got-term", marker, sizeof marker);
  action act = {ready, NULL, SIGTERM};
  capture c;
  RUN_WITH(&c, &act, "run", "--base", "10ms", "--", "sh", "-c",
           "trap 'echo got > \"$2\"; exit 3' TERM; echo ready >> \"$1\"; "
           "while :; do sleep 0.05; done",
           "sh", ready, marker);
  assert_int_equal(c.status, 3); /* the command's own status */
  assert_string_equal(c.err, "resil: interrupted; not retrying (exit 3)\n");
  char *m = slurp(marker);
  assert_string_equal(m, "got\n");
  free(m);
  char *r = slurp(ready);
  assert_int_equal(count_lines(r), 1); /* no second attempt */
  free(r);
  capture_free(&c);
}

static void test_sigint_during_backoff_ends_at_once(void **state) {
  (void)state;
  action act = {NULL, "retrying in", SIGINT};
  capture c;
  RUN_WITH(&c, &act, "run", "--base", "10s", "--jitter", "none", "--", "sh", "-c", "exit 1");
  assert_int_equal(c.status, 130);
  assert_string_equal(c.err, "resil: attempt 1/5 failed (exit 1); retrying in 10s\n"
                             "resil: interrupted; not retrying\n");
  assert_true(c.elapsed < 5.0);
  capture_free(&c);
}

/* ---- output control -------------------------------------------------------- */

static void test_quiet_prints_nothing_of_its_own(void **state) {
  fixture *f = *state;
  capture c;
  RUN(&c, "run", "--quiet", "-n", "3", "--base", "10ms", "--", "sh", FLAKY, f->counter, "10");
  assert_int_equal(c.status, 1);
  assert_string_equal(c.err, "");
  assert_int_equal(count_lines(c.out), 3); /* the command still speaks */
  capture_free(&c);

  RUN(&c, "run", "-q", "--", "resil-test-no-such-command");
  assert_int_equal(c.status, 127);
  assert_string_equal(c.err, "");
  capture_free(&c);
}

static void test_verbose_reports_each_attempt(void **state) {
  fixture *f = *state;
  capture c;
  RUN(&c, "run", "-v", "-n", "2", "--base", "10ms", "--jitter", "none", "--", "sh", FLAKY,
      f->counter, "1");
  assert_int_equal(c.status, 0);
  const char *head = "resil: policy: up to 2 attempts; exponential backoff from 10ms to 30s, no "
                     "jitter\n"
                     "resil: starting attempt 1/2\n"
                     "resil: attempt 1/2 failed (exit 1); retrying in 10ms\n"
                     "resil: starting attempt 2/2\n"
                     "resil: attempt 2/2 succeeded after ";
  if (strncmp(c.err, head, strlen(head)) != 0) print_error("stderr:\n%s", c.err);
  assert_int_equal(strncmp(c.err, head, strlen(head)), 0);
  assert_int_equal(count_lines(c.err), 5);
  capture_free(&c);
}

static void test_seed_makes_delays_reproducible(void **state) {
  (void)state;
  capture a, b;
  RUN(&a, "run", "--seed", "42", "-n", "4", "--base", "10ms", "--", "sh", "-c", "exit 1");
  RUN(&b, "run", "--seed=42", "-n", "4", "--base", "10ms", "--", "sh", "-c", "exit 1");
  assert_int_equal(a.status, 1);
  assert_int_equal(count_lines(a.err), 4);
  assert_non_null(strstr(a.err, "retrying in"));
  assert_string_equal(a.err, b.err);
  capture_free(&a);
  capture_free(&b);
}

/* ---- command line forms ---------------------------------------------------- */

static void test_command_options_are_not_resils(void **state) {
  (void)state;
  capture c;
  /* No "--": parsing stops at "sh", so "-n" and "--quiet" reach the command. */
  RUN(&c, "run", "-n2", "--base=10ms", "sh", "-c", "printf '%s\\n' \"$*\"", "sh", "-n",
      "--quiet");
  assert_int_equal(c.status, 0);
  assert_string_equal(c.out, "-n --quiet\n");
  assert_string_equal(c.err, "");
  capture_free(&c);

  /* Bundled short flags. */
  RUN(&c, "run", "-qv", "-qn1", "--", "sh", "-c", "exit 1", "sh");
  assert_int_equal(c.status, 1);
  assert_string_equal(c.err, "");
  capture_free(&c);
}

static void test_help_and_version(void **state) {
  (void)state;
  capture c, d;
  RUN(&c, "--help");
  assert_int_equal(c.status, 0);
  assert_non_null(strstr(c.out, "run"));
  capture_free(&c);

  RUN(&c, "--version");
  assert_int_equal(c.status, 0);
  assert_string_equal(c.out, "resil " RESIL_VERSION_STRING "\n");
  capture_free(&c);

  RUN(&c, "run", "--help");
  RUN(&d, "help", "run");
  assert_int_equal(c.status, 0);
  assert_int_equal(d.status, 0);
  assert_non_null(strstr(c.out, "--attempt-timeout"));
  assert_non_null(strstr(c.out, "Exit status"));
  assert_string_equal(c.out, d.out);
  capture_free(&c);
  capture_free(&d);

  const char *const none[] = {NULL};
  run_resil_argv(&c, NULL, none);
  assert_int_equal(c.status, 64);
  assert_non_null(strstr(c.err, "Usage: resil"));
  capture_free(&c);
}

/* ---- builds without SQLite ------------------------------------------------- */

#ifndef RESIL_CLI_HAVE_SQLITE
#define RESIL_CLI_HAVE_SQLITE 1
#endif

/* --breaker needs SQLite; a resil built without it says so instead of
 * running the command unprotected. */
static void test_breaker_without_sqlite(void **state) {
  fixture *f = *state;
  if (RESIL_CLI_HAVE_SQLITE) skip(); /* test_cli_breaker covers --breaker */
  char marker[256];
  path_in(f, "ran", marker, sizeof marker);
  capture c;
  RUN(&c, "run", "--breaker", "svc", "--", "sh", "-c", "echo x > \"$1\"", "sh", marker);
  assert_int_equal(c.status, 69);
  assert_string_equal(c.err,
                      "resil: this resil was built without SQLite; --breaker is unavailable\n");
  char *m = slurp(marker);
  assert_string_equal(m, "");
  free(m);
  capture_free(&c);

  RUN(&c, "breaker", "list");
  assert_int_equal(c.status, 69);
  assert_string_equal(
      c.err, "resil: this resil was built without SQLite; 'resil breaker' is unavailable\n");
  capture_free(&c);
}

int main(void) {
#define T(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)
  const struct CMUnitTest tests[] = {
      T(test_success_after_failures),
      T(test_attempts_exhausted),
      T(test_unlimited_attempts_label),
      T(test_stop_on_is_final),
      T(test_stop_on_wins_over_retry_on),
      T(test_retry_on_restricts),
      T(test_signal_death),
      T(test_not_found_is_127_and_final),
      T(test_not_executable_is_126_and_final),
      T(test_usage_errors),
      T(test_attempt_timeout_sends_sigterm),
      T(test_attempt_timeout_sigkill_after_grace),
      T(test_max_time_never_sleeps_past_deadline),
      T(test_max_time_stops_running_attempt),
      T(test_sigterm_is_forwarded_and_stops_retries),
      T(test_sigint_during_backoff_ends_at_once),
      T(test_quiet_prints_nothing_of_its_own),
      T(test_verbose_reports_each_attempt),
      T(test_seed_makes_delays_reproducible),
      T(test_command_options_are_not_resils),
      T(test_help_and_version),
      T(test_breaker_without_sqlite),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
