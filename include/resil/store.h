/* resil: idempotency stores.
 *
 * A store remembers, per (scope, key), that a request is being processed or
 * what it answered, so a retried request is executed once and replayed after.
 * Backends plug in through a versioned vtable, like SQLite's VFS, and are
 * chosen by URL:
 *
 *   memory:[?max_entries=N]     in-process, thread-safe, bounded (default
 *                               100000 entries; when full, expired entries
 *                               go first (records past their TTL and claims
 *                               past their lease, longest expired first),
 *                               then completed ones, oldest completion
 *                               first; in-progress claims are never evicted:
 *                               a claim fails with RESIL_ESTORE instead)
 *   sqlite:PATH[?synchronous=full|normal&busy_timeout=MS]
 *                               a file shared by processes on one host: WAL,
 *                               busy_timeout (default 5000 ms), claims in
 *                               BEGIN IMMEDIATE, synchronous=FULL by default
 *                               (a completed response survives power loss),
 *                               schema versioned with PRAGMA user_version
 *                               and migrated on open
 *   redis://[user:pass@]host:port[/db][?prefix=resil:&connect_timeout=MS&timeout=MS]
 *                               Redis (hiredis): each operation is one Lua
 *                               script; shared by a fleet of hosts (see
 *                               docs/stores.md for what a failover can lose)
 *   postgres://... / postgresql://...
 *                               PostgreSQL (libpq): unique (scope, key),
 *                               INSERT ... ON CONFLICT claims; the
 *                               transactional mode (resil/store_pg.h) stores
 *                               the response in the caller's transaction
 * Schemes are case-insensitive; PATH and parameter values may use %XX escapes
 * (%3F for a '?' in a file name); sqlite:///abs/path means sqlite:/abs/path.
 *
 * The protocol:
 *   claim(scope, key, fingerprint, lease) ->
 *     CLAIMED      nobody holds the key (or the holder's lease expired, or
 *                  the completed record expired): you own it; run the handler,
 *                  then complete() or release() with the claim's token.
 *     IN_PROGRESS  another request holds an unexpired lease (lease_expires
 *                  says until when).
 *     REPLAY       completed: the stored response is in the result.
 *     MISMATCH     the key is in use with a different fingerprint: held
 *                  (in progress) or completed and unexpired.
 *   An expired claim (now >= lease_expires) or an expired record counts as
 *   absent, whatever its fingerprint: the next claim gets CLAIMED.
 *   complete(token, response, ttl): store status, headers and body; the
 *     record expires ttl later (ttl > 0; RESIL_STORE_DEFAULT_TTL, 24 h, is
 *     the usual value).
 *   release(token): forget the claim so a retry can run.
 * A token owns the key from CLAIMED until its complete() or release(), until
 * someone else claims the key after the lease expired, or until purge()
 * deletes the expired claim; a holder whose lease ran out may still complete
 * while nobody has taken over. complete/release with a token that no longer
 * owns the key fail with RESIL_ESTORE and change nothing: a slow holder can
 * never overwrite the new owner's record. Tokens are never 0; memory: never
 * repeats one within the store; sqlite: draws 63 random bits, never the
 * key's previous token.
 * A claim is reclaimable once its lease has expired, and never before.
 * Scopes are independent namespaces: the same key under two scopes never
 * meets, and one scope can never read another's response.
 *
 * Failures are errors the caller sees (RESIL_ESTORE with a message from
 * resil_store_errmsg; RESIL_ENOMEM), never a silent "CLAIMED": a store that cannot answer
 * must not let a request run twice. On any error claim() leaves *out reading
 * IN_PROGRESS with token 0 and nothing owned, so even a caller that ignores
 * the return value does not run the handler.
 *
 * Thread-safety: every function on a resil_store is thread-safe. A store
 * belongs to the process that opened it: after fork(), open a new one (the
 * sqlite backend refuses calls from a child with RESIL_ESTORE). */
#ifndef RESIL_STORE_H
#define RESIL_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "error.h"
#include "export.h"
#include "header.h"
#include "time.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RESIL_FINGERPRINT_SIZE 32 /* SHA-256 */
#define RESIL_STORE_DEFAULT_TTL (24 * RESIL_HOUR)

typedef enum resil_claim_status {
  RESIL_CLAIM_CLAIMED = 0,
  RESIL_CLAIM_IN_PROGRESS = 1,
  RESIL_CLAIM_REPLAY = 2,
  RESIL_CLAIM_MISMATCH = 3
} resil_claim_status;

