/* test_fxp_tables: the fixed-point contract's tables and scalar blocks against their
 * definitions: the FP8 table for all 256 codes vs e4m3fn (NaN codes deliberately 0 and
 * refused by the packer), the sigmoid table and SiLU error bound, the activation
 * quantiser vs an independent implementation of its definition, rounding/saturation.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmoe_err.h"
#include "hmoe_fxp_pack.h"
#include "hmoe_num.h"

#include "hmoe_test.h"

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* e4m3fn from its definition: bias 7, subnormal 2^-6 * m/8, S.1111.111 NaN. */
static double e4m3_def(int c, int *nan)
{
	int s = c >> 7, e = (c >> 3) & 15, m = c & 7;
	double v = e ? ldexp(1.0 + m / 8.0, e - 7) : ldexp(m / 8.0, -6);

	*nan = e == 15 && m == 7;
	return s ? -v : v;
}

static void test_fp8_table(void)
{
	int nan_codes = 0;

	for (int c = 0; c < 256; c++) {
		int nan;
		double v = e4m3_def(c, &nan);

		if (nan) {
			nan_codes++;
			CHECK(hmoe_fxp_fp8_q[c] == 0, "NaN code 0x%02x decodes to %d, want 0", c,
			      hmoe_fxp_fp8_q[c]);
			CHECK(isnan(hmoe_fp8_e4m3_to_f32((uint8_t)c)), "hmoe_num: 0x%02x not NaN", c);
			continue;
		}
		CHECK(ldexp(v, HMOE_FXP_FP8_SHIFT) == (double)hmoe_fxp_fp8_q[c],
		      "code 0x%02x: table %d, definition %.17g * 2^9 = %.17g", c, hmoe_fxp_fp8_q[c], v,
		      ldexp(v, HMOE_FXP_FP8_SHIFT));
		CHECK(abs(hmoe_fxp_fp8_q[c]) <= HMOE_FXP_FP8_QMAX, "code 0x%02x out of bound", c);
		CHECK((double)hmoe_fp8_e4m3_to_f32((uint8_t)c) == v, "hmoe_num disagrees at 0x%02x", c);
	}
	CHECK(nan_codes == 2, "%d NaN codes, e4m3fn has 2", nan_codes);
	CHECK(hmoe_fxp_fp8_q[0x7e] == HMOE_FXP_FP8_QMAX && hmoe_fxp_fp8_q[0xfe] == -HMOE_FXP_FP8_QMAX,
	      "+-448 not at 0x7e/0xfe");

	/* The packer refuses NaN codes, naming the position. */
	{
		uint8_t codes[2 * 128] = { 0 };
		float scale[2] = { 1.0f, 1.0f };
		struct hmoe_fxp_line *dst = aligned_alloc(64, 64 * hmoe_fxp_linear_lines(0, 2, 128));
		int ret;

		codes[128 + 5] = 0xff;
		ret = hmoe_fxp_pack_fp8(dst, codes, scale, 2, 128, HMOE_FXP_FP8, "w_test");
		CHECK(ret == -HMOE_EINPUT, "packer accepted a NaN code (ret %d)", ret);
		CHECK(ret == -HMOE_EINPUT && strstr(hmoe_last_error(), "row 1 column 5"),
		      "error does not name the position: %s", hmoe_last_error());
		free(dst);
	}
}

