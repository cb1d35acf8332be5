/* Idempotency stores: URL dispatch, argument checks and the helpers every
 * backend shares (the stored header encoding and the REPLAY block). See
 * include/resil/store.h for the protocol and docs/stores.md for the
 * backends. libc only: the SQLite backend lives in sqlite.c and is reached
 * through resil__store_sqlite_open when RESIL_HAVE_SQLITE is defined; Redis
 * (redis.c, RESIL_HAVE_REDIS) and PostgreSQL (pg.c, RESIL_HAVE_PG) parse
 * their own URLs. */
#define _POSIX_C_SOURCE 200809L /* strnlen */
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "resil/store.h"
#include "resil/store_pg.h"
#include "store/internal.h"

void resil__store_msg(char *buf, size_t len, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, len, fmt, ap);
  va_end(ap);
}

resil_err resil__store_vfail(resil_store *s, pthread_mutex_t *mu, const char *where,
                             const char *fmt, va_list ap) {
  char msg[224];
  vsnprintf(msg, sizeof msg, fmt, ap);
  pthread_mutex_lock(mu);
  resil__store_msg(s->errmsg, sizeof s->errmsg, "%s store %s: %s", s->vtab->name, where, msg);
  pthread_mutex_unlock(mu);
  return RESIL_ESTORE;
}

#define SCOPE_KEY_MAX 255
#define MEMORY_DEFAULT_MAX_ENTRIES 100000
#define SQLITE_DEFAULT_BUSY_MS 5000

/* ---- small public helpers ------------------------------------------------- */

void resil_store_options_init(resil_store_options *o) {
  if (o == NULL) return;
  memset(o, 0, sizeof *o);
  o->size = sizeof *o;
  o->clock = resil_wallclock_system();
  o->alloc = resil_allocator_default();
}

const char *resil_claim_status_name(resil_claim_status s) {
  switch (s) {
    case RESIL_CLAIM_CLAIMED: return "claimed";
    case RESIL_CLAIM_IN_PROGRESS: return "in-progress";
    case RESIL_CLAIM_REPLAY: return "replay";
    case RESIL_CLAIM_MISMATCH: return "mismatch";
  }
  return "unknown";
}

/* What a failed claim leaves behind: IN_PROGRESS with nothing owned, so a
 * caller that ignores the error still does not run the handler. */
static void result_fail_closed(resil_claim_result *r) {
  memset(r, 0, sizeof *r);
  r->status = RESIL_CLAIM_IN_PROGRESS;
}

void resil_claim_result_clear(resil_claim_result *r) {
  if (r == NULL) return;
  if (r->owned_ != NULL) {
    /* The block starts with a copy of the allocator that made it, so the
     * result does not depend on the store still being open. */
    resil_allocator a;
    memcpy(&a, r->owned_, sizeof a);
    a.free(a.ud, r->owned_);
  }
  memset(r, 0, sizeof *r);
}

const char *resil_store_errmsg(const resil_store *s) { return s ? s->errmsg : ""; }

const char *resil_store_name(const resil_store *s) {
  return (s && s->vtab && s->vtab->name) ? s->vtab->name : "";
}

/* ---- stored headers and the REPLAY block ---------------------------------- */

static void put_u32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
  p[2] = (unsigned char)(v >> 16);
  p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_u32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

resil_err resil__store_headers_size(const resil_http_header *h, size_t n, size_t *out) {
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    size_t ln = strlen(h[i].name), lv = strlen(h[i].value);
    if (ln > UINT32_MAX || lv > UINT32_MAX) return RESIL_EINVAL;
    size_t one = 8 + ln + lv;
    if (one < ln || total > SIZE_MAX - one) return RESIL_EINVAL;
    total += one;
  }
  *out = total;
  return RESIL_OK;
}

void resil__store_headers_encode(const resil_http_header *h, size_t n, unsigned char *dst) {
  for (size_t i = 0; i < n; i++) {
    const char *parts[2] = {h[i].name, h[i].value};
    for (int j = 0; j < 2; j++) {
      size_t len = strlen(parts[j]);
      put_u32(dst, (uint32_t)len);
      memcpy(dst + 4, parts[j], len);
      dst += 4 + len;
    }
  }
}

/* Walk the encoded headers: count them and the bytes their strings need
 * (with NULs). Rejects truncation and embedded NULs. */
