/* hmoe_cuda_decode: MLA decode version 2, on tensor cores (mma.sync bf16, sm_80+): the
 * host side (support check, split sizing, launch). The kernel and its design:
 * hmoe_cuda_decode2.cuh. */
#include <math.h>
#include <stdio.h>

#include "hmoe_cuda.h"
#include "hmoe_cuda_common.cuh"
#include "hmoe_cuda_decode2.cuh"

int hcu_mla_decode2_supported(const void *out, const void *q, const void *pages, int kv_lora,
			      int rope_dim, char *why, size_t why_n)
{
	int D = kv_lora + rope_dim;

	if (!hcu.tc_bf16) {
		snprintf(why, why_n, "needs compute capability 8.0 or later (bf16 mma.sync)");
		return 0;
	}
	/* 16-byte cp.async copies of q and cache rows, 4-byte stores of o_c pairs */
	if (((uintptr_t)q | (uintptr_t)pages) % 16 || (uintptr_t)out % 4) {
		snprintf(why, why_n, "q and the cache pages must be 16-byte aligned, out 4-byte "
			 "aligned");
		return 0;
	}

	if (kv_lora % 32 || D % 16 || kv_lora > D2_LMAX || D > D2_DMAX) {
		snprintf(why, why_n, "kv_lora %d must be a multiple of 32 (<= %d) and kv_lora + "
			 "rope_dim %d a multiple of 16 (<= %d)", kv_lora, D2_LMAX, D, D2_DMAX);
		return 0;
	}
	if (hcu.smem_optin < d2_smem_bytes(2)) {
		snprintf(why, why_n, "needs %zu bytes of shared memory per block, the device has "
			 "%zu", d2_smem_bytes(2), hcu.smem_optin);
		return 0;
	}
	return 1;
}

/* Splits for one CTA per SM: the fewest splits (of >= 64 tokens) whose CTA count fills
 * the SMs' waves best (ties go to fewer splits: each split adds fp32 partials). */
void hcu_mla_decode2_splits(int batch, int n_heads, int max_len, int *n_splits, int *split_len)
{
	int ctas = batch * ((n_heads + D2_HG - 1) / D2_HG), most = (max_len + 63) / 64;
	int best = 1;
	double best_eff = 0.0;

	if (most < 1)
		most = 1;
	for (int s = 1; s <= most && s <= 4 * hcu.n_sm; s++) {
		long n = (long)ctas * s, waves = (n + hcu.n_sm - 1) / hcu.n_sm;
		double eff = (double)n / ((double)waves * hcu.n_sm) - 0.01 * s;

		if (eff > best_eff + 1e-9) {
			best_eff = eff;
			best = s;
		}
	}
	*split_len = (max_len + best - 1) / best;
	*split_len = (*split_len + D2_T - 1) / D2_T * D2_T;
	*n_splits = (max_len + *split_len - 1) / *split_len;
	if (*n_splits < 1)
		*n_splits = 1;
}

/* One launch with STAGES pipeline stages; the shared-memory opt-in is set on the first
 * (the backend drives one device per process). */
template <int STAGES>
static int d2_launch(dim3 grid, uint16_t *out, const uint16_t *q,
		     const struct hmoe_cuda_kv_pages *kv, int n_heads, int kv_lora, int D,
		     float scale_log2, int split_len, int n_splits, float *part_o, float *part_ml)
{
	static int smem_set;

	if (!smem_set) {
		CUDA_CHECK(cudaFuncSetAttribute(mla_decode_kernel2<STAGES>,
						cudaFuncAttributeMaxDynamicSharedMemorySize,
						(int)d2_smem_bytes(STAGES)));
		smem_set = 1;
	}
	mla_decode_kernel2<STAGES><<<grid, D2_THREADS, d2_smem_bytes(STAGES), hcu.stream>>>(
		out, q, (const uint16_t *)kv->pages, kv->block_table, kv->seq_lens, kv->page_size,
		kv->max_pages, n_heads, kv_lora, D, scale_log2, split_len, n_splits, part_o,
		part_ml);
	CUDA_CHECK_LAUNCH();
	return 0;
}

int hcu_mla_decode2_launch(uint16_t *out, const uint16_t *q, const struct hmoe_cuda_kv_pages *kv,
			   int batch, int n_heads, int kv_lora, int D, float scale, int split_len,
			   int n_splits, float *part_o, float *part_ml)
{
	dim3 grid((n_heads + D2_HG - 1) / D2_HG, n_splits, batch);
	float scale_log2 = scale * 1.44269504f;

	/* 3 stages where a block may have the shared memory (Hopper), else 2 (A100) */
	if (hcu.smem_optin >= d2_smem_bytes(3))
		return d2_launch<3>(grid, out, q, kv, n_heads, kv_lora, D, scale_log2, split_len,
				    n_splits, part_o, part_ml);
	return d2_launch<2>(grid, out, q, kv, n_heads, kv_lora, D, scale_log2, split_len,
			    n_splits, part_o, part_ml);
}
