/* hmoe_expert_f32: the float routed-expert backend "cpu-f32" (see hmoe_expert.h).
 *
 * y = w2(silu(w1 x) * w3 x) with the model's fp32 weights and the hmoe_ops kernels.
 * The layer's (token, slot) assignments are sorted by expert and cut into blocks of up
 * to BLOCK_TOKENS tokens of one expert, so each weight row is streamed once per block and
 * reused across its tokens. Two parallel phases: (block, rows of w1/w3) items, then
 * (block, rows of w2) items; a decode step with only top_k blocks still spreads over all
 * threads. A token's output depends only on its own activations (hmoe_ops determinism
 * contract), so the result is the same for any blocking, row split or thread count.
 */
#include <stdlib.h>
#include <string.h>

#include "hmoe_err.h"
#include "hmoe_expert.h"
#include "hmoe_ops.h"
#include "hmoe_pool.h"

/* Tokens per expert block: each weight row is streamed once per block and reused across
 * its tokens. */
#define BLOCK_TOKENS 16
/* Work items per thread and phase: enough to balance a decode step, whose top-k experts
 * would otherwise leave threads idle. */
#define ITEMS_PER_THREAD 4

/* Up to BLOCK_TOKENS assignments of one expert, at [first, first + count) of order[]. */
struct f32_block {
	int expert;
	int first;
	int count;
};

struct f32_priv {
	int dim, inter, n_threads;
	int cap;                  /* assignments the arrays below hold */
	int *order;               /* (cap) assignment t * top_k + slot, sorted by expert */
	struct f32_block *blocks; /* (cap) */
	int *count;               /* (n_routed + 1) per-expert counts, then run ends */
	float *x;                 /* (cap, dim) activations gathered in order[] order */
	float *g;                 /* (cap, inter) w1 x, then silu(w1 x) * w3 x */
	float *u;                 /* (cap, inter) w3 x */
	float *y;                 /* (cap, dim) expert outputs in order[] order */
};

static void f32_free_arrays(struct f32_priv *p)
{
	free(p->order);
	free(p->blocks);
	free(p->x);
	free(p->g);
	free(p->u);
	free(p->y);
	p->order = NULL;
	p->blocks = NULL;
	p->x = p->g = p->u = p->y = NULL;
	p->cap = 0;
}

static void f32_fini(struct hmoe_expert_backend *b)
{
	struct f32_priv *p = b->priv;

	if (!p)
		return;
	f32_free_arrays(p);
	free(p->count);
	free(p);
	b->priv = NULL;
}

