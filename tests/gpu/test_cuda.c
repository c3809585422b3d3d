/* test_cuda: every GPU kernel of libhmoe_cuda.so against its CPU reference
 * (runtime/cuda/hmoe_cuda_ref.c) on fresh random data, with explicit tolerances, and
 * with every output buffer poisoned with NaN before the kernel runs (a kernel that skips
 * an element fails the comparison).
 *
 *   test_cuda KERNEL   KERNEL: rmsnorm elementwise rope embed gemm fp8 sample route fxp_quant
 *                      mla_decode mla_absorb mla_prefill args, or `ref` (CPU only: checks the references
 *                      themselves against published numbers and against each other)
 *
 * Exit 0 pass, 1 fail, 77 skip: "no CUDA device" when nvidia-smi -L fails or no device
 * is visible, "nvcc not found" when the backend could not be built.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/hmoe_cuda.h"
#include "cuda/hmoe_cuda_ref.h"
#include "gpu_check.h"
#include "gpu_open.h"
#include "hmoe_fxp.h"
#include "hmoe_err.h"
#include "hmoe_fxp_pack.h"
#include "hmoe_num.h"

static const struct hmoe_cuda_api *api;

#define CHECK(call)                                                                       \
	do {                                                                              \
		if ((call) < 0) {                                                         \
			fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,     \
				api->last_error());                                       \
			exit(1);                                                          \
		}                                                                         \
	} while (0)

/* Device copy of a host buffer. */
static void *up(const void *src, size_t bytes)
{
	void *d;

	CHECK(api->malloc(&d, bytes));
	CHECK(api->h2d(d, src, bytes));
	return d;
}

/* Device buffer filled with NaN (0xff bytes). */
static void *poisoned(size_t bytes)
{
	void *d;

	CHECK(api->malloc(&d, bytes));
	CHECK(api->fill_nan(d, bytes));
	return d;
}

static void *down(const void *d, size_t bytes)
{
	void *h = xmalloc(bytes);

	CHECK(api->sync());
	CHECK(api->d2h(h, d, bytes));
	return h;
}

static double bf16_val(uint16_t h)
{
	return hmoe_bf16_to_f32(h);
}

/* ---- the tests ---- */

static int test_rmsnorm(void)
{
	const int shapes[][2] = { { 7, 7168 }, { 3, 512 }, { 5, 1536 }, { 2, 100 } };
	int fails = 0;

	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
		int rows = shapes[s][0], dim = shapes[s][1];
		size_t n = (size_t)rows * dim;
		uint16_t *x = rand_bf16(n, -3.0f, 3.0f), *w = rand_bf16((size_t)dim, 0.2f, 2.0f);
		float *ref = xmalloc(n * sizeof(float));
		void *dx = up(x, n * 2), *dw = up(w, (size_t)dim * 2), *dy = poisoned(n * 2);
		uint16_t *y;
		struct cmp c = { .what = "rmsnorm" };
		char what[64];

		CHECK(api->rmsnorm(dy, dim, dx, dim, dw, rows, dim, 1e-6f));
		y = down(dy, n * 2);
		hcu_ref_rmsnorm(ref, x, w, rows, dim, 1e-6f);
		for (size_t i = 0; i < n; i++)
			cmp_one(&c, (long)i, bf16_val(y[i]), ref[i], 2 * BF16_ULP * fabs(ref[i]));
		snprintf(what, sizeof(what), "rmsnorm %dx%d", rows, dim);
		c.what = what;
		fails += cmp_report(&c);
		/* in place (out aliases x), as the forward pass uses it */
		CHECK(api->rmsnorm(dx, dim, dx, dim, dw, rows, dim, 1e-6f));
		free(y);
		y = down(dx, n * 2);
		memset(&c, 0, sizeof(c));
		snprintf(what, sizeof(what), "rmsnorm %dx%d in place", rows, dim);
		c.what = what;
		for (size_t i = 0; i < n; i++)
			cmp_one(&c, (long)i, bf16_val(y[i]), ref[i], 2 * BF16_ULP * fabs(ref[i]));
		fails += cmp_report(&c);
		free(x), free(w), free(ref), free(y);
		api->free(dx), api->free(dw), api->free(dy);
	}
	return fails;
}

/* Residual add, SwiGLU product, strided copy, strided RMSNorm (kv_norm on the first 512
 * of 576-wide cache rows, leaving the 64 k_pe values alone). */
static int test_elementwise(void)
{
	const long n = 100003;
	uint16_t *a = rand_bf16((size_t)n, -4.0f, 4.0f), *b = rand_bf16((size_t)n, -4.0f, 4.0f), *g;
	void *da = up(a, (size_t)n * 2), *db = up(b, (size_t)n * 2);
	struct cmp c1 = { .what = "add (bf16(y + x), exact)" }, c2 = { .what = "silu_mul" };
	struct cmp c3 = { .what = "copy2d (exact)" }, c4 = { .what = "rmsnorm strided 512 of 576" };

	CHECK(api->add(da, db, n));
	g = down(da, (size_t)n * 2);
	for (long i = 0; i < n; i++)
		cmp_one(&c1, i, g[i], hmoe_f32_to_bf16(bf16_val(a[i]) + bf16_val(b[i])), 0.0);
	free(g);
	CHECK(api->h2d(da, a, (size_t)n * 2));
	CHECK(api->silu_mul(da, db, n));
	g = down(da, (size_t)n * 2);
	for (long i = 0; i < n; i++) {
		double v = bf16_val(a[i]), r = v / (1.0 + exp(-v)) * bf16_val(b[i]);

		cmp_one(&c2, i, bf16_val(g[i]), r, 2 * BF16_ULP * fabs(r) + 1e-6);
	}
	free(g);
	{
		const int rows = 37, w = 576;
		void *dst = poisoned((size_t)rows * w * 2);

		CHECK(api->copy2d(dst, (size_t)w * 2, da, (size_t)w * 2, 512 * 2, (size_t)rows));
		CHECK(api->copy2d((uint16_t *)dst + 512, (size_t)w * 2, db, 64 * 2, 64 * 2, (size_t)rows));
		g = down(dst, (size_t)rows * w * 2);
		free(a);
		a = down(da, (size_t)rows * w * 2);
		for (int r = 0; r < rows; r++)
			for (int k = 0; k < w; k++)
				cmp_one(&c3, r * w + k, g[r * w + k],
					k < 512 ? a[r * w + k] : b[r * 64 + k - 512], 0.0);
		/* kv_norm in place on the cache rows */
		uint16_t *wn = rand_bf16(512, 0.5f, 1.5f);
		float *ref = xmalloc(sizeof(float) * 512 * (size_t)rows);
		void *dwn = up(wn, 1024);

		hcu_ref_rmsnorm(ref, g, wn, 1, 512, 1e-6f);  /* row 0 alone, then the rest */
		for (int r = 1; r < rows; r++)
			hcu_ref_rmsnorm(ref + r * 512, g + r * w, wn, 1, 512, 1e-6f);
		CHECK(api->rmsnorm(dst, w, dst, w, dwn, rows, 512, 1e-6f));
		free(a);
		a = down(dst, (size_t)rows * w * 2);
		for (int r = 0; r < rows; r++)
			for (int k = 0; k < w; k++)
				cmp_one(&c4, r * w + k, bf16_val(a[r * w + k]),
					k < 512 ? ref[r * 512 + k] : bf16_val(g[r * w + k]),
					k < 512 ? 2 * BF16_ULP * fabs(ref[r * 512 + k]) : 0.0);
		free(g), free(wn), free(ref);
		api->free(dst), api->free(dwn);
	}
	free(a), free(b);
	api->free(da), api->free(db);
	return cmp_report(&c1) + cmp_report(&c2) + cmp_report(&c3) + cmp_report(&c4);
}

