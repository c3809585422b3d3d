/* test_forward: the reference forward pass on an in-memory model (test_forward_model.h).
 *
 * What a user would notice if broken:
 *  - decode through the cache (absorbed MLA, one token at a time) disagrees with prefill
 *    (naive MLA over the whole prompt): generation would drift from the prompt's logits;
 *  - chunked prefill, batching with other sequences, or the thread count change results;
 *  - routing picks experts from masked groups, or weights do not sum to the route scale;
 *  - bad token ids / positions crash or corrupt a cache instead of failing cleanly.
 * The independent Python comparison lives in tests/ref/.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmoe_err.h"
#include "hmoe_expert.h"
#include "hmoe_forward.h"
#include "hmoe_ops.h"
#include "hmoe_pool.h"
#include "test_forward_model.h"

#include "hmoe_test.h"

#define N_TOK 23

/* A varied token sequence, long enough to pass the YaRN original length (8). */
static void make_tokens(int *tok, int n, int vocab, int salt)
{
	for (int i = 0; i < n; i++)
		tok[i] = (i * 37 + 5 + salt * 11 + (i * i) % 7) % vocab;
}

struct engine {
	struct hmoe_pool *pool;
	struct hmoe_expert_backend *experts;
	struct hmoe_forward *f;
};

static void engine_open(struct engine *en, const struct hmoe_model *m, int threads,
			enum hmoe_attn attn)
{
	int ret = hmoe_pool_create(&en->pool, threads);

	if (!ret)
		ret = hmoe_expert_open(&en->experts, "cpu-f32", m, en->pool);
	if (!ret)
		ret = hmoe_forward_create(&en->f, m, en->experts, en->pool);
	if (ret) {
		fprintf(stderr, "engine: %s\n", hmoe_last_error());
		exit(1);
	}
	hmoe_forward_set_attn(en->f, attn);
}

static void engine_close(struct engine *en)
{
	hmoe_forward_free(en->f);
	hmoe_expert_close(en->experts);
	hmoe_pool_destroy(en->pool);
}

/* Logits (n, vocab) of tokens fed to a fresh sequence in chunks of `chunk`. */
static float *run_seq(const struct hmoe_model *m, int threads, enum hmoe_attn attn,
		      const int *tok, int n, int chunk)
{
	struct engine en;
	struct hmoe_kv *kv;
	float *logits = malloc((size_t)n * m->cfg.vocab_size * sizeof(float));
	int ret;

	engine_open(&en, m, threads, attn);
	if ((ret = hmoe_kv_create(&kv, &m->cfg, 0)))
		exit(1);
	for (int i = 0; i < n; i += chunk) {
		int k = n - i < chunk ? n - i : chunk;

		ret = hmoe_forward_seq(en.f, kv, tok + i, k, 0,
				       logits + (size_t)i * m->cfg.vocab_size);
		if (ret) {
			fprintf(stderr, "forward: %s\n", hmoe_last_error());
			exit(1);
		}
	}
	CHECK(kv->len == n, "cache length %d after %d tokens", kv->len, n);
	hmoe_kv_free(kv);
	engine_close(&en);
	return logits;
}

static double max_pos_err(const float *a, const float *b, int n, int vocab)
{
	double worst = 0.0;

	for (int i = 0; i < n; i++) {
		double e = tfm_rel_err(a + (size_t)i * vocab, b + (size_t)i * vocab, vocab);

		worst = e > worst ? e : worst;
	}
	return worst;
}

static int same_bits(const float *a, const float *b, size_t n)
{
	return memcmp(a, b, n * sizeof(float)) == 0;
}

/* Decode (absorbed, via cache) agrees with prefill (naive) at every position, and the
 * forced forms and chunkings agree bit for bit where their arithmetic is the same. */
