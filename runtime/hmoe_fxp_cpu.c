/* hmoe_fxp_cpu: the CPU fixed-point expert path (see hmoe_fxp_cpu.h).
 *
 * Every variant only accelerates the exact int64 group dots; the rest (scale terms,
 * Q16 conversion, SiLU, SwiGLU, requantisation) calls the hls/ building blocks, in the
 * same order as hmoe_ffn() (row_acc4's Q16 conversion is hmoe_fxp_acc_to_q16_nb, the
 * same bits without a branch, tested against the hls one). Exact integers have one
 * value however they are summed, so bit-identity with the scalar kernel follows from the
 * dots being exact: the bounds that keep each variant's lanes from overflowing are
 * written at each variant.
 *
 * Activations in mode A16 have two int8 planes per token (hi, lo; q = 128 hi + lo),
 * stored back to back, so a tile of n tokens is, for the dot products, a tile of 2n
 * one-plane rows: a variant sees them so unless it takes the format's tokens whole
 * (whole_tokens), and linear_row() then combines the two rows' dots of a token as
 * 128 * hi + lo before the epilogue runs per token. A variant with rows_dots (AMX) runs
 * int8 linears 16 rows at a time, with the tile's activations also kept in its layout;
 * one with row_acc4 runs a one-token tile's rows four at a time, rows far apart in
 * memory, dots and terms fused, in runs of such quads that write their own Q16 results
 * (linear_rows4, up_rows_tokens, down_rows_tokens; AVX-512: int8, int4,
 * and fp8 where the CPU has VBMI, by two bytes per code where the expert has remainder
 * lists, hmoe_fxp_fp8_fix, and then fp8 tiles of up to 8 tokens too; rows it declines
 * go one at a time).
 */
#include "hmoe_fxp_cpu.h"

#include <errno.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmoe_clock.h"
#include "hmoe_err.h"
#include "hmoe_fxp_pack.h"
#include "hmoe_pool.h"

/* ---- the four-row fp8 kernel's remainder lists ---------------------------------------- */

/* The entries of codes k0 .. k1 - 1. */
static int fix_codes(const uint8_t *codes, int k0, int k1, uint16_t *ent)
{
	int n = 0;

	for (int k = k0; k < k1; k++) {
		int32_t q = hmoe_fxp_fp8_q[codes[k]];
		int32_t r = (q < 0 ? -q : q) & 3;

		if (r)
			ent[n++] = (uint16_t)(k << 3 | (q < 0) << 2 | r);
	}
	return n;
}

/* Eight codes at a time: only a code with exponent bits 6 and 5 clear (E <= 3) can have a
 * remainder, and a word holding none (a zero byte of w & 0x60.., found exactly by the
 * classic test) is skipped: about 10x faster than the table for each code, since
 * cpu-fxp builds the lists of every pack at load (a checkpoint: 1 word in 100 or so is
 * looked at). */
int hmoe_fxp_fp8_fix_row(const uint8_t *row, int in, uint16_t *ent)
{
	const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
	const uint8_t *codes = row + (size_t)hmoe_fxp_scale_lines(in) * HMOE_FXP_LINE_BYTES;
	int n = 0, k = 0;

	for (; k + 8 <= in; k += 8) {
		uint64_t w, t;

		memcpy(&w, codes + k, 8);
		t = w & 0x6060606060606060ull;
		if ((t - ones) & ~t & highs)
			n += fix_codes(codes, k, k + 8, ent + n);
	}
	return n + fix_codes(codes, k, in, ent + n);
}

struct hmoe_fxp_fp8_fix *hmoe_fxp_fp8_fix_build(const struct hmoe_fxp_line *pack, int dim,
						int inter, size_t limit)
{
	int rows = 2 * inter + dim;
	size_t cap = 0, n = 0;
	struct hmoe_fxp_fp8_fix *f;
	uint16_t row_ent[HMOE_FXP_MAX_DIM];
	const uint8_t *p = (const uint8_t *)pack;

	if (dim < 1 || dim > HMOE_FXP_MAX_DIM || inter < 1 || inter > HMOE_FXP_MAX_INTER) {
		errno = EINVAL;
		return NULL;
	}
	f = calloc(1, sizeof(*f));
	if (!f || !(f->start = malloc(sizeof(*f->start) * ((size_t)rows + 1))))
		goto nomem;
	f->dim = dim;
	f->inter = inter;
	for (int i = 0; i < rows; i++) {
		int in = i < 2 * inter ? dim : inter;
		int c = hmoe_fxp_fp8_fix_row(p, in, row_ent);

		p += (size_t)hmoe_fxp_row_lines(HMOE_FXP_FP8, in) * HMOE_FXP_LINE_BYTES;
		f->start[i] = (uint32_t)n;
		if (limit && n + (size_t)c > limit) {
			hmoe_fxp_fp8_fix_free(f);
			errno = 0;
			return NULL;
		}
		if (n + (size_t)c > cap) {
			size_t ncap = cap ? 2 * cap : 4096;
			uint16_t *e;

			while (ncap < n + (size_t)c)
				ncap *= 2;
			if (!(e = realloc(f->ent, sizeof(*e) * ncap)))
				goto nomem;
			f->ent = e;
			cap = ncap;
		}
		if (c)
			memcpy(f->ent + n, row_ent, sizeof(*row_ent) * (size_t)c);
		n += (size_t)c;
	}
	f->start[rows] = (uint32_t)n;
	return f;
nomem:
	hmoe_fxp_fp8_fix_free(f);
	errno = ENOMEM;
	return NULL;
}

void hmoe_fxp_fp8_fix_free(struct hmoe_fxp_fp8_fix *fix)
{
	if (!fix)
		return;
	free(fix->start);
	free(fix->ent);
	free(fix);
}

int hmoe_fxp_simd_fp8_lists(const struct hmoe_fxp_simd *simd)
{
	return simd->fp8_lists && simd->fp8_lists();
}

/* Whether expert e's remainder lists (if any) are of an fp8 pack of ex's dims. */
static int fix_fits(const struct hmoe_fxp_experts *ex, int e)
{
	const struct hmoe_fxp_fp8_fix *f = ex->fixes ? ex->fixes[e] : NULL;

	return !f || (hmoe_fxp_mode_format(ex->mode) == HMOE_FXP_FP8 && f->dim == ex->dim &&
		      f->inter == ex->inter);
}

/* ---- variants ---------------------------------------------------------------------- */

static int scalar_supported(void)
{
	return 1;
}

static void scalar_row_dots(const uint8_t *codes, int format, const struct hmoe_fxp_xtile *x,
			    int64_t *dots, void *tmp)
{
	int stride = x->groups * HMOE_FXP_GROUP, gbytes = hmoe_fxp_group_bytes(format);

	(void)tmp;
	for (int t = 0; t < x->n_tokens; t++)
		for (int g = 0; g < x->groups; g++)
			dots[t * x->groups + g] = hmoe_fxp_dot_group(
				codes + g * gbytes, format, x->xq + t * stride + g * HMOE_FXP_GROUP);
}

const struct hmoe_fxp_simd hmoe_fxp_simd_scalar = {
	.name = "scalar",
	.supported = scalar_supported,
	.row_dots = scalar_row_dots,
};

/* Fastest first; the last two are chosen only by name (hmoe_fxp_cpu.h). */
static const struct hmoe_fxp_simd *const variants[] = {
	&hmoe_fxp_simd_avx512,
	&hmoe_fxp_simd_avxvnni,
	&hmoe_fxp_simd_avx2,
	&hmoe_fxp_simd_scalar,
	&hmoe_fxp_simd_amx,
	&hmoe_fxp_simd_amx_emu,
};
#define N_AUTO_VARIANTS 4

static int has_variant(const char *name)
{
	for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++)
		if (!strcmp(variants[i]->name, name))
			return 1;
	return 0;
}

const struct hmoe_fxp_simd *hmoe_fxp_simd_find(const char *name)
{
	for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++)
		if (!strcmp(variants[i]->name, name))
			return variants[i]->supported() ? variants[i] : NULL;
	return NULL;
}

const struct hmoe_fxp_simd *hmoe_fxp_simd_best(void)
{
	static int warned;
	const char *want = getenv("HMOE_FXP_SIMD");
	const struct hmoe_fxp_simd *v = NULL;

	if (want && *want && (v = hmoe_fxp_simd_find(want)))
		return v;
	for (size_t i = 0; i < N_AUTO_VARIANTS && !v; i++)
		if (variants[i]->supported())
			v = variants[i];
	if (!v)
		v = &hmoe_fxp_simd_scalar;
	if (want && *want && !__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
		fprintf(stderr, "hmoe: HMOE_FXP_SIMD=%s is %s; using %s\n", want,
			has_variant(want) ? "not supported on this CPU or OS" :
			"unknown (scalar, avx2, avxvnni, avx512, amx, amx-emu)", v->name);
	return v;
}

/* The plan (hmoe_fxp_cpu.h), chosen once per process. The four-row distances:
 * on the Intel dev VM (twelfth session) 1.5 KiB into L2 and 768 B into L1 read the most
 * of the bandwidth; on the Zen 5 dev VM (eighteenth session, paired layer calls in one
 * process, bench/results/..._zen5-2vcpu_7bf3c05) L1 alone against those: int8 1.10x,
 * int8-a8 1.055x, int4 1.025x at 1536 B ahead, fp8 A16 1.04x at 1536 and another
 * 1.05-1.07x at 3 KiB (fp8-a8 1.06x over T1 4 KiB + T0 1.5 KiB), and its fp8 prefetch,
 * which Zen 4 did without, about 1.5x (docs/fxp.md section 3). */
static struct hmoe_fxp_plan cpu_plan = {
	.fp8 = 1,
	.rows4 = { HMOE_FXP_ROWS4_PF_L2, HMOE_FXP_ROWS4_PF_L1 },
	.fp8_rows4 = { HMOE_FXP_ROWS4_PF_L2, HMOE_FXP_ROWS4_PF_L1 },
	.one_token_items = 4,
	.one_token_items_int4 = 16,
	.fp8_a8_lists = 1,
};
static pthread_once_t plan_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__) || defined(__i386__)
/* The CPU's family (base + extended), 0 where CPUID leaf 1 is missing. */
static unsigned cpu_family(void)
{
	unsigned a, b, c, d, fam;

	if (!__get_cpuid(1, &a, &b, &c, &d))
		return 0;
	fam = (a >> 8) & 0xf;
	return fam == 0xf ? fam + ((a >> 20) & 0xff) : fam;
}
#endif

/* $name as "L2,L1": two byte distances, whole lines, at most 64 KiB; anything else is
 * named on stderr once and the default kept. */
static void prefetch_env(const char *name, int out[2])
{
	const char *env = getenv(name), *p;
	long v[2] = { -1, -1 };
	int ok = 1;

	if (!env || !*env)
		return;
	p = env;
	for (int k = 0; k < 2 && ok; k++) {
		char *end;

		errno = 0;
		v[k] = *p >= '0' && *p <= '9' ? strtol(p, &end, 10) : -1;
		ok = v[k] >= 0 && !errno && v[k] <= 65536 && v[k] % HMOE_FXP_LINE_BYTES == 0 &&
		     *end == (k ? '\0' : ',');
		p = end + 1;
	}
	if (!ok) {
		fprintf(stderr, "hmoe: %s=%s is not two byte distances \"L2,L1\" (multiples "
			"of %d, 0 to 65536); using %d,%d\n", name, env, HMOE_FXP_LINE_BYTES,
			out[0], out[1]);
		return;
	}
	out[0] = (int)v[0];
	out[1] = (int)v[1];
}

