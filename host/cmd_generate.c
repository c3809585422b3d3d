/* cmd_generate: `hmoe generate`: prompt in, streamed text out.
 *
 * --prompt: prefill runs the whole prompt as one batch (naive MLA), then each new token
 * is one decode step (absorbed MLA). With --chat the prompt goes through the R1 template,
 * whose generation prompt opens "<think>\n"; everything up to "</think>" is the model's
 * reasoning and is shown dimmed on a terminal (plain, with its tags, when piped), the
 * rest is the answer. Timings go to stderr so stdout carries only the text.
 *
 * --prompts FILE: many requests through the continuous-batching engine
 * (runtime/hmoe_batch.h, docs/runtime.md): one JSON line per finished request on stdout,
 * in completion order, and a summary line on stderr. Each request's text is the one a
 * --prompt run with the same settings and seed prints (with --prefill-chunk >= 3, or a
 * chunk covering the prompt). CPU forward pass only: --attn cuda runs one --prompt.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "hmoe_clock.h"
#include "hmoe_batch.h"
#include "hmoe_chat.h"
#include "hmoe_energy.h"
#include "hmoe_jsonl.h"
#include "hmoe_cli.h"
#include "hmoe_err.h"
#include "hmoe_sample.h"
#include "session.h"

static const struct cli_flag flags[] = {
	SESSION_FLAGS,
	{ "prompt", 1, "--prompt S         the prompt text" },
	{ "prompts", 1, "--prompts FILE     many requests, one JSON object per line: {\"prompt\": S} and optional \"max_tokens\", \"seed\", \"arrive\" (engine step), \"id\"; one JSON line per finished request" },
	{ "max-seqs", 1, "--max-seqs N       --prompts: requests running at once (default 8)" },
	{ "prefill-chunk", 1, "--prefill-chunk N  --prompts: prompt tokens per prefill chunk (default 64)" },
	{ "max-batch-tokens", 1, "--max-batch-tokens N  --prompts: tokens per forward call (default 256, at least the chunk)" },
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

/* Sampling flags: the settings of --prompt, the defaults of every --prompts request. */
struct sampling {
	double temperature, top_p;
	long max_tokens, top_k;
	uint64_t seed;
};

static int sampling_flags(const struct cli_args *a, struct sampling *sp)
{
	int ret;

	if ((ret = cli_int(a, "max-tokens", 256, 1, 1 << 20, &sp->max_tokens)) ||
	    (ret = cli_float(a, "temperature", HMOE_R1_TEMPERATURE, 0, 100, &sp->temperature)) ||
	    (ret = cli_float(a, "top-p", HMOE_R1_TOP_P, 0, 1, &sp->top_p)) ||
	    (ret = cli_int(a, "top-k", 0, 0, 1 << 30, &sp->top_k)) ||
	    (ret = cli_u64(a, "seed", 0, &sp->seed)))
		return ret;
	if (sp->top_p <= 0)
		return hmoe_err(HMOE_EINPUT, "hmoe generate: --top-p must be > 0");
	return 0;
}

/* ---- --prompts: many requests through the continuous-batching engine ---- */

/* Flags that only --prompts uses. */
static const char *const batch_flags[] = { "max-seqs", "prefill-chunk", "max-batch-tokens" };

/* One line of the --prompts file, and its request's output. */
struct request {
	char *prompt;
	long line;                 /* in the file, from 1 */
	long max_tokens;           /* 0: --max-tokens */
	int has_seed;
	uint64_t seed;
	long arrive;               /* engine step */
	cJSON *id;                 /* the line's "id", or NULL: the index is the id */
	int *ids, n_ids;           /* prompt token ids */
	struct hmoe_tok_stream stream;
	struct cli_text text;      /* generated so far */
};

struct prompts {
	const char *path;
	struct request *r;         /* [n] */
	int n, cap;
	int eos;
};

static void prompts_free(struct prompts *ps)
{
	for (int i = 0; ps->r && i < ps->n; i++) {
		free(ps->r[i].prompt);
		cJSON_Delete(ps->r[i].id);
		free(ps->r[i].ids);
		cli_text_free(&ps->r[i].text);
	}
	free(ps->r);
	ps->r = NULL;
	ps->n = 0;
}

