/* hmoe_err: thread-local last-error message (see hmoe_err.h). */
#include "hmoe_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char err_msg[1024];

int hmoe_err(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err_msg, sizeof(err_msg), fmt, ap);
	va_end(ap);
	return -code;
}

int hmoe_err_ctx(int ret, const char *fmt, ...)
{
	char prefix[512], old[sizeof(err_msg)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, err_msg, sizeof(old));
	/* Truncation is acceptable: the message stays NUL-terminated. */
	size_t n = strlen(prefix);

	if (n > sizeof(err_msg) - 3)
		n = sizeof(err_msg) - 3;
	memcpy(err_msg, prefix, n);
	memcpy(err_msg + n, ": ", 2);
	memcpy(err_msg + n + 2, old, sizeof(err_msg) - n - 3);
	err_msg[sizeof(err_msg) - 1] = '\0';
	return ret;
}

const char *hmoe_last_error(void)
{
	return err_msg[0] ? err_msg : "unknown error";
}

void hmoe_clear_error(void)
{
	err_msg[0] = '\0';
}
