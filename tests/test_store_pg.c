/* The postgres:// store against a real PostgreSQL (tests/services.sh starts
 * one; RESIL_TEST_PG_URL names it): the conformance suite unchanged, with a
 * fresh schema per test, then what is specific to PostgreSQL: the
 * transactional mode (a rolled-back business transaction rolls back the
 * stored response; a duplicate waits on an in-transaction claim), 16
 * stores racing for one key, 16 openers creating the schema once, a newer
 * schema refused, reconnects after the server drops the connections,
 * answers lost after the server committed (through a proxy that drops one
 * reply), unreachable servers, URL parameters and fork().
 *
 * Without RESIL_TEST_PG_URL (or when the services script found no
 * PostgreSQL) every test is skipped: exit status 77, which CTest reports as
 * skipped. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "resil/resil.h"
#include "resil/store_pg.h"
#include "store_conformance.h"
#include "tcp_proxy.h"
#include "test_util.h"

#define WALL0 ((resil_ns)1700000000 * RESIL_SEC)
#define LEASE (30 * RESIL_SEC)
#define TTL RESIL_HOUR
#define THREADS 16

static const char *base_url; /* postgres://USER@HOST:PORT/DB */

/* ---- helpers ---------------------------------------------------------------------- */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t random_id(void) {
  resil_rng rng;
  resil_rng_seed_os(&rng);
  return resil_rng_next(&rng);
}

static void quiet(void *ud, const char *msg) {
  (void)ud;
  (void)msg;
}

/* A connection of the test's own. */
static PGconn *admin(void) {
  PGconn *c = PQconnectdb(base_url);
  if (PQstatus(c) != CONNECTION_OK) fprintf(stderr, "admin: %s", PQerrorMessage(c));
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  PQsetNoticeProcessor(c, quiet, NULL);
  return c;
}

/* Run SQL that must succeed; returns the first value of the first row as a
 * number (0 without rows). */
