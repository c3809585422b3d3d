/* hmoe_model: load a DeepSeek-V3/R1 checkpoint in the Hugging Face layout (see
 * hmoe_model.h, MODEL.md section 6, docs/checkpoint.md).
 *
 * Loading is three steps: map and index every safetensors shard; bind every tensor the
 * config implies (checking name, shape and dtype, and recording which ones need an fp32
 * copy); then allocate one fp32 arena and fill it in parallel, in row chunks.
 */
#include "hmoe_model.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "hmoe_err.h"
#include "hmoe_num.h"
#include "hmoe_pool.h"
#include "hmoe_st.h"

/* ---------------------------------------------------------------------------------- */
/* types */

/* One fp32 array to fill from a stored tensor: rows x cols, at arena offset `off`. */
struct f32_job {
	const struct hmoe_tensor *src;
	const struct hmoe_tensor *scale; /* FP8 only */
	int block_out, block_in;
	int64_t rows, cols;
	size_t off;                      /* in floats */
	float **dst;                     /* where the arena pointer goes */
};

struct loader {
	struct hmoe_model *m;
	unsigned flags;
	struct f32_job *jobs;
	int n_jobs, cap_jobs;
	size_t arena_floats;
};

/* A row range of one job, the unit of parallel work. */
struct f32_task {
	int job;
	int64_t row0, row1;
};

struct fill_ctx {
	const struct f32_job *jobs;
	const struct f32_task *tasks;
	float *arena;
};

/* ---------------------------------------------------------------------------------- */
/* dequantisation (MODEL.md section 6: W[m, n] = f32(fp8[m, n]) * s[m / 128][n / 128]) */

static float load_f32(const uint8_t *p)
{
	float f;

	memcpy(&f, p, sizeof(f));
	return f;
}

static uint16_t load_u16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/* Rows [row0, row1) of src (rows x cols) into dst (already offset to row0). */
static void dequant_rows(const struct hmoe_tensor *src, const struct hmoe_tensor *scale,
			 int block_out, int block_in, int64_t cols, int64_t row0, int64_t row1,
			 float *dst)
{
	const uint8_t *base = src->data;

	for (int64_t r = row0; r < row1; r++) {
		float *y = dst + (r - row0) * cols;

		switch (src->dtype) {
		case HMOE_DT_F8E4M3: {
			const uint8_t *codes = base + r * cols;
			int64_t scols = (cols + block_in - 1) / block_in;
			const uint8_t *srow = (const uint8_t *)scale->data +
					      (size_t)((r / block_out) * scols) * sizeof(float);

			for (int64_t b = 0; b < scols; b++) {
				float s = load_f32(srow + b * sizeof(float));
				int64_t c0 = b * block_in;
				int64_t c1 = c0 + block_in < cols ? c0 + block_in : cols;

				for (int64_t c = c0; c < c1; c++)
					y[c] = hmoe_fp8_e4m3_to_f32(codes[c]) * s;
			}
			break;
		}
		case HMOE_DT_BF16:
			for (int64_t c = 0; c < cols; c++)
				y[c] = hmoe_bf16_to_f32(load_u16(base + (r * cols + c) * 2));
			break;
		case HMOE_DT_F16:
			for (int64_t c = 0; c < cols; c++)
				y[c] = hmoe_f16_to_f32(load_u16(base + (r * cols + c) * 2));
			break;
		case HMOE_DT_F32:
			memcpy(y, base + r * cols * 4, (size_t)cols * sizeof(float));
			break;
		default:
			/* Binding admits only the float dtypes above. */
			memset(y, 0, (size_t)cols * sizeof(float));
			break;
		}
	}
}

int hmoe_linear_dequant(const struct hmoe_linear *l, float *dst)
{
	if (!l->src)
		return hmoe_err(HMOE_EINTERNAL, "dequant: linear has no stored weight");
	if (l->src->dtype == HMOE_DT_F8E4M3 && !l->scale_inv)
		return hmoe_err(HMOE_EINPUT, "%s: FP8 weight without a scale", l->src->name);
	dequant_rows(l->src, l->scale_inv, l->block_out > 0 ? l->block_out : 128,
		     l->block_in > 0 ? l->block_in : 128, l->in, 0, l->out, dst);
	return 0;
}

