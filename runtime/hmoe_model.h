/* hmoe_model: a DeepSeek-V3/R1 checkpoint in the Hugging Face layout, loaded.
 *
 * Loading memory-maps every safetensors file (single file or sharded through
 * model.safetensors.index.json), checks that every tensor the config implies is present
 * with the right shape and dtype, and builds the per-layer weight structs below.
 *
 * Two views of each weight:
 *  - `src`: the checkpoint tensor as stored (FP8 e4m3 codes + weight_scale_inv, bf16 or
 *    fp32), memory-mapped, never copied. Weight packers (fixed-point experts, device
 *    uploads) read this.
 *  - `w`: fp32, dequantised exactly as MODEL.md section 6 (W = f32(fp8) * s[m/128][n/128])
 *    with no bf16 rounding; the CPU reference forward pass computes with it. It is made
 *    when the model is loaded with HMOE_LOAD_F32 (the default for the CPU path).
 */
#ifndef HMOE_MODEL_H
#define HMOE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "hmoe_config.h"

enum hmoe_dtype {
	HMOE_DT_F32,
	HMOE_DT_BF16,
	HMOE_DT_F16,
	HMOE_DT_F8E4M3,
	HMOE_DT_I32,
	HMOE_DT_I64,
	HMOE_DT_U8,
	HMOE_DT_I8,
	HMOE_DT_COUNT
};

const char *hmoe_dtype_name(enum hmoe_dtype dt);   /* safetensors spelling: "F8_E4M3" */
size_t hmoe_dtype_size(enum hmoe_dtype dt);

#define HMOE_MAX_DIMS 4

/* One tensor of a safetensors file; data points into the mapping. */
struct hmoe_tensor {
	const char *name;
	enum hmoe_dtype dtype;
	int ndim;
	int64_t shape[HMOE_MAX_DIMS];
	const void *data;
	size_t nbytes;
};

/* A linear layer y = W x, W of shape (out, in). */
struct hmoe_linear {
	int out, in;
	const struct hmoe_tensor *src;       /* weight as stored */
	const struct hmoe_tensor *scale_inv; /* FP8 only: (ceil(out/128), ceil(in/128)) fp32 */
	float *w;                            /* (out, in) fp32, or NULL if not materialised */
	int block_out, block_in;             /* FP8 scale block (weight_block_size), 128 x 128 */
	const float *scale;                  /* FP8 only: scale_inv's values, 4-byte aligned
					      * (the mapping, or a copy when the file
					      * leaves them unaligned); read this, not
					      * (const float *)scale_inv->data */
};

/* An MLP / expert: w2(silu(w1 x) * w3 x). HF: w1 gate_proj, w3 up_proj, w2 down_proj. */
struct hmoe_mlp {
	struct hmoe_linear w1; /* (inter, dim) */
	struct hmoe_linear w3; /* (inter, dim) */
	struct hmoe_linear w2; /* (dim, inter) */
};

struct hmoe_layer {
	int is_moe;
	float *attn_norm;            /* (dim) input_layernorm */
	float *ffn_norm;             /* (dim) post_attention_layernorm */

	/* MLA */
	struct hmoe_linear wq_a;     /* (q_lora, dim); unused when q_lora_rank == 0 */
	float *q_norm;               /* (q_lora) */
	struct hmoe_linear wq_b;     /* (heads*(nope+rope), q_lora); or wq (.., dim) if no q_lora */
	struct hmoe_linear wkv_a;    /* (kv_lora + rope, dim) */
	float *kv_norm;              /* (kv_lora) */
	struct hmoe_linear wkv_b;    /* (heads*(nope+v), kv_lora) */
	struct hmoe_linear wo;       /* (dim, heads*v) */

	/* dense layers */
	struct hmoe_mlp mlp;         /* inter = intermediate_size */

	/* MoE layers */
	float *gate;                 /* (n_routed, dim) router weight */
	float *gate_bias;            /* (n_routed) e_score_correction_bias, or NULL */
	struct hmoe_mlp *experts;    /* [n_routed], inter = moe_intermediate_size */
	struct hmoe_mlp shared;      /* inter = n_shared * moe_intermediate_size */
	int has_shared;
};

