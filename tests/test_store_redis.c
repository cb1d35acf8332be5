/* The redis:// store against a real Redis (tests/services.sh starts one;
 * RESIL_TEST_REDIS_URL names it): the conformance suite unchanged, with a
 * fresh key prefix per test, then what is specific to Redis: URL parsing,
 * an unreachable or silent server fails closed and fast, reconnects after
 * CLIENT KILL, a paused server, the key layout and prefix isolation, the
 * real expiry Redis is given, AUTH and database selection, SCRIPT FLUSH,
 * damaged records, fork(), and answers lost after Redis acted (through a
 * proxy that drops one reply).
 *
 * Without RESIL_TEST_REDIS_URL (or when the services script could not find
 * redis-server) every test is skipped: exit status 77, which CTest reports
 * as skipped. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <hiredis.h>
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
#include "store_conformance.h"
#include "tcp_proxy.h"
#include "test_util.h"

#define WALL0 ((resil_ns)1700000000 * RESIL_SEC)
#define LEASE (30 * RESIL_SEC)
#define TTL RESIL_HOUR
#define MARGIN_MS (10 * 60 * 1000LL) /* REAL_EXPIRY_MARGIN_MS in redis.c */

static const char *base_url; /* redis://127.0.0.1:PORT/0 */
static char host[128];
static int port;

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

/* A connection of the test's own, to look at and disturb the server. */
static redisContext *admin(void) {
  struct timeval tv = {5, 0};
  redisContext *c = redisConnectWithTimeout(host, port, tv);
  assert_non_null(c);
  if (c->err) fprintf(stderr, "admin connection: %s\n", c->errstr);
  assert_int_equal(c->err, 0);
  redisSetTimeout(c, tv);
  return c;
}

/* Run a command on the admin connection; the reply (never an error). */
static redisReply *cmd(redisContext *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  redisReply *r = redisvCommand(c, fmt, ap);
  va_end(ap);
  assert_non_null(r);
  if (r->type == REDIS_REPLY_ERROR) fprintf(stderr, "redis: %s\n", r->str);
  assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
  return r;
}

static void cmd_free(redisContext *c, const char *fmt, const char *arg) {
  freeReplyObject(cmd(c, fmt, arg));
}

/* Delete every key under prefix. */
static void drop_prefix(const char *prefix) {
  redisContext *c = admin();
  char pattern[300];
  snprintf(pattern, sizeof pattern, "%s*", prefix);
  char cursor[32] = "0";
  do {
    redisReply *r = cmd(c, "SCAN %s MATCH %s COUNT 1000", cursor, pattern);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
    for (size_t i = 0; i < r->element[1]->elements; i++) {
      redisReply *k = r->element[1]->element[i];
      freeReplyObject(cmd(c, "DEL %b", k->str, k->len));
    }
    freeReplyObject(r);
  } while (strcmp(cursor, "0") != 0);
  redisFree(c);
}

static long long count_prefix(const char *prefix) {
  redisContext *c = admin();
  char pattern[300];
  snprintf(pattern, sizeof pattern, "%s*", prefix);
  long long n = 0;
  char cursor[32] = "0";
  do {
    redisReply *r = cmd(c, "SCAN %s MATCH %s COUNT 1000", cursor, pattern);
    snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
    n += (long long)r->element[1]->elements;
    freeReplyObject(r);
  } while (strcmp(cursor, "0") != 0);
  redisFree(c);
  return n;
}

/* The URL with a fresh prefix and extra parameters ("" or "&a=b"). */
static void url_with(char *buf, size_t len, char *prefix, size_t plen, const char *extra) {
  snprintf(prefix, plen, "test-%016llx:", (unsigned long long)random_id());
  snprintf(buf, len, "%s?prefix=%s%s", base_url, prefix, extra);
}

/* ---- conformance target ------------------------------------------------------------- */

static int conf_url(void *ud, char *buf, size_t len) {
  (void)ud;
  char prefix[64];
  url_with(buf, len, prefix, sizeof prefix, "");
  return 0;
}

static void conf_remove(void *ud, const char *url) {
  (void)ud;
  const char *p = strstr(url, "?prefix=");
  if (p) drop_prefix(p + strlen("?prefix="));
}

/* ---- fixture ------------------------------------------------------------------------ */

typedef struct fx {
  resil_fakeclock *fc;
  char prefix[64];
  char url[512];
} fx;

