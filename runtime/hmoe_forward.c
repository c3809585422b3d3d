/* hmoe_forward: fp32 CPU reference forward pass (see hmoe_forward.h, docs/forward.md).
 *
 * Sections: types -> lifetime -> routing/combine -> layer blocks (MLA, MLP, MoE) ->
 * the batch driver. */
#include "hmoe_forward.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hmoe_err.h"
#include "hmoe_ops.h"
#include "hmoe_pool.h"

/* ---- types ---- */

/* The new tokens of one sequence in the current batch. */
struct fwd_group {
	struct hmoe_kv *seq;
	int start;            /* seq->len before the batch: first new position */
	int n_new;            /* new tokens */
	int *entries;         /* [n_new] batch indices, in position order */
	int naive;            /* attention form chosen for this group */
};

/* Per-thread attention scratch, sized for the longest sequence of the batch. */
struct fwd_thread {
	float *k;             /* naive: (len, qk_head_dim) [k_nope | k_pe] of one head */
	float *v;             /* naive: (len, v_head_dim) of one head */
	float *scores;        /* (len) */
	float *q_lat;         /* absorbed: (kv_lora + rope) [q_nope W_UK | q_pe] */
	float *o_lat;         /* absorbed: (kv_lora) */
};

struct hmoe_forward {
	const struct hmoe_model *m;
	const struct hmoe_config *cfg;
	struct hmoe_expert_backend *experts;
	struct hmoe_pool *pool;
	enum hmoe_attn attn;

	int n_heads, nope, rope, qk, vdim, kv_lora, q_lora, dim;
	int mlp_inter;        /* max(intermediate_size, shared inter) */
	float *freqs;         /* (rope / 2) RoPE frequencies, YaRN-blended when enabled */
	float softmax_scale;

	/* token-sized scratch, for up to tok_cap tokens */
	int tok_cap;
	float *x;             /* (n, dim) residual stream */
	float *xn;            /* (n, dim) normed input of the current block */
	float *q_a;           /* (n, q_lora) */
	float *q;             /* (n, heads * qk) */
	float *kv_a;          /* (n, kv_lora + rope) */
	float *att;           /* (n, heads * v) attention output before wo */
	float *out;           /* (n, dim) block output */
	float *shared;        /* (n, dim) shared-expert output */
	float *mlp_g;         /* (n, mlp_inter) */
	float *mlp_u;         /* (n, mlp_inter) */
	float *gate;          /* (n, n_routed) router logits */
	float *route_scratch; /* (2 * n_routed) */
	int *expert_ids;      /* (n, top_k) */
	float *expert_w;      /* (n, top_k) */
	float *expert_y;      /* (n, top_k, dim) */
	int *entry_buf;       /* (n) batch indices grouped by sequence */
	struct fwd_group *groups; /* [n] */
	int n_groups;

	int n_threads;
	int thr_len;          /* positions the per-thread scratch holds */
	struct fwd_thread *thr; /* [n_threads] */

	struct hmoe_forward_stats stats;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int hmoe_attn_parse(const char *s, enum hmoe_attn *out)
{
	static const char *const names[] = { "auto", "naive", "absorb" };

