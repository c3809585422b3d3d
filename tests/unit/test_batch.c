/* test_batch: the continuous-batching engine (runtime/hmoe_batch.h) on a mktiny
 * checkpoint with cpu-f32 experts.
 *
 * What a user would notice if broken:
 *  - a request's output changes because other requests joined or left mid-run, or with
 *    the batch limits (max_seqs, token budget, chunk size) or the thread count: every
 *    request's tokens AND the logits each was sampled from must equal the same request
 *    run alone, bit for bit, greedy and seeded sampling alike;
 *  - chunked prefill differs from a plain whole-prompt prefill + token-by-token decode
 *    (the path of `hmoe generate --prompt`) when no chunk is a single token;
 *  - stop ids, max_tokens and the context limit end a request at the wrong token, or
 *    a finished request keeps its slot;
 *  - bad settings or requests crash instead of one error naming the field or request.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmoe_batch.h"
#include "hmoe_err.h"
#include "hmoe_expert.h"
#include "hmoe_forward.h"
#include "hmoe_kv.h"
#include "hmoe_mktiny.h"
#include "hmoe_model.h"
#include "hmoe_pool.h"
#include "hmoe_sample.h"

#include "hmoe_test.h"

#define N_REQ 8
#define MAX_GEN 24
#define CTX 48 /* context of the engines here: request 7 runs into it */

static char root[] = "/tmp/test_batch.XXXXXX";
static struct hmoe_model *model;
static int V;

/* A forward pass with its own threads and experts. */
struct fwd {
	struct hmoe_pool *pool;
	struct hmoe_expert_backend *experts;
	struct hmoe_forward *f;
};

static void fwd_open(struct fwd *w, int threads)
{
	int ret = hmoe_pool_create(&w->pool, threads);

	if (!ret)
		ret = hmoe_expert_open(&w->experts, "cpu-f32", model, w->pool);
	if (!ret)
		ret = hmoe_forward_create(&w->f, model, w->experts, w->pool);
	if (ret) {
		fprintf(stderr, "forward: %s\n", hmoe_last_error());
		exit(1);
	}
}

static void fwd_close(struct fwd *w)
{
	hmoe_forward_free(w->f);
	hmoe_expert_close(w->experts);
	hmoe_pool_destroy(w->pool);
}

/* The requests: prompt lengths around every chunk size used below, staggered arrivals,
 * different limits, greedy and seeded sampling. Request 7 hits the context (35 + 20 >
 * CTX); request 2 gets a stop id found by a first run. */
static const int prompt_len[N_REQ] = { 1, 5, 9, 17, 23, 30, 2, 35 };
static const long arrive[N_REQ] = { 0, 0, 0, 2, 3, 7, 7, 12 };
static const int max_tokens[N_REQ] = { 6, 10, MAX_GEN, 12, 8, 5, 9, 20 };
static const float temperature[N_REQ] = { 0, 0.9f, 0, 1.2f, 0, 0.7f, 0, 1.0f };
static const int top_k[N_REQ] = { 0, 0, 0, 20, 0, 0, 0, 5 };
static int prompts[N_REQ][40];
static int stop_id = -1;  /* request 2's stop id */

static struct hmoe_batch_params params(int i)
{
	for (int t = 0; t < prompt_len[i]; t++)
		prompts[i][t] = (t * 37 + 11 * i + (t * t) % 13 + 3) % V;
	return (struct hmoe_batch_params){
		.prompt = prompts[i], .n_prompt = prompt_len[i], .max_tokens = max_tokens[i],
		.stop = i == 2 && stop_id >= 0 ? &stop_id : NULL,
		.n_stop = i == 2 && stop_id >= 0,
		.temperature = temperature[i], .top_p = temperature[i] > 0 ? 0.9f : 1.0f,
		.top_k = top_k[i], .seed = 1000 + (uint64_t)i, .arrive_step = arrive[i],
	};
}

/* What one request produced, as streamed. */
struct rec {
	int tokens[MAX_GEN];
	float *logits;            /* (MAX_GEN, V) the rows the tokens were sampled from */
	int n, n_finish_calls;
	enum hmoe_batch_finish finish;
	int finish_tokens;        /* r->n_tokens at on_finish */
};

