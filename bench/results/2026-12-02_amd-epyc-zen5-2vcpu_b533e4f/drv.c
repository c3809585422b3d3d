/* drv.c: one-token layer calls (int8 / int4 / fp8 mode; fp8 with random codes, no lists) on
 * N resident packs (2 MiB pages), in rounds: A the driver as built; B the driver with a bare
 * row_acc4 (each line of the four rows loaded and added up, 4 groups of a row at a time,
 * L1 prefetch PF1 = 1536 ahead); C a plain two-thread read of the same 8 packs (the bench
 * probe's AVX-512 loop, 32 chunks). Best call of each per round, GB/s.
 *   MODE [N [ROUNDS [CALLS]]]; from the repository root:
 *   gcc -O2 -D_GNU_SOURCE -Iruntime -Ihls -mavx512f drv.c host/bench_read_avx512.c \
 *       build/libhmoe.a -lcjson -lpcre2-8 -ldl -lm -ldrm -lpthread -o /tmp/drv */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "hmoe_fxp_cpu.h"
#include "hmoe_fxp_pack.h"
#include "hmoe_pool.h"
#include "hmoe_model.h"
#include "hmoe_fxp.h"
#define DIM 7168
#define INTER 2048
uint64_t bench_read_sum_avx512(const uint64_t *buf, size_t n_words);
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static int PF1 = 1536, GB = 4;
static volatile uint64_t sinkv;
__attribute__((target("avx512f,avx512bw")))
static int bare_acc4(const uint8_t *const *rows, int format, int in, const struct hmoe_fxp_xtile *x,
		     const struct hmoe_fxp_rowfix *fix, int64_t *acc)
{
	(void)x; (void)fix;
	int gb = format == HMOE_FXP_INT4 ? 64 : 128, groups = (in + 127) / 128;
	size_t skip = (size_t)hmoe_fxp_scale_lines(in) * 64;
	__m512i s = _mm512_setzero_si512();
	for (int r = 0; r < 4; r++) s = _mm512_xor_si512(s, _mm512_loadu_si512(rows[r]));
	for (int g = 0; g < groups; g += GB) {
		int n = (g + GB <= groups ? GB : groups - g) * gb;
		for (int r = 0; r < 4; r++) {
			const uint8_t *p = rows[r] + skip + (size_t)g * gb;
			for (int i = 0; i < n; i += 64) {
				if (PF1) _mm_prefetch((const char *)p + PF1 + i, _MM_HINT_T0);
				s = _mm512_add_epi64(s, _mm512_loadu_si512(p + i));
			}
		}
	}
	int64_t o[8]; _mm512_storeu_si512(o, s);
	for (int r = 0; r < 4; r++) acc[r] = (o[r] & 0xffff) << 20;
	return 0;
}
struct rj { const uint8_t *const *p; size_t bytes; uint64_t s[64]; };
static void rd(void *a, long i, int t){ (void)t; struct rj *j=a; size_t q=j->bytes/4; q&=~(size_t)63;
	j->s[i]=bench_read_sum_avx512((const uint64_t*)(j->p[i/4]+q*(i%4)), q/8); }
int main(int argc,char**argv){
 int mode; if(hmoe_fxp_format_parse(argv[1],&mode)) return 2; int NE=argc>2?atoi(argv[2]):16, rounds=argc>3?atoi(argv[3]):5, calls=argc>4?atoi(argv[4]):60;
 if(getenv("PF1")) PF1=atoi(getenv("PF1")); if(getenv("GB")) GB=atoi(getenv("GB"));
 int format=hmoe_fxp_mode_format(mode);
 size_t bytes=(size_t)hmoe_fxp_expert_lines(format,DIM,INTER)*HMOE_FXP_LINE_BYTES;
 const struct hmoe_fxp_line **packs=malloc(sizeof(*packs)*NE);
 uint64_t s=88172645463325252ull;
 for(int e=0;e<NE;e++){ uint8_t *b=hmoe_model_weights_alloc(bytes); for(size_t k=0;k<bytes;k++){ s^=s<<13;s^=s>>7;s^=s<<17; b[k]=(uint8_t)s; if(format==HMOE_FXP_FP8&&(b[k]&0x7f)==0x7f) b[k]=0;}
  for(int lin=0;lin<3;lin++){int out=lin<2?INTER:DIM,in=lin<2?DIM:INTER; size_t row=(size_t)hmoe_fxp_row_lines(format,in)*HMOE_FXP_LINE_BYTES;
   uint8_t*base=b+(lin?(size_t)hmoe_fxp_linear_lines(format,INTER,DIM)*HMOE_FXP_LINE_BYTES*(lin==2?2:1):0);
   for(int n=0;n<out;n++)for(int g=0;g<hmoe_fxp_groups(in);g++){int32_t sw=hmoe_fxp_scale_word(40000,format==HMOE_FXP_FP8?40:28);memcpy(base+n*row+4*g,&sw,4);}}
  packs[e]=(const void*)b; }
 struct hmoe_fxp_experts ex={.mode=mode,.dim=DIM,.inter=INTER,.n_experts=NE,.packs=packs};
 struct hmoe_pool*pool; hmoe_pool_create(&pool,2); struct hmoe_fxp_ws *ws=NULL;
 struct hmoe_fxp_simd bare=*hmoe_fxp_simd_best(); bare.row_acc4=bare_acc4;
 const struct hmoe_fxp_simd *v[2]={hmoe_fxp_simd_best(),&bare};
 float *x=calloc(DIM,4), *y=calloc(8*DIM,4); for(int i=0;i<DIM;i++) x[i]=(i%7-3)*0.1f;
 int ids[8]; long cur=0;
 for(int c=0;c<NE;c++){ for(int k=0;k<8;k++) ids[k]=(int)((cur++)%NE); hmoe_fxp_moe_run(&ex,v[0],pool,&ws,1,8,x,ids,y);}
 for(int r=0;r<rounds;r++){ double gbs[3];
  for(int m=0;m<3;m++){ double best=1e9;
   for(int c=0;c<calls;c++){ for(int k=0;k<8;k++) ids[k]=(int)((cur++)%NE); double t1=now();
    if(m<2){ if(hmoe_fxp_moe_run(&ex,v[m],pool,&ws,1,8,x,ids,y)) return 1; }
    else { struct rj j={.bytes=bytes}; const uint8_t *pp[8]; for(int k=0;k<8;k++) pp[k]=(const void*)packs[ids[k]]; j.p=pp; hmoe_pool_run(pool,32,rd,&j); sinkv^=j.s[0]; }
    double dt=now()-t1; if(dt<best) best=dt; }
   gbs[m]=8.0*bytes/best/1e9; }
  printf("%s round %d: kernel %.1f  bare-kernel %.1f  plain-read %.1f GB/s  kernel/bare %.3f  kernel/read %.3f  bare/read %.3f\n",argv[1],r,gbs[0],gbs[1],gbs[2],gbs[0]/gbs[1],gbs[0]/gbs[2],gbs[1]/gbs[2]); fflush(stdout);}
 return 0; }
