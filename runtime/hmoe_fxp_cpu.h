/* hmoe_fxp_cpu: the fixed-point expert kernel on the CPU: SIMD variants of the exact
 * group dot products behind an ops table chosen at run time, the same integer
 * epilogue as the scalar kernel in hls/ (so every variant is bit-identical to
 * hmoe_ffn()), and a threaded MoE-layer driver over (expert, token tile, row chunk).
 */
#ifndef HMOE_FXP_CPU_H
#define HMOE_FXP_CPU_H

#include <stddef.h>
#include <stdint.h>

#include "hmoe_ffn.h"

struct hmoe_pool;

/* The quantised activations of a tile of tokens for one linear. Each token has
 * `planes` int8 planes (the mode's: 1, or 2 for A16) of groups * 128 values, back to
 * back, so the tile's xq is also (n_tokens * planes, groups * 128) one-plane rows:
 * that is how row_dots sees it (planes == 1, n_tokens <= 2 * HMOE_FXP_TILE). */
struct hmoe_fxp_xtile {
	int n_tokens;          /* <= HMOE_FXP_TILE tokens, or 2x as many rows in row_dots */
	int groups;            /* input groups of 128 */
	const int8_t *xq;      /* (n_tokens, planes, groups * 128) */
	const int32_t *xs;     /* (n_tokens, groups) scale words, shared by the planes */
	const int32_t *xsum;   /* (n_tokens, planes, groups) sum of each plane over a group */
	const uint32_t *xm;    /* (n_tokens, groups) scale mantissas (& 0xff) */
	const int32_t *xe;     /* (n_tokens, groups) scale exponents minus HMOE_FXP_F_ACC */
	int planes;            /* 1 or 2 */
	int has_m128;          /* some xq byte is -128 (off contract: the quantiser never
				* writes it); a variant whose fast path needs |x| <= 127
				* takes its exact general path */
	const int8_t *xv;      /* NULL, or xq in the tile layout of hmoe_fxp_x_vnni (set
				* by the driver for a variant with rows_dots) */
	const uint8_t *xu;     /* NULL, or xq + 128 (bytes ^ 0x80) in that layout (set for
				* a variant with rows_acc), with: */
	const int16_t *xw;     /* NULL, or (A16, a format in the variant's lanes_wide, in
				* place of xu) x = 128 hi + lo as int16 in the layout of
				* hmoe_fxp_x_wide, with: */
	const uint32_t *xmt;   /* xm as (chunk of 16 tokens, group, token in the chunk) */
	const int32_t *xet;    /* xe the same way (absent tokens: 1) */
	int xpaired;           /* the last chunk of xw is paired (at most 8 tokens, two
				* lanes each; see hmoe_fxp_x_wide) */
	const int16_t *x16;    /* NULL, or (A16 tiles of >= 2 tokens, a format in the
				* variant's whole16) x = 128 hi + lo as int16, (n_tokens,
				* groups * 128) */
};

/* The four-row fp8 kernel's remainder lists (row_acc4: one to HMOE_FXP_ROWS4_TOKENS
 * tokens). That kernel (AVX-512 VBMI) multiplies each code's |q| >> 2 as two bytes, low
 * (weight 4) and high (weight 1024): two products per code and activation plane where
 * three base-128 digits need three. It is exact for every code whose |q| is a multiple of
 * 4, i.e. every code of exponent E >= 3 (values of 1/16 and more; |q| = (8 + M) << (E -
 * 1)) and the zeros, and adds the remainders |q| & 3 of the rest from a list made once
 * per pack (values below 1/16 with a remainder: about 0.03% of the codes of a Gaussian
 * block whose largest weight is 448, as a checkpoint's block scales make it; docs/fxp.md
 * section 3). An entry is one such code of a row: column << 3 | negative << 2 | (|q| & 3)
 * (columns < 8192). */
struct hmoe_fxp_rowfix {
	const uint16_t *ent;   /* the row's entries, by column */
	int n;
};

/* The lists of one fp8 expert pack: row record i (W1's inter rows, W3's, then W2's dim
 * rows) has entries ent[start[i] .. start[i + 1] - 1]. */
