/* The idempotency store conformance suite; see store_conformance.h.
 *
 * Every test runs on a fresh store opened with a fake wall clock, so leases
 * and TTLs are exact to the nanosecond: "lease - 1 ns" is still held,
 * "lease" is not. */
#define _POSIX_C_SOURCE 200809L
#include "store_conformance.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resil/resil.h"
#include "test_util.h"

#define WALL0 ((resil_ns)1700000000 * RESIL_SEC) /* the fake clock's start */
#define LEASE (30 * RESIL_SEC)
#define TTL RESIL_HOUR
#define THREADS 16

typedef struct fx {
  const store_target *t;
  resil_fakeclock *fc;
  resil_store *s;
  char url[4200];
  char scope[48], scope2[48]; /* random per test: shared servers stay clean */
} fx;

/* ---- fixture ----------------------------------------------------------------- */

static resil_store *open_url(fx *f) {
  resil_store_options o;
  resil_store_options_init(&o);
  o.clock = resil_fakeclock_wallclock(f->fc);
  char err[256];
  resil_store *s = NULL;
  resil_err rc = resil_store_open(&s, f->url, &o, err, sizeof err);
  if (rc != RESIL_OK) fprintf(stderr, "open %s: %s (%s)\n", f->url, err, resil_err_name(rc));
  assert_int_equal(rc, RESIL_OK);
  assert_non_null(s);
  return s;
}

static int setup(void **state) {
  fx *f = calloc(1, sizeof *f);
  if (f == NULL) return -1;
  f->t = *state;
  if (resil_fakeclock_new(&f->fc, 0, WALL0) != RESIL_OK) return -1;
  if (f->t->make_url(f->t->ud, f->url, sizeof f->url) != 0) return -1;
  resil_rng rng;
  resil_rng_seed_os(&rng);
  uint64_t id = resil_rng_next(&rng);
  snprintf(f->scope, sizeof f->scope, "conf-%016llx-a", (unsigned long long)id);
  snprintf(f->scope2, sizeof f->scope2, "conf-%016llx-b", (unsigned long long)id);
  *state = f;
  f->s = open_url(f);
  return 0;
}

static int teardown(void **state) {
  fx *f = *state;
  resil_store_close(f->s);
  if (f->t->remove_url) f->t->remove_url(f->t->ud, f->url);
  resil_fakeclock_free(f->fc);
  free(f);
  return 0;
}

static resil_ns now_of(fx *f) {
  resil_wallclock w = resil_fakeclock_wallclock(f->fc);
  return w.now(w.ud);
}

static void advance(fx *f, resil_ns d) { resil_fakeclock_advance(f->fc, d); }

/* ---- helpers ----------------------------------------------------------------- */

typedef struct fpr {
  uint8_t b[RESIL_FINGERPRINT_SIZE];
} fpr;

static fpr fp(int n) {
  fpr x;
  for (int i = 0; i < RESIL_FINGERPRINT_SIZE; i++) x.b[i] = (uint8_t)(n * 31 + i);
  return x;
}

/* claim, which must succeed; the caller clears r. */
static resil_claim_status claim_in(fx *f, const char *scope, const char *key, int fpn,
                                   resil_ns lease, resil_claim_result *r) {
  fpr x = fp(fpn);
  resil_err rc = resil_store_claim(f->s, scope, key, x.b, lease, r);
  if (rc != RESIL_OK) fprintf(stderr, "claim: %s\n", resil_store_errmsg(f->s));
  assert_int_equal(rc, RESIL_OK);
  return r->status;
}

static resil_claim_status claim(fx *f, const char *key, int fpn, resil_claim_result *r) {
  return claim_in(f, f->scope, key, fpn, LEASE, r);
}

/* The status alone (the result is cleared). */
static resil_claim_status peek_in(fx *f, const char *scope, const char *key, int fpn) {
  resil_claim_result r;
  resil_claim_status st = claim_in(f, scope, key, fpn, LEASE, &r);
  resil_claim_result_clear(&r);
  return st;
}

static resil_claim_status peek(fx *f, const char *key, int fpn) {
  return peek_in(f, f->scope, key, fpn);
}

/* Claim, which must be CLAIMED; the token. */
static uint64_t take_in(fx *f, const char *scope, const char *key, int fpn, resil_ns lease) {
  resil_claim_result r;
  assert_int_equal(claim_in(f, scope, key, fpn, lease, &r), RESIL_CLAIM_CLAIMED);
  assert_true(r.token != 0);
  assert_int_equal(r.lease_expires, resil_ns_add(now_of(f), lease));
  assert_null(r.owned_);
  uint64_t t = r.token;
  resil_claim_result_clear(&r);
  return t;
}

static uint64_t take(fx *f, const char *key, int fpn) { return take_in(f, f->scope, key, fpn, LEASE); }