static int test_rope(void)
{
	/* q rows: (n, H, 192), rope at offset 128 of each head; kv rows: (n, 576), rope at
	 * 512 of one head. DeepSeek-V3's YaRN frequencies, positions up to 16k. */
	const int n = 37, H = 16, hd = 192, kvw = 576;
	float freqs[32], *ref;
	int32_t pos[37];
	int fails = 0;

	hcu_ref_yarn_freqs(freqs, 64, 10000.0f, 40.0f, 4096, 32.0f, 1.0f, 1);
	for (int t = 0; t < n; t++)
		pos[t] = t < 5 ? t : (int)(rng_next() % 16384);
	void *dpos = up(pos, sizeof(pos)), *dfreq = up(freqs, sizeof(freqs));

	for (int which = 0; which < 2; which++) {
		int heads = which ? 1 : H, tstride = which ? kvw : H * hd, hstride = which ? 0 : hd;
		int off = which ? 512 : 128;
		size_t total = (size_t)n * tstride;
		uint16_t *x = rand_bf16(total, -2.0f, 2.0f), *y;
		void *dx = up(x, total * 2);
		struct cmp c = { .what = which ? "rope k_pe (n, 576) @512" : "rope q_pe (n, 16, 192) @128" };

		ref = xmalloc(total * sizeof(float));
		for (size_t i = 0; i < total; i++)
			ref[i] = (float)bf16_val(x[i]);
		hcu_ref_rope(ref, x, n, tstride, heads, hstride, off, 64, pos, freqs);
		CHECK(api->rope(dx, n, tstride, heads, hstride, off, 64, dpos, dfreq));
		y = down(dx, total * 2);
		for (size_t i = 0; i < total; i++) {
			/* rotated pairs: cos/sin differ by an ulp or two between libm and CUDA;
			 * untouched values must come back bit-identical */
			size_t in_row = i % (size_t)tstride, in_head = hstride ? in_row % (size_t)hd : in_row;
			int rotated = in_head >= (size_t)off && in_head < (size_t)off + 64;
			size_t pair = i - (in_head - (size_t)off) % 2;
			double mag = rotated ? fabs(bf16_val(x[pair])) + fabs(bf16_val(x[pair + 1])) : 0;

			cmp_one(&c, (long)i, bf16_val(y[i]), ref[i],
				rotated ? 2 * BF16_ULP * mag + 1e-6 : 0.0);
		}
		fails += cmp_report(&c);
		free(x), free(y), free(ref);
		api->free(dx);
	}
	api->free(dpos), api->free(dfreq);
	return fails;
}

static int test_embed(void)
{
	const int vocab = 1000, dim = 7168, n = 33;
	uint16_t *table = rand_bf16((size_t)vocab * dim, -1.0f, 1.0f), *y;
	int32_t ids[33];
	struct cmp c = { .what = "embed (bit-exact)" };

	for (int i = 0; i < n; i++)
		ids[i] = i == 0 ? 0 : i == 1 ? vocab - 1 : (int)(rng_next() % (uint64_t)vocab);
	void *dt = up(table, (size_t)vocab * dim * 2), *di = up(ids, sizeof(ids));
	void *dy = poisoned((size_t)n * dim * 2);

	CHECK(api->embed(dy, dt, di, n, dim, vocab));
	y = down(dy, (size_t)n * dim * 2);
	for (int t = 0; t < n; t++)
		for (int i = 0; i < dim; i++)
			cmp_one(&c, (long)t * dim + i, y[(long)t * dim + i],
				table[(long)ids[t] * dim + i], 0.0);
	free(table), free(y);
	api->free(dt), api->free(di), api->free(dy);
	return cmp_report(&c);
}

/* |gpu - ref| <= 1e-4 sum|x w| (fp32 accumulation in another order), plus one bf16
 * rounding when the output is bf16. */
static void cmp_matvec(struct cmp *c, const void *y, int y_f32, const double *ref,
		       const double *absr, long n)
{
	for (long i = 0; i < n; i++) {
		double g = y_f32 ? ((const float *)y)[i] : bf16_val(((const uint16_t *)y)[i]);
		double tol = 1e-4 * absr[i] + (y_f32 ? 0.0 : BF16_ULP * fabs(ref[i])) + 1e-30;

		cmp_one(c, i, g, ref[i], tol);
	}
}

static int test_gemm(void)
{
	const int n = 5, in = 1536, out = 3000;
	uint16_t *x = rand_bf16((size_t)n * in, -1.0f, 1.0f);
	uint16_t *w = rand_bf16((size_t)out * in, -0.05f, 0.05f);
	double *ref = xmalloc(sizeof(double) * (size_t)n * out);
	double *absr = xmalloc(sizeof(double) * (size_t)n * out);
	void *dx = up(x, (size_t)n * in * 2), *dw = up(w, (size_t)out * in * 2);
	int fails = 0;

	hcu_ref_gemm(ref, absr, x, w, n, in, out);
	for (int f32 = 0; f32 < 2; f32++) {
		size_t ybytes = (size_t)n * out * (f32 ? 4 : 2);
		void *dy = poisoned(ybytes), *y;
		struct cmp c = { .what = f32 ? "gemm_bf16 5x1536x3000 -> fp32" : "gemm_bf16 5x1536x3000 -> bf16" };

		CHECK(api->gemm_bf16(dy, f32, dx, dw, n, in, out));
		y = down(dy, ybytes);
		cmp_matvec(&c, y, f32, ref, absr, (long)n * out);
		fails += cmp_report(&c);
		free(y);
		api->free(dy);
	}
	free(x), free(w), free(ref), free(absr);
	api->free(dx), api->free(dw);
	return fails;
}