static long long sql(PGconn *c, const char *fmt, ...) {
  char q[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(q, sizeof q, fmt, ap);
  va_end(ap);
  PGresult *r = PQexec(c, q);
  ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
    fprintf(stderr, "%s: %s", q, PQresultErrorMessage(r));
  assert_true(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK);
  long long v = 0;
  if (st == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
    v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return v;
}

static void drop_schema(const char *schema) {
  PGconn *c = admin();
  sql(c, "DROP SCHEMA IF EXISTS \"%s\" CASCADE", schema);
  PQfinish(c);
}

static void new_schema_name(char *buf, size_t len) {
  snprintf(buf, len, "t_%016llx", (unsigned long long)random_id());
}

/* ---- conformance target --------------------------------------------------------------- */

static int conf_url(void *ud, char *buf, size_t len) {
  (void)ud;
  char schema[40];
  new_schema_name(schema, sizeof schema);
  snprintf(buf, len, "%s?schema=%s", base_url, schema);
  return 0;
}

static void conf_remove(void *ud, const char *url) {
  (void)ud;
  const char *p = strstr(url, "?schema=");
  if (p) drop_schema(p + strlen("?schema="));
}

/* ---- fixture ------------------------------------------------------------------------ */

typedef struct fx {
  resil_fakeclock *fc;
  char schema[40];
  char url[512];
} fx;

static int setup(void **state) {
  fx *f = calloc(1, sizeof *f);
  if (f == NULL || resil_fakeclock_new(&f->fc, 0, WALL0) != RESIL_OK) return -1;
  new_schema_name(f->schema, sizeof f->schema);
  snprintf(f->url, sizeof f->url, "%s?schema=%s", base_url, f->schema);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx *f = *state;
  drop_schema(f->schema);
  resil_fakeclock_free(f->fc);
  free(f);
  return 0;
}

static resil_store_options opts(fx *f) { return store_test_options(f->fc); }

static resil_store *open_ok(fx *f, const char *url) {
  return store_test_open(f->fc, url, "postgres");
}

static void open_fails(fx *f, const char *url, resil_err want, const char *needle, char *err,
                       size_t errlen) {
  store_test_open_fails(f->fc, url, want, needle, err, errlen);
}

/* A connection with search_path set to the test's schema, and a store on
 * it (the schema must exist: open the URL store first). */
static PGconn *business_conn(fx *f) {
  PGconn *c = admin();
  sql(c, "SET search_path TO \"%s\"", f->schema);
  return c;
}

static resil_store *with_conn_ok(fx *f, PGconn *c) {
  resil_store_options o = opts(f);
  resil_store *s = NULL;
  char err[256];
  resil_err rc = resil_store_pg_with_conn(&s, c, &o, err, sizeof err);
  if (rc != RESIL_OK) fprintf(stderr, "with_conn: %s\n", err);
  assert_int_equal(rc, RESIL_OK);
  return s;
}

static const uint8_t FP[RESIL_FINGERPRINT_SIZE] = {9, 8, 7};

static uint64_t take(resil_store *s, const char *key) {
  resil_claim_result r;
  resil_err rc = resil_store_claim(s, "scope", key, FP, LEASE, &r);
  if (rc != RESIL_OK) fprintf(stderr, "claim: %s\n", resil_store_errmsg(s));
  assert_int_equal(rc, RESIL_OK);
  assert_int_equal(r.status, RESIL_CLAIM_CLAIMED);
  uint64_t t = r.token;
  resil_claim_result_clear(&r);
  return t;
}

static resil_claim_status peek(resil_store *s, const char *key) {
  resil_claim_result r;
  resil_err rc = resil_store_claim(s, "scope", key, FP, LEASE, &r);
  if (rc != RESIL_OK) fprintf(stderr, "claim: %s\n", resil_store_errmsg(s));
  assert_int_equal(rc, RESIL_OK);
  resil_claim_status st = r.status;
  resil_claim_result_clear(&r);
  return st;
}

static void complete_ok(resil_store *s, const char *key, uint64_t t, const char *body) {
  resil_stored_response resp = {201, NULL, 0, body, strlen(body)};
  resil_err rc = resil_store_complete(s, "scope", key, t, &resp, TTL);
  if (rc != RESIL_OK) fprintf(stderr, "complete: %s\n", resil_store_errmsg(s));
  assert_int_equal(rc, RESIL_OK);
}

static int closed_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  socklen_t l = sizeof a;
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
  close(fd);
  return ntohs(a.sin_port);
}

/* ---- the transactional mode ----------------------------------------------------------- */

/* claim, business write and complete in one transaction, committed: the
 * response and the write are both there. */
static void test_txn_commit(void **state) {
  fx *f = *state;
  resil_store *pool = open_ok(f, f->url); /* creates the schema */
  PGconn *c = business_conn(f);
  sql(c, "CREATE TABLE orders (id text PRIMARY KEY)");
  resil_store *s = with_conn_ok(f, c);
  assert_string_equal(resil_store_name(s), "postgres");

  sql(c, "BEGIN");
  uint64_t t = take(s, "order-1");
  sql(c, "INSERT INTO orders VALUES ('order-1')");
  complete_ok(s, "order-1", t, "created");
  /* Not visible to others before COMMIT: they wait for the row (lock), so
   * look without locking instead. */
  PGconn *other = admin();
  assert_int_equal(sql(other, "SELECT count(*) FROM \"%s\".resil_idempotency", f->schema), 0);
  sql(c, "COMMIT");
  assert_int_equal(sql(other, "SELECT count(*) FROM \"%s\".orders", f->schema), 1);
  assert_int_equal(peek(pool, "order-1"), RESIL_CLAIM_REPLAY);
  PQfinish(other);
  resil_store_close(s);
  /* The store did not close the caller's connection. */
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  sql(c, "SELECT 1");
  PQfinish(c);
  resil_store_close(pool);
}

/* The same, rolled back: no response, no write, and the key is free. */
static void test_txn_rollback_rolls_back_response(void **state) {
  fx *f = *state;
  resil_store *pool = open_ok(f, f->url);
  PGconn *c = business_conn(f);
  sql(c, "CREATE TABLE orders (id text PRIMARY KEY)");
  resil_store *s = with_conn_ok(f, c);

  sql(c, "BEGIN");
  uint64_t t = take(s, "order-2");
  sql(c, "INSERT INTO orders VALUES ('order-2')");
  complete_ok(s, "order-2", t, "created");
  assert_int_equal(peek(s, "order-2"), RESIL_CLAIM_REPLAY); /* inside: visible */
  sql(c, "ROLLBACK");
  assert_int_equal(sql(c, "SELECT count(*) FROM orders"), 0);
  assert_int_equal(sql(c, "SELECT count(*) FROM resil_idempotency"), 0);
  /* The retry runs again, this time for good. */
  uint64_t t2 = take(pool, "order-2");
  complete_ok(pool, "order-2", t2, "second try");
  assert_int_equal(peek(s, "order-2"), RESIL_CLAIM_REPLAY);
  resil_store_close(s);
  PQfinish(c);
  resil_store_close(pool);
}

/* Claim in its own short transaction (no transaction open), complete in
 * the business one, which rolls back: the claim stays, release frees it. */
static void test_claim_outside_txn(void **state) {
  fx *f = *state;
  resil_store *pool = open_ok(f, f->url);
  PGconn *c = business_conn(f);
  sql(c, "CREATE TABLE orders (id text PRIMARY KEY)");
  resil_store *s = with_conn_ok(f, c);
  uint64_t t = take(s, "order-3");
  assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE); /* committed on its own */
  assert_int_equal(peek(pool, "order-3"), RESIL_CLAIM_IN_PROGRESS);

  sql(c, "BEGIN");
  sql(c, "INSERT INTO orders VALUES ('order-3')");
  complete_ok(s, "order-3", t, "created");
  sql(c, "ROLLBACK");
  assert_int_equal(peek(pool, "order-3"), RESIL_CLAIM_IN_PROGRESS);
  assert_int_equal(resil_store_release(s, "scope", "order-3", t), RESIL_OK); /* autocommits */
  assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE);
  take(pool, "order-3");
  resil_store_close(s);
  PQfinish(c);
  resil_store_close(pool);
}

