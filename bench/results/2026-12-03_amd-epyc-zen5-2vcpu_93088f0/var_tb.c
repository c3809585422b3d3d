/* var_tb.c: var_tok.c with VV(0) / VV(2) the AVX2 / AVX-VNNI kernels of 93088f0 built again
 * from its runtime/hmoe_fxp_cpu_avx2.c under other names (-Dhmoe_fxp_simd_avx2=hmoe_fxp_simd_avx2_old
 * -Dhmoe_fxp_split_scales_x86=old_split; with -mavxvnni -DHMOE_FXP_AVX2_VNNI
 * -Dhmoe_fxp_simd_avxvnni=hmoe_fxp_simd_avxvnni_old) and VV(1) / VV(3) the library's, built
 * with x16-token-blocks.patch applied. */
/* var_ab.c: the twenty-fourth session's harness (bench/results/..._deeac41/var_ab.c) with
 * the pool's thread count from THREADS (default 2): one-token layer calls (8 experts of
 * 16 resident packs filled as bench experts fills them, a probe read with as many
 * threads before each call, best of CALLS) and the in-cache rate (hmoe_fxp_hot_rate), for
 * kernel variants g_var = V... in rounds; GB/s and each over the first variant's.
 * MODE ROUNDS CALLS V... V = 20: the calls and the in-cache rate without the fp8
 * remainder lists (ex.fixes NULL: the one-token fp8 calls take the three-digit kernel).
 * The check that the variants' outputs are equal only reports (V = 23 differs). NOHOT=1
 * skips the in-cache rate (0.0 in its place), for profiles.
 *   - layer-1-2-threads.txt: with avx512_h.o (the kernels as built; "0 0", the same
 *     kernel twice), THREADS=1 and 2, each mode.
 *   - fp8a8-prefetch.txt: with avx512_p.o (fp8-prefetch.patch: the one-token fp8
 *     prefetch distances by g_var: 10 none, 11 L1 1536, 12 L1 6144, 14 L1 2048, 15 L1
 *     1024; the plan's is L1 3072).
 *   - fp8-sparse-prefetch.txt, scales-copy.txt: with avx512_s.o, avx512_w.o (made from
 *     fp8-sparse-prefetch.patch, scales-copy.patch as avx512_p.o is).
 *   - lists.txt: with avx512_h.o and cpu_v.o (runtime/hmoe_fxp_cpu.c with driver.patch:
 *     the driver's prefetches of the lists by g_var: 21 farther, 22 none, 23 the lists
 *     given to the kernel empty, which drops the remainders' terms).
 *   - fp8a8-items.txt: the same objects; driver.patch's g_var 50-52 give one-token fp8
 *     calls larger work items (4x, 2x, 8x).
 * avx512_h.c as in kern_rates.c, avx512_p.c with fp8-prefetch.patch; from the
 * repository root, after make:
 *   gcc -std=c11 -O2 -D_GNU_SOURCE -pthread -Iruntime -Ihls -mavx2 -mfma -mf16c
 *       -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16 -mgfni
 *       -Wno-unknown-pragmas -c DIR/avx512_h.c -o avx512_h.o
 *   gcc -std=c11 -O2 -D_GNU_SOURCE -pthread -Iruntime -Ihls -Wno-unknown-pragmas
 *       -c DIR/cpu_v.c -o cpu_v.o   (cpu_v.c: runtime/hmoe_fxp_cpu.c with driver.patch)
 *   gcc -O2 -D_GNU_SOURCE -pthread -Iruntime -Ihls -Ihost -Ikmod/uapi -I/usr/include/cjson
 *       DIR/var_ab.c avx512_h.o [cpu_v.o] build/obj/host/bench_read_avx512.o
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
extern const struct hmoe_fxp_simd hmoe_fxp_simd_avx2_old, hmoe_fxp_simd_avxvnni_old;
#define VV(k) ((k)==0 ? &hmoe_fxp_simd_avx2_old : (k)==1 ? &hmoe_fxp_simd_avx2 : (k)==2 ? &hmoe_fxp_simd_avxvnni_old : &hmoe_fxp_simd_avxvnni)
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
 struct hmoe_pool*pool; hmoe_pool_create(&pool,getenv("THREADS")?atoi(getenv("THREADS")):2); struct hmoe_fxp_ws *ws=NULL;
 const struct hmoe_fxp_simd *v=hmoe_fxp_simd_best();
 int NT=getenv("NT")?atoi(getenv("NT")):16;
 float *x=calloc((size_t)NT*DIM,4), *y=calloc((size_t)NT*8*DIM,4), *y2=calloc((size_t)NT*8*DIM,4); for(long i=0;i<(long)NT*DIM;i++) x[i]=(float)((i*2654435761u)%2001)/1000.0f-1.0f;
 int *ids=calloc((size_t)NT*8,sizeof(int)); long cur=0;
 int nv=argc-4, vars[8]; if(nv<2||nv>8) return 2; for(int i=0;i<nv;i++) vars[i]=atoi(argv[4+i]);
 for(int t=0;t<NT;t++) for(int k=0;k<8;k++) ids[t*8+k]=k;
 g_var=vars[0]; hmoe_fxp_moe_run(&ex,VV(g_var),pool,&ws,NT,8,x,ids,y);
 for(int i=1;i<nv;i++){ g_var=vars[i]; hmoe_fxp_moe_run(&ex,VV(g_var),pool,&ws,NT,8,x,ids,y2); if(memcmp(y,y2,(size_t)NT*8*DIM*4)) printf("outputs differ (var %d)\n",vars[i]); }
 printf("# %s, %d tokens on the same 8 experts: int ops/s (1e9)\n", argv[1], NT);
 for(int r=0;r<rounds;r++){ double ops[8];
  for(int mm=0;mm<nv;mm++){ int m=(mm+r)%nv; double best=1e9; g_var=vars[m];
   for(int c=0;c<calls;c++){ long base=cur; cur+=8; for(int t=0;t<NT;t++) for(int k=0;k<8;k++) ids[t*8+k]=(int)((base+k)%NE); double t1=now();
    if(hmoe_fxp_moe_run(&ex,VV(g_var),pool,&ws,NT,8,x,ids,y)) return 1;
    double dt=now()-t1; if(dt<best) best=dt; }
   ops[m]=(double)NT*8*6.0*DIM*INTER/best/1e9; }
  printf("%s round %d:",argv[1],r);
  for(int m=0;m<nv;m++) printf(" v%d %.1f (%.3f)",vars[m],ops[m],ops[m]/ops[0]);
  printf("\n"); fflush(stdout);}
 return 0; }
