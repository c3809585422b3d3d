/* hmoe_cuda_ref: CPU references of the GPU kernels (see hmoe_cuda_ref.h). Clarity over
 * speed; double where the GPU accumulates in fp32, so a test's tolerance bounds the GPU's
 * error rather than the difference of two roundings. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmoe_cuda_ref.h"
#include "hmoe_num.h"

static float bf(uint16_t h)
{
	return hmoe_bf16_to_f32(h);
}

void hcu_ref_rmsnorm(float *out, const uint16_t *x, const uint16_t *w, int n_rows, int dim,
		     float eps)
{
	for (int r = 0; r < n_rows; r++) {
		const uint16_t *xr = x + (long)r * dim;
		float ss = 0.0f, inv;

		for (int i = 0; i < dim; i++)
			ss += bf(xr[i]) * bf(xr[i]);
		inv = 1.0f / sqrtf(ss / (float)dim + eps);
		for (int i = 0; i < dim; i++)
			out[(long)r * dim + i] = hmoe_round_bf16(bf(xr[i]) * inv) * bf(w[i]);
	}
}

void hcu_ref_rope(float *out, const uint16_t *x, int n_tokens, int token_stride, int n_heads,
		  int head_stride, int offset, int rope_dim, const int32_t *pos,
		  const float *freqs)
{
	for (int t = 0; t < n_tokens; t++)
		for (int h = 0; h < n_heads; h++)
			for (int i = 0; i < rope_dim / 2; i++) {
				long at = (long)t * token_stride + (long)h * head_stride + offset + 2 * i;
				float a = (float)pos[t] * freqs[i], c = cosf(a), s = sinf(a);
				float x0 = bf(x[at]), x1 = bf(x[at + 1]);

				out[at] = x0 * c - x1 * s;
				out[at + 1] = x0 * s + x1 * c;
			}
}

/* corr(r) = dim * ln(orig / (r * 2 pi)) / (2 ln base) */
static float yarn_corr(float r, int dim, int orig, float base)
{
	return (float)dim * logf((float)orig / (r * 2.0f * (float)M_PI)) / (2.0f * logf(base));
}

void hcu_ref_yarn_freqs(float *freqs, int rope_dim, float base, float factor, int orig_len,
			float beta_fast, float beta_slow, int yarn)
{
	int half = rope_dim / 2;
	float low, high;

	for (int i = 0; i < half; i++)
		freqs[i] = 1.0f / powf(base, (float)(2 * i) / (float)rope_dim);
	if (!yarn || factor <= 1.0f)
		return;
	low = floorf(yarn_corr(beta_fast, rope_dim, orig_len, base));
	high = ceilf(yarn_corr(beta_slow, rope_dim, orig_len, base));
	if (low < 0.0f)
		low = 0.0f;
	if (high > (float)(rope_dim - 1))
		high = (float)(rope_dim - 1);
	if (low == high)
		high += 0.001f;
	for (int i = 0; i < half; i++) {
		float ramp = ((float)i - low) / (high - low), smooth;

		ramp = ramp < 0.0f ? 0.0f : ramp > 1.0f ? 1.0f : ramp;
		smooth = 1.0f - ramp;
		freqs[i] = freqs[i] / factor * (1.0f - smooth) + freqs[i] * smooth;
	}
}

void hcu_ref_gemm(double *y, double *absy, const uint16_t *x, const uint16_t *w, int n,
		  int in, int out)
{
	for (int t = 0; t < n; t++)
		for (int o = 0; o < out; o++) {
			double s = 0.0, a = 0.0;

			for (int i = 0; i < in; i++) {
				double p = (double)bf(x[(long)t * in + i]) * bf(w[(long)o * in + i]);

				s += p;
				a += fabs(p);
			}
			y[(long)t * out + o] = s;
			absy[(long)t * out + o] = a;
		}
}

