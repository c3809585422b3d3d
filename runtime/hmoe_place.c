/* hmoe_place: expert placement by capacity, hot-expert replicas, the CPU tier, and the
 * placement file (see hmoe_place.h). */
#include "hmoe_place.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmoe_err.h"

/* ---- lifetime --------------------------------------------------------------------- */

static int place_alloc(struct hmoe_place **out, int n_layers, int n_experts)
{
	struct hmoe_place *p = calloc(1, sizeof(*p));
	size_t n = (size_t)n_layers * (size_t)n_experts;

	if (!p)
		return hmoe_err(HMOE_ENOMEM, "placement: out of memory");
	p->n_layers = n_layers;
	p->n_experts = n_experts;
	p->is_moe = calloc((size_t)n_layers, 1);
	p->n_copies = calloc(n, 1);
	p->copies = malloc(n * HMOE_PLACE_MAX_REPLICAS);
	if (!p->is_moe || !p->n_copies || !p->copies) {
		hmoe_place_free(p);
		return hmoe_err(HMOE_ENOMEM, "placement: out of memory");
	}
	memset(p->copies, -1, n * HMOE_PLACE_MAX_REPLICAS);
	*out = p;
	return 0;
}

void hmoe_place_free(struct hmoe_place *p)
{
	if (!p)
		return;
	free(p->is_moe);
	free(p->n_copies);
	free(p->copies);
	free(p);
}

static int valid_name(const char *s)
{
	if (!*s || strlen(s) >= HMOE_PLACE_NAME)
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
			return 0;
	return 1;
}

/* ---- building --------------------------------------------------------------------- */

struct place_pair {
	int layer, expert;
	int64_t count;
};

/* Hottest first, then expert, then layer ascending: a total order, so the result is
 * deterministic. Expert before layer spreads equally hot experts evenly over the
 * layers, so every layer keeps the same share on cards (layers run one after another:
 * a layer with all its experts on the CPU tier would stall the cards). */
static int pair_cmp(const void *a, const void *b)
{
	const struct place_pair *x = a, *y = b;

	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	if (x->expert != y->expert)
		return x->expert < y->expert ? -1 : 1;
	return (x->layer > y->layer) - (x->layer < y->layer);
}

/* Least load in the pair's layer (layers run one after another, so balance matters per
 * layer), then most free bytes, then lowest index, among devices with room that do not
 * hold the pair yet; -1 if none. load: this layer's (n_devices) row. */
static int pick_device(const struct hmoe_place *p, const double *load, const int8_t *holders,
		       int n_holders)
{
	int best = -1;

	for (int d = 0; d < p->n_devices; d++) {
		int64_t free_d = p->devices[d].capacity_bytes - p->used_bytes[d];
		int held = 0;

		if (free_d < p->expert_bytes)
			continue;
		for (int h = 0; h < n_holders; h++)
			held |= holders[h] == d;
		if (held)
			continue;
		if (best < 0 || load[d] < load[best] ||
		    (load[d] == load[best] &&
		     free_d > p->devices[best].capacity_bytes - p->used_bytes[best]))
			best = d;
	}
	return best;
}

