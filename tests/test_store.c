/* Idempotency stores: the conformance suite (store_conformance.c) against
 * memory: and sqlite: (synchronous FULL and NORMAL), then what is specific
 * to each backend: URL parsing, the memory bound and its eviction order,
 * allocation counts and failures, and SQLite's failure modes (read-only,
 * locked, not a database, a newer schema, another program's database,
 * damaged rows, fork) and cross-process claims. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "resil/resil.h"
#include "store_conformance.h"
#include "test_util.h"

#ifdef RESIL_HAVE_SQLITE
#include <sqlite3.h>
#endif

#define WALL0 ((resil_ns)1700000000 * RESIL_SEC)
#define LEASE (30 * RESIL_SEC)
#define TTL RESIL_HOUR

static char tmpdir[256];

/* ---- conformance targets ------------------------------------------------------ */

static int memory_url(void *ud, char *buf, size_t len) {
  (void)ud;
  snprintf(buf, len, "memory:");
  return 0;
}

#ifdef RESIL_HAVE_SQLITE
static int files;

static int sqlite_url(void *ud, char *buf, size_t len) {
  const char *query = ud;
  snprintf(buf, len, "sqlite:%s/conf%d.db%s", tmpdir, files++, query);
  return 0;
}

static void remove_db(const char *path) {
  static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
  char p[4200];
  for (size_t i = 0; i < ARRAY_LEN(suffix); i++) {
    snprintf(p, sizeof p, "%s%s", path, suffix[i]);
    unlink(p);
  }
}

static void sqlite_remove(void *ud, const char *url) {
  (void)ud;
  char path[4200];
  snprintf(path, sizeof path, "%s", url + strlen("sqlite:"));
  char *q = strchr(path, '?');
  if (q) *q = '\0';
  remove_db(path);
}
#endif

/* ---- helpers ---------------------------------------------------------------- */

typedef struct fx {
  resil_fakeclock *fc;
} fx;

static int setup(void **state) {
  fx *f = calloc(1, sizeof *f);
  if (f == NULL || resil_fakeclock_new(&f->fc, 0, WALL0) != RESIL_OK) return -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx *f = *state;
  resil_fakeclock_free(f->fc);
  free(f);
  return 0;
}

static resil_store_options opts(fx *f) { return store_test_options(f->fc); }

/* Open url, which must work. */
static resil_store *open_ok(fx *f, const char *url) {
  return store_test_open(f->fc, url, NULL);
}

/* Open url, which must fail with want; the message must contain each of
 * the NULL-terminated needles. */
static void open_fails(fx *f, const char *url, resil_err want, ...) {
  resil_store_options o = opts(f);
  resil_store *s = (resil_store *)&o; /* must come back NULL */
  char err[512];
  resil_err rc = resil_store_open(&s, url, &o, err, sizeof err);
  if (rc != want) fprintf(stderr, "open %s: %s (%s)\n", url, err, resil_err_name(rc));
  assert_int_equal(rc, want);
  assert_null(s);
  va_list ap;
  va_start(ap, want);
  for (const char *n = va_arg(ap, const char *); n; n = va_arg(ap, const char *)) {
    if (strstr(err, n) == NULL) fprintf(stderr, "'%s' does not say '%s'\n", err, n);
    assert_non_null(strstr(err, n));
  }
  va_end(ap);
}

static const uint8_t *fp(int n) {
  static uint8_t b[8][RESIL_FINGERPRINT_SIZE];
  memset(b[n & 7], n, RESIL_FINGERPRINT_SIZE);
  return b[n & 7];
}

static resil_claim_status peek(resil_store *s, const char *key, int fpn) {
  resil_claim_result r;
  resil_err rc = resil_store_claim(s, "scope", key, fp(fpn), LEASE, &r);
  if (rc != RESIL_OK) fprintf(stderr, "claim %s: %s\n", key, resil_store_errmsg(s));
  assert_int_equal(rc, RESIL_OK);
  resil_claim_status st = r.status;
  resil_claim_result_clear(&r);
  return st;
}

static uint64_t take(resil_store *s, const char *key) {
  resil_claim_result r;
  resil_err rc = resil_store_claim(s, "scope", key, fp(1), LEASE, &r);
  if (rc != RESIL_OK) fprintf(stderr, "claim %s: %s\n", key, resil_store_errmsg(s));
  assert_int_equal(rc, RESIL_OK);
  assert_int_equal(r.status, RESIL_CLAIM_CLAIMED);
  return r.token;
}

static void done(resil_store *s, const char *key, uint64_t token, resil_ns ttl) {
  resil_stored_response r = {200, NULL, 0, key, strlen(key)};
  assert_int_equal(resil_store_complete(s, "scope", key, token, &r, ttl), RESIL_OK);
}

/* ---- the API around the backends ---------------------------------------------- */

