/* hmoe_fxp_cpu_amx: int8 rows through AMX-INT8 tiles (see hmoe_fxp_cpu.h).
 *
 * The variant is the AVX-512 one (hmoe_fxp_cpu_avx512.c, its token-lane path for fp8 and
 * int4 prefill included) plus rows_dots for int8: 16
 * weight rows at a time against up to 16 tokens per tile multiply. Per group of 128
 * columns and chunk of tokens:
 *   A0, A1 (tiles 0, 1): the block's rows, columns 0-63 and 64-127, loaded straight from
 *          the pack (one tile row per weight row, the row records' stride);
 *   B      (tiles 2-5): the tokens' planes as hmoe_fxp_x_vnni lays them out (hi: 2, 3;
 *          lo: 4, 5), tile row r holding columns 4r .. 4r + 3 of each token;
 *   C      (tiles 6, 7): C[n][t] += sum_k q[n][k] * x[t][k] by TDPBSSD (signed x signed),
 *          one tile per plane.
 * A C entry is one plane's group dot, |.| <= 128 * 128 * 128 = 2^21, so int32 holds it;
 * the two planes combine as 128 * hi + lo in int64 when C is read back. The tile
 * multiply is exact integer arithmetic, so the dots equal the scalar kernel's.
 *
 * AMX needs the CPU (AMX-TILE, AMX-INT8) and the OS's permission for the tile state
 * (arch_prctl ARCH_REQ_XCOMP_PERM, Linux >= 5.16). amx-emu runs the same kernel with the
 * four tile instructions it uses emulated in C (emu_*), which checks the tile shapes like
 * the hardware would and lets the tests run it anywhere the AVX-512 variant runs.
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "hmoe_fxp_cpu.h"

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

/* ---- the tile configuration (palette 1) -------------------------------------------- */

struct tile_config {
	uint8_t palette_id;
	uint8_t start_row;
	uint8_t reserved[14];
	uint16_t colsb[16];  /* bytes per row of tile i */
	uint8_t rows[16];
};

/* Tiles 0, 1: nr rows of 64 bytes; 2-5: 16 rows of 4N bytes; 6, 7: nr rows of 4N bytes. */
static void tile_shapes(struct tile_config *cfg, int nr, int n_tok)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->palette_id = 1;
	for (int i = 0; i < 8; i++) {
		cfg->rows[i] = (uint8_t)(i < 2 || i >= 6 ? nr : 16);
		cfg->colsb[i] = (uint16_t)(i < 2 ? 64 : 4 * n_tok);
	}
}

/* ---- the emulation ------------------------------------------------------------------- */

static _Thread_local struct {
	struct tile_config cfg;
	int32_t t[8][16][16];  /* 16 rows of 64 bytes each */
} emu;

long hmoe_fxp_amx_emu_blocks;

/* A tile shape the hardware would refuse (#UD) is a bug here: stop loudly. */
static void emu_check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "hmoe: amx-emu: tile shapes break the TDPBSSD rules (%s)\n", what);
		abort();
	}
}

static void emu_zero(int i)
{
	memset(emu.t[i], 0, sizeof(emu.t[i]));
}

static void emu_load(int i, const void *base, size_t stride)
{
	emu_zero(i);
	for (int r = 0; r < emu.cfg.rows[i]; r++)
		memcpy(emu.t[i][r], (const uint8_t *)base + r * stride, emu.cfg.colsb[i]);
}

static void emu_store(int i, void *base, size_t stride)
{
	for (int r = 0; r < emu.cfg.rows[i]; r++)
		memcpy((uint8_t *)base + r * stride, emu.t[i][r], emu.cfg.colsb[i]);
}

/* C[m][n] += sum_k sum_i A[m][4k + i] * B[k][4n + i], int8 x int8 -> int32 (wrapping). */
static void emu_dpbssd(int c, int a, int b)
{
	const struct tile_config *f = &emu.cfg;

	emu_check(f->rows[c] == f->rows[a], "A rows != C rows");
	emu_check(f->colsb[a] / 4 == f->rows[b], "A columns / 4 != B rows");
	emu_check(f->colsb[b] == f->colsb[c], "B columns != C columns");
	for (int m = 0; m < f->rows[c]; m++)
		for (int n = 0; n < f->colsb[c] / 4; n++) {
			uint32_t acc = (uint32_t)emu.t[c][m][n];

			for (int k = 0; k < f->colsb[a] / 4; k++)
				for (int i = 0; i < 4; i++)
					acc += (uint32_t)((int32_t)((const int8_t *)emu.t[a][m])[4 * k + i] *
							  ((const int8_t *)emu.t[b][k])[4 * n + i]);
			emu.t[c][m][n] = (int32_t)acc;
		}
}

