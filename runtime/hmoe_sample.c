/* placeholder: replaced by the tokenizer work */
#include "hmoe_sample.h"
#include "hmoe_err.h"
void hmoe_sampler_init(struct hmoe_sampler *s, float t, float p, int k, uint64_t seed) { s->temperature = t; s->top_p = p; s->top_k = k; s->rng[0] = seed; s->rng[1] = 1; }
int hmoe_sample(struct hmoe_sampler *s, const float *l, int n, float *x) { (void)s; (void)l; (void)n; (void)x; return hmoe_err(HMOE_EINTERNAL, "not built yet"); }
double hmoe_sampler_uniform(struct hmoe_sampler *s) { (void)s; return 0; }
