/* test_model: loading mktiny checkpoints, and what the loader must refuse.
 *
 * Uses the tiny preset with a 1000-token vocab (fast; every structural feature kept):
 *  - shapes and layer kinds match the config; norms and router always fp32;
 *  - FP8 dequantisation equals a hand computation (e4m3 decoded by its formula, times
 *    the block's scale) at block edges, and mktiny's quantiser maps each block's amax to
 *    448; bf16 tensors widen exactly;
 *  - 3 shards load to the same fp32 weights as 1 file; the same seed gives the same bytes
 *    (also with one thread), another seed different bytes;
 *  - bf16 and q_lora_rank = 0 checkpoints load; MTP-style extra layers are ignored;
 *  - a wrong shape, a missing tensor, an FP8 weight without scale, a bad index and a
 *    tensor in two shards are HMOE_EINPUT naming the tensor;
 *  - parameter and byte counts equal the formulas from the config;
 *  - memory for streamed weights is 2 MiB aligned, zeroed and asked for 2 MiB pages.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hmoe_config.h"
#include "hmoe_err.h"
#include "hmoe_mktiny.h"
#include "hmoe_model.h"
#include "hmoe_num.h"
#include "hmoe_st.h"

#include "hmoe_test.h"

static char root[] = "/tmp/test_model.XXXXXX";

static const char *sub(const char *name)
{
	static char buf[8][256];
	static int k;

	k = (k + 1) % 8;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", root, name);
	return buf[k];
}

static struct hmoe_config micro(void)
{
	struct hmoe_config c;

	hmoe_mktiny_preset(&c, "tiny");
	c.vocab_size = 1000;
	return c;
}

static int make(const struct hmoe_config *c, const char *dir, uint64_t seed, int shards)
{
	struct hmoe_mktiny_opts o = { .out_dir = dir, .seed = seed, .shards = shards };
	int ret = hmoe_mktiny_write(c, &o);

	CHECK(ret == 0, "mktiny %s: %s", dir, hmoe_last_error());
	return ret;
}

/* e4m3fn by its definition (1 sign, 4 exponent bits with bias 7, 3 mantissa bits). */
static float e4m3_formula(uint8_t code)
{
	int s = code >> 7, e = (code >> 3) & 15, m = code & 7;
	float v = e ? ldexpf(1.0f + (float)m / 8.0f, e - 7) : ldexpf((float)m / 8.0f, -6);

	return s ? -v : v;
}

static float scale_at(const struct hmoe_tensor *s, int64_t r, int64_t c)
{
	float v;

	memcpy(&v, (const uint8_t *)s->data + (r * s->shape[1] + c) * 4, 4);
	return v;
}

/* Checks l->w against codes * scales at every block corner and edge element. */
static void check_fp8_linear(const struct hmoe_linear *l)
{
	const struct hmoe_tensor *t = l->src, *s = l->scale_inv;
	const uint8_t *codes = t->data;
	int64_t rows[] = { 0, 1, 127, 128, l->out - 1 }, cols[] = { 0, 127, 128, l->in - 1 };

	CHECK(t->dtype == HMOE_DT_F8E4M3 && s, "%s: not FP8 with scale", t->name);
	if (!s || !l->w)
		return;
	CHECK(s->shape[0] == (l->out + 127) / 128 && s->shape[1] == (l->in + 127) / 128,
	      "%s: scale shape", s->name);
	for (int i = 0; i < 5; i++)
		for (int j = 0; j < 4; j++) {
			int64_t r = rows[i], c = cols[j];
			float want;

			if (r >= l->out || c >= l->in)
				continue;
			want = e4m3_formula(codes[r * l->in + c]) * scale_at(s, r / 128, c / 128);
			CHECK(l->w[r * l->in + c] == want, "%s[%lld, %lld] = %g, codes*scale %g",
			      t->name, (long long)r, (long long)c, l->w[r * l->in + c], want);
		}
	/* mktiny's quantiser: the largest |code| of every block is 448 (s = amax / 448). */
	for (int64_t br = 0; br < s->shape[0]; br++)
		for (int64_t bc = 0; bc < s->shape[1]; bc++) {
			float amax = 0;

			for (int64_t r = br * 128; r < l->out && r < br * 128 + 128; r++)
				for (int64_t c = bc * 128; c < l->in && c < bc * 128 + 128; c++)
					amax = fmaxf(amax, fabsf(e4m3_formula(codes[r * l->in + c])));
			CHECK(amax == 448.0f, "%s block [%lld, %lld]: max |code| %g, want 448",
			      t->name, (long long)br, (long long)bc, amax);
		}
	{
		float *d = malloc((size_t)l->out * (size_t)l->in * sizeof(float));

		CHECK(hmoe_linear_dequant(l, d) == 0 &&
		      !memcmp(d, l->w, (size_t)l->out * (size_t)l->in * sizeof(float)),
		      "%s: hmoe_linear_dequant differs from the loaded w", t->name);
		free(d);
	}
}

