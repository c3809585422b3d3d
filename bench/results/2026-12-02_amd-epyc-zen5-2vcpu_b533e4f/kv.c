/* kv.c: one-token layer calls (hmoe_fxp_moe_run, 8 experts, 16 resident packs on 2 MiB
 * pages, 2 threads) with the library's row_acc4 ("built") and with a variant of it
 * ("var"), alternating in rounds in one process; prints the best call's GB/s of each and
 * var / built. The variants are compiled from this tree's kernel file, included here.
 *   MODE VAR [ROUNDS [CALLS]]; env L2, L1 (VAR 13's distances), PROBE=1 (a 256 MiB read by
 *   both threads before each call, as bench experts probes between calls)
 * VAR (int8 / int4 one token; a variant's results are wrong where it drops work):
 *   0  acc_int_1tok as built (a copy; checked to give the same outputs)
 *   1  no terms (dots reduced, added up)       3  x from a constant, no x loads
 *   4  no sign flip of the codes                6  prefetch distances constant {0, 1536}
 *   7  L1 prefetch by inline asm                13 distances from env L2 / L1
 *   30 no terms, no reduction (tree of adds)    31 30 with x from a constant
 *   8-12 bare loops: each line of the four rows loaded and added up, the L1 prefetch
 *        1536 ahead (8: row by row per block of 4 groups; 9-12: other orders and
 *        prefetch placements)
 *   16-22 8 with K = 1, 2, 3, 4, 6, 8, 12 vpdpbusd per line into 8 rotating accumulators
 *   23 the four int instances as separate noinline functions   24 row_acc4 itself
 *   (2, 5, 14, 15: skeletons whose accumulators went through the stack; not comparable)
 * From the repository root:
 *   gcc -O2 -D_GNU_SOURCE -Iruntime -Ihls -mavx2 -mfma -mf16c -mavx512f -mavx512bw \
 *       -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16 kv.c host/bench_read_avx512.c \
 *       build/libhmoe.a -lcjson -lpcre2-8 -ldl -lm -ldrm -lpthread -o /tmp/kv */
