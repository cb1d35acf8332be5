/* A deterministic clock: sleeping advances time instead of waiting. Atomics
 * keep it usable from several threads (TSan-clean) without a lock. */
#include <stdatomic.h>
#include <stdlib.h>

#include "resil/time.h"

struct resil_fakeclock {
  _Atomic int64_t now;
  _Atomic int64_t slept;
  _Atomic uint64_t sleeps;
  int64_t start;
  int64_t wall_start;
};

resil_err resil_fakeclock_new(resil_fakeclock **out, resil_ns start, resil_ns wall_start) {
  if (out == NULL) return RESIL_EINVAL;
  resil_fakeclock *fc = calloc(1, sizeof *fc);
  *out = fc;
  if (fc == NULL) return RESIL_ENOMEM;
  atomic_init(&fc->now, start);
  atomic_init(&fc->slept, 0);
  atomic_init(&fc->sleeps, 0);
  fc->start = start;
  fc->wall_start = wall_start;
  return RESIL_OK;
}

void resil_fakeclock_free(resil_fakeclock *fc) { free(fc); }

static void saturating_add(_Atomic int64_t *v, resil_ns d) {
  int64_t cur = atomic_load(v);
  while (!atomic_compare_exchange_weak(v, &cur, resil_ns_add(cur, d))) {
  }
}

void resil_fakeclock_advance(resil_fakeclock *fc, resil_ns d) {
  if (fc && d > 0) saturating_add(&fc->now, d);
}

resil_ns resil_fakeclock_now(const resil_fakeclock *fc) {
  return atomic_load((_Atomic int64_t *)&fc->now);
}

resil_ns resil_fakeclock_slept(const resil_fakeclock *fc) {
  return atomic_load((_Atomic int64_t *)&fc->slept);
}

uint64_t resil_fakeclock_sleeps(const resil_fakeclock *fc) {
  return atomic_load((_Atomic uint64_t *)&fc->sleeps);
}

static resil_ns fake_now(void *ud) { return resil_fakeclock_now(ud); }

static resil_err fake_sleep(void *ud, resil_ns d, resil_cancel *cancel) {
  resil_fakeclock *fc = ud;
  if (resil_cancel_fired(cancel)) return RESIL_ECANCELED;
  atomic_fetch_add(&fc->sleeps, 1);
  if (d > 0) {
    saturating_add(&fc->slept, d);
    saturating_add(&fc->now, d);
  }
  return RESIL_OK;
}

static resil_ns fake_wall_now(void *ud) {
  resil_fakeclock *fc = ud;
  return resil_ns_add(fc->wall_start, resil_fakeclock_now(fc) - fc->start);
}

resil_clock resil_fakeclock_clock(resil_fakeclock *fc) {
  resil_clock c = {fake_now, fake_sleep, fc};
  return c;
}

resil_wallclock resil_fakeclock_wallclock(resil_fakeclock *fc) {
  resil_wallclock w = {fake_wall_now, fc};
  return w;
}
