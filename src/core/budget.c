/* Retry budgets: five algorithms behind one handle. See include/resil/budget.h
 * for the contract.
 *
 * Concurrency in one paragraph per family:
 *
 * TOKEN_BUCKET, GRPC, QUOTA keep their whole decision state in one 64-bit
 * word (`word`) updated with a compare-and-swap loop, so every grant is
 * decided against the state left by the previous grant in the word's single
 * modification order. Relaxed ordering is enough: the word publishes no other
 * data.
 *
 * RATIO and ADAPTIVE count into a ring of `nb` buckets, each `width` ns wide,
 * plus two aggregates (the sums over the ring). Counting is fetch_add on the
 * aggregate first and on the current bucket second, so at every instant
 * aggregate >= sum of buckets and evicting a bucket (exchange it with 0, then
 * subtract what it held) can never drive an aggregate below zero. Eviction
 * happens under `mu`, only when the clock has entered a new bucket, so the
 * mutex is taken at most once per bucket width (plus once by each thread that
 * raced into it at the same boundary and finds the work done).
 *
 * The current bucket is found from `head`, published with release after the
 * evictions it implies and read with acquire, so a count made for the new
 * bucket can never be wiped by that bucket's own eviction. A thread stalled
 * for a whole window between reading head and counting would land its count
 * in a bucket that has been recycled: the count then lives one window too
 * long, and the aggregates stay consistent.
 *
 * Lifetime totals are relaxed counters in STRIPES cache-line stripes (a
 * thread picks one from its stack address): statistics, never part of a
 * decision, and striping keeps them from becoming the contended line. Nothing
 * allocates after resil_budget_new. */
#define _POSIX_C_SOURCE 200809L
#include <math.h> /* isfinite only: the core does not link libm */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/internal.h"
#include "resil/budget.h"
#include "resil/rng.h"

/* GRPC tokens are kept in millionths of a token. */
#define GRPC_SCALE 1000000

/* The token bucket's emission interval is at most 1e18 ns (rate >= 1e-9/s),
 * and interval + tolerance is capped at 2^63 ns, which keeps every timestamp
 * arithmetic below 2^64 (see tb_retry). */
#define TB_MIN_RATE 1e-9
#define TB_SPAN_MAX ((uint64_t)1 << 63)

/* Keep the hot words of different roles on different cache lines (by padding,
 * not alignas: the struct comes from a user allocator that only promises
 * malloc alignment). */
#define PAD(n) char pad##n[64]

/* Lifetime totals, striped so threads counting at once rarely share a cache
 * line. One stripe is exactly one 64-byte line. */
#define STRIPES 16
typedef struct stripe {
  _Atomic uint64_t requests, granted, denied, rejected;
  char pad[64 - 4 * sizeof(uint64_t)];
} stripe;
_Static_assert(sizeof(stripe) == 64, "one stripe per cache line");

typedef struct bucket {
  _Atomic uint64_t a; /* requests (RATIO, ADAPTIVE) */
  _Atomic uint64_t b; /* retries (RATIO) or accepts (ADAPTIVE) */
} bucket;

struct resil_budget {
  /* ---- immutable after creation ---- */
  resil_budget_kind kind;
  resil_clock clock;
  resil_ns origin; /* the clock at creation: internal time counts from it */
  resil_allocator alloc;
  const char *name;
  /* TOKEN_BUCKET: emission interval and tolerance, in ns. */
  uint64_t tb_interval, tb_tau;
  /* GRPC (fixed point) and QUOTA (whole tokens). */
  uint64_t g_max, g_ratio, q_cap, q_retry_cost, q_timeout_cost;
  /* RATIO and ADAPTIVE. */
  uint32_t nb;
  uint64_t width;     /* ns per bucket */
  double ratio;       /* RATIO */
  double floor_allow; /* RATIO: min_per_sec * window seconds */
  double k;           /* ADAPTIVE */
  uint64_t seed;      /* ADAPTIVE */
  int have_mu;
  pthread_mutex_t mu; /* serialises bucket eviction */
  /* A backend budget (resil_budget_new_backend): the decisions are be's,
   * and fb (a local budget) makes them while be fails. NULL otherwise. */
  const resil_budget_backend *be;
  void *be_ud;
  resil_budget *fb;
  resil_log_fn log;
  void *log_ud;