struct hmoe_fxp_fp8_fix {
	uint32_t *start;       /* [2 * inter + dim + 1] */
	uint16_t *ent;
	int dim, inter;
};

/* The entries of one fp8 row record over `in` (<= HMOE_FXP_MAX_DIM) columns into ent
 * (room for `in`); returns their count. */
int hmoe_fxp_fp8_fix_row(const uint8_t *row, int in, uint16_t *ent);
/* The lists of an fp8 pack (dim, inter), or NULL when they would hold more than `limit`
 * entries (0: no limit; HMOE_FXP_FP8_FIX_LIMIT is what the runtime uses: packs of
 * uniformly random codes, an eighth of them with a remainder, then keep the three-digit
 * kernel) or memory ran out (errno ENOMEM). */
struct hmoe_fxp_fp8_fix *hmoe_fxp_fp8_fix_build(const struct hmoe_fxp_line *pack, int dim,
						int inter, size_t limit);
void hmoe_fxp_fp8_fix_free(struct hmoe_fxp_fp8_fix *fix);
/* One entry per 64 weights at most: 3% of the pack's bytes, some 15x a checkpoint's rate. */
#define HMOE_FXP_FP8_FIX_LIMIT(dim, inter) ((size_t)3 * (size_t)(dim) * (size_t)(inter) / 64)
/* Whether simd's four-row fp8 kernel takes the lists here (AVX-512 with VBMI and
 * HMOE_FXP_NO_VBMI unset): where it does not, building them would cost load time for
 * nothing. */
struct hmoe_fxp_simd;
int hmoe_fxp_simd_fp8_lists(const struct hmoe_fxp_simd *simd);

/* rows_dots' weight rows per call at most, and tokens per activation tile. */
#define HMOE_FXP_BLOCK_ROWS 16

/* xq (n_tokens, planes, groups * 128) as AMX B tiles ("VNNI" layout): for each chunk c
 * of 16 tokens, plane p, group g and half h (columns 64h .. 64h + 63), a 1024-byte tile
 * at (((c * planes + p) * groups + g) * 2 + h) * 1024 whose byte r * 64 + 4t + i is token
 * 16c + t's column 64h + 4r + i (bytes of absent tokens 0). */
size_t hmoe_fxp_x_vnni_bytes(int n_tokens, int planes, int groups);
/* flip: store each byte ^ 0x80 (x + 128 as unsigned); absent tokens then hold 0x80. */
void hmoe_fxp_x_vnni(const int8_t *xq, int n_tokens, int planes, int groups, int flip,
		     int8_t *xv);
/* A16 xq (n_tokens, 2, groups * 128) as whole 16-bit activations x = 128 hi + lo (in
 * [-16512, 16383] for any bytes) with tokens in the lanes of vpdpwssd: for each chunk c of
 * 16 tokens, group g and column pair j (columns 2j, 2j + 1 of the group), 64 bytes at
 * ((c * groups + g) * 64 + j) * 64 whose int16 2t + i is token 16c + t's column 2j + i
 * (absent tokens 0): within the 2048 int16 of (c, g), column k of token t at
 * (k / 2) * 32 + 2t + k % 2. paired: the last chunk instead holds its first 8 tokens (at
 * most) two lanes each, column k of token t at (k / 4) * 32 + 4t + k % 4 (a step of 4
 * columns in 16 lanes: lane 2t + e holds columns 2e, 2e + 1 of it); its later tokens are
 * left out. Its size is hmoe_fxp_x_vnni_bytes(n_tokens, 2, groups). */
void hmoe_fxp_x_wide(const int8_t *xq, int n_tokens, int groups, int paired, int16_t *xw);

/* Tiles in 16-bit lanes (fp8 A16) whose last chunk holds HMOE_FXP_LANES_PAIR_MIN_TOKENS ..
 * HMOE_FXP_LANES_MIN_TOKENS - 1 tokens run its first 8 of them as a paired chunk: it costs
 * ~0.6 of a full chunk and breaks even with the per-token path at ~5 tokens (dev VM, 4
 * rows, weights in L2). */
