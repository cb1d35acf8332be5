/* Server-side idempotency (include/resil/idem_server.h) on a memory: store
 * driven by a fake wall clock, on a fake backend that fails on demand, and
 * (when built in) on sqlite:. */
#define _GNU_SOURCE /* mkdtemp, strcasecmp, pthread barriers */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "idem/internal.h"
#include "resil/idem_server.h"
#include "resil/store.h"
#include "resil/time.h"
#include "test_util.h"

#define T0 ((resil_ns)1700000000 * RESIL_SEC)

/* ---- a tiny JSON checker -------------------------------------------------- */
/* Validates one JSON text (RFC 8259) and, for a top-level object, picks out
 * the problem members: "type", "title", "detail" (strings, unescaped into
 * the buffers) and "status" (an integer). */

typedef struct problem {
  char type[256], title[256], detail[1024];
  long status;
  int has_type, has_title, has_detail, has_status;
} problem;

typedef struct jp {
  const char *p, *end;
} jp;

static void ws(jp *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* A string; its unescaped text (\u escapes as UTF-8) goes to out. */
static int jstring(jp *j, char *out, size_t cap) {
  size_t n = 0;
  if (j->p >= j->end || *j->p != '"') return 0;
  j->p++;
  while (j->p < j->end && *j->p != '"') {
    unsigned char c = (unsigned char)*j->p++;
    if (c < 0x20) return 0; /* raw control characters are not allowed */
    unsigned cp = c;
    if (c == '\\') {
      if (j->p >= j->end) return 0;
      char e = *j->p++;
      switch (e) {
        case '"': case '\\': case '/': cp = (unsigned char)e; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
          cp = 0;
          for (int i = 0; i < 4; i++) {
            if (j->p >= j->end || hexval(*j->p) < 0) return 0;
            cp = cp * 16 + (unsigned)hexval(*j->p++);
          }
          if (cp >= 0xD800 && cp <= 0xDFFF) return 0; /* not needed here */
          break;
        default: return 0;
      }
    }
    char u[4];
    size_t k;
    if (cp < 0x80 || c != '\\') u[0] = (char)cp, k = 1;
    else if (cp < 0x800) u[0] = (char)(0xC0 | cp >> 6), u[1] = (char)(0x80 | (cp & 63)), k = 2;
    else
      u[0] = (char)(0xE0 | cp >> 12), u[1] = (char)(0x80 | ((cp >> 6) & 63)),
      u[2] = (char)(0x80 | (cp & 63)), k = 3;
    for (size_t i = 0; i < k; i++)
      if (out && n + 1 < cap) out[n++] = u[i];
  }
  if (j->p >= j->end) return 0;
  j->p++;
  if (out && cap) out[n] = '\0';
  return 1;
}

static int jnumber(jp *j, long *out) {
  const char *s = j->p;
  if (j->p < j->end && *j->p == '-') j->p++;
  if (j->p >= j->end || *j->p < '0' || *j->p > '9') return 0;
  if (*j->p == '0') j->p++;
  else while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
  int integer = 1;
  if (j->p < j->end && *j->p == '.') {
    integer = 0;
    j->p++;
    if (j->p >= j->end || *j->p < '0' || *j->p > '9') return 0;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
  }
  if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
    integer = 0;
    j->p++;
    if (j->p < j->end && (*j->p == '+' || *j->p == '-')) j->p++;
    if (j->p >= j->end || *j->p < '0' || *j->p > '9') return 0;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
  }
  if (out) *out = integer ? strtol(s, NULL, 10) : -1;
  return 1;
}

static int jvalue(jp *j, int depth, problem *pr);

static int jlit(jp *j, const char *lit) {
  size_t n = strlen(lit);
  if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0) return 0;
  j->p += n;
  return 1;
}

static int jobject(jp *j, int depth, problem *pr) {
  j->p++; /* { */
  ws(j);
  if (j->p < j->end && *j->p == '}') return j->p++, 1;
  for (;;) {
    char name[64];
    ws(j);
    if (!jstring(j, name, sizeof name)) return 0;
    ws(j);
    if (j->p >= j->end || *j->p != ':') return 0;
    j->p++;
    ws(j);
    if (pr && depth == 0 && strcmp(name, "type") == 0) {
      if (!jstring(j, pr->type, sizeof pr->type)) return 0;
      pr->has_type++;
    } else if (pr && depth == 0 && strcmp(name, "title") == 0) {
      if (!jstring(j, pr->title, sizeof pr->title)) return 0;
      pr->has_title++;
    } else if (pr && depth == 0 && strcmp(name, "detail") == 0) {
      if (!jstring(j, pr->detail, sizeof pr->detail)) return 0;
      pr->has_detail++;
    } else if (pr && depth == 0 && strcmp(name, "status") == 0) {
      if (!jnumber(j, &pr->status)) return 0;
      pr->has_status++;
    } else if (!jvalue(j, depth + 1, NULL)) {
      return 0;
    }
    ws(j);
    if (j->p < j->end && *j->p == ',') {
      j->p++;
      continue;
    }
    if (j->p < j->end && *j->p == '}') return j->p++, 1;
    return 0;
  }
}

static int jarray(jp *j, int depth) {
  j->p++; /* [ */
  ws(j);
  if (j->p < j->end && *j->p == ']') return j->p++, 1;
  for (;;) {
    ws(j);
    if (!jvalue(j, depth + 1, NULL)) return 0;
    ws(j);
    if (j->p < j->end && *j->p == ',') {
      j->p++;
      continue;
    }
    if (j->p < j->end && *j->p == ']') return j->p++, 1;
    return 0;
  }
}

static int jvalue(jp *j, int depth, problem *pr) {
  if (depth > 32 || j->p >= j->end) return 0;
  switch (*j->p) {
    case '{': return jobject(j, depth, pr);
    case '[': return jarray(j, depth);
    case '"': return jstring(j, NULL, 0);
    case 't': return jlit(j, "true");
    case 'f': return jlit(j, "false");
    case 'n': return jlit(j, "null");
    default: return jnumber(j, NULL);
  }
}

/* 1 when body is exactly one JSON object with the four problem members. */
static int parse_problem(const char *body, size_t len, problem *pr) {
  memset(pr, 0, sizeof *pr);
  jp j = {body, body + len};
  ws(&j);
  if (j.p >= j.end || *j.p != '{') return 0;
  if (!jvalue(&j, 0, pr)) return 0;
  ws(&j);
  return j.p == j.end && pr->has_type == 1 && pr->has_title == 1 && pr->has_detail == 1 &&
         pr->has_status == 1;
}

static void test_json_checker(void **state) {
  (void)state;
  problem pr;
  const char *good = " {\"type\":\"t\",\"x\":[1,-2.5e3,{\"y\":null}],\"title\":\"a\\\"b\\u00e9\","
                     "\"status\":409,\"detail\":\"d\\n\",\"z\":true} ";
  assert_true(parse_problem(good, strlen(good), &pr));
  assert_string_equal(pr.title, "a\"b\xc3\xa9");
  assert_string_equal(pr.detail, "d\n");
  assert_int_equal(pr.status, 409);
  const char *bad[] = {
      "{\"type\":\"t\",\"title\":\"a\",\"status\":1,\"detail\":\"d\"",   /* unclosed */
      "{\"type\":\"t\",\"title\":\"a\",\"status\":1,\"detail\":\"\x01\"}", /* raw control */
      "{\"type\":\"t\",\"title\":\"a\",\"status\":1,\"detail\":\"\\x\"}",  /* bad escape */
      "{\"type\":\"t\",\"title\":\"a\",\"status\":01,\"detail\":\"d\"}",   /* leading zero */
      "{\"type\":\"t\",\"title\":\"a\",\"detail\":\"d\"}",                /* no status */
      "{\"type\":\"t\",\"title\":\"a\",\"status\":1,\"detail\":\"d\"} x", /* trailing */
      "{\"type\":\"t\",\"title\":\"a\",\"status\":1,\"detail\":\"d\",}",  /* trailing comma */
  };
  for (size_t i = 0; i < ARRAY_LEN(bad); i++) assert_false(parse_problem(bad[i], strlen(bad[i]), &pr));
}