/* Random e4m3 codes, NaN codes (0x7f, 0xff) excluded. */
static uint8_t *rand_codes(size_t n)
{
	uint8_t *p = xmalloc(n);

	for (size_t i = 0; i < n; i++) {
		p[i] = (uint8_t)rng_next();
		if ((p[i] & 0x7f) == 0x7f)
			p[i] ^= 0x01;
	}
	return p;
}

static int test_fp8(void)
{
	/* out not a multiple of 128 (partial scale rows), in not a multiple of 128 (partial
	 * scale blocks) nor of 512 (partial warp steps); 11 tokens = two launches. */
	const int in = 2064, out = 1000, n_kb = (in + 127) / 128, n_mb = (out + 127) / 128;
	const int ns[] = { 1, 3, 11 };
	uint8_t *codes = rand_codes((size_t)out * in);
	float *scale = xmalloc(sizeof(float) * (size_t)n_kb * n_mb);
	uint16_t *x = rand_bf16((size_t)11 * in, -1.0f, 1.0f), *wref, *wg;
	double *ref = xmalloc(sizeof(double) * 11 * out), *absr = xmalloc(sizeof(double) * 11 * out);
	int fails = 0;

	for (int i = 0; i < n_kb * n_mb; i++)
		scale[i] = rng_uniform(1e-4f, 4e-3f);
	void *dc = up(codes, (size_t)out * in), *ds = up(scale, sizeof(float) * (size_t)n_kb * n_mb);
	void *dx = up(x, (size_t)11 * in * 2);

	hcu_ref_fp8_matvec(ref, absr, x, codes, scale, 11, in, out);
	for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++)
		for (int f32 = 0; f32 < 2; f32++) {
			size_t ybytes = (size_t)ns[k] * out * (f32 ? 4 : 2);
			void *dy = poisoned(ybytes), *y;
			char what[64];
			struct cmp c = { .what = what };

			snprintf(what, sizeof(what), "fp8_matvec n=%d %dx%d -> %s", ns[k], out, in,
				 f32 ? "fp32" : "bf16");
			CHECK(api->fp8_matvec(dy, f32, dx, dc, ds, ns[k], in, out));
			y = down(dy, ybytes);
			cmp_matvec(&c, y, f32, ref, absr, (long)ns[k] * out);
			fails += cmp_report(&c);
			free(y);
			api->free(dy);
		}
	/* dequant: bit-exact */
	{
		void *dw = poisoned((size_t)out * in * 2);
		struct cmp c = { .what = "fp8_dequant (bit-exact)" };

		wref = xmalloc((size_t)out * in * 2);
		hcu_ref_fp8_dequant(wref, codes, scale, out, in);
		CHECK(api->fp8_dequant(dw, dc, ds, out, in));
		wg = down(dw, (size_t)out * in * 2);
		for (long i = 0; i < (long)out * in; i++)
			cmp_one(&c, i, wg[i], wref[i], 0.0);
		fails += cmp_report(&c);
		free(wref), free(wg);
		api->free(dw);
	}
	free(codes), free(scale), free(x), free(ref), free(absr);
	api->free(dc), api->free(ds), api->free(dx);
	return fails;
}

static int test_sample(void)
{
	/* DeepSeek-V3's padded vocab: ids past the tokenizer (n_valid) carry huge logits
	 * that must never be chosen. */
	const int rows = 4, stride = 129280, n_valid = 128815;
	float *l = xmalloc(sizeof(float) * (size_t)rows * stride), u[4];
	int32_t ids[4], *g;
	int fails = 0;

	for (int r = 0; r < rows; r++) {
		float *lr = l + (long)r * stride;

		for (int i = 0; i < stride; i++)
			lr[i] = i < n_valid ? 3.0f * rng_normal() : 1e30f;
		/* a planted tie for the maximum: greedy must return the lower id */
		int a = (int)(rng_next() % 1000), b = a + 1 + (int)(rng_next() % 100000);

		lr[a] = lr[b] = 40.0f;
		u[r] = rng_uniform(0.0f, 1.0f);
	}
	void *dl = up(l, sizeof(float) * (size_t)rows * stride), *du = up(u, sizeof(u));
	void *di = poisoned(sizeof(ids));

	/* greedy: exact */
	CHECK(api->sample(di, dl, rows, stride, n_valid, 0.0f, 1.0f, NULL));
	g = down(di, sizeof(ids));
	for (int r = 0; r < rows; r++) {
		ids[r] = hcu_ref_argmax(l + (long)r * stride, n_valid);
		if (g[r] != ids[r]) {
			printf("sample greedy FAILED: row %d gpu %d ref %d\n", r, g[r], ids[r]);
			fails++;
		}
	}
	if (!fails)
		printf("%-34s ok: %d rows\n", "sample greedy (ties, padding)", rows);
	free(g);
	/* temperature + top-p: the planted maxima dominate at T = 0.6; use T = 8 too so
	 * the nucleus holds thousands of ids */
	const float ts[] = { 0.6f, 8.0f, 8.0f }, ps[] = { 0.95f, 0.95f, 1.0f };

	for (int k = 0; k < 3; k++) {
		int bad = 0;

		CHECK(api->fill_nan(di, sizeof(ids)));
		CHECK(api->sample(di, dl, rows, stride, n_valid, ts[k], ps[k], du));
		g = down(di, sizeof(ids));
		for (int r = 0; r < rows; r++) {
			char why[160];

			if (!hcu_ref_sample_ok(l + (long)r * stride, n_valid, ts[k], ps[k], u[r], g[r],
					       1e-3, why, sizeof(why))) {
				printf("sample T=%g top_p=%g FAILED: row %d: %s\n", (double)ts[k],
				       (double)ps[k], r, why);
				bad++;
			}
		}
		if (!bad) {
			char what[64];

			snprintf(what, sizeof(what), "sample T=%g top_p=%g", (double)ts[k], (double)ps[k]);
			printf("%-34s ok: %d rows\n", what, rows);
		}
		fails += bad;
		free(g);
	}
	free(l);
	api->free(dl), api->free(du), api->free(di);
	return fails;
}

static int cmp_double_desc(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? 1 : x > y ? -1 : 0;
}

/* How far one token's routing decision is from a tie, in double: the smaller of the gap
 * between the last kept and the first dropped group score, and between the last chosen
 * and the first unchosen selection score. The GPU's expf differs from libm's by an ulp
 * or two, so a token closer than 1e-5 to a tie may legitimately route differently; such
 * tokens are counted and reported, every other token must match exactly. */
