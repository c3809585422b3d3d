/* cmd_eval: `hmoe eval`: accuracy of a model on held-out arithmetic (--task) or a user's
 * problems (--jsonl), the way DeepSeek evaluates R1: each problem goes through the R1
 * chat template (generation prompt "<｜Assistant｜><think>\n"), K samples are generated
 * (temperature 0.6, top-p 0.95 by default; --temperature 0 is greedy), the answer is
 * extracted after "</think>" (hmoe_eval_extract) and pass@1 is the mean correctness
 * over all samples.
 *
 * Many problems run at once in the continuous-batching engine (runtime/hmoe_batch.h): up
 * to --batch samples share every forward call, new prompts prefill in the same call as
 * the others' decode steps. A sample's tokens do not depend on its batch-mates and each
 * (problem, sample) has its own sampler seed, so results do not depend on --batch or
 * --threads.
 *
 * stdout: a JSON summary; stderr: a progress bar when it is a terminal.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "hmoe_clock.h"
#include "hmoe_batch.h"
#include "hmoe_chat.h"
#include "hmoe_cli.h"
#include "hmoe_err.h"
#include "hmoe_eval.h"
#include "hmoe_sample.h"
#include "session.h"

static const struct cli_flag flags[] = {
	SESSION_FLAGS,
	{ "task", 1, "--task NAME        held-out problems: " HMOE_EVAL_ARITH_TASKS },
	{ "jsonl", 1, "--jsonl FILE       your problems: {\"prompt\": ..., \"answer\": ...} per line" },
	{ "n", 1, "--n N              number of problems (default 500; jsonl: all)" },
	{ "samples", 1, "--samples K        samples per problem; pass@1 is their mean (default 1)" },
	{ "temperature", 1, "--temperature T    0 = greedy (default 0.6, R1's protocol)" },
	{ "top-p", 1, "--top-p P          nucleus sampling (default 0.95)" },
	{ "seed", 1, "--seed S           sampling seed (default 0)" },
	{ "max-tokens", 1, "--max-tokens N     generated tokens per sample (default 1024)" },
	{ "batch", 1, "--batch N          sequences decoded together (default 32)" },
	{ "dump", 1, "--dump FILE        write one JSON line per sample (output, answer, correct)" },
	{ "help", 0, "--help             this text" },
};

/* One sample being generated: sample `sample` of problem `problem`; the engine's request
 * (runtime/hmoe_batch.h) points here through its user pointer. */
struct slot {
	int active;
	int problem, sample;
	int think_tokens;        /* tokens up to and including the end of "</think>"; -1 */
	struct hmoe_tok_stream stream;
	struct cli_text text;    /* decoded output so far */
};

struct eval_stats {
	long done, correct, tokens, think_tokens, truncated;
	char **dump_lines;       /* [problems * samples] with --dump: written in job order */
};

/* What the engine's callbacks need. */
struct eval_run {
	const struct hmoe_eval_set *set;
	int samples, eos;
	struct eval_stats *st;
};

static void progress(const struct eval_stats *st, long total, double t0)
{
	int width = 30, filled = total ? (int)(width * st->done / total) : width;
	double dt = hmoe_now_s() - t0;

	fprintf(stderr, "\r[%.*s%*s] %ld/%ld  acc %5.1f%%  %.0f tok/s ", filled,
		"##############################", width - filled, "", st->done, total,
		st->done ? 100.0 * st->correct / st->done : 0.0, dt > 0 ? st->tokens / dt : 0.0);
	fflush(stderr);
}

