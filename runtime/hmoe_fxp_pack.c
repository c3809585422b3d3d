/* hmoe_fxp_pack: checkpoint tensors -> fixed-point weight packs, and the float edges of
 * the datapath (see hmoe_fxp_pack.h, docs/fxp.md). */
#include "hmoe_fxp_pack.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hmoe_err.h"
#include "hmoe_num.h"

/* By mode: [format][planes - 1]. The A16 modes carry the bare names: they are the
 * default. */
static const char *const mode_names[HMOE_FXP_N_FORMATS][HMOE_FXP_MAX_PLANES] = {
	{ "fp8-a8", "fp8" }, { "int8-a8", "int8" }, { "int4-a8", "int4" },
};

int hmoe_fxp_format_parse(const char *name, int *mode)
{
	for (int f = 0; f < HMOE_FXP_N_FORMATS; f++)
		for (int p = 1; p <= HMOE_FXP_MAX_PLANES; p++)
			if (!strcmp(name, mode_names[f][p - 1])) {
				*mode = p == 2 ? f | HMOE_FXP_A16 : f;
				return 0;
			}
	return hmoe_err(HMOE_EINPUT, "unknown fixed-point format '%s' (known: fp8, int8, int4, "
			"fp8-a8, int8-a8, int4-a8)", name);
}

const char *hmoe_fxp_format_name(int mode)
{
	return hmoe_fxp_mode_valid(mode) ? mode_names[hmoe_fxp_mode_format(mode)]
						     [hmoe_fxp_mode_planes(mode) - 1] : "?";
}

/* ---- scale words ------------------------------------------------------------------- */

int32_t hmoe_fxp_scale_from_float(double s)
{
	int e2;
	double f;
	long m;

	if (!(s > 0))
		return 0;
	f = frexp(s, &e2);                   /* s = f * 2^e2, f in [0.5, 1) */
	m = lrint(f * 65536.0);              /* [2^15, 2^16] */
	if (m == 65536) {
		m = 32768;
		e2++;
	}
	return hmoe_fxp_scale_word((uint32_t)m, 16 - e2);
}

double hmoe_fxp_scale_to_float(int32_t w)
{
	return ldexp((double)hmoe_fxp_scale_m(w), -hmoe_fxp_scale_e(w));
}

/* ---- row records ------------------------------------------------------------------- */

static uint8_t *row_record(struct hmoe_fxp_line *dst, int format, int in, int n)
{
	return (uint8_t *)dst + (size_t)n * hmoe_fxp_row_lines(format, in) * HMOE_FXP_LINE_BYTES;
}

static void put_scale(uint8_t *row, int g, int32_t w)
{
	uint32_t u = (uint32_t)w;

	row[4 * g] = (uint8_t)u;
	row[4 * g + 1] = (uint8_t)(u >> 8);
	row[4 * g + 2] = (uint8_t)(u >> 16);
	row[4 * g + 3] = (uint8_t)(u >> 24);
}

static uint8_t *row_codes(uint8_t *row, int in)
{
	return row + (size_t)hmoe_fxp_scale_lines(in) * HMOE_FXP_LINE_BYTES;
}

/* Squared error of quantising w[0..n) with step s to [-qmax, qmax]. */
static double group_err(const float *w, int n, double s, int qmax)
{
	double err = 0;

	for (int k = 0; k < n; k++) {
		double q = rint(w[k] / s);

		q = q > qmax ? qmax : q < -qmax ? -qmax : q;
		err += (w[k] - q * s) * (w[k] - q * s);
	}
	return err;
}

/* One row of int8 / int4 from floats: per group, the scale amax/qmax (int4: the best of
 * a few clipped scales by squared error), rounded to a scale word first so the codes
 * are quantised with exactly the scale the kernel uses. */
static void pack_row_int(uint8_t *row, const float *w, int in, int format)
{
	int qmax = format == HMOE_FXP_INT4 ? 7 : 127;
	uint8_t *codes = row_codes(row, in);

	for (int g = 0; g < hmoe_fxp_groups(in); g++) {
		int k0 = g * HMOE_FXP_GROUP, n = in - k0 < HMOE_FXP_GROUP ? in - k0 : HMOE_FXP_GROUP;
		double amax = 0, s, best_err = -1;
		int32_t word = 0;

		for (int k = 0; k < n; k++)
			amax = fmax(amax, fabs(w[k0 + k]));
		if (amax > 0) {
			/* Clip ratios tried for int4 (1.0 only for int8). */
			static const double clips[] = { 1.0, 0.95, 0.9, 0.85, 0.8, 0.75 };
			int n_clips = format == HMOE_FXP_INT4 ? 6 : 1;

			for (int c = 0; c < n_clips; c++) {
				int32_t cand = hmoe_fxp_scale_from_float(amax * clips[c] / qmax);
				double err = group_err(w + k0, n, hmoe_fxp_scale_to_float(cand), qmax);

				if (best_err < 0 || err < best_err) {
					best_err = err;
					word = cand;
				}
			}
		}
		put_scale(row, g, word);
		s = hmoe_fxp_scale_to_float(word);
		for (int k = 0; k < HMOE_FXP_GROUP; k++) {
			double q = 0;

			if (k < n && s > 0) {
				q = rint(w[k0 + k] / s);
				q = q > qmax ? qmax : q < -qmax ? -qmax : q;
			}
			if (format == HMOE_FXP_INT8) {
				codes[k0 + k] = (uint8_t)(int8_t)q;
			} else {
				uint8_t nib = (uint8_t)((int)q + 8);
				/* column k of a group: byte k % 64, high nibble from k = 64 on */
				uint8_t *b = &codes[k0 / 2 + k % (HMOE_FXP_GROUP / 2)];

				*b = (uint8_t)(k >= HMOE_FXP_GROUP / 2 ? (*b & 0x0f) | nib << 4
								      : (*b & 0xf0) | nib);
			}
		}
	}
}

