/* hmoe_batch: continuous batching with chunked prefill (see hmoe_batch.h).
 *
 * Sections: types -> lifetime -> requests -> scheduling (one step) -> queries. */
#include "hmoe_batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmoe_clock.h"
#include "hmoe_err.h"
#include "hmoe_kv.h"
#include "hmoe_sample.h"

/* ---- types ---- */

enum req_state {
	REQ_WAITING,   /* submitted, not admitted (no cache) */
	REQ_PREFILL,   /* admitted, prompt partly in its cache */
	REQ_DECODE,    /* generating: tokens[n_tokens - 1] is the next to feed */
	REQ_DONE,
};

struct req {
	struct hmoe_batch_req pub;  /* what callbacks and hmoe_batch_request see */
	enum req_state state;
	int *prompt;                /* (n_prompt) */
	int *stop;                  /* (n_stop) */
	int n_stop;
	int max_tokens;
	int *tokens;                /* (cap_tokens) backs pub.tokens */
	int cap_tokens;
	struct hmoe_kv *kv;         /* from admission to finish */
	struct hmoe_sampler sampler;
};

/* One request's share of a step's batch: its decode token, or one prompt chunk. */
struct item {
	struct req *r;
	int n_tokens;
	int prefill;
	int want_logits;            /* decode, or the prompt's last chunk */
};

struct hmoe_batch {
	struct hmoe_forward *fwd;
	const struct hmoe_config *cfg;
	struct hmoe_batch_opts o;   /* defaults filled in */
	struct req **by_id;         /* (n_ids) NULL once released */
	int n_ids, cap_ids;
	struct req **waiting;       /* (n_waiting) not admitted, by (arrive_step, id) */
	int n_waiting, cap_waiting;
	struct req **running;       /* (n_running <= max_seqs) admitted, admission order */
	int n_running;
	struct hmoe_fwd_token *toks; /* (max_seqs + max_batch_tokens) one step's batch */
	struct item *items;         /* (max_seqs) */
	float *logits;              /* (max_seqs, vocab_size) */
	float *scratch;             /* (2 * n_valid) sampler scratch */
	long clock;                 /* number of the next step */
	double batch_tokens_sum;
	struct hmoe_batch_stats st;
};

/* ---- lifetime ---- */

static int check_opts(const struct hmoe_batch_opts *o, const struct hmoe_config *cfg)
{
	if (o->max_seqs < 1)
		return hmoe_err(HMOE_EINPUT, "batch: max_seqs %d must be >= 1", o->max_seqs);
	if (o->prefill_chunk < 1)
		return hmoe_err(HMOE_EINPUT, "batch: prefill_chunk %d must be >= 1",
				o->prefill_chunk);
	if (o->max_batch_tokens < o->prefill_chunk)
		return hmoe_err(HMOE_EINPUT, "batch: max_batch_tokens %d is smaller than "
				"prefill_chunk %d (a chunk would never fit a step)",
				o->max_batch_tokens, o->prefill_chunk);
	if (o->max_ctx < 1)
		return hmoe_err(HMOE_EINPUT, "batch: context limit %d must be >= 1", o->max_ctx);
	if (o->n_valid < 1 || o->n_valid > cfg->vocab_size)
		return hmoe_err(HMOE_EINPUT, "batch: n_valid %d outside [1, vocab_size %d]",
				o->n_valid, cfg->vocab_size);
	return 0;
}

