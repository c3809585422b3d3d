/* session: what a command needs to run a model: the loaded checkpoint, its tokenizer,
 * worker threads, an expert backend and a forward pass, opened and closed as one. */
#ifndef HMOE_SESSION_H
#define HMOE_SESSION_H

#include "cuda/hmoe_cuda_fwd.h"
#include "hmoe_cli.h"
#include "hmoe_expert.h"
#include "hmoe_forward.h"
#include "hmoe_model.h"
#include "hmoe_pool.h"
#include "hmoe_tok.h"

struct session {
	struct hmoe_model *model;
	struct hmoe_tok *tok;                /* NULL when opened without a tokenizer */
	struct hmoe_pool *pool;
	struct hmoe_expert_backend *experts;
	struct hmoe_forward *fwd;            /* the CPU forward pass (NULL with --attn cuda) */
	const struct hmoe_cuda_api *cuda;    /* --attn cuda: the dlopen'ed GPU backend */
	struct hmoe_cuda_fwd *cuda_fwd;      /* --attn cuda: the GPU forward pass */
	double load_s;                       /* seconds to open everything */
};

/* Flags every model-running command accepts; SESSION_FLAGS expands to their specs. */
#define SESSION_FLAGS                                                                   \
	{ "model", 1, "--model DIR        checkpoint directory (config.json, safetensors)" }, \
	{ "experts", 1, "--experts SPEC     experts: cpu-f32 (default), cpu-fxp[:MODE], kmod[:MODE][,cards=N|,card=I], sched:...; A|B: B where A's device is missing (MODE: fp8|int8|int4[-a8])" }, \
	{ "attn", 1, "--attn MODE        attention: cpu = auto (default), naive, absorb (CPU); cuda (GPU); A|B: B where A's device is missing" }, \
	{ "micro-batches", 1, "--micro-batches N  1 (default) or 2: one micro-batch's attention overlaps the other's experts (CPU)" }, \
	{ "threads", 1, "--threads N        worker threads (default: all CPUs)" }, \
	{ "config", 1, "--config FILE      more of these flags from FILE, 'name = value' per line ('#' comments); the command line wins" }

enum session_flags {
	SESSION_TOKENIZER = 1 << 0,  /* also load DIR/tokenizer.json */
	SESSION_GPU_OK = 1 << 1,     /* the command can run on --attn cuda (session_feed only) */
};

/* Opens the session from the parsed flags; flags: SESSION_*. */
int session_open(struct session *s, const struct cli_args *a, unsigned flags);
void session_close(struct session *s);

/* Feeds tokens[0, n) of one sequence at its next positions and writes the logits of the
 * last one (vocab_size floats), on the CPU forward pass or the GPU one. With the GPU the
 * cache lives on the device and kv is only used for its length bookkeeping. */
int session_feed(struct session *s, struct hmoe_kv *kv, const int *tokens, int n,
		 float *logits);

/* Tokens the sampler may choose: ids that both the tokenizer and the logits have. */
int session_n_valid(const struct session *s);

#endif