static const resil_http_header HDRS[] = {
    {"Content-Type", "application/octet-stream"},
    {"Location", "/orders/42"},
    {"X-Empty", ""},
};
static const unsigned char BODY[] = {'o', 'k', 0, 1, 0, 0, 0xff, 0x80, '\n', 0};

static resil_stored_response resp(int status, const char *body_text) {
  resil_stored_response r;
  memset(&r, 0, sizeof r);
  r.status = status;
  if (body_text) {
    r.body = body_text;
    r.body_len = strlen(body_text);
  } else {
    r.headers = HDRS;
    r.n_headers = ARRAY_LEN(HDRS);
    r.body = BODY;
    r.body_len = sizeof BODY;
  }
  return r;
}

static resil_err complete_in(fx *f, const char *scope, const char *key, uint64_t token,
                             const resil_stored_response *r, resil_ns ttl) {
  return resil_store_complete(f->s, scope, key, token, r, ttl);
}

static void complete_ok(fx *f, const char *key, uint64_t token, int status, const char *body) {
  resil_stored_response r = resp(status, body);
  resil_err rc = complete_in(f, f->scope, key, token, &r, TTL);
  if (rc != RESIL_OK) fprintf(stderr, "complete: %s\n", resil_store_errmsg(f->s));
  assert_int_equal(rc, RESIL_OK);
}

/* The key replays exactly this response. */
static void assert_replays_in(fx *f, const char *scope, const char *key, int fpn,
                              const resil_stored_response *want) {
  resil_claim_result r;
  assert_int_equal(claim_in(f, scope, key, fpn, LEASE, &r), RESIL_CLAIM_REPLAY);
  assert_int_equal(r.token, 0);
  assert_int_equal(r.response.status, want->status);
  assert_int_equal(r.response.n_headers, want->n_headers);
  for (size_t i = 0; i < want->n_headers; i++) {
    assert_string_equal(r.response.headers[i].name, want->headers[i].name);
    assert_string_equal(r.response.headers[i].value, want->headers[i].value);
  }
  assert_int_equal(r.response.body_len, want->body_len);
  assert_non_null(r.response.body);
  if (want->body_len) assert_memory_equal(r.response.body, want->body, want->body_len);
  assert_int_equal(((const char *)r.response.body)[r.response.body_len], '\0');
  assert_non_null(r.owned_);
  resil_claim_result_clear(&r);
  assert_null(r.owned_);
}

static void assert_replays(fx *f, const char *key, int fpn, int status, const char *body) {
  resil_stored_response want = resp(status, body);
  assert_replays_in(f, f->scope, key, fpn, &want);
}

/* ---- round trips ---------------------------------------------------------------- */

static void test_name(void **state) {
  fx *f = *state;
  assert_string_equal(resil_store_name(f->s), f->t->backend);
}

/* claim -> CLAIMED; complete; claim -> REPLAY with status, headers and a
 * binary body with NULs, as often as asked. */
static void test_round_trip(void **state) {
  fx *f = *state;
  uint64_t t = take(f, "order-1", 1);
  complete_ok(f, "order-1", t, 201, NULL);
  assert_replays(f, "order-1", 1, 201, NULL);
  advance(f, TTL / 2);
  assert_replays(f, "order-1", 1, 201, NULL);
}

static void test_empty_response(void **state) {
  fx *f = *state;
  uint64_t t = take(f, "k", 1);
  resil_stored_response r = {204, NULL, 0, NULL, 0};
  assert_int_equal(complete_in(f, f->scope, "k", t, &r, TTL), RESIL_OK);
  resil_claim_result c;
  assert_int_equal(claim(f, "k", 1, &c), RESIL_CLAIM_REPLAY);
  assert_int_equal(c.response.status, 204);
  assert_int_equal(c.response.n_headers, 0);
  assert_int_equal(c.response.body_len, 0);
  assert_non_null(c.response.body);
  resil_claim_result_clear(&c);
}

/* A 1 MiB body and 40 headers survive byte for byte. */
static void test_large_response(void **state) {
  fx *f = *state;
  size_t n = (size_t)1 << 20;
  unsigned char *body = malloc(n);
  assert_non_null(body);
  for (size_t i = 0; i < n; i++) body[i] = (unsigned char)(i * 7 + (i >> 9));
  resil_http_header h[40];
  char names[40][16], values[40][64];
  for (int i = 0; i < 40; i++) {
    snprintf(names[i], sizeof names[i], "X-H%d", i);
    snprintf(values[i], sizeof values[i], "%.*s", i, "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv");
    h[i].name = names[i];
    h[i].value = values[i];
  }
  resil_stored_response r = {200, h, 40, body, n};
  uint64_t t = take(f, "big", 1);
  assert_int_equal(complete_in(f, f->scope, "big", t, &r, TTL), RESIL_OK);
  assert_replays_in(f, f->scope, "big", 1, &r);
  free(body);
}

/* ---- leases --------------------------------------------------------------------- */

