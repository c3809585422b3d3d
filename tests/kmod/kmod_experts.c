/* kmod_experts: the kmod expert backend (runtime/hmoe_expert_kmod.c) on the cards of the
 * QEMU guest (tests/kmod/run_vm.sh builds it against libhmoe; vm_init.sh runs it as the
 * "experts" test with two emulated cards).
 *
 * `kmod_experts MODEL_DIR` (a checkpoint, e.g. from `hmoe mktiny`), for the modes fp8
 * (A16), int8-a8 and int4 (A16), what a user would notice if broken:
 *  - run() on the cards gives other expert outputs than cpu-fxp (bit for bit);
 *  - submit/wait with two batches in flight (two micro-batches) gives other outputs
 *    than run(), or mixes the two batches up;
 *  - a caller that breaks the contract (a third batch in flight, a wait out of order)
 *    corrupts anything instead of getting one error;
 *  - residency (card=1, set_resident): the card computes with the wrong expert after
 *    experts are evicted and their slots reused or the weight BO grows, a batch naming
 *    a non-resident expert is computed instead of refused, or set_resident with a batch
 *    in flight is accepted.
 * Prints one line per check and "kmod_experts: PASS" or the failures; exit 0 on pass.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmoe_err.h"
#include "hmoe_expert.h"
#include "hmoe_model.h"
#include "hmoe_pool.h"
#include "test_forward_model.h" /* tfm_fill, tfm_rng */

#include "hmoe_test.h"

static struct hmoe_model *model;
static struct hmoe_pool *pool;

/* A batch of one MoE layer: random x, distinct experts per token, expert 5 hot enough
 * (every other token) that its pairs need more than one 32-token tile. */
struct batch {
	struct hmoe_expert_batch b;
	float *x, *y;
	int *ids;
};

static void batch_make(struct batch *bt, int layer, int n, uint64_t seed)
{
	const struct hmoe_config *c = &model->cfg;
	struct tfm_rng r = { seed };
	int K = c->num_experts_per_tok, dim = c->hidden_size;

	bt->x = tfm_fill(&r, (size_t)n * dim, 0.0f, 1.0f);
	bt->y = malloc((size_t)n * K * dim * sizeof(float) + 1);
	bt->ids = malloc((size_t)n * K * sizeof(int) + 1);
	memset(bt->y, 0xff, (size_t)n * K * dim * sizeof(float)); /* NaN poison */
	tfm_route(&r, n, K, c->n_routed_experts, bt->ids);
	bt->b = (struct hmoe_expert_batch){ .layer = layer, .n_tokens = n, .top_k = K, .x = bt->x,
					    .expert_ids = bt->ids, .y = bt->y };
}

static void batch_free(struct batch *bt)
{
	free(bt->x);
	free(bt->y);
	free(bt->ids);
}

static size_t batch_y_bytes(const struct batch *bt)
{
	return (size_t)bt->b.n_tokens * bt->b.top_k * model->cfg.hidden_size * sizeof(float);
}

static void check_same(const struct batch *got, const struct batch *want, const char *what)
{
	CHECK(!memcmp(got->y, want->y, batch_y_bytes(want)), "%s: outputs differ from cpu-fxp",
	      what);
	printf("kmod_experts: %s: %zu output bytes %s\n", what, batch_y_bytes(want),
	       memcmp(got->y, want->y, batch_y_bytes(want)) ? "DIFFER" : "identical");
}

