/* The redis:// store: one Redis server (or a primary with replicas) shared
 * by any number of processes and hosts. See docs/stores.md.
 *
 * URL. redis://[[user]:pass@]host[:port][/db][?prefix=P&connect_timeout=MS
 * &timeout=MS]; the user part and the prefix may use %XX escapes. Defaults:
 * port 6379, db 0, prefix "resil:", connect_timeout 2000 ms, timeout (per
 * command) 5000 ms. rediss:// (TLS) is recognised and refused.
 *
 * Data. One hash per (scope, key) at
 *   PREFIX <decimal length of scope> ":" SCOPE KEY
 * so ("ab", "c") and ("a", "bc") never meet, with the fields state
 * ("claimed" | "completed"), fingerprint (32 bytes), token (decimal),
 * lease_expires_ns (claimed), status, headers, body, expires_at_ns
 * (completed). Times are nanoseconds since the epoch written as exactly 19
 * decimal digits.
 *
 * Time. Every decision uses the store's injected wall clock: the caller
 * passes "now" and the deadlines to the scripts, which compare them as
 * decimal strings (Lua numbers are doubles and would lose nanoseconds).
 * Redis's own expiry only reclaims memory: each hash gets PEXPIRE of its
 * remaining lease or TTL *by the caller's clock*, plus REAL_EXPIRY_MARGIN,
 * so Redis never drops a record the caller still counts as live, and a fake
 * clock in the past or the future does not make Redis drop anything early.
 *
 * Atomicity. claim, complete and release are each one Lua script (Redis
 * runs a script with nothing else in between), loaded with SCRIPT LOAD at
 * open and run with EVALSHA, falling back to EVAL when the server answers
 * NOSCRIPT (restarted, SCRIPT FLUSH, failover to a replica that never saw
 * the load). purge walks PREFIX with SCAN and lets a script delete the
 * expired hashes of each batch.
 *
 * Connections. A small pool: a call takes an idle connection or opens one,
 * so each concurrently calling thread has its own, and puts it back
 * afterwards (at most POOL_IDLE idle ones are kept). A call whose
 * connection fails (server restarted, CLIENT KILL, idle timeout, network)
 * reconnects once and sends the command again with a "retry" flag, with the
 * same token: if the first attempt reached Redis and only its answer was
 * lost, the script recognises its own token and answers as if it had been
 * the first time. Anything else is RESIL_ESTORE: fail closed. */
#define _GNU_SOURCE
#include <errno.h>
#include <hiredis.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>

#include "core/internal.h"
#include "resil/store.h"
#include "store/internal.h"


#define DEFAULT_PORT 6379
#define DEFAULT_PREFIX "resil:"
#define DEFAULT_CONNECT_MS 2000
#define DEFAULT_TIMEOUT_MS 5000
#define PREFIX_MAX 200
#define POOL_IDLE 32
#define SCAN_COUNT "500" /* keys SCAN looks at per call */
/* How much longer Redis keeps a hash than the caller's clock says it lives:
 * covers the caller's clock being stepped back or running slow against the
 * server's (NTP slews up to 0.05 %: 43 s a day), and the request's time in
 * flight. Redis may drop a claim this long after its lease ended; until
 * then a late holder can still complete it (like purge() deleting it). */
#define REAL_EXPIRY_MARGIN_MS (10 * 60 * 1000LL)

/* ---- the scripts ---------------------------------------------------------------
 * Times are 19-digit strings; le() compares two of them exactly, as two
 * halves that each fit a double. */
#define LUA_TIME                                                                        \
  "local function le(a, b)\n"                                                          \
  "  local ah, bh = tonumber(string.sub(a, 1, 10)), tonumber(string.sub(b, 1, 10))\n"  \
  "  if ah ~= bh then return ah < bh end\n"                                            \
  "  return tonumber(string.sub(a, 11)) <= tonumber(string.sub(b, 11))\n"              \
  "end\n"                                                                              \
  "local function is_time(t)\n"                                                        \
  "  return type(t) == 'string' and #t == 19 and not string.find(t, '%D')\n"          \
  "end\n"

/* KEYS[1] the hash; ARGV fingerprint, token, now, lease_expires, pexpire
 * ms, retry. Answers {code, ...}: 0 claimed {0, lease_expires}, 1 in
 * progress {1, lease_expires}, 2 replay {2, status, headers, body},
 * 3 mismatch, 4 the expired holder had this very token (draw another),
 * 5 the hash is malformed. */
static const char CLAIM_LUA[] =
    LUA_TIME
    "local h = redis.call('HMGET', KEYS[1], 'state', 'fingerprint', 'token',\n"
    "                     'lease_expires_ns', 'expires_at_ns')\n"
    "if h[1] then\n"
    "  local dl\n"
    "  if h[1] == 'claimed' then dl = h[4] elseif h[1] == 'completed' then dl = h[5] end\n"
    "  if not is_time(dl) or not h[2] or not h[3] then return {5} end\n"
    "  if not le(dl, ARGV[3]) then\n"
    "    if h[2] ~= ARGV[1] then return {3} end\n"
    "    if h[1] == 'claimed' then\n"
    "      if ARGV[6] == '1' and h[3] == ARGV[2] then return {0, dl} end\n"
    "      return {1, dl}\n"
    "    end\n"
    "    local r = redis.call('HMGET', KEYS[1], 'status', 'headers', 'body')\n"
    "    return {2, r[1], r[2], r[3]}\n"
    "  end\n"
    "  if h[3] == ARGV[2] then return {4} end\n"
    "end\n"
    "redis.call('DEL', KEYS[1])\n"
    "redis.call('HSET', KEYS[1], 'state', 'claimed', 'fingerprint', ARGV[1],\n"
    "           'token', ARGV[2], 'lease_expires_ns', ARGV[4])\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[5])\n"
    "return {0, ARGV[4]}\n";

