/* resil demo: a fleet of clients placing orders through an injected outage,
 * once with naive retries and once with resil's, side by side.
 *
 * Internal to the CLI (src/cli/cmd_demo.c). Like the rest of the CLI it uses
 * the public API only: the server is resil/faultserver.h with its idempotent
 * orders route, the clients are one resil/http.h client per run driven
 * through resil_http_multi, and the chart is written by src/sim/svg.c.
 *
 * The model (one run):
 *   - a fresh fault server, idempotent, on a free loopback port, with the
 *     outage window [outage_start, outage_start + outage_len) counted from
 *     its start, a small fail_rate outside it, and lost_response_rate of the
 *     injected failures on /orders happening after the order was created;
 *   - `clients` clients, each placing orders one after another with a think
 *     time between them, starting new orders until `duration`;
 *   - naive clients send an order with immediate retries; when the call
 *     fails, the customer sees an error and the client moves on to its next
 *     order. resil clients, when a call gives up (breaker open, budget spent,
 *     deadline), keep the order and send it again later (after Retry-After,
 *     the breaker's open time, or a backoff) with the same Idempotency-Key,
 *     the one the client generated ("auto") for its first call: an order is
 *     pursued until the server confirms it, which only a key makes safe;
 *   - after `duration`, orders in hand are finished, for at most `drain`.
 * The server's order count then gives exact numbers: every confirmed order
 * accounts for one order on the server, so created - confirmed is the
 * orders nobody was told about (second copies, or orders whose customer saw
 * an error); for resil, created must equal confirmed.
 *
 * Everything runs in the calling thread (the server has its own threads);
 * nothing here is thread-safe. */
#ifndef RESIL_DEMO_H
#define RESIL_DEMO_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "resil/error.h"
#include "resil/time.h"

typedef enum demo_kind { DEMO_NAIVE = 0, DEMO_RESIL = 1 } demo_kind;

/* "naive", "resil". */
const char *demo_kind_name(demo_kind k);

typedef struct demo_config {
  uint32_t clients;          /* default 40 */
  resil_ns duration;         /* new orders start before this; default 12s */
  resil_ns outage_start;     /* default duration / 4 */
  resil_ns outage_len;       /* default duration / 3 */
  resil_ns drain;            /* orders in hand after duration; default 10s */
  resil_ns think_min, think_max; /* between a client's orders; 100..300ms */
  resil_ns latency;          /* the server's, on every answer; default 10ms */
  double fail_rate;          /* besides the outage; default 0.02 */
  double lost_response_rate; /* default 0.2 */
  resil_ns attempt_timeout;  /* both runs; default 1s */
  uint64_t seed;
  const char *store_url;     /* the server's idempotency store */
} demo_config;

/* Fill the defaults for `duration` (the outage scales with it). */
void demo_config_init(demo_config *c, resil_ns duration);

/* Requests and confirmations are counted in bins of this width, by when
 * the attempt started (or the order was confirmed), from the run's start. */
#define DEMO_BIN (50 * RESIL_MSEC)

typedef struct demo_run {
  demo_kind kind;
  uint64_t intended;         /* orders started */
  uint64_t confirmed;        /* orders the server confirmed (201) */
  uint64_t failed;           /* naive: orders whose call failed */
  uint64_t unfinished;       /* still unconfirmed when the run ended */
  uint64_t calls;            /* HTTP calls (each with its own retries) */
  uint64_t requests;         /* attempts sent, counted by the client */
  uint64_t replayed;         /* 201s replayed by the idempotency layer */
  uint64_t breaker_trips;    /* resil: times the breaker opened */
  uint64_t breaker_rejected; /* resil: calls it refused before sending */
  uint64_t budget_denied;    /* resil: retries the budget refused */
  uint64_t server_requests;  /* what the server counted */
  uint64_t created;          /* orders the server created */
  resil_ns *latency;         /* per order: start to 201 or to the error */
  size_t nlatency, cap_latency;
  uint32_t *req_bins;        /* attempts per DEMO_BIN */
  uint32_t *done_bins;       /* confirmations per DEMO_BIN */
  size_t nbins;              /* bins allocated */
  size_t used_bins;          /* bins up to the run's end */
  resil_ns elapsed;          /* the whole run, drain included */
  int interrupted;           /* stopped by *stop */
} demo_run;

/* Called about every 100ms while a run goes on. */
typedef struct demo_progress {
  const demo_run *run;
  resil_ns t;                /* since the run's start */
  double req_rate;           /* attempts per second over the last second */
  uint64_t server_orders;
  int in_outage;
} demo_progress;

typedef void (*demo_progress_fn)(void *ud, const demo_progress *p);

/* One run. Starts the server, runs the fleet, stops the server. Returns
 * RESIL_OK (also when interrupted: out->interrupted), RESIL_EUNSUPPORTED
 * (no server, client or idempotency in this build), RESIL_ESYS (cannot
 * listen), RESIL_ENOMEM, or another error with a message in errbuf. *out
 * is filled in every case; release it with demo_run_free. `stop` is polled:
 * non-zero ends the run early. */
resil_err demo_run_fleet(const demo_config *c, demo_kind kind, demo_run *out,
                         demo_progress_fn progress, void *progress_ud,
                         volatile sig_atomic_t *stop, char *errbuf, size_t errlen);
void demo_run_free(demo_run *r);

/* ---- report (report.c) --------------------------------------------------- */

/* The numbers of a run's row. */
typedef struct demo_summary {
  uint64_t intended, created, duplicates, lost, requests, server_requests;
  double amplification;      /* requests / intended */
  double success;            /* confirmed / intended */
  resil_ns p50, p99;         /* order latency, -1 when none */
  double peak_outage;        /* highest requests/s over any 1s (or the whole
                                outage, when shorter) inside the outage */
} demo_summary;

void demo_summarize(const demo_config *c, const demo_run *r, demo_summary *out);
/* The table: a header and one row per run. */
void demo_print_table(FILE *out, const demo_run *const *runs, const demo_summary *sums,
                      size_t n);
/* The chart: requests per second of every run over time, the outage shaded;
 * below it, orders confirmed per second. 0, or -1 when writing failed. */
int demo_write_svg(FILE *out, const demo_config *c, const demo_run *const *runs, size_t n);

#endif /* RESIL_DEMO_H */
