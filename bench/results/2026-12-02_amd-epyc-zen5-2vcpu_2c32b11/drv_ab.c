/* drv_ab.c: one-token layer calls (hmoe_fxp_moe_run, 8 experts of 16 resident packs on 2
 * MiB pages, 2 threads) with the down items as built (contiguous 128 rows) and as
 * down-pairs.patch maps them (64 rows of each half of W2), alternating in rounds in one
 * process; a probe read before each call. MODE [ROUNDS [CALLS]].
 * hmoe_fxp_cpu_ab.c: runtime/hmoe_fxp_cpu.c with down-pairs.patch applied, `int g_pair =
 * 1;` before down_ranges and `tl->n == 1 && g_pair` as its one_token argument. After
 * `make`, from the repository root (DIR holding both files):
 *   gcc -O2 -D_GNU_SOURCE -pthread -Iruntime -Ihls -IDIR DIR/drv_ab.c
 *       build/obj/host/bench_read_avx512.o build/libhmoe.a -lcjson -lpcre2-8 -ldl -lm
 *       -ldrm -lpthread -o drv_ab */
#include "hmoe_fxp_cpu_ab.c"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "hmoe_pool.h"
#include "hmoe_model.h"
#include "hmoe_fxp_pack.h"
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
#define DIM 7168
#define INTER 2048
uint64_t bench_read_sum_avx512(const uint64_t *buf, size_t n_words);
struct pj { const uint64_t *b; size_t words; uint64_t s[32]; };
static void pjob(void *a, long i, int t){ (void)t; struct pj *j=a; size_t per=j->words/32; j->s[i]=bench_read_sum_avx512(j->b+per*i, per); }
static uint64_t *pbuf; static size_t pwords; static volatile uint64_t psink;
static void probe(struct hmoe_pool *pool){ struct pj j={pbuf,pwords,{0}}; hmoe_pool_run(pool,32,pjob,&j); psink^=j.s[3]; }
int main(int argc,char**argv){
 int mode; if(argc<2||hmoe_fxp_format_parse(argv[1],&mode)) return 2;
 int NE=16, rounds=argc>2?atoi(argv[2]):4, calls=argc>3?atoi(argv[3]):15;
 int format=hmoe_fxp_mode_format(mode);
 size_t bytes=(size_t)hmoe_fxp_expert_lines(format,DIM,INTER)*HMOE_FXP_LINE_BYTES;
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
 float *x=calloc(DIM,4), *y=calloc(8*DIM,4), *y2=calloc(8*DIM,4); for(int i=0;i<DIM;i++) x[i]=(float)((i*2654435761u)%2001)/1000.0f-1.0f;
 int ids[8]; long cur=0;
 pwords=(size_t)256<<17; pbuf=aligned_alloc(64,pwords*8); memset(pbuf,1,pwords*8);
 for(int k=0;k<8;k++) ids[k]=k;
 g_pair=0; hmoe_fxp_moe_run(&ex,v,pool,&ws,1,8,x,ids,y); g_pair=1; hmoe_fxp_moe_run(&ex,v,pool,&ws,1,8,x,ids,y2);
 if(memcmp(y,y2,8*DIM*4)) { printf("outputs differ\n"); return 1; }
 for(int c=0;c<NE;c++){ for(int k=0;k<8;k++) ids[k]=(int)((cur++)%NE); hmoe_fxp_moe_run(&ex,v,pool,&ws,1,8,x,ids,y);}
 for(int r=0;r<rounds;r++){ double gbs[2];
  for(int mm=0;mm<2;mm++){ int m=r%2?1-mm:mm; double best=1e9; g_pair=m;
   for(int c=0;c<calls;c++){ for(int k=0;k<8;k++) ids[k]=(int)((cur++)%NE); probe(pool); double t1=now();
    if(hmoe_fxp_moe_run(&ex,v,pool,&ws,1,8,x,ids,y)) return 1;
    double dt=now()-t1; if(dt<best) best=dt; }
   gbs[m]=8.0*bytes/best/1e9; }
  printf("%s round %d: contiguous %.1f  pairs %.1f GB/s  pairs/contiguous %.3f\n",argv[1],r,gbs[0],gbs[1],gbs[1]/gbs[0]); fflush(stdout);}
 return 0; }
