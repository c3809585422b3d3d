#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
struct arg { const char *b; size_t n; __m512i r; };
static void *th(void *p) { struct arg *a = p; __m512i s0 = _mm512_setzero_si512(), s1 = s0;
	for (size_t k = 0; k < a->n; k += 128) { s0 = _mm512_add_epi64(s0, _mm512_load_si512(a->b + k)); s1 = _mm512_add_epi64(s1, _mm512_load_si512(a->b + k + 64)); }
	a->r = _mm512_add_epi64(s0, s1); return NULL; }
static double pass(char *b, size_t n)
{
	pthread_t t[2]; struct arg a[2] = { { b, n / 2 }, { b + n / 2, n / 2 } };
	double t0 = now();
	for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, th, &a[i]);
	for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
	return n / (now() - t0) / 1e9;
}
int main(void)
{
	size_t big = (size_t)4 << 30; char *b = aligned_alloc(1 << 21, big); memset(b, 1, big);
	size_t sz[] = { (size_t)128 << 20, (size_t)256 << 20, (size_t)512 << 20, (size_t)1 << 30, (size_t)2 << 30, (size_t)4 << 30 };
	for (int r = 0; r < 4; r++) {
		for (int i = 0; i < 6; i++) { double best = 0; for (int k = 0; k < 3; k++) { double x = pass(b, sz[i]); if (x > best) best = x; } printf("%5zuM %.1f  ", sz[i] >> 20, best); }
		printf("\n");
	}
	return 0;
}
