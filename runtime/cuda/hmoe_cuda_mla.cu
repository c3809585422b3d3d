/* hmoe_cuda_mla: Multi-head Latent Attention on the GPU (MODEL.md section 3).
 *
 * Decode uses the absorbed form over the paged latent cache: per sequence the query of
 * every head is [q_nope . W_UK (kv_lora) | q_pe (rope_dim)], each cached token is
 * [kv_norm(c) (kv_lora) | k_pe (rope_dim)], and
 *   o_c[h] = softmax_t((q[h] . kv[t]) * scale) . kv[t][:kv_lora]
 * so all heads read the same 576 bf16 values per token: a CTA loads a tile of tokens
 * once into shared memory and scores it for a group of heads. Long contexts are split
 * over CTAs (split-K) and merged by a combine kernel (log-sum-exp rescaling).
 * Prefill uses the naive form (per-head keys/values re-expanded by the caller), causal,
 * flash-style: a CTA owns a tile of queries of one head and streams key/value tiles with
 * an online softmax. Softmax and accumulation are fp32 everywhere; outputs are bf16.
 * The absorption GEMMs (q_nope . W_UK, o_c . W_UV^T) are strided-batched cuBLAS calls.
 * CPU references: hcu_ref_mla_decode, hcu_ref_mla_prefill in hmoe_cuda_ref.c.
 */
#include <math.h>

#include "hmoe_cuda.h"
#include "hmoe_cuda_common.cuh"
#include "hmoe_cuda_decode2.cuh"   /* mla_decode_combine */

/* ---- decode, version 1: CUDA cores ---- */

#define DEC_THREADS 256
#define DEC_HG 16                   /* heads per CTA */
#define DEC_T 16                    /* tokens per tile; DEC_HG * DEC_T == DEC_THREADS */
#define DEC_DMAX 576                /* kv_lora + rope_dim */
#define DEC_LMAX 512                /* kv_lora */
#define DEC_ROW (DEC_DMAX + 2)      /* shared row stride: 289 words, so the 16 token rows
				     * a half-warp reads fall in 16 different banks */
#define DEC_PAIRS (DEC_LMAX / 2 / 16) /* bf16 pairs of o_c per thread (16 threads/head) */

/* Grid (head groups, splits, batch). Thread (hl, tl) = (tid / 16, tid % 16) scores token
 * tl of the tile for head hl, keeps that head's running max / sum in registers (the 16
 * threads of a head hold identical copies), and owns o_c pairs tl + 16 j of head hl.
 * Per tile: load 16 tokens x D from their pages, scores, online softmax within the
 * half-warp, then o_c = o_c * alpha + p . kv. Shared: Q and the tile in bf16 (2 x 18.5
 * KB) and p (1 KB). With one split the CTA writes bf16 o_c; otherwise unnormalised fp32
 * partials (o, m, l) for the combine kernel. */
