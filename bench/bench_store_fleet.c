/* Idempotency stores on a server: claims + completes per second (one claim
 * and one complete of a new key each, 256-byte body, 2 headers) for
 * redis:// and postgres://, beside a raw client doing the least a program
 * could do for the same two steps on the same server, with the same
 * connection settings:
 *   Redis:      SET key fingerprint+token NX PX, then SET key response XX PX
 *               (two round trips, like the store's two scripts);
 *   PostgreSQL: INSERT the claim row, then UPDATE it with the response
 *               (two autocommitted statements, no claim protocol, no purge
 *               indexes), in a table beside the store's.
 * With 1 thread and with 4 (the store's connection pool against one raw
 * connection per thread). Store and baseline alternate in short rounds and
 * the median round counts, so noise hits both alike.
 *
 * The servers come from RESIL_TEST_REDIS_URL and RESIL_TEST_PG_URL
 * (tests/services.sh start DIR, then eval "$(tests/services.sh env DIR)");
 * a backend whose variable is unset is skipped. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <resil/resil.h>

#include "bench_util.h"

#ifdef RESIL_HAVE_REDIS
#include <hiredis.h>
#endif
#ifdef RESIL_HAVE_PG
#include <libpq-fe.h>
#endif

#define ROUNDS 3
#define ROUND_NS (300 * 1000000LL)
#define MAX_THREADS 4

static const resil_http_header HDRS[] = {{"Content-Type", "application/json"},
                                         {"Location", "/orders/1234567"}};
static unsigned char BODY[256];
static uint8_t FP[RESIL_FINGERPRINT_SIZE];

static void die(const char *what, const char *why) {
  fprintf(stderr, "bench_store_fleet: %s: %s\n", what, why);
  exit(1);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return v[n / 2];
}

/* ---- running rounds on N threads ------------------------------------------------------- */

/* One thread's work for one round: as many ops as fit in ROUND_NS. */
typedef uint64_t (*round_fn)(void *ctx, int thread, uint64_t *next);

typedef struct worker {
  round_fn fn;
  void *ctx;
  int thread;
  uint64_t next; /* keys are never reused across rounds */
  uint64_t ops;
} worker;

static void *run_worker(void *arg) {
  worker *w = arg;
  w->ops = w->fn(w->ctx, w->thread, &w->next);
  return NULL;
}

/* Ops per second of one round on `threads` threads. */
static double round_on(worker *ws, int threads) {
  pthread_t th[MAX_THREADS];
  int64_t t0 = bench_now();
  for (int i = 0; i < threads; i++)
    if (pthread_create(&th[i], NULL, run_worker, &ws[i]) != 0) die("thread", "cannot create");
  uint64_t ops = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(th[i], NULL);
    ops += ws[i].ops;
  }
  return (double)ops * 1e9 / (double)(bench_now() - t0);
}

static void row(const char *backend, int threads, double store, double base) {
  char ratio[16];
  snprintf(ratio, sizeof ratio, "%.2fx", store / base);
  printf("%-10s %7d %18.0f %10.1f %16.0f %10s\n", backend, threads, store,
         1e6 / store * threads, base, ratio);
}

/* Alternate store and baseline rounds; print the medians. */
static void compare(const char *backend, int threads, round_fn store_fn, void *store_ctx,
                    round_fn base_fn, void *base_ctx) {
  worker sw[MAX_THREADS], bw[MAX_THREADS];
  /* Thread numbers are unique across comparisons, so keys never repeat. */
  static int thread_base;
  for (int i = 0; i < threads; i++) {
    sw[i] = (worker){store_fn, store_ctx, thread_base + i, 0, 0};
    bw[i] = (worker){base_fn, base_ctx, thread_base + i, 0, 0};
  }
  thread_base += threads;
  double s[ROUNDS], b[ROUNDS];
  /* A warm-up round each (connections, caches), not counted. */
  round_on(sw, threads);
  round_on(bw, threads);
  for (int r = 0; r < ROUNDS; r++) {
    s[r] = round_on(sw, threads);
    b[r] = round_on(bw, threads);
  }
  row(backend, threads, median(s, ROUNDS), median(b, ROUNDS));
}