/* $name as 0 or 1 into *out; anything else is named on stderr and *out kept. */
static void flag_env(const char *name, int *out)
{
	const char *env = getenv(name);

	if (env && (!strcmp(env, "0") || !strcmp(env, "1")))
		*out = env[0] == '1';
	else if (env && *env)
		fprintf(stderr, "hmoe: %s=%s is not 0 or 1; using %d\n", name, env, *out);
}

/* $name as a power of two from 1 to max into *out; anything else is named on stderr with
 * the values it may take, and *out kept. */
static void scale_env(const char *name, int max, int *out)
{
	const char *env = getenv(name);
	char ok[32] = "";

	if (!env || !*env)
		return;
	for (int v = 1; v <= max; v *= 2) {
		char s[8];

		snprintf(s, sizeof(s), "%d", v);
		if (!strcmp(env, s)) {
			*out = v;
			return;
		}
		snprintf(ok + strlen(ok), sizeof(ok) - strlen(ok), "%s%d",
			 v == 1 ? "" : v == max ? " or " : ", ", v);
	}
	fprintf(stderr, "hmoe: %s=%s is not %s; using %d\n", name, env, ok, *out);
}

static void plan_init(void)
{
	struct hmoe_fxp_plan *p = &cpu_plan;

#if defined(__x86_64__) || defined(__i386__)
	__builtin_cpu_init();
	if (__builtin_cpu_is("amd") && cpu_family() >= 0x1a) {  /* Zen 5 and later */
		p->rows4[0] = 0;
		p->rows4[1] = 1536;
		p->fp8_rows4[0] = 0;
		p->fp8_rows4[1] = 3072;
		p->fp8_permi2b = 1;
		p->fp8_a8_lists = 0;
	} else if (__builtin_cpu_is("amd")) {  /* Zen 4 (and older): fp8 without */
		p->fp8 = 0;
	}
#endif
	flag_env("HMOE_FXP_FP8_PREFETCH", &p->fp8);
	flag_env("HMOE_FXP_FP8_PERMI2B", &p->fp8_permi2b);
	flag_env("HMOE_FXP_FP8_A8_LISTS", &p->fp8_a8_lists);
	prefetch_env("HMOE_FXP_ROWS4_PREFETCH", p->rows4);
	prefetch_env("HMOE_FXP_FP8_ROWS4_PREFETCH", p->fp8_rows4);
	scale_env("HMOE_FXP_ONE_TOKEN_ITEMS", 8, &p->one_token_items);
	scale_env("HMOE_FXP_ONE_TOKEN_ITEMS_INT4", 16, &p->one_token_items_int4);
}

const struct hmoe_fxp_plan *hmoe_fxp_plan(void)
{
	pthread_once(&plan_once, plan_init);
	return &cpu_plan;
}

int hmoe_fxp_fp8_prefetch(void)
{
	return hmoe_fxp_plan()->fp8;
}

/* ---- the epilogue, shared by every variant ------------------------------------------ */

static void scalar_row_terms(const int64_t *dots, const uint8_t *scales,
			     const struct hmoe_fxp_xtile *x, int64_t *acc)
{
	uint32_t mw[HMOE_FXP_MAX_IN_GROUPS];
	int32_t ew[HMOE_FXP_MAX_IN_GROUPS];
	int groups = x->groups;

	for (int g = 0; g < groups; g++) {
		int32_t w = hmoe_fxp_row_scale(scales, g);

		mw[g] = hmoe_fxp_scale_m(w);
		ew[g] = hmoe_fxp_scale_e(w);
	}
	for (int t = 0; t < x->n_tokens; t++) {
		const int64_t *d = dots + t * groups;
		const uint32_t *xm = x->xm + t * groups;
		const int32_t *xe = x->xe + t * groups;
		int64_t a = 0;

		for (int g = 0; g < groups; g++)
			a += hmoe_fxp_term_split(d[g], mw[g] * xm[g], ew[g] + xe[g]);
		acc[t] = a;
	}
}

/* One row against every token of x, from its dots: acc = sum_g term, Q24 -> Q16. The
 * tile's scale words are split at tile set-up (hmoe_fxp_term_split is hmoe_fxp_term
 * with the decoding hoisted), the row's by row_terms. */
static void row_epilogue(const struct hmoe_fxp_simd *simd, const uint8_t *row,
			 const int64_t *dots, const struct hmoe_fxp_xtile *x, int32_t *q16,
			 int stride)
{
	int64_t acc[HMOE_FXP_TILE];

	(simd->row_terms ? simd->row_terms : scalar_row_terms)(dots, row, x, acc);
	for (int t = 0; t < x->n_tokens; t++)
		q16[t * stride] = hmoe_fxp_acc_to_q16(acc[t]);
}

/* Token t's group g: sums of its planes' quantised activations (sums[p * groups + g]),
 * split scale (xm[g], xe[g]) from its scale word. q (planes, groups * 128). Returns 1
 * when some q of the group is -128 (see hmoe_fxp_xtile.has_m128), else 0. */
static int group_prepare(const int8_t *q, int32_t scale, int planes, int groups, int g,
			 int32_t *sums, uint32_t *xm, int32_t *xe)
{
	int lowest = 0;

	for (int p = 0; p < planes; p++) {
		const int8_t *v = q + ((size_t)p * groups + g) * HMOE_FXP_GROUP;
		int32_t sum = 0;

		for (int k = 0; k < HMOE_FXP_GROUP; k++) {
			sum += v[k];
			lowest = v[k] < lowest ? v[k] : lowest;
		}
		sums[p * groups + g] = sum;
	}
	xm[g] = hmoe_fxp_scale_m(scale) & 0xffu;
	xe[g] = hmoe_fxp_scale_e(scale) - HMOE_FXP_F_ACC;
	return lowest == -128;
}

/* The same for every group of n_tokens tokens: q (n_tokens, planes, groups * 128),
 * scales, xm, xe (n_tokens, groups), sums (n_tokens, planes, groups). Returns 1 when some
 * q is -128, else 0. */
static int tile_prepare(const int8_t *q, const int32_t *scales, int n_tokens, int planes,
			int groups, int32_t *sums, uint32_t *xm, int32_t *xe)
{
	size_t row = (size_t)planes * groups * HMOE_FXP_GROUP;
	int m128 = 0;

	for (int t = 0; t < n_tokens; t++)
		for (int g = 0; g < groups; g++)
			m128 |= group_prepare(q + t * row, scales[t * groups + g], planes, groups, g,
					      sums + (size_t)t * planes * groups, xm + t * groups,
					      xe + t * groups);
	return m128;
}

size_t hmoe_fxp_x_vnni_bytes(int n_tokens, int planes, int groups)
{
	int chunks = (n_tokens + HMOE_FXP_BLOCK_ROWS - 1) / HMOE_FXP_BLOCK_ROWS;

	return (size_t)chunks * planes * groups * 2 * 1024;
}

/* Token t's lanes in hmoe_fxp_x_wide's layout: 1, or 2 in a paired last chunk, or 0 for a
 * token the paired chunk leaves out (its 9th and later). */
static int chunk_lanes(int n_tokens, int paired, int t)
{
	int last = (n_tokens - 1) / HMOE_FXP_BLOCK_ROWS;

	if (!paired || t / HMOE_FXP_BLOCK_ROWS != last)
		return 1;
	return t % HMOE_FXP_BLOCK_ROWS < 8 ? 2 : 0;
}

void hmoe_fxp_x_vnni(const int8_t *xq, int n_tokens, int planes, int groups, int flip,
		     int8_t *xv)
{
	size_t plane = (size_t)groups * HMOE_FXP_GROUP;
	uint32_t mask = flip ? 0x80808080u : 0;

	if (n_tokens % HMOE_FXP_BLOCK_ROWS)  /* absent tokens' lanes: x = 0 */
		memset(xv, flip ? 0x80 : 0, hmoe_fxp_x_vnni_bytes(n_tokens, planes, groups));
	for (int t = 0; t < n_tokens; t++)
		for (int p = 0; p < planes; p++) {
			const int8_t *row = xq + ((size_t)t * planes + p) * plane;
			int c = t / HMOE_FXP_BLOCK_ROWS, tc = t % HMOE_FXP_BLOCK_ROWS;

			for (int k = 0; k < groups * HMOE_FXP_GROUP; k += 4) {
				int g = k / HMOE_FXP_GROUP, h = k % HMOE_FXP_GROUP / 64;
				int r = k % 64 / 4;
				uint32_t v;

				memcpy(&v, row + k, 4);
				v ^= mask;
				memcpy(xv + ((((size_t)c * planes + p) * groups + g) * 2 + h) * 1024 +
					       r * 64 + tc * 4, &v, 4);
			}
		}
}

void hmoe_fxp_x_wide(const int8_t *xq, int n_tokens, int groups, int paired, int16_t *xw)
{
	size_t plane = (size_t)groups * HMOE_FXP_GROUP;

	if (n_tokens % HMOE_FXP_BLOCK_ROWS)  /* absent tokens' lanes: x = 0 */
		memset(xw, 0, hmoe_fxp_x_vnni_bytes(n_tokens, 2, groups));
	for (int t = 0; t < n_tokens; t++) {
		const int8_t *hi = xq + (size_t)t * 2 * plane, *lo = hi + plane;
		int L = chunk_lanes(n_tokens, paired, t), c = t / HMOE_FXP_BLOCK_ROWS;
		int16_t *out = xw + (size_t)c * groups * 2048 + 2 * L * (t % HMOE_FXP_BLOCK_ROWS);

		for (size_t k = 0; L && k < plane; k++) {
			size_t g = k / HMOE_FXP_GROUP, kg = k % HMOE_FXP_GROUP;

			out[g * 2048 + kg / (2 * L) * 32 + kg % (2 * L)] =
				(int16_t)(128 * hi[k] + lo[k]);
		}
	}
}

/* A16 xq (n_tokens, 2, groups * 128) -> x = 128 hi + lo (n_tokens, groups * 128) int16. */
static void x_whole16(const int8_t *xq, int n_tokens, int groups, int16_t *x16)
{
	size_t plane = (size_t)groups * HMOE_FXP_GROUP;

	for (int t = 0; t < n_tokens; t++)
		for (size_t k = 0; k < plane; k++)
			x16[t * plane + k] = (int16_t)(128 * xq[2 * t * plane + k] +
						       xq[(2 * t + 1) * plane + k]);
}

/* xm, xe (n_tokens, groups) -> (chunk of 16 tokens, group, token in the chunk); absent
 * tokens get m 0 and e 1, a term rows_acc computes and drops. */
