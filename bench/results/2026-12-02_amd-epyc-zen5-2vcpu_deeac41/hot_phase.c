/* hot_phase.c: the one-token kernels' in-cache rate (hmoe_fxp_hot_rate's passes), both
 * passes, the up pass alone and the down pass alone (g_hot_phase 0, 1, 2), per mode,
 * 3 rounds each. MODE...
 * hmoe_fxp_cpu_ph.c: runtime/hmoe_fxp_cpu.c at 4c1b40d with driver-hooks.patch
 * (`patch -o hmoe_fxp_cpu_ph.c runtime/hmoe_fxp_cpu.c < driver-hooks.patch` on a
 * checkout of 4c1b40d), in DIR beside this file.
 *   gcc -O2 -D_GNU_SOURCE -pthread -Iruntime -Ihls -Ihost -IDIR DIR/hot_phase.c
 *       build/libhmoe.a -lcjson -lpcre2-8 -ldl -lm -ldrm -lpthread -o hot_phase */
#include "hmoe_fxp_cpu_ph.c"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hmoe_model.h"
#include "hmoe_fxp_pack.h"
#define DIM 7168
#define INTER 2048
int main(int argc,char**argv){
 struct hmoe_pool*pool; hmoe_pool_create(&pool,2);
 for(int a=1;a<argc;a++){ int mode; if(hmoe_fxp_format_parse(argv[a],&mode)) return 2;
 int format=hmoe_fxp_mode_format(mode);
 size_t bytes=(size_t)hmoe_fxp_expert_lines(format,DIM,INTER)*HMOE_FXP_LINE_BYTES;
 uint64_t s=88172645463325252ull;
 uint8_t *b=hmoe_model_weights_alloc(bytes); for(size_t k=0;k<bytes;k++){ s^=s<<13;s^=s>>7;s^=s<<17; b[k]=(uint8_t)s; if(format==HMOE_FXP_INT8&&b[k]==0x80) b[k]=0;}
 for(int lin=0;lin<3;lin++){int out=lin<2?INTER:DIM,in=lin<2?DIM:INTER; size_t row=(size_t)hmoe_fxp_row_lines(format,in)*HMOE_FXP_LINE_BYTES;
   uint8_t*base=b+(lin?(size_t)hmoe_fxp_linear_lines(format,INTER,DIM)*HMOE_FXP_LINE_BYTES*(lin==2?2:1):0);
   for(int n=0;n<out;n++)for(int g=0;g<hmoe_fxp_groups(in);g++){int32_t sw=hmoe_fxp_scale_word(40000,28);memcpy(base+n*row+4*g,&sw,4);}}
 const struct hmoe_fxp_line *pk=(const void*)b;
 struct hmoe_fxp_experts ex={.mode=mode,.dim=DIM,.inter=INTER,.n_experts=1,.packs=&pk};
 const struct hmoe_fxp_simd *v=hmoe_fxp_simd_best();
 double up=2.0*HOT_UP_ROWS*hmoe_fxp_row_lines(format,DIM)*64, dn=(double)HOT_DOWN_ROWS*hmoe_fxp_row_lines(format,INTER)*64;
 for(int r=0;r<3;r++){ double rt[3];
  for(int ph=0;ph<3;ph++){ g_hot_phase=ph; if(hmoe_fxp_hot_rate(&ex,v,pool,0,0.6,&rt[ph])) return 1; }
  printf("%s: in cache GB/s both %.1f  up %.1f  down %.1f\n",argv[a],rt[0]/1e9,rt[1]*up/(up+dn)/1e9,rt[2]*dn/(up+dn)/1e9); fflush(stdout); }
 hmoe_model_weights_free(b,bytes); }
 return 0; }
