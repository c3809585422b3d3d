/* test_fxp_simd: every CPU variant of the fixed-point expert kernel (scalar driver,
 * AVX2, AVX-512 VNNI, whichever this CPU has) is bit-identical to the hls/ scalar kernel
 * hmoe_ffn() in both activation modes (A16: two int8 planes, A8: one) on random packs
 * and activations, including the extremes: +-127 (and the off-contract -128) in every
 * plane, saturating accumulations, all-zero rows and groups, one huge activation among
 * small ones, NaN fp8 codes, odd token counts and dims. Also: the threaded MoE driver
 * gives the same floats as hmoe_ffn() per expert, in both modes; and the best variant's
 * row_acc4 (the four-row path: one token, fp8 with remainder lists up to four) called
 * directly equals the hls reference and declines only the rows it documents.
 * --moe-only: the driver cases alone; --rows4-only: the row_acc4 cases alone (exit 77
 * where the variant has no VBMI fp8 kernels).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <malloc.h>

#include "hmoe_err.h"
#include "hmoe_fxp_cpu.h"
#include "hmoe_fxp_pack.h"
#include "hmoe_num.h"
#include "hmoe_pool.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 16);
}

enum weights { W_RANDOM, W_MAX, W_ZERO_ROWS, W_GARBAGE };
enum acts { X_RANDOM, X_EXTREME, X_ONE_HUGE, X_ZERO_GROUPS, X_MINUS128, X_SOME_M128 };

static const char *const wnames[] = { "random", "max", "zero-rows", "garbage-bytes" };
static const char *const xnames[] = { "random", "+-127", "one-huge", "zero-groups", "-128",
				       "some -128" };

/* Root mean square of the weight integer q over uniformly random codes. */
static double code_rms(int format)
{
	double s = 0;

	for (int c = 0; c < 256; c++) {
		double q = format == HMOE_FXP_FP8 ? hmoe_fxp_fp8_q[c]
			 : format == HMOE_FXP_INT8 ? (int8_t)c : (c & 15) - 8;

		s += q * q;
	}
	return sqrt(s / 256);
}

/* Fills one linear's rows: codes per mode, scale words m in [2^15, 2^16) with exponent
 * chosen so that W x stays O(1) for x = O(1), plus e_offset + [-2, 2) (W_GARBAGE: every
 * byte random, scales included). */
static void fill_linear(uint8_t *lin, int format, int out, int in, enum weights mode,
			int e_offset)
{
	int e_base = 16 + (int)lrint(log2(code_rms(format) * sqrt(in))) + e_offset - 2;

	int row_bytes = hmoe_fxp_row_lines(format, in) * HMOE_FXP_LINE_BYTES;
	int scale_bytes = hmoe_fxp_scale_lines(in) * HMOE_FXP_LINE_BYTES;
	int code_bytes = row_bytes - scale_bytes, groups = hmoe_fxp_groups(in);

	for (int n = 0; n < out; n++) {
		uint8_t *row = lin + (size_t)n * row_bytes, *codes = row + scale_bytes;

		if (mode == W_GARBAGE) {
			for (int b = 0; b < row_bytes; b++)
				row[b] = (uint8_t)rnd();
			continue;
		}
		memset(row, 0, scale_bytes);
		for (int g = 0; g < groups; g++) {
			int32_t w = hmoe_fxp_scale_word(32768 + rnd() % 32768,
							e_base + (int)(rnd() % 4));

			for (int b = 0; b < 4; b++)
				row[4 * g + b] = (uint8_t)((uint32_t)w >> (8 * b));
		}
		for (int b = 0; b < code_bytes; b++) {
			uint8_t c = (uint8_t)rnd();

			if (mode == W_MAX)
				c = format == HMOE_FXP_FP8 ? (rnd() & 1 ? 0x7e : 0xfe)
				  : format == HMOE_FXP_INT8 ? (rnd() & 1 ? 127 : 129)
				  : (rnd() & 1 ? 0xff : 0x11);
			if (mode == W_ZERO_ROWS && n % 3 == 0)
				c = format == HMOE_FXP_INT4 ? 0x88 : 0;
			codes[b] = c;
		}
	}
}

/* xq (n_tokens, planes, groups * 128), xs (n_tokens, groups). X_EXTREME / X_MINUS128
 * overwrite every plane's live columns (so an A16 value reaches 128 * 127 + 127 or,
 * off contract, -(128 * 128 + 128): the overflow proof's bound); such rows mostly
 * saturate, so X_SOME_M128 puts the off-contract -128 in about one column in 16 of each
 * plane of random activations instead, where a kernel that mishandles it (vpsignb cannot
 * negate -128) changes unsaturated results. */
static void fill_acts(int8_t *xq, int32_t *xs, int n_tokens, int dim, int planes,
		      enum acts mode)
{
	int groups = hmoe_fxp_groups(dim), plane = groups * HMOE_FXP_GROUP;
	int stride = planes * plane;
	float *x = malloc(sizeof(*x) * dim);

	for (int t = 0; t < n_tokens; t++) {
		for (int k = 0; k < dim; k++)
			x[k] = ((float)(rnd() % 2001) - 1000.0f) / 500.0f;
		if (mode == X_ONE_HUGE)
			x[rnd() % dim] = 3000.0f;
		if (mode == X_ZERO_GROUPS)
			memset(x, 0, sizeof(*x) * (dim < 128 ? dim : 128));
		hmoe_fxp_quant_x(x, dim, planes, xq + t * stride, xs + t * groups);
		if (mode == X_SOME_M128)
			for (int p = 0; p < planes; p++)
				for (int k = 0; k < dim; k++)
					if (rnd() % 16 == 0)
						xq[t * stride + p * plane + k] = -128;
		if (mode == X_EXTREME || mode == X_MINUS128)
			for (int p = 0; p < planes; p++)
				for (int k = 0; k < dim; k++)
					xq[t * stride + p * plane + k] = (int8_t)(
						mode == X_MINUS128 ? (rnd() & 1 ? -128 : 127)
								   : (rnd() & 1 ? 127 : -127));
	}
	free(x);
}

static int failures;

/* Every variant the library has; each check runs those this CPU supports. */
static const struct hmoe_fxp_simd *const variants[] = {
	&hmoe_fxp_simd_scalar, &hmoe_fxp_simd_avx2, &hmoe_fxp_simd_avxvnni,
	&hmoe_fxp_simd_avx512, &hmoe_fxp_simd_amx,  &hmoe_fxp_simd_amx_emu,
};
#define N_VARIANTS (sizeof(variants) / sizeof(variants[0]))

/* A checkpoint-like fp8 code: a Gaussian weight of a 128x128 block whose largest weight
 * (about 4.5 sigma) is scaled to 448, rounded to e4m3 (about 1 code in 1,000 then has a
 * remainder |q| & 3). */
static uint8_t gauss_fp8(void)
{
	double u1 = (rnd() + 1.0) / 4294967297.0, u2 = rnd() / 4294967296.0;
	double v = sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2) * (448 / 4.5);

	return hmoe_f32_to_fp8_e4m3((float)(v > 448 ? 448 : v < -448 ? -448 : v));
}

/* fp8 codes for the two-byte kernel (row_acc4 with remainder lists). */
enum fixm {
	FIX_NONE,    /* no lists: the three-digit kernel */
	FIX_RANDOM,  /* uniformly random codes: an eighth have a remainder */
	FIX_GAUSS,   /* checkpoint-like codes: remainders rare */
	FIX_TINY,    /* every code below 1/16 (E <= 2): most have one */
	FIX_BIG,     /* the largest two-byte digits (u0 = 240: code 0x3f; u1 = 224: 0x7e),
		      * either sign, for the lane bounds with x at +-127 */
};
static const char *const fixnames[] = { "", " lists, random codes", " lists, gaussian codes",
					" lists, codes below 1/16", " lists, largest digits" };

