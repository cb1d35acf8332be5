/* The fault-injecting HTTP server's internals, shared by the src/server/ files.
 * Not installed. Non-static symbols use the resil__fs_ prefix and stay
 * hidden in the shared library (-fvisibility=hidden).
 *
 * Files, one job each:
 *   faultserver.c  start/stop, config checks, the listening socket, the
 *                  MHD daemon, the global faults (latency, outage, fail_rate)
 *   routes.c       the MHD callbacks: route table, parameters, answers
 *   keystore.c     per-KEY counters: bounded, LRU-evicted, thread-safe
 *   timer.c        delayed answers without blocking a worker thread
 *   json.c         a growable text buffer and JSON string escaping
 *   orders.c       POST /orders behind the idempotency layer (idempotent
 *                  servers only): the order list and the handler's steps */
#ifndef RESIL_SERVER_INTERNAL_H
#define RESIL_SERVER_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>

#include "resil/faultserver.h"
#include "resil/idem.h"
#include "resil/idem_server.h"
#include "resil/rng.h"
#include "resil/store.h"

/* ---- limits ---------------------------------------------------------------- */

/* Longest KEY path segment, Idempotency-Key value and retry_after value. */
#define RESIL__FS_KEY_MAX 255
#define RESIL__FS_IDEM_MAX 255
#define RESIL__FS_HEADER_VALUE_MAX 255
/* Idempotency-Key values remembered per KEY (the most recently seen). */
#define RESIL__FS_IDEM_PER_KEY 64
/* Distinct methods counted by name per KEY; more go to "methods_other". */
#define RESIL__FS_METHODS_PER_KEY 8
#define RESIL__FS_METHOD_MAX 31
/* Simultaneous connections (MHD's limit). Every delayed answer holds one, so
 * this also bounds the timer's queue. */
#define RESIL__FS_MAX_CONNECTIONS 1024
/* Longest /slow delay (and ?delay of POST /orders). */
#define RESIL__FS_SLOW_MAX (60 * RESIL_SEC)
/* Orders kept in memory, the most recent; the count itself is unbounded. */
#define RESIL__FS_ORDERS_KEPT 1024
/* An order's scope as the idempotency store sees it: "default", or
 * "sha256:" and 64 hex digits (include/resil/idem_server.h), and a NUL. */
#define RESIL__FS_SCOPE_SIZE 72

/* ---- json.c: a growable buffer --------------------------------------------- */

/* Appends never fail visibly: on allocation failure the buffer is marked
 * failed, later appends are ignored, and the caller checks `failed` once. */
typedef struct resil__fs_buf {
  char *data; /* NUL-terminated when len > 0 */
  size_t len, cap;
  int failed;
} resil__fs_buf;

