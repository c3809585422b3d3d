/* test_fxp_accuracy: the fixed-point expert against the fp32 reference expert on
 * realistic synthetic data, per kernel mode (weight format x activation planes: A16, the
 * default, and A8): relative L2 error of y over a batch, asserted (thresholds published
 * in docs/fxp.md).
 *
 * Data: an FP8 checkpoint made the way DeepSeek's are (128x128 blocks, scale amax/448)
 * from Gaussian weights (std 1/sqrt(in)) with outlier input channels (x8); activations
 * N(0, 1) with a few very large channels (x30), as after RMSNorm in DeepSeek-V3. The
 * reference is the fp32 expert on the dequantised checkpoint (what cpu-f32 computes),
 * in double. Also reported: the error of the format's weights alone (fp32 compute with
 * the pack's weights), which splits weight error from activation quantisation.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmoe_fxp_cpu.h"
#include "hmoe_fxp_pack.h"
#include "hmoe_num.h"

enum { DIM = 2048, INTER = 1024, N_TOKENS = 16 };

/* Two data sets: plain Gaussian, and Gaussian with outlier channels (weights: input
 * columns k % 512 == 17 scaled x8; activations: channels 5, 900, 1500 scaled x30).
 * Thresholds [planes - 1][format]: what the datapath achieves here (docs/fxp.md) plus
 * about 10%. */
struct dataset {
	const char *name;
	double w_outlier, x_outlier;
	double max_rel_err[HMOE_FXP_MAX_PLANES][HMOE_FXP_N_FORMATS];
};
static const struct dataset datasets[] = {
	/*                  A8: fp8, int8, int4       A16: fp8, int8, int4 */
	{ "gaussian", 1, 1, { { 0.019, 0.023, 0.21 }, { 0.0002, 0.0132, 0.21 } } },
	{ "outliers", 8, 30, { { 0.040, 0.045, 0.31 }, { 0.0003, 0.0200, 0.31 } } },
};