static void fill_task(void *arg, long i, int thread)
{
	const struct fill_ctx *ctx = arg;
	const struct f32_task *t = &ctx->tasks[i];
	const struct f32_job *j = &ctx->jobs[t->job];

	(void)thread;
	dequant_rows(j->src, j->scale, j->block_out, j->block_in, j->cols, t->row0, t->row1,
		     ctx->arena + j->off + (size_t)(t->row0 * j->cols));
}

/* ---------------------------------------------------------------------------------- */
/* binding tensors by name */

const struct hmoe_tensor *hmoe_model_tensor(const struct hmoe_model *m, const char *name)
{
	int lo = 0, hi = m->n_tensors - 1;

	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2;
		int c = strcmp(m->by_name[mid]->name, name);

		if (!c)
			return m->by_name[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return NULL;
}

static int add_job(struct loader *ld, const struct hmoe_tensor *src,
		   const struct hmoe_tensor *scale, int bo, int bi, int64_t rows, int64_t cols,
		   float **dst)
{
	struct f32_job *j;

	if (ld->n_jobs == ld->cap_jobs) {
		int cap = ld->cap_jobs ? 2 * ld->cap_jobs : 256;
		struct f32_job *p = realloc(ld->jobs, (size_t)cap * sizeof(*p));

		if (!p)
			return hmoe_err(HMOE_ENOMEM, "out of memory for the load plan");
		ld->jobs = p;
		ld->cap_jobs = cap;
	}
	j = &ld->jobs[ld->n_jobs++];
	*j = (struct f32_job){ src, scale, bo, bi, rows, cols, ld->arena_floats, dst };
	/* every array 64-byte aligned inside the arena (and guarded under ASan) */
	ld->arena_floats += hmoe_model_weights_stride((size_t)(rows * cols) * sizeof(float)) /
			    sizeof(float);
	return 0;
}

static int is_float_dtype(enum hmoe_dtype dt)
{
	return dt == HMOE_DT_F32 || dt == HMOE_DT_BF16 || dt == HMOE_DT_F16;
}

/* Shape mismatch message: "NAME: expected shape [a, b] (dtypes), found [c, d] DT". */
static int shape_error(const struct hmoe_tensor *t, int ndim, int64_t d0, int64_t d1,
		       const char *dtypes)
{
	char found[96];

	if (ndim == 1)
		return hmoe_err(HMOE_EINPUT, "tensor %s: expected shape [%" PRId64 "] %s, found %s %s",
				t->name, d0, dtypes, hmoe_shape_str(t, found, sizeof(found)),
				hmoe_dtype_name(t->dtype));
	return hmoe_err(HMOE_EINPUT,
			"tensor %s: expected shape [%" PRId64 ", %" PRId64 "] %s, found %s %s",
			t->name, d0, d1, dtypes, hmoe_shape_str(t, found, sizeof(found)),
			hmoe_dtype_name(t->dtype));
}

static int find_required(const struct hmoe_model *m, const char *name,
			 const struct hmoe_tensor **out)
{
	*out = hmoe_model_tensor(m, name);
	if (!*out)
		return hmoe_err(HMOE_EINPUT, "tensor %s: missing from the checkpoint in %s", name,
				m->dir);
	return 0;
}

/* A vector or matrix kept in fp32 always (norms, router) or with HMOE_LOAD_F32 (embed). */
static int bind_f32(struct loader *ld, const char *name, int ndim, int64_t d0, int64_t d1,
		    int always, float **dst, const struct hmoe_tensor **src_out)
{
	const struct hmoe_tensor *t;
	int ret = find_required(ld->m, name, &t);

	if (ret)
		return ret;
	if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1) ||
	    !is_float_dtype(t->dtype))
		return shape_error(t, ndim, d0, d1, "BF16|F32|F16");
	if (src_out)
		*src_out = t;
	*dst = NULL;
	if (always || (ld->flags & HMOE_LOAD_F32))
		return add_job(ld, t, NULL, 0, 0, ndim == 2 ? d0 : 1, ndim == 2 ? d1 : d0, dst);
	return 0;
}