static void fill_fix_codes(uint8_t *lin, int in, int rows, enum fixm fm)
{
	size_t row_bytes = (size_t)hmoe_fxp_row_lines(HMOE_FXP_FP8, in) * HMOE_FXP_LINE_BYTES;
	size_t skip = (size_t)hmoe_fxp_scale_lines(in) * HMOE_FXP_LINE_BYTES;

	for (int r = 0; r < rows; r++)
		for (int k = 0; k < hmoe_fxp_groups(in) * HMOE_FXP_GROUP; k++) {
			uint8_t c = (uint8_t)rnd(), *p = lin + r * row_bytes + skip + k;

			if (fm == FIX_GAUSS)
				c = gauss_fp8();
			else if (fm == FIX_TINY)
				c = (uint8_t)((c & 0x80) | (c % 0x18));
			else if (fm == FIX_BIG)
				c = (uint8_t)((c & 0x80) | (c & 1 ? 0x3f : 0x7e));
			if (k >= in)
				c = 0;
			*p = c;
		}
}

/* The row_acc4 contract, called directly (the layer driver falls back to one row at a
 * time when it declines, which is exact too, so only this test sees whether the fast
 * path ran): a run of Q4 quads of row records of `in` columns (row r of quad q at
 * rows[r] + q * stride, the four rows' records far apart as the driver's) against T
 * tokens, acc[(4 q + r) * T + t] equal to the hls reference
 * sum_g hmoe_fxp_term(dot_g, w_g, xs_g) and the Q16 results hmoe_fxp_acc_to_q16 of it,
 * with nothing written past a row's results, and the variant declining
 * only where it says it does (AVX-512: fp8 without VBMI, or an x holding -128; more
 * than one token unless fp8 with remainder lists, and more than HMOE_FXP_ROWS4_TOKENS
 * even then). */
static void check_row_acc4(const struct hmoe_fxp_simd *simd, int mode, int in, int minus128,
			   enum fixm fm, int T, int wild)
{
	enum { Q4 = 3 };
	int format = hmoe_fxp_mode_format(mode), planes = hmoe_fxp_mode_planes(mode);
	int groups = hmoe_fxp_groups(in), plane = groups * HMOE_FXP_GROUP;
	size_t row_bytes = (size_t)hmoe_fxp_row_lines(format, in) * HMOE_FXP_LINE_BYTES;
	uint8_t *lin = aligned_alloc(HMOE_FXP_LINE_BYTES, 4 * Q4 * row_bytes);
	int8_t *xq = calloc((size_t)T * planes * plane, 1);
	int32_t *xs = calloc((size_t)T * groups, sizeof(*xs));
	int32_t *xsum = calloc((size_t)T * planes * groups, sizeof(*xsum));
	uint32_t *xm = calloc((size_t)T * groups + 8, sizeof(*xm));
	int32_t *xe = calloc((size_t)T * groups + 8, sizeof(*xe));
	const uint8_t *rows[4];
	int64_t acc[4 * Q4 * 8];
	/* the Q16 results too, row r's at q16[r][q * T + t], with a word past each row's */
	int32_t q16[4][Q4 * 8 + 1];
	int declined, want_decline;
	struct hmoe_fxp_rowfix fix[4 * Q4];
	uint16_t *ent = calloc((size_t)4 * Q4 * in, sizeof(*ent));

	fill_linear(lin, format, 4 * Q4, in, W_RANDOM, 0);
	if (fm != FIX_NONE)
		fill_fix_codes(lin, in, 4 * Q4, fm);
	fill_acts(xq, xs, T, in, planes, fm == FIX_BIG ? X_EXTREME : X_RANDOM);
	if (minus128)  /* in the last token */
		xq[(size_t)(T - 1) * planes * plane + rnd() % in] = -128;
	/* wild: off-contract scale exponents for token 0, the group's r = e_w + e_x - 24 <=
	 * 0 in groups 1, 5, 9, ... and > 62 in groups 3, 11, 19, ..., which the kernels hand
	 * to their scalar terms */
	for (int r = 0; wild && r < 4 * Q4; r++)
		for (int g = 0; g < groups; g++) {
			int ex = hmoe_fxp_scale_e(xs[g]) - HMOE_FXP_F_ACC, e;
			uint32_t w;

			if (g % 4 == 1)
				e = -ex - (int)(rnd() % 4);
			else if (g % 8 == 3)
				e = 63 - ex + (int)(rnd() % 4);
			else
				continue;
			w = (uint32_t)hmoe_fxp_scale_word(32768 + rnd() % 32768, e);
			for (int b = 0; b < 4; b++)
				lin[(size_t)r * row_bytes + 4 * g + b] = (uint8_t)(w >> (8 * b));
		}
	for (int t = 0; t < T; t++)
		for (int g = 0; g < groups; g++) {
			for (int p = 0; p < planes; p++)
				for (int k = 0; k < HMOE_FXP_GROUP; k++)
					xsum[(t * planes + p) * groups + g] +=
						xq[(size_t)(t * planes + p) * plane +
						   g * HMOE_FXP_GROUP + k];
			xm[t * groups + g] = hmoe_fxp_scale_m(xs[t * groups + g]) & 0xffu;
			xe[t * groups + g] = hmoe_fxp_scale_e(xs[t * groups + g]) - HMOE_FXP_F_ACC;
		}
	for (int r = 0; r < 4; r++)
		rows[r] = lin + (size_t)r * Q4 * row_bytes;
	for (int i = 0; i < 4 * Q4; i++) {  /* quad i / 4's row i % 4 */
		const uint8_t *rec = rows[i % 4] + (size_t)(i / 4) * row_bytes;

		fix[i].ent = ent + (size_t)i * in;
		fix[i].n = fm == FIX_NONE ? 0 : hmoe_fxp_fp8_fix_row(rec, in, ent + (size_t)i * in);
	}
	{
		struct hmoe_fxp_xtile x = { .n_tokens = T, .groups = groups, .xq = xq, .xs = xs,
					    .xsum = xsum, .xm = xm, .xe = xe, .planes = planes,
					    .has_m128 = minus128 };

		struct hmoe_fxp_rows4_out out = { .acc = acc,
						  .q16 = { q16[0], q16[1], q16[2], q16[3] },
						  .qstep = (size_t)T, .tstride = 1 };

		for (int r = 0; r < 4; r++)
			for (int k = 0; k <= Q4 * 8; k++)
				q16[r][k] = 0x5a5a5a5a;
		declined = simd->row_acc4(rows, row_bytes, Q4, format, in, &x,
					  fm == FIX_NONE ? NULL : fix, &out) != 0;
	}
	want_decline = (format == HMOE_FXP_FP8 &&
			(minus128 || !__builtin_cpu_supports("avx512vbmi") ||
			 (getenv("HMOE_FXP_NO_VBMI") && *getenv("HMOE_FXP_NO_VBMI")))) ||
		       (T > 1 && (format != HMOE_FXP_FP8 || fm == FIX_NONE ||
				  T > HMOE_FXP_ROWS4_TOKENS));
	if (declined != want_decline) {
		printf("FAIL %s row_acc4 %s dim %d, %d tokens%s%s%s: %s\n", simd->name,
		       hmoe_fxp_format_name(mode), in, T, minus128 ? " (x with -128)" : "",
		       fixnames[fm], wild ? " (wild scales)" : "",
		       declined ? "declined" : "accepted");
		failures++;
	}
	for (int i = 0; i < 4 * Q4 && !declined; i++)
		for (int t = 0; t < T; t++) {
			int r = i % 4;
			const uint8_t *rec = rows[r] + (size_t)(i / 4) * row_bytes;
			const uint8_t *codes = rec + hmoe_fxp_scale_lines(in) * HMOE_FXP_LINE_BYTES;
			const int8_t *xt = xq + (size_t)t * planes * plane;
			int64_t ref = 0;

			for (int g = 0; g < groups; g++)
				ref += hmoe_fxp_term(
					hmoe_fxp_dot_group_planes(
						codes + (size_t)g * hmoe_fxp_group_bytes(format),
						format, planes, xt + g * HMOE_FXP_GROUP, plane),
					hmoe_fxp_row_scale(rec, g), xs[t * groups + g]);
			if (q16[r][(i / 4) * T + t] != hmoe_fxp_acc_to_q16(ref) ||
			    q16[r][Q4 * T] != 0x5a5a5a5a) {
				printf("FAIL %s row_acc4 %s dim %d%s%s quad %d row %d token %d of "
				       "%d: Q16 %d, reference %d%s\n", simd->name,
				       hmoe_fxp_format_name(mode), in, fixnames[fm],
				       wild ? " (wild scales)" : "", i / 4, r, t, T,
				       q16[r][(i / 4) * T + t], hmoe_fxp_acc_to_q16(ref),
				       q16[r][Q4 * T] != 0x5a5a5a5a ? " (written past)" : "");
				failures++;
			}
			if (acc[i * T + t] != ref) {
				printf("FAIL %s row_acc4 %s dim %d%s%s quad %d row %d token %d of "
				       "%d: %lld, reference %lld\n", simd->name,
				       hmoe_fxp_format_name(mode), in, fixnames[fm],
				       wild ? " (wild scales)" : "", i / 4, r, t, T,
				       (long long)acc[i * T + t], (long long)ref);
				failures++;
			}
		}
	free(lin);
	free(xq);
	free(xs);
	free(xsum);
	free(xm);
	free(xe);
	free(ent);
}

