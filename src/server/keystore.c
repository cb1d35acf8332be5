/* Per-KEY request records: a hash table for lookup and a doubly linked list
 * in recency order, both under one mutex. At most max_keys records exist;
 * adding one more first forgets the least recently used. Per record, memory
 * is bounded too: RESIL__FS_METHODS_PER_KEY method names and the
 * RESIL__FS_IDEM_PER_KEY most recently seen Idempotency-Key values.
 *
 * The table grows by doubling while it has fewer buckets than records, so
 * a small max_keys costs little and a large one is only paid for when used. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "server/internal.h"

typedef struct idem_entry {
  char *value;
  size_t len;
  uint64_t count;
} idem_entry;

typedef struct method_entry {
  char name[RESIL__FS_METHOD_MAX + 1];
  uint64_t count;
} method_entry;

typedef struct key_rec {
  struct key_rec *chain;      /* next in the hash bucket */
  struct key_rec *newer, *older; /* recency list */
  uint64_t hash;
  uint64_t requests;
  method_entry methods[RESIL__FS_METHODS_PER_KEY];
  uint64_t methods_other;
  /* Distinct values in first-seen order; when full, the least recently
   * seen one is dropped. */
  idem_entry idem[RESIL__FS_IDEM_PER_KEY];
  uint64_t idem_seen[RESIL__FS_IDEM_PER_KEY]; /* tick of last sighting */
  size_t n_idem;
  uint64_t idem_tick;
  size_t keylen;
  char key[]; /* keylen bytes + NUL */
} key_rec;

struct resil__fs_keystore {
  pthread_mutex_t mu;
  key_rec **buckets;
  size_t n_buckets; /* a power of two */
  size_t count, max_keys;
  uint64_t evicted;
  key_rec *newest, *oldest;
  uint64_t seed;
};

/* FNV-1a, then a splitmix64 finalizer keyed by the seed so bucket placement
 * is not predictable from the key alone. */
static uint64_t hash_key(uint64_t seed, const char *key, size_t len) {
  uint64_t h = 0xcbf29ce484222325ull ^ seed;
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)key[i];
    h *= 0x100000001b3ull;
  }
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  return h ^ (h >> 31);
}

int resil__fs_keystore_new(resil__fs_keystore **out, size_t max_keys, uint64_t hash_seed) {
  *out = NULL;
  resil__fs_keystore *ks = calloc(1, sizeof *ks);
  if (ks == NULL) return -1;
  ks->n_buckets = 64;
  ks->buckets = calloc(ks->n_buckets, sizeof *ks->buckets);
  if (ks->buckets == NULL || pthread_mutex_init(&ks->mu, NULL) != 0) {
    free(ks->buckets);
    free(ks);
    return -1;
  }
  ks->max_keys = max_keys ? max_keys : 1;
  ks->seed = hash_seed;
  *out = ks;
  return 0;
}

static void rec_free(key_rec *r) {
  for (size_t i = 0; i < r->n_idem; i++) free(r->idem[i].value);
  free(r);
}

void resil__fs_keystore_free(resil__fs_keystore *ks) {
  if (ks == NULL) return;
  key_rec *r = ks->newest;
  while (r) {
    key_rec *next = r->older;
    rec_free(r);
    r = next;
  }
  free(ks->buckets);
  pthread_mutex_destroy(&ks->mu);
  free(ks);
}

static key_rec *find(resil__fs_keystore *ks, uint64_t h, const char *key, size_t len) {
  for (key_rec *r = ks->buckets[h & (ks->n_buckets - 1)]; r; r = r->chain)
    if (r->hash == h && r->keylen == len && memcmp(r->key, key, len) == 0) return r;
  return NULL;
}

static void list_unlink(resil__fs_keystore *ks, key_rec *r) {
  if (r->newer) r->newer->older = r->older;
  else ks->newest = r->older;
  if (r->older) r->older->newer = r->newer;
  else ks->oldest = r->newer;
  r->newer = r->older = NULL;
}