static void lanes_scales(const uint32_t *xm, const int32_t *xe, int n_tokens, int groups,
			 uint32_t *xmt, int32_t *xet)
{
	int chunks = (n_tokens + HMOE_FXP_BLOCK_ROWS - 1) / HMOE_FXP_BLOCK_ROWS;

	for (int c = 0; c < chunks; c++)
		for (int g = 0; g < groups; g++)
			for (int i = 0; i < HMOE_FXP_BLOCK_ROWS; i++) {
				int t = c * HMOE_FXP_BLOCK_ROWS + i;
				size_t o = ((size_t)c * groups + g) * HMOE_FXP_BLOCK_ROWS + i;

				xmt[o] = t < n_tokens ? xm[t * groups + g] : 0;
				xet[o] = t < n_tokens ? xe[t * groups + g] : 1;
			}
}

/* Per-thread work memory. */
struct row_work {
	/* (n_tokens * planes, groups) row dots, then (n_tokens, groups) token dots */
	int64_t dots[HMOE_FXP_MAX_PLANES * HMOE_FXP_TILE * HMOE_FXP_MAX_IN_GROUPS];
	int64_t dots2[HMOE_FXP_TILE * HMOE_FXP_MAX_IN_GROUPS];  /* row_dots2's second row */
	int64_t dots34[2][HMOE_FXP_TILE * HMOE_FXP_MAX_IN_GROUPS];  /* row_dots4's last two */
	_Alignas(64) uint8_t tmp[HMOE_FXP_ROW_TMP_BYTES];       /* the variant's row scratch */
	int64_t *blk;  /* NULL, or BLK_DOTS for rows_dots: two blocks of rows' dots */
	const struct hmoe_fxp_fp8_fix *fix;  /* the expert's remainder lists, or NULL */
};

#define BLK_DOTS (2 * HMOE_FXP_BLOCK_ROWS * HMOE_FXP_TILE * HMOE_FXP_MAX_IN_GROUPS)

/* Whether tiles keep their activations in rows_dots' (VNNI_SIGNED) or rows_acc's
 * (VNNI_FLIPPED, or VNNI_WIDE: 16-bit x) layout too, or as whole 16-bit tokens for
 * row_dots (WHOLE16), or (WHOLE16_WIDE, a variant with both: AVX-VNNI's fp8 A16) as
 * VNNI_WIDE where the tile has enough tokens for its lanes and as WHOLE16 below
 * (tile_kind) (0: none). */
enum { VNNI_SIGNED = 1, VNNI_FLIPPED = 2, VNNI_WIDE = 3, WHOLE16 = 4, WHOLE16_WIDE = 5 };
static int wants_vnni(const struct hmoe_fxp_simd *simd, int format, int planes)
{
	int lanes = simd->rows_acc && (simd->lanes_formats >> format & 1);
	int wide = planes == 2 && (simd->lanes_wide >> format & 1);

	if (simd->rows_dots && format == HMOE_FXP_INT8)
		return VNNI_SIGNED;
	if (planes == 2 && (simd->whole16 >> format & 1))
		return lanes && wide ? WHOLE16_WIDE : WHOLE16;
	if (!lanes)
		return 0;
	return wide ? VNNI_WIDE : VNNI_FLIPPED;
}

/* Whether a kind is one of rows_acc's (scales kept by chunk, lanes_tokens apply). */
static int kind_lanes(int vnni)
{
	return vnni == VNNI_FLIPPED || vnni == VNNI_WIDE;
}

/* How many of x's first tokens go through rows_acc: its whole steps (the variant's
 * lanes_step), and a last partial one that holds at least lanes_part_tokens (below that,
 * the lanes cost more than the tokens' own path) or, paired, up to 8 of its tokens; the
 * rest take the row path. */
static int lanes_tokens(const struct hmoe_fxp_simd *simd, const struct hmoe_fxp_xtile *x)
{
	int full;

	if (!simd->rows_acc || !(x->xu || x->xw) || simd->lanes_step < 1)
		return 0;
	full = x->n_tokens / simd->lanes_step * simd->lanes_step;
	if (x->xpaired)  /* the paired chunk's tokens */
		return x->n_tokens - full < 8 ? x->n_tokens : full + 8;
	return x->n_tokens - full >= simd->lanes_part_tokens ? x->n_tokens : full;
}

/* x's tokens from t0 on, without the lane and 16-bit layouts (made for the whole tile). */
static struct hmoe_fxp_xtile tokens_from(const struct hmoe_fxp_xtile *x, int t0)
{
	struct hmoe_fxp_xtile v = *x;
	size_t G = (size_t)x->groups;

	v.n_tokens = x->n_tokens - t0;
	v.xq += (size_t)t0 * x->planes * G * HMOE_FXP_GROUP;
	v.xs += (size_t)t0 * G;
	v.xsum += (size_t)t0 * x->planes * G;
	v.xm += (size_t)t0 * G;
	v.xe += (size_t)t0 * G;
	if (t0) {
		v.xv = NULL;
		v.xu = NULL;
		v.xw = NULL;
		v.xmt = NULL;
		v.xet = NULL;
		v.xpaired = 0;
		v.x16 = NULL;
	}
	return v;
}

/* Rows n .. n + nr - 1 of a linear (first: row n's record) through rows_acc. */
static int lanes_acc(const struct hmoe_fxp_simd *simd, const uint8_t *first, int format,
		     int in, int nr, const struct hmoe_fxp_xtile *x, int64_t *acc, void *tmp)
{
	size_t stride = (size_t)hmoe_fxp_row_lines(format, in) * HMOE_FXP_LINE_BYTES;

	return simd->rows_acc(first, stride, nr, format, in, x, acc, tmp);
}

/* rows_dots applies: an int8 linear, a variant with it, activations in its layout. */
static int use_blocks(const struct hmoe_fxp_simd *simd, int format,
		      const struct hmoe_fxp_xtile *x, const struct row_work *wk)
{
	return simd->rows_dots && format == HMOE_FXP_INT8 && x->xv && wk->blk;
}

/* Rows n .. n + nr - 1 of a linear over `in` columns (first: row n's record) into dots
 * (nr, n_tokens, groups). */
static void block_dots(const struct hmoe_fxp_simd *simd, const uint8_t *first, int in,
		       int nr, const struct hmoe_fxp_xtile *x, int64_t *dots)
{
	size_t stride = (size_t)hmoe_fxp_row_lines(HMOE_FXP_INT8, in) * HMOE_FXP_LINE_BYTES;

	simd->rows_dots(first + (size_t)hmoe_fxp_scale_lines(in) * HMOE_FXP_LINE_BYTES, stride,
			nr, x, dots);
}

/* A16: the dots of token t's hi and lo rows (2t, 2t + 1) -> 128 * hi + lo at row t, in
 * place (row t is written after rows 2t and 2t + 1 are read, and 2t >= t). Exact:
 * |hi|, |lo| < 2^32, so |result| < 2^39. */
void hmoe_fxp_combine_planes(int64_t *dots, int n_tokens, int groups)
{
	for (int t = 0; t < n_tokens; t++)
		for (int g = 0; g < groups; g++)
			dots[t * groups + g] = dots[2 * t * groups + g] * (1 << HMOE_FXP_PLANE_SHIFT) +
					       dots[(2 * t + 1) * groups + g];
}

/* Row `row` (a row record over `in` columns) for every token of x: Q16 results into
 * q16[t * stride]. */
static void linear_row(const struct hmoe_fxp_simd *simd, const uint8_t *row, int format,
		       int in, const struct hmoe_fxp_xtile *x, struct row_work *wk,
		       int32_t *q16, int stride)
{
	const uint8_t *codes = row + hmoe_fxp_scale_lines(in) * HMOE_FXP_LINE_BYTES;
	struct hmoe_fxp_xtile rows = *x;

	if (x->planes == 2 && (simd->whole_tokens & (1u << format))) {
		simd->row_dots(codes, format, x, wk->dots, wk->tmp);
	} else {
		rows.n_tokens = x->n_tokens * x->planes;
		rows.planes = 1;
		simd->row_dots(codes, format, &rows, wk->dots, wk->tmp);
		if (x->planes == 2)
			hmoe_fxp_combine_planes(wk->dots, x->n_tokens, x->groups);
	}
	row_epilogue(simd, row, wk->dots, x, q16, stride);
}

/* Two rows a, b against x (results into qa, qb): one pass over both weight streams
 * where the variant has it (row_dots2: int8/int4), else one row after the other. */
static void linear_row_pair(const struct hmoe_fxp_simd *simd, const uint8_t *a,
			    const uint8_t *b, int format, int in,
			    const struct hmoe_fxp_xtile *x, struct row_work *wk, int32_t *qa,
			    int32_t *qb, int stride)
{
	size_t skip = (size_t)hmoe_fxp_scale_lines(in) * HMOE_FXP_LINE_BYTES;

	if (!simd->row_dots2 || format == HMOE_FXP_FP8) {
		linear_row(simd, a, format, in, x, wk, qa, stride);
		linear_row(simd, b, format, in, x, wk, qb, stride);
		return;
	}
	simd->row_dots2(a + skip, b + skip, format, x, wk->dots, wk->dots2);
	row_epilogue(simd, a, wk->dots, x, qa, stride);
	row_epilogue(simd, b, wk->dots2, x, qb, stride);
}

/* Tiles whose x (every token and plane) is larger than this go four rows at a time
 * through row_dots4 on the per-token path (int8, int4), so that each x load serves four
 * rows: past a 32 KiB share of the L1 data cache each row pair reloaded x from L2. With
 * the weights in L1 (Zen 5 dev VM, four 7168-column rows), A16 at 3, 4, 5 and 8 tokens
 * 1.20x, 1.24x, 1.21x, 1.21x; at 2 tokens (x 28 KiB) 0.92x; A8 at 4 tokens (28 KiB)
 * 1.02x, at 8 1.21x. */
#define HMOE_FXP_QUAD_X_BYTES 32768

static int use_quads(const struct hmoe_fxp_simd *simd, int format,
		     const struct hmoe_fxp_xtile *x)
{
	return simd->row_dots4 && format != HMOE_FXP_FP8 &&
	       (x->planes == 1 || (simd->whole_tokens & (1u << format))) &&
	       (size_t)x->n_tokens * x->planes * x->groups * HMOE_FXP_GROUP >
		       HMOE_FXP_QUAD_X_BYTES;
}

/* Four rows against x (results into q[r][t * stride]) in one pass (row_dots4). */
static void linear_row_quad(const struct hmoe_fxp_simd *simd, const uint8_t *const *rows,
			    int format, int in, const struct hmoe_fxp_xtile *x,
			    struct row_work *wk, int32_t *const *q, int stride)
{
	size_t skip = (size_t)hmoe_fxp_scale_lines(in) * HMOE_FXP_LINE_BYTES;
	const uint8_t *codes[4];
	int64_t *dots[4] = { wk->dots, wk->dots2, wk->dots34[0], wk->dots34[1] };

	for (int r = 0; r < 4; r++)
		codes[r] = rows[r] + skip;
	simd->row_dots4(codes, format, x, dots);
	for (int r = 0; r < 4; r++)
		row_epilogue(simd, rows[r], dots[r], x, q[r], stride);
}

/* The most tokens of a tile that go four rows at a time (fp8 with remainder lists), in
 * passes of up to HMOE_FXP_ROWS4_TOKENS: decoded once per pass by two bytes, where the
 * rows otherwise go in pairs by three digits (up to 4 tokens) or in the 16-bit lanes of
 * a paired chunk of 8 (5 to 11): one layer call with every tile of T tokens, 2 threads
 * from DRAM on the Intel dev VM, T = 6 about 1.3x (docs/fxp.md section 3). */