int hmoe_batch_create(struct hmoe_batch **out, struct hmoe_forward *fwd,
		      const struct hmoe_config *cfg, const struct hmoe_batch_opts *o)
{
	struct hmoe_batch *b;
	struct hmoe_batch_opts d = { 0 };
	int ret;

	*out = NULL;
	if (!fwd || !cfg)
		return hmoe_err(HMOE_EINPUT, "batch: no forward pass or model config");
	if (o)
		d = *o;
	/* negative values stay negative so check_opts names them */
	if (!d.max_seqs)
		d.max_seqs = HMOE_BATCH_MAX_SEQS;
	if (!d.prefill_chunk)
		d.prefill_chunk = HMOE_BATCH_PREFILL_CHUNK;
	if (!d.max_batch_tokens)
		d.max_batch_tokens = d.prefill_chunk > HMOE_BATCH_MAX_BATCH_TOKENS
					     ? d.prefill_chunk : HMOE_BATCH_MAX_BATCH_TOKENS;
	if (!d.max_ctx)
		d.max_ctx = cfg->max_position_embeddings;
	if (!d.n_valid)
		d.n_valid = cfg->vocab_size;
	if ((ret = check_opts(&d, cfg)))
		return ret;
	b = calloc(1, sizeof(*b));
	if (!b)
		return hmoe_err(HMOE_ENOMEM, "batch: out of memory");
	b->fwd = fwd;
	b->cfg = cfg;
	b->o = d;
	b->running = calloc((size_t)d.max_seqs, sizeof(*b->running));
	b->toks = malloc(((size_t)d.max_seqs + (size_t)d.max_batch_tokens) * sizeof(*b->toks));
	b->items = malloc((size_t)d.max_seqs * sizeof(*b->items));
	b->logits = malloc((size_t)d.max_seqs * (size_t)cfg->vocab_size * sizeof(float));
	b->scratch = malloc(2 * (size_t)d.n_valid * sizeof(float));
	if (!b->running || !b->toks || !b->items || !b->logits || !b->scratch) {
		hmoe_batch_free(b);
		return hmoe_err(HMOE_ENOMEM, "batch: out of memory for %d sequences x %d tokens",
				d.max_seqs, d.max_batch_tokens);
	}
	*out = b;
	return 0;
}

static void req_free(struct req *r)
{
	if (!r)
		return;
	hmoe_kv_free(r->kv);
	free(r->prompt);
	free(r->stop);
	free(r->tokens);
	free(r);
}

void hmoe_batch_free(struct hmoe_batch *b)
{
	if (!b)
		return;
	for (int i = 0; i < b->n_ids; i++)
		req_free(b->by_id[i]);
	free(b->by_id);
	free(b->waiting);
	free(b->running);
	free(b->toks);
	free(b->items);
	free(b->logits);
	free(b->scratch);
	free(b);
}

/* ---- requests ---- */

/* p grown to hold need elements (doubling); NULL when out of memory, p then untouched. */
static void *grow(void *p, int *cap, int need, size_t elem)
{
	int c = *cap ? *cap : 16;
	void *q;

	if (need <= *cap)
		return p;
	while (c < need)
		c *= 2;
	q = realloc(p, (size_t)c * elem);
	if (q)
		*cap = c;
	return q;
}

static int check_params(const struct hmoe_batch *b, const struct hmoe_batch_params *p, int id)
{
	int V = b->cfg->vocab_size;

	if (!p->prompt || p->n_prompt < 1)
		return hmoe_err(HMOE_EINPUT, "request %d: empty prompt", id);
	if (p->n_prompt > b->o.max_ctx)
		return hmoe_err(HMOE_EINPUT, "request %d: prompt of %d tokens is longer than the "
				"context (%d positions)", id, p->n_prompt, b->o.max_ctx);
	for (int i = 0; i < p->n_prompt; i++)
		if (p->prompt[i] < 0 || p->prompt[i] >= V)
			return hmoe_err(HMOE_EINPUT, "request %d: prompt token %d is id %d, outside "
					"the vocabulary [0, %d)", id, i, p->prompt[i], V);
	if (p->max_tokens < 1)
		return hmoe_err(HMOE_EINPUT, "request %d: max_tokens %d must be >= 1", id,
				p->max_tokens);
	if (p->n_stop < 0 || (p->n_stop && !p->stop))
		return hmoe_err(HMOE_EINPUT, "request %d: bad stop list (%d ids)", id, p->n_stop);
	if (p->arrive_step < 0)
		return hmoe_err(HMOE_EINPUT, "request %d: arrival step %ld is negative", id,
				p->arrive_step);
	return 0;
}

static int *dup_ints(const int *src, int n)
{
	int *p = malloc(((size_t)n + 1) * sizeof(int)); /* +1: n may be 0 */

	if (p && n)
		memcpy(p, src, (size_t)n * sizeof(int));
	return p;
}

