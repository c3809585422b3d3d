/* hmoe_fxp_cpu_avx2: exact group dots with AVX2 (see hmoe_fxp_cpu.h).
 *
 * fp8 A16 tiles of 2 or more tokens come as whole 16-bit tokens (whole16: x->x16) and run
 * dots_fp8_x16 (two vpmaddwd per 16 columns against 16-bit digits; bound there); one-token
 * tiles decode and multiply in one pass, in bytes (dots_fp8_1tok_p; one holding the
 * off-contract -128, which vpsignb cannot negate, takes the general path), and A8 tiles of
 * more tokens take the general path below.
 *
 * int8 / int4 (the fast path; A16 tokens come whole, whole_tokens): per group the weights
 * become an unsigned operand u and, per token and plane, vpmaddubsw(u, x') sums pairs of
 * u * x' into int16 and vpmaddwd with 128 (hi plane) or 1 (lo plane, A8) widens them into
 * int32 lanes, so the planes combine inside the lanes.
 *   int8: u = |q|, x' = vpsignb(x, q) (x negated where q < 0, zeroed where q = 0), so
 *         u * x' = q * x. Needs |x| <= 127 (vpsignb cannot negate -128): a pair is then
 *         <= 2 * 128 * 127 = 32512 < 2^15 (no saturation, |q| = 128 included), a lane
 *         <= 4 * 2 * 32512 * (128 + 1) = 3.4e7 per group, 8 lanes 2.7e8 < 2^31. A tile
 *         with an off-contract -128 (hmoe_fxp_xtile.has_m128) takes the general path.
 *   int4: u = the nibble q + 8 in [0, 15], x' = x: a pair <= 2 * 15 * 128 = 3840 for any
 *         int8 x, a group's four pair vectors summed in int16 <= 15360, then widened:
 *         a lane <= 2 * 15360 * (128 + 1) = 4.0e6, 8 lanes 3.2e7; dot = sum(u * x) -
 *         8 * sum(x). A group's 64 bytes hold columns 0-63 in
 *         their low nibbles and 64-127 in their high ones, matching x's halves.
 * General path (fp8, and int8 or one-token fp8 with -128 in x; int4 never needs it): each
 * row is first decoded to 16-bit weights shared by the tile's rows: int8 to q itself; fp8 to
 * ms = +-mantissa (|ms| <= 15; NaN codes -> 0 like the table) and pw = 2^(E-1) (E = 0:
 * 1), with q = ms * pw. Per one-plane row of x (|x| <= 128), 16 x at a time:
 *   int8: vpmaddwd(q, x): a pair <= 2 * 128 * 128 = 32768, 8 chunks per lane
 *         <= 262144, 8 lanes 2.1e6 < 2^31.
 *   fp8:       vpmaddwd(vpmullw(ms, x), pw): |ms * x| <= 1920, a pair <= 2 * 1920 * 2^14
 *              = 62914560, 8 chunks <= 5.03e8 < 2^31 per lane; lanes summed in int64.
 */
#include <immintrin.h>
#include <string.h>

#include "hmoe_fxp_cpu.h"

/* HMOE_FXP_AVX2_VNNI (hmoe_fxp_cpu_avxvnni.c, built with -mavxvnni): the same kernels with
 * AVX-VNNI's 256-bit vpdpbusd / vpdpwssd, which add their products into the int32 lanes in
 * one instruction: the int paths' vpmaddubsw, vpmaddwd and vpaddd per 32 codes become one
 * vpdpbusd (each plane in an accumulator of its own, the hi plane's shifted once per
 * group), and every vpmaddwd + vpaddd one vpdpwssd. The sums are the same integers (the
 * bounds below hold lane by lane either way), so the results are bit-identical. With
 * vpdpbusd, which does not saturate, int8 and int4 tiles of 8 or more tokens also run
 * with the tokens in the vector lanes, and fp8 A16 ones through vpdpwssd in 16-bit lanes
 * (rows_acc, at the end of the file). */
#ifdef HMOE_FXP_AVX2_VNNI
#define VNNI 1
#else
#define VNNI 0
#endif

static int avx2_supported(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2") && (!VNNI || __builtin_cpu_supports("avxvnni"));
}

/* acc + vpmaddwd(a, b) (pairs of int16 products summed into the int32 lanes) */
static inline __attribute__((always_inline)) __m256i madd_acc(__m256i acc, __m256i a, __m256i b)
{
#if VNNI
	return _mm256_dpwssd_avx_epi32(acc, a, b);
#else
	return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#endif
}

/* 2^(E-1) (E = 0: 1) for E = 0..15 as its low byte (pow2_lo) and high byte (pow2_hi), the
 * 16-entry vpshufb tables of both fp8 decodes, in each 128-bit lane. */
static inline __m256i pow2_lo(void)
{
	return _mm256_broadcastsi128_si256(_mm_setr_epi8(1, 1, 2, 4, 8, 16, 32, 64, -128, 0, 0,
							 0, 0, 0, 0, 0));
}

static inline __m256i pow2_hi(void)
{
	return _mm256_broadcastsi128_si256(_mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 4, 8,
							 16, 32, 64));
}

/* 16 fp8 codes (c: zero-extended to 16-bit lanes) -> the magnitude's mantissa with its
 * implicit bit (mag, <= 15; NaN codes 0 like the table), pw = 2^(E-1) (E = 0: 1) from two
 * 16-entry byte tables (the lanes' high bytes index with 0x80, which vpshufb turns into
 * 0), and neg (-1 where the code is negative): |q| = mag * pw. */
static inline __attribute__((always_inline)) void
fp8_fields(__m256i c, __m256i *mag, __m256i *pw, __m256i *neg)
{
	const __m256i tab_lo = pow2_lo(), tab_hi = pow2_hi();
	const __m256i c7 = _mm256_set1_epi16(7), c8 = _mm256_set1_epi16(8);
	const __m256i c15 = _mm256_set1_epi16(15), c7f = _mm256_set1_epi16(0x7f);
	const __m256i c80 = _mm256_set1_epi16(0x80), hi_zero = _mm256_set1_epi16(-32768);
	__m256i e = _mm256_and_si256(_mm256_srli_epi16(c, 3), c15);
	__m256i normal = _mm256_cmpgt_epi16(e, _mm256_setzero_si256());
	__m256i nan = _mm256_cmpeq_epi16(_mm256_and_si256(c, c7f), c7f);
	__m256i idx = _mm256_or_si256(e, hi_zero);

	*neg = _mm256_cmpeq_epi16(_mm256_and_si256(c, c80), c80);
	*mag = _mm256_andnot_si256(nan, _mm256_or_si256(_mm256_and_si256(c, c7),
							_mm256_and_si256(normal, c8)));
	*pw = _mm256_or_si256(_mm256_shuffle_epi8(tab_lo, idx),
			      _mm256_slli_epi16(_mm256_shuffle_epi8(tab_hi, idx), 8));
}

/* v with the sign of neg (-1 / 0 per lane). */
static inline __m256i with_sign(__m256i v, __m256i neg)
{
	return _mm256_sub_epi16(_mm256_xor_si256(v, neg), neg);
}

static void decode_row(const uint8_t *codes, int format, int n, int16_t *w, int16_t *pw)
{
	if (format == HMOE_FXP_INT8) {
		for (int k = 0; k < n; k++)
			w[k] = (int8_t)codes[k];
		return;
	}
	for (int k = 0; k < n; k += 16) {  /* n is a multiple of 128 */
		__m256i c = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(codes + k)));
		__m256i mag, p, neg;

		fp8_fields(c, &mag, &p, &neg);
		_mm256_storeu_si256((__m256i *)(w + k), with_sign(mag, neg));
		_mm256_storeu_si256((__m256i *)(pw + k), p);
	}
}

