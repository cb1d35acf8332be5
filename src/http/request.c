/* Requests: defaults, validation, the copy a multi keeps, the header list
 * sent on every attempt, and the request-body callbacks that replay a body
 * byte for byte. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>

#include "http/internal.h"

void resil_http_request_init(resil_http_request *req) {
  if (req == NULL) return;
  memset(req, 0, sizeof *req);
  req->size = sizeof *req;
  req->method = "GET";
  req->body_size = -1;
  req->retry_non_idempotent = -1;
}

/* ---- validation ---------------------------------------------------------- */

int resil__http_token_ok(const char *s) {
  /* tchar: "!#$%&'*+-.^_`|~" / DIGIT / ALPHA */
  static const char extra[] = "!#$%&'*+-.^_`|~";
  if (s == NULL || *s == '\0') return 0;
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    int ok = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
             (ch != '\0' && strchr(extra, ch) != NULL);
    if (!ok) return 0;
  }
  return 1;
}

int resil__http_value_ok(const char *s) {
  if (s == NULL) return 0;
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if ((ch < 0x20 && ch != '\t') || ch == 0x7f) return 0;
  }
  return 1;
}

resil_err resil__http_request_check(const resil_http_request *req) {
  if (req == NULL || req->size != sizeof *req) return RESIL_EINVAL;
  /* The URL itself is libcurl's to judge (a malformed one fails the first
   * attempt with CURLE_URL_MALFORMAT, which is not retried). */
  if (req->url == NULL || req->url[0] == '\0') return RESIL_EINVAL;
  if (req->method != NULL && !resil__http_token_ok(req->method)) return RESIL_EINVAL;
  if (req->body != NULL && req->read_body != NULL) return RESIL_EINVAL;
  if (req->body == NULL && req->body_len > 0) return RESIL_EINVAL;
  if (req->read_body != NULL && (req->rewind_body == NULL || req->body_size < -1))
    return RESIL_EINVAL;
  if (req->n_headers > 0 && req->headers == NULL) return RESIL_EINVAL;
  for (size_t i = 0; i < req->n_headers; i++) {
    if (!resil__http_token_ok(req->headers[i].name) || req->headers[i].value == NULL ||
        !resil__http_value_ok(req->headers[i].value))
      return RESIL_EINVAL;
  }
  if (req->idempotency_key != NULL &&
      (req->idempotency_key[0] == '\0' || !resil__http_value_ok(req->idempotency_key)))
    return RESIL_EINVAL;
  if (req->attempt_timeout < 0 || req->deadline < 0) return RESIL_EINVAL;
  return RESIL_OK;
}

/* ---- the copy kept by a multi ------------------------------------------- */

static char *put_str(char **cur, const char *s) {
  if (s == NULL) return NULL;
  size_t n = strlen(s) + 1;
  char *d = memcpy(*cur, s, n);
  *cur += n;
  return d;
}

size_t resil__http_request_copy_size(const resil_http_request *req) {
  size_t n = sizeof *req + req->n_headers * sizeof(resil_http_header);
  n += (req->method ? strlen(req->method) + 1 : 0) + strlen(req->url) + 1;
  n += req->idempotency_key ? strlen(req->idempotency_key) + 1 : 0;
  for (size_t i = 0; i < req->n_headers; i++)
    n += strlen(req->headers[i].name) + strlen(req->headers[i].value) + 2;
  n += req->body ? req->body_len : 0;
  return n;
}

resil_http_request *resil__http_request_copy(void *mem, const resil_http_request *req) {
  resil_http_request *cp = mem;
  *cp = *req;
  resil_http_header *h = (resil_http_header *)(cp + 1);
  char *cur = (char *)(h + req->n_headers);
  cp->headers = req->n_headers ? h : NULL;
  for (size_t i = 0; i < req->n_headers; i++) {
    h[i].name = put_str(&cur, req->headers[i].name);
    h[i].value = put_str(&cur, req->headers[i].value);
  }
  cp->method = put_str(&cur, req->method);
  cp->url = put_str(&cur, req->url);
  cp->idempotency_key = put_str(&cur, req->idempotency_key);
  if (req->body) {
    if (req->body_len) memcpy(cur, req->body, req->body_len);
    cp->body = cur;
  }
  return cp;
}

/* ---- header list ---------------------------------------------------------- */