/* KEYS[1]; ARGV token, status, headers, body, expires_at, pexpire ms,
 * retry. 1 if stored (or, on a retry, already stored by this token). */
static const char COMPLETE_LUA[] =
    "local h = redis.call('HMGET', KEYS[1], 'state', 'token')\n"
    "if h[2] ~= ARGV[1] then return 0 end\n"
    "if h[1] == 'claimed' then\n"
    "  redis.call('HDEL', KEYS[1], 'lease_expires_ns')\n"
    "  redis.call('HSET', KEYS[1], 'state', 'completed', 'status', ARGV[2],\n"
    "             'headers', ARGV[3], 'body', ARGV[4], 'expires_at_ns', ARGV[5])\n"
    "  redis.call('PEXPIRE', KEYS[1], ARGV[6])\n"
    "  return 1\n"
    "end\n"
    "if h[1] == 'completed' and ARGV[7] == '1' then return 1 end\n"
    "return 0\n";

/* KEYS[1]; ARGV token, retry. 1 if released (or, on a retry, gone). */
static const char RELEASE_LUA[] =
    "local h = redis.call('HMGET', KEYS[1], 'state', 'token')\n"
    "if h[1] == 'claimed' and h[2] == ARGV[1] then\n"
    "  redis.call('DEL', KEYS[1])\n"
    "  return 1\n"
    "end\n"
    "if ARGV[2] == '1' and not h[1] then return 1 end\n"
    "return 0\n";

/* KEYS: candidates from SCAN; ARGV now. Deletes the expired ones (never a
 * hash it does not understand) and answers how many. */
static const char PURGE_LUA[] =
    LUA_TIME
    "local n = 0\n"
    "for _, k in ipairs(KEYS) do\n"
    "  local h = redis.pcall('HMGET', k, 'state', 'lease_expires_ns', 'expires_at_ns')\n"
    "  if type(h) == 'table' and not h.err then\n"
    "    local dl\n"
    "    if h[1] == 'claimed' then dl = h[2] elseif h[1] == 'completed' then dl = h[3] end\n"
    "    if is_time(dl) and le(dl, ARGV[1]) then\n"
    "      redis.call('DEL', k)\n"
    "      n = n + 1\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return n\n";

enum { S_CLAIM, S_COMPLETE, S_RELEASE, S_PURGE, S_COUNT };

static const char *const script_src[S_COUNT] = {CLAIM_LUA, COMPLETE_LUA, RELEASE_LUA, PURGE_LUA};

typedef struct redis_store {
  resil_store base; /* first: a resil_store * is a redis_store * */
  pthread_mutex_t mu;     /* the pool */
  pthread_mutex_t err_mu; /* base.errmsg */
  int mu_ok, err_mu_ok;
  redisContext *idle[POOL_IDLE];
  int n_idle;
  pid_t pid;
  char *host, *user, *pass, *prefix;
  size_t prefix_len;
  int port, db;
  struct timeval connect_tv, tv;
  int timeout_ms;
  char sha[S_COUNT][41];
  char where[96]; /* "host:port/db", for messages; never the password */
} redis_store;

/* ---- errors ---------------------------------------------------------------------- */

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 2, 3)))
#endif
static resil_err fail(redis_store *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  resil_err e = resil__store_vfail(&s->base, &s->err_mu, s->where, fmt, ap);
  va_end(ap);
  return e;
}

/* What a broken connection says, in words. */
static void conn_error(const redis_store *s, const redisContext *c, char *buf, size_t len) {
  if (c == NULL) {
    snprintf(buf, len, "out of memory");
  } else if (c->err == REDIS_ERR_IO && (strstr(c->errstr, "temporarily unavailable") != NULL ||
                                        strstr(c->errstr, "timed out") != NULL)) {
    /* hiredis puts strerror(EAGAIN) there when SO_RCVTIMEO expires. */
    snprintf(buf, len, "no answer within timeout=%dms", s->timeout_ms);
  } else if (c->err == REDIS_ERR_EOF) {
    snprintf(buf, len, "the server closed the connection");
  } else {
    snprintf(buf, len, "%.150s", c->errstr[0] ? c->errstr : "connection failed");
  }
}

/* ---- connections ----------------------------------------------------------------- */

static redisReply *command(redisContext *c, int argc, const char **argv, const size_t *lens) {
  return redisCommandArgv(c, argc, argv, lens);
}

static int reply_is_error(const redisReply *r) { return r != NULL && r->type == REDIS_REPLY_ERROR; }

/* A new, authenticated connection with the database selected; NULL with the
 * message set. */