static void test_load(void)
{
	struct hmoe_config c = micro();
	struct hmoe_model *m = NULL;
	const struct hmoe_tensor *t;
	int neg = 0, pos = 0;

	if (make(&c, sub("a"), 7, 1))
		return;
	CHECK(hmoe_model_load(&m, sub("a"), HMOE_LOAD_F32) == 0, "load: %s", hmoe_last_error());
	if (!m)
		return;
	CHECK(!memcmp(&m->cfg, &c, sizeof(c)), "config.json differs from what was written");
	CHECK(m->n_files == 1, "%d files", m->n_files);
	CHECK(!m->layers[0].is_moe && m->layers[1].is_moe && m->layers[2].is_moe, "layer kinds");
	CHECK(m->layers[0].mlp.w1.out == 320 && m->layers[0].mlp.w2.in == 320, "dense inter");
	CHECK(m->layers[1].wq_a.out == 96 && m->layers[1].wq_a.in == 192 &&
	      m->layers[1].wq_b.out == 4 * 48 && m->layers[1].wkv_a.out == 64 + 16 &&
	      m->layers[1].wkv_b.out == 4 * 64 && m->layers[1].wo.in == 4 * 32, "MLA shapes");
	CHECK(m->layers[2].experts && m->layers[2].experts[15].w2.out == 192 &&
	      m->layers[2].experts[15].w2.in == 160 && m->layers[2].has_shared &&
	      m->layers[2].shared.w1.out == 160, "expert shapes");
	CHECK(m->layers[1].q_norm && m->layers[1].kv_norm && m->layers[1].attn_norm &&
	      m->layers[1].ffn_norm && m->norm && m->embed && m->head.w, "fp32 arrays");
	CHECK(m->layers[1].gate && m->layers[1].gate_bias, "router");
	for (int e = 0; m->layers[1].gate_bias && e < 16; e++) {
		neg += m->layers[1].gate_bias[e] < 0;
		pos += m->layers[1].gate_bias[e] > 0;
	}
	CHECK(neg > 0 && pos > 0, "gate bias signs: %d negative, %d positive", neg, pos);

	check_fp8_linear(&m->layers[0].mlp.w1);       /* 320 x 192: partial blocks both ways */
	check_fp8_linear(&m->layers[1].wq_b);         /* 192 x 96 */
	check_fp8_linear(&m->layers[2].experts[3].w2); /* 192 x 160 */
	check_fp8_linear(&m->layers[2].wo);

	/* bf16 widens exactly. */
	t = hmoe_model_tensor(m, "model.embed_tokens.weight");
	CHECK(t && t == m->embed_src && t->dtype == HMOE_DT_BF16, "embed stored bf16");
	for (int64_t i = 0; t && i < t->shape[0] * t->shape[1]; i += 997) {
		uint16_t h;

		memcpy(&h, (const uint8_t *)t->data + i * 2, 2);
		CHECK(m->embed[i] == hmoe_bf16_to_f32(h), "embed[%lld]", (long long)i);
	}
	t = hmoe_model_tensor(m, "model.layers.1.mlp.gate.e_score_correction_bias");
	CHECK(t && t->dtype == HMOE_DT_F32 && !memcmp(t->data, m->layers[1].gate_bias, 16 * 4),
	      "bias fp32 as stored");
	hmoe_model_free(m);

	/* Without HMOE_LOAD_F32: mapped weights only, small vectors still fp32. */
	CHECK(hmoe_model_load(&m, sub("a"), 0) == 0, "load: %s", hmoe_last_error());
	if (m) {
		CHECK(!m->embed && m->embed_src && !m->head.w && m->head.src &&
		      !m->layers[1].wq_a.w && m->layers[1].wq_a.src && m->layers[1].wq_a.scale_inv,
		      "no fp32 linears without HMOE_LOAD_F32");
		CHECK(m->norm && m->layers[2].gate && m->layers[2].gate_bias &&
		      m->layers[2].attn_norm, "norms and router are fp32 anyway");
		hmoe_model_free(m);
	}
}

