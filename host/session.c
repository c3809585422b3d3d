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
				    CUDA_MAX_PROMPT);
}

int session_open(struct session *s, const struct cli_args *a, unsigned flags)
{
	const char *dir, *experts = cli_str(a, "experts", "cpu-f32");
	const char *attn_name = cli_str(a, "attn", "auto");
	int use_cuda = !strcmp(attn_name, "cuda");
	enum hmoe_attn attn = HMOE_ATTN_AUTO;
	double t0 = clock_now_s();
	const char *micro_str = cli_str(a, "micro-batches", "1");
	long threads;
	int ret, micro = 0;

	memset(s, 0, sizeof(*s));
	if ((ret = cli_req(a, "model", &dir)) ||
	    (ret = cli_int(a, "threads", 0, 0, 1024, &threads)) ||
	    (!use_cuda && (ret = hmoe_attn_parse(attn_name, &attn))))
		return ret;
	if (!strcmp(micro_str, "1") || !strcmp(micro_str, "2"))
		micro = micro_str[0] - '0';
	if (!micro)
		return hmoe_err(HMOE_EINPUT, "hmoe %s: --micro-batches '%s': expected 1 or 2",
				a->cmd, micro_str);
	if (use_cuda && !(flags & SESSION_GPU_OK))
		return hmoe_err(HMOE_EINPUT, "hmoe %s: --attn cuda is not supported here (CPU only)",
				a->cmd);
	if (use_cuda && micro > 1)
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
	if (use_cuda) {
		ret = session_open_cuda(s);
		if (ret)
			goto err;
		s->load_s = clock_now_s() - t0;
		return 0;
	}
	ret = hmoe_expert_open(&s->experts, experts, s->model, s->pool);
	if (ret)
		goto err;
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
