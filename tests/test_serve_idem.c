/* `resil serve --idempotent`, end to end with real processes: each test
 * starts the resil binary as a server (`--listen 127.0.0.1:0`, the port read
 * from its "listening on" line) and talks raw HTTP/1.1 to it over loopback
 * sockets, from this process or from forked client processes.
 *
 * What is checked is what a client sees (statuses, headers, bodies, dropped
 * connections) and GET /orders/count, the server's own count of orders it
 * created: exactly-once is "the count went up by one".
 *
 * Timing: the in-progress windows are real (?delay=, --idem-lease) and kept
 * short; each wait has a margin that only matters on a loaded machine.
 *
 * The client and the server processes are serve_harness.c's. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "serve_harness.h"

static void store_url(const fixture *f, const char *name, char *buf, size_t len) {
  char path[256];
  path_in(f, name, path, sizeof path);
  snprintf(buf, len, "sqlite:%s", path);
}

/* ---- the basic protocol ---------------------------------------------------------- */

/* SHA-256 of {"item":"book"} */
#define BOOK_SHA256 "4ddc693ce39779d2725b70213ef414e8020b7bda853b0b22fe09354deadb2898"

static void test_create_then_replay(void **state) {
  fixture *f = *state;
  char url[300];
  store_url(f, "db", url, sizeof url);
  server s;
  SERVER_START(&s, "--store", url);
  assert_int_equal(orders_count(&s), 0);

  resp first, again;
  post(&s, "/orders", "Idempotency-Key: order-1\r\n", "{\"item\":\"book\"}", &first);
  expect_created(&first, 1, "order-1");
  assert_non_null(strstr(first.body, "\"scope\":\"default\""));
  assert_non_null(strstr(first.body, "\"body_sha256\":\"" BOOK_SHA256 "\"}"));
  assert_int_equal(orders_count(&s), 1);

  for (int i = 0; i < 3; i++) {
    post(&s, "/orders", "Idempotency-Key: order-1\r\n", "{\"item\":\"book\"}", &again);
    expect_replay_of(&again, &first);
  }
  assert_int_equal(orders_count(&s), 1);

  /* Without a key (and without --require-key) each request just runs. */
  post(&s, "/orders", NULL, "{}", &again);
  expect_created(&again, 2, NULL);
  post(&s, "/orders", NULL, "{}", &again);
  expect_created(&again, 3, NULL);
  assert_int_equal(orders_count(&s), 3);

  /* Only POST creates; /orders/count ignores the global faults. */
  http(s.port, "GET", "/orders", NULL, NULL, &again);
  expect_status(&again, 405);
  assert_int_equal(orders_count(&s), 3);
  server_stop(&s);
}

static void test_mismatch_is_422(void **state) {
  (void)state;
  server s;
  SERVER_START(&s, "--store", "memory:");
  resp r;
  post(&s, "/orders", "Idempotency-Key: k\r\n", "{\"n\":1}", &r);
  expect_created(&r, 1, "k");
  /* Another body, another target (the query is part of it): 422. */
  post(&s, "/orders", "Idempotency-Key: k\r\n", "{\"n\":2}", &r);
  expect_problem(&r, 422, PROBLEM_REUSED);
  post(&s, "/orders?delay=0s", "Idempotency-Key: k\r\n", "{\"n\":1}", &r);
  expect_problem(&r, 422, PROBLEM_REUSED);
  assert_int_equal(orders_count(&s), 1);
  /* The original still replays. */
  post(&s, "/orders", "Idempotency-Key: k\r\n", "{\"n\":1}", &r);
  expect_status(&r, 201);
  assert_true(replayed(&r));
  server_stop(&s);
}

