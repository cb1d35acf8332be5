/* Shared circuit state: a local breaker plus a fleet view kept in Redis.
 * See include/resil/fleet.h and docs/fleet.md.
 *
 * One Lua script, with an operation in ARGV[1], does every Redis step, so
 * each is atomic and reads the server's clock (TIME, in milliseconds):
 *   view       drop expired entries; >= quorum left: the fleet is open until
 *              the quorum-th largest expiry (and the recovering key is set
 *              to outlive it); else, if recovering and asked to, take a free
 *              probe slot (SET NX PX).
 *   publish    ZADD this instance with expiry now + open_ms.
 *   unpublish  ZREM this instance.
 *   probe_done free the slot if we still hold it; on success DEL the
 *              recovering key too.
 * Times stay below 2^53 ms, exact in Lua's doubles. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fleet/redis_conn.h"
#include "resil/fleet.h"

static const char CIRCUIT_LUA[] =
    "if redis.replicate_commands then pcall(redis.replicate_commands) end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local op = ARGV[1]\n"
    "if op == 'view' then\n"
    "  local q, pttl = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\n"
    "  local n = redis.call('ZCARD', KEYS[1])\n"
    "  if n >= q then\n"
    "    local e = redis.call('ZREVRANGE', KEYS[1], q - 1, q - 1, 'WITHSCORES')\n"
    "    local left = math.floor(tonumber(e[2]) - now)\n"
    "    if left < 1 then left = 1 end\n"
    "    local keep = left + 2 * pttl\n"
    "    if redis.call('PTTL', KEYS[2]) < keep then\n"
    "      redis.call('SET', KEYS[2], '1', 'PX', keep)\n"
    "    end\n"
    "    return {1, left, n, -1}\n"
    "  end\n"
    "  if redis.call('EXISTS', KEYS[2]) == 0 then return {0, 0, n, -1} end\n"
    "  if ARGV[4] ~= '1' then return {2, 0, n, -1} end\n"
    "  local wait = -1\n"
    "  for i = 3, #KEYS do\n"
    "    if redis.call('SET', KEYS[i], ARGV[5], 'NX', 'PX', pttl) then\n"
    "      return {2, 0, n, i - 3}\n"
    "    end\n"
    "    local p = redis.call('PTTL', KEYS[i])\n"
    "    if p > 0 and (wait < 0 or p < wait) then wait = p end\n"
    "  end\n"
    "  return {2, wait, n, -1}\n"
    "elseif op == 'publish' then\n"
    "  local ms = tonumber(ARGV[3])\n"
    "  redis.call('ZADD', KEYS[1], now + ms, ARGV[2])\n"
    "  if redis.call('PTTL', KEYS[1]) < ms + 60000 then\n"
    "    redis.call('PEXPIRE', KEYS[1], ms + 60000)\n"
    "  end\n"
    "  return 1\n"
    "elseif op == 'unpublish' then\n"
    "  redis.call('ZREM', KEYS[1], ARGV[2])\n"
    "  return 1\n"
    "elseif op == 'probe_done' then\n"
    "  if redis.call('GET', KEYS[3]) == ARGV[2] then redis.call('DEL', KEYS[3]) end\n"
    "  if ARGV[3] == '1' then redis.call('DEL', KEYS[2]) end\n"
    "  return 1\n"
    "end\n"
    "return redis.error_reply('resil: unknown operation')\n";

#define NAME_MAX_LEN 200
#define MAX_PROBES 8 /* keys + args must fit redis_conn's 21 */
#define KEY_LEN (sizeof(((resil__fleet_conn *)0)->prefix) + 32 + NAME_MAX_LEN)

struct resil_fleet_circuit {
  resil__fleet_conn conn;
  char sha[41];
  resil_breaker *local;
  char name[NAME_MAX_LEN + 1];
  char id[33]; /* this instance: random hex */
  char open_key[KEY_LEN], rec_key[KEY_LEN];
  char probe_key[MAX_PROBES][KEY_LEN];
  uint32_t quorum, probes;
  long long probe_ttl_ms;
  resil_ns refresh;
  resil_log_fn log;
  void *log_ud;

  pthread_mutex_t mu; /* guards the view cache and the outage flag */
  resil_ns view_until;  /* monotonic: the cached view is valid before it */
  resil_ns open_until;  /* monotonic: the fleet is open before it */
  int recovering;       /* the cached view said recovering */
  uint32_t instances_open;
  int down;             /* in an outage (logged) */

  pthread_mutex_t pub_mu;  /* guards the publication state */
  int published;
  resil_ns published_until; /* monotonic: our entry's expiry */

