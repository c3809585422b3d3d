/* hmoe_cuda_router: the MoE router on the GPU (model.py Gate, noaux_tc), from the gate
 * logits (the gate GEMM runs as gemm_bf16 with fp32 output, HF's precision):
 *   s = sigmoid(logit)            (or softmax over the experts)
 *   sel = s + bias                correction bias: used for selection only
 *   group-limited: group score = sum of its top-2 sel (max when there is no bias); the
 *   topk_group best groups are kept, every other group's sel = -inf (model.py since
 *   commit 1398800; HF's 0.0 mask can choose differently when sel < 0)
 *   top_k of sel; weights = s of the chosen / their sum (norm) * route scale
 * Output per token in ascending expert id, the weights summed in that order, as the CPU
 * router (hmoe_forward_route) does. CPU reference: hcu_ref_route. */
#include <math.h>

#include "hmoe_cuda.h"
#include "hmoe_cuda_common.cuh"

#define ROUTE_MAX_EXPERTS 1024
#define ROUTE_MAX_GROUPS 64
#define ROUTE_MAX_TOPK 32

/* Index of the largest v[i] over the block (lowest i on ties; -inf entries lose to
 * finite ones; returns -1 if all are -inf). Every thread gets the answer. */
__device__ int block_argmax(float v, int i, float *sv, int *si)
{
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;

	if (v == -INFINITY)
		i = -1;
	for (int o = 16; o > 0; o >>= 1) {
		float ov = __shfl_xor_sync(0xffffffffu, v, o);
		int oi = __shfl_xor_sync(0xffffffffu, i, o);

		if (oi >= 0 && (i < 0 || ov > v || (ov == v && oi < i))) {
			v = ov;
			i = oi;
		}
	}
	__syncthreads();
	if (lane == 0) {
		sv[warp] = v;
		si[warp] = i;
	}
	__syncthreads();
	v = lane < nw ? sv[lane] : -INFINITY;
	i = lane < nw ? si[lane] : -1;
	for (int o = 16; o > 0; o >>= 1) {
		float ov = __shfl_xor_sync(0xffffffffu, v, o);
		int oi = __shfl_xor_sync(0xffffffffu, i, o);

		if (oi >= 0 && (i < 0 || ov > v || (ov == v && oi < i))) {
			v = ov;
			i = oi;
		}
	}
	return i;
}

/* One block per token, one thread per expert (blockDim.x >= n_experts, multiple of 32). */
__global__ void route_kernel1(int32_t *ids, float *weights, const float *logits,
			      const float *bias, int n_experts, int n_group, int topk_group,
			      int top_k, int softmax, int norm, float scale)
{
	__shared__ float s[ROUTE_MAX_EXPERTS], sel[ROUTE_MAX_EXPERTS];
	__shared__ float gscore[ROUTE_MAX_GROUPS];
	__shared__ int gkeep[ROUTE_MAX_GROUPS];
	__shared__ float sv[32];
	__shared__ int si[32];
	__shared__ int chosen[ROUTE_MAX_TOPK];
	const float *l = logits + (long)blockIdx.x * n_experts;
	int e = threadIdx.x, gsize = n_experts / n_group;
	float x = e < n_experts ? l[e] : -INFINITY, my;

	if (softmax) {
		float m = hcu_block_max(x, sv), z;
		float ex = e < n_experts ? expf(x - m) : 0.0f;

		z = hcu_block_sum(ex, sv);
		my = ex / z;
	} else {
		my = 1.0f / (1.0f + expf(-x));
	}
	if (e < n_experts) {
		s[e] = my;
		sel[e] = bias ? my + bias[e] : my;
	}
	__syncthreads();
	if (n_group > 1) {
		if (e < n_group) {
			float t1 = -INFINITY, t2 = -INFINITY;

			for (int j = e * gsize; j < (e + 1) * gsize; j++) {
				float v = sel[j];

				if (v > t1) {
					t2 = t1;
					t1 = v;
				} else if (v > t2) {
					t2 = v;
				}
			}
			gscore[e] = (bias && gsize > 1) ? t1 + t2 : t1;
			gkeep[e] = 0;
		}
		__syncthreads();
		if (e == 0) {
			for (int k = 0; k < topk_group; k++) {
				int best = -1;

				for (int g = 0; g < n_group; g++)
					if (!gkeep[g] && (best < 0 || gscore[g] > gscore[best]))
						best = g;
				gkeep[best] = 1;
			}
		}
		__syncthreads();
		if (e < n_experts && !gkeep[e / gsize])
			sel[e] = -INFINITY;
		__syncthreads();
	}
	for (int k = 0; k < top_k; k++) {
		int best = block_argmax(e < n_experts ? sel[e] : -INFINITY, e, sv, si);

		if (e == 0)
			chosen[k] = best;
		if (e == best)
			sel[e] = -INFINITY;
		__syncthreads();
	}
	if (e != 0)
		return;
	/* ascending ids (insertion sort of <= 32), then weights summed in that order */
	for (int a = 1; a < top_k; a++)
		for (int b = a; b > 0 && chosen[b - 1] > chosen[b]; b--) {
			int t = chosen[b];

			chosen[b] = chosen[b - 1];
			chosen[b - 1] = t;
		}
	float sum = 0.0f;

	for (int k = 0; k < top_k; k++)
		sum += chosen[k] >= 0 ? s[chosen[k]] : 0.0f;
	for (int k = 0; k < top_k; k++) {
		float w = chosen[k] >= 0 ? s[chosen[k]] : 0.0f;

		if (norm)
			w = w / sum;
		ids[(long)blockIdx.x * top_k + k] = chosen[k];
		weights[(long)blockIdx.x * top_k + k] = w * scale;
	}
}

int hcu_route(int32_t *ids, float *weights, const float *logits, const float *bias, int n,
	      int n_experts, int n_group, int topk_group, int top_k, int softmax, int norm,
	      float scale)
{
	int threads, ret = hcu_need_init();

	if (ret)
		return ret;
	HCU_ARG(n >= 0 && n_experts > 0 && n_experts <= ROUTE_MAX_EXPERTS,
		"route: n_experts %d (1..%d)", n_experts, ROUTE_MAX_EXPERTS);
	HCU_ARG(n_group >= 1 && n_group <= ROUTE_MAX_GROUPS && n_experts % n_group == 0,
		"route: n_group %d does not divide n_experts %d", n_group, n_experts);
	HCU_ARG(topk_group >= 1 && topk_group <= n_group, "route: topk_group %d of %d groups",
		topk_group, n_group);
	HCU_ARG(top_k >= 1 && top_k <= ROUTE_MAX_TOPK &&
		top_k <= topk_group * (n_experts / n_group),
		"route: top_k %d with %d kept groups of %d experts", top_k, topk_group,
		n_experts / n_group);
	if (n == 0)
		return 0;
	threads = (n_experts + 31) / 32 * 32;
	if (threads < n_group)
		threads = (n_group + 31) / 32 * 32;
	route_kernel1<<<n, threads, 0, hcu.stream>>>(ids, weights, logits, bias, n_experts,
						     n_group, topk_group, top_k, softmax, norm,
						     scale);
	CUDA_CHECK_LAUNCH();
	return 0;
}
