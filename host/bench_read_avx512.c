/* bench_read_avx512: the read-bandwidth probe's inner loop with 64-byte loads (see
 * bench_common.c), so that the probe reads memory at least as fast as the AVX-512 expert
 * kernels it is the yardstick for. Called only where the CPU has AVX-512F. */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

uint64_t bench_read_sum_avx512(const uint64_t *buf, size_t n_words)
{
	__m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
	size_t k = 0;
	uint64_t out[8], r = 0;

	/* four independent accumulators, 256 bytes per iteration; buf is 64-byte aligned */
	for (; k + 32 <= n_words; k += 32) {
		s0 = _mm512_add_epi64(s0, _mm512_load_si512((const void *)(buf + k)));
		s1 = _mm512_add_epi64(s1, _mm512_load_si512((const void *)(buf + k + 8)));
		s2 = _mm512_add_epi64(s2, _mm512_load_si512((const void *)(buf + k + 16)));
		s3 = _mm512_add_epi64(s3, _mm512_load_si512((const void *)(buf + k + 24)));
	}
	_mm512_storeu_si512((void *)out, _mm512_xor_si512(_mm512_xor_si512(s0, s1),
							   _mm512_xor_si512(s2, s3)));
	for (int i = 0; i < 8; i++)
		r ^= out[i];
	for (; k < n_words; k++)
		r += buf[k];
	return r;
}
