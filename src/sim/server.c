/* A processor-sharing server that slows down as work piles up.
 *
 * With L jobs in progress every job advances at the same speed,
 * base / (base + per * L) units of work per nanosecond, and a job needs
 * `base` units. So at a constant L each job takes base + per * L (collapse:
 * 1s + 10ms per job in flight), and when L grows, every job already inside
 * slows down too, as on a real server whose threads contend for the same
 * CPU, locks and disks. Served work per second is L / (base + per * L) jobs,
 * which never reaches 1 / per: offered load above that grows the backlog
 * without end.
 *
 * Since all jobs advance together they finish in arrival order, so the
 * server is a FIFO ring of "done when the shared progress counter reaches
 * x" marks plus that counter. The caller owns the event for the next
 * completion: after each arrival or completion it asks sim_ps_next_done()
 * again and treats events scheduled under an older `gen` as stale. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sim/sim.h"

resil_err sim_ps_init(sim_ps_server *s, resil_ns base, resil_ns per, size_t cap_hint) {
  memset(s, 0, sizeof *s);
  if (base <= 0 || per < 0) return RESIL_EINVAL;
  s->base = base;
  s->per = per;
  if (cap_hint < 16) cap_hint = 16;
  s->q = malloc(cap_hint * sizeof *s->q);
  if (s->q == NULL) return RESIL_ENOMEM;
  s->cap = cap_hint;
  return RESIL_OK;
}

void sim_ps_free(sim_ps_server *s) {
  if (s == NULL) return;
  free(s->q);
  memset(s, 0, sizeof *s);
}

/* Nanoseconds per unit of work with n jobs inside. */
static double slowness(const sim_ps_server *s, size_t n) {
  return ((double)s->base + (double)s->per * (double)n) / (double)s->base;
}

/* Bring the progress counter up to t. */
static void catch_up(sim_ps_server *s, resil_ns t) {
  if (t > s->updated && s->n > 0) s->progress += (double)(t - s->updated) / slowness(s, s->n);
  if (t > s->updated) s->updated = t;
}

resil_err sim_ps_arrive(sim_ps_server *s, resil_ns t, uint32_t id, uint32_t aux) {
  catch_up(s, t);
  if (s->n == s->cap) {
    size_t cap = s->cap * 2;
    sim_ps_job *q = malloc(cap * sizeof *q);
    if (q == NULL) return RESIL_ENOMEM;
    for (size_t i = 0; i < s->n; i++) q[i] = s->q[(s->head + i) % s->cap];
    free(s->q);
    s->q = q;
    s->cap = cap;
    s->head = 0;
  }
  sim_ps_job *j = &s->q[(s->head + s->n++) % s->cap];
  j->done_at = s->progress + (double)s->base;
  j->id = id;
  j->aux = aux;
  s->gen++;
  return RESIL_OK;
}

size_t sim_ps_inflight(const sim_ps_server *s) { return s->n; }

resil_ns sim_ps_next_done(sim_ps_server *s) {
  if (s->n == 0) return -1;
  double left = s->q[s->head].done_at - s->progress;
  if (left < 0) left = 0;
  double dt = ceil(left * slowness(s, s->n));
  return dt >= 9.2e18 ? RESIL_NS_MAX : resil_ns_add(s->updated, (resil_ns)dt);
}

void sim_ps_complete(sim_ps_server *s, resil_ns t, uint32_t *id, uint32_t *aux) {
  catch_up(s, t);
  const sim_ps_job *j = &s->q[s->head];
  *id = j->id;
  *aux = j->aux;
  /* Rounding the completion time up may leave the counter a hair short;
   * the job is done now by construction, so line the counter up with it. */
  if (s->progress < j->done_at) s->progress = j->done_at;
  s->head = (s->head + 1) % s->cap;
  s->n--;
  s->gen++;
}