int hmoe_place_build(struct hmoe_place **out, const struct hmoe_place_opts *o)
{
	double *loads;  /* (n_layers, n_devices) routing count (or experts) held */
	double hot_ratio = o->hot_ratio > 0 ? o->hot_ratio : 2.0;
	int max_rep = o->max_replicas < 1 ? 1 : o->max_replicas;
	struct place_pair *pairs;
	struct hmoe_place *p;
	int64_t spare = 0;
	int n_pairs = 0, ret;

	if (o->n_layers <= 0 || o->n_experts <= 0 || o->expert_bytes <= 0)
		return hmoe_err(HMOE_EINPUT, "placement: need layers, experts and expert bytes > 0");
	if (o->n_devices < 0 || o->n_devices > HMOE_PLACE_MAX_DEVICES)
		return hmoe_err(HMOE_EINPUT, "placement: %d devices (at most %d)", o->n_devices,
				HMOE_PLACE_MAX_DEVICES);
	if (max_rep > HMOE_PLACE_MAX_REPLICAS)
		max_rep = HMOE_PLACE_MAX_REPLICAS;
	for (int d = 0; d < o->n_devices; d++)
		if (!valid_name(o->devices[d].name) || o->devices[d].capacity_bytes < 0)
			return hmoe_err(HMOE_EINPUT, "placement: device %d: bad name '%s' or negative "
					"capacity", d, o->devices[d].name);
	ret = place_alloc(&p, o->n_layers, o->n_experts);
	if (ret)
		return ret;
	p->n_devices = o->n_devices;
	p->expert_bytes = o->expert_bytes;
	memcpy(p->devices, o->devices, (size_t)o->n_devices * sizeof(*o->devices));
	pairs = malloc((size_t)o->n_layers * (size_t)o->n_experts * sizeof(*pairs));
	loads = calloc((size_t)o->n_layers * (o->n_devices + 1), sizeof(double));
	if (!pairs || !loads) {
		free(pairs);
		free(loads);
		hmoe_place_free(p);
		return hmoe_err(HMOE_ENOMEM, "placement: out of memory");
	}
	for (int l = 0; l < o->n_layers; l++) {
		p->is_moe[l] = o->is_moe[l] ? 1 : 0;
		if (!p->is_moe[l])
			continue;
		for (int e = 0; e < o->n_experts; e++) {
			int64_t c = o->counts ? o->counts[(size_t)l * o->n_experts + e] : 0;

			pairs[n_pairs++] = (struct place_pair){ l, e, c < 0 ? 0 : c };
		}
	}
	qsort(pairs, (size_t)n_pairs, sizeof(*pairs), pair_cmp);

	/* Replicas only use room that no primary needs: the slots left once every expert
	 * has one copy. They are made right after their primary, while every device still
	 * has room, so the load-balanced fill cannot crowd them out. */
	for (int d = 0; d < o->n_devices; d++)
		spare += o->devices[d].capacity_bytes / o->expert_bytes;
	spare -= n_pairs;
	for (int i = 0; i < n_pairs; i++) {
		int l = pairs[i].layer;
		size_t k = (size_t)l * o->n_experts + pairs[i].expert;
		int8_t *holders = p->copies + k * HMOE_PLACE_MAX_REPLICAS;
		double w = o->counts ? (double)pairs[i].count : 1.0, mean = 0;
		double *load = loads + (size_t)l * (o->n_devices + 1);
		int d = pick_device(p, load, NULL, 0);

		if (d < 0)
			continue;  /* CPU tier */
		holders[0] = (int8_t)d;
		p->n_copies[k] = 1;
		p->used_bytes[d] += p->expert_bytes;
		load[d] += w;
		if (!o->counts || max_rep <= 1 || pairs[i].count <= 0)
			continue;
		for (int e = 0; e < o->n_experts; e++)
			mean += (double)o->counts[(size_t)l * o->n_experts + e];
		mean /= o->n_experts;
		if (w < hot_ratio * mean)
			continue;
		while (p->n_copies[k] < max_rep && spare > 0) {
			int n = p->n_copies[k];

			d = pick_device(p, load, holders, n);
			if (d < 0)
				break;
			/* the expert's load is shared evenly by its copies */
			for (int h = 0; h < n; h++)
				load[holders[h]] += w / (n + 1) - w / n;
			load[d] += w / (n + 1);
			holders[n] = (int8_t)d;
			p->n_copies[k]++;
			p->used_bytes[d] += p->expert_bytes;
			spare--;
		}
	}
	free(pairs);
	free(loads);
	*out = p;
	return 0;
}

void hmoe_place_summary(const struct hmoe_place *p, int *n_cpu, int *n_replicated,
			int *n_placed)
{
	*n_cpu = *n_replicated = *n_placed = 0;
	for (int l = 0; l < p->n_layers; l++) {
		if (!p->is_moe[l])
			continue;
		for (int e = 0; e < p->n_experts; e++) {
			int n = p->n_copies[(size_t)l * p->n_experts + e];

			*n_cpu += n == 0;
			*n_placed += n > 0;
			*n_replicated += n > 1;
		}
	}
}

int hmoe_place_equal(const struct hmoe_place *a, const struct hmoe_place *b)
{
	size_t n = (size_t)a->n_layers * (size_t)a->n_experts;

	if (a->n_layers != b->n_layers || a->n_experts != b->n_experts ||
	    a->n_devices != b->n_devices || a->expert_bytes != b->expert_bytes)
		return 0;
	for (int d = 0; d < a->n_devices; d++)
		if (strcmp(a->devices[d].name, b->devices[d].name) ||
		    a->devices[d].capacity_bytes != b->devices[d].capacity_bytes)
			return 0;
	return !memcmp(a->is_moe, b->is_moe, (size_t)a->n_layers) &&
	       !memcmp(a->n_copies, b->n_copies, n) &&
	       !memcmp(a->copies, b->copies, n * HMOE_PLACE_MAX_REPLICAS);
}

