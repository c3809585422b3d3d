/* tok_check: compares hmoe_tok with the reference tokenization that ref.js wrote.
 *
 *   tok_check TOKENIZER_JSON REF_JSONL [REPEAT]
 *
 * For every {"text", "ids", "skip"} line: encode(text) must give exactly ids; decode(ids)
 * must give text back, and with skip_special the reference's "skip"; the streaming
 * decoder, fed one id at a time, must produce the same text. For every {"decode", "text",
 * "skip"} line: decode and the stream must give the reference's text (U+FFFD included).
 * Prints the first mismatches with the tokens around them, then the load time and the
 * encode speed over the corpus (REPEAT passes, default 1). Exit 0 when all match.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "hmoe_err.h"
#include "hmoe_tok.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int n_failed;

static void print_escaped(const char *s, size_t max)
{
	for (size_t i = 0; s[i] && i < max; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\n')
			fputs("\\n", stdout);
		else if (c == '\r')
			fputs("\\r", stdout);
		else if (c == '\t')
			fputs("\\t", stdout);
		else if (c < 0x20 || c == 0x7f)
			printf("\\x%02x", c);
		else
			putchar(c);
	}
}

static void fail(const char *what, const char *text)
{
	if (++n_failed > 20)
		return;
	printf("MISMATCH %s for text \"", what);
	print_escaped(text, 200);
	printf("\"\n");
}

static void print_ids(const struct hmoe_tok *t, const char *label, const int *ids, int n,
		      int from)
{
	printf("  %s:", label);
	for (int i = from; i < n && i < from + 8; i++) {
		const char *s = hmoe_tok_token(t, ids[i]);
		printf(" %d(%s)", ids[i], s ? s : "?");
	}
	printf("\n");
}

/* Streams ids through hmoe_tok_stream_push one at a time; returns the malloc'ed text. */
static char *stream_decode(const struct hmoe_tok *t, const int *ids, int n, int skip)
{
	struct hmoe_tok_stream st;
	size_t cap = 1024, len = 0, total = 1;
	char piece[1024], *out = malloc(total);
	if (!out)
		return NULL;
	out[0] = 0;
	hmoe_tok_stream_init(&st, t, skip);
	for (int i = 0; i <= n; i++) {
		int k = i < n ? hmoe_tok_stream_push(&st, ids[i], piece, cap) :
				hmoe_tok_stream_flush(&st, piece, cap);
		if (k < 0) {
			printf("stream error: %s\n", hmoe_last_error());
			free(out);
			return NULL;
		}
		/* k counts the bytes; a decoded 0x00 byte makes strlen(piece) shorter */
		char *no = realloc(out, total + (size_t)k);
		if (!no) {
			free(out);
			return NULL;
		}
		out = no;
		memcpy(out + len, piece, (size_t)k + 1);
		len += (size_t)k;
		total += (size_t)k;
	}
	return out;
}

static int json_ids(const cJSON *arr, int **ids, int *n)
{
	*n = cJSON_GetArraySize(arr);
	*ids = malloc(((size_t)*n + 1) * sizeof(int));
	if (!*ids)
		return -1;
	int i = 0;
	for (const cJSON *v = arr->child; v; v = v->next)
		(*ids)[i++] = v->valueint;
	return 0;
}

