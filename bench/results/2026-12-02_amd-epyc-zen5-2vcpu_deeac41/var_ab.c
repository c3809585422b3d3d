/* var_ab.c: one-token layer calls (16 resident packs filled as bench experts fills them,
 * 2 threads, a probe read before each call) and the in-cache rate (hmoe_fxp_hot_rate)
 * with the kernel variants g_var = V... of avx512_v.c (avx512-variants.patch), in
 * rounds, the order rotated each round; GB/s and each over the first variant's.
 * Variants (int8 and int4 one-token kernel unless said): 0 as built; 1 int4's high
 * nibbles by one gf2p8affineqb; 2 the L2 prefetch compiled out (the Zen 5 plan has
 * none), also fp8's; 4 as 2 with the L1 distance a constant 1536; 5 = 1 + 4; 6 the
 * 16-way reduction done a group (four rows) at a time among the loads; 7 = 6 + 2; 8 the
 * terms of all blocks after the row; 9 each block's reduction and terms after the next
 * block's loads. MODE ROUNDS CALLS V...
 * avx512_v.c: runtime/hmoe_fxp_cpu_avx512.c at 4c1b40d with avx512-variants.patch.
 *   gcc -std=c11 -O2 -D_GNU_SOURCE -pthread -Iruntime -Ihls -mavx2 -mfma -mf16c -mavx512f
 *       -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16 -mgfni
 *       -Wno-unknown-pragmas -c DIR/avx512_v.c -o avx512_v.o
 *   gcc -O2 -D_GNU_SOURCE -pthread -Iruntime -Ihls -Ihost -Ikmod/uapi -I/usr/include/cjson
 *       DIR/var_ab.c avx512_v.o build/obj/host/bench_read_avx512.o
 *       build/obj/host/bench_common.o build/obj/host/cli.o build/libhmoe.a -lcjson
 *       -lpcre2-8 -ldl -lm -ldrm -lpthread -o var_ab */
#include "bench_experts.c"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "hmoe_pool.h"
#include "hmoe_model.h"
#include "hmoe_fxp_pack.h"
#include "hmoe_fxp_cpu.h"
extern int g_var;
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
uint64_t bench_read_sum_avx512(const uint64_t *buf, size_t n_words);
struct pj { const uint64_t *b; size_t words; uint64_t s[32]; };
static void pjob(void *a, long i, int t){ (void)t; struct pj *j=a; size_t per=j->words/32; j->s[i]=bench_read_sum_avx512(j->b+per*i, per); }
static uint64_t *pbuf; static size_t pwords; static volatile uint64_t psink;
static double probe(struct hmoe_pool *pool){ struct pj j={pbuf,pwords,{0}}; double t0=now(); hmoe_pool_run(pool,32,pjob,&j); double dt=now()-t0; psink^=j.s[3]; return pwords*8.0/dt/1e9; }
int main(int argc,char**argv){
 int mode; if(argc<2||hmoe_fxp_format_parse(argv[1],&mode)) return 2;
 int NE=16, rounds=argc>2?atoi(argv[2]):4, calls=argc>3?atoi(argv[3]):10;
 int format=hmoe_fxp_mode_format(mode);
 size_t bytes=(size_t)hmoe_fxp_expert_lines(format,DIM,INTER)*HMOE_FXP_LINE_BYTES;
 const struct hmoe_fxp_line **packs=malloc(sizeof(*packs)*NE);
 void *bufs[16]; struct hmoe_fxp_fp8_fix *fixes[16]={0}; static uint8_t codes[1<<16];
 fp8_checkpoint_codes(codes);
 for(int e=0;e<NE;e++) bufs[e]=hmoe_model_weights_alloc(bytes);
 struct fill_job fj={bufs,bytes,format,format==HMOE_FXP_FP8?codes:NULL,format==HMOE_FXP_FP8?fixes:NULL};
 for(int e=0;e<NE;e++){ fill_one(&fj,e,0); packs[e]=bufs[e]; }
 struct hmoe_fxp_experts ex={.mode=mode,.dim=DIM,.inter=INTER,.n_experts=NE,.packs=packs,.fixes=format==HMOE_FXP_FP8?(const struct hmoe_fxp_fp8_fix *const *)fixes:NULL};
 struct hmoe_pool*pool; hmoe_pool_create(&pool,2); struct hmoe_fxp_ws *ws=NULL;
 const struct hmoe_fxp_simd *v=hmoe_fxp_simd_best();
 float *x=calloc(DIM,4), *y=calloc(8*DIM,4), *y2=calloc(8*DIM,4); for(int i=0;i<DIM;i++) x[i]=(float)((i*2654435761u)%2001)/1000.0f-1.0f;
 int ids[8]; long cur=0;
 int nv=argc-4, vars[8]; if(nv<2||nv>8) return 2; for(int i=0;i<nv;i++) vars[i]=atoi(argv[4+i]);
 pwords=(size_t)256<<17; pbuf=aligned_alloc(64,pwords*8); memset(pbuf,1,pwords*8);
 for(int k=0;k<8;k++) ids[k]=k;
 g_var=vars[0]; hmoe_fxp_moe_run(&ex,v,pool,&ws,1,8,x,ids,y);
 for(int i=1;i<nv;i++){ g_var=vars[i]; hmoe_fxp_moe_run(&ex,v,pool,&ws,1,8,x,ids,y2); if(memcmp(y,y2,8*DIM*4)) { printf("outputs differ (var %d)\n",vars[i]); return 1; } }
 printf("# %s (%s): outputs equal; GB/s from DRAM (probe before each call) and in cache\n", argv[1], v->name);
 for(int c=0;c<NE;c++){ for(int k=0;k<8;k++) ids[k]=(int)((cur++)%NE); hmoe_fxp_moe_run(&ex,v,pool,&ws,1,8,x,ids,y);}
 for(int r=0;r<rounds;r++){ double gbs[8], hot[8], pb=0;
  for(int mm=0;mm<nv;mm++){ int m=(mm+r)%nv; double best=1e9; g_var=vars[m];
   for(int c=0;c<calls;c++){ for(int k=0;k<8;k++) ids[k]=(int)((cur++)%NE); double p=probe(pool); if(p>pb)pb=p; double t1=now();
    if(hmoe_fxp_moe_run(&ex,v,pool,&ws,1,8,x,ids,y)) return 1;
    double dt=now()-t1; if(dt<best) best=dt; }
   gbs[m]=8.0*bytes/best/1e9;
   struct hmoe_fxp_experts one=ex; one.n_experts=1; if(hmoe_fxp_hot_rate(&one,v,pool,0,0.5,&hot[m])) return 1; }
  printf("%s round %d: probe %.1f |",argv[1],r,pb);
  for(int m=0;m<nv;m++) printf(" v%d %.1f (%.3f) hot %.1f (%.3f)",vars[m],gbs[m],gbs[m]/gbs[0],hot[m]/1e9,hot[m]/hot[0]);
  printf("\n"); fflush(stdout);}
 return 0; }
