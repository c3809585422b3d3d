/* session: open/close a model with its tokenizer, threads, experts, forward pass. */
#include "session.h"

#include <string.h>

#include "hmoe_clock.h"
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
 * order, where a missing GPU (HMOE_EDEVICE) moves on to the next with a note on stderr.
 * Every alternative must name a known mode, whether or not it is reached. */
#define ATTN_MAX_ALTS 4
struct attn_alt {
	int cuda;
	enum hmoe_attn form;   /* the CPU attention form */
	char name[16];
};

static int parse_attn(const struct cli_args *a, struct attn_alt *alts, int *n_alts)
{
	const char *spec = cli_str(a, "attn", "auto"), *p = spec;
	int ret;

	for (*n_alts = 0;; (*n_alts)++) {
		struct attn_alt *t = &alts[*n_alts];
		size_t n = strcspn(p, "|");

		if (n == 0 || n >= sizeof(t->name) || *n_alts == ATTN_MAX_ALTS)
			return hmoe_err(HMOE_EINPUT, "hmoe %s: --attn '%s': expected cuda, cpu, auto, "
					"naive or absorb, or up to %d alternatives A|B", a->cmd, spec,
					ATTN_MAX_ALTS);
		snprintf(t->name, sizeof(t->name), "%.*s", (int)n, p);
		t->cuda = !strcmp(t->name, "cuda");
		t->form = HMOE_ATTN_AUTO;
		if (!t->cuda && strcmp(t->name, "cpu") && (ret = hmoe_attn_parse(t->name, &t->form)))
			return hmoe_err_ctx(ret, "hmoe %s: --attn", a->cmd);
		if (!p[n]) {
			(*n_alts)++;
			return 0;
		}
		p += n + 1;
	}
}

int session_open(struct session *s, const struct cli_args *a, unsigned flags)
{
	const char *dir, *experts = cli_str(a, "experts", "cpu-f32");
	const char *micro_str = cli_str(a, "micro-batches", "1");
	struct attn_alt alts[ATTN_MAX_ALTS];
	double t0 = hmoe_now_s();
	long threads;
	int ret, micro = 0, n_alts, i;

	memset(s, 0, sizeof(*s));
	if ((ret = cli_req(a, "model", &dir)) ||
	    (ret = cli_int(a, "threads", 0, 0, 1024, &threads)) ||
	    (ret = parse_attn(a, alts, &n_alts)))
		return ret;
	if (!strcmp(micro_str, "1") || !strcmp(micro_str, "2"))
		micro = micro_str[0] - '0';
	if (!micro)
		return hmoe_err(HMOE_EINPUT, "hmoe %s: --micro-batches '%s': expected 1 or 2",
				a->cmd, micro_str);
	/* a lone cuda that cannot serve this command is an input error; as one of
	 * several alternatives it is only skipped (below) */
	if (n_alts == 1 && alts[0].cuda && !(flags & SESSION_GPU_OK))
		return hmoe_err(HMOE_EINPUT, "hmoe %s: --attn cuda is not supported here (CPU only)",
				a->cmd);
	if (n_alts == 1 && alts[0].cuda && micro > 1)
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
	for (i = 0; alts[i].cuda; i++) {
		if (!(flags & SESSION_GPU_OK) || micro > 1)
			ret = hmoe_err(HMOE_EDEVICE, "the GPU path does not run hmoe %s%s", a->cmd,
				       micro > 1 ? " with --micro-batches 2" : "");
		else
			ret = session_open_cuda(s);
		if (!ret) {
			s->load_s = hmoe_now_s() - t0;
			return 0;
		}
		if (ret != -HMOE_EDEVICE || i + 1 == n_alts)
			goto err;
		fprintf(stderr, "hmoe: --attn cuda unavailable (%s); trying %s\n",
			hmoe_last_error(), alts[i + 1].name);
		hmoe_cuda_fwd_free(s->cuda_fwd);
		s->cuda_fwd = NULL;
		s->cuda = NULL;
	}
	if (!s->experts) {
		ret = hmoe_expert_open(&s->experts, experts, s->model, s->pool);
		if (ret)
			goto err;
	}
	ret = hmoe_forward_create(&s->fwd, s->model, s->experts, s->pool);
	if (ret)
		goto err;
	hmoe_forward_set_attn(s->fwd, alts[i].form);
	ret = hmoe_forward_set_micro_batches(s->fwd, micro);
	if (ret)
		goto err;
	s->load_s = hmoe_now_s() - t0;
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
