/* fp.c [GiB]: that much weights memory (hmoe_model_weights_alloc) written by 2 threads,
 * then four read passes by 2 threads, with the block's AnonHugePages from smaps after
 * each. From the repository root:
 *   gcc -O2 -D_GNU_SOURCE -Iruntime -Ihls -mavx512f fp.c host/bench_read_avx512.c \
 *       build/libhmoe.a -lcjson -lpcre2-8 -ldl -lm -ldrm -lpthread -o /tmp/fp */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <time.h>
#include "hmoe_model.h"
#include "hmoe_pool.h"
uint64_t bench_read_sum_avx512(const uint64_t *buf, size_t n_words);
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static uint8_t *B; static size_t N; static volatile uint64_t sink;
static void wr(void *a, long i, int t){(void)a;(void)t; size_t per=N/64; uint64_t *p=(uint64_t*)(B+per*i); uint64_t s=i*7+1; for(size_t k=0;k<per/8;k++){s^=s<<13;s^=s>>7;s^=s<<17;p[k]=s;}}
static void rd(void *a, long i, int t){(void)a;(void)t; size_t per=N/64; sink^=bench_read_sum_avx512((const uint64_t*)(B+per*i),per/8);}
static long huge_kb(void *p){ FILE*f=fopen("/proc/self/smaps","r"); char l[512]; int in=0; long kb=-1; unsigned long lo,hi;
 while(fgets(l,sizeof l,f)){ if(sscanf(l,"%lx-%lx",&lo,&hi)==2 && strchr(l,' ') && l[0]!='A'){ in = (uintptr_t)p>=lo && (uintptr_t)p<hi; continue;} if(in && !strncmp(l,"AnonHugePages:",14)) { sscanf(l+14,"%ld",&kb); break; } } fclose(f); return kb; }
int main(int argc,char**argv){ N=(size_t)((argc>1?atof(argv[1]):1.0)*(1<<30)); N&=~(size_t)((1<<20)-1); B=hmoe_model_weights_alloc(N); struct hmoe_pool*pool; hmoe_pool_create(&pool,2);
 double t0=now(); hmoe_pool_run(pool,64,wr,NULL); printf("write %.1f GB/s, huge %ld MB of %zu\n", N/(now()-t0)/1e9, huge_kb(B)/1024, N>>20);
 for(int p=0;p<4;p++){ t0=now(); hmoe_pool_run(pool,64,rd,NULL); double dt=now()-t0; printf("read pass %d: %.1f GB/s, huge %ld MB\n",p,N/dt/1e9,huge_kb(B)/1024);} return 0; }
