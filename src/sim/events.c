/* The discrete-event core: a binary min-heap of events ordered by (time,
 * push order), and the simulated clock the loop moves to each event. */
#include <stdlib.h>
#include <string.h>

#include "sim/sim.h"

/* ---- heap ------------------------------------------------------------------ */

static int before(const sim_event *a, const sim_event *b) {
  if (a->t != b->t) return a->t < b->t;
  return a->seq < b->seq;
}

resil_err sim_heap_init(sim_heap *h, size_t cap_hint) {
  memset(h, 0, sizeof *h);
  if (cap_hint < 16) cap_hint = 16;
  h->ev = malloc(cap_hint * sizeof *h->ev);
  if (h->ev == NULL) return RESIL_ENOMEM;
  h->cap = cap_hint;
  return RESIL_OK;
}

void sim_heap_free(sim_heap *h) {
  if (h == NULL) return;
  free(h->ev);
  memset(h, 0, sizeof *h);
}

void sim_heap_clear(sim_heap *h) {
  h->n = 0;
  h->next_seq = 0;
}

resil_err sim_heap_push(sim_heap *h, resil_ns t, uint32_t kind, uint32_t id, uint32_t aux) {
  if (h->n == h->cap) {
    size_t cap = h->cap ? h->cap * 2 : 16;
    if (cap > SIZE_MAX / sizeof *h->ev) return RESIL_ENOMEM;
    sim_event *ev = realloc(h->ev, cap * sizeof *ev);
    if (ev == NULL) return RESIL_ENOMEM;
    h->ev = ev;
    h->cap = cap;
  }
  sim_event e = {t, h->next_seq++, kind, id, aux};
  /* Sift up: move parents down into the hole until e fits. */
  size_t i = h->n++;
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!before(&e, &h->ev[parent])) break;
    h->ev[i] = h->ev[parent];
    i = parent;
  }
  h->ev[i] = e;
  return RESIL_OK;
}

int sim_heap_pop(sim_heap *h, sim_event *out) {
  if (h->n == 0) return 0;
  *out = h->ev[0];
  sim_event last = h->ev[--h->n];
  size_t n = h->n, i = 0;
  if (n == 0) return 1;
  /* Sift down: move the smaller child up into the hole until `last` fits. */
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && before(&h->ev[child + 1], &h->ev[child])) child++;
    if (!before(&h->ev[child], &last)) break;
    h->ev[i] = h->ev[child];
    i = child;
  }
  h->ev[i] = last;
  return 1;
}

/* ---- the simulated clock ---------------------------------------------------- */

resil_err sim_clock_init(sim_clock *c) {
  c->now = 0;
  return resil_fakeclock_new(&c->fc, 0, 0);
}

void sim_clock_free(sim_clock *c) {
  if (c == NULL) return;
  resil_fakeclock_free(c->fc);
  c->fc = NULL;
}

void sim_clock_set(sim_clock *c, resil_ns t) {
  if (t <= c->now) return;
  resil_fakeclock_advance(c->fc, t - c->now);
  c->now = t;
}

resil_clock sim_clock_get(sim_clock *c) { return resil_fakeclock_clock(c->fc); }
