/* hmoe_cuda_prefill: MLA prefill version 2, on tensor cores (mma.sync bf16, sm_80+): the
 * host side (argument checks, launch). The kernel and its design: hmoe_cuda_prefill2.cuh. */
#include <math.h>
#include <stdint.h>

#include "hmoe_cuda.h"
#include "hmoe_cuda_common.cuh"
#include "hmoe_cuda_prefill2.cuh"

/* Whether version 2 takes these arguments (AUTO's choice): dims multiples of 8 within the
 * maxima, 16-byte aligned inputs, 4-byte aligned output, enough shared memory. */
int hcu_mla_prefill2_ok(const void *out, const void *q, const void *k, const void *v,
			int qk_dim, int v_dim)
{
	return hcu.tc_bf16 && qk_dim > 0 && qk_dim <= P2_DQK && qk_dim % 8 == 0 && v_dim > 0 &&
	       v_dim <= P2_DV && v_dim % 8 == 0 &&
	       ((uintptr_t)q | (uintptr_t)k | (uintptr_t)v) % 16 == 0 && (uintptr_t)out % 4 == 0 &&
	       hcu.smem_optin >= P2_SMEM;
}

int hcu_mla_prefill2(void *out, const void *q, const void *k, const void *v, int n,
		     int n_heads, int qk_dim, int v_dim, float scale)
{
	static int smem_set;

	HCU_ARG(hcu.tc_bf16, "mla_prefill v2: needs compute capability 8.0 or later (bf16 mma.sync)");
	HCU_ARG(qk_dim > 0 && qk_dim <= P2_DQK && qk_dim % 8 == 0 && v_dim > 0 &&
		v_dim <= P2_DV && v_dim % 8 == 0,
		"mla_prefill v2: qk_dim %d, v_dim %d (multiples of 8, <= %d / %d)", qk_dim,
		v_dim, P2_DQK, P2_DV);
	HCU_ARG(((uintptr_t)q | (uintptr_t)k | (uintptr_t)v) % 16 == 0 && (uintptr_t)out % 4 == 0,
		"mla_prefill v2: q, k, v must be 16-byte aligned, out 4-byte aligned");
	HCU_ARG(hcu.smem_optin >= P2_SMEM, "mla_prefill v2: needs %d bytes of shared memory "
		"per block, the device has %zu", (int)P2_SMEM, hcu.smem_optin);
	HCU_ARG(n >= 0 && n_heads > 0 && n_heads <= 65535, "mla_prefill: n %d, n_heads %d", n,
		n_heads);
	if (n == 0)
		return 0;
	if (!smem_set) {  /* once: the backend drives one device per process */
		CUDA_CHECK(cudaFuncSetAttribute(mla_prefill_kernel2,
						cudaFuncAttributeMaxDynamicSharedMemorySize,
						(int)P2_SMEM));
		smem_set = 1;
	}
	mla_prefill_kernel2<<<dim3(hcu_blocks(n, P2_BQ), n_heads), P2_THREADS, P2_SMEM,
			      hcu.stream>>>(
		(uint16_t *)out, (const uint16_t *)q, (const uint16_t *)k, (const uint16_t *)v, n,
		n_heads, qk_dim, v_dim, scale * 1.44269504088896341f);
	CUDA_CHECK_LAUNCH();
	return 0;
}
