/* Classification of HTTP statuses, methods, errno values and exit codes into
 * resil_outcome values. Everything here is pure. */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "core/internal.h"
#include "resil/classify.h"

/* ---- HTTP ----------------------------------------------------------------- */

void resil_http_retry_statuses_default(resil_codeset *s) {
  if (s == NULL) return;
  resil_codeset_clear(s);
  resil_codeset_add(s, 408, 408);
  resil_codeset_add(s, 429, 429);
  resil_codeset_add(s, 500, 599);
  resil_codeset_remove(s, 501, 501);
}

int resil_http_status_retryable(int status) {
  if (status == 408 || status == 429) return 1;
  return status >= 500 && status <= 599 && status != 501;
}

int resil_http_method_idempotent(const char *method) {
  static const char *const idempotent[] = {"GET", "HEAD",  "OPTIONS",
                                           "TRACE", "PUT", "DELETE"};
  if (method == NULL) return 0;
  for (size_t i = 0; i < RESIL_ARRAY_LEN(idempotent); i++)
    if (strcmp(method, idempotent[i]) == 0) return 1;
  return 0;
}

static resil_outcome outcome_make(resil_outcome_kind kind, int code) {
  resil_outcome o;
  memset(&o, 0, sizeof o);
  o.kind = kind;
  o.code = code;
  return o;
}

resil_outcome resil_classify_http(int status, int idempotent,
                                  const resil_codeset *retry,
                                  resil_ns retry_after) {
  int listed;
  resil_outcome o;

  if (status >= 100 && status <= 399)
    return outcome_make(RESIL_OUTCOME_SUCCESS, status);

  listed = retry ? resil_codeset_has(retry, status)
                 : resil_http_status_retryable(status);
  if (!listed || !(idempotent || status == 429))
    return outcome_make(RESIL_OUTCOME_FATAL, status);

  if (retry_after < 0) return outcome_make(RESIL_OUTCOME_RETRYABLE, status);
  o = outcome_make(RESIL_OUTCOME_RETRY_AFTER, status);
  o.retry_after = retry_after;
  return o;
}

/* ---- errno ---------------------------------------------------------------- */

/* Every name is guarded: C11 only promises EDOM, EILSEQ and ERANGE, and some
 * of these (EHOSTDOWN) are not even POSIX. Tables, not a switch, so aliases
 * such as EAGAIN == EWOULDBLOCK need no special care. The lists are repeated
 * in classify.h; keep the two in step. */
static const int errno_not_sent[] = {
#ifdef ECONNREFUSED
    ECONNREFUSED,
#endif
#ifdef ENETUNREACH
    ENETUNREACH,
#endif
#ifdef EHOSTUNREACH
    EHOSTUNREACH,
#endif
#ifdef EADDRNOTAVAIL
    EADDRNOTAVAIL,
#endif
#ifdef ENETDOWN
    ENETDOWN,
#endif
#ifdef EHOSTDOWN
    EHOSTDOWN,
#endif
    0 /* sentinel, never matched: errno values are positive */
};

static const int errno_transient[] = {
#ifdef ECONNRESET
    ECONNRESET,
#endif
#ifdef ECONNABORTED
    ECONNABORTED,
#endif
#ifdef ETIMEDOUT
    ETIMEDOUT,
#endif
#ifdef EAGAIN
    EAGAIN,
#endif
#ifdef EWOULDBLOCK
    EWOULDBLOCK,
#endif
#ifdef EPIPE
    EPIPE,
#endif
#ifdef EINTR
    EINTR,
#endif
#ifdef EBUSY
    EBUSY,
#endif
#ifdef ENOBUFS
    ENOBUFS,
#endif
#ifdef ENETRESET
    ENETRESET,
#endif
#ifdef EALREADY
    EALREADY,
#endif
#ifdef EINPROGRESS
    EINPROGRESS,
#endif
#ifdef ENOLCK
    ENOLCK,
#endif
#ifdef ETXTBSY
    ETXTBSY,
#endif
    0 /* sentinel, never matched: errno values are positive */
};

static int errno_in(const int *list, size_t n, int err) {
  for (size_t i = 0; i < n; i++)
    if (list[i] == err) return 1;
  return 0;
}

resil_errclass resil_errno_class(int err) {
  if (err <= 0) return RESIL_ERRCLASS_PERMANENT;
  if (errno_in(errno_not_sent, RESIL_ARRAY_LEN(errno_not_sent), err))
    return RESIL_ERRCLASS_NOT_SENT;
  if (errno_in(errno_transient, RESIL_ARRAY_LEN(errno_transient), err))
    return RESIL_ERRCLASS_TRANSIENT;
  return RESIL_ERRCLASS_PERMANENT;
}

const char *resil_errclass_name(resil_errclass c) {
  switch (c) {
  case RESIL_ERRCLASS_PERMANENT:
    return "permanent";
  case RESIL_ERRCLASS_TRANSIENT:
    return "transient";
  case RESIL_ERRCLASS_NOT_SENT:
    return "not-sent";
  }
  return "unknown";
}

resil_outcome resil_classify_errno(int err, int idempotent) {
  resil_outcome o;
  switch (resil_errno_class(err)) {
  case RESIL_ERRCLASS_NOT_SENT:
    return outcome_make(RESIL_OUTCOME_RETRYABLE, err);
  case RESIL_ERRCLASS_TRANSIENT:
    if (!idempotent) break;
    o = outcome_make(RESIL_OUTCOME_RETRYABLE, err);
    o.uncertain = 1;
    return o;
  case RESIL_ERRCLASS_PERMANENT:
    break;
  }
  return outcome_make(RESIL_OUTCOME_FATAL, err);
}

/* ---- exit codes ----------------------------------------------------------- */

resil_outcome resil_classify_exit(int status, const resil_codeset *retry_on,
                                  const resil_codeset *stop_on) {
  if (status == 0) return outcome_make(RESIL_OUTCOME_SUCCESS, 0);
  if (resil_codeset_has(stop_on, status))
    return outcome_make(RESIL_OUTCOME_FATAL, status);
  if (!resil_codeset_empty(retry_on) && !resil_codeset_has(retry_on, status))
    return outcome_make(RESIL_OUTCOME_FATAL, status);
  return outcome_make(RESIL_OUTCOME_RETRYABLE, status);
}