static void test_in_progress_while_held(void **state) {
  fx *f = *state;
  resil_ns lease_end = now_of(f) + LEASE;
  take(f, "k", 1);
  advance(f, LEASE / 2);
  resil_claim_result r;
  assert_int_equal(claim(f, "k", 1, &r), RESIL_CLAIM_IN_PROGRESS);
  assert_int_equal(r.lease_expires, lease_end); /* the holder's, not a new one */
  assert_int_equal(r.token, 0);
  assert_null(r.owned_);
  resil_claim_result_clear(&r);
}

/* Reclaimable at lease_expires exactly, never a nanosecond before. */
static void test_reclaim_only_after_lease(void **state) {
  fx *f = *state;
  uint64_t t1 = take(f, "k", 1);
  advance(f, LEASE - 1);
  assert_int_equal(peek(f, "k", 1), RESIL_CLAIM_IN_PROGRESS);
  advance(f, 1);
  uint64_t t2 = take(f, "k", 1);
  assert_true(t2 != t1);
  /* The new owner's lease runs from now. */
  advance(f, LEASE - 1);
  assert_int_equal(peek(f, "k", 1), RESIL_CLAIM_IN_PROGRESS);
}

/* After a takeover the old holder can neither complete nor release, and its
 * attempts change nothing. */
static void test_stale_token_changes_nothing(void **state) {
  fx *f = *state;
  uint64_t old = take(f, "k", 1);
  advance(f, LEASE);
  resil_ns second_lease_end = now_of(f) + LEASE;
  uint64_t cur = take(f, "k", 1);

  resil_stored_response r = resp(200, "from the slow holder");
  assert_int_equal(complete_in(f, f->scope, "k", old, &r, TTL), RESIL_ESTORE);
  assert_true(strlen(resil_store_errmsg(f->s)) > 0);
  assert_int_equal(resil_store_release(f->s, f->scope, "k", old), RESIL_ESTORE);

  resil_claim_result c;
  assert_int_equal(claim(f, "k", 1, &c), RESIL_CLAIM_IN_PROGRESS);
  assert_int_equal(c.lease_expires, second_lease_end);
  resil_claim_result_clear(&c);

  complete_ok(f, "k", cur, 201, "from the owner");
  assert_int_equal(complete_in(f, f->scope, "k", old, &r, TTL), RESIL_ESTORE);
  assert_replays(f, "k", 1, 201, "from the owner");
}

/* A holder whose lease ran out still owns the key until someone takes over. */
static void test_complete_after_lease_before_takeover(void **state) {
  fx *f = *state;
  uint64_t t = take(f, "k", 1);
  advance(f, LEASE + RESIL_SEC);
  complete_ok(f, "k", t, 200, "late but first");
  assert_replays(f, "k", 1, 200, "late but first");

  uint64_t t2 = take(f, "k2", 1);
  advance(f, LEASE);
  assert_int_equal(resil_store_release(f->s, f->scope, "k2", t2), RESIL_OK);
  take(f, "k2", 1);
}

/* A token works once; made-up tokens never do. */
static void test_token_used_once(void **state) {
  fx *f = *state;
  resil_stored_response r = resp(200, "first");
  resil_stored_response r2 = resp(500, "second");
  uint64_t t = take(f, "k", 1);
  assert_int_equal(complete_in(f, f->scope, "k", t ^ 1, &r2, TTL), RESIL_ESTORE);
  assert_int_equal(complete_in(f, f->scope, "k", 0, &r2, TTL), RESIL_ESTORE);
  assert_int_equal(resil_store_release(f->s, f->scope, "k", t + 1), RESIL_ESTORE);
  assert_int_equal(complete_in(f, f->scope, "k", t, &r, TTL), RESIL_OK);
  assert_int_equal(complete_in(f, f->scope, "k", t, &r2, TTL), RESIL_ESTORE);
  assert_int_equal(resil_store_release(f->s, f->scope, "k", t), RESIL_ESTORE);
  assert_replays(f, "k", 1, 200, "first");

  /* Unknown keys. */
  assert_int_equal(complete_in(f, f->scope, "nope", t, &r, TTL), RESIL_ESTORE);
  assert_int_equal(resil_store_release(f->s, f->scope, "nope", t), RESIL_ESTORE);

  /* Released: the token is spent. */
  uint64_t t2 = take(f, "k2", 1);
  assert_int_equal(resil_store_release(f->s, f->scope, "k2", t2), RESIL_OK);
  assert_int_equal(resil_store_release(f->s, f->scope, "k2", t2), RESIL_ESTORE);
  assert_int_equal(complete_in(f, f->scope, "k2", t2, &r, TTL), RESIL_ESTORE);
}

/* ---- fingerprints ----------------------------------------------------------------- */

