/* r4dh.c: the twentieth session's r4d.c (bench/results/..._146dcb2) with each thread's regions on
 * 2 MiB pages (MADV_HUGEPAGE; NOHUGE=1: MADV_NOHUGEPAGE) and ADJ=1: four adjacent rows per call
 * (n..n+3 of W1, then of W3) instead of the driver's far-apart rows. Built and run as r4d.c. */
/* r4d.c: row_acc4 (fp8 or int8, one token) streaming over T threads' own regions of rows
 * in the driver's up-pass order (items of 32 rows: W1 n, n + 16, W3 n, n + 16), from DRAM
 * (32768 rows per matrix per thread) or from L2 (HOT=1: 32 rows per matrix, repeated);
 * SYN=K: instead of the kernel, the same rows, order and L1 prefetch (PFD bytes ahead,
 * 3072) with each 64-byte line fed to K vpdpbusd; NOLIST=1: fp8 without remainder lists.
 *   gcc -O2 -Iruntime -Ihls r4d.c build/libhmoe.a -lcjson -lpcre2-8 -ldl -lm -ldrm \
 *       -lpthread -o /tmp/r4d
 *   /tmp/r4d THREADS fp8|int8 PLANES */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>
#include <sys/mman.h>
#include "hmoe_fxp_cpu.h"
#include "hmoe_fxp_pack.h"
#include "hmoe_num.h"
#include "hmoe_fxp.h"
#define IN 7168

#include <immintrin.h>
static int K=12, PFD=3072;
#define SYNK(KK) __attribute__((target("avx512f,avx512bw,avx512vnni"),noinline)) static int64_t syn4_##KK(const uint8_t *const *rows, const int8_t *x){ \
 __m512i a[8]; for(int i=0;i<8;i++) a[i]=_mm512_set1_epi32(i); size_t skip=256; \
 for(int g=0; g+8<=56; g+=8) for(int b=0;b<4;b++) for(int r=0;r<4;r++){ const uint8_t *p=rows[r]+skip+(size_t)(g+2*b)*128; \
  _Pragma("GCC unroll 4") for(int k=0;k<256;k+=64){ _mm_prefetch((const char*)p+PFD+k,_MM_HINT_T0); __m512i v=_mm512_load_si512(p+k); __m512i w=_mm512_load_si512(x+(g+2*b)*128+k); \
   _Pragma("GCC unroll 32") for(int j=0;j<KK;j++) a[j&7]=_mm512_dpbusd_epi32(a[j&7],v,w); } } \
 for(int i=1;i<8;i++) a[0]=_mm512_add_epi32(a[0],a[i]); return _mm512_reduce_add_epi32(a[0]); }
SYNK(4) SYNK(8) SYNK(12) SYNK(16) SYNK(24)
static int64_t syn4(const uint8_t *const *rows, const int8_t *x){ switch(K){case 4: return syn4_4(rows,x); case 8: return syn4_8(rows,x); case 12: return syn4_12(rows,x); case 16: return syn4_16(rows,x); default: return syn4_24(rows,x);} }
static uint64_t rn(uint64_t *s){*s^=*s<<13;*s^=*s>>7;*s^=*s<<17;return *s;}
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static int PF=1, SYN=0, ADJ=0; static int T, NR, P, FMT, HOT, REP, nolist; static size_t rb;
static uint8_t *reg[2][2]; static struct hmoe_fxp_rowfix *fx[2][2]; static struct hmoe_fxp_xtile xt;
static uint16_t *pool[2][2]; static size_t used[2][2];
static atomic_int arrive, gen; static double tt[2]; static int64_t sink[2];
static void barrier(void){ int g=atomic_load(&gen); if(atomic_fetch_add(&arrive,1)==T-1){atomic_store(&arrive,0);atomic_fetch_add(&gen,1);} else while(atomic_load(&gen)==g); }
static void *thr(void*a){ long id=(long)a; cpu_set_t s; CPU_ZERO(&s); CPU_SET(id,&s); pthread_setaffinity_np(pthread_self(),sizeof s,&s);
 const struct hmoe_fxp_simd *v=hmoe_fxp_simd_best(); int64_t acc[4];
 for(int r=0;r<5;r++){ barrier(); double t0=now();
  for(int rep=0;rep<REP;rep++) for(int it=0;it<NR;it+=32) for(int n=it;n<it+16;n++){
   const uint8_t *rp[4]={reg[id][0]+rb*n,reg[id][0]+rb*(n+16),reg[id][1]+rb*n,reg[id][1]+rb*(n+16)};
   struct hmoe_fxp_rowfix f4[4]={fx[id][0][n],fx[id][0][n+16],fx[id][1][n],fx[id][1][n+16]};
   if(ADJ){ int m=(n-it)>=8, b=it+((n-it)&7)*4; for(int q=0;q<4;q++){ rp[q]=reg[id][m]+rb*(b+q); f4[q]=fx[id][m][b+q]; } }
   if(SYN){ sink[id]+=syn4(rp,xt.xq); continue; }
   if(PF) for(int q=0;q<4;q++) __builtin_prefetch(f4[q].ent+32);
   if(v->row_acc4(rp,FMT,IN,&xt,nolist||FMT!=HMOE_FXP_FP8?NULL:f4,acc)){printf("declined\n");exit(1);} sink[id]+=acc[0]+acc[3]; }
  double t=now()-t0; barrier(); if(r==0||t<tt[id]) tt[id]=t; }
 return 0; }