static void check_case(int mode, int dim, int inter, int n_tokens, enum weights wm,
		       enum acts xm, int e_base)
{
	int format = hmoe_fxp_mode_format(mode), planes = hmoe_fxp_mode_planes(mode);
	int64_t lin = hmoe_fxp_linear_lines(format, inter, dim);
	size_t pack_bytes = (size_t)hmoe_fxp_expert_lines(format, dim, inter) * HMOE_FXP_LINE_BYTES;
	int dg = hmoe_fxp_groups(dim);
	uint8_t *pack = aligned_alloc(64, pack_bytes);
	int8_t *xq = calloc((size_t)n_tokens * planes * dg * HMOE_FXP_GROUP, 1);
	int32_t *xs = calloc((size_t)n_tokens * dg, sizeof(*xs));
	int32_t *ref = malloc(sizeof(*ref) * n_tokens * dim);
	int32_t *got = malloc(sizeof(*got) * n_tokens * dim);
	struct hmoe_ffn_scratch *s = malloc(sizeof(*s));

	fill_linear(pack, format, inter, dim, wm, e_base);
	fill_linear(pack + lin * HMOE_FXP_LINE_BYTES, format, inter, dim, wm, e_base);
	fill_linear(pack + 2 * lin * HMOE_FXP_LINE_BYTES, format, dim, inter, wm, e_base);
	fill_acts(xq, xs, n_tokens, dim, planes, xm);
	if (hmoe_ffn((const struct hmoe_fxp_line *)pack, xq, xs, ref, s, mode, n_tokens, dim,
		     inter)) {
		printf("FAIL hmoe_ffn rejected mode %#x dim %d inter %d tokens %d\n", (unsigned)mode,
		       dim, inter, n_tokens);
		failures++;
	}
	if (wm == W_RANDOM && xm == X_RANDOM) {
		/* The comparison means something only if the outputs are neither 0 nor
		 * saturated: the scales in this mode are chosen for that. */
		int live = 0;

		for (int i = 0; i < n_tokens * dim; i++)
			live += ref[i] != 0 && ref[i] != HMOE_FXP_INT32_MAX && ref[i] != HMOE_FXP_INT32_MIN;
		if (live < n_tokens * dim / 2) {
			printf("FAIL %s dim %d: only %d of %d outputs in range; the case tests nothing\n",
			       hmoe_fxp_format_name(mode), dim, live, n_tokens * dim);
			failures++;
		}
	}
	if (wm == W_MAX && xm == X_EXTREME) {
		int sat = 0;

		for (int i = 0; i < n_tokens * dim; i++)
			sat += ref[i] == HMOE_FXP_INT32_MAX || ref[i] == HMOE_FXP_INT32_MIN;
		if (sat == 0) {
			printf("FAIL %s dim %d: the saturating case saturated nothing\n",
			       hmoe_fxp_format_name(mode), dim);
			failures++;
		}
	}
	for (size_t v = 0; v < N_VARIANTS; v++) {
		if (!variants[v]->supported())
			continue;
		memset(got, 0x5a, sizeof(*got) * n_tokens * dim);
		if (hmoe_fxp_cpu_ffn(variants[v], (const struct hmoe_fxp_line *)pack, xq, xs, got,
				     mode, n_tokens, dim, inter)) {
			printf("FAIL %s rejected mode %#x\n", variants[v]->name, (unsigned)mode);
			failures++;
			continue;
		}
		for (int i = 0; i < n_tokens * dim; i++)
			if (got[i] != ref[i]) {
				printf("FAIL %s %s dim %d inter %d tokens %d weights %s acts %s: y[%d][%d] "
				       "= %d, scalar kernel %d\n", variants[v]->name,
				       hmoe_fxp_format_name(mode), dim, inter, n_tokens, wnames[wm],
				       xnames[xm], i / dim, i % dim, got[i], ref[i]);
				failures++;
				break;
			}
	}
	free(pack);
	free(xq);
	free(xs);
	free(ref);
	free(got);
	free(s);
}

/* A16's group dots reach 2^39, so with fp8 weights and the largest scales a group term
 * passes HMOE_FXP_TERM_MAX before it is clamped: W1 and W3 rows with 4 groups of +448
 * (term ~2^61.8 unclamped) and 4 of -448 at half the scale (~2^60.8) against x = 16383
 * everywhere. Clamped, the terms cancel (h1 = h3 = 0, y = 0); a variant that forgot the
 * clamp would see h1 saturate. */
static void check_term_clamp(void)
{
	enum { DIM = 1024, INTER = 128 };
	int mode = HMOE_FXP_FP8 | HMOE_FXP_A16, groups = DIM / HMOE_FXP_GROUP;
	int64_t lin = hmoe_fxp_linear_lines(mode, INTER, DIM);
	size_t row_bytes = (size_t)hmoe_fxp_row_lines(mode, DIM) * HMOE_FXP_LINE_BYTES;
	size_t scale_bytes = (size_t)hmoe_fxp_scale_lines(DIM) * HMOE_FXP_LINE_BYTES;
	uint8_t *pack = aligned_alloc(64, (size_t)hmoe_fxp_expert_lines(mode, DIM, INTER) * 64);
	static int8_t xq[2 * DIM];
	int32_t xs[DIM / HMOE_FXP_GROUP], ref[DIM], got[DIM];
	struct hmoe_ffn_scratch *s = malloc(sizeof(*s));
	int nonzero = 0;

	fill_linear(pack + 2 * lin * HMOE_FXP_LINE_BYTES, mode, DIM, INTER, W_RANDOM, 0);
	for (int m = 0; m < 2; m++)
		for (int n = 0; n < INTER; n++) {
			uint8_t *row = pack + m * lin * HMOE_FXP_LINE_BYTES + n * row_bytes;

			memset(row, 0, scale_bytes);
			for (int g = 0; g < groups; g++) {
				/* e_w 5 + e_x 20 - 24: r = 1 */
				uint32_t w = (uint32_t)hmoe_fxp_scale_word(g < 4 ? 65535 : 32768, 5);

				for (int b = 0; b < 4; b++)
					row[4 * g + b] = (uint8_t)(w >> (8 * b));
				memset(row + scale_bytes + g * HMOE_FXP_GROUP, g < 4 ? 0x7e : 0xfe,
				       HMOE_FXP_GROUP);
			}
		}
	memset(xq, 127, sizeof(xq));
	for (int g = 0; g < groups; g++)
		xs[g] = hmoe_fxp_scale_word(255, 20);
	hmoe_ffn((const struct hmoe_fxp_line *)pack, xq, xs, ref, s, mode, 1, DIM, INTER);
	for (int i = 0; i < DIM; i++)
		nonzero += ref[i] != 0;
	if (nonzero) {
		printf("FAIL term clamp: the kernel gives %d non-zero outputs, want 0\n", nonzero);
		failures++;
	}
	for (size_t v = 0; v < N_VARIANTS; v++) {
		if (!variants[v]->supported())
			continue;
		hmoe_fxp_cpu_ffn(variants[v], (const struct hmoe_fxp_line *)pack, xq, xs, got, mode,
				 1, DIM, INTER);
		if (memcmp(got, ref, sizeof(ref))) {
			printf("FAIL term clamp: %s differs from the kernel\n", variants[v]->name);
			failures++;
		}
	}
	free(pack);
	free(s);
}