  PAD(0);
  /* TOKEN_BUCKET: theoretical arrival time (ns since creation).
   * GRPC: tokens * GRPC_SCALE. QUOTA: tokens. */
  _Atomic uint64_t word;
  PAD(1);
  _Atomic uint64_t head;  /* the newest bucket's epoch (now / width) */
  _Atomic uint64_t agg_a; /* sum of buckets[].a */
  _Atomic uint64_t agg_b; /* sum of buckets[].b */
  _Atomic uint64_t draws; /* ADAPTIVE: random stream position */
  _Atomic int outage;     /* backend: 1 while the backend fails */
  _Atomic uint64_t fallbacks; /* backend: decisions made by fb */
  PAD(2);
  stripe tot[STRIPES];
  bucket buckets[]; /* nb of them for RATIO / ADAPTIVE, else none */
};

/* ---- names -------------------------------------------------------------- */

static const char *const kind_names[] = {"token-bucket", "ratio", "grpc", "quota", "adaptive"};

const char *resil_budget_kind_name(resil_budget_kind k) {
  if ((unsigned)k < RESIL_ARRAY_LEN(kind_names)) return kind_names[k];
  return "unknown";
}

resil_err resil_budget_kind_parse(const char *s, resil_budget_kind *out) {
  if (s == NULL || out == NULL) return RESIL_EINVAL;
  for (size_t i = 0; i < RESIL_ARRAY_LEN(kind_names); i++) {
    if (resil__strcaseeq(s, kind_names[i])) {
      *out = (resil_budget_kind)i;
      return RESIL_OK;
    }
  }
  return RESIL_EINVAL;
}

/* ---- config ------------------------------------------------------------- */

void resil_budget_config_init(resil_budget_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->size = sizeof *cfg;
  cfg->kind = RESIL_BUDGET_TOKEN_BUCKET;
  cfg->rate = 10;
  cfg->burst = 10;
  cfg->ratio = 0.2;
  cfg->min_per_sec = 10;
  cfg->window = 0; /* the kind's default */
  cfg->window_buckets = 10;
  cfg->max_tokens = 100;
  cfg->token_ratio = 0.1;
  cfg->capacity = 500;
  cfg->retry_cost = 5;
  cfg->timeout_cost = 10;
  cfg->k = 2.0;
  cfg->name = NULL; /* "default" */
  cfg->clock = resil_clock_system();
  cfg->alloc = resil_allocator_default();
  cfg->seed = 0;
  cfg->use_seed = 0;
}

static resil_ns default_window(resil_budget_kind k) {
  return k == RESIL_BUDGET_ADAPTIVE ? 120 * RESIL_SEC : 10 * RESIL_SEC;
}

static int finite_at_least(double v, double lo) { return isfinite(v) && v >= lo; }

/* Rounding for finite 0 <= x < 2^63 without libm. */
static uint64_t floor_u(double x) { return x > 0 ? (uint64_t)x : 0; }
static uint64_t ceil_u(double x) {
  uint64_t u = floor_u(x);
  return (double)u < x ? u + 1 : u;
}
static uint64_t round_u(double x) { return floor_u(x + 0.5); }

