/* resil: per-object allocator.
 *
 * Objects that allocate take a resil_allocator in their config (zstd's
 * ZSTD_customMem pattern): there is no global allocator setter. A config whose
 * allocator has malloc == NULL uses libc malloc/realloc/free. */
#ifndef RESIL_ALLOC_H
#define RESIL_ALLOC_H

#include <stddef.h>

#include "export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct resil_allocator {
  /* Return NULL on failure. All three must be set, or malloc must be NULL. */
  void *(*malloc)(void *ud, size_t size);
  void *(*realloc)(void *ud, void *ptr, size_t size);
  void (*free)(void *ud, void *ptr);
  void *ud;
} resil_allocator;

/* The libc allocator. Thread-safe. */
RESIL_API resil_allocator resil_allocator_default(void);

#ifdef __cplusplus
}
#endif
#endif /* RESIL_ALLOC_H */
