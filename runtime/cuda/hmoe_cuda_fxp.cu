/* hmoe_cuda_fxp: the activation quantiser of the fixed-point expert datapath on the GPU,
 * so routed tokens leave the GPU as the cards' int8 planes + scale-word input
 * (docs/fxp.md, hls/hmoe_fxp.h): one plane (mode A8, |q| <= 127) or two (A16, q =
 * 128 * hi + lo, |q| <= 16256). Bit-identical to the CPU's hmoe_fxp_quant_x
 * (runtime/hmoe_fxp_pack.c) by construction: the one float operation is the exact
 * scaling x * 2^32 (a single __fmul_rn, no contraction possible) truncated toward zero,
 * then the same integer steps as hmoe_fxp_quant_group (amax, k, m, round half away from
 * zero, the hi/lo split). The test compares against the CPU function itself, bit for
 * bit, in both modes. */
#include "hmoe_cuda.h"
#include "hmoe_cuda_common.cuh"
#include "hmoe_fxp.h"

/* Written against version 2 of the contract (version 3 changed only the int4 weight
 * layout, not the quantiser): a change there must be re-checked here. */
static_assert(HMOE_FXP_CONTRACT_VERSION == 3, "docs/fxp.md changed: re-check the GPU quantiser");

#define FXP_WARPS 8  /* (token, group) pairs per block, one warp each */

/* hmoe_fxp_f32_to_q32: NaN -> 0, |x| >= 2^30 saturates to +-2^62, else trunc(x * 2^32). */
__device__ int64_t fxp_f32_to_q32(float x)
{
	if (x != x)
		return 0;
	if (x >= 1073741824.0f)
		return HMOE_FXP_ACT_IN_MAX;
	if (x <= -1073741824.0f)
		return -HMOE_FXP_ACT_IN_MAX;
	return (int64_t)__fmul_rn(x, 4294967296.0f);
}

/* One warp per (token, group of 128); lane handles elements lane + 32 j (coalesced).
 * xq (n, planes, groups * 128): token t's hi plane, then its lo plane (planes == 2). */
__global__ void fxp_quant_x_kernel1(int8_t *xq, int32_t *xs, const void *x, int x_f32, int n,
				    int dim, int groups, int planes)
{
	/* levels per sign, and bitlen(qmax * 255): 32385 -> 15 bits, 4145280 -> 22 */
	const uint64_t qmax = planes == 2 ? HMOE_FXP_ACT2_QMAX : HMOE_FXP_ACT_QMAX;
	const int qmax_bits = planes == 2 ? 22 : 15;
	long pair = (long)blockIdx.x * FXP_WARPS + (threadIdx.x >> 5);
	int lane = threadIdx.x & 31;
	uint64_t mag[4], amax = 0, m, den;
	int64_t v[4];
	int t, g, k0, cnt, k;

	if (pair >= (long)n * groups)
		return;
	t = (int)(pair / groups);
	g = (int)(pair % groups);
	k0 = g * HMOE_FXP_GROUP;
	cnt = min(HMOE_FXP_GROUP, dim - k0);
	for (int j = 0; j < 4; j++) {
		int i = lane + 32 * j;
		long at = (long)t * dim + k0 + i;
		float f = 0.0f;

		if (i < cnt)
			f = x_f32 ? ((const float *)x)[at] : hcu_bf((const uint16_t *)x, at);
		v[j] = i < cnt ? fxp_f32_to_q32(f) : 0;
		mag[j] = v[j] < 0 ? 0 - (uint64_t)v[j] : (uint64_t)v[j];
		if (mag[j] > (uint64_t)HMOE_FXP_ACT_IN_MAX)
			mag[j] = (uint64_t)HMOE_FXP_ACT_IN_MAX;
		amax = mag[j] > amax ? mag[j] : amax;
	}
	for (int o = 16; o > 0; o >>= 1) {
		uint64_t other = __shfl_xor_sync(0xffffffffu, (unsigned long long)amax, o);

		amax = other > amax ? other : amax;
	}
	long plane = (long)groups * HMOE_FXP_GROUP;
	int8_t *hi = xq + (long)t * planes * plane + (long)g * HMOE_FXP_GROUP;
	int8_t *lo = hi + plane; /* planes == 2 only */

	if (amax == 0) {
		for (int j = 0; j < 4; j++) {
			hi[lane + 32 * j] = 0;
			if (planes == 2)
				lo[lane + 32 * j] = 0;
		}
		if (lane == 0)
			xs[(long)t * groups + g] = 0;
		return;
	}
	/* smallest k with amax <= qmax * 255 * 2^k, then m = ceil(amax / (qmax * 2^k)) */
	k = (64 - __clzll((long long)amax)) - qmax_bits;
	if (k >= 0 ? amax > (qmax * 255) << k : (amax << -k) > qmax * 255)
		k++;
	if (k >= 0) {
		den = qmax << k;
		m = (amax + den - 1) / den;
	} else {
		m = ((amax << -k) + qmax - 1) / qmax;
	}
	for (int j = 0; j < 4; j++) {
		int i = lane + 32 * j;
		uint64_t num = k >= 0 ? mag[j] : mag[j] << -k, d = k >= 0 ? m << k : m, r;

		r = (2 * num + d) / (2 * d);  /* round half away from zero of |v| / (m 2^k) */
		if (i >= cnt)
			r = 0;
		if (planes == 2) {
			/* |q| = 128 q_hi + q_lo, q_hi = round half up of |q| / 128 */
			int32_t q_hi = (int32_t)((r + 64) >> HMOE_FXP_PLANE_SHIFT);
			int32_t q_lo = (int32_t)r - (q_hi << HMOE_FXP_PLANE_SHIFT);

			hi[i] = (int8_t)(v[j] < 0 ? -q_hi : q_hi);
			lo[i] = (int8_t)(v[j] < 0 ? -q_lo : q_lo);
		} else {
			hi[i] = (int8_t)(v[j] < 0 ? -(int32_t)r : (int32_t)r);
		}
	}
	if (lane == 0)
		xs[(long)t * groups + g] = (HMOE_FXP_F_ACT - k) * 65536 + (int32_t)m;
}

int hcu_fxp_quant_x(int8_t *xq, int32_t *xs, const void *x, int x_f32, int n, int dim,
		    int planes)
{
	int groups = (dim + HMOE_FXP_GROUP - 1) / HMOE_FXP_GROUP;
	int ret = hcu_need_init();

	if (ret)
		return ret;
	HCU_ARG(n >= 0 && dim > 0 && (planes == 1 || planes == 2),
		"fxp_quant_x: n %d, dim %d, planes %d", n, dim, planes);
	if (n == 0)
		return 0;
	fxp_quant_x_kernel1<<<hcu_blocks((long)n * groups, FXP_WARPS), 32 * FXP_WARPS, 0,
			      hcu.stream>>>(xq, xs, x, x_f32, n, dim, groups, planes);
	CUDA_CHECK_LAUNCH();
	return 0;
}