#define hmoe_fxp_simd_avx512 hmoe_fxp_simd_avx512_copy
#include "hmoe_fxp_cpu_avx512.c"
#undef hmoe_fxp_simd_avx512
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "hmoe_pool.h"
#include "hmoe_model.h"
#include "hmoe_fxp_pack.h"
static int VAR, G_L2 = 0, G_L1 = 1536;
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static inline __attribute__((always_inline)) void
var_1tok(const uint8_t *const *rows, const int format, int in,
	     const struct hmoe_fxp_xtile *x, const int planes, int64_t *acc_out, const int V)
{
	enum { R = 4 };
	int plane = x->groups * HMOE_FXP_GROUP, groups = x->groups, g = 0;
	int bias_shift = format == HMOE_FXP_INT8 ? 7 : 3;
	int group_bytes = hmoe_fxp_group_bytes(format);
	size_t skip = (size_t)hmoe_fxp_scale_lines(in) * HMOE_FXP_LINE_BYTES;
	const uint8_t *codes[4];
	const int *pd = hmoe_fxp_plan()->rows4;
	int pl2 = pd[0], pl1 = pd[1];
	__m512i tacc[2] = { _mm512_setzero_si512(), _mm512_setzero_si512() };
	const __m512i xc = _mm512_set1_epi8(3);

	for (int r = 0; r < R; r++)
		codes[r] = rows[r] + skip;
	for (; g + 4 <= groups; g += 4) {
		__m512i acc[4][4], d;
		__m512i bias = _mm512_broadcast_i32x4(_mm_slli_epi32(xsum4(x, 0, g), bias_shift));

		if (V == 6 || V == 14 || V == 15)
			prefetch_groups4(codes, R, g, group_bytes, 0, 1536);
		else if (V == 13)
			prefetch_groups4(codes, R, g, group_bytes, G_L2, G_L1);
		else if (V == 7) {
			long pfo = pl1;
#pragma GCC unroll 4
			for (int r = 0; r < R; r++) {
				const uint8_t *p = codes[r] + (size_t)g * group_bytes;
#pragma GCC unroll 8
				for (int i = 0; i < 4 * group_bytes; i += 64)
					__asm__ volatile("prefetcht0 %c2(%0,%1)" :: "r"(p), "r"(pfo), "i"(i));
			}
		} else
			prefetch_groups4(codes, R, g, group_bytes, pl2, pl1);
#pragma GCC unroll 4
		for (int j = 0; j < 4; j++) {
			const int8_t *xp = x->xq + (g + j) * HMOE_FXP_GROUP;
#pragma GCC unroll 4
			for (int r = 0; r < R; r++) {
				__m512i u0, u1;
				if ((V == 4 || V == 15) && format == HMOE_FXP_INT8) {
					u0 = _mm512_loadu_si512(codes[r] + (g + j) * 128);
					u1 = _mm512_loadu_si512(codes[r] + (g + j) * 128 + 64);
				} else
					load_u(codes[r], format, g + j, &u0, &u1);
				if (V == 5 || V == 14)
					acc[r][j] = _mm512_xor_si512(u0, u1);
				else if (V == 3 || V == 31) {
					__m512i a = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), u0, xc), u1, xc);
					if (planes == 2)
						a = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_slli_epi32(a, 7), u0, xc), u1, xc);
					acc[r][j] = a;
				} else
					acc[r][j] = dot_u_planes(u0, u1, xp, planes, plane);
			}
		}
		if (V == 30 || V == 31) {
			__m512i q0 = _mm512_add_epi32(_mm512_add_epi32(acc[0][0], acc[0][1]), _mm512_add_epi32(acc[0][2], acc[0][3]));
			__m512i q1 = _mm512_add_epi32(_mm512_add_epi32(acc[1][0], acc[1][1]), _mm512_add_epi32(acc[1][2], acc[1][3]));
			__m512i q2 = _mm512_add_epi32(_mm512_add_epi32(acc[2][0], acc[2][1]), _mm512_add_epi32(acc[2][2], acc[2][3]));
			__m512i q3 = _mm512_add_epi32(_mm512_add_epi32(acc[3][0], acc[3][1]), _mm512_add_epi32(acc[3][2], acc[3][3]));
			tacc[0] = _mm512_add_epi32(tacc[0], _mm512_add_epi32(_mm512_add_epi32(q0, q1), _mm512_add_epi32(q2, q3)));
			continue;
		}
		if (V == 2 || V == 5 || V == 14) {
			__m512i s = tacc[0];
			for (int r = 0; r < 4; r++) for (int j = 0; j < 4; j++) s = _mm512_add_epi32(s, acc[r][j]);
			tacc[0] = s;
			continue;
		}
		d = _mm512_sub_epi32(reduce16_epi32(acc), bias);
		if (V == 1) {
			tacc[0] = _mm512_add_epi64(tacc[0], _mm512_cvtepi32_epi64(_mm512_castsi512_si256(d)));
			tacc[1] = _mm512_add_epi64(tacc[1], _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(d, 1)));
			continue;
		}
		tacc[0] = terms4x2(_mm512_cvtepi32_epi64(_mm512_castsi512_si256(d)), rows[0],
				   rows[1], x, g, tacc[0]);
		tacc[1] = terms4x2(_mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(d, 1)), rows[2],
				   rows[3], x, g, tacc[1]);
	}
	for (int r = 0; r < R; r++) {
		__m256i t = r % 2 ? _mm512_extracti64x4_epi64(tacc[r / 2], 1) :
				    _mm512_castsi512_si256(tacc[r / 2]);
		__m128i h = _mm_add_epi64(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
		int64_t a = _mm_cvtsi128_si64(h) + _mm_extract_epi64(h, 1);
		if (g < groups) {
			int64_t dd[HMOE_FXP_MAX_IN_GROUPS];
			dots_int_tail(codes[r], format, x, g, dd);
			a += tail_terms(rows[r], x, 0, dd, g);
		}
		acc_out[r] = V ? (a & 0xffff) << 16 : a;
	}
}
#define VF(n) static int var##n(const uint8_t *const *rows, int format, int in, const struct hmoe_fxp_xtile *x, const struct hmoe_fxp_rowfix *fix, int64_t *acc) \
{ (void)fix; if (format == HMOE_FXP_INT8 && x->planes == 2) var_1tok(rows, HMOE_FXP_INT8, in, x, 2, acc, n); \
  else if (format == HMOE_FXP_INT8) var_1tok(rows, HMOE_FXP_INT8, in, x, 1, acc, n); \
  else if (x->planes == 2) var_1tok(rows, HMOE_FXP_INT4, in, x, 2, acc, n); else var_1tok(rows, HMOE_FXP_INT4, in, x, 1, acc, n); return 0; }
VF(0) VF(1) VF(2) VF(3) VF(4) VF(5) VF(6) VF(7) VF(13) VF(14) VF(15) VF(30) VF(31)