int hmoe_fxp_pack_fp8(struct hmoe_fxp_line *dst, const uint8_t *codes, const float *scale_inv,
		      int out, int in, int format, const char *what)
{
	int in_blocks = (in + 127) / 128;
	float *tmp = NULL;

	if (!hmoe_fxp_mode_valid(format))
		return hmoe_err(HMOE_EINPUT, "%s: bad fixed-point format %d", what, format);
	format = hmoe_fxp_mode_format(format);
	for (int64_t i = 0; i < (int64_t)out * in; i++)
		if ((codes[i] & 0x7f) == 0x7f)
			return hmoe_err(HMOE_EINPUT, "%s: FP8 NaN code 0x%02x at row %lld column %lld",
					what, codes[i], (long long)(i / in), (long long)(i % in));
	memset(dst, 0, (size_t)hmoe_fxp_linear_lines(format, out, in) * HMOE_FXP_LINE_BYTES);
	if (format != HMOE_FXP_FP8) {
		tmp = malloc((size_t)in * sizeof(*tmp));
		if (!tmp)
			return hmoe_err(HMOE_ENOMEM, "%s: out of memory packing a row", what);
	}
	for (int n = 0; n < out; n++) {
		uint8_t *row = row_record(dst, format, in, n);
		const float *srow = scale_inv + (size_t)(n / 128) * in_blocks;

		if (format == HMOE_FXP_FP8) {
			for (int g = 0; g < in_blocks; g++) {
				if (!(srow[g] >= 0) || isinf(srow[g])) {
					return hmoe_err(HMOE_EINPUT, "%s: scale_inv[%d][%d] = %g is not a "
							"finite non-negative number", what, n / 128, g,
							(double)srow[g]);
				}
				put_scale(row, g, hmoe_fxp_scale_from_float(
							  ldexp(srow[g], -HMOE_FXP_FP8_SHIFT)));
			}
			memcpy(row_codes(row, in), codes + (size_t)n * in, (size_t)in);
		} else {
			for (int k = 0; k < in; k++)
				tmp[k] = hmoe_fp8_e4m3_to_f32(codes[(size_t)n * in + k]) * srow[k / 128];
			pack_row_int(row, tmp, in, format);
		}
	}
	free(tmp);
	return 0;
}

int hmoe_fxp_pack_f32(struct hmoe_fxp_line *dst, const float *w, int out, int in, int format,
		      const char *what)
{
	int in_blocks = (in + 127) / 128, out_blocks = (out + 127) / 128, ret;
	uint8_t *codes;
	float *scale;

	if (!hmoe_fxp_mode_valid(format))
		return hmoe_err(HMOE_EINPUT, "%s: bad fixed-point format %d", what, format);
	format = hmoe_fxp_mode_format(format);
	for (int64_t i = 0; i < (int64_t)out * in; i++)
		if (!isfinite(w[i]))
			return hmoe_err(HMOE_EINPUT, "%s: weight at row %lld column %lld is not finite",
					what, (long long)(i / in), (long long)(i % in));
	if (format != HMOE_FXP_FP8) {
		memset(dst, 0, (size_t)hmoe_fxp_linear_lines(format, out, in) * HMOE_FXP_LINE_BYTES);
		for (int n = 0; n < out; n++)
			pack_row_int(row_record(dst, format, in, n), w + (size_t)n * in, in, format);
		return 0;
	}
	/* fp8 from floats: DeepSeek's own recipe, per 128x128 block scale = amax / 448. */
	codes = malloc((size_t)out * in);
	scale = calloc((size_t)out_blocks * in_blocks, sizeof(*scale));
	if (!codes || !scale) {
		free(codes);
		free(scale);
		return hmoe_err(HMOE_ENOMEM, "%s: out of memory quantising to fp8", what);
	}
	for (int n = 0; n < out; n++)
		for (int k = 0; k < in; k++) {
			float *s = &scale[(n / 128) * in_blocks + k / 128];

			*s = fmaxf(*s, fabsf(w[(size_t)n * in + k]));
		}
	for (int i = 0; i < out_blocks * in_blocks; i++)
		scale[i] /= 448.0f;
	for (int n = 0; n < out; n++)
		for (int k = 0; k < in; k++) {
			float s = scale[(n / 128) * in_blocks + k / 128];

			codes[(size_t)n * in + k] =
				s > 0 ? hmoe_f32_to_fp8_e4m3(w[(size_t)n * in + k] / s) : 0;
		}
	ret = hmoe_fxp_pack_fp8(dst, codes, scale, out, in, format, what);
	free(codes);
	free(scale);
	return ret;
}

