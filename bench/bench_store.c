/* Idempotency store benchmark: claims + completes per second (one claim and
 * one complete of a new key each), for memory: and for sqlite: with
 * synchronous FULL and NORMAL, beside a plain SQLite INSERT + UPDATE of the
 * same rows (autocommit, no claim protocol, no extra indexes) on a file with
 * the same settings (WAL, same synchronous), in the same run and directory.
 * The ratio is what the protocol costs over the least a program could do.
 *
 * Store and baseline alternate in short rounds and the median round counts,
 * so disk noise hits both alike. About four seconds in all. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <resil/resil.h>

#include "bench_util.h"

#ifdef RESIL_HAVE_SQLITE
#include <sqlite3.h>
#endif

#define ROUNDS 3
#define ROUND_NS (250 * 1000000LL)

static char dir[256];

static const resil_http_header HDRS[] = {{"Content-Type", "application/json"},
                                         {"Location", "/orders/1234567"}};
static unsigned char BODY[256];
static uint8_t FP[RESIL_FINGERPRINT_SIZE];

static void die(const char *what, const char *why) {
  fprintf(stderr, "bench_store: %s: %s\n", what, why);
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

/* ---- the store --------------------------------------------------------------- */

typedef struct subject {
  resil_store *s;
  uint64_t next; /* keys are never reused across rounds */
} subject;

/* One round of claim + complete on new keys; ops per second. */
static double store_round(subject *x) {
  resil_stored_response resp = {201, HDRS, 2, BODY, sizeof BODY};
  char key[32];
  uint64_t n = 0;
  int64_t t0 = bench_now(), t = t0;
  while (t - t0 < ROUND_NS) {
    snprintf(key, sizeof key, "order-%llu", (unsigned long long)x->next++);
    resil_claim_result r;
    if (resil_store_claim(x->s, "tenant-1", key, FP, 30 * RESIL_SEC, &r) != RESIL_OK ||
        r.status != RESIL_CLAIM_CLAIMED)
      die("claim", resil_store_errmsg(x->s));
    if (resil_store_complete(x->s, "tenant-1", key, r.token, &resp, RESIL_STORE_DEFAULT_TTL) !=
        RESIL_OK)
      die("complete", resil_store_errmsg(x->s));
    n++;
    t = bench_now();
  }
  return (double)n * 1e9 / (double)(t - t0);
}

static void store_open(subject *x, const char *url) {
  char err[256];
  x->next = 0;
  if (resil_store_open(&x->s, url, NULL, err, sizeof err) != RESIL_OK) die(url, err);
}

/* ---- the baseline: plain SQLite ------------------------------------------------ */

#ifdef RESIL_HAVE_SQLITE
static int files;

static void remove_db(const char *path) {
  static const char *const suffix[] = {"", "-wal", "-shm"};
  char p[512];
  for (int i = 0; i < 3; i++) {
    snprintf(p, sizeof p, "%s%s", path, suffix[i]);
    unlink(p);
  }
}

typedef struct plain {
  sqlite3 *db;
  sqlite3_stmt *ins, *upd;
  uint64_t next;
  unsigned char headers[128];
  int headers_len;
} plain;

static void plain_exec(plain *p, const char *sql) {
  if (sqlite3_exec(p->db, sql, NULL, NULL, NULL) != SQLITE_OK) die(sql, sqlite3_errmsg(p->db));
}

