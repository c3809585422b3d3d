/* hmoe_cuda_fwd: one sequence's forward pass on the GPU backend (see hmoe_cuda_fwd.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/hmoe_cuda_fwd.h"
#include "hmoe_err.h"
#include "hmoe_expert.h"
#include "hmoe_forward.h"
#include "hmoe_num.h"
#include "hmoe_ops.h"

/* ---- types ---- */

struct fwd_linear {
	void *w;   /* (out, in) bf16, device */
	int out, in;
};

struct fwd_mlp {
	struct fwd_linear w1, w3, w2;
};

struct fwd_layer {
	void *attn_norm, *ffn_norm, *q_norm, *kv_norm;  /* bf16 vectors, device */
	struct fwd_linear wq_a, wq_b, wkv_a, wkv_b, wo;
	int is_moe, has_shared;
	struct fwd_mlp mlp, shared;
	struct fwd_mlp *experts;   /* [n_routed] */
	struct fwd_linear gate;    /* (n_routed, dim) bf16 */
	void *gate_bias;           /* (n_routed) fp32, or NULL */
	void *cache;               /* (max_len, kv_lora + rope) bf16: positions in order */
};

struct hmoe_cuda_fwd {
	const struct hmoe_cuda_api *api;
	const struct hmoe_config *c;
	int len, max_len, max_n;
	int H, nope, rope, qk, vd, kv_lora, width, q_lora, dim, inter_max, vocab;
	float scale;
	struct fwd_layer *layers;
	void *embed, *norm;
	struct fwd_linear head;
	/* device scratch, sized for max_n tokens */
	void *x, *h, *qa, *q, *qdec, *oc, *o, *g, *u, *y;
	/* a prompt's naive-form attention (NULL where the prefill kernel cannot take the
	 * dims): latent (n, kv_lora), [k_nope | v] per head, k (n, H, qk), v (n, H, vd) */
	void *lat, *kv_up, *pk, *pv;
	void *pos, *ids, *bt, *lens, *freqs, *gate_logits, *route_ids, *route_w, *logits;
	float *acc;                /* host (max_n, dim) fp32 MoE combine */
	uint16_t *hbuf;            /* host (max(dim, inter)) bf16 expert output */
	/* routed experts on an expert backend (NULL: on the GPU, bf16) */
	struct hmoe_expert_backend *experts;
	float *ex_x;               /* host (max_n, dim) fp32: the normed activations */
	int *ex_ids;               /* host (max_n, top_k) chosen experts */
	float *ex_w;               /* host (max_n, top_k) their weights */
	float *ex_y;               /* host (FWD_EXPERT_CHUNK, top_k, dim) expert outputs */
	int planes;                /* the backend's activation planes: 0 none (float) */
	void *xq_dev, *xs_dev;     /* device (max_n, planes, groups * 128) int8, (max_n, groups) */
	int8_t *ex_xq;             /* host copies: the tokens leave the GPU quantised */
	int32_t *ex_xs;
};

/* Tokens per expert-backend batch: bounds the host output buffer (at V3's dims 64 tokens
 * x 8 slots x 7168 x 4 bytes = 14.7 MB) whatever the prompt length. */
#define FWD_EXPERT_CHUNK 64

#define GPU(call)                                                                         \
	do {                                                                              \
		if ((call) < 0)                                                           \
			return hmoe_err(HMOE_EDEVICE, "cuda forward: %s: %s", #call,      \
					f->api->last_error());                            \
	} while (0)

/* ---- lifetime ---- */

static int up_bf16(struct hmoe_cuda_fwd *f, void **dst, const float *src, size_t n)
{
	uint16_t *tmp = malloc(n * 2);

	if (!tmp)
		return hmoe_err(HMOE_ENOMEM, "cuda forward: out of memory");
	for (size_t i = 0; i < n; i++)
		tmp[i] = hmoe_f32_to_bf16(src[i]);
	if (f->api->malloc(dst, n * 2) < 0 || f->api->h2d(*dst, tmp, n * 2) < 0) {
		free(tmp);
		return hmoe_err(HMOE_EDEVICE, "cuda forward: uploading %zu weights: %s", n,
				f->api->last_error());
	}
	free(tmp);
	return 0;
}