#define HMOE_FXP_LANES_PAIR_MIN_TOKENS 5

/* Bytes of per-thread scratch a variant may use while processing one row (or, rows_acc,
 * three int8 or two int16 digit planes of HMOE_FXP_LANE_ROWS rows). */
#define HMOE_FXP_ROW_TMP_BYTES (4 * HMOE_FXP_LANE_ROWS * HMOE_FXP_MAX_DIM)

/* Where row_acc4 writes quad q's row r's result for token t: the Q24 accumulator into
 * acc[(4 q + r) * n_tokens + t] (acc NULL: not), and its Q16 value, exactly
 * hmoe_fxp_acc_to_q16 of it, into q16[r][q * qstep + t * tstride] (q16[0] NULL: not). */
struct hmoe_fxp_rows4_out {
	int64_t *acc;
	int32_t *q16[4];
	size_t qstep, tstride;
};

/* hmoe_fxp_acc_to_q16 without a branch on the value (the same bits for every input):
 * with random signs the reference's branch mispredicts about every other value. */
static inline int32_t hmoe_fxp_acc_to_q16_nb(int64_t acc)
{
	enum { R = HMOE_FXP_F_ACC - HMOE_FXP_F_H };
	uint64_t s = 0 - (uint64_t)(acc < 0);                  /* all ones where negative */
	uint64_t mag = (((uint64_t)acc ^ s) - s + ((uint64_t)1 << (R - 1))) >> R;
	int64_t v = (int64_t)((mag ^ s) - s);                  /* |v| <= 2^55 < TERM_MAX */

	v = v > HMOE_FXP_INT32_MAX ? HMOE_FXP_INT32_MAX : v;
	return (int32_t)(v < HMOE_FXP_INT32_MIN ? HMOE_FXP_INT32_MIN : v);
}

/* One SIMD variant. row_dots: exact group dots of one weight row (codes of the weight
 * format) with every one-plane row of x (x->planes == 1; see whole_tokens), dots
 * (n_tokens, groups) = sum_k q[k] * xq[t][k] over each group, as int64; the caller
 * combines an A16 token's two rows as 128 * hi + lo. row_terms (NULL: the scalar loop), per token: acc[t] =
 * sum_g hmoe_fxp_term(dots[t][g], w[g], xs[t][g]) with w[g] the row's scale word g
 * (read from `scales`, the row record's little-endian scale lines; the tile's scales
 * come split as xm, xe), the row's Q24 accumulators, for |dots| < 2^39 (so
 * |dot * m| < 2^63 and terms may saturate at HMOE_FXP_TERM_MAX). */
