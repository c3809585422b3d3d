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

void hmoe_sampler_init(struct hmoe_sampler *s, float temperature, float top_p, int top_k,
		       uint64_t seed);
/* Picks a token among logits[0, n_valid) (ids past the tokenizer are padding and never
 * chosen). scratch: at least 2*n_valid floats of caller memory, or NULL to allocate. */
int hmoe_sample(struct hmoe_sampler *s, const float *logits, int n_valid, float *scratch);
/* Uniform double in [0, 1) from the sampler's stream. */
double hmoe_sampler_uniform(struct hmoe_sampler *s);

#endif
