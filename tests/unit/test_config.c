/* test_config: config.json parsing, validation and saving.
 *
 * The real DeepSeek-R1 config.json (fields as published) parses to the 671B values; a
 * V2-Lite style config (q_lora_rank null, softmax, no rope_scaling/quantization_config)
 * takes its defaults; each missing required field and each bad value fails with
 * HMOE_EINPUT and a message naming the field; save -> parse gives back the same config.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hmoe_config.h"
#include "hmoe_err.h"
#include "hmoe_mktiny.h"

#include "hmoe_test.h"

/* DeepSeek-R1's config.json, as published on Hugging Face (auto_map shortened). */
static const char *r1_config =
	"{\"architectures\": [\"DeepseekV3ForCausalLM\"], \"attention_bias\": false,"
	" \"attention_dropout\": 0.0, \"auto_map\": {\"AutoConfig\": \"configuration_deepseek."
	"DeepseekV3Config\"}, \"bos_token_id\": 0, \"eos_token_id\": 1, \"ep_size\": 1,"
	" \"first_k_dense_replace\": 3, \"hidden_act\": \"silu\", \"hidden_size\": 7168,"
	" \"initializer_range\": 0.02, \"intermediate_size\": 18432, \"kv_lora_rank\": 512,"
	" \"max_position_embeddings\": 163840, \"model_type\": \"deepseek_v3\","
	" \"moe_intermediate_size\": 2048, \"moe_layer_freq\": 1, \"n_group\": 8,"
	" \"n_routed_experts\": 256, \"n_shared_experts\": 1, \"norm_topk_prob\": true,"
	" \"num_attention_heads\": 128, \"num_experts_per_tok\": 8, \"num_hidden_layers\": 61,"
	" \"num_key_value_heads\": 128, \"num_nextn_predict_layers\": 1, \"q_lora_rank\": 1536,"
	" \"qk_nope_head_dim\": 128, \"qk_rope_head_dim\": 64, \"quantization_config\":"
	" {\"activation_scheme\": \"dynamic\", \"fmt\": \"e4m3\", \"quant_method\": \"fp8\","
	" \"weight_block_size\": [128, 128]}, \"rms_norm_eps\": 1e-06, \"rope_scaling\":"
	" {\"beta_fast\": 32, \"beta_slow\": 1, \"factor\": 40, \"mscale\": 1.0,"
	" \"mscale_all_dim\": 1.0, \"original_max_position_embeddings\": 4096, \"type\": \"yarn\"},"
	" \"rope_theta\": 10000, \"routed_scaling_factor\": 2.5, \"scoring_func\": \"sigmoid\","
	" \"tie_word_embeddings\": false, \"topk_group\": 4, \"topk_method\": \"noaux_tc\","
	" \"torch_dtype\": \"bfloat16\", \"transformers_version\": \"4.46.3\", \"use_cache\": true,"
	" \"v_head_dim\": 128, \"vocab_size\": 129280}";

static void test_r1(void)
{
	struct hmoe_config c;
	int ret = hmoe_config_parse(&c, r1_config, "r1/config.json");

	CHECK(ret == 0, "R1 config: %s", hmoe_last_error());
	CHECK(c.vocab_size == 129280 && c.hidden_size == 7168 && c.intermediate_size == 18432 &&
	      c.moe_intermediate_size == 2048 && c.num_hidden_layers == 61, "sizes");
	CHECK(c.first_k_dense_replace == 3 && !hmoe_config_is_moe_layer(&c, 2) &&
	      hmoe_config_is_moe_layer(&c, 3) && hmoe_config_is_moe_layer(&c, 60), "dense/MoE");
	CHECK(c.n_routed_experts == 256 && c.n_shared_experts == 1 && c.num_experts_per_tok == 8 &&
	      c.n_group == 8 && c.topk_group == 4, "routing sizes");
	CHECK(c.scoring_func == HMOE_SCORE_SIGMOID && c.noaux_tc && c.norm_topk_prob &&
	      c.routed_scaling_factor == 2.5f, "routing");
	CHECK(c.q_lora_rank == 1536 && c.kv_lora_rank == 512 && c.qk_nope_head_dim == 128 &&
	      c.qk_rope_head_dim == 64 && c.v_head_dim == 128 &&
	      hmoe_config_qk_head_dim(&c) == 192, "MLA dims");
	CHECK(c.rope_yarn && c.rope_factor == 40.0f && c.rope_original_max_pos == 4096 &&
	      c.rope_beta_fast == 32.0f && c.rope_beta_slow == 1.0f && c.rope_mscale == 1.0f &&
	      c.rope_mscale_all_dim == 1.0f && c.rope_theta == 10000.0f, "YaRN");
	CHECK(c.rms_norm_eps == 1e-6f && c.max_position_embeddings == 163840 &&
	      c.num_nextn_predict_layers == 1 && c.bos_token_id == 0 && c.eos_token_id == 1 &&
	      !c.tie_word_embeddings, "misc");
	CHECK(c.fp8 && c.fp8_block[0] == 128 && c.fp8_block[1] == 128, "fp8");
}

