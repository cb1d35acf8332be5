/* The postgres:// store: one PostgreSQL database shared by any number of
 * processes and hosts, and a transactional mode on the caller's connection
 * (include/resil/store_pg.h). See docs/stores.md.
 *
 * URL. postgres://... or postgresql://..., passed to libpq (so every libpq
 * parameter works: sslmode, connect_timeout, application_name, ...) after
 * resil's own parameters are taken out:
 *   schema=NAME       the tables live in this schema (created if missing);
 *                     default: none, the connection's search_path decides
 *   lock_timeout=MS   how long a claim waits for a row another transaction
 *                     holds (default 5000; 0 waits forever)
 * Defaults given to libpq, which the URL overrides: connect_timeout=5,
 * fallback_application_name=resil.
 *
 * Schema (version 1), versioned in resil_schema (one row per applied
 * version):
 *   resil_idempotency(scope bytea, "key" bytea, fingerprint bytea, state
 *     smallint (0 claimed, 1 completed), token bigint, lease_expires bigint,
 *     status integer, headers bytea, body bytea, expires_at bigint,
 *     created_at bigint, PRIMARY KEY (scope, "key")), with partial indexes
 *     on expires_at (completed) and lease_expires (claims) for purge.
 * Scope and key are bytea because they are any bytes but NUL, not
 * necessarily UTF-8. Times are nanoseconds since the epoch by the store's
 * injected wall clock: the server's clock (now()) is never used, so a fake
 * clock drives every decision and purge exactly as in the other backends.
 * Opening checks the version with plain reads; only when the schema is
 * missing or old does it take pg_advisory_xact_lock and create or migrate
 * it in one transaction, so concurrent openers create it exactly once.
 *
 * claim: INSERT ... ON CONFLICT DO NOTHING RETURNING (one autocommitted
 * statement for a new key); if the key exists, in one transaction, SELECT
 * ... FOR UPDATE, read the clock (after the row lock), and decide: take over
 * an expired claim or record (UPDATE with a new token), or answer
 * IN_PROGRESS / REPLAY / MISMATCH. If the row vanished in between (released,
 * purged) it starts again. complete and release are one UPDATE / DELETE
 * fenced by "state = claimed AND token = $token"; purge is one DELETE.
 *
 * Connections. A pool as in the Redis store: a call takes an idle
 * connection or opens one, and puts it back. A call whose connection broke
 * reconnects once and repeats with the same token and a retry flag, so an
 * answer lost after the server committed is recognised (our own token)
 * rather than reported as someone else's claim. Anything else is
 * RESIL_ESTORE: fail closed. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"
#include "resil/store.h"
#include "store/internal.h"
#include "resil/store_pg.h"


#define POOL_IDLE 32
#define DEFAULT_LOCK_TIMEOUT_MS 5000
#define SCHEMA_NAME_MAX 63
/* A claim whose INSERT took longer than this (it waited for another
 * transaction holding the same key) restarts its lease from the clock read
 * after the wait. */
#define LEASE_RESYNC (100 * RESIL_MSEC)
/* pg_advisory_xact_lock key for schema changes: "RSID" 0x00000001. */
#define SCHEMA_LOCK_KEY "5932165690583678977"
/* bytea's limit is 1 GB. */
#define VALUE_MAX ((size_t)1 << 30)

enum { OID_BYTEA = 17, OID_INT8 = 20, OID_INT4 = 23, OID_TEXT = 25 };

enum {
  Q_INSERT,
  Q_SELECT,
  Q_TAKE,
  Q_LEASE,
  Q_COMPLETE,
  Q_RELEASE,
  Q_PEEK,
  Q_PURGE,
  Q_VERSION,
  Q_COUNT
};

/* @T is the idempotency table, @S the schema version table. */
static const char *const query_tmpl[Q_COUNT] = {
    "INSERT INTO @T (scope, \"key\", fingerprint, state, token, lease_expires, created_at)"
    " VALUES ($1, $2, $3, 0, $4, $5, $6) ON CONFLICT (scope, \"key\") DO NOTHING RETURNING token",
    "SELECT fingerprint, state, token, lease_expires, expires_at, status, headers, body"
    " FROM @T WHERE scope = $1 AND \"key\" = $2 FOR UPDATE",
    "UPDATE @T SET fingerprint = $3, state = 0, token = $4, lease_expires = $5, created_at = $6,"
    " status = NULL, headers = NULL, body = NULL, expires_at = NULL"
    " WHERE scope = $1 AND \"key\" = $2",
    "UPDATE @T SET lease_expires = $4"
    " WHERE scope = $1 AND \"key\" = $2 AND state = 0 AND token = $3",
    "UPDATE @T SET state = 1, lease_expires = NULL, status = $4, headers = $5, body = $6,"
    " expires_at = $7 WHERE scope = $1 AND \"key\" = $2 AND state = 0 AND token = $3",
    "DELETE FROM @T WHERE scope = $1 AND \"key\" = $2 AND state = 0 AND token = $3",
    "SELECT state, token FROM @T WHERE scope = $1 AND \"key\" = $2",
    "DELETE FROM @T WHERE (state = 1 AND expires_at <= $1) OR (state = 0 AND lease_expires <= $1)",
    "SELECT coalesce(max(version), 0) FROM @S",
};

static const char MIGRATE_TO_1[] =
    "CREATE TABLE @T ("
    " scope bytea NOT NULL,"
    " \"key\" bytea NOT NULL,"
    " fingerprint bytea NOT NULL CHECK (length(fingerprint) = 32),"
    " state smallint NOT NULL CHECK (state IN (0, 1)),"  /* 0 claimed, 1 completed */
    " token bigint NOT NULL,"
    " lease_expires bigint,"                              /* claimed: ns since the epoch */
    " status integer,"                                    /* completed: the response */
    " headers bytea,"
    " body bytea,"
    " expires_at bigint,"                                 /* completed: ns since the epoch */
    " created_at bigint NOT NULL,"                        /* this claim's start */
    " PRIMARY KEY (scope, \"key\"),"
    " CHECK (state = 1 OR lease_expires IS NOT NULL),"
    " CHECK (state = 0 OR (expires_at IS NOT NULL AND status IS NOT NULL)));"
    "CREATE INDEX resil_idempotency_expiry ON @T (expires_at) WHERE state = 1;"
    "CREATE INDEX resil_idempotency_lease ON @T (lease_expires) WHERE state = 0;";

