/* bench_read_avx512: the read-bandwidth probe's inner loop with 64-byte loads (see
 * bench_common.c), so that the probe reads memory at least as fast as the AVX-512 expert
 * kernels it is the yardstick for, and the four-row kernels' read pattern without their
 * arithmetic (bench_experts.c). Called only where the CPU has AVX-512F. */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "hmoe_bench.h"
#include "hmoe_fxp.h"
#include "hmoe_fxp_cpu.h"

/* Sums n_words words from buf (64-byte aligned) as four streams, one per quarter, read
 * in lockstep with a software prefetch 8 KiB ahead into L2: one stream per thread leaves
 * too few misses in flight (the hardware prefetchers stop at each 4 KiB page), and the
 * expert kernels it is compared with read two to eight weight rows at once. */
uint64_t bench_read_sum_avx512(const uint64_t *buf, size_t n_words)
{
	size_t q = n_words / 32 * 8;  /* words per stream, a multiple of 8 */
	const uint64_t *p0 = buf, *p1 = buf + q, *p2 = buf + 2 * q, *p3 = buf + 3 * q;
	__m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
	uint64_t out[8], r = 0;

	for (size_t k = 0; k < q; k += 8) {
		_mm_prefetch((const char *)(p0 + k) + 8192, _MM_HINT_T1);
		_mm_prefetch((const char *)(p1 + k) + 8192, _MM_HINT_T1);
		_mm_prefetch((const char *)(p2 + k) + 8192, _MM_HINT_T1);
		_mm_prefetch((const char *)(p3 + k) + 8192, _MM_HINT_T1);
		s0 = _mm512_add_epi64(s0, _mm512_load_si512((const void *)(p0 + k)));
		s1 = _mm512_add_epi64(s1, _mm512_load_si512((const void *)(p1 + k)));
		s2 = _mm512_add_epi64(s2, _mm512_load_si512((const void *)(p2 + k)));
		s3 = _mm512_add_epi64(s3, _mm512_load_si512((const void *)(p3 + k)));
	}
	_mm512_storeu_si512((void *)out, _mm512_xor_si512(_mm512_xor_si512(s0, s1),
							   _mm512_xor_si512(s2, s3)));
	for (int i = 0; i < 8; i++)
		r ^= out[i];
	for (size_t k = 4 * q; k < n_words; k++)
		r += buf[k];
	return r;
}

/* See hmoe_bench.h. */
uint64_t bench_rows4_sum(const uint8_t *const *rows, int format, int in)
{
	const struct hmoe_fxp_plan *plan = hmoe_fxp_plan();
	const int *pd = format == HMOE_FXP_FP8 ? plan->fp8_rows4 : plan->rows4;
	int pf = format != HMOE_FXP_FP8 || plan->fp8, l2 = pf ? pd[0] : 0, l1 = pf ? pd[1] : 0;
	int groups = hmoe_fxp_groups(in), gb = hmoe_fxp_group_bytes(format);
	int turn = format == HMOE_FXP_FP8 ? 2 : 1;  /* a row's groups at a time, as the kernels */
	size_t skip = (size_t)hmoe_fxp_scale_lines(in) * HMOE_FXP_LINE_BYTES;
	__m512i s = _mm512_setzero_si512();
	uint64_t w[8], sum = 0;

	for (int r = 0; r < 4; r++)
		for (size_t i = 0; i < skip; i += HMOE_FXP_LINE_BYTES)
			s = _mm512_add_epi64(s, _mm512_loadu_si512(rows[r] + i));
	for (int g = 0; g < groups; g += turn) {
		int bytes = (groups - g < turn ? groups - g : turn) * gb;

		for (int r = 0; r < 4; r++) {
			const uint8_t *p = rows[r] + skip + (size_t)g * gb;

			for (int i = 0; i < bytes; i += HMOE_FXP_LINE_BYTES) {
				if (l2)
					_mm_prefetch((const char *)p + l2 + i, _MM_HINT_T1);
				if (l1)
					_mm_prefetch((const char *)p + l1 + i, _MM_HINT_T0);
				s = _mm512_add_epi64(s, _mm512_loadu_si512(p + i));
			}
		}
	}
	_mm512_storeu_si512((void *)w, s);
	for (int i = 0; i < 8; i++)
		sum += w[i];  /* unsigned, wrapping like the lanes */
	return sum;
}

int bench_rows4_touch(const uint8_t *const *rows, int format, int in,
		      const struct hmoe_fxp_xtile *x, const struct hmoe_fxp_rowfix *fix,
		      int64_t *acc)
{
	uint64_t sum = bench_rows4_sum(rows, format, in);

	(void)fix;
	__asm__ volatile("" : : "r"(sum));  /* the sum is "used": the loads stay */
	for (int i = 0; i < 4 * x->n_tokens; i++)
		acc[i] = 0;
	return 0;
}
