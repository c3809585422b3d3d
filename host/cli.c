/* cli: flag parsing and error reporting shared by every subcommand (see hmoe_cli.h). */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmoe_cli.h"
#include "hmoe_err.h"
#include "hmoe_tok.h"

static int flag_index(const struct cli_args *a, const char *name)
{
	for (int i = 0; i < a->n_flags; i++)
		if (!strcmp(a->flags[i].name, name))
			return i;
	return -1;
}

void cli_usage(const char *cmd, const char *summary, const struct cli_flag *flags, int n)
{
	printf("usage: hmoe %s [FLAGS]\n%s\n\n", cmd, summary);
	for (int i = 0; i < n; i++)
		printf("  %s\n", flags[i].help);
}

/* --config FILE: more flags, one "name = value" (or "name value", or a bare switch
 * name) per line, '#' comments and blank lines ignored; the command line wins over the
 * file. Every name must be one of the command's flags. */
static int config_load(struct cli_args *a, const char *path)
{
	FILE *f = fopen(path, "rb");
	long size, lineno = 0;
	char *p, *end;

	if (!f)
		return hmoe_err(HMOE_EINPUT, "hmoe %s: --config %s: cannot open: %s", a->cmd, path,
				strerror(errno));
	if (fseek(f, 0, SEEK_END) || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) ||
	    size > (1 << 20)) {
		fclose(f);
		return hmoe_err(HMOE_EINPUT, "hmoe %s: --config %s: not a regular file of at most "
				"1 MiB", a->cmd, path);
	}
	a->config_text = malloc((size_t)size + 1);
	if (!a->config_text) {
		fclose(f);
		return hmoe_err(HMOE_ENOMEM, "out of memory");
	}
	if (fread(a->config_text, 1, (size_t)size, f) != (size_t)size) {
		fclose(f);
		return hmoe_err(HMOE_EIO, "hmoe %s: --config %s: read error", a->cmd, path);
	}
	fclose(f);
	a->config_text[size] = '\0';
	if (strlen(a->config_text) != (size_t)size)
		return hmoe_err(HMOE_EINPUT, "hmoe %s: --config %s: contains a NUL byte", a->cmd,
				path);
	for (p = a->config_text; *p; p = end) {
		char *nl = strchr(p, '\n'), *name, *value, *q;
		int k;

		end = nl ? nl + 1 : p + strlen(p);
		if (nl)
			*nl = '\0';
		lineno++;
		if ((q = strchr(p, '#')))
			*q = '\0';
		/* trim, then split at the first '=' or blank */
		while (*p == ' ' || *p == '\t')
			p++;
		for (q = p + strlen(p); q > p && (q[-1] == ' ' || q[-1] == '\t' || q[-1] == '\r');)
			*--q = '\0';
		if (!*p)
			continue;
		name = p;
		p += strcspn(p, " \t=");
		value = NULL;
		if (*p) {
			char sep = *p;

			*p++ = '\0';
			p += strspn(p, " \t");
			if (sep != '=' && *p == '=')  /* "name = value" */
				p += 1 + strspn(p + 1, " \t");
			value = p;
		}
		if (!strncmp(name, "--", 2))
			name += 2;
		k = flag_index(a, name);
		if (k < 0 || !strcmp(name, "config"))
			return hmoe_err(HMOE_EINPUT, "hmoe %s: %s line %ld: unknown flag '%s' (hmoe %s "
					"--help)", a->cmd, path, lineno, name, a->cmd);
		if (a->flags[k].takes_value && (!value || !*value))
			return hmoe_err(HMOE_EINPUT, "hmoe %s: %s line %ld: %s needs a value", a->cmd,
					path, lineno, name);
		if (!a->flags[k].takes_value && value && *value)
			return hmoe_err(HMOE_EINPUT, "hmoe %s: %s line %ld: %s takes no value",
					a->cmd, path, lineno, name);
		if (!a->values[k])  /* the command line wins */
			a->values[k] = a->flags[k].takes_value ? value : "";
	}
	return 0;
}