/* Version N is reached from N-1 by migrations[N-1]; append only. */
static const char *const migrations[] = {MIGRATE_TO_1};
#define SCHEMA_VERSION 1
_Static_assert(sizeof migrations / sizeof migrations[0] == SCHEMA_VERSION,
               "one migration per schema version");

typedef struct pg_store {
  resil_store base; /* first: a resil_store * is a pg_store * */
  pthread_mutex_t mu;     /* the pool, or the borrowed connection */
  pthread_mutex_t err_mu; /* base.errmsg */
  int mu_ok, err_mu_ok;
  PGconn *borrowed; /* transactional mode: the caller's, never closed */
  PGconn *idle[POOL_IDLE];
  int n_idle;
  pid_t pid;
  char *conninfo;   /* the URL without resil's parameters */
  char *schema;     /* NULL: the search_path */
  char *table, *schema_table; /* quoted, qualified names */
  int lock_timeout_ms;
  char *sql[Q_COUNT];
  char where[128];  /* "host:port/db", for messages; never the password */
} pg_store;

/* ---- errors ----------------------------------------------------------------------- */

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 2, 3)))
#endif
static resil_err fail(pg_store *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  resil_err e = resil__store_vfail(&s->base, &s->err_mu, s->where, fmt, ap);
  va_end(ap);
  return e;
}

/* The first line of a libpq message, with a hint for the states a caller
 * can act on. */
static void pg_reason(PGconn *c, const PGresult *r, char *buf, size_t len) {
  const char *m = r ? PQresultErrorMessage(r) : NULL;
  if (m == NULL || *m == '\0') m = c ? PQerrorMessage(c) : "out of memory";
  if (strncmp(m, "ERROR:  ", 8) == 0) m += 8;
  size_t n = strcspn(m, "\n");
  if (n == 0) {
    m = "connection lost";
    n = strlen(m);
  }
  const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
  const char *hint = "";
  if (state && strcmp(state, "55P03") == 0)
    hint = " (another transaction held the row past lock_timeout)";
  else if (state && (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0))
    hint = " (roll back and retry the transaction)";
  snprintf(buf, len, "%.*s%s", (int)(n > 150 ? 150 : n), m, hint);
}

static resil_err fail_pg(pg_store *s, PGconn *c, const PGresult *r, const char *what,
                         const char *key) {
  char why[200];
  pg_reason(c, r, why, sizeof why);
  if (key) return fail(s, "cannot %s key '%.60s': %s", what, key, why);
  return fail(s, "cannot %s: %s", what, why);
}

/* ---- statements ------------------------------------------------------------------- */

typedef struct params {
  int n;
  const char *v[8];
  int len[8];
  int fmt[8];
  Oid type[8];
  unsigned char num[8][8]; /* binary integers, big-endian */
} params;

static void p_bytes(params *p, const void *b, size_t n) {
  p->v[p->n] = n ? b : "";
  p->len[p->n] = (int)n;
  p->fmt[p->n] = 1;
  p->type[p->n] = OID_BYTEA;
  p->n++;
}

static void p_int(params *p, int64_t x, int bytes, Oid type) {
  unsigned char *d = p->num[p->n];
  uint64_t u = (uint64_t)x;
  for (int i = 0; i < bytes; i++) d[i] = (unsigned char)(u >> (8 * (bytes - 1 - i)));
  p->v[p->n] = (const char *)d;
  p->len[p->n] = bytes;
  p->fmt[p->n] = 1;
  p->type[p->n] = type;
  p->n++;
}

static void p_i64(params *p, int64_t x) { p_int(p, x, 8, OID_INT8); }
static void p_i32(params *p, int32_t x) { p_int(p, x, 4, OID_INT4); }

static void p_names(params *p, const char *scope, const char *key) {
  p_bytes(p, scope, strlen(scope));
  p_bytes(p, key, strlen(key));
}

/* Run with binary results; NULL when the statement failed (*res keeps the
 * failed result for the message; PQclear it). */
static PGresult *run(PGconn *c, const char *sql, const params *p, PGresult **failed) {
  *failed = NULL;
  PGresult *r = PQexecParams(c, sql, p ? p->n : 0, p ? p->type : NULL, p ? p->v : NULL,
                             p ? p->len : NULL, p ? p->fmt : NULL, 1);
  ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return r;
  *failed = r;
  return NULL;
}

/* A statement without parameters or rows (BEGIN, COMMIT, DDL); 0 or -1
 * with the message set. */
static int simple(pg_store *s, PGconn *c, const char *sql, const char *what) {
  PGresult *r = PQexec(c, sql);
  if (r != NULL && PQresultStatus(r) == PGRES_COMMAND_OK) {
    PQclear(r);
    return 0;
  }
  fail_pg(s, c, r, what, NULL);
  PQclear(r);
  return -1;
}

static void rollback(PGconn *c) {
  if (PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) != PQTRANS_IDLE)
    PQclear(PQexec(c, "ROLLBACK"));
}

static int64_t get_int(const PGresult *r, int row, int col) {
  const unsigned char *d = (const unsigned char *)PQgetvalue(r, row, col);
  int n = PQgetlength(r, row, col);
  uint64_t u = (n > 0 && (d[0] & 0x80)) ? ~(uint64_t)0 : 0; /* sign */
  for (int i = 0; i < n; i++) u = u << 8 | d[i];
  return (int64_t)u;
}

static int is_int(const PGresult *r, int row, int col, int bytes) {
  return !PQgetisnull(r, row, col) && PQgetlength(r, row, col) == bytes;
}

/* "1" rows affected, as a number. */
static long affected(PGresult *r) { return strtol(PQcmdTuples(r), NULL, 10); }

