/* il.c: synthetic one-token int8 A16 loops over 448 MiB of 7168-byte rows on 2 MiB pages,
 * 2 threads, against a probe like bench experts' (four streams, T1 prefetch 8 KiB ahead).
 * GB/s, best of ROUNDS, and each mode's best over the probe's.
 *   ./il ROUNDS [K]          modes 0-5 in turn with K below
 *   CFG="M,K,PF1,PF2 ..." ./il ROUNDS   the listed settings in turn (M 0: the probe)
 * Modes: 1 four streams a quarter of each thread's half apart; 2 the same rows interleaved
 *   line by line into one stream (row r's line i at 256 i + 64 r); 3 four adjacent rows;
 *   4 the driver's up pass: pairs of 2048-row matrices (W1, W3), work items of 32 rows
 *   handed out by an atomic counter, rows n and n + 16 of each (four streams); 5 mode 4's
 *   quads interleaved line by line, an item one contiguous run; 6 mode 4 with the kernel's
 *   shape built up by level K: 1 a group (2 lines) of each row in turn, each line
 *   prefetched PF1 ahead just before its load, two accumulators per row; 2 the block's 32
 *   prefetches at the start of each block of 4 groups instead (as acc_int_1tok had it);
 *   3 + the codes' sign flip; 4 + fresh accumulators per (row, group), the planes combined
 *   (shift 7) and one 16-way reduction per block; 5 + terms (multiply, rounding shift).
 * Modes 7-12, the down pass over W2 matrices of 7168 rows of DROWB bytes (env, default
 *   2112: 2048 codes and a scale line): 7 the driver's items of 128 rows, rows n + 32 r
 *   (four streams side by side in one range); 8 items of 512 rows, n + 128 r; 9 items of
 *   32 rows in each quarter of the matrix, n + 1792 r; 10 mode 7 two rows per call; 11
 *   two matrices at once, rows n and n + 64 of each (items of 128 rows of both); 12 one
 *   matrix, rows n and n + 64 of each half (n and n + 3584), items of 128 rows of each.
 * K in modes 1-5 and 7-12: 0 loads added up, 1 one vpdpbusd per line (x shared by the four rows),
 *   2 two (both planes), 3 two into one accumulator, K >= 4 two and K - 4 zero-idiom
 *   vpxord per line.
 * PF1: L1 prefetch distance (modes 2, 5: times four), PF2: L2 prefetch distance.
 *   gcc -O2 -march=native il.c -o il -lpthread */
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
#define ROWB 7168   /* int8 row of 7168 codes */
#define NX (ROWB/64)
static size_t TOT; static uint8_t *W; static int MODE, K = 2, PF1 = 1536, PF2 = 0;
static int8_t XB[2][ROWB] __attribute__((aligned(64)));
static volatile uint64_t SINK;
struct arg { int t; double dt; };
static pthread_barrier_t bar;
static long ITEMS; static long NEXT;
#define MROWS 2048
#define IROWS 32
static __attribute__((noinline)) uint64_t probe(const uint8_t *b, size_t n)
{
	size_t q = n / 4 / 64 * 64; const uint8_t *p[4] = { b, b + q, b + 2 * q, b + 3 * q };
	__m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
	for (size_t k = 0; k < q; k += 64) {
		_mm_prefetch((const char *)p[0] + k + 8192, _MM_HINT_T1);
		_mm_prefetch((const char *)p[1] + k + 8192, _MM_HINT_T1);
		_mm_prefetch((const char *)p[2] + k + 8192, _MM_HINT_T1);
		_mm_prefetch((const char *)p[3] + k + 8192, _MM_HINT_T1);
		s0 = _mm512_add_epi64(s0, _mm512_load_si512(p[0] + k));
		s1 = _mm512_add_epi64(s1, _mm512_load_si512(p[1] + k));
		s2 = _mm512_add_epi64(s2, _mm512_load_si512(p[2] + k));
		s3 = _mm512_add_epi64(s3, _mm512_load_si512(p[3] + k));
	}
	return _mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(s0, s1), _mm512_add_epi64(s2, s3)));
}
/* one quad of rows: row r's line i at base[r] + i * step (step 64: rows apart, far or
 * contiguous; step 256: interleaved by line) with block blk lines of one row in turn */
