/* test_tok: the tokenizer (runtime/hmoe_tok.c) without the JavaScript reference (that
 * comparison is tests/tok/ref_test.sh).
 *
 * What a user would notice if broken:
 *  - BPE merging in the wrong order (ranks, leftmost on ties), added tokens not matched
 *    leftmost-longest, the pre-tokenizer split ignored: different ids than the model
 *    was trained with, on a small hand-made tokenizer.json where the answer is known;
 *  - BOS/EOS not the ones tokenizer_config.json names; skip_special dropping the wrong
 *    tokens;
 *  - broken tokenizer.json / config files crashing instead of one clear error;
 *  - the DeepSeek tokenizer: slow to load, text not coming back byte-exact after
 *    encode + decode (random multilingual strings), invalid UTF-8 accepted, the stream
 *    decoder printing half a character or losing bytes, out-of-range ids accepted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hmoe_err.h"
#include "hmoe_tok.h"

#include "hmoe_test.h"

static char tmpdir[] = "/tmp/hmoe_test_tok_XXXXXX";

static void write_file(const char *name, const char *text)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	CHECK(f != NULL, "cannot write %s", path);
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

static void remove_file(const char *name)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	unlink(path);
}

/* encode(text) must be exactly want[0, n_want) */
static void expect_ids(const struct hmoe_tok *t, const char *what, const char *text,
		       const int *want, int n_want)
{
	int *ids = NULL, n = 0;
	int ret = hmoe_tok_encode(t, text, strlen(text), &ids, &n);
	CHECK(ret == 0, "%s: encode failed: %s", what, hmoe_last_error());
	int same = ret == 0 && n == n_want;
	for (int i = 0; same && i < n; i++)
		same = ids[i] == want[i];
	if (!same) {
		fprintf(stderr, "FAIL %s: \"%s\" gave", what, text);
		for (int i = 0; i < n; i++)
			fprintf(stderr, " %d", ids[i]);
		fprintf(stderr, ", want");
		for (int i = 0; i < n_want; i++)
			fprintf(stderr, " %d", want[i]);
		fprintf(stderr, "\n");
		failures++;
	}
	free(ids);
}

/* A hand-made tokenizer: single letters, a few merges, added tokens <s> (special),
 * <x> and <xy> (not special). */
static const char *tiny_json(const char *pre_tokenizer)
{
	static char buf[2048];
	snprintf(buf, sizeof(buf),
		 "{\"added_tokens\": ["
		 "{\"id\": 7, \"content\": \"<s>\", \"special\": true},"
		 "{\"id\": 8, \"content\": \"<x>\", \"special\": false},"
		 "{\"id\": 9, \"content\": \"<xy>\", \"special\": false}],"
		 " \"normalizer\": null, \"pre_tokenizer\": %s,"
		 " \"model\": {\"type\": \"BPE\", \"vocab\": {"
		 "\"a\": 0, \"b\": 1, \"c\": 2, \"ab\": 3, \"bc\": 4, \"Ġ\": 5, \"aa\": 10,"
		 " \"<\": 11, \"x\": 12, \"y\": 13, \">\": 14, \"1\": 15, \"2\": 16, \"3\": 17,"
		 " \"4\": 18, \"34\": 19},"
		 " \"merges\": [\"b c\", \"a b\", [\"a\", \"a\"], \"3 4\"]}}",
		 pre_tokenizer);
	return buf;
}