static resil_err validate(const resil_budget_config *c) {
  if ((unsigned)c->kind > RESIL_BUDGET_ADAPTIVE) return RESIL_EINVAL;
  if (!finite_at_least(c->rate, TB_MIN_RATE)) return RESIL_EINVAL;
  if (!finite_at_least(c->burst, 1)) return RESIL_EINVAL;
  if (!(c->ratio > 0 && c->ratio <= 1)) return RESIL_EINVAL; /* also NaN */
  if (!finite_at_least(c->min_per_sec, 0)) return RESIL_EINVAL;
  if (c->window_buckets < 1 || c->window_buckets > 1024) return RESIL_EINVAL;
  if (c->window < 0 || (c->window > 0 && c->window < (resil_ns)c->window_buckets))
    return RESIL_EINVAL;
  if (!(c->max_tokens > 0 && c->max_tokens <= 1000)) return RESIL_EINVAL;
  if (round_u(c->max_tokens * GRPC_SCALE) < 1) return RESIL_EINVAL;
  if (!(c->token_ratio > 0 && isfinite(c->token_ratio))) return RESIL_EINVAL;
  if (c->token_ratio < 1000 && round_u(c->token_ratio * GRPC_SCALE) < 1) return RESIL_EINVAL;
  if (c->capacity < 1) return RESIL_EINVAL;
  if (c->retry_cost < 1 || c->retry_cost > c->capacity) return RESIL_EINVAL;
  if (c->timeout_cost < 1 || c->timeout_cost > c->capacity) return RESIL_EINVAL;
  if (!finite_at_least(c->k, 1)) return RESIL_EINVAL;
  if (c->clock.now == NULL) return RESIL_EINVAL;
  if (c->alloc.malloc && (c->alloc.free == NULL || c->alloc.realloc == NULL))
    return RESIL_EINVAL;
  return RESIL_OK;
}

/* Emission interval T = ceil(1e9 / rate) ns (rounding up keeps the bound
 * "burst + rate * t" true; it only ever grants slightly less) and tolerance
 * tau = (burst - 1) * T rounded down, with T + tau capped at 2^63. */
static void tb_params(double rate, double burst, uint64_t *interval, uint64_t *tau) {
  uint64_t T = ceil_u(1e9 / rate); /* <= 1e18 by validation */
  if (T < 1) T = 1;
  uint64_t room = TB_SPAN_MAX - T; /* the most tau may be */
  double extra = burst - 1;        /* >= 0 */
  uint64_t tv;
  if (extra >= (double)(room / T)) {
    tv = room;
  } else {
    uint64_t whole = floor_u(extra);
    tv = whole * T; /* <= room */
    uint64_t part = floor_u((extra - (double)whole) * (double)T); /* < T */
    tv = part > room - tv ? room : tv + part;
  }
  *interval = T;
  *tau = tv;
}

static uint64_t seed_from_os(void) {
  resil_rng r;
  (void)resil_rng_seed_os(&r); /* falls back to a clock/address-based seed */
  return resil_rng_next(&r);
}

static int windowed(resil_budget_kind k) {
  return k == RESIL_BUDGET_RATIO || k == RESIL_BUDGET_ADAPTIVE;
}

/* Nanoseconds since creation, clamped to [0, INT64_MAX]. The clock may have
 * any origin (negative values included); internal times are unsigned and
 * below 2^63, so a timestamp can run up to 2^63 ns ahead without wrapping. */
static uint64_t now_u(const resil_budget *b) {
  resil_ns t = b->clock.now(b->clock.ud);
  if (t <= b->origin) return 0;
  uint64_t d = (uint64_t)t - (uint64_t)b->origin; /* exact: t > origin */
  return d > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : d;
}