/* A JSON number that is an integer in [lo, hi]. */
static int json_int(const cJSON *v, double lo, double hi, double *out)
{
	/* the range first: the cast is only defined for values that fit */
	if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi) ||
	    v->valuedouble != (double)(int64_t)v->valuedouble)
		return 0;
	*out = v->valuedouble;
	return 1;
}

/* Reads one request from a parsed line; errors name the file and line. */
static int parse_request(const struct prompts *ps, const cJSON *j, struct request *r)
{
	const char *path = ps->path;
	cJSON *f;
	double v;

	cJSON_ArrayForEach(f, j) {
		const char *k = f->string;

		if (!strcmp(k, "prompt")) {
			if (!cJSON_IsString(f) || !*f->valuestring)
				return hmoe_err(HMOE_EINPUT, "%s line %ld: \"prompt\" must be a "
						"non-empty string", path, r->line);
			free(r->prompt);
			if (!(r->prompt = strdup(f->valuestring)))
				return hmoe_err(HMOE_ENOMEM, "out of memory");
		} else if (!strcmp(k, "max_tokens")) {
			if (!json_int(f, 1, 1 << 20, &v))
				return hmoe_err(HMOE_EINPUT, "%s line %ld: \"max_tokens\" must be an "
						"integer in [1, %d]", path, r->line, 1 << 20);
			r->max_tokens = (long)v;
		} else if (!strcmp(k, "seed")) {
			/* JSON numbers are doubles: integers are exact up to 2^53 */
			if (!json_int(f, 0, 9007199254740992.0, &v))
				return hmoe_err(HMOE_EINPUT, "%s line %ld: \"seed\" must be an integer "
						"in [0, 2^53]", path, r->line);
			r->seed = (uint64_t)v;
			r->has_seed = 1;
		} else if (!strcmp(k, "arrive")) {
			if (!json_int(f, 0, 1e9, &v))
				return hmoe_err(HMOE_EINPUT, "%s line %ld: \"arrive\" must be an engine "
						"step, an integer in [0, 1e9]", path, r->line);
			r->arrive = (long)v;
		} else if (!strcmp(k, "id")) {
			if (!cJSON_IsString(f) && !cJSON_IsNumber(f))
				return hmoe_err(HMOE_EINPUT, "%s line %ld: \"id\" must be a string or "
						"a number", path, r->line);
			cJSON_Delete(r->id);
			if (!(r->id = cJSON_Duplicate(f, 1)))
				return hmoe_err(HMOE_ENOMEM, "out of memory");
		} else {
			return hmoe_err(HMOE_EINPUT, "%s line %ld: unknown field \"%s\" (expected "
					"prompt, max_tokens, seed, arrive, id)", path, r->line, k);
		}
	}
	if (!r->prompt)
		return hmoe_err(HMOE_EINPUT, "%s line %ld: \"prompt\" missing", path, r->line);
	return 0;
}

/* hmoe_jsonl_read callback: one request per object. */
static int load_request(void *arg, const cJSON *j, long lineno)
{
	struct prompts *ps = arg;
	struct request *r;

	if (ps->n == ps->cap) {
		int cap = ps->cap ? ps->cap * 2 : 16;
		void *p = realloc(ps->r, (size_t)cap * sizeof(*ps->r));

		if (!p)
			return hmoe_err(HMOE_ENOMEM, "%s: out of memory", ps->path);
		ps->r = p;
		ps->cap = cap;
	}
	r = &ps->r[ps->n++];
	memset(r, 0, sizeof(*r));
	r->line = lineno;
	return parse_request(ps, j, r);
}

/* Reads the --prompts file: one request per non-blank line. */
static int prompts_load(struct prompts *ps, const char *path)
{
	int ret;

	memset(ps, 0, sizeof(*ps));
	ps->path = path;
	ret = hmoe_jsonl_read(path, "no prompts (one JSON object per line: {\"prompt\": \"...\"})",
			      load_request, ps);
	if (ret)
		prompts_free(ps);
	return ret;
}

/* Engine callback: a request's new token joins its text (the stop id prints nothing,
 * as with --prompt). */
