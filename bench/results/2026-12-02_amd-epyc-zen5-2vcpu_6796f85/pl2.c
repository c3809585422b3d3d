/* pl2.c: the one-token fp8 A16 pair loop alone (four rows from L1, vpermi2b decode),
 * with ablations (-DNOFOLD=1, -DNOSIGN=1, -DNODEC=1, -DSPLIT=1); not part of the build.
 * From the repository root (NAME labels the output line):
 *   gcc -O2 -D_GNU_SOURCE -I. -Iruntime -Ihls -mavx2 -mfma -mf16c -mavx512f -mavx512bw \
 *       -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16 -Wno-unused-function \
 *       -DNAME=\"base\" bench/results/2026-12-02_amd-epyc-zen5-2vcpu_6796f85/pl2.c \
 *       build/libhmoe.a -lm -lpthread -lcjson -lpcre2-8 -ldl -ldrm -o /tmp/pl2 */
#include "runtime/hmoe_fxp_cpu_avx512.c"  /* compiled from the repository root with -I. */
#include <time.h>
#include <stdio.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static uint64_t rn(uint64_t *s){*s^=*s<<13;*s^=*s>>7;*s^=*s<<17;return *s;}
#define IN 7168
static uint8_t codes[4][IN] __attribute__((aligned(64)));
static int8_t xq[2*IN] __attribute__((aligned(64)));
#ifndef NOFOLD
#define NOFOLD 0
#endif
#ifndef NOSIGN
#define NOSIGN 0
#endif
#ifndef NODEC
#define NODEC 0
#endif
#ifndef SPLIT
#define SPLIT 0
#endif
/* one step: row codes c (2 groups), x at the pair */
VBMI_TARGET static inline __attribute__((always_inline)) __m512i step(const uint8_t *c, const int8_t *xg, size_t plane, const __m512i tab[3])
{
	const __m512i zero = _mm512_setzero_si512();
	__m512i acc[4];
#pragma GCC unroll 2
	for (int j = 0; j < 2; j++) {
		__m512i u[2][2], vh[2], vl[2]; __mmask64 neg[2];
#pragma GCC unroll 2
		for (int h = 0; h < 2; h++) {
			__m512i cc = _mm512_loadu_si512(c + j * 128 + 64 * h);
			neg[h] = _mm512_movepi8_mask(cc);
			if (NODEC) { u[h][0] = cc; u[h][1] = _mm512_xor_si512(cc, tab[0]); }
			else { u[h][0] = _mm512_permutex2var_epi8(tab[0], cc, tab[1]); u[h][1] = _mm512_permutex2var_epi8(zero, cc, tab[2]); }
			vh[h] = _mm512_loadu_si512(xg + j * 128 + 64 * h);
			vl[h] = _mm512_loadu_si512(xg + plane + j * 128 + 64 * h);
			if (!NOSIGN) { vh[h] = _mm512_mask_sub_epi8(vh[h], neg[h], zero, vh[h]); vl[h] = _mm512_mask_sub_epi8(vl[h], neg[h], zero, vl[h]); }
		}
		__m512i a = zero, b = zero;
		if (SPLIT) {
			__m512i al = zero, bl = zero, a1 = zero, b1 = zero, al1 = zero, bl1 = zero;
			a = _mm512_dpbusd_epi32(a, u[0][0], vh[0]); a1 = _mm512_dpbusd_epi32(a1, u[1][0], vh[1]);
			b = _mm512_dpbusd_epi32(b, u[0][1], vh[0]); b1 = _mm512_dpbusd_epi32(b1, u[1][1], vh[1]);
			al = _mm512_dpbusd_epi32(al, u[0][0], vl[0]); al1 = _mm512_dpbusd_epi32(al1, u[1][0], vl[1]);
			bl = _mm512_dpbusd_epi32(bl, u[0][1], vl[0]); bl1 = _mm512_dpbusd_epi32(bl1, u[1][1], vl[1]);
			a = _mm512_add_epi32(_mm512_slli_epi32(_mm512_add_epi32(a, a1), 7), _mm512_add_epi32(al, al1));
			b = _mm512_add_epi32(_mm512_slli_epi32(_mm512_add_epi32(b, b1), 7), _mm512_add_epi32(bl, bl1));
		} else {
#pragma GCC unroll 2
		for (int h = 0; h < 2; h++) { a = _mm512_dpbusd_epi32(a, u[h][0], vh[h]); b = _mm512_dpbusd_epi32(b, u[h][1], vh[h]); }
		a = _mm512_slli_epi32(a, 7); b = _mm512_slli_epi32(b, 7);
#pragma GCC unroll 2
		for (int h = 0; h < 2; h++) { a = _mm512_dpbusd_epi32(a, u[h][0], vl[h]); b = _mm512_dpbusd_epi32(b, u[h][1], vl[h]); }
		}
		acc[j] = a; acc[2 + j] = b;
	}
	if (NOFOLD) return _mm512_add_epi32(_mm512_add_epi32(acc[0], acc[1]), _mm512_add_epi32(acc[2], acc[3]));
	return fold4_epi32(acc);
}
__attribute__((noinline)) VBMI_TARGET static __m512i run(const __m512i two[3])
{
	__m512i sum = _mm512_setzero_si512();
	size_t plane = IN;
	for (int g = 0; g < 56; g += 8) {
		__m512i f[4][4];
#pragma GCC unroll 1
		for (int b = 0; b < 4; b++)
#pragma GCC unroll 1
			for (int r = 0; r < 4; r++)
				f[r][b] = step(codes[r] + (g + 2 * b) * 128, xq + (g + 2 * b) * 128, plane, two);
		for (int r = 0; r < 4; r++) for (int b = 0; b < 4; b++) sum = _mm512_add_epi32(sum, f[r][b]);
	}
	return sum;
}
int main(void) {
	uint64_t s = 88172645463325252ull;
	for (int r = 0; r < 4; r++) for (int k = 0; k < IN; k++) { int c = rn(&s) & 0xff; if ((c & 0x7f) == 0x7f) c = 0x10; codes[r][k] = c; }
	for (int k = 0; k < 2 * IN; k++) xq[k] = (int8_t)((int)(rn(&s) % 255) - 127) / (k >= IN ? 2 : 1);
	fp8_planes();
	__m512i two[3] = { _mm512_loadu_si512(fp8_two[0]), _mm512_loadu_si512(fp8_two[0] + 64), _mm512_loadu_si512(fp8_two[1] + 64) };
	double best = 1e9;
	for (int rep = 0; rep < 5; rep++) {
		double t0 = now(); long n = 0; __m512i acc = _mm512_setzero_si512();
		do { for (int i = 0; i < 100; i++) { __asm__ volatile("" ::: "memory"); acc = _mm512_add_epi32(acc, run(two)); } n += 100; } while (now() - t0 < 0.2);
		double t = (now() - t0) / n; if (t < best) best = t; if (_mm512_reduce_add_epi32(acc) == 12345) printf("x");
	}
	printf("%-28s %.2f cyc/64B  (%.1f cyc per step)\n", NAME, best * 3.2e9 / (4 * IN / 64.), best * 3.2e9 / (4 * 56 / 2.));
	return 0;
}
