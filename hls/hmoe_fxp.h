/* hmoe_fxp: the numeric contract of the fixed-point expert datapath (docs/fxp.md), as
 * constants, the weight-pack geometry and the integer building blocks every producer
 * and every kernel variant (HLS, scalar CPU, SIMD CPU, the driver's emulated card) use.
 *
 * Summary (docs/fxp.md has the proofs):
 *  - Weights: a per-format integer code q[n][k] and, per (row n, group g of 128 input
 *    columns), a scale word s = m * 2^-e (m unsigned 16-bit, normalised to [2^15, 2^16)).
 *      fp8:  q = e4m3 value * 2^9, exact, |q| <= 229376 (table hmoe_fxp_fp8_q); the
 *            128x128 block scale_inv * 2^-9 becomes the scale word of each row.
 *      int8: q in [-127, 127], two's complement bytes.
 *      int4: q in [-7, 7], stored as the nibble q + 8, two per byte: in each group
 *            of 128 columns, byte j holds column j (low nibble) and j + 64 (high).
 *  - Activations: per (token, group of 128) an integer q with a scale word m * 2^-e
 *    (m in [128, 255]), produced only by hmoe_fxp_quant_group() from Q32 values, and
 *    carried as int8 planes: mode A8 (one plane) q in [-127, 127]; mode A16 (two
 *    planes, the default) |q| <= 16256 = 127 * 128, q = 128 * hi + lo with hi in
 *    [-127, 127] and lo in [-64, 64] (hi = |q| / 128 rounded half up, with q's sign).
 *    The kernel mode is format | HMOE_FXP_A16; weight packs depend only on the format.
 *  - Dot products per group are exact int64; each is scaled to Q24 (F_ACC) with one
 *    rounding (half away from zero) and summed in int64; h1/h3 and y leave as Q16 int32.
 *  - SiLU: sigmoid table of 1025 Q16 entries on [-16, 16], linear interpolation.
 */
#ifndef HMOE_FXP_H
#define HMOE_FXP_H

#include "hmoe_fxp_types.h"

/* ---- formats and constants ------------------------------------------------------ */

enum hmoe_fxp_format {
	HMOE_FXP_FP8 = 0,
	HMOE_FXP_INT8 = 1,
	HMOE_FXP_INT4 = 2,
	HMOE_FXP_N_FORMATS
};

#define HMOE_FXP_CONTRACT_VERSION 3 /* bumped whenever a number below or a result changes */
#define HMOE_FXP_LINE_BYTES 64      /* the card's memory word: 512 bits */
#define HMOE_FXP_GROUP 128          /* input columns sharing one scale */
#define HMOE_FXP_TILE 32            /* tokens per kernel call, at most */
#define HMOE_FXP_MAX_DIM 7168       /* hidden size bound (DeepSeek-V3) */
#define HMOE_FXP_MAX_INTER 2048     /* expert inter size bound (DeepSeek-V3) */
#define HMOE_FXP_MAX_IN_GROUPS (HMOE_FXP_MAX_DIM / HMOE_FXP_GROUP)      /* 56 */
#define HMOE_FXP_MAX_INTER_GROUPS (HMOE_FXP_MAX_INTER / HMOE_FXP_GROUP) /* 16 */

#define HMOE_FXP_FP8_SHIFT 9        /* fp8 q = e4m3 value * 2^9 */
#define HMOE_FXP_FP8_QMAX 229376    /* 448 * 2^9 */
#define HMOE_FXP_ACT_QMAX 127       /* activations, mode A8: int8 in [-127, 127] */
#define HMOE_FXP_ACT2_QMAX 16256    /* mode A16: |q| <= 127 * 128, as two int8 planes */
#define HMOE_FXP_PLANE_SHIFT 7      /* A16: q = hi * 2^7 + lo */
#define HMOE_FXP_MAX_PLANES 2

/* ---- kernel modes: a weight format, optionally with two activation planes -----------
 * The `format` argument of the kernel (and of the driver's ffn jobs) is a mode:
 * enum hmoe_fxp_format | HMOE_FXP_A16. Weight packs depend only on the format, so the
 * pack geometry below and hmoe_fxp_dot_group() accept either a format or a mode. */
#define HMOE_FXP_A16 0x100
#define HMOE_FXP_MODE_MASK (0xff | HMOE_FXP_A16)

static inline int32_t hmoe_fxp_mode_format(int32_t mode)
{
	return mode & 0xff;
}

static inline int32_t hmoe_fxp_mode_planes(int32_t mode)
{
	return mode & HMOE_FXP_A16 ? 2 : 1;
}

/* 1 when mode is a known format with known flags. */
static inline int32_t hmoe_fxp_mode_valid(int32_t mode)
{
	return mode >= 0 && (mode & ~HMOE_FXP_MODE_MASK) == 0 &&
	       hmoe_fxp_mode_format(mode) < HMOE_FXP_N_FORMATS;
}