static void test_names_and_defaults(void **state) {
  (void)state;
  resil_store_options o;
  memset(&o, 0xab, sizeof o);
  resil_store_options_init(&o);
  assert_int_equal(o.size, sizeof o);
  assert_non_null(o.clock.now);
  assert_non_null(o.alloc.malloc);
  resil_store_options_init(NULL);
  assert_string_equal(resil_claim_status_name(RESIL_CLAIM_CLAIMED), "claimed");
  assert_string_equal(resil_claim_status_name(RESIL_CLAIM_IN_PROGRESS), "in-progress");
  assert_string_equal(resil_claim_status_name(RESIL_CLAIM_REPLAY), "replay");
  assert_string_equal(resil_claim_status_name(RESIL_CLAIM_MISMATCH), "mismatch");
  assert_string_equal(resil_claim_status_name((resil_claim_status)42), "unknown");
  assert_string_equal(resil_store_name(NULL), "");
  assert_string_equal(resil_store_errmsg(NULL), "");
  resil_store_close(NULL);
  assert_int_equal(RESIL_STORE_DEFAULT_TTL, 24 * RESIL_HOUR);
}

static void test_open_errors(void **state) {
  fx *f = *state;
  open_fails(f, "bogus:x", RESIL_EINVAL, "unknown store scheme 'bogus' (use memory: or sqlite:PATH)",
             NULL);
  open_fails(f, "", RESIL_EINVAL, "empty store URL", NULL);
  open_fails(f, NULL, RESIL_EINVAL, "empty store URL", NULL);
  open_fails(f, "/var/lib/idem.db", RESIL_EINVAL, "no scheme", "memory:", NULL);
  open_fails(f, "memory", RESIL_EINVAL, "no scheme", NULL);
  open_fails(f, "averyveryverylongscheme:x", RESIL_EINVAL, "unknown store scheme", NULL);
  /* Known schemes, when built without them (test_store_redis.c and
   * test_store_pg.c test them built). rediss:// (TLS) is never supported. */
#ifndef RESIL_HAVE_REDIS
  open_fails(f, "redis://localhost:6379/0", RESIL_EUNSUPPORTED, "redis", NULL);
#endif
  open_fails(f, "rediss://localhost", RESIL_EUNSUPPORTED, "rediss", NULL);
#ifndef RESIL_HAVE_PG
  open_fails(f, "postgres://u@localhost/db", RESIL_EUNSUPPORTED, "postgres", NULL);
  open_fails(f, "PostgreSQL://u@localhost/db", RESIL_EUNSUPPORTED, "postgresql", NULL);
#endif

  /* memory: parameters. */
  open_fails(f, "memory:?max_entries=0", RESIL_EINVAL, "max_entries", "'0'", NULL);
  open_fails(f, "memory:?max_entries=abc", RESIL_EINVAL, "max_entries", NULL);
  open_fails(f, "memory:?max_entries=-1", RESIL_EINVAL, "max_entries", NULL);
  open_fails(f, "memory:?max_entries=+5", RESIL_EINVAL, "max_entries", NULL);
  open_fails(f, "memory:?max_entries=99999999999999999999999", RESIL_EINVAL, "max_entries", NULL);
  open_fails(f, "memory:?max_entries=", RESIL_EINVAL, "needs a value", NULL);
  open_fails(f, "memory:?max_entries", RESIL_EINVAL, "needs a value", NULL);
  open_fails(f, "memory:?max_entries=5&max_entries=6", RESIL_EINVAL, "given twice", NULL);
  open_fails(f, "memory:?bogus=1", RESIL_EINVAL, "unknown parameter 'bogus'", "max_entries", NULL);
  open_fails(f, "memory:?synchronous=full", RESIL_EINVAL, "unknown parameter 'synchronous'", NULL);
  open_fails(f, "memory:?=1", RESIL_EINVAL, "empty parameter", NULL);
  open_fails(f, "memory:?max_entries=1&", RESIL_EINVAL, "empty parameter", NULL);
  open_fails(f, "memory:?max_entries=%zz", RESIL_EINVAL, "escape", NULL);
  open_fails(f, "memory:?max_entries=1%00", RESIL_EINVAL, "escape", NULL);
  open_fails(f, "memory:/tmp/x", RESIL_EINVAL, "takes no path", NULL);

  /* sqlite: parameters are checked before any file is touched. */
#ifdef RESIL_HAVE_SQLITE
  open_fails(f, "sqlite:", RESIL_EINVAL, "needs a file path", NULL);
  open_fails(f, "sqlite:?synchronous=full", RESIL_EINVAL, "needs a file path", NULL);
  open_fails(f, "sqlite:/nonexistent/x.db?synchronous=off", RESIL_EINVAL,
             "synchronous must be full or normal, not 'off'", NULL);
  open_fails(f, "sqlite:/nonexistent/x.db?busy_timeout=-1", RESIL_EINVAL, "busy_timeout", NULL);
  open_fails(f, "sqlite:/nonexistent/x.db?busy_timeout=5s", RESIL_EINVAL, "busy_timeout", NULL);
  open_fails(f, "sqlite:/nonexistent/x.db?busy_timeout=99999999999", RESIL_EINVAL, "busy_timeout",
             NULL);
  open_fails(f, "sqlite:/nonexistent/x.db?max_entries=5", RESIL_EINVAL,
             "unknown parameter 'max_entries'", "synchronous, busy_timeout", NULL);
  open_fails(f, "sqlite://host/x.db", RESIL_EINVAL, "not a local file", NULL);
  open_fails(f, "sqlite:/bad%2", RESIL_EINVAL, "escape", NULL);
#else
  open_fails(f, "sqlite:/tmp/x.db", RESIL_EUNSUPPORTED, "RESIL_WITH_SQLITE=OFF", NULL);
#endif

  /* Options and outputs. */
  resil_store *s = NULL;
  assert_int_equal(resil_store_open(NULL, "memory:", NULL, NULL, 0), RESIL_EINVAL);
  assert_int_equal(resil_store_open(&s, "bogus:", NULL, NULL, 0), RESIL_EINVAL);
  char tiny[8];
  assert_int_equal(resil_store_open(&s, "bogus:", NULL, tiny, sizeof tiny), RESIL_EINVAL);
  assert_int_equal(strlen(tiny), sizeof tiny - 1);
  resil_store_options o = opts(f);
  o.size = 0;
  char err[256];
  assert_int_equal(resil_store_open(&s, "memory:", &o, err, sizeof err), RESIL_EINVAL);
  assert_non_null(strstr(err, "resil_store_options_init"));
  o = opts(f);
  o.clock.now = NULL;
  assert_int_equal(resil_store_open(&s, "memory:", &o, err, sizeof err), RESIL_EINVAL);
  o = opts(f);
  o.alloc.free = NULL;
  assert_int_equal(resil_store_open(&s, "memory:", &o, err, sizeof err), RESIL_EINVAL);
  assert_null(s);

  /* Scheme case and escapes; NULL options mean the defaults. */
  s = open_ok(f, "MeMoRy:?max_entries=%31%30");
  assert_string_equal(resil_store_name(s), "memory");
  assert_string_equal(resil_store_errmsg(s), "");
  resil_store_close(s);
  assert_int_equal(resil_store_open(&s, "memory:", NULL, NULL, 0), RESIL_OK);
  resil_store_close(s);
}