static int has_header(const resil_http_header *h, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (resil__strcaseeq(h[i].name, name)) return 1;
  return 0;
}

static int method_kind(const char *m) {
  switch (m[0]) {
    case 'G': return strcmp(m, "GET") == 0 ? RESIL__M_GET : RESIL__M_OTHER;
    case 'H': return strcmp(m, "HEAD") == 0 ? RESIL__M_HEAD : RESIL__M_OTHER;
    case 'P':
      return strcmp(m, "POST") == 0    ? RESIL__M_POST
             : strcmp(m, "PUT") == 0   ? RESIL__M_PUT
             : strcmp(m, "PATCH") == 0 ? RESIL__M_PATCH
                                       : RESIL__M_OTHER;
    default: return RESIL__M_OTHER;
  }
}

typedef struct line_sink {
  struct curl_slist *nodes;
  char *text;
  size_t n;
  size_t bytes;
  int count_only;
} line_sink;

static void emit(line_sink *s, const char *name, const char *value) {
  size_t nl = strlen(name), vl = value ? strlen(value) : 0;
  size_t need = nl + (value == NULL ? 2 : vl == 0 ? 2 : vl + 3);
  if (!s->count_only) {
    char *l = s->text;
    memcpy(l, name, nl);
    if (value == NULL) { /* "Name:" removes a header curl would add */
      l[nl] = ':';
      l[nl + 1] = '\0';
    } else if (vl == 0) { /* "Name;" sends it with an empty value */
      l[nl] = ';';
      l[nl + 1] = '\0';
    } else {
      l[nl] = ':';
      l[nl + 1] = ' ';
      memcpy(l + nl + 2, value, vl + 1);
    }
    s->nodes[s->n].data = l;
    s->nodes[s->n].next = NULL;
    if (s->n > 0) s->nodes[s->n - 1].next = &s->nodes[s->n];
    s->text += need;
  }
  s->n++;
  s->bytes += need;
}

/* Everything sent besides libcurl's own headers, in order: the client's
 * default headers the request does not override, the request's headers,
 * the Idempotency-Key, and the lines that stop libcurl from adding
 * "Expect: 100-continue" (an extra round trip) or a form Content-Type the
 * caller did not ask for. (A read_body of unknown size goes out chunked
 * over HTTP/1.1: libcurl does that by itself, and not over HTTP/2.) */
static void build_lines(const resil__http_call *k, line_sink *s) {
  const resil_http_client *c = k->c;
  const resil_http_request *req = k->req;
  const char *idem_name = c->cfg.idempotency_header;
  for (size_t i = 0; i < c->cfg.n_default_headers; i++) {
    const resil_http_header *h = &c->default_headers[i];
    if (has_header(req->headers, req->n_headers, h->name)) continue;
    if (req->idempotency_key && resil__strcaseeq(h->name, idem_name)) continue;
    emit(s, h->name, h->value);
  }
  for (size_t i = 0; i < req->n_headers; i++) {
    const resil_http_header *h = &req->headers[i];
    if (req->idempotency_key && resil__strcaseeq(h->name, idem_name)) continue;
    emit(s, h->name, h->value);
  }
  if (req->idempotency_key) emit(s, idem_name, k->idem_key);
  if (k->has_body) {
    emit(s, "Expect", NULL);
    if (!has_header(req->headers, req->n_headers, "Content-Type") &&
        !has_header(c->default_headers, c->cfg.n_default_headers, "Content-Type"))
      emit(s, "Content-Type", NULL);
  }
}

static resil_err build_headers(resil__http_call *k) {
  const resil_http_request *req = k->req;
  if (req->n_headers == 0 && req->idempotency_key == NULL && !k->has_body) {
    k->headers = k->c->default_list; /* shared, read-only */
    return RESIL_OK;
  }
  line_sink s = {NULL, NULL, 0, 0, 1};
  build_lines(k, &s);
  if (s.n == 0) return RESIL_OK;
  void *mem = resil__alloc(&k->c->alloc, s.n * sizeof(struct curl_slist) + s.bytes);
  if (mem == NULL) return RESIL_ENOMEM;
  line_sink w = {mem, (char *)mem + s.n * sizeof(struct curl_slist), 0, 0, 0};
  build_lines(k, &w);
  k->headers_mem = mem;
  k->headers = w.n ? w.nodes : NULL;
  return RESIL_OK;
}

