/* hmoe_cuda_mma: the tensor-core primitives of the attention kernels (sm_80+ PTX, so
 * they run on Ampere and Hopper alike): bf16 mma.sync m16n8k16 with fp32 accumulators,
 * ldmatrix loads of its fragments from shared memory, and 16-byte cp.async copies.
 *
 * Fragment layouts of mma.m16n8k16 (g = lane / 4, t = lane % 4), each register holding two
 * consecutive bf16 along k (A, B) or two fp32 along n (C):
 *   A (16 x 16, row-major):  a0 (g, 2t), a1 (g + 8, 2t), a2 (g, 2t + 8), a3 (g + 8, 2t + 8)
 *   B (16 x 8, k x n):       b0 (2t, g), b1 (2t + 8, g)
 *   C (16 x 8):              c0, c1 (g, 2t..2t+1), c2, c3 (g + 8, 2t..2t+1)
 * The lane address helpers below give, for a 16 x 16 block at (row0, col0) of a
 * row-major shared array, the address each lane hands to ldmatrix.x4:
 *   hmma_lane_a:      rows = m, cols = k            -> a0..a3
 *   hmma_lane_b_nk:   rows = n (16), cols = k       -> b0, b1 of n-tile 0, b0, b1 of n-tile 1
 *   hmma_lane_b_kn:   rows = k, cols = n (16), .trans -> b0, b1 of n-tile 0, b0, b1 of n-tile 1
 * Rows should be an odd number of 16-byte units apart, so that the 8 rows of one 8 x 8
 * matrix fall in different banks. */
#ifndef HMOE_CUDA_MMA_CUH
#define HMOE_CUDA_MMA_CUH

#include <stdint.h>

/* Element offsets (row * stride + col) of this lane's ldmatrix.x4 row, see above. */
__device__ __forceinline__ int hmma_lane_a(int lane, int stride)
{
	return (lane & 15) * stride + (lane >> 4) * 8;
}

__device__ __forceinline__ int hmma_lane_b_nk(int lane, int stride)
{
	return ((lane & 7) + ((lane >> 4) << 3)) * stride + ((lane >> 3) & 1) * 8;
}

__device__ __forceinline__ int hmma_lane_b_kn(int lane, int stride)
{
	return ((lane & 7) + (((lane >> 3) & 1) << 3)) * stride + (lane >> 4) * 8;
}

/* Two floats rounded to nearest-even bf16, packed low (first) / high (second): the
 * A or B register layout. */
__device__ __forceinline__ uint32_t hmma_pack_bf16(float lo, float hi)
{
	__nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);

	return *(uint32_t *)&v;
}

/* The primitives (inline PTX). With HMOE_CUDA_EMU the kernels' CPU test
 * (tests/gpu/emu) supplies them, with the same signatures, and the CUDA builtins, from
 * its own header included before this one; only the pure helpers above are shared. */
/* Scales N accumulator fragments of m16n8 C layout by their rows' factors: c[i][0..1] lie
 * in row lane / 4 (factor f[0]), c[i][2..3] in row lane / 4 + 8 (f[1]). The online
 * softmax's O * alpha. */
template <int N> __device__ __forceinline__ void hmma_scale_rows(float c[N][4], const float f[2])
{
#pragma unroll
	for (int i = 0; i < N; i++) {
		c[i][0] *= f[0];
		c[i][1] *= f[0];
		c[i][2] *= f[1];
		c[i][3] *= f[1];
	}
}

#ifndef HMOE_CUDA_EMU
__device__ __forceinline__ uint32_t hmma_smem(const void *p)
{
	return (uint32_t)__cvta_generic_to_shared(p);
}

__device__ __forceinline__ void hmma_ldsm_x4(uint32_t r[4], uint32_t addr)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
		     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}

__device__ __forceinline__ void hmma_ldsm_x4_trans(uint32_t r[4], uint32_t addr)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
		     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}

/* c (16 x 8, fp32) += a (16 x 16, bf16) . b (16 x 8, bf16) */
__device__ __forceinline__ void hmma_bf16(float c[4], const uint32_t a[4], uint32_t b0,
					  uint32_t b1)
{
	asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
		     "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
		     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
		     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* 16 bytes global -> shared, asynchronously; with valid == false the 16 bytes are
 * zero-filled and nothing is read (src must still be a valid-looking pointer). */
__device__ __forceinline__ void hmma_cp16(uint32_t dst, const void *src, bool valid)
{
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n"
		     :: "r"(dst), "l"(src), "r"(valid ? 16 : 0));
}

__device__ __forceinline__ void hmma_cp_commit(void)
{
	asm volatile("cp.async.commit_group;\n" ::);
}

template <int N> __device__ __forceinline__ void hmma_cp_wait(void)
{
	asm volatile("cp.async.wait_group %0;\n" :: "n"(N));
}

/* A barrier for `threads` threads (a multiple of 32) under id 1..15 (0 is
 * __syncthreads'). */
__device__ __forceinline__ void hmma_bar(int id, int threads)
{
	asm volatile("bar.sync %0, %1;\n" :: "r"(id), "r"(threads) : "memory");
}
#endif /* HMOE_CUDA_EMU */

#endif