/* ---- connections ------------------------------------------------------------------ */

static void quiet(void *ud, const char *msg) {
  (void)ud;
  (void)msg; /* CREATE ... IF NOT EXISTS notices are not for stderr */
}

static PGconn *connect_one(pg_store *s) {
  const char *kw[] = {"connect_timeout", "fallback_application_name", "dbname", NULL};
  const char *val[] = {"5", "resil", s->conninfo, NULL};
  PGconn *c = PQconnectdbParams(kw, val, 1);
  if (c == NULL || PQstatus(c) != CONNECTION_OK) {
    char why[200];
    pg_reason(c, NULL, why, sizeof why);
    fail(s, "cannot connect: %s", why);
    PQfinish(c);
    return NULL;
  }
  PQsetNoticeProcessor(c, quiet, NULL);
  char set[64];
  snprintf(set, sizeof set, "SET lock_timeout = %d", s->lock_timeout_ms);
  if (simple(s, c, set, "set lock_timeout") != 0) {
    PQfinish(c);
    return NULL;
  }
  return c;
}

static int wrong_process(pg_store *s) {
  if (s->borrowed != NULL || getpid() == s->pid) return 0;
  fail(s, "used in a child process after fork(); open a store in the child");
  return 1;
}

/* The borrowed connection (locked), an idle one, or a new one; NULL with
 * the message set. */
static PGconn *conn_get(pg_store *s) {
  if (s->borrowed != NULL) {
    pthread_mutex_lock(&s->mu);
    return s->borrowed;
  }
  PGconn *c = NULL;
  pthread_mutex_lock(&s->mu);
  if (s->n_idle > 0) c = s->idle[--s->n_idle];
  pthread_mutex_unlock(&s->mu);
  return c != NULL ? c : connect_one(s);
}

static void conn_put(pg_store *s, PGconn *c) {
  if (s->borrowed != NULL) {
    pthread_mutex_unlock(&s->mu);
    return;
  }
  if (c == NULL) return;
  if (PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) == PQTRANS_IDLE) {
    pthread_mutex_lock(&s->mu);
    if (s->n_idle < POOL_IDLE) {
      s->idle[s->n_idle++] = c;
      c = NULL;
    }
    pthread_mutex_unlock(&s->mu);
  }
  if (c != NULL) PQfinish(c);
}

/* Whether a failed call may reconnect and repeat: only on the pool's own
 * connections, and only when the connection itself broke. */
static int can_retry(const pg_store *s, PGconn *c) {
  return s->borrowed == NULL && PQstatus(c) == CONNECTION_BAD;
}

/* The connection's transaction state allows a call: 0, or -1 with the
 * message set. *own is whether no transaction is open. */
static int usable(pg_store *s, PGconn *c, const char *what, int *own) {
  if (PQstatus(c) != CONNECTION_OK) {
    fail(s, "cannot %s: the connection is broken", what);
    return -1;
  }
  switch (PQtransactionStatus(c)) {
    case PQTRANS_IDLE: *own = 1; return 0;
    case PQTRANS_INTRANS: *own = 0; return 0;
    case PQTRANS_INERROR:
      fail(s, "cannot %s: the connection's transaction is aborted (roll it back first)", what);
      return -1;
    default:
      fail(s, "cannot %s: the connection is busy with another command", what);
      return -1;
  }
}

/* ---- tokens ------------------------------------------------------------------------ */

static uint64_t new_token(uint64_t previous) {
  for (;;) {
    uint64_t t = 0;
    if (getrandom(&t, sizeof t, 0) != (ssize_t)sizeof t) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      t = ((uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull) ^ (uint64_t)ts.tv_sec ^
          (uint64_t)(uintptr_t)&ts;
    }
    t &= (uint64_t)INT64_MAX;
    if (t != 0 && t != previous) return t;
  }
}

/* ---- the protocol ------------------------------------------------------------------- */

/* Row 0 of Q_SELECT, checked. */
typedef struct row {
  const void *fp;
  int state;
  int64_t token, deadline;
  int status;
  const void *headers, *body;
  size_t headers_len, body_len;
} row;

static int read_row(const PGresult *r, row *w) {
  memset(w, 0, sizeof *w);
  if (PQnfields(r) != 8 || PQgetisnull(r, 0, 0) || PQgetlength(r, 0, 0) != RESIL_FINGERPRINT_SIZE)
    return -1;
  w->fp = PQgetvalue(r, 0, 0);
  if (!is_int(r, 0, 1, 2) || !is_int(r, 0, 2, 8)) return -1;
  int64_t state = get_int(r, 0, 1);
  w->token = get_int(r, 0, 2);
  if (state == 0) {
    if (!is_int(r, 0, 3, 8)) return -1;
    w->deadline = get_int(r, 0, 3);
  } else if (state == 1) {
    if (!is_int(r, 0, 4, 8) || !is_int(r, 0, 5, 4)) return -1;
    w->deadline = get_int(r, 0, 4);
    w->status = (int)get_int(r, 0, 5);
    if (!PQgetisnull(r, 0, 6)) {
      w->headers = PQgetvalue(r, 0, 6);
      w->headers_len = (size_t)PQgetlength(r, 0, 6);
    }
    if (!PQgetisnull(r, 0, 7)) {
      w->body = PQgetvalue(r, 0, 7);
      w->body_len = (size_t)PQgetlength(r, 0, 7);
    }
  } else {
    return -1;
  }
  w->state = (int)state;
  return 0;
}

/* One attempt at a claim on c. *token may be replaced (a takeover never
 * reuses the holder's token). */