static int up_linear(struct hmoe_cuda_fwd *f, struct fwd_linear *d, const struct hmoe_linear *l)
{
	if (!l->w)
		return hmoe_err(HMOE_EINPUT, "cuda forward: a %dx%d linear has no fp32 weights "
				"(load the model with HMOE_LOAD_F32)", l->out, l->in);
	d->out = l->out;
	d->in = l->in;
	return up_bf16(f, &d->w, l->w, (size_t)l->out * l->in);
}

static int up_mlp(struct hmoe_cuda_fwd *f, struct fwd_mlp *d, const struct hmoe_mlp *s)
{
	int ret;

	if ((ret = up_linear(f, &d->w1, &s->w1)) || (ret = up_linear(f, &d->w3, &s->w3)) ||
	    (ret = up_linear(f, &d->w2, &s->w2)))
		return ret;
	if (s->w1.out > f->inter_max)
		f->inter_max = s->w1.out;
	return 0;
}

static void free_mlp(const struct hmoe_cuda_api *api, struct fwd_mlp *d)
{
	api->free(d->w1.w), api->free(d->w3.w), api->free(d->w2.w);
}

void hmoe_cuda_fwd_free(struct hmoe_cuda_fwd *f)
{
	const struct hmoe_cuda_api *api;

	if (!f)
		return;
	api = f->api;
	for (int l = 0; f->layers && l < f->c->num_hidden_layers; l++) {
		struct fwd_layer *L = &f->layers[l];

		api->free(L->attn_norm), api->free(L->ffn_norm), api->free(L->q_norm);
		api->free(L->kv_norm), api->free(L->wq_a.w), api->free(L->wq_b.w);
		api->free(L->wkv_a.w), api->free(L->wkv_b.w), api->free(L->wo.w);
		free_mlp(api, &L->mlp), free_mlp(api, &L->shared);
		for (int e = 0; L->experts && e < f->c->n_routed_experts; e++)
			free_mlp(api, &L->experts[e]);
		free(L->experts);
		api->free(L->gate.w), api->free(L->gate_bias), api->free(L->cache);
	}
	free(f->layers);
	api->free(f->embed), api->free(f->norm), api->free(f->head.w);
	void *scratch[] = { f->x, f->h, f->qa, f->q, f->qdec, f->oc, f->o, f->g, f->u, f->y,
			    f->pos, f->ids, f->bt, f->lens, f->freqs, f->gate_logits,
			    f->route_ids, f->route_w, f->logits, f->lat, f->kv_up, f->pk, f->pv };
	for (size_t i = 0; i < sizeof(scratch) / sizeof(scratch[0]); i++)
		api->free(scratch[i]);
	free(f->acc);
	free(f->hbuf);
	free(f->ex_x), free(f->ex_ids), free(f->ex_w), free(f->ex_y);
	api->free(f->xq_dev), api->free(f->xs_dev);
	free(f->ex_xq), free(f->ex_xs);
	free(f);
}

static int fwd_alloc(struct hmoe_cuda_fwd *f, void **p, size_t bytes)
{
	if (f->api->malloc(p, bytes) < 0)
		return hmoe_err(HMOE_EDEVICE, "cuda forward: allocating %zu bytes: %s", bytes,
				f->api->last_error());
	return 0;
}

int hmoe_cuda_fwd_create(struct hmoe_cuda_fwd **out, const struct hmoe_cuda_api *api,
			 const struct hmoe_model *m, int max_len, int max_n,
			 struct hmoe_expert_backend *experts)
{
	const struct hmoe_config *c = &m->cfg;
	struct hmoe_cuda_fwd *f = calloc(1, sizeof(*f));
	float freqs[256];
	int ret = 0, n_lay = c->num_hidden_layers;