typedef struct holder {
  fx *f;
  PGconn *c;
  resil_store *s;
  int commit;
  pthread_barrier_t *claimed;
  const char *key;
} holder;

/* Claim inside a transaction, hold it 400 ms, complete, commit or roll back. */
static void *hold(void *arg) {
  holder *h = arg;
  PQclear(PQexec(h->c, "BEGIN"));
  resil_claim_result r;
  resil_err rc = resil_store_claim(h->s, "scope", h->key, FP, LEASE, &r);
  pthread_barrier_wait(h->claimed);
  if (rc == RESIL_OK && r.status == RESIL_CLAIM_CLAIMED) {
    usleep(400 * 1000);
    resil_stored_response resp = {200, NULL, 0, "from the holder", 15};
    resil_store_complete(h->s, "scope", h->key, r.token, &resp, TTL);
  }
  PQclear(PQexec(h->c, h->commit ? "COMMIT" : "ROLLBACK"));
  return NULL;
}

/* A duplicate meets a claim made inside an open transaction: it waits for
 * the row, then replays (commit) or claims (rollback); with a short
 * lock_timeout it fails closed instead of waiting. */
static void test_duplicate_waits_for_txn_claim(void **state) {
  fx *f = *state;
  resil_store *pool = open_ok(f, f->url);
  char short_url[600];
  snprintf(short_url, sizeof short_url, "%s&lock_timeout=100", f->url);
  resil_store *impatient = open_ok(f, short_url);
  for (int commit = 1; commit >= 0; commit--) {
    PGconn *c = business_conn(f);
    pthread_barrier_t b;
    assert_int_equal(pthread_barrier_init(&b, NULL, 2), 0);
    const char *key = commit ? "held-commit" : "held-rollback";
    holder h = {f, c, with_conn_ok(f, c), commit, &b, key};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, hold, &h), 0);
    pthread_barrier_wait(&b);
    double t0 = now_s();
    resil_claim_result r;
    assert_int_equal(resil_store_claim(impatient, "scope", key, FP, LEASE, &r), RESIL_ESTORE);
    assert_int_equal(r.status, RESIL_CLAIM_IN_PROGRESS);
    assert_non_null(strstr(resil_store_errmsg(impatient), "lock_timeout"));
    assert_int_equal(resil_store_claim(pool, "scope", key, FP, LEASE, &r), RESIL_OK);
    double waited = now_s() - t0;
    assert_true(waited > 0.2);
    if (commit) {
      assert_int_equal(r.status, RESIL_CLAIM_REPLAY);
      assert_memory_equal(r.response.body, "from the holder", 15);
    } else {
      assert_int_equal(r.status, RESIL_CLAIM_CLAIMED);
      assert_int_equal(resil_store_release(pool, "scope", key, r.token), RESIL_OK);
    }
    resil_claim_result_clear(&r);
    pthread_join(th, NULL);
    pthread_barrier_destroy(&b);
    resil_store_close(h.s);
    PQfinish(c);
  }
  resil_store_close(impatient);
  resil_store_close(pool);
}

