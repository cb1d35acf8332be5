/* resil: calling unreliable dependencies safely. The umbrella header.
 *
 * Each module has its own header; include this one to get all of them. */
#ifndef RESIL_H
#define RESIL_H

#include "export.h"
#include "version.h"
#include "error.h"
#include "alloc.h"
#include "time.h"
#include "rng.h"
#include "backoff.h"
#include "retry.h"
#include "classify.h"
#include "http_date.h"
#include "breaker.h"
#include "budget.h"
#include "fleet.h"
#include "idem.h"
#include "store.h"
#include "store_pg.h"
#include "idem_server.h"

#endif /* RESIL_H */