int hmoe_fxp_pack_linear(struct hmoe_fxp_line *dst, const struct hmoe_linear *l, int format)
{
	const char *what = l->src && l->src->name ? l->src->name : "linear";
	float *w;
	int ret;

	if (!l->src)
		return hmoe_err(HMOE_EINTERNAL, "fxp pack %s: no stored weight", what);
	if (l->out > HMOE_FXP_MAX_DIM || l->in > HMOE_FXP_MAX_DIM)
		return hmoe_err(HMOE_EINPUT, "fxp pack %s: shape (%d, %d) exceeds the kernel's %d",
				what, l->out, l->in, HMOE_FXP_MAX_DIM);
	if (l->src->dtype == HMOE_DT_F8E4M3 && l->scale_inv &&
	    l->scale_inv->dtype == HMOE_DT_F32 && (l->block_out == 128 || l->block_out == 0) &&
	    (l->block_in == 128 || l->block_in == 0))
		return hmoe_fxp_pack_fp8(dst, l->src->data, l->scale_inv->data, l->out, l->in,
					 format, what);
	w = l->w;
	if (!w) {
		w = malloc((size_t)l->out * l->in * sizeof(*w));
		if (!w)
			return hmoe_err(HMOE_ENOMEM, "fxp pack %s: out of memory", what);
		ret = hmoe_linear_dequant(l, w);
		if (ret) {
			free(w);
			return ret;
		}
	}
	ret = hmoe_fxp_pack_f32(dst, w, l->out, l->in, format, what);
	if (w != l->w)
		free(w);
	return ret;
}

int hmoe_fxp_pack_mlp(struct hmoe_fxp_line *dst, const struct hmoe_mlp *e, int format)
{
	int64_t up = hmoe_fxp_linear_lines(format, e->w1.out, e->w1.in);
	int ret;

	if (e->w3.out != e->w1.out || e->w3.in != e->w1.in || e->w2.out != e->w1.in ||
	    e->w2.in != e->w1.out)
		return hmoe_err(HMOE_EINPUT, "fxp pack: expert shapes w1 (%d, %d), w3 (%d, %d), "
				"w2 (%d, %d) do not form an FFN", e->w1.out, e->w1.in, e->w3.out,
				e->w3.in, e->w2.out, e->w2.in);
	ret = hmoe_fxp_pack_linear(dst, &e->w1, format);
	if (!ret)
		ret = hmoe_fxp_pack_linear(dst + up, &e->w3, format);
	if (!ret)
		ret = hmoe_fxp_pack_linear(dst + 2 * up, &e->w2, format);
	return ret;
}

/* ---- activations and outputs ------------------------------------------------------- */

int64_t hmoe_fxp_f32_to_q32(float x)
{
	if (x != x)
		return 0;
	if (x >= 1073741824.0f)
		return HMOE_FXP_ACT_IN_MAX;
	if (x <= -1073741824.0f)
		return -HMOE_FXP_ACT_IN_MAX;
	return (int64_t)(x * 4294967296.0f);  /* exact scaling, then truncation */
}

void hmoe_fxp_quant_x_group(const float *x, int dim, int planes, int g, int8_t *xq,
			    int32_t *xs)
{
	hmoe_fxp_quant_x_group_by(x, dim, planes, g, xq, xs, hmoe_fxp_quant_group);
}

void hmoe_fxp_quant_x_group_by(const float *x, int dim, int planes, int g, int8_t *xq,
			       int32_t *xs, hmoe_fxp_quant_fn *quant)
{
	int64_t v[HMOE_FXP_GROUP];
	int plane = hmoe_fxp_groups(dim) * HMOE_FXP_GROUP, k0 = g * HMOE_FXP_GROUP;
	int n = dim - k0 < HMOE_FXP_GROUP ? dim - k0 : HMOE_FXP_GROUP;

	planes = planes == 2 ? 2 : 1;
	for (int k = 0; k < HMOE_FXP_GROUP; k++)  /* past dim: 0, which quant_group ignores */
		v[k] = k < n ? hmoe_fxp_f32_to_q32(x[k0 + k]) : 0;
	xs[g] = quant(v, n, planes, xq + k0, planes == 2 ? xq + plane + k0 : NULL);
	for (int p = 0; p < planes; p++)
		memset(xq + p * plane + k0 + n, 0, (size_t)(HMOE_FXP_GROUP - n));
}

void hmoe_fxp_quant_x(const float *x, int dim, int planes, int8_t *xq, int32_t *xs)
{
	for (int g = 0; g < hmoe_fxp_groups(dim); g++)
		hmoe_fxp_quant_x_group(x, dim, planes, g, xq, xs);
}