/* ---- the store, any backend -------------------------------------------------------------- */

static uint64_t store_round(void *ctx, int thread, uint64_t *next) {
  resil_store *s = ctx;
  resil_stored_response resp = {201, HDRS, 2, BODY, sizeof BODY};
  char key[48];
  uint64_t n = 0;
  int64_t t0 = bench_now();
  while (bench_now() - t0 < ROUND_NS) {
    snprintf(key, sizeof key, "order-%d-%llu", thread, (unsigned long long)(*next)++);
    resil_claim_result r;
    if (resil_store_claim(s, "tenant-1", key, FP, 30 * RESIL_SEC, &r) != RESIL_OK ||
        r.status != RESIL_CLAIM_CLAIMED)
      die("claim", resil_store_errmsg(s));
    if (resil_store_complete(s, "tenant-1", key, r.token, &resp, RESIL_STORE_DEFAULT_TTL) !=
        RESIL_OK)
      die("complete", resil_store_errmsg(s));
    n++;
  }
  return n;
}

static resil_store *store_open(const char *url) {
  resil_store *s;
  char err[256];
  if (resil_store_open(&s, url, NULL, err, sizeof err) != RESIL_OK) die(url, err);
  return s;
}

/* The store's encoding of the headers, for the baselines to write the same
 * bytes. */
static unsigned char hdr_blob[128];
static size_t hdr_len;

static void encode_headers(void) {
  for (size_t i = 0; i < 2; i++) {
    const char *parts[2] = {HDRS[i].name, HDRS[i].value};
    for (int j = 0; j < 2; j++) {
      uint32_t l = (uint32_t)strlen(parts[j]);
      for (int k = 0; k < 4; k++) hdr_blob[hdr_len++] = (unsigned char)(l >> (8 * k));
      memcpy(hdr_blob + hdr_len, parts[j], l);
      hdr_len += l;
    }
  }
}

/* ---- Redis ---------------------------------------------------------------------------------- */

#ifdef RESIL_HAVE_REDIS
typedef struct raw_redis {
  redisContext *c[MAX_THREADS];
  char prefix[64];
} raw_redis;

static uint64_t redis_round(void *ctx, int thread, uint64_t *next) {
  raw_redis *x = ctx;
  redisContext *c = x->c[thread % MAX_THREADS];
  unsigned char claim[RESIL_FINGERPRINT_SIZE + 8], done[512];
  memcpy(claim, FP, RESIL_FINGERPRINT_SIZE);
  size_t dl = 0;
  memcpy(done + dl, "201", 3);
  dl += 3;
  memcpy(done + dl, hdr_blob, hdr_len);
  dl += hdr_len;
  memcpy(done + dl, BODY, sizeof BODY);
  dl += sizeof BODY;
  char key[96];
  uint64_t n = 0;
  int64_t t0 = bench_now();
  while (bench_now() - t0 < ROUND_NS) {
    snprintf(key, sizeof key, "%sorder-%d-%llu", x->prefix, thread, (unsigned long long)(*next)++);
    uint64_t token = *next * 2654435761u;
    memcpy(claim + RESIL_FINGERPRINT_SIZE, &token, 8);
    redisReply *r = redisCommand(c, "SET %s %b NX PX 630000", key, claim, sizeof claim);
    if (r == NULL || r->type != REDIS_REPLY_STATUS) die("raw SET NX", r ? r->str : c->errstr);
    freeReplyObject(r);
    r = redisCommand(c, "SET %s %b XX PX 87000000", key, done, dl);
    if (r == NULL || r->type != REDIS_REPLY_STATUS) die("raw SET XX", r ? r->str : c->errstr);
    freeReplyObject(r);
    n++;
  }
  return n;
}