	*out = NULL;
	if (!f)
		return hmoe_err(HMOE_ENOMEM, "cuda forward: out of memory");
	f->api = api;
	f->c = c;
	f->experts = experts;
	f->max_len = max_len;
	f->max_n = max_n;
	f->H = c->num_attention_heads;
	f->nope = c->qk_nope_head_dim;
	f->rope = c->qk_rope_head_dim;
	f->qk = f->nope + f->rope;
	f->vd = c->v_head_dim;
	f->kv_lora = c->kv_lora_rank;
	f->width = f->kv_lora + f->rope;
	f->q_lora = c->q_lora_rank;
	f->dim = c->hidden_size;
	f->vocab = c->vocab_size;
	f->scale = hmoe_ops_softmax_scale(c);
	if (max_len < 1 || max_n < 1 || max_n > max_len || f->rope / 2 > 256 ||
	    f->kv_lora > 512 || f->width > 576) {
		free(f);
		return hmoe_err(HMOE_EINPUT, "cuda forward: max_len %d, max_n %d, kv_lora %d, "
				"rope %d not supported", max_len, max_n, c->kv_lora_rank, c->qk_rope_head_dim);
	}
	if (!m->embed) {
		free(f);
		return hmoe_err(HMOE_EINPUT, "cuda forward: the model was not loaded with "
				"HMOE_LOAD_F32");
	}
	f->layers = calloc((size_t)n_lay, sizeof(*f->layers));
	if (!f->layers) {
		free(f);
		return hmoe_err(HMOE_ENOMEM, "cuda forward: out of memory");
	}
	if ((ret = up_bf16(f, &f->embed, m->embed, (size_t)f->vocab * f->dim)) ||
	    (ret = up_bf16(f, &f->norm, m->norm, (size_t)f->dim)) ||
	    (ret = up_linear(f, &f->head, &m->head)))
		goto err;
	for (int l = 0; l < n_lay; l++) {
		const struct hmoe_layer *s = &m->layers[l];
		struct fwd_layer *L = &f->layers[l];

		L->is_moe = s->is_moe;
		if ((ret = up_bf16(f, &L->attn_norm, s->attn_norm, (size_t)f->dim)) ||
		    (ret = up_bf16(f, &L->ffn_norm, s->ffn_norm, (size_t)f->dim)) ||
		    (ret = up_bf16(f, &L->kv_norm, s->kv_norm, (size_t)f->kv_lora)) ||
		    (ret = up_linear(f, &L->wq_b, &s->wq_b)) ||
		    (ret = up_linear(f, &L->wkv_a, &s->wkv_a)) ||
		    (ret = up_linear(f, &L->wkv_b, &s->wkv_b)) ||
		    (ret = up_linear(f, &L->wo, &s->wo)))
			goto err;
		if (f->q_lora > 0 &&
		    ((ret = up_bf16(f, &L->q_norm, s->q_norm, (size_t)f->q_lora)) ||
		     (ret = up_linear(f, &L->wq_a, &s->wq_a))))
			goto err;
		if (!s->is_moe) {
			if ((ret = up_mlp(f, &L->mlp, &s->mlp)))
				goto err;
			continue;
		}
		if (!experts) {  /* else the expert backend holds them */
			L->experts = calloc((size_t)c->n_routed_experts, sizeof(*L->experts));
			if (!L->experts) {
				ret = hmoe_err(HMOE_ENOMEM, "cuda forward: out of memory");
				goto err;
			}
			for (int e = 0; e < c->n_routed_experts; e++)
				if ((ret = up_mlp(f, &L->experts[e], &s->experts[e])))
					goto err;
		}
		L->has_shared = s->has_shared;
		if (s->has_shared && (ret = up_mlp(f, &L->shared, &s->shared)))
			goto err;
		L->gate.out = c->n_routed_experts;
		L->gate.in = f->dim;
		if ((ret = up_bf16(f, &L->gate.w, s->gate, (size_t)c->n_routed_experts * f->dim)))
			goto err;
		if (s->gate_bias) {
			if ((ret = fwd_alloc(f, &L->gate_bias, sizeof(float) * (size_t)c->n_routed_experts)))
				goto err;
			if (api->h2d(L->gate_bias, s->gate_bias,
				     sizeof(float) * (size_t)c->n_routed_experts) < 0) {
				ret = hmoe_err(HMOE_EDEVICE, "cuda forward: gate bias: %s", api->last_error());
				goto err;
			}
		}
	}
	for (int l = 0; l < n_lay; l++)
		if ((ret = fwd_alloc(f, &f->layers[l].cache, (size_t)max_len * f->width * 2)))
			goto err;
	{
		size_t n = (size_t)max_n, big = (size_t)(f->inter_max > f->dim ? f->inter_max : f->dim);
		int32_t *zeros = calloc(n, sizeof(int32_t));

		if (!zeros) {
			ret = hmoe_err(HMOE_ENOMEM, "cuda forward: out of memory");
			goto err;
		}
		if ((ret = fwd_alloc(f, &f->x, n * f->dim * 2)) ||
		    (ret = fwd_alloc(f, &f->h, n * f->dim * 2)) ||
		    (ret = fwd_alloc(f, &f->qa, n * (size_t)(f->q_lora > 0 ? f->q_lora : 1) * 2)) ||
		    (ret = fwd_alloc(f, &f->q, n * f->H * f->qk * 2)) ||
		    (ret = fwd_alloc(f, &f->qdec, n * f->H * f->width * 2)) ||
		    (ret = fwd_alloc(f, &f->oc, n * f->H * f->kv_lora * 2)) ||
		    (ret = fwd_alloc(f, &f->o, n * f->H * f->vd * 2)) ||
		    (ret = fwd_alloc(f, &f->g, n * big * 2)) ||
		    (ret = fwd_alloc(f, &f->u, n * big * 2)) ||
		    (ret = fwd_alloc(f, &f->y, n * f->dim * 2)) ||
		    (ret = fwd_alloc(f, &f->pos, n * 4)) || (ret = fwd_alloc(f, &f->ids, n * 4)) ||
		    (ret = fwd_alloc(f, &f->bt, n * 4)) || (ret = fwd_alloc(f, &f->lens, n * 4)) ||
		    (ret = fwd_alloc(f, &f->freqs, sizeof(freqs))) ||
		    (ret = fwd_alloc(f, &f->gate_logits, n * 4 * (size_t)(c->n_routed_experts + 1))) ||
		    (ret = fwd_alloc(f, &f->route_ids, n * 4 * (size_t)(c->num_experts_per_tok + 1))) ||
		    (ret = fwd_alloc(f, &f->route_w, n * 4 * (size_t)(c->num_experts_per_tok + 1))) ||
		    (ret = fwd_alloc(f, &f->logits, (size_t)f->vocab * 4)) ||
		    (f->qk <= 192 && f->vd <= 128 && f->qk % 2 == 0 && f->vd % 2 == 0 &&
		     ((ret = fwd_alloc(f, &f->lat, n * f->kv_lora * 2)) ||
		      (ret = fwd_alloc(f, &f->kv_up, n * f->H * (f->nope + f->vd) * 2)) ||
		      (ret = fwd_alloc(f, &f->pk, n * f->H * f->qk * 2)) ||
		      (ret = fwd_alloc(f, &f->pv, n * f->H * f->vd * 2))))) {
			free(zeros);
			goto err;
		}
		/* one page per layer holding every position: block table entry 0 for all */
		hmoe_ops_rope_freqs(c, freqs);
		if (api->h2d(f->bt, zeros, n * 4) < 0 ||
		    api->h2d(f->freqs, freqs, sizeof(float) * (size_t)(f->rope / 2)) < 0) {
			free(zeros);
			ret = hmoe_err(HMOE_EDEVICE, "cuda forward: %s", api->last_error());
			goto err;
		}
		free(zeros);
		f->acc = malloc(sizeof(float) * n * f->dim);
		f->hbuf = malloc(2 * n * big);
		if (experts) {
			size_t k = (size_t)c->num_experts_per_tok;

			f->ex_x = malloc(sizeof(float) * n * f->dim);
			f->ex_ids = malloc(sizeof(int) * n * k);
			f->ex_w = malloc(sizeof(float) * n * k);
			f->ex_y = malloc(sizeof(float) * FWD_EXPERT_CHUNK * k * f->dim);
			f->planes = experts->act_planes;
		}
		if (f->planes) {  /* a fixed-point backend: quantise on the GPU (docs/fxp.md) */
			size_t groups = (size_t)(f->dim + 127) / 128;

			if ((ret = fwd_alloc(f, &f->xq_dev, n * f->planes * groups * 128)) ||
			    (ret = fwd_alloc(f, &f->xs_dev, n * groups * 4)))
				goto err;
			f->ex_xq = malloc(n * f->planes * groups * 128);
			f->ex_xs = malloc(sizeof(int32_t) * n * groups);
		}
		if (!f->acc || !f->hbuf ||
		    (experts && (!f->ex_x || !f->ex_ids || !f->ex_w || !f->ex_y)) ||
		    (f->planes && (!f->ex_xq || !f->ex_xs))) {
			ret = hmoe_err(HMOE_ENOMEM, "cuda forward: out of memory");
			goto err;
		}
	}
	*out = f;
	return 0;
err:
	hmoe_cuda_fwd_free(f);
	return ret;
}

