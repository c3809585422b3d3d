/* cmd_detokenize: `hmoe detokenize`: token ids back to text.
 *
 *   hmoe detokenize --model DIR --ids 19923,14,1026     -> "Hello, my"
 */
#include <stdio.h>
#include <stdlib.h>

#include "hmoe_cli.h"
#include "hmoe_err.h"
#include "hmoe_tok.h"

static const struct cli_flag detokenize_flags[] = {
	{ "model", 1, "--model DIR        model directory holding tokenizer.json" },
	{ "tokenizer", 1, "--tokenizer FILE   a tokenizer.json (instead of --model)" },
	{ "ids", 1, "--ids 1,2,3        the token ids, comma separated" },
	{ "skip-special", 0, "--skip-special     drop special tokens (BOS, EOS, ...)" },
	{ "raw", 0, "--raw              write the text only, without a final newline" },
	{ "help", 0, "--help             this message" },
};
#define N_DETOKENIZE_FLAGS ((int)(sizeof(detokenize_flags) / sizeof(detokenize_flags[0])))

int cmd_detokenize(int argc, char **argv)
{
	struct cli_args a;
	struct hmoe_tok *tok = NULL;
	int *ids = NULL, n_ids = 0, ret;
	char *text = NULL;

	ret = cli_parse(&a, "detokenize", detokenize_flags, N_DETOKENIZE_FLAGS, argc, argv);
	if (ret < 0)
		return cli_fail(ret);
	if (cli_has(&a, "help")) {
		cli_usage("detokenize", "Decodes token ids to text (invalid UTF-8 shows as U+FFFD).",
			  detokenize_flags, N_DETOKENIZE_FLAGS);
		cli_free(&a);
		return 0;
	}
	if (a.n_positional > 0)
		ret = hmoe_err(HMOE_EINPUT, "hmoe detokenize: unexpected argument '%s' (ids go in "
			       "--ids)", a.positional[0]);
	if (ret == 0)
		ret = cli_int_list(&a, "ids", &ids, &n_ids);
	if (ret == 0)
		ret = hmoe_tok_open(&tok, cli_str(&a, "model", NULL), cli_str(&a, "tokenizer", NULL));
	if (ret == 0)
		ret = hmoe_tok_decode(tok, ids, n_ids, cli_has(&a, "skip-special"), &text);
	if (ret == 0) {
		fputs(text, stdout);
		if (!cli_has(&a, "raw"))
			fputc('\n', stdout);
		if (fflush(stdout) != 0)
			ret = hmoe_err(HMOE_EIO, "hmoe detokenize: writing stdout failed");
	}
	free(text);
	free(ids);
	hmoe_tok_free(tok);
	cli_free(&a);
	return ret < 0 ? cli_fail(ret) : 0;
}
