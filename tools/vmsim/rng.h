/* rng: splitmix64, the one generator and hash of vmsim: fast, seedable,
 * and good enough for synthetic data and access patterns. */
#ifndef VMSIM_RNG_H
#define VMSIM_RNG_H

#include <stdint.h>

/* splitmix64's finalizer: a bijective 64-bit mixer. */
static inline uint64_t rng_mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline uint64_t rng_next(uint64_t *state)
{
	*state += 0x9e3779b97f4a7c15ull;
	return rng_mix64(*state);
}

/* Uniform in [0, 1) with 53 bits. */
static inline double rng_unit(uint64_t *state)
{
	return (double)(rng_next(state) >> 11) * 0x1.0p-53;
}

/* Uniform in [0, n) by multiply-shift (bias below 2^-32 for n < 2^32). */
static inline uint64_t rng_below(uint64_t *state, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)rng_next(state) * n) >> 64);
}

#endif