/* ---- memory: the bound --------------------------------------------------------- */

/* When full: expired entries go first, then completed ones by completion
 * time; claims are never evicted while their lease runs. */
static void test_memory_eviction_order(void **state) {
  fx *f = *state;
  resil_store *s = open_ok(f, "memory:?max_entries=3");
  done(s, "A", take(s, "A"), TTL);
  resil_fakeclock_advance(f->fc, RESIL_SEC);
  done(s, "B", take(s, "B"), RESIL_SEC);
  resil_fakeclock_advance(f->fc, RESIL_SEC);
  done(s, "C", take(s, "C"), TTL);
  resil_fakeclock_advance(f->fc, RESIL_SEC); /* B has expired */

  take(s, "D"); /* evicts B, although A is older */
  assert_int_equal(peek(s, "A", 1), RESIL_CLAIM_REPLAY);
  assert_int_equal(peek(s, "C", 1), RESIL_CLAIM_REPLAY);
  take(s, "E"); /* evicts A, the oldest completion */
  assert_int_equal(peek(s, "C", 1), RESIL_CLAIM_REPLAY);
  uint64_t ta = take(s, "A"); /* A was gone; this evicts C */

  /* Full of claims: existing keys still answer, new ones fail closed. */
  resil_claim_result r;
  assert_int_equal(resil_store_claim(s, "scope", "F", fp(1), LEASE, &r), RESIL_ESTORE);
  assert_int_equal(r.status, RESIL_CLAIM_IN_PROGRESS);
  assert_int_equal(r.token, 0);
  assert_non_null(strstr(resil_store_errmsg(s), "max_entries=3"));
  assert_int_equal(peek(s, "D", 1), RESIL_CLAIM_IN_PROGRESS);
  assert_int_equal(peek(s, "D", 2), RESIL_CLAIM_MISMATCH);

  assert_int_equal(resil_store_release(s, "scope", "A", ta), RESIL_OK);
  take(s, "C"); /* C was evicted: claimed afresh, not replayed */
  assert_int_equal(resil_store_claim(s, "scope", "G", fp(1), LEASE, &r), RESIL_ESTORE);

  /* Expired claims are evictable. */
  resil_fakeclock_advance(f->fc, LEASE);
  take(s, "G");
  resil_store_close(s);

  /* "Oldest" is the completion, not the claim. */
  s = open_ok(f, "memory:?max_entries=2");
  uint64_t tx = take(s, "X"), ty = take(s, "Y");
  done(s, "Y", ty, TTL);
  resil_fakeclock_advance(f->fc, 1);
  done(s, "X", tx, TTL);
  take(s, "Z"); /* evicts Y */
  assert_int_equal(peek(s, "X", 1), RESIL_CLAIM_REPLAY);
  resil_store_close(s);
}

