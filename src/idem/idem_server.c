/* Server-side idempotency on a resil_store (include/resil/idem_server.h).
 *
 * A resil_idem is immutable after _new (one block holding the copied config),
 * so begin/finish/abort need no lock of their own: every shared decision is
 * the store's, whose calls are thread-safe and atomic per (scope, key).
 *
 * Memory: everything is allocated with the store's allocator. A decision's
 * owned_ block carries that allocator, its header array, the parsed key and,
 * for a replay, the store's claim result (so the stored body is not copied). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/internal.h"
#include "idem/internal.h"
#include "resil/idem.h"

#define TITLE_KEY_MISSING "Idempotency key missing"
#define TITLE_KEY_INVALID "Invalid idempotency key"
#define TITLE_IN_PROGRESS "Request in progress"
#define TITLE_KEY_REUSED "Idempotency key reused"
#define TITLE_STORE_UNAVAILABLE "Idempotency store unavailable"

#define REPLAYED_HEADER "Idempotent-Replayed"

static const char *const default_stored_headers[] = {"Content-Type", "Location"};

struct resil_idem {
  resil_store *store;
  resil_allocator alloc;
  const char *header_name;
  int require_key;
  resil_ns lease;
  resil_ns ttl;
  int store_5xx;
  const char **fp_headers;
  size_t n_fp_headers;
  const char **stored_headers;
  size_t n_stored_headers;
  size_t max_stored_body;
  resil_log_fn log;
  void *log_ud;
  int fail_open;
};

struct resil_idem_txn {
  resil_idem *idem;
  uint64_t token;
  char scope[RESIL__IDEM_SCOPE_SIZE];
  char key[RESIL_IDEM_KEY_MAX + 1];
};

typedef struct owned {
  resil_allocator alloc;
  resil_claim_result claim; /* REPLAY: the stored response lives here */
  int has_claim;
  char *problem;            /* REJECT: the problem+json body */
  char key[RESIL_IDEM_KEY_MAX + 1];
  char retry_after[24];
  resil_http_header headers[]; /* what the decision sends */
} owned;

/* ---- configuration --------------------------------------------------------- */

void resil_idem_config_init(resil_idem_config *cfg) {
  if (cfg == NULL) return;
  memset(cfg, 0, sizeof *cfg);
  cfg->size = sizeof *cfg;
  cfg->header_name = "Idempotency-Key";
  cfg->lease = 60 * RESIL_SEC;
  cfg->ttl = RESIL_STORE_DEFAULT_TTL;
  cfg->stored_headers = default_stored_headers;
  cfg->n_stored_headers = RESIL_ARRAY_LEN(default_stored_headers);
  cfg->max_stored_body = 1024 * 1024;
}

/* RFC 9110 token: 1*tchar. */
static int is_token(const char *s) {
  if (s == NULL || *s == '\0') return 0;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) continue;
    if (strchr("!#$%&'*+-.^_`|~", c) == NULL) return 0;
  }
  return 1;
}

static int tokens_ok(const char *const *names, size_t n) {
  if (names == NULL && n > 0) return 0;
  for (size_t i = 0; i < n; i++)
    if (!is_token(names[i])) return 0;
  return 1;
}

static size_t align_up(size_t n) {
  size_t a = _Alignof(max_align_t);
  return (n + a - 1) / a * a;
}

static size_t names_len(const char *const *names, size_t n) {
  size_t t = 0;
  for (size_t i = 0; i < n; i++) t += strlen(names[i]) + 1;
  return t;
}

static char *copy_str(char **at, const char *s) {
  size_t n = strlen(s) + 1;
  char *p = memcpy(*at, s, n);
  *at += n;
  return p;
}

