/* resil: a fault-injecting HTTP server (libmicrohttpd), for tests and demos.
 *
 * The server behind `resil serve`, embeddable in your own tests: start it on
 * a loopback port, point your client at it, and make it fail the way real
 * dependencies fail: error statuses, Retry-After, dropped connections,
 * truncated bodies, slow answers, rate limits, timed outages.
 *
 * Routes (KEY is any one path segment, percent-decoded, at most 255 bytes;
 * counts are per KEY and shared by the routes that take one, so use a fresh
 * KEY per scenario). Every route accepts any method and reads any body;
 * GET is shown where the method does not matter:
 *   GET /status/CODE[?retry_after=VALUE]
 *        answer CODE (100..599), with `Retry-After: VALUE` verbatim if given.
 *        (A 1xx is sent alone, without body, and the connection closed: the
 *        client gets an interim answer and never a final one.)
 *   ANY /flaky/KEY?fail=N&status=CODE[&retry_after=V]
 *        the first N (default 1) requests for KEY answer CODE (default 503);
 *        later ones 200 with a JSON body echoing method, attempt number, the
 *        SHA-256 of the request body and the Idempotency-Key header.
 *   ANY /drop/KEY?n=N
 *        close the connection without answering for the first N (default 1)
 *        requests, then 200 (the same echo). The request is read in full
 *        first, so the client cannot tell whether it was processed.
 *   GET /slow?delay=DUR        answer 200 after DUR (default 1s, at most 60s;
 *                              DUR as resil_duration_parse()).
 *   GET /truncate              declare a longer Content-Length than is sent,
 *                              then close.
 *   GET /ratelimit/KEY?n=N&reset=S
 *        the first N (default 1) requests for KEY get 429 with
 *        `Retry-After: S`, `RateLimit-Reset: S` and
 *        `X-RateLimit-Reset: <now + S>` (unix seconds; S defaults to 1); then
 *        200 (the same echo).
 *   GET /stats and GET /stats/KEY
 *        JSON: request counts per key, methods seen, Idempotency-Key values
 *        seen (bounded: the most recent 64 per key). /stats lists every key
 *        with its counts and methods (and how many Idempotency-Key values it
 *        keeps); /stats/KEY adds the values, each with how often it was seen,
 *        and says "tracked":false for a key never seen or forgotten.
 *   Anything else: 404. Bad parameters (non-numeric, out of range, unknown
 *   or repeated names, a bad DUR) and an Idempotency-Key that is not 1..255
 *   printable ASCII characters: 400. Errors are one line of text/plain;
 *   every other answer is JSON (application/json). Every answer carries
 *   `Connection: close`: one request per connection, closed cleanly.
 * Global faults (config): every request may first be delayed by `latency`,
 * fail with `fail_status` at `fail_rate`, or during the outage window
 * [outage_start, outage_start + outage_duration) after start (then with
 * `Retry-After`: the seconds left, rounded up). Injected failures carry
 * `X-Resil-Fault: fail_rate` or `outage` and still count as a request for
 * their KEY. Global faults apply to every valid request except /stats and
 * /stats/KEY, which always answer at once, so tests can read them; 400, 404
 * and 413 answers are not delayed.
 *
 * Memory is bounded: at most max_keys keys are tracked (the least recently
 * used is forgotten, and counts from 0 again if it comes back), request
 * bodies above max_body get 413 (at once when Content-Length says so, after
 * reading when chunked; bodies are hashed, never stored); each key keeps 8
 * method names and 64 Idempotency-Key values; at most 1024 connections.
 *
 * Delays (latency, /slow) do not hold a worker thread: the connection is
 * suspended and a timer thread resumes it, so `threads` workers keep serving
 * while any number of answers wait.
 *
 * Thread-safety: start/stop from one thread; the server answers from its own
 * threads; resil_faultserver_port/url/requests are safe from any thread. */
