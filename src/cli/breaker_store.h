/* Circuit breakers that outlive a process: `resil run --breaker NAME` and
 * `resil breaker` keep each breaker's state in one row of a SQLite file, so
 * cron jobs and scripts that name the same breaker share it.
 *
 * The breaker logic is the library's, not re-implemented here. Every change
 * is one BEGIN IMMEDIATE transaction: load the row, resil_breaker_import() it
 * into a resil_breaker built from the same settings, let the caller act on
 * that breaker (acquire, record, reset), resil_breaker_export() it, write the
 * row, COMMIT. SQLite's write lock makes those transactions take turns across
 * processes, so each one starts from the previous one's result. The
 * breaker's clock is the wall clock, the only clock that means the same in
 * every process.
 *
 * The file is in WAL mode with a 10s busy timeout: concurrent invocations
 * wait for each other instead of failing. Its schema is versioned with
 * PRAGMA user_version (currently 1); a file from a newer resil is refused
 * rather than guessed at.
 *
 * Without SQLite (RESIL_HAVE_SQLITE undefined) only the helpers before
 * breaker_store_available() work, and the store functions fail: callers
 * check breaker_store_available() first. Not thread-safe: one store, one
 * thread. */
#ifndef RESIL_CLI_BREAKER_STORE_H
#define RESIL_CLI_BREAKER_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "resil/breaker.h"
#include "resil/time.h"

/* A breaker name: 1 to BREAKER_NAME_MAX bytes of ASCII letters, digits and
 * . _ - : @ / +, not starting with '-' (so it can never look like an
 * option). Returns 1 when valid. */
#define BREAKER_NAME_MAX 128
int breaker_name_valid(const char *name);

/* The settings a breaker is used with. They come from the command line of
 * each `resil run`, and the last ones used are stored with the row (for
 * `resil breaker show`, and for `resil breaker reset`, which has none). */
typedef struct breaker_settings {
  uint32_t failures;      /* consecutive failures that open it (>= 1) */
  resil_ns open_duration; /* open this long before a probe (> 0) */
  resil_ns probe_timeout; /* a probe not recorded by then counts as failed */
} breaker_settings;

/* failures 5, open_duration 30s, probe_timeout 10m. */
void breaker_settings_init(breaker_settings *s);

/* One row: a breaker's whole persisted state. Times are wall-clock
 * nanoseconds since the Unix epoch. */
typedef struct breaker_row {
  char name[BREAKER_NAME_MAX + 1];
  resil_breaker_persisted st;
  breaker_settings settings;
  resil_ns updated_at;
} breaker_row;

/* The breaker clock's now(): CLOCK_REALTIME, in ns since the epoch. */
resil_ns breaker_wall_now(void);

/* Results of the functions below. On BSTORE_ERROR, breaker_store_errmsg()
 * has one line that names the file and says what went wrong. */
enum {
  BSTORE_OK = 0,
  BSTORE_NOT_FOUND = 1, /* no such breaker, or (open without create) no file */
  BSTORE_ERROR = -1
};

/* The default state file, $XDG_STATE_HOME/resil/breakers.db or, when
 * XDG_STATE_HOME is unset, empty or relative (the XDG spec says to ignore
 * it then), $HOME/.local/state/resil/breakers.db. Creates the missing
 * directories with mode 0700 when create is non-zero. Returns 0, or -1 with
 * a one-line reason in err. */
int breaker_default_path(char *buf, size_t len, int create, char *err, size_t errlen);

/* 1 when this resil was built with SQLite, else 0. */
int breaker_store_available(void);

typedef struct breaker_store breaker_store;

/* Open (BSTORE_CREATE: and create if missing) the state file at path, set
 * WAL mode and the busy timeout, and create or check the schema. Like
 * sqlite3_open, *out is set even on failure (unless out of memory) so the
 * message can be read; always breaker_store_close() it. Without
 * BSTORE_CREATE, a missing file is BSTORE_NOT_FOUND. */
enum { BSTORE_CREATE = 1 };
int breaker_store_open(breaker_store **out, const char *path, int flags);
void breaker_store_close(breaker_store *s); /* NULL-safe */
const char *breaker_store_errmsg(const breaker_store *s);

/* Acts on the breaker inside the transaction. */
typedef void (*breaker_store_fn)(resil_breaker *b, void *ud);

/* The load-import-act-export-save transaction described at the top.
 *
 * settings: the breaker's settings, stored with the row; NULL uses the
 *   row's stored settings (then a missing row is BSTORE_NOT_FOUND).
 * flags: BSTORE_CREATE: a missing row starts as a new, closed breaker
 *   (otherwise BSTORE_NOT_FOUND). BSTORE_FRESH_ON_INVALID: a row the
 *   library refuses to import starts afresh instead of failing (for reset).
 * before, after (may be NULL): the breaker as imported (after fn: as
 *   exported and saved).
 *
 * On any failure the transaction is rolled back and nothing is saved. */
enum { BSTORE_FRESH_ON_INVALID = 2 };
int breaker_store_update(breaker_store *s, const char *name,
                         const breaker_settings *settings, int flags,
                         breaker_store_fn fn, void *ud, breaker_row *before,
                         breaker_row *after);

/* Read one row. BSTORE_NOT_FOUND when there is none. */
int breaker_store_get(breaker_store *s, const char *name, breaker_row *out);

/* Every row, ordered by name. *rows is malloc'ed (free() it; NULL when
 * *n is 0). */
int breaker_store_list(breaker_store *s, breaker_row **rows, size_t *n);

#endif /* RESIL_CLI_BREAKER_STORE_H */
