/* hmoe_fxp_pack: the host side of the fixed-point contract (docs/fxp.md): checkpoint
 * tensors -> weight packs in the device layout, float activations -> int8 planes + scale
 * words (the one activation quantiser every producer calls), Q16 outputs -> float, and
 * the names of the kernel modes.
 */
#ifndef HMOE_FXP_PACK_H
#define HMOE_FXP_PACK_H

#include <stddef.h>
#include <stdint.h>

#include "hmoe_ffn.h"
#include "hmoe_model.h"

/* Kernel modes by name: "fp8" / "int8" / "int4" (two activation planes, A16: the
 * default) or with "-a8" appended (one plane) -> format | HMOE_FXP_A16 or format;
 * HMOE_EINPUT error naming the valid ones if unknown. */
int hmoe_fxp_format_parse(const char *name, int *mode);
/* "fp8", "int8-a8", ... for a mode (a bare format is the -a8 mode). */
const char *hmoe_fxp_format_name(int mode);

/* Scale word nearest to s (> 0, finite): m in [2^15, 2^16). 0 for s == 0. */
int32_t hmoe_fxp_scale_from_float(double s);
double hmoe_fxp_scale_to_float(int32_t w);

/* The packers take a weight format or a kernel mode (only its format counts: packs do
 * not depend on the activation planes). */
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

/* The activation quantiser: x (dim) float -> xq (planes, groups(dim) * 128, zero-padded)
 * int8 (plane 0 = hi, then plane 1 = lo when planes == 2; hmoe_fxp_mode_planes()) and
 * xs (groups(dim)) scale words shared by the planes. Each x is first made Q32 exactly (x * 2^32 truncated toward zero; |x| >= 2^30
 * saturates, NaN is 0), then hmoe_fxp_quant_group(). */
void hmoe_fxp_quant_x(const float *x, int dim, int planes, int8_t *xq, int32_t *xs);
/* The same for group g of x only (its xq columns in each plane, and xs[g]): groups are
 * independent, so a caller may quantise them in parallel. */
void hmoe_fxp_quant_x_group(const float *x, int dim, int planes, int g, int8_t *xq,
			    int32_t *xs);
/* hmoe_fxp_quant_x_group by another function of hmoe_fxp_quant_group's type that gives
 * the same bytes (a SIMD variant's, struct hmoe_fxp_simd). */
void hmoe_fxp_quant_x_group_by(const float *x, int dim, int planes, int g, int8_t *xq,
			       int32_t *xs, hmoe_fxp_quant_fn *quant);
int64_t hmoe_fxp_f32_to_q32(float x);

/* Q16 kernel output -> float: (float)y * 2^-16 (exact scaling of a rounded int). */
static inline float hmoe_fxp_out_to_f32(int32_t y)
{
	return (float)y * (1.0f / 65536.0f);
}

#endif
