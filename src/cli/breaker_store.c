/* Breaker state in SQLite; see breaker_store.h for the design.
 *
 * Schema version 1, one table:
 *
 *   breakers(name TEXT PRIMARY KEY,
 *            state, epoch, consecutive_failures, trips_in_row,
 *            probe_successes, open_until_ns, probes,        -- decision state
 *            probe_expires TEXT,                            -- "SLOT:NS ..."
 *            calls, successes, failures, rejected, trips,   -- lifetime totals
 *            cfg_failures, cfg_open_ns, cfg_probe_timeout_ns, -- settings
 *            updated_at_ns)                                 --   last used
 *
 * Every field of resil_breaker_persisted has a column; times are INTEGER
 * nanoseconds since the Unix epoch (the breaker runs on the wall clock), so
 * they round-trip exactly. probe_expires lists only the busy probe slots,
 * as space-separated SLOT:EXPIRY pairs ("" when none are busy). */
#define _POSIX_C_SOURCE 200809L

#include "breaker_store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#ifdef RESIL_HAVE_SQLITE
#include <sqlite3.h>
#endif

/* ---- names, settings, clock ---------------------------------------------- */

int breaker_name_valid(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > BREAKER_NAME_MAX || name[0] == '-') return 0;
  for (const char *p = name; *p; p++) {
    char c = *p;
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             strchr("._-:@/+", c) != NULL;
    if (!ok) return 0;
  }
  return 1;
}

void breaker_settings_init(breaker_settings *s) {
  s->failures = 5;
  s->open_duration = 30 * RESIL_SEC;
  s->probe_timeout = 10 * RESIL_MIN;
}

resil_ns breaker_wall_now(void) {
  resil_wallclock w = resil_wallclock_system();
  return w.now(w.ud);
}

/* ---- the default path ---------------------------------------------------- */

/* mkdir -p with mode 0700 for every directory it creates. */
static int make_dirs(char *dir) {
  for (char *p = dir + 1;; p++) {
    if (*p != '/' && *p != '\0') continue;
    char saved = *p;
    *p = '\0';
    int rc = mkdir(dir, 0700);
    int e = errno;
    *p = saved;
    if (rc != 0 && e != EEXIST) {
      errno = e;
      return -1;
    }
    if (saved == '\0') break;
  }
  struct stat st;
  if (stat(dir, &st) != 0) return -1;
  if (!S_ISDIR(st.st_mode)) {
    errno = ENOTDIR;
    return -1;
  }
  return 0;
}

int breaker_default_path(char *buf, size_t len, int create, char *err, size_t errlen) {
  char dir[4096];
  const char *xdg = getenv("XDG_STATE_HOME");
  const char *home = getenv("HOME");
  int n;
  if (xdg && xdg[0] == '/') {
    n = snprintf(dir, sizeof dir, "%s/resil", xdg);
  } else if (home && home[0] == '/') {
    n = snprintf(dir, sizeof dir, "%s/.local/state/resil", home);
  } else {
    snprintf(err, errlen,
             "no place for the state file: set XDG_STATE_HOME or HOME to an absolute path, "
             "or use --state PATH");
    return -1;
  }
  if (n < 0 || (size_t)n >= sizeof dir || (size_t)n + sizeof "/breakers.db" > len) {
    snprintf(err, errlen, "the state file's path is too long (use --state PATH)");
    return -1;
  }
  if (create && make_dirs(dir) != 0) {
    snprintf(err, errlen, "cannot create the state directory %s: %s", dir, strerror(errno));
    return -1;
  }
  snprintf(buf, len, "%s/breakers.db", dir);
  return 0;
}

/* ---- the store without SQLite: every call fails --------------------------- */

#ifndef RESIL_HAVE_SQLITE
/* Callers ask breaker_store_available() first, so these only keep the
 * program linkable. */
struct breaker_store {
  int unused;
};

int breaker_store_available(void) { return 0; }

