/* hmoe_tok: the DeepSeek byte-level BPE tokenizer, read from tokenizer.json.
 *
 * Encode: split out added/special tokens (exact string match, longest first), then the
 * three pre-tokenizer regex splits (PCRE2), byte-level mapping, BPE merges by rank.
 * Decode: ids to bytes; a streaming decoder holds back an incomplete UTF-8 sequence
 * until the bytes that complete it arrive.
 */
#ifndef HMOE_TOK_H
#define HMOE_TOK_H

#include <stddef.h>

struct hmoe_tok;

/* Loads tokenizer.json at path; tokenizer_config.json beside it, when present, gives
 * bos/eos strings. Errors name the file and the field. */
int hmoe_tok_load(struct hmoe_tok **out, const char *tokenizer_json);
/* Loads DIR/tokenizer.json (a model directory). */
int hmoe_tok_load_dir(struct hmoe_tok **out, const char *dir);
/* The CLI's choice: exactly one of model_dir (loads DIR/tokenizer.json) and
 * tokenizer_json (a file) is non-NULL; both or neither is an HMOE_EINPUT error. */
int hmoe_tok_open(struct hmoe_tok **out, const char *model_dir, const char *tokenizer_json);
void hmoe_tok_free(struct hmoe_tok *t);

/* Number of ids the tokenizer can produce (max id + 1; may be < the model's vocab). */
int hmoe_tok_n_vocab(const struct hmoe_tok *t);
/* Id of an exact token string (added tokens included), or -1. */
int hmoe_tok_id(const struct hmoe_tok *t, const char *token);
int hmoe_tok_bos(const struct hmoe_tok *t);
int hmoe_tok_eos(const struct hmoe_tok *t);
/* 1 if id is an added/special token ("<｜User｜>", "<think>", ...): any entry of
 * tokenizer.json added_tokens, whatever its "special" flag. */
int hmoe_tok_is_special(const struct hmoe_tok *t, int id);
/* The token string of id as tokenizer.json spells it ("Ġthe", "<｜User｜>"), or NULL for
 * an id without a token. Owned by the tokenizer. */
const char *hmoe_tok_token(const struct hmoe_tok *t, int id);
/* The bytes id decodes to (*len of them, not NUL-terminated; possibly part of a UTF-8
 * character), or NULL for an id without a token. Owned by the tokenizer. */
const unsigned char *hmoe_tok_bytes(const struct hmoe_tok *t, int id, size_t *len);

/* Encodes len bytes of UTF-8 text (special-token strings inside it become their ids;
 * no BOS is added). *ids is malloc'ed. Invalid UTF-8 is an HMOE_EINPUT error. */
int hmoe_tok_encode(const struct hmoe_tok *t, const char *text, size_t len, int **ids,
		    int *n_ids);
/* Decodes ids to a malloc'ed NUL-terminated string. skip_special drops the added tokens
 * marked "special": true in tokenizer.json, as HF skip_special_tokens does (in the
 * DeepSeek-V3 file <｜User｜>, <｜Assistant｜> and the tool markers are not marked and
 * stay). Invalid UTF-8 in the bytes becomes U+FFFD (one per maximal invalid subpart).
 * An out-of-range id is an HMOE_EINPUT error. */
int hmoe_tok_decode(const struct hmoe_tok *t, const int *ids, int n_ids, int skip_special,
		    char **text);

/* Streaming decode: push ids one at a time, get back the bytes that form complete UTF-8
 * characters so far (a partial character is held back until completed). */
struct hmoe_tok_stream {
	const struct hmoe_tok *tok;
	int skip_special;
	unsigned char pending[8];  /* bytes of an incomplete UTF-8 character */
	int n_pending;
};
void hmoe_tok_stream_init(struct hmoe_tok_stream *s, const struct hmoe_tok *t,
			  int skip_special);
/* Writes the newly complete text to out (NUL-terminated, at most cap-1 bytes; use
 * cap >= 1024: the longest DeepSeek token is 128 bytes, and invalid bytes become 3-byte
 * U+FFFD). Returns the byte count or a negative error (out too small: HMOE_EINPUT).
 * The concatenated output of a stream equals hmoe_tok_decode of the same ids. */
int hmoe_tok_stream_push(struct hmoe_tok_stream *s, int id, char *out, size_t cap);
/* Flushes held-back bytes at the end of the stream (as U+FFFD if still incomplete). */
int hmoe_tok_stream_flush(struct hmoe_tok_stream *s, char *out, size_t cap);

#endif