/* ---- compute ---- */

/* y (n, dim) = MLP(h (n, dim)); scratch g, u. */
static int run_mlp(struct hmoe_cuda_fwd *f, const struct fwd_mlp *p, const void *h, void *y,
		   int n)
{
	const struct hmoe_cuda_api *api = f->api;
	int inter = p->w1.out;

	GPU(api->gemm_bf16(f->g, 0, h, p->w1.w, n, f->dim, inter));
	GPU(api->gemm_bf16(f->u, 0, h, p->w3.w, n, f->dim, inter));
	GPU(api->silu_mul(f->g, f->u, (long)n * inter));
	GPU(api->gemm_bf16(y, 0, f->g, p->w2.w, n, inter, f->dim));
	return 0;
}

/* x += MLA(attn_norm(x)) for n new tokens at positions start.. */
static int run_attention(struct hmoe_cuda_fwd *f, struct fwd_layer *L, int start, int n)
{
	const struct hmoe_cuda_api *api = f->api;
	const struct hmoe_config *c = f->c;
	uint16_t *rows = (uint16_t *)L->cache + (size_t)start * f->width;
	struct hmoe_cuda_kv_pages kv = { L->cache, f->bt, f->lens, f->max_len, 1, start + n };
	int H = f->H;

	GPU(api->rmsnorm(f->h, f->dim, f->x, f->dim, L->attn_norm, n, f->dim, c->rms_norm_eps));
	if (f->q_lora > 0) {
		GPU(api->gemm_bf16(f->qa, 0, f->h, L->wq_a.w, n, f->dim, f->q_lora));
		GPU(api->rmsnorm(f->qa, f->q_lora, f->qa, f->q_lora, L->q_norm, n, f->q_lora,
				 c->rms_norm_eps));
		GPU(api->gemm_bf16(f->q, 0, f->qa, L->wq_b.w, n, f->q_lora, H * f->qk));
	} else {
		GPU(api->gemm_bf16(f->q, 0, f->h, L->wq_b.w, n, f->dim, H * f->qk));
	}
	/* the new latent rows go straight into the cache: [kv_norm(c) | rope(k_pe)] */
	GPU(api->gemm_bf16(rows, 0, f->h, L->wkv_a.w, n, f->dim, f->width));
	GPU(api->rmsnorm(rows, f->width, rows, f->width, L->kv_norm, n, f->kv_lora,
			 c->rms_norm_eps));
	GPU(api->rope(rows, n, f->width, 1, 0, f->kv_lora, f->rope, f->pos, f->freqs));
	GPU(api->rope(f->q, n, H * f->qk, H, f->qk, f->nope, f->rope, f->pos, f->freqs));
	if (start == 0 && n > 1 && f->pk) {
		/* a prompt from position 0: model.py's naive form, as its prefill does. Per
		 * head k = [c . W_UK^T | k_pe] and v = c . W_UV^T from the latent rows just
		 * written (one GEMM against wkv_b, then strided copies), then the flash-style
		 * causal prefill: O(n^2 (qk + v)) per head instead of the absorbed form's
		 * O(n^2 (2 kv_lora + rope)). The k_pe broadcast is one strided copy per head
		 * (H small copies per layer and prompt, whatever n) */
		size_t up = (size_t)(f->nope + f->vd) * 2;

		GPU(api->copy2d(f->lat, (size_t)f->kv_lora * 2, rows, (size_t)f->width * 2,
				(size_t)f->kv_lora * 2, (size_t)n));
		GPU(api->gemm_bf16(f->kv_up, 0, f->lat, L->wkv_b.w, n, f->kv_lora,
				   H * (f->nope + f->vd)));
		GPU(api->copy2d(f->pk, (size_t)f->qk * 2, f->kv_up, up, (size_t)f->nope * 2,
				(size_t)n * H));
		GPU(api->copy2d(f->pv, (size_t)f->vd * 2, (const uint16_t *)f->kv_up + f->nope, up,
				(size_t)f->vd * 2, (size_t)n * H));
		for (int h = 0; h < H; h++)
			GPU(api->copy2d((uint16_t *)f->pk + (size_t)h * f->qk + f->nope,
					(size_t)H * f->qk * 2, rows + f->kv_lora, (size_t)f->width * 2,
					(size_t)f->rope * 2, (size_t)n));
		GPU(api->mla_prefill(f->o, f->q, f->pk, f->pv, n, H, f->qk, f->vd, f->scale,
				     HMOE_MLA_PREFILL_AUTO));
		GPU(api->gemm_bf16(f->y, 0, f->o, L->wo.w, n, H * f->vd, f->dim));
		GPU(api->add(f->x, f->y, (long)n * f->dim));
		return 0;
	}
	/* decode queries [q_nope . W_UK | q_pe]; token i attends to positions <= start + i */
	GPU(api->mla_absorb_q(f->qdec, f->width, f->q, f->qk, L->wkv_b.w, n, H, f->nope, f->vd,
			      f->kv_lora));
	GPU(api->copy2d((uint16_t *)f->qdec + f->kv_lora, (size_t)f->width * 2,
			(const uint16_t *)f->q + f->nope, (size_t)f->qk * 2, (size_t)f->rope * 2,
			(size_t)n * H));
	GPU(api->mla_decode(f->oc, f->qdec, &kv, n, H, f->kv_lora, f->rope, f->scale,
			    HMOE_MLA_DECODE_AUTO));
	GPU(api->mla_absorb_o(f->o, f->oc, L->wkv_b.w, n, H, f->nope, f->vd, f->kv_lora));
	GPU(api->gemm_bf16(f->y, 0, f->o, L->wo.w, n, H * f->vd, f->dim));
	GPU(api->add(f->x, f->y, (long)n * f->dim));
	return 0;
}