static void test_sigmoid_silu(void)
{
	double max_err = 0;

	for (int i = 0; i <= HMOE_FXP_SIG_N; i++) {
		double a = -16.0 + i / 32.0;
		long want = lround(65536.0 / (1.0 + exp(-a)));

		CHECK(hmoe_fxp_sigmoid_q16[i] == want, "sigmoid[%d] = %d, want %ld", i,
		      hmoe_fxp_sigmoid_q16[i], want);
		CHECK(i == 0 || hmoe_fxp_sigmoid_q16[i] >= hmoe_fxp_sigmoid_q16[i - 1],
		      "sigmoid table falls at %d", i);
	}
	/* SiLU over [-20, 20] in steps of 2^-10 plus random points: absolute error bound. */
	for (int i = 0; i < 200000; i++) {
		int32_t a = i < 40961 ? (int32_t)((i - 20480) * 64)
				      : (int32_t)(rnd() % (40u << 16)) - (20 << 16);
		double x = a / 65536.0, want = x / (1.0 + exp(-x));
		double got = hmoe_fxp_silu_q16(a) / 65536.0;

		/* the table's 2^-17 rounding is multiplied by a: bound the error per (1 + |a|) */
		if (fabs(got - want) / (1 + fabs(x)) > max_err)
			max_err = fabs(got - want) / (1 + fabs(x));
	}
	printf("silu max error / (1 + |a|) on [-20, 20]: %.3g\n", max_err);
	CHECK(max_err < 2.5e-5, "silu error %.3g * (1 + |a|) exceeds 2.5e-5 * (1 + |a|)", max_err);
	CHECK(hmoe_fxp_silu_q16(HMOE_FXP_INT32_MAX) == HMOE_FXP_INT32_MAX, "silu(+max) != max");
	CHECK(hmoe_fxp_silu_q16(HMOE_FXP_INT32_MIN) == 0, "silu(-max) != 0");
}

static void test_rounding(void)
{
	CHECK(hmoe_fxp_shift_round(3, 1) == 2 && hmoe_fxp_shift_round(-3, 1) == -2,
	      "half not away from zero");
	CHECK(hmoe_fxp_shift_round(5, 2) == 1 && hmoe_fxp_shift_round(-5, 2) == -1, "5/4");
	CHECK(hmoe_fxp_shift_round(6, 2) == 2 && hmoe_fxp_shift_round(-6, 2) == -2, "6/4");
	CHECK(hmoe_fxp_shift_round(1, -3) == 8, "left shift");
	CHECK(hmoe_fxp_shift_round(1, -60) == HMOE_FXP_TERM_MAX, "left shift saturation");
	CHECK(hmoe_fxp_shift_round(-HMOE_FXP_INT64_MAX - 1, 0) == -HMOE_FXP_TERM_MAX,
	      "INT64_MIN saturation");
	CHECK(hmoe_fxp_shift_round(HMOE_FXP_INT64_MAX, 70) == 0, "huge right shift");
	CHECK(hmoe_fxp_sat32((int64_t)1 << 40) == HMOE_FXP_INT32_MAX, "sat32");
	CHECK(hmoe_fxp_acc_to_q16(-((int64_t)1 << 50)) == HMOE_FXP_INT32_MIN, "acc sat");
}

/* The quantiser vs its definition, implemented again in long double, for one plane
 * (QMAX 127) and two (QMAX 16256 = 127 * 128, q = 128 hi + lo). */
