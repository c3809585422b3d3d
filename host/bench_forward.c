/* bench_forward: placeholder until the forward pass lands; fails loudly. */
#include "hmoe_bench.h"
#include "hmoe_cli.h"
#include "hmoe_err.h"

int bench_forward(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return cli_fail(hmoe_err(HMOE_EINTERNAL, "hmoe bench forward: not built yet"));
}
