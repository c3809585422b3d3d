/* hmoe_expert_fxp: the fixed-point routed-expert backend "cpu-fxp[:MODE]", MODE one of
 * fp8 (the default), int8, int4 (two int8 activation planes, A16) or fp8-a8, int8-a8,
 * int4-a8 (one plane, contract version 1's numbers); see hmoe_expert.h and docs/fxp.md.
 * At init every routed expert of every MoE layer is packed into
 * the device layout (runtime/hmoe_fxp_pack.c); run quantises each token with the
 * contract quantiser, runs the hls/ kernel's CPU variant chosen for this CPU
 * (runtime/hmoe_fxp_cpu.c), threaded over (expert, token tile, rows), and converts the
 * Q16 outputs to float. Every variant is bit-identical to the scalar kernel, so the
 * result does not depend on the CPU, the thread count or the batch grouping.
 */
#include <stdlib.h>
#include <string.h>

#include "hmoe_err.h"
#include "hmoe_expert.h"
#include "hmoe_fxp_cpu.h"
#include "hmoe_fxp_pack.h"
#include "hmoe_pool.h"

struct fxp_priv {
	int mode;                          /* weight format | optional HMOE_FXP_A16 */
	const struct hmoe_fxp_simd *simd;
	struct hmoe_fxp_experts *layers;   /* [num_hidden_layers]; packs NULL for dense */
	struct hmoe_fxp_line **packs;      /* [num_hidden_layers * n_routed], into arena */
	void *arena;                       /* every MoE layer's packs, hmoe_model_weights_stride
					    * apart (hmoe_model_weights_alloc) */
	size_t arena_bytes;
	struct hmoe_fxp_fp8_fix **fixes;   /* the same (fp8, where the variant takes them:
					    * hmoe_fxp_simd_fp8_lists): the four-row
					    * kernel's remainder lists, or NULL */
	int n_packs;
	struct hmoe_fxp_ws *ws;            /* work memory kept between layers */
};

struct pack_job {
	const struct hmoe_model *m;
	struct fxp_priv *p;
	int *ret;                          /* [n_packs] */
};

static void pack_one(void *arg, long i, int thread)
{
	struct pack_job *j = arg;
	int n_routed = j->m->cfg.n_routed_experts, l = (int)(i / n_routed);

	(void)thread;
	if (!j->p->packs[i])
		return;
	j->ret[i] = hmoe_fxp_pack_mlp(j->p->packs[i], &j->m->layers[l].experts[i % n_routed],
				      hmoe_fxp_mode_format(j->p->mode));
	/* NULL lists (past the limit, or no memory for them) keep the three-digit kernel */
	if (!j->ret[i] && j->p->fixes) {
		int dim = j->m->cfg.hidden_size, inter = j->m->cfg.moe_intermediate_size;

		j->p->fixes[i] = hmoe_fxp_fp8_fix_build(j->p->packs[i], dim, inter,
							HMOE_FXP_FP8_FIX_LIMIT(dim, inter));
	}
}

static void fxp_fini(struct hmoe_expert_backend *b)
{
	struct fxp_priv *p = b->priv;

	if (!p)
		return;
	hmoe_model_weights_free(p->arena, p->arena_bytes);
	for (int i = 0; p->fixes && i < p->n_packs; i++)
		hmoe_fxp_fp8_fix_free(p->fixes[i]);
	free(p->packs);
	free(p->fixes);
	free(p->layers);
	hmoe_fxp_ws_free(p->ws);
	free(p);
	b->priv = NULL;
}