/* acc (n, dim) += w * bf16 rows of dev (n_rows, dim) */
static int acc_rows(struct hmoe_cuda_fwd *f, float *acc, const void *dev, int n_rows,
		    const float *w)
{
	GPU(f->api->d2h(f->hbuf, dev, (size_t)n_rows * f->dim * 2));
	for (long i = 0; i < (long)n_rows * f->dim; i++)
		acc[i] += (w ? *w : 1.0f) * hmoe_bf16_to_f32(f->hbuf[i]);
	return 0;
}

/* The routed experts of layer l on the expert backend: the GPU's normed activations and
 * routing go to the host, each chunk of tokens is submitted (quantised and sent to the
 * cards by the backend), the shared expert runs on the GPU meanwhile (into f->y), and
 * the chunk is combined into acc with the one combine function, in ascending expert id;
 * the caller then adds the shared expert, as hmoe_forward does. */
static int run_routed_backend(struct hmoe_cuda_fwd *f, struct fwd_layer *L, int l, int n)
{
	const struct hmoe_cuda_api *api = f->api;
	int k = f->c->num_experts_per_tok, E = f->c->n_routed_experts, ret, shared_done = 0;

	_Static_assert(sizeof(int) == sizeof(int32_t), "the router's int32 ids are copied as int");
	GPU(api->d2h(f->hbuf, f->h, (size_t)n * f->dim * 2));
	for (long i = 0; i < (long)n * f->dim; i++)
		f->ex_x[i] = hmoe_bf16_to_f32(f->hbuf[i]);
	GPU(api->d2h(f->ex_ids, f->route_ids, sizeof(int32_t) * (size_t)n * k));
	for (long i = 0; i < (long)n * k; i++)
		if (f->ex_ids[i] < 0 || f->ex_ids[i] >= E)
			return hmoe_err(HMOE_EINTERNAL, "cuda forward: router chose expert %d",
					f->ex_ids[i]);
	GPU(api->d2h(f->ex_w, f->route_w, sizeof(float) * (size_t)n * k));
	if (f->planes) {  /* the routed tokens leave the GPU quantised, ready for the cards */
		size_t groups = (size_t)(f->dim + 127) / 128;

		GPU(api->fxp_quant_x(f->xq_dev, f->xs_dev, f->h, 0, n, f->dim, f->planes));
		GPU(api->d2h(f->ex_xq, f->xq_dev, (size_t)n * f->planes * groups * 128));
		GPU(api->d2h(f->ex_xs, f->xs_dev, sizeof(int32_t) * (size_t)n * groups));
	}
	for (int t0 = 0; t0 < n; t0 += FWD_EXPERT_CHUNK) {
		int nc = n - t0 < FWD_EXPERT_CHUNK ? n - t0 : FWD_EXPERT_CHUNK, ticket;
		struct hmoe_expert_batch b = {
			.layer = l, .n_tokens = nc, .top_k = k,
			.x = f->ex_x + (size_t)t0 * f->dim, .expert_ids = f->ex_ids + (size_t)t0 * k,
			.y = f->ex_y,
		};

		if (f->planes) {
			size_t groups = (size_t)(f->dim + 127) / 128;

			b.xq = f->ex_xq + (size_t)t0 * f->planes * groups * 128;
			b.xs = f->ex_xs + (size_t)t0 * groups;
			b.xq_planes = f->planes;
		}

		if ((ret = hmoe_expert_submit(f->experts, &b, &ticket)))
			return hmoe_err_ctx(ret, "cuda forward: layer %d experts", l);
		if (!shared_done && L->has_shared) {
			ret = run_mlp(f, &L->shared, f->h, f->y, n);
			shared_done = 1;
			if (ret) {
				hmoe_expert_wait(f->experts, ticket);
				return ret;
			}
		}
		if ((ret = hmoe_expert_wait(f->experts, ticket)))
			return hmoe_err_ctx(ret, "cuda forward: layer %d experts", l);
		for (int t = 0; t < nc; t++)
			hmoe_forward_moe_combine(f->acc + (size_t)(t0 + t) * f->dim,
						 f->ex_y + (size_t)t * k * f->dim,
						 f->ex_ids + (size_t)(t0 + t) * k,
						 f->ex_w + (size_t)(t0 + t) * k, k, f->dim);
	}
	return 0;
}

