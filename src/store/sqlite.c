/* The sqlite: store: one file shared by the processes of one host.
 *
 * Connections. One connection per store, guarded by the store's mutex, with
 * its statements prepared once at open and reused. Every claim is a write
 * transaction and SQLite admits one writer per file at a time, so a pool of
 * connections would not let two claims run at once; it would only make
 * threads of one process wait for each other through SQLite's busy handler,
 * which polls with sleeps of up to 100 ms, where a mutex hands over at once.
 * (SQLITE_OPEN_FULLMUTEX would not do: it serializes single calls, not the
 * BEGIN .. COMMIT sequence of a claim.) Processes each have their own
 * connection and meet in SQLite's file locks, waiting up to busy_timeout.
 *
 * Transactions. claim is BEGIN IMMEDIATE (the write lock up front, so no
 * SQLITE_BUSY_SNAPSHOT halfway through), SELECT, maybe INSERT OR REPLACE,
 * COMMIT. complete and release are one conditional UPDATE / DELETE each
 * (WHERE state = claimed AND token = ?): the token is the fence, and a
 * single statement is atomic on its own. purge is two DELETEs in one
 * transaction.
 *
 * Schema (PRAGMA user_version; PRAGMA application_id marks the file as a
 * resil idempotency store so no other database is ever modified):
 *   version 1: resil_idempotency(scope, key, fingerprint, state, token,
 *              lease_expires, status, headers, body, expires_at, created_at,
 *              PRIMARY KEY (scope, key)), with partial indexes on
 *              expires_at (completed rows) and lease_expires (claims) for
 *              purge. Times are INTEGER nanoseconds since the Unix epoch.
 * Migrations run in one BEGIN IMMEDIATE transaction at open; version N+1 is
 * one more function in `migrations`.
 *
 * Tokens are 63 random bits from getrandom() (never 0, never the token the
 * row had before), so processes forked from one parent do not share a
 * sequence. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>
#include <unistd.h>

#include "core/internal.h"
#include "resil/store.h"
#include "store/internal.h"


/* "RSID": PRAGMA application_id of a resil idempotency store. */
#define APP_ID 0x52534944

enum { ST_CLAIM = 0, ST_DONE = 1 };

enum {
  Q_BEGIN,
  Q_COMMIT,
  Q_ROLLBACK,
  Q_SELECT,
  Q_CLAIM,
  Q_COMPLETE,
  Q_RELEASE,
  Q_PURGE_DONE,
  Q_PURGE_LEASES,
  Q_COUNT
};

static const char *const query_sql[Q_COUNT] = {
    "BEGIN IMMEDIATE",
    "COMMIT",
    "ROLLBACK",
    "SELECT fingerprint, state, token, lease_expires, expires_at, status, headers, body"
    " FROM resil_idempotency WHERE scope = ?1 AND \"key\" = ?2",
    "INSERT OR REPLACE INTO resil_idempotency"
    " (scope, \"key\", fingerprint, state, token, lease_expires, created_at)"
    " VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6)",
    "UPDATE resil_idempotency SET state = 1, lease_expires = NULL, status = ?4,"
    " headers = ?5, body = ?6, expires_at = ?7"
    " WHERE scope = ?1 AND \"key\" = ?2 AND state = 0 AND token = ?3",
    "DELETE FROM resil_idempotency WHERE scope = ?1 AND \"key\" = ?2 AND state = 0"
    " AND token = ?3",
    "DELETE FROM resil_idempotency WHERE state = 1 AND expires_at <= ?1",
    "DELETE FROM resil_idempotency WHERE state = 0 AND lease_expires <= ?1",
};

typedef struct sql_store {
  resil_store base; /* first: a resil_store * is a sql_store * */
  pthread_mutex_t mu;
  int mu_ok;
  sqlite3 *db;
  sqlite3_stmt *q[Q_COUNT];
  pid_t pid;
  int busy_ms;
  char path[]; /* for messages */
} sql_store;

/* ---- errors ---------------------------------------------------------------- */

/* "sqlite store PATH: MESSAGE". */
static resil_err fail(sql_store *s, const char *msg) {
  resil__store_msg(s->base.errmsg, sizeof s->base.errmsg, "sqlite store %.120s: %s", s->path, msg);
  return RESIL_ESTORE;
}

