/* fake_cuda: a CPU stand-in for libhmoe_cuda.so, for testing the GPU tests themselves on
 * machines without a GPU. It exports the same API table; "device memory" is host memory.
 * Most entry points are the references rounded the way the GPU rounds; three mirror the
 * GPU algorithm in plain C so that the algorithm (not the CUDA code) is checked against
 * the independent reference: MLA decode (head groups, tiles, split-K, online softmax,
 * combine), top-p sampling (bisection on the threshold's bits, walk in id order) and the
 * fixed-point quantiser (the integer steps, against the CPU's hmoe_fxp_quant_x).
 * Built as $(BUILD)/tests/gpu/libfake_cuda.so; test_cuda uses it via HMOE_CUDA_LIB. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda/hmoe_cuda.h"
#include "cuda/hmoe_cuda_ref.h"
#include "hmoe_fxp.h"
#include "hmoe_num.h"

static char fake_msg[256];
static double fake_ev[8];

static const char *fake_last_error(void) { return fake_msg; }
static int fake_device_count(int *n) { *n = 1; return 0; }
static int fake_init(int d) { return d == 0 ? 0 : -4; }
static int fake_device_name(char *b, size_t n) { snprintf(b, n, "fake CPU backend"); return 0; }
static int fake_versions(int *d, int *r) { *d = *r = 0; return 0; }
static int fake_malloc(void **p, size_t n) { *p = malloc(n ? n : 1); return *p ? 0 : -2; }
static int fake_free(void *p) { free(p); return 0; }
static int fake_copy(void *d, const void *s, size_t n) { memcpy(d, s, n); return 0; }
static int fake_fill_nan(void *p, size_t n) { memset(p, 0xff, n); return 0; }
static int fake_sync(void) { return 0; }

static int fake_event_record(int i)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	fake_ev[i & 7] = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
	return 0;
}

static int fake_elapsed_ms(int a, int b, float *ms)
{
	*ms = (float)((fake_ev[b & 7] - fake_ev[a & 7]) * 1e3);
	return 0;
}

static int fake_rmsnorm(void *out, int os, const void *x, int xs, const void *w, int rows,
			int dim, float eps)
{
	float *t = malloc(sizeof(float) * (size_t)dim);

	for (int r = 0; r < rows; r++) {
		hcu_ref_rmsnorm(t, (const uint16_t *)x + (long)r * xs, w, 1, dim, eps);
		for (int i = 0; i < dim; i++)
			((uint16_t *)out)[(long)r * os + i] = hmoe_f32_to_bf16(t[i]);
	}
	free(t);
	return 0;
}

static int fake_add(void *y, const void *x, long n)
{
	for (long i = 0; i < n; i++)
		((uint16_t *)y)[i] = hmoe_f32_to_bf16(hmoe_bf16_to_f32(((uint16_t *)y)[i]) +
						      hmoe_bf16_to_f32(((const uint16_t *)x)[i]));
	return 0;
}

static int fake_silu_mul(void *g_, const void *u, long n)
{
	uint16_t *g = g_;

	for (long i = 0; i < n; i++) {
		float v = hmoe_bf16_to_f32(g[i]);

		g[i] = hmoe_f32_to_bf16(v / (1.0f + expf(-v)) *
					hmoe_bf16_to_f32(((const uint16_t *)u)[i]));
	}
	return 0;
}

static int fake_copy2d(void *d, size_t dp, const void *s, size_t sp, size_t w, size_t rows)
{
	for (size_t r = 0; r < rows; r++)
		memcpy((char *)d + r * dp, (const char *)s + r * sp, w);
	return 0;
}

static int fake_rope(void *x_, int n, int ts, int nh, int hs, int off, int rd, const int32_t *pos,
		     const float *freqs)
{
	uint16_t *x = x_;

	for (int t = 0; t < n; t++)
		for (int h = 0; h < nh; h++)
			for (int i = 0; i < rd / 2; i++) {
				uint16_t *p = x + (long)t * ts + (long)h * hs + off + 2 * i;
				float a = (float)pos[t] * freqs[i], c = cosf(a), s = sinf(a);
				float x0 = hmoe_bf16_to_f32(p[0]), x1 = hmoe_bf16_to_f32(p[1]);

				p[0] = hmoe_f32_to_bf16(x0 * c - x1 * s);
				p[1] = hmoe_f32_to_bf16(x0 * s + x1 * c);
			}
	return 0;
}

static int fake_embed(void *out, const void *table, const int32_t *ids, int n, int dim, int vocab)
{
	for (int t = 0; t < n; t++)
		for (int i = 0; i < dim; i++)
			((uint16_t *)out)[(long)t * dim + i] =
				ids[t] >= 0 && ids[t] < vocab
					? ((const uint16_t *)table)[(long)ids[t] * dim + i] : 0x7fc0;
	return 0;
}

static void store(void *y, int f32, long i, double v)
{
	if (f32)
		((float *)y)[i] = (float)v;
	else
		((uint16_t *)y)[i] = hmoe_f32_to_bf16((float)v);
}

static int fake_gemm(void *y, int f32, const void *x, const void *w, int n, int in, int out)
{
	double *r = malloc(sizeof(double) * (size_t)n * out), *a = malloc(sizeof(double) * (size_t)n * out);

	hcu_ref_gemm(r, a, x, w, n, in, out);
	for (long i = 0; i < (long)n * out; i++)
		store(y, f32, i, r[i]);
	free(r), free(a);
	return 0;
}

static int fake_fp8_matvec(void *y, int f32, const void *x, const uint8_t *c, const float *s,
			   int n, int in, int out)
{
	double *r = malloc(sizeof(double) * (size_t)n * out), *a = malloc(sizeof(double) * (size_t)n * out);

	hcu_ref_fp8_matvec(r, a, x, c, s, n, in, out);
	for (long i = 0; i < (long)n * out; i++)
		store(y, f32, i, r[i]);
	free(r), free(a);
	return 0;
}

static int fake_fp8_dequant(void *w, const uint8_t *c, const float *s, int rows, int cols)
{
	hcu_ref_fp8_dequant(w, c, s, rows, cols);
	return 0;
}

/* The GPU's top-p algorithm, serially. */
static float kept_mass(const float *l, int n, float m, float inv_t, float theta)
{
	float s = 0.0f;

	for (int i = 0; i < n; i++) {
		float e = expf((l[i] - m) * inv_t);

		if (e >= theta)
			s += e;
	}
	return s;
}

