/* bt.c: vpbroadcastd from memory, zmm loads and vpdpbusd, alone and mixed, independent
 * destinations, one core (rates per cycle at an assumed 3.2 GHz).
 *   gcc -O2 -march=native bt.c -o /tmp/bt && /tmp/bt */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
#include <stdint.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static int32_t M[64] __attribute__((aligned(64)));
#define DP(a,x,w) __asm__ volatile("vpdpbusd %2, %1, %0" : "+v"(a) : "v"(x), "v"(w))
#define BC(r,o) __asm__ volatile("vpbroadcastd %1, %0" : "=v"(r) : "m"(M[o]))
#define BCQ(r,o) __asm__ volatile("vpbroadcastq %1, %0" : "=v"(r) : "m"(*(int64_t*)&M[o]))
#define LD(r,o) __asm__ volatile("vmovdqa64 %1, %0" : "=v"(r) : "m"(M[o]))
#define BCR(r,s) __asm__ volatile("vpbroadcastd %x1, %0" : "=v"(r) : "v"(s))
int main(){ long n=20000000; double ghz=3.2;
 __m512i a0=_mm512_setzero_si512(),a1=a0,a2=a0,a3=a0,a4=a0,a5=a0,a6=a0,a7=a0,b0,b1,b2,b3, x=_mm512_set1_epi8(3), w=_mm512_set1_epi8(2);
 double t0=now(); for(long i=0;i<n;i++){ BC(b0,0);BC(b1,1);BC(b2,2);BC(b3,3);BC(b0,4);BC(b1,5);BC(b2,6);BC(b3,7);} double t=now()-t0; printf("bcast m32 alone: %.2f/cycle\n",8.0*n/t/1e9/ghz);
 t0=now(); for(long i=0;i<n;i++){ LD(b0,0);LD(b1,16);LD(b2,32);LD(b3,48);LD(b0,0);LD(b1,16);LD(b2,32);LD(b3,48);} t=now()-t0; printf("zmm loads alone: %.2f/cycle\n",8.0*n/t/1e9/ghz);
 t0=now(); for(long i=0;i<n;i++){ BCR(b0,x);BCR(b1,x);BCR(b2,x);BCR(b3,x);BCR(b0,w);BCR(b1,w);BCR(b2,w);BCR(b3,w);} t=now()-t0; printf("bcast reg alone: %.2f/cycle\n",8.0*n/t/1e9/ghz);
 t0=now(); for(long i=0;i<n;i++){ BC(b0,0);DP(a0,x,w);BC(b1,1);DP(a1,x,w);BC(b2,2);DP(a2,x,w);BC(b3,3);DP(a3,x,w);BC(b0,4);DP(a4,x,w);BC(b1,5);DP(a5,x,w);BC(b2,6);DP(a6,x,w);BC(b3,7);DP(a7,x,w);} t=now()-t0; printf("bcast m32 + dp (indep): %.2f dp/cycle\n",8.0*n/t/1e9/ghz);
 t0=now(); for(long i=0;i<n;i++){ LD(b0,0);DP(a0,x,w);LD(b1,16);DP(a1,x,w);LD(b2,32);DP(a2,x,w);LD(b3,48);DP(a3,x,w);LD(b0,0);DP(a4,x,w);LD(b1,16);DP(a5,x,w);LD(b2,32);DP(a6,x,w);LD(b3,48);DP(a7,x,w);} t=now()-t0; printf("zmm load + dp (indep): %.2f dp/cycle\n",8.0*n/t/1e9/ghz);
 t0=now(); for(long i=0;i<n;i++){ BCQ(b0,0);DP(a0,x,w);BCQ(b1,2);DP(a1,x,w);BCQ(b2,4);DP(a2,x,w);BCQ(b3,6);DP(a3,x,w);BCQ(b0,8);DP(a4,x,w);BCQ(b1,10);DP(a5,x,w);BCQ(b2,12);DP(a6,x,w);BCQ(b3,14);DP(a7,x,w);} t=now()-t0; printf("bcastq m64 + dp (indep): %.2f dp/cycle\n",8.0*n/t/1e9/ghz);
 a0=_mm512_add_epi32(a0,_mm512_add_epi32(a1,_mm512_add_epi32(a2,_mm512_add_epi32(a3,_mm512_add_epi32(a4,_mm512_add_epi32(a5,_mm512_add_epi32(a6,a7)))))));
 return _mm512_reduce_add_epi32(_mm512_add_epi32(a0,_mm512_add_epi32(b0,_mm512_add_epi32(b1,_mm512_add_epi32(b2,b3)))))==1; }