/* A new key's INSERT that waited for another transaction (which then rolled
 * back) counts its lease from after the wait, not from before it. With the
 * real wall clock: the wait is real. */
static void test_lease_counts_from_after_wait(void **state) {
  fx *f = *state;
  resil_store_close(open_ok(f, f->url)); /* the schema */
  resil_store_options o;
  resil_store_options_init(&o); /* the system's wall clock */
  resil_store *rt = NULL;
  char err[256];
  assert_int_equal(resil_store_open(&rt, f->url, &o, err, sizeof err), RESIL_OK);
  PGconn *c = business_conn(f);
  pthread_barrier_t b;
  assert_int_equal(pthread_barrier_init(&b, NULL, 2), 0);
  holder h = {f, c, with_conn_ok(f, c), 0, &b, "waited"};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, hold, &h), 0);
  pthread_barrier_wait(&b);
  resil_claim_result r;
  assert_int_equal(resil_store_claim(rt, "scope", "waited", FP, LEASE, &r), RESIL_OK);
  resil_ns after = o.clock.now(o.clock.ud);
  assert_int_equal(r.status, RESIL_CLAIM_CLAIMED);
  /* Without the resync it would be about 400 ms short. */
  assert_true(r.lease_expires >= after + LEASE - 100 * RESIL_MSEC);
  assert_true(r.lease_expires <= after + LEASE);
  PGconn *a = admin();
  assert_int_equal(sql(a, "SELECT lease_expires FROM \"%s\".resil_idempotency", f->schema),
                   r.lease_expires);
  PQfinish(a);
  resil_claim_result_clear(&r);
  pthread_join(th, NULL);
  pthread_barrier_destroy(&b);
  resil_store_close(h.s);
  PQfinish(c);
  resil_store_close(rt);
}