static void test_forms(const struct hmoe_model *m, const char *what)
{
	int V = m->cfg.vocab_size, tok[N_TOK];
	size_t all = (size_t)N_TOK * V;
	float *prefill, *decode, *naive_steps, *chunked, *absorb_all;
	double err;
	int finite = 1;

	make_tokens(tok, N_TOK, V, 0);
	prefill = run_seq(m, 2, HMOE_ATTN_AUTO, tok, N_TOK, N_TOK);
	decode = run_seq(m, 2, HMOE_ATTN_AUTO, tok, N_TOK, 1);
	naive_steps = run_seq(m, 2, HMOE_ATTN_NAIVE, tok, N_TOK, 1);
	chunked = run_seq(m, 2, HMOE_ATTN_AUTO, tok, N_TOK, 5);
	absorb_all = run_seq(m, 2, HMOE_ATTN_ABSORB, tok, N_TOK, N_TOK);

	for (size_t i = 0; i < all; i++)
		finite &= isfinite(prefill[i]);
	CHECK(finite, "%s: prefill logits not finite", what);
	err = max_pos_err(decode, prefill, N_TOK, V);
	printf("%s: absorbed decode vs naive prefill: max rel err %.3g over %d positions\n",
	       what, err, N_TOK);
	CHECK(err <= 1e-4, "%s: decode vs prefill rel err %.3g > 1e-4", what, err);
	CHECK(err > 0.0 || V < 2, "%s: decode and prefill bit-identical: forms not both run?",
	      what);
	CHECK(same_bits(naive_steps, prefill, all),
	      "%s: naive one token at a time differs from naive prefill", what);
	CHECK(same_bits(chunked, prefill, all),
	      "%s: chunked prefill (naive chunks of 5) differs from naive prefill", what);
	CHECK(same_bits(absorb_all, decode, all),
	      "%s: absorbed prefill differs from absorbed decode", what);
	free(prefill);
	free(decode);
	free(naive_steps);
	free(chunked);
	free(absorb_all);
}

/* Threads 1 vs 3: bit-identical. */
static void test_threads(const struct hmoe_model *m)
{
	int V = m->cfg.vocab_size, tok[N_TOK];
	float *a, *b;

	make_tokens(tok, N_TOK, V, 1);
	a = run_seq(m, 1, HMOE_ATTN_AUTO, tok, N_TOK, 7);
	b = run_seq(m, 3, HMOE_ATTN_AUTO, tok, N_TOK, 7);
	CHECK(same_bits(a, b, (size_t)N_TOK * V), "1 vs 3 threads: logits differ");
	free(a);
	free(b);
}

/* Three sequences at different positions in one batch, entries interleaved, mixing a
 * prefill chunk (naive), a decode step (absorbed) and a 2-token chunk: each sequence's
 * logits equal running it alone. */
static void test_batch(const struct hmoe_model *m)
{
	enum { NS = 3 };
	static const int prefix[NS] = { 0, 5, 11 }, add[NS] = { 4, 1, 2 };
	static const int order[] = { 1, 0, 2, 0, 0, 2, 0 }; /* sequence of each entry */
	int V = m->cfg.vocab_size, tok[NS][N_TOK], used[NS] = { 0 };
	struct hmoe_fwd_token batch[7];
	struct hmoe_kv *kv[NS];
	struct engine en;
	float *logits = malloc(7 * (size_t)V * sizeof(float));
	int ret, n_out = 0;

	engine_open(&en, m, 2, HMOE_ATTN_AUTO);
	for (int s = 0; s < NS; s++) {
		make_tokens(tok[s], N_TOK, V, 3 + s);
		if (hmoe_kv_create(&kv[s], &m->cfg, 0))
			exit(1);
		if (prefix[s] && hmoe_forward_seq(en.f, kv[s], tok[s], prefix[s], 1, logits)) {
			fprintf(stderr, "prefix: %s\n", hmoe_last_error());
			exit(1);
		}
	}
	for (int e = 0; e < 7; e++) {
		int s = order[e];

		batch[e] = (struct hmoe_fwd_token){ kv[s], tok[s][prefix[s] + used[s]],
						    prefix[s] + used[s], s != 2 || used[s] == 1 };
		used[s]++;
	}
	ret = hmoe_forward(en.f, batch, 7, logits);
	CHECK(ret == 0, "batch: %s", hmoe_last_error());
	for (int e = 0; e < 7; e++)
		n_out += batch[e].want_logits;
	CHECK(hmoe_forward_stats(en.f)->n_logits == n_out, "batch: %d logits rows, want %d",
	      hmoe_forward_stats(en.f)->n_logits, n_out);
	for (int s = 0; s < NS; s++)
		CHECK(kv[s]->len == prefix[s] + add[s], "batch: sequence %d length %d, want %d", s,
		      kv[s]->len, prefix[s] + add[s]);

	for (int s = 0; s < NS; s++) {
		int n = prefix[s] + add[s];
		float *alone = malloc((size_t)n * V * sizeof(float));
		struct hmoe_kv *solo;

		if (hmoe_kv_create(&solo, &m->cfg, 0))
			exit(1);
		if ((prefix[s] && hmoe_forward_seq(en.f, solo, tok[s], prefix[s], 0, alone)) ||
		    hmoe_forward_seq(en.f, solo, tok[s] + prefix[s], add[s], 0,
				     alone + (size_t)prefix[s] * V)) {
			fprintf(stderr, "alone: %s\n", hmoe_last_error());
			exit(1);
		}
		/* compare each batch logits row of this sequence with the solo run */
		for (int e = 0, k = 0; e < 7; e++) {
			if (!batch[e].want_logits)
				continue;
			if (order[e] == s)
				CHECK(same_bits(logits + (size_t)k * V,
						alone + (size_t)batch[e].pos * V, (size_t)V),
				      "batch: sequence %d position %d differs from running it alone",
				      s, batch[e].pos);
			k++;
		}
		hmoe_kv_free(solo);
		free(alone);
	}
	for (int s = 0; s < NS; s++)
		hmoe_kv_free(kv[s]);
	engine_close(&en);
	free(logits);
}