static int same_linear(const struct hmoe_linear *a, const struct hmoe_linear *b)
{
	return a->out == b->out && a->in == b->in &&
	       !memcmp(a->w, b->w, (size_t)a->out * (size_t)a->in * sizeof(float));
}

static int files_equal(const char *a, const char *b)
{
	FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
	static char ba[1 << 16], bb[1 << 16];
	int eq = fa && fb;

	while (eq) {
		size_t na = fread(ba, 1, sizeof(ba), fa), nb = fread(bb, 1, sizeof(bb), fb);

		if (na != nb || memcmp(ba, bb, na))
			eq = 0;
		if (na == 0)
			break;
	}
	if (fa)
		fclose(fa);
	if (fb)
		fclose(fb);
	return eq;
}

static void test_shards_and_determinism(void)
{
	struct hmoe_config c = micro();
	struct hmoe_model *a = NULL, *b = NULL;
	char path[300];

	if (make(&c, sub("b"), 7, 3))
		return;
	for (int i = 1; i <= 3; i++) {
		snprintf(path, sizeof(path), "%s/model-%05d-of-00003.safetensors", sub("b"), i);
		CHECK(access(path, R_OK) == 0, "%s missing", path);
	}
	CHECK(access(sub("b/model.safetensors.index.json"), R_OK) == 0, "index missing");
	CHECK(hmoe_model_load(&a, sub("a"), HMOE_LOAD_F32) == 0, "load a: %s", hmoe_last_error());
	CHECK(hmoe_model_load(&b, sub("b"), HMOE_LOAD_F32) == 0, "load b: %s", hmoe_last_error());
	if (a && b) {
		int diff = 0;

		CHECK(b->n_files == 3 && a->n_tensors == b->n_tensors, "files %d, tensors %d/%d",
		      b->n_files, a->n_tensors, b->n_tensors);
		diff += memcmp(a->embed, b->embed, (size_t)c.vocab_size * 192 * 4) != 0;
		diff += !same_linear(&a->head, &b->head);
		for (int l = 0; l < 3; l++) {
			const struct hmoe_layer *x = &a->layers[l], *y = &b->layers[l];

			diff += !same_linear(&x->wq_a, &y->wq_a) + !same_linear(&x->wq_b, &y->wq_b) +
				!same_linear(&x->wkv_a, &y->wkv_a) +
				!same_linear(&x->wkv_b, &y->wkv_b) + !same_linear(&x->wo, &y->wo);
			diff += memcmp(x->attn_norm, y->attn_norm, 192 * 4) != 0;
			if (x->is_moe)
				for (int e = 0; e < 16; e++)
					diff += !same_linear(&x->experts[e].w2, &y->experts[e].w2);
		}
		CHECK(diff == 0, "sharded load differs from single-file load in %d arrays", diff);
	}
	hmoe_model_free(a);
	hmoe_model_free(b);

	/* Same seed, one thread: the same bytes. Another seed: other bytes. */
	setenv("HMOE_THREADS", "1", 1);
	make(&c, sub("c"), 7, 1);
	unsetenv("HMOE_THREADS");
	CHECK(files_equal(sub("a/model.safetensors"), sub("c/model.safetensors")),
	      "same seed gave different bytes");
	CHECK(files_equal(sub("a/config.json"), sub("c/config.json")), "config differs");
	make(&c, sub("c"), 8, 1);
	CHECK(!files_equal(sub("a/model.safetensors"), sub("c/model.safetensors")),
	      "seeds 7 and 8 gave the same bytes");
	/* Re-writing a sharded folder as one file removes the stale shards and index. */
	make(&c, sub("b"), 7, 1);
	CHECK(access(sub("b/model.safetensors.index.json"), F_OK) != 0 &&
	      access(sub("b/model-00001-of-00003.safetensors"), F_OK) != 0,
	      "stale shards left behind");
	CHECK(files_equal(sub("a/model.safetensors"), sub("b/model.safetensors")),
	      "rewritten folder differs");
}