/* A freshly allocated expert pack (W1, W3, W2) of random weights of `format`. */
static struct hmoe_fxp_line *random_pack(int format, int dim, int inter)
{
	int64_t lin = hmoe_fxp_linear_lines(format, inter, dim);
	uint8_t *p = aligned_alloc(64, (size_t)hmoe_fxp_expert_lines(format, dim, inter) *
					   HMOE_FXP_LINE_BYTES);

	fill_linear(p, format, inter, dim, W_RANDOM, 0);
	fill_linear(p + lin * HMOE_FXP_LINE_BYTES, format, inter, dim, W_RANDOM, 0);
	fill_linear(p + 2 * lin * HMOE_FXP_LINE_BYTES, format, dim, inter, W_RANDOM, 0);
	return (struct hmoe_fxp_line *)p;
}

/* The first of the driver's n_pairs outputs y (pair p: token p / top_k of x, expert
 * ids[p]) that differs from hmoe_ffn()'s: its pair, with the row and the kernel's value
 * in *row and *want; -1 if every row agrees. */
static int driver_mismatch(const float *y, const float *x, const int *ids, int n_pairs,
			   int top_k, struct hmoe_fxp_line *const *packs, int mode, int dim,
			   int inter, struct hmoe_ffn_scratch *s, int *row, float *want)
{
	static int8_t xq[HMOE_FXP_MAX_PLANES * HMOE_FXP_MAX_DIM];
	static int32_t xs[HMOE_FXP_MAX_IN_GROUPS], yref[HMOE_FXP_MAX_DIM];

	for (int p = 0; p < n_pairs; p++) {
		hmoe_fxp_quant_x(x + (size_t)(p / top_k) * dim, dim, hmoe_fxp_mode_planes(mode),
				 xq, xs);
		hmoe_ffn(packs[ids[p]], xq, xs, yref, s, mode, 1, dim, inter);
		for (int n = 0; n < dim; n++)
			if (y[(size_t)p * dim + n] != hmoe_fxp_out_to_f32(yref[n])) {
				*row = n;
				*want = hmoe_fxp_out_to_f32(yref[n]);
				return p;
			}
	}
	return -1;
}

/* The threaded MoE driver with one variant vs hmoe_ffn() per (token, slot). */
static void check_moe(int mode, const struct hmoe_fxp_simd *simd)
{
	enum { N_EXPERTS = 5, TOP_K = 3, N_TOKENS = 37, DIM = 200, INTER = 136 };
	int format = hmoe_fxp_mode_format(mode), planes = hmoe_fxp_mode_planes(mode), bad, row;
	float want;
	struct hmoe_fxp_line *packs[N_EXPERTS];
	struct hmoe_fxp_experts ex = { .mode = mode, .dim = DIM, .inter = INTER,
				       .n_experts = N_EXPERTS,
				       .packs = (const struct hmoe_fxp_line *const *)packs };
	static float x[N_TOKENS * DIM], y[N_TOKENS * TOP_K * DIM];
	static int ids[N_TOKENS * TOP_K];
	struct hmoe_ffn_scratch *s = malloc(sizeof(*s));
	struct hmoe_pool *pool = NULL;

	for (int e = 0; e < N_EXPERTS; e++)
		packs[e] = random_pack(format, DIM, INTER);
	for (int i = 0; i < N_TOKENS * DIM; i++)
		x[i] = ((float)(rnd() % 2001) - 1000.0f) / 300.0f;
	for (int i = 0; i < N_TOKENS * TOP_K; i++)
		ids[i] = i % TOP_K == 0 ? 1 : (int)(rnd() % N_EXPERTS);  /* expert 1 gets > 32 */
	hmoe_pool_create(&pool, 2);
	if (hmoe_fxp_moe_run(&ex, simd, pool, NULL, N_TOKENS, TOP_K, x, ids, y)) {
		printf("FAIL moe_run returned an error\n");
		failures++;
	}
	bad = failures ? -1 : driver_mismatch(y, x, ids, N_TOKENS * TOP_K, TOP_K, packs, mode,
					      DIM, INTER, s, &row, &want);
	if (bad >= 0) {
		printf("FAIL moe_run %s %s pair %d row %d: %g vs kernel %g\n", simd->name,
		       hmoe_fxp_format_name(mode), bad, row, y[(size_t)bad * DIM + row], want);
		failures++;
	}
	/* Activations quantised elsewhere (the GPU's quantiser writes the same bytes) give
	 * the same outputs, and are really used: changing one plane changes them. */
	{
		int dg = hmoe_fxp_groups(DIM);
		size_t row = (size_t)planes * dg * HMOE_FXP_GROUP;
		int8_t *tq = calloc((size_t)N_TOKENS, row);
		int32_t *ts = calloc((size_t)N_TOKENS * dg, sizeof(int32_t));
		static float y2[N_TOKENS * TOP_K * DIM];

		for (int t = 0; t < N_TOKENS; t++)
			hmoe_fxp_quant_x(x + t * DIM, DIM, planes, tq + t * row, ts + t * dg);
		if (hmoe_fxp_moe_run_q(&ex, simd, pool, NULL, N_TOKENS, TOP_K,
				       NULL, tq, ts, ids, y2) ||
		    memcmp(y, y2, sizeof(y))) {
			printf("FAIL moe_run_q %s: pre-quantised activations give other outputs\n",
			       hmoe_fxp_format_name(mode));
			failures++;
		}
		tq[0] = (int8_t)(tq[0] == 100 ? 99 : 100);
		if (hmoe_fxp_moe_run_q(&ex, simd, pool, NULL, N_TOKENS, TOP_K,
				       NULL, tq, ts, ids, y2) || !memcmp(y, y2, sizeof(y))) {
			printf("FAIL moe_run_q %s: the pre-quantised activations were not used\n",
			       hmoe_fxp_format_name(mode));
			failures++;
		}
		free(tq);
		free(ts);
	}
	/* More threads than this machine may have CPUs (the pool then does not spin, and a
	 * tile's work items wait for earlier ones on threads that must be scheduled first),
	 * one workspace kept across calls of different sizes: the same bytes. */
	{
		struct hmoe_pool *many = NULL;
		struct hmoe_fxp_ws *ws = NULL;
		static float y3[N_TOKENS * TOP_K * DIM];

		hmoe_pool_create(&many, 7);
		for (int rep = 0; rep < 3; rep++) {
			int n = rep == 1 ? 1 : N_TOKENS;

			memset(y3, 0, sizeof(y3));
			if (hmoe_fxp_moe_run(&ex, simd, many, &ws, n, TOP_K, x, ids, y3) ||
			    memcmp(y, y3, sizeof(float) * n * TOP_K * DIM)) {
				printf("FAIL moe_run %s %s, 7 threads, call %d (%d tokens): other "
				       "outputs than with 2 threads\n", simd->name,
				       hmoe_fxp_format_name(mode), rep, n);
				failures++;
			}
		}
		hmoe_fxp_ws_free(ws);
		hmoe_pool_destroy(many);
	}
	/* The in-cache rate of bench experts runs the one-token paths over a resident pack
	 * (a rate > 0), and refuses an expert that is not resident with an error. */
	{
		double rate = -1;
		struct hmoe_fxp_line *keep = packs[2];
		long blocks = hmoe_fxp_amx_emu_blocks;

		if (hmoe_fxp_hot_rate(&ex, simd, pool, 0, 0, &rate) || !(rate > 0)) {
			printf("FAIL hot_rate %s %s: no rate (%g)\n", simd->name,
			       hmoe_fxp_format_name(mode), rate);
			failures++;
		}
		/* int8 through amx-emu counts the 16-row blocks: every pass is the documented
		 * 32 rows of W1 and of W3 and 128 rows of W2, 2 + 2 + 8 blocks, which the rate's
		 * byte count assumes */
		blocks = hmoe_fxp_amx_emu_blocks - blocks;
		if (simd == &hmoe_fxp_simd_amx_emu && format == HMOE_FXP_INT8 &&
		    (blocks <= 0 || blocks % 12)) {
			printf("FAIL hot_rate amx-emu %s: %ld tile blocks, not whole passes of 12\n",
			       hmoe_fxp_format_name(mode), blocks);
			failures++;
		}
		packs[2] = NULL;
		if (hmoe_fxp_hot_rate(&ex, simd, pool, 2, 0, &rate) != -HMOE_EINPUT || rate != 0 ||
		    hmoe_fxp_hot_rate(&ex, simd, pool, N_EXPERTS, 0, &rate) != -HMOE_EINPUT ||
		    !strstr(hmoe_last_error(), "not resident")) {
			printf("FAIL hot_rate %s: a missing expert was not refused\n",
			       hmoe_fxp_format_name(mode));
			failures++;
		}
		packs[2] = keep;
	}
	hmoe_pool_destroy(pool);
	for (int e = 0; e < N_EXPERTS; e++)
		free(packs[e]);
	free(s);
}