__global__ void __launch_bounds__(DEC_THREADS)
mla_decode_kernel1(uint16_t *out, const uint16_t *q, const uint16_t *pages,
		   const int32_t *block_table, const int32_t *seq_lens, int page_size,
		   int max_pages, int H, int L, int D, float scale, int split_len, int n_splits,
		   float *part_o, float *part_ml)
{
	__shared__ __align__(16) __nv_bfloat16 qs[DEC_HG][DEC_ROW];
	__shared__ __align__(16) __nv_bfloat16 ks[DEC_T][DEC_ROW];
	__shared__ float ps[DEC_HG][DEC_T];
	int b = blockIdx.z, split = blockIdx.y, h0 = blockIdx.x * DEC_HG;
	int tid = threadIdx.x, hl = tid / DEC_T, tl = tid % DEC_T, h = h0 + hl;
	int len = seq_lens[b], words = D / 2;
	int t_begin = split * split_len, t_end = min(len, t_begin + split_len);
	const int32_t *bt = block_table + (long)b * max_pages;
	float m = -INFINITY, l = 0.0f, acc[2 * DEC_PAIRS];

	for (int i = tid; i < DEC_HG * words; i += DEC_THREADS) {
		int hh = i / words, w = i % words;
		uint32_t v = 0;

		if (h0 + hh < H)
			v = ((const uint32_t *)(q + ((long)b * H + h0 + hh) * D))[w];
		((uint32_t *)qs[hh])[w] = v;
	}
#pragma unroll
	for (int j = 0; j < 2 * DEC_PAIRS; j++)
		acc[j] = 0.0f;
	for (int t0 = t_begin; t0 < t_end; t0 += DEC_T) {
		__syncthreads();  /* Q loaded / the previous tile fully consumed */
		for (int i = tid; i < DEC_T * words; i += DEC_THREADS) {
			int tt = i / words, w = i % words, tok = t0 + tt;
			uint32_t v = 0;

			if (tok < t_end) {
				long row = (long)bt[tok / page_size] * page_size + tok % page_size;

				v = ((const uint32_t *)(pages + row * D))[w];
			}
			((uint32_t *)ks[tt])[w] = v;
		}
		__syncthreads();

		float sc = -INFINITY, tmax, m_new, p, alpha, psum;

		if (t0 + tl < t_end && h < H) {
			const __nv_bfloat162 *qa = (const __nv_bfloat162 *)qs[hl];
			const __nv_bfloat162 *ka = (const __nv_bfloat162 *)ks[tl];
			float dot = 0.0f;

			for (int w = 0; w < words; w++) {
				float2 a = __bfloat1622float2(qa[w]), k = __bfloat1622float2(ka[w]);

				dot += a.x * k.x + a.y * k.y;
			}
			sc = dot * scale;
		}
		tmax = sc;
		for (int o = 8; o > 0; o >>= 1)
			tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, o));
		m_new = fmaxf(m, tmax);
		p = sc == -INFINITY ? 0.0f : expf(sc - m_new);
		alpha = m_new == -INFINITY ? 1.0f : expf(m - m_new);
		psum = p;
		for (int o = 8; o > 0; o >>= 1)
			psum += __shfl_xor_sync(0xffffffffu, psum, o);
		l = l * alpha + psum;
		m = m_new;
		ps[hl][tl] = p;
		__syncthreads();
		#pragma unroll
		for (int j = 0; j < DEC_PAIRS; j++) {
			int c = 2 * (tl + 16 * j);

			if (c >= L)
				continue;
			float a0 = acc[2 * j] * alpha, a1 = acc[2 * j + 1] * alpha;

			for (int tt = 0; tt < DEC_T; tt++) {
				float pt = ps[hl][tt];
				float2 kv = __bfloat1622float2(*(const __nv_bfloat162 *)&ks[tt][c]);

				a0 += pt * kv.x;
				a1 += pt * kv.y;
			}
			acc[2 * j] = a0;
			acc[2 * j + 1] = a1;
		}
	}
	if (h >= H)
		return;
	if (n_splits == 1) {
		float inv = l > 0.0f ? 1.0f / l : 0.0f;
		uint16_t *o = out + ((long)b * H + h) * L;

		#pragma unroll
		for (int j = 0; j < DEC_PAIRS; j++) {
			int c = 2 * (tl + 16 * j);

			if (c >= L)
				continue;
			o[c] = hcu_to_bf(acc[2 * j] * inv);
			o[c + 1] = hcu_to_bf(acc[2 * j + 1] * inv);
		}
		return;
	}
	long slot = ((long)b * n_splits + split) * H + h;
	float *po = part_o + slot * L;

	#pragma unroll
	for (int j = 0; j < DEC_PAIRS; j++) {
		int c = 2 * (tl + 16 * j);

		if (c >= L)
			continue;
		po[c] = acc[2 * j];
		po[c + 1] = acc[2 * j + 1];
	}
	if (tl == 0) {
		part_ml[slot * 2] = m;
		part_ml[slot * 2 + 1] = l;
	}
}

/* Split-K sizing: enough CTAs for two waves over the SMs, splits of at least 64 tokens
 * (a multiple of the tile). */