static int f32_init(struct hmoe_expert_backend *b, const struct hmoe_model *m, const char *arg)
{
	const struct hmoe_config *c = &m->cfg;
	struct f32_priv *p;

	if (arg && *arg)
		return hmoe_err(HMOE_EINPUT, "expert backend cpu-f32: takes no argument (got '%s')",
				arg);
	for (int l = 0; l < c->num_hidden_layers; l++) {
		const struct hmoe_layer *L = &m->layers[l];

		if (!L->is_moe)
			continue;
		for (int e = 0; e < c->n_routed_experts; e++) {
			const struct hmoe_mlp *x = &L->experts[e];

			if (!x->w1.w || !x->w2.w || !x->w3.w)
				return hmoe_err(HMOE_EINPUT, "expert backend cpu-f32: layer %d expert %d "
						"has no fp32 weights (load with HMOE_LOAD_F32)", l, e);
			if (x->w1.out != c->moe_intermediate_size || x->w1.in != c->hidden_size ||
			    x->w3.out != x->w1.out || x->w3.in != x->w1.in ||
			    x->w2.out != c->hidden_size || x->w2.in != c->moe_intermediate_size)
				return hmoe_err(HMOE_EINPUT, "expert backend cpu-f32: layer %d expert %d: "
						"weight shapes do not match the config", l, e);
		}
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return hmoe_err(HMOE_ENOMEM, "expert backend cpu-f32: out of memory");
	p->dim = c->hidden_size;
	p->inter = c->moe_intermediate_size;
	p->n_threads = hmoe_pool_threads(b->pool);
	p->count = calloc((size_t)c->n_routed_experts + 1, sizeof(int));
	if (!p->count) {
		free(p);
		return hmoe_err(HMOE_ENOMEM, "expert backend cpu-f32: out of memory");
	}
	b->priv = p;
	return 0;
}

static int f32_reserve(struct f32_priv *p, int n)
{
	if (n <= p->cap)
		return 0;
	f32_free_arrays(p);
	p->order = malloc((size_t)n * sizeof(int));
	p->blocks = malloc((size_t)n * sizeof(*p->blocks));
	p->x = malloc((size_t)n * p->dim * sizeof(float));
	p->g = malloc((size_t)n * p->inter * sizeof(float));
	p->u = malloc((size_t)n * p->inter * sizeof(float));
	p->y = malloc((size_t)n * p->dim * sizeof(float));
	if (!p->order || !p->blocks || !p->x || !p->g || !p->u || !p->y) {
		f32_free_arrays(p);
		return hmoe_err(HMOE_ENOMEM, "expert backend cpu-f32: out of memory for %d "
				"assignments", n);
	}
	p->cap = n;
	return 0;
}

/* One phase: every block's output rows cut into `chunks` ranges of `rows_per` rows. */
struct f32_job {
	struct f32_priv *p;
	const struct hmoe_layer *L;
	int chunks, rows_per;
};

/* Phase 1 item: rows [r0, r1) of silu(w1 x) * w3 x for one block's tokens. */
static void f32_up(void *arg, long i, int thread)
{
	const struct f32_job *j = arg;
	const struct f32_priv *p = j->p;
	const struct f32_block *bl = &p->blocks[i / j->chunks];
	const struct hmoe_mlp *e = &j->L->experts[bl->expert];
	const struct hmoe_ops_kernels *k = hmoe_ops();
	int r0 = (int)(i % j->chunks) * j->rows_per;
	int r1 = r0 + j->rows_per < p->inter ? r0 + j->rows_per : p->inter;
	const float *x = p->x + (size_t)bl->first * p->dim;
	float *g = p->g + (size_t)bl->first * p->inter, *u = p->u + (size_t)bl->first * p->inter;

	(void)thread;
	if (r0 >= r1)
		return;
	k->matmul_rows(g, p->inter, x, p->dim, e->w1.w, bl->count, p->dim, r0, r1);
	k->matmul_rows(u, p->inter, x, p->dim, e->w3.w, bl->count, p->dim, r0, r1);
	for (int t = 0; t < bl->count; t++)
		hmoe_ops_silu_mul(g + (size_t)t * p->inter + r0, u + (size_t)t * p->inter + r0,
				  r1 - r0);
}

/* Phase 2 item: rows [r0, r1) of w2 h for one block's tokens. */
static void f32_down(void *arg, long i, int thread)
{
	const struct f32_job *j = arg;
	const struct f32_priv *p = j->p;
	const struct f32_block *bl = &p->blocks[i / j->chunks];
	const struct hmoe_mlp *e = &j->L->experts[bl->expert];
	int r0 = (int)(i % j->chunks) * j->rows_per;
	int r1 = r0 + j->rows_per < p->dim ? r0 + j->rows_per : p->dim;

	(void)thread;
	if (r0 >= r1)
		return;
	hmoe_ops()->matmul_rows(p->y + (size_t)bl->first * p->dim, p->dim,
				p->g + (size_t)bl->first * p->inter, p->inter, e->w2.w, bl->count,
				p->inter, r0, r1);
}

/* Splits `rows` output rows so that n_blocks * chunks covers the threads a few times;
 * row ranges are multiples of 4, the kernels' row block. */
static void f32_split(struct f32_job *j, int n_blocks, int rows)
{
	int want = j->p->n_threads * ITEMS_PER_THREAD;
	int chunks = n_blocks >= want ? 1 : (want + n_blocks - 1) / n_blocks;

	j->rows_per = ((rows + chunks - 1) / chunks + 3) & ~3;
	j->chunks = (rows + j->rows_per - 1) / j->rows_per;
}

static int f32_run(struct hmoe_expert_backend *b, const struct hmoe_expert_batch *batch)
{
	const struct hmoe_config *c = &b->model->cfg;
	struct f32_priv *p = b->priv;
	int E = c->n_routed_experts, n = batch->n_tokens * batch->top_k, n_blocks = 0, ret;
	struct f32_job job = { p, &b->model->layers[batch->layer], 0, 0 };

	if (batch->layer < 0 || batch->layer >= c->num_hidden_layers || !job.L->is_moe)
		return hmoe_err(HMOE_EINPUT, "expert backend cpu-f32: layer %d is not an MoE layer",
				batch->layer);
	if ((ret = f32_reserve(p, n)))
		return ret;
	/* counting sort of the assignments by expert, stable in (token, slot) order */
	memset(p->count, 0, (size_t)(E + 1) * sizeof(int));
	for (int a = 0; a < n; a++) {
		int e = batch->expert_ids[a];

		if (e < 0 || e >= E)
			return hmoe_err(HMOE_EINPUT, "expert backend cpu-f32: layer %d assignment %d: "
					"expert %d outside [0, %d)", batch->layer, a, e, E);
		p->count[e + 1]++;
	}
	for (int e = 0; e < E; e++)
		p->count[e + 1] += p->count[e];
	for (int a = 0; a < n; a++)
		p->order[p->count[batch->expert_ids[a]]++] = a;
	/* count[e] is now the end of expert e's run; cut the runs into blocks */
	for (int e = 0, first = 0; e < E; e++) {
		for (int at = first; at < p->count[e]; at += BLOCK_TOKENS) {
			int left = p->count[e] - at;

			p->blocks[n_blocks++] = (struct f32_block){
				e, at, left < BLOCK_TOKENS ? left : BLOCK_TOKENS };
		}
		first = p->count[e];
	}
	for (int a = 0; a < n; a++)
		memcpy(p->x + (size_t)a * p->dim,
		       batch->x + (size_t)(p->order[a] / batch->top_k) * p->dim,
		       (size_t)p->dim * sizeof(float));

	f32_split(&job, n_blocks, p->inter);
	hmoe_pool_run(b->pool, (long)n_blocks * job.chunks, f32_up, &job);
	f32_split(&job, n_blocks, p->dim);
	hmoe_pool_run(b->pool, (long)n_blocks * job.chunks, f32_down, &job);

	for (int a = 0; a < n; a++)
		memcpy(batch->y + (size_t)p->order[a] * p->dim, p->y + (size_t)a * p->dim,
		       (size_t)p->dim * sizeof(float));
	return 0;
}

const struct hmoe_expert_ops hmoe_expert_cpu_f32_ops = {
	.name = "cpu-f32",
	.init = f32_init,
	.run = f32_run,
	.fini = f32_fini,
};
