/* hmoe_mktiny: deterministic random DeepSeek-V3 checkpoints (see hmoe_mktiny.h).
 *
 * Init, chosen so activations stay O(1) through the layers of the random model:
 *   linear weights (and the router)  N(0, 1) / sqrt(in)
 *   embedding                        N(0, 1)
 *   RMSNorm weights                  1 + 0.05 N(0, 1)
 *   gate correction bias             U(-0.1, 0.1), entry 0 negative and entry 1 positive
 *   lm_head rows past the tokenizer  100x smaller (padding ids stay unlikely)
 * N(0, 1) is approximated by the sum of four 16-bit uniforms (Irwin-Hall), scaled to unit
 * variance: integer-exact, cheap, and the same on every machine.
 * FP8: per 128x128 block s = amax / 448, code = nearest e4m3 of w / s, scale_inv = s.
 */
#include "hmoe_mktiny.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "hmoe_err.h"
#include "hmoe_model.h"
#include "hmoe_num.h"
#include "hmoe_pool.h"
#include "hmoe_st.h"

/* ---------------------------------------------------------------------------------- */
/* presets */

int hmoe_mktiny_preset(struct hmoe_config *c, const char *preset)
{
	/* DeepSeek-V3's values (routing, rope theta and betas, eps, 128x128 blocks) come
	 * from the defaults; a preset sets only what differs from them. */
	hmoe_config_defaults(c);
	c->rope_yarn = 1;
	c->rope_factor = 40.0f;
	c->fp8 = 1;
	if (!strcmp(preset, "tiny")) {
		/* 192, 320, 160, 80, 96: partial 128-blocks in both weight dimensions. */
		c->hidden_size = 192;
		c->intermediate_size = 320;
		c->moe_intermediate_size = 160;
		c->num_hidden_layers = 3;
		c->first_k_dense_replace = 1;
		c->num_attention_heads = 4;
		c->n_routed_experts = 16;
		c->num_experts_per_tok = 4;
		c->n_group = 4;
		c->topk_group = 2;
		c->q_lora_rank = 96;
		c->kv_lora_rank = 64;
		c->qk_nope_head_dim = 32;
		c->qk_rope_head_dim = 16;
		c->v_head_dim = 32;
		c->rope_original_max_pos = 64;
	} else if (!strcmp(preset, "small")) {
		c->hidden_size = 1024;
		c->intermediate_size = 2816;
		c->moe_intermediate_size = 256;
		c->num_hidden_layers = 8;
		c->first_k_dense_replace = 1;
		c->num_attention_heads = 8;
		c->n_routed_experts = 32;
		c->num_experts_per_tok = 4;
		c->n_group = 4;
		c->topk_group = 2;
		c->q_lora_rank = 384;
		c->kv_lora_rank = 256;
		c->qk_nope_head_dim = 64;
		c->qk_rope_head_dim = 32;
		c->v_head_dim = 64;
		c->rope_original_max_pos = 512;
	} else {
		return hmoe_err(HMOE_EINPUT, "mktiny: unknown preset \"%s\" (tiny or small)", preset);
	}
	c->num_key_value_heads = c->num_attention_heads;
	c->max_position_embeddings = c->rope_original_max_pos * 40;
	return 0;
}

/* ---------------------------------------------------------------------------------- */
/* the tensor list */

enum init_kind { INIT_LINEAR, INIT_HEAD, INIT_EMBED, INIT_NORM, INIT_BIAS };

struct spec {
	char name[112];
	char scale_name[128];
	enum init_kind kind;
	enum hmoe_dtype dtype;
	int ndim;
	int64_t rows, cols;       /* 1-D tensors: rows 1 */
	int fp8;                  /* has a weight_scale_inv */
	int64_t srows, scols;     /* scale shape */
	size_t nbytes, scale_nbytes;
	int shard;
	uint8_t *data;            /* while its shard is written */
	float *scale;
};

struct plan {
	const struct hmoe_config *cfg;
	struct spec *specs;
	int n, cap;
	int err;                  /* set by add() on allocation failure */
};

