/* The server-side idempotency API in a build without libcrypto
 * (-DRESIL_WITH_IDEM=OFF): everything links, config_init fills its defaults,
 * creating a resil_idem, begin and fingerprint report RESIL_EUNSUPPORTED, and
 * the rest are no-ops (there can be no txn and no owned decision). */
#include <string.h>

#include "resil/idem_server.h"

static const char *const default_stored_headers[] = {"Content-Type", "Location"};

void resil_idem_config_init(resil_idem_config *cfg) {
  if (cfg == NULL) return;
  memset(cfg, 0, sizeof *cfg);
  cfg->size = sizeof *cfg;
  cfg->header_name = "Idempotency-Key";
  cfg->lease = 60 * RESIL_SEC;
  cfg->ttl = RESIL_STORE_DEFAULT_TTL;
  cfg->stored_headers = default_stored_headers;
  cfg->n_stored_headers = sizeof default_stored_headers / sizeof default_stored_headers[0];
  cfg->max_stored_body = 1024 * 1024;
}

resil_err resil_idem_new(resil_idem **out, const resil_idem_config *cfg) {
  (void)cfg;
  if (out == NULL) return RESIL_EINVAL;
  *out = NULL;
  return RESIL_EUNSUPPORTED;
}

void resil_idem_free(resil_idem *idem) { (void)idem; }

void resil_idem_decision_clear(resil_idem_decision *d) {
  if (d) memset(d, 0, sizeof *d);
}

resil_err resil_idem_begin(resil_idem *idem, const resil_idem_request *req, resil_idem_txn **txn,
                           resil_idem_decision *d) {
  (void)idem;
  (void)req;
  if (txn) *txn = NULL;
  if (d) memset(d, 0, sizeof *d);
  return RESIL_EUNSUPPORTED;
}

resil_err resil_idem_finish(resil_idem_txn *txn, const resil_stored_response *resp) {
  (void)txn;
  (void)resp;
  return RESIL_OK;
}

void resil_idem_abort(resil_idem_txn *txn) { (void)txn; }

resil_err resil_idem_fingerprint(const resil_idem_request *req, const char *const *headers,
                                 size_t n_headers, uint8_t out[RESIL_FINGERPRINT_SIZE]) {
  (void)req;
  (void)headers;
  (void)n_headers;
  (void)out;
  return RESIL_EUNSUPPORTED;
}