int hmoe_batch_submit(struct hmoe_batch *b, const struct hmoe_batch_params *p, int *id)
{
	int rid = b->n_ids, at, ret;
	struct req *r, **p2, **p3;

	if ((ret = check_params(b, p, rid)))
		return ret;
	if ((p2 = grow(b->by_id, &b->cap_ids, b->n_ids + 1, sizeof(*b->by_id))))
		b->by_id = p2;
	if ((p3 = grow(b->waiting, &b->cap_waiting, b->n_waiting + 1, sizeof(*b->waiting))))
		b->waiting = p3;
	r = p2 && p3 ? calloc(1, sizeof(*r)) : NULL;
	if (!r)
		return hmoe_err(HMOE_ENOMEM, "request %d: out of memory", rid);
	r->prompt = dup_ints(p->prompt, p->n_prompt);
	r->stop = dup_ints(p->stop, p->n_stop);
	if (!r->prompt || !r->stop) {
		req_free(r);
		return hmoe_err(HMOE_ENOMEM, "request %d: out of memory", rid);
	}
	r->n_stop = p->n_stop;
	r->max_tokens = p->max_tokens;
	r->state = REQ_WAITING;
	hmoe_sampler_init(&r->sampler, p->temperature, p->top_p, p->top_k, p->seed);
	/* a request submitted at step 10 "to arrive at step 3" arrives at step 10 */
	r->pub = (struct hmoe_batch_req){
		.id = rid, .user = p->user, .n_prompt = p->n_prompt, .finish = HMOE_BATCH_RUNNING,
		.arrive_step = p->arrive_step > b->clock ? p->arrive_step : b->clock,
		.admit_step = -1, .finish_step = -1,
	};
	/* waiting stays ordered by arrival, ties by id: insert after every request that
	 * arrives no later */
	at = b->n_waiting;
	while (at > 0 && b->waiting[at - 1]->pub.arrive_step > r->pub.arrive_step)
		at--;
	memmove(b->waiting + at + 1, b->waiting + at,
		(size_t)(b->n_waiting - at) * sizeof(*b->waiting));
	b->waiting[at] = r;
	b->n_waiting++;
	b->by_id[b->n_ids++] = r;
	b->st.submitted++;
	if (id)
		*id = rid;
	return 0;
}

int hmoe_batch_chunk_len(int n_prompt, int done, int prefill_chunk)
{
	int rest = n_prompt - done;

	if (rest <= prefill_chunk)
		return rest;
	if (prefill_chunk >= 3 && rest == prefill_chunk + 1)
		return prefill_chunk - 1;
	return prefill_chunk;
}

/* Admits the first waiting request: its own cache, a place in the running list. */
static int admit(struct hmoe_batch *b)
{
	struct req *r = b->waiting[0];
	int ret = hmoe_kv_create(&r->kv, b->cfg, b->o.max_ctx);

	if (ret)
		return hmoe_err_ctx(ret, "request %d", r->pub.id);
	b->n_waiting--;
	memmove(b->waiting, b->waiting + 1, (size_t)b->n_waiting * sizeof(*b->waiting));
	r->state = REQ_PREFILL;
	r->pub.admit_step = b->clock;
	b->running[b->n_running++] = r;
	if (b->n_running > b->st.max_running)
		b->st.max_running = b->n_running;
	return 0;
}

/* The request leaves: its cache is freed now, its slot is free for the next step (the
 * step drops it from the running list, then releases it unless keep_finished). */
static int finish(struct hmoe_batch *b, struct req *r, enum hmoe_batch_finish why)
{
	int ret = 0;

	r->state = REQ_DONE;
	r->pub.finish = why;
	r->pub.finish_step = b->clock;
	hmoe_kv_free(r->kv);
	r->kv = NULL;
	b->st.finished++;
	if (b->o.on_finish)
		ret = b->o.on_finish(b->o.arg, &r->pub);
	return ret < 0 ? ret : 0;
}

static int is_stop(const struct req *r, int tok)
{
	for (int i = 0; i < r->n_stop; i++)
		if (r->stop[i] == tok)
			return 1;
	return 0;
}

