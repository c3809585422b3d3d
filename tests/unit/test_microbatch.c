/* test_microbatch: two micro-batches in flight inside the forward pass
 * (hmoe_forward_set_micro_batches, docs/runtime.md "Micro-batch overlap"), on a mktiny
 * checkpoint.
 *
 * What a user would notice if broken:
 *  - generated tokens change with --micro-batches 2: every logit of batches of several
 *    sequences (prefill, chunked prefill and decode mixed) must be bit-identical to one
 *    micro-batch, for cpu-f32, cpu-fxp and sched (2 emulated cards, with and without a
 *    failing or hung card, with the scheduler's own micro=);
 *  - the forward pass breaks the submit/wait contract (more than two batches in flight,
 *    waits out of order, touching a batch's activations or reading its outputs before
 *    its wait), which corrupts results on a real asynchronous backend: a recording
 *    backend that computes only at wait, over activations it checks are unchanged,
 *    asserts all of that and the exact pipeline order;
 *  - an expert failure mid-pipeline leaves a batch in flight or advances a cache;
 *  - the overlap statistics say nothing (0 with an asynchronous backend) or claim
 *    overlap for a synchronous one.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hmoe_err.h"
#include "hmoe_expert.h"
#include "hmoe_forward.h"
#include "hmoe_kv.h"
#include "hmoe_mktiny.h"
#include "hmoe_model.h"
#include "hmoe_pool.h"
#include "hmoe_sched.h"

#include "hmoe_test.h"

#define N_SEQ 4
#define MAX_ENTRIES 32
#define MAX_LOGITS 64

static struct hmoe_model *model;
static struct hmoe_pool *pool;
static char tmpdir[64];

/* ---- the scenario: a few batches of several sequences ------------------------------ */

/* One batch: per sequence, how many new tokens (0: not in this batch); entries are
 * interleaved across sequences, round robin, so the batch order is not run order. */
struct step {
	int n_new[N_SEQ];
	int all_logits;       /* every entry wants logits (else: each sequence's last) */
};

static const struct step scenario[] = {
	{ { 7, 3, 5, 0 }, 1 },  /* prefills of different lengths */
	{ { 1, 2, 1, 4 }, 0 },  /* decode + chunked prefill + a new sequence */
	{ { 1, 1, 1, 1 }, 0 },  /* decode of all four */
	{ { 1, 0, 0, 0 }, 0 },  /* one sequence: one micro-batch */
	{ { 2, 0, 0, 9 }, 1 },  /* two sequences, unbalanced */
};
#define N_STEPS ((int)(sizeof(scenario) / sizeof(scenario[0])))

struct run_result {
	float *logits;        /* every step's rows, one after another */
	size_t n_floats;
	int n_micro[N_STEPS];
	double overlap_s, wait_s;
	int ret;
	char err[256];
};

static int make_batch(const struct step *st, struct hmoe_kv **kv, struct hmoe_fwd_token *toks,
		      unsigned salt)
{
	int n = 0, left[N_SEQ], more = 1;

	memcpy(left, st->n_new, sizeof(left));
	while (more) {
		more = 0;
		for (int q = 0; q < N_SEQ; q++) {
			int i = st->n_new[q] - left[q];

			if (!left[q])
				continue;
			toks[n].seq = kv[q];
			toks[n].pos = kv[q]->len + i;
			toks[n].token = (int)((salt * 131u + (unsigned)q * 977u +
					       (unsigned)toks[n].pos * 61u) %
					      (unsigned)model->cfg.vocab_size);
			toks[n].want_logits = st->all_logits || left[q] == 1;
			n++;
			more |= --left[q] > 0;
		}
	}
	return n;
}