static double route_margin(const float *l, const float *bias, int E, int n_group,
			   int topk_group, int top_k, int softmax)
{
	double s[1024], sel[1024], g[64], gs[64], m = INFINITY, z = 0, mx = -INFINITY;
	int gsize = E / n_group, keep[64] = { 0 }, n_sel = 0;

	for (int e = 0; e < E; e++)
		mx = l[e] > mx ? l[e] : mx;
	for (int e = 0; e < E; e++) {
		s[e] = softmax ? exp(l[e] - mx) : 1.0 / (1.0 + exp(-(double)l[e]));
		z += s[e];
	}
	for (int e = 0; e < E; e++) {
		if (softmax)
			s[e] /= z;
		sel[e] = s[e] + (bias ? bias[e] : 0.0);
	}
	if (n_group > 1) {
		for (int k = 0; k < n_group; k++) {
			double t1 = -INFINITY, t2 = -INFINITY;

			for (int j = k * gsize; j < (k + 1) * gsize; j++)
				if (sel[j] > t1) {
					t2 = t1;
					t1 = sel[j];
				} else if (sel[j] > t2) {
					t2 = sel[j];
				}
			g[k] = gs[k] = (bias && gsize > 1) ? t1 + t2 : t1;
		}
		qsort(gs, (size_t)n_group, sizeof(double), cmp_double_desc);
		if (topk_group < n_group)
			m = gs[topk_group - 1] - gs[topk_group];
		for (int k = 0; k < n_group; k++)
			keep[k] = g[k] >= gs[topk_group - 1];
	}
	double kept[1024];

	for (int e = 0; e < E; e++)
		if (n_group <= 1 || keep[e / gsize])
			kept[n_sel++] = sel[e];
	qsort(kept, (size_t)n_sel, sizeof(double), cmp_double_desc);
	if (top_k < n_sel && kept[top_k - 1] - kept[top_k] < m)
		m = kept[top_k - 1] - kept[top_k];
	return m;
}

static int route_case(const char *what, int n, int E, int n_group, int topk_group, int top_k,
		      int softmax, int norm, float scale, int with_bias)
{
	float *logits = xmalloc(sizeof(float) * (size_t)n * E), *bias = xmalloc(sizeof(float) * (size_t)E);
	int32_t *rid = xmalloc(sizeof(int32_t) * (size_t)n * top_k), *gid;
	float *rw = xmalloc(sizeof(float) * (size_t)n * top_k), *gw;
	float *sel = xmalloc(sizeof(float) * (size_t)E);
	int bad = 0, near_ties = 0;

	for (int i = 0; i < n * E; i++)
		logits[i] = 2.0f * rng_normal();
	/* a bias larger than the score spread, some of it negative: selection then
	 * differs from plain top-k of s, and the -inf group mask matters */
	for (int e = 0; e < E; e++)
		bias[e] = rng_uniform(-0.3f, 0.3f);
	void *dl = up(logits, sizeof(float) * (size_t)n * E);
	void *db = with_bias ? up(bias, sizeof(float) * (size_t)E) : NULL;
	void *di = poisoned(sizeof(int32_t) * (size_t)n * top_k);
	void *dw = poisoned(sizeof(float) * (size_t)n * top_k);

	CHECK(api->route(di, dw, dl, db, n, E, n_group, topk_group, top_k, softmax, norm, scale));
	gid = down(di, sizeof(int32_t) * (size_t)n * top_k);
	gw = down(dw, sizeof(float) * (size_t)n * top_k);
	for (int t = 0; t < n; t++) {
		/* reference one token at a time so sel holds this token's masked scores */
		hcu_ref_route(rid + (long)t * top_k, rw + (long)t * top_k, logits + (long)t * E,
			      with_bias ? bias : NULL, 1, E, n_group, topk_group, top_k, softmax,
			      norm, scale, sel);
		if (route_margin(logits + (long)t * E, with_bias ? bias : NULL, E, n_group,
				 topk_group, top_k, softmax) < 1e-5) {
			near_ties++;
			continue;
		}
		for (int k = 0; k < top_k; k++) {
			long i = (long)t * top_k + k;
			float tol = 1e-5f * fabsf(rw[i]) + 1e-7f;

			if (gid[i] != rid[i]) {
				printf("%s FAILED: token %d slot %d: gpu expert %d, ref %d (ref sel %.9g)\n",
				       what, t, k, gid[i], rid[i], (double)sel[rid[i]]);
				bad++;
				break;
			}
			if (!(fabsf(gw[i] - rw[i]) <= tol)) {
				printf("%s FAILED: token %d expert %d: weight gpu %.9g ref %.9g\n", what,
				       t, rid[i], (double)gw[i], (double)rw[i]);
				bad++;
				break;
			}
		}
	}
	/* more than a few near-ties means the data, not the kernel, is the problem */
	if (near_ties > n / 20) {
		printf("%s FAILED: %d of %d tokens within 1e-5 of a routing tie\n", what,
		       near_ties, n);
		bad++;
	}
	if (!bad)
		printf("%-34s ok: %d tokens (%d near-ties skipped)\n", what, n - near_ties,
		       near_ties);
	free(logits), free(bias), free(rid), free(gid), free(rw), free(gw), free(sel);
	api->free(dl), api->free(db), api->free(di), api->free(dw);
	return bad;
}

static int test_route(void)
{
	int fails = 0;

	/* DeepSeek-V3: 256 experts, 8 groups keep 4, top-8, sigmoid + bias, scale 2.5 */
	fails += route_case("route V3 (sigmoid, groups, bias)", 300, 256, 8, 4, 8, 0, 1, 2.5f, 1);
	/* V2-Lite-like: softmax over 64, one group, top-6, no renormalisation */
	fails += route_case("route softmax 64 top-6", 100, 64, 1, 1, 6, 1, 0, 1.0f, 0);
	/* groups without bias: group score = max */
	fails += route_case("route groups, no bias", 100, 64, 8, 3, 4, 0, 1, 1.0f, 0);
	return fails;
}

/* The fixed-point activation quantiser: bit-identical to the CPU's hmoe_fxp_quant_x
 * (the oracle is that function itself, not a copy) in both activation modes (A16: two
 * planes, A8: one), on random data plus the edges of its contract: an all-zero group
 * (scale word 0), NaN (-> 0), values past 2^30 (saturate), subnormals, values near
 * 2^-32 (truncation, not rounding, to Q32), a partial last group. */