resil_err resil_budget_new(resil_budget **out, const resil_budget_config *cfg) {
  if (out == NULL) return RESIL_EINVAL;
  *out = NULL;
  /* First version of the struct: it must be exactly as large as ours. */
  if (cfg == NULL || cfg->size != sizeof *cfg) return RESIL_EINVAL;
  resil_err err = validate(cfg);
  if (err != RESIL_OK) return err;

  const char *name = cfg->name ? cfg->name : "default";
  size_t name_len = strlen(name) + 1;
  uint32_t nb = windowed(cfg->kind) ? cfg->window_buckets : 0;
  size_t head = sizeof(resil_budget) + (size_t)nb * sizeof(bucket);
  if (name_len > SIZE_MAX - head) return RESIL_ENOMEM;

  resil_allocator a = resil__alloc_resolve(&cfg->alloc);
  resil_budget *b = resil__calloc(&a, head + name_len);
  if (b == NULL) return RESIL_ENOMEM;
  b->kind = cfg->kind;
  b->clock = cfg->clock;
  b->origin = cfg->clock.now(cfg->clock.ud);
  b->alloc = a;
  char *name_copy = (char *)b + head;
  memcpy(name_copy, name, name_len);
  b->name = name_copy;

  tb_params(cfg->rate, cfg->burst, &b->tb_interval, &b->tb_tau);
  b->g_max = round_u(cfg->max_tokens * GRPC_SCALE);
  b->g_ratio = cfg->token_ratio >= 1000 ? b->g_max : round_u(cfg->token_ratio * GRPC_SCALE);
  if (b->g_ratio > b->g_max) b->g_ratio = b->g_max;
  b->q_cap = cfg->capacity;
  b->q_retry_cost = cfg->retry_cost;
  b->q_timeout_cost = cfg->timeout_cost;
  b->ratio = cfg->ratio;
  b->k = cfg->k;

  uint64_t initial = 0; /* TOKEN_BUCKET: a TAT in the past means a full bucket */
  if (cfg->kind == RESIL_BUDGET_GRPC) initial = b->g_max;
  if (cfg->kind == RESIL_BUDGET_QUOTA) initial = b->q_cap;
  atomic_init(&b->word, initial);
  atomic_init(&b->agg_a, 0);
  atomic_init(&b->agg_b, 0);
  atomic_init(&b->draws, 0);
  atomic_init(&b->head, 0);
  atomic_init(&b->outage, 0);
  atomic_init(&b->fallbacks, 0);
  for (int i = 0; i < STRIPES; i++) {
    atomic_init(&b->tot[i].requests, 0);
    atomic_init(&b->tot[i].granted, 0);
    atomic_init(&b->tot[i].denied, 0);
    atomic_init(&b->tot[i].rejected, 0);
  }

  if (nb > 0) {
    resil_ns window = cfg->window ? cfg->window : default_window(cfg->kind);
    b->nb = nb;
    b->width = (uint64_t)window / nb; /* >= 1 by validation */
    b->floor_allow = cfg->min_per_sec * ((double)window / (double)RESIL_SEC);
    b->seed = cfg->use_seed ? cfg->seed : seed_from_os();
    for (uint32_t i = 0; i < nb; i++) {
      atomic_init(&b->buckets[i].a, 0);
      atomic_init(&b->buckets[i].b, 0);
    }
    atomic_init(&b->head, now_u(b) / b->width);
    if (pthread_mutex_init(&b->mu, NULL) != 0) {
      resil__free(&a, b);
      return RESIL_ESYS;
    }
    b->have_mu = 1;
  }
  *out = b;
  return RESIL_OK;
}

resil_err resil_budget_new_backend(resil_budget **out, const resil_budget_backend *be,
                                   void *ud, const resil_budget_config *fallback,
                                   resil_log_fn log, void *log_ud) {
  if (out == NULL) return RESIL_EINVAL;
  *out = NULL;
  if (be == NULL || be->version < 1 || be->retry == NULL) return RESIL_EINVAL;
  resil_budget_config def;
  if (fallback == NULL) {
    resil_budget_config_init(&def);
    fallback = &def;
  }
  resil_budget *fb = NULL;
  resil_err err = resil_budget_new(&fb, fallback);
  if (err != RESIL_OK) return err;
  /* The front handle: a TOKEN_BUCKET-shaped shell (no buckets, no mutex)
   * whose operations are routed to be and fb; it shares fb's name. */
  resil_budget_config shell = *fallback;
  shell.kind = RESIL_BUDGET_TOKEN_BUCKET;
  shell.name = fb->name;
  resil_budget *b = NULL;
  err = resil_budget_new(&b, &shell);
  if (err != RESIL_OK) {
    resil_budget_free(fb);
    return err;
  }
  b->kind = fb->kind;
  b->be = be;
  b->be_ud = ud;
  b->fb = fb;
  b->log = log;
  b->log_ud = log_ud;
  *out = b;
  return RESIL_OK;
}