/* An aborted transaction, a busy connection: refused, nothing sent. */
static void test_txn_states(void **state) {
  fx *f = *state;
  resil_store *pool = open_ok(f, f->url);
  PGconn *c = business_conn(f);
  resil_store *s = with_conn_ok(f, c);
  sql(c, "BEGIN");
  PQclear(PQexec(c, "SELECT no_such_column FROM resil_idempotency"));
  assert_int_equal(PQtransactionStatus(c), PQTRANS_INERROR);
  resil_claim_result r;
  assert_int_equal(resil_store_claim(s, "scope", "k", FP, LEASE, &r), RESIL_ESTORE);
  assert_int_equal(r.status, RESIL_CLAIM_IN_PROGRESS);
  assert_non_null(strstr(resil_store_errmsg(s), "aborted"));
  resil_stored_response resp = {200, NULL, 0, "x", 1};
  assert_int_equal(resil_store_complete(s, "scope", "k", 1, &resp, TTL), RESIL_ESTORE);
  assert_int_equal(resil_store_release(s, "scope", "k", 1), RESIL_ESTORE);
  assert_int_equal(resil_store_purge(s, NULL), RESIL_ESTORE);
  sql(c, "ROLLBACK");
  take(s, "k");
  /* A token that does not own the key is not an SQL error: the caller's
   * transaction stays usable. */
  sql(c, "BEGIN");
  assert_int_equal(resil_store_complete(s, "scope", "k", 12345, &resp, TTL), RESIL_ESTORE);
  assert_int_equal(PQtransactionStatus(c), PQTRANS_INTRANS);
  sql(c, "ROLLBACK");
  resil_store_close(s);
  PQfinish(c);
  resil_store_close(pool);
}

/* with_conn creates the schema when no transaction is open, and refuses
 * (without touching the transaction) when one is and the schema is missing. */
static void test_with_conn_schema(void **state) {
  fx *f = *state;
  PGconn *c = admin();
  sql(c, "CREATE SCHEMA \"%s\"", f->schema);
  sql(c, "SET search_path TO \"%s\"", f->schema);
  sql(c, "BEGIN");
  resil_store_options o = opts(f);
  resil_store *s = (resil_store *)&o;
  char err[256];
  assert_int_equal(resil_store_pg_with_conn(&s, c, &o, err, sizeof err), RESIL_ESTORE);
  assert_null(s);
  assert_non_null(strstr(err, "missing"));
  assert_int_equal(PQtransactionStatus(c), PQTRANS_INTRANS); /* still usable */
  sql(c, "ROLLBACK");
  s = with_conn_ok(f, c);
  assert_int_equal(sql(c, "SELECT count(*) FROM resil_schema"), 1);
  take(s, "k");
  resil_store_close(s);
  /* Bad arguments. */
  assert_int_equal(resil_store_pg_with_conn(NULL, c, &o, err, sizeof err), RESIL_EINVAL);
  assert_int_equal(resil_store_pg_with_conn(&s, NULL, &o, err, sizeof err), RESIL_EINVAL);
  assert_null(s);
  resil_store_options bad = o;
  bad.size = 3;
  assert_int_equal(resil_store_pg_with_conn(&s, c, &bad, err, sizeof err), RESIL_EINVAL);
  PQfinish(c);
}

/* ---- concurrency -------------------------------------------------------------------------- */

typedef struct racer {
  fx *f;
  pthread_barrier_t *go;
  resil_store *s; /* NULL: open one (the opener race) */
  resil_err rc;
  resil_claim_result r;
} racer;

static void *open_and_claim(void *arg) {
  racer *x = arg;
  resil_store_options o = opts(x->f);
  char err[256];
  pthread_barrier_wait(x->go);
  if (x->s == NULL) {
    x->rc = resil_store_open(&x->s, x->f->url, &o, err, sizeof err);
    if (x->rc != RESIL_OK) {
      fprintf(stderr, "open: %s\n", err);
      return NULL;
    }
  }
  x->rc = resil_store_claim(x->s, "scope", "contended", FP, LEASE, &x->r);
  return NULL;
}

static void race(fx *f, racer *rs, int preopen) {
  pthread_barrier_t go;
  pthread_t th[THREADS];
  assert_int_equal(pthread_barrier_init(&go, NULL, THREADS), 0);
  for (int i = 0; i < THREADS; i++) {
    rs[i].f = f;
    rs[i].go = &go;
    if (preopen) rs[i].s = open_ok(f, f->url);
    assert_int_equal(pthread_create(&th[i], NULL, open_and_claim, &rs[i]), 0);
  }
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  pthread_barrier_destroy(&go);
}