static void test_scopes_are_isolated(void **state) {
  (void)state;
  server s;
  SERVER_START(&s, "--store", "memory:");
  resp alice, bob, r;
  post(&s, "/orders", "Idempotency-Key: same\r\nAuthorization: Bearer alice-secret\r\n", "x",
       &alice);
  expect_created(&alice, 1, "same");
  /* Same key, same request, another client: its own order, no replay. */
  post(&s, "/orders", "Idempotency-Key: same\r\nAuthorization: Bearer bob-secret\r\n", "x", &bob);
  expect_created(&bob, 2, "same");
  /* Without Authorization: the shared default scope, a third order. */
  post(&s, "/orders", "Idempotency-Key: same\r\n", "x", &r);
  expect_created(&r, 3, "same");
  assert_int_equal(orders_count(&s), 3);

  post(&s, "/orders", "Idempotency-Key: same\r\nAuthorization: Bearer alice-secret\r\n", "x", &r);
  expect_replay_of(&r, &alice);
  post(&s, "/orders", "Idempotency-Key: same\r\nAuthorization: Bearer bob-secret\r\n", "x", &r);
  expect_replay_of(&r, &bob);
  /* A different body under bob's scope is a mismatch in bob's scope only. */
  post(&s, "/orders", "Idempotency-Key: same\r\nAuthorization: Bearer bob-secret\r\n", "y", &r);
  expect_problem(&r, 422, PROBLEM_REUSED);
  assert_int_equal(orders_count(&s), 3);

  /* The scope is shown hashed, never as sent. */
  assert_null(strstr(alice.raw, "alice-secret"));
  assert_non_null(strstr(alice.body, "\"scope\":\"sha256:"));
  char sa[128], sb[128];
  snprintf(sa, sizeof sa, "%.82s", strstr(alice.body, "\"scope\":"));
  snprintf(sb, sizeof sb, "%.82s", strstr(bob.body, "\"scope\":"));
  assert_string_not_equal(sa, sb);
  server_stop(&s);
}

static void test_bad_keys_are_400(void **state) {
  (void)state;
  server s;
  SERVER_START(&s, "--store", "memory:");
  char headers[600];
  memcpy(headers, "Idempotency-Key: ", 17);
  memset(headers + 17, 'k', 256); /* one more than allowed */
  memcpy(headers + 17 + 256, "\r\n", 3);
  resp r;
  post(&s, "/orders", headers, "x", &r);
  expect_problem(&r, 400, PROBLEM_INVALID);
  post(&s, "/orders", "Idempotency-Key: a\r\nIdempotency-Key: b\r\n", "x", &r);
  expect_problem(&r, 400, PROBLEM_INVALID);
  post(&s, "/orders", "Idempotency-Key: two words\r\n", "x", &r);
  expect_problem(&r, 400, PROBLEM_INVALID);
  post(&s, "/orders", "Idempotency-Key: \"unterminated\r\n", "x", &r);
  expect_problem(&r, 400, PROBLEM_INVALID);
  assert_int_equal(orders_count(&s), 0);
  /* 255 characters are fine. */
  memcpy(headers + 17 + 255, "\r\n", 3);
  post(&s, "/orders", headers, "x", &r);
  expect_status(&r, 201);
  assert_int_equal(orders_count(&s), 1);
  /* Bad ?delay is the server's own 400 (text), before anything runs. */
  post(&s, "/orders?delay=soon", "Idempotency-Key: d\r\n", "x", &r);
  expect_status(&r, 400);
  assert_int_equal(orders_count(&s), 1);
  server_stop(&s);
}

static void test_require_key(void **state) {
  (void)state;
  server s;
  SERVER_START(&s, "--store", "memory:", "--require-key");
  resp r;
  post(&s, "/orders", NULL, "x", &r);
  expect_problem(&r, 400, PROBLEM_MISSING);
  assert_int_equal(orders_count(&s), 0);
  post(&s, "/orders", "Idempotency-Key: present\r\n", "x", &r);
  expect_created(&r, 1, "present");
  assert_int_equal(orders_count(&s), 1);
  server_stop(&s);
}

/* ---- concurrency ------------------------------------------------------------------- */

#define N_CLIENTS 16

typedef struct client_result {
  int index;
  int status;
  int replayed;
  char body[512];
} client_result; /* written to a pipe in one piece (< PIPE_BUF) */

