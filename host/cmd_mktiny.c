/* cmd_mktiny: `hmoe mktiny`: write a deterministic random DeepSeek-V3 checkpoint.
 *
 *   hmoe mktiny --out DIR [--seed N] [--preset tiny|small] [--shards N]
 *               [--bf16] [--tokenizer DIR | --no-tokenizer]
 */
#include <stdio.h>

#include "hmoe_cli.h"
#include "hmoe_err.h"
#include "hmoe_mktiny.h"

static const struct cli_flag mktiny_flags[] = {
	{ "out", 1, "--out DIR          output folder (created; old checkpoint files replaced)" },
	{ "seed", 1, "--seed N           random seed (default 1); same seed, same bytes" },
	{ "preset", 1, "--preset NAME      tiny (default, ~55M params) or small (~470M)" },
	{ "shards", 1, "--shards N         write N files model-0000i-of-0000N + index (default 1)" },
	{ "bf16", 0, "--bf16             bf16 linears instead of FP8 + weight_scale_inv" },
	{ "tokenizer", 1, "--tokenizer DIR    copy tokenizer.json and tokenizer_config.json "
			  "from DIR (default: models/deepseek-v3-tokenizer)" },
	{ "no-tokenizer", 0, "--no-tokenizer     write no tokenizer files" },
	{ "help", 0, "--help             this message" },
};
#define N_MKTINY_FLAGS ((int)(sizeof(mktiny_flags) / sizeof(mktiny_flags[0])))

int cmd_mktiny(int argc, char **argv)
{
	struct cli_args a;
	struct hmoe_config cfg;
	struct hmoe_mktiny_opts o = { 0 };
	char tok[4096];
	const char *preset;
	uint64_t seed;
	long shards;
	int ret;

	if ((ret = cli_parse(&a, "mktiny", mktiny_flags, N_MKTINY_FLAGS, argc, argv)))
		return cli_fail(ret);
	if (cli_has(&a, "help")) {
		cli_usage("mktiny", "Write a deterministic random checkpoint in the Hugging Face "
			  "DeepSeek-V3 layout.", mktiny_flags, N_MKTINY_FLAGS);
		cli_free(&a);
		return 0;
	}
	preset = cli_str(&a, "preset", "tiny");
	if (a.n_positional)
		ret = hmoe_err(HMOE_EINPUT, "hmoe mktiny: unexpected argument '%s'",
			       a.positional[0]);
	else if (cli_has(&a, "tokenizer") && cli_has(&a, "no-tokenizer"))
		ret = hmoe_err(HMOE_EINPUT, "hmoe mktiny: --tokenizer and --no-tokenizer conflict");
	if (ret || (ret = cli_req(&a, "out", &o.out_dir)) ||
	    (ret = cli_u64(&a, "seed", 1, &seed)) ||
	    (ret = cli_int(&a, "shards", 1, 1, 99999, &shards)) ||
	    (ret = hmoe_mktiny_preset(&cfg, preset)))
		goto out;
	o.seed = seed;
	o.shards = (int)shards;
	if (cli_has(&a, "bf16"))
		cfg.fp8 = 0;
	if (cli_has(&a, "tokenizer"))
		o.tokenizer_dir = cli_str(&a, "tokenizer", NULL);
	else if (!cli_has(&a, "no-tokenizer")) {
		if ((ret = hmoe_mktiny_find_tokenizer(tok, sizeof(tok))))
			goto out;
		o.tokenizer_dir = tok;
	}
	ret = hmoe_mktiny_write(&cfg, &o);
	if (!ret)
		printf("wrote %s (preset %s, seed %llu, %d file%s)\n", o.out_dir, preset,
		       (unsigned long long)seed, o.shards, o.shards > 1 ? "s" : "");
out:
	cli_free(&a);
	return ret ? cli_fail(ret) : 0;
}