static int on_token(void *arg, const struct hmoe_batch_req *br, int tok, const float *logits)
{
	const struct prompts *ps = arg;
	struct request *r = br->user;

	(void)logits;
	return cli_text_token(&r->text, &r->stream, tok, ps->eos);
}

/* Engine callback: a request finished: its JSON line, at once. */
static int on_finish(void *arg, const struct hmoe_batch_req *br)
{
	const struct prompts *ps = arg;
	struct request *r = br->user;
	int index = (int)(r - ps->r), ret;
	char *out = NULL;
	cJSON *j;

	if ((ret = cli_text_flush(&r->text, &r->stream)) < 0)
		return ret;
	j = cJSON_CreateObject();
	if (!j || !cJSON_AddItemToObject(j, "id", r->id ? cJSON_Duplicate(r->id, 1)
						      : cJSON_CreateNumber(index)) ||
	    !cJSON_AddNumberToObject(j, "index", index) ||
	    !cJSON_AddStringToObject(j, "text", r->text.s ? r->text.s : "") ||
	    !cJSON_AddNumberToObject(j, "tokens", br->n_tokens) ||
	    !cJSON_AddNumberToObject(j, "prompt_tokens", br->n_prompt) ||
	    !cJSON_AddStringToObject(j, "finish", hmoe_batch_finish_name(br->finish)) ||
	    !(out = cJSON_PrintUnformatted(j))) {
		cJSON_Delete(j);
		return hmoe_err(HMOE_ENOMEM, "out of memory writing a result line");
	}
	printf("%s\n", out);
	fflush(stdout);
	free(out);
	cJSON_Delete(j);
	cli_text_free(&r->text); /* printed: no need to keep it */
	return 0;
}

static void print_batch_summary(const struct session *s, const struct hmoe_batch_stats *st,
				double wall_s)
{
	fprintf(stderr,
		"[batch: %ld requests in %ld steps (%ld mixed), up to %d at once, %d..%d tokens "
		"per step (mean %.1f)] [prefill %ld tokens in %ld chunks: %.1f tok/s] "
		"[decode %ld tokens: %.2f tok/s] [wall %.2f s, load %.2f s, experts %s]\n",
		st->finished, st->steps, st->mixed_steps, st->max_running, st->batch_min,
		st->batch_max, st->batch_mean, st->prefill_tokens, st->prefill_chunks,
		st->prefill_s > 0 ? st->prefill_tokens / st->prefill_s : 0.0, st->decode_tokens,
		st->decode_s > 0 ? st->decode_tokens / st->decode_s : 0.0, wall_s, s->load_s,
		s->experts->ops->name);
}

