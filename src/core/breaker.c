/* The circuit breaker. The contract (states, trip rules, open durations,
 * probes, persistence) is in include/resil/breaker.h; this comment explains
 * how the implementation keeps it when many threads share one breaker.
 *
 * State word. `word` packs the state (low 3 bits) and an epoch (the rest).
 * Every state change bumps the epoch, and a permit carries the epoch it was
 * acquired in, so a record whose epoch no longer matches is stale: it counts
 * in the lifetime totals but nowhere else. In CLOSED, acquire is one acquire
 * load of `word`; record is that load again plus the trip rule's atomics.
 *
 * Changes. Every state change happens under `mu` and goes through two stores:
 * first the new epoch with the internal state BUSY, then (after resetting
 * what the new state starts from: windows, probe slots, open_until) the new
 * epoch with the real state. BUSY sends acquirers to the slow path, where
 * they wait on `mu`, so no permit of the new epoch exists until its state is
 * ready; and permits of the old epoch already fail the epoch check. A record
 * that loaded `word` just before the change may still land its outcome in a
 * window just after it (the check and the update are not one atomic step);
 * that is at most one outcome per thread that was mid-record, and the window
 * aggregates stay exact regardless (next paragraph).
 *
 * Windows never drift. COUNT_WINDOW is a ring of one-byte outcome codes plus
 * three aggregates (calls, failures, slow). Every change to a slot is an
 * atomic exchange, and whoever exchanged adds (new - old) to the aggregates;
 * clearing the ring is the same operation with new = empty. (A call whose
 * outcome equals what its slot holds skips the write: that is an exchange of
 * the value for itself, with a zero delta.) Additions
 * commute, so once the threads stop the aggregates equal a recount of the
 * ring exactly; in between they can be off by the updates in flight (even
 * briefly negative after a clear), which readers clamp. TIME_WINDOW keeps
 * `nbuckets` buckets of counters and `tw_head`, the newest bucket number.
 * A record adds to the aggregates first and to its bucket second; evicting a
 * bucket exchanges its counters with 0 and subtracts what it took. So every
 * unit that is in a bucket is also in the aggregates (aggregate >= sum of the
 * buckets, never negative), and a unit that lands in a bucket after it was
 * evicted stays counted in both: it is simply attributed to the newer bucket
 * now occupying that slot (it is a call that just happened). Eviction runs
 * under `mu` only when the clock has entered a new bucket, i.e. at most once
 * per bucket width; snapshots advance too, so an idle window empties.
 *
 * Lifetime totals live in STRIPES cache-line-sized stripes; a thread always
 * uses the same stripe, so the CLOSED fast path of the CONSECUTIVE rule
 * writes no cache line that another thread writes. The consecutive-failure
 * counter is only written on failures, or by a success that finds it
 * non-zero.
 *
 * Callbacks. A transition appends (from, to) to a small queue while holding
 * `mu`, so the queue order is the transition order. Whoever releases `mu`
 * after a transition drains the queue unless another thread is already
 * draining it; the callback itself runs with `mu` released. Hence callbacks
 * are delivered exactly once per transition, in transition order, never two
 * at a time, but possibly on another thread that is delivering (so a call
 * that changed the state may return before its callback has run). A callback
 * may call back into the breaker: a transition it causes is queued and
 * delivered after it returns. If the queue is full, a thread about to make a
 * change waits for room (or delivers the oldest entry itself when nobody is
 * delivering, or when it is the delivering thread, from inside a callback).
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h> /* isfinite only: the core does not link libm */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "core/internal.h"
#include "resil/breaker.h"
#include "resil/rng.h"

#define STATE_BITS 3
#define STATE_MASK ((uint64_t)7)
#define ST_BUSY 7u /* internal: a change is being made, wait on mu */
#define EPOCH_MAX (UINT64_MAX >> STATE_BITS)

#define MAX_WINDOW_CALLS 1000000u
#define MAX_BUCKETS 65536u

#define STRIPES 16
#define QCAP 32

/* Permit flags. */
#define PF_NORECORD 1u /* acquired while DISABLED: record does nothing */
#define PF_NOTRIP 2u   /* acquired while METRICS_ONLY: count, never trip */
#define PF_TIMED 4u    /* start_ holds the acquire time */

/* COUNT_WINDOW slot codes (0 = empty). */
#define OC_PRESENT 1u
#define OC_FAIL 2u
#define OC_SLOW 4u

#define CACHELINE 64

typedef struct stripe {
  _Alignas(CACHELINE) _Atomic uint64_t successes;
  _Atomic uint64_t failures, ignored, slow, rejected;
} stripe;

typedef struct bucket {
  _Atomic int64_t calls, failures, slow;
} bucket;

typedef struct transition {
  uint8_t from, to;
} transition;

struct resil_breaker {
  /* ---- immutable after creation ---- */
  resil_breaker_config cfg; /* name points at our copy; alloc resolved */
  void *raw;                /* the block the allocator returned */
  int timed;                /* slow calls tracked: permits carry a start time */
  uint32_t min_calls;       /* effective minimum_calls */
  uint32_t nbuckets;
  resil_ns width;  /* TIME_WINDOW bucket width */
  resil_ns origin; /* the clock at creation: bucket 0 starts here */
  _Atomic uint8_t *ring;
  bucket *buckets;

  /* ---- read by every call, written only on changes ---- */
  _Alignas(CACHELINE) _Atomic uint64_t word;
  _Atomic resil_ns open_until; /* OPEN: when probes may start */
  _Atomic resil_ns ho_block;   /* HALF_OPEN with every slot taken: the earliest
                                  probe expiry; 0 otherwise */
  _Atomic uint64_t tw_head;    /* TIME_WINDOW: newest bucket number */

  /* ---- written by calls ---- */
  _Alignas(CACHELINE) _Atomic uint64_t consec; /* CONSECUTIVE */
  _Alignas(CACHELINE) _Atomic uint64_t head;   /* COUNT_WINDOW: next slot */
  _Alignas(CACHELINE) _Atomic int64_t agg_calls;
  _Atomic int64_t agg_failures, agg_slow;
  stripe stripes[STRIPES];
  _Atomic uint64_t trips; /* written under mu */