/* Runs the scenario on a fresh forward pass over backend eb with `micro` micro-batches. */
static void run_scenario(struct hmoe_expert_backend *eb, int micro, struct run_result *r)
{
	const int V = model->cfg.vocab_size;
	struct hmoe_forward *f = NULL;
	struct hmoe_kv *kv[N_SEQ] = { 0 };
	struct hmoe_fwd_token toks[MAX_ENTRIES];
	int ret;

	memset(r, 0, sizeof(*r));
	r->logits = calloc((size_t)MAX_LOGITS * V, sizeof(float));
	ret = hmoe_forward_create(&f, model, eb, pool);
	if (!ret)
		ret = hmoe_forward_set_micro_batches(f, micro);
	for (int q = 0; q < N_SEQ && !ret; q++)
		ret = hmoe_kv_create(&kv[q], &model->cfg, 0);
	for (int s = 0; s < N_STEPS && !ret; s++) {
		int n = make_batch(&scenario[s], kv, toks, (unsigned)s), n_logits = 0;
		const struct hmoe_forward_stats *st;

		for (int e = 0; e < n; e++)
			n_logits += toks[e].want_logits;
		if (r->n_floats / V + (size_t)n_logits > MAX_LOGITS) {
			ret = hmoe_err(HMOE_EINTERNAL, "test: too many logits");
			break;
		}
		ret = hmoe_forward(f, toks, n, r->logits + r->n_floats);
		if (ret)
			break;
		st = hmoe_forward_stats(f);
		r->n_floats += (size_t)n_logits * V;
		r->n_micro[s] = st->n_micro;
		r->overlap_s += st->overlap_s;
		r->wait_s += st->expert_wait_s;
	}
	r->ret = ret;
	if (ret)
		snprintf(r->err, sizeof(r->err), "%s", hmoe_last_error());
	for (int q = 0; q < N_SEQ; q++)
		hmoe_kv_free(kv[q]);
	hmoe_forward_free(f);
}

static int same(const struct run_result *a, const struct run_result *b)
{
	return !a->ret && !b->ret && a->n_floats == b->n_floats && a->n_floats &&
	       !memcmp(a->logits, b->logits, a->n_floats * sizeof(float));
}

/* ---- bit-identity over backends ---------------------------------------------------- */

static void test_backends(void)
{
	static const struct {
		const char *spec;
		const char *same_as;  /* its micro-1 logits must also equal this spec's */
	} cases[] = {
		{ "cpu-f32", NULL },
		{ "cpu-fxp", NULL },
		{ "cpu-fxp:int4", NULL },
		{ "sched:cards=2", "cpu-fxp" },
		{ "sched:cards=2,micro=2", "cpu-fxp" },
		{ "sched:cards=2,fault=1@3:error", "cpu-fxp" },
		{ "sched:cards=3,fault=0@2:hang,timeout-ms=300", "cpu-fxp" },
		{ "sched:cards=2,card=cpu-f32,mem=800K", "cpu-f32" },
	};
	struct run_result ref[8];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct run_result r[2];

		for (int mi = 0; mi < 2; mi++) {
			struct hmoe_expert_backend *eb = NULL;
			int ret = hmoe_expert_open(&eb, cases[i].spec, model, pool);

			CHECK(ret == 0, "%s: %s", cases[i].spec, hmoe_last_error());
			if (ret) {
				memset(&r[mi], 0, sizeof(r[mi]));
				r[mi].ret = ret;
				continue;
			}
			run_scenario(eb, 1 + mi, &r[mi]);
			CHECK(r[mi].ret == 0, "%s, %d micro-batches: %s", cases[i].spec, 1 + mi,
			      r[mi].err);
			if (!strncmp(cases[i].spec, "sched", 5)) {
				const struct hmoe_sched_stats *st =
					hmoe_sched_stats(hmoe_expert_sched_get(eb));

				if (strstr(cases[i].spec, "error"))
					CHECK(st->failures == 1 && st->n_out_of_service == 1 &&
					      st->retried > 0, "%s, %d micro-batches: one failure "
					      "counted, work retried (%lld failures)", cases[i].spec,
					      1 + mi, (long long)st->failures);
				if (strstr(cases[i].spec, "hang"))
					CHECK(st->timeouts == 1 && st->failures == 0 && st->retried > 0,
					      "%s, %d micro-batches: one timeout counted (%lld)",
					      cases[i].spec, 1 + mi, (long long)st->timeouts);
			}
			hmoe_expert_close(eb);
		}
		CHECK(same(&r[0], &r[1]), "%s: logits differ between 1 and 2 micro-batches",
		      cases[i].spec);
		for (int s = 0; s < N_STEPS && !r[1].ret; s++) {
			int seqs = 0;

			for (int q = 0; q < N_SEQ; q++)
				seqs += scenario[s].n_new[q] > 0;
			CHECK(r[0].n_micro[s] == 1 && r[1].n_micro[s] == (seqs > 1 ? 2 : 1),
			      "%s step %d: %d sequences ran as %d micro-batches (1: %d)",
			      cases[i].spec, s, seqs, r[1].n_micro[s], r[0].n_micro[s]);
		}
		if (!strncmp(cases[i].spec, "cpu", 3))
			CHECK(r[0].overlap_s == 0 && r[1].overlap_s == 0,
			      "%s: a synchronous backend reports no overlap", cases[i].spec);
		else
			CHECK(r[1].overlap_s > 0, "%s: asynchronous experts, 2 micro-batches: "
			      "overlap reported", cases[i].spec);
		if (cases[i].same_as) {
			for (size_t k = 0; k < i; k++)
				if (!strcmp(cases[k].spec, cases[i].same_as))
					CHECK(same(&r[0], &ref[k]), "%s: logits differ from %s",
					      cases[i].spec, cases[k].spec);
		}
		ref[i] = r[0];
		free(r[1].logits);
	}
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		free(ref[i].logits);
}

