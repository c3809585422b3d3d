/* hmoe_expert: the interface every routed-expert backend implements.
 *
 * The forward pass routes the tokens of one MoE layer, then hands the whole layer's
 * work (one micro-batch's, when it runs two: hmoe_forward_set_micro_batches) to an
 * expert backend: for every (token, slot) pair it wants y = expert(x_token)
 * of the chosen expert, *unweighted*. The caller combines the slots itself, in ascending
 * expert-index order, with the router weights. Because the combine is done once, by one
 * function, any two backends whose per-expert outputs are bit-identical give
 * bit-identical layer outputs whatever their internal grouping, threading or timing.
 *
 * Backends: "cpu-f32" (float reference, runtime/hmoe_expert_f32.c), "cpu-fxp[:FORMAT]"
 * (fixed point, hls/ kernel), "kmod[:FORMAT][,cards=N]" (cards through hmoe.ko,
 * runtime/hmoe_expert_kmod.c).
 */
#ifndef HMOE_EXPERT_H
#define HMOE_EXPERT_H

#include "hmoe_model.h"

struct hmoe_pool;
struct hmoe_expert_backend;

/* One MoE layer's routed work. */
struct hmoe_expert_batch {
	int layer;
	int n_tokens;
	int top_k;
	const float *x;        /* (n_tokens, dim) ffn-normed activations */
	const int *expert_ids; /* (n_tokens, top_k) chosen experts */
	float *y;              /* (n_tokens, top_k, dim) out: unweighted expert outputs */
};

struct hmoe_expert_ops {
	const char *name;
	/* Prepares weights for every MoE layer of m (packing, uploads). `arg` is the text
	 * after "name:" in the backend spec, or NULL. */
	int (*init)(struct hmoe_expert_backend *b, const struct hmoe_model *m, const char *arg);
	int (*run)(struct hmoe_expert_backend *b, const struct hmoe_expert_batch *batch);
	void (*fini)(struct hmoe_expert_backend *b);
	/* Optional asynchronous pair (both NULL: the backend is synchronous, and
	 * hmoe_expert_submit() runs the batch at once). submit starts the batch's work
	 * (quantise, upload, queue) and returns without waiting for it; the caller keeps
	 * *batch and every array it points to valid and untouched until wait(ticket)
	 * returns, which completes the batch exactly as run() would (same y, bit for bit,
	 * same fallbacks). At most HMOE_EXPERT_MAX_INFLIGHT batches are outstanding at a
	 * time, and they are waited in submission order. The ticket is the backend's. */
	int (*submit)(struct hmoe_expert_backend *b, const struct hmoe_expert_batch *batch,
		      int *ticket);
	int (*wait)(struct hmoe_expert_backend *b, int ticket);
};

/* Batches a caller may have submitted and not yet waited (two micro-batches). */
#define HMOE_EXPERT_MAX_INFLIGHT 2

struct hmoe_expert_backend {
	const struct hmoe_expert_ops *ops;
	const struct hmoe_model *model;
	struct hmoe_pool *pool;  /* worker threads shared with the forward pass */
	void *priv;
	/* hmoe_expert_submit() on a synchronous backend: results kept for wait */
	int sync_ret[HMOE_EXPERT_MAX_INFLIGHT];
	int sync_next;
};

/* Creates a backend from a spec such as "cpu-f32" or "cpu-fxp:int8". An unknown name is
 * an HMOE_EINPUT error that lists the known ones. */
int hmoe_expert_open(struct hmoe_expert_backend **out, const char *spec,
		     const struct hmoe_model *m, struct hmoe_pool *pool);
void hmoe_expert_close(struct hmoe_expert_backend *b);

/* The callers' side of submit/wait, for every backend: with a synchronous backend,
 * submit runs the batch and keeps its result for wait. Same contract as the ops. */
int hmoe_expert_submit(struct hmoe_expert_backend *b, const struct hmoe_expert_batch *batch,
		       int *ticket);
int hmoe_expert_wait(struct hmoe_expert_backend *b, int ticket);
/* 1 when the backend really overlaps (has submit/wait). */
int hmoe_expert_is_async(const struct hmoe_expert_backend *b);

/* The registry: each backend file defines one of these. */
extern const struct hmoe_expert_ops hmoe_expert_cpu_f32_ops;
extern const struct hmoe_expert_ops hmoe_expert_cpu_fxp_ops;
extern const struct hmoe_expert_ops hmoe_expert_sched_ops;   /* runtime/hmoe_expert_sched.c */
extern const struct hmoe_expert_ops hmoe_expert_kmod_ops;    /* runtime/hmoe_expert_kmod.c */

#endif