/* One-token layer calls, whose work items the driver makes larger for int8, int4 and
 * fp8-a8 without remainder lists on a variant with four-row kernels (the plan's
 * one_token_items and one_token_items_int4, docs/fxp.md section 3): each of 8 experts
 * gets the token once, with rows that do not fill the last up and down items (inter
 * 2040, enough for int4's 16x on 2 threads; dim 600), and every output equals
 * hmoe_ffn()'s; the calls took the items the plan gives (a call whose tiles hold two
 * tokens, fp8 A16, and fp8-a8 where the plan gives it the lists: the usual ones), so
 * the larger items' row ranges, and their runs of quads, are what was checked. */
static void check_moe_items(int mode, const struct hmoe_fxp_simd *simd)
{
	enum { N_EXPERTS = 8, TOP_K = 8, DIM = 600, INTER = 2040 };
	int format = hmoe_fxp_mode_format(mode);
	struct hmoe_fxp_line *packs[N_EXPERTS];
	struct hmoe_fxp_experts ex = { .mode = mode, .dim = DIM, .inter = INTER,
				       .n_experts = N_EXPERTS,
				       .packs = (const struct hmoe_fxp_line *const *)packs };
	static float x[2 * DIM], y[2 * TOP_K * DIM];
	static int ids[2 * TOP_K];
	struct hmoe_ffn_scratch *s = malloc(sizeof(*s));
	struct hmoe_pool *pool = NULL;
	struct hmoe_fxp_ws *ws = NULL;
	int rows[2], scale = format == HMOE_FXP_INT4 ? hmoe_fxp_plan()->one_token_items_int4 :
						      hmoe_fxp_plan()->one_token_items;
	/* fp8: one-token A8 calls by three digits (no lists here, and none by the plan) */
	int large = (format != HMOE_FXP_FP8 || (hmoe_fxp_mode_planes(mode) == 1 &&
						 !hmoe_fxp_plan()->fp8_a8_lists)) &&
		    simd->row_acc4;

	for (int e = 0; e < N_EXPERTS; e++)
		packs[e] = random_pack(format, DIM, INTER);
	for (int i = 0; i < 2 * DIM; i++)
		x[i] = ((float)(rnd() % 2001) - 1000.0f) / 300.0f;
	for (int i = 0; i < 2 * TOP_K; i++)
		ids[i] = (i * 3) % N_EXPERTS;  /* each token to every expert, in another order */
	hmoe_pool_create(&pool, 2);
	/* dims past the kernel's bounds: one error naming them, nothing written */
	for (int d = 0; d < 2; d++) {
		struct hmoe_fxp_experts wide = ex;

		*(d ? &wide.inter : &wide.dim) = d ? HMOE_FXP_MAX_INTER + 1 : 0;
		y[0] = 7.0f;
		if (hmoe_fxp_moe_run(&wide, simd, pool, &ws, 1, TOP_K, x, ids, y) != -HMOE_EINPUT ||
		    !strstr(hmoe_last_error(), "outside the kernel's") || y[0] != 7.0f) {
			printf("FAIL moe_run %s %s: dims %d x %d not refused\n", simd->name,
			       hmoe_fxp_format_name(mode), wide.dim, wide.inter);
			failures++;
		}
	}
	for (int n = 1; n <= 2; n++) {
		int want_up = n == 1 && large ? 32 * scale : 32, bad, row;
		float want;

		memset(y, 0, sizeof(y));
		if (hmoe_fxp_moe_run(&ex, simd, pool, &ws, n, TOP_K, x, ids, y)) {
			printf("FAIL moe_run %s %s, %d tokens: an error\n", simd->name,
			       hmoe_fxp_format_name(mode), n);
			failures++;
			break;
		}
		hmoe_fxp_ws_item_rows(ws, rows);
		if (rows[0] != want_up || rows[1] != 4 * want_up) {
			printf("FAIL moe_run %s %s, %d tokens: work items of %d / %d rows, want %d / "
			       "%d\n", simd->name, hmoe_fxp_format_name(mode), n, rows[0], rows[1],
			       want_up, 4 * want_up);
			failures++;
		}
		bad = driver_mismatch(y, x, ids, n * TOP_K, TOP_K, packs, mode, DIM, INTER, s, &row,
				      &want);
		if (bad >= 0) {
			printf("FAIL moe_run %s %s, %d tokens, items of %d rows: pair %d row %d: %g "
			       "vs kernel %g\n", simd->name, hmoe_fxp_format_name(mode), n, rows[0],
			       bad, row, y[(size_t)bad * DIM + row], want);
			failures++;
		}
	}
	hmoe_fxp_ws_free(ws);
	hmoe_pool_destroy(pool);
	for (int e = 0; e < N_EXPERTS; e++)
		free(packs[e]);
	free(s);
}

/* The layer driver with fp8 remainder lists (struct hmoe_fxp_fp8_fix): one-token calls
 * (rows four at a time, W1/W3 rows of 9 groups: a block of 8 and a tail; W2 rows of 8)
 * give hmoe_ffn()'s outputs with lists built from each pack, for uniformly random and
 * checkpoint-like codes; the in-cache rate runs with them; lists of other dims are
 * refused by both; and the builder keeps to its limit. A wrong row record number would
 * pair a row with another row's list. */
