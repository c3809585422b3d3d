/* bench_mla: `hmoe bench mla --json`: the GPU's MLA kernels at DeepSeek-V3 dims (128
 * heads, kv_lora 512, rope 64), each against a peer measured in the same run:
 *  - decode (absorbed form over the paged latent cache), batch x context grid: achieved
 *    GB/s = bytes the kernel must read (the cache: batch * context * 576 * 2 bytes, plus
 *    queries, outputs and block table) / time, over a device-to-device cudaMemcpy's
 *    (bytes read + bytes written) / time; also its FLOP/s over a cuBLAS bf16 GEMM's
 *    (4096 x 7168 x 16384) and the roofline ratio (the larger of bytes at the copy's
 *    rate and FLOPs at the GEMM's, over the time): at 128 heads decode does 242 FLOP per
 *    byte, above an H100/H200's ridge, so it is compute-bound and the copy ratio alone
 *    cannot reach 1;
 *  - prefill (causal, naive form, qk 192 / v 128): FLOP/s = 2 * heads * n(n+1)/2 *
 *    (192 + 128) / time, over a cuBLAS bf16 GEMM of similar size (n x 7168 -> 16384,
 *    the shape of the output projection's transpose).
 * The GPU backend is build/libhmoe_cuda.so, opened with dlopen (the CPU build never
 * links CUDA); without it or without a GPU the benchmark fails with one clear line. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/hmoe_cuda.h"
#include "hmoe_bench.h"
#include "hmoe_cli.h"
#include "hmoe_err.h"
#include "hmoe_num.h"

#define MLA_HEADS 128
#define MLA_KV_LORA 512
#define MLA_ROPE 64
#define MLA_D (MLA_KV_LORA + MLA_ROPE)   /* latent values per token per layer */
#define MLA_QK 192
#define MLA_V 128
#define MLA_DIM 7168
#define MLA_PAGE 64                       /* tokens per cache page */

static const struct cli_flag mla_flags[] = {
	{ "json", 0, "--json            JSON on stdout (the only format)" },
	{ "batch", 1, "--batch LIST      decode batch sizes (default 1,16,64,128)" },
	{ "context", 1, "--context LIST    decode context lengths (default 1024,4096,16384)" },
	{ "prefill", 1, "--prefill LIST    prefill lengths (default 1024,4096)" },
	{ "reps", 1, "--reps N          timed repetitions at most (default 20)" },
	{ "device", 1, "--device N        CUDA device (default 0)" },
	{ "version", 1, "--version N       MLA decode kernel version (default: the dispatcher's)" },
	{ "prefill-version", 1, "--prefill-version N  MLA prefill kernel version (default: the "
	  "dispatcher's)" },
	{ "help", 0, "--help            this message" },
};
#define N_MLA_FLAGS ((int)(sizeof(mla_flags) / sizeof(mla_flags[0])))

static const struct hmoe_cuda_api *api;

static int gpu_err(const char *what)
{
	return hmoe_err(HMOE_EDEVICE, "hmoe bench mla: %s: %s", what, api->last_error());
}

/* Fills n bf16 values of device memory with uniform values in [-1, 1) from a 16 MiB
 * host pattern (the values only need to be finite and not all equal). */
static int fill_random_bf16(void *dev, size_t n, uint64_t seed)
{
	const size_t chunk = (size_t)8 << 20;
	uint16_t *h = malloc(chunk * 2);

	if (!h)
		return hmoe_err(HMOE_ENOMEM, "hmoe bench mla: out of memory");
	for (size_t i = 0; i < chunk; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		h[i] = hmoe_f32_to_bf16((float)(seed >> 40) / (float)(1 << 23) - 1.0f);
	}
	for (size_t at = 0; at < n; at += chunk) {
		size_t k = n - at < chunk ? n - at : chunk;

		if (api->h2d((uint16_t *)dev + at, h, k * 2) < 0) {
			free(h);
			return gpu_err("uploading random data");
		}
	}
	free(h);
	return 0;
}

/* Seconds per run of what(), timed with events over reps runs after one warm-up. The
 * number of runs adapts so a point takes about 0.2 s (at least 3, at most max_reps). */
struct timed {
	int (*run)(void *ctx);
	void *ctx;
};

