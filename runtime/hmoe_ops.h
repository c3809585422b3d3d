/* hmoe_ops: the fp32 CPU kernels of the reference forward pass: matmul / matvec, dot,
 * RMSNorm, RoPE (YaRN), softmax, SiLU.
 *
 * Matmul is the hot loop (decode is a weight-streaming matrix-vector product), so it has
 * SIMD versions (hmoe_ops_avx2.c, hmoe_ops_avx512.c) behind a kernel table chosen at run
 * time with __builtin_cpu_supports; the scalar version in hmoe_ops.c is the oracle.
 *
 * Determinism contract: within one kernel table, a token's output row depends only on
 * that token's input row and the weights; never on how many other tokens share the call,
 * which rows a thread computes, or the thread count. That is what makes a batch of
 * sequences bit-identical to running each alone, and 1 thread bit-identical to N.
 * Different tables (scalar vs AVX-512) sum in different orders and agree to ~1e-6.
 */
#ifndef HMOE_OPS_H
#define HMOE_OPS_H

#include "hmoe_config.h"

struct hmoe_pool;

enum hmoe_ops_isa {
	HMOE_ISA_SCALAR,
	HMOE_ISA_AVX2,    /* AVX2 + FMA */
	HMOE_ISA_AVX512,  /* AVX-512F */
	HMOE_ISA_COUNT
};

/* One implementation of the SIMD-worthy kernels. */
struct hmoe_ops_kernels {
	const char *name;
	/* sum_i a[i] * b[i] */
	float (*dot)(const float *a, const float *b, int n);
	/* y[t * ldy + r] = x[t * ldx .. +in) . w[r * in .. +in) for t in [0, n), r in [r0, r1).
	 * Each weight row is read once per block of up to 4 tokens. */
	void (*matmul_rows)(float *y, int ldy, const float *x, int ldx, const float *w, int n,
			    int in, int r0, int r1);
	/* y[i] += a * x[i] */
	void (*axpy)(float *y, float a, const float *x, int n);
};

extern const struct hmoe_ops_kernels hmoe_ops_scalar;
extern const struct hmoe_ops_kernels hmoe_ops_avx2;   /* defined in hmoe_ops_avx2.c */
extern const struct hmoe_ops_kernels hmoe_ops_avx512; /* defined in hmoe_ops_avx512.c */

/* The table in use: the best this CPU supports, unless $HMOE_ISA (scalar|avx2|avx512)
 * or hmoe_ops_set_isa() picked another. */
const struct hmoe_ops_kernels *hmoe_ops(void);
/* Selects a table; an ISA the CPU lacks is an HMOE_EINPUT error. */
int hmoe_ops_set_isa(enum hmoe_ops_isa isa);
int hmoe_ops_isa_supported(enum hmoe_ops_isa isa);
const char *hmoe_ops_isa_name(enum hmoe_ops_isa isa);

/* ---- linear algebra (current table) ---- */

/* y (n, out) = x (n, in) . w^T, w (out, in) row-major; serial, on the calling thread. */
void hmoe_ops_matmul(float *y, const float *x, const float *w, int n, int in, int out);
/* The same, with the output rows spread over the pool (blocks of rows per work item). */
void hmoe_ops_matmul_par(struct hmoe_pool *pool, float *y, const float *x, const float *w,
			 int n, int in, int out);
static inline float hmoe_ops_dot(const float *a, const float *b, int n)
{
	return hmoe_ops()->dot(a, b, n);
}

/* ---- elementwise ---- */

/* y (n) = x / sqrt(mean(x^2) + eps) * w; y may alias x. */
void hmoe_ops_rmsnorm(float *y, const float *x, const float *w, int n, float eps);
/* In place: x = exp(x - max) / sum. -INFINITY entries become 0. */
void hmoe_ops_softmax(float *x, int n);
/* g (n) = silu(g) * u, silu(v) = v / (1 + exp(-v)). */
void hmoe_ops_silu_mul(float *g, const float *u, int n);

/* ---- RoPE ---- */

/* Rotary frequencies (rope_dim / 2 of them) for cfg: base^(-2i/d), YaRN-blended when
 * cfg->rope_yarn and rope_factor > 1 (MODEL.md sec. 4, model.py formula). */
void hmoe_ops_rope_freqs(const struct hmoe_config *cfg, float *freqs);
/* Attention softmax scale: qk_head_dim^-0.5, times mscale^2 under YaRN with factor > 1,
 * mscale = 0.1 * mscale_all_dim * ln(factor) + 1. */
float hmoe_ops_softmax_scale(const struct hmoe_config *cfg);
/* Rotates x (rope_dim) in place at position pos, interleaved pairs (x[2i], x[2i+1]) by
 * angle f32(pos) * freqs[i] (model.py layout). */
void hmoe_ops_rope(float *x, int rope_dim, int pos, const float *freqs);

#endif