  /* ---- under mu ---- */
  _Alignas(CACHELINE) pthread_mutex_t mu;
  pthread_cond_t space; /* signalled when the callback queue shrinks */
  uint32_t trips_in_row;
  uint32_t probe_successes;
  uint32_t probes_used;
  resil_ns probe_exp[RESIL_BREAKER_MAX_PROBES]; /* 0 = free */
  resil_rng rng;
  transition queue[QCAP];
  unsigned qhead, qlen;
  int delivering;
  pthread_t deliverer;
};

/* ---- small helpers ------------------------------------------------------ */

static inline uint32_t w_state(uint64_t w) { return (uint32_t)(w & STATE_MASK); }
static inline uint64_t w_epoch(uint64_t w) { return w >> STATE_BITS; }
static inline uint64_t w_pack(uint64_t epoch, uint32_t st) {
  return ((epoch & EPOCH_MAX) << STATE_BITS) | st;
}

static inline resil_ns now_of(const resil_breaker *b) { return b->cfg.clock.now(b->cfg.clock.ud); }

static inline uint64_t load_word(const resil_breaker *b) {
  return atomic_load_explicit((_Atomic uint64_t *)&b->word, memory_order_acquire);
}

static inline stripe *my_stripe(resil_breaker *b) {
  return &b->stripes[resil__thread_stripe(STRIPES)];
}