static void add(struct plan *p, enum init_kind kind, int ndim, int64_t rows, int64_t cols,
		const char *fmt, ...) HMOE_PRINTF(6, 7);

static void add(struct plan *p, enum init_kind kind, int ndim, int64_t rows, int64_t cols,
		const char *fmt, ...)
{
	const struct hmoe_config *c = p->cfg;
	struct spec *s;
	va_list ap;

	if (p->err)
		return;
	if (p->n == p->cap) {
		int cap = p->cap ? 2 * p->cap : 256;
		struct spec *ns = realloc(p->specs, (size_t)cap * sizeof(*ns));

		if (!ns) {
			p->err = 1;
			return;
		}
		p->specs = ns;
		p->cap = cap;
	}
	s = &p->specs[p->n++];
	memset(s, 0, sizeof(*s));
	va_start(ap, fmt);
	vsnprintf(s->name, sizeof(s->name), fmt, ap);
	va_end(ap);
	s->kind = kind;
	s->ndim = ndim;
	s->rows = ndim == 1 ? 1 : rows;
	s->cols = ndim == 1 ? rows : cols;
	switch (kind) {
	case INIT_LINEAR:
		s->dtype = c->fp8 ? HMOE_DT_F8E4M3 : HMOE_DT_BF16;
		break;
	case INIT_BIAS:
		s->dtype = HMOE_DT_F32;
		break;
	default:
		s->dtype = HMOE_DT_BF16;
		break;
	}
	s->nbytes = (size_t)(s->rows * s->cols) * hmoe_dtype_size(s->dtype);
	if (s->dtype == HMOE_DT_F8E4M3) {
		s->fp8 = 1;
		s->srows = (s->rows + c->fp8_block[0] - 1) / c->fp8_block[0];
		s->scols = (s->cols + c->fp8_block[1] - 1) / c->fp8_block[1];
		s->scale_nbytes = (size_t)(s->srows * s->scols) * sizeof(float);
		snprintf(s->scale_name, sizeof(s->scale_name), "%s_scale_inv", s->name);
	}
}

static void add_mlp(struct plan *p, int layer, const char *what, int dim, int inter)
{
	add(p, INIT_LINEAR, 2, inter, dim, "model.layers.%d.mlp.%s.gate_proj.weight", layer, what);
	add(p, INIT_LINEAR, 2, inter, dim, "model.layers.%d.mlp.%s.up_proj.weight", layer, what);
	add(p, INIT_LINEAR, 2, dim, inter, "model.layers.%d.mlp.%s.down_proj.weight", layer, what);
}

