/* test_bench: what the benchmarks compute besides timings. bench_expert_tokens (the
 * routing summary `hmoe bench experts` reports as pairs_by_expert_tokens) against routings
 * built by hand, one expert at each bucket edge. */
#include "hmoe_bench.h"
#include "hmoe_test.h"

int main(void)
{
	/* tokens per expert: expert e gets sizes[e] pairs */
	static const int sizes[] = { 1, 2, 4, 5, 11, 12, 40, 0, 1 };
	enum { N = sizeof(sizes) / sizeof(sizes[0]) };
	int ids[128], n = 0, pairs[4];

	for (int e = 0; e < N; e++)
		for (int k = 0; k < sizes[e]; k++)
			ids[n++] = e;
	bench_expert_tokens(ids, n, N, pairs);
	CHECK(pairs[0] == 1 + 1, "1 token: %d pairs, want 2", pairs[0]);
	CHECK(pairs[1] == 2 + 4, "2-4 tokens: %d pairs, want 6", pairs[1]);
	CHECK(pairs[2] == 5 + 11, "5-11 tokens: %d pairs, want 16", pairs[2]);
	CHECK(pairs[3] == 12 + 40, "12+ tokens: %d pairs, want 52", pairs[3]);
	bench_expert_tokens(ids, 0, N, pairs);
	CHECK(!pairs[0] && !pairs[1] && !pairs[2] && !pairs[3], "no pairs: all buckets 0");
	printf("%s\n", failures ? "FAILED" : "PASSED");
	return failures ? 1 : 0;
}
