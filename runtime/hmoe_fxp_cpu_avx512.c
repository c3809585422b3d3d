/* hmoe_fxp_cpu_avx512: exact group dots with AVX-512 BW + VNNI (see hmoe_fxp_cpu.h).
 *
 * Every x value is one int8 plane value (|x| <= 128, -128 included), so the lane bounds
 * below hold for both modes; A16 tokens come whole (whole_tokens) and their two planes are
 * combined inside the lanes as described per format.
 * int8: vpdpbusd needs one unsigned operand, so the weights are flipped to u = q + 128
 *       (q ^ 0x80) and dot = sum(u * x) - 128 * sum(x). Lane bound: 2 vpdpbusd of 4
 *       products each, |u * x| <= 255 * 128: 8 * 32640 = 261120 per lane, 16 lanes
 *       4.2e6 < 2^31.
 * int4: the nibbles are already u = q + 8 in [0, 15]: dot = sum(u * x) - 8 * sum(x).
 *       A group's 64 bytes hold columns 0-63 in their low nibbles and 64-127 in their
 *       high ones, so the two nibble vectors pair with x's two halves as they are.
 * fp8:  each code is decoded once per row into ms = +-mantissa (|ms| <= 15, NaN codes
 *       -> 0 like the table) and pw = 2^(E-1) (E = 0: 1), so q = ms * pw exactly; then
 *       per token vpmullw(ms, x) (|.| <= 15 * 128 = 1920) and vpmaddwd with pw: a pair
 *       <= 2 * 1920 * 2^14 = 62914560, 4 chunks per group <= 2.52e8 per lane; 8 lanes
 *       <= 2.01e9 < 2^31 are summed in int32, the last two halves in int64.
 * fp8 with VBMI (chosen at run time): |q| < 2^18 is split into three base-128 digits of
 *       its magnitude with its sign, q = p2 * 2^14 + p1 * 2^7 + p0, |p_i| <= 127, looked up
 *       per code by vpermb (NaN codes: 0 digits) from tables that hold |p| + 128, negated
 *       mod 256 for negative codes (128 - |p|); each plane is so u = p + 128 and
 *       runs through vpdpbusd like int8: S_i = sum(u_i * x), lanes <= 8 * 255 * 128, and
 *       dot = 2^14 S2 + 2^7 S1 + S0 - 128 * (2^14 + 2^7 + 1) * sum(x) in int64. A16
 *       tokens come whole (both planes): the six digit x plane products are weighed inside
 *       two accumulators per group (fp8_token_block), so one token costs two reductions
 *       per group, not six.
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "hmoe_fxp_cpu.h"

static int avx512_supported(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
	       __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
}

/* The four lane sums of a0..a3 (each < 2^31 in total), as 4 int32. */
static __m128i reduce4_epi32(__m512i a0, __m512i a1, __m512i a2, __m512i a3)
{
	__m512i t0 = _mm512_add_epi32(_mm512_unpacklo_epi32(a0, a1), _mm512_unpackhi_epi32(a0, a1));
	__m512i t1 = _mm512_add_epi32(_mm512_unpacklo_epi32(a2, a3), _mm512_unpackhi_epi32(a2, a3));
	__m512i t = _mm512_add_epi32(_mm512_unpacklo_epi64(t0, t1), _mm512_unpackhi_epi64(t0, t1));
	__m256i h = _mm256_add_epi32(_mm512_castsi512_si256(t), _mm512_extracti64x4_epi64(t, 1));

	return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

/* The lane sums of a[0..3][0..3] (each < 2^31 in total) as 16 int32, a[i][j]'s at lane
 * 4 i + j: pairs interleaved and added at 32, then 64, then 128 bits. */
static inline __attribute__((always_inline)) __m512i reduce16_epi32(__m512i a[4][4])
{
	__m512i t[8], u[4], v[2];

#pragma GCC unroll 8
	for (int i = 0; i < 8; i++) {
		__m512i p = a[i / 2][(i % 2) * 2], q = a[i / 2][(i % 2) * 2 + 1];

		t[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(p, q), _mm512_unpackhi_epi32(p, q));
	}
#pragma GCC unroll 4
	for (int i = 0; i < 4; i++)  /* per 128 bits: a[i][0..3]'s partial sums */
		u[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(t[2 * i], t[2 * i + 1]),
					_mm512_unpackhi_epi64(t[2 * i], t[2 * i + 1]));
#pragma GCC unroll 2
	for (int i = 0; i < 2; i++)
		v[i] = _mm512_add_epi32(
			_mm512_shuffle_i32x4(u[2 * i], u[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
			_mm512_shuffle_i32x4(u[2 * i], u[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
	return _mm512_add_epi32(_mm512_shuffle_i32x4(v[0], v[1], _MM_SHUFFLE(2, 0, 2, 0)),
				_mm512_shuffle_i32x4(v[0], v[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

/* Whether each of 8 groups' exponents r (int32 lanes) takes the vector term of terms8:
 * 1 <= r <= 62, as every real scale gives; any other r takes hmoe_fxp_term_split. */
static inline __mmask8 terms8_ok(__m256i r32)
{
	return _mm256_cmpgt_epi32_mask(r32, _mm256_setzero_si256()) &
	       _mm256_cmple_epi32_mask(r32, _mm256_set1_epi32(62));
}

/* The group terms shift_round(d * m, r) of 8 groups in 64-bit lanes (d int64, m < 2^24 and
 * r in [1, 62] as int32 lanes): min((|v| + 2^(r-1)) >> r, 2^56) with the sign put back.
 * |dot| < 2^39 (A16; A8: < 2^32) and m < 2^24 give |v| = |dot * m| <= 8.1e18 < 2^63, so
 * vpabsq is exact and |v| + 2^(r-1) < 2^63 + 2^61 fits the unsigned lane the logical
 * shift reads; the shifted magnitude can pass 2^56 (A16 fp8 only), hence the clamp. */
static inline __attribute__((always_inline)) __m512i terms8_round(__m512i v, __m256i r32)
{
	const __m512i one = _mm512_set1_epi64(1), zero = _mm512_setzero_si512();
	__m512i r = _mm512_cvtepi32_epi64(r32);
	__m512i mag = _mm512_abs_epi64(v);

	mag = _mm512_srlv_epi64(_mm512_add_epi64(mag, _mm512_sllv_epi64(
					one, _mm512_sub_epi64(r, one))), r);
	mag = _mm512_min_epu64(mag, _mm512_set1_epi64(HMOE_FXP_TERM_MAX));
	return _mm512_mask_sub_epi64(mag, _mm512_cmplt_epi64_mask(v, zero), zero, mag);
}

static inline __attribute__((always_inline)) __m512i
terms8_v(__m512i d, __m256i m32, __m256i r32, const int D32)
{
	/* D32: every dot fits int32 (int8 / int4 rows), so the one-uop signed 32 x 32 -> 64
	 * multiply of the lanes' low halves gives dot * m exactly (m < 2^24) */
	return terms8_round(D32 ? _mm512_mul_epi32(d, _mm512_cvtepu32_epi64(m32)) :
				  _mm512_mullo_epi64(d, _mm512_cvtepu32_epi64(m32)), r32);
}

static inline __m512i terms8(__m512i d, __m256i m32, __m256i r32)
{
	return terms8_v(d, m32, r32, 0);
}

/* A row's 8 scale words w (int32 lanes; m = w & 0xffff, e = (w - m) >> 16, both exact)
 * with a token's split scales xm, xe: the terms' multipliers m_w m_x and exponents r. */
static inline __attribute__((always_inline)) void
words_split8(__m256i w, __m256i xm, __m256i xe, __m256i *m32, __m256i *r32)
{
	__m256i wm = _mm256_and_si256(w, _mm256_set1_epi32(0xffff));

	*r32 = _mm256_add_epi32(_mm256_srai_epi32(_mm256_sub_epi32(w, wm), 16), xe);
	*m32 = _mm256_mullo_epi32(wm, xm);
}

/* Each lane's scalar term (exponents outside [1, 62]: only off-contract scales). */
static __attribute__((noinline)) __m512i terms8_scalar(__m512i d, __m256i m32, __m256i r32)
{
	int64_t dd[8];
	uint32_t mm[8];
	int32_t rr[8];

	_mm512_storeu_si512(dd, d);
	_mm256_storeu_si256((__m256i *)mm, m32);
	_mm256_storeu_si256((__m256i *)rr, r32);
	for (int i = 0; i < 8; i++)
		dd[i] = hmoe_fxp_term_split(dd[i], mm[i], rr[i]);
	return _mm512_loadu_si512(dd);
}

/* The terms of 8 groups of the one token of x: dots d (int64 lanes), the row's scale
 * words w (int32 lanes; m = w & 0xffff, e = (w - m) >> 16, both exact) and the token's
 * split scales xm, xe: terms8_v where every exponent r is in [1, 62], else each lane's
 * scalar hmoe_fxp_term_split (only off-contract scales get there). D32 as terms8_v. */
static inline __attribute__((always_inline)) __m512i
terms8_words(__m512i d, __m256i w, __m256i xm, __m256i xe, const int D32)
{
	__m256i m32, r32;

	words_split8(w, xm, xe, &m32, &r32);
	if (terms8_ok(r32) != 0xff)
		return terms8_scalar(d, m32, r32);
	return terms8_v(d, m32, r32, D32);
}

/* The scalar terms of a row's groups g .. groups - 1 (dots d[g ..], the row record's
 * scale words) for token t of x: the tails after the four-row kernels' blocks. */
static int64_t tail_terms(const uint8_t *row, const struct hmoe_fxp_xtile *x, int t,
			  const int64_t *d, int g)
{
	const uint32_t *xm = x->xm + (size_t)t * x->groups;
	const int32_t *xe = x->xe + (size_t)t * x->groups;
	int64_t a = 0;

	for (int k = g; k < x->groups; k++) {
		int32_t w = hmoe_fxp_row_scale(row, k);

		a += hmoe_fxp_term_split(d[k], hmoe_fxp_scale_m(w) * xm[k],
					 hmoe_fxp_scale_e(w) + xe[k]);
	}
	return a;
}

/* int8 and int4 share the shape: per group, two 64-byte unsigned operands u0, u1 and the
 * matching two 64-byte x operands; dot = sum(u * x) - 2^bias_shift * sum(x). */
static inline void load_u(const uint8_t *codes, int format, int g, __m512i *u0, __m512i *u1)
{
	if (format == HMOE_FXP_INT8) {
		const __m512i flip = _mm512_set1_epi8((char)0x80);
		const uint8_t *c = codes + g * HMOE_FXP_GROUP;

		*u0 = _mm512_xor_si512(_mm512_loadu_si512(c), flip);
		*u1 = _mm512_xor_si512(_mm512_loadu_si512(c + 64), flip);
	} else {
		const __m512i low4 = _mm512_set1_epi8(0x0f);
		__m512i b = _mm512_loadu_si512(codes + g * HMOE_FXP_GROUP / 2);

		*u0 = _mm512_and_si512(b, low4);
		*u1 = _mm512_and_si512(_mm512_srli_epi16(b, 4), low4);
	}
}

static inline __m512i dot_u(__m512i acc, __m512i u0, __m512i u1, const int8_t *xp)
{
	__m512i xa = _mm512_loadu_si512(xp), xb = _mm512_loadu_si512(xp + 64);

	return _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(acc, u0, xa), u1, xb);
}

/* One group of token rows: one plane, or (A16) both planes combined inside the lanes as
 * 128 * dot(hi) + dot(lo), the lo plane's products accumulated onto the shifted hi sums.
 * A lane holds 8 products |u * x| <= 255 * 128 per plane, so 129 * 261120 = 3.4e7 per
 * lane and 16 lanes 5.4e8 < 2^31 after the reduction. */
static inline __m512i dot_u_planes(__m512i u0, __m512i u1, const int8_t *xp,
				   int planes, int plane_stride)
{
	__m512i d = dot_u(_mm512_setzero_si512(), u0, u1, xp);

	if (planes == 2)
		d = dot_u(_mm512_slli_epi32(d, HMOE_FXP_PLANE_SHIFT), u0, u1, xp + plane_stride);
	return d;
}

/* x->xsum of token t's groups g..g+3, planes combined like the dots. */
static __m128i xsum4(const struct hmoe_fxp_xtile *x, int t, int g)
{
	const int32_t *s = x->xsum + ((size_t)t * x->planes) * x->groups + g;
	__m128i hi = _mm_loadu_si128((const __m128i *)s);

	if (x->planes == 1)
		return hi;
	return _mm_add_epi32(_mm_slli_epi32(hi, HMOE_FXP_PLANE_SHIFT),
			     _mm_loadu_si128((const __m128i *)(s + x->groups)));
}

/* Groups g0 .. groups - 1 of one row for every token of x, a group at a time (the tail
 * after the blocks of 4 groups). */
static void dots_int_tail(const uint8_t *codes, int format, const struct hmoe_fxp_xtile *x,
			  int g0, int64_t *dots)
{
	int plane = x->groups * HMOE_FXP_GROUP, stride = x->planes * plane;
	int groups = x->groups, planes = x->planes;
	int bias_shift = format == HMOE_FXP_INT8 ? 7 : 3;

	for (int g = g0; g < groups; g++) {
		__m512i u0, u1;

		load_u(codes, format, g, &u0, &u1);
		for (int t = 0; t < x->n_tokens; t++) {
			const int32_t *s = x->xsum + ((size_t)t * planes) * groups + g;
			int64_t xs = planes == 2 ? (int64_t)s[0] * (1 << HMOE_FXP_PLANE_SHIFT) +
						   s[groups] : s[0];

			dots[t * groups + g] =
				(int64_t)_mm512_reduce_add_epi32(dot_u_planes(
					u0, u1, x->xq + (size_t)t * stride + g * HMOE_FXP_GROUP,
					planes, plane)) -
				xs * (1 << bias_shift);
		}
	}
}

/* int8 / int4 dots of every token of x, one plane or (A16) both, written per token:
 * dots[r] (n_tokens, groups) for R = 1 or 2 rows. The weights of 4 groups of each row
 * stay in registers across tokens; two rows keep two weight streams in flight, which
 * a single token needs to approach the memory bandwidth (too little work per load
 * otherwise). */
/* How far ahead of its weight loads dots_int_rows prefetches, into L2: with one or two
 * tokens there is too little work per load for the core to keep enough misses in flight
 * on its own (measured on the dev VM: int8 A16 at 1 token 17 -> 24 GB/s; distances
 * 4-16 KiB are alike, L1 prefetches *instead* are slower). Past a row's end is the next
 * row. The int kernels also prefetch DOTS_PREFETCH_L1_BYTES ahead into L1, from L2 where
 * the first prefetch put the line: one-token layer calls on the lent Emerald Rapids Xeon
 * int8 and int4 1.10x (paired, 3 rounds, every round faster), on the dev VM's Zen 4 int4
 * 1.07-1.13x and int8 unchanged. */
#define DOTS_PREFETCH_BYTES 8192
#define DOTS_PREFETCH_L1_BYTES 1024
/* The one-token kernels that stream four rows far apart (row_acc4) prefetch by the
 * process's plan instead (hmoe_fxp_plan(): rows4 for int8 and int4, fp8_rows4 for
 * fp8), since the best distances differ by CPU: each stream needs only a quarter of the
 * lead, and on the Intel dev VM 1.5 KiB into L2 and 768 B into L1 read the most of the
 * bandwidth (docs/fxp.md section 3), on Zen 5 the L1 prefetch alone, further ahead. */

/* Prefetches, into L2 (T1) or L1 (T0), the `bytes` (lines) DOTS_PREFETCH_BYTES ahead of
 * p. */
static inline __attribute__((always_inline)) void
prefetch_ahead(const uint8_t *p, const int bytes, const int l1)
{
#pragma GCC unroll 8
	for (int i = 0; i < bytes; i += HMOE_FXP_LINE_BYTES) {
		if (l1)
			_mm_prefetch((const char *)p + DOTS_PREFETCH_BYTES + i, _MM_HINT_T0);
		else
			_mm_prefetch((const char *)p + DOTS_PREFETCH_BYTES + i, _MM_HINT_T1);
	}
}

/* Prefetches the `bytes` (lines) from p, L2 bytes ahead into L2 and L1 bytes ahead into
 * L1 (0: not into that level). */
static inline __attribute__((always_inline)) void
prefetch_lines(const uint8_t *p, const int bytes, const int L2, const int L1)
{
#pragma GCC unroll 8
	for (int i = 0; i < bytes; i += HMOE_FXP_LINE_BYTES) {
		if (L2)
			_mm_prefetch((const char *)p + L2 + i, _MM_HINT_T1);
		if (L1)
			_mm_prefetch((const char *)p + L1 + i, _MM_HINT_T0);
	}
}

/* Prefetches the lines of groups g .. g + 3 of R rows L2 bytes ahead into L2 and L1
 * bytes ahead into L1. */
static inline __attribute__((always_inline)) void
prefetch_groups4(const uint8_t *const *codes, const int R, int g, int group_bytes,
		 const int L2, const int L1)
{
#pragma GCC unroll 4
	for (int r = 0; r < R; r++)
		prefetch_lines(codes[r] + (size_t)g * group_bytes, 4 * group_bytes, L2, L1);
}

static inline __attribute__((always_inline)) void
dots_int_rows(const uint8_t *const *codes, const int R, const int format,
	      const struct hmoe_fxp_xtile *x, int64_t *const *dots)
{
	int plane = x->groups * HMOE_FXP_GROUP, stride = x->planes * plane;
	int groups = x->groups, planes = x->planes, g = 0;
	int bias_shift = format == HMOE_FXP_INT8 ? 7 : 3;
	int group_bytes = hmoe_fxp_group_bytes(format);

	for (; g + 4 <= groups; g += 4) {
		__m512i u[2][8];

		prefetch_groups4(codes, R, g, group_bytes, DOTS_PREFETCH_BYTES,
				 DOTS_PREFETCH_L1_BYTES);
#pragma GCC unroll 2
		for (int r = 0; r < R; r++)
#pragma GCC unroll 4
			for (int i = 0; i < 4; i++)
				load_u(codes[r], format, g + i, &u[r][2 * i], &u[r][2 * i + 1]);
		for (int t = 0; t < x->n_tokens; t++) {
			const int8_t *xp = x->xq + (size_t)t * stride + g * HMOE_FXP_GROUP;
			__m256i bias = _mm256_slli_epi64(_mm256_cvtepi32_epi64(xsum4(x, t, g)),
							 bias_shift);

#pragma GCC unroll 2
			for (int r = 0; r < R; r++) {
				__m128i sums = reduce4_epi32(
					dot_u_planes(u[r][0], u[r][1], xp, planes, plane),
					dot_u_planes(u[r][2], u[r][3], xp + 128, planes, plane),
					dot_u_planes(u[r][4], u[r][5], xp + 256, planes, plane),
					dot_u_planes(u[r][6], u[r][7], xp + 384, planes, plane));

				_mm256_storeu_si256((__m256i *)(dots[r] + t * groups + g),
						    _mm256_sub_epi64(_mm256_cvtepi32_epi64(sums), bias));
			}
		}
	}
	for (int r = 0; r < R; r++)
		dots_int_tail(codes[r], format, x, g, dots[r]);
}

/* The same for four rows (row_dots4), a group at a time: each token's x lines are
 * loaded once for the four rows (dots_int_rows loads them once per two), the 8 weight
 * vectors of the four rows' group stay in registers across the tokens, and the four
 * rows' sums of a token come out of one reduction. */
static inline __attribute__((always_inline)) void
dots_int_rows4(const uint8_t *const *codes, const int format,
	       const struct hmoe_fxp_xtile *x, int64_t *const *dots)
{
	int plane = x->groups * HMOE_FXP_GROUP, stride = x->planes * plane;
	int groups = x->groups, planes = x->planes, T = x->n_tokens;
	int bias_shift = format == HMOE_FXP_INT8 ? 7 : 3;
	int group_bytes = hmoe_fxp_group_bytes(format);

	for (int g = 0; g < groups; g++) {
		__m512i u[8];

#pragma GCC unroll 4
		for (int r = 0; r < 4; r++) {
			prefetch_lines(codes[r] + (size_t)g * group_bytes, group_bytes,
				       DOTS_PREFETCH_BYTES, DOTS_PREFETCH_L1_BYTES);
			load_u(codes[r], format, g, &u[2 * r], &u[2 * r + 1]);
		}
		for (int t = 0; t < T; t++) {
			const int8_t *xp = x->xq + (size_t)t * stride + g * HMOE_FXP_GROUP;
			const int32_t *xs = x->xsum + ((size_t)t * planes) * groups + g;
			int32_t b = planes == 2 ? xs[0] * (1 << HMOE_FXP_PLANE_SHIFT) + xs[groups]
						: xs[0];
			_Alignas(32) int64_t v[4];

			/* |S| <= 5.4e8 and |bias| <= 2.7e8 (A16 int8): the difference fits */
			_mm256_store_si256((__m256i *)v, _mm256_cvtepi32_epi64(_mm_sub_epi32(
				reduce4_epi32(dot_u_planes(u[0], u[1], xp, planes, plane),
					      dot_u_planes(u[2], u[3], xp, planes, plane),
					      dot_u_planes(u[4], u[5], xp, planes, plane),
					      dot_u_planes(u[6], u[7], xp, planes, plane)),
				_mm_set1_epi32(b * (1 << bias_shift)))));
#pragma GCC unroll 4
			for (int r = 0; r < 4; r++)
				dots[r][t * groups + g] = v[r];
		}
	}
}

static void avx512_row_dots4(const uint8_t *const *codes, int format,
			     const struct hmoe_fxp_xtile *x, int64_t *const *dots)
{
	if (format == HMOE_FXP_INT8)
		dots_int_rows4(codes, HMOE_FXP_INT8, x, dots);
	else
		dots_int_rows4(codes, HMOE_FXP_INT4, x, dots);
}

static void dots_int(const uint8_t *codes, int format, const struct hmoe_fxp_xtile *x,
		     int64_t *dots)
{
	if (format == HMOE_FXP_INT8)
		dots_int_rows(&codes, 1, HMOE_FXP_INT8, x, &dots);
	else
		dots_int_rows(&codes, 1, HMOE_FXP_INT4, x, &dots);
}

static void avx512_row_dots2(const uint8_t *codes_a, const uint8_t *codes_b, int format,
			     const struct hmoe_fxp_xtile *x, int64_t *dots_a, int64_t *dots_b)
{
	const uint8_t *codes[2] = { codes_a, codes_b };
	int64_t *dots[2] = { dots_a, dots_b };

	if (format == HMOE_FXP_INT8)
		dots_int_rows(codes, 2, HMOE_FXP_INT8, x, dots);
	else
		dots_int_rows(codes, 2, HMOE_FXP_INT4, x, dots);
}

/* The terms of groups g .. g + 3 of two rows a and b (their dots d, lanes 0-3 row a, 4-7
 * row b; their little-endian scale words at sa + 4 g, sb + 4 g) for the one token of x,
 * added to acc (lanes as d), as avx512_row_terms splits the words and sums the terms
 * (terms8; the scalar term where an exponent is outside [1, 62]). */
static inline __attribute__((always_inline)) __m512i
terms4x2(__m512i d, const uint8_t *sa, const uint8_t *sb, const struct hmoe_fxp_xtile *x,
	 int g, __m512i acc)
{
	__m256i w = _mm256_inserti128_si256(
		_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(sa + 4 * g))),
		_mm_loadu_si128((const __m128i *)(sb + 4 * g)), 1);
	__m256i xe = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(x->xe + g)));
	__m256i xm = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(x->xm + g)));

	return _mm512_add_epi64(acc, terms8_words(d, w, xm, xe, 1));
}

/* One token's int8 / int4 Q24 row accumulators for R = 4 row records at once (rows[r],
 * `in` columns; acc[r] = the sum of the row's group terms, as row_terms gives it), dots and
 * terms fused: each group's x (both planes, 4 vectors for A16) is loaded once for the four
 * rows, and each block of 4 groups goes straight into its terms. With one token every
 * weight byte is used once, and the x loads (A16: 2 lines per int8 weight line, 4 per
 * int4 line) slow the weight stream from DRAM even though they hit the cache; shared by
 * four rows they cost a quarter as much. The driver passes rows far apart (n and n + half
 * of a work item, in W1 and W3), which the hardware prefetchers follow as four streams;
 * adjacent rows read side by side are no faster than two. A separate epilogue pass per
 * row (row_terms) would leave the weight stream idle while it runs. Lane bounds as
 * dots_int_rows. */
static inline __attribute__((always_inline)) void
acc_int_1tok(const uint8_t *const *rows, const int format, int in,
	     const struct hmoe_fxp_xtile *x, const int planes, int64_t *acc_out)
{
	enum { R = 4 };
	int plane = x->groups * HMOE_FXP_GROUP, groups = x->groups, g = 0;
	int bias_shift = format == HMOE_FXP_INT8 ? 7 : 3;
	int group_bytes = hmoe_fxp_group_bytes(format);
	size_t skip = (size_t)hmoe_fxp_scale_lines(in) * HMOE_FXP_LINE_BYTES;
	const uint8_t *codes[4];
	const int *pd = hmoe_fxp_plan()->rows4;
	int pl2 = pd[0], pl1 = pd[1];
	__m512i tacc[2] = { _mm512_setzero_si512(), _mm512_setzero_si512() };

	for (int r = 0; r < R; r++)
		codes[r] = rows[r] + skip;
	for (; g + 4 <= groups; g += 4) {
		__m512i acc[4][4], d;
		/* 128 * sum(x) (int8) or 8 * sum(x) (int4) per group, for all four rows: at most
		 * 128 * 129 * 127 * 128 = 2.7e8, so dot = S - bias stays in int32 (< 8.1e8) */
		__m512i bias = _mm512_broadcast_i32x4(_mm_slli_epi32(xsum4(x, 0, g), bias_shift));

#pragma GCC unroll 4
		for (int j = 0; j < 4; j++) {
			const int8_t *xp = x->xq + (g + j) * HMOE_FXP_GROUP;

#pragma GCC unroll 4
			for (int r = 0; r < R; r++) {
				__m512i u0, u1;

				/* each group's lines prefetched just before its loads, among
				 * the products: with the block's 32 prefetches at its start the
				 * one-token layer calls ran int8 7-12% and int4 / int8-a8 1-5%
				 * slower on the Zen 5 dev VM (docs/fxp.md section 3) */
				prefetch_lines(codes[r] + (size_t)(g + j) * group_bytes, group_bytes,
					       pl2, pl1);
				load_u(codes[r], format, g + j, &u0, &u1);
				acc[r][j] = dot_u_planes(u0, u1, xp, planes, plane);
			}
		}
		d = _mm512_sub_epi32(reduce16_epi32(acc), bias);  /* row r, group j at 4 r + j */
		tacc[0] = terms4x2(_mm512_cvtepi32_epi64(_mm512_castsi512_si256(d)), rows[0],
				   rows[1], x, g, tacc[0]);
		tacc[1] = terms4x2(_mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(d, 1)), rows[2],
				   rows[3], x, g, tacc[1]);
	}
	for (int r = 0; r < R; r++) {
		__m256i t = r % 2 ? _mm512_extracti64x4_epi64(tacc[r / 2], 1) :
				    _mm512_castsi512_si256(tacc[r / 2]);
		__m128i h = _mm_add_epi64(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
		int64_t a = _mm_cvtsi128_si64(h) + _mm_extract_epi64(h, 1);

		if (g < groups) {  /* the last groups one at a time, scalar terms */
			int64_t d[HMOE_FXP_MAX_IN_GROUPS];

			dots_int_tail(codes[r], format, x, g, d);
			a += tail_terms(rows[r], x, 0, d, g);
		}
		acc_out[r] = a;
	}
}

/* 32 fp8 codes -> ms = +-mantissa with its implicit bit (NaN codes 0, like the table) and
 * pw = 2^(E-1) (E = 0: 1) in 16-bit lanes, q = ms * pw. */
static inline __attribute__((always_inline)) void
fp8_ms_pw32(const uint8_t *codes, __m512i *ms, __m512i *pw)
{
	const __m512i one = _mm512_set1_epi16(1);
	__m512i c = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)codes));
	__m512i e = _mm512_and_si512(_mm512_srli_epi16(c, 3), _mm512_set1_epi16(15));
	__m512i m = _mm512_and_si512(c, _mm512_set1_epi16(7));
	__mmask32 normal = _mm512_test_epi16_mask(e, e);
	__mmask32 nan = _mm512_cmpeq_epi16_mask(_mm512_and_si512(c, _mm512_set1_epi16(0x7f)),
					       _mm512_set1_epi16(0x7f));
	__mmask32 neg = _mm512_test_epi16_mask(c, _mm512_set1_epi16(0x80));

	m = _mm512_or_si512(m, _mm512_maskz_mov_epi16(normal, _mm512_set1_epi16(8)));
	m = _mm512_maskz_mov_epi16(~nan, m);
	*ms = _mm512_mask_sub_epi16(m, neg, _mm512_setzero_si512(), m);
	*pw = _mm512_sllv_epi16(one, _mm512_subs_epu16(e, one));
}