/* Every tensor of the checkpoint, in model order (embedding, layers, norm, head). */
static int build_plan(struct plan *p)
{
	const struct hmoe_config *c = p->cfg;
	int dim = c->hidden_size, heads = c->num_attention_heads;
	int qk = hmoe_config_qk_head_dim(c);

	add(p, INIT_EMBED, 2, c->vocab_size, dim, "model.embed_tokens.weight");
	for (int l = 0; l < c->num_hidden_layers; l++) {
		add(p, INIT_NORM, 1, dim, 0, "model.layers.%d.input_layernorm.weight", l);
		if (c->q_lora_rank > 0) {
			add(p, INIT_LINEAR, 2, c->q_lora_rank, dim,
			    "model.layers.%d.self_attn.q_a_proj.weight", l);
			add(p, INIT_NORM, 1, c->q_lora_rank, 0,
			    "model.layers.%d.self_attn.q_a_layernorm.weight", l);
			add(p, INIT_LINEAR, 2, heads * qk, c->q_lora_rank,
			    "model.layers.%d.self_attn.q_b_proj.weight", l);
		} else {
			add(p, INIT_LINEAR, 2, heads * qk, dim,
			    "model.layers.%d.self_attn.q_proj.weight", l);
		}
		add(p, INIT_LINEAR, 2, c->kv_lora_rank + c->qk_rope_head_dim, dim,
		    "model.layers.%d.self_attn.kv_a_proj_with_mqa.weight", l);
		add(p, INIT_NORM, 1, c->kv_lora_rank, 0,
		    "model.layers.%d.self_attn.kv_a_layernorm.weight", l);
		add(p, INIT_LINEAR, 2, heads * (c->qk_nope_head_dim + c->v_head_dim),
		    c->kv_lora_rank, "model.layers.%d.self_attn.kv_b_proj.weight", l);
		add(p, INIT_LINEAR, 2, dim, heads * c->v_head_dim,
		    "model.layers.%d.self_attn.o_proj.weight", l);
		add(p, INIT_NORM, 1, dim, 0, "model.layers.%d.post_attention_layernorm.weight", l);
		if (!hmoe_config_is_moe_layer(c, l)) {
			add(p, INIT_LINEAR, 2, c->intermediate_size, dim,
			    "model.layers.%d.mlp.gate_proj.weight", l);
			add(p, INIT_LINEAR, 2, c->intermediate_size, dim,
			    "model.layers.%d.mlp.up_proj.weight", l);
			add(p, INIT_LINEAR, 2, dim, c->intermediate_size,
			    "model.layers.%d.mlp.down_proj.weight", l);
			continue;
		}
		/* The router is bf16 in the real checkpoint even though it is a linear. */
		add(p, INIT_HEAD, 2, c->n_routed_experts, dim, "model.layers.%d.mlp.gate.weight", l);
		if (c->noaux_tc)
			add(p, INIT_BIAS, 1, c->n_routed_experts, 0,
			    "model.layers.%d.mlp.gate.e_score_correction_bias", l);
		for (int e = 0; e < c->n_routed_experts; e++) {
			char what[32];

			snprintf(what, sizeof(what), "experts.%d", e);
			add_mlp(p, l, what, dim, c->moe_intermediate_size);
		}
		if (c->n_shared_experts > 0)
			add_mlp(p, l, "shared_experts", dim,
				c->n_shared_experts * c->moe_intermediate_size);
	}
	add(p, INIT_NORM, 1, dim, 0, "model.norm.weight");
	if (!c->tie_word_embeddings)
		add(p, INIT_HEAD, 2, c->vocab_size, dim, "lm_head.weight");
	if (p->err)
		return hmoe_err(HMOE_ENOMEM, "mktiny: out of memory for the tensor list");
	return 0;
}

/* ---------------------------------------------------------------------------------- */
/* random values */

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
	return h;
}

/* Approximately N(0, 1): four 16-bit uniforms summed, centred, scaled to unit variance. */
static float normal(uint64_t *s)
{
	uint64_t r = splitmix64(s);
	float sum = 0;

	for (int k = 0; k < 4; k++, r >>= 16)
		sum += ((float)(r & 0xffff) + 0.5f) * (1.0f / 65536.0f);
	return (sum - 2.0f) * 1.7320508f;
}