int breaker_store_open(breaker_store **out, const char *path, int flags) {
  (void)path;
  (void)flags;
  *out = NULL;
  return BSTORE_ERROR;
}

void breaker_store_close(breaker_store *s) { (void)s; }

const char *breaker_store_errmsg(const breaker_store *s) {
  (void)s;
  return "this resil was built without SQLite";
}

int breaker_store_update(breaker_store *s, const char *name,
                         const breaker_settings *settings, int flags,
                         breaker_store_fn fn, void *ud, breaker_row *before,
                         breaker_row *after) {
  (void)s, (void)name, (void)settings, (void)flags, (void)fn, (void)ud, (void)before,
      (void)after;
  return BSTORE_ERROR;
}

int breaker_store_get(breaker_store *s, const char *name, breaker_row *out) {
  (void)s, (void)name, (void)out;
  return BSTORE_ERROR;
}

int breaker_store_list(breaker_store *s, breaker_row **rows, size_t *n) {
  (void)s;
  *rows = NULL;
  *n = 0;
  return BSTORE_ERROR;
}

#else /* RESIL_HAVE_SQLITE */

/* ---- the store with SQLite ------------------------------------------------ */

int breaker_store_available(void) { return 1; }

#define SCHEMA_VERSION 1
/* Long enough that invocations queued behind each other wait rather than
 * fail: each holds the write lock only for a load and a save. */
#define BUSY_TIMEOUT_MS 10000

struct breaker_store {
  sqlite3 *db;
  char *path;
  char errmsg[4608];
};

/* An internal result: the row exists but cannot be used as it is. */
#define ROW_INVALID 2

/* ---- the breaker's clock and config --------------------------------------- */

/* The breaker's clock: wall time, the same in every process. A breaker
 * never sleeps; sleep is a plain wait only because a clock must have one. */
static resil_ns wall_now(void *ud) {
  (void)ud;
  return breaker_wall_now();
}

static resil_err wall_sleep(void *ud, resil_ns d, resil_cancel *cancel) {
  (void)ud;
  return resil_cancel_wait(cancel, d);
}

static resil_err new_breaker(resil_breaker **out, const char *name, const breaker_settings *st) {
  resil_breaker_config cfg;
  resil_breaker_config_init(&cfg);
  cfg.name = name;
  cfg.trip = RESIL_TRIP_CONSECUTIVE;
  cfg.failure_threshold = st->failures;
  cfg.open_duration = st->open_duration;
  cfg.open_duration_max = st->open_duration; /* fixed: no growth, no jitter */
  cfg.half_open_probes = 1; /* one probe across all processes */
  cfg.success_threshold = 1;
  cfg.probe_timeout = st->probe_timeout;
  cfg.clock.now = wall_now;
  cfg.clock.sleep = wall_sleep;
  cfg.clock.ud = NULL;
  return resil_breaker_new(out, &cfg);
}

/* ---- errors and statements ----------------------------------------------- */

const char *breaker_store_errmsg(const breaker_store *s) {
  return s ? s->errmsg : "out of memory";
}

/* "cannot <what> state file <path>: <detail>". */
static int fail(breaker_store *s, const char *what, const char *detail) {
  snprintf(s->errmsg, sizeof s->errmsg, "cannot %s state file %s: %s", what, s->path, detail);
  return BSTORE_ERROR;
}

/* SQLite's message, and the OS error behind it when there is one
 * ("unable to open database file" alone does not say why). */
static int fail_db(breaker_store *s, const char *what) {
  char detail[512];
  if (s->db == NULL) {
    snprintf(detail, sizeof detail, "%s", sqlite3_errstr(SQLITE_NOMEM));
    return fail(s, what, detail);
  }
  int code = sqlite3_errcode(s->db) & 0xff;
  int sys = sqlite3_system_errno(s->db);
  if ((code == SQLITE_CANTOPEN || code == SQLITE_IOERR) && sys != 0)
    snprintf(detail, sizeof detail, "%s (%s)", sqlite3_errmsg(s->db), strerror(sys));
  else
    snprintf(detail, sizeof detail, "%s", sqlite3_errmsg(s->db));
  return fail(s, what, detail);
}