  atomic_uint_fast64_t fallbacks;
  atomic_uint_fast64_t tokens;
  atomic_uint probes_held;
};

static resil_ns mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (resil_ns)ts.tv_sec * RESIL_SEC + ts.tv_nsec;
}

/* Redis answered (ok) or not: count, and log the edges of an outage. */
static void note_redis(resil_fleet_circuit *fc, int ok) {
  if (!ok) atomic_fetch_add(&fc->fallbacks, 1);
  pthread_mutex_lock(&fc->mu);
  int was = fc->down;
  fc->down = !ok;
  pthread_mutex_unlock(&fc->mu);
  if (fc->log == NULL || ok == !was) return;
  char line[600];
  if (!ok) {
    char err[300];
    resil__fleet_conn_error(&fc->conn, err, sizeof err);
    snprintf(line, sizeof line,
             "fleet circuit %s unreachable: %s; using the local breaker alone", fc->name, err);
    fc->log(fc->log_ud, RESIL_LOG_WARN, line);
  } else {
    snprintf(line, sizeof line, "fleet circuit %s: Redis answers again", fc->name);
    fc->log(fc->log_ud, RESIL_LOG_INFO, line);
  }
}

/* Run one operation. NULL when Redis failed (counted and logged). */
static redisReply *run(resil_fleet_circuit *fc, int nkeys, int argc, const char **argv) {
  redisReply *r = NULL;
  resil_err e = resil__fleet_conn_eval(&fc->conn, fc->sha, CIRCUIT_LUA, nkeys, argc, argv, &r);
  note_redis(fc, e == RESIL_OK);
  return e == RESIL_OK ? r : NULL;
}

void resil_fleet_circuit_config_init(resil_fleet_circuit_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->size = sizeof *cfg;
  cfg->quorum = 2;
  cfg->probes = 1;
  cfg->probe_ttl = 30 * RESIL_SEC;
  cfg->refresh = 100 * RESIL_MSEC;
}

static resil_err bad(char *errbuf, size_t errlen, const char *msg) {
  snprintf(errbuf, errlen, "%s", msg);
  return RESIL_EINVAL;
}

static void random_id(char out[33]) {
  unsigned char b[16];
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  ssize_t n = fd >= 0 ? read(fd, b, sizeof b) : -1;
  if (fd >= 0) close(fd);
  if (n != (ssize_t)sizeof b) { /* unlikely: still unique enough per host */
    uint64_t x = (uint64_t)mono_now() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)out;
    for (size_t i = 0; i < sizeof b; i++) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      b[i] = (unsigned char)(x >> 56);
    }
  }
  for (size_t i = 0; i < sizeof b; i++) snprintf(out + 2 * i, 3, "%02x", b[i]);
}

resil_err resil_fleet_circuit_open(resil_fleet_circuit **out,
                                   const resil_fleet_circuit_config *cfg, resil_breaker *local,
                                   char *errbuf, size_t errlen) {
  char scratch[8];
  if (errbuf == NULL || errlen == 0) {
    errbuf = scratch;
    errlen = sizeof scratch;
  }
  errbuf[0] = '\0';
  if (out == NULL) return bad(errbuf, errlen, "no output handle");
  *out = NULL;
  if (cfg == NULL || cfg->size != sizeof *cfg)
    return bad(errbuf, errlen, "config not set up by resil_fleet_circuit_config_init");
  if (local == NULL) return bad(errbuf, errlen, "no local breaker");
  const char *name = cfg->name ? cfg->name : resil_breaker_name(local);
  if (name == NULL || name[0] == '\0' || strlen(name) > NAME_MAX_LEN)
    return bad(errbuf, errlen, "the circuit name must be 1 to 200 bytes");
  if (cfg->quorum < 1) return bad(errbuf, errlen, "the quorum must be at least 1");
  if (cfg->probes < 1 || cfg->probes > MAX_PROBES)
    return bad(errbuf, errlen, "probes must be 1 to 8");
  if (cfg->probe_ttl < RESIL_MSEC || cfg->probe_ttl > 24 * 3600 * RESIL_SEC)
    return bad(errbuf, errlen, "probe_ttl must be 1ms to 24h");
  if (cfg->refresh < 0) return bad(errbuf, errlen, "refresh must be >= 0");

  resil_fleet_circuit *fc = calloc(1, sizeof *fc);
  if (fc == NULL) return RESIL_ENOMEM;
  resil_err e = resil__fleet_conn_init(&fc->conn, cfg->redis_url, errbuf, errlen);
  if (e != RESIL_OK) {
    free(fc);
    return e;
  }
  if (pthread_mutex_init(&fc->mu, NULL) != 0) {
    resil__fleet_conn_free(&fc->conn);
    free(fc);
    snprintf(errbuf, errlen, "cannot create a mutex");
    return RESIL_ESYS;
  }
  if (pthread_mutex_init(&fc->pub_mu, NULL) != 0) {
    pthread_mutex_destroy(&fc->mu);
    resil__fleet_conn_free(&fc->conn);
    free(fc);
    snprintf(errbuf, errlen, "cannot create a mutex");
    return RESIL_ESYS;
  }
  fc->local = local;
  snprintf(fc->name, sizeof fc->name, "%s", name);
  random_id(fc->id);
  const char *pre = fc->conn.prefix;
  snprintf(fc->open_key, KEY_LEN, "%scircuit:%s:open", pre, name);
  snprintf(fc->rec_key, KEY_LEN, "%scircuit:%s:recovering", pre, name);
  for (uint32_t i = 0; i < cfg->probes; i++)
    snprintf(fc->probe_key[i], KEY_LEN, "%scircuit:%s:probe:%u", pre, name, i);
  fc->quorum = cfg->quorum;
  fc->probes = cfg->probes;
  fc->probe_ttl_ms = (long long)(cfg->probe_ttl / RESIL_MSEC);
  fc->refresh = cfg->refresh;
  fc->log = cfg->log;
  fc->log_ud = cfg->log_ud;
  *out = fc;
  return RESIL_OK;
}

