/* cmd_logits: `hmoe logits`. Placeholder until its owner lands it; it fails loudly. */
#include "hmoe_cli.h"
#include "hmoe_err.h"

int cmd_logits(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return cli_fail(hmoe_err(HMOE_EINTERNAL, "hmoe logits: not built yet"));
}
