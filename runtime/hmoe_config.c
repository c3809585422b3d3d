/* hmoe_config: config.json (Hugging Face DeepSeek-V3 field names) to struct hmoe_config
 * and back (see hmoe_config.h, MODEL.md section 1, docs/checkpoint.md).
 *
 * Required: every size the runtime allocates with (vocab, hidden, layers, heads, MLA
 * ranks and head dims, and the expert sizes when there are routed experts). Optional:
 * everything that has a DeepSeek-V3 default (routing, norms, rope). Absent rope_scaling
 * means no YaRN; absent quantization_config means the weights are not FP8.
 */
#include "hmoe_config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "hmoe_err.h"

void hmoe_config_defaults(struct hmoe_config *c)
{
	memset(c, 0, sizeof(*c));
	c->vocab_size = 129280;
	c->hidden_size = 7168;
	c->intermediate_size = 18432;
	c->moe_intermediate_size = 2048;
	c->num_hidden_layers = 61;
	c->first_k_dense_replace = 3;
	c->moe_layer_freq = 1;
	c->num_attention_heads = 128;
	c->num_key_value_heads = 128;
	c->n_routed_experts = 256;
	c->n_shared_experts = 1;
	c->num_experts_per_tok = 8;
	c->n_group = 8;
	c->topk_group = 4;
	c->scoring_func = HMOE_SCORE_SIGMOID;
	c->noaux_tc = 1;
	c->norm_topk_prob = 1;
	c->routed_scaling_factor = 2.5f;
	c->q_lora_rank = 1536;
	c->kv_lora_rank = 512;
	c->qk_nope_head_dim = 128;
	c->qk_rope_head_dim = 64;
	c->v_head_dim = 128;
	c->rope_theta = 10000.0f;
	c->rope_yarn = 0;
	c->rope_factor = 1.0f;
	c->rope_original_max_pos = 4096;
	c->rope_beta_fast = 32.0f;
	c->rope_beta_slow = 1.0f;
	c->rope_mscale = 1.0f;
	c->rope_mscale_all_dim = 1.0f;
	c->rms_norm_eps = 1e-6f;
	c->max_position_embeddings = 4096;
	c->bos_token_id = 0;
	c->eos_token_id = 1;
	c->num_nextn_predict_layers = 0;
	c->tie_word_embeddings = 0;
	c->fp8 = 0;
	c->fp8_block[0] = 128;
	c->fp8_block[1] = 128;
}

/* ---------------------------------------------------------------------------------- */
/* parsing */

enum { OPTIONAL, REQUIRED, NULL_IS_ZERO = 4 };

/* Reads integer field `name` of obj (prefix names the enclosing object in errors). */
static int get_int(const cJSON *obj, const char *what, const char *prefix, const char *name,
		   int flags, int *out)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, name);
	double v;

	if (!j || (cJSON_IsNull(j) && !(flags & NULL_IS_ZERO))) {
		if (flags & REQUIRED)
			return hmoe_err(HMOE_EINPUT, "%s: required field %s%s is missing", what,
					prefix, name);
		return 0;
	}
	if (cJSON_IsNull(j)) {
		*out = 0;
		return 0;
	}
	/* eos_token_id may be a list in some configs: the first id is the one we stop at. */
	if (cJSON_IsArray(j) && cJSON_GetArraySize(j) > 0 && !strcmp(name, "eos_token_id"))
		j = cJSON_GetArrayItem(j, 0);
	if (!cJSON_IsNumber(j))
		return hmoe_err(HMOE_EINPUT, "%s: field %s%s must be an integer", what, prefix,
				name);
	v = j->valuedouble;
	if (v != floor(v) || v < -2147483648.0 || v > 2147483647.0)
		return hmoe_err(HMOE_EINPUT, "%s: field %s%s = %g is not a 32-bit integer", what,
				prefix, name, v);
	*out = (int)v;
	return 0;
}

static int get_float(const cJSON *obj, const char *what, const char *prefix, const char *name,
		     float *out)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, name);

	if (!j || cJSON_IsNull(j))
		return 0;
	if (!cJSON_IsNumber(j) || !isfinite(j->valuedouble))
		return hmoe_err(HMOE_EINPUT, "%s: field %s%s must be a finite number", what, prefix,
				name);
	*out = (float)j->valuedouble;
	return 0;
}

