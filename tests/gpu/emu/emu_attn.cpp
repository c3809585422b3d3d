/* emu_attn: the tensor-core attention kernels (MLA decode v2 + the split-K combine, MLA
 * prefill v2), compiled from their real headers for the host emulator (hmoe_cuda_emu.h),
 * against the CPU references of tests/gpu, with the GPU tests' version-2 tolerance:
 *   |out - ref| <= 2^-8 |ref| + 1e-4 + 1.01 x 2^-8 x spread   (spread = sum p |v - o|).
 *
 *   emu_attn decode|prefill [SUBSTRING]   (only the cases whose name contains SUBSTRING)
 *
 * One line per case, like tests/gpu/test_cuda; exit 0 when all pass, 1 otherwise (an
 * emulator check prints EMU CHECK FAILED and exits 1 at once). HMOE_TEST_SEED sets the
 * seed of the data and of the schedule: a run replays exactly. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <vector>

#include "hmoe_cuda_emu.h"

#include "hmoe_cuda_decode2.cuh"
#include "hmoe_cuda_prefill2.cuh"

extern "C" {
#include "hmoe_cuda_ref.h"
#include "hmoe_num.h"
}
#include "gpu_check.h"

/* the kernels' extern __shared__ arrays; bytes past a launch's size are a canary */
#define SMEM_CANARY 4096
alignas(128) unsigned char d2_smem[D2_HG * D2_ROW * 2 + 3 * D2_T * D2_ROW * 2 +
				   D2_HG * D2_PROW * 2 + 4 * D2_HG * 4 + SMEM_CANARY];
alignas(128) unsigned char p2_smem[P2_SMEM + SMEM_CANARY];

/* An output buffer: n elements, poisoned (0xff bytes: NaN) like the GPU tests', between
 * guard elements, as poisoned, that must stay so: enough of them to take the rows of a
 * whole head group past the end (a kernel storing heads >= H of the last sequence). */
template <typename T> struct guarded {
	std::vector<T> buf;
	size_t n, guard;

	guarded(size_t n_, size_t guard_) : buf(n_ + 2 * guard_), n(n_), guard(guard_)
	{
		memset((void *)buf.data(), 0xff, buf.size() * sizeof(T));
	}
	T *data()
	{
		return buf.data() + guard;
	}
	/* the index of the first written guard element (negative: before), or 0 */
	long guard_hit() const
	{
		const unsigned char *b = (const unsigned char *)buf.data();

		for (size_t i = 0; i < buf.size() * sizeof(T); i++)
			if ((i < guard * sizeof(T) || i >= (guard + n) * sizeof(T)) && b[i] != 0xff)
				return (long)(i / sizeof(T)) - (long)guard;
		return 0;
	}
};

static int guard_report(const char *what, const char *buf, long hit)
{
	if (!hit)
		return 0;
	printf("%-34s FAILED: %s written at element %ld outside it\n", what, buf, hit);
	return 1;
}

/* ---- decode: mla_decode_kernel2<STAGES> (+ mla_decode_combine) ---- */

struct d2_args {
	uint16_t *out;
	const uint16_t *q, *pages;
	const int32_t *bt, *lens;
	int page_size, max_pages, H, L, D;
	float scale_log2;
	int split_len, n_splits;
	float *part_o, *part_ml;
};

template <int STAGES> static void d2_body(void *p)
{
	const d2_args &a = *(const d2_args *)p;

	mla_decode_kernel2<STAGES>(a.out, a.q, a.pages, a.bt, a.lens, a.page_size, a.max_pages,
				   a.H, a.L, a.D, a.scale_log2, a.split_len, a.n_splits, a.part_o,
				   a.part_ml);
}

static void combine_body(void *p)
{
	const d2_args &a = *(const d2_args *)p;

	mla_decode_combine(a.out, a.part_o, a.part_ml, a.H, a.L, a.n_splits);
}

struct dcase {
	const char *what;
	std::vector<int> lens;
	int H, L, R, page_size;
	int split_len;   /* of the several-splits run (a multiple of 32) */
};