void resil_fleet_circuit_close(resil_fleet_circuit *fc) {
  if (fc == NULL) return;
  resil__fleet_conn_free(&fc->conn);
  pthread_mutex_destroy(&fc->mu);
  pthread_mutex_destroy(&fc->pub_mu);
  free(fc);
}

static long long reply_int(const redisReply *r, size_t i) {
  if (r->type != REDIS_REPLY_ARRAY || i >= r->elements) return 0;
  const redisReply *x = r->element[i];
  return x->type == REDIS_REPLY_INTEGER ? x->integer : 0;
}

typedef enum { V_CLOSED, V_OPEN, V_RECOVERING, V_FAILED } view_kind;

/* Ask Redis for the view (taking a probe slot when recovering). */
static view_kind fetch_view(resil_fleet_circuit *fc, uint64_t token, resil_ns *wait, int *slot) {
  char q[16], pttl[24], tok[64];
  snprintf(q, sizeof q, "%u", fc->quorum);
  snprintf(pttl, sizeof pttl, "%lld", fc->probe_ttl_ms);
  snprintf(tok, sizeof tok, "%s:%llu", fc->id, (unsigned long long)token);
  const char *argv[2 + MAX_PROBES + 5];
  int n = 0;
  argv[n++] = fc->open_key;
  argv[n++] = fc->rec_key;
  for (uint32_t i = 0; i < fc->probes; i++) argv[n++] = fc->probe_key[i];
  int nkeys = n;
  argv[n++] = "view";
  argv[n++] = q;
  argv[n++] = pttl;
  argv[n++] = "1";
  argv[n++] = tok;
  *slot = -1;
  *wait = 0;
  redisReply *r = run(fc, nkeys, n, argv);
  if (r == NULL) return V_FAILED;
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 4) {
    freeReplyObject(r);
    atomic_fetch_add(&fc->fallbacks, 1);
    return V_FAILED;
  }
  long long kind = reply_int(r, 0), ms = reply_int(r, 1), inst = reply_int(r, 2);
  *slot = (int)reply_int(r, 3);
  freeReplyObject(r);
  resil_ns now = mono_now();
  *wait = ms > 0 ? (resil_ns)ms * RESIL_MSEC : 0;
  pthread_mutex_lock(&fc->mu);
  fc->view_until = now + fc->refresh;
  fc->open_until = kind == 1 ? now + *wait : 0;
  fc->recovering = kind == 2;
  fc->instances_open = inst > 0 ? (uint32_t)inst : 0;
  pthread_mutex_unlock(&fc->mu);
  return kind == 1 ? V_OPEN : kind == 2 ? V_RECOVERING : V_CLOSED;
}