static int get_bool(const cJSON *obj, const char *what, const char *name, int *out)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, name);

	if (!j || cJSON_IsNull(j))
		return 0;
	if (!cJSON_IsBool(j))
		return hmoe_err(HMOE_EINPUT, "%s: field %s must be true or false", what, name);
	*out = cJSON_IsTrue(j);
	return 0;
}

/* String field: NULL when absent; error when present and not a string. */
static int get_str(const cJSON *obj, const char *what, const char *prefix, const char *name,
		   const char **out)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, name);

	*out = NULL;
	if (!j || cJSON_IsNull(j))
		return 0;
	if (!cJSON_IsString(j))
		return hmoe_err(HMOE_EINPUT, "%s: field %s%s must be a string", what, prefix, name);
	*out = j->valuestring;
	return 0;
}

static int parse_rope_scaling(struct hmoe_config *c, const cJSON *rs, const char *what)
{
	const char *p = "rope_scaling.", *type = NULL, *rtype = NULL;
	int ret = 0;

	if (!rs || cJSON_IsNull(rs))
		return 0;
	if (!cJSON_IsObject(rs))
		return hmoe_err(HMOE_EINPUT, "%s: field rope_scaling must be an object or null", what);
	if ((ret = get_str(rs, what, p, "type", &type)) ||
	    (ret = get_str(rs, what, p, "rope_type", &rtype)))
		return ret;
	if (!type)
		type = rtype;
	if (!type)
		return hmoe_err(HMOE_EINPUT, "%s: rope_scaling has no \"type\"", what);
	if (strcmp(type, "yarn"))
		return hmoe_err(HMOE_EINPUT,
				"%s: rope_scaling.type \"%s\" is not supported (only \"yarn\")", what,
				type);
	c->rope_yarn = 1;
	if (!cJSON_GetObjectItemCaseSensitive(rs, "factor"))
		return hmoe_err(HMOE_EINPUT, "%s: required field rope_scaling.factor is missing",
				what);
	if ((ret = get_float(rs, what, p, "factor", &c->rope_factor)) ||
	    (ret = get_int(rs, what, p, "original_max_position_embeddings", OPTIONAL,
			   &c->rope_original_max_pos)) ||
	    (ret = get_float(rs, what, p, "beta_fast", &c->rope_beta_fast)) ||
	    (ret = get_float(rs, what, p, "beta_slow", &c->rope_beta_slow)) ||
	    (ret = get_float(rs, what, p, "mscale", &c->rope_mscale)) ||
	    (ret = get_float(rs, what, p, "mscale_all_dim", &c->rope_mscale_all_dim)))
		return ret;
	return 0;
}

static int parse_quant(struct hmoe_config *c, const cJSON *q, const char *what)
{
	const char *p = "quantization_config.", *method = NULL, *fmt = NULL, *act = NULL;
	const cJSON *bs;
	int ret;

	if (!q || cJSON_IsNull(q))
		return 0;
	if (!cJSON_IsObject(q))
		return hmoe_err(HMOE_EINPUT, "%s: field quantization_config must be an object", what);
	if ((ret = get_str(q, what, p, "quant_method", &method)) ||
	    (ret = get_str(q, what, p, "fmt", &fmt)) ||
	    (ret = get_str(q, what, p, "activation_scheme", &act)))
		return ret;
	if (!method)
		return hmoe_err(HMOE_EINPUT, "%s: required field quantization_config.quant_method "
				"is missing", what);
	if (strcmp(method, "fp8"))
		return hmoe_err(HMOE_EINPUT, "%s: quantization_config.quant_method \"%s\" is not "
				"supported (only \"fp8\")", what, method);
	if (fmt && strcmp(fmt, "e4m3"))
		return hmoe_err(HMOE_EINPUT, "%s: quantization_config.fmt \"%s\" is not supported "
				"(only \"e4m3\")", what, fmt);
	c->fp8 = 1;
	bs = cJSON_GetObjectItemCaseSensitive(q, "weight_block_size");
	if (bs) {
		int64_t v[2];

		if (!cJSON_IsArray(bs) || cJSON_GetArraySize(bs) != 2)
			return hmoe_err(HMOE_EINPUT, "%s: quantization_config.weight_block_size must "
					"be [rows, cols]", what);
		for (int i = 0; i < 2; i++) {
			const cJSON *it = cJSON_GetArrayItem(bs, i);

			if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) ||
			    it->valuedouble < 1 || it->valuedouble > 65536)
				return hmoe_err(HMOE_EINPUT, "%s: quantization_config.weight_block_size"
						"[%d] must be an integer in [1, 65536]", what, i);
			v[i] = (int64_t)it->valuedouble;
			c->fp8_block[i] = (int)v[i];
		}
	}
	return 0;
}