static int setup(void **state) {
  fx *f = calloc(1, sizeof *f);
  if (f == NULL || resil_fakeclock_new(&f->fc, 0, WALL0) != RESIL_OK) return -1;
  url_with(f->url, sizeof f->url, f->prefix, sizeof f->prefix, "");
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx *f = *state;
  drop_prefix(f->prefix);
  resil_fakeclock_free(f->fc);
  free(f);
  return 0;
}

static resil_store *open_ok(fx *f, const char *url) {
  return store_test_open(f->fc, url, "redis");
}

/* Open must fail with want; the message must contain needle (if any). */
static void open_fails(fx *f, const char *url, resil_err want, const char *needle, char *err,
                       size_t errlen) {
  store_test_open_fails(f->fc, url, want, needle, err, errlen);
}

static const uint8_t FP[RESIL_FINGERPRINT_SIZE] = {1, 2, 3};

static uint64_t take(resil_store *s, const char *scope, const char *key) {
  resil_claim_result r;
  resil_err rc = resil_store_claim(s, scope, key, FP, LEASE, &r);
  if (rc != RESIL_OK) fprintf(stderr, "claim: %s\n", resil_store_errmsg(s));
  assert_int_equal(rc, RESIL_OK);
  assert_int_equal(r.status, RESIL_CLAIM_CLAIMED);
  uint64_t t = r.token;
  resil_claim_result_clear(&r);
  return t;
}

static resil_claim_status peek(resil_store *s, const char *scope, const char *key) {
  resil_claim_result r;
  resil_err rc = resil_store_claim(s, scope, key, FP, LEASE, &r);
  if (rc != RESIL_OK) fprintf(stderr, "claim: %s\n", resil_store_errmsg(s));
  assert_int_equal(rc, RESIL_OK);
  resil_claim_status st = r.status;
  resil_claim_result_clear(&r);
  return st;
}

static void complete_ok(resil_store *s, const char *scope, const char *key, uint64_t t,
                        const char *body) {
  resil_stored_response resp = {200, NULL, 0, body, strlen(body)};
  resil_err rc = resil_store_complete(s, scope, key, t, &resp, TTL);
  if (rc != RESIL_OK) fprintf(stderr, "complete: %s\n", resil_store_errmsg(s));
  assert_int_equal(rc, RESIL_OK);
}

/* A loopback port nothing listens on (bound, then closed). */
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

