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

int hmoe_expert_open(struct hmoe_expert_backend **out, const char *spec,
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

void hmoe_expert_close(struct hmoe_expert_backend *b)
{
	if (!b)
		return;
	if (b->ops->fini)
		b->ops->fini(b);
	free(b);
}

int hmoe_expert_is_async(const struct hmoe_expert_backend *b)
{
	return b->ops->submit && b->ops->wait;
}

int hmoe_expert_submit(struct hmoe_expert_backend *b, const struct hmoe_expert_batch *batch,
		       int *ticket)
{
	int slot;

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