struct hmoe_fxp_simd {
	const char *name;
	int (*supported)(void);
	void (*row_dots)(const uint8_t *codes, int format, const struct hmoe_fxp_xtile *x,
			 int64_t *dots, void *tmp);
	void (*row_terms)(const int64_t *dots, const uint8_t *scales,
			  const struct hmoe_fxp_xtile *x, int64_t *acc);
	/* Bit (1 << format) set: for that weight format row_dots also takes x with
	 * x->planes == 2 and writes whole tokens' dots (128 * hi + lo) itself, which saves
	 * reductions. dots has room for (n_tokens * planes, groups) either way (a variant
	 * may use it as scratch). */
	unsigned whole_tokens;
	/* Optional, int8/int4 only: row_dots of two rows in one pass (two weight streams in
	 * flight), with x as for row_dots when whole_tokens has the format (either plane
	 * count), dots of whole tokens: (n_tokens, groups) each. */
	void (*row_dots2)(const uint8_t *codes_a, const uint8_t *codes_b, int format,
			  const struct hmoe_fxp_xtile *x, int64_t *dots_a, int64_t *dots_b);
	/* Optional, int8/int4 only: row_dots2 for four rows codes[0..3] into dots[0..3]:
	 * each x load serves four rows, which pays once a tile's x outgrows the L1 cache
	 * (the driver's HMOE_FXP_QUAD_X_BYTES). */
	void (*row_dots4)(const uint8_t *const *codes, int format,
			  const struct hmoe_fxp_xtile *x, int64_t *const *dots);
	/* Optional: the results of n quads of row records (`in` columns each) for x's
	 * tokens, one pass over each quad, dots and terms fused (what row_terms sums), x as
	 * for row_dots2 (int8/int4: each x load serves four weight streams). Quad q holds
	 * the records at rows[r] + q * stride (r < 4); its row r's result for token t goes
	 * where out says (struct hmoe_fxp_rows4_out: the Q24 accumulator, its Q16 value, or
	 * both). Returns 0, or nonzero when it declines this format or x (then it wrote
	 * nothing and the caller takes the rows one at a time; the AVX-512 variant takes
	 * one-token int8 and int4, and fp8 where the CPU has VBMI and x holds no -128: one
	 * token, or with fix up to HMOE_FXP_ROWS4_TOKENS). fix: NULL, or (fp8) the rows'
	 * remainder lists (struct hmoe_fxp_fp8_fix), fix[4 * q + r] quad q's row r, which
	 * let a variant split each code into two bytes instead of three digits, decoded once
	 * for all the tokens. A run of quads per call rather than one, and the Q16 results
	 * written by the kernel as each quad ends: the layer driver's work between calls,
	 * which no memory access overlaps, is paid once per run and is short (docs/fxp.md
	 * section 3). */
	int (*row_acc4)(const uint8_t *const *rows, size_t stride, int n, int format, int in,
			const struct hmoe_fxp_xtile *x, const struct hmoe_fxp_rowfix *fix,
			const struct hmoe_fxp_rows4_out *out);
	/* Optional: nonzero where row_acc4 uses fp8 remainder lists on this CPU (so that
	 * callers build them only there; hmoe_fxp_simd_fp8_lists). */
	int (*fp8_lists)(void);
	/* Optional, int8 only: the dots of n_rows <= HMOE_FXP_BLOCK_ROWS weight rows (row i's
	 * codes at codes + i * row_stride) with every token of x, either plane count, whole
	 * tokens, into dots (n_rows, n_tokens, groups). Needs x->xv. */
	void (*rows_dots)(const uint8_t *codes, size_t row_stride, int n_rows,
			  const struct hmoe_fxp_xtile *x, int64_t *dots);
	/* Optional: the Q24 row accumulators of n_rows <= HMOE_FXP_LANE_ROWS row records
	 * (row i at rows + i * row_stride, `in` columns) with every token of x at once,
	 * dots and terms fused with tokens in the vector lanes, into acc (n_rows,
	 * n_tokens). Needs x->xu, xmt, xet. Returns 0, having done nothing, where it does
	 * not apply (a format or CPU it lacks); the caller then runs the rows one by one. */
	int (*rows_acc)(const uint8_t *rows, size_t row_stride, int n_rows, int format, int in,
			const struct hmoe_fxp_xtile *x, int64_t *acc, void *tmp);
	int lanes_min_tokens;  /* rows_acc is used for tiles of at least this many tokens */
	/* rows_acc's step in tokens (HMOE_FXP_BLOCK_ROWS: AVX-512's chunks of 16; 8:
	 * AVX-VNNI's halves): a lanes tile's tokens go through it in whole steps, and a last
	 * partial step (which costs a whole one) if it holds at least lanes_part_tokens;
	 * the rest take the row path. */
	int lanes_step;
	int lanes_part_tokens;
	/* Bit (1 << format) set: rows_acc takes that format (the driver keeps a tile's
	 * activations in its layouts only for those). */
	unsigned lanes_formats;
	/* Bit (1 << format) set: for A16 tiles of that format rows_acc takes x->xw (16-bit
	 * activations) rather than x->xu. */
	unsigned lanes_wide;
	/* Bit (1 << format) set: A16 tiles of that format with at least 2 tokens also keep
	 * x->x16 for row_dots (a variant without rows_dots and rows_acc). */
	unsigned whole16;
	/* Optional (NULL: the hls functions), the same values as those: h[i] =
	 * hmoe_fxp_swiglu_q32(gate[i], up[i]) for i < n, and hmoe_fxp_quant_group, which
	 * the driver runs per token on the activations (x and each expert's h). */
	void (*swiglu)(const int32_t *gate, const int32_t *up, int n, int64_t *h);
	hmoe_fxp_quant_fn *quant_group;
};