static void test_memory_full_of_claims(void **state) {
  fx *f = *state;
  resil_store *s = open_ok(f, "memory:?max_entries=2");
  take(s, "a");
  resil_fakeclock_advance(f->fc, RESIL_SEC);
  take(s, "b");
  resil_claim_result r;
  assert_int_equal(resil_store_claim(s, "scope", "c", fp(1), LEASE, &r), RESIL_ESTORE);
  assert_non_null(strstr(resil_store_errmsg(s), "in-progress"));
  resil_fakeclock_advance(f->fc, LEASE - RESIL_SEC - 1);
  assert_int_equal(resil_store_claim(s, "scope", "c", fp(1), LEASE, &r), RESIL_ESTORE);
  resil_fakeclock_advance(f->fc, 1); /* a's lease ends */
  take(s, "c");
  assert_int_equal(peek(s, "b", 1), RESIL_CLAIM_IN_PROGRESS);
  uint64_t n = 0;
  assert_int_equal(resil_store_purge(s, &n), RESIL_OK);
  assert_int_equal(n, 0);
  resil_store_close(s);
}

/* ---- memory: allocations -------------------------------------------------------- */

typedef struct counting {
  long allocs, frees;
  long fail_in; /* fail the allocation after this many more; -1 never */
} counting;

static void *c_malloc(void *ud, size_t n) {
  counting *c = ud;
  if (c->fail_in == 0) return NULL;
  if (c->fail_in > 0) c->fail_in--;
  c->allocs++;
  return malloc(n);
}
static void *c_realloc(void *ud, void *p, size_t n) {
  counting *c = ud;
  if (c->fail_in == 0) return NULL;
  if (c->fail_in > 0) c->fail_in--;
  if (p == NULL) c->allocs++;
  return realloc(p, n);
}
static void c_free(void *ud, void *p) {
  counting *c = ud;
  if (p) c->frees++;
  free(p);
}

static resil_store *open_counting(fx *f, counting *c, const char *url) {
  resil_store_options o = opts(f);
  o.alloc = (resil_allocator){c_malloc, c_realloc, c_free, c};
  resil_store *s = NULL;
  assert_int_equal(resil_store_open(&s, url, &o, NULL, 0), RESIL_OK);
  return s;
}

/* A claim on a new key allocates its entry and nothing else; IN_PROGRESS
 * and MISMATCH allocate nothing; REPLAY allocates its one copy; taking over
 * an expired key allocates nothing. */
static void test_memory_allocations(void **state) {
  fx *f = *state;
  counting c = {0, 0, -1};
  resil_store *s = open_counting(f, &c, "memory:");
  take(s, "warm"); /* the heap's first block */
  long a = c.allocs;
  uint64_t t = take(s, "k");
  assert_int_equal(c.allocs - a, 1);
  a = c.allocs;
  assert_int_equal(peek(s, "k", 1), RESIL_CLAIM_IN_PROGRESS);
  assert_int_equal(peek(s, "k", 2), RESIL_CLAIM_MISMATCH);
  assert_int_equal(c.allocs - a, 0);
  done(s, "k", t, RESIL_SEC);
  assert_int_equal(c.allocs - a, 1);
  a = c.allocs;
  long fr = c.frees;
  resil_claim_result r;
  assert_int_equal(resil_store_claim(s, "scope", "k", fp(1), LEASE, &r), RESIL_OK);
  assert_int_equal(r.status, RESIL_CLAIM_REPLAY);
  assert_int_equal(c.allocs - a, 1);
  resil_claim_result_clear(&r);
  assert_int_equal(c.frees - fr, 1);
  a = c.allocs;
  resil_fakeclock_advance(f->fc, RESIL_SEC); /* k's record expires */
  take(s, "k");
  assert_int_equal(c.allocs - a, 0);
  assert_int_equal(c.frees - fr, 2); /* the old response */
  resil_store_close(s);
  assert_int_equal(c.allocs, c.frees);
}