#define MOE_ROWS4_MAX_TOKENS 8

/* Whether x goes four rows at a time (row_acc4, which may still decline) over a work
 * item of n_rows rows that the caller splits into `split` streams (W1 and W3: 2, W2:
 * 4): one token, or fp8 tokens up to MOE_ROWS4_MAX_TOKENS with the rows' remainder lists
 * at hand where the variant takes them. The lane paths, which the callers skip when this
 * holds, ask it the same question. */
static int use_rows4(const struct hmoe_fxp_simd *simd, int format,
		     const struct hmoe_fxp_xtile *x, const struct row_work *wk, int n_rows,
		     int split)
{
	if (!simd->row_acc4 || n_rows % split ||
	    (x->planes != 1 && !(simd->whole_tokens & (1u << format))))
		return 0;
	return x->n_tokens == 1 ||
	       (format == HMOE_FXP_FP8 && wk->fix && x->n_tokens <= MOE_ROWS4_MAX_TOKENS &&
		!x->has_m128 && hmoe_fxp_simd_fp8_lists(simd));
}

/* Whether one-token fp8 rows of x's plane count take the packs' remainder lists (the
 * two-byte kernel) or the three digits: A16 always, A8 as the plan's fp8_a8_lists says.
 * It decides the kernel (linear_rows4) and, with it, the calls' work items
 * (moe_item_rows). */
static int fp8_one_token_lists(int planes)
{
	return planes == 2 || hmoe_fxp_plan()->fp8_a8_lists;
}

/* The most quads one row_acc4 call takes from the drivers (its fix array). */
#define ROWS4_RUN 32

/* A run of n quads of rows (records over `in` columns, stride bytes from one quad to
 * the next; rows[r]: quad 0's row r; rec[r]: its record number in the expert's pack,
 * for its remainder list, + q in quad q) against x's tokens, up to HMOE_FXP_ROWS4_TOKENS
 * per pass (row_acc4; a later pass finds the rows in the cache): quad q's row r's Q16
 * result for token t into q[r][q * qstep + t * tstride]; quads the variant declines go a
 * row at a time. ROWS4_RUN quads per row_acc4 call, which writes the Q16 results itself:
 * the work between two calls costs the time it takes, since no memory access overlaps
 * it (on the Zen 5 dev VM a row_acc4 call per quad, then a pass converting a run's
 * results, cost one-token layer calls 3-14% of their time, docs/fxp.md section 3). */
static void linear_rows4(const struct hmoe_fxp_simd *simd, const uint8_t *const *rows,
			 size_t stride, int n, const int *rec, int format, int in,
			 const struct hmoe_fxp_xtile *x, struct row_work *wk, int32_t *const *q,
			 size_t qstep, size_t tstride)
{
	struct hmoe_fxp_rowfix fix[4 * ROWS4_RUN];
	const struct hmoe_fxp_fp8_fix *f =
		format == HMOE_FXP_FP8 && (x->n_tokens > 1 || fp8_one_token_lists(x->planes)) ?
			wk->fix : NULL;
	/* more tokens than a pass takes: a quad at a time, so that the later passes find
	 * its rows in L1 / L2 */
	int run = x->n_tokens > HMOE_FXP_ROWS4_TOKENS ? 1 : ROWS4_RUN;

	for (int q0 = 0; q0 < n; q0 += run) {
		int nq = n - q0 < run ? n - q0 : run;
		const uint8_t *first[4];

		for (int r = 0; r < 4; r++)
			first[r] = rows[r] + (size_t)q0 * stride;
		for (int i = 0; f && i < 4 * nq; i++) {
			int k = rec[i % 4] + q0 + i / 4;

			fix[i] = (struct hmoe_fxp_rowfix){ .ent = f->ent + f->start[k],
							   .n = (int)(f->start[k + 1] - f->start[k]) };
			/* the lists of the quads after this one follow its own, a few bytes
			 * each, streams too slow for the hardware prefetchers: a line ahead of
			 * each fetched now, before the kernel reads them */
			__builtin_prefetch(fix[i].ent + 32);
		}
		for (int t0 = 0; t0 < x->n_tokens; t0 += HMOE_FXP_ROWS4_TOKENS) {
			struct hmoe_fxp_xtile part;
			const struct hmoe_fxp_xtile *xp = x;
			struct hmoe_fxp_rows4_out out = { .qstep = qstep, .tstride = tstride };

			if (x->n_tokens > HMOE_FXP_ROWS4_TOKENS) {
				part = tokens_from(x, t0);
				if (part.n_tokens > HMOE_FXP_ROWS4_TOKENS)
					part.n_tokens = HMOE_FXP_ROWS4_TOKENS;
				xp = &part;
			}
			for (int r = 0; r < 4; r++)
				out.q16[r] = q[r] + (size_t)q0 * qstep + (size_t)t0 * tstride;
			if (simd->row_acc4(first, stride, nq, format, in, xp, f ? fix : NULL, &out))
				for (int i = 0; i < nq; i++)
					for (int r = 0; r < 4; r++)
						linear_row(simd, first[r] + (size_t)i * stride, format,
							   in, xp, wk, out.q16[r] + (size_t)i * qstep,
							   (int)tstride);
		}
	}
}

static const uint8_t *row_at(const uint8_t *lin, int format, int in, int n)
{
	return lin + (size_t)n * hmoe_fxp_row_lines(format, in) * HMOE_FXP_LINE_BYTES;
}

/* Rows [r0, r1) of W1 and W3 for x's tokens one row at a time (or, AMX, 16 rows). */
static void up_rows_tokens(const struct hmoe_fxp_simd *simd, const uint8_t *w1,
			   const uint8_t *w3, int format, int dim,
			   const struct hmoe_fxp_xtile *x, int r0, int r1, int64_t *h, int inter,
			   struct row_work *wk)
{
	int32_t h1[HMOE_FXP_TILE], h3[HMOE_FXP_TILE];
	int tg = x->n_tokens * x->groups;

	if (use_blocks(simd, format, x, wk)) {
		for (int n = r0; n < r1; n += HMOE_FXP_BLOCK_ROWS) {
			int nr = r1 - n < HMOE_FXP_BLOCK_ROWS ? r1 - n : HMOE_FXP_BLOCK_ROWS;
			int64_t *d3 = wk->blk + (size_t)HMOE_FXP_BLOCK_ROWS * tg;

			block_dots(simd, row_at(w1, format, dim, n), dim, nr, x, wk->blk);
			block_dots(simd, row_at(w3, format, dim, n), dim, nr, x, d3);
			for (int i = 0; i < nr; i++) {
				row_epilogue(simd, row_at(w1, format, dim, n + i),
					     wk->blk + (size_t)i * tg, x, h1, 1);
				row_epilogue(simd, row_at(w3, format, dim, n + i),
					     d3 + (size_t)i * tg, x, h3, 1);
				for (int t = 0; t < x->n_tokens; t++)
					h[t * inter + n + i] = hmoe_fxp_swiglu_q32(h1[t], h3[t]);
			}
		}
		return;
	}
	if (use_rows4(simd, format, x, wk, r1 - r0, 2)) {
		/* rows n and n + half of W1 and W3: four weight streams apart in memory, a
		 * run of ROWS4_RUN quads at a time */
		int half = (r1 - r0) / 2, T = x->n_tokens;
		size_t stride = (size_t)hmoe_fxp_row_lines(format, dim) * HMOE_FXP_LINE_BYTES;

		for (int n = r0; n < r0 + half; n += ROWS4_RUN) {
			int nq = r0 + half - n < ROWS4_RUN ? r0 + half - n : ROWS4_RUN;
			const uint8_t *rows[4] = { row_at(w1, format, dim, n), row_at(w3, format, dim, n),
						   row_at(w1, format, dim, n + half),
						   row_at(w3, format, dim, n + half) };
			int rec[4] = { n, inter + n, n + half, inter + n + half };
			int32_t a[4][ROWS4_RUN * MOE_ROWS4_MAX_TOKENS];
			int32_t *q[4] = { a[0], a[1], a[2], a[3] };

			linear_rows4(simd, rows, stride, nq, rec, format, dim, x, wk, q, T, 1);
			if (T == 1 && simd->swiglu) {
				simd->swiglu(a[0], a[1], nq, h + n);
				simd->swiglu(a[2], a[3], nq, h + n + half);
				continue;
			}
			for (int i = 0; i < nq; i++)
				for (int t = 0; t < T; t++) {
					h[t * inter + n + i] = hmoe_fxp_swiglu_q32(a[0][i * T + t],
										   a[1][i * T + t]);
					h[t * inter + n + half + i] =
						hmoe_fxp_swiglu_q32(a[2][i * T + t], a[3][i * T + t]);
				}
		}
		return;
	}
	if (use_quads(simd, format, x)) {
		/* rows n and n + half of W1 and W3, as row_acc4 takes them */
		int half = (r1 - r0) / 2;
		int32_t h1b[HMOE_FXP_TILE], h3b[HMOE_FXP_TILE];

		for (int n = r0; n < r0 + half; n++) {
			const uint8_t *rows[4] = { row_at(w1, format, dim, n), row_at(w3, format, dim, n),
						   row_at(w1, format, dim, n + half),
						   row_at(w3, format, dim, n + half) };
			int32_t *q[4] = { h1, h3, h1b, h3b };

			linear_row_quad(simd, rows, format, dim, x, wk, q, 1);
			for (int t = 0; t < x->n_tokens; t++) {
				h[t * inter + n] = hmoe_fxp_swiglu_q32(h1[t], h3[t]);
				h[t * inter + n + half] = hmoe_fxp_swiglu_q32(h1b[t], h3b[t]);
			}
		}
		r0 += 2 * half;  /* an odd row left goes below */
	}
	for (int n = r0; n < r1; n++) {
		linear_row_pair(simd, row_at(w1, format, dim, n), row_at(w3, format, dim, n),
				format, dim, x, wk, h1, h3, 1);
		for (int t = 0; t < x->n_tokens; t++)
			h[t * inter + n] = hmoe_fxp_swiglu_q32(h1[t], h3[t]);
	}
}

/* The same with the tokens in the vector lanes (rows_acc), 4 rows at a time; rows the
 * variant declines go through up_rows_tokens. */
static void up_rows_lanes(const struct hmoe_fxp_simd *simd, const uint8_t *w1,
			  const uint8_t *w3, int format, int dim, const struct hmoe_fxp_xtile *x,
			  int r0, int r1, int64_t *h, int inter, struct row_work *wk)
{
	int64_t a1[HMOE_FXP_LANE_ROWS * HMOE_FXP_TILE], a3[HMOE_FXP_LANE_ROWS * HMOE_FXP_TILE];
	int T = x->n_tokens, n = r0;

	for (; n < r1; n += HMOE_FXP_LANE_ROWS) {
		int nr = r1 - n < HMOE_FXP_LANE_ROWS ? r1 - n : HMOE_FXP_LANE_ROWS;

		if (!lanes_acc(simd, row_at(w1, format, dim, n), format, dim, nr, x, a1, wk->tmp) ||
		    !lanes_acc(simd, row_at(w3, format, dim, n), format, dim, nr, x, a3, wk->tmp))
			break;
		for (int i = 0; i < nr; i++)
			for (int t = 0; t < T; t++)
				h[t * inter + n + i] = hmoe_fxp_swiglu_q32(
					hmoe_fxp_acc_to_q16(a1[i * T + t]),
					hmoe_fxp_acc_to_q16(a3[i * T + t]));
	}
	if (n < r1)
		up_rows_tokens(simd, w1, w3, format, dim, x, n, r1, h, inter, wk);
}