/* The most tokens row_acc4 takes (fp8 with remainder lists; other formats one). */
#define HMOE_FXP_ROWS4_TOKENS 4

/* rows_acc's rows per call at most, and the tiles it takes (tokens). */
#define HMOE_FXP_LANE_ROWS 4
#define HMOE_FXP_LANES_MIN_TOKENS 12

extern const struct hmoe_fxp_simd hmoe_fxp_simd_scalar;
extern const struct hmoe_fxp_simd hmoe_fxp_simd_avx2;
/* The AVX2 kernels with AVX-VNNI's 256-bit dot instructions (hmoe_fxp_cpu_avxvnni.c). */
extern const struct hmoe_fxp_simd hmoe_fxp_simd_avxvnni;
extern const struct hmoe_fxp_simd hmoe_fxp_simd_avx512;
/* What the AVX-512 variant's row_dots and rows_acc take (the AMX variants reuse both). */
#define HMOE_FXP_AVX512_WHOLE_TOKENS \
	(1u << HMOE_FXP_FP8 | 1u << HMOE_FXP_INT8 | 1u << HMOE_FXP_INT4)
#define HMOE_FXP_AVX512_LANES_WIDE (1u << HMOE_FXP_FP8)
#define HMOE_FXP_AVX512_LANES_FORMATS \
	(1u << HMOE_FXP_FP8 | 1u << HMOE_FXP_INT8 | 1u << HMOE_FXP_INT4)
/* AVX-512 plus AMX-INT8 tiles for int8 rows (rows_dots); chosen only by name
 * ($HMOE_FXP_SIMD=amx) until it has run on AMX hardware. amx-emu is the same kernel with
 * the tile instructions emulated in C, so that it is tested on any AVX-512 CPU. */
extern const struct hmoe_fxp_simd hmoe_fxp_simd_amx;
extern const struct hmoe_fxp_simd hmoe_fxp_simd_amx_emu;
extern long hmoe_fxp_amx_emu_blocks;  /* rows_dots calls of amx-emu (for the tests) */
/* rows_acc calls that avxvnni ran in its token lanes, by weight format (for the tests) */
extern long hmoe_fxp_avxvnni_lanes[HMOE_FXP_N_FORMATS];

/* The fastest supported variant, or the one named by $HMOE_FXP_SIMD (scalar, avx2,
 * avxvnni, avx512, amx, amx-emu) when set and supported. */
const struct hmoe_fxp_simd *hmoe_fxp_simd_best(void);
/* By name; NULL when unknown or not supported on this CPU. */
const struct hmoe_fxp_simd *hmoe_fxp_simd_find(const char *name);

/* A row's scale words (`scales`, the row record's little-endian scale lines) split into
 * mantissas mw[g] = w & 0xffff and exponents ew[g] = w >> 16 for g < groups rounded up to
 * 8 (mw, ew have room for that; the extra words are the lines' zero padding). AVX2 code
 * shared by the x86 variants: call only where hmoe_fxp_simd_avx2 is supported. */
void hmoe_fxp_split_scales_x86(const uint8_t *scales, int groups, uint32_t *mw, int32_t *ew);