/* fp8 dots of a one-token tile (P planes, no -128 in x) without VBMI, decoded and
 * multiplied in one pass, 64 codes at a time in bytes as the AVX2 variant's one-token
 * kernel (dots_fp8 below decodes a row into 16-bit ms and pw, stores it and reads it back
 * per plane row, which slows the weight stream from DRAM): E (code bits 6-3) indexes three 16-entry `vpshufb` tables (the implicit bit, and
 * 2^(E-1) as its low and high byte), the NaN codes' magnitudes are zeroed, the codes'
 * signs negate x (|x| <= 127), and vpmaddubsw(mag, x') with the odd (then the even) codes'
 * bytes of mag cleared leaves each code's product alone in a 16-bit lane (<= 15 * 127 =
 * 1905), which vpmaddwd with the even (odd) codes' 2^(E-1) words weighs and pairs: a pair
 * <= 2 * 1905 * 2^14 = 6.2e7, two steps of 64 codes per group put 8 products in a lane,
 * <= 2.5e8; 8 lanes are summed in int32, the rest in int64. About 31 operations per 64
 * codes where the 16-bit kernel it replaced took 44. An x with -128 (which the masked
 * negation cannot negate) takes dots_fp8. */
static inline __attribute__((always_inline)) void
dots_fp8_1tok_p(const uint8_t *codes, const struct hmoe_fxp_xtile *x, const int P,
		int64_t *dots)
{
	const __m512i t8 = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8,
								8, 8, 8, 8, 8));
	const __m512i tpl = _mm512_broadcast_i32x4(_mm_setr_epi8(1, 1, 2, 4, 8, 16, 32, 64, -128,
								 0, 0, 0, 0, 0, 0, 0));
	const __m512i tph = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2,
								 4, 8, 16, 32, 64));
	const __m512i low3 = _mm512_set1_epi8(7), low4 = _mm512_set1_epi8(15);
	const __m512i c7f = _mm512_set1_epi8(0x7f), even = _mm512_set1_epi16(0x00ff);
	const __m512i zero = _mm512_setzero_si512();
	int plane = x->groups * HMOE_FXP_GROUP, pf = hmoe_fxp_fp8_prefetch();

	for (int g = 0; g < x->groups; g++) {
		__m512i acc[2] = { zero, zero };
		int64_t d[2];

		if (pf)
			prefetch_ahead(codes + (size_t)g * HMOE_FXP_GROUP, HMOE_FXP_GROUP, 0);
#pragma GCC unroll 2
		for (int k = 0; k < HMOE_FXP_GROUP; k += 64) {
			size_t o = (size_t)g * HMOE_FXP_GROUP + k;
			__m512i c = _mm512_loadu_si512(codes + o);
			__m512i e = _mm512_and_si512(_mm512_srli_epi16(c, 3), low4);
			__mmask64 num = _mm512_cmpneq_epi8_mask(_mm512_and_si512(c, c7f), c7f);
			__mmask64 neg = _mm512_movepi8_mask(c);
			__m512i mag = _mm512_maskz_mov_epi8(
				num, _mm512_or_si512(_mm512_and_si512(c, low3),
						     _mm512_shuffle_epi8(t8, e)));
			__m512i pl = _mm512_shuffle_epi8(tpl, e), ph = _mm512_shuffle_epi8(tph, e);
			/* (pl & 0x00ff) | (ph << 8) and (pl >> 8) | (ph & 0xff00) per 16 bits */
			__m512i pw_e = _mm512_ternarylogic_epi32(pl, even, _mm512_slli_epi16(ph, 8),
								 0xea);
			__m512i pw_o = _mm512_ternarylogic_epi32(ph, even, _mm512_srli_epi16(pl, 8),
								 0xba);
			__m512i u_e = _mm512_and_si512(mag, even), u_o = _mm512_andnot_si512(even, mag);

#pragma GCC unroll 2
			for (int p = 0; p < P; p++) {
				__m512i xv = _mm512_loadu_si512(x->xq + p * plane + o);
				__m512i xs = _mm512_mask_sub_epi8(xv, neg, zero, xv);

				acc[p] = _mm512_add_epi32(acc[p], _mm512_add_epi32(
					_mm512_madd_epi16(_mm512_maddubs_epi16(u_e, xs), pw_e),
					_mm512_madd_epi16(_mm512_maddubs_epi16(u_o, xs), pw_o)));
			}
		}
#pragma GCC unroll 2
		for (int p = 0; p < P; p++) {
			__m256i h = _mm256_add_epi32(_mm512_castsi512_si256(acc[p]),
						     _mm512_extracti64x4_epi64(acc[p], 1));

			d[p] = _mm512_reduce_add_epi64(_mm512_cvtepi32_epi64(h));
		}
		dots[g] = P == 2 ? d[0] * (1 << HMOE_FXP_PLANE_SHIFT) + d[1] : d[0];
	}
}