static int bind_linear(struct loader *ld, const char *name, int out, int in,
		       struct hmoe_linear *l)
{
	const struct hmoe_config *c = &ld->m->cfg;
	const struct hmoe_tensor *t, *s = NULL;
	char sname[512];
	int ret = find_required(ld->m, name, &t);

	if (ret)
		return ret;
	memset(l, 0, sizeof(*l));
	l->out = out;
	l->in = in;
	l->block_out = c->fp8_block[0] > 0 ? c->fp8_block[0] : 128;
	l->block_in = c->fp8_block[1] > 0 ? c->fp8_block[1] : 128;
	if (t->ndim != 2 || t->shape[0] != out || t->shape[1] != in ||
	    !(is_float_dtype(t->dtype) || t->dtype == HMOE_DT_F8E4M3))
		return shape_error(t, 2, out, in, "F8_E4M3|BF16|F32|F16");
	if (t->dtype == HMOE_DT_F8E4M3) {
		int64_t so = (out + l->block_out - 1) / l->block_out;
		int64_t si = (in + l->block_in - 1) / l->block_in;

		snprintf(sname, sizeof(sname), "%s_scale_inv", name);
		s = hmoe_model_tensor(ld->m, sname);
		if (!s)
			return hmoe_err(HMOE_EINPUT, "tensor %s: FP8 weight without its %s", name,
					sname);
		if (s->ndim != 2 || s->shape[0] != so || s->shape[1] != si ||
		    s->dtype != HMOE_DT_F32)
			return shape_error(s, 2, so, si, "F32");
		for (int64_t i = 0; i < so * si; i++) {
			float v = load_f32((const uint8_t *)s->data + i * 4);

			if (!isfinite(v))
				return hmoe_err(HMOE_EINPUT, "tensor %s: scale [%" PRId64 ", %" PRId64
						"] is %g, not finite", sname, i / si, i % si,
						(double)v);
		}
	}
	l->src = t;
	l->scale_inv = s;
	if (s && ((uintptr_t)s->data % sizeof(float) == 0)) {
		l->scale = s->data;
	} else if (s) {
		/* The format does not promise alignment (some writers pack tensors in model
		 * order after odd-sized FP8 codes): keep an aligned copy for readers. */
		void **owned = realloc(ld->m->owned, (size_t)(ld->m->n_owned + 1) * sizeof(*owned));
		float *copy = malloc(s->nbytes + 1);

		if (owned)
			ld->m->owned = owned;
		if (!owned || !copy) {
			free(copy);
			return hmoe_err(HMOE_ENOMEM, "tensor %s: out of memory", sname);
		}
		memcpy(copy, s->data, s->nbytes);
		ld->m->owned[ld->m->n_owned++] = copy;
		l->scale = copy;
	}
	if (ld->flags & HMOE_LOAD_F32)
		return add_job(ld, t, s, l->block_out, l->block_in, out, in, &l->w);
	return 0;
}

static int bind_mlp(struct loader *ld, const char *prefix, int dim, int inter,
		    struct hmoe_mlp *mlp)
{
	char name[512];
	int ret;

	snprintf(name, sizeof(name), "%s.gate_proj.weight", prefix);
	if ((ret = bind_linear(ld, name, inter, dim, &mlp->w1)))
		return ret;
	snprintf(name, sizeof(name), "%s.up_proj.weight", prefix);
	if ((ret = bind_linear(ld, name, inter, dim, &mlp->w3)))
		return ret;
	snprintf(name, sizeof(name), "%s.down_proj.weight", prefix);
	return bind_linear(ld, name, dim, inter, &mlp->w2);
}