static int decode_case(const dcase &dc)
{
	int batch = (int)dc.lens.size(), H = dc.H, L = dc.L, D = dc.L + dc.R;
	int max_len = 0, n_pages = 0, fails = 0;
	float scale = 1.0f / sqrtf(192.0f) * 1.8738542f;

	for (int len : dc.lens)
		max_len = len > max_len ? len : max_len;
	int max_pages = (max_len + dc.page_size - 1) / dc.page_size;

	if (max_pages < 1)
		max_pages = 1;
	/* pages handed out in a shuffled order, 3 spare ones, -1 in unused table slots */
	for (int len : dc.lens)
		n_pages += (len + dc.page_size - 1) / dc.page_size;
	n_pages += 3;
	std::vector<int32_t> perm((size_t)n_pages), bt((size_t)batch * max_pages);

	for (int i = 0; i < n_pages; i++)
		perm[(size_t)i] = i;
	for (int i = n_pages - 1; i > 0; i--) {
		int j = (int)(rng_next() % (uint64_t)(i + 1)), t = perm[(size_t)i];

		perm[(size_t)i] = perm[(size_t)j];
		perm[(size_t)j] = t;
	}
	for (int b = 0, next = 0; b < batch; b++)
		for (int p = 0; p < max_pages; p++)
			bt[(size_t)b * max_pages + p] =
				p < (dc.lens[(size_t)b] + dc.page_size - 1) / dc.page_size
					? perm[(size_t)next++] : -1;
	size_t pages_n = (size_t)n_pages * dc.page_size * D, q_n = (size_t)batch * H * D;
	size_t out_n = (size_t)batch * H * L;
	uint16_t *pages = rand_bf16(pages_n, -1.0f, 1.0f), *q = rand_bf16(q_n, -1.0f, 1.0f);
	std::vector<double> ref(out_n), spread(out_n);

	hcu_ref_mla_decode(ref.data(), q, pages, bt.data(), dc.lens.data(), dc.page_size,
			   max_pages, batch, H, L, dc.R, scale, spread.data());
	for (int stages = 3; stages >= 2; stages--)
		for (int several = 0; several < 2; several++) {
			int split_len = several ? dc.split_len : (max_len + D2_T - 1) / D2_T * D2_T;

			if (split_len < D2_T)
				split_len = D2_T;
			int n_splits = (max_len + split_len - 1) / split_len;

			if (n_splits < 1)
				n_splits = 1;
			size_t n_slot = (size_t)batch * n_splits * H;
			guarded<uint16_t> out(out_n, (size_t)D2_HG * L);
			guarded<float> part_o(n_splits > 1 ? n_slot * L : 0, (size_t)D2_HG * L);
			guarded<float> part_ml(n_splits > 1 ? n_slot * 2 : 0, (size_t)D2_HG * 2);
			d2_args a = { out.data(), q, pages, bt.data(), dc.lens.data(), dc.page_size,
				      max_pages, H, L, D, scale * 1.44269504f, split_len, n_splits,
				      n_splits > 1 ? part_o.data() : nullptr,
				      n_splits > 1 ? part_ml.data() : nullptr };
			char what[160];
			emu_launch kl = { { (unsigned)((H + D2_HG - 1) / D2_HG), (unsigned)n_splits,
					    (unsigned)batch },
					  D2_THREADS, d2_smem, sizeof(d2_smem),
					  d2_smem_bytes(stages), "mla_decode_kernel2" };
			struct cmp c = {};

			snprintf(what, sizeof(what), "decode2<%d> %s, %d x %d", stages, dc.what,
				 n_splits, split_len);
			emu_context(what);
			emu_globals_clear();
			emu_global(q, q_n * 2);
			emu_global(pages, pages_n * 2);
			if (stages == 3)
				emu_run(kl, d2_body<3>, &a);
			else
				emu_run(kl, d2_body<2>, &a);
			if (n_splits > 1) {
				emu_launch cl = { { (unsigned)H, (unsigned)batch, 1 }, 128, d2_smem,
						  sizeof(d2_smem), 0, "mla_decode_combine" };

				emu_run(cl, combine_body, &a);
			}
			c.what = what;
			for (size_t i = 0; i < out_n; i++)
				cmp_one(&c, (long)i, hmoe_bf16_to_f32(out.data()[i]), ref[i],
					attn_tol(ref[i], spread[i], 1));
			fails += cmp_report(&c);
			fails += guard_report(what, "out", out.guard_hit());
			fails += guard_report(what, "part_o", part_o.guard_hit());
			fails += guard_report(what, "part_ml", part_ml.guard_hit());
		}
	free(pages);
	free(q);
	return fails;
}

static int run_decode(const char *only)
{
	/* lengths: 1, a length 0, not multiples of the 32-token tile; batches whose lengths
	 * leave some splits of the several-splits runs empty */
	const dcase cases[] = {
		{ "H128 L512 R64 page64 lens 1/37/0/230", { 1, 37, 0, 230 }, 128, 512, 64, 64, 96 },
		{ "H32 L512 R64 page16 lens 100/16/64/65/1/33", { 100, 16, 64, 65, 1, 33 }, 32,
		  512, 64, 16, 32 },
		{ "H4 L64 R16 page7 lens 3/40/129/0", { 3, 40, 129, 0 }, 4, 64, 16, 7, 64 },
		{ "H80 L128 R32 page7 lens 70/200", { 70, 200 }, 80, 128, 32, 7, 64 },
	};
	int fails = 0;

	for (const dcase &c : cases)
		if (!only || strstr(c.what, only))
			fails += decode_case(c);
	return fails;
}