static resil_err claim_on(pg_store *s, PGconn *c, const char *scope, const char *key,
                          const uint8_t *fp, resil_ns lease, uint64_t *token, int retry,
                          resil_claim_result *out) {
  resil_store *bs = &s->base;
  int own;
  if (usable(s, c, "claim", &own) != 0) return RESIL_ESTORE;
  PGresult *bad = NULL, *r = NULL;
  resil_err rc = RESIL_OK;
  /* A row can vanish between the INSERT's conflict and the SELECT (released
   * or purged meanwhile): then start again, a few times at most. */
  for (int loop = 0; loop < 5; loop++) {
    resil_ns now = bs->clock.now(bs->clock.ud);
    resil_ns lease_expires = resil_ns_add(now, lease);
    params p = {0};
    p_names(&p, scope, key);
    p_bytes(&p, fp, RESIL_FINGERPRINT_SIZE);
    p_i64(&p, (int64_t)*token);
    p_i64(&p, lease_expires);
    p_i64(&p, now);
    if ((r = run(c, s->sql[Q_INSERT], &p, &bad)) == NULL) {
      fail_pg(s, c, bad, "claim", key);
      PQclear(bad);
      return RESIL_ESTORE;
    }
    int inserted = PQntuples(r) == 1;
    PQclear(r);
    if (inserted) {
      /* The INSERT may have waited for another transaction holding the key:
       * count the lease from after the wait. */
      resil_ns after = bs->clock.now(bs->clock.ud);
      if (after - now > LEASE_RESYNC) {
        lease_expires = resil_ns_add(after, lease);
        params q = {0};
        p_names(&q, scope, key);
        p_i64(&q, (int64_t)*token);
        p_i64(&q, lease_expires);
        if ((r = run(c, s->sql[Q_LEASE], &q, &bad)) == NULL) {
          fail_pg(s, c, bad, "claim", key);
          PQclear(bad);
          return RESIL_ESTORE;
        }
        PQclear(r);
      }
      out->status = RESIL_CLAIM_CLAIMED;
      out->token = *token;
      out->lease_expires = lease_expires;
      return RESIL_OK;
    }

    /* The key exists: lock it and decide. */
    if (own && simple(s, c, "BEGIN", "claim") != 0) return RESIL_ESTORE;
    params names = {0};
    p_names(&names, scope, key);
    if ((r = run(c, s->sql[Q_SELECT], &names, &bad)) == NULL) {
      rc = fail_pg(s, c, bad, "claim", key);
      PQclear(bad);
      goto out;
    }
    /* Read only now: the row lock may have been a wait. */
    now = bs->clock.now(bs->clock.ud);
    if (PQntuples(r) == 0) {
      PQclear(r);
      r = NULL;
      if (own && simple(s, c, "COMMIT", "claim") != 0) return RESIL_ESTORE;
      continue;
    }
    row w;
    if (read_row(r, &w) != 0) {
      rc = fail(s, "cannot claim: the row for key '%.100s' is malformed", key);
    } else if (w.deadline <= now) {
      /* Expired: as good as absent. Take it over with a new token. */
      if ((uint64_t)w.token == *token) *token = new_token((uint64_t)w.token);
      lease_expires = resil_ns_add(now, lease);
      params q = {0};
      p_names(&q, scope, key);
      p_bytes(&q, fp, RESIL_FINGERPRINT_SIZE);
      p_i64(&q, (int64_t)*token);
      p_i64(&q, lease_expires);
      p_i64(&q, now);
      PGresult *u = run(c, s->sql[Q_TAKE], &q, &bad);
      if (u == NULL || affected(u) != 1) {
        rc = u ? fail(s, "cannot claim key '%.60s': the row vanished under its lock", key)
               : fail_pg(s, c, bad, "claim", key);
      } else {
        out->status = RESIL_CLAIM_CLAIMED;
        out->token = *token;
        out->lease_expires = lease_expires;
      }
      PQclear(u);
      PQclear(bad);
    } else if (memcmp(w.fp, fp, RESIL_FINGERPRINT_SIZE) != 0) {
      out->status = RESIL_CLAIM_MISMATCH;
    } else if (w.state == 0) {
      if (retry && (uint64_t)w.token == *token) {
        /* Our first attempt committed; only its answer was lost. */
        out->status = RESIL_CLAIM_CLAIMED;
        out->token = *token;
      } else {
        out->status = RESIL_CLAIM_IN_PROGRESS;
      }
      out->lease_expires = w.deadline;
    } else {
      rc = resil__store_replay(out, &bs->alloc, w.status, w.headers, w.headers_len, w.body,
                               w.body_len);
      if (rc == RESIL_EPARSE)
        rc = fail(s, "cannot claim: the stored headers of key '%.100s' are malformed", key);
      else if (rc == RESIL_ENOMEM)
        fail(s, "cannot claim: out of memory copying the stored response");
    }
    PQclear(r);
    r = NULL;
    if (rc == RESIL_OK && own && simple(s, c, "COMMIT", "commit a claim") != 0) rc = RESIL_ESTORE;
    goto out;
  }
  return fail(s, "cannot claim key '%.60s': the row kept changing", key);
out:
  if (rc != RESIL_OK) {
    resil_claim_result_clear(out);
    memset(out, 0, sizeof *out);
    if (own) rollback(c);
  }
  return rc;
}

static resil_err pg_claim(resil_store *bs, const char *scope, const char *key,
                          const uint8_t fingerprint[RESIL_FINGERPRINT_SIZE], resil_ns lease,
                          resil_claim_result *out) {
  pg_store *s = (pg_store *)bs;
  if (wrong_process(s)) return RESIL_ESTORE;
  memset(out, 0, sizeof *out);
  uint64_t token = new_token(0);
  PGconn *c = conn_get(s);
  if (c == NULL) return RESIL_ESTORE;
  resil_err rc;
  for (int attempt = 0;; attempt++) {
    rc = claim_on(s, c, scope, key, fingerprint, lease, &token, attempt, out);
    if (rc == RESIL_OK || attempt > 0 || !can_retry(s, c)) break;
    PQfinish(c);
    if ((c = connect_one(s)) == NULL) {
      rc = RESIL_ESTORE;
      break;
    }
  }
  conn_put(s, c);
  return rc;
}

static resil_err not_owner(pg_store *s, const char *op, const char *key) {
  return fail(s,
              "cannot %s: the token does not own key '%.60s' (completed, released, purged, or "
              "claimed again after the lease expired)",
              op, key);
}

/* On a retry after a broken connection: did the first attempt already do
 * it? complete: the row is completed with this token; release: no row. */