static void test_variants(void)
{
	struct hmoe_config c = micro();
	struct hmoe_model *m = NULL;

	c.fp8 = 0;
	c.q_lora_rank = 0;
	if (make(&c, sub("v"), 3, 1))
		return;
	CHECK(hmoe_model_load(&m, sub("v"), HMOE_LOAD_F32) == 0, "bf16, no q LoRA: %s",
	      hmoe_last_error());
	if (m) {
		const struct hmoe_linear *q = &m->layers[0].wq_b;

		CHECK(q->src && !strcmp(q->src->name, "model.layers.0.self_attn.q_proj.weight") &&
		      q->out == 192 && q->in == 192 && !m->layers[0].q_norm && !q->scale_inv &&
		      q->src->dtype == HMOE_DT_BF16, "q_proj bound as wq_b");
		CHECK(!m->cfg.fp8, "no quantization_config written for bf16");
		hmoe_model_free(m);
	}

	/* Tied embeddings: no lm_head.weight; the head is the embedding. */
	c = micro();
	c.tie_word_embeddings = 1;
	if (make(&c, sub("w"), 3, 1))
		return;
	CHECK(hmoe_model_load(&m, sub("w"), HMOE_LOAD_F32) == 0, "tied: %s", hmoe_last_error());
	if (m) {
		struct hmoe_model_stats st;

		CHECK(!hmoe_model_tensor(m, "lm_head.weight") && m->head.src == m->embed_src &&
		      m->head.w && !memcmp(m->head.w, m->embed, (size_t)c.vocab_size * 192 * 4),
		      "tied head is the embedding");
		hmoe_model_stats(m, &st);
		CHECK(st.params_active > (int64_t)c.vocab_size * 192, "tied head counted active");
		hmoe_model_free(m);
	}
}

/* ---------------------------------------------------------------------------------- */
/* refusals: copy checkpoint a, edited, into a new folder */

enum edit { RESHAPE, DROP, DROP_SCALE, ADD_MTP };

static int write_edited(const char *dir, enum edit what, const char *name)
{
	struct hmoe_st_file *f = NULL;
	struct hmoe_tensor *ts, extra[2];
	struct hmoe_config c;
	char path[300];
	uint8_t zeros[192 * 4] = { 0 };
	int n = 0, ret;

	if (hmoe_st_open(&f, sub("a/model.safetensors")))
		return -1;
	ts = calloc((size_t)f->n_tensors + 2, sizeof(*ts));
	for (int i = 0; i < f->n_tensors; i++) {
		struct hmoe_tensor t = f->tensors[i];

		if (!strcmp(t.name, name)) {
			if (what == DROP)
				continue;
			if (what == RESHAPE) {
				/* Same bytes, transposed shape. */
				int64_t d = t.shape[0];

				t.shape[0] = t.shape[1];
				t.shape[1] = d;
			}
		}
		if (what == DROP_SCALE && strstr(t.name, name) && strstr(t.name, "_scale_inv"))
			continue;
		ts[n++] = t;
	}
	if (what == ADD_MTP) {
		extra[0] = (struct hmoe_tensor){ .name = "model.layers.3.enorm.weight",
						 .dtype = HMOE_DT_F32, .ndim = 1, .shape = { 192 },
						 .data = zeros, .nbytes = sizeof(zeros) };
		extra[1] = (struct hmoe_tensor){ .name = "model.layers.3.self_attn.o_proj.weight",
						 .dtype = HMOE_DT_F8E4M3, .ndim = 2,
						 .shape = { 3, 5 }, .data = zeros, .nbytes = 15 };
		ts[n++] = extra[0];
		ts[n++] = extra[1];
	}
	snprintf(path, sizeof(path), "mkdir -p '%s'", dir);
	ret = system(path);
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	if (!ret)
		ret = hmoe_st_write(path, ts, n, NULL);
	snprintf(path, sizeof(path), "%s/config.json", dir);
	if (!ret && !(ret = hmoe_config_load(&c, sub("a/config.json"))))
		ret = hmoe_config_save(&c, path);
	free(ts);
	hmoe_st_close(f);
	CHECK(ret == 0, "writing edited checkpoint %s: %s", dir, hmoe_last_error());
	return ret;
}

static void expect_load_error(const char *dir, const char *want1, const char *want2)
{
	struct hmoe_model *m = NULL;
	int ret = hmoe_model_load(&m, dir, HMOE_LOAD_F32);

	CHECK(ret == -HMOE_EINPUT && !m, "%s: ret %d, want EINPUT", dir, ret);
	CHECK(ret == 0 || (strstr(hmoe_last_error(), want1) &&
			   (!want2 || strstr(hmoe_last_error(), want2))),
	      "%s: message '%s' should contain '%s' and '%s'", dir, hmoe_last_error(), want1,
	      want2 ? want2 : "");
	hmoe_model_free(m);
}

static void write_text(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	CHECK(fp && fputs(text, fp) >= 0, "write %s", path);
	if (fp)
		fclose(fp);
}

