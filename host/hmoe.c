/* hmoe: the command-line program. One subcommand per file (host/cmd_*.c); this file
 * only dispatches and prints the top-level usage. */
#include <stdio.h>
#include <string.h>

#include "hmoe_cli.h"

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
	{ "info", cmd_info, "config summary, parameter counts, bytes per decoded token" },
	{ "tokenize", cmd_tokenize, "text to token ids" },
	{ "detokenize", cmd_detokenize, "token ids to text" },
	{ "logits", cmd_logits, "fp32 logits of every position of a token sequence" },
	{ "generate", cmd_generate, "generate text from a prompt (--chat for R1 chat)" },
	{ "mktiny", cmd_mktiny, "write a deterministic random checkpoint in the HF layout" },
	{ "eval", cmd_eval, "accuracy on held-out arithmetic or your jsonl problems (R1 protocol)" },
	{ "bench", cmd_bench, "benchmarks with JSON output (forward, ...)" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: hmoe COMMAND [FLAGS]   (hmoe COMMAND --help for its flags)\n\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].run(argc - 2, argv + 2);
	fprintf(stderr, "hmoe: unknown command '%s' (hmoe --help lists them)\n", argv[1]);
	return 2;
}
