/* bench_experts: `hmoe bench experts`: one MoE layer's routed experts at DeepSeek-V3's
 * real dims (dim 7168, inter 2048, 256 experts, top-8) through the fixed-point CPU path
 * (hmoe_fxp_moe_run, per kernel mode: fp8, int8, int4 with two activation planes, and
 * int8-a8, fp8-a8 with one for comparison) and through the fp32 reference backend
 * (cpu-f32), for 1, 4, 16, 64 and 256 tokens.
 *
 * Reported per (format, tokens), all measured in this run:
 *   weight_bytes      bytes of every touched expert's weights (each read once: the
 *                     minimum a layer must stream), from the pack geometry
 *   bw_ratio          weight_bytes / seconds (best run) over this machine's read
 *                     bandwidth (best probe pass) measured interleaved with the point's
 *                     runs: 2 probe passes before, one after each timed run, 2 after
 *                     (256 MiB, 8- and 64-byte loads alternately): a shared VM's
 *                     bandwidth moves by 2x within minutes, so both bests must come from
 *                     the same window; the decode target is 0.85. bw_ratio_start is the
 *                     same over the longer probe at the start of the run
 *   int_ops_per_s     2 * 3 * dim * inter * (token, expert) pairs / seconds (one
 *                     multiply-add per weight and token, whatever the planes: A16's
 *                     two int8 products per weight count as one)
 *   pairs_by_expert_tokens  the routing's (token, expert) pairs by how many tokens their
 *                     expert got in the call (1, 2-4, 5-11, 12+), which decides the CPU
 *                     kernels' path
 *   work_item_rows    (fixed-point points) rows of W1 and W3, and of W2, per work item
 *                     of the driver's layer calls (one_token_items and
 *                     one_token_items_int4, top level: the plan's scales for one-token
 *                     int8 and int4 calls, HMOE_FXP_ONE_TOKEN_ITEMS[_INT4])
 *   fp8_codes, fp8_lists  (top level) the fp8 packs' codes (--fp8-codes), and whether the
 *                     variant's four-row fp8 kernel takes remainder lists on this CPU;
 *                     fp8_a8_lists (top level) whether one-token fp8-a8 calls use them
 *                     (the plan's fp8_a8_lists: on Zen 5 they take three digits);
 *                     fp8_remainder_lists (fp8 points): resident packs that have them
 *   in_cache_bytes_per_s, in_cache_ratio  (one-token points) the one-token kernels'
 *                     rate with their weights in the cache (hmoe_fxp_hot_rate), and over
 *                     read_bw_around: below 1 the cores, not the memory, bound the call
 *   pattern_bytes_per_s, pattern_read_bw_around, pattern_ratio, kernel_pattern_ratio
 *                     (one-token points where the variant has four-row kernels: AVX-512,
 *                     fp8 with VBMI) the same layer calls with bench_rows4_touch in place
 *                     of row_acc4 (the rows' lines read as the kernels read them, with
 *                     their prefetches, no arithmetic), alternating with the kernels'
 *                     own calls (pattern_pairs): its rate over the probe around the
 *                     pairs (what the driver and the access pattern allow), and the
 *                     kernels' rate over it from the same pairs (how much they keep)
 * Modeled, and said so in the JSON: routing (seeded; per token 8 distinct experts drawn
 * with lognormal popularity, as a trained router's load imbalance) and residency: only
 * `resident` packs per mode are in memory (--experts; by default enough to fill the DRAM
 * footprint, at least 1 GiB and 8 times the largest cache, and at least 16); the touched
 * experts map onto them in order of first use, starting each call where the last one
 * stopped, so that consecutive calls stream different memory and a server's large L3
 * cannot serve a repeated call. Up to `resident` touched experts are distinct memory; the
 * rest re-stream packs of the same call.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hmoe_bench.h"
#include "hmoe_cli.h"
#include "hmoe_err.h"
#include "hmoe_expert.h"
#include "hmoe_fxp_cpu.h"
#include "hmoe_fxp_pack.h"
#include "hmoe_num.h"
#include "hmoe_pool.h"

#define DIM 7168
#define INTER 2048
#define N_EXPERTS 256
#define TOP_K 8

static const struct cli_flag flags[] = {
	{ "tokens", 1, "--tokens LIST      token counts (default 1,4,16,64,256)" },
	{ "formats", 1, "--formats LIST     kernel modes (default fp8,int8,int4,int8-a8,fp8-a8)" },
	{ "experts", 1, "--experts N        resident fixed-point experts per mode (default: 1 GiB and 8x\n"
			"                     the largest cache, at most a third of the available\n"
			"                     memory, at least 16; 45 MB each for fp8/int8)" },
	{ "f32-experts", 1, "--f32-experts N    resident fp32 experts (default: as --experts, at least 8;\n"
			    "                     176 MB each; 0: skip)" },
	{ "min-time", 1, "--min-time S       seconds of repetitions per point (default 1)" },
	{ "bw-mib", 1, "--bw-mib N         buffer of the first bandwidth probe (default: the DRAM\n"
		       "                     footprint of --experts' default)" },
	{ "threads", 1, "--threads N        worker threads (default: all CPUs)" },
	{ "seed", 1, "--seed N           routing seed (default 1)" },
	{ "fp8-codes", 1, "--fp8-codes KIND   fp8 weights: checkpoint (default: codes of a block-scaled\n"
			  "                     Gaussian, as DeepSeek's) or uniform (random bytes)" },
	{ "json", 0, "--json             JSON output (the only format)" },
	{ "help", 0, "--help             this text" },
};

static uint64_t rng_state;

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static double uniform(void)
{
	return ((rng_next(&rng_state) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

/* Per token TOP_K distinct experts, drawn by Gumbel-top-k over log popularity. */
static void make_routing(int *ids, int n_tokens, const double *log_pop)
{
	for (int t = 0; t < n_tokens; t++) {
		double key[N_EXPERTS];

		for (int e = 0; e < N_EXPERTS; e++)
			key[e] = log_pop[e] - log(-log(uniform()));
		for (int k = 0; k < TOP_K; k++) {
			int best = 0;

			for (int e = 1; e < N_EXPERTS; e++)
				if (key[e] > key[best])
					best = e;
			ids[t * TOP_K + k] = best;
			key[best] = -INFINITY;
		}
	}
}