static int headers_scan(const unsigned char *p, size_t len, size_t *n, size_t *strings) {
  size_t i = 0, count = 0, bytes = 0;
  while (i < len) {
    for (int j = 0; j < 2; j++) {
      if (len - i < 4) return -1;
      uint32_t l = get_u32(p + i);
      i += 4;
      if (l > len - i || memchr(p + i, '\0', l) != NULL) return -1;
      i += l;
      bytes += (size_t)l + 1;
    }
    count++;
  }
  *n = count;
  *strings = bytes;
  return 0;
}

resil_err resil__store_replay(resil_claim_result *out, const resil_allocator *a, int status,
                              const void *headers, size_t headers_len, const void *body,
                              size_t body_len) {
  size_t n = 0, strings = 0;
  if (headers_len > 0 && (headers == NULL || headers_scan(headers, headers_len, &n, &strings) != 0))
    return RESIL_EPARSE;
  if (body_len > 0 && body == NULL) return RESIL_EPARSE;

  /* [allocator][header array][body + NUL][strings]; each part fits because
   * it is a copy of memory that already exists. */
  size_t off_hdr = sizeof(resil_allocator);
  size_t off_body = off_hdr + n * sizeof(resil_http_header);
  size_t off_str = off_body + body_len + 1;
  if (off_str < body_len || off_str + strings < off_str) return RESIL_ENOMEM;
  unsigned char *blk = resil__alloc(a, off_str + strings);
  if (blk == NULL) return RESIL_ENOMEM;
  memcpy(blk, a, sizeof *a);

  resil_http_header *hdr = (resil_http_header *)(void *)(blk + off_hdr);
  unsigned char *body_copy = blk + off_body;
  char *str = (char *)blk + off_str;
  const unsigned char *p = headers;
  for (size_t k = 0; k < n; k++) {
    const char *parts[2];
    for (int j = 0; j < 2; j++) {
      uint32_t l = get_u32(p);
      memcpy(str, p + 4, l);
      str[l] = '\0';
      parts[j] = str;
      str += (size_t)l + 1;
      p += 4 + (size_t)l;
    }
    hdr[k].name = parts[0];
    hdr[k].value = parts[1];
  }
  if (body_len) memcpy(body_copy, body, body_len);
  body_copy[body_len] = '\0';

  memset(out, 0, sizeof *out);
  out->status = RESIL_CLAIM_REPLAY;
  out->response.status = status;
  out->response.headers = n ? hdr : NULL;
  out->response.n_headers = n;
  out->response.body = body_copy;
  out->response.body_len = body_len;
  out->owned_ = blk;
  out->alloc_ = (const resil_allocator *)(void *)blk;
  return RESIL_OK;
}

/* ---- argument checks and dispatch ----------------------------------------- */

/* Argument errors are reported like backend errors (best effort under
 * concurrency, as the header says). */
static void set_errmsg(resil_store *s, const char *msg) {
  snprintf(s->errmsg, sizeof s->errmsg, "%s", msg);
}

/* NULL if ok, else what is wrong with the scope or key. */
static const char *check_name(const char *v, const char *what, char *buf, size_t len) {
  if (v == NULL) {
    snprintf(buf, len, "%s is NULL", what);
    return buf;
  }
  size_t n = strnlen(v, SCOPE_KEY_MAX + 1);
  if (n == 0) {
    snprintf(buf, len, "%s is empty", what);
    return buf;
  }
  if (n > SCOPE_KEY_MAX) {
    snprintf(buf, len, "%s is longer than %d bytes", what, SCOPE_KEY_MAX);
    return buf;
  }
  return NULL;
}

static resil_err check_scope_key(resil_store *s, const char *scope, const char *key) {
  char buf[64];
  const char *why = check_name(scope, "scope", buf, sizeof buf);
  if (why == NULL) why = check_name(key, "key", buf, sizeof buf);
  if (why == NULL) return RESIL_OK;
  set_errmsg(s, why);
  return RESIL_EINVAL;
}

resil_err resil_store_claim(resil_store *s, const char *scope, const char *key,
                            const uint8_t fingerprint[RESIL_FINGERPRINT_SIZE], resil_ns lease,
                            resil_claim_result *out) {
  if (out == NULL) return RESIL_EINVAL;
  result_fail_closed(out);
  if (s == NULL) return RESIL_EINVAL;
  resil_err rc = check_scope_key(s, scope, key);
  if (rc != RESIL_OK) return rc;
  if (fingerprint == NULL) {
    set_errmsg(s, "fingerprint is NULL");
    return RESIL_EINVAL;
  }
  if (lease <= 0) {
    set_errmsg(s, "lease must be > 0");
    return RESIL_EINVAL;
  }
  rc = s->vtab->claim(s, scope, key, fingerprint, lease, out);
  if (rc != RESIL_OK) {
    resil_claim_result_clear(out); /* a backend leaves nothing, but be sure */
    result_fail_closed(out);
  }
  return rc;
}