void resil__fs_buf_init(resil__fs_buf *b);
void resil__fs_buf_free(resil__fs_buf *b);
void resil__fs_buf_add(resil__fs_buf *b, const char *s, size_t n);
void resil__fs_buf_puts(resil__fs_buf *b, const char *s);
void resil__fs_buf_printf(resil__fs_buf *b, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* A JSON string literal for the n bytes at s: quotes, backslashes and
 * control characters escaped; valid UTF-8 copied as is, each byte of an
 * invalid sequence replaced by U+FFFD. Always valid JSON. */
void resil__fs_json_str(resil__fs_buf *b, const char *s, size_t n);

/* ---- keystore.c: per-KEY request records ----------------------------------- */

typedef struct resil__fs_keystore resil__fs_keystore;

/* At most max_keys (>= 1) keys; the least recently used is forgotten to make
 * room. hash_seed randomizes bucket placement. Returns 0, or -1 (ENOMEM). */
int resil__fs_keystore_new(resil__fs_keystore **out, size_t max_keys, uint64_t hash_seed);
void resil__fs_keystore_free(resil__fs_keystore *ks); /* NULL-safe */
/* Record one request for key (method, and idem unless NULL) and return its
 * number for that key: 1 for the first. 0 when out of memory (nothing was
 * recorded). Thread-safe. */
uint64_t resil__fs_keystore_hit(resil__fs_keystore *ks, const char *key, size_t keylen,
                                const char *method, const char *idem, size_t idemlen);
/* Append the /stats object (every key, without Idempotency-Key values) or
 * the /stats/KEY object to b. Thread-safe. */
void resil__fs_keystore_json_all(resil__fs_keystore *ks, uint64_t requests, resil__fs_buf *b);
void resil__fs_keystore_json_key(resil__fs_keystore *ks, const char *key, size_t keylen,
                                 resil__fs_buf *b);

/* ---- timer.c: wake items at a monotonic time ------------------------------- */

/* Called on the timer thread (or on the stopping thread) for each due item;
 * aborted is 1 when the timer is shutting down rather than due. */
typedef void (*resil__fs_wake_fn)(void *item, int aborted);

typedef struct resil__fs_timer_entry {
  resil_ns due; /* CLOCK_MONOTONIC, as resil_clock_system() */
  uint64_t seq; /* FIFO among equal deadlines */
  void *item;
} resil__fs_timer_entry;

typedef struct resil__fs_timer {
  pthread_mutex_t mu;
  pthread_cond_t cond; /* bound to CLOCK_MONOTONIC */
  resil__fs_timer_entry *heap; /* min-heap on (due, seq) */
  size_t len, cap;
  uint64_t seq;
  int stopping;
  pthread_t thread;
  resil__fs_wake_fn wake;
} resil__fs_timer;

/* Room for cap waiting items (no allocation afterwards) and start the timer
 * thread. Returns 0, or -1 with errno set. */
int resil__fs_timer_start(resil__fs_timer *t, size_t cap, resil__fs_wake_fn wake);
/* Queue item to be woken at due. Returns 0, or -1 when the timer is
 * stopping or full: the item was not queued and the caller must wake it
 * itself (aborted when stopping; *stopping tells which). Thread-safe. */
int resil__fs_timer_add(resil__fs_timer *t, resil_ns due, void *item, int *stopping);
/* Stop the timer thread, then wake every queued item with aborted = 1;
 * later adds are refused. Call before stopping the MHD daemon: afterwards
 * no connection is left suspended by the timer. Not thread-safe with
 * itself; idempotent. */
void resil__fs_timer_stop(resil__fs_timer *t);
/* resil__fs_timer_stop, then free. Only after nothing can call add. */
void resil__fs_timer_free(resil__fs_timer *t);

/* ---- orders.c: POST /orders ------------------------------------------------ */

typedef struct resil__fs_order {
  uint64_t id;
  char key[RESIL_IDEM_KEY_MAX + 1]; /* "" when the request had none */
  char scope[RESIL__FS_SCOPE_SIZE];
  char body_sha256[65];
} resil__fs_order;

/* The orders this process created: a ring of the most recent
 * RESIL__FS_ORDERS_KEPT and the total, which is also the last id. */
typedef struct resil__fs_orders {
  pthread_mutex_t mu;        /* guards ring and the writes of count */
  resil__fs_order *ring;
  _Atomic uint64_t count;
} resil__fs_orders;

/* One POST /orders, from its first byte to its answer. Zeroed = empty. */
typedef struct resil__fs_order_req {
  char *body;                /* the whole body: the fingerprint needs it */
  size_t body_len, body_cap;
  resil_idem_txn *txn;       /* the claim (RUN with a key) until finished */
  int has_key;
  char key[RESIL_IDEM_KEY_MAX + 1]; /* the parsed Idempotency-Key */
  char scope[RESIL__FS_SCOPE_SIZE];
} resil__fs_order_req;

/* Returns 0, or -1 (ENOMEM). */
int resil__fs_orders_init(resil__fs_orders *o);
void resil__fs_orders_destroy(resil__fs_orders *o); /* after _init only */
/* Step 2: keep n more body bytes (the caller enforces max_body). Returns
 * 0, or -1 (ENOMEM). */
int resil__fs_order_body(resil__fs_order_req *o, const char *data, size_t n);
/* Step 3: ask the idempotency layer about this request (target: path and
 * query as received). Returns 1 for RUN: call resil__fs_order_run when any
 * wait is over; 0 with *code and *resp (NULL if out of memory) set to the
 * replay or rejection to send; -1 when the request could not be processed
 * (nothing was claimed: answer 500). */
int resil__fs_order_begin(struct resil_faultserver *s, struct MHD_Connection *conn,
                          const char *method, const char *target, resil__fs_order_req *o,
                          unsigned *code, struct MHD_Response **resp);
/* The handler: create the order, store the 201 in the idempotency store
 * and return it to send. NULL when out of memory: then either nothing was
 * created and the claim is released, or the order exists and its answer is
 * stored (a retry replays it); answer 500 either way. */
struct MHD_Response *resil__fs_order_run(struct resil_faultserver *s, resil__fs_order_req *o);
/* Free what the request holds; a claim never finished is released (the
 * handler did not run, so a retry may). */
void resil__fs_order_req_clear(resil__fs_order_req *o);

/* ---- faultserver.c: the server --------------------------------------------- */

struct resil_faultserver {
  resil_faultserver_config cfg; /* cfg.listen is not kept */
  struct MHD_Daemon *daemon;
  resil__fs_timer timer;
  int timer_started;
  resil__fs_keystore *keys;
  pthread_mutex_t rng_mu; /* guards rng */
  resil_rng rng;
  resil_ns started;          /* monotonic time at start: the outage origin */
  _Atomic uint64_t requests; /* answered or dropped */
  /* cfg.idempotent: the store (cfg.store_url is not kept), the idempotency
   * layer on it, and the orders created */
  resil_store *store;
  resil_idem *idem;
  resil__fs_orders orders;
  int orders_ready;
  uint16_t port;
  char url[64];
};

/* Which global fault applies to a request arriving now. */
typedef enum resil__fs_fault {
  RESIL__FS_FAULT_NONE = 0,
  RESIL__FS_FAULT_OUTAGE,
  RESIL__FS_FAULT_RATE
} resil__fs_fault;

/* Decide the global fault for a request arriving now; for an outage,
 * *outage_left is the time until the window ends. Thread-safe. */
resil__fs_fault resil__fs_global_fault(resil_faultserver *s, resil_ns *outage_left);
/* For an injected failure of POST /orders: does it strike after the order
 * was created (1, with probability lost_response_rate) or before (0)?
 * Thread-safe. */
int resil__fs_lost_response(resil_faultserver *s);
resil_ns resil__fs_now(void); /* CLOCK_MONOTONIC */

/* ---- routes.c: the MHD callbacks ------------------------------------------- */

/* cls is the resil_faultserver. The URI log callback allocates the request
 * state and keeps the request target as received (path and query), which
 * the access handler only gets split and decoded. */
void *resil__fs_uri_log(void *cls, const char *uri, struct MHD_Connection *conn);
enum MHD_Result resil__fs_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size,
                                 void **req_cls);
void resil__fs_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe);
/* The timer's wake function: resume the connection of a delayed request. */
void resil__fs_wake(void *item, int aborted);

#endif
