/* hmoe_fxp_cpu_avx2: exact group dots with AVX2 (see hmoe_fxp_cpu.h).
 *
 * Each row is first decoded to 16-bit weights shared by the tile's tokens: int8 and
 * int4 to q itself; fp8 to ms = +-mantissa (|ms| <= 15; NaN codes -> 0 like the table)
 * and pw = 2^(E-1) (E = 0: 1), with q = ms * pw. Per one-plane row of x (an A16 token
 * is two rows, hmoe_fxp_cpu.c; |x| <= 128 in either), 16 x at a time:
 *   int8/int4: vpmaddwd(q, x): a pair <= 2 * 128 * 128 = 32768, 8 chunks per lane
 *              <= 262144, 8 lanes 2.1e6 < 2^31.
 *   fp8:       vpmaddwd(vpmullw(ms, x), pw): |ms * x| <= 1920, a pair <= 2 * 1920 * 2^14
 *              = 62914560, 8 chunks <= 5.03e8 < 2^31 per lane; lanes summed in int64.
 */
#include <immintrin.h>

#include "hmoe_fxp_cpu.h"

static int avx2_supported(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2");
}

static void decode_row(const uint8_t *codes, int format, int n, int16_t *w, int16_t *pw)
{
	if (format == HMOE_FXP_INT8) {
		for (int k = 0; k < n; k++)
			w[k] = (int8_t)codes[k];
	} else if (format == HMOE_FXP_INT4) {
		for (int k = 0; k < n; k++) {
			int b = codes[k / HMOE_FXP_GROUP * (HMOE_FXP_GROUP / 2) +
				      k % (HMOE_FXP_GROUP / 2)];

			w[k] = (int16_t)((k % HMOE_FXP_GROUP < HMOE_FXP_GROUP / 2 ? b & 15 : b >> 4) - 8);
		}
	} else {
		for (int k = 0; k < n; k++) {
			int c = codes[k], e = (c >> 3) & 15, m = c & 7;

			m = (c & 0x7f) == 0x7f ? 0 : e ? m | 8 : m;
			w[k] = (int16_t)(c & 0x80 ? -m : m);
			pw[k] = (int16_t)(1 << (e ? e - 1 : 0));
		}
	}
}

static void avx2_row_dots(const uint8_t *codes, int format, const struct hmoe_fxp_xtile *x,
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

			for (int k = 0; k < HMOE_FXP_GROUP; k += 16) {
				__m256i xv = _mm256_cvtepi8_epi16(
					_mm_loadu_si128((const __m128i *)(xp + k)));
				__m256i wv = _mm256_loadu_si256((const __m256i *)(gw + k));

				if (format == HMOE_FXP_FP8)
					acc = _mm256_add_epi32(acc, _mm256_madd_epi16(
						_mm256_mullo_epi16(wv, xv),
						_mm256_loadu_si256((const __m256i *)(gp + k))));
				else
					acc = _mm256_add_epi32(acc, _mm256_madd_epi16(wv, xv));
			}
			lo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(acc));
			hi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(acc, 1));
			lo = _mm256_add_epi64(lo, hi);
			s = _mm_add_epi64(_mm256_castsi256_si128(lo), _mm256_extracti128_si256(lo, 1));
			dots[t * x->groups + g] = _mm_cvtsi128_si64(s) + _mm_extract_epi64(s, 1);
		}
	}
}

const struct hmoe_fxp_simd hmoe_fxp_simd_avx2 = {
	.name = "avx2",
	.supported = avx2_supported,
	.row_dots = avx2_row_dots,
};
