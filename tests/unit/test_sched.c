/* test_sched: the "sched" composite expert backend on an in-memory model
 * (test_forward_model.h), with cpu-f32 children.
 *
 * What a user would notice if broken:
 *  - outputs (and so generated tokens) change with the number of cards, the placement,
 *    the card memory (experts pushed to the CPU tier), replicas or micro-batching;
 *  - a card that errors or hangs loses work or changes the output, or its failure is
 *    neither counted nor logged;
 *  - a bad spec or placement file crashes instead of one error line naming it;
 *  - the observed-routing placement (place-out) is not written or replicates nothing;
 *  - a device is not told the experts the placement gives it (set_resident: a kmod card
 *    would hold the wrong experts), or a batch naming an expert a backend does not hold
 *    is computed instead of refused;
 *  - replan= does not move the hot experts to replicas during the run, is not
 *    deterministic, re-places with a batch in flight, or changes any output.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hmoe_err.h"
#include "hmoe_expert.h"
#include "hmoe_forward.h"
#include "hmoe_kv.h"
#include "hmoe_place.h"
#include "hmoe_pool.h"
#include "hmoe_sched.h"
#include "test_forward_model.h"

#include "hmoe_test.h"

#define N_TOK 37

static struct hmoe_model *model;
static struct hmoe_pool *pool;
static char tmpdir[64];

/* A batch: x and ascending distinct expert ids per token, skewed towards expert 5. */
struct batch {
	int layer, n, K, dim;
	float *x, *y;
	int *ids;
};

/* The expert-backend view of a test batch. */
static struct hmoe_expert_batch as_batch(const struct batch *b)
{
	return (struct hmoe_expert_batch){ .layer = b->layer, .n_tokens = b->n, .top_k = b->K,
					   .x = b->x, .expert_ids = b->ids, .y = b->y };
}

static void batch_make(struct batch *b, int layer, int n, unsigned seed)
{
	const struct hmoe_config *c = &model->cfg;
	struct tfm_rng r = { seed };

	b->layer = layer;
	b->n = n;
	b->K = c->num_experts_per_tok;
	b->dim = c->hidden_size;
	b->x = tfm_fill(&r, (size_t)n * b->dim, 0.0f, 1.0f);
	b->y = calloc((size_t)n * b->K * b->dim, sizeof(float));
	b->ids = malloc((size_t)n * b->K * sizeof(int));
	tfm_route(&r, n, b->K, c->n_routed_experts, b->ids);
}

static void batch_free(struct batch *b)
{
	free(b->x);
	free(b->y);
	free(b->ids);
}

/* y of `spec` over the batch; returns 0 or the error. */
static int run_spec(const char *spec, struct batch *b, struct hmoe_expert_backend **keep)
{
	struct hmoe_expert_backend *eb = NULL;
	struct hmoe_expert_batch eb_batch = as_batch(b);
	int ret = hmoe_expert_open(&eb, spec, model, pool);

	if (ret)
		return ret;
	memset(b->y, 0xff, (size_t)b->n * b->K * b->dim * sizeof(float)); /* NaN poison */
	ret = eb->ops->run(eb, &eb_batch);
	if (keep && !ret)
		*keep = eb;
	else
		hmoe_expert_close(eb);
	return ret;
}