resil_err resil_store_complete(resil_store *s, const char *scope, const char *key,
                               uint64_t token, const resil_stored_response *response,
                               resil_ns ttl) {
  if (s == NULL) return RESIL_EINVAL;
  resil_err rc = check_scope_key(s, scope, key);
  if (rc != RESIL_OK) return rc;
  if (ttl <= 0) {
    set_errmsg(s, "ttl must be > 0");
    return RESIL_EINVAL;
  }
  if (response == NULL) {
    set_errmsg(s, "response is NULL");
    return RESIL_EINVAL;
  }
  if (response->n_headers > 0 && response->headers == NULL) {
    set_errmsg(s, "response has n_headers > 0 but no headers");
    return RESIL_EINVAL;
  }
  for (size_t i = 0; i < response->n_headers; i++) {
    if (response->headers[i].name == NULL || response->headers[i].value == NULL) {
      set_errmsg(s, "response header with a NULL name or value");
      return RESIL_EINVAL;
    }
  }
  if (response->body_len > 0 && response->body == NULL) {
    set_errmsg(s, "response has body_len > 0 but no body");
    return RESIL_EINVAL;
  }
  return s->vtab->complete(s, scope, key, token, response, ttl);
}

resil_err resil_store_release(resil_store *s, const char *scope, const char *key,
                              uint64_t token) {
  if (s == NULL) return RESIL_EINVAL;
  resil_err rc = check_scope_key(s, scope, key);
  if (rc != RESIL_OK) return rc;
  return s->vtab->release(s, scope, key, token);
}

resil_err resil_store_purge(resil_store *s, uint64_t *purged) {
  if (purged) *purged = 0;
  if (s == NULL) return RESIL_EINVAL;
  return s->vtab->purge(s, purged);
}

void resil_store_close(resil_store *s) {
  if (s != NULL) s->vtab->close(s);
}

/* ---- opening by URL ------------------------------------------------------- */

static void put_err(char *errbuf, size_t errlen, const char *msg) {
  if (errbuf != NULL && errlen > 0) snprintf(errbuf, errlen, "%s", msg);
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = resil__ascii_lower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* Decode %XX escapes in place. -1 for a bad escape or an escaped NUL. */
static int pct_decode(char *s) {
  char *w = s;
  for (const char *r = s; *r; r++) {
    if (*r != '%') {
      *w++ = *r;
      continue;
    }
    int hi = hexval((unsigned char)r[1]), lo = hi < 0 ? -1 : hexval((unsigned char)r[2]);
    if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return -1;
    *w++ = (char)(hi * 16 + lo);
    r += 2;
  }
  *w = '\0';
  return 0;
}

/* Digits only, no sign or spaces, at most max. */
static int parse_uint(const char *v, unsigned long long max, unsigned long long *out) {
  if (*v == '\0') return -1;
  unsigned long long x = 0;
  for (; *v; v++) {
    if (*v < '0' || *v > '9') return -1;
    unsigned d = (unsigned)(*v - '0');
    if (x > (max - d) / 10) return -1;
    x = x * 10 + d;
  }
  *out = x;
  return 0;
}

typedef struct url_params {
  const char *backend;   /* "memory:" / "sqlite:", for messages */
  const char *known;     /* "max_entries" ..., for messages */
  unsigned long long max_entries;
  int sync_full;
  unsigned long long busy_ms;
  unsigned seen; /* bit per parameter */
} url_params;

enum { P_MAX_ENTRIES = 1, P_SYNCHRONOUS = 2, P_BUSY_TIMEOUT = 4 };

/* One "name=value" (value already decoded). */
static int set_param(url_params *p, const char *name, const char *value, char *err, size_t len) {
  unsigned bit = 0;
  if (strcmp(p->backend, "memory:") == 0 && resil__strcaseeq(name, "max_entries")) {
    bit = P_MAX_ENTRIES;
  } else if (strcmp(p->backend, "sqlite:") == 0 && resil__strcaseeq(name, "synchronous")) {
    bit = P_SYNCHRONOUS;
  } else if (strcmp(p->backend, "sqlite:") == 0 && resil__strcaseeq(name, "busy_timeout")) {
    bit = P_BUSY_TIMEOUT;
  } else {
    snprintf(err, len, "unknown parameter '%.64s' for a %s store (known: %s)", name, p->backend,
             p->known);
    return -1;
  }
  if (p->seen & bit) {
    snprintf(err, len, "parameter '%.64s' given twice", name);
    return -1;
  }
  p->seen |= bit;
  if (bit == P_MAX_ENTRIES) {
    /* An upper bound that keeps the table arithmetic far from overflow. */
    if (parse_uint(value, (unsigned long long)(SIZE_MAX / 64), &p->max_entries) != 0 ||
        p->max_entries == 0) {
      snprintf(err, len, "max_entries must be a whole number >= 1, not '%.64s'", value);
      return -1;
    }
  } else if (bit == P_SYNCHRONOUS) {
    if (resil__strcaseeq(value, "full")) {
      p->sync_full = 1;
    } else if (resil__strcaseeq(value, "normal")) {
      p->sync_full = 0;
    } else {
      snprintf(err, len, "synchronous must be full or normal, not '%.64s'", value);
      return -1;
    }
  } else if (parse_uint(value, 2147483647ull, &p->busy_ms) != 0) {
    snprintf(err, len, "busy_timeout must be milliseconds (0 to 2147483647), not '%.64s'", value);
    return -1;
  }
  return 0;
}

/* Parse "a=1&b=2" (modified in place). */
static int parse_query(url_params *p, char *q, char *err, size_t len) {
  while (q != NULL) {
    char *amp = strchr(q, '&');
    if (amp) *amp = '\0';
    char *eq = strchr(q, '=');
    if (*q == '\0' || eq == q) {
      snprintf(err, len, "empty parameter name in the store URL's query");
      return -1;
    }
    if (eq == NULL || eq[1] == '\0') {
      snprintf(err, len, "parameter '%.64s' needs a value (%.64s=...)", q, q);
      return -1;
    }
    *eq = '\0';
    char *value = eq + 1;
    if (pct_decode(q) != 0 || pct_decode(value) != 0) {
      snprintf(err, len, "bad %%XX escape in parameter '%.64s'", q);
      return -1;
    }
    if (set_param(p, q, value, err, len) != 0) return -1;
    q = amp ? amp + 1 : NULL;
  }
  return 0;
}

static int scheme_char(char c, int first) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return 1;
  return !first && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.');
}

