/* hmoe_cuda: the C API of the GPU backend (build/libhmoe_cuda.so, the .cu files in runtime/cuda/).
 *
 * The CPU build never links CUDA: the host opens the backend at run time with
 * hmoe_cuda_open(), which dlopen()s libhmoe_cuda.so and fetches one table of function
 * pointers (struct hmoe_cuda_api). This header is plain C with no CUDA types; device
 * memory is `void *`, streams are the backend's own (one in-order stream per process).
 *
 * Conventions of every kernel entry point:
 *  - bf16 tensors are uint16_t bit patterns (round-to-nearest-even, as torch), fp32 is
 *    float, FP8 is e4m3fn codes (uint8_t) with fp32 128x128 block scales
 *    (weight_scale_inv: W[m][n] = e4m3(code[m][n]) * scale[m / 128][n / 128]).
 *  - Matrices are row-major; weights are (out, in) as in the checkpoint.
 *  - Calls are asynchronous on the backend's stream; sync() waits and reports any error.
 *  - Return 0 or a negative HMOE_E* code (hmoe_err.h); last_error() names the failing
 *    call with file:line (CUDA/cuBLAS errors) or the bad argument.
 *
 * Nothing here has run on a GPU yet: see docs/gpu.md for what is validated.
 */
#ifndef HMOE_CUDA_H
#define HMOE_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever struct hmoe_cuda_api changes; the loader refuses a mismatch. */
#define HMOE_CUDA_ABI 2

/* MLA decode implementations behind the dispatcher. AUTO picks version 2 where the
 * device (compute capability 8.0+), the dims and the pointers' alignment allow, else
 * version 1, for decode and prefill alike; with the environment variable
 * HMOE_MLA_AUTO_V1=1 (read at init) AUTO keeps version 1, for comparisons. */
enum hmoe_cuda_mla_version {
	HMOE_MLA_DECODE_AUTO = 0,
	HMOE_MLA_DECODE_V1 = 1,   /* CUDA cores, head groups of 16, split-K + combine */
	HMOE_MLA_DECODE_V2 = 2,   /* tensor cores (mma.sync bf16, sm_80+), head groups of 64,
				   * accumulators in registers, cp.async tile pipeline */
	HMOE_MLA_DECODE_COUNT
};

/* MLA prefill implementations (AUTO as for decode). */
enum hmoe_cuda_mla_prefill_version {
	HMOE_MLA_PREFILL_AUTO = 0,
	HMOE_MLA_PREFILL_V1 = 1,  /* CUDA cores, flash-style */
	HMOE_MLA_PREFILL_V2 = 2,  /* tensor cores (mma.sync bf16, sm_80+), flash-style */
	HMOE_MLA_PREFILL_COUNT
};

/* The paged latent KV cache of ONE layer as MLA decode reads it.
 *   pages:       (n_pages, page_size, kv_lora + rope_dim) bf16: per token the kv_norm'd
 *                latent (kv_lora values) then the roped shared key k_pe (rope_dim values,
 *                interleaved-pair layout as model.py)
 *   block_table: (batch, max_pages) int32: page index of the seq's p-th page of tokens
 *   seq_lens:    (batch) int32: tokens in context for each sequence (including the one
 *                being decoded, which the caller has already written into its page)
 * All three are device pointers. */
struct hmoe_cuda_kv_pages {
	const void *pages;
	const int32_t *block_table;
	const int32_t *seq_lens;
	int page_size;            /* tokens per page, >= 1 */
	int max_pages;            /* columns of block_table */
	int max_seq_len;          /* >= every seq_lens[b]: sizes the split-K grid */
};

struct hmoe_cuda_api {
	int abi;                  /* HMOE_CUDA_ABI */

	/* ---- device and memory ---- */
	const char *(*last_error)(void);
	int (*device_count)(int *n);                      /* 0 devices is not an error */
	int (*init)(int device);                          /* select, create stream + cuBLAS */
	int (*device_name)(char *buf, size_t n);          /* "NVIDIA H100 80GB HBM3, sm_90" */
	int (*versions)(int *driver, int *runtime);       /* e.g. 13000 */
	int (*malloc)(void **ptr, size_t bytes);
	int (*free)(void *ptr);
	int (*h2d)(void *dst, const void *src, size_t bytes);   /* synchronous */
	int (*d2h)(void *dst, const void *src, size_t bytes);   /* synchronous */
	int (*d2d)(void *dst, const void *src, size_t bytes);   /* async on the stream */
	int (*fill_nan)(void *ptr, size_t bytes);         /* poisons with 0xff bytes (NaN in
							   * fp32, bf16 and e4m3) */
	int (*sync)(void);
	/* Timer: event_record(i) for i < 8, elapsed_ms(a, b) after sync. */
	int (*event_record)(int i);
	int (*elapsed_ms)(int a, int b, float *ms);

