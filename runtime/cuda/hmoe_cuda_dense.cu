/* hmoe_cuda_dense: the dense kernels of the GPU backend: RMSNorm, interleaved YaRN RoPE,
 * embedding gather, bf16 GEMM (cuBLAS: prefill projections, lm_head, router gate), and
 * the FP8 block-scaled weights read directly (decode matvec, dequant for prefill).
 * CPU references: hmoe_cuda_ref.c (same names with hcu_ref_ prefix). */
#include <math.h>

#include "hmoe_cuda.h"
#include "hmoe_cuda_common.cuh"

/* ---- RMSNorm ---- */

/* One block per row. Two passes over the row: the fp32 sum of squares, then each thread
 * rewrites the elements it read, so out may alias x. Same float operations as the
 * reference except the order of the sum: r = 1 / sqrtf(ss / dim + eps) (IEEE sqrt and
 * division: no fast-math), y = bf16(bf16(x * r) * w). */
__global__ void rmsnorm_kernel1(uint16_t *out, int out_stride, const uint16_t *x, int x_stride,
				const uint16_t *w, int dim, float eps)
{
	__shared__ float sbuf[32];
	const uint16_t *xr = x + (long)blockIdx.x * x_stride;
	uint16_t *yr = out + (long)blockIdx.x * out_stride;
	float ss = 0.0f, r;

	for (int i = threadIdx.x; i < dim; i += blockDim.x) {
		float v = hcu_bf(xr, i);

		ss += v * v;
	}
	ss = hcu_block_sum(ss, sbuf);
	r = 1.0f / sqrtf(ss / (float)dim + eps);
	for (int i = threadIdx.x; i < dim; i += blockDim.x) {
		float n = __bfloat162float(__float2bfloat16_rn(__fmul_rn(hcu_bf(xr, i), r)));

		yr[i] = hcu_to_bf(__fmul_rn(n, hcu_bf(w, i)));
	}
}

int hcu_rmsnorm(void *out, int out_stride, const void *x, int x_stride, const void *w,
		int n_rows, int dim, float eps)
{
	int ret = hcu_need_init();

	if (ret)
		return ret;
	HCU_ARG(n_rows >= 0 && dim > 0 && x_stride >= dim && out_stride >= dim,
		"rmsnorm: n_rows %d, dim %d, strides %d/%d", n_rows, dim, x_stride, out_stride);
	if (n_rows == 0)
		return 0;
	rmsnorm_kernel1<<<n_rows, 256, 0, hcu.stream>>>((uint16_t *)out, out_stride,
							(const uint16_t *)x, x_stride,
							(const uint16_t *)w, dim, eps);
	CUDA_CHECK_LAUNCH();
	return 0;
}

/* ---- elementwise ---- */

__global__ void add_kernel1(uint16_t *y, const uint16_t *x, long n)
{
	long i = (long)blockIdx.x * blockDim.x + threadIdx.x;

	if (i < n)
		y[i] = hcu_to_bf(__fadd_rn(hcu_bf(y, i), hcu_bf(x, i)));
}

int hcu_add(void *y, const void *x, long n)
{
	int ret = hcu_need_init();

	if (ret)
		return ret;
	HCU_ARG(n >= 0, "add: n %ld", n);
	if (n == 0)
		return 0;
	add_kernel1<<<hcu_blocks(n, 256), 256, 0, hcu.stream>>>((uint16_t *)y,
								(const uint16_t *)x, n);
	CUDA_CHECK_LAUNCH();
	return 0;
}

__global__ void silu_mul_kernel1(uint16_t *g, const uint16_t *u, long n)
{
	long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
	float v;

	if (i >= n)
		return;
	v = hcu_bf(g, i);
	g[i] = hcu_to_bf(__fmul_rn(__fdiv_rn(v, __fadd_rn(1.0f, expf(-v))), hcu_bf(u, i)));
}

int hcu_silu_mul(void *g, const void *u, long n)
{
	int ret = hcu_need_init();

	if (ret)
		return ret;
	HCU_ARG(n >= 0, "silu_mul: n %ld", n);
	if (n == 0)
		return 0;
	silu_mul_kernel1<<<hcu_blocks(n, 256), 256, 0, hcu.stream>>>((uint16_t *)g,
								     (const uint16_t *)u, n);
	CUDA_CHECK_LAUNCH();
	return 0;
}

/* ---- RoPE ---- */

/* One thread per (token, head, pair). model.py: x.float() times the complex64
 * freqs_cis = polar(1, f32(pos) * freq), then bf16. The products are kept unfused so
 * the rounding matches the CPU's (cosf/sinf still differ by an ulp or two). */