static void list_push_newest(resil__fs_keystore *ks, key_rec *r) {
  r->newer = NULL;
  r->older = ks->newest;
  if (ks->newest) ks->newest->newer = r;
  ks->newest = r;
  if (ks->oldest == NULL) ks->oldest = r;
}

static void table_remove(resil__fs_keystore *ks, key_rec *r) {
  key_rec **pp = &ks->buckets[r->hash & (ks->n_buckets - 1)];
  while (*pp != r) pp = &(*pp)->chain;
  *pp = r->chain;
}

static void table_insert(resil__fs_keystore *ks, key_rec *r) {
  key_rec **b = &ks->buckets[r->hash & (ks->n_buckets - 1)];
  r->chain = *b;
  *b = r;
}

/* Double the bucket count; on allocation failure keep the longer chains. */
static void table_grow(resil__fs_keystore *ks) {
  if (ks->n_buckets > SIZE_MAX / 2 / sizeof *ks->buckets) return;
  size_t n = ks->n_buckets * 2;
  key_rec **nb = calloc(n, sizeof *nb);
  if (nb == NULL) return;
  for (size_t i = 0; i < ks->n_buckets; i++) {
    key_rec *r = ks->buckets[i];
    while (r) {
      key_rec *next = r->chain;
      r->chain = nb[r->hash & (n - 1)];
      nb[r->hash & (n - 1)] = r;
      r = next;
    }
  }
  free(ks->buckets);
  ks->buckets = nb;
  ks->n_buckets = n;
}

static void count_method(key_rec *r, const char *method) {
  size_t len = strlen(method);
  if (len > RESIL__FS_METHOD_MAX) {
    r->methods_other++;
    return;
  }
  for (size_t i = 0; i < RESIL__FS_METHODS_PER_KEY; i++) {
    method_entry *m = &r->methods[i];
    if (m->count == 0) { /* first free slot: the method is new */
      memcpy(m->name, method, len + 1);
      m->count = 1;
      return;
    }
    if (strcmp(m->name, method) == 0) {
      m->count++;
      return;
    }
  }
  r->methods_other++;
}

/* Returns -1 when out of memory (nothing changed). */
static int count_idem(key_rec *r, const char *idem, size_t len) {
  uint64_t tick = ++r->idem_tick;
  for (size_t i = 0; i < r->n_idem; i++) {
    if (r->idem[i].len == len && memcmp(r->idem[i].value, idem, len) == 0) {
      r->idem[i].count++;
      r->idem_seen[i] = tick;
      return 0;
    }
  }
  char *copy = malloc(len + 1);
  if (copy == NULL) return -1;
  memcpy(copy, idem, len);
  copy[len] = '\0';
  if (r->n_idem == RESIL__FS_IDEM_PER_KEY) {
    size_t lru = 0;
    for (size_t i = 1; i < r->n_idem; i++)
      if (r->idem_seen[i] < r->idem_seen[lru]) lru = i;
    free(r->idem[lru].value);
    size_t tail = r->n_idem - lru - 1;
    memmove(&r->idem[lru], &r->idem[lru + 1], tail * sizeof r->idem[0]);
    memmove(&r->idem_seen[lru], &r->idem_seen[lru + 1], tail * sizeof r->idem_seen[0]);
    r->n_idem--;
  }
  r->idem[r->n_idem] = (idem_entry){copy, len, 1};
  r->idem_seen[r->n_idem] = tick;
  r->n_idem++;
  return 0;
}

uint64_t resil__fs_keystore_hit(resil__fs_keystore *ks, const char *key, size_t keylen,
                                const char *method, const char *idem, size_t idemlen) {
  uint64_t h = hash_key(ks->seed, key, keylen);
  uint64_t n = 0;
  pthread_mutex_lock(&ks->mu);
  key_rec *r = find(ks, h, key, keylen);
  key_rec *fresh = NULL;
  if (r == NULL) {
    fresh = calloc(1, sizeof *fresh + keylen + 1);
    if (fresh == NULL) goto out;
    fresh->hash = h;
    fresh->keylen = keylen;
    memcpy(fresh->key, key, keylen);
    r = fresh;
  }
  if (idem && count_idem(r, idem, idemlen) != 0) {
    free(fresh);
    goto out;
  }
  if (fresh) {
    if (ks->count >= ks->max_keys) { /* make room: forget the oldest */
      key_rec *old = ks->oldest;
      list_unlink(ks, old);
      table_remove(ks, old);
      rec_free(old);
      ks->count--;
      ks->evicted++;
    }
    if (ks->count >= ks->n_buckets) table_grow(ks);
    table_insert(ks, r);
    ks->count++;
  } else {
    list_unlink(ks, r);
  }
  list_push_newest(ks, r);
  count_method(r, method);
  n = ++r->requests;
out:
  pthread_mutex_unlock(&ks->mu);
  return n;
}