/* Scores a finished sample of n_gen tokens and writes its dump line. */
static int finish(struct slot *s, const struct hmoe_eval_set *set, struct eval_stats *st,
		  int samples, int n_gen, int truncated)
{
	char got[256];
	const struct hmoe_eval_problem *p = &set->p[s->problem];
	int found = hmoe_eval_extract(s->text.s ? s->text.s : "", got, sizeof(got));
	int ok = found && hmoe_eval_match(got, p->answer);

	st->done++;
	st->correct += ok;
	st->tokens += n_gen;
	st->think_tokens += s->think_tokens >= 0 ? s->think_tokens : n_gen;
	st->truncated += truncated;
	if (st->dump_lines) {
		cJSON *j = cJSON_CreateObject();
		char *line;

		if (!j || !cJSON_AddNumberToObject(j, "problem", s->problem) ||
		    !cJSON_AddNumberToObject(j, "sample", s->sample) ||
		    !cJSON_AddStringToObject(j, "prompt", p->prompt) ||
		    !cJSON_AddStringToObject(j, "answer", p->answer) ||
		    !cJSON_AddStringToObject(j, "output", s->text.s ? s->text.s : "") ||
		    !cJSON_AddStringToObject(j, "extracted", got) ||
		    !cJSON_AddBoolToObject(j, "correct", ok) ||
		    !cJSON_AddNumberToObject(j, "tokens", n_gen) ||
		    !cJSON_AddBoolToObject(j, "truncated", truncated) ||
		    !(line = cJSON_PrintUnformatted(j))) {
			cJSON_Delete(j);
			return hmoe_err(HMOE_ENOMEM, "eval: out of memory writing the dump");
		}
		st->dump_lines[(size_t)s->problem * samples + s->sample] = line;
		cJSON_Delete(j);
	}
	s->active = 0;
	return 0;
}

/* Engine callback: a sample's new token joins its text. */
static int on_token(void *arg, const struct hmoe_batch_req *r, int tok, const float *logits)
{
	const struct eval_run *run = arg;
	struct slot *s = r->user;
	int ret;

	(void)logits;
	if ((ret = cli_text_token(&s->text, &s->stream, tok, run->eos)) < 0)
		return ret;
	if (s->think_tokens < 0 && s->text.s && strstr(s->text.s, HMOE_CHAT_END_THINK))
		s->think_tokens = r->n_tokens;
	return 0;
}

/* Engine callback: a sample ended (EOS, or --max-tokens: truncated). */
static int on_finish(void *arg, const struct hmoe_batch_req *r)
{
	const struct eval_run *run = arg;
	struct slot *s = r->user;
	int ret;

	if ((ret = cli_text_flush(&s->text, &s->stream)) < 0)
		return ret;
	return finish(s, run->set, run->st, run->samples, r->n_tokens,
		      r->finish != HMOE_BATCH_STOP);
}

/* The generation loop over every (problem, sample): up to `batch` samples at a time in
 * the continuous-batching engine; a finished sample's slot gets the next job at once. */