/* fp8 codes -> the 16-bit digits e0 = +-(|q| & 511), e1 = +-(|q| >> 9) (|e0| <= 511,
 * |e1| <= 448, q = 512 e1 + e0): |q| = mag * pw < 2^18 has its low 16 bits from vpmullw
 * and the rest from vpmulhuw. */
static void decode_digits(const uint8_t *codes, int n, int16_t *e0, int16_t *e1)
{
	const __m256i low9 = _mm256_set1_epi16(511);

	for (int k = 0; k < n; k += 16) {
		__m256i c = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(codes + k)));
		__m256i mag, pw, neg, lo, hi;

		fp8_fields(c, &mag, &pw, &neg);
		lo = _mm256_mullo_epi16(mag, pw);
		hi = _mm256_mulhi_epu16(mag, pw);
		_mm256_storeu_si256((__m256i *)(e0 + k),
				    with_sign(_mm256_and_si256(lo, low9), neg));
		_mm256_storeu_si256((__m256i *)(e1 + k), with_sign(
			_mm256_or_si256(_mm256_srli_epi16(lo, 9), _mm256_slli_epi16(hi, 7)), neg));
	}
}

/* fp8 dots of A16 tokens given whole (x->x16: x = 128 hi + lo in 16 bits): per 16 columns
 * two vpmaddwd against the row's digit words, S_i = sum(e_i * x) in 8 int32 lanes: a
 * lane holds 16 products |e_i * x| <= 511 * 16512 per group, 1.35e8, 8 lanes 1.08e9 <
 * 2^31; dot = S_0 + 512 S_1 in int64. Two products per weight and token where the plane
 * rows of the general path need four. */
static void dots_fp8_x16(const uint8_t *codes, const struct hmoe_fxp_xtile *x, int64_t *dots,
			 void *tmp)
{
	int16_t *e0 = tmp, *e1 = e0 + HMOE_FXP_MAX_DIM;
	int groups = x->groups, dim = groups * HMOE_FXP_GROUP;

	decode_digits(codes, dim, e0, e1);
	for (int t = 0; t < x->n_tokens; t++) {
		for (int g = 0; g < groups; g++) {
			const int16_t *xp = x->x16 + (size_t)t * dim + g * HMOE_FXP_GROUP;
			const int16_t *g0 = e0 + g * HMOE_FXP_GROUP, *g1 = e1 + g * HMOE_FXP_GROUP;
			__m256i s0 = _mm256_setzero_si256(), s1 = s0, h;
			__m128i q;

#pragma GCC unroll 8
			for (int k = 0; k < HMOE_FXP_GROUP; k += 16) {
				__m256i xv = _mm256_loadu_si256((const __m256i *)(xp + k));

				s0 = madd_acc(s0, xv, _mm256_loadu_si256((const __m256i *)(g0 + k)));
				s1 = madd_acc(s1, xv, _mm256_loadu_si256((const __m256i *)(g1 + k)));
			}
			h = _mm256_hadd_epi32(s0, s1);  /* S_0 pairs, S_1 pairs per 128 bits */
			h = _mm256_hadd_epi32(h, h);
			q = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
			dots[t * groups + g] = (int64_t)_mm_cvtsi128_si32(q) +
					       512 * (int64_t)_mm_extract_epi32(q, 1);
		}
	}
}

/* Prefetch distance into L2 of the fast paths (as the AVX-512 variant's). */
#define AVX2_PREFETCH_BYTES 8192

/* fp8 dots of a one-token tile (P planes, no -128 in x), 32 codes at a time in bytes:
 * E = code bits 6-3 indexes three 16-entry byte tables (vpshufb): the implicit bit (8 for
 * E >= 1, so mag = 8 + m or m) and 2^(E-1) (E = 0: 1) as its low and high byte. The codes'
 * signs go onto x (vpsignb, which also zeroes x under code 0 and, with the NaN codes
 * cleared first, under the NaN codes, whose weight is 0). vpmaddubsw(mag, x') with the odd
 * (then the even) codes' bytes of mag cleared gives each code's mag * x' alone in a 16-bit
 * lane, |mag * x'| <= 15 * 127 = 1905, and vpmaddwd with the even (odd) codes' 2^(E-1)
 * words weighs and pairs them: a pair <= 2 * 1905 * 2^14 = 6.2e7, four steps of 32 codes
 * per group put 16 products in a lane, <= 5.0e8 < 2^31; the 8 lanes are summed in int64
 * and the planes combined as 128 hi + lo. About 35 operations per 32 codes where widening
 * to 16-bit lanes first took 56. */
static inline __attribute__((always_inline)) void
dots_fp8_1tok_p(const uint8_t *codes, const struct hmoe_fxp_xtile *x, const int P,
		int64_t *dots)
{
	const __m256i t8 = _mm256_setr_epi8(0, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8,
					    0, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8);
	const __m256i tpl = pow2_lo(), tph = pow2_hi();
	const __m256i low3 = _mm256_set1_epi8(7), low4 = _mm256_set1_epi8(15);
	const __m256i c7f = _mm256_set1_epi8(0x7f), even = _mm256_set1_epi16(0x00ff);
	const __m256i odd = _mm256_set1_epi16((short)0xff00);
	int plane = x->groups * HMOE_FXP_GROUP, pf = hmoe_fxp_fp8_prefetch();

	for (int g = 0; g < x->groups; g++) {
		__m256i acc[2] = { _mm256_setzero_si256(), _mm256_setzero_si256() };
		int64_t d[2];

		for (int i = 0; pf && i < HMOE_FXP_GROUP; i += HMOE_FXP_LINE_BYTES)
			_mm_prefetch((const char *)codes + (size_t)g * HMOE_FXP_GROUP +
				     AVX2_PREFETCH_BYTES + i, _MM_HINT_T1);
#pragma GCC unroll 4
		for (int k = 0; k < HMOE_FXP_GROUP; k += 32) {
			size_t o = (size_t)g * HMOE_FXP_GROUP + k;
			__m256i c = _mm256_loadu_si256((const __m256i *)(codes + o));
			__m256i e = _mm256_and_si256(_mm256_srli_epi16(c, 3), low4);
			__m256i cs = _mm256_andnot_si256(
				_mm256_cmpeq_epi8(_mm256_and_si256(c, c7f), c7f), c);
			__m256i mag = _mm256_or_si256(_mm256_and_si256(c, low3),
						      _mm256_shuffle_epi8(t8, e));
			__m256i pl = _mm256_shuffle_epi8(tpl, e), ph = _mm256_shuffle_epi8(tph, e);
			__m256i pw_e = _mm256_or_si256(_mm256_and_si256(pl, even),
						       _mm256_slli_epi16(ph, 8));
			__m256i pw_o = _mm256_or_si256(_mm256_srli_epi16(pl, 8),
						       _mm256_and_si256(ph, odd));
			__m256i u_e = _mm256_and_si256(mag, even), u_o = _mm256_and_si256(mag, odd);

#pragma GCC unroll 2
			for (int p = 0; p < P; p++) {
				__m256i xs = _mm256_sign_epi8(
					_mm256_loadu_si256((const __m256i *)(x->xq + p * plane + o)),
					cs);

				acc[p] = madd_acc(acc[p], _mm256_maddubs_epi16(u_e, xs), pw_e);
				acc[p] = madd_acc(acc[p], _mm256_maddubs_epi16(u_o, xs), pw_o);
			}
		}
#pragma GCC unroll 2
		for (int p = 0; p < P; p++) {
			__m256i w = _mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(acc[p])),
						     _mm256_cvtepi32_epi64(
							     _mm256_extracti128_si256(acc[p], 1)));
			__m128i h = _mm_add_epi64(_mm256_castsi256_si128(w),
						  _mm256_extracti128_si256(w, 1));

			d[p] = _mm_cvtsi128_si64(h) + _mm_extract_epi64(h, 1);
		}
		dots[g] = P == 2 ? d[0] * (1 << HMOE_FXP_PLANE_SHIFT) + d[1] : d[0];
	}
}