static int generate_prompts(const struct cli_args *a)
{
	struct session s = { 0 };
	struct prompts ps = { 0 };
	struct sampling sp;
	struct hmoe_batch *engine = NULL;
	struct hmoe_batch_opts o = { 0 };
	struct hmoe_energy *energy = NULL;
	struct hmoe_energy_opts eo = { .model = cli_str(a, "energy-model", NULL) };
	long max_seqs, chunk, budget;
	double t0;
	int ret;

	if (cli_has(a, "prompt"))
		return hmoe_err(HMOE_EINPUT, "hmoe generate: give --prompt or --prompts, not both");
	if (!strcmp(cli_str(a, "attn", "auto"), "cuda"))
		return hmoe_err(HMOE_EINPUT, "hmoe generate: --prompts runs on the CPU forward "
				"pass; with --attn cuda give one --prompt per run");
	if ((ret = sampling_flags(a, &sp)) ||
	    (ret = cli_int(a, "max-seqs", HMOE_BATCH_MAX_SEQS, 1, 4096, &max_seqs)) ||
	    (ret = cli_int(a, "prefill-chunk", HMOE_BATCH_PREFILL_CHUNK, 1, 1 << 20, &chunk)) ||
	    (ret = cli_int(a, "max-batch-tokens",
			   chunk > HMOE_BATCH_MAX_BATCH_TOKENS ? chunk : HMOE_BATCH_MAX_BATCH_TOKENS,
			   1, 1 << 22, &budget)))
		return ret;
	if (chunk > budget)
		return hmoe_err(HMOE_EINPUT, "hmoe generate: --prefill-chunk %ld is larger than "
				"--max-batch-tokens %ld (a chunk would never fit a step)", chunk,
				budget);
	if ((ret = prompts_load(&ps, cli_str(a, "prompts", ""))))
		return ret;
	ret = session_open(&s, a, SESSION_TOKENIZER);
	if (ret)
		goto out;
	ps.eos = hmoe_tok_eos(s.tok);
	for (int i = 0; i < ps.n; i++) {
		struct request *r = &ps.r[i];

		if ((ret = prompt_ids(&s, a, r->prompt, &r->ids, &r->n_ids))) {
			ret = hmoe_err_ctx(ret, "%s line %ld", ps.path, r->line);
			goto out;
		}
		if (r->n_ids == 0) {
			ret = hmoe_err(HMOE_EINPUT, "%s line %ld: the prompt has no tokens", ps.path,
				       r->line);
			goto out;
		}
		hmoe_tok_stream_init(&r->stream, s.tok, 1);
	}
	o = (struct hmoe_batch_opts){
		.max_seqs = (int)max_seqs, .prefill_chunk = (int)chunk,
		.max_batch_tokens = (int)budget, .n_valid = session_n_valid(&s),
		.on_token = on_token, .on_finish = on_finish, .arg = &ps,
	};
	/* joules per token by device and phase, a mixed step split by its tokens */
	if ((ret = hmoe_energy_open(&energy, &eo)))
		goto out;
	o.energy = energy;
	if ((ret = hmoe_batch_create(&engine, s.fwd, &s.model->cfg, &o)))
		goto out;
	for (int i = 0; i < ps.n; i++) {
		struct request *r = &ps.r[i];
		struct hmoe_batch_params p = {
			.prompt = r->ids, .n_prompt = r->n_ids,
			.max_tokens = (int)(r->max_tokens ? r->max_tokens : sp.max_tokens),
			.stop = &ps.eos, .n_stop = ps.eos >= 0,
			.temperature = (float)sp.temperature, .top_p = (float)sp.top_p,
			.top_k = (int)sp.top_k, .seed = r->has_seed ? r->seed : sp.seed,
			.arrive_step = r->arrive, .user = r,
		};

		if ((ret = hmoe_batch_submit(engine, &p, NULL))) {
			ret = hmoe_err_ctx(ret, "%s line %ld", ps.path, r->line);
			goto out;
		}
	}
	t0 = hmoe_now_s();
	if ((ret = hmoe_batch_run(engine)))
		goto out;
	print_batch_summary(&s, hmoe_batch_stats(engine), hmoe_now_s() - t0);
	hmoe_energy_print(energy, stderr);
out:
	hmoe_batch_free(engine);
	hmoe_energy_close(energy);
	session_close(&s);
	prompts_free(&ps);
	return ret;
}

/* ---- the command ---- */

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
	struct sampling sp;
	const char *prompt;
	double t0, t_prefill = 0, t_decode = 0;
	long max_tokens;
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
	if (cli_has(&a, "prompts")) {
		ret = generate_prompts(&a);
		goto out;
	}
	for (int i = 0; i < (int)(sizeof(batch_flags) / sizeof(batch_flags[0])); i++)
		if (cli_has(&a, batch_flags[i])) {
			ret = hmoe_err(HMOE_EINPUT, "hmoe generate: --%s needs --prompts",
				       batch_flags[i]);
			goto out;
		}
	if ((ret = cli_req(&a, "prompt", &prompt)) || (ret = sampling_flags(&a, &sp)))
		goto out;
	max_tokens = sp.max_tokens;
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
	hmoe_sampler_init(&sampler, (float)sp.temperature, (float)sp.top_p, (int)sp.top_k,
			  sp.seed);
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
	t0 = hmoe_now_s();
	ret = session_feed(&s, kv, ids, n_ids, logits);
	if (ret)
		goto out;
	t_prefill = hmoe_now_s() - t0;
	hmoe_energy_end(energy, HMOE_ENERGY_PREFILL, n_ids);
	printer_start(&pr);
	hmoe_energy_begin(energy, HMOE_ENERGY_DECODE);
	t0 = hmoe_now_s();
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
	t_decode = hmoe_now_s() - t0;
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
		s.experts ? s.experts->ops->name : "cuda (GPU)");
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