void resil_budget_free(resil_budget *b) {
  if (b == NULL) return;
  if (b->be != NULL) {
    if (b->be->close) b->be->close(b->be_ud);
    resil_budget_free(b->fb);
  }
  if (b->have_mu) pthread_mutex_destroy(&b->mu);
  resil_allocator a = b->alloc;
  resil__free(&a, b);
}

const char *resil_budget_name(const resil_budget *b) { return b ? b->name : NULL; }

/* ---- small atomic helpers ----------------------------------------------- */

#define RLX memory_order_relaxed

static inline void count(_Atomic uint64_t *c) { atomic_fetch_add_explicit(c, 1, RLX); }

static inline stripe *my_stripe(resil_budget *b) {
  return &b->tot[resil__thread_stripe(STRIPES)];
}

static inline resil_err granted(resil_budget *b) {
  count(&my_stripe(b)->granted);
  return RESIL_OK;
}

static inline resil_err denied(resil_budget *b) {
  count(&my_stripe(b)->denied);
  return RESIL_EBUDGET;
}

/* word = min(word + add, cap), skipping the write when already full. */
static void word_add_capped(_Atomic uint64_t *w, uint64_t add, uint64_t cap) {
  uint64_t cur = atomic_load_explicit(w, RLX);
  for (;;) {
    if (cur >= cap) return;
    uint64_t next = add >= cap - cur ? cap : cur + add;
    if (atomic_compare_exchange_weak_explicit(w, &cur, next, RLX, RLX)) return;
  }
}

/* ---- TOKEN_BUCKET: GCRA ------------------------------------------------- *
 *
 * T = emission interval (ns per retry), tau = (burst - 1) * T. The state is
 * TAT, the time at which the bucket would be full again. A retry at `now` is
 * granted iff TAT - now <= tau, and then TAT = max(TAT, now) + T.
 *
 * Fresh bucket: TAT = 0 <= now, so the k-th retry at the same instant sees
 * TAT - now = (k - 1) * T, granted iff k - 1 <= burst - 1: exactly
 * floor(burst) retries at once.
 *
 * Bound: let n retries be granted with clock readings in [s, s + t], in the
 * order their CAS succeeded (readings need not be monotonic across threads).
 * Every grant raises TAT by at least T, and the first of them leaves
 * TAT >= s + T, so just before the n-th, TAT >= s + (n - 1) * T. That one was
 * granted, so s + (n - 1) * T - tau <= s + t, i.e.
 * n <= 1 + tau / T + t / T <= burst + rate * t (T >= 1e9 / rate).
 *
 * No overflow: now < 2^63 (now_u) and a grant needs TAT - now <= tau, so the new TAT
 * is at most now + tau + T < 2^63 + 2^63, which fits in uint64_t. */

static resil_err tb_retry(resil_budget *b) {
  uint64_t now = now_u(b);
  uint64_t tat = atomic_load_explicit(&b->word, RLX);
  for (;;) {
    uint64_t base = tat > now ? tat : now;
    if (base - now > b->tb_tau) return denied(b);
    if (atomic_compare_exchange_weak_explicit(&b->word, &tat, base + b->tb_interval, RLX, RLX))
      return granted(b);
  }
}