static void decode_splits(int batch, int n_hg, int max_len, int *n_splits, int *split_len)
{
	int ctas = batch * n_hg, want = (2 * hcu.n_sm + ctas - 1) / ctas;
	int most = (max_len + 63) / 64;

	if (want > most)
		want = most;
	if (want < 1)
		want = 1;
	*split_len = (max_len + want - 1) / want;
	*split_len = (*split_len + DEC_T - 1) / DEC_T * DEC_T;
	if (*split_len < DEC_T)
		*split_len = DEC_T;
	*n_splits = (max_len + *split_len - 1) / *split_len;
	if (*n_splits < 1)
		*n_splits = 1;
}

int hcu_mla_decode(void *out, const void *q, const struct hmoe_cuda_kv_pages *kv, int batch,
		   int n_heads, int kv_lora, int rope_dim, float scale, int version)
{
	int D = kv_lora + rope_dim, n_splits, split_len, max_len;
	float *part_o = NULL, *part_ml = NULL;
	int ret = hcu_need_init();

	if (ret)
		return ret;
	HCU_ARG(kv && kv->pages && kv->block_table && kv->seq_lens, "mla_decode: kv pages missing");
	HCU_ARG(batch >= 0 && batch <= 65535 && n_heads > 0 && n_heads <= 65535,
		"mla_decode: batch %d, n_heads %d (each 1..65535: grid limits)", batch, n_heads);
	HCU_ARG(kv_lora > 0 && kv_lora <= DEC_LMAX && kv_lora % 2 == 0 && rope_dim >= 0 &&
		rope_dim % 2 == 0 && D <= DEC_DMAX,
		"mla_decode: kv_lora %d + rope_dim %d (even, kv_lora <= %d, sum <= %d)", kv_lora,
		rope_dim, DEC_LMAX, DEC_DMAX);
	HCU_ARG(kv->page_size >= 1 && kv->max_pages >= 1 && kv->max_seq_len >= 0 &&
		(long)kv->max_pages * kv->page_size >= kv->max_seq_len,
		"mla_decode: page_size %d x max_pages %d < max_seq_len %d", kv->page_size,
		kv->max_pages, kv->max_seq_len);
	HCU_ARG(version >= 0 && version < HMOE_MLA_DECODE_COUNT,
		"mla_decode: no version %d", version);
	if (batch == 0)
		return 0;
	/* AUTO: version 2 where it takes these dims and the device, else version 1 (always
	 * version 1 with hcu.auto_v1) */
	if (version == HMOE_MLA_DECODE_V2 || (version == HMOE_MLA_DECODE_AUTO && !hcu.auto_v1)) {
		char why[160];
		int ok = hcu_mla_decode2_supported(out, q, kv->pages, kv_lora, rope_dim, why,
						   sizeof(why));

		if (version == HMOE_MLA_DECODE_V2)
			HCU_ARG(ok, "mla_decode v2: %s", why);
		version = ok ? HMOE_MLA_DECODE_V2 : HMOE_MLA_DECODE_V1;
	} else {
		version = HMOE_MLA_DECODE_V1;
	}
	max_len = kv->max_seq_len > 0 ? kv->max_seq_len : 1;
	if (version == HMOE_MLA_DECODE_V2)
		hcu_mla_decode2_splits(batch, n_heads, max_len, &n_splits, &split_len);
	else
		decode_splits(batch, (n_heads + DEC_HG - 1) / DEC_HG, max_len, &n_splits,
			      &split_len);
	if (n_splits > 1) {
		size_t n_slot = (size_t)batch * n_splits * n_heads;
		void *work;

		ret = hcu_workspace(n_slot * ((size_t)kv_lora + 2) * sizeof(float), &work);
		if (ret)
			return ret;
		part_o = (float *)work;
		part_ml = part_o + n_slot * (size_t)kv_lora;
	}
	if (version == HMOE_MLA_DECODE_V2) {
		ret = hcu_mla_decode2_launch((uint16_t *)out, (const uint16_t *)q, kv, batch,
					     n_heads, kv_lora, D, scale, split_len, n_splits,
					     part_o, part_ml);
		if (ret)
			return ret;
	} else {
		mla_decode_kernel1<<<dim3((n_heads + DEC_HG - 1) / DEC_HG, n_splits, batch),
				     DEC_THREADS, 0, hcu.stream>>>(
			(uint16_t *)out, (const uint16_t *)q, (const uint16_t *)kv->pages,
			kv->block_table, kv->seq_lens, kv->page_size, kv->max_pages, n_heads,
			kv_lora, D, scale, split_len, n_splits, part_o, part_ml);
	}
	CUDA_CHECK_LAUNCH();
	if (n_splits > 1) {
		mla_decode_combine<<<dim3(n_heads, batch), 128, 0, hcu.stream>>>(
			(uint16_t *)out, part_o, part_ml, n_heads, kv_lora, n_splits);
		CUDA_CHECK_LAUNCH();
	}
	return 0;
}

