/* ab.c: one layer call at DeepSeek-V3 dims with T tokens, each routed to the same 8 of NE
 * resident experts (so every tile holds T tokens), an older AVX-512 kernel file (compiled
 * renamed: hmoe_fxp_simd_avx512_old) against this tree's, alternately in one process;
 * asserts both give the same floats (NOCHECK=1 to time a mutated build) and prints the
 * best integer ops/s of each and the paired median of old time / new time. From the
 * repository root:
 *   git show 146dcb2:runtime/hmoe_fxp_cpu_avx512.c > /tmp/old.c
 *   gcc -c -O2 -D_GNU_SOURCE -Iruntime -Ihls -mavx2 -mfma -mf16c -mavx512f -mavx512bw \
 *       -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16 \
 *       -Dhmoe_fxp_simd_avx512=hmoe_fxp_simd_avx512_old /tmp/old.c -o /tmp/old.o
 *   gcc -O2 -Iruntime -Ihls ab.c /tmp/old.o build/libhmoe.a -lcjson -lpcre2-8 -ldl -lm \
 *       -ldrm -lpthread -o /tmp/ab
 *   /tmp/ab MODE TOKENS [EXPERTS ROUNDS THREADS]   (e.g. int8-a8 32 8 4) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "hmoe_fxp_cpu.h"
#include "hmoe_fxp_pack.h"
#include "hmoe_pool.h"
#define DIM 7168
#define INTER 2048
extern const struct hmoe_fxp_simd hmoe_fxp_simd_avx512_old;
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static uint64_t rn(uint64_t *s){*s^=*s<<13;*s^=*s>>7;*s^=*s<<17;return *s;}
int main(int argc,char**argv){
 int mode; if(argc<2||hmoe_fxp_format_parse(argv[1],&mode)) return 2;
 int NT=argc>2?atoi(argv[2]):32, NE=argc>3?atoi(argv[3]):8, rounds=argc>4?atoi(argv[4]):8;
 int format=hmoe_fxp_mode_format(mode); uint64_t s=88172645463325252ull;
 size_t bytes=(size_t)hmoe_fxp_expert_lines(format,DIM,INTER)*HMOE_FXP_LINE_BYTES;
 const struct hmoe_fxp_line **packs=malloc(sizeof(*packs)*NE);
 for(int e=0;e<NE;e++){ uint8_t *b=aligned_alloc(64,bytes); for(size_t i=0;i<bytes;i+=8){uint64_t v=rn(&s); memcpy(b+i,&v,8);}
  for(int lin=0;lin<3;lin++){int out=lin<2?INTER:DIM,in=lin<2?DIM:INTER; size_t row=(size_t)hmoe_fxp_row_lines(format,in)*HMOE_FXP_LINE_BYTES;
   uint8_t*base=b+(lin?(size_t)hmoe_fxp_linear_lines(format,INTER,DIM)*HMOE_FXP_LINE_BYTES*(lin==2?2:1):0);
   for(int n=0;n<out;n++){ for(int g=0;g<hmoe_fxp_groups(in);g++){int32_t sw=hmoe_fxp_scale_word(32768+(uint32_t)(rn(&s)&32767),30+(int)(rn(&s)%4));memcpy(base+n*row+4*g,&sw,4);}
    if(format==HMOE_FXP_FP8) for(size_t k=hmoe_fxp_scale_lines(in)*64;k<row;k++) if((base[n*row+k]&0x7f)==0x7f) base[n*row+k]^=1;
    if(format==HMOE_FXP_INT8) for(size_t k=hmoe_fxp_scale_lines(in)*64;k<row;k++) if(base[n*row+k]==0x80) base[n*row+k]=0x81; }}
  packs[e]=(const void*)b; }
 struct hmoe_fxp_experts ex={.mode=mode,.dim=DIM,.inter=INTER,.n_experts=NE,.packs=packs};
 struct hmoe_pool*pool; hmoe_pool_create(&pool,argc>5?atoi(argv[5]):2); struct hmoe_fxp_ws *ws[2]={NULL,NULL};
 float *x=malloc(sizeof(float)*DIM*NT), *y[2]={malloc(sizeof(float)*8*DIM*NT),malloc(sizeof(float)*8*DIM*NT)};
 for(int i=0;i<DIM*NT;i++) x[i]=(float)((int)(rn(&s)%2001)-1000)/700.0f;
 int *ids=malloc(sizeof(int)*8*NT);
 const struct hmoe_fxp_simd *v[2]={&hmoe_fxp_simd_avx512_old,&hmoe_fxp_simd_avx512};
 double best[2]={1e9,1e9}, r[64]; long ops=(long)8*NT*3*DIM*INTER*2;
 for(int round=0;round<rounds;round++){ double tt[2];
  for(int k=0;k<2;k++){ int w=round%2?1-k:k; double tb=1e9;
   for(int c=0;c<3;c++){ for(int t=0;t<NT;t++) for(int q=0;q<8;q++) ids[t*8+q]=(c*8+q)%NE;
    double t0=now(); if(hmoe_fxp_moe_run(&ex,v[w],pool,&ws[w],NT,8,x,ids,y[w])) return 1; double t=now()-t0; if(t<tb) tb=t; }
   tt[w]=tb; if(tb<best[w]) best[w]=tb; }
  if(memcmp(y[0],y[1],sizeof(float)*8*DIM*NT)){ static int once; if(!once++) printf("MISMATCH\n"); if(!getenv("NOCHECK")) return 1; }
  r[round]=tt[0]/tt[1]; }
 for(int a=0;a<rounds;a++)for(int c=a+1;c<rounds;c++)if(r[c]<r[a]){double t=r[a];r[a]=r[c];r[c]=t;}
 printf("%s T=%d: old %.0f Gops, new %.0f Gops; new/old paired median %.3f (%.3f-%.3f)\n",argv[1],NT,ops/best[0]/1e9,ops/best[1]/1e9,(r[(rounds-1)/2]+r[rounds/2])/2,r[0],r[rounds-1]);
 return 0; }
