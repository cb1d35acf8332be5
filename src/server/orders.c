/* POST /orders: a handler with a real side effect (an order is created and
 * counted), behind the idempotency layer (include/resil/idem_server.h), so
 * clients can be tested for what retries of a non-idempotent call do.
 *
 * The steps, driven by routes.c:
 *   body     resil__fs_order_body keeps the whole body (the fingerprint
 *            covers it);
 *   begin    resil__fs_order_begin hands method, target, headers, body and
 *            scope (the Authorization header) to resil_idem_begin: RUN
 *            (the key is claimed, or there is none), or a replay or a
 *            rejection (400, 409, 422, 503) to send as it is;
 *   run      after any ?delay (routes.c waits on the timer, not in a
 *            worker), resil__fs_order_run creates the order, stores the 201
 *            with resil_idem_finish and returns it;
 *   clear    resil__fs_order_req_clear releases a claim whose handler never
 *            ran (the server stopped during the wait).
 *
 * The store is never purged here: expired records and claims stay in it
 * until reused (a claim on an expired key replaces them). */
#define _POSIX_C_SOURCE 200809L
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/internal.h"

/* ---- the order list ------------------------------------------------------------ */

int resil__fs_orders_init(resil__fs_orders *o) {
  memset(o, 0, sizeof *o);
  atomic_init(&o->count, 0);
  o->ring = calloc(RESIL__FS_ORDERS_KEPT, sizeof *o->ring);
  if (o->ring == NULL) return -1;
  if (pthread_mutex_init(&o->mu, NULL) != 0) {
    free(o->ring);
    o->ring = NULL;
    return -1;
  }
  return 0;
}

void resil__fs_orders_destroy(resil__fs_orders *o) {
  pthread_mutex_destroy(&o->mu);
  free(o->ring);
  o->ring = NULL;
}

/* Append one order; returns its id (1 for the first). Cannot fail. */
static uint64_t orders_add(resil__fs_orders *o, const resil__fs_order_req *req,
                           const char *sha_hex) {
  pthread_mutex_lock(&o->mu);
  uint64_t id = atomic_load(&o->count) + 1;
  resil__fs_order *slot = &o->ring[(id - 1) % RESIL__FS_ORDERS_KEPT];
  slot->id = id;
  memcpy(slot->key, req->has_key ? req->key : "", strlen(req->has_key ? req->key : "") + 1);
  memcpy(slot->scope, req->scope, sizeof slot->scope);
  memcpy(slot->body_sha256, sha_hex, sizeof slot->body_sha256);
  atomic_store(&o->count, id);
  pthread_mutex_unlock(&o->mu);
  return id;
}

/* ---- helpers ---------------------------------------------------------------------- */

static int sha256_hex(const void *data, size_t n, char *hex, size_t hexlen) {
  static const char digits[] = "0123456789abcdef";
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!EVP_Digest(data, n, md, &len, EVP_sha256(), NULL) || len != 32 || hexlen < 65) return -1;
  for (unsigned i = 0; i < len; i++) {
    hex[2 * i] = digits[md[i] >> 4];
    hex[2 * i + 1] = digits[md[i] & 15];
  }
  hex[64] = '\0';
  return 0;
}

/* The scope as the idempotency store names it (idem_server.h): "default"
 * for none, else "sha256:" and the hex digest. The Authorization value is
 * a secret: only this form is shown in an order or stored. */
static int scope_name(const char *auth, char out[RESIL__FS_SCOPE_SIZE]) {
  if (auth == NULL || *auth == '\0') {
    snprintf(out, RESIL__FS_SCOPE_SIZE, "default");
    return 0;
  }
  memcpy(out, "sha256:", 7);
  return sha256_hex(auth, strlen(auth), out + 7, RESIL__FS_SCOPE_SIZE - 7);
}

int resil__fs_order_body(resil__fs_order_req *o, const char *data, size_t n) {
  if (n > o->body_cap - o->body_len) {
    if (n > SIZE_MAX / 2 - o->body_len) return -1;
    size_t cap = o->body_cap ? o->body_cap : 1024;
    while (cap - o->body_len < n) cap *= 2;
    char *p = realloc(o->body, cap);
    if (p == NULL) return -1;
    o->body = p;
    o->body_cap = cap;
  }
  memcpy(o->body + o->body_len, data, n);
  o->body_len += n;
  return 0;
}

/* Every request header, in order, for the fingerprint and the key. */
typedef struct header_list {
  resil_http_header *h;
  size_t n, cap;
} header_list;

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value) {
  (void)kind;
  header_list *l = cls;
  if (l->n == l->cap) return MHD_NO; /* headers cannot change meanwhile */
  l->h[l->n].name = key;
  l->h[l->n].value = value ? value : "";
  l->n++;
  return MHD_YES;
}

