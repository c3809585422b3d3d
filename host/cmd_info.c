/* cmd_info: `hmoe info`: what a checkpoint is, how big, and what a token costs.
 *
 *   hmoe info --model DIR [--json]
 *
 * Loads the checkpoint without fp32 copies (mapping and validating every tensor), then
 * prints the config summary, parameter counts (total, active per token) and the weight
 * bytes one decoded token reads as stored (FP8 codes + scales, bf16, ...).
 */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "hmoe_cli.h"
#include "hmoe_err.h"
#include "hmoe_model.h"

static const struct cli_flag info_flags[] = {
	{ "model", 1, "--model DIR    checkpoint folder (config.json + safetensors)" },
	{ "json", 0, "--json         one JSON object instead of text" },
	{ "help", 0, "--help         this message" },
};
#define N_INFO_FLAGS ((int)(sizeof(info_flags) / sizeof(info_flags[0])))

/* The dtype of the first routed expert's (or dense MLP's) gate_proj: how linears are stored. */
static const char *linear_dtype(const struct hmoe_model *m)
{
	const struct hmoe_layer *L = &m->layers[m->cfg.num_hidden_layers - 1];
	const struct hmoe_linear *l = L->is_moe ? &L->experts[0].w1 : &L->mlp.w1;

	return l->src ? hmoe_dtype_name(l->src->dtype) : "?";
}

static int count_dense(const struct hmoe_config *c)
{
	int n = 0;

	for (int l = 0; l < c->num_hidden_layers; l++)
		n += !hmoe_config_is_moe_layer(c, l);
	return n;
}

static int print_json(const struct hmoe_model *m, const struct hmoe_model_stats *s)
{
	const struct hmoe_config *c = &m->cfg;
	cJSON *o = cJSON_CreateObject();
	char *text;
	int dense = count_dense(c);

	if (!o)
		return hmoe_err(HMOE_ENOMEM, "out of memory");
	cJSON_AddStringToObject(o, "model", m->dir);
	cJSON_AddNumberToObject(o, "layers", c->num_hidden_layers);
	cJSON_AddNumberToObject(o, "dense_layers", dense);
	cJSON_AddNumberToObject(o, "moe_layers", c->num_hidden_layers - dense);
	cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
	cJSON_AddNumberToObject(o, "hidden_size", c->hidden_size);
	cJSON_AddNumberToObject(o, "intermediate_size", c->intermediate_size);
	cJSON_AddNumberToObject(o, "moe_intermediate_size", c->moe_intermediate_size);
	cJSON_AddNumberToObject(o, "heads", c->num_attention_heads);
	cJSON_AddNumberToObject(o, "q_lora_rank", c->q_lora_rank);
	cJSON_AddNumberToObject(o, "kv_lora_rank", c->kv_lora_rank);
	cJSON_AddNumberToObject(o, "qk_nope_head_dim", c->qk_nope_head_dim);
	cJSON_AddNumberToObject(o, "qk_rope_head_dim", c->qk_rope_head_dim);
	cJSON_AddNumberToObject(o, "v_head_dim", c->v_head_dim);
	cJSON_AddNumberToObject(o, "n_routed_experts", c->n_routed_experts);
	cJSON_AddNumberToObject(o, "n_shared_experts", c->n_shared_experts);
	cJSON_AddNumberToObject(o, "experts_per_token", c->num_experts_per_tok);
	cJSON_AddNumberToObject(o, "n_group", c->n_group);
	cJSON_AddNumberToObject(o, "topk_group", c->topk_group);
	cJSON_AddStringToObject(o, "scoring_func",
				c->scoring_func == HMOE_SCORE_SIGMOID ? "sigmoid" : "softmax");
	cJSON_AddNumberToObject(o, "routed_scaling_factor", c->routed_scaling_factor);
	cJSON_AddBoolToObject(o, "rope_yarn", c->rope_yarn);
	cJSON_AddNumberToObject(o, "rope_theta", c->rope_theta);
	cJSON_AddNumberToObject(o, "rope_factor", c->rope_factor);
	cJSON_AddNumberToObject(o, "rope_original_max_position_embeddings",
				c->rope_original_max_pos);
	cJSON_AddNumberToObject(o, "max_position_embeddings", c->max_position_embeddings);
	cJSON_AddBoolToObject(o, "fp8", c->fp8);
	cJSON_AddStringToObject(o, "linear_dtype", linear_dtype(m));
	cJSON_AddNumberToObject(o, "files", m->n_files);
	cJSON_AddNumberToObject(o, "tensors", m->n_tensors);
	cJSON_AddNumberToObject(o, "params_total", (double)s->params_total);
	cJSON_AddNumberToObject(o, "params_active", (double)s->params_active);
	cJSON_AddNumberToObject(o, "bytes_total", (double)s->bytes_total);
	cJSON_AddNumberToObject(o, "bytes_per_token", (double)s->bytes_per_token);
	text = cJSON_Print(o);
	cJSON_Delete(o);
	if (!text)
		return hmoe_err(HMOE_ENOMEM, "out of memory");
	printf("%s\n", text);
	cJSON_free(text);
	return 0;
}