/* Samples r's next token from its logits row, reports it, finishes r if it is done. */
static int sample(struct hmoe_batch *b, struct req *r, const float *row)
{
	int tok = hmoe_sample(&r->sampler, row, b->o.n_valid, b->scratch), ret, *p;

	if (tok < 0)
		return hmoe_err_ctx(tok, "request %d", r->pub.id);
	p = grow(r->tokens, &r->cap_tokens, r->pub.n_tokens + 1, sizeof(int));
	if (!p)
		return hmoe_err(HMOE_ENOMEM, "request %d: out of memory", r->pub.id);
	r->tokens = p;
	r->tokens[r->pub.n_tokens++] = tok;
	r->pub.tokens = r->tokens;
	r->state = REQ_DECODE;
	if (b->o.on_token && (ret = b->o.on_token(b->o.arg, &r->pub, tok, row)) < 0)
		return ret;
	if (is_stop(r, tok))
		return finish(b, r, HMOE_BATCH_STOP);
	if (r->pub.n_tokens >= r->max_tokens)
		return finish(b, r, HMOE_BATCH_LENGTH);
	/* the new token is fed at position n_prompt + n_tokens - 1 */
	if (r->pub.n_prompt + r->pub.n_tokens > b->o.max_ctx)
		return finish(b, r, HMOE_BATCH_CONTEXT);
	return 0;
}

/* ---- scheduling: one step ---- */

/* Appends one item's entries to the batch. */
static void put(struct hmoe_batch *b, int *n_toks, int *n_items, struct req *r, int prefill)
{
	struct item *it = &b->items[(*n_items)++];
	int pos = r->kv->len;

	it->r = r;
	it->prefill = prefill;
	if (!prefill) {
		it->n_tokens = 1;
		it->want_logits = 1;
		b->toks[(*n_toks)++] = (struct hmoe_fwd_token){
			r->kv, r->tokens[r->pub.n_tokens - 1], pos, 1 };
		return;
	}
	it->n_tokens = hmoe_batch_chunk_len(r->pub.n_prompt, pos, b->o.prefill_chunk);
	it->want_logits = pos + it->n_tokens == r->pub.n_prompt;
	for (int i = 0; i < it->n_tokens; i++)
		b->toks[(*n_toks)++] = (struct hmoe_fwd_token){
			r->kv, r->prompt[pos + i], pos + i,
			it->want_logits && i == it->n_tokens - 1 };
}

/* Fills the step's batch: decode tokens, then prompt chunks in arrival order. */
static int build(struct hmoe_batch *b, int *n_toks, int *n_items, int *n_decode)
{
	int budget = b->o.max_batch_tokens, ret;

	*n_toks = *n_items = *n_decode = 0;
	for (int i = 0; i < b->n_running; i++)
		if (b->running[i]->state == REQ_DECODE) {
			put(b, n_toks, n_items, b->running[i], 0);
			(*n_decode)++;
		}
	budget -= *n_decode;
	/* requests still prefilling were admitted earlier, so they come first */
	for (int i = 0; i < b->n_running; i++) {
		struct req *r = b->running[i];

		if (r->state != REQ_PREFILL)
			continue;
		if (hmoe_batch_chunk_len(r->pub.n_prompt, r->kv->len, b->o.prefill_chunk) > budget)
			return 0;
		put(b, n_toks, n_items, r, 1);
		budget -= b->items[*n_items - 1].n_tokens;
	}
	while (b->n_waiting && b->n_running < b->o.max_seqs &&
	       b->waiting[0]->pub.arrive_step <= b->clock) {
		struct req *r = b->waiting[0];

		if (hmoe_batch_chunk_len(r->pub.n_prompt, 0, b->o.prefill_chunk) > budget)
			return 0;
		if ((ret = admit(b)))
			return ret;
		put(b, n_toks, n_items, r, 1);
		budget -= b->items[*n_items - 1].n_tokens;
	}
	return 0;
}

/* Names the step's requests in a forward error. */
static int step_error(const struct hmoe_batch *b, int ret, int n_items)
{
	char ids[160];
	size_t len = 0;
	int i;

	ids[0] = '\0';
	for (i = 0; i < n_items && len + 16 < sizeof(ids); i++)
		len += (size_t)snprintf(ids + len, sizeof(ids) - len, "%s%d", i ? ", " : "",
					b->items[i].r->pub.id);
	if (i < n_items)
		snprintf(ids + len, sizeof(ids) - len, ", ...");
	return hmoe_err_ctx(ret, "batch step %ld (requests %s)", b->clock, ids);
}

