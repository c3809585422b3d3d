/* hmoe_chat: the DeepSeek-R1 chat template in C (MODEL.md section 8). */
#ifndef HMOE_CHAT_H
#define HMOE_CHAT_H

enum hmoe_role { HMOE_ROLE_SYSTEM, HMOE_ROLE_USER, HMOE_ROLE_ASSISTANT, HMOE_ROLE_TOOL };

struct hmoe_chat_msg {
	enum hmoe_role role;
	const char *content;
};

/* Renders bos + system text + turns; earlier assistant turns keep only the text after
 * their last "</think>". add_generation_prompt appends "<｜Assistant｜><think>\n".
 * *out is malloc'ed. Token strings are the DeepSeek ones (read from the tokenizer where
 * given, so a tokenizer without <think> still renders the template text). */
int hmoe_chat_render(const struct hmoe_chat_msg *msgs, int n_msgs, int add_generation_prompt,
		     char **out);

#endif
