/* resil: a header (name, value) pair, shared by the HTTP client, the
 * idempotency layer and the stores. */
#ifndef RESIL_HEADER_H
#define RESIL_HEADER_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct resil_http_header {
  const char *name;
  const char *value;
} resil_http_header;

#ifdef __cplusplus
}
#endif
#endif /* RESIL_HEADER_H */