static int test_fxp_quant_planes(int planes)
{
	const int n = 9, dims[] = { 7168, 200 };
	int fails = 0;

	for (size_t d = 0; d < sizeof(dims) / sizeof(dims[0]); d++) {
		int dim = dims[d], groups = (dim + 127) / 128;
		size_t nx = (size_t)n * dim, nq = (size_t)n * planes * groups * 128;
		float *x = xmalloc(nx * sizeof(float));
		uint16_t *xb = xmalloc(nx * 2);
		int8_t *rq = xmalloc(nq), *gq;
		int32_t *rs = xmalloc(sizeof(int32_t) * (size_t)n * groups), *gs;

		for (size_t i = 0; i < nx; i++) {
			int t = (int)(i / (size_t)dim);
			float mag = powf(10.0f, rng_uniform(-6.0f, 3.0f));

			x[i] = rng_uniform(-1.0f, 1.0f) < 0 ? -mag : mag;
			if (t == 1 && i % (size_t)dim < 128)
				x[i] = 0.0f;                      /* all-zero group */
			if (t == 2 && i % 97 == 0)
				x[i] = NAN;
			if (t == 3 && i % 89 == 0)
				x[i] = (i & 1) ? 3e9f : -2e30f;   /* saturate */
			if (t == 4)
				x[i] = ldexpf(x[i], -140);       /* subnormal / tiny */
			if (t == 5)                               /* near the Q32 resolution: */
				x[i] = ldexpf(x[i], -36);        /* truncation of x * 2^32 shows */
		}
		for (int f32 = 1; f32 >= 0; f32--) {
			void *dx, *dq = poisoned(nq), *ds = poisoned(sizeof(int32_t) * (size_t)n * groups);
			int bad = 0;

			/* the bf16 path quantises exactly the floats of the bf16 values */
			for (size_t i = 0; i < nx; i++) {
				xb[i] = hmoe_f32_to_bf16(x[i]);
				if (!f32)
					x[i] = hmoe_bf16_to_f32(xb[i]);
			}
			dx = f32 ? up(x, nx * sizeof(float)) : up(xb, nx * 2);
			for (int t = 0; t < n; t++)
				hmoe_fxp_quant_x(x + (size_t)t * dim, dim, planes,
						 rq + (size_t)t * planes * groups * 128,
						 rs + (size_t)t * groups);
			CHECK(api->fxp_quant_x(dq, ds, dx, f32, n, dim, planes));
			gq = down(dq, nq);
			gs = down(ds, sizeof(int32_t) * (size_t)n * groups);
			for (size_t i = 0; i < nq && !bad; i++)
				if (gq[i] != rq[i]) {
					printf("fxp_quant A%d dim %d %s FAILED: xq[%zu] gpu %d cpu %d\n",
					       8 * planes, dim, f32 ? "fp32" : "bf16", i, gq[i], rq[i]);
					bad = 1;
				}
			for (int i = 0; i < n * groups && !bad; i++)
				if (gs[i] != rs[i]) {
					printf("fxp_quant A%d dim %d %s FAILED: xs[%d] gpu %#x cpu %#x\n",
					       8 * planes, dim, f32 ? "fp32" : "bf16", i, (unsigned)gs[i],
					       (unsigned)rs[i]);
					bad = 1;
				}
			if (!bad)
				printf("fxp_quant A%-2d dim %-5d %s (bit-exact)  ok: %d tokens\n",
				       8 * planes, dim, f32 ? "fp32" : "bf16", n);
			fails += bad;
			free(gq), free(gs);
			api->free(dx), api->free(dq), api->free(ds);
		}
		free(x), free(xb), free(rq), free(rs);
	}
	return fails;
}

static int test_fxp_quant(void)
{
	int fails = test_fxp_quant_planes(2) + test_fxp_quant_planes(1);
	void *dx = poisoned(128 * sizeof(float)), *dq = poisoned(3 * 128), *ds = poisoned(4);

	/* a plane count outside the contract is an argument error, not a launch */
	if (api->fxp_quant_x(dq, ds, dx, 1, 1, 128, 3) >= 0) {
		printf("fxp_quant FAILED: 3 planes accepted\n");
		fails++;
	}
	api->free(dx), api->free(dq), api->free(ds);
	return fails;
}

/* Paged cache: pages handed out in a shuffled order, so a kernel that assumes
 * contiguous pages reads the wrong tokens. */
static int decode_case(const char *what, int batch, const int *lens, int H, int L, int R,
		       int page_size)
{
	int D = L + R, max_len = 0, max_pages, n_pages = 0, fails = 0;
	float scale = 1.0f / sqrtf(192.0f) * 1.8738542f;

	for (int b = 0; b < batch; b++)
		max_len = lens[b] > max_len ? lens[b] : max_len;
	max_pages = (max_len + page_size - 1) / page_size;
	if (max_pages < 1)
		max_pages = 1;
	int32_t *bt = xmalloc(sizeof(int32_t) * (size_t)batch * max_pages);

	for (int b = 0; b < batch; b++)
		n_pages += (lens[b] + page_size - 1) / page_size;
	n_pages += 3;  /* spare pages nobody owns */
	int32_t *perm = xmalloc(sizeof(int32_t) * (size_t)n_pages);

	for (int i = 0; i < n_pages; i++)
		perm[i] = i;
	for (int i = n_pages - 1; i > 0; i--) {
		int j = (int)(rng_next() % (uint64_t)(i + 1)), t = perm[i];

		perm[i] = perm[j];
		perm[j] = t;
	}
	for (int b = 0, next = 0; b < batch; b++)
		for (int p = 0; p < max_pages; p++)
			bt[(long)b * max_pages + p] =
				p < (lens[b] + page_size - 1) / page_size ? perm[next++] : -1;
	/* unused block-table entries hold -1: a kernel reading past a sequence's end would
	 * fault or read garbage */
	size_t pages_n = (size_t)n_pages * page_size * D, q_n = (size_t)batch * H * D;
	uint16_t *pages = rand_bf16(pages_n, -1.0f, 1.0f), *q = rand_bf16(q_n, -1.0f, 1.0f);
	double *ref = xmalloc(sizeof(double) * (size_t)batch * H * L);
	double *spread = xmalloc(sizeof(double) * (size_t)batch * H * L);
	void *dp = up(pages, pages_n * 2), *dq = up(q, q_n * 2), *dbt = up(bt, sizeof(int32_t) * (size_t)batch * max_pages);
	void *dl = up(lens, sizeof(int32_t) * (size_t)batch);
	void *dout = poisoned((size_t)batch * H * L * 2);
	struct hmoe_cuda_kv_pages kv = { dp, dbt, dl, page_size, max_pages, max_len };

	hcu_ref_mla_decode(ref, q, pages, bt, lens, page_size, max_pages, batch, H, L, R, scale,
			   spread);
	for (int v = 1; v < HMOE_MLA_DECODE_COUNT; v++) {
		char name[96];
		struct cmp c = { .what = name };
		uint16_t *o;

		snprintf(name, sizeof(name), "mla_decode v%d %s", v, what);
		CHECK(api->fill_nan(dout, (size_t)batch * H * L * 2));
		CHECK(api->mla_decode(dout, dq, &kv, batch, H, L, R, scale, v));
		o = down(dout, (size_t)batch * H * L * 2);
		for (long i = 0; i < (long)batch * H * L; i++)
			cmp_one(&c, i, bf16_val(o[i]), ref[i],
				attn_tol(ref[i], spread[i], v >= HMOE_MLA_DECODE_V2));
		fails += cmp_report(&c);
		free(o);
	}
	free(bt), free(perm), free(pages), free(q), free(ref), free(spread);
	api->free(dp), api->free(dq), api->free(dbt), api->free(dl), api->free(dout);
	return fails;
}