/* ---- absorption GEMMs (cuBLAS, batched over heads) ---- */

/* qc_h (n x L) = q_nope_h (n x nope) . W_UK_h (nope x L) per head h; column-major view:
 * qc_h^T (L x n) = W_UK_h^T-as-stored (L x nope, ld L) . q_h^T (nope x n, ld H*q_stride). */
int hcu_mla_absorb_q(void *qc, int qc_stride, const void *q, int q_stride,
		     const void *wkv_b, int n, int n_heads, int nope, int v_dim, int kv_lora)
{
	const float alpha = 1.0f, beta = 0.0f;
	long w_head = (long)(nope + v_dim) * kv_lora;
	int ret = hcu_need_init();

	if (ret)
		return ret;
	HCU_ARG(n >= 0 && n_heads > 0 && nope > 0 && v_dim > 0 && kv_lora > 0 &&
		q_stride >= nope && qc_stride >= kv_lora,
		"mla_absorb_q: n %d, heads %d, nope %d, v %d, kv_lora %d, strides %d/%d", n,
		n_heads, nope, v_dim, kv_lora, q_stride, qc_stride);
	if (n == 0)
		return 0;
	CUBLAS_CHECK(cublasGemmStridedBatchedEx(
		hcu.blas, CUBLAS_OP_N, CUBLAS_OP_N, kv_lora, n, nope, &alpha,
		wkv_b, CUDA_R_16BF, kv_lora, w_head,
		q, CUDA_R_16BF, n_heads * q_stride, q_stride, &beta,
		qc, CUDA_R_16BF, n_heads * qc_stride, qc_stride,
		n_heads, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
	return 0;
}

/* o_h (n x v) = oc_h (n x L) . W_UV_h^T (L x v); column-major: o_h^T (v x n) =
 * op_T(W_UV_h stored L x v, ld L) . oc_h^T (L x n, ld H*L). */
int hcu_mla_absorb_o(void *o, const void *oc, const void *wkv_b, int n, int n_heads,
		     int nope, int v_dim, int kv_lora)
{
	const float alpha = 1.0f, beta = 0.0f;
	long w_head = (long)(nope + v_dim) * kv_lora;
	int ret = hcu_need_init();

	if (ret)
		return ret;
	HCU_ARG(n >= 0 && n_heads > 0 && nope > 0 && v_dim > 0 && kv_lora > 0,
		"mla_absorb_o: n %d, heads %d, nope %d, v %d, kv_lora %d", n, n_heads, nope,
		v_dim, kv_lora);
	if (n == 0)
		return 0;
	CUBLAS_CHECK(cublasGemmStridedBatchedEx(
		hcu.blas, CUBLAS_OP_T, CUBLAS_OP_N, v_dim, n, kv_lora, &alpha,
		(const uint16_t *)wkv_b + (long)nope * kv_lora, CUDA_R_16BF, kv_lora, w_head,
		oc, CUDA_R_16BF, n_heads * kv_lora, kv_lora, &beta,
		o, CUDA_R_16BF, n_heads * v_dim, v_dim,
		n_heads, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
	return 0;
}

/* ---- prefill, version 1: CUDA cores, flash-style ---- */

#define PRE_THREADS 128
#define PRE_BQ 32                   /* queries per CTA */
#define PRE_BK 32                   /* keys per tile */
#define PRE_DQK 192
#define PRE_DV 128
#define PRE_QROW (PRE_DQK + 2)      /* 97 words: rows spread over banks */
#define PRE_VROW (PRE_DV + 2)
#define PRE_KPT (PRE_BK / 4)        /* scores per thread: 4 threads per query row */
#define PRE_VPAIRS (PRE_DV / 2 / 4) /* output pairs per thread */

/* Grid (query tiles, heads). Thread (r, qd) = (tid / 4, tid % 4) owns query row r of the
 * tile: it scores keys qd + 4 j, shares the row max / sum with its 3 neighbours by
 * shuffles, and owns output pairs qd + 4 j. Key tiles run from 0 to the tile holding
 * the CTA's last query (causal: key > query is masked). */
__global__ void __launch_bounds__(PRE_THREADS)
mla_prefill_kernel1(uint16_t *out, const uint16_t *q, const uint16_t *k, const uint16_t *v,
		    int n, int H, int dqk, int dv, float scale)
{
	__shared__ __align__(16) __nv_bfloat16 qs[PRE_BQ][PRE_QROW];
	__shared__ __align__(16) __nv_bfloat16 ks[PRE_BK][PRE_QROW];
	__shared__ __align__(16) __nv_bfloat16 vs[PRE_BK][PRE_VROW];
	__shared__ float ps[PRE_BQ][PRE_BK + 1];
	int h = blockIdx.y, q0 = blockIdx.x * PRE_BQ, tid = threadIdx.x;
	int r = tid / 4, qd = tid % 4, qi = q0 + r;
	int qw = dqk / 2, vw = dv / 2, k_end = min(n, q0 + PRE_BQ);
	float m = -INFINITY, l = 0.0f, acc[2 * PRE_VPAIRS];

	for (int i = tid; i < PRE_BQ * qw; i += PRE_THREADS) {
		int rr = i / qw, w = i % qw;
		uint32_t x = 0;

		if (q0 + rr < n)
			x = ((const uint32_t *)(q + ((long)(q0 + rr) * H + h) * dqk))[w];
		((uint32_t *)qs[rr])[w] = x;
	}
#pragma unroll
	for (int j = 0; j < 2 * PRE_VPAIRS; j++)
		acc[j] = 0.0f;
	for (int k0 = 0; k0 < k_end; k0 += PRE_BK) {
		float sc[PRE_KPT], tmax = -INFINITY, m_new, alpha, psum = 0.0f;

		__syncthreads();
		for (int i = tid; i < PRE_BK * qw; i += PRE_THREADS) {
			int kk = i / qw, w = i % qw;
			uint32_t x = 0;

			if (k0 + kk < n)
				x = ((const uint32_t *)(k + ((long)(k0 + kk) * H + h) * dqk))[w];
			((uint32_t *)ks[kk])[w] = x;
		}
		for (int i = tid; i < PRE_BK * vw; i += PRE_THREADS) {
			int kk = i / vw, w = i % vw;
			uint32_t x = 0;

			if (k0 + kk < n)
				x = ((const uint32_t *)(v + ((long)(k0 + kk) * H + h) * dv))[w];
			((uint32_t *)vs[kk])[w] = x;
		}
		__syncthreads();
#pragma unroll
		for (int j = 0; j < PRE_KPT; j++) {
			int kj = k0 + qd + 4 * j;

			sc[j] = -INFINITY;
			if (kj < n && kj <= qi) {
				const __nv_bfloat162 *qa = (const __nv_bfloat162 *)qs[r];
				const __nv_bfloat162 *ka = (const __nv_bfloat162 *)ks[qd + 4 * j];
				float dot = 0.0f;

				for (int w = 0; w < qw; w++) {
					float2 a = __bfloat1622float2(qa[w]);
					float2 b = __bfloat1622float2(ka[w]);

					dot += a.x * b.x + a.y * b.y;
				}
				sc[j] = dot * scale;
			}
			tmax = fmaxf(tmax, sc[j]);
		}
		tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 1));
		tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 2));
		m_new = fmaxf(m, tmax);
		alpha = m_new == -INFINITY ? 1.0f : expf(m - m_new);
#pragma unroll
		for (int j = 0; j < PRE_KPT; j++) {
			float p = sc[j] == -INFINITY ? 0.0f : expf(sc[j] - m_new);

			ps[r][qd + 4 * j] = p;
			psum += p;
		}
		psum += __shfl_xor_sync(0xffffffffu, psum, 1);
		psum += __shfl_xor_sync(0xffffffffu, psum, 2);
		l = l * alpha + psum;
		m = m_new;
		__syncthreads();
		#pragma unroll
		for (int j = 0; j < PRE_VPAIRS; j++) {
			int c = 2 * (qd + 4 * j);

			if (c >= dv)
				continue;
			float a0 = acc[2 * j] * alpha, a1 = acc[2 * j + 1] * alpha;

			for (int kk = 0; kk < PRE_BK; kk++) {
				float p = ps[r][kk];
				float2 x = __bfloat1622float2(*(const __nv_bfloat162 *)&vs[kk][c]);

				a0 += p * x.x;
				a1 += p * x.y;
			}
			acc[2 * j] = a0;
			acc[2 * j + 1] = a1;
		}
	}
	if (qi >= n)
		return;
	float inv = l > 0.0f ? 1.0f / l : 0.0f;
	uint16_t *o = out + ((long)qi * H + h) * dv;

	#pragma unroll
	for (int j = 0; j < PRE_VPAIRS; j++) {
		int c = 2 * (qd + 4 * j);

		if (c >= dv)
			continue;
		o[c] = hcu_to_bf(acc[2 * j] * inv);
		o[c + 1] = hcu_to_bf(acc[2 * j + 1] * inv);
	}
}