static redisContext *connect_one(redis_store *s) {
  char why[160];
  redisContext *c = redisConnectWithTimeout(s->host, s->port, s->connect_tv);
  if (c == NULL || c->err) {
    conn_error(s, c, why, sizeof why);
    if (c != NULL && c->err == REDIS_ERR_IO &&
        (strstr(c->errstr, "timed out") || strstr(c->errstr, "in progress")))
      snprintf(why, sizeof why, "no connection within connect_timeout=%lldms",
               (long long)s->connect_tv.tv_sec * 1000 + s->connect_tv.tv_usec / 1000);
    fail(s, "cannot connect: %s", why);
    if (c) redisFree(c);
    return NULL;
  }
  if (redisSetTimeout(c, s->tv) != REDIS_OK) {
    fail(s, "cannot set the command timeout");
    redisFree(c);
    return NULL;
  }
  redisEnableKeepAlive(c);
  const char *argv[3];
  size_t lens[3];
  int argc = 0;
  if (s->pass != NULL) {
    argv[argc++] = "AUTH";
    if (s->user != NULL) argv[argc++] = s->user;
    argv[argc++] = s->pass;
    for (int i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
    redisReply *r = command(c, argc, argv, lens);
    if (r == NULL || reply_is_error(r)) {
      if (r == NULL) conn_error(s, c, why, sizeof why);
      else snprintf(why, sizeof why, "%.150s", r->str);
      fail(s, "cannot authenticate: %s", why);
      if (r) freeReplyObject(r);
      redisFree(c);
      return NULL;
    }
    freeReplyObject(r);
  }
  if (s->db != 0) {
    char db[16];
    snprintf(db, sizeof db, "%d", s->db);
    argv[0] = "SELECT";
    argv[1] = db;
    lens[0] = 6;
    lens[1] = strlen(db);
    redisReply *r = command(c, 2, argv, lens);
    if (r == NULL || reply_is_error(r)) {
      if (r == NULL) conn_error(s, c, why, sizeof why);
      else snprintf(why, sizeof why, "%.150s", r->str);
      fail(s, "cannot select database %d: %s", s->db, why);
      if (r) freeReplyObject(r);
      redisFree(c);
      return NULL;
    }
    freeReplyObject(r);
  }
  return c;
}

/* A store belongs to its opener: a connection must not cross fork(). */
static int wrong_process(redis_store *s) {
  if (getpid() == s->pid) return 0;
  fail(s, "used in a child process after fork(); open a store in the child");
  return 1;
}

/* An idle connection, or a new one; NULL with the message set. */
static redisContext *pool_get(redis_store *s) {
  redisContext *c = NULL;
  pthread_mutex_lock(&s->mu);
  if (s->n_idle > 0) c = s->idle[--s->n_idle];
  pthread_mutex_unlock(&s->mu);
  return c != NULL ? c : connect_one(s);
}

/* Give a healthy connection back (a broken one is closed). */
static void pool_put(redis_store *s, redisContext *c) {
  if (c == NULL) return;
  if (c->err == 0) {
    pthread_mutex_lock(&s->mu);
    if (s->n_idle < POOL_IDLE) {
      s->idle[s->n_idle++] = c;
      c = NULL;
    }
    pthread_mutex_unlock(&s->mu);
  }
  if (c != NULL) redisFree(c);
}

/* ---- running a script -------------------------------------------------------------- */

typedef struct call {
  int script;
  int nkeys, nargs;  /* what follows "EVALSHA sha numkeys": keys, then arguments */
  const char **argv; /* argv[0..2] are filled here; the caller's start at 3 */
  size_t *lens;
  int retry_arg;     /* index in argv of the "0"/"1" retry flag, or -1 */
} call;

/* Run the script once on c: EVALSHA, and EVAL if the server does not have
 * it. NULL when the connection failed (c->err says why). */
static redisReply *eval_on(redis_store *s, redisContext *c, const call *k) {
  char nkeys[24];
  snprintf(nkeys, sizeof nkeys, "%d", k->nkeys);
  k->argv[0] = "EVALSHA";
  k->argv[1] = s->sha[k->script];
  k->argv[2] = nkeys;
  k->lens[0] = 7;
  k->lens[1] = 40;
  k->lens[2] = strlen(nkeys);
  redisReply *r = command(c, k->nargs + 3, k->argv, k->lens);
  if (reply_is_error(r) && strncmp(r->str, "NOSCRIPT", 8) == 0) {
    freeReplyObject(r);
    k->argv[0] = "EVAL";
    k->argv[1] = script_src[k->script];
    k->lens[0] = 4;
    k->lens[1] = strlen(script_src[k->script]);
    r = command(c, k->nargs + 3, k->argv, k->lens);
  }
  return r;
}

/* Run a call on a pooled connection, reconnecting once if the connection
 * fails; the second attempt has its retry flag set. *out gets a reply that
 * is not an error; otherwise RESIL_ESTORE with the message set. */
static resil_err eval(redis_store *s, call *k, const char *op, const char *key, redisReply **out) {
  *out = NULL;
  redisContext *c = pool_get(s);
  if (c == NULL) return RESIL_ESTORE; /* message set */
  char why[160];
  for (int attempt = 0;; attempt++) {
    if (k->retry_arg >= 0) {
      k->argv[k->retry_arg] = attempt ? "1" : "0";
      k->lens[k->retry_arg] = 1;
    }
    redisReply *r = eval_on(s, c, k);
    if (r != NULL && !reply_is_error(r)) {
      pool_put(s, c);
      *out = r;
      return RESIL_OK;
    }
    if (r != NULL) { /* an error answer: the connection is fine */
      fail(s, "cannot %s key '%.60s': %.120s", op, key, r->str);
      freeReplyObject(r);
      pool_put(s, c);
      return RESIL_ESTORE;
    }
    conn_error(s, c, why, sizeof why);
    redisFree(c);
    if (attempt > 0) return fail(s, "cannot %s key '%.60s': %s", op, key, why);
    c = connect_one(s);
    if (c == NULL) return RESIL_ESTORE; /* message set */
  }
}

/* ---- keys, times, tokens ------------------------------------------------------------ */

/* PREFIX <len(scope)> ":" SCOPE KEY, in the store's allocator. */
static char *make_key(redis_store *s, const char *scope, const char *key, size_t *len) {
  size_t sl = strlen(scope), kl = strlen(key);
  char num[24];
  int nl = snprintf(num, sizeof num, "%zu:", sl);
  size_t total = s->prefix_len + (size_t)nl + sl + kl;
  char *k = resil__alloc(&s->base.alloc, total + 1);
  if (k == NULL) return NULL;
  char *p = k;
  memcpy(p, s->prefix, s->prefix_len);
  p += s->prefix_len;
  memcpy(p, num, (size_t)nl);
  p += nl;
  memcpy(p, scope, sl);
  p += sl;
  memcpy(p, key, kl);
  p[kl] = '\0';
  *len = total;
  return k;
}

/* Exactly 19 digits (times before the epoch count as the epoch). */
static void fmt_time(char buf[20], resil_ns t) {
  snprintf(buf, 20, "%019" PRId64, t < 0 ? (int64_t)0 : (int64_t)t);
}

static int parse_time(const char *p, size_t len, resil_ns *out) {
  if (len != 19) return -1;
  resil_ns v = 0;
  for (size_t i = 0; i < len; i++) {
    if (p[i] < '0' || p[i] > '9') return -1;
    unsigned d = (unsigned)(p[i] - '0');
    if (v > (RESIL_NS_MAX - (resil_ns)d) / 10) return -1;
    v = v * 10 + (resil_ns)d;
  }
  *out = v;
  return 0;
}

/* PEXPIRE for a deadline: the time left by the caller's clock, rounded up
 * to ms, plus the margin; capped far below Redis's limits. */
static void fmt_pexpire(char buf[24], resil_ns now, resil_ns deadline) {
  resil_ns left = resil_ns_sub(deadline, now);
  long long ms = (long long)(left / RESIL_MSEC) + (left % RESIL_MSEC != 0);
  const long long cap = 100000000000000LL; /* about 3000 years */
  if (ms > cap - REAL_EXPIRY_MARGIN_MS) ms = cap - REAL_EXPIRY_MARGIN_MS;
  snprintf(buf, 24, "%lld", ms + REAL_EXPIRY_MARGIN_MS);
}

static uint64_t new_token(void) {
  for (;;) {
    uint64_t t = 0;
    if (getrandom(&t, sizeof t, 0) != (ssize_t)sizeof t) {
      /* No entropy source: time and address bits, still never 0. */
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      t = ((uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull) ^ (uint64_t)ts.tv_sec ^
          (uint64_t)(uintptr_t)&ts;
    }
    t &= (uint64_t)INT64_MAX;
    if (t != 0) return t;
  }
}

static int is_str(const redisReply *r) {
  return r != NULL && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

/* ---- the protocol --------------------------------------------------------------------- */

static resil_err redis_claim(resil_store *bs, const char *scope, const char *key,
                             const uint8_t fingerprint[RESIL_FINGERPRINT_SIZE], resil_ns lease,
                             resil_claim_result *out) {
  redis_store *s = (redis_store *)bs;
  if (wrong_process(s)) return RESIL_ESTORE;
  size_t klen;
  char *rkey = make_key(s, scope, key, &klen);
  if (rkey == NULL) {
    fail(s, "cannot claim: out of memory");
    return RESIL_ENOMEM;
  }
  resil_err rc = RESIL_ESTORE;
  memset(out, 0, sizeof *out);
  /* Tries: a new token only when the expired holder had the same one. */
  for (int tries = 0; tries < 4; tries++) {
    /* Read as late as possible: the script runs right after. */
    resil_ns now = bs->clock.now(bs->clock.ud);
    resil_ns lease_expires = resil_ns_add(now, lease);
    char tok[24], now_s[20], exp_s[20], px[24];
    uint64_t token = new_token();
    snprintf(tok, sizeof tok, "%" PRIu64, token);
    fmt_time(now_s, now);
    fmt_time(exp_s, lease_expires);
    fmt_pexpire(px, now, lease_expires);
    const char *argv[3 + 7] = {NULL, NULL, NULL, rkey, (const char *)fingerprint,
                               tok, now_s, exp_s, px, "0"};
    size_t lens[3 + 7] = {0, 0, 0, klen, RESIL_FINGERPRINT_SIZE, strlen(tok), 19, 19, strlen(px), 1};
    call k = {S_CLAIM, 1, 7, argv, lens, 9};
    redisReply *r;
    rc = eval(s, &k, "claim", key, &r);
    if (rc != RESIL_OK) break;
    long long code = -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
        r->element[0]->type == REDIS_REPLY_INTEGER)
      code = r->element[0]->integer;
    resil_ns dl = 0;
    if ((code == 0 || code == 1) &&
        (r->elements != 2 || !is_str(r->element[1]) ||
         parse_time(r->element[1]->str, r->element[1]->len, &dl) != 0))
      code = -1;
    if (code == 2 && (r->elements != 4 || !is_str(r->element[1]) || !is_str(r->element[2]) ||
                      !is_str(r->element[3])))
      code = 5;
    switch (code) {
      case 0:
        out->status = RESIL_CLAIM_CLAIMED;
        out->token = token;
        out->lease_expires = dl; /* ours; on a retry, the first attempt's */
        break;
      case 1:
        out->status = RESIL_CLAIM_IN_PROGRESS;
        out->lease_expires = dl;
        break;
      case 2: {
        char sbuf[16];
        size_t sl = r->element[1]->len;
        char *end = NULL;
        long status = 0;
        if (sl > 0 && sl < sizeof sbuf) {
          memcpy(sbuf, r->element[1]->str, sl);
          sbuf[sl] = '\0';
          errno = 0;
          status = strtol(sbuf, &end, 10);
        }
        if (end == NULL || *end != '\0' || errno != 0 || status < INT_MIN || status > INT_MAX) {
          rc = fail(s, "cannot claim: the stored status of key '%.100s' is malformed", key);
          break;
        }
        rc = resil__store_replay(out, &bs->alloc, (int)status, r->element[2]->str,
                                 r->element[2]->len, r->element[3]->str, r->element[3]->len);
        if (rc == RESIL_EPARSE)
          rc = fail(s, "cannot claim: the stored headers of key '%.100s' are malformed", key);
        else if (rc == RESIL_ENOMEM)
          fail(s, "cannot claim: out of memory copying the stored response");
        break;
      }
      case 3:
        out->status = RESIL_CLAIM_MISMATCH;
        break;
      case 4:
        freeReplyObject(r);
        continue;
      case 5:
        rc = fail(s, "cannot claim: the record of key '%.100s' is malformed", key);
        break;
      default:
        rc = fail(s, "cannot claim key '%.60s': unexpected answer from the script", key);
        break;
    }
    freeReplyObject(r);
    goto done;
  }
  if (rc == RESIL_OK) rc = fail(s, "cannot claim key '%.60s': no fresh token", key);
done:
  if (rc != RESIL_OK) resil_claim_result_clear(out);
  resil__free(&bs->alloc, rkey);
  return rc;
}

static resil_err not_owner(redis_store *s, const char *op, const char *key) {
  return fail(s,
              "cannot %s: the token does not own key '%.60s' (completed, released, purged, "
              "expired in Redis, or claimed again after the lease expired)",
              op, key);
}

static resil_err redis_complete(resil_store *bs, const char *scope, const char *key,
                                uint64_t token, const resil_stored_response *resp, resil_ns ttl) {
  redis_store *s = (redis_store *)bs;
  if (wrong_process(s)) return RESIL_ESTORE;
  size_t hl;
  if (resil__store_headers_size(resp->headers, resp->n_headers, &hl) != RESIL_OK) {
    fail(s, "cannot complete: the response headers are too large");
    return RESIL_EINVAL;
  }
  size_t klen;
  char *rkey = make_key(s, scope, key, &klen);
  unsigned char *blob = resil__alloc(&bs->alloc, hl + 1);
  if (rkey == NULL || blob == NULL) {
    resil__free(&bs->alloc, rkey);
    resil__free(&bs->alloc, blob);
    fail(s, "cannot complete: out of memory");
    return RESIL_ENOMEM;
  }
  resil__store_headers_encode(resp->headers, resp->n_headers, blob);
  resil_ns now = bs->clock.now(bs->clock.ud);
  resil_ns expires = resil_ns_add(now, ttl);
  char tok[24], status[16], exp_s[20], px[24];
  snprintf(tok, sizeof tok, "%" PRIu64, token);
  snprintf(status, sizeof status, "%d", resp->status);
  fmt_time(exp_s, expires);
  fmt_pexpire(px, now, expires);
  const char *argv[3 + 8] = {NULL, NULL, NULL, rkey, tok, status, (const char *)blob,
                             resp->body_len ? resp->body : "", exp_s, px, "0"};
  size_t lens[3 + 8] = {0, 0, 0, klen, strlen(tok), strlen(status), hl, resp->body_len, 19,
                        strlen(px), 1};
  call k = {S_COMPLETE, 1, 8, argv, lens, 10};
  redisReply *r;
  resil_err rc = eval(s, &k, "complete", key, &r);
  if (rc == RESIL_OK) {
    if (r->type != REDIS_REPLY_INTEGER)
      rc = fail(s, "cannot complete key '%.60s': unexpected answer from the script", key);
    else if (r->integer != 1)
      rc = not_owner(s, "complete", key);
    freeReplyObject(r);
  }
  resil__free(&bs->alloc, blob);
  resil__free(&bs->alloc, rkey);
  return rc;
}

static resil_err redis_release(resil_store *bs, const char *scope, const char *key,
                               uint64_t token) {
  redis_store *s = (redis_store *)bs;
  if (wrong_process(s)) return RESIL_ESTORE;
  size_t klen;
  char *rkey = make_key(s, scope, key, &klen);
  if (rkey == NULL) {
    fail(s, "cannot release: out of memory");
    return RESIL_ENOMEM;
  }
  char tok[24];
  snprintf(tok, sizeof tok, "%" PRIu64, token);
  const char *argv[3 + 3] = {NULL, NULL, NULL, rkey, tok, "0"};
  size_t lens[3 + 3] = {0, 0, 0, klen, strlen(tok), 1};
  call k = {S_RELEASE, 1, 3, argv, lens, 5};
  redisReply *r;
  resil_err rc = eval(s, &k, "release", key, &r);
  if (rc == RESIL_OK) {
    if (r->type != REDIS_REPLY_INTEGER)
      rc = fail(s, "cannot release key '%.60s': unexpected answer from the script", key);
    else if (r->integer != 1)
      rc = not_owner(s, "release", key);
    freeReplyObject(r);
  }
  resil__free(&bs->alloc, rkey);
  return rc;
}

/* SCAN's MATCH pattern for every record under the prefix: the prefix with
 * glob characters escaped, then a digit (the scope length). */
static char *scan_pattern(redis_store *s) {
  char *p = resil__alloc(&s->base.alloc, 2 * s->prefix_len + 8);
  if (p == NULL) return NULL;
  char *w = p;
  for (size_t i = 0; i < s->prefix_len; i++) {
    char c = s->prefix[i];
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') *w++ = '\\';
    *w++ = c;
  }
  memcpy(w, "[0-9]*", 7);
  return p;
}

static resil_err redis_purge(resil_store *bs, uint64_t *purged) {
  redis_store *s = (redis_store *)bs;
  if (wrong_process(s)) return RESIL_ESTORE;
  char *pattern = scan_pattern(s);
  if (pattern == NULL) {
    fail(s, "cannot purge: out of memory");
    return RESIL_ENOMEM;
  }
  resil_ns now = bs->clock.now(bs->clock.ud);
  char now_s[20];
  fmt_time(now_s, now);
  uint64_t n = 0;
  resil_err rc = RESIL_OK;
  redisContext *c = pool_get(s);
  if (c == NULL) rc = RESIL_ESTORE;
  char cursor[32] = "0";
  int reconnected = 0;
  /* SCAN visits every key present throughout at least once and ends when the
   * cursor is back to 0; a key seen twice is deleted once. */
  while (rc == RESIL_OK) {
    const char *argv[6] = {"SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT};
    size_t lens[6] = {4, strlen(cursor), 5, strlen(pattern), 5, strlen(SCAN_COUNT)};
    redisReply *r = command(c, 6, argv, lens);
    if (r == NULL) {
      char why[160];
      conn_error(s, c, why, sizeof why);
      redisFree(c);
      c = NULL;
      if (reconnected) {
        rc = fail(s, "cannot purge: %s", why);
        break;
      }
      reconnected = 1;
      if ((c = connect_one(s)) == NULL) rc = RESIL_ESTORE;
      continue; /* the same cursor again: SCAN cursors survive reconnects */
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || !is_str(r->element[0]) ||
        r->element[1]->type != REDIS_REPLY_ARRAY || r->element[0]->len >= sizeof cursor) {
      rc = fail(s, "cannot purge: %s",
                r->type == REDIS_REPLY_ERROR ? r->str : "unexpected answer to SCAN");
      freeReplyObject(r);
      break;
    }
    memcpy(cursor, r->element[0]->str, r->element[0]->len);
    cursor[r->element[0]->len] = '\0';
    redisReply *keys = r->element[1];
    if (keys->elements > 0) {
      /* One script call for the whole batch: EVALSHA sha n KEY... now. */
      size_t m = keys->elements;
      const char **kargv = resil__alloc(&bs->alloc, (m + 4) * sizeof *kargv);
      size_t *klens = resil__alloc(&bs->alloc, (m + 4) * sizeof *klens);
      if (kargv == NULL || klens == NULL || m > INT_MAX - 4) {
        fail(s, "cannot purge: out of memory");
        rc = RESIL_ENOMEM;
      } else {
        for (size_t x = 0; x < m; x++) {
          const redisReply *e = keys->element[x];
          kargv[3 + x] = is_str(e) ? e->str : "";
          klens[3 + x] = is_str(e) ? e->len : 0;
        }
        kargv[3 + m] = now_s;
        klens[3 + m] = 19;
        call k = {S_PURGE, (int)m, (int)m + 1, kargv, klens, -1};
        redisReply *pr = eval_on(s, c, &k);
        if (pr == NULL) {
          char why[160];
          conn_error(s, c, why, sizeof why);
          rc = fail(s, "cannot purge: %s", why);
        } else if (pr->type != REDIS_REPLY_INTEGER) {
          rc = fail(s, "cannot purge: %.150s",
                    pr->type == REDIS_REPLY_ERROR ? pr->str : "unexpected answer from the script");
        } else {
          n += (uint64_t)pr->integer;
        }
        if (pr) freeReplyObject(pr);
      }
      resil__free(&bs->alloc, kargv);
      resil__free(&bs->alloc, klens);
    }
    freeReplyObject(r);
    if (strcmp(cursor, "0") == 0) break;
  }
  pool_put(s, c);
  resil__free(&bs->alloc, pattern);
  if (purged) *purged = rc == RESIL_OK ? n : 0;
  return rc;
}

/* ---- open and close ------------------------------------------------------------------ */

static void destroy(redis_store *s) {
  for (int i = 0; i < s->n_idle; i++) redisFree(s->idle[i]);
  if (s->mu_ok) pthread_mutex_destroy(&s->mu);
  if (s->err_mu_ok) pthread_mutex_destroy(&s->err_mu);
  resil_allocator a = s->base.alloc;
  resil__free(&a, s->host);
  resil__free(&a, s->user);
  if (s->pass) {
    /* Do not leave the password in freed memory. */
    volatile char *p = s->pass;
    while (*p) *p++ = 0;
  }
  resil__free(&a, s->pass);
  resil__free(&a, s->prefix);
  resil__free(&a, s);
}

static void redis_close(resil_store *bs) { destroy((redis_store *)bs); }

static const resil_store_vtab redis_vtab = {
    1, "redis", redis_claim, redis_complete, redis_release, redis_purge, redis_close,
};

/* ---- the URL ------------------------------------------------------------------------- */

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = resil__ascii_lower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* A decoded copy of [p, p + n) in the store's allocator; NULL and *bad = 1
 * for a bad %XX escape or an escaped NUL (*bad = 0 when out of memory). */
static char *decoded(const resil_allocator *a, const char *p, size_t n, int *bad) {
  *bad = 0;
  char *d = resil__alloc(a, n + 1);
  if (d == NULL) return NULL;
  size_t w = 0;
  for (size_t i = 0; i < n; i++) {
    if (p[i] != '%') {
      d[w++] = p[i];
      continue;
    }
    if (i + 2 >= n) {
      resil__free(a, d);
      *bad = 1;
      return NULL;
    }
    int h = hexval((unsigned char)p[i + 1]), l = h < 0 ? -1 : hexval((unsigned char)p[i + 2]);
    if (h < 0 || l < 0 || (h == 0 && l == 0)) {
      resil__free(a, d);
      *bad = 1;
      return NULL;
    }
    d[w++] = (char)(h * 16 + l);
    i += 2;
  }
  d[w] = '\0';
  return d;
}

static int parse_num(const char *p, size_t n, long long max, long long *out) {
  if (n == 0 || n > 19) return -1;
  long long v = 0;
  for (size_t i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9') return -1;
    v = v * 10 + (p[i] - '0');
    if (v > max) return -1;
  }
  *out = v;
  return 0;
}

typedef struct redis_url {
  char *host, *user, *pass, *prefix;
  long long port, db, connect_ms, timeout_ms;
} redis_url;

static void url_free(const resil_allocator *a, redis_url *u) {
  resil__free(a, u->host);
  resil__free(a, u->user);
  resil__free(a, u->pass);
  resil__free(a, u->prefix);
}

/* Parse after "redis://". RESIL_EINVAL / RESIL_ENOMEM with err set. */
static resil_err parse_url(const resil_allocator *a, const char *rest, redis_url *u, char *err,
                           size_t len) {
  int bad = 0;
  memset(u, 0, sizeof *u);
  u->port = DEFAULT_PORT;
  u->connect_ms = DEFAULT_CONNECT_MS;
  u->timeout_ms = DEFAULT_TIMEOUT_MS;
  size_t auth_len = strcspn(rest, "/?#");
  if (rest[auth_len] == '#') {
    snprintf(err, len, "a redis:// URL has no #fragment");
    return RESIL_EINVAL;
  }
  const char *auth = rest, *at = NULL;
  for (size_t i = 0; i < auth_len; i++)
    if (auth[i] == '@') at = auth + i;
  const char *hp = auth;
  size_t hp_len = auth_len;
  if (at != NULL) {
    size_t ui_len = (size_t)(at - auth);
    const char *colon = memchr(auth, ':', ui_len);
    if (colon == NULL) {
      snprintf(err, len,
               "redis:// user '%.40s' needs a password (redis://USER:PASS@HOST or "
               "redis://:PASS@HOST)",
               ui_len ? "..." : "");
      return RESIL_EINVAL;
    }
    size_t ul = (size_t)(colon - auth);
    if (ul > 0 && (u->user = decoded(a, auth, ul, &bad)) == NULL) goto decode_fail;
    size_t pl = ui_len - ul - 1;
    if (pl == 0) {
      snprintf(err, len, "redis:// URL has an empty password");
      return RESIL_EINVAL;
    }
    if ((u->pass = decoded(a, colon + 1, pl, &bad)) == NULL) goto decode_fail;
    hp = at + 1;
    hp_len = auth_len - ui_len - 1;
  }
  /* host[:port], host may be [v6]. */
  const char *port_p = NULL;
  size_t host_len;
  const char *host_p = hp;
  if (hp_len > 0 && hp[0] == '[') {
    const char *close = memchr(hp, ']', hp_len);
    if (close == NULL) {
      snprintf(err, len, "redis:// URL: unterminated [IPv6 address]");
      return RESIL_EINVAL;
    }
    host_p = hp + 1;
    host_len = (size_t)(close - hp) - 1;
    size_t after = (size_t)(close - hp) + 1;
    if (after < hp_len) {
      if (hp[after] != ':') {
        snprintf(err, len, "redis:// URL: junk after the [IPv6 address]");
        return RESIL_EINVAL;
      }
      port_p = hp + after + 1;
    }
  } else {
    const char *colon = memchr(hp, ':', hp_len);
    host_len = colon ? (size_t)(colon - hp) : hp_len;
    if (colon) port_p = colon + 1;
  }
  if (port_p != NULL) {
    size_t pl = hp_len - (size_t)(port_p - hp);
    if (parse_num(port_p, pl, 65535, &u->port) != 0 || u->port == 0) {
      snprintf(err, len, "redis:// URL: the port must be 1 to 65535, not '%.*s'",
               (int)(pl > 16 ? 16 : pl), port_p);
      return RESIL_EINVAL;
    }
  }
  if (host_len == 0) {
    snprintf(err, len, "redis:// URL needs a host (redis://127.0.0.1:6379/0)");
    return RESIL_EINVAL;
  }
  if ((u->host = decoded(a, host_p, host_len, &bad)) == NULL) goto decode_fail;

  const char *p = rest + auth_len;
  if (*p == '/') {
    p++;
    size_t dl = strcspn(p, "?");
    if (dl > 0 && parse_num(p, dl, INT_MAX, &u->db) != 0) {
      snprintf(err, len, "redis:// URL: the database must be a number, not '%.*s'",
               (int)(dl > 32 ? 32 : dl), p);
      return RESIL_EINVAL;
    }
    p += dl;
  }
  if (*p == '?') {
    unsigned seen = 0;
    p++;
    for (;;) {
      size_t pl = strcspn(p, "&");
      const char *eq = memchr(p, '=', pl);
      if (pl == 0 || eq == p) {
        snprintf(err, len, "empty parameter name in the store URL's query");
        return RESIL_EINVAL;
      }
      size_t nl = eq ? (size_t)(eq - p) : pl;
      if (eq == NULL || eq + 1 == p + pl) {
        snprintf(err, len, "parameter '%.*s' needs a value (%.*s=...)", (int)(nl > 64 ? 64 : nl),
                 p, (int)(nl > 64 ? 64 : nl), p);
        return RESIL_EINVAL;
      }
      const char *v = eq + 1;
      size_t vl = pl - nl - 1;
      unsigned bit;
      long long *num = NULL;
      if (nl == 6 && resil__strncaseeq(p, "prefix", 6)) {
        bit = 1;
      } else if (nl == 15 && resil__strncaseeq(p, "connect_timeout", 15)) {
        bit = 2;
        num = &u->connect_ms;
      } else if (nl == 7 && resil__strncaseeq(p, "timeout", 7)) {
        bit = 4;
        num = &u->timeout_ms;
      } else {
        snprintf(err, len,
                 "unknown parameter '%.*s' for a redis:// store (known: prefix, "
                 "connect_timeout, timeout)",
                 (int)(nl > 64 ? 64 : nl), p);
        return RESIL_EINVAL;
      }
      if (seen & bit) {
        snprintf(err, len, "parameter '%.*s' given twice", (int)nl, p);
        return RESIL_EINVAL;
      }
      seen |= bit;
      if (num != NULL) {
        if (parse_num(v, vl, 2147483647LL, num) != 0 || *num == 0) {
          snprintf(err, len, "%.*s must be milliseconds (1 to 2147483647), not '%.*s'", (int)nl,
                   p, (int)(vl > 64 ? 64 : vl), v);
          return RESIL_EINVAL;
        }
      } else {
        if ((u->prefix = decoded(a, v, vl, &bad)) == NULL) goto decode_fail;
        size_t l = strlen(u->prefix);
        if (l == 0 || l > PREFIX_MAX) {
          snprintf(err, len, "prefix must be 1 to %d bytes", PREFIX_MAX);
          return RESIL_EINVAL;
        }
      }
      p += pl;
      if (*p == '\0') break;
      p++; /* '&' */
    }
  }
  if (u->prefix == NULL) {
    if ((u->prefix = decoded(a, DEFAULT_PREFIX, strlen(DEFAULT_PREFIX), &bad)) == NULL)
      goto decode_fail;
  }
  return RESIL_OK;
decode_fail:
  if (bad) {
    snprintf(err, len, "bad %%XX escape in the redis:// URL");
    return RESIL_EINVAL;
  }
  snprintf(err, len, "redis store: out of memory");
  return RESIL_ENOMEM;
}

/* Load the scripts (SCRIPT LOAD gives each one's SHA-1 for EVALSHA). */
static int load_scripts(redis_store *s, redisContext *c) {
  for (int i = 0; i < S_COUNT; i++) {
    const char *argv[3] = {"SCRIPT", "LOAD", script_src[i]};
    size_t lens[3] = {6, 4, strlen(script_src[i])};
    redisReply *r = command(c, 3, argv, lens);
    if (r == NULL) {
      char why[160];
      conn_error(s, c, why, sizeof why);
      fail(s, "cannot load its scripts: %s", why);
      return -1;
    }
    if (!is_str(r) || r->len != 40) {
      fail(s, "cannot load its scripts: %.150s",
           reply_is_error(r) ? r->str : "unexpected answer to SCRIPT LOAD");
      freeReplyObject(r);
      return -1;
    }
    memcpy(s->sha[i], r->str, 40);
    s->sha[i][40] = '\0';
    freeReplyObject(r);
  }
  return 0;
}

resil_err resil__store_redis_open(resil_store **out, const resil_store_options *o,
                                  const char *url, char *err, size_t errlen) {
  size_t sl = strcspn(url, ":");
  if (sl == 6 && resil__strncaseeq(url, "rediss", 6)) {
    snprintf(err, errlen,
             "rediss:// (Redis over TLS) is not supported by this resil; use redis:// on a "
             "trusted network or a TLS tunnel");
    return RESIL_EUNSUPPORTED;
  }
  if (strncmp(url + sl, "://", 3) != 0) {
    snprintf(err, errlen, "a redis store URL starts with redis:// (redis://HOST:PORT/DB)");
    return RESIL_EINVAL;
  }
  redis_url u;
  resil_err rc = parse_url(&o->alloc, url + sl + 3, &u, err, errlen);
  if (rc != RESIL_OK) {
    url_free(&o->alloc, &u);
    return rc;
  }
  redis_store *s = resil__calloc(&o->alloc, sizeof *s);
  if (s == NULL) {
    url_free(&o->alloc, &u);
    snprintf(err, errlen, "redis store: out of memory");
    return RESIL_ENOMEM;
  }
  s->base.vtab = &redis_vtab;
  s->base.clock = o->clock;
  s->base.alloc = o->alloc;
  s->host = u.host;
  s->user = u.user;
  s->pass = u.pass;
  s->prefix = u.prefix;
  s->prefix_len = strlen(u.prefix);
  s->port = (int)u.port;
  s->db = (int)u.db;
  s->connect_tv.tv_sec = (time_t)(u.connect_ms / 1000);
  s->connect_tv.tv_usec = (suseconds_t)(u.connect_ms % 1000 * 1000);
  s->tv.tv_sec = (time_t)(u.timeout_ms / 1000);
  s->tv.tv_usec = (suseconds_t)(u.timeout_ms % 1000 * 1000);
  s->timeout_ms = (int)u.timeout_ms;
  s->pid = getpid();
  if (strchr(s->host, ':') != NULL)
    snprintf(s->where, sizeof s->where, "[%.60s]:%d/%d", s->host, s->port, s->db);
  else
    snprintf(s->where, sizeof s->where, "%.60s:%d/%d", s->host, s->port, s->db);
  if (pthread_mutex_init(&s->mu, NULL) != 0) {
    snprintf(err, errlen, "redis store %s: cannot create a mutex", s->where);
    destroy(s);
    return RESIL_ESYS;
  }
  s->mu_ok = 1;
  if (pthread_mutex_init(&s->err_mu, NULL) != 0) {
    snprintf(err, errlen, "redis store %s: cannot create a mutex", s->where);
    destroy(s);
    return RESIL_ESYS;
  }
  s->err_mu_ok = 1;
  /* Connect now: an unreachable server is an error at open, not at the
   * first claim. The connection stays in the pool. */
  redisContext *c = connect_one(s);
  if (c == NULL || load_scripts(s, c) != 0) {
    snprintf(err, errlen, "%s", s->base.errmsg);
    if (c) redisFree(c);
    destroy(s);
    return RESIL_ESTORE;
  }
  pool_put(s, c);
  s->base.errmsg[0] = '\0';
  *out = &s->base;
  return RESIL_OK;
}
