/* hmoe_batch: continuous batching with chunked prefill over the CPU forward pass
 * (docs/runtime.md, "Continuous batching").
 *
 * Requests (prompt token ids, a token limit, stop ids, sampler settings with their own
 * seed) are submitted at any time; each engine step builds ONE hmoe_forward batch:
 *  1. one decode token of every request that is generating;
 *  2. then the next prompt chunk of requests still prefilling, and of waiting requests
 *     (admitted here while fewer than max_seqs are running), in arrival order, while the
 *     step's token budget (max_batch_tokens, decode tokens included) lasts; the first
 *     chunk that does not fit ends the step's prefill (no overtaking).
 * A request owns its latent KV cache (struct hmoe_kv), created when it is admitted and
 * freed when it finishes (stop id, max_tokens, or the context limit); it leaves the step
 * it finishes in and a waiting request takes its place in the next one.
 *
 * Determinism: a prompt is cut into chunks by hmoe_batch_chunk_len, a function of the
 * prompt length and prefill_chunk only, and a request gets at most one chunk per step, so
 * the forward calls that touch a request's cache are the same whatever runs beside it;
 * the forward pass makes a token's logits independent of its batch-mates and of the
 * thread count (hmoe_forward.h), and each request samples with its own sampler. Hence a
 * request's tokens, and the logits they were sampled from, are bit-identical to running
 * it alone with the same settings. With prefill_chunk >= 3 no chunk is a single token,
 * so every chunk is naive MLA, which is bit-identical to a whole-prompt prefill: the
 * result then also equals one hmoe_forward_seq over the prompt plus token-by-token decode.
 *
 * Not thread-safe: one engine, one thread; callbacks run on it, inside hmoe_batch_step.
 */
#ifndef HMOE_BATCH_H
#define HMOE_BATCH_H

#include <stdint.h>

#include "hmoe_config.h"
#include "hmoe_energy.h"
#include "hmoe_forward.h"

struct hmoe_batch;

enum hmoe_batch_finish {
	HMOE_BATCH_RUNNING = 0,  /* not finished: waiting, prefilling or generating */
	HMOE_BATCH_STOP,         /* sampled a stop id (kept as its last token) */
	HMOE_BATCH_LENGTH,       /* generated max_tokens */
	HMOE_BATCH_CONTEXT,      /* the next token's position would reach the context limit */
};

/* What a request asks for. hmoe_batch_submit copies the arrays. */
struct hmoe_batch_params {
	const int *prompt;       /* (n_prompt) token ids, each < vocab_size */
	int n_prompt;            /* >= 1, <= the context limit */
	int max_tokens;          /* >= 1: tokens to generate at most (stop id included) */
	const int *stop;         /* (n_stop) ids that end the request; may be NULL */
	int n_stop;
	float temperature;       /* sampler settings (hmoe_sample.h); 0: greedy */
	float top_p;
	int top_k;
	uint64_t seed;           /* this request's own sampler seed */
	long arrive_step;        /* >= 0: not admitted before this engine step (tests, replay);
				  * a step already past counts as the current one */
	void *user;              /* the caller's, handed back in struct hmoe_batch_req */
};

/* A request as the engine reports it (callbacks, hmoe_batch_request). */
struct hmoe_batch_req {
	int id;                  /* submission order, from 0 */
	void *user;
	int n_prompt;
	int n_prefilled;         /* prompt tokens in its cache so far */
	const int *tokens;       /* (n_tokens) generated so far, a stop id included */
	int n_tokens;
	enum hmoe_batch_finish finish;
	long arrive_step;
	long admit_step;         /* step of its first chunk; -1 while waiting */
	long finish_step;        /* -1 while running */
};