int cli_parse(struct cli_args *a, const char *cmd, const struct cli_flag *flags,
	      int n_flags, int argc, char **argv)
{
	memset(a, 0, sizeof(*a));
	a->cmd = cmd;
	a->flags = flags;
	a->n_flags = n_flags;
	a->values = calloc((size_t)n_flags + 1, sizeof(*a->values));
	a->positional = calloc((size_t)argc + 1, sizeof(*a->positional));
	if (!a->values || !a->positional) {
		cli_free(a);
		return hmoe_err(HMOE_ENOMEM, "out of memory");
	}
	for (int i = 0; i < argc; i++) {
		const char *arg = argv[i];
		char name[128];
		const char *eq, *value = NULL;
		int k;

		if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
			a->positional[a->n_positional++] = arg;
			continue;
		}
		eq = strchr(arg + 2, '=');
		snprintf(name, sizeof(name), "%.*s",
			 (int)(eq ? (size_t)(eq - arg - 2) : strlen(arg + 2)), arg + 2);
		k = flag_index(a, name);
		if (k < 0) {
			cli_free(a);
			return hmoe_err(HMOE_EINPUT, "hmoe %s: unknown flag --%s (hmoe %s --help)",
					cmd, name, cmd);
		}
		if (a->values[k]) {
			cli_free(a);
			return hmoe_err(HMOE_EINPUT, "hmoe %s: --%s given twice", cmd, name);
		}
		if (flags[k].takes_value) {
			if (eq)
				value = eq + 1;
			else if (i + 1 < argc)
				value = argv[++i];
			else {
				cli_free(a);
				return hmoe_err(HMOE_EINPUT, "hmoe %s: --%s needs a value", cmd, name);
			}
		} else {
			if (eq) {
				cli_free(a);
				return hmoe_err(HMOE_EINPUT, "hmoe %s: --%s takes no value", cmd, name);
			}
			value = "";
		}
		a->values[k] = value;
	}
	if (flag_index(a, "config") >= 0 && cli_has(a, "config")) {
		int ret = config_load(a, cli_str(a, "config", ""));

		if (ret) {
			cli_free(a);
			return ret;
		}
	}
	return 0;
}

void cli_free(struct cli_args *a)
{
	free(a->values);
	free(a->positional);
	free(a->config_text);
	a->config_text = NULL;
	a->values = NULL;
	a->positional = NULL;
}

int cli_has(const struct cli_args *a, const char *name)
{
	int k = flag_index(a, name);

	return k >= 0 && a->values[k] != NULL;
}

const char *cli_str(const struct cli_args *a, const char *name, const char *def)
{
	int k = flag_index(a, name);

	return k >= 0 && a->values[k] ? a->values[k] : def;
}

int cli_req(const struct cli_args *a, const char *name, const char **out)
{
	const char *v = cli_str(a, name, NULL);

	if (!v || !*v)
		return hmoe_err(HMOE_EINPUT, "hmoe %s: --%s is required", a->cmd, name);
	*out = v;
	return 0;
}

int cli_int(const struct cli_args *a, const char *name, long def, long lo, long hi, long *out)
{
	const char *v = cli_str(a, name, NULL);
	char *end;
	long x;

	if (!v) {
		*out = def;
		return 0;
	}
	errno = 0;
	x = strtol(v, &end, 10);
	if (errno || end == v || *end)
		return hmoe_err(HMOE_EINPUT, "hmoe %s: --%s '%s' is not an integer", a->cmd,
				name, v);
	if (x < lo || x > hi)
		return hmoe_err(HMOE_EINPUT, "hmoe %s: --%s %ld is out of range [%ld, %ld]",
				a->cmd, name, x, lo, hi);
	*out = x;
	return 0;
}