resil_err resil_idem_new(resil_idem **out, const resil_idem_config *cfg) {
  if (out == NULL) return RESIL_EINVAL;
  *out = NULL;
  if (cfg == NULL || cfg->size != sizeof *cfg || cfg->store == NULL ||
      cfg->store->vtab == NULL || !is_token(cfg->header_name) || cfg->lease <= 0 ||
      cfg->ttl <= 0 || !tokens_ok(cfg->fingerprint_headers, cfg->n_fingerprint_headers) ||
      !tokens_ok(cfg->stored_headers, cfg->n_stored_headers))
    return RESIL_EINVAL;

  /* One block: the struct, the two pointer arrays, then the strings. */
  size_t n_ptrs = cfg->n_fingerprint_headers + cfg->n_stored_headers;
  if (n_ptrs > SIZE_MAX / 2 / sizeof(char *)) return RESIL_EINVAL;
  size_t off_ptrs = align_up(sizeof(resil_idem));
  size_t off_strs = off_ptrs + n_ptrs * sizeof(char *);
  size_t total = off_strs + strlen(cfg->header_name) + 1 +
                 names_len(cfg->fingerprint_headers, cfg->n_fingerprint_headers) +
                 names_len(cfg->stored_headers, cfg->n_stored_headers);
  resil_allocator alloc = resil__alloc_resolve(&cfg->store->alloc);
  char *block = resil__calloc(&alloc, total);
  if (block == NULL) return RESIL_ENOMEM;

  resil_idem *idem = (resil_idem *)(void *)block;
  const char **ptrs = (const char **)(void *)(block + off_ptrs);
  char *strs = block + off_strs;
  idem->store = cfg->store;
  idem->alloc = alloc;
  idem->header_name = copy_str(&strs, cfg->header_name);
  idem->require_key = cfg->require_key != 0;
  idem->lease = cfg->lease;
  idem->ttl = cfg->ttl;
  idem->store_5xx = cfg->store_5xx != 0;
  idem->fp_headers = ptrs;
  idem->n_fp_headers = cfg->n_fingerprint_headers;
  for (size_t i = 0; i < cfg->n_fingerprint_headers; i++)
    idem->fp_headers[i] = copy_str(&strs, cfg->fingerprint_headers[i]);
  idem->stored_headers = ptrs + cfg->n_fingerprint_headers;
  idem->n_stored_headers = cfg->n_stored_headers;
  for (size_t i = 0; i < cfg->n_stored_headers; i++)
    idem->stored_headers[i] = copy_str(&strs, cfg->stored_headers[i]);
  idem->max_stored_body = cfg->max_stored_body;
  idem->log = cfg->log;
  idem->log_ud = cfg->log_ud;
  idem->fail_open = cfg->fail_open != 0;
  *out = idem;
  return RESIL_OK;
}

void resil_idem_free(resil_idem *idem) {
  if (idem == NULL) return;
  resil_allocator a = idem->alloc;
  resil__free(&a, idem);
}

/* ---- helpers ---------------------------------------------------------------- */

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 2, 3)))
#endif
static void warnf(const resil_idem *idem, const char *fmt, ...) {
  if (idem->log == NULL) return;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  idem->log(idem->log_ud, RESIL_LOG_WARN, msg);
}

static const char *store_msg(const resil_idem *idem, resil_err e) {
  const char *m = resil_store_errmsg(idem->store);
  return m && *m ? m : resil_strerror(e);
}

static owned *owned_new(const resil_idem *idem, size_t n_headers) {
  owned *o = resil__calloc(&idem->alloc, sizeof(owned) + n_headers * sizeof(resil_http_header));
  if (o) o->alloc = idem->alloc;
  return o;
}

static void owned_free(owned *o) {
  if (o == NULL) return;
  if (o->has_claim) resil_claim_result_clear(&o->claim);
  resil_allocator a = o->alloc;
  resil__free(&a, o->problem);
  resil__free(&a, o);
}

void resil_idem_decision_clear(resil_idem_decision *d) {
  if (d == NULL) return;
  owned_free(d->owned_);
  memset(d, 0, sizeof *d);
}

/* Fill d with a problem+json rejection. key (may be NULL) is the parsed
 * key; retry_after > 0 adds that header (seconds). */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 8, 9)))