/* ---- fixtures and helpers -------------------------------------------------- */

typedef struct logbook {
  pthread_mutex_t mu;
  int warnings;
  char last[512];
} logbook;

static void log_cb(void *ud, resil_log_level level, const char *msg) {
  logbook *lb = ud;
  pthread_mutex_lock(&lb->mu);
  if (level == RESIL_LOG_WARN) lb->warnings++;
  snprintf(lb->last, sizeof lb->last, "%s", msg);
  pthread_mutex_unlock(&lb->mu);
}

typedef struct fx {
  resil_fakeclock *fc;
  resil_store *store;
  resil_idem *idem;
  logbook log;
} fx;

/* Optional tweaks to the default config (applied before resil_idem_new). */
typedef void (*cfg_fn)(resil_idem_config *cfg);

static void open_idem(fx *f, cfg_fn tweak) {
  resil_idem_config cfg;
  resil_idem_config_init(&cfg);
  cfg.store = f->store;
  cfg.log = log_cb;
  cfg.log_ud = &f->log;
  if (tweak) tweak(&cfg);
  resil_idem_free(f->idem);
  f->idem = NULL;
  assert_int_equal(resil_idem_new(&f->idem, &cfg), RESIL_OK);
}

static fx *fx_new_url(const char *url, cfg_fn tweak) {
  fx *f = calloc(1, sizeof *f);
  assert_non_null(f);
  pthread_mutex_init(&f->log.mu, NULL);
  assert_int_equal(resil_fakeclock_new(&f->fc, 0, T0), RESIL_OK);
  resil_store_options opt;
  resil_store_options_init(&opt);
  opt.clock = resil_fakeclock_wallclock(f->fc);
  char err[256] = "";
  resil_err e = resil_store_open(&f->store, url, &opt, err, sizeof err);
  if (e != RESIL_OK) fprintf(stderr, "resil_store_open(%s): %s: %s\n", url, resil_err_name(e), err);
  assert_int_equal(e, RESIL_OK);
  open_idem(f, tweak);
  return f;
}

static fx *fx_new(cfg_fn tweak) { return fx_new_url("memory:", tweak); }

static void fx_free(fx *f) {
  resil_idem_free(f->idem);
  resil_store_close(f->store);
  resil_fakeclock_free(f->fc);
  pthread_mutex_destroy(&f->log.mu);
  free(f);
}

/* A request: POST /orders with body and an optional key header and scope. */
typedef struct req {
  resil_http_header h[8];
  resil_idem_request r;
} req;

static void req_init(req *q, const char *key, const char *body, const char *scope) {
  memset(q, 0, sizeof *q);
  q->r.method = "POST";
  q->r.target = "/orders?currency=eur";
  q->r.headers = q->h;
  q->h[q->r.n_headers++] = (resil_http_header){"Content-Type", "application/json"};
  if (key) q->h[q->r.n_headers++] = (resil_http_header){"Idempotency-Key", key};
  q->r.body = body;
  q->r.body_len = body ? strlen(body) : 0;
  q->r.scope = scope;
}

static void req_add(req *q, const char *name, const char *value) {
  assert_true(q->r.n_headers < ARRAY_LEN(q->h));
  q->h[q->r.n_headers++] = (resil_http_header){name, value};
}

static const char *dheader(const resil_idem_decision *d, const char *name) {
  for (size_t i = 0; i < d->n_headers; i++)
    if (strcasecmp(d->headers[i].name, name) == 0) return d->headers[i].value;
  return NULL;
}

/* begin, expecting `action` (and for REJECT, `status`). Returns the txn. */
static resil_idem_txn *begin_expect(fx *f, const req *q, resil_idem_action action, int status,
                                    resil_idem_decision *d) {
  resil_idem_txn *txn = (resil_idem_txn *)(uintptr_t)1;
  assert_int_equal(resil_idem_begin(f->idem, &q->r, &txn, d), RESIL_OK);
  if (d->action != action || (status && d->status != status))
    fprintf(stderr, "expected action %d status %d, got %d %d: %.*s\n", (int)action, status,
            (int)d->action, d->status, (int)d->body_len, d->body ? d->body : "");
  assert_int_equal(d->action, action);
  if (status) assert_int_equal(d->status, status);
  if (action != RESIL_IDEM_RUN) assert_null(txn);
  return txn;
}

/* Check a REJECT: problem+json with the given type and status. */
static void check_problem(const resil_idem_decision *d, int status, const char *type) {
  assert_int_equal(d->action, RESIL_IDEM_REJECT);
  assert_int_equal(d->status, status);
  assert_string_equal(dheader(d, "Content-Type"), "application/problem+json");
  problem pr;
  assert_non_null(d->body);
  if (!parse_problem(d->body, d->body_len, &pr))
    fprintf(stderr, "not a problem: %.*s\n", (int)d->body_len, d->body);
  assert_true(parse_problem(d->body, d->body_len, &pr));
  assert_string_equal(pr.type, type);
  assert_int_equal(pr.status, status);
  assert_true(strlen(pr.title) > 0);
  assert_true(strlen(pr.detail) > 0);
  assert_int_equal(d->body[d->body_len], '\0'); /* also usable as a C string */
}

static resil_err finish_with(resil_idem_txn *txn, int status, const char *body) {
  resil_http_header h[] = {{"Content-Type", "application/json"},
                           {"X-Request-Id", "r-1"},
                           {"Location", "/orders/1"},
                           {"Set-Cookie", "session=secret"}};
  resil_stored_response resp = {status, h, ARRAY_LEN(h), body, body ? strlen(body) : 0};
  return resil_idem_finish(txn, &resp);
}

/* ---- the basic flow ----------------------------------------------------- */

static void check_replay(const resil_idem_decision *d, int status, const char *body) {
  assert_int_equal(d->action, RESIL_IDEM_REPLAY);
  assert_int_equal(d->status, status);
  /* Exactly the stored headers (Content-Type, Location, in the handler's
   * order) and the replay marker. */
  assert_int_equal(d->n_headers, 3);
  assert_string_equal(d->headers[0].name, "Content-Type");
  assert_string_equal(d->headers[0].value, "application/json");
  assert_string_equal(d->headers[1].name, "Location");
  assert_string_equal(d->headers[1].value, "/orders/1");
  assert_string_equal(d->headers[2].name, "Idempotent-Replayed");
  assert_string_equal(d->headers[2].value, "true");
  assert_int_equal(d->body_len, strlen(body));
  if (d->body_len) assert_memory_equal(d->body, body, strlen(body));
}

