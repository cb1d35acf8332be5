/* The response: the last attempt's status, headers and body, and the
 * history of every attempt. Headers are kept as "name\0value\0" runs in one
 * buffer with an index of offsets. Each buffer starts inside the response
 * (a small answer costs one allocation in all) and moves to the heap when
 * it outgrows that. */
#define _POSIX_C_SOURCE 200809L
#include <string.h>

#include "http/internal.h"

#if UINTPTR_MAX == UINT64_MAX
_Static_assert(sizeof(resil_http_response) <= 1024, "keep responses in malloc's thread cache");
#endif

resil_http_response *resil__http_response_new(const resil_allocator *a) {
  resil_http_response *r = resil__alloc(a, sizeof *r);
  if (r == NULL) return NULL;
  memset(r, 0, offsetof(resil_http_response, hist_inline));
  r->alloc = *a;
  r->reason = RESIL_STOP_NONE;
  r->hist = r->hist_inline;
  r->hist_cap = RESIL_ARRAY_LEN(r->hist_inline);
  r->error = NULL;
  r->hbuf = r->hbuf_inline;
  r->hcap = sizeof r->hbuf_inline;
  r->hoff = r->hoff_inline;
  r->nh_cap = RESIL_ARRAY_LEN(r->hoff_inline);
  r->body = r->body_inline;
  r->body_cap = sizeof r->body_inline;
  r->body[0] = '\0';
  return r;
}

void resil__http_response_reset(resil_http_response *r) {
  r->status = 0;
  r->curl_code = 0;
  r->body_len = 0;
  r->body[0] = '\0';
  r->hlen = 0;
  r->nh = 0;
  if (r->error) r->error[0] = '\0';
}

char *resil__http_response_errbuf(resil_http_response *r) {
  if (r->error == NULL && (r->error = resil__alloc(&r->alloc, CURL_ERROR_SIZE)) != NULL)
    r->error[0] = '\0';
  return r->error;
}

/* Grow *p (*cap elements of size sz, first in the inline array `in`) to
 * hold at least need elements of which `used` are in use. */
static int grow(const resil_allocator *a, void **p, size_t *cap, size_t need, size_t sz,
                const void *in, size_t used) {
  if (need <= *cap) return 0;
  size_t cap2 = *cap;
  while (cap2 < need) {
    if (cap2 > SIZE_MAX / 2 / sz) return -1;
    cap2 *= 2;
  }
  void *q;
  if (*p == in) {
    q = a->malloc(a->ud, cap2 * sz);
    if (q) memcpy(q, *p, used * sz);
  } else {
    q = a->realloc(a->ud, *p, cap2 * sz);
  }
  if (q == NULL) return -1;
  *p = q;
  *cap = cap2;
  return 0;
}

int resil__http_response_add_header(resil_http_response *r, const char *name, size_t nlen,
                                    const char *value, size_t vlen) {
  if (r->hlen + nlen + vlen + 2 > UINT32_MAX) return -1;
  if (grow(&r->alloc, (void **)&r->hbuf, &r->hcap, r->hlen + nlen + vlen + 2, 1,
           r->hbuf_inline, r->hlen) ||
      grow(&r->alloc, (void **)&r->hoff, &r->nh_cap, r->nh + 1, sizeof *r->hoff, r->hoff_inline,
           r->nh))
    return -1;
  r->hoff[r->nh++] = (uint32_t)r->hlen;
  memcpy(r->hbuf + r->hlen, name, nlen);
  r->hbuf[r->hlen + nlen] = '\0';
  memcpy(r->hbuf + r->hlen + nlen + 1, value, vlen);
  r->hbuf[r->hlen + nlen + 1 + vlen] = '\0';
  r->hlen += nlen + vlen + 2;
  return 0;
}

int resil__http_response_fold_header(resil_http_response *r, const char *value, size_t vlen) {
  if (r->nh == 0 || vlen == 0) return 0;
  /* The last header's value ends the buffer: append " value". */
  if (grow(&r->alloc, (void **)&r->hbuf, &r->hcap, r->hlen + vlen + 1, 1, r->hbuf_inline,
           r->hlen))
    return -1;
  r->hbuf[r->hlen - 1] = ' ';
  memcpy(r->hbuf + r->hlen, value, vlen);
  r->hbuf[r->hlen + vlen] = '\0';
  r->hlen += vlen + 1;
  return 0;
}

