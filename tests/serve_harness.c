/* See serve_harness.h. */
#define _POSIX_C_SOURCE 200809L

#include "serve_harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* ---- a raw HTTP/1.1 client ------------------------------------------------------ */

/* Connect and send one request (Connection: close). Returns the socket, or
 * -1. headers: extra "Name: value\r\n" lines, or NULL. */
int http_send(uint16_t port, const char *method, const char *target, const char *headers,
              const char *body) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct timeval tv = {30, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  char req[8192];
  size_t blen = body ? strlen(body) : 0;
  int n = snprintf(req, sizeof req,
                   "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s"
                   "Content-Length: %zu\r\n\r\n%s",
                   method, target, headers ? headers : "", blen, body ? body : "");
  if (n < 0 || (size_t)n >= sizeof req ||
      connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  for (size_t off = 0; off < (size_t)n;) {
    ssize_t w = send(fd, req + off, (size_t)n - off, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      close(fd);
      return -1;
    }
    off += (size_t)w;
  }
  return fd;
}

/* Read until the server closes (or resets), close fd and parse. */
void http_recv(int fd, resp *r) {
  memset(r, 0, sizeof *r);
  for (;;) {
    if (r->len == sizeof r->raw - 1) break;
    ssize_t n = recv(fd, r->raw + r->len, sizeof r->raw - 1 - r->len, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    r->len += (size_t)n;
  }
  r->raw[r->len] = '\0';
  close(fd);
  if (r->len >= 12 && strncmp(r->raw, "HTTP/1.", 7) == 0) r->status = atoi(r->raw + 9);
  char *end = strstr(r->raw, "\r\n\r\n");
  r->body = end ? end + 4 : "";
}

/* One request; r->status is -1 when it could not even be sent. */
void http(uint16_t port, const char *method, const char *target, const char *headers,
          const char *body, resp *r) {
  int fd = http_send(port, method, target, headers, body);
  if (fd < 0) {
    memset(r, 0, sizeof *r);
    r->status = -1;
    r->body = "";
    return;
  }
  http_recv(fd, r);
}

/* The value of header name, copied into buf; NULL when absent. */
const char *header(const resp *r, const char *name, char *buf, size_t len) {
  const char *end = strstr(r->raw, "\r\n\r\n");
  const char *line = strstr(r->raw, "\r\n");
  size_t nl = strlen(name);
  if (end == NULL) return NULL;
  for (line += 2; line < end; line = strstr(line, "\r\n") + 2) {
    if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
      const char *v = line + nl + 1;
      while (*v == ' ') v++;
      size_t vl = (size_t)(strstr(v, "\r\n") - v);
      if (vl >= len) vl = len - 1;
      memcpy(buf, v, vl);
      buf[vl] = '\0';
      return buf;
    }
  }
  return NULL;
}

int replayed(const resp *r) {
  char v[16];
  return header(r, "Idempotent-Replayed", v, sizeof v) && strcmp(v, "true") == 0;
}

/* ---- assertions on answers ------------------------------------------------------ */

void expect_status(const resp *r, int status) {
  if (r->status != status) print_error("expected %d, got:\n%s\n", status, r->raw);
  assert_int_equal(r->status, status);
}

/* A fresh 201: the order as JSON, not replayed. */
void expect_created(const resp *r, long id, const char *key) {
  char v[64], want[128];
  expect_status(r, 201);
  assert_false(replayed(r));
  assert_non_null(header(r, "Content-Type", v, sizeof v));
  assert_string_equal(v, "application/json");
  snprintf(want, sizeof want, "/orders/%ld", id);
  assert_non_null(header(r, "Location", v, sizeof v));
  assert_string_equal(v, want);
  snprintf(want, sizeof want, "{\"id\":%ld,", id);
  assert_true(strncmp(r->body, want, strlen(want)) == 0);
  if (key) snprintf(want, sizeof want, "\"key\":\"%s\"", key);
  else snprintf(want, sizeof want, "\"key\":null");
  assert_non_null(strstr(r->body, want));
}

/* The replay of `first`: same status and body, the same Location, and
 * Idempotent-Replayed: true. */
void expect_replay_of(const resp *r, const resp *first) {
  char a[64], b[64];
  expect_status(r, first->status);
  assert_true(replayed(r));
  assert_string_equal(r->body, first->body);
  assert_non_null(header(r, "Location", a, sizeof a));
  assert_non_null(header(first, "Location", b, sizeof b));
  assert_string_equal(a, b);
}

/* A problem+json rejection of this type. */
void expect_problem(const resp *r, int status, const char *type) {
  char v[64], want[160];
  expect_status(r, status);
  assert_non_null(header(r, "Content-Type", v, sizeof v));
  assert_string_equal(v, "application/problem+json");
  snprintf(want, sizeof want, "\"type\":\"%s\"", type);
  if (strstr(r->body, want) == NULL) fail_msg("no %s in %s", want, r->body);
}

/* ---- server processes --------------------------------------------------------------- */

/* Start `resil serve --idempotent ARGS --listen 127.0.0.1:0` and wait for
 * its "listening on http://127.0.0.1:PORT" line. */
void server_start_argv(server *s, const char *const *extra) {
  const char *args[40];
  size_t n = 0;
  args[n++] = "serve";
  args[n++] = "--idempotent";
  for (; *extra; extra++) {
    assert_true(n < 36);
    args[n++] = *extra;
  }
  args[n++] = "--listen";
  args[n++] = "127.0.0.1:0";
  args[n] = NULL;
  cli_start(&s->p, NULL, args);

  char line[256];
  size_t len = 0;
  double deadline = now_s() + HARD_LIMIT_S;
  while (memchr(line, '\n', len) == NULL) {
    struct pollfd pfd = {s->p.fd[0], POLLIN, 0};
    int left = (int)((deadline - now_s()) * 1000);
    if (left <= 0 || poll(&pfd, 1, left) <= 0) {
      kill(s->p.pid, SIGKILL);
      cli_wait_all(&s->p, 1);
      fail_msg("resil serve did not start in time:\n%s", s->p.cap.err);
    }
    ssize_t got = read(s->p.fd[0], line + len, sizeof line - 1 - len);
    if (got <= 0) {
      kill(s->p.pid, SIGKILL);
      cli_wait_all(&s->p, 1);
      fail_msg("resil serve exited (%d) before listening:\n%s", s->p.cap.status, s->p.cap.err);
    }
    len += (size_t)got;
    assert_true(len < sizeof line - 1);
  }
  line[len] = '\0';
  const char *prefix = "listening on http://127.0.0.1:";
  assert_true(strncmp(line, prefix, strlen(prefix)) == 0);
  s->port = (uint16_t)atoi(line + strlen(prefix));
  assert_true(s->port > 0);
}

/* SIGTERM: it must stop cleanly (exit 0, nothing on stderr). */
void server_stop(server *s) {
  kill(s->p.pid, SIGTERM);
  cli_wait_all(&s->p, 1);
  if (s->p.cap.status != 0 || s->p.cap.err[0])
    print_error("serve exited %d:\n%s\n", s->p.cap.status, s->p.cap.err);
  assert_int_equal(s->p.cap.status, 0);
  assert_string_equal(s->p.cap.err, "");
  capture_free(&s->p.cap);
}

void server_kill(server *s) {
  kill(s->p.pid, SIGKILL);
  cli_wait_all(&s->p, 1);
  assert_int_equal(s->p.cap.status, 128 + SIGKILL);
  capture_free(&s->p.cap);
}

long orders_count(const server *s) {
  resp r;
  http(s->port, "GET", "/orders/count", NULL, NULL, &r);
  expect_status(&r, 200);
  const char *p = strstr(r.body, "{\"orders\":");
  if (p == NULL) fail_msg("no count in %s", r.body);
  return atol(p + strlen("{\"orders\":"));
}

void post(const server *s, const char *target, const char *headers, const char *body,
          resp *r) {
  http(s->port, "POST", target, headers, body, r);
}

/* Send the same request twice at once: one of them claims the key and
 * waits out its ?delay, the other gets 409 at once. Returns the holder's
 * socket, and when the 409 arrived in *t_409 (the claim existed by then). */
int claim_and_confirm(const server *s, const char *target, const char *headers,
                      double *t_409, resp *conflict) {
  int fd[2];
  fd[0] = http_send(s->port, "POST", target, headers, "payload");
  fd[1] = http_send(s->port, "POST", target, headers, "payload");
  assert_true(fd[0] >= 0 && fd[1] >= 0);
  struct pollfd p[2] = {{fd[0], POLLIN, 0}, {fd[1], POLLIN, 0}};
  assert_true(poll(p, 2, 10000) > 0);
  int first = (p[0].revents & (POLLIN | POLLHUP)) ? 0 : 1;
  http_recv(fd[first], conflict);
  *t_409 = now_s();
  expect_problem(conflict, 409, PROBLEM_IN_PROGRESS);
  return fd[1 - first];
}

void sleep_until(double t) {
  for (double left = t - now_s(); left > 0; left = t - now_s()) {
    struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
    nanosleep(&ts, NULL);
  }
}