static int fake_sample(int32_t *ids, const float *logits, int rows, int stride, int n,
		       float temperature, float top_p, const float *u)
{
	for (int r = 0; r < rows; r++) {
		const float *l = logits + (long)r * stride;
		int best = hcu_ref_argmax(l, n), pick = best;
		float m = l[best], inv_t, z, theta = 0.0f, mass, target, run = 0.0f;

		if (temperature > 0.0f) {
			inv_t = 1.0f / temperature;
			z = kept_mass(l, n, m, inv_t, 0.0f);
			if (top_p < 1.0f) {
				uint32_t lo = 0, hi = 0x3f800001u;

				while (hi - lo > 1u) {
					uint32_t mid = lo + (hi - lo) / 2u;
					float th;

					memcpy(&th, &mid, 4);
					if (kept_mass(l, n, m, inv_t, th) >= top_p * z)
						lo = mid;
					else
						hi = mid;
				}
				memcpy(&theta, &lo, 4);
			}
			mass = kept_mass(l, n, m, inv_t, theta);
			target = u[r] * mass;
			for (int i = 0; i < n; i++) {
				float e = expf((l[i] - m) * inv_t);

				if (e < theta)
					continue;
				pick = i;
				run += e;
				if (run > target)
					break;
			}
		}
		ids[r] = pick;
	}
	return 0;
}

static int fake_route(int32_t *ids, float *w, const float *l, const float *b, int n, int E, int g,
		      int kg, int k, int sm, int norm, float scale)
{
	hcu_ref_route(ids, w, l, b, n, E, g, kg, k, sm, norm, scale, NULL);
	return 0;
}

/* The GPU quantiser's steps: exact x * 2^32 truncated, then the integer quantiser, into
 * xq (n, planes, groups * 128). */