static void test_same_outputs(void)
{
	const size_t bytes_per_expert = 3 * 40 * 24 * sizeof(float);
	char spec[512], place_path[128];
	struct batch b, ref;
	const char *specs[] = {
		"sched:cards=0,card=cpu-f32",
		"sched:cards=1,card=cpu-f32",
		"sched:cards=2,card=cpu-f32",
		"sched:cards=3,card=cpu-f32,micro=3",
		"sched:cards=4,card=cpu-f32,threads=2",
		NULL, /* tight memory: most experts on the CPU tier */
		NULL, /* a placement file with replicas */
	};
	int ret;

	snprintf(place_path, sizeof(place_path), "%s/place.txt", tmpdir);
	{
		/* 3 cards, hot experts replicated 3 times */
		const struct hmoe_config *c = &model->cfg;
		unsigned char is_moe[8];
		int64_t counts[8 * 64] = { 0 };
		struct hmoe_place_device devs[3] = { { "a", 6 * (int64_t)bytes_per_expert },
						     { "b", 6 * (int64_t)bytes_per_expert },
						     { "c", 6 * (int64_t)bytes_per_expert } };
		struct hmoe_place_opts o = { .n_layers = c->num_hidden_layers,
					     .n_experts = c->n_routed_experts, .is_moe = is_moe,
					     .expert_bytes = (int64_t)bytes_per_expert,
					     .n_devices = 3, .devices = devs, .counts = counts,
					     .max_replicas = 3 };
		struct hmoe_place *p = NULL;

		for (int l = 0; l < c->num_hidden_layers; l++) {
			is_moe[l] = (unsigned char)model->layers[l].is_moe;
			for (int e = 0; e < c->n_routed_experts; e++)
				counts[l * c->n_routed_experts + e] = e == 5 ? 100 : 3 + e % 2;
		}
		ret = hmoe_place_build(&p, &o);
		if (!ret)
			ret = hmoe_place_save(p, place_path);
		CHECK(ret == 0, "writing the test placement: %s", hmoe_last_error());
		if (!ret) {
			const int8_t *devs_of;

			CHECK(hmoe_place_copies(p, 1, 5, &devs_of) == 3, "hot expert has 3 copies");
		}
		hmoe_place_free(p);
	}

	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		if (i == 5)
			snprintf(spec, sizeof(spec), "sched:cards=2,card=cpu-f32,mem=%zu",
				 2 * bytes_per_expert);
		else if (i == 6)
			snprintf(spec, sizeof(spec), "sched:card=cpu-f32,place=%s,micro=2", place_path);
		else
			snprintf(spec, sizeof(spec), "%s", specs[i]);
		for (int layer = 1; layer <= 2; layer++) {
			struct hmoe_expert_backend *eb = NULL;

			batch_make(&b, layer, N_TOK, 7);
			batch_make(&ref, layer, N_TOK, 7);
			ret = run_spec("cpu-f32", &ref, NULL);
			ret = ret ? ret : run_spec(spec, &b, &eb);
			CHECK(ret == 0, "%s: %s", spec, hmoe_last_error());
			CHECK(!ret && !memcmp(b.y, ref.y, (size_t)b.n * b.K * b.dim * sizeof(float)),
			      "%s layer %d: outputs differ from plain cpu-f32", spec, layer);
			if (eb) {
				const struct hmoe_sched_stats *st =
					hmoe_sched_stats(hmoe_expert_sched_get(eb));
				int D = hmoe_sched_n_devices(hmoe_expert_sched_get(eb));
				int64_t rows = 0;

				for (int d = 0; d <= D; d++)
					rows += st->assignments[d];
				CHECK(rows == (int64_t)N_TOK * b.K, "%s: every assignment computed once "
				      "(%lld)", spec, (long long)rows);
				if (i == 5)
					CHECK(st->assignments[D] > rows / 2,
					      "tight memory: the CPU tier does most of the work");
				if (i >= 1 && i <= 4)
					CHECK(st->assignments[D] == 0, "%s: nothing on the CPU tier", spec);
				if (i == 6) {
					struct hmoe_place *pf = NULL;
					int on = 0, holding = 0;

					if (hmoe_place_load(&pf, place_path) == 0) {
						for (int d = 0; d < D; d++) {
							int has = 0;

							for (int e = 0; e < 8; e++) {
								const int8_t *dv;
								int nc = hmoe_place_copies(pf, layer, e, &dv);

								for (int k = 0; k < nc; k++)
									has |= dv[k] == d;
							}
							holding += has;
							on += st->submissions[d] > 0;
						}
						hmoe_place_free(pf);
					}
					CHECK(on == holding && on >= 2 && st->micro_batches == 2,
					      "placement file: the %d cards holding layer %d's experts "
					      "are used (%d), 2 micro-batches", holding, layer, on);
				}
				if (i == 3)
					CHECK(st->micro_batches == 3, "micro=3 gives 3 micro-batches");
				hmoe_expert_close(eb);
			}
			batch_free(&b);
			batch_free(&ref);
		}
	}
}

