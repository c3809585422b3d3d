/* hmoe_chat: the DeepSeek-R1 chat template in C (MODEL.md section 8). */
#ifndef HMOE_CHAT_H
#define HMOE_CHAT_H

struct hmoe_tok;

enum hmoe_role { HMOE_ROLE_SYSTEM, HMOE_ROLE_USER, HMOE_ROLE_ASSISTANT, HMOE_ROLE_TOOL };

struct hmoe_chat_msg {
	enum hmoe_role role;
	const char *content;
};

/* The template's token strings (UTF-8: the bars are U+FF5C, the underscores U+2581). */
#define HMOE_CHAT_BOS "<｜begin▁of▁sentence｜>"
#define HMOE_CHAT_EOS "<｜end▁of▁sentence｜>"
#define HMOE_CHAT_USER "<｜User｜>"
#define HMOE_CHAT_ASSISTANT "<｜Assistant｜>"
#define HMOE_CHAT_THINK "<think>"
#define HMOE_CHAT_END_THINK "</think>"

/* Renders bos + system text + turns; earlier assistant turns keep only the text after
 * their last "</think>". add_generation_prompt appends "<｜Assistant｜><think>\n".
 * *out is malloc'ed. Token strings are the DeepSeek ones (read from the tokenizer where
 * given, so a tokenizer without <think> still renders the template text).
 *
 * In detail (the R1 template): all system messages, wherever they stand, are joined with
 * "\n\n" and put raw right after BOS. A user turn is "<｜User｜>" + content. An assistant
 * turn is "<｜Assistant｜>" + content after its last "</think>" + "<｜end▁of▁sentence｜>";
 * right after tool outputs it is "<｜tool▁outputs▁end｜>" + that + EOS instead. Tool
 * outputs are "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>" + content +
 * "<｜tool▁output▁end｜>" for the first of the conversation and "\n<｜tool▁output▁begin｜>"
 * + content + "<｜tool▁output▁end｜>" after that; a conversation ending in tool outputs
 * gets "<｜tool▁outputs▁end｜>" and no generation prompt. A NULL content or an unknown
 * role is an HMOE_EINPUT error. */
int hmoe_chat_render(const struct hmoe_chat_msg *msgs, int n_msgs, int add_generation_prompt,
		     char **out);

/* hmoe_chat_render, then hmoe_tok_encode of the text (its BOS string becomes the BOS id,
 * so no extra BOS is added). *ids is malloc'ed. */
int hmoe_chat_encode(const struct hmoe_tok *tok, const struct hmoe_chat_msg *msgs, int n_msgs,
		     int add_generation_prompt, int **ids, int *n_ids);

#endif
