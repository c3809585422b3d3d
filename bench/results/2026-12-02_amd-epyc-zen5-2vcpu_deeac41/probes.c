/* probes.c: the bench probe (bench_read_sum_avx512 over 32 chunks of a 256 MiB buffer,
 * 2 threads) on a buffer of 4 KiB pages (aligned_alloc, as bench_common.c) and on one of
 * 2 MiB pages (hmoe_model_weights_alloc), alternating, as 32 chunks (the bench's) and as
 * 2 (one per thread); best of 6 passes each per round. ROUNDS.
 *   gcc -O2 -D_GNU_SOURCE -pthread -Iruntime -Ihls probes.c build/obj/host/bench_read_avx512.o
 *       build/libhmoe.a -lcjson -lpcre2-8 -ldl -lm -ldrm -lpthread -o probes */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "hmoe_pool.h"
#include "hmoe_model.h"
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
uint64_t bench_read_sum_avx512(const uint64_t *buf, size_t n_words);
struct pj { const uint64_t *b; size_t words; int n; uint64_t s[256]; };
static void pjob(void *a, long i, int t){ (void)t; struct pj *j=a; size_t per=j->words/j->n; j->s[i]=bench_read_sum_avx512(j->b+per*i, per); }
static volatile uint64_t psink;
static double probe(struct hmoe_pool *pool, const uint64_t *b, size_t words, int n){ struct pj j={b,words,n,{0}}; double t0=now(); hmoe_pool_run(pool,n,pjob,&j); double dt=now()-t0; psink^=j.s[3]; return words*8.0/dt/1e9; }
int main(int argc, char **argv){
 int rounds=argc>1?atoi(argv[1]):5;
 struct hmoe_pool*pool; hmoe_pool_create(&pool,2);
 size_t bytes=(size_t)256<<20, words=bytes/8;
 uint64_t *a=aligned_alloc(64,bytes); memset(a,1,bytes);
 uint64_t *h=hmoe_model_weights_alloc(bytes); memset(h,1,bytes);
 for(int r=0;r<rounds;r++){ double b4=0,b2=0,b4c=0,b2c=0;
  for(int k=0;k<6;k++){ double x;
   x=probe(pool,a,words,32); if(x>b4)b4=x; x=probe(pool,h,words,32); if(x>b2)b2=x;
   x=probe(pool,a,words,2); if(x>b4c)b4c=x; x=probe(pool,h,words,2); if(x>b2c)b2c=x; }
  printf("round %d: 32 chunks: 4K pages %.1f  2M pages %.1f | 2 chunks (streams 32 MiB apart): 4K %.1f  2M %.1f GB/s\n",r,b4,b2,b4c,b2c); fflush(stdout); }
 return 0; }