static int on_token(void *arg, const struct hmoe_batch_req *r, int token, const float *logits)
{
	struct rec *rec = (struct rec *)arg + r->id;

	(void)arg;
	if (rec->n >= MAX_GEN || r->n_tokens != rec->n + 1 || r->tokens[rec->n] != token)
		return hmoe_err(HMOE_EINTERNAL, "request %d: token stream out of order", r->id);
	rec->tokens[rec->n] = token;
	memcpy(rec->logits + (size_t)rec->n * V, logits, (size_t)V * sizeof(float));
	rec->n++;
	return 0;
}

static int on_finish(void *arg, const struct hmoe_batch_req *r)
{
	struct rec *rec = (struct rec *)arg + r->id;

	rec->n_finish_calls++;
	rec->finish = r->finish;
	rec->finish_tokens = r->n_tokens;
	return 0;
}

static void rec_reset(struct rec *recs, int n)
{
	for (int i = 0; i < n; i++) {
		float *l = recs[i].logits;

		memset(&recs[i], 0, sizeof(recs[i]));
		recs[i].logits = l ? l : malloc((size_t)MAX_GEN * V * sizeof(float));
	}
}

struct cfg {
	const char *name;
	int max_seqs, max_batch_tokens, prefill_chunk;
};

static struct hmoe_batch_opts opts_of(const struct cfg *c, struct rec *recs, int keep)
{
	return (struct hmoe_batch_opts){
		.max_seqs = c->max_seqs, .max_batch_tokens = c->max_batch_tokens,
		.prefill_chunk = c->prefill_chunk, .max_ctx = CTX, .keep_finished = keep,
		.on_token = on_token, .on_finish = on_finish, .arg = recs,
	};
}

/* Request i alone in an engine of configuration c; its record lands in recs[0]. */
static void run_alone(struct fwd *w, const struct cfg *c, int i, struct rec *recs)
{
	struct hmoe_batch_opts o = opts_of(c, recs, 0);
	struct hmoe_batch_params p = params(i);
	struct hmoe_batch *b;
	int ret;

	rec_reset(recs, 1);
	p.arrive_step = 0;
	ret = hmoe_batch_create(&b, w->f, &model->cfg, &o);
	if (!ret)
		ret = hmoe_batch_submit(b, &p, NULL);
	if (!ret)
		ret = hmoe_batch_run(b);
	CHECK(ret == 0, "%s: request %d alone: %s", c->name, i, hmoe_last_error());
	hmoe_batch_free(b);
}

/* The path of `hmoe generate --prompt`: the prompt as one hmoe_forward_seq (or token by
 * token, as chunks of one run), then one token per call, with the same stop rules. */
static void run_plain(struct fwd *w, int i, int token_by_token, struct rec *rec)
{
	struct hmoe_batch_params p = params(i);
	struct hmoe_sampler s;
	struct hmoe_kv *kv;
	float *row = malloc((size_t)V * sizeof(float));
	int ret = hmoe_kv_create(&kv, &model->cfg, CTX);

	rec_reset(rec, 1);
	hmoe_sampler_init(&s, p.temperature, p.top_p, p.top_k, p.seed);
	for (int t = 0; !ret && t < p.n_prompt; t += token_by_token ? 1 : p.n_prompt)
		ret = hmoe_forward_seq(w->f, kv, p.prompt + t, token_by_token ? 1 : p.n_prompt,
				       1, row);
	while (!ret) {
		int tok = hmoe_sample(&s, row, V, NULL);

		if (tok < 0 || rec->n >= MAX_GEN) {
			ret = -1;
			break;
		}
		memcpy(rec->logits + (size_t)rec->n * V, row, (size_t)V * sizeof(float));
		rec->tokens[rec->n++] = tok;
		if ((p.n_stop && tok == p.stop[0]) || rec->n >= p.max_tokens ||
		    p.n_prompt + rec->n > CTX)
			break;
		ret = hmoe_forward_seq(w->f, kv, &tok, 1, 1, row);
	}
	CHECK(ret == 0, "plain run of request %d: %s", i, hmoe_last_error());
	hmoe_kv_free(kv);
	free(row);
}

static int same(const struct rec *a, const struct rec *b)
{
	return a->n == b->n && !memcmp(a->tokens, b->tokens, (size_t)a->n * sizeof(int)) &&
	       !memcmp(a->logits, b->logits, (size_t)a->n * V * sizeof(float));
}

