/* resil: idempotency keys.
 *
 * A retried "create order" must not create two orders: the client sends an
 * Idempotency-Key (the same value on every attempt) and the server
 * deduplicates on it. This header has the client half that the core needs:
 * generating keys (RFC 9562 UUIDs) and validating keys received in a header.
 * All functions are thread-safe. */
#ifndef RESIL_IDEM_H
#define RESIL_IDEM_H

#include <stddef.h>

#include "error.h"
#include "export.h"
#include "rng.h"
#include "time.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 36 characters and a NUL: "xxxxxxxx-xxxx-Mxxx-Nxxx-xxxxxxxxxxxx". */
#define RESIL_UUID_SIZE 37
/* Longest key accepted (Stripe's limit), plus the NUL. */
#define RESIL_IDEM_KEY_MAX 255

/* A random (version 4) UUID, lowercase. rng NULL draws from getrandom();
 * pass a seeded resil_rng for reproducible keys in tests. Returns RESIL_ESYS
 * if getrandom() fails (out is then unusable). */
RESIL_API resil_err resil_uuid_v4(char out[RESIL_UUID_SIZE], resil_rng *rng);

/* A time-ordered (version 7) UUID: 48 bits of Unix milliseconds from wc
 * (NULL = system wall clock), then random bits; keys sort by creation time,
 * which keeps database indexes compact. */
RESIL_API resil_err resil_uuid_v7(char out[RESIL_UUID_SIZE], const resil_wallclock *wc,
                                  resil_rng *rng);

/* Validate an Idempotency-Key header value and extract the key.
 * Accepted: surrounding spaces/tabs, then either a bare key of 1..255
 * visible ASCII characters (0x21-0x7E), or a structured-field string (the
 * IETF draft's form): a double-quoted string of printable ASCII with \" and
 * \\ escapes, whose content is 1..255 characters. The key (unquoted,
 * unescaped) is written to out with a NUL; *out_len gets its length (may be
 * NULL). Returns RESIL_OK, RESIL_EPARSE (empty, control or non-ASCII bytes,
 * bad quoting) or RESIL_ERANGE (longer than 255). value need not be
 * NUL-terminated. */
RESIL_API resil_err resil_idem_key_parse(const char *value, size_t len,
                                         char out[RESIL_IDEM_KEY_MAX + 1], size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif /* RESIL_IDEM_H */
