/* cmd_generate: `hmoe generate`. Placeholder until its owner lands it; it fails loudly. */
#include "hmoe_cli.h"
#include "hmoe_err.h"

int cmd_generate(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return cli_fail(hmoe_err(HMOE_EINTERNAL, "hmoe generate: not built yet"));
}
