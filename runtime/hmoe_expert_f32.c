/* hmoe_expert_f32: placeholder until the float expert lands; fails loudly. */
#include "hmoe_err.h"
#include "hmoe_expert.h"

static int f32_init(struct hmoe_expert_backend *b, const struct hmoe_model *m, const char *arg)
{
	(void)b;
	(void)m;
	(void)arg;
	return hmoe_err(HMOE_EINTERNAL, "cpu-f32 experts: not built yet");
}

const struct hmoe_expert_ops hmoe_expert_cpu_f32_ops = {
	.name = "cpu-f32",
	.init = f32_init,
};