/* All requests together vs each alone (and vs the plain path where chunks allow). */
static void check_config(struct fwd *mixed, struct fwd *single, const struct cfg *c)
{
	struct rec together[N_REQ] = { 0 }, alone[1] = { 0 }, plain[1] = { 0 };
	struct hmoe_batch_opts o = opts_of(c, together, 1);
	const struct hmoe_batch_stats *st;
	struct hmoe_batch *b;
	int ret, joined_after_leave = 0;

	rec_reset(together, N_REQ);
	ret = hmoe_batch_create(&b, mixed->f, &model->cfg, &o);
	CHECK(ret == 0, "%s: create: %s", c->name, hmoe_last_error());
	if (ret)
		return;
	for (int i = 0; i < N_REQ; i++) {
		struct hmoe_batch_params p = params(i);
		int id = -1;

		ret = hmoe_batch_submit(b, &p, &id);
		CHECK(ret == 0 && id == i, "%s: submit %d: %s", c->name, i, hmoe_last_error());
	}
	ret = hmoe_batch_run(b);
	CHECK(ret == 0, "%s: run: %s", c->name, hmoe_last_error());
	st = hmoe_batch_stats(b);
	for (int i = 0; i < N_REQ; i++) {
		const struct hmoe_batch_req *r = hmoe_batch_request(b, i);

		CHECK(r && r->finish != HMOE_BATCH_RUNNING && r->n_prefilled == prompt_len[i] &&
		      r->admit_step >= arrive[i], "%s: request %d not finished properly",
		      c->name, i);
		CHECK(together[i].n_finish_calls == 1 && together[i].finish_tokens == together[i].n,
		      "%s: request %d: %d finish calls", c->name, i, together[i].n_finish_calls);
		/* did a request join in a slot another one had left? */
		for (int j = 0; r && j < N_REQ; j++) {
			const struct hmoe_batch_req *q = hmoe_batch_request(b, j);

			if (q && j != i && q->finish_step >= 0 && r->admit_step > q->finish_step &&
			    r->admit_step <= q->finish_step + 1)
				joined_after_leave = 1;
		}
		run_alone(single, c, i, alone);
		CHECK(same(&together[i], alone) && alone[0].finish == together[i].finish,
		      "%s: request %d: batched tokens/logits differ from alone (%d vs %d tokens)",
		      c->name, i, together[i].n, alone[0].n);
		if (c->prefill_chunk >= 3 || c->prefill_chunk >= prompt_len[i] ||
		    c->prefill_chunk == 1) {
			run_plain(single, i, c->prefill_chunk == 1, plain);
			CHECK(same(&together[i], plain),
			      "%s: request %d: differs from the plain prefill + decode path",
			      c->name, i);
		}
	}
	CHECK(together[7].finish == HMOE_BATCH_CONTEXT && together[7].n == CTX - 35 + 1,
	      "%s: request 7 should stop at the context: %s after %d tokens", c->name,
	      hmoe_batch_finish_name(together[7].finish), together[7].n);
	CHECK(together[0].finish == HMOE_BATCH_LENGTH && together[0].n == max_tokens[0],
	      "%s: request 0 should stop at max_tokens", c->name);
	if (stop_id >= 0)
		CHECK(together[2].finish == HMOE_BATCH_STOP &&
		      together[2].tokens[together[2].n - 1] == stop_id,
		      "%s: request 2 should end on its stop id", c->name);
	CHECK(st->finished == N_REQ && st->submitted == N_REQ, "%s: finished %ld", c->name,
	      st->finished);
	CHECK(st->max_running <= c->max_seqs, "%s: %d running > max_seqs", c->name,
	      st->max_running);
	CHECK(st->batch_max <= (c->max_batch_tokens > c->max_seqs ? c->max_batch_tokens
								   : c->max_seqs),
	      "%s: a step of %d tokens", c->name, st->batch_max);
	if (c->max_seqs > 1)
		CHECK(st->max_running > 1 && st->mixed_steps > 0,
		      "%s: no real batching (max running %d, mixed steps %ld)", c->name,
		      st->max_running, st->mixed_steps);
	if (c->max_seqs < N_REQ)
		CHECK(joined_after_leave, "%s: no request took a slot the step after another left",
		      c->name);
	{
		long total = 0;

		for (int i = 0; i < N_REQ; i++)
			total += prompt_len[i] + together[i].n - 1;
		CHECK(st->prefill_tokens + st->decode_tokens == total,
		      "%s: %ld + %ld tokens fed, expected %ld", c->name, st->prefill_tokens,
		      st->decode_tokens, total);
	}
	printf("%-22s steps %3ld (mixed %3ld)  prefill %3ld tok in %2ld chunks  decode %3ld  "
	       "max running %d  batch %d..%d (mean %.1f)\n", c->name, st->steps, st->mixed_steps,
	       st->prefill_tokens, st->prefill_chunks, st->decode_tokens, st->max_running,
	       st->batch_min, st->batch_max, st->batch_mean);
	hmoe_batch_free(b);
	for (int i = 0; i < N_REQ; i++)
		free(together[i].logits);
	free(alone[0].logits);
	free(plain[0].logits);
}

