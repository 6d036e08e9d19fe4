/* rng.h: a small deterministic random number generator (splitmix64 seeding xoshiro256**), for
 * parameter init and batch sampling. Its whole state is four words, saved in checkpoints. */
#ifndef XDT_RNG_H
#define XDT_RNG_H

#include <math.h>
#include <stdint.h>

typedef struct xdt_rng {
    uint64_t s[4];
} xdt_rng;

static inline uint64_t xdt_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Seeds from (seed, stream): different streams give independent sequences. */
static inline void xdt_rng_seed(xdt_rng *r, uint64_t seed, uint64_t stream) {
    uint64_t x = seed ^ (stream * 0xd1342543de82ef95ull + 0x632be59bd9b4e019ull);
    for (int i = 0; i < 4; i++)
        r->s[i] = xdt_splitmix64(&x);
}

static inline uint64_t xdt_rng_next(xdt_rng *r) {
    uint64_t *s = r->s;
    uint64_t x = s[1] * 5;
    uint64_t result = ((x << 7) | (x >> 57)) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return result;
}

/* Uniform in [0, n) (n > 0), without modulo bias worth caring about for n < 2^40. */
static inline uint64_t xdt_rng_below(xdt_rng *r, uint64_t n) {
    return (uint64_t)(((unsigned __int128)xdt_rng_next(r) * n) >> 64);
}

/* Uniform double in (0, 1). */
static inline double xdt_rng_uniform(xdt_rng *r) {
    return ((xdt_rng_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

/* Standard normal (Box-Muller; one value per call, deterministic). */
static inline double xdt_rng_normal(xdt_rng *r) {
    double u1 = xdt_rng_uniform(r), u2 = xdt_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

#endif
