/* Built without hiredis: the fleet API links and says it is unsupported. */
#include "resil/fleet.h"

static void unsupported_msg(char *errbuf, size_t errlen) {
  if (errbuf && errlen) {
    const char msg[] = "this resil was built without hiredis";
    size_t n = sizeof msg < errlen ? sizeof msg : errlen;
    for (size_t i = 0; i + 1 < n; i++) errbuf[i] = msg[i];
    errbuf[n - 1] = '\0';
  }
}

resil_err resil_fleet_budget_open(resil_budget **out, const char *redis_url, const char *name,
                                  double rate, double burst, const resil_budget_config *fallback,
                                  resil_log_fn log, void *log_ud, char *errbuf, size_t errlen) {
  (void)redis_url, (void)name, (void)rate, (void)burst, (void)fallback, (void)log, (void)log_ud;
  if (out) *out = NULL;
  unsupported_msg(errbuf, errlen);
  return RESIL_EUNSUPPORTED;
}

void resil_fleet_circuit_config_init(resil_fleet_circuit_config *cfg) {
  if (cfg == NULL) return;
  resil_fleet_circuit_config zero = {0};
  *cfg = zero;
  cfg->size = sizeof *cfg;
  cfg->quorum = 2;
  cfg->probes = 1;
  cfg->probe_ttl = 30 * RESIL_SEC;
  cfg->refresh = 100 * RESIL_MSEC;
}

resil_err resil_fleet_circuit_open(resil_fleet_circuit **out,
                                   const resil_fleet_circuit_config *cfg, resil_breaker *local,
                                   char *errbuf, size_t errlen) {
  (void)cfg, (void)local;
  if (out) *out = NULL;
  unsupported_msg(errbuf, errlen);
  return RESIL_EUNSUPPORTED;
}

/* No handle can exist; these only keep the API linkable. */
void resil_fleet_circuit_close(resil_fleet_circuit *fc) { (void)fc; }

resil_err resil_fleet_circuit_acquire(resil_fleet_circuit *fc, resil_fleet_permit *p,
                                      resil_ns *retry_in) {
  (void)fc, (void)p;
  if (retry_in) *retry_in = 0;
  return RESIL_EUNSUPPORTED;
}

void resil_fleet_circuit_record(resil_fleet_circuit *fc, const resil_fleet_permit *p,
                                resil_call_result r, resil_ns duration) {
  (void)fc, (void)p, (void)r, (void)duration;
}

void resil_fleet_circuit_snapshot_get(resil_fleet_circuit *fc,
                                     resil_fleet_circuit_snapshot *out) {
  (void)fc;
  if (out) {
    resil_fleet_circuit_snapshot zero = {0};
    *out = zero;
  }
}
