/* st.c: synthetic read patterns against the bench probe's, 2 threads, 1 GiB on 2 MiB
 * pages, in one process; each config alternates with the probe's shape in every round.
 * An item = S = 4 streams (S = 0: below) of L bytes each, read a turn of T lines of each stream in turn; the
 * streams of an item are L apart (near) or in S regions of the buffer (far); items come
 * from an atomic counter. Prefetch: P=0 none, P=1 T0 D bytes ahead, P=2 T1 D bytes ahead.
 * K: vector ops per line (0: vpaddq; 2: two vpdpbusd against a shared x).
 *   CFG="S,L,T,FAR,P,D,K ..." ./st ROUNDS     (the probe: 4,2097152,1,0,2,8192,0)
 * S=0: bench_read_sum_avx512 (host/bench_read_avx512.c) over items of L bytes.
 * SMALL=1 in the environment: the buffer on 4 KiB pages (MADV_NOHUGEPAGE).
 *   gcc -O2 -march=native st.c build/obj/host/bench_read_avx512.o build/libhmoe.a
 *       -lcjson -lpcre2-8 -ldl -ldrm -lm -lpthread -o st  (from the repository root) */
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
struct cfg { int S; long L; int T, FAR, P, D, K; };
static struct cfg C; static uint8_t *W; static size_t TOT = (size_t)1 << 30;
static long NEXT, ITEMS; static pthread_barrier_t bar; static volatile uint64_t SINK;
static int8_t X[2][64] __attribute__((aligned(64)));
uint64_t bench_read_sum_avx512(const uint64_t *buf, size_t n_words);
static inline __attribute__((always_inline)) void item(const uint8_t *const *b, long L, const int T, const int P, int D, const int K, __m512i *acc, __m512i xa, __m512i xb)
{
 for(long o=0;o<L;o+=64L*T){
#pragma GCC unroll 4
  for(int k=0;k<4;k++){
#pragma GCC unroll 4
   for(int t=0;t<T;t++){ const uint8_t *p=b[k]+o+64*t;
     if(P==1) _mm_prefetch((const char*)p+D,_MM_HINT_T0); else if(P==2) _mm_prefetch((const char*)p+D,_MM_HINT_T1);
     __m512i w=_mm512_load_si512(p); int c=(k*T+t)&7;
     if(K==0) acc[c]=_mm512_add_epi64(acc[c],w);
     else { acc[c]=_mm512_dpbusd_epi32(acc[c],w,xa); acc[8+c]=_mm512_dpbusd_epi32(acc[8+c],w,xb); } } } }
}
static void *thr(void *v){
 (void)v; __m512i acc[16]; for(int i=0;i<16;i++) acc[i]=_mm512_setzero_si512();
 __m512i xa=_mm512_load_si512(X[0]), xb=_mm512_load_si512(X[1]);
 pthread_barrier_wait(&bar);
 long it; size_t region=C.S?TOT/C.S:0; struct cfg c=C;
 while((it=__atomic_fetch_add(&NEXT,1,__ATOMIC_RELAXED))<ITEMS){
  if(c.S==0){ SINK+=bench_read_sum_avx512((const uint64_t*)(W+(size_t)it*c.L),c.L/8); continue; }
  const uint8_t *b[4];
  for(int k=0;k<4;k++) b[k]= c.FAR ? W+k*region+(size_t)it*c.L : W+((size_t)it*4+k)*c.L;
  int sel=(c.T==2)*6+c.K/2*3+c.P;
  switch(sel){
  case 0: item(b,c.L,1,0,c.D,0,acc,xa,xb); break;
  case 1: item(b,c.L,1,1,c.D,0,acc,xa,xb); break;
  case 2: item(b,c.L,1,2,c.D,0,acc,xa,xb); break;
  case 3: item(b,c.L,1,0,c.D,2,acc,xa,xb); break;
  case 4: item(b,c.L,1,1,c.D,2,acc,xa,xb); break;
  case 5: item(b,c.L,1,2,c.D,2,acc,xa,xb); break;
  case 6: item(b,c.L,2,0,c.D,0,acc,xa,xb); break;
  case 7: item(b,c.L,2,1,c.D,0,acc,xa,xb); break;
  case 8: item(b,c.L,2,2,c.D,0,acc,xa,xb); break;
  case 9: item(b,c.L,2,0,c.D,2,acc,xa,xb); break;
  case 10: item(b,c.L,2,1,c.D,2,acc,xa,xb); break;
  default: item(b,c.L,2,2,c.D,2,acc,xa,xb); break;
  }
 }
 __m512i s=acc[0]; for(int i=1;i<16;i++) s=_mm512_xor_si512(s,acc[i]); SINK+=_mm512_reduce_add_epi64(s);
 return NULL; }
static double run(struct cfg c){
 C=c; size_t per=(size_t)(c.S?c.S:1)*c.L; ITEMS=(long)(TOT/per); NEXT=0;
 pthread_t th[2]; pthread_barrier_init(&bar,NULL,3);
 for(int i=0;i<2;i++) pthread_create(&th[i],NULL,thr,NULL);
 double t0=now(); pthread_barrier_wait(&bar);
 for(int i=0;i<2;i++) pthread_join(th[i],NULL);
 double dt=now()-t0; pthread_barrier_destroy(&bar);
 return (double)ITEMS*per/dt/1e9; }
int main(int argc,char**argv){
 int rounds=argc>1?atoi(argv[1]):4; struct cfg cs[16]; int n=0;
 const char *e=getenv("CFG"); if(!e) return 2;
 for(const char *p=e;*p&&n<16;){ struct cfg c; int used;
  if(sscanf(p,"%d,%ld,%d,%d,%d,%d,%d%n",&c.S,&c.L,&c.T,&c.FAR,&c.P,&c.D,&c.K,&used)!=7) break;
  cs[n++]=c; p+=used; while(*p==' ') p++; }
 W=mmap(NULL,TOT,PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS,-1,0); madvise(W,TOT,getenv("SMALL")?MADV_NOHUGEPAGE:MADV_HUGEPAGE); memset(W,1,TOT);
 for(int i=0;i<64;i++){X[0][i]=(int8_t)(i*7);X[1][i]=(int8_t)(i*13);}
 struct cfg probe={4,2097152,1,0,2,8192,0};
 double best[16]={0}, pb=0;
 for(int r=0;r<rounds;r++) for(int i=0;i<n;i++){ double g=run(probe); if(g>pb) pb=g; g=run(cs[i]); if(g>best[i]) best[i]=g; }
 printf("probe %.1f |",pb); for(int i=0;i<n;i++) printf(" [%d,%ld,%d,%d,%d,%d,%d] %.1f (%.3f)",cs[i].S,cs[i].L,cs[i].T,cs[i].FAR,cs[i].P,cs[i].D,cs[i].K,best[i],best[i]/pb);
 printf("\n"); return 0; }