static void test_quantiser(int planes)
{
	const long double qmax = planes == 2 ? HMOE_FXP_ACT2_QMAX : HMOE_FXP_ACT_QMAX;
	int64_t v[128];
	int8_t hi[128], lo[128];

	for (int iter = 0; iter < 20000; iter++) {
		int n = 1 + (int)(rnd() % 128), bits = 1 + (int)(rnd() % 62);
		uint64_t amax = 0;
		int32_t w;
		long double step;
		int k;
		uint64_t m;

		for (int i = 0; i < n; i++) {
			v[i] = (int64_t)(rnd() % ((uint64_t)1 << bits));
			if (rnd() & 1)
				v[i] = -v[i];
			if (iter % 7 == 0 && i)
				v[i] /= 1000;      /* one large among small ones */
			amax = (uint64_t)llabs(v[i]) > amax ? (uint64_t)llabs(v[i]) : amax;
		}
		if (iter == 0) {                   /* the input bound itself */
			v[0] = -HMOE_FXP_ACT_IN_MAX;
			amax = (uint64_t)HMOE_FXP_ACT_IN_MAX;
		}
		memset(lo, 0x5a, sizeof(lo));
		w = hmoe_fxp_quant_group(v, n, planes, hi, planes == 2 ? lo : NULL);
		if (amax == 0) {
			CHECK(w == 0, "zero group has scale %d", w);
			for (int i = 0; i < n; i++)
				CHECK(hi[i] == 0 && (planes == 1 || lo[i] == 0), "zero group: planes %d %d",
				      hi[i], lo[i]);
			continue;
		}
		/* smallest k with ceil(amax / (qmax * 2^k)) <= 255 */
		for (k = -80;; k++)
			if (ceill((long double)amax / (qmax * ldexpl(1.0L, k))) <= 255)
				break;
		m = (uint64_t)ceill((long double)amax / (qmax * ldexpl(1.0L, k)));
		CHECK(hmoe_fxp_scale_m(w) == m && hmoe_fxp_scale_e(w) == HMOE_FXP_F_ACT - k,
		      "%d planes, amax %llu: scale (m %u, e %d), definition (m %llu, e %d)", planes,
		      (unsigned long long)amax, hmoe_fxp_scale_m(w), hmoe_fxp_scale_e(w),
		      (unsigned long long)m, HMOE_FXP_F_ACT - k);
		CHECK(m >= 128 && m <= 255, "m %llu outside [128, 255]", (unsigned long long)m);
		step = (long double)m * ldexpl(1.0L, k);
		for (int i = 0; i < n; i++) {
			long double r = fabsl((long double)v[i]) / step;
			long want = (long)floorl(r + 0.5L);
			long got = planes == 2 ? 128L * hi[i] + lo[i] : hi[i];

			if (v[i] < 0)
				want = -want;
			CHECK(got == want, "%d planes, v %lld: q %ld (hi %d, lo %d), definition %ld",
			      planes, (long long)v[i], got, hi[i], planes == 2 ? lo[i] : 0, want);
			CHECK(labs(got) <= (long)qmax, "q %ld out of [-%ld, %ld]", got, (long)qmax,
			      (long)qmax);
			CHECK(hi[i] >= -127 && hi[i] <= 127, "hi %d out of [-127, 127]", hi[i]);
			if (planes == 2) {
				/* hi = |q| / 128 rounded half up, with q's sign */
				long hi_want = (long)floorl(fabsl((long double)want) / 128 + 0.5L);

				CHECK(hi[i] == (want < 0 ? -hi_want : hi_want), "q %ld: hi %d, want %ld",
				      want, hi[i], want < 0 ? -hi_want : hi_want);
				CHECK(lo[i] >= -64 && lo[i] <= 64, "lo %d out of [-64, 64]", lo[i]);
			} else {
				CHECK((uint8_t)lo[0] == 0x5a, "one plane wrote the lo plane");
			}
		}
	}
	if (planes == 2) {
		/* The split at its edges: groups whose values are exact multiples of the step
		 * (m = 200, k = 10: amax = 16256 * 200 * 2^10). */
		static const int32_t qs[][3] = { /* q, hi, lo */
			{ 16256, 127, 0 }, { -16256, -127, 0 }, { 16255, 127, -1 }, { 64, 1, -64 },
			{ -64, -1, 64 }, { 63, 0, 63 }, { -63, 0, -63 }, { 191, 1, 63 },
			{ 192, 2, -64 }, { 1, 0, 1 }, { 0, 0, 0 }, { 16191, 126, 63 },
		};
		int n = (int)(sizeof(qs) / sizeof(qs[0]));
		int32_t w;

		for (int i = 0; i < n; i++)
			v[i] = (int64_t)qs[i][0] * 200 * 1024;
		w = hmoe_fxp_quant_group(v, n, 2, hi, lo);
		CHECK(hmoe_fxp_scale_m(w) == 200 && hmoe_fxp_scale_e(w) == HMOE_FXP_F_ACT - 10,
		      "edge group: scale (m %u, e %d), want (200, 22)", hmoe_fxp_scale_m(w),
		      hmoe_fxp_scale_e(w));
		for (int i = 0; i < n; i++)
			CHECK(hi[i] == qs[i][1] && lo[i] == qs[i][2], "q %d: (hi %d, lo %d), want "
			      "(%d, %d)", qs[i][0], hi[i], lo[i], qs[i][1], qs[i][2]);
	}
}