static void test_faults(void)
{
	const char *specs[] = {
		"sched:cards=2,card=cpu-f32,fault=1@2:error",
		"sched:cards=3,card=cpu-f32,fault=0@1:hang+2@1:error,timeout-ms=40",
		"sched:cards=1,card=cpu-f32,fault=0@1:error",
	};

	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		struct hmoe_expert_backend *eb = NULL;
		struct batch b, ref;
		int ret = hmoe_expert_open(&eb, specs[i], model, pool);

		CHECK(ret == 0, "%s: %s", specs[i], hmoe_last_error());
		if (ret)
			continue;
		for (int pass = 0; pass < 3; pass++) {
			struct hmoe_expert_batch eb_batch;

			batch_make(&b, 1 + pass % 2, N_TOK, 11 + pass);
			batch_make(&ref, 1 + pass % 2, N_TOK, 11 + pass);
			run_spec("cpu-f32", &ref, NULL);
			eb_batch = as_batch(&b);
			ret = eb->ops->run(eb, &eb_batch);
			CHECK(ret == 0, "%s pass %d: %s", specs[i], pass, hmoe_last_error());
			CHECK(!memcmp(b.y, ref.y, (size_t)b.n * b.K * b.dim * sizeof(float)),
			      "%s pass %d: output changed by the fault", specs[i], pass);
			batch_free(&b);
			batch_free(&ref);
		}
		{
			const struct hmoe_sched_stats *st = hmoe_sched_stats(hmoe_expert_sched_get(eb));

			if (i == 0)
				CHECK(st->failures == 1 && st->timeouts == 0 && st->retried > 0 &&
				      st->n_out_of_service == 1,
				      "error fault: 1 failure counted, work retried (%lld, %lld)",
				      (long long)st->failures, (long long)st->retried);
			if (i == 1)
				CHECK(st->timeouts == 1 && st->failures == 1 && st->retried > 0,
				      "hang + error: 1 timeout and 1 failure counted (%lld, %lld)",
				      (long long)st->timeouts, (long long)st->failures);
			if (i == 2)
				CHECK(st->failures == 1 && st->submissions[1] >= 3,
				      "only card fails: the CPU tier takes over");
		}
		hmoe_expert_close(eb);
	}
}

/* The whole forward pass: sched with a failing card, or re-placing at every layer call,
 * gives the plain backend's logits. */
static void test_forward(void)
{
	const char *specs[] = { "cpu-f32", "sched:cards=3,card=cpu-f32,fault=2@4:error,micro=2",
				"sched:cards=2,card=cpu-f32,replan=1" };
	int V = model->cfg.vocab_size, toks[9] = { 3, 14, 15, 9, 26, 5, 35, 8, 9 };
	float *logits[3];

	for (int s = 0; s < 3; s++) {
		struct hmoe_expert_backend *eb = NULL;
		struct hmoe_forward *f = NULL;
		struct hmoe_kv *kv = NULL;
		int ret;

		logits[s] = calloc((size_t)V * 12, sizeof(float));
		ret = hmoe_expert_open(&eb, specs[s], model, pool);
		if (!ret)
			ret = hmoe_forward_create(&f, model, eb, pool);
		if (!ret)
			ret = hmoe_kv_create(&kv, &model->cfg, 0);
		if (!ret)
			ret = hmoe_forward_seq(f, kv, toks, 9, 0, logits[s]);
		for (int d = 0; !ret && d < 3; d++)
			ret = hmoe_forward_seq(f, kv, &toks[d], 1, 1, logits[s] + (size_t)(9 + d) * V);
		CHECK(ret == 0, "forward with %s: %s", specs[s], hmoe_last_error());
		hmoe_kv_free(kv);
		hmoe_forward_free(f);
		hmoe_expert_close(eb);
	}
	CHECK(!memcmp(logits[0], logits[1], (size_t)V * 12 * sizeof(float)),
	      "prefill + decode logits identical with sched (and a failing card)");
	CHECK(!memcmp(logits[0], logits[2], (size_t)V * 12 * sizeof(float)),
	      "prefill + decode logits identical with sched re-placing at every layer call");
	for (int s = 0; s < 3; s++)
		free(logits[s]);
}