/* Bad input fails with HMOE_EINPUT and leaves the caches as they were. */
static void test_errors(const struct hmoe_model *m)
{
	struct engine en;
	struct hmoe_kv *kv, *other;
	struct hmoe_config small = m->cfg;
	float *logits = malloc(4 * (size_t)m->cfg.vocab_size * sizeof(float));
	int tok[3] = { 1, 2, 3 }, ret;
	struct hmoe_fwd_token gap[2];

	engine_open(&en, m, 2, HMOE_ATTN_AUTO);
	if (hmoe_kv_create(&kv, &m->cfg, 4))
		exit(1);
	if (hmoe_forward_seq(en.f, kv, tok, 2, 0, logits))
		exit(1);

	tok[0] = m->cfg.vocab_size;
	ret = hmoe_forward_seq(en.f, kv, tok, 1, 0, logits);
	CHECK(ret == -HMOE_EINPUT && strstr(hmoe_last_error(), "token id"),
	      "token id = vocab_size: ret %d (%s)", ret, hmoe_last_error());
	tok[0] = -1;
	ret = hmoe_forward_seq(en.f, kv, tok, 1, 0, logits);
	CHECK(ret == -HMOE_EINPUT, "token id -1: ret %d", ret);
	CHECK(kv->len == 2, "cache advanced on a bad token: len %d", kv->len);

	gap[0] = (struct hmoe_fwd_token){ kv, 3, 2, 1 };
	gap[1] = (struct hmoe_fwd_token){ kv, 4, 4, 1 }; /* skips position 3 */
	ret = hmoe_forward(en.f, gap, 2, logits);
	CHECK(ret == -HMOE_EINPUT && strstr(hmoe_last_error(), "position"),
	      "position gap: ret %d (%s)", ret, hmoe_last_error());
	CHECK(kv->len == 2, "cache advanced on a position gap: len %d", kv->len);

	tok[0] = 5;
	ret = hmoe_forward_seq(en.f, kv, tok, 3, 0, logits); /* 2 + 3 > max_len 4 */
	CHECK(ret == -HMOE_EINPUT, "past the sequence limit: ret %d", ret);
	CHECK(kv->len == 2, "cache advanced past its limit: len %d", kv->len);

	small.num_hidden_layers = 1;
	if (hmoe_kv_create(&other, &small, 0))
		exit(1);
	ret = hmoe_forward_seq(en.f, other, tok, 1, 0, logits);
	CHECK(ret == -HMOE_EINPUT, "cache of another model accepted: ret %d", ret);
	ret = hmoe_forward_seq(en.f, kv, tok, 1, 0, NULL);
	CHECK(ret == -HMOE_EINPUT, "NULL logits buffer accepted: ret %d", ret);
	hmoe_kv_free(other);
	hmoe_kv_free(kv);
	engine_close(&en);
	free(logits);
}

