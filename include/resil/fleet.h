/* resil: state shared by a fleet of instances, in Redis.
 *
 * Fleet-wide retry budget. resil_fleet_budget_open gives an ordinary
 * resil_budget (put it in resil_retry_config.budget) whose retries are
 * granted by one token bucket kept in Redis and shared by every instance
 * that opens the same URL (database and prefix) and name: over any interval
 * of length t the fleet together is granted at most burst + rate * t
 * retries. The bucket is a GCRA (one timestamp, in microseconds) updated by
 * a Lua script that reads the server's clock (TIME), so instances whose
 * clocks disagree still share one timeline; the key is
 *   PREFIX "budget:" NAME        (PREFIX from the URL, default "resil:")
 * and expires once the bucket is full again. Every instance should use the
 * same rate and burst for a name (each grants by the parameters it has).
 *
 * When Redis cannot answer (down, slow beyond `timeout`, refused), the
 * decision is made by a local budget instead (resil_budget_new_backend): a
 * WARN log line once per outage, an INFO when Redis answers again, and
 * snapshot.fallbacks counts each local decision. After a failure Redis is
 * not tried again for one second, so an outage costs one timeout per second,
 * not one per retry. The URL is as for the redis:// store (docs/stores.md):
 * redis://[[user]:pass@]host[:port][/db][?prefix=P&connect_timeout=MS&
 * timeout=MS], but with short defaults: 100 ms each.
 *
 * Built without hiredis (RESIL_WITH_REDIS=OFF), the functions here answer
 * RESIL_EUNSUPPORTED.
 *
 * Thread-safety: the budget is thread-safe like any resil_budget; its Redis
 * calls go through one connection, one at a time. Not usable across fork():
 * open it in the process that uses it. */
#ifndef RESIL_FLEET_H
#define RESIL_FLEET_H

#include <stddef.h>

#include "budget.h"
#include "error.h"
#include "export.h"
#include "log.h"

#ifdef __cplusplus
extern "C" {
#endif

/* rate: retries per second for the whole fleet, in [1e-6, 1e6]; burst:
 * >= 1, with burst / rate below about 30 years. name: 1 to 200 bytes, no
 * NUL. fallback: the local budget's config, or NULL for a token bucket with
 * the same rate and burst (an outage then lets each instance retry at the
 * fleet's rate); its name defaults to `name`. Redis is not contacted here
 * (the first retry connects), so an unreachable Redis is not an error.
 * RESIL_OK; RESIL_EINVAL (bad URL or parameter: errbuf says which, when
 * given); RESIL_ENOMEM; RESIL_EUNSUPPORTED (built without hiredis). */
RESIL_API resil_err resil_fleet_budget_open(resil_budget **out, const char *redis_url,
                                            const char *name, double rate, double burst,
                                            const resil_budget_config *fallback,
                                            resil_log_fn log, void *log_ud, char *errbuf,
                                            size_t errlen);

#ifdef __cplusplus
}
#endif
#endif /* RESIL_FLEET_H */