static void test_mismatch(void **state) {
  fx *f = *state;
  uint64_t t = take(f, "k", 1);
  complete_ok(f, "k", t, 200, NULL);
  resil_claim_result r;
  assert_int_equal(claim(f, "k", 2, &r), RESIL_CLAIM_MISMATCH);
  assert_int_equal(r.token, 0);
  assert_null(r.owned_);
  resil_claim_result_clear(&r);
  /* Nothing changed. */
  assert_replays(f, "k", 1, 200, NULL);
}

static void test_mismatch_in_progress(void **state) {
  fx *f = *state;
  take(f, "k", 1);
  assert_int_equal(peek(f, "k", 2), RESIL_CLAIM_MISMATCH);
  assert_int_equal(peek(f, "k", 1), RESIL_CLAIM_IN_PROGRESS);
  advance(f, LEASE - 1);
  assert_int_equal(peek(f, "k", 2), RESIL_CLAIM_MISMATCH);
}

/* Expired claims and records count as absent, whatever their fingerprint. */
static void test_expired_is_absent(void **state) {
  fx *f = *state;
  take(f, "claim", 1);
  uint64_t t = take(f, "rec", 1);
  resil_stored_response r = resp(200, "x");
  assert_int_equal(complete_in(f, f->scope, "rec", t, &r, LEASE), RESIL_OK);
  advance(f, LEASE);
  take(f, "claim", 2);
  take(f, "rec", 2);
  assert_int_equal(peek(f, "claim", 1), RESIL_CLAIM_MISMATCH);
  assert_int_equal(peek(f, "rec", 1), RESIL_CLAIM_MISMATCH);
}

/* ---- release, TTL, purge ------------------------------------------------------------- */

static void test_release_lets_retry(void **state) {
  fx *f = *state;
  uint64_t t1 = take(f, "k", 1);
  assert_int_equal(resil_store_release(f->s, f->scope, "k", t1), RESIL_OK);
  uint64_t t2 = take(f, "k", 1);
  assert_true(t2 != t1);
  assert_int_equal(resil_store_release(f->s, f->scope, "k", t1), RESIL_ESTORE);
  complete_ok(f, "k", t2, 200, "second try");
  assert_replays(f, "k", 1, 200, "second try");
  /* A released key can be claimed with another fingerprint. */
  uint64_t t3 = take(f, "k3", 1);
  assert_int_equal(resil_store_release(f->s, f->scope, "k3", t3), RESIL_OK);
  take(f, "k3", 2);
}

static void test_ttl_expiry(void **state) {
  fx *f = *state;
  resil_ns ttl = 60 * RESIL_SEC;
  uint64_t t = take(f, "k", 1);
  resil_stored_response r = resp(200, "once");
  assert_int_equal(complete_in(f, f->scope, "k", t, &r, ttl), RESIL_OK);
  advance(f, ttl - 1);
  assert_replays(f, "k", 1, 200, "once");
  advance(f, 1);
  uint64_t t2 = take(f, "k", 1);
  assert_true(t2 != t);
  /* The new claim has no response of the old record. */
  assert_int_equal(peek(f, "k", 1), RESIL_CLAIM_IN_PROGRESS);
  complete_ok(f, "k", t2, 202, "twice");
  assert_replays(f, "k", 1, 202, "twice");
}

static void test_purge(void **state) {
  fx *f = *state;
  resil_stored_response r = resp(200, "p");
  uint64_t a = take(f, "done-short-1", 1), b = take(f, "done-short-2", 1);
  uint64_t c = take(f, "done-long", 1);
  take_in(f, f->scope, "claim-short", 1, 5 * RESIL_SEC);
  take_in(f, f->scope, "claim-long", 1, RESIL_HOUR);
  assert_int_equal(complete_in(f, f->scope, "done-short-1", a, &r, 10 * RESIL_SEC), RESIL_OK);
  assert_int_equal(complete_in(f, f->scope, "done-short-2", b, &r, 10 * RESIL_SEC), RESIL_OK);
  assert_int_equal(complete_in(f, f->scope, "done-long", c, &r, RESIL_HOUR), RESIL_OK);

  uint64_t n = 99;
  assert_int_equal(resil_store_purge(f->s, &n), RESIL_OK);
  assert_int_equal(n, 0);
  advance(f, 10 * RESIL_SEC);
  assert_int_equal(resil_store_purge(f->s, &n), RESIL_OK);
  assert_int_equal(n, 3);
  assert_int_equal(resil_store_purge(f->s, &n), RESIL_OK);
  assert_int_equal(n, 0);
  assert_int_equal(resil_store_purge(f->s, NULL), RESIL_OK);

  assert_replays(f, "done-long", 1, 200, "p");
  assert_int_equal(peek(f, "claim-long", 1), RESIL_CLAIM_IN_PROGRESS);
  take(f, "done-short-1", 2); /* gone: any fingerprint claims it */
  take(f, "claim-short", 2);
}

