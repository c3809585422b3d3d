/* lat.c: latencies of dependent chains (mask producers into masked ops, lookups,
 * vpdpbusd), in cycles of a scalar add chain. gcc -O2 -mavx512f -mavx512bw -mavx512vnni
 * -mavx512vbmi lat.c (the last case, a pointer chase, does not end: stop it). */
#include <stdio.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static char buf[4096] __attribute__((aligned(64)));
#define N 2000000L
#define R4(x) x x x x
#define LAT(name, body, per) do{ double t=now(); for(long i=0;i<N;i++){ __asm__ volatile(R4(body) :: "r"(buf) : "xmm0","xmm1","memory"); } t=(now()-t)/N/4*1e9; printf("%-40s %.2f cyc\n", name, t/cyc); fflush(stdout); }while(0)
int main(void){ double cyc; { double t=now(); for(long i=0;i<N;i++){ __asm__ volatile("add $1,%%rax\n\tadd $1,%%rax\n\tadd $1,%%rax\n\tadd $1,%%rax\n\t" ::: "rax"); } cyc=(now()-t)/N*1e9/4; }
 LAT("movb2m + masked vpaddb", "vpmovb2m %%zmm0,%%k1\n\tvpaddb %%zmm1,%%zmm1,%%zmm0%{%%k1%}\n\t", 1);
 LAT("vpaddb", "vpaddb %%zmm1,%%zmm0,%%zmm0\n\t", 1);
 LAT("vptestmb + masked vpaddb", "vptestmb %%zmm1,%%zmm0,%%k1\n\tvpaddb %%zmm1,%%zmm1,%%zmm0%{%%k1%}\n\t", 1);
 LAT("vpermi2b (idx chain)", "vpermi2b %%zmm1,%%zmm1,%%zmm0\n\t", 1);
 LAT("vpermb (idx chain)", "vpermb %%zmm1,%%zmm0,%%zmm0\n\t", 1);
 LAT("vpdpbusd acc", "vpdpbusd %%zmm1,%%zmm1,%%zmm0\n\t", 1);
 LAT("vpdpbusd via u operand", "vpdpbusd %%zmm1,%%zmm0,%%zmm1\n\tvmovdqa64 %%zmm1,%%zmm0\n\t", 1);
 LAT("load zmm (pointer chase via vmovq)", "vmovdqu64 (%0),%%zmm0\n\tvmovq %%xmm0,%%rax\n\tadd %%rax,%0\n\t", 1);
 LAT("vpunpckldq", "vpunpckldq %%zmm1,%%zmm0,%%zmm0\n\t", 1);
 LAT("vpslld", "vpslld $1,%%zmm0,%%zmm0\n\t", 1);
 LAT("vpmuldq", "vpmuldq %%zmm1,%%zmm0,%%zmm0\n\t", 1);
 LAT("vshufi32x4", "vshufi32x4 $0x88,%%zmm1,%%zmm0,%%zmm0\n\t", 1);
 LAT("vpermd", "vpermd %%zmm0,%%zmm1,%%zmm0\n\t", 1);
 LAT("vmovq x->r + vmovq r->x", "vmovq %%xmm0,%%rax\n\tvmovq %%rax,%%xmm0\n\t", 1);
 return 0; }