static volatile uint64_t sinkv;
static int var8(const uint8_t *const *rows, int format, int in, const struct hmoe_fxp_xtile *x,
		     const struct hmoe_fxp_rowfix *fix, int64_t *acc)
{
	(void)x; (void)fix;
	int gb = format == HMOE_FXP_INT4 ? 64 : 128, groups = (in + 127) / 128, GB = 4, PF1 = 1536;
	size_t skip = (size_t)hmoe_fxp_scale_lines(in) * 64;
	__m512i s = _mm512_setzero_si512();
	for (int r = 0; r < 4; r++) s = _mm512_xor_si512(s, _mm512_loadu_si512(rows[r]));
	for (int g = 0; g < groups; g += GB) {
		int n = (g + GB <= groups ? GB : groups - g) * gb;
		for (int r = 0; r < 4; r++) {
			const uint8_t *p = rows[r] + skip + (size_t)g * gb;
			for (int i = 0; i < n; i += 64) {
				_mm_prefetch((const char *)p + PF1 + i, _MM_HINT_T0);
				s = _mm512_add_epi64(s, _mm512_loadu_si512(p + i));
			}
		}
	}
	int64_t o[8]; _mm512_storeu_si512(o, s);
	for (int r = 0; r < 4; r++) acc[r] = (o[r] & 0xffff) << 16;
	return 0;
}

static inline __attribute__((always_inline)) int bareV(const uint8_t *const *rows, int format, int in, int64_t *acc, const int ORD, const int PFB)
{
	int gb = format == HMOE_FXP_INT4 ? 64 : 128, groups = (in + 127) / 128, PF1 = 1536;
	size_t skip = (size_t)hmoe_fxp_scale_lines(in) * 64;
	__m512i s = _mm512_setzero_si512();
	for (int r = 0; r < 4; r++) s = _mm512_xor_si512(s, _mm512_loadu_si512(rows[r]));
	int g = 0;
	for (; g + 4 <= groups; g += 4) {
		if (PFB)
			for (int r = 0; r < 4; r++)
				for (int i = 0; i < 4 * gb; i += 64)
					_mm_prefetch((const char *)rows[r] + skip + (size_t)g * gb + PF1 + i, _MM_HINT_T0);
		if (ORD) {
#pragma GCC unroll 4
			for (int j = 0; j < 4; j++)
#pragma GCC unroll 4
				for (int r = 0; r < 4; r++) {
					const uint8_t *p = rows[r] + skip + (size_t)(g + j) * gb;
#pragma GCC unroll 2
					for (int i = 0; i < gb; i += 64) {
						if (!PFB) _mm_prefetch((const char *)p + PF1 + i, _MM_HINT_T0);
						s = _mm512_add_epi64(s, _mm512_loadu_si512(p + i));
					}
				}
		} else {
#pragma GCC unroll 4
			for (int r = 0; r < 4; r++) {
				const uint8_t *p = rows[r] + skip + (size_t)g * gb;
#pragma GCC unroll 8
				for (int i = 0; i < 4 * gb; i += 64) {
					if (!PFB) _mm_prefetch((const char *)p + PF1 + i, _MM_HINT_T0);
					s = _mm512_add_epi64(s, _mm512_loadu_si512(p + i));
				}
			}
		}
	}
	for (; g < groups; g++)
		for (int r = 0; r < 4; r++)
			for (int i = 0; i < gb; i += 64)
				s = _mm512_add_epi64(s, _mm512_loadu_si512(rows[r] + skip + (size_t)g * gb + i));
	int64_t o[8]; _mm512_storeu_si512(o, s);
	for (int r = 0; r < 4; r++) acc[r] = (o[r] & 0xffff) << 16;
	return 0;
}
static int var9(const uint8_t *const *rows, int format, int in, const struct hmoe_fxp_xtile *x, const struct hmoe_fxp_rowfix *fix, int64_t *acc)
{ (void)x; (void)fix; return format == HMOE_FXP_INT8 ? bareV(rows, HMOE_FXP_INT8, in, acc, 0, 0) : bareV(rows, HMOE_FXP_INT4, in, acc, 0, 0); }
static int var10(const uint8_t *const *rows, int format, int in, const struct hmoe_fxp_xtile *x, const struct hmoe_fxp_rowfix *fix, int64_t *acc)
{ (void)x; (void)fix; return format == HMOE_FXP_INT8 ? bareV(rows, HMOE_FXP_INT8, in, acc, 1, 0) : bareV(rows, HMOE_FXP_INT4, in, acc, 1, 0); }
static int var11(const uint8_t *const *rows, int format, int in, const struct hmoe_fxp_xtile *x, const struct hmoe_fxp_rowfix *fix, int64_t *acc)
{ (void)x; (void)fix; return format == HMOE_FXP_INT8 ? bareV(rows, HMOE_FXP_INT8, in, acc, 0, 1) : bareV(rows, HMOE_FXP_INT4, in, acc, 0, 1); }
static int var12(const uint8_t *const *rows, int format, int in, const struct hmoe_fxp_xtile *x, const struct hmoe_fxp_rowfix *fix, int64_t *acc)
{ (void)x; (void)fix; return format == HMOE_FXP_INT8 ? bareV(rows, HMOE_FXP_INT8, in, acc, 1, 1) : bareV(rows, HMOE_FXP_INT4, in, acc, 1, 1); }

