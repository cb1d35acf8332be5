/* Classification: libcurl's error codes and HTTP statuses -> retry outcomes.
 *
 * Transport errors (CURLcode -> resil_errclass):
 *
 *   NOT_SENT   the request never left, always safe to retry:
 *              COULDNT_RESOLVE_PROXY (5), COULDNT_RESOLVE_HOST (6),
 *              COULDNT_CONNECT (7); and any TRANSIENT error below when libcurl
 *              had not yet started the transfer (CURLINFO_PRETRANSFER_TIME is
 *              0: e.g. a connect or TLS-handshake timeout), since nothing of
 *              the request was written then.
 *   TRANSIENT  the request may have been processed; retried (as uncertain)
 *              only when the request is safe to repeat (idempotent method,
 *              Idempotency-Key, or opt-in):
 *              HTTP2 (16), PARTIAL_FILE (18), OPERATION_TIMEDOUT (28),
 *              GOT_NOTHING (52), SEND_ERROR (55), RECV_ERROR (56),
 *              HTTP2_STREAM (92), HTTP3 (95).
 *   PERMANENT  never retried: everything else, notably
 *              UNSUPPORTED_PROTOCOL (1), URL_MALFORMAT (3), WRITE_ERROR (23),
 *              READ_ERROR (26), OUT_OF_MEMORY (27), SSL_CONNECT_ERROR (35),
 *              ABORTED_BY_CALLBACK (42), TOO_MANY_REDIRECTS (47),
 *              SSL_ENGINE_* (53, 54, 66), SSL_CERTPROBLEM (58),
 *              SSL_CIPHER (59), PEER_FAILED_VERIFICATION (60),
 *              BAD_CONTENT_ENCODING (61), FILESIZE_EXCEEDED (63),
 *              SEND_FAIL_REWIND (65), SSL_CACERT_BADFILE (77),
 *              SSL_CRL_BADFILE (82), SSL_ISSUER_ERROR (83),
 *              SSL_PINNEDPUBKEYNOTMATCH (90), SSL_INVALIDCERTSTATUS (91),
 *              SSL_CLIENTCERT (98).
 *
 * Responses: resil_classify_http() with the client's retry set; the request
 * is "idempotent" for it when it is safe to repeat (see above), and 429 is
 * always retryable (the server did not process it). The server's delay is
 * Retry-After (delta-seconds or HTTP-date) on any retried status and, on a
 * 429 without Retry-After, RateLimit-Reset, the RateLimit field's t=, or
 * X-RateLimit-Reset, in that order. */
#define _POSIX_C_SOURCE 200809L
#include <string.h>

#include "http/internal.h"
#include "resil/http_date.h"

resil_errclass resil__http_curl_class(CURLcode code, int nothing_sent) {
  switch (code) {
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
      return RESIL_ERRCLASS_NOT_SENT;
    case CURLE_HTTP2:
    case CURLE_PARTIAL_FILE:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_HTTP2_STREAM:
    case CURLE_HTTP3:
      return nothing_sent ? RESIL_ERRCLASS_NOT_SENT : RESIL_ERRCLASS_TRANSIENT;
    default:
      return RESIL_ERRCLASS_PERMANENT;
  }
}

/* The server's requested delay, or -1. */
static resil_ns server_delay(const resil_http_response *r, int status) {
  static const char *const ratelimit[] = {"RateLimit-Reset", "RateLimit", "X-RateLimit-Reset"};
  resil_ns d;
  const char *v = resil_http_response_header(r, "Retry-After");
  if (v && resil_retry_after_parse(v, strlen(v), NULL, &d)) return d;
  if (status == 429) {
    for (size_t i = 0; i < RESIL_ARRAY_LEN(ratelimit); i++) {
      v = resil_http_response_header(r, ratelimit[i]);
      if (v && resil_ratelimit_reset_parse(ratelimit[i], v, strlen(v), NULL, &d)) return d;
    }
  }
  return -1;
}

resil_outcome resil__http_status_outcome(const resil__http_call *k, int status,
                                         resil_ns *retry_after) {
  const resil_codeset *set = &k->c->retry_statuses;
  resil_ns ra = -1;
  if (status >= 400 && resil_codeset_has(set, status)) ra = server_delay(k->resp, status);
  resil_outcome o = resil_classify_http(status, k->safe, set, ra);
  /* The hint is reported for the history and the log even when the status
   * is not retried. */
  *retry_after = ra;
  return o;
}
