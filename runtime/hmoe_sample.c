/* hmoe_sample: next-token choice (see hmoe_sample.h for the order of the steps).
 *
 * The PRNG is xoroshiro128++ seeded through splitmix64, so a seed means the same draws
 * everywhere. Probabilities are expf((logit - max) / temperature) in float, summed in double.
 * Candidates are kept in the caller's scratch as (probability, id) float pairs; an id is
 * exact in a float below 2^24, which bounds n_valid.
 */
#include "hmoe_sample.h"
#include "hmoe_err.h"

#include <math.h>
#include <stdlib.h>

#define SAMPLE_MAX_VOCAB (1 << 24)

/* ------------------------------------------------------------------------------------ */
/* PRNG */

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t xoroshiro_next(uint64_t s[2])
{
	uint64_t s0 = s[0], s1 = s[1];
	uint64_t result = rotl(s0 + s1, 17) + s0;
	s1 ^= s0;
	s[0] = rotl(s0, 49) ^ s1 ^ (s1 << 21);
	s[1] = rotl(s1, 28);
	return result;
}

void hmoe_sampler_init(struct hmoe_sampler *s, float temperature, float top_p, int top_k,
		       uint64_t seed)
{
	s->temperature = temperature > 0 ? temperature : 0; /* NaN and <= 0: greedy */
	s->top_p = top_p > 0 && top_p < 1 ? top_p : 1;
	s->top_k = top_k > 0 ? top_k : 0;
	s->rng[0] = splitmix64(&seed);
	s->rng[1] = splitmix64(&seed);
	if (s->rng[0] == 0 && s->rng[1] == 0)
		s->rng[1] = 1; /* the all-zero state would stay zero */
}

double hmoe_sampler_uniform(struct hmoe_sampler *s)
{
	return (double)(xoroshiro_next(s->rng) >> 11) * 0x1.0p-53;
}

/* ------------------------------------------------------------------------------------ */
/* sampling */

/* Candidate order: higher probability first, lower id first on ties. c = (prob, id). */
static int cand_before(const float *a, const float *b)
{
	return a[0] > b[0] || (a[0] == b[0] && a[1] < b[1]);
}

static int cand_cmp(const void *pa, const void *pb)
{
	const float *a = pa, *b = pb;
	return cand_before(a, b) ? -1 : cand_before(b, a) ? 1 : 0;
}

static void cand_swap(float *c, int i, int j)
{
	float p = c[2 * i], id = c[2 * i + 1];
	c[2 * i] = c[2 * j];
	c[2 * i + 1] = c[2 * j + 1];
	c[2 * j] = p;
	c[2 * j + 1] = id;
}

/* Moves the nucleus to the front of c[0, n): the smallest set of candidates, taken in
 * (probability desc, id asc) order, whose mass reaches want; returns its size and its
 * mass. Quickselect: expected O(n), where sorting a flat 129k distribution (an untrained
 * model) cost 20+ ms a token. The order inside the nucleus is deterministic. */
static int nucleus(float *c, int n, double want, double *mass)
{
	int lo = 0, hi = n; /* c[0, lo) is in the nucleus, c[hi, n) is not */
	double acc = 0;
	while (hi - lo > 32) {
		/* median of three as pivot, parked at hi - 1 */
		int a = lo, b = lo + (hi - lo) / 2, d = hi - 1, m;
#define BEFORE(i, j) cand_before(&c[2 * (i)], &c[2 * (j)])
		if (BEFORE(a, b))
			m = BEFORE(b, d) ? b : BEFORE(a, d) ? d : a;
		else
			m = BEFORE(a, d) ? a : BEFORE(b, d) ? d : b;
#undef BEFORE
		cand_swap(c, m, hi - 1);
		const float *pivot = &c[2 * (hi - 1)];
		int store = lo;
		double left = 0; /* mass of the candidates before the pivot */
		for (int i = lo; i < hi - 1; i++)
			if (cand_before(&c[2 * i], pivot)) {
				left += c[2 * i];
				cand_swap(c, i, store++);
			}
		cand_swap(c, store, hi - 1);
		if (acc + left >= want) {
			hi = store;             /* the boundary is before the pivot */
		} else {
			acc += left + c[2 * store];
			lo = store + 1;
			if (acc >= want) {      /* the pivot completes the nucleus */
				*mass = acc;
				return lo;
			}
		}
	}
	qsort(c + 2 * lo, (size_t)(hi - lo), 2 * sizeof(float), cand_cmp);
	while (lo < hi && acc < want)
		acc += c[2 * lo++];
	*mass = acc;
	return lo > 0 ? lo : n; /* (want <= 0 cannot happen: top_p > 0) */
}