void hcu_ref_fp8_matvec(double *y, double *absy, const uint16_t *x, const uint8_t *codes,
			const float *scale, int n, int in, int out)
{
	int n_kb = (in + 127) / 128;

	for (int t = 0; t < n; t++)
		for (int o = 0; o < out; o++) {
			double s = 0.0, a = 0.0;

			for (int kb = 0; kb < n_kb; kb++) {
				double part = 0.0, sc = scale[(long)(o / 128) * n_kb + kb];

				for (int i = kb * 128; i < in && i < (kb + 1) * 128; i++) {
					double p = (double)bf(x[(long)t * in + i]) *
						   hmoe_fp8_e4m3_to_f32(codes[(long)o * in + i]);

					part += p;
					a += fabs(p * sc);
				}
				s += part * sc;
			}
			y[(long)t * out + o] = s;
			absy[(long)t * out + o] = a;
		}
}

void hcu_ref_fp8_dequant(uint16_t *w, const uint8_t *codes, const float *scale, int rows,
			 int cols)
{
	int n_kb = (cols + 127) / 128;

	for (int r = 0; r < rows; r++)
		for (int c = 0; c < cols; c++) {
			float v = hmoe_fp8_e4m3_to_f32(codes[(long)r * cols + c]) *
				  scale[(long)(r / 128) * n_kb + c / 128];

			w[(long)r * cols + c] = hmoe_f32_to_bf16(v);
		}
}

int hcu_ref_argmax(const float *l, int n)
{
	int best = 0;

	for (int i = 1; i < n; i++)
		if (l[i] > l[best])
			best = i;
	return best;
}

static int cmp_desc(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? 1 : x > y ? -1 : 0;
}

int hcu_ref_sample_ok(const float *l, int n, float temperature, float top_p, float u, int id,
		      double tol, char *why, int why_n)
{
	double m = l[hcu_ref_argmax(l, n)], z = 0.0, theta = 0.0, mass = 0.0, lo = 0.0, e_id;
	double *e = malloc(sizeof(double) * (size_t)n), *sorted = malloc(sizeof(double) * (size_t)n);
	int ok = 0;

	if (!e || !sorted) {
		snprintf(why, (size_t)why_n, "out of memory");
		goto out;
	}
	if (id < 0 || id >= n) {
		snprintf(why, (size_t)why_n, "id %d outside [0, %d)", id, n);
		goto out;
	}
	for (int i = 0; i < n; i++) {
		e[i] = exp(((double)l[i] - m) / temperature);
		z += e[i];
	}
	if (top_p < 1.0f) {
		double run = 0.0;

		memcpy(sorted, e, sizeof(double) * (size_t)n);
		qsort(sorted, (size_t)n, sizeof(double), cmp_desc);
		for (int i = 0; i < n; i++) {
			run += sorted[i];
			theta = sorted[i];
			if (run >= top_p * z)
				break;
		}
	}
	for (int i = 0; i < n; i++)
		if (e[i] >= theta) {
			mass += e[i];
			if (i < id)
				lo += e[i];
		}
	e_id = e[id];
	if (e_id < theta * (1.0 - tol)) {
		snprintf(why, (size_t)why_n, "id %d has p %.3g below the top-p cut %.3g", id,
			 e_id / z, theta / z);
		goto out;
	}
	if (u < lo / mass - tol || u > (lo + e_id) / mass + tol) {
		snprintf(why, (size_t)why_n, "u %.6f outside id %d's interval [%.6f, %.6f)", u, id,
			 lo / mass, (lo + e_id) / mass);
		goto out;
	}
	ok = 1;
out:
	free(e);
	free(sorted);
	return ok;
}

