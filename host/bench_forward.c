/* bench_forward: `hmoe bench forward`: prefill and decode tokens/s of the fp32 CPU
 * forward pass, and decode's weight bytes per second over this machine's read bandwidth
 * measured in the same run (decode of one sequence is a chain of matrix-vector products,
 * so that ratio says how close the path is to the memory-bound limit).
 *
 * With --sequences S, S sequences are prefilled as one batch and decoded one token each
 * per step as one batch; with --micro-batches 2 such a batch runs as two micro-batches
 * whose attention and experts overlap (docs/runtime.md), and the JSON shows how long the
 * attention device waited for experts and how much of its work ran while experts were in
 * flight.
 *
 * Everything reported is measured; nothing is modeled. The prompts are seeded random ids.
 */
#include <stdio.h>
#include <stdlib.h>

#include "hmoe_clock.h"
#include "hmoe_bench.h"
#include "hmoe_energy.h"
#include "hmoe_err.h"
#include "session.h"

static const struct cli_flag flags[] = {
	SESSION_FLAGS,
	{ "prompt-tokens", 1, "--prompt-tokens N  prefill length (default 64)" },
	{ "decode-tokens", 1, "--decode-tokens N  decode steps (default 16)" },
	{ "sequences", 1, "--sequences N      sequences batched together (default 1)" },
	{ "bw-mib", 1, "--bw-mib N         buffer for the bandwidth probe (default 1024)" },
	{ "json", 0, "--json             JSON output (the only format)" },
	{ "help", 0, "--help             this text" },
};

/* Expert timing of one phase, summed over its forward calls. */
struct phase_times {
	double submit_s, wait_s, overlap_s, attn_s, moe_s;
};

static void phase_add(struct phase_times *p, const struct hmoe_forward_stats *st)
{
	p->submit_s += st->expert_submit_s;
	p->wait_s += st->expert_wait_s;
	p->overlap_s += st->overlap_s;
	p->attn_s += st->attn_s;
	p->moe_s += st->moe_s;
}

static void phase_json(const struct phase_times *p)
{
	printf("\"attn_s\": %.4f, \"moe_s\": %.4f, \"expert_submit_s\": %.4f, "
	       "\"expert_wait_s\": %.4f, \"overlap_s\": %.4f", p->attn_s, p->moe_s, p->submit_s,
	       p->wait_s, p->overlap_s);
}

/* One batch: tokens [first, first + n) of every sequence (ids of sequence q start at
 * q * stride), logits of each sequence's last token. */
static int feed(struct session *s, struct hmoe_kv **kv, int n_seq, const int *ids, long stride,
		long first, long n, struct hmoe_fwd_token *toks, float *logits)
{
	int k = 0;

	for (int q = 0; q < n_seq; q++)
		for (long i = 0; i < n; i++, k++) {
			toks[k].seq = kv[q];
			toks[k].token = ids[q * stride + first + i];
			toks[k].pos = kv[q]->len + (int)i;
			toks[k].want_logits = i == n - 1;
		}
	return hmoe_forward(s->fwd, toks, k, logits);
}

