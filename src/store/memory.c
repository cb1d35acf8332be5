/* The memory: store. In-process, thread-safe, bounded.
 *
 * One mutex guards everything; every operation is a hash lookup plus O(log n)
 * heap work, so the critical sections are short.
 *
 *   table    separate chaining on a SipHash-2-4 of (scope length, scope, key)
 *            with a per-store random key, so clients choosing keys cannot
 *            force collisions; the bucket array doubles at load factor 1.
 *   entry    one allocation per (scope, key): the bookkeeping, the
 *            fingerprint and the names. A completed entry also owns one
 *            block with its encoded headers and body.
 *   deadline every entry has one: the end of its lease (a claim) or its
 *            expiry (a record). A min-heap on it finds expired entries for
 *            purge and eviction in O(log n).
 *   order    completed entries are also on a list in completion order; when
 *            the store is full and nothing has expired, the oldest
 *            completion is evicted. Claims are never evicted before their
 *            lease ends.
 *   tokens   a per-store counter through a bijective 64-bit mixer keyed with
 *            random bits: never 0, never repeated within the store, not
 *            sequential.
 *
 * An expired entry is as good as absent: claim takes it over in place (no
 * allocation). A claim on a new key allocates exactly its entry; a REPLAY
 * allocates exactly its copy (resil__store_replay). */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/internal.h"
#include "resil/rng.h"
#include "resil/store.h"
#include "store/internal.h"


enum { E_CLAIM = 0, E_DONE = 1 };

typedef struct entry {
  struct entry *next;          /* hash chain */
  struct entry *older, *newer; /* E_DONE: the completion-order list */
  uint64_t hash;
  uint64_t token;              /* E_CLAIM */
  resil_ns deadline;           /* lease end (E_CLAIM) or expiry (E_DONE) */
  size_t heap_at;
  unsigned char *resp;         /* E_DONE: encoded headers, then the body */
  size_t hdr_len, body_len;
  int status;
  unsigned char state;
  unsigned char scope_len, key_len; /* 1..255 each */
  uint8_t fp[RESIL_FINGERPRINT_SIZE];
  char names[];                /* the scope's bytes, then the key's */
} entry;

typedef struct mem_store {
  resil_store base; /* first: a resil_store * is a mem_store * */
  pthread_mutex_t mu;
  entry **buckets;
  size_t mask;      /* buckets - 1, a power of two minus one */
  size_t max_buckets;
  size_t count, max_entries;
  entry **heap;     /* min-heap on deadline; heap_n == count */
  size_t heap_n, heap_cap;
  entry *oldest, *newest; /* completed entries */
  uint64_t sip_k0, sip_k1;
  uint64_t token_next, token_k0, token_k1;
} mem_store;

/* ---- hashing and tokens --------------------------------------------------- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                             \
  do {                                                                                       \
    v0 += v1, v1 = ROTL(v1, 13), v1 ^= v0, v0 = ROTL(v0, 32);                                \
    v2 += v3, v3 = ROTL(v3, 16), v3 ^= v2;                                                   \
    v0 += v3, v3 = ROTL(v3, 21), v3 ^= v0;                                                   \
    v2 += v1, v1 = ROTL(v1, 17), v1 ^= v2, v2 = ROTL(v2, 32);                                \
  } while (0)

/* SipHash-2-4 (Aumasson & Bernstein), from the paper's description. */
static uint64_t siphash24(uint64_t k0, uint64_t k1, const unsigned char *in, size_t len) {
  uint64_t v0 = 0x736f6d6570736575ull ^ k0, v1 = 0x646f72616e646f6dull ^ k1;
  uint64_t v2 = 0x6c7967656e657261ull ^ k0, v3 = 0x7465646279746573ull ^ k1;
  size_t whole = len - len % 8;
  for (size_t i = 0; i < whole; i += 8) {
    uint64_t m = 0;
    for (int j = 7; j >= 0; j--) m = m << 8 | in[i + (size_t)j];
    v3 ^= m;
    SIPROUND;
    SIPROUND;
    v0 ^= m;
  }
  uint64_t b = (uint64_t)len << 56;
  for (size_t j = 0; j < len % 8; j++) b |= (uint64_t)in[whole + j] << (8 * j);
  v3 ^= b;
  SIPROUND;
  SIPROUND;
  v0 ^= b;
  v2 ^= 0xff;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

static uint64_t hash_names(const mem_store *m, const char *scope, size_t ls, const char *key,
                           size_t lk) {
  unsigned char buf[1 + 255 + 255];
  buf[0] = (unsigned char)ls; /* the length makes ("ab","c") differ from ("a","bc") */
  memcpy(buf + 1, scope, ls);
  memcpy(buf + 1 + ls, key, lk);
  return siphash24(m->sip_k0, m->sip_k1, buf, 1 + ls + lk);
}

/* splitmix64's finalizer: every step is invertible, so distinct inputs give
 * distinct outputs. */
static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Distinct counter values map to distinct tokens; exactly one maps to 0 and
 * is skipped. Called under the mutex. */
static uint64_t new_token(mem_store *m) {
  for (;;) {
    uint64_t t = mix64(m->token_next++ + m->token_k0) ^ m->token_k1;
    if (t != 0) return t;
  }
}

/* ---- the heap ------------------------------------------------------------- */

static void heap_put(mem_store *m, size_t i, entry *e) {
  m->heap[i] = e;
  e->heap_at = i;
}

static void sift_up(mem_store *m, size_t i) {
  entry *e = m->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (m->heap[parent]->deadline <= e->deadline) break;
    heap_put(m, i, m->heap[parent]);
    i = parent;
  }
  heap_put(m, i, e);
}