#define HMOE_FXP_F_ACT 32           /* quantiser input: Q32 in int64, |v| <= 2^62 */
#define HMOE_FXP_F_ACC 24           /* row accumulator: Q24 in int64 */
#define HMOE_FXP_F_H 16             /* h1 = W1 x, h3 = W3 x, silu: Q16 int32 */
#define HMOE_FXP_F_OUT 16           /* y: Q16 int32, float y = out * 2^-16 */
#define HMOE_FXP_TERM_MAX ((int64_t)1 << 56) /* one scaled group term saturates here */
#define HMOE_FXP_ACT_IN_MAX ((int64_t)1 << 62) /* quantiser input bound */

#define HMOE_FXP_SIG_N 1024         /* sigmoid table intervals on [-16, 16] */
#define HMOE_FXP_SIG_STEP_SHIFT 11  /* interval = 2^11 in Q16 = 1/32 */
#define HMOE_FXP_SIG_RANGE_Q16 ((int32_t)16 << 16)
#define HMOE_FXP_ONE_Q16 ((int32_t)1 << 16)

/* fp8 e4m3fn code -> exact value * 2^9. NaN codes 0x7f / 0xff decode to 0; the packer
 * refuses tensors that contain them, so they only appear in a corrupted pack. */
extern const int32_t hmoe_fxp_fp8_q[256];
/* round(2^16 * sigmoid(-16 + i/32)), i = 0..1024. */
extern const int32_t hmoe_fxp_sigmoid_q16[HMOE_FXP_SIG_N + 1];

/* ---- scale words: s = m * 2^-e, packed as e * 65536 + m (m < 65536) --------------- */

static inline int32_t hmoe_fxp_scale_word(uint32_t m, int32_t e)
{
	return (int32_t)(e * 65536 + (int32_t)m);
}

static inline uint32_t hmoe_fxp_scale_m(int32_t w)
{
	return (uint32_t)w & 0xffffu;
}

static inline int32_t hmoe_fxp_scale_e(int32_t w)
{
	return (w - (int32_t)hmoe_fxp_scale_m(w)) / 65536;
}

/* ---- pack geometry ---------------------------------------------------------------
 * A linear layer W (out, in) is `out` row records of row_lines() lines each:
 *   [scale lines: groups int32 scale words, little-endian, zero-padded to a line]
 *   [code lines: groups * 128 bytes (fp8, int8) or groups * 64 bytes (int4)]
 * Input columns past `in` (up to groups * 128) have code 0 (int4: nibble 8), i.e.
 * weight 0. An expert pack is W1 (inter, dim), then W3 (inter, dim), then W2 (dim, inter).
 */
static inline int32_t hmoe_fxp_groups(int32_t in)
{
	return (in + HMOE_FXP_GROUP - 1) / HMOE_FXP_GROUP;
}

/* format: a weight format or a mode (only its format counts), here and below. */
static inline int32_t hmoe_fxp_group_bytes(int32_t format)
{
	return hmoe_fxp_mode_format(format) == HMOE_FXP_INT4 ? HMOE_FXP_GROUP / 2
							      : HMOE_FXP_GROUP;
}

static inline int32_t hmoe_fxp_scale_lines(int32_t in)
{
	return (hmoe_fxp_groups(in) * 4 + HMOE_FXP_LINE_BYTES - 1) / HMOE_FXP_LINE_BYTES;
}

static inline int32_t hmoe_fxp_code_lines(int32_t format, int32_t in)
{
	return hmoe_fxp_groups(in) * hmoe_fxp_group_bytes(format) / HMOE_FXP_LINE_BYTES;
}

static inline int32_t hmoe_fxp_row_lines(int32_t format, int32_t in)
{
	return hmoe_fxp_scale_lines(in) + hmoe_fxp_code_lines(format, in);
}

static inline int64_t hmoe_fxp_linear_lines(int32_t format, int32_t out, int32_t in)
{
	return (int64_t)out * hmoe_fxp_row_lines(format, in);
}

static inline int64_t hmoe_fxp_expert_lines(int32_t format, int32_t dim, int32_t inter)
{
	return 2 * hmoe_fxp_linear_lines(format, inter, dim) +
	       hmoe_fxp_linear_lines(format, dim, inter);
}

/* Reads scale word g of a row record (little-endian, whatever the host). */
static inline int32_t hmoe_fxp_row_scale(const uint8_t *row, int32_t g)
{
	const uint8_t *p = row + 4 * g;

	return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
			 (uint32_t)p[3] << 24);
}

/* ---- integer building blocks (hls/hmoe_fxp.c) ------------------------------------ */

/* v * 2^-r rounded half away from zero (r > 0), or v * 2^-r exactly (r <= 0);
 * saturated to +-HMOE_FXP_TERM_MAX; r > 62 gives 0. */