#define DOT(a, w, x) a = _mm512_dpbusd_epi32(a, w, x)
static inline __attribute__((always_inline)) void quadn(const uint8_t *const *base, long step, __m512i *acc, int mode, const int nx)
{
	for (int i = 0; i < nx; i++) {
		__m512i xa = _mm512_load_si512(XB[0] + i * 64), xb = _mm512_load_si512(XB[1] + i * 64);
		for (int r = 0; r < 4; r++) {
			const uint8_t *l = base[r] + (long)i * step;
			if (PF1) _mm_prefetch((const char *)l + (mode ? PF1 * 4 : PF1), _MM_HINT_T0);
			if (PF2) _mm_prefetch((const char *)l + PF2, _MM_HINT_T1);
			__m512i w = _mm512_load_si512(l);
			int c = r + 4 * (i & 1);
			if (K > 0) DOT(acc[c], w, xa);
			if (K == 2) DOT(acc[8 + c], w, xb);
			if (K == 3) DOT(acc[c], w, xb);
			if (K >= 4) { /* K - 2 independent filler ops per line (no load dependence) */
				DOT(acc[8 + c], w, xb);
				for (int f = 0; f < K - 4; f++)
					__asm__ volatile("vpxord %%zmm31, %%zmm31, %%zmm30" ::: "xmm30");
			}
			if (K <= 0) acc[c] = _mm512_add_epi32(acc[c], w);
		}
	}
}