/* The general path over one-plane rows (x->planes == 1); inlined with a constant format,
 * so the inner loop is unrolled and has no format test. */
static inline __attribute__((always_inline)) void
dots_general_f(const uint8_t *codes, const int format, const struct hmoe_fxp_xtile *x,
	       int64_t *dots, void *tmp)
{
	int16_t *w = tmp, *pw = w + HMOE_FXP_MAX_DIM;
	int stride = x->groups * HMOE_FXP_GROUP;

	decode_row(codes, format, x->groups * HMOE_FXP_GROUP, w, pw);
	for (int t = 0; t < x->n_tokens; t++) {
		for (int g = 0; g < x->groups; g++) {
			const int8_t *xp = x->xq + t * stride + g * HMOE_FXP_GROUP;
			const int16_t *gw = w + g * HMOE_FXP_GROUP, *gp = pw + g * HMOE_FXP_GROUP;
			__m256i acc = _mm256_setzero_si256(), lo, hi;
			__m128i s;

#pragma GCC unroll 8
			for (int k = 0; k < HMOE_FXP_GROUP; k += 16) {
				__m256i xv = _mm256_cvtepi8_epi16(
					_mm_loadu_si128((const __m128i *)(xp + k)));
				__m256i wv = _mm256_loadu_si256((const __m256i *)(gw + k));

				if (format == HMOE_FXP_FP8)
					acc = madd_acc(acc, _mm256_mullo_epi16(wv, xv),
						       _mm256_loadu_si256((const __m256i *)(gp + k)));
				else
					acc = madd_acc(acc, wv, xv);
			}
			lo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(acc));
			hi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(acc, 1));
			lo = _mm256_add_epi64(lo, hi);
			s = _mm_add_epi64(_mm256_castsi256_si128(lo), _mm256_extracti128_si256(lo, 1));
			dots[t * x->groups + g] = _mm_cvtsi128_si64(s) + _mm_extract_epi64(s, 1);
		}
	}
}

static void dots_general(const uint8_t *codes, int format, const struct hmoe_fxp_xtile *x,
			 int64_t *dots, void *tmp)
{
	if (format == HMOE_FXP_FP8)
		dots_general_f(codes, HMOE_FXP_FP8, x, dots, tmp);
	else
		dots_general_f(codes, HMOE_FXP_INT8, x, dots, tmp);
}

/* One group's unsigned operands u[k] (columns 32k .. 32k + 31) and, for int8, the codes
 * themselves (the signs vpsignb applies to x). */
static inline __attribute__((always_inline)) void
group_operands(const uint8_t *codes, const int format, int g, __m256i u[4], __m256i q[4])
{
	if (format == HMOE_FXP_INT8) {
		const uint8_t *c = codes + (size_t)g * HMOE_FXP_GROUP;

#pragma GCC unroll 4
		for (int k = 0; k < 4; k++) {
			q[k] = _mm256_loadu_si256((const __m256i *)(c + 32 * k));
			u[k] = _mm256_abs_epi8(q[k]);
		}
	} else {
		const uint8_t *c = codes + (size_t)g * (HMOE_FXP_GROUP / 2);
		const __m256i low4 = _mm256_set1_epi8(0x0f);
		__m256i b0 = _mm256_loadu_si256((const __m256i *)c);
		__m256i b1 = _mm256_loadu_si256((const __m256i *)(c + 32));

		u[0] = _mm256_and_si256(b0, low4);
		u[1] = _mm256_and_si256(b1, low4);
		u[2] = _mm256_and_si256(_mm256_srli_epi16(b0, 4), low4);
		u[3] = _mm256_and_si256(_mm256_srli_epi16(b1, 4), low4);
	}
}

/* acc + 2^shift * sum over one group of u * x' for one plane of x (see the top of the
 * file; shift 0 or HMOE_FXP_PLANE_SHIFT). int4 adds its four vpmaddubsw results in int16
 * first (each pair <= 3840, four <= 15360 < 2^15) and widens them with one vpmaddwd;
 * int8's pairs (<= 32512) are widened one by one. VNNI: one vpdpbusd per 32 codes into a
 * sum of the plane's own (a lane <= 16 products <= 128 * 128, shifted <= 2^25), shifted
 * once. */
static inline __attribute__((always_inline)) __m256i
group_plane(const __m256i u[4], const __m256i q[4], const int8_t *xp, const int format,
	    int shift, __m256i acc)
{
	const __m256i mult = _mm256_set1_epi16((short)(1 << shift));
	__m256i s = _mm256_setzero_si256();

#pragma GCC unroll 4
	for (int k = 0; k < 4; k++) {
		__m256i xv = _mm256_loadu_si256((const __m256i *)(xp + 32 * k));

		if (format == HMOE_FXP_INT8)
			xv = _mm256_sign_epi8(xv, q[k]);
		if (VNNI)
			s = _mm256_dpbusd_avx_epi32(s, u[k], xv);
		else if (format == HMOE_FXP_INT8)
			acc = madd_acc(acc, _mm256_maddubs_epi16(u[k], xv), mult);
		else
			s = _mm256_add_epi16(s, _mm256_maddubs_epi16(u[k], xv));
	}
	if (VNNI)
		return _mm256_add_epi32(acc, _mm256_slli_epi32(s, shift));
	return format == HMOE_FXP_INT8 ? acc : madd_acc(acc, s, mult);
}

/* int8 / int4 dots of every token of x (either plane count), whole tokens. */
static inline __attribute__((always_inline)) void
dots_int(const uint8_t *codes, const int format, const struct hmoe_fxp_xtile *x, int64_t *dots)
{
	const int hi_shift = x->planes == 2 ? HMOE_FXP_PLANE_SHIFT : 0;
	int plane = x->groups * HMOE_FXP_GROUP, stride = x->planes * plane, groups = x->groups;
	int group_bytes = hmoe_fxp_group_bytes(format), g = 0;

	/* one token: four groups at a time, their sums finished together (three vphaddd and
	 * one add where each group's own reduction took eight operations and its scalar
	 * bias), the int4 bias taken out in four int64 lanes */
	for (; x->n_tokens == 1 && g + 4 <= groups; g += 4) {
		__m256i acc[4], h;
		__m128i s;

#pragma GCC unroll 4
		for (int j = 0; j < 4; j++) {
			const int8_t *xp = x->xq + (size_t)(g + j) * HMOE_FXP_GROUP;
			__m256i u[4], q[4];

			for (int i = 0; i < group_bytes; i += HMOE_FXP_LINE_BYTES)
				_mm_prefetch((const char *)codes + (size_t)(g + j) * group_bytes +
					     AVX2_PREFETCH_BYTES + i, _MM_HINT_T1);
			group_operands(codes, format, g + j, u, q);
			acc[j] = group_plane(u, q, xp, format, hi_shift, _mm256_setzero_si256());
			if (x->planes == 2)
				acc[j] = group_plane(u, q, xp + plane, format, 0, acc[j]);
		}
		/* per 128 bits: the partial sums of groups g .. g + 3; a group's sum fits
		 * int32 (the bounds above) */
		h = _mm256_hadd_epi32(_mm256_hadd_epi32(acc[0], acc[1]),
				      _mm256_hadd_epi32(acc[2], acc[3]));
		s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
		{
			__m256i d = _mm256_cvtepi32_epi64(s);

			if (format == HMOE_FXP_INT4) {
				const int32_t *xs = x->xsum + g;
				__m256i b = _mm256_cvtepi32_epi64(_mm_loadu_si128((const __m128i *)xs));

				if (x->planes == 2)
					b = _mm256_add_epi64(
						_mm256_slli_epi64(b, HMOE_FXP_PLANE_SHIFT),
						_mm256_cvtepi32_epi64(_mm_loadu_si128(
							(const __m128i *)(xs + groups))));
				d = _mm256_sub_epi64(d, _mm256_slli_epi64(b, 3));
			}
			_mm256_storeu_si256((__m256i *)(dots + g), d);
		}
	}
	for (; g < groups; g++) {
		__m256i u[4], q[4];

		for (int i = 0; i < group_bytes; i += HMOE_FXP_LINE_BYTES)
			_mm_prefetch((const char *)codes + (size_t)g * group_bytes +
				     AVX2_PREFETCH_BYTES + i, _MM_HINT_T1);
		group_operands(codes, format, g, u, q);
		for (int t = 0; t < x->n_tokens; t++) {
			const int8_t *xp = x->xq + (size_t)t * stride + g * HMOE_FXP_GROUP;
			const int32_t *xs = x->xsum + (size_t)t * x->planes * groups + g;
			__m256i acc = group_plane(u, q, xp, format, hi_shift, _mm256_setzero_si256());
			__m128i h;
			int64_t dot;

			if (x->planes == 2)
				acc = group_plane(u, q, xp + plane, format, 0, acc);
			h = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
			h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
			h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
			dot = _mm_cvtsi128_si32(h);
			if (format == HMOE_FXP_INT4)
				dot -= 8 * (x->planes == 2 ? (int64_t)xs[0] * (1 << HMOE_FXP_PLANE_SHIFT) +
							     xs[groups] : xs[0]);
			dots[t * groups + g] = dot;
		}
	}
}