static void test_sixteen_processes_one_order(void **state) {
  fixture *f = *state;
  char url[300];
  store_url(f, "db", url, sizeof url);
  server s;
  SERVER_START(&s, "--store", url);

  int gate[2], results[2];
  assert_int_equal(pipe(gate), 0);
  assert_int_equal(pipe(results), 0);
  pid_t pids[N_CLIENTS];
  for (int i = 0; i < N_CLIENTS; i++) {
    pids[i] = fork();
    assert_true(pids[i] >= 0);
    if (pids[i] == 0) {
      /* A client: wait for the gate to open, send the same request as all
       * the others, report what came back. */
      close(gate[1]);
      close(results[0]);
      char c;
      while (read(gate[0], &c, 1) < 0 && errno == EINTR) {
      }
      resp r;
      http(s.port, "POST", "/orders?delay=300ms",
           "Idempotency-Key: the-same-key\r\nContent-Type: application/json\r\n",
           "{\"item\":\"one\"}", &r);
      client_result cr;
      memset(&cr, 0, sizeof cr);
      cr.index = i;
      cr.status = r.status;
      cr.replayed = replayed(&r);
      snprintf(cr.body, sizeof cr.body, "%s", r.body);
      _exit(write(results[1], &cr, sizeof cr) == (ssize_t)sizeof cr ? 0 : 1);
    }
  }
  close(gate[0]);
  close(results[1]);
  close(gate[1]); /* all go */

  client_result got[N_CLIENTS];
  size_t n = 0;
  while (n < N_CLIENTS) {
    ssize_t r = read(results[0], &got[n], sizeof got[n]);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    assert_int_equal(r, sizeof got[n]);
    n++;
  }
  close(results[0]);
  for (int i = 0; i < N_CLIENTS; i++) {
    int ws;
    while (waitpid(pids[i], &ws, 0) < 0 && errno == EINTR) {
    }
    assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
  }
  assert_int_equal(n, N_CLIENTS);

  int fresh = 0, replays = 0, conflicts = 0;
  const char *fresh_body = NULL;
  for (size_t i = 0; i < n; i++) {
    if (got[i].status == 201 && !got[i].replayed) {
      fresh++;
      fresh_body = got[i].body;
    } else if (got[i].status == 201) {
      replays++;
    } else if (got[i].status == 409) {
      conflicts++;
    } else {
      fail_msg("client %d got %d: %s", got[i].index, got[i].status, got[i].body);
    }
  }
  print_message("%d created, %d replayed, %d in progress (409)\n", fresh, replays, conflicts);
  assert_int_equal(fresh, 1);
  assert_non_null(fresh_body);
  assert_true(strncmp(fresh_body, "{\"id\":1,", 8) == 0);
  for (size_t i = 0; i < n; i++)
    if (got[i].status == 201) assert_string_equal(got[i].body, fresh_body);
  assert_int_equal(fresh + replays + conflicts, N_CLIENTS);
  assert_int_equal(orders_count(&s), 1);
  server_stop(&s);
}

/* ---- a holder that dies, a holder that is too slow ----------------------------------- */

static void test_holder_killed_lease_then_takeover(void **state) {
  fixture *f = *state;
  char url[300];
  store_url(f, "db", url, sizeof url);
  const double lease = 3.0; /* seconds; also --idem-lease below */
  const char *target = "/orders?delay=4s";
  const char *hdrs = "Idempotency-Key: killed-holder\r\n";

  server a;
  SERVER_START(&a, "--store", url, "--idem-lease", "3s");
  double t_send = now_s(), t_409;
  resp r;
  int holder = claim_and_confirm(&a, target, hdrs, &t_409, &r);
  server_kill(&a); /* mid-request: the order was never created */
  http_recv(holder, &r);
  assert_int_equal(r.status, 0); /* no answer at all */

  server b;
  SERVER_START(&b, "--store", url, "--idem-lease", "3s");
  /* The dead holder's claim lasts until its lease ends (not before
   * t_send + lease): a retry meanwhile gets 409 with Retry-After. */
  post(&b, target, hdrs, "payload", &r);
  if (now_s() < t_send + lease) {
    expect_problem(&r, 409, PROBLEM_IN_PROGRESS);
    char ra[16];
    assert_non_null(header(&r, "Retry-After", ra, sizeof ra));
    assert_true(atoi(ra) >= 1 && atoi(ra) <= 3);
  } else {
    print_message("machine too slow to see the lease in force; skipping the 409 check\n");
  }
  assert_int_equal(orders_count(&b), 0);

  /* After it (by t_409 + lease at the latest, plus a margin) the retry
   * runs, once. */
  sleep_until(t_409 + lease + 0.3);
  resp created;
  post(&b, target, hdrs, "payload", &created);
  expect_created(&created, 1, "killed-holder");
  assert_int_equal(orders_count(&b), 1);
  post(&b, target, hdrs, "payload", &r);
  expect_replay_of(&r, &created);
  assert_int_equal(orders_count(&b), 1);
  server_stop(&b);
}

