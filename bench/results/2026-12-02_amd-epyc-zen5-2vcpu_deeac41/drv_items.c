/* drv_items.c: one-token (or TOKENS-token) layer calls (hmoe_fxp_moe_run, 16 resident
 * packs filled as bench experts fills them: fp8 checkpoint-like codes with remainder
 * lists; 2 threads) with work items of ups[m] / downs[m] rows (g_up_rows, g_down_rows),
 * the kernels (kern) and their read pattern alone (touch: bench_rows4_touch), the six in
 * turn, rotated each round, a probe read before each call. GB/s over the distinct
 * experts' bytes, and each setting over the first of its kind. The three settings were
 * {32,64,128}/{128,256,512} (items-*.txt), {32,128,128}/{128,128,512} (items2-*.txt) and
 * {128,256,256}/{512,512,1024} (items3-*.txt). MODE [ROUNDS [CALLS [TOKENS]]].
 * hmoe_fxp_cpu_ph.c: runtime/hmoe_fxp_cpu.c at 4c1b40d with driver-hooks.patch
 * (`patch -o hmoe_fxp_cpu_ph.c runtime/hmoe_fxp_cpu.c < driver-hooks.patch` on a
 * checkout of 4c1b40d), in DIR beside this file.
 *   gcc -O2 -D_GNU_SOURCE -pthread -Iruntime -Ihls -Ihost -Ikmod/uapi -I/usr/include/cjson
 *       -IDIR DIR/drv_items.c build/obj/host/bench_read_avx512.o
 *       build/obj/host/bench_common.o build/obj/host/cli.o build/libhmoe.a -lcjson
 *       -lpcre2-8 -ldl -lm -ldrm -lpthread -o drv_items */
#include "hmoe_fxp_cpu_ph.c"
#include "bench_experts.c"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "hmoe_pool.h"
#include "hmoe_model.h"
#include "hmoe_fxp_pack.h"
#include "hmoe_bench.h"
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
 size_t w2=(size_t)hmoe_fxp_linear_lines(format,DIM,INTER)*HMOE_FXP_LINE_BYTES, up=bytes-w2;
 const struct hmoe_fxp_line **packs=malloc(sizeof(*packs)*NE);
 void *bufs[16]; struct hmoe_fxp_fp8_fix *fixes[16]={0}; static uint8_t codes[1<<16];
 fp8_checkpoint_codes(codes);
 for(int e=0;e<NE;e++) bufs[e]=hmoe_model_weights_alloc(bytes);
 struct fill_job fj={bufs,bytes,format,format==HMOE_FXP_FP8?codes:NULL,format==HMOE_FXP_FP8?fixes:NULL};
 for(int e=0;e<NE;e++){ fill_one(&fj,e,0); packs[e]=bufs[e]; }
 struct hmoe_fxp_experts ex={.mode=mode,.dim=DIM,.inter=INTER,.n_experts=NE,.packs=packs,.fixes=format==HMOE_FXP_FP8?(const struct hmoe_fxp_fp8_fix *const *)fixes:NULL};
 struct hmoe_pool*pool; hmoe_pool_create(&pool,2); struct hmoe_fxp_ws *ws=NULL;
 const struct hmoe_fxp_simd *v=hmoe_fxp_simd_best();
 struct hmoe_fxp_simd touch=*v; touch.row_acc4=bench_rows4_touch;
 int TOK=argc>4?atoi(argv[4]):1; float *x=calloc((size_t)TOK*DIM,4), *y=calloc((size_t)TOK*8*DIM,4); for(int i=0;i<TOK*DIM;i++) x[i]=(float)((i*2654435761u)%2001)/1000.0f-1.0f;
 int ids[8*64]; long cur=0; uint64_t rs=12345;
#define ROUTE() do { if(TOK==1) for(int k=0;k<8;k++) ids[k]=(int)((cur++)%NE); else for(int t=0;t<TOK;t++){ rs=rs*6364136223846793005ull+1442695040888963407ull; int s0=(int)(rs>>59); for(int k=0;k<8;k++) ids[t*8+k]=(s0+k)%NE; } } while(0)
#define DISTINCT() ({ int seen[16]={0}, n=0; for(int i=0;i<8*TOK;i++) if(!seen[ids[i]]++) n++; n; })
 pwords=(size_t)256<<17; pbuf=aligned_alloc(64,pwords*8); memset(pbuf,1,pwords*8);
 printf("# %s: expert %zu bytes (up %zu, down %zu); GB/s, best of %d calls; probe = best pass in the round\n",argv[1],bytes,up,w2,calls);
 for(int c=0;c<NE;c++){ ROUTE(); hmoe_fxp_moe_run(&ex,v,pool,&ws,TOK,8,x,ids,y);}
 static const int ups[3]={32,64,128}, downs[3]={128,256,512};
 for(int r=0;r<rounds;r++){ double gbs[6], pb=0;
  for(int mm=0;mm<6;mm++){ int m=(mm+r)%6; double best=1e9;
   g_up_rows=ups[m%3]; g_down_rows=downs[m%3];
   for(int c=0;c<calls;c++){ ROUTE(); int nd=DISTINCT(); double p=probe(pool); if(p>pb) pb=p; double t1=now();
    if(hmoe_fxp_moe_run(&ex,m<3?v:&touch,pool,&ws,TOK,8,x,ids,y)) return 1;
    double dt=(now()-t1)/nd*8; if(dt<best) best=dt; }
   gbs[m]=8.0*bytes/best/1e9; }
  printf("%s round %d: probe %.1f |",argv[1],r,pb);
  for(int m=0;m<6;m++) printf(" %s %d/%d %.1f (%.3f)",m<3?"kern":"touch",ups[m%3],downs[m%3],gbs[m],gbs[m]/gbs[m<3?0:3]);
  printf("\n"); fflush(stdout);}
 return 0; }
