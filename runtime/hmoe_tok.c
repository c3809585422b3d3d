/* hmoe_tok: the DeepSeek byte-level BPE tokenizer, read from a Hugging Face tokenizer.json.
 *
 * Encode, in the order the reference (HF tokenizers, transformers.js) applies them:
 *   1. added tokens: at each position the longest added-token string that starts there
 *      wins (leftmost-longest); the text between added tokens is a "section";
 *   2. pre-tokenizer: the Split regexes of pre_tokenizer (behaviour "Isolated": matches
 *      and the gaps between them both become pieces), each applied to every piece the
 *      previous one produced; PCRE2 with UTF + UCP gives the Unicode classes;
 *   3. byte level: each piece is a byte string; every byte starts as its own symbol
 *      (the vocab spells byte b as the GPT-2 "bytes_to_unicode" character of b);
 *   4. BPE: repeatedly merge the adjacent pair with the lowest merge rank (leftmost on
 *      ties) until no pair has a rank; symbols become ids.
 * Decode: every id has its bytes precomputed at load; text is the concatenation, with
 * invalid UTF-8 replaced by U+FFFD per maximal subpart (what TextDecoder and Rust's
 * from_utf8_lossy do). The streaming decoder holds back an incomplete trailing sequence.
 *
 * Sections: types -> byte map and UTF-8 -> hash tables -> loading -> encode -> decode.
 */
#include "hmoe_tok.h"
#include "hmoe_chat.h" /* the DeepSeek BOS/EOS strings, used when there is no config */
#include "hmoe_err.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <cjson/cJSON.h>
#include <pcre2.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ------------------------------------------------------------------------------------ */
/* types */

#define TOK_MAX_SPLITS 8

enum {
	TOK_HAS = 1,     /* the id has a token string */
	TOK_ADDED = 2,   /* listed in added_tokens */
	TOK_SPECIAL = 4, /* added token with "special": true (dropped by skip_special) */
};

struct tok_merge {
	uint64_t key;    /* merge_key(left id, right id); 0 = empty slot */
	int32_t rank;    /* position in model.merges: lower merges first */
	int32_t id;      /* id of the merged token */
};

struct hmoe_tok {
	int n_vocab;                 /* max id + 1 */
	/* per id, (n_vocab): token string as in tokenizer.json and its decoded bytes */
	uint32_t *str_off, *str_len; /* into strs */
	uint32_t *raw_off, *raw_len; /* into raws */
	unsigned char *flags;        /* TOK_* */
	struct tok_arena {
		char *base;
		size_t used, cap;    /* bytes */
	} strs, raws;                /* token strings (NUL-terminated); decoded bytes */

	/* token string -> id, open addressing, (str_mask + 1) slots; id -1 = empty */
	struct tok_slot {
		int32_t id;
		uint32_t tag;        /* high hash bits: most probes skip the string compare */
	} *str_hash;
	uint32_t str_mask;

	/* (left, right) -> merge, open addressing, (merge_mask + 1) slots */
	struct tok_merge *merges;
	uint32_t merge_mask;

	int byte_id[256];            /* id of the one-byte token for byte b, or -1 */

	/* added-token matching: a text position can start one only if added_first[byte] */
	unsigned char added_first[256];
	int added_lens[256];         /* distinct byte lengths of added tokens, descending */
	int n_added_lens;

	pcre2_code *split[TOK_MAX_SPLITS]; /* pre-tokenizer regexes, applied in order */
	int n_split;

	int bos, eos;
};

/* ------------------------------------------------------------------------------------ */
/* byte map (GPT-2 bytes_to_unicode) and UTF-8 */

/* The printable bytes '!'..'~', 0xA1..0xAC and 0xAE..0xFF stand for themselves; the other
 * 68 bytes take the code points 256, 257, ... in byte order. */
static void tok_byte_map(uint32_t byte_to_cp[256])
{
	uint32_t next = 256;
	for (int b = 0; b < 256; b++) {
		int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
		byte_to_cp[b] = printable ? (uint32_t)b : next++;
	}
}

enum utf8_step { UTF8_OK, UTF8_INCOMPLETE, UTF8_INVALID };

/* Looks at the sequence starting at s (n >= 1 bytes available). UTF8_OK: a whole character
 * of *len bytes. UTF8_INCOMPLETE: all n bytes are a valid start of a longer character.
 * UTF8_INVALID: the first *len bytes are a maximal invalid subpart (one U+FFFD). */
static enum utf8_step utf8_step(const unsigned char *s, size_t n, size_t *len)
{
	unsigned char c = s[0];
	size_t need;
	unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */

	if (c < 0x80) {
		*len = 1;
		return UTF8_OK;
	}
	if (c >= 0xC2 && c <= 0xDF) {
		need = 2;
	} else if (c >= 0xE0 && c <= 0xEF) {
		need = 3;
		if (c == 0xE0)
			lo = 0xA0;  /* no overlong forms */
		if (c == 0xED)
			hi = 0x9F;  /* no surrogates */
	} else if (c >= 0xF0 && c <= 0xF4) {
		need = 4;
		if (c == 0xF0)
			lo = 0x90;
		if (c == 0xF4)
			hi = 0x8F;  /* <= U+10FFFF */
	} else {
		*len = 1;
		return UTF8_INVALID;
	}
	for (size_t i = 1; i < need; i++) {
		if (i >= n) {
			*len = n;
			return UTF8_INCOMPLETE;
		}
		unsigned char a = i == 1 ? lo : 0x80, b = i == 1 ? hi : 0xBF;
		if (s[i] < a || s[i] > b) {
			*len = i;
			return UTF8_INVALID;
		}
	}
	*len = need;
	return UTF8_OK;
}