/* Every card's recorded residency mask equals what the placement gives it. */
static int masks_match(struct hmoe_sched *s, const char *what)
{
	const struct hmoe_place *p = hmoe_sched_place(s);
	int D = hmoe_sched_n_devices(s), bad = 0;

	for (int d = 0; d < D; d++) {
		const uint8_t *m = hmoe_expert_resident(hmoe_sched_device_backend(s, d));

		if (!m) {
			CHECK(0, "%s: device %d was never told its experts", what, d);
			return 0;
		}
		for (int l = 0; l < p->n_layers; l++)
			for (int e = 0; e < p->n_experts; e++) {
				const int8_t *devs;
				int n = p->is_moe[l] ? hmoe_place_copies(p, l, e, &devs) : 0, on = 0;

				for (int c = 0; c < n; c++)
					on |= devs[c] == d;
				if (!m[l * p->n_experts + e] != !on && !bad++)
					CHECK(0, "%s: device %d layer %d expert %d: mask %d, placement %d",
					      what, d, l, e, m[l * p->n_experts + e], on);
			}
	}
	CHECK(hmoe_expert_resident(hmoe_sched_device_backend(s, D)) == NULL,
	      "%s: the CPU tier holds everything (never given a mask)", what);
	return !bad;
}

static void test_residency(void)
{
	const size_t bytes_per_expert = 3 * 40 * 24 * sizeof(float);
	char spec[256];
	const char *specs[] = { "sched:cards=3,card=cpu-f32", NULL,
				"sched:cards=2,card=cpu-f32,fault=1@100:error" };

	snprintf(spec, sizeof(spec), "sched:cards=2,card=cpu-f32,mem=%zu", 3 * bytes_per_expert);
	specs[1] = spec;
	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		struct hmoe_expert_backend *eb = NULL;
		int ret = hmoe_expert_open(&eb, specs[i], model, pool);

		CHECK(ret == 0, "%s: %s", specs[i], hmoe_last_error());
		if (ret)
			continue;
		masks_match(hmoe_expert_sched_get(eb), specs[i]);
		hmoe_expert_close(eb);
	}
}

/* A batch naming an expert outside the mask: one HMOE_EINTERNAL error naming it. */
static void test_not_resident(void)
{
	const struct hmoe_config *c = &model->cfg;
	size_t n = (size_t)c->num_hidden_layers * c->n_routed_experts;
	uint8_t *mask = calloc(n, 1);
	struct hmoe_expert_backend *eb = NULL;
	struct batch b;
	int ret, ticket;

	for (int l = 0; l < c->num_hidden_layers; l++)
		for (int e = 0; e < c->n_routed_experts; e++)
			mask[l * c->n_routed_experts + e] = (uint8_t)model->layers[l].is_moe;
	mask[1 * c->n_routed_experts + 5] = 0;
	ret = hmoe_expert_open(&eb, "cpu-f32", model, pool);
	CHECK(ret == 0, "cpu-f32: %s", hmoe_last_error());
	if (ret) {
		free(mask);
		return;
	}
	CHECK(hmoe_expert_set_resident(eb, mask) == 0, "set_resident: %s", hmoe_last_error());
	batch_make(&b, 1, N_TOK, 7);  /* expert 5 on every other token */
	{
		struct hmoe_expert_batch eb_batch = as_batch(&b);

		ret = hmoe_expert_run(eb, &eb_batch);
		CHECK(ret == -HMOE_EINTERNAL && strstr(hmoe_last_error(), "layer 1 expert 5"),
		      "run with a non-resident expert: want EINTERNAL naming layer 1 expert 5, got "
		      "%d '%s'", ret, hmoe_last_error());
		ret = hmoe_expert_submit(eb, &eb_batch, &ticket);
		CHECK(ret == -HMOE_EINTERNAL && strstr(hmoe_last_error(), "layer 1 expert 5"),
		      "submit with a non-resident expert: got %d '%s'", ret, hmoe_last_error());
		eb_batch.layer = 2;  /* every expert of layer 2 is resident */
		CHECK(hmoe_expert_run(eb, &eb_batch) == 0, "layer 2: %s", hmoe_last_error());
	}
	batch_free(&b);
	mask[0] = 1;  /* layer 0 is dense */
	ret = hmoe_expert_set_resident(eb, mask);
	CHECK(ret == -HMOE_EINPUT && strstr(hmoe_last_error(), "not an MoE layer"),
	      "a mask naming a dense layer: got %d '%s'", ret, hmoe_last_error());
	hmoe_expert_close(eb);
	free(mask);
}