static void check_moe_fix(void)
{
	/* 9 input groups (a block of 8 and a tail) and 8 with a partial last one; the last
	 * work items (9 W1/W3 rows, 78 W2 rows) do not split into the four-row streams, so
	 * their multi-token tiles take the other paths with the lists at hand */
	enum { N_EXPERTS = 3, TOP_K = 2, DIM = 1102, INTER = 1001 };
	int64_t lin = hmoe_fxp_linear_lines(HMOE_FXP_FP8, INTER, DIM);
	struct hmoe_fxp_line *packs[N_EXPERTS] = { NULL };
	struct hmoe_fxp_fp8_fix *fixes[N_EXPERTS] = { NULL };
	struct hmoe_ffn_scratch *s = malloc(sizeof(*s));
	struct hmoe_pool *pool = NULL;
	enum { MAX_T = 9 };
	static float x[MAX_T * DIM], y[MAX_T * TOP_K * DIM];
	int ids[MAX_T * TOP_K];

	hmoe_pool_create(&pool, 2);
	for (int i = 0; i < MAX_T * DIM; i++)
		x[i] = ((float)(rnd() % 2001) - 1000.0f) / 300.0f;
	/* every token to expert 2, and to 0 or (tokens 1 and 4) 1: with T tokens, tiles of
	 * T (four rows at a time by two bytes, decoded once per pass of up to
	 * HMOE_FXP_ROWS4_TOKENS), and of T - 2 or so */
	for (int t = 0; t < MAX_T; t++) {
		ids[t * TOP_K] = 2;
		ids[t * TOP_K + 1] = t == 1 || t == 4 ? 1 : 0;
	}
	for (int gauss = 0; gauss <= 1; gauss++)
		for (int a16 = 0; a16 <= 1; a16++) {
			int mode = a16 ? HMOE_FXP_FP8 | HMOE_FXP_A16 : HMOE_FXP_FP8;
			struct hmoe_fxp_experts ex = {
				.mode = mode, .dim = DIM, .inter = INTER, .n_experts = N_EXPERTS,
				.packs = (const struct hmoe_fxp_line *const *)packs,
				.fixes = (const struct hmoe_fxp_fp8_fix *const *)fixes };

			for (int e = 0; e < N_EXPERTS; e++) {
				uint8_t *p = (uint8_t *)random_pack(HMOE_FXP_FP8, DIM, INTER);

				if (gauss) {
					fill_fix_codes(p, DIM, 2 * INTER, FIX_GAUSS);
					fill_fix_codes(p + 2 * lin * HMOE_FXP_LINE_BYTES, INTER, DIM,
						       FIX_GAUSS);
				}
				packs[e] = (struct hmoe_fxp_line *)p;
				fixes[e] = hmoe_fxp_fp8_fix_build(packs[e], DIM, INTER, 0);
				if (!fixes[e]) {
					printf("FAIL fp8 remainder lists: not built\n");
					failures++;
					goto out;
				}
			}
			for (int T = 1; T <= MAX_T; T++) {
				if (hmoe_fxp_moe_run(&ex, hmoe_fxp_simd_best(), pool, NULL, T, TOP_K,
						     x, ids, y)) {
					printf("FAIL moe_run with fp8 remainder lists returned an "
					       "error\n");
					failures++;
				}
				int row, p;
				float want;

				p = driver_mismatch(y, x, ids, T * TOP_K, TOP_K, packs, mode, DIM, INTER,
						    s, &row, &want);
				if (p >= 0) {
					printf("FAIL moe_run %s with remainder lists (%s codes), %d "
					       "tokens, token %d slot %d row %d: %g vs kernel %g\n",
					       hmoe_fxp_format_name(mode), gauss ? "gaussian" : "random",
					       T, p / TOP_K, p % TOP_K, row, y[(size_t)p * DIM + row],
					       want);
					failures++;
				}
			}
			if (gauss && a16) {
				/* lists of another pack's dims are refused, not read */
				struct hmoe_fxp_fp8_fix *keep = fixes[2];
				struct hmoe_fxp_fp8_fix *other = hmoe_fxp_fp8_fix_build(
					packs[0], DIM - 128, INTER, 0);

				double rate = 0;

				/* bench experts' in-cache rate runs the same path with the lists */
				if (hmoe_fxp_hot_rate(&ex, hmoe_fxp_simd_best(), pool, 2, 0, &rate) ||
				    !(rate > 0)) {
					printf("FAIL hot_rate with remainder lists: no rate (%g)\n",
					       rate);
					failures++;
				}
				fixes[2] = other;
				if (!other ||
				    hmoe_fxp_moe_run(&ex, hmoe_fxp_simd_best(), pool, NULL, 1, TOP_K,
						     x, ids, y) != -HMOE_EINPUT ||
				    hmoe_fxp_hot_rate(&ex, hmoe_fxp_simd_best(), pool, 2, 0, &rate) !=
					    -HMOE_EINPUT) {
					printf("FAIL moe_run or hot_rate took remainder lists of other "
					       "dims\n");
					failures++;
				}
				hmoe_fxp_fp8_fix_free(other);
				fixes[2] = keep;
			}
			if (a16) {
				/* the limit: random codes go past one entry per 64 weights,
				 * checkpoint-like ones stay far below it */
				struct hmoe_fxp_fp8_fix *lim = hmoe_fxp_fp8_fix_build(
					packs[0], DIM, INTER, HMOE_FXP_FP8_FIX_LIMIT(DIM, INTER));

				if (!lim != !gauss) {
					printf("FAIL fp8 remainder lists of %s codes %s by the "
					       "limit\n", gauss ? "gaussian" : "random",
					       gauss ? "refused" : "not refused");
					failures++;
				}
				hmoe_fxp_fp8_fix_free(lim);
			}
out:
			for (int e = 0; e < N_EXPERTS; e++) {
				hmoe_fxp_fp8_fix_free(fixes[e]);
				free(packs[e]);
				fixes[e] = NULL;
				packs[e] = NULL;
			}
		}
	hmoe_pool_destroy(pool);
	free(s);
}

/* row_acc4 called directly (the four-row kernels of the best variant) and the driver
 * with fp8 remainder lists; returns the number of cases. Also run alone by --rows4-only,
 * which fxp/simd-fp8-lookups runs with each fp8 lookup of the plan
 * (HMOE_FXP_FP8_PERMI2B). */
static int check_rows4(void)
{
	int cases = 0;

	/* row_acc4 directly: blocks of 8 groups (fp8) and 4 (int) with tails, V3's dims */
	if (hmoe_fxp_simd_best()->row_acc4) {
		static const int ins[] = { 1300, 1100, 640, HMOE_FXP_MAX_DIM, HMOE_FXP_MAX_INTER };

		for (int a16 = 0; a16 <= 1; a16++)
			for (int f = 0; f < HMOE_FXP_N_FORMATS; f++)
				for (size_t i = 0; i < sizeof(ins) / sizeof(ins[0]); i++)
					for (int m128 = 0; m128 <= 1; m128++)
						for (int fm = FIX_NONE; fm <= FIX_BIG; fm++) {
							if (f != HMOE_FXP_FP8 && fm != FIX_NONE)
								continue;
							check_row_acc4(hmoe_fxp_simd_best(),
								       a16 ? f | HMOE_FXP_A16 : f,
								       ins[i], m128, fm, 1, 0);
							cases++;
						}
		/* off-contract scales: every kernel's scalar terms, fp8 with and without lists */
		for (int a16 = 0; a16 <= 1; a16++)
			for (int f = 0; f < HMOE_FXP_N_FORMATS; f++)
				for (int fm = FIX_NONE; fm <= FIX_BIG; fm++)
					for (int T = 1; T <= 3; T += 2) {
						if ((f != HMOE_FXP_FP8 && fm != FIX_NONE) ||
						    (T > 1 && fm == FIX_NONE))
							continue;
						check_row_acc4(hmoe_fxp_simd_best(),
							       a16 ? f | HMOE_FXP_A16 : f,
							       HMOE_FXP_MAX_DIM, 0, fm, T, 1);
						cases++;
					}
		/* fp8 with remainder lists takes up to HMOE_FXP_ROWS4_TOKENS tokens, decoded
		 * once; the rest (and one more token) are declined */
		for (int a16 = 0; a16 <= 1; a16++)
			for (int f = 0; f < HMOE_FXP_N_FORMATS; f++)
				for (int T = 2; T <= HMOE_FXP_ROWS4_TOKENS + 1; T++)
					for (int fm = FIX_NONE; fm <= FIX_BIG; fm++) {
						int in = T == 3 ? 1300 : T == 2 ? HMOE_FXP_MAX_DIM
									       : HMOE_FXP_MAX_INTER;

						if (f != HMOE_FXP_FP8 && fm != FIX_NONE)
							continue;
						check_row_acc4(hmoe_fxp_simd_best(),
							       a16 ? f | HMOE_FXP_A16 : f, in, 0, fm,
							       T, 0);
						check_row_acc4(hmoe_fxp_simd_best(),
							       a16 ? f | HMOE_FXP_A16 : f, 1100,
							       T == 4, fm, T, 0);
						cases += 2;
					}
		check_moe_fix();
		cases++;
	} else {
		printf("SKIP row_acc4: the %s variant has none\n", hmoe_fxp_simd_best()->name);
	}
	return cases;
}

