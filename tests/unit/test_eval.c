/* test_eval: the pieces of `hmoe eval` that decide a score.
 *
 * - The held-out hash agrees with tools/train/arith_data.py (value computed there), so
 *   training and evaluation really split the problems the same way.
 * - Every arith task gives distinct held-out problems with correct answers; a smaller n
 *   is a prefix of a larger one; an unknown task is a clear error.
 * - Answer extraction follows R1's protocol: only text after "</think>" counts; \boxed{}
 *   beats "The answer is", which beats the last number; no "</think>", no answer.
 * - Matching: thousands separators, '$', spacing and a final '.' do not matter; values
 *   do; anything non-numeric compares as normalised text.
 * - jsonl files: good lines load (string or number answers, blank lines skipped); a bad
 *   line is an error naming its number and what is wrong.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hmoe_err.h"
#include "hmoe_eval.h"

#include "hmoe_test.h"

static void test_hash(void)
{
	/* arith_data.heldout_hash("add", 347, 285) */
	CHECK(hmoe_eval_heldout_hash(HMOE_EVAL_ADD, 347, 285) == 17521151384271823806ull,
	      "hash %llu", (unsigned long long)hmoe_eval_heldout_hash(HMOE_EVAL_ADD, 347, 285));
	/* about 1 in HMOE_EVAL_HELDOUT_MOD pairs are held out */
	int held = 0;
	for (int a = 100; a < 200; a++)
		for (int b = 100; b < 200; b++)
			held += hmoe_eval_is_heldout(HMOE_EVAL_ADD, a, b);
	CHECK(held > 10000 / HMOE_EVAL_HELDOUT_MOD / 2 && held < 10000 * 2 / HMOE_EVAL_HELDOUT_MOD,
	      "%d of 10000 held out", held);
}

static void test_arith(void)
{
	static const char *tasks[] = { "arith", "arith-sub", "arith-mul", "arith-mix" };

	for (int t = 0; t < 4; t++) {
		struct hmoe_eval_set big, small;
		int ret = hmoe_eval_arith(&big, tasks[t], 200);

		CHECK(ret == 0 && big.n == 200, "%s: ret %d n %d", tasks[t], ret, big.n);
		if (ret)
			continue;
		for (int i = 0; i < big.n; i++) {
			int a, b, op;
			char sym;
			long want;

			CHECK(sscanf(big.p[i].prompt, "What is %d %c %d?", &a, &sym, &b) == 3,
			      "%s prompt '%s'", tasks[t], big.p[i].prompt);
			op = sym == '+' ? HMOE_EVAL_ADD : sym == '-' ? HMOE_EVAL_SUB : HMOE_EVAL_MUL;
			want = op == HMOE_EVAL_ADD ? a + b : op == HMOE_EVAL_SUB ? a - b : a * b;
			CHECK(atol(big.p[i].answer) == want, "'%s' answer %s", big.p[i].prompt,
			      big.p[i].answer);
			CHECK(hmoe_eval_is_heldout(op, a, b), "'%s' is not held out", big.p[i].prompt);
			CHECK(a >= 100 && a <= 999 && want >= 0, "'%s' out of range", big.p[i].prompt);
			if (t == 0)
				CHECK(sym == '+' && b >= 100 && b <= 999, "'%s'", big.p[i].prompt);
			for (int j = 0; j < i; j++)
				CHECK(strcmp(big.p[i].prompt, big.p[j].prompt), "duplicate '%s'",
				      big.p[i].prompt);
		}
		CHECK(hmoe_eval_arith(&small, tasks[t], 17) == 0, "%s small", tasks[t]);
		for (int i = 0; i < small.n; i++)
			CHECK(!strcmp(small.p[i].prompt, big.p[i].prompt), "%s: not a prefix", tasks[t]);
		hmoe_eval_set_free(&small);
		hmoe_eval_set_free(&big);
	}
	{
		struct hmoe_eval_set s;
		int ret = hmoe_eval_arith(&s, "algebra", 10);

		CHECK(ret == -HMOE_EINPUT && strstr(hmoe_last_error(), "algebra") &&
		      strstr(hmoe_last_error(), "arith-mul"), "ret %d: %s", ret, hmoe_last_error());
	}
}