static float uniform_pm1(uint64_t *s)
{
	return (float)(splitmix64(s) >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

/* Rows [r0, r1) of spec s, drawn from the stream of (seed, name, chunk). */
static void draw_rows(const struct hmoe_config *c, const struct spec *s, uint64_t seed,
		      int64_t chunk, int64_t r0, int64_t r1, float *w)
{
	uint64_t st = seed ^ fnv1a(s->name) ^ ((uint64_t)chunk * 0xd1b54a32d192ed03ull);
	float std = s->kind == INIT_LINEAR || s->kind == INIT_HEAD ? 1.0f / sqrtf((float)s->cols)
								    : 1.0f;

	splitmix64(&st);
	for (int64_t r = r0; r < r1; r++) {
		float *y = w + (r - r0) * s->cols;
		float rs = std;

		if (s->kind == INIT_HEAD && s->rows == c->vocab_size &&
		    c->vocab_size > HMOE_MKTINY_TOKENIZER_IDS && r >= HMOE_MKTINY_TOKENIZER_IDS)
			rs *= 0.01f;
		for (int64_t k = 0; k < s->cols; k++) {
			switch (s->kind) {
			case INIT_NORM:
				y[k] = 1.0f + 0.05f * normal(&st);
				break;
			case INIT_BIAS:
				y[k] = 0.1f * uniform_pm1(&st);
				break;
			default:
				y[k] = rs * normal(&st);
				break;
			}
		}
	}
	if (s->kind == INIT_BIAS && r0 == 0) {
		/* Both signs, always: a negative bias is what makes 0-masking differ. */
		w[0] = -fabsf(w[0]) - 0.01f;
		if (s->cols > 1)
			w[1] = fabsf(w[1]) + 0.01f;
	}
}

/* ---------------------------------------------------------------------------------- */
/* generating one shard in parallel */

struct gen_task {
	int spec;
	int64_t chunk, r0, r1;
};

struct gen_ctx {
	const struct hmoe_config *cfg;
	struct spec *specs;
	const struct gen_task *tasks;
	uint64_t seed;
	atomic_int failed;
};

/* Rows per chunk: ~1M values, a whole number of FP8 row blocks. Depends only on the
 * tensor's shape, so the streams do not depend on the thread count. */
static int64_t chunk_rows(const struct hmoe_config *c, const struct spec *s)
{
	int64_t rows = (1 << 20) / (s->cols ? s->cols : 1);
	int64_t b = s->fp8 ? c->fp8_block[0] : 1;

	rows = rows / b * b;
	return rows < b ? b : rows;
}

static void gen_task(void *arg, long i, int thread)
{
	struct gen_ctx *g = arg;
	const struct gen_task *t = &g->tasks[i];
	struct spec *s = &g->specs[t->spec];
	const struct hmoe_config *c = g->cfg;
	int64_t n = (t->r1 - t->r0) * s->cols;
	float *w = malloc((size_t)n * sizeof(float) + 1);

	(void)thread;
	if (!w) {
		atomic_store(&g->failed, 1);
		return;
	}
	draw_rows(c, s, g->seed, t->chunk, t->r0, t->r1, w);
	if (s->dtype == HMOE_DT_F32) {
		memcpy(s->data + t->r0 * s->cols * 4, w, (size_t)n * sizeof(float));
	} else if (s->dtype == HMOE_DT_BF16) {
		for (int64_t k = 0; k < n; k++) {
			uint16_t h = hmoe_f32_to_bf16(w[k]);

			memcpy(s->data + (t->r0 * s->cols + k) * 2, &h, 2);
		}
	} else {
		int bo = c->fp8_block[0], bi = c->fp8_block[1];

		for (int64_t rb = t->r0; rb < t->r1; rb += bo) {
			int64_t re = rb + bo < t->r1 ? rb + bo : t->r1;

			for (int64_t cb = 0; cb < s->cols; cb += bi) {
				int64_t ce = cb + bi < s->cols ? cb + bi : s->cols;
				float amax = 0, sc, inv;

				for (int64_t r = rb; r < re; r++) {
					const float *wr = w + (r - t->r0) * s->cols;

					for (int64_t k = cb; k < ce; k++)
						amax = fabsf(wr[k]) > amax ? fabsf(wr[k]) : amax;
				}
				sc = amax > 0 ? amax / 448.0f : 1.0f;
				inv = 1.0f / sc;
				s->scale[(rb / bo) * s->scols + cb / bi] = sc;
				for (int64_t r = rb; r < re; r++)
					for (int64_t k = cb; k < ce; k++)
						s->data[r * s->cols + k] = hmoe_f32_to_fp8_e4m3(
							w[(r - t->r0) * s->cols + k] * inv);
			}
		}
	}
	free(w);
}

static int write_shard(const struct hmoe_config *c, struct spec *specs, int n, int shard,
		       const char *path, uint64_t seed, struct hmoe_pool *pool)
{
	struct hmoe_tensor *ts = NULL;
	struct gen_task *tasks = NULL;
	struct gen_ctx g;
	long n_tasks = 0, k = 0;
	int nt = 0, ret = 0;

	for (int i = 0; i < n; i++) {
		struct spec *s = &specs[i];

		if (s->shard != shard)
			continue;
		n_tasks += (long)((s->rows + chunk_rows(c, s) - 1) / chunk_rows(c, s));
		s->data = malloc(s->nbytes + 1);
		s->scale = s->fp8 ? malloc(s->scale_nbytes + 1) : NULL;
		if (!s->data || (s->fp8 && !s->scale)) {
			ret = hmoe_err(HMOE_ENOMEM, "mktiny: out of memory for tensor %s", s->name);
			goto out;
		}
	}
	tasks = malloc(((size_t)n_tasks + 1) * sizeof(*tasks));
	ts = calloc(2 * (size_t)n + 1, sizeof(*ts));
	if (!tasks || !ts) {
		ret = hmoe_err(HMOE_ENOMEM, "mktiny: out of memory");
		goto out;
	}
	for (int i = 0; i < n; i++) {
		const struct spec *s = &specs[i];
		int64_t cr = chunk_rows(c, s), ch = 0;

		if (s->shard != shard)
			continue;
		for (int64_t r = 0; r < s->rows; r += cr, ch++)
			tasks[k++] = (struct gen_task){ i, ch, r, r + cr < s->rows ? r + cr : s->rows };
		ts[nt++] = (struct hmoe_tensor){ .name = s->name, .dtype = s->dtype,
						 .ndim = s->ndim,
						 .shape = { s->ndim == 1 ? s->cols : s->rows,
							    s->cols },
						 .data = s->data, .nbytes = s->nbytes };
		if (s->fp8)
			ts[nt++] = (struct hmoe_tensor){ .name = s->scale_name,
							 .dtype = HMOE_DT_F32, .ndim = 2,
							 .shape = { s->srows, s->scols },
							 .data = s->scale,
							 .nbytes = s->scale_nbytes };
	}
	g = (struct gen_ctx){ .cfg = c, .specs = specs, .tasks = tasks, .seed = seed };
	atomic_init(&g.failed, 0);
	hmoe_pool_run(pool, k, gen_task, &g);
	if (atomic_load(&g.failed)) {
		ret = hmoe_err(HMOE_ENOMEM, "mktiny: out of memory drawing weights");
		goto out;
	}
	ret = hmoe_st_write(path, ts, nt, "{\"format\":\"pt\"}");
out:
	for (int i = 0; i < n; i++) {
		if (specs[i].shard != shard)
			continue;
		free(specs[i].data);
		free(specs[i].scale);
		specs[i].data = NULL;
		specs[i].scale = NULL;
	}
	free(tasks);
	free(ts);
	return ret;
}

/* ---------------------------------------------------------------------------------- */
/* files */

static int mkdir_p(const char *dir)
{
	char buf[4096];
	size_t n = strlen(dir);

	if (n == 0 || n >= sizeof(buf))
		return hmoe_err(HMOE_EINPUT, "mktiny: bad output folder \"%s\"", dir);
	memcpy(buf, dir, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, 0755) && errno != EEXIST)
			return hmoe_err(HMOE_EINPUT, "%s: cannot create folder: %s", buf,
					strerror(errno));
		buf[i] = i < n ? '/' : '\0';
	}
	{
		struct stat st;

		if (stat(dir, &st) || !S_ISDIR(st.st_mode))
			return hmoe_err(HMOE_EINPUT, "%s: not a folder", dir);
	}
	return 0;
}