/* Decodes one code point of valid UTF-8 (as checked by utf8_step). */
static uint32_t utf8_cp(const unsigned char *s, size_t len)
{
	if (len == 1)
		return s[0];
	uint32_t cp = s[0] & (0xFF >> (len + 1));
	for (size_t i = 1; i < len; i++)
		cp = (cp << 6) | (s[i] & 0x3F);
	return cp;
}

/* ------------------------------------------------------------------------------------ */
/* hash tables */

static uint64_t tok_hash(const void *p, size_t n)
{
	const unsigned char *s = p;
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * 0x100000001b3ull;
	return h ^ (h >> 29);
}

static uint64_t tok_mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	return x ^ (x >> 33);
}

static uint32_t pow2_at_least(size_t n)
{
	uint32_t c = 16;
	while (c < n)
		c <<= 1;
	return c;
}

/* Slot of string s in str_hash: the slot holding its id, or the empty slot to put it in
 * (*tag: the tag to store there). */
static uint32_t str_slot(const struct hmoe_tok *t, const char *s, size_t n, uint32_t *tag)
{
	uint64_t h = tok_hash(s, n);
	uint32_t i = (uint32_t)h & t->str_mask;
	*tag = (uint32_t)(h >> 32);
	for (;;) {
		const struct tok_slot *e = &t->str_hash[i];
		if (e->id < 0)
			return i;
		if (e->tag == *tag && t->str_len[e->id] == n &&
		    memcmp(t->strs.base + t->str_off[e->id], s, n) == 0)
			return i;
		i = (i + 1) & t->str_mask;
	}
}

static int str_find(const struct hmoe_tok *t, const char *s, size_t n)
{
	uint32_t tag;
	return t->str_hash[str_slot(t, s, n, &tag)].id;
}

/* Never 0, the empty-slot mark: ids are below 2^31. */
static uint64_t merge_key(int left, int right)
{
	return (((uint64_t)(uint32_t)left << 32) | (uint32_t)right) + 1;
}

static const struct tok_merge *merge_find(const struct hmoe_tok *t, int left, int right)
{
	uint64_t key = merge_key(left, right);
	uint32_t i = (uint32_t)tok_mix64(key) & t->merge_mask;
	while (t->merges[i].key != 0) {
		if (t->merges[i].key == key)
			return &t->merges[i];
		i = (i + 1) & t->merge_mask;
	}
	return NULL;
}

/* ------------------------------------------------------------------------------------ */
/* loading */

static int read_file(const char *path, char **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return hmoe_err(HMOE_EINPUT, "%s: cannot open: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
		fclose(f);
		return hmoe_err(HMOE_EINPUT, "%s: is a directory, not a file", path);
	}
	/* a regular file is read in one go; other files grow the buffer as they come */
	size_t n = 0, cap = 1 << 20;
	if (S_ISREG(st.st_mode) && st.st_size > 0 && (uint64_t)st.st_size < SIZE_MAX / 2)
		cap = (size_t)st.st_size + 1;
	char *buf = malloc(cap);
	for (;;) {
		if (buf && n + 1 == cap) {
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				buf = NULL;
			}
			buf = nb;
			cap *= 2;
		}
		if (!buf) {
			fclose(f);
			return hmoe_err(HMOE_ENOMEM, "%s: out of memory reading file", path);
		}
		size_t got = fread(buf + n, 1, cap - n - 1, f);
		n += got;
		if (got == 0)
			break;
	}
	int err = ferror(f) ? errno : 0;
	fclose(f);
	if (err) {
		free(buf);
		return hmoe_err(HMOE_EINPUT, "%s: cannot read: %s", path, strerror(err));
	}
	buf[n] = 0;
	*out = buf;
	*len = n;
	return 0;
}

static int arena_put(struct tok_arena *a, const void *p, size_t n, uint32_t *off)
{
	if (a->used + n > a->cap) {
		size_t nc = a->cap ? a->cap : 1 << 20;
		while (a->used + n > nc)
			nc *= 2;
		if (nc > UINT32_MAX)
			return hmoe_err(HMOE_EINPUT, "tokenizer strings exceed 4 GiB");
		char *nb = realloc(a->base, nc);
		if (!nb)
			return hmoe_err(HMOE_ENOMEM, "tokenizer: out of memory");
		a->base = nb;
		a->cap = nc;
	}
	memcpy(a->base + a->used, p, n);
	*off = (uint32_t)a->used;
	a->used += n;
	return 0;
}

/* Bytes a token string stands for: each character through the inverse byte map; a string
 * with any character outside the map (added tokens like "<｜User｜>") is its own UTF-8. */
static size_t token_bytes(const int cp_to_byte[324], const char *s, size_t n,
			  unsigned char *out)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t w = 0, len;
	for (size_t i = 0; i < n; i += len) {
		if (utf8_step(u + i, n - i, &len) != UTF8_OK)
			goto raw;
		uint32_t cp = utf8_cp(u + i, len);
		if (cp >= 324 || cp_to_byte[cp] < 0)
			goto raw;
		out[w++] = (unsigned char)cp_to_byte[cp];
	}
	return w;
raw:
	memcpy(out, s, n);
	return n;
}

/* Records token string s as id (added: from added_tokens). A later added token with the
 * same string takes the string over, as in the reference. */