static void test_chunk_len(void)
{
	/* chunks of 8 over 17 tokens: 8, 7, 2 (no one-token tail) */
	CHECK(hmoe_batch_chunk_len(17, 0, 8) == 8 && hmoe_batch_chunk_len(17, 8, 8) == 7 &&
	      hmoe_batch_chunk_len(17, 15, 8) == 2, "17 by 8");
	CHECK(hmoe_batch_chunk_len(16, 8, 8) == 8 && hmoe_batch_chunk_len(5, 0, 8) == 5, "16, 5");
	CHECK(hmoe_batch_chunk_len(3, 0, 2) == 2 && hmoe_batch_chunk_len(3, 2, 2) == 1,
	      "chunk 2 cannot avoid a one-token tail");
	CHECK(hmoe_batch_chunk_len(4, 0, 3) == 2 && hmoe_batch_chunk_len(4, 2, 3) == 2, "4 by 3");
	CHECK(hmoe_batch_chunk_len(9, 4, 1) == 1, "chunk 1");
}

/* Every request arriving late: the clock jumps to the arrival without a forward call. */
static void test_idle_arrival(struct fwd *w)
{
	struct rec recs[2] = { 0 };
	struct cfg c = { "idle", 2, 16, 8 };
	struct hmoe_batch_opts o = opts_of(&c, recs, 0);
	struct hmoe_batch_params p = params(1);
	struct hmoe_batch *b;
	int ret, id;

	rec_reset(recs, 2);
	p.arrive_step = 5;
	p.max_tokens = 2;
	ret = hmoe_batch_create(&b, w->f, &model->cfg, &o);
	if (!ret)
		ret = hmoe_batch_submit(b, &p, &id);
	CHECK(ret == 0 && hmoe_batch_request(b, id)->admit_step == -1, "submit");
	ret = hmoe_batch_step(b);
	CHECK(ret == 1 && hmoe_batch_clock(b) == 6 && hmoe_batch_request(b, id)->admit_step == 5,
	      "first step runs at the arrival (clock %ld)", hmoe_batch_clock(b));
	ret = hmoe_batch_step(b);
	CHECK(ret == 0 && recs[0].n == 2 && hmoe_batch_request(b, id) == NULL,
	      "finished and released (ret %d, %d tokens)", ret, recs[0].n);
	CHECK(hmoe_batch_step(b) == 0 && hmoe_batch_stats(b)->steps == 2, "idle engine");
	hmoe_batch_free(b);
	free(recs[0].logits);
	free(recs[1].logits);
}

static int failing_token(void *arg, const struct hmoe_batch_req *r, int token,
			 const float *logits)
{
	(void)arg;
	(void)token;
	(void)logits;
	return r->n_tokens == 2 ? hmoe_err(HMOE_EIO, "sink for request %d is full", r->id) : 0;
}

static void expect_err(int ret, const char *want, const char *what)
{
	CHECK(ret == -HMOE_EINPUT && strstr(hmoe_last_error(), want),
	      "%s: got %d '%s', want an input error with '%s'", what, ret, hmoe_last_error(), want);
}

