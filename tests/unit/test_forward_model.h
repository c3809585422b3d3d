/* test_forward_model: builds a small DeepSeek-V3-shaped model in memory with random fp32
 * weights, so the forward-pass tests run without a checkpoint on disk.
 *
 * Sizes are deliberately odd (not multiples of 8 or 16) so the SIMD tails run, the YaRN
 * original length is short so test positions go past it, and the router has groups and
 * a correction bias.
 */
#ifndef TEST_FORWARD_MODEL_H
#define TEST_FORWARD_MODEL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmoe_model.h"

static inline struct hmoe_config tfm_config(void)
{
	struct hmoe_config c;

	memset(&c, 0, sizeof(c));
	c.vocab_size = 77;
	c.hidden_size = 40;
	c.intermediate_size = 56;
	c.moe_intermediate_size = 24;
	c.num_hidden_layers = 3;
	c.first_k_dense_replace = 1;
	c.moe_layer_freq = 1;
	c.num_attention_heads = 3;
	c.num_key_value_heads = 3;
	c.n_routed_experts = 8;
	c.n_shared_experts = 1;
	c.num_experts_per_tok = 3;
	c.n_group = 4;
	c.topk_group = 2;
	c.scoring_func = HMOE_SCORE_SIGMOID;
	c.norm_topk_prob = 1;
	c.routed_scaling_factor = 2.5f;
	c.q_lora_rank = 28;
	c.kv_lora_rank = 20;
	c.qk_nope_head_dim = 12;
	c.qk_rope_head_dim = 8;
	c.v_head_dim = 10;
	c.rope_theta = 10000.0f;
	c.rope_yarn = 1;
	c.rope_factor = 40.0f;
	c.rope_original_max_pos = 8;
	c.rope_beta_fast = 32.0f;
	c.rope_beta_slow = 1.0f;
	c.rope_mscale = 1.0f;
	c.rope_mscale_all_dim = 1.0f;
	c.rms_norm_eps = 1e-6f;
	c.max_position_embeddings = 4096;
	c.bos_token_id = 0;
	c.eos_token_id = 1;
	return c;
}

struct tfm_rng {
	uint64_t s;
};

static inline float tfm_uniform(struct tfm_rng *r) /* [-1, 1) */
{
	r->s = r->s * 6364136223846793005ull + 1442695040888963407ull;
	return (float)((r->s >> 40) & 0xffffff) / (float)(1 << 23) - 1.0f;
}

static inline float *tfm_fill(struct tfm_rng *r, size_t n, float center, float spread)
{
	float *p = malloc(n * sizeof(float));

	if (!p) {
		fprintf(stderr, "test model: out of memory\n");
		exit(1);
	}
	for (size_t i = 0; i < n; i++)
		p[i] = center + spread * tfm_uniform(r);
	return p;
}

/* Routing for expert-backend tests: ids (n, k) of n_experts (<= 64), k distinct experts
 * per token drawn from r, and expert 5 first in every even token (a hot expert). */
static inline void tfm_route(struct tfm_rng *r, int n, int k, int n_experts, int *ids)
{
	for (int t = 0; t < n; t++) {
		int used[64] = { 0 }, j = 0;

		if (t % 2 == 0) {
			ids[t * k + j++] = 5;
			used[5] = 1;
		}
		while (j < k) {
			int e;

			r->s = r->s * 6364136223846793005ull + 1442695040888963407ull;
			e = (int)((r->s >> 33) % (uint64_t)n_experts);
			if (used[e])
				continue;
			used[e] = 1;
			ids[t * k + j++] = e;
		}
	}
}

static inline void tfm_linear(struct tfm_rng *r, struct hmoe_linear *l, int out, int in)
{
	l->out = out;
	l->in = in;
	l->w = tfm_fill(r, (size_t)out * in, 0.0f, 1.7f / sqrtf((float)in));
}

static inline void tfm_mlp(struct tfm_rng *r, struct hmoe_mlp *p, int inter, int dim)
{
	tfm_linear(r, &p->w1, inter, dim);
	tfm_linear(r, &p->w3, inter, dim);
	tfm_linear(r, &p->w2, dim, inter);
}