static void test_extract(void)
{
	static const struct {
		const char *text;
		int found;
		const char *want;
	} cases[] = {
		{ "ones: 7+5+0=12\nresult: 6 3 2\n</think>\n\nThe answer is 632.", 1, "632" },
		{ "x\n</think>\n\nThe answer is 1,032.", 1, "1,032" },
		{ "the answer is 5\n</think>\n\nSo we get \\boxed{\\frac{1}{2}} and more", 1,
		  "\\frac{1}{2}" },
		{ "</think>The answer is: $x^{2}$ .\nbye", 1, "$x^{2}$" },
		{ "</think>\\boxed{1} then \\boxed{2}", 1, "2" },
		{ "</think>\\boxed{oops, no close. The answer is 7", 1, "7" },
		{ "</think>I think 12 or maybe -3.5 apples", 1, "-3.5" },
		{ "reasoning says 632 but never ends", 0, "" },
		{ "</think>no digits here", 0, "" },
		{ "</think>a</think>The answer is 9. </think>", 0, "" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[64];
		int found = hmoe_eval_extract(cases[i].text, out, sizeof(out));

		CHECK(found == cases[i].found && !strcmp(out, cases[i].want),
		      "case %zu: found %d '%s', want %d '%s'", i, found, out, cases[i].found,
		      cases[i].want);
	}
	{
		char tiny[4];

		CHECK(hmoe_eval_extract("</think>The answer is 123456", tiny, sizeof(tiny)) == 1 &&
		      !strcmp(tiny, "123"), "truncation: '%s'", tiny);
	}
}

static void test_match(void)
{
	CHECK(hmoe_eval_match("1,032", "1032"), "separators");
	CHECK(hmoe_eval_match("$42$", "42"), "dollars");
	CHECK(hmoe_eval_match("42.", "42"), "final dot");
	CHECK(hmoe_eval_match("0.50", "0.5"), "numeric value");
	CHECK(!hmoe_eval_match("631", "632"), "wrong number matched");
	CHECK(!hmoe_eval_match("", "0"), "empty matched");
	CHECK(hmoe_eval_match("\\frac{1}{2}", "\\frac { 1 } { 2 }"), "spacing");
	CHECK(hmoe_eval_match("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
	      "\\left \\right");
	CHECK(!hmoe_eval_match("\\frac{1}{3}", "\\frac{1}{2}"), "different fractions matched");
	CHECK(hmoe_eval_match("\\text{Evelyn}", "Evelyn"), "\\text{}");
}

static char *write_tmp(const char *content)
{
	static char path[64];
	int fd;
	FILE *f;

	snprintf(path, sizeof(path), "/tmp/test_eval_XXXXXX");
	fd = mkstemp(path);
	if (fd < 0)
		return NULL;
	f = fdopen(fd, "w");
	fputs(content, f);
	fclose(f);
	return path;
}

static void test_jsonl(void)
{
	static const struct {
		const char *content;
		const char *err;   /* NULL: loads */
	} cases[] = {
		{ "{\"prompt\": \"What is 2+2?\", \"answer\": \"4\"}\n\n"
		  "{\"prompt\": \"Half of 3?\", \"answer\": 1.5, \"id\": 7}\n", NULL },
		{ "{\"prompt\": \"a\", \"answer\": \"1\"}\n{\"prompt\": \"b\", \"answer\": }\n",
		  "line 2: not a JSON object" },
		{ "{\"prompt\": \"a\"}\n", "line 1: \"answer\" missing" },
		{ "{\"answer\": \"3\"}\n", "line 1: \"prompt\" missing" },
		{ "[1, 2]\n", "line 1: not a JSON object" },
		{ "\n  \n", "no problems" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct hmoe_eval_set s;
		char *path = write_tmp(cases[i].content);
		int ret;

		CHECK(path, "mkstemp");
		if (!path)
			return;
		ret = hmoe_eval_load_jsonl(&s, path);
		if (!cases[i].err) {
			CHECK(ret == 0 && s.n == 2 && !strcmp(s.p[1].prompt, "Half of 3?") &&
			      hmoe_eval_match(s.p[1].answer, "1.5"), "case %zu: ret %d n %d", i, ret,
			      s.n);
			hmoe_eval_set_free(&s);
		} else {
			CHECK(ret == -HMOE_EINPUT && strstr(hmoe_last_error(), cases[i].err) &&
			      strstr(hmoe_last_error(), path), "case %zu: ret %d: '%s'", i, ret,
			      hmoe_last_error());
		}
		unlink(path);
	}
	{
		struct hmoe_eval_set s;
		int ret = hmoe_eval_load_jsonl(&s, "/nonexistent/problems.jsonl");

		CHECK(ret == -HMOE_EINPUT && strstr(hmoe_last_error(), "problems.jsonl"), "%s",
		      hmoe_last_error());
	}
}

int main(void)
{
	test_hash();
	test_arith();
	test_extract();
	test_match();
	test_jsonl();
	if (failures) {
		fprintf(stderr, "test_eval: %d failures\n", failures);
		return 1;
	}
	printf("test_eval: ok\n");
	return 0;
}