	/* ---- dense parts ---- */
	/* out (n_rows, dim) = bf16(bf16(x * rsqrt(mean(x^2) + eps)) * w), fp32 sum of
	 * squares (HF's RMSNorm). x, out: bf16 rows of stride x_stride / out_stride
	 * elements (>= dim; kv_norm runs on the first 512 of 576-wide cache rows);
	 * w: (dim) bf16. out may alias x. */
	int (*rmsnorm)(void *out, int out_stride, const void *x, int x_stride, const void *w,
		       int n_rows, int dim, float eps);
	/* y (n) = bf16(y + x), bf16: the residual add. */
	int (*add)(void *y, const void *x, long n);
	/* g (n) = bf16(silu(g) * u), silu(v) = v / (1 + exp(-v)) in fp32; bf16. */
	int (*silu_mul)(void *g, const void *u, long n);
	/* rows x width_bytes from src (pitch spitch bytes) to dst (pitch dpitch), async. */
	int (*copy2d)(void *dst, size_t dpitch, const void *src, size_t spitch,
		      size_t width_bytes, size_t rows);
	/* In-place interleaved RoPE on bf16: for token t, head h, the rope_dim values at
	 * x + t * token_stride + h * head_stride + offset, pairs (x[2i], x[2i+1]) rotated by
	 * angle f32(pos[t]) * freqs[i] in fp32 then rounded to bf16 (model.py). pos: device
	 * (n_tokens) int32; freqs: device (rope_dim / 2) fp32 (YaRN-blended by the caller).
	 * Strides count bf16 elements. */
	int (*rope)(void *x, int n_tokens, int token_stride, int n_heads, int head_stride,
		    int offset, int rope_dim, const int32_t *pos, const float *freqs);
	/* out (n, dim) bf16 = table[ids[t]] for ids in [0, vocab); an out-of-range id gives
	 * a NaN row (callers validate ids on the host). ids: device int32. */
	int (*embed)(void *out, const void *table, const int32_t *ids, int n, int dim,
		     int vocab);
	/* y (n, out) = x (n, in) . W^T, W (out, in); x, W bf16; fp32 accumulate (cuBLAS).
	 * y is fp32 when y_f32 (lm_head logits, router gate), else bf16 (projections). */
	int (*gemm_bf16)(void *y, int y_f32, const void *x, const void *w, int n, int in,
			 int out);
	/* Decode matvec reading FP8 weights directly: y (n, out) = x (n, in) . W^T with
	 * W = e4m3(codes) * scale block; x bf16; scale (ceil(out/128), ceil(in/128)) fp32;
	 * y bf16 or fp32 (y_f32). Per 128-wide block of inputs the fp32 partial dot is
	 * multiplied by that block's scale. in % 16 == 0. Best for n <= 8. */
	int (*fp8_matvec)(void *y, int y_f32, const void *x, const uint8_t *codes,
			  const float *scale, int n, int in, int out);
	/* W (rows, cols) bf16 = bf16(e4m3(codes) * scale block): the prefill weights. */
	int (*fp8_dequant)(void *w, const uint8_t *codes, const float *scale, int rows,
			   int cols);

	/* ---- sampling ---- */
	/* One token per row of logits (n_rows, stride) fp32, among ids [0, n_valid).
	 * temperature <= 0: argmax, lowest id on ties. Otherwise p = softmax(logits / T);
	 * keep the ids with p >= theta, theta the largest probability such that the kept
	 * mass is >= top_p (top_p >= 1 keeps all); draw with u[r] in [0, 1) by walking
	 * the kept ids in ascending id order. u: device (n_rows) fp32 (host-generated, so
	 * the stream is the host's); ids: device (n_rows) int32. */
	int (*sample)(int32_t *ids, const float *logits, int n_rows, int stride, int n_valid,
		      float temperature, float top_p, const float *u);

	/* ---- MoE router ---- */
	/* Per token: s = sigmoid(logit) (softmax over experts when softmax != 0);
	 * sel = s + bias (bias may be NULL); with n_group > 1, group score = sum of its
	 * top-2 sel (its max when bias is NULL), the topk_group best groups kept, the other
	 * groups' sel = -inf; the top_k of sel chosen (ties: lower id); weights = s of the
	 * chosen, divided by their sum when norm, times scale. Output per token sorted by
	 * ascending expert id (hmoe_forward_route's convention).
	 * logits (n, n_experts) fp32; bias (n_experts) fp32; ids/weights (n, top_k).
	 * n_experts <= 1024, n_experts % n_group == 0, top_k <= 32. */
	int (*route)(int32_t *ids, float *weights, const float *logits, const float *bias,
		     int n, int n_experts, int n_group, int topk_group, int top_k,
		     int softmax, int norm, float scale);

	/* ---- expert datapath hand-off ---- */
	/* The fixed-point activation quantiser (docs/fxp.md), bit-identical to the CPU's
	 * hmoe_fxp_quant_x: x (n, dim) fp32 (x_f32) or bf16 -> xq (n, planes, groups * 128)
	 * int8, zero-padded, and xs (n, groups) scale words, groups = ceil(dim / 128).
	 * planes = hmoe_fxp_mode_planes(mode): 2 (A16: hi plane, then lo) or 1 (A8). */
	int (*fxp_quant_x)(int8_t *xq, int32_t *xs, const void *x, int x_f32, int n, int dim,
			   int planes);