static void basic_flow(fx *f) {
  req q;
  req_init(&q, "order-1", "{\"sku\":42}", "alice");
  resil_idem_decision d;
  resil_idem_txn *txn = begin_expect(f, &q, RESIL_IDEM_RUN, 0, &d);
  assert_non_null(txn);
  assert_string_equal(d.key, "order-1");
  assert_int_equal(d.n_headers, 0);
  resil_idem_decision_clear(&d);
  assert_null(d.key);

  /* While it runs: 409, Retry-After = the lease left (60 s). */
  begin_expect(f, &q, RESIL_IDEM_REJECT, 409, &d);
  check_problem(&d, 409, RESIL_IDEM_PROBLEM_IN_PROGRESS);
  assert_string_equal(dheader(&d, "Retry-After"), "60");
  assert_string_equal(d.key, "order-1");
  resil_idem_decision_clear(&d);

  assert_int_equal(finish_with(txn, 201, "{\"id\":1}"), RESIL_OK);

  for (int i = 0; i < 3; i++) {
    begin_expect(f, &q, RESIL_IDEM_REPLAY, 201, &d);
    check_replay(&d, 201, "{\"id\":1}");
    assert_string_equal(d.key, "order-1");
    resil_idem_decision_clear(&d);
  }
  /* The structured-field form of the same key is the same key. */
  req_init(&q, "  \"order-1\"", "{\"sku\":42}", "alice");
  begin_expect(f, &q, RESIL_IDEM_REPLAY, 201, &d);
  check_replay(&d, 201, "{\"id\":1}");
  resil_idem_decision_clear(&d);
  /* Same key, different body: 422. */
  req_init(&q, "order-1", "{\"sku\":43}", "alice");
  begin_expect(f, &q, RESIL_IDEM_REJECT, 422, &d);
  check_problem(&d, 422, RESIL_IDEM_PROBLEM_KEY_REUSED);
  resil_idem_decision_clear(&d);
}

static void test_run_replay(void **state) {
  (void)state;
  fx *f = fx_new(NULL);
  basic_flow(f);
  assert_int_equal(f->log.warnings, 0);
  fx_free(f);
}

static void test_in_progress(void **state) {
  (void)state;
  fx *f = fx_new(NULL);
  req q;
  req_init(&q, "k", "body", NULL);
  resil_idem_decision d;
  resil_idem_txn *txn = begin_expect(f, &q, RESIL_IDEM_RUN, 0, &d);
  resil_idem_decision_clear(&d);
  struct {
    resil_ns advance;
    const char *retry_after;
  } steps[] = {{15 * RESIL_SEC + 500 * RESIL_MSEC, "45"}, /* 44.5 s left: rounded up */
               {14 * RESIL_SEC + 500 * RESIL_MSEC, "30"},
               {29 * RESIL_SEC, "1"},
               {900 * RESIL_MSEC, "1"}}; /* 0.1 s left: at least 1 */
  for (size_t i = 0; i < ARRAY_LEN(steps); i++) {
    resil_fakeclock_advance(f->fc, steps[i].advance);
    begin_expect(f, &q, RESIL_IDEM_REJECT, 409, &d);
    check_problem(&d, 409, RESIL_IDEM_PROBLEM_IN_PROGRESS);
    assert_string_equal(dheader(&d, "Retry-After"), steps[i].retry_after);
    resil_idem_decision_clear(&d);
  }
  /* Finished just in time: replayed. */
  assert_int_equal(finish_with(txn, 200, "done"), RESIL_OK);
  begin_expect(f, &q, RESIL_IDEM_REPLAY, 200, &d);
  check_replay(&d, 200, "done");
  resil_idem_decision_clear(&d);
  fx_free(f);
}

/* ---- 422: each part of the fingerprint ----------------------------------- */

static void fp_account(resil_idem_config *cfg) {
  static const char *const fp[] = {"X-Account"};
  cfg->fingerprint_headers = fp;
  cfg->n_fingerprint_headers = 1;
}

static void test_mismatch(void **state) {
  (void)state;
  fx *f = fx_new(fp_account);
  req q;
  req_init(&q, "k", "{\"a\":1}", NULL);
  req_add(&q, "X-Account", "acct-1");
  req_add(&q, "X-Trace", "t-1");
  resil_idem_decision d;
  resil_idem_txn *txn = begin_expect(f, &q, RESIL_IDEM_RUN, 0, &d);
  resil_idem_decision_clear(&d);
  assert_int_equal(finish_with(txn, 200, "ok"), RESIL_OK);

  enum { BODY, METHOD, TARGET, HEADER, HEADER_ABSENT, HEADER_EMPTY, N };
  for (int i = 0; i < N; i++) {
    req_init(&q, "k", i == BODY ? "{\"a\":2}" : "{\"a\":1}", NULL);
    if (i == METHOD) q.r.method = "PUT";
    if (i == TARGET) q.r.target = "/orders?currency=usd";
    if (i == HEADER) req_add(&q, "X-Account", "acct-2");
    if (i == HEADER_EMPTY) req_add(&q, "X-Account", "");
    if (i != HEADER && i != HEADER_ABSENT && i != HEADER_EMPTY) req_add(&q, "X-Account", "acct-1");
    begin_expect(f, &q, RESIL_IDEM_REJECT, 422, &d);
    check_problem(&d, 422, RESIL_IDEM_PROBLEM_KEY_REUSED);
    assert_null(dheader(&d, "Retry-After"));
    assert_string_equal(d.key, "k");
    resil_idem_decision_clear(&d);
  }
  /* Not part of it: an unlisted header, the listed one's name case, the
   * key's header name case. */
  req_init(&q, NULL, "{\"a\":1}", NULL);
  req_add(&q, "x-account", "acct-1");
  req_add(&q, "X-Trace", "t-2");
  req_add(&q, "IDEMPOTENCY-KEY", "k");
  begin_expect(f, &q, RESIL_IDEM_REPLAY, 200, &d);
  resil_idem_decision_clear(&d);
  fx_free(f);
}

/* ---- scopes ------------------------------------------------------------------ */

static void test_scopes(void **state) {
  (void)state;
  fx *f = fx_new(NULL);
  const char *scopes[] = {"alice", "bob", NULL};
  resil_idem_txn *txn[3];
  resil_idem_decision d;
  req q;
  for (int i = 0; i < 3; i++) {
    /* Same key, same request: each scope runs on its own. */
    req_init(&q, "shared-key", "x", scopes[i]);
    txn[i] = begin_expect(f, &q, RESIL_IDEM_RUN, 0, &d);
    resil_idem_decision_clear(&d);
  }
  for (int i = 0; i < 3; i++) {
    char body[16];
    snprintf(body, sizeof body, "from-%d", i);
    assert_int_equal(finish_with(txn[i], 200, body), RESIL_OK);
  }
  for (int i = 0; i < 3; i++) {
    char body[16];
    snprintf(body, sizeof body, "from-%d", i);
    req_init(&q, "shared-key", "x", scopes[i]);
    begin_expect(f, &q, RESIL_IDEM_REPLAY, 200, &d);
    check_replay(&d, 200, body);
    resil_idem_decision_clear(&d);
  }
  /* "" is the shared default scope, like NULL. */
  req_init(&q, "shared-key", "x", "");
  begin_expect(f, &q, RESIL_IDEM_REPLAY, 200, &d);
  check_replay(&d, 200, "from-2");
  resil_idem_decision_clear(&d);
  /* A scope longer than the store's 255-byte limit works (it is hashed). */
  char long_scope[1000];
  memset(long_scope, 's', sizeof long_scope - 1);
  long_scope[sizeof long_scope - 1] = '\0';
  req_init(&q, "shared-key", "x", long_scope);
  resil_idem_txn *t = begin_expect(f, &q, RESIL_IDEM_RUN, 0, &d);
  resil_idem_decision_clear(&d);
  resil_idem_abort(t);
  fx_free(f);
}

/* ---- 400 -------------------------------------------------------------------- */

static void require_key(resil_idem_config *cfg) { cfg->require_key = 1; }

