/* test_ops: the fp32 kernels against plain double-precision references.
 *
 * Every kernel table this CPU supports (scalar, AVX2, AVX-512) must match a double
 * reference within fp32 rounding, including odd lengths (SIMD tails), strided inputs and
 * row sub-ranges; and within one table a token's result must not depend on how many
 * tokens share the call or how rows are split over threads (bit-identical). RoPE/YaRN
 * numbers are checked against the values published in MODEL.md sec. 3-4.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmoe_err.h"
#include "hmoe_ops.h"
#include "hmoe_pool.h"

#include "hmoe_test.h"

static unsigned long long rng = 88172645463325252ull;

static float frand(void) /* [-1, 1) */
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (float)(rng >> 40) / (float)(1ull << 23) - 1.0f;
}

static float *rand_vec(size_t n)
{
	float *p = malloc(n * sizeof(float));

	for (size_t i = 0; i < n; i++)
		p[i] = frand();
	return p;
}

/* |got - want| <= tol * sum |a_i b_i| : the bound of fp32 summation error */
static int close_dot(float got, double want, double abs_sum, int n)
{
	return fabs((double)got - want) <= 2.0 * n * 6e-8 * abs_sum + 1e-30;
}

static void test_table(enum hmoe_ops_isa isa, struct hmoe_pool *pool)
{
	static const int ins[] = { 1, 3, 7, 8, 15, 16, 17, 31, 33, 64, 100, 576 };
	static const int outs[] = { 1, 3, 4, 5, 9, 67 };
	const struct hmoe_ops_kernels *k;
	const char *name = hmoe_ops_isa_name(isa);

	if (hmoe_ops_set_isa(isa)) {
		printf("%s: not supported on this CPU, skipped\n", name);
		return;
	}
	k = hmoe_ops();
	for (size_t a = 0; a < sizeof(ins) / sizeof(ins[0]); a++) {
		for (size_t b = 0; b < sizeof(outs) / sizeof(outs[0]); b++) {
			int in = ins[a], out = outs[b], n = 7, ldx = in + 3, ldy = out + 2;
			float *x = rand_vec((size_t)n * ldx), *w = rand_vec((size_t)out * in);
			float *y = calloc((size_t)n * ldy, sizeof(float));
			float *y1 = calloc((size_t)ldy, sizeof(float));
			float *yp = calloc((size_t)n * out, sizeof(float));
			float *xc = malloc((size_t)n * in * sizeof(float));
			int bad = 0, split = 0, single = 0, par = 0;

			for (int t = 0; t < n; t++)
				memcpy(xc + (size_t)t * in, x + (size_t)t * ldx, (size_t)in * sizeof(float));
			/* rows [1, out) only: row 0 must stay untouched */
			k->matmul_rows(y, ldy, x, ldx, w, n, in, out > 1 ? 1 : 0, out);
			for (int t = 0; t < n; t++)
				for (int r = 0; r < out; r++) {
					double want = 0.0, abs_sum = 0.0;
					float got = y[(size_t)t * ldy + r];

					if (out > 1 && r == 0) {
						bad += got != 0.0f;
						continue;
					}
					for (int i = 0; i < in; i++) {
						double p = (double)x[(size_t)t * ldx + i] * w[(size_t)r * in + i];

						want += p;
						abs_sum += fabs(p);
					}
					bad += !close_dot(got, want, abs_sum, in);
					/* the same pair through dot() and as a lone token: same bits */
					split += k->dot(x + (size_t)t * ldx, w + (size_t)r * in, in) != got;
					k->matmul_rows(y1, ldy, x + (size_t)t * ldx, ldx, w, 1, in, r, r + 1);
					single += y1[r] != got;
				}
			hmoe_ops_matmul_par(pool, yp, xc, w, n, in, out);
			for (int t = 0; t < n; t++)
				for (int r = out > 1 ? 1 : 0; r < out; r++)
					par += yp[(size_t)t * out + r] != y[(size_t)t * ldy + r];
			CHECK(!bad, "%s matmul in %d out %d: %d outputs off the double reference", name,
			      in, out, bad);
			CHECK(!split, "%s in %d: dot() differs from matmul_rows in %d outputs", name, in,
			      split);
			CHECK(!single, "%s in %d out %d: a token alone differs from in a batch of %d "
			      "(%d outputs)", name, in, out, n, single);
			CHECK(!par, "%s in %d out %d: pool matmul differs from serial (%d outputs)", name,
			      in, out, par);
			free(x);
			free(w);
			free(y);
			free(y1);
			free(yp);
			free(xc);
		}
		/* axpy, including the tail, must not touch y past n */
		{
			int n = ins[a];
			float *x = rand_vec((size_t)n), *y = rand_vec((size_t)n + 1), *y0;
			int bad = 0;

			y0 = malloc(((size_t)n + 1) * sizeof(float));
			memcpy(y0, y, ((size_t)n + 1) * sizeof(float));
			k->axpy(y, 0.75f, x, n);
			for (int i = 0; i < n; i++)
				bad += fabs((double)y[i] - ((double)y0[i] + 0.75 * x[i])) > 1e-6;
			CHECK(!bad && y[n] == y0[n], "%s axpy n %d: %d wrong, guard %s", name, n, bad,
			      y[n] == y0[n] ? "intact" : "overwritten");
			free(x);
			free(y);
			free(y0);
		}
	}
	printf("%s: matmul / dot / axpy match the double reference; batch, split and pool "
	       "results bit-identical\n", name);
}