/* ---- the kernel ------------------------------------------------------------------------ */

/* The tile operations, real or emulated (E constant, so the other branch is not compiled
 * in); tile numbers must be constants for the intrinsics. */
#define T_OP(E, emu_call, tile_call) \
	do {                              \
		if (E)                    \
			emu_call;         \
		else                      \
			tile_call;        \
	} while (0)
#define T_CONFIG(E, c) T_OP(E, emu.cfg = *(c), _tile_loadconfig(c))
#define T_ZERO(E, i) T_OP(E, emu_zero(i), _tile_zero(i))
#define T_LOAD(E, i, p, s) T_OP(E, emu_load(i, p, s), _tile_loadd(i, p, s))
#define T_STORE(E, i, p, s) T_OP(E, emu_store(i, p, s), _tile_stored(i, p, s))
#define T_DP(E, c, a, b) T_OP(E, emu_dpbssd(c, a, b), _tile_dpbssd(c, a, b))
#define T_RELEASE(E) T_OP(E, (void)0, _tile_release())

static inline __attribute__((always_inline)) void
rows_dots_tiles(const uint8_t *codes, size_t row_stride, int nr,
		const struct hmoe_fxp_xtile *x, int64_t *dots, const int E)
{
	int G = x->groups, T = x->n_tokens, P = x->planes;
	_Alignas(64) int32_t ch[16][16], cl[16][16];
	_Alignas(64) struct tile_config cfg;

	for (int c = 0; c * HMOE_FXP_BLOCK_ROWS < T; c++) {
		int t0 = c * HMOE_FXP_BLOCK_ROWS;
		int n_tok = T - t0 < HMOE_FXP_BLOCK_ROWS ? T - t0 : HMOE_FXP_BLOCK_ROWS;

		tile_shapes(&cfg, nr, n_tok);
		T_CONFIG(E, &cfg);
		for (int g = 0; g < G; g++) {
			const int8_t *xh = x->xv + ((size_t)(c * P) * G + g) * 2 * 1024;
			const uint8_t *a = codes + (size_t)g * HMOE_FXP_GROUP;

			T_LOAD(E, 0, a, row_stride);
			T_LOAD(E, 1, a + 64, row_stride);
			T_ZERO(E, 6);
			T_LOAD(E, 2, xh, 64);
			T_LOAD(E, 3, xh + 1024, 64);
			T_DP(E, 6, 0, 2);
			T_DP(E, 6, 1, 3);
			T_STORE(E, 6, ch, 64);
			if (P == 2) {
				const int8_t *xl = x->xv + ((size_t)(c * P + 1) * G + g) * 2 * 1024;

				T_ZERO(E, 7);
				T_LOAD(E, 4, xl, 64);
				T_LOAD(E, 5, xl + 1024, 64);
				T_DP(E, 7, 0, 4);
				T_DP(E, 7, 1, 5);
				T_STORE(E, 7, cl, 64);
			}
			for (int n = 0; n < nr; n++) {
				int64_t *d = dots + ((size_t)n * T + t0) * G + g;

				for (int t = 0; t < n_tok; t++)
					d[(size_t)t * G] = P == 2 ? (int64_t)ch[n][t] * 128 + cl[n][t]
								  : ch[n][t];
			}
		}
	}
	T_RELEASE(E);
}

static void amx_rows_dots(const uint8_t *codes, size_t row_stride, int n_rows,
			  const struct hmoe_fxp_xtile *x, int64_t *dots)
{
	rows_dots_tiles(codes, row_stride, n_rows, x, dots, 0);
}

static void amx_emu_rows_dots(const uint8_t *codes, size_t row_stride, int n_rows,
			      const struct hmoe_fxp_xtile *x, int64_t *dots)
{
	__atomic_fetch_add(&hmoe_fxp_amx_emu_blocks, 1, __ATOMIC_RELAXED);
	rows_dots_tiles(codes, row_stride, n_rows, x, dots, 1);
}