	for (int i = 0; i < 3; i++)
		if (!strcmp(s, names[i])) {
			*out = (enum hmoe_attn)i;
			return 0;
		}
	return hmoe_err(HMOE_EINPUT, "attention form '%s': expected auto, naive or absorb", s);
}

const char *hmoe_attn_name(enum hmoe_attn a)
{
	return a == HMOE_ATTN_NAIVE ? "naive" : a == HMOE_ATTN_ABSORB ? "absorb" : "auto";
}

/* ---- lifetime ---- */

static int check_linear(const struct hmoe_linear *l, int layer, const char *name, int out,
			int in)
{
	if (!l->w)
		return hmoe_err(HMOE_EINPUT, "layer %d %s: fp32 weights not loaded "
				"(load the model with HMOE_LOAD_F32)", layer, name);
	if (l->out != out || l->in != in)
		return hmoe_err(HMOE_EINPUT, "layer %d %s: shape (%d, %d), config implies (%d, %d)",
				layer, name, l->out, l->in, out, in);
	return 0;
}

static int check_mlp(const struct hmoe_mlp *p, int layer, const char *name, int inter, int dim)
{
	char what[64];
	int ret;

	snprintf(what, sizeof(what), "%s.w1", name);
	if ((ret = check_linear(&p->w1, layer, what, inter, dim)))
		return ret;
	snprintf(what, sizeof(what), "%s.w3", name);
	if ((ret = check_linear(&p->w3, layer, what, inter, dim)))
		return ret;
	snprintf(what, sizeof(what), "%s.w2", name);
	return check_linear(&p->w2, layer, what, dim, inter);
}

static int check_model(const struct hmoe_model *m)
{
	const struct hmoe_config *c = &m->cfg;
	int H = c->num_attention_heads, qk = hmoe_config_qk_head_dim(c);
	int ret;

	if (H <= 0 || c->hidden_size <= 0 || c->kv_lora_rank <= 0 || c->qk_rope_head_dim <= 0 ||
	    c->qk_rope_head_dim % 2 || c->v_head_dim <= 0 || c->vocab_size <= 0)
		return hmoe_err(HMOE_EINPUT, "model config: impossible attention sizes (heads %d, "
				"kv_lora_rank %d, qk_rope_head_dim %d, v_head_dim %d)", H,
				c->kv_lora_rank, c->qk_rope_head_dim, c->v_head_dim);
	if (!m->embed || !m->norm)
		return hmoe_err(HMOE_EINPUT, "model: fp32 embedding / final norm not loaded");
	if ((ret = check_linear(&m->head, -1, "lm_head", c->vocab_size, c->hidden_size)))
		return ret;
	for (int l = 0; l < c->num_hidden_layers; l++) {
		const struct hmoe_layer *L = &m->layers[l];

		if (!L->attn_norm || !L->ffn_norm || !L->kv_norm || (c->q_lora_rank && !L->q_norm))
			return hmoe_err(HMOE_EINPUT, "layer %d: fp32 norm weights not loaded", l);
		if (c->q_lora_rank) {
			if ((ret = check_linear(&L->wq_a, l, "q_a_proj", c->q_lora_rank,
						c->hidden_size)) ||
			    (ret = check_linear(&L->wq_b, l, "q_b_proj", H * qk, c->q_lora_rank)))
				return ret;
		} else if ((ret = check_linear(&L->wq_b, l, "q_proj", H * qk, c->hidden_size))) {
			return ret;
		}
		if ((ret = check_linear(&L->wkv_a, l, "kv_a_proj_with_mqa",
					c->kv_lora_rank + c->qk_rope_head_dim, c->hidden_size)) ||
		    (ret = check_linear(&L->wkv_b, l, "kv_b_proj",
					H * (c->qk_nope_head_dim + c->v_head_dim), c->kv_lora_rank)) ||
		    (ret = check_linear(&L->wo, l, "o_proj", c->hidden_size, H * c->v_head_dim)))
			return ret;
		if (!L->is_moe) {
			if ((ret = check_mlp(&L->mlp, l, "mlp", c->intermediate_size, c->hidden_size)))
				return ret;
			continue;
		}
		if (!L->gate)
			return hmoe_err(HMOE_EINPUT, "layer %d mlp.gate: fp32 weights not loaded", l);
		if (L->has_shared &&
		    (ret = check_mlp(&L->shared, l, "mlp.shared_experts",
				     c->n_shared_experts * c->moe_intermediate_size, c->hidden_size)))
			return ret;
	}
	if (c->n_routed_experts > 0) {
		int groups = c->n_group > 1 ? c->n_group : 1;

		if (c->num_experts_per_tok <= 0 || c->num_experts_per_tok > c->n_routed_experts ||
		    c->n_routed_experts % groups ||
		    (groups > 1 && (c->topk_group <= 0 || c->topk_group > groups ||
				    c->topk_group * (c->n_routed_experts / groups) <
					    c->num_experts_per_tok)))
			return hmoe_err(HMOE_EINPUT, "model config: impossible routing (%d experts, "
					"top %d, %d groups, keep %d)", c->n_routed_experts,
					c->num_experts_per_tok, c->n_group, c->topk_group);
	}
	return 0;
}

static void free_threads(struct hmoe_forward *f)
{
	if (!f->thr)
		return;
	for (int t = 0; t < f->n_threads; t++) {
		free(f->thr[t].k);
		free(f->thr[t].v);
		free(f->thr[t].scores);
		free(f->thr[t].q_lat);
		free(f->thr[t].o_lat);
	}
	memset(f->thr, 0, (size_t)f->n_threads * sizeof(*f->thr));
	f->thr_len = 0;
}

static void free_tokens(struct hmoe_forward *f)
{
	free(f->x);
	free(f->xn);
	free(f->q_a);
	free(f->q);
	free(f->kv_a);
	free(f->att);
	free(f->out);
	free(f->shared);
	free(f->mlp_g);
	free(f->mlp_u);
	free(f->gate);
	free(f->expert_ids);
	free(f->expert_w);
	free(f->expert_y);
	free(f->entry_buf);
	free(f->groups);
	f->tok_cap = 0;
}

void hmoe_forward_free(struct hmoe_forward *f)
{
	if (!f)
		return;
	free_tokens(f);
	free_threads(f);
	free(f->thr);
	free(f->route_scratch);
	free(f->freqs);
	free(f);
}

int hmoe_forward_create(struct hmoe_forward **out, const struct hmoe_model *m,
			struct hmoe_expert_backend *experts, struct hmoe_pool *pool)
{
	const struct hmoe_config *c = &m->cfg;
	struct hmoe_forward *f;
	int has_moe = 0, shared_inter = c->n_shared_experts * c->moe_intermediate_size;
	int ret;