static inline __attribute__((always_inline)) int bareK(const uint8_t *const *rows, int format, int in, int64_t *acc, const int K)
{
	int gb = format == HMOE_FXP_INT4 ? 64 : 128, groups = (in + 127) / 128, PF1 = 1536;
	size_t skip = (size_t)hmoe_fxp_scale_lines(in) * 64;
	__m512i a[8], xk[12];
	for (int i = 0; i < 8; i++) a[i] = _mm512_setzero_si512();
	for (int k = 0; k < 12; k++) xk[k] = _mm512_set1_epi8((char)(k + 1));
	int g = 0;
	for (; g + 4 <= groups; g += 4) {
#pragma GCC unroll 4
		for (int r = 0; r < 4; r++) {
			const uint8_t *p = rows[r] + skip + (size_t)g * gb;
#pragma GCC unroll 8
			for (int i = 0; i < 4 * gb; i += 64) {
				_mm_prefetch((const char *)p + PF1 + i, _MM_HINT_T0);
				__m512i v = _mm512_loadu_si512(p + i);
#pragma GCC unroll 12
				for (int k = 0; k < K; k++) {
					int q = ((r * 8 + i / 64) * K + k) % 8;
					a[q] = _mm512_dpbusd_epi32(a[q], v, xk[k]);
				}
			}
		}
	}
	for (; g < groups; g++)
		for (int r = 0; r < 4; r++)
			for (int i = 0; i < gb; i += 64)
				a[0] = _mm512_add_epi64(a[0], _mm512_loadu_si512(rows[r] + skip + (size_t)g * gb + i));
	for (int i = 1; i < 8; i++) a[0] = _mm512_add_epi32(a[0], a[i]);
	int64_t o[8]; _mm512_storeu_si512(o, a[0]);
	for (int r = 0; r < 4; r++) acc[r] = (o[r] & 0xffff) << 16;
	return 0;
}
#define VK(n, K) static int var##n(const uint8_t *const *rows, int format, int in, const struct hmoe_fxp_xtile *x, const struct hmoe_fxp_rowfix *fix, int64_t *acc) \
{ (void)x; (void)fix; return format == HMOE_FXP_INT8 ? bareK(rows, HMOE_FXP_INT8, in, acc, K) : bareK(rows, HMOE_FXP_INT4, in, acc, K); }
VK(16, 1) VK(17, 2) VK(18, 3) VK(19, 4) VK(20, 6) VK(21, 8) VK(22, 12)

