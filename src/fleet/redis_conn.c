/* The fleet modules' Redis connection. See redis_conn.h. */
#define _GNU_SOURCE
#include "fleet/redis_conn.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#define DEFAULT_PORT 6379
#define DEFAULT_PREFIX "resil:"
#define DEFAULT_MS 100
#define DOWN_MS 1000

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 2, 3)))
#endif
static void set_err(resil__fleet_conn *fc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(fc->err, sizeof fc->err, fmt, ap);
  va_end(ap);
}

static int parse_int(const char *p, size_t n, long max, int *out) {
  if (n == 0 || n > 9) return -1;
  long v = 0;
  for (size_t i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9') return -1;
    v = v * 10 + (p[i] - '0');
  }
  if (v > max) return -1;
  *out = (int)v;
  return 0;
}

/* Copy p[0..n) into dst[cap], decoding %XX. -1 if too long or malformed. */
static int copy_decoded(char *dst, size_t cap, const char *p, size_t n) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    int ch = (unsigned char)p[i];
    if (ch == '%') {
      if (i + 2 >= n) return -1;
      char hex[3] = {p[i + 1], p[i + 2], 0};
      char *end;
      long v = strtol(hex, &end, 16);
      if (*end != '\0' || v <= 0) return -1;
      ch = (int)v;
      i += 2;
    }
    if (o + 1 >= cap) return -1;
    dst[o++] = (char)ch;
  }
  dst[o] = '\0';
  return 0;
}

resil_err resil__fleet_conn_init(resil__fleet_conn *fc, const char *url, char *err,
                                 size_t errlen) {
  memset(fc, 0, sizeof *fc);
  fc->port = DEFAULT_PORT;
  fc->connect_ms = DEFAULT_MS;
  fc->timeout_ms = DEFAULT_MS;
  fc->down_ms = DOWN_MS;
  fc->pid = getpid();
  snprintf(fc->prefix, sizeof fc->prefix, "%s", DEFAULT_PREFIX);
  if (url == NULL || strncmp(url, "redis://", 8) != 0) {
    snprintf(err, errlen, "not a redis:// URL: '%.80s'", url ? url : "");
    return RESIL_EINVAL;
  }
  const char *rest = url + 8;
  size_t auth_len = strcspn(rest, "/?#");
  if (rest[auth_len] == '#') {
    snprintf(err, errlen, "a redis:// URL has no #fragment");
    return RESIL_EINVAL;
  }
  const char *hp = rest, *at = NULL;
  for (size_t i = 0; i < auth_len; i++)
    if (rest[i] == '@') at = rest + i;
  size_t hp_len = auth_len;
  if (at != NULL) {
    size_t ui = (size_t)(at - rest);
    const char *colon = memchr(rest, ':', ui);
    if (colon == NULL || (size_t)(at - colon) <= 1) {
      snprintf(err, errlen, "redis:// URL: user info needs a password (redis://[USER]:PASS@HOST)");
      return RESIL_EINVAL;
    }
    if (copy_decoded(fc->user, sizeof fc->user, rest, (size_t)(colon - rest)) != 0 ||
        copy_decoded(fc->pass, sizeof fc->pass, colon + 1, (size_t)(at - colon) - 1) != 0) {
      snprintf(err, errlen, "redis:// URL: bad user or password");
      return RESIL_EINVAL;
    }
    hp = at + 1;
    hp_len = auth_len - ui - 1;
  }
  const char *colon = memchr(hp, ':', hp_len);
  size_t host_len = colon ? (size_t)(colon - hp) : hp_len;
  if (colon && parse_int(colon + 1, hp_len - host_len - 1, 65535, &fc->port) != 0) {
    snprintf(err, errlen, "redis:// URL: the port must be 1 to 65535");
    return RESIL_EINVAL;
  }
  if (host_len == 0 || host_len >= sizeof fc->host || fc->port == 0) {
    snprintf(err, errlen, "redis:// URL needs a host and port (redis://127.0.0.1:6379/0)");
    return RESIL_EINVAL;
  }
  memcpy(fc->host, hp, host_len);
  fc->host[host_len] = '\0';
  const char *p = rest + auth_len;
  if (*p == '/') {
    p++;
    size_t n = strcspn(p, "?");
    if (n > 0 && parse_int(p, n, 1000000, &fc->db) != 0) {
      snprintf(err, errlen, "redis:// URL: the database must be a number");
      return RESIL_EINVAL;
    }
    p += n;
  }
  if (*p == '?') {
    p++;
    while (*p) {
      size_t n = strcspn(p, "&");
      const char *eq = memchr(p, '=', n);
      if (eq == NULL) {
        snprintf(err, errlen, "redis:// URL: parameter without a value: '%.*s'", (int)n, p);
        return RESIL_EINVAL;
      }
      size_t kl = (size_t)(eq - p), vl = n - kl - 1;
      int bad = 0;
      if (kl == 6 && memcmp(p, "prefix", 6) == 0)
        bad = copy_decoded(fc->prefix, sizeof fc->prefix, eq + 1, vl);
      else if (kl == 15 && memcmp(p, "connect_timeout", 15) == 0)
        bad = parse_int(eq + 1, vl, 600000, &fc->connect_ms) || fc->connect_ms == 0;
      else if (kl == 7 && memcmp(p, "timeout", 7) == 0)
        bad = parse_int(eq + 1, vl, 600000, &fc->timeout_ms) || fc->timeout_ms == 0;
      else {
        snprintf(err, errlen, "redis:// URL: unknown parameter '%.*s'", (int)kl, p);
        return RESIL_EINVAL;
      }
      if (bad) {
        snprintf(err, errlen, "redis:// URL: bad value for '%.*s'", (int)kl, p);
        return RESIL_EINVAL;
      }
      p += n;
      if (*p == '&') p++;
    }
  }
  snprintf(fc->where, sizeof fc->where, "%s:%d/%d", fc->host, fc->port, fc->db);
  if (pthread_mutex_init(&fc->mu, NULL) != 0) {
    snprintf(err, errlen, "cannot create a mutex");
    return RESIL_ESYS;
  }
  return RESIL_OK;
}

