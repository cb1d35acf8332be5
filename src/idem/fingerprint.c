/* Request fingerprints and scope names: SHA-256 through libcrypto's EVP API.
 * The encoding is specified in include/resil/idem_server.h; every variable
 * field is length-prefixed, so two different requests never hash the same
 * byte string. */
#include <string.h>

#include <openssl/evp.h>

#include "core/internal.h"
#include "idem/internal.h"

static const char FP_DOMAIN[] = "resil-idem-fp-1"; /* hashed with its NUL */

static int put_u64(EVP_MD_CTX *ctx, uint64_t v) {
  unsigned char b[8];
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (56 - 8 * i));
  return EVP_DigestUpdate(ctx, b, sizeof b);
}

static int put_str(EVP_MD_CTX *ctx, const void *s, size_t n) {
  if (!put_u64(ctx, (uint64_t)n)) return 0;
  return n == 0 || EVP_DigestUpdate(ctx, s, n);
}

/* The name, lowercased (ASCII), length-prefixed. */
static int put_lower(EVP_MD_CTX *ctx, const char *name) {
  size_t n = strlen(name);
  if (!put_u64(ctx, (uint64_t)n)) return 0;
  unsigned char chunk[64];
  for (size_t i = 0; i < n;) {
    size_t k = n - i < sizeof chunk ? n - i : sizeof chunk;
    for (size_t j = 0; j < k; j++) chunk[j] = (unsigned char)resil__ascii_lower((unsigned char)name[i + j]);
    if (!EVP_DigestUpdate(ctx, chunk, k)) return 0;
    i += k;
  }
  return 1;
}

static int encode(EVP_MD_CTX *ctx, const resil_idem_request *req, const char *const *headers,
                  size_t n_headers) {
  if (!EVP_DigestUpdate(ctx, FP_DOMAIN, sizeof FP_DOMAIN)) return 0;
  if (!put_str(ctx, req->method, strlen(req->method))) return 0;
  if (!put_str(ctx, req->target, strlen(req->target))) return 0;
  if (!put_u64(ctx, (uint64_t)n_headers)) return 0;
  for (size_t i = 0; i < n_headers; i++) {
    if (!put_lower(ctx, headers[i])) return 0;
    uint64_t count = 0;
    for (size_t j = 0; j < req->n_headers; j++)
      if (resil__strcaseeq(req->headers[j].name, headers[i])) count++;
    if (!put_u64(ctx, count)) return 0;
    for (size_t j = 0; j < req->n_headers; j++) {
      const resil_http_header *h = &req->headers[j];
      if (resil__strcaseeq(h->name, headers[i]) && !put_str(ctx, h->value, strlen(h->value)))
        return 0;
    }
  }
  return put_str(ctx, req->body, req->body_len);
}

resil_err resil_idem_fingerprint(const resil_idem_request *req, const char *const *headers,
                                 size_t n_headers, uint8_t out[RESIL_FINGERPRINT_SIZE]) {
  if (req == NULL || out == NULL || req->method == NULL || req->target == NULL ||
      (req->body == NULL && req->body_len > 0) || (req->headers == NULL && req->n_headers > 0) ||
      (headers == NULL && n_headers > 0))
    return RESIL_EINVAL;
  for (size_t i = 0; i < req->n_headers; i++)
    if (req->headers[i].name == NULL || req->headers[i].value == NULL) return RESIL_EINVAL;
  for (size_t i = 0; i < n_headers; i++)
    if (headers[i] == NULL) return RESIL_EINVAL;

  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (ctx == NULL) return RESIL_ENOMEM;
  unsigned int len = 0;
  int ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) && encode(ctx, req, headers, n_headers) &&
           EVP_DigestFinal_ex(ctx, out, &len) && len == RESIL_FINGERPRINT_SIZE;
  EVP_MD_CTX_free(ctx);
  return ok ? RESIL_OK : RESIL_ENOMEM;
}

resil_err resil__idem_scope_name(const char *scope, char out[RESIL__IDEM_SCOPE_SIZE]) {
  if (scope == NULL || scope[0] == '\0') {
    memcpy(out, "default", sizeof "default");
    return RESIL_OK;
  }
  static const char hex[] = "0123456789abcdef";
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!EVP_Digest(scope, strlen(scope), md, &len, EVP_sha256(), NULL) || len != 32)
    return RESIL_ENOMEM;
  memcpy(out, "sha256:", 7);
  for (unsigned i = 0; i < 32; i++) {
    out[7 + 2 * i] = hex[md[i] >> 4];
    out[8 + 2 * i] = hex[md[i] & 15];
  }
  out[71] = '\0';
  return RESIL_OK;
}
