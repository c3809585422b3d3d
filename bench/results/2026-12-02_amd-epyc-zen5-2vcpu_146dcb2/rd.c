/* rd.c: the int8 per-token kernels on NR rows of IN columns (env IN, default 7168) with T
 * tokens, one thread: MODE=lib (default) two row_dots2 calls per four rows, MODE=q4 one
 * row_dots4 call (checked equal first); NR = 4 keeps the weights in L1, NR = 32768 reads
 * them from DRAM. Prints vpdpbusd per cycle at an assumed 3.2 GHz.
 *   gcc -O2 -Iruntime -Ihls rd.c build/libhmoe.a -lcjson -lpcre2-8 -ldl -lm -ldrm \
 *       -lpthread -o /tmp/rd
 *   MODE=q4 /tmp/rd TOKENS PLANES NR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "hmoe_fxp_cpu.h"
#include "hmoe_fxp_pack.h"
#include "hmoe_fxp.h"
static int IN = 7168;
static uint64_t rn(uint64_t *s){*s^=*s<<13;*s^=*s>>7;*s^=*s<<17;return *s;}
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
 if(argc<4) return 2;
 int T=atoi(argv[1]), P=atoi(argv[2]), NR=atoi(argv[3]); if(getenv("IN")) IN=atoi(getenv("IN")); int G=IN/128; uint64_t s=12345;
 size_t rb=(size_t)hmoe_fxp_row_lines(HMOE_FXP_INT8,IN)*64, skip=(size_t)hmoe_fxp_scale_lines(IN)*64;
 uint8_t *rows=aligned_alloc(64,rb*NR); for(size_t i=0;i<rb*NR;i++) rows[i]=(uint8_t)(rn(&s)%255+1);
 int8_t *xq=aligned_alloc(64,(size_t)T*P*IN); int32_t *xs=malloc(4*T*G), *xsum=calloc(T*P*G,4);
 for(size_t i=0;i<(size_t)T*P*IN;i++) xq[i]=(int8_t)((int)(rn(&s)%255)-127);
 for(int t=0;t<T;t++) for(int p=0;p<P;p++) for(int g=0;g<G;g++){int a=0; for(int k=0;k<128;k++) a+=xq[((size_t)t*P+p)*IN+g*128+k]; xsum[(t*P+p)*G+g]=a;}
 struct hmoe_fxp_xtile x={.n_tokens=T,.groups=G,.xq=xq,.xs=xs,.xsum=xsum,.planes=P};
 const struct hmoe_fxp_simd *v=hmoe_fxp_simd_best(); int64_t *d[8]; for(int i=0;i<8;i++) d[i]=malloc(8*64*G*2);
 if(!v->row_dots4||!v->row_dots2) { printf("no row_dots4 here\n"); return 77; }
 { const uint8_t *c4[4]={rows+skip,rows+rb+skip,rows+2*rb+skip,rows+3*rb+skip}; v->row_dots4(c4,HMOE_FXP_INT8,&x,d); v->row_dots2(c4[0],c4[1],HMOE_FXP_INT8,&x,d[4],d[5]); v->row_dots2(c4[2],c4[3],HMOE_FXP_INT8,&x,d[6],d[7]);
   for(int r=0;r<4;r++) if(memcmp(d[r],d[4+r],8*T*G)) { printf("MISMATCH row %d\n",r); return 1; } }
 const char *mode=getenv("MODE")?getenv("MODE"):"lib"; int q4=!strcmp(mode,"q4");
 double best=1e9;
 for(int r=0;r<5;r++){ long calls=0; double t0=now(); do{ for(int i=0;i+4<=NR;i+=4){ const uint8_t *c4[4]={rows+rb*i+skip,rows+rb*(i+1)+skip,rows+rb*(i+2)+skip,rows+rb*(i+3)+skip};
   if(q4) v->row_dots4(c4,HMOE_FXP_INT8,&x,d); else { v->row_dots2(c4[0],c4[1],HMOE_FXP_INT8,&x,d[0],d[1]); v->row_dots2(c4[2],c4[3],HMOE_FXP_INT8,&x,d[2],d[3]);} calls++; } } while(now()-t0<0.3);
  double t=(now()-t0)/calls; if(t<best) best=t; }
 double dps=4.0*T*P*IN/64; printf("%s T=%d P=%d IN=%d NR=%d: %.0f ns per four rows, %.2f dp/cycle at 3.2 GHz\n",mode,T,P,IN,NR,best*1e9,dps/best/3.2e9);
 return 0; }