static void avx2_row_dots(const uint8_t *codes, int format, const struct hmoe_fxp_xtile *x,
			  int64_t *dots, void *tmp)
{
	struct hmoe_fxp_xtile rows = *x;

	if (format == HMOE_FXP_INT4 || (format == HMOE_FXP_INT8 && !x->has_m128)) {
		if (format == HMOE_FXP_INT8)
			dots_int(codes, HMOE_FXP_INT8, x, dots);
		else
			dots_int(codes, HMOE_FXP_INT4, x, dots);
		return;
	}
	if (format == HMOE_FXP_FP8 && x->x16) {
		dots_fp8_x16(codes, x, dots, tmp);
		return;
	}
	if (format == HMOE_FXP_FP8 && x->n_tokens == 1 && !x->has_m128) {
		if (x->planes == 2)
			dots_fp8_1tok_p(codes, x, 2, dots);
		else
			dots_fp8_1tok_p(codes, x, 1, dots);
		return;
	}
	/* the general path takes one-plane rows: an A16 token's two rows are combined after,
	 * in place (row t is written after rows 2t and 2t + 1 are read); exact in int64 */
	rows.n_tokens = x->n_tokens * x->planes;
	rows.planes = 1;
	dots_general(codes, format, &rows, dots, tmp);
	if (x->planes == 2)
		hmoe_fxp_combine_planes(dots, x->n_tokens, x->groups);
}

#if !VNNI  /* one copy, in the AVX2 build */
void hmoe_fxp_split_scales_x86(const uint8_t *scales, int groups, uint32_t *mw, int32_t *ew)
{
	for (int g = 0; g < groups; g += 8) {
		__m256i w = _mm256_loadu_si256((const __m256i *)(scales + 4 * g));
		__m256i m = _mm256_and_si256(w, _mm256_set1_epi32(0xffff));

		/* words past the last group are the scale lines' zero padding (4 * g is a
		 * multiple of 32 below their length, a multiple of 64); never used */
		_mm256_storeu_si256((__m256i *)(mw + g), m);
		_mm256_storeu_si256((__m256i *)(ew + g),
				    _mm256_srai_epi32(_mm256_sub_epi32(w, m), 16));
	}
}
#endif

/* The terms of 4 int64 dots d (|d| < 2^39; SMALL: each fits int32) with their m < 2^24
 * and r in [1, 62] as int64 lanes: hmoe_fxp_term_split's values (see avx2_row_terms). */
static inline __attribute__((always_inline)) __m256i terms4(__m256i d, __m256i m, __m256i r,
							   const int SMALL)
{
	const __m256i one = _mm256_set1_epi64x(1), zero = _mm256_setzero_si256();
	const __m256i term_max = _mm256_set1_epi64x(HMOE_FXP_TERM_MAX);
	__m256i v = SMALL ? _mm256_mul_epi32(d, m) : _mm256_add_epi64(
		_mm256_slli_epi64(_mm256_mul_epi32(_mm256_srli_epi64(d, 32), m), 32),
		_mm256_mul_epu32(d, m));
	__m256i s = _mm256_cmpgt_epi64(zero, v);
	__m256i mag = _mm256_sub_epi64(_mm256_xor_si256(v, s), s);

	mag = _mm256_srlv_epi64(_mm256_add_epi64(mag, _mm256_sllv_epi64(
					one, _mm256_sub_epi64(r, one))), r);
	mag = _mm256_blendv_epi8(mag, term_max, _mm256_cmpgt_epi64(mag, term_max));
	return _mm256_sub_epi64(_mm256_xor_si256(mag, s), s);
}

/* The terms of 4 groups at once, as the AVX-512 variant's row_terms does 8 (see there for
 * the ranges: for 1 <= r <= 62 shift_round is min((|v| + 2^(r-1)) >> r, 2^56) with the
 * sign put back). AVX2 has no 64-bit multiply, absolute value or unsigned compare:
 *   v = dot * m from 32-bit halves: dot = dh * 2^32 + dl with dl its low 32 bits
 *       (unsigned) and dh its high 32 bits read as a signed int32 (|dot| < 2^39), m < 2^24,
 *       so v = ((dh * m) << 32) + dl * m, exact mod 2^64 and |v| < 2^63;
 *   |v| = (v ^ s) - s with s = (v < 0 ? -1 : 0);
 *   the shifted magnitude is < 2^63 (r >= 1), so the clamp is a signed compare. */