/* SQLite's message for the last error, with what waiting or the OS says. */
static resil_err fail_db(sql_store *s, const char *what) {
  char msg[224];
  if (s->db == NULL) {
    snprintf(msg, sizeof msg, "cannot %s: out of memory", what);
    return fail(s, msg);
  }
  int code = sqlite3_extended_errcode(s->db) & 0xff;
  int sys = sqlite3_system_errno(s->db);
  char extra[96] = "";
  if (code == SQLITE_BUSY || code == SQLITE_LOCKED)
    snprintf(extra, sizeof extra, " (another connection held it past busy_timeout=%dms)",
             s->busy_ms);
  else if ((code == SQLITE_CANTOPEN || code == SQLITE_IOERR || code == SQLITE_FULL) && sys != 0)
    snprintf(extra, sizeof extra, " (%s)", strerror(sys));
  resil__store_msg(msg, sizeof msg, "cannot %s: %s%s", what, sqlite3_errmsg(s->db), extra);
  return fail(s, msg);
}

/* ---- statements ------------------------------------------------------------ */

/* Run a prepared statement that returns no rows; 0 or -1 with the message
 * set. The statement is reset either way. */
static int run(sql_store *s, int id, const char *what) {
  sqlite3_stmt *st = s->q[id];
  int rc = sqlite3_step(st);
  if (rc != SQLITE_DONE) fail_db(s, what);
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? 0 : -1;
}

static void rollback(sql_store *s) {
  /* Harmless when SQLite already rolled back on its own. */
  if (sqlite3_get_autocommit(s->db) == 0) {
    sqlite3_step(s->q[Q_ROLLBACK]);
    sqlite3_reset(s->q[Q_ROLLBACK]);
  }
}

static int exec(sql_store *s, const char *sql, const char *what) {
  if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK) return 0;
  fail_db(s, what);
  return -1;
}

/* One integer from a one-row query (used while opening only). */
static int query_int(sql_store *s, const char *sql, int64_t *out) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) return fail_db(s, "open"), -1;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) *out = sqlite3_column_int64(st, 0);
  else fail_db(s, "open");
  sqlite3_finalize(st);
  return rc == SQLITE_ROW ? 0 : -1;
}

static void bind_names(sqlite3_stmt *st, const char *scope, const char *key) {
  sqlite3_bind_text(st, 1, scope, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
}

/* A store is its opener's: SQLite connections must not cross fork(). */
static int wrong_process(sql_store *s) {
  if (getpid() == s->pid) return 0;
  fail(s, "used in a child process after fork(); open a store in the child");
  return 1;
}

/* ---- schema and migrations -------------------------------------------------- */

static int migrate_to_1(sql_store *s) {
  return exec(s,
              "CREATE TABLE resil_idempotency ("
              " scope TEXT NOT NULL,"
              " \"key\" TEXT NOT NULL,"
              " fingerprint BLOB NOT NULL CHECK (length(fingerprint) = 32),"
              " state INTEGER NOT NULL CHECK (state IN (0, 1)),"  /* 0 claimed, 1 completed */
              " token INTEGER NOT NULL,"
              " lease_expires INTEGER,"                            /* claimed: ns since epoch */
              " status INTEGER,"                                   /* completed: the response */
              " headers BLOB,"
              " body BLOB,"
              " expires_at INTEGER,"                               /* completed: ns since epoch */
              " created_at INTEGER NOT NULL,"                      /* this claim's start */
              " PRIMARY KEY (scope, \"key\"));"
              "CREATE INDEX resil_idempotency_expiry ON resil_idempotency (expires_at)"
              " WHERE state = 1;"
              "CREATE INDEX resil_idempotency_lease ON resil_idempotency (lease_expires)"
              " WHERE state = 0;",
              "create the schema");
}

/* Version N is reached from N-1 by migrations[N-1]; append only. */
static const struct migration {
  int version;
  int (*up)(sql_store *s);
} migrations[] = {
    {1, migrate_to_1},
};
#define SCHEMA_VERSION 1
_Static_assert(sizeof migrations / sizeof migrations[0] == SCHEMA_VERSION,
               "one migration per schema version");

typedef struct file_info {
  int64_t app, version, tables;
} file_info;

static int read_info(sql_store *s, file_info *fi) {
  if (query_int(s, "PRAGMA application_id", &fi->app) != 0) return -1;
  if (query_int(s, "PRAGMA user_version", &fi->version) != 0) return -1;
  return query_int(s, "SELECT count(*) FROM sqlite_master", &fi->tables);
}

/* Never modify a database that is not a resil store, or one a newer resil
 * wrote. Only reads. */
static int check_ours(sql_store *s, const file_info *fi) {
  char msg[200];
  if (fi->app == APP_ID) {
    if (fi->version > SCHEMA_VERSION) {
      snprintf(msg, sizeof msg,
               "schema version %" PRId64 " is newer than this resil knows (%d): a newer resil "
               "wrote it; upgrade resil or use another file",
               fi->version, SCHEMA_VERSION);
      return fail(s, msg), -1;
    }
    if (fi->version < 1) return fail(s, "damaged store: it has no schema version"), -1;
    return 0;
  }
  if (fi->app == 0 && fi->version == 0 && fi->tables == 0) return 0; /* a new file */
  snprintf(msg, sizeof msg,
           "a SQLite database, but not a resil idempotency store (application_id %" PRId64
           ", user_version %" PRId64 "); use another file",
           fi->app, fi->version);
  return fail(s, msg), -1;
}

/* Read the header in one read transaction (consistent even while another
 * process is creating the schema) and check it. */
static int inspect(sql_store *s, file_info *fi) {
  if (exec(s, "BEGIN", "open") != 0) return -1;
  int rc = read_info(s, fi);
  if (sqlite3_get_autocommit(s->db) == 0) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
  return rc == 0 ? check_ours(s, fi) : -1;
}

static int journal_is_wal(sql_store *s) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode", -1, &st, NULL) != SQLITE_OK) return -1;
  int rc = sqlite3_step(st);
  const unsigned char *mode = rc == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
  int wal = mode != NULL && strcmp((const char *)mode, "wal") == 0;
  sqlite3_finalize(st);
  return rc == SQLITE_ROW ? wal : -1;
}

