/* hmoe_energy: the meter set, wrap handling, phase spans, the report, and the "model"
 * source (watts x seconds). See hmoe_energy.h. */
#include "hmoe_energy.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hmoe_clock.h"
#include "hmoe_err.h"

struct energy_unavail {
	char source[16];
	char reason[200];
};

struct hmoe_energy {
	struct hmoe_energy_opts opts;
	char sysfs_root[256];
	char nvml_lib[256];
	char model[256];

	struct hmoe_energy_meter meters[HMOE_ENERGY_MAX_METERS];
	int n_meters;
	struct energy_unavail unavail[HMOE_ENERGY_MAX_UNAVAIL];
	int n_unavail;

	/* the open span */
	int span_open;
	enum hmoe_energy_phase span_phase;
	double span_t0_s;
	uint64_t span_start_uj[HMOE_ENERGY_MAX_METERS];

	/* per phase */
	uint64_t phase_uj[HMOE_ENERGY_N_PHASES][HMOE_ENERGY_MAX_METERS];
	double phase_s[HMOE_ENERGY_N_PHASES];
	long phase_tokens[HMOE_ENERGY_N_PHASES];
};

static const char *const phase_names[HMOE_ENERGY_N_PHASES] = { "prefill", "decode" };

/* ---- the model source ----------------------------------------------------------- */

static int model_read(struct hmoe_energy_meter *m, uint64_t *raw)
{
	double uj = m->watts * (m->now_s() - m->t0_s) * 1e6;

	*raw = uj > 0 ? (uint64_t)uj : 0;
	return 0;
}

static int model_add(struct hmoe_energy *e, const char *device, double watts,
		     const char *why)
{
	struct hmoe_energy_meter m = { 0 };

	m.src = &hmoe_energy_model;
	snprintf(m.device, sizeof(m.device), "%s", device);
	m.measured = 0;
	m.unit_uj = 1;
	m.watts = watts;
	m.now_s = e->opts.now_s;
	m.t0_s = e->opts.now_s();
	snprintf(m.note, sizeof(m.note), "modeled: constant %.1f W x wall time (%s)", watts, why);
	if (!hmoe_energy_add(e, &m))
		return hmoe_err(HMOE_EINPUT, "energy: more than %d meters", HMOE_ENERGY_MAX_METERS);
	return 0;
}

/* opts.model: "name=WATTS[,name=WATTS]". */
static int model_probe(struct hmoe_energy *e)
{
	char *save = NULL, buf[256], *tok;
	int ret = 0, have_cpu = 0;

	for (int i = 0; i < e->n_meters; i++)
		if (!strncmp(e->meters[i].device, "cpu", 3))
			have_cpu = 1;
	if (!have_cpu) {
		long n_cpu = sysconf(_SC_NPROCESSORS_ONLN);
		double w = e->opts.cpu_watts > 0 ? e->opts.cpu_watts
						 : HMOE_ENERGY_CPU_W_PER_CORE * (double)(n_cpu > 0 ? n_cpu : 1);
		char why[96];

		if (e->opts.cpu_watts > 0)
			snprintf(why, sizeof(why), "given; no RAPL package meter");
		else
			snprintf(why, sizeof(why), "%.1f W x %ld online CPUs; no RAPL package meter",
				 HMOE_ENERGY_CPU_W_PER_CORE, n_cpu);
		ret = model_add(e, "cpu", w, why);
		if (ret)
			return ret;
	}
	if (!e->model[0])
		return 0;
	snprintf(buf, sizeof(buf), "%s", e->model);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '='), *end;
		double w;

		if (!eq || eq == tok || (size_t)(eq - tok) >= sizeof(e->meters[0].device))
			return hmoe_err(HMOE_EINPUT, "energy model '%s': expected name=WATTS", tok);
		*eq = '\0';
		errno = 0;
		w = strtod(eq + 1, &end);
		if (errno || end == eq + 1 || *end || !(w >= 0) || w > 1e6)
			return hmoe_err(HMOE_EINPUT, "energy model '%s=%s': watts is not a number "
					"in [0, 1e6]", tok, eq + 1);
		ret = model_add(e, tok, w, "given");
		if (ret)
			return ret;
	}
	return 0;
}

