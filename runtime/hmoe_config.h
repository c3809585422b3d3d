/* hmoe_config: the model configuration, read from a Hugging Face config.json.
 *
 * Field names follow the HF DeepSeek-V3 config (MODEL.md section 1). Every size the
 * runtime uses comes from here; nothing is hard-coded to the 671B model.
 */
#ifndef HMOE_CONFIG_H
#define HMOE_CONFIG_H

#include <stdint.h>

enum hmoe_score_func { HMOE_SCORE_SIGMOID, HMOE_SCORE_SOFTMAX };

struct hmoe_config {
	int vocab_size;            /* logits width (129280 for R1; >= tokenizer size) */
	int hidden_size;           /* dim */
	int intermediate_size;     /* dense MLP inter dim */
	int moe_intermediate_size; /* one routed expert's inter dim */
	int num_hidden_layers;     /* main layers, MTP layers not included */
	int first_k_dense_replace; /* layers [0, k) are dense */
	int moe_layer_freq;        /* MoE when layer >= k && layer % freq == 0 */
	int num_attention_heads;
	int num_key_value_heads;

	int n_routed_experts;
	int n_shared_experts;      /* shared expert inter = n_shared * moe_inter */
	int num_experts_per_tok;   /* top-k */
	int n_group;               /* expert groups for group-limited routing */
	int topk_group;            /* groups kept */
	enum hmoe_score_func scoring_func;
	int noaux_tc;              /* topk_method "noaux_tc": the gate has a correction bias */
	int norm_topk_prob;        /* renormalise the top-k weights */
	float routed_scaling_factor;

	int q_lora_rank;           /* 0: a single wq (V2-Lite style) */
	int kv_lora_rank;
	int qk_nope_head_dim;
	int qk_rope_head_dim;
	int v_head_dim;

	float rope_theta;
	int rope_yarn;             /* rope_scaling.type == "yarn" */
	float rope_factor;
	int rope_original_max_pos; /* original_max_position_embeddings */
	float rope_beta_fast;
	float rope_beta_slow;
	float rope_mscale;
	float rope_mscale_all_dim;

	float rms_norm_eps;
	int max_position_embeddings;
	int bos_token_id;
	int eos_token_id;
	int num_nextn_predict_layers;
	int tie_word_embeddings;

	int fp8;                   /* quantization_config.quant_method == "fp8" */
	int fp8_block[2];          /* weight_block_size, [128, 128] */
};

/* Fills cfg with the DeepSeek-V3 671B values (HF DeepseekV3Config defaults, MODEL.md
 * section 1), no YaRN and no fp8: the starting point the parser overrides. */
void hmoe_config_defaults(struct hmoe_config *cfg);
/* Checks sizes and routing settings; the error names the offending field. */
int hmoe_config_validate(const struct hmoe_config *cfg, const char *what);

/* Parses config.json at path. Missing optional fields take DeepSeek-V3 defaults;
 * missing required sizes and impossible values are errors that name the field. */
int hmoe_config_load(struct hmoe_config *cfg, const char *path);
/* Parses from a NUL-terminated JSON text; `what` names the source in errors. */
int hmoe_config_parse(struct hmoe_config *cfg, const char *json, const char *what);
/* Writes cfg as an HF-style config.json (used by mktiny). */
int hmoe_config_save(const struct hmoe_config *cfg, const char *path);

static inline int hmoe_config_is_moe_layer(const struct hmoe_config *c, int layer)
{
	return c->n_routed_experts > 0 && layer >= c->first_k_dense_replace &&
	       layer % (c->moe_layer_freq > 0 ? c->moe_layer_freq : 1) == 0;
}

static inline int hmoe_config_qk_head_dim(const struct hmoe_config *c)
{
	return c->qk_nope_head_dim + c->qk_rope_head_dim;
}

#endif
