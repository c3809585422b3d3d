/* overlap.c: how well one core overlaps vector work with reading memory, on synthetic
 * loops. Each run reads 512 MiB (2 MiB pages) as S streams with turns of TB bytes per
 * stream: MODE 0, stream k is the k-th S-th of the buffer (streams as long as possible);
 * MODE 2, items of S streams LRUN bytes long (env, default 64 KiB), the streams of an item
 * LRUN apart, items in order (the driver's work items); MODE 1, rows of 7232 bytes, S
 * consecutive rows advanced together. Per 64-byte line W vector operations (vpdpbusd and
 * vpaddd alternating over 16 accumulators, no dependence on loads but the line's);
 * prefetcht0 D bytes ahead (0: none). "probe" is one stream with one vpxord per line
 * (W = 0, S = 1); each configuration prints its rate from DRAM over it and its rate with
 * the data in the cache ("hot": 4 items of 32 rows, about 0.9 MB, 256 times) over it.
 * THREADS=2 runs two threads on separate buffers (not used: the results below are one
 * thread). CFG="W,D,S,TB,MODE ..." ./overlap ROUNDS; the combinations must be among the
 * K(...) lines in run().
 *   gcc -O2 -march=native -pthread overlap.c -o overlap */
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
#define RB 7232
static size_t LRUN = 65536; static int BURST, BH, NEXTB;
static __m512i A[2][16];
#define ONE(p, ln) { const char *q_ = (p); if (D) _mm_prefetch(q_ + D, _MM_HINT_T0); __m512i w = _mm512_load_si512(q_); if (W == 0) a[ln] = _mm512_xor_si512(a[ln], w); \
  _Pragma("GCC unroll 32") for (int k = 0; k < W; k++) { int i = (ln * W + k) % 16; if (k & 1) a[i] = _mm512_dpbusd_epi32(a[i], w, xa); else a[i] = _mm512_add_epi32(a[i], w); } }
static inline __attribute__((always_inline)) void body(const char *b, size_t n, const int W, int D, const int S, const int TB, const int MODE, __m512i *a, __m512i xa)
{
 if (MODE == 0) { size_t per = n / S / TB * TB;
  for (size_t o = 0; o < per; o += TB)
   _Pragma("GCC unroll 4") for (int s = 0; s < S; s++)
    _Pragma("GCC unroll 16") for (int l = 0; l < TB; l += 64) ONE(b + s * per + o + l, ((l / 64 + s * (TB / 64)) & 7))
 } else if (MODE == 2) { size_t L = LRUN, items = n / (S * L);
  for (size_t it = 0; it < items; it++) { const char *bi = b + it * S * L;
   if (BURST) for (int s = 0; s < S; s++) for (int o = 0; o < BURST; o += 64) { if (BH == 0) _mm_prefetch(bi + s * L + o, _MM_HINT_T0); else _mm_prefetch(bi + s * L + o, _MM_HINT_T2); }
   if (NEXTB) for (int s = 0; s < S; s++) for (int o = 0; o < NEXTB; o += 64) { if (BH == 0) _mm_prefetch(bi + S * L + s * L + o, _MM_HINT_T0); else _mm_prefetch(bi + S * L + s * L + o, _MM_HINT_T2); }
   for (size_t o = 0; o < L; o += TB)
    _Pragma("GCC unroll 4") for (int s = 0; s < S; s++)
     _Pragma("GCC unroll 16") for (int l = 0; l < TB; l += 64) ONE(bi + s * L + o + l, ((l / 64 + s * (TB / 64)) & 7)) }
 } else { size_t rows = n / RB / S * S;
  for (size_t r = 0; r < rows; r += S)
   for (size_t o = 0; o + TB <= RB; o += TB)
    _Pragma("GCC unroll 4") for (int s = 0; s < S; s++)
     _Pragma("GCC unroll 16") for (int l = 0; l < TB; l += 64) ONE(b + (r + s) * RB + o + l, ((l / 64 + s * (TB / 64)) & 7))
 }
}
struct cfg { int W, D, S, TB, MODE; };
static __attribute__((noinline)) void run(const char *b, size_t n, struct cfg c, int t)
{
 __m512i a[16]; for (int i = 0; i < 16; i++) a[i] = A[t][i]; __m512i xa = _mm512_set1_epi8(3);
#define K(W_,S_,TB_,M_) if (c.W == W_ && c.S == S_ && c.TB == TB_ && c.MODE == M_) body(b, n, W_, c.D, S_, TB_, M_, a, xa); else
 K(0,1,512,0) K(20,1,512,0) K(20,4,256,0) K(20,4,128,0) K(20,4,1024,0) K(20,4,256,1) K(20,1,512,1) K(20,2,256,0) K(24,1,512,0) K(24,4,256,0) K(24,4,256,1) K(16,1,512,0) K(16,4,256,0) K(16,4,128,0) K(8,4,128,0) K(8,1,512,0) K(20,4,256,2) K(24,4,256,2) K(16,4,256,2) K(0,4,64,2) K(0,4,128,2) K(0,4,256,2) K(0,4,64,0) K(20,4,64,2) K(20,4,128,2) K(20,4,64,0) K(0,4,256,0) abort();
 for (int i = 0; i < 16; i++) A[t][i] = a[i];
}
static char *BUF; static size_t TOT = (size_t)512 << 20; static struct cfg CUR; static int HOTMODE; static pthread_barrier_t bar;
static void *thr(void *v) { long t = (long)v; pthread_barrier_wait(&bar);
 if (HOTMODE) { for (int r = 0; r < 256; r++) run(BUF + t * (TOT + (4 << 20)) , 4 * 32 * RB, CUR, t); }
 else run(BUF + t * (TOT + (4 << 20)), TOT, CUR, t);
 pthread_barrier_wait(&bar); return NULL; }
