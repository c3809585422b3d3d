/* (build: gcc -O2 -D_GNU_SOURCE -pthread -Iruntime -Ihls -Ihost DIR/pg.c
 *  build/obj/host/bench_read_avx512.o build/libhmoe.a -lcjson -lpcre2-8 -ldl -lm -ldrm
 *  -lpthread -o pg; ./pg ROUNDS PIECES) */
/* pg.c: the probe's read (bench_read_sum_avx512, 2 threads, pieces in turn) over a buffer on
 * 4 KiB pages (plain aligned_alloc) and one from hmoe_model_weights_alloc (2 MiB pages
 * asked for), both 352 MB, written first; best of 5 per round, in turn. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <time.h>
#include "hmoe_pool.h"
#include "hmoe_model.h"
uint64_t bench_read_sum_avx512(const uint64_t *buf, size_t n_words);
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
struct pj { const uint64_t *b; size_t words; int n; uint64_t s[256]; };
static void pjob(void *a, long i, int t){ (void)t; struct pj *j=a; size_t per=j->words/j->n/8*8; j->s[i]=bench_read_sum_avx512(j->b+per*i, per); }
static double rd(struct hmoe_pool *pool, const void *b, size_t bytes, int n){ struct pj j={b,bytes/8,n,{0}}; double t0=now(); hmoe_pool_run(pool,n,pjob,&j); double dt=now()-t0; volatile uint64_t s=j.s[1]; (void)s; return bytes/dt/1e9; }
int main(int argc, char **argv){
 size_t bytes=(size_t)352<<20; int rounds=argc>1?atoi(argv[1]):4, n=argc>2?atoi(argv[2]):32;
 struct hmoe_pool *pool; hmoe_pool_create(&pool,2);
 char *a=aligned_alloc(1<<21,bytes), *h=hmoe_model_weights_alloc(bytes), *a2=aligned_alloc(64,bytes);
 memset(a,1,bytes); memset(h,1,bytes); memset(a2,1,bytes);
 for(int r=0;r<rounds;r++){ double ba=0,bh=0,b2=0;
  for(int k=0;k<5;k++){ double x=rd(pool,a,bytes,n); if(x>ba)ba=x; x=rd(pool,h,bytes,n); if(x>bh)bh=x; x=rd(pool,a2,bytes,n); if(x>b2)b2=x; }
  printf("round %d: 4K-page buffer (2M-aligned) %.1f GB/s, weights_alloc (THP) %.1f (%.3f), 4K-page buffer %.1f\n",r,ba,bh,bh/ba,b2); fflush(stdout);}
 return 0; }