	/* ---- MLA ---- */
	/* Absorbed-form decode for a batch of sequences, one new token each.
	 *   q:   (batch, n_heads, kv_lora + rope_dim) bf16: per head [q_nope . W_UK | q_pe]
	 *   out: (batch, n_heads, kv_lora) bf16: o_c = softmax(q . kv^T * scale) . kv_latent
	 * kv_lora <= 512, rope_dim <= 64. One pass over each sequence's pages per head
	 * group; contexts longer than one split run split-K with a combine step. */
	int (*mla_decode)(void *out, const void *q, const struct hmoe_cuda_kv_pages *kv,
			  int batch, int n_heads, int kv_lora, int rope_dim, float scale,
			  int version);
	/* The absorbed projections, as batched cuBLAS GEMMs over heads:
	 *   absorb_q: qc (n, H, kv_lora) = q_nope (n, H, q_stride; first nope values) . W_UK
	 *             with wkv_b (H, nope + v, kv_lora) bf16; writes into qc rows of stride
	 *             qc_stride (so qc can be the first kv_lora of the decode q rows).
	 *   absorb_o: o (n, H, v) = oc (n, H, kv_lora) . W_UV^T. */
	int (*mla_absorb_q)(void *qc, int qc_stride, const void *q, int q_stride,
			    const void *wkv_b, int n, int n_heads, int nope, int v_dim,
			    int kv_lora);
	int (*mla_absorb_o)(void *o, const void *oc, const void *wkv_b, int n, int n_heads,
			    int nope, int v_dim, int kv_lora);
	/* Naive-form causal prefill of one sequence at positions [0, n) (flash-style: tiles
	 * of queries, keys in tiles with an online softmax; fp32 softmax and accumulation).
	 *   q, k: (n, n_heads, qk_dim) bf16; v: (n, n_heads, v_dim) bf16;
	 *   out: (n, n_heads, v_dim) bf16. qk_dim <= 192, v_dim <= 128.
	 * version: enum hmoe_cuda_mla_prefill_version. */
	int (*mla_prefill)(void *out, const void *q, const void *k, const void *v, int n,
			   int n_heads, int qk_dim, int v_dim, float scale, int version);
};

/* The one symbol libhmoe_cuda.so exports. */
const struct hmoe_cuda_api *hmoe_cuda_get_api(void);

#ifdef __cplusplus
}
#endif

/* ---- loader (host side; header-only so the CPU build needs no extra object) ---- */
#ifndef __CUDACC__
#include <dlfcn.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline __attribute__((format(printf, 3, 4))) void
hmoe_cuda_why(char *why, size_t why_n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, why_n, fmt, ap);
	va_end(ap);
}

/* Opens the backend: $HMOE_CUDA_LIB if set, else libhmoe_cuda.so in the directory of the
 * running program or up to three directories above it (build/hmoe, build/san/hmoe,
 * build/tests/gpu/...). On failure returns NULL and writes the reason into why. */
static inline const struct hmoe_cuda_api *hmoe_cuda_open(char *why, size_t why_n)
{
	const struct hmoe_cuda_api *(*get)(void);
	const struct hmoe_cuda_api *api;
	const char *env = getenv("HMOE_CUDA_LIB");
	char path[PATH_MAX + 32], dir[PATH_MAX];
	void *h = NULL;
	ssize_t len;

	if (env && *env) {
		h = dlopen(env, RTLD_NOW | RTLD_LOCAL);
		if (!h) {
			hmoe_cuda_why(why, why_n, "HMOE_CUDA_LIB=%s: %s", env, dlerror());
			return NULL;
		}
	} else {
		len = readlink("/proc/self/exe", dir, sizeof(dir) - 1);
		if (len <= 0) {
			hmoe_cuda_why(why, why_n, "cannot resolve /proc/self/exe");
			return NULL;
		}
		dir[len] = '\0';
		for (int up = 0; up < 4 && !h; up++) {
			char *slash = strrchr(dir, '/');

			if (!slash)
				break;
			*slash = '\0';
			snprintf(path, sizeof(path), "%s/libhmoe_cuda.so", dir);
			if (access(path, F_OK) == 0) {
				h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
				if (!h) {
					hmoe_cuda_why(why, why_n, "%s: %s", path, dlerror());
					return NULL;
				}
			}
		}
		if (!h) {
			hmoe_cuda_why(why, why_n, "libhmoe_cuda.so not found next to the program "
				 "(build it with `make cuda`, or set HMOE_CUDA_LIB)");
			return NULL;
		}
	}
	*(void **)(&get) = dlsym(h, "hmoe_cuda_get_api");
	if (!get) {
		hmoe_cuda_why(why, why_n, "libhmoe_cuda.so: no symbol hmoe_cuda_get_api");
		dlclose(h);
		return NULL;
	}
	api = get();
	if (!api || api->abi != HMOE_CUDA_ABI) {
		hmoe_cuda_why(why, why_n, "libhmoe_cuda.so: ABI %d, this program expects %d",
			 api ? api->abi : -1, HMOE_CUDA_ABI);
		dlclose(h);
		return NULL;
	}
	return api;
}
#endif

#endif