/* The x86 kernels' plan, chosen once per process from the CPU (vendor and family): their
 * software prefetches and the fp8 lookups.
 * - fp8: whether the fp8 kernels prefetch their codes ahead at all (the VBMI kernel into
 *   L1, the others into L2). On an Emerald Rapids Xeon it makes one core's fp8 stream
 *   from DRAM 1.5x faster (the core does not overlap the decode with the loads by
 *   itself), on Zen 5 the one-token layer call 1.5x too; on Zen 4 it changes nothing for
 *   fp8 A16 and slows fp8-a8 by a fifth. So: yes, except on AMD CPUs before Zen 5
 *   (family 0x1a); HMOE_FXP_FP8_PREFETCH=0 or 1 decides instead.
 * - rows4, fp8_rows4: how far ahead of each of its four row streams the four-row
 *   one-token kernels (row_acc4; int8 and int4, and fp8 where it prefetches) prefetch,
 *   {into L2 by prefetcht1, into L1 by prefetcht0} in bytes, 0 = not at all: 1536, 768
 *   (measured best on an Intel VM), on Zen 5 L1 only, 1536 ahead (int) and 3072 (fp8).
 *   HMOE_FXP_ROWS4_PREFETCH and HMOE_FXP_FP8_ROWS4_PREFETCH ("L2,L1", multiples of 64 up
 *   to 65536) set them instead, for tuning on another machine.
 * - fp8_permi2b: whether the fp8 VBMI kernels of one to HMOE_FXP_ROWS4_TOKENS tokens
 *   (row_acc4) look a code's 7-bit magnitude up in a 128-entry table by one vpermi2b
 *   rather than two 64-entry vpermb merged under a test of the code's bit 6. On Zen 5 a
 *   vpermi2b is one op at two per cycle, as a vpermb is (one-token rows from L1
 *   1.08-1.13x); on Intel cores it is three uops. So: on AMD family 0x1a and later;
 *   HMOE_FXP_FP8_PERMI2B=0 or 1 decides instead (the results are the same either way).
 * - one_token_items: how many times larger (1, 2, 4 or 8) than usual the MoE driver
 *   makes its work items in a layer call whose tiles all hold one token of int8 or int4
 *   on a variant with four-row kernels, as long as each thread keeps enough of them
 *   (hmoe_fxp_moe_run): the four streams of a four-row call then restart less often,
 *   which their arithmetic makes costly (on the Zen 5 dev VM 4x: int8 1.02-1.10x, int4
 *   1.08-1.12x; fp8 and tiles of more tokens gained nothing and keep 1x, except
 *   fp8-a8 calls without the remainder lists (fp8_a8_lists below), which take this
 *   factor: 1.02-1.07x at 4x). 4 everywhere, measured on that VM only;
 *   HMOE_FXP_ONE_TOKEN_ITEMS sets it instead (the results are the same either way).
 * - one_token_items_int4: the same for int4 (1, 2, 4, 8 or 16), whose rows are half as
 *   long: on the Zen 5 dev VM 16x read 1.03-1.08x as fast as 4x (paired, two threads;
 *   1.02-1.05x with one), 8x 0.98-1.05x, where int8 gained nothing past 4x. 16
 *   everywhere, measured on that VM only; HMOE_FXP_ONE_TOKEN_ITEMS_INT4 sets it.
 * - fp8_a8_lists: whether one-token fp8-a8 rows (one activation plane) take the two-byte
 *   kernel with the packs' remainder lists, as fp8 A16 and tiles of 2-8 tokens do, or
 *   the three-digit kernel without them. A8 saves one product per 64 codes by the two
 *   bytes (three instead of four with A16's two), and the lists' sums cost more than
 *   that where the core has time to spare: on the Zen 5 dev VM the three digits read
 *   1.02-1.04x as fast from DRAM (two threads, paired in one process; 1.05-1.09x in the
 *   twenty-sixth session), 0.99x with one thread, though 0.80-0.83x in the cache. So:
 *   off on AMD family 0x1a and later, on elsewhere (not measured there);
 *   HMOE_FXP_FP8_A8_LISTS=0 or 1 decides instead (the results are the same either way).
 * An override that does not parse is named on stderr and the default kept. */
#define HMOE_FXP_ROWS4_PF_L2 1536  /* the four-row distances' defaults (fp8 tiles of */
#define HMOE_FXP_ROWS4_PF_L1 768   /* 2-4 tokens always take these) */
struct hmoe_fxp_plan {
	int fp8;
	int rows4[2];
	int fp8_rows4[2];
	int fp8_permi2b;
	int one_token_items;
	int one_token_items_int4;
	int fp8_a8_lists;
};
const struct hmoe_fxp_plan *hmoe_fxp_plan(void);

/* hmoe_fxp_plan()->fp8. */
int hmoe_fxp_fp8_prefetch(void);