/* Out of memory is an error the caller sees; the store stays consistent. */
static void test_memory_allocation_failures(void **state) {
  fx *f = *state;
  counting c = {0, 0, -1};
  resil_store *s = open_counting(f, &c, "memory:");
  take(s, "warm");
  resil_claim_result r;
  c.fail_in = 0;
  assert_int_equal(resil_store_claim(s, "scope", "k", fp(1), LEASE, &r), RESIL_ENOMEM);
  assert_int_equal(r.status, RESIL_CLAIM_IN_PROGRESS); /* fail closed */
  assert_non_null(strstr(resil_store_errmsg(s), "out of memory"));
  c.fail_in = -1;
  uint64_t t = take(s, "k");

  resil_stored_response resp = {200, NULL, 0, "body", 4};
  c.fail_in = 0;
  assert_int_equal(resil_store_complete(s, "scope", "k", t, &resp, TTL), RESIL_ENOMEM);
  c.fail_in = -1;
  assert_int_equal(peek(s, "k", 1), RESIL_CLAIM_IN_PROGRESS); /* unchanged */
  assert_int_equal(resil_store_complete(s, "scope", "k", t, &resp, TTL), RESIL_OK);

  c.fail_in = 0;
  assert_int_equal(resil_store_claim(s, "scope", "k", fp(1), LEASE, &r), RESIL_ENOMEM);
  assert_int_equal(r.status, RESIL_CLAIM_IN_PROGRESS);
  assert_null(r.owned_);
  c.fail_in = -1;
  assert_int_equal(peek(s, "k", 1), RESIL_CLAIM_REPLAY);

  /* Opening fails cleanly at every allocation. */
  for (long i = 0; i < 3; i++) {
    counting c2 = {0, 0, i};
    resil_store_options o = opts(f);
    o.alloc = (resil_allocator){c_malloc, c_realloc, c_free, &c2};
    resil_store *s2 = NULL;
    resil_err rc = resil_store_open(&s2, "memory:", &o, NULL, 0);
    if (rc == RESIL_OK) resil_store_close(s2);
    else assert_int_equal(rc, RESIL_ENOMEM);
    assert_int_equal(c2.allocs, c2.frees);
  }
  resil_store_close(s);
  assert_int_equal(c.allocs, c.frees);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

/* Tokens never repeat within a store and are never 0. */
static void test_memory_tokens_unique(void **state) {
  fx *f = *state;
  enum { N = 100000 };
  uint64_t *t = malloc(N * sizeof *t);
  assert_non_null(t);
  resil_store *s = open_ok(f, "memory:");
  for (int i = 0; i < N; i++) {
    char key[16];
    snprintf(key, sizeof key, "k%d", i % 7);
    t[i] = take(s, key);
    assert_true(t[i] != 0);
    assert_int_equal(resil_store_release(s, "scope", key, t[i]), RESIL_OK);
  }
  qsort(t, N, sizeof *t, cmp_u64);
  for (int i = 1; i < N; i++) assert_true(t[i] != t[i - 1]);
  resil_store_close(s);
  free(t);
}

/* ---- sqlite -------------------------------------------------------------------- */

#ifdef RESIL_HAVE_SQLITE

static void db_path(char *buf, size_t len, const char *name) {
  snprintf(buf, len, "%s/%s", tmpdir, name);
  remove_db(buf);
}

static void raw_exec(const char *path, const char *sql) {
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  char *err = NULL;
  int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
  if (rc != SQLITE_OK) fprintf(stderr, "%s: %s\n", sql, err);
  sqlite3_free(err);
  assert_int_equal(rc, SQLITE_OK);
  sqlite3_close(db);
}

static int64_t raw_int(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  int64_t v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

static void make_store_file(fx *f, const char *path) {
  char url[4300];
  snprintf(url, sizeof url, "sqlite:%s", path);
  resil_store_close(open_ok(f, url));
}

/* Version 1 as documented: WAL, the application id, the columns. Reopening
 * migrates nothing. */
static void test_sqlite_schema(void **state) {
  fx *f = *state;
  char path[4200];
  db_path(path, sizeof path, "schema.db");
  make_store_file(f, path);
  make_store_file(f, path);
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_equal(raw_int(db, "PRAGMA user_version"), 1);
  assert_int_equal(raw_int(db, "PRAGMA application_id"), 0x52534944);
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
  sqlite3_finalize(st);
  static const char *const cols[] = {"scope", "key", "fingerprint", "state", "token",
                                     "lease_expires", "status", "headers", "body",
                                     "expires_at", "created_at"};
  for (size_t i = 0; i < ARRAY_LEN(cols); i++) {
    char sql[160];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM pragma_table_info('resil_idempotency') WHERE name = '%s'",
             cols[i]);
    assert_int_equal(raw_int(db, sql), 1);
  }
  assert_int_equal(raw_int(db, "SELECT count(*) FROM pragma_table_info('resil_idempotency') "
                               "WHERE pk > 0"),
                   2);
  sqlite3_close(db);

  /* URL forms: sqlite:///abs, %XX in the path, both parameters. */
  char url[4200];
  snprintf(url, sizeof url, "sqlite://%s/a%%3Fb.db?synchronous=NORMAL&busy_timeout=250", tmpdir);
  resil_store *s = open_ok(f, url);
  done(s, "k", take(s, "k"), TTL);
  resil_store_close(s);
  snprintf(path, sizeof path, "%s/a?b.db", tmpdir);
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  remove_db(path);
}

/* Run fn in a child as an unprivileged user when we are root (root ignores
 * file permissions); 0 if it returned 0. */
static int as_unprivileged(int (*fn)(void *), void *arg) {
  if (geteuid() != 0) return fn(arg);
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
    _exit(fn(arg));
  }
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 100;
}

static int readonly_check(void *arg) {
  const char *path = arg;
  char url[4200], err[512];
  snprintf(url, sizeof url, "sqlite:%s", path);
  resil_store *s = NULL;
  resil_err rc = resil_store_open(&s, url, NULL, err, sizeof err);
  if (rc != RESIL_ESTORE || s != NULL) return 1;
  if (strstr(err, "read-only") == NULL || strstr(err, path) == NULL) {
    fprintf(stderr, "message: %s\n", err);
    return 2;
  }
  return 0;
}

