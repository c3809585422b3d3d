/* hmoe_forward: fp32 CPU reference forward pass (see hmoe_forward.h, docs/forward.md).
 *
 * Sections: types -> lifetime -> routing/combine -> layer blocks (MLA, MLP, MoE) ->
 * the batch driver (micro-batch pipeline).
 *
 * Rows: a batch's entries are laid out in "run order": micro-batch 0's sequences first,
 * each sequence's new tokens together in position order. Every token-sized buffer is
 * indexed by that row, and micro-batch m owns rows [lo, hi) of all of them, so two
 * micro-batches never share a buffer row (the expert backend reads one's xn rows and
 * writes its expert_y rows while this thread works on the other's). */
#include "hmoe_forward.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmoe_clock.h"
#include "hmoe_err.h"
#include "hmoe_ops.h"
#include "hmoe_pool.h"

/* ---- types ---- */

/* The new tokens of one sequence in the current batch. */
struct fwd_group {
	struct hmoe_kv *seq;
	int start;            /* seq->len before the batch: first new position */
	int n_new;            /* new tokens */
	int row;              /* their rows: [row, row + n_new), in position order */
	int first_entry;      /* batch index of its first entry (error messages) */
	int naive;            /* attention form chosen for this group */
};

/* One micro-batch: whole sequences, rows [lo, hi), groups [g_lo, g_hi). */
struct fwd_micro {
	int lo, hi;
	int g_lo, g_hi;
	int pending;          /* MoE layer whose routed experts are in flight, or -1 */
	int ticket;           /* that submission's ticket */
	struct hmoe_expert_batch batch; /* that submission; the backend holds it until wait */
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
	int micro_batches;    /* asked for: 1 or 2 */
	int async;            /* the expert backend really overlaps (submit/wait) */

	int n_heads, nope, rope, qk, vdim, kv_lora, q_lora, dim;
	int mlp_inter;        /* max(intermediate_size, shared inter) */
	float *freqs;         /* (rope / 2) RoPE frequencies, YaRN-blended when enabled */
	float softmax_scale;

	/* token-sized scratch, for up to tok_cap tokens, rows in run order */
	int tok_cap;
	struct hmoe_fwd_token *rows; /* (n) the batch's entries in run order */
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
	int *row_of;          /* (n) run-order row of each batch entry */
	struct fwd_group *groups; /* [n], micro-batch 0's first */
	int n_groups;
	struct fwd_micro micro[HMOE_FWD_MAX_MICRO];
	int n_micro;          /* micro-batches of the current batch */
	int n_in_flight;      /* asynchronous expert submissions not yet waited */

	int n_threads;
	int thr_len;          /* positions the per-thread scratch holds */
	struct fwd_thread *thr; /* [n_threads] */

	struct hmoe_forward_stats stats;
};

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
	free(f->rows);
	free(f->row_of);
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
	f->micro_batches = 1;
	f->async = experts && hmoe_expert_is_async(experts);
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

