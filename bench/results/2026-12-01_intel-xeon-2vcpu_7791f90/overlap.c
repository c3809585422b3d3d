/* overlap.c: how much of one core's read bandwidth a streaming kernel keeps when it also
 * computes, by access pattern. Not part of the build; the program behind overlap.txt.
 *
 *   gcc -O2 -mavx512f -mavx512bw -mavx512vnni overlap.c -o overlap && taskset -c 0 ./overlap
 *
 * A 512 MiB buffer is read as S streams (S equal regions), CH bytes of each in turn;
 * every 64-byte line is loaded once and feeds K vpdpbusd (8 accumulators), with an
 * optional prefetch into L2 (T1) PF bytes ahead of each line. K sets the compute per
 * byte: "in-cache" is the same loop over 1 MiB, i.e. the compute rate alone. A kernel
 * whose in-cache rate is close to the memory rate (K = 16 here, like the fp8 A16
 * one-token kernel) shows how much of the memory rate the pattern keeps. */
#define _GNU_SOURCE
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

#define KERNEL(K)                                                                        \
	static __attribute__((noinline)) __m512i run##K(const char *b, size_t n, int S,  \
							size_t pf, size_t CH)            \
	{                                                                                \
		__m512i a[8];                                                            \
		size_t reg = n / S;                                                      \
		const __m512i w = _mm512_set1_epi8(3);                                   \
                                                                                         \
		for (int i = 0; i < 8; i++)                                              \
			a[i] = _mm512_set1_epi32(i);                                     \
		for (size_t off = 0; off < reg; off += CH)                               \
			for (int s = 0; s < S; s++) {                                    \
				const char *p = b + s * reg + off;                       \
				for (size_t k = 0; k < CH; k += 64) {                    \
					__m512i v;                                       \
					if (pf)                                          \
						_mm_prefetch(p + pf + k, _MM_HINT_T1);   \
					v = _mm512_load_si512(p + k);                    \
					_Pragma("GCC unroll 64") for (int j = 0; j < K; j++) \
						a[j & 7] = _mm512_dpbusd_epi32(a[j & 7], v, w); \
				}                                                        \
			}                                                                \
		for (int i = 1; i < 8; i++)                                              \
			a[0] = _mm512_add_epi32(a[0], a[i]);                             \
		return a[0];                                                             \
	}

KERNEL(1)
KERNEL(8)
KERNEL(16)

typedef __m512i (*kernel_fn)(const char *, size_t, int, size_t, size_t);

int main(void)
{
	size_t n = (size_t)1 << 29, small = (size_t)1 << 20;
	char *b = aligned_alloc(1 << 21, n);
	kernel_fn f[] = { run1, run8, run16 };
	int K[] = { 1, 8, 16 }, Ss[] = { 1, 4, 16 };
	size_t CHs[] = { 256, 1024, 4096 }, pfs[] = { 0, 1536, 4096 };
	__m512i sink = _mm512_setzero_si512();

	if (!b)
		return 1;
	memset(b, 1, n);
	for (int i = 0; i < 3; i++) {
		double bc = 1e9;

		for (int r = 0; r < 3; r++) {
			double t0 = now(), t;

			for (int q = 0; q < 64; q++)
				sink = _mm512_add_epi32(sink, f[i](b, small, 4, 0, 256));
			t = (now() - t0) / 64;
			bc = t < bc ? t : bc;
		}
		printf("K=%2d in-cache %.1f GB/s\n", K[i], small / bc / 1e9);
		for (int si = 0; si < 3; si++)
			for (int ci = 0; ci < 3; ci++) {
				printf("  S=%2d CH=%4zu:", Ss[si], CHs[ci]);
				for (int pi = 0; pi < 3; pi++) {
					double bm = 1e9;

					for (int r = 0; r < 2; r++) {
						double t0 = now(), t;

						sink = _mm512_add_epi32(
							sink, f[i](b, n, Ss[si], pfs[pi], CHs[ci]));
						t = now() - t0;
						bm = t < bm ? t : bm;
					}
					printf(" pf%zu=%.1f", pfs[pi], n / bm / 1e9);
				}
				printf("\n");
			}
	}
	return _mm512_reduce_add_epi32(sink) == 12345;  /* keeps the sums alive */
}
