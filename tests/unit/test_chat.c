/* test_chat: the R1 chat template (runtime/hmoe_chat.c) against strings written out by
 * hand from MODEL.md section 8.
 *
 * What a user would notice if broken: the model sees a prompt it was not trained on
 * (missing BOS, system text in the wrong place, old reasoning fed back, no "<think>\n"
 * to start the answer), and answers badly; tool outputs framed wrongly; the rendered
 * BOS / <｜User｜> not becoming the tokenizer's ids.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmoe_chat.h"
#include "hmoe_err.h"
#include "hmoe_tok.h"

#include "hmoe_test.h"

#define U HMOE_ROLE_USER
#define A HMOE_ROLE_ASSISTANT
#define S HMOE_ROLE_SYSTEM
#define T HMOE_ROLE_TOOL

static void expect(const char *what, const struct hmoe_chat_msg *m, int n, int gen,
		   const char *want)
{
	char *got = NULL;
	int ret = hmoe_chat_render(m, n, gen, &got);
	CHECK(ret == 0, "%s: render failed: %s", what, hmoe_last_error());
	if (ret == 0)
		CHECK(strcmp(got, want) == 0, "%s:\n  want \"%s\"\n  got  \"%s\"", what, want, got);
	free(got);
}

static void test_templates(void)
{
	/* MODEL.md's example */
	struct hmoe_chat_msg hi[] = { { U, "Hi" } };
	expect("example", hi, 1, 1, "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜><think>\n");
	expect("no generation prompt", hi, 1, 0, "<｜begin▁of▁sentence｜><｜User｜>Hi");
	expect("empty conversation", NULL, 0, 1,
	       "<｜begin▁of▁sentence｜><｜Assistant｜><think>\n");

	/* system text raw after BOS; earlier reasoning stripped; EOS closes assistant turns */
	struct hmoe_chat_msg multi[] = {
		{ S, "You are helpful." },
		{ U, "What is 2+2?" },
		{ A, "<think>\nadd them\n</think>\n\n4" },
		{ U, "And 3+3?" },
	};
	expect("multi-turn", multi, 4, 1,
	       "<｜begin▁of▁sentence｜>You are helpful.<｜User｜>What is 2+2?<｜Assistant｜>\n\n4"
	       "<｜end▁of▁sentence｜><｜User｜>And 3+3?<｜Assistant｜><think>\n");

	/* every system message goes first, joined by a blank line; last </think> counts */
	struct hmoe_chat_msg sys2[] = {
		{ S, "Be brief." },
		{ U, "Hi" },
		{ A, "<think>a</think>b</think>Hello" },
		{ S, "Use English." },
	};
	expect("two system messages", sys2, 4, 0,
	       "<｜begin▁of▁sentence｜>Be brief.\n\nUse English.<｜User｜>Hi<｜Assistant｜>Hello"
	       "<｜end▁of▁sentence｜>");

	/* an assistant turn without reasoning stays whole */
	struct hmoe_chat_msg plain[] = { { U, "x" }, { A, "no thinking here" } };
	expect("assistant without think", plain, 2, 0,
	       "<｜begin▁of▁sentence｜><｜User｜>x<｜Assistant｜>no thinking here<｜end▁of▁sentence｜>");

	/* tool outputs: first opens the block, later ones on a new line; a conversation
	 * ending in tool outputs closes the block and has no generation prompt */
	struct hmoe_chat_msg tools[] = { { U, "weather?" }, { T, "21C" }, { T, "sunny" } };
	expect("tool outputs at the end", tools, 3, 1,
	       "<｜begin▁of▁sentence｜><｜User｜>weather?<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>"
	       "21C<｜tool▁output▁end｜>\n<｜tool▁output▁begin｜>sunny<｜tool▁output▁end｜>"
	       "<｜tool▁outputs▁end｜>");
	struct hmoe_chat_msg answer[] = {
		{ U, "weather?" }, { T, "21C" }, { A, "<think>ok</think>It is 21C." }, { U, "thanks" },
	};
	expect("assistant after tool outputs", answer, 4, 1,
	       "<｜begin▁of▁sentence｜><｜User｜>weather?<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>"
	       "21C<｜tool▁output▁end｜><｜tool▁outputs▁end｜>It is 21C.<｜end▁of▁sentence｜>"
	       "<｜User｜>thanks<｜Assistant｜><think>\n");
}

static void test_errors(void)
{
	char *out = (char *)1;
	struct hmoe_chat_msg null_content[] = { { U, "a" }, { A, NULL } };
	CHECK(hmoe_chat_render(null_content, 2, 1, &out) == -HMOE_EINPUT, "NULL content");
	CHECK(out == NULL, "output must be NULL on error");
	CHECK(strstr(hmoe_last_error(), "message 1") != NULL, "error names the message: %s",
	      hmoe_last_error());
	struct hmoe_chat_msg bad_role[] = { { (enum hmoe_role)9, "a" } };
	CHECK(hmoe_chat_render(bad_role, 1, 1, &out) == -HMOE_EINPUT, "unknown role");
}

/* The rendered template through the DeepSeek tokenizer: markers become their ids. */
static void test_encode(void)
{
	struct hmoe_tok *tok;
	/* the committed tokenizer, from the repository root (tests/run.sh sets HMOE_ROOT) */
	char path[4096];
	const char *root = getenv("HMOE_ROOT");
	snprintf(path, sizeof(path), "%s%smodels/deepseek-v3-tokenizer/tokenizer.json",
		 root ? root : "", root ? "/" : "");
	if (hmoe_tok_load(&tok, path) < 0) {
		CHECK(0, "%s: %s (run from the repository root)", path, hmoe_last_error());
		return;
	}
	struct hmoe_chat_msg m[] = { { U, "What is 12 + 35?" } };
	int *ids = NULL, n = 0;
	CHECK(hmoe_chat_encode(tok, m, 1, 1, &ids, &n) == 0, "encode: %s", hmoe_last_error());
	int user = hmoe_tok_id(tok, "<｜User｜>"), asst = hmoe_tok_id(tok, "<｜Assistant｜>");
	CHECK(user >= 0 && asst >= 0 && hmoe_tok_is_special(tok, user), "<｜User｜> id %d", user);
	CHECK(n > 4 && ids[0] == hmoe_tok_bos(tok), "first id %d, want BOS %d", n ? ids[0] : -1,
	      hmoe_tok_bos(tok));
	CHECK(n > 4 && ids[1] == user, "second id %d, want <｜User｜> %d", n > 1 ? ids[1] : -1,
	      user);
	int n_asst = 0;
	for (int i = 0; i < n; i++)
		n_asst += ids[i] == asst;
	CHECK(n_asst == 1, "<｜Assistant｜> appears %d times", n_asst);
	char *text = NULL, *want = NULL;
	CHECK(hmoe_tok_decode(tok, ids, n, 0, &text) == 0, "decode");
	CHECK(hmoe_chat_render(m, 1, 1, &want) == 0, "render");
	CHECK(text && want && strcmp(text, want) == 0, "decode(encode(chat)) != chat");
	free(text);
	free(want);
	free(ids);
	hmoe_tok_free(tok);
}

int main(void)
{
	test_templates();
	test_errors();
	test_encode();
	if (failures) {
		fprintf(stderr, "test_chat: %d failures\n", failures);
		return 1;
	}
	printf("test_chat: all passed\n");
	return 0;
}