void hcu_ref_route(int32_t *ids, float *weights, const float *logits, const float *bias,
		   int n, int n_experts, int n_group, int topk_group, int top_k, int softmax,
		   int norm, float scale, float *sel_out)
{
	float *s = malloc(sizeof(float) * (size_t)n_experts * 2), *sel = s + n_experts;
	int gsize = n_experts / n_group;

	if (!s)
		abort();
	for (int t = 0; t < n; t++) {
		const float *l = logits + (long)t * n_experts;
		int32_t *id = ids + (long)t * top_k;
		float sum = 0.0f;

		if (softmax) {
			float m = l[0], z = 0.0f;

			for (int e = 1; e < n_experts; e++)
				m = l[e] > m ? l[e] : m;
			for (int e = 0; e < n_experts; e++) {
				s[e] = expf(l[e] - m);
				z += s[e];
			}
			for (int e = 0; e < n_experts; e++)
				s[e] = s[e] / z;
		} else {
			for (int e = 0; e < n_experts; e++)
				s[e] = 1.0f / (1.0f + expf(-l[e]));
		}
		for (int e = 0; e < n_experts; e++)
			sel[e] = bias ? s[e] + bias[e] : s[e];
		if (n_group > 1) {
			float gscore[1024];
			int keep[1024] = { 0 };

			for (int g = 0; g < n_group; g++) {
				float t1 = -INFINITY, t2 = -INFINITY;

				for (int j = g * gsize; j < (g + 1) * gsize; j++) {
					if (sel[j] > t1) {
						t2 = t1;
						t1 = sel[j];
					} else if (sel[j] > t2) {
						t2 = sel[j];
					}
				}
				gscore[g] = (bias && gsize > 1) ? t1 + t2 : t1;
			}
			for (int k = 0; k < topk_group; k++) {
				int best = -1;

				for (int g = 0; g < n_group; g++)
					if (!keep[g] && (best < 0 || gscore[g] > gscore[best]))
						best = g;
				keep[best] = 1;
			}
			for (int e = 0; e < n_experts; e++)
				if (!keep[e / gsize])
					sel[e] = -INFINITY;
		}
		if (sel_out && t == n - 1)
			memcpy(sel_out, sel, sizeof(float) * (size_t)n_experts);
		for (int k = 0; k < top_k; k++) {
			int best = -1;

			for (int e = 0; e < n_experts; e++)
				if (sel[e] != -INFINITY && (best < 0 || sel[e] > sel[best]))
					best = e;
			id[k] = best;
			if (best >= 0)
				sel[best] = -INFINITY;
		}
		for (int a = 1; a < top_k; a++)
			for (int b = a; b > 0 && id[b - 1] > id[b]; b--) {
				int32_t x = id[b];

				id[b] = id[b - 1];
				id[b - 1] = x;
			}
		for (int k = 0; k < top_k; k++)
			sum += id[k] >= 0 ? s[id[k]] : 0.0f;
		for (int k = 0; k < top_k; k++) {
			float w = id[k] >= 0 ? s[id[k]] : 0.0f;

			weights[(long)t * top_k + k] = (norm ? w / sum : w) * scale;
		}
	}
	free(s);
}

/* Row t (D bf16 values) of a sequence in the paged latent cache, through its block-table row. */
static const uint16_t *cache_row(const uint16_t *pages, const int32_t *blocks, int page_size,
				 int t, int D)
{
	return pages + ((long)blocks[t / page_size] * page_size + t % page_size) * D;
}

void hcu_ref_mla_decode(double *out, const uint16_t *q, const uint16_t *pages,
			const int32_t *block_table, const int32_t *seq_lens, int page_size,
			int max_pages, int batch, int H, int L, int R, float scale, double *spread)
{
	int D = L + R;

	for (int b = 0; b < batch; b++) {
		int len = seq_lens[b];
		double *p = malloc(sizeof(double) * (size_t)(len > 0 ? len : 1));

		if (!p)
			abort();
		for (int h = 0; h < H; h++) {
			const uint16_t *qh = q + ((long)b * H + h) * D;
			double *o = out + ((long)b * H + h) * L, m = -INFINITY, z = 0.0;

			for (int t = 0; t < len; t++) {
				const uint16_t *kv = cache_row(pages, block_table + (long)b * max_pages,
							       page_size, t, D);
				double s = 0.0;

				for (int d = 0; d < D; d++)
					s += (double)bf(qh[d]) * bf(kv[d]);
				p[t] = s * scale;
				m = p[t] > m ? p[t] : m;
			}
			for (int t = 0; t < len; t++) {
				p[t] = exp(p[t] - m);
				z += p[t];
			}
			for (int c = 0; c < L; c++)
				o[c] = 0.0;
			for (int t = 0; t < len; t++) {
				const uint16_t *kv = cache_row(pages, block_table + (long)b * max_pages,
							       page_size, t, D);

				for (int c = 0; c < L; c++)
					o[c] += p[t] / z * bf(kv[c]);
			}
			if (!spread)
				continue;
			double *sp = spread + ((long)b * H + h) * L;

			for (int c = 0; c < L; c++)
				sp[c] = 0.0;
			for (int t = 0; t < len; t++) {
				const uint16_t *kv = cache_row(pages, block_table + (long)b * max_pages,
							       page_size, t, D);

				for (int c = 0; c < L; c++)
					sp[c] += p[t] / z * fabs(bf(kv[c]) - o[c]);
			}
		}
		free(p);
	}
}