/* Removes the checkpoint files a previous run may have left (other shard counts). */
static int remove_old(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[4096];
	int a, b, ret = 0;

	if (!d)
		return hmoe_err(HMOE_EIO, "%s: cannot list: %s", dir, strerror(errno));
	while ((e = readdir(d))) {
		char tail[32] = "";
		int stale = !strcmp(e->d_name, "model.safetensors") ||
			    !strcmp(e->d_name, "model.safetensors.index.json");

		if (sscanf(e->d_name, "model-%5d-of-%5d%31s", &a, &b, tail) == 3 &&
		    !strcmp(tail, ".safetensors"))
			stale = 1;
		if (!stale)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (unlink(path) && errno != ENOENT) {
			ret = hmoe_err(HMOE_EIO, "%s: cannot remove: %s", path, strerror(errno));
			break;
		}
	}
	closedir(d);
	return ret;
}

static int copy_file(const char *from, const char *to)
{
	FILE *in = fopen(from, "rb"), *out;
	char buf[1 << 16];
	size_t n;
	int ret = 0;

	if (!in)
		return hmoe_err(HMOE_EINPUT, "%s: cannot open: %s", from, strerror(errno));
	out = fopen(to, "wb");
	if (!out) {
		ret = hmoe_err(HMOE_EIO, "%s: cannot create: %s", to, strerror(errno));
		fclose(in);
		return ret;
	}
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		if (fwrite(buf, 1, n, out) != n) {
			ret = hmoe_err(HMOE_EIO, "%s: write failed: %s", to, strerror(errno));
			break;
		}
	if (!ret && ferror(in))
		ret = hmoe_err(HMOE_EIO, "%s: read failed", from);
	fclose(in);
	if (fclose(out) && !ret)
		ret = hmoe_err(HMOE_EIO, "%s: write failed: %s", to, strerror(errno));
	return ret;
}