const struct hmoe_energy_source hmoe_energy_model = {
	.name = "model",
	.probe = model_probe,
	.read = model_read,
};

/* ---- sysfs helpers ------------------------------------------------------------------ */

int hmoe_energy_read_str(const char *path, char *buf, size_t cap)
{
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return hmoe_err(HMOE_EIO, "%s: %s", path, strerror(errno));
	n = fread(buf, 1, cap - 1, f);
	if (ferror(f)) {
		int err = errno;

		fclose(f);
		return hmoe_err(HMOE_EIO, "%s: %s", path, strerror(err));
	}
	fclose(f);
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	return 0;
}

int hmoe_energy_read_u64(const char *path, uint64_t *out)
{
	char buf[64], *end;
	unsigned long long v;
	int ret = hmoe_energy_read_str(path, buf, sizeof(buf));

	if (ret)
		return ret;
	errno = 0;
	v = strtoull(buf, &end, 10);
	if (!buf[0] || buf[0] == '-' || *end || errno)
		return hmoe_err(HMOE_EIO, "%s: '%s' is not an unsigned integer", path, buf);
	*out = (uint64_t)v;
	return 0;
}

/* ---- the set ---------------------------------------------------------------------- */

/* Measured sources first: the model only fills what they leave unmeasured. */
static const struct hmoe_energy_source *const sources[] = {
	&hmoe_energy_rapl,
	&hmoe_energy_nvml,
	&hmoe_energy_hwmon,
	&hmoe_energy_model,
};

int hmoe_energy_open(struct hmoe_energy **out, const struct hmoe_energy_opts *opts)
{
	struct hmoe_energy *e = calloc(1, sizeof(*e));
	int ret;

	if (!e)
		return hmoe_err(HMOE_ENOMEM, "energy: out of memory");
	if (opts)
		e->opts = *opts;
	snprintf(e->sysfs_root, sizeof(e->sysfs_root), "%s",
		 e->opts.sysfs_root ? e->opts.sysfs_root : "/sys");
	snprintf(e->nvml_lib, sizeof(e->nvml_lib), "%s",
		 e->opts.nvml_lib ? e->opts.nvml_lib : "libnvidia-ml.so.1");
	snprintf(e->model, sizeof(e->model), "%s", e->opts.model ? e->opts.model : "");
	e->opts.sysfs_root = e->sysfs_root;
	e->opts.nvml_lib = e->nvml_lib;
	e->opts.model = e->model;
	if (!e->opts.now_s)
		e->opts.now_s = hmoe_now_s;
	for (size_t i = 0; i < sizeof(sources) / sizeof(sources[0]); i++) {
		ret = sources[i]->probe(e);
		if (ret) {
			hmoe_energy_close(e);
			return ret;
		}
	}
	*out = e;
	return 0;
}

void hmoe_energy_close(struct hmoe_energy *e)
{
	if (!e)
		return;
	for (int i = 0; i < e->n_meters; i++)
		if (e->meters[i].src->close)
			e->meters[i].src->close(&e->meters[i]);
	free(e);
}

const struct hmoe_energy_opts *hmoe_energy_options(const struct hmoe_energy *e)
{
	return &e->opts;
}

struct hmoe_energy_meter *hmoe_energy_add(struct hmoe_energy *e,
					  const struct hmoe_energy_meter *m)
{
	struct hmoe_energy_meter *n;

	if (e->n_meters >= HMOE_ENERGY_MAX_METERS)
		return NULL;
	n = &e->meters[e->n_meters++];
	*n = *m;
	n->total_uj = 0;
	n->failed = 0;
	if (n->src->read(n, &n->last_raw)) {
		n->failed = 1;
		snprintf(n->error, sizeof(n->error), "%s", hmoe_last_error());
	}
	return n;
}

void hmoe_energy_unavailable(struct hmoe_energy *e, const char *source, const char *fmt, ...)
{
	struct energy_unavail *u;
	va_list ap;

	if (e->n_unavail >= HMOE_ENERGY_MAX_UNAVAIL)
		return;
	u = &e->unavail[e->n_unavail++];
	snprintf(u->source, sizeof(u->source), "%s", source);
	va_start(ap, fmt);
	vsnprintf(u->reason, sizeof(u->reason), fmt, ap);
	va_end(ap);
}

