/* Seeds for runs and the distributions the scenarios draw from. Every draw
 * starts from resil_rng (xoshiro256**): uniform doubles with 53 random bits. */
#include <math.h>
#include <string.h>

#include "sim/sim.h"

/* One splitmix64 output step: a bijective mix of 64 bits. */
static uint64_t mix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t sim_seed(uint64_t seed, uint32_t scenario, uint32_t variant, uint64_t param,
                  uint32_t run) {
  /* Fold each input into the state and mix again, so inputs that differ in
   * one bit anywhere give unrelated seeds. */
  uint64_t h = mix64(seed);
  h = mix64(h ^ ((uint64_t)scenario << 32 | variant));
  h = mix64(h ^ param);
  h = mix64(h ^ run);
  return h;
}

uint64_t sim_double_bits(double x) {
  if (x == 0) x = 0; /* -0.0 and 0.0 are the same p */
  uint64_t u;
  memcpy(&u, &x, sizeof u);
  return u;
}

void sim_normal_init(sim_normal *g, resil_rng *rng) {
  g->rng = rng;
  g->spare = 0;
  g->have_spare = 0;
}

double sim_normal_next(sim_normal *g) {
  if (g->have_spare) {
    g->have_spare = 0;
    return g->spare;
  }
  /* Marsaglia's polar method: a uniform point in the unit disc gives two
   * independent standard normals. */
  double u, v, s;
  do {
    u = 2.0 * resil_rng_unit(g->rng) - 1.0;
    v = 2.0 * resil_rng_unit(g->rng) - 1.0;
    s = u * u + v * v;
  } while (s >= 1.0 || s == 0.0);
  double f = sqrt(-2.0 * log(s) / s);
  g->spare = v * f;
  g->have_spare = 1;
  return u * f;
}

resil_ns sim_exp_ns(resil_rng *rng, resil_ns mean) {
  /* 1 - unit is in (0, 1], so the log is finite. */
  double x = -log(1.0 - resil_rng_unit(rng)) * (double)mean;
  return x >= 9.2e18 ? RESIL_NS_MAX : (resil_ns)x;
}

resil_ns sim_poisson_gap(resil_rng *rng, double rate) {
  double x = -log(1.0 - resil_rng_unit(rng)) / rate * 1e9;
  return x >= 9.2e18 ? RESIL_NS_MAX : (resil_ns)x;
}