/* A16 dots of one-plane rows (n_tokens * 2, groups), token t's hi and lo at rows 2t and
 * 2t + 1 -> whole tokens' 128 * hi + lo at row t, in place. */
void hmoe_fxp_combine_planes(int64_t *dots, int n_tokens, int groups);

/* One expert over one tile with a given variant, single-threaded: same inputs and
 * outputs as hmoe_ffn(), mode included (the tests compare them bit for bit). */
int hmoe_fxp_cpu_ffn(const struct hmoe_fxp_simd *simd, const struct hmoe_fxp_line *wpack,
		     const int8_t *xq, const int32_t *xs, int32_t *y, int mode, int n_tokens,
		     int dim, int inter);

/* The routed experts of one MoE layer, packed. */
struct hmoe_fxp_experts {
	int mode;         /* kernel mode: weight format | optional HMOE_FXP_A16 */
	int dim, inter, n_experts;
	const struct hmoe_fxp_line *const *packs; /* [n_experts] packs of the mode's format;
						   * NULL: not resident */
	/* NULL, or [n_experts] (fp8): each pack's remainder lists (hmoe_fxp_fp8_fix_build)
	 * or NULL; with them tiles of up to 8 tokens take the two-byte kernel where the
	 * variant has one (hmoe_fxp_simd_fp8_lists) */
	const struct hmoe_fxp_fp8_fix *const *fixes;
};

/* Work memory kept between calls (tiles, per-thread rows); grows as needed. */
struct hmoe_fxp_ws;
void hmoe_fxp_ws_free(struct hmoe_fxp_ws *ws);
/* The last layer call's work items through ws: rows[0] rows of W1 and W3 (up), rows[1]
 * of W2 (down) per item; 0, 0 before the first call. */
void hmoe_fxp_ws_item_rows(const struct hmoe_fxp_ws *ws, int rows[2]);

/* y (n_tokens, top_k, dim) = unweighted expert outputs for x (n_tokens, dim) and
 * expert_ids (n_tokens, top_k), threaded over (expert, tile, rows) on pool. *ws: NULL
 * the first time (then allocated); NULL ws: temporary memory for this call only. */
int hmoe_fxp_moe_run(const struct hmoe_fxp_experts *ex, const struct hmoe_fxp_simd *simd,
		     struct hmoe_pool *pool, struct hmoe_fxp_ws **ws, int n_tokens, int top_k,
		     const float *x, const int *expert_ids, float *y);
/* The same with the activations already quantised by the contract quantiser for the
 * mode's planes (hmoe_fxp_quant_x): xq (n_tokens, planes, groups * 128), xs (n_tokens,
 * groups), e.g. on the GPU; x is then unused and may be NULL. xq or xs NULL: each token
 * of x is quantised once here (what hmoe_fxp_moe_run does). */
int hmoe_fxp_moe_run_q(const struct hmoe_fxp_experts *ex, const struct hmoe_fxp_simd *simd,
		       struct hmoe_pool *pool, struct hmoe_fxp_ws **ws, int n_tokens,
		       int top_k, const float *x, const int8_t *xq, const int32_t *xs,
		       const int *expert_ids, float *y);

/* The one-token kernels' rate with their weights in the cache (for `bench experts`):
 * every thread of pool runs, again and again, a one-token tile's up rows over the first
 * 32 rows of W1 and W3 and its down rows over the first 128 rows of W2 of resident expert
 * `expert` (fewer, a multiple of 4, in smaller linears; ~0.75 MB of fp8 or int8 weights
 * at V3's dims, which the core's cache keeps), after one warm-up run, on the paths
 * and variant (simd) a one-token layer call takes; *bytes_per_s: the row records' bytes
 * those passes read per second, all threads together (best of 3 runs of ~min_time / 3).
 * Set beside the machine's read bandwidth it says what bounds a one-token call: a rate
 * below the bandwidth means the kernels, not the memory, set the pace. */
int hmoe_fxp_hot_rate(const struct hmoe_fxp_experts *ex, const struct hmoe_fxp_simd *simd,
		      struct hmoe_pool *pool, int expert, double min_time, double *bytes_per_s);

#endif
