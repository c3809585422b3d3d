/* r4.c: row_acc4 (fp8, one token) on NR rows of 7168 checkpoint-like fp8 codes, four at a
 * time cycling (NR = 4: 28 KiB, from L1; 64: 448 KiB, from L2), one thread, an older
 * AVX-512 kernel file ("old", compiled renamed) against this tree's ("new") alternately
 * in one process, each 0.25 s per round; checks that both give the same accumulators
 * (NOCHECK=1 to time a mutated build), prints the best ns per call of each, cycles per
 * 64 code bytes at CYC GHz (default 3.2) and the paired median of old time / new time.
 * NOLIST=1: without remainder lists (the three-digit kernel). From the repository root:
 *   git show 6796f85:runtime/hmoe_fxp_cpu_avx512.c > /tmp/old.c   (then rename in it
 *     hmoe_fxp_prefetch() -> hmoe_fxp_plan(), struct hmoe_fxp_prefetch -> hmoe_fxp_plan)
 *   gcc -c -O2 -D_GNU_SOURCE -Iruntime -Ihls -mavx2 -mfma -mf16c -mavx512f -mavx512bw \
 *       -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16 \
 *       -Dhmoe_fxp_simd_avx512=hmoe_fxp_simd_avx512_old /tmp/old.c -o /tmp/old.o
 *   gcc -O2 -Iruntime -Ihls r4.c /tmp/old.o build/libhmoe.a -lcjson -lpcre2-8 -ldl -lm \
 *       -ldrm -lpthread -o /tmp/r4
 *   /tmp/r4 PLANES NR ROUNDS */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>
#include "hmoe_fxp_cpu.h"
#include "hmoe_fxp_pack.h"
#include "hmoe_num.h"
#include "hmoe_fxp.h"
#define IN 7168
extern const struct hmoe_fxp_simd hmoe_fxp_simd_avx512_old;
static uint64_t rn(uint64_t *s){*s^=*s<<13;*s^=*s>>7;*s^=*s<<17;return *s;}
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
 int P=argc>1?atoi(argv[1]):2, NR=argc>2?atoi(argv[2]):4, rounds=argc>3?atoi(argv[3]):8; int nolist=getenv("NOLIST")!=NULL;
 int G=IN/128; size_t rb=(size_t)hmoe_fxp_row_lines(HMOE_FXP_FP8,IN)*64;
 uint64_t s=0x9e3779b97f4a7c15ull;
 static uint8_t tab[65536]; { static unsigned cnt[256]; long cum=0; int u=0; for(int i=0;i<(1<<20);i++){ double u1=((rn(&s)>>11)+0.5)/9007199254740992.0, u2=((rn(&s)>>11)+0.5)/9007199254740992.0; double v=sqrt(-2*log(u1))*cos(6.283185307179586*u2)*(448/4.2); cnt[hmoe_f32_to_fp8_e4m3((float)(v>448?448:v<-448?-448:v))]++;} for(int c=0;c<256;c++){cum+=cnt[c]; for(;u<(int)((cum<<16)>>20);u++) tab[u]=(uint8_t)c;} }
 uint8_t *rows=aligned_alloc(64,rb*NR); uint16_t *ent=malloc(2*IN*(size_t)NR); struct hmoe_fxp_rowfix *fx=malloc(sizeof(*fx)*NR);
 for(int r=0;r<NR;r++){ uint8_t*b=rows+rb*r; for(int g=0;g<G;g++){int32_t w=hmoe_fxp_scale_word(32768+(uint32_t)(rn(&s)&32767),40); memcpy(b+4*g,&w,4);} for(size_t k=hmoe_fxp_scale_lines(IN)*64;k<rb;k++) b[k]=tab[rn(&s)&0xffff];
   fx[r].ent=ent+(size_t)IN*r; fx[r].n=hmoe_fxp_fp8_fix_row(b,IN,(uint16_t*)fx[r].ent); }
 float x[IN]; for(int k=0;k<IN;k++) x[k]=(float)((int)(rn(&s)%2001)-1000)/1000.0f*(k==5?30:1);
 int8_t *xq=aligned_alloc(64,2*IN); int32_t xs[64], xsum[128]; uint32_t xm[64]; int32_t xe[64];
 hmoe_fxp_quant_x(x,IN,P,xq,xs);
 for(int g=0;g<G;g++){ xm[g]=hmoe_fxp_scale_m(xs[g])&0xff; xe[g]=hmoe_fxp_scale_e(xs[g])-HMOE_FXP_F_ACC; for(int p=0;p<P;p++){int t=0; for(int k=0;k<128;k++) t+=xq[p*IN+g*128+k]; xsum[p*G+g]=t;}}
 struct hmoe_fxp_xtile xt={.n_tokens=1,.groups=G,.xq=xq,.xs=xs,.xsum=xsum,.xm=xm,.xe=xe,.planes=P};
 const struct hmoe_fxp_simd *v[2]={&hmoe_fxp_simd_avx512_old,&hmoe_fxp_simd_avx512};
 int64_t acc[2][4]; double best[2]={1e9,1e9}, r[64];
 for(int round=0;round<rounds;round++){ double tt[2];
  for(int k=0;k<2;k++){ int w=round%2?1-k:k; double t0=now(); long calls=0;
   do { for(int i=0;i+4<=NR;i+=4){ const uint8_t *rp[4]={rows+rb*i,rows+rb*(i+1),rows+rb*(i+2),rows+rb*(i+3)};
      if(v[w]->row_acc4(rp,HMOE_FXP_FP8,IN,&xt,nolist?NULL:fx+i,acc[w])) { printf("declined\n"); return 1;} calls++; } } while(now()-t0<0.25);
   tt[w]=(now()-t0)/calls; if(tt[w]<best[w]) best[w]=tt[w]; }
  if(memcmp(acc[0],acc[1],sizeof acc[0])) { static int once; if(!once++) printf("MISMATCH\n"); if(!getenv("NOCHECK")) return 1; }
  r[round]=tt[0]/tt[1]; }
 for(int a=0;a<rounds;a++)for(int c=a+1;c<rounds;c++)if(r[c]<r[a]){double t=r[a];r[a]=r[c];r[c]=t;}
 double ghz=getenv("CYC")?atof(getenv("CYC")):3.2;
 printf("P=%d NR=%d%s: old %.0f ns (%.2f cyc/64B) new %.0f ns (%.2f cyc/64B); new speed/old paired median %.3f (%.3f-%.3f)\n",P,NR,nolist?" nolist":"",best[0]*1e9,best[0]*ghz*1e9/(4*IN/64.),best[1]*1e9,best[1]*ghz*1e9/(4*IN/64.),(r[(rounds-1)/2]+r[rounds/2])/2,r[0],r[rounds-1]);
 return 0;}