static int has_tokenizer_json(const char *dir)
{
	struct stat st;
	char *f = NULL;
	int ok;

	if (asprintf(&f, "%s/tokenizer.json", dir) < 0)
		return 0;
	ok = !stat(f, &st) && S_ISREG(st.st_mode);
	free(f);
	return ok;
}

int hmoe_mktiny_find_tokenizer(char *buf, size_t size)
{
	static const char *const prefixes[] = { "/../", "/../../" };
	const char *rel = "models/deepseek-v3-tokenizer";
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	int nc = 0;

	if (n > 0) {
		char *slash;

		exe[n] = '\0';
		slash = strrchr(exe, '/');
		if (slash)
			*slash = '\0';
		nc = 2;
	}
	for (int i = 0; i <= nc; i++) {
		char *cand = NULL;
		int ok;

		if (i < nc ? asprintf(&cand, "%s%s%s", exe, prefixes[i], rel) < 0
			   : asprintf(&cand, "./%s", rel) < 0)
			return hmoe_err(HMOE_ENOMEM, "out of memory");
		ok = has_tokenizer_json(cand);
		if (ok && strlen(cand) < size)
			strcpy(buf, cand);
		free(cand);
		if (ok)
			return strlen(buf) ? 0 : hmoe_err(HMOE_EINPUT, "tokenizer path too long");
	}
	return hmoe_err(HMOE_EINPUT, "mktiny: tokenizer folder %s not found next to the hmoe "
			"executable or in the current folder (give --tokenizer DIR, or "
			"--no-tokenizer)", rel);
}

static int write_index(const char *dir, const struct spec *specs, int n, int shards,
		       uint64_t total)
{
	cJSON *root = cJSON_CreateObject(), *meta = cJSON_CreateObject(),
	      *wm = cJSON_CreateObject();
	const struct spec **sorted = malloc(((size_t)n + 1) * sizeof(*sorted));
	char path[4096], file[64], *text = NULL;
	FILE *fp;
	int ret = 0, ok = root && meta && wm && sorted;

	if (ok) {
		cJSON_AddItemToObject(root, "metadata", meta);
		cJSON_AddItemToObject(root, "weight_map", wm);
		meta = wm = NULL;
		ok = cJSON_AddNumberToObject(cJSON_GetObjectItem(root, "metadata"), "total_size",
					     (double)total) != NULL;
	}
	/* weight_map keys sorted by name, as HF writes them; scales beside their weight. */
	for (int i = 0; ok && i < n; i++)
		sorted[i] = &specs[i];
	for (int i = 1; ok && i < n; i++) {
		const struct spec *x = sorted[i];
		int j = i - 1;

		for (; j >= 0 && strcmp(sorted[j]->name, x->name) > 0; j--)
			sorted[j + 1] = sorted[j];
		sorted[j + 1] = x;
	}
	for (int i = 0; ok && i < n; i++) {
		cJSON *w = cJSON_GetObjectItem(root, "weight_map");

		snprintf(file, sizeof(file), "model-%05d-of-%05d.safetensors", sorted[i]->shard + 1,
			 shards);
		ok = cJSON_AddStringToObject(w, sorted[i]->name, file) != NULL;
		if (ok && sorted[i]->fp8)
			ok = cJSON_AddStringToObject(w, sorted[i]->scale_name, file) != NULL;
	}
	if (ok)
		text = cJSON_Print(root);
	cJSON_Delete(root);
	cJSON_Delete(meta);
	cJSON_Delete(wm);
	free(sorted);
	if (!text)
		return hmoe_err(HMOE_ENOMEM, "mktiny: out of memory building the index");
	snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
	fp = fopen(path, "wb");
	if (!fp)
		ret = hmoe_err(HMOE_EIO, "%s: cannot create: %s", path, strerror(errno));
	else {
		if (fputs(text, fp) < 0 || fputc('\n', fp) < 0)
			ret = hmoe_err(HMOE_EIO, "%s: write failed", path);
		if (fclose(fp) && !ret)
			ret = hmoe_err(HMOE_EIO, "%s: write failed", path);
	}
	cJSON_free(text);
	return ret;
}