static inline __m512i red16(__m512i a[4][4])
{
	__m512i t[8], u[4], v[2];
	for (int i = 0; i < 8; i++) {
		__m512i p = a[i / 2][(i % 2) * 2], q = a[i / 2][(i % 2) * 2 + 1];
		t[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(p, q), _mm512_unpackhi_epi32(p, q));
	}
	for (int i = 0; i < 4; i++)
		u[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(t[2 * i], t[2 * i + 1]), _mm512_unpackhi_epi64(t[2 * i], t[2 * i + 1]));
	for (int i = 0; i < 2; i++)
		v[i] = _mm512_add_epi32(_mm512_shuffle_i32x4(u[2 * i], u[2 * i + 1], 0x88), _mm512_shuffle_i32x4(u[2 * i], u[2 * i + 1], 0xdd));
	return _mm512_add_epi32(_mm512_shuffle_i32x4(v[0], v[1], 0x88), _mm512_shuffle_i32x4(v[0], v[1], 0xdd));
}
static inline __attribute__((always_inline)) void quad_k(const uint8_t *const *base, __m512i *tacc, const int L)
{
	const __m512i flip = _mm512_set1_epi8((char)0x80);
	for (int g = 0; g < NX / 2; g += 4) {
		__m512i acc[4][4];
		if (L >= 2)
			for (int r = 0; r < 4; r++)
				for (int i = 0; i < 8; i++)
					_mm_prefetch((const char *)base[r] + g * 128 + PF1 + i * 64, _MM_HINT_T0);
		for (int j = 0; j < 4; j++) {
			const int8_t *xp = XB[0] + (g + j) * 128, *xq = XB[1] + (g + j) * 128;
			for (int r = 0; r < 4; r++) {
				const uint8_t *p = base[r] + (g + j) * 128;
				if (L < 2) {
					_mm_prefetch((const char *)p + PF1, _MM_HINT_T0);
					_mm_prefetch((const char *)p + PF1 + 64, _MM_HINT_T0);
				}
				__m512i u0 = _mm512_loadu_si512(p), u1 = _mm512_loadu_si512(p + 64);
				if (L >= 3) { u0 = _mm512_xor_si512(u0, flip); u1 = _mm512_xor_si512(u1, flip); }
				if (L >= 4) {
					__m512i d = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), u0, _mm512_loadu_si512(xp)), u1, _mm512_loadu_si512(xp + 64));
					d = _mm512_slli_epi32(d, 7);
					acc[r][j] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(d, u0, _mm512_loadu_si512(xq)), u1, _mm512_loadu_si512(xq + 64));
				} else {
					int c = r + 4 * (j & 1);
					tacc[c] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(tacc[c], u0, _mm512_loadu_si512(xp)), u1, _mm512_loadu_si512(xp + 64));
					tacc[8 + c] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(tacc[8 + c], u0, _mm512_loadu_si512(xq)), u1, _mm512_loadu_si512(xq + 64));
				}
			}
		}
		if (L >= 4) {
			__m512i d = _mm512_sub_epi32(red16(acc), _mm512_set1_epi32(g));
			__m512i lo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(d)), hi = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(d, 1));
			if (L >= 5) {
				const __m512i m = _mm512_set1_epi64(40000 + g), sh = _mm512_set1_epi64(20), h = _mm512_set1_epi64(1 << 19);
				lo = _mm512_mul_epi32(lo, m); hi = _mm512_mul_epi32(hi, m);
				lo = _mm512_srav_epi64(_mm512_add_epi64(_mm512_add_epi64(lo, h), _mm512_srai_epi64(lo, 63)), sh);
				hi = _mm512_srav_epi64(_mm512_add_epi64(_mm512_add_epi64(hi, h), _mm512_srai_epi64(hi, 63)), sh);
			}
			tacc[0] = _mm512_add_epi64(tacc[0], lo);
			tacc[1] = _mm512_add_epi64(tacc[1], hi);
		}
	}
}
static inline __attribute__((always_inline)) void quad(const uint8_t *const *base, long step, __m512i *acc, int mode)
{
	quadn(base, step, acc, mode, NX);
}
static int DROWB = 2112; /* a W2 row: 2048 codes + 1 scale line */
static void *thr(void *v)
{
	struct arg *a = v; size_t half = TOT / 2; const uint8_t *b = W + a->t * half;
	size_t nrows = half / ROWB; /* quads: nrows / 4 */
	__m512i acc[16]; for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_si512();
	pthread_barrier_wait(&bar); double t0 = now(); uint64_t s = 0;
	if (MODE == 0) s = probe(b, nrows * ROWB);
	else if (MODE == 1) { /* four far-apart streams (rows n, n+q, n+2q, n+3q), each contiguous */
		size_t q = nrows / 4;
		for (size_t n = 0; n < q; n++) {
			const uint8_t *base[4]; for (int r = 0; r < 4; r++) base[r] = b + (n + r * q) * ROWB;
			quad(base, 64, acc, 0);
		}
	} else if (MODE == 2) { /* interleaved by line: quad n at b + n*4*ROWB, row r line i at +(4i+r)*64 */
		for (size_t n = 0; n + 4 <= nrows; n += 4) {
			const uint8_t *q0 = b + n * ROWB;
			const uint8_t *base[4] = { q0, q0 + 64, q0 + 128, q0 + 192 };
			quad(base, 256, acc, 1);
		}
	} else if (MODE == 3) { /* four adjacent rows n..n+3 */
		for (size_t n = 0; n + 4 <= nrows; n += 4) {
			const uint8_t *q0 = b + n * ROWB;
			const uint8_t *base[4] = { q0, q0 + ROWB, q0 + 2 * ROWB, q0 + 3 * ROWB };
			quad(base, 64, acc, 0);
		}
	}
	if (MODE == 4 || MODE == 6) { /* W1/W3 pairs of 2048-row matrices, items of 32 rows: A[n], B[n], A[n+16], B[n+16]; mode 6 the kernel's shape at level K */
		long it;
		while ((it = __atomic_fetch_add(&NEXT, 1, __ATOMIC_RELAXED)) < ITEMS) {
			long pair = it / (MROWS / IROWS), r0 = it % (MROWS / IROWS) * IROWS;
			const uint8_t *A = W + (size_t)pair * 2 * MROWS * ROWB, *B = A + (size_t)MROWS * ROWB;
			for (long n = r0; n < r0 + IROWS / 2; n++) {
				const uint8_t *base[4] = { A + n * ROWB, B + n * ROWB, A + (n + IROWS / 2) * ROWB, B + (n + IROWS / 2) * ROWB };
				switch (MODE == 4 ? 0 : K) {
				case 0: quad(base, 64, acc, 0); break;
				case 1: quad_k(base, acc, 1); break;
				case 2: quad_k(base, acc, 2); break;
				case 3: quad_k(base, acc, 3); break;
				case 4: quad_k(base, acc, 4); break;
				default: quad_k(base, acc, 5); break;
				}
			}
		}
	} else if (MODE == 5) { /* the same quads interleaved by line: item = 16 quads contiguous */
		long it;
		while ((it = __atomic_fetch_add(&NEXT, 1, __ATOMIC_RELAXED)) < ITEMS) {
			const uint8_t *I = W + (size_t)it * 2 * IROWS * ROWB;
			for (long n = 0; n < IROWS / 2; n++) {
				const uint8_t *q0 = I + n * 4 * ROWB;
				const uint8_t *base[4] = { q0, q0 + 64, q0 + 128, q0 + 192 };
				quad(base, 256, acc, 1);
			}
		}
	}
	if (MODE == 11) { /* two experts' W2 at once: rows n, n + 64 of matrices 2m and 2m + 1, items of 128 rows of each */
		long it, per = 7168 / 128;
		while ((it = __atomic_fetch_add(&NEXT, 1, __ATOMIC_RELAXED)) < ITEMS / per / 2 * per) {
			long mat = it / per * 2, r0 = it % per * 128;
			const uint8_t *A = W + (size_t)mat * 7168 * DROWB, *B = A + (size_t)7168 * DROWB;
			for (long n = r0; n < r0 + 64; n++) {
				const uint8_t *base[4] = { A + n * DROWB, B + n * DROWB, A + (n + 64) * DROWB, B + (n + 64) * DROWB };
				quadn(base, 64, acc, 0, DROWB / 64);
			}
		}
	}
	if (MODE == 12) { /* one W2: rows n, n + 64 of its two halves (n + 3584), items of 128 rows of each half */
		long it, per = 3584 / 128;
		while ((it = __atomic_fetch_add(&NEXT, 1, __ATOMIC_RELAXED)) < ITEMS / 2) {
			long mat = it / per, r0 = it % per * 128;
			const uint8_t *A = W + (size_t)mat * 7168 * DROWB, *B = A + (size_t)3584 * DROWB;
			for (long n = r0; n < r0 + 64; n++) {
				const uint8_t *base[4] = { A + n * DROWB, B + n * DROWB, A + (n + 64) * DROWB, B + (n + 64) * DROWB };
				quadn(base, 64, acc, 0, DROWB / 64);
			}
		}
	}
	if (MODE == 10) { /* mode 7's bytes and order, two rows per call (66 lines) */
		long it, per = 7168 / 128;
		while ((it = __atomic_fetch_add(&NEXT, 1, __ATOMIC_RELAXED)) < ITEMS) {
			long mat = it / per, r0 = it % per * 128;
			const uint8_t *A = W + (size_t)mat * 7168 * DROWB;
			for (long n = r0; n < r0 + 32; n += 2) {
				const uint8_t *base[4] = { A + n * DROWB, A + (n + 32) * DROWB, A + (n + 64) * DROWB, A + (n + 96) * DROWB };
				quadn(base, 64, acc, 0, 2 * DROWB / 64);
			}
		}
	}
	if (MODE == 9) { /* down pass, items of 128 rows as four runs of 32 rows a quarter of the matrix apart */
		long it, per = 7168 / 128;
		while ((it = __atomic_fetch_add(&NEXT, 1, __ATOMIC_RELAXED)) < ITEMS) {
			long mat = it / per, r0 = it % per * 32;
			const uint8_t *A = W + (size_t)mat * 7168 * DROWB;
			for (long n = r0; n < r0 + 32; n++) {
				const uint8_t *base[4] = { A + n * DROWB, A + (n + 1792) * DROWB, A + (n + 3584) * DROWB, A + (n + 5376) * DROWB };
				quadn(base, 64, acc, 0, DROWB / 64);
			}
		}
	}
	if (MODE == 7 || MODE == 8) { /* down pass: 7168-row matrices of 2112-byte rows, items of 128 (7) or 512 (8) rows, streams n + r * items/4 */
		long it, ir = MODE == 7 ? 128 : 512, per = 7168 / ir;
		while ((it = __atomic_fetch_add(&NEXT, 1, __ATOMIC_RELAXED)) < ITEMS) {
			long mat = it / per, r0 = it % per * ir, q = ir / 4;
			const uint8_t *A = W + (size_t)mat * 7168 * DROWB;
			for (long n = r0; n < r0 + q; n++) {
				const uint8_t *base[4] = { A + n * DROWB, A + (n + q) * DROWB, A + (n + 2 * q) * DROWB, A + (n + 3 * q) * DROWB };
				quadn(base, 64, acc, 0, DROWB / 64);
			}
		}
	}
	for (int i = 1; i < 16; i++) acc[0] = _mm512_add_epi32(acc[0], acc[i]);
	s += _mm512_reduce_add_epi32(acc[0]);
	SINK += s; a->dt = now() - t0; pthread_barrier_wait(&bar);
	return NULL;
}
static double run(int mode)
{
	pthread_t th[2]; struct arg a[2]; MODE = mode; NEXT = 0;
	ITEMS = (long)(TOT / ((size_t)2 * MROWS * ROWB)) * (MROWS / IROWS);
	if (mode >= 7)
		ITEMS = (long)(TOT / ((size_t)7168 * DROWB)) * (7168 / (mode == 8 ? 512 : 128));
	pthread_barrier_init(&bar, NULL, 2);
	for (int t = 0; t < 2; t++) { a[t].t = t; pthread_create(&th[t], NULL, thr, &a[t]); }
	for (int t = 0; t < 2; t++) pthread_join(th[t], NULL);
	pthread_barrier_destroy(&bar);
	double dt = a[0].dt > a[1].dt ? a[0].dt : a[1].dt;
	if (mode == 12)
		return (double)(ITEMS / 2) * 256 * DROWB / dt / 1e9;
	if (mode == 11)
		return (double)(ITEMS / 56 / 2 * 56) * 256 * DROWB / dt / 1e9;
	if (mode >= 7)
		return (double)ITEMS * (mode == 8 ? 512 : 128) * DROWB / dt / 1e9;
	if (mode >= 4)
		return (double)ITEMS * 2 * IROWS * ROWB / dt / 1e9;
	return (double)(TOT / 2 / ROWB / 4 * 4 * ROWB) * 2 / dt / 1e9;
}
int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 5; if (argc > 2) K = atoi(argv[2]);
	if (getenv("PF1"))
		PF1 = atoi(getenv("PF1"));
	if (getenv("PF2"))
		PF2 = atoi(getenv("PF2"));
	if (getenv("MB"))
		TOT = (size_t)atoi(getenv("MB")) << 20;
	else
		TOT = (size_t)448 << 20;
	W = mmap(NULL, TOT, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	madvise(W, TOT, MADV_HUGEPAGE);
	for (size_t i = 0; i < TOT; i++) W[i] = (uint8_t)(i * 131 + (i >> 12));
	for (int i = 0; i < ROWB; i++) { XB[0][i] = (int8_t)(i * 7); XB[1][i] = (int8_t)(i * 3); }
	if (getenv("DROWB"))
		DROWB = atoi(getenv("DROWB"));
	if (getenv("CFG")) { /* "MODE,K,PF1,PF2 ..." alternately, mode 0 the probe */
		int cm[16], ck[16], c1[16], c2[16], nc = 0; double best[16] = { 0 };
		char *c = strdup(getenv("CFG")), *tok = strtok(c, " ");
		for (; tok && nc < 16; tok = strtok(NULL, " "), nc++)
			sscanf(tok, "%d,%d,%d,%d", &cm[nc], &ck[nc], &c1[nc], &c2[nc]);
		for (int r = 0; r < rounds; r++) {
			for (int m = 0; m < nc; m++) { K = ck[m]; PF1 = c1[m]; PF2 = c2[m]; double g = run(cm[m]); if (g > best[m]) best[m] = g; printf("%.1f ", g); }
			printf("\n");
		}
		for (int m = 0; m < nc; m++) printf("[%d,%d,%d,%d] %.1f (%.3f)  ", cm[m], ck[m], c1[m], c2[m], best[m], best[m] / best[0]);
		printf("\n");
		return 0;
	}
	const char *nm[] = { "probe", "far4", "ilv4", "adj4", "drv-far", "drv-ilv" };
	double best[6] = { 0 };
	for (int r = 0; r < rounds; r++) {
		for (int m = 0; m < 6; m++) { double g = run(m); if (g > best[m]) best[m] = g; printf("%s %.1f  ", nm[m], g); }
		printf("\n");
	}
	printf("best: "); for (int m = 0; m < 6; m++) printf("%s %.1f (%.3f)  ", nm[m], best[m], best[m] / best[0]); printf("\n");
	return 0;
}
