/* tile_ab.c: one layer call with every token routed to the same 8 experts (tiles of T
 * tokens) through an older AVX-512 kernel file and this tree's, alternately in one
 * process (same driver, same weights), best of 3 calls each per round, 8 rounds, paired
 * ratio old time / new time per round; not part of the build. From the repository root:
 *   git show 4d813ff:runtime/hmoe_fxp_cpu_avx512.c > /tmp/old.c
 *   gcc -c -O2 -D_GNU_SOURCE -Iruntime -Ihls -mavx2 -mfma -mf16c -mavx512f -mavx512bw \
 *       -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16 \
 *       -Dhmoe_fxp_simd_avx512=hmoe_fxp_simd_avx512_old /tmp/old.c -o /tmp/old.o
 *   gcc -O2 -Iruntime -Ihls tile_ab.c /tmp/old.o build/libhmoe.a -lcjson -lpcre2-8 -ldl \
 *       -lm -ldrm -lpthread -o tile_ab
 *   ./tile_ab fp8 THREADS T...
 * ROUNDS=N: N paired rounds instead of 8 (at most 200). HOT=1 (seventeenth session):
 * instead of layer calls, the one-token kernels' in-cache rate (hmoe_fxp_hot_rate: each
 * thread runs the first rows of expert 0's W1, W3 and W2 from its L2), MINT seconds
 * (default 0.2) per rate, paired ratio new rate / old rate per round.                */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>
#include "hmoe_fxp_cpu.h"
#include "hmoe_fxp_pack.h"
#include "hmoe_pool.h"
#include "hmoe_num.h"
#define DIM 7168
#define INTER 2048
#define NE 8
extern const struct hmoe_fxp_simd hmoe_fxp_simd_avx512_old;
static uint64_t rn(uint64_t *s){*s^=*s<<13;*s^=*s>>7;*s^=*s<<17;return *s;}
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
 int mode; if(hmoe_fxp_format_parse(argv[1],&mode)) return 2; int th=argc>2?atoi(argv[2]):2;
 int format=hmoe_fxp_mode_format(mode);
 size_t bytes=(size_t)hmoe_fxp_expert_lines(format,DIM,INTER)*HMOE_FXP_LINE_BYTES;
 uint64_t s=0x9e3779b97f4a7c15ull;
 static uint8_t tab[65536]; { static unsigned cnt[256]; long cum=0; int u=0; for(int i=0;i<(1<<20);i++){ double u1=((rn(&s)>>11)+0.5)/9007199254740992.0, u2=((rn(&s)>>11)+0.5)/9007199254740992.0; double v=sqrt(-2*log(u1))*cos(6.283185307179586*u2)*(448/4.2); cnt[hmoe_f32_to_fp8_e4m3((float)(v>448?448:v<-448?-448:v))]++;} for(int c=0;c<256;c++){cum+=cnt[c]; for(;u<(int)((cum<<16)>>20);u++) tab[u]=(uint8_t)c;} }
 const struct hmoe_fxp_line *packs[NE]; const struct hmoe_fxp_fp8_fix *fixes[NE];
 for(int e=0;e<NE;e++){ uint8_t *b=aligned_alloc(64,bytes);
  for(size_t k=0;k<bytes;k++) b[k]=tab[rn(&s)&0xffff];
  for(int lin=0;lin<3;lin++){int out=lin<2?INTER:DIM,in=lin<2?DIM:INTER; size_t row=(size_t)hmoe_fxp_row_lines(format,in)*HMOE_FXP_LINE_BYTES;
   uint8_t*base=b+(lin?(size_t)hmoe_fxp_linear_lines(format,INTER,DIM)*HMOE_FXP_LINE_BYTES*(lin==2?2:1):0);
   for(int n=0;n<out;n++)for(int g=0;g<hmoe_fxp_groups(in);g++){int32_t sw=hmoe_fxp_scale_word(32768+(uint32_t)(rn(&s)&32767),format==HMOE_FXP_FP8?40:28);memcpy(base+n*row+4*g,&sw,4);}}
  packs[e]=(const void*)b; fixes[e]= (format==HMOE_FXP_FP8 && !getenv("NOLISTS")) ? hmoe_fxp_fp8_fix_build(packs[e],DIM,INTER,0) : NULL; }
 struct hmoe_fxp_experts ex={.mode=mode,.dim=DIM,.inter=INTER,.n_experts=NE,.packs=packs,.fixes=fixes};
 struct hmoe_pool*pool; hmoe_pool_create(&pool,th); struct hmoe_fxp_ws *ws=NULL;
 float *x=malloc(sizeof(float)*16*DIM), *y=malloc(sizeof(float)*16*NE*DIM); int ids[16*NE];
 for(int i=0;i<16*DIM;i++) x[i]=(float)((int)(rn(&s)%2001)-1000)/1000.0f;
 for(int t=0;t<16;t++) for(int k=0;k<NE;k++) ids[t*NE+k]=k;
 int Ts[8]={1,2,3,4,6,8,12,16}, nT=8; if(argc>3){nT=0; for(int a=3;a<argc;a++) Ts[nT++]=atoi(argv[a]);}
 const struct hmoe_fxp_simd *v[2] = { &hmoe_fxp_simd_avx512_old, &hmoe_fxp_simd_avx512 };
 int NR=getenv("ROUNDS")?atoi(getenv("ROUNDS")):8; if(NR<2||NR>200) return 2;
 if(getenv("HOT")){ double r[200], mt=getenv("MINT")?atof(getenv("MINT")):0.2;
  for(int round=0;round<NR;round++){ double b[2];
   for(int k=0;k<2;k++){ int w = round % 2 ? 1 - k : k; if(hmoe_fxp_hot_rate(&ex,v[w],pool,0,mt,&b[w])) return 1; }
   r[round]=b[1]/b[0]; }
  for(int a=0;a<NR;a++)for(int b=a+1;b<NR;b++)if(r[b]<r[a]){double q=r[a];r[a]=r[b];r[b]=q;}
  printf("hot %s %d thr: new/old rate paired median %.3f (range %.3f-%.3f, %d rounds)\n",argv[1],th,(r[NR/2-1]+r[NR/2])/2,r[0],r[NR-1],NR);
  return 0; }
 printf("%s %d thr, old / new seconds per call, paired ratio per round:\n", argv[1], th);
 for(int ti=0;ti<nT;ti++){int T=Ts[ti]; double r[200];
  for(int round=0;round<NR;round++){ double best[2]={1e9,1e9};
   for(int k=0;k<2;k++){ int w = round % 2 ? 1 - k : k;
    for(int rep=0;rep<3;rep++){double t0=now(); if(hmoe_fxp_moe_run(&ex,v[w],pool,&ws,T,NE,x,ids,y)) return 1; double t=now()-t0; if(t<best[w])best[w]=t;}}
   r[round]=best[0]/best[1]; printf("  T=%d %.4f / %.4f = %.3f\n",T,best[0],best[1],r[round]); fflush(stdout);}
  for(int a=0;a<NR;a++)for(int b=a+1;b<NR;b++)if(r[b]<r[a]){double q=r[a];r[a]=r[b];r[b]=q;}
  printf("T=%d paired median %.3f (range %.3f-%.3f)\n",T,(r[NR/2-1]+r[NR/2])/2,r[0],r[NR-1]);}
 printf("\n"); return 0;}
