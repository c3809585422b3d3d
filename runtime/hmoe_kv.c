/* hmoe_kv: per-sequence latent KV cache (see hmoe_kv.h). */
#include "hmoe_kv.h"

#include <stdlib.h>

#include "hmoe_err.h"

int hmoe_kv_create(struct hmoe_kv **out, const struct hmoe_config *cfg, int max_len)
{
	struct hmoe_kv *kv;

	if (cfg->num_hidden_layers <= 0 || cfg->kv_lora_rank <= 0 || cfg->qk_rope_head_dim <= 0)
		return hmoe_err(HMOE_EINPUT, "KV cache: config has no layers or latent (layers %d, "
				"kv_lora_rank %d, qk_rope_head_dim %d)", cfg->num_hidden_layers,
				cfg->kv_lora_rank, cfg->qk_rope_head_dim);
	if (max_len < 0)
		return hmoe_err(HMOE_EINPUT, "KV cache: max length %d is negative", max_len);
	kv = calloc(1, sizeof(*kv));
	if (!kv)
		return hmoe_err(HMOE_ENOMEM, "KV cache: out of memory");
	kv->rows = calloc((size_t)cfg->num_hidden_layers, sizeof(*kv->rows));
	if (!kv->rows) {
		free(kv);
		return hmoe_err(HMOE_ENOMEM, "KV cache: out of memory");
	}
	kv->n_layers = cfg->num_hidden_layers;
	kv->kv_lora = cfg->kv_lora_rank;
	kv->rope_dim = cfg->qk_rope_head_dim;
	kv->width = kv->kv_lora + kv->rope_dim;
	kv->max_len = max_len;
	*out = kv;
	return 0;
}

void hmoe_kv_free(struct hmoe_kv *kv)
{
	if (!kv)
		return;
	for (int l = 0; l < kv->n_layers; l++)
		free(kv->rows[l]);
	free(kv->rows);
	free(kv);
}

int hmoe_kv_reserve(struct hmoe_kv *kv, int len)
{
	int cap;

	if (len <= kv->cap)
		return 0;
	if (kv->max_len && len > kv->max_len)
		return hmoe_err(HMOE_EINPUT, "KV cache: %d positions exceed the sequence limit %d",
				len, kv->max_len);
	cap = kv->cap ? kv->cap : 16;
	while (cap < len)
		cap = cap > (1 << 29) ? len : cap * 2;
	if (kv->max_len && cap > kv->max_len)
		cap = kv->max_len;
	/* Each layer grows on its own; a failure part-way leaves the grown layers larger,
	 * which is harmless, and cap unchanged. */
	for (int l = 0; l < kv->n_layers; l++) {
		float *p = realloc(kv->rows[l], (size_t)cap * (size_t)kv->width * sizeof(float));

		if (!p)
			return hmoe_err(HMOE_ENOMEM, "KV cache: out of memory growing layer %d to %d "
					"positions", l, cap);
		kv->rows[l] = p;
	}
	kv->cap = cap;
	return 0;
}

void hmoe_kv_truncate(struct hmoe_kv *kv, int len)
{
	if (len >= 0 && len < kv->len)
		kv->len = len;
}

size_t hmoe_kv_bytes(const struct hmoe_kv *kv)
{
	return (size_t)kv->n_layers * (size_t)kv->cap * (size_t)kv->width * sizeof(float);
}