static void dots_fp8(const uint8_t *codes, const struct hmoe_fxp_xtile *x, int64_t *dots,
		     int16_t *ms, int16_t *pw)
{
	int stride = x->groups * HMOE_FXP_GROUP, n = x->groups * HMOE_FXP_GROUP;

	for (int k = 0; k < n; k += 32) {
		__m512i m, p;

		fp8_ms_pw32(codes + k, &m, &p);
		_mm512_storeu_si512(ms + k, m);
		_mm512_storeu_si512(pw + k, p);
	}
	for (int g = 0; g < x->groups; g += 4) {
		int n4 = x->groups - g < 4 ? x->groups - g : 4;

		for (int t = 0; t < x->n_tokens; t++) {
			const int8_t *xp = x->xq + t * stride + g * HMOE_FXP_GROUP;
			__m512i acc[4];

#pragma GCC unroll 4
			for (int i = 0; i < 4; i++) {
				acc[i] = _mm512_setzero_si512();
#pragma GCC unroll 4
				for (int c = 0; i < n4 && c < HMOE_FXP_GROUP; c += 32) {
					int k = (g + i) * HMOE_FXP_GROUP + c;
					__m512i xv = _mm512_cvtepi8_epi16(_mm256_loadu_si256(
						(const __m256i *)(xp + i * HMOE_FXP_GROUP + c)));

					acc[i] = _mm512_add_epi32(acc[i], _mm512_madd_epi16(
						_mm512_mullo_epi16(_mm512_loadu_si512(ms + k), xv),
						_mm512_loadu_si512(pw + k)));
				}
			}
			{
				/* 8 lanes of a group still fit int32 (8 * 2.52e8 < 2^31); the last
				 * addition is done in int64 */
				__m512i t0 = _mm512_add_epi32(_mm512_unpacklo_epi32(acc[0], acc[1]),
							      _mm512_unpackhi_epi32(acc[0], acc[1]));
				__m512i t1 = _mm512_add_epi32(_mm512_unpacklo_epi32(acc[2], acc[3]),
							      _mm512_unpackhi_epi32(acc[2], acc[3]));
				__m512i tt = _mm512_add_epi32(_mm512_unpacklo_epi64(t0, t1),
							      _mm512_unpackhi_epi64(t0, t1));
				__m256i h = _mm256_add_epi32(_mm512_castsi512_si256(tt),
							     _mm512_extracti64x4_epi64(tt, 1));
				__m256i d = _mm256_add_epi64(
					_mm256_cvtepi32_epi64(_mm256_castsi256_si128(h)),
					_mm256_cvtepi32_epi64(_mm256_extracti128_si256(h, 1)));
				int64_t out[4];

				_mm256_storeu_si256((__m256i *)out, d);
				for (int i = 0; i < n4; i++)
					dots[t * x->groups + g + i] = out[i];
			}
		}
	}
}

/* ---- fp8 as three int8 planes (needs AVX512-VBMI for the 128-entry lookups) ---- */

static uint8_t fp8_digits[3][128];  /* 128 + |q| digits of e4m3 codes 0..127, base 128 */
static uint8_t fp8_abs[3][128];     /* the digits |p_i| themselves (one-token rows) */
static uint8_t fp8_two[2][128];     /* |q| >> 2 as two bytes: low, high (four-row
				     * kernel with remainder lists, hmoe_fxp_fp8_fix) */
static int16_t fp8_wide[2][128];    /* |q| & 255 and |q| >> 8 of codes 0..127 */
static uint8_t fp8_wide_bytes[3][128]; /* the same as bytes: |q| & 255, (|q| >> 8) & 255,
					* |q| >> 16 (lanes_fp8_wide_vbmi) */
static int fp8_use_planes;           /* VBMI present and $HMOE_FXP_NO_VBMI unset */
static pthread_once_t fp8_digits_once = PTHREAD_ONCE_INIT;

static void fp8_digits_init(void)
{
	const char *no = getenv("HMOE_FXP_NO_VBMI");

	__builtin_cpu_init();

	fp8_use_planes = __builtin_cpu_supports("avx512vbmi") && !(no && *no);
	for (int c = 0; c < 128; c++) {
		/* what fp8_planes64's lookups rely on: p_0 = 0 for E >= 8, p_2 = 0 for E <= 7 */
		if ((c >= 64 && (hmoe_fxp_fp8_q[c] & 127)) || (c < 64 && hmoe_fxp_fp8_q[c] >> 14))
			fp8_use_planes = 0;
		int32_t q = hmoe_fxp_fp8_q[c];  /* >= 0 for c < 128; NaN 0x7f is 0 */

		fp8_digits[0][c] = (uint8_t)(128 + (q & 127));
		fp8_digits[1][c] = (uint8_t)(128 + ((q >> 7) & 127));
		fp8_digits[2][c] = (uint8_t)(128 + (q >> 14));
		for (int i = 0; i < 3; i++)
			fp8_abs[i][c] = (uint8_t)(fp8_digits[i][c] - 128);
		/* what fp8_two64 relies on: |q| >> 2 fits two bytes, the high one 0 for E <= 7 */
		if ((q >> 2) > 0xffff || (c < 64 && q >> 10))
			fp8_use_planes = 0;
		fp8_two[0][c] = (uint8_t)(q >> 2 & 255);
		fp8_two[1][c] = (uint8_t)(q >> 10 & 255);
		fp8_wide[0][c] = (int16_t)(q & 255);
		fp8_wide[1][c] = (int16_t)(q >> 8);
		/* what lanes_fp8_wide_vbmi relies on: |q| >> 16 is 0 for E <= 7 */
		if (c < 64 && q >> 16)
			fp8_use_planes = 0;
		fp8_wide_bytes[0][c] = (uint8_t)(q & 255);
		fp8_wide_bytes[1][c] = (uint8_t)(q >> 8 & 255);
		fp8_wide_bytes[2][c] = (uint8_t)(q >> 16);
	}
}

/* Whether fp8 goes through the planes; the decision is made once per process. */
static int fp8_planes(void)
{
	pthread_once(&fp8_digits_once, fp8_digits_init);
	return fp8_use_planes;
}

#define VBMI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")))

/* The three planes u_i = p_i + 128 of 64 codes: 128 + |p_i| from the table, and for a
 * negative code 128 - |p_i| = 256 - (128 + |p_i|), i.e. the table byte negated. ABS (with
 * the fp8_abs tables): the digits |p_i| as they are. Returns the codes' sign mask.
 * A table is 128 bytes, tab[i][0] for codes 0-63 and tab[i][1] for 64-127 (bit 6, the
 * exponent's top bit, set: E >= 8). Those codes have |q| = M << (E - 1) with E - 1 >= 7, so
 * their p_0 is 0, and codes with E <= 7 have |q| <= 15 << 6 < 2^14, so their p_2 is 0
 * (fp8_digits_init checks both): p_0 and p_2 are one 64-entry vpermb each, masked by bit
 * 6, and only p_1 needs both halves (two vpermb, the second merged under the mask). Four
 * single-uop lookups and a bit test where three 128-entry vpermi2b took three uops
 * each: one-token rows from L2 ran 1.11x (A16) and 1.13x (A8) faster on the Intel dev VM.
 * I2B (the plan's fp8_permi2b, for CPUs where vpermi2b is one op as on Zen 5): each
 * digit by one vpermi2b over the whole 128-entry table, no bit test. */
VBMI_TARGET static inline __attribute__((always_inline)) __mmask64
fp8_planes64(__m512i c, const __m512i tab[3][2], const int ABS, __m512i pu[3], const int I2B)
{
	__mmask64 neg = _mm512_movepi8_mask(c), big;
	__m512i d[3];

	if (I2B) {
#pragma GCC unroll 3
		for (int i = 0; i < 3; i++)
			d[i] = _mm512_permutex2var_epi8(tab[i][0], c, tab[i][1]);
	} else {
		big = _mm512_test_epi8_mask(c, _mm512_set1_epi8(0x40));
		d[1] = _mm512_mask_permutexvar_epi8(_mm512_permutexvar_epi8(c, tab[1][0]), big,
						    c, tab[1][1]);
		/* ABS: the other halves are 0 */
		d[0] = ABS ? _mm512_maskz_permutexvar_epi8(_knot_mask64(big), c, tab[0][0]) :
			     _mm512_mask_permutexvar_epi8(tab[0][1], _knot_mask64(big), c,
							  tab[0][0]);
		d[2] = ABS ? _mm512_maskz_permutexvar_epi8(big, c, tab[2][1]) :
			     _mm512_mask_permutexvar_epi8(tab[2][0], big, c, tab[2][1]);
	}
#pragma GCC unroll 3
	for (int i = 0; i < 3; i++)
		pu[i] = ABS ? d[i] : _mm512_mask_sub_epi8(d[i], neg, _mm512_setzero_si512(), d[i]);
	return neg;
}

/* Decodes groups g .. g + NG - 1 (NG <= 2) into pu[j][h][i]: group g + j, half h, digit i
 * (ABS: the digits |p_i| from fp8_abs, and the codes' signs in neg[j][h]). */
VBMI_TARGET static inline __attribute__((always_inline)) void
fp8_decode_groups(const uint8_t *codes, int g, const int NG, const __m512i tab[3][2],
		  const int ABS, __m512i pu[2][2][3], __mmask64 neg[2][2], const int I2B)
{
#pragma GCC unroll 2
	for (int j = 0; j < NG; j++)
#pragma GCC unroll 2
		for (int h = 0; h < 2; h++)
			neg[j][h] = fp8_planes64(_mm512_loadu_si512(codes + (g + j) * HMOE_FXP_GROUP +
								    64 * h), tab, ABS, pu[j][h], I2B);
}

/* Dots of token t of x (P planes, the mode's) over groups g .. g + NG - 1 (NG <= 2) from
 * their decoded digit planes u_i = p_i + 128, as two int32 accumulators per group whose
 * lanes already weigh the digit and plane products (S(u, x): sum of u * x over the
 * group), each chain accumulating onto its shifted first part:
 *   P = 1: lo = 128 S(u1, x) + S(u0, x),                 hi = S(u2, x);
 *   P = 2: lo = 128 (S(u0, xh) + S(u1, xl)) + S(u0, xl), hi = 128 S(u2, xh) + S(u1, xh)
 *          + S(u2, xl);
 * so dot = lo + 2^14 hi - 128 * 16513 * sum(x), with sum(x) = 128 sum(xh) + sum(xl) for
 * A16. A lane of one S holds 8 products |u * x| <= 255 * 128, i.e. <= 261120, so
 * lo <= 261120 + 128 * 2 * 261120 = 6.7e7 and hi <= 2 * 261120 + 128 * 261120 = 3.4e7,
 * 16 lanes <= 1.07e9 < 2^31. ABS: u_i = |p_i| and x negated where the code is negative
 * (|x| <= 127, so -x is an int8), so S(|p|, +-x) = sum(p * x) with no offset and no bias;
 * |u * x| <= 127 * 127 keeps it inside the same bounds. Always inlined with constant P
 * and NG, so the 12 digit planes, the tables and 2 * NG accumulators stay in the 32
 * registers. */
VBMI_TARGET static inline __attribute__((always_inline)) void
fp8_token_accs(const __m512i pu[2][2][3], const __mmask64 neg[2][2], const int ABS,
	       const struct hmoe_fxp_xtile *x, int t, const int P, int g, const int NG,
	       __m512i acc[4])
{
	const __m512i zero = _mm512_setzero_si512();
	int groups = x->groups, plane = groups * HMOE_FXP_GROUP;
	const int8_t *xt = x->xq + (size_t)t * P * plane;

#pragma GCC unroll 2
	for (int j = 0; j < NG; j++) {
		__m512i xh[2], xl[2], lo = zero, hi = zero;

#pragma GCC unroll 2
		for (int h = 0; h < 2; h++) {
			xh[h] = _mm512_loadu_si512(xt + (g + j) * HMOE_FXP_GROUP + 64 * h);
			xl[h] = P == 2 ? _mm512_loadu_si512(xt + plane + (g + j) * HMOE_FXP_GROUP +
							    64 * h) : xh[h];
			if (ABS) {  /* the codes' signs go onto x (|x| <= 127) */
				xh[h] = _mm512_mask_sub_epi8(xh[h], neg[j][h], zero, xh[h]);
				xl[h] = P == 2 ? _mm512_mask_sub_epi8(xl[h], neg[j][h], zero, xl[h]) :
						 xh[h];
			}
		}
#pragma GCC unroll 2
		for (int h = 0; h < 2; h++) {
			if (P == 2) {
				lo = _mm512_dpbusd_epi32(lo, pu[j][h][0], xh[h]);
				lo = _mm512_dpbusd_epi32(lo, pu[j][h][1], xl[h]);
			} else {
				lo = _mm512_dpbusd_epi32(lo, pu[j][h][1], xh[h]);
			}
			hi = _mm512_dpbusd_epi32(hi, pu[j][h][2], xh[h]);
		}
		lo = _mm512_slli_epi32(lo, 7);
		if (P == 2)
			hi = _mm512_slli_epi32(hi, 7);
#pragma GCC unroll 2
		for (int h = 0; h < 2; h++) {
			lo = _mm512_dpbusd_epi32(lo, pu[j][h][0], xl[h]);
			if (P == 2) {
				hi = _mm512_dpbusd_epi32(hi, pu[j][h][1], xh[h]);
				hi = _mm512_dpbusd_epi32(hi, pu[j][h][2], xl[h]);
			}
		}
		acc[j] = lo;
		acc[2 + j] = hi;
	}
}