static void test_mode(const char *mode)
{
	/* layer, tokens, seed of each batch: two layers, tile splits, an empty batch */
	static const struct { int layer, n; uint64_t seed; } cases[] = {
		{ 1, 70, 11 }, { 2, 9, 12 }, { 2, 0, 13 }, { 1, 1, 14 },
	};
	enum { N = sizeof(cases) / sizeof(cases[0]) };
	struct batch ref[N], run[N], as[N];
	struct hmoe_expert_backend *cpu = NULL, *km = NULL;
	char spec_cpu[64], spec_km[64], what[160];
	int ret, t0, t1, t2;

	snprintf(spec_cpu, sizeof(spec_cpu), "cpu-fxp:%s", mode);
	snprintf(spec_km, sizeof(spec_km), "kmod:%s,cards=2", mode);
	ret = hmoe_expert_open(&cpu, spec_cpu, model, pool);
	CHECK(!ret, "%s: %s", spec_cpu, hmoe_last_error());
	if (!ret) {
		ret = hmoe_expert_open(&km, spec_km, model, pool);
		CHECK(!ret, "%s: %s", spec_km, hmoe_last_error());
	}
	if (ret) {
		hmoe_expert_close(cpu);
		return;
	}
	CHECK(hmoe_expert_is_async(km), "%s: the backend has no submit/wait", spec_km);
	for (int i = 0; i < N; i++) {
		batch_make(&ref[i], cases[i].layer, cases[i].n, cases[i].seed);
		batch_make(&run[i], cases[i].layer, cases[i].n, cases[i].seed);
		batch_make(&as[i], cases[i].layer, cases[i].n, cases[i].seed);
		CHECK(!cpu->ops->run(cpu, &ref[i].b), "%s: %s", spec_cpu, hmoe_last_error());
		CHECK(!km->ops->run(km, &run[i].b), "%s run: %s", spec_km, hmoe_last_error());
		snprintf(what, sizeof(what), "%s run, layer %d, %d tokens", spec_km, cases[i].layer,
			 cases[i].n);
		check_same(&run[i], &ref[i], what);
	}

	/* two in flight, waited in order; then the pairs (1, 2) and (2, 3) overlapping */
	for (int i = 0; i + 1 < N; i++) {
		ret = hmoe_expert_submit(km, &as[i].b, &t0);
		CHECK(!ret, "submit %d: %s", i, hmoe_last_error());
		if (!ret) {
			ret = hmoe_expert_submit(km, &as[i + 1].b, &t1);
			CHECK(!ret, "submit %d: %s", i + 1, hmoe_last_error());
			CHECK(!hmoe_expert_wait(km, t0), "wait %d: %s", i, hmoe_last_error());
			if (!ret)
				CHECK(!hmoe_expert_wait(km, t1), "wait %d: %s", i + 1,
				      hmoe_last_error());
		}
		snprintf(what, sizeof(what), "%s submit/wait, 2 in flight, batches %d and %d",
			 spec_km, i, i + 1);
		check_same(&as[i], &ref[i], what);
		check_same(&as[i + 1], &ref[i + 1], what);
		memset(as[i].y, 0xff, batch_y_bytes(&as[i]));
		memset(as[i + 1].y, 0xff, batch_y_bytes(&as[i + 1]));
	}

	/* contract breaches: one error each, and the batches in flight still complete */
	CHECK(!hmoe_expert_submit(km, &as[0].b, &t0) && !hmoe_expert_submit(km, &as[1].b, &t1),
	      "submit two: %s", hmoe_last_error());
	CHECK(hmoe_expert_submit(km, &as[3].b, &t2) == -HMOE_EINTERNAL,
	      "a third batch in flight was accepted");
	CHECK(hmoe_expert_wait(km, t1) == -HMOE_EINTERNAL, "a wait out of order was accepted");
	CHECK(!hmoe_expert_wait(km, t0) && !hmoe_expert_wait(km, t1), "waits after breaches: %s",
	      hmoe_last_error());
	CHECK(hmoe_expert_wait(km, t1) == -HMOE_EINTERNAL, "a wait with nothing in flight was "
	      "accepted");
	snprintf(what, sizeof(what), "%s after contract breaches", spec_km);
	check_same(&as[0], &ref[0], what);
	check_same(&as[1], &ref[1], what);

	for (int i = 0; i < N; i++) {
		batch_free(&ref[i]);
		batch_free(&run[i]);
		batch_free(&as[i]);
	}
	hmoe_expert_close(km);
	hmoe_expert_close(cpu);
}

/* mask: layer 1 (all experts, or only expert 5) and layer 2 (all or none) resident */
static void mask_set(uint8_t *mask, int l1, int l1_only5, int l2)
{
	int E = model->cfg.n_routed_experts;

	memset(mask, 0, (size_t)model->cfg.num_hidden_layers * E);
	for (int e = 0; e < E; e++) {
		mask[1 * E + e] = (uint8_t)(l1 && (!l1_only5 || e == 5));
		mask[2 * E + e] = (uint8_t)l2;
	}
}