static int exec(breaker_store *s, const char *sql) {
  return sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

static void rollback(breaker_store *s) {
  /* Fails harmlessly when SQLite already rolled back on its own. */
  if (sqlite3_get_autocommit(s->db) == 0) (void)exec(s, "ROLLBACK");
}

/* Run a statement that returns one integer. */
static int query_int(breaker_store *s, const char *sql, int64_t *out) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) return -1;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) *out = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return rc == SQLITE_ROW ? 0 : -1;
}

/* ---- opening and the schema ---------------------------------------------- */

static const char schema_v1[] =
    "CREATE TABLE breakers ("
    " name TEXT PRIMARY KEY NOT NULL,"
    " state INTEGER NOT NULL,"
    " epoch INTEGER NOT NULL,"
    " consecutive_failures INTEGER NOT NULL,"
    " trips_in_row INTEGER NOT NULL,"
    " probe_successes INTEGER NOT NULL,"
    " open_until_ns INTEGER NOT NULL,"
    " probes INTEGER NOT NULL,"
    " probe_expires TEXT NOT NULL,"
    " calls INTEGER NOT NULL,"
    " successes INTEGER NOT NULL,"
    " failures INTEGER NOT NULL,"
    " rejected INTEGER NOT NULL,"
    " trips INTEGER NOT NULL,"
    " cfg_failures INTEGER NOT NULL,"
    " cfg_open_ns INTEGER NOT NULL,"
    " cfg_probe_timeout_ns INTEGER NOT NULL,"
    " updated_at_ns INTEGER NOT NULL"
    ");"
    "PRAGMA user_version = 1;";

static int too_new(breaker_store *s, int64_t v) {
  char detail[160];
  snprintf(detail, sizeof detail,
           "it has schema version %" PRId64 " and this resil knows only up to %d "
           "(a newer resil wrote it)",
           v, SCHEMA_VERSION);
  return fail(s, "use", detail);
}

/* Never touch a database that is not resil's: one from a newer resil, or
 * somebody else's (version 0 with tables in it). Only reads. */
static int check_ours(breaker_store *s, int64_t v) {
  if (v > SCHEMA_VERSION) return too_new(s, v);
  if (v == 0) {
    int64_t others = 0;
    if (query_int(s, "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'",
                  &others) != 0)
      return fail_db(s, "open");
    if (others > 0) return fail(s, "use", "it is a SQLite database, but not one of resil's");
  }
  return BSTORE_OK;
}

/* Create the schema in a new file (and, once there are later versions,
 * upgrade an old one). The version is read again inside the write
 * transaction, so two processes creating the file at once do not both
 * create the table. */
static int migrate(breaker_store *s) {
  int64_t v = 0;
  if (query_int(s, "PRAGMA user_version", &v) != 0) return fail_db(s, "open");
  if (v == SCHEMA_VERSION) return BSTORE_OK;

  if (exec(s, "BEGIN IMMEDIATE") != 0) return fail_db(s, "open");
  if (query_int(s, "PRAGMA user_version", &v) != 0) goto db_error;
  if (check_ours(s, v) != BSTORE_OK) {
    rollback(s);
    return BSTORE_ERROR;
  }
  if (v == 0) {
    if (exec(s, schema_v1) != 0) goto db_error;
    v = 1;
  }
  /* A version 2 would be reached here from 1 with ALTER TABLE and
   * PRAGMA user_version = 2, inside this same transaction. */
  if (exec(s, "COMMIT") != 0) goto db_error;
  return BSTORE_OK;

db_error:;
  int rc = fail_db(s, "open");
  rollback(s);
  return rc;
}

/* Whether the file is in WAL mode already; -1 on error. */
static int is_wal(breaker_store *s) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode", -1, &st, NULL) != SQLITE_OK) return -1;
  int rc = sqlite3_step(st);
  int wal = rc == SQLITE_ROW && strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
  sqlite3_finalize(st);
  return rc == SQLITE_ROW ? wal : -1;
}