static void test_host_quant(void)
{
	/* host side: x -> Q32 exactly */
	CHECK(hmoe_fxp_f32_to_q32(1.5f) == (int64_t)3 << 31, "1.5 in Q32");
	CHECK(hmoe_fxp_f32_to_q32(-1e30f) == -HMOE_FXP_ACT_IN_MAX, "-1e30 saturates");
	CHECK(hmoe_fxp_f32_to_q32(NAN) == 0, "NaN is 0");

	/* x -> planes: (planes, groups * 128), hi then lo, zero-padded, one scale per group */
	for (int planes = 1; planes <= 2; planes++) {
		enum { DIM = 200, PLANE = 256 };
		float x[DIM];
		int8_t xq[2 * PLANE], hi[128], lo[128];
		int32_t xs[2];
		int64_t v[128];

		for (int k = 0; k < DIM; k++)
			x[k] = (float)((int)(rnd() % 2001) - 1000) / 77.0f;
		memset(xq, 0x5a, sizeof(xq));
		hmoe_fxp_quant_x(x, DIM, planes, xq, xs);
		for (int g = 0; g < 2; g++) {
			int n = g ? DIM - 128 : 128;

			for (int k = 0; k < n; k++)
				v[k] = hmoe_fxp_f32_to_q32(x[g * 128 + k]);
			CHECK(xs[g] == hmoe_fxp_quant_group(v, n, planes, hi, lo),
			      "quant_x group %d scale", g);
			for (int k = 0; k < 128; k++) {
				CHECK(xq[g * 128 + k] == (k < n ? hi[k] : 0), "quant_x %d planes: hi[%d]",
				      planes, g * 128 + k);
				if (planes == 2)
					CHECK(xq[PLANE + g * 128 + k] == (k < n ? lo[k] : 0),
					      "quant_x: lo[%d]", g * 128 + k);
			}
		}
		CHECK(planes == 2 || (uint8_t)xq[PLANE] == 0x5a, "one plane wrote past its plane");
	}
}

/* Mode names: the bare names are A16, "-a8" one plane; anything else is refused. */
static void test_mode_names(void)
{
	static const char *const names[] = { "fp8", "int8", "int4", "fp8-a8", "int8-a8",
					     "int4-a8" };
	int mode = -1;

	for (int i = 0; i < 6; i++) {
		CHECK(hmoe_fxp_format_parse(names[i], &mode) == 0, "%s refused", names[i]);
		CHECK(hmoe_fxp_mode_valid(mode) && hmoe_fxp_mode_format(mode) == i % 3 &&
		      hmoe_fxp_mode_planes(mode) == (i < 3 ? 2 : 1), "%s -> mode %#x", names[i],
		      (unsigned)mode);
		CHECK(!strcmp(hmoe_fxp_format_name(mode), names[i]), "mode %#x named %s, want %s",
		      (unsigned)mode, hmoe_fxp_format_name(mode), names[i]);
	}
	CHECK(hmoe_fxp_format_parse("fp8", &mode) == 0 && mode == (HMOE_FXP_FP8 | HMOE_FXP_A16),
	      "fp8 is not fp8 weights + A16");
	CHECK(hmoe_fxp_format_parse("int3", &mode) == -HMOE_EINPUT &&
	      strstr(hmoe_last_error(), "int3") && strstr(hmoe_last_error(), "int4-a8"),
	      "bad name: %s", hmoe_last_error());
	CHECK(hmoe_fxp_format_parse("fp8-a16", &mode) == -HMOE_EINPUT, "fp8-a16 accepted");
	CHECK(!strcmp(hmoe_fxp_format_name(0x200), "?"), "unknown mode has a name");
}

int main(void)
{
	test_fp8_table();
	test_sigmoid_silu();
	test_rounding();
	test_quantiser(1);
	test_quantiser(2);
	test_host_quant();
	test_mode_names();
	printf("%d failures\n", failures);
	return failures ? 1 : 0;
}
