/* hmoe_cuda_decode2: the device code of MLA decode version 2, on tensor cores (mma.sync
 * bf16, sm_80+), and the split-K combine kernel that versions 1 and 2 share. Host code:
 * hmoe_cuda_decode.cu (launch, splits) and hmoe_cuda_mla.cu (dispatch, combine launch).
 * Plain CUDA C++ on the primitives of hmoe_cuda_mma.cuh, so tests/gpu/emu can compile
 * it on the host with HMOE_CUDA_EMU (no CUDA headers then).
 *
 * The absorbed form (hmoe_cuda_mla.cu's header) is two GEMMs per sequence that share
 * the cache tile: S (heads x tokens) = Q (heads x D) . K^T and O (heads x L) += P . V,
 * V being the first L columns of the same rows. A CTA owns 64 heads of one sequence and
 * one split of its context, and streams tiles of 32 tokens through a 3-stage cp.async
 * pipeline (16-byte copies, rows addressed through the block table, zero-filled past the
 * end). Its 8 warps are 4 row blocks of 16 heads x 2 halves:
 *   - S: warp (hb, half) scores tokens half*16 .. +16 of the tile for heads hb*16 .. +16
 *     (K as the B operand straight from the tile, D / 16 steps);
 *   - online softmax in the log2 domain on the accumulator registers; the two warps of a
 *     row block exchange their row maxima and their bf16 probabilities through shared
 *     memory (a 64-thread named barrier per row block);
 *   - O: warp (hb, half) accumulates columns half*L/2 .. +L/2 of its 16 heads over all 32
 *     tokens, in registers (up to 32 n-tiles x 4 fp32 per thread), rescaled by alpha.
 * The sum l is taken over the bf16-rounded probabilities that enter P . V, so the
 * output is an exact convex combination of the rounded weights (tests/gpu: error bound
 * 2^-8 x sum p |v - o|). Outputs as version 1: bf16 o_c with one split, else fp32
 * partials (o, m, l) with m in natural-log units for mla_decode_combine.
 * Shared memory: Q 64 x 584 bf16 (73 KB), STAGES x 32 x 584 bf16, P 64 x 40 bf16, and
 * 512 floats: 189 KB with 3 stages (Hopper), 152 KB with 2 (A100). */
#ifndef HMOE_CUDA_DECODE2_CUH
#define HMOE_CUDA_DECODE2_CUH

#include <math.h>
#include <stdint.h>

#ifndef HMOE_CUDA_EMU
#include <cuda_bf16.h>

#include "hmoe_cuda_common.cuh"   /* hcu_to_bf */
#endif
#include "hmoe_cuda_mma.cuh"

#define D2_THREADS 256
#define D2_HG 64                    /* heads per CTA: 4 row blocks of 16 */
#define D2_T 32                     /* tokens per tile */
#define D2_DMAX 576                 /* kv_lora + rope_dim */
#define D2_LMAX 512                 /* kv_lora */
#define D2_ROW (D2_DMAX + 8)        /* 584 bf16 = 73 x 16 bytes (odd: conflict-free ldmatrix) */
#define D2_PROW (D2_T + 8)          /* 40 bf16 = 5 x 16 bytes */
#define D2_NT (D2_LMAX / 2 / 8)     /* n-tiles of 8 columns per warp, at most */

/* Dynamic shared memory of mla_decode_kernel2<stages>, bytes. */
static inline size_t d2_smem_bytes(int stages)
{
	return ((size_t)D2_HG * D2_ROW + (size_t)stages * D2_T * D2_ROW + D2_HG * D2_PROW) * 2 +
	       4 * D2_HG * sizeof(float);
}

/* Tile rows t0 .. t0 + 31 of this split (zero past t_end) into dst, 16 bytes per copy. */
__device__ __forceinline__ void d2_load_tile(__nv_bfloat16 *dst, const uint16_t *pages,
					     const int32_t *bt, int page_size, int D, int chunks,
					     int t0, int t_end)
{
	for (int i = threadIdx.x; i < D2_T * chunks; i += D2_THREADS) {
		int r = i / chunks, c = i - r * chunks, tok = t0 + r;
		bool ok = tok < t_end;
		long row = ok ? (long)bt[tok / page_size] * page_size + tok % page_size : 0;

		hmma_cp16(hmma_smem(dst + r * D2_ROW + c * 8), pages + row * D + c * 8, ok);
	}
}