int hmoe_place_check(const struct hmoe_place *p, int n_layers, int n_experts,
		     const unsigned char *is_moe, int64_t expert_bytes, const char *what)
{
	if (p->n_layers != n_layers || p->n_experts != n_experts)
		return hmoe_err(HMOE_EINPUT, "placement %s: %d layers x %d experts, the model has "
				"%d x %d", what, p->n_layers, p->n_experts, n_layers, n_experts);
	if (p->expert_bytes != expert_bytes)
		return hmoe_err(HMOE_EINPUT, "placement %s: expert_bytes %lld, this model and "
				"format need %lld", what, (long long)p->expert_bytes,
				(long long)expert_bytes);
	for (int l = 0; l < n_layers; l++)
		if (!p->is_moe[l] != !is_moe[l])
			return hmoe_err(HMOE_EINPUT, "placement %s: layer %d is %s here but %s in "
					"the model", what, l, p->is_moe[l] ? "MoE" : "absent",
					is_moe[l] ? "an MoE layer" : "dense");
	return 0;
}

/* ---- file I/O --------------------------------------------------------------------- */

int hmoe_place_save(const struct hmoe_place *p, const char *path)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return hmoe_err(HMOE_EIO, "placement %s: %s", path, strerror(errno));
	fprintf(f, "# hmoe expert placement: per MoE layer, per expert, the devices holding it "
		   "(cpu = host CPU tier)\nhmoe-place 1\nlayers %d experts %d expert_bytes %lld\n",
		p->n_layers, p->n_experts, (long long)p->expert_bytes);
	for (int d = 0; d < p->n_devices; d++)
		fprintf(f, "device %s %lld\n", p->devices[d].name,
			(long long)p->devices[d].capacity_bytes);
	for (int l = 0; l < p->n_layers; l++) {
		if (!p->is_moe[l])
			continue;
		fprintf(f, "layer %d", l);
		for (int e = 0; e < p->n_experts; e++) {
			const int8_t *devs;
			int n = hmoe_place_copies(p, l, e, &devs);

			if (!n)
				fprintf(f, " cpu");
			for (int c = 0; c < n; c++)
				fprintf(f, "%s%d", c ? "," : " ", devs[c]);
		}
		fprintf(f, "\n");
	}
	if (ferror(f) | (fclose(f) != 0))
		return hmoe_err(HMOE_EIO, "placement %s: write failed", path);
	return 0;
}

/* Parses a decimal integer in [lo, hi] that ends at a space or the end; advances *s. */
static int parse_int(const char **s, long long lo, long long hi, long long *out)
{
	char *end;
	long long v;

	while (**s == ' ' || **s == '\t')
		(*s)++;
	if (!isdigit((unsigned char)**s) && **s != '-')
		return -1;
	errno = 0;
	v = strtoll(*s, &end, 10);
	if (errno || end == *s || v < lo || v > hi ||
	    (*end && *end != ' ' && *end != '\t' && *end != ','))
		return -1;
	*s = end;
	*out = v;
	return 0;
}

/* Matches a keyword followed by a space; advances *s. */
static int keyword(const char **s, const char *kw)
{
	size_t n = strlen(kw);

	while (**s == ' ' || **s == '\t')
		(*s)++;
	if (strncmp(*s, kw, n) || ((*s)[n] != ' ' && (*s)[n] != '\t' && (*s)[n]))
		return -1;
	*s += n;
	return 0;
}

static int at_end(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return !*s;
}

#define BAD(...)                                                                      \
	do {                                                                          \
		char msg_[256];                                                       \
		snprintf(msg_, sizeof(msg_), __VA_ARGS__);                            \
		ret = hmoe_err(HMOE_EINPUT, "placement %s line %d: %s", path, line_no, msg_); \
		goto err;                                                             \
	} while (0)

