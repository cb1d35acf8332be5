/* `resil serve` processes and a raw HTTP/1.1 client, for the tests that run
 * the real server (test_serve_idem, test_fleet_serve): a server is started
 * with `--listen 127.0.0.1:0` and its port read from its "listening on"
 * line; requests go over loopback sockets, one connection each
 * (Connection: close).
 *
 * Built into those tests with cli_harness.c (resil_test(... SOURCES
 * cli_harness.c serve_harness.c)). The client functions (http_send,
 * http_recv, http, header, replayed) make no cmocka calls and keep no
 * state: forked clients and threads may use them. Everything else asserts
 * with cmocka, so only the test's main thread may call it. */
#ifndef RESIL_SERVE_HARNESS_H
#define RESIL_SERVE_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "cli_harness.h"

#define PROBLEM_IN_PROGRESS "https://resil.dev/problems/idempotency-key-in-progress"
#define PROBLEM_REUSED "https://resil.dev/problems/idempotency-key-reused"
#define PROBLEM_INVALID "https://resil.dev/problems/idempotency-key-invalid"
#define PROBLEM_MISSING "https://resil.dev/problems/idempotency-key-missing"
#define PROBLEM_STORE "https://resil.dev/problems/idempotency-store-unavailable"

/* ---- a raw HTTP/1.1 client (thread-safe, no cmocka calls) ----------------------- */

typedef struct resp {
  char raw[16384]; /* everything read, NUL-terminated */
  size_t len;
  int status;      /* 0: no status line (the connection was dropped) */
  const char *body;
} resp;

/* Connect and send one request (Connection: close). Returns the socket, or
 * -1. headers: extra "Name: value\r\n" lines, or NULL. Reads and writes
 * time out after 30s. */
int http_send(uint16_t port, const char *method, const char *target, const char *headers,
              const char *body);
/* Read until the server closes (or resets), close fd and parse. */
void http_recv(int fd, resp *r);
/* One request; r->status is -1 when it could not even be sent. */
void http(uint16_t port, const char *method, const char *target, const char *headers,
          const char *body, resp *r);
/* The value of header name, copied into buf; NULL when absent. */
const char *header(const resp *r, const char *name, char *buf, size_t len);
/* Whether r carries Idempotent-Replayed: true. */
int replayed(const resp *r);

/* ---- assertions on answers ------------------------------------------------------ */

void expect_status(const resp *r, int status);
/* A fresh 201: the order `id` as JSON for key (NULL: none), not replayed. */
void expect_created(const resp *r, long id, const char *key);
/* The replay of `first`: same status and body, the same Location, and
 * Idempotent-Replayed: true. */
void expect_replay_of(const resp *r, const resp *first);
/* A problem+json rejection of this type. */
void expect_problem(const resp *r, int status, const char *type);

/* ---- server processes --------------------------------------------------------------- */

/* A server must be stopped within HARD_LIMIT_S of its start (cli_wait_all
 * kills older ones). */
typedef struct server {
  cli_proc p;
  uint16_t port;
} server;

/* Start `resil serve --idempotent EXTRA... --listen 127.0.0.1:0` and wait
 * for its "listening on http://127.0.0.1:PORT" line. */
void server_start_argv(server *s, const char *const *extra);

#define SERVER_START(s, ...)                                                   \
  do {                                                                         \
    const char *const extra_[] = {__VA_ARGS__, NULL};                          \
    server_start_argv((s), extra_);                                            \
  } while (0)

/* SIGTERM: it must stop cleanly (exit 0, nothing on stderr). */
void server_stop(server *s);
/* SIGKILL, and reap it. */
void server_kill(server *s);

/* GET /orders/count: how many orders this server created. */
long orders_count(const server *s);
void post(const server *s, const char *target, const char *headers, const char *body, resp *r);

/* Send the same POST twice at once: one of them claims the key and waits
 * out its ?delay, the other gets 409 at once. Returns the holder's socket,
 * and when the 409 arrived in *t_409 (the claim existed by then). */
int claim_and_confirm(const server *s, const char *target, const char *headers, double *t_409,
                      resp *conflict);

/* Sleep until now_s() reaches t. */
void sleep_until(double t);

#endif /* RESIL_SERVE_HARNESS_H */
