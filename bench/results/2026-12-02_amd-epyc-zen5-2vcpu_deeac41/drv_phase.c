/* drv_phase.c: one-token layer calls (hmoe_fxp_moe_run, 8 experts of 16 resident packs
 * on 2 MiB pages, 2 threads), timed whole, with the down items skipped (up pass only) and
 * with the up items' rows skipped (down pass only), each with the kernels and with
 * bench_rows4_touch (the read pattern alone), in rounds with a probe read before each
 * call and timed itself. MODE [ROUNDS [CALLS]].
 * hmoe_fxp_cpu_ph.c: runtime/hmoe_fxp_cpu.c at 4c1b40d with driver-hooks.patch
 * (`patch -o hmoe_fxp_cpu_ph.c runtime/hmoe_fxp_cpu.c < driver-hooks.patch` on a
 * checkout of 4c1b40d), in DIR beside this file.
 * g_skip_up: tile_up skipped; g_skip_down: moe_tile_down returns after its await.
 *   gcc -O2 -D_GNU_SOURCE -pthread -Iruntime -Ihls -Ihost -IDIR DIR/drv_phase.c
 *       build/obj/host/bench_read_avx512.o build/libhmoe.a -lcjson -lpcre2-8 -ldl -lm
 *       -ldrm -lpthread -o drv_phase */
#include "hmoe_fxp_cpu_ph.c"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "hmoe_pool.h"
#include "hmoe_model.h"
#include "hmoe_fxp_pack.h"
#include "hmoe_bench.h"
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
#define DIM 7168
#define INTER 2048
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
 uint64_t s=88172645463325252ull;
 for(int e=0;e<NE;e++){ uint8_t *b=hmoe_model_weights_alloc(bytes); for(size_t k=0;k<bytes;k++){ s^=s<<13;s^=s>>7;s^=s<<17; b[k]=(uint8_t)s; if(format==HMOE_FXP_INT8&&b[k]==0x80) b[k]=0;}
  for(int lin=0;lin<3;lin++){int out=lin<2?INTER:DIM,in=lin<2?DIM:INTER; size_t row=(size_t)hmoe_fxp_row_lines(format,in)*HMOE_FXP_LINE_BYTES;
   uint8_t*base=b+(lin?(size_t)hmoe_fxp_linear_lines(format,INTER,DIM)*HMOE_FXP_LINE_BYTES*(lin==2?2:1):0);
   for(int n=0;n<out;n++)for(int g=0;g<hmoe_fxp_groups(in);g++){int32_t sw=hmoe_fxp_scale_word(40000,28);memcpy(base+n*row+4*g,&sw,4);}}
  packs[e]=(const void*)b; }
 struct hmoe_fxp_experts ex={.mode=mode,.dim=DIM,.inter=INTER,.n_experts=NE,.packs=packs};
 struct hmoe_pool*pool; hmoe_pool_create(&pool,2); struct hmoe_fxp_ws *ws=NULL;
 const struct hmoe_fxp_simd *v=hmoe_fxp_simd_best();
 struct hmoe_fxp_simd touch=*v; touch.row_acc4=bench_rows4_touch;
 float *x=calloc(DIM,4), *y=calloc(8*DIM,4); for(int i=0;i<DIM;i++) x[i]=(float)((i*2654435761u)%2001)/1000.0f-1.0f;
 int ids[8]; long cur=0;
 pwords=(size_t)256<<17; pbuf=aligned_alloc(64,pwords*8); memset(pbuf,1,pwords*8);
 printf("# %s: expert %zu bytes (up %zu, down %zu); GB/s of each phase's bytes, best of %d calls; probe = best pass in the round\n",argv[1],bytes,up,w2,calls);
 for(int c=0;c<NE;c++){ for(int k=0;k<8;k++) ids[k]=(int)((cur++)%NE); hmoe_fxp_moe_run(&ex,v,pool,&ws,1,8,x,ids,y);}
 static const char *names[6]={"kern full","kern up","kern down","touch full","touch up","touch down"};
 for(int r=0;r<rounds;r++){ double gbs[6], pb=0;
  for(int mm=0;mm<6;mm++){ int m=r%2?5-mm:mm; double best=1e9;
   g_skip_down=(m%3)==1; g_skip_up=(m%3)==2;
   for(int c=0;c<calls;c++){ for(int k=0;k<8;k++) ids[k]=(int)((cur++)%NE); double p=probe(pool); if(p>pb) pb=p; double t1=now();
    if(hmoe_fxp_moe_run(&ex,m<3?v:&touch,pool,&ws,1,8,x,ids,y)) return 1;
    double dt=now()-t1; if(dt<best) best=dt; }
   double b=(m%3)==0?bytes:(m%3)==1?up:w2;
   gbs[m]=8.0*b/best/1e9; }
  g_skip_down=g_skip_up=0;
  printf("%s round %d: probe %.1f |",argv[1],r,pb);
  for(int m=0;m<6;m++) printf(" %s %.1f (%.2f)",names[m],gbs[m],gbs[m]/pb);
  printf("\n"); fflush(stdout);}
 return 0; }
