/* bench_forward: `hmoe bench forward`: prefill and decode tokens/s of the fp32 CPU
 * forward pass, and decode's weight bytes per second over this machine's read bandwidth
 * measured in the same run (decode of one sequence is a chain of matrix-vector products,
 * so that ratio says how close the path is to the memory-bound limit).
 *
 * Everything reported is measured; nothing is modeled. The prompt is seeded random ids.
 */
#include <stdio.h>
#include <stdlib.h>

#include "bench_clock.h"
#include "hmoe_bench.h"
#include "hmoe_energy.h"
#include "hmoe_err.h"
#include "session.h"

static const struct cli_flag flags[] = {
	SESSION_FLAGS,
	{ "prompt-tokens", 1, "--prompt-tokens N  prefill length (default 64)" },
	{ "decode-tokens", 1, "--decode-tokens N  decode steps (default 16)" },
	{ "bw-mib", 1, "--bw-mib N         buffer for the bandwidth probe (default 1024)" },
	{ "json", 0, "--json             JSON output (the only format)" },
	{ "help", 0, "--help             this text" },
};

int bench_forward(int argc, char **argv)
{
	const int n_flags = (int)(sizeof(flags) / sizeof(flags[0]));
	struct hmoe_model_stats ms;
	struct session s = { 0 };
	struct hmoe_kv *kv = NULL;
	struct hmoe_energy *energy = NULL;
	struct cli_args a;
	long n_prompt, n_decode, bw_mib;
	double bw, t0, t_prefill, t_decode, decode_bytes = 0, decode_kv_bytes = 0;
	float *logits = NULL;
	int *ids = NULL, ret, vocab;
	unsigned rng = 12345;

	ret = cli_parse(&a, "bench forward", flags, n_flags, argc, argv);
	if (ret)
		return cli_fail(ret);
	if (cli_has(&a, "help")) {
		cli_usage("bench forward", "Prefill/decode speed of the CPU forward pass (JSON).",
			  flags, n_flags);
		cli_free(&a);
		return 0;
	}
	if ((ret = cli_int(&a, "prompt-tokens", 64, 1, 1 << 16, &n_prompt)) ||
	    (ret = cli_int(&a, "decode-tokens", 16, 1, 1 << 16, &n_decode)) ||
	    (ret = cli_int(&a, "bw-mib", 1024, 16, 1 << 16, &bw_mib)))
		goto out;
	ret = session_open(&s, &a, 0);
	if (ret)
		goto out;
	vocab = s.model->cfg.vocab_size;
	ids = malloc((size_t)(n_prompt + n_decode) * sizeof(int));
	logits = malloc((size_t)vocab * sizeof(float));
	if (!ids || !logits) {
		ret = hmoe_err(HMOE_ENOMEM, "out of memory");
		goto out;
	}
	for (long i = 0; i < n_prompt + n_decode; i++) {
		rng = rng * 1103515245u + 12345u;
		ids[i] = (int)((rng >> 8) % (unsigned)vocab);
	}
	ret = hmoe_kv_create(&kv, &s.model->cfg, 0);
	if (ret)
		goto out;

	bw = bench_read_bandwidth((size_t)bw_mib << 20, 10, hmoe_pool_threads(s.pool));
	ret = hmoe_energy_open(&energy, NULL);
	if (ret)
		goto out;

	hmoe_energy_begin(energy, HMOE_ENERGY_PREFILL);
	t0 = clock_now_s();
	ret = hmoe_forward_seq(s.fwd, kv, ids, (int)n_prompt, 1, logits);
	if (ret)
		goto out;
	t_prefill = clock_now_s() - t0;
	hmoe_energy_end(energy, HMOE_ENERGY_PREFILL, n_prompt);

	t_decode = 0;
	hmoe_energy_begin(energy, HMOE_ENERGY_DECODE);
	for (long i = 0; i < n_decode; i++) {
		const struct hmoe_forward_stats *st;

		t0 = clock_now_s();
		ret = hmoe_forward_seq(s.fwd, kv, &ids[n_prompt + i], 1, 1, logits);
		if (ret)
			goto out;
		t_decode += clock_now_s() - t0;
		st = hmoe_forward_stats(s.fwd);
		decode_bytes += (double)st->weight_bytes;
		decode_kv_bytes += (double)st->kv_bytes;
	}
	hmoe_energy_end(energy, HMOE_ENERGY_DECODE, n_decode);
	hmoe_model_stats(s.model, &ms);

	printf("{\"bench\": \"forward\", ");
	bench_json_machine(stdout);
	printf("\"model\": {\"dir\": \"%s\", \"params_total\": %lld, \"params_active\": %lld, "
	       "\"layers\": %d, \"hidden\": %d}, ",
	       cli_str(&a, "model", ""), (long long)ms.params_total,
	       (long long)ms.params_active, s.model->cfg.num_hidden_layers,
	       s.model->cfg.hidden_size);
	printf("\"threads\": %d, \"experts\": \"%s\", ", hmoe_pool_threads(s.pool),
	       s.experts->ops->name);
	printf("\"prefill\": {\"tokens\": %ld, \"seconds\": %.4f, \"tokens_per_s\": %.2f}, ",
	       n_prompt, t_prefill, n_prompt / t_prefill);
	printf("\"decode\": {\"tokens\": %ld, \"seconds\": %.4f, \"tokens_per_s\": %.3f, "
	       "\"weight_bytes_per_token\": %.0f, \"kv_bytes_per_token\": %.0f, "
	       "\"weight_bytes_per_s\": %.4g}, ",
	       n_decode, t_decode, n_decode / t_decode, decode_bytes / (double)n_decode,
	       decode_kv_bytes / (double)n_decode, decode_bytes / t_decode);
	hmoe_energy_json(energy, stdout);
	printf(", ");
	printf("\"read_bandwidth_bytes_per_s\": %.4g, "
	       "\"decode_bytes_over_read_bandwidth\": %.3f, \"target_ratio\": 0.5, "
	       "\"measured\": \"all timings; bandwidth probe: threads summing a %ld MiB buffer, "
	       "best of 10\"}\n",
	       bw, bw > 0 ? decode_bytes / t_decode / bw : 0.0, bw_mib);
	ret = 0;
out:
	free(ids);
	free(logits);
	hmoe_kv_free(kv);
	hmoe_energy_close(energy);
	session_close(&s);
	cli_free(&a);
	return ret ? cli_fail(ret) : 0;
}
