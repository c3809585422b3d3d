/* gpu_check: what the GPU kernel tests (test_cuda.c) and the tensor-core emulator test
 * (emu/emu_attn.cpp) share: seeded random data, the element-by-element comparison with
 * its one-line report, and the attention kernels' tolerance. C and C++. */
#ifndef HMOE_GPU_CHECK_H
#define HMOE_GPU_CHECK_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "hmoe_num.h"

/* ---- random data (splitmix64; the seed is printed so a failure can be replayed) ---- */

static uint64_t rng_state;

/* Seeds from $HMOE_TEST_SEED (default 0x5eed) and prints the seed. */
static inline uint64_t rng_seed_from_env(void)
{
	const char *env = getenv("HMOE_TEST_SEED");

	rng_state = env ? strtoull(env, NULL, 0) : 0x5eedull;
	printf("seed %llu (HMOE_TEST_SEED replays)\n", (unsigned long long)rng_state);
	return rng_state;
}

static inline uint64_t rng_next(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline float rng_uniform(float lo, float hi)
{
	return lo + (hi - lo) * (float)((double)(rng_next() >> 11) / 9007199254740992.0);
}

static inline float rng_normal(void)
{
	float u1 = rng_uniform(1e-7f, 1.0f), u2 = rng_uniform(0.0f, 1.0f);

	return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}

/* n bytes, 16-byte aligned (cp.async sources in the emulator), never NULL. */
static inline void *xmalloc(size_t n)
{
	void *p = aligned_alloc(16, (n + 15) / 16 * 16 + 16);

	if (!p) {
		fprintf(stderr, "out of memory (%zu bytes)\n", n);
		exit(1);
	}
	return p;
}

/* (n) bf16 uniform in [lo, hi) */
static inline uint16_t *rand_bf16(size_t n, float lo, float hi)
{
	uint16_t *p = (uint16_t *)xmalloc(n * 2);

	for (size_t i = 0; i < n; i++)
		p[i] = hmoe_f32_to_bf16(rng_uniform(lo, hi));
	return p;
}

/* ---- comparison ---- */

struct cmp {
	const char *what;
	long n, bad;
	double max_err, max_ratio;  /* largest |got - ref| and largest |got - ref| / tol */
	long first_bad;
	double first_got, first_ref, first_tol;
};

static inline void cmp_one(struct cmp *c, long i, double got, double ref, double tol)
{
	double err = fabs(got - ref);

	c->n++;
	if (!(err <= tol)) {  /* NaN (an element never written) fails */
		if (c->bad++ == 0) {
			c->first_bad = i;
			c->first_got = got;
			c->first_ref = ref;
			c->first_tol = tol;
		}
		if (!isnan(err) && err > c->max_err)
			c->max_err = err;
		c->max_ratio = INFINITY;
		return;
	}
	if (err > c->max_err)
		c->max_err = err;
	if (tol > 0 && err / tol > c->max_ratio)
		c->max_ratio = err / tol;
}

/* One line: "WHAT ok: ..." or "WHAT FAILED: ..."; returns 1 on failure. */
static inline int cmp_report(const struct cmp *c)
{
	if (c->bad) {
		printf("%-34s FAILED: %ld of %ld outside tolerance; first [%ld] got %.8g ref %.8g "
		       "tol %.3g\n", c->what, c->bad, c->n, c->first_bad, c->first_got,
		       c->first_ref, c->first_tol);
		return 1;
	}
	printf("%-34s ok: %ld values, max |err| %.3g, max err/tol %.3f\n", c->what, c->n,
	       c->max_err, c->max_ratio);
	return 0;
}

/* One bf16 rounding to nearest moves a value r by at most 2^-8 |r| (8 significant bits;
 * 2^-9 |r| for most r, 2^-8 |r| just above a power of two). */
#define BF16_ULP (1.0 / 256.0)

/* The MLA kernels' tolerance for an output ref (an exact convex combination of values in
 * [-1, 1]): fp32 softmax and accumulation in another order, then one bf16 rounding; the
 * tensor-core versions also round each probability to bf16 (relative error u = 2^-8)
 * and normalise by the sum of the rounded ones, which moves o by at most u / (1 - u) x
 * spread, spread = sum_t p_t |v_t - o| (hcu_ref_mla_decode / hcu_ref_mla_prefill). */
static inline double attn_tol(double ref, double spread, int tensor_cores)
{
	return BF16_ULP * fabs(ref) + 1e-4 + (tensor_cores ? 1.01 * ldexp(1.0, -8) * spread : 0.0);
}

#endif