static int run_eval(struct session *ses, const struct hmoe_eval_set *set, int samples,
		    double temperature, double top_p, uint64_t seed, int max_tokens, int batch,
		    FILE *dump, struct eval_stats *st, double *wall_s)
{
	long total = (long)set->n * samples, next_job = 0;
	int eos = hmoe_tok_eos(ses->tok), max_prompt = 0;
	int tty = isatty(STDERR_FILENO), ret = 0, **prompt = NULL, *n_prompt = NULL;
	struct slot *slots = calloc((size_t)batch, sizeof(*slots));
	struct eval_run run = { set, samples, eos, st };
	struct hmoe_batch *engine = NULL;
	double t0 = hmoe_now_s(), last_bar = 0;

	prompt = calloc((size_t)set->n, sizeof(*prompt));
	n_prompt = calloc((size_t)set->n, sizeof(*n_prompt));
	if (dump)
		st->dump_lines = calloc((size_t)total, sizeof(*st->dump_lines));
	if (!slots || !prompt || !n_prompt || (dump && !st->dump_lines)) {
		ret = hmoe_err(HMOE_ENOMEM, "eval: out of memory");
		goto out;
	}
	/* every prompt through the R1 chat template, once */
	for (int i = 0; i < set->n; i++) {
		struct hmoe_chat_msg msg = { HMOE_ROLE_USER, set->p[i].prompt };

		ret = hmoe_chat_encode(ses->tok, &msg, 1, 1, &prompt[i], &n_prompt[i]);
		if (ret) {
			ret = hmoe_err_ctx(ret, "eval problem %d", i + 1);
			goto out;
		}
		if (n_prompt[i] > max_prompt)
			max_prompt = n_prompt[i];
	}
	{
		/* Each prompt prefills whole (one chunk), new prompts in the same step as the
		 * others' decode tokens; the context never cuts a sample short (--max-tokens
		 * does). The schedule does not change results (hmoe_batch.h). */
		struct hmoe_batch_opts o = {
			.max_seqs = batch, .prefill_chunk = max_prompt,
			.max_batch_tokens = batch * (max_prompt + 1),
			.max_ctx = max_prompt + max_tokens, .n_valid = session_n_valid(ses),
			.on_token = on_token, .on_finish = on_finish, .arg = &run,
		};

		if ((ret = hmoe_batch_create(&engine, ses->fwd, &ses->model->cfg, &o)))
			goto out;
	}

	while (st->done < total) {
		/* start new samples in free slots */
		for (int b = 0; b < batch && next_job < total; b++) {
			struct slot *s = &slots[b];
			struct hmoe_batch_params p;

			if (s->active)
				continue;
			s->active = 1;
			s->problem = (int)(next_job / samples);
			s->sample = (int)(next_job % samples);
			next_job++;
			s->think_tokens = -1;
			s->text.len = 0;
			if (s->text.s)
				s->text.s[0] = '\0';
			hmoe_tok_stream_init(&s->stream, ses->tok, 1);
			p = (struct hmoe_batch_params){
				.prompt = prompt[s->problem], .n_prompt = n_prompt[s->problem],
				.max_tokens = max_tokens, .stop = &eos, .n_stop = eos >= 0,
				.temperature = (float)temperature, .top_p = (float)top_p,
				.seed = hmoe_eval_sample_seed(seed, s->problem, s->sample),
				.user = s,
			};
			if ((ret = hmoe_batch_submit(engine, &p, NULL))) {
				ret = hmoe_err_ctx(ret, "eval problem %d", s->problem + 1);
				goto out;
			}
		}
		if ((ret = hmoe_batch_step(engine)) < 0)
			goto out;
		if (tty && hmoe_now_s() - last_bar > 0.1) {
			progress(st, total, t0);
			last_bar = hmoe_now_s();
		}
	}
	if (tty) {
		progress(st, total, t0);
		fputc('\n', stderr);
	}
	for (long i = 0; dump && i < total; i++)
		fprintf(dump, "%s\n", st->dump_lines[i]);
	ret = 0;
out:
	*wall_s = hmoe_now_s() - t0;
	hmoe_batch_free(engine);
	for (int b = 0; slots && b < batch; b++)
		cli_text_free(&slots[b].text);
	for (int i = 0; prompt && i < set->n; i++)
		free(prompt[i]);
	free(prompt);
	free(n_prompt);
	free(slots);
	for (long i = 0; st->dump_lines && i < total; i++)
		free(st->dump_lines[i]);
	free(st->dump_lines);
	st->dump_lines = NULL;
	return ret;
}

static int print_summary(const struct cli_args *a, const struct session *ses,
			 const char *source, int n_problems, int samples, double temperature,
			 double top_p, uint64_t seed, int max_tokens, const struct eval_stats *st,
			 double wall_s)
{
	cJSON *j = cJSON_CreateObject();
	char *out;
	int ok;

	ok = j && cJSON_AddStringToObject(j, "model", cli_str(a, "model", "")) &&
	     cJSON_AddStringToObject(j, cli_has(a, "jsonl") ? "jsonl" : "task", source) &&
	     cJSON_AddStringToObject(j, "experts", ses->experts->ops->name) &&
	     cJSON_AddNumberToObject(j, "problems", n_problems) &&
	     cJSON_AddNumberToObject(j, "samples", samples) &&
	     cJSON_AddNumberToObject(j, "temperature", round(temperature * 1e6) / 1e6) &&
	     cJSON_AddNumberToObject(j, "top_p", temperature > 0 ? round(top_p * 1e6) / 1e6 : 1.0) &&
	     cJSON_AddNumberToObject(j, "seed", (double)seed) &&
	     cJSON_AddNumberToObject(j, "max_tokens", max_tokens) &&
	     cJSON_AddNumberToObject(j, "accuracy", st->done ? (double)st->correct / st->done : 0) &&
	     cJSON_AddNumberToObject(j, "correct", (double)st->correct) &&
	     cJSON_AddNumberToObject(j, "total", (double)st->done) &&
	     cJSON_AddNumberToObject(j, "tokens_generated", (double)st->tokens) &&
	     cJSON_AddNumberToObject(j, "mean_tokens", st->done ? (double)st->tokens / st->done : 0) &&
	     cJSON_AddNumberToObject(j, "mean_reasoning_tokens",
				     st->done ? (double)st->think_tokens / st->done : 0) &&
	     cJSON_AddNumberToObject(j, "truncated", (double)st->truncated) &&
	     cJSON_AddNumberToObject(j, "tokens_per_s", wall_s > 0 ? st->tokens / wall_s : 0) &&
	     cJSON_AddNumberToObject(j, "wall_s", wall_s);
	if (!ok || !(out = cJSON_Print(j))) {
		cJSON_Delete(j);
		return hmoe_err(HMOE_ENOMEM, "eval: out of memory for the summary");
	}
	printf("%s\n", out);
	free(out);
	cJSON_Delete(j);
	return 0;
}

