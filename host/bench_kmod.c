/* bench_kmod: `hmoe bench kmod`: MoE layers through hmoe.ko (runtime/hmoe_kmod.c) on a
 * card, normally the emulated one in the QEMU guest of `make test-kmod`.
 *
 * One layer as the kmod expert backend runs it: route n tokens to top-k of E experts
 * (seeded, uniform), group them by expert into tiles of at most max_tokens_per_job,
 * then
 *   H2C: one copy job moves every tile's quantised activations to card memory;
 *   compute: one FFN job per (expert, tile), all in one submit, chained to the H2C
 *            job's fence (HMOE_SUBMIT_IN_FENCE);
 *   C2H: one copy job brings every tile's outputs back, chained to the compute fence;
 * and one wait, for the C2H job. --no-chain waits after each stage instead.
 * Reported: counts per layer (jobs, submits, waits, ioctls: the result that means
 * something under emulation) and jobs per second (measured, but emulated time).
 * Weights are zero-filled packs: the card runs the real kernel on them, the values do
 * not matter for counts. --format is a kernel mode: int8 (the default) is A16, two
 * activation planes (twice the x bytes and MACs of int8-a8).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hmoe_bench.h"
#include "hmoe_cli.h"
#include "hmoe_err.h"
#include "hmoe_ffn.h"
#include "hmoe_fxp_pack.h"
#include "hmoe_kmod.h"

static const struct cli_flag flags[] = {
	{ "card", 1, "--card N           hmoe card index (default 0)" },
	{ "tokens", 1, "--tokens N         tokens per layer (default 16)" },
	{ "experts", 1, "--experts N        routed experts (default 16)" },
	{ "top-k", 1, "--top-k N          experts per token (default 8)" },
	{ "dim", 1, "--dim N            expert input/output size (default 256)" },
	{ "inter", 1, "--inter N          expert intermediate size (default 128)" },
	{ "format", 1, "--format MODE      fp8|int8|int4 (A16) or fp8-a8|int8-a8|int4-a8 (default int8)" },
	{ "layers", 1, "--layers N         layers to run (default 20)" },
	{ "no-chain", 0, "--no-chain         wait after each stage instead of chaining fences" },
	{ "json", 0, "--json             JSON output (the only format)" },
	{ "help", 0, "--help             this text" },
};
#define N_FLAGS ((int)(sizeof(flags) / sizeof(flags[0])))

struct kmod_layer {
	int n_jobs_ffn;
	uint64_t x_bytes, y_bytes;     /* of all tiles */
	struct drm_hmoe_job *ffn_jobs; /* [n_jobs_ffn] */
};

static uint64_t align64(uint64_t v)
{
	return (v + 63) & ~(uint64_t)63;
}

/* Routes tokens and lays out one layer's FFN jobs (tiles of the same expert share its
 * weights; x and y of each tile get their own 64-byte-aligned slot). */
static int plan_layer(struct kmod_layer *L, uint64_t *rng, int n_tokens, int n_experts,
		      int top_k, int max_tile, int mode, int dim, int inter,
		      const struct hmoe_kmod_bo *w, uint64_t pack_bytes,
		      const struct hmoe_kmod_bo *x, const struct hmoe_kmod_bo *y)
{
	int *count = calloc((size_t)n_experts, sizeof(int));
	uint64_t x_tok = (uint64_t)hmoe_fxp_groups(dim) *
			 (HMOE_FXP_GROUP * (uint64_t)hmoe_fxp_mode_planes(mode) + 4);

	L->n_jobs_ffn = 0;
	L->x_bytes = L->y_bytes = 0;
	if (!count)
		return hmoe_err(HMOE_ENOMEM, "bench kmod: routing table");
	for (int t = 0; t < n_tokens; t++) {
		int chosen[16];

		for (int k = 0; k < top_k; k++) {
			int e, dup;

			do { /* top_k distinct experts per token */
				*rng ^= *rng << 13;
				*rng ^= *rng >> 7;
				*rng ^= *rng << 17;
				e = (int)(*rng % (uint64_t)n_experts);
				dup = 0;
				for (int i = 0; i < k; i++)
					dup |= chosen[i] == e;
			} while (dup);
			chosen[k] = e;
			count[e]++;
		}
	}
	for (int e = 0; e < n_experts; e++) {
		for (int done = 0; done < count[e]; done += max_tile) {
			int nt = count[e] - done < max_tile ? count[e] - done : max_tile;
			uint64_t xb = align64((uint64_t)nt * x_tok);
			uint64_t yb = align64((uint64_t)nt * dim * 4);

			L->ffn_jobs[L->n_jobs_ffn++] =
				hmoe_kmod_ffn(w, (uint64_t)e * pack_bytes, x, L->x_bytes, y,
					      L->y_bytes, (uint32_t)mode, (uint32_t)dim,
					      (uint32_t)inter, (uint32_t)nt);
			L->x_bytes += xb;
			L->y_bytes += yb;
		}
	}
	free(count);
	return 0;
}