/* WAL lets readers (resil breaker list) run beside a writer, and makes each
 * commit one append. The mode is stored in the file, so this only writes
 * the first time. Switching needs an exclusive lock, which SQLite does not
 * wait for through the busy handler; while other processes are creating the
 * same file, try again for up to the busy timeout. */
static int use_wal(breaker_store *s) {
  for (int waited_ms = 0;; waited_ms += 10) {
    int wal = is_wal(s);
    if (wal < 0) return fail_db(s, "open");
    if (wal) return BSTORE_OK;
    int rc = sqlite3_exec(s->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
    /* Where WAL is impossible (no shared memory) SQLite keeps the rollback
     * journal and says OK: just as safe, only slower, so not an error. */
    if (rc == SQLITE_OK) return BSTORE_OK;
    if ((rc & 0xff) != SQLITE_BUSY || waited_ms >= BUSY_TIMEOUT_MS) return fail_db(s, "open");
    sqlite3_sleep(10);
  }
}

int breaker_store_open(breaker_store **out, const char *path, int flags) {
  breaker_store *s = calloc(1, sizeof *s);
  *out = s;
  if (s == NULL) return BSTORE_ERROR;
  s->path = strdup(path);
  if (s->path == NULL) {
    free(s);
    *out = NULL;
    return BSTORE_ERROR;
  }
  if (!(flags & BSTORE_CREATE)) {
    struct stat st;
    if (stat(path, &st) != 0) {
      if (errno == ENOENT) return BSTORE_NOT_FOUND;
      return fail(s, "open", strerror(errno));
    }
  }
  int oflags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
  if (flags & BSTORE_CREATE) oflags |= SQLITE_OPEN_CREATE;
  if (sqlite3_open_v2(path, &s->db, oflags, NULL) != SQLITE_OK) return fail_db(s, "open");
  sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
  /* One read transaction, so the version and the tables come from the same
   * moment even while another process is creating the schema. */
  int64_t v = 0;
  if (exec(s, "BEGIN") != 0 || query_int(s, "PRAGMA user_version", &v) != 0) {
    int rc = fail_db(s, "open");
    rollback(s);
    return rc;
  }
  int rc = check_ours(s, v);
  rollback(s); /* it only read */
  if (rc == BSTORE_OK) rc = use_wal(s);
  if (rc == BSTORE_OK) rc = migrate(s);
  return rc;
}

void breaker_store_close(breaker_store *s) {
  if (s == NULL) return;
  sqlite3_close(s->db); /* NULL-safe */
  free(s->path);
  free(s);
}

/* ---- rows ---------------------------------------------------------------- */

#define COLUMNS                                                                                \
  "name, state, epoch, consecutive_failures, trips_in_row, probe_successes, open_until_ns, " \
  "probes, probe_expires, calls, successes, failures, rejected, trips, cfg_failures, "       \
  "cfg_open_ns, cfg_probe_timeout_ns, updated_at_ns"

/* "3:1718000000000000000 7:..." for the busy slots. */
static void encode_probes(const resil_breaker_persisted *p, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = '\0';
  for (unsigned i = 0; i < RESIL_BREAKER_MAX_PROBES; i++) {
    if (p->probe_expires[i] == 0) continue;
    int n = snprintf(buf + used, len - used, "%s%u:%" PRId64, used ? " " : "", i,
                     (int64_t)p->probe_expires[i]);
    if (n < 0 || (size_t)n >= len - used) return; /* cannot happen: len fits 64 */
    used += (size_t)n;
  }
}

static int decode_probes(const char *text, resil_breaker_persisted *p) {
  memset(p->probe_expires, 0, sizeof p->probe_expires);
  const char *s = text;
  while (*s) {
    char *end;
    if (*s < '0' || *s > '9') return -1;
    errno = 0;
    unsigned long slot = strtoul(s, &end, 10);
    if (errno || *end != ':' || slot >= RESIL_BREAKER_MAX_PROBES) return -1;
    s = end + 1;
    if (!((*s >= '0' && *s <= '9') || *s == '-')) return -1;
    errno = 0;
    long long at = strtoll(s, &end, 10);
    if (errno || end == s || at == 0) return -1;
    p->probe_expires[slot] = (resil_ns)at;
    s = end;
    if (*s == ' ') s++;
    else if (*s != '\0') return -1;
  }
  return 0;
}

/* Column i as an integer in [lo, hi]; -1 when it is not one. */
static int col_int(sqlite3_stmt *st, int i, int64_t lo, int64_t hi, int64_t *out) {
  if (sqlite3_column_type(st, i) != SQLITE_INTEGER) return -1;
  int64_t v = sqlite3_column_int64(st, i);
  if (v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

/* Fill r from the current result row. Returns BSTORE_OK, or ROW_INVALID
 * with the reason in s->errmsg (r->name is set either way). Counters are
 * stored as their 64-bit pattern, so uint64 values round-trip. */
static int row_read(breaker_store *s, sqlite3_stmt *st, breaker_row *r) {
  memset(r, 0, sizeof *r);
  const char *name = (const char *)sqlite3_column_text(st, 0);
  snprintf(r->name, sizeof r->name, "%s", name ? name : "");

  static const char *const names[] = {
      NULL, "state", "epoch", "consecutive_failures", "trips_in_row", "probe_successes",
      "open_until_ns", "probes", "probe_expires", "calls", "successes", "failures",
      "rejected", "trips", "cfg_failures", "cfg_open_ns", "cfg_probe_timeout_ns",
      "updated_at_ns"};
  int64_t v[18];
  const int64_t U32 = UINT32_MAX;
  static const int64_t lo[18] = {0, 0, INT64_MIN, 0, 0, 0, INT64_MIN, 0, 0,
                                 INT64_MIN, INT64_MIN, INT64_MIN, INT64_MIN, INT64_MIN,
                                 1, 1, 1, INT64_MIN};
  int64_t hi[18] = {0, RESIL_BREAKER_METRICS_ONLY, INT64_MAX, U32, U32, U32, INT64_MAX,
                    RESIL_BREAKER_MAX_PROBES, 0, INT64_MAX, INT64_MAX, INT64_MAX,
                    INT64_MAX, INT64_MAX, U32, INT64_MAX, INT64_MAX, INT64_MAX};
  int bad = -1;
  for (int i = 1; i < 18 && bad < 0; i++) {
    if (i == 8) continue; /* probe_expires: text */
    if (col_int(st, i, lo[i], hi[i], &v[i]) != 0) bad = i;
  }
  const char *probes = (const char *)sqlite3_column_text(st, 8);
  if (bad < 0 && (sqlite3_column_type(st, 8) != SQLITE_TEXT || probes == NULL ||
                  decode_probes(probes, &r->st) != 0))
    bad = 8;
  if (bad >= 0) {
    char detail[400];
    snprintf(detail, sizeof detail,
             "breaker '%s' has an invalid %s (resil breaker reset %s starts it afresh)",
             r->name, names[bad], r->name);
    fail(s, "read", detail);
    return ROW_INVALID;
  }
  r->st.state = (resil_breaker_state)v[1];
  r->st.epoch = (uint64_t)v[2];
  r->st.consecutive_failures = (uint32_t)v[3];
  r->st.trips_in_row = (uint32_t)v[4];
  r->st.probe_successes = (uint32_t)v[5];
  r->st.open_until = v[6];
  r->st.probes = (uint32_t)v[7];
  r->st.calls = (uint64_t)v[9];
  r->st.successes = (uint64_t)v[10];
  r->st.failures = (uint64_t)v[11];
  r->st.rejected = (uint64_t)v[12];
  r->st.trips = (uint64_t)v[13];
  r->settings.failures = (uint32_t)v[14];
  r->settings.open_duration = v[15];
  r->settings.probe_timeout = v[16];
  r->updated_at = v[17];
  return BSTORE_OK;
}

/* Load name's row: BSTORE_OK, BSTORE_NOT_FOUND, ROW_INVALID or BSTORE_ERROR. */
static int row_load(breaker_store *s, const char *name, breaker_row *r) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(s->db, "SELECT " COLUMNS " FROM breakers WHERE name = ?1", -1, &st,
                         NULL) != SQLITE_OK)
    return fail_db(s, "read");
  sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  int result;
  if (rc == SQLITE_ROW) result = row_read(s, st, r);
  else if (rc == SQLITE_DONE) result = BSTORE_NOT_FOUND;
  else result = fail_db(s, "read");
  sqlite3_finalize(st);
  return result;
}

static int row_save(breaker_store *s, const breaker_row *r) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(s->db,
                         "INSERT OR REPLACE INTO breakers (" COLUMNS ") VALUES "
                         "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, "
                         "?16, ?17, ?18)",
                         -1, &st, NULL) != SQLITE_OK)
    return fail_db(s, "write");
  char probes[RESIL_BREAKER_MAX_PROBES * 24 + 1];
  encode_probes(&r->st, probes, sizeof probes);
  const resil_breaker_persisted *p = &r->st;
  sqlite3_bind_text(st, 1, r->name, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, (sqlite3_int64)p->state);
  sqlite3_bind_int64(st, 3, (sqlite3_int64)p->epoch);
  sqlite3_bind_int64(st, 4, (sqlite3_int64)p->consecutive_failures);
  sqlite3_bind_int64(st, 5, (sqlite3_int64)p->trips_in_row);
  sqlite3_bind_int64(st, 6, (sqlite3_int64)p->probe_successes);
  sqlite3_bind_int64(st, 7, (sqlite3_int64)p->open_until);
  sqlite3_bind_int64(st, 8, (sqlite3_int64)p->probes);
  sqlite3_bind_text(st, 9, probes, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 10, (sqlite3_int64)p->calls);
  sqlite3_bind_int64(st, 11, (sqlite3_int64)p->successes);
  sqlite3_bind_int64(st, 12, (sqlite3_int64)p->failures);
  sqlite3_bind_int64(st, 13, (sqlite3_int64)p->rejected);
  sqlite3_bind_int64(st, 14, (sqlite3_int64)p->trips);
  sqlite3_bind_int64(st, 15, (sqlite3_int64)r->settings.failures);
  sqlite3_bind_int64(st, 16, (sqlite3_int64)r->settings.open_duration);
  sqlite3_bind_int64(st, 17, (sqlite3_int64)r->settings.probe_timeout);
  sqlite3_bind_int64(st, 18, (sqlite3_int64)r->updated_at);
  int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? BSTORE_OK : fail_db(s, "write");
}