static void test_refusals(void)
{
	struct hmoe_config c = micro();
	struct hmoe_model *m = NULL;

	if (!write_edited(sub("e1"), RESHAPE, "model.layers.1.self_attn.q_b_proj.weight"))
		expect_load_error(sub("e1"), "tensor model.layers.1.self_attn.q_b_proj.weight: "
				  "expected shape [192, 96]", "found [96, 192] F8_E4M3");
	if (!write_edited(sub("e2"), DROP, "model.layers.2.mlp.experts.9.up_proj.weight"))
		expect_load_error(sub("e2"), "tensor model.layers.2.mlp.experts.9.up_proj.weight: "
				  "missing", NULL);
	if (!write_edited(sub("e3"), DROP_SCALE, "model.layers.0.mlp.down_proj.weight"))
		expect_load_error(sub("e3"), "model.layers.0.mlp.down_proj.weight: FP8 weight "
				  "without its", "_scale_inv");
	if (!write_edited(sub("e4"), RESHAPE, "model.layers.0.mlp.down_proj.weight_scale_inv"))
		expect_load_error(sub("e4"), "down_proj.weight_scale_inv: expected shape [2, 3]",
				  "found [3, 2]");
	if (!write_edited(sub("e5"), DROP, "model.norm.weight"))
		expect_load_error(sub("e5"), "tensor model.norm.weight: missing", NULL);
	/* Layers past num_hidden_layers (MTP) are ignored, even malformed ones. */
	if (!write_edited(sub("e6"), ADD_MTP, "")) {
		CHECK(hmoe_model_load(&m, sub("e6"), 0) == 0, "MTP layer not ignored: %s",
		      hmoe_last_error());
		hmoe_model_free(m);
	}

	/* Index problems. */
	if (make(&c, sub("s"), 7, 2) == 0) {
		char text[512];

		snprintf(text, sizeof(text), "{\"weight_map\": {\"model.norm.weight\": "
			 "\"model-00001-of-00002.safetensors\"}}");
		write_text(sub("s/model.safetensors.index.json"), text);
		expect_load_error(sub("s"), "tensor model.norm.weight: the index puts it in",
				  "model-00001-of-00002.safetensors");
		write_text(sub("s/model.safetensors.index.json"),
			   "{\"weight_map\": {\"x\": \"../etc/passwd\"}}");
		expect_load_error(sub("s"), "must be a plain file name", NULL);
		write_text(sub("s/model.safetensors.index.json"),
			   "{\"weight_map\": {\"x\": \"model-00009-of-00009.safetensors\"}}");
		expect_load_error(sub("s"), "model-00009-of-00009.safetensors: cannot open", NULL);
		write_text(sub("s/model.safetensors.index.json"), "{\"weight_map\": 3}");
		expect_load_error(sub("s"), "weight_map", NULL);
		/* A tensor in two shards. */
		{
			struct hmoe_st_file *f = NULL;
			struct hmoe_tensor t[2];
			float one = 1.0f;
			char path[300];

			snprintf(path, sizeof(path), "%s/model-00002-of-00002.safetensors", sub("s"));
			CHECK(hmoe_st_open(&f, sub("a/model.safetensors")) == 0, "open a");
			if (f) {
				t[0] = *hmoe_st_find(f, "model.embed_tokens.weight");
				t[1] = (struct hmoe_tensor){ .name = "x", .dtype = HMOE_DT_F32,
							     .ndim = 1, .shape = { 1 },
							     .data = &one, .nbytes = 4 };
				CHECK(hmoe_st_write(path, t, 2, NULL) == 0, "write dup shard");
				hmoe_st_close(f);
			}
			write_text(sub("s/model.safetensors.index.json"),
				   "{\"weight_map\": {\"model.embed_tokens.weight\": "
				   "\"model-00001-of-00002.safetensors\", \"x\": "
				   "\"model-00002-of-00002.safetensors\"}}");
			expect_load_error(sub("s"), "tensor model.embed_tokens.weight: present in "
					  "both", "model-00002-of-00002.safetensors");
		}
	}
	expect_load_error(sub("nothing"), "config.json: cannot open", NULL);
	unlink(sub("e5/model.safetensors"));
	expect_load_error(sub("e5"), "no model.safetensors", NULL);
}

/* Another writer's layout: tensors packed in name order (FP8 codes of odd sizes first, so
 * the F32 scales that follow are unaligned), as simple exporters write them. The loader
 * must give the same fp32 weights and aligned `scale` pointers. */