/* A model of config c with weights from seed. */
static inline struct hmoe_model *tfm_build(const struct hmoe_config *c, uint64_t seed)
{
	struct tfm_rng r = { seed * 0x9e3779b97f4a7c15ull + 1 };
	struct hmoe_model *m = calloc(1, sizeof(*m));
	int H = c->num_attention_heads, D = c->hidden_size;
	int qk = c->qk_nope_head_dim + c->qk_rope_head_dim;

	m->cfg = *c;
	m->embed = tfm_fill(&r, (size_t)c->vocab_size * D, 0.0f, 1.0f);
	m->norm = tfm_fill(&r, (size_t)D, 1.0f, 0.2f);
	tfm_linear(&r, &m->head, c->vocab_size, D);
	m->layers = calloc((size_t)c->num_hidden_layers, sizeof(*m->layers));
	for (int l = 0; l < c->num_hidden_layers; l++) {
		struct hmoe_layer *L = &m->layers[l];

		L->is_moe = hmoe_config_is_moe_layer(c, l);
		L->attn_norm = tfm_fill(&r, (size_t)D, 1.0f, 0.2f);
		L->ffn_norm = tfm_fill(&r, (size_t)D, 1.0f, 0.2f);
		if (c->q_lora_rank) {
			tfm_linear(&r, &L->wq_a, c->q_lora_rank, D);
			L->q_norm = tfm_fill(&r, (size_t)c->q_lora_rank, 1.0f, 0.2f);
			tfm_linear(&r, &L->wq_b, H * qk, c->q_lora_rank);
		} else {
			tfm_linear(&r, &L->wq_b, H * qk, D);
		}
		tfm_linear(&r, &L->wkv_a, c->kv_lora_rank + c->qk_rope_head_dim, D);
		L->kv_norm = tfm_fill(&r, (size_t)c->kv_lora_rank, 1.0f, 0.2f);
		tfm_linear(&r, &L->wkv_b, H * (c->qk_nope_head_dim + c->v_head_dim),
			   c->kv_lora_rank);
		tfm_linear(&r, &L->wo, D, H * c->v_head_dim);
		if (!L->is_moe) {
			tfm_mlp(&r, &L->mlp, c->intermediate_size, D);
			continue;
		}
		L->gate = tfm_fill(&r, (size_t)c->n_routed_experts * D, 0.0f, 0.5f);
		L->gate_bias = tfm_fill(&r, (size_t)c->n_routed_experts, 0.0f, 0.1f);
		L->experts = calloc((size_t)c->n_routed_experts, sizeof(*L->experts));
		for (int e = 0; e < c->n_routed_experts; e++)
			tfm_mlp(&r, &L->experts[e], c->moe_intermediate_size, D);
		L->has_shared = c->n_shared_experts > 0;
		if (L->has_shared)
			tfm_mlp(&r, &L->shared, c->n_shared_experts * c->moe_intermediate_size, D);
	}
	return m;
}

static inline void tfm_free_mlp(struct hmoe_mlp *p)
{
	free(p->w1.w);
	free(p->w2.w);
	free(p->w3.w);
}

static inline void tfm_free(struct hmoe_model *m)
{
	for (int l = 0; l < m->cfg.num_hidden_layers; l++) {
		struct hmoe_layer *L = &m->layers[l];

		free(L->attn_norm);
		free(L->ffn_norm);
		free(L->wq_a.w);
		free(L->q_norm);
		free(L->wq_b.w);
		free(L->wkv_a.w);
		free(L->kv_norm);
		free(L->wkv_b.w);
		free(L->wo.w);
		tfm_free_mlp(&L->mlp);
		free(L->gate);
		free(L->gate_bias);
		if (L->experts)
			for (int e = 0; e < m->cfg.n_routed_experts; e++)
				tfm_free_mlp(&L->experts[e]);
		free(L->experts);
		tfm_free_mlp(&L->shared);
	}
	free(m->layers);
	free(m->embed);
	free(m->norm);
	free(m->head.w);
	free(m);
}

/* max over i of |a[i] - b[i]| / max |b| : the accuracy measure of the logits tests */
static inline double tfm_rel_err(const float *a, const float *b, int n)
{
	double d = 0.0, ref = 0.0;

	for (int i = 0; i < n; i++) {
		double e = fabs((double)a[i] - (double)b[i]);

		if (e > d || isnan(e))
			d = isnan(e) ? INFINITY : e;
		if (fabs((double)b[i]) > ref)
			ref = fabs((double)b[i]);
	}
	return ref > 0.0 ? d / ref : d;
}

#endif