static void sift_down(mem_store *m, size_t i) {
  entry *e = m->heap[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= m->heap_n) break;
    if (c + 1 < m->heap_n && m->heap[c + 1]->deadline < m->heap[c]->deadline) c++;
    if (e->deadline <= m->heap[c]->deadline) break;
    heap_put(m, i, m->heap[c]);
    i = c;
  }
  heap_put(m, i, e);
}

/* After e's deadline changed. */
static void heap_fix(mem_store *m, entry *e) {
  size_t i = e->heap_at;
  if (i > 0 && e->deadline < m->heap[(i - 1) / 2]->deadline)
    sift_up(m, i);
  else
    sift_down(m, i);
}

static void heap_remove(mem_store *m, entry *e) {
  size_t i = e->heap_at;
  entry *last = m->heap[--m->heap_n];
  if (last == e) return;
  heap_put(m, i, last);
  heap_fix(m, last);
}

/* Room for one more; called before anything else changes. */
static int heap_reserve(mem_store *m) {
  if (m->heap_n < m->heap_cap) return 0;
  size_t cap = m->heap_cap ? m->heap_cap * 2 : 16;
  if (cap > m->max_entries) cap = m->max_entries;
  if (cap <= m->heap_n) cap = m->heap_n + 1;
  entry **h = m->base.alloc.realloc(m->base.alloc.ud, m->heap, cap * sizeof *h);
  if (h == NULL) return -1;
  m->heap = h;
  m->heap_cap = cap;
  return 0;
}

/* ---- the table and the completion list ------------------------------------ */

static entry *find(const mem_store *m, uint64_t h, const char *scope, size_t ls,
                   const char *key, size_t lk) {
  for (entry *e = m->buckets[h & m->mask]; e; e = e->next)
    if (e->hash == h && e->scope_len == ls && e->key_len == lk &&
        memcmp(e->names, scope, ls) == 0 && memcmp(e->names + ls, key, lk) == 0)
      return e;
  return NULL;
}

/* Double the bucket array; on allocation failure keep the old one (longer
 * chains, still correct). */
static void maybe_grow(mem_store *m) {
  size_t n = m->mask + 1;
  if (m->count <= n || n >= m->max_buckets) return;
  entry **nb = resil__calloc(&m->base.alloc, 2 * n * sizeof *nb);
  if (nb == NULL) return;
  size_t mask = 2 * n - 1;
  for (size_t i = 0; i < n; i++) {
    for (entry *e = m->buckets[i], *next; e; e = next) {
      next = e->next;
      e->next = nb[e->hash & mask];
      nb[e->hash & mask] = e;
    }
  }
  resil__free(&m->base.alloc, m->buckets);
  m->buckets = nb;
  m->mask = mask;
}

static void done_append(mem_store *m, entry *e) {
  e->newer = NULL;
  e->older = m->newest;
  if (m->newest) m->newest->newer = e;
  else m->oldest = e;
  m->newest = e;
}

static void done_unlink(mem_store *m, entry *e) {
  if (e->older) e->older->newer = e->newer;
  else m->oldest = e->newer;
  if (e->newer) e->newer->older = e->older;
  else m->newest = e->older;
  e->older = e->newer = NULL;
}

static void entry_free(mem_store *m, entry *e) {
  resil__free(&m->base.alloc, e->resp);
  resil__free(&m->base.alloc, e);
}

static void entry_remove(mem_store *m, entry *e) {
  entry **pp = &m->buckets[e->hash & m->mask];
  while (*pp != e) pp = &(*pp)->next;
  *pp = e->next;
  heap_remove(m, e);
  if (e->state == E_DONE) done_unlink(m, e);
  m->count--;
  entry_free(m, e);
}