/* x += FFN(ffn_norm(x)) */
static int run_ffn(struct hmoe_cuda_fwd *f, struct fwd_layer *L, int l, int n)
{
	const struct hmoe_cuda_api *api = f->api;
	const struct hmoe_config *c = f->c;
	int k = c->num_experts_per_tok, E = c->n_routed_experts, ret;
	int32_t ids[64];
	float w[64];

	GPU(api->rmsnorm(f->h, f->dim, f->x, f->dim, L->ffn_norm, n, f->dim, c->rms_norm_eps));
	if (!L->is_moe) {
		if ((ret = run_mlp(f, &L->mlp, f->h, f->y, n)))
			return ret;
		GPU(api->add(f->x, f->y, (long)n * f->dim));
		return 0;
	}
	if (k > 64)
		return hmoe_err(HMOE_EINPUT, "cuda forward: top-k %d > 64", k);
	GPU(api->gemm_bf16(f->gate_logits, 1, f->h, L->gate.w, n, f->dim, E));
	GPU(api->route(f->route_ids, f->route_w, f->gate_logits, L->gate_bias, n, E,
		       c->n_group, c->topk_group, k, c->scoring_func == HMOE_SCORE_SOFTMAX,
		       c->norm_topk_prob, c->routed_scaling_factor));
	memset(f->acc, 0, sizeof(float) * (size_t)n * f->dim);
	if (f->experts) {
		if ((ret = run_routed_backend(f, L, l, n)) ||
		    (L->has_shared && (ret = acc_rows(f, f->acc, f->y, n, NULL))))
			return ret;
		goto combined;
	}
	for (int t = 0; t < n; t++) {
		const uint16_t *ht = (const uint16_t *)f->h + (size_t)t * f->dim;

		GPU(api->d2h(ids, (const int32_t *)f->route_ids + (size_t)t * k, sizeof(int32_t) * (size_t)k));
		GPU(api->d2h(w, (const float *)f->route_w + (size_t)t * k, sizeof(float) * (size_t)k));
		for (int s = 0; s < k; s++) {  /* ascending expert id, from 0 */
			if (ids[s] < 0 || ids[s] >= E)
				return hmoe_err(HMOE_EINTERNAL, "cuda forward: router chose expert %d",
						ids[s]);
			if ((ret = run_mlp(f, &L->experts[ids[s]], ht, f->y, 1)) ||
			    (ret = acc_rows(f, f->acc + (size_t)t * f->dim, f->y, 1, &w[s])))
				return ret;
		}
	}
	if (L->has_shared &&
	    ((ret = run_mlp(f, &L->shared, f->h, f->y, n)) ||
	     (ret = acc_rows(f, f->acc, f->y, n, NULL))))
		return ret;
combined:
	for (long i = 0; i < (long)n * f->dim; i++)
		f->hbuf[i] = hmoe_f32_to_bf16(f->acc[i]);
	GPU(api->h2d(f->y, f->hbuf, (size_t)n * f->dim * 2));
	GPU(api->add(f->x, f->y, (long)n * f->dim));
	return 0;
}

