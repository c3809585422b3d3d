/* hmoe_fxp_cpu_avx512: exact group dots with AVX-512 BW + VNNI (see hmoe_fxp_cpu.h).
 *
 * int8: vpdpbusd needs one unsigned operand, so the weights are flipped to u = q + 128
 *       (q ^ 0x80) and dot = sum(u * x) - 128 * sum(x). Lane bound: 2 vpdpbusd of 4
 *       products each, |u * x| <= 255 * 128: 8 * 32640 = 261120 per lane, 16 lanes
 *       4.2e6 < 2^31.
 * int4: the nibbles are already u = q + 8 in [0, 15]: dot = sum(u * x) - 8 * sum(x).
 *       Unpacking lo/hi nibbles interleaves them per 128-bit lane, so x is permuted by
 *       lanes to match (vshufi64x2); the sum does not care about order.
 * fp8:  each code is decoded once per row into ms = +-mantissa (|ms| <= 15, NaN codes
 *       -> 0 like the table) and pw = 2^(E-1) (E = 0: 1), so q = ms * pw exactly; then
 *       per token vpmullw(ms, x) (|.| <= 15 * 128 = 1920) and vpmaddwd with pw: a pair
 *       <= 2 * 1920 * 2^14 = 62914560, 4 chunks per group <= 2.52e8 < 2^31 per lane; the
 *       16 lanes are summed in int64.
 */
#include <immintrin.h>

#include "hmoe_fxp_cpu.h"

static int avx512_supported(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
	       __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
}

static int64_t reduce_epi32_to_64(__m512i acc)
{
	__m512i lo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(acc));
	__m512i hi = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(acc, 1));

	return _mm512_reduce_add_epi64(_mm512_add_epi64(lo, hi));
}

static void dots_int8(const uint8_t *codes, const struct hmoe_fxp_xtile *x, int64_t *dots)
{
	const __m512i flip = _mm512_set1_epi8((char)0x80);
	int stride = x->groups * HMOE_FXP_GROUP;

	for (int g = 0; g < x->groups; g++) {
		const uint8_t *c = codes + g * HMOE_FXP_GROUP;
		__m512i u0 = _mm512_xor_si512(_mm512_loadu_si512(c), flip);
		__m512i u1 = _mm512_xor_si512(_mm512_loadu_si512(c + 64), flip);

		for (int t = 0; t < x->n_tokens; t++) {
			const int8_t *xp = x->xq + t * stride + g * HMOE_FXP_GROUP;
			__m512i acc = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u0,
							  _mm512_loadu_si512(xp));

			acc = _mm512_dpbusd_epi32(acc, u1, _mm512_loadu_si512(xp + 64));
			dots[t * x->groups + g] = (int64_t)_mm512_reduce_add_epi32(acc) -
						  128 * (int64_t)x->xsum[t * x->groups + g];
		}
	}
}

static void dots_int4(const uint8_t *codes, const struct hmoe_fxp_xtile *x, int64_t *dots)
{
	const __m512i low4 = _mm512_set1_epi8(0x0f);
	int stride = x->groups * HMOE_FXP_GROUP;

	for (int g = 0; g < x->groups; g++) {
		__m512i b = _mm512_loadu_si512(codes + g * HMOE_FXP_GROUP / 2);
		__m512i lo = _mm512_and_si512(b, low4);
		__m512i hi = _mm512_and_si512(_mm512_srli_epi16(b, 4), low4);
		__m512i a0 = _mm512_unpacklo_epi8(lo, hi), a1 = _mm512_unpackhi_epi8(lo, hi);

		for (int t = 0; t < x->n_tokens; t++) {
			const int8_t *xp = x->xq + t * stride + g * HMOE_FXP_GROUP;
			__m512i xa = _mm512_loadu_si512(xp), xb = _mm512_loadu_si512(xp + 64);
			__m512i acc = _mm512_dpbusd_epi32(_mm512_setzero_si512(), a0,
							  _mm512_shuffle_i64x2(xa, xb, 0x88));

			acc = _mm512_dpbusd_epi32(acc, a1, _mm512_shuffle_i64x2(xa, xb, 0xdd));
			dots[t * x->groups + g] = (int64_t)_mm512_reduce_add_epi32(acc) -
						  8 * (int64_t)x->xsum[t * x->groups + g];
		}
	}
}

