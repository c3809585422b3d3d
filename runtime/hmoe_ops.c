/* hmoe_ops: fp32 CPU kernels (see hmoe_ops.h). This file holds the scalar oracle, the
 * run-time kernel-table choice, the pool-parallel matmul and the elementwise ops. */
#include "hmoe_ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hmoe_err.h"
#include "hmoe_pool.h"

/* ---- scalar kernels: the oracle every SIMD table is tested against ---- */

/* One sequential accumulator: the plainest order, no reassociation. */
static float scalar_dot(const float *a, const float *b, int n)
{
	float s = 0.0f;

	for (int i = 0; i < n; i++)
		s += a[i] * b[i];
	return s;
}

static void scalar_matmul_rows(float *y, int ldy, const float *x, int ldx, const float *w,
			       int n, int in, int r0, int r1)
{
	for (int r = r0; r < r1; r++) {
		const float *wr = w + (size_t)r * (size_t)in;

		for (int t = 0; t < n; t++)
			y[(size_t)t * (size_t)ldy + (size_t)r] =
				scalar_dot(x + (size_t)t * (size_t)ldx, wr, in);
	}
}

static void scalar_axpy(float *y, float a, const float *x, int n)
{
	for (int i = 0; i < n; i++)
		y[i] += a * x[i];
}

const struct hmoe_ops_kernels hmoe_ops_scalar = {
	.name = "scalar",
	.dot = scalar_dot,
	.matmul_rows = scalar_matmul_rows,
	.axpy = scalar_axpy,
};

/* ---- kernel-table choice ---- */

static const struct hmoe_ops_kernels *const tables[HMOE_ISA_COUNT] = {
	[HMOE_ISA_SCALAR] = &hmoe_ops_scalar,
	[HMOE_ISA_AVX2] = &hmoe_ops_avx2,
	[HMOE_ISA_AVX512] = &hmoe_ops_avx512,
};

/* Set once (first use or hmoe_ops_set_isa) before any worker reads it. */
static const struct hmoe_ops_kernels *current;

const char *hmoe_ops_isa_name(enum hmoe_ops_isa isa)
{
	return isa >= 0 && isa < HMOE_ISA_COUNT ? tables[isa]->name : "?";
}

int hmoe_ops_isa_supported(enum hmoe_ops_isa isa)
{
	switch (isa) {
	case HMOE_ISA_SCALAR:
		return 1;
	case HMOE_ISA_AVX2:
		return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
	case HMOE_ISA_AVX512:
		return __builtin_cpu_supports("avx512f");
	default:
		return 0;
	}
}

int hmoe_ops_set_isa(enum hmoe_ops_isa isa)
{
	if (isa < 0 || isa >= HMOE_ISA_COUNT)
		return hmoe_err(HMOE_EINPUT, "kernel ISA %d: unknown", (int)isa);
	if (!hmoe_ops_isa_supported(isa))
		return hmoe_err(HMOE_EINPUT, "kernel ISA %s: not supported by this CPU",
				hmoe_ops_isa_name(isa));
	current = tables[isa];
	return 0;
}

const struct hmoe_ops_kernels *hmoe_ops(void)
{
	if (!current) {
		const char *env = getenv("HMOE_ISA");
		int isa;

		current = &hmoe_ops_scalar;
		for (isa = HMOE_ISA_COUNT - 1; isa > HMOE_ISA_SCALAR; isa--)
			if (hmoe_ops_isa_supported(isa))
				break;
		if (env) {
			for (int i = 0; i < HMOE_ISA_COUNT; i++)
				if (!strcmp(env, tables[i]->name) && hmoe_ops_isa_supported(i))
					isa = i;
		}
		current = tables[isa];
	}
	return current;
}

/* ---- matmul ---- */

void hmoe_ops_matmul(float *y, const float *x, const float *w, int n, int in, int out)
{
	hmoe_ops()->matmul_rows(y, out, x, in, w, n, in, 0, out);
}

struct matmul_job {
	const struct hmoe_ops_kernels *k;
	float *y;
	const float *x, *w;
	int n, in, out, rows_per_item;
};

static void matmul_item(void *arg, long i, int thread)
{
	const struct matmul_job *j = arg;
	int r0 = (int)i * j->rows_per_item;
	int r1 = r0 + j->rows_per_item < j->out ? r0 + j->rows_per_item : j->out;

	(void)thread;
	j->k->matmul_rows(j->y, j->out, j->x, j->in, j->w, j->n, j->in, r0, r1);
}