/* Numbers the touched experts in order of first use (slot[e] = -1 for untouched);
 * returns how many there are. A call maps number k onto resident copy
 * (k + rotation) % resident. */
static int assign_slots(const int *ids, int n_pairs, int *slot)
{
	int touched = 0;

	for (int e = 0; e < N_EXPERTS; e++)
		slot[e] = -1;
	for (int p = 0; p < n_pairs; p++)
		if (slot[ids[p]] < 0)
			slot[ids[p]] = touched++;
	return touched;
}

/* Memory the kernel says is available (MemAvailable), else the free pages; 0 unknown. */
static size_t mem_available(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[128];
	unsigned long kb = 0;
	long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);

	if (f) {
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "MemAvailable: %lu kB", &kb) == 1)
				break;
		fclose(f);
	}
	if (kb)
		return (size_t)kb << 10;
	return pages > 0 && page > 0 ? (size_t)pages * (size_t)page : 0;
}

/* What must stream from DRAM: 1 GiB, or 8 times the largest cache where that is more,
 * so that at most about an eighth of it can be served from a cache; but no more than a
 * third of `avail`, the memory available at the start (the run holds about 1.5 times
 * the footprint: the packs and the probe), and at least 256 MiB, so that a small board
 * still runs the default. */
static size_t dram_footprint(size_t avail)
{
	size_t llc8 = 8 * bench_llc_bytes(), avail3 = avail / 3;
	size_t fp = llc8 > ((size_t)1 << 30) ? llc8 : (size_t)1 << 30;

	if (avail3 && fp > avail3)
		fp = avail3 > ((size_t)256 << 20) ? avail3 : (size_t)256 << 20;
	return fp;
}

/* Resident copies of `bytes` each that fill `footprint`, at least `least`, at most the
 * 256 experts. */
static long auto_resident(size_t bytes, size_t footprint, long least)
{
	long n = (long)((footprint + bytes - 1) / bytes);

	n = n < least ? least : n;
	return n > N_EXPERTS ? N_EXPERTS : n;
}

/* Which resident copy each touched expert uses in a call: number k (assign_slots) maps
 * onto copy (k + rotation) % resident, and each call starts where the last one stopped. */
struct rotation {
	const int *slot;                    /* assign_slots */
	int resident, touched, next;
};

/* Expert e's copy in this call (e touched). */
static int rotation_copy(const struct rotation *r, int e)
{
	return (r->slot[e] + r->next) % r->resident;
}

static void rotation_advance(struct rotation *r)
{
	r->next = (r->next + r->touched) % r->resident;
}

/* One layer call through the fixed-point path, on the next resident copies. */
struct fxp_call {
	struct hmoe_fxp_experts *ex;
	const struct hmoe_fxp_line **packs; /* ex->packs, [N_EXPERTS] */
	void *const *bufs;                  /* the resident packs */
	const struct hmoe_fxp_fp8_fix **fixes;        /* ex->fixes, [N_EXPERTS], or NULL */
	struct hmoe_fxp_fp8_fix *const *fix_bufs;     /* the resident packs' lists */
	struct rotation rot;
	const struct hmoe_fxp_simd *simd;
	struct hmoe_pool *pool;
	struct hmoe_fxp_ws **ws;
	int tokens;
	const float *x;
	const int *ids;
	float *y;
};

static int fxp_call_run(void *arg)
{
	struct fxp_call *c = arg;

	for (int e = 0; e < N_EXPERTS; e++) {
		c->packs[e] = c->rot.slot[e] < 0 ? NULL : c->bufs[rotation_copy(&c->rot, e)];
		if (c->fixes)
			c->fixes[e] = c->rot.slot[e] < 0 ? NULL
				      : c->fix_bufs[rotation_copy(&c->rot, e)];
	}
	rotation_advance(&c->rot);
	return hmoe_fxp_moe_run(c->ex, c->simd, c->pool, c->ws, c->tokens, TOP_K, c->x, c->ids,
				c->y);
}

/* The same for the fp32 reference: the model's experts alias resident copies (three
 * buffers each: w1, w3, w2). */
struct f32_call {
	struct hmoe_mlp *mlps;
	void *const *bufs;
	struct rotation rot;
	struct hmoe_expert_backend *backend;
	struct hmoe_expert_batch *batch;
};