/* ---- the submit/wait contract, recorded ------------------------------------------- */

/* A backend that computes (with cpu-f32) only at wait, after checking that the batch's
 * activations and expert ids did not change since submit; y is NaN until then. */
struct rec_priv {
	struct hmoe_expert_backend *child;
	struct {
		struct hmoe_expert_batch b;
		uint64_t sum;
		int live;
	} slot[HMOE_EXPERT_MAX_INFLIGHT];
	int n_submitted, n_waited, in_flight, max_in_flight;
	int fail_wait_at;     /* fail the Nth wait (1-based), 0: never */
	int fail_submit_at;
	char log[512];        /* "s1:4 s1:3 w1:4 ..." layer:tokens of each call */
	int violations;
};

static uint64_t batch_sum(const struct hmoe_expert_batch *b, int dim)
{
	uint64_t h = 1469598103934665603ull;
	const unsigned char *p = (const unsigned char *)b->x;

	for (size_t i = 0; i < (size_t)b->n_tokens * dim * sizeof(float); i++)
		h = (h ^ p[i]) * 1099511628211ull;
	for (size_t i = 0; i < (size_t)b->n_tokens * b->top_k; i++)
		h = (h ^ (uint64_t)b->expert_ids[i]) * 1099511628211ull;
	return h;
}

static void rec_log(struct rec_priv *p, char what, const struct hmoe_expert_batch *b)
{
	size_t len = strlen(p->log);

	snprintf(p->log + len, sizeof(p->log) - len, "%s%c%d:%d", len ? " " : "", what,
		 b->layer, b->n_tokens);
}

static int rec_run(struct hmoe_expert_backend *b, const struct hmoe_expert_batch *batch)
{
	(void)b, (void)batch;
	return hmoe_err(HMOE_EINTERNAL, "recording backend: the forward pass must use submit");
}

static int rec_submit(struct hmoe_expert_backend *b, const struct hmoe_expert_batch *batch,
		      int *ticket)
{
	struct rec_priv *p = b->priv;
	int k = p->n_submitted % HMOE_EXPERT_MAX_INFLIGHT, dim = model->cfg.hidden_size;

	if (p->fail_submit_at && p->n_submitted + 1 == p->fail_submit_at)
		return hmoe_err(HMOE_EDEVICE, "recording backend: submit fails as asked");
	if (p->in_flight >= HMOE_EXPERT_MAX_INFLIGHT || p->slot[k].live) {
		p->violations++;
		return hmoe_err(HMOE_EINTERNAL, "recording backend: more than %d in flight",
				HMOE_EXPERT_MAX_INFLIGHT);
	}
	p->slot[k].b = *batch;
	p->slot[k].sum = batch_sum(batch, dim);
	p->slot[k].live = 1;
	memset(batch->y, 0xff, (size_t)batch->n_tokens * batch->top_k * dim * sizeof(float));
	rec_log(p, 's', batch);
	*ticket = k;
	p->n_submitted++;
	if (++p->in_flight > p->max_in_flight)
		p->max_in_flight = p->in_flight;
	return 0;
}

