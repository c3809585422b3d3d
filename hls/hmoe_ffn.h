/* hmoe_ffn: the fixed-point expert kernel, y = W2(silu(W1 x) * W3 x), for one expert
 * and a tile of up to HMOE_FXP_TILE tokens routed to it.
 *
 * This is the kernel entry point shared by the FPGA (Vitis HLS top function), the CPU
 * expert path (scalar oracle) and the kernel module's emulated card. It allocates
 * nothing, calls no libc, uses no float, and keeps only scalars on the stack: every
 * buffer is the caller's.
 *
 * Buffers (all little-endian; see hmoe_fxp.h for the pack geometry):
 *   wpack  expert pack, hmoe_fxp_expert_lines(mode, dim, inter) lines of 64 bytes:
 *          W1 (inter, dim), W3 (inter, dim), W2 (dim, inter) row records.
 *   xq     int8 (n_tokens, planes, groups(dim) * 128): quantised x, planes =
 *          hmoe_fxp_mode_planes(mode) (hi plane, then lo); columns >= dim are 0.
 *   xs     int32 (n_tokens, groups(dim)): activation scale words of xq.
 *   y      int32 (n_tokens, dim) out: Q16 fixed point; float y = y * 2^-16.
 *   s      scratch, struct hmoe_ffn_scratch (about 169 KiB; not on a kernel stack).
 * Arguments: mode = enum hmoe_fxp_format | optional HMOE_FXP_A16 (hmoe_fxp_mode_valid),
 * 1 <= n_tokens <= HMOE_FXP_TILE, 1 <= dim <= HMOE_FXP_MAX_DIM,
 * 1 <= inter <= HMOE_FXP_MAX_INTER.
 * Returns 0, or HMOE_FFN_EARGS (and writes nothing) when an argument is out of range.
 */
#ifndef HMOE_FFN_H
#define HMOE_FFN_H

#include "hmoe_fxp.h"

#define HMOE_FFN_EARGS (-22) /* = -EINVAL, so the driver can return it as is */

/* One card memory word. */
struct hmoe_fxp_line {
	uint8_t b[HMOE_FXP_LINE_BYTES];
};

/* Intermediate state of one call: h for one group of 128 inter rows, then the
 * requantised h (int8 planes + scale words) that the W2 pass reads. */
struct hmoe_ffn_scratch {
	uint8_t row[HMOE_FXP_MAX_DIM];                         /* one row's codes (read stage) */
	int64_t h[HMOE_FXP_TILE][HMOE_FXP_GROUP];              /* Q32 silu(h1) * h3 */
	/* requantised h per token: the mode's planes of groups(inter) * 128, hi first */
	int8_t hq[HMOE_FXP_TILE][HMOE_FXP_MAX_PLANES * HMOE_FXP_MAX_INTER];
	int32_t hs[HMOE_FXP_TILE][HMOE_FXP_MAX_INTER_GROUPS];  /* its scale words */
};

int32_t hmoe_ffn(const struct hmoe_fxp_line *wpack, const int8_t *xq, const int32_t *xs,
		 int32_t *y, struct hmoe_ffn_scratch *s, int32_t mode, int32_t n_tokens,
		 int32_t dim, int32_t inter);

#endif
