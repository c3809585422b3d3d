/* test_sample: next-token sampling (runtime/hmoe_sample.c).
 *
 * What a user would notice if broken:
 *  - greedy (temperature 0) or top-k = 1 not picking the argmax: --temperature 0 output
 *    would not be the model's most likely text;
 *  - the same seed giving different text on a second run;
 *  - top-p letting in tokens outside the nucleus, or sampled frequencies not following
 *    the renormalised distribution (checked over 20000 draws, within 1.5 points);
 *  - top-k sampling outside the k best; the nucleus of a large flat distribution (found by
 *    selection) wrong, or ties at its edge not going to the lowest ids;
 *  - a padding id (>= n_valid) or a NaN logit chosen, a +inf logit not chosen, or
 *    all-(-inf) logits crashing instead of failing with an error.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmoe_err.h"
#include "hmoe_sample.h"

#include "hmoe_test.h"

#define N_DRAWS 20000

/* Logits with a known spread: pseudo-random from the seed, in [-4, 4). */
static void make_logits(float *l, int n, unsigned seed)
{
	for (int i = 0; i < n; i++) {
		seed = seed * 1664525u + 1013904223u;
		l[i] = (float)((seed >> 8) % 8000) / 1000.0f - 4.0f;
	}
}

static void test_greedy(void)
{
	enum { N = 5000 };
	static float l[N];
	struct hmoe_sampler s;
	for (unsigned seed = 1; seed <= 5; seed++) {
		make_logits(l, N, seed);
		int want = 0;
		for (int i = 1; i < N; i++)
			if (l[i] > l[want])
				want = i;
		hmoe_sampler_init(&s, 0.0f, 1.0f, 0, seed);
		CHECK(hmoe_sample(&s, l, N, NULL) == want, "greedy != argmax %d (seed %u)", want,
		      seed);
		hmoe_sampler_init(&s, 1.0f, 1.0f, 1, seed);
		CHECK(hmoe_sample(&s, l, N, NULL) == want, "top-k=1 != argmax %d", want);
		hmoe_sampler_init(&s, 0.7f, 0.9f, 1, seed);
		CHECK(hmoe_sample(&s, l, N, NULL) == want, "top-k=1 with top-p != argmax");
	}
	float tie[4] = { 1.0f, 3.0f, 3.0f, 2.0f };
	hmoe_sampler_init(&s, 0.0f, 1.0f, 0, 1);
	CHECK(hmoe_sample(&s, tie, 4, NULL) == 1, "greedy tie must take the lowest id");
}

static void test_seed_reproducible(void)
{
	enum { N = 1000, STEPS = 200 };
	static float l[N], scratch[2 * N];
	struct hmoe_sampler a, b, c;
	int same_ab = 1, same_ac = 1;
	make_logits(l, N, 7);
	hmoe_sampler_init(&a, HMOE_R1_TEMPERATURE, HMOE_R1_TOP_P, 0, 42);
	hmoe_sampler_init(&b, HMOE_R1_TEMPERATURE, HMOE_R1_TOP_P, 0, 42);
	hmoe_sampler_init(&c, HMOE_R1_TEMPERATURE, HMOE_R1_TOP_P, 0, 43);
	for (int i = 0; i < STEPS; i++) {
		l[i % N] += 0.5f; /* the logits move as in generation */
		int x = hmoe_sample(&a, l, N, scratch), y = hmoe_sample(&b, l, N, NULL);
		int z = hmoe_sample(&c, l, N, scratch);
		same_ab &= x == y;
		same_ac &= x == z;
	}
	CHECK(same_ab, "seed 42 twice gave different sequences");
	CHECK(!same_ac, "seeds 42 and 43 gave the same %d draws", STEPS);

	/* the stream itself is uniform in [0, 1) */
	double sum = 0;
	int in_range = 1;
	for (int i = 0; i < N_DRAWS; i++) {
		double u = hmoe_sampler_uniform(&a);
		in_range &= u >= 0 && u < 1;
		sum += u;
	}
	CHECK(in_range, "uniform draw outside [0, 1)");
	CHECK(fabs(sum / N_DRAWS - 0.5) < 0.01, "uniform mean %.4f", sum / N_DRAWS);
}