/* WAL: readers beside the writer, one append per commit. The mode is kept in
 * the file. Switching needs a lock SQLite does not wait for through the busy
 * handler, so retry for up to busy_timeout while others open the file too.
 * Where WAL is impossible SQLite keeps a rollback journal: slower, as safe. */
static int use_wal(sql_store *s) {
  for (int waited = 0;; waited += 10) {
    int wal = journal_is_wal(s);
    if (wal < 0) return fail_db(s, "open"), -1;
    if (wal) return 0;
    int rc = sqlite3_exec(s->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
    if (rc == SQLITE_OK) return 0;
    if ((rc & 0xff) != SQLITE_BUSY || waited >= s->busy_ms)
      return fail_db(s, "switch to WAL"), -1;
    sqlite3_sleep(10);
  }
}

/* Create or upgrade the schema, all in one write transaction. The header is
 * read again inside it: another process may have migrated meanwhile. */
static int migrate(sql_store *s, const file_info *seen) {
  if (seen->app == APP_ID && seen->version == SCHEMA_VERSION) return 0;
  if (exec(s, "BEGIN IMMEDIATE", "migrate the schema") != 0) return -1;
  file_info fi;
  if (read_info(s, &fi) != 0 || check_ours(s, &fi) != 0) goto fail;
  for (size_t i = 0; i < sizeof migrations / sizeof migrations[0]; i++) {
    if (migrations[i].version <= fi.version) continue;
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", migrations[i].version);
    if (migrations[i].up(s) != 0 || exec(s, sql, "migrate the schema") != 0) goto fail;
  }
  if (fi.app != APP_ID) {
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA application_id = %d", APP_ID);
    if (exec(s, sql, "migrate the schema") != 0) goto fail;
  }
  if (exec(s, "COMMIT", "migrate the schema") != 0) goto fail;
  return 0;
fail:
  if (sqlite3_get_autocommit(s->db) == 0) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
  return -1;
}

/* ---- tokens ----------------------------------------------------------------- */

static uint64_t new_token(uint64_t previous) {
  for (;;) {
    uint64_t t = 0;
    if (getrandom(&t, sizeof t, 0) != (ssize_t)sizeof t) sqlite3_randomness(sizeof t, &t);
    t &= (uint64_t)INT64_MAX;
    if (t != 0 && t != previous) return t;
  }
}

/* ---- the protocol ----------------------------------------------------------- */

/* The current row of Q_SELECT, checked. */
typedef struct row {
  const void *fp;
  int state;
  int64_t token, deadline; /* lease_expires or expires_at */
  int status;
  const void *headers, *body;
  size_t headers_len, body_len;
} row;

static int col_is(sqlite3_stmt *st, int i, int type) { return sqlite3_column_type(st, i) == type; }

static int read_row(sqlite3_stmt *st, row *r) {
  memset(r, 0, sizeof *r);
  if (!col_is(st, 0, SQLITE_BLOB) || sqlite3_column_bytes(st, 0) != RESIL_FINGERPRINT_SIZE)
    return -1;
  r->fp = sqlite3_column_blob(st, 0);
  if (!col_is(st, 1, SQLITE_INTEGER) || !col_is(st, 2, SQLITE_INTEGER)) return -1;
  int64_t state = sqlite3_column_int64(st, 1);
  r->token = sqlite3_column_int64(st, 2);
  if (state == ST_CLAIM) {
    if (!col_is(st, 3, SQLITE_INTEGER)) return -1;
    r->deadline = sqlite3_column_int64(st, 3);
  } else if (state == ST_DONE) {
    if (!col_is(st, 4, SQLITE_INTEGER) || !col_is(st, 5, SQLITE_INTEGER)) return -1;
    r->deadline = sqlite3_column_int64(st, 4);
    int64_t status = sqlite3_column_int64(st, 5);
    if (status < INT32_MIN || status > INT32_MAX) return -1;
    r->status = (int)status;
    for (int i = 6; i <= 7; i++)
      if (!col_is(st, i, SQLITE_BLOB) && !col_is(st, i, SQLITE_NULL)) return -1;
    r->headers = sqlite3_column_blob(st, 6);
    r->headers_len = (size_t)sqlite3_column_bytes(st, 6);
    r->body = sqlite3_column_blob(st, 7);
    r->body_len = (size_t)sqlite3_column_bytes(st, 7);
  } else {
    return -1;
  }
  r->state = (int)state;
  return 0;
}

static resil_err sql_claim(resil_store *bs, const char *scope, const char *key,
                           const uint8_t fingerprint[RESIL_FINGERPRINT_SIZE], resil_ns lease,
                           resil_claim_result *out) {
  sql_store *s = (sql_store *)bs;
  if (wrong_process(s)) return RESIL_ESTORE;
  resil_err rc = RESIL_OK;
  int take = 0;
  uint64_t previous = 0;

  pthread_mutex_lock(&s->mu);
  if (run(s, Q_BEGIN, "claim") != 0) {
    pthread_mutex_unlock(&s->mu);
    return RESIL_ESTORE;
  }
  /* Read only now: BEGIN may have waited up to busy_timeout, and a lease
   * counted from before the wait would end early. */
  resil_ns now = bs->clock.now(bs->clock.ud);
  memset(out, 0, sizeof *out);
  sqlite3_stmt *st = s->q[Q_SELECT];
  bind_names(st, scope, key);
  int step = sqlite3_step(st);
  if (step == SQLITE_ROW) {
    row r;
    if (read_row(st, &r) != 0) {
      char msg[200];
      snprintf(msg, sizeof msg, "cannot claim: the row for key '%.100s' is malformed", key);
      rc = fail(s, msg);
    } else if (r.deadline <= now) {
      take = 1; /* expired: as good as absent */
      previous = (uint64_t)r.token;
    } else if (memcmp(r.fp, fingerprint, RESIL_FINGERPRINT_SIZE) != 0) {
      out->status = RESIL_CLAIM_MISMATCH;
    } else if (r.state == ST_CLAIM) {
      out->status = RESIL_CLAIM_IN_PROGRESS;
      out->lease_expires = r.deadline;
    } else {
      rc = resil__store_replay(out, &bs->alloc, r.status, r.headers, r.headers_len, r.body,
                               r.body_len);
      if (rc == RESIL_EPARSE) {
        char msg[200];
        snprintf(msg, sizeof msg, "cannot claim: the stored headers of key '%.100s' are malformed",
                 key);
        rc = fail(s, msg);
      } else if (rc == RESIL_ENOMEM) {
        fail(s, "cannot claim: out of memory copying the stored response");
      }
    }
  } else if (step == SQLITE_DONE) {
    take = 1;
  } else {
    rc = fail_db(s, "claim");
  }
  sqlite3_reset(st);

  uint64_t token = 0;
  resil_ns lease_expires = resil_ns_add(now, lease);
  if (rc == RESIL_OK && take) {
    token = new_token(previous);
    sqlite3_stmt *ins = s->q[Q_CLAIM];
    bind_names(ins, scope, key);
    sqlite3_bind_blob(ins, 3, fingerprint, RESIL_FINGERPRINT_SIZE, SQLITE_STATIC);
    sqlite3_bind_int64(ins, 4, (sqlite3_int64)token);
    sqlite3_bind_int64(ins, 5, lease_expires);
    sqlite3_bind_int64(ins, 6, now);
    if (run(s, Q_CLAIM, "claim") != 0) rc = RESIL_ESTORE;
  }
  if (rc == RESIL_OK && run(s, Q_COMMIT, "commit a claim") != 0) rc = RESIL_ESTORE;
  if (rc != RESIL_OK) {
    rollback(s);
    resil_claim_result_clear(out);
  } else if (take) {
    out->status = RESIL_CLAIM_CLAIMED;
    out->token = token;
    out->lease_expires = lease_expires;
  }
  pthread_mutex_unlock(&s->mu);
  return rc;
}

/* Run Q_COMPLETE or Q_RELEASE (bound) and check that it hit the claim. */
static resil_err fenced(sql_store *s, int id, const char *op, const char *key) {
  if (run(s, id, op) != 0) return RESIL_ESTORE;
  if (sqlite3_changes(s->db) == 1) return RESIL_OK;
  char msg[224];
  snprintf(msg, sizeof msg,
           "cannot %s: the token does not own key '%.60s' (completed, released, purged, or "
           "claimed again after the lease expired)",
           op, key);
  return fail(s, msg);
}

static resil_err sql_complete(resil_store *bs, const char *scope, const char *key,
                              uint64_t token, const resil_stored_response *r, resil_ns ttl) {
  sql_store *s = (sql_store *)bs;
  if (wrong_process(s)) return RESIL_ESTORE;
  size_t hl;
  if (resil__store_headers_size(r->headers, r->n_headers, &hl) != RESIL_OK) {
    fail(s, "cannot complete: the response headers are too large");
    return RESIL_EINVAL;
  }
  unsigned char *blob = resil__alloc(&bs->alloc, hl);
  if (blob == NULL) {
    fail(s, "cannot complete: out of memory");
    return RESIL_ENOMEM;
  }
  resil__store_headers_encode(r->headers, r->n_headers, blob);
  resil_ns now = bs->clock.now(bs->clock.ud);

  pthread_mutex_lock(&s->mu);
  sqlite3_stmt *st = s->q[Q_COMPLETE];
  bind_names(st, scope, key);
  sqlite3_bind_int64(st, 3, (sqlite3_int64)token);
  sqlite3_bind_int(st, 4, r->status);
  sqlite3_bind_blob64(st, 5, blob, hl, SQLITE_STATIC);
  if (r->body_len > 0)
    sqlite3_bind_blob64(st, 6, r->body, r->body_len, SQLITE_STATIC);
  else
    sqlite3_bind_zeroblob(st, 6, 0); /* an empty body, not NULL */
  sqlite3_bind_int64(st, 7, resil_ns_add(now, ttl));
  resil_err rc = fenced(s, Q_COMPLETE, "complete", key);
  sqlite3_clear_bindings(st); /* drop the pointers to the caller's body */
  pthread_mutex_unlock(&s->mu);
  resil__free(&bs->alloc, blob);
  return rc;
}

static resil_err sql_release(resil_store *bs, const char *scope, const char *key,
                             uint64_t token) {
  sql_store *s = (sql_store *)bs;
  if (wrong_process(s)) return RESIL_ESTORE;
  pthread_mutex_lock(&s->mu);
  sqlite3_stmt *st = s->q[Q_RELEASE];
  bind_names(st, scope, key);
  sqlite3_bind_int64(st, 3, (sqlite3_int64)token);
  resil_err rc = fenced(s, Q_RELEASE, "release", key);
  pthread_mutex_unlock(&s->mu);
  return rc;
}

static resil_err sql_purge(resil_store *bs, uint64_t *purged) {
  sql_store *s = (sql_store *)bs;
  if (wrong_process(s)) return RESIL_ESTORE;
  resil_ns now = bs->clock.now(bs->clock.ud);
  uint64_t n = 0;
  resil_err rc = RESIL_ESTORE;
  pthread_mutex_lock(&s->mu);
  if (run(s, Q_BEGIN, "purge") == 0) {
    sqlite3_bind_int64(s->q[Q_PURGE_DONE], 1, now);
    sqlite3_bind_int64(s->q[Q_PURGE_LEASES], 1, now);
    if (run(s, Q_PURGE_DONE, "purge") == 0) {
      n += (uint64_t)sqlite3_changes(s->db);
      if (run(s, Q_PURGE_LEASES, "purge") == 0) {
        n += (uint64_t)sqlite3_changes(s->db);
        if (run(s, Q_COMMIT, "commit a purge") == 0) rc = RESIL_OK;
      }
    }
    if (rc != RESIL_OK) rollback(s);
  }
  pthread_mutex_unlock(&s->mu);
  if (purged) *purged = rc == RESIL_OK ? n : 0;
  return rc;
}

/* ---- open and close ----------------------------------------------------------- */

static void destroy(sql_store *s) {
  for (int i = 0; i < Q_COUNT; i++) sqlite3_finalize(s->q[i]); /* NULL-safe */
  sqlite3_close_v2(s->db);                                      /* NULL-safe */
  if (s->mu_ok) pthread_mutex_destroy(&s->mu);
  resil_allocator a = s->base.alloc;
  resil__free(&a, s);
}

static void sql_close(resil_store *bs) { destroy((sql_store *)bs); }

static const resil_store_vtab sql_vtab = {
    1, "sqlite", sql_claim, sql_complete, sql_release, sql_purge, sql_close,
};

static int setup(sql_store *s, int sync_full) {
  if (sqlite3_threadsafe() == 0)
    return fail(s, "cannot open: this SQLite library was built without thread support"), -1;
  int rc = sqlite3_open_v2(s->path, &s->db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) return fail_db(s, "open"), -1;
  sqlite3_extended_result_codes(s->db, 1);
  sqlite3_busy_timeout(s->db, s->busy_ms);
  /* SQLite falls back to read-only when the file is not writable; a store
   * that cannot record a claim is useless, so say so now. */
  if (sqlite3_db_readonly(s->db, "main") == 1)
    return fail(s, "cannot open: the file is read-only (a store must be writable)"), -1;

  file_info fi;
  if (inspect(s, &fi) != 0 || use_wal(s) != 0 || migrate(s, &fi) != 0) return -1;
  if (exec(s, sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", "open") != 0)
    return -1;
  for (int i = 0; i < Q_COUNT; i++) {
    if (sqlite3_prepare_v3(s->db, query_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->q[i], NULL) !=
        SQLITE_OK)
      return fail_db(s, "prepare its statements"), -1;
  }
  return 0;
}

resil_err resil__store_sqlite_open(resil_store **out, const resil_store_options *o,
                                   const char *path, int sync_full, int busy_timeout_ms,
                                   char *err, size_t errlen) {
  size_t plen = strlen(path);
  sql_store *s = resil__calloc(&o->alloc, sizeof *s + plen + 1);
  if (s == NULL) {
    snprintf(err, errlen, "sqlite store %.120s: out of memory", path);
    return RESIL_ENOMEM;
  }
  s->base.vtab = &sql_vtab;
  s->base.clock = o->clock;
  s->base.alloc = o->alloc;
  memcpy(s->path, path, plen + 1);
  s->pid = getpid();
  s->busy_ms = busy_timeout_ms;
  if (pthread_mutex_init(&s->mu, NULL) != 0) {
    snprintf(err, errlen, "sqlite store %.120s: cannot create a mutex", path);
    destroy(s);
    return RESIL_ESYS;
  }
  s->mu_ok = 1;
  if (setup(s, sync_full) != 0) {
    snprintf(err, errlen, "%s", s->base.errmsg);
    destroy(s);
    return RESIL_ESTORE;
  }
  s->base.errmsg[0] = '\0';
  *out = &s->base;
  return RESIL_OK;
}
