/* xoshiro256** with splitmix64 seeding, and unbiased bounded draws.
 * Written from the published algorithm descriptions (Blackman & Vigna 2018;
 * Lemire 2019, "Fast Random Integer Generation in an Interval"). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "resil/rng.h"

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void resil_rng_seed(resil_rng *r, uint64_t seed) {
  uint64_t x = seed;
  for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
  /* splitmix64 never yields four zero words in a row, so the state is valid. */
}

resil_err resil_rng_seed_os(resil_rng *r) {
  uint64_t buf[4];
  size_t got = 0;
  while (got < sizeof buf) {
    ssize_t n = getrandom((char *)buf + got, sizeof buf - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    got += (size_t)n;
  }
  if (got == sizeof buf && (buf[0] | buf[1] | buf[2] | buf[3]) != 0) {
    memcpy(r->s, buf, sizeof buf);
    return RESIL_OK;
  }
  /* No kernel entropy: still give every object a distinct stream. */
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  resil_rng_seed(r, (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)r);
  return RESIL_ESYS;
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t resil_rng_next(resil_rng *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

/* 64x64 -> 128-bit multiply, high and low halves. */
static inline void mul128(uint64_t a, uint64_t b, uint64_t *hi, uint64_t *lo) {
#if defined(__SIZEOF_INT128__)
  __extension__ typedef unsigned __int128 u128;
  u128 p = (u128)a * b;
  *hi = (uint64_t)(p >> 64);
  *lo = (uint64_t)p;
#else
  uint64_t a0 = (uint32_t)a, a1 = a >> 32, b0 = (uint32_t)b, b1 = b >> 32;
  uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
  uint64_t mid = (p00 >> 32) + (uint32_t)p01 + (uint32_t)p10;
  *lo = (mid << 32) | (uint32_t)p00;
  *hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
#endif
}

uint64_t resil_rng_below(resil_rng *r, uint64_t bound) {
  if (bound == 0) return 0;
  uint64_t hi, lo;
  mul128(resil_rng_next(r), bound, &hi, &lo);
  if (lo < bound) {
    /* Reject the (2^64 mod bound) low products that would make some values
     * one draw more likely than others. */
    uint64_t threshold = (0 - bound) % bound;
    while (lo < threshold) mul128(resil_rng_next(r), bound, &hi, &lo);
  }
  return hi;
}

resil_ns resil_rng_between(resil_rng *r, resil_ns lo, resil_ns hi) {
  if (lo < 0) lo = 0;
  if (hi < 0) hi = 0;
  if (lo > hi) {
    resil_ns t = lo;
    lo = hi;
    hi = t;
  }
  /* hi - lo + 1 <= 2^63, which fits in uint64_t. */
  uint64_t span = (uint64_t)(hi - lo) + 1;
  return lo + (resil_ns)resil_rng_below(r, span);
}

double resil_rng_unit(resil_rng *r) {
  return (double)(resil_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}