static void test_slow_holder_loses_its_lease(void **state) {
  (void)state;
  /* A lease shorter than the handler: after it, a retry runs again (the
   * documented hazard), and the late holder's answer never overwrites the
   * new owner's stored one. */
  server s;
  SERVER_START(&s, "--store", "memory:", "--idem-lease", "1s");
  const char *hdrs = "Idempotency-Key: slow\r\n";
  double t_409;
  resp r, late, second;
  int holder = claim_and_confirm(&s, "/orders?delay=2s", hdrs, &t_409, &r);
  sleep_until(t_409 + 1.3); /* the lease is over, the holder still runs */
  post(&s, "/orders?delay=2s", hdrs, "payload", &second);
  http_recv(holder, &late);
  /* The holder finished first (order 1) but could not store its answer. */
  expect_created(&late, 1, "slow");
  expect_created(&second, 2, "slow");
  post(&s, "/orders?delay=2s", hdrs, "payload", &r);
  expect_replay_of(&r, &second);
  assert_int_equal(orders_count(&s), 2);
  server_stop(&s);
}

static void test_stop_releases_waiting_claims(void **state) {
  fixture *f = *state;
  char url[300];
  store_url(f, "db", url, sizeof url);
  const char *hdrs = "Idempotency-Key: stopped\r\n";
  server a;
  SERVER_START(&a, "--store", url);
  double t_409;
  resp r;
  int holder = claim_and_confirm(&a, "/orders?delay=1s", hdrs, &t_409, &r);
  server_stop(&a); /* during the wait: ends without an answer, exit 0 */
  http_recv(holder, &r);
  assert_int_equal(r.status, 0);

  /* The handler never ran, so the claim was released: the retry runs now
   * instead of waiting out the 30s lease. */
  server b;
  SERVER_START(&b, "--store", url);
  post(&b, "/orders?delay=1s", hdrs, "payload", &r);
  expect_created(&r, 1, "stopped");
  assert_int_equal(orders_count(&b), 1);
  server_stop(&b);
}

/* ---- injected failures ------------------------------------------------------------ */

static void test_lost_response_is_committed(void **state) {
  fixture *f = *state;
  char url[300];
  store_url(f, "db", url, sizeof url);
  const char *hdrs = "Idempotency-Key: lost-1\r\n";

  /* Every request fails, always after the order was created. */
  server a;
  SERVER_START(&a, "--store", url, "--fail-rate", "1", "--lost-response-rate", "1");
  resp r;
  post(&a, "/orders", hdrs, "payload", &r);
  assert_int_equal(r.status, 0); /* dropped without an answer */
  assert_int_equal(r.len, 0);
  assert_int_equal(orders_count(&a), 1); /* ...yet the order exists */
  server_stop(&a);

  /* Another server on the same store answers the retry from the store. */
  server b;
  SERVER_START(&b, "--store", url);
  post(&b, "/orders", hdrs, "payload", &r);
  expect_status(&r, 201);
  assert_true(replayed(&r));
  const char *want = "{\"id\":1,\"key\":\"lost-1\",";
  assert_true(strncmp(r.body, want, strlen(want)) == 0);
  assert_int_equal(orders_count(&b), 0);
  server_stop(&b);

  /* Failures before the handler: 503, nothing created, nothing claimed. */
  server c;
  SERVER_START(&c, "--store", "memory:", "--fail-rate", "1", "--lost-response-rate", "0");
  post(&c, "/orders", hdrs, "payload", &r);
  expect_status(&r, 503);
  char v[32];
  assert_non_null(header(&r, "X-Resil-Fault", v, sizeof v));
  assert_string_equal(v, "fail_rate");
  assert_int_equal(orders_count(&c), 0);
  server_stop(&c);
}

/* ---- the store failing ---------------------------------------------------------------- */

static void test_locked_store_fails_closed(void **state) {
  fixture *f = *state;
  char path[256], url[300];
  path_in(f, "db", path, sizeof path);
  snprintf(url, sizeof url, "sqlite:%s?busy_timeout=100", path);
  server s;
  SERVER_START(&s, "--store", url);
  resp r;
  post(&s, "/orders", "Idempotency-Key: before\r\n", "x", &r);
  expect_created(&r, 1, "before");

  /* Another process-level writer holds the database. */
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  assert_int_equal(sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
  post(&s, "/orders", "Idempotency-Key: during\r\n", "x", &r);
  expect_problem(&r, 503, PROBLEM_STORE);
  char ra[16];
  assert_non_null(header(&r, "Retry-After", ra, sizeof ra));
  assert_int_equal(orders_count(&s), 1); /* fail closed: nothing ran */
  assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);

  /* Nothing was left claimed: the retry runs now, once. */
  post(&s, "/orders", "Idempotency-Key: during\r\n", "x", &r);
  expect_created(&r, 2, "during");
  post(&s, "/orders", "Idempotency-Key: during\r\n", "x", &r);
  assert_true(replayed(&r));
  assert_int_equal(orders_count(&s), 2);
  server_stop(&s); /* and it never crashed */
}