static int test_mla_decode(void)
{
	const int lens_v3[] = { 1, 37, 700, 1500 }, lens_small[] = { 3, 40, 129 };
	const int lens_batch[] = { 700, 16, 64, 65, 300, 1, 900, 999 };
	int lens_wide[40], fails = 0;

	for (int b = 0; b < 40; b++)
		lens_wide[b] = 1 + (b * 37) % 90;
	/* DeepSeek-V3 dims; few CTAs, so the context is split (split-K + combine) */
	fails += decode_case("H128 L512 R64 page64 lens 1/37/700/1500", 4, lens_v3, 128, 512, 64, 64);
	fails += decode_case("H32 L512 R64 page16 batch 8", 8, lens_batch, 32, 512, 64, 16);
	/* batch 40 x 8 head groups fills an H100 (2 x 132 CTAs): one split, direct output */
	fails += decode_case("H128 L512 R64 page64 batch 40 short", 40, lens_wide, 128, 512, 64, 64);
	/* small dims (mktiny-like): fewer heads than a head group, narrow latent, odd page */
	fails += decode_case("H4 L64 R16 page7", 3, lens_small, 4, 64, 16, 7);
	return fails;
}

static int test_mla_absorb(void)
{
	const int n = 3, H = 16, nope = 128, v = 128, L = 512, q_stride = 192, qc_stride = 576;
	uint16_t *q = rand_bf16((size_t)n * H * q_stride, -1.0f, 1.0f);
	uint16_t *w = rand_bf16((size_t)H * (nope + v) * L, -0.1f, 0.1f);
	uint16_t *oc = rand_bf16((size_t)n * H * L, -1.0f, 1.0f), *g;
	double *r = xmalloc(sizeof(double) * (size_t)n * H * L), *ra = xmalloc(sizeof(double) * (size_t)n * H * L);
	void *dq = up(q, (size_t)n * H * q_stride * 2), *dw = up(w, (size_t)H * (nope + v) * L * 2);
	void *doc = up(oc, (size_t)n * H * L * 2);
	void *dqc = poisoned((size_t)n * H * qc_stride * 2), *dout = poisoned((size_t)n * H * v * 2);
	struct cmp c1 = { .what = "mla_absorb_q (into 576-wide rows)" };
	struct cmp c2 = { .what = "mla_absorb_o" };

	/* q_c lands in the first 512 of each 576-wide decode row; the last 64 (q_pe) must
	 * stay untouched (still NaN here) */
	CHECK(api->mla_absorb_q(dqc, qc_stride, dq, q_stride, dw, n, H, nope, v, L));
	g = down(dqc, (size_t)n * H * qc_stride * 2);
	hcu_ref_absorb_q(r, ra, q, q_stride, w, n, H, nope, v, L);
	for (long i = 0; i < (long)n * H; i++) {
		for (int c = 0; c < L; c++)
			cmp_one(&c1, i * L + c, bf16_val(g[i * qc_stride + c]), r[i * L + c],
				1e-4 * ra[i * L + c] + BF16_ULP * fabs(r[i * L + c]));
		for (int c = L; c < qc_stride; c++)
			if (!isnan(bf16_val(g[i * qc_stride + c])))
				cmp_one(&c1, i * qc_stride + c, 1.0, 0.0, 0.0);  /* overwrite: fail */
	}
	free(g);
	CHECK(api->mla_absorb_o(dout, doc, dw, n, H, nope, v, L));
	g = down(dout, (size_t)n * H * v * 2);
	hcu_ref_absorb_o(r, ra, oc, w, n, H, nope, v, L);
	for (long i = 0; i < (long)n * H * v; i++)
		cmp_one(&c2, i, bf16_val(g[i]), r[i], 1e-4 * ra[i] + BF16_ULP * fabs(r[i]));
	free(g);
	free(q), free(w), free(oc), free(r), free(ra);
	api->free(dq), api->free(dw), api->free(doc), api->free(dqc), api->free(dout);
	return cmp_report(&c1) + cmp_report(&c2);
}

/* Every version (poisoned output before each) against the double reference. Version 1
 * (CUDA cores, fp32 probabilities) keeps one bf16 rounding of the output plus 1e-4. The
 * tensor-core versions round each probability to bf16 (relative error at most u = 2^-8,
 * bf16's unit roundoff: 8 significant bits) before P . V and normalise by the sum of the
 * rounded values, so their output is an exact convex combination of the rounded
 * weights: the extra error is at most u / (1 - u) x spread, spread = sum_j p_j |v_j - o|
 * (the reference's; 1.01 covers 1 / (1 - u)). Dims that are not multiples of 8 are
 * refused by an explicit tensor-core version (test_args); there AUTO runs instead and
 * must fall back to v1 (so it keeps v1's tolerance). */
static int prefill_case(const char *what, int n, int H, int dqk, int dv)
{
	float scale = 1.0f / sqrtf((float)dqk) * 1.8738542f;
	size_t qn = (size_t)n * H * dqk, vn = (size_t)n * H * dv;
	uint16_t *q = rand_bf16(qn, -1.0f, 1.0f), *k = rand_bf16(qn, -1.0f, 1.0f);
	uint16_t *v = rand_bf16(vn, -1.0f, 1.0f), *o;
	double *ref = xmalloc(sizeof(double) * vn), *spread = xmalloc(sizeof(double) * vn);
	void *dq = up(q, qn * 2), *dk = up(k, qn * 2), *dv_ = up(v, vn * 2), *dout = poisoned(vn * 2);
	int vers[HMOE_MLA_PREFILL_COUNT], nv = 0, fails = 0;

	for (int ver = HMOE_MLA_PREFILL_V1; ver < HMOE_MLA_PREFILL_COUNT; ver++)
		if (ver == HMOE_MLA_PREFILL_V1 || (dqk % 8 == 0 && dv % 8 == 0))
			vers[nv++] = ver;
	if (nv < HMOE_MLA_PREFILL_COUNT - 1)
		vers[nv++] = HMOE_MLA_PREFILL_AUTO;
	hcu_ref_mla_prefill(ref, q, k, v, n, H, dqk, dv, scale, spread);
	for (int iv = 0; iv < nv; iv++) {
		int ver = vers[iv], tc = ver >= HMOE_MLA_PREFILL_V2;
		char name[96];
		struct cmp c = { .what = name };

		if (ver == HMOE_MLA_PREFILL_AUTO)
			snprintf(name, sizeof(name), "mla_prefill auto %s", what);
		else
			snprintf(name, sizeof(name), "mla_prefill v%d %s", ver, what);
		CHECK(api->fill_nan(dout, vn * 2));
		CHECK(api->mla_prefill(dout, dq, dk, dv_, n, H, dqk, dv, scale, ver));
		o = down(dout, vn * 2);
		for (size_t i = 0; i < vn; i++)
			cmp_one(&c, (long)i, bf16_val(o[i]), ref[i], attn_tol(ref[i], spread[i], tc));
		fails += cmp_report(&c);
		free(o);
	}
	free(q), free(k), free(v), free(ref), free(spread);
	api->free(dq), api->free(dk), api->free(dv_), api->free(dout);
	return fails;
}

