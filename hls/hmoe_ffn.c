/* hmoe_ffn: the scalar fixed-point expert kernel (the oracle every other variant must
 * match bit for bit) and the Vitis HLS top function. Interface: hls/hmoe_ffn.h;
 * numbers: hls/hmoe_fxp.h and docs/fxp.md.
 *
 * Two passes over one expert for a tile of tokens:
 *   up:   for each group of 128 inter rows n: h1 = W1[n] x, h3 = W3[n] x (Q16), h =
 *         silu(h1) * h3 (Q32) for every token; then each token's 128 h values are
 *         requantised by the contract quantiser into s->hq (the mode's int8 planes) and
 *         s->hs.
 *   down: y[t][n] = W2[n] hq[t] (Q16) for every dim row n.
 * The mode (format | HMOE_FXP_A16) sets the activation planes P of x and h: each group
 * dot is 128 * dot(hi plane) + dot(lo plane) for P = 2, dot(the plane) for P = 1.
 * Each row is read once per tile (the weight stream is the cost), tokens are the inner
 * loop. Loop bounds are the HMOE_FXP_* constants; actual sizes break out early.
 */
#include "hmoe_ffn.h"

#if defined(__GNUC__) && !defined(__SYNTHESIS__)
#pragma GCC diagnostic ignored "-Wunused-label"
#endif

/* ---- one weight row against the tile: read / compute / write ----------------------
 * read:    the row record's scale words -> ws[], its code lines -> codes[] (a burst)
 * compute: per token, sum over groups of the scaled exact group dots (Q24) -> Q16
 * write:   the tile's Q16 results -> out[t * out_stride]
 * Under Vitis the three run as a dataflow pipeline (the row buffer is then a local
 * BRAM); compiled as C, the buffer is the scratch's, because kernel stacks are 16 KiB. */

static void ffn_read_row(const uint8_t *row, int32_t format, int32_t groups,
			 int32_t ws[HMOE_FXP_MAX_IN_GROUPS], uint8_t *codes)
{
	const uint8_t *src = row + hmoe_fxp_scale_lines(groups * HMOE_FXP_GROUP) *
					   HMOE_FXP_LINE_BYTES;
	int32_t n_bytes = groups * hmoe_fxp_group_bytes(format);

ffn_read_scales:
	for (int32_t g = 0; g < HMOE_FXP_MAX_IN_GROUPS; g++) {
#pragma HLS PIPELINE II=1
		if (g >= groups)
			break;
		ws[g] = hmoe_fxp_row_scale(row, g);
	}
ffn_read_codes:
	for (int32_t b = 0; b < HMOE_FXP_MAX_DIM; b++) {
#pragma HLS PIPELINE II=1
#pragma HLS LOOP_TRIPCOUNT min=64 max=7168
		if (b >= n_bytes)
			break;
		codes[b] = src[b];
	}
}

static void ffn_compute_row(const uint8_t *codes, const int32_t ws[HMOE_FXP_MAX_IN_GROUPS],
			    int32_t format, int32_t groups, int32_t planes, const int8_t *x,
			    const int32_t *xs, int32_t x_stride, int32_t xs_stride,
			    int32_t n_tokens, int32_t q16[HMOE_FXP_TILE])
{
	int32_t plane_stride = groups * HMOE_FXP_GROUP;
	int32_t group_bytes = hmoe_fxp_group_bytes(format);

ffn_compute_tokens:
	for (int32_t t = 0; t < HMOE_FXP_TILE; t++) {
#pragma HLS LOOP_TRIPCOUNT min=1 max=32
		int64_t acc = 0;

		if (t >= n_tokens)
			break;
ffn_compute_groups:
		for (int32_t g = 0; g < HMOE_FXP_MAX_IN_GROUPS; g++) {
#pragma HLS LOOP_TRIPCOUNT min=1 max=56
			if (g >= groups)
				break;
			acc += hmoe_fxp_term(hmoe_fxp_dot_group_planes(
						     codes + g * group_bytes, format, planes,
						     x + t * x_stride + g * HMOE_FXP_GROUP, plane_stride),
					     ws[g], xs[t * xs_stride + g]);
		}
		q16[t] = hmoe_fxp_acc_to_q16(acc);
	}
}