uint64_t hmoe_energy_delta(uint64_t prev, uint64_t now, uint64_t wrap)
{
	if (now >= prev)
		return now - prev;
	if (wrap && prev <= wrap)
		return wrap - prev + now;  /* counted up to wrap, restarted from 0 */
	return now;                        /* the device reset its counter */
}

void hmoe_energy_sample(struct hmoe_energy *e)
{
	for (int i = 0; i < e->n_meters; i++) {
		struct hmoe_energy_meter *m = &e->meters[i];
		uint64_t raw;

		if (m->failed)
			continue;
		if (m->src->read(m, &raw)) {
			m->failed = 1;
			snprintf(m->error, sizeof(m->error), "%s", hmoe_last_error());
			continue;
		}
		m->total_uj += hmoe_energy_delta(m->last_raw, raw, m->wrap) * m->unit_uj;
		m->last_raw = raw;
	}
}

void hmoe_energy_begin(struct hmoe_energy *e, enum hmoe_energy_phase ph)
{
	hmoe_energy_sample(e);
	e->span_open = 1;
	e->span_phase = ph;
	e->span_t0_s = e->opts.now_s();
	for (int i = 0; i < e->n_meters; i++)
		e->span_start_uj[i] = e->meters[i].total_uj;
}

void hmoe_energy_end(struct hmoe_energy *e, enum hmoe_energy_phase ph, long n_tokens)
{
	if (!e->span_open || e->span_phase != ph)
		return;
	hmoe_energy_sample(e);
	e->span_open = 0;
	e->phase_s[ph] += e->opts.now_s() - e->span_t0_s;
	e->phase_tokens[ph] += n_tokens;
	for (int i = 0; i < e->n_meters; i++)
		e->phase_uj[ph][i] += e->meters[i].total_uj - e->span_start_uj[i];
}

void hmoe_energy_end_split(struct hmoe_energy *e, long prefill_tokens, long decode_tokens)
{
	long n = prefill_tokens + decode_tokens;
	double dt;

	if (!e->span_open || prefill_tokens < 0 || decode_tokens < 0 || n <= 0)
		return;
	hmoe_energy_sample(e);
	e->span_open = 0;
	dt = e->opts.now_s() - e->span_t0_s;
	e->phase_s[HMOE_ENERGY_PREFILL] += dt * (double)prefill_tokens / (double)n;
	e->phase_s[HMOE_ENERGY_DECODE] += dt * (double)decode_tokens / (double)n;
	e->phase_tokens[HMOE_ENERGY_PREFILL] += prefill_tokens;
	e->phase_tokens[HMOE_ENERGY_DECODE] += decode_tokens;
	for (int i = 0; i < e->n_meters; i++) {
		uint64_t uj = e->meters[i].total_uj - e->span_start_uj[i];
		uint64_t pre = (uint64_t)((unsigned __int128)uj * (uint64_t)prefill_tokens /
					  (uint64_t)n);

		e->phase_uj[HMOE_ENERGY_PREFILL][i] += pre;
		e->phase_uj[HMOE_ENERGY_DECODE][i] += uj - pre;
	}
}

int hmoe_energy_n_meters(const struct hmoe_energy *e)
{
	return e->n_meters;
}

const struct hmoe_energy_meter *hmoe_energy_meter_at(const struct hmoe_energy *e, int i)
{
	return i >= 0 && i < e->n_meters ? &e->meters[i] : NULL;
}

double hmoe_energy_joules(const struct hmoe_energy *e, int i, enum hmoe_energy_phase ph)
{
	return i >= 0 && i < e->n_meters ? (double)e->phase_uj[ph][i] * 1e-6 : 0.0;
}

long hmoe_energy_tokens(const struct hmoe_energy *e, enum hmoe_energy_phase ph)
{
	return e->phase_tokens[ph];
}

double hmoe_energy_seconds(const struct hmoe_energy *e, enum hmoe_energy_phase ph)
{
	return e->phase_s[ph];
}

int hmoe_energy_n_unavailable(const struct hmoe_energy *e)
{
	return e->n_unavail;
}