resil_err resil_store_open(resil_store **out, const char *url, const resil_store_options *opt,
                           char *errbuf, size_t errlen) {
  char err[512];
  if (errbuf != NULL && errlen > 0) errbuf[0] = '\0';
  if (out == NULL) {
    put_err(errbuf, errlen, "out is NULL");
    return RESIL_EINVAL;
  }
  *out = NULL;

  resil_store_options o;
  if (opt == NULL) {
    resil_store_options_init(&o);
  } else if (opt->size != sizeof *opt) {
    put_err(errbuf, errlen, "store options not set up (call resil_store_options_init first)");
    return RESIL_EINVAL;
  } else {
    o = *opt;
  }
  if (o.clock.now == NULL) {
    put_err(errbuf, errlen, "store options: clock.now is NULL");
    return RESIL_EINVAL;
  }
  if (o.alloc.malloc != NULL && (o.alloc.realloc == NULL || o.alloc.free == NULL)) {
    put_err(errbuf, errlen, "store options: an allocator needs malloc, realloc and free");
    return RESIL_EINVAL;
  }
  o.alloc = resil__alloc_resolve(&o.alloc);

  if (url == NULL || *url == '\0') {
    put_err(errbuf, errlen, "empty store URL (use memory: or sqlite:PATH)");
    return RESIL_EINVAL;
  }
  size_t slen = 0;
  while (scheme_char(url[slen], slen == 0)) slen++;
  if (slen == 0 || url[slen] != ':') {
    snprintf(err, sizeof err, "store URL '%.200s' has no scheme (use memory: or sqlite:PATH)",
             url);
    put_err(errbuf, errlen, err);
    return RESIL_EINVAL;
  }
  char scheme[16];
  if (slen >= sizeof scheme) {
    snprintf(err, sizeof err, "unknown store scheme '%.*s' (use memory: or sqlite:PATH)",
             (int)(slen > 64 ? 64 : slen), url);
    put_err(errbuf, errlen, err);
    return RESIL_EINVAL;
  }
  for (size_t i = 0; i < slen; i++) scheme[i] = (char)resil__ascii_lower((unsigned char)url[i]);
  scheme[slen] = '\0';

  int is_memory = strcmp(scheme, "memory") == 0, is_sqlite = strcmp(scheme, "sqlite") == 0;
  if (strcmp(scheme, "redis") == 0 || strcmp(scheme, "rediss") == 0) {
#ifdef RESIL_HAVE_REDIS
    err[0] = '\0';
    resil_err rc = resil__store_redis_open(out, &o, url, err, sizeof err);
    if (rc != RESIL_OK) put_err(errbuf, errlen, err[0] ? err : resil_strerror(rc));
    return rc;
#else
    snprintf(err, sizeof err,
             "the %s store is not built into this resil (built with RESIL_WITH_REDIS=OFF)",
             scheme);
    put_err(errbuf, errlen, err);
    return RESIL_EUNSUPPORTED;
#endif
  }
  if (strcmp(scheme, "postgres") == 0 || strcmp(scheme, "postgresql") == 0) {
#ifdef RESIL_HAVE_PG
    err[0] = '\0';
    resil_err rc = resil__store_pg_open(out, &o, url, err, sizeof err);
    if (rc != RESIL_OK) put_err(errbuf, errlen, err[0] ? err : resil_strerror(rc));
    return rc;
#else
    snprintf(err, sizeof err,
             "the %s store is not built into this resil (built with RESIL_WITH_PG=OFF)", scheme);
    put_err(errbuf, errlen, err);
    return RESIL_EUNSUPPORTED;
#endif
  }
  if (!is_memory && !is_sqlite) {
    snprintf(err, sizeof err, "unknown store scheme '%s' (use memory: or sqlite:PATH)", scheme);
    put_err(errbuf, errlen, err);
    return RESIL_EINVAL;
  }
#ifndef RESIL_HAVE_SQLITE
  if (is_sqlite) {
    put_err(errbuf, errlen,
            "the sqlite store is not built into this resil (built with RESIL_WITH_SQLITE=OFF)");
    return RESIL_EUNSUPPORTED;
  }
#endif

  /* A private copy to split and decode in place. */
  size_t rest_len = strlen(url + slen + 1);
  char *rest = resil__alloc(&o.alloc, rest_len + 1);
  if (rest == NULL) {
    put_err(errbuf, errlen, "out of memory");
    return RESIL_ENOMEM;
  }
  memcpy(rest, url + slen + 1, rest_len + 1);
  char *query = strchr(rest, '?');
  if (query) *query++ = '\0';

  url_params p;
  memset(&p, 0, sizeof p);
  p.backend = is_memory ? "memory:" : "sqlite:";
  p.known = is_memory ? "max_entries" : "synchronous, busy_timeout";
  p.max_entries = MEMORY_DEFAULT_MAX_ENTRIES;
  p.sync_full = 1;
  p.busy_ms = SQLITE_DEFAULT_BUSY_MS;

  resil_err rc = RESIL_EINVAL;
  err[0] = '\0';
  if (query != NULL && parse_query(&p, query, err, sizeof err) != 0) goto done;
  if (is_memory) {
    if (rest[0] != '\0') {
      snprintf(err, sizeof err,
               "memory: takes no path ('%.64s'); parameters go after '?' (memory:?max_entries=N)",
               rest);
      goto done;
    }
    rc = resil__store_memory_open(out, &o, (size_t)p.max_entries, err, sizeof err);
  } else {
    char *path = rest;
    if (pct_decode(path) != 0) {
      snprintf(err, sizeof err, "bad %%XX escape in the sqlite: path");
      goto done;
    }
    if (path[0] == '/' && path[1] == '/') {
      /* sqlite:///abs/path: an empty authority, like file:///. */
      if (path[2] != '/') {
        snprintf(err, sizeof err,
                 "sqlite://HOST/... is not a local file (use sqlite:PATH or sqlite:///ABSPATH)");
        goto done;
      }
      path += 2;
    }
    if (path[0] == '\0') {
      snprintf(err, sizeof err, "sqlite: needs a file path (sqlite:/var/lib/app/idem.db)");
      goto done;
    }
#ifdef RESIL_HAVE_SQLITE
    rc = resil__store_sqlite_open(out, &o, path, p.sync_full, (int)p.busy_ms, err, sizeof err);
#endif
  }

done:
  resil__free(&o.alloc, rest);
  if (rc != RESIL_OK) {
    *out = NULL;
    put_err(errbuf, errlen, err[0] ? err : resil_strerror(rc));
  }
  return rc;
}

#ifndef RESIL_HAVE_PG
/* Built without PostgreSQL: the transactional mode is not there either. */
resil_err resil_store_pg_with_conn(resil_store **out, void *pgconn,
                                   const resil_store_options *opt, char *errbuf, size_t errlen) {
  (void)pgconn;
  (void)opt;
  if (out != NULL) *out = NULL;
  put_err(errbuf, errlen,
          "the postgres store is not built into this resil (built with RESIL_WITH_PG=OFF)");
  return RESIL_EUNSUPPORTED;
}
#endif