static void ffn_write_row(const int32_t q16[HMOE_FXP_TILE], int32_t n_tokens, int32_t *out,
			  int32_t out_stride)
{
ffn_write_tokens:
	for (int32_t t = 0; t < HMOE_FXP_TILE; t++) {
#pragma HLS PIPELINE II=1
		if (t >= n_tokens)
			break;
		out[t * out_stride] = q16[t];
	}
}

/* Row n of the linear at `lin` (row records over `in` columns) against the tile; the
 * Q16 results go to out[t * out_stride]. x (n_tokens, x_stride) int8: per token
 * `planes` planes of groups(in) * 128; xs (n_tokens, xs_stride) its scale words. */
static void ffn_row(const uint8_t *lin, int32_t n, int32_t format, int32_t planes,
		    int32_t in, const int8_t *x, const int32_t *xs, int32_t x_stride,
		    int32_t xs_stride, int32_t n_tokens, uint8_t *row_buf, int32_t *out,
		    int32_t out_stride)
{
#pragma HLS DATAFLOW
	int32_t groups = hmoe_fxp_groups(in);
	int64_t row_bytes = (int64_t)hmoe_fxp_row_lines(format, in) * HMOE_FXP_LINE_BYTES;
	int32_t ws[HMOE_FXP_MAX_IN_GROUPS];
	int32_t q16[HMOE_FXP_TILE];
#pragma HLS ARRAY_PARTITION variable=ws type=cyclic factor=4
#pragma HLS ARRAY_PARTITION variable=q16 type=complete
#ifdef __SYNTHESIS__
	uint8_t codes[HMOE_FXP_MAX_DIM];
#pragma HLS ARRAY_PARTITION variable=codes type=cyclic factor=64
#pragma HLS STREAM variable=codes type=pipo depth=2
	(void)row_buf;
#else
	uint8_t *codes = row_buf;
#endif

	ffn_read_row(lin + n * row_bytes, format, groups, ws, codes);
	ffn_compute_row(codes, ws, format, groups, planes, x, xs, x_stride, xs_stride, n_tokens,
			q16);
	ffn_write_row(q16, n_tokens, out, out_stride);
}

/* up pass: W1, W3, SwiGLU, requantisation of h into s->hq[t]: `planes` planes of
 * groups(inter) * 128 (hi plane first). */
static void ffn_up(const uint8_t *w1, const uint8_t *w3, const int8_t *xq,
		   const int32_t *xs, struct hmoe_ffn_scratch *s, int32_t format,
		   int32_t planes, int32_t n_tokens, int32_t dim, int32_t inter)
{
	int32_t inter_groups = hmoe_fxp_groups(inter), h_plane = inter_groups * HMOE_FXP_GROUP;
	int32_t dim_groups = hmoe_fxp_groups(dim);
	int32_t x_stride = planes * dim_groups * HMOE_FXP_GROUP;
	int32_t h1[HMOE_FXP_TILE], h3[HMOE_FXP_TILE];
#pragma HLS ARRAY_PARTITION variable=h1 type=complete
#pragma HLS ARRAY_PARTITION variable=h3 type=complete

ffn_up_groups:
	for (int32_t gi = 0; gi < HMOE_FXP_MAX_INTER_GROUPS; gi++) {
#pragma HLS LOOP_TRIPCOUNT min=1 max=16
		if (gi >= inter_groups)
			break;
ffn_up_rows:
		for (int32_t r = 0; r < HMOE_FXP_GROUP; r++) {
			int32_t n = gi * HMOE_FXP_GROUP + r;

			if (n >= inter)
				break;
			ffn_row(w1, n, format, planes, dim, xq, xs, x_stride, dim_groups, n_tokens,
				s->row, h1, 1);
			ffn_row(w3, n, format, planes, dim, xq, xs, x_stride, dim_groups, n_tokens,
				s->row, h3, 1);
ffn_up_swiglu:
			for (int32_t t = 0; t < HMOE_FXP_TILE; t++) {
#pragma HLS PIPELINE II=1
				if (t >= n_tokens)
					break;
				s->h[t][r] = hmoe_fxp_swiglu_q32(h1[t], h3[t]);
			}
		}
ffn_up_quant:
		for (int32_t t = 0; t < HMOE_FXP_TILE; t++) {
			int32_t count = inter - gi * HMOE_FXP_GROUP;
			int8_t *hq = &s->hq[t][gi * HMOE_FXP_GROUP];
			int8_t *hq_lo = hq + h_plane;  /* A16 only; inside hq[t] in any case */

			if (t >= n_tokens)
				break;
			if (count > HMOE_FXP_GROUP)
				count = HMOE_FXP_GROUP;
			s->hs[t][gi] = hmoe_fxp_quant_group(s->h[t], count, planes, hq, hq_lo);
ffn_up_pad:
			for (int32_t r = count; r < HMOE_FXP_GROUP; r++) {
				hq[r] = 0;
				hq_lo[r] = 0;
			}
		}
	}
}