/* Min-heap of the k best candidates seen so far (the worst on top). */
static void topk_sift_down(float *h, int n, int i)
{
	for (;;) {
		int c = 2 * i + 1;
		if (c >= n)
			return;
		if (c + 1 < n && cand_before(&h[2 * c], &h[2 * (c + 1)]))
			c++;
		if (!cand_before(&h[2 * i], &h[2 * c]))
			return;
		float p = h[2 * i], id = h[2 * i + 1];
		h[2 * i] = h[2 * c];
		h[2 * i + 1] = h[2 * c + 1];
		h[2 * c] = p;
		h[2 * c + 1] = id;
		i = c;
	}
}

static int argmax(const float *logits, int n)
{
	int best = -1;
	for (int i = 0; i < n; i++)
		if (!isnan(logits[i]) && (best < 0 || logits[i] > logits[best]))
			best = i;
	return best;
}

int hmoe_sample(struct hmoe_sampler *s, const float *logits, int n_valid, float *scratch)
{
	if (n_valid < 1 || n_valid > SAMPLE_MAX_VOCAB)
		return hmoe_err(HMOE_EINPUT, "sample: n_valid %d is not in [1, %d]", n_valid,
				SAMPLE_MAX_VOCAB);
	int best = argmax(logits, n_valid);
	if (best < 0 || logits[best] == -INFINITY)
		return hmoe_err(HMOE_EINPUT, "sample: all %d logits are NaN or -inf", n_valid);
	if (s->temperature <= 0 || s->top_k == 1)
		return best;

	float *cand = scratch ? scratch : malloc(2 * (size_t)n_valid * sizeof(float));
	if (!cand)
		return hmoe_err(HMOE_ENOMEM, "sample: out of memory for %d candidates", n_valid);

	/* probabilities, unnormalised: exp((l - max) / T); with +inf logits, those alone */
	float fmax = logits[best], finv_t = 1.0f / s->temperature;
	double total = 0;
	int inf = fmax == INFINITY, n = 0;
	int k = s->top_k > 0 && s->top_k < n_valid ? s->top_k : 0;
	for (int i = 0; i < n_valid; i++) {
		float l = logits[i];
		float p = isnan(l) ? 0.0f : inf ? (float)(l == INFINITY) : expf((l - fmax) * finv_t);
		total += p;
		if (k) {
			/* keep the k best in a min-heap */
			float c[2] = { p, (float)i };
			if (n < k) {
				int j = n++;
				cand[2 * j] = c[0];
				cand[2 * j + 1] = c[1];
				while (j > 0 && cand_before(&cand[2 * ((j - 1) / 2)], &cand[2 * j])) {
					int up = (j - 1) / 2;
					float tp = cand[2 * j], ti = cand[2 * j + 1];
					cand[2 * j] = cand[2 * up];
					cand[2 * j + 1] = cand[2 * up + 1];
					cand[2 * up] = tp;
					cand[2 * up + 1] = ti;
					j = up;
				}
			} else if (cand_before(c, &cand[0])) {
				cand[0] = c[0];
				cand[1] = c[1];
				topk_sift_down(cand, n, 0);
			}
		} else if (p > 0) {
			cand[2 * n] = p;
			cand[2 * n + 1] = (float)i;
			n++;
		}
	}
	double mass = total;
	if (k) {
		mass = 0;
		for (int j = 0; j < n; j++)
			mass += cand[2 * j];
	}
	if (s->top_p < 1) {
		/* A token below (1 - p) / (n - 1) of the mass cannot be in the nucleus: the
		 * tokens above it already hold more than p. Dropping them first keeps the sort
		 * short. */
		double cut = (1.0 - s->top_p) / (n > 1 ? n - 1 : 1) * mass;
		int m = 0;
		for (int j = 0; j < n; j++)
			if (cand[2 * j] >= cut) {
				cand[2 * m] = cand[2 * j];
				cand[2 * m + 1] = cand[2 * j + 1];
				m++;
			}
		n = nucleus(cand, m, s->top_p * mass, &mass);
	}
	/* one draw over the candidates */
	double r = hmoe_sampler_uniform(s) * mass, cum = 0;
	int id = best; /* replaced below; rounding can leave r just past the last candidate */
	for (int j = 0; j < n; j++) {
		if (cand[2 * j] <= 0)
			continue;
		cum += cand[2 * j];
		id = (int)cand[2 * j + 1];
		if (r < cum)
			break;
	}
	if (!scratch)
		free(cand);
	return id;
}