static void test_resident(void)
{
	const char *spec_km = "kmod:fp8,card=1", *spec_cpu = "cpu-fxp:fp8";
	struct hmoe_expert_backend *cpu = NULL, *km = NULL;
	struct batch ref1, ref2, b1, b2;
	uint8_t *mask = malloc((size_t)model->cfg.num_hidden_layers * model->cfg.n_routed_experts);
	int ret, t0, t1;

	ret = hmoe_expert_open(&cpu, spec_cpu, model, pool);
	ret = ret ? ret : hmoe_expert_open(&km, spec_km, model, pool);
	CHECK(!ret && mask, "%s: %s", spec_km, hmoe_last_error());
	if (ret || !mask) {
		hmoe_expert_close(cpu);
		free(mask);
		return;
	}
	batch_make(&ref1, 1, 70, 41);
	batch_make(&ref2, 2, 33, 42);
	CHECK(!cpu->ops->run(cpu, &ref1.b) && !cpu->ops->run(cpu, &ref2.b), "%s: %s", spec_cpu,
	      hmoe_last_error());
	batch_make(&b1, 1, 70, 41);
	batch_make(&b2, 2, 33, 42);

	/* layer 1 only: its batch on the card, layer 2's refused */
	mask_set(mask, 1, 0, 0);
	CHECK(!hmoe_expert_set_resident(km, mask), "set_resident layer 1: %s", hmoe_last_error());
	CHECK(!km->ops->run(km, &b1.b), "layer 1 resident: %s", hmoe_last_error());
	check_same(&b1, &ref1, "card=1, layer 1 resident, layer 1 batch");
	ret = km->ops->run(km, &b2.b);
	CHECK(ret == -HMOE_EINTERNAL && strstr(hmoe_last_error(), "layer 2 expert"),
	      "a layer 2 batch with layer 2 not resident: got %d '%s'", ret, hmoe_last_error());
	printf("kmod_experts: non-resident expert refused: %s\n", hmoe_last_error());

	/* layer 2 and expert 5 of layer 1: evicted slots reused */
	mask_set(mask, 1, 1, 1);
	CHECK(!hmoe_expert_set_resident(km, mask), "set_resident layer 2: %s", hmoe_last_error());
	memset(b2.y, 0xff, batch_y_bytes(&b2));
	CHECK(!km->ops->run(km, &b2.b), "layer 2 resident: %s", hmoe_last_error());
	check_same(&b2, &ref2, "card=1, layer 2 resident in layer 1's slots, layer 2 batch");
	CHECK(km->ops->run(km, &b1.b) == -HMOE_EINTERNAL, "layer 1 batch after its eviction");

	/* everything: the weight BO grows; two batches in flight */
	mask_set(mask, 1, 0, 1);
	CHECK(!hmoe_expert_set_resident(km, mask), "set_resident all: %s", hmoe_last_error());
	memset(b1.y, 0xff, batch_y_bytes(&b1));
	memset(b2.y, 0xff, batch_y_bytes(&b2));
	ret = hmoe_expert_submit(km, &b1.b, &t0);
	ret = ret ? ret : hmoe_expert_submit(km, &b2.b, &t1);
	CHECK(!ret, "submit after growing: %s", hmoe_last_error());
	if (!ret) {
		CHECK(hmoe_expert_set_resident(km, mask) == -HMOE_EINTERNAL,
		      "set_resident with batches in flight was accepted");
		CHECK(!hmoe_expert_wait(km, t0) && !hmoe_expert_wait(km, t1), "waits: %s",
		      hmoe_last_error());
	}
	check_same(&b1, &ref1, "card=1, all resident (BO grown), submit/wait layer 1");
	check_same(&b2, &ref2, "card=1, all resident (BO grown), submit/wait layer 2");
	batch_free(&ref1);
	batch_free(&ref2);
	batch_free(&b1);
	batch_free(&b2);
	free(mask);
	hmoe_expert_close(km);
	hmoe_expert_close(cpu);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc != 2) {
		fprintf(stderr, "usage: kmod_experts MODEL_DIR\n");
		return 2;
	}
	if (hmoe_model_load(&model, argv[1], HMOE_LOAD_F32) || hmoe_pool_create(&pool, 2)) {
		fprintf(stderr, "kmod_experts: %s\n", hmoe_last_error());
		return 1;
	}
	if (model->cfg.num_hidden_layers < 3 || !model->layers[1].is_moe ||
	    !model->layers[2].is_moe || model->cfg.n_routed_experts < 8) {
		fprintf(stderr, "kmod_experts: want MoE layers 1 and 2 with 8+ experts\n");
		return 1;
	}
	test_mode("fp8");
	test_mode("int8-a8");
	test_mode("int4");
	test_resident();
	hmoe_pool_destroy(pool);
	hmoe_model_free(model);
	printf("kmod_experts: %s\n", failures ? "FAIL" : "PASS");
	return failures ? 1 : 0;
}
