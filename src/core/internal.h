/* Internal helpers shared by the core modules. Not installed.
 * Non-static internal symbols use the resil__ prefix and stay hidden in the
 * shared library (-fvisibility=hidden). */
#ifndef RESIL_CORE_INTERNAL_H
#define RESIL_CORE_INTERNAL_H

#include <stddef.h>

#include "resil/alloc.h"
#include "resil/time.h"

#if defined(__GNUC__) || defined(__clang__)
#define RESIL_LIKELY(x) __builtin_expect(!!(x), 1)
#define RESIL_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define RESIL_LIKELY(x) (x)
#define RESIL_UNLIKELY(x) (x)
#endif

#define RESIL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* An allocator with every hook set: a NULL malloc in `in` means libc. */
resil_allocator resil__alloc_resolve(const resil_allocator *in);
void *resil__alloc(const resil_allocator *a, size_t n);
void *resil__calloc(const resil_allocator *a, size_t n);
void resil__free(const resil_allocator *a, void *p);

/* A counter stripe for the calling thread, in [0, n) with n a power of two
 * <= 64, picked from its stack address: threads' stacks lie megabytes apart,
 * so concurrent threads usually get different stripes without any
 * thread-local or global state. Any stripe is correct; this one is merely
 * likely to be private to the thread. */
static inline unsigned resil__thread_stripe(unsigned n) {
  char probe;
  unsigned long long a = (unsigned long long)(size_t)&probe >> 16;
  return (unsigned)((a * 0x9E3779B97F4A7C15ull) >> 58) & (n - 1);
}

/* How long until resil_breaker_acquire would admit a call: 0 = now (or a
 * transition is under way), RESIL_NS_MAX = forced open; OPEN and a HALF_OPEN
 * breaker whose probe slots are all taken give the time until that changes.
 * Lock-free, counts nothing: the retry engine uses it to stop at once rather
 * than sleep, charge the budget, and then be refused. */
struct resil_breaker;
resil_ns resil__breaker_admit_in(struct resil_breaker *b);

/* ASCII-only, locale-independent helpers. */
int resil__ascii_lower(int c);
int resil__strcaseeq(const char *a, const char *b);
int resil__strncaseeq(const char *a, const char *b, size_t n);

#endif
