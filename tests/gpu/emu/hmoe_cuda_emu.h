/* hmoe_cuda_emu: a host emulator for the tensor-core attention kernels (the CPU test of
 * runtime/cuda/hmoe_cuda_decode2.cuh and hmoe_cuda_prefill2.cuh; harness emu_attn.cpp).
 *
 * Include this header, with HMOE_CUDA_EMU defined, before the kernel headers: it gives
 * the CUDA builtins they use (qualifiers, thread indices, __syncthreads, shuffles, bf16
 * types and conversions) and the primitives of runtime/cuda/hmoe_cuda_mma.cuh, whose
 * inline-PTX versions that header leaves out under HMOE_CUDA_EMU (same signatures).
 *
 * Execution (hmoe_cuda_emu.cpp): every CUDA thread of a CTA is a fiber (its own stack),
 * all fibers of one CTA run interleaved on one OS thread under a seeded random scheduler
 * (warp priorities redrawn at random points, a random lane order within a warp), CTAs one
 * after another in a random order. A run is deterministic for a seed, so a failure replays
 * exactly. Warp collectives (shfl, ldmatrix, mma.sync) block until all 32 lanes arrive and
 * are computed from the PTX ISA definitions; barriers (bar.sync 0 and named ones) block
 * their participants. cp.async writes NaN at issue and the data at the wait_group that
 * completes it. Checked, each failure reported with CTA, thread and what: shared accesses
 * of the primitives in bounds and aligned, cp.async sources inside a registered global
 * buffer, reads of cp.async data only after its wait_group and a barrier that orders them
 * (vector clocks), no cp.async into bytes another thread may still read or that have a
 * copy in flight, barrier participant counts, lanes of a warp at the same collective,
 * deadlocks, every cp.async committed and waited for at exit; shared memory is poisoned
 * before each CTA and its bytes past the dynamic size are a canary checked after.
 * What it cannot show: the tensor cores' own rounding (products are summed here in
 * double, rounded once to fp32), timing, and what the compiler does to the real asm. */
#ifndef HMOE_CUDA_EMU_H
#define HMOE_CUDA_EMU_H

#ifndef HMOE_CUDA_EMU
#error "hmoe_cuda_emu.h is for HMOE_CUDA_EMU builds"
#endif

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- CUDA qualifiers and builtins ---- */

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__
#define __align__(n) __attribute__((aligned(n)))

struct emu_uint3 {
	unsigned x, y, z;
};
/* threadIdx is the running fiber's; the others are the CTA's */
extern emu_uint3 threadIdx, blockIdx, gridDim, blockDim;

void __syncthreads(void);
float __shfl_xor_sync(unsigned mask, float v, int lane_mask);

static inline int min(int a, int b)
{
	return a < b ? a : b;
}

struct alignas(8) float2 {
	float x, y;
};

static inline float2 make_float2(float x, float y)
{
	return float2{ x, y };
}

struct __nv_bfloat16 {
	uint16_t bits;
};
struct alignas(4) __nv_bfloat162 {
	__nv_bfloat16 x, y;
};

/* fp32 -> bf16, round to nearest even (NaN stays NaN) */
static inline uint16_t emu_f2bf(float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x40);
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}

static inline float emu_bf2f(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;

	memcpy(&f, &u, 4);
	return f;
}

static inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi)
{
	return __nv_bfloat162{ { emu_f2bf(lo) }, { emu_f2bf(hi) } };
}

static inline float __low2float(__nv_bfloat162 v)
{
	return emu_bf2f(v.x.bits);
}

static inline float __high2float(__nv_bfloat162 v)
{
	return emu_bf2f(v.y.bits);
}

static inline float2 __bfloat1622float2(__nv_bfloat162 v)
{
	return float2{ emu_bf2f(v.x.bits), emu_bf2f(v.y.bits) };
}

/* hmoe_cuda_common.cuh's (the CUDA build takes it from there) */
static inline uint16_t hcu_to_bf(float f)
{
	return emu_f2bf(f);
}

/* ---- the primitives of hmoe_cuda_mma.cuh ---- */

uint32_t hmma_smem(const void *p);
void hmma_ldsm_x4(uint32_t r[4], uint32_t addr);
void hmma_ldsm_x4_trans(uint32_t r[4], uint32_t addr);
void hmma_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1);
void hmma_cp16(uint32_t dst, const void *src, bool valid);
void hmma_cp_commit(void);
void emu_cp_wait(int n);
template <int N> inline void hmma_cp_wait(void)
{
	emu_cp_wait(N);
}
void hmma_bar(int id, int threads);

/* ---- running kernels ---- */

/* Global buffers cp.async may read from (others are an error); cleared by the next call
 * with n == 0. */
void emu_global(const void *p, size_t bytes);
void emu_globals_clear(void);

struct emu_launch {
	emu_uint3 grid;
	unsigned threads;         /* blockDim.x (y = z = 1), a multiple of 32, <= 1024 */
	unsigned char *smem;      /* the kernel's extern __shared__ array */
	size_t smem_cap;          /* its size */
	size_t smem_bytes;        /* the dynamic shared memory of the launch (<= smem_cap) */
	const char *name;         /* for messages */
};

/* Runs body() as every thread of every CTA of l (CTAs in a random order); any failed
 * check prints what, where and the seed, and exits with status 1. */
void emu_run(const emu_launch &l, void (*body)(void *), void *arg);

/* The scheduler's randomness (and the CTA order) for the following runs. */
void emu_seed(uint64_t seed);

/* Context printed with any failure message (the case being run). */
void emu_context(const char *what);

#endif
