/* cmd_generate: `hmoe generate`: prompt in, streamed text out.
 *
 * Prefill runs the whole prompt as one batch (naive MLA), then each new token is one
 * decode step (absorbed MLA). With --chat the prompt goes through the R1 template, whose
 * generation prompt opens "<think>\n"; everything up to "</think>" is the model's
 * reasoning and is shown dimmed on a terminal (plain, with its tags, when piped), the
 * rest is the answer. Timings go to stderr so stdout carries only the text.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_clock.h"
#include "hmoe_chat.h"
#include "hmoe_energy.h"
#include "hmoe_cli.h"
#include "hmoe_err.h"
#include "hmoe_sample.h"
#include "session.h"

static const struct cli_flag flags[] = {
	SESSION_FLAGS,
	{ "prompt", 1, "--prompt S         the prompt text" },
	{ "chat", 0, "--chat             apply the R1 chat template; show reasoning apart" },
	{ "system", 1, "--system S         system prompt (with --chat; R1 advises none)" },
	{ "max-tokens", 1, "--max-tokens N     tokens to generate (default 256)" },
	{ "temperature", 1, "--temperature T    0 = greedy (default 0.6, R1's advice)" },
	{ "top-p", 1, "--top-p P          nucleus sampling (default 0.95)" },
	{ "top-k", 1, "--top-k K          keep the K most likely tokens (default 0 = off)" },
	{ "seed", 1, "--seed S           sampling seed (default 0)" },
	{ "energy-model", 1, "--energy-model D=W[,D=W]  extra modeled devices (name=watts) in the energy report" },
	{ "help", 0, "--help             this text" },
};

#define THINK_END "</think>"

/* Output of the stream: tracks whether we are inside the reasoning, and holds back text
 * that may be the start of "</think>" until it is known whether it is. */
struct printer {
	int chat;
	int tty;
	int thinking;          /* inside the reasoning */
	char held[16];         /* a possible prefix of THINK_END */
	int n_held;
};

static void emit(const char *s, size_t n)
{
	if (!n)
		return;
	fwrite(s, 1, n, stdout);
}

static void printer_start(struct printer *p)
{
	if (!p->chat)
		return;
	p->thinking = 1;
	if (p->tty)
		fputs("\033[2m[thinking]\n", stdout);
	else
		fputs("<think>\n", stdout);
}

static void printer_end_thinking(struct printer *p)
{
	p->thinking = 0;
	if (p->tty)
		fputs("\033[0m\n[answer]", stdout);
	else
		fputs(THINK_END, stdout);
}

/* Feeds decoded text; finds THINK_END even when split across tokens. */
static void printer_put(struct printer *p, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!p->thinking) {
			emit(s + i, n - i);
			break;
		}
		p->held[p->n_held++] = s[i];
		if (strncmp(p->held, THINK_END, (size_t)p->n_held) != 0) {
			/* Not a prefix: flush all but a suffix that could still start it. */
			int keep = 0;

			for (int k = 1; k < p->n_held; k++)
				if (!strncmp(p->held + k, THINK_END, (size_t)(p->n_held - k))) {
					keep = p->n_held - k;
					break;
				}
			emit(p->held, (size_t)(p->n_held - keep));
			memmove(p->held, p->held + p->n_held - keep, (size_t)keep);
			p->n_held = keep;
		} else if (p->n_held == (int)strlen(THINK_END)) {
			p->n_held = 0;
			printer_end_thinking(p);
		}
	}
	fflush(stdout);
}

static void printer_finish(struct printer *p)
{
	emit(p->held, (size_t)p->n_held);
	p->n_held = 0;
	if (p->tty && p->thinking)
		fputs("\033[0m", stdout);
	fputs("\n", stdout);
	fflush(stdout);
}

/* The prompt's token ids: the chat template, or BOS + the raw prompt. */
static int prompt_ids(const struct session *s, const struct cli_args *a, const char *prompt,
		      int **ids, int *n)
{
	int ret;

	if (cli_has(a, "chat")) {
		struct hmoe_chat_msg msgs[2];
		int n_msgs = 0;
		char *text;

		if (cli_has(a, "system"))
			msgs[n_msgs++] = (struct hmoe_chat_msg){ HMOE_ROLE_SYSTEM,
								 cli_str(a, "system", "") };
		msgs[n_msgs++] = (struct hmoe_chat_msg){ HMOE_ROLE_USER, prompt };
		ret = hmoe_chat_render(msgs, n_msgs, 1, &text);
		if (ret)
			return ret;
		ret = hmoe_tok_encode(s->tok, text, strlen(text), ids, n);
		free(text);
		return ret;
	}
	{
		int *body, n_body, bos = hmoe_tok_bos(s->tok);

		ret = hmoe_tok_encode(s->tok, prompt, strlen(prompt), &body, &n_body);
		if (ret)
			return ret;
		*ids = malloc(((size_t)n_body + 1) * sizeof(int));
		if (!*ids) {
			free(body);
			return hmoe_err(HMOE_ENOMEM, "out of memory");
		}
		*n = 0;
		if (bos >= 0)
			(*ids)[(*n)++] = bos;
		memcpy(*ids + *n, body, (size_t)n_body * sizeof(int));
		*n += n_body;
		free(body);
		return 0;
	}
}

