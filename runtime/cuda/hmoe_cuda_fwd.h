/* hmoe_cuda_fwd: the whole forward pass of one sequence on the GPU backend, driven from
 * the host through struct hmoe_cuda_api (plain C; no CUDA types): bf16 weights and a
 * latent KV cache resident on the GPU, absorbed MLA for every token (a prompt of n tokens
 * runs as n decode queries over the same cache with causal lengths), dense MLPs and the
 * shared/routed experts as cuBLAS bf16 GEMMs, the router on the GPU, and the MoE combine
 * on the host in fp32 (ascending expert id, then + shared, as hmoe_forward does).
 *
 * It is the first step of `hmoe generate --attn cuda` and the subject of the whole-model
 * test (tests/gpu/test_cuda_model.c: GPU logits vs the CPU reference forward pass on a
 * mktiny checkpoint). Routed experts run either on the GPU (bf16 GEMMs) or on an expert
 * backend (cpu-fxp, kmod cards, sched: the heterogeneous configuration), to which the
 * GPU's normed activations and routing are handed per layer while the shared expert runs
 * on the GPU. Not yet: batches of sequences, paged allocation, FP8 weights read
 * directly. Nothing here has run on a GPU yet. */
#ifndef HMOE_CUDA_FWD_H
#define HMOE_CUDA_FWD_H

#include "cuda/hmoe_cuda.h"
#include "hmoe_model.h"

struct hmoe_cuda_fwd;

struct hmoe_expert_backend;

/* Uploads m's weights (m loaded with HMOE_LOAD_F32; rounded to bf16) and allocates a
 * cache of max_len positions and scratch for prompts of up to max_n tokens. The api must
 * be initialised (api->init). experts: NULL to run the routed experts on the GPU, or
 * the backend that runs them (not owned; its routed weights are then not uploaded). */
int hmoe_cuda_fwd_create(struct hmoe_cuda_fwd **out, const struct hmoe_cuda_api *api,
			 const struct hmoe_model *m, int max_len, int max_n,
			 struct hmoe_expert_backend *experts);
void hmoe_cuda_fwd_free(struct hmoe_cuda_fwd *f);

/* Feeds tokens[0, n) at the next positions; writes the fp32 logits (vocab_size) of the
 * last one. Bad ids or running past max_len / max_n are HMOE_EINPUT errors. */
int hmoe_cuda_fwd_feed(struct hmoe_cuda_fwd *f, const int *tokens, int n, float *logits);

#endif