static int already_done(pg_store *s, PGconn *c, const char *scope, const char *key,
                        uint64_t token, int completing) {
  params p = {0};
  p_names(&p, scope, key);
  PGresult *bad, *r = run(c, s->sql[Q_PEEK], &p, &bad);
  PQclear(bad);
  if (r == NULL) return 0;
  int done;
  if (completing)
    done = PQntuples(r) == 1 && is_int(r, 0, 0, 2) && is_int(r, 0, 1, 8) &&
           get_int(r, 0, 0) == 1 && (uint64_t)get_int(r, 0, 1) == token;
  else
    done = PQntuples(r) == 0;
  PQclear(r);
  return done;
}

/* complete or release (a single fenced statement) with one reconnect. */
static resil_err fenced(pg_store *s, const char *scope, const char *key, uint64_t token,
                        int id, const params *p, const char *op) {
  PGconn *c = conn_get(s);
  if (c == NULL) return RESIL_ESTORE;
  resil_err rc = RESIL_ESTORE;
  for (int attempt = 0;; attempt++) {
    int own;
    if (usable(s, c, op, &own) != 0) break;
    PGresult *bad, *r = run(c, s->sql[id], p, &bad);
    if (r != NULL) {
      long n = affected(r);
      PQclear(r);
      if (n == 1 || (attempt > 0 && already_done(s, c, scope, key, token, id == Q_COMPLETE)))
        rc = RESIL_OK;
      else
        rc = not_owner(s, op, key);
      break;
    }
    fail_pg(s, c, bad, op, key);
    PQclear(bad);
    if (attempt > 0 || !can_retry(s, c)) break;
    PQfinish(c);
    if ((c = connect_one(s)) == NULL) break;
  }
  conn_put(s, c);
  return rc;
}

static resil_err pg_complete(resil_store *bs, const char *scope, const char *key, uint64_t token,
                             const resil_stored_response *resp, resil_ns ttl) {
  pg_store *s = (pg_store *)bs;
  if (wrong_process(s)) return RESIL_ESTORE;
  size_t hl;
  if (resil__store_headers_size(resp->headers, resp->n_headers, &hl) != RESIL_OK ||
      hl > VALUE_MAX || resp->body_len > VALUE_MAX) {
    fail(s, "cannot complete: the response is too large (PostgreSQL stores up to 1 GB a value)");
    return RESIL_EINVAL;
  }
  unsigned char *blob = resil__alloc(&bs->alloc, hl + 1);
  if (blob == NULL) {
    fail(s, "cannot complete: out of memory");
    return RESIL_ENOMEM;
  }
  resil__store_headers_encode(resp->headers, resp->n_headers, blob);
  resil_ns now = bs->clock.now(bs->clock.ud);
  params p = {0};
  p_names(&p, scope, key);
  p_i64(&p, (int64_t)token);
  p_i32(&p, resp->status);
  p_bytes(&p, blob, hl);
  p_bytes(&p, resp->body, resp->body_len);
  p_i64(&p, resil_ns_add(now, ttl));
  resil_err rc = fenced(s, scope, key, token, Q_COMPLETE, &p, "complete");
  resil__free(&bs->alloc, blob);
  return rc;
}

static resil_err pg_release(resil_store *bs, const char *scope, const char *key,
                            uint64_t token) {
  pg_store *s = (pg_store *)bs;
  if (wrong_process(s)) return RESIL_ESTORE;
  params p = {0};
  p_names(&p, scope, key);
  p_i64(&p, (int64_t)token);
  return fenced(s, scope, key, token, Q_RELEASE, &p, "release");
}

static resil_err pg_purge(resil_store *bs, uint64_t *purged) {
  pg_store *s = (pg_store *)bs;
  if (wrong_process(s)) return RESIL_ESTORE;
  resil_ns now = bs->clock.now(bs->clock.ud);
  params p = {0};
  p_i64(&p, now);
  PGconn *c = conn_get(s);
  if (c == NULL) return RESIL_ESTORE;
  resil_err rc = RESIL_ESTORE;
  uint64_t n = 0;
  for (int attempt = 0;; attempt++) {
    int own;
    if (usable(s, c, "purge", &own) != 0) break;
    PGresult *bad, *r = run(c, s->sql[Q_PURGE], &p, &bad);
    if (r != NULL) {
      n = (uint64_t)affected(r);
      PQclear(r);
      rc = RESIL_OK;
      break;
    }
    fail_pg(s, c, bad, "purge", NULL);
    PQclear(bad);
    if (attempt > 0 || !can_retry(s, c)) break;
    PQfinish(c);
    if ((c = connect_one(s)) == NULL) break;
  }
  conn_put(s, c);
  if (purged) *purged = rc == RESIL_OK ? n : 0;
  return rc;
}

/* ---- schema ------------------------------------------------------------------------ */

/* The schema version in the database (0: no resil_schema table); -1 with
 * the message set. Reads only, and never fails for a missing table, so it
 * is safe inside the caller's transaction. */
static int read_version(pg_store *s, PGconn *c, int *version) {
  params p = {0};
  p.v[0] = s->schema_table;
  p.len[0] = (int)strlen(s->schema_table);
  p.fmt[0] = 0;
  p.type[0] = OID_TEXT;
  p.n = 1;
  PGresult *bad, *r = run(c, "SELECT to_regclass($1) IS NOT NULL", &p, &bad);
  if (r == NULL) {
    fail_pg(s, c, bad, "read the schema version", NULL);
    PQclear(bad);
    return -1;
  }
  int exists = PQntuples(r) == 1 && PQgetlength(r, 0, 0) == 1 && PQgetvalue(r, 0, 0)[0] == 1;
  PQclear(r);
  if (!exists) {
    *version = 0;
    return 0;
  }
  if ((r = run(c, s->sql[Q_VERSION], NULL, &bad)) == NULL) {
    fail_pg(s, c, bad, "read the schema version", NULL);
    PQclear(bad);
    return -1;
  }
  int ok = PQntuples(r) == 1 && is_int(r, 0, 0, 4);
  if (ok) *version = (int)get_int(r, 0, 0);
  PQclear(r);
  if (!ok) return fail(s, "cannot read the schema version: unexpected answer"), -1;
  return 0;
}