_Static_assert(HMOE_FXP_CONTRACT_VERSION == 3, "docs/fxp.md changed: re-check the quantiser");
static int fake_fxp_quant_x(int8_t *xq, int32_t *xs, const void *x, int f32, int n, int dim,
			    int planes)
{
	int groups = (dim + 127) / 128;
	long plane = (long)groups * 128;

	if (n < 0 || dim <= 0 || (planes != 1 && planes != 2)) {
		snprintf(fake_msg, sizeof(fake_msg), "fxp_quant_x: n %d, dim %d, planes %d", n,
			 dim, planes);
		return -1; /* HMOE_EINPUT, as the GPU's argument checks */
	}

	for (int t = 0; t < n; t++)
		for (int g = 0; g < groups; g++) {
			int64_t v[128];
			int cnt = dim - g * 128 < 128 ? dim - g * 128 : 128;

			for (int i = 0; i < cnt; i++) {
				long at = (long)t * dim + g * 128 + i;
				float f = f32 ? ((const float *)x)[at]
					      : hmoe_bf16_to_f32(((const uint16_t *)x)[at]);

				v[i] = f != f ? 0 : f >= 1073741824.0f ? HMOE_FXP_ACT_IN_MAX
				     : f <= -1073741824.0f ? -HMOE_FXP_ACT_IN_MAX
				     : (int64_t)(f * 4294967296.0f);
			}
			int8_t *hi = xq + (long)t * planes * plane + (long)g * 128;
			int8_t *lo = planes == 2 ? hi + plane : NULL;

			xs[(long)t * groups + g] = hmoe_fxp_quant_group(v, cnt, planes, hi, lo);
			memset(hi + cnt, 0, (size_t)(128 - cnt));
			if (lo)
				memset(lo + cnt, 0, (size_t)(128 - cnt));
		}
	return 0;
}

/* The GPU decode algorithm: per (seq, split, head) an online softmax over tiles of 16
 * tokens in fp32, partials (o, m, l) per split, then the log-sum-exp combine. Version 2
 * (tensor cores) rounds each probability to bf16 before it weighs a value and sums the
 * rounded ones, as the kernel does. */
static int fake_mla_decode(void *out, const void *q_, const struct hmoe_cuda_kv_pages *kv,
			   int batch, int H, int L, int R, float scale, int version)
{
	const uint16_t *q = q_, *pages = kv->pages;
	int D = L + R, max_len = kv->max_seq_len > 0 ? kv->max_seq_len : 1;
	int n_splits = (max_len + 63) / 64 < 5 ? (max_len + 63) / 64 : 5, split_len;
	float *po = malloc(sizeof(float) * (size_t)n_splits * L), pm[64], pl[64];

	split_len = ((max_len + n_splits - 1) / n_splits + 15) / 16 * 16;
	for (int b = 0; b < batch; b++)
		for (int h = 0; h < H; h++) {
			const uint16_t *qh = q + ((long)b * H + h) * D;
			int len = kv->seq_lens[b];

			for (int s = 0; s < n_splits; s++) {
				int t0 = s * split_len, t1 = len < t0 + split_len ? len : t0 + split_len;
				float m = -INFINITY, l = 0.0f, *acc = po + (long)s * L;

				memset(acc, 0, sizeof(float) * (size_t)L);
				for (int tile = t0; tile < t1; tile += 16) {
					float sc[16], tmax = -INFINITY, m_new, alpha;
					const uint16_t *row[16];

					for (int j = 0; j < 16; j++) {
						int tok = tile + j;

						sc[j] = -INFINITY;
						row[j] = NULL;
						if (tok >= t1)
							continue;
						row[j] = pages + ((long)kv->block_table[(long)b * kv->max_pages +
							tok / kv->page_size] * kv->page_size + tok % kv->page_size) * D;
						float dot = 0.0f;

						for (int d = 0; d < D; d++)
							dot += hmoe_bf16_to_f32(qh[d]) * hmoe_bf16_to_f32(row[j][d]);
						sc[j] = dot * scale;
						tmax = sc[j] > tmax ? sc[j] : tmax;
					}
					m_new = m > tmax ? m : tmax;
					alpha = m_new == -INFINITY ? 1.0f : expf(m - m_new);
					l *= alpha;
					for (int c = 0; c < L; c++)
						acc[c] *= alpha;
					for (int j = 0; j < 16; j++) {
						float p = sc[j] == -INFINITY ? 0.0f : expf(sc[j] - m_new);

						if (version == HMOE_MLA_DECODE_V2)
							p = hmoe_bf16_to_f32(hmoe_f32_to_bf16(p));
						l += p;
						for (int c = 0; row[j] && c < L; c++)
							acc[c] += p * hmoe_bf16_to_f32(row[j][c]);
					}
					m = m_new;
				}
				pm[s] = m;
				pl[s] = l;
			}
			float M = -INFINITY, den = 0.0f;

			for (int s = 0; s < n_splits; s++)
				M = pm[s] > M ? pm[s] : M;
			for (int s = 0; s < n_splits; s++)
				if (pm[s] != -INFINITY)
					den += expf(pm[s] - M) * pl[s];
			for (int c = 0; c < L; c++) {
				float num = 0.0f;

				for (int s = 0; s < n_splits; s++)
					if (pm[s] != -INFINITY)
						num += expf(pm[s] - M) * po[(long)s * L + c];
				((uint16_t *)out)[((long)b * H + h) * L + c] =
					hmoe_f32_to_bf16(den > 0.0f ? num / den : 0.0f);
			}
		}
	free(po);
	return 0;
}

