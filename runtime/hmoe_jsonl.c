/* hmoe_jsonl: JSON-lines files (see hmoe_jsonl.h). */
#include "hmoe_jsonl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "hmoe_err.h"

int hmoe_jsonl_blank(const char *s)
{
	while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
		s++;
	return !*s;
}

int hmoe_jsonl_read(const char *path, const char *what,
		    int (*on_object)(void *arg, const cJSON *obj, long line), void *arg)
{
	FILE *f = fopen(path, "rb");
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	long lineno = 0, n = 0;
	int ret = 0;

	if (!f)
		return hmoe_err(HMOE_EINPUT, "%s: cannot open: %s", path, strerror(errno));
	while (!ret && (len = getline(&line, &cap, f)) >= 0) {
		cJSON *j;

		lineno++;
		if ((size_t)len != strlen(line)) {
			ret = hmoe_err(HMOE_EINPUT, "%s line %ld: contains a NUL byte", path, lineno);
			break;
		}
		if (hmoe_jsonl_blank(line))
			continue;
		j = cJSON_Parse(line);
		if (!j || !cJSON_IsObject(j))
			ret = hmoe_err(HMOE_EINPUT, "%s line %ld: not a JSON object", path, lineno);
		else
			ret = on_object(arg, j, lineno);
		cJSON_Delete(j);
		n++;
	}
	if (!ret && ferror(f))
		ret = hmoe_err(HMOE_EIO, "%s: read error", path);
	if (!ret && n == 0)
		ret = hmoe_err(HMOE_EINPUT, "%s: %s", path, what);
	free(line);
	fclose(f);
	return ret;
}
