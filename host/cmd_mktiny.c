/* cmd_mktiny: `hmoe mktiny`. Placeholder until its owner lands it; it fails loudly. */
#include "hmoe_cli.h"
#include "hmoe_err.h"

int cmd_mktiny(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return cli_fail(hmoe_err(HMOE_EINTERNAL, "hmoe mktiny: not built yet"));
}