/* ---- the transaction ----------------------------------------------------- */

int breaker_store_update(breaker_store *s, const char *name,
                         const breaker_settings *settings, int flags,
                         breaker_store_fn fn, void *ud, breaker_row *before,
                         breaker_row *after) {
  if (exec(s, "BEGIN IMMEDIATE") != 0) return fail_db(s, "lock");

  breaker_row row;
  int loaded = row_load(s, name, &row);
  if (loaded == BSTORE_ERROR) goto out_rollback;
  if (loaded == ROW_INVALID && !(flags & BSTORE_FRESH_ON_INVALID)) {
    loaded = BSTORE_ERROR;
    goto out_rollback;
  }
  if (loaded == BSTORE_NOT_FOUND && !(flags & BSTORE_CREATE)) goto out_rollback;

  breaker_settings use;
  if (settings) use = *settings;
  else if (loaded == BSTORE_OK) use = row.settings;
  else breaker_settings_init(&use);

  resil_breaker *b = NULL;
  resil_err e = new_breaker(&b, name, &use);
  if (e != RESIL_OK) {
    char detail[200];
    snprintf(detail, sizeof detail, "cannot set up breaker '%s': %s", name, resil_strerror(e));
    loaded = fail(s, "use", detail);
    goto out_rollback;
  }
  /* A new row starts from a new breaker's exported state, and goes through
   * import like a loaded one. That matters: import always starts a new
   * epoch unless the saved one is ahead of the breaker's, and a new breaker
   * is at epoch 0, so a saved epoch 0 would become 1 on the next load and
   * the very first run's permit (epoch 0) would be stale when its result
   * came back. Imported once here, the stored epoch is >= 1 from the start,
   * and every later load keeps it. */
  if (loaded != BSTORE_OK) resil_breaker_export(b, &row.st);
  e = resil_breaker_import(b, &row.st);
  if (e != RESIL_OK && (flags & BSTORE_FRESH_ON_INVALID)) {
    resil_breaker_free(b);
    b = NULL;
    e = new_breaker(&b, name, &use);
    if (e == RESIL_OK) {
      resil_breaker_export(b, &row.st);
      e = resil_breaker_import(b, &row.st);
    }
    if (e != RESIL_OK) {
      resil_breaker_free(b);
      loaded = fail(s, "use", resil_strerror(e));
      goto out_rollback;
    }
  } else if (e != RESIL_OK) {
    char detail[400];
    snprintf(detail, sizeof detail,
             "breaker '%s' has a saved state the library refuses (%s; resil breaker reset %s "
             "starts it afresh)",
             name, resil_strerror(e), name);
    resil_breaker_free(b);
    loaded = fail(s, "read", detail);
    goto out_rollback;
  }

  breaker_row out;
  memset(&out, 0, sizeof out);
  snprintf(out.name, sizeof out.name, "%s", name);
  out.settings = use;
  if (before) {
    *before = out;
    resil_breaker_export(b, &before->st);
    before->updated_at = loaded == BSTORE_OK ? row.updated_at : 0;
  }
  if (fn) fn(b, ud);
  resil_breaker_export(b, &out.st);
  resil_breaker_free(b);
  out.updated_at = breaker_wall_now();

  if (row_save(s, &out) != BSTORE_OK) {
    loaded = BSTORE_ERROR;
    goto out_rollback;
  }
  if (exec(s, "COMMIT") != 0) {
    loaded = fail_db(s, "write");
    goto out_rollback;
  }
  if (after) *after = out;
  return BSTORE_OK;

out_rollback:
  rollback(s);
  return loaded;
}