int hmoe_place_load(struct hmoe_place **out, const char *path)
{
	struct hmoe_place *p = NULL;
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t cap = 0;
	ssize_t len;
	int line_no = 0, stage = 0, ret = 0, n_dev = 0;
	unsigned char *seen = NULL;

	if (!f)
		return hmoe_err(HMOE_EINPUT, "placement %s: %s", path, strerror(errno));
	while ((len = getline(&buf, &cap, f)) >= 0) {
		const char *s = buf;
		long long a, b, c;

		line_no++;
		while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
			buf[--len] = '\0';
		if (strlen(buf) != (size_t)len)
			BAD("NUL byte in the line");
		if (buf[0] == '#' || at_end(buf))
			continue;
		if (stage == 0) {
			if (keyword(&s, "hmoe-place") || parse_int(&s, 0, 1000, &a) || !at_end(s))
				BAD("expected the header 'hmoe-place 1'");
			if (a != 1)
				BAD("format version %lld (this hmoe reads version 1)", a);
			stage = 1;
		} else if (stage == 1) {
			if (keyword(&s, "layers") || parse_int(&s, 1, 4096, &a) ||
			    keyword(&s, "experts") || parse_int(&s, 1, 4096, &b) ||
			    keyword(&s, "expert_bytes") || parse_int(&s, 1, (long long)1 << 50, &c) ||
			    !at_end(s))
				BAD("expected 'layers N experts N expert_bytes N' (N >= 1)");
			ret = place_alloc(&p, (int)a, (int)b);
			if (ret)
				goto err;
			p->expert_bytes = c;
			seen = calloc((size_t)a, 1);
			if (!seen) {
				ret = hmoe_err(HMOE_ENOMEM, "placement: out of memory");
				goto err;
			}
			stage = 2;
		} else if (!keyword(&s, "device")) {
			char name[64];
			int consumed = 0;

			if (stage != 2)
				BAD("device lines must come before the layer lines");
			if (n_dev >= HMOE_PLACE_MAX_DEVICES)
				BAD("more than %d devices", HMOE_PLACE_MAX_DEVICES);
			if (sscanf(s, " %63s%n", name, &consumed) != 1 || !valid_name(name))
				BAD("device name must be 1-%d characters of [A-Za-z0-9_.-]",
				    HMOE_PLACE_NAME - 1);
			s += consumed;
			if (parse_int(&s, 0, (long long)1 << 56, &a) || !at_end(s))
				BAD("device %s: expected a capacity in bytes", name);
			for (int d = 0; d < n_dev; d++)
				if (!strcmp(p->devices[d].name, name))
					BAD("device %s listed twice", name);
			memcpy(p->devices[n_dev].name, name, strlen(name) + 1); /* valid_name: fits */
			p->devices[n_dev++].capacity_bytes = a;
			p->n_devices = n_dev;
		} else if (!keyword(&s, "layer")) {
			int l;

			stage = 3;
			if (parse_int(&s, 0, p->n_layers - 1, &a))
				BAD("layer index must be in [0, %d)", p->n_layers);
			l = (int)a;
			if (seen[l])
				BAD("layer %d listed twice", l);
			seen[l] = 1;
			p->is_moe[l] = 1;
			for (int e = 0; e < p->n_experts; e++) {
				size_t k = (size_t)l * p->n_experts + e;
				int8_t *devs = p->copies + k * HMOE_PLACE_MAX_REPLICAS;

				while (*s == ' ' || *s == '\t')
					s++;
				if (!*s)
					BAD("layer %d: %d expert entries, expected %d", l, e,
					    p->n_experts);
				if (!strncmp(s, "cpu", 3) && (s[3] == ' ' || s[3] == '\t' || !s[3])) {
					s += 3;
					continue;
				}
				for (;;) {
					int n = p->n_copies[k];

					if (parse_int(&s, 0, n_dev - 1, &a))
						BAD("layer %d expert %d: expected 'cpu' or device "
						    "indices in [0, %d) joined by commas", l, e, n_dev);
					if (n >= HMOE_PLACE_MAX_REPLICAS)
						BAD("layer %d expert %d: more than %d copies", l, e,
						    HMOE_PLACE_MAX_REPLICAS);
					for (int h = 0; h < n; h++)
						if (devs[h] == a)
							BAD("layer %d expert %d: device %lld twice", l,
							    e, a);
					devs[n] = (int8_t)a;
					p->n_copies[k]++;
					p->used_bytes[a] += p->expert_bytes;
					if (*s != ',')
						break;
					s++;
				}
			}
			if (!at_end(s))
				BAD("layer %d: more than %d expert entries", l, p->n_experts);
		} else {
			BAD("unexpected '%.40s'", buf);
		}
	}
	if (ferror(f)) {
		ret = hmoe_err(HMOE_EIO, "placement %s: read error", path);
		goto err;
	}
	if (stage < 2) {
		line_no++;
		BAD("file ends before the %s line", stage == 0 ? "'hmoe-place 1'" : "'layers ...'");
	}
	for (int d = 0; d < p->n_devices; d++)
		if (p->used_bytes[d] > p->devices[d].capacity_bytes)
			BAD("device %s holds %lld bytes of experts, over its capacity %lld",
			    p->devices[d].name, (long long)p->used_bytes[d],
			    (long long)p->devices[d].capacity_bytes);
	free(buf);
	free(seen);
	fclose(f);
	*out = p;
	return 0;
err:
	free(buf);
	free(seen);
	fclose(f);
	hmoe_place_free(p);
	return ret;
}