#endif
static resil_err reject(const resil_idem *idem, resil_idem_decision *d, const char *key,
                        int status, const char *type, const char *title, long long retry_after,
                        const char *fmt, ...) {
  owned *o = owned_new(idem, 2);
  if (o == NULL) return RESIL_ENOMEM;
  size_t len = 0;
  va_list ap;
  va_start(ap, fmt);
  o->problem = resil__idem_problem(&idem->alloc, type, title, status, &len, fmt, ap);
  va_end(ap);
  if (o->problem == NULL) {
    owned_free(o);
    return RESIL_ENOMEM;
  }
  size_t n = 0;
  o->headers[n++] = (resil_http_header){"Content-Type", "application/problem+json"};
  if (retry_after > 0) {
    snprintf(o->retry_after, sizeof o->retry_after, "%lld", retry_after);
    o->headers[n++] = (resil_http_header){"Retry-After", o->retry_after};
  }
  if (key) {
    memcpy(o->key, key, strlen(key) + 1);
    d->key = o->key;
  }
  d->action = RESIL_IDEM_REJECT;
  d->status = status;
  d->headers = o->headers;
  d->n_headers = n;
  d->body = o->problem;
  d->body_len = len;
  d->owned_ = o;
  return RESIL_OK;
}

static resil_err reject_store(const resil_idem *idem, resil_idem_decision *d, const char *key) {
  return reject(idem, d, key, 503, RESIL_IDEM_PROBLEM_STORE_UNAVAILABLE, TITLE_STORE_UNAVAILABLE,
                1,
                "The idempotency store is unavailable, so the request was not processed; "
                "retry in a second.");
}

/* Whole seconds from now until `until` on the store's wall clock, rounded
 * up, at least 1. */
static long long seconds_until(const resil_idem *idem, resil_ns until) {
  resil_wallclock wc = idem->store->clock;
  if (wc.now == NULL) wc = resil_wallclock_system();
  resil_ns left = resil_ns_sub(until, wc.now(wc.ud));
  long long s = (long long)(left / RESIL_SEC) + (left % RESIL_SEC != 0);
  return s < 1 ? 1 : s;
}

/* ---- begin -------------------------------------------------------------------- */

static resil_err replay(const resil_idem *idem, resil_idem_decision *d, const char *key,
                        resil_claim_result *cr) {
  const resil_stored_response *r = &cr->response;
  size_t n = r->headers ? r->n_headers : 0;
  owned *o = owned_new(idem, n + 1);
  if (o == NULL) {
    resil_claim_result_clear(cr);
    return RESIL_ENOMEM;
  }
  o->claim = *cr; /* the result's block now belongs to o */
  o->has_claim = 1;
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (r->headers[i].name && r->headers[i].value &&
        !resil__strcaseeq(r->headers[i].name, REPLAYED_HEADER))
      o->headers[k++] = r->headers[i];
  o->headers[k++] = (resil_http_header){REPLAYED_HEADER, "true"};
  memcpy(o->key, key, strlen(key) + 1);
  d->action = RESIL_IDEM_REPLAY;
  d->status = o->claim.response.status;
  d->headers = o->headers;
  d->n_headers = k;
  d->body = o->claim.response.body;
  d->body_len = o->claim.response.body ? o->claim.response.body_len : 0;
  d->key = o->key;
  d->owned_ = o;
  return RESIL_OK;
}