static int tok_set(struct hmoe_tok *t, const char *path, int id, const char *s, int added,
		   int special, const int cp_to_byte[324])
{
	size_t n = strlen(s);
	if (id < 0 || id >= t->n_vocab)
		return hmoe_err(HMOE_EINTERNAL, "%s: id %d outside the table", path, id);
	if ((t->flags[id] & TOK_HAS) && !added)
		return hmoe_err(HMOE_EINPUT, "%s: model.vocab: id %d given twice", path, id);
	uint32_t tag, slot = str_slot(t, s, n, &tag);
	if (t->str_hash[slot].id >= 0 && !added)
		return hmoe_err(HMOE_EINPUT, "%s: model.vocab: token \"%s\" given twice", path, s);
	/* stored with its NUL so hmoe_tok_token can return it */
	int ret = arena_put(&t->strs, s, n + 1, &t->str_off[id]);
	if (ret < 0)
		return ret;
	t->str_len[id] = (uint32_t)n;

	unsigned char stack[512], *bytes = n <= sizeof(stack) ? stack : malloc(n);
	if (!bytes)
		return hmoe_err(HMOE_ENOMEM, "tokenizer: out of memory");
	size_t nb = added ? (memcpy(bytes, s, n), n) : token_bytes(cp_to_byte, s, n, bytes);
	ret = arena_put(&t->raws, bytes, nb, &t->raw_off[id]);
	if (bytes != stack)
		free(bytes);
	if (ret < 0)
		return ret;
	t->raw_len[id] = (uint32_t)nb;
	t->str_hash[slot] = (struct tok_slot){ .id = id, .tag = tag };
	t->flags[id] = (unsigned char)(TOK_HAS | (added ? TOK_ADDED : 0) |
				       (special ? TOK_SPECIAL : 0));
	return 0;
}

static const char *json_str(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int json_true(const cJSON *obj, const char *key)
{
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, key));
}

/* normalizer: only none (null, or an empty Sequence) is supported. */
static int load_normalizer(const char *path, const cJSON *root)
{
	const cJSON *n = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
	if (!n || cJSON_IsNull(n))
		return 0;
	const char *type = json_str(n, "type");
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
	if (type && strcmp(type, "Sequence") == 0 && cJSON_IsArray(list) &&
	    cJSON_GetArraySize(list) == 0)
		return 0;
	return hmoe_err(HMOE_EINPUT, "%s: normalizer: type %s is not supported (only none)",
			path, type ? type : "(missing)");
}

static int add_split(struct hmoe_tok *t, const char *path, const cJSON *pt)
{
	const char *behavior = json_str(pt, "behavior");
	const cJSON *pat = cJSON_GetObjectItemCaseSensitive(pt, "pattern");
	const char *re = pat ? json_str(pat, "Regex") : NULL;
	if (!re)
		return hmoe_err(HMOE_EINPUT, "%s: pre_tokenizer Split: pattern.Regex missing",
				path);
	if (!behavior || strcmp(behavior, "Isolated") != 0 || json_true(pt, "invert"))
		return hmoe_err(HMOE_EINPUT,
				"%s: pre_tokenizer Split: behavior %s (invert %d) is not supported "
				"(only Isolated, not inverted)", path, behavior ? behavior : "(missing)",
				json_true(pt, "invert"));
	if (t->n_split == TOK_MAX_SPLITS)
		return hmoe_err(HMOE_EINPUT, "%s: pre_tokenizer: more than %d Split steps", path,
				TOK_MAX_SPLITS);
	int code;
	PCRE2_SIZE at;
	pcre2_code *c = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED,
				      PCRE2_UTF | PCRE2_UCP, &code, &at, NULL);
	if (!c) {
		PCRE2_UCHAR msg[256];
		pcre2_get_error_message(code, msg, sizeof(msg));
		return hmoe_err(HMOE_EINPUT, "%s: pre_tokenizer Split regex /%s/ at offset %zu: %s",
				path, re, (size_t)at, (const char *)msg);
	}
	/* JIT is a speed-up only; where it is unavailable the interpreter runs. */
	(void)pcre2_jit_compile(c, PCRE2_JIT_COMPLETE);
	t->split[t->n_split++] = c;
	return 0;
}

/* pre_tokenizer: a Sequence of Splits and a final ByteLevel without its own regex, or a
 * single Split. */
static int load_pre_tokenizer(struct hmoe_tok *t, const char *path, const cJSON *root)
{
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
	const char *type = p ? json_str(p, "type") : NULL;
	if (!p || cJSON_IsNull(p))
		return 0;
	const cJSON *steps = p, *one;
	if (type && strcmp(type, "Sequence") == 0)
		steps = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
	if (!cJSON_IsArray(steps) && steps != p)
		return hmoe_err(HMOE_EINPUT, "%s: pre_tokenizer.pretokenizers is not a list", path);
	int single = steps == p;
	for (one = single ? p : steps->child; one; one = single ? NULL : one->next) {
		const char *ty = json_str(one, "type");
		int ret;
		if (ty && strcmp(ty, "Split") == 0) {
			ret = add_split(t, path, one);
			if (ret < 0)
				return ret;
		} else if (ty && strcmp(ty, "ByteLevel") == 0) {
			const cJSON *ur = cJSON_GetObjectItemCaseSensitive(one, "use_regex");
			if (json_true(one, "add_prefix_space") || !cJSON_IsFalse(ur))
				return hmoe_err(HMOE_EINPUT,
						"%s: pre_tokenizer ByteLevel with add_prefix_space or "
						"use_regex is not supported", path);
		} else {
			return hmoe_err(HMOE_EINPUT, "%s: pre_tokenizer type %s is not supported "
					"(Split, ByteLevel)", path, ty ? ty : "(missing)");
		}
	}
	return 0;
}

