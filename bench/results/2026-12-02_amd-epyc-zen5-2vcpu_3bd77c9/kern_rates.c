/* kern_rates.c: the one-token four-row kernels (avx512_row_acc4: int8, int4, fp8 with
 * empty remainder lists) of this commit alone, one thread, on NR quads of rows (NR = 1: 4
 * rows, in L1 for IN = 2048 and for int4 at 7168; NR = 8: 32 rows, in L2) of IN columns
 * (7168: W1 / W3 rows, 2048: W2 rows), P activation planes (2: A16, 1: A8); cycles per
 * 64 bytes of codes at the clock a dependent chain of scalar adds measures, and GB/s per
 * core (direct). Random codes (bytes below 200), realistic scale words.
 *   FMT=int4|int8|fp8 P=2|1 IN=7168|2048 NR=1|8 ./kern_rates 0
 * avx512_h.c: runtime/hmoe_fxp_cpu_avx512.c with "int g_var;" after its includes (sed -e
 * 's/#include "hmoe_fxp_cpu.h"/&\nint g_var;/'), so that this file can include it and call
 * its static kernels; from the repository root, after make:
 *   gcc -std=gnu11 -O2 -D_GNU_SOURCE -pthread -Iruntime -Ihls -mavx2 -mfma -mf16c
 *       -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16 -mgfni
 *       -Wno-unknown-pragmas -IDIR DIR/kern_rates.c build/libhmoe.a -lcjson -lpcre2-8
 *       -ldl -ldrm -lm -lpthread -o kern_rates */
#include "avx512_h.c"
#include <stdio.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
 int IN = getenv("IN") ? atoi(getenv("IN")) : 7168, G = IN / 128;
 int P = getenv("P") ? atoi(getenv("P")) : 2;
 const char *fs = getenv("FMT") ? getenv("FMT") : "int4";
 int fmt = !strcmp(fs, "int8") ? HMOE_FXP_INT8 : !strcmp(fs, "fp8") ? HMOE_FXP_FP8 : HMOE_FXP_INT4;
 int NR = getenv("NR") ? atoi(getenv("NR")) : 4;  /* row quads cycled (NR*4 rows) */
 size_t skip = (size_t)hmoe_fxp_scale_lines(IN) * 64, cb = (size_t)hmoe_fxp_code_lines(fmt, IN) * 64, rb = skip + cb;
 uint8_t *mem = aligned_alloc(64, 4 * NR * rb + 64);
 uint64_t s = 88172645463325252ull;
 for (size_t i = 0; i < 4 * NR * rb; i++) { s ^= s << 13; s ^= s >> 7; s ^= s << 17; mem[i] = (uint8_t)(s % 200) ; }
 for (int r = 0; r < 4 * NR; r++) for (int g = 0; g < G; g++) { int32_t w = 35 * 65536 + 40000 + g; memcpy(mem + r * rb + 4 * g, &w, 4); }
 static int8_t xq[2 * 7168] __attribute__((aligned(64))); static uint32_t xm[64]; static int32_t xe[64], xs[64], xsum[128];
 for (int i = 0; i < P * IN; i++) { s ^= s << 13; s ^= s >> 7; s ^= s << 17; xq[i] = (int8_t)((int)(s % 255) - 127); if (P == 2 && i >= IN) xq[i] /= 2; }
 for (int p = 0; p < P; p++) for (int g = 0; g < G; g++) { int t = 0; for (int k = 0; k < 128; k++) t += xq[p * IN + g * 128 + k]; xsum[p * G + g] = t; }
 for (int g = 0; g < G; g++) { xm[g] = 200; xe[g] = -2; xs[g] = 20 * 65536 + 200; }
 struct hmoe_fxp_xtile x = { .n_tokens = 1, .groups = G, .xq = xq, .xs = xs, .xsum = xsum, .xm = xm, .xe = xe, .planes = P };
 static uint16_t ent[4][4] = {{0}}; struct hmoe_fxp_rowfix fix[4]; for (int r = 0; r < 4; r++) { fix[r].ent = ent[r]; fix[r].n = 0; }
 int64_t acc[4], ref[4];
 hmoe_fxp_plan(); fp8_planes();
 const uint8_t *rows[64][4]; for (int q = 0; q < NR; q++) for (int r = 0; r < 4; r++) rows[q][r] = mem + (q * 4 + r) * rb;
 int nv = argc - 1, vars[8]; for (int i = 0; i < nv; i++) vars[i] = atoi(argv[1 + i]);
 g_var = vars[0]; avx512_row_acc4(rows[0], fmt, IN, &x, fix, ref); printf("ref %lld %lld\n", (long long)ref[0], (long long)ref[3]);
 for (int i = 1; i < nv; i++) { g_var = vars[i]; avx512_row_acc4(rows[0], fmt, IN, &x, fix, acc); if (memcmp(acc, ref, sizeof acc)) printf("v%d differs\n", vars[i]); }
 long x0=0; double t0=now(); for(long i=0;i<100000000L;i++){ __asm__ volatile("add $1,%0\n\tadd $1,%0\n\tadd $1,%0\n\tadd $1,%0":"+r"(x0)); }
 double ghz=4.0*100000000L/(now()-t0)/1e9;
 double sum[8] = {0}; int R = 5, N = 40000 * 7168 / IN;
 for (int r = 0; r < R; r++) { double c[8];
  for (int mm = 0; mm < nv; mm++) { int m = (mm + r) % nv; g_var = vars[m]; double best = 1e9;
   for (int k = 0; k < 5; k++) { double t1 = now(); for (int n = 0; n < N; n++) avx512_row_acc4(rows[n % NR], fmt, IN, &x, fix, acc); double dt = now() - t1; if (dt < best) best = dt; }
   c[m] = best * ghz * 1e9 / N / (4.0 * cb / 64); }
  printf("%s P=%d IN=%d r%d cycles per 64 B:", fs, P, IN, r); for (int m = 0; m < nv; m++) { printf(" v%d %.3f", vars[m], c[m]); sum[m] += c[m]; } printf("\n"); }
 printf("mean:"); for (int m = 0; m < nv; m++) printf(" v%d %.3f (%.1f GB/s/core)", vars[m], sum[m] / R, 64 * ghz / (sum[m] / R)); printf("  (clock %.2f GHz)\n", ghz);
}
