/* test_bench: what the benchmarks compute besides timings. bench_expert_tokens (the
 * routing summary `hmoe bench experts` reports as pairs_by_expert_tokens) against routings
 * built by hand, one expert at each bucket edge; bench_rows4_touch (the read pattern
 * behind bench experts' pattern rate) reads every line of the four row records once and
 * nothing past them, and gives zero accumulators. */
#include <stdlib.h>
#include <string.h>

#include "hmoe_bench.h"
#include "hmoe_fxp.h"
#include "hmoe_fxp_cpu.h"
#include "hmoe_test.h"

/* Four row records of each format and a few widths (a whole number of 4-group blocks,
 * and not), random bytes with random bytes after each record too: bench_rows4_sum must
 * be the sum of exactly the records' 64-bit words. */
static void test_rows4_touch(void)
{
	static const int ins[] = { 7168, 2048, 300, 128 };
	static const int formats[] = { HMOE_FXP_FP8, HMOE_FXP_INT8, HMOE_FXP_INT4 };
	uint64_t s = 0x9e3779b97f4a7c15ull;

	if (!__builtin_cpu_supports("avx512f")) {
		printf("bench_rows4_touch: skipped, this CPU has no AVX-512F (it runs only there)\n");
		return;
	}
	for (size_t f = 0; f < sizeof(formats) / sizeof(formats[0]); f++)
		for (size_t i = 0; i < sizeof(ins) / sizeof(ins[0]); i++) {
			int format = formats[f], in = ins[i];
			size_t rec = (size_t)hmoe_fxp_row_lines(format, in) * HMOE_FXP_LINE_BYTES;
			uint8_t *buf[4];
			const uint8_t *rows[4];
			uint64_t want = 0;
			int64_t acc[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
			/* row r's Q16 results at q16[r][2 q]; the odd words must stay 7 */
			int32_t q16[4][4] = { { 1, 7, 1, 7 }, { 1, 7, 1, 7 }, { 1, 7, 1, 7 },
					      { 1, 7, 1, 7 } };
			struct hmoe_fxp_rows4_out out = { .acc = acc,
							  .q16 = { q16[0], q16[1], q16[2], q16[3] },
							  .qstep = 2, .tstride = 1 };
			int nonzero = 0;
			struct hmoe_fxp_xtile x = { .n_tokens = 1, .groups = hmoe_fxp_groups(in) };

			for (int r = 0; r < 4; r++) {
				buf[r] = aligned_alloc(64, 2 * rec + 4096);
				if (!buf[r])
					return;
				for (size_t k = 0; k < 2 * rec + 4096; k += 8) {
					uint64_t w;

					s ^= s << 13, s ^= s >> 7, s ^= s << 17;
					w = s;
					memcpy(buf[r] + k, &w, 8);
					if (k < rec)
						want += w;
				}
				rows[r] = buf[r];
			}
			CHECK(bench_rows4_sum(rows, format, in) == want,
			      "bench_rows4_sum, format %d, in %d: not the sum of the records' words",
			      format, in);
			/* a run of two quads, the second's records right after the first's */
			CHECK(!bench_rows4_touch(rows, rec, 2, format, in, &x, NULL, &out),
			      "bench_rows4_touch, format %d, in %d: declined", format, in);
			for (int k = 0; k < 8; k++)
				nonzero += acc[k] != 0 || q16[k % 4][2 * (k / 4)] != 0 ||
					   q16[k % 4][2 * (k / 4) + 1] != 7;
			CHECK(!nonzero, "bench_rows4_touch, format %d, in %d: %d of the two quads' 8 "
			      "results not 0 (or written past)", format, in, nonzero);
			for (int r = 0; r < 4; r++)
				free(buf[r]);
		}
}

int main(void)
{
	test_rows4_touch();
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