int hmoe_config_parse(struct hmoe_config *c, const char *json, const char *what)
{
	cJSON *root;
	const char *s = NULL;
	int ret = 0;

	hmoe_config_defaults(c);
	root = cJSON_Parse(json);
	if (!root) {
		const char *at = cJSON_GetErrorPtr();

		return hmoe_err(HMOE_EINPUT, "%s: malformed JSON near byte %zu", what,
				at ? (size_t)(at - json) : (size_t)0);
	}
	if (!cJSON_IsObject(root)) {
		ret = hmoe_err(HMOE_EINPUT, "%s: not a JSON object", what);
		goto out;
	}
#define INT(name, flags) \
	if ((ret = get_int(root, what, "", #name, flags, &c->name))) \
		goto out
#define FLT(name) \
	if ((ret = get_float(root, what, "", #name, &c->name))) \
		goto out
	INT(vocab_size, REQUIRED);
	INT(hidden_size, REQUIRED);
	INT(intermediate_size, REQUIRED);
	INT(num_hidden_layers, REQUIRED);
	INT(num_attention_heads, REQUIRED);
	c->num_key_value_heads = c->num_attention_heads;
	INT(num_key_value_heads, OPTIONAL);
	INT(n_routed_experts, REQUIRED | NULL_IS_ZERO);
	if (c->n_routed_experts > 0) {
		INT(moe_intermediate_size, REQUIRED);
		INT(num_experts_per_tok, REQUIRED);
	} else {
		INT(moe_intermediate_size, OPTIONAL | NULL_IS_ZERO);
		INT(num_experts_per_tok, OPTIONAL | NULL_IS_ZERO);
	}
	INT(n_shared_experts, OPTIONAL | NULL_IS_ZERO);
	INT(first_k_dense_replace, OPTIONAL);
	INT(moe_layer_freq, OPTIONAL);
	INT(n_group, OPTIONAL | NULL_IS_ZERO);
	INT(topk_group, OPTIONAL | NULL_IS_ZERO);
	INT(q_lora_rank, REQUIRED | NULL_IS_ZERO);
	INT(kv_lora_rank, REQUIRED);
	INT(qk_nope_head_dim, REQUIRED);
	INT(qk_rope_head_dim, REQUIRED);
	INT(v_head_dim, REQUIRED);
	INT(max_position_embeddings, OPTIONAL);
	INT(bos_token_id, OPTIONAL);
	INT(eos_token_id, OPTIONAL);
	INT(num_nextn_predict_layers, OPTIONAL | NULL_IS_ZERO);
	FLT(routed_scaling_factor);
	FLT(rope_theta);
	FLT(rms_norm_eps);
#undef INT
#undef FLT
	if ((ret = get_bool(root, what, "norm_topk_prob", &c->norm_topk_prob)) ||
	    (ret = get_bool(root, what, "tie_word_embeddings", &c->tie_word_embeddings)))
		goto out;

	if ((ret = get_str(root, what, "", "scoring_func", &s)))
		goto out;
	if (s) {
		if (!strcmp(s, "sigmoid"))
			c->scoring_func = HMOE_SCORE_SIGMOID;
		else if (!strcmp(s, "softmax"))
			c->scoring_func = HMOE_SCORE_SOFTMAX;
		else {
			ret = hmoe_err(HMOE_EINPUT, "%s: scoring_func \"%s\" is not supported "
				       "(sigmoid or softmax)", what, s);
			goto out;
		}
	}
	if ((ret = get_str(root, what, "", "topk_method", &s)))
		goto out;
	if (s) {
		if (!strcmp(s, "noaux_tc"))
			c->noaux_tc = 1;
		else if (!strcmp(s, "greedy") || !strcmp(s, "group_limited_greedy"))
			c->noaux_tc = 0;
		else {
			ret = hmoe_err(HMOE_EINPUT, "%s: topk_method \"%s\" is not supported "
				       "(noaux_tc, greedy, group_limited_greedy)", what, s);
			goto out;
		}
	}
	if ((ret = get_str(root, what, "", "hidden_act", &s)))
		goto out;
	if (s && strcmp(s, "silu")) {
		ret = hmoe_err(HMOE_EINPUT, "%s: hidden_act \"%s\" is not supported (only silu)",
			       what, s);
		goto out;
	}
	{
		int bias = 0;

		if ((ret = get_bool(root, what, "attention_bias", &bias)))
			goto out;
		if (bias) {
			ret = hmoe_err(HMOE_EINPUT, "%s: attention_bias true is not supported", what);
			goto out;
		}
	}
	if ((ret = parse_rope_scaling(c, cJSON_GetObjectItemCaseSensitive(root, "rope_scaling"),
				      what)) ||
	    (ret = parse_quant(c, cJSON_GetObjectItemCaseSensitive(root, "quantization_config"),
			       what)))
		goto out;
	ret = hmoe_config_validate(c, what);
out:
	cJSON_Delete(root);
	return ret;
}

int hmoe_config_validate(const struct hmoe_config *c, const char *what)
{
#define POSITIVE(f) \
	if (c->f <= 0) \
		return hmoe_err(HMOE_EINPUT, "%s: %s must be positive, got %d", what, #f, c->f)
	POSITIVE(vocab_size);
	POSITIVE(hidden_size);
	POSITIVE(num_hidden_layers);
	POSITIVE(num_attention_heads);
	POSITIVE(num_key_value_heads);
	POSITIVE(kv_lora_rank);
	POSITIVE(qk_nope_head_dim);
	POSITIVE(qk_rope_head_dim);
	POSITIVE(v_head_dim);
	POSITIVE(moe_layer_freq);
	POSITIVE(max_position_embeddings);
#undef POSITIVE
	if (c->q_lora_rank < 0)
		return hmoe_err(HMOE_EINPUT, "%s: q_lora_rank must be >= 0 (0 or null: no q LoRA), "
				"got %d", what, c->q_lora_rank);
	if (c->qk_rope_head_dim % 2)
		return hmoe_err(HMOE_EINPUT, "%s: qk_rope_head_dim %d must be even (rotary pairs)",
				what, c->qk_rope_head_dim);
	/* Sanity bounds, far above any real model, that keep size products in range. */
	if (c->hidden_size > 65536 || c->vocab_size > (1 << 24) || c->num_hidden_layers > 1024 ||
	    c->num_attention_heads > 1024 || c->qk_nope_head_dim > 4096 ||
	    c->qk_rope_head_dim > 4096 || c->v_head_dim > 4096 || c->kv_lora_rank > 65536 ||
	    c->q_lora_rank > 65536)
		return hmoe_err(HMOE_EINPUT, "%s: a size is implausibly large (hidden_size %d, "
				"vocab_size %d, layers %d, heads %d, head dims %d/%d/%d)", what,
				c->hidden_size, c->vocab_size, c->num_hidden_layers,
				c->num_attention_heads, c->qk_nope_head_dim, c->qk_rope_head_dim,
				c->v_head_dim);
	if (c->first_k_dense_replace < 0)
		return hmoe_err(HMOE_EINPUT, "%s: first_k_dense_replace must be >= 0, got %d", what,
				c->first_k_dense_replace);
	/* A dense layer exists unless every layer is MoE. */
	{
		int dense = 0;

		for (int l = 0; l < c->num_hidden_layers; l++)
			dense += !hmoe_config_is_moe_layer(c, l);
		if (dense && (c->intermediate_size <= 0 || c->intermediate_size > 1 << 20))
			return hmoe_err(HMOE_EINPUT, "%s: intermediate_size must be in [1, 2^20] "
					"(there are dense layers), got %d", what,
					c->intermediate_size);
	}
	if (c->n_routed_experts < 0 || c->n_routed_experts > 65536)
		return hmoe_err(HMOE_EINPUT, "%s: n_routed_experts must be in [0, 65536], got %d",
				what, c->n_routed_experts);
	if (c->n_routed_experts > 0) {
		if (c->moe_intermediate_size <= 0 || c->moe_intermediate_size > 1 << 20)
			return hmoe_err(HMOE_EINPUT, "%s: moe_intermediate_size must be in "
					"[1, 2^20], got %d", what, c->moe_intermediate_size);
		if (c->num_experts_per_tok <= 0 || c->num_experts_per_tok > c->n_routed_experts)
			return hmoe_err(HMOE_EINPUT, "%s: num_experts_per_tok %d must be in [1, "
					"n_routed_experts %d]", what, c->num_experts_per_tok,
					c->n_routed_experts);
		if (c->n_group <= 0 || c->n_routed_experts % c->n_group)
			return hmoe_err(HMOE_EINPUT, "%s: n_group %d must be positive and divide "
					"n_routed_experts %d", what, c->n_group,
					c->n_routed_experts);
		if (c->topk_group <= 0 || c->topk_group > c->n_group)
			return hmoe_err(HMOE_EINPUT, "%s: topk_group %d must be in [1, n_group %d]",
					what, c->topk_group, c->n_group);
		if (c->num_experts_per_tok > c->topk_group * (c->n_routed_experts / c->n_group))
			return hmoe_err(HMOE_EINPUT, "%s: num_experts_per_tok %d exceeds the %d "
					"experts in topk_group %d groups of %d", what,
					c->num_experts_per_tok,
					c->topk_group * (c->n_routed_experts / c->n_group),
					c->topk_group, c->n_routed_experts / c->n_group);
		if (c->n_shared_experts < 0 || c->n_shared_experts > 64)
			return hmoe_err(HMOE_EINPUT, "%s: n_shared_experts must be in [0, 64], got %d",
					what, c->n_shared_experts);
		if (!(c->routed_scaling_factor > 0))
			return hmoe_err(HMOE_EINPUT, "%s: routed_scaling_factor must be positive, "
					"got %g", what, c->routed_scaling_factor);
	}
	if (!(c->rms_norm_eps > 0))
		return hmoe_err(HMOE_EINPUT, "%s: rms_norm_eps must be positive, got %g", what,
				c->rms_norm_eps);
	if (!(c->rope_theta > 1))
		return hmoe_err(HMOE_EINPUT, "%s: rope_theta must be > 1, got %g", what,
				c->rope_theta);
	if (c->rope_yarn) {
		if (!(c->rope_factor >= 1))
			return hmoe_err(HMOE_EINPUT, "%s: rope_scaling.factor must be >= 1, got %g",
					what, c->rope_factor);
		if (c->rope_original_max_pos <= 0)
			return hmoe_err(HMOE_EINPUT, "%s: rope_scaling.original_max_position_"
					"embeddings must be positive, got %d", what,
					c->rope_original_max_pos);
		if (!(c->rope_beta_fast > 0) || !(c->rope_beta_slow > 0) ||
		    c->rope_beta_slow > c->rope_beta_fast)
			return hmoe_err(HMOE_EINPUT, "%s: rope_scaling.beta_fast %g / beta_slow %g "
					"must be positive with beta_slow <= beta_fast", what,
					c->rope_beta_fast, c->rope_beta_slow);
	}
	if (c->bos_token_id < 0 || c->bos_token_id >= c->vocab_size ||
	    c->eos_token_id < 0 || c->eos_token_id >= c->vocab_size)
		return hmoe_err(HMOE_EINPUT, "%s: bos_token_id %d / eos_token_id %d outside "
				"vocab_size %d", what, c->bos_token_id, c->eos_token_id,
				c->vocab_size);
	if (c->num_nextn_predict_layers < 0)
		return hmoe_err(HMOE_EINPUT, "%s: num_nextn_predict_layers must be >= 0", what);
	return 0;
}

int hmoe_config_load(struct hmoe_config *cfg, const char *path)
{
	FILE *fp = fopen(path, "rb");
	char *text;
	long n;
	int ret;

	if (!fp)
		return hmoe_err(HMOE_EINPUT, "%s: cannot open: %s", path, strerror(errno));
	if (fseek(fp, 0, SEEK_END) || (n = ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET)) {
		fclose(fp);
		return hmoe_err(HMOE_EIO, "%s: cannot read: %s", path, strerror(errno));
	}
	if (n > (16 << 20)) {
		fclose(fp);
		return hmoe_err(HMOE_EINPUT, "%s: %ld bytes, too large for a config", path, n);
	}
	text = malloc((size_t)n + 1);
	if (!text) {
		fclose(fp);
		return hmoe_err(HMOE_ENOMEM, "%s: out of memory", path);
	}
	if (fread(text, 1, (size_t)n, fp) != (size_t)n) {
		free(text);
		fclose(fp);
		return hmoe_err(HMOE_EIO, "%s: read failed", path);
	}
	fclose(fp);
	text[n] = '\0';
	if (strlen(text) != (size_t)n) {
		free(text);
		return hmoe_err(HMOE_EINPUT, "%s: contains a NUL byte; not a JSON text", path);
	}
	ret = hmoe_config_parse(cfg, text, path);
	free(text);
	return ret;
}

/* ---------------------------------------------------------------------------------- */
/* writing */

/* The shortest decimal that reads back as the same float ("1e-06", not 9.99e-07). */
static cJSON *float_json(float f)
{
	char buf[48];

	if (f == floorf(f) && fabsf(f) < 1e15f) {
		snprintf(buf, sizeof(buf), "%.1f", (double)f);
		return cJSON_CreateRaw(buf);
	}
	for (int p = 1; p <= 9; p++) {
		snprintf(buf, sizeof(buf), "%.*g", p, (double)f);
		if (strtof(buf, NULL) == f)
			break;
	}
	if (!strpbrk(buf, ".eEn"))
		strcat(buf, ".0");
	return cJSON_CreateRaw(buf);
}

int hmoe_config_save(const struct hmoe_config *c, const char *path)
{
	cJSON *root = cJSON_CreateObject(), *arr, *o;
	char *text = NULL;
	FILE *fp;
	int ret = 0, ok = root != NULL;

#define ADD(obj, key, item) ok = ok && cJSON_AddItemToObject(obj, key, item)
#define INT(obj, key, v) ADD(obj, key, cJSON_CreateNumber((double)(v)))
#define STR(obj, key, v) ADD(obj, key, cJSON_CreateString(v))
#define FLT(obj, key, v) ADD(obj, key, float_json(v))
#define BOOL(obj, key, v) ADD(obj, key, cJSON_CreateBool(v))
	if (ok) {
		arr = cJSON_CreateArray();
		ok = arr && cJSON_AddItemToArray(arr, cJSON_CreateString("DeepseekV3ForCausalLM"));
		ADD(root, "architectures", arr);
	}
	BOOL(root, "attention_bias", 0);
	o = cJSON_CreateObject();
	ADD(root, "auto_map", o);
	if (ok) {
		STR(o, "AutoConfig", "configuration_deepseek.DeepseekV3Config");
		STR(o, "AutoModel", "modeling_deepseek.DeepseekV3Model");
		STR(o, "AutoModelForCausalLM", "modeling_deepseek.DeepseekV3ForCausalLM");
	}
	FLT(root, "attention_dropout", 0.0f);
	INT(root, "bos_token_id", c->bos_token_id);
	INT(root, "eos_token_id", c->eos_token_id);
	INT(root, "ep_size", 1);
	INT(root, "first_k_dense_replace", c->first_k_dense_replace);
	STR(root, "hidden_act", "silu");
	INT(root, "hidden_size", c->hidden_size);
	FLT(root, "initializer_range", 0.02f);
	INT(root, "intermediate_size", c->intermediate_size);
	INT(root, "kv_lora_rank", c->kv_lora_rank);
	INT(root, "max_position_embeddings", c->max_position_embeddings);
	STR(root, "model_type", "deepseek_v3");
	INT(root, "moe_intermediate_size", c->moe_intermediate_size);
	INT(root, "moe_layer_freq", c->moe_layer_freq);
	INT(root, "n_group", c->n_group);
	INT(root, "n_routed_experts", c->n_routed_experts);
	INT(root, "n_shared_experts", c->n_shared_experts);
	BOOL(root, "norm_topk_prob", c->norm_topk_prob);
	INT(root, "num_attention_heads", c->num_attention_heads);
	INT(root, "num_experts_per_tok", c->num_experts_per_tok);
	INT(root, "num_hidden_layers", c->num_hidden_layers);
	INT(root, "num_key_value_heads", c->num_key_value_heads);
	INT(root, "num_nextn_predict_layers", c->num_nextn_predict_layers);
	if (c->q_lora_rank > 0)
		INT(root, "q_lora_rank", c->q_lora_rank);
	else
		ADD(root, "q_lora_rank", cJSON_CreateNull());
	INT(root, "qk_nope_head_dim", c->qk_nope_head_dim);
	INT(root, "qk_rope_head_dim", c->qk_rope_head_dim);
	if (c->fp8) {
		o = cJSON_CreateObject();
		ADD(root, "quantization_config", o);
		if (ok) {
			STR(o, "activation_scheme", "dynamic");
			STR(o, "fmt", "e4m3");
			STR(o, "quant_method", "fp8");
			arr = cJSON_CreateIntArray(c->fp8_block, 2);
			ADD(o, "weight_block_size", arr);
		}
	}
	FLT(root, "rms_norm_eps", c->rms_norm_eps);
	if (c->rope_yarn) {
		o = cJSON_CreateObject();
		ADD(root, "rope_scaling", o);
		if (ok) {
			FLT(o, "beta_fast", c->rope_beta_fast);
			FLT(o, "beta_slow", c->rope_beta_slow);
			FLT(o, "factor", c->rope_factor);
			FLT(o, "mscale", c->rope_mscale);
			FLT(o, "mscale_all_dim", c->rope_mscale_all_dim);
			INT(o, "original_max_position_embeddings", c->rope_original_max_pos);
			STR(o, "type", "yarn");
		}
	} else {
		ADD(root, "rope_scaling", cJSON_CreateNull());
	}
	FLT(root, "rope_theta", c->rope_theta);
	FLT(root, "routed_scaling_factor", c->routed_scaling_factor);
	STR(root, "scoring_func", c->scoring_func == HMOE_SCORE_SIGMOID ? "sigmoid" : "softmax");
	BOOL(root, "tie_word_embeddings", c->tie_word_embeddings);
	INT(root, "topk_group", c->topk_group);
	STR(root, "topk_method", c->noaux_tc ? "noaux_tc" : "greedy");
	STR(root, "torch_dtype", "bfloat16");
	STR(root, "transformers_version", "4.46.3");
	BOOL(root, "use_cache", 1);
	INT(root, "v_head_dim", c->v_head_dim);
	INT(root, "vocab_size", c->vocab_size);
#undef ADD
#undef INT
#undef STR
#undef FLT
#undef BOOL
	if (ok)
		text = cJSON_Print(root);
	cJSON_Delete(root);
	if (!text)
		return hmoe_err(HMOE_ENOMEM, "%s: out of memory building the config", path);
	fp = fopen(path, "wb");
	if (!fp) {
		ret = hmoe_err(HMOE_EIO, "%s: cannot create: %s", path, strerror(errno));
	} else {
		if (fputs(text, fp) < 0 || fputc('\n', fp) < 0)
			ret = hmoe_err(HMOE_EIO, "%s: write failed: %s", path, strerror(errno));
		if (fclose(fp) && !ret)
			ret = hmoe_err(HMOE_EIO, "%s: write failed: %s", path, strerror(errno));
	}
	cJSON_free(text);
	return ret;
}