static void check_one_claimed(racer *rs) {
  int claimed = 0;
  for (int i = 0; i < THREADS; i++) {
    assert_int_equal(rs[i].rc, RESIL_OK);
    if (rs[i].r.status == RESIL_CLAIM_CLAIMED) claimed++;
    else assert_int_equal(rs[i].r.status, RESIL_CLAIM_IN_PROGRESS);
  }
  assert_int_equal(claimed, 1);
}

/* 16 stores (16 pools, as 16 processes would have) race for one key. */
static void test_concurrent_stores_one_claim(void **state) {
  fx *f = *state;
  racer rs[THREADS];
  memset(rs, 0, sizeof rs);
  race(f, rs, 1);
  check_one_claimed(rs);
  for (int i = 0; i < THREADS; i++) {
    resil_claim_result_clear(&rs[i].r);
    resil_store_close(rs[i].s);
  }
}

/* 16 openers of a fresh schema at once: it is created exactly once. */
static void test_concurrent_openers_create_schema_once(void **state) {
  fx *f = *state;
  racer rs[THREADS];
  memset(rs, 0, sizeof rs);
  race(f, rs, 0);
  check_one_claimed(rs);
  for (int i = 0; i < THREADS; i++) {
    resil_claim_result_clear(&rs[i].r);
    resil_store_close(rs[i].s);
  }
  PGconn *c = admin();
  assert_int_equal(sql(c, "SELECT count(*) FROM \"%s\".resil_schema", f->schema), 1);
  assert_int_equal(sql(c, "SELECT max(version) FROM \"%s\".resil_schema", f->schema), 1);
  PQfinish(c);
}

/* ---- failures ------------------------------------------------------------------------------ */

static void test_unreachable_fails_fast(void **state) {
  fx *f = *state;
  char url[256], err[512];
  snprintf(url, sizeof url, "postgres://postgres@127.0.0.1:%d/resil_test", closed_port());
  double t0 = now_s();
  open_fails(f, url, RESIL_ESTORE, "cannot connect", err, sizeof err);
  assert_true(now_s() - t0 < 3.0);
  assert_non_null(strstr(err, "127.0.0.1"));
  /* A database that does not exist. */
  char *q = strrchr(base_url, '/');
  snprintf(url, sizeof url, "%.*s/no_such_db_%016llx", (int)(q - base_url), base_url,
           (unsigned long long)random_id());
  open_fails(f, url, RESIL_ESTORE, "does not exist", err, sizeof err);
}

/* The server drops the connections (restart, failover, idle timeout): the
 * next call reconnects. */
static void test_reconnect_after_terminate(void **state) {
  fx *f = *state;
  resil_store *s = open_ok(f, f->url);
  uint64_t t = take(s, "k");
  PGconn *a = admin();
  const char *kill_sql =
      "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
      " WHERE application_name = 'resil' AND datname = current_database()"
      " AND pid <> pg_backend_pid()";
  assert_true(sql(a, kill_sql) >= 1);
  usleep(50 * 1000);
  complete_ok(s, "k", t, "after terminate");
  assert_true(sql(a, kill_sql) >= 1);
  usleep(50 * 1000);
  assert_int_equal(peek(s, "k"), RESIL_CLAIM_REPLAY);
  assert_true(sql(a, kill_sql) >= 1);
  usleep(50 * 1000);
  uint64_t t2 = take(s, "k2");
  assert_true(sql(a, kill_sql) >= 1);
  usleep(50 * 1000);
  assert_int_equal(resil_store_release(s, "scope", "k2", t2), RESIL_OK);
  assert_true(sql(a, kill_sql) >= 1);
  usleep(50 * 1000);
  assert_int_equal(resil_store_purge(s, NULL), RESIL_OK);
  PQfinish(a);
  resil_store_close(s);
}

