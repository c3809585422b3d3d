/* isa_pairs.c: what one more instruction costs beside 8 independent vpdpbusd chains
 * (which alone are bound by vpdpbusd's latency, about 4.4 cycles per iteration), and
 * vpermi2b beside vpdpbusd. Same method as isa_mix.c.
 *   gcc -O2 -march=native isa_pairs.c -o isa_pairs */
#include <stdio.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
#define N 20000000L
static double ghz;
#define CLOB "xmm0","xmm1","xmm2","xmm3","xmm4","xmm5","xmm6","xmm7","xmm8","xmm9","xmm10","xmm11","xmm12","xmm13","xmm14","xmm15","xmm16","xmm17","xmm18","xmm19","xmm20","xmm21","xmm22","xmm23","k1","k2"
#define RUN(name,ASM) { double t0=now(); for(long i=0;i<N;i++){ __asm__ volatile(ASM ::: CLOB); } double t1=now(); printf("%-60s %.2f cycles/iter\n", name, (t1-t0)*ghz*1e9/N); }
int main(void){
  long x=0; double t0=now();
  for(long i=0;i<100000000L;i++){ __asm__ volatile("add $1,%0\n\tadd $1,%0\n\tadd $1,%0\n\tadd $1,%0":"+r"(x)); }
  ghz=4.0*100000000L/(now()-t0)/1e9; printf("clock ~ %.2f GHz\n",ghz);
  RUN("8 vpdpbusd",
   "vpdpbusd %%zmm20,%%zmm21,%%zmm0\n vpdpbusd %%zmm20,%%zmm21,%%zmm1\n vpdpbusd %%zmm20,%%zmm21,%%zmm2\n vpdpbusd %%zmm20,%%zmm21,%%zmm3\n vpdpbusd %%zmm20,%%zmm21,%%zmm4\n vpdpbusd %%zmm20,%%zmm21,%%zmm5\n vpdpbusd %%zmm20,%%zmm21,%%zmm6\n vpdpbusd %%zmm20,%%zmm21,%%zmm7\n")
  RUN("8 vpdpbusd + 8 vmovdqa64 zmm",
   "vpdpbusd %%zmm20,%%zmm21,%%zmm0\n vpdpbusd %%zmm20,%%zmm21,%%zmm1\n vpdpbusd %%zmm20,%%zmm21,%%zmm2\n vpdpbusd %%zmm20,%%zmm21,%%zmm3\n vpdpbusd %%zmm20,%%zmm21,%%zmm4\n vpdpbusd %%zmm20,%%zmm21,%%zmm5\n vpdpbusd %%zmm20,%%zmm21,%%zmm6\n vpdpbusd %%zmm20,%%zmm21,%%zmm7\n"
   "vmovdqa64 %%zmm20,%%zmm8\n vmovdqa64 %%zmm21,%%zmm9\n vmovdqa64 %%zmm20,%%zmm10\n vmovdqa64 %%zmm21,%%zmm11\n vmovdqa64 %%zmm20,%%zmm12\n vmovdqa64 %%zmm21,%%zmm13\n vmovdqa64 %%zmm20,%%zmm14\n vmovdqa64 %%zmm21,%%zmm15\n")
  RUN("8 vpdpbusd + 8 vpxord zero idiom",
   "vpdpbusd %%zmm20,%%zmm21,%%zmm0\n vpdpbusd %%zmm20,%%zmm21,%%zmm1\n vpdpbusd %%zmm20,%%zmm21,%%zmm2\n vpdpbusd %%zmm20,%%zmm21,%%zmm3\n vpdpbusd %%zmm20,%%zmm21,%%zmm4\n vpdpbusd %%zmm20,%%zmm21,%%zmm5\n vpdpbusd %%zmm20,%%zmm21,%%zmm6\n vpdpbusd %%zmm20,%%zmm21,%%zmm7\n"
   "vpxord %%zmm8,%%zmm8,%%zmm8\n vpxord %%zmm9,%%zmm9,%%zmm9\n vpxord %%zmm10,%%zmm10,%%zmm10\n vpxord %%zmm11,%%zmm11,%%zmm11\n vpxord %%zmm12,%%zmm12,%%zmm12\n vpxord %%zmm13,%%zmm13,%%zmm13\n vpxord %%zmm14,%%zmm14,%%zmm14\n vpxord %%zmm15,%%zmm15,%%zmm15\n")
  RUN("8 vpdpbusd + 8 vpsubb masked(k1)",
   "vpdpbusd %%zmm20,%%zmm21,%%zmm0\n vpdpbusd %%zmm20,%%zmm21,%%zmm1\n vpdpbusd %%zmm20,%%zmm21,%%zmm2\n vpdpbusd %%zmm20,%%zmm21,%%zmm3\n vpdpbusd %%zmm20,%%zmm21,%%zmm4\n vpdpbusd %%zmm20,%%zmm21,%%zmm5\n vpdpbusd %%zmm20,%%zmm21,%%zmm6\n vpdpbusd %%zmm20,%%zmm21,%%zmm7\n"
   "vpsubb %%zmm20,%%zmm21,%%zmm8%{%%k1%}\n vpsubb %%zmm20,%%zmm21,%%zmm9%{%%k1%}\n vpsubb %%zmm20,%%zmm21,%%zmm10%{%%k1%}\n vpsubb %%zmm20,%%zmm21,%%zmm11%{%%k1%}\n vpsubb %%zmm20,%%zmm21,%%zmm12%{%%k1%}\n vpsubb %%zmm20,%%zmm21,%%zmm13%{%%k1%}\n vpsubb %%zmm20,%%zmm21,%%zmm14%{%%k1%}\n vpsubb %%zmm20,%%zmm21,%%zmm15%{%%k1%}\n")
  RUN("8 vpdpbusd + 8 vpblendmb(k1)",
   "vpdpbusd %%zmm20,%%zmm21,%%zmm0\n vpdpbusd %%zmm20,%%zmm21,%%zmm1\n vpdpbusd %%zmm20,%%zmm21,%%zmm2\n vpdpbusd %%zmm20,%%zmm21,%%zmm3\n vpdpbusd %%zmm20,%%zmm21,%%zmm4\n vpdpbusd %%zmm20,%%zmm21,%%zmm5\n vpdpbusd %%zmm20,%%zmm21,%%zmm6\n vpdpbusd %%zmm20,%%zmm21,%%zmm7\n"
   "vpblendmb %%zmm20,%%zmm21,%%zmm8%{%%k1%}\n vpblendmb %%zmm20,%%zmm21,%%zmm9%{%%k1%}\n vpblendmb %%zmm20,%%zmm21,%%zmm10%{%%k1%}\n vpblendmb %%zmm20,%%zmm21,%%zmm11%{%%k1%}\n vpblendmb %%zmm20,%%zmm21,%%zmm12%{%%k1%}\n vpblendmb %%zmm20,%%zmm21,%%zmm13%{%%k1%}\n vpblendmb %%zmm20,%%zmm21,%%zmm14%{%%k1%}\n vpblendmb %%zmm20,%%zmm21,%%zmm15%{%%k1%}\n")
  RUN("8 vpdpbusd + 4 vpmovb2m",
   "vpdpbusd %%zmm20,%%zmm21,%%zmm0\n vpdpbusd %%zmm20,%%zmm21,%%zmm1\n vpdpbusd %%zmm20,%%zmm21,%%zmm2\n vpdpbusd %%zmm20,%%zmm21,%%zmm3\n vpdpbusd %%zmm20,%%zmm21,%%zmm4\n vpdpbusd %%zmm20,%%zmm21,%%zmm5\n vpdpbusd %%zmm20,%%zmm21,%%zmm6\n vpdpbusd %%zmm20,%%zmm21,%%zmm7\n"
   "vpmovb2m %%zmm20,%%k1\n vpmovb2m %%zmm21,%%k2\n vpmovb2m %%zmm22,%%k1\n vpmovb2m %%zmm23,%%k2\n")
  RUN("8 vpdpbusd + 4 vpslld",
   "vpdpbusd %%zmm20,%%zmm21,%%zmm0\n vpdpbusd %%zmm20,%%zmm21,%%zmm1\n vpdpbusd %%zmm20,%%zmm21,%%zmm2\n vpdpbusd %%zmm20,%%zmm21,%%zmm3\n vpdpbusd %%zmm20,%%zmm21,%%zmm4\n vpdpbusd %%zmm20,%%zmm21,%%zmm5\n vpdpbusd %%zmm20,%%zmm21,%%zmm6\n vpdpbusd %%zmm20,%%zmm21,%%zmm7\n"
   "vpslld $7,%%zmm20,%%zmm8\n vpslld $7,%%zmm21,%%zmm9\n vpslld $7,%%zmm22,%%zmm10\n vpslld $7,%%zmm23,%%zmm11\n")
  RUN("8 vpermi2b + 8 vpunpckldq",
   "vmovdqa64 %%zmm20,%%zmm0\n vpermi2b %%zmm22,%%zmm21,%%zmm0\n vmovdqa64 %%zmm20,%%zmm1\n vpermi2b %%zmm22,%%zmm21,%%zmm1\n vmovdqa64 %%zmm20,%%zmm2\n vpermi2b %%zmm22,%%zmm21,%%zmm2\n vmovdqa64 %%zmm20,%%zmm3\n vpermi2b %%zmm22,%%zmm21,%%zmm3\n"
   "vmovdqa64 %%zmm20,%%zmm4\n vpermi2b %%zmm22,%%zmm21,%%zmm4\n vmovdqa64 %%zmm20,%%zmm5\n vpermi2b %%zmm22,%%zmm21,%%zmm5\n vmovdqa64 %%zmm20,%%zmm6\n vpermi2b %%zmm22,%%zmm21,%%zmm6\n vmovdqa64 %%zmm20,%%zmm7\n vpermi2b %%zmm22,%%zmm21,%%zmm7\n"
   "vpunpckldq %%zmm20,%%zmm21,%%zmm8\n vpunpckldq %%zmm20,%%zmm21,%%zmm9\n vpunpckldq %%zmm20,%%zmm21,%%zmm10\n vpunpckldq %%zmm20,%%zmm21,%%zmm11\n vpunpckldq %%zmm20,%%zmm21,%%zmm12\n vpunpckldq %%zmm20,%%zmm21,%%zmm13\n vpunpckldq %%zmm20,%%zmm21,%%zmm14\n vpunpckldq %%zmm20,%%zmm21,%%zmm15\n")
  RUN("8 vpermi2b + 8 vpdpbusd + 8 vmov",
   "vmovdqa64 %%zmm20,%%zmm0\n vpermi2b %%zmm22,%%zmm21,%%zmm0\n vmovdqa64 %%zmm20,%%zmm1\n vpermi2b %%zmm22,%%zmm21,%%zmm1\n vmovdqa64 %%zmm20,%%zmm2\n vpermi2b %%zmm22,%%zmm21,%%zmm2\n vmovdqa64 %%zmm20,%%zmm3\n vpermi2b %%zmm22,%%zmm21,%%zmm3\n"
   "vmovdqa64 %%zmm20,%%zmm4\n vpermi2b %%zmm22,%%zmm21,%%zmm4\n vmovdqa64 %%zmm20,%%zmm5\n vpermi2b %%zmm22,%%zmm21,%%zmm5\n vmovdqa64 %%zmm20,%%zmm6\n vpermi2b %%zmm22,%%zmm21,%%zmm6\n vmovdqa64 %%zmm20,%%zmm7\n vpermi2b %%zmm22,%%zmm21,%%zmm7\n"
   "vpdpbusd %%zmm20,%%zmm21,%%zmm8\n vpdpbusd %%zmm20,%%zmm21,%%zmm9\n vpdpbusd %%zmm20,%%zmm21,%%zmm10\n vpdpbusd %%zmm20,%%zmm21,%%zmm11\n vpdpbusd %%zmm20,%%zmm21,%%zmm12\n vpdpbusd %%zmm20,%%zmm21,%%zmm13\n vpdpbusd %%zmm20,%%zmm21,%%zmm14\n vpdpbusd %%zmm20,%%zmm21,%%zmm15\n")
  printf("%ld\n",x);
}