static void test_tiny(void)
{
	struct hmoe_tok *t = NULL;
	char path[256];
	snprintf(path, sizeof(path), "%s/tokenizer.json", tmpdir);
	write_file("tokenizer.json", tiny_json("null"));
	write_file("tokenizer_config.json",
		   "{\"bos_token\": \"<s>\", \"eos_token\": {\"content\": \"<x>\"}}");
	CHECK(hmoe_tok_load_dir(&t, tmpdir) == 0, "tiny: %s", hmoe_last_error());
	if (!t)
		return;
	CHECK(hmoe_tok_n_vocab(t) == 20, "n_vocab %d, want 20 (max id + 1)",
	      hmoe_tok_n_vocab(t));
	CHECK(hmoe_tok_bos(t) == 7 && hmoe_tok_eos(t) == 8, "bos %d eos %d from the config",
	      hmoe_tok_bos(t), hmoe_tok_eos(t));
	CHECK(hmoe_tok_is_special(t, 7) && hmoe_tok_is_special(t, 8) && !hmoe_tok_is_special(t, 3),
	      "is_special");
	CHECK(hmoe_tok_id(t, "ab") == 3 && hmoe_tok_id(t, "<xy>") == 9 && hmoe_tok_id(t, "zz") < 0,
	      "hmoe_tok_id");
	CHECK(hmoe_tok_token(t, 4) && strcmp(hmoe_tok_token(t, 4), "bc") == 0, "token 4");
	CHECK(hmoe_tok_token(t, 6) == NULL, "id 6 has no token");

	/* "b c" has the lower rank: abc -> a + bc, although "a b" comes first in the text */
	expect_ids(t, "rank order", "abc", (int[]){ 0, 4 }, 2);
	/* equal pairs: the leftmost merges first */
	expect_ids(t, "leftmost tie", "aaa", (int[]){ 10, 0 }, 2);
	/* added tokens: leftmost, and the longest at a position; partial ones are text */
	expect_ids(t, "added longest", "a<xy>b<x>c", (int[]){ 0, 9, 1, 8, 2 }, 5);
	expect_ids(t, "added partial", "<x", (int[]){ 11, 12 }, 2);
	expect_ids(t, "added adjacent", "<s><s>", (int[]){ 7, 7 }, 2);
	expect_ids(t, "space is Ġ", "a b", (int[]){ 0, 5, 1 }, 3);
	/* no pre-tokenizer: 1234 is one word, so "3 4" merges */
	expect_ids(t, "no split", "1234", (int[]){ 15, 16, 19 }, 3);

	/* skip_special drops <s> (special) but keeps <x> (added, not special) */
	char *text = NULL;
	CHECK(hmoe_tok_decode(t, (int[]){ 0, 7, 8, 1 }, 4, 1, &text) == 0 && text &&
	      strcmp(text, "a<x>b") == 0, "skip_special: \"%s\"", text ? text : "");
	free(text);
	CHECK(hmoe_tok_decode(t, (int[]){ 0, 6 }, 2, 0, &text) == -HMOE_EINPUT,
	      "id without a token must be an error");
	int *ids = NULL, n;
	CHECK(hmoe_tok_encode(t, "az", 2, &ids, &n) == -HMOE_EINPUT &&
	      strstr(hmoe_last_error(), "0x7a"), "byte without a token: %s", hmoe_last_error());
	hmoe_tok_free(t);

	/* the \p{N}{1,3} split of DeepSeek: "123" and "4" are separate words */
	write_file("tokenizer.json",
		   tiny_json("{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\","
			     " \"pattern\": {\"Regex\": \"\\\\p{N}{1,3}\"}, \"behavior\": \"Isolated\","
			     " \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false,"
			     " \"trim_offsets\": true, \"use_regex\": false}]}"));
	CHECK(hmoe_tok_load(&t, path) == 0, "tiny split: %s", hmoe_last_error());
	if (t) {
		expect_ids(t, "digit split", "1234", (int[]){ 15, 16, 17, 18 }, 4);
		expect_ids(t, "digit split, letters", "ab12", (int[]){ 3, 15, 16 }, 3);
		hmoe_tok_free(t);
	}
	remove_file("tokenizer_config.json");
}

/* Broken files: one error naming the file (and field), never a crash. */
static void expect_load_error(const char *what, const char *json, const char *config,
			      const char *needle)
{
	struct hmoe_tok *t = (struct hmoe_tok *)1;
	write_file("tokenizer.json", json);
	if (config)
		write_file("tokenizer_config.json", config);
	int ret = hmoe_tok_load_dir(&t, tmpdir);
	CHECK(ret == -HMOE_EINPUT, "%s: want HMOE_EINPUT, got %d", what, ret);
	CHECK(t == NULL, "%s: tokenizer must be NULL on error", what);
	CHECK(strstr(hmoe_last_error(), needle) != NULL, "%s: error \"%s\" lacks \"%s\"", what,
	      hmoe_last_error(), needle);
	if (config)
		remove_file("tokenizer_config.json");
}