static int time_it(const struct timed *t, int max_reps, double *sec)
{
	float ms = 0;
	int reps;

	if (t->run(t->ctx) < 0 || api->sync() < 0)
		return gpu_err("warm-up run");
	if (api->event_record(0) < 0 || t->run(t->ctx) < 0 || api->event_record(1) < 0 ||
	    api->sync() < 0 || api->elapsed_ms(0, 1, &ms) < 0)
		return gpu_err("timing run");
	reps = ms > 0 ? (int)(200.0 / ms) : max_reps;
	reps = reps < 3 ? 3 : reps > max_reps ? max_reps : reps;
	if (api->event_record(0) < 0)
		return gpu_err("event");
	for (int r = 0; r < reps; r++)
		if (t->run(t->ctx) < 0)
			return gpu_err("timed run");
	if (api->event_record(1) < 0 || api->sync() < 0 || api->elapsed_ms(0, 1, &ms) < 0)
		return gpu_err("timing");
	*sec = (double)ms * 1e-3 / reps;
	return 0;
}

/* ---- the measured operations ---- */

struct copy_ctx { void *dst; const void *src; size_t bytes; };
static int run_copy(void *c_)
{
	struct copy_ctx *c = c_;

	return api->d2d(c->dst, c->src, c->bytes);
}

struct decode_ctx { void *out; const void *q; struct hmoe_cuda_kv_pages kv; int batch, version; };
static int run_decode(void *c_)
{
	struct decode_ctx *c = c_;

	return api->mla_decode(c->out, c->q, &c->kv, c->batch, MLA_HEADS, MLA_KV_LORA, MLA_ROPE,
			       0.13523378f, c->version);
}

struct prefill_ctx { void *out; const void *q, *k, *v; int n, version; };
static int run_prefill(void *c_)
{
	struct prefill_ctx *c = c_;

	return api->mla_prefill(c->out, c->q, c->k, c->v, c->n, MLA_HEADS, MLA_QK, MLA_V,
				0.13523378f, c->version);
}

struct gemm_ctx { void *y; const void *x, *w; int n; };
static int run_gemm(void *c_)
{
	struct gemm_ctx *c = c_;

	return api->gemm_bf16(c->y, 0, c->x, c->w, c->n, MLA_DIM, MLA_HEADS * MLA_V);
}

/* Seconds per cuBLAS bf16 GEMM y (n, 16384) = x (n, 7168) . W^T (the output projection's
 * shape) on fresh random data: the tensor-core peer of the attention kernels. */
static int time_gemm(int n, int reps, double *sec)
{
	void *x = NULL, *w = NULL, *y = NULL;
	struct gemm_ctx g;
	struct timed t = { run_gemm, &g };
	int ret;

	if (api->malloc(&x, (size_t)n * MLA_DIM * 2) < 0 ||
	    api->malloc(&w, (size_t)MLA_HEADS * MLA_V * MLA_DIM * 2) < 0 ||
	    api->malloc(&y, (size_t)n * MLA_HEADS * MLA_V * 2) < 0)
		ret = gpu_err("allocating GEMM buffers");
	else if (!(ret = fill_random_bf16(x, (size_t)n * MLA_DIM, 7)) &&
		 !(ret = fill_random_bf16(w, (size_t)MLA_HEADS * MLA_V * MLA_DIM, 8))) {
		g = (struct gemm_ctx){ y, x, w, n };
		ret = time_it(&t, reps, sec);
	}
	api->free(x), api->free(w), api->free(y);
	return ret;
}

static int max_of(const int *v, int n)
{
	int m = 0;

	for (int i = 0; i < n; i++)
		m = v[i] > m ? v[i] : m;
	return m;
}

static int list_flag(const struct cli_args *a, const char *name, const int *def, int n_def,
		     int **out, int *n)
{
	int ret;

	if (!cli_has(a, name)) {
		*out = malloc(sizeof(int) * (size_t)n_def);
		if (!*out)
			return hmoe_err(HMOE_ENOMEM, "out of memory");
		memcpy(*out, def, sizeof(int) * (size_t)n_def);
		*n = n_def;
		return 0;
	}
	ret = cli_int_list(a, name, out, n);
	if (ret)
		return ret;
	for (int i = 0; i < *n; i++)
		if ((*out)[i] < 1 || (*out)[i] > (1 << 20))
			return hmoe_err(HMOE_EINPUT, "hmoe bench mla: --%s: %d is not in 1..%d", name,
					(*out)[i], 1 << 20);
	return 0;
}