static int bind_layer(struct loader *ld, int li)
{
	const struct hmoe_config *c = &ld->m->cfg;
	struct hmoe_layer *L = &ld->m->layers[li];
	int dim = c->hidden_size, heads = c->num_attention_heads;
	int qk = hmoe_config_qk_head_dim(c);
	char p[128], name[512];
	int ret;

#define NAME(fmt, ...) (snprintf(name, sizeof(name), "%s." fmt, p, ##__VA_ARGS__), name)
	snprintf(p, sizeof(p), "model.layers.%d", li);
	L->is_moe = hmoe_config_is_moe_layer(c, li);
	if ((ret = bind_f32(ld, NAME("input_layernorm.weight"), 1, dim, 0, 1, &L->attn_norm,
			    NULL)) ||
	    (ret = bind_f32(ld, NAME("post_attention_layernorm.weight"), 1, dim, 0, 1,
			    &L->ffn_norm, NULL)))
		return ret;
	if (c->q_lora_rank > 0) {
		if ((ret = bind_linear(ld, NAME("self_attn.q_a_proj.weight"), c->q_lora_rank, dim,
				       &L->wq_a)) ||
		    (ret = bind_f32(ld, NAME("self_attn.q_a_layernorm.weight"), 1, c->q_lora_rank,
				    0, 1, &L->q_norm, NULL)) ||
		    (ret = bind_linear(ld, NAME("self_attn.q_b_proj.weight"), heads * qk,
				       c->q_lora_rank, &L->wq_b)))
			return ret;
	} else if ((ret = bind_linear(ld, NAME("self_attn.q_proj.weight"), heads * qk, dim,
				      &L->wq_b))) {
		return ret;
	}
	if ((ret = bind_linear(ld, NAME("self_attn.kv_a_proj_with_mqa.weight"),
			       c->kv_lora_rank + c->qk_rope_head_dim, dim, &L->wkv_a)) ||
	    (ret = bind_f32(ld, NAME("self_attn.kv_a_layernorm.weight"), 1, c->kv_lora_rank, 0,
			    1, &L->kv_norm, NULL)) ||
	    (ret = bind_linear(ld, NAME("self_attn.kv_b_proj.weight"),
			       heads * (c->qk_nope_head_dim + c->v_head_dim), c->kv_lora_rank,
			       &L->wkv_b)) ||
	    (ret = bind_linear(ld, NAME("self_attn.o_proj.weight"), dim, heads * c->v_head_dim,
			       &L->wo)))
		return ret;
	if (!L->is_moe)
		return bind_mlp(ld, NAME("mlp"), dim, c->intermediate_size, &L->mlp);

	if ((ret = bind_f32(ld, NAME("mlp.gate.weight"), 2, c->n_routed_experts, dim, 1,
			    &L->gate, NULL)))
		return ret;
	L->gate_bias = NULL;
	if (c->noaux_tc || hmoe_model_tensor(ld->m, NAME("mlp.gate.e_score_correction_bias"))) {
		if ((ret = bind_f32(ld, NAME("mlp.gate.e_score_correction_bias"), 1,
				    c->n_routed_experts, 0, 1, &L->gate_bias, NULL)))
			return ret;
	}
	L->experts = calloc((size_t)c->n_routed_experts, sizeof(*L->experts));
	if (!L->experts)
		return hmoe_err(HMOE_ENOMEM, "layer %d: out of memory for %d experts", li,
				c->n_routed_experts);
	for (int e = 0; e < c->n_routed_experts; e++) {
		char ep[160];

		snprintf(ep, sizeof(ep), "%s.mlp.experts.%d", p, e);
		if ((ret = bind_mlp(ld, ep, dim, c->moe_intermediate_size, &L->experts[e])))
			return ret;
	}
	L->has_shared = c->n_shared_experts > 0;
	if (L->has_shared)
		return bind_mlp(ld, NAME("mlp.shared_experts"), dim,
				c->n_shared_experts * c->moe_intermediate_size, &L->shared);
	return 0;
#undef NAME
}

/* ---------------------------------------------------------------------------------- */
/* shards */