static void test_unaligned(void)
{
	struct hmoe_st_file *f = NULL;
	struct hmoe_model *a = NULL, *b = NULL;
	struct hmoe_config c;
	char path[300];
	FILE *fp;
	char *hdr = NULL;
	size_t hlen = 0, off = 0;
	FILE *mem;
	int unaligned = 0;

	if (hmoe_st_open(&f, sub("a/model.safetensors")))
		return;
	snprintf(path, sizeof(path), "mkdir -p '%s'", sub("u"));
	CHECK(system(path) == 0, "mkdir");
	/* A leading 1-byte tensor (unknown names are ignored) shifts everything after it. */
	mem = open_memstream(&hdr, &hlen);
	fprintf(mem, "{\"aaa.pad\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}");
	off = 1;
	for (int i = 0; i < f->n_tensors; i++) {
		const struct hmoe_tensor *t = &f->tensors[i];

		fprintf(mem, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t->name,
			hmoe_dtype_name(t->dtype));
		for (int d = 0; d < t->ndim; d++)
			fprintf(mem, "%s%lld", d ? "," : "", (long long)t->shape[d]);
		fprintf(mem, "],\"data_offsets\":[%zu,%zu]}", off, off + t->nbytes);
		unaligned += t->dtype == HMOE_DT_F32 && off % 4;
		off += t->nbytes;
	}
	fputc('}', mem);
	while ((ftell(mem) + 8) % 8)
		fputc(' ', mem);
	fclose(mem);
	CHECK(unaligned > 0, "layout should leave some F32 tensors unaligned");
	snprintf(path, sizeof(path), "%s/model.safetensors", sub("u"));
	fp = fopen(path, "wb");
	if (fp) {
		uint64_t n = hlen;

		fwrite(&n, 8, 1, fp);
		fwrite(hdr, 1, hlen, fp);
		fputc(0, fp);
		for (int i = 0; i < f->n_tensors; i++)
			fwrite(f->tensors[i].data, 1, f->tensors[i].nbytes, fp);
		fclose(fp);
	}
	free(hdr);
	hmoe_st_close(f);
	snprintf(path, sizeof(path), "%s/config.json", sub("u"));
	if (hmoe_config_load(&c, sub("a/config.json")) || hmoe_config_save(&c, path))
		CHECK(0, "config: %s", hmoe_last_error());
	CHECK(hmoe_model_load(&a, sub("a"), HMOE_LOAD_F32) == 0, "load a: %s", hmoe_last_error());
	CHECK(hmoe_model_load(&b, sub("u"), HMOE_LOAD_F32) == 0, "load unaligned: %s",
	      hmoe_last_error());
	if (a && b) {
		const struct hmoe_linear *la = &a->layers[2].experts[5].w1, *lb = &b->layers[2].experts[5].w1;
		int bad = 0;

		for (int l = 0; l < 3; l++) {
			const struct hmoe_linear *x[] = { &b->layers[l].wq_a, &b->layers[l].wq_b,
							  &b->layers[l].wkv_a, &b->layers[l].wkv_b,
							  &b->layers[l].wo };

			for (int k = 0; k < 5; k++)
				bad += (uintptr_t)x[k]->scale % 4 != 0 ||
				       memcmp(x[k]->scale, x[k]->scale_inv->data,
					      x[k]->scale_inv->nbytes) != 0;
		}
		CHECK(bad == 0, "%d scale pointers unaligned or wrong", bad);
		CHECK(same_linear(la, lb) && same_linear(&a->layers[1].wkv_b, &b->layers[1].wkv_b) &&
		      !memcmp(a->layers[2].gate_bias, b->layers[2].gate_bias, 16 * 4) &&
		      same_linear(&a->head, &b->head),
		      "unaligned file loads to different weights");
	}
	hmoe_model_free(a);
	hmoe_model_free(b);
}

