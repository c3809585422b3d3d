/* row_acc4.c: one core calling the AVX-512 variant's row_acc4 directly on four fp8 rows
 * of `in` columns (~256 KB of rows, in L2), checkpoint-like codes with their remainder
 * lists, interleaved rounds; not part of the build.
 *   per-token rate for 1..T tokens:
 *     gcc -O2 -Iruntime -Ihls row_acc4.c build/libhmoe.a -lcjson -lpcre2-8 -ldl -lm -ldrm -lpthread
 *     taskset -c 1 ./a.out 7168 2 4            (in, planes, T)
 *   one token, an older kernel file against this one in one process, paired (-DOLD):
 *     git show bb22387:runtime/hmoe_fxp_cpu_avx512.c > old.c
 *     gcc -c -O2 -D_GNU_SOURCE -Iruntime -Ihls -mavx2 -mfma -mf16c -mavx512f -mavx512bw \
 *         -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16 \
 *         -Dhmoe_fxp_simd_avx512=hmoe_fxp_simd_avx512_old old.c
 *     gcc -O2 -DOLD -Iruntime -Ihls row_acc4.c old.o build/libhmoe.a -lcjson ...
 *     taskset -c 1 ./a.out 7168 2 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>
#include "hmoe_fxp_cpu.h"
#include "hmoe_fxp_pack.h"
#include "hmoe_num.h"
static uint64_t s = 0x9e3779b97f4a7c15ull;
static uint64_t rn(void){s^=s<<13;s^=s>>7;s^=s<<17;return s;}
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static uint8_t gauss(void){double u1=((rn()>>11)+0.5)/9007199254740992.0,u2=((rn()>>11)+0.5)/9007199254740992.0;double v=sqrt(-2*log(u1))*cos(6.283185307179586*u2)*(448/4.2);return hmoe_f32_to_fp8_e4m3((float)(v>448?448:v<-448?-448:v));}
int main(int argc, char **argv)
{
	int in = atoi(argv[1]), planes = argc > 2 ? atoi(argv[2]) : 2, T = argc > 3 ? atoi(argv[3]) : 1, nolist = getenv("NOLISTS") != NULL;
	int groups = hmoe_fxp_groups(in), plane = groups * 128, R = (256 << 10) / in; /* ~256 KB of rows */
	size_t rb = (size_t)hmoe_fxp_row_lines(HMOE_FXP_FP8, in) * HMOE_FXP_LINE_BYTES, skip = (size_t)hmoe_fxp_scale_lines(in) * 64;
	uint8_t *lin = aligned_alloc(64, R * rb);
	int8_t *xq = calloc(T * planes * plane, 1); int32_t *xs = calloc(T * groups, 4), *xsum = calloc(T * planes * groups, 4), *xe = calloc(T * groups + 8, 4); uint32_t *xm = calloc(T * groups + 8, 4);
	uint16_t *ent = calloc((size_t)R * in, 2); struct hmoe_fxp_rowfix *fix = calloc(R, sizeof(*fix));
	const struct hmoe_fxp_simd *simd = hmoe_fxp_simd_best();
	R &= ~3;
	for (int r = 0; r < R; r++) {
		for (int g = 0; g < groups; g++) { int32_t sw = hmoe_fxp_scale_word(32768 + (uint32_t)(rn() & 32767), 40); memcpy(lin + r * rb + 4 * g, &sw, 4); }
		for (int k = 0; k < plane; k++) lin[r * rb + skip + k] = k < in ? gauss() : 0;
		fix[r].ent = ent + (size_t)r * in; fix[r].n = hmoe_fxp_fp8_fix_row(lin + r * rb, in, fix[r].ent);
	}
	for (int i = 0; i < T * planes * plane; i++) xq[i] = (int8_t)((int)(rn() % 255) - 127);
	for (int g = 0; g < T * groups; g++) { xs[g] = hmoe_fxp_scale_word(32768 + (uint32_t)(rn() & 32767), 28); xm[g] = hmoe_fxp_scale_m(xs[g]) & 0xff; xe[g] = hmoe_fxp_scale_e(xs[g]) - HMOE_FXP_F_ACC; }
#ifdef OLD
	extern const struct hmoe_fxp_simd hmoe_fxp_simd_avx512_old;
	const struct hmoe_fxp_simd *vs[2] = { &hmoe_fxp_simd_avx512_old, simd };
	double res[2][21];
	for (int rep = 0; rep < 21; rep++)
		for (int v = 0; v < 2; v++) {
			struct hmoe_fxp_xtile x = { .n_tokens = 1, .groups = groups, .xq = xq, .xs = xs, .xsum = xsum, .xm = xm, .xe = xe, .planes = planes };
			int64_t acc[16], sink = 0;
			double t0 = now();
			for (int it = 0; it < 20; it++)
				for (int r = 0; r < R; r += 4) {
					const uint8_t *rows[4] = { lin + r * rb, lin + (r + 1) * rb, lin + (r + 2) * rb, lin + (r + 3) * rb };
					if (vs[v]->row_acc4(rows, HMOE_FXP_FP8, in, &x, nolist ? NULL : fix + r, acc)) return 3;
					sink += acc[0];
				}
			res[v][rep] = 4.0 * rb * 20 * (R / 4) / (now() - t0) / 1e9 + (sink == 42);
		}
	double q[21];
	for (int a = 0; a < 21; a++) q[a] = res[1][a] / res[0][a];
	for (int v = 0; v < 3; v++) { double *w = v < 2 ? res[v] : q; for (int a = 0; a < 21; a++) for (int b = a + 1; b < 21; b++) if (w[b] < w[a]) { double z = w[a]; w[a] = w[b]; w[b] = z; } }
	printf("in %d P%d: old median %.2f new median %.2f GB/s, paired new/old %.3f\n", in, planes, res[0][10], res[1][10], q[10]);
#else
	double res[5][15]; int TT = T;
	for (int rep = 0; rep < 15; rep++)
		for (T = 1; T <= TT; T++) {
			struct hmoe_fxp_xtile x = { .n_tokens = T, .groups = groups, .xq = xq, .xs = xs, .xsum = xsum, .xm = xm, .xe = xe, .planes = planes };
			int64_t acc[16], sink = 0;
			double t0 = now();
			for (int it = 0; it < 40; it++)
				for (int r = 0; r < R; r += 4) {
					const uint8_t *rows[4] = { lin + r * rb, lin + (r + 1) * rb, lin + (r + 2) * rb, lin + (r + 3) * rb };
					if (simd->row_acc4(rows, HMOE_FXP_FP8, in, &x, nolist ? NULL : fix + r, acc)) return 3;
					sink += acc[0];
				}
			res[T][rep] = 4.0 * rb * T * 40 * (R / 4) / (now() - t0) / 1e9 + (sink == 42);
		}
	for (T = 1; T <= TT; T++) {
		double *v = res[T]; for (int a = 0; a < 15; a++) for (int b = a + 1; b < 15; b++) if (v[b] < v[a]) { double q = v[a]; v[a] = v[b]; v[b] = q; }
		printf("P%d T=%d per-token GB/s median %.2f best %.2f\n", planes, T, v[7], v[14]);
	}
#endif
	return 0;
}