/* A purged claim's token is spent. */
static void test_purge_spends_token(void **state) {
  fx *f = *state;
  uint64_t t = take(f, "k", 1);
  advance(f, LEASE);
  uint64_t n = 0;
  assert_int_equal(resil_store_purge(f->s, &n), RESIL_OK);
  assert_int_equal(n, 1);
  resil_stored_response r = resp(200, "late");
  assert_int_equal(complete_in(f, f->scope, "k", t, &r, TTL), RESIL_ESTORE);
  assert_int_equal(resil_store_release(f->s, f->scope, "k", t), RESIL_ESTORE);
}

/* ---- scopes --------------------------------------------------------------------------- */

static void test_scope_isolation(void **state) {
  fx *f = *state;
  uint64_t ta = take_in(f, f->scope, "k", 1, LEASE);
  uint64_t tb = take_in(f, f->scope2, "k", 1, LEASE); /* independent */
  resil_stored_response ra = resp(200, "for a"), rb = resp(201, "for b");
  assert_int_equal(complete_in(f, f->scope, "k", ta, &ra, TTL), RESIL_OK);
  /* b is still in progress: it never sees a's response. */
  assert_int_equal(peek_in(f, f->scope2, "k", 1), RESIL_CLAIM_IN_PROGRESS);
  /* Tokens do not cross scopes. */
  assert_int_equal(complete_in(f, f->scope2, "k", ta, &ra, TTL), RESIL_ESTORE);
  assert_int_equal(resil_store_release(f->s, f->scope, "k", tb), RESIL_ESTORE);
  assert_int_equal(complete_in(f, f->scope2, "k", tb, &rb, TTL), RESIL_OK);
  assert_replays_in(f, f->scope, "k", 1, &ra);
  assert_replays_in(f, f->scope2, "k", 1, &rb);
  /* A key completed in one scope is fresh in a third. */
  char scope3[64];
  snprintf(scope3, sizeof scope3, "%s-c", f->scope);
  take_in(f, scope3, "k", 2, LEASE);
}

/* Scope and key are not concatenated: ("ab","c") is not ("a","bc"), and
 * separator-like characters are plain bytes. */
static void test_scope_key_boundaries(void **state) {
  fx *f = *state;
  char s1[80], s2[80];
  snprintf(s1, sizeof s1, "%s:x", f->scope);
  snprintf(s2, sizeof s2, "%s", f->scope);
  take_in(f, s1, "y", 1, LEASE);
  take_in(f, s2, "x:y", 1, LEASE);
  take_in(f, s2, ":x:y", 1, LEASE);
  char s3[80];
  snprintf(s3, sizeof s3, "%s\x1f", f->scope);
  take_in(f, s3, "k", 1, LEASE);
  take_in(f, s2, "\x1fk", 1, LEASE);
}

/* ---- arguments ------------------------------------------------------------------------ */

static void test_argument_errors(void **state) {
  fx *f = *state;
  fpr x = fp(1);
  resil_claim_result r;
  char long_name[300];
  memset(long_name, 'a', 256);
  long_name[256] = '\0';

  assert_int_equal(resil_store_claim(f->s, "", "k", x.b, LEASE, &r), RESIL_EINVAL);
  assert_int_equal(r.status, RESIL_CLAIM_IN_PROGRESS); /* fail closed */
  assert_int_equal(r.token, 0);
  assert_int_equal(resil_store_claim(f->s, f->scope, "", x.b, LEASE, &r), RESIL_EINVAL);
  assert_int_equal(resil_store_claim(f->s, long_name, "k", x.b, LEASE, &r), RESIL_EINVAL);
  assert_int_equal(resil_store_claim(f->s, f->scope, long_name, x.b, LEASE, &r), RESIL_EINVAL);
  assert_int_equal(resil_store_claim(f->s, NULL, "k", x.b, LEASE, &r), RESIL_EINVAL);
  assert_int_equal(resil_store_claim(f->s, f->scope, NULL, x.b, LEASE, &r), RESIL_EINVAL);
  assert_int_equal(resil_store_claim(f->s, f->scope, "k", NULL, LEASE, &r), RESIL_EINVAL);
  assert_int_equal(resil_store_claim(f->s, f->scope, "k", x.b, 0, &r), RESIL_EINVAL);
  assert_int_equal(resil_store_claim(f->s, f->scope, "k", x.b, -RESIL_SEC, &r), RESIL_EINVAL);
  assert_true(strlen(resil_store_errmsg(f->s)) > 0);
  assert_int_equal(resil_store_claim(f->s, f->scope, "k", x.b, LEASE, NULL), RESIL_EINVAL);
  assert_int_equal(resil_store_claim(NULL, f->scope, "k", x.b, LEASE, &r), RESIL_EINVAL);
  assert_int_equal(r.status, RESIL_CLAIM_IN_PROGRESS);

  /* None of that claimed anything. */
  uint64_t t = take(f, "k", 1);
  resil_stored_response ok = resp(200, "x");
  assert_int_equal(complete_in(f, f->scope, "k", t, &ok, 0), RESIL_EINVAL);
  assert_int_equal(complete_in(f, f->scope, "k", t, &ok, -1), RESIL_EINVAL);
  assert_int_equal(complete_in(f, f->scope, "k", t, NULL, TTL), RESIL_EINVAL);
  assert_int_equal(complete_in(f, "", "k", t, &ok, TTL), RESIL_EINVAL);
  assert_int_equal(complete_in(f, f->scope, long_name, t, &ok, TTL), RESIL_EINVAL);
  resil_stored_response bad = {200, NULL, 2, NULL, 0};
  assert_int_equal(complete_in(f, f->scope, "k", t, &bad, TTL), RESIL_EINVAL);
  resil_http_header nullv[] = {{"A", NULL}};
  resil_stored_response bad2 = {200, nullv, 1, NULL, 0};
  assert_int_equal(complete_in(f, f->scope, "k", t, &bad2, TTL), RESIL_EINVAL);
  resil_stored_response bad3 = {200, NULL, 0, NULL, 5};
  assert_int_equal(complete_in(f, f->scope, "k", t, &bad3, TTL), RESIL_EINVAL);
  assert_int_equal(resil_store_complete(NULL, f->scope, "k", t, &ok, TTL), RESIL_EINVAL);
  assert_int_equal(resil_store_release(f->s, "", "k", t), RESIL_EINVAL);
  assert_int_equal(resil_store_release(f->s, f->scope, long_name, t), RESIL_EINVAL);
  assert_int_equal(resil_store_release(NULL, f->scope, "k", t), RESIL_EINVAL);
  uint64_t n = 7;
  assert_int_equal(resil_store_purge(NULL, &n), RESIL_EINVAL);
  assert_int_equal(n, 0);
  /* And none of that touched the claim. */
  assert_int_equal(peek(f, "k", 1), RESIL_CLAIM_IN_PROGRESS);
  complete_ok(f, "k", t, 200, "x");
}