static void test_elementwise(void)
{
	float x[37], w[37], y[37], s[6] = { 1.0f, 2.0f, -INFINITY, 3.0f, 0.5f, -1.0f };
	double ss = 0.0, sum = 0.0;

	for (int i = 0; i < 37; i++) {
		x[i] = frand() * 3.0f;
		w[i] = 1.0f + 0.1f * frand();
		ss += (double)x[i] * x[i];
	}
	hmoe_ops_rmsnorm(y, x, w, 37, 1e-6f);
	for (int i = 0; i < 37; i++) {
		double want = x[i] / sqrt(ss / 37 + 1e-6) * w[i];

		CHECK(fabs(y[i] - want) <= 1e-6 * fabs(want) + 1e-7, "rmsnorm[%d] %g, want %g", i,
		      y[i], want);
	}
	hmoe_ops_softmax(s, 6);
	for (int i = 0; i < 6; i++)
		sum += s[i];
	CHECK(s[2] == 0.0f, "softmax: -inf entry gave %g, want 0", s[2]);
	CHECK(fabs(sum - 1.0) < 1e-6, "softmax sums to %g", sum);
	CHECK(fabs(s[3] / s[0] - exp(2.0)) < 1e-5, "softmax ratio %g, want e^2", s[3] / s[0]);
	{
		float g[3] = { -2.0f, 0.0f, 3.0f }, u[3] = { 1.0f, 5.0f, 0.5f };

		hmoe_ops_silu_mul(g, u, 3);
		CHECK(fabs(g[0] - (-2.0 / (1.0 + exp(2.0)))) < 1e-6 && g[1] == 0.0f &&
			      fabs(g[2] - 0.5 * 3.0 / (1.0 + exp(-3.0))) < 1e-6,
		      "silu_mul: %g %g %g", g[0], g[1], g[2]);
	}
}

/* The 671B config: YaRN factor 40 over 4096, rope dim 64, qk head 192. */
static void test_rope(void)
{
	struct hmoe_config c;
	float freqs[32], x[8], orig[8];

	memset(&c, 0, sizeof(c));
	c.qk_nope_head_dim = 128;
	c.qk_rope_head_dim = 64;
	c.rope_theta = 10000.0f;
	c.rope_yarn = 1;
	c.rope_factor = 40.0f;
	c.rope_original_max_pos = 4096;
	c.rope_beta_fast = 32.0f;
	c.rope_beta_slow = 1.0f;
	c.rope_mscale = 1.0f;
	c.rope_mscale_all_dim = 1.0f;
	hmoe_ops_rope_freqs(&c, freqs);
	/* MODEL.md sec. 4: i <= 10 unchanged, i >= 23 divided by 40, published blends */
	CHECK(freqs[0] == 1.0f, "freq 0 = %g, want 1", freqs[0]);
	CHECK(fabsf(freqs[10] / powf(10000.0f, -20.0f / 64.0f) - 1.0f) < 1e-6f, "freq 10 = %g",
	      freqs[10]);
	CHECK(fabsf(freqs[11] / 0.0390069f - 1.0f) < 1e-5f, "freq 11 = %.7g, want 0.0390069",
	      freqs[11]);
	CHECK(fabsf(freqs[12] / 0.0268794f - 1.0f) < 1e-5f, "freq 12 = %.7g, want 0.0268794",
	      freqs[12]);
	CHECK(fabsf(freqs[31] / 3.3338e-6f - 1.0f) < 1e-4f, "freq 31 = %.7g, want 3.3338e-6",
	      freqs[31]);
	CHECK(fabsf(hmoe_ops_softmax_scale(&c) / 0.13523378f - 1.0f) < 1e-6f,
	      "softmax scale %.8g, want 0.13523378", hmoe_ops_softmax_scale(&c));
	c.rope_yarn = 0;
	hmoe_ops_rope_freqs(&c, freqs);
	CHECK(fabsf(freqs[31] / powf(10000.0f, -62.0f / 64.0f) - 1.0f) < 1e-6f, "no YaRN: freq 31 %g",
	      freqs[31]);
	CHECK(fabsf(hmoe_ops_softmax_scale(&c) - 1.0f / sqrtf(192.0f)) < 1e-8f,
	      "no YaRN: softmax scale %g", hmoe_ops_softmax_scale(&c));

	/* interleaved pairs: pair i rotates by pos * freq_i; pos 0 is the identity */
	for (int i = 0; i < 8; i++)
		x[i] = orig[i] = frand();
	hmoe_ops_rope(x, 8, 0, freqs);
	CHECK(!memcmp(x, orig, sizeof(x)), "rope at position 0 changed x");
	hmoe_ops_rope(x, 8, 5, freqs);
	for (int i = 0; i < 4; i++) {
		double a = 5.0 * freqs[i];
		double want0 = orig[2 * i] * cos(a) - orig[2 * i + 1] * sin(a);
		double want1 = orig[2 * i] * sin(a) + orig[2 * i + 1] * cos(a);

		CHECK(fabs(x[2 * i] - want0) < 1e-6 && fabs(x[2 * i + 1] - want1) < 1e-6,
		      "rope pair %d: (%g, %g), want (%g, %g)", i, x[2 * i], x[2 * i + 1], want0,
		      want1);
	}
}

int main(void)
{
	struct hmoe_pool *pool;

	if (hmoe_pool_create(&pool, 3)) {
		fprintf(stderr, "%s\n", hmoe_last_error());
		return 1;
	}
	for (int isa = 0; isa < HMOE_ISA_COUNT; isa++)
		test_table((enum hmoe_ops_isa)isa, pool);
	test_elementwise();
	test_rope();
	hmoe_pool_destroy(pool);
	if (failures) {
		printf("%d checks failed\n", failures);
		return 1;
	}
	printf("all ops checks passed\n");
	return 0;
}
