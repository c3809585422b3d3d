/* session: what a command needs to run a model: the loaded checkpoint, its tokenizer,
 * worker threads, an expert backend and a forward pass, opened and closed as one. */
#ifndef HMOE_SESSION_H
#define HMOE_SESSION_H

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
	struct hmoe_forward *fwd;
	double load_s;                       /* seconds to open everything */
};

/* Flags every model-running command accepts; SESSION_FLAGS expands to their specs. */
#define SESSION_FLAGS                                                                   \
	{ "model", 1, "--model DIR        checkpoint directory (config.json, safetensors)" }, \
	{ "experts", 1, "--experts SPEC     routed-expert backend: cpu-f32 (default)" },       \
	{ "attn", 1, "--attn MODE        attention form: auto (default), naive, absorb" },     \
	{ "threads", 1, "--threads N        worker threads (default: all CPUs)" }

/* Opens the session from the parsed flags. with_tokenizer: also load DIR/tokenizer.json. */
int session_open(struct session *s, const struct cli_args *a, int with_tokenizer);
void session_close(struct session *s);

/* Tokens the sampler may choose: ids that both the tokenizer and the logits have. */
int session_n_valid(const struct session *s);

#endif