/* The connection breaks after PostgreSQL committed but before its answer
 * arrived: the store reconnects, repeats with the same token, and
 * recognises its own claim, completion and release. */
static void test_lost_reply_is_recognised(void **state) {
  fx *f = *state;
  resil_store *direct = open_ok(f, f->url);
  int server_port = 0;
  if (sscanf(strrchr(base_url, ':'), ":%d", &server_port) != 1) fail();
  tcp_proxy *px;
  assert_int_equal(tcp_proxy_start(&px, server_port), 0);
  char url[600];
  const char *at = strchr(base_url, '@');
  const char *db = strrchr(base_url, '/');
  snprintf(url, sizeof url, "postgres://%.*s@127.0.0.1:%d%s?schema=%s",
           (int)(at - base_url - strlen("postgres://")), base_url + strlen("postgres://"),
           tcp_proxy_port(px), db, f->schema);
  resil_store *s = open_ok(f, url);

  tcp_proxy_drop_replies(px, 1);
  resil_claim_result r;
  assert_int_equal(resil_store_claim(s, "scope", "k", FP, LEASE, &r), RESIL_OK);
  assert_int_equal(tcp_proxy_dropped(px), 1);
  assert_int_equal(r.status, RESIL_CLAIM_CLAIMED);
  assert_int_equal(r.lease_expires, WALL0 + LEASE);
  uint64_t t = r.token;
  resil_claim_result_clear(&r);
  assert_int_equal(peek(direct, "k"), RESIL_CLAIM_IN_PROGRESS);

  tcp_proxy_drop_replies(px, 1);
  complete_ok(s, "k", t, "stored once");
  assert_int_equal(tcp_proxy_dropped(px), 2);
  assert_int_equal(peek(direct, "k"), RESIL_CLAIM_REPLAY);
  resil_stored_response again = {200, NULL, 0, "x", 1};
  assert_int_equal(resil_store_complete(s, "scope", "k", t, &again, TTL), RESIL_ESTORE);

  uint64_t t2 = take(s, "k2");
  tcp_proxy_drop_replies(px, 1);
  assert_int_equal(resil_store_release(s, "scope", "k2", t2), RESIL_OK);
  assert_int_equal(tcp_proxy_dropped(px), 3);
  take(direct, "k2");

  resil_store_close(s);
  resil_store_close(direct);
  tcp_proxy_stop(px);
}

static void test_newer_schema_refused(void **state) {
  fx *f = *state;
  resil_store_close(open_ok(f, f->url));
  PGconn *c = admin();
  sql(c, "INSERT INTO \"%s\".resil_schema (version) VALUES (99)", f->schema);
  char err[512];
  open_fails(f, f->url, RESIL_ESTORE, "newer", err, sizeof err);
  PQfinish(c);
}

static void test_url_params(void **state) {
  fx *f = *state;
  char url[700], err[512];
  snprintf(url, sizeof url, "%s?schema=", base_url);
  open_fails(f, url, RESIL_EINVAL, "schema", err, sizeof err);
  snprintf(url, sizeof url, "%s?schema=a&schema=b", base_url);
  open_fails(f, url, RESIL_EINVAL, "twice", err, sizeof err);
  snprintf(url, sizeof url, "%s?lock_timeout=soon", base_url);
  open_fails(f, url, RESIL_EINVAL, "lock_timeout", err, sizeof err);
  snprintf(url, sizeof url, "%s?schema=%070d", base_url, 1);
  open_fails(f, url, RESIL_EINVAL, "schema", err, sizeof err);
  snprintf(url, sizeof url, "%s?no_such_libpq_option=1", base_url);
  open_fails(f, url, RESIL_EINVAL, "bad postgres URL", err, sizeof err);
  open_fails(f, "postgres:nothing", RESIL_EINVAL, "postgres://", err, sizeof err);

  /* Upper case scheme, libpq's own parameters passed through, a schema
   * name that needs quoting (%XX-escaped). */
  char schema[64];
  snprintf(schema, sizeof schema, "%s \"q\"", f->schema);
  snprintf(url, sizeof url, "POSTGRESQL%s?application_name=resil-test&schema=%s%%20%%22q%%22"
           "&lock_timeout=2000&connect_timeout=3",
           base_url + strlen("postgres"), f->schema);
  resil_store *s = open_ok(f, url);
  take(s, "k");
  resil_store_close(s);
  PGconn *c = admin();
  assert_int_equal(sql(c, "SELECT count(*) FROM \"%s \"\"q\"\"\".resil_idempotency", f->schema), 1);
  sql(c, "DROP SCHEMA \"%s \"\"q\"\"\" CASCADE", f->schema);
  PQfinish(c);
}