int cmd_generate(int argc, char **argv)
{
	const int n_flags = (int)(sizeof(flags) / sizeof(flags[0]));
	struct session s = { 0 };
	struct hmoe_kv *kv = NULL;
	struct hmoe_energy *energy = NULL;
	struct hmoe_sampler sampler;
	struct hmoe_tok_stream stream;
	struct printer pr = { 0 };
	struct cli_args a;
	const char *prompt;
	double temperature, top_p, t0, t_prefill = 0, t_decode = 0;
	long max_tokens, top_k;
	uint64_t seed;
	float *logits = NULL, *scratch = NULL;
	int *ids = NULL, n_ids = 0, n_gen = 0, eos, ret;
	char text[1024];

	ret = cli_parse(&a, "generate", flags, n_flags, argc, argv);
	if (ret)
		return cli_fail(ret);
	if (cli_has(&a, "help")) {
		cli_usage("generate", "Generate text from a prompt, streamed to stdout.", flags,
			  n_flags);
		cli_free(&a);
		return 0;
	}
	if ((ret = cli_req(&a, "prompt", &prompt)) ||
	    (ret = cli_int(&a, "max-tokens", 256, 1, 1 << 20, &max_tokens)) ||
	    (ret = cli_float(&a, "temperature", HMOE_R1_TEMPERATURE, 0, 100, &temperature)) ||
	    (ret = cli_float(&a, "top-p", HMOE_R1_TOP_P, 0, 1, &top_p)) ||
	    (ret = cli_int(&a, "top-k", 0, 0, 1 << 30, &top_k)) ||
	    (ret = cli_u64(&a, "seed", 0, &seed)))
		goto out;
	if (top_p <= 0) {
		ret = hmoe_err(HMOE_EINPUT, "hmoe generate: --top-p must be > 0");
		goto out;
	}
	ret = session_open(&s, &a, SESSION_TOKENIZER | SESSION_GPU_OK);
	if (ret)
		goto out;
	ret = prompt_ids(&s, &a, prompt, &ids, &n_ids);
	if (ret)
		goto out;
	if (n_ids == 0) {
		ret = hmoe_err(HMOE_EINPUT, "hmoe generate: the prompt has no tokens");
		goto out;
	}
	ret = hmoe_kv_create(&kv, &s.model->cfg, 0);
	if (ret)
		goto out;
	logits = malloc((size_t)s.model->cfg.vocab_size * sizeof(float));
	scratch = malloc(2 * (size_t)s.model->cfg.vocab_size * sizeof(float));
	if (!logits || !scratch) {
		ret = hmoe_err(HMOE_ENOMEM, "out of memory");
		goto out;
	}
	hmoe_sampler_init(&sampler, (float)temperature, (float)top_p, (int)top_k, seed);
	hmoe_tok_stream_init(&stream, s.tok, 1);
	eos = hmoe_tok_eos(s.tok);
	pr.chat = cli_has(&a, "chat");
	pr.tty = isatty(STDOUT_FILENO);
	{
		/* Joules per token by device and phase (runtime/hmoe_energy.h): RAPL, NVML,
		 * card hwmon where readable, labelled models elsewhere. Never fails a run. */
		struct hmoe_energy_opts eo = { .model = cli_str(&a, "energy-model", NULL) };

		ret = hmoe_energy_open(&energy, &eo);
		if (ret)
			goto out;
	}

	hmoe_energy_begin(energy, HMOE_ENERGY_PREFILL);
	t0 = clock_now_s();
	ret = session_feed(&s, kv, ids, n_ids, logits);
	if (ret)
		goto out;
	t_prefill = clock_now_s() - t0;
	hmoe_energy_end(energy, HMOE_ENERGY_PREFILL, n_ids);
	printer_start(&pr);
	hmoe_energy_begin(energy, HMOE_ENERGY_DECODE);
	t0 = clock_now_s();
	while (n_gen < max_tokens) {
		int next = hmoe_sample(&sampler, logits, session_n_valid(&s), scratch);

		if (next < 0) {
			ret = next;
			goto out;
		}
		n_gen++;
		if (next == eos)
			break;
		ret = hmoe_tok_stream_push(&stream, next, text, sizeof(text));
		if (ret < 0)
			goto out;
		printer_put(&pr, text, (size_t)ret);
		if (n_gen == max_tokens)
			break;
		ret = session_feed(&s, kv, &next, 1, logits);
		if (ret)
			goto out;
	}
	t_decode = clock_now_s() - t0;
	hmoe_energy_end(energy, HMOE_ENERGY_DECODE, n_gen);
	ret = hmoe_tok_stream_flush(&stream, text, sizeof(text));
	if (ret < 0)
		goto out;
	printer_put(&pr, text, (size_t)ret);
	printer_finish(&pr);
	fprintf(stderr,
		"[prompt %d tokens: %.1f tok/s prefill] [generated %d tokens: %.2f tok/s decode]"
		" [load %.2f s, experts %s]\n",
		n_ids, t_prefill > 0 ? n_ids / t_prefill : 0.0, n_gen,
		t_decode > 0 ? n_gen / t_decode : 0.0, s.load_s,
		s.cuda_fwd ? "cuda (GPU)" : s.experts->ops->name);
	hmoe_energy_print(energy, stderr);
	ret = 0;
out:
	free(ids);
	free(logits);
	free(scratch);
	hmoe_kv_free(kv);
	hmoe_energy_close(energy);
	session_close(&s);
	cli_free(&a);
	return ret ? cli_fail(ret) : 0;
}
