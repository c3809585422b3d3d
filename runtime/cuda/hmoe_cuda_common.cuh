/* hmoe_cuda_common: what every .cu file of the GPU backend shares: the checking macros
 * (every CUDA and cuBLAS call reports file and line on failure), the backend state (one
 * device, one stream, one cuBLAS handle, a growable workspace) and bf16 helpers.
 *
 * Errors: a failing call records "file:line: call: reason" in a thread-local buffer
 * (the API's last_error) and the entry point returns -HMOE_EDEVICE; bad arguments
 * return -HMOE_EINPUT with a message that names the argument.
 */
#ifndef HMOE_CUDA_COMMON_CUH
#define HMOE_CUDA_COMMON_CUH

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "hmoe_err.h"

/* Records an error message (printf-style) and returns -code. */
int hcu_fail(int code, const char *fmt, ...) HMOE_PRINTF(2, 3);

#define CUDA_CHECK(call)                                                              \
	do {                                                                          \
		cudaError_t err_ = (call);                                            \
		if (err_ != cudaSuccess)                                              \
			return hcu_fail(HMOE_EDEVICE, "%s:%d: %s: %s", __FILE__,      \
					__LINE__, #call, cudaGetErrorString(err_));   \
	} while (0)

#define CUBLAS_CHECK(call)                                                            \
	do {                                                                          \
		cublasStatus_t st_ = (call);                                          \
		if (st_ != CUBLAS_STATUS_SUCCESS)                                     \
			return hcu_fail(HMOE_EDEVICE, "%s:%d: %s: %s", __FILE__,      \
					__LINE__, #call, cublasGetStatusString(st_)); \
	} while (0)

/* After a kernel launch: launch-configuration errors surface here, faults at sync. */
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

#define HCU_ARG(cond, ...)                                                            \
	do {                                                                          \
		if (!(cond))                                                          \
			return hcu_fail(HMOE_EINPUT, __VA_ARGS__);                    \
	} while (0)

/* The backend state; one per process (the runtime drives one GPU per process). */
struct hcu_state {
	int initialised;
	int device;
	cudaStream_t stream;
	cublasHandle_t blas;
	void *work;           /* scratch for split-K partials etc. */
	size_t work_bytes;
	size_t smem_optin;    /* max dynamic shared memory per block, bytes */
	int n_sm;             /* streaming multiprocessors: sizes split-K grids */
	int tc_bf16;          /* compute capability 8.0 or later: the version-2 attention
			       * kernels' bf16 mma.sync exists */
	int auto_v1;          /* HMOE_MLA_AUTO_V1=1: AUTO keeps the version-1 attention
			       * kernels (comparisons); else it picks version 2 where it can */
	cudaEvent_t ev[8];
};
extern struct hcu_state hcu;

/* Returns -HMOE_EDEVICE unless init() ran. */
int hcu_need_init(void);
/* Grows the workspace to at least bytes (synchronises the stream when it grows). */
int hcu_workspace(size_t bytes, void **out);

static inline unsigned hcu_blocks(long n, int per)
{
	return (unsigned)((n + per - 1) / per);
}

/* ---- device helpers ---- */
#ifdef __CUDACC__
__device__ __forceinline__ float hcu_bf(const uint16_t *p, long i)
{
	return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
}
__device__ __forceinline__ uint16_t hcu_to_bf(float f)
{
	__nv_bfloat16 b = __float2bfloat16_rn(f);
	return *(uint16_t *)&b;
}
__device__ __forceinline__ float hcu_warp_sum(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}
__device__ __forceinline__ float hcu_warp_max(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
	return v;
}
/* Sum over a block of blockDim.x threads (a multiple of 32, <= 1024); every thread gets
 * the result. sbuf: 32 floats of shared memory. */
__device__ __forceinline__ float hcu_block_sum(float v, float *sbuf)
{
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;

	v = hcu_warp_sum(v);
	__syncthreads();
	if (lane == 0)
		sbuf[warp] = v;
	__syncthreads();
	v = lane < nw ? sbuf[lane] : 0.0f;
	return hcu_warp_sum(v);
}
__device__ __forceinline__ float hcu_block_max(float v, float *sbuf)
{
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;

	v = hcu_warp_max(v);
	__syncthreads();
	if (lane == 0)
		sbuf[warp] = v;
	__syncthreads();
	v = lane < nw ? sbuf[lane] : -INFINITY;
	return hcu_warp_max(v);
}
#endif

/* ---- entry points, one group per file (wired into the API table in hmoe_cuda.cu) ---- */
struct hmoe_cuda_kv_pages;
/* hmoe_cuda_dense.cu */
int hcu_rmsnorm(void *out, int out_stride, const void *x, int x_stride, const void *w,
		int n_rows, int dim, float eps);
int hcu_add(void *y, const void *x, long n);
int hcu_silu_mul(void *g, const void *u, long n);
int hcu_rope(void *x, int n_tokens, int token_stride, int n_heads, int head_stride,
	     int offset, int rope_dim, const int32_t *pos, const float *freqs);
int hcu_embed(void *out, const void *table, const int32_t *ids, int n, int dim, int vocab);
int hcu_gemm_bf16(void *y, int y_f32, const void *x, const void *w, int n, int in, int out);
int hcu_fp8_matvec(void *y, int y_f32, const void *x, const uint8_t *codes,
		   const float *scale, int n, int in, int out);
int hcu_fp8_dequant(void *w, const uint8_t *codes, const float *scale, int rows, int cols);
/* hmoe_cuda_sample.cu */
int hcu_sample(int32_t *ids, const float *logits, int n_rows, int stride, int n_valid,
	       float temperature, float top_p, const float *u);
/* hmoe_cuda_router.cu */
int hcu_route(int32_t *ids, float *weights, const float *logits, const float *bias, int n,
	      int n_experts, int n_group, int topk_group, int top_k, int softmax, int norm,
	      float scale);
/* hmoe_cuda_fxp.cu */
int hcu_fxp_quant_x(int8_t *xq, int32_t *xs, const void *x, int x_f32, int n, int dim,
		    int planes);
/* hmoe_cuda_decode.cu: MLA decode version 2 (tensor cores) behind hcu_mla_decode */
int hcu_mla_decode2_supported(const void *out, const void *q, const void *pages, int kv_lora,
			      int rope_dim, char *why, size_t why_n);
void hcu_mla_decode2_splits(int batch, int n_heads, int max_len, int *n_splits,
			    int *split_len);
int hcu_mla_decode2_launch(uint16_t *out, const uint16_t *q,
			   const struct hmoe_cuda_kv_pages *kv, int batch, int n_heads,
			   int kv_lora, int D, float scale, int split_len, int n_splits,
			   float *part_o, float *part_ml);
/* hmoe_cuda_prefill.cu: MLA prefill version 2 (tensor cores) behind hcu_mla_prefill.
 * _ok: whether it takes these arguments (AUTO's choice); hcu_mla_prefill2 refuses the
 * others with -HMOE_EINPUT. */
int hcu_mla_prefill2_ok(const void *out, const void *q, const void *k, const void *v,
			int qk_dim, int v_dim);
int hcu_mla_prefill2(void *out, const void *q, const void *k, const void *v, int n,
		     int n_heads, int qk_dim, int v_dim, float scale);
/* hmoe_cuda_mla.cu */
int hcu_mla_decode(void *out, const void *q, const struct hmoe_cuda_kv_pages *kv, int batch,
		   int n_heads, int kv_lora, int rope_dim, float scale, int version);
int hcu_mla_absorb_q(void *qc, int qc_stride, const void *q, int q_stride,
		     const void *wkv_b, int n, int n_heads, int nope, int v_dim, int kv_lora);
int hcu_mla_absorb_o(void *o, const void *oc, const void *wkv_b, int n, int n_heads,
		     int nope, int v_dim, int kv_lora);
int hcu_mla_prefill(void *out, const void *q, const void *k, const void *v, int n,
		    int n_heads, int qk_dim, int v_dim, float scale, int version);

#endif