static int file_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static int add_file(struct hmoe_model *m, const char *fname)
{
	char path[4096];
	struct hmoe_st_file **p;
	int ret;

	for (int i = 0; i < m->n_files; i++) {
		const char *base = strrchr(m->files[i]->path, '/');

		if (!strcmp(base ? base + 1 : m->files[i]->path, fname))
			return i;
	}
	if (!*fname || strchr(fname, '/') || !strcmp(fname, "..") || !strcmp(fname, "."))
		return hmoe_err(HMOE_EINPUT, "%s/model.safetensors.index.json: shard name \"%s\" "
				"must be a plain file name in the model folder", m->dir, fname);
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", m->dir, fname) >= sizeof(path))
		return hmoe_err(HMOE_EINPUT, "%s/%s: path too long", m->dir, fname);
	p = realloc(m->files, (size_t)(m->n_files + 1) * sizeof(*p));
	if (!p)
		return hmoe_err(HMOE_ENOMEM, "out of memory");
	m->files = p;
	ret = hmoe_st_open(&m->files[m->n_files], path);
	if (ret)
		return ret;
	return m->n_files++;
}

static int read_text(const char *path, char **out)
{
	FILE *fp = fopen(path, "rb");
	long n;
	char *t;

	*out = NULL;
	if (!fp)
		return hmoe_err(HMOE_EINPUT, "%s: cannot open: %s", path, strerror(errno));
	if (fseek(fp, 0, SEEK_END) || (n = ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET) ||
	    n > (256L << 20)) {
		fclose(fp);
		return hmoe_err(HMOE_EINPUT, "%s: cannot read (or larger than 256 MiB)", path);
	}
	t = malloc((size_t)n + 1);
	if (!t || fread(t, 1, (size_t)n, fp) != (size_t)n) {
		free(t);
		fclose(fp);
		return hmoe_err(HMOE_EIO, "%s: read failed", path);
	}
	fclose(fp);
	t[n] = '\0';
	*out = t;
	return 0;
}

/* Opens every shard the index names and checks each listed tensor is where it says. */
static int open_sharded(struct hmoe_model *m, const char *index_path)
{
	char *text;
	cJSON *root, *wm, *e;
	int ret = read_text(index_path, &text);

	if (ret)
		return ret;
	root = cJSON_Parse(text);
	free(text);
	if (!root)
		return hmoe_err(HMOE_EINPUT, "%s: malformed JSON", index_path);
	wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
	if (!cJSON_IsObject(wm) || !wm->child) {
		cJSON_Delete(root);
		return hmoe_err(HMOE_EINPUT, "%s: missing or empty \"weight_map\" object",
				index_path);
	}
	cJSON_ArrayForEach(e, wm) {
		int fi;

		if (!cJSON_IsString(e)) {
			ret = hmoe_err(HMOE_EINPUT, "%s: weight_map[\"%s\"] is not a file name",
				       index_path, e->string);
			break;
		}
		fi = add_file(m, e->valuestring);
		if (fi < 0) {
			ret = fi;
			break;
		}
		if (!hmoe_st_find(m->files[fi], e->string)) {
			ret = hmoe_err(HMOE_EINPUT, "tensor %s: the index puts it in %s, which does "
				       "not contain it", e->string, m->files[fi]->path);
			break;
		}
	}
	cJSON_Delete(root);
	return ret;
}

static int cmp_tensor_ptr(const void *a, const void *b)
{
	return strcmp((*(const struct hmoe_tensor *const *)a)->name,
		      (*(const struct hmoe_tensor *const *)b)->name);
}

/* Owning file of tensor t, for messages. */
static const char *tensor_file(const struct hmoe_model *m, const struct hmoe_tensor *t)
{
	for (int i = 0; i < m->n_files; i++) {
		const struct hmoe_st_file *f = m->files[i];

		if (t >= f->tensors && t < f->tensors + f->n_tensors)
			return f->path;
	}
	return "?";
}