static void redis_drop(redisContext *c, const char *prefix) {
  char pattern[80], cursor[32] = "0";
  snprintf(pattern, sizeof pattern, "%s*", prefix);
  do {
    redisReply *r = redisCommand(c, "SCAN %s MATCH %s COUNT 1000", cursor, pattern);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) die("SCAN", c->errstr);
    snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
    for (size_t i = 0; i < r->element[1]->elements; i++) {
      redisReply *k = r->element[1]->element[i];
      freeReplyObject(redisCommand(c, "UNLINK %b", k->str, k->len));
    }
    freeReplyObject(r);
  } while (strcmp(cursor, "0") != 0);
}

static void bench_redis(const char *base) {
  char host[128];
  int port;
  if (strchr(base, '?') || strchr(base, '@') ||
      sscanf(base, "redis://%127[^:/]:%d", host, &port) != 2)
    die("RESIL_TEST_REDIS_URL", "must look like redis://HOST:PORT/DB");
  /* The store's defaults, for the raw client too. */
  struct timeval ctv = {2, 0}, tv = {5, 0};
  raw_redis raw;
  snprintf(raw.prefix, sizeof raw.prefix, "bench-raw-%d:", (int)getpid());
  for (int i = 0; i < MAX_THREADS; i++) {
    raw.c[i] = redisConnectWithTimeout(host, port, ctv);
    if (raw.c[i] == NULL || raw.c[i]->err) die(base, raw.c[i] ? raw.c[i]->errstr : "no memory");
    redisSetTimeout(raw.c[i], tv);
    redisEnableKeepAlive(raw.c[i]);
  }
  char url[512], prefix[64];
  snprintf(prefix, sizeof prefix, "bench-store-%d:", (int)getpid());
  snprintf(url, sizeof url, "%s?prefix=%s", base, prefix);
  resil_store *s = store_open(url);
  compare("redis", 1, store_round, s, redis_round, &raw);
  compare("redis", MAX_THREADS, store_round, s, redis_round, &raw);
  resil_store_close(s);
  redis_drop(raw.c[0], prefix);
  redis_drop(raw.c[0], raw.prefix);
  for (int i = 0; i < MAX_THREADS; i++) redisFree(raw.c[i]);
}
#endif

/* ---- PostgreSQL --------------------------------------------------------------------------- */

#ifdef RESIL_HAVE_PG
typedef struct raw_pg {
  PGconn *c[MAX_THREADS];
  char table[96];
  char ins[256], upd[256];
} raw_pg;

static void pg_ok(PGconn *c, PGresult *r, const char *what) {
  ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) die(what, PQerrorMessage(c));
  PQclear(r);
}

static void quiet(void *ud, const char *msg) {
  (void)ud;
  (void)msg;
}

static void be64(unsigned char *d, uint64_t v) {
  for (int i = 0; i < 8; i++) d[i] = (unsigned char)(v >> (56 - 8 * i));
}

static uint64_t pg_round(void *ctx, int thread, uint64_t *next) {
  raw_pg *x = ctx;
  PGconn *c = x->c[thread % MAX_THREADS];
  char key[48];
  unsigned char token[8], status[4] = {0, 0, 0, 201};
  const Oid ins_types[4] = {17, 17, 17, 20}, upd_types[5] = {17, 17, 23, 17, 17};
  const int fmt[5] = {1, 1, 1, 1, 1};
  uint64_t n = 0;
  int64_t t0 = bench_now();
  while (bench_now() - t0 < ROUND_NS) {
    snprintf(key, sizeof key, "order-%d-%llu", thread, (unsigned long long)(*next)++);
    be64(token, *next * 2654435761u);
    const char *iv[4] = {"tenant-1", key, (const char *)FP, (const char *)token};
    int il[4] = {8, (int)strlen(key), RESIL_FINGERPRINT_SIZE, 8};
    pg_ok(c, PQexecParams(c, x->ins, 4, ins_types, iv, il, fmt, 1), "raw INSERT");
    const char *uv[5] = {"tenant-1", key, (const char *)status, (const char *)hdr_blob,
                         (const char *)BODY};
    int ul[5] = {8, (int)strlen(key), 4, (int)hdr_len, (int)sizeof BODY};
    pg_ok(c, PQexecParams(c, x->upd, 5, upd_types, uv, ul, fmt, 1), "raw UPDATE");
    n++;
  }
  return n;
}