static int check_version(pg_store *s, int version) {
  if (version <= SCHEMA_VERSION) return 0;
  fail(s,
       "schema version %d is newer than this resil knows (%d): a newer resil wrote it; "
       "upgrade resil or use another schema",
       version, SCHEMA_VERSION);
  return -1;
}

/* Replace @T and @S in tmpl; NULL when out of memory. */
static char *fill(pg_store *s, const char *tmpl) {
  size_t tl = strlen(s->table), sl = strlen(s->schema_table), n = 0;
  for (const char *p = tmpl; *p; p++) n += (p[0] == '@' && (p[1] == 'T' || p[1] == 'S')) ? (p[1] == 'T' ? tl : sl) : 1;
  char *out = resil__alloc(&s->base.alloc, n + 1), *w = out;
  if (out == NULL) return NULL;
  for (const char *p = tmpl; *p; p++) {
    if (p[0] == '@' && (p[1] == 'T' || p[1] == 'S')) {
      const char *name = p[1] == 'T' ? s->table : s->schema_table;
      size_t l = p[1] == 'T' ? tl : sl;
      memcpy(w, name, l);
      w += l;
      p++;
    } else {
      *w++ = *p;
    }
  }
  *w = '\0';
  return out;
}

/* Create or upgrade the schema in one transaction under an advisory lock,
 * reading the version again inside it: another opener may have done it
 * meanwhile. */
static int migrate(pg_store *s, PGconn *c) {
  const char *what = "create the schema";
  if (simple(s, c, "BEGIN", what) != 0) return -1;
  char *sql = NULL;
  int version = 0;
  /* Openers wait for each other here (a migration takes milliseconds). */
  if (simple(s, c, "SET LOCAL lock_timeout = 60000", what) != 0) goto fail;
  PGresult *r = PQexec(c, "SELECT pg_advisory_xact_lock(" SCHEMA_LOCK_KEY ")");
  int locked = r != NULL && PQresultStatus(r) == PGRES_TUPLES_OK;
  if (!locked) fail_pg(s, c, r, what, NULL);
  PQclear(r);
  if (!locked) goto fail;
  if (s->schema != NULL) {
    size_t ql = strlen(s->schema_table);
    char *q = resil__alloc(&s->base.alloc, ql + 40);
    if (q == NULL) goto fail;
    /* schema_table is "<quoted schema>.resil_schema": the schema part. */
    size_t sl = ql - strlen(".resil_schema");
    snprintf(q, ql + 40, "CREATE SCHEMA IF NOT EXISTS %.*s", (int)sl, s->schema_table);
    int rc = simple(s, c, q, what);
    resil__free(&s->base.alloc, q);
    if (rc != 0) goto fail;
  }
  if ((sql = fill(s, "CREATE TABLE IF NOT EXISTS @S (version integer PRIMARY KEY,"
                     " applied_at timestamptz NOT NULL DEFAULT now())")) == NULL ||
      simple(s, c, sql, what) != 0)
    goto fail;
  resil__free(&s->base.alloc, sql);
  sql = NULL;
  if (read_version(s, c, &version) != 0 || check_version(s, version) != 0) goto fail;
  for (int v = version + 1; v <= SCHEMA_VERSION; v++) {
    if ((sql = fill(s, migrations[v - 1])) == NULL || simple(s, c, sql, what) != 0) goto fail;
    resil__free(&s->base.alloc, sql);
    char ins[64];
    snprintf(ins, sizeof ins, "INSERT INTO @S (version) VALUES (%d)", v);
    if ((sql = fill(s, ins)) == NULL || simple(s, c, sql, what) != 0) goto fail;
    resil__free(&s->base.alloc, sql);
    sql = NULL;
  }
  if (simple(s, c, "COMMIT", what) != 0) goto fail;
  return 0;
fail:
  if (s->base.errmsg[0] == '\0') fail(s, "cannot create the schema: out of memory");
  resil__free(&s->base.alloc, sql);
  rollback(c);
  return -1;
}

/* The schema is there and current, or made so. */
static int setup_schema(pg_store *s, PGconn *c) {
  int version;
  if (read_version(s, c, &version) != 0 || check_version(s, version) != 0) return -1;
  if (version == SCHEMA_VERSION) return 0;
  if (PQtransactionStatus(c) != PQTRANS_IDLE) {
    fail(s,
         "the schema is %s (version %d, need %d) and cannot be created inside the caller's "
         "transaction: open the store once outside a transaction (or by URL) first",
         version ? "old" : "missing", version, SCHEMA_VERSION);
    return -1;
  }
  return migrate(s, c);
}

/* ---- open and close ----------------------------------------------------------------- */

static void destroy(pg_store *s) {
  /* In a child after fork() the sockets are the parent's: PQfinish would
   * send Terminate and end the parent's sessions. Leave them be. */
  if (getpid() == s->pid)
    for (int i = 0; i < s->n_idle; i++) PQfinish(s->idle[i]);
  if (s->mu_ok) pthread_mutex_destroy(&s->mu);
  if (s->err_mu_ok) pthread_mutex_destroy(&s->err_mu);
  resil_allocator a = s->base.alloc;
  for (int i = 0; i < Q_COUNT; i++) resil__free(&a, s->sql[i]);
  if (s->conninfo) {
    /* It may hold a password: do not leave it in freed memory. */
    volatile char *p = s->conninfo;
    while (*p) *p++ = 0;
  }
  resil__free(&a, s->conninfo);
  resil__free(&a, s->schema);
  resil__free(&a, s->table);
  resil__free(&a, s->schema_table);
  resil__free(&a, s);
}

static void pg_close(resil_store *bs) { destroy((pg_store *)bs); }

static const resil_store_vtab pg_vtab = {
    1, "postgres", pg_claim, pg_complete, pg_release, pg_purge, pg_close,
};

