/* hmoe_kv: the latent KV cache of one sequence (MLA).
 *
 * MLA caches, per token and layer, only the compressed latent: kv_norm(c) (kv_lora_rank
 * floats) followed by the roped shared key k_pe (qk_rope_head_dim floats, interleaved-pair
 * layout as model.py). Both attention forms read the same rows: the naive form
 * re-expands them through kv_b, the absorbed form uses them as they are.
 *
 * Layout: one growable buffer per layer, (cap, width) row-major, width = kv_lora_rank +
 * qk_rope_head_dim; row p holds position p. A struct hmoe_kv is the state of one
 * sequence: its length is the next position to feed.
 */
#ifndef HMOE_KV_H
#define HMOE_KV_H

#include <stddef.h>

#include "hmoe_config.h"

struct hmoe_kv {
	int n_layers;
	int kv_lora;      /* latent width: kv_lora_rank */
	int rope_dim;     /* qk_rope_head_dim */
	int width;        /* kv_lora + rope_dim floats per row */
	int len;          /* positions [0, len) are valid */
	int cap;          /* rows allocated per layer */
	int max_len;      /* hard limit on len; 0: none */
	float **rows;     /* [n_layers] -> (cap, width) */
};

/* A cache for one sequence of cfg's model. max_len > 0 caps its length (an attempt to
 * grow past it is an HMOE_EINPUT error); 0 means unbounded. Starts empty. */
int hmoe_kv_create(struct hmoe_kv **out, const struct hmoe_config *cfg, int max_len);
void hmoe_kv_free(struct hmoe_kv *kv);

/* Makes room for positions [0, len) in every layer (amortised doubling); keeps data. */
int hmoe_kv_reserve(struct hmoe_kv *kv, int len);
/* Forgets positions >= len (len <= kv->len), e.g. to rewind a sequence. */
void hmoe_kv_truncate(struct hmoe_kv *kv, int len);
/* Bytes held (capacity, all layers). */
size_t hmoe_kv_bytes(const struct hmoe_kv *kv);

/* Row of position pos in layer: width floats, [kv_norm(c) | k_pe]. pos < cap. */
static inline float *hmoe_kv_row(const struct hmoe_kv *kv, int layer, int pos)
{
	return kv->rows[layer] + (size_t)pos * (size_t)kv->width;
}

#endif
