/* cmd_logits: `hmoe logits`: fp32 logits of every position of a token sequence, from the
 * CPU reference forward pass (runtime/hmoe_forward.h).
 *
 *   hmoe logits --model DIR --tokens 0,15,27 --out logits.f32
 *   hmoe logits --model DIR --tokens 0,15,27 --attn absorb --step 1 --threads 2
 *
 * The file holds (n_tokens, vocab_size) float32, row-major, little-endian, no header.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmoe_cli.h"
#include "hmoe_err.h"
#include "hmoe_expert.h"
#include "hmoe_forward.h"
#include "hmoe_model.h"
#include "hmoe_pool.h"

static const struct cli_flag logits_flags[] = {
	{ "model", 1, "--model DIR        checkpoint directory (config.json + safetensors)" },
	{ "tokens", 1, "--tokens LIST      comma-separated token ids, e.g. 0,15,27" },
	{ "out", 1, "--out FILE         write the logits (n_tokens, vocab) fp32 LE here" },
	{ "attn", 1, "--attn FORM        auto (default), naive or absorb" },
	{ "experts", 1, "--experts SPEC     routed experts: cpu-f32 (default), cpu-fxp[:FMT], kmod[:FMT][,cards=N], sched:..." },
	{ "threads", 1, "--threads N        worker threads (default: one per CPU)" },
	{ "step", 1, "--step N           feed N tokens per forward call (default all at once;"
		     " 1 = decode one at a time through the KV cache)" },
	{ "help", 0, "--help             this message" },
};
#define N_LOGITS_FLAGS ((int)(sizeof(logits_flags) / sizeof(logits_flags[0])))

/* Writes n floats to path as little-endian fp32. */
static int write_f32(const char *path, const float *v, size_t n)
{
	FILE *fp = fopen(path, "wb");
	size_t done;

	if (!fp)
		return hmoe_err(HMOE_EINPUT, "hmoe logits: --out %s: cannot create", path);
	if (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__) {
		done = fwrite(v, sizeof(float), n, fp);
	} else {
		for (done = 0; done < n; done++) {
			unsigned char b[4];

			memcpy(b, &v[done], 4);
			unsigned char r[4] = { b[3], b[2], b[1], b[0] };
			if (fwrite(r, 1, 4, fp) != 4)
				break;
		}
	}
	if (fclose(fp) != 0 || done != n)
		return hmoe_err(HMOE_EIO, "hmoe logits: --out %s: write failed", path);
	return 0;
}

int cmd_logits(int argc, char **argv)
{
	struct cli_args a;
	struct hmoe_model *m = NULL;
	struct hmoe_pool *pool = NULL;
	struct hmoe_expert_backend *experts = NULL;
	struct hmoe_forward *f = NULL;
	struct hmoe_kv *kv = NULL;
	enum hmoe_attn attn = HMOE_ATTN_AUTO;
	const char *dir, *out;
	int *tokens = NULL, n = 0, has_moe = 0, ret;
	long threads, step;
	float *logits = NULL;
	size_t vocab;

	ret = cli_parse(&a, "logits", logits_flags, N_LOGITS_FLAGS, argc, argv);
	if (ret < 0)
		return cli_fail(ret);
	if (cli_has(&a, "help")) {
		cli_usage("logits", "Runs the fp32 CPU reference forward pass over the tokens and "
			  "writes the logits of every position.", logits_flags, N_LOGITS_FLAGS);
		cli_free(&a);
		return 0;
	}
	if (a.n_positional) {
		ret = hmoe_err(HMOE_EINPUT, "hmoe logits: unexpected argument '%s'", a.positional[0]);
		goto out;
	}
	if ((ret = cli_req(&a, "model", &dir)) || (ret = cli_int_list(&a, "tokens", &tokens, &n)) ||
	    (ret = cli_int(&a, "threads", 0, 0, 256, &threads)) ||
	    (ret = cli_int(&a, "step", 0, 0, 1 << 30, &step)))
		goto out;
	if (cli_has(&a, "attn") && (ret = hmoe_attn_parse(cli_str(&a, "attn", ""), &attn)))
		goto out;
	out = cli_str(&a, "out", NULL);
	if (step == 0 || step > n)
		step = n;

	if ((ret = hmoe_model_load(&m, dir, HMOE_LOAD_F32)))
		goto out;
	for (int i = 0; i < n; i++)
		if (tokens[i] >= m->cfg.vocab_size) {
			ret = hmoe_err(HMOE_EINPUT, "hmoe logits: --tokens: id %d at index %d is not "
				       "below vocab_size %d", tokens[i], i, m->cfg.vocab_size);
			goto out;
		}
	for (int l = 0; l < m->cfg.num_hidden_layers; l++)
		has_moe |= m->layers[l].is_moe;
	if ((ret = hmoe_pool_create(&pool, (int)threads)))
		goto out;
	if (has_moe &&
	    (ret = hmoe_expert_open(&experts, cli_str(&a, "experts", "cpu-f32"), m, pool)))
		goto out;
	if ((ret = hmoe_forward_create(&f, m, experts, pool)) ||
	    (ret = hmoe_kv_create(&kv, &m->cfg, 0)))
		goto out;
	hmoe_forward_set_attn(f, attn);

	vocab = (size_t)m->cfg.vocab_size;
	logits = malloc((size_t)n * vocab * sizeof(float));
	if (!logits) {
		ret = hmoe_err(HMOE_ENOMEM, "hmoe logits: out of memory for %d x %zu logits", n,
			       vocab);
		goto out;
	}
	for (int i = 0; i < n; i += (int)step) {
		int k = n - i < step ? n - i : (int)step;

		if ((ret = hmoe_forward_seq(f, kv, tokens + i, k, 0, logits + (size_t)i * vocab)))
			goto out;
	}
	if (out && (ret = write_f32(out, logits, (size_t)n * vocab)))
		goto out;
	printf("logits: %d x %zu fp32 (attn %s, experts %s, %d threads)%s%s\n", n, vocab,
	       hmoe_attn_name(attn), experts ? experts->ops->name : "none",
	       hmoe_pool_threads(pool), out ? " -> " : "", out ? out : "");

out:
	free(logits);
	hmoe_kv_free(kv);
	hmoe_forward_free(f);
	hmoe_expert_close(experts);
	hmoe_pool_destroy(pool);
	hmoe_model_free(m);
	free(tokens);
	cli_free(&a);
	return ret ? cli_fail(ret) : 0;
}
