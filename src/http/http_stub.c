/* The HTTP client's API when resil is built without libcurl
 * (-DRESIL_WITH_CURL=OFF): everything links, the init functions fill their
 * structs, creating a client or a multi returns RESIL_EUNSUPPORTED, and the
 * accessors answer like they would for a NULL response. */
#include <string.h>

#include "resil/http.h"
#include "resil/version.h"

void resil_http_client_config_init(resil_http_client_config *cfg) {
  if (cfg == NULL) return;
  memset(cfg, 0, sizeof *cfg);
  cfg->size = sizeof *cfg;
  resil_retry_config_init(&cfg->retry);
  resil_breaker_config_init(&cfg->breaker);
  cfg->attempt_timeout = 30 * RESIL_SEC;
  cfg->connect_timeout = 10 * RESIL_SEC;
  resil_http_retry_statuses_default(&cfg->retry_statuses);
  cfg->idempotency_header = "Idempotency-Key";
  cfg->user_agent = "resil/" RESIL_VERSION_STRING;
  cfg->max_redirects = 10;
  cfg->max_body = (size_t)64 << 20;
  cfg->max_drain = (size_t)64 << 10;
  cfg->log_level = RESIL_LOG_INFO;
}

resil_err resil_http_client_new(resil_http_client **out, const resil_http_client_config *cfg) {
  (void)cfg;
  if (out) *out = NULL;
  return out ? RESIL_EUNSUPPORTED : RESIL_EINVAL;
}

void resil_http_client_free(resil_http_client *c) { (void)c; }

resil_breaker *resil_http_client_breaker(resil_http_client *c, const char *origin) {
  (void)c;
  (void)origin;
  return NULL;
}

void resil_http_request_init(resil_http_request *req) {
  if (req == NULL) return;
  memset(req, 0, sizeof *req);
  req->size = sizeof *req;
  req->method = "GET";
  req->body_size = -1;
  req->retry_non_idempotent = -1;
}

resil_err resil_http_do(resil_http_client *c, const resil_http_request *req,
                        resil_http_response **out) {
  (void)c;
  (void)req;
  if (out) *out = NULL;
  return RESIL_EUNSUPPORTED;
}

void resil_http_response_free(resil_http_response *r) { (void)r; }
int resil_http_response_status(const resil_http_response *r) {
  (void)r;
  return 0;
}
const char *resil_http_response_header(const resil_http_response *r, const char *name) {
  (void)r;
  (void)name;
  return NULL;
}
size_t resil_http_response_header_count(const resil_http_response *r) {
  (void)r;
  return 0;
}
resil_http_header resil_http_response_header_at(const resil_http_response *r, size_t i) {
  (void)r;
  (void)i;
  resil_http_header h = {NULL, NULL};
  return h;
}
const char *resil_http_response_body(const resil_http_response *r, size_t *len) {
  (void)r;
  if (len) *len = 0;
  return "";
}
uint32_t resil_http_response_attempts(const resil_http_response *r) {
  (void)r;
  return 0;
}
resil_stop_reason resil_http_response_stop_reason(const resil_http_response *r) {
  (void)r;
  return RESIL_STOP_NONE;
}
int resil_http_response_curl_code(const resil_http_response *r) {
  (void)r;
  return 0;
}
const char *resil_http_response_error(const resil_http_response *r) {
  (void)r;
  return "";
}
const char *resil_http_response_idempotency_key(const resil_http_response *r) {
  (void)r;
  return NULL;
}
const resil_http_attempt *resil_http_response_history(const resil_http_response *r, size_t *n) {
  (void)r;
  if (n) *n = 0;
  return NULL;
}
resil_ns resil_http_response_elapsed(const resil_http_response *r) {
  (void)r;
  return 0;
}

resil_err resil_http_multi_new(resil_http_multi **out, resil_http_client *c) {
  (void)c;
  if (out) *out = NULL;
  return out ? RESIL_EUNSUPPORTED : RESIL_EINVAL;
}
void resil_http_multi_free(resil_http_multi *m) { (void)m; }
resil_err resil_http_multi_add(resil_http_multi *m, const resil_http_request *req,
                               resil_http_done_fn done, void *ud) {
  (void)m;
  (void)req;
  (void)done;
  (void)ud;
  return RESIL_EUNSUPPORTED;
}
size_t resil_http_multi_pending(const resil_http_multi *m) {
  (void)m;
  return 0;
}
resil_err resil_http_multi_run(resil_http_multi *m) {
  (void)m;
  return RESIL_EUNSUPPORTED;
}
size_t resil_http_multi_perform(resil_http_multi *m, resil_ns max_wait) {
  (void)m;
  (void)max_wait;
  return 0;
}
resil_err resil_http_multi_use_loop(resil_http_multi *m, const resil_http_loop *loop) {
  (void)m;
  (void)loop;
  return RESIL_EUNSUPPORTED;
}
void resil_http_multi_socket_action(resil_http_multi *m, int fd, int events) {
  (void)m;
  (void)fd;
  (void)events;
}