/* Every token of b routes to expert 5 (the others random, distinct). */
static void batch_all_hot(struct batch *b, int layer, unsigned seed)
{
	batch_make(b, layer, N_TOK, seed);
	for (int t = 0; t < b->n; t++) {
		int has = 0;

		for (int k = 0; k < b->K; k++)
			has |= b->ids[t * b->K + k] == 5;
		if (!has)
			b->ids[t * b->K] = 5;
	}
}

/* One layer call through eb (run, or submit + wait) against cpu-f32. */
static int replan_call(struct hmoe_expert_backend *eb, int layer, unsigned seed, int async,
		       const char *spec)
{
	struct batch b, ref;
	struct hmoe_expert_batch eb_batch;
	int ret, ticket;

	batch_all_hot(&b, layer, seed);
	batch_all_hot(&ref, layer, seed);
	run_spec("cpu-f32", &ref, NULL);
	eb_batch = as_batch(&b);
	if (async) {
		ret = hmoe_expert_submit(eb, &eb_batch, &ticket);
		ret = ret ? ret : hmoe_expert_wait(eb, ticket);
	} else {
		ret = hmoe_expert_run(eb, &eb_batch);
	}
	CHECK(ret == 0, "%s layer %d: %s", spec, layer, hmoe_last_error());
	CHECK(!ret && !memcmp(b.y, ref.y, (size_t)b.n * b.K * b.dim * sizeof(float)),
	      "%s layer %d seed %u: outputs differ from cpu-f32", spec, layer, seed);
	batch_free(&b);
	batch_free(&ref);
	return ret;
}

/* A card that errors once is taken out of service, then brought back by the probe at the
 * next re-placement and given experts again; every output stays cpu-f32's. A hung card
 * is never probed (the probe runs on the caller's thread). */
static void test_revive(void)
{
	static const char *const specs[] = {
		"sched:cards=2,card=cpu-f32,replan=2,fault=1@2-2:error",
		"sched:cards=2,card=cpu-f32,replan=2,timeout-ms=200,fault=1@2-2:hang",
	};

	for (int c = 0; c < 2; c++) {
		struct hmoe_expert_backend *eb = NULL;
		const struct hmoe_sched_stats *st;
		int64_t before;
		int ret = hmoe_expert_open(&eb, specs[c], model, pool);

		CHECK(ret == 0, "%s: %s", specs[c], hmoe_last_error());
		if (ret)
			continue;
		st = hmoe_sched_stats(hmoe_expert_sched_get(eb));
		for (int call = 0; call < 3; call++)  /* the 2nd call fails on card 1 */
			replan_call(eb, 1 + call % 2, 40 + (unsigned)call, call == 1, specs[c]);
		CHECK(st->n_out_of_service == 1, "%s: card 1 out of service (%d)", specs[c],
		      st->n_out_of_service);
		before = st->assignments[1];
		for (int call = 3; call < 7; call++)  /* re-placements before calls 3 and 5 */
			replan_call(eb, 1 + call % 2, 40 + (unsigned)call, call == 4, specs[c]);
		if (c == 0) {
			CHECK(st->revived == 1, "%s: revived once (%d)", specs[c], st->revived);
			CHECK(st->assignments[1] > before, "%s: card 1 works again after the probe",
			      specs[c]);
		} else {
			CHECK(st->revived == 0, "%s: a hung card is not probed (%d)", specs[c],
			      st->revived);
			CHECK(st->assignments[1] == before, "%s: the hung card stays out", specs[c]);
		}
		hmoe_expert_close(eb);
	}
}