static uint64_t rng = 0x2545f4914f6cdd1dull;
static double uniform(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return ((rng >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static double gauss(void)
{
	return sqrt(-2 * log(uniform())) * cos(2 * M_PI * uniform());
}

/* A checkpoint linear: fp8 codes + scale_inv, and its fp32 dequantisation. */
struct ckpt {
	int out, in;
	uint8_t *codes;
	float *scale, *w;
};

static void make_ckpt(struct ckpt *c, int out, int in, double w_outlier)
{
	int ob = (out + 127) / 128, ib = (in + 127) / 128;

	c->out = out;
	c->in = in;
	c->codes = malloc((size_t)out * in);
	c->scale = calloc((size_t)ob * ib, sizeof(float));
	c->w = malloc(sizeof(float) * out * in);
	for (int n = 0; n < out; n++)
		for (int k = 0; k < in; k++)
			c->w[(size_t)n * in + k] = (float)(gauss() / sqrt(in) * (k % 512 == 17 ? w_outlier : 1));
	for (int n = 0; n < out; n++)
		for (int k = 0; k < in; k++) {
			float *s = &c->scale[(n / 128) * ib + k / 128];

			*s = fmaxf(*s, fabsf(c->w[(size_t)n * in + k]) / 448.0f);
		}
	for (size_t i = 0; i < (size_t)out * in; i++) {
		float s = c->scale[(i / in / 128) * ib + (i % in) / 128];

		c->codes[i] = hmoe_f32_to_fp8_e4m3(c->w[i] / s);
		c->w[i] = hmoe_fp8_e4m3_to_f32(c->codes[i]) * s;
	}
}

/* The weights a pack represents, as floats (for the weight-only error). */
static void unpack(const uint8_t *lin, int format, int out, int in, float *w)
{
	int row_bytes = hmoe_fxp_row_lines(format, in) * HMOE_FXP_LINE_BYTES;
	int scale_bytes = hmoe_fxp_scale_lines(in) * HMOE_FXP_LINE_BYTES;

	for (int n = 0; n < out; n++) {
		const uint8_t *row = lin + (size_t)n * row_bytes, *codes = row + scale_bytes;

		for (int k = 0; k < in; k++) {
			int q = format == HMOE_FXP_FP8 ? hmoe_fxp_fp8_q[codes[k]]
			      : format == HMOE_FXP_INT8 ? (int8_t)codes[k]
			      : ((codes[k / 2] >> (4 * (k % 2))) & 15) - 8;

			w[(size_t)n * in + k] = (float)(q * hmoe_fxp_scale_to_float(
						hmoe_fxp_row_scale(row, k / 128)));
		}
	}
}

static void ref_expert(const float *w1, const float *w3, const float *w2, const float *x,
		       double *y)
{
	static double h[INTER];

	for (int n = 0; n < INTER; n++) {
		double a = 0, b = 0;

		for (int k = 0; k < DIM; k++) {
			a += (double)w1[(size_t)n * DIM + k] * x[k];
			b += (double)w3[(size_t)n * DIM + k] * x[k];
		}
		h[n] = a / (1 + exp(-a)) * b;
	}
	for (int n = 0; n < DIM; n++) {
		double a = 0;

		for (int k = 0; k < INTER; k++)
			a += (double)w2[(size_t)n * INTER + k] * h[k];
		y[n] = a;
	}
}

static void free_ckpt(struct ckpt *c)
{
	free(c->codes);
	free(c->scale);
	free(c->w);
}

static int run_dataset(const struct dataset *d)
{
	struct ckpt w1, w3, w2;
	static float x[N_TOKENS * DIM], yf[N_TOKENS * DIM];
	static double yref[N_TOKENS * DIM], ywq[N_TOKENS * DIM];
	static int8_t xq[HMOE_FXP_MAX_PLANES][HMOE_FXP_MAX_PLANES * N_TOKENS * DIM];
	static int32_t xs[HMOE_FXP_MAX_PLANES][N_TOKENS * DIM / 128], y32[N_TOKENS * DIM];
	float *u1 = malloc(sizeof(float) * DIM * INTER), *u3 = malloc(sizeof(float) * DIM * INTER);
	float *u2 = malloc(sizeof(float) * DIM * INTER);
	int failures = 0;

	make_ckpt(&w1, INTER, DIM, d->w_outlier);
	make_ckpt(&w3, INTER, DIM, d->w_outlier);
	make_ckpt(&w2, DIM, INTER, d->w_outlier);
	for (int i = 0; i < N_TOKENS * DIM; i++)
		x[i] = (float)gauss() * (i % DIM == 5 || i % DIM == 900 || i % DIM == 1500 ? d->x_outlier : 1);
	for (int t = 0; t < N_TOKENS; t++) {
		ref_expert(w1.w, w3.w, w2.w, x + t * DIM, yref + t * DIM);
		for (int p = 1; p <= HMOE_FXP_MAX_PLANES; p++)
			hmoe_fxp_quant_x(x + t * DIM, DIM, p, xq[p - 1] + t * p * DIM,
					 xs[p - 1] + t * DIM / 128);
	}
	for (int f = 0; f < HMOE_FXP_N_FORMATS; f++) {
		int64_t lin = hmoe_fxp_linear_lines(f, INTER, DIM);
		struct hmoe_fxp_line *pack = aligned_alloc(64, 64 * hmoe_fxp_expert_lines(f, DIM, INTER));
		double num_w = 0, den = 0;

		if (hmoe_fxp_pack_fp8(pack, w1.codes, w1.scale, INTER, DIM, f, "w1") ||
		    hmoe_fxp_pack_fp8(pack + lin, w3.codes, w3.scale, INTER, DIM, f, "w3") ||
		    hmoe_fxp_pack_fp8(pack + 2 * lin, w2.codes, w2.scale, DIM, INTER, f, "w2")) {
			printf("FAIL packing %s\n", hmoe_fxp_format_name(f));
			return 1;
		}
		unpack((const uint8_t *)pack, f, INTER, DIM, u1);
		unpack((const uint8_t *)(pack + lin), f, INTER, DIM, u3);
		unpack((const uint8_t *)(pack + 2 * lin), f, DIM, INTER, u2);
		for (int t = 0; t < N_TOKENS; t++)
			ref_expert(u1, u3, u2, x + t * DIM, ywq + t * DIM);
		for (int i = 0; i < N_TOKENS * DIM; i++) {
			num_w += (ywq[i] - yref[i]) * (ywq[i] - yref[i]);
			den += yref[i] * yref[i];
		}
		for (int p = HMOE_FXP_MAX_PLANES; p >= 1; p--) {
			int mode = p == 2 ? f | HMOE_FXP_A16 : f;
			double num = 0, max_err = d->max_rel_err[p - 1][f];

			if (hmoe_fxp_cpu_ffn(hmoe_fxp_simd_best(), pack, xq[p - 1], xs[p - 1], y32,
					     mode, N_TOKENS, DIM, INTER)) {
				printf("FAIL %s: the kernel refused mode %#x\n", d->name, (unsigned)mode);
				return 1;
			}
			for (int i = 0; i < N_TOKENS * DIM; i++) {
				yf[i] = hmoe_fxp_out_to_f32(y32[i]);
				num += (yf[i] - yref[i]) * (yf[i] - yref[i]);
			}
			printf("%s %-7s relative L2 error %.4f%% (weights alone %.4f%%; threshold "
			       "%.2f%%), |y| rms %.3f\n", d->name, hmoe_fxp_format_name(mode),
			       100 * sqrt(num / den), 100 * sqrt(num_w / den), 100 * max_err,
			       sqrt(den / (N_TOKENS * DIM)));
			if (!(sqrt(num / den) <= max_err)) {
				printf("FAIL %s %s: relative L2 error %.4f > %.4f\n", d->name,
				       hmoe_fxp_format_name(mode), sqrt(num / den), max_err);
				failures++;
			}
		}
		free(pack);
	}
	free_ckpt(&w1);
	free_ckpt(&w3);
	free_ckpt(&w2);
	free(u1);
	free(u2);
	free(u3);
	return failures;
}

int main(void)
{
	int failures = 0;

	for (size_t i = 0; i < sizeof(datasets) / sizeof(datasets[0]); i++)
		failures += run_dataset(&datasets[i]);
	return failures ? 1 : 0;
}