static int rec_wait(struct hmoe_expert_backend *b, int ticket)
{
	struct rec_priv *p = b->priv;
	int k = p->n_waited % HMOE_EXPERT_MAX_INFLIGHT, ret;

	if (ticket != k || !p->slot[k].live) {
		p->violations++;
		return hmoe_err(HMOE_EINTERNAL, "recording backend: wait %d out of order", ticket);
	}
	if (batch_sum(&p->slot[k].b, model->cfg.hidden_size) != p->slot[k].sum) {
		p->violations++;
		fprintf(stderr, "recording backend: layer %d batch changed while in flight\n",
			p->slot[k].b.layer);
	}
	rec_log(p, 'w', &p->slot[k].b);
	ret = p->child->ops->run(p->child, &p->slot[k].b);
	p->slot[k].live = 0;
	p->n_waited++;
	p->in_flight--;
	if (!ret && p->fail_wait_at && p->n_waited == p->fail_wait_at)
		ret = hmoe_err(HMOE_EDEVICE, "recording backend: wait fails as asked");
	return ret;
}

static void rec_fini(struct hmoe_expert_backend *b)
{
	struct rec_priv *p = b->priv;

	hmoe_expert_close(p->child);
	free(p);
}

static const struct hmoe_expert_ops rec_ops = {
	.name = "recording",
	.run = rec_run,
	.fini = rec_fini,
	.submit = rec_submit,
	.wait = rec_wait,
};

static struct hmoe_expert_backend *rec_open(void)
{
	struct hmoe_expert_backend *b = calloc(1, sizeof(*b));
	struct rec_priv *p = calloc(1, sizeof(*p));

	if (!b || !p || hmoe_expert_open(&p->child, "cpu-f32", model, pool)) {
		fprintf(stderr, "recording backend: %s\n", hmoe_last_error());
		exit(1);
	}
	b->ops = &rec_ops;
	b->model = model;
	b->pool = pool;
	b->priv = p;
	return b;
}

static void test_contract(void)
{
	struct hmoe_expert_backend *ref_b = NULL, *rb;
	struct run_result ref, r;
	struct rec_priv *p;

	if (hmoe_expert_open(&ref_b, "cpu-f32", model, pool)) {
		CHECK(0, "cpu-f32: %s", hmoe_last_error());
		return;
	}
	run_scenario(ref_b, 1, &ref);
	hmoe_expert_close(ref_b);

	for (int micro = 1; micro <= 2; micro++) {
		rb = rec_open();
		p = rb->priv;
		run_scenario(rb, micro, &r);
		CHECK(r.ret == 0, "recording, %d micro-batches: %s", micro, r.err);
		CHECK(same(&r, &ref), "recording backend (computes at wait), %d micro-batches: "
		      "logits differ from cpu-f32", micro);
		CHECK(p->violations == 0 && p->in_flight == 0,
		      "%d micro-batches: contract kept (%d violations, %d left in flight)",
		      micro, p->violations, p->in_flight);
		CHECK(p->max_in_flight == micro, "%d micro-batches: at most %d in flight, saw %d",
		      micro, micro, p->max_in_flight);
		CHECK(r.overlap_s > 0, "%d micro-batches: overlap reported with async experts",
		      micro);
		if (micro == 2) {
			/* step 0: sequences of 7 | 3 + 5 tokens; MoE layers 1 and 2: A's layer 2
			 * is submitted before B's layer 1 is waited */
			const char *want = "s1:7 s1:8 w1:7 s2:7 w1:8 s2:8 w2:7 w2:8 ";

			CHECK(!strncmp(p->log, want, strlen(want)),
			      "pipeline order: want '%s...', got '%.60s'", want, p->log);
		} else {
			const char *want = "s1:15 w1:15 s2:15 w2:15 ";

			CHECK(!strncmp(p->log, want, strlen(want)),
			      "one micro-batch: want '%s...', got '%.60s'", want, p->log);
		}
		hmoe_expert_close(rb);
		free(r.logits);
	}
	free(ref.logits);
}

/* An expert failure mid-pipeline: an error naming the layer, nothing left in flight,
 * no cache advanced; the next batch works. */
