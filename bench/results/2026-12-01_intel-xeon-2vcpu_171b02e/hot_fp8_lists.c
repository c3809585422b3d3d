#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hmoe_fxp_cpu.h"
#include "hmoe_fxp_pack.h"
#include "hmoe_pool.h"
#include "hmoe_num.h"
#include <math.h>
#define DIM 7168
#define INTER 2048
static uint64_t rn(uint64_t *s){*s^=*s<<13;*s^=*s>>7;*s^=*s<<17;return *s;}
int main(int argc,char**argv){
 int mode; if(hmoe_fxp_format_parse(argv[1],&mode)) return 2; int th=argc>2?atoi(argv[2]):1; int reps=argc>3?atoi(argv[3]):5;
 int format=hmoe_fxp_mode_format(mode);
 size_t bytes=(size_t)hmoe_fxp_expert_lines(format,DIM,INTER)*HMOE_FXP_LINE_BYTES;
 uint8_t *b=aligned_alloc(64,bytes); uint64_t s=0x9e3779b97f4a7c15ull;
 static uint8_t tab[65536]; { static unsigned cnt[256]; long cum=0; int u=0; for(int i=0;i<(1<<20);i++){ double u1=((rn(&s)>>11)+0.5)/9007199254740992.0, u2=((rn(&s)>>11)+0.5)/9007199254740992.0; double v=sqrt(-2*log(u1))*cos(6.283185307179586*u2)*(448/4.2); cnt[hmoe_f32_to_fp8_e4m3((float)(v>448?448:v<-448?-448:v))]++;} for(int c=0;c<256;c++){cum+=cnt[c]; for(;u<(int)((cum<<16)>>20);u++) tab[u]=(uint8_t)c;} }
 for(size_t k=0;k<bytes;k++) b[k]=tab[rn(&s)&0xffff];
 for(int lin=0;lin<3;lin++){int out=lin<2?INTER:DIM,in=lin<2?DIM:INTER; size_t row=(size_t)hmoe_fxp_row_lines(format,in)*HMOE_FXP_LINE_BYTES;
  uint8_t*base=b+(lin?(size_t)hmoe_fxp_linear_lines(format,INTER,DIM)*HMOE_FXP_LINE_BYTES*(lin==2?2:1):0);
  for(int n=0;n<out;n++)for(int g=0;g<hmoe_fxp_groups(in);g++){int32_t sw=hmoe_fxp_scale_word(32768+(uint32_t)(rn(&s)&32767),format==HMOE_FXP_FP8?40:28);memcpy(base+n*row+4*g,&sw,4);}}
 const struct hmoe_fxp_line *p=(const void*)b; struct hmoe_fxp_experts ex={.mode=mode,.dim=DIM,.inter=INTER,.n_experts=1,.packs=&p}; const struct hmoe_fxp_fp8_fix *fx = (format==HMOE_FXP_FP8 && !getenv("NOLISTS")) ? hmoe_fxp_fp8_fix_build(p,DIM,INTER,0) : NULL; ex.fixes=&fx;
 struct hmoe_pool*pool; hmoe_pool_create(&pool,th);
 double best=0; for(int r=0;r<reps;r++){double bps; if(hmoe_fxp_hot_rate(&ex,hmoe_fxp_simd_best(),pool,0,0.3,&bps)) return 1; if(bps>best)best=bps;}
 printf("%s %d thr: %.2f GB/s\n",argv[1],th,best/1e9); return 0;}