static void f32_call_map(struct f32_call *c)
{
	for (int e = 0; e < N_EXPERTS; e++) {
		int s = c->rot.slot[e] < 0 ? 0 : rotation_copy(&c->rot, e);

		c->mlps[e].w1 = (struct hmoe_linear){ .out = INTER, .in = DIM, .w = c->bufs[3 * s] };
		c->mlps[e].w3 = (struct hmoe_linear){ .out = INTER, .in = DIM,
						      .w = c->bufs[3 * s + 1] };
		c->mlps[e].w2 = (struct hmoe_linear){ .out = DIM, .in = INTER,
						      .w = c->bufs[3 * s + 2] };
	}
}

static int f32_call_run(void *arg)
{
	struct f32_call *c = arg;

	f32_call_map(c);
	rotation_advance(&c->rot);
	return c->backend->ops->run(c->backend, c->batch);
}

struct fill_job {
	void **bufs;
	size_t bytes;
	int format;      /* -1: fp32 weights */
	const uint8_t *fp8_codes;  /* NULL: random bytes; else 65536 codes to draw from */
	struct hmoe_fxp_fp8_fix **fixes;  /* NULL, or each pack's remainder lists (fp8) */
};

/* fp8 codes as a checkpoint has them: DeepSeek's 128x128 blocks scale their largest
 * weight to 448, so a Gaussian block of 16384 weights (largest about 4.2 sigma) has sigma
 * about 107 in e4m3 units. codes[u] for a uniform 16-bit u: the inverse of the code
 * distribution of 2^20 such weights rounded to e4m3. About 1 code in 1,000 then has
 * |q| & 3 != 0 (the two-byte kernel's remainders, below 1/16); uniformly random bytes
 * have 1 in 8, and 2 NaN codes in 256, which no checkpoint holds. */
