#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

static void *libc_malloc(void *ud, size_t n) {
  (void)ud;
  return malloc(n);
}
static void *libc_realloc(void *ud, void *p, size_t n) {
  (void)ud;
  return realloc(p, n);
}
static void libc_free(void *ud, void *p) {
  (void)ud;
  free(p);
}

resil_allocator resil_allocator_default(void) {
  resil_allocator a = {libc_malloc, libc_realloc, libc_free, NULL};
  return a;
}

resil_allocator resil__alloc_resolve(const resil_allocator *in) {
  if (in == NULL || in->malloc == NULL) return resil_allocator_default();
  return *in;
}

void *resil__alloc(const resil_allocator *a, size_t n) {
  return a->malloc(a->ud, n ? n : 1);
}

void *resil__calloc(const resil_allocator *a, size_t n) {
  void *p = resil__alloc(a, n);
  if (p) memset(p, 0, n);
  return p;
}

void resil__free(const resil_allocator *a, void *p) {
  if (p) a->free(a->ud, p);
}

int resil__ascii_lower(int c) {
  return (c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c;
}

int resil__strcaseeq(const char *a, const char *b) {
  for (; *a && *b; a++, b++)
    if (resil__ascii_lower((unsigned char)*a) != resil__ascii_lower((unsigned char)*b)) return 0;
  return *a == *b;
}

int resil__strncaseeq(const char *a, const char *b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (resil__ascii_lower((unsigned char)a[i]) != resil__ascii_lower((unsigned char)b[i])) return 0;
    if (a[i] == '\0') return 1;
  }
  return 1;
}