/* Counts from the config alone, to compare with hmoe_model_stats. */
static void test_stats(void)
{
	struct hmoe_config c = micro();
	struct hmoe_model *m = NULL;
	struct hmoe_model_stats s;
	int64_t D = c.hidden_size, V = c.vocab_size, H = c.num_attention_heads;
	int64_t qk = c.qk_nope_head_dim + c.qk_rope_head_dim;
	int64_t attn = c.q_lora_rank * D + c.q_lora_rank + H * qk * c.q_lora_rank +
		       (c.kv_lora_rank + c.qk_rope_head_dim) * D + c.kv_lora_rank +
		       H * (c.qk_nope_head_dim + c.v_head_dim) * c.kv_lora_rank +
		       D * H * c.v_head_dim + 2 * D;
	int64_t dense = 3 * D * c.intermediate_size;
	int64_t expert = 3 * D * c.moe_intermediate_size;
	int64_t router = c.n_routed_experts * D + c.n_routed_experts;
	int64_t total = 2 * V * D + D + 3 * attn + dense +
			2 * (router + expert * (c.n_routed_experts + c.n_shared_experts));
	int64_t active = D + V * D + D + 3 * attn + dense +
			 2 * (router + expert * (c.num_experts_per_tok + c.n_shared_experts));
	struct hmoe_st_file *f = NULL;
	int64_t file_bytes = 0;

	CHECK(hmoe_model_load(&m, sub("a"), 0) == 0, "load: %s", hmoe_last_error());
	if (!m)
		return;
	hmoe_model_stats(m, &s);
	CHECK(s.params_total == total, "params_total %lld, want %lld",
	      (long long)s.params_total, (long long)total);
	CHECK(s.params_active == active, "params_active %lld, want %lld",
	      (long long)s.params_active, (long long)active);
	if (!hmoe_st_open(&f, sub("a/model.safetensors"))) {
		for (int i = 0; i < f->n_tensors; i++)
			file_bytes += (int64_t)f->tensors[i].nbytes;
		hmoe_st_close(f);
	}
	CHECK(s.bytes_total == file_bytes, "bytes_total %lld, tensor bytes in the file %lld",
	      (long long)s.bytes_total, (long long)file_bytes);
	/* Per token: fp8 linears ~1 byte/param, bf16 embed row + head 2 bytes/param. */
	CHECK(s.bytes_per_token > active && s.bytes_per_token < 2 * active + 4096,
	      "bytes_per_token %lld for %lld active params", (long long)s.bytes_per_token,
	      (long long)active);
	hmoe_model_free(m);
}

static void test_tokenizer_copy(void)
{
	struct hmoe_config c = micro();
	struct hmoe_mktiny_opts o = { .out_dir = sub("t"), .seed = 1, .shards = 1,
				      .tokenizer_dir = sub("tok") };
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", sub("tok"));
	CHECK(system(cmd) == 0, "mkdir");
	write_text(sub("tok/tokenizer.json"), "{\"model\": {}}\n");
	CHECK(hmoe_mktiny_write(&c, &o) == -HMOE_EINPUT &&
	      strstr(hmoe_last_error(), "tokenizer_config.json"),
	      "missing tokenizer_config.json: %s", hmoe_last_error());
	write_text(sub("tok/tokenizer_config.json"), "{}\n");
	CHECK(hmoe_mktiny_write(&c, &o) == 0, "mktiny with tokenizer: %s", hmoe_last_error());
	CHECK(files_equal(sub("tok/tokenizer.json"), sub("t/tokenizer.json")) &&
	      files_equal(sub("tok/tokenizer_config.json"), sub("t/tokenizer_config.json")),
	      "tokenizer files not copied");
	o.shards = 100000;
	CHECK(hmoe_mktiny_write(&c, &o) == -HMOE_EINPUT && strstr(hmoe_last_error(), "shards"),
	      "too many shards: %s", hmoe_last_error());
}

/* /proc/self/smaps' VmFlags line of the mapping that starts at p ("" if none). */
static void vm_flags_at(const void *p, char *flags, size_t n)
{
	char line[512];
	int in = 0;
	FILE *f = fopen("/proc/self/smaps", "r");

	flags[0] = 0;
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long start, end;

		if (sscanf(line, "%lx-%lx ", &start, &end) == 2)  /* a mapping's first line */
			in = start == (unsigned long)(uintptr_t)p;
		else if (in && !strncmp(line, "VmFlags:", 8)) {
			snprintf(flags, n, "%s", line + 8);
			break;
		}
	}
	if (f)
		fclose(f);
}

/* Memory for streamed weights (the fp32 arena, the fixed-point packs): 2 MiB aligned
 * whatever the size, zeroed, writable to the last byte, marked for 2 MiB pages (VmFlags
 * "hg": whether the kernel then gives huge pages is its choice, so that is not
 * asserted); sizes it cannot give are NULL, not a crash. */
#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#ifdef TEST_ASAN
#include <sanitizer/asan_interface.h>
#endif

/* Blocks sharing one weights allocation (cpu-fxp's packs, the fp32 arena's tensors): 64-byte
 * aligned, writable to their end, and under AddressSanitizer each followed by poisoned
 * bytes up to the next, which stays readable, so that reading past a pack is reported. */
