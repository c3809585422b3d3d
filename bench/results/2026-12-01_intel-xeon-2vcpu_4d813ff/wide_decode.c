/* The AVX-512 lanes path's fp8 decode into 16-bit digits, one 7168-column row from L1/L2
 * on one core: lanes_fp8_wide (vpermt2w, AVX512BW) against lanes_fp8_wide_vbmi (vpermb
 * bytes and unpacks), interleaved, best of 5 per round; and whether both give the same
 * words. Includes the kernel file for its static functions. From the repository root:
 *   gcc -O2 -Iruntime -Ihls -mavx2 -mfma -mavx512f -mavx512bw -mavx512vl -mavx512dq \
 *     -mavx512vnni bench/results/2026-12-01_intel-xeon-2vcpu_4d813ff/wide_decode.c \
 *     build/libhmoe.a -lcjson -lpcre2-8 -ldl -lm -ldrm -lpthread -o wide_decode */
#include <stdio.h>
#include <time.h>
#include "../../../runtime/hmoe_fxp_cpu_avx512.c"

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void)
{
	enum { G = 56, N = G * HMOE_FXP_GROUP, REPS = 2000 };
	static uint8_t codes[N];
	static int16_t a[2][N], b[2][N];
	uint64_t s = 88172645463325252ull;

	for (int i = 0; i < N; i++) {
		s ^= s << 13, s ^= s >> 7, s ^= s << 17;
		codes[i] = (uint8_t)s;
	}
	if (!fp8_planes()) {
		puts("no VBMI");
		return 1;
	}
	lanes_fp8_wide(codes, G, a[0], a[1]);
	lanes_fp8_wide_vbmi(codes, G, b[0], b[1]);
	printf("same words: %s\n", memcmp(a, b, sizeof(a)) ? "NO" : "yes");
	for (int round = 0; round < 6; round++) {
		double best[2] = { 1e9, 1e9 };

		for (int v = 0; v < 2; v++)
			for (int k = 0; k < 5; k++) {
				double t0 = now_s();

				for (int r = 0; r < REPS; r++) {
					if (v)
						lanes_fp8_wide_vbmi(codes, G, b[0], b[1]);
					else
						lanes_fp8_wide(codes, G, a[0], a[1]);
					__asm__ volatile("" ::: "memory");
				}
				double t = (now_s() - t0) / REPS;

				best[v] = t < best[v] ? t : best[v];
			}
		printf("row of %d codes: vpermt2w %.0f ns, vpermb %.0f ns, %.2fx\n", N,
		       best[0] * 1e9, best[1] * 1e9, best[0] / best[1]);
	}
	return 0;
}
