/* hmoe_ops_avx512: the AVX-512F kernel table (16 floats per vector, 4x4 register blocks;
 * body in hmoe_ops_simd.h). Compiled with AVX-512 flags; used only when the CPU has it. */
#include <immintrin.h>

#include "hmoe_ops.h"

#define VF __m512
#define VW 16
#define MAX_T 4
#define KERNEL(name) avx512_##name
#define V_ZERO() _mm512_setzero_ps()
#define V_SET1(a) _mm512_set1_ps(a)
#define V_LOAD(p) _mm512_loadu_ps(p)
#define V_FMA(a, b, acc) _mm512_fmadd_ps(a, b, acc)
#define V_STORE(p, v) _mm512_storeu_ps(p, v)
#define V_TAIL_MASK(k) ((__mmask16)((1u << (k)) - 1u))
#define V_LOAD_TAIL(p, k) _mm512_maskz_loadu_ps(V_TAIL_MASK(k), p)
#define V_STORE_TAIL(p, v, k) _mm512_mask_storeu_ps(p, V_TAIL_MASK(k), v)
#define V_HSUM(v) _mm512_reduce_add_ps(v)

#include "hmoe_ops_simd.h"

const struct hmoe_ops_kernels hmoe_ops_avx512 = {
	.name = "avx512",
	.dot = avx512_dot,
	.matmul_rows = avx512_matmul_rows,
	.axpy = avx512_axpy,
};