void resil__fleet_conn_free(resil__fleet_conn *fc) {
  if (fc->c) redisFree(fc->c);
  fc->c = NULL;
  pthread_mutex_destroy(&fc->mu);
}

static struct timeval tv_ms(int ms) {
  struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
  return tv;
}

/* A command on fc->c that must not fail; 0 or -1 with err set. */
static int setup_cmd(resil__fleet_conn *fc, int argc, const char **argv, const char *what) {
  redisReply *r = redisCommandArgv(fc->c, argc, argv, NULL);
  if (r == NULL || r->type == REDIS_REPLY_ERROR) {
    set_err(fc, "%s: %s: %.120s", fc->where, what, r ? r->str : fc->c->errstr);
    if (r) freeReplyObject(r);
    return -1;
  }
  freeReplyObject(r);
  return 0;
}

static int connect_now(resil__fleet_conn *fc) {
  redisContext *c = redisConnectWithTimeout(fc->host, fc->port, tv_ms(fc->connect_ms));
  if (c == NULL || c->err) {
    set_err(fc, "%s: cannot connect: %.120s", fc->where, c ? c->errstr : "out of memory");
    if (c) redisFree(c);
    return -1;
  }
  fc->c = c;
  if (redisSetTimeout(c, tv_ms(fc->timeout_ms)) != REDIS_OK) {
    set_err(fc, "%s: cannot set the command timeout", fc->where);
    goto fail;
  }
  if (fc->pass[0]) {
    const char *argv[3] = {"AUTH", fc->user, fc->pass};
    if (fc->user[0] == '\0') argv[1] = fc->pass;
    if (setup_cmd(fc, fc->user[0] ? 3 : 2, argv, "cannot authenticate") != 0) goto fail;
  }
  if (fc->db != 0) {
    char db[16];
    snprintf(db, sizeof db, "%d", fc->db);
    const char *argv[2] = {"SELECT", db};
    if (setup_cmd(fc, 2, argv, "cannot select the database") != 0) goto fail;
  }
  return 0;
fail:
  redisFree(fc->c);
  fc->c = NULL;
  return -1;
}