static inline int64_t hmoe_fxp_shift_round(int64_t v, int32_t r)
{
	const uint64_t max = (uint64_t)HMOE_FXP_TERM_MAX;
	uint64_t mag = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

	if (r > 0 && r <= 62) {
		mag = (mag + ((uint64_t)1 << (r - 1))) >> r;
	} else if (r > 62) {
		mag = 0;
	} else if (mag) {
		mag = r < -56 || mag > (max >> -r) ? max : mag << -r;
	}
	mag = mag > max ? max : mag;
	return v < 0 ? -(int64_t)mag : (int64_t)mag;
}

static inline int32_t hmoe_fxp_sat32(int64_t v)
{
	return v > HMOE_FXP_INT32_MAX ? HMOE_FXP_INT32_MAX
	     : v < HMOE_FXP_INT32_MIN ? HMOE_FXP_INT32_MIN : (int32_t)v;
}

/* Exact dot of one group: 128 weight codes (group_bytes() bytes) with 128 int8 x of one
 * plane (|result| <= 229376 * 128 * 128 < 2^32). format: a format or a mode. */
int64_t hmoe_fxp_dot_group(const uint8_t *codes, int32_t format, const int8_t *x);

/* The same over the activation's planes: x hi plane, x + plane_stride lo plane (A16):
 * 128 * dot(hi) + dot(lo) (exact: dot with q = 128 hi + lo), |result| < 2^39. */
static inline int64_t hmoe_fxp_dot_group_planes(const uint8_t *codes, int32_t format,
						int32_t planes, const int8_t *x,
						int32_t plane_stride)
{
	int64_t dot = hmoe_fxp_dot_group(codes, format, x);

	if (planes == 2)
		dot = dot * (1 << HMOE_FXP_PLANE_SHIFT) +
		      hmoe_fxp_dot_group(codes, format, x + plane_stride);
	return dot;
}

/* One group's contribution in Q24 from the split scales: m = m_w * (m_x & 0xff) and
 * r = e_w + e_x - F_ACC. |dot| <= 229376 * 16512 * 128 < 2^39 (proof in docs/fxp.md)
 * and m < 2^24: |dot * m| <= 8.1e18 < 2^63, no overflow for any input. */
static inline int64_t hmoe_fxp_term_split(int64_t dot, uint32_t m, int32_t r)
{
	return hmoe_fxp_shift_round(dot * (int64_t)m, r);
}

/* The same from the two scale words (m_x is masked to 8 bits, so any word is safe). */
static inline int64_t hmoe_fxp_term(int64_t dot, int32_t w_scale, int32_t x_scale)
{
	return hmoe_fxp_term_split(dot, hmoe_fxp_scale_m(w_scale) *
					(hmoe_fxp_scale_m(x_scale) & 0xffu),
				   hmoe_fxp_scale_e(w_scale) + hmoe_fxp_scale_e(x_scale) -
					   HMOE_FXP_F_ACC);
}

/* Q24 row accumulator -> Q16 int32 (rounded half away from zero, saturated). */
static inline int32_t hmoe_fxp_acc_to_q16(int64_t acc)
{
	return hmoe_fxp_sat32(hmoe_fxp_shift_round(acc, HMOE_FXP_F_ACC - HMOE_FXP_F_H));
}

/* silu(a) in Q16 from a in Q16: a * sigmoid(a), sigmoid by table + interpolation;
 * a >= 16 gives a, a < -16 gives 0. */
int32_t hmoe_fxp_silu_q16(int32_t a_q16);

/* h = silu(gate) * up in Q32 (exact product of two Q16 values; |h| < 2^62). */
int64_t hmoe_fxp_swiglu_q32(int32_t gate_q16, int32_t up_q16);

/* THE activation quantiser (x on the host, h inside the kernel): n <= 128 values in Q32
 * (|v| <= 2^62) -> planes (1 or 2) int8 planes of n values and the returned scale word
 * (m in [128, 255], or 0 for an all-zero group). planes == 1: q in [-127, 127] into
 * hi, lo unused (may be NULL). planes == 2: |q| <= 16256, hi[i] = sign(q) * ((|q| +
 * 64) >> 7) in [-127, 127], lo[i] = q - 128 * hi[i] in [-64, 64]. Any other planes
 * value is taken as 1. Definition in docs/fxp.md section 1.3. */
int32_t hmoe_fxp_quant_group(const int64_t *v, int32_t n, int32_t planes, int8_t *hi,
			     int8_t *lo);
/* Its scale for a group whose largest clamped magnitude is amax (0 < amax <= 2^62):
 * returns k, the smallest with amax <= qmax * 255 * 2^k, and sets *m = ceil(amax / (qmax *
 * 2^k)), in [128, 255] (docs/fxp.md section 1.3, step 2; qmax by planes as above). */
int32_t hmoe_fxp_quant_scale(uint64_t amax, int32_t planes, uint64_t *m);
/* Its type: the host's callers may take a SIMD variant's function of it that gives the
 * same bytes (runtime/hmoe_fxp_cpu.h, struct hmoe_fxp_simd's quant_group). */
typedef int32_t hmoe_fxp_quant_fn(const int64_t *v, int32_t n, int32_t planes, int8_t *hi,
				  int8_t *lo);

#endif