static void test_replan(void)
{
	const char *spec = "sched:cards=2,card=cpu-f32,replicas=2,replan=2";
	struct hmoe_expert_backend *eb[2] = { NULL, NULL };
	int ret;

	for (int i = 0; i < 2; i++) {
		ret = hmoe_expert_open(&eb[i], spec, model, pool);
		CHECK(ret == 0, "%s: %s", spec, hmoe_last_error());
		if (ret)
			goto out;
	}
	{
		struct hmoe_sched *s = hmoe_expert_sched_get(eb[0]);
		const struct hmoe_sched_stats *st = hmoe_sched_stats(s);
		const int8_t *devs;

		CHECK(hmoe_place_copies(hmoe_sched_place(s), 1, 5, &devs) == 1,
		      "before any routing: expert 5 has one copy");
		/* 6 layer calls, run and submit/wait mixed: re-placements before calls 3, 5 */
		for (int call = 0; call < 6; call++)
			for (int i = 0; i < 2; i++)
				replan_call(eb[i], 1 + call % 2, 20 + (unsigned)call, call % 3 == 1, spec);
		CHECK(st->replans == 2, "replan=2 over 6 calls: 2 re-placements (%lld)",
		      (long long)st->replans);
		CHECK(st->experts_moved > 0, "the re-placement moved experts (%lld)",
		      (long long)st->experts_moved);
		CHECK(hmoe_place_copies(hmoe_sched_place(s), 1, 5, &devs) == 2 &&
		      hmoe_place_copies(hmoe_sched_place(s), 2, 5, &devs) == 2,
		      "the hot expert 5 got a replica on both cards in both MoE layers");
		CHECK(hmoe_place_equal(hmoe_sched_place(s),
				       hmoe_sched_place(hmoe_expert_sched_get(eb[1]))),
		      "two runs with the same routing give the same placement");
		masks_match(s, "after re-placement");
		CHECK(st->submissions[0] > 0 && st->submissions[1] > 0 && st->submissions[2] == 0,
		      "both cards work, the CPU tier idles");
	}
	/* a re-placement due while a batch is in flight waits for none to be */
	{
		struct hmoe_expert_backend *e1 = NULL;
		struct batch a, b;
		int ta, tb;

		ret = hmoe_expert_open(&e1, "sched:cards=2,card=cpu-f32,replan=1", model, pool);
		CHECK(ret == 0, "replan=1: %s", hmoe_last_error());
		if (!ret) {
			const struct hmoe_sched_stats *st = hmoe_sched_stats(hmoe_expert_sched_get(e1));
			struct hmoe_expert_batch ba, bb;

			batch_all_hot(&a, 1, 31);
			batch_all_hot(&b, 2, 32);
			ba = as_batch(&a);
			bb = as_batch(&b);
			ret = hmoe_expert_submit(e1, &ba, &ta);
			ret = ret ? ret : hmoe_expert_submit(e1, &bb, &tb);
			CHECK(ret == 0 && st->replans == 0,
			      "no re-placement with a batch in flight (%lld)", (long long)st->replans);
			ret = ret ? ret : hmoe_expert_wait(e1, ta);
			ret = ret ? ret : hmoe_expert_wait(e1, tb);
			CHECK(ret == 0, "replan=1 submit/wait: %s", hmoe_last_error());
			replan_call(e1, 1, 33, 0, "replan=1");
			CHECK(st->replans == 1, "the deferred re-placement ran at the next call with "
			      "nothing in flight (%lld)", (long long)st->replans);
			masks_match(hmoe_expert_sched_get(e1), "replan=1");
			batch_free(&a);
			batch_free(&b);
			hmoe_expert_close(e1);
		}
	}
out:
	hmoe_expert_close(eb[0]);
	hmoe_expert_close(eb[1]);
}

static void expect_bad(const char *spec, const char *needle)
{
	struct hmoe_expert_backend *eb = NULL;
	int ret = hmoe_expert_open(&eb, spec, model, pool);

	CHECK(ret == -HMOE_EINPUT && strstr(hmoe_last_error(), needle),
	      "%s: want an input error with '%s', got %d '%s'", spec, needle, ret,
	      hmoe_last_error());
	if (!ret)
		hmoe_expert_close(eb);
}

