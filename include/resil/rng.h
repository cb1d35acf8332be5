/* resil: per-object random numbers.
 *
 * xoshiro256** (Blackman & Vigna), seeded through splitmix64 from a given
 * 64-bit seed (reproducible runs) or from getrandom() (the default). There is
 * no global generator: each object that draws jitter owns a resil_rng.
 * Bounded draws use Lemire's multiply-and-reject method, so every value in
 * the range is exactly equally likely (no modulo bias). */
#ifndef RESIL_RNG_H
#define RESIL_RNG_H

#include <stdint.h>

#include "error.h"
#include "export.h"
#include "time.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A value type so it can live inside other objects or on the stack; treat
 * the fields as private. Not thread-safe: one generator per thread/object. */
typedef struct resil_rng {
  uint64_t s[4];
} resil_rng;

/* Deterministic seeding: the same seed always gives the same sequence. */
RESIL_API void resil_rng_seed(resil_rng *r, uint64_t seed);
/* Seed from getrandom(). Returns RESIL_ESYS if the kernel cannot supply
 * entropy (the generator is then seeded from the clock and address space,
 * still usable for jitter but not unpredictable). */
RESIL_API resil_err resil_rng_seed_os(resil_rng *r);
/* Next 64 uniformly distributed bits. */
RESIL_API uint64_t resil_rng_next(resil_rng *r);
/* Uniform integer in [0, bound); bound 0 returns 0. Unbiased. */
RESIL_API uint64_t resil_rng_below(resil_rng *r, uint64_t bound);
/* Uniform duration in [lo, hi] inclusive; lo > hi are swapped; negative
 * bounds are treated as 0. Unbiased. */
RESIL_API resil_ns resil_rng_between(resil_rng *r, resil_ns lo, resil_ns hi);
/* Uniform double in [0, 1) with 53 random bits. */
RESIL_API double resil_rng_unit(resil_rng *r);

#ifdef __cplusplus
}
#endif
#endif /* RESIL_RNG_H */