static void up_rows(const struct hmoe_fxp_simd *simd, const uint8_t *w1, const uint8_t *w3,
		    int format, int dim, const struct hmoe_fxp_xtile *x, int r0, int r1,
		    int64_t *h, int inter, struct row_work *wk)
{
	int tl = use_rows4(simd, format, x, wk, r1 - r0, 2) ? 0 : lanes_tokens(simd, x);
	struct hmoe_fxp_xtile part = *x;

	if (tl) {
		part.n_tokens = tl;
		up_rows_lanes(simd, w1, w3, format, dim, &part, r0, r1, h, inter, wk);
	}
	if (tl < x->n_tokens) {
		part = tokens_from(x, tl);
		up_rows_tokens(simd, w1, w3, format, dim, &part, r0, r1, h + (size_t)tl * inter,
			       inter, wk);
	}
}

/* The quantiser of the driver's activations (x and h): the variant's, or the hls one. */
static hmoe_fxp_quant_fn *simd_quant(const struct hmoe_fxp_simd *simd)
{
	return simd->quant_group ? simd->quant_group : hmoe_fxp_quant_group;
}

/* Token t of h (n_tokens, inter) Q32 -> hq (n_tokens, planes, groups * 128), hs, and the
 * tile data hsum (n_tokens, planes, groups), hm, he (n_tokens, groups). */
static int quant_h(const struct hmoe_fxp_simd *simd, const int64_t *h, int t, int inter,
		   int planes, int8_t *hq, int32_t *hs, int32_t *hsum, uint32_t *hm, int32_t *he)
{
	hmoe_fxp_quant_fn *quant = simd_quant(simd);
	int groups = hmoe_fxp_groups(inter), plane = groups * HMOE_FXP_GROUP;
	int8_t *tq = hq + (size_t)t * planes * plane;

	for (int g = 0; g < groups; g++) {
		int k0 = g * HMOE_FXP_GROUP;
		int n = inter - k0 < HMOE_FXP_GROUP ? inter - k0 : HMOE_FXP_GROUP;

		hs[t * groups + g] = quant(h + (size_t)t * inter + k0, n, planes, tq + k0,
					   planes == 2 ? tq + plane + k0 : NULL);
		for (int p = 0; p < planes; p++)
			memset(tq + p * plane + k0 + n, 0, (size_t)(HMOE_FXP_GROUP - n));
	}
	return tile_prepare(tq, hs + t * groups, 1, planes, groups, hsum + t * planes * groups,
			    hm + t * groups, he + t * groups);
}

/* ---- tiles --------------------------------------------------------------------------- */

/* One side of a tile: the activations one pass reads (x for W1 and W3, h for W2), P =
 * the mode's planes, n the tile's tokens. */
struct fxp_side {
	int groups;
	int m128;                   /* has_m128 of q */
	int8_t *q;                  /* (n, P, groups * 128) */
	int32_t *s, *e;             /* (n, groups) scale words, split exponents */
	int32_t *sum;               /* (n, P, groups) */
	uint32_t *m;                /* (n, groups) split mantissas */
	int8_t *v;                  /* NULL, or q as hmoe_fxp_x_vnni (VNNI_WIDE: x_wide,
				     * WHOLE16: x_whole16) lays it out */
	uint32_t *mt;               /* with v for rows_acc: m and e by (chunk, group, */
	int32_t *et;                /* token in the chunk) */
};

/* One expert's work for up to HMOE_FXP_TILE (token, slot) pairs, and its buffers. */
struct fxp_tile {
	int expert, n, planes;
	int pairs[HMOE_FXP_TILE];   /* token * top_k + slot */
	int vnni;                   /* 0, VNNI_SIGNED, VNNI_FLIPPED, VNNI_WIDE or WHOLE16 */
	int lanes_min;              /* the variant's lanes_min_tokens */
	struct fxp_side sx, sh;     /* x (dim groups), h requantised (inter groups) */
	int64_t *h;                 /* (n, inter) Q32 */
	int32_t *y;                 /* (n, dim) Q16 */
	atomic_int stage;           /* the layer call's progress (TILE_X_READY, ...) */
	atomic_int up_left;         /* up work items not yet finished */
};

/* The tile's split scales by 16-token chunk: (chunks, groups, 16) words. */
static size_t lanes_words(int groups)
{
	return (size_t)(HMOE_FXP_TILE / HMOE_FXP_BLOCK_ROWS) * groups * HMOE_FXP_BLOCK_ROWS;
}

/* n bytes at *off of base (NULL while only measuring), then *off moves past them. */
static void *take(uint8_t *base, size_t *off, size_t n)
{
	void *r = base ? base + *off : NULL;

	*off += n;
	return r;
}

static void side_carve(struct fxp_side *sd, uint8_t *base, size_t *off, int groups,
		       int planes, int vnni)
{
	size_t T = HMOE_FXP_TILE, P = (size_t)planes, g = (size_t)groups;

	sd->groups = groups;
	sd->s = take(base, off, T * g * sizeof(int32_t));
	sd->e = take(base, off, T * g * sizeof(int32_t));
	sd->m = take(base, off, T * g * sizeof(int32_t));
	sd->sum = take(base, off, T * P * g * sizeof(int32_t));
	sd->q = take(base, off, T * P * g * HMOE_FXP_GROUP);
	sd->v = vnni ? take(base, off, hmoe_fxp_x_vnni_bytes(HMOE_FXP_TILE, planes, groups))
		     : NULL;
	sd->mt = vnni ? take(base, off, sizeof(int32_t) * lanes_words(groups)) : NULL;
	sd->et = vnni ? take(base, off, sizeof(int32_t) * lanes_words(groups)) : NULL;
}

/* Lays a tile's buffers out at base (64-byte aligned) and returns their bytes; base
 * NULL: only the bytes. vnni: the sides also keep their activations in
 * hmoe_fxp_x_vnni's (VNNI_WIDE: hmoe_fxp_x_wide's, WHOLE16: x_whole16's; no larger)
 * layout (and, for rows_acc, their scales by chunk) where the tile holds at least
 * lanes_min tokens (the variant's lanes_min_tokens). */
static size_t tile_layout(struct fxp_tile *tl, uint8_t *base, int dim, int inter, int planes,
			  int vnni, int lanes_min)
{
	size_t off = 0;

	tl->planes = planes;
	tl->vnni = vnni;
	tl->lanes_min = lanes_min;
	tl->h = take(base, &off, (size_t)HMOE_FXP_TILE * inter * sizeof(int64_t));
	tl->y = take(base, &off, (size_t)HMOE_FXP_TILE * dim * sizeof(int32_t));
	side_carve(&tl->sx, base, &off, hmoe_fxp_groups(dim), planes, vnni);
	side_carve(&tl->sh, base, &off, hmoe_fxp_groups(inter), planes, vnni);
	return (off + 63) & ~(size_t)63;
}

static size_t tile_bytes(int dim, int inter, int planes, int vnni)
{
	struct fxp_tile tl;

	return tile_layout(&tl, NULL, dim, inter, planes, vnni, 0);
}

/* The tile's layout kind for its token count (tl->vnni, WHOLE16_WIDE resolved). */
static int tile_kind(const struct fxp_tile *tl)
{
	if (tl->vnni != WHOLE16_WIDE)
		return tl->vnni;
	return tl->n >= tl->lanes_min ? VNNI_WIDE : WHOLE16;
}

/* Whether rows_acc runs the tile's last chunk paired (16-bit lanes of a VNNI_WIDE variant
 * only, whose chunks have 16 lanes): it holds too few tokens for a chunk of 16 lanes but
 * enough for 8 tokens in two lanes each. */
static int tile_paired(const struct fxp_tile *tl)
{
	int r = tl->n % HMOE_FXP_BLOCK_ROWS;

	return tl->vnni == VNNI_WIDE && r >= HMOE_FXP_LANES_PAIR_MIN_TOKENS &&
	       r < HMOE_FXP_LANES_MIN_TOKENS;
}

/* Whether the tile's activations are also kept in the VNNI layout: always for rows_dots,
 * for rows_acc only when the tile has enough tokens for a chunk of lanes, as whole 16-bit
 * tokens from 2 tokens on (one token runs faster without: the decode dominates). */
static int tile_vnni(const struct fxp_tile *tl)
{
	int kind = tile_kind(tl);

	if (kind == WHOLE16)
		return tl->n >= 2;
	return kind == VNNI_SIGNED || (kind != 0 && (tl->n >= tl->lanes_min || tile_paired(tl)));
}

/* A side as the variants see it. */
static struct hmoe_fxp_xtile side_xtile(const struct fxp_tile *tl, const struct fxp_side *sd)
{
	int kind = tile_kind(tl), lanes = kind_lanes(kind) && tile_vnni(tl);

	return (struct hmoe_fxp_xtile){ .n_tokens = tl->n, .groups = sd->groups,
					.xq = sd->q, .xs = sd->s, .xsum = sd->sum,
					.xm = sd->m, .xe = sd->e, .planes = tl->planes,
					.has_m128 = sd->m128,
					.xv = kind == VNNI_SIGNED ? sd->v : NULL,
					.xu = lanes && kind == VNNI_FLIPPED
						      ? (const uint8_t *)sd->v : NULL,
					.xw = lanes && kind == VNNI_WIDE
						      ? (const int16_t *)(void *)sd->v : NULL,
					.xmt = lanes ? sd->mt : NULL, .xet = lanes ? sd->et : NULL,
					.xpaired = lanes && tile_paired(tl),
					.x16 = kind == WHOLE16 && tile_vnni(tl)
						       ? (const int16_t *)(void *)sd->v : NULL };
}

/* A side's layouts for rows_dots / rows_acc, once its q, m and e are final. */
static void side_lanes_ready(const struct fxp_tile *tl, struct fxp_side *sd)
{
	int kind = tile_kind(tl);

	if (!tile_vnni(tl))
		return;
	if (kind == WHOLE16)
		x_whole16(sd->q, tl->n, sd->groups, (int16_t *)(void *)sd->v);
	else if (kind == VNNI_WIDE)
		hmoe_fxp_x_wide(sd->q, tl->n, sd->groups, tile_paired(tl),
				(int16_t *)(void *)sd->v);
	else
		hmoe_fxp_x_vnni(sd->q, tl->n, tl->planes, sd->groups, kind == VNNI_FLIPPED,
				sd->v);
	if (kind_lanes(kind))
		lanes_scales(sd->m, sd->e, tl->n, sd->groups, sd->mt, sd->et);
}

/* The tile's x (q and s filled in): sums, split scales and the layouts. */
static void tile_x_ready(struct fxp_tile *tl)
{
	struct fxp_side *sd = &tl->sx;

	sd->m128 = tile_prepare(sd->q, sd->s, tl->n, tl->planes, sd->groups, sd->sum, sd->m,
				sd->e);
	side_lanes_ready(tl, sd);
}