static void plain_open(plain *p, const char *path, int full) {
  memset(p, 0, sizeof *p);
  if (sqlite3_open(path, &p->db) != SQLITE_OK) die(path, sqlite3_errmsg(p->db));
  sqlite3_busy_timeout(p->db, 5000);
  plain_exec(p, "PRAGMA journal_mode=WAL");
  plain_exec(p, full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
  plain_exec(p,
             "CREATE TABLE IF NOT EXISTS t (scope TEXT NOT NULL, key TEXT NOT NULL,"
             " fingerprint BLOB NOT NULL, state INTEGER NOT NULL, token INTEGER NOT NULL,"
             " lease_expires INTEGER, status INTEGER, headers BLOB, body BLOB,"
             " expires_at INTEGER, created_at INTEGER NOT NULL, PRIMARY KEY (scope, key))");
  if (sqlite3_prepare_v2(p->db,
                         "INSERT INTO t (scope, key, fingerprint, state, token, lease_expires,"
                         " created_at) VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6)",
                         -1, &p->ins, NULL) != SQLITE_OK ||
      sqlite3_prepare_v2(p->db,
                         "UPDATE t SET state = 1, lease_expires = NULL, status = ?3,"
                         " headers = ?4, body = ?5, expires_at = ?6"
                         " WHERE scope = ?1 AND key = ?2",
                         -1, &p->upd, NULL) != SQLITE_OK)
    die("prepare", sqlite3_errmsg(p->db));
  /* The same header bytes the store writes (two length-prefixed pairs). */
  for (int i = 0; i < 2; i++) {
    const char *parts[2] = {HDRS[i].name, HDRS[i].value};
    for (int j = 0; j < 2; j++) {
      uint32_t l = (uint32_t)strlen(parts[j]);
      memcpy(p->headers + p->headers_len, &l, 4);
      memcpy(p->headers + p->headers_len + 4, parts[j], l);
      p->headers_len += 4 + (int)l;
    }
  }
}

static void plain_step(plain *p, sqlite3_stmt *st) {
  if (sqlite3_step(st) != SQLITE_DONE) die("step", sqlite3_errmsg(p->db));
  sqlite3_reset(st);
}

static double plain_round(plain *p) {
  char key[32];
  uint64_t n = 0;
  resil_wallclock wc = resil_wallclock_system();
  int64_t t0 = bench_now(), t = t0;
  while (t - t0 < ROUND_NS) {
    snprintf(key, sizeof key, "order-%llu", (unsigned long long)p->next++);
    resil_ns now = wc.now(wc.ud);
    sqlite3_bind_text(p->ins, 1, "tenant-1", -1, SQLITE_STATIC);
    sqlite3_bind_text(p->ins, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_blob(p->ins, 3, FP, sizeof FP, SQLITE_STATIC);
    sqlite3_bind_int64(p->ins, 4, (sqlite3_int64)(n * 2654435761u + 1));
    sqlite3_bind_int64(p->ins, 5, now + 30 * RESIL_SEC);
    sqlite3_bind_int64(p->ins, 6, now);
    plain_step(p, p->ins);
    sqlite3_bind_text(p->upd, 1, "tenant-1", -1, SQLITE_STATIC);
    sqlite3_bind_text(p->upd, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_int(p->upd, 3, 201);
    sqlite3_bind_blob(p->upd, 4, p->headers, p->headers_len, SQLITE_STATIC);
    sqlite3_bind_blob(p->upd, 5, BODY, sizeof BODY, SQLITE_STATIC);
    sqlite3_bind_int64(p->upd, 6, wc.now(wc.ud) + RESIL_STORE_DEFAULT_TTL);
    plain_step(p, p->upd);
    n++;
    t = bench_now();
  }
  return (double)n * 1e9 / (double)(t - t0);
}

static void plain_close(plain *p) {
  sqlite3_finalize(p->ins);
  sqlite3_finalize(p->upd);
  sqlite3_close(p->db);
}
#endif

/* ---- the table ------------------------------------------------------------------ */

static void print_row(const char *backend, const char *sync, double store, double base) {
  char b[32] = "-", ratio[32] = "-";
  if (base > 0) {
    snprintf(b, sizeof b, "%.0f", base);
    snprintf(ratio, sizeof ratio, "%.2fx", store / base);
  }
  printf("%-10s %-12s %14.0f %10.2f %20s %12s\n", backend, sync, store, 1e6 / store, b, ratio);
}

int main(void) {
  for (size_t i = 0; i < sizeof BODY; i++) BODY[i] = (unsigned char)(i * 131);
  for (size_t i = 0; i < sizeof FP; i++) FP[i] = (uint8_t)(i + 7);
  const char *tmp = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/resil-bench-store-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (mkdtemp(dir) == NULL) die("mkdtemp", "cannot create a temporary directory");

  printf("idempotency stores: claim + complete of a new key (256-byte body, 2 headers),\n"
         "one thread; 'plain' = INSERT + UPDATE of the same row in plain SQLite, same file\n"
         "settings, same directory (%s)\n\n",
         dir);
  printf("%-10s %-12s %14s %10s %20s %12s\n", "backend", "synchronous", "claims+completes/s",
         "us/op", "plain INSERT+UPDATE/s", "store/plain");

  double v[ROUNDS];
  subject x;
  store_open(&x, "memory:");
  for (int i = 0; i < ROUNDS; i++) v[i] = store_round(&x);
  resil_store_close(x.s);
  print_row("memory", "-", median(v, ROUNDS), 0);

#ifdef RESIL_HAVE_SQLITE
  for (int full = 1; full >= 0; full--) {
    char path[400], plain_path[400], url[512];
    snprintf(path, sizeof path, "%s/store%d.db", dir, files);
    snprintf(plain_path, sizeof plain_path, "%s/plain%d.db", dir, files++);
    snprintf(url, sizeof url, "sqlite:%s?synchronous=%s", path, full ? "full" : "normal");
    store_open(&x, url);
    plain p;
    plain_open(&p, plain_path, full);
    double w[ROUNDS];
    for (int i = 0; i < ROUNDS; i++) {
      v[i] = store_round(&x);
      w[i] = plain_round(&p);
    }
    resil_store_close(x.s);
    plain_close(&p);
    print_row("sqlite", full ? "full" : "normal", median(v, ROUNDS), median(w, ROUNDS));
    remove_db(path);
    remove_db(plain_path);
  }
#else
  printf("(sqlite: not built: RESIL_WITH_SQLITE=OFF)\n");
#endif
  rmdir(dir);
  return 0;
}