resil_err resil_fleet_circuit_acquire(resil_fleet_circuit *fc, resil_fleet_permit *p,
                                      resil_ns *retry_in) {
  resil_ns scratch;
  if (retry_in == NULL) retry_in = &scratch;
  p->probe_slot = -1;
  p->probe_token = 0;
  resil_err e = resil_breaker_acquire(fc->local, &p->local, retry_in);
  if (e != RESIL_OK) return e;

  resil_ns now = mono_now();
  pthread_mutex_lock(&fc->mu);
  int cached = now < fc->view_until;
  resil_ns open_left = fc->open_until > now ? fc->open_until - now : 0;
  int recovering = fc->recovering;
  pthread_mutex_unlock(&fc->mu);
  if (cached && open_left > 0) {
    resil_breaker_record(fc->local, &p->local, RESIL_CALL_IGNORED, 0);
    *retry_in = open_left;
    return RESIL_ECIRCUIT_OPEN;
  }
  if (cached && !recovering) return RESIL_OK;

  uint64_t token = atomic_fetch_add(&fc->tokens, 1) + 1;
  resil_ns wait = 0;
  int slot = -1;
  view_kind v = fetch_view(fc, token, &wait, &slot);
  if (v == V_FAILED || v == V_CLOSED) return RESIL_OK; /* local alone / fleet closed */
  if (v == V_RECOVERING && slot >= 0) {
    p->probe_slot = slot;
    p->probe_token = token;
    atomic_fetch_add(&fc->probes_held, 1);
    return RESIL_OK;
  }
  resil_breaker_record(fc->local, &p->local, RESIL_CALL_IGNORED, 0);
  if (v == V_RECOVERING && wait <= 0) wait = fc->refresh > 0 ? fc->refresh : RESIL_MSEC;
  *retry_in = wait;
  return RESIL_ECIRCUIT_OPEN;
}

static void probe_done(resil_fleet_circuit *fc, const resil_fleet_permit *p, int success) {
  char tok[64];
  snprintf(tok, sizeof tok, "%s:%llu", fc->id, (unsigned long long)p->probe_token);
  const char *argv[6] = {fc->open_key, fc->rec_key, fc->probe_key[p->probe_slot],
                         "probe_done", tok, success ? "1" : "0"};
  redisReply *r = run(fc, 3, 6, argv);
  if (r) freeReplyObject(r);
  atomic_fetch_sub(&fc->probes_held, 1);
  if (success) {
    pthread_mutex_lock(&fc->mu);
    fc->view_until = 0; /* see the closed fleet at once */
    fc->recovering = 0;
    fc->open_until = 0;
    pthread_mutex_unlock(&fc->mu);
  }
}

/* Bring our entry in line with the local breaker's state. */
static void publish(resil_fleet_circuit *fc) {
  resil_breaker_snapshot s;
  resil_breaker_snapshot_get(fc->local, &s);
  pthread_mutex_lock(&fc->pub_mu);
  resil_ns now = mono_now();
  if (s.state == RESIL_BREAKER_OPEN && s.retry_in > 0) {
    resil_ns until = now + s.retry_in;
    if (!fc->published || until > fc->published_until + 5 * RESIL_MSEC) {
      char ms[24];
      long long open_ms = (long long)(s.retry_in / RESIL_MSEC);
      snprintf(ms, sizeof ms, "%lld", open_ms > 0 ? open_ms : 1);
      const char *argv[4] = {fc->open_key, "publish", fc->id, ms};
      redisReply *r = run(fc, 1, 4, argv);
      if (r) {
        freeReplyObject(r);
        fc->published = 1;
        fc->published_until = until;
        pthread_mutex_lock(&fc->mu);
        fc->view_until = 0; /* our entry may complete a quorum */
        pthread_mutex_unlock(&fc->mu);
      }
    }
  } else if (s.state == RESIL_BREAKER_CLOSED && fc->published) {
    const char *argv[3] = {fc->open_key, "unpublish", fc->id};
    redisReply *r = run(fc, 1, 3, argv);
    if (r) {
      freeReplyObject(r);
      fc->published = 0;
    }
  }
  pthread_mutex_unlock(&fc->pub_mu);
}

void resil_fleet_circuit_record(resil_fleet_circuit *fc, const resil_fleet_permit *p,
                                resil_call_result r, resil_ns duration) {
  resil_breaker_record(fc->local, &p->local, r, duration);
  if (p->probe_slot >= 0 && (uint32_t)p->probe_slot < fc->probes)
    probe_done(fc, p, r == RESIL_CALL_SUCCESS);
  publish(fc);
}

void resil_fleet_circuit_snapshot_get(resil_fleet_circuit *fc,
                                     resil_fleet_circuit_snapshot *out) {
  resil_ns now = mono_now();
  pthread_mutex_lock(&fc->mu);
  out->fleet_open = fc->open_until > now;
  out->instances_open = fc->instances_open;
  pthread_mutex_unlock(&fc->mu);
  out->probes_in_flight = atomic_load(&fc->probes_held);
  out->fallbacks = atomic_load(&fc->fallbacks);
}