/* The three stages of one tile; rows [r0, r1) of the up / down pass. */
static void tile_up(const struct hmoe_fxp_simd *simd, const uint8_t *pack, int format, int dim,
		    int inter, struct fxp_tile *tl, int r0, int r1, struct row_work *wk)
{
	size_t lin = (size_t)hmoe_fxp_linear_lines(format, inter, dim) * HMOE_FXP_LINE_BYTES;
	struct hmoe_fxp_xtile xt = side_xtile(tl, &tl->sx);

	up_rows(simd, pack, pack + lin, format, dim, &xt, r0, r1, tl->h, inter, wk);
}

static void tile_quant_h(const struct hmoe_fxp_simd *simd, struct fxp_tile *tl, int inter)
{
	struct fxp_side *sd = &tl->sh;

	sd->m128 = 0;
	for (int t = 0; t < tl->n; t++)
		sd->m128 |= quant_h(simd, tl->h, t, inter, tl->planes, sd->q, sd->s, sd->sum,
				    sd->m, sd->e);
	side_lanes_ready(tl, sd);
}

/* Rows [r0, r1) of W2 for x's tokens (y: token 0's row of outputs, `dim` apart). */
static void down_rows_tokens(const struct hmoe_fxp_simd *simd, const uint8_t *w2,
			     int format, int dim, int inter, const struct hmoe_fxp_xtile *ht,
			     int r0, int r1, int32_t *y, struct row_work *wk)
{
	int n = r0;

	if (use_blocks(simd, format, ht, wk)) {
		int tg = ht->n_tokens * ht->groups;

		for (; n < r1; n += HMOE_FXP_BLOCK_ROWS) {
			int nr = r1 - n < HMOE_FXP_BLOCK_ROWS ? r1 - n : HMOE_FXP_BLOCK_ROWS;

			block_dots(simd, row_at(w2, format, inter, n), inter, nr, ht, wk->blk);
			for (int i = 0; i < nr; i++)
				row_epilogue(simd, row_at(w2, format, inter, n + i),
					     wk->blk + (size_t)i * tg, ht, y + n + i, dim);
		}
		return;
	}
	if (use_rows4(simd, format, ht, wk, r1 - r0, 4)) {
		/* rows n, n + qr, n + 2 qr, n + 3 qr: four streams apart in memory, the
		 * item's qr quads in runs */
		int qr = (r1 - r0) / 4;
		const uint8_t *rows[4];
		int rec[4];
		int32_t *q[4];

		for (int r = 0; r < 4; r++) {
			rows[r] = row_at(w2, format, inter, n + r * qr);
			rec[r] = 2 * inter + n + r * qr;
			q[r] = y + n + r * qr;
		}
		linear_rows4(simd, rows,
			     (size_t)hmoe_fxp_row_lines(format, inter) * HMOE_FXP_LINE_BYTES, qr, rec,
			     format, inter, ht, wk, q, 1, dim);
		return;
	}
	if (use_quads(simd, format, ht)) {
		/* rows n, n + qr, n + 2 qr, n + 3 qr, as row_acc4 takes them */
		int qr = (r1 - r0) / 4;

		for (; n < r0 + qr; n++) {
			const uint8_t *rows[4];
			int32_t *q[4];

			for (int r = 0; r < 4; r++) {
				rows[r] = row_at(w2, format, inter, n + r * qr);
				q[r] = y + n + r * qr;
			}
			linear_row_quad(simd, rows, format, inter, ht, wk, q, dim);
		}
		n = r0 + 4 * qr;  /* the rows left go below */
	}
	for (; n + 2 <= r1; n += 2)
		linear_row_pair(simd, row_at(w2, format, inter, n), row_at(w2, format, inter, n + 1),
				format, inter, ht, wk, y + n, y + n + 1, dim);
	for (; n < r1; n++)
		linear_row(simd, row_at(w2, format, inter, n), format, inter, ht, wk, y + n, dim);
}

static void tile_down(const struct hmoe_fxp_simd *simd, const uint8_t *pack, int format,
		      int dim, int inter, struct fxp_tile *tl, int r0, int r1, struct row_work *wk)
{
	size_t lin = (size_t)hmoe_fxp_linear_lines(format, inter, dim) * HMOE_FXP_LINE_BYTES;
	struct hmoe_fxp_xtile ht = side_xtile(tl, &tl->sh), part = ht;
	const uint8_t *w2 = pack + 2 * lin;
	int tk = use_rows4(simd, format, &ht, wk, r1 - r0, 4) ? 0 : lanes_tokens(simd, &ht);
	int n = r0;

	if (tk) {
		int64_t a[HMOE_FXP_LANE_ROWS * HMOE_FXP_TILE];

		part.n_tokens = tk;
		for (; n < r1; n += HMOE_FXP_LANE_ROWS) {
			int nr = r1 - n < HMOE_FXP_LANE_ROWS ? r1 - n : HMOE_FXP_LANE_ROWS;

			if (!lanes_acc(simd, row_at(w2, format, inter, n), format, inter, nr, &part, a,
				       wk->tmp))
				break;
			for (int i = 0; i < nr; i++)
				for (int t = 0; t < tk; t++)
					tl->y[(size_t)t * dim + n + i] = hmoe_fxp_acc_to_q16(a[i * tk + t]);
		}
		if (n < r1)
			down_rows_tokens(simd, w2, format, dim, inter, &part, n, r1, tl->y, wk);
	}
	if (tk < ht.n_tokens) {
		part = tokens_from(&ht, tk);
		down_rows_tokens(simd, w2, format, dim, inter, &part, r0, r1,
				 tl->y + (size_t)tk * dim, wk);
	}
}

/* ---- one expert, one tile, one thread ------------------------------------------------ */

int hmoe_fxp_cpu_ffn(const struct hmoe_fxp_simd *simd, const struct hmoe_fxp_line *wpack,
		     const int8_t *xq, const int32_t *xs, int32_t *y, int mode, int n_tokens,
		     int dim, int inter)
{
	int dg = hmoe_fxp_groups(dim), format, planes, vnni;
	struct fxp_tile tl = { .n = n_tokens };
	uint8_t *mem;
	struct row_work *wk;

	if (!hmoe_fxp_mode_valid(mode) || n_tokens < 1 || n_tokens > HMOE_FXP_TILE || dim < 1 ||
	    dim > HMOE_FXP_MAX_DIM || inter < 1 || inter > HMOE_FXP_MAX_INTER)
		return hmoe_err(HMOE_EINPUT, "fxp ffn: bad arguments (mode %#x, %d tokens, "
				"dim %d, inter %d)", (unsigned)mode, n_tokens, dim, inter);
	format = hmoe_fxp_mode_format(mode);
	planes = hmoe_fxp_mode_planes(mode);
	vnni = wants_vnni(simd, format, planes);
	mem = aligned_alloc(64, tile_bytes(dim, inter, planes, vnni));
	wk = aligned_alloc(64, sizeof(*wk));
	if (wk) {
		wk->blk = vnni == VNNI_SIGNED ? malloc(sizeof(int64_t) * BLK_DOTS) : NULL;
		wk->fix = NULL;
	}
	if (!mem || !wk || (vnni == VNNI_SIGNED && !wk->blk)) {
		free(mem);
		if (wk)
			free(wk->blk);
		free(wk);
		return hmoe_err(HMOE_ENOMEM, "fxp ffn: out of memory");
	}
	tile_layout(&tl, mem, dim, inter, planes, vnni, simd->lanes_min_tokens);
	memcpy(tl.sx.q, xq, (size_t)n_tokens * planes * dg * HMOE_FXP_GROUP);
	memcpy(tl.sx.s, xs, sizeof(*xs) * n_tokens * dg);
	tile_x_ready(&tl);
	tile_up(simd, (const uint8_t *)wpack, format, dim, inter, &tl, 0, inter, wk);
	tile_quant_h(simd, &tl, inter);
	tile_down(simd, (const uint8_t *)wpack, format, dim, inter, &tl, 0, dim, wk);
	memcpy(y, tl.y, sizeof(*y) * n_tokens * dim);
	free(mem);
	free(wk->blk);
	free(wk);
	return 0;
}

/* ---- the one-token kernels with their weights in the cache (bench) ------------------- */

/* Rows each thread's passes read (the first rows of W1 and W3, of W2): about 0.75 MB of
 * fp8 or int8 weights, 0.4 MB of int4, which a core's L2 (or, with a small L2, the L3)
 * keeps between passes. Multiples of 4, as the one-token paths pair and quad rows. */
#define HOT_UP_ROWS 32
#define HOT_DOWN_ROWS 128

struct hot_job {
	const struct hmoe_fxp_simd *simd;
	const uint8_t *pack;
	int format, dim, inter, up_rows, down_rows;
	long passes;                /* per item */
	struct fxp_tile *tiles;     /* [threads]: one token each, x and h set up */
	struct row_work *work;      /* [threads] */
};

static void hot_item(void *arg, long i, int thread)
{
	struct hot_job *j = arg;

	(void)i;
	for (long k = 0; k < j->passes; k++) {
		tile_up(j->simd, j->pack, j->format, j->dim, j->inter, &j->tiles[thread], 0,
			j->up_rows, &j->work[thread]);
		tile_down(j->simd, j->pack, j->format, j->dim, j->inter, &j->tiles[thread], 0,
			  j->down_rows, &j->work[thread]);
	}
}

/* Wall seconds of one hmoe_pool_run of 4 items per thread. */
static double hot_time(struct hmoe_pool *pool, struct hot_job *j, int threads)
{
	double t0 = hmoe_now_s();

	hmoe_pool_run(pool, 4L * threads, hot_item, j);
	return hmoe_now_s() - t0;
}

int hmoe_fxp_hot_rate(const struct hmoe_fxp_experts *ex, const struct hmoe_fxp_simd *simd,
		      struct hmoe_pool *pool, int expert, double min_time, double *bytes_per_s)
{
	int format = hmoe_fxp_mode_format(ex->mode), planes = hmoe_fxp_mode_planes(ex->mode);
	int dim = ex->dim, inter = ex->inter, threads = pool ? hmoe_pool_threads(pool) : 1;
	int vnni = wants_vnni(simd, format, planes), ret = 0;
	size_t tb = tile_bytes(dim, inter, planes, vnni);
	struct hot_job j = { .simd = simd, .format = format, .dim = dim, .inter = inter,
			     .up_rows = inter < HOT_UP_ROWS ? inter / 4 * 4 : HOT_UP_ROWS,
			     .down_rows = dim < HOT_DOWN_ROWS ? dim / 4 * 4 : HOT_DOWN_ROWS,
			     .passes = 1 };
	uint8_t *mem = NULL;
	float *x = NULL;
	double bytes, best = 1e30;