int bench_mla(int argc, char **argv)
{
	static const int def_batch[] = { 1, 16, 64, 128 }, def_ctx[] = { 1024, 4096, 16384 };
	static const int def_pre[] = { 1024, 4096 };
	struct cli_args a;
	int *batches = NULL, *ctxs = NULL, *pres = NULL, nb = 0, nc = 0, np = 0;
	long reps = 20, device = 0, version = HMOE_MLA_DECODE_AUTO;
	long pversion = HMOE_MLA_PREFILL_AUTO;
	void *pages = NULL, *bt = NULL, *lens = NULL, *q = NULL, *out = NULL;
	void *pk = NULL, *pv = NULL, *copy_src = NULL, *copy_dst = NULL;
	int32_t *h_bt = NULL, *h_lens = NULL;
	char why[512], dev[160];
	int ret, n_dev = 0, drv = 0, rt = 0;
	double copy_s = 0, copy_gbps, peak_s = 0, peak_tflops;
	const size_t copy_bytes = (size_t)1 << 30;

	ret = cli_parse(&a, "bench mla", mla_flags, N_MLA_FLAGS, argc, argv);
	if (ret)
		return cli_fail(ret);
	if (cli_has(&a, "help")) {
		cli_usage("bench mla", "MLA decode GB/s and prefill TFLOP/s on the GPU, against "
			  "a device copy and a cuBLAS GEMM measured in the same run",
			  mla_flags, N_MLA_FLAGS);
		cli_free(&a);
		return 0;
	}
	if ((ret = list_flag(&a, "batch", def_batch, 4, &batches, &nb)) ||
	    (ret = list_flag(&a, "context", def_ctx, 3, &ctxs, &nc)) ||
	    (ret = list_flag(&a, "prefill", def_pre, 2, &pres, &np)) ||
	    (ret = cli_int(&a, "reps", 20, 1, 100000, &reps)) ||
	    (ret = cli_int(&a, "device", 0, 0, 1024, &device)) ||
	    (ret = cli_int(&a, "version", HMOE_MLA_DECODE_AUTO, 0, HMOE_MLA_DECODE_COUNT - 1,
			   &version)) ||
	    (ret = cli_int(&a, "prefill-version", HMOE_MLA_PREFILL_AUTO, 0,
			   HMOE_MLA_PREFILL_COUNT - 1, &pversion)))
		goto out;

	api = hmoe_cuda_open(why, sizeof(why));
	if (!api) {
		ret = hmoe_err(HMOE_EDEVICE, "hmoe bench mla: no CUDA backend/device: %s", why);
		goto out;
	}
	if (api->device_count(&n_dev) < 0 || n_dev == 0) {
		ret = hmoe_err(HMOE_EDEVICE, "hmoe bench mla: no CUDA backend/device: %s",
			       api->last_error());
		goto out;
	}
	if (api->init((int)device) < 0 || api->device_name(dev, sizeof(dev)) < 0 ||
	    api->versions(&drv, &rt) < 0) {
		ret = gpu_err("init");
		goto out;
	}
	for (char *p = dev; *p; p++)
		if (*p == '"' || *p == '\\')
			*p = ' ';

	/* ---- peer 1: device-to-device copy of 1 GiB ---- */
	if (api->malloc(&copy_src, copy_bytes) < 0 || api->malloc(&copy_dst, copy_bytes) < 0) {
		ret = gpu_err("allocating the copy buffers");
		goto out;
	}
	if ((ret = fill_random_bf16(copy_src, copy_bytes / 2, 1)))
		goto out;
	{
		struct copy_ctx c = { copy_dst, copy_src, copy_bytes };
		struct timed t = { run_copy, &c };

		if ((ret = time_it(&t, (int)reps, &copy_s)))
			goto out;
	}
	api->free(copy_src), api->free(copy_dst);
	copy_src = copy_dst = NULL;
	copy_gbps = 2.0 * (double)copy_bytes / copy_s * 1e-9;  /* read + write */

	/* ---- peer 2: the tensor-core rate, a cuBLAS bf16 GEMM (4096 x 7168) . (7168 x
	 * 16384): the compute ceiling of decode's roofline ---- */
	if ((ret = time_gemm(4096, (int)reps, &peak_s)))
		goto out;
	peak_tflops = 2.0 * 4096 * (double)MLA_DIM * MLA_HEADS * MLA_V / peak_s * 1e-12;

	printf("{\"bench\": \"mla\", ");
	bench_json_machine(stdout);
	printf("\"gpu\": \"%s\", \"cuda_driver\": %d, \"cuda_runtime\": %d, ", dev, drv, rt);
	printf("\"measured\": \"kernel times by CUDA events, averaged over repetitions after "
	       "a warm-up; bytes and FLOPs are what the kernel must move/compute, not counters\", ");
	printf("\"dims\": {\"heads\": %d, \"kv_lora\": %d, \"rope\": %d, \"qk\": %d, \"v\": %d, "
	       "\"page_size\": %d}, ", MLA_HEADS, MLA_KV_LORA, MLA_ROPE, MLA_QK, MLA_V, MLA_PAGE);
	printf("\"memcpy_d2d\": {\"bytes\": %zu, \"ms\": %.4f, \"GBps_read_plus_write\": %.1f}, ",
	       copy_bytes, copy_s * 1e3, copy_gbps);
	printf("\"gemm_bf16_peak\": {\"m\": 4096, \"k\": %d, \"n\": %d, \"ms\": %.4f, "
	       "\"TFLOPs\": %.1f}, ", MLA_DIM, MLA_HEADS * MLA_V, peak_s * 1e3, peak_tflops);
	printf("\"decode_version\": %ld, ", version);
	fflush(stdout);

	/* ---- decode grid ---- */
	{
		int max_b = max_of(batches, nb), max_c = max_of(ctxs, nc);
		int pages_per_seq = (max_c + MLA_PAGE - 1) / MLA_PAGE;
		size_t n_pages = (size_t)max_b * pages_per_seq;
		size_t cache_vals = n_pages * MLA_PAGE * MLA_D;

		h_bt = malloc(sizeof(int32_t) * n_pages);
		h_lens = malloc(sizeof(int32_t) * (size_t)max_b);
		if (!h_bt || !h_lens) {
			ret = hmoe_err(HMOE_ENOMEM, "out of memory");
			goto out;
		}
		/* sequence b owns pages [b * pages_per_seq, ...): paged, not scattered */
		for (size_t i = 0; i < n_pages; i++)
			h_bt[i] = (int32_t)i;
		if (api->malloc(&pages, cache_vals * 2) < 0 ||
		    api->malloc(&bt, sizeof(int32_t) * n_pages) < 0 ||
		    api->malloc(&lens, sizeof(int32_t) * (size_t)max_b) < 0 ||
		    api->malloc(&q, (size_t)max_b * MLA_HEADS * MLA_D * 2) < 0 ||
		    api->malloc(&out, (size_t)max_b * MLA_HEADS * MLA_KV_LORA * 2) < 0 ||
		    api->h2d(bt, h_bt, sizeof(int32_t) * n_pages) < 0) {
			ret = gpu_err("allocating the paged cache");
			goto out;
		}
		if ((ret = fill_random_bf16(pages, cache_vals, 2)) ||
		    (ret = fill_random_bf16(q, (size_t)max_b * MLA_HEADS * MLA_D, 3)))
			goto out;
		printf("\"decode\": [");
		for (int ib = 0; ib < nb; ib++)
			for (int ic = 0; ic < nc; ic++) {
				int b = batches[ib], c = ctxs[ic];
				struct decode_ctx d = { out, q, { pages, bt, lens, MLA_PAGE, pages_per_seq, c },
							b, (int)version };
				struct timed t = { run_decode, &d };
				double s, bytes, flops, floor_s;

				for (int i = 0; i < b; i++)
					h_lens[i] = c;
				if (api->h2d(lens, h_lens, sizeof(int32_t) * (size_t)b) < 0) {
					ret = gpu_err("uploading lengths");
					goto out;
				}
				if ((ret = time_it(&t, (int)reps, &s)))
					goto out;
				bytes = (double)b * c * MLA_D * 2 +
					(double)b * MLA_HEADS * (MLA_D + MLA_KV_LORA) * 2 +
					(double)b * ((c + MLA_PAGE - 1) / MLA_PAGE) * 4;
				flops = 2.0 * b * c * MLA_HEADS * (MLA_D + MLA_KV_LORA);
				/* roofline: the larger of the bytes at the copy's rate and the
				 * FLOPs at the GEMM's, over the measured time */
				floor_s = bytes / (copy_gbps * 1e9);
				if (flops / (peak_tflops * 1e12) > floor_s)
					floor_s = flops / (peak_tflops * 1e12);
				printf("%s{\"batch\": %d, \"context\": %d, \"ms\": %.4f, \"bytes\": %.0f, "
				       "\"GBps\": %.1f, \"ratio_vs_memcpy\": %.3f, \"TFLOPs\": %.2f, "
				       "\"ratio_vs_gemm\": %.3f, \"roofline_ratio\": %.3f}",
				       ib + ic ? ", " : "", b, c, s * 1e3, bytes, bytes / s * 1e-9,
				       bytes / s * 1e-9 / copy_gbps, flops / s * 1e-12,
				       flops / s * 1e-12 / peak_tflops, floor_s / s);
				fflush(stdout);
			}
		printf("], ");
		api->free(pages), api->free(bt), api->free(lens), api->free(q), api->free(out);
		pages = bt = lens = q = out = NULL;
	}

	/* ---- prefill, and its GEMM peer ---- */
	printf("\"prefill\": [");
	for (int ip = 0; ip < np; ip++) {
		int n = pres[ip];
		size_t qk_vals = (size_t)n * MLA_HEADS * MLA_QK, v_vals = (size_t)n * MLA_HEADS * MLA_V;
		struct prefill_ctx p;
		struct timed tp = { run_prefill, &p };
		double sp, sg, fp, fg;

		if (api->malloc(&q, qk_vals * 2) < 0 || api->malloc(&pk, qk_vals * 2) < 0 ||
		    api->malloc(&pv, v_vals * 2) < 0 || api->malloc(&out, v_vals * 2) < 0) {
			ret = gpu_err("allocating prefill buffers");
			goto out;
		}
		if ((ret = fill_random_bf16(q, qk_vals, 4)) || (ret = fill_random_bf16(pk, qk_vals, 5)) ||
		    (ret = fill_random_bf16(pv, v_vals, 6)))
			goto out;
		p = (struct prefill_ctx){ out, q, pk, pv, n, (int)pversion };
		if ((ret = time_it(&tp, (int)reps, &sp)))
			goto out;
		api->free(q), api->free(pk), api->free(pv), api->free(out);
		q = pk = pv = out = NULL;
		/* peer: y (n, 16384) = x (n, 7168) . W^T in bf16 */
		if ((ret = time_gemm(n, (int)reps, &sg)))
			goto out;
		fp = 2.0 * MLA_HEADS * ((double)n * (n + 1) / 2.0) * (MLA_QK + MLA_V);
		fg = 2.0 * n * (double)MLA_DIM * MLA_HEADS * MLA_V;
		printf("%s{\"n\": %d, \"version\": %d, \"ms\": %.3f, \"flops\": %.4g, "
		       "\"TFLOPs\": %.2f, "
		       "\"gemm_peer\": {\"m\": %d, \"k\": %d, \"n\": %d, \"ms\": %.3f, \"TFLOPs\": %.2f}, "
		       "\"ratio_vs_gemm\": %.3f}",
		       ip ? ", " : "", n, (int)pversion, sp * 1e3, fp, fp / sp * 1e-12, n, MLA_DIM,
		       MLA_HEADS * MLA_V, sg * 1e3, fg / sg * 1e-12, (fp / sp) / (fg / sg));
		fflush(stdout);
	}
	printf("]}\n");
	ret = 0;
out:
	if (api) {
		api->free(pages), api->free(bt), api->free(lens), api->free(q), api->free(out);
		api->free(pk), api->free(pv), api->free(copy_src), api->free(copy_dst);
	}
	free(batches), free(ctxs), free(pres), free(h_bt), free(h_lens);
	cli_free(&a);
	return ret ? cli_fail(ret) : 0;
}
