/* hmoe_cli: what every `hmoe` subcommand shares: the command table, flag parsing and
 * the mapping from library errors to one line on stderr and an exit status.
 *
 * Exit status: 0 success, 2 bad input (flags, files, checkpoints), 1 anything else.
 */
#ifndef HMOE_CLI_H
#define HMOE_CLI_H

#include <stdint.h>

/* One accepted flag. takes_value: 1 for `--name VALUE` (or --name=VALUE), 0 for a switch. */
struct cli_flag {
	const char *name;        /* without the leading "--" */
	int takes_value;
	const char *help;        /* "--name VALUE  what it does" line for usage */
};

struct cli_args {
	const char *cmd;          /* "generate", "bench forward", ... for messages */
	const struct cli_flag *flags;
	int n_flags;
	const char **values;      /* [n_flags]: value, "" for a given switch, NULL if absent */
	const char **positional;  /* leftover non-flag words */
	int n_positional;
	char *config_text;        /* --config FILE's text; values point into it */
};

/* Parses argv against flags. Unknown flags, missing values and repeated flags are one
 * error line naming the flag; returns 0 or -HMOE_EINPUT. When the command has a
 * "config" flag and it is given, the file adds flags ("name = value" lines, '#'
 * comments; the command line wins; errors name file and line). */
int cli_parse(struct cli_args *a, const char *cmd, const struct cli_flag *flags,
	      int n_flags, int argc, char **argv);
void cli_free(struct cli_args *a);

int cli_has(const struct cli_args *a, const char *name);
const char *cli_str(const struct cli_args *a, const char *name, const char *def);
/* Required string flag: error "hmoe CMD: --name is required" if absent. */
int cli_req(const struct cli_args *a, const char *name, const char **out);
/* Numbers: the whole value must parse and lie in [lo, hi]; else one error line. */
int cli_int(const struct cli_args *a, const char *name, long def, long lo, long hi, long *out);
int cli_u64(const struct cli_args *a, const char *name, uint64_t def, uint64_t *out);
int cli_float(const struct cli_args *a, const char *name, double def, double lo, double hi,
	      double *out);
/* Comma-separated integers ("0,15,27"); *out malloc'ed. */
int cli_int_list(const struct cli_args *a, const char *name, int **out, int *n);
void cli_usage(const char *cmd, const char *summary, const struct cli_flag *flags, int n);

/* Prints "hmoe: <last error>" and returns the exit status for a negative ret. */
int cli_fail(int ret);

/* A growing NUL-terminated text: a request's or sample's generated output. */
struct cli_text {
	char *s;      /* NULL until something is appended */
	size_t len, cap;
};

int cli_text_append(struct cli_text *t, const char *p, size_t n);
/* Decodes one generated token through its detokenizer stream and appends the bytes
 * (the stop id `eos` adds nothing). Returns 0 or a negative error. */
struct hmoe_tok_stream;
int cli_text_token(struct cli_text *t, struct hmoe_tok_stream *st, int tok, int eos);
/* Appends what the stream still holds (an unfinished UTF-8 sequence) at the end. */
int cli_text_flush(struct cli_text *t, struct hmoe_tok_stream *st);
void cli_text_free(struct cli_text *t);

/* Subcommands; each lives in host/cmd_<name>.c. */
int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_mktiny(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_eval(int argc, char **argv);

#endif