int hcu_mla_prefill(void *out, const void *q, const void *k, const void *v, int n,
		    int n_heads, int qk_dim, int v_dim, float scale, int version)
{
	int ret = hcu_need_init();

	if (ret)
		return ret;
	HCU_ARG(n >= 0 && n_heads > 0 && n_heads <= 65535, "mla_prefill: n %d, n_heads %d", n,
		n_heads);
	HCU_ARG(qk_dim > 0 && qk_dim <= PRE_DQK && qk_dim % 2 == 0 && v_dim > 0 &&
		v_dim <= PRE_DV && v_dim % 2 == 0,
		"mla_prefill: qk_dim %d (even, <= %d), v_dim %d (even, <= %d)", qk_dim, PRE_DQK,
		v_dim, PRE_DV);
	HCU_ARG(version >= 0 && version < HMOE_MLA_PREFILL_COUNT, "mla_prefill: no version %d",
		version);
	/* AUTO: version 2 (hmoe_cuda_prefill.cu) where it takes the device and the arguments
	 * (dims multiples of 8, aligned pointers), else version 1 (always version 1 with
	 * hcu.auto_v1); an explicit version 2 checks its own */
	if (version == HMOE_MLA_PREFILL_AUTO)
		version = !hcu.auto_v1 && hcu_mla_prefill2_ok(out, q, k, v, qk_dim, v_dim)
				  ? HMOE_MLA_PREFILL_V2 : HMOE_MLA_PREFILL_V1;
	if (version == HMOE_MLA_PREFILL_V2)
		return hcu_mla_prefill2(out, q, k, v, n, n_heads, qk_dim, v_dim, scale);
	if (n == 0)
		return 0;
	mla_prefill_kernel1<<<dim3(hcu_blocks(n, PRE_BQ), n_heads), PRE_THREADS, 0, hcu.stream>>>(
		(uint16_t *)out, (const uint16_t *)q, (const uint16_t *)k, (const uint16_t *)v, n,
		n_heads, qk_dim, v_dim, scale);
	CUDA_CHECK_LAUNCH();
	return 0;
}