VBMI_TARGET static inline __attribute__((always_inline)) void
fp8_token_block(const __m512i pu[2][2][3], const __mmask64 neg[2][2], const int ABS,
		const struct hmoe_fxp_xtile *x, int t, const int P, int g, const int NG,
		int64_t *dots)
{
	const __m512i zero = _mm512_setzero_si512();
	int groups = x->groups;
	__m512i acc[4];   /* [j]: lo of group g + j, [2 + j]: its hi */

	fp8_token_accs(pu, neg, ABS, x, t, P, g, NG, acc);
	{
		/* sums = lo(g), lo(g + 1), hi(g), hi(g + 1); dot = lo + 2^14 hi - bias in int64
		 * (ABS: no bias) */
		__m128i sums = reduce4_epi32(acc[0], NG == 2 ? acc[1] : zero, acc[2],
					     NG == 2 ? acc[3] : zero);
		__m128i d = _mm_add_epi64(_mm_cvtepi32_epi64(sums),
					  _mm_slli_epi64(_mm_cvtepi32_epi64(_mm_srli_si128(sums, 8)),
							 14));

		if (!ABS) {
			const int32_t *xs = x->xsum + (size_t)t * P * groups + g;
			__m128i xsum = _mm_loadl_epi64((const __m128i *)xs);

			if (P == 2)
				xsum = _mm_add_epi32(_mm_slli_epi32(xsum, 7),
						     _mm_loadl_epi64((const __m128i *)(xs + groups)));
			d = _mm_sub_epi64(d, _mm_mul_epi32(_mm_cvtepi32_epi64(xsum),
							   _mm_set1_epi64x(128 * 16513)));
		}
		if (NG == 2)
			_mm_storeu_si128((__m128i *)(dots + t * groups + g), d);
		else
			dots[t * groups + g] = _mm_cvtsi128_si64(d);
	}
}

/* Groups g .. g + NG - 1 for every token of x: decoded once, then one token at a time. */
VBMI_TARGET static inline __attribute__((always_inline)) void
fp8_groups_all_tokens(const uint8_t *codes, const struct hmoe_fxp_xtile *x, int g, const int NG,
		      const int P, const __m512i tab[3][2], const int ABS, int64_t *dots)
{
	__m512i pu[2][2][3];
	__mmask64 neg[2][2];

	fp8_decode_groups(codes, g, NG, tab, ABS, pu, neg, 0);
	for (int t = 0; t < x->n_tokens; t++)
		fp8_token_block(pu, neg, ABS, x, t, P, g, NG, dots);
}

/* Every token of x (P planes each), weight-stationary: each pair of groups is decoded
 * into registers once and feeds every token. ABS (one token, |x| <= 127): the digits stay
 * |p_i| and the codes' signs negate x instead, two masked negations per 64 codes (A16)
 * where the digits need three, and with no offset there is no bias to take out. */
VBMI_TARGET static inline __attribute__((always_inline)) void
dots_fp8_planes_p(const uint8_t *codes, const struct hmoe_fxp_xtile *x, const int P,
		  const int ABS, int64_t *dots)
{
	int groups = x->groups, g = 0, pf = hmoe_fxp_fp8_prefetch();
	__m512i tab[3][2];

	for (int i = 0; i < 3; i++) {
		tab[i][0] = _mm512_loadu_si512(ABS ? fp8_abs[i] : fp8_digits[i]);
		tab[i][1] = _mm512_loadu_si512((ABS ? fp8_abs[i] : fp8_digits[i]) + 64);
	}
	for (; g + 2 <= groups; g += 2) {
		if (pf)  /* into L1: on the Xeon 1.12-1.15x over L2 (paired, 3 rounds) */
			prefetch_ahead(codes + (size_t)g * HMOE_FXP_GROUP, 2 * HMOE_FXP_GROUP, 1);
		fp8_groups_all_tokens(codes, x, g, 2, P, tab, ABS, dots);
	}
	if (g < groups)
		fp8_groups_all_tokens(codes, x, g, 1, P, tab, ABS, dots);
}

/* The 16-lane partial sums of four accumulators a[0..3] folded to one vector whose
 * 128-bit chunk c holds chunk c's sums of a[0], a[1], a[2], a[3] (the first two levels of
 * reduce16_epi32). */
static inline __attribute__((always_inline)) __m512i fold4_epi32(const __m512i a[4])
{
	__m512i t0 = _mm512_add_epi32(_mm512_unpacklo_epi32(a[0], a[1]),
				      _mm512_unpackhi_epi32(a[0], a[1]));
	__m512i t1 = _mm512_add_epi32(_mm512_unpacklo_epi32(a[2], a[3]),
				      _mm512_unpackhi_epi32(a[2], a[3]));

	return _mm512_add_epi32(_mm512_unpacklo_epi64(t0, t1), _mm512_unpackhi_epi64(t0, t1));
}

/* The last two levels: f[b] from fold4_epi32 -> lane 4 b + k = the whole sum of f[b]'s
 * accumulator k. */
static inline __attribute__((always_inline)) __m512i fold16_epi32(const __m512i f[4])
{
	__m512i v0 = _mm512_add_epi32(_mm512_shuffle_i32x4(f[0], f[1], _MM_SHUFFLE(2, 0, 2, 0)),
				      _mm512_shuffle_i32x4(f[0], f[1], _MM_SHUFFLE(3, 1, 3, 1)));
	__m512i v1 = _mm512_add_epi32(_mm512_shuffle_i32x4(f[2], f[3], _MM_SHUFFLE(2, 0, 2, 0)),
				      _mm512_shuffle_i32x4(f[2], f[3], _MM_SHUFFLE(3, 1, 3, 1)));

	return _mm512_add_epi32(_mm512_shuffle_i32x4(v0, v1, _MM_SHUFFLE(2, 0, 2, 0)),
				_mm512_shuffle_i32x4(v0, v1, _MM_SHUFFLE(3, 1, 3, 1)));
}

/* One token, the codes' signs on x (ABS): groups g and g + 1 of a row, their four
 * accumulators (fp8_token_accs) folded at once (fold4_epi32), after prefetching their
 * lines (pf) into L2 L2 bytes ahead and into L1 L1 bytes ahead, as the int kernels do. */
VBMI_TARGET static inline __attribute__((always_inline)) __m512i
fp8_1tok_pair(const uint8_t *codes, const struct hmoe_fxp_xtile *x, const int P, int g,
	      const __m512i tab[3][2], int pf, const int L2, const int L1, const int I2B)
{
	__m512i pu[2][2][3], acc[4];
	__mmask64 neg[2][2];

	if (pf)
		prefetch_lines(codes + (size_t)g * HMOE_FXP_GROUP, 2 * HMOE_FXP_GROUP, L2, L1);
	fp8_decode_groups(codes, g, 2, tab, 1, pu, neg, I2B);
	fp8_token_accs(pu, neg, 1, x, 0, P, g, 2, acc);
	return fold4_epi32(acc);
}

/* The exact dots of 8 groups as 8 int64 lanes from their four pairs' folds f[b] (groups
 * 2 b and 2 b + 1): the 16 sums are finished together, about 2.8 reduction operations
 * per accumulator where one pair at a time took 3.25 plus its own int64 conversion. */
static inline __attribute__((always_inline)) __m512i fp8_1tok_dots8(const __m512i f[4],
								      const int LO, const int HI)
{
	const __m512i lo_hi = _mm512_setr_epi32(0, 1, 4, 5, 8, 9, 12, 13,
						2, 3, 6, 7, 10, 11, 14, 15);
	/* lanes 4 b + k: pair b's lo(2b), lo(2b + 1), hi(2b), hi(2b + 1) -> lo of the 8
	 * groups, then their hi; dot = 2^LO lo + 2^HI hi */
	__m512i s = _mm512_permutexvar_epi32(lo_hi, fold16_epi32(f));
	__m512i lo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(s));

	return _mm512_add_epi64(LO ? _mm512_slli_epi64(lo, LO) : lo,
				_mm512_slli_epi64(_mm512_cvtepi32_epi64(
							  _mm512_extracti64x4_epi64(s, 1)), HI));
}

/* The terms of 8 groups by two bytes, from their four pairs' folds f[b] (A and B of
 * groups 2 b and 2 b + 1, fp8_two_pair), the groups' remainder sums corr (int64) and
 * the row's scale words w, for a token with split scales xm, xe: dot * m = 4 A m + 1024
 * B m + corr m, each part by the one-uop signed 32 x 32 -> 64 multiply. Forming the
 * int64 dot first took two conversions, a lane extraction and vpmullq (three uops, 15
 * cycles). The parts are exact in int32: the sums over 16 lanes are |A| <= 5.4e8, |B|
 * <= 129 * 8 * 224 * 127 * 16 = 4.7e8 (u1 <= 229376 >> 10 = 224), |corr| <= 128 * 3 *
 * 16383 = 6.3e6; with m < 2^24 the products are at most 3.6e16, 8.1e18 and 1.1e14, and
 * every partial sum is (dot - corr) m or dot m, at most (4.81e11 + 6.3e6) * 2^24 = 8.1e18 <
 * 2^63 (|dot| <= 128 * 229376 * 16383; the kernel takes only x without -128, so |x| <=
 * 127 per plane). Off-contract exponents take the scalar terms of the dots
 * (fp8_1tok_dots8), as terms8_words does. */
static inline __attribute__((always_inline)) __m512i
fp8_two_terms8(const __m512i f[4], const int64_t *corr, __m256i w, __m256i xm, __m256i xe)
{
	/* lanes 4 b + k: pair b's A(2b), A(2b + 1), B(2b), B(2b + 1) -> 64-bit lane i
	 * holds group i's A in its low half and B in its high half */
	const __m512i ab = _mm512_setr_epi32(0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12, 14,
					     13, 15);
	__m512i s = _mm512_permutexvar_epi32(ab, fold16_epi32(f)), c = _mm512_loadu_si512(corr);
	__m256i m32, r32;
	__m512i m;

	words_split8(w, xm, xe, &m32, &r32);
	if (terms8_ok(r32) != 0xff)  /* the int64 dots as the other kernels form them */
		return terms8_scalar(_mm512_add_epi64(fp8_1tok_dots8(f, 2, 10), c), m32, r32);
	m = _mm512_cvtepu32_epi64(m32);
	return terms8_round(_mm512_add_epi64(
		_mm512_add_epi64(_mm512_slli_epi64(_mm512_mul_epi32(s, m), 2),
				 _mm512_slli_epi64(_mm512_mul_epi32(_mm512_srli_epi64(s, 32), m),
						   10)),
		_mm512_mul_epi32(c, m)), r32);
}

VBMI_TARGET static inline __attribute__((always_inline)) void
fp8_abs_tables(__m512i tab[3][2])
{
	for (int i = 0; i < 3; i++) {
		tab[i][0] = _mm512_loadu_si512(fp8_abs[i]);
		tab[i][1] = _mm512_loadu_si512(fp8_abs[i] + 64);
	}
}

/* One token, ABS: the dots of a row's groups g .. groups - 1 (fewer than 8) by pairs. */
VBMI_TARGET static inline __attribute__((always_inline)) void
fp8_1tok_tail(const uint8_t *codes, const struct hmoe_fxp_xtile *x, const int P, int g,
	      const __m512i tab[3][2], int64_t *dots)
{
	for (; g + 2 <= x->groups; g += 2)
		fp8_groups_all_tokens(codes, x, g, 2, P, tab, 1, dots);
	if (g < x->groups)
		fp8_groups_all_tokens(codes, x, g, 1, P, tab, 1, dots);
}

/* One token, ABS: a row's dots, 8 groups at a time, the last ones by pairs. */
VBMI_TARGET static inline __attribute__((always_inline)) void
dots_fp8_1tok8(const uint8_t *codes, const struct hmoe_fxp_xtile *x, const int P,
	       int64_t *dots)
{
	int groups = x->groups, g = 0, pf = hmoe_fxp_fp8_prefetch();
	__m512i tab[3][2];

	fp8_abs_tables(tab);
	for (; g + 8 <= groups; g += 8) {
		__m512i f[4];

#pragma GCC unroll 4
		for (int b = 0; b < 4; b++)
			f[b] = fp8_1tok_pair(codes, x, P, g + 2 * b, tab, pf, DOTS_PREFETCH_BYTES,
					     DOTS_PREFETCH_L1_BYTES, 0);
		_mm512_storeu_si512(dots + g, fp8_1tok_dots8(f, 0, 14));
	}
	fp8_1tok_tail(codes, x, P, g, tab, dots);
}

/* One token, the rows' remainder lists at hand (struct hmoe_fxp_fp8_fix): each code's
 * |q| >> 2 as two bytes u0 = (|q| >> 2) & 255 (weight 4) and u1 = |q| >> 10 (weight
 * 1024), from a 128-entry table each, the codes' signs on x as in fp8_planes64. u1 is 0
 * for E <= 7 (|q| <= 960), so it is one vpermb masked by bit 6 and u0 two: three lookups
 * and two masks where the three digits take four and three. Returns the sign mask. I2B
 * (fp8_planes64's): u0 by one vpermi2b, u1 by one over the zero vector and tab[2]. */
VBMI_TARGET static inline __attribute__((always_inline)) __mmask64
fp8_two64(__m512i c, const __m512i tab[3], __m512i u[2], const int I2B)
{
	__mmask64 neg = _mm512_movepi8_mask(c), big;

	if (I2B) {
		u[0] = _mm512_permutex2var_epi8(tab[0], c, tab[1]);
		u[1] = _mm512_permutex2var_epi8(_mm512_setzero_si512(), c, tab[2]);
		return neg;
	}
	big = _mm512_test_epi8_mask(c, _mm512_set1_epi8(0x40));
	u[0] = _mm512_mask_permutexvar_epi8(_mm512_permutexvar_epi8(c, tab[0]), big, c, tab[1]);
	u[1] = _mm512_maskz_permutexvar_epi8(big, c, tab[2]);
	return neg;
}

/* One token's two accumulators of a group by two bytes (fp8_two64's u and sign mask,
 * per half of the group; xt: the token's hi plane at the group, its lo plane `plane`
 * bytes on): A = 128 S(u0, xh) + S(u0, xl) and B the same of u1 (P = 1: S(u0, x),
 * S(u1, x)), so that the group's dot is 4 A + 1024 B plus the remainders' sum. With
 * bytes u <= 255 and |x| <= 127 a lane of one S holds 8 products <= 32385, so A <= 129 *
 * 259080 = 3.3e7 per lane and 5.4e8 over 16 lanes < 2^31. */
VBMI_TARGET static inline __attribute__((always_inline)) void
fp8_two_group(const __m512i u[2][2], const __mmask64 neg[2], const int8_t *xt, size_t plane,
	      const int P, __m512i *a_out, __m512i *b_out)
{
	const __m512i zero = _mm512_setzero_si512();
	__m512i vh[2], vl[2], a = zero, b = zero;

#pragma GCC unroll 2
	for (int h = 0; h < 2; h++) {
		vh[h] = _mm512_loadu_si512(xt + 64 * h);
		vh[h] = _mm512_mask_sub_epi8(vh[h], neg[h], zero, vh[h]);
		if (P == 2) {
			vl[h] = _mm512_loadu_si512(xt + plane + 64 * h);
			vl[h] = _mm512_mask_sub_epi8(vl[h], neg[h], zero, vl[h]);
		}
	}
#pragma GCC unroll 2
	for (int h = 0; h < 2; h++) {
		a = _mm512_dpbusd_epi32(a, u[h][0], vh[h]);
		b = _mm512_dpbusd_epi32(b, u[h][1], vh[h]);
	}
	if (P == 2) {
		a = _mm512_slli_epi32(a, 7);
		b = _mm512_slli_epi32(b, 7);
#pragma GCC unroll 2
		for (int h = 0; h < 2; h++) {
			a = _mm512_dpbusd_epi32(a, u[h][0], vl[h]);
			b = _mm512_dpbusd_epi32(b, u[h][1], vl[h]);
		}
	}
	*a_out = a;
	*b_out = b;
}

/* Groups g and g + 1 of a row by two bytes for each of x's T tokens, decoded once (three
 * lookups and two masks per 64 codes; per token the sign flips of x and the products,
 * fp8_two_group). f[t]: token t's four accumulators (A and B of each group) folded
 * (fold4_epi32), as fp8_1tok_pair's. One token takes each group as soon as it is decoded
 * (decoding both first ran the A8 kernel 3% slower from L2). */