__global__ void rope_kernel1(uint16_t *x, int n_tokens, int token_stride, int n_heads,
			     int head_stride, int offset, int half, const int32_t *pos,
			     const float *freqs)
{
	long id = (long)blockIdx.x * blockDim.x + threadIdx.x;
	long per_token = (long)n_heads * half;
	int t, h, i;
	float a, c, s, x0, x1;
	uint16_t *p;

	if (id >= (long)n_tokens * per_token)
		return;
	t = (int)(id / per_token);
	h = (int)((id % per_token) / half);
	i = (int)(id % half);
	p = x + (long)t * token_stride + (long)h * head_stride + offset + 2 * i;
	a = __fmul_rn((float)pos[t], freqs[i]);
	c = cosf(a);
	s = sinf(a);
	x0 = hcu_bf(p, 0);
	x1 = hcu_bf(p, 1);
	p[0] = hcu_to_bf(__fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s)));
	p[1] = hcu_to_bf(__fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c)));
}

int hcu_rope(void *x, int n_tokens, int token_stride, int n_heads, int head_stride,
	     int offset, int rope_dim, const int32_t *pos, const float *freqs)
{
	long n;
	int ret = hcu_need_init();

	if (ret)
		return ret;
	HCU_ARG(rope_dim > 0 && rope_dim % 2 == 0, "rope: rope_dim %d must be even", rope_dim);
	HCU_ARG(n_tokens >= 0 && n_heads > 0 && offset >= 0,
		"rope: n_tokens %d, n_heads %d, offset %d", n_tokens, n_heads, offset);
	n = (long)n_tokens * n_heads * (rope_dim / 2);
	if (n == 0)
		return 0;
	rope_kernel1<<<hcu_blocks(n, 256), 256, 0, hcu.stream>>>(
		(uint16_t *)x, n_tokens, token_stride, n_heads, head_stride, offset,
		rope_dim / 2, pos, freqs);
	CUDA_CHECK_LAUNCH();
	return 0;
}

/* ---- embedding ---- */

__global__ void embed_kernel1(uint16_t *out, const uint16_t *table, const int32_t *ids,
			      int dim, int vocab)
{
	int id = ids[blockIdx.x];
	uint16_t *o = out + (long)blockIdx.x * dim;

	for (int i = threadIdx.x; i < dim; i += blockDim.x)
		o[i] = (id >= 0 && id < vocab) ? table[(long)id * dim + i] : (uint16_t)0x7fc0;
}

int hcu_embed(void *out, const void *table, const int32_t *ids, int n, int dim, int vocab)
{
	int ret = hcu_need_init();

	if (ret)
		return ret;
	HCU_ARG(n >= 0 && dim > 0 && vocab > 0, "embed: n %d, dim %d, vocab %d", n, dim, vocab);
	if (n == 0)
		return 0;
	embed_kernel1<<<n, 256, 0, hcu.stream>>>((uint16_t *)out, (const uint16_t *)table, ids,
						 dim, vocab);
	CUDA_CHECK_LAUNCH();
	return 0;
}

/* ---- bf16 GEMM (cuBLAS) ---- */

/* Row-major y (n, out) = x (n, in) . W^T is, in cuBLAS's column-major terms,
 * y^T (out x n) = W (col-major in x out, transposed) . x^T (col-major in x n). */