/* A loopback listener that never accepts nor answers; *fd to close. */
static int silent_port(int *fd) {
  *fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(*fd >= 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(*fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(*fd, 16), 0);
  socklen_t l = sizeof a;
  assert_int_equal(getsockname(*fd, (struct sockaddr *)&a, &l), 0);
  return ntohs(a.sin_port);
}

/* ---- URLs ------------------------------------------------------------------------------ */

static void test_url_errors(void **state) {
  fx *f = *state;
  char err[512];
  open_fails(f, "redis://127.0.0.1:0/0", RESIL_EINVAL, "port", err, sizeof err);
  open_fails(f, "redis://127.0.0.1:70000/0", RESIL_EINVAL, "port", err, sizeof err);
  open_fails(f, "redis://127.0.0.1:12a/0", RESIL_EINVAL, "port", err, sizeof err);
  open_fails(f, "redis://127.0.0.1:6379/x", RESIL_EINVAL, "database", err, sizeof err);
  open_fails(f, "redis:///0", RESIL_EINVAL, "host", err, sizeof err);
  open_fails(f, "redis://:6379/0", RESIL_EINVAL, "host", err, sizeof err);
  open_fails(f, "redis:127.0.0.1", RESIL_EINVAL, "redis://", err, sizeof err);
  open_fails(f, "redis://h/0?nope=1", RESIL_EINVAL, "unknown parameter 'nope'", err, sizeof err);
  open_fails(f, "redis://h/0?prefix=", RESIL_EINVAL, "needs a value", err, sizeof err);
  open_fails(f, "redis://h/0?prefix=a&prefix=b", RESIL_EINVAL, "twice", err, sizeof err);
  open_fails(f, "redis://h/0?timeout=0", RESIL_EINVAL, "milliseconds", err, sizeof err);
  open_fails(f, "redis://h/0?connect_timeout=-5", RESIL_EINVAL, "milliseconds", err, sizeof err);
  open_fails(f, "redis://h/0?prefix=%zz", RESIL_EINVAL, "escape", err, sizeof err);
  open_fails(f, "redis://user@h/0", RESIL_EINVAL, "password", err, sizeof err);
  open_fails(f, "redis://user:@h/0", RESIL_EINVAL, "password", err, sizeof err);
  open_fails(f, "redis://[::1/0", RESIL_EINVAL, "IPv6", err, sizeof err);
  char long_prefix[400];
  snprintf(long_prefix, sizeof long_prefix, "redis://h/0?prefix=%0250d", 7);
  open_fails(f, long_prefix, RESIL_EINVAL, "prefix", err, sizeof err);
  open_fails(f, "rediss://127.0.0.1:6380/0", RESIL_EUNSUPPORTED, "TLS", err, sizeof err);
  open_fails(f, "REDISS://127.0.0.1:6380/0", RESIL_EUNSUPPORTED, "TLS", err, sizeof err);
}

/* Upper-case scheme and parameter names, %XX in the prefix, the default
 * database: all fine. */
static void test_url_forms(void **state) {
  fx *f = *state;
  char url[600];
  const char *rest = base_url + strlen("redis");
  snprintf(url, sizeof url, "REDIS%s?PREFIX=%s%%3Aesc&Timeout=3000", rest, f->prefix);
  resil_store *s = open_ok(f, url);
  take(s, "scope", "k");
  resil_store_close(s);
  char prefix2[128];
  snprintf(prefix2, sizeof prefix2, "%s:esc", f->prefix);
  assert_int_equal(count_prefix(prefix2), 1);
  drop_prefix(prefix2);
}

/* ---- failing closed ---------------------------------------------------------------------- */

/* Nothing listens: RESIL_ESTORE at once, with a message naming the server. */
static void test_unreachable_fails_fast(void **state) {
  fx *f = *state;
  char url[128], err[512];
  int p = closed_port();
  snprintf(url, sizeof url, "redis://127.0.0.1:%d/0?connect_timeout=500", p);
  double t0 = now_s();
  open_fails(f, url, RESIL_ESTORE, "cannot connect", err, sizeof err);
  assert_true(now_s() - t0 < 2.0);
  char where[64];
  snprintf(where, sizeof where, "127.0.0.1:%d", p);
  assert_non_null(strstr(err, where));
}

/* A server that accepts and never answers: the command timeout ends it. */
static void test_silent_server_times_out(void **state) {
  fx *f = *state;
  int fd;
  int p = silent_port(&fd);
  char url[128], err[512];
  snprintf(url, sizeof url, "redis://127.0.0.1:%d/0?timeout=200&connect_timeout=500", p);
  double t0 = now_s();
  open_fails(f, url, RESIL_ESTORE, "timeout=200ms", err, sizeof err);
  double took = now_s() - t0;
  assert_true(took >= 0.15);
  assert_true(took < 3.0);
  close(fd);
}

/* The server stops answering after open (CLIENT PAUSE): calls fail closed
 * within the timeout, and work again once it answers. */
static void test_paused_server_fails_closed(void **state) {
  fx *f = *state;
  char url[600];
  snprintf(url, sizeof url, "%s&timeout=200", f->url);
  resil_store *s = open_ok(f, url);
  take(s, "scope", "before");
  redisContext *a = admin();
  freeReplyObject(cmd(a, "CLIENT PAUSE 1500 ALL"));
  double t0 = now_s();
  resil_claim_result r;
  assert_int_equal(resil_store_claim(s, "scope", "during", FP, LEASE, &r), RESIL_ESTORE);
  double took = now_s() - t0;
  assert_int_equal(r.status, RESIL_CLAIM_IN_PROGRESS); /* fail closed */
  assert_int_equal(r.token, 0);
  assert_non_null(strstr(resil_store_errmsg(s), "timeout=200ms"));
  assert_true(took < 1.4); /* two tries of 200 ms, not the whole pause */
  /* After the pause: answers again, on a new connection. */
  while (now_s() - t0 < 1.7) usleep(50 * 1000);
  take(s, "scope", "after");
  resil_store_close(s);
  redisFree(a);
}

/* CLIENT KILL drops the pooled connections; the next calls reconnect. */
static void test_reconnect_after_client_kill(void **state) {
  fx *f = *state;
  resil_store *s = open_ok(f, f->url);
  uint64_t t = take(s, "scope", "k");
  redisContext *a = admin();
  redisReply *r = cmd(a, "CLIENT KILL TYPE normal SKIPME yes");
  assert_true(r->type == REDIS_REPLY_INTEGER && r->integer >= 1);
  freeReplyObject(r);
  complete_ok(s, "scope", "k", t, "after the kill");
  assert_int_equal(peek(s, "scope", "k"), RESIL_CLAIM_REPLAY);
  /* Every operation reconnects, purge included. */
  freeReplyObject(cmd(a, "CLIENT KILL TYPE normal SKIPME yes"));
  assert_int_equal(resil_store_purge(s, NULL), RESIL_OK);
  freeReplyObject(cmd(a, "CLIENT KILL TYPE normal SKIPME yes"));
  uint64_t t2 = take(s, "scope", "k2");
  freeReplyObject(cmd(a, "CLIENT KILL TYPE normal SKIPME yes"));
  assert_int_equal(resil_store_release(s, "scope", "k2", t2), RESIL_OK);
  resil_store_close(s);
  redisFree(a);
}

/* The connection breaks after Redis ran the script but before its answer
 * arrived. The store reconnects and repeats with the same token; the
 * script recognises it, so the caller gets what the first attempt did:
 * its own claim (not someone else's IN_PROGRESS), its completion, its
 * release. */
static void test_lost_reply_is_recognised(void **state) {
  fx *f = *state;
  tcp_proxy *px;
  assert_int_equal(tcp_proxy_start(&px, port), 0);
  char url[600];
  snprintf(url, sizeof url, "redis://127.0.0.1:%d/0?prefix=%s", tcp_proxy_port(px), f->prefix);
  resil_store *s = open_ok(f, url);
  resil_store *direct = open_ok(f, f->url);

  tcp_proxy_drop_replies(px, 1);
  resil_claim_result r;
  assert_int_equal(resil_store_claim(s, "scope", "k", FP, LEASE, &r), RESIL_OK);
  assert_int_equal(tcp_proxy_dropped(px), 1);
  assert_int_equal(r.status, RESIL_CLAIM_CLAIMED);
  assert_int_equal(r.lease_expires, WALL0 + LEASE);
  uint64_t t = r.token;
  resil_claim_result_clear(&r);
  assert_int_equal(peek(direct, "scope", "k"), RESIL_CLAIM_IN_PROGRESS);

  tcp_proxy_drop_replies(px, 1);
  complete_ok(s, "scope", "k", t, "stored once");
  assert_int_equal(tcp_proxy_dropped(px), 2);
  assert_int_equal(peek(direct, "scope", "k"), RESIL_CLAIM_REPLAY);
  /* Without a lost answer the same token is spent, as always. */
  resil_stored_response again = {200, NULL, 0, "x", 1};
  assert_int_equal(resil_store_complete(s, "scope", "k", t, &again, TTL), RESIL_ESTORE);

  uint64_t t2 = take(s, "scope", "k2");
  tcp_proxy_drop_replies(px, 1);
  assert_int_equal(resil_store_release(s, "scope", "k2", t2), RESIL_OK);
  assert_int_equal(tcp_proxy_dropped(px), 3);
  take(direct, "scope", "k2");

  /* Both attempts lose their answer: fail closed. The claim did happen, so
   * the key is held (by a token nobody knows) until its lease ends. */
  tcp_proxy_drop_replies(px, 2);
  assert_int_equal(resil_store_claim(s, "scope", "k3", FP, LEASE, &r), RESIL_ESTORE);
  assert_int_equal(tcp_proxy_dropped(px), 5);
  assert_int_equal(r.status, RESIL_CLAIM_IN_PROGRESS);
  assert_int_equal(r.token, 0);
  assert_int_equal(peek(direct, "scope", "k3"), RESIL_CLAIM_IN_PROGRESS);
  resil_fakeclock_advance(f->fc, LEASE);
  take(s, "scope", "k3"); /* and then it is free again */
  resil_store_close(s);
  resil_store_close(direct);
  tcp_proxy_stop(px);
}

/* SCRIPT FLUSH (or a failover to a replica that never loaded them): EVAL. */
static void test_noscript_falls_back_to_eval(void **state) {
  fx *f = *state;
  resil_store *s = open_ok(f, f->url);
  redisContext *a = admin();
  freeReplyObject(cmd(a, "SCRIPT FLUSH"));
  uint64_t t = take(s, "scope", "k");
  freeReplyObject(cmd(a, "SCRIPT FLUSH"));
  complete_ok(s, "scope", "k", t, "x");
  freeReplyObject(cmd(a, "SCRIPT FLUSH"));
  assert_int_equal(peek(s, "scope", "k"), RESIL_CLAIM_REPLAY);
  freeReplyObject(cmd(a, "SCRIPT FLUSH"));
  assert_int_equal(resil_store_purge(s, NULL), RESIL_OK);
  resil_store_close(s);
  redisFree(a);
}

/* ---- data layout ------------------------------------------------------------------------- */

/* PREFIX <len(scope)>:SCOPE KEY, a hash with the documented fields, and a
 * real expiry of the remaining lease / TTL plus the margin. */
static void test_key_layout_and_real_expiry(void **state) {
  fx *f = *state;
  resil_store *s = open_ok(f, f->url);
  uint64_t t = take(s, "tenant", "order-1");
  char key[200];
  snprintf(key, sizeof key, "%s6:tenantorder-1", f->prefix);
  redisContext *a = admin();
  redisReply *r = cmd(a, "HGET %s state", key);
  assert_int_equal(r->type, REDIS_REPLY_STRING);
  assert_string_equal(r->str, "claimed");
  freeReplyObject(r);
  r = cmd(a, "HGET %s lease_expires_ns", key);
  char want[32];
  snprintf(want, sizeof want, "%019lld", (long long)(WALL0 + LEASE));
  assert_string_equal(r->str, want);
  freeReplyObject(r);
  r = cmd(a, "PTTL %s", key);
  assert_int_equal(r->type, REDIS_REPLY_INTEGER);
  assert_true(r->integer > LEASE / RESIL_MSEC && r->integer <= LEASE / RESIL_MSEC + MARGIN_MS);
  freeReplyObject(r);

  /* The fake clock moves an hour: Redis's expiry follows the caller's
   * remaining time, not the wall clock. */
  resil_fakeclock_advance(f->fc, RESIL_HOUR);
  complete_ok(s, "tenant", "order-1", t, "done");
  r = cmd(a, "HGET %s state", key);
  assert_string_equal(r->str, "completed");
  freeReplyObject(r);
  r = cmd(a, "HEXISTS %s lease_expires_ns", key);
  assert_int_equal(r->integer, 0);
  freeReplyObject(r);
  r = cmd(a, "PTTL %s", key);
  assert_true(r->integer > TTL / RESIL_MSEC && r->integer <= TTL / RESIL_MSEC + MARGIN_MS);
  freeReplyObject(r);
  r = cmd(a, "HGET %s token", key);
  char tok[32];
  snprintf(tok, sizeof tok, "%llu", (unsigned long long)t);
  assert_string_equal(r->str, tok);
  freeReplyObject(r);
  resil_store_close(s);
  redisFree(a);
}

/* Two prefixes on one server never meet: claims, responses and purge. */
static void test_prefix_isolation(void **state) {
  fx *f = *state;
  char url_b[512], prefix_b[64];
  url_with(url_b, sizeof url_b, prefix_b, sizeof prefix_b, "");
  resil_store *a = open_ok(f, f->url);
  resil_store *b = open_ok(f, url_b);
  uint64_t ta = take(a, "scope", "k");
  uint64_t tb = take(b, "scope", "k");
  complete_ok(a, "scope", "k", ta, "a's");
  assert_int_equal(peek(b, "scope", "k"), RESIL_CLAIM_IN_PROGRESS);
  assert_int_equal(resil_store_complete(b, "scope", "k", ta, &(resil_stored_response){200, NULL, 0, "x", 1}, TTL),
                   RESIL_ESTORE);
  take(b, "scope", "short");
  resil_fakeclock_advance(f->fc, LEASE);
  uint64_t n = 99;
  assert_int_equal(resil_store_purge(a, &n), RESIL_OK);
  assert_int_equal(n, 0); /* a holds only an unexpired record */
  assert_int_equal(count_prefix(prefix_b), 2);
  assert_int_equal(resil_store_purge(b, &n), RESIL_OK);
  assert_int_equal(n, 2); /* b's two claims */
  assert_int_equal(count_prefix(prefix_b), 0);
  assert_int_equal(peek(a, "scope", "k"), RESIL_CLAIM_REPLAY);
  (void)tb;
  resil_store_close(a);
  resil_store_close(b);
  drop_prefix(prefix_b);
}

/* Prefixes with glob characters are matched literally by purge. */
static void test_prefix_with_glob_characters(void **state) {
  fx *f = *state;
  /* "P*[x]?" and "PZxQ": the second matches the first as a glob. */
  char url[600], url2[600];
  snprintf(url, sizeof url, "%s?prefix=%s%%2A%%5Bx%%5D%%3F", base_url, f->prefix);
  snprintf(url2, sizeof url2, "%s?prefix=%sZxQ", base_url, f->prefix);
  resil_store *s = open_ok(f, url);
  resil_store *o = open_ok(f, url2);
  take(s, "scope", "k");
  take(o, "scope", "k");
  resil_fakeclock_advance(f->fc, LEASE);
  uint64_t n = 0;
  assert_int_equal(resil_store_purge(s, &n), RESIL_OK);
  assert_int_equal(n, 1);
  assert_int_equal(peek(o, "scope", "k"), RESIL_CLAIM_CLAIMED); /* expired, not purged */
  resil_store_close(s);
  resil_store_close(o); /* teardown drops both prefixes */
}

/* Purge never touches keys it does not understand, even under its prefix. */
static void test_purge_skips_foreign_keys(void **state) {
  fx *f = *state;
  resil_store *s = open_ok(f, f->url);
  redisContext *a = admin();
  char k1[200], k2[200];
  snprintf(k1, sizeof k1, "%s5:plainstring", f->prefix);
  snprintf(k2, sizeof k2, "%s3:abchash", f->prefix);
  freeReplyObject(cmd(a, "SET %s v", k1));
  freeReplyObject(cmd(a, "HSET %s state weird", k2));
  take(s, "scope", "k");
  resil_fakeclock_advance(f->fc, LEASE);
  uint64_t n = 0;
  assert_int_equal(resil_store_purge(s, &n), RESIL_OK);
  assert_int_equal(n, 1);
  assert_int_equal(count_prefix(f->prefix), 2);
  resil_store_close(s);
  redisFree(a);
}

/* Damaged records make that key's claim fail closed; never CLAIMED. */
static void test_damaged_records(void **state) {
  fx *f = *state;
  resil_store *s = open_ok(f, f->url);
  redisContext *a = admin();
  char key[200];
  struct {
    const char *what, *cmd;
  } cases[] = {
      {"bad lease", "HSET %s state claimed fingerprint x token 1 lease_expires_ns 12"},
      {"no token", "HSET %s state completed fingerprint x expires_at_ns 9999999999999999999"},
      {"bad state", "HSET %s state gone fingerprint x token 1"},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    snprintf(key, sizeof key, "%s5:scopek%zu", f->prefix, i);
    freeReplyObject(cmd(a, cases[i].cmd, key));
    char k[16];
    snprintf(k, sizeof k, "k%zu", i);
    resil_claim_result r;
    assert_int_equal(resil_store_claim(s, "scope", k, FP, LEASE, &r), RESIL_ESTORE);
    assert_int_equal(r.status, RESIL_CLAIM_IN_PROGRESS);
    assert_int_equal(r.token, 0);
    assert_non_null(strstr(resil_store_errmsg(s), "malformed"));
  }
  /* Not a hash at all. */
  snprintf(key, sizeof key, "%s5:scopestr", f->prefix);
  freeReplyObject(cmd(a, "SET %s v", key));
  resil_claim_result r;
  assert_int_equal(resil_store_claim(s, "scope", "str", FP, LEASE, &r), RESIL_ESTORE);
  assert_non_null(strstr(resil_store_errmsg(s), "WRONGTYPE"));
  /* A completed record whose headers are damaged. */
  snprintf(key, sizeof key, "%s5:scopehdr", f->prefix);
  freeReplyObject(cmd(a, "HSET %s state completed fingerprint %b token 5 status 200 "
                         "headers %b body x expires_at_ns 9000000000000000000",
                      key, FP, (size_t)RESIL_FINGERPRINT_SIZE, "\x09\x00", (size_t)2));
  assert_int_equal(resil_store_claim(s, "scope", "hdr", FP, LEASE, &r), RESIL_ESTORE);
  assert_non_null(strstr(resil_store_errmsg(s), "headers"));
  resil_store_close(s);
  redisFree(a);
}

/* ---- AUTH, databases, fork ------------------------------------------------------------- */

static void test_auth_and_database(void **state) {
  fx *f = *state;
  redisContext *a = admin();
  char user[64];
  snprintf(user, sizeof user, "resil-test-%016llx", (unsigned long long)random_id());
  freeReplyObject(cmd(a, "ACL SETUSER %s on >s3cret%%pass ~* +@all", user));
  char url[700], err[512];
  snprintf(url, sizeof url, "redis://%s:s3cret%%25pass@%s:%d/3?prefix=%s", user, host, port,
           f->prefix);
  resil_store *s = open_ok(f, url);
  take(s, "scope", "k");
  resil_store_close(s);
  /* It went to database 3, not 0. */
  assert_int_equal(count_prefix(f->prefix), 0);
  freeReplyObject(cmd(a, "SELECT 3"));
  char key[200];
  snprintf(key, sizeof key, "%s5:scopek", f->prefix);
  redisReply *r = cmd(a, "EXISTS %s", key);
  assert_int_equal(r->integer, 1);
  freeReplyObject(r);
  freeReplyObject(cmd(a, "DEL %s", key));
  freeReplyObject(cmd(a, "SELECT 0"));

  /* A wrong password: ESTORE, and the password is not in the message. */
  snprintf(url, sizeof url, "redis://%s:wrongpw@%s:%d/0", user, host, port);
  open_fails(f, url, RESIL_ESTORE, "cannot authenticate", err, sizeof err);
  assert_null(strstr(err, "wrongpw"));
  /* A database that does not exist. */
  snprintf(url, sizeof url, "redis://%s:%d/100000", host, port);
  open_fails(f, url, RESIL_ESTORE, "database 100000", err, sizeof err);
  cmd_free(a, "ACL DELUSER %s", user);
  redisFree(a);
}

static void test_after_fork(void **state) {
  fx *f = *state;
  resil_store *s = open_ok(f, f->url);
  take(s, "scope", "parent");
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    resil_claim_result r;
    resil_err rc = resil_store_claim(s, "scope", "child", FP, LEASE, &r);
    _exit(rc == RESIL_ESTORE && r.status == RESIL_CLAIM_IN_PROGRESS &&
                  strstr(resil_store_errmsg(s), "fork") != NULL
              ? 0
              : 1);
  }
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  take(s, "scope", "still-works");
  resil_store_close(s);
}