	if ((ret = check_model(m)))
		return ret;
	for (int l = 0; l < c->num_hidden_layers; l++)
		has_moe |= m->layers[l].is_moe;
	if (has_moe && !experts)
		return hmoe_err(HMOE_EINPUT, "forward: the model has MoE layers but no expert "
				"backend was given");
	f = calloc(1, sizeof(*f));
	if (!f)
		return hmoe_err(HMOE_ENOMEM, "forward: out of memory");
	f->m = m;
	f->cfg = c;
	f->experts = experts;
	f->pool = pool;
	f->n_heads = c->num_attention_heads;
	f->nope = c->qk_nope_head_dim;
	f->rope = c->qk_rope_head_dim;
	f->qk = f->nope + f->rope;
	f->vdim = c->v_head_dim;
	f->kv_lora = c->kv_lora_rank;
	f->q_lora = c->q_lora_rank;
	f->dim = c->hidden_size;
	f->mlp_inter = c->intermediate_size > shared_inter ? c->intermediate_size : shared_inter;
	f->softmax_scale = hmoe_ops_softmax_scale(c);
	f->n_threads = hmoe_pool_threads(pool);
	f->freqs = malloc((size_t)(f->rope / 2) * sizeof(float));
	f->thr = calloc((size_t)f->n_threads, sizeof(*f->thr));
	f->route_scratch = malloc((size_t)(2 * (c->n_routed_experts + 1)) * sizeof(float));
	if (!f->freqs || !f->thr || !f->route_scratch) {
		hmoe_forward_free(f);
		return hmoe_err(HMOE_ENOMEM, "forward: out of memory");
	}
	hmoe_ops_rope_freqs(c, f->freqs);
	hmoe_ops(); /* pick the kernel table now, before workers read it */
	*out = f;
	return 0;
}

void hmoe_forward_set_attn(struct hmoe_forward *f, enum hmoe_attn mode)
{
	f->attn = mode;
}

const struct hmoe_forward_stats *hmoe_forward_stats(const struct hmoe_forward *f)
{
	return &f->stats;
}

static float *alloc_f(size_t n)
{
	return malloc((n ? n : 1) * sizeof(float));
}

/* Grows the token-sized scratch to hold n tokens. */
static int reserve_tokens(struct hmoe_forward *f, int n)
{
	const struct hmoe_config *c = f->cfg;
	size_t N = (size_t)n, topk = (size_t)(c->num_experts_per_tok > 0 ? c->num_experts_per_tok : 0);

	if (n <= f->tok_cap)
		return 0;
	free_tokens(f);
	f->x = alloc_f(N * f->dim);
	f->xn = alloc_f(N * f->dim);
	f->q_a = alloc_f(N * (size_t)f->q_lora);
	f->q = alloc_f(N * f->n_heads * f->qk);
	f->kv_a = alloc_f(N * (f->kv_lora + f->rope));
	f->att = alloc_f(N * f->n_heads * f->vdim);
	f->out = alloc_f(N * f->dim);
	f->shared = alloc_f(N * f->dim);
	f->mlp_g = alloc_f(N * f->mlp_inter);
	f->mlp_u = alloc_f(N * f->mlp_inter);
	f->gate = alloc_f(N * (size_t)c->n_routed_experts);
	f->expert_ids = malloc((N * topk + 1) * sizeof(int));
	f->expert_w = alloc_f(N * topk);
	f->expert_y = alloc_f(N * topk * f->dim);
	f->entry_buf = malloc(N * sizeof(int));
	f->groups = calloc(N, sizeof(*f->groups));
	if (!f->x || !f->xn || !f->q_a || !f->q || !f->kv_a || !f->att || !f->out || !f->shared || !f->mlp_g ||
	    !f->mlp_u || !f->gate || !f->expert_ids || !f->expert_w || !f->expert_y ||
	    !f->entry_buf || !f->groups) {
		free_tokens(f);
		return hmoe_err(HMOE_ENOMEM, "forward: out of memory for a batch of %d tokens", n);
	}
	f->tok_cap = n;
	return 0;
}

/* Grows the per-thread attention scratch to sequences of len positions. */
static int reserve_threads(struct hmoe_forward *f, int len)
{
	if (len <= f->thr_len)
		return 0;
	free_threads(f);
	for (int t = 0; t < f->n_threads; t++) {
		struct fwd_thread *th = &f->thr[t];

		th->k = alloc_f((size_t)len * f->qk);
		th->v = alloc_f((size_t)len * f->vdim);
		th->scores = alloc_f((size_t)len);
		th->q_lat = alloc_f((size_t)(f->kv_lora + f->rope));
		th->o_lat = alloc_f((size_t)f->kv_lora);
		if (!th->k || !th->v || !th->scores || !th->q_lat || !th->o_lat) {
			free_threads(f);
			return hmoe_err(HMOE_ENOMEM, "forward: out of memory for attention over %d "
					"positions", len);
		}
	}
	f->thr_len = len;
	return 0;
}

/* ---- routing and the MoE combine ---- */

/* Index of the largest v[i] over i in [0, n) with v[i] not yet taken; ties: lowest i. */
static int argmax_free(const float *v, const unsigned char *taken, int n)
{
	int best = -1;

	for (int i = 0; i < n; i++)
		if (!taken[i] && (best < 0 || v[i] > v[best]))
			best = i;
	return best;
}

void hmoe_forward_route(const struct hmoe_config *cfg, const float *logits,
			const float *bias, int *ids, float *weights, float *scratch)
{
	int E = cfg->n_routed_experts, K = cfg->num_experts_per_tok;
	int G = cfg->n_group > 1 ? cfg->n_group : 1, per = E / G;
	float *score = scratch;       /* (E) unbiased scores: they weight the experts */
	float *sel = scratch + E;     /* (E) selection scores: score + bias, masked */
	unsigned char taken[E > G ? E : G];
	float gscore[G];
	float sum = 0.0f;

	if (cfg->scoring_func == HMOE_SCORE_SOFTMAX) {
		memcpy(score, logits, (size_t)E * sizeof(float));
		hmoe_ops_softmax(score, E);
	} else {
		for (int e = 0; e < E; e++)
			score[e] = 1.0f / (1.0f + expf(-logits[e]));
	}
	for (int e = 0; e < E; e++)
		sel[e] = bias ? score[e] + bias[e] : score[e];

	if (G > 1) {
		/* group score: sum of its top-2 selection scores (max when there is no bias,
		 * as model.py), keep the topk_group best groups, mask the rest with -inf */
		for (int g = 0; g < G; g++) {
			const float *s = sel + g * per;
			float a = -INFINITY, b = -INFINITY;

			for (int i = 0; i < per; i++) {
				if (s[i] > a) {
					b = a;
					a = s[i];
				} else if (s[i] > b) {
					b = s[i];
				}
			}
			gscore[g] = bias && per > 1 ? a + b : a;
		}
		memset(taken, 0, (size_t)G);
		for (int k = 0; k < cfg->topk_group; k++)
			taken[argmax_free(gscore, taken, G)] = 1;
		for (int g = 0; g < G; g++)
			if (!taken[g])
				for (int i = 0; i < per; i++)
					sel[g * per + i] = -INFINITY;
	}

	memset(taken, 0, (size_t)E);
	for (int k = 0; k < K; k++)
		taken[argmax_free(sel, taken, E)] = 1;
	for (int e = 0, k = 0; e < E; e++)
		if (taken[e])
			ids[k++] = e;
	for (int k = 0; k < K; k++) {
		weights[k] = score[ids[k]];
		sum += weights[k];
	}
	for (int k = 0; k < K; k++) {
		if (cfg->norm_topk_prob)
			weights[k] /= sum;
		weights[k] *= cfg->routed_scaling_factor;
	}
}

void hmoe_forward_moe_combine(float *y, const float *expert_out, const int *ids,
			      const float *weights, int top_k, int dim)
{
	(void)ids; /* ascending by contract: slot order is expert order */
	for (int d = 0; d < dim; d++)
		y[d] = 0.0f;
	for (int s = 0; s < top_k; s++) {
		const float *e = expert_out + (size_t)s * (size_t)dim;

		for (int d = 0; d < dim; d++)
			y[d] += e[d] * weights[s];
	}
}

/* ---- layer blocks ---- */

static void rmsnorm_rows(float *y, const float *x, const float *w, int n, int dim, float eps)
{
	for (int t = 0; t < n; t++)
		hmoe_ops_rmsnorm(y + (size_t)t * dim, x + (size_t)t * dim, w, dim, eps);
}

static int64_t linear_bytes(const struct hmoe_linear *l)
{
	return (int64_t)l->out * l->in * (int64_t)sizeof(float);
}

/* One attention work item: one head of one sequence group. */
struct attn_job {
	struct hmoe_forward *f;
	const struct hmoe_layer *L;
	const struct hmoe_fwd_token *toks;
	int layer;
};

/* Naive MLA for head h of group g: expand the cached latent of every position through
 * kv_b into this head's k_nope and v, append the shared k_pe, then full 192-wide q.k with
 * a causal mask and softmax-weighted v. */
static void attn_naive(struct attn_job *j, const struct fwd_group *g, int h, int thread)
{
	struct hmoe_forward *f = j->f;
	const struct hmoe_ops_kernels *k = hmoe_ops();
	struct fwd_thread *th = &f->thr[thread];
	const struct hmoe_kv *kv = g->seq;
	int len = g->start + g->n_new;
	int per_head = f->nope + f->vdim;
	const float *w_uk = j->L->wkv_b.w + (size_t)h * per_head * f->kv_lora; /* (nope, kv_lora) */
	const float *w_uv = w_uk + (size_t)f->nope * f->kv_lora;               /* (v, kv_lora) */
	const float *cache = hmoe_kv_row(kv, j->layer, 0);                      /* (len, width) */

	/* k[t] = [W_UK c_t | k_pe_t], v[t] = W_UV c_t */
	k->matmul_rows(th->k, f->qk, cache, kv->width, w_uk, len, f->kv_lora, 0, f->nope);
	k->matmul_rows(th->v, f->vdim, cache, kv->width, w_uv, len, f->kv_lora, 0, f->vdim);
	for (int t = 0; t < len; t++)
		memcpy(th->k + (size_t)t * f->qk + f->nope,
		       cache + (size_t)t * kv->width + f->kv_lora, (size_t)f->rope * sizeof(float));

	for (int i = 0; i < g->n_new; i++) {
		int e = g->entries[i], upto = g->start + i + 1; /* causal: positions [0, pos] */
		const float *q = f->q + ((size_t)e * f->n_heads + h) * f->qk;
		float *o = f->att + ((size_t)e * f->n_heads + h) * f->vdim;

		k->matmul_rows(th->scores, 1, q, f->qk, th->k, 1, f->qk, 0, upto);
		for (int t = 0; t < upto; t++)
			th->scores[t] *= f->softmax_scale;
		hmoe_ops_softmax(th->scores, upto);
		memset(o, 0, (size_t)f->vdim * sizeof(float));
		for (int t = 0; t < upto; t++)
			k->axpy(o, th->scores[t], th->v + (size_t)t * f->vdim, f->vdim);
	}
}

/* Absorbed MLA for head h of group g: q_lat = [q_nope W_UK | q_pe] scores directly
 * against the cached rows [c | k_pe]; the latent output goes through W_UV. */
static void attn_absorb(struct attn_job *j, const struct fwd_group *g, int h, int thread)
{
	struct hmoe_forward *f = j->f;
	const struct hmoe_ops_kernels *k = hmoe_ops();
	struct fwd_thread *th = &f->thr[thread];
	const struct hmoe_kv *kv = g->seq;
	int per_head = f->nope + f->vdim;
	const float *w_uk = j->L->wkv_b.w + (size_t)h * per_head * f->kv_lora; /* (nope, kv_lora) */
	const float *w_uv = w_uk + (size_t)f->nope * f->kv_lora;               /* (v, kv_lora) */
	const float *cache = hmoe_kv_row(kv, j->layer, 0);

	for (int i = 0; i < g->n_new; i++) {
		int e = g->entries[i], upto = g->start + i + 1;
		const float *q = f->q + ((size_t)e * f->n_heads + h) * f->qk;
		float *o = f->att + ((size_t)e * f->n_heads + h) * f->vdim;

		memset(th->q_lat, 0, (size_t)f->kv_lora * sizeof(float));
		for (int d = 0; d < f->nope; d++)
			k->axpy(th->q_lat, q[d], w_uk + (size_t)d * f->kv_lora, f->kv_lora);
		memcpy(th->q_lat + f->kv_lora, q + f->nope, (size_t)f->rope * sizeof(float));

		k->matmul_rows(th->scores, 1, th->q_lat, kv->width, cache, 1, kv->width, 0, upto);
		for (int t = 0; t < upto; t++)
			th->scores[t] *= f->softmax_scale;
		hmoe_ops_softmax(th->scores, upto);
		memset(th->o_lat, 0, (size_t)f->kv_lora * sizeof(float));
		for (int t = 0; t < upto; t++)
			k->axpy(th->o_lat, th->scores[t], cache + (size_t)t * kv->width, f->kv_lora);
		k->matmul_rows(o, f->vdim, th->o_lat, f->kv_lora, w_uv, 1, f->kv_lora, 0, f->vdim);
	}
}

static void attn_item(void *arg, long i, int thread)
{
	struct attn_job *j = arg;
	const struct fwd_group *g = &j->f->groups[i / j->f->n_heads];
	int h = (int)(i % j->f->n_heads);

	if (g->naive)
		attn_naive(j, g, h, thread);
	else
		attn_absorb(j, g, h, thread);
}

/* f->out (n, dim) = MLA(f->xn) for every batch entry; also writes the cache rows. */
static void mla(struct hmoe_forward *f, const struct hmoe_fwd_token *toks, int n, int layer)
{
	const struct hmoe_config *c = f->cfg;
	const struct hmoe_layer *L = &f->m->layers[layer];
	int width = f->kv_lora + f->rope;
	struct attn_job job = { f, L, toks, layer };

	if (f->q_lora) {
		hmoe_ops_matmul_par(f->pool, f->q_a, f->xn, L->wq_a.w, n, f->dim, f->q_lora);
		rmsnorm_rows(f->q_a, f->q_a, L->q_norm, n, f->q_lora, c->rms_norm_eps);
		hmoe_ops_matmul_par(f->pool, f->q, f->q_a, L->wq_b.w, n, f->q_lora,
				    f->n_heads * f->qk);
		f->stats.weight_bytes += linear_bytes(&L->wq_a);
	} else {
		hmoe_ops_matmul_par(f->pool, f->q, f->xn, L->wq_b.w, n, f->dim, f->n_heads * f->qk);
	}
	hmoe_ops_matmul_par(f->pool, f->kv_a, f->xn, L->wkv_a.w, n, f->dim, width);
	f->stats.weight_bytes += linear_bytes(&L->wq_b) + linear_bytes(&L->wkv_a) +
				 linear_bytes(&L->wkv_b) + linear_bytes(&L->wo);

	for (int e = 0; e < n; e++) {
		const float *kva = f->kv_a + (size_t)e * width;
		float *row = hmoe_kv_row(toks[e].seq, layer, toks[e].pos);

		hmoe_ops_rmsnorm(row, kva, L->kv_norm, f->kv_lora, c->rms_norm_eps);
		memcpy(row + f->kv_lora, kva + f->kv_lora, (size_t)f->rope * sizeof(float));
		hmoe_ops_rope(row + f->kv_lora, f->rope, toks[e].pos, f->freqs);
		for (int h = 0; h < f->n_heads; h++)
			hmoe_ops_rope(f->q + ((size_t)e * f->n_heads + h) * f->qk + f->nope, f->rope,
				      toks[e].pos, f->freqs);
	}
	for (int g = 0; g < f->n_groups; g++)
		f->stats.kv_bytes += (int64_t)(f->groups[g].start + f->groups[g].n_new) * width *
				     (int64_t)sizeof(float);

	hmoe_pool_run(f->pool, (long)f->n_groups * f->n_heads, attn_item, &job);
	hmoe_ops_matmul_par(f->pool, f->out, f->att, L->wo.w, n, f->n_heads * f->vdim, f->dim);
}

/* out (n, dim) = w2(silu(w1 x) * w3 x) over f->xn. */
static void mlp(struct hmoe_forward *f, const struct hmoe_mlp *p, int n, float *out)
{
	int inter = p->w1.out;

	hmoe_ops_matmul_par(f->pool, f->mlp_g, f->xn, p->w1.w, n, f->dim, inter);
	hmoe_ops_matmul_par(f->pool, f->mlp_u, f->xn, p->w3.w, n, f->dim, inter);
	for (int t = 0; t < n; t++)
		hmoe_ops_silu_mul(f->mlp_g + (size_t)t * inter, f->mlp_u + (size_t)t * inter, inter);
	hmoe_ops_matmul_par(f->pool, out, f->mlp_g, p->w2.w, n, inter, f->dim);
	f->stats.weight_bytes += linear_bytes(&p->w1) + linear_bytes(&p->w3) + linear_bytes(&p->w2);
}

/* f->out (n, dim) = routed experts (combined) + shared expert, over f->xn. */
static int moe(struct hmoe_forward *f, int n, int layer)
{
	const struct hmoe_config *c = f->cfg;
	const struct hmoe_layer *L = &f->m->layers[layer];
	int E = c->n_routed_experts, K = c->num_experts_per_tok;
	struct hmoe_expert_batch batch = {
		.layer = layer, .n_tokens = n, .top_k = K, .x = f->xn,
		.expert_ids = f->expert_ids, .y = f->expert_y,
	};
	unsigned char used[E];
	int ret;

	hmoe_ops_matmul_par(f->pool, f->gate, f->xn, L->gate, n, f->dim, E);
	f->stats.weight_bytes += (int64_t)E * f->dim * (int64_t)sizeof(float);
	memset(used, 0, sizeof(used));
	for (int t = 0; t < n; t++) {
		hmoe_forward_route(c, f->gate + (size_t)t * E, L->gate_bias,
				   f->expert_ids + (size_t)t * K, f->expert_w + (size_t)t * K,
				   f->route_scratch);
		for (int s = 0; s < K; s++)
			used[f->expert_ids[(size_t)t * K + s]] = 1;
	}
	for (int e = 0; e < E; e++)
		if (used[e])
			f->stats.weight_bytes += 3 * linear_bytes(&L->experts[e].w1);

	ret = f->experts->ops->run(f->experts, &batch);
	if (ret)
		return hmoe_err_ctx(ret, "layer %d experts (%s)", layer, f->experts->ops->name);

	/* model.py: (sum of weighted routed outputs) + shared(x) */
	if (L->has_shared)
		mlp(f, &L->shared, n, f->shared);
	for (int t = 0; t < n; t++) {
		float *y = f->out + (size_t)t * f->dim;

		hmoe_forward_moe_combine(y, f->expert_y + (size_t)t * K * f->dim,
					 f->expert_ids + (size_t)t * K, f->expert_w + (size_t)t * K,
					 K, f->dim);
		if (L->has_shared)
			for (int d = 0; d < f->dim; d++)
				y[d] += f->shared[(size_t)t * f->dim + d];
	}
	return 0;
}

/* ---- the batch driver ---- */

/* Validates the batch and groups its entries by sequence. */
static int plan_batch(struct hmoe_forward *f, const struct hmoe_fwd_token *toks, int n)
{
	const struct hmoe_config *c = f->cfg;
	int used = 0, max_len = 0, ret;

	f->n_groups = 0;
	for (int e = 0; e < n; e++) {
		const struct hmoe_fwd_token *tk = &toks[e];
		struct fwd_group *g = NULL;

		if (!tk->seq)
			return hmoe_err(HMOE_EINPUT, "batch entry %d: no sequence", e);
		if (tk->token < 0 || tk->token >= c->vocab_size)
			return hmoe_err(HMOE_EINPUT, "batch entry %d: token id %d outside the "
					"vocabulary [0, %d)", e, tk->token, c->vocab_size);
		if (tk->seq->n_layers != c->num_hidden_layers || tk->seq->kv_lora != f->kv_lora ||
		    tk->seq->rope_dim != f->rope)
			return hmoe_err(HMOE_EINPUT, "batch entry %d: KV cache made for another model "
					"(%d layers, width %d)", e, tk->seq->n_layers, tk->seq->width);
		for (int i = 0; i < f->n_groups; i++)
			if (f->groups[i].seq == tk->seq)
				g = &f->groups[i];
		if (!g) {
			g = &f->groups[f->n_groups++];
			g->seq = tk->seq;
			g->start = tk->seq->len;
			g->n_new = 0;
		}
		if (tk->pos != g->start + g->n_new)
			return hmoe_err(HMOE_EINPUT, "batch entry %d: position %d, but its sequence "
					"continues at position %d", e, tk->pos, g->start + g->n_new);
		g->n_new++;
	}
	/* entry lists, in position order, packed into entry_buf */
	for (int i = 0; i < f->n_groups; i++) {
		struct fwd_group *g = &f->groups[i];
		int k = 0;

		g->entries = f->entry_buf + used;
		for (int e = 0; e < n; e++)
			if (toks[e].seq == g->seq)
				g->entries[k++] = e;
		used += g->n_new;
		g->naive = f->attn == HMOE_ATTN_NAIVE || (f->attn == HMOE_ATTN_AUTO && g->n_new > 1);
		if ((ret = hmoe_kv_reserve(g->seq, g->start + g->n_new)))
			return hmoe_err_ctx(ret, "batch entry %d", g->entries[0]);
		if (g->start + g->n_new > max_len)
			max_len = g->start + g->n_new;
	}
	return reserve_threads(f, max_len);
}

int hmoe_forward(struct hmoe_forward *f, const struct hmoe_fwd_token *toks, int n,
		 float *logits)
{
	const struct hmoe_config *c = f->cfg;
	const struct hmoe_model *m = f->m;
	int dim = f->dim, n_logits = 0, ret;
	double t0;

	memset(&f->stats, 0, sizeof(f->stats));
	if (n <= 0)
		return n < 0 ? hmoe_err(HMOE_EINPUT, "forward: batch of %d tokens", n) : 0;
	for (int e = 0; e < n; e++)
		n_logits += toks[e].want_logits != 0;
	if (n_logits && !logits)
		return hmoe_err(HMOE_EINPUT, "forward: %d entries want logits but no buffer given",
				n_logits);
	if ((ret = reserve_tokens(f, n)) || (ret = plan_batch(f, toks, n)))
		return ret;

	for (int e = 0; e < n; e++)
		memcpy(f->x + (size_t)e * dim, m->embed + (size_t)toks[e].token * dim,
		       (size_t)dim * sizeof(float));
	f->stats.weight_bytes += (int64_t)n * dim * (int64_t)sizeof(float);

	for (int l = 0; l < c->num_hidden_layers; l++) {
		const struct hmoe_layer *L = &m->layers[l];

		t0 = now_s();
		rmsnorm_rows(f->xn, f->x, L->attn_norm, n, dim, c->rms_norm_eps);
		mla(f, toks, n, l);
		for (size_t i = 0; i < (size_t)n * dim; i++)
			f->x[i] += f->out[i];
		f->stats.attn_s += now_s() - t0;

		t0 = now_s();
		rmsnorm_rows(f->xn, f->x, L->ffn_norm, n, dim, c->rms_norm_eps);
		if (L->is_moe) {
			if ((ret = moe(f, n, l)))
				return ret;
			f->stats.moe_s += now_s() - t0;
		} else {
			mlp(f, &L->mlp, n, f->out);
			f->stats.dense_s += now_s() - t0;
		}
		for (size_t i = 0; i < (size_t)n * dim; i++)
			f->x[i] += f->out[i];
	}

	t0 = now_s();
	if (n_logits) {
		int k = 0;

		for (int e = 0; e < n; e++)
			if (toks[e].want_logits)
				hmoe_ops_rmsnorm(f->xn + (size_t)k++ * dim, f->x + (size_t)e * dim,
						 m->norm, dim, c->rms_norm_eps);
		hmoe_ops_matmul_par(f->pool, logits, f->xn, m->head.w, n_logits, dim,
				    c->vocab_size);
		f->stats.weight_bytes += linear_bytes(&m->head);
	}
	f->stats.head_s = now_s() - t0;

	for (int i = 0; i < f->n_groups; i++)
		f->groups[i].seq->len = f->groups[i].start + f->groups[i].n_new;
	f->stats.n_tokens = n;
	f->stats.n_logits = n_logits;
	return 0;
}

int hmoe_forward_seq(struct hmoe_forward *f, struct hmoe_kv *seq, const int *tokens, int n,
		     int last_only, float *logits)
{
	struct hmoe_fwd_token *toks;
	int ret;

	if (n <= 0)
		return hmoe_err(HMOE_EINPUT, "forward: no tokens to feed");
	toks = calloc((size_t)n, sizeof(*toks));
	if (!toks)
		return hmoe_err(HMOE_ENOMEM, "forward: out of memory");
	for (int i = 0; i < n; i++) {
		toks[i].seq = seq;
		toks[i].token = tokens[i];
		toks[i].pos = seq->len + i;
		toks[i].want_logits = !last_only || i == n - 1;
	}
	ret = hmoe_forward(f, toks, n, logits);
	free(toks);
	return ret;
}
