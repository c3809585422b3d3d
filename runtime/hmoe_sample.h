/* hmoe_sample: choosing the next token from logits: greedy, temperature, top-k, top-p,
 * seeded and reproducible across runs and machines (own PRNG, no libc rand). */
#ifndef HMOE_SAMPLE_H
#define HMOE_SAMPLE_H

#include <stdint.h>

struct hmoe_sampler {
	float temperature;   /* 0: greedy (argmax, lowest id on ties) */
	float top_p;         /* 1: off */
	int top_k;           /* 0: off */
	uint64_t rng[2];     /* xoroshiro-style state, from the seed */
};

/* R1's recommended defaults: temperature 0.6, top-p 0.95. */
#define HMOE_R1_TEMPERATURE 0.6f
#define HMOE_R1_TOP_P 0.95f

/* temperature <= 0 (or NaN) means greedy; top_p outside (0, 1) and top_k <= 0 mean off.
 * The same seed gives the same stream of draws on every machine. */
void hmoe_sampler_init(struct hmoe_sampler *s, float temperature, float top_p, int top_k,
		       uint64_t seed);
/* Picks a token among logits[0, n_valid) (ids past the tokenizer are padding and never
 * chosen). scratch: at least 2*n_valid floats of caller memory, or NULL to allocate.
 *
 * Order: temperature, then top-k (the k largest logits), then top-p (the smallest set of
 * most likely tokens, in the top-k renormalised distribution, whose mass reaches top_p),
 * then one uniform draw. Greedy or top_k = 1 take the argmax without drawing. NaN logits
 * are never chosen; +inf logits share all the probability; if every logit is NaN or
 * -inf, or n_valid is not in [1, 2^24], the result is an HMOE_EINPUT error. Returns the
 * id or a negative error. */
int hmoe_sample(struct hmoe_sampler *s, const float *logits, int n_valid, float *scratch);
/* Uniform double in [0, 1) from the sampler's stream. */
double hmoe_sampler_uniform(struct hmoe_sampler *s);

#endif