/* 255-byte scopes and keys work; any byte but NUL is part of the name. */
static void test_long_and_binary_names(void **state) {
  fx *f = *state;
  char scope[256], key[256], key2[256];
  snprintf(scope, sizeof scope, "%s", f->scope);
  memset(scope + strlen(scope), 's', 255 - strlen(scope));
  scope[255] = '\0';
  memset(key, 'k', 255);
  key[255] = '\0';
  memcpy(key2, key, sizeof key);
  key2[254] = 'K'; /* differs in the last byte only */
  uint64_t t = take_in(f, scope, key, 1, LEASE);
  take_in(f, scope, key2, 1, LEASE);
  resil_stored_response r = resp(200, "long");
  assert_int_equal(complete_in(f, scope, key, t, &r, TTL), RESIL_OK);
  assert_replays_in(f, scope, key, 1, &r);
  assert_int_equal(peek_in(f, scope, key2, 1), RESIL_CLAIM_IN_PROGRESS);

  char bin[256];
  for (int i = 0; i < 255; i++) bin[i] = (char)(i + 1); /* 0x01 .. 0xff */
  bin[255] = '\0';
  uint64_t tb = take_in(f, f->scope, bin, 1, LEASE);
  assert_int_equal(complete_in(f, f->scope, bin, tb, &r, TTL), RESIL_OK);
  assert_replays_in(f, f->scope, bin, 1, &r);
  take_in(f, f->scope, "\xc3\xa9t\xc3\xa9", 1, LEASE); /* UTF-8 */
  take_in(f, f->scope, "\xff\xfe", 1, LEASE);           /* not UTF-8 */
}

static void test_many_keys(void **state) {
  fx *f = *state;
  enum { N = 600 };
  char key[32];
  for (int i = 0; i < N; i++) {
    snprintf(key, sizeof key, "key-%d", i);
    uint64_t t = take(f, key, i);
    if (i % 3 == 0) {
      resil_stored_response r = resp(200 + i % 100, key);
      assert_int_equal(complete_in(f, f->scope, key, t, &r, TTL), RESIL_OK);
    } else if (i % 3 == 1) {
      assert_int_equal(resil_store_release(f->s, f->scope, key, t), RESIL_OK);
    }
  }
  for (int i = 0; i < N; i++) {
    snprintf(key, sizeof key, "key-%d", i);
    if (i % 3 == 0) assert_replays(f, key, i, 200 + i % 100, key);
    else if (i % 3 == 1) assert_int_equal(peek(f, key, i + 1), RESIL_CLAIM_CLAIMED);
    else assert_int_equal(peek(f, key, i), RESIL_CLAIM_IN_PROGRESS);
  }
}