static void test_sqlite_readonly(void **state) {
  fx *f = *state;
  char dir[300], path[4200];
  snprintf(dir, sizeof dir, "%s/ro", tmpdir);
  assert_int_equal(mkdir(dir, 0755), 0);
  assert_int_equal(chmod(tmpdir, 0755), 0); /* so an unprivileged child can reach it */
  snprintf(path, sizeof path, "%s/ro.db", dir);
  make_store_file(f, path);
  assert_int_equal(chmod(path, 0444), 0);
  assert_int_equal(as_unprivileged(readonly_check, path), 0);
  chmod(tmpdir, 0700);
  remove_db(path);
  rmdir(dir);
}

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Another connection holds the write lock past busy_timeout: every call
 * fails with RESIL_ESTORE saying so, and works again once it lets go. */
static void test_sqlite_locked(void **state) {
  fx *f = *state;
  char path[4200], url[4300];
  db_path(path, sizeof path, "locked.db");
  snprintf(url, sizeof url, "sqlite:%s?busy_timeout=100", path);
  resil_store *s = open_ok(f, url);
  uint64_t t = take(s, "held");

  sqlite3 *other = NULL;
  assert_int_equal(sqlite3_open(path, &other), SQLITE_OK);
  assert_int_equal(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);

  resil_claim_result r;
  int64_t t0 = mono_ms();
  assert_int_equal(resil_store_claim(s, "scope", "k", fp(1), LEASE, &r), RESIL_ESTORE);
  assert_true(mono_ms() - t0 >= 90);
  assert_int_equal(r.status, RESIL_CLAIM_IN_PROGRESS);
  const char *msg = resil_store_errmsg(s);
  assert_non_null(strstr(msg, "locked"));
  assert_non_null(strstr(msg, "busy_timeout=100ms"));
  assert_non_null(strstr(msg, path));
  resil_stored_response resp = {200, NULL, 0, "x", 1};
  assert_int_equal(resil_store_complete(s, "scope", "held", t, &resp, TTL), RESIL_ESTORE);
  assert_non_null(strstr(resil_store_errmsg(s), "locked"));
  assert_int_equal(resil_store_release(s, "scope", "held", t), RESIL_ESTORE);
  assert_int_equal(resil_store_purge(s, NULL), RESIL_ESTORE);
  /* Opening a second store on the file still works (WAL readers), and its
   * claims fail the same way. */
  resil_store *s2 = open_ok(f, url);
  assert_int_equal(resil_store_claim(s2, "scope", "k", fp(1), LEASE, &r), RESIL_ESTORE);
  resil_store_close(s2);

  assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(other);
  assert_int_equal(resil_store_complete(s, "scope", "held", t, &resp, TTL), RESIL_OK);
  take(s, "k");
  resil_store_close(s);
  remove_db(path);
}

typedef struct blocked_claim {
  resil_store *s;
  resil_err rc;
  resil_claim_result r;
} blocked_claim;

static void *claim_blocked(void *arg) {
  blocked_claim *b = arg;
  b->rc = resil_store_claim(b->s, "scope", "k", fp(1), LEASE, &b->r);
  return NULL;
}

/* A claim that waited for the file lock counts its lease from when it got
 * the lock, not from when it asked: otherwise the lease would end early. */
static void test_sqlite_lease_counts_from_lock(void **state) {
  fx *f = *state;
  char path[4200], url[4300];
  db_path(path, sizeof path, "wait.db");
  snprintf(url, sizeof url, "sqlite:%s?busy_timeout=20000", path);
  resil_store *s = open_ok(f, url);
  sqlite3 *other = NULL;
  assert_int_equal(sqlite3_open(path, &other), SQLITE_OK);
  assert_int_equal(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
  blocked_claim b = {s, RESIL_EINVAL, {0}};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, claim_blocked, &b), 0);
  struct timespec pause = {0, 100 * 1000 * 1000};
  nanosleep(&pause, NULL); /* the claim is waiting in BEGIN IMMEDIATE now */
  resil_fakeclock_advance(f->fc, 10 * RESIL_SEC);
  assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
  pthread_join(th, NULL);
  sqlite3_close(other);
  assert_int_equal(b.rc, RESIL_OK);
  assert_int_equal(b.r.status, RESIL_CLAIM_CLAIMED);
  assert_int_equal(b.r.lease_expires, WALL0 + 10 * RESIL_SEC + LEASE);
  resil_store_close(s);
  remove_db(path);
}