static void test_store_errors_at_start(void **state) {
  fixture *f = *state;
  capture c;
  /* Cannot be created (no such directory under /proc): 74 with the reason. */
  RUN(&c, "serve", "--idempotent", "--store", "sqlite:/proc/no-such-dir/idem.db", "--listen",
      "127.0.0.1:0");
  assert_int_equal(c.status, 74);
  assert_non_null(strstr(c.err, "resil: serve: cannot open the store sqlite:/proc/no-such-dir"));
  assert_string_equal(c.out, "");
  capture_free(&c);

  /* A bad URL is a usage error, with the store's own message. */
  RUN(&c, "serve", "--idempotent", "--store", "nosuch:x");
  assert_int_equal(c.status, 64);
  assert_non_null(strstr(c.err, "unknown store scheme 'nosuch'"));
  capture_free(&c);
  RUN(&c, "serve", "--idempotent", "--store", "sqlite:/tmp/x.db?busy_timeout=soon");
  assert_int_equal(c.status, 64);
  assert_non_null(strstr(c.err, "busy_timeout must be milliseconds"));
  capture_free(&c);

  /* Options that mean nothing without --idempotent, and bad values. */
  RUN(&c, "serve", "--store", "memory:");
  assert_int_equal(c.status, 64);
  assert_non_null(strstr(c.err, "--store only applies to --idempotent"));
  capture_free(&c);
  RUN(&c, "serve", "--idempotent", "--idem-lease", "0");
  assert_int_equal(c.status, 64);
  capture_free(&c);
  RUN(&c, "serve", "--idempotent", "--lost-response-rate", "1.5");
  assert_int_equal(c.status, 64);
  assert_non_null(strstr(c.err, "--lost-response-rate"));
  capture_free(&c);

  /* Read-only file in a read-only directory (root can write anyway). */
  if (geteuid() != 0) {
    char dir[256], path[300], url[320];
    path_in(f, "ro", dir, sizeof dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(path, sizeof path, "%s/idem.db", dir);
    snprintf(url, sizeof url, "sqlite:%s", path);
    server s;
    SERVER_START(&s, "--store", url); /* creates the store */
    server_stop(&s);
    assert_int_equal(chmod(path, 0444), 0);
    assert_int_equal(chmod(dir, 0555), 0);
    RUN(&c, "serve", "--idempotent", "--store", url);
    chmod(dir, 0755); /* so the fixture can be removed */
    assert_int_equal(c.status, 74);
    assert_non_null(strstr(c.err, "cannot open the store"));
    capture_free(&c);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_create_then_replay, fixture_setup, fixture_teardown),
      cmocka_unit_test(test_mismatch_is_422),
      cmocka_unit_test(test_scopes_are_isolated),
      cmocka_unit_test(test_bad_keys_are_400),
      cmocka_unit_test(test_require_key),
      cmocka_unit_test_setup_teardown(test_sixteen_processes_one_order, fixture_setup,
                                      fixture_teardown),
      cmocka_unit_test_setup_teardown(test_holder_killed_lease_then_takeover, fixture_setup,
                                      fixture_teardown),
      cmocka_unit_test(test_slow_holder_loses_its_lease),
      cmocka_unit_test_setup_teardown(test_stop_releases_waiting_claims, fixture_setup,
                                      fixture_teardown),
      cmocka_unit_test_setup_teardown(test_lost_response_is_committed, fixture_setup,
                                      fixture_teardown),
      cmocka_unit_test_setup_teardown(test_locked_store_fails_closed, fixture_setup,
                                      fixture_teardown),
      cmocka_unit_test_setup_teardown(test_store_errors_at_start, fixture_setup,
                                      fixture_teardown),
  };
  signal(SIGPIPE, SIG_IGN);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