void hmoe_energy_unavailable_at(const struct hmoe_energy *e, int i, const char **source,
				const char **reason)
{
	*source = e->unavail[i].source;
	*reason = e->unavail[i].reason;
}

/* ---- report ----------------------------------------------------------------------- */

void hmoe_energy_print(const struct hmoe_energy *e, FILE *f)
{
	for (int ph = 0; ph < HMOE_ENERGY_N_PHASES; ph++) {
		long n = e->phase_tokens[ph];
		double total = 0;

		if (n <= 0)
			continue;
		for (int i = 0; i < e->n_meters; i++)
			if (!e->meters[i].failed)
				total += hmoe_energy_joules(e, i, ph);
		fprintf(f, "[energy %s: %.4g J/token =", phase_names[ph], total / (double)n);
		for (int i = 0, first = 1; i < e->n_meters; i++) {
			const struct hmoe_energy_meter *m = &e->meters[i];

			if (m->failed)
				continue;
			fprintf(f, "%s %s %.4g (%s)", first ? "" : " +", m->device,
				hmoe_energy_joules(e, i, ph) / (double)n,
				m->measured ? "measured" : "modeled");
			first = 0;
		}
		fprintf(f, "]\n");
	}
	for (int i = 0; i < e->n_meters; i++)
		if (e->meters[i].failed)
			fprintf(f, "[energy %s: read failed: %s]\n", e->meters[i].device,
				e->meters[i].error);
	if (e->n_unavail) {
		fprintf(f, "[energy unavailable:");
		for (int i = 0; i < e->n_unavail; i++)
			fprintf(f, "%s %s: %s", i ? ";" : "", e->unavail[i].source,
				e->unavail[i].reason);
		fprintf(f, "]\n");
	}
}

/* JSON strings here come from sysfs names and our own messages: keep them plain. */
static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++)
		fputc(*s == '"' || *s == '\\' || (unsigned char)*s < 0x20 ? ' ' : *s, f);
	fputc('"', f);
}

void hmoe_energy_json(const struct hmoe_energy *e, FILE *f)
{
	fprintf(f, "\"energy\": {\"note\": \"measured meters count the whole device (every "
		   "process on it); modeled meters are constant power x wall time\", "
		   "\"devices\": [");
	for (int i = 0; i < e->n_meters; i++) {
		const struct hmoe_energy_meter *m = &e->meters[i];

		fprintf(f, "%s{\"device\": ", i ? ", " : "");
		json_str(f, m->device);
		fprintf(f, ", \"source\": \"%s\", \"measured\": %s, \"note\": ", m->src->name,
			m->measured ? "true" : "false");
		json_str(f, m->note);
		if (m->failed) {
			fprintf(f, ", \"error\": ");
			json_str(f, m->error);
		}
		fprintf(f, "}");
	}
	fprintf(f, "], \"phases\": {");
	for (int ph = 0; ph < HMOE_ENERGY_N_PHASES; ph++) {
		long n = e->phase_tokens[ph];
		double total = 0;

		fprintf(f, "%s\"%s\": {\"tokens\": %ld, \"seconds\": %.6f, \"by_device\": {",
			ph ? ", " : "", phase_names[ph], n, e->phase_s[ph]);
		for (int i = 0, first = 1; i < e->n_meters; i++) {
			double j = hmoe_energy_joules(e, i, ph);

			if (e->meters[i].failed)
				continue;
			total += j;
			fprintf(f, "%s", first ? "" : ", ");
			json_str(f, e->meters[i].device);
			fprintf(f, ": {\"joules\": %.6f, \"joules_per_token\": %.6g, "
				   "\"measured\": %s}",
				j, n > 0 ? j / (double)n : 0.0,
				e->meters[i].measured ? "true" : "false");
			first = 0;
		}
		fprintf(f, "}, \"joules\": %.6f, \"joules_per_token\": %.6g}", total,
			n > 0 ? total / (double)n : 0.0);
	}
	fprintf(f, "}, \"unavailable\": [");
	for (int i = 0; i < e->n_unavail; i++) {
		fprintf(f, "%s{\"source\": \"%s\", \"reason\": ", i ? ", " : "",
			e->unavail[i].source);
		json_str(f, e->unavail[i].reason);
		fprintf(f, "}");
	}
	fprintf(f, "]}");
}