VBMI_TARGET static inline __attribute__((always_inline)) void
fp8_two_pair(const uint8_t *codes, const struct hmoe_fxp_xtile *x, const int P, const int T,
	     int g, const __m512i tab[3], int pf, int L2, int L1, __m512i f[], const int I2B)
{
	size_t plane = (size_t)x->groups * HMOE_FXP_GROUP;
	const int8_t *xg = x->xq + (size_t)g * HMOE_FXP_GROUP;
	__m512i u[2][2][2], acc[4];
	__mmask64 neg[2][2];

	if (pf)
		prefetch_lines(codes + (size_t)g * HMOE_FXP_GROUP, 2 * HMOE_FXP_GROUP, L2, L1);
#pragma GCC unroll 2
	for (int j = 0; j < 2; j++) {
#pragma GCC unroll 2
		for (int h = 0; h < 2; h++)
			neg[j][h] = fp8_two64(_mm512_loadu_si512(codes + (size_t)(g + j) *
								 HMOE_FXP_GROUP + 64 * h),
					      tab, u[j][h], I2B);
		if (T == 1)
			fp8_two_group(u[j], neg[j], xg + j * HMOE_FXP_GROUP, plane, P, &acc[j],
				      &acc[2 + j]);
	}
	if (T == 1) {
		f[0] = fold4_epi32(acc);
		return;
	}
#pragma GCC unroll 1
	for (int t = 0; t < T; t++) {
#pragma GCC unroll 2
		for (int j = 0; j < 2; j++)
			fp8_two_group(u[j], neg[j], xg + t * P * plane + j * HMOE_FXP_GROUP, plane,
				      P, &acc[j], &acc[2 + j]);
		f[t] = fold4_epi32(acc);
	}
}

/* The remainders' sums of four rows per group and token: corr[t][r][g] = sum over
 * fix[r]'s entries in group g of +-(|q| & 3) * x_t, x_t = 128 hi + lo (A16) or hi (A8)
 * of token t, exact in int64. The four lists (a few entries each) go as one loop, the
 * row found by comparisons, so that a call has one loop end to mispredict rather than
 * four. With the weights in cache the sums cost about 4% of the one-token kernel's time
 * (against a build that skips them). */
static inline __attribute__((always_inline)) void
fp8_two_corr(const struct hmoe_fxp_rowfix *fix, const struct hmoe_fxp_xtile *x, const int P,
	     const int T, int64_t corr[HMOE_FXP_ROWS4_TOKENS][4][HMOE_FXP_MAX_IN_GROUPS])
{
	size_t plane = (size_t)x->groups * HMOE_FXP_GROUP;
	int end1 = fix[0].n, end2 = end1 + fix[1].n, end3 = end2 + fix[2].n;
	int total = end3 + fix[3].n;

	/* the blocks read whole vectors of 8 groups: zero those (56 is a multiple of 8). A
	 * fixed trip count, unrolled into stores: with the row's group count as its bound
	 * GCC made the loop a memset call, around which it also spilled and reloaded the
	 * lookup tables (one-token rows from L2 1.01-1.014x faster without it, paired
	 * medians of 20-40 rounds, tile_ab.c HOT=1 in bench/results/..._4d813ff) */
	for (int r = 0; r < 4; r++)
		for (int t = 0; t < T; t++)
#pragma GCC unroll 7
			for (int b = 0; b < HMOE_FXP_MAX_IN_GROUPS / 8; b++)
				if (8 * b < x->groups)
					_mm512_storeu_si512(corr[t][r] + 8 * b,
							    _mm512_setzero_si512());
	for (int i = 0; i < total; i++) {
		int r = (i >= end1) + (i >= end2) + (i >= end3);
		int base = r == 0 ? 0 : r == 1 ? end1 : r == 2 ? end2 : end3;
		int e = fix[r].ent[i - base], k = e >> 3;
		int64_t c = e & 4 ? -(int64_t)(e & 3) : e & 3;

#pragma GCC unroll 4
		for (int t = 0; t < T; t++) {
			const int8_t *xh = x->xq + t * P * plane;
			int64_t v = P == 2 ? 128 * (int64_t)xh[k] + xh[plane + k] : xh[k];

			corr[t][r][k / HMOE_FXP_GROUP] += c * v;
		}
	}
}

/* The fp8 Q24 row accumulators of four row records (rows[r], `in` columns) for x's T
 * tokens, acc_out[r * T + t], the codes' signs on x (ABS): per block of 8 groups, each
 * row's 8 dots per token go straight into their terms (no dots array, no separate
 * row_terms pass). The driver's rows far apart are four weight streams, and they
 * advance together, a pair of groups (256 bytes) of each in turn: taking each row's 8
 * groups (1 KiB) in turn, the one-token layer read 0.79-0.83 of the bandwidth on the
 * Intel dev VM with one thread and this reads 0.84-0.85; with two, medians 0.78 -> 0.82
 * (interleaved runs, docs/fxp-log.md, thirteenth session). TWO (with the rows'
 * remainder lists fix, T <= HMOE_FXP_ROWS4_TOKENS): each pair by two bytes decoded once for the T tokens
 * (fp8_two_pair), a dot 4 A + 1024 B plus its remainders' sum; else (T = 1) by three
 * digits (fp8_1tok_pair). I2B: the lookups by vpermi2b (the plan's fp8_permi2b;
 * fp8_two64, fp8_planes64). The last groups (fewer than 8) go by pairs of three digits,
 * which are exact by themselves, and scalar terms. */
VBMI_TARGET static inline __attribute__((always_inline)) void
acc_fp8_rows4(const uint8_t *const *rows, int in, const struct hmoe_fxp_xtile *x,
	      const int P, const int T, const int TWO, const struct hmoe_fxp_rowfix *fix,
	      int64_t *acc_out, const int I2B)
{
	enum { R = 4 };
	const struct hmoe_fxp_plan *pp = hmoe_fxp_plan();
	int groups = x->groups, g = 0, pf = pp->fp8;
	/* tiles of 2-4 tokens keep the default distances: on Zen 5 its one-token ones ran
	 * them 0.96-0.97x (paired, 12 rounds) */
	int pl2 = T == 1 ? pp->fp8_rows4[0] : HMOE_FXP_ROWS4_PF_L2;
	int pl1 = T == 1 ? pp->fp8_rows4[1] : HMOE_FXP_ROWS4_PF_L1;
	size_t skip = (size_t)hmoe_fxp_scale_lines(in) * HMOE_FXP_LINE_BYTES;
	/* token-major: the one-token kernel touches what it always did */
	int64_t corr[HMOE_FXP_ROWS4_TOKENS][R][HMOE_FXP_MAX_IN_GROUPS];
	__m512i tab[3][2], two[3], tacc[HMOE_FXP_ROWS4_TOKENS][R];

	if (TWO) {
		two[0] = _mm512_loadu_si512(fp8_two[0]);
		two[1] = _mm512_loadu_si512(fp8_two[0] + 64);
		two[2] = _mm512_loadu_si512(fp8_two[1] + 64);
		fp8_two_corr(fix, x, P, T, corr);
	} else {
		fp8_abs_tables(tab);
	}
	for (int r = 0; r < R; r++)
		for (int t = 0; t < T; t++)
			tacc[t][r] = _mm512_setzero_si512();
	for (; g + 8 <= groups; g += 8) {
		__m512i f[HMOE_FXP_ROWS4_TOKENS][R][4], ft[HMOE_FXP_ROWS4_TOKENS];

		/* each row's loads and prefetches instructions of their own (r unrolled):
		 * where one load instruction took the four rows in turn, the hardware
		 * prefetchers, which follow a stride per instruction, lost the streams. On
		 * the Zen 5 dev VM one-token layer calls read 1.08-1.18x as fast (fp8 A16 and
		 * A8, one and two threads), 2-4 tokens 1.04-1.20x (paired in one process; b
		 * unrolled as well: 0.98-1.06x more, not kept; docs/fxp.md section 3) */
#pragma GCC unroll 1
		for (int b = 0; b < 4; b++)
#pragma GCC unroll 4
			for (int r = 0; r < R; r++) {
				if (TWO)
					fp8_two_pair(rows[r] + skip, x, P, T, g + 2 * b, two, pf, pl2,
						     pl1, ft, I2B);
				else
					ft[0] = fp8_1tok_pair(rows[r] + skip, x, P, g + 2 * b, tab, pf,
							      pl2, pl1, I2B);
				for (int t = 0; t < T; t++)
					f[t][r][b] = ft[t];
			}
#pragma GCC unroll 1
		for (int t = 0; t < T; t++) {
			/* the token's split scales, shared by the four rows */
			__m256i xm = _mm256_loadu_si256((const __m256i *)(x->xm + t * groups + g));
			__m256i xe = _mm256_loadu_si256((const __m256i *)(x->xe + t * groups + g));

#pragma GCC unroll 1
			for (int r = 0; r < R; r++) {
				__m256i w = _mm256_loadu_si256((const __m256i *)(rows[r] + 4 * g));

				tacc[t][r] = _mm512_add_epi64(tacc[t][r], TWO ?
					fp8_two_terms8(f[t][r], corr[t][r] + g, w, xm, xe) :
					terms8_words(fp8_1tok_dots8(f[t][r], 0, 14), w, xm, xe, 0));
			}
		}
	}
	if (g < groups && TWO)  /* the three-digit kernel has them already */
		fp8_abs_tables(tab);
	for (int r = 0; r < R; r++) {
		int64_t d[HMOE_FXP_ROWS4_TOKENS * HMOE_FXP_MAX_IN_GROUPS];

		if (g < groups)
			fp8_1tok_tail(rows[r] + skip, x, P, g, tab, d);
		for (int t = 0; t < T; t++)
			acc_out[r * T + t] = _mm512_reduce_add_epi64(tacc[t][r]) +
					     (g < groups ? tail_terms(rows[r], x, t, d + t * groups, g)
							 : 0);
	}
}

/* The few-token fp8 kernels (2 to HMOE_FXP_ROWS4_TOKENS tokens, by two bytes),
 * instantiated with constant planes, tokens and lookups (I2B, the plan's fp8_permi2b). */
VBMI_TARGET static inline __attribute__((always_inline)) void
acc_fp8_rows4_tokens(const uint8_t *const *rows, int in, const struct hmoe_fxp_xtile *x,
		     const struct hmoe_fxp_rowfix *fix, int64_t *acc, const int I2B)
{
	if (x->planes == 2 && x->n_tokens == 2)
		acc_fp8_rows4(rows, in, x, 2, 2, 1, fix, acc, I2B);
	else if (x->planes == 2 && x->n_tokens == 3)
		acc_fp8_rows4(rows, in, x, 2, 3, 1, fix, acc, I2B);
	else if (x->planes == 2)
		acc_fp8_rows4(rows, in, x, 2, 4, 1, fix, acc, I2B);
	else if (x->n_tokens == 2)
		acc_fp8_rows4(rows, in, x, 1, 2, 1, fix, acc, I2B);
	else if (x->n_tokens == 3)
		acc_fp8_rows4(rows, in, x, 1, 3, 1, fix, acc, I2B);
	else
		acc_fp8_rows4(rows, in, x, 1, 4, 1, fix, acc, I2B);
}

/* The one-token fp8 kernels, instantiated with constant planes, split and lookups: by
 * two bytes where the rows' remainder lists fix are given, else by three digits. */
VBMI_TARGET static inline __attribute__((always_inline)) void
acc_fp8_rows4_one(const uint8_t *const *rows, int in, const struct hmoe_fxp_xtile *x,
		  const struct hmoe_fxp_rowfix *fix, int64_t *acc, const int I2B)
{
	if (x->planes == 2 && fix)
		acc_fp8_rows4(rows, in, x, 2, 1, 1, fix, acc, I2B);
	else if (x->planes == 2)
		acc_fp8_rows4(rows, in, x, 2, 1, 0, NULL, acc, I2B);
	else if (fix)
		acc_fp8_rows4(rows, in, x, 1, 1, 1, fix, acc, I2B);
	else
		acc_fp8_rows4(rows, in, x, 1, 1, 0, NULL, acc, I2B);
}

/* Quad q of a run: the four records at rows[r] + q * stride. */
static inline __attribute__((always_inline)) void
quad_rows(const uint8_t *const *rows, size_t stride, int q, const uint8_t *out[4])
{
	for (int r = 0; r < 4; r++)
		out[r] = rows[r] + (size_t)q * stride;
}

/* Quad q's results a[r * T + t] where out says (row_acc4's contract), as the quad ends:
 * the Q16 conversion here, a few instructions a row, rather than in a pass by the caller
 * after the run, whose hundreds of instructions between two runs' loads cost their full
 * time (without that pass one-token layer calls read int4 1.08-1.14x and int8 1.04-1.06x
 * as fast; with the conversion here int4 1.02-1.06x, docs/fxp.md section 3). */
static inline __attribute__((always_inline)) void
quad_put(const struct hmoe_fxp_rows4_out *out, int q, const int T, const int64_t *a)
{
	for (int r = 0; r < 4; r++)
		for (int t = 0; t < T; t++) {
			if (out->acc)
				out->acc[(size_t)(4 * q + r) * T + t] = a[r * T + t];
			if (out->q16[0])
				out->q16[r][(size_t)q * out->qstep + (size_t)t * out->tstride] =
					hmoe_fxp_acc_to_q16_nb(a[r * T + t]);
		}
}

/* Each a function of its own, the few-token kernels apart from the one-token ones so
 * that a one-token call does not set up their larger stack frame; each runs a run of n
 * quads (row_acc4's contract). */
#define FP8_ROWS4_FN(name, kernels, i2b)                                                     \
	VBMI_TARGET static __attribute__((noinline)) void                                    \
	name(const uint8_t *const *rows, size_t stride, int n, int in,                       \
	     const struct hmoe_fxp_xtile *x, const struct hmoe_fxp_rowfix *fix,              \
	     const struct hmoe_fxp_rows4_out *out)                                           \
	{                                                                                    \
		for (int q = 0; q < n; q++) {                                                \
			const uint8_t *rq[4];                                                \
			int64_t a[4 * HMOE_FXP_ROWS4_TOKENS];                                \
                                                                                             \
			quad_rows(rows, stride, q, rq);                                      \
			kernels(rq, in, x, fix ? fix + 4 * q : NULL, a, i2b);                \
			quad_put(out, q, x->n_tokens, a);                                    \
		}                                                                            \
	}
FP8_ROWS4_FN(fp8_rows4_one_vpermb, acc_fp8_rows4_one, 0)
FP8_ROWS4_FN(fp8_rows4_one_vpermi2b, acc_fp8_rows4_one, 1)
FP8_ROWS4_FN(fp8_rows4_tokens_vpermb, acc_fp8_rows4_tokens, 0)
FP8_ROWS4_FN(fp8_rows4_tokens_vpermi2b, acc_fp8_rows4_tokens, 1)

/* A run of one-token int quads, constant format and planes. */
static inline __attribute__((always_inline)) void
int_rows4_run(const uint8_t *const *rows, size_t stride, int n, const int format, int in,
	      const struct hmoe_fxp_xtile *x, const int planes,
	      const struct hmoe_fxp_rows4_out *out)
{
	for (int q = 0; q < n; q++) {
		const uint8_t *rq[4];
		int64_t a[4];

		quad_rows(rows, stride, q, rq);
		acc_int_1tok(rq, format, in, x, planes, a);
		quad_put(out, q, 1, a);
	}
}

/* row_acc4: int8 and int4 one token always; fp8 through the VBMI planes with the
 * codes' signs on x (an x with no -128), by two bytes for 1 to HMOE_FXP_ROWS4_TOKENS
 * tokens where the rows' remainder lists are given, else for one token by three digits;
 * everything else is declined. */
static int avx512_row_acc4(const uint8_t *const *rows, size_t stride, int n, int format,
			   int in, const struct hmoe_fxp_xtile *x,
			   const struct hmoe_fxp_rowfix *fix, const struct hmoe_fxp_rows4_out *out)
{
	if (x->n_tokens != 1 && (format != HMOE_FXP_FP8 || !fix ||
				 x->n_tokens > HMOE_FXP_ROWS4_TOKENS))
		return 1;
	if (format == HMOE_FXP_INT8 && x->planes == 2) {
		int_rows4_run(rows, stride, n, HMOE_FXP_INT8, in, x, 2, out);
	} else if (format == HMOE_FXP_INT8) {
		int_rows4_run(rows, stride, n, HMOE_FXP_INT8, in, x, 1, out);
	} else if (format == HMOE_FXP_INT4 && x->planes == 2) {
		int_rows4_run(rows, stride, n, HMOE_FXP_INT4, in, x, 2, out);
	} else if (format == HMOE_FXP_INT4) {
		int_rows4_run(rows, stride, n, HMOE_FXP_INT4, in, x, 1, out);
	} else if (format != HMOE_FXP_FP8 || !fp8_planes() || x->has_m128) {
		return 1;
	} else {
		int i2b = hmoe_fxp_plan()->fp8_permi2b;

		if (x->n_tokens > 1)
			(i2b ? fp8_rows4_tokens_vpermi2b : fp8_rows4_tokens_vpermb)(rows, stride, n,
										   in, x, fix, out);
		else
			(i2b ? fp8_rows4_one_vpermi2b : fp8_rows4_one_vpermb)(rows, stride, n, in, x,
									     fix, out);
	}
	return 0;
}

