/* resil: error codes.
 *
 * Every fallible function returns a resil_err. Values are negative, pinned and
 * never renumbered: new codes are only appended (like libcurl's CURLcode), so a
 * program compiled against an older header keeps its meaning. */
#ifndef RESIL_ERROR_H
#define RESIL_ERROR_H

#include "export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, message). The single source for the enum, resil_strerror()
 * and resil_err_name(). */
#define RESIL_ERR_MAP(X)                                                       \
  X(OK, 0, "success")                                                          \
  X(EINVAL, -1, "invalid argument")                                            \
  X(ENOMEM, -2, "out of memory")                                               \
  X(ECANCELED, -3, "operation cancelled")                                      \
  X(ETIMEDOUT, -4, "deadline exceeded")                                        \
  X(ERANGE, -5, "value out of range")                                          \
  X(EPARSE, -6, "malformed input")                                             \
  X(ESYS, -7, "system call failed (see errno)")                                \
  X(EFAILED, -8, "operation failed and retrying stopped")                      \
  X(ECIRCUIT_OPEN, -9, "circuit breaker is open")                              \
  X(EBUDGET, -10, "retry budget exhausted")                                    \
  X(EUNSUPPORTED, -11, "not supported by this build")                          \
  X(ESTORE, -12, "state store failed")                                         \
  X(ENOSPACE, -13, "buffer too small")

typedef enum resil_err {
#define RESIL__ERR_ENUM(name, value, msg) RESIL_##name = (value),
  RESIL_ERR_MAP(RESIL__ERR_ENUM)
#undef RESIL__ERR_ENUM
} resil_err;

/* Static English text for err ("unknown error" for values not in the table).
 * Thread-safe; the string is never freed. */
RESIL_API const char *resil_strerror(resil_err err);

/* The symbolic name without prefix ("EINVAL"), or "UNKNOWN". Thread-safe. */
RESIL_API const char *resil_err_name(resil_err err);

#ifdef __cplusplus
}
#endif
#endif /* RESIL_ERROR_H */
