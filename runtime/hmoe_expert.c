/* hmoe_expert: the registry of routed-expert backends (see hmoe_expert.h). */
#include "hmoe_expert.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmoe_err.h"

/* Every backend, by the name used in `--experts NAME[:ARG]`. */
static const struct hmoe_expert_ops *const backends[] = {
	&hmoe_expert_cpu_f32_ops,
	&hmoe_expert_cpu_fxp_ops,
	&hmoe_expert_sched_ops,
	&hmoe_expert_kmod_ops,
};

static int expert_open_one(struct hmoe_expert_backend **out, const char *spec,
			   const struct hmoe_model *m, struct hmoe_pool *pool)
{
	const char *colon = strchr(spec, ':');
	size_t name_len = colon ? (size_t)(colon - spec) : strlen(spec);
	char known[256] = "";
	struct hmoe_expert_backend *b;
	int ret;

	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
		const struct hmoe_expert_ops *ops = backends[i];

		if (strlen(ops->name) != name_len || strncmp(ops->name, spec, name_len))
			continue;
		b = calloc(1, sizeof(*b));
		if (!b)
			return hmoe_err(HMOE_ENOMEM, "expert backend %s: out of memory", ops->name);
		b->ops = ops;
		b->model = m;
		b->pool = pool;
		ret = ops->init(b, m, colon ? colon + 1 : NULL);
		if (ret) {
			free(b);
			return ret;
		}
		*out = b;
		return 0;
	}
	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
		strncat(known, i ? ", " : "", sizeof(known) - strlen(known) - 1);
		strncat(known, backends[i]->name, sizeof(known) - strlen(known) - 1);
	}
	return hmoe_err(HMOE_EINPUT, "unknown expert backend '%s' (known: %s)", spec, known);
}

/* "A|B|...": the first alternative whose device is there. Only a missing or failing
 * device (HMOE_EDEVICE) moves on to the next, with one line on stderr; a bad spec is an
 * error whatever follows it, so a typo never turns into a silent fallback. */
int hmoe_expert_open(struct hmoe_expert_backend **out, const char *spec,
		     const struct hmoe_model *m, struct hmoe_pool *pool)
{
	char alt[512];
	const char *p = spec;
	size_t len = strlen(spec);

	if (!len || spec[0] == '|' || spec[len - 1] == '|' || strstr(spec, "||"))
		return hmoe_err(HMOE_EINPUT, "--experts '%s': an empty alternative", spec);
	for (;;) {
		const char *bar = strchr(p, '|');
		size_t n = bar ? (size_t)(bar - p) : strlen(p);
		int ret;

		if (n >= sizeof(alt))
			return hmoe_err(HMOE_EINPUT, "--experts '%s': an alternative is longer than "
					"%zu bytes", spec, sizeof(alt) - 1);
		memcpy(alt, p, n);
		alt[n] = '\0';
		ret = expert_open_one(out, alt, m, pool);
		if (ret != -HMOE_EDEVICE || !bar)
			return ret;
		fprintf(stderr, "hmoe: experts %s unavailable (%s); trying %.*s\n", alt,
			hmoe_last_error(), (int)strcspn(bar + 1, "|"), bar + 1);
		p = bar + 1;
	}
}

void hmoe_expert_close(struct hmoe_expert_backend *b)
{
	if (!b)
		return;
	if (b->ops->fini)
		b->ops->fini(b);
	free(b->resident);
	free(b);
}

int hmoe_expert_is_async(const struct hmoe_expert_backend *b)
{
	return b->ops->submit && b->ops->wait;
}

int hmoe_expert_check_resident(const struct hmoe_expert_backend *b,
			       const struct hmoe_expert_batch *batch)
{
	int E, n = batch->n_tokens * batch->top_k;
	const uint8_t *row;

	if (!b->resident || n <= 0)
		return 0;
	E = b->model->cfg.n_routed_experts;
	if (batch->layer < 0 || batch->layer >= b->model->cfg.num_hidden_layers)
		return hmoe_err(HMOE_EINTERNAL, "expert backend %s: layer %d does not exist",
				b->ops->name, batch->layer);
	row = b->resident + (size_t)batch->layer * E;
	for (int i = 0; i < n; i++) {
		int e = batch->expert_ids[i];

		if (e >= 0 && e < E && !row[e])
			return hmoe_err(HMOE_EINTERNAL, "expert backend %s: layer %d expert %d is "
					"not resident here (token %d)", b->ops->name, batch->layer,
					e, i / batch->top_k);
	}
	return 0;
}

int hmoe_expert_run(struct hmoe_expert_backend *b, const struct hmoe_expert_batch *batch)
{
	int ret = hmoe_expert_check_resident(b, batch);

	return ret ? ret : b->ops->run(b, batch);
}

int hmoe_expert_set_resident(struct hmoe_expert_backend *b, const uint8_t *mask)
{
	const struct hmoe_config *c;
	size_t n;
	int ret;

	/* a stand-in backend without a model (benchmarks): nothing to size a record by */
	if (!b->model)
		return b->ops->set_resident ? b->ops->set_resident(b, mask) : 0;
	c = &b->model->cfg;
	n = (size_t)c->num_hidden_layers * (size_t)c->n_routed_experts;

	for (size_t i = 0; i < n; i++)
		if (mask[i] && !b->model->layers[i / c->n_routed_experts].is_moe)
			return hmoe_err(HMOE_EINPUT, "expert backend %s: residency mask names layer "
					"%zu expert %zu, but layer %zu is not an MoE layer",
					b->ops->name, i / c->n_routed_experts,
					i % c->n_routed_experts, i / c->n_routed_experts);
	if (!b->resident) {
		b->resident = malloc(n);
		if (!b->resident)
			return hmoe_err(HMOE_ENOMEM, "expert backend %s: out of memory", b->ops->name);
		memset(b->resident, 1, n);  /* until the op succeeds: what it held before */
	}
	if (b->ops->set_resident) {
		ret = b->ops->set_resident(b, mask);
		if (ret) {
			/* only what was resident before and stays so is sure to be held */
			for (size_t i = 0; i < n; i++)
				b->resident[i] = (uint8_t)(b->resident[i] && mask[i]);
			return ret;
		}
	}
	for (size_t i = 0; i < n; i++)
		b->resident[i] = mask[i] ? 1 : 0;
	return 0;
}

const uint8_t *hmoe_expert_resident(const struct hmoe_expert_backend *b)
{
	return b->resident;
}

int hmoe_expert_submit(struct hmoe_expert_backend *b, const struct hmoe_expert_batch *batch,
		       int *ticket)
{
	int slot, ret = hmoe_expert_check_resident(b, batch);

	if (ret)
		return ret;
	if (hmoe_expert_is_async(b))
		return b->ops->submit(b, batch, ticket);
	slot = b->sync_next;
	b->sync_next = (slot + 1) % HMOE_EXPERT_MAX_INFLIGHT;
	b->sync_ret[slot] = b->ops->run(b, batch);
	*ticket = slot;
	return 0;
}

int hmoe_expert_wait(struct hmoe_expert_backend *b, int ticket)
{
	if (hmoe_expert_is_async(b))
		return b->ops->wait(b, ticket);
	if (ticket < 0 || ticket >= HMOE_EXPERT_MAX_INFLIGHT)
		return hmoe_err(HMOE_EINTERNAL, "expert backend %s: bad ticket %d", b->ops->name,
				ticket);
	return b->sync_ret[ticket];
}