static void avx2_row_terms(const int64_t *dots, const uint8_t *scales,
			   const struct hmoe_fxp_xtile *x, int64_t *acc)
{
	const __m256i zero = _mm256_setzero_si256();
	const __m128i r_max = _mm_set1_epi32(62);
	int groups = x->groups;
	uint32_t mw[HMOE_FXP_MAX_IN_GROUPS + 8];
	int32_t ew[HMOE_FXP_MAX_IN_GROUPS + 8];

	hmoe_fxp_split_scales_x86(scales, groups, mw, ew);
	for (int t = 0; t < x->n_tokens; t++) {
		const int64_t *d = dots + t * groups;
		const uint32_t *xm = x->xm + t * groups;
		const int32_t *xe = x->xe + t * groups;
		__m256i sum = zero;
		__m128i h;
		int64_t a = 0;
		int g = 0;

		for (; g + 4 <= groups; g += 4) {
			__m128i r32 = _mm_add_epi32(_mm_loadu_si128((const __m128i *)(ew + g)),
						    _mm_loadu_si128((const __m128i *)(xe + g)));
			__m128i ok = _mm_andnot_si128(_mm_cmpgt_epi32(r32, r_max),
						      _mm_cmpgt_epi32(r32, _mm_setzero_si128()));
			__m256i r, m;

			if (_mm_movemask_ps(_mm_castsi128_ps(ok)) != 0xf) {
				for (int i = g; i < g + 4; i++)
					a += hmoe_fxp_term_split(d[i], mw[i] * xm[i], ew[i] + xe[i]);
				continue;
			}
			r = _mm256_cvtepi32_epi64(r32);
			m = _mm256_cvtepu32_epi64(_mm_mullo_epi32(
				_mm_loadu_si128((const __m128i *)(mw + g)),
				_mm_loadu_si128((const __m128i *)(xm + g))));
			sum = _mm256_add_epi64(sum, terms4(_mm256_loadu_si256((const __m256i *)(d + g)),
							   m, r, 0));
		}
		for (; g < groups; g++)
			a += hmoe_fxp_term_split(d[g], mw[g] * xm[g], ew[g] + xe[g]);
		h = _mm_add_epi64(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
		acc[t] = a + _mm_cvtsi128_si64(h) + _mm_extract_epi64(h, 1);
	}
}

#if VNNI
/* ---- rows_acc: tokens in the lanes (AVX-VNNI only) ---------------------------------
 *
 * The AVX-512 variant's token lanes (see there) at half the width, for int8, int4 and
 * fp8 A16 (vnni_wide_chunk; fp8 A8 declines and takes the general path), from 8 tokens
 * on in steps of 8 (below that fp8 A16 keeps whole 16-bit tokens; a last 1 or 2 tokens
 * take the row path). The tile's activations in hmoe_fxp_x_vnni's flipped layout (x->xu:
 * x' = x + 128, unsigned; 64 bytes hold 4 consecutive columns of a chunk's 16 tokens)
 * are read as two halves of 8 tokens, a ymm each, and vpdpbusd against 4 weight bytes
 * broadcast from a row adds each token's 4 products into its own int32 lane: a group's
 * dots for 8 tokens with no horizontal reduction, every x load feeding up to 4 rows,
 * where the whole-token path needs per token and plane a sign flip and a reduction. Per
 * group and row set one loop over two x streams (vnni_streams), the planes' shift after
 * it (A16: the hi-plane sum in one accumulator, the lo in the other, 128 S(hi) + S(lo)
 * formed after). The weights enter as signed digits d (int8: q; int4: nibble - 8), so
 * S(d, x') = S(d, x) + 128 * sum(d), and the digit sums per group (wsum) take the offset
 * out. Lane bounds (as the AVX-512 variant's): a lane holds one group's 128 products
 * |d * x'| <= 128 * 255, |S| <= 4.18e6 per plane; A16's 128 S(hi) + S(lo) <= 5.4e8, and the
 * offset 128 * 129 * sum(d) <= 2.7e8, all < 2^31. The terms and the row sums follow in
 * the token lanes, in int64 (four lanes per ymm), as avx2_row_terms computes them. */
long hmoe_fxp_avxvnni_lanes[HMOE_FXP_N_FORMATS];

struct vnni_row {
	const int8_t *d;                          /* digits, `in` columns */
	const int16_t *e;     /* or (fp8 A16) decode_digits' words: e_0, e_1 HMOE_FXP_MAX_DIM on;
			       * row i's at row 0's + 2 i HMOE_FXP_MAX_DIM (vnni_wide_group) */
	int32_t wsum[HMOE_FXP_MAX_IN_GROUPS];     /* their sums per group */
	uint32_t mw[HMOE_FXP_MAX_IN_GROUPS + 8];  /* the row's scales, split */
	int32_t ew[HMOE_FXP_MAX_IN_GROUPS + 8];
};

/* int4 nibbles -> signed digits nibble - 8, columns in order (a group's 64 bytes: 0-63
 * in the low nibbles, 64-127 in the high ones). */
static void vnni_int4_digits(const uint8_t *codes, int groups, int8_t *d)
{
	const __m256i low4 = _mm256_set1_epi8(0x0f), eight = _mm256_set1_epi8(8);

	for (int g = 0; g < groups; g++)
		for (int h = 0; h < 2; h++) {
			__m256i b = _mm256_loadu_si256((const __m256i *)(codes + g * 64 + 32 * h));

			_mm256_storeu_si256((__m256i *)(d + g * HMOE_FXP_GROUP + 32 * h),
					    _mm256_sub_epi8(_mm256_and_si256(b, low4), eight));
			_mm256_storeu_si256((__m256i *)(d + g * HMOE_FXP_GROUP + 64 + 32 * h),
					    _mm256_sub_epi8(_mm256_and_si256(
						    _mm256_srli_epi16(b, 4), low4), eight));
		}
}

/* The digits' sums per group (|sum| <= 128 * 128). */
static void vnni_wsum(const int8_t *d, int groups, int32_t *wsum)
{
	const __m256i flip = _mm256_set1_epi8((char)0x80), zero = _mm256_setzero_si256();

	/* vpsadbw sums d + 128 (d ^ 0x80 as unsigned bytes) in 64-bit lanes */
	for (int g = 0; g < groups; g++) {
		const int8_t *p = d + g * HMOE_FXP_GROUP;
		__m256i s[4];
		__m128i h;

#pragma GCC unroll 4
		for (int k = 0; k < 4; k++)
			s[k] = _mm256_sad_epu8(_mm256_xor_si256(_mm256_loadu_si256(
							       (const __m256i *)(p + 32 * k)), flip),
					       zero);
		s[0] = _mm256_add_epi64(_mm256_add_epi64(s[0], s[1]), _mm256_add_epi64(s[2], s[3]));
		h = _mm_add_epi64(_mm256_castsi256_si128(s[0]), _mm256_extracti128_si256(s[0], 1));
		h = _mm_add_epi64(h, _mm_unpackhi_epi64(h, h));
		wsum[g] = _mm_cvtsi128_si32(h) - 128 * HMOE_FXP_GROUP;
	}
}

/* acc + vpdpbusd(x, the 4 digit bytes at p in every lane), the accumulator updated in
 * place: inline assembly with it as an in-out operand, because GCC 12 moves the
 * intrinsic's accumulators through register copies in these loops (as with the AVX-512
 * variant's dpbusd_bcast4; "%{vex%}": the VEX encoding, AVX-VNNI's). */
static inline __m256i vnni_bcast4(const void *p)
{
	int32_t v;

	memcpy(&v, p, 4);
	return _mm256_set1_epi32(v);
}

static inline __attribute__((always_inline)) __m256i vnni_dpbusd_bcast4(__m256i acc,
									 __m256i x,
									 const int8_t *p)
{
	__asm__("%{vex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(x), "x"(vnni_bcast4(p)));
	return acc;
}

/* acc[0..1] (8 token lanes as int64, tokens 0-3 and 4-7) += the terms of one group from
 * its dots d[0..1] (int64 lanes, the same tokens; SMALL: each fits int32) and the lanes'
 * scales (xm, xe: 8 tokens), as avx2_row_terms computes them; lanes whose exponent r is
 * outside [1, 62] take the scalar term into fix[] where valid (the vector's value there
 * is dropped). Absent tokens have m = 0, so their terms are 0 or dropped. */
static inline __attribute__((always_inline)) void
vnni_lanes_terms(const __m256i d[2], const int SMALL, uint32_t mw, int32_t ew,
		 const uint32_t *xm, const int32_t *xe, int valid, __m256i acc[2], int64_t *fix)
{
	const __m256i zero = _mm256_setzero_si256();
	__m256i m = _mm256_mullo_epi32(_mm256_set1_epi32((int)mw),
				       _mm256_loadu_si256((const __m256i *)xm));
	__m256i r = _mm256_add_epi32(_mm256_set1_epi32(ew),
				     _mm256_loadu_si256((const __m256i *)xe));
	__m256i ok = _mm256_andnot_si256(_mm256_cmpgt_epi32(r, _mm256_set1_epi32(62)),
					 _mm256_cmpgt_epi32(r, zero));
	int okm = _mm256_movemask_ps(_mm256_castsi256_ps(ok));

	if ((okm & valid) != valid) {
		_Alignas(32) int64_t dv[8];
		_Alignas(32) int32_t rv[8];
		_Alignas(32) uint32_t mv[8];

		_mm256_store_si256((__m256i *)dv, d[0]);
		_mm256_store_si256((__m256i *)(dv + 4), d[1]);
		_mm256_store_si256((__m256i *)mv, m);
		_mm256_store_si256((__m256i *)rv, r);
		for (int l = 0; l < 8; l++)
			if ((valid & ~okm) >> l & 1)
				fix[l] += hmoe_fxp_term_split(dv[l], mv[l], rv[l]);
	}
#pragma GCC unroll 2
	for (int q = 0; q < 2; q++) {
		__m128i mq = q ? _mm256_extracti128_si256(m, 1) : _mm256_castsi256_si128(m);
		__m128i rq = q ? _mm256_extracti128_si256(r, 1) : _mm256_castsi256_si128(r);
		__m128i oq = q ? _mm256_extracti128_si256(ok, 1) : _mm256_castsi256_si128(ok);
		__m256i t = terms4(d[q], _mm256_cvtepu32_epi64(mq), _mm256_cvtepi32_epi64(rq), SMALL);

		/* lanes outside [1, 62] dropped (their terms are in fix) */
		acc[q] = _mm256_add_epi64(acc[q], _mm256_and_si256(_mm256_cvtepi32_epi64(oq), t));
	}
}

/* The 8 int32 lanes of v as int64 (d[0]: lanes 0-3, d[1]: 4-7). */
static inline void vnni_widen(__m256i v, __m256i d[2])
{
	d[0] = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(v));
	d[1] = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(v, 1));
}