int hmoe_forward_set_micro_batches(struct hmoe_forward *f, int n)
{
	if (n < 1 || n > HMOE_FWD_MAX_MICRO)
		return hmoe_err(HMOE_EINPUT, "micro-batches %d: expected 1 or %d", n,
				HMOE_FWD_MAX_MICRO);
	f->micro_batches = n;
	return 0;
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
	f->rows = calloc(N, sizeof(*f->rows));
	f->row_of = malloc(N * sizeof(int));
	f->groups = calloc(N, sizeof(*f->groups));
	if (!f->x || !f->xn || !f->q_a || !f->q || !f->kv_a || !f->att || !f->out || !f->shared || !f->mlp_g ||
	    !f->mlp_u || !f->gate || !f->expert_ids || !f->expert_w || !f->expert_y ||
	    !f->rows || !f->row_of || !f->groups) {
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

/* Wall seconds since t0, added to *phase; also to the overlap when an asynchronous
 * expert batch was in flight during that attention-device work. */
static void account(struct hmoe_forward *f, double t0, int in_flight, double *phase)
{
	double dt = hmoe_now_s() - t0;

	*phase += dt;
	if (in_flight)
		f->stats.overlap_s += dt;
}

/* One attention work item: one head of one sequence group. */
struct attn_job {
	struct hmoe_forward *f;
	const struct hmoe_layer *L;
	int layer;
	int g_lo;             /* the micro-batch's first group */
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
		int r = g->row + i, upto = g->start + i + 1; /* causal: positions [0, pos] */
		const float *q = f->q + ((size_t)r * f->n_heads + h) * f->qk;
		float *o = f->att + ((size_t)r * f->n_heads + h) * f->vdim;

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
		int r = g->row + i, upto = g->start + i + 1;
		const float *q = f->q + ((size_t)r * f->n_heads + h) * f->qk;
		float *o = f->att + ((size_t)r * f->n_heads + h) * f->vdim;

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
	const struct fwd_group *g = &j->f->groups[j->g_lo + i / j->f->n_heads];
	int h = (int)(i % j->f->n_heads);

	if (g->naive)
		attn_naive(j, g, h, thread);
	else
		attn_absorb(j, g, h, thread);
}

/* f->out rows of mb = MLA(f->xn rows of mb); also writes their cache rows. */
static void mla(struct hmoe_forward *f, const struct fwd_micro *mb, int layer)
{
	const struct hmoe_config *c = f->cfg;
	const struct hmoe_layer *L = &f->m->layers[layer];
	int width = f->kv_lora + f->rope, n = mb->hi - mb->lo, HQ = f->n_heads * f->qk;
	size_t lo = (size_t)mb->lo;
	const float *xn = f->xn + lo * f->dim;
	float *q = f->q + lo * HQ, *kv_a = f->kv_a + lo * width;
	struct attn_job job = { f, L, layer, mb->g_lo };

	if (f->q_lora) {
		float *q_a = f->q_a + lo * f->q_lora;

		hmoe_ops_matmul_par(f->pool, q_a, xn, L->wq_a.w, n, f->dim, f->q_lora);
		rmsnorm_rows(q_a, q_a, L->q_norm, n, f->q_lora, c->rms_norm_eps);
		hmoe_ops_matmul_par(f->pool, q, q_a, L->wq_b.w, n, f->q_lora, HQ);
		f->stats.weight_bytes += linear_bytes(&L->wq_a);
	} else {
		hmoe_ops_matmul_par(f->pool, q, xn, L->wq_b.w, n, f->dim, HQ);
	}
	hmoe_ops_matmul_par(f->pool, kv_a, xn, L->wkv_a.w, n, f->dim, width);
	f->stats.weight_bytes += linear_bytes(&L->wq_b) + linear_bytes(&L->wkv_a) +
				 linear_bytes(&L->wkv_b) + linear_bytes(&L->wo);

	for (int r = mb->lo; r < mb->hi; r++) {
		const struct hmoe_fwd_token *tk = &f->rows[r];
		const float *kva = f->kv_a + (size_t)r * width;
		float *row = hmoe_kv_row(tk->seq, layer, tk->pos);

		hmoe_ops_rmsnorm(row, kva, L->kv_norm, f->kv_lora, c->rms_norm_eps);
		memcpy(row + f->kv_lora, kva + f->kv_lora, (size_t)f->rope * sizeof(float));
		hmoe_ops_rope(row + f->kv_lora, f->rope, tk->pos, f->freqs);
		for (int h = 0; h < f->n_heads; h++)
			hmoe_ops_rope(f->q + ((size_t)r * f->n_heads + h) * f->qk + f->nope, f->rope,
				      tk->pos, f->freqs);
	}
	for (int g = mb->g_lo; g < mb->g_hi; g++)
		f->stats.kv_bytes += (int64_t)(f->groups[g].start + f->groups[g].n_new) * width *
				     (int64_t)sizeof(float);

	hmoe_pool_run(f->pool, (long)(mb->g_hi - mb->g_lo) * f->n_heads, attn_item, &job);
	hmoe_ops_matmul_par(f->pool, f->out + lo * f->dim, f->att + lo * f->n_heads * f->vdim,
			    L->wo.w, n, f->n_heads * f->vdim, f->dim);
}

/* out rows of mb (dim each) = w2(silu(w1 x) * w3 x) over f->xn rows of mb. */
static void mlp(struct hmoe_forward *f, const struct hmoe_mlp *p, const struct fwd_micro *mb,
		float *out)
{
	int inter = p->w1.out, n = mb->hi - mb->lo;
	size_t lo = (size_t)mb->lo;
	const float *xn = f->xn + lo * f->dim;
	float *g = f->mlp_g + lo * inter, *u = f->mlp_u + lo * inter;

	hmoe_ops_matmul_par(f->pool, g, xn, p->w1.w, n, f->dim, inter);
	hmoe_ops_matmul_par(f->pool, u, xn, p->w3.w, n, f->dim, inter);
	for (int t = 0; t < n; t++)
		hmoe_ops_silu_mul(g + (size_t)t * inter, u + (size_t)t * inter, inter);
	hmoe_ops_matmul_par(f->pool, out + lo * f->dim, g, p->w2.w, n, inter, f->dim);
	f->stats.weight_bytes += linear_bytes(&p->w1) + linear_bytes(&p->w3) + linear_bytes(&p->w2);
}

/* Starts MoE layer `layer` of mb over its f->xn rows: route, submit the routed experts
 * (the backend holds mb->batch, its xn, expert_ids and expert_y rows until moe_finish),
 * then the shared expert here meanwhile into f->shared. */
static int moe_begin(struct hmoe_forward *f, struct fwd_micro *mb, int layer)
{
	const struct hmoe_config *c = f->cfg;
	const struct hmoe_layer *L = &f->m->layers[layer];
	int E = c->n_routed_experts, K = c->num_experts_per_tok, n = mb->hi - mb->lo;
	size_t lo = (size_t)mb->lo;
	unsigned char used[E];
	double t0 = hmoe_now_s();
	int ret;

	hmoe_ops_matmul_par(f->pool, f->gate + lo * E, f->xn + lo * f->dim, L->gate, n, f->dim, E);
	f->stats.weight_bytes += (int64_t)E * f->dim * (int64_t)sizeof(float);
	memset(used, 0, sizeof(used));
	for (size_t t = lo; t < (size_t)mb->hi; t++) {
		hmoe_forward_route(c, f->gate + t * E, L->gate_bias, f->expert_ids + t * K,
				   f->expert_w + t * K, f->route_scratch);
		for (int s = 0; s < K; s++)
			used[f->expert_ids[t * K + s]] = 1;
	}
	for (int e = 0; e < E; e++)
		if (used[e])
			f->stats.weight_bytes += 3 * linear_bytes(&L->experts[e].w1);
	account(f, t0, f->n_in_flight, &f->stats.moe_s);

	t0 = hmoe_now_s();
	mb->batch = (struct hmoe_expert_batch){
		.layer = layer, .n_tokens = n, .top_k = K, .x = f->xn + lo * f->dim,
		.expert_ids = f->expert_ids + lo * K, .y = f->expert_y + lo * K * f->dim,
	};
	ret = hmoe_expert_submit(f->experts, &mb->batch, &mb->ticket);
	f->stats.expert_submit_s += hmoe_now_s() - t0;
	f->stats.moe_s += hmoe_now_s() - t0;
	if (ret)
		return hmoe_err_ctx(ret, "layer %d experts (%s)", layer, f->experts->ops->name);
	mb->pending = layer;
	f->n_in_flight += f->async;

	/* model.py: (sum of weighted routed outputs) + shared(x) */
	t0 = hmoe_now_s();
	if (L->has_shared)
		mlp(f, &L->shared, mb, f->shared);
	account(f, t0, f->n_in_flight, &f->stats.moe_s);
	return 0;
}

/* Ends mb's pending MoE layer: waits for its routed experts, combines in the fixed order,
 * adds the shared expert, and adds the block to the residual stream. */
static int moe_finish(struct hmoe_forward *f, struct fwd_micro *mb)
{
	const struct hmoe_layer *L = &f->m->layers[mb->pending];
	int K = f->cfg->num_experts_per_tok, dim = f->dim, layer = mb->pending, ret;
	double t0 = hmoe_now_s();

	ret = hmoe_expert_wait(f->experts, mb->ticket);
	f->stats.expert_wait_s += hmoe_now_s() - t0;
	mb->pending = -1;
	f->n_in_flight -= f->async;
	if (ret) {
		f->stats.moe_s += hmoe_now_s() - t0;
		return hmoe_err_ctx(ret, "layer %d experts (%s)", layer, f->experts->ops->name);
	}
	for (size_t t = (size_t)mb->lo; t < (size_t)mb->hi; t++) {
		float *y = f->out + t * dim, *x = f->x + t * dim;

		hmoe_forward_moe_combine(y, f->expert_y + t * K * dim, f->expert_ids + t * K,
					 f->expert_w + t * K, K, dim);
		if (L->has_shared)
			for (int d = 0; d < dim; d++)
				y[d] += f->shared[t * dim + d];
		for (int d = 0; d < dim; d++)
			x[d] += y[d];
	}
	f->stats.moe_s += hmoe_now_s() - t0;
	return 0;
}

/* Attention block of layer l for mb, then its FFN: a dense MLP runs to the end here, an
 * MoE layer is begun (moe_finish completes it later). */
static int layer_run(struct hmoe_forward *f, struct fwd_micro *mb, int l)
{
	const struct hmoe_config *c = f->cfg;
	const struct hmoe_layer *L = &f->m->layers[l];
	size_t lo = (size_t)mb->lo, n = (size_t)(mb->hi - mb->lo), dim = (size_t)f->dim;
	double t0 = hmoe_now_s();

	rmsnorm_rows(f->xn + lo * dim, f->x + lo * dim, L->attn_norm, (int)n, f->dim,
		     c->rms_norm_eps);
	mla(f, mb, l);
	for (size_t i = lo * dim; i < (lo + n) * dim; i++)
		f->x[i] += f->out[i];
	rmsnorm_rows(f->xn + lo * dim, f->x + lo * dim, L->ffn_norm, (int)n, f->dim,
		     c->rms_norm_eps);
	account(f, t0, f->n_in_flight, &f->stats.attn_s);
	if (L->is_moe)
		return moe_begin(f, mb, l);

	t0 = hmoe_now_s();
	mlp(f, &L->mlp, mb, f->out);
	for (size_t i = lo * dim; i < (lo + n) * dim; i++)
		f->x[i] += f->out[i];
	account(f, t0, f->n_in_flight, &f->stats.dense_s);
	return 0;
}

/* Waits every pending submission, oldest first (submission order is (layer, micro-batch)
 * order), so that the backend lets go of our buffers; after an error its results are
 * not used. */
static void drain(struct hmoe_forward *f)
{
	for (;;) {
		struct fwd_micro *oldest = NULL;

		for (int m = 0; m < f->n_micro; m++)
			if (f->micro[m].pending >= 0 &&
			    (!oldest || f->micro[m].pending < oldest->pending))
				oldest = &f->micro[m];
		if (!oldest)
			return;
		(void)hmoe_expert_wait(f->experts, oldest->ticket);
		oldest->pending = -1;
		f->n_in_flight -= f->async;
	}
}

/* ---- the batch driver ---- */

/* Cuts groups [0, n_groups) into the micro-batches: with 2, whole sequences on either
 * side of the cut that balances the token counts best (a single sequence stays whole: its
 * tokens attend to each other, so splitting it would serialise the halves anyway). */
static void plan_micro(struct hmoe_forward *f)
{
	int G = f->n_groups, total = 0, cut = G, best = -1;

	for (int g = 0; g < G; g++)
		total += f->groups[g].n_new;
	if (f->micro_batches > 1 && G > 1) {
		for (int k = 1, left = 0; k < G; k++) {
			int diff;

			left += f->groups[k - 1].n_new;
			diff = abs(total - 2 * left);
			if (best < 0 || diff < best) {
				best = diff;
				cut = k;
			}
		}
	}
	f->n_micro = cut < G ? 2 : 1;
	for (int m = 0; m < f->n_micro; m++) {
		struct fwd_micro *mb = &f->micro[m];

		mb->g_lo = m ? cut : 0;
		mb->g_hi = m || f->n_micro == 1 ? G : cut;
		mb->lo = f->groups[mb->g_lo].row;
		mb->hi = mb->g_hi < G ? f->groups[mb->g_hi].row : total;
		mb->pending = -1;
	}
}

/* Validates the batch, groups its entries by sequence, lays the rows out in run order
 * and cuts the micro-batches. */
static int plan_batch(struct hmoe_forward *f, const struct hmoe_fwd_token *toks, int n)
{
	const struct hmoe_config *c = f->cfg;
	int max_len = 0, row = 0, ret;

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
			g->first_entry = e;
		}
		if (tk->pos != g->start + g->n_new)
			return hmoe_err(HMOE_EINPUT, "batch entry %d: position %d, but its sequence "
					"continues at position %d", e, tk->pos, g->start + g->n_new);
		g->n_new++;
	}
	/* rows: each sequence's tokens together, sequences in order of first appearance */
	for (int i = 0; i < f->n_groups; i++) {
		struct fwd_group *g = &f->groups[i];

		g->row = row;
		row += g->n_new;
		g->naive = f->attn == HMOE_ATTN_NAIVE || (f->attn == HMOE_ATTN_AUTO && g->n_new > 1);
		if ((ret = hmoe_kv_reserve(g->seq, g->start + g->n_new)))
			return hmoe_err_ctx(ret, "batch entry %d", g->first_entry);
		if (g->start + g->n_new > max_len)
			max_len = g->start + g->n_new;
	}
	for (int e = 0; e < n; e++) {
		const struct fwd_group *g = f->groups;

		while (g->seq != toks[e].seq)
			g++;
		f->row_of[e] = g->row + (toks[e].pos - g->start);
		f->rows[f->row_of[e]] = toks[e];
	}
	plan_micro(f);
	return reserve_threads(f, max_len);
}