/* Huge leases and TTLs saturate instead of wrapping into the past. */
static void test_saturating_times(void **state) {
  fx *f = *state;
  resil_claim_result r;
  assert_int_equal(claim_in(f, f->scope, "forever", 1, RESIL_NS_MAX, &r), RESIL_CLAIM_CLAIMED);
  assert_int_equal(r.lease_expires, RESIL_NS_MAX);
  resil_claim_result_clear(&r);
  uint64_t t = take(f, "ttl", 1);
  resil_stored_response resp1 = resp(200, "kept");
  assert_int_equal(complete_in(f, f->scope, "ttl", t, &resp1, RESIL_NS_MAX), RESIL_OK);
  advance(f, 100 * 365 * 24 * RESIL_HOUR);
  assert_int_equal(peek(f, "forever", 1), RESIL_CLAIM_IN_PROGRESS);
  assert_replays(f, "ttl", 1, 200, "kept");
  uint64_t n = 0;
  assert_int_equal(resil_store_purge(f->s, &n), RESIL_OK);
  assert_int_equal(n, 0);
}

/* ---- results ------------------------------------------------------------------------- */

static void test_result_lifetime(void **state) {
  fx *f = *state;
  resil_claim_result_clear(NULL);
  resil_claim_result z;
  memset(&z, 0, sizeof z);
  resil_claim_result_clear(&z);
  uint64_t t = take(f, "k", 1);
  complete_ok(f, "k", t, 200, "outlives the store");
  resil_claim_result r;
  assert_int_equal(claim(f, "k", 1, &r), RESIL_CLAIM_REPLAY);
  resil_store_close(f->s);
  f->s = NULL;
  assert_int_equal(r.response.body_len, strlen("outlives the store"));
  assert_memory_equal(r.response.body, "outlives the store", r.response.body_len);
  resil_claim_result_clear(&r);
  resil_claim_result_clear(&r);
  assert_string_equal(resil_claim_status_name(RESIL_CLAIM_REPLAY), "replay");
}

/* Durable backends: a new store on the same URL sees the records, the
 * unexpired claims, and still honours the holder's token. */
static void test_reopen(void **state) {
  fx *f = *state;
  if (!f->t->persistent) skip();
  uint64_t t = take(f, "done", 1);
  complete_ok(f, "done", t, 201, "durable");
  uint64_t held = take(f, "held", 1);
  resil_store_close(f->s);
  f->s = open_url(f);
  assert_replays(f, "done", 1, 201, "durable");
  assert_int_equal(peek(f, "held", 1), RESIL_CLAIM_IN_PROGRESS);
  complete_ok(f, "held", held, 200, "after reopen");
  assert_replays(f, "held", 1, 200, "after reopen");
}

/* ---- concurrency ------------------------------------------------------------------------ */

typedef struct racer {
  fx *f;
  pthread_barrier_t *go;
  const char *key;
  resil_err rc;
  resil_claim_result r;
} racer;

static void *race(void *arg) {
  racer *x = arg;
  fpr p = fp(1);
  pthread_barrier_wait(x->go);
  x->rc = resil_store_claim(x->f->s, x->f->scope, x->key, p.b, LEASE, &x->r);
  return NULL;
}

static void run_race(fx *f, const char *key, racer *rs) {
  pthread_barrier_t go;
  pthread_t th[THREADS];
  assert_int_equal(pthread_barrier_init(&go, NULL, THREADS), 0);
  for (int i = 0; i < THREADS; i++) {
    rs[i].f = f;
    rs[i].go = &go;
    rs[i].key = key;
    assert_int_equal(pthread_create(&th[i], NULL, race, &rs[i]), 0);
  }
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  pthread_barrier_destroy(&go);
}

/* 16 threads claim one key at once: exactly one wins, the rest see it in
 * progress until its lease; after complete, all replay. */
static void test_concurrent_claims(void **state) {
  fx *f = *state;
  racer rs[THREADS];
  memset(rs, 0, sizeof rs);
  run_race(f, "contended", rs);
  int claimed = -1, in_progress = 0;
  for (int i = 0; i < THREADS; i++) {
    if (rs[i].rc != RESIL_OK) fprintf(stderr, "racer %d: %s\n", i, resil_store_errmsg(f->s));
    assert_int_equal(rs[i].rc, RESIL_OK);
    if (rs[i].r.status == RESIL_CLAIM_CLAIMED) {
      assert_int_equal(claimed, -1);
      claimed = i;
    } else {
      assert_int_equal(rs[i].r.status, RESIL_CLAIM_IN_PROGRESS);
      in_progress++;
    }
  }
  assert_true(claimed >= 0);
  assert_int_equal(in_progress, THREADS - 1);
  for (int i = 0; i < THREADS; i++)
    assert_int_equal(rs[i].r.lease_expires, rs[claimed].r.lease_expires);

  complete_ok(f, "contended", rs[claimed].r.token, 200, "the one");
  memset(rs, 0, sizeof rs);
  run_race(f, "contended", rs);
  for (int i = 0; i < THREADS; i++) {
    assert_int_equal(rs[i].rc, RESIL_OK);
    assert_int_equal(rs[i].r.status, RESIL_CLAIM_REPLAY);
    assert_int_equal(rs[i].r.response.body_len, strlen("the one"));
    assert_memory_equal(rs[i].r.response.body, "the one", strlen("the one"));
    resil_claim_result_clear(&rs[i].r);
  }
}