/* ---- prefill: mla_prefill_kernel2 ---- */

struct p2_args {
	uint16_t *out;
	const uint16_t *q, *k, *v;
	int n, H, dqk, dv;
	float scale_log2;
};

static void p2_body(void *p)
{
	const p2_args &a = *(const p2_args *)p;

	mla_prefill_kernel2(a.out, a.q, a.k, a.v, a.n, a.H, a.dqk, a.dv, a.scale_log2);
}

static int prefill_case(int n, int H, int dqk, int dv)
{
	float scale = 1.0f / sqrtf((float)dqk) * 1.8738542f;
	size_t qn = (size_t)n * H * dqk, vn = (size_t)n * H * dv;
	uint16_t *q = rand_bf16(qn, -1.0f, 1.0f), *k = rand_bf16(qn, -1.0f, 1.0f);
	uint16_t *v = rand_bf16(vn, -1.0f, 1.0f);
	std::vector<double> ref(vn), spread(vn);
	guarded<uint16_t> out(vn, (size_t)P2_BQ * H * dv);
	p2_args a = { out.data(), q, k, v, n, H, dqk, dv, scale * 1.44269504088896341f };
	emu_launch l = { { (unsigned)((n + P2_BQ - 1) / P2_BQ), (unsigned)H, 1 }, P2_THREADS,
			 p2_smem, sizeof(p2_smem), P2_SMEM, "mla_prefill_kernel2" };
	char what[160];
	struct cmp c = {};
	int fails;

	snprintf(what, sizeof(what), "prefill2 n%d H%d %d/%d", n, H, dqk, dv);
	emu_context(what);
	emu_globals_clear();
	emu_global(q, qn * 2);
	emu_global(k, qn * 2);
	emu_global(v, vn * 2);
	emu_run(l, p2_body, &a);
	hcu_ref_mla_prefill(ref.data(), q, k, v, n, H, dqk, dv, scale, spread.data());
	c.what = what;
	for (size_t i = 0; i < vn; i++)
		cmp_one(&c, (long)i, hmoe_bf16_to_f32(out.data()[i]), ref[i],
			attn_tol(ref[i], spread[i], 1));
	fails = cmp_report(&c) + guard_report(what, "out", out.guard_hit());
	free(q);
	free(k);
	free(v);
	return fails;
}

static int run_prefill(const char *only)
{
	/* V3 head dims with n around the 64-row tiles (one row, one tile, one past, partial
	 * diagonal tiles, 11 tiles), several heads; dims multiples of 8 but not of 16 (zero
	 * padding to 16), tiny and mixed dims */
	const int cases[][4] = {
		{ 1, 3, 192, 128 },  { 17, 2, 24, 16 },    { 64, 1, 192, 128 },
		{ 65, 1, 192, 128 }, { 200, 2, 192, 128 }, { 300, 1, 192, 128 },
		{ 70, 3, 40, 24 },   { 129, 2, 8, 8 },     { 100, 1, 184, 120 },
		{ 130, 1, 16, 128 }, { 700, 1, 192, 128 }, { 192, 2, 192, 128 },
	};
	int fails = 0;

	for (const auto &c : cases) {
		char name[64];

		snprintf(name, sizeof(name), "prefill2 n%d H%d %d/%d", c[0], c[1], c[2], c[3]);
		if (!only || strstr(name, only))
			fails += prefill_case(c[0], c[1], c[2], c[3]);
	}
	return fails;
}

int main(int argc, char **argv)
{
	struct timespec t0, t1;
	int fails;

	if (sizeof(d2_smem) != d2_smem_bytes(3) + SMEM_CANARY) {
		fprintf(stderr, "emu_attn: d2_smem is not d2_smem_bytes(3) + the canary\n");
		return 2;
	}
	if (argc < 2 || argc > 3 || (strcmp(argv[1], "decode") && strcmp(argv[1], "prefill"))) {
		fprintf(stderr, "usage: emu_attn decode|prefill [SUBSTRING]\n");
		return 2;
	}
	emu_seed(rng_seed_from_env());
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (!strcmp(argv[1], "decode"))
		fails = run_decode(argc > 2 ? argv[2] : NULL);
	else
		fails = run_prefill(argc > 2 ? argv[2] : NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("emu %s: %s (%.1f s)\n", argv[1], fails ? "FAILED" : "PASSED",
	       (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
	return fails ? 1 : 0;
}