static int fxp_init(struct hmoe_expert_backend *b, const struct hmoe_model *m, const char *arg)
{
	const struct hmoe_config *c = &m->cfg;
	int dim = c->hidden_size, inter = c->moe_intermediate_size, ret;
	struct pack_job j = { .m = m };
	struct fxp_priv *p;
	size_t bytes, stride;
	int n_moe = 0;

	p = calloc(1, sizeof(*p));
	if (!p)
		return hmoe_err(HMOE_ENOMEM, "cpu-fxp experts: out of memory");
	b->priv = p;
	ret = hmoe_fxp_format_parse(arg && *arg ? arg : "fp8", &p->mode);
	if (ret) {
		ret = hmoe_err_ctx(ret, "expert backend cpu-fxp");
		goto err;
	}
	b->act_planes = hmoe_fxp_mode_planes(p->mode);
	if (dim > HMOE_FXP_MAX_DIM || inter > HMOE_FXP_MAX_INTER) {
		ret = hmoe_err(HMOE_EINPUT, "cpu-fxp experts: hidden_size %d / moe_intermediate_size "
			       "%d exceed the kernel's bounds %d / %d", dim, inter, HMOE_FXP_MAX_DIM,
			       HMOE_FXP_MAX_INTER);
		goto err;
	}
	p->simd = hmoe_fxp_simd_best();
	p->n_packs = c->num_hidden_layers * c->n_routed_experts;
	p->layers = calloc((size_t)c->num_hidden_layers, sizeof(*p->layers));
	p->packs = calloc((size_t)p->n_packs, sizeof(*p->packs));
	j.ret = calloc((size_t)p->n_packs, sizeof(*j.ret));
	if (hmoe_fxp_mode_format(p->mode) == HMOE_FXP_FP8 && hmoe_fxp_simd_fp8_lists(p->simd) &&
	    !(p->fixes = calloc((size_t)p->n_packs, sizeof(*p->fixes)))) {
		ret = hmoe_err(HMOE_ENOMEM, "cpu-fxp experts: out of memory");
		goto err;
	}
	if (!p->layers || !p->packs || !j.ret) {
		ret = hmoe_err(HMOE_ENOMEM, "cpu-fxp experts: out of memory");
		goto err;
	}
	bytes = (size_t)hmoe_fxp_expert_lines(hmoe_fxp_mode_format(p->mode), dim, inter) *
		HMOE_FXP_LINE_BYTES;
	for (int l = 0; l < c->num_hidden_layers; l++)
		n_moe += m->layers[l].is_moe;
	stride = hmoe_model_weights_stride(bytes);
	p->arena_bytes = stride * c->n_routed_experts * n_moe;
	if (n_moe && !(p->arena = hmoe_model_weights_alloc(p->arena_bytes))) {
		ret = hmoe_err(HMOE_ENOMEM, "cpu-fxp experts: out of memory for the packs of %d "
			       "layers x %d experts (%.2f GiB)", n_moe, c->n_routed_experts,
			       (double)p->arena_bytes / (1 << 30));
		goto err;
	}
	for (int l = 0, k = 0; l < c->num_hidden_layers; l++) {
		struct hmoe_fxp_experts *ex = &p->layers[l];

		*ex = (struct hmoe_fxp_experts){
			.mode = p->mode, .dim = dim, .inter = inter,
			.n_experts = c->n_routed_experts,
			.packs = (const struct hmoe_fxp_line *const *)(
				p->packs + (size_t)l * c->n_routed_experts),
			.fixes = p->fixes ? (const struct hmoe_fxp_fp8_fix *const *)(
				p->fixes + (size_t)l * c->n_routed_experts) : NULL };
		if (!m->layers[l].is_moe)
			continue;
		for (int e = 0; e < c->n_routed_experts; e++, k++) {
			uint8_t *pack = (uint8_t *)p->arena + stride * k;

			hmoe_model_weights_guard(pack, bytes);
			p->packs[(size_t)l * c->n_routed_experts + e] = (struct hmoe_fxp_line *)pack;
		}
	}
	j.p = p;
	hmoe_pool_run(b->pool, p->n_packs, pack_one, &j);
	/* Worker threads keep their own error message: redo the first failure here. */
	for (int i = 0; i < p->n_packs; i++)
		if (j.ret[i]) {
			pack_one(&j, i, 0);
			ret = hmoe_err_ctx(j.ret[i], "cpu-fxp:%s layer %d expert %d",
					   hmoe_fxp_format_name(p->mode), i / c->n_routed_experts,
					   i % c->n_routed_experts);
			goto err;
		}
	free(j.ret);
	return 0;
err:
	free(j.ret);
	fxp_fini(b);
	return ret;
}

static int fxp_run(struct hmoe_expert_backend *b, const struct hmoe_expert_batch *batch)
{
	struct fxp_priv *p = b->priv;

	if (batch->layer < 0 || batch->layer >= b->model->cfg.num_hidden_layers ||
	    !b->model->layers[batch->layer].is_moe)
		return hmoe_err(HMOE_EINTERNAL, "cpu-fxp experts: layer %d is not an MoE layer",
				batch->layer);
	if (batch->xq && batch->xs && batch->xq_planes == b->act_planes)
		return hmoe_fxp_moe_run_q(&p->layers[batch->layer], p->simd, b->pool, &p->ws,
					  batch->n_tokens, batch->top_k, batch->x, batch->xq,
					  batch->xs, batch->expert_ids, batch->y);
	return hmoe_fxp_moe_run(&p->layers[batch->layer], p->simd, b->pool, &p->ws, batch->n_tokens,
				batch->top_k, batch->x, batch->expert_ids, batch->y);
}

const struct hmoe_expert_ops hmoe_expert_cpu_fxp_ops = {
	.name = "cpu-fxp",
	.init = fxp_init,
	.run = fxp_run,
	.fini = fxp_fini,
};
