/* lc2.c: one-token layer calls (hmoe_fxp_moe_run, 2 threads) over two sets of NE resident
 * packs, one on 4 KiB pages (MADV_NOHUGEPAGE) and one asked for 2 MiB pages
 * (MADV_HUGEPAGE), in one process.
 *   default: CALLS calls per set, alternately, each call on the next 8 packs of its set;
 *            PROBE=MiB: the pool's threads read that many MiB between calls (as `bench
 *            experts` probes the bandwidth between its repetitions); prints mean, median,
 *            best GB/s and the slow tail per set
 *   PRE=1:   first a plain read of every pack of each set by the main thread (8-byte loads,
 *            one per line), timed, before the sweeps
 *   SWEEP=1: right after the packs are written (by the main thread), three sweeps of NE/8
 *            calls over every pack of one set, then of the other (REV=1: 2 MiB set first)
 * From the repository root:
 *   gcc -O2 -Iruntime -Ihls lc2.c build/libhmoe.a -lcjson -lpcre2-8 -ldl -lm -ldrm \
 *       -lpthread -o /tmp/lc2
 *   /tmp/lc2 MODE [NE CALLS THREADS]   (e.g. int4 160 40) */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <pthread.h>
#include "hmoe_fxp_cpu.h"
#include "hmoe_fxp_pack.h"
#include "hmoe_pool.h"
#define DIM 7168
#define INTER 2048
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static uint64_t rn(uint64_t *s){*s^=*s<<13;*s^=*s>>7;*s^=*s<<17;return *s;}
static uint64_t *pb; static size_t PB; static uint64_t acc[2];
static void probe_item(void *a, long i, int th){ (void)a; uint64_t s=0; size_t n=PB/8/2; const uint64_t *p=pb+n*i; for(size_t k=0;k<n;k+=8) s+=p[k]; acc[th&1]+=s; }
static int cmp(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return x<y?-1:x>y;}
int main(int argc,char**argv){
 int mode; if(argc<2||hmoe_fxp_format_parse(argv[1],&mode)) return 2;
 int NE=argc>2?atoi(argv[2]):32, calls=argc>3?atoi(argv[3]):40, th=argc>4?atoi(argv[4]):2;
 int format=hmoe_fxp_mode_format(mode); uint64_t s=88172645463325252ull;
 size_t bytes=(size_t)hmoe_fxp_expert_lines(format,DIM,INTER)*HMOE_FXP_LINE_BYTES, hb=(bytes+(2<<20)-1)&~(size_t)((2<<20)-1);
 const struct hmoe_fxp_line **packs[2]={malloc(sizeof(void*)*NE),malloc(sizeof(void*)*NE)};
 for(int h=0;h<2;h++) for(int e=0;e<NE;e++){ uint8_t *b=aligned_alloc(2<<20,hb); madvise(b,hb,h?MADV_HUGEPAGE:MADV_NOHUGEPAGE);
  for(size_t i=0;i<bytes;i+=8){uint64_t v=rn(&s); memcpy(b+i,&v,8);}
  for(int lin=0;lin<3;lin++){int out=lin<2?INTER:DIM,in=lin<2?DIM:INTER; size_t row=(size_t)hmoe_fxp_row_lines(format,in)*HMOE_FXP_LINE_BYTES;
   uint8_t*base=b+(lin?(size_t)hmoe_fxp_linear_lines(format,INTER,DIM)*HMOE_FXP_LINE_BYTES*(lin==2?2:1):0);
   for(int n=0;n<out;n++){ for(int g=0;g<hmoe_fxp_groups(in);g++){int32_t sw=hmoe_fxp_scale_word(32768+(uint32_t)(rn(&s)&32767),30+(int)(rn(&s)%4));memcpy(base+n*row+4*g,&sw,4);}
    if(format==HMOE_FXP_FP8) for(size_t k=hmoe_fxp_scale_lines(in)*64;k<row;k++) if((base[n*row+k]&0x7f)==0x7f) base[n*row+k]^=1;
    if(format==HMOE_FXP_INT8) for(size_t k=hmoe_fxp_scale_lines(in)*64;k<row;k++) if(base[n*row+k]==0x80) base[n*row+k]=0x81; }}
  packs[h][e]=(const void*)b; }
 { FILE*f=fopen("/proc/meminfo","r"); char l[256]; while(fgets(l,256,f)) if(!strncmp(l,"AnonHuge",8)) fputs(l,stdout); fclose(f); }
 struct hmoe_fxp_experts ex[2]={{.mode=mode,.dim=DIM,.inter=INTER,.n_experts=NE,.packs=packs[0]},{.mode=mode,.dim=DIM,.inter=INTER,.n_experts=NE,.packs=packs[1]}};
 struct hmoe_pool*pool; hmoe_pool_create(&pool,th); struct hmoe_fxp_ws *ws=NULL;
 PB=(size_t)(getenv("PROBE")?atoi(getenv("PROBE")):0)<<20; if(PB){ pb=malloc(PB); memset(pb,1,PB); }
 float *x=malloc(sizeof(float)*DIM), *y=malloc(sizeof(float)*8*DIM);
 for(int i=0;i<DIM;i++) x[i]=(float)((int)(rn(&s)%2001)-1000)/700.0f;
 if(getenv("PRE")){ for(int h=0;h<2;h++){ double t0=now(); uint64_t a=0; for(int e=0;e<NE;e++){ const uint64_t *p=(const uint64_t*)packs[h][e]; for(size_t i=0;i<bytes/8;i+=8) a+=p[i]; } printf("%s plain read sweep: %.1f GB/s (%llu)\n",h?"2M":"4K",(double)NE*bytes/(now()-t0)/1e9,(unsigned long long)(a&1)); } }
 if(getenv("SWEEP")){ int ids2[8]; for(int hh=0;hh<2;hh++) for(int sw=0;sw<3;sw++){ int h=getenv("REV")?1-hh:hh; double t0=now(); for(int c=0;c<NE/8;c++){ for(int q=0;q<8;q++) ids2[q]=c*8+q; if(hmoe_fxp_moe_run(&ex[h],hmoe_fxp_simd_best(),pool,&ws,1,8,x,ids2,y)) return 1; } double dt=now()-t0; printf("%s sweep %d: %.1f GB/s (%.0f ms)\n",h?"2M":"4K",sw,(double)NE*bytes/dt/1e9,dt*1e3); } return 0; }
 int ids[8]; double *t[2]={malloc(8*calls),malloc(8*calls)}; int c0[2]={0,0};
 for(int c=0;c<calls+2;c++) for(int k=0;k<2;k++){ int h=(c&1)?1-k:k;
  for(int q=0;q<8;q++) ids[q]=(c0[h]++)%NE;
  if(PB) hmoe_pool_run(pool,2,probe_item,NULL);
  double t0=now(); if(hmoe_fxp_moe_run(&ex[h],hmoe_fxp_simd_best(),pool,&ws,1,8,x,ids,y)) return 1; double dt=now()-t0; if(c>=2) t[h][c-2]=dt; }
 for(int h=0;h<2;h++){ double tot=0; for(int c=0;c<calls;c++) tot+=t[h][c]; qsort(t[h],calls,8,cmp);
  printf("p90 %.1f p99 %.1f worst %.1f ms; ",t[h][calls*9/10]*1e3,t[h][calls*99/100]*1e3,t[h][calls-1]*1e3); printf("%s %s: mean %.1f median %.1f best %.1f GB/s\n",argv[1],h?"2M":"4K",8.0*bytes*calls/tot/1e9,8.0*bytes/t[h][calls/2]/1e9,8.0*bytes/t[h][0]/1e9); }
 return acc[0]==7; }
