/* cmd_tokenize: `hmoe tokenize`: text to token ids with the model's tokenizer.json.
 *
 *   hmoe tokenize --model DIR --text "Hello"        -> "19923" style ids, one line
 *   hmoe tokenize --tokenizer tokenizer.json --file notes.txt --bos
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmoe_cli.h"
#include "hmoe_err.h"
#include "hmoe_tok.h"

static const struct cli_flag tokenize_flags[] = {
	{ "model", 1, "--model DIR        model directory holding tokenizer.json" },
	{ "tokenizer", 1, "--tokenizer FILE   a tokenizer.json (instead of --model)" },
	{ "text", 1, "--text S           the text to encode" },
	{ "file", 1, "--file F           encode the bytes of file F (- for stdin) instead" },
	{ "bos", 0, "--bos              put the BOS id first" },
	{ "help", 0, "--help             this message" },
};
#define N_TOKENIZE_FLAGS ((int)(sizeof(tokenize_flags) / sizeof(tokenize_flags[0])))

/* Reads all of path ("-": stdin) into a malloc'ed buffer. */
static int read_text(const char *path, char **out, size_t *len)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0, cap = 0;

	if (!f)
		return hmoe_err(HMOE_EINPUT, "hmoe tokenize: --file %s: cannot open: %s", path,
				strerror(errno));
	for (;;) {
		if (n + 4096 > cap) {
			char *nb = realloc(buf, cap = cap ? 2 * cap : 65536);
			if (!nb) {
				free(buf);
				if (f != stdin)
					fclose(f);
				return hmoe_err(HMOE_ENOMEM, "hmoe tokenize: out of memory reading %s",
						path);
			}
			buf = nb;
		}
		size_t got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
	}
	int err = ferror(f) ? errno : 0;
	if (f != stdin)
		fclose(f);
	if (err) {
		free(buf);
		return hmoe_err(HMOE_EINPUT, "hmoe tokenize: --file %s: cannot read: %s", path,
				strerror(err));
	}
	*out = buf;
	*len = n;
	return 0;
}

int cmd_tokenize(int argc, char **argv)
{
	struct cli_args a;
	struct hmoe_tok *tok = NULL;
	char *file_text = NULL;
	int *ids = NULL, n_ids = 0, ret;
	const char *text;
	size_t len = 0;

	ret = cli_parse(&a, "tokenize", tokenize_flags, N_TOKENIZE_FLAGS, argc, argv);
	if (ret < 0)
		return cli_fail(ret);
	if (cli_has(&a, "help")) {
		cli_usage("tokenize", "Encodes text to token ids (printed on one line, space "
			  "separated; no BOS unless --bos).", tokenize_flags, N_TOKENIZE_FLAGS);
		cli_free(&a);
		return 0;
	}
	text = cli_str(&a, "text", NULL);
	if (a.n_positional > 0)
		ret = hmoe_err(HMOE_EINPUT, "hmoe tokenize: unexpected argument '%s' (text goes "
			       "in --text)", a.positional[0]);
	else if ((text != NULL) == cli_has(&a, "file"))
		ret = hmoe_err(HMOE_EINPUT, "hmoe tokenize: give exactly one of --text and --file");
	if (ret == 0 && !text) {
		ret = read_text(cli_str(&a, "file", NULL), &file_text, &len);
		text = file_text;
	} else if (ret == 0) {
		len = strlen(text);
	}
	if (ret == 0)
		ret = hmoe_tok_open(&tok, cli_str(&a, "model", NULL), cli_str(&a, "tokenizer", NULL));
	if (ret == 0 && cli_has(&a, "bos") && hmoe_tok_bos(tok) < 0)
		ret = hmoe_err(HMOE_EINPUT, "hmoe tokenize: --bos: the tokenizer has no BOS token");
	if (ret == 0)
		ret = hmoe_tok_encode(tok, text, len, &ids, &n_ids);
	if (ret == 0) {
		const char *sep = "";
		if (cli_has(&a, "bos")) {
			printf("%d", hmoe_tok_bos(tok));
			sep = " ";
		}
		for (int i = 0; i < n_ids; i++, sep = " ")
			printf("%s%d", sep, ids[i]);
		printf("\n");
		if (fflush(stdout) != 0)
			ret = hmoe_err(HMOE_EIO, "hmoe tokenize: writing stdout failed");
	}
	free(ids);
	free(file_text);
	hmoe_tok_free(tok);
	cli_free(&a);
	return ret < 0 ? cli_fail(ret) : 0;
}
