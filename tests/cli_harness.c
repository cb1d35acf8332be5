/* See cli_harness.h. */
#define _POSIX_C_SOURCE 200809L

#include "cli_harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef RESIL_CLI_PATH
#error "RESIL_CLI_PATH must name the resil binary under test"
#endif

double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void append(char **buf, size_t *len, const char *data, size_t n) {
  char *p = realloc(*buf, *len + n + 1);
  assert_non_null(p);
  memcpy(p + *len, data, n);
  *len += n;
  p[*len] = '\0';
  *buf = p;
}

static int triggered(const action *a, const capture *c) {
  if (a->when_file && access(a->when_file, F_OK) == 0) return 1;
  if (a->when_stderr && c->err && strstr(c->err, a->when_stderr)) return 1;
  return 0;
}

void cli_start(cli_proc *p, const action *act, const char *const *args) {
  const char *argv[64];
  size_t n = 0;
  argv[n++] = RESIL_CLI_PATH;
  for (; *args; args++) {
    assert_true(n < 63);
    argv[n++] = *args;
  }
  argv[n] = NULL;

  memset(p, 0, sizeof *p);
  append(&p->cap.out, &p->cap.out_len, "", 0);
  append(&p->cap.err, &p->cap.err_len, "", 0);
  p->act = act;
  p->sent = act == NULL;

  int po[2], pe[2];
  assert_int_equal(pipe(po), 0);
  assert_int_equal(pipe(pe), 0);
  /* Processes started side by side must not inherit each other's pipes. */
  for (int i = 0; i < 2; i++) {
    fcntl(po[i], F_SETFD, FD_CLOEXEC);
    fcntl(pe[i], F_SETFD, FD_CLOEXEC);
  }
  p->t0 = now_s();
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    /* Whatever the test runner ignores, resil must see signals normally. */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    dup2(po[1], 1); /* dup2 clears FD_CLOEXEC on 1 and 2 */
    dup2(pe[1], 2);
    execv(RESIL_CLI_PATH, (char *const *)argv);
    _exit(99);
  }
  close(po[1]);
  close(pe[1]);
  p->pid = pid;
  p->fd[0] = po[0];
  p->fd[1] = pe[0];
}

static void close_fds(cli_proc *p) {
  for (int i = 0; i < 2; i++) {
    if (p->fd[i] >= 0) close(p->fd[i]);
    p->fd[i] = -1;
  }
}

void cli_wait_all(cli_proc *p, size_t n) {
  struct pollfd *fds = calloc(2 * n, sizeof *fds);
  assert_non_null(fds);
  for (;;) {
    /* Stop the ones past the hard limit; find the nearest limit. */
    double now = now_s(), left = HARD_LIMIT_S;
    int open_fds = 0, waiting_trigger = 0;
    for (size_t i = 0; i < n; i++) {
      if (p[i].fd[0] < 0 && p[i].fd[1] < 0) continue;
      double l = p[i].t0 + HARD_LIMIT_S - now;
      if (l <= 0) {
        kill(p[i].pid, SIGKILL);
        p[i].killed = 1;
        close_fds(&p[i]);
        continue;
      }
      if (l < left) left = l;
      if (!p[i].sent) waiting_trigger = 1;
      open_fds++;
    }
    if (open_fds == 0) break;

    for (size_t i = 0; i < n; i++) {
      for (int k = 0; k < 2; k++) {
        fds[2 * i + (size_t)k].fd = p[i].fd[k];
        fds[2 * i + (size_t)k].events = POLLIN;
        fds[2 * i + (size_t)k].revents = 0;
      }
    }
    int ms = waiting_trigger ? 5 : (int)(left * 1000) + 1; /* poll triggers often */
    if (poll(fds, (nfds_t)(2 * n), ms) < 0 && errno != EINTR) break;
    for (size_t i = 0; i < n; i++) {
      for (int k = 0; k < 2; k++) {
        struct pollfd *f = &fds[2 * i + (size_t)k];
        if (f->fd < 0 || !(f->revents & (POLLIN | POLLHUP | POLLERR))) continue;
        char buf[4096];
        ssize_t got = read(f->fd, buf, sizeof buf);
        if (got > 0) {
          if (k == 0) append(&p[i].cap.out, &p[i].cap.out_len, buf, (size_t)got);
          else append(&p[i].cap.err, &p[i].cap.err_len, buf, (size_t)got);
        } else if (got == 0 || errno != EINTR) {
          close(p[i].fd[k]);
          p[i].fd[k] = -1;
        }
      }
      if (!p[i].sent && triggered(p[i].act, &p[i].cap)) {
        kill(p[i].pid, p[i].act->signo);
        p[i].sent = 1;
      }
    }
  }
  free(fds);

  for (size_t i = 0; i < n; i++) {
    close_fds(&p[i]);
    int ws;
    while (waitpid(p[i].pid, &ws, 0) < 0 && errno == EINTR) {
    }
    p[i].cap.elapsed = now_s() - p[i].t0;
    if (p[i].killed) p[i].cap.status = -1;
    else if (WIFSIGNALED(ws)) p[i].cap.status = 128 + WTERMSIG(ws);
    else p[i].cap.status = WEXITSTATUS(ws);
  }
}

void run_resil_argv(capture *c, const action *act, const char *const *args) {
  cli_proc p;
  cli_start(&p, act, args);
  cli_wait_all(&p, 1);
  *c = p.cap;
}

void capture_free(capture *c) {
  free(c->out);
  free(c->err);
}

/* ---- a temporary directory per test ---------------------------------------- */

int fixture_setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  if (f == NULL) return -1;
  snprintf(f->dir, sizeof f->dir, "/tmp/resil-cli-test-XXXXXX");
  if (mkdtemp(f->dir) == NULL) {
    free(f);
    return -1;
  }
  snprintf(f->counter, sizeof f->counter, "%s/counter", f->dir);
  *state = f;
  return 0;
}

/* rm -r, for what a test leaves behind (state directories included). */
static void remove_tree(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    DIR *d = opendir(path);
    if (d) {
      struct dirent *e;
      while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char sub[1024];
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        remove_tree(sub);
      }
      closedir(d);
    }
    rmdir(path);
  } else {
    unlink(path);
  }
}

int fixture_teardown(void **state) {
  fixture *f = *state;
  remove_tree(f->dir);
  free(f);
  return 0;
}

void path_in(const fixture *f, const char *name, char *buf, size_t len) {
  snprintf(buf, len, "%s/%s", f->dir, name);
}

char *slurp(const char *path) {
  char *s = NULL;
  size_t len = 0;
  append(&s, &len, "", 0);
  FILE *fp = fopen(path, "r");
  if (fp == NULL) return s;
  char buf[512];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, fp)) > 0) append(&s, &len, buf, n);
  fclose(fp);
  return s;
}

int count_lines(const char *s) {
  int n = 0;
  for (; *s; s++) n += *s == '\n';
  return n;
}

void expect_usage_errors(const usage_case *cases, size_t n) {
  for (size_t i = 0; i < n; i++) {
    capture c;
    run_resil_argv(&c, NULL, cases[i].args);
    if (c.status != 64 || strcmp(c.err, cases[i].err) != 0)
      print_error("case %zu (%s %s): status %d, stderr:\n%s", i, cases[i].args[0],
                  cases[i].args[1] ? cases[i].args[1] : "", c.status, c.err);
    assert_int_equal(c.status, 64);
    assert_string_equal(c.err, cases[i].err);
    assert_string_equal(c.out, "");
    capture_free(&c);
  }
}