static void bench_pg(const char *base) {
  char schema[64], url[512];
  snprintf(schema, sizeof schema, "bench_%d", (int)getpid());
  snprintf(url, sizeof url, "%s?schema=%s", base, schema);
  resil_store *s = store_open(url); /* creates the schema */
  raw_pg raw;
  snprintf(raw.table, sizeof raw.table, "%s.plain", schema);
  snprintf(raw.ins, sizeof raw.ins,
           "INSERT INTO %s (scope, k, fingerprint, token) VALUES ($1, $2, $3, $4)", raw.table);
  snprintf(raw.upd, sizeof raw.upd,
           "UPDATE %s SET status = $3, headers = $4, body = $5 WHERE scope = $1 AND k = $2",
           raw.table);
  /* The same connection parameters as the store gives libpq. */
  const char *kw[] = {"connect_timeout", "fallback_application_name", "dbname", NULL};
  const char *val[] = {"5", "resil-bench", base, NULL};
  for (int i = 0; i < MAX_THREADS; i++) {
    raw.c[i] = PQconnectdbParams(kw, val, 1);
    if (PQstatus(raw.c[i]) != CONNECTION_OK) die(base, PQerrorMessage(raw.c[i]));
  }
  char ddl[512];
  snprintf(ddl, sizeof ddl,
           "CREATE TABLE %s (scope bytea NOT NULL, k bytea NOT NULL, fingerprint bytea NOT NULL,"
           " token bigint NOT NULL, status integer, headers bytea, body bytea,"
           " PRIMARY KEY (scope, k))",
           raw.table);
  pg_ok(raw.c[0], PQexec(raw.c[0], ddl), "CREATE TABLE");
  compare("postgres", 1, store_round, s, pg_round, &raw);
  compare("postgres", MAX_THREADS, store_round, s, pg_round, &raw);
  resil_store_close(s);
  snprintf(ddl, sizeof ddl, "DROP SCHEMA %s CASCADE", schema);
  PQsetNoticeProcessor(raw.c[0], quiet, NULL); /* "drop cascades to ..." */
  pg_ok(raw.c[0], PQexec(raw.c[0], ddl), "DROP SCHEMA");
  for (int i = 0; i < MAX_THREADS; i++) PQfinish(raw.c[i]);
}
#endif

int main(void) {
  for (size_t i = 0; i < sizeof BODY; i++) BODY[i] = (unsigned char)('a' + i % 26);
  for (size_t i = 0; i < sizeof FP; i++) FP[i] = (uint8_t)(i * 7);
  encode_headers();
  const char *redis = getenv("RESIL_TEST_REDIS_URL"), *pg = getenv("RESIL_TEST_PG_URL");
  printf("idempotency stores on a server: claim + complete of a new key (256-byte body,\n"
         "2 headers), beside a raw client doing the same two writes on the same server\n"
         "(Redis: SET NX + SET XX; PostgreSQL: INSERT + UPDATE, autocommit)\n\n");
  printf("%-10s %7s %18s %10s %16s %10s\n", "backend", "threads", "claims+completes/s",
         "us/op", "raw 2 writes/s", "store/raw");
#ifdef RESIL_HAVE_REDIS
  if (redis && *redis) bench_redis(redis);
  else printf("(redis: skipped: RESIL_TEST_REDIS_URL is not set)\n");
#else
  (void)redis;
  printf("(redis: not built: RESIL_WITH_REDIS=OFF)\n");
#endif
#ifdef RESIL_HAVE_PG
  if (pg && *pg) bench_pg(pg);
  else printf("(postgres: skipped: RESIL_TEST_PG_URL is not set)\n");
#else
  (void)pg;
  printf("(postgres: not built: RESIL_WITH_PG=OFF)\n");
#endif
  return 0;
}