static void test_bad_specs(void)
{
	char spec[256], path[128];
	FILE *f;

	expect_bad("sched:cards=x", "cards=x");
	expect_bad("sched:bogus=1", "unknown key 'bogus'");
	expect_bad("sched:mem=12Q", "mem=12Q");
	expect_bad("sched:card=cpu-f32,fault=5@1:error", "fault on device 5");
	expect_bad("sched:card=cpu-f32,fault=0@0:error", "fault '0@0:error'");
	expect_bad("sched:card=sched", "not a device backend");
	expect_bad("sched:card=nope", "unknown expert backend 'nope'");
	expect_bad("sched:card=cpu-f32,replan=0", "replan=0");
	expect_bad("sched:card=cpu-f32,replan=x", "replan=x");
	expect_bad("sched:card=kmod:card=1", "give only the mode");
	expect_bad("sched:card=kmod:fp9", "card=kmod:fp9");
	/* kmod's spec is checked before any card is opened */
	expect_bad("kmod:card=0,cards=2", "exclude each other");
	expect_bad("kmod:fp8,cards=2,card=1", "exclude each other");
	expect_bad("kmod:card=x", "'card=x'");
	expect_bad("kmod:card=-1", "'card=-1'");
	expect_bad("kmod:card=64", "'card=64'");
	expect_bad("sched:card=cpu-f32,place=/nonexistent/p.txt", "/nonexistent/p.txt");
	snprintf(path, sizeof(path), "%s/wrong.txt", tmpdir);
	f = fopen(path, "w");
	fprintf(f, "hmoe-place 1\nlayers 3 experts 8 expert_bytes 5\ndevice c0 100\n");
	fclose(f);
	snprintf(spec, sizeof(spec), "sched:card=cpu-f32,place=%s", path);
	expect_bad(spec, "expert_bytes 5");
}

static void test_place_out(void)
{
	struct hmoe_expert_backend *eb = NULL;
	struct hmoe_place *p = NULL;
	char spec[256], path[128];
	int ret;

	snprintf(path, sizeof(path), "%s/observed.txt", tmpdir);
	snprintf(spec, sizeof(spec), "sched:cards=2,card=cpu-f32,replicas=2,place-out=%s", path);
	ret = hmoe_expert_open(&eb, spec, model, pool);
	CHECK(ret == 0, "%s: %s", spec, hmoe_last_error());
	if (ret)
		return;
	for (int layer = 1; layer <= 2; layer++) {
		struct batch b;
		struct hmoe_expert_batch eb_batch;

		batch_make(&b, layer, N_TOK, 3);
		eb_batch = as_batch(&b);
		ret = eb->ops->run(eb, &eb_batch);
		CHECK(ret == 0, "run: %s", hmoe_last_error());
		batch_free(&b);
	}
	hmoe_expert_close(eb);
	ret = hmoe_place_load(&p, path);
	CHECK(ret == 0, "place-out file loads: %s", hmoe_last_error());
	if (!ret) {
		const int8_t *devs;

		CHECK(hmoe_place_copies(p, 1, 5, &devs) == 2 && hmoe_place_copies(p, 2, 5, &devs) == 2,
		      "the observed hot expert 5 is replicated on both cards");
		hmoe_place_free(p);
	}
}

int main(void)
{
	struct hmoe_config c = tfm_config();

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/hmoe_sched_XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	model = tfm_build(&c, 5);
	if (hmoe_pool_create(&pool, 2)) {
		fprintf(stderr, "pool: %s\n", hmoe_last_error());
		return 1;
	}
	test_same_outputs();
	test_faults();
	test_forward();
	test_bad_specs();
	test_place_out();
	test_residency();
	test_not_resident();
	test_replan();
	test_revive();
	hmoe_pool_destroy(pool);
	tfm_free(model);
	hmoe_test_rmdir(tmpdir);
	if (failures) {
		fprintf(stderr, "%d check(s) failed\n", failures);
		return 1;
	}
	printf("sched: all checks passed\n");
	return 0;
}