static void test_bad_keys(void **state) {
  (void)state;
  fx *f = fx_new(require_key);
  resil_idem_decision d;
  req q;
  req_init(&q, NULL, "x", NULL);
  begin_expect(f, &q, RESIL_IDEM_REJECT, 400, &d);
  check_problem(&d, 400, RESIL_IDEM_PROBLEM_KEY_MISSING);
  assert_null(d.key);
  assert_null(dheader(&d, "Retry-After"));
  resil_idem_decision_clear(&d);

  char k256[257], k255[256];
  memset(k256, 'k', 256);
  k256[256] = '\0';
  memset(k255, 'k', 255);
  k255[255] = '\0';
  const char *invalid[] = {
      "",               /* empty */
      "   ",            /* only spaces */
      "ab\x01" "cd",    /* control character */
      "ab\ncd",         /* newline */
      "ab\x7f",         /* DEL */
      "caf\xc3\xa9",    /* non-ASCII */
      "two words",      /* a bare key has no spaces */
      k256,             /* 256 characters */
      "\"unterminated", /* bad quoting */
      "\"a\"b",         /* text after the closing quote */
      "\"bad\\escape\"",/* only \" and \\ escape */
      "\"\"",           /* empty quoted string */
  };
  for (size_t i = 0; i < ARRAY_LEN(invalid); i++) {
    /* The same whether or not keys are required. */
    for (int required = 1; required >= 0; required--) {
      open_idem(f, required ? require_key : NULL);
      req_init(&q, invalid[i], "x", NULL);
      begin_expect(f, &q, RESIL_IDEM_REJECT, 400, &d);
      check_problem(&d, 400, RESIL_IDEM_PROBLEM_KEY_INVALID);
      assert_null(d.key);
      resil_idem_decision_clear(&d);
    }
  }
  /* Two key headers are ambiguous. */
  req_init(&q, "a", "x", NULL);
  req_add(&q, "idempotency-key", "a");
  begin_expect(f, &q, RESIL_IDEM_REJECT, 400, &d);
  check_problem(&d, 400, RESIL_IDEM_PROBLEM_KEY_INVALID);
  resil_idem_decision_clear(&d);
  /* The longest valid key, and a quoted one with escapes. */
  const char *valid[] = {k255, "\"a \\\"quoted\\\" key\"", "\tpadded "};
  const char *parsed[] = {k255, "a \"quoted\" key", "padded"};
  for (size_t i = 0; i < ARRAY_LEN(valid); i++) {
    req_init(&q, valid[i], "x", NULL);
    resil_idem_txn *t = begin_expect(f, &q, RESIL_IDEM_RUN, 0, &d);
    assert_non_null(t);
    assert_string_equal(d.key, parsed[i]);
    resil_idem_decision_clear(&d);
    resil_idem_abort(t);
  }
  fx_free(f);
}

static void custom_header(resil_idem_config *cfg) {
  cfg->header_name = "X-Request-Key";
  cfg->require_key = 1;
}

static void test_custom_header(void **state) {
  (void)state;
  fx *f = fx_new(custom_header);
  resil_idem_decision d;
  req q;
  req_init(&q, "k", "x", NULL); /* sends Idempotency-Key, not X-Request-Key */
  begin_expect(f, &q, RESIL_IDEM_REJECT, 400, &d);
  check_problem(&d, 400, RESIL_IDEM_PROBLEM_KEY_MISSING);
  problem pr;
  assert_true(parse_problem(d.body, d.body_len, &pr));
  assert_non_null(strstr(pr.detail, "X-Request-Key"));
  resil_idem_decision_clear(&d);
  req_add(&q, "x-request-key", "k");
  resil_idem_txn *t = begin_expect(f, &q, RESIL_IDEM_RUN, 0, &d);
  assert_string_equal(d.key, "k");
  resil_idem_decision_clear(&d);
  resil_idem_abort(t);
  fx_free(f);
}

static void test_no_key(void **state) {
  (void)state;
  fx *f = fx_new(NULL);
  resil_idem_decision d;
  req q;
  for (int i = 0; i < 2; i++) {
    req_init(&q, NULL, "x", NULL);
    resil_idem_txn *t = begin_expect(f, &q, RESIL_IDEM_RUN, 0, &d);
    assert_null(t);
    assert_null(d.key);
    assert_int_equal(d.n_headers, 0);
    assert_null(d.body);
    resil_idem_decision_clear(&d);
    assert_int_equal(finish_with(NULL, 200, "ok"), RESIL_OK);
    resil_idem_abort(NULL);
  }
  fx_free(f);
}

/* ---- what finish stores or releases ----------------------------------------- */

static void store_5xx(resil_idem_config *cfg) { cfg->store_5xx = 1; }

static void test_5xx(void **state) {
  (void)state;
  fx *f = fx_new(NULL);
  resil_idem_decision d;
  req q;
  req_init(&q, "k", "x", NULL);
  /* Released by default: the retry runs again. */
  for (int status = 500; status <= 599; status += 99) {
    resil_idem_txn *t = begin_expect(f, &q, RESIL_IDEM_RUN, 0, &d);
    resil_idem_decision_clear(&d);
    assert_int_equal(finish_with(t, status, "boom"), RESIL_OK);
  }
  resil_idem_txn *t = begin_expect(f, &q, RESIL_IDEM_RUN, 0, &d);
  resil_idem_decision_clear(&d);
  /* 4xx are stored like successes. */
  assert_int_equal(finish_with(t, 404, "nope"), RESIL_OK);
  begin_expect(f, &q, RESIL_IDEM_REPLAY, 404, &d);
  check_replay(&d, 404, "nope");
  resil_idem_decision_clear(&d);

  /* store_5xx: replayed like anything else. */
  open_idem(f, store_5xx);
  req_init(&q, "k5", "x", NULL);
  t = begin_expect(f, &q, RESIL_IDEM_RUN, 0, &d);
  resil_idem_decision_clear(&d);
  assert_int_equal(finish_with(t, 500, "boom"), RESIL_OK);
  begin_expect(f, &q, RESIL_IDEM_REPLAY, 500, &d);
  check_replay(&d, 500, "boom");
  resil_idem_decision_clear(&d);
  assert_int_equal(f->log.warnings, 0);
  fx_free(f);
}

static void test_abort(void **state) {
  (void)state;
  fx *f = fx_new(NULL);
  resil_idem_decision d;
  req q;
  req_init(&q, "k", "x", NULL);
  for (int i = 0; i < 3; i++) {
    resil_idem_txn *t = begin_expect(f, &q, RESIL_IDEM_RUN, 0, &d);
    resil_idem_decision_clear(&d);
    resil_idem_abort(t);
  }
  /* A response finish refuses releases the claim too. */
  resil_idem_txn *t = begin_expect(f, &q, RESIL_IDEM_RUN, 0, &d);
  resil_idem_decision_clear(&d);
  resil_stored_response bad = {42, NULL, 0, NULL, 0};
  assert_int_equal(resil_idem_finish(t, &bad), RESIL_EINVAL);
  t = begin_expect(f, &q, RESIL_IDEM_RUN, 0, &d);
  resil_idem_decision_clear(&d);
  assert_int_equal(resil_idem_finish(t, NULL), RESIL_EINVAL);
  t = begin_expect(f, &q, RESIL_IDEM_RUN, 0, &d);
  resil_idem_decision_clear(&d);
  resil_idem_abort(t);
  fx_free(f);
}

static void short_lease(resil_idem_config *cfg) { cfg->lease = 10 * RESIL_SEC; }