int cmd_eval(int argc, char **argv)
{
	const int n_flags = (int)(sizeof(flags) / sizeof(flags[0]));
	struct session ses = { 0 };
	struct hmoe_eval_set set = { 0 };
	struct eval_stats st = { 0 };
	struct cli_args a;
	const char *task = NULL, *jsonl = NULL, *dump_path;
	double temperature, top_p, wall_s = 0;
	long n, samples, max_tokens, batch;
	uint64_t seed;
	FILE *dump = NULL;
	int ret;

	ret = cli_parse(&a, "eval", flags, n_flags, argc, argv);
	if (ret)
		return cli_fail(ret);
	if (cli_has(&a, "help")) {
		cli_usage("eval", "Accuracy on held-out arithmetic or your own problems (R1's "
			  "protocol: chat template, answer after </think>, pass@1 over K samples); "
			  "JSON summary on stdout.", flags, n_flags);
		cli_free(&a);
		return 0;
	}
	if (a.n_positional) {
		ret = hmoe_err(HMOE_EINPUT, "hmoe eval: unexpected argument '%s'", a.positional[0]);
		goto out;
	}
	task = cli_str(&a, "task", NULL);
	jsonl = cli_str(&a, "jsonl", NULL);
	if (!task == !jsonl) {
		ret = hmoe_err(HMOE_EINPUT, "hmoe eval: give exactly one of --task and --jsonl");
		goto out;
	}
	if ((ret = cli_int(&a, "n", 500, 1, 100000, &n)) ||
	    (ret = cli_int(&a, "samples", 1, 1, 4096, &samples)) ||
	    (ret = cli_float(&a, "temperature", HMOE_R1_TEMPERATURE, 0, 100, &temperature)) ||
	    (ret = cli_float(&a, "top-p", HMOE_R1_TOP_P, 0, 1, &top_p)) ||
	    (ret = cli_u64(&a, "seed", 0, &seed)) ||
	    (ret = cli_int(&a, "max-tokens", 1024, 1, 1 << 20, &max_tokens)) ||
	    (ret = cli_int(&a, "batch", 32, 1, 4096, &batch)))
		goto out;
	if (top_p <= 0) {
		ret = hmoe_err(HMOE_EINPUT, "hmoe eval: --top-p must be > 0");
		goto out;
	}
	if (temperature == 0 && samples > 1) {
		fprintf(stderr, "hmoe eval: greedy decoding gives the same output for every "
			"sample; running 1 sample per problem\n");
		samples = 1;
	}
	ret = task ? hmoe_eval_arith(&set, task, (int)n) : hmoe_eval_load_jsonl(&set, jsonl);
	if (ret)
		goto out;
	if (jsonl && cli_has(&a, "n"))
		while (set.n > n) { /* the first n problems */
			set.n--;
			free(set.p[set.n].prompt);
			free(set.p[set.n].answer);
		}
	if ((dump_path = cli_str(&a, "dump", NULL)) && !(dump = fopen(dump_path, "w"))) {
		ret = hmoe_err(HMOE_EINPUT, "%s: cannot create the dump file", dump_path);
		goto out;
	}
	if ((ret = session_open(&ses, &a, 1)))
		goto out;
	ret = run_eval(&ses, &set, (int)samples, temperature, top_p, seed, (int)max_tokens,
		       (int)batch, dump, &st, &wall_s);
	if (!ret)
		ret = print_summary(&a, &ses, task ? task : jsonl, set.n, (int)samples, temperature,
				    top_p, seed, (int)max_tokens, &st, wall_s);
out:
	if (dump && fclose(dump) && !ret)
		ret = hmoe_err(HMOE_EIO, "%s: write failed", dump_path);
	session_close(&ses);
	hmoe_eval_set_free(&set);
	cli_free(&a);
	return ret ? cli_fail(ret) : 0;
}