static void count(struct hmoe_batch *b, int n_toks, int n_decode, double dt)
{
	struct hmoe_batch_stats *st = &b->st;
	int n_prefill = n_toks - n_decode;

	st->steps++;
	st->decode_tokens += n_decode;
	st->prefill_tokens += n_prefill;
	st->mixed_steps += n_decode && n_prefill;
	if (st->steps == 1 || n_toks < st->batch_min)
		st->batch_min = n_toks;
	if (n_toks > st->batch_max)
		st->batch_max = n_toks;
	b->batch_tokens_sum += n_toks;
	st->batch_mean = b->batch_tokens_sum / (double)st->steps;
	st->prefill_s += dt * n_prefill / n_toks;
	st->decode_s += dt * n_decode / n_toks;
}

int hmoe_batch_step(struct hmoe_batch *b)
{
	int n_toks, n_items, n_decode, row = 0, kept = 0, ret;
	double t0;

	if (!b->n_running && !b->n_waiting)
		return 0;
	if (!b->n_running && b->waiting[0]->pub.arrive_step > b->clock)
		b->clock = b->waiting[0]->pub.arrive_step; /* idle until the next arrival */
	if ((ret = build(b, &n_toks, &n_items, &n_decode)))
		return ret;
	if (!n_toks) /* cannot happen: something running or arrived always fits */
		return hmoe_err(HMOE_EINTERNAL, "batch step %ld: nothing to run", b->clock);
	if (b->o.energy)
		hmoe_energy_begin(b->o.energy, HMOE_ENERGY_DECODE);
	t0 = hmoe_now_s();
	if ((ret = hmoe_forward(b->fwd, b->toks, n_toks, b->logits)))
		return step_error(b, ret, n_items);
	for (int i = 0; i < n_items; i++) {
		struct item *it = &b->items[i];

		if (it->prefill) {
			it->r->pub.n_prefilled += it->n_tokens;
			b->st.prefill_chunks++;
		}
		if (!it->want_logits)
			continue;
		ret = sample(b, it->r, b->logits + (size_t)row++ * b->cfg->vocab_size);
		if (ret)
			return ret;
	}
	/* finished requests leave the running list; order (admission) is kept */
	for (int i = 0; i < b->n_running; i++)
		if (b->running[i]->state != REQ_DONE)
			b->running[kept++] = b->running[i];
	b->n_running = kept;
	for (int i = 0; i < n_items && !b->o.keep_finished; i++) {
		struct req *r = b->items[i].r;

		if (r->state == REQ_DONE) {
			b->by_id[r->pub.id] = NULL;
			req_free(r);
		}
	}
	count(b, n_toks, n_decode, hmoe_now_s() - t0);
	if (b->o.energy)
		hmoe_energy_end_split(b->o.energy, n_toks - n_decode, n_decode);
	b->clock++;
	return b->n_running || b->n_waiting ? 1 : 0;
}

int hmoe_batch_run(struct hmoe_batch *b)
{
	int ret;

	while ((ret = hmoe_batch_step(b)) > 0)
		;
	return ret;
}

/* ---- queries ---- */

const struct hmoe_batch_req *hmoe_batch_request(const struct hmoe_batch *b, int id)
{
	if (id < 0 || id >= b->n_ids || !b->by_id[id])
		return NULL;
	return &b->by_id[id]->pub;
}

long hmoe_batch_clock(const struct hmoe_batch *b)
{
	return b->clock;
}

const struct hmoe_batch_stats *hmoe_batch_stats(const struct hmoe_batch *b)
{
	return &b->st;
}

const char *hmoe_batch_finish_name(enum hmoe_batch_finish f)
{
	switch (f) {
	case HMOE_BATCH_STOP:
		return "stop";
	case HMOE_BATCH_LENGTH:
		return "length";
	case HMOE_BATCH_CONTEXT:
		return "context";
	default:
		return "running";
	}
}