int main(int argc,char**argv){
 T=atoi(argv[1]); FMT=strcmp(argv[2],"int8")?HMOE_FXP_FP8:HMOE_FXP_INT8; P=atoi(argv[3]); HOT=getenv("HOT")&&atoi(getenv("HOT")); nolist=getenv("NOLIST")!=NULL; ADJ=getenv("ADJ")!=NULL;
 NR=HOT?32:32768; if(getenv("PF")) PF=atoi(getenv("PF")); if(getenv("SYN")){SYN=1;K=atoi(getenv("SYN"));} if(getenv("PFD")) PFD=atoi(getenv("PFD")); REP=HOT?1024:1;
 int G=IN/128; rb=(size_t)hmoe_fxp_row_lines(FMT,IN)*64; uint64_t s=0x9e3779b97f4a7c15ull;
 static uint8_t tab[65536]; { static unsigned cnt[256]; long cum=0; int u=0; for(int i=0;i<(1<<20);i++){ double u1=((rn(&s)>>11)+0.5)/9007199254740992.0, u2=((rn(&s)>>11)+0.5)/9007199254740992.0; double vv=sqrt(-2*log(u1))*cos(6.283185307179586*u2)*(448/4.2); cnt[hmoe_f32_to_fp8_e4m3((float)(vv>448?448:vv<-448?-448:vv))]++;} for(int c=0;c<256;c++){cum+=cnt[c]; for(;u<(int)((cum<<16)>>20);u++) tab[u]=(uint8_t)c;} }
 for(int t=0;t<T;t++) for(int m=0;m<2;m++){ size_t hb=(rb*NR+(2u<<20)-1)&~(size_t)((2u<<20)-1); uint8_t *b0=aligned_alloc(2u<<20,hb); madvise(b0,hb,getenv("NOHUGE")?MADV_NOHUGEPAGE:MADV_HUGEPAGE); reg[t][m]=b0; fx[t][m]=malloc(sizeof(struct hmoe_fxp_rowfix)*NR);
  for(int r=0;r<NR;r++){ uint8_t*b=b0+rb*r; for(int g=0;g<G;g++){int32_t w=hmoe_fxp_scale_word(32768+(uint32_t)(rn(&s)&32767),40); memcpy(b+4*g,&w,4);} for(size_t k=hmoe_fxp_scale_lines(IN)*64;k<rb;k++) b[k]=FMT==HMOE_FXP_FP8?tab[rn(&s)&0xffff]:(uint8_t)(rn(&s)%255+1);
   if(FMT==HMOE_FXP_FP8){ static uint16_t tmp[IN]; int c=hmoe_fxp_fp8_fix_row(b,IN,tmp); if(!pool[t][m]) pool[t][m]=malloc(2*(size_t)NR*64); if(used[t][m]+c>(size_t)NR*64){printf("pool\n");exit(1);} memcpy(pool[t][m]+used[t][m],tmp,2*c); fx[t][m][r].ent=pool[t][m]+used[t][m]; fx[t][m][r].n=c; used[t][m]+=c;} } }
 float x[IN]; for(int k=0;k<IN;k++) x[k]=(float)((int)(rn(&s)%2001)-1000)/1000.0f*(k==5?30:1);
 int8_t *xq=aligned_alloc(64,2*IN); static int32_t xs[64], xsum[128]; static uint32_t xm[64]; static int32_t xe[64];
 hmoe_fxp_quant_x(x,IN,P,xq,xs);
 for(int g=0;g<G;g++){ xm[g]=hmoe_fxp_scale_m(xs[g])&0xff; xe[g]=hmoe_fxp_scale_e(xs[g])-HMOE_FXP_F_ACC; for(int p=0;p<P;p++){int t=0; for(int k=0;k<128;k++) t+=xq[p*IN+g*128+k]; xsum[p*G+g]=t;}}
 xt=(struct hmoe_fxp_xtile){.n_tokens=1,.groups=G,.xq=xq,.xs=xs,.xsum=xsum,.xm=xm,.xe=xe,.planes=P};
 pthread_t th[2]; for(long i=0;i<T;i++) pthread_create(&th[i],0,thr,(void*)i); for(int i=0;i<T;i++) pthread_join(th[i],0);
 double mx=tt[0]; for(int i=1;i<T;i++) if(tt[i]>mx) mx=tt[i];
 double bytes=(double)T*2*NR*rb*REP;
 printf("%s%s T=%d %s P=%d%s: %.1f GB/s (%.0f MB)\n",SYN?"syn ":"",HOT?"hot ":"dram",T,argv[2],P,nolist?" nolist":"",bytes/mx/1e9,bytes/1e6);
 return sink[0]==7; }
