/* The fault server's API in a build without libmicrohttpd
 * (-DRESIL_WITH_SERVER=OFF): everything links, start reports
 * RESIL_EUNSUPPORTED, and the rest behave as for a NULL server. */
#include <string.h>

#include "resil/faultserver.h"

void resil_faultserver_config_init(resil_faultserver_config *cfg) {
  if (cfg == NULL) return;
  memset(cfg, 0, sizeof *cfg);
  cfg->size = sizeof *cfg;
  cfg->listen = "127.0.0.1:0";
  cfg->threads = 4;
  cfg->fail_status = 503;
  cfg->max_keys = 10000;
  cfg->max_body = 1024 * 1024;
  cfg->store_url = "memory:";
  cfg->idem_lease = 30 * RESIL_SEC;
  cfg->lost_response_rate = 0.5;
}

resil_err resil_faultserver_start(resil_faultserver **out,
                                  const resil_faultserver_config *cfg) {
  (void)cfg;
  if (out == NULL) return RESIL_EINVAL;
  *out = NULL;
  return RESIL_EUNSUPPORTED;
}

void resil_faultserver_stop(resil_faultserver *s) { (void)s; }

uint16_t resil_faultserver_port(const resil_faultserver *s) {
  (void)s;
  return 0;
}

const char *resil_faultserver_url(const resil_faultserver *s) {
  (void)s;
  return NULL;
}

uint64_t resil_faultserver_requests(const resil_faultserver *s) {
  (void)s;
  return 0;
}

uint64_t resil_faultserver_orders(const resil_faultserver *s) {
  (void)s;
  return 0;
}