int bench_forward(int argc, char **argv)
{
	const int n_flags = (int)(sizeof(flags) / sizeof(flags[0]));
	struct hmoe_model_stats ms;
	struct session s = { 0 };
	struct hmoe_kv **kv = NULL;
	struct hmoe_energy *energy = NULL;
	struct hmoe_fwd_token *toks = NULL;
	struct phase_times pt_prefill = { 0 }, pt_decode = { 0 };
	struct cli_args a;
	long n_prompt, n_decode, bw_mib, n_seq, stride;
	double bw, t0, t_prefill, t_decode, decode_bytes = 0, decode_kv_bytes = 0;
	float *logits = NULL;
	int *ids = NULL, ret, vocab, n_micro = 1;
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
	    (ret = cli_int(&a, "sequences", 1, 1, 1024, &n_seq)) ||
	    (ret = cli_int(&a, "bw-mib", 1024, 16, 1 << 16, &bw_mib)))
		goto out;
	ret = session_open(&s, &a, 0);
	if (ret)
		goto out;
	vocab = s.model->cfg.vocab_size;
	stride = n_prompt + n_decode;
	ids = malloc((size_t)(n_seq * stride) * sizeof(int));
	logits = malloc((size_t)(n_seq * vocab) * sizeof(float));
	toks = calloc((size_t)(n_seq * n_prompt), sizeof(*toks));
	kv = calloc((size_t)n_seq, sizeof(*kv));
	if (!ids || !logits || !toks || !kv) {
		ret = hmoe_err(HMOE_ENOMEM, "out of memory");
		goto out;
	}
	for (long i = 0; i < n_seq * stride; i++) {
		rng = rng * 1103515245u + 12345u;
		ids[i] = (int)((rng >> 8) % (unsigned)vocab);
	}
	for (long q = 0; q < n_seq; q++) {
		ret = hmoe_kv_create(&kv[q], &s.model->cfg, 0);
		if (ret)
			goto out;
	}

	bw = bench_read_bandwidth((size_t)bw_mib << 20, 10, hmoe_pool_threads(s.pool));
	ret = hmoe_energy_open(&energy, NULL);
	if (ret)
		goto out;

	hmoe_energy_begin(energy, HMOE_ENERGY_PREFILL);
	t0 = hmoe_now_s();
	ret = feed(&s, kv, (int)n_seq, ids, stride, 0, n_prompt, toks, logits);
	if (ret)
		goto out;
	t_prefill = hmoe_now_s() - t0;
	phase_add(&pt_prefill, hmoe_forward_stats(s.fwd));
	n_micro = hmoe_forward_stats(s.fwd)->n_micro;
	hmoe_energy_end(energy, HMOE_ENERGY_PREFILL, n_prompt * n_seq);

	t_decode = 0;
	hmoe_energy_begin(energy, HMOE_ENERGY_DECODE);
	for (long i = 0; i < n_decode; i++) {
		const struct hmoe_forward_stats *st;

		t0 = hmoe_now_s();
		ret = feed(&s, kv, (int)n_seq, ids, stride, n_prompt + i, 1, toks, logits);
		if (ret)
			goto out;
		t_decode += hmoe_now_s() - t0;
		st = hmoe_forward_stats(s.fwd);
		decode_bytes += (double)st->weight_bytes;
		decode_kv_bytes += (double)st->kv_bytes;
		phase_add(&pt_decode, st);
	}
	hmoe_energy_end(energy, HMOE_ENERGY_DECODE, n_decode * n_seq);
	hmoe_model_stats(s.model, &ms);

	printf("{\"bench\": \"forward\", ");
	bench_json_machine(stdout);
	printf("\"model\": {\"dir\": \"%s\", \"params_total\": %lld, \"params_active\": %lld, "
	       "\"layers\": %d, \"hidden\": %d}, ",
	       cli_str(&a, "model", ""), (long long)ms.params_total,
	       (long long)ms.params_active, s.model->cfg.num_hidden_layers,
	       s.model->cfg.hidden_size);
	printf("\"threads\": %d, \"experts\": \"%s\", \"experts_async\": %s, "
	       "\"sequences\": %ld, \"micro_batches\": %s, \"micro_batches_run\": %d, ",
	       hmoe_pool_threads(s.pool), s.experts->ops->name,
	       hmoe_expert_is_async(s.experts) ? "true" : "false", n_seq,
	       cli_str(&a, "micro-batches", "1"), n_micro);
	printf("\"prefill\": {\"tokens\": %ld, \"seconds\": %.4f, \"tokens_per_s\": %.2f, ",
	       n_prompt * n_seq, t_prefill, n_prompt * n_seq / t_prefill);
	phase_json(&pt_prefill);
	printf("}, \"decode\": {\"tokens\": %ld, \"seconds\": %.4f, \"tokens_per_s\": %.3f, "
	       "\"weight_bytes_per_token\": %.0f, \"kv_bytes_per_token\": %.0f, "
	       "\"weight_bytes_per_s\": %.4g, ",
	       n_decode * n_seq, t_decode, n_decode * n_seq / t_decode,
	       decode_bytes / (double)(n_decode * n_seq),
	       decode_kv_bytes / (double)(n_decode * n_seq), decode_bytes / t_decode);
	phase_json(&pt_decode);
	printf("}, ");
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
	free(toks);
	for (long q = 0; kv && q < n_seq; q++)
		hmoe_kv_free(kv[q]);
	free(kv);
	hmoe_energy_close(energy);
	session_close(&s);
	cli_free(&a);
	return ret ? cli_fail(ret) : 0;
}
