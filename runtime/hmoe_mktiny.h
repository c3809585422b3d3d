/* hmoe_mktiny: deterministic random checkpoints in the exact Hugging Face DeepSeek-V3
 * layout (names, dtypes, FP8 e4m3 + 128x128 weight_scale_inv, config.json), for tests and
 * benchmarks. Presets and the random init are documented in docs/checkpoint.md.
 *
 * The same config, seed and shard count always give byte-identical files: every tensor
 * chunk draws from its own stream, seeded from (seed, tensor name, chunk), so the output
 * does not depend on the number of threads.
 */
#ifndef HMOE_MKTINY_H
#define HMOE_MKTINY_H

#include <stddef.h>
#include <stdint.h>

#include "hmoe_config.h"

/* Ids of the DeepSeek-V3 tokenizer (128815): head rows past it are padding and are drawn
 * 100x smaller, so a random model does not prefer ids the tokenizer cannot decode. */
#define HMOE_MKTINY_TOKENIZER_IDS 128815

struct hmoe_mktiny_opts {
	const char *out_dir;       /* created if missing */
	uint64_t seed;
	int shards;                /* 1: model.safetensors; N > 1: model-0000i-of-0000N + index */
	const char *tokenizer_dir; /* copy tokenizer.json + tokenizer_config.json from it; NULL:
				    * write no tokenizer */
};

/* Fills cfg with a named preset: "tiny" (every structural feature, small dims) or
 * "small" (~470M parameters, realistic ratios, for benchmarks). */
int hmoe_mktiny_preset(struct hmoe_config *cfg, const char *preset);

/* Writes config.json, the safetensors file(s) and the tokenizer files for cfg. Linear
 * weights are FP8 with block scales when cfg->fp8, else bf16. */
int hmoe_mktiny_write(const struct hmoe_config *cfg, const struct hmoe_mktiny_opts *o);

/* Finds models/deepseek-v3-tokenizer relative to the running executable
 * (<exe dir>/../models, <exe dir>/../../models) or the current directory (./models).
 * Returns 0 and the folder in buf, or HMOE_EINPUT naming the places searched. */
int hmoe_mktiny_find_tokenizer(char *buf, size_t size);

#endif
