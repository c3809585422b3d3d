/* hmoe_eval: problem sets, answer extraction and matching (see hmoe_eval.h).
 *
 * Sections: held-out arithmetic -> jsonl files -> answer extraction -> matching. */
#include "hmoe_eval.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "hmoe_err.h"
#include "hmoe_jsonl.h"

/* ---- held-out arithmetic ---- */

static uint64_t mix64(uint64_t z)
{
	z += 0x9E3779B97F4A7C15ull;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

uint64_t hmoe_eval_heldout_hash(int op, int a, int b)
{
	return mix64((uint64_t)op << 40 | (uint64_t)a << 20 | (uint64_t)b);
}

uint64_t hmoe_eval_sample_seed(uint64_t seed, int problem, int sample)
{
	return mix64(seed ^ ((uint64_t)problem << 20 | (uint64_t)sample));
}

int hmoe_eval_is_heldout(int op, int a, int b)
{
	return hmoe_eval_heldout_hash(op, a, b) % HMOE_EVAL_HELDOUT_MOD == 0;
}

void hmoe_eval_set_free(struct hmoe_eval_set *set)
{
	for (int i = 0; set->p && i < set->n; i++) {
		free(set->p[i].prompt);
		free(set->p[i].answer);
	}
	free(set->p);
	set->p = NULL;
	set->n = 0;
}

/* Uniform integer in [lo, hi] from a splitmix64 stream (rejection: no modulo bias). */
static int draw(uint64_t *state, int lo, int hi)
{
	uint64_t span = (uint64_t)(hi - lo + 1), limit = UINT64_MAX - UINT64_MAX % span, r;

	do
		r = mix64((*state)++);
	while (r >= limit);
	return lo + (int)(r % span);
}

static int set_add(struct hmoe_eval_set *set, int cap, const char *prompt, const char *answer)
{
	struct hmoe_eval_problem *p;

	if (set->n == cap)
		return hmoe_err(HMOE_EINTERNAL, "eval: problem set overflow");
	p = &set->p[set->n];
	p->prompt = strdup(prompt);
	p->answer = strdup(answer);
	if (!p->prompt || !p->answer) {
		free(p->prompt);
		free(p->answer);
		return hmoe_err(HMOE_ENOMEM, "eval: out of memory");
	}
	set->n++;
	return 0;
}

int hmoe_eval_arith(struct hmoe_eval_set *set, const char *task, int n)
{
	static const char sym[4] = { 0, '+', '-', '*' };
	int fixed_op = !strcmp(task, "arith") ? HMOE_EVAL_ADD :
		       !strcmp(task, "arith-sub") ? HMOE_EVAL_SUB :
		       !strcmp(task, "arith-mul") ? HMOE_EVAL_MUL :
		       !strcmp(task, "arith-mix") ? 0 : -1;
	uint64_t state = HMOE_EVAL_ARITH_SEED;
	int (*seen)[3];
	int ret = 0;

	memset(set, 0, sizeof(*set));
	if (fixed_op < 0)
		return hmoe_err(HMOE_EINPUT, "eval task '%s': expected one of %s", task,
				HMOE_EVAL_ARITH_TASKS);
	if (n <= 0 || n > 100000)
		return hmoe_err(HMOE_EINPUT, "eval: %d problems: expected 1..100000", n);
	set->p = calloc((size_t)n, sizeof(*set->p));
	seen = calloc((size_t)n, sizeof(*seen));
	if (!set->p || !seen) {
		free(seen);
		free(set->p);
		set->p = NULL;
		return hmoe_err(HMOE_ENOMEM, "eval: out of memory for %d problems", n);
	}
	while (set->n < n) {
		int op = fixed_op ? fixed_op : 1 + set->n % 3;
		int a = draw(&state, 100, 999);
		int b = op == HMOE_EVAL_MUL ? draw(&state, 0, 9) : draw(&state, 100, 999);
		int dup = 0;
		char prompt[64], answer[32];

		if (op == HMOE_EVAL_SUB && a < b) {
			int t = a;

			a = b;
			b = t;
		}
		if (!hmoe_eval_is_heldout(op, a, b))
			continue;
		for (int i = 0; i < set->n && !dup; i++)
			dup = seen[i][0] == op && seen[i][1] == a && seen[i][2] == b;
		if (dup)
			continue;
		seen[set->n][0] = op;
		seen[set->n][1] = a;
		seen[set->n][2] = b;
		snprintf(prompt, sizeof(prompt), "What is %d %c %d?", a, sym[op], b);
		snprintf(answer, sizeof(answer), "%d",
			 op == HMOE_EVAL_ADD ? a + b : op == HMOE_EVAL_SUB ? a - b : a * b);
		if ((ret = set_add(set, n, prompt, answer)))
			break;
	}
	free(seen);
	if (ret)
		hmoe_eval_set_free(set);
	return ret;
}

/* ---- jsonl files ---- */

struct jsonl_load {
	struct hmoe_eval_set *set;
	const char *path;
	int cap;
};

static int load_problem(void *arg, const cJSON *j, long lineno)
{
	struct jsonl_load *ld = arg;
	const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(j, "prompt");
	const cJSON *answer = cJSON_GetObjectItemCaseSensitive(j, "answer");
	struct hmoe_eval_set *set = ld->set;
	char num[64];
	const char *ans;

	if (!cJSON_IsString(prompt) || !*prompt->valuestring)
		return hmoe_err(HMOE_EINPUT, "%s line %ld: \"prompt\" missing or not a "
				"non-empty string", ld->path, lineno);
	if (cJSON_IsNumber(answer)) {
		snprintf(num, sizeof(num), "%.17g", answer->valuedouble);
		ans = num;
	} else if (cJSON_IsString(answer) && !hmoe_jsonl_blank(answer->valuestring)) {
		ans = answer->valuestring;
	} else {
		return hmoe_err(HMOE_EINPUT, "%s line %ld: \"answer\" missing or not a "
				"non-empty string or number", ld->path, lineno);
	}
	if (set->n == ld->cap) {
		int ncap = ld->cap ? 2 * ld->cap : 64;
		struct hmoe_eval_problem *np = realloc(set->p, (size_t)ncap * sizeof(*np));

		if (!np)
			return hmoe_err(HMOE_ENOMEM, "%s: out of memory", ld->path);
		set->p = np;
		ld->cap = ncap;
	}
	return set_add(set, ld->cap, prompt->valuestring, ans);
}

int hmoe_eval_load_jsonl(struct hmoe_eval_set *set, const char *path)
{
	struct jsonl_load ld = { set, path, 0 };
	int ret;

	memset(set, 0, sizeof(*set));
	ret = hmoe_jsonl_read(path, "no problems (expected jsonl lines {\"prompt\": ..., "
			      "\"answer\": ...})", load_problem, &ld);
	if (ret)
		hmoe_eval_set_free(set);
	return ret;
}

/* ---- answer extraction ---- */

static void put(char *out, size_t cap, const char *s, size_t n)
{
	if (!cap)
		return;
	if (n > cap - 1)
		n = cap - 1;
	memcpy(out, s, n);
	out[n] = '\0';
}

/* Last occurrence of needle in [s, end), or NULL. */
static const char *last_of(const char *s, const char *needle)
{
	const char *hit = NULL, *p = s;

	while ((p = strstr(p, needle))) {
		hit = p;
		p++;
	}
	return hit;
}

/* Content of the \boxed{...} starting at b, or 0 if its braces never close. */
static int boxed_content(const char *b, const char **start, size_t *len)
{
	const char *p = b + strlen("\\boxed{");
	int depth = 1;

	*start = p;
	for (; *p; p++) {
		if (*p == '{')
			depth++;
		else if (*p == '}' && --depth == 0) {
			*len = (size_t)(p - *start);
			return 1;
		}
	}
	return 0;
}

int hmoe_eval_extract(const char *text, char *out, size_t cap)
{
	const char *ans = last_of(text, "</think>"), *b, *p, *last_num = NULL;
	size_t last_len = 0;

	put(out, cap, "", 0);
	if (!ans)
		return 0;
	ans += strlen("</think>");

	/* 1. the last \boxed{...}, when its braces close */
	b = last_of(ans, "\\boxed{");
	if (b) {
		const char *s;
		size_t n;

		if (boxed_content(b, &s, &n)) {
			put(out, cap, s, n);
			return 1;
		}
	}
	/* 2. after the last "answer is" (any case), to the end of that line */
	b = NULL;
	for (p = ans; *p; p++)
		if (!strncasecmp(p, "answer is", 9))
			b = p + 9;
	if (b) {
		const char *e;

		while (*b == ' ' || *b == ':' || *b == '\t')
			b++;
		e = b;
		while (*e && *e != '\n')
			e++;
		while (e > b && (isspace((unsigned char)e[-1]) || e[-1] == '.'))
			e--;
		if (e > b) {
			put(out, cap, b, (size_t)(e - b));
			return 1;
		}
	}
	/* 3. the last number: digits with optional sign, separators and decimals */
	for (p = ans; *p;) {
		if (isdigit((unsigned char)*p)) {
			const char *s = p;

			if (s > ans && s[-1] == '-')
				s--;
			while (isdigit((unsigned char)*p) ||
			       ((*p == ',' || *p == '.') && isdigit((unsigned char)p[1])))
				p++;
			last_num = s;
			last_len = (size_t)(p - s);
		} else {
			p++;
		}
	}
	if (last_num) {
		put(out, cap, last_num, last_len);
		return 1;
	}
	return 0;
}

/* ---- matching ---- */

/* Normalised copy of s (malloc'ed), as hmoe_eval_match describes. */
static char *normalise(const char *s)
{
	static const char *const drop[] = { "\\left", "\\right", "\\!", "\\,", "\\;", "$" };
	size_t n = strlen(s);
	char *o = malloc(n + 1), *w = o;
	char *num;
	size_t len;

	if (!o)
		return NULL;
	while (*s) {
		int skipped = 0;

		for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++) {
			size_t dl = strlen(drop[i]);

			if (!strncmp(s, drop[i], dl)) {
				s += dl;
				skipped = 1;
				break;
			}
		}
		if (skipped)
			continue;
		if (!isspace((unsigned char)*s))
			*w++ = *s;
		s++;
	}
	*w = '\0';
	len = strlen(o);
	while (len && o[len - 1] == '.')
		o[--len] = '\0';
	if (!strncmp(o, "\\text{", 6) && len > 7 && o[len - 1] == '}') {
		memmove(o, o + 6, len - 7);
		o[len - 7] = '\0';
	}
	/* thousands separators: "1,032" -> "1032" when what is left is a number */
	num = strdup(o);
	if (num) {
		char *r = num, *q = num;

		for (; *r; r++)
			if (*r != ',')
				*q++ = *r;
		*q = '\0';
		strtod(num, &r);
		if (*num && !*r && strchr(o, ',')) {
			strcpy(o, num);
		}
		free(num);
	}
	return o;
}

static int as_number(const char *s, double *v)
{
	char *end;

	if (!*s)
		return 0;
	errno = 0;
	*v = strtod(s, &end);
	return !*end && errno == 0;
}

int hmoe_eval_match(const char *got, const char *want)
{
	char *g = normalise(got), *w = normalise(want);
	double a, b;
	int ok;

	if (!g || !w) {
		free(g);
		free(w);
		return 0;
	}
	if (as_number(g, &a) && as_number(w, &b))
		ok = a == b;
	else
		ok = *g && !strcmp(g, w);
	free(g);
	free(w);
	return ok;
}