/* An MHD response with these headers, the body copied, and
 * `Connection: close` like every answer of this server. */
static struct MHD_Response *make_response(const char *body, size_t len,
                                          const resil_http_header *h, size_t n) {
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(len, (void *)(len ? body : ""), MHD_RESPMEM_MUST_COPY);
  if (resp == NULL) return NULL;
  for (size_t i = 0; i < n; i++) (void)MHD_add_response_header(resp, h[i].name, h[i].value);
  (void)MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
  return resp;
}

/* ---- begin ---------------------------------------------------------------------- */

int resil__fs_order_begin(struct resil_faultserver *s, struct MHD_Connection *conn,
                          const char *method, const char *target, resil__fs_order_req *o,
                          unsigned *code, struct MHD_Response **resp) {
  *resp = NULL;
  *code = 500;
  const char *auth =
      MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
  if (scope_name(auth, o->scope) != 0) return -1;

  header_list hl = {NULL, 0, 0};
  int n = MHD_get_connection_values(conn, MHD_HEADER_KIND, NULL, NULL);
  if (n > 0) {
    hl.h = calloc((size_t)n, sizeof *hl.h);
    if (hl.h == NULL) return -1;
    hl.cap = (size_t)n;
    MHD_get_connection_values(conn, MHD_HEADER_KIND, collect_header, &hl);
  }
  resil_idem_request req;
  memset(&req, 0, sizeof req);
  req.method = method;
  req.target = target;
  req.headers = hl.h;
  req.n_headers = hl.n;
  req.body = o->body;
  req.body_len = o->body_len;
  req.scope = auth;

  resil_idem_decision d;
  resil_err e = resil_idem_begin(s->idem, &req, &o->txn, &d);
  free(hl.h);
  if (e != RESIL_OK) return -1; /* nothing claimed, d is empty */

  if (d.key) {
    o->has_key = 1;
    snprintf(o->key, sizeof o->key, "%s", d.key);
  }
  if (d.action == RESIL_IDEM_RUN) {
    resil_idem_decision_clear(&d);
    return 1;
  }
  *code = (unsigned)d.status;
  *resp = make_response(d.body, d.body_len, d.headers, d.n_headers);
  resil_idem_decision_clear(&d);
  return 0;
}

/* ---- run ---------------------------------------------------------------------------- */

struct MHD_Response *resil__fs_order_run(struct resil_faultserver *s, resil__fs_order_req *o) {
  /* Everything that can fail is done before the order exists, so a failure
   * leaves no order behind (the claim is released for a retry). */
  char sha[65];
  resil__fs_buf tail;
  resil__fs_buf_init(&tail);
  if (sha256_hex(o->body_len ? o->body : "", o->body_len, sha, sizeof sha) != 0) tail.failed = 1;
  resil__fs_buf_puts(&tail, ",\"key\":");
  if (o->has_key) resil__fs_json_str(&tail, o->key, strlen(o->key));
  else resil__fs_buf_puts(&tail, "null");
  resil__fs_buf_puts(&tail, ",\"scope\":");
  resil__fs_json_str(&tail, o->scope, strlen(o->scope));
  resil__fs_buf_printf(&tail, ",\"body_sha256\":\"%s\"}\n", sha);
  size_t cap = tail.len + 32; /* {"id":, 20 digits */
  char *body = tail.failed ? NULL : malloc(cap);
  if (body == NULL) {
    resil__fs_buf_free(&tail);
    resil_idem_abort(o->txn);
    o->txn = NULL;
    return NULL;
  }

  uint64_t id = orders_add(&s->orders, o, sha); /* the side effect */

  int len = snprintf(body, cap, "{\"id\":%llu%s", (unsigned long long)id, tail.data);
  resil__fs_buf_free(&tail);
  char location[40];
  snprintf(location, sizeof location, "/orders/%llu", (unsigned long long)id);
  const resil_http_header headers[] = {
      {MHD_HTTP_HEADER_CONTENT_TYPE, "application/json"},
      {MHD_HTTP_HEADER_LOCATION, location},
  };
  resil_stored_response sr = {201, headers, 2, body, (size_t)len};
  /* If it cannot be stored (the store failed, or the lease ran out and
   * someone else took the key over) the claim is released when it still
   * can be; the order exists either way, so the 201 is sent. */
  (void)resil_idem_finish(o->txn, &sr);
  o->txn = NULL;
  struct MHD_Response *resp = make_response(body, (size_t)len, headers, 2);
  free(body);
  return resp;
}

void resil__fs_order_req_clear(resil__fs_order_req *o) {
  resil_idem_abort(o->txn); /* NULL-safe */
  free(o->body);
  memset(o, 0, sizeof *o);
}
