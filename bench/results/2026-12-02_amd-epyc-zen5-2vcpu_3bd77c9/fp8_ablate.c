/* fp8_ablate.c: the one-token fp8 A16 four-row kernel (fp8_rows4_one_vpermi2b, by two
 * bytes with empty remainder lists) on four 7168-column rows in L1, one thread, with the
 * variants of fp8-variants.patch switched by g_var, in rounds with the order rotated:
 * cycles per 256 codes of a row. 0: as built (with the switches' tests in its loops);
 * 1: separate accumulators for the two planes (exact); 2: no sign flips of x; 3: no
 * fold of the four accumulators (xor); 4: no second lookup (u1 = the codes); 6: no terms
 * (the fold added as it is). 2, 3, 4 and 6 give wrong results (reported: "differs"); they
 * only say what each part costs. ./fp8_ablate 0 1 2 3 4 6
 * With avx512_h.c in place of avx512_v.c (kern_rates.c's) it times the kernel as built.
 * avx512_v.c: runtime/hmoe_fxp_cpu_avx512.c with fp8-variants.patch; build as
 * kern_rates.c (DIR/fp8_ablate.c, -o fp8_ablate). */
#include "avx512_v.c"
#include <stdio.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
 enum { IN = 7168, G = IN / 128 };
 int P = getenv("P") ? atoi(getenv("P")) : 2;
 size_t skip = (size_t)hmoe_fxp_scale_lines(IN) * 64, rb = skip + IN;
 uint8_t *mem = aligned_alloc(64, 4 * rb + 64*4);
 uint64_t s = 88172645463325252ull;
 for (size_t i = 0; i < 4 * rb; i++) { s ^= s << 13; s ^= s >> 7; s ^= s << 17; mem[i] = (uint8_t)(s % 200) ; }
 const uint8_t *rows[4]; for (int r = 0; r < 4; r++) rows[r] = mem + r * rb;
 /* scale words: valid m in [2^15,2^16), e moderate */
 for (int r = 0; r < 4; r++) for (int g = 0; g < G; g++) { int32_t w = 35 * 65536 + 40000 + g; memcpy(mem + r * rb + 4 * g, &w, 4); }
 static int8_t xq[2 * IN] __attribute__((aligned(64))); static uint32_t xm[64]; static int32_t xe[64], xs[64], xsum[128];
 for (int i = 0; i < 2 * IN; i++) { s ^= s << 13; s ^= s >> 7; s ^= s << 17; xq[i] = (int8_t)((int)(s % 255) - 127); }
 for (int g = 0; g < G; g++) { xm[g] = 200; xe[g] = -2; xs[g] = 20 * 65536 + 50000; }
 struct hmoe_fxp_xtile x = { .n_tokens = 1, .groups = G, .xq = xq, .xs = xs, .xsum = xsum, .xm = xm, .xe = xe, .planes = P };
 static uint16_t ent[4][4] = {{0}}; struct hmoe_fxp_rowfix fix[4]; for (int r = 0; r < 4; r++) { fix[r].ent = ent[r]; fix[r].n = 0; }
 int64_t acc[4], ref[4];
 hmoe_fxp_plan(); if (!fp8_planes()) return 3;
 int nv = argc - 1, vars[8]; for (int i = 0; i < nv; i++) vars[i] = atoi(argv[1 + i]);
 g_var = vars[0]; fp8_rows4_one_vpermi2b(rows, IN, &x, fix, ref); printf("ref %lld %lld %lld %lld\n", (long long)ref[0], (long long)ref[1], (long long)ref[2], (long long)ref[3]);
 for (int i = 1; i < nv; i++) { g_var = vars[i]; fp8_rows4_one_vpermi2b(rows, IN, &x, fix, acc); if (memcmp(acc, ref, sizeof acc)) printf("v%d differs\n", vars[i]); }
 long x0=0; double t0=now(); for(long i=0;i<100000000L;i++){ __asm__ volatile("add $1,%0\n\tadd $1,%0\n\tadd $1,%0\n\tadd $1,%0":"+r"(x0)); }
 double ghz=4.0*100000000L/(now()-t0)/1e9;
 double sum[8] = {0}; int R = 7, N = 20000;
 for (int r = 0; r < R; r++) { double c[8];
  for (int mm = 0; mm < nv; mm++) { int m = (mm + r) % nv; g_var = vars[m]; double best = 1e9;
   for (int k = 0; k < 5; k++) { double t1 = now(); for (int n = 0; n < N; n++) fp8_rows4_one_vpermi2b(rows, IN, &x, fix, acc); double dt = now() - t1; if (dt < best) best = dt; }
   c[m] = best * ghz * 1e9 / N / (4.0 * G / 2); }
  printf("P=%d r%d cycles per 256 codes:", P, r); for (int m = 0; m < nv; m++) { printf(" v%d %.2f", vars[m], c[m]); sum[m] += c[m]; } printf("\n"); }
 printf("mean:"); for (int m = 0; m < nv; m++) printf(" v%d %.2f", vars[m], sum[m] / R); printf("  (clock %.2f GHz)\n", ghz);
}
