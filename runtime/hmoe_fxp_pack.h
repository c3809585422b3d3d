/* hmoe_fxp_pack: the host side of the fixed-point contract (docs/fxp.md): checkpoint
 * tensors -> weight packs in the device layout, float activations -> int8 + scale words
 * (the one activation quantiser every producer calls), Q16 outputs -> float.
 */
#ifndef HMOE_FXP_PACK_H
#define HMOE_FXP_PACK_H

#include <stddef.h>
#include <stdint.h>

#include "hmoe_ffn.h"
#include "hmoe_model.h"

/* "fp8" / "int8" / "int4" -> enum hmoe_fxp_format; HMOE_EINPUT error if unknown. */
int hmoe_fxp_format_parse(const char *name, int *format);
const char *hmoe_fxp_format_name(int format);

/* Scale word nearest to s (> 0, finite): m in [2^15, 2^16). 0 for s == 0. */
int32_t hmoe_fxp_scale_from_float(double s);
double hmoe_fxp_scale_to_float(int32_t w);

/* Packs W (out, in) fp32 row-major into dst (hmoe_fxp_linear_lines() lines).
 * fp8: 128x128 blocks with scale amax/448 (as DeepSeek's checkpoints); int8/int4:
 * per (row, group of 128) scale, round to nearest. Non-finite weights: HMOE_EINPUT. */
int hmoe_fxp_pack_f32(struct hmoe_fxp_line *dst, const float *w, int out, int in, int format,
		      const char *what);
/* Packs FP8 e4m3 codes (out, in) with scale_inv (ceil(out/128), ceil(in/128)) fp32, i.e.
 * the checkpoint as stored. fp8 keeps the codes; int8/int4 requantise. NaN codes:
 * HMOE_EINPUT naming `what`, row and column. */
int hmoe_fxp_pack_fp8(struct hmoe_fxp_line *dst, const uint8_t *codes, const float *scale_inv,
		      int out, int in, int format, const char *what);
/* Packs a checkpoint linear (FP8 + scale_inv with 128x128 blocks, bf16, f16 or f32). */
int hmoe_fxp_pack_linear(struct hmoe_fxp_line *dst, const struct hmoe_linear *l, int format);
/* Packs an expert (W1, W3, W2) into one expert pack of hmoe_fxp_expert_lines() lines. */
int hmoe_fxp_pack_mlp(struct hmoe_fxp_line *dst, const struct hmoe_mlp *e, int format);

/* The activation quantiser: x (dim) float -> xq (groups(dim) * 128, zero-padded) int8 and
 * xs (groups(dim)) scale words. Each x is first made Q32 exactly (x * 2^32 truncated
 * toward zero; |x| >= 2^30 saturates, NaN is 0), then hmoe_fxp_quant_group(). */
void hmoe_fxp_quant_x(const float *x, int dim, int8_t *xq, int32_t *xs);
int64_t hmoe_fxp_f32_to_q32(float x);

/* Q16 kernel output -> float: (float)y * 2^-16 (exact scaling of a rounded int). */
static inline float hmoe_fxp_out_to_f32(int32_t y)
{
	return (float)y * (1.0f / 65536.0f);
}

#endif
