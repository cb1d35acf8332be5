/* The internal interface between store.c (URL dispatch, argument checks)
 * and the backends. Not installed. `o` is resolved (clock and allocator
 * set); `err` is never NULL. */
#ifndef RESIL_STORE_INTERNAL_H
#define RESIL_STORE_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>

#include "resil/store.h"

resil_err resil__store_memory_open(resil_store **out, const resil_store_options *o,
                                   size_t max_entries, char *err, size_t errlen);
resil_err resil__store_sqlite_open(resil_store **out, const resil_store_options *o,
                                   const char *path, int sync_full, int busy_timeout_ms,
                                   char *err, size_t errlen);
/* url is the whole URL (scheme included, any case). */
resil_err resil__store_redis_open(resil_store **out, const resil_store_options *o,
                                  const char *url, char *err, size_t errlen);
resil_err resil__store_pg_open(resil_store **out, const resil_store_options *o, const char *url,
                               char *err, size_t errlen);

/* Stored headers: for each header, a 4-byte little-endian length and the
 * name's bytes, then the same for the value. _size fails (RESIL_EINVAL) for
 * sizes that do not fit. */
resil_err resil__store_headers_size(const resil_http_header *h, size_t n, size_t *out);
void resil__store_headers_encode(const resil_http_header *h, size_t n, unsigned char *dst);
/* Fill *out as REPLAY from a stored response, in one allocation from a.
 * RESIL_EPARSE if the encoded headers are malformed, RESIL_ENOMEM. */
resil_err resil__store_replay(resil_claim_result *out, const resil_allocator *a, int status,
                              const void *headers, size_t headers_len, const void *body,
                              size_t body_len);

/* snprintf into a message buffer that may cut on purpose (a long message
 * loses its tail, never its start). */
void resil__store_msg(char *buf, size_t len, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Set the store's message to "<backend> store <where>: <message>" under mu
 * (several threads may fail at once) and return RESIL_ESTORE. */
resil_err resil__store_vfail(resil_store *s, pthread_mutex_t *mu, const char *where,
                             const char *fmt, va_list ap);

#endif