static int open_files(struct hmoe_model *m)
{
	char path[4096];
	int n = 0, ret;

	snprintf(path, sizeof(path), "%s/model.safetensors.index.json", m->dir);
	if (file_exists(path)) {
		ret = open_sharded(m, path);
	} else {
		snprintf(path, sizeof(path), "%s/model.safetensors", m->dir);
		if (!file_exists(path))
			return hmoe_err(HMOE_EINPUT, "%s: no model.safetensors or "
					"model.safetensors.index.json", m->dir);
		ret = add_file(m, "model.safetensors");
	}
	if (ret < 0)
		return ret;

	for (int i = 0; i < m->n_files; i++)
		n += m->files[i]->n_tensors;
	m->by_name = malloc(((size_t)n + 1) * sizeof(*m->by_name));
	if (!m->by_name)
		return hmoe_err(HMOE_ENOMEM, "out of memory indexing %d tensors", n);
	n = 0;
	for (int i = 0; i < m->n_files; i++)
		for (int k = 0; k < m->files[i]->n_tensors; k++)
			m->by_name[n++] = &m->files[i]->tensors[k];
	qsort(m->by_name, (size_t)n, sizeof(*m->by_name), cmp_tensor_ptr);
	for (int i = 0; i + 1 < n; i++)
		if (!strcmp(m->by_name[i]->name, m->by_name[i + 1]->name))
			return hmoe_err(HMOE_EINPUT, "tensor %s: present in both %s and %s",
					m->by_name[i]->name, tensor_file(m, m->by_name[i]),
					tensor_file(m, m->by_name[i + 1]));
	m->n_tensors = n;
	return 0;
}

/* ---------------------------------------------------------------------------------- */
/* lifetime */

#define WEIGHTS_PAGE ((size_t)2 << 20)

/* AddressSanitizer (GCC's macro, clang's feature test): poisoned lines between blocks */
#if defined(__SANITIZE_ADDRESS__)
#define WEIGHTS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WEIGHTS_ASAN 1
#endif
#endif
#ifdef WEIGHTS_ASAN
#include <sanitizer/asan_interface.h>
#define WEIGHTS_GUARD ((size_t)64)
#else
#define WEIGHTS_GUARD ((size_t)0)
#endif

/* The mapping of `bytes` of weights: whole 2 MiB pages. */
static size_t weights_map_bytes(size_t bytes)
{
	return (bytes + WEIGHTS_PAGE - 1) & ~(WEIGHTS_PAGE - 1);
}