template <int STAGES>
__global__ void __launch_bounds__(D2_THREADS, 1)
mla_decode_kernel2(uint16_t *out, const uint16_t *q, const uint16_t *pages,
		   const int32_t *block_table, const int32_t *seq_lens, int page_size,
		   int max_pages, int H, int L, int D, float scale_log2, int split_len,
		   int n_splits, float *part_o, float *part_ml)
{
	extern __shared__ __align__(128) unsigned char d2_smem[];
	__nv_bfloat16 *qs = (__nv_bfloat16 *)d2_smem;
	__nv_bfloat16 *kvs = qs + D2_HG * D2_ROW;
	__nv_bfloat16 *ps = kvs + STAGES * D2_T * D2_ROW;
	float *red_m = (float *)(ps + D2_HG * D2_PROW);    /* [half][64 rows] */
	float *red_l = red_m + 2 * D2_HG;
	int b = blockIdx.z, split = blockIdx.y, h0 = blockIdx.x * D2_HG;
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	int hb = warp & 3, half = warp >> 2, g = lane >> 2, t = lane & 3;
	int len = seq_lens[b], chunks = D / 8, lh = L / 2, n_nt = lh / 8;
	int t_begin = split * split_len, t_end = min(len, t_begin + split_len);
	int n_tiles = t_end > t_begin ? (t_end - t_begin + D2_T - 1) / D2_T : 0;
	const int32_t *bt = block_table + (long)b * max_pages;
	float acc[D2_NT][4], m_r[2] = { -INFINITY, -INFINITY }, l_r[2] = { 0.0f, 0.0f };

	/* Q rows of this head group (zero rows past H): the first cp.async group */
	for (int i = threadIdx.x; i < D2_HG * chunks; i += D2_THREADS) {
		int hh = i / chunks, c = i - hh * chunks;
		bool ok = h0 + hh < H;

		hmma_cp16(hmma_smem(qs + hh * D2_ROW + c * 8),
			  q + ((long)b * H + (ok ? h0 + hh : h0)) * D + c * 8, ok);
	}
	hmma_cp_commit();
	for (int s = 0; s < STAGES - 1; s++) {
		if (s < n_tiles)
			d2_load_tile(kvs + s * D2_T * D2_ROW, pages, bt, page_size, D, chunks,
				     t_begin + s * D2_T, t_end);
		hmma_cp_commit();
	}
#pragma unroll
	for (int nt = 0; nt < D2_NT; nt++)
		acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;

	const uint32_t q_addr = hmma_smem(qs + hb * 16 * D2_ROW) + 2 * hmma_lane_a(lane, D2_ROW);
	const uint32_t p_addr = hmma_smem(ps + hb * 16 * D2_PROW) + 2 * hmma_lane_a(lane, D2_PROW);

	for (int it = 0; it < n_tiles; it++) {
		/* tile it has landed for every thread, and every warp is done with tile it - 1,
		 * whose stage the next load reuses */
		hmma_cp_wait<STAGES - 2>();
		__syncthreads();
		if (it + STAGES - 1 < n_tiles)
			d2_load_tile(kvs + ((it + STAGES - 1) % STAGES) * D2_T * D2_ROW, pages, bt,
				     page_size, D, chunks, t_begin + (it + STAGES - 1) * D2_T, t_end);
		hmma_cp_commit();

		const __nv_bfloat16 *ks = kvs + (it % STAGES) * D2_T * D2_ROW;
		const uint32_t k_addr = hmma_smem(ks + half * 16 * D2_ROW) +
					2 * hmma_lane_b_nk(lane, D2_ROW);
		const uint32_t v_addr = hmma_smem(ks + half * lh) + 2 * hmma_lane_b_kn(lane, D2_ROW);
		int t0 = t_begin + it * D2_T;
		float s[2][4] = { { 0.0f, 0.0f, 0.0f, 0.0f }, { 0.0f, 0.0f, 0.0f, 0.0f } };
		float mx[2] = { -INFINITY, -INFINITY }, alpha[2], sum[2] = { 0.0f, 0.0f };

		/* S (16 heads x 16 tokens) = Q . K^T */
		for (int k0 = 0; k0 < D; k0 += 16) {
			uint32_t a[4], kb[4];

			hmma_ldsm_x4(a, q_addr + 2 * k0);
			hmma_ldsm_x4(kb, k_addr + 2 * k0);
			hmma_bf16(s[0], a, kb[0], kb[1]);
			hmma_bf16(s[1], a, kb[2], kb[3]);
		}
		/* scores in log2 units; tokens past the end of the split are -inf */
#pragma unroll
		for (int nt = 0; nt < 2; nt++)
#pragma unroll
			for (int e = 0; e < 4; e++) {
				int tok = t0 + half * 16 + nt * 8 + 2 * t + (e & 1);

				s[nt][e] = tok < t_end ? s[nt][e] * scale_log2 : -INFINITY;
				mx[e >> 1] = fmaxf(mx[e >> 1], s[nt][e]);
			}
#pragma unroll
		for (int r = 0; r < 2; r++) {
			mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
			mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
			if (t == 0)
				red_m[half * D2_HG + hb * 16 + g + 8 * r] = mx[r];
		}
		hmma_bar(1 + hb, 64);
		/* the tile's first token is valid and lies in half 0: m_new is finite */
#pragma unroll
		for (int r = 0; r < 2; r++) {
			int row = hb * 16 + g + 8 * r;
			float m_new = fmaxf(m_r[r], fmaxf(red_m[row], red_m[D2_HG + row]));

			alpha[r] = exp2f(m_r[r] - m_new);
			m_r[r] = m_new;
		}
#pragma unroll
		for (int nt = 0; nt < 2; nt++)
#pragma unroll
			for (int r = 0; r < 2; r++) {
				__nv_bfloat162 p = __floats2bfloat162_rn(exp2f(s[nt][2 * r] - m_r[r]),
									 exp2f(s[nt][2 * r + 1] - m_r[r]));

				sum[r] += __low2float(p) + __high2float(p);
				*(__nv_bfloat162 *)(ps + (hb * 16 + g + 8 * r) * D2_PROW + half * 16 +
						    nt * 8 + 2 * t) = p;
			}
		l_r[0] = l_r[0] * alpha[0] + sum[0];
		l_r[1] = l_r[1] * alpha[1] + sum[1];
		hmma_bar(1 + hb, 64);

		/* O (16 heads x this warp's L/2 columns) = O * alpha + P . V */
		hmma_scale_rows<D2_NT>(acc, alpha);
#pragma unroll
		for (int kk = 0; kk < D2_T / 16; kk++) {
			uint32_t a[4];

			hmma_ldsm_x4(a, p_addr + 2 * kk * 16);
#pragma unroll
			for (int np = 0; np < D2_NT / 2; np++) {
				uint32_t vb[4];

				if (2 * np < n_nt) {
					hmma_ldsm_x4_trans(vb, v_addr + 2 * (kk * 16 * D2_ROW + np * 16));
					hmma_bf16(acc[2 * np], a, vb[0], vb[1]);
					hmma_bf16(acc[2 * np + 1], a, vb[2], vb[3]);
				}
			}
		}
	}
	hmma_cp_wait<0>();

	/* l over both halves of the tile columns */
#pragma unroll
	for (int r = 0; r < 2; r++) {
		l_r[r] += __shfl_xor_sync(0xffffffffu, l_r[r], 1);
		l_r[r] += __shfl_xor_sync(0xffffffffu, l_r[r], 2);
		if (t == 0)
			red_l[half * D2_HG + hb * 16 + g + 8 * r] = l_r[r];
	}
	hmma_bar(1 + hb, 64);
#pragma unroll
	for (int r = 0; r < 2; r++) {
		int row = hb * 16 + g + 8 * r, h = h0 + row;
		float l = red_l[row] + red_l[D2_HG + row];

		if (h >= H)
			continue;
		if (n_splits == 1) {
			float inv = l > 0.0f ? 1.0f / l : 0.0f;
			uint16_t *o = out + ((long)b * H + h) * L + half * lh;

#pragma unroll
			for (int nt = 0; nt < D2_NT; nt++)
				if (nt < n_nt)
					*(uint32_t *)(o + nt * 8 + 2 * t) =
						hmma_pack_bf16(acc[nt][2 * r] * inv,
							       acc[nt][2 * r + 1] * inv);
		} else {
			long slot = ((long)b * n_splits + split) * H + h;
			float *po = part_o + slot * L + half * lh;

#pragma unroll
			for (int nt = 0; nt < D2_NT; nt++)
				if (nt < n_nt)
					*(float2 *)(po + nt * 8 + 2 * t) =
						make_float2(acc[nt][2 * r], acc[nt][2 * r + 1]);
			if (t == 0 && half == 0) {
				part_ml[slot * 2] = m_r[r] * 0.69314718f;  /* log2 -> natural units */
				part_ml[slot * 2 + 1] = l;
			}
		}
	}
}