/* Splits a merge entry into its two token strings: "a b" (older files) or ["a", "b"]. */
static int merge_parts(const char *path, const cJSON *m, long rank, char *buf, size_t cap,
		       const char **a, const char **b)
{
	if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
	    cJSON_IsString(m->child->next)) {
		*a = m->child->valuestring;
		*b = m->child->next->valuestring;
		return 0;
	}
	if (cJSON_IsString(m)) {
		const char *s = m->valuestring, *sp = strchr(s, ' ');
		size_t n = strlen(s);
		if (sp && n < cap) {
			memcpy(buf, s, n + 1);
			buf[sp - s] = 0;
			*a = buf;
			*b = buf + (sp - s) + 1;
			return 0;
		}
	}
	return hmoe_err(HMOE_EINPUT, "%s: model.merges[%ld]: expected \"a b\" or [\"a\", \"b\"]",
			path, rank);
}

static int load_model(struct hmoe_tok *t, const char *path, const cJSON *root)
{
	const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
	const cJSON *vocab = model ? cJSON_GetObjectItemCaseSensitive(model, "vocab") : NULL;
	const cJSON *merges = model ? cJSON_GetObjectItemCaseSensitive(model, "merges") : NULL;
	const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
	const char *type = model ? json_str(model, "type") : NULL;
	uint32_t byte_to_cp[256];
	int cp_to_byte[324];
	int ret;

	if (!model)
		return hmoe_err(HMOE_EINPUT, "%s: field model missing", path);
	if (!type || strcmp(type, "BPE") != 0)
		return hmoe_err(HMOE_EINPUT, "%s: model.type %s is not supported (only BPE)", path,
				type ? type : "(missing)");
	if (json_true(model, "byte_fallback") || json_str(model, "continuing_subword_prefix") ||
	    json_str(model, "end_of_word_suffix") || json_true(model, "ignore_merges"))
		return hmoe_err(HMOE_EINPUT, "%s: model: byte_fallback, continuing_subword_prefix, "
				"end_of_word_suffix and ignore_merges are not supported", path);
	if (!cJSON_IsObject(vocab))
		return hmoe_err(HMOE_EINPUT, "%s: model.vocab missing or not an object", path);
	if (!cJSON_IsArray(merges))
		return hmoe_err(HMOE_EINPUT, "%s: model.merges missing or not a list", path);
	if (added && !cJSON_IsArray(added))
		return hmoe_err(HMOE_EINPUT, "%s: added_tokens is not a list", path);

	/* ids: max over vocab and added tokens */
	int max_id = -1, n_strings = 0;
	for (const cJSON *v = vocab->child; v; v = v->next, n_strings++) {
		if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e8 ||
		    v->valuedouble != (double)v->valueint)
			return hmoe_err(HMOE_EINPUT, "%s: model.vocab[\"%s\"]: id is not an integer "
					"in [0, 1e8]", path, v->string);
		if (v->valueint > max_id)
			max_id = v->valueint;
	}
	for (const cJSON *a = added ? added->child : NULL; a; a = a->next, n_strings++) {
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id");
		const char *content = json_str(a, "content");
		if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > 1e8 ||
		    id->valuedouble != (double)id->valueint || !content || !content[0])
			return hmoe_err(HMOE_EINPUT, "%s: added_tokens: entry %d needs an integer id "
					"and a non-empty content", path, n_strings);
		if (id->valueint > max_id)
			max_id = id->valueint;
	}
	if (max_id < 0)
		return hmoe_err(HMOE_EINPUT, "%s: model.vocab is empty", path);
	t->n_vocab = max_id + 1;

	size_t nv = (size_t)t->n_vocab;
	t->str_off = calloc(nv, sizeof(uint32_t));
	t->str_len = calloc(nv, sizeof(uint32_t));
	t->raw_off = calloc(nv, sizeof(uint32_t));
	t->raw_len = calloc(nv, sizeof(uint32_t));
	t->flags = calloc(nv, 1);
	t->str_mask = pow2_at_least(2 * (size_t)n_strings + 16) - 1;
	t->str_hash = malloc(((size_t)t->str_mask + 1) * sizeof(struct tok_slot));
	if (!t->str_off || !t->str_len || !t->raw_off || !t->raw_len || !t->flags ||
	    !t->str_hash)
		return hmoe_err(HMOE_ENOMEM, "%s: out of memory for %d tokens", path, t->n_vocab);
	for (size_t i = 0; i <= t->str_mask; i++)
		t->str_hash[i].id = -1;

	tok_byte_map(byte_to_cp);
	for (int i = 0; i < 324; i++)
		cp_to_byte[i] = -1;
	for (int b = 0; b < 256; b++)
		cp_to_byte[byte_to_cp[b]] = b;

	for (const cJSON *v = vocab->child; v; v = v->next) {
		ret = tok_set(t, path, v->valueint, v->string, 0, 0, cp_to_byte);
		if (ret < 0)
			return ret;
	}
	for (const cJSON *a = added ? added->child : NULL; a; a = a->next) {
		const char *content = json_str(a, "content");
		int id = cJSON_GetObjectItemCaseSensitive(a, "id")->valueint;
		if (json_true(a, "lstrip") || json_true(a, "rstrip") || json_true(a, "single_word"))
			return hmoe_err(HMOE_EINPUT, "%s: added token \"%s\": lstrip, rstrip and "
					"single_word are not supported", path, content);
		ret = tok_set(t, path, id, content, 1, json_true(a, "special"), cp_to_byte);
		if (ret < 0)
			return ret;
		size_t n = strlen(content);
		t->added_first[(unsigned char)content[0]] = 1;
		int known = 0;
		for (int i = 0; i < t->n_added_lens; i++)
			known |= t->added_lens[i] == (int)n;
		if (!known) {
			if (t->n_added_lens == (int)(sizeof(t->added_lens) / sizeof(int)))
				return hmoe_err(HMOE_EINPUT, "%s: added_tokens: more than %d distinct "
						"lengths", path, t->n_added_lens);
			int i = t->n_added_lens++;
			while (i > 0 && t->added_lens[i - 1] < (int)n) {
				t->added_lens[i] = t->added_lens[i - 1];
				i--;
			}
			t->added_lens[i] = (int)n;
		}
	}

	/* one-byte tokens: the start of every word */
	for (int b = 0; b < 256; b++) {
		char s[4];
		uint32_t cp = byte_to_cp[b];
		size_t n;
		if (cp < 0x80) {
			s[0] = (char)cp;
			n = 1;
		} else {
			s[0] = (char)(0xC0 | (cp >> 6));
			s[1] = (char)(0x80 | (cp & 0x3F));
			n = 2;
		}
		int id = str_find(t, s, n);
		t->byte_id[b] = id >= 0 && !(t->flags[id] & TOK_ADDED) ? id : -1;
	}

	/* merges: (left id, right id) -> (rank, merged id) */
	int n_merges = cJSON_GetArraySize(merges);
	t->merge_mask = pow2_at_least(2 * (size_t)n_merges + 16) - 1;
	t->merges = calloc((size_t)t->merge_mask + 1, sizeof(struct tok_merge));
	if (!t->merges)
		return hmoe_err(HMOE_ENOMEM, "%s: out of memory for %d merges", path, n_merges);
	char buf[1024], joined[1024];
	long rank = 0;
	for (const cJSON *m = merges->child; m; m = m->next, rank++) {
		const char *a = NULL, *b = NULL;
		ret = merge_parts(path, m, rank, buf, sizeof(buf), &a, &b);
		if (ret < 0)
			return ret;
		size_t na = strlen(a), nb = strlen(b);
		int ia = str_find(t, a, na), ib = str_find(t, b, nb), im = -1;
		if (na + nb < sizeof(joined)) {
			memcpy(joined, a, na);
			memcpy(joined + na, b, nb);
			im = str_find(t, joined, na + nb);
		}
		if (ia < 0 || ib < 0 || im < 0)
			return hmoe_err(HMOE_EINPUT, "%s: model.merges[%ld] \"%s\" + \"%s\": %s is "
					"not in model.vocab", path, rank, a, b,
					ia < 0 ? "the left part" : ib < 0 ? "the right part" :
					"the merged token");
		uint64_t key = merge_key(ia, ib);
		uint32_t i = (uint32_t)tok_mix64(key) & t->merge_mask;
		while (t->merges[i].key != 0 && t->merges[i].key != key)
			i = (i + 1) & t->merge_mask;
		/* a repeated pair keeps its last rank, as in the reference */
		t->merges[i] = (struct tok_merge){ .key = key, .rank = (int32_t)rank, .id = im };
	}
	return 0;
}

