/* resil: server-side idempotency, framework-neutral.
 *
 * Wrap a handler so that a request carrying an Idempotency-Key runs once and
 * is replayed afterwards, following the IETF Idempotency-Key draft:
 *
 *   resil_idem_txn *txn;
 *   resil_idem_decision d;
 *   resil_idem_begin(idem, &req, &txn, &d);
 *   switch (d.action) {
 *     case RESIL_IDEM_RUN:    resp = handler(); resil_idem_finish(txn, &resp); send resp;
 *     case RESIL_IDEM_REPLAY: send d.status, d.headers, d.body;  (marked
 *                             Idempotent-Replayed: true)
 *     case RESIL_IDEM_REJECT: send d.status, d.headers, d.body;  (problem+json)
 *   }
 *   resil_idem_decision_clear(&d);
 *
 * Rejections (RFC 9457 problem+json bodies):
 *   400  the key is required and missing, or invalid (resil_idem_key_parse)
 *   409  a request with this key is still in progress (with Retry-After)
 *   422  the key was used with a different request (fingerprint mismatch)
 *   503  the store failed (fail closed: nothing runs; with Retry-After);
 *        with fail_open the request runs instead, without deduplication
 * A request without a key (and require_key off) simply runs: txn is NULL and
 * finish/abort accept NULL. A key header that is present must be valid (400
 * otherwise, required or not), and must appear once (two are invalid).
 *
 * Scope: the store looks keys up per (scope, key); the scope is not part of
 * the fingerprint. The store never sees the scope as given (it may be a
 * secret, and of any length): it gets "sha256:" and the 64 lowercase hex
 * digits of SHA-256(scope); NULL and "" both map to "default".
 *
 * The fingerprint is SHA-256 (OpenSSL libcrypto) over the method, the path
 * with query, the listed headers and the body, each length-prefixed so no
 * two different requests share an encoding. Byte for byte (u64 = 8 bytes,
 * big-endian; str = u64 length, then the bytes):
 *   "resil-idem-fp-1" NUL, str method, str target, u64 number of listed
 *   headers, then per listed header in list order: str its lowercase name,
 *   u64 how many request headers have that name (case-insensitively; 0 =
 *   absent, which differs from one empty value), str each such value in
 *   request order; then str body.
 *
 * Handler 5xx responses: released by default, so a retry runs again (the
 * failure is not replayed); with store_5xx they are stored and replayed like
 * any other response (Stripe's behaviour).
 *
 * Thread-safety: a resil_idem is shareable (immutable after _new; the store
 * is thread-safe); a txn belongs to one request. The store must outlive the
 * resil_idem, and the resil_idem its txns. Built with -DRESIL_WITH_IDEM=OFF,
 * _new, _begin and _fingerprint return RESIL_EUNSUPPORTED. */
#ifndef RESIL_IDEM_SERVER_H
#define RESIL_IDEM_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "export.h"
#include "header.h"
#include "log.h"
#include "store.h"
#include "time.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The problem "type" of each rejection (stable; the titles are too). */
#define RESIL_IDEM_PROBLEM_KEY_MISSING "https://resil.dev/problems/idempotency-key-missing"
#define RESIL_IDEM_PROBLEM_KEY_INVALID "https://resil.dev/problems/idempotency-key-invalid"
#define RESIL_IDEM_PROBLEM_IN_PROGRESS "https://resil.dev/problems/idempotency-key-in-progress"
#define RESIL_IDEM_PROBLEM_KEY_REUSED "https://resil.dev/problems/idempotency-key-reused"
#define RESIL_IDEM_PROBLEM_STORE_UNAVAILABLE \
  "https://resil.dev/problems/idempotency-store-unavailable"