/* One layer's three stages. Chained: 3 submits and 1 wait; else 3 submits, 3 waits. */
static int run_layer(struct hmoe_kmod *k, const struct kmod_layer *L, int chain,
		     uint32_t q_h2c, uint32_t q_comp, uint32_t q_c2h,
		     const struct hmoe_kmod_bo *xh, const struct hmoe_kmod_bo *xc,
		     const struct hmoe_kmod_bo *yc, const struct hmoe_kmod_bo *yh)
{
	uint32_t max_n = k->info.max_jobs_per_submit;
	struct drm_hmoe_job cp;
	int in = -1, out = -1, ret;
	uint64_t seq;

	cp = hmoe_kmod_copy(xh, 0, xc, 0, L->x_bytes);
	ret = hmoe_kmod_submit_chain(k, q_h2c, &cp, 1, -1, chain ? &in : NULL, &seq);
	if (!ret && !chain)
		ret = hmoe_kmod_wait(k, q_h2c, seq, 60000);
	for (int i = 0; !ret && i < L->n_jobs_ffn; i += (int)max_n) {
		uint32_t n = (uint32_t)(L->n_jobs_ffn - i) < max_n ? (uint32_t)(L->n_jobs_ffn - i)
								    : max_n;

		/* Submits of one queue run in order: only the first needs the in-fence,
		 * only the last gives the out-fence. */
		ret = hmoe_kmod_submit_chain(k, q_comp, L->ffn_jobs + i, n, i ? -1 : in,
					     chain && i + (int)n >= L->n_jobs_ffn ? &out : NULL,
					     &seq);
	}
	if (in >= 0)
		close(in);
	if (!ret && !chain)
		ret = hmoe_kmod_wait(k, q_comp, seq, 60000);
	if (!ret) {
		cp = hmoe_kmod_copy(yc, 0, yh, 0, L->y_bytes);
		ret = hmoe_kmod_submit_chain(k, q_c2h, &cp, 1, out, NULL, &seq);
	}
	if (out >= 0)
		close(out);
	if (!ret)
		ret = hmoe_kmod_wait(k, q_c2h, seq, 60000);
	return ret;
}

