/* A small Redis connection for the fleet modules (redis_budget.c,
 * redis_circuit.c): one connection, calls serialized by a mutex, short
 * timeouts, and after a failure no new attempt for `down_ms`, so a dead
 * Redis costs one timeout per second, not one per call. Internal. */
#ifndef RESIL_FLEET_REDIS_CONN_H
#define RESIL_FLEET_REDIS_CONN_H

#include <hiredis.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>

#include "resil/error.h"
#include "resil/time.h"

typedef struct resil__fleet_conn {
  pthread_mutex_t mu;
  redisContext *c;  /* NULL when disconnected */
  pid_t pid;        /* the opener: a connection never crosses fork() */
  char host[256], pass[256], user[128], prefix[128];
  int port, db;
  int connect_ms, timeout_ms, down_ms;
  resil_ns down_until; /* monotonic; no attempt before it */
  char err[256];       /* the last failure, for the log */
  char where[300];     /* host:port/db, never the password */
} resil__fleet_conn;

/* Parse redis://[[user]:pass@]host[:port][/db][?prefix=P&connect_timeout=MS
 * &timeout=MS] (defaults 6379, db 0, "resil:", 100 ms, 100 ms) and set up
 * the connection (lazily connected). RESIL_EINVAL with err set. */
resil_err resil__fleet_conn_init(resil__fleet_conn *fc, const char *url, char *err, size_t errlen);
void resil__fleet_conn_free(resil__fleet_conn *fc);

/* Run a script: EVALSHA sha, EVAL src when the server answers NOSCRIPT.
 * sha is the caller's cache of the script id: "" at first, filled (under
 * the connection's lock) by SCRIPT LOAD.
 * argv[0..nkeys-1] are the keys, the rest arguments. *out gets a reply that
 * is not an error (free it with freeReplyObject); otherwise RESIL_ESTORE
 * (Redis failed or is in its down interval; fc->err says why). */
resil_err resil__fleet_conn_eval(resil__fleet_conn *fc, char sha[41], const char *src, int nkeys,
                                 int argc, const char **argv, redisReply **out);

/* The last failure (copied under the lock). */
void resil__fleet_conn_error(resil__fleet_conn *fc, char *buf, size_t len);

#endif