enum hmoe_load_flags {
	HMOE_LOAD_F32 = 1u << 0,     /* materialise fp32 copies of every weight */
};

struct hmoe_st_file;             /* one mapped safetensors file (hmoe_st.h) */

struct hmoe_model {
	struct hmoe_config cfg;
	char *dir;

	float *embed;                /* (vocab, dim) */
	float *norm;                 /* (dim) final norm */
	struct hmoe_linear head;     /* (vocab, dim) lm_head */
	struct hmoe_layer *layers;   /* [num_hidden_layers] */

	struct hmoe_st_file **files; /* [n_files] mapped shards */
	int n_files;
	size_t f32_bytes;            /* bytes of materialised fp32 weights */

	const struct hmoe_tensor *embed_src; /* (vocab, dim) as stored; `embed` is NULL
					      * unless loaded with HMOE_LOAD_F32 */
	const struct hmoe_tensor **by_name;  /* [n_tensors] every tensor of every shard,
					      * sorted by name (hmoe_model_tensor) */
	int n_tensors;
	float *f32_arena;            /* one allocation behind every fp32 array above */
	void **owned;                /* [n_owned] small aligned copies (unaligned scales) */
	int n_owned;
};

/* Loads the checkpoint in dir (config.json + safetensors). flags: HMOE_LOAD_*.
 * Norms, router weights and the gate bias are always fp32 (they are small); linears and
 * the embedding get fp32 copies only with HMOE_LOAD_F32. A missing tensor, or one of the
 * wrong shape or dtype, is HMOE_EINPUT naming the tensor, the expected and found shape. */
int hmoe_model_load(struct hmoe_model **out, const char *dir, unsigned flags);
void hmoe_model_free(struct hmoe_model *m);

/* Memory for weights that are streamed (bytes, zeroed): anonymous pages, 2 MiB aligned
 * and asked for 2 MiB pages (MADV_HUGEPAGE, a hint the kernel may ignore). The fp32
 * arena, the cpu-fxp packs and `bench experts` take it. On 4 KiB pages each 4 KiB of a
 * stream needs its own TLB entry, and on the dev VM the first read of freshly written
 * pages ran 3-10x slower and one-token fixed-point layer calls lost up to half their
 * rate (docs/fxp.md section 3). NULL when out of memory. Free with
 * hmoe_model_weights_free(p, bytes), the same bytes; p NULL is a no-op. */
void *hmoe_model_weights_alloc(size_t bytes);
void hmoe_model_weights_free(void *p, size_t bytes);

/* Blocks that share one weights allocation (cpu-fxp's packs, the fp32 arena's tensors,
 * `bench experts`' resident copies): block k of `bytes` starts k strides after the first,
 * stride = hmoe_model_weights_stride(bytes), which is `bytes` rounded up to 64 and, in
 * AddressSanitizer builds, one 64-byte line more. hmoe_model_weights_guard(block, bytes)
 * poisons the block's stride past its bytes there (elsewhere it does nothing), so that a
 * kernel reading past the end of one block into the next is reported as it would be
 * with separate allocations. hmoe_model_weights_free() lifts the poison. */
size_t hmoe_model_weights_stride(size_t bytes);
void hmoe_model_weights_guard(void *block, size_t bytes);

/* Finds a tensor by its HF name across all shards; NULL if absent. */
const struct hmoe_tensor *hmoe_model_tensor(const struct hmoe_model *m, const char *name);

/* Dequantises one linear's stored weight into dst (out*in floats) per MODEL.md sec. 6. */
int hmoe_linear_dequant(const struct hmoe_linear *l, float *dst);

/* Parameter and byte accounting for `hmoe info` and benchmarks. */
struct hmoe_model_stats {
	int64_t params_total;        /* every main-model parameter (no MTP) */
	int64_t params_active;       /* parameters touched per decoded token */
	int64_t bytes_total;         /* checkpoint bytes of those parameters (+ scales) */
	int64_t bytes_per_token;     /* weight bytes read per decoded token, as stored */
};
void hmoe_model_stats(const struct hmoe_model *m, struct hmoe_model_stats *s);

#endif
