/* session: open/close a model with its tokenizer, threads, experts, forward pass. */
#include "session.h"

#include <string.h>

#include "bench_clock.h"
#include "hmoe_err.h"

/* Sequence limits of the GPU path: its cache and prompt scratch are sized up front. */
#define CUDA_MAX_LEN 8192
#define CUDA_MAX_PROMPT 4096

static int session_open_cuda(struct session *s)
{
	char why[512];
	int ret;

	s->cuda = hmoe_cuda_open(why, sizeof(why));
	if (!s->cuda)
		return hmoe_err(HMOE_EDEVICE, "--attn cuda: no CUDA backend/device: %s", why);
	ret = s->cuda->init(0);
	if (ret)
		return hmoe_err(HMOE_EDEVICE, "--attn cuda: no CUDA backend/device: init failed (%d)",
				ret);
	return hmoe_cuda_fwd_create(&s->cuda_fwd, s->cuda, s->model, CUDA_MAX_LEN,
				    CUDA_MAX_PROMPT, s->experts);
}

/* --attn: "cuda", "cpu" (= auto) or a CPU attention form, or alternatives "A|B" tried in
 * order where a missing GPU (HMOE_EDEVICE) moves on to the next with a note on stderr. */
static int parse_attn_alt(const char *name, int *cuda, enum hmoe_attn *attn)
{
	*cuda = !strcmp(name, "cuda");
	*attn = HMOE_ATTN_AUTO;
	if (*cuda || !strcmp(name, "cpu"))
		return 0;
	return hmoe_attn_parse(name, attn);
}

int session_open(struct session *s, const struct cli_args *a, unsigned flags)
{
	const char *dir, *experts = cli_str(a, "experts", "cpu-f32");
	const char *attn_spec = cli_str(a, "attn", "auto");
	char attn_name[64];
	const char *next;
	int use_cuda;
	enum hmoe_attn attn;
	double t0 = clock_now_s();
	const char *micro_str = cli_str(a, "micro-batches", "1");
	long threads;
	int ret, micro = 0;

	memset(s, 0, sizeof(*s));
	if ((ret = cli_req(a, "model", &dir)) ||
	    (ret = cli_int(a, "threads", 0, 0, 1024, &threads)))
		return ret;
	/* every alternative must name a known mode, whether or not it is reached */
	for (const char *p = attn_spec;; p = next + 1) {
		size_t n;

		next = strchr(p, '|');
		n = next ? (size_t)(next - p) : strlen(p);
		if (n == 0 || n >= sizeof(attn_name))
			return hmoe_err(HMOE_EINPUT, "hmoe %s: --attn '%s': expected cuda, cpu, auto, "
					"naive or absorb, or alternatives A|B", a->cmd, attn_spec);
		snprintf(attn_name, sizeof(attn_name), "%.*s", (int)n, p);
		if ((ret = parse_attn_alt(attn_name, &use_cuda, &attn)))
			return hmoe_err_ctx(ret, "hmoe %s: --attn", a->cmd);
		if (!next)
			break;
	}
	next = attn_spec;
	snprintf(attn_name, sizeof(attn_name), "%.*s", (int)strcspn(attn_spec, "|"), attn_spec);
	parse_attn_alt(attn_name, &use_cuda, &attn);
	if (!strcmp(micro_str, "1") || !strcmp(micro_str, "2"))
		micro = micro_str[0] - '0';
	if (!micro)
		return hmoe_err(HMOE_EINPUT, "hmoe %s: --micro-batches '%s': expected 1 or 2",
				a->cmd, micro_str);
	if (use_cuda && !(flags & SESSION_GPU_OK) && !strchr(attn_spec, '|'))
		return hmoe_err(HMOE_EINPUT, "hmoe %s: --attn cuda is not supported here (CPU only)",
				a->cmd);
	if (use_cuda && micro > 1 && !strchr(attn_spec, '|'))
		return hmoe_err(HMOE_EINPUT, "hmoe %s: --micro-batches 2 needs the CPU forward pass; "
				"the GPU path (--attn cuda) runs one batch at a time", a->cmd);
	ret = hmoe_model_load(&s->model, dir, HMOE_LOAD_F32);
	if (ret)
		goto err;
	if (flags & SESSION_TOKENIZER) {
		ret = hmoe_tok_load_dir(&s->tok, dir);
		if (ret)
			goto err;
	}
	ret = hmoe_pool_create(&s->pool, (int)threads);
	if (ret)
		goto err;
	/* --experts given with the GPU: the routed experts run on that backend (cards, CPU
	 * fixed point) and the GPU runs the rest; without it they run on the GPU too */
	if (cli_has(a, "experts")) {
		ret = hmoe_expert_open(&s->experts, experts, s->model, s->pool);
		if (ret)
			goto err;
	}
	/* the alternatives in order: the GPU where it is wanted, usable and there */
	for (;;) {
		const char *bar = strchr(next, '|');

		snprintf(attn_name, sizeof(attn_name), "%.*s", (int)strcspn(next, "|"), next);
		parse_attn_alt(attn_name, &use_cuda, &attn);
		if (!use_cuda)
			break;
		if (!(flags & SESSION_GPU_OK) || micro > 1)
			ret = hmoe_err(HMOE_EDEVICE, "the GPU path does not run hmoe %s%s", a->cmd,
				       micro > 1 ? " with --micro-batches 2" : "");
		else
			ret = session_open_cuda(s);
		if (!ret) {
			s->load_s = clock_now_s() - t0;
			return 0;
		}
		if (ret != -HMOE_EDEVICE || !bar)
			goto err;
		fprintf(stderr, "hmoe: --attn cuda unavailable (%s); trying %.*s\n",
			hmoe_last_error(), (int)strcspn(bar + 1, "|"), bar + 1);
		hmoe_cuda_fwd_free(s->cuda_fwd);
		s->cuda_fwd = NULL;
		s->cuda = NULL;
		next = bar + 1;
	}
	if (!s->experts) {
		ret = hmoe_expert_open(&s->experts, experts, s->model, s->pool);
		if (ret)
			goto err;
	}
	ret = hmoe_forward_create(&s->fwd, s->model, s->experts, s->pool);
	if (ret)
		goto err;
	hmoe_forward_set_attn(s->fwd, attn);
	ret = hmoe_forward_set_micro_batches(s->fwd, micro);
	if (ret)
		goto err;
	s->load_s = clock_now_s() - t0;
	return 0;
err:
	session_close(s);
	return ret;
}

int session_feed(struct session *s, struct hmoe_kv *kv, const int *tokens, int n,
		 float *logits)
{
	int ret;

	if (!s->cuda_fwd)
		return hmoe_forward_seq(s->fwd, kv, tokens, n, 1, logits);
	ret = hmoe_cuda_fwd_feed(s->cuda_fwd, tokens, n, logits);
	if (!ret)
		kv->len += n;
	return ret;
}

void session_close(struct session *s)
{
	hmoe_cuda_fwd_free(s->cuda_fwd);
	hmoe_forward_free(s->fwd);
	hmoe_expert_close(s->experts);
	hmoe_pool_destroy(s->pool);
	hmoe_tok_free(s->tok);
	hmoe_model_free(s->model);
	memset(s, 0, sizeof(*s));
}

int session_n_valid(const struct session *s)
{
	int n = s->model->cfg.vocab_size;

	if (s->tok && hmoe_tok_n_vocab(s->tok) < n)
		n = hmoe_tok_n_vocab(s->tok);
	return n;
}
