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

/* One block of the four rows from byte off: J turns (unrolled), each of TB bytes of every
 * row in turn. TB and J are constants, so each row's loads and prefetches are instructions
 * of their own, as in the kernels (the hardware prefetchers follow a stride per
 * instruction: one load instruction taking the four rows in turn lost the streams,
 * docs/fxp.md section 3). */
static inline __attribute__((always_inline)) __m512i
rows4_block(const uint8_t *const *codes, size_t off, const int J, const int TB, int l2, int l1,
	    __m512i s)
{
#pragma GCC unroll 4
	for (int j = 0; j < J; j++)
#pragma GCC unroll 4
		for (int r = 0; r < 4; r++) {
			const uint8_t *p = codes[r] + off + (size_t)j * TB;

#pragma GCC unroll 4
			for (int i = 0; i < TB; i += HMOE_FXP_LINE_BYTES) {
				if (l2)
					_mm_prefetch((const char *)p + l2 + i, _MM_HINT_T1);
				if (l1)
					_mm_prefetch((const char *)p + l1 + i, _MM_HINT_T0);
				s = _mm512_add_epi64(s, _mm512_loadu_si512(p + i));
			}
		}
	return s;
}

/* See hmoe_bench.h. */
uint64_t bench_rows4_sum(const uint8_t *const *rows, int format, int in)
{
	const struct hmoe_fxp_plan *plan = hmoe_fxp_plan();
	const int *pd = format == HMOE_FXP_FP8 ? plan->fp8_rows4 : plan->rows4;
	int pf = format != HMOE_FXP_FP8 || plan->fp8, l2 = pf ? pd[0] : 0, l1 = pf ? pd[1] : 0;
	int groups = hmoe_fxp_groups(in), gb = hmoe_fxp_group_bytes(format), g = 0;
	/* as the kernels take them: fp8 two groups of each row in turn, a block of four such
	 * turns a loop iteration; int8 and int4 blocks of four groups, a group of each row in
	 * turn */
	int block = 4 * (format == HMOE_FXP_FP8 ? 2 : 1);
	size_t skip = (size_t)hmoe_fxp_scale_lines(in) * HMOE_FXP_LINE_BYTES;
	const uint8_t *codes[4] = { rows[0] + skip, rows[1] + skip, rows[2] + skip,
				    rows[3] + skip };
	__m512i s = _mm512_setzero_si512();
	uint64_t w[8], sum = 0;

	for (int r = 0; r < 4; r++)
		for (size_t i = 0; i < skip; i += HMOE_FXP_LINE_BYTES)
			s = _mm512_add_epi64(s, _mm512_loadu_si512(rows[r] + i));
	for (; g + block <= groups; g += block)
		if (format == HMOE_FXP_FP8)
#pragma GCC unroll 1
			for (int b = 0; b < 4; b++)  /* not unrolled, as in the kernel */
				s = rows4_block(codes, (size_t)(g + 2 * b) * gb, 1, 256, l2, l1, s);
		else if (format == HMOE_FXP_INT8)
			s = rows4_block(codes, (size_t)g * gb, 4, 128, l2, l1, s);
		else
			s = rows4_block(codes, (size_t)g * gb, 4, 64, l2, l1, s);
	for (; g < groups; g++)  /* the last groups, a group of each row in turn */
		for (int r = 0; r < 4; r++)
			for (int i = 0; i < gb; i += HMOE_FXP_LINE_BYTES)
				s = _mm512_add_epi64(s, _mm512_loadu_si512(codes[r] + (size_t)g * gb +
									   i));
	_mm512_storeu_si512((void *)w, s);
	for (int i = 0; i < 8; i++)
		sum += w[i];  /* unsigned, wrapping like the lanes */
	return sum;
}

int bench_rows4_touch(const uint8_t *const *rows, size_t stride, int n, int format, int in,
		      const struct hmoe_fxp_xtile *x, const struct hmoe_fxp_rowfix *fix,
		      const struct hmoe_fxp_rows4_out *out)
{
	(void)fix;
	for (int q = 0; q < n; q++) {
		const uint8_t *rq[4] = { rows[0] + (size_t)q * stride, rows[1] + (size_t)q * stride,
					 rows[2] + (size_t)q * stride,
					 rows[3] + (size_t)q * stride };
		uint64_t sum = bench_rows4_sum(rq, format, in);

		__asm__ volatile("" : : "r"(sum));  /* the sum is "used": the loads stay */
		for (int r = 0; r < 4; r++)  /* as the kernels, as the quad ends */
			for (int t = 0; t < x->n_tokens; t++) {
				if (out->acc)
					out->acc[(size_t)(4 * q + r) * x->n_tokens + t] = 0;
				if (out->q16[0])
					out->q16[r][(size_t)q * out->qstep + (size_t)t * out->tstride] = 0;
			}
	}
	return 0;
}