void hcu_ref_mla_prefill(double *out, const uint16_t *q, const uint16_t *k, const uint16_t *v,
			 int n, int H, int dqk, int dv, float scale, double *spread)
{
	double *p = malloc(sizeof(double) * (size_t)n);

	if (!p)
		abort();
	for (int i = 0; i < n; i++)
		for (int h = 0; h < H; h++) {
			const uint16_t *qi = q + ((long)i * H + h) * dqk;
			double m = -INFINITY, z = 0.0, *o = out + ((long)i * H + h) * dv;

			for (int j = 0; j <= i; j++) {
				const uint16_t *kj = k + ((long)j * H + h) * dqk;
				double s = 0.0;

				for (int d = 0; d < dqk; d++)
					s += (double)bf(qi[d]) * bf(kj[d]);
				p[j] = s * scale;
				m = p[j] > m ? p[j] : m;
			}
			for (int j = 0; j <= i; j++) {
				p[j] = exp(p[j] - m);
				z += p[j];
			}
			for (int c = 0; c < dv; c++) {
				double s = 0.0;

				for (int j = 0; j <= i; j++)
					s += p[j] * bf(v[((long)j * H + h) * dv + c]);
				o[c] = s / z;
				if (!spread)
					continue;
				s = 0.0;
				for (int j = 0; j <= i; j++)
					s += p[j] * fabs(bf(v[((long)j * H + h) * dv + c]) - o[c]);
				spread[((long)i * H + h) * dv + c] = s / z;
			}
		}
	free(p);
}

void hcu_ref_absorb_q(double *qc, double *abs_qc, const uint16_t *q, int q_stride,
		      const uint16_t *wkv_b, int n, int H, int nope, int v, int L)
{
	for (int i = 0; i < n; i++)
		for (int h = 0; h < H; h++)
			for (int c = 0; c < L; c++) {
				double s = 0.0, a = 0.0;

				for (int d = 0; d < nope; d++) {
					double x = (double)bf(q[((long)i * H + h) * q_stride + d]) *
						   bf(wkv_b[((long)h * (nope + v) + d) * L + c]);

					s += x;
					a += fabs(x);
				}
				qc[((long)i * H + h) * L + c] = s;
				abs_qc[((long)i * H + h) * L + c] = a;
			}
}

void hcu_ref_absorb_o(double *o, double *abs_o, const uint16_t *oc, const uint16_t *wkv_b,
		      int n, int H, int nope, int v, int L)
{
	for (int i = 0; i < n; i++)
		for (int h = 0; h < H; h++)
			for (int d = 0; d < v; d++) {
				double s = 0.0, a = 0.0;

				for (int c = 0; c < L; c++) {
					double x = (double)bf(oc[((long)i * H + h) * L + c]) *
						   bf(wkv_b[((long)h * (nope + v) + nope + d) * L + c]);

					s += x;
					a += fabs(x);
				}
				o[((long)i * H + h) * v + d] = s;
				abs_o[((long)i * H + h) * v + d] = a;
			}
}