static void test_lease_takeover(void **state) {
  (void)state;
  fx *f = fx_new(short_lease);
  resil_idem_decision d;
  req q;
  req_init(&q, "k", "x", NULL);
  resil_idem_txn *slow = begin_expect(f, &q, RESIL_IDEM_RUN, 0, &d);
  resil_idem_decision_clear(&d);
  resil_fakeclock_advance(f->fc, 9 * RESIL_SEC);
  begin_expect(f, &q, RESIL_IDEM_REJECT, 409, &d);
  assert_string_equal(dheader(&d, "Retry-After"), "1");
  resil_idem_decision_clear(&d);
  resil_fakeclock_advance(f->fc, 1 * RESIL_SEC + 1);
  /* The slow holder's lease expired: a retry takes over. */
  resil_idem_txn *fresh = begin_expect(f, &q, RESIL_IDEM_RUN, 0, &d);
  resil_idem_decision_clear(&d);
  /* The slow holder can neither store nor release any more. */
  assert_int_equal(finish_with(slow, 200, "slow"), RESIL_ESTORE);
  assert_int_equal(f->log.warnings, 1);
  begin_expect(f, &q, RESIL_IDEM_REJECT, 409, &d); /* still the fresh one's */
  assert_string_equal(dheader(&d, "Retry-After"), "10");
  resil_idem_decision_clear(&d);
  assert_int_equal(finish_with(fresh, 201, "fresh"), RESIL_OK);
  begin_expect(f, &q, RESIL_IDEM_REPLAY, 201, &d);
  check_replay(&d, 201, "fresh");
  resil_idem_decision_clear(&d);

  /* Same for abort: a lost claim's abort leaves the new owner alone. */
  req_init(&q, "k2", "x", NULL);
  slow = begin_expect(f, &q, RESIL_IDEM_RUN, 0, &d);
  resil_idem_decision_clear(&d);
  resil_fakeclock_advance(f->fc, 11 * RESIL_SEC);
  fresh = begin_expect(f, &q, RESIL_IDEM_RUN, 0, &d);
  resil_idem_decision_clear(&d);
  resil_idem_abort(slow);
  begin_expect(f, &q, RESIL_IDEM_REJECT, 409, &d);
  resil_idem_decision_clear(&d);
  resil_idem_abort(fresh);
  fx_free(f);
}

static void small_body(resil_idem_config *cfg) { cfg->max_stored_body = 8; }

static void test_max_body(void **state) {
  (void)state;
  fx *f = fx_new(small_body);
  resil_idem_decision d;
  req q;
  req_init(&q, "k", "x", NULL);
  resil_idem_txn *t = begin_expect(f, &q, RESIL_IDEM_RUN, 0, &d);
  resil_idem_decision_clear(&d);
  assert_int_equal(finish_with(t, 200, "123456789"), RESIL_OK); /* 9 > 8: released */
  assert_int_equal(f->log.warnings, 1);
  assert_non_null(strstr(f->log.last, "max_stored_body"));
  t = begin_expect(f, &q, RESIL_IDEM_RUN, 0, &d);
  resil_idem_decision_clear(&d);
  assert_int_equal(finish_with(t, 200, "12345678"), RESIL_OK); /* exactly 8: stored */
  begin_expect(f, &q, RESIL_IDEM_REPLAY, 200, &d);
  check_replay(&d, 200, "12345678");
  resil_idem_decision_clear(&d);
  /* An empty body is stored and replayed as empty. */
  req_init(&q, "k0", "x", NULL);
  t = begin_expect(f, &q, RESIL_IDEM_RUN, 0, &d);
  resil_idem_decision_clear(&d);
  assert_int_equal(finish_with(t, 204, NULL), RESIL_OK);
  begin_expect(f, &q, RESIL_IDEM_REPLAY, 204, &d);
  check_replay(&d, 204, "");
  resil_idem_decision_clear(&d);
  assert_int_equal(f->log.warnings, 1);
  fx_free(f);
}

/* ---- a fake backend: the vtab from outside the library ---------------------- */

typedef enum fake_mode { FAKE_CLAIM_FAILS, FAKE_COMPLETE_FAILS, FAKE_IN_PROGRESS } fake_mode;

typedef struct fake_store {
  resil_store base; /* first, as the vtab contract requires */
  fake_mode mode;
  int claims, completes, releases, closed;
  char scope[300], key[300];
  uint64_t released_token;
} fake_store;

static resil_err fake_claim(resil_store *s, const char *scope, const char *key,
                            const uint8_t fp[RESIL_FINGERPRINT_SIZE], resil_ns lease,
                            resil_claim_result *out) {
  (void)fp;
  fake_store *f = (fake_store *)s;
  f->claims++;
  snprintf(f->scope, sizeof f->scope, "%s", scope);
  snprintf(f->key, sizeof f->key, "%s", key);
  switch (f->mode) {
    case FAKE_CLAIM_FAILS:
      snprintf(s->errmsg, sizeof s->errmsg, "disk on fire");
      return RESIL_ESTORE;
    case FAKE_COMPLETE_FAILS:
      out->status = RESIL_CLAIM_CLAIMED;
      out->token = 77;
      out->lease_expires = s->clock.now(s->clock.ud) + lease;
      return RESIL_OK;
    case FAKE_IN_PROGRESS:
      out->status = RESIL_CLAIM_IN_PROGRESS;
      out->lease_expires = s->clock.now(s->clock.ud) + 2 * RESIL_HOUR;
      return RESIL_OK;
  }
  return RESIL_ESTORE;
}

static resil_err fake_complete(resil_store *s, const char *scope, const char *key, uint64_t token,
                               const resil_stored_response *response, resil_ns ttl) {
  (void)scope, (void)key, (void)token, (void)response, (void)ttl;
  fake_store *f = (fake_store *)s;
  f->completes++;
  snprintf(s->errmsg, sizeof s->errmsg, "replica lag");
  return RESIL_ESTORE;
}

static resil_err fake_release(resil_store *s, const char *scope, const char *key, uint64_t token) {
  (void)scope, (void)key;
  fake_store *f = (fake_store *)s;
  f->releases++;
  f->released_token = token;
  return RESIL_OK;
}

static resil_err fake_purge(resil_store *s, uint64_t *purged) {
  (void)s;
  if (purged) *purged = 0;
  return RESIL_OK;
}

static void fake_close(resil_store *s) { ((fake_store *)s)->closed++; }

static const resil_store_vtab fake_vtab = {1,           "fake",       fake_claim, fake_complete,
                                           fake_release, fake_purge, fake_close};

static void set_fail_open(resil_idem_config *c) { c->fail_open = 1; }