static void test_sqlite_not_a_database(void **state) {
  fx *f = *state;
  char path[4200], url[4300];
  db_path(path, sizeof path, "text.db");
  FILE *fh = fopen(path, "w");
  assert_non_null(fh);
  for (int i = 0; i < 200; i++) fputs("this is not a database, it is a text file\n", fh);
  fclose(fh);
  struct stat before, after;
  assert_int_equal(stat(path, &before), 0);
  snprintf(url, sizeof url, "sqlite:%s?busy_timeout=100", path);
  open_fails(f, url, RESIL_ESTORE, "not a database", path, NULL);
  assert_int_equal(stat(path, &after), 0);
  assert_int_equal(after.st_size, before.st_size);
  remove_db(path);
}

static void test_sqlite_newer_schema(void **state) {
  fx *f = *state;
  char path[4200], url[4300];
  db_path(path, sizeof path, "newer.db");
  make_store_file(f, path);
  raw_exec(path, "PRAGMA user_version = 99");
  snprintf(url, sizeof url, "sqlite:%s", path);
  open_fails(f, url, RESIL_ESTORE, "schema version 99 is newer than this resil knows (1)", NULL);
  remove_db(path);
}

/* Somebody else's database is never modified, nor is breakers.db (a resil
 * file with a different purpose and its own user_version). */
static void test_sqlite_foreign_database(void **state) {
  fx *f = *state;
  char path[4200], url[4300];
  db_path(path, sizeof path, "app.db");
  raw_exec(path, "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)");
  snprintf(url, sizeof url, "sqlite:%s", path);
  open_fails(f, url, RESIL_ESTORE, "not a resil idempotency store", NULL);
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_equal(raw_int(db, "SELECT count(*) FROM sqlite_master"), 1);
  assert_int_equal(raw_int(db, "PRAGMA user_version"), 0);
  sqlite3_close(db);
  remove_db(path);

  db_path(path, sizeof path, "breakers.db");
  raw_exec(path, "CREATE TABLE breakers (name TEXT PRIMARY KEY); PRAGMA user_version = 1");
  snprintf(url, sizeof url, "sqlite:%s", path);
  open_fails(f, url, RESIL_ESTORE, "not a resil idempotency store", NULL);
  remove_db(path);
}

static void test_sqlite_cannot_open(void **state) {
  fx *f = *state;
  char url[4300];
  snprintf(url, sizeof url, "sqlite:%s/no/such/dir/x.db", tmpdir);
  open_fails(f, url, RESIL_ESTORE, "unable to open", "/no/such/dir/x.db", NULL);
  snprintf(url, sizeof url, "sqlite:%s", tmpdir); /* a directory */
  open_fails(f, url, RESIL_ESTORE, "sqlite store", NULL);
}

/* Rows damaged behind the store's back give RESIL_ESTORE, never a crash or
 * a silent CLAIMED. */
static void test_sqlite_damaged_rows(void **state) {
  fx *f = *state;
  char path[4200], url[4300];
  db_path(path, sizeof path, "damaged.db");
  snprintf(url, sizeof url, "sqlite:%s", path);
  resil_store *s = open_ok(f, url);
  done(s, "headers", take(s, "headers"), TTL);
  done(s, "status", take(s, "status"), TTL);
  done(s, "body", take(s, "body"), TTL);
  take(s, "lease");
  raw_exec(path,
           "UPDATE resil_idempotency SET headers = x'0500000041' WHERE \"key\" = 'headers';"
           "UPDATE resil_idempotency SET status = NULL WHERE \"key\" = 'status';"
           "UPDATE resil_idempotency SET body = 'text' WHERE \"key\" = 'body';"
           "UPDATE resil_idempotency SET lease_expires = 'soon' WHERE \"key\" = 'lease';");
  resil_claim_result r;
  assert_int_equal(resil_store_claim(s, "scope", "headers", fp(1), LEASE, &r), RESIL_ESTORE);
  assert_non_null(strstr(resil_store_errmsg(s), "malformed"));
  assert_int_equal(r.status, RESIL_CLAIM_IN_PROGRESS);
  assert_int_equal(resil_store_claim(s, "scope", "status", fp(1), LEASE, &r), RESIL_ESTORE);
  assert_int_equal(resil_store_claim(s, "scope", "body", fp(1), LEASE, &r), RESIL_ESTORE);
  assert_int_equal(resil_store_claim(s, "scope", "lease", fp(1), LEASE, &r), RESIL_ESTORE);
  take(s, "fine"); /* the rest of the store still works */
  resil_store_close(s);
  remove_db(path);
}

/* Block until every write end of the pipe is closed. */
static void wait_eof(int fd) {
  char c;
  for (;;) {
    ssize_t n = read(fd, &c, 1);
    if (n > 0 || (n < 0 && errno == EINTR)) continue;
    return;
  }
}

/* 16 processes open a new file at once (creating the schema together), then
 * claim one key at once: exactly one CLAIMED, fifteen IN_PROGRESS. */