/* Draws N_DRAWS times and compares frequencies with want[] (the renormalised nucleus). */
static void check_frequencies(const char *what, struct hmoe_sampler *s, const float *l, int n,
			      const double *want)
{
	int count[16] = { 0 };
	for (int d = 0; d < N_DRAWS; d++) {
		int id = hmoe_sample(s, l, n, NULL);
		CHECK(id >= 0 && id < n, "%s: id %d out of [0, %d)", what, id, n);
		if (id >= 0 && id < n)
			count[id]++;
	}
	for (int i = 0; i < n; i++) {
		double f = (double)count[i] / N_DRAWS;
		if (want[i] == 0)
			CHECK(count[i] == 0, "%s: id %d outside the set drawn %d times", what, i,
			      count[i]);
		else
			CHECK(fabs(f - want[i]) < 0.015, "%s: id %d frequency %.4f, want %.4f",
			      what, i, f, want[i]);
	}
}

static void test_top_p_top_k(void)
{
	/* Probabilities at T = 1 (softmax of log p): 0.35 0.25 0.15 0.10 0.08 0.07 */
	const double p[6] = { 0.35, 0.25, 0.15, 0.10, 0.08, 0.07 };
	float l[6];
	int order[6] = { 3, 0, 5, 1, 4, 2 }; /* shuffled so that ids are not in rank order */
	for (int i = 0; i < 6; i++)
		l[order[i]] = (float)log(p[i]);
	struct hmoe_sampler s;

	/* top-p 0.8: 0.35 + 0.25 + 0.15 = 0.75 < 0.8, + 0.10 = 0.85 >= 0.8 -> 4 tokens */
	double want[6] = { 0 };
	for (int i = 0; i < 4; i++)
		want[order[i]] = p[i] / 0.85;
	hmoe_sampler_init(&s, 1.0f, 0.8f, 0, 1234);
	check_frequencies("top-p 0.8", &s, l, 6, want);

	/* top-k 2: the two best, renormalised */
	memset(want, 0, sizeof(want));
	want[order[0]] = 0.35 / 0.60;
	want[order[1]] = 0.25 / 0.60;
	hmoe_sampler_init(&s, 1.0f, 1.0f, 2, 99);
	check_frequencies("top-k 2", &s, l, 6, want);

	/* top-k 3 then top-p 0.7 of the renormalised three (0.467 0.333 0.2): two tokens */
	memset(want, 0, sizeof(want));
	want[order[0]] = 0.35 / 0.60;
	want[order[1]] = 0.25 / 0.60;
	hmoe_sampler_init(&s, 1.0f, 0.7f, 3, 5);
	check_frequencies("top-k 3 + top-p 0.7", &s, l, 6, want);

	/* no filter, temperature 2: p^(1/2) renormalised */
	double z = 0;
	for (int i = 0; i < 6; i++)
		z += sqrt(p[i]);
	for (int i = 0; i < 6; i++)
		want[order[i]] = sqrt(p[i]) / z;
	hmoe_sampler_init(&s, 2.0f, 1.0f, 0, 77);
	check_frequencies("temperature 2", &s, l, 6, want);
}

/* A 1000-token distribution (the nucleus found by selection, not by sorting all): every
 * draw within the nucleus of a plain sort, and every token of it drawn. */
static int by_prob_desc(const void *pa, const void *pb)
{
	const double *a = pa, *b = pb; /* (p, id) */
	return a[0] > b[0] ? -1 : a[0] < b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1];
}

