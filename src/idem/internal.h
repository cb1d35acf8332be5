/* Internal helpers of the server-side idempotency layer. Not installed. */
#ifndef RESIL_IDEM_INTERNAL_H
#define RESIL_IDEM_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>

#include "resil/alloc.h"
#include "resil/error.h"
#include "resil/idem_server.h"

/* "sha256:" + 64 hex digits + NUL. */
#define RESIL__IDEM_SCOPE_SIZE 72

/* The scope name the store sees: "default" for NULL or "", else "sha256:"
 * and the lowercase hex SHA-256 of scope. RESIL_ENOMEM if libcrypto fails. */
resil_err resil__idem_scope_name(const char *scope, char out[RESIL__IDEM_SCOPE_SIZE]);

/* An RFC 9457 problem+json body, NUL-terminated, allocated with a:
 *   {"type":T,"title":T,"status":N,"detail":D}
 * the detail is formatted like vprintf (ap is consumed); every string is
 * JSON-escaped (invalid UTF-8 becomes U+FFFD). NULL when out of memory.
 * *len (may be NULL) gets the length without the NUL. */
char *resil__idem_problem(const resil_allocator *a, const char *type, const char *title,
                          int status, size_t *len, const char *fmt, va_list ap)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 6, 0)))
#endif
    ;

/* Appends s[0..n) to buf as the inside of a JSON string (no quotes).
 * Returns the number of bytes it writes; buf may be NULL to measure. */
size_t resil__json_escape(char *buf, const char *s, size_t n);

#endif