static int test_mla_prefill(void)
{
	/* V3 head dims, n not a multiple of the query tiles (32 in v1, 64 in v2): several key
	 * tiles, a partial diagonal tile (n 200: 8 rows in the last tile of 64) */
	return prefill_case("n300 H4 192/128", 300, 4, 192, 128) +
	       prefill_case("n200 H2 192/128", 200, 2, 192, 128) +
	       /* small dims: multiples of 8, not of 16 (zero padding to 16 in v2) */
	       prefill_case("n17 H2 24/16", 17, 2, 24, 16) +
	       prefill_case("n70 H3 40/24", 70, 3, 40, 24) +
	       /* even, not multiples of 8: AUTO falls back to v1 */
	       prefill_case("n45 H2 20/12", 45, 2, 20, 12) +
	       prefill_case("n1 H3 192/128", 1, 3, 192, 128);
}

/* Bad arguments are refused with -HMOE_EINPUT and a message naming the argument, before
 * anything is launched (checked on the real backend only; the CPU stand-in does not
 * validate). */
static int test_args(void)
{
	static const struct {
		const char *what, *needle;  /* the case, and what its message must name */
	} cases[] = {
		{ "fp8_matvec in % 16", "in 100" },
		{ "rope odd rope_dim", "rope_dim 63" },
		{ "route groups", "n_group 3" },
		{ "route top_k", "top_k 9" },
		{ "mla_decode kv_lora", "kv_lora 1024" },
		{ "mla_decode version", "version 99" },
		{ "mla_prefill qk_dim", "qk_dim 256" },
		{ "mla_prefill version", "version 99" },
		{ "mla_prefill v2 dims % 8", "qk_dim 20" },
		{ "mla_decode v2 kv_lora % 32", "kv_lora 48" },
		{ "mla_decode v2 alignment", "16-byte aligned" },
		{ "rmsnorm stride", "strides 10" },
	};
	struct hmoe_cuda_kv_pages kv;
	void *d;
	int fails = 0;

	CHECK(api->malloc(&d, 1 << 20));
	kv = (struct hmoe_cuda_kv_pages){ d, d, d, 64, 1, 64 };
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int ret;

		switch (i) {
		case 0: ret = api->fp8_matvec(d, 1, d, d, d, 1, 100, 128); break;
		case 1: ret = api->rope(d, 1, 64, 1, 0, 0, 63, d, d); break;
		case 2: ret = api->route(d, d, d, NULL, 1, 256, 3, 1, 8, 0, 1, 1.0f); break;
		case 3: ret = api->route(d, d, d, NULL, 1, 16, 4, 1, 9, 0, 1, 1.0f); break;
		case 4: ret = api->mla_decode(d, d, &kv, 1, 128, 1024, 64, 1.0f, 0); break;
		case 5: ret = api->mla_decode(d, d, &kv, 1, 128, 512, 64, 1.0f, 99); break;
		case 6: ret = api->mla_prefill(d, d, d, d, 4, 1, 256, 128, 1.0f, 0); break;
		case 7: ret = api->mla_prefill(d, d, d, d, 4, 1, 192, 128, 1.0f, 99); break;
		case 8:
			ret = api->mla_prefill(d, d, d, d, 4, 1, 20, 16, 1.0f, HMOE_MLA_PREFILL_V2);
			break;
		case 9: ret = api->mla_decode(d, d, &kv, 1, 128, 48, 16, 1.0f, HMOE_MLA_DECODE_V2); break;
		case 10:
			ret = api->mla_decode(d, (char *)d + 2, &kv, 1, 128, 512, 64, 1.0f,
					      HMOE_MLA_DECODE_V2);
			break;
		default: ret = api->rmsnorm(d, 10, d, 10, d, 1, 64, 1e-6f); break;
		}
		if (ret != -HMOE_EINPUT || !strstr(api->last_error(), cases[i].needle)) {
			printf("args %s FAILED: ret %d, message '%s'\n", cases[i].what, ret,
			       api->last_error());
			fails++;
		}
	}
	CHECK(api->sync());  /* nothing was launched, nothing faulted */
	api->free(d);
	if (!fails)
		printf("%-34s ok: %zu cases\n", "bad arguments refused",
		       sizeof(cases) / sizeof(cases[0]));
	return fails;
}

/* ---- CPU-only checks of the references themselves ---- */