static void fp8_checkpoint_codes(uint8_t *codes)
{
	enum { N = 1 << 20 };
	static unsigned count[256];
	uint64_t s = 0x2545f4914f6cdd1dull;
	long cum = 0;
	int u = 0;

	memset(count, 0, sizeof(count));
	for (int i = 0; i < N; i++) {
		double u1 = ((rng_next(&s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
		double u2 = ((rng_next(&s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
		double v = sqrt(-2 * log(u1)) * cos(2 * M_PI * u2) * (448 / 4.2);

		count[hmoe_f32_to_fp8_e4m3((float)(v > 448 ? 448 : v < -448 ? -448 : v))]++;
	}
	for (int c = 0; c < 256; c++) {
		cum += count[c];
		for (; u < (int)((cum << 16) / N); u++)
			codes[u] = (uint8_t)c;
	}
}

/* Random weights with valid scale words: the bench measures speed, values only need to
 * be in the ranges the contract allows (fp8: the codes' distribution can matter, see
 * fp8_checkpoint_codes). */
static void fill_one(void *arg, long i, int thread)
{
	struct fill_job *j = arg;
	uint64_t s = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
	uint64_t *w = j->bufs[i];

	(void)thread;
	if (j->format < 0) {
		float *f = j->bufs[i];

		for (size_t k = 0; k < j->bytes / sizeof(float); k++)
			f[k] = (float)((int64_t)(rng_next(&s) >> 40) - (1 << 23)) * 1.5e-9f;
		return;
	}
	for (size_t k = 0; k < j->bytes / 8; k++) {
		if (j->fp8_codes) {
			uint64_t a = rng_next(&s), b = rng_next(&s), v = 0;

			for (int c = 0; c < 4; c++)
				v |= (uint64_t)j->fp8_codes[a >> (16 * c) & 0xffff] << (8 * c) |
				     (uint64_t)j->fp8_codes[b >> (16 * c) & 0xffff] << (8 * c + 32);
			w[k] = v;
		} else {
			w[k] = rng_next(&s);
		}
	}
	/* scale words: every row record starts with them */
	for (int lin = 0; lin < 3; lin++) {
		int out = lin < 2 ? INTER : DIM, in = lin < 2 ? DIM : INTER;
		size_t row = (size_t)hmoe_fxp_row_lines(j->format, in) * HMOE_FXP_LINE_BYTES;
		uint8_t *base = (uint8_t *)j->bufs[i] +
				(lin ? (size_t)hmoe_fxp_linear_lines(j->format, INTER, DIM) *
					       HMOE_FXP_LINE_BYTES * (lin == 2 ? 2 : 1) : 0);

		for (int n = 0; n < out; n++)
			for (int g = 0; g < hmoe_fxp_groups(in); g++) {
				int32_t sw = hmoe_fxp_scale_word(32768 + (uint32_t)(rng_next(&s) & 32767),
								 j->format == HMOE_FXP_FP8 ? 40 : 28);

				memcpy(base + n * row + 4 * g, &sw, 4);
			}
	}
	if (j->fixes)
		j->fixes[i] = hmoe_fxp_fp8_fix_build(j->bufs[i], DIM, INTER,
						     HMOE_FXP_FP8_FIX_LIMIT(DIM, INTER));
}

struct point {
	double seconds, weight_bytes;
	double bw_around;  /* read bandwidth probed around the point, bytes/s */
	int reps, touched;
	int resident;      /* resident copies the touched experts rotate over */
	int tile_pairs[4]; /* bench_expert_tokens of the point's routing */
	int lists;         /* fp8 modes: resident packs with remainder lists; else -1 */
	double first_pass; /* bytes/s of the first pass over fresh copies (first_pass), or 0 */
	int item_rows[2];  /* fixed-point modes: the driver's work items (up, down rows); else 0 */
};

/* The first pass over freshly filled resident copies: the point's calls (run(call), on
 * rot's copies) until every copy has been read once, as the first tokens after loading
 * a model read its weights. Sets pt->first_pass. */
static int first_pass(struct point *pt, const struct rotation *rot, int (*run)(void *),
		      void *call)
{
	int calls = (rot->resident + rot->touched - 1) / rot->touched, ret;
	double t0 = hmoe_now_s();

	for (int c = 0; c < calls; c++)
		if ((ret = run(call)))
			return ret;
	pt->first_pass = calls * pt->weight_bytes / (hmoe_now_s() - t0);
	return 0;
}

void bench_expert_tokens(const int *ids, int n_pairs, int n_experts, int pairs[4])
{
	int *count = calloc((size_t)n_experts, sizeof(*count));

	pairs[0] = pairs[1] = pairs[2] = pairs[3] = 0;
	if (!count)
		return;
	for (int p = 0; p < n_pairs; p++)
		count[ids[p]]++;
	for (int e = 0; e < n_experts; e++) {
		int c = count[e];

		if (c)
			pairs[c == 1 ? 0 : c <= 4 ? 1 : c < 12 ? 2 : 3] += c;
	}
	free(count);
}

/* The best of `passes` probe passes and `best`. */
static double probe_best(struct bench_probe *probe, int passes, double best)
{
	for (int i = 0; i < passes; i++) {
		double b = bench_probe_pass(probe);

		best = b > best ? b : best;
	}
	return best;
}

/* Runs call until min_time has passed (at least 1, at most 10 timed runs after a
 * warm-up); the best time counts. A warm-up longer than 4 * min_time is the measurement
 * (reps 0): at large batches the page faults it includes are < 1% of it. */
#define TIME_IT(pt, min_time, call)                                                     \
	do {                                                                            \
		double t_total = 0, t_warm = hmoe_now_s();                               \
		(pt).bw_around = probe_best(probe, 2, 0);                               \
		if ((ret = (call)))                                                     \
			goto out;                                                       \
		(pt).seconds = hmoe_now_s() - t_warm;                                    \
		if ((pt).seconds > 4 * (min_time)) {                                    \
			(pt).reps = 0;                                                  \
			(pt).bw_around = probe_best(probe, 2, (pt).bw_around);          \
			break;                                                          \
		}                                                                       \
		(pt).seconds = 1e30;                                                    \
		for ((pt).reps = 0; (pt).reps < 10 && (t_total < (min_time) || !(pt).reps); \
		     (pt).reps++) {                                                     \
			double t0 = hmoe_now_s(), dt;                                    \
			if ((ret = (call)))                                             \
				goto out;                                               \
			dt = hmoe_now_s() - t0;                                          \
			t_total += dt;                                                  \
			if (dt < (pt).seconds)                                          \
				(pt).seconds = dt;                                      \
			(pt).bw_around = probe_best(probe, 1, (pt).bw_around);          \
		}                                                                       \
		(pt).bw_around = probe_best(probe, 2, (pt).bw_around);                  \
	} while (0)

/* The point's layer calls with the kernels and over their read pattern alone (touch:
 * bench_rows4_touch in place of row_acc4), one of each in turn until min_time has passed
 * (3 to 10 pairs), so that the two rates come from the same minutes of a shared machine:
 * the best of each, and the best probe pass around them. */
struct pattern {
	double kernel_s, touch_s, bw_around;
};

static int pattern_pairs(struct fxp_call *call, const struct hmoe_fxp_simd *touch,
			 double min_time, struct bench_probe *probe, struct pattern *pat)
{
	const struct hmoe_fxp_simd *kernels = call->simd;
	double t_total = 0;
	int ret = 0;

	pat->kernel_s = pat->touch_s = 1e30;
	pat->bw_around = probe_best(probe, 2, 0);
	for (int n = 0; n < 10 && (n < 3 || t_total < min_time); n++) {
		for (int k = 0; k < 2; k++) {
			double t0 = hmoe_now_s(), dt;
			double *best = k ? &pat->touch_s : &pat->kernel_s;

			call->simd = k ? touch : kernels;
			ret = fxp_call_run(call);
			call->simd = kernels;
			if (ret)
				return ret;
			dt = hmoe_now_s() - t0;
			t_total += dt;
			*best = dt < *best ? dt : *best;
		}
	}
	pat->bw_around = probe_best(probe, 2, pat->bw_around);
	return 0;
}

/* One result; mode < 0: the fp32 reference. pat: the point's calls against their read
 * pattern alone (pattern_pairs), or NULL. */
static void print_point(int mode, int tokens, const struct point *pt, double bw, int first,
			double hot, const struct pattern *pat)
{
	double pairs = (double)tokens * TOP_K;
	static const char *const weight_names[HMOE_FXP_N_FORMATS] = { "fp8", "int8", "int4" };

	printf("%s{\"format\": \"%s\", \"weight_format\": \"%s\", \"activation_planes\": %d, "
	       "\"tokens\": %d, \"experts_touched\": %d, \"resident\": %d, "
	       "\"seconds\": %.6f, \"reps\": %d, \"weight_bytes\": %.0f, "
	       "\"weight_bytes_per_s\": %.4g, \"read_bw_around\": %.4g, \"bw_ratio\": %.3f, "
	       "\"bw_ratio_start\": %.3f, \"%s\": %.4g, \"pairs_by_expert_tokens\": "
	       "{\"1\": %d, \"2-4\": %d, \"5-11\": %d, \"12+\": %d}",
	       first ? "" : ", ", mode < 0 ? "f32" : hmoe_fxp_format_name(mode),
	       mode < 0 ? "f32" : weight_names[hmoe_fxp_mode_format(mode)],
	       mode < 0 ? 0 : hmoe_fxp_mode_planes(mode), tokens, pt->touched, pt->resident,
	       pt->seconds, pt->reps,
	       pt->weight_bytes, pt->weight_bytes / pt->seconds, pt->bw_around,
	       pt->bw_around > 0 ? pt->weight_bytes / pt->seconds / pt->bw_around : 0.0,
	       bw > 0 ? pt->weight_bytes / pt->seconds / bw : 0.0,
	       mode >= 0 ? "int_ops_per_s" : "flops_per_s",
	       2.0 * 3 * DIM * INTER * pairs / pt->seconds, pt->tile_pairs[0], pt->tile_pairs[1],
	       pt->tile_pairs[2], pt->tile_pairs[3]);
	if (pt->lists >= 0)
		printf(", \"fp8_remainder_lists\": %d", pt->lists);
	if (pt->item_rows[0] > 0)
		printf(", \"work_item_rows\": [%d, %d]", pt->item_rows[0], pt->item_rows[1]);
	if (pt->first_pass > 0)
		printf(", \"first_pass_bytes_per_s\": %.4g, \"first_pass_ratio\": %.3f",
		       pt->first_pass, bw > 0 ? pt->first_pass / bw : 0.0);
	if (hot > 0)
		printf(", \"in_cache_bytes_per_s\": %.4g, \"in_cache_ratio\": %.3f", hot,
		       pt->bw_around > 0 ? hot / pt->bw_around : 0.0);
	if (pat) {
		double rate = pt->weight_bytes / pat->touch_s;

		printf(", \"pattern_bytes_per_s\": %.4g, \"pattern_read_bw_around\": %.4g, "
		       "\"pattern_ratio\": %.3f, \"kernel_pattern_ratio\": %.3f", rate,
		       pat->bw_around, pat->bw_around > 0 ? rate / pat->bw_around : 0.0,
		       pat->touch_s / pat->kernel_s);
	}
	printf("}");
}

int bench_experts(int argc, char **argv)
{
	const int n_flags = (int)(sizeof(flags) / sizeof(flags[0]));
	static const int default_tokens[] = { 1, 4, 16, 64, 256 };
	struct cli_args a;
	struct hmoe_pool *pool = NULL;
	struct bench_probe *probe = NULL;
	int *tokens = NULL, n_tokens_list = 0, ret, first = 1, slot[N_EXPERTS], *ids = NULL;
	int modes[HMOE_FXP_N_FORMATS * HMOE_FXP_MAX_PLANES], n_modes = 0;
	long resident, f32_resident, threads, seed, bw_mib;
	size_t avail = mem_available(), footprint = dram_footprint(avail);
	double min_time, bw, log_pop[N_EXPERTS];
	void *bufs[1024] = { 0 };
	void *arena = NULL;  /* the resident copies of the mode or fp32 being measured */
	size_t arena_bytes = 0, stride;
	static struct hmoe_fxp_fp8_fix *fix_bufs[1024];
	static uint8_t fp8_codes[1 << 16];
	int checkpoint_codes = 1;
	float *x = NULL, *y = NULL;
	const struct hmoe_fxp_simd *simd = hmoe_fxp_simd_best();
	const struct hmoe_fxp_plan *pf;
	struct hmoe_layer layer = { 0 };
	struct hmoe_model model = { 0 };
	struct hmoe_mlp *mlps = NULL;
	struct hmoe_expert_backend *f32 = NULL;
	struct hmoe_fxp_ws *ws = NULL;

	ret = cli_parse(&a, "bench experts", flags, n_flags, argc, argv);
	if (ret)
		return cli_fail(ret);
	if (cli_has(&a, "help")) {
		cli_usage("bench experts", "One MoE layer's routed experts at DeepSeek-V3 dims: "
			  "fixed point per format vs fp32 (JSON).", flags, n_flags);
		cli_free(&a);
		return 0;
	}
	/* resident -1 / f32_resident -1: sized per mode from the DRAM footprint */
	if ((ret = cli_int(&a, "experts", -1, 1, 256, &resident)) ||
	    (ret = cli_int(&a, "f32-experts", -1, 0, 256, &f32_resident)) ||
	    (ret = cli_int(&a, "threads", 0, 0, 1024, &threads)) ||
	    (ret = cli_int(&a, "seed", 1, 0, 1L << 30, &seed)) ||
	    (ret = cli_int(&a, "bw-mib", (long)(footprint >> 20), 16, 1 << 16, &bw_mib)) ||
	    (ret = cli_float(&a, "min-time", 1.0, 0, 600, &min_time)))
		goto out;
	{
		const char *kind = cli_str(&a, "fp8-codes", "checkpoint");

		if (strcmp(kind, "checkpoint") && strcmp(kind, "uniform")) {
			ret = hmoe_err(HMOE_EINPUT, "bench experts: --fp8-codes %s: expected "
				       "checkpoint or uniform", kind);
			goto out;
		}
		checkpoint_codes = !strcmp(kind, "checkpoint");
		if (checkpoint_codes)
			fp8_checkpoint_codes(fp8_codes);
	}
	if (cli_has(&a, "tokens")) {
		if ((ret = cli_int_list(&a, "tokens", &tokens, &n_tokens_list)))
			goto out;
		for (int i = 0; i < n_tokens_list; i++)
			if (tokens[i] < 1 || tokens[i] > 4096) {
				ret = hmoe_err(HMOE_EINPUT, "bench experts: --tokens %d is not in "
					       "[1, 4096]", tokens[i]);
				goto out;
			}
	} else {
		n_tokens_list = 5;
		tokens = malloc(sizeof(default_tokens));
		if (!tokens) {
			ret = hmoe_err(HMOE_ENOMEM, "out of memory");
			goto out;
		}
		memcpy(tokens, default_tokens, sizeof(default_tokens));
	}
	{
		const char *arg = cli_str(&a, "formats", "fp8,int8,int4,int8-a8,fp8-a8");
		char list[128];
		char *save = NULL;
		const int max_modes = (int)(sizeof(modes) / sizeof(modes[0]));

		if (strlen(arg) >= sizeof(list)) {
			ret = hmoe_err(HMOE_EINPUT, "bench experts: --formats is too long");
			goto out;
		}
		snprintf(list, sizeof(list), "%s", arg);
		for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			if (n_modes == max_modes) {
				ret = hmoe_err(HMOE_EINPUT, "bench experts: --formats lists more than %d "
					       "modes", max_modes);
				goto out;
			}
			if ((ret = hmoe_fxp_format_parse(tok, &modes[n_modes++])))
				goto out;
		}
		if (!n_modes) {
			ret = hmoe_err(HMOE_EINPUT, "bench experts: --formats lists no mode");
			goto out;
		}
	}
	if ((ret = hmoe_pool_create(&pool, (int)threads)))
		goto out;
	bw = bench_read_bandwidth((size_t)bw_mib << 20, 5, hmoe_pool_threads(pool));
	/* the interleaved probe: half the footprint, at least 256 MiB (a cache that kept some
	 * of it would raise the yardstick, never the ratio) */
	probe = bench_probe_open(footprint / 2 > ((size_t)256 << 20) ? footprint / 2
				 : (size_t)256 << 20, hmoe_pool_threads(pool));
	if (!probe) {
		ret = hmoe_err(HMOE_ENOMEM, "bench experts: out of memory for the bandwidth probe");
		goto out;
	}

	rng_state = 0x853c49e6748fea9bull ^ (uint64_t)seed;
	for (int e = 0; e < N_EXPERTS; e++) {
		double u1 = uniform(), u2 = uniform();

		log_pop[e] = 0.7 * sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
	}
	{
		int max_tokens = 0;

		for (int i = 0; i < n_tokens_list; i++)
			max_tokens = tokens[i] > max_tokens ? tokens[i] : max_tokens;
		ids = malloc(sizeof(*ids) * max_tokens * TOP_K);
		x = malloc(sizeof(*x) * max_tokens * DIM);
		y = malloc(sizeof(*y) * (size_t)max_tokens * TOP_K * DIM);
		if (!ids || !x || !y) {
			ret = hmoe_err(HMOE_ENOMEM, "bench experts: out of memory for %d tokens",
				       max_tokens);
			goto out;
		}
		for (int i = 0; i < max_tokens * DIM; i++)
			x[i] = (float)(uniform() * 2 - 1) * (i % DIM == 5 ? 30 : 1);
	}

	printf("{\"bench\": \"experts\", ");
	bench_json_machine(stdout);
	{
		/* the load others put on this machine while it ran, for reading the numbers */
		FILE *la = fopen("/proc/loadavg", "r");
		double l1 = -1;

		if (la) {
			if (fscanf(la, "%lf", &l1) != 1)
				l1 = -1;
			fclose(la);
		}
		printf("\"load_average_1min_at_start\": %.2f, ", l1);
	}
	pf = hmoe_fxp_plan();
	printf("\"dims\": {\"dim\": %d, \"inter\": %d, \"experts\": %d, \"top_k\": %d}, "
	       "\"threads\": %d, \"fxp_variant\": \"%s\", \"mem_available_bytes\": %zu, "
	       "\"dram_footprint_bytes\": %zu, "
	       "\"read_bandwidth_bytes_per_s\": %.4g, \"fp8_codes\": \"%s\", "
	       "\"fp8_lists\": %s, \"prefetch\": {\"fp8\": %s, \"rows4\": [%d, %d], "
	       "\"fp8_rows4\": [%d, %d]}, \"fp8_lookup\": \"%s\", \"one_token_items\": %d, "
	       "\"one_token_items_int4\": %d, \"fp8_a8_lists\": %s, "
	       "\"target_bw_ratio_1_token\": 0.85, \"results\": [",
	       DIM, INTER, N_EXPERTS, TOP_K, hmoe_pool_threads(pool), simd->name, avail, footprint,
	       bw, checkpoint_codes ? "checkpoint" : "uniform",
	       hmoe_fxp_simd_fp8_lists(simd) ? "true" : "false", pf->fp8 ? "true" : "false",
	       pf->rows4[0], pf->rows4[1], pf->fp8_rows4[0], pf->fp8_rows4[1],
	       pf->fp8_permi2b ? "vpermi2b" : "vpermb", pf->one_token_items,
	       pf->one_token_items_int4,
	       hmoe_fxp_simd_fp8_lists(simd) && pf->fp8_a8_lists ? "true" : "false");
	fflush(stdout);

	for (int f = 0; f < n_modes; f++) {
		int format = hmoe_fxp_mode_format(modes[f]);
		size_t bytes = (size_t)hmoe_fxp_expert_lines(format, DIM, INTER) * HMOE_FXP_LINE_BYTES;
		const struct hmoe_fxp_line *packs[N_EXPERTS];
		const struct hmoe_fxp_fp8_fix *fixes[N_EXPERTS];
		/* fp8 where the variant takes them: each pack's remainder lists, as cpu-fxp has */
		int lists = format == HMOE_FXP_FP8 && hmoe_fxp_simd_fp8_lists(simd);
		struct hmoe_fxp_experts ex = { .mode = modes[f], .dim = DIM, .inter = INTER,
					       .n_experts = N_EXPERTS, .packs = packs,
					       .fixes = lists ? fixes : NULL };
		struct fill_job fj = { bufs, bytes, format,
				       format == HMOE_FXP_FP8 && checkpoint_codes ? fp8_codes : NULL,
				       lists ? fix_bufs : NULL };
		int n_res = (int)(resident > 0 ? resident : auto_resident(bytes, footprint, 16));
		double hot = -1;  /* hmoe_fxp_hot_rate, measured at the 1-token point */
		struct fxp_call call = { .ex = &ex, .packs = packs, .bufs = bufs,
					 .rot = { .slot = slot, .resident = n_res }, .simd = simd, .pool = pool, .ws = &ws,
					 .x = x, .ids = ids, .y = y, .fixes = lists ? fixes : NULL,
					 .fix_bufs = fix_bufs };

		/* the packs in one arena, as cpu-fxp keeps them */
		stride = hmoe_model_weights_stride(bytes);
		arena_bytes = stride * n_res;
		if (!(arena = hmoe_model_weights_alloc(arena_bytes))) {
			ret = hmoe_err(HMOE_ENOMEM, "bench experts: out of memory for %d resident %s "
				       "experts (%zu bytes each)", n_res,
				       hmoe_fxp_format_name(modes[f]), bytes);
			goto out;
		}
		for (int r = 0; r < n_res; r++) {
			bufs[r] = (uint8_t *)arena + stride * r;
			hmoe_model_weights_guard(bufs[r], bytes);
		}
		hmoe_pool_run(pool, n_res, fill_one, &fj);
		for (int i = 0; i < n_tokens_list; i++) {
			struct point pt;
			struct pattern pat;
			int has_pat;

			rng_state = 0x853c49e6748fea9bull ^ (uint64_t)(seed + tokens[i]);
			make_routing(ids, tokens[i], log_pop);
			pt.touched = assign_slots(ids, tokens[i] * TOP_K, slot);
			pt.resident = n_res;
			pt.lists = format == HMOE_FXP_FP8 ? 0 : -1;
			for (int r = 0; r < n_res && format == HMOE_FXP_FP8; r++)
				pt.lists += fix_bufs[r] != NULL;
			bench_expert_tokens(ids, tokens[i] * TOP_K, N_EXPERTS, pt.tile_pairs);
			call.rot.touched = pt.touched;
			call.tokens = tokens[i];
			pt.weight_bytes = (double)pt.touched * (double)bytes;
			pt.first_pass = 0;
			if (i == 0 && (ret = first_pass(&pt, &call.rot, fxp_call_run, &call)))
				goto out;
			TIME_IT(pt, min_time, fxp_call_run(&call));
			hmoe_fxp_ws_item_rows(ws, pt.item_rows);
			if (tokens[i] == 1 && hot < 0) {
				/* the first resident copy, as a one-expert layer */
				const struct hmoe_fxp_line *first_pack = bufs[0];
				const struct hmoe_fxp_fp8_fix *first_fix = fix_bufs[0];
				struct hmoe_fxp_experts one = ex;

				one.n_experts = 1;
				one.packs = &first_pack;
				one.fixes = lists ? &first_fix : NULL;
				if ((ret = hmoe_fxp_hot_rate(&one, simd, pool, 0, min_time, &hot)))
					goto out;
			}
			has_pat = tokens[i] == 1 && simd->row_acc4 &&
				  (format != HMOE_FXP_FP8 || hmoe_fxp_simd_fp8_lists(simd));
			if (has_pat) {
				/* the same calls reading the same lines, without the arithmetic */
				struct hmoe_fxp_simd touch = *simd;

				touch.row_acc4 = bench_rows4_touch;
				if ((ret = pattern_pairs(&call, &touch, min_time, probe, &pat)))
					goto out;
			}
			print_point(modes[f], tokens[i], &pt, bw, first, tokens[i] == 1 ? hot : 0,
				    has_pat ? &pat : NULL);
			first = 0;
			fflush(stdout);
		}
		for (int r = 0; r < n_res; r++) {
			bufs[r] = NULL;
			hmoe_fxp_fp8_fix_free(fix_bufs[r]);
			fix_bufs[r] = NULL;
		}
		hmoe_model_weights_free(arena, arena_bytes);
		arena = NULL;
	}

	if (f32_resident != 0) {
		size_t lin = (size_t)DIM * INTER * sizeof(float);
		struct fill_job fj = { bufs, lin, -1, NULL, NULL };
		struct hmoe_expert_batch batch = { .layer = 0, .top_k = TOP_K, .x = x, .y = y,
						   .expert_ids = ids };
		struct f32_call call = { .bufs = bufs, .rot = { .slot = slot }, .batch = &batch };

		if (f32_resident < 0)
			f32_resident = auto_resident(3 * lin, footprint, 8);
		call.rot.resident = (int)f32_resident;

		/* A one-layer model whose experts alias the resident fp32 weights. */
		mlps = calloc(N_EXPERTS, sizeof(*mlps));
		if (!mlps) {
			ret = hmoe_err(HMOE_ENOMEM, "bench experts: out of memory");
			goto out;
		}
		/* on 2 MiB pages, as the model's fp32 arena */
		stride = hmoe_model_weights_stride(lin);
		arena_bytes = 3 * stride * f32_resident;
		if (!(arena = hmoe_model_weights_alloc(arena_bytes))) {
			ret = hmoe_err(HMOE_ENOMEM, "bench experts: out of memory for %ld fp32 "
				       "experts (%zu bytes each)", f32_resident, 3 * lin);
			goto out;
		}
		for (int r = 0; r < 3 * f32_resident; r++) {
			bufs[r] = (uint8_t *)arena + stride * r;
			hmoe_model_weights_guard(bufs[r], lin);
		}
		hmoe_pool_run(pool, 3 * f32_resident, fill_one, &fj);
		model.cfg.hidden_size = DIM;
		model.cfg.moe_intermediate_size = INTER;
		model.cfg.n_routed_experts = N_EXPERTS;
		model.cfg.num_experts_per_tok = TOP_K;
		model.cfg.num_hidden_layers = 1;
		model.layers = &layer;
		layer.is_moe = 1;
		layer.experts = mlps;
		for (int i = 0; i < n_tokens_list; i++) {
			struct point pt;

			rng_state = 0x853c49e6748fea9bull ^ (uint64_t)(seed + tokens[i]);
			make_routing(ids, tokens[i], log_pop);
			pt.touched = assign_slots(ids, tokens[i] * TOP_K, slot);
			pt.resident = call.rot.resident;
			pt.lists = -1;
			pt.item_rows[0] = pt.item_rows[1] = 0;
			bench_expert_tokens(ids, tokens[i] * TOP_K, N_EXPERTS, pt.tile_pairs);
			call.mlps = mlps;
			f32_call_map(&call);
			if (!f32 && (ret = hmoe_expert_open(&f32, "cpu-f32", &model, pool)))
				goto out;
			call.backend = f32;
			call.rot.touched = pt.touched;
			batch.n_tokens = tokens[i];
			pt.weight_bytes = (double)pt.touched * 3 * (double)lin;
			pt.first_pass = 0;
			if (i == 0 && (ret = first_pass(&pt, &call.rot, f32_call_run, &call)))
				goto out;
			TIME_IT(pt, min_time, f32_call_run(&call));
			print_point(-1, tokens[i], &pt, bw, first, 0, NULL);
			first = 0;
			fflush(stdout);
		}
	}
	printf("], \"modeled\": \"routing: seeded Gumbel-top-%d over lognormal(0, 0.7) expert "
	       "popularity; residency: the touched experts map onto the resident copies in order "
	       "of first use, each call starting where the last one stopped; weights random in the formats' ranges, "
	       "fp8 codes as --fp8-codes says (checkpoint: a block-scaled Gaussian's)\", \"measured\": \"all "
	       "timings (best of up to 10 after a warm-up; reps 0: the warm-up alone, when it took "
	       "over 4x --min-time); read bandwidth: all threads summing "
	       "a buffer (%ld MiB at the start, best of 5 + 5 passes; %zu MiB interleaved with each "
	       "point's runs), 8-byte and 64-byte loads alternately\"}\n", TOP_K, bw_mib,
	       bench_probe_bytes(probe) >> 20);
	ret = 0;
out:
	if (ret)
		printf("\n");
	hmoe_expert_close(f32);
	hmoe_fxp_ws_free(ws);
	hmoe_model_weights_free(arena, arena_bytes);
	for (size_t r = 0; r < sizeof(bufs) / sizeof(bufs[0]); r++) {
		hmoe_fxp_fp8_fix_free(fix_bufs[r]);
		fix_bufs[r] = NULL;
	}
	free(mlps);
	free(ids);
	free(x);
	free(y);
	free(tokens);
	bench_probe_close(probe);
	hmoe_pool_destroy(pool);
	cli_free(&a);
	return ret ? cli_fail(ret) : 0;
}
