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
 * open it in the process that uses it.
 *
 * Shared circuit state (resil_fleet_circuit_*): a local resil_breaker per
 * instance, plus a fleet view in Redis. An instance whose local breaker is
 * OPEN publishes "open until T" (T = now + the breaker's open time left, on
 * the Redis server's clock) in the sorted set
 *   PREFIX "circuit:" NAME ":open"   (member: a random instance id)
 * and removes itself when its breaker is CLOSED again. The fleet is open
 * while at least `quorum` unexpired entries exist, until the quorum-th
 * largest expiry; so one unhealthy instance (quorum >= 2) cannot open the
 * circuit for everyone. When the fleet view first reports open, the key
 *   PREFIX "circuit:" NAME ":recovering"
 * is set (TTL: the open time left + 2 * probe_ttl). While it exists, a call
 * needs one of `probes` fleet-wide probe slots
 *   PREFIX "circuit:" NAME ":probe:" I   (I < probes; SET NX PX probe_ttl)
 * or is refused. A probe success deletes the recovering key (the fleet is
 * closed again for everyone); a probe's other results free its slot. See
 * docs/fleet.md. */
#ifndef RESIL_FLEET_H
#define RESIL_FLEET_H

#include <stddef.h>

#include <stdint.h>

#include "breaker.h"
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

/* ---- Shared circuit state ------------------------------------------------ */

typedef struct resil_fleet_circuit resil_fleet_circuit;

typedef struct resil_fleet_circuit_config {
  size_t size;           /* sizeof(resil_fleet_circuit_config); set by _init */
  const char *redis_url; /* as for resil_fleet_budget_open; required */
  const char *name;      /* the downstream, 1 to 200 bytes; NULL: the local
                            breaker's name */
  uint32_t quorum;       /* instances that must be open; default 2, >= 1 */
  uint32_t probes;       /* fleet-wide half-open probes; default 1, 1..8 */
  resil_ns probe_ttl;    /* a probe slot not released within it expires;
                            default 30s, >= 1ms */
  resil_ns refresh;      /* how long the fleet view is cached; default
                            100ms, >= 0 (0: ask Redis on every acquire) */
  resil_log_fn log;      /* default NULL */
  void *log_ud;
} resil_fleet_circuit_config;

/* Fill cfg with the defaults above. Thread-safe. */
RESIL_API void resil_fleet_circuit_config_init(resil_fleet_circuit_config *cfg);

/* One instance's view of the shared circuit for `local` (not owned: it must
 * outlive the handle, and calls for it should go through the handle, or
 * this instance's state is not published). Redis is not contacted here.
 * RESIL_OK; RESIL_EINVAL (errbuf says why); RESIL_ENOMEM; RESIL_ESYS;
 * RESIL_EUNSUPPORTED (built without hiredis). */
RESIL_API resil_err resil_fleet_circuit_open(resil_fleet_circuit **out,
                                             const resil_fleet_circuit_config *cfg,
                                             resil_breaker *local, char *errbuf, size_t errlen);
/* NULL-safe. No other thread may use the handle. Does not remove this
 * instance's published entry (it expires with the local open time). */
RESIL_API void resil_fleet_circuit_close(resil_fleet_circuit *fc);

/* A permit: the local breaker's, and whether it holds a fleet probe slot.
 * A value type; treat the fields as private. */
typedef struct resil_fleet_permit {
  resil_permit local;
  int probe_slot;       /* fleet probe slot, or -1 */
  uint64_t probe_token; /* identifies this holder of the slot */
} resil_fleet_permit;

/* Ask to make a call: the local breaker first (its refusal is returned as
 * is), then the fleet view (cached for cfg.refresh). RESIL_ECIRCUIT_OPEN
 * when the fleet is open (*retry_in: until the quorum breaks) or recovering
 * with every probe slot taken (*retry_in: until the first slot expires);
 * the local permit is then released (recorded as IGNORED). When Redis does
 * not answer, the local breaker alone decides (a WARN log line once per
 * outage, snapshot.fallbacks counts). RESIL_OK fills *p; pass it to
 * resil_fleet_circuit_record exactly once. Thread-safe. */
RESIL_API resil_err resil_fleet_circuit_acquire(resil_fleet_circuit *fc, resil_fleet_permit *p,
                                                resil_ns *retry_in);

/* Record the call on the local breaker, then publish: OPEN -> add or
 * refresh this instance's entry; CLOSED -> remove it. A fleet probe's
 * SUCCESS closes the fleet; any other result frees its slot. Thread-safe. */
RESIL_API void resil_fleet_circuit_record(resil_fleet_circuit *fc, const resil_fleet_permit *p,
                                          resil_call_result r, resil_ns duration);

typedef struct resil_fleet_circuit_snapshot {
  int fleet_open;            /* the last fleet view said open (and it still is) */
  uint32_t instances_open;   /* unexpired entries in the last fleet view */
  uint32_t probes_in_flight; /* fleet probe slots this instance holds */
  uint64_t fallbacks;        /* decisions and publications made without Redis */
} resil_fleet_circuit_snapshot;

/* No Redis call. Thread-safe. */
RESIL_API void resil_fleet_circuit_snapshot_get(resil_fleet_circuit *fc,
                                                resil_fleet_circuit_snapshot *out);

#ifdef __cplusplus
}
#endif
#endif /* RESIL_FLEET_H */