static void went_down(resil__fleet_conn *fc, resil_ns now) {
  if (fc->c) redisFree(fc->c);
  fc->c = NULL;
  fc->down_until = now + (resil_ns)fc->down_ms * RESIL_MSEC;
}

/* One EVALSHA (or SCRIPT LOAD + EVALSHA, or EVAL) on a live connection.
 * NULL when the connection failed. */
static redisReply *eval_once(resil__fleet_conn *fc, char sha[41], const char *src, int nkeys,
                             int argc, const char **argv) {
  if (sha[0] == '\0') {
    const char *la[3] = {"SCRIPT", "LOAD", src};
    redisReply *r = redisCommandArgv(fc->c, 3, la, NULL);
    if (r == NULL) return NULL;
    if (r->type == REDIS_REPLY_STRING && r->len == 40) memcpy(sha, r->str, 41);
    freeReplyObject(r);
  }
  const char *stack[24];
  if (argc + 3 > (int)(sizeof stack / sizeof stack[0])) return NULL;
  char nk[16];
  snprintf(nk, sizeof nk, "%d", nkeys);
  stack[0] = "EVALSHA";
  stack[1] = sha[0] ? sha : "0000000000000000000000000000000000000000";
  stack[2] = nk;
  for (int i = 0; i < argc; i++) stack[3 + i] = argv[i];
  redisReply *r = redisCommandArgv(fc->c, argc + 3, stack, NULL);
  if (r != NULL && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
    freeReplyObject(r);
    stack[0] = "EVAL";
    stack[1] = src;
    r = redisCommandArgv(fc->c, argc + 3, stack, NULL);
  }
  return r;
}

resil_err resil__fleet_conn_eval(resil__fleet_conn *fc, char sha[41], const char *src, int nkeys,
                                 int argc, const char **argv, redisReply **out) {
  *out = NULL;
  resil_clock clk = resil_clock_system();
  pthread_mutex_lock(&fc->mu);
  resil_err e = RESIL_ESTORE;
  if (getpid() != fc->pid) {
    set_err(fc, "used in a child process after fork()");
    goto done;
  }
  resil_ns now = clk.now(clk.ud);
  if (fc->c == NULL) {
    if (fc->down_until != 0 && now < fc->down_until) goto done; /* err kept */
    if (connect_now(fc) != 0) {
      went_down(fc, now);
      goto done;
    }
  }
  redisReply *r = eval_once(fc, sha, src, nkeys, argc, argv);
  if (r == NULL && fc->c->err == REDIS_ERR_EOF) {
    /* An idle connection the server closed: reconnect once. */
    redisFree(fc->c);
    fc->c = NULL;
    if (connect_now(fc) == 0) r = eval_once(fc, sha, src, nkeys, argc, argv);
  }
  if (r == NULL) {
    if (fc->c) set_err(fc, "%s: %.150s", fc->where, fc->c->err ? fc->c->errstr : "no answer");
    went_down(fc, now);
    goto done;
  }
  if (r->type == REDIS_REPLY_ERROR) {
    set_err(fc, "%s: %.150s", fc->where, r->str);
    freeReplyObject(r);
    goto done;
  }
  fc->down_until = 0;
  *out = r;
  e = RESIL_OK;
done:
  pthread_mutex_unlock(&fc->mu);
  return e;
}

void resil__fleet_conn_error(resil__fleet_conn *fc, char *buf, size_t len) {
  pthread_mutex_lock(&fc->mu);
  snprintf(buf, len, "%s", fc->err[0] ? fc->err : "unknown error");
  pthread_mutex_unlock(&fc->mu);
}