static double tb_available(const resil_budget *b) {
  uint64_t now = now_u(b);
  uint64_t tat = atomic_load_explicit(&((resil_budget *)b)->word, RLX);
  uint64_t level = tat > now ? tat - now : 0;
  uint64_t cap = b->tb_tau + b->tb_interval;
  if (level >= cap) return 0;
  return (double)(cap - level) / (double)b->tb_interval;
}

/* ---- GRPC --------------------------------------------------------------- */

static resil_err grpc_retry(resil_budget *b) {
  uint64_t t = atomic_load_explicit(&b->word, RLX);
  /* tokens > max / 2, exactly, in integers (g_max <= 1e9, no overflow). */
  return 2 * t > b->g_max ? granted(b) : denied(b);
}

static void grpc_failure(resil_budget *b) {
  uint64_t cur = atomic_load_explicit(&b->word, RLX);
  for (;;) {
    if (cur == 0) return;
    uint64_t next = cur > GRPC_SCALE ? cur - GRPC_SCALE : 0;
    if (atomic_compare_exchange_weak_explicit(&b->word, &cur, next, RLX, RLX)) return;
  }
}

/* ---- QUOTA -------------------------------------------------------------- */

static uint64_t quota_cost(const resil_budget *b, unsigned flags) {
  return (flags & RESIL_BUDGET_TIMEOUT) ? b->q_timeout_cost : b->q_retry_cost;
}

static resil_err quota_retry(resil_budget *b, unsigned flags) {
  uint64_t cost = quota_cost(b, flags);
  uint64_t cur = atomic_load_explicit(&b->word, RLX);
  for (;;) {
    if (cur < cost) return denied(b);
    if (atomic_compare_exchange_weak_explicit(&b->word, &cur, cur - cost, RLX, RLX))
      return granted(b);
  }
}

/* ---- sliding window (RATIO, ADAPTIVE) ----------------------------------- */

/* Make the bucket for `now` current, evicting every bucket that fell out of
 * the window, and return the current bucket. Lock-free unless the clock
 * entered a new bucket since the last call. */
static bucket *win_current(resil_budget *b, uint64_t now) {
  uint64_t e = now / b->width;
  uint64_t head = atomic_load_explicit(&b->head, memory_order_acquire);
  if (RESIL_UNLIKELY(e > head)) {
    pthread_mutex_lock(&b->mu);
    head = atomic_load_explicit(&b->head, RLX);
    if (e > head) {
      uint64_t steps = e - head < b->nb ? e - head : b->nb;
      for (uint64_t i = 1; i <= steps; i++) {
        bucket *k = &b->buckets[(head + i) % b->nb];
        /* acquire pairs with the release in win_count_*: the aggregate
         * increments behind what we take are ordered before our subtract. */
        uint64_t va = atomic_exchange_explicit(&k->a, 0, memory_order_acquire);
        uint64_t vb = atomic_exchange_explicit(&k->b, 0, memory_order_acquire);
        atomic_fetch_sub_explicit(&b->agg_a, va, RLX);
        atomic_fetch_sub_explicit(&b->agg_b, vb, RLX);
      }
      atomic_store_explicit(&b->head, e, memory_order_release);
      head = e;
    }
    pthread_mutex_unlock(&b->mu);
  }
  /* A reading older than head (another thread's clock ran ahead) counts in
   * the newest bucket. */
  return &b->buckets[head % b->nb];
}

/* Aggregate first, bucket second (release): keeps aggregate >= sum of
 * buckets in the aggregate's modification order, not just on x86. */
static inline void win_add_bucket(_Atomic uint64_t *c) {
  atomic_fetch_add_explicit(c, 1, memory_order_release);
}

static inline void win_count_a(resil_budget *b, bucket *k) {
  count(&b->agg_a);
  win_add_bucket(&k->a);
}

static inline void win_count_b(resil_budget *b, bucket *k) {
  count(&b->agg_b);
  win_add_bucket(&k->b);
}

/* ---- RATIO -------------------------------------------------------------- */

