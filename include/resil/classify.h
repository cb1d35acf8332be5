/* resil: which failures to retry.
 *
 * Small, pure building blocks that turn HTTP statuses, methods, errno values
 * and exit codes into resil_outcome values the retry engine understands. All
 * functions here are thread-safe (pure, or touch only the caller's set). */
#ifndef RESIL_CLASSIFY_H
#define RESIL_CLASSIFY_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "export.h"
#include "retry.h"
#include "time.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Code sets: HTTP statuses or exit codes, 0..1023 ------------------- */

#define RESIL_CODESET_MAX 1023
typedef struct resil_codeset {
  uint64_t bits[16];
} resil_codeset;

/* The set functions treat a NULL set as empty: clear/add/remove do nothing,
 * has gives 0, empty gives 1. */
RESIL_API void resil_codeset_clear(resil_codeset *s);
/* Add/remove [lo, hi] (inclusive). Out-of-range parts are ignored. */
RESIL_API void resil_codeset_add(resil_codeset *s, int lo, int hi);
RESIL_API void resil_codeset_remove(resil_codeset *s, int lo, int hi);
RESIL_API int resil_codeset_has(const resil_codeset *s, int code);
RESIL_API int resil_codeset_empty(const resil_codeset *s);

/* Parse a comma-separated list applied left to right onto an empty set:
 * "N" adds a code, "A-B" a range, "!N" / "!A-B" removes ("500-599,!501").
 * Numbers are decimal digits only (no sign). Spaces and tabs are allowed
 * around items ("408, 429") but not inside one ("5 00", "500 - 599").
 * Returns RESIL_EPARSE for malformed text (an empty spec, an empty item as in
 * ",," or a trailing comma, A > B, any other character) and RESIL_ERANGE for
 * a code above RESIL_CODESET_MAX (any number of digits is safe); the first
 * bad item decides, and within an item syntax is checked before range. A
 * spec that removes everything ("!5") is valid and gives the empty set.
 * RESIL_EINVAL for a NULL argument. s is written only on success. */
RESIL_API resil_err resil_codeset_parse(resil_codeset *s, const char *spec);
/* Canonical text ("408,429,500,502-599"): ascending, runs of three or more
 * codes as "A-B", a pair as "A,B"; the empty (or NULL) set is "".
 * snprintf-style: returns the length the full text needs (excluding the
 * NUL), writes at most len bytes and always NUL-terminates when len > 0, so
 * a return >= len means the text was truncated. buf may be NULL when len is
 * 0. The longest possible text is 2673 characters ("0,1,3,4,6,7,..."), so
 * a 4096-byte buffer always suffices. */
RESIL_API size_t resil_codeset_format(const resil_codeset *s, char *buf,
                                      size_t len);

/* ---- HTTP -------------------------------------------------------------- */

/* The default retryable statuses: 408, 429 and every 5xx except 501 (so 500,
 * 502, 503, 504, 522, 524 are in; 400, 401, 403, 404, 405, 410, 422, 501 and
 * every other 4xx are out). */
RESIL_API void resil_http_retry_statuses_default(resil_codeset *s);
/* Membership in the default set. */
RESIL_API int resil_http_status_retryable(int status);

/* 1 for the idempotent methods of RFC 9110 section 9.2.2: GET, HEAD, OPTIONS,
 * TRACE, PUT, DELETE. Methods are case-sensitive (RFC 9110 9.1), so "get" is
 * not GET. NULL gives 0. */
RESIL_API int resil_http_method_idempotent(const char *method);

/* Classify an HTTP response:
 *   1xx-3xx (100..399)              -> SUCCESS (even if listed in retry)
 *   status in retry (default set when NULL), and the request is safe to
 *   repeat (idempotent, or status 429, which RFC 6585 defines as "not
 *   processed")                     -> RETRYABLE, or RETRY_AFTER when
 *                                      retry_after >= 0 (a server delay)
 *   anything else                   -> FATAL
 * code is the status. retry_after < 0 means the server sent no delay; it is
 * copied into the outcome only for RETRY_AFTER. uncertain is always 0: a
 * response means the server answered, and a retryable one is safe to repeat.
 * A non-NULL empty retry set retries nothing. */
RESIL_API resil_outcome resil_classify_http(int status, int idempotent,
                                            const resil_codeset *retry,
                                            resil_ns retry_after);

/* ---- errno ------------------------------------------------------------- */

/* The complete lists (a name the platform's <errno.h> lacks is skipped):
 *   NOT_SENT:  ECONNREFUSED, ENETUNREACH, EHOSTUNREACH, EADDRNOTAVAIL,
 *              ENETDOWN, EHOSTDOWN (connect()-time failures: nothing was
 *              delivered to the peer)
 *   TRANSIENT: ECONNRESET, ECONNABORTED, ETIMEDOUT, EAGAIN, EWOULDBLOCK,
 *              EPIPE, EINTR, EBUSY, ENOBUFS, ENETRESET, EALREADY,
 *              EINPROGRESS, ENOLCK (lock table full), ETXTBSY (executable
 *              still open for writing, e.g. just written by a build step)
 *   PERMANENT: everything else, including 0 and negative values (pass errno,
 *              not a negated -errno as some APIs return). */
typedef enum resil_errclass {
  RESIL_ERRCLASS_PERMANENT = 0, /* EINVAL, EACCES, ENOENT, ...: do not retry */
  RESIL_ERRCLASS_TRANSIENT = 1, /* ECONNRESET, ETIMEDOUT, EAGAIN, EPIPE, ...:
                                   retry if the operation is safe to repeat */
  RESIL_ERRCLASS_NOT_SENT = 2   /* ECONNREFUSED, ENETUNREACH, EHOSTUNREACH,
                                   EADDRNOTAVAIL, ...: the request never left,
                                   always safe to retry */
} resil_errclass;

RESIL_API resil_errclass resil_errno_class(int err);
/* "permanent", "transient", "not-sent"; "unknown" for any other value. */
RESIL_API const char *resil_errclass_name(resil_errclass c);

/* Classify a failed system call: NOT_SENT -> RETRYABLE (uncertain = 0);
 * TRANSIENT -> RETRYABLE (uncertain = 1, since it may have taken effect) when
 * idempotent, else FATAL; PERMANENT -> FATAL. code = err; uncertain is 0
 * except in the one case above. */
RESIL_API resil_outcome resil_classify_errno(int err, int idempotent);

/* ---- Exit codes -------------------------------------------------------- */

/* For running commands: status 0 -> SUCCESS; in stop_on -> FATAL; when
 * retry_on is non-NULL and non-empty, in retry_on -> RETRYABLE, else FATAL;
 * with no retry_on every non-zero status is RETRYABLE. stop_on wins over
 * retry_on. Either set may be NULL. A status outside 0..RESIL_CODESET_MAX
 * (e.g. negative) is in neither set. code = status. */
RESIL_API resil_outcome resil_classify_exit(int status,
                                            const resil_codeset *retry_on,
                                            const resil_codeset *stop_on);

#ifdef __cplusplus
}
#endif
#endif /* RESIL_CLASSIFY_H */