/* --moe-only: only the layer driver (every mode, the automatic variant), for the
 * ThreadSanitizer run of tests/fxp/tsan.sh, where the full test takes half an hour. */
static int moe_only(void)
{
	for (int a16 = 1; a16 >= 0; a16--)
		for (int f = 0; f < HMOE_FXP_N_FORMATS; f++) {
			check_moe(a16 ? f | HMOE_FXP_A16 : f, hmoe_fxp_simd_best());
			check_moe_items(a16 ? f | HMOE_FXP_A16 : f, hmoe_fxp_simd_best());
		}
	check_moe_fix();
	printf("moe_run, every mode on %s: %d failures\n", hmoe_fxp_simd_best()->name, failures);
	return failures ? 1 : 0;
}

/* The four-row kernels' branch-free Q16 conversion (hmoe_fxp_acc_to_q16_nb) against the
 * hls reference hmoe_fxp_acc_to_q16, value by value: the int64 extremes, both sides
 * of every rounding half and of the int32 saturation, and random values of every
 * magnitude. Returns the cases. */
static int check_acc_to_q16_nb(void)
{
	enum { N = 4096 };
	static int64_t acc[N];
	static const int64_t edge[] = { INT64_MIN, INT64_MAX, 0, 1, -1, 127, -127, 128, -128,
					129, -129, 383, -384, (int64_t)HMOE_FXP_INT32_MAX * 256,
					-(int64_t)HMOE_FXP_INT32_MAX * 256,
					(int64_t)HMOE_FXP_INT32_MIN * 256 };
	int n = 0, bad = 0;

	for (size_t i = 0; i < sizeof(edge) / sizeof(edge[0]); i++)
		for (int d = -2; d <= 2; d++)  /* edge + d, short of wrapping */
			if (!((d > 0 && edge[i] > INT64_MAX - d) || (d < 0 && edge[i] < INT64_MIN - d)))
				acc[n++] = edge[i] + d;
	while (n < N) {  /* random magnitudes up to 2^63 */
		uint64_t v = (uint64_t)rnd() << 32 | rnd();
		int64_t a = (int64_t)(v >> (rnd() % 64));

		acc[n++] = rnd() & 1 && a != INT64_MIN ? -a : a;
	}
	for (int i = 0; i < N; i++)
		if (hmoe_fxp_acc_to_q16_nb(acc[i]) != hmoe_fxp_acc_to_q16(acc[i]) && bad++ < 5)
			printf("FAIL hmoe_fxp_acc_to_q16_nb(%lld) = %d, hmoe_fxp_acc_to_q16 %d\n",
			       (long long)acc[i], hmoe_fxp_acc_to_q16_nb(acc[i]),
			       hmoe_fxp_acc_to_q16(acc[i]));
	failures += bad;
	return N;
}

/* A variant's own SwiGLU and quantiser (struct hmoe_fxp_simd's swiglu, quant_group,
 * each where it has one) against the hls functions, value by value: gates swept across
 * the sigmoid table's range and past it (every entry's interval, the saturation edges,
 * the int32 extremes) with random up values, in calls of every length 1-67 (tails of a
 * vector) that must not write past n; groups of 0-128 values (and more, clamped) in both
 * plane counts, with every magnitude from 1 bit to the int64 extremes, all zero, one huge
 * value among small ones, a maximum at m's and k's edges, and k < 0 (small groups): the
 * same bytes, scale word, and nothing written past n. Returns the cases. */
static int check_swiglu_quant(const struct hmoe_fxp_simd *simd)
{
	enum { NG = 4 * (HMOE_FXP_SIG_RANGE_Q16 / 37) + 64 };
	static int32_t gate[NG], up[NG];
	static int64_t h[NG + 8];
	int ng = 0, cases = 0, bad = 0;

	for (int64_t a = -2 * (int64_t)HMOE_FXP_SIG_RANGE_Q16; a <= 2 * HMOE_FXP_SIG_RANGE_Q16;
	     a += 37)
		gate[ng++] = (int32_t)a;
	{
		static const int32_t edge[] = { HMOE_FXP_INT32_MIN, HMOE_FXP_INT32_MAX, 0, 1, -1,
						HMOE_FXP_SIG_RANGE_Q16, HMOE_FXP_SIG_RANGE_Q16 - 1,
						-HMOE_FXP_SIG_RANGE_Q16,
						-HMOE_FXP_SIG_RANGE_Q16 - 1,
						-HMOE_FXP_SIG_RANGE_Q16 + 1, 2047, 2048, -2048 };

		for (size_t i = 0; i < sizeof(edge) / sizeof(edge[0]); i++)
			gate[ng++] = edge[i];
	}
	for (int i = 0; i < ng; i++)
		up[i] = i % 97 == 0 ? HMOE_FXP_INT32_MIN : i % 89 == 0 ? HMOE_FXP_INT32_MAX :
			(int32_t)rnd();
	for (int i0 = 0, len = 1; simd->swiglu && i0 < ng; i0 += len, len = len % 67 + 1) {
		int n = ng - i0 < len ? ng - i0 : len;

		h[n] = 0x5a5a5a5a5a5a5a5a;
		simd->swiglu(gate + i0, up + i0, n, h);
		for (int i = 0; i < n; i++)
			if (h[i] != hmoe_fxp_swiglu_q32(gate[i0 + i], up[i0 + i]) && bad++ < 5)
				printf("FAIL %s swiglu(%d, %d) = %lld, hls %lld\n", simd->name,
				       gate[i0 + i], up[i0 + i], (long long)h[i],
				       (long long)hmoe_fxp_swiglu_q32(gate[i0 + i], up[i0 + i]));
		if (h[n] != 0x5a5a5a5a5a5a5a5a && bad++ < 5)
			printf("FAIL %s swiglu of %d values wrote past them\n", simd->name, n);
		cases += n;
	}
	for (int trial = 0; simd->quant_group && trial < 6000; trial++) {
		int64_t v[HMOE_FXP_GROUP + 8];
		int8_t hi[2][HMOE_FXP_GROUP + 8], lo[2][HMOE_FXP_GROUP + 8];
		int planes = 1 + trial % 2, kind = trial / 2 % 6, n = (int)(rnd() % 137);
		int bits = (int)(rnd() % 64);
		int32_t w[2];

		if (trial % 50 < 6)  /* the sizes around a vector, and whole groups */
			n = (int[]){ 0, 1, 8, 9, 127, 128 }[trial % 50];
		for (int i = 0; i < HMOE_FXP_GROUP + 8; i++) {
			uint64_t r = (uint64_t)rnd() << 32 | rnd();
			int64_t a = bits ? (int64_t)(r >> (64 - bits)) : 0;

			v[i] = kind == 1 ? 0 : kind == 2 ? (i == 7 ? INT64_MIN : (int64_t)(r >> 40))
			     : kind == 3 ? (i % 5 ? 3 : -((int64_t)1 << 62) - (int64_t)(r & 1))
			     : kind == 4 ? (int64_t)(r >> 52)  /* small: k < 0 */
			     : rnd() & 1 ? -a : a;
			if (kind == 5)  /* the maximum at qmax * 255 * 2^k, or one past it */
				v[i] = i == 3 ? (int64_t)((planes == 2 ? HMOE_FXP_ACT2_QMAX :
							   HMOE_FXP_ACT_QMAX) * 255)
						<< (bits % 40) : (int64_t)(r >> 44);
			if (kind == 5 && i == 3 && trial % 4 == 1)
				v[i] += 1;
			if (trial % 7 == 0 && i == 2)
				v[i] = INT64_MAX;
		}
		memset(hi, 0x5a, sizeof(hi));
		memset(lo, 0x5a, sizeof(lo));
		w[0] = hmoe_fxp_quant_group(v, n, planes, hi[0], planes == 2 ? lo[0] : NULL);
		w[1] = simd->quant_group(v, n, planes, hi[1], planes == 2 ? lo[1] : NULL);
		if ((w[0] != w[1] || memcmp(hi[0], hi[1], sizeof(hi[0])) ||
		     memcmp(lo[0], lo[1], sizeof(lo[0]))) && bad++ < 5)
			printf("FAIL %s quant_group (trial %d, kind %d, %d values, %d planes, %d "
			       "bits): scale %#x, hls %#x, or bytes differ\n", simd->name, trial,
			       kind, n, planes, bits, (unsigned)w[1], (unsigned)w[0]);
		cases++;
	}
	failures += bad;
	return cases;
}