static double ratio_allowance(const resil_budget *b, uint64_t requests) {
  double by_ratio = b->ratio * (double)requests;
  return by_ratio > b->floor_allow ? by_ratio : b->floor_allow;
}

static resil_err ratio_retry(resil_budget *b) {
  bucket *k = win_current(b, now_u(b));
  double allow = ratio_allowance(b, atomic_load_explicit(&b->agg_a, RLX));
  /* Reserve first, then check that the window, this retry included, stays
   * within the allowance (as Finagle: a withdrawal needs a whole token).
   * Concurrent callers each see the reservations made before theirs, so the
   * granted retries in the window never exceed the allowance; a reservation
   * that is rolled back can only cause a spurious denial, never a grant. */
  uint64_t before = atomic_fetch_add_explicit(&b->agg_b, 1, RLX);
  if ((double)before + 1 <= allow) {
    win_add_bucket(&k->b);
    return granted(b);
  }
  atomic_fetch_sub_explicit(&b->agg_b, 1, RLX);
  return denied(b);
}

/* ---- ADAPTIVE ----------------------------------------------------------- */

static double adaptive_reject_p(const resil_budget *b) {
  double req = (double)atomic_load_explicit(&((resil_budget *)b)->agg_a, RLX);
  double acc = (double)atomic_load_explicit(&((resil_budget *)b)->agg_b, RLX);
  double p = (req - b->k * acc) / (req + 1);
  return p > 0 ? p : 0;
}

/* Uniform in [0, 1): splitmix64 over a shared counter. Lock-free; with
 * use_seed a single thread sees the same sequence every run. */
