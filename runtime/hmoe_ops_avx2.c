/* hmoe_ops_avx2: the AVX2 + FMA kernel table (8 floats per vector, 4x2 register blocks:
 * 8 accumulators + 6 operands fit the 16 ymm registers; body in hmoe_ops_simd.h). */
#include <immintrin.h>
#include <stdint.h>

#include "hmoe_ops.h"

/* Lane masks for the tail: the 8 ints starting at tail_mask_src + 8 - k are k x -1. */
static const int32_t tail_mask_src[16] = { -1, -1, -1, -1, -1, -1, -1, -1 };

static inline __m256i tail_mask(int k)
{
	return _mm256_loadu_si256((const __m256i *)(tail_mask_src + 8 - k));
}

static inline float hsum256(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
	return _mm_cvtss_f32(s);
}

#define VF __m256
#define VW 8
#define MAX_T 2
#define KERNEL(name) avx2_##name
#define V_ZERO() _mm256_setzero_ps()
#define V_SET1(a) _mm256_set1_ps(a)
#define V_LOAD(p) _mm256_loadu_ps(p)
#define V_FMA(a, b, acc) _mm256_fmadd_ps(a, b, acc)
#define V_STORE(p, v) _mm256_storeu_ps(p, v)
#define V_LOAD_TAIL(p, k) _mm256_maskload_ps(p, tail_mask(k))
#define V_STORE_TAIL(p, v, k) _mm256_maskstore_ps(p, tail_mask(k), v)
#define V_HSUM(v) hsum256(v)

#include "hmoe_ops_simd.h"

const struct hmoe_ops_kernels hmoe_ops_avx2 = {
	.name = "avx2",
	.dot = avx2_dot,
	.matmul_rows = avx2_matmul_rows,
	.axpy = avx2_axpy,
};