/* Routing on hand-made gate logits. */
static void test_route(void)
{
	struct hmoe_config c = tfm_config(); /* 8 experts, 4 groups of 2, keep 2, top 3 */
	float logits[8], bias[8], scratch[16], w[3], sum = 0.0f;
	int ids[3];

	/* Groups by selection score (sigmoid + bias): the bias pushes group 3 (experts 6, 7)
	 * ahead and every selection score negative, so masking with 0 instead of -inf would
	 * pick masked experts. */
	const float lg[8] = { 2.0f, 1.5f, -3.0f, -3.0f, 0.5f, 0.4f, -0.5f, -0.6f };
	for (int e = 0; e < 8; e++) {
		logits[e] = lg[e];
		bias[e] = e >= 6 ? -0.2f : -1.2f;
	}
	hmoe_forward_route(&c, logits, bias, ids, w, scratch);
	/* selection: s+b: e0 -.32 e1 -.38 e2 -1.15 e3 -1.15 e4 -.58 e5 -.60 e6 .18 e7 .15;
	 * groups (top-2 sums): g0 -.70 g1 -2.3 g2 -1.18 g3 .33 -> keep g3, g0 -> {0, 6, 7} */
	CHECK(ids[0] == 0 && ids[1] == 6 && ids[2] == 7, "route: picked %d %d %d, want 0 6 7",
	      ids[0], ids[1], ids[2]);
	for (int k = 0; k < 3; k++)
		sum += w[k];
	CHECK(fabsf(sum - 2.5f) < 1e-5f, "route: weights sum %g, want routed_scaling_factor 2.5",
	      sum);
	/* weights use the unbiased scores: w0 / w6 = sigmoid(2) / sigmoid(-.5) */
	CHECK(fabsf(w[0] / w[1] - (1.0f / (1.0f + expf(-2.0f))) / (1.0f / (1.0f + expf(0.5f)))) <
		      1e-5f,
	      "route: weights not proportional to the unbiased scores");

	/* softmax scoring, one group, no renormalisation (V2-Lite style) */
	c.scoring_func = HMOE_SCORE_SOFTMAX;
	c.n_group = 1;
	c.topk_group = 1;
	c.norm_topk_prob = 0;
	c.routed_scaling_factor = 1.0f;
	hmoe_forward_route(&c, logits, NULL, ids, w, scratch);
	CHECK(ids[0] == 0 && ids[1] == 1 && ids[2] == 4, "softmax route: picked %d %d %d, want "
	      "0 1 4", ids[0], ids[1], ids[2]);
	sum = 0.0f;
	for (int e = 0; e < 8; e++)
		sum += expf(lg[e]);
	CHECK(fabsf(w[0] - expf(2.0f) / sum) < 1e-6f, "softmax route: weight %g, want %g", w[0],
	      expf(2.0f) / sum);
}

/* The kernel tables agree on the whole model (scalar vs the best SIMD one). */
static void test_isa(const struct hmoe_model *m)
{
	int V = m->cfg.vocab_size, tok[N_TOK];
	float *best, *scalar;
	double err;
	enum hmoe_ops_isa isa = HMOE_ISA_AVX512;

	while (isa > HMOE_ISA_SCALAR && !hmoe_ops_isa_supported(isa))
		isa--;
	if (isa == HMOE_ISA_SCALAR) {
		printf("kernel tables: only scalar on this CPU, nothing to compare\n");
		return;
	}
	make_tokens(tok, N_TOK, V, 2);
	hmoe_ops_set_isa(isa);
	best = run_seq(m, 2, HMOE_ATTN_AUTO, tok, N_TOK, 6);
	hmoe_ops_set_isa(HMOE_ISA_SCALAR);
	scalar = run_seq(m, 2, HMOE_ATTN_AUTO, tok, N_TOK, 6);
	hmoe_ops_set_isa(isa);
	err = max_pos_err(best, scalar, N_TOK, V);
	printf("kernel tables %s vs scalar: max rel err %.3g\n", hmoe_ops_isa_name(isa), err);
	CHECK(err <= 1e-5, "%s vs scalar: rel err %.3g > 1e-5", hmoe_ops_isa_name(isa), err);
	free(best);
	free(scalar);
}

int main(void)
{
	struct hmoe_config c = tfm_config();
	struct hmoe_model *m = tfm_build(&c, 1);
	struct hmoe_model *lite;

	test_route();
	test_forms(m, "V3-like");
	test_threads(m);
	test_batch(m);
	test_errors(m);
	test_isa(m);

	/* V2-Lite-like: single wq, softmax scores, one group, no bias, two shared experts,
	 * no YaRN */
	c.q_lora_rank = 0;
	c.scoring_func = HMOE_SCORE_SOFTMAX;
	c.n_group = 1;
	c.topk_group = 1;
	c.norm_topk_prob = 0;
	c.n_shared_experts = 2;
	c.rope_yarn = 0;
	lite = tfm_build(&c, 2);
	for (int l = 0; l < c.num_hidden_layers; l++) {
		free(lite->layers[l].gate_bias);
		lite->layers[l].gate_bias = NULL;
	}
	test_forms(lite, "V2-Lite-like");
	tfm_free(lite);
	tfm_free(m);

	if (failures) {
		printf("%d checks failed\n", failures);
		return 1;
	}
	printf("all forward checks passed\n");
	return 0;
}