static long long resil_sessions(PGconn *a) {
  return sql(a, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'resil'"
                " AND datname = current_database()");
}

static void test_after_fork(void **state) {
  fx *f = *state;
  resil_store *s = open_ok(f, f->url);
  take(s, "parent");
  PGconn *a = admin();
  long long before = resil_sessions(a);
  assert_true(before >= 1);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    resil_claim_result r;
    resil_err rc = resil_store_claim(s, "scope", "child", FP, LEASE, &r);
    int ok = rc == RESIL_ESTORE && strstr(resil_store_errmsg(s), "fork") != NULL;
    resil_store_close(s); /* must not end the parent's sessions */
    _exit(ok ? 0 : 1);
  }
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  /* The parent's pooled connection is still the same session. */
  assert_int_equal(resil_sessions(a), before);
  take(s, "still-works");
  assert_int_equal(resil_sessions(a), before);
  PQfinish(a);
  resil_store_close(s);
}

/* ---- main ------------------------------------------------------------------------------------ */

static int available(void) {
  base_url = getenv("RESIL_TEST_PG_URL");
  const char *dir = getenv("RESIL_TEST_SERVICES_DIR");
  if (dir != NULL && *dir) {
    char path[1024], why[512] = "";
    snprintf(path, sizeof path, "%s/pg.skip", dir);
    FILE *fp = fopen(path, "r");
    if (fp != NULL) {
      if (fgets(why, sizeof why, fp) == NULL) why[0] = '\0';
      fclose(fp);
      printf("SKIPPED: no PostgreSQL for these tests: %s", why);
      return 0;
    }
  }
  if (base_url == NULL || *base_url == '\0') {
    printf("SKIPPED: RESIL_TEST_PG_URL is not set (eval \"$(tests/services.sh env DIR)\" "
           "after tests/services.sh start DIR)\n");
    return 0;
  }
  if (strchr(base_url, '?') != NULL || strncmp(base_url, "postgres://", 11) != 0) {
    printf("RESIL_TEST_PG_URL must look like postgres://USER@HOST:PORT/DB, not '%s'\n",
           base_url);
    exit(1);
  }
  return 1;
}

int main(void) {
  if (!available()) return 77;
  printf("store tests against PostgreSQL at %s\n", base_url);
  int failed = 0;
  store_target pg = {"postgres://", "postgres", conf_url, conf_remove, 1, NULL};
  failed += store_conformance_run(&pg);

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_txn_commit),
      T(test_txn_rollback_rolls_back_response),
      T(test_claim_outside_txn),
      T(test_duplicate_waits_for_txn_claim),
      T(test_lease_counts_from_after_wait),
      T(test_txn_states),
      T(test_with_conn_schema),
      T(test_concurrent_stores_one_claim),
      T(test_concurrent_openers_create_schema_once),
      T(test_unreachable_fails_fast),
      T(test_reconnect_after_terminate),
      T(test_lost_reply_is_recognised),
      T(test_newer_schema_refused),
      T(test_url_params),
      T(test_after_fork),
  };
#undef T
  failed += cmocka_run_group_tests_name("postgres store", tests, NULL, NULL);
  return failed;
}
