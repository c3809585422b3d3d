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
 * (fixed point, hls/ kernel), "kmod[:FORMAT][,cards=N|card=I]" (cards through hmoe.ko,
 * runtime/hmoe_expert_kmod.c), "sched:..." (several devices, runtime/hmoe_expert_sched.c).
 *
 * Residency (hmoe_expert_set_resident): a caller that spreads the experts over several
 * backends (the sched backend's devices) tells each which experts it must hold, as a
 * mask (n_layers, n_routed_experts), nonzero = resident. It may do so after init and
 * again at any time when none of this backend's batches is in flight (submitted and
 * not waited, or running on another thread). A backend with the op (kmod) holds only
 * the resident experts (uploads the newly resident ones, forgets the others); one
 * without it holds every expert anyway, and hmoe_expert_set_resident only records the
 * mask. Either way, from that call on a batch that names an expert outside the mask is
 * an HMOE_EINTERNAL error naming the layer and expert (checked by hmoe_expert_run and
 * hmoe_expert_submit; the sched backend never sends one). A failed call leaves the
 * backend unusable for batches naming experts of the new mask that were not resident
 * before (kmod: they stay non-resident); the caller should stop using it.
 */
#ifndef HMOE_EXPERT_H
#define HMOE_EXPERT_H

#include <stdint.h>

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
	/* Optional: x already quantised by the fixed-point contract's quantiser
	 * (hmoe_fxp_quant_x, docs/fxp.md) with xq_planes planes, e.g. on the GPU. A
	 * fixed-point backend whose mode has that many planes uses it instead of quantising
	 * x itself (the same bytes by the contract); every other backend ignores it, so x is
	 * always given. xq (n_tokens, xq_planes, groups(dim) * 128), xs (n_tokens,
	 * groups(dim)); xq_planes 0: none. */
	const int8_t *xq;
	const int32_t *xs;
	int xq_planes;
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
	/* Optional residency (see the top of this file): mask (n_layers, n_routed_experts),
	 * nonzero = this backend must hold that expert; only MoE layers may be nonzero.
	 * Called with no batch in flight. NULL: the backend holds every expert. Too many
	 * experts for the device is an HMOE_EINPUT error saying how many fit. */
	int (*set_resident)(struct hmoe_expert_backend *b, const uint8_t *mask);
};

/* Batches a caller may have submitted and not yet waited (two micro-batches). */
#define HMOE_EXPERT_MAX_INFLIGHT 2

struct hmoe_expert_backend {
	const struct hmoe_expert_ops *ops;
	const struct hmoe_model *model;
	struct hmoe_pool *pool;  /* worker threads shared with the forward pass */
	void *priv;
	int act_planes;          /* fixed-point backends: their activation planes (the
				  * xq_planes they take); 0: float or mixed */
	/* hmoe_expert_submit() on a synchronous backend: results kept for wait */
	int sync_ret[HMOE_EXPERT_MAX_INFLIGHT];
	int sync_next;
	/* the last mask given to hmoe_expert_set_resident (n_layers, n_routed_experts), or
	 * NULL (never called: every expert) */
	uint8_t *resident;
};

/* Creates a backend from a spec such as "cpu-f32" or "cpu-fxp:int8". An unknown name is
 * an HMOE_EINPUT error that lists the known ones. "A|B|..." opens the first alternative
 * whose device is available: only an HMOE_EDEVICE failure (no card, no driver) moves on,
 * noted on stderr; any other error ends the search. */
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
/* ops->run after the residency check: what every caller that is not the backend
 * itself should call. */
int hmoe_expert_run(struct hmoe_expert_backend *b, const struct hmoe_expert_batch *batch);

/* Residency (see the top of this file): calls ops->set_resident when the backend has
 * it, then records the mask (a copy) in b->resident. Only with no batch in flight. */
int hmoe_expert_set_resident(struct hmoe_expert_backend *b, const uint8_t *mask);
/* The recorded mask, or NULL when set_resident was never called (every expert). */
const uint8_t *hmoe_expert_resident(const struct hmoe_expert_backend *b);
/* 0, or the HMOE_EINTERNAL error for the first expert of batch outside b->resident. */
int hmoe_expert_check_resident(const struct hmoe_expert_backend *b,
			       const struct hmoe_expert_batch *batch);

/* The registry: each backend file defines one of these. */
extern const struct hmoe_expert_ops hmoe_expert_cpu_f32_ops;
extern const struct hmoe_expert_ops hmoe_expert_cpu_fxp_ops;
extern const struct hmoe_expert_ops hmoe_expert_sched_ops;   /* runtime/hmoe_expert_sched.c */
extern const struct hmoe_expert_ops hmoe_expert_kmod_ops;    /* runtime/hmoe_expert_kmod.c */

#endif