static void print_text(const struct hmoe_model *m, const struct hmoe_model_stats *s)
{
	const struct hmoe_config *c = &m->cfg;
	int dense = count_dense(c);

	printf("model       %s (%d file%s, %d tensors)\n", m->dir, m->n_files,
	       m->n_files > 1 ? "s" : "", m->n_tensors);
	printf("layers      %d (%d dense, %d MoE)\n", c->num_hidden_layers, dense,
	       c->num_hidden_layers - dense);
	printf("dims        hidden %d, vocab %d, dense inter %d, expert inter %d\n",
	       c->hidden_size, c->vocab_size, c->intermediate_size, c->moe_intermediate_size);
	printf("attention   MLA, %d heads, q_lora %d, kv_lora %d, head dims nope %d rope %d v %d\n",
	       c->num_attention_heads, c->q_lora_rank, c->kv_lora_rank, c->qk_nope_head_dim,
	       c->qk_rope_head_dim, c->v_head_dim);
	printf("experts     %d routed + %d shared, top-%d, %d groups keep %d, %s, scale %g%s\n",
	       c->n_routed_experts, c->n_shared_experts, c->num_experts_per_tok, c->n_group,
	       c->topk_group, c->scoring_func == HMOE_SCORE_SIGMOID ? "sigmoid" : "softmax",
	       (double)c->routed_scaling_factor, c->noaux_tc ? ", bias (noaux_tc)" : "");
	if (c->rope_yarn)
		printf("rope        theta %g, YaRN factor %g, original %d, beta %g/%g, mscale %g/%g, "
		       "max positions %d\n",
		       (double)c->rope_theta, (double)c->rope_factor, c->rope_original_max_pos,
		       (double)c->rope_beta_fast, (double)c->rope_beta_slow,
		       (double)c->rope_mscale, (double)c->rope_mscale_all_dim,
		       c->max_position_embeddings);
	else
		printf("rope        theta %g, no scaling, max positions %d\n", (double)c->rope_theta,
		       c->max_position_embeddings);
	printf("weights     linears %s%s\n", linear_dtype(m),
	       c->fp8 ? " with 128x128 weight_scale_inv (quantization_config fp8)" : "");
	printf("params      %.3f B total, %.3f B active per token\n",
	       (double)s->params_total / 1e9, (double)s->params_active / 1e9);
	printf("bytes       %.3f GB total, %.3f GB read per decoded token\n",
	       (double)s->bytes_total / 1e9, (double)s->bytes_per_token / 1e9);
}

int cmd_info(int argc, char **argv)
{
	struct cli_args a;
	struct hmoe_model *m = NULL;
	struct hmoe_model_stats s;
	const char *dir;
	int ret;

	if ((ret = cli_parse(&a, "info", info_flags, N_INFO_FLAGS, argc, argv)))
		return cli_fail(ret);
	if (cli_has(&a, "help")) {
		cli_usage("info", "Summarise a checkpoint: config, parameters, bytes per token.",
			  info_flags, N_INFO_FLAGS);
		cli_free(&a);
		return 0;
	}
	if (a.n_positional)
		ret = hmoe_err(HMOE_EINPUT, "hmoe info: unexpected argument '%s'", a.positional[0]);
	if (!ret && !(ret = cli_req(&a, "model", &dir)) && !(ret = hmoe_model_load(&m, dir, 0))) {
		hmoe_model_stats(m, &s);
		if (cli_has(&a, "json"))
			ret = print_json(m, &s);
		else
			print_text(m, &s);
	}
	hmoe_model_free(m);
	cli_free(&a);
	return ret ? cli_fail(ret) : 0;
}