/* The R rows' accumulators of chunk c's n_tok tokens (H halves) into acc_out (n_rows, T). */
static inline __attribute__((always_inline)) void
vnni_lanes_store(__m256i acc[][2][2], int64_t fix[][16], const int R, const int H, int n_tok,
		 int T, int c, int64_t *acc_out)
{
	for (int i = 0; i < R; i++) {
		_Alignas(32) int64_t a[16];

		for (int h = 0; h < H; h++) {
			_mm256_store_si256((__m256i *)(a + 8 * h), acc[i][h][0]);
			_mm256_store_si256((__m256i *)(a + 8 * h + 4), acc[i][h][1]);
		}
		for (int l = 0; l < n_tok; l++)
			acc_out[(size_t)i * T + c * HMOE_FXP_BLOCK_ROWS + l] = a[l] + fix[i][l];
	}
}

/* acc + vpdpwssd(x, the 2 digit words at p in every lane), as vnni_dpbusd_bcast4. */
static inline __attribute__((always_inline)) __m256i vnni_dpwssd_bcast2(__m256i acc,
									 __m256i x,
									 const int16_t *p)
{
	__asm__("%{vex%} vpdpwssd %2, %1, %0" : "+x"(acc) : "x"(x), "x"(vnni_bcast4(p)));
	return acc;
}

/* One group and half of R rows' wide products (vnni_wide_chunk's loop) into s[i][0..1],
 * rows i's digit words at e + i * 2 * HMOE_FXP_MAX_DIM (e_0) and HMOE_FXP_MAX_DIM on (e_1),
 * as avxvnni_rows_acc lays them out. Four rows: the loop in assembly, because GCC 12's
 * allocation of the 8 accumulators was erratic: with them in an array it stored and
 * reloaded half of them every step (0.91-0.97x of `avx2` at 16-64 tokens), as variables
 * of their own it moved each through a second register every step (1.15-1.25x); the
 * assembly has neither (1.18-1.24x in the same state of the dev VM). */
#define VNNI_STR_(x) #x
#define VNNI_STR(x) VNNI_STR_(x)
/* the byte offset of row i's digit e_j from row 0's e_0 (the assembler computes it) */
#define VNNI_OFF(i, j) "(2*" VNNI_STR(HMOE_FXP_MAX_DIM) "*(2*" #i "+" #j "))"
#define VNNI_STEP(acc, i, j)                                                  \
	"vpbroadcastd " VNNI_OFF(i, j) "(%[e],%[k]), %[w]\n\t"                 \
	"%{vex%} vpdpwssd %[w], %[v], %[" acc "]\n\t"