static void test_sqlite_cross_process(void **state) {
  fx *f = *state;
  enum { PROCS = 16 };
  char path[4200], url[4300];
  db_path(path, sizeof path, "procs.db");
  snprintf(url, sizeof url, "sqlite:%s?busy_timeout=20000", path);
  int start[2], ready[2], go[2];
  assert_int_equal(pipe(start), 0);
  assert_int_equal(pipe(ready), 0);
  assert_int_equal(pipe(go), 0);
  fflush(NULL);
  pid_t pids[PROCS];
  for (int i = 0; i < PROCS; i++) {
    pids[i] = fork();
    assert_true(pids[i] >= 0);
    if (pids[i] != 0) continue;
    close(start[1]);
    close(ready[0]);
    close(go[1]);
    wait_eof(start[0]); /* everyone opens at once */
    resil_store *s = NULL;
    char err[256];
    if (resil_store_open(&s, url, NULL, err, sizeof err) != RESIL_OK) {
      fprintf(stderr, "child open: %s\n", err);
      _exit(1);
    }
    if (write(ready[1], "r", 1) != 1) _exit(1);
    close(ready[1]);
    wait_eof(go[0]); /* everyone claims at once */
    resil_claim_result r;
    if (resil_store_claim(s, "scope", "shared", fp(1), 60 * RESIL_SEC, &r) != RESIL_OK) {
      fprintf(stderr, "child claim: %s\n", resil_store_errmsg(s));
      _exit(1);
    }
    _exit(r.status == RESIL_CLAIM_CLAIMED ? 10 : r.status == RESIL_CLAIM_IN_PROGRESS ? 11 : 2);
  }
  close(start[0]);
  close(ready[1]);
  close(go[0]);
  close(start[1]);
  char c;
  int opened = 0;
  while (opened < PROCS && read(ready[0], &c, 1) == 1) opened++;
  close(go[1]);
  close(ready[0]);
  int claimed = 0, in_progress = 0, other = 0;
  for (int i = 0; i < PROCS; i++) {
    int st = 0;
    assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (code == 10) claimed++;
    else if (code == 11) in_progress++;
    else other++;
  }
  assert_int_equal(opened, PROCS);
  assert_int_equal(other, 0);
  assert_int_equal(claimed, 1);
  assert_int_equal(in_progress, PROCS - 1);
  resil_store *s = open_ok(f, url);
  assert_int_equal(peek(s, "shared", 1), RESIL_CLAIM_IN_PROGRESS);
  resil_store_close(s);
  remove_db(path);
}

/* A store carried across fork() refuses to work in the child. */
static void test_sqlite_after_fork(void **state) {
  fx *f = *state;
  char path[4200], url[4300];
  db_path(path, sizeof path, "fork.db");
  snprintf(url, sizeof url, "sqlite:%s", path);
  resil_store *s = open_ok(f, url);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    resil_claim_result r;
    resil_err rc = resil_store_claim(s, "scope", "k", fp(1), LEASE, &r);
    _exit(rc == RESIL_ESTORE && strstr(resil_store_errmsg(s), "fork") ? 0 : 1);
  }
  int st = 0;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  take(s, "k"); /* the parent's store is unaffected */
  resil_store_close(s);
  remove_db(path);
}

#endif /* RESIL_HAVE_SQLITE */

/* ---- main ------------------------------------------------------------------------ */

static void remove_tree(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL) return;
  struct dirent *e;
  char p[4200];
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    struct stat sb;
    if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) remove_tree(p);
    else unlink(p);
  }
  closedir(d);
  rmdir(dir);
}

int main(void) {
  const char *base = getenv("TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s/resil-store-XXXXXX", base && *base ? base : "/tmp");
  if (mkdtemp(tmpdir) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  int failed = 0;
  store_target memory = {"memory:", "memory", memory_url, NULL, 0, NULL};
  failed += store_conformance_run(&memory);
#ifdef RESIL_HAVE_SQLITE
  /* The default settings are synchronous=FULL. */
  store_target full = {"sqlite:PATH (synchronous=full)", "sqlite", sqlite_url, sqlite_remove,
                       1, (void *)""};
  store_target normal = {"sqlite:PATH?synchronous=normal", "sqlite", sqlite_url, sqlite_remove,
                         1, (void *)"?synchronous=normal&busy_timeout=10000"};
  failed += store_conformance_run(&full);
  failed += store_conformance_run(&normal);
#endif

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_names_and_defaults),
      T(test_open_errors),
      T(test_memory_eviction_order),
      T(test_memory_full_of_claims),
      T(test_memory_allocations),
      T(test_memory_allocation_failures),
      T(test_memory_tokens_unique),
#ifdef RESIL_HAVE_SQLITE
      T(test_sqlite_schema),
      T(test_sqlite_readonly),
      T(test_sqlite_locked),
      T(test_sqlite_lease_counts_from_lock),
      T(test_sqlite_not_a_database),
      T(test_sqlite_newer_schema),
      T(test_sqlite_foreign_database),
      T(test_sqlite_cannot_open),
      T(test_sqlite_damaged_rows),
      T(test_sqlite_cross_process),
      T(test_sqlite_after_fork),
#endif
  };
#undef T
  failed += cmocka_run_group_tests_name("store backends", tests, NULL, NULL);
  remove_tree(tmpdir);
  return failed;
}
