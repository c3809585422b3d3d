/* SPDX-License-Identifier: GPL-2.0 */
/*
 * hmoe_fxp_glue.h: what the driver needs from the fixed-point expert kernel in hls/
 * (compiled into the module from the same source as the CPU path): its limits, the
 * byte sizes of an expert FFN job's buffers, and the kernel entry point.
 *
 * Buffer layouts of an HMOE_JOB_FFN job (all offsets multiples of HMOE_FXP_LINE_BYTES):
 *   weights: hmoe_fxp_expert_lines(format, dim, inter) lines of 64 bytes (hls/hmoe_fxp.h)
 *   x:       xq int8 (n_tokens, groups(dim) * 128), then xs int32 (n_tokens, groups(dim))
 *   y:       int32 (n_tokens, dim), Q16 fixed point
 */
#ifndef HMOE_FXP_GLUE_H
#define HMOE_FXP_GLUE_H

#include <linux/build_bug.h>
#include <linux/errno.h>
#include <linux/types.h>

#include "hmoe_drm.h"
#include "hmoe_ffn.h"

#ifdef HMOE_FXP_CONTRACT_VERSION
#define HMOE_GLUE_CONTRACT_VERSION HMOE_FXP_CONTRACT_VERSION
#else
#define HMOE_GLUE_CONTRACT_VERSION 1
#endif
#define HMOE_GLUE_MAX_TOKENS HMOE_FXP_TILE
#define HMOE_GLUE_FORMATS ((1u << HMOE_FORMAT_FP8) | (1u << HMOE_FORMAT_INT8) | \
			   (1u << HMOE_FORMAT_INT4))

/* The uapi format numbers are the kernel's. */
static_assert(HMOE_FORMAT_FP8 == HMOE_FXP_FP8 && HMOE_FORMAT_INT8 == HMOE_FXP_INT8 &&
	      HMOE_FORMAT_INT4 == HMOE_FXP_INT4);

/* Validates an FFN request's scalars and gives its three buffers' sizes in bytes. */
static inline int hmoe_glue_ffn_sizes(const struct drm_hmoe_job_ffn *f, u64 *weights_bytes,
				      u64 *x_bytes, u64 *y_bytes)
{
	u64 groups;

	if (f->format >= HMOE_FXP_N_FORMATS || !f->n_tokens ||
	    f->n_tokens > HMOE_FXP_TILE || !f->dim || f->dim > HMOE_FXP_MAX_DIM ||
	    !f->inter || f->inter > HMOE_FXP_MAX_INTER)
		return -EINVAL;
	if ((f->weights_offset | f->x_offset | f->y_offset) % HMOE_FXP_LINE_BYTES)
		return -EINVAL;
	groups = hmoe_fxp_groups(f->dim);
	*weights_bytes = (u64)hmoe_fxp_expert_lines(f->format, f->dim, f->inter) *
			 HMOE_FXP_LINE_BYTES;
	*x_bytes = (u64)f->n_tokens * groups * (HMOE_FXP_GROUP + sizeof(s32));
	*y_bytes = (u64)f->n_tokens * f->dim * sizeof(s32);
	return 0;
}

/* Multiply-accumulates of one job (three linears), for the energy model. */
static inline u64 hmoe_glue_ffn_macs(const struct drm_hmoe_job_ffn *f)
{
	return 3ull * f->n_tokens * f->dim * f->inter;
}

#endif /* HMOE_FXP_GLUE_H */
