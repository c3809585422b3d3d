/* percore.c: read bandwidth of 1 and 2 threads over 1 GiB on 2 MiB pages (4 x 64-byte
 * loads per step), without and with prefetcht0 4 KiB ahead: whether the memory limit is
 * per core or shared.
 *   gcc -O2 -march=native -pthread percore.c -o percore */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static char *buf; static size_t SZ=(size_t)1<<30;
struct a{size_t off,len; long s; int pf;};
static void *rd(void *p){ struct a*a=p; __m512i s=_mm512_setzero_si512(); const char*b=buf+a->off;
 for(size_t i=0;i<a->len;i+=256){ if(a->pf){ _mm_prefetch(b+i+a->pf,_MM_HINT_T0); _mm_prefetch(b+i+a->pf+64,_MM_HINT_T0);_mm_prefetch(b+i+a->pf+128,_MM_HINT_T0);_mm_prefetch(b+i+a->pf+192,_MM_HINT_T0);}
  s=_mm512_add_epi64(s,_mm512_load_si512(b+i)); s=_mm512_add_epi64(s,_mm512_load_si512(b+i+64)); s=_mm512_add_epi64(s,_mm512_load_si512(b+i+128)); s=_mm512_add_epi64(s,_mm512_load_si512(b+i+192)); }
 a->s=_mm512_reduce_add_epi64(s); return 0;}
int main(void){ buf=aligned_alloc(1<<21,SZ); madvise(buf,SZ,MADV_HUGEPAGE); memset(buf,1,SZ);
 for(int rep=0;rep<3;rep++) for(int pf=0;pf<=4096;pf+=4096) for(int nt=1;nt<=2;nt++){ pthread_t th[2]; struct a A[2]; double best=0;
  for(int k=0;k<3;k++){ double t0=now(); for(int i=0;i<nt;i++){A[i].off=SZ/nt*i;A[i].len=SZ/nt-8192;A[i].pf=pf;pthread_create(&th[i],0,rd,&A[i]);} for(int i=0;i<nt;i++)pthread_join(th[i],0); double g=(SZ-8192.0*nt)/(now()-t0)/1e9; if(g>best)best=g;}
  printf("threads %d pf %d: %.1f GB/s\n",nt,pf,best);}
}