/* The bos/eos strings: tokenizer_config.json beside tokenizer.json ("bos_token" as a
 * string or {"content": ...}), else the DeepSeek names when the file has them. */
static int load_bos_eos(struct hmoe_tok *t, const char *json_path)
{
	const char *slash = strrchr(json_path, '/');
	size_t dir_len = slash ? (size_t)(slash - json_path + 1) : 0;
	char *cfg_path = malloc(dir_len + sizeof("tokenizer_config.json"));
	if (!cfg_path)
		return hmoe_err(HMOE_ENOMEM, "tokenizer: out of memory");
	memcpy(cfg_path, json_path, dir_len);
	strcpy(cfg_path + dir_len, "tokenizer_config.json");

	t->bos = hmoe_tok_id(t, HMOE_CHAT_BOS);
	t->eos = hmoe_tok_id(t, HMOE_CHAT_EOS);

	FILE *f = fopen(cfg_path, "rb");
	if (!f) {
		free(cfg_path);
		return 0;
	}
	fclose(f);
	char *text;
	size_t len;
	int ret = read_file(cfg_path, &text, &len);
	if (ret < 0) {
		free(cfg_path);
		return ret;
	}
	cJSON *cfg = cJSON_ParseWithLength(text, len);
	free(text);
	if (!cJSON_IsObject(cfg)) {
		cJSON_Delete(cfg);
		ret = hmoe_err(HMOE_EINPUT, "%s: not valid JSON (an object expected)", cfg_path);
		free(cfg_path);
		return ret;
	}
	const char *keys[2] = { "bos_token", "eos_token" };
	int *ids[2] = { &t->bos, &t->eos };
	for (int k = 0; k < 2 && ret == 0; k++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, keys[k]);
		const char *s = cJSON_IsString(v) ? v->valuestring :
				cJSON_IsObject(v) ? json_str(v, "content") : NULL;
		if (!v || cJSON_IsNull(v))
			continue;
		if (!s)
			ret = hmoe_err(HMOE_EINPUT, "%s: %s: expected a string or {\"content\": ...}",
				       cfg_path, keys[k]);
		else if ((*ids[k] = hmoe_tok_id(t, s)) < 0)
			ret = hmoe_err(HMOE_EINPUT, "%s: %s \"%s\" is not a token of tokenizer.json",
				       cfg_path, keys[k], s);
	}
	cJSON_Delete(cfg);
	free(cfg_path);
	return ret;
}

