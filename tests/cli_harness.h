/* Running the real resil binary (RESIL_CLI_PATH) from the cmocka CLI tests
 * and capturing what it prints, one process at a time or several at once;
 * plus a temporary directory per test.
 *
 * Built into each CLI test (resil_test(... SOURCES cli_harness.c)); the test
 * target defines RESIL_CLI_PATH and RESIL_TEST_FIXTURES. */
#ifndef RESIL_CLI_HARNESS_H
#define RESIL_CLI_HARNESS_H

#include <stddef.h>
#include <sys/types.h>

#include "test_util.h"

/* A hung resil must fail the test, not hang it. */
#define HARD_LIMIT_S 20.0

typedef struct capture {
  int status;     /* exit status; 128 + N when killed by signal N; -1 if the
                     harness had to kill it */
  char *out, *err; /* NUL-terminated */
  size_t out_len, err_len;
  double elapsed; /* seconds */
} capture;

/* Optionally send resil a signal once a condition holds. */
typedef struct action {
  const char *when_file;   /* ...this file exists */
  const char *when_stderr; /* ...or resil's stderr contains this */
  int signo;
} action;

/* Monotonic seconds. */
double now_s(void);

/* Run resil with args (NULL-terminated, without argv[0]) and wait for it.
 * stdin is /dev/null; stdout and stderr are captured. */
void run_resil_argv(capture *c, const action *act, const char *const *args);

#define RUN(c, ...)                                                            \
  do {                                                                         \
    const char *const args_[] = {__VA_ARGS__, NULL};                           \
    run_resil_argv((c), NULL, args_);                                          \
  } while (0)
#define RUN_WITH(c, act, ...)                                                  \
  do {                                                                         \
    const char *const args_[] = {__VA_ARGS__, NULL};                           \
    run_resil_argv((c), (act), args_);                                         \
  } while (0)

void capture_free(capture *c);

/* ---- several at once ------------------------------------------------------- */

/* One resil process started with cli_start; cli_wait_all fills cap. */
typedef struct cli_proc {
  pid_t pid;
  int fd[2];      /* stdout and stderr pipes, -1 once closed */
  double t0;
  const action *act;
  int sent, killed;
  capture cap;
} cli_proc;

/* Start resil with args without waiting for it. act may be NULL. */
void cli_start(cli_proc *p, const action *act, const char *const *args);
/* Read all their output as it comes and reap them all. Each is killed
 * (status -1) if it runs past HARD_LIMIT_S. Then free each p[i].cap. */
void cli_wait_all(cli_proc *p, size_t n);

/* ---- a temporary directory per test ---------------------------------------- */

typedef struct fixture {
  char dir[64];
  char counter[128]; /* flaky.sh's counter file */
} fixture;

/* cmocka setup/teardown: a fresh directory under /tmp, removed afterwards
 * with everything in it. */
int fixture_setup(void **state);
int fixture_teardown(void **state);

void path_in(const fixture *f, const char *name, char *buf, size_t len);

/* The whole content of a file ("" if missing); the caller frees it. */
char *slurp(const char *path);
int count_lines(const char *s);

/* A command line that must be refused: exit 64, nothing on stdout, and
 * exactly err on stderr. args is NULL-terminated. */
typedef struct usage_case {
  const char *args[10];
  const char *err;
} usage_case;

/* Run every case with the real binary and check it. */
void expect_usage_errors(const usage_case *cases, size_t n);

#endif /* RESIL_CLI_HARNESS_H */
