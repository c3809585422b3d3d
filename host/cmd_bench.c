/* cmd_bench: `hmoe bench WHAT`: dispatches to one benchmark per file (host/bench_*.c).
 * Every benchmark prints one JSON object on stdout that says what was measured and
 * what was modeled, with ratios against a peer measured in the same run. */
#include <stdio.h>
#include <string.h>

#include "hmoe_bench.h"
#include "hmoe_cli.h"

static const struct {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
} benches[] = {
	{ "forward", bench_forward, "prefill/decode tokens/s of the CPU forward pass" },
	{ "mla", bench_mla, "MLA decode GB/s and prefill TFLOP/s on the GPU (libhmoe_cuda.so)" },
	{ "kmod", bench_kmod, "MoE layers through hmoe.ko on a card: jobs/s and ioctls per layer" },
	{ "sched", bench_sched, "heterogeneous schedule at V3 dims: modeled step/bound, measured host overhead, R1 projection" },
	{ "experts", bench_experts, "routed experts of one MoE layer at V3 dims: fixed point per format vs fp32" },
};

int cmd_bench(int argc, char **argv)
{
	if (argc < 1 || !strcmp(argv[0], "--help")) {
		FILE *f = argc < 1 ? stderr : stdout;

		fprintf(f, "usage: hmoe bench WHAT [FLAGS] --json\n\n");
		for (size_t i = 0; i < sizeof(benches) / sizeof(benches[0]); i++)
			fprintf(f, "  %-9s %s\n", benches[i].name, benches[i].summary);
		return argc < 1 ? 2 : 0;
	}
	for (size_t i = 0; i < sizeof(benches) / sizeof(benches[0]); i++)
		if (!strcmp(argv[0], benches[i].name))
			return benches[i].run(argc - 1, argv + 1);
	fprintf(stderr, "hmoe: unknown benchmark '%s' (hmoe bench --help lists them)\n", argv[0]);
	return 2;
}