	*bytes_per_s = 0;
	if (expert < 0 || expert >= ex->n_experts || !ex->packs[expert] || j.up_rows < 4 ||
	    j.down_rows < 4 || !fix_fits(ex, expert))
		return hmoe_err(HMOE_EINPUT, "fxp hot rate: expert %d is not resident, has "
				"remainder lists not of its pack, or the linears have fewer "
				"than 4 rows", expert);
	j.pack = (const uint8_t *)ex->packs[expert];
	mem = aligned_alloc(64, tb * threads);
	x = malloc(sizeof(*x) * dim);
	j.tiles = calloc((size_t)threads, sizeof(*j.tiles));
	j.work = aligned_alloc(64, sizeof(*j.work) * threads);
	if (j.work)
		for (int t = 0; t < threads; t++) {
			j.work[t].blk = NULL;
			j.work[t].fix = ex->fixes ? ex->fixes[expert] : NULL;
		}
	if (!mem || !x || !j.tiles || !j.work) {
		ret = hmoe_err(HMOE_ENOMEM, "fxp hot rate: out of memory");
		goto out;
	}
	/* one token: x with one large channel, h ~ +-1 in Q32 (the values do not change the
	 * kernels' work, only keep it realistic) */
	for (int k = 0; k < dim; k++)
		x[k] = (float)((int)(k * 2654435761u >> 16 & 1023) - 512) / 512 * (k == 5 ? 30 : 1);
	for (int t = 0; t < threads; t++) {
		struct fxp_tile *tl = &j.tiles[t];

		if (vnni == VNNI_SIGNED &&
		    !(j.work[t].blk = malloc(sizeof(int64_t) * BLK_DOTS))) {
			ret = hmoe_err(HMOE_ENOMEM, "fxp hot rate: out of memory");
			goto out;
		}
		tl->n = 1;
		tile_layout(tl, mem + tb * t, dim, inter, planes, vnni, simd->lanes_min_tokens);
		hmoe_fxp_quant_x(x, dim, planes, tl->sx.q, tl->sx.s);
		tile_x_ready(tl);
		for (int k = 0; k < inter; k++)
			tl->h[k] = ((int64_t)(k * 2246822519u >> 8 & 0xffff) - 32768) * 131072;
		tile_quant_h(simd, tl, inter);
	}
	bytes = (double)(2 * j.up_rows) * hmoe_fxp_row_lines(format, dim) * HMOE_FXP_LINE_BYTES +
		(double)j.down_rows * hmoe_fxp_row_lines(format, inter) * HMOE_FXP_LINE_BYTES;
	/* a warm-up pass fills the caches; then passes per item for ~min_time / 3 a run */
	{
		double t1 = hot_time(pool, &j, threads);

		j.passes = t1 > 0 ? (long)(min_time / 3 / t1) : 1;
		j.passes = j.passes < 1 ? 1 : j.passes > 100000 ? 100000 : j.passes;
	}
	for (int r = 0; r < 3; r++) {
		double t = hot_time(pool, &j, threads);

		best = t < best ? t : best;
	}
	*bytes_per_s = bytes * 4.0 * threads * (double)j.passes / best;
out:
	if (j.work)
		for (int t = 0; t < threads; t++)
			free(j.work[t].blk);
	free(j.work);
	free(j.tiles);
	free(x);
	free(mem);
	return ret;
}

/* ---- the MoE layer driver ------------------------------------------------------------ */

struct hmoe_fxp_ws {
	uint8_t *arena;             /* tiles' buffers */
	size_t arena_bytes;
	struct fxp_tile *tiles;
	int *order, *count;
	int cap_pairs, cap_experts;
	struct row_work *work;      /* [n_work], each with blk when blocks */
	int n_work, blocks;
	uint8_t *tok;               /* the tokens' activations (struct tok_side), tok_bytes */
	size_t tok_bytes;
	int item_rows[2];           /* the last call's rows per up and down work item */
};

void hmoe_fxp_ws_item_rows(const struct hmoe_fxp_ws *ws, int rows[2])
{
	rows[0] = ws ? ws->item_rows[0] : 0;
	rows[1] = ws ? ws->item_rows[1] : 0;
}

void hmoe_fxp_ws_free(struct hmoe_fxp_ws *ws)
{
	if (!ws)
		return;
	free(ws->arena);
	free(ws->tiles);
	free(ws->order);
	free(ws->count);
	for (int i = 0; i < ws->n_work; i++)
		free(ws->work[i].blk);
	free(ws->work);
	free(ws->tok);
	free(ws);
}

/* blocks: every worker gets rows_dots' dot buffer. */
static int ws_reserve(struct hmoe_fxp_ws *ws, int n_pairs, int n_experts, size_t arena,
		      int threads, int blocks)
{
	if (n_pairs > ws->cap_pairs || n_experts + 1 > ws->cap_experts) {
		free(ws->tiles);
		free(ws->order);
		free(ws->count);
		ws->tiles = malloc(sizeof(*ws->tiles) * n_pairs);
		ws->order = malloc(sizeof(*ws->order) * n_pairs);
		ws->count = malloc(sizeof(*ws->count) * (n_experts + 1));
		ws->cap_pairs = ws->cap_experts = 0;
		if (!ws->tiles || !ws->order || !ws->count)
			return hmoe_err(HMOE_ENOMEM, "cpu-fxp experts: out of memory for %d pairs",
					n_pairs);
		ws->cap_pairs = n_pairs;
		ws->cap_experts = n_experts + 1;
	}
	if (arena > ws->arena_bytes) {
		free(ws->arena);
		ws->arena = aligned_alloc(64, arena);
		ws->arena_bytes = ws->arena ? arena : 0;
		if (!ws->arena)
			return hmoe_err(HMOE_ENOMEM, "cpu-fxp experts: out of memory for %zu bytes "
					"of tiles", arena);
	}
	if (threads > ws->n_work || (blocks && !ws->blocks)) {
		for (int i = 0; i < ws->n_work; i++)
			free(ws->work[i].blk);
		free(ws->work);
		ws->work = aligned_alloc(64, sizeof(*ws->work) * threads);
		ws->n_work = ws->work ? threads : 0;
		ws->blocks = 0;
		if (!ws->work)
			return hmoe_err(HMOE_ENOMEM, "cpu-fxp experts: out of memory");
		for (int i = 0; i < threads; i++)
			ws->work[i].blk = NULL;
		if (blocks) {
			for (int i = 0; i < threads; i++)
				if (!(ws->work[i].blk = malloc(sizeof(int64_t) * BLK_DOTS)))
					return hmoe_err(HMOE_ENOMEM, "cpu-fxp experts: out of memory");
			ws->blocks = 1;
		}
	}
	return 0;
}

/* Every token's activations, quantised and prepared once per layer call (a token goes to
 * top_k tiles): q (n, P, groups * 128), s, m, e (n, groups), sum (n, P, groups), and
 * m128 (n, groups): whether the group holds a -128. q and s are the caller's when it
 * quantised, else qw and sw in the workspace (NULL otherwise). */
struct tok_side {
	const int8_t *q;
	const int32_t *s;
	int8_t *qw;
	int32_t *sw, *e, *sum;
	uint32_t *m;
	uint8_t *m128;
};

/* The workspace layout of n tokens' tok_side, with room for q and s when quantise. */
static size_t tok_layout(struct tok_side *ts, uint8_t *base, int n, int planes, int groups,
			 int quantise)
{
	size_t off = 0, ng = (size_t)n * groups;

	ts->qw = quantise ? take(base, &off, ng * planes * HMOE_FXP_GROUP) : NULL;
	ts->sw = quantise ? take(base, &off, ng * sizeof(int32_t)) : NULL;
	ts->q = ts->qw;
	ts->s = ts->sw;
	ts->e = take(base, &off, ng * sizeof(int32_t));
	ts->m = take(base, &off, ng * sizeof(uint32_t));
	ts->sum = take(base, &off, ng * planes * sizeof(int32_t));
	ts->m128 = take(base, &off, ng);
	return off;
}

/* One layer call: two parallel loops. The first quantises (when the caller has not) and
 * prepares each (token, group); the second runs, in this order, every tile's x set-up
 * (TILE_X items), its up rows (TILE_UP) and its down rows (TILE_DOWN), each down item
 * also writing its rows of the float output. A tile's up items wait (hmoe_pool_await)
 * until its x is set up, its down items until the last up item to finish has
 * requantised h. An item only waits for items before it, so every wait ends; it is
 * usually short, since a tile's work items are handed out long after the items they
 * wait for, and a long one sleeps (an unbounded spin stalled a 2-vCPU TCG guest, whose
 * vCPUs the host may not run at once, for seconds per token). No loop boundary
 * separates the stages: on many cores each boundary left the cores idle while the
 * slowest finished, and the small per-tile stages ran on one core per tile. */
enum { TILE_X_READY = 1, TILE_H_READY = 2 };

struct moe_job {
	const struct hmoe_fxp_experts *ex;
	const struct hmoe_fxp_simd *simd;
	struct hmoe_pool *pool;
	struct fxp_tile *tiles;
	int n_tiles;
	struct row_work *work;      /* [threads] */
	int up_rows, down_rows;     /* rows per work item (moe_item_rows) */
	int up_chunks, down_chunks; /* work items per tile */
	const float *x;             /* quantised into tok.qw/sw when the caller did not */
	struct tok_side tok;
	float *y;
	int top_k;
	int format, planes;         /* of ex->mode */
};

#define MOE_UP_ROWS 32    /* inter rows per work item */
#define MOE_DOWN_ROWS 128 /* dim rows per work item */
#define MOE_ITEMS_PER_THREAD 8 /* up items per thread that larger items keep, at least */

/* Item i = (token, group): quantised (unless the caller did) and prepared. */
static void moe_tok(void *arg, long i, int thread)
{
	struct moe_job *j = arg;
	int dim = j->ex->dim, dg = hmoe_fxp_groups(dim), t = (int)(i / dg), g = (int)(i % dg);
	size_t ng = (size_t)t * dg;
	size_t row = ng * j->planes * HMOE_FXP_GROUP;
	const int8_t *q = j->tok.q + row;

	(void)thread;
	if (j->tok.qw)
		hmoe_fxp_quant_x_group_by(j->x + (size_t)t * dim, dim, j->planes, g,
					  j->tok.qw + row, j->tok.sw + ng, simd_quant(j->simd));
	j->tok.m128[ng + g] = (uint8_t)group_prepare(q, j->tok.s[ng + g], j->planes, dg, g,
						     j->tok.sum + ng * j->planes, j->tok.m + ng,
						     j->tok.e + ng);
}

/* The tile's x: its tokens' prepared rows, then the variant's layouts. */
static void moe_tile_x(struct moe_job *j, struct fxp_tile *tl)
{
	struct fxp_side *sd = &tl->sx;
	int dg = sd->groups, P = tl->planes;
	size_t row = (size_t)P * dg * HMOE_FXP_GROUP;

	sd->m128 = 0;
	for (int p = 0; p < tl->n; p++) {
		size_t t = (size_t)(tl->pairs[p] / j->top_k);

		memcpy(sd->q + p * row, j->tok.q + t * row, row);
		memcpy(sd->s + p * dg, j->tok.s + t * dg, sizeof(int32_t) * dg);
		memcpy(sd->m + p * dg, j->tok.m + t * dg, sizeof(int32_t) * dg);
		memcpy(sd->e + p * dg, j->tok.e + t * dg, sizeof(int32_t) * dg);
		memcpy(sd->sum + p * P * dg, j->tok.sum + t * P * dg, sizeof(int32_t) * P * dg);
		for (int g = 0; g < dg; g++)
			sd->m128 |= j->tok.m128[t * dg + g];
	}
	side_lanes_ready(tl, sd);
	hmoe_pool_post(j->pool, &tl->stage, TILE_X_READY);
}