/* ---- reading ------------------------------------------------------------- */

int breaker_store_get(breaker_store *s, const char *name, breaker_row *out) {
  int rc = row_load(s, name, out);
  return rc == ROW_INVALID ? BSTORE_ERROR : rc;
}

int breaker_store_list(breaker_store *s, breaker_row **rows, size_t *n) {
  *rows = NULL;
  *n = 0;
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(s->db, "SELECT " COLUMNS " FROM breakers ORDER BY name", -1, &st,
                         NULL) != SQLITE_OK)
    return fail_db(s, "read");
  breaker_row *v = NULL;
  size_t len = 0, cap = 0;
  int rc, result = BSTORE_OK;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (len == cap) {
      size_t ncap = cap ? cap * 2 : 8;
      breaker_row *nv = realloc(v, ncap * sizeof *nv);
      if (nv == NULL) {
        result = fail(s, "read", "out of memory");
        break;
      }
      v = nv;
      cap = ncap;
    }
    if (row_read(s, st, &v[len]) != BSTORE_OK) {
      result = BSTORE_ERROR;
      break;
    }
    len++;
  }
  if (result == BSTORE_OK && rc != SQLITE_DONE) result = fail_db(s, "read");
  sqlite3_finalize(st);
  if (result != BSTORE_OK) {
    free(v);
    return result;
  }
  *rows = v;
  *n = len;
  return BSTORE_OK;
}

#endif /* RESIL_HAVE_SQLITE */