/* ---- main --------------------------------------------------------------------------------- */

/* RESIL_TEST_REDIS_URL, or why not (then exit 77: skipped). */
static int available(void) {
  base_url = getenv("RESIL_TEST_REDIS_URL");
  const char *dir = getenv("RESIL_TEST_SERVICES_DIR");
  if (dir != NULL && *dir) {
    char path[1024], why[512] = "";
    snprintf(path, sizeof path, "%s/redis.skip", dir);
    FILE *fp = fopen(path, "r");
    if (fp != NULL) {
      if (fgets(why, sizeof why, fp) == NULL) why[0] = '\0';
      fclose(fp);
      printf("SKIPPED: no Redis for these tests: %s", why);
      return 0;
    }
  }
  if (base_url == NULL || *base_url == '\0') {
    printf("SKIPPED: RESIL_TEST_REDIS_URL is not set (eval \"$(tests/services.sh env DIR)\" "
           "after tests/services.sh start DIR)\n");
    return 0;
  }
  if (strchr(base_url, '?') != NULL || strchr(base_url, '@') != NULL ||
      sscanf(base_url, "redis://%127[^:/]:%d", host, &port) != 2) {
    printf("RESIL_TEST_REDIS_URL must look like redis://HOST:PORT/DB, not '%s'\n", base_url);
    exit(1);
  }
  return 1;
}

int main(void) {
  if (!available()) return 77;
  printf("store tests against Redis at %s\n", base_url);
  int failed = 0;
  store_target redis = {"redis://", "redis", conf_url, conf_remove, 1, NULL};
  failed += store_conformance_run(&redis);

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_url_errors),
      T(test_url_forms),
      T(test_unreachable_fails_fast),
      T(test_silent_server_times_out),
      T(test_paused_server_fails_closed),
      T(test_reconnect_after_client_kill),
      T(test_lost_reply_is_recognised),
      T(test_noscript_falls_back_to_eval),
      T(test_key_layout_and_real_expiry),
      T(test_prefix_isolation),
      T(test_prefix_with_glob_characters),
      T(test_purge_skips_foreign_keys),
      T(test_damaged_records),
      T(test_auth_and_database),
      T(test_after_fork),
  };
#undef T
  failed += cmocka_run_group_tests_name("redis store", tests, NULL, NULL);
  return failed;
}