int resil__http_response_append(resil_http_response *r, const char *p, size_t n) {
  if (r->body_len + n + 1 < n) return -1;
  if (grow(&r->alloc, (void **)&r->body, &r->body_cap, r->body_len + n + 1, 1, r->body_inline,
           r->body_len))
    return -1;
  memcpy(r->body + r->body_len, p, n);
  r->body_len += n;
  r->body[r->body_len] = '\0';
  return 0;
}

int resil__http_response_push_attempt(resil_http_response *r, const resil_http_attempt *a) {
  if (r->nhist == r->hist_cap) {
    size_t cap = r->hist_cap * 2;
    resil_http_attempt *h;
    if (r->hist == r->hist_inline) {
      h = resil__alloc(&r->alloc, cap * sizeof *h);
      if (h) memcpy(h, r->hist_inline, sizeof r->hist_inline);
    } else {
      h = r->alloc.realloc(r->alloc.ud, r->hist, cap * sizeof *h);
    }
    if (h == NULL) return -1;
    r->hist = h;
    r->hist_cap = cap;
  }
  r->hist[r->nhist++] = *a;
  return 0;
}

/* ---- public accessors ----------------------------------------------------- */

void resil_http_response_free(resil_http_response *r) {
  if (r == NULL) return;
  resil_allocator a = r->alloc;
  if (r->body != r->body_inline) resil__free(&a, r->body);
  if (r->hbuf != r->hbuf_inline) resil__free(&a, r->hbuf);
  if (r->hoff != r->hoff_inline) resil__free(&a, r->hoff);
  resil__free(&a, r->idem);
  resil__free(&a, r->error);
  if (r->hist != r->hist_inline) resil__free(&a, r->hist);
  resil__free(&a, r);
}

int resil_http_response_status(const resil_http_response *r) { return r ? r->status : 0; }

const char *resil_http_response_header(const resil_http_response *r, const char *name) {
  if (r == NULL || name == NULL) return NULL;
  for (size_t i = 0; i < r->nh; i++) {
    const char *n = r->hbuf + r->hoff[i];
    if (resil__strcaseeq(n, name)) return n + strlen(n) + 1;
  }
  return NULL;
}

size_t resil_http_response_header_count(const resil_http_response *r) { return r ? r->nh : 0; }

resil_http_header resil_http_response_header_at(const resil_http_response *r, size_t i) {
  resil_http_header h = {NULL, NULL};
  if (r == NULL || i >= r->nh) return h;
  h.name = r->hbuf + r->hoff[i];
  h.value = h.name + strlen(h.name) + 1;
  return h;
}

const char *resil_http_response_body(const resil_http_response *r, size_t *len) {
  if (len) *len = r ? r->body_len : 0;
  return r ? r->body : "";
}

uint32_t resil_http_response_attempts(const resil_http_response *r) {
  return r ? r->attempts : 0;
}

resil_stop_reason resil_http_response_stop_reason(const resil_http_response *r) {
  return r ? r->reason : RESIL_STOP_NONE;
}

int resil_http_response_curl_code(const resil_http_response *r) { return r ? r->curl_code : 0; }

const char *resil_http_response_error(const resil_http_response *r) {
  if (r == NULL) return "";
  if (r->error && r->error[0]) return r->error;
  return r->curl_code ? curl_easy_strerror((CURLcode)r->curl_code) : "";
}

const char *resil_http_response_idempotency_key(const resil_http_response *r) {
  return r ? r->idem : NULL;
}

const resil_http_attempt *resil_http_response_history(const resil_http_response *r, size_t *n) {
  if (n) *n = r ? r->nhist : 0;
  return r && r->nhist ? r->hist : NULL;
}

resil_ns resil_http_response_elapsed(const resil_http_response *r) { return r ? r->elapsed : 0; }