int cli_u64(const struct cli_args *a, const char *name, uint64_t def, uint64_t *out)
{
	const char *v = cli_str(a, name, NULL);
	char *end;
	unsigned long long x;

	if (!v) {
		*out = def;
		return 0;
	}
	errno = 0;
	x = strtoull(v, &end, 10);
	if (errno || end == v || *end || v[0] == '-')
		return hmoe_err(HMOE_EINPUT, "hmoe %s: --%s '%s' is not a non-negative integer",
				a->cmd, name, v);
	*out = (uint64_t)x;
	return 0;
}

int cli_float(const struct cli_args *a, const char *name, double def, double lo, double hi,
	      double *out)
{
	const char *v = cli_str(a, name, NULL);
	char *end;
	double x;

	if (!v) {
		*out = def;
		return 0;
	}
	errno = 0;
	x = strtod(v, &end);
	if (errno || end == v || *end || !isfinite(x))
		return hmoe_err(HMOE_EINPUT, "hmoe %s: --%s '%s' is not a number", a->cmd, name,
				v);
	if (x < lo || x > hi)
		return hmoe_err(HMOE_EINPUT, "hmoe %s: --%s %g is out of range [%g, %g]", a->cmd,
				name, x, lo, hi);
	*out = x;
	return 0;
}

int cli_int_list(const struct cli_args *a, const char *name, int **out, int *n)
{
	const char *v = cli_str(a, name, NULL);
	const char *p;
	int cap = 1, count = 0;
	int *ids;

	*out = NULL;
	*n = 0;
	if (!v || !*v)
		return hmoe_err(HMOE_EINPUT, "hmoe %s: --%s is required", a->cmd, name);
	for (p = v; *p; p++)
		cap += *p == ',';
	ids = malloc((size_t)cap * sizeof(*ids));
	if (!ids)
		return hmoe_err(HMOE_ENOMEM, "out of memory");
	p = v;
	for (;;) {
		char *end;
		long x;

		errno = 0;
		x = strtol(p, &end, 10);
		if (errno || end == p || (*end != ',' && *end != '\0') || x < 0 || x > INT_MAX) {
			free(ids);
			return hmoe_err(HMOE_EINPUT,
					"hmoe %s: --%s: '%s' is not a list of non-negative integers",
					a->cmd, name, v);
		}
		ids[count++] = (int)x;
		if (*end == '\0')
			break;
		p = end + 1;
	}
	*out = ids;
	*n = count;
	return 0;
}

int cli_fail(int ret)
{
	const char *msg = hmoe_last_error();

	/* Messages from the CLI already start with "hmoe CMD:"; others get the prefix. */
	fprintf(stderr, "%s%s\n", strncmp(msg, "hmoe ", 5) ? "hmoe: " : "", msg);
	return ret == -HMOE_EINPUT ? 2 : 1;
}

/* ---- generated text ---- */

int cli_text_append(struct cli_text *t, const char *p, size_t n)
{
	if (t->len + n + 1 > t->cap) {
		size_t cap = (t->len + n + 1) * 2;
		char *q = realloc(t->s, cap);

		if (!q)
			return hmoe_err(HMOE_ENOMEM, "out of memory for generated text");
		t->s = q;
		t->cap = cap;
	}
	memcpy(t->s + t->len, p, n);
	t->len += n;
	t->s[t->len] = '\0';
	return 0;
}

int cli_text_token(struct cli_text *t, struct hmoe_tok_stream *st, int tok, int eos)
{
	char piece[1024];
	int ret;

	if (tok == eos)
		return 0;
	if ((ret = hmoe_tok_stream_push(st, tok, piece, sizeof(piece))) < 0)
		return ret;
	return cli_text_append(t, piece, (size_t)ret);
}

int cli_text_flush(struct cli_text *t, struct hmoe_tok_stream *st)
{
	char piece[1024];
	int ret = hmoe_tok_stream_flush(st, piece, sizeof(piece));

	return ret < 0 ? ret : cli_text_append(t, piece, (size_t)ret);
}

void cli_text_free(struct cli_text *t)
{
	free(t->s);
	*t = (struct cli_text){ 0 };
}