/* Evict one entry to make room: the longest-expired one, else the oldest
 * completion. 0 when everything is an unexpired claim. */
static int make_room(mem_store *m, resil_ns now) {
  if (m->heap_n > 0 && m->heap[0]->deadline <= now) {
    entry_remove(m, m->heap[0]);
    return 1;
  }
  if (m->oldest) {
    entry_remove(m, m->oldest);
    return 1;
  }
  return 0;
}

/* ---- the protocol --------------------------------------------------------- */

/* Messages name the key but never the scope, which may be a credential.
 * Truncating a long key is fine (the return value is only to say so). */
static void fail(mem_store *m, const char *what, const char *key) {
  int n = snprintf(m->base.errmsg, sizeof m->base.errmsg, "memory store: %s%s%.60s%s", what,
                   key ? " (key '" : "", key ? key : "", key ? "')" : "");
  (void)n;
}

static resil_err mem_claim(resil_store *s, const char *scope, const char *key,
                           const uint8_t fingerprint[RESIL_FINGERPRINT_SIZE], resil_ns lease,
                           resil_claim_result *out) {
  mem_store *m = (mem_store *)s;
  size_t ls = strlen(scope), lk = strlen(key);
  uint64_t h = hash_names(m, scope, ls, key, lk);
  resil_err rc = RESIL_OK;

  pthread_mutex_lock(&m->mu);
  resil_ns now = s->clock.now(s->clock.ud); /* after any wait for the lock */
  entry *e = find(m, h, scope, ls, key, lk);
  if (e != NULL && e->deadline > now) {
    memset(out, 0, sizeof *out);
    if (memcmp(e->fp, fingerprint, RESIL_FINGERPRINT_SIZE) != 0) {
      out->status = RESIL_CLAIM_MISMATCH;
    } else if (e->state == E_CLAIM) {
      out->status = RESIL_CLAIM_IN_PROGRESS;
      out->lease_expires = e->deadline;
    } else {
      rc = resil__store_replay(out, &s->alloc, e->status, e->resp, e->hdr_len,
                               e->resp + e->hdr_len, e->body_len);
      if (rc != RESIL_OK) {
        fail(m, "out of memory copying the stored response", NULL);
        rc = RESIL_ENOMEM;
      }
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
  }

  if (e != NULL) {
    /* Expired: take it over in place. */
    if (e->state == E_DONE) {
      done_unlink(m, e);
      resil__free(&s->alloc, e->resp);
      e->resp = NULL;
      e->hdr_len = e->body_len = 0;
    }
  } else {
    if (m->count >= m->max_entries && !make_room(m, now)) {
      char msg[128];
      snprintf(msg, sizeof msg, "full of in-progress claims (max_entries=%zu)", m->max_entries);
      fail(m, msg, NULL);
      pthread_mutex_unlock(&m->mu);
      return RESIL_ESTORE;
    }
    if (heap_reserve(m) != 0 || (e = resil__alloc(&s->alloc, sizeof *e + ls + lk)) == NULL) {
      fail(m, "out of memory", NULL);
      pthread_mutex_unlock(&m->mu);
      return RESIL_ENOMEM;
    }
    memset(e, 0, sizeof *e);
    e->hash = h;
    e->scope_len = (unsigned char)ls;
    e->key_len = (unsigned char)lk;
    memcpy(e->names, scope, ls);
    memcpy(e->names + ls, key, lk);
    e->next = m->buckets[h & m->mask];
    m->buckets[h & m->mask] = e;
    e->deadline = now;
    heap_put(m, m->heap_n++, e);
    m->count++;
    maybe_grow(m);
  }
  e->state = E_CLAIM;
  memcpy(e->fp, fingerprint, RESIL_FINGERPRINT_SIZE);
  e->token = new_token(m);
  e->deadline = resil_ns_add(now, lease);
  heap_fix(m, e);

  memset(out, 0, sizeof *out);
  out->status = RESIL_CLAIM_CLAIMED;
  out->token = e->token;
  out->lease_expires = e->deadline;
  pthread_mutex_unlock(&m->mu);
  return RESIL_OK;
}

/* The entry that token owns, or NULL (with the message set). */
static entry *owned(mem_store *m, const char *scope, const char *key, uint64_t token,
                    const char *op) {
  size_t ls = strlen(scope), lk = strlen(key);
  entry *e = find(m, hash_names(m, scope, ls, key, lk), scope, ls, key, lk);
  if (e != NULL && e->state == E_CLAIM && e->token == token && token != 0) return e;
  char msg[160];
  snprintf(msg, sizeof msg,
           "cannot %s: the token does not own the key (completed, released, purged, or "
           "claimed again after the lease expired)",
           op);
  fail(m, msg, key);
  return NULL;
}

static resil_err mem_complete(resil_store *s, const char *scope, const char *key,
                              uint64_t token, const resil_stored_response *r, resil_ns ttl) {
  mem_store *m = (mem_store *)s;
  size_t hl;
  if (resil__store_headers_size(r->headers, r->n_headers, &hl) != RESIL_OK ||
      hl >= SIZE_MAX - r->body_len) {
    fail(m, "the response is too large", key);
    return RESIL_EINVAL;
  }
  /* Built before taking the lock; freed again if the token lost. */
  unsigned char *blob = resil__alloc(&s->alloc, hl + r->body_len + 1);
  if (blob == NULL) {
    fail(m, "out of memory", NULL);
    return RESIL_ENOMEM;
  }
  resil__store_headers_encode(r->headers, r->n_headers, blob);
  if (r->body_len) memcpy(blob + hl, r->body, r->body_len);
  resil_ns now = s->clock.now(s->clock.ud);

  pthread_mutex_lock(&m->mu);
  entry *e = owned(m, scope, key, token, "complete");
  if (e == NULL) {
    pthread_mutex_unlock(&m->mu);
    resil__free(&s->alloc, blob);
    return RESIL_ESTORE;
  }
  e->state = E_DONE;
  e->token = 0;
  e->resp = blob;
  e->hdr_len = hl;
  e->body_len = r->body_len;
  e->status = r->status;
  e->deadline = resil_ns_add(now, ttl);
  heap_fix(m, e);
  done_append(m, e);
  pthread_mutex_unlock(&m->mu);
  return RESIL_OK;
}

static resil_err mem_release(resil_store *s, const char *scope, const char *key,
                             uint64_t token) {
  mem_store *m = (mem_store *)s;
  pthread_mutex_lock(&m->mu);
  entry *e = owned(m, scope, key, token, "release");
  if (e != NULL) entry_remove(m, e);
  pthread_mutex_unlock(&m->mu);
  return e != NULL ? RESIL_OK : RESIL_ESTORE;
}

static resil_err mem_purge(resil_store *s, uint64_t *purged) {
  mem_store *m = (mem_store *)s;
  resil_ns now = s->clock.now(s->clock.ud);
  uint64_t n = 0;
  pthread_mutex_lock(&m->mu);
  while (m->heap_n > 0 && m->heap[0]->deadline <= now) {
    entry_remove(m, m->heap[0]);
    n++;
  }
  pthread_mutex_unlock(&m->mu);
  if (purged) *purged = n;
  return RESIL_OK;
}

static void mem_close(resil_store *s) {
  mem_store *m = (mem_store *)s;
  for (size_t i = 0; i < m->heap_n; i++) entry_free(m, m->heap[i]);
  resil__free(&s->alloc, m->heap);
  resil__free(&s->alloc, m->buckets);
  pthread_mutex_destroy(&m->mu);
  resil_allocator a = s->alloc;
  resil__free(&a, m);
}

static const resil_store_vtab mem_vtab = {
    1, "memory", mem_claim, mem_complete, mem_release, mem_purge, mem_close,
};

resil_err resil__store_memory_open(resil_store **out, const resil_store_options *o,
                                   size_t max_entries, char *err, size_t errlen) {
  mem_store *m = resil__calloc(&o->alloc, sizeof *m);
  if (m == NULL) {
    snprintf(err, errlen, "memory store: out of memory");
    return RESIL_ENOMEM;
  }
  m->base.vtab = &mem_vtab;
  m->base.clock = o->clock;
  m->base.alloc = o->alloc;
  m->max_entries = max_entries;
  m->max_buckets = 16;
  while (m->max_buckets < max_entries) m->max_buckets *= 2;
  m->buckets = resil__calloc(&o->alloc, 16 * sizeof *m->buckets);
  if (m->buckets == NULL) {
    resil__free(&o->alloc, m);
    snprintf(err, errlen, "memory store: out of memory");
    return RESIL_ENOMEM;
  }
  m->mask = 15;
  if (pthread_mutex_init(&m->mu, NULL) != 0) {
    resil__free(&o->alloc, m->buckets);
    resil__free(&o->alloc, m);
    snprintf(err, errlen, "memory store: cannot create a mutex");
    return RESIL_ESYS;
  }
  /* Without kernel entropy the generator is still seeded per object, which
   * keeps tokens unique (the counter does that) and hashing keyed. */
  resil_rng rng;
  (void)resil_rng_seed_os(&rng);
  m->sip_k0 = resil_rng_next(&rng);
  m->sip_k1 = resil_rng_next(&rng);
  m->token_k0 = resil_rng_next(&rng);
  m->token_k1 = resil_rng_next(&rng);
  *out = &m->base;
  return RESIL_OK;
}