static int fake_absorb_q(void *qc, int qc_stride, const void *q, int q_stride, const void *w,
			 int n, int H, int nope, int v, int L)
{
	double *r = malloc(sizeof(double) * (size_t)n * H * L), *a = malloc(sizeof(double) * (size_t)n * H * L);

	hcu_ref_absorb_q(r, a, q, q_stride, w, n, H, nope, v, L);
	for (long i = 0; i < (long)n * H; i++)
		for (int c = 0; c < L; c++)
			((uint16_t *)qc)[i * qc_stride + c] = hmoe_f32_to_bf16((float)r[i * L + c]);
	free(r), free(a);
	return 0;
}

static int fake_absorb_o(void *o, const void *oc, const void *w, int n, int H, int nope, int v,
			 int L)
{
	double *r = malloc(sizeof(double) * (size_t)n * H * v), *a = malloc(sizeof(double) * (size_t)n * H * v);

	hcu_ref_absorb_o(r, a, oc, w, n, H, nope, v, L);
	for (long i = 0; i < (long)n * H * v; i++)
		((uint16_t *)o)[i] = hmoe_f32_to_bf16((float)r[i]);
	free(r), free(a);
	return 0;
}

static int fake_prefill(void *out, const void *q, const void *k, const void *v, int n, int H,
			int dqk, int dv, float scale, int version)
{
	double *r;

	/* every version is the reference rounded to bf16 (a stand-in of the API, not of a
	 * kernel); an unknown version is refused as the real dispatcher refuses it */
	if (version < 0 || version >= HMOE_MLA_PREFILL_COUNT) {
		snprintf(fake_msg, sizeof(fake_msg), "mla_prefill: no version %d", version);
		return -1; /* HMOE_EINPUT */
	}
	r = malloc(sizeof(double) * (size_t)n * H * dv);
	hcu_ref_mla_prefill(r, q, k, v, n, H, dqk, dv, scale, NULL);
	for (long i = 0; i < (long)n * H * dv; i++)
		((uint16_t *)out)[i] = hmoe_f32_to_bf16((float)r[i]);
	free(r);
	return 0;
}

static const struct hmoe_cuda_api fake_api = {
	HMOE_CUDA_ABI, fake_last_error, fake_device_count, fake_init, fake_device_name,
	fake_versions, fake_malloc, fake_free, fake_copy, fake_copy, fake_copy, fake_fill_nan,
	fake_sync, fake_event_record, fake_elapsed_ms, fake_rmsnorm, fake_add, fake_silu_mul,
	fake_copy2d, fake_rope, fake_embed,
	fake_gemm, fake_fp8_matvec, fake_fp8_dequant, fake_sample, fake_route, fake_fxp_quant_x,
	fake_mla_decode, fake_absorb_q, fake_absorb_o, fake_prefill,
};

const struct hmoe_cuda_api *hmoe_cuda_get_api(void)
{
	return &fake_api;
}