int hcu_gemm_bf16(void *y, int y_f32, const void *x, const void *w, int n, int in, int out)
{
	const float alpha = 1.0f, beta = 0.0f;
	int ret = hcu_need_init();

	if (ret)
		return ret;
	HCU_ARG(n >= 0 && in > 0 && out > 0, "gemm_bf16: n %d, in %d, out %d", n, in, out);
	if (n == 0)
		return 0;
	CUBLAS_CHECK(cublasGemmEx(hcu.blas, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &alpha,
				  w, CUDA_R_16BF, in, x, CUDA_R_16BF, in, &beta,
				  y, y_f32 ? CUDA_R_32F : CUDA_R_16BF, out,
				  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
	return 0;
}

/* ---- FP8 e4m3 block-scaled weights ---- */

/* Exact value of an e4m3fn code: 1 sign, 4 exponent bits (bias 7), 3 mantissa bits,
 * subnormals m * 2^-9, S.1111.111 NaN, no infinities. */
__device__ float e4m3_value(unsigned c)
{
	unsigned e = (c >> 3) & 15u, m = c & 7u;
	float v;

	if (e == 15u && m == 7u)
		return __int_as_float(0x7fc00000);
	v = e ? ldexpf((float)(8u + m), (int)e - 10) : ldexpf((float)m, -9);
	return (c & 0x80u) ? -v : v;
}

#define FP8_MAXT 8          /* tokens per launch: each weight byte read once for 8 */
#define FP8_WARPS 8         /* output rows per block, one warp each */
#define FP8_LANE_CODES 16   /* codes per lane per step: one 16-byte load */

/* One warp per output row. Per step the warp reads 512 consecutive codes of the row
 * (16 per lane, 16-byte loads); a lane's 16 codes lie in one 128-wide scale block, so
 * it multiplies its partial dot by that block's scale before accumulating. Byte traffic:
 * out * in codes + n * in * 2 bytes of x (cached) + the scales. */
__global__ void fp8_matvec_kernel1(void *y, int y_f32, const uint16_t *x,
				   const uint8_t *codes, const float *scale, int nt, int in,
				   int out)
{
	__shared__ float lut[256];
	int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	int row = blockIdx.x * FP8_WARPS + warp;
	int n_kb = (in + 127) / 128;
	float acc[FP8_MAXT];

	for (int i = threadIdx.x; i < 256; i += blockDim.x)
		lut[i] = e4m3_value((unsigned)i);
	__syncthreads();
	if (row >= out)
		return;
	for (int t = 0; t < FP8_MAXT; t++)
		acc[t] = 0.0f;
	const uint8_t *wr = codes + (long)row * in;
	const float *sr = scale + (long)(row / 128) * n_kb;
	for (int base = lane * FP8_LANE_CODES; base < in; base += 32 * FP8_LANE_CODES) {
		uint4 raw = *(const uint4 *)(wr + base);
		const uint8_t *c = (const uint8_t *)&raw;
		float wv[FP8_LANE_CODES];
		float s = sr[base / 128];

		for (int j = 0; j < FP8_LANE_CODES; j++)
			wv[j] = lut[c[j]];
#pragma unroll
		for (int t = 0; t < FP8_MAXT; t++) {
			if (t < nt) {
				const uint16_t *xt = x + (long)t * in + base;
				float part = 0.0f;

				for (int j = 0; j < FP8_LANE_CODES; j++)
					part += wv[j] * hcu_bf(xt, j);
				acc[t] += part * s;
			}
		}
	}
#pragma unroll
	for (int t = 0; t < FP8_MAXT; t++) {
		if (t < nt) {
			float v = hcu_warp_sum(acc[t]);

			if (lane == 0) {
				if (y_f32)
					((float *)y)[(long)t * out + row] = v;
				else
					((uint16_t *)y)[(long)t * out + row] = hcu_to_bf(v);
			}
		}
	}
}

int hcu_fp8_matvec(void *y, int y_f32, const void *x, const uint8_t *codes,
		   const float *scale, int n, int in, int out)
{
	int ret = hcu_need_init();

	if (ret)
		return ret;
	HCU_ARG(n >= 0 && in > 0 && out > 0, "fp8_matvec: n %d, in %d, out %d", n, in, out);
	HCU_ARG(in % FP8_LANE_CODES == 0, "fp8_matvec: in %d is not a multiple of %d", in,
		FP8_LANE_CODES);
	HCU_ARG(((uintptr_t)codes & 15) == 0,
		"fp8_matvec: codes must be 16-byte aligned");
	for (int t0 = 0; t0 < n; t0 += FP8_MAXT) {
		int nt = n - t0 < FP8_MAXT ? n - t0 : FP8_MAXT;
		size_t esz = y_f32 ? 4 : 2;

		fp8_matvec_kernel1<<<hcu_blocks(out, FP8_WARPS), 32 * FP8_WARPS, 0, hcu.stream>>>(
			(char *)y + (size_t)t0 * out * esz, y_f32,
			(const uint16_t *)x + (long)t0 * in, codes, scale, nt, in, out);
		CUDA_CHECK_LAUNCH();
	}
	return 0;
}

/* One thread per weight: bf16(e4m3(code) * scale), the one rounding of kernel.py's
 * weight_dequant, so the result is bit-identical to the CPU's. */
__global__ void fp8_dequant_kernel1(uint16_t *w, const uint8_t *codes, const float *scale,
				    int rows, int cols)
{
	long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
	int n_kb = (cols + 127) / 128, r, c;

	if (i >= (long)rows * cols)
		return;
	r = (int)(i / cols);
	c = (int)(i % cols);
	w[i] = hcu_to_bf(__fmul_rn(e4m3_value(codes[i]), scale[(long)(r / 128) * n_kb + c / 128]));
}

int hcu_fp8_dequant(void *w, const uint8_t *codes, const float *scale, int rows, int cols)
{
	long n = (long)rows * cols;
	int ret = hcu_need_init();

	if (ret)
		return ret;
	HCU_ARG(rows >= 0 && cols > 0, "fp8_dequant: rows %d, cols %d", rows, cols);
	if (n == 0)
		return 0;
	fp8_dequant_kernel1<<<hcu_blocks(n, 256), 256, 0, hcu.stream>>>((uint16_t *)w, codes,
									  scale, rows, cols);
	CUDA_CHECK_LAUNCH();
	return 0;
}