typedef struct resil_idem_config {
  size_t size;                /* sizeof; set by _init */
  resil_store *store;         /* required; not owned */
  const char *header_name;    /* default "Idempotency-Key" */
  int require_key;            /* default 0: requests without a key just run */
  resil_ns lease;             /* how long a claim holds; default 60s. Set it
                                 above the handler's worst-case time: a
                                 holder that dies is taken over after it */
  resil_ns ttl;               /* completed records; default 24h */
  int store_5xx;              /* default 0: release on 5xx */
  const char *const *fingerprint_headers; /* headers that join the
                                 fingerprint (case-insensitive); default none */
  size_t n_fingerprint_headers;
  const char *const *stored_headers; /* response headers kept for replay;
                                 default Content-Type, Location */
  size_t n_stored_headers;
  size_t max_stored_body;     /* default 1 MiB; a larger response is not
                                 stored (released) and a warning is logged */
  resil_log_fn log;           /* default NULL: silent. WARN when a response
                                 is not stored (too large, store failure)
                                 and when the store fails in begin; called
                                 on the thread of begin/finish/abort */
  void *log_ud;
  int fail_open;              /* default 0 (fail closed): a store failure
                                 answers 503 and nothing runs. 1: the request
                                 runs without deduplication (RUN with a NULL
                                 txn and key) and a WARN is logged: choose it
                                 only when a duplicate costs less than an
                                 outage of the endpoint */
} resil_idem_config;

RESIL_API void resil_idem_config_init(resil_idem_config *cfg);

typedef struct resil_idem resil_idem;

/* Copies cfg (names and lists too); the store is borrowed. RESIL_EINVAL for
 * a bad config (no store, lease or ttl <= 0, a header name that is not an
 * HTTP token), RESIL_ENOMEM. */
RESIL_API resil_err resil_idem_new(resil_idem **out, const resil_idem_config *cfg);
RESIL_API void resil_idem_free(resil_idem *idem); /* NULL-safe */

typedef struct resil_idem_request {
  const char *method;
  const char *target;          /* path and query, as received */
  const resil_http_header *headers;
  size_t n_headers;
  const void *body;
  size_t body_len;
  const char *scope;           /* the client identity (API token, tenant);
                                  NULL or "" = one shared scope */
} resil_idem_request;

typedef enum resil_idem_action {
  RESIL_IDEM_RUN = 0,
  RESIL_IDEM_REPLAY = 1,
  RESIL_IDEM_REJECT = 2
} resil_idem_action;

typedef struct resil_idem_decision {
  resil_idem_action action;
  int status;                       /* REPLAY / REJECT */
  const resil_http_header *headers; /* REPLAY / REJECT: to send */
  size_t n_headers;
  const char *body;                 /* REPLAY / REJECT */
  size_t body_len;
  const char *key;                  /* the parsed key, or NULL */
  void *owned_;                     /* private */
} resil_idem_decision;

/* Frees what d owns and zeroes it. NULL-safe; safe after a failed begin. */
RESIL_API void resil_idem_decision_clear(resil_idem_decision *d);

typedef struct resil_idem_txn resil_idem_txn;

/* Decide what to do with req. *txn is set for RUN with a key (else NULL).
 * Returns RESIL_OK whenever *d is filled (also for rejections, including
 * the 503 for a store failure); RESIL_EINVAL / RESIL_ENOMEM otherwise. */
RESIL_API resil_err resil_idem_begin(resil_idem *idem, const resil_idem_request *req,
                                     resil_idem_txn **txn, resil_idem_decision *d);
/* The handler's response: stored (or released for 5xx, see above); frees
 * txn. Only the stored_headers are kept. Returns RESIL_ESTORE (or
 * RESIL_ENOMEM) if it could not be stored; the claim is then released when
 * the store still allows it, and the caller should still send the response:
 * it happened. A deliberate release (5xx, body over max_stored_body) returns
 * RESIL_OK. A NULL resp, or one with a status outside 100..599 or a NULL
 * header name or value, releases the claim and returns RESIL_EINVAL. NULL
 * txn: no-op. */
RESIL_API resil_err resil_idem_finish(resil_idem_txn *txn, const resil_stored_response *resp);
/* The handler failed without a response: release the claim; frees txn. */
RESIL_API void resil_idem_abort(resil_idem_txn *txn);

/* SHA-256 fingerprint of a request as described above (req->scope is not
 * used; the order of `headers` matters). RESIL_EINVAL for a NULL method or
 * target, a NULL header name or value, a NULL body with body_len > 0;
 * RESIL_ENOMEM if libcrypto fails. Thread-safe. */
RESIL_API resil_err resil_idem_fingerprint(const resil_idem_request *req,
                                           const char *const *headers, size_t n_headers,
                                           uint8_t out[RESIL_FINGERPRINT_SIZE]);

#ifdef __cplusplus
}
#endif
#endif /* RESIL_IDEM_SERVER_H */