static inline void count(_Atomic uint64_t *c) {
  atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static inline uint64_t relaxed64(const _Atomic uint64_t *c) {
  return atomic_load_explicit((_Atomic uint64_t *)c, memory_order_relaxed);
}

static inline int64_t relaxed_i64(const _Atomic int64_t *c) {
  return atomic_load_explicit((_Atomic int64_t *)c, memory_order_relaxed);
}

/* ---- names and config --------------------------------------------------- */

const char *resil_breaker_state_name(resil_breaker_state s) {
  switch (s) {
    case RESIL_BREAKER_CLOSED: return "closed";
    case RESIL_BREAKER_OPEN: return "open";
    case RESIL_BREAKER_HALF_OPEN: return "half-open";
    case RESIL_BREAKER_FORCED_OPEN: return "forced-open";
    case RESIL_BREAKER_DISABLED: return "disabled";
    case RESIL_BREAKER_METRICS_ONLY: return "metrics-only";
  }
  return "unknown";
}

void resil_breaker_config_init(resil_breaker_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->size = sizeof *cfg;
  cfg->name = "default";
  cfg->trip = RESIL_TRIP_CONSECUTIVE;
  cfg->failure_threshold = 5;
  cfg->window_calls = 100;
  cfg->window_time = 60 * RESIL_SEC;
  cfg->window_buckets = 60;
  cfg->minimum_calls = 20;
  cfg->failure_rate = 0.5;
  cfg->slow_call_duration = 0;
  cfg->slow_call_rate = 1.0;
  cfg->open_duration = 30 * RESIL_SEC;
  cfg->open_multiplier = 1.0;
  cfg->open_duration_max = 5 * RESIL_MIN;
  cfg->open_jitter = 0.0;
  cfg->half_open_probes = 1;
  cfg->success_threshold = 1;
  cfg->probe_timeout = 60 * RESIL_SEC;
  cfg->on_state_change = NULL;
  cfg->ud = NULL;
  cfg->clock = resil_clock_system();
  cfg->alloc = resil_allocator_default();
}

static int rate_ok(double r) { return r > 0.0 && r <= 1.0; } /* NaN fails */

static resil_err validate(const resil_breaker_config *c) {
  if ((unsigned)c->trip > RESIL_TRIP_TIME_WINDOW) return RESIL_EINVAL;
  if (c->failure_threshold == 0) return RESIL_EINVAL;
  if (c->window_calls == 0 || c->window_calls > MAX_WINDOW_CALLS) return RESIL_EINVAL;
  if (c->window_time <= 0 || c->window_buckets == 0 || c->window_buckets > MAX_BUCKETS ||
      c->window_time < (resil_ns)c->window_buckets)
    return RESIL_EINVAL;
  if (c->minimum_calls == 0) return RESIL_EINVAL;
  if (!rate_ok(c->failure_rate) || !rate_ok(c->slow_call_rate)) return RESIL_EINVAL;
  if (c->slow_call_duration < 0) return RESIL_EINVAL;
  if (c->open_duration <= 0 || c->open_duration_max < c->open_duration) return RESIL_EINVAL;
  if (!(c->open_multiplier >= 1.0) || !isfinite(c->open_multiplier)) return RESIL_EINVAL;
  if (!(c->open_jitter >= 0.0 && c->open_jitter < 1.0)) return RESIL_EINVAL;
  if (c->half_open_probes == 0 || c->half_open_probes > RESIL_BREAKER_MAX_PROBES)
    return RESIL_EINVAL;
  if (c->success_threshold == 0) return RESIL_EINVAL;
  if (c->probe_timeout <= 0) return RESIL_EINVAL;
  if (c->clock.now == NULL) return RESIL_EINVAL;
  if (c->alloc.malloc && (c->alloc.free == NULL || c->alloc.realloc == NULL)) return RESIL_EINVAL;
  return RESIL_OK;
}

/* ---- create / free ------------------------------------------------------ */

static size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

resil_err resil_breaker_new(resil_breaker **out, const resil_breaker_config *cfg) {
  if (out == NULL) return RESIL_EINVAL;
  *out = NULL;
  /* The first version of the struct: it must be exactly as large as ours. */
  if (cfg == NULL || cfg->size != sizeof *cfg) return RESIL_EINVAL;
  if (validate(cfg) != RESIL_OK) return RESIL_EINVAL;

  const char *name = cfg->name ? cfg->name : "default";
  size_t name_len = strlen(name) + 1;
  size_t ring_len = cfg->trip == RESIL_TRIP_COUNT_WINDOW ? cfg->window_calls : 0;
  size_t nb = cfg->trip == RESIL_TRIP_TIME_WINDOW ? cfg->window_buckets : 0;

  /* One block: [slack][breaker][buckets][ring][name]. The slack lets the
   * breaker start on a cache line whatever alignment the allocator gives. */
  size_t off_buckets = round_up(sizeof(resil_breaker), _Alignof(bucket));
  size_t off_ring = off_buckets + nb * sizeof(bucket);
  size_t off_name = off_ring + ring_len;
  size_t total = off_name + name_len + CACHELINE;

  resil_allocator a = resil__alloc_resolve(&cfg->alloc);
  void *raw = resil__alloc(&a, total);
  if (raw == NULL) return RESIL_ENOMEM;
  uintptr_t base = ((uintptr_t)raw + CACHELINE - 1) & ~(uintptr_t)(CACHELINE - 1);
  resil_breaker *b = (resil_breaker *)base;
  memset(b, 0, off_name); /* zero atomics have an all-zero representation */
  char *name_copy = (char *)base + off_name;
  memcpy(name_copy, name, name_len);

  if (pthread_mutex_init(&b->mu, NULL) != 0) {
    resil__free(&a, raw);
    return RESIL_ESYS;
  }
  if (pthread_cond_init(&b->space, NULL) != 0) {
    pthread_mutex_destroy(&b->mu);
    resil__free(&a, raw);
    return RESIL_ESYS;
  }

  b->cfg = *cfg;
  b->cfg.name = name_copy;
  b->cfg.alloc = a;
  b->raw = raw;
  b->timed = cfg->slow_call_duration > 0;
  b->min_calls = cfg->minimum_calls;
  if (cfg->trip == RESIL_TRIP_COUNT_WINDOW && b->min_calls > cfg->window_calls)
    b->min_calls = cfg->window_calls;
  b->ring = ring_len ? (_Atomic uint8_t *)((char *)base + off_ring) : NULL;
  b->buckets = nb ? (bucket *)((char *)base + off_buckets) : NULL;
  b->nbuckets = (uint32_t)nb;
  b->width = cfg->window_time / (resil_ns)cfg->window_buckets;
  b->origin = cfg->trip == RESIL_TRIP_TIME_WINDOW ? now_of(b) : 0;
  if (cfg->use_seed)
    resil_rng_seed(&b->rng, cfg->seed);
  else
    (void)resil_rng_seed_os(&b->rng); /* falls back to a clock-based seed */
  atomic_init(&b->word, w_pack(0, RESIL_BREAKER_CLOSED));
  *out = b;
  return RESIL_OK;
}

void resil_breaker_free(resil_breaker *b) {
  if (b == NULL) return;
  pthread_cond_destroy(&b->space);
  pthread_mutex_destroy(&b->mu);
  resil_allocator a = b->cfg.alloc;
  resil__free(&a, b->raw);
}

const char *resil_breaker_name(const resil_breaker *b) { return b->cfg.name; }

/* ---- callback delivery (see the top of the file) ------------------------ */

/* Under mu, with the queue non-empty: deliver the oldest entry with mu
 * released, marking this thread as the deliverer meanwhile. */
static void deliver_one_locked(resil_breaker *b) {
  transition t = b->queue[b->qhead];
  b->qhead = (b->qhead + 1) % QCAP;
  b->qlen--;
  pthread_cond_broadcast(&b->space);
  int was = b->delivering;
  pthread_t prev = b->deliverer;
  b->delivering = 1;
  b->deliverer = pthread_self();
  pthread_mutex_unlock(&b->mu);
  b->cfg.on_state_change(b->cfg.ud, b, (resil_breaker_state)t.from, (resil_breaker_state)t.to);
  pthread_mutex_lock(&b->mu);
  b->delivering = was;
  b->deliverer = prev;
}

/* Lock mu with room in the queue for the one transition a locked section
 * makes at most. */
static void lock_tx(resil_breaker *b) {
  pthread_mutex_lock(&b->mu);
  while (b->qlen >= QCAP) {
    if (b->delivering && !pthread_equal(b->deliverer, pthread_self()))
      pthread_cond_wait(&b->space, &b->mu);
    else
      deliver_one_locked(b);
  }
}

/* Unlock mu, first delivering queued transitions unless a delivery is
 * already under way (on this thread, further up the stack, or on another). */
static void unlock_tx(resil_breaker *b) {
  if (!b->delivering)
    while (b->qlen > 0) deliver_one_locked(b);
  pthread_mutex_unlock(&b->mu);
}

static void enqueue_locked(resil_breaker *b, uint32_t from, uint32_t to) {
  if (b->cfg.on_state_change == NULL || from == to) return;
  /* lock_tx left room for one entry and each locked section makes at most
   * one transition. */
  b->queue[(b->qhead + b->qlen) % QCAP] = (transition){(uint8_t)from, (uint8_t)to};
  b->qlen++;
}

/* ---- windows ------------------------------------------------------------ */

static void add_i64(_Atomic int64_t *c, int64_t d) {
  if (d) atomic_fetch_add_explicit(c, d, memory_order_relaxed);
}

/* Exchange a bucket's counters with 0 and take them off the aggregates. */
static void evict_bucket(resil_breaker *b, bucket *k) {
  add_i64(&b->agg_calls, -atomic_exchange_explicit(&k->calls, 0, memory_order_relaxed));
  add_i64(&b->agg_failures, -atomic_exchange_explicit(&k->failures, 0, memory_order_relaxed));
  add_i64(&b->agg_slow, -atomic_exchange_explicit(&k->slow, 0, memory_order_relaxed));
}

/* Empty the window and the consecutive count. Under mu. */
static void clear_windows_locked(resil_breaker *b) {
  atomic_store_explicit(&b->consec, 0, memory_order_relaxed);
  if (b->ring) {
    int64_t calls = 0, fails = 0, slow = 0;
    for (uint32_t i = 0; i < b->cfg.window_calls; i++) {
      uint8_t old = atomic_exchange_explicit(&b->ring[i], 0, memory_order_relaxed);
      calls += (old & OC_PRESENT) != 0;
      fails += (old & OC_FAIL) != 0;
      slow += (old & OC_SLOW) != 0;
    }
    add_i64(&b->agg_calls, -calls);
    add_i64(&b->agg_failures, -fails);
    add_i64(&b->agg_slow, -slow);
  }
  for (uint32_t i = 0; i < b->nbuckets; i++) evict_bucket(b, &b->buckets[i]);
}

static uint64_t bucket_of(const resil_breaker *b, resil_ns now) {
  if (now <= b->origin) return 0;
  return ((uint64_t)now - (uint64_t)b->origin) / (uint64_t)b->width;
}

/* Move the time window forward to bucket n, evicting the buckets that fall
 * out of it. The mutex makes the eviction happen once per bucket. */
static void tw_advance(resil_breaker *b, uint64_t n) {
  pthread_mutex_lock(&b->mu);
  uint64_t h = atomic_load_explicit(&b->tw_head, memory_order_relaxed);
  if (n > h) {
    uint64_t steps = n - h < b->nbuckets ? n - h : b->nbuckets;
    for (uint64_t i = 1; i <= steps; i++) evict_bucket(b, &b->buckets[(h + i) % b->nbuckets]);
    atomic_store_explicit(&b->tw_head, n, memory_order_release);
  }
  pthread_mutex_unlock(&b->mu);
}

static void tw_catch_up(resil_breaker *b, resil_ns now) {
  uint64_t n = bucket_of(b, now);
  if (n > atomic_load_explicit(&b->tw_head, memory_order_acquire)) tw_advance(b, n);
}

static void window_read(const resil_breaker *b, uint64_t *calls, uint64_t *fails, uint64_t *slow) {
  int64_t c = relaxed_i64(&b->agg_calls), f = relaxed_i64(&b->agg_failures),
          s = relaxed_i64(&b->agg_slow);
  /* In-flight updates can make a reading briefly inconsistent; keep it sane. */
  if (c < 0) c = 0;
  if (f < 0) f = 0;
  if (s < 0) s = 0;
  if (f > c) f = c;
  if (s > c) s = c;
  *calls = (uint64_t)c;
  *fails = (uint64_t)f;
  *slow = (uint64_t)s;
}

/* Does the window meet the trip rule? Rates are compared as quotients so a
 * rate exactly at the threshold trips (3/10 >= 0.3 holds in doubles). */
static int window_tripped(const resil_breaker *b) {
  uint64_t calls, fails, slow;
  window_read(b, &calls, &fails, &slow);
  if (calls == 0 || calls < b->min_calls) return 0;
  if ((double)fails / (double)calls >= b->cfg.failure_rate) return 1;
  return b->timed && (double)slow / (double)calls >= b->cfg.slow_call_rate;
}

/* ---- state changes (under mu) ------------------------------------------- */

/* open_duration * m^(k-1), capped, without overflow: square-and-multiply
 * that stops as soon as the factor passes cap/base (k up to UINT32_MAX costs
 * at most 32 steps). */
static resil_ns grown_duration(resil_ns base, double m, uint32_t k, resil_ns cap) {
  if (k <= 1 || m == 1.0) return base < cap ? base : cap;
  uint32_t e = k - 1;
  double limit = (double)cap / (double)base;
  double factor = 1.0, sq = m;
  for (;;) {
    if (e & 1u) {
      factor *= sq;
      if (factor >= limit) return cap;
    }
    e >>= 1;
    if (e == 0) break;
    if (sq >= limit) return cap; /* any further factor only grows */
    sq *= sq;
  }
  resil_ns d = resil_ns_scale(base, factor);
  return d < cap ? d : cap;
}

static resil_ns open_duration_locked(resil_breaker *b) {
  const resil_breaker_config *c = &b->cfg;
  resil_ns cap = c->open_duration_max;
  resil_ns d = grown_duration(c->open_duration, c->open_multiplier, b->trips_in_row, cap);
  if (c->open_jitter > 0.0) {
    double j = c->open_jitter;
    d = resil_ns_scale(d, 1.0 - j + 2.0 * j * resil_rng_unit(&b->rng));
    if (d > cap) d = cap;
  }
  return d;
}

static void clear_probes_locked(resil_breaker *b) {
  memset(b->probe_exp, 0, sizeof b->probe_exp);
  b->probes_used = 0;
  b->probe_successes = 0;
  atomic_store_explicit(&b->ho_block, 0, memory_order_relaxed);
}

/* Start a change: publish BUSY with the next epoch. Returns the old state. */
static uint32_t begin_change_locked(resil_breaker *b, uint64_t epoch) {
  uint32_t from = w_state(atomic_load_explicit(&b->word, memory_order_relaxed));
  atomic_store_explicit(&b->word, w_pack(epoch, ST_BUSY), memory_order_seq_cst);
  return from;
}

static void end_change_locked(resil_breaker *b, uint64_t epoch, uint32_t from, uint32_t to) {
  atomic_store_explicit(&b->word, w_pack(epoch, to), memory_order_release);
  enqueue_locked(b, from, to);
}

/* Move to `to` (never BUSY). `now` is needed for OPEN; -1 reads the clock. */
static void set_state_locked(resil_breaker *b, uint32_t to, resil_ns now) {
  uint64_t epoch = w_epoch(atomic_load_explicit(&b->word, memory_order_relaxed)) + 1;
  uint32_t from = begin_change_locked(b, epoch);
  clear_probes_locked(b);
  switch (to) {
    case RESIL_BREAKER_CLOSED:
      b->trips_in_row = 0;
      clear_windows_locked(b);
      break;
    case RESIL_BREAKER_METRICS_ONLY:
      clear_windows_locked(b);
      break;
    case RESIL_BREAKER_OPEN:
      if (now < 0) now = now_of(b);
      if (b->trips_in_row < UINT32_MAX) b->trips_in_row++;
      atomic_fetch_add_explicit(&b->trips, 1, memory_order_relaxed);
      atomic_store_explicit(&b->open_until, resil_ns_add(now, open_duration_locked(b)),
                            memory_order_relaxed);
      break;
    default:
      break;
  }
  end_change_locked(b, epoch, from, to);
}

/* HALF_OPEN: a probe that outlived probe_timeout is a probe failure. Returns
 * 1 when it re-opened the breaker. */
static int expire_probes_locked(resil_breaker *b, resil_ns now) {
  if (w_state(atomic_load_explicit(&b->word, memory_order_relaxed)) != RESIL_BREAKER_HALF_OPEN)
    return 0;
  for (uint32_t i = 0; i < b->cfg.half_open_probes; i++) {
    if (b->probe_exp[i] != 0 && b->probe_exp[i] <= now) {
      set_state_locked(b, RESIL_BREAKER_OPEN, now);
      return 1;
    }
  }
  return 0;
}

/* CLOSED -> OPEN, if nothing changed since the permit's epoch. */
static void trip(resil_breaker *b, uint64_t epoch) {
  lock_tx(b);
  if (atomic_load_explicit(&b->word, memory_order_relaxed) == w_pack(epoch, RESIL_BREAKER_CLOSED))
    set_state_locked(b, RESIL_BREAKER_OPEN, -1);
  unlock_tx(b);
}

/* ---- acquire ------------------------------------------------------------ */

static resil_err reject(resil_breaker *b, resil_ns *retry_in, resil_ns in) {
  count(&my_stripe(b)->rejected);
  if (retry_in) *retry_in = in;
  return RESIL_ECIRCUIT_OPEN;
}

static resil_err admit(resil_breaker *b, resil_permit *p, resil_ns *retry_in, uint64_t epoch,
                       uint32_t flags) {
  p->epoch_ = epoch;
  p->probe_ = 0;
  if (b->timed && !(flags & PF_NORECORD)) {
    p->start_ = now_of(b);
    flags |= PF_TIMED;
  } else {
    p->start_ = -1;
  }
  p->flags_ = flags;
  if (retry_in) *retry_in = 0;
  return RESIL_OK;
}

static resil_err admit_probe_locked(resil_breaker *b, resil_permit *p, resil_ns *retry_in,
                                    resil_ns now) {
  if (expire_probes_locked(b, now))
    return reject(b, retry_in,
                  resil_ns_sub(atomic_load_explicit(&b->open_until, memory_order_relaxed), now));
  const uint32_t n = b->cfg.half_open_probes;
  if (b->probes_used < n) {
    uint32_t i = 0;
    while (b->probe_exp[i] != 0) i++; /* a free slot exists below n */
    b->probe_exp[i] = resil_ns_add(now, b->cfg.probe_timeout); /* > 0 */
    b->probes_used++;
    if (b->probes_used == n) {
      resil_ns soonest = RESIL_NS_MAX;
      for (uint32_t k = 0; k < n; k++)
        if (b->probe_exp[k] < soonest) soonest = b->probe_exp[k];
      atomic_store_explicit(&b->ho_block, soonest, memory_order_relaxed);
    }
    p->epoch_ = w_epoch(atomic_load_explicit(&b->word, memory_order_relaxed));
    p->probe_ = i + 1;
    p->start_ = b->timed ? now : -1;
    p->flags_ = b->timed ? PF_TIMED : 0;
    if (retry_in) *retry_in = 0;
    return RESIL_OK;
  }
  resil_ns soonest = RESIL_NS_MAX;
  for (uint32_t k = 0; k < n; k++)
    if (b->probe_exp[k] != 0 && b->probe_exp[k] < soonest) soonest = b->probe_exp[k];
  return reject(b, retry_in, soonest - now); /* > 0: nothing has expired */
}

static resil_err acquire_locked(resil_breaker *b, resil_permit *p, resil_ns *retry_in) {
  resil_err rc;
  lock_tx(b);
  uint64_t w = atomic_load_explicit(&b->word, memory_order_relaxed);
  switch (w_state(w)) {
    case RESIL_BREAKER_CLOSED: rc = admit(b, p, retry_in, w_epoch(w), 0); break;
    case RESIL_BREAKER_METRICS_ONLY: rc = admit(b, p, retry_in, w_epoch(w), PF_NOTRIP); break;
    case RESIL_BREAKER_DISABLED: rc = admit(b, p, retry_in, w_epoch(w), PF_NORECORD); break;
    case RESIL_BREAKER_OPEN: {
      resil_ns now = now_of(b);
      resil_ns until = atomic_load_explicit(&b->open_until, memory_order_relaxed);
      if (now < until) {
        rc = reject(b, retry_in, until - now);
        break;
      }
      set_state_locked(b, RESIL_BREAKER_HALF_OPEN, now);
      rc = admit_probe_locked(b, p, retry_in, now);
      break;
    }
    case RESIL_BREAKER_HALF_OPEN: rc = admit_probe_locked(b, p, retry_in, now_of(b)); break;
    default: rc = reject(b, retry_in, RESIL_NS_MAX); break; /* FORCED_OPEN */
  }
  unlock_tx(b);
  return rc;
}

/* Everything but CLOSED. The rejecting cases that need no change stay
 * lock-free; the rest take mu. */
static resil_err acquire_slow(resil_breaker *b, resil_permit *p, resil_ns *retry_in, uint64_t w) {
  switch (w_state(w)) {
    case RESIL_BREAKER_METRICS_ONLY: return admit(b, p, retry_in, w_epoch(w), PF_NOTRIP);
    case RESIL_BREAKER_DISABLED: return admit(b, p, retry_in, w_epoch(w), PF_NORECORD);
    case RESIL_BREAKER_FORCED_OPEN: return reject(b, retry_in, RESIL_NS_MAX);
    case RESIL_BREAKER_OPEN: {
      resil_ns now = now_of(b);
      resil_ns until = atomic_load_explicit(&b->open_until, memory_order_relaxed);
      if (now < until) return reject(b, retry_in, until - now);
      break;
    }
    case RESIL_BREAKER_HALF_OPEN: {
      /* Every probe slot taken and none can have expired yet: the answer is
       * no without asking under the lock. (A slot freed a moment ago may be
       * missed; that call is rejected as if it came a moment earlier.) */
      resil_ns block = atomic_load_explicit(&b->ho_block, memory_order_relaxed);
      if (block != 0) {
        resil_ns now = now_of(b);
        if (now < block) return reject(b, retry_in, block - now);
      }
      break;
    }
    default: break; /* BUSY */
  }
  return acquire_locked(b, p, retry_in);
}

resil_ns resil__breaker_admit_in(resil_breaker *b) {
  uint64_t w = load_word(b);
  switch (w_state(w)) {
    case RESIL_BREAKER_FORCED_OPEN: return RESIL_NS_MAX;
    case RESIL_BREAKER_OPEN: {
      resil_ns until = atomic_load_explicit(&b->open_until, memory_order_relaxed);
      return resil_ns_sub(until, now_of(b));
    }
    case RESIL_BREAKER_HALF_OPEN: {
      resil_ns block = atomic_load_explicit(&b->ho_block, memory_order_relaxed);
      return block != 0 ? resil_ns_sub(block, now_of(b)) : 0;
    }
    default: return 0; /* closed, metrics-only, disabled, or mid-transition */
  }
}

resil_err resil_breaker_acquire(resil_breaker *b, resil_permit *permit, resil_ns *retry_in) {
  uint64_t w = load_word(b);
  if (RESIL_LIKELY(w_state(w) == RESIL_BREAKER_CLOSED)) {
    permit->epoch_ = w_epoch(w);
    permit->probe_ = 0;
    if (b->timed) {
      permit->start_ = now_of(b);
      permit->flags_ = PF_TIMED;
    } else {
      permit->start_ = -1;
      permit->flags_ = 0;
    }
    if (retry_in) *retry_in = 0;
    return RESIL_OK;
  }
  return acquire_slow(b, permit, retry_in, w);
}

/* ---- record ------------------------------------------------------------- */

static void record_probe(resil_breaker *b, const resil_permit *p, resil_call_result r) {
  lock_tx(b);
  uint64_t w = atomic_load_explicit(&b->word, memory_order_relaxed);
  uint32_t i = p->probe_ - 1;
  if (w_epoch(w) == p->epoch_ && w_state(w) == RESIL_BREAKER_HALF_OPEN &&
      i < b->cfg.half_open_probes && b->probe_exp[i] != 0) {
    resil_ns now = now_of(b);
    /* An expired probe (this one included) re-opens first; then this
     * record is late and decides nothing. */
    if (!expire_probes_locked(b, now)) {
      b->probe_exp[i] = 0;
      b->probes_used--;
      atomic_store_explicit(&b->ho_block, 0, memory_order_relaxed);
      if (r == RESIL_CALL_SUCCESS) {
        if (++b->probe_successes >= b->cfg.success_threshold)
          set_state_locked(b, RESIL_BREAKER_CLOSED, now);
      } else if (r == RESIL_CALL_FAILURE) {
        set_state_locked(b, RESIL_BREAKER_OPEN, now);
      }
    }
  }
  unlock_tx(b);
}

static void record_count_window(resil_breaker *b, uint64_t epoch, int fail, int slow,
                                int may_trip) {
  /* A full window of nothing but fast successes is unchanged by one more
   * fast success, wherever it lands in the ring: skip the shared head (the
   * one contended write on this path), so a healthy dependency's calls only
   * read shared lines. Racing with a failure being recorded can at worst keep
   * that failure in the window for one call longer than an exact ring would:
   * concurrent calls have no exact order anyway. */
  if (!fail && !slow &&
      atomic_load_explicit(&b->agg_failures, memory_order_relaxed) == 0 &&
      atomic_load_explicit(&b->agg_slow, memory_order_relaxed) == 0 &&
      atomic_load_explicit(&b->agg_calls, memory_order_relaxed) == (int64_t)b->cfg.window_calls)
    return;
  uint8_t code = (uint8_t)(OC_PRESENT | (fail ? OC_FAIL : 0u) | (slow ? OC_SLOW : 0u));
  uint64_t h = atomic_fetch_add_explicit(&b->head, 1, memory_order_relaxed);
  _Atomic uint8_t *slot = &b->ring[h % b->cfg.window_calls];
  /* A slot that already holds this outcome is not written (as if exchanged
   * with itself): in a steady state the ring's cache lines stay shared. */
  uint8_t old = atomic_load_explicit(slot, memory_order_relaxed);
  if (old != code) old = atomic_exchange_explicit(slot, code, memory_order_relaxed);
  int check = fail || slow;
  if (old != code) {
    if (!(old & OC_PRESENT)) {
      /* The window is filling: reaching minimum_calls can trip it even on a
       * success. Exactly one increment sees the count equal to it. */
      int64_t c = atomic_fetch_add_explicit(&b->agg_calls, 1, memory_order_relaxed) + 1;
      if (c == (int64_t)b->min_calls) check = 1;
    }
    add_i64(&b->agg_failures, (int64_t)((code & OC_FAIL) != 0) - ((old & OC_FAIL) != 0));
    add_i64(&b->agg_slow, (int64_t)((code & OC_SLOW) != 0) - ((old & OC_SLOW) != 0));
  }
  if (check && may_trip && window_tripped(b)) trip(b, epoch);
}

static void record_time_window(resil_breaker *b, uint64_t epoch, resil_ns now, int fail, int slow,
                               int may_trip) {
  uint64_t n = bucket_of(b, now);
  uint64_t h = atomic_load_explicit(&b->tw_head, memory_order_acquire);
  if (n > h)
    tw_advance(b, n);
  else if (h - n >= b->nbuckets)
    n = h; /* read the clock before the window moved past it: count it now */
  bucket *k = &b->buckets[n % b->nbuckets];
  /* Aggregates first, bucket second (see the top of the file). */
  int64_t c = atomic_fetch_add_explicit(&b->agg_calls, 1, memory_order_relaxed) + 1;
  if (fail) add_i64(&b->agg_failures, 1);
  if (slow) add_i64(&b->agg_slow, 1);
  atomic_fetch_add_explicit(&k->calls, 1, memory_order_relaxed);
  if (fail) atomic_fetch_add_explicit(&k->failures, 1, memory_order_relaxed);
  if (slow) atomic_fetch_add_explicit(&k->slow, 1, memory_order_relaxed);
  if (may_trip && (fail || slow || c == (int64_t)b->min_calls) && window_tripped(b))
    trip(b, epoch);
}

void resil_breaker_record(resil_breaker *b, const resil_permit *permit, resil_call_result result,
                          resil_ns duration) {
  const uint32_t flags = permit->flags_;
  if (flags & PF_NORECORD) return;
  if ((unsigned)result > RESIL_CALL_IGNORED) result = RESIL_CALL_IGNORED;

  resil_ns now = -1; /* not read yet */
  int slow = 0;
  if (b->timed && result != RESIL_CALL_IGNORED) {
    if (duration < 0) {
      if (flags & PF_TIMED) {
        now = now_of(b);
        duration = now - permit->start_;
      } else {
        duration = 0;
      }
    }
    slow = duration >= b->cfg.slow_call_duration;
  }

  stripe *s = my_stripe(b);
  switch (result) {
    case RESIL_CALL_SUCCESS: count(&s->successes); break;
    case RESIL_CALL_FAILURE: count(&s->failures); break;
    default: count(&s->ignored); break;
  }
  if (slow) count(&s->slow);

  if (permit->probe_ != 0) {
    record_probe(b, permit, result);
    return;
  }
  if (result == RESIL_CALL_IGNORED) return;

  uint64_t w = load_word(b);
  if (w_epoch(w) != permit->epoch_) return; /* stale: totals only */
  const int fail = result == RESIL_CALL_FAILURE;
  const int may_trip = !(flags & PF_NOTRIP);
  switch (b->cfg.trip) {
    case RESIL_TRIP_CONSECUTIVE:
      if (fail) {
        uint64_t n = atomic_fetch_add_explicit(&b->consec, 1, memory_order_relaxed) + 1;
        if (may_trip && n >= b->cfg.failure_threshold) trip(b, permit->epoch_);
      } else if (atomic_load_explicit(&b->consec, memory_order_relaxed) != 0) {
        atomic_store_explicit(&b->consec, 0, memory_order_relaxed);
      }
      break;
    case RESIL_TRIP_COUNT_WINDOW:
      record_count_window(b, permit->epoch_, fail, slow, may_trip);
      break;
    default:
      if (now < 0) now = now_of(b);
      record_time_window(b, permit->epoch_, now, fail, slow, may_trip);
      break;
  }
}

/* ---- manual control ----------------------------------------------------- */

resil_err resil_breaker_force(resil_breaker *b, resil_breaker_state state) {
  if (state != RESIL_BREAKER_CLOSED && state != RESIL_BREAKER_FORCED_OPEN &&
      state != RESIL_BREAKER_DISABLED && state != RESIL_BREAKER_METRICS_ONLY)
    return RESIL_EINVAL;
  lock_tx(b);
  uint32_t cur = w_state(atomic_load_explicit(&b->word, memory_order_relaxed));
  /* Forcing the mode it is already in changes nothing, except CLOSED, which
   * always starts over with empty windows. */
  if (cur != (uint32_t)state || state == RESIL_BREAKER_CLOSED)
    set_state_locked(b, (uint32_t)state, -1);
  unlock_tx(b);
  return RESIL_OK;
}

void resil_breaker_reset(resil_breaker *b) {
  lock_tx(b);
  set_state_locked(b, RESIL_BREAKER_CLOSED, -1);
  unlock_tx(b);
}

/* ---- snapshot ----------------------------------------------------------- */

static void totals(const resil_breaker *b, uint64_t *succ, uint64_t *fail, uint64_t *ign,
                   uint64_t *slow, uint64_t *rej) {
  uint64_t s = 0, f = 0, i = 0, sl = 0, r = 0;
  for (int k = 0; k < STRIPES; k++) {
    const stripe *st = &b->stripes[k];
    s += relaxed64(&st->successes);
    f += relaxed64(&st->failures);
    i += relaxed64(&st->ignored);
    sl += relaxed64(&st->slow);
    r += relaxed64(&st->rejected);
  }
  *succ = s;
  *fail = f;
  *ign = i;
  *slow = sl;
  *rej = r;
}

static uint32_t sat32(uint64_t v) { return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v; }

void resil_breaker_snapshot_get(resil_breaker *b, resil_breaker_snapshot *out) {
  memset(out, 0, sizeof *out);
  uint64_t w = load_word(b);
  uint32_t st = w_state(w);
  if (st == RESIL_BREAKER_HALF_OPEN || st == ST_BUSY) {
    lock_tx(b);
    resil_ns now = now_of(b);
    expire_probes_locked(b, now); /* notice probes that were never recorded */
    st = w_state(atomic_load_explicit(&b->word, memory_order_relaxed));
    if (st == RESIL_BREAKER_HALF_OPEN) {
      out->probes_in_flight = b->probes_used;
      out->probe_successes = b->probe_successes;
    } else if (st == RESIL_BREAKER_OPEN) {
      out->retry_in =
          resil_ns_sub(atomic_load_explicit(&b->open_until, memory_order_relaxed), now);
    }
    unlock_tx(b);
  } else if (st == RESIL_BREAKER_OPEN) {
    out->retry_in =
        resil_ns_sub(atomic_load_explicit(&b->open_until, memory_order_relaxed), now_of(b));
  } else if (st == RESIL_BREAKER_FORCED_OPEN) {
    out->retry_in = RESIL_NS_MAX;
  }
  out->state = (resil_breaker_state)st;

  totals(b, &out->successes, &out->failures, &out->ignored, &out->slow, &out->rejected);
  out->calls = out->successes + out->failures + out->ignored;
  out->trips = relaxed64(&b->trips);

  switch (b->cfg.trip) {
    case RESIL_TRIP_CONSECUTIVE:
      out->consecutive_failures = sat32(relaxed64(&b->consec));
      break;
    case RESIL_TRIP_TIME_WINDOW:
      tw_catch_up(b, now_of(b));
      /* fall through */
    default:
      window_read(b, &out->window_calls, &out->window_failures, &out->window_slow);
      break;
  }
  if (out->window_calls) {
    out->failure_rate = (double)out->window_failures / (double)out->window_calls;
    out->slow_rate = (double)out->window_slow / (double)out->window_calls;
  }
}

/* ---- persistence -------------------------------------------------------- */

void resil_breaker_export(resil_breaker *b, resil_breaker_persisted *out) {
  memset(out, 0, sizeof *out);
  pthread_mutex_lock(&b->mu);
  uint64_t w = atomic_load_explicit(&b->word, memory_order_relaxed);
  out->state = (resil_breaker_state)w_state(w);
  out->epoch = w_epoch(w);
  out->consecutive_failures = sat32(relaxed64(&b->consec));
  out->trips_in_row = b->trips_in_row;
  if (out->state == RESIL_BREAKER_OPEN)
    out->open_until = atomic_load_explicit(&b->open_until, memory_order_relaxed);
  if (out->state == RESIL_BREAKER_HALF_OPEN) {
    out->probe_successes = b->probe_successes;
    out->probes = b->probes_used;
    memcpy(out->probe_expires, b->probe_exp, sizeof out->probe_expires);
  }
  uint64_t ign, slow;
  totals(b, &out->successes, &out->failures, &ign, &slow, &out->rejected);
  out->calls = out->successes + out->failures + ign;
  out->trips = relaxed64(&b->trips);
  pthread_mutex_unlock(&b->mu);
}

static resil_err check_persisted(const resil_breaker *b, const resil_breaker_persisted *in) {
  if ((unsigned)in->state > RESIL_BREAKER_METRICS_ONLY) return RESIL_EINVAL;
  if (in->epoch > EPOCH_MAX || in->open_until < 0) return RESIL_EINVAL;
  if (in->probes > RESIL_BREAKER_MAX_PROBES) return RESIL_EINVAL;
  uint32_t used = 0;
  for (uint32_t i = 0; i < RESIL_BREAKER_MAX_PROBES; i++) {
    if (in->probe_expires[i] < 0) return RESIL_EINVAL;
    if (in->probe_expires[i] == 0) continue;
    /* Slots keep their index (a permit names its slot), so each must exist
     * in this breaker. */
    if (i >= b->cfg.half_open_probes) return RESIL_EINVAL;
    used++;
  }
  if (used != in->probes) return RESIL_EINVAL;
  if (in->state == RESIL_BREAKER_HALF_OPEN) {
    if (in->probe_successes >= b->cfg.success_threshold) return RESIL_EINVAL;
  } else if (in->probes != 0 || in->probe_successes != 0) {
    return RESIL_EINVAL;
  }
  if ((in->state == RESIL_BREAKER_OPEN || in->state == RESIL_BREAKER_HALF_OPEN) &&
      in->trips_in_row == 0)
    return RESIL_EINVAL;
  if (in->trips < in->trips_in_row) return RESIL_EINVAL;
  if (in->successes > in->calls || in->failures > in->calls - in->successes) return RESIL_EINVAL;
  return RESIL_OK;
}

resil_err resil_breaker_import(resil_breaker *b, const resil_breaker_persisted *in) {
  if (b == NULL || in == NULL || check_persisted(b, in) != RESIL_OK) return RESIL_EINVAL;
  lock_tx(b);
  uint64_t cur = w_epoch(atomic_load_explicit(&b->word, memory_order_relaxed));
  /* Always a new epoch, so permits from before the import are stale. */
  uint64_t epoch = in->epoch > cur ? in->epoch : cur + 1;
  uint32_t from = begin_change_locked(b, epoch);

  clear_probes_locked(b);
  clear_windows_locked(b); /* window contents are not persisted */
  atomic_store_explicit(&b->consec, in->consecutive_failures, memory_order_relaxed);
  b->trips_in_row = in->trips_in_row;
  atomic_store_explicit(&b->open_until, in->state == RESIL_BREAKER_OPEN ? in->open_until : 0,
                        memory_order_relaxed);
  if (in->state == RESIL_BREAKER_HALF_OPEN) {
    /* Same slots, so a probe permit acquired before the export (in another
     * process, say) can still be recorded after the import. */
    b->probe_successes = in->probe_successes;
    memcpy(b->probe_exp, in->probe_expires, sizeof b->probe_exp);
    b->probes_used = in->probes;
    if (in->probes == b->cfg.half_open_probes) {
      resil_ns soonest = RESIL_NS_MAX;
      for (uint32_t i = 0; i < in->probes; i++)
        if (b->probe_exp[i] < soonest) soonest = b->probe_exp[i];
      atomic_store_explicit(&b->ho_block, soonest, memory_order_relaxed);
    }
  }

  /* Lifetime totals: zero every stripe and put the imported totals in one
   * (a count racing with the import lands on either side of it). `slow` is
   * not persisted and keeps its value. */
  for (int i = 0; i < STRIPES; i++) {
    stripe *s = &b->stripes[i];
    atomic_store_explicit(&s->successes, 0, memory_order_relaxed);
    atomic_store_explicit(&s->failures, 0, memory_order_relaxed);
    atomic_store_explicit(&s->ignored, 0, memory_order_relaxed);
    atomic_store_explicit(&s->rejected, 0, memory_order_relaxed);
  }
  stripe *s0 = &b->stripes[0];
  atomic_fetch_add_explicit(&s0->successes, in->successes, memory_order_relaxed);
  atomic_fetch_add_explicit(&s0->failures, in->failures, memory_order_relaxed);
  atomic_fetch_add_explicit(&s0->ignored, in->calls - in->successes - in->failures,
                            memory_order_relaxed);
  atomic_fetch_add_explicit(&s0->rejected, in->rejected, memory_order_relaxed);
  atomic_store_explicit(&b->trips, in->trips, memory_order_relaxed);

  end_change_locked(b, epoch, from, (uint32_t)in->state);
  unlock_tx(b);
  return RESIL_OK;
}

/* ---- test support ------------------------------------------------------- */

/* For tests (not installed, hidden in the shared library): the window
 * aggregates and a recount of the ring or buckets. Only meaningful when no
 * other thread is using the breaker. */
void resil__breaker_window_check(resil_breaker *b, int64_t agg[3], int64_t recount[3]);
void resil__breaker_window_check(resil_breaker *b, int64_t agg[3], int64_t recount[3]) {
  agg[0] = relaxed_i64(&b->agg_calls);
  agg[1] = relaxed_i64(&b->agg_failures);
  agg[2] = relaxed_i64(&b->agg_slow);
  recount[0] = recount[1] = recount[2] = 0;
  if (b->ring) {
    for (uint32_t i = 0; i < b->cfg.window_calls; i++) {
      uint8_t c = atomic_load_explicit(&b->ring[i], memory_order_relaxed);
      recount[0] += (c & OC_PRESENT) != 0;
      recount[1] += (c & OC_FAIL) != 0;
      recount[2] += (c & OC_SLOW) != 0;
    }
  }
  for (uint32_t i = 0; i < b->nbuckets; i++) {
    recount[0] += relaxed_i64(&b->buckets[i].calls);
    recount[1] += relaxed_i64(&b->buckets[i].failures);
    recount[2] += relaxed_i64(&b->buckets[i].slow);
  }
}