struct hmoe_batch_opts {
	int max_seqs;            /* requests admitted at once (>= 1) */
	int max_batch_tokens;    /* tokens per step (>= prefill_chunk); decode tokens always
				  * run, prefill chunks only while the rest of it lasts */
	int prefill_chunk;       /* prompt tokens per chunk (>= 1) */
	int max_ctx;             /* positions per request (prompt + generated); 0: the model's
				  * max_position_embeddings */
	int n_valid;             /* ids the sampler may choose, [0, n_valid); 0: vocab_size */
	int keep_finished;       /* keep finished requests (their tokens) for hmoe_batch_request
				  * until hmoe_batch_free; 0: released after on_finish returns */
	/* Called for every generated token, in batch order, with the logits row
	 * (vocab_size floats) it was sampled from; r->tokens already holds it. */
	int (*on_token)(void *arg, const struct hmoe_batch_req *r, int token,
			const float *logits);
	/* Called once per request when it finishes (r->finish says why). */
	int (*on_finish)(void *arg, const struct hmoe_batch_req *r);
	void *arg;               /* passed to the callbacks; a callback's negative return
				  * (an hmoe_err code) aborts the step with that error */
	struct hmoe_energy *energy; /* NULL, or meters: each step (forward + sampling) is one
				  * span, split between prefill and decode by its tokens
				  * (hmoe_energy_end_split); not owned */
};

/* Defaults for unset (zero) fields of struct hmoe_batch_opts. */
#define HMOE_BATCH_MAX_SEQS 8
#define HMOE_BATCH_MAX_BATCH_TOKENS 256
#define HMOE_BATCH_PREFILL_CHUNK 64

struct hmoe_batch_stats {
	long steps;              /* forward calls */
	long decode_tokens;      /* batch entries that were decode tokens */
	long prefill_tokens;     /* batch entries that were prompt tokens */
	long prefill_chunks;
	long mixed_steps;        /* steps with both prefill and decode tokens */
	long submitted, finished;
	int max_running;         /* most requests admitted at once */
	int batch_min, batch_max;   /* tokens per step */
	double batch_mean;
	double prefill_s, decode_s; /* wall seconds of the steps (forward + sampling), a mixed
				     * step split by its share of prefill / decode tokens */
};

/* An engine over fwd (not owned), whose model has config cfg. o: NULL for defaults. Bad
 * settings (negative sizes, prefill_chunk > max_batch_tokens, n_valid > vocab) are
 * HMOE_EINPUT errors naming the field. */
int hmoe_batch_create(struct hmoe_batch **out, struct hmoe_forward *fwd,
		      const struct hmoe_config *cfg, const struct hmoe_batch_opts *o);
/* Frees every request (running ones too) and their caches. */
void hmoe_batch_free(struct hmoe_batch *b);

/* Queues a request; *id (may be NULL) gets its id. Bad parameters (empty prompt, ids out
 * of range, a prompt longer than the context, max_tokens < 1) are HMOE_EINPUT errors
 * naming the request. */
int hmoe_batch_submit(struct hmoe_batch *b, const struct hmoe_batch_params *p, int *id);

/* Runs one step. Returns 1 when requests remain, 0 when all submitted requests have
 * finished, or a negative error naming the step and its requests (or a callback's
 * error); after an error the engine is only fit for hmoe_batch_free. When nothing can
 * run until a later arrival, the step clock jumps to that arrival (no forward call).
 * Callbacks may read requests (hmoe_batch_request) but not submit or step. */
int hmoe_batch_step(struct hmoe_batch *b);
/* Steps until every submitted request has finished: 0 or the first error. */
int hmoe_batch_run(struct hmoe_batch *b);

/* The request with this id, or NULL when unknown or released (see keep_finished). */
const struct hmoe_batch_req *hmoe_batch_request(const struct hmoe_batch *b, int id);
/* The step clock: the number of the next step. */
long hmoe_batch_clock(const struct hmoe_batch *b);
const struct hmoe_batch_stats *hmoe_batch_stats(const struct hmoe_batch *b);

/* Length of the prompt chunk that starts at token `done` of an n_prompt-token prompt:
 * prefill_chunk tokens, the last one shorter; when prefill_chunk >= 3 a last chunk of
 * one token is avoided by making the one before it a token shorter (two tokens left),
 * because a one-token chunk runs absorbed MLA, not naive (hmoe_forward.h). */
int hmoe_batch_chunk_len(int n_prompt, int done, int prefill_chunk);

/* "stop", "length", "context" ("running" while unfinished). */
const char *hmoe_batch_finish_name(enum hmoe_batch_finish f);

#endif
