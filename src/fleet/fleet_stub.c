/* Built without hiredis: the fleet API links and says it is unsupported. */
#include "resil/fleet.h"

resil_err resil_fleet_budget_open(resil_budget **out, const char *redis_url, const char *name,
                                  double rate, double burst, const resil_budget_config *fallback,
                                  resil_log_fn log, void *log_ud, char *errbuf, size_t errlen) {
  (void)redis_url, (void)name, (void)rate, (void)burst, (void)fallback, (void)log, (void)log_ud;
  if (out) *out = NULL;
  if (errbuf && errlen) {
    const char msg[] = "this resil was built without hiredis";
    size_t n = sizeof msg < errlen ? sizeof msg : errlen;
    for (size_t i = 0; i + 1 < n; i++) errbuf[i] = msg[i];
    errbuf[n - 1] = '\0';
  }
  return RESIL_EUNSUPPORTED;
}