/* A response as stored and replayed. */
typedef struct resil_stored_response {
  int status;
  const resil_http_header *headers;
  size_t n_headers;
  const void *body;
  size_t body_len;
} resil_stored_response;

/* What claim() found. REPLAY's response points into one block owned by the
 * result (headers and body; the body is also NUL-terminated): call
 * resil_claim_result_clear() when done, before or after closing the store. */
typedef struct resil_claim_result {
  resil_claim_status status;
  uint64_t token;          /* CLAIMED: pass to complete/release */
  resil_ns lease_expires;  /* CLAIMED / IN_PROGRESS: wall-clock ns */
  resil_stored_response response; /* REPLAY */
  void *owned_;            /* private: the block holding the response */
  const resil_allocator *alloc_;
} resil_claim_result;

RESIL_API void resil_claim_result_clear(resil_claim_result *r); /* NULL-safe */
/* "claimed", "in-progress", "replay", "mismatch". */
RESIL_API const char *resil_claim_status_name(resil_claim_status s);

typedef struct resil_store resil_store;

/* The backend interface. Fields are only ever appended; `version` says how
 * many a backend fills (1 = all below). Each function returns RESIL_OK or an
 * error (RESIL_ESTORE for backend failures, with a message for errmsg). */
typedef struct resil_store_vtab {
  int version;
  const char *name; /* "memory", "sqlite", ... */
  resil_err (*claim)(resil_store *s, const char *scope, const char *key,
                     const uint8_t fingerprint[RESIL_FINGERPRINT_SIZE], resil_ns lease,
                     resil_claim_result *out);
  resil_err (*complete)(resil_store *s, const char *scope, const char *key, uint64_t token,
                        const resil_stored_response *response, resil_ns ttl);
  resil_err (*release)(resil_store *s, const char *scope, const char *key, uint64_t token);
  /* Delete expired records and expired claims; *purged (may be NULL) gets
   * how many. */
  resil_err (*purge)(resil_store *s, uint64_t *purged);
  void (*close)(resil_store *s);
} resil_store_vtab;

/* The base every backend embeds as its first member. */
struct resil_store {
  const resil_store_vtab *vtab;
  resil_wallclock clock;  /* leases and TTLs use wall-clock time, which
                             means the same in every process and host */
  resil_allocator alloc;
  char errmsg[256];       /* last backend error (per store; best effort
                             under concurrency) */
};

typedef struct resil_store_options {
  size_t size;            /* sizeof; set by _init */
  resil_wallclock clock;  /* default resil_wallclock_system() */
  resil_allocator alloc;  /* default libc */
} resil_store_options;

RESIL_API void resil_store_options_init(resil_store_options *o);

/* Open a store by URL (see above). opt may be NULL. RESIL_EINVAL for an
 * unknown scheme or bad parameters, RESIL_EUNSUPPORTED for a backend not
 * built in, RESIL_ESTORE when the backend cannot open (e.g. the SQLite file
 * is unwritable); *errbuf (may be NULL, errlen bytes) gets a one-line
 * reason. */
RESIL_API resil_err resil_store_open(resil_store **out, const char *url,
                                     const resil_store_options *opt, char *errbuf,
                                     size_t errlen);
RESIL_API void resil_store_close(resil_store *s); /* NULL-safe */

/* The protocol, dispatched to the backend with argument checks (scope and
 * key non-empty, at most 255 bytes each; lease and ttl > 0; a response with
 * headers != NULL when n_headers > 0, each name and value non-NULL, and
 * body != NULL when body_len > 0); a failed check is RESIL_EINVAL. */
RESIL_API resil_err resil_store_claim(resil_store *s, const char *scope, const char *key,
                                      const uint8_t fingerprint[RESIL_FINGERPRINT_SIZE],
                                      resil_ns lease, resil_claim_result *out);
RESIL_API resil_err resil_store_complete(resil_store *s, const char *scope, const char *key,
                                         uint64_t token, const resil_stored_response *response,
                                         resil_ns ttl);
RESIL_API resil_err resil_store_release(resil_store *s, const char *scope, const char *key,
                                        uint64_t token);
RESIL_API resil_err resil_store_purge(resil_store *s, uint64_t *purged);
RESIL_API const char *resil_store_errmsg(const resil_store *s);
RESIL_API const char *resil_store_name(const resil_store *s);

#ifdef __cplusplus
}
#endif
#endif /* RESIL_STORE_H */