/* V2-Lite style: q_lora_rank null, softmax, 1 group, no rope_scaling, no quantization. */
static void test_lite_defaults(void)
{
	struct hmoe_config c;
	const char *j = "{\"vocab_size\": 102400, \"hidden_size\": 2048, \"intermediate_size\":"
			" 10944, \"moe_intermediate_size\": 1408, \"num_hidden_layers\": 27,"
			" \"first_k_dense_replace\": 1, \"num_attention_heads\": 16,"
			" \"n_routed_experts\": 64, \"n_shared_experts\": 2, \"num_experts_per_tok\": 6,"
			" \"n_group\": 1, \"topk_group\": 1, \"scoring_func\": \"softmax\","
			" \"topk_method\": \"greedy\", \"norm_topk_prob\": false,"
			" \"routed_scaling_factor\": 1.0, \"q_lora_rank\": null, \"kv_lora_rank\": 512,"
			" \"qk_nope_head_dim\": 128, \"qk_rope_head_dim\": 64, \"v_head_dim\": 128,"
			" \"rope_scaling\": null}";
	int ret = hmoe_config_parse(&c, j, "lite/config.json");

	CHECK(ret == 0, "lite: %s", hmoe_last_error());
	CHECK(c.q_lora_rank == 0 && c.scoring_func == HMOE_SCORE_SOFTMAX && !c.noaux_tc &&
	      !c.norm_topk_prob && c.n_group == 1, "lite routing");
	CHECK(!c.rope_yarn && c.rope_factor == 1.0f, "absent rope_scaling: no YaRN");
	CHECK(!c.fp8, "absent quantization_config: not fp8");
	CHECK(c.num_key_value_heads == 16, "num_key_value_heads defaults to heads, got %d",
	      c.num_key_value_heads);
	CHECK(c.moe_layer_freq == 1 && c.rms_norm_eps == 1e-6f && c.rope_theta == 10000.0f,
	      "defaults");
}

/* Replaces the first occurrence of `from` in the R1 config by `to` and expects failure
 * with a message containing `want`. */
static void expect_bad(const char *from, const char *to, const char *want)
{
	struct hmoe_config c;
	const char *at = strstr(r1_config, from);
	char *j;
	int ret;

	CHECK(at != NULL, "'%s' not in the base config", from);
	if (!at)
		return;
	j = malloc(strlen(r1_config) + strlen(to) + 1);
	memcpy(j, r1_config, (size_t)(at - r1_config));
	strcpy(j + (at - r1_config), to);
	strcat(j, at + strlen(from));
	ret = hmoe_config_parse(&c, j, "bad/config.json");
	CHECK(ret == -HMOE_EINPUT, "%s -> %s: ret %d", from, to, ret);
	CHECK(ret == 0 || (strstr(hmoe_last_error(), want) &&
			   strstr(hmoe_last_error(), "bad/config.json")),
	      "%s -> %s: message '%s' should contain '%s'", from, to, hmoe_last_error(), want);
	free(j);
}