#ifndef RESIL_FAULTSERVER_H
#define RESIL_FAULTSERVER_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "export.h"
#include "time.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct resil_faultserver_config {
  size_t size;              /* sizeof(resil_faultserver_config); set by _init */
  const char *listen;       /* "127.0.0.1:PORT" ("[::1]:PORT" for IPv6);
                               default "127.0.0.1:0" (port 0 = pick a free one) */
  unsigned threads;         /* worker threads; default 4; 1..256 */
  double fail_rate;         /* probability that a request fails; default 0 */
  int fail_status;          /* status for injected failures (fail_rate and
                               outage); default 503 */
  resil_ns latency;         /* added before every answer but /stats; default 0 */
  resil_ns outage_start;    /* outage window, relative to start; */
  resil_ns outage_duration; /* default none (duration 0) */
  size_t max_keys;          /* default 10000 */
  size_t max_body;          /* default 1 MiB */
  int use_seed;             /* fail_rate draws: seeded, or getrandom() */
  uint64_t seed;
  /* Idempotent orders (`resil serve --idempotent`): a real side effect
   * behind the idempotency layer (include/resil/idem_server.h).
   *   POST /orders[?delay=DUR]  create an order: claim the Idempotency-Key
   *        in the store, wait DUR (default 0; simulates a slow handler, so
   *        tests can see 409s and kill a holder mid-request), append the
   *        order to this process's order list, answer 201 with the order as
   *        JSON ({"id":N,"key":"...","scope":"...","body_sha256":"..."}),
   *        and store the response. Scope: the Authorization header.
   *   GET /orders/count         {"orders": N} created by this process.
   * Global faults hit /orders too. A fraction `lost_response_rate` of the
   * injected /orders failures happens AFTER the order was created: the
   * connection is then dropped without an answer, the way a response lost
   * to a timeout or a reset looks to a client (this is what makes naive
   * retries create duplicates). */
  int idempotent;           /* default 0 */
  const char *store_url;    /* default "memory:" (see include/resil/store.h) */
  int require_key;          /* default 0: POST /orders without a key runs */
  resil_ns idem_lease;      /* claim lease; default 30s */
  double lost_response_rate; /* default 0.5 */
  int store_fail_open;      /* default 0: a store failure answers 503 and
                               creates nothing; 1: the order is created
                               without deduplication (resil_idem fail_open) */
} resil_faultserver_config;

RESIL_API void resil_faultserver_config_init(resil_faultserver_config *cfg);

typedef struct resil_faultserver resil_faultserver;

/* Bind and start serving. RESIL_EINVAL for a bad config (size not set by
 * _init, listen address not "HOST:PORT" with a numeric host, threads
 * outside 1..256, rates outside [0, 1], statuses outside 100..599, negative
 * durations, max_keys 0), RESIL_ESYS when the address cannot be bound
 * (errno kept; nothing is left running), RESIL_EUNSUPPORTED when built
 * without libmicrohttpd. *out is NULL on any error. */
RESIL_API resil_err resil_faultserver_start(resil_faultserver **out,
                                            const resil_faultserver_config *cfg);
/* Stop accepting, finish or abort in-flight requests, free. Requests still
 * waiting (latency, /slow) are closed without an answer. NULL-safe. */
RESIL_API void resil_faultserver_stop(resil_faultserver *s);
/* The bound port (useful with port 0); 0 for NULL. */
RESIL_API uint16_t resil_faultserver_port(const resil_faultserver *s);
/* "http://127.0.0.1:PORT" ("http://[::1]:PORT"), valid until stop; NULL
 * for NULL. */
RESIL_API const char *resil_faultserver_url(const resil_faultserver *s);
/* Total requests answered (400s, 404s and 413s included) or dropped so
 * far; 0 for NULL. */
RESIL_API uint64_t resil_faultserver_requests(const resil_faultserver *s);
/* Orders created by this server (0 unless idempotent). */
RESIL_API uint64_t resil_faultserver_orders(const resil_faultserver *s);

#ifdef __cplusplus
}
#endif
#endif /* RESIL_FAULTSERVER_H */
