/* resil: version numbers.
 *
 * RESIL_VERSION_NUM is 0xMMmmpp so it compares with RESIL_AT_LEAST_VERSION at
 * compile time; resil_version() reports the library actually linked. */
#ifndef RESIL_VERSION_H
#define RESIL_VERSION_H

#include "export.h"

#define RESIL_VERSION_MAJOR 0
#define RESIL_VERSION_MINOR 1
#define RESIL_VERSION_PATCH 0
#define RESIL_VERSION_STRING "0.1.0"
#define RESIL_VERSION_NUM                                                      \
  ((RESIL_VERSION_MAJOR << 16) | (RESIL_VERSION_MINOR << 8) | RESIL_VERSION_PATCH)
#define RESIL_AT_LEAST_VERSION(x, y, z)                                        \
  (RESIL_VERSION_NUM >= (((x) << 16) | ((y) << 8) | (z)))

#ifdef __cplusplus
extern "C" {
#endif

/* The linked library's version string, e.g. "0.1.0". Thread-safe. */
RESIL_API const char *resil_version(void);
/* The linked library's RESIL_VERSION_NUM. Thread-safe. */
RESIL_API unsigned resil_version_num(void);

#ifdef __cplusplus
}
#endif
#endif /* RESIL_VERSION_H */