int hmoe_forward(struct hmoe_forward *f, const struct hmoe_fwd_token *toks, int n,
		 float *logits)
{
	const struct hmoe_config *c = f->cfg;
	const struct hmoe_model *m = f->m;
	int dim = f->dim, n_logits = 0, ret = 0;
	double t0;

	memset(&f->stats, 0, sizeof(f->stats));
	f->n_micro = 0;
	if (n <= 0)
		return n < 0 ? hmoe_err(HMOE_EINPUT, "forward: batch of %d tokens", n) : 0;
	for (int e = 0; e < n; e++)
		n_logits += toks[e].want_logits != 0;
	if (n_logits && !logits)
		return hmoe_err(HMOE_EINPUT, "forward: %d entries want logits but no buffer given",
				n_logits);
	if ((ret = reserve_tokens(f, n)) || (ret = plan_batch(f, toks, n)))
		return ret;

	for (int r = 0; r < n; r++)
		memcpy(f->x + (size_t)r * dim, m->embed + (size_t)f->rows[r].token * dim,
		       (size_t)dim * sizeof(float));
	f->stats.weight_bytes += (int64_t)n * dim * (int64_t)sizeof(float);

	/* The pipeline (docs/runtime.md, "Micro-batch overlap"): micro-batch m first ends
	 * its previous MoE layer (wait, combine), then runs attention and begins the FFN of
	 * layer l. With two micro-batches, one's routed experts are in flight while the
	 * other's attention runs: submissions and waits alternate A, B, A, B, ..., at most
	 * two outstanding, waited in submission order. With one, the shared expert overlaps
	 * its own routed experts. */
	for (int l = 0; l < c->num_hidden_layers && !ret; l++)
		for (int mi = 0; mi < f->n_micro && !ret; mi++) {
			struct fwd_micro *mb = &f->micro[mi];

			if (mb->pending >= 0 && (ret = moe_finish(f, mb)))
				break;
			ret = layer_run(f, mb, l);
		}
	for (int mi = 0; mi < f->n_micro && !ret; mi++)
		if (f->micro[mi].pending >= 0)
			ret = moe_finish(f, &f->micro[mi]);
	if (ret) {
		drain(f);
		return ret;
	}

	t0 = hmoe_now_s();
	if (n_logits) {
		int k = 0;

		for (int e = 0; e < n; e++)
			if (toks[e].want_logits)
				hmoe_ops_rmsnorm(f->xn + (size_t)k++ * dim,
						 f->x + (size_t)f->row_of[e] * dim, m->norm, dim,
						 c->rms_norm_eps);
		hmoe_ops_matmul_par(f->pool, logits, f->xn, m->head.w, n_logits, dim,
				    c->vocab_size);
		f->stats.weight_bytes += linear_bytes(&m->head);
	}
	f->stats.head_s = hmoe_now_s() - t0;

	for (int i = 0; i < f->n_groups; i++)
		f->groups[i].seq->len = f->groups[i].start + f->groups[i].n_new;
	f->stats.n_tokens = n;
	f->stats.n_logits = n_logits;
	f->stats.n_micro = f->n_micro;
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