/* ---- the variants: AVX-512 for everything else ------------------------------------------ */

static int amx_ok;
static pthread_once_t amx_once = PTHREAD_ONCE_INIT;

static void amx_probe(void)
{
	__builtin_cpu_init();
	amx_ok = hmoe_fxp_simd_avx512.supported() && __builtin_cpu_supports("amx-tile") &&
		 __builtin_cpu_supports("amx-int8") &&
		 syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

static int amx_supported(void)
{
	pthread_once(&amx_once, amx_probe);
	return amx_ok;
}

static int amx_emu_supported(void)
{
	return hmoe_fxp_simd_avx512.supported();
}

static void amx_row_dots(const uint8_t *codes, int format, const struct hmoe_fxp_xtile *x,
			 int64_t *dots, void *tmp)
{
	hmoe_fxp_simd_avx512.row_dots(codes, format, x, dots, tmp);
}

static void amx_row_terms(const int64_t *dots, const uint8_t *scales,
			  const struct hmoe_fxp_xtile *x, int64_t *acc)
{
	hmoe_fxp_simd_avx512.row_terms(dots, scales, x, acc);
}

static void amx_row_dots2(const uint8_t *codes_a, const uint8_t *codes_b, int format,
			  const struct hmoe_fxp_xtile *x, int64_t *dots_a, int64_t *dots_b)
{
	hmoe_fxp_simd_avx512.row_dots2(codes_a, codes_b, format, x, dots_a, dots_b);
}

static int amx_row_acc4(const uint8_t *const *rows, size_t stride, int n, int format, int in,
			const struct hmoe_fxp_xtile *x, const struct hmoe_fxp_rowfix *fix,
			const struct hmoe_fxp_rows4_out *out)
{
	return hmoe_fxp_simd_avx512.row_acc4(rows, stride, n, format, in, x, fix, out);
}

static int amx_fp8_lists(void)
{
	return hmoe_fxp_simd_avx512.fp8_lists();
}

static int amx_rows_acc(const uint8_t *rows, size_t row_stride, int n_rows, int format,
			int in, const struct hmoe_fxp_xtile *x, int64_t *acc, void *tmp)
{
	return hmoe_fxp_simd_avx512.rows_acc(rows, row_stride, n_rows, format, in, x, acc, tmp);
}

static void amx_swiglu(const int32_t *gate, const int32_t *up, int n, int64_t *h)
{
	hmoe_fxp_simd_avx512.swiglu(gate, up, n, h);
}

static int32_t amx_quant_group(const int64_t *v, int32_t n, int32_t planes, int8_t *hi,
			       int8_t *lo)
{
	return hmoe_fxp_simd_avx512.quant_group(v, n, planes, hi, lo);
}

/* The two AMX variants differ in their name, availability and tile kernel (real or
 * emulated); everything else is the AVX-512 variant's. */
#define AMX_VARIANT(NAME, SUPPORTED, ROWS_DOTS)                                \
	{                                                                      \
		.name = NAME, .supported = SUPPORTED, .row_dots = amx_row_dots,  \
		.row_terms = amx_row_terms, .row_dots2 = amx_row_dots2,        \
		.row_acc4 = amx_row_acc4, .fp8_lists = amx_fp8_lists,          \
		.rows_dots = ROWS_DOTS,                                        \
		.rows_acc = amx_rows_acc,                                      \
		.whole_tokens = HMOE_FXP_AVX512_WHOLE_TOKENS,                  \
		.lanes_min_tokens = HMOE_FXP_LANES_MIN_TOKENS,                 \
		.lanes_wide = HMOE_FXP_AVX512_LANES_WIDE,                      \
		.lanes_formats = HMOE_FXP_AVX512_LANES_FORMATS,                \
		.lanes_step = HMOE_FXP_BLOCK_ROWS,                             \
		.lanes_part_tokens = HMOE_FXP_LANES_MIN_TOKENS,                \
		.swiglu = amx_swiglu, .quant_group = amx_quant_group,          \
	}

const struct hmoe_fxp_simd hmoe_fxp_simd_amx =
	AMX_VARIANT("amx", amx_supported, amx_rows_dots);
const struct hmoe_fxp_simd hmoe_fxp_simd_amx_emu =
	AMX_VARIANT("amx-emu", amx_emu_supported, amx_emu_rows_dots);