/* decode (plain and streamed) of ids must equal want (with skip_special = skip). */
static void check_decode(const struct hmoe_tok *t, const int *ids, int n, int skip,
			 const char *want, const char *what, const char *text)
{
	char *got = NULL;
	if (hmoe_tok_decode(t, ids, n, skip, &got) < 0) {
		printf("decode error: %s\n", hmoe_last_error());
		fail(what, text);
		return;
	}
	if (strcmp(got, want) != 0) {
		fail(what, text);
		if (n_failed <= 20) {
			printf("  want \"");
			print_escaped(want, 200);
			printf("\"\n  got  \"");
			print_escaped(got, 200);
			printf("\"\n");
		}
	}
	char *streamed = stream_decode(t, ids, n, skip);
	if (!streamed || strcmp(streamed, got) != 0)
		fail(skip ? "stream decode (skip special) differs from decode" :
		     "stream decode differs from decode", text);
	free(streamed);
	free(got);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: tok_check TOKENIZER_JSON REF_JSONL [REPEAT]\n");
		return 2;
	}
	int repeat = argc > 3 ? atoi(argv[3]) : 1;
	struct hmoe_tok *t;
	double t0 = now_s();
	if (hmoe_tok_load(&t, argv[1]) < 0) {
		fprintf(stderr, "tok_check: %s\n", hmoe_last_error());
		return 1;
	}
	double load_s = now_s() - t0;

	FILE *f = fopen(argv[2], "rb");
	if (!f) {
		fprintf(stderr, "tok_check: cannot open %s\n", argv[2]);
		return 1;
	}
	char *line = NULL;
	size_t line_cap = 0;
	ssize_t got;
	int n_texts = 0, n_decodes = 0;
	long n_ids_total = 0;
	size_t n_bytes = 0;
	double encode_s = 0;
	while ((got = getline(&line, &line_cap, f)) > 0) {
		cJSON *rec = cJSON_Parse(line);
		const cJSON *text = cJSON_GetObjectItemCaseSensitive(rec, "text");
		const cJSON *skip = cJSON_GetObjectItemCaseSensitive(rec, "skip");
		const cJSON *want = cJSON_GetObjectItemCaseSensitive(rec, "ids");
		const cJSON *dec = cJSON_GetObjectItemCaseSensitive(rec, "decode");
		int *ref = NULL, n_ref = 0;
		if (!cJSON_IsString(text) || !cJSON_IsString(skip) ||
		    (!cJSON_IsArray(want) && !cJSON_IsArray(dec)) ||
		    json_ids(want ? want : dec, &ref, &n_ref) < 0) {
			fprintf(stderr, "tok_check: %s: bad line: %.80s\n", argv[2], line);
			return 1;
		}
		const char *s = text->valuestring;
		if (dec) {
			n_decodes++;
			check_decode(t, ref, n_ref, 0, s, "decode", s);
			check_decode(t, ref, n_ref, 1, skip->valuestring, "decode (skip special)",
				     s);
		} else {
			int *ids = NULL, n = 0;
			size_t len = strlen(s);
			double e0 = now_s();
			int ret = 0;
			for (int r = 0; r < repeat && ret == 0; r++) {
				free(ids);
				ret = hmoe_tok_encode(t, s, len, &ids, &n);
			}
			encode_s += now_s() - e0;
			n_bytes += len * (size_t)repeat;
			n_texts++;
			n_ids_total += n_ref;
			if (ret < 0) {
				printf("encode error: %s\n", hmoe_last_error());
				fail("encode", s);
			} else {
				int k = 0;
				while (k < n && k < n_ref && ids[k] == ref[k])
					k++;
				if (k < n || k < n_ref) {
					fail("encode ids", s);
					if (n_failed <= 20) {
						printf("  first difference at id %d of %d (reference "
						       "has %d)\n", k, n, n_ref);
						print_ids(t, "want", ref, n_ref, k > 2 ? k - 2 : 0);
						print_ids(t, "got ", ids, n, k > 2 ? k - 2 : 0);
					}
				}
				check_decode(t, ref, n_ref, 0, s, "decode round trip", s);
				check_decode(t, ref, n_ref, 1, skip->valuestring,
					     "decode (skip special)", s);
			}
			free(ids);
		}
		free(ref);
		cJSON_Delete(rec);
	}
	free(line);
	fclose(f);
	hmoe_tok_free(t);

	printf("tokenizer load: %.0f ms\n", 1e3 * load_s);
	printf("encode: %zu bytes x%d in %.3f s = %.2f MB/s\n", n_bytes / (size_t)repeat, repeat,
	       encode_s, encode_s > 0 ? 1e-6 * (double)n_bytes / encode_s : 0.0);
	if (n_failed) {
		printf("FAILED: %d mismatches (%d texts, %d decode cases)\n", n_failed, n_texts,
		       n_decodes);
		return 1;
	}
	printf("OK: %d texts (%ld ids) and %d decode cases match the reference\n", n_texts,
	       n_ids_total, n_decodes);
	return 0;
}