static void test_store_failure(void **state) {
  (void)state;
  fx *f = calloc(1, sizeof *f);
  assert_non_null(f);
  pthread_mutex_init(&f->log.mu, NULL);
  assert_int_equal(resil_fakeclock_new(&f->fc, 0, T0), RESIL_OK);
  fake_store fs;
  memset(&fs, 0, sizeof fs);
  fs.base.vtab = &fake_vtab;
  fs.base.clock = resil_fakeclock_wallclock(f->fc);
  fs.base.alloc = resil_allocator_default();
  f->store = &fs.base;
  open_idem(f, NULL);
  assert_string_equal(resil_store_name(&fs.base), "fake");

  resil_idem_decision d;
  req q;
  req_init(&q, "k", "x", "alice");
  fs.mode = FAKE_CLAIM_FAILS;
  begin_expect(f, &q, RESIL_IDEM_REJECT, 503, &d); /* fail closed: nothing runs */
  check_problem(&d, 503, RESIL_IDEM_PROBLEM_STORE_UNAVAILABLE);
  assert_string_equal(dheader(&d, "Retry-After"), "1");
  assert_string_equal(d.key, "k");
  resil_idem_decision_clear(&d);
  assert_int_equal(fs.claims, 1);
  assert_int_equal(f->log.warnings, 1);
  assert_non_null(strstr(f->log.last, "disk on fire"));
  /* The store sees the scope hashed, and the parsed key. */
  assert_string_equal(fs.scope,
                      "sha256:2bd806c97f0e00af1a1fc3328fa763a9269723c8db8fac4f93af71db186d6e90");
  assert_string_equal(fs.key, "k");
  req_init(&q, "\"k\"", "x", NULL);
  begin_expect(f, &q, RESIL_IDEM_REJECT, 503, &d);
  resil_idem_decision_clear(&d);
  assert_string_equal(fs.scope, "default");

  /* fail_open: the same failure runs the request, undeduplicated. */
  open_idem(f, set_fail_open);
  fs.mode = FAKE_CLAIM_FAILS;
  resil_idem_txn *open_txn = begin_expect(f, &q, RESIL_IDEM_RUN, 0, &d);
  assert_null(open_txn);
  assert_null(d.key);
  assert_non_null(strstr(f->log.last, "without deduplication"));
  resil_idem_decision_clear(&d);
  assert_int_equal(resil_idem_finish(open_txn, NULL), RESIL_OK); /* NULL txn: no-op */
  open_idem(f, NULL);

  /* complete fails: finish says so, and the claim is released. */
  fs.mode = FAKE_COMPLETE_FAILS;
  resil_idem_txn *t = begin_expect(f, &q, RESIL_IDEM_RUN, 0, &d);
  resil_idem_decision_clear(&d);
  assert_int_equal(finish_with(t, 200, "ok"), RESIL_ESTORE);
  assert_int_equal(fs.completes, 1);
  assert_int_equal(fs.releases, 1);
  assert_int_equal(fs.released_token, 77);
  assert_non_null(strstr(f->log.last, "replica lag"));

  /* A long lease elsewhere: Retry-After is the time it has left. */
  fs.mode = FAKE_IN_PROGRESS;
  begin_expect(f, &q, RESIL_IDEM_REJECT, 409, &d);
  assert_string_equal(dheader(&d, "Retry-After"), "7200");
  resil_idem_decision_clear(&d);

  resil_idem_free(f->idem);
  resil_store_close(&fs.base); /* dispatched to the backend's close */
  assert_int_equal(fs.closed, 1);
  resil_fakeclock_free(f->fc);
  pthread_mutex_destroy(&f->log.mu);
  free(f);
}

/* ---- fingerprints ---------------------------------------------------------- */

static void fp_of(const resil_idem_request *r, const char *const *names, size_t n,
                  uint8_t out[RESIL_FINGERPRINT_SIZE]) {
  assert_int_equal(resil_idem_fingerprint(r, names, n, out), RESIL_OK);
}

static void test_fingerprint(void **state) {
  (void)state;
  /* Known answer, pinning the documented encoding (stored fingerprints must
   * stay comparable across versions). Computed independently, with Python's
   * hashlib over: "resil-idem-fp-1\0" str("POST") str("/orders?x=1") u64(3)
   * str("x-tenant") u64(2) str("acme") str("beta") str("x-missing") u64(0)
   * str("content-type") u64(1) str("application/json") str("{\"n\":1}"). */
  static const uint8_t kat[RESIL_FINGERPRINT_SIZE] = {
      0x54, 0xdf, 0x7b, 0x50, 0x1d, 0xfb, 0xfd, 0xe2, 0x36, 0x29, 0x5e, 0x5f, 0xda, 0x11, 0x54, 0x82,
      0xad, 0x49, 0xd7, 0x85, 0x41, 0x61, 0x03, 0x75, 0x38, 0xcc, 0xbc, 0x50, 0x97, 0xbe, 0x8e, 0x34};
  resil_http_header h[] = {{"Content-Type", "application/json"},
                           {"X-Tenant", "acme"},
                           {"x-tenant", "beta"},
                           {"Idempotency-Key", "k"}};
  resil_idem_request r = {"POST", "/orders?x=1", h, ARRAY_LEN(h), "{\"n\":1}", 7, "scope"};
  const char *names[] = {"X-Tenant", "X-Missing", "Content-Type"};
  uint8_t a[RESIL_FINGERPRINT_SIZE], b[RESIL_FINGERPRINT_SIZE];
  fp_of(&r, names, 3, a);
  assert_memory_equal(a, kat, sizeof kat);
  fp_of(&r, names, 3, b); /* stable */
  assert_memory_equal(a, b, sizeof a);

  /* Not part of it: the scope, unlisted headers, the case of names. */
  resil_idem_request r2 = r;
  r2.scope = NULL;
  fp_of(&r2, names, 3, b);
  assert_memory_equal(a, b, sizeof a);
  resil_http_header h2[] = {{"CONTENT-TYPE", "application/json"},
                            {"x-TENANT", "acme"},
                            {"X-Tenant", "beta"},
                            {"Idempotency-Key", "other"},
                            {"X-Unlisted", "1"}};
  r2.headers = h2;
  r2.n_headers = ARRAY_LEN(h2);
  fp_of(&r2, names, 3, b);
  assert_memory_equal(a, b, sizeof a);
  const char *lower[] = {"x-tenant", "x-missing", "CONTENT-type"};
  fp_of(&r, lower, 3, b);
  assert_memory_equal(a, b, sizeof a);

  /* Each field changes it. */
  enum { METHOD, METHOD_CASE, TARGET, BODY, BODY_EMPTY, VALUE, ORDER, ABSENT_EMPTY, MOVE, N };
  for (int i = 0; i < N; i++) {
    resil_http_header h3[ARRAY_LEN(h) + 1];
    memcpy(h3, h, sizeof h);
    resil_idem_request q = r;
    q.headers = h3;
    switch (i) {
      case METHOD: q.method = "PUT"; break;
      case METHOD_CASE: q.method = "post"; break; /* methods are case-sensitive */
      case TARGET: q.target = "/orders?x=2"; break;
      case BODY: q.body = "{\"n\":2}"; break;
      case BODY_EMPTY: q.body = NULL, q.body_len = 0; break;
      case VALUE: h3[0].value = "text/plain"; break;
      case ORDER: h3[1].value = "beta", h3[2].value = "acme"; break;
      case ABSENT_EMPTY: h3[ARRAY_LEN(h)] = (resil_http_header){"X-Missing", ""}, q.n_headers++; break;
      case MOVE: /* a byte moved between target and body */
        q.target = "/orders?x=1{";
        q.body = "\"n\":1}";
        q.body_len = 6;
        break;
    }
    fp_of(&q, names, 3, b);
    if (memcmp(a, b, sizeof a) == 0) fprintf(stderr, "case %d did not change the fingerprint\n", i);
    assert_memory_not_equal(a, b, sizeof a);
  }
  /* A header absent vs present and empty, with no other headers listed. */
  const char *one[] = {"X-Opt"};
  resil_idem_request e = {"POST", "/", NULL, 0, NULL, 0, NULL};
  fp_of(&e, one, 1, a);
  resil_http_header empty[] = {{"X-Opt", ""}};
  e.headers = empty;
  e.n_headers = 1;
  fp_of(&e, one, 1, b);
  assert_memory_not_equal(a, b, sizeof a);
  /* The list itself counts: listing nothing differs from listing an absent
   * header. */
  e.n_headers = 0;
  fp_of(&e, NULL, 0, b);
  assert_memory_not_equal(a, b, sizeof a);

  /* Bad arguments. */
  assert_int_equal(resil_idem_fingerprint(NULL, NULL, 0, a), RESIL_EINVAL);
  e.method = NULL;
  assert_int_equal(resil_idem_fingerprint(&e, NULL, 0, a), RESIL_EINVAL);
  e.method = "GET";
  e.body_len = 3;
  assert_int_equal(resil_idem_fingerprint(&e, NULL, 0, a), RESIL_EINVAL);
  e.body_len = 0;
  assert_int_equal(resil_idem_fingerprint(&e, NULL, 1, a), RESIL_EINVAL);
}