static void moe_tile_up(struct moe_job *j, struct fxp_tile *tl, int chunk, int thread)
{
	int r0 = chunk * j->up_rows;
	int r1 = r0 + j->up_rows < j->ex->inter ? r0 + j->up_rows : j->ex->inter;

	hmoe_pool_await(j->pool, &tl->stage, TILE_X_READY);
	j->work[thread].fix = j->ex->fixes ? j->ex->fixes[tl->expert] : NULL;
	tile_up(j->simd, (const uint8_t *)j->ex->packs[tl->expert], j->format, j->ex->dim,
		j->ex->inter, tl, r0, r1, &j->work[thread]);
	if (atomic_fetch_sub_explicit(&tl->up_left, 1, memory_order_acq_rel) == 1) {
		tile_quant_h(j->simd, tl, j->ex->inter);
		hmoe_pool_post(j->pool, &tl->stage, TILE_H_READY);
	}
}

static void moe_tile_down(struct moe_job *j, struct fxp_tile *tl, int chunk, int thread)
{
	int dim = j->ex->dim, r0 = chunk * j->down_rows;
	int r1 = r0 + j->down_rows < dim ? r0 + j->down_rows : dim;

	hmoe_pool_await(j->pool, &tl->stage, TILE_H_READY);
	j->work[thread].fix = j->ex->fixes ? j->ex->fixes[tl->expert] : NULL;
	tile_down(j->simd, (const uint8_t *)j->ex->packs[tl->expert], j->format, dim,
		  j->ex->inter, tl, r0, r1, &j->work[thread]);
	for (int p = 0; p < tl->n; p++)
		for (int n = r0; n < r1; n++)
			j->y[(size_t)tl->pairs[p] * dim + n] =
				hmoe_fxp_out_to_f32(tl->y[(size_t)p * dim + n]);
}

/* Item i of the second loop: x set-ups, then up items, then down items, tile by tile. */
static void moe_tile_item(void *arg, long i, int thread)
{
	struct moe_job *j = arg;
	long up = (long)j->n_tiles * j->up_chunks;

	if (i < j->n_tiles) {
		moe_tile_x(j, &j->tiles[i]);
		return;
	}
	i -= j->n_tiles;
	if (i < up) {
		moe_tile_up(j, &j->tiles[i / j->up_chunks], (int)(i % j->up_chunks), thread);
		return;
	}
	i -= up;
	moe_tile_down(j, &j->tiles[i / j->down_chunks], (int)(i % j->down_chunks), thread);
}

/* The call's work item sizes: MOE_UP_ROWS and MOE_DOWN_ROWS rows, and where every tile
 * holds one token of int8 or int4 and the variant streams four rows at once (row_acc4)
 * up to the plan's one_token_items times as large, as long as the up items stay at least
 * MOE_ITEMS_PER_THREAD per thread. The four-row kernel's streams (rows n and n + half an
 * item) then restart less often (a quarter as often at the default 4x): with their
 * arithmetic between the loads they lose more at each restart than the loads alone do,
 * and on the Zen 5 dev VM (2 threads, paired in one process, 3-4 rounds) one-token layer
 * calls of 128 / 512 rows read int8 1.02-1.10x, int8-a8 1.05-1.07x, int4 1.08-1.12x and
 * int4-a8 1.09-1.13x as fast as 32 / 128 rows, and their read pattern alone did not
 * change; fp8 (its kernel prefetches twice as far ahead) ran 0.94-1.04x, fp8-a8
 * 0.94-0.97x (0.91-1.01x again in the twenty-fifth session; 2x, 4x and 8x 0.96-1.02x in
 * the twenty-seventh, once row_acc4 took runs of quads), tiles of 2-8 tokens and AVX2 no
 * faster (docs/fxp.md section 3). int4, whose rows are half as long, takes its own factor
 * (one_token_items_int4, 16: 1.00-1.11x over 4x in the twenty-ninth session), and
 * one-token fp8-a8 calls take int8's where they run without the remainder lists (the
 * plan's fp8_a8_lists: 1.02-1.07x at 4x, two threads, 1.02-1.06x with one), while fp8
 * A16 and fp8-a8 with the lists keep the usual items. */
static void moe_item_rows(struct moe_job *j, int n_pairs, int threads)
{
	const struct hmoe_fxp_plan *plan = hmoe_fxp_plan();
	int scale = j->format == HMOE_FXP_INT4 ? plan->one_token_items_int4 :
		    j->format != HMOE_FXP_FP8 || !fp8_one_token_lists(j->planes) ?
			    plan->one_token_items : 1;

	j->up_rows = MOE_UP_ROWS;
	j->down_rows = MOE_DOWN_ROWS;
	if (j->n_tiles == n_pairs && j->simd->row_acc4)
		for (int k = 1; k < scale &&
				(long)j->n_tiles * (j->ex->inter / (2 * j->up_rows)) >=
					(long)MOE_ITEMS_PER_THREAD * threads;
		     k *= 2) {
			j->up_rows *= 2;
			j->down_rows *= 2;
		}
	j->up_chunks = (j->ex->inter + j->up_rows - 1) / j->up_rows;
	j->down_chunks = (j->ex->dim + j->down_rows - 1) / j->down_rows;
}

int hmoe_fxp_moe_run(const struct hmoe_fxp_experts *ex, const struct hmoe_fxp_simd *simd,
		     struct hmoe_pool *pool, struct hmoe_fxp_ws **wsp, int n_tokens, int top_k,
		     const float *x, const int *expert_ids, float *y)
{
	return hmoe_fxp_moe_run_q(ex, simd, pool, wsp, n_tokens, top_k, x, NULL, NULL,
				  expert_ids, y);
}

int hmoe_fxp_moe_run_q(const struct hmoe_fxp_experts *ex, const struct hmoe_fxp_simd *simd,
		       struct hmoe_pool *pool, struct hmoe_fxp_ws **wsp, int n_tokens,
		       int top_k, const float *x, const int8_t *xq, const int32_t *xs,
		       const int *expert_ids, float *y)
{
	int n_pairs = n_tokens * top_k, threads = pool ? hmoe_pool_threads(pool) : 1;
	struct moe_job j = { .ex = ex, .simd = simd, .pool = pool, .x = x, .y = y,
			     .top_k = top_k };
	struct hmoe_fxp_ws *ws = wsp ? *wsp : NULL;
	size_t per_tile;
	int *count, *order, n_tiles_max = 0, ret, vnni;

	if (n_pairs <= 0)
		return 0;
	if (!hmoe_fxp_mode_valid(ex->mode))
		return hmoe_err(HMOE_EINPUT, "cpu-fxp experts: bad kernel mode %#x",
				(unsigned)ex->mode);
	if (ex->dim < 1 || ex->dim > HMOE_FXP_MAX_DIM || ex->inter < 1 ||
	    ex->inter > HMOE_FXP_MAX_INTER)
		return hmoe_err(HMOE_EINPUT, "cpu-fxp experts: dims %d x %d outside the kernel's "
				"1..%d x 1..%d", ex->dim, ex->inter, HMOE_FXP_MAX_DIM,
				HMOE_FXP_MAX_INTER);
	j.format = hmoe_fxp_mode_format(ex->mode);
	j.planes = hmoe_fxp_mode_planes(ex->mode);
	vnni = wants_vnni(simd, j.format, j.planes);
	per_tile = tile_bytes(ex->dim, ex->inter, j.planes, vnni);
	for (int p = 0; p < n_pairs; p++) {
		int e = expert_ids[p];

		if (e < 0 || e >= ex->n_experts || !ex->packs[e])
			return hmoe_err(HMOE_EINPUT, "cpu-fxp experts: expert %d of token %d is %s",
					e, p / top_k, e < 0 || e >= ex->n_experts ?
					"out of range" : "not resident");
		if (!fix_fits(ex, e))
			return hmoe_err(HMOE_EINPUT, "cpu-fxp experts: expert %d's fp8 remainder "
					"lists are not of its pack (dims or format)", e);
	}
	if (!ws) {
		ws = calloc(1, sizeof(*ws));
		if (!ws)
			return hmoe_err(HMOE_ENOMEM, "cpu-fxp experts: out of memory");
		if (wsp)
			*wsp = ws;
	}
	/* at most one partial tile per expert beyond the full ones */
	n_tiles_max = n_pairs / HMOE_FXP_TILE + (n_pairs < ex->n_experts ? n_pairs : ex->n_experts);
	ret = ws_reserve(ws, n_pairs, ex->n_experts, per_tile * n_tiles_max, threads,
			 vnni == VNNI_SIGNED);
	if (ret)
		goto out;
	{
		int dg = hmoe_fxp_groups(ex->dim);
		int quantise = !xq || !xs;
		size_t bytes = tok_layout(&j.tok, NULL, n_tokens, j.planes, dg, quantise);

		if (bytes > ws->tok_bytes) {
			free(ws->tok);
			ws->tok = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
			ws->tok_bytes = ws->tok ? bytes : 0;
			if (!ws->tok) {
				ret = hmoe_err(HMOE_ENOMEM, "cpu-fxp experts: out of memory for %d "
					       "tokens' activations", n_tokens);
				goto out;
			}
		}
		tok_layout(&j.tok, ws->tok, n_tokens, j.planes, dg, quantise);
		if (!quantise) {  /* the caller's quantised x, read in place */
			j.tok.q = xq;
			j.tok.s = xs;
		}
	}
	count = ws->count;
	order = ws->order;
	j.tiles = ws->tiles;
	j.work = ws->work;
	/* Pairs in ascending (expert, token, slot) order, then cut into tiles. */
	memset(count, 0, sizeof(*count) * (ex->n_experts + 1));
	for (int p = 0; p < n_pairs; p++)
		count[expert_ids[p] + 1]++;
	for (int e = 0; e < ex->n_experts; e++)
		count[e + 1] += count[e];
	for (int p = 0; p < n_pairs; p++)
		order[count[expert_ids[p]]++] = p;   /* count[e] ends as the end of e's run */
	for (int e = 0, p = 0; e < ex->n_experts; e++)
		for (; p < count[e]; p++) {
			struct fxp_tile *tl = j.n_tiles ? &j.tiles[j.n_tiles - 1] : NULL;

			if (p == (e ? count[e - 1] : 0) || tl->n == HMOE_FXP_TILE) {
				tl = &j.tiles[j.n_tiles++];
				tl->n = 0;
				tl->expert = e;
				tile_layout(tl, ws->arena + per_tile * (j.n_tiles - 1), ex->dim,
					   ex->inter, j.planes, vnni, simd->lanes_min_tokens);
			}
			tl->pairs[tl->n++] = order[p];
		}
	moe_item_rows(&j, n_pairs, threads);
	ws->item_rows[0] = j.up_rows;
	ws->item_rows[1] = j.down_rows;
	for (int t = 0; t < j.n_tiles; t++) {
		atomic_init(&j.tiles[t].stage, 0);
		atomic_init(&j.tiles[t].up_left, j.up_chunks);
	}
	hmoe_pool_run(pool, (long)n_tokens * hmoe_fxp_groups(ex->dim), moe_tok, &j);
	hmoe_pool_run(pool, (long)j.n_tiles * (1 + j.up_chunks + j.down_chunks), moe_tile_item,
		      &j);
out:
	if (!wsp)
		hmoe_fxp_ws_free(ws);
	return ret;
}