int main(int argc, char **argv)
{
	static const int dims[][3] = { /* dim, inter, tokens */
		{ 200, 72, 3 }, { 128, 128, 1 }, { 1000, 300, 7 }, { 64, 40, 32 }, { 384, 256, 5 },
		{ 1000, 300, 17 }, { 200, 72, 13 }, /* token lanes: chunks of 16 + 1, and of 13 */
		{ 264, 136, 10 }, { 200, 72, 24 },  /* fp8 A16 paired chunks: 8 + 2, 16 + 8 (and 7) */
		/* x past 32 KiB: int rows four at a time (row_dots4), up pass in both modes
		 * with an odd row left to the pairs, down pass in A16 with two rows left */
		{ 4608, 71, 9 }, { 258, 2048, 9 },
		/* one token, four rows at a time (row_acc4): blocks of 4 groups with tails
		 * (11 and 9 groups, also past row_terms' 8 and its scales split in registers),
		 * with a tail of 1 group, and an odd row count that falls back to pairs */
		{ 1300, 1100, 1 }, { 640, 520, 1 }, { 384, 255, 1 },
	};
	int cases = 0;

#ifdef M_PERTURB
	/* glibc: every allocation comes filled with a pattern. The kernel's calls allocate
	 * their tiles and free them, and the next call of the same shape would otherwise get
	 * the previous variant's h and y back, so that rows a variant skipped would pass. */
	mallopt(M_PERTURB, 0xa5);
#endif
	if (argc > 1 && !strcmp(argv[1], "--moe-only"))
		return moe_only();
	if (argc > 1 && !strcmp(argv[1], "--rows4-only")) {
		if (!hmoe_fxp_simd_fp8_lists(hmoe_fxp_simd_best())) {
			printf("SKIP fp8 lookups: the %s variant has no VBMI fp8 kernels here\n",
			       hmoe_fxp_simd_best()->name);
			return 77;
		}
		cases = check_rows4();
		printf("row_acc4 on %s (fp8 lookups: %s): %d cases, %d failures\n",
		       hmoe_fxp_simd_best()->name,
		       hmoe_fxp_plan()->fp8_permi2b ? "vpermi2b" : "vpermb", cases, failures);
		return failures ? 1 : 0;
	}
	if (argc > 1) {
		fprintf(stderr, "usage: test_fxp_simd [--moe-only | --rows4-only]\n");
		return 2;
	}
	printf("variant chosen here: %s\n", hmoe_fxp_simd_best()->name);
	{
		const struct hmoe_fxp_simd *x86[] = { &hmoe_fxp_simd_avx2, &hmoe_fxp_simd_avxvnni,
						      &hmoe_fxp_simd_avx512 };

		for (size_t i = 0; i < sizeof(x86) / sizeof(x86[0]); i++)
			if (!x86[i]->supported())
				printf("SKIP %s against the kernel: not supported on this CPU\n",
				       x86[i]->name);
	}
	for (int a16 = 1; a16 >= 0; a16--)
		for (int f = 0; f < HMOE_FXP_N_FORMATS; f++) {
			int mode = a16 ? f | HMOE_FXP_A16 : f;

			for (size_t d = 0; d < sizeof(dims) / sizeof(dims[0]); d++)
				for (int wm = 0; wm <= W_GARBAGE; wm++)
					for (int xm = 0; xm <= X_SOME_M128; xm++) {
						/* W_MAX: scales 2^12 too large, so terms saturate */
						check_case(mode, dims[d][0], dims[d][1], dims[d][2], wm,
							   xm, wm == W_MAX ? -12 : 0);
						cases++;
					}
			check_moe(mode, hmoe_fxp_simd_best());
			check_moe_items(mode, hmoe_fxp_simd_best());
			if (hmoe_fxp_simd_amx_emu.supported())
				check_moe(mode, &hmoe_fxp_simd_amx_emu);
			if (hmoe_fxp_simd_amx.supported())
				check_moe(mode, &hmoe_fxp_simd_amx);
		}
	check_term_clamp();
	cases++;
	cases += check_rows4();
	cases += check_acc_to_q16_nb();
	for (size_t i = 0; i < N_VARIANTS; i++)
		if ((variants[i]->swiglu || variants[i]->quant_group) && variants[i]->supported())
			cases += check_swiglu_quant(variants[i]);
		else if (variants[i]->swiglu || variants[i]->quant_group)
			printf("SKIP %s swiglu, quant_group: not supported on this CPU\n",
			       variants[i]->name);
	/* avxvnni's cases above of 9 and more tokens are its token lanes' only if rows went
	 * through them (a variant that declines falls back to exact paths) */
	for (int f = 0; hmoe_fxp_simd_avxvnni.supported() && f < HMOE_FXP_N_FORMATS; f++)
		if (hmoe_fxp_avxvnni_lanes[f] == 0) {
			printf("FAIL avxvnni never ran its token lanes for %s\n",
			       hmoe_fxp_format_name(f | HMOE_FXP_A16));
			failures++;
		}
	/* amx-emu is the AMX kernel only if int8 rows really went through its tiles */
	if (hmoe_fxp_simd_amx_emu.supported() && hmoe_fxp_amx_emu_blocks == 0) {
		printf("FAIL amx-emu never ran its tile kernel\n");
		failures++;
	}
	if (!hmoe_fxp_simd_amx.supported())
		printf("SKIP amx: this CPU or OS has no AMX-INT8 (amx-emu ran its kernel: %s)\n",
		       hmoe_fxp_simd_amx_emu.supported() ? "yes" : "no, no AVX-512 either");
	/* modes the kernel does not know: refused by the kernel and by every variant */
	{
		static const int bad_modes[] = { -1, HMOE_FXP_N_FORMATS, 0x200, 0x180,
						 HMOE_FXP_N_FORMATS | HMOE_FXP_A16 };
		struct hmoe_ffn_scratch *s = malloc(sizeof(*s));
		static uint8_t pack[64 * 1024];
		static int8_t xq[2 * HMOE_FXP_GROUP];
		int32_t xs[1] = { 0 }, y[64];

		for (size_t i = 0; i < sizeof(bad_modes) / sizeof(bad_modes[0]); i++) {
			if (hmoe_ffn((const struct hmoe_fxp_line *)pack, xq, xs, y, s, bad_modes[i], 1,
				     64, 64) != HMOE_FFN_EARGS) {
				printf("FAIL hmoe_ffn accepted mode %#x\n", (unsigned)bad_modes[i]);
				failures++;
			}
			if (!hmoe_fxp_cpu_ffn(&hmoe_fxp_simd_scalar, (const struct hmoe_fxp_line *)pack,
					      xq, xs, y, bad_modes[i], 1, 64, 64)) {
				printf("FAIL hmoe_fxp_cpu_ffn accepted mode %#x\n",
				       (unsigned)bad_modes[i]);
				failures++;
			}
		}
		free(s);
	}
	/* DeepSeek-V3's dims, both modes */
	for (int a16 = 1; a16 >= 0; a16--) {
		check_case(HMOE_FXP_FP8 | (a16 ? HMOE_FXP_A16 : 0), HMOE_FXP_MAX_DIM,
			   HMOE_FXP_MAX_INTER, 1, W_RANDOM, X_ONE_HUGE, 0);
		check_case(HMOE_FXP_INT8 | (a16 ? HMOE_FXP_A16 : 0), HMOE_FXP_MAX_DIM,
			   HMOE_FXP_MAX_INTER, 2, W_MAX, X_EXTREME, -12);
		cases += 2;
	}
	printf("%d cases, %d failures\n", cases, failures);
	return failures ? 1 : 0;
}