static inline __attribute__((always_inline)) void
vnni_wide_group(const int16_t *xg, const int16_t *e, const int R, __m256i s[][2])
{
	if (R == 4) {
		__m256i a0 = _mm256_setzero_si256(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0;
		__m256i a3 = a0, b3 = a0, v, w;
		const int16_t *x = xg, *end = xg + 16 * HMOE_FXP_GROUP;
		long k = 0;

		__asm__("1:\n\t"
			"vmovdqu (%[x]), %[v]\n\t"
			VNNI_STEP("a0", 0, 0) VNNI_STEP("b0", 0, 1)
			VNNI_STEP("a1", 1, 0) VNNI_STEP("b1", 1, 1)
			VNNI_STEP("a2", 2, 0) VNNI_STEP("b2", 2, 1)
			VNNI_STEP("a3", 3, 0) VNNI_STEP("b3", 3, 1)
			"add $64, %[x]\n\t"
			"add $4, %[k]\n\t"
			"cmp %[end], %[x]\n\t"
			"jne 1b"
			: [a0] "+x"(a0), [b0] "+x"(b0), [a1] "+x"(a1), [b1] "+x"(b1),
			  [a2] "+x"(a2), [b2] "+x"(b2), [a3] "+x"(a3), [b3] "+x"(b3),
			  [v] "=&x"(v), [w] "=&x"(w), [x] "+r"(x), [k] "+r"(k)
			: [e] "r"(e), [end] "r"(end)
			: "cc", "memory");
		s[0][0] = a0, s[0][1] = b0, s[1][0] = a1, s[1][1] = b1;
		s[2][0] = a2, s[2][1] = b2, s[3][0] = a3, s[3][1] = b3;
		return;
	}
	for (int i = 0; i < R; i++)
		s[i][0] = s[i][1] = _mm256_setzero_si256();
#pragma GCC unroll 1
	for (int k = 0; k < HMOE_FXP_GROUP; k += 2) {
		__m256i v = _mm256_loadu_si256((const __m256i *)(xg + 16 * k));

#pragma GCC unroll 3
		for (int i = 0; i < R; i++) {
			const int16_t *ei = e + (size_t)i * 2 * HMOE_FXP_MAX_DIM;

			s[i][0] = vnni_dpwssd_bcast2(s[i][0], v, ei + k);
			s[i][1] = vnni_dpwssd_bcast2(s[i][1], v, ei + HMOE_FXP_MAX_DIM + k);
		}
	}
}

/* fp8 A16 chunk c in 16-bit lanes (x->xw in hmoe_fxp_x_wide's layout: per group 64 column
 * pairs of 32 words, the pair's two columns of the chunk's 16 tokens), each of its H
 * halves of 8 tokens on its own: for every row, column pair and digit one vpdpwssd of the
 * half's x words against the pair's digit words (decode_digits: base 512) broadcast, so
 * S_i = sum(e_i * x) over the group in each token's lane and dot = S_0 + 512 S_1 in
 * int64. Lane bound (as dots_fp8_x16's): 128 products |e_0 * x| <= 511 * 16512, 1.08e9 <
 * 2^31 (|e_1| <= 448: 9.5e8). Two products per weight and token, as the whole-token path,
 * without its per-token reductions and digit loads. */
static inline __attribute__((always_inline)) void
vnni_wide_chunk(const struct vnni_row *rw, const int R, const int H,
		const struct hmoe_fxp_xtile *x, int c, int n_tok, int64_t *acc_out)
{
	int G = x->groups, T = x->n_tokens;
	__m256i acc[HMOE_FXP_LANE_ROWS][2][2];
	int64_t fix[HMOE_FXP_LANE_ROWS][16] = { { 0 } };

	for (int i = 0; i < R; i++)
		for (int h = 0; h < 2; h++)
			acc[i][h][0] = acc[i][h][1] = _mm256_setzero_si256();
	for (int g = 0; g < G; g++) {
		size_t o = ((size_t)c * G + g) * HMOE_FXP_BLOCK_ROWS;

		for (int h = 0; h < H; h++) {
			const int16_t *xg = x->xw + ((size_t)c * G + g) * 2048 + 16 * h;
			__m256i s[HMOE_FXP_LANE_ROWS][2];
			int valid = (n_tok - 8 * h >= 8 ? 0xff : (1 << (n_tok - 8 * h)) - 1);

			vnni_wide_group(xg, rw[0].e + g * HMOE_FXP_GROUP, R, s);
#pragma GCC unroll 4
			for (int i = 0; i < R; i++) {
				__m256i d0[2], d1[2], d[2];

				vnni_widen(s[i][0], d0);
				vnni_widen(s[i][1], d1);
				d[0] = _mm256_add_epi64(d0[0], _mm256_slli_epi64(d1[0], 9));
				d[1] = _mm256_add_epi64(d0[1], _mm256_slli_epi64(d1[1], 9));
				vnni_lanes_terms(d, 0, rw[i].mw[g], rw[i].ew[g], x->xmt + o + 8 * h,
						 x->xet + o + 8 * h, valid, acc[i][h], fix[i] + 8 * h);
			}
		}
	}
	vnni_lanes_store(acc, fix, R, H, n_tok, T, c, acc_out);
}

/* One step of vnni_streams' assembly for a row: its 4 digit bytes (ODD: and the next 4)
 * broadcast, times stream a into acc a and stream b into acc b. */
#define VNNI_STREAM_STEP(a, b, d, BB)                                         \
	"vpbroadcastd (%[" d "],%[k]), %[w]\n\t"                               \
	"%{vex%} vpdpbusd %[w], %[va], %[" a "]\n\t"                           \
	BB                                                                      \
	"%{vex%} vpdpbusd %[w], %[vb], %[" b "]\n\t"
/* BB for ODD: stream b's digits, 4 bytes on (else a's broadcast serves b too) */
#define VNNI_ODD_BCAST(d) "vpbroadcastd 4(%[" d "],%[k]), %[w]\n\t"
/* One group's products over two x streams for R rows (dg[i]: row i's digits at the
 * group), s[i][0] from stream a and s[i][1] from stream b, each a chunk half's 32 column
 * quads of 64 bytes apart: every row's 4 digit bytes broadcast once for both streams,
 * or (ODD) a and b the same stream, s[i][0] its even quads and s[i][1] its odd ones. One
 * simple loop per group, 8 independent chains for 4 rows: with the planes' shift between
 * two loops GCC copied and spilled the accumulators (A16 1.3x slower). */
static inline __attribute__((always_inline)) void
vnni_streams(__m256i s[][2], const int R, const uint8_t *xa, const uint8_t *xb,
	     const int8_t *const *dg, const int ODD)
{
	if (R == 4) {  /* in assembly, as vnni_wide_group and for the same reason */
		__m256i a0 = _mm256_setzero_si256(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0;
		__m256i a3 = a0, b3 = a0, va, vb, w;
		/* counting up to 0: x and the digits indexed from their ends */
		long kx = -64 * 32, k = -4 * 32;

		/* ODD: stream b 64 bytes and its digits 4 on, steps of two quads */
#define VNNI_STREAMS_ASM(XO, B0, B1, B2, B3, KS, KXS)                                  \
		__asm__("1:\n\t"                                                             \
			"vmovdqu (%[xa],%[kx]), %[va]\n\t"                                   \
			"vmovdqu " XO "(%[xb],%[kx]), %[vb]\n\t"                             \
			VNNI_STREAM_STEP("a0", "b0", "d0", B0)                               \
			VNNI_STREAM_STEP("a1", "b1", "d1", B1)                               \
			VNNI_STREAM_STEP("a2", "b2", "d2", B2)                               \
			VNNI_STREAM_STEP("a3", "b3", "d3", B3)                               \
			"add $" KS ", %[k]\n\t"                                              \
			"add $" KXS ", %[kx]\n\t"                                            \
			"jnz 1b"                                                             \
			: [a0] "+x"(a0), [b0] "+x"(b0), [a1] "+x"(a1), [b1] "+x"(b1),        \
			  [a2] "+x"(a2), [b2] "+x"(b2), [a3] "+x"(a3), [b3] "+x"(b3),        \
			  [va] "=&x"(va), [vb] "=&x"(vb), [w] "=&x"(w), [kx] "+r"(kx),       \
			  [k] "+r"(k)                                                        \
			: [xa] "r"(xa + 64 * 32), [xb] "r"(xb + 64 * 32),                    \
			  [d0] "r"(dg[0] + 4 * 32), [d1] "r"(dg[1] + 4 * 32),                \
			  [d2] "r"(dg[2] + 4 * 32), [d3] "r"(dg[3] + 4 * 32)                 \
			: "cc", "memory")
		if (ODD)
			VNNI_STREAMS_ASM("64", VNNI_ODD_BCAST("d0"), VNNI_ODD_BCAST("d1"),
					 VNNI_ODD_BCAST("d2"), VNNI_ODD_BCAST("d3"), "8", "128");
		else
			VNNI_STREAMS_ASM("0", "", "", "", "", "4", "64");
#undef VNNI_STREAMS_ASM
		s[0][0] = a0, s[0][1] = b0, s[1][0] = a1, s[1][1] = b1;
		s[2][0] = a2, s[2][1] = b2, s[3][0] = a3, s[3][1] = b3;
		return;
	}
	for (int i = 0; i < R; i++)
		s[i][0] = s[i][1] = _mm256_setzero_si256();
#pragma GCC unroll 1
	for (int kq = 0; kq < 32; kq += 1 + ODD) {
		__m256i va = _mm256_loadu_si256((const __m256i *)(xa + 64 * kq));
		__m256i vb = _mm256_loadu_si256((const __m256i *)(xb + 64 * (kq + ODD)));

#pragma GCC unroll 4
		for (int i = 0; i < R; i++) {
			s[i][0] = vnni_dpbusd_bcast4(s[i][0], va, dg[i] + 4 * kq);
			s[i][1] = vnni_dpbusd_bcast4(s[i][1], vb, dg[i] + 4 * (kq + ODD));
		}
	}
}

/* Chunk c (n_tok valid tokens) for R rows, P planes, its H halves of 8 tokens (H = 1: the
 * first only): per group the rows' dots (A16: each half's two planes as the two streams,
 * combined as 128 S(hi) + S(lo); A8: both halves as the two streams, or with H = 1 the
 * first half's even and odd quads), then their terms and row sums in the token lanes,
 * into acc_out (n_rows, n_tokens). */
static inline __attribute__((always_inline)) void
vnni_lanes_chunk(const struct vnni_row *rw, const int R, const int P, const int H,
		 const struct hmoe_fxp_xtile *x, int c, int n_tok, int64_t *acc_out)
{
	int G = x->groups, T = x->n_tokens;
	__m256i acc[HMOE_FXP_LANE_ROWS][2][2];   /* [row][half][tokens 0-3, 4-7] */
	int64_t fix[HMOE_FXP_LANE_ROWS][16] = { { 0 } };

	for (int i = 0; i < R; i++)
		for (int h = 0; h < 2; h++)
			acc[i][h][0] = acc[i][h][1] = _mm256_setzero_si256();
	for (int g = 0; g < G; g++) {
		const uint8_t *xh = x->xu + ((size_t)(c * P) * G + g) * 2 * 1024;
		const uint8_t *xl = x->xu + ((size_t)(c * P + P - 1) * G + g) * 2 * 1024;
		size_t o = ((size_t)c * G + g) * HMOE_FXP_BLOCK_ROWS;
		const int8_t *dg[HMOE_FXP_LANE_ROWS];
		__m256i s[HMOE_FXP_LANE_ROWS][2], v[HMOE_FXP_LANE_ROWS][2];

		for (int i = 0; i < R; i++)
			dg[i] = rw[i].d + g * HMOE_FXP_GROUP;
		if (P == 2) {
			for (int h = 0; h < H; h++) {
				vnni_streams(s, R, xh + 32 * h, xl + 32 * h, dg, 0);
				for (int i = 0; i < R; i++)
					v[i][h] = _mm256_add_epi32(_mm256_slli_epi32(
						s[i][0], HMOE_FXP_PLANE_SHIFT), s[i][1]);
			}
		} else if (H == 2) {
			vnni_streams(s, R, xh, xh + 32, dg, 0);
			for (int i = 0; i < R; i++)
				v[i][0] = s[i][0], v[i][1] = s[i][1];
		} else {
			vnni_streams(s, R, xh, xh, dg, 1);
			for (int i = 0; i < R; i++)
				v[i][0] = _mm256_add_epi32(s[i][0], s[i][1]);
		}
#pragma GCC unroll 4
		for (int i = 0; i < R; i++) {
			/* the offset: 128 * 129 * sum(d) (A16), 128 * sum(d) (A8) */
			__m256i off = _mm256_set1_epi32((P == 2 ? 128 * 129 : 128) * rw[i].wsum[g]);

#pragma GCC unroll 2
			for (int h = 0; h < H; h++) {
				int valid = (n_tok - 8 * h >= 8 ? 0xff : (1 << (n_tok - 8 * h)) - 1);

				__m256i d[2];

				/* |S - offset| <= 5.4e8 + 2.7e8 < 2^31 */
				vnni_widen(_mm256_sub_epi32(v[i][h], off), d);
				vnni_lanes_terms(d, 1, rw[i].mw[g], rw[i].ew[g], x->xmt + o + 8 * h,
						 x->xet + o + 8 * h, valid, acc[i][h], fix[i] + 8 * h);
			}
		}
	}
	vnni_lanes_store(acc, fix, R, H, n_tok, T, c, acc_out);
}

/* Every chunk for one shape (R rows, P planes): full chunks and a last one of more than 8
 * tokens as two halves, a last one of at most 8 as one. */
static inline __attribute__((always_inline)) void
vnni_lanes_shape(const struct vnni_row *rw, const int R, const int P, const int WIDE,
		 const struct hmoe_fxp_xtile *x, int64_t *acc)
{
	for (int c = 0; c * HMOE_FXP_BLOCK_ROWS < x->n_tokens; c++) {
		int left = x->n_tokens - c * HMOE_FXP_BLOCK_ROWS;
		int n_tok = left < HMOE_FXP_BLOCK_ROWS ? left : HMOE_FXP_BLOCK_ROWS;

		if (WIDE && n_tok > 8)
			vnni_wide_chunk(rw, R, 2, x, c, n_tok, acc);
		else if (WIDE)
			vnni_wide_chunk(rw, R, 1, x, c, n_tok, acc);
		else if (n_tok > 8)
			vnni_lanes_chunk(rw, R, P, 2, x, c, n_tok, acc);
		else
			vnni_lanes_chunk(rw, R, P, 1, x, c, n_tok, acc);
	}
}

#define VNNI_LANES_R(P, WIDE)                                         \
	do {                                                          \
		if (n_rows == 4)                                      \
			vnni_lanes_shape(rw, 4, P, WIDE, x, acc);     \
		else if (n_rows == 3)                                 \
			vnni_lanes_shape(rw, 3, P, WIDE, x, acc);     \
		else if (n_rows == 2)                                 \
			vnni_lanes_shape(rw, 2, P, WIDE, x, acc);     \
		else                                                  \
			vnni_lanes_shape(rw, 1, P, WIDE, x, acc);     \
	} while (0)

static int avxvnni_rows_acc(const uint8_t *rows, size_t row_stride, int n_rows, int format,
			    int in, const struct hmoe_fxp_xtile *x, int64_t *acc, void *tmp)
{
	struct vnni_row rw[HMOE_FXP_LANE_ROWS];
	int G = x->groups;
	size_t codes_at = (size_t)hmoe_fxp_scale_lines(in) * HMOE_FXP_LINE_BYTES;

	int wide = format == HMOE_FXP_FP8 && x->planes == 2;

	/* fp8 A8 declines; fp8 A16 takes x->xw, never paired (the driver pairs only for
	 * variants with 16 lanes) */
	if ((format == HMOE_FXP_FP8 && !wide) || n_rows < 1 || n_rows > HMOE_FXP_LANE_ROWS ||
	    (wide ? !x->xw || x->xpaired : !x->xu))
		return 0;
	__atomic_fetch_add(&hmoe_fxp_avxvnni_lanes[format], 1, __ATOMIC_RELAXED);
	for (int i = 0; i < n_rows; i++) {
		const uint8_t *row = rows + i * row_stride, *codes = row + codes_at;

		if (wide) {
			int16_t *e = (int16_t *)tmp + (size_t)i * 2 * HMOE_FXP_MAX_DIM;

			decode_digits(codes, G * HMOE_FXP_GROUP, e, e + HMOE_FXP_MAX_DIM);
			rw[i].e = e;
		} else if (format == HMOE_FXP_INT8) {
			rw[i].d = (const int8_t *)codes;
		} else {
			int8_t *d = (int8_t *)tmp + (size_t)i * HMOE_FXP_MAX_DIM;

			vnni_int4_digits(codes, G, d);
			rw[i].d = d;
		}
		if (!wide)
			vnni_wsum(rw[i].d, G, rw[i].wsum);
		hmoe_fxp_split_scales_x86(row, G, rw[i].mw, rw[i].ew);
	}
	if (wide)
		VNNI_LANES_R(2, 1);
	else if (x->planes == 2)
		VNNI_LANES_R(2, 0);
	else
		VNNI_LANES_R(1, 0);
	return 1;
}
#endif

#if VNNI
const struct hmoe_fxp_simd hmoe_fxp_simd_avxvnni = {
	.name = "avxvnni",
#else
const struct hmoe_fxp_simd hmoe_fxp_simd_avx2 = {
	.name = "avx2",
#endif
	.supported = avx2_supported,
	.row_dots = avx2_row_dots,
	.row_terms = avx2_row_terms,
	.whole_tokens = 1u << HMOE_FXP_FP8 | 1u << HMOE_FXP_INT8 | 1u << HMOE_FXP_INT4,
	.whole16 = 1u << HMOE_FXP_FP8,
#if VNNI
	.rows_acc = avxvnni_rows_acc,
	.lanes_formats = 1u << HMOE_FXP_FP8 | 1u << HMOE_FXP_INT8 | 1u << HMOE_FXP_INT4,
	.lanes_wide = 1u << HMOE_FXP_FP8,
	/* a chunk half of 8 tokens costs half a chunk: on the Zen 5 dev VM tiles of 8
	 * tokens ran int8 1.17x, int8-a8 1.14x, int4 1.02x faster in the lanes than as whole
	 * tokens, tiles of 6 0.90x, 0.94x, 0.78x */
	.lanes_min_tokens = 8,
	/* tokens in halves of 8 and a last 1 or 2 as whole tokens: a partial half costs a
	 * whole one, but the whole-token path more per token, and fp8 A16's leftovers take
	 * the general path (on the Zen 5 dev VM against avx2: 8 + 3 or 8 + 4 tokens fp8
	 * 0.79x, as two halves 0.98-1.03x; 8 + 2 tokens int8 1.32x, as two halves 1.11x) */
	.lanes_step = 8,
	.lanes_part_tokens = 3,
#endif
};
