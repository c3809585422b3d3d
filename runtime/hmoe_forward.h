/* hmoe_forward: the fp32 CPU reference forward pass of DeepSeek-V3/R1 (docs/forward.md).
 *
 * Embedding -> per layer [RMSNorm -> MLA -> residual -> RMSNorm -> dense MLP or MoE ->
 * residual] -> final RMSNorm -> lm_head, in fp32 with the model's fp32 weights (`w`
 * arrays, hmoe_model loaded with HMOE_LOAD_F32).
 *
 * A call runs one batch: a list of (sequence, token, position) entries, where several
 * sequences at different positions may share the batch. Each sequence is a struct
 * hmoe_kv (its latent KV cache). A sequence's entries must appear in position order with
 * consecutive positions starting at its current length (kv->len); on success the cache
 * holds them and kv->len has advanced.
 *
 * Attention form, per sequence within a batch (HMOE_ATTN_AUTO):
 *  - several new tokens: naive MLA (kv_b up-projection of the whole cached past, full
 *    q.k over qk_head_dim) with a causal mask over past + new: prefill, chunked prefill;
 *  - one new token: absorbed MLA (q_nope absorbed through W_UK into the latent, output
 *    through W_UV): decode.
 * HMOE_ATTN_NAIVE / HMOE_ATTN_ABSORB force one form for every sequence (tests).
 *
 * Routed experts run on an expert backend (hmoe_expert.h); their unweighted outputs are
 * combined here by hmoe_forward_moe_combine, the one combine function. Per MoE layer the
 * batch's routed work is submitted (hmoe_expert_submit), the shared expert runs here
 * meanwhile, then the batch is waited and combined.
 *
 * Micro-batches (hmoe_forward_set_micro_batches, docs/runtime.md "Micro-batch overlap"):
 * with 2, a batch of several sequences is cut into two micro-batches of whole sequences
 * (balanced by token count) and the layers run as a software pipeline, so that while one
 * micro-batch's routed experts are on the expert devices the other's attention runs
 * here. At most two expert batches are in flight, waited in submission order. A batch of
 * one sequence runs as one micro-batch.
 *
 * Threads: matmuls over output rows, attention over (sequence, head), experts over the
 * backend's work items. Results are bit-identical for any thread count, any number of
 * micro-batches, and a token's logits are bit-identical whether its sequence runs alone
 * or in a batch with others. A struct hmoe_forward is not thread-safe: one call at a
 * time. During a call, only the calling thread (and the pool it drives) touches the
 * forward pass's buffers, except the rows of a micro-batch whose experts are in flight:
 * the backend's threads read its xn and expert_ids rows and write its expert_y rows
 * until the wait; this thread leaves those rows alone until then.
 */
#ifndef HMOE_FORWARD_H
#define HMOE_FORWARD_H

#include <stdint.h>

#include "hmoe_expert.h"
#include "hmoe_kv.h"
#include "hmoe_model.h"

struct hmoe_pool;
struct hmoe_forward;

/* Micro-batches a batch may be cut into (one per expert batch in flight). */
#define HMOE_FWD_MAX_MICRO HMOE_EXPERT_MAX_INFLIGHT

enum hmoe_attn {
	HMOE_ATTN_AUTO,   /* naive for several new tokens of a sequence, absorbed for one */
	HMOE_ATTN_NAIVE,
	HMOE_ATTN_ABSORB,
};

/* One entry of a batch. */
struct hmoe_fwd_token {
	struct hmoe_kv *seq;  /* the sequence (its cache) this token extends */
	int token;            /* token id, < vocab_size */
	int pos;              /* its position: seq->len + (earlier entries of seq here) */
	int want_logits;      /* nonzero: write this token's logits */
};

/* What the last hmoe_forward call did (for benchmarks). */
struct hmoe_forward_stats {
	int n_tokens;             /* batch entries */
	int n_logits;             /* logits rows written */
	int64_t weight_bytes;     /* fp32 weight bytes streamed: each linear used counted
				   * once, routed experts once per distinct expert used */
	int64_t kv_bytes;         /* KV-cache bytes read by attention */
	double attn_s, moe_s, dense_s, head_s; /* wall seconds per phase (moe_s: routing,
				   * submit, shared expert, wait, combine) */
	int n_micro;              /* micro-batches the batch ran as (1 or 2) */
	double expert_submit_s;   /* in hmoe_expert_submit: all of a synchronous backend's
				   * expert time, the staging of an asynchronous one */
	double expert_wait_s;     /* the attention device blocked waiting for experts */
	double overlap_s;         /* attention-device work (attention, router, shared
				   * expert, dense MLP) done while an asynchronous expert
				   * batch was in flight: expert time hidden, at most */
};

/* Parses "auto" | "naive" | "absorb"; anything else is an HMOE_EINPUT error. */
int hmoe_attn_parse(const char *s, enum hmoe_attn *out);
const char *hmoe_attn_name(enum hmoe_attn a);

/* Prepares a forward pass over m (which must carry fp32 weights). experts: the routed
 * expert backend (required when the model has MoE layers); pool: worker threads or NULL
 * for serial. Neither is owned. */
int hmoe_forward_create(struct hmoe_forward **out, const struct hmoe_model *m,
			struct hmoe_expert_backend *experts, struct hmoe_pool *pool);
void hmoe_forward_free(struct hmoe_forward *f);
void hmoe_forward_set_attn(struct hmoe_forward *f, enum hmoe_attn mode);
/* Micro-batches per batch: 1 (default) or 2; anything else is an HMOE_EINPUT error. */
int hmoe_forward_set_micro_batches(struct hmoe_forward *f, int n);

/* Runs one batch of n entries. logits: (number of entries with want_logits, vocab_size),
 * rows in batch order; may be NULL when no entry wants logits. Bad token ids, positions
 * or caches are HMOE_EINPUT errors that name the entry; on any error no cache advances. */
int hmoe_forward(struct hmoe_forward *f, const struct hmoe_fwd_token *toks, int n,
		 float *logits);

/* Convenience: feeds tokens[0..n) of one sequence at positions seq->len.. as a single
 * batch and writes the logits of every one of them (n, vocab_size), or only of the last
 * (1, vocab_size) when last_only. */
int hmoe_forward_seq(struct hmoe_forward *f, struct hmoe_kv *seq, const int *tokens, int n,
		     int last_only, float *logits);

const struct hmoe_forward_stats *hmoe_forward_stats(const struct hmoe_forward *f);

/* ---- pieces shared with other backends and tests ---- */

/* Router of one MoE layer for one token: scores from the gate logits (sigmoid, or softmax
 * over experts), group-limited top-k selection on score + bias (non-kept groups masked
 * with -inf; group score = sum of its top-2, or its max when there is no bias), weights
 * = unbiased scores of the chosen experts, normalised when norm_topk_prob, times
 * routed_scaling_factor. logits: (n_routed); ids/weights: (top_k), ids ascending.
 * scratch: 2 * n_routed floats. */
void hmoe_forward_route(const struct hmoe_config *cfg, const float *logits,
			const float *bias, int *ids, float *weights, float *scratch);

/* The one MoE combine: y (dim) = sum over slots in ascending expert-id order of
 * weights[s] * expert_out (top_k, dim)[s], starting from 0. ids must be ascending. */
void hmoe_forward_moe_combine(float *y, const float *expert_out, const int *ids,
			      const float *weights, int top_k, int dim);

#endif
