/* tok_lines: batch tokenizer for the training-data generator (tools/train/arith_data.py).
 *
 * Reads lines from stdin, one text per line, where the byte 0x01 stands for "\n" (so a
 * multi-line conversation fits on one line), encodes each with the C tokenizer (libhmoe's
 * hmoe_tok, the one `hmoe` itself uses) and writes its ids space-separated on one line.
 *
 * usage: tok_lines TOKENIZER_JSON < texts > ids
 * Build: see tools/train/README.md (cc ... build/libhmoe.a).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmoe_err.h"
#include "hmoe_tok.h"

int main(int argc, char **argv)
{
	struct hmoe_tok *tok;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	long n_line = 0;
	int ret;

	if (argc != 2) {
		fprintf(stderr, "usage: tok_lines TOKENIZER_JSON < texts > ids\n");
		return 2;
	}
	ret = hmoe_tok_load(&tok, argv[1]);
	if (ret) {
		fprintf(stderr, "tok_lines: %s\n", hmoe_last_error());
		return 2;
	}
	while ((len = getline(&line, &cap, stdin)) >= 0) {
		int *ids = NULL, n = 0;

		n_line++;
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		for (ssize_t i = 0; i < len; i++)
			if (line[i] == '\x01')
				line[i] = '\n';
		ret = hmoe_tok_encode(tok, line, (size_t)len, &ids, &n);
		if (ret) {
			fprintf(stderr, "tok_lines: line %ld: %s\n", n_line, hmoe_last_error());
			free(line);
			hmoe_tok_free(tok);
			return 2;
		}
		for (int i = 0; i < n; i++)
			printf(i ? " %d" : "%d", ids[i]);
		putchar('\n');
		free(ids);
	}
	free(line);
	hmoe_tok_free(tok);
	return ferror(stdout) ? 1 : 0;
}
