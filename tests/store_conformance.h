/* One conformance suite for every idempotency store backend.
 *
 * The suite knows nothing about any backend: a target says how to get a URL
 * for a fresh store, and every test opens that URL with a fake wall clock,
 * drives the protocol of include/resil/store.h through the public API and
 * checks the answers. Scopes are random per test, so a target may also hand
 * out the same URL of a shared server (Redis, PostgreSQL) every time. */
#ifndef RESIL_STORE_CONFORMANCE_H
#define RESIL_STORE_CONFORMANCE_H

#include <stddef.h>

#include "resil/store.h"

typedef struct store_target {
  const char *name;    /* the cmocka group's name, e.g. "memory" */
  const char *backend; /* what resil_store_name() must say, e.g. "sqlite" */
  /* Write the URL of a fresh store into buf; 0 on success. Called once per
   * test. */
  int (*make_url)(void *ud, char *buf, size_t len);
  /* Remove what make_url created; may be NULL. */
  void (*remove_url)(void *ud, const char *url);
  /* Reopening the URL finds what was stored (durable backends). */
  int persistent;
  void *ud;
} store_target;

/* Helpers the backend-specific store tests share. */

/* Options whose wall clock is fc. */
resil_store_options store_test_options(resil_fakeclock *fc);
/* Open url with store_test_options(fc); it must work, and when backend is
 * not NULL resil_store_name() must say it. */
resil_store *store_test_open(resil_fakeclock *fc, const char *url, const char *backend);
/* Opening url must fail with want and no store; the message goes to err and
 * must contain needle (when not NULL). */
void store_test_open_fails(resil_fakeclock *fc, const char *url, resil_err want,
                           const char *needle, char *err, size_t errlen);

/* Run every conformance test against t; returns the number that failed. */
int store_conformance_run(const store_target *t);

#endif