static __attribute__((noinline)) void ni_i8a16(const uint8_t *const *rows, int in, const struct hmoe_fxp_xtile *x, int64_t *acc) { acc_int_1tok(rows, HMOE_FXP_INT8, in, x, 2, acc); }
static __attribute__((noinline)) void ni_i8a8(const uint8_t *const *rows, int in, const struct hmoe_fxp_xtile *x, int64_t *acc) { acc_int_1tok(rows, HMOE_FXP_INT8, in, x, 1, acc); }
static __attribute__((noinline)) void ni_i4a16(const uint8_t *const *rows, int in, const struct hmoe_fxp_xtile *x, int64_t *acc) { acc_int_1tok(rows, HMOE_FXP_INT4, in, x, 2, acc); }
static __attribute__((noinline)) void ni_i4a8(const uint8_t *const *rows, int in, const struct hmoe_fxp_xtile *x, int64_t *acc) { acc_int_1tok(rows, HMOE_FXP_INT4, in, x, 1, acc); }
static int var23(const uint8_t *const *rows, int format, int in, const struct hmoe_fxp_xtile *x, const struct hmoe_fxp_rowfix *fix, int64_t *acc)
{ (void)fix; if (format == HMOE_FXP_INT8) (x->planes == 2 ? ni_i8a16 : ni_i8a8)(rows, in, x, acc); else (x->planes == 2 ? ni_i4a16 : ni_i4a8)(rows, in, x, acc); return 0; }
static int var24(const uint8_t *const *rows, int format, int in, const struct hmoe_fxp_xtile *x, const struct hmoe_fxp_rowfix *fix, int64_t *acc)
{ return avx512_row_acc4(rows, format, in, x, fix, acc); }
typedef int (*acc4_fn)(const uint8_t *const *, int, int, const struct hmoe_fxp_xtile *, const struct hmoe_fxp_rowfix *, int64_t *);
static int var25(const uint8_t *const *a, int b, int c, const struct hmoe_fxp_xtile *d, const struct hmoe_fxp_rowfix *e, int64_t *f) { return var8(a,b,c,d,e,f); }
static acc4_fn vars[] = { var0, var1, var2, var3, var4, var5, var6, var7, var8, var9, var10, var11, var12, var13, var14, var15, var16, var17, var18, var19, var20, var21, var22, var23, var24, var25, var25, var25, var25, var25, var30, var31 };
#define DIM 7168
#define INTER 2048
uint64_t bench_read_sum_avx512(const uint64_t *buf, size_t n_words);
struct pj { const uint64_t *b; size_t words; uint64_t s[32]; };
static void pjob(void *a, long i, int t){ (void)t; struct pj *j=a; size_t per=j->words/32; j->s[i]=bench_read_sum_avx512(j->b+per*i, per); }
static uint64_t *pbuf; static size_t pwords; static volatile uint64_t psink;
static void probe(struct hmoe_pool *pool){ if(!pbuf) return; struct pj j={pbuf,pwords,{0}}; hmoe_pool_run(pool,32,pjob,&j); psink^=j.s[3]; }
int main(int argc,char**argv){
 int mode; if(hmoe_fxp_format_parse(argv[1],&mode)) return 2; VAR=atoi(argv[2]); if(getenv("L2")) G_L2=atoi(getenv("L2")); if(getenv("L1")) G_L1=atoi(getenv("L1")); int NE=16, rounds=argc>3?atoi(argv[3]):4, calls=argc>4?atoi(argv[4]):40;
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
 struct hmoe_fxp_simd alt=*hmoe_fxp_simd_best(); alt.row_acc4=vars[VAR];
 const struct hmoe_fxp_simd *v[2]={hmoe_fxp_simd_best(),&alt};
 float *x=calloc(DIM,4), *y=calloc(8*DIM,4), *y2=calloc(8*DIM,4); for(int i=0;i<DIM;i++) x[i]=(float)((i*2654435761u)%2001)/1000.0f-1.0f;
 int ids[8]; long cur=0;
 if(getenv("PROBE")){ pwords=(size_t)256<<17; pbuf=aligned_alloc(64,pwords*8); memset(pbuf,1,pwords*8);} 
 for(int k=0;k<8;k++) ids[k]=k;
 hmoe_fxp_moe_run(&ex,v[0],pool,&ws,1,8,x,ids,y); hmoe_fxp_moe_run(&ex,v[1],pool,&ws,1,8,x,ids,y2);
 if(VAR==0 && memcmp(y,y2,8*DIM*4)) { printf("copy differs\n"); return 1; }
 for(int c=0;c<NE;c++){ for(int k=0;k<8;k++) ids[k]=(int)((cur++)%NE); hmoe_fxp_moe_run(&ex,v[0],pool,&ws,1,8,x,ids,y);}
 double rs[64];
 for(int r=0;r<rounds;r++){ double gbs[2];
  for(int mm=0;mm<2;mm++){ int m=r%2?1-mm:mm; double best=1e9;
   for(int c=0;c<calls;c++){ for(int k=0;k<8;k++) ids[k]=(int)((cur++)%NE); probe(pool); double t1=now();
    if(hmoe_fxp_moe_run(&ex,v[m],pool,&ws,1,8,x,ids,y)) return 1;
    double dt=now()-t1; if(dt<best) best=dt; }
   gbs[m]=8.0*bytes/best/1e9; }
  rs[r]=gbs[1]/gbs[0];
  printf("%s var %d round %d: built %.1f  var %.1f GB/s  var/built %.3f\n",argv[1],VAR,r,gbs[0],gbs[1],rs[r]); fflush(stdout);}
 return 0; }
