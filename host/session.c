/* session: open/close a model with its tokenizer, threads, experts, forward pass. */
#include "session.h"

#include <string.h>

#include "bench_clock.h"
#include "hmoe_err.h"

int session_open(struct session *s, const struct cli_args *a, int with_tokenizer)
{
	const char *dir, *experts = cli_str(a, "experts", "cpu-f32");
	enum hmoe_attn attn = HMOE_ATTN_AUTO;
	double t0 = clock_now_s();
	long threads;
	int ret;

	memset(s, 0, sizeof(*s));
	if ((ret = cli_req(a, "model", &dir)) ||
	    (ret = cli_int(a, "threads", 0, 0, 1024, &threads)) ||
	    (ret = hmoe_attn_parse(cli_str(a, "attn", "auto"), &attn)))
		return ret;
	ret = hmoe_model_load(&s->model, dir, HMOE_LOAD_F32);
	if (ret)
		goto err;
	if (with_tokenizer) {
		ret = hmoe_tok_load_dir(&s->tok, dir);
		if (ret)
			goto err;
	}
	ret = hmoe_pool_create(&s->pool, (int)threads);
	if (ret)
		goto err;
	ret = hmoe_expert_open(&s->experts, experts, s->model, s->pool);
	if (ret)
		goto err;
	ret = hmoe_forward_create(&s->fwd, s->model, s->experts, s->pool);
	if (ret)
		goto err;
	hmoe_forward_set_attn(s->fwd, attn);
	s->load_s = clock_now_s() - t0;
	return 0;
err:
	session_close(s);
	return ret;
}

void session_close(struct session *s)
{
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
