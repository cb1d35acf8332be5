/* Cancellation tokens. The fired flag is an atomic so the hot-path check is a
 * single load; waiting uses a condition variable on CLOCK_MONOTONIC so a fire
 * from another thread wakes the sleeper at once, and wall-clock jumps do not
 * stretch or shorten a backoff. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "resil/time.h"

struct resil_cancel {
  atomic_int fired;
  pthread_mutex_t mu;
  pthread_cond_t cv;
};

resil_err resil_cancel_new(resil_cancel **out) {
  if (out == NULL) return RESIL_EINVAL;
  *out = NULL;
  resil_cancel *c = calloc(1, sizeof *c);
  if (c == NULL) return RESIL_ENOMEM;
  pthread_condattr_t attr;
  if (pthread_condattr_init(&attr) != 0) goto fail_attr;
  if (pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0) goto fail_cv;
  if (pthread_cond_init(&c->cv, &attr) != 0) goto fail_cv;
  if (pthread_mutex_init(&c->mu, NULL) != 0) {
    pthread_cond_destroy(&c->cv);
    goto fail_cv;
  }
  pthread_condattr_destroy(&attr);
  atomic_init(&c->fired, 0);
  *out = c;
  return RESIL_OK;
fail_cv:
  pthread_condattr_destroy(&attr);
fail_attr:
  free(c);
  return RESIL_ESYS;
}

void resil_cancel_free(resil_cancel *c) {
  if (c == NULL) return;
  pthread_cond_destroy(&c->cv);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

void resil_cancel_fire(resil_cancel *c) {
  if (c == NULL) return;
  pthread_mutex_lock(&c->mu);
  atomic_store_explicit(&c->fired, 1, memory_order_release);
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
}

int resil_cancel_fired(const resil_cancel *c) {
  if (c == NULL) return 0;
  /* The cast drops const only for the atomic load, which C11 declares on a
   * non-const pointer. */
  return atomic_load_explicit((atomic_int *)&c->fired, memory_order_acquire);
}

void resil_cancel_reset(resil_cancel *c) {
  if (c == NULL) return;
  pthread_mutex_lock(&c->mu);
  atomic_store_explicit(&c->fired, 0, memory_order_release);
  pthread_mutex_unlock(&c->mu);
}

static struct timespec deadline_after(resil_ns d) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  resil_ns abs = resil_ns_add((resil_ns)now.tv_sec * RESIL_SEC + now.tv_nsec, d);
  struct timespec ts = {(time_t)(abs / RESIL_SEC), (long)(abs % RESIL_SEC)};
  return ts;
}

resil_err resil_cancel_wait(resil_cancel *c, resil_ns d) {
  if (c == NULL) {
    if (d <= 0) return RESIL_OK;
    struct timespec until = deadline_after(d);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR) {
    }
    return RESIL_OK;
  }
  if (resil_cancel_fired(c)) return RESIL_ECANCELED;
  if (d <= 0) return RESIL_OK;
  struct timespec until = deadline_after(d);
  resil_err rc = RESIL_OK;
  pthread_mutex_lock(&c->mu);
  for (;;) {
    if (atomic_load_explicit(&c->fired, memory_order_acquire)) {
      rc = RESIL_ECANCELED;
      break;
    }
    int e = pthread_cond_timedwait(&c->cv, &c->mu, &until);
    if (e == ETIMEDOUT) {
      /* A fire that raced with the timeout still wins: report what the caller
       * would observe next anyway. */
      if (atomic_load_explicit(&c->fired, memory_order_acquire)) rc = RESIL_ECANCELED;
      break;
    }
  }
  pthread_mutex_unlock(&c->mu);
  return rc;
}