/* down pass: y = W2 hq, Q16. */
static void ffn_down(const uint8_t *w2, struct hmoe_ffn_scratch *s, int32_t *y,
		     int32_t format, int32_t planes, int32_t n_tokens, int32_t dim,
		     int32_t inter)
{
ffn_down_rows:
	for (int32_t n = 0; n < HMOE_FXP_MAX_DIM; n++) {
#pragma HLS LOOP_TRIPCOUNT min=1 max=7168
		if (n >= dim)
			break;
		ffn_row(w2, n, format, planes, inter, &s->hq[0][0], &s->hs[0][0],
			HMOE_FXP_MAX_PLANES * HMOE_FXP_MAX_INTER, HMOE_FXP_MAX_INTER_GROUPS,
			n_tokens, s->row, y + n, dim);
	}
}

int32_t hmoe_ffn(const struct hmoe_fxp_line *wpack, const int8_t *xq, const int32_t *xs,
		 int32_t *y, struct hmoe_ffn_scratch *s, int32_t mode, int32_t n_tokens,
		 int32_t dim, int32_t inter)
{
#pragma HLS INTERFACE m_axi port=wpack offset=slave bundle=gmem0 max_read_burst_length=64
#pragma HLS INTERFACE m_axi port=xq offset=slave bundle=gmem1
#pragma HLS INTERFACE m_axi port=xs offset=slave bundle=gmem1
#pragma HLS INTERFACE m_axi port=y offset=slave bundle=gmem2
#pragma HLS INTERFACE m_axi port=s offset=slave bundle=gmem3
#pragma HLS INTERFACE s_axilite port=mode
#pragma HLS INTERFACE s_axilite port=n_tokens
#pragma HLS INTERFACE s_axilite port=dim
#pragma HLS INTERFACE s_axilite port=inter
#pragma HLS INTERFACE s_axilite port=return
	const uint8_t *w1 = (const uint8_t *)wpack;
	const uint8_t *w3, *w2;
	int32_t format, planes;

	if (!hmoe_fxp_mode_valid(mode) || n_tokens < 1 || n_tokens > HMOE_FXP_TILE || dim < 1 ||
	    dim > HMOE_FXP_MAX_DIM || inter < 1 || inter > HMOE_FXP_MAX_INTER)
		return HMOE_FFN_EARGS;
	format = hmoe_fxp_mode_format(mode);
	planes = hmoe_fxp_mode_planes(mode);
	w3 = w1 + hmoe_fxp_linear_lines(format, inter, dim) * HMOE_FXP_LINE_BYTES;
	w2 = w3 + hmoe_fxp_linear_lines(format, inter, dim) * HMOE_FXP_LINE_BYTES;
	ffn_up(w1, w3, xq, xs, s, format, planes, n_tokens, dim, inter);
	ffn_down(w2, s, y, format, planes, n_tokens, dim, inter);
	return 0;
}