static void dots_fp8(const uint8_t *codes, const struct hmoe_fxp_xtile *x, int64_t *dots,
		     int16_t *ms, int16_t *pw)
{
	const __m512i one = _mm512_set1_epi16(1);
	int stride = x->groups * HMOE_FXP_GROUP, n = x->groups * HMOE_FXP_GROUP;

	for (int k = 0; k < n; k += 32) {
		__m512i c = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(codes + k)));
		__m512i e = _mm512_and_si512(_mm512_srli_epi16(c, 3), _mm512_set1_epi16(15));
		__m512i m = _mm512_and_si512(c, _mm512_set1_epi16(7));
		__mmask32 normal = _mm512_test_epi16_mask(e, e);
		__mmask32 nan = _mm512_cmpeq_epi16_mask(_mm512_and_si512(c, _mm512_set1_epi16(0x7f)),
						       _mm512_set1_epi16(0x7f));
		__mmask32 neg = _mm512_test_epi16_mask(c, _mm512_set1_epi16(0x80));

		m = _mm512_or_si512(m, _mm512_maskz_mov_epi16(normal, _mm512_set1_epi16(8)));
		m = _mm512_maskz_mov_epi16(~nan, m);
		m = _mm512_mask_sub_epi16(m, neg, _mm512_setzero_si512(), m);
		_mm512_storeu_si512(ms + k, m);
		_mm512_storeu_si512(pw + k, _mm512_sllv_epi16(one, _mm512_subs_epu16(e, one)));
	}
	for (int g = 0; g < x->groups; g++) {
		const int16_t *gm = ms + g * HMOE_FXP_GROUP, *gp = pw + g * HMOE_FXP_GROUP;
		__m512i m0 = _mm512_loadu_si512(gm), m1 = _mm512_loadu_si512(gm + 32);
		__m512i m2 = _mm512_loadu_si512(gm + 64), m3 = _mm512_loadu_si512(gm + 96);
		__m512i p0 = _mm512_loadu_si512(gp), p1 = _mm512_loadu_si512(gp + 32);
		__m512i p2 = _mm512_loadu_si512(gp + 64), p3 = _mm512_loadu_si512(gp + 96);

		for (int t = 0; t < x->n_tokens; t++) {
			const int8_t *xp = x->xq + t * stride + g * HMOE_FXP_GROUP;
#define FP8_CHUNK(acc, mv, pv, off)                                                           \
	_mm512_add_epi32(acc, _mm512_madd_epi16(                                              \
				      _mm512_mullo_epi16(mv, _mm512_cvtepi8_epi16(_mm256_loadu_si256( \
								 (const __m256i *)(xp + off)))), \
				      pv))
			__m512i acc = _mm512_setzero_si512();

			acc = FP8_CHUNK(acc, m0, p0, 0);
			acc = FP8_CHUNK(acc, m1, p1, 32);
			acc = FP8_CHUNK(acc, m2, p2, 64);
			acc = FP8_CHUNK(acc, m3, p3, 96);
#undef FP8_CHUNK
			dots[t * x->groups + g] = reduce_epi32_to_64(acc);
		}
	}
}

static void avx512_row_dots(const uint8_t *codes, int format, const struct hmoe_fxp_xtile *x,
			    int64_t *dots, void *tmp)
{
	int16_t *ms = tmp, *pw = ms + HMOE_FXP_MAX_DIM;

	if (format == HMOE_FXP_INT8)
		dots_int8(codes, x, dots);
	else if (format == HMOE_FXP_INT4)
		dots_int4(codes, x, dots);
	else
		dots_fp8(codes, x, dots, ms, pw);
}

const struct hmoe_fxp_simd hmoe_fxp_simd_avx512 = {
	.name = "avx512",
	.supported = avx512_supported,
	.row_dots = avx512_row_dots,
};