VBMI_TARGET static void dots_fp8_planes(const uint8_t *codes, const struct hmoe_fxp_xtile *x,
					int64_t *dots)
{
	int abs = x->n_tokens == 1 && !x->has_m128;

	if (x->planes == 2 && abs)
		dots_fp8_1tok8(codes, x, 2, dots);
	else if (x->planes == 2)
		dots_fp8_planes_p(codes, x, 2, 0, dots);
	else if (abs)
		dots_fp8_1tok8(codes, x, 1, dots);
	else
		dots_fp8_planes_p(codes, x, 1, 0, dots);
}

static void avx512_row_dots(const uint8_t *codes, int format, const struct hmoe_fxp_xtile *x,
			    int64_t *dots, void *tmp)
{
	int16_t *ms = tmp, *pw = ms + HMOE_FXP_MAX_DIM;

	struct hmoe_fxp_xtile rows = *x;

	if (format != HMOE_FXP_FP8) {
		dots_int(codes, format, x, dots);
	} else if (fp8_planes()) {
		dots_fp8_planes(codes, x, dots);
	} else if (x->n_tokens == 1 && !x->has_m128) {
		if (x->planes == 2)
			dots_fp8_1tok_p(codes, x, 2, dots);
		else
			dots_fp8_1tok_p(codes, x, 1, dots);
	} else {
		/* one-plane rows, an A16 token's two combined after */
		rows.n_tokens = x->n_tokens * x->planes;
		rows.planes = 1;
		dots_fp8(codes, &rows, dots, ms, pw);
		if (x->planes == 2)
			hmoe_fxp_combine_planes(dots, x->n_tokens, x->groups);
	}
}

/* The terms of 8 groups at once. The row's scale words w = e * 65536 + m (m < 65536)
 * split as m = w & 0xffff and e = (w - m) >> 16 (exact: w - m is a multiple of 65536;
 * x86 is little-endian, so the words load as they are stored); terms8 has the vector
 * term and its bounds. A block with an r outside [1, 62] goes through the scalar
 * hmoe_fxp_term_split. */
static void avx512_row_terms(const int64_t *dots, const uint8_t *scales,
			     const struct hmoe_fxp_xtile *x, int64_t *acc)
{
	int groups = x->groups;
	uint32_t mw[HMOE_FXP_MAX_IN_GROUPS + 8];
	int32_t ew[HMOE_FXP_MAX_IN_GROUPS + 8];

	hmoe_fxp_split_scales_x86(scales, groups, mw, ew);
	for (int t = 0; t < x->n_tokens; t++) {
		const int64_t *d = dots + t * groups;
		const uint32_t *xm = x->xm + t * groups;
		const int32_t *xe = x->xe + t * groups;
		__m512i sum = _mm512_setzero_si512();
		int64_t a = 0;
		int g = 0;

		for (; g + 8 <= groups; g += 8) {
			__m256i r32 = _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(ew + g)),
						       _mm256_loadu_si256((const __m256i *)(xe + g)));
			__m256i m32 = _mm256_mullo_epi32(_mm256_loadu_si256((const __m256i *)(mw + g)),
							 _mm256_loadu_si256((const __m256i *)(xm + g)));

			if (terms8_ok(r32) != 0xff) {
				for (int i = g; i < g + 8; i++)
					a += hmoe_fxp_term_split(d[i], mw[i] * xm[i], ew[i] + xe[i]);
				continue;
			}
			sum = _mm512_add_epi64(sum, terms8(_mm512_loadu_si512(d + g), m32, r32));
		}
		for (; g < groups; g++)
			a += hmoe_fxp_term_split(d[g], mw[g] * xm[g], ew[g] + xe[g]);
		acc[t] = a + _mm512_reduce_add_epi64(sum);
	}
}

/* ---- rows_acc: tokens in the lanes ---------------------------------------------------
 *
 * For tiles of >= HMOE_FXP_LANES_MIN_TOKENS tokens, in chunks of 16: one zmm of the
 * tile's activations in hmoe_fxp_x_vnni's layout (flipped: x' = x + 128, unsigned) holds 4
 * consecutive columns of 16 tokens, and vpdpbusd against 4 weight bytes broadcast from a
 * row sums them into the 16 token lanes: a group's dot for 16 tokens with no horizontal
 * reduction, and every x load feeds up to 4 rows. The weights enter as signed digits d
 * (int8: q; int4: nibble - 8; fp8: its three base-128 digits p_i, |p_i| <= 127), so
 * S(d, x') = sum(d * x') = sum(d * x) + 128 * sum(d), and the digit sums per group
 * (wsum) take the offset out. Lane bounds: a lane holds one group's 128 products,
 * |d * x'| <= 128 * 255 (int8) or 127 * 255, so |S| <= 4.18e6;
 *   int8 / int4: A16 128 S(hi) + S(lo) <= 5.4e8;
 *   fp8 A8: lo = 128 S(p1) + S(p0) <= 5.4e8, hi = S(p2), combined in int64 as
 *        lo + 2^14 hi after the offsets;
 * all < 2^31. fp8 A16 (lanes_wide) instead takes whole 16-bit activations (x->xw) and
 * two 16-bit digits per weight through vpdpwssd (group_dots_wide): two products per
 * weight and token where byte digits against byte planes need six. The terms and the row
 * sum follow in the lanes (as avx512_row_terms, with the token's scale per lane), so a
 * row's Q24 accumulators come out for 16 tokens at once. */
struct lanes_row {
	const int8_t *d[3];                       /* digit planes, `in` columns */
	const int16_t *e[2];                      /* or (lanes_wide) 16-bit digit planes */
	const uint8_t *codes;                     /* (lanes_wide, e NULL) the codes, decoded
						   * by groups as the chunk needs them */
	int32_t wsum[3][HMOE_FXP_MAX_IN_GROUPS + 4];  /* their sums per group */
	uint32_t mw[HMOE_FXP_MAX_IN_GROUPS + 8];  /* the row's scales, split */
	int32_t ew[HMOE_FXP_MAX_IN_GROUPS + 8];
	/* the record n_rows rows on (the caller's next rows, in memory after these),
	 * prefetched a few lines per group while the first chunk computes */
	const uint8_t *next;
	int next_lines;                           /* its lines per group */
};

/* Sum of each group of a digit plane (4 groups per reduction). */
static void lanes_wsum(const int8_t *d, int groups, int32_t *wsum)
{
	const __m512i ones = _mm512_set1_epi8(1);
	int g = 0;

	for (; g < groups; g += 4) {
		__m512i s[4];

#pragma GCC unroll 4
		for (int i = 0; i < 4; i++) {
			const int8_t *p = d + (g + i < groups ? g + i : g) * HMOE_FXP_GROUP;

			s[i] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ones,
									 _mm512_loadu_si512(p)),
						   ones, _mm512_loadu_si512(p + 64));
		}
		_mm_storeu_si128((__m128i *)(wsum + g), reduce4_epi32(s[0], s[1], s[2], s[3]));
	}
}

/* int4 nibbles -> signed digits q = nibble - 8, columns in order. */
static void lanes_int4(const uint8_t *codes, int groups, int8_t *d)
{
	const __m512i low4 = _mm512_set1_epi8(0x0f), eight = _mm512_set1_epi8(8);

	for (int g = 0; g < groups; g++) {
		__m512i b = _mm512_loadu_si512(codes + g * HMOE_FXP_GROUP / 2);

		_mm512_storeu_si512(d + g * HMOE_FXP_GROUP,
				    _mm512_sub_epi8(_mm512_and_si512(b, low4), eight));
		_mm512_storeu_si512(d + g * HMOE_FXP_GROUP + 64, _mm512_sub_epi8(
			_mm512_and_si512(_mm512_srli_epi16(b, 4), low4), eight));
	}
}

/* fp8 codes -> the signed digits p_0, p_1, p_2 (the tables hold 128 + |p|). */
VBMI_TARGET static void lanes_fp8(const uint8_t *codes, int groups, int8_t *d0, int8_t *d1,
				  int8_t *d2)
{
	int8_t *d[3] = { d0, d1, d2 };
	__m512i tab[3][2];

	for (int i = 0; i < 3; i++) {
		tab[i][0] = _mm512_loadu_si512(fp8_digits[i]);
		tab[i][1] = _mm512_loadu_si512(fp8_digits[i] + 64);
	}
	for (int k = 0; k < groups * HMOE_FXP_GROUP; k += 64) {
		__m512i c = _mm512_loadu_si512(codes + k);
		__mmask64 neg = _mm512_movepi8_mask(c);

#pragma GCC unroll 3
		for (int i = 0; i < 3; i++) {
			__m512i p = _mm512_xor_si512(_mm512_permutex2var_epi8(tab[i][0], c, tab[i][1]),
						     _mm512_set1_epi8((char)0x80));

			_mm512_storeu_si512(d[i] + k, _mm512_mask_sub_epi8(p, neg,
									   _mm512_setzero_si512(), p));
		}
	}
}

/* The same without VBMI, 32 codes at a time in 16-bit lanes: |q| = M * 2^S with M the
 * mantissa with its implicit bit (E = 0: m, else 8 + m; NaN codes: 0) and S = max(E, 1) - 1
 * <= 14, so p_0 = (M << S) & 127, p_1 = (S >= 7 ? M << (S - 7) : M >> (7 - S)) & 127 and
 * p_2 = M >> (14 - S). A shift count that went negative is >= 16 as an unsigned 16-bit
 * count, which vpsllvw and vpsrlvw turn into 0, so p_1 ORs both shifts. */
static void lanes_fp8_bw(const uint8_t *codes, int groups, int8_t *d0, int8_t *d1, int8_t *d2)
{
	const __m512i one = _mm512_set1_epi16(1), seven = _mm512_set1_epi16(7);
	const __m512i low7 = _mm512_set1_epi16(127), f14 = _mm512_set1_epi16(14);

	for (int k = 0; k < groups * HMOE_FXP_GROUP; k += 32) {
		__m512i c = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(codes + k)));
		__m512i e = _mm512_and_si512(_mm512_srli_epi16(c, 3), _mm512_set1_epi16(15));
		__m512i sh = _mm512_sub_epi16(_mm512_max_epu16(e, one), one);
		__m512i m = _mm512_or_si512(_mm512_and_si512(c, seven), _mm512_maskz_mov_epi16(
			_mm512_test_epi16_mask(e, e), _mm512_set1_epi16(8)));
		__mmask32 neg = _mm512_test_epi16_mask(c, _mm512_set1_epi16(0x80));
		__m512i p[3];

		m = _mm512_maskz_mov_epi16(~_mm512_cmpeq_epi16_mask(_mm512_and_si512(c, low7), low7), m);
		p[0] = _mm512_and_si512(_mm512_sllv_epi16(m, sh), low7);
		p[1] = _mm512_and_si512(_mm512_or_si512(_mm512_sllv_epi16(m, _mm512_sub_epi16(sh, seven)),
							_mm512_srlv_epi16(m, _mm512_sub_epi16(seven, sh))),
					low7);
		p[2] = _mm512_srlv_epi16(m, _mm512_sub_epi16(f14, sh));
		for (int i = 0; i < 3; i++)
			_mm256_storeu_si256((__m256i *)((i == 0 ? d0 : i == 1 ? d1 : d2) + k),
					    _mm512_cvtepi16_epi8(_mm512_mask_sub_epi16(
						    p[i], neg, _mm512_setzero_si512(), p[i])));
	}
}

/* fp8 codes -> the 16-bit digits e_0 = +-(|q| & 255), e_1 = +-(|q| >> 8) (|e_0| <= 255,
 * |e_1| <= 896, q = 256 e_1 + e_0), 32 codes at a time: vpermt2w picks from 64 table
 * words by the code's low 6 bits, bit 6 chooses between the two halves of the 128-entry
 * table, bit 7 (the sign) negates. AVX512BW only (vpermt2w: two cycles on the Intel dev
 * VM; with VBMI lanes_fp8_wide_vbmi below). */
static void lanes_fp8_wide(const uint8_t *codes, int groups, int16_t *e0, int16_t *e1)
{
	int16_t *e[2] = { e0, e1 };
	__m512i tab[2][4];

	fp8_planes();  /* the tables */
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < 4; j++)
			tab[i][j] = _mm512_loadu_si512(fp8_wide[i] + 32 * j);
	for (int k = 0; k < groups * HMOE_FXP_GROUP; k += 32) {
		__m512i c = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(codes + k)));
		__mmask32 upper = _mm512_test_epi16_mask(c, _mm512_set1_epi16(0x40));
		__mmask32 neg = _mm512_test_epi16_mask(c, _mm512_set1_epi16(0x80));

#pragma GCC unroll 2
		for (int i = 0; i < 2; i++) {
			__m512i v = _mm512_mask_blend_epi16(
				upper, _mm512_permutex2var_epi16(tab[i][0], c, tab[i][1]),
				_mm512_permutex2var_epi16(tab[i][2], c, tab[i][3]));

			_mm512_storeu_si512(e[i] + k, _mm512_mask_sub_epi16(v, neg,
									    _mm512_setzero_si512(), v));
		}
	}
}

/* The byte tables of the VBMI decode below (wide_vbmi64). */
VBMI_TARGET static inline __attribute__((always_inline)) void
wide_vbmi_tables(__m512i tab[5])
{
	fp8_planes();  /* the tables */
	tab[0] = _mm512_loadu_si512(fp8_wide_bytes[0]);
	tab[1] = _mm512_loadu_si512(fp8_wide_bytes[0] + 64);
	tab[2] = _mm512_loadu_si512(fp8_wide_bytes[1]);
	tab[3] = _mm512_loadu_si512(fp8_wide_bytes[1] + 64);
	tab[4] = _mm512_loadu_si512(fp8_wide_bytes[2] + 64);
}

/* lanes_fp8_wide with VBMI, 64 codes at a time, as bytes: |q| & 255, (|q| >> 8) & 255
 * and |q| >> 16 are 128-entry byte tables (the first two a vpermb per half, merged under
 * bit 6; the third is 0 for E <= 7, one vpermb zeroed outside bit 6: five one-uop
 * lookups), and unpacking the low bytes with 0 and the high ones with |q| >> 16 makes the
 * words. The unpacks interleave within 128-bit lanes, so the codes' qwords are first put
 * in the order 0, 4, 1, 5, 2, 6, 3, 7, which makes their words come out in column order;
 * the sign mask, taken before that, then applies to the first 32 words and, shifted, to
 * the next 32. Per 64 codes about 12 operations for port 5 where the vpermt2w decode
 * keeps it busy for about 22 cycles: a 7168-column row in 450-530 ns against 830-920 on
 * the Intel dev VM (bench/results/..._4d813ff/wide_decode.c). */
