/* SPDX-License-Identifier: GPL-2.0 */
/*
 * hmoe_fxp_glue.h: what the driver needs from the fixed-point expert kernel in hls/
 * (compiled into the module from the same source as the CPU path): its limits, the
 * byte sizes of an expert FFN job's buffers, and the kernel entry point.
 *
 * Buffer layouts of an HMOE_JOB_FFN job (all offsets multiples of HMOE_FXP_LINE_BYTES).
 * The job's format field is a kernel mode, format | optional HMOE_FXP_A16, and
 * planes = hmoe_fxp_mode_planes(mode) (2 with A16, else 1):
 *   weights: hmoe_fxp_expert_lines(format, dim, inter) lines of 64 bytes (hls/hmoe_fxp.h)
 *   x:       xq int8 (n_tokens, planes, groups(dim) * 128), then xs int32
 *            (n_tokens, groups(dim))
 *   y:       int32 (n_tokens, dim), Q16 fixed point
 */
#ifndef HMOE_FXP_GLUE_H
#define HMOE_FXP_GLUE_H

#include <linux/build_bug.h>
#include <linux/errno.h>
#include <linux/types.h>

#include "hmoe_drm.h"
#include "hmoe_ffn.h"

/* The sizes below are those of contract 2 (two activation planes): a new contract
 * must be re-checked here. */
static_assert(HMOE_FXP_CONTRACT_VERSION == 3);
#define HMOE_GLUE_CONTRACT_VERSION HMOE_FXP_CONTRACT_VERSION
#define HMOE_GLUE_MAX_TOKENS HMOE_FXP_TILE
#define HMOE_GLUE_FORMATS ((1u << HMOE_FORMAT_FP8) | (1u << HMOE_FORMAT_INT8) | \
			   (1u << HMOE_FORMAT_INT4))
/* Mode flags the kernel in hls/ runs (the emulated card's). */
#define HMOE_GLUE_FORMAT_FLAGS HMOE_FORMAT_A16

/* The uapi format numbers and mode bits are the kernel's. */
static_assert(HMOE_FORMAT_FP8 == HMOE_FXP_FP8 && HMOE_FORMAT_INT8 == HMOE_FXP_INT8 &&
	      HMOE_FORMAT_INT4 == HMOE_FXP_INT4);
static_assert(HMOE_FORMAT_A16 == HMOE_FXP_A16 &&
	      (HMOE_FORMAT_MASK | HMOE_FORMAT_FLAGS_ALL) == HMOE_FXP_MODE_MASK);

/* Validates an FFN request's scalars (a well-formed mode, sizes in the kernel's bounds,
 * aligned offsets) and gives its three buffers' sizes in bytes. Whether this card runs
 * the mode is the caller's check. */
static inline int hmoe_glue_ffn_sizes(const struct drm_hmoe_job_ffn *f, u64 *weights_bytes,
				      u64 *x_bytes, u64 *y_bytes)
{
	u64 groups, planes;

	if (f->format & ~(HMOE_FORMAT_MASK | HMOE_FORMAT_FLAGS_ALL) ||
	    !hmoe_fxp_mode_valid((s32)f->format) || !f->n_tokens ||
	    f->n_tokens > HMOE_FXP_TILE || !f->dim || f->dim > HMOE_FXP_MAX_DIM ||
	    !f->inter || f->inter > HMOE_FXP_MAX_INTER)
		return -EINVAL;
	if ((f->weights_offset | f->x_offset | f->y_offset) % HMOE_FXP_LINE_BYTES)
		return -EINVAL;
	groups = hmoe_fxp_groups(f->dim);
	planes = hmoe_fxp_mode_planes(f->format);
	*weights_bytes = (u64)hmoe_fxp_expert_lines(hmoe_fxp_mode_format(f->format), f->dim,
						    f->inter) * HMOE_FXP_LINE_BYTES;
	*x_bytes = (u64)f->n_tokens * groups * (HMOE_FXP_GROUP * planes + sizeof(s32));
	*y_bytes = (u64)f->n_tokens * f->dim * sizeof(s32);
	return 0;
}

/* Bytes of one token's xq planes (the stride between tokens' xq rows). */
static inline u64 hmoe_glue_ffn_xq_token_bytes(const struct drm_hmoe_job_ffn *f)
{
	return (u64)hmoe_fxp_mode_planes(f->format) * hmoe_fxp_groups(f->dim) * HMOE_FXP_GROUP;
}

/* Multiply-accumulates of one job, for the energy and time model: three linears, and
 * one int8 pass over the weights per activation plane (the card's MAC array is int8;
 * A16 is two passes, 2x the MACs of A8). */
static inline u64 hmoe_glue_ffn_macs(const struct drm_hmoe_job_ffn *f)
{
	return 3ull * hmoe_fxp_mode_planes(f->format) * f->n_tokens * f->dim * f->inter;
}

#endif /* HMOE_FXP_GLUE_H */
