/* hmoe_chat: the DeepSeek-R1 chat template (MODEL.md section 8), written out in C so that
 * no Jinja engine is needed. The rules are listed at hmoe_chat_render in hmoe_chat.h. */
#include "hmoe_chat.h"
#include "hmoe_err.h"
#include "hmoe_tok.h"

#include <stdlib.h>
#include <string.h>

#define TOOL_OUTPUTS_BEGIN "<｜tool▁outputs▁begin｜>"
#define TOOL_OUTPUTS_END "<｜tool▁outputs▁end｜>"
#define TOOL_OUTPUT_BEGIN "<｜tool▁output▁begin｜>"
#define TOOL_OUTPUT_END "<｜tool▁output▁end｜>"

struct chat_buf {
	char *s;
	size_t len, cap;
	int failed;
};

static void put(struct chat_buf *b, const char *s, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (b->len + n + 1 > cap)
			cap *= 2;
		char *ns = realloc(b->s, cap);
		if (!ns) {
			b->failed = 1;
			return;
		}
		b->s = ns;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = 0;
}

static void puts_(struct chat_buf *b, const char *s)
{
	put(b, s, strlen(s));
}

/* The answer part of an assistant message: the text after its last "</think>". */
static const char *after_last_think(const char *content)
{
	const char *p = content, *hit;
	while ((hit = strstr(p, HMOE_CHAT_END_THINK)) != NULL)
		p = hit + strlen(HMOE_CHAT_END_THINK);
	return p;
}

int hmoe_chat_render(const struct hmoe_chat_msg *msgs, int n_msgs, int add_generation_prompt,
		     char **out)
{
	static const char *const role_names[] = { "system", "user", "assistant", "tool" };
	struct chat_buf b = { 0 };
	int first_system = 1, in_tool = 0, first_output = 1;

	*out = NULL;
	if (n_msgs < 0 || (n_msgs > 0 && !msgs))
		return hmoe_err(HMOE_EINPUT, "chat: %d messages at %p", n_msgs, (const void *)msgs);
	for (int i = 0; i < n_msgs; i++) {
		if ((unsigned)msgs[i].role > HMOE_ROLE_TOOL)
			return hmoe_err(HMOE_EINPUT, "chat message %d: unknown role %d", i,
					(int)msgs[i].role);
		if (!msgs[i].content)
			return hmoe_err(HMOE_EINPUT, "chat message %d (%s): content is NULL", i,
					role_names[msgs[i].role]);
	}

	puts_(&b, HMOE_CHAT_BOS);
	for (int i = 0; i < n_msgs; i++) {
		if (msgs[i].role != HMOE_ROLE_SYSTEM)
			continue;
		if (!first_system)
			puts_(&b, "\n\n");
		puts_(&b, msgs[i].content);
		first_system = 0;
	}
	for (int i = 0; i < n_msgs; i++) {
		const char *c = msgs[i].content;
		switch (msgs[i].role) {
		case HMOE_ROLE_SYSTEM:
			break;
		case HMOE_ROLE_USER:
			in_tool = 0;
			puts_(&b, HMOE_CHAT_USER);
			puts_(&b, c);
			break;
		case HMOE_ROLE_ASSISTANT:
			puts_(&b, in_tool ? TOOL_OUTPUTS_END : HMOE_CHAT_ASSISTANT);
			puts_(&b, after_last_think(c));
			puts_(&b, HMOE_CHAT_EOS);
			in_tool = 0;
			break;
		case HMOE_ROLE_TOOL:
			in_tool = 1;
			puts_(&b, first_output ? TOOL_OUTPUTS_BEGIN TOOL_OUTPUT_BEGIN :
				  "\n" TOOL_OUTPUT_BEGIN);
			puts_(&b, c);
			puts_(&b, TOOL_OUTPUT_END);
			first_output = 0;
			break;
		}
	}
	if (in_tool)
		puts_(&b, TOOL_OUTPUTS_END);
	else if (add_generation_prompt)
		puts_(&b, HMOE_CHAT_ASSISTANT HMOE_CHAT_THINK "\n");
	if (b.failed) {
		free(b.s);
		return hmoe_err(HMOE_ENOMEM, "chat: out of memory rendering %d messages", n_msgs);
	}
	*out = b.s;
	return 0;
}

int hmoe_chat_encode(const struct hmoe_tok *tok, const struct hmoe_chat_msg *msgs, int n_msgs,
		     int add_generation_prompt, int **ids, int *n_ids)
{
	char *text;
	*ids = NULL;
	*n_ids = 0;
	int ret = hmoe_chat_render(msgs, n_msgs, add_generation_prompt, &text);
	if (ret < 0)
		return ret;
	ret = hmoe_tok_encode(tok, text, strlen(text), ids, n_ids);
	free(text);
	return ret < 0 ? hmoe_err_ctx(ret, "chat: ") : 0;
}