int hmoe_tok_load(struct hmoe_tok **out, const char *path)
{
	char *text = NULL;
	size_t len;
	cJSON *root = NULL;
	struct hmoe_tok *t = NULL;
	int ret;

	*out = NULL;
	ret = read_file(path, &text, &len);
	if (ret < 0)
		return ret;
	root = cJSON_ParseWithLength(text, len);
	if (!cJSON_IsObject(root)) {
		ret = hmoe_err(HMOE_EINPUT, "%s: not valid JSON (an object expected)", path);
		goto err;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		ret = hmoe_err(HMOE_ENOMEM, "%s: out of memory", path);
		goto err;
	}
	t->bos = t->eos = -1;
	ret = load_normalizer(path, root);
	if (ret == 0)
		ret = load_pre_tokenizer(t, path, root);
	if (ret == 0)
		ret = load_model(t, path, root);
	if (ret == 0)
		ret = load_bos_eos(t, path);
	if (ret < 0)
		goto err;
	cJSON_Delete(root);
	free(text);
	*out = t;
	return 0;
err:
	hmoe_tok_free(t);
	cJSON_Delete(root);
	free(text);
	return ret;
}

int hmoe_tok_load_dir(struct hmoe_tok **out, const char *dir)
{
	size_t n = strlen(dir);
	char *path = malloc(n + sizeof("/tokenizer.json"));
	if (!path)
		return hmoe_err(HMOE_ENOMEM, "tokenizer: out of memory");
	memcpy(path, dir, n);
	strcpy(path + n, "/tokenizer.json");
	int ret = hmoe_tok_load(out, path);
	free(path);
	return ret;
}

int hmoe_tok_open(struct hmoe_tok **out, const char *model_dir, const char *tokenizer_json)
{
	*out = NULL;
	if ((model_dir != NULL) == (tokenizer_json != NULL))
		return hmoe_err(HMOE_EINPUT, "tokenizer: give exactly one of a model directory "
				"(--model) and a tokenizer.json (--tokenizer)");
	return model_dir ? hmoe_tok_load_dir(out, model_dir) : hmoe_tok_load(out, tokenizer_json);
}

void hmoe_tok_free(struct hmoe_tok *t)
{
	if (!t)
		return;
	for (int i = 0; i < t->n_split; i++)
		pcre2_code_free(t->split[i]);
	free(t->str_off);
	free(t->str_len);
	free(t->raw_off);
	free(t->raw_len);
	free(t->flags);
	free(t->strs.base);
	free(t->raws.base);
	free(t->str_hash);
	free(t->merges);
	free(t);
}

int hmoe_tok_n_vocab(const struct hmoe_tok *t) { return t->n_vocab; }
int hmoe_tok_bos(const struct hmoe_tok *t) { return t->bos; }
int hmoe_tok_eos(const struct hmoe_tok *t) { return t->eos; }

int hmoe_tok_id(const struct hmoe_tok *t, const char *token)
{
	return str_find(t, token, strlen(token));
}

int hmoe_tok_is_special(const struct hmoe_tok *t, int id)
{
	return id >= 0 && id < t->n_vocab && (t->flags[id] & TOK_ADDED) != 0;
}

const char *hmoe_tok_token(const struct hmoe_tok *t, int id)
{
	if (id < 0 || id >= t->n_vocab || !(t->flags[id] & TOK_HAS))
		return NULL;
	return t->strs.base + t->str_off[id];
}

const unsigned char *hmoe_tok_bytes(const struct hmoe_tok *t, int id, size_t *len)
{
	if (id < 0 || id >= t->n_vocab || !(t->flags[id] & TOK_HAS))
		return NULL;
	*len = t->raw_len[id];
	return (const unsigned char *)t->raws.base + t->raw_off[id];
}

/* ------------------------------------------------------------------------------------ */
/* encode */

struct id_vec {
	int *v;
	int n, cap;
};

static int id_push(struct id_vec *o, int id)
{
	if (o->n == o->cap) {
		int nc = o->cap ? o->cap * 2 : 256;
		int *nv = realloc(o->v, (size_t)nc * sizeof(int));
		if (!nv)
			return hmoe_err(HMOE_ENOMEM, "tokenizer: out of memory for %d ids", nc);
		o->v = nv;
		o->cap = nc;
	}
	o->v[o->n++] = id;
	return 0;
}

/* A possible merge of the symbol at pos with its right neighbour. */
struct bpe_cand {
	int32_t rank, pos, id;
};