resil_err resil_idem_begin(resil_idem *idem, const resil_idem_request *req, resil_idem_txn **txn,
                           resil_idem_decision *d) {
  if (txn) *txn = NULL;
  if (d) memset(d, 0, sizeof *d);
  if (idem == NULL || req == NULL || txn == NULL || d == NULL || req->method == NULL ||
      req->target == NULL || (req->headers == NULL && req->n_headers > 0) ||
      (req->body == NULL && req->body_len > 0))
    return RESIL_EINVAL;

  const resil_http_header *kh = NULL;
  size_t n_keys = 0;
  for (size_t i = 0; i < req->n_headers; i++) {
    const resil_http_header *h = &req->headers[i];
    if (h->name == NULL || h->value == NULL) return RESIL_EINVAL;
    if (resil__strcaseeq(h->name, idem->header_name)) {
      if (kh == NULL) kh = h;
      n_keys++;
    }
  }
  const char *hn = idem->header_name;
  if (kh == NULL) {
    if (!idem->require_key) {
      d->action = RESIL_IDEM_RUN;
      return RESIL_OK;
    }
    return reject(idem, d, NULL, 400, RESIL_IDEM_PROBLEM_KEY_MISSING, TITLE_KEY_MISSING, 0,
                  "This request needs an %s header: a unique value (a UUID, for example) that "
                  "stays the same when the request is retried.",
                  hn);
  }
  if (n_keys > 1)
    return reject(idem, d, NULL, 400, RESIL_IDEM_PROBLEM_KEY_INVALID, TITLE_KEY_INVALID, 0,
                  "The request has %zu %s headers; send exactly one.", n_keys, hn);

  char key[RESIL_IDEM_KEY_MAX + 1];
  resil_err e = resil_idem_key_parse(kh->value, strlen(kh->value), key, NULL);
  if (e == RESIL_ERANGE)
    return reject(idem, d, NULL, 400, RESIL_IDEM_PROBLEM_KEY_INVALID, TITLE_KEY_INVALID, 0,
                  "The %s header is longer than %d characters.", hn, RESIL_IDEM_KEY_MAX);
  if (e != RESIL_OK)
    return reject(idem, d, NULL, 400, RESIL_IDEM_PROBLEM_KEY_INVALID, TITLE_KEY_INVALID, 0,
                  "The %s header must be 1 to %d visible ASCII characters, or a quoted string "
                  "of printable ASCII characters.",
                  hn, RESIL_IDEM_KEY_MAX);

  uint8_t fp[RESIL_FINGERPRINT_SIZE];
  e = resil_idem_fingerprint(req, (const char *const *)idem->fp_headers, idem->n_fp_headers, fp);
  if (e != RESIL_OK) return e;
  char scope[RESIL__IDEM_SCOPE_SIZE];
  e = resil__idem_scope_name(req->scope, scope);
  if (e != RESIL_OK) return e;

  /* Everything a RUN needs is allocated before claiming, so a claim is never
   * left behind by an allocation failure. */
  resil_idem_txn *t = resil__calloc(&idem->alloc, sizeof *t);
  owned *o = owned_new(idem, 0);
  if (t == NULL || o == NULL) {
    resil__free(&idem->alloc, t);
    owned_free(o);
    return RESIL_ENOMEM;
  }
  t->idem = idem;
  memcpy(t->scope, scope, sizeof scope);
  memcpy(t->key, key, sizeof key);
  memcpy(o->key, key, sizeof key);

  resil_claim_result cr;
  memset(&cr, 0, sizeof cr);
  e = resil_store_claim(idem->store, scope, key, fp, idem->lease, &cr);
  if (e == RESIL_OK && cr.status == RESIL_CLAIM_CLAIMED) {
    t->token = cr.token;
    resil_claim_result_clear(&cr);
    d->action = RESIL_IDEM_RUN;
    d->key = o->key;
    d->owned_ = o;
    *txn = t;
    return RESIL_OK;
  }
  resil__free(&idem->alloc, t);
  owned_free(o);
  if (e != RESIL_OK) {
    if (idem->fail_open) {
      warnf(idem, "idempotency: store claim for key %s failed (%s); running it without "
            "deduplication (fail_open)", key, store_msg(idem, e));
      d->action = RESIL_IDEM_RUN;
      return RESIL_OK;
    }
    warnf(idem, "idempotency: store claim for key %s failed (%s); answering 503", key,
          store_msg(idem, e));
    return reject_store(idem, d, key);
  }
  switch (cr.status) {
    case RESIL_CLAIM_REPLAY:
      return replay(idem, d, key, &cr);
    case RESIL_CLAIM_IN_PROGRESS: {
      long long secs = seconds_until(idem, cr.lease_expires);
      resil_claim_result_clear(&cr);
      return reject(idem, d, key, 409, RESIL_IDEM_PROBLEM_IN_PROGRESS, TITLE_IN_PROGRESS, secs,
                    "A request with this %s is still being processed; retry in %lld second%s.",
                    hn, secs, secs == 1 ? "" : "s");
    }
    case RESIL_CLAIM_MISMATCH:
      resil_claim_result_clear(&cr);
      return reject(idem, d, key, 422, RESIL_IDEM_PROBLEM_KEY_REUSED, TITLE_KEY_REUSED, 0,
                    "This %s was already used for a different request (its method, target, "
                    "body or significant headers differ); use a new key for a new request.",
                    hn);
    default: {
      int status = (int)cr.status;
      resil_claim_result_clear(&cr);
      warnf(idem, "idempotency: store answered an unknown claim status %d for key %s", status,
            key);
      return reject_store(idem, d, key);
    }
  }
}