/* ---- the call -------------------------------------------------------------- */

resil_err resil__http_call_init(resil__http_call *k, resil_http_client *c,
                                const resil_http_request *req) {
  memset(k, 0, sizeof *k);
  k->c = c;
  k->req = req;
  k->heap_idx = SIZE_MAX;
  k->started = resil__http_now(c);
  k->method = req->method ? req->method : "GET";
  k->mkind = method_kind(k->method);
  /* POST, PUT and PATCH always carry a body: an empty one (Content-Length:
   * 0) when the caller gave none, which some servers require. */
  k->has_body = req->body != NULL || req->read_body != NULL || k->mkind == RESIL__M_POST ||
                k->mkind == RESIL__M_PUT || k->mkind == RESIL__M_PATCH;
  if (req->idempotency_key) {
    if (strcmp(req->idempotency_key, "auto") == 0) {
      if (resil_uuid_v4(k->idem, NULL) != RESIL_OK) return RESIL_ESYS;
      k->idem_key = k->idem;
    } else {
      k->idem_key = req->idempotency_key;
    }
  } else {
    /* A key set as an ordinary header counts as one. */
    for (size_t i = 0; i < req->n_headers; i++)
      if (resil__strcaseeq(req->headers[i].name, c->cfg.idempotency_header))
        k->idem_key = req->headers[i].value;
  }
  int opt_in = req->retry_non_idempotent < 0 ? c->cfg.retry_non_idempotent != 0
                                             : req->retry_non_idempotent != 0;
  k->safe = k->mkind == RESIL__M_GET || k->mkind == RESIL__M_HEAD ||
            resil_http_method_idempotent(k->method) || k->idem_key != NULL || opt_in;
  k->per_attempt = req->attempt_timeout > 0 ? req->attempt_timeout : c->cfg.attempt_timeout;

  resil_err e = RESIL_OK;
  k->policy = resil__http_policy_for(c, req->url, &e);
  if (k->policy == NULL) return e;
  if (req->deadline > 0 && req->deadline != c->cfg.retry.max_elapsed) {
    resil_retry_config rc;
    resil_retry_policy_config(k->policy, &rc);
    rc.max_elapsed = req->deadline;
    if ((e = resil_retry_policy_new(&k->own_policy, &rc)) != RESIL_OK) return e;
    k->policy = k->own_policy;
  }
  if ((e = build_headers(k)) != RESIL_OK) return e;
  if ((k->resp = resil__http_response_new(&c->alloc)) == NULL) return RESIL_ENOMEM;
  if (k->idem_key) {
    size_t n = strlen(k->idem_key) + 1;
    if ((k->resp->idem = resil__alloc(&c->alloc, n)) == NULL) return RESIL_ENOMEM;
    memcpy(k->resp->idem, k->idem_key, n);
  }
  return RESIL_OK;
}

void resil__http_call_cleanup(resil__http_call *k) {
  const resil_allocator *a = &k->c->alloc;
  resil__free(a, k->headers_mem);
  k->headers_mem = NULL;
  resil_retry_policy_free(k->own_policy);
  k->own_policy = NULL;
  resil_http_response_free(k->resp);
  k->resp = NULL;
}

/* ---- request-body callbacks ------------------------------------------------ */

size_t resil__http_on_read(char *buf, size_t size, size_t nitems, void *ud) {
  resil__http_call *k = ((resil__http_handle *)ud)->call;
  size_t n = size * nitems;
  if (k->req->read_body == NULL) return 0;
  size_t r = k->req->read_body(k->req->body_ud, buf, n);
  if (r == (size_t)-1 || r > n) {
    k->x.read_failed = 1;
    return CURL_READFUNC_ABORT;
  }
  return r;
}

/* libcurl rewinds on its own (a redirect, or a request resent on a fresh
 * connection): only a rewind to the start is possible. */
int resil__http_on_seek(void *ud, curl_off_t offset, int origin) {
  resil__http_call *k = ((resil__http_handle *)ud)->call;
  if (offset != 0 || origin != SEEK_SET || k->req->rewind_body == NULL)
    return CURL_SEEKFUNC_CANTSEEK;
  return k->req->rewind_body(k->req->body_ud) == 0 ? CURL_SEEKFUNC_OK : CURL_SEEKFUNC_FAIL;
}