static int cand_less(const struct bpe_cand *a, const struct bpe_cand *b)
{
	return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(struct bpe_cand *h, int *n, struct bpe_cand c)
{
	int i = (*n)++;
	while (i > 0 && cand_less(&c, &h[(i - 1) / 2])) {
		h[i] = h[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h[i] = c;
}

static struct bpe_cand heap_pop(struct bpe_cand *h, int *n)
{
	struct bpe_cand top = h[0], last = h[--(*n)];
	int i = 0;
	for (;;) {
		int c = 2 * i + 1;
		if (c >= *n)
			break;
		if (c + 1 < *n && cand_less(&h[c + 1], &h[c]))
			c++;
		if (!cand_less(&h[c], &last))
			break;
		h[i] = h[c];
		i = c;
	}
	h[i] = last;
	return top;
}

static void cand_add(const struct hmoe_tok *t, const int *sym, const int *next, int pos,
		     struct bpe_cand *heap, int *n_heap)
{
	if (pos < 0 || next[pos] < 0)
		return;
	const struct tok_merge *m = merge_find(t, sym[pos], sym[next[pos]]);
	if (m)
		heap_push(heap, n_heap, (struct bpe_cand){ m->rank, pos, m->id });
}

/* BPE over one pre-token of n bytes. Symbols are indexed by their first byte; a merged-away
 * symbol has sym = -1. */
static int bpe_word(const struct hmoe_tok *t, const unsigned char *s, int n, struct id_vec *o)
{
	int stack_buf[4 * 64];
	struct bpe_cand stack_heap[3 * 64];
	int *buf = stack_buf;
	struct bpe_cand *heap = stack_heap;
	int n_heap = 0, ret = 0;

	if (n > 64) {
		buf = malloc((size_t)n * 3 * sizeof(int));
		heap = malloc((size_t)n * 3 * sizeof(struct bpe_cand));
		if (!buf || !heap) {
			ret = hmoe_err(HMOE_ENOMEM, "tokenizer: out of memory for a %d-byte word", n);
			goto out;
		}
	}
	int *sym = buf, *prev = buf + n, *next = buf + 2 * n;
	for (int i = 0; i < n; i++) {
		sym[i] = t->byte_id[s[i]];
		prev[i] = i - 1;
		next[i] = i + 1 < n ? i + 1 : -1;
	}
	for (int i = 0; i < n; i++)
		if (sym[i] < 0) {
			ret = hmoe_err(HMOE_EINPUT, "tokenizer.json has no token for byte 0x%02x",
				       s[i]);
			goto out;
		}
	for (int i = 0; i + 1 < n; i++)
		cand_add(t, sym, next, i, heap, &n_heap);
	while (n_heap > 0) {
		struct bpe_cand c = heap_pop(heap, &n_heap);
		int r = next[c.pos];
		/* stale: the symbol or its neighbour changed since this candidate was made */
		if (sym[c.pos] < 0 || r < 0)
			continue;
		const struct tok_merge *m = merge_find(t, sym[c.pos], sym[r]);
		if (!m || m->id != c.id || m->rank != c.rank)
			continue;
		sym[c.pos] = c.id;
		sym[r] = -1;
		next[c.pos] = next[r];
		if (next[r] >= 0)
			prev[next[r]] = c.pos;
		cand_add(t, sym, next, prev[c.pos], heap, &n_heap);
		cand_add(t, sym, next, c.pos, heap, &n_heap);
	}
	for (int i = 0; i >= 0 && ret == 0; i = next[i])
		ret = id_push(o, sym[i]);
out:
	if (buf != stack_buf)
		free(buf);
	if (heap != stack_heap)
		free(heap);
	return ret;
}

/* Applies pre-tokenizer split `level` to s[0, n) and passes every piece (gaps and matches,
 * in order) to the next level; past the last split, a piece is one BPE word. */
static int pretok(const struct hmoe_tok *t, pcre2_match_data *md, int level,
		  const unsigned char *s, size_t n, struct id_vec *o)
{
	if (n == 0)
		return 0;
	if (level == t->n_split)
		return bpe_word(t, s, (int)n, o);
	size_t off = 0, prev = 0;
	int ret;
	while (off <= n) {
		int rc = pcre2_match(t->split[level], s, n, off, PCRE2_NO_UTF_CHECK, md, NULL);
		if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
			rc = pcre2_match(t->split[level], s, n, off,
					 PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
		if (rc == PCRE2_ERROR_NOMATCH)
			break;
		if (rc < 0) {
			PCRE2_UCHAR msg[256];
			pcre2_get_error_message(rc, msg, sizeof(msg));
			return hmoe_err(HMOE_EINPUT, "tokenizer: pre_tokenizer regex %d failed on a "
					"%zu-byte piece: %s", level, n, (const char *)msg);
		}
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
		size_t ms = ov[0], me = ov[1];
		if (ms > prev && (ret = pretok(t, md, level + 1, s + prev, ms - prev, o)) < 0)
			return ret;
		if (me > ms && (ret = pretok(t, md, level + 1, s + ms, me - ms, o)) < 0)
			return ret;
		prev = me;
		if (me > ms) {
			off = me;
		} else {
			/* an empty match: step over one character */
			size_t len = 1;
			if (me < n)
				utf8_step(s + me, n - me, &len);
			off = me + len;
		}
	}
	return prev < n ? pretok(t, md, level + 1, s + prev, n - prev, o) : 0;
}

/* The added token that starts at s (leftmost-longest), or -1. */
static int added_at(const struct hmoe_tok *t, const unsigned char *s, size_t n, int *len)
{
	if (!t->added_first[s[0]])
		return -1;
	for (int i = 0; i < t->n_added_lens; i++) {
		int l = t->added_lens[i];
		if ((size_t)l > n)
			continue;
		int id = str_find(t, (const char *)s, (size_t)l);
		if (id >= 0 && (t->flags[id] & TOK_ADDED)) {
			*len = l;
			return id;
		}
	}
	return -1;
}

int hmoe_tok_encode(const struct hmoe_tok *t, const char *text, size_t len, int **ids,
		    int *n_ids)
{
	const unsigned char *s = (const unsigned char *)text;
	struct id_vec o = { 0 };
	pcre2_match_data *md = NULL;
	int ret = 0;

	*ids = NULL;
	*n_ids = 0;
	for (size_t i = 0, l; i < len; i += l) {
		if (utf8_step(s + i, len - i, &l) != UTF8_OK)
			return hmoe_err(HMOE_EINPUT, "tokenize: text is not valid UTF-8 at byte %zu "
					"(0x%02x)", i, s[i]);
	}
	if (len > (size_t)INT32_MAX)
		return hmoe_err(HMOE_EINPUT, "tokenize: text of %zu bytes is over 2 GiB", len);
	if (len > 0 && t->n_split > 0) {
		md = pcre2_match_data_create(4, NULL);
		if (!md)
			return hmoe_err(HMOE_ENOMEM, "tokenizer: out of memory for regex match data");
	}
	size_t start = 0, i = 0;
	while (i < len && ret == 0) { /* (the empty text, perhaps text == NULL, skips all) */
		int l, id = added_at(t, s + i, len - i, &l);
		if (id < 0) {
			i++;
			continue;
		}
		ret = pretok(t, md, 0, s + start, i - start, &o);
		if (ret == 0)
			ret = id_push(&o, id);
		i += (size_t)l;
		start = i;
	}
	if (ret == 0 && start < len)
		ret = pretok(t, md, 0, s + start, len - start, &o);
	pcre2_match_data_free(md);
	if (ret < 0) {
		free(o.v);
		return ret;
	}
	if (!o.v) {
		o.v = malloc(sizeof(int)); /* a valid pointer for an empty result */
		if (!o.v)
			return hmoe_err(HMOE_ENOMEM, "tokenizer: out of memory");
	}
	*ids = o.v;
	*n_ids = o.n;
	return 0;
}

/* ------------------------------------------------------------------------------------ */
/* decode */

static const char REPLACEMENT[3] = { (char)0xEF, (char)0xBF, (char)0xBD }; /* U+FFFD */

/* Appends bytes b[0, n) as text to out (capacity cap, w bytes used): valid characters as
 * they are, invalid subparts as U+FFFD. An incomplete sequence at the end is left out
 * when hold is set (*held = its length), else replaced. Returns 0 or -1 if out is full. */
static int utf8_emit(const unsigned char *b, size_t n, int hold, char *out, size_t cap,
		     size_t *w, size_t *held)
{
	size_t i = 0, len;
	*held = 0;
	while (i < n) {
		enum utf8_step st = utf8_step(b + i, n - i, &len);
		if (st == UTF8_INCOMPLETE && hold) {
			*held = len;
			return 0;
		}
		const char *src = st == UTF8_OK ? (const char *)b + i : REPLACEMENT;
		size_t k = st == UTF8_OK ? len : 3;
		if (*w + k + 1 > cap)
			return -1;
		memcpy(out + *w, src, k);
		*w += k;
		i += len;
	}
	return 0;
}

int hmoe_tok_decode(const struct hmoe_tok *t, const int *ids, int n_ids, int skip_special,
		    char **text)
{
	size_t n_bytes = 0, w = 0, held;
	*text = NULL;
	for (int i = 0; i < n_ids; i++) {
		if (ids[i] < 0 || ids[i] >= t->n_vocab || !(t->flags[ids[i]] & TOK_HAS))
			return hmoe_err(HMOE_EINPUT, "detokenize: id %d at position %d is not a token "
					"(ids run 0..%d)", ids[i], i, t->n_vocab - 1);
		n_bytes += t->raw_len[ids[i]];
	}
	unsigned char *bytes = malloc(n_bytes + 1);
	size_t cap = 3 * n_bytes + 1; /* every byte could become a 3-byte U+FFFD */
	char *out = malloc(cap);
	if (!bytes || !out) {
		free(bytes);
		free(out);
		return hmoe_err(HMOE_ENOMEM, "detokenize: out of memory for %zu bytes", n_bytes);
	}
	n_bytes = 0;
	for (int i = 0; i < n_ids; i++) {
		int id = ids[i];
		if (skip_special && (t->flags[id] & TOK_SPECIAL))
			continue;
		memcpy(bytes + n_bytes, t->raws.base + t->raw_off[id], t->raw_len[id]);
		n_bytes += t->raw_len[id];
	}
	utf8_emit(bytes, n_bytes, 0, out, cap, &w, &held); /* cannot overflow: cap is 3x */
	out[w] = 0;
	free(bytes);
	*text = out;
	return 0;
}

void hmoe_tok_stream_init(struct hmoe_tok_stream *s, const struct hmoe_tok *t,
			  int skip_special)
{
	memset(s, 0, sizeof(*s));
	s->tok = t;
	s->skip_special = skip_special;
}

int hmoe_tok_stream_push(struct hmoe_tok_stream *s, int id, char *out, size_t cap)
{
	const struct hmoe_tok *t = s->tok;
	if (cap == 0)
		return hmoe_err(HMOE_EINPUT, "detokenize: stream output buffer has no room");
	out[0] = 0;
	if (id < 0 || id >= t->n_vocab || !(t->flags[id] & TOK_HAS))
		return hmoe_err(HMOE_EINPUT, "detokenize: id %d is not a token (ids run 0..%d)", id,
				t->n_vocab - 1);
	if (s->skip_special && (t->flags[id] & TOK_SPECIAL))
		return 0;

	size_t n = (size_t)s->n_pending + t->raw_len[id], w = 0, held;
	unsigned char stack[512], *b = n <= sizeof(stack) ? stack : malloc(n);
	if (!b)
		return hmoe_err(HMOE_ENOMEM, "detokenize: out of memory");
	memcpy(b, s->pending, (size_t)s->n_pending);
	memcpy(b + s->n_pending, t->raws.base + t->raw_off[id], t->raw_len[id]);
	int full = utf8_emit(b, n, 1, out, cap, &w, &held);
	if (!full) {
		memcpy(s->pending, b + n - held, held);
		s->n_pending = (int)held;
	}
	if (b != stack)
		free(b);
	if (full) {
		out[0] = 0;
		return hmoe_err(HMOE_EINPUT, "detokenize: stream output buffer of %zu bytes is too "
				"small for token %d", cap, id);
	}
	out[w] = 0;
	return (int)w;
}

int hmoe_tok_stream_flush(struct hmoe_tok_stream *s, char *out, size_t cap)
{
	size_t w = 0, held;
	if (cap == 0)
		return hmoe_err(HMOE_EINPUT, "detokenize: stream output buffer has no room");
	if (utf8_emit(s->pending, (size_t)s->n_pending, 0, out, cap, &w, &held) < 0) {
		out[0] = 0;
		return hmoe_err(HMOE_EINPUT, "detokenize: stream output buffer of %zu bytes is too "
				"small to flush", cap);
	}
	s->n_pending = 0;
	out[w] = 0;
	return (int)w;
}