/* Grid (H, batch). out = sum_s exp(m_s - M) o_s / sum_s exp(m_s - M) l_s, M = max m_s;
 * empty splits (m_s = -inf) weigh nothing. Launched by hmoe_cuda_mla.cu (after either
 * version); static because hmoe_cuda_decode.cu includes this header too. */
static __global__ void mla_decode_combine(uint16_t *out, const float *part_o,
					  const float *part_ml, int H, int L, int n_splits)
{
	int b = blockIdx.y, h = blockIdx.x;
	float M = -INFINITY, den = 0.0f;

	for (int s = 0; s < n_splits; s++)
		M = fmaxf(M, part_ml[(((long)b * n_splits + s) * H + h) * 2]);
	for (int s = 0; s < n_splits; s++) {
		const float *ml = part_ml + (((long)b * n_splits + s) * H + h) * 2;

		if (ml[0] != -INFINITY)
			den += expf(ml[0] - M) * ml[1];
	}
	for (int c = threadIdx.x; c < L; c += blockDim.x) {
		float num = 0.0f;

		for (int s = 0; s < n_splits; s++) {
			long slot = ((long)b * n_splits + s) * H + h;
			float ms = part_ml[slot * 2];

			if (ms != -INFINITY)
				num += expf(ms - M) * part_o[slot * L + c];
		}
		out[((long)b * H + h) * L + c] = hcu_to_bf(den > 0.0f ? num / den : 0.0f);
	}
}

#endif