static double go(struct cfg c, int threads, int hot) {
 CUR = c; HOTMODE = hot; pthread_t th[2]; pthread_barrier_init(&bar, 0, threads + 1);
 for (long i = 0; i < threads; i++) pthread_create(&th[i], 0, thr, (void *)i);
 pthread_barrier_wait(&bar); double t0 = now(); pthread_barrier_wait(&bar); double dt = now() - t0;
 for (int i = 0; i < threads; i++) pthread_join(th[i], 0); pthread_barrier_destroy(&bar);
 double bytes = hot ? 256.0 * 4 * 32 * RB : (double)TOT; return threads * bytes / dt / 1e9; }
int main(int argc, char **argv) {
 if (getenv("LRUN")) LRUN = atol(getenv("LRUN")); if (getenv("BURST")) BURST = atoi(getenv("BURST")); if (getenv("BH")) BH = atoi(getenv("BH")); if (getenv("NEXTB")) NEXTB = atoi(getenv("NEXTB"));
 int threads = getenv("THREADS") ? atoi(getenv("THREADS")) : 1, rounds = argc > 1 ? atoi(argv[1]) : 3;
 size_t all = 2 * (TOT + (4 << 20)); BUF = aligned_alloc(1 << 21, all); madvise(BUF, all, MADV_HUGEPAGE); memset(BUF, 1, all);
 char *cf = strdup(getenv("CFG")); int n = 0; struct cfg cs[32];
 for (char *t = strtok(cf, " "); t && n < 32; t = strtok(NULL, " ")) { sscanf(t, "%d,%d,%d,%d,%d", &cs[n].W, &cs[n].D, &cs[n].S, &cs[n].TB, &cs[n].MODE); n++; }
 struct cfg probe = { 0, 0, 1, 512, 0 };
 for (int r = 0; r < rounds; r++) {
  double pb = 0; for (int k = 0; k < 3; k++) { double g = go(probe, threads, 0); if (g > pb) pb = g; }
  printf("probe %.1f |", pb);
  for (int i = 0; i < n; i++) { double bd = 0, bh = 0;
   for (int k = 0; k < 3; k++) { double g = go(cs[i], threads, 0); if (g > bd) bd = g; }
   for (int k = 0; k < 2; k++) { double g = go(cs[i], threads, 1); if (g > bh) bh = g; }
   printf(" [%d,%d,%d,%d,%d] %.2f (hot %.2f)", cs[i].W, cs[i].D, cs[i].S, cs[i].TB, cs[i].MODE, bd / pb, bh / pb); }
  printf("\n"); fflush(stdout); }
}
