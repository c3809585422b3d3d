/* isa_mix.c: throughput of AVX-512 instruction mixes on this core, one thread, in a
 * loop of inline asm on registers only (no memory): cycles per iteration at the clock
 * that a dependent chain of scalar adds measures (4 adds per iteration, 1 per cycle).
 * The 12-accumulator vpdpbusd line gives its throughput; the 8-accumulator lines in
 * isa_pairs.c are bound by its latency (about 4.4 cycles).
 *   gcc -O2 -march=native isa_mix.c -o isa_mix */
#include <stdio.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
#define N 20000000L
static double ghz;
#define CLOB "xmm0","xmm1","xmm2","xmm3","xmm4","xmm5","xmm6","xmm7","xmm8","xmm9","xmm10","xmm11","xmm12","xmm13","xmm14","xmm15","xmm16","xmm17","xmm18","xmm19","xmm20","xmm21","xmm22","xmm23"
#define RUN(name,ASM) { double t0=now(); for(long i=0;i<N;i++){ __asm__ volatile(ASM ::: CLOB); } double t1=now(); printf("%-60s %.2f cycles/iter\n", name, (t1-t0)*ghz*1e9/N); }
int main(void){
  long x=0; double t0=now();
  for(long i=0;i<100000000L;i++){ __asm__ volatile("add $1,%0\n\tadd $1,%0\n\tadd $1,%0\n\tadd $1,%0":"+r"(x)); }
  ghz=4.0*100000000L/(now()-t0)/1e9; printf("clock ~ %.2f GHz\n",ghz);
  __asm__ volatile("vpternlogd $0xff,%%zmm20,%%zmm20,%%zmm20\n vpabsb %%zmm20,%%zmm20\n vmovdqa64 %%zmm20,%%zmm21\n vmovdqa64 %%zmm20,%%zmm22\n vmovdqa64 %%zmm20,%%zmm23":::CLOB);
  RUN("12 vpdpbusd (12 acc)",
   "vpdpbusd %%zmm20,%%zmm21,%%zmm0\n vpdpbusd %%zmm20,%%zmm21,%%zmm1\n vpdpbusd %%zmm20,%%zmm21,%%zmm2\n vpdpbusd %%zmm20,%%zmm21,%%zmm3\n vpdpbusd %%zmm20,%%zmm21,%%zmm4\n vpdpbusd %%zmm20,%%zmm21,%%zmm5\n vpdpbusd %%zmm20,%%zmm21,%%zmm6\n vpdpbusd %%zmm20,%%zmm21,%%zmm7\n vpdpbusd %%zmm20,%%zmm21,%%zmm8\n vpdpbusd %%zmm20,%%zmm21,%%zmm9\n vpdpbusd %%zmm20,%%zmm21,%%zmm10\n vpdpbusd %%zmm20,%%zmm21,%%zmm11\n")
  RUN("12 vpaddd",
   "vpaddd %%zmm20,%%zmm0,%%zmm0\n vpaddd %%zmm20,%%zmm1,%%zmm1\n vpaddd %%zmm20,%%zmm2,%%zmm2\n vpaddd %%zmm20,%%zmm3,%%zmm3\n vpaddd %%zmm20,%%zmm4,%%zmm4\n vpaddd %%zmm20,%%zmm5,%%zmm5\n vpaddd %%zmm20,%%zmm6,%%zmm6\n vpaddd %%zmm20,%%zmm7,%%zmm7\n vpaddd %%zmm20,%%zmm8,%%zmm8\n vpaddd %%zmm20,%%zmm9,%%zmm9\n vpaddd %%zmm20,%%zmm10,%%zmm10\n vpaddd %%zmm20,%%zmm11,%%zmm11\n")
  RUN("8 vpermi2b (+8 mov)",
   "vmovdqa64 %%zmm20,%%zmm0\n vpermi2b %%zmm22,%%zmm21,%%zmm0\n vmovdqa64 %%zmm20,%%zmm1\n vpermi2b %%zmm22,%%zmm21,%%zmm1\n vmovdqa64 %%zmm20,%%zmm2\n vpermi2b %%zmm22,%%zmm21,%%zmm2\n vmovdqa64 %%zmm20,%%zmm3\n vpermi2b %%zmm22,%%zmm21,%%zmm3\n"
   "vmovdqa64 %%zmm20,%%zmm4\n vpermi2b %%zmm22,%%zmm21,%%zmm4\n vmovdqa64 %%zmm20,%%zmm5\n vpermi2b %%zmm22,%%zmm21,%%zmm5\n vmovdqa64 %%zmm20,%%zmm6\n vpermi2b %%zmm22,%%zmm21,%%zmm6\n vmovdqa64 %%zmm20,%%zmm7\n vpermi2b %%zmm22,%%zmm21,%%zmm7\n")
  RUN("8 vpermb",
   "vpermb %%zmm22,%%zmm20,%%zmm0\n vpermb %%zmm22,%%zmm20,%%zmm1\n vpermb %%zmm22,%%zmm20,%%zmm2\n vpermb %%zmm22,%%zmm20,%%zmm3\n vpermb %%zmm22,%%zmm20,%%zmm4\n vpermb %%zmm22,%%zmm20,%%zmm5\n vpermb %%zmm22,%%zmm20,%%zmm6\n vpermb %%zmm22,%%zmm20,%%zmm7\n")
  RUN("A16 step x2: 4 vpermi2b + 8 vpdpbusd + 4 vpsubb",
   "vmovdqa64 %%zmm20,%%zmm12\n vpermi2b %%zmm22,%%zmm21,%%zmm12\n vmovdqa64 %%zmm20,%%zmm13\n vpermi2b %%zmm22,%%zmm21,%%zmm13\n vpsubb %%zmm20,%%zmm23,%%zmm14\n vpsubb %%zmm21,%%zmm23,%%zmm15\n"
   "vpdpbusd %%zmm12,%%zmm14,%%zmm0\n vpdpbusd %%zmm13,%%zmm14,%%zmm1\n vpdpbusd %%zmm12,%%zmm15,%%zmm2\n vpdpbusd %%zmm13,%%zmm15,%%zmm3\n"
   "vmovdqa64 %%zmm21,%%zmm16\n vpermi2b %%zmm22,%%zmm20,%%zmm16\n vmovdqa64 %%zmm21,%%zmm17\n vpermi2b %%zmm22,%%zmm20,%%zmm17\n vpsubb %%zmm22,%%zmm23,%%zmm18\n vpsubb %%zmm21,%%zmm22,%%zmm19\n"
   "vpdpbusd %%zmm16,%%zmm18,%%zmm4\n vpdpbusd %%zmm17,%%zmm18,%%zmm5\n vpdpbusd %%zmm16,%%zmm19,%%zmm6\n vpdpbusd %%zmm17,%%zmm19,%%zmm7\n")
  RUN("8 vpdpbusd + 8 vpaddd",
   "vpdpbusd %%zmm20,%%zmm21,%%zmm0\n vpdpbusd %%zmm20,%%zmm21,%%zmm1\n vpdpbusd %%zmm20,%%zmm21,%%zmm2\n vpdpbusd %%zmm20,%%zmm21,%%zmm3\n vpdpbusd %%zmm20,%%zmm21,%%zmm4\n vpdpbusd %%zmm20,%%zmm21,%%zmm5\n vpdpbusd %%zmm20,%%zmm21,%%zmm6\n vpdpbusd %%zmm20,%%zmm21,%%zmm7\n"
   "vpaddd %%zmm20,%%zmm8,%%zmm8\n vpaddd %%zmm20,%%zmm9,%%zmm9\n vpaddd %%zmm20,%%zmm10,%%zmm10\n vpaddd %%zmm20,%%zmm11,%%zmm11\n vpaddd %%zmm20,%%zmm12,%%zmm12\n vpaddd %%zmm20,%%zmm13,%%zmm13\n vpaddd %%zmm20,%%zmm14,%%zmm14\n vpaddd %%zmm20,%%zmm15,%%zmm15\n")
  RUN("8 vpdpbusd + 8 vpermb",
   "vpdpbusd %%zmm20,%%zmm21,%%zmm0\n vpdpbusd %%zmm20,%%zmm21,%%zmm1\n vpdpbusd %%zmm20,%%zmm21,%%zmm2\n vpdpbusd %%zmm20,%%zmm21,%%zmm3\n vpdpbusd %%zmm20,%%zmm21,%%zmm4\n vpdpbusd %%zmm20,%%zmm21,%%zmm5\n vpdpbusd %%zmm20,%%zmm21,%%zmm6\n vpdpbusd %%zmm20,%%zmm21,%%zmm7\n"
   "vpermb %%zmm22,%%zmm20,%%zmm8\n vpermb %%zmm22,%%zmm20,%%zmm9\n vpermb %%zmm22,%%zmm20,%%zmm10\n vpermb %%zmm22,%%zmm20,%%zmm11\n vpermb %%zmm22,%%zmm20,%%zmm12\n vpermb %%zmm22,%%zmm20,%%zmm13\n vpermb %%zmm22,%%zmm20,%%zmm14\n vpermb %%zmm22,%%zmm20,%%zmm15\n")
  RUN("8 vpdpwssd",
   "vpdpwssd %%zmm20,%%zmm21,%%zmm0\n vpdpwssd %%zmm20,%%zmm21,%%zmm1\n vpdpwssd %%zmm20,%%zmm21,%%zmm2\n vpdpwssd %%zmm20,%%zmm21,%%zmm3\n vpdpwssd %%zmm20,%%zmm21,%%zmm4\n vpdpwssd %%zmm20,%%zmm21,%%zmm5\n vpdpwssd %%zmm20,%%zmm21,%%zmm6\n vpdpwssd %%zmm20,%%zmm21,%%zmm7\n")
  RUN("8 vpmaddwd",
   "vpmaddwd %%zmm20,%%zmm21,%%zmm0\n vpmaddwd %%zmm20,%%zmm21,%%zmm1\n vpmaddwd %%zmm20,%%zmm21,%%zmm2\n vpmaddwd %%zmm20,%%zmm21,%%zmm3\n vpmaddwd %%zmm20,%%zmm21,%%zmm4\n vpmaddwd %%zmm20,%%zmm21,%%zmm5\n vpmaddwd %%zmm20,%%zmm21,%%zmm6\n vpmaddwd %%zmm20,%%zmm21,%%zmm7\n")
  RUN("8 vdpbf16ps",
   "vdpbf16ps %%zmm20,%%zmm21,%%zmm0\n vdpbf16ps %%zmm20,%%zmm21,%%zmm1\n vdpbf16ps %%zmm20,%%zmm21,%%zmm2\n vdpbf16ps %%zmm20,%%zmm21,%%zmm3\n vdpbf16ps %%zmm20,%%zmm21,%%zmm4\n vdpbf16ps %%zmm20,%%zmm21,%%zmm5\n vdpbf16ps %%zmm20,%%zmm21,%%zmm6\n vdpbf16ps %%zmm20,%%zmm21,%%zmm7\n")
  RUN("8 vfmadd231ps",
   "vfmadd231ps %%zmm20,%%zmm21,%%zmm0\n vfmadd231ps %%zmm20,%%zmm21,%%zmm1\n vfmadd231ps %%zmm20,%%zmm21,%%zmm2\n vfmadd231ps %%zmm20,%%zmm21,%%zmm3\n vfmadd231ps %%zmm20,%%zmm21,%%zmm4\n vfmadd231ps %%zmm20,%%zmm21,%%zmm5\n vfmadd231ps %%zmm20,%%zmm21,%%zmm6\n vfmadd231ps %%zmm20,%%zmm21,%%zmm7\n")
  RUN("8 vpmaddubsw",
   "vpmaddubsw %%zmm20,%%zmm21,%%zmm0\n vpmaddubsw %%zmm20,%%zmm21,%%zmm1\n vpmaddubsw %%zmm20,%%zmm21,%%zmm2\n vpmaddubsw %%zmm20,%%zmm21,%%zmm3\n vpmaddubsw %%zmm20,%%zmm21,%%zmm4\n vpmaddubsw %%zmm20,%%zmm21,%%zmm5\n vpmaddubsw %%zmm20,%%zmm21,%%zmm6\n vpmaddubsw %%zmm20,%%zmm21,%%zmm7\n")
  printf("%ld\n",x);
}