/* ---- problem+json escaping -------------------------------------------------- */

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 1, 2)))
#endif
static char *problem_of(const char *detail_fmt, ...) {
  va_list ap;
  va_start(ap, detail_fmt);
  resil_allocator a = resil_allocator_default();
  size_t len = 0;
  char *p = resil__idem_problem(&a, "https://e.x/t?a=\"b\"", "T\\itle", 418, &len, detail_fmt, ap);
  va_end(ap);
  assert_non_null(p);
  assert_int_equal(strlen(p), len);
  return p;
}

static void test_problem_json(void **state) {
  (void)state;
  char *p = problem_of("%s|%d", "q\"b\\s/\b\f\n\r\t\x01\x1f\x7f|\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80|"
                                "\xff|\xc0\xaf|\xed\xa0\x80|\xe2\x82|\xf4\x90\x80\x80", 7);
  problem pr;
  assert_true(parse_problem(p, strlen(p), &pr));
  assert_string_equal(pr.type, "https://e.x/t?a=\"b\"");
  assert_string_equal(pr.title, "T\\itle");
  assert_int_equal(pr.status, 418);
  /* Valid UTF-8 passes through; each invalid byte becomes U+FFFD. */
  assert_string_equal(pr.detail,
                      "q\"b\\s/\b\f\n\r\t\x01\x1f\x7f|\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80|"
                      "\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|"
                      "\xef\xbf\xbd\xef\xbf\xbd|"
                      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|7");
  /* The escapes themselves, exactly. */
  assert_non_null(strstr(p, "\"detail\":\"q\\\"b\\\\s/\\b\\f\\n\\r\\t\\u0001\\u001f\\u007f|"));
  free(p);
  char out[16];
  assert_int_equal(resil__json_escape(NULL, "a\"", 2), 3);
  assert_int_equal(resil__json_escape(out, "a\"", 2), 3);
  assert_memory_equal(out, "a\\\"", 3);
}

/* ---- configuration and arguments -------------------------------------------- */

static void test_config(void **state) {
  (void)state;
  fx *f = fx_new(NULL);
  resil_idem_config cfg;
  resil_idem_config_init(&cfg);
  assert_int_equal(cfg.size, sizeof cfg);
  assert_string_equal(cfg.header_name, "Idempotency-Key");
  assert_int_equal(cfg.lease, 60 * RESIL_SEC);
  assert_int_equal(cfg.ttl, 24 * RESIL_HOUR);
  assert_int_equal(cfg.max_stored_body, 1024 * 1024);
  assert_int_equal(cfg.n_stored_headers, 2);
  assert_int_equal(cfg.require_key, 0);
  assert_int_equal(cfg.store_5xx, 0);
  assert_null(cfg.log);

  resil_idem *idem = (resil_idem *)(uintptr_t)1;
  assert_int_equal(resil_idem_new(&idem, &cfg), RESIL_EINVAL); /* no store */
  assert_null(idem);
  assert_int_equal(resil_idem_new(NULL, &cfg), RESIL_EINVAL);
  assert_int_equal(resil_idem_new(&idem, NULL), RESIL_EINVAL);
  static const char *const bad_names[] = {"X-Ok", "Not a token"};
  for (int i = 0; i < 7; i++) {
    resil_idem_config c;
    resil_idem_config_init(&c);
    c.store = f->store;
    switch (i) {
      case 0: c.size = 0; break;
      case 1: c.lease = 0; break;
      case 2: c.ttl = -1; break;
      case 3: c.header_name = "Idempotency Key"; break;
      case 4: c.header_name = ""; break;
      case 5: c.fingerprint_headers = bad_names, c.n_fingerprint_headers = 2; break;
      case 6: c.stored_headers = NULL, c.n_stored_headers = 1; break;
    }
    assert_int_equal(resil_idem_new(&idem, &c), RESIL_EINVAL);
  }
  /* The config is copied: changing it afterwards changes nothing. */
  char name[] = "X-Key";
  const char *stored[] = {"X-Keep", "Idempotent-Replayed"}; /* the marker is never stored */
  cfg.store = f->store;
  cfg.header_name = name;
  cfg.stored_headers = stored;
  cfg.n_stored_headers = 2;
  assert_int_equal(resil_idem_new(&idem, &cfg), RESIL_OK);
  name[0] = 'Y';
  stored[0] = "X-Other";
  req q;
  req_init(&q, NULL, "x", NULL);
  req_add(&q, "X-Key", "k");
  resil_idem_decision d;
  resil_idem_txn *t = NULL;
  assert_int_equal(resil_idem_begin(idem, &q.r, &t, &d), RESIL_OK);
  assert_int_equal(d.action, RESIL_IDEM_RUN);
  assert_non_null(t);
  resil_idem_decision_clear(&d);
  resil_http_header rh[] = {{"x-keep", "1"}, {"X-Other", "2"}, {"Idempotent-Replayed", "x"}};
  resil_stored_response resp = {200, rh, 3, "b", 1};
  assert_int_equal(resil_idem_finish(t, &resp), RESIL_OK);
  assert_int_equal(resil_idem_begin(idem, &q.r, &t, &d), RESIL_OK);
  assert_int_equal(d.action, RESIL_IDEM_REPLAY);
  assert_int_equal(d.n_headers, 2);
  assert_string_equal(d.headers[0].name, "x-keep");
  assert_string_equal(d.headers[1].name, "Idempotent-Replayed");
  assert_string_equal(d.headers[1].value, "true");
  resil_idem_decision_clear(&d);
  resil_idem_free(idem);
  resil_idem_free(NULL);

  /* begin's arguments. */
  assert_int_equal(resil_idem_begin(NULL, &q.r, &t, &d), RESIL_EINVAL);
  assert_null(t);
  assert_int_equal(resil_idem_begin(f->idem, NULL, &t, &d), RESIL_EINVAL);
  assert_int_equal(resil_idem_begin(f->idem, &q.r, NULL, &d), RESIL_EINVAL);
  assert_int_equal(resil_idem_begin(f->idem, &q.r, &t, NULL), RESIL_EINVAL);
  q.r.target = NULL;
  assert_int_equal(resil_idem_begin(f->idem, &q.r, &t, &d), RESIL_EINVAL);
  assert_int_equal(d.action, RESIL_IDEM_RUN);
  assert_null(d.owned_);
  resil_idem_decision_clear(&d); /* safe after a failed begin */
  resil_idem_decision_clear(NULL);
  q.r.target = "/";
  q.h[0].value = NULL;
  assert_int_equal(resil_idem_begin(f->idem, &q.r, &t, &d), RESIL_EINVAL);
  fx_free(f);
}

/* ---- allocation failures --------------------------------------------------- */
/* The store's allocator (which resil_idem uses too) fails after `left`
 * allocations: every failure is reported, nothing leaks (ASan checks), and
 * no claim is ever left behind. */

typedef struct failing {
  long left; /* -1: unlimited */
} failing;

static void *fail_malloc(void *ud, size_t n) {
  failing *f = ud;
  if (f->left == 0) return NULL;
  if (f->left > 0) f->left--;
  return malloc(n);
}

static void *fail_realloc(void *ud, void *p, size_t n) {
  failing *f = ud;
  if (f->left == 0) return NULL;
  if (f->left > 0) f->left--;
  return realloc(p, n);
}

static void fail_free(void *ud, void *p) {
  (void)ud;
  free(p);
}

static void test_alloc_failures(void **state) {
  (void)state;
  int completed = 0;
  for (long n = 0; n < 200 && !completed; n++) {
    failing fl = {-1};
    resil_fakeclock *fc;
    assert_int_equal(resil_fakeclock_new(&fc, 0, T0), RESIL_OK);
    resil_store_options opt;
    resil_store_options_init(&opt);
    opt.clock = resil_fakeclock_wallclock(fc);
    opt.alloc = (resil_allocator){fail_malloc, fail_realloc, fail_free, &fl};
    resil_store *store;
    assert_int_equal(resil_store_open(&store, "memory:", &opt, NULL, 0), RESIL_OK);
    resil_idem_config cfg;
    resil_idem_config_init(&cfg);
    cfg.store = store;
    resil_idem *idem;
    assert_int_equal(resil_idem_new(&idem, &cfg), RESIL_OK);

    req q;
    req_init(&q, "k", "x", "scope");
    resil_idem_decision d;
    resil_idem_txn *t;
    fl.left = n;
    for (int round = 0; round < 2; round++) {
      resil_err e = resil_idem_begin(idem, &q.r, &t, &d);
      assert_true(e == RESIL_OK || e == RESIL_ENOMEM);
      if (e != RESIL_OK) {
        assert_null(t);
        assert_null(d.owned_);
        continue;
      }
      if (d.action == RESIL_IDEM_RUN) {
        assert_non_null(t);
        e = finish_with(t, 200, "ok");
        assert_true(e == RESIL_OK || e == RESIL_ENOMEM || e == RESIL_ESTORE);
      } else if (d.action == RESIL_IDEM_REJECT) {
        assert_int_equal(d.status, 503); /* the store ran out of memory */
      } else {
        check_replay(&d, 200, "ok");
        completed = round == 1 && fl.left != 0;
      }
      resil_idem_decision_clear(&d);
    }
    /* With memory again: stored or released, never stuck in progress. */
    fl.left = -1;
    assert_int_equal(resil_idem_begin(idem, &q.r, &t, &d), RESIL_OK);
    assert_int_not_equal(d.action, RESIL_IDEM_REJECT);
    resil_idem_decision_clear(&d);
    resil_idem_abort(t);
    resil_idem_free(idem);
    resil_store_close(store);
    resil_fakeclock_free(fc);
  }
  assert_true(completed);
}

/* ---- 16 threads, one key ---------------------------------------------------- */

enum { NTHREADS = 16 };

typedef struct race {
  fx *f;
  pthread_barrier_t barrier;
  int expect_replay;
  pthread_mutex_t mu;
  int runs, rejects_409, replays, other;
  resil_idem_txn *winner;
} race;

static void *racer(void *arg) {
  race *r = arg;
  req q;
  req_init(&q, "the-key", "same body", "tenant");
  resil_idem_decision d;
  resil_idem_txn *txn = NULL;
  pthread_barrier_wait(&r->barrier);
  resil_err e = resil_idem_begin(r->f->idem, &q.r, &txn, &d);
  int ok_replay = e == RESIL_OK && d.action == RESIL_IDEM_REPLAY && d.status == 201 &&
                  d.body_len == 4 && memcmp(d.body, "made", 4) == 0;
  pthread_mutex_lock(&r->mu);
  if (e != RESIL_OK) r->other++;
  else if (d.action == RESIL_IDEM_RUN && txn) r->runs++, r->winner = txn;
  else if (d.action == RESIL_IDEM_REJECT && d.status == 409) r->rejects_409++;
  else if (ok_replay) r->replays++;
  else r->other++;
  pthread_mutex_unlock(&r->mu);
  resil_idem_decision_clear(&d);
  return NULL;
}

static void run_race(race *r) {
  pthread_t th[NTHREADS];
  pthread_barrier_init(&r->barrier, NULL, NTHREADS);
  r->runs = r->rejects_409 = r->replays = r->other = 0;
  for (int i = 0; i < NTHREADS; i++) assert_int_equal(pthread_create(&th[i], NULL, racer, r), 0);
  for (int i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
  pthread_barrier_destroy(&r->barrier);
}

static void test_threads(void **state) {
  (void)state;
  race r;
  memset(&r, 0, sizeof r);
  r.f = fx_new(NULL);
  pthread_mutex_init(&r.mu, NULL);
  run_race(&r);
  assert_int_equal(r.runs, 1);
  assert_int_equal(r.rejects_409, NTHREADS - 1);
  assert_int_equal(r.other, 0);
  assert_int_equal(finish_with(r.winner, 201, "made"), RESIL_OK);
  run_race(&r);
  assert_int_equal(r.replays, NTHREADS);
  assert_int_equal(r.other, 0);
  pthread_mutex_destroy(&r.mu);
  fx_free(r.f);
}

/* ---- sqlite: -------------------------------------------------------------------- */

static void test_sqlite(void **state) {
  (void)state;
  char dir[] = "/tmp/resil-idem-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[128], url[160];
  snprintf(path, sizeof path, "%s/idem.db", dir);
  snprintf(url, sizeof url, "sqlite:%s", path);
  resil_store *probe = NULL;
  resil_err e = resil_store_open(&probe, url, NULL, NULL, 0);
  if (e == RESIL_EUNSUPPORTED) {
    rmdir(dir);
    skip();
  }
  assert_int_equal(e, RESIL_OK);
  resil_store_close(probe);
  fx *f = fx_new_url(url, NULL);
  basic_flow(f);
  fx_free(f);
  /* Another handle on the same file (another process, say) replays it. */
  f = fx_new_url(url, NULL);
  req q;
  req_init(&q, "order-1", "{\"sku\":42}", "alice");
  resil_idem_decision d;
  begin_expect(f, &q, RESIL_IDEM_REPLAY, 201, &d);
  check_replay(&d, 201, "{\"id\":1}");
  resil_idem_decision_clear(&d);
  fx_free(f);
  const char *suffixes[] = {"", "-wal", "-shm", "-journal"};
  for (size_t i = 0; i < ARRAY_LEN(suffixes); i++) {
    char p[160];
    snprintf(p, sizeof p, "%s%s", path, suffixes[i]);
    unlink(p);
  }
  assert_int_equal(rmdir(dir), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_json_checker),   cmocka_unit_test(test_problem_json),
      cmocka_unit_test(test_fingerprint),    cmocka_unit_test(test_run_replay),
      cmocka_unit_test(test_in_progress),    cmocka_unit_test(test_mismatch),
      cmocka_unit_test(test_scopes),         cmocka_unit_test(test_bad_keys),
      cmocka_unit_test(test_custom_header),  cmocka_unit_test(test_no_key),
      cmocka_unit_test(test_5xx),            cmocka_unit_test(test_abort),
      cmocka_unit_test(test_lease_takeover), cmocka_unit_test(test_max_body),
      cmocka_unit_test(test_store_failure),  cmocka_unit_test(test_config),
      cmocka_unit_test(test_alloc_failures), cmocka_unit_test(test_threads),
      cmocka_unit_test(test_sqlite),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
