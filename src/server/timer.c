/* Delayed answers without blocking a worker thread.
 *
 * A worker that must wait (global latency, /slow) suspends its MHD
 * connection and queues it here; this module's single thread sleeps on a
 * CLOCK_MONOTONIC condition variable until the earliest deadline and then
 * calls the wake function, which resumes the connection. The worker
 * threads therefore keep serving other clients while any number of answers
 * are pending, and a wait costs one heap entry, not a thread.
 *
 * The queue is a binary min-heap on (due, seq), allocated once with room
 * for every connection MHD may hold (each delayed request holds one), so
 * adding never allocates. Wake functions run without the lock held. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/internal.h"

static int before(const resil__fs_timer_entry *a, const resil__fs_timer_entry *b) {
  return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void sift_up(resil__fs_timer *t, size_t i) {
  resil__fs_timer_entry e = t->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!before(&e, &t->heap[parent])) break;
    t->heap[i] = t->heap[parent];
    i = parent;
  }
  t->heap[i] = e;
}

static void sift_down(resil__fs_timer *t, size_t i) {
  resil__fs_timer_entry e = t->heap[i];
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= t->len) break;
    if (child + 1 < t->len && before(&t->heap[child + 1], &t->heap[child])) child++;
    if (!before(&t->heap[child], &e)) break;
    t->heap[i] = t->heap[child];
    i = child;
  }
  t->heap[i] = e;
}

static void *pop(resil__fs_timer *t) {
  void *item = t->heap[0].item;
  t->heap[0] = t->heap[--t->len];
  if (t->len) sift_down(t, 0);
  return item;
}

static struct timespec to_timespec(resil_ns at) {
  struct timespec ts;
  ts.tv_sec = (time_t)(at / RESIL_SEC);
  ts.tv_nsec = (long)(at % RESIL_SEC);
  return ts;
}

static void *timer_main(void *arg) {
  resil__fs_timer *t = arg;
  pthread_mutex_lock(&t->mu);
  while (!t->stopping) {
    if (t->len == 0) {
      pthread_cond_wait(&t->cond, &t->mu);
      continue;
    }
    resil_ns due = t->heap[0].due;
    if (resil__fs_now() < due) {
      struct timespec ts = to_timespec(due);
      pthread_cond_timedwait(&t->cond, &t->mu, &ts);
      continue; /* re-check: woken early, stopped, or a sooner entry came */
    }
    void *item = pop(t);
    pthread_mutex_unlock(&t->mu);
    t->wake(item, 0);
    pthread_mutex_lock(&t->mu);
  }
  pthread_mutex_unlock(&t->mu);
  return NULL;
}

int resil__fs_timer_start(resil__fs_timer *t, size_t cap, resil__fs_wake_fn wake) {
  memset(t, 0, sizeof *t);
  t->wake = wake;
  t->cap = cap ? cap : 1;
  t->heap = calloc(t->cap, sizeof *t->heap);
  if (t->heap == NULL) {
    errno = ENOMEM;
    return -1;
  }
  pthread_condattr_t ca;
  int rc = pthread_condattr_init(&ca);
  if (rc == 0) {
    rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (rc == 0) rc = pthread_cond_init(&t->cond, &ca);
    pthread_condattr_destroy(&ca);
  }
  if (rc != 0) goto fail_heap;
  rc = pthread_mutex_init(&t->mu, NULL);
  if (rc != 0) goto fail_cond;
  rc = pthread_create(&t->thread, NULL, timer_main, t);
  if (rc != 0) goto fail_mutex;
  return 0;
fail_mutex:
  pthread_mutex_destroy(&t->mu);
fail_cond:
  pthread_cond_destroy(&t->cond);
fail_heap:
  free(t->heap);
  t->heap = NULL;
  errno = rc;
  return -1;
}

int resil__fs_timer_add(resil__fs_timer *t, resil_ns due, void *item, int *stopping) {
  pthread_mutex_lock(&t->mu);
  *stopping = t->stopping;
  if (t->stopping || t->len == t->cap) {
    pthread_mutex_unlock(&t->mu);
    return -1;
  }
  t->heap[t->len] = (resil__fs_timer_entry){due, t->seq++, item};
  sift_up(t, t->len++);
  /* Only a new earliest deadline changes what the thread waits for. */
  if (t->heap[0].item == item) pthread_cond_signal(&t->cond);
  pthread_mutex_unlock(&t->mu);
  return 0;
}

void resil__fs_timer_stop(resil__fs_timer *t) {
  if (t->heap == NULL || t->stopping) return;
  pthread_mutex_lock(&t->mu);
  t->stopping = 1;
  pthread_cond_signal(&t->cond);
  pthread_mutex_unlock(&t->mu);
  /* After the join no wake is in flight on the timer thread, so once the
   * queue is drained below every waiting item has been woken. */
  pthread_join(t->thread, NULL);
  pthread_mutex_lock(&t->mu);
  while (t->len) {
    void *item = pop(t);
    pthread_mutex_unlock(&t->mu);
    t->wake(item, 1);
    pthread_mutex_lock(&t->mu);
  }
  pthread_mutex_unlock(&t->mu);
}

void resil__fs_timer_free(resil__fs_timer *t) {
  if (t->heap == NULL) return;
  resil__fs_timer_stop(t);
  pthread_cond_destroy(&t->cond);
  pthread_mutex_destroy(&t->mu);
  free(t->heap);
  t->heap = NULL;
}