VBMI_TARGET static inline __attribute__((always_inline)) void
wide_vbmi64(const uint8_t *codes, const __m512i tab[5], int16_t *e0, int16_t *e1)
{
	const __m512i order = _mm512_setr_epi64(0, 4, 1, 5, 2, 6, 3, 7);
	const __m512i zero = _mm512_setzero_si512();
	__m512i c0 = _mm512_loadu_si512(codes);
	__mmask64 neg = _mm512_movepi8_mask(c0);
	__m512i c = _mm512_permutexvar_epi64(order, c0);
	__mmask64 big = _mm512_test_epi8_mask(c, _mm512_set1_epi8(0x40));
	__m512i lo = _mm512_mask_permutexvar_epi8(_mm512_permutexvar_epi8(c, tab[0]), big, c,
						  tab[1]);
	__m512i mid = _mm512_mask_permutexvar_epi8(_mm512_permutexvar_epi8(c, tab[2]), big, c,
						   tab[3]);
	__m512i hi = _mm512_maskz_permutexvar_epi8(big, c, tab[4]);
	__m512i w[2][2] = { { _mm512_unpacklo_epi8(lo, zero), _mm512_unpackhi_epi8(lo, zero) },
			    { _mm512_unpacklo_epi8(mid, hi), _mm512_unpackhi_epi8(mid, hi) } };
	__mmask32 n[2] = { (__mmask32)neg, (__mmask32)(neg >> 32) };

#pragma GCC unroll 2
	for (int h = 0; h < 2; h++) {
		_mm512_storeu_si512(e0 + 32 * h,
				    _mm512_mask_sub_epi16(w[0][h], n[h], zero, w[0][h]));
		_mm512_storeu_si512(e1 + 32 * h,
				    _mm512_mask_sub_epi16(w[1][h], n[h], zero, w[1][h]));
	}
}

VBMI_TARGET static void lanes_fp8_wide_vbmi(const uint8_t *codes, int groups, int16_t *e0,
					    int16_t *e1)
{
	__m512i tab[5];

	wide_vbmi_tables(tab);
	for (int k = 0; k < groups * HMOE_FXP_GROUP; k += 64)
		wide_vbmi64(codes + k, tab, e0 + k, e1 + k);
}

/* Groups g0 .. g0 + ng - 1 (ng <= WIDE_JIT_GROUPS) of R rows' codes (rw[i].codes) into
 * eb[i][digit][column - 128 g0]: a lanes chunk of one row set decodes its digits just
 * before it multiplies them, 8 KiB that stay in L1, where decoding whole rows first
 * wrote 114 KiB for four rows and read them back from L2. */
#define WIDE_JIT_GROUPS 4
VBMI_TARGET static void wide_vbmi_groups(const struct lanes_row *rw, int R, int g0, int ng,
					 int16_t eb[][2][WIDE_JIT_GROUPS * HMOE_FXP_GROUP])
{
	__m512i tab[5];

	wide_vbmi_tables(tab);
	for (int i = 0; i < R; i++) {
		const uint8_t *codes = rw[i].codes + (size_t)g0 * HMOE_FXP_GROUP;

		for (int k = 0; k < ng * HMOE_FXP_GROUP; k += 64)
			wide_vbmi64(codes + k, tab, eb[i][0] + k, eb[i][1] + k);
	}
}

/* The low (h = 0) or high (h = 1) 8 int32 lanes of v. */
static inline __m256i half8(__m512i v, int h)
{
	return h ? _mm512_extracti64x4_epi64(v, 1) : _mm512_castsi512_si256(v);
}

/* acc[0..1] (16 token lanes, int64) += the terms of one group from its dots d[0..1] and
 * the token lanes' scales; fix[] takes the terms of lanes whose exponent is outside the
 * vector's range [1, 62] (scalar, exact). valid: the chunk's tokens. */
static inline __attribute__((always_inline)) void
lanes_terms(const __m512i d[2], const int H, uint32_t mw, int32_t ew, const uint32_t *xm,
	    const int32_t *xe, __mmask16 valid, __m512i acc[2], int64_t *fix)
{
	const __m512i one = _mm512_set1_epi64(1);
	__m512i m = _mm512_mullo_epi32(_mm512_set1_epi32((int)mw), _mm512_loadu_si512(xm));
	__m512i r = _mm512_add_epi32(_mm512_set1_epi32(ew), _mm512_loadu_si512(xe));
	__mmask16 ok = _mm512_cmpgt_epi32_mask(r, _mm512_setzero_si512()) &
		       _mm512_cmple_epi32_mask(r, _mm512_set1_epi32(62));

	if ((ok & valid) != valid) {
		_Alignas(64) int64_t dv[16];
		_Alignas(64) uint32_t mv[16];
		_Alignas(64) int32_t rv[16];

		_mm512_store_si512(dv, d[0]);
		_mm512_store_si512(dv + 8, d[1]);
		_mm512_store_si512(mv, m);
		_mm512_store_si512(rv, r);
		for (int l = 0; l < 16; l++)
			if ((valid & ~ok) >> l & 1)
				fix[l] += hmoe_fxp_term_split(dv[l], mv[l], rv[l]);
	}
#pragma GCC unroll 2
	for (int h = 0; h < H; h++) {
		__m512i m64 = _mm512_cvtepu32_epi64(half8(m, h));
		__m512i r64 = _mm512_cvtepi32_epi64(half8(r, h));
		__m512i v = _mm512_mullo_epi64(d[h], m64), mag = _mm512_abs_epi64(v);
		__mmask8 okh = (__mmask8)(ok >> (8 * h));

		mag = _mm512_srlv_epi64(_mm512_add_epi64(mag, _mm512_sllv_epi64(
						one, _mm512_sub_epi64(r64, one))), r64);
		mag = _mm512_min_epu64(mag, _mm512_set1_epi64(HMOE_FXP_TERM_MAX));
		mag = _mm512_mask_sub_epi64(mag, _mm512_movepi64_mask(v), _mm512_setzero_si512(),
					    mag);
		acc[h] = _mm512_mask_add_epi64(acc[h], okh, acc[h], mag);
	}
}

/* 8 digit bytes (4 digit words) in every pair of lanes (a paired chunk's step). */
static inline __m512i bcast8(const int8_t *p)
{
	int64_t v;

	memcpy(&v, p, 8);
	return _mm512_set1_epi64(v);
}

/* A chunk's int32 lane sums v -> its tokens' sums in int64 lanes: L = 1 (a lane per
 * token) d[0], d[1] hold tokens 0-7, 8-15; L = 2 (paired: lanes 2t, 2t + 1 hold token t's
 * two halves of the columns, their sum < 2^31 by group_dots_wide's bound) d[0] holds
 * tokens 0-7 and d[1] is 0. */
static inline __attribute__((always_inline)) void
lanes_tokens64(__m512i v, const int L, __m512i d[2])
{
	if (L == 1) {
		d[0] = _mm512_cvtepi32_epi64(half8(v, 0));
		d[1] = _mm512_cvtepi32_epi64(half8(v, 1));
	} else {
		__m512i t = _mm512_add_epi32(v, _mm512_srli_epi64(v, 32));

		d[0] = _mm512_srai_epi64(_mm512_slli_epi64(t, 32), 32);
		d[1] = _mm512_setzero_si512();
	}
}

/* The R rows' accumulators of chunk c's n_tok tokens into acc_out (n_rows, T). */
static inline __attribute__((always_inline)) void
lanes_store(__m512i acc[][2], int64_t fix[][16], const int R, int n_tok, int T, int c,
	    int64_t *acc_out)
{
#pragma GCC unroll 4
	for (int i = 0; i < R; i++) {
		_Alignas(64) int64_t a[16];

		_mm512_store_si512(a, acc[i][0]);
		_mm512_store_si512(a + 8, acc[i][1]);
		for (int l = 0; l < n_tok; l++)
			acc_out[(size_t)i * T + c * 16 + l] = a[l] + fix[i][l];
	}
}

/* The lanes kernels' multiplies, the accumulator updated in place: acc + vpdpbusd(x,
 * the 4 bytes at p in every lane), acc + vpdpwssd(x, the 2 words at p in every lane), and
 * (dpwssd_bcast8, a paired chunk's step) the 4 words at p in every pair of lanes. The
 * multiply is inline assembly with the accumulator as an in-out operand because GCC 12
 * moves the intrinsics' accumulators through a register copy per multiply in these loops
 * (fp8 A16's step of four rows: 36 instructions, 21 without the 16 copies).
 * The broadcast stays a separate load: as a {1to16} memory operand of the multiply it ran
 * 1.5x slower on Zen 4 (fifth session) and within the noise of this on the Intel dev VM. */
static inline __m512i bcast4(const void *p)
{
	int32_t v;

	memcpy(&v, p, 4);
	return _mm512_set1_epi32(v);
}

static inline __attribute__((always_inline)) __m512i dpbusd_bcast4(__m512i acc, __m512i x,
								   const int8_t *p)
{
	__m512i w = bcast4(p);

	__asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w));
	return acc;
}

