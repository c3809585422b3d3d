#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "hmoe_fxp_cpu.h"
#include "hmoe_fxp_pack.h"
#include "hmoe_pool.h"
#define DIM 7168
#define INTER 2048
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
 int mode; if(hmoe_fxp_format_parse(argv[1],&mode)) return 2; int NE=argc>2?atoi(argv[2]):8, calls=argc>3?atoi(argv[3]):300;
 int format=hmoe_fxp_mode_format(mode);
 size_t bytes=(size_t)hmoe_fxp_expert_lines(format,DIM,INTER)*HMOE_FXP_LINE_BYTES;
 const struct hmoe_fxp_line **packs=malloc(sizeof(*packs)*NE);
 for(int e=0;e<NE;e++){ uint8_t *b=aligned_alloc(64,bytes); memset(b,0x11+e,bytes);
  for(int lin=0;lin<3;lin++){int out=lin<2?INTER:DIM,in=lin<2?DIM:INTER; size_t row=(size_t)hmoe_fxp_row_lines(format,in)*HMOE_FXP_LINE_BYTES;
   uint8_t*base=b+(lin?(size_t)hmoe_fxp_linear_lines(format,INTER,DIM)*HMOE_FXP_LINE_BYTES*(lin==2?2:1):0);
   for(int n=0;n<out;n++)for(int g=0;g<hmoe_fxp_groups(in);g++){int32_t sw=hmoe_fxp_scale_word(40000,28);memcpy(base+n*row+4*g,&sw,4);}}
  packs[e]=(const void*)b; }
 struct hmoe_fxp_experts ex={.mode=mode,.dim=DIM,.inter=INTER,.n_experts=NE,.packs=packs};
 struct hmoe_pool*pool; hmoe_pool_create(&pool,2); struct hmoe_fxp_ws *ws=NULL;
 float *x=calloc(DIM,4), *y=calloc(8*DIM,4); for(int i=0;i<DIM;i++) x[i]=(i%7-3)*0.1f;
 int ids[8];
 double t0=now(); double tot=0; long by=0;
 for(int c=0;c<calls;c++){ for(int k=0;k<8;k++) ids[k]=(c*8+k)%NE; double t1=now(); if(hmoe_fxp_moe_run(&ex,hmoe_fxp_simd_best(),pool,&ws,1,8,x,ids,y)) return 1; tot+=now()-t1; by+=8*bytes; }
 printf("%s: %d calls, %.2f ms per call, %.1f GB/s (wall %.2f s)\n", argv[1], calls, tot/calls*1e3, by/tot/1e9, now()-t0);
 return 0; }