static void test_errors(void)
{
	struct hmoe_tok *t;
	CHECK(hmoe_tok_load_dir(&t, "/nonexistent/dir") == -HMOE_EINPUT &&
	      strstr(hmoe_last_error(), "/nonexistent/dir/tokenizer.json"), "missing file: %s",
	      hmoe_last_error());
	expect_load_error("truncated JSON", "{\"model\": {", NULL, "not valid JSON");
	expect_load_error("no model", "{\"added_tokens\": []}", NULL, "model");
	expect_load_error("WordPiece", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", NULL,
			  "WordPiece");
	expect_load_error("merge part missing",
			  "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1},"
			  " \"merges\": [\"a b\"]}}", NULL, "merged token");
	expect_load_error("bad merge entry",
			  "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [7]}}",
			  NULL, "merges[0]");
	expect_load_error("id not integer",
			  "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0.5}, \"merges\": []}}",
			  NULL, "\"a\"");
	expect_load_error("bad regex", tiny_json("{\"type\": \"Split\", \"pattern\": {\"Regex\":"
						 " \"[a-\"}, \"behavior\": \"Isolated\"}"),
			  NULL, "Split regex");
	expect_load_error("unknown pre-tokenizer", tiny_json("{\"type\": \"Whitespace\"}"), NULL,
			  "Whitespace");
	expect_load_error("config not JSON", tiny_json("null"), "{bos", "tokenizer_config.json");
	expect_load_error("config bos unknown", tiny_json("null"), "{\"bos_token\": \"<bos>\"}",
			  "<bos>");
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static size_t put_utf8(char *o, unsigned cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xC0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xE0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		o[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	o[0] = (char)(0xF0 | (cp >> 18));
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	o[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* decode and the stream decoder must both give text back exactly */
static void check_round_trip(const struct hmoe_tok *t, const char *what, const char *s,
			     size_t len)
{
	int *ids = NULL, n = 0;
	char *back = NULL, piece[1024];
	if (hmoe_tok_encode(t, s, len, &ids, &n) < 0) {
		CHECK(0, "%s: encode: %s", what, hmoe_last_error());
		return;
	}
	CHECK(n > 0 || len == 0, "%s: no ids", what);
	CHECK(hmoe_tok_decode(t, ids, n, 0, &back) == 0 && strlen(back) == len &&
	      memcmp(back, s, len) == 0, "%s: decode(encode(text)) != text", what);
	free(back);

	struct hmoe_tok_stream st;
	char *acc = malloc(len + 1);
	size_t got = 0;
	int ok = acc != NULL;
	hmoe_tok_stream_init(&st, t, 0);
	for (int i = 0; ok && i <= n; i++) {
		int k = i < n ? hmoe_tok_stream_push(&st, ids[i], piece, sizeof(piece)) :
				hmoe_tok_stream_flush(&st, piece, sizeof(piece));
		ok = k >= 0 && got + (size_t)k <= len;
		if (ok) {
			memcpy(acc + got, piece, (size_t)k);
			got += (size_t)k;
		}
	}
	CHECK(ok && got == len && memcmp(acc, s, len) == 0, "%s: stream decode != text", what);
	free(acc);
	free(ids);
}

static void test_deepseek(void)
{
	struct hmoe_tok *t;
	/* the committed tokenizer, from the repository root (tests/run.sh sets HMOE_ROOT) */
	char path[4096];
	const char *root = getenv("HMOE_ROOT");
	snprintf(path, sizeof(path), "%s%smodels/deepseek-v3-tokenizer/tokenizer.json",
		 root ? root : "", root ? "/" : "");
	double t0 = now_s(), c0 = cpu_s();
	if (hmoe_tok_load(&t, path) < 0) {
		CHECK(0, "%s: %s (run from the repository root)", path, hmoe_last_error());
		return;
	}
	double load_s = now_s() - t0, load_cpu_s = cpu_s() - c0;
	printf("load %s: %.0f ms (%.0f ms CPU)\n", path, 1e3 * load_s, 1e3 * load_cpu_s);
	/* CPU time, so a busy machine does not matter; generous for sanitizer builds. A
	 * linear scan per token would take minutes. */
	CHECK(load_cpu_s < 5.0, "loading took %.2f s of CPU", load_cpu_s);

	int nv = hmoe_tok_n_vocab(t);
	CHECK(nv >= 128000 && hmoe_tok_token(t, nv - 1) != NULL, "n_vocab %d", nv);
	CHECK(hmoe_tok_bos(t) == hmoe_tok_id(t, "<｜begin▁of▁sentence｜>") && hmoe_tok_bos(t) >= 0,
	      "bos %d", hmoe_tok_bos(t));
	CHECK(hmoe_tok_eos(t) == hmoe_tok_id(t, "<｜end▁of▁sentence｜>") && hmoe_tok_eos(t) >= 0,
	      "eos %d", hmoe_tok_eos(t));
	CHECK(hmoe_tok_is_special(t, hmoe_tok_id(t, "<｜User｜>")), "<｜User｜> is added");
	CHECK(!hmoe_tok_is_special(t, hmoe_tok_id(t, "Ġthe")), "Ġthe is not special");

	/* invalid UTF-8 is refused, naming the byte */
	const char *bad[] = { "ok\xff", "\xC0\xAF", "\xED\xA0\x80", "abc\xE4\xB8", "\x80" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int *ids = NULL, n;
		CHECK(hmoe_tok_encode(t, bad[i], strlen(bad[i]), &ids, &n) == -HMOE_EINPUT &&
		      strstr(hmoe_last_error(), "UTF-8"), "invalid UTF-8 %zu accepted", i);
		free(ids);
	}

	/* random strings over many scripts come back byte-exact */
	static const unsigned ranges[][2] = {
		{ 'a', 'z' }, { 'A', 'Z' }, { '0', '9' }, { ' ', '/' }, { '\t', '\r' },
		{ 0xA0, 0x17F }, { 0x300, 0x36F }, { 0x391, 0x3C9 }, { 0x410, 0x44F },
		{ 0x600, 0x6FF }, { 0x900, 0x97F }, { 0xE00, 0xE7F }, { 0x2000, 0x206F },
		{ 0x3000, 0x30FF }, { 0x4E00, 0x9FA5 }, { 0xAC00, 0xD7A3 }, { 0xFF00, 0xFFEF },
		{ 0x1F300, 0x1F6FF }, { 0x1D400, 0x1D7FF }, { 0x20000, 0x2A6DF },
	};
	const int n_ranges = (int)(sizeof(ranges) / sizeof(ranges[0]));
	unsigned seed = 12345;
	char *s = malloc(4 * 400 + 1);
	for (int c = 0; s && c < 300; c++) {
		size_t len = 0;
		int n_chars = 1 + c % 97 + (c % 7 == 0 ? 300 : 0);
		for (int i = 0; i < n_chars; i++) {
			seed = seed * 1664525u + 1013904223u;
			const unsigned *r = ranges[(seed >> 8) % (unsigned)n_ranges];
			seed = seed * 1664525u + 1013904223u;
			unsigned cp = r[0] + (seed >> 8) % (r[1] - r[0] + 1);
			len += put_utf8(s + len, cp);
		}
		char what[64];
		snprintf(what, sizeof(what), "random string %d", c);
		check_round_trip(t, what, s, len);
	}
	free(s);

	/* long runs: one huge pre-token must not take quadratic time */
	size_t big = 200000;
	char *run = malloc(big + 1);
	if (run) {
		memset(run, 'a', big);
		t0 = cpu_s();
		check_round_trip(t, "200000 x 'a'", run, big);
		memset(run, ' ', big);
		check_round_trip(t, "200000 spaces", run, big);
		for (size_t i = 0; i < big; i++)
			run[i] = (char)('0' + i % 10);
		check_round_trip(t, "200000 digits", run, big);
		double s_run = cpu_s() - t0;
		CHECK(s_run < 10.0, "long runs took %.2f s of CPU", s_run);
		free(run);
	}

	/* streaming holds back a partial character: 🙂 = F0 9F 99 82 as four byte tokens */
	static const unsigned char smile[4] = { 0xF0, 0x9F, 0x99, 0x82 };
	int byte_ids[4];
	for (int i = 0; i < 4; i++) {
		byte_ids[i] = -1;
		for (int id = 0; id < 512 && byte_ids[i] < 0; id++) {
			size_t n;
			const unsigned char *b = hmoe_tok_bytes(t, id, &n);
			if (b && n == 1 && b[0] == smile[i])
				byte_ids[i] = id;
		}
		CHECK(byte_ids[i] >= 0, "no one-byte token for 0x%02x", smile[i]);
	}
	if (byte_ids[0] >= 0 && byte_ids[3] >= 0) {
		struct hmoe_tok_stream st;
		char out[1024];
		hmoe_tok_stream_init(&st, t, 0);
		for (int i = 0; i < 3; i++)
			CHECK(hmoe_tok_stream_push(&st, byte_ids[i], out, sizeof(out)) == 0,
			      "byte %d of a 4-byte character printed early", i);
		CHECK(hmoe_tok_stream_push(&st, byte_ids[3], out, sizeof(out)) == 4 &&
		      memcmp(out, smile, 4) == 0, "completed character not printed");
		/* an incomplete character at the end of the stream becomes U+FFFD */
		CHECK(hmoe_tok_stream_push(&st, byte_ids[0], out, sizeof(out)) == 0, "held back");
		CHECK(hmoe_tok_stream_flush(&st, out, sizeof(out)) == 3 &&
		      strcmp(out, "\xEF\xBF\xBD") == 0, "flush of a partial character");
		/* an interrupted character: U+FFFD, then the next text */
		int a = hmoe_tok_id(t, "a");
		CHECK(hmoe_tok_stream_push(&st, byte_ids[0], out, sizeof(out)) == 0, "held back");
		CHECK(hmoe_tok_stream_push(&st, a, out, sizeof(out)) == 4 &&
		      strcmp(out, "\xEF\xBF\xBD" "a") == 0, "interrupted character: \"%s\"", out);
		CHECK(hmoe_tok_stream_push(&st, a, out, 3) == 1, "small but enough buffer");
		CHECK(hmoe_tok_stream_push(&st, hmoe_tok_id(t, "<｜User｜>"), out, 8) == -HMOE_EINPUT,
		      "a too small buffer must be an error");
		CHECK(hmoe_tok_stream_push(&st, nv, out, sizeof(out)) == -HMOE_EINPUT,
		      "stream id past the vocab");
		char *text = NULL;
		CHECK(hmoe_tok_decode(t, byte_ids, 2, 0, &text) == 0 &&
		      strcmp(text, "\xEF\xBF\xBD") == 0, "decode of a partial character");
		free(text);
	}
	char *text = NULL;
	CHECK(hmoe_tok_decode(t, (int[]){ 5, nv }, 2, 0, &text) == -HMOE_EINPUT &&
	      strstr(hmoe_last_error(), "position 1"), "out-of-range id: %s", hmoe_last_error());
	CHECK(hmoe_tok_decode(t, (int[]){ -1 }, 1, 0, &text) == -HMOE_EINPUT, "negative id");
	hmoe_tok_free(t);
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		fprintf(stderr, "test_tok: mkdtemp %s failed\n", tmpdir);
		return 1;
	}
	test_tiny();
	test_errors();
	test_deepseek();
	remove_file("tokenizer.json");
	remove_file("tokenizer_config.json");
	rmdir(tmpdir);
	if (failures) {
		fprintf(stderr, "test_tok: %d failures\n", failures);
		return 1;
	}
	printf("test_tok: all passed\n");
	return 0;
}