void *hmoe_model_weights_alloc(size_t bytes)
{
	/* one 2 MiB page more, so that the start can be moved to a 2 MiB boundary */
	size_t map;
	uint8_t *p, *start;

	if (!bytes || bytes > SIZE_MAX - 2 * WEIGHTS_PAGE)
		return NULL;
	map = weights_map_bytes(bytes) + WEIGHTS_PAGE;
	p = mmap(NULL, map, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	start = (uint8_t *)(((uintptr_t)p + WEIGHTS_PAGE - 1) & ~(uintptr_t)(WEIGHTS_PAGE - 1));
	if (start > p)
		munmap(p, (size_t)(start - p));
	if (p + map > start + weights_map_bytes(bytes))
		munmap(start + weights_map_bytes(bytes),
		       (size_t)(p + map - start - weights_map_bytes(bytes)));
	madvise(start, weights_map_bytes(bytes), MADV_HUGEPAGE);  /* a hint; may fail */
	return start;
}

void hmoe_model_weights_free(void *p, size_t bytes)
{
	if (!p)
		return;
#ifdef WEIGHTS_ASAN
	/* the shadow outlives the mapping: a later one at this address must not inherit it */
	ASAN_UNPOISON_MEMORY_REGION(p, weights_map_bytes(bytes));
#endif
	munmap(p, weights_map_bytes(bytes));
}

size_t hmoe_model_weights_stride(size_t bytes)
{
	return ((bytes + 63) & ~(size_t)63) + WEIGHTS_GUARD;
}

void hmoe_model_weights_guard(void *block, size_t bytes)
{
#ifdef WEIGHTS_ASAN
	ASAN_POISON_MEMORY_REGION((uint8_t *)block + bytes,
				  hmoe_model_weights_stride(bytes) - bytes);
#else
	(void)block;
	(void)bytes;
#endif
}

static int fill_arena(struct loader *ld)
{
	struct hmoe_model *m = ld->m;
	struct f32_task *tasks = NULL;
	struct hmoe_pool *pool = NULL;
	struct fill_ctx ctx;
	long n_tasks = 0, k = 0;
	size_t bytes = ld->arena_floats * sizeof(float);
	/* ~1M elements per task: big enough to amortise, small enough to balance. */
	const int64_t chunk_elems = 1 << 20;
	int ret;

	if (!ld->n_jobs)
		return 0;
	/* Transparent huge pages: first-touch page faults, not the arithmetic, dominate
	 * filling gigabytes of fresh memory. */
	m->f32_arena = hmoe_model_weights_alloc(bytes);
	if (!m->f32_arena)
		return hmoe_err(HMOE_ENOMEM, "%s: cannot allocate %.1f GiB for fp32 weights "
				"(load without fp32 copies, or use a smaller model)", m->dir,
				(double)bytes / (1 << 30));
	m->f32_bytes = bytes;
	for (int i = 0; i < ld->n_jobs; i++) {
		const struct f32_job *j = &ld->jobs[i];
		int64_t rows_per = chunk_elems / (j->cols ? j->cols : 1);

		if (rows_per < 1)
			rows_per = 1;
		n_tasks += (long)((j->rows + rows_per - 1) / rows_per);
		*j->dst = m->f32_arena + j->off;
		hmoe_model_weights_guard(*j->dst, (size_t)(j->rows * j->cols) * sizeof(float));
	}
	tasks = malloc(((size_t)n_tasks + 1) * sizeof(*tasks));
	if (!tasks)
		return hmoe_err(HMOE_ENOMEM, "out of memory for the load plan");
	for (int i = 0; i < ld->n_jobs; i++) {
		const struct f32_job *j = &ld->jobs[i];
		int64_t rows_per = chunk_elems / (j->cols ? j->cols : 1);

		if (rows_per < 1)
			rows_per = 1;
		for (int64_t r = 0; r < j->rows; r += rows_per)
			tasks[k++] = (struct f32_task){ i, r,
							r + rows_per < j->rows ? r + rows_per : j->rows };
	}
#ifdef MADV_POPULATE_READ
	/* Every stored byte is about to be read: map the pages in bulk, not fault by fault
	 * (a hint; older kernels refuse it and the faults happen as usual). */
	for (int i = 0; i < m->n_files; i++)
		if (m->files[i]->owns_map)
			madvise((void *)m->files[i]->map, m->files[i]->size, MADV_POPULATE_READ);
#endif
	ctx = (struct fill_ctx){ ld->jobs, tasks, m->f32_arena };
	ret = hmoe_pool_create(&pool, 0);
	if (ret)
		pool = NULL; /* run serially rather than fail */
	hmoe_pool_run(pool, k, fill_task, &ctx);
	hmoe_pool_destroy(pool);
	free(tasks);
	return 0;
}

int hmoe_model_load(struct hmoe_model **out, const char *dir, unsigned flags)
{
	struct hmoe_model *m = calloc(1, sizeof(*m));
	struct loader ld = { .m = m, .flags = flags };
	struct hmoe_config *c;
	char path[4096];
	int ret;

	*out = NULL;
	if (!m || !(m->dir = strdup(dir))) {
		free(m);
		return hmoe_err(HMOE_ENOMEM, "out of memory");
	}
	c = &m->cfg;
	snprintf(path, sizeof(path), "%s/config.json", dir);
	if ((ret = hmoe_config_load(c, path)) || (ret = open_files(m)))
		goto err;
	m->layers = calloc((size_t)c->num_hidden_layers, sizeof(*m->layers));
	if (!m->layers) {
		ret = hmoe_err(HMOE_ENOMEM, "out of memory for %d layers", c->num_hidden_layers);
		goto err;
	}
	if ((ret = bind_f32(&ld, "model.embed_tokens.weight", 2, c->vocab_size, c->hidden_size,
			    0, &m->embed, &m->embed_src)))
		goto err;
	for (int l = 0; l < c->num_hidden_layers; l++)
		if ((ret = bind_layer(&ld, l)))
			goto err;
	if ((ret = bind_f32(&ld, "model.norm.weight", 1, c->hidden_size, 0, 1, &m->norm, NULL)))
		goto err;
	if (c->tie_word_embeddings && !hmoe_model_tensor(m, "lm_head.weight")) {
		/* Tied: the head is the embedding matrix itself. */
		m->head = (struct hmoe_linear){ .out = c->vocab_size, .in = c->hidden_size,
						.src = m->embed_src, .block_out = 128,
						.block_in = 128 };
		if (flags & HMOE_LOAD_F32)
			ret = add_job(&ld, m->embed_src, NULL, 0, 0, c->vocab_size, c->hidden_size,
				      &m->head.w);
	} else {
		ret = bind_linear(&ld, "lm_head.weight", c->vocab_size, c->hidden_size, &m->head);
	}
	if (ret || (ret = fill_arena(&ld)))
		goto err;
	free(ld.jobs);
	*out = m;
	return 0;
err:
	free(ld.jobs);
	hmoe_model_free(m);
	return ret;
}

void hmoe_model_free(struct hmoe_model *m)
{
	if (!m)
		return;
	if (m->layers)
		for (int l = 0; l < m->cfg.num_hidden_layers; l++)
			free(m->layers[l].experts);
	free(m->layers);
	for (int i = 0; i < m->n_files; i++)
		hmoe_st_close(m->files[i]);
	free(m->files);
	free(m->by_name);
	for (int i = 0; i < m->n_owned; i++)
		free(m->owned[i]);
	free(m->owned);
	hmoe_model_weights_free(m->f32_arena, m->f32_bytes);
	free(m->dir);
	free(m);
}

/* ---------------------------------------------------------------------------------- */
/* accounting */

/* Layer index of "model.layers.N.<rest>", or -1; *rest points past "N.". */
static int layer_of(const char *name, const char **rest)
{
	const char *p = "model.layers.";
	char *end;
	long v;

	if (strncmp(name, p, strlen(p)))
		return -1;
	v = strtol(name + strlen(p), &end, 10);
	if (end == name + strlen(p) || *end != '.' || v < 0 || v > INT_MAX)
		return -1;
	*rest = end + 1;
	return (int)v;
}

void hmoe_model_stats(const struct hmoe_model *m, struct hmoe_model_stats *s)
{
	const struct hmoe_config *c = &m->cfg;
	int64_t expert_params = 0, expert_bytes = 0;
	int n_moe = 0;

	memset(s, 0, sizeof(*s));
	for (int l = 0; l < c->num_hidden_layers; l++)
		n_moe += hmoe_config_is_moe_layer(c, l);
	for (int i = 0; i < m->n_tensors; i++) {
		const struct hmoe_tensor *t = m->by_name[i];
		const char *rest = NULL;
		int layer = layer_of(t->name, &rest);
		int is_scale = strstr(t->name, "_scale_inv") != NULL;
		int64_t params = is_scale ? 0 : hmoe_tensor_numel(t);
		int64_t bytes = (int64_t)t->nbytes;

		if (layer >= 0) {
			/* MTP layers, and buffers some exporters save (rotary inv_freq), are not
			 * weights of the main model. */
			if (layer >= c->num_hidden_layers || strstr(rest, "rotary_emb."))
				continue;
			s->params_total += params;
			s->bytes_total += bytes;
			if (strncmp(rest, "mlp.experts.", 12) == 0) {
				expert_params += params;
				expert_bytes += bytes;
			} else {
				s->params_active += params;
				s->bytes_per_token += bytes;
			}
		} else if (!strcmp(t->name, "model.embed_tokens.weight")) {
			s->params_total += params;
			s->bytes_total += bytes;
			/* One row is read per token. */
			s->params_active += c->hidden_size;
			s->bytes_per_token += c->hidden_size * (int64_t)hmoe_dtype_size(t->dtype);
			if (c->tie_word_embeddings && !hmoe_model_tensor(m, "lm_head.weight")) {
				s->params_active += params;
				s->bytes_per_token += bytes;
			}
		} else if (!strcmp(t->name, "model.norm.weight") ||
			   !strncmp(t->name, "lm_head.weight", 14)) {
			s->params_total += params;
			s->bytes_total += bytes;
			s->params_active += params;
			s->bytes_per_token += bytes;
		}
	}
	/* Routed experts: top-k of n_routed per MoE layer are read per token. */
	if (c->n_routed_experts > 0 && n_moe > 0) {
		s->params_active += expert_params * c->num_experts_per_tok / c->n_routed_experts;
		s->bytes_per_token += expert_bytes * c->num_experts_per_tok / c->n_routed_experts;
	}
}