static int run(struct hmoe_kmod *k, const struct cli_args *a)
{
	long card, n_tokens, n_experts, top_k, dim, inter, layers;
	const char *fmt_name = cli_str(a, "format", "int8");
	int mode, ret;

	if ((ret = cli_int(a, "card", 0, 0, 63, &card)) ||
	    (ret = cli_int(a, "tokens", 16, 1, 4096, &n_tokens)) ||
	    (ret = cli_int(a, "experts", 16, 1, 256, &n_experts)) ||
	    (ret = cli_int(a, "top-k", 8, 1, 16, &top_k)) ||
	    (ret = cli_int(a, "dim", 256, 1, HMOE_FXP_MAX_DIM, &dim)) ||
	    (ret = cli_int(a, "inter", 128, 1, HMOE_FXP_MAX_INTER, &inter)) ||
	    (ret = cli_int(a, "layers", 20, 1, 100000, &layers)))
		return ret;
	if (top_k > n_experts)
		return hmoe_err(HMOE_EINPUT, "hmoe bench kmod: --top-k %ld exceeds --experts %ld",
				top_k, n_experts);
	ret = hmoe_fxp_format_parse(fmt_name, &mode);
	if (ret)
		return hmoe_err_ctx(ret, "hmoe bench kmod: --format");

	ret = hmoe_kmod_open(k, (int)card);
	if (ret)
		return ret;
	ret = hmoe_kmod_check_mode(k, mode);
	if (ret)
		return ret;

	int max_tile = (int)k->info.max_tokens_per_job;
	int planes = hmoe_fxp_mode_planes(mode);
	uint64_t pack_bytes = (uint64_t)hmoe_fxp_expert_lines(hmoe_fxp_mode_format(mode),
							      (int)dim, (int)inter) *
			      HMOE_FXP_LINE_BYTES;
	/* Upper bounds for one layer: every (token, k) its own tile in the worst case. */
	uint64_t max_jobs = (uint64_t)n_tokens * top_k;
	uint64_t x_tok = (uint64_t)hmoe_fxp_groups((int)dim) * (HMOE_FXP_GROUP * planes + 4);
	uint64_t x_max = max_jobs * align64(x_tok) + (uint64_t)n_experts * 64 * max_tile *
			 hmoe_fxp_groups((int)dim) * 2 * planes;
	uint64_t y_max = max_jobs * align64((uint64_t)dim * 4) +
			 (uint64_t)n_experts * 64 * max_tile * (uint64_t)dim * 2;
	struct hmoe_kmod_bo w = { 0 }, xh = { 0 }, xc = { 0 }, yc = { 0 }, yh = { 0 };
	struct kmod_layer L = { 0 };
	uint32_t q_h2c = 0, q_c2h = 0, q_comp = 0;
	uint64_t rng = 0x2545f4914f6cdd1dull, jobs = 0, ioctls0, n_ffn_total = 0;
	double t0, t1;
	int chain = !cli_has(a, "no-chain");

	L.ffn_jobs = calloc(max_jobs + (uint64_t)n_experts, sizeof(*L.ffn_jobs));
	if (!L.ffn_jobs)
		return hmoe_err(HMOE_ENOMEM, "bench kmod: job array");
	if ((ret = hmoe_kmod_bo_create(k, pack_bytes * (uint64_t)n_experts, HMOE_BO_CARD, &w)) ||
	    (ret = hmoe_kmod_bo_create(k, x_max, 0, &xh)) ||
	    (ret = hmoe_kmod_bo_create(k, x_max, HMOE_BO_CARD, &xc)) ||
	    (ret = hmoe_kmod_bo_create(k, y_max, HMOE_BO_CARD, &yc)) ||
	    (ret = hmoe_kmod_bo_create(k, y_max, 0, &yh)) ||
	    (ret = hmoe_kmod_queue_create(k, HMOE_QUEUE_H2C, 16, &q_h2c)) ||
	    (ret = hmoe_kmod_queue_create(k, HMOE_QUEUE_C2H, 16, &q_c2h)) ||
	    (ret = hmoe_kmod_queue_create(k, HMOE_QUEUE_COMPUTE,
					  k->info.max_ring_size, &q_comp)))
		goto out;
	memset(xh.map, 0, xh.size);

	ioctls0 = k->n_ioctls;
	t0 = hmoe_now_s();
	for (long l = 0; l < layers; l++) {
		ret = plan_layer(&L, &rng, (int)n_tokens, (int)n_experts, (int)top_k, max_tile,
				 mode, (int)dim, (int)inter, &w, pack_bytes, &xc, &yc);
		if (ret)
			goto out;
		ret = run_layer(k, &L, chain, q_h2c, q_comp, q_c2h, &xh, &xc, &yc, &yh);
		if (ret)
			goto out;
		jobs += 2 + (uint64_t)L.n_jobs_ffn;
		n_ffn_total += (uint64_t)L.n_jobs_ffn;
	}
	t1 = hmoe_now_s();

	printf("{\"bench\": \"kmod\", ");
	bench_json_machine(stdout);
	printf("\"node\": \"%s\", \"backend\": \"%s\", ", k->path,
	       k->info.backend == HMOE_BACKEND_EMU ? "emu" : "pci");
	printf("\"config\": {\"tokens\": %ld, \"experts\": %ld, \"top_k\": %ld, \"dim\": %ld, "
	       "\"inter\": %ld, \"format\": \"%s\", \"activation_planes\": %d, \"layers\": %ld, "
	       "\"max_tokens_per_job\": %d}, ",
	       n_tokens, n_experts, top_k, dim, inter, hmoe_fxp_format_name(mode), planes, layers,
	       max_tile);
	printf("\"counts\": {\"jobs_per_layer\": %.2f, \"ffn_jobs_per_layer\": %.2f, "
	       "\"copy_jobs_per_layer\": 2, \"chained\": %s, \"waits_per_layer\": %d, "
	       "\"ioctls_per_layer\": %.2f}, ",
	       (double)jobs / (double)layers, (double)n_ffn_total / (double)layers,
	       chain ? "true" : "false", chain ? 1 : 3,
	       (double)(k->n_ioctls - ioctls0) / (double)layers);
	printf("\"measured\": {\"wall_s\": %.6f, \"jobs_per_sec\": %.1f, \"layers_per_sec\": %.2f}, ",
	       t1 - t0, (double)jobs / (t1 - t0), (double)layers / (t1 - t0));
	printf("\"modeled\": {\"dma_bytes_per_sec\": %llu}, ",
	       (unsigned long long)k->info.dma_bytes_per_sec);
	printf("\"note\": \"%s\"}\n",
	       k->info.backend == HMOE_BACKEND_EMU
		       ? "emulated card: times are emulation speed, not a card's; the counts are the result"
		       : "real card");
out:
	free(L.ffn_jobs);
	hmoe_kmod_bo_free(k, &yh);
	hmoe_kmod_bo_free(k, &yc);
	hmoe_kmod_bo_free(k, &xc);
	hmoe_kmod_bo_free(k, &xh);
	hmoe_kmod_bo_free(k, &w);
	return ret;
}

int bench_kmod(int argc, char **argv)
{
	struct hmoe_kmod k = { .fd = -1 };
	struct cli_args a;
	int ret;

	ret = cli_parse(&a, "bench kmod", flags, N_FLAGS, argc, argv);
	if (ret)
		return cli_fail(ret);
	if (cli_has(&a, "help")) {
		cli_usage("bench kmod", "MoE layers through hmoe.ko: jobs/s and ioctls per layer",
			  flags, N_FLAGS);
		cli_free(&a);
		return 0;
	}
	ret = run(&k, &a);
	hmoe_kmod_close(&k);
	cli_free(&a);
	return ret ? cli_fail(ret) : 0;
}