/* "\"sch\"\"ema\".name" or "name". */
static char *qualified(const resil_allocator *a, const char *schema, const char *name) {
  size_t n = strlen(name) + 1;
  if (schema) n += 2 * strlen(schema) + 3;
  char *q = resil__alloc(a, n), *w = q;
  if (q == NULL) return NULL;
  if (schema) {
    *w++ = '"';
    for (const char *p = schema; *p; p++) {
      if (*p == '"') *w++ = '"';
      *w++ = *p;
    }
    *w++ = '"';
    *w++ = '.';
  }
  strcpy(w, name);
  return q;
}

/* A store around connection-independent settings; the caller sets
 * conninfo or borrowed, then calls finish_open. */
static pg_store *new_store(const resil_store_options *o, const char *schema, char *err,
                           size_t errlen) {
  pg_store *s = resil__calloc(&o->alloc, sizeof *s);
  if (s == NULL) {
    snprintf(err, errlen, "postgres store: out of memory");
    return NULL;
  }
  s->base.vtab = &pg_vtab;
  s->base.clock = o->clock;
  s->base.alloc = o->alloc;
  s->pid = getpid();
  s->lock_timeout_ms = DEFAULT_LOCK_TIMEOUT_MS;
  snprintf(s->where, sizeof s->where, "?");
  int ok = pthread_mutex_init(&s->mu, NULL) == 0;
  s->mu_ok = ok;
  ok = ok && pthread_mutex_init(&s->err_mu, NULL) == 0;
  s->err_mu_ok = ok;
  if (!ok) {
    snprintf(err, errlen, "postgres store: cannot create a mutex");
    destroy(s);
    return NULL;
  }
  if (schema) {
    size_t l = strlen(schema);
    if ((s->schema = resil__alloc(&o->alloc, l + 1)) != NULL) memcpy(s->schema, schema, l + 1);
  }
  s->table = qualified(&o->alloc, schema, "resil_idempotency");
  s->schema_table = qualified(&o->alloc, schema, "resil_schema");
  int mem = s->table != NULL && s->schema_table != NULL && (schema == NULL || s->schema != NULL);
  for (int i = 0; mem && i < Q_COUNT; i++) mem = (s->sql[i] = fill(s, query_tmpl[i])) != NULL;
  if (!mem) {
    snprintf(err, errlen, "postgres store: out of memory");
    destroy(s);
    return NULL;
  }
  return s;
}

static void set_where(pg_store *s, const char *host, const char *port, const char *db) {
  if (host == NULL || *host == '\0') host = "localhost";
  if (port == NULL || *port == '\0') port = "5432";
  if (db == NULL) db = "";
  if (strchr(host, ':') && host[0] != '/')
    snprintf(s->where, sizeof s->where, "[%.50s]:%.8s/%.50s", host, port, db);
  else
    snprintf(s->where, sizeof s->where, "%.50s:%.8s/%.50s", host, port, db);
}

/* ---- the URL ------------------------------------------------------------------------- */

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = resil__ascii_lower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* Decode [p, p + n) into out (n + 1 bytes); -1 for a bad escape or NUL. */
static int pct_decode(const char *p, size_t n, char *out) {
  size_t w = 0;
  for (size_t i = 0; i < n; i++) {
    if (p[i] != '%') {
      out[w++] = p[i];
      continue;
    }
    if (i + 2 >= n) return -1;
    int h = hexval((unsigned char)p[i + 1]), l = h < 0 ? -1 : hexval((unsigned char)p[i + 2]);
    if (h < 0 || l < 0 || (h == 0 && l == 0)) return -1;
    out[w++] = (char)(h * 16 + l);
    i += 2;
  }
  out[w] = '\0';
  return 0;
}

/* Split resil's parameters out of the URL: conninfo gets the rest for
 * libpq, with the scheme in lower case. */
static resil_err split_url(const resil_allocator *a, const char *url, char **conninfo,
                           char **schema, long long *lock_ms, char *err, size_t len) {
  size_t sl = strcspn(url, ":");
  if (strncmp(url + sl, "://", 3) != 0) {
    snprintf(err, len, "a postgres store URL starts with postgres:// (postgres://USER@HOST/DB)");
    return RESIL_EINVAL;
  }
  size_t n = strlen(url);
  char *ci = resil__alloc(a, n + 1);
  char *val = resil__alloc(a, n + 1);
  if (ci == NULL || val == NULL) {
    resil__free(a, ci);
    resil__free(a, val);
    snprintf(err, len, "postgres store: out of memory");
    return RESIL_ENOMEM;
  }
  for (size_t i = 0; i < sl; i++) ci[i] = (char)resil__ascii_lower((unsigned char)url[i]);
  const char *q = strchr(url, '?');
  size_t head = q ? (size_t)(q - url) : n;
  memcpy(ci + sl, url + sl, head - sl);
  size_t w = head;
  unsigned seen = 0;
  resil_err rc = RESIL_OK;
  for (const char *p = q ? q + 1 : NULL; p != NULL && rc == RESIL_OK;) {
    size_t pl = strcspn(p, "&");
    const char *eq = memchr(p, '=', pl);
    size_t nl = eq ? (size_t)(eq - p) : pl;
    int is_schema = nl == 6 && resil__strncaseeq(p, "schema", 6);
    int is_lock = nl == 12 && resil__strncaseeq(p, "lock_timeout", 12);
    if (is_schema || is_lock) {
      unsigned bit = is_schema ? 1u : 2u;
      size_t vl = eq ? pl - nl - 1 : 0;
      if (seen & bit) {
        snprintf(err, len, "parameter '%.*s' given twice", (int)nl, p);
        rc = RESIL_EINVAL;
      } else if (vl == 0 || pct_decode(eq + 1, vl, val) != 0) {
        snprintf(err, len, "parameter '%.*s' needs a value (bad or missing)", (int)nl, p);
        rc = RESIL_EINVAL;
      } else if (is_schema) {
        size_t l = strlen(val);
        if (l > SCHEMA_NAME_MAX) {
          snprintf(err, len, "schema must be 1 to %d bytes", SCHEMA_NAME_MAX);
          rc = RESIL_EINVAL;
        } else if ((*schema = resil__alloc(a, l + 1)) == NULL) {
          snprintf(err, len, "postgres store: out of memory");
          rc = RESIL_ENOMEM;
        } else {
          memcpy(*schema, val, l + 1);
        }
      } else {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(val, &end, 10);
        if (val[0] < '0' || val[0] > '9' || *end != '\0' || errno != 0 || v > INT_MAX) {
          snprintf(err, len, "lock_timeout must be milliseconds (0 to 2147483647), not '%.64s'",
                   val);
          rc = RESIL_EINVAL;
        } else {
          *lock_ms = v;
        }
      }
      seen |= bit;
    } else if (pl > 0) {
      ci[w++] = (seen & 4) ? '&' : '?';
      seen |= 4;
      memcpy(ci + w, p, pl);
      w += pl;
    }
    p = p[pl] == '&' ? p + pl + 1 : NULL;
  }
  ci[w] = '\0';
  resil__free(a, val);
  if (rc != RESIL_OK) {
    resil__free(a, ci);
    resil__free(a, *schema);
    *schema = NULL;
    return rc;
  }
  *conninfo = ci;
  return RESIL_OK;
}