/* ---- finish / abort ------------------------------------------------------------- */

static void txn_free(resil_idem_txn *t) {
  resil_allocator a = t->idem->alloc;
  resil__free(&a, t);
}

/* Release the claim; RESIL_ESTORE (and a warning) when the store refuses. */
static resil_err txn_release(resil_idem_txn *t, const char *why) {
  const resil_idem *idem = t->idem;
  resil_err e = resil_store_release(idem->store, t->scope, t->key, t->token);
  if (e == RESIL_OK) return RESIL_OK;
  warnf(idem, "idempotency: releasing key %s (%s) failed: %s", t->key, why, store_msg(idem, e));
  return RESIL_ESTORE;
}

static int response_ok(const resil_stored_response *r) {
  if (r == NULL || r->status < 100 || r->status > 599 || (r->headers == NULL && r->n_headers > 0) ||
      (r->body == NULL && r->body_len > 0))
    return 0;
  for (size_t i = 0; i < r->n_headers; i++)
    if (r->headers[i].name == NULL || r->headers[i].value == NULL) return 0;
  return 1;
}

static int is_stored_header(const resil_idem *idem, const char *name) {
  if (resil__strcaseeq(name, REPLAYED_HEADER)) return 0;
  for (size_t i = 0; i < idem->n_stored_headers; i++)
    if (resil__strcaseeq(name, idem->stored_headers[i])) return 1;
  return 0;
}

static resil_err store_response(resil_idem_txn *t, const resil_stored_response *resp) {
  const resil_idem *idem = t->idem;
  resil_http_header small[16];
  resil_http_header *kept = small;
  if (resp->n_headers > RESIL_ARRAY_LEN(small)) {
    if (resp->n_headers <= SIZE_MAX / sizeof *kept)
      kept = resil__alloc(&idem->alloc, resp->n_headers * sizeof *kept);
    else
      kept = NULL;
    if (kept == NULL) {
      txn_release(t, "out of memory");
      return RESIL_ENOMEM;
    }
  }
  size_t n = 0;
  for (size_t i = 0; i < resp->n_headers; i++)
    if (is_stored_header(idem, resp->headers[i].name)) kept[n++] = resp->headers[i];
  resil_stored_response r = {resp->status, kept, n, resp->body, resp->body_len};
  resil_err e = resil_store_complete(idem->store, t->scope, t->key, t->token, &r, idem->ttl);
  if (kept != small) resil__free(&idem->alloc, kept);
  if (e == RESIL_OK) return RESIL_OK;
  warnf(idem, "idempotency: storing the response for key %s failed: %s", t->key,
        store_msg(idem, e));
  /* Not stored: let a retry run again now rather than wait out the lease.
   * If the lease was lost this fails and changes nothing. */
  (void)resil_store_release(idem->store, t->scope, t->key, t->token);
  return e == RESIL_ENOMEM ? RESIL_ENOMEM : RESIL_ESTORE;
}

resil_err resil_idem_finish(resil_idem_txn *txn, const resil_stored_response *resp) {
  if (txn == NULL) return RESIL_OK;
  const resil_idem *idem = txn->idem;
  resil_err e;
  if (!response_ok(resp)) {
    txn_release(txn, "invalid response");
    e = RESIL_EINVAL;
  } else if (resp->status >= 500 && !idem->store_5xx) {
    e = txn_release(txn, "5xx response");
  } else if (resp->body_len > idem->max_stored_body) {
    warnf(idem,
          "idempotency: response for key %s not stored: its body (%zu bytes) exceeds "
          "max_stored_body (%zu); a retry will run again",
          txn->key, resp->body_len, idem->max_stored_body);
    e = txn_release(txn, "body too large");
  } else {
    e = store_response(txn, resp);
  }
  txn_free(txn);
  return e;
}

void resil_idem_abort(resil_idem_txn *txn) {
  if (txn == NULL) return;
  txn_release(txn, "aborted");
  txn_free(txn);
}