static void test_weights_blocks(void)
{
	static const size_t sizes[] = { 100, 4096, 45547520 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t bytes = sizes[i], stride = hmoe_model_weights_stride(bytes);
		uint8_t *p = hmoe_model_weights_alloc(3 * stride);

		CHECK(stride % 64 == 0 && stride >= bytes && stride < bytes + 64 + 64,
		      "stride %zu for blocks of %zu bytes", stride, bytes);
		CHECK(p, "weights memory for 3 blocks of %zu bytes: NULL", bytes);
		if (!p)
			continue;
		for (int k = 0; k < 3; k++) {
			hmoe_model_weights_guard(p + k * stride, bytes);
			memset(p + k * stride, 0x5a, bytes);  /* ASan: the block itself is writable */
		}
#ifdef TEST_ASAN
		for (int k = 0; k < 3; k++) {
			uint8_t *b = p + k * stride;

			CHECK(__asan_address_is_poisoned(b + bytes) &&
			      __asan_address_is_poisoned(b + stride - 1),
			      "blocks of %zu bytes: block %d's guard after its end not poisoned",
			      bytes, k);
			CHECK(!__asan_address_is_poisoned(b) &&
			      !__asan_address_is_poisoned(b + bytes - 1),
			      "blocks of %zu bytes: block %d poisoned", bytes, k);
		}
#else
		CHECK(stride == ((bytes + 63) & ~(size_t)63),
		      "stride %zu for blocks of %zu bytes without AddressSanitizer", stride, bytes);
#endif
		hmoe_model_weights_free(p, 3 * stride);
	}
#ifdef TEST_ASAN
	{
		/* freeing lifts the poison, so a later mapping at the same address is clean */
		size_t stride = hmoe_model_weights_stride(100);
		uint8_t *p = hmoe_model_weights_alloc(stride);

		if (p) {
			hmoe_model_weights_guard(p, 100);
			hmoe_model_weights_free(p, stride);
			CHECK(!__asan_address_is_poisoned(p + 100),
			      "weights memory still poisoned after hmoe_model_weights_free");
		}
	}
#else
	printf("weights blocks: the guard lines between blocks exist only under "
	       "AddressSanitizer (make test SANITIZE=1 checks them)\n");
#endif
}

static void test_weights_memory(void)
{
	static const size_t sizes[] = { 64, (size_t)5 << 20 | 64, (size_t)2 << 20 };
	/* a kernel built without transparent huge pages refuses MADV_HUGEPAGE */
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	int thp = f != NULL;

	if (f)
		fclose(f);
	else
		printf("weights memory: no transparent huge pages in this kernel, the "
		       "MADV_HUGEPAGE mark is not checked\n");

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t bytes = sizes[i], nonzero = 0;
		uint8_t *p = hmoe_model_weights_alloc(bytes);
		char flags[512];

		CHECK(p, "weights memory of %zu bytes: NULL", bytes);
		if (!p)
			continue;
		CHECK(((uintptr_t)p & ((2u << 20) - 1)) == 0, "weights memory %p not 2 MiB aligned",
		      (void *)p);
		for (size_t k = 0; k < bytes; k++)
			nonzero += p[k] != 0;
		CHECK(nonzero == 0, "weights memory of %zu bytes: %zu bytes not zero", bytes,
		      nonzero);
		memset(p, 0xa5, bytes);
		vm_flags_at(p, flags, sizeof(flags));
		if (thp)
			CHECK(strstr(flags, " hg") != NULL, "weights memory of %zu bytes not marked "
			      "MADV_HUGEPAGE (VmFlags:%s)", bytes, flags);
		hmoe_model_weights_free(p, bytes);
	}
	test_weights_blocks();
	CHECK(hmoe_model_weights_alloc(0) == NULL, "weights memory of 0 bytes");
	CHECK(hmoe_model_weights_alloc(SIZE_MAX - 4096) == NULL,
	      "weights memory of SIZE_MAX - 4096 bytes");
	hmoe_model_weights_free(NULL, 64);  /* like free(NULL) */
}

int main(void)
{
	char cmd[300];

	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	test_load();
	test_shards_and_determinism();
	test_variants();
	test_refusals();
	test_unaligned();
	test_stats();
	test_tokenizer_copy();
	test_weights_memory();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd))
		fprintf(stderr, "warning: could not remove %s\n", root);
	if (failures) {
		fprintf(stderr, "%d checks failed\n", failures);
		return 1;
	}
	printf("test_model: all checks passed\n");
	return 0;
}