static inline __attribute__((always_inline)) __m512i dpwssd_bcast4(__m512i acc, __m512i x,
								   const int16_t *p)
{
	__m512i w = bcast4(p);

	__asm__("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w));
	return acc;
}

static inline __attribute__((always_inline)) __m512i dpwssd_bcast8(__m512i acc, __m512i x,
								   const int16_t *p)
{
	__m512i w = bcast8((const int8_t *)p);

	__asm__("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w));
	return acc;
}

/* Group g's dots of the R rows with chunk c's tokens, in int64 token lanes d[i][0..1]
 * (tokens 0-7, 8-15), from byte digits against x in the flipped layout (x->xu): F the
 * format (int8 stands for both int formats), P the planes. */
static inline __attribute__((always_inline)) void
group_dots_bytes(const struct lanes_row *rw, const int R, const int F, const int P,
		 const struct hmoe_fxp_xtile *x, int c, int g, __m512i d[][2])
{
	const __m512i zero = _mm512_setzero_si512();
	int G = x->groups;
	const uint8_t *xh = x->xu + ((size_t)(c * P) * G + g) * 2 * 1024;
	const uint8_t *xl = x->xu + ((size_t)(c * P + P - 1) * G + g) * 2 * 1024;
	/* int: two accumulators per plane (even and odd column quads), so that each
	 * row's dependent chains are half as long */
	const int U = F != HMOE_FXP_FP8 ? 2 : 1;
	__m512i s[HMOE_FXP_LANE_ROWS][4];

#pragma GCC unroll 4
	for (int i = 0; i < R; i++)
		s[i][0] = s[i][1] = s[i][2] = s[i][3] = zero;
	for (int kq2 = 0; kq2 < 32; kq2 += U)
#pragma GCC unroll 2
		for (int h = 0; h < U; h++) {
			int kq = kq2 + h;
			size_t xo = (size_t)(kq >> 4) * 1024 + (kq & 15) * 64;
			__m512i vh = _mm512_loadu_si512(xh + xo);
			__m512i vl = P == 2 ? _mm512_loadu_si512(xl + xo) : vh;
			int k = g * HMOE_FXP_GROUP + 4 * kq;

#pragma GCC unroll 4
			for (int i = 0; i < R; i++) {
				if (F != HMOE_FXP_FP8) {
					s[i][2 * h] = dpbusd_bcast4(s[i][2 * h], vh, rw[i].d[0] + k);
					if (P == 2)
						s[i][2 * h + 1] = dpbusd_bcast4(s[i][2 * h + 1], vl,
										rw[i].d[0] + k);
				} else {
					/* S(p1), S(p0), S(p2) */
					s[i][0] = dpbusd_bcast4(s[i][0], vh, rw[i].d[1] + k);
					s[i][1] = dpbusd_bcast4(s[i][1], vh, rw[i].d[0] + k);
					s[i][2] = dpbusd_bcast4(s[i][2], vh, rw[i].d[2] + k);
				}
			}
		}
#pragma GCC unroll 4
	for (int i = 0; i < R; i++)
		if (F != HMOE_FXP_FP8) {  /* each plane's two halves */
			s[i][0] = _mm512_add_epi32(s[i][0], s[i][2]);
			s[i][1] = _mm512_add_epi32(s[i][1], s[i][3]);
		}
#pragma GCC unroll 4
	for (int i = 0; i < R; i++) {
		if (F != HMOE_FXP_FP8) {
			/* 128 S(hi) + S(lo) - 128 * 129 * sum(q) (A8: S - 128 sum(q)) */
			__m512i v = P == 2 ? _mm512_add_epi32(_mm512_slli_epi32(s[i][0], 7), s[i][1])
					   : s[i][0];

			v = _mm512_sub_epi32(v, _mm512_set1_epi32(
				(P == 2 ? 128 * 129 : 128) * rw[i].wsum[0][g]));
			lanes_tokens64(v, 1, d[i]);
		} else {
			const int64_t w0 = rw[i].wsum[0][g], w1 = rw[i].wsum[1][g];
			const int64_t w2 = rw[i].wsum[2][g];
			int64_t blo = 16384 * w1 + 128 * w0, bhi = 128 * w2;
			__m512i lo[2], hi[2];

			lanes_tokens64(_mm512_add_epi32(_mm512_slli_epi32(s[i][0], 7), s[i][1]), 1,
				       lo);
			lanes_tokens64(s[i][2], 1, hi);
#pragma GCC unroll 2
			for (int h = 0; h < 2; h++)
				d[i][h] = _mm512_add_epi64(
					_mm512_sub_epi64(lo[h], _mm512_set1_epi64(blo)),
					_mm512_slli_epi64(_mm512_sub_epi64(hi[h], _mm512_set1_epi64(bhi)),
							  14));
		}
	}
}

/* The same for fp8 with A16 x as 16-bit words (x->xw), L the lanes per token: 1 (16
 * tokens; a step is one column pair) or 2 (a paired chunk of at most 8 tokens; a step is
 * two column pairs, lane 2t + e holding pair e of token t, the digits broadcast 8 bytes at
 * a time; d[i][1] is then 0). Per step one vpdpwssd per digit against the digit words
 * broadcast from each row (eg[i]: row i's digit words at the group), S_i = sum(e_i * x)
 * over the group in each token's lanes. Lane
 * bound: 128 products |e_1 * x| <= 896 * 16512, so |S_1| <= 1.894e9 < 2^31 (|S_0| <=
 * 5.4e8; paired: the sum of the two lanes' 64 each); dot = S_0 + 256 S_1 in int64. Two
 * digit products per weight and token, where the byte digits need six. */
static inline __attribute__((always_inline)) void
group_dots_wide(const int16_t *const eg[][2], const int R, const int L,
		const struct hmoe_fxp_xtile *x, int c, int g, __m512i d[][2])
{
	const __m512i zero = _mm512_setzero_si512();
	const int16_t *xg = x->xw + ((size_t)c * x->groups + g) * HMOE_FXP_GROUP * 16;
	__m512i s[HMOE_FXP_LANE_ROWS][2];

#pragma GCC unroll 4
	for (int i = 0; i < R; i++)
		s[i][0] = s[i][1] = zero;
	for (int st = 0; st < HMOE_FXP_GROUP / 2 / L; st++) {
		__m512i v = _mm512_loadu_si512(xg + 32 * st);
		int k = 2 * L * st;

#pragma GCC unroll 4
		for (int i = 0; i < R; i++) {
			s[i][0] = L == 1 ? dpwssd_bcast4(s[i][0], v, eg[i][0] + k)
					 : dpwssd_bcast8(s[i][0], v, eg[i][0] + k);
			s[i][1] = L == 1 ? dpwssd_bcast4(s[i][1], v, eg[i][1] + k)
					 : dpwssd_bcast8(s[i][1], v, eg[i][1] + k);
		}
	}
#pragma GCC unroll 4
	for (int i = 0; i < R; i++) {
		__m512i d0[2], d1[2];

		lanes_tokens64(s[i][0], L, d0);
		lanes_tokens64(s[i][1], L, d1);
#pragma GCC unroll 2
		for (int h = 0; h < 2; h++)
			d[i][h] = _mm512_add_epi64(d0[h], _mm512_slli_epi64(d1[h], 8));
	}
}

/* One chunk (n_tok valid tokens) for R rows, F the format, P the planes, L the lanes per
 * token (2 only for fp8 A16's paired chunk): per group the rows' dots, then their terms
 * and row sums in the token lanes. Constant shapes, so this is inlined per shape and the
 * accumulators stay in registers. */
static inline __attribute__((always_inline)) void
lanes_chunk(const struct lanes_row *rw, const int R, const int F, const int P, const int L,
	    const struct hmoe_fxp_xtile *x, int c, int n_tok, int64_t *acc_out)
{
	const __m512i zero = _mm512_setzero_si512();
	int G = x->groups, T = x->n_tokens;
	__mmask16 valid = (__mmask16)((1u << n_tok) - 1);
	__m512i acc[HMOE_FXP_LANE_ROWS][2];
	_Alignas(64) int64_t fix[HMOE_FXP_LANE_ROWS][16] = { { 0 } };
	/* fp8 A16 rows given as codes: their digits by WIDE_JIT_GROUPS groups */
	_Alignas(64) int16_t eb[F == HMOE_FXP_FP8 && P == 2 ? HMOE_FXP_LANE_ROWS : 1][2]
			       [WIDE_JIT_GROUPS * HMOE_FXP_GROUP];

#pragma GCC unroll 4
	for (int i = 0; i < R; i++)
		acc[i][0] = acc[i][1] = zero;
	for (int g = 0; g < G; g++) {
		const uint32_t *xm = x->xmt + ((size_t)c * G + g) * 16;
		const int32_t *xe = x->xet + ((size_t)c * G + g) * 16;
		__m512i d[HMOE_FXP_LANE_ROWS][2];

		/* the next call's rows into L2 while the first chunk computes: that call
		 * reads them first (digits, sums) and would otherwise wait for the memory */
		if (c == 0)
#pragma GCC unroll 4
			for (int i = 0; i < R; i++)
				for (int l = 0; l < rw[i].next_lines; l++)
					_mm_prefetch((const char *)rw[i].next +
						     ((size_t)g * rw[i].next_lines + l) *
						     HMOE_FXP_LINE_BYTES, _MM_HINT_T1);

		if (F == HMOE_FXP_FP8 && P == 2) {
			const int16_t *eg[HMOE_FXP_LANE_ROWS][2];

			if (!rw[0].e[0] && g % WIDE_JIT_GROUPS == 0)
				wide_vbmi_groups(rw, R, g, G - g < WIDE_JIT_GROUPS ? G - g :
						 WIDE_JIT_GROUPS, eb);
#pragma GCC unroll 4
			for (int i = 0; i < R; i++)
				for (int j = 0; j < 2; j++)
					eg[i][j] = rw[0].e[0] ? rw[i].e[j] + g * HMOE_FXP_GROUP :
						eb[i][j] + g % WIDE_JIT_GROUPS * HMOE_FXP_GROUP;
			group_dots_wide(eg, R, L, x, c, g, d);
		} else
			group_dots_bytes(rw, R, F, P, x, c, g, d);
#pragma GCC unroll 4
		for (int i = 0; i < R; i++)
			lanes_terms(d[i], 2 / L, rw[i].mw[g], rw[i].ew[g], xm, xe, valid, acc[i],
				    fix[i]);
	}
	lanes_store(acc, fix, R, n_tok, T, c, acc_out);
}

/* Every chunk for one shape (R rows, format F, planes P). */
static inline __attribute__((always_inline)) void
lanes_shape(const struct lanes_row *rw, const int R, const int F, const int P,
	    const struct hmoe_fxp_xtile *x, int64_t *acc)
{
	for (int c = 0; c * 16 < x->n_tokens; c++) {
		int n_tok = x->n_tokens - c * 16 < 16 ? x->n_tokens - c * 16 : 16;
		/* only fp8 A16 pairs (xpaired); the constant test keeps other shapes from
		 * instantiating a paired chunk */
		int paired = F == HMOE_FXP_FP8 && P == 2 && x->xpaired &&
			     (c + 1) * 16 >= x->n_tokens;

		if (paired)
			lanes_chunk(rw, R, F, P, 2, x, c, n_tok, acc);
		else
			lanes_chunk(rw, R, F, P, 1, x, c, n_tok, acc);
	}
}

#define LANES_R(F, P)                                              \
	do {                                                       \
		if (n_rows == 4)                                   \
			lanes_shape(rw, 4, F, P, x, acc);          \
		else if (n_rows == 3)                              \
			lanes_shape(rw, 3, F, P, x, acc);          \
		else if (n_rows == 2)                              \
			lanes_shape(rw, 2, F, P, x, acc);          \
		else                                               \
			lanes_shape(rw, 1, F, P, x, acc);          \
	} while (0)

static int avx512_rows_acc(const uint8_t *rows, size_t row_stride, int n_rows, int format,
			   int in, const struct hmoe_fxp_xtile *x, int64_t *acc, void *tmp)
{
	struct lanes_row rw[HMOE_FXP_LANE_ROWS];
	int G = x->groups, wide = format == HMOE_FXP_FP8 && x->planes == 2;
	int digits = wide ? 0 : format == HMOE_FXP_FP8 ? 3 : 1;
	size_t codes_at = (size_t)hmoe_fxp_scale_lines(in) * HMOE_FXP_LINE_BYTES;
	int8_t *scratch = tmp;

	if (n_rows < 1 || n_rows > HMOE_FXP_LANE_ROWS || (wide ? !x->xw : !x->xu))
		return 0;
	for (int i = 0; i < n_rows; i++) {
		const uint8_t *row = rows + i * row_stride, *codes = row + codes_at;

		rw[i].next = row + n_rows * row_stride;
		rw[i].next_lines = (int)((row_stride / HMOE_FXP_LINE_BYTES + G - 1) / G);

		for (int j = 0; j < digits; j++)
			rw[i].d[j] = scratch + ((size_t)i * 3 + j) * HMOE_FXP_MAX_DIM;
		if (wide && fp8_planes() && x->n_tokens <= 16) {
			/* one chunk: lanes_chunk decodes the digits as it goes */
			rw[i].e[0] = rw[i].e[1] = NULL;
			rw[i].codes = codes;
		} else if (wide) {
			int16_t *e = (int16_t *)tmp + (size_t)i * 2 * HMOE_FXP_MAX_DIM;

			rw[i].e[0] = e;
			rw[i].e[1] = e + HMOE_FXP_MAX_DIM;
			(fp8_planes() ? lanes_fp8_wide_vbmi : lanes_fp8_wide)(
				codes, G, e, e + HMOE_FXP_MAX_DIM);
		} else if (format == HMOE_FXP_INT8) {
			rw[i].d[0] = (const int8_t *)codes;
		} else if (format == HMOE_FXP_INT4) {
			lanes_int4(codes, G, (int8_t *)rw[i].d[0]);
		} else {
			(fp8_planes() ? lanes_fp8 : lanes_fp8_bw)(codes, G, (int8_t *)rw[i].d[0],
								  (int8_t *)rw[i].d[1],
								  (int8_t *)rw[i].d[2]);
		}
		for (int j = 0; j < digits; j++)
			lanes_wsum(rw[i].d[j], G, rw[i].wsum[j]);
		hmoe_fxp_split_scales_x86(row, G, rw[i].mw, rw[i].ew);
	}
	if (wide)
		LANES_R(HMOE_FXP_FP8, 2);
	else if (format == HMOE_FXP_FP8)
		LANES_R(HMOE_FXP_FP8, 1);
	else if (x->planes == 2)
		LANES_R(HMOE_FXP_INT8, 2);
	else
		LANES_R(HMOE_FXP_INT8, 1);
	return 1;
}

/* ---- the driver's per-token integer steps, vectorised -------------------------------- */

/* hmoe_fxp_swiglu_q32 of n pairs, 8 at a time in 64-bit lanes (the same values: the
 * driver's up pass runs it between the four-row kernels' runs, where no load overlaps
 * it, and the scalar one took about 2% of a one-token int4 call). Lanes out of the table's
 * range read an in-range entry and take a (a >= 16) or 0 (a < -16) instead, as the
 * reference returns before its lookup. */
static void avx512_swiglu(const int32_t *gate, const int32_t *up, int n, int64_t *h)
{
	const __m512i range = _mm512_set1_epi64(HMOE_FXP_SIG_RANGE_Q16);
	const __m512i last = _mm512_set1_epi64(2 * (int64_t)HMOE_FXP_SIG_RANGE_Q16 - 1);
	const __m512i step = _mm512_set1_epi64((1 << HMOE_FXP_SIG_STEP_SHIFT) - 1);
	const __m512i half = _mm512_set1_epi64(1 << (HMOE_FXP_SIG_STEP_SHIFT - 1));
	const __m512i round = _mm512_set1_epi64((int64_t)1 << (HMOE_FXP_F_H - 1));
	const __m512i zero = _mm512_setzero_si512();

	for (int i = 0; i < n; i += 8) {
		__mmask8 k = n - i >= 8 ? 0xff : (__mmask8)((1u << (n - i)) - 1);
		__m512i a = _mm512_cvtepi32_epi64(_mm256_maskz_loadu_epi32(k, gate + i));
		__m512i u = _mm512_cvtepi32_epi64(_mm256_maskz_loadu_epi32(k, up + i));
		__mmask8 big = _mm512_cmpge_epi64_mask(a, range);
		__mmask8 low = _mm512_cmplt_epi64_mask(a, _mm512_sub_epi64(zero, range));
		__m512i off = _mm512_min_epi64(_mm512_max_epi64(_mm512_add_epi64(a, range), zero),
					       last);
		__m512i idx = _mm512_srli_epi64(off, HMOE_FXP_SIG_STEP_SHIFT);
		__m512i lo = _mm512_cvtepi32_epi64(_mm512_i64gather_epi32(idx, hmoe_fxp_sigmoid_q16,
									  4));
		__m512i hi = _mm512_cvtepi32_epi64(
			_mm512_i64gather_epi32(idx, hmoe_fxp_sigmoid_q16 + 1, 4));
		/* the table rises: hi - lo >= 0, (hi - lo) * frac < 2^31 */
		__m512i sig = _mm512_add_epi64(lo, _mm512_srli_epi64(_mm512_add_epi64(
			_mm512_mul_epi32(_mm512_sub_epi64(hi, lo), _mm512_and_si512(off, step)),
			half), HMOE_FXP_SIG_STEP_SHIFT));
		/* |a * sig| < 2^21 * 2^16: shift_round's magnitude rounding, no saturation */
		__m512i p = _mm512_mul_epi32(a, sig);
		__mmask8 neg = _mm512_cmplt_epi64_mask(p, zero);
		__m512i mag = _mm512_srli_epi64(_mm512_add_epi64(_mm512_abs_epi64(p), round),
						HMOE_FXP_F_H);
		__m512i silu = _mm512_mask_sub_epi64(mag, neg, zero, mag);

		silu = _mm512_mask_mov_epi64(silu, big, a);
		silu = _mm512_mask_mov_epi64(silu, low, zero);
		/* |silu| < 2^31 and |up| <= 2^31: the int64 product is exact */
		_mm512_mask_storeu_epi64(h + i, k, _mm512_mul_epi32(silu, u));
	}
}

/* hmoe_fxp_quant_group with the same bytes and scale word, 8 values at a time. Its
 * m and k come from the magnitudes' maximum by the reference's hmoe_fxp_quant_scale;
 * its |q| = floor(a / (2 m 2^k)), a = 2 |v| + m 2^k (k < 0: a = 2 (|v| << -k) +
 * m, divisor 2 m), is floor(n / m) of n = a >> (k + 1) (k < 0: a >> 1), since flooring
 * by a power of two first does not change a floored quotient. n <= (2 qmax + 1) m / 2 <
 * 16257 * 255 < 2^22, because |v| <= qmax m 2^k by m's choice, and for such n floor(n /
 * m) = (n * ceil(2^32 / m)) >> 32: the product exceeds n / m by less than n / 2^32 <
 * 2^-10, while n / m lies at least 1 / m >= 1 / 255 below the next integer. So one
 * 32 x 32 -> 64-bit multiply per value replaces the reference's 64-bit division (about
 * 2% of a one-token int4 layer call, on the per-token path between the kernels). */
static int32_t avx512_quant_group(const int64_t *v, int32_t n, int32_t planes, int8_t *hi,
				  int8_t *lo)
{
	const __m512i in_max = _mm512_set1_epi64(HMOE_FXP_ACT_IN_MAX);
	const __m512i zero = _mm512_setzero_si512();
	__m512i mags[HMOE_FXP_GROUP / 8], vmax = zero, add, rcp, sh_l, sh_r;
	__mmask8 keep[HMOE_FXP_GROUP / 8];
	uint64_t amax, m;
	int k, nv;

	if (n > HMOE_FXP_GROUP)
		n = HMOE_FXP_GROUP;
	nv = n > 0 ? (n + 7) / 8 : 0;
	for (int j = 0; j < nv; j++) {
		keep[j] = n - 8 * j >= 8 ? 0xff : (__mmask8)((1u << (n - 8 * j)) - 1);
		/* |INT64_MIN| is 2^63 as unsigned: clamped like the others */
		mags[j] = _mm512_min_epu64(_mm512_abs_epi64(_mm512_maskz_loadu_epi64(keep[j],
										 v + 8 * j)),
					   in_max);
		vmax = _mm512_max_epu64(vmax, mags[j]);
	}
	amax = _mm512_reduce_max_epu64(vmax);
	if (amax == 0) {
		for (int j = 0; j < nv; j++) {
			_mm512_mask_cvtepi64_storeu_epi8(hi + 8 * j, keep[j], zero);
			if (planes == 2)
				_mm512_mask_cvtepi64_storeu_epi8(lo + 8 * j, keep[j], zero);
		}
		return 0;
	}
	k = hmoe_fxp_quant_scale(amax, planes, &m);
	/* a = 2 (|v| << sh_l) + add, n = a >> sh_r */
	add = _mm512_set1_epi64((int64_t)(k >= 0 ? m << k : m));
	sh_l = _mm512_set1_epi64(k >= 0 ? 0 : -k);
	sh_r = _mm512_set1_epi64(k >= 0 ? k + 1 : 1);
	rcp = _mm512_set1_epi64((int64_t)((((uint64_t)1 << 32) + m - 1) / m));
	for (int j = 0; j < nv; j++) {
		__m512i a = _mm512_add_epi64(_mm512_slli_epi64(_mm512_sllv_epi64(mags[j], sh_l), 1),
					     add);
		__m512i n22 = _mm512_srlv_epi64(a, sh_r);  /* < 2^22 */
		__m512i r = _mm512_srli_epi64(_mm512_mul_epu32(n22, rcp), 32);
		__mmask8 neg = _mm512_mask_cmplt_epi64_mask(keep[j], _mm512_maskz_loadu_epi64(
								    keep[j], v + 8 * j), zero);

		if (planes == 2) {
			__m512i q_hi = _mm512_srli_epi64(_mm512_add_epi64(r, _mm512_set1_epi64(64)),
							 HMOE_FXP_PLANE_SHIFT);
			__m512i q_lo = _mm512_sub_epi64(r, _mm512_slli_epi64(q_hi,
									     HMOE_FXP_PLANE_SHIFT));

			q_hi = _mm512_mask_sub_epi64(q_hi, neg, zero, q_hi);
			q_lo = _mm512_mask_sub_epi64(q_lo, neg, zero, q_lo);
			_mm512_mask_cvtepi64_storeu_epi8(hi + 8 * j, keep[j], q_hi);
			_mm512_mask_cvtepi64_storeu_epi8(lo + 8 * j, keep[j], q_lo);
		} else {
			_mm512_mask_cvtepi64_storeu_epi8(hi + 8 * j, keep[j],
							 _mm512_mask_sub_epi64(r, neg, zero, r));
		}
	}
	return hmoe_fxp_scale_word((uint32_t)m, HMOE_FXP_F_ACT - k);
}

const struct hmoe_fxp_simd hmoe_fxp_simd_avx512 = {
	.name = "avx512",
	.supported = avx512_supported,
	.row_dots = avx512_row_dots,
	.row_terms = avx512_row_terms,
	.whole_tokens = HMOE_FXP_AVX512_WHOLE_TOKENS,
	.row_dots2 = avx512_row_dots2,
	.row_dots4 = avx512_row_dots4,
	.row_acc4 = avx512_row_acc4,
	.fp8_lists = fp8_planes,
	.rows_acc = avx512_rows_acc,
	.lanes_min_tokens = HMOE_FXP_LANES_MIN_TOKENS,
	.lanes_wide = HMOE_FXP_AVX512_LANES_WIDE,
	.lanes_formats = HMOE_FXP_AVX512_LANES_FORMATS,
	.lanes_step = HMOE_FXP_BLOCK_ROWS,
	.lanes_part_tokens = HMOE_FXP_LANES_MIN_TOKENS,
	.swiglu = avx512_swiglu,
	.quant_group = avx512_quant_group,
};
