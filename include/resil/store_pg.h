/* resil: the PostgreSQL idempotency store's transactional mode.
 *
 * resil_store_open("postgres://...") gives a store with its own connection
 * pool; every call commits on its own. This header adds a store that runs
 * on a connection the caller owns, so the stored response can commit in the
 * same transaction as the business write: either both happen or neither.
 *
 *   PGconn *db = ...;                       (the application's connection)
 *   resil_store *s;
 *   resil_store_pg_with_conn(&s, db, NULL, err, sizeof err);
 *
 *   PQexec(db, "BEGIN");
 *   resil_store_claim(s, scope, key, fp, lease, &r);         (1)
 *   ... CLAIMED: the business write on db ...
 *   resil_store_complete(s, scope, key, r.token, &resp, ttl);
 *   PQexec(db, "COMMIT");                   (the response commits with it)
 *
 * Rules:
 * - The store never issues BEGIN, COMMIT or ROLLBACK inside the caller's
 *   transaction: its statements join whatever transaction is open. A claim
 *   made while no transaction is open runs in a short transaction of its
 *   own (a claim is several statements that must be atomic); complete and
 *   release are single statements and simply autocommit then.
 * - complete() belongs in the same transaction as the business write: then
 *   a rollback also rolls back the stored response, and a retry runs again.
 * - (1) Where to claim, a trade-off:
 *   * inside the business transaction (as above): the claim, the write and
 *     the response commit or roll back together, so a crash never leaves a
 *     half-done key behind. But the claim's row stays locked until the
 *     transaction ends: a concurrent duplicate *waits* on the lock (up to
 *     its own lock_timeout) and then sees REPLAY, or CLAIMED if this
 *     transaction rolled back, instead of an immediate IN_PROGRESS.
 *     Leases never come into play: a crashed holder's transaction is
 *     rolled back by the server.
 *   * in its own short transaction (claim before BEGIN): duplicates see
 *     IN_PROGRESS at once and nothing waits, but if the business
 *     transaction rolls back the claim stays: release() it (it
 *     autocommits), or it blocks retries until its lease ends.
 * - Treat any error from the store inside the caller's transaction as the
 *   end of that transaction: roll it back. (An SQL error has aborted it
 *   already, PostgreSQL's rule; a token that no longer owns its key is
 *   RESIL_ESTORE without one.) A call while the transaction is aborted, or
 *   while a command is in progress, fails with RESIL_ESTORE and sends
 *   nothing.
 * - READ COMMITTED (PostgreSQL's default) is the isolation level to use. Under
 *   REPEATABLE READ or SERIALIZABLE a claim that meets a row committed after
 *   the transaction began fails with a serialization error (RESIL_ESTORE):
 *   roll back and retry the transaction.
 * - Tables are found through the connection's search_path (the URL's
 *   schema= parameter does not apply). If the schema is missing or older
 *   than this resil and no transaction is open at this call, it is created
 *   or migrated here, in a transaction of its own; inside a transaction it
 *   must already be there (open the store by URL once, e.g. at deploy).
 * - The store does not own the connection: resil_store_close() leaves it
 *   open, and the caller closes it after the store. There is no reconnect;
 *   a broken connection is RESIL_ESTORE. Store calls are serialized by the
 *   store, but the caller must not use the connection from another thread
 *   while a store call runs (libpq's rule for one connection).
 *
 * pgconn is a PGconn * (libpq-fe.h; void * here so this header needs no
 * libpq). opt may be NULL. RESIL_EINVAL for NULL arguments, RESIL_ESTORE
 * when the connection is not usable or the schema is missing, newer than
 * this resil or cannot be created, RESIL_EUNSUPPORTED when resil was built
 * without PostgreSQL (RESIL_WITH_PG=OFF); *errbuf (may be NULL, errlen
 * bytes) gets a one-line reason. Thread-safe with respect to other stores. */
#ifndef RESIL_STORE_PG_H
#define RESIL_STORE_PG_H

#include <stddef.h>

#include "error.h"
#include "export.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

RESIL_API resil_err resil_store_pg_with_conn(resil_store **out, void *pgconn,
                                             const resil_store_options *opt, char *errbuf,
                                             size_t errlen);

#ifdef __cplusplus
}
#endif
#endif /* RESIL_STORE_PG_H */