/* ---------------------------------------------------------------------------------- */
/* the whole checkpoint */

int hmoe_mktiny_write(const struct hmoe_config *cfg, const struct hmoe_mktiny_opts *o)
{
	struct plan p = { .cfg = cfg };
	struct hmoe_pool *pool = NULL;
	char path[4096];
	uint64_t total = 0, cum = 0;
	int ret, prev = 0;

	if ((ret = hmoe_config_validate(cfg, "mktiny config")))
		return ret;
	if ((ret = build_plan(&p)))
		goto out;
	if (o->shards < 1 || o->shards > p.n) {
		ret = hmoe_err(HMOE_EINPUT, "mktiny: --shards %d must be in [1, %d] (the number of "
			       "weight tensors)", o->shards, p.n);
		goto out;
	}
	if ((ret = mkdir_p(o->out_dir)) || (ret = remove_old(o->out_dir)))
		goto out;

	/* Shards by cumulative bytes, in model order, none empty. */
	for (int i = 0; i < p.n; i++)
		total += p.specs[i].nbytes + p.specs[i].scale_nbytes;
	for (int i = 0; i < p.n; i++) {
		int s = (int)(cum * (uint64_t)o->shards / (total ? total : 1));

		if (s > prev + 1)
			s = prev + 1;
		if (s < prev)
			s = prev;
		if (s < o->shards - (p.n - i))
			s = o->shards - (p.n - i);
		if (s > o->shards - 1)
			s = o->shards - 1;
		p.specs[i].shard = prev = s;
		cum += p.specs[i].nbytes + p.specs[i].scale_nbytes;
	}
	if ((ret = hmoe_pool_create(&pool, 0)))
		goto out;
	for (int sh = 0; sh < o->shards; sh++) {
		if (o->shards == 1)
			snprintf(path, sizeof(path), "%s/model.safetensors", o->out_dir);
		else
			snprintf(path, sizeof(path), "%s/model-%05d-of-%05d.safetensors", o->out_dir,
				 sh + 1, o->shards);
		if ((ret = write_shard(cfg, p.specs, p.n, sh, path, o->seed, pool)))
			goto out;
	}
	if (o->shards > 1 && (ret = write_index(o->out_dir, p.specs, p.n, o->shards, total)))
		goto out;
	snprintf(path, sizeof(path), "%s/config.json", o->out_dir);
	if ((ret = hmoe_config_save(cfg, path)))
		goto out;
	if (o->tokenizer_dir) {
		static const char *const files[] = { "tokenizer.json", "tokenizer_config.json" };

		for (int i = 0; i < 2; i++) {
			char from[4096 + 64];

			snprintf(from, sizeof(from), "%s/%s", o->tokenizer_dir, files[i]);
			snprintf(path, sizeof(path), "%s/%s", o->out_dir, files[i]);
			if ((ret = copy_file(from, path)))
				goto out;
		}
	}
out:
	hmoe_pool_destroy(pool);
	free(p.specs);
	return ret;
}