typedef struct worker {
  fx *f;
  int id;
  int errors;
} worker;

/* Each thread runs its own keys through the whole protocol while the others
 * do the same and purge: no lost updates, no cross-talk. */
static void *work(void *arg) {
  worker *w = arg;
  fx *f = w->f;
  fpr p = fp(w->id);
  char key[32], body[32];
  for (int i = 0; i < 12; i++) {
    snprintf(key, sizeof key, "w%d-%d", w->id, i);
    snprintf(body, sizeof body, "%d/%d", w->id, i);
    resil_claim_result r;
    if (resil_store_claim(f->s, f->scope, key, p.b, LEASE, &r) != RESIL_OK ||
        r.status != RESIL_CLAIM_CLAIMED) {
      w->errors++;
      continue;
    }
    resil_stored_response out = {200, NULL, 0, body, strlen(body)};
    if (i % 4 == 3) {
      if (resil_store_release(f->s, f->scope, key, r.token) != RESIL_OK) w->errors++;
      continue;
    }
    if (resil_store_complete(f->s, f->scope, key, r.token, &out, TTL) != RESIL_OK) w->errors++;
    resil_claim_result c;
    if (resil_store_claim(f->s, f->scope, key, p.b, LEASE, &c) != RESIL_OK ||
        c.status != RESIL_CLAIM_REPLAY || c.response.body_len != strlen(body) ||
        memcmp(c.response.body, body, strlen(body)) != 0)
      w->errors++;
    resil_claim_result_clear(&c);
    if (i % 5 == 0 && resil_store_purge(f->s, NULL) != RESIL_OK) w->errors++;
  }
  return NULL;
}

static void test_concurrent_mixed(void **state) {
  fx *f = *state;
  pthread_t th[THREADS];
  worker ws[THREADS];
  for (int i = 0; i < THREADS; i++) {
    ws[i] = (worker){f, i, 0};
    assert_int_equal(pthread_create(&th[i], NULL, work, &ws[i]), 0);
  }
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < THREADS; i++) assert_int_equal(ws[i].errors, 0);
}

/* ---- the suite --------------------------------------------------------------------------- */

int store_conformance_run(const store_target *t) {
  void *ts = (void *)t;
#define C(fn) cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, ts)
  const struct CMUnitTest tests[] = {
      C(test_name),
      C(test_round_trip),
      C(test_empty_response),
      C(test_large_response),
      C(test_in_progress_while_held),
      C(test_reclaim_only_after_lease),
      C(test_stale_token_changes_nothing),
      C(test_complete_after_lease_before_takeover),
      C(test_token_used_once),
      C(test_mismatch),
      C(test_mismatch_in_progress),
      C(test_expired_is_absent),
      C(test_release_lets_retry),
      C(test_ttl_expiry),
      C(test_purge),
      C(test_purge_spends_token),
      C(test_scope_isolation),
      C(test_scope_key_boundaries),
      C(test_argument_errors),
      C(test_long_and_binary_names),
      C(test_many_keys),
      C(test_saturating_times),
      C(test_result_lifetime),
      C(test_reopen),
      C(test_concurrent_claims),
      C(test_concurrent_mixed),
  };
#undef C
  char group[96];
  snprintf(group, sizeof group, "store conformance: %s", t->name);
  return cmocka_run_group_tests_name(group, tests, NULL, NULL);
}

/* ---- helpers for the backend-specific tests --------------------------------- */

resil_store_options store_test_options(resil_fakeclock *fc) {
  resil_store_options o;
  resil_store_options_init(&o);
  o.clock = resil_fakeclock_wallclock(fc);
  return o;
}

resil_store *store_test_open(resil_fakeclock *fc, const char *url, const char *backend) {
  resil_store_options o = store_test_options(fc);
  resil_store *s = NULL;
  char err[256];
  resil_err rc = resil_store_open(&s, url, &o, err, sizeof err);
  if (rc != RESIL_OK) fprintf(stderr, "open %s: %s\n", url, err);
  assert_int_equal(rc, RESIL_OK);
  if (backend) assert_string_equal(resil_store_name(s), backend);
  return s;
}

void store_test_open_fails(resil_fakeclock *fc, const char *url, resil_err want,
                           const char *needle, char *err, size_t errlen) {
  resil_store_options o = store_test_options(fc);
  resil_store *s = (resil_store *)&o; /* must come back NULL */
  resil_err rc = resil_store_open(&s, url, &o, err, errlen);
  if (rc != want) fprintf(stderr, "open %s: %s (%s)\n", url, err, resil_err_name(rc));
  assert_int_equal(rc, want);
  assert_null(s);
  if (needle && strstr(err, needle) == NULL) fprintf(stderr, "'%s' lacks '%s'\n", err, needle);
  if (needle) assert_non_null(strstr(err, needle));
}
