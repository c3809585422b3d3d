/* hmoe_cuda_prefill2: the device code of MLA prefill version 2, on tensor cores (mma.sync
 * bf16, sm_80+). Host code: hmoe_cuda_prefill.cu. Plain CUDA C++ on the primitives of
 * hmoe_cuda_mma.cuh, so tests/gpu/emu can compile it on the host with HMOE_CUDA_EMU (no
 * CUDA headers then).
 *
 * Naive-form causal attention of one sequence (hmoe_cuda_mla.cu's header), in the
 * FlashAttention-2 shape: a CTA owns 64 queries of one head, its 4 warps 16 query rows
 * each, and streams key/value tiles of 64 tokens through a 2-stage cp.async pipeline
 * (16-byte copies, rows past n and columns past the head dims zero-filled). Per warp:
 *   - Q (16 x qk_dim) as A fragments in registers, loaded once by ldmatrix;
 *   - S (16 x 64) = Q . K^T in registers, K as the B operand straight from the tile
 *     (stored [token][dim]: non-transposed ldmatrix);
 *   - online softmax in the log2 domain on the accumulator registers: a row lives in the
 *     4 lanes of a quad (max by shuffles); the probabilities are rounded to bf16 and the
 *     C fragments of two adjacent 8-key n-tiles are exactly the A fragment of one 16-key
 *     step, so P never leaves the registers;
 *   - O (16 x v_dim, fp32, up to 16 n-tiles x 4 per thread) += P . V in registers, V
 *     stored [token][dim] (transposed ldmatrix), rescaled by alpha per row per tile.
 * The sum l is taken over the bf16-rounded probabilities that enter P . V, so the
 * output is an exact convex combination of the rounded weights (tests/gpu: error bound
 * 2^-8 x sum p |v - o|, bf16's unit roundoff times the spread of the values). Only key
 * tiles 0 .. the CTA's own tile are visited; only that last (diagonal) tile is masked.
 * The grid is (query tiles, heads), the biggest query tiles first (blockIdx.x reversed)
 * for the causal load balance; the CTAs running together then mostly share a head, so
 * its keys and values stay in L2.
 * Requires qk_dim and v_dim multiples of 8 (16-byte rows), padded to 16 with zeros in
 * shared memory, and 16-byte aligned q, k, v. Shared memory: Q 64 x 200 bf16 and two
 * stages of K 64 x 200 and V 64 x 136 bf16: 109 KB, two CTAs per SM on Hopper. */
#ifndef HMOE_CUDA_PREFILL2_CUH
#define HMOE_CUDA_PREFILL2_CUH

#include <math.h>
#include <stdint.h>

#ifndef HMOE_CUDA_EMU
#include <cuda_bf16.h>
#endif
#include "hmoe_cuda_mma.cuh"

#define P2_THREADS 128
#define P2_BQ 64                    /* queries per CTA: 4 warps x 16 rows */
#define P2_BK 64                    /* keys per tile (== P2_BQ: one diagonal tile) */
#define P2_DQK 192
#define P2_DV 128
#define P2_QROW (P2_DQK + 8)        /* 200 bf16 = 25 x 16 bytes (odd: conflict-free ldmatrix) */
#define P2_VROW (P2_DV + 8)         /* 136 bf16 = 17 x 16 bytes */
#define P2_KSTEPS (P2_DQK / 16)     /* k16 steps of S, at most */
#define P2_NT (P2_DV / 8)           /* n-tiles of 8 columns of O, at most */
#define P2_ST (P2_BK / 8)           /* n-tiles of 8 keys of S */
#define P2_Q_BYTES (P2_BQ * P2_QROW * 2)
#define P2_K_BYTES (P2_BK * P2_QROW * 2)
#define P2_V_BYTES (P2_BK * P2_VROW * 2)
#define P2_SMEM (P2_Q_BYTES + 2 * P2_K_BYTES + 2 * P2_V_BYTES)

/* 64 rows tok0 .. tok0 + 63 of head h of a (n, H, dim) bf16 tensor into shared memory at
 * dst (row stride row_bytes), 16 bytes per copy: chunks c < dim / 8 of rows < n are
 * copied, the rest up to pad_chunks (dim padded to 16) is zero-filled. CH: the most
 * chunks a row can have. Every thread issues its copies; the caller commits. */