static void test_large_nucleus(void)
{
	enum { N = 1000 };
	static float l[N];
	static double ref[N][2];
	static int rank_of[N], drawn[N];
	struct hmoe_sampler s;
	make_logits(l, N, 3);
	double max = -1e30, total = 0;
	for (int i = 0; i < N; i++)
		max = l[i] > max ? l[i] : max;
	for (int i = 0; i < N; i++) {
		ref[i][0] = exp((double)l[i] - max);
		ref[i][1] = i;
		total += ref[i][0];
	}
	qsort(ref, N, sizeof(ref[0]), by_prob_desc);
	int k = 0;
	for (double cum = 0; cum < 0.5 * total; k++)
		cum += ref[k][0];
	for (int r = 0; r < N; r++)
		rank_of[(int)ref[r][1]] = r;

	hmoe_sampler_init(&s, 1.0f, 0.5f, 0, 2024);
	int outside = 0;
	for (int d = 0; d < N_DRAWS; d++) {
		int id = hmoe_sample(&s, l, N, NULL);
		if (id < 0 || id >= N || rank_of[id] > k) /* rank k: the boundary may round in */
			outside++;
		else
			drawn[id]++;
	}
	CHECK(k > 40, "nucleus of %d tokens is too small to test selection", k);
	CHECK(outside == 0, "%d draws outside the top-p 0.5 nucleus of %d tokens", outside, k);
	int missing = 0;
	for (int r = 0; r + 1 < k; r++)
		missing += drawn[(int)ref[r][1]] == 0;
	CHECK(missing == 0, "%d tokens of the nucleus never drawn", missing);

	/* equal logits: the nucleus is the lowest ids (30.5 of 100 -> ids 0..30) */
	for (int i = 0; i < 100; i++)
		l[i] = 0.25f;
	hmoe_sampler_init(&s, 0.6f, 0.305f, 0, 8);
	int max_id = -1, n_hit = 0;
	memset(drawn, 0, sizeof(drawn));
	for (int d = 0; d < 5000; d++) {
		int id = hmoe_sample(&s, l, 100, NULL);
		max_id = id > max_id ? id : max_id;
		n_hit += drawn[id]++ == 0;
	}
	CHECK(max_id == 30 && n_hit == 31, "flat top-p: max id %d, %d ids drawn, want 30, 31",
	      max_id, n_hit);
}

static void test_bad_logits(void)
{
	struct hmoe_sampler s;
	float l[8] = { 1, NAN, 2, -INFINITY, NAN, 0.5f, 100.0f, 100.0f };
	int hit_pad = 0, hit_nan = 0;

	/* ids 6 and 7 are padding past n_valid = 6: never chosen even though largest */
	hmoe_sampler_init(&s, 0.0f, 1.0f, 0, 1);
	CHECK(hmoe_sample(&s, l, 6, NULL) == 2, "greedy with NaN/padding");
	for (int t = 0; t < 3; t++) {
		hmoe_sampler_init(&s, 1.5f, t == 1 ? 0.9f : 1.0f, t == 2 ? 3 : 0, (uint64_t)t);
		for (int d = 0; d < 2000; d++) {
			int id = hmoe_sample(&s, l, 6, NULL);
			hit_pad |= id >= 6 || id < 0;
			hit_nan |= id == 1 || id == 4 || id == 3;
		}
	}
	CHECK(!hit_pad, "sampled a padding id (>= n_valid) or an error");
	CHECK(!hit_nan, "sampled a NaN or -inf logit");

	/* +inf takes all the probability */
	float inf[4] = { 3, INFINITY, 1, 2 };
	hmoe_sampler_init(&s, 1.0f, 0.95f, 0, 3);
	int all_inf = 1;
	for (int d = 0; d < 100; d++)
		all_inf &= hmoe_sample(&s, inf, 4, NULL) == 1;
	CHECK(all_inf, "+inf logit not always chosen");

	/* nothing choosable: an error, not a crash or an arbitrary id */
	float none[3] = { NAN, -INFINITY, NAN };
	hmoe_sampler_init(&s, 0.6f, 0.95f, 0, 3);
	CHECK(hmoe_sample(&s, none, 3, NULL) == -HMOE_EINPUT, "all NaN/-inf must be an error");
	CHECK(strstr(hmoe_last_error(), "NaN") != NULL, "error names the problem: %s",
	      hmoe_last_error());
	CHECK(hmoe_sample(&s, l, 0, NULL) == -HMOE_EINPUT, "n_valid 0 must be an error");
}

int main(void)
{
	test_greedy();
	test_seed_reproducible();
	test_top_p_top_k();
	test_large_nucleus();
	test_bad_logits();
	if (failures) {
		fprintf(stderr, "test_sample: %d failures\n", failures);
		return 1;
	}
	printf("test_sample: all passed\n");
	return 0;
}