static int test_ref(void)
{
	float freqs[32];
	int fails = 0;

	/* MODEL.md section 4: published YaRN frequencies of DeepSeek-V3 */
	hcu_ref_yarn_freqs(freqs, 64, 10000.0f, 40.0f, 4096, 32.0f, 1.0f, 1);
	const struct { int i; double v; } pub[] = { { 11, 0.0390069 }, { 12, 0.0268794 },
						    { 31, 3.3338e-6 }, { 0, 1.0 } };
	for (size_t k = 0; k < sizeof(pub) / sizeof(pub[0]); k++)
		if (fabs(freqs[pub[k].i] - pub[k].v) > 1e-5 * pub[k].v) {
			printf("ref yarn FAILED: freq'_%d = %.7g, MODEL.md says %.7g\n", pub[k].i,
			       (double)freqs[pub[k].i], pub[k].v);
			fails++;
		}
	if (!fails)
		printf("ref yarn frequencies             ok: match MODEL.md\n");

	/* The absorbed path (absorb_q -> decode -> absorb_o) must equal the naive form
	 * (k = [kv_norm(c) . W_UK^T | k_pe], v = kv_norm(c) . W_UV^T): this is what makes
	 * the GPU decode API compute MLA at all. */
	{
		const int H = 3, nope = 16, vd = 8, L = 32, R = 8, T = 21, D = L + R;
		uint16_t *w = rand_bf16((size_t)H * (nope + vd) * L, -0.3f, 0.3f);
		uint16_t *lat = rand_bf16((size_t)T * D, -1.0f, 1.0f);
		uint16_t *qfull = rand_bf16((size_t)H * (nope + R), -1.0f, 1.0f);
		double qc[3 * 32], aqc[3 * 32], oc[3 * 32], o_abs[3 * 8], a_o[3 * 8];
		uint16_t qdec[3 * 40], ocb[3 * 32];
		int32_t bt[1] = { 0 }, len[1] = { T };
		float scale = 0.2f;
		double err = 0, max_o = 0;

		hcu_ref_absorb_q(qc, aqc, qfull, nope + R, w, 1, H, nope, vd, L);
		for (int h = 0; h < H; h++) {
			for (int c = 0; c < L; c++)
				qdec[h * D + c] = hmoe_f32_to_bf16((float)qc[h * L + c]);
			for (int r = 0; r < R; r++)
				qdec[h * D + L + r] = qfull[h * (nope + R) + nope + r];
		}
		hcu_ref_mla_decode(oc, qdec, lat, bt, len, T, 1, 1, H, L, R, scale, NULL);
		for (int i = 0; i < H * L; i++)
			ocb[i] = hmoe_f32_to_bf16((float)oc[i]);
		hcu_ref_absorb_o(o_abs, a_o, ocb, w, 1, H, nope, vd, L);
		for (int h = 0; h < H; h++) {
			double s[21], m = -INFINITY, z = 0;

			for (int t = 0; t < T; t++) {
				double dot = 0;

				for (int d = 0; d < nope; d++) {
					double kd = 0;  /* k_nope[t][h][d] = sum_c lat[t][c] W[h][d][c] */

					for (int c = 0; c < L; c++)
						kd += bf16_val(lat[t * D + c]) *
						      bf16_val(w[((long)h * (nope + vd) + d) * L + c]);
					dot += bf16_val(qfull[h * (nope + R) + d]) * kd;
				}
				for (int r = 0; r < R; r++)
					dot += bf16_val(qfull[h * (nope + R) + nope + r]) *
					       bf16_val(lat[t * D + L + r]);
				s[t] = dot * scale;
				m = s[t] > m ? s[t] : m;
			}
			for (int t = 0; t < T; t++)
				z += (s[t] = exp(s[t] - m));
			for (int d = 0; d < vd; d++) {
				double acc = 0;

				for (int t = 0; t < T; t++) {
					double vv = 0;

					for (int c = 0; c < L; c++)
						vv += bf16_val(lat[t * D + c]) *
						      bf16_val(w[((long)h * (nope + vd) + nope + d) * L + c]);
					acc += s[t] / z * vv;
				}
				err = fmax(err, fabs(acc - o_abs[h * vd + d]));
				max_o = fmax(max_o, fabs(acc));
			}
		}
		/* bf16 roundings of q_c and o_c only: a few 2^-9 of the output's scale */
		err /= max_o;
		if (err > 1e-2) {
			printf("ref absorbed vs naive MLA FAILED: max rel err %.3g\n", err);
			fails++;
		} else {
			printf("ref absorbed == naive MLA        ok: max rel err %.3g\n", err);
		}
		free(w), free(lat), free(qfull);
	}

	/* Causal prefill's last row equals decoding that token over the same keys when the
	 * keys are the latent rows and v the latent itself (both are softmax(q.k) . v). */
	{
		const int n = 50, D = 24, L = 16;
		uint16_t *qk = rand_bf16((size_t)n * D, -1.0f, 1.0f), *lat = rand_bf16((size_t)n * D, -1.0f, 1.0f);
		uint16_t *v = xmalloc((size_t)n * L * 2);
		double pre[50 * 16], dec[16], err = 0;
		int32_t bt[1] = { 0 }, len[1] = { n };

		for (int t = 0; t < n; t++)
			memcpy(v + t * L, lat + t * D, (size_t)L * 2);
		hcu_ref_mla_prefill(pre, qk, lat, v, n, 1, D, L, 0.3f, NULL);
		hcu_ref_mla_decode(dec, qk + (n - 1) * D, lat, bt, len, n, 1, 1, 1, L, D - L, 0.3f, NULL);
		for (int c = 0; c < L; c++)
			err = fmax(err, fabs(pre[(n - 1) * L + c] - dec[c]));
		if (err > 1e-12) {
			printf("ref prefill vs decode FAILED: max err %.3g\n", err);
			fails++;
		} else {
			printf("ref prefill last row == decode   ok\n");
		}
		free(qk), free(lat), free(v);
	}

	/* Router: non-kept groups are masked with -inf (model.py), not 0.0 (HF): when the
	 * kept group has fewer positive selection scores than top_k, a 0.0 mask would let
	 * an expert of a dropped group in. Group 0 = {0..3} is kept (top-2 sum 0.07 against
	 * -1.76); its experts 1..3 have sel -0.88, so the second pick must be expert 1. */
	{
		float logits[16], bias[16], w[2];
		int32_t ids[2];

		for (int e = 0; e < 16; e++) {
			logits[e] = -2.0f;
			bias[e] = -1.0f;
		}
		logits[0] = 3.0f;
		bias[0] = 0.0f;
		hcu_ref_route(ids, w, logits, bias, 1, 16, 4, 1, 2, 0, 1, 2.5f, NULL);
		if (ids[0] != 0 || ids[1] != 1 || fabsf(w[0] + w[1] - 2.5f) > 1e-6f || w[0] < w[1]) {
			printf("ref route FAILED: chose %d, %d (weights %g %g), want 0, 1 summing to 2.5\n",
			       ids[0], ids[1], (double)w[0], (double)w[1]);
			fails++;
		} else {
			printf("ref route -inf group mask        ok\n");
		}
	}
	return fails;
}

/* ---- main ---- */

static const struct {
	const char *name;
	int (*run)(void);
} tests[] = {
	{ "rmsnorm", test_rmsnorm },     { "elementwise", test_elementwise },
	{ "rope", test_rope },
	{ "embed", test_embed },         { "gemm", test_gemm },
	{ "fp8", test_fp8 },             { "sample", test_sample },
	{ "route", test_route },         { "fxp_quant", test_fxp_quant },
	{ "mla_decode", test_mla_decode },
	{ "mla_absorb", test_mla_absorb }, { "mla_prefill", test_mla_prefill },
	{ "args", test_args },
};


int main(int argc, char **argv)
{
	int ret;

	if (argc != 2) {
		fprintf(stderr, "usage: test_cuda KERNEL|ref\n");
		return 2;
	}
	rng_seed_from_env();
	if (!strcmp(argv[1], "ref"))
		return test_ref() ? 1 : 0;
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		if (strcmp(argv[1], tests[i].name))
			continue;
		ret = gpu_open_api(&api);
		if (ret)
			return ret;
		char dev[128];

		CHECK(api->device_name(dev, sizeof(dev)));
		printf("device %s\n", dev);
		ret = tests[i].run();
		printf("%s: %s\n", tests[i].name, ret ? "FAILED" : "PASSED");
		return ret ? 1 : 0;
	}
	fprintf(stderr, "test_cuda: unknown kernel '%s'\n", argv[1]);
	return 2;
}