template <int CH>
__device__ __forceinline__ void p2_load_rows(uint32_t dst, int row_bytes, const uint16_t *src,
					     int tok0, int n, int H, int h, int dim,
					     int pad_chunks)
{
	int chunks = dim / 8;

#pragma unroll
	for (int it = 0; it < P2_BK * CH / P2_THREADS; it++) {
		int i = threadIdx.x + it * P2_THREADS, r = i / CH, c = i - r * CH, tok = tok0 + r;
		bool ok = tok < n && c < chunks;

		if (c < pad_chunks)
			hmma_cp16(dst + r * row_bytes + c * 16,
				  ok ? src + ((long)tok * H + h) * dim + c * 8 : src, ok);
	}
}

__global__ void __launch_bounds__(P2_THREADS, 2)
mla_prefill_kernel2(uint16_t *out, const uint16_t *q, const uint16_t *k, const uint16_t *v,
		    int n, int H, int dqk, int dv, float scale_log2)
{
	extern __shared__ __align__(128) unsigned char p2_smem[];
	const uint32_t qs = hmma_smem(p2_smem);
	const uint32_t ks = qs + P2_Q_BYTES;            /* stage s at + s * P2_K_BYTES */
	const uint32_t vs = ks + 2 * P2_K_BYTES;        /* stage s at + s * P2_V_BYTES */
	const int qt = gridDim.x - 1 - blockIdx.x, h = blockIdx.y, q0 = qt * P2_BQ;
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
	const int kpad = (dqk + 15) / 16, vpad = (dv + 15) / 16;   /* 16-wide steps */
	const int row0 = q0 + warp * 16 + g, row1 = row0 + 8;       /* this thread's rows */
	uint32_t qf[P2_KSTEPS][4];
	float o[P2_NT][4], m[2] = { -INFINITY, -INFINITY }, l[2] = { 0.0f, 0.0f };

	/* Q and key/value tile 0: one cp.async group */
	p2_load_rows<P2_DQK / 8>(qs, P2_QROW * 2, q, q0, n, H, h, dqk, 2 * kpad);
	p2_load_rows<P2_DQK / 8>(ks, P2_QROW * 2, k, 0, n, H, h, dqk, 2 * kpad);
	p2_load_rows<P2_DV / 8>(vs, P2_VROW * 2, v, 0, n, H, h, dv, 2 * vpad);
	hmma_cp_commit();
#pragma unroll
	for (int j = 0; j < P2_NT; j++)
		o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
	hmma_cp_wait<0>();
	__syncthreads();
	{
		const uint32_t a = qs + 2 * (warp * 16 * P2_QROW + hmma_lane_a(lane, P2_QROW));

#pragma unroll
		for (int kk = 0; kk < P2_KSTEPS; kk++) {
			if (kk < kpad)
				hmma_ldsm_x4(qf[kk], a + kk * 32);
			else
				qf[kk][0] = qf[kk][1] = qf[kk][2] = qf[kk][3] = 0;
		}
	}

	const uint32_t k_lane = ks + 2 * hmma_lane_b_nk(lane, P2_QROW);
	const uint32_t v_lane = vs + 2 * hmma_lane_b_kn(lane, P2_VROW);

	for (int kt = 0; kt <= qt; kt++) {
		const int st = kt & 1;

		/* the next tile into the other stage: every warp finished reading it (the
		 * barrier at the end of the previous iteration) */
		if (kt < qt) {
			p2_load_rows<P2_DQK / 8>(ks + (st ^ 1) * P2_K_BYTES, P2_QROW * 2, k,
						 (kt + 1) * P2_BK, n, H, h, dqk, 2 * kpad);
			p2_load_rows<P2_DV / 8>(vs + (st ^ 1) * P2_V_BYTES, P2_VROW * 2, v,
						(kt + 1) * P2_BK, n, H, h, dv, 2 * vpad);
			hmma_cp_commit();
		}

		/* S (16 x 64) = Q . K^T: per k16 step, 4 ldmatrix.x4 of 16 keys x 16 dims */
		float s[P2_ST][4];
		const uint32_t kb = k_lane + st * P2_K_BYTES;

#pragma unroll
		for (int j = 0; j < P2_ST; j++)
			s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
		for (int kk = 0; kk < P2_KSTEPS; kk++) {
			if (kk >= kpad)
				break;
#pragma unroll
			for (int nb = 0; nb < P2_ST / 2; nb++) {
				uint32_t b[4];

				hmma_ldsm_x4(b, kb + 2 * (nb * 16 * P2_QROW + kk * 16));
				hmma_bf16(s[2 * nb], qf[kk], b[0], b[1]);
				hmma_bf16(s[2 * nb + 1], qf[kk], b[2], b[3]);
			}
		}

		/* log2-domain scores; on the diagonal tile key > query is masked (that also
		 * masks keys >= n for every row < n; rows >= n see zero-filled keys and
		 * values, finite, and are never stored). Element e of n-tile j: key kt * 64 +
		 * 8 j + 2 t + (e & 1), row row0 (e < 2) or row1. */
		float mx[2] = { -INFINITY, -INFINITY };
		const int key0 = kt * P2_BK + 2 * t;

#pragma unroll
		for (int j = 0; j < P2_ST; j++)
#pragma unroll
			for (int e = 0; e < 4; e++) {
				float x = s[j][e] * scale_log2;

				if (kt == qt && key0 + 8 * j + (e & 1) > (e < 2 ? row0 : row1))
					x = -INFINITY;
				s[j][e] = x;
				mx[e >> 1] = fmaxf(mx[e >> 1], x);
			}

		float alpha[2], mu[2], rs[2] = { 0.0f, 0.0f };

#pragma unroll
		for (int r = 0; r < 2; r++) {
			float mn;

			mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
			mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
			mn = fmaxf(m[r], mx[r]);
			/* every row has an unmasked key in every tile, so mn is finite; the
			 * guard keeps -inf - -inf out regardless */
			mu[r] = mn == -INFINITY ? 0.0f : mn;
			alpha[r] = exp2f(m[r] - mu[r]);
			m[r] = mn;
		}

		/* P in bf16 as the A fragments of the 4 k16 steps of P . V: step ks takes
		 * n-tiles 2 ks (a0: row g, a1: row g + 8) and 2 ks + 1 (a2, a3); the row sums
		 * add the rounded values */
		uint32_t pa[P2_BK / 16][4];

#pragma unroll
		for (int j = 0; j < P2_ST; j++) {
			__nv_bfloat162 b01 = __floats2bfloat162_rn(exp2f(s[j][0] - mu[0]),
								   exp2f(s[j][1] - mu[0]));
			__nv_bfloat162 b23 = __floats2bfloat162_rn(exp2f(s[j][2] - mu[1]),
								   exp2f(s[j][3] - mu[1]));
			float2 f01 = __bfloat1622float2(b01), f23 = __bfloat1622float2(b23);

			rs[0] += f01.x + f01.y;
			rs[1] += f23.x + f23.y;
			pa[j >> 1][2 * (j & 1)] = *(uint32_t *)&b01;
			pa[j >> 1][2 * (j & 1) + 1] = *(uint32_t *)&b23;
		}
		/* l is this thread's partial sum (its 2 of every 8 columns; alpha is the same
		 * across the quad), reduced over the quad at the end */
		l[0] = l[0] * alpha[0] + rs[0];
		l[1] = l[1] * alpha[1] + rs[1];
		hmma_scale_rows<P2_NT>(o, alpha);

		/* O (16 x v) += P (16 x 64) . V (64 x v): per k16 step and 16 columns, one
		 * transposed ldmatrix.x4 = the B fragments of two n-tiles */
		const uint32_t vb = v_lane + st * P2_V_BYTES;

#pragma unroll
		for (int kk = 0; kk < P2_BK / 16; kk++)
#pragma unroll
			for (int np = 0; np < P2_NT / 2; np++) {
				uint32_t b[4];

				if (np >= vpad)
					break;
				hmma_ldsm_x4_trans(b, vb + 2 * (kk * 16 * P2_VROW + np * 16));
				hmma_bf16(o[2 * np], pa[kk], b[0], b[1]);
				hmma_bf16(o[2 * np + 1], pa[kk], b[2], b[3]);
			}

		/* the next tile has landed for every thread, and every warp is done with
		 * this stage before the next iteration refills it */
		if (kt < qt) {
			hmma_cp_wait<0>();
			__syncthreads();
		}
	}

	/* out = O / l, rounded to bf16, two columns per 32-bit store */
#pragma unroll
	for (int r = 0; r < 2; r++) {
		l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
		l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
	}
	const float inv0 = l[0] > 0.0f ? 1.0f / l[0] : 0.0f;
	const float inv1 = l[1] > 0.0f ? 1.0f / l[1] : 0.0f;

	if (row0 < n) {
		uint16_t *o0 = out + ((long)row0 * H + h) * dv + 2 * t;

#pragma unroll
		for (int j = 0; j < P2_NT; j++)
			if (j * 8 < dv)
				*(uint32_t *)(o0 + 8 * j) = hmma_pack_bf16(o[j][0] * inv0, o[j][1] * inv0);
	}
	if (row1 < n) {
		uint16_t *o1 = out + ((long)row1 * H + h) * dv + 2 * t;

#pragma unroll
		for (int j = 0; j < P2_NT; j++)
			if (j * 8 < dv)
				*(uint32_t *)(o1 + 8 * j) = hmma_pack_bf16(o[j][2] * inv1, o[j][3] * inv1);
	}
}

#endif