static void test_bad(void)
{
	/* Missing required fields. */
	expect_bad("\"hidden_size\": 7168,", "", "required field hidden_size is missing");
	expect_bad("\"vocab_size\": 129280", "\"x\": 1", "required field vocab_size is missing");
	expect_bad("\"kv_lora_rank\": 512,", "", "required field kv_lora_rank is missing");
	expect_bad("\"num_experts_per_tok\": 8,", "", "required field num_experts_per_tok");
	expect_bad("\"factor\": 40,", "", "rope_scaling.factor is missing");
	/* Wrong types. */
	expect_bad("\"hidden_size\": 7168", "\"hidden_size\": \"7168\"", "hidden_size must be an integer");
	expect_bad("\"hidden_size\": 7168", "\"hidden_size\": 7168.5", "hidden_size = 7168.5");
	expect_bad("\"rms_norm_eps\": 1e-06", "\"rms_norm_eps\": \"small\"", "rms_norm_eps must be");
	expect_bad("\"norm_topk_prob\": true", "\"norm_topk_prob\": 1", "norm_topk_prob must be");
	expect_bad("\"original_max_position_embeddings\": 4096",
		   "\"original_max_position_embeddings\": []",
		   "rope_scaling.original_max_position_embeddings must be an integer");
	/* Impossible values. */
	expect_bad("\"hidden_size\": 7168", "\"hidden_size\": 0", "hidden_size must be positive");
	expect_bad("\"num_hidden_layers\": 61", "\"num_hidden_layers\": -2",
		   "num_hidden_layers must be positive");
	expect_bad("\"n_group\": 8", "\"n_group\": 7", "n_group 7 must be positive and divide");
	expect_bad("\"topk_group\": 4", "\"topk_group\": 9", "topk_group 9 must be in [1, n_group 8]");
	expect_bad("\"num_experts_per_tok\": 8", "\"num_experts_per_tok\": 300",
		   "num_experts_per_tok 300 must be in [1, n_routed_experts 256]");
	expect_bad("\"num_experts_per_tok\": 8", "\"num_experts_per_tok\": 200",
		   "num_experts_per_tok 200 exceeds the 128 experts");
	expect_bad("\"qk_rope_head_dim\": 64", "\"qk_rope_head_dim\": 63", "qk_rope_head_dim 63");
	expect_bad("\"v_head_dim\": 128", "\"v_head_dim\": 0", "v_head_dim must be positive");
	expect_bad("\"hidden_size\": 7168", "\"hidden_size\": 100000000", "implausibly large");
	expect_bad("\"type\": \"yarn\"", "\"type\": \"linear\"", "rope_scaling.type \"linear\"");
	expect_bad("\"factor\": 40", "\"factor\": 0.5", "rope_scaling.factor must be >= 1");
	expect_bad("\"quant_method\": \"fp8\"", "\"quant_method\": \"gptq\"", "quant_method \"gptq\"");
	expect_bad("\"weight_block_size\": [128, 128]", "\"weight_block_size\": [128]",
		   "weight_block_size");
	expect_bad("\"scoring_func\": \"sigmoid\"", "\"scoring_func\": \"relu\"", "scoring_func \"relu\"");
	expect_bad("\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"", "hidden_act \"gelu\"");
	expect_bad("\"eos_token_id\": 1", "\"eos_token_id\": 200000", "eos_token_id 200000");
	expect_bad("\"vocab_size\": 129280}", "\"vocab_size\": 129280", "malformed JSON");
	expect_bad("{\"architectures\"", "[{\"architectures\"", "malformed JSON");
}

static void test_save_roundtrip(void)
{
	const char *presets[] = { "tiny", "small" };
	char dir[] = "/tmp/test_config.XXXXXX", path[128];
	struct hmoe_config a, b;

	if (!mkdtemp(dir)) {
		CHECK(0, "mkdtemp");
		return;
	}
	snprintf(path, sizeof(path), "%s/config.json", dir);
	for (int i = 0; i < 3; i++) {
		if (i < 2) {
			CHECK(hmoe_mktiny_preset(&a, presets[i]) == 0, "preset %s", presets[i]);
		} else {
			/* And the R1 config, with a non-default everything. */
			CHECK(hmoe_config_parse(&a, r1_config, "r1") == 0, "r1");
			a.q_lora_rank = 0;
			a.rms_norm_eps = 3e-5f;
			a.scoring_func = HMOE_SCORE_SOFTMAX;
			a.noaux_tc = 0;
		}
		CHECK(hmoe_config_save(&a, path) == 0, "save: %s", hmoe_last_error());
		CHECK(hmoe_config_load(&b, path) == 0, "load saved: %s", hmoe_last_error());
		CHECK(memcmp(&a, &b, sizeof(a)) == 0, "config %d changed through save + load", i);
	}
	CHECK(hmoe_config_load(&b, "/nonexistent/config.json") == -HMOE_EINPUT &&
	      strstr(hmoe_last_error(), "/nonexistent/config.json"), "missing file: %s",
	      hmoe_last_error());
	CHECK(hmoe_mktiny_preset(&a, "huge") == -HMOE_EINPUT && strstr(hmoe_last_error(), "huge"),
	      "unknown preset");
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	test_r1();
	test_lite_defaults();
	test_bad();
	test_save_roundtrip();
	if (failures) {
		fprintf(stderr, "%d checks failed\n", failures);
		return 1;
	}
	printf("test_config: all checks passed\n");
	return 0;
}