resil_err resil__store_pg_open(resil_store **out, const resil_store_options *o, const char *url,
                               char *err, size_t errlen) {
  char *conninfo = NULL, *schema = NULL;
  long long lock_ms = DEFAULT_LOCK_TIMEOUT_MS;
  resil_err rc = split_url(&o->alloc, url, &conninfo, &schema, &lock_ms, err, errlen);
  if (rc != RESIL_OK) return rc;
  /* libpq's own check of the rest, for a clear EINVAL before connecting. */
  char *perr = NULL;
  PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
  if (opts == NULL) {
    size_t l = perr ? strcspn(perr, "\n") : 0;
    snprintf(err, errlen, "bad postgres URL: %.*s", (int)(l > 200 ? 200 : l),
             perr ? perr : "out of memory");
    PQfreemem(perr);
    resil__free(&o->alloc, conninfo);
    resil__free(&o->alloc, schema);
    return perr ? RESIL_EINVAL : RESIL_ENOMEM;
  }
  pg_store *s = new_store(o, schema, err, errlen);
  resil__free(&o->alloc, schema);
  if (s == NULL) {
    PQconninfoFree(opts);
    resil__free(&o->alloc, conninfo);
    return RESIL_ENOMEM;
  }
  const char *host = NULL, *port = NULL, *db = NULL, *user = NULL;
  for (PQconninfoOption *p = opts; p->keyword; p++) {
    if (strcmp(p->keyword, "host") == 0) host = p->val;
    else if (strcmp(p->keyword, "port") == 0) port = p->val;
    else if (strcmp(p->keyword, "dbname") == 0) db = p->val;
    else if (strcmp(p->keyword, "user") == 0) user = p->val;
  }
  set_where(s, host, port, db && *db ? db : user);
  PQconninfoFree(opts);
  s->conninfo = conninfo;
  s->lock_timeout_ms = (int)lock_ms;
  if (!PQisthreadsafe()) {
    snprintf(err, errlen, "postgres store %s: this libpq was built without thread safety",
             s->where);
    destroy(s);
    return RESIL_ESTORE;
  }
  /* Connect now: an unreachable server is an error at open. The connection
   * stays in the pool. */
  PGconn *c = connect_one(s);
  if (c == NULL || setup_schema(s, c) != 0) {
    snprintf(err, errlen, "%s", s->base.errmsg);
    PQfinish(c);
    destroy(s);
    return RESIL_ESTORE;
  }
  conn_put(s, c);
  s->base.errmsg[0] = '\0';
  *out = &s->base;
  return RESIL_OK;
}

/* ---- the transactional mode ----------------------------------------------------------- */

static void put_err(char *errbuf, size_t errlen, const char *msg) {
  if (errbuf != NULL && errlen > 0) snprintf(errbuf, errlen, "%s", msg);
}

resil_err resil_store_pg_with_conn(resil_store **out, void *pgconn,
                                   const resil_store_options *opt, char *errbuf, size_t errlen) {
  if (errbuf != NULL && errlen > 0) errbuf[0] = '\0';
  if (out == NULL) {
    put_err(errbuf, errlen, "out is NULL");
    return RESIL_EINVAL;
  }
  *out = NULL;
  if (pgconn == NULL) {
    put_err(errbuf, errlen, "pgconn is NULL");
    return RESIL_EINVAL;
  }
  resil_store_options o;
  if (opt == NULL) {
    resil_store_options_init(&o);
  } else if (opt->size != sizeof *opt) {
    put_err(errbuf, errlen, "store options not set up (call resil_store_options_init first)");
    return RESIL_EINVAL;
  } else {
    o = *opt;
  }
  if (o.clock.now == NULL) {
    put_err(errbuf, errlen, "store options: clock.now is NULL");
    return RESIL_EINVAL;
  }
  if (o.alloc.malloc != NULL && (o.alloc.realloc == NULL || o.alloc.free == NULL)) {
    put_err(errbuf, errlen, "store options: an allocator needs malloc, realloc and free");
    return RESIL_EINVAL;
  }
  o.alloc = resil__alloc_resolve(&o.alloc);

  char err[256];
  pg_store *s = new_store(&o, NULL, err, sizeof err);
  if (s == NULL) {
    put_err(errbuf, errlen, err);
    return RESIL_ENOMEM;
  }
  PGconn *c = pgconn;
  set_where(s, PQhost(c), PQport(c), PQdb(c));
  if (PQstatus(c) != CONNECTION_OK) {
    fail(s, "cannot use the connection: it is not connected");
  } else if (setup_schema(s, c) == 0) {
    s->borrowed = c;
    s->base.errmsg[0] = '\0';
    *out = &s->base;
    return RESIL_OK;
  }
  put_err(errbuf, errlen, s->base.errmsg);
  destroy(s);
  return RESIL_ESTORE;
}
