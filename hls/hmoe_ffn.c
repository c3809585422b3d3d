/* hmoe_ffn: the scalar fixed-point expert kernel (the oracle every other variant must
 * match bit for bit) and the Vitis HLS top function. Interface: hls/hmoe_ffn.h;
 * numbers: hls/hmoe_fxp.h and docs/fxp.md.
 *
 * Two passes over one expert for a tile of tokens:
 *   up:   for each group of 128 inter rows n: h1 = W1[n] x, h3 = W3[n] x (Q16), h =
 *         silu(h1) * h3 (Q32) for every token; then each token's 128 h values are
 *         requantised to int8 by the contract quantiser into s->hq / s->hs.
 *   down: y[t][n] = W2[n] hq[t] (Q16) for every dim row n.
 * Each row is read once per tile (the weight stream is the cost), tokens are the inner
 * loop. Loop bounds are the HMOE_FXP_* constants; actual sizes break out early.
 */
#include "hmoe_ffn.h"

#if defined(__GNUC__) && !defined(__SYNTHESIS__)
#pragma GCC diagnostic ignored "-Wunused-label"
#endif

/* One row of a linear against one token: sum over input groups of the scaled exact
 * group dots, in Q24. `row` is the row record, x (groups * 128) int8, xs its scales. */
static int64_t ffn_row_acc(const uint8_t *row, int32_t format, int32_t groups,
			   const int8_t *x, const int32_t *xs)
{
	const uint8_t *codes = row + hmoe_fxp_scale_lines(groups * HMOE_FXP_GROUP) *
					     HMOE_FXP_LINE_BYTES;
	int32_t group_bytes = hmoe_fxp_group_bytes(format);
	int64_t acc = 0;

ffn_row_groups:
	for (int32_t g = 0; g < HMOE_FXP_MAX_IN_GROUPS; g++) {
#pragma HLS LOOP_TRIPCOUNT min=1 max=56
		if (g >= groups)
			break;
		acc += hmoe_fxp_term(hmoe_fxp_dot_group(codes + g * group_bytes, format,
							x + g * HMOE_FXP_GROUP),
				     hmoe_fxp_row_scale(row, g), xs[g]);
	}
	return acc;
}

/* up pass: W1, W3, SwiGLU, requantisation of h. */
static void ffn_up(const uint8_t *w1, const uint8_t *w3, const int8_t *xq,
		   const int32_t *xs, struct hmoe_ffn_scratch *s, int32_t format,
		   int32_t n_tokens, int32_t dim, int32_t inter)
{
	int32_t dim_groups = hmoe_fxp_groups(dim), inter_groups = hmoe_fxp_groups(inter);
	int64_t row_bytes = (int64_t)hmoe_fxp_row_lines(format, dim) * HMOE_FXP_LINE_BYTES;
	int32_t x_stride = dim_groups * HMOE_FXP_GROUP;

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
ffn_up_tokens:
			for (int32_t t = 0; t < HMOE_FXP_TILE; t++) {
#pragma HLS LOOP_TRIPCOUNT min=1 max=32
				int32_t h1, h3;

				if (t >= n_tokens)
					break;
				h1 = hmoe_fxp_acc_to_q16(ffn_row_acc(w1 + n * row_bytes, format,
								     dim_groups, xq + t * x_stride,
								     xs + t * dim_groups));
				h3 = hmoe_fxp_acc_to_q16(ffn_row_acc(w3 + n * row_bytes, format,
								     dim_groups, xq + t * x_stride,
								     xs + t * dim_groups));
				s->h[t][r] = hmoe_fxp_swiglu_q32(h1, h3);
			}
		}
ffn_up_quant:
		for (int32_t t = 0; t < HMOE_FXP_TILE; t++) {
			int32_t count = inter - gi * HMOE_FXP_GROUP;
			int8_t *hq = &s->hq[t][gi * HMOE_FXP_GROUP];

			if (t >= n_tokens)
				break;
			if (count > HMOE_FXP_GROUP)
				count = HMOE_FXP_GROUP;
			s->hs[t][gi] = hmoe_fxp_quant_group(s->h[t], count, hq);
ffn_up_pad:
			for (int32_t r = count; r < HMOE_FXP_GROUP; r++)
				hq[r] = 0;
		}
	}
}

/* down pass: y = W2 hq, Q16. */
static void ffn_down(const uint8_t *w2, const struct hmoe_ffn_scratch *s, int32_t *y,
		     int32_t format, int32_t n_tokens, int32_t dim, int32_t inter)
{
	int32_t inter_groups = hmoe_fxp_groups(inter);
	int64_t row_bytes = (int64_t)hmoe_fxp_row_lines(format, inter) * HMOE_FXP_LINE_BYTES;

ffn_down_rows:
	for (int32_t n = 0; n < HMOE_FXP_MAX_DIM; n++) {
#pragma HLS LOOP_TRIPCOUNT min=1 max=7168
		if (n >= dim)
			break;
ffn_down_tokens:
		for (int32_t t = 0; t < HMOE_FXP_TILE; t++) {
#pragma HLS LOOP_TRIPCOUNT min=1 max=32
			if (t >= n_tokens)
				break;
			y[t * dim + n] = hmoe_fxp_acc_to_q16(
				ffn_row_acc(w2 + n * row_bytes, format, inter_groups,
					    s->hq[t], s->hs[t]));
		}
	}
}

int32_t hmoe_ffn(const struct hmoe_fxp_line *wpack, const int8_t *xq, const int32_t *xs,
		 int32_t *y, struct hmoe_ffn_scratch *s, int32_t format, int32_t n_tokens,
		 int32_t dim, int32_t inter)
{
#pragma HLS INTERFACE m_axi port=wpack offset=slave bundle=gmem0 max_read_burst_length=64
#pragma HLS INTERFACE m_axi port=xq offset=slave bundle=gmem1
#pragma HLS INTERFACE m_axi port=xs offset=slave bundle=gmem1
#pragma HLS INTERFACE m_axi port=y offset=slave bundle=gmem2
#pragma HLS INTERFACE m_axi port=s offset=slave bundle=gmem3
#pragma HLS INTERFACE s_axilite port=format
#pragma HLS INTERFACE s_axilite port=n_tokens
#pragma HLS INTERFACE s_axilite port=dim
#pragma HLS INTERFACE s_axilite port=inter
#pragma HLS INTERFACE s_axilite port=return
	const uint8_t *w1 = (const uint8_t *)wpack;
	const uint8_t *w3, *w2;

	if (format < 0 || format >= HMOE_FXP_N_FORMATS || n_tokens < 1 ||
	    n_tokens > HMOE_FXP_TILE || dim < 1 || dim > HMOE_FXP_MAX_DIM || inter < 1 ||
	    inter > HMOE_FXP_MAX_INTER)
		return HMOE_FFN_EARGS;
	w3 = w1 + hmoe_fxp_linear_lines(format, inter, dim) * HMOE_FXP_LINE_BYTES;
	w2 = w3 + hmoe_fxp_linear_lines(format, inter, dim) * HMOE_FXP_LINE_BYTES;
	ffn_up(w1, w3, xq, xs, s, format, n_tokens, dim, inter);
	ffn_down(w2, s, y, format, n_tokens, dim, inter);
	return 0;
}