static void test_failure(void)
{
	for (int which = 0; which < 3; which++) {
		struct hmoe_expert_backend *rb = rec_open();
		struct rec_priv *p = rb->priv;
		struct hmoe_forward *f = NULL;
		struct hmoe_kv *kv[N_SEQ] = { 0 };
		struct hmoe_fwd_token toks[MAX_ENTRIES];
		float *logits = calloc((size_t)MAX_LOGITS * model->cfg.vocab_size, sizeof(float));
		int ret, n;

		if (which == 0)
			p->fail_wait_at = 1;   /* A's layer 1, while B's is in flight */
		else if (which == 1)
			p->fail_wait_at = 3;   /* A's layer 2 */
		else
			p->fail_submit_at = 3; /* A's layer 2, while B's layer 1 is in flight */
		ret = hmoe_forward_create(&f, model, rb, pool);
		ret = ret ? ret : hmoe_forward_set_micro_batches(f, 2);
		for (int q = 0; q < N_SEQ && !ret; q++)
			ret = hmoe_kv_create(&kv[q], &model->cfg, 0);
		CHECK(ret == 0, "setup: %s", hmoe_last_error());
		if (!ret) {
			n = make_batch(&scenario[0], kv, toks, 0);
			ret = hmoe_forward(f, toks, n, logits);
			CHECK(ret == -HMOE_EDEVICE && strstr(hmoe_last_error(), "layer ") &&
			      strstr(hmoe_last_error(), "fails as asked"),
			      "case %d: the expert error comes back naming the layer: %d '%s'",
			      which, ret, hmoe_last_error());
			CHECK(p->in_flight == 0 && p->violations == 0,
			      "case %d: every submitted batch waited in order (%d in flight, %d "
			      "violations)", which, p->in_flight, p->violations);
			for (int q = 0; q < N_SEQ; q++)
				CHECK(kv[q]->len == 0, "case %d: sequence %d advanced to %d", which, q,
				      kv[q]->len);
			p->fail_wait_at = p->fail_submit_at = 0;
			ret = hmoe_forward(f, toks, n, logits);
			CHECK(ret == 0 && p->violations == 0, "case %d: the next batch runs: %s",
			      which, hmoe_last_error());
		}
		for (int q = 0; q < N_SEQ; q++)
			hmoe_kv_free(kv[q]);
		hmoe_forward_free(f);
		hmoe_expert_close(rb);
		free(logits);
	}
}

static void test_setting(void)
{
	struct hmoe_expert_backend *eb = NULL;
	struct hmoe_forward *f = NULL;
	int ret = hmoe_expert_open(&eb, "cpu-f32", model, pool);

	ret = ret ? ret : hmoe_forward_create(&f, model, eb, pool);
	CHECK(ret == 0, "setup: %s", hmoe_last_error());
	if (!ret) {
		CHECK(hmoe_forward_set_micro_batches(f, 3) == -HMOE_EINPUT &&
		      strstr(hmoe_last_error(), "micro-batches 3"),
		      "3 micro-batches: an input error naming it");
		CHECK(hmoe_forward_set_micro_batches(f, 0) == -HMOE_EINPUT, "0 micro-batches");
		CHECK(hmoe_forward_set_micro_batches(f, 2) == 0, "2 micro-batches accepted");
	}
	hmoe_forward_free(f);
	hmoe_expert_close(eb);
}

int main(void)
{
	struct hmoe_config c;
	struct hmoe_mktiny_opts o = { .seed = 11, .shards = 1 };
	char dir[128];
	int ret;

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/hmoe_micro_XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(dir, sizeof(dir), "%s/m", tmpdir);
	hmoe_mktiny_preset(&c, "tiny");
	c.vocab_size = 1000;  /* small head: the test is about the layers */
	o.out_dir = dir;
	ret = hmoe_mktiny_write(&c, &o);
	if (!ret)
		ret = hmoe_model_load(&model, dir, HMOE_LOAD_F32);
	if (!ret)
		ret = hmoe_pool_create(&pool, 2);
	if (ret) {
		fprintf(stderr, "setup: %s\n", hmoe_last_error());
		return 1;
	}
	test_setting();
	test_backends();
	test_contract();
	test_failure();
	hmoe_pool_destroy(pool);
	hmoe_model_free(model);
	hmoe_test_rmdir(tmpdir);
	if (failures) {
		fprintf(stderr, "%d check(s) failed\n", failures);
		return 1;
	}
	printf("microbatch: all checks passed\n");
	return 0;
}