static double adaptive_draw(resil_budget *b) {
  uint64_t n = atomic_fetch_add_explicit(&b->draws, 1, RLX);
  uint64_t z = b->seed + (n + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

/* One attempt (a request or a retry): 1 if it may go to the backend. Every
 * attempt counts as a request, admitted or not (the SRE formula counts what
 * the application asked for). */
static int adaptive_admit(resil_budget *b) {
  bucket *k = win_current(b, now_u(b));
  double p = adaptive_reject_p(b);
  win_count_a(b, k);
  return !(p > 0 && adaptive_draw(b) < p);
}

/* ---- public operations -------------------------------------------------- */

resil_err resil_budget_request(resil_budget *b) {
  if (b == NULL) return RESIL_EINVAL;
  count(&my_stripe(b)->requests);
  if (b->be != NULL) {
    if (resil_budget_request(b->fb) == RESIL_OK) return RESIL_OK;
    count(&my_stripe(b)->rejected);
    return RESIL_EBUDGET;
  }
  switch (b->kind) {
    case RESIL_BUDGET_RATIO:
      win_count_a(b, win_current(b, now_u(b)));
      return RESIL_OK;
    case RESIL_BUDGET_ADAPTIVE:
      if (adaptive_admit(b)) return RESIL_OK;
      count(&my_stripe(b)->rejected);
      return RESIL_EBUDGET;
    default:
      return RESIL_OK;
  }
}

/* ---- backend budgets --------------------------------------------------- */

static void be_log(resil_budget *b, resil_log_level level, const char *msg) {
  if (b->log) b->log(b->log_ud, level, msg);
}

static resil_err be_retry(resil_budget *b, unsigned flags) {
  int ok = 0;
  resil_err e = b->be->retry(b->be_ud, flags, &ok);
  char msg[400];
  if (e == RESIL_OK) {
    if (atomic_exchange_explicit(&b->outage, 0, RLX)) {
      snprintf(msg, sizeof msg, "fleet budget %s reachable again; using the %s budget", b->name,
               b->be->name ? b->be->name : "backend");
      be_log(b, RESIL_LOG_INFO, msg);
    }
    return ok ? granted(b) : denied(b);
  }
  if (!atomic_exchange_explicit(&b->outage, 1, RLX) && b->log) {
    char why[256] = "";
    if (b->be->last_error) b->be->last_error(b->be_ud, why, sizeof why);
    snprintf(msg, sizeof msg, "fleet budget %s unreachable: %s; using the local budget", b->name,
             why[0] ? why : resil_strerror(e));
    be_log(b, RESIL_LOG_WARN, msg);
  }
  atomic_fetch_add_explicit(&b->fallbacks, 1, RLX);
  return resil_budget_retry(b->fb, flags) == RESIL_OK ? granted(b) : denied(b);
}

resil_err resil_budget_retry(resil_budget *b, unsigned flags) {
  if (b == NULL) return RESIL_EINVAL;
  if (b->be != NULL) return be_retry(b, flags);
  switch (b->kind) {
    case RESIL_BUDGET_TOKEN_BUCKET: return tb_retry(b);
    case RESIL_BUDGET_RATIO: return ratio_retry(b);
    case RESIL_BUDGET_GRPC: return grpc_retry(b);
    case RESIL_BUDGET_QUOTA: return quota_retry(b, flags);
    case RESIL_BUDGET_ADAPTIVE: return adaptive_admit(b) ? granted(b) : denied(b);
  }
  return RESIL_EINVAL;
}

void resil_budget_result(resil_budget *b, int success, unsigned flags) {
  if (b == NULL) return;
  if (b->be != NULL) {
    if (b->be->result) b->be->result(b->be_ud, success, flags);
    resil_budget_result(b->fb, success, flags);
    return;
  }
  switch (b->kind) {
    case RESIL_BUDGET_GRPC:
      if (success)
        word_add_capped(&b->word, b->g_ratio, b->g_max);
      else
        grpc_failure(b);
      return;
    case RESIL_BUDGET_QUOTA:
      if (success)
        word_add_capped(&b->word, (flags & RESIL_BUDGET_RETRY) ? quota_cost(b, flags) : 1,
                        b->q_cap);
      return;
    case RESIL_BUDGET_ADAPTIVE:
      if (success) win_count_b(b, win_current(b, now_u(b)));
      return;
    case RESIL_BUDGET_TOKEN_BUCKET:
    case RESIL_BUDGET_RATIO:
      return;
  }
}

void resil_budget_snapshot_get(resil_budget *b, resil_budget_snapshot *out) {
  if (out == NULL) return;
  memset(out, 0, sizeof *out);
  if (b == NULL) return;
  out->kind = b->kind;
  if (b->be != NULL) {
    resil_budget_snapshot f;
    resil_budget_snapshot_get(b->fb, &f);
    out->available = f.available;
    out->fallbacks = atomic_load_explicit(&b->fallbacks, RLX);
  } else switch (b->kind) {
    case RESIL_BUDGET_TOKEN_BUCKET:
      out->available = tb_available(b);
      break;
    case RESIL_BUDGET_RATIO: {
      (void)win_current(b, now_u(b));
      double allow = ratio_allowance(b, atomic_load_explicit(&b->agg_a, RLX));
      double used = (double)atomic_load_explicit(&b->agg_b, RLX);
      out->available = allow > used ? allow - used : 0;
      break;
    }
    case RESIL_BUDGET_GRPC:
      out->available = (double)atomic_load_explicit(&b->word, RLX) / GRPC_SCALE;
      break;
    case RESIL_BUDGET_QUOTA:
      out->available = (double)atomic_load_explicit(&b->word, RLX);
      break;
    case RESIL_BUDGET_ADAPTIVE:
      (void)win_current(b, now_u(b));
      out->available = 1 - adaptive_reject_p(b);
      break;
  }
  for (int i = 0; i < STRIPES; i++) {
    out->requests += atomic_load_explicit(&b->tot[i].requests, RLX);
    out->retries_granted += atomic_load_explicit(&b->tot[i].granted, RLX);
    out->retries_denied += atomic_load_explicit(&b->tot[i].denied, RLX);
    out->requests_rejected += atomic_load_explicit(&b->tot[i].rejected, RLX);
  }
}