static void test_errors(struct fwd *w)
{
	struct hmoe_batch *b = NULL;
	struct hmoe_batch_opts o;
	struct hmoe_batch_params p;
	int long_prompt[CTX + 1] = { 0 }, bad_id = V, ret;

	o = (struct hmoe_batch_opts){ .max_seqs = -1 };
	expect_err(hmoe_batch_create(&b, w->f, &model->cfg, &o), "max_seqs", "max_seqs -1");
	o = (struct hmoe_batch_opts){ .prefill_chunk = 32, .max_batch_tokens = 16 };
	expect_err(hmoe_batch_create(&b, w->f, &model->cfg, &o), "prefill_chunk 32",
		   "chunk > budget");
	o = (struct hmoe_batch_opts){ .prefill_chunk = -4 };
	expect_err(hmoe_batch_create(&b, w->f, &model->cfg, &o), "prefill_chunk -4",
		   "negative chunk");
	o = (struct hmoe_batch_opts){ .n_valid = V + 1 };
	expect_err(hmoe_batch_create(&b, w->f, &model->cfg, &o), "n_valid", "n_valid > vocab");
	CHECK(b == NULL, "no engine after a failed create");

	o = (struct hmoe_batch_opts){ .max_ctx = CTX };
	ret = hmoe_batch_create(&b, w->f, &model->cfg, &o);
	CHECK(ret == 0, "defaults: %s", hmoe_last_error());
	if (ret)
		return;
	p = params(1);
	p.n_prompt = 0;
	expect_err(hmoe_batch_submit(b, &p, NULL), "request 0: empty prompt", "empty prompt");
	p = params(1);
	p.prompt = &bad_id;
	p.n_prompt = 1;
	expect_err(hmoe_batch_submit(b, &p, NULL), "request 0: prompt token 0 is id", "bad id");
	p = params(1);
	p.prompt = long_prompt;
	p.n_prompt = CTX + 1;
	expect_err(hmoe_batch_submit(b, &p, NULL), "longer than the context", "long prompt");
	p = params(1);
	p.max_tokens = 0;
	expect_err(hmoe_batch_submit(b, &p, NULL), "max_tokens 0", "max_tokens 0");
	p = params(1);
	p.arrive_step = -2;
	expect_err(hmoe_batch_submit(b, &p, NULL), "arrival step -2", "negative arrival");
	CHECK(hmoe_batch_stats(b)->submitted == 0 && hmoe_batch_step(b) == 0,
	      "rejected requests are not queued");
	hmoe_batch_free(b);

	/* a callback's error stops the run and is returned as it is */
	o = (struct hmoe_batch_opts){ .on_token = failing_token };
	ret = hmoe_batch_create(&b, w->f, &model->cfg, &o);
	p = params(3);
	if (!ret)
		ret = hmoe_batch_submit(b, &p, NULL);
	if (!ret)
		ret = hmoe_batch_run(b);
	CHECK(ret == -HMOE_EIO && strstr(hmoe_last_error(), "sink for request 0 is full"),
	      "callback error: %d %s", ret, hmoe_last_error());
	hmoe_batch_free(b);
}

int main(void)
{
	static const struct cfg cfgs[] = {
		{ "seqs3 budget16 chunk8", 3, 16, 8 },
		{ "budget == chunk", 2, 5, 5 },
		{ "chunk 1", 4, 8, 1 },
		{ "chunk 2", 3, 6, 2 },
		{ "chunk > prompts", 3, 64, 50 },
		{ "one at a time", 1, 8, 4 },
		{ "chunk 3 wide", 8, 12, 3 },
	};
	struct hmoe_config c;
	struct hmoe_mktiny_opts mo = { .seed = 11, .shards = 1 };
	struct fwd mixed, single;

	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	hmoe_mktiny_preset(&c, "tiny");
	c.vocab_size = 1000;
	mo.out_dir = root;
	if (hmoe_mktiny_write(&c, &mo) || hmoe_model_load(&model, root, HMOE_LOAD_F32)) {
		fprintf(stderr, "model: %s\n", hmoe_last_error());
		return 1;
	}
	V = model->cfg.vocab_size;
	fwd_open(&mixed, 2);
	fwd_open(&single, 1);

	test_chunk_len();
	/* request 2's stop id: its 4th greedy token (the stream is the same up to there) */
	{
		struct rec r[1] = { 0 };

		run_alone(&single, &cfgs[0], 2, r);
		CHECK(r[0].n == MAX_GEN, "request 2 without a stop id: %d tokens", r[0].n);
		stop_id = r[0].tokens[3];
		free(r[0].logits);
	}
	for (size_t i = 0; i < sizeof(cfgs) / sizeof(cfgs[0]); i++)
		check_config(&mixed, &single, &cfgs[i]);
	test_idle_arrival(&mixed);
	test_errors(&single);

	fwd_close(&mixed);
	fwd_close(&single);
	hmoe_model_free(model);
	hmoe_test_rmdir(root);
	printf("%s\n", failures ? "FAILED" : "ok");
	return failures ? 1 : 0;
}
