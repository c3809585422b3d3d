/* Throughput of the 512-bit operations the one-token fp8 kernel is made of, on one core:
 * cycles per instruction with N independent chains (N = 16: throughput; N = 8 for the
 * vpdpbusd row also shows its 5-cycle latency). The clock is measured with a chain of
 * dependent vpaddd (1 cycle each). Build and run:
 *   gcc -O2 -mavx512f -mavx512bw -mavx512vnni -mavx512vbmi ports.c -o ports && ./ports */
#include <stdio.h>
#include <time.h>

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

#define CLOB "xmm0", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm10", \
	"xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm20", "k1"
#define R16(op) op("0") op("2") op("3") op("4") op("5") op("6") op("7") op("8") op("10") \
	op("11") op("12") op("13") op("14") op("15") op("16") op("17")
#define CHAIN(n) "vpaddd %%zmm1,%%zmm0,%%zmm0\n"
#define DP(n) "vpdpbusd %%zmm1,%%zmm9,%%zmm" n "\n"
#define PB(n) "vpermb %%zmm1,%%zmm9,%%zmm" n "\n"
#define T2B(n) "vmovdqa64 %%zmm1,%%zmm" n "\n vpermt2b %%zmm9,%%zmm18,%%zmm" n "\n"
#define MB(n) "vpmovb2m %%zmm" n ",%%k1\n"
#define TM(n) "vptestmb %%zmm" n ",%%zmm1,%%k1\n"
#define SL(n) "vpslld $7,%%zmm1,%%zmm" n "\n"
#define SUBM(n) "vpsubb %%zmm1,%%zmm9,%%zmm" n "%{%%k2%}\n"
#define ADD(n) "vpaddd %%zmm1,%%zmm9,%%zmm" n "\n"
#define UNP(n) "vpunpckldq %%zmm1,%%zmm9,%%zmm" n "\n"
/* vpaddd into a scratch register and a copy back: with move elimination the copy is free */
#define ADDCP(n) "vpaddd %%zmm1,%%zmm" n ",%%zmm20\n vmovdqa64 %%zmm20,%%zmm" n "\n"
#define DPPB(n) "vpdpbusd %%zmm1,%%zmm9,%%zmm" n "\n vpermb %%zmm1,%%zmm9,%%zmm20\n"

#define RUN(name, body, per) do {                                                       \
		double t0 = now();                                                      \
		for (long i = 0; i < N; i++)                                            \
			__asm__ volatile(R16(body) ::: CLOB);                           \
		printf("  %-9s %.2f", name, (now() - t0) / N / ns_per_cycle / (per));   \
	} while (0)

int main(void)
{
	const long N = 20000000;

	for (int rep = 0; rep < 3; rep++) {
		double t0 = now(), ns_per_cycle;

		for (long i = 0; i < N; i++)
			__asm__ volatile(R16(CHAIN) ::: "xmm0");
		ns_per_cycle = (now() - t0) / N / 16 * 1e9;
		ns_per_cycle *= 1e-9;
		printf("clock %.2f GHz, cycles per instruction:", 1e-9 / ns_per_cycle);
		RUN("vpdpbusd", DP, 16);
		RUN("vpermb", PB, 16);
		RUN("vpermt2b", T2B, 16);
		RUN("vpmovb2m", MB, 16);
		RUN("vptestmb", TM, 16);
		RUN("vpslld", SL, 16);
		RUN("vpsubb{k}", SUBM, 16);
		RUN("vpaddd", ADD, 16);
		RUN("vpunpckl", UNP, 16);
		RUN("dp+vpermb", DPPB, 32);
		RUN("add+copy", ADDCP, 16);
		printf("\n");
	}
	return 0;
}