/* ---- JSON ------------------------------------------------------------------ */

/* The fields of one record, without braces. In /stats the values are only
 * counted (idempotency_key_count) so the listing stays small. */
static void rec_fields(const key_rec *r, int with_values, resil__fs_buf *b) {
  resil__fs_buf_printf(b, "\"requests\":%llu,\"methods\":{", (unsigned long long)r->requests);
  for (size_t i = 0; i < RESIL__FS_METHODS_PER_KEY && r->methods[i].count; i++) {
    if (i) resil__fs_buf_puts(b, ",");
    resil__fs_json_str(b, r->methods[i].name, strlen(r->methods[i].name));
    resil__fs_buf_printf(b, ":%llu", (unsigned long long)r->methods[i].count);
  }
  resil__fs_buf_puts(b, "}");
  if (r->methods_other)
    resil__fs_buf_printf(b, ",\"methods_other\":%llu", (unsigned long long)r->methods_other);
  if (!with_values) {
    resil__fs_buf_printf(b, ",\"idempotency_key_count\":%zu", r->n_idem);
    return;
  }
  resil__fs_buf_puts(b, ",\"idempotency_keys\":{");
  for (size_t i = 0; i < r->n_idem; i++) {
    if (i) resil__fs_buf_puts(b, ",");
    resil__fs_json_str(b, r->idem[i].value, r->idem[i].len);
    resil__fs_buf_printf(b, ":%llu", (unsigned long long)r->idem[i].count);
  }
  resil__fs_buf_puts(b, "}");
}

void resil__fs_keystore_json_all(resil__fs_keystore *ks, uint64_t requests, resil__fs_buf *b) {
  pthread_mutex_lock(&ks->mu);
  resil__fs_buf_printf(b,
                       "{\"requests\":%llu,\"max_keys\":%zu,\"keys_tracked\":%zu,"
                       "\"keys_evicted\":%llu,\"keys\":{",
                       (unsigned long long)requests, ks->max_keys, ks->count,
                       (unsigned long long)ks->evicted);
  /* Least recently used first. */
  for (const key_rec *r = ks->oldest; r && !b->failed; r = r->newer) {
    if (r != ks->oldest) resil__fs_buf_puts(b, ",");
    resil__fs_json_str(b, r->key, r->keylen);
    resil__fs_buf_puts(b, ":{");
    rec_fields(r, 0, b);
    resil__fs_buf_puts(b, "}");
  }
  resil__fs_buf_puts(b, "}}\n");
  pthread_mutex_unlock(&ks->mu);
}

void resil__fs_keystore_json_key(resil__fs_keystore *ks, const char *key, size_t keylen,
                                 resil__fs_buf *b) {
  uint64_t h = hash_key(ks->seed, key, keylen);
  resil__fs_buf_puts(b, "{\"key\":");
  resil__fs_json_str(b, key, keylen);
  pthread_mutex_lock(&ks->mu);
  const key_rec *r = find(ks, h, key, keylen);
  if (r) {
    resil__fs_buf_puts(b, ",\"tracked\":true,");
    rec_fields(r, 1, b);
  } else {
    /* Never seen, or forgotten to make room for newer keys. */
    resil__fs_buf_puts(b, ",\"tracked\":false,\"requests\":0,\"methods\":{},"
                          "\"idempotency_keys\":{}");
  }
  pthread_mutex_unlock(&ks->mu);
  resil__fs_buf_puts(b, "}\n");
}