void hmoe_ops_matmul_par(struct hmoe_pool *pool, float *y, const float *x, const float *w,
			 int n, int in, int out)
{
	struct matmul_job j = { hmoe_ops(), y, x, w, n, in, out, 0 };
	int threads = hmoe_pool_threads(pool);
	/* ~8 items per thread for balance, a multiple of 4 rows (the kernels' row block),
	 * and at least 16 KiB of weights per item so the hand-out cost stays small. */
	int rows = out / (threads * 8);
	int min_rows = (int)(16384 / ((size_t)in * sizeof(float))) + 1;

	if (rows < min_rows)
		rows = min_rows;
	rows = (rows + 3) & ~3;
	if (threads == 1 || rows >= out) {
		j.k->matmul_rows(y, out, x, in, w, n, in, 0, out);
		return;
	}
	j.rows_per_item = rows;
	hmoe_pool_run(pool, (out + rows - 1) / rows, matmul_item, &j);
}

/* ---- elementwise ---- */

void hmoe_ops_rmsnorm(float *y, const float *x, const float *w, int n, float eps)
{
	float ss = 0.0f, inv;

	for (int i = 0; i < n; i++)
		ss += x[i] * x[i];
	inv = 1.0f / sqrtf(ss / (float)n + eps);
	for (int i = 0; i < n; i++)
		y[i] = x[i] * inv * w[i];
}

void hmoe_ops_softmax(float *x, int n)
{
	float max = -INFINITY, sum = 0.0f;

	for (int i = 0; i < n; i++)
		if (x[i] > max)
			max = x[i];
	for (int i = 0; i < n; i++) {
		x[i] = x[i] == -INFINITY ? 0.0f : expf(x[i] - max);
		sum += x[i];
	}
	for (int i = 0; i < n; i++)
		x[i] /= sum;
}

void hmoe_ops_silu_mul(float *g, const float *u, int n)
{
	for (int i = 0; i < n; i++)
		g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* ---- RoPE ---- */

static int rope_yarn_on(const struct hmoe_config *cfg)
{
	return cfg->rope_yarn && cfg->rope_factor > 1.0f;
}

/* Dimension index whose wavelength makes n_rot rotations over the original length. */
static double yarn_correction_dim(double n_rot, int dim, double base, int orig_len)
{
	return dim * log(orig_len / (n_rot * 2.0 * M_PI)) / (2.0 * log(base));
}

void hmoe_ops_rope_freqs(const struct hmoe_config *cfg, float *freqs)
{
	int dim = cfg->qk_rope_head_dim, half = dim / 2;
	double low = 0.0, high = 0.0;

	for (int i = 0; i < half; i++)
		freqs[i] = 1.0f / powf(cfg->rope_theta, (float)(2 * i) / (float)dim);
	if (!rope_yarn_on(cfg))
		return;
	low = floor(yarn_correction_dim(cfg->rope_beta_fast, dim, cfg->rope_theta,
					cfg->rope_original_max_pos));
	high = ceil(yarn_correction_dim(cfg->rope_beta_slow, dim, cfg->rope_theta,
					cfg->rope_original_max_pos));
	if (low < 0.0)
		low = 0.0;
	if (high > dim - 1)
		high = dim - 1;
	if (low == high)
		high += 0.001;
	for (int i = 0; i < half; i++) {
		/* fp32 like model.py's linear_ramp_factor */
		float ramp = ((float)i - (float)low) / ((float)high - (float)low);
		float smooth;

		ramp = ramp < 0.0f ? 0.0f : ramp > 1.0f ? 1.0f : ramp;
		smooth = 1.0f - ramp;
		freqs[i] = freqs[i] / cfg->rope_factor * (1.0f - smooth) + freqs[i] * smooth;
	}
}

float hmoe_ops_softmax_scale(const struct hmoe_config *cfg)
{
	/* in double, then rounded once, as model.py computes it in Python floats */
	double scale = pow((double)hmoe_config_qk_head_dim(cfg), -0.5);

	if (rope_yarn_on(cfg)) {
		double m = 0.1 * cfg->rope_mscale_all_dim * log(cfg->rope_factor) + 1.0;

		scale = scale * m * m;
	}
	return (float)scale;
}

void hmoe_ops_rope(float *x, int rope_dim, int pos, const float *freqs)
{
	for (int i = 0; i < rope_dim / 2; i++) {
		float angle = (float)pos * freqs[i];
		float c = cosf(angle), s = sinf(angle);
		float a = x[2 * i], b = x[2 * i + 1];

		x[2 * i] = a * c - b * s;
		x[2 * i + 1] = a * s + b * c;
	}
}
