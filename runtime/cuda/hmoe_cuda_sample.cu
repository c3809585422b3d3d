/* hmoe_cuda_sample: choosing the next token on the GPU, so decode does not copy a
 * (batch, 129280) fp32 logits matrix to the host: greedy argmax, and temperature with
 * top-p (nucleus) sampling. The random numbers come from the host (one u per row), so
 * the host's seeded stream stays the only source of randomness.
 *
 * Top-p is defined without sorting: with e_i = exp((l_i - max) / T) and Z = sum e_i,
 * the kept set is {i : e_i >= theta}, theta the largest value such that the kept mass
 * sum_{e_i >= theta} e_i >= top_p * Z (the same set as "smallest prefix of the sorted
 * probabilities reaching top_p", up to ties). theta is found by bisection on the bit
 * pattern of a non-negative float (31 steps, each a block-wide sum), then u * kept mass
 * is located by walking the kept ids in ascending order. CPU reference: hcu_ref_sample.
 */
#include <math.h>

#include "hmoe_cuda.h"
#include "hmoe_cuda_common.cuh"

#define SAMPLE_THREADS 1024

__device__ float kept_mass(const float *l, int n, float m, float inv_t, float theta,
			   float *sbuf)
{
	float s = 0.0f;

	for (int i = threadIdx.x; i < n; i += blockDim.x) {
		float e = expf((l[i] - m) * inv_t);

		if (e >= theta)
			s += e;
	}
	return hcu_block_sum(s, sbuf);
}

/* One block per row. */
__global__ void sample_kernel1(int32_t *ids, const float *logits, int stride, int n,
			       float temperature, float top_p, const float *u)
{
	__shared__ float sbuf[32];
	__shared__ float chunk_sum[SAMPLE_THREADS];
	__shared__ int best_id[32];
	__shared__ float best_v[32];
	const float *l = logits + (long)blockIdx.x * stride;
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	float bv = -INFINITY, m, inv_t, z, theta, mass, target;
	int bi = n;  /* no candidate yet: larger than every id */

	/* argmax, lowest id on ties (each thread visits ascending ids) */
	for (int i = threadIdx.x; i < n; i += blockDim.x)
		if (l[i] > bv) {
			bv = l[i];
			bi = i;
		}
	for (int o = 16; o > 0; o >>= 1) {
		float ov = __shfl_xor_sync(0xffffffffu, bv, o);
		int oi = __shfl_xor_sync(0xffffffffu, bi, o);

		if (ov > bv || (ov == bv && oi < bi)) {
			bv = ov;
			bi = oi;
		}
	}
	if (lane == 0) {
		best_v[warp] = bv;
		best_id[warp] = bi;
	}
	__syncthreads();
	if (threadIdx.x == 0) {
		for (int w = 1; w < (int)(blockDim.x >> 5); w++)
			if (best_v[w] > best_v[0] || (best_v[w] == best_v[0] && best_id[w] < best_id[0])) {
				best_v[0] = best_v[w];
				best_id[0] = best_id[w];
			}
	}
	__syncthreads();
	if (temperature <= 0.0f || best_id[0] >= n) {
		if (threadIdx.x == 0)
			ids[blockIdx.x] = best_id[0] < n ? best_id[0] : 0;
		return;
	}
	m = best_v[0];
	inv_t = 1.0f / temperature;
	z = kept_mass(l, n, m, inv_t, 0.0f, sbuf);
	theta = 0.0f;
	if (top_p < 1.0f) {
		/* largest theta in [0, 1] with kept_mass(theta) >= top_p * z; e_max = 1 */
		unsigned lo = 0u, hi = 0x3f800001u;  /* bits of 0.0f (ok), just past 1.0f */

		while (hi - lo > 1u) {
			unsigned mid = lo + (hi - lo) / 2u;

			if (kept_mass(l, n, m, inv_t, __uint_as_float(mid), sbuf) >= top_p * z)
				lo = mid;
			else
				hi = mid;
		}
		theta = __uint_as_float(lo);
	}
	/* contiguous chunk per thread, so chunk order is id order */
	int per = (n + (int)blockDim.x - 1) / (int)blockDim.x;
	int c0 = threadIdx.x * per, c1 = min(n, c0 + per);
	float s = 0.0f;

	for (int i = c0; i < c1; i++) {
		float e = expf((l[i] - m) * inv_t);

		if (e >= theta)
			s += e;
	}
	chunk_sum[threadIdx.x] = s;
	__syncthreads();
	if (threadIdx.x != 0)
		return;
	mass = 0.0f;
	for (int k = 0; k < (int)blockDim.x; k++)
		mass += chunk_sum[k];
	target = u[blockIdx.x] * mass;
	float run = 0.0f;
	int pick = -1, last = -1;

	for (int k = 0; k < (int)blockDim.x && pick < 0; k++) {
		if (chunk_sum[k] <= 0.0f)
			continue;
		if (run + chunk_sum[k] <= target) {
			run += chunk_sum[k];
			/* remember the last kept id in case rounding leaves target past the end */
			for (int i = min(n, (k + 1) * per) - 1; i >= k * per; i--)
				if (expf((l[i] - m) * inv_t) >= theta) {
					last = i;
					break;
				}
			continue;
		}
		for (int i = k * per; i < min(n, (k + 1) * per); i++) {
			float e = expf((l[i] - m) * inv_t);

			if (e < theta)
				continue;
			last = i;
			run += e;
			if (run > target) {
				pick = i;
				break;
			}
		}
	}
	ids[blockIdx.x] = pick >= 0 ? pick : (last >= 0 ? last : best_id[0]);
}

int hcu_sample(int32_t *ids, const float *logits, int n_rows, int stride, int n_valid,
	       float temperature, float top_p, const float *u)
{
	int ret = hcu_need_init();

	if (ret)
		return ret;
	HCU_ARG(n_rows >= 0 && n_valid > 0 && stride >= n_valid,
		"sample: n_rows %d, stride %d, n_valid %d", n_rows, stride, n_valid);
	HCU_ARG(top_p > 0.0f, "sample: top_p %g must be > 0", (double)top_p);
	HCU_ARG(temperature <= 0.0f || u, "sample: temperature %g needs random numbers u",
		(double)temperature);
	if (n_rows == 0)
		return 0;
	sample_kernel1<<<n_rows, SAMPLE_THREADS, 0, hcu.stream>>>(ids, logits, stride, n_valid,
								  temperature, top_p, u);
	CUDA_CHECK_LAUNCH();
	return 0;
}
