#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static int K;
static __attribute__((noinline)) __m512i run(const char *b, size_t n, size_t pf)
{
	__m512i a[8]; size_t reg = n / 4; const __m512i w = _mm512_set1_epi8(3);
	for (int i = 0; i < 8; i++) a[i] = _mm512_set1_epi32(i);
	for (size_t off = 0; off < reg; off += 256)
		for (int s = 0; s < 4; s++) {
			const char *p = b + s * reg + off;
			for (size_t k = 0; k < 256; k += 64) {
				__m512i v;
				if (pf) _mm_prefetch(p + pf + k, _MM_HINT_T1);
				v = _mm512_load_si512(p + k);
				for (int j = 0; j < K; j++) a[j & 7] = _mm512_dpbusd_epi32(a[j & 7], v, w);
				if (!K) a[0] = _mm512_add_epi32(a[0], v);
			}
		}
	for (int i = 1; i < 8; i++) a[0] = _mm512_add_epi32(a[0], a[i]);
	return a[0];
}
struct arg { const char *b; size_t n; __m512i r; };
static void *th(void *p) { struct arg *a = p; a->r = run(a->b, a->n, 1536); return NULL; }
static double pass(char *b, size_t n)
{
	pthread_t t[2]; struct arg a[2] = { { b, n / 2 }, { b + n / 2, n / 2 } };
	double t0 = now();
	for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, th, &a[i]);
	for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
	return n / (now() - t0) / 1e9;
}
static int cmp(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return x < y ? -1 : x > y; }
int main(int argc, char **argv)
{
	size_t n = (size_t)1 << 29;
	char *b0 = aligned_alloc(1 << 21, n), *b1 = aligned_alloc(1 << 21, n);
	int R = 15; double r[64], x0[64], x1[64];
	K = argc > 1 ? atoi(argv[1]) : 12;
	madvise(b1, n, MADV_HUGEPAGE);
	memset(b0, 1, n); memset(b1, 1, n);
	for (int i = 0; i < R; i++) {
		x0[i] = pass(b0, n); x1[i] = pass(b1, n); r[i] = x1[i] / x0[i];
		printf("%5.1f %5.1f %.3f\n", x0[i], x1[i], r[i]);
	}
	qsort(r, R, sizeof(double), cmp); qsort(x0, R, sizeof(double), cmp); qsort(x1, R, sizeof(double), cmp);
	printf("K=%d median 4K %.1f huge %.1f ratio %.3f (best %.1f / %.1f)\n", K, x0[R/2], x1[R/2], r[R/2], x0[R-1], x1[R-1]);
	return 0;
}