int hmoe_cuda_fwd_feed(struct hmoe_cuda_fwd *f, const int *tokens, int n, float *logits)
{
	const struct hmoe_cuda_api *api = f->api;
	int32_t pos[4096], lens[4096];
	int ret, start = f->len;

	if (n < 1 || n > f->max_n || n > 4096 || start + n > f->max_len)
		return hmoe_err(HMOE_EINPUT, "cuda forward: %d tokens at position %d (max %d per "
				"call, %d in all)", n, start, f->max_n, f->max_len);
	for (int i = 0; i < n; i++) {
		if (tokens[i] < 0 || tokens[i] >= f->vocab)
			return hmoe_err(HMOE_EINPUT, "cuda forward: token %d: id %d outside [0, %d)",
					i, tokens[i], f->vocab);
		pos[i] = start + i;
		lens[i] = start + i + 1;
	}
	GPU(api->h2d(f->ids, tokens, sizeof(int32_t) * (size_t)n));
	GPU(api->h2d(f->pos, pos, sizeof(int32_t) * (size_t)n));
	GPU(api->h2d(f->lens, lens, sizeof(int32_t) * (size_t)n));
	GPU(api->embed(f->x, f->embed, f->ids, n, f->dim, f->vocab));
	for (int l = 0; l < f->c->num_hidden_layers; l++)
		if ((ret = run_attention(f, &f->layers[l], start, n)) ||
		    (ret = run_ffn(f, &f->layers[l], l, n)))
			return ret;
	GPU(api->rmsnorm(f->h, f->dim, (const uint16_t *)f->x + (size_t)(n - 1) * f->dim, f->dim,
			 f->norm, 1, f->dim, f->c->rms_norm_eps));
	GPU(api->gemm_bf16(f->logits, 1, f->h, f->head.w, 1, f->dim, f->vocab));
	GPU(api->d2h(logits, f->logits, sizeof(float) * (size_t)f->vocab));
	f->len += n;
	return 0;
}
