/* hmoe_st: safetensors reader (mmap + validation) and writer (see hmoe_st.h). */
#include "hmoe_st.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "hmoe_err.h"

/* ---------------------------------------------------------------------------------- */
/* dtypes */

static const struct {
	const char *name;
	size_t size;
} dtype_info[HMOE_DT_COUNT] = {
	[HMOE_DT_F32] = { "F32", 4 },
	[HMOE_DT_BF16] = { "BF16", 2 },
	[HMOE_DT_F16] = { "F16", 2 },
	[HMOE_DT_F8E4M3] = { "F8_E4M3", 1 },
	[HMOE_DT_I32] = { "I32", 4 },
	[HMOE_DT_I64] = { "I64", 8 },
	[HMOE_DT_U8] = { "U8", 1 },
	[HMOE_DT_I8] = { "I8", 1 },
};

const char *hmoe_dtype_name(enum hmoe_dtype dt)
{
	return (unsigned)dt < HMOE_DT_COUNT ? dtype_info[dt].name : "?";
}

size_t hmoe_dtype_size(enum hmoe_dtype dt)
{
	return (unsigned)dt < HMOE_DT_COUNT ? dtype_info[dt].size : 0;
}

int hmoe_dtype_parse(const char *s)
{
	for (int i = 0; i < HMOE_DT_COUNT; i++)
		if (!strcmp(s, dtype_info[i].name))
			return i;
	return -1;
}

int64_t hmoe_tensor_numel(const struct hmoe_tensor *t)
{
	int64_t n = 1;

	for (int d = 0; d < t->ndim; d++) {
		if (t->shape[d] < 0)
			return -1;
		if (t->shape[d] && n > INT64_MAX / t->shape[d])
			return -1;
		n *= t->shape[d];
	}
	return n;
}

const char *hmoe_shape_str(const struct hmoe_tensor *t, char *buf, size_t size)
{
	size_t o = 0;

	o += (size_t)snprintf(buf + o, size - o, "[");
	for (int d = 0; d < t->ndim && o < size; d++)
		o += (size_t)snprintf(buf + o, size - o, "%s%lld", d ? ", " : "",
				      (long long)t->shape[d]);
	if (o < size)
		snprintf(buf + o, size - o, "]");
	return buf;
}

/* ---------------------------------------------------------------------------------- */
/* reading */

/* JSON numbers are doubles: accept only exact non-negative integers below 2^53. */
static int json_uint(const cJSON *j, int64_t *out)
{
	double v;

	if (!cJSON_IsNumber(j))
		return -1;
	v = j->valuedouble;
	if (!(v >= 0) || v > 9007199254740992.0 || v != floor(v))
		return -1;
	*out = (int64_t)v;
	return 0;
}

static int cmp_tensor_name(const void *a, const void *b)
{
	return strcmp(((const struct hmoe_tensor *)a)->name, ((const struct hmoe_tensor *)b)->name);
}

/* Offsets of tensor i, kept beside the sorted order for the overlap check. */
struct span {
	uint64_t begin, end;
	const char *name;
};

static int cmp_span(const void *a, const void *b)
{
	const struct span *x = a, *y = b;

	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	return x->end < y->end ? -1 : x->end > y->end;
}

/* Parses one tensor entry of the header into t (name not set). */
static int parse_entry(const char *what, const cJSON *e, size_t data_size, struct hmoe_tensor *t,
		       struct span *sp)
{
	const char *name = e->string;
	const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
	const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
	const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
	const cJSON *it;
	int64_t begin, end, numel;
	int d;

	if (!cJSON_IsObject(e))
		return hmoe_err(HMOE_EINPUT, "%s: tensor %s: header entry is not an object", what,
				name);
	if (!cJSON_IsString(dt))
		return hmoe_err(HMOE_EINPUT, "%s: tensor %s: missing or non-string \"dtype\"",
				what, name);
	d = hmoe_dtype_parse(dt->valuestring);
	if (d < 0)
		return hmoe_err(HMOE_EINPUT, "%s: tensor %s: unknown dtype \"%.32s\"", what, name,
				dt->valuestring);
	t->dtype = (enum hmoe_dtype)d;
	if (!cJSON_IsArray(shape))
		return hmoe_err(HMOE_EINPUT, "%s: tensor %s: missing or non-array \"shape\"", what,
				name);
	if (cJSON_GetArraySize(shape) > HMOE_MAX_DIMS)
		return hmoe_err(HMOE_EINPUT, "%s: tensor %s: %d dimensions, at most %d supported",
				what, name, cJSON_GetArraySize(shape), HMOE_MAX_DIMS);
	t->ndim = 0;
	cJSON_ArrayForEach(it, shape) {
		if (json_uint(it, &t->shape[t->ndim]))
			return hmoe_err(HMOE_EINPUT,
					"%s: tensor %s: shape[%d] is not a non-negative integer",
					what, name, t->ndim);
		t->ndim++;
	}
	if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
	    json_uint(cJSON_GetArrayItem(offs, 0), &begin) ||
	    json_uint(cJSON_GetArrayItem(offs, 1), &end))
		return hmoe_err(HMOE_EINPUT,
				"%s: tensor %s: \"data_offsets\" must be [begin, end] integers",
				what, name);
	if (begin > end)
		return hmoe_err(HMOE_EINPUT, "%s: tensor %s: data_offsets [%lld, %lld] run backwards",
				what, name, (long long)begin, (long long)end);
	if ((uint64_t)end > data_size)
		return hmoe_err(HMOE_EINPUT,
				"%s: tensor %s: data_offsets [%lld, %lld] past the end of the data "
				"(%zu bytes; file truncated?)",
				what, name, (long long)begin, (long long)end, data_size);
	numel = hmoe_tensor_numel(t);
	if (numel < 0 || (uint64_t)numel > UINT64_MAX / hmoe_dtype_size(t->dtype) ||
	    (uint64_t)numel * hmoe_dtype_size(t->dtype) != (uint64_t)(end - begin)) {
		char sh[96];

		return hmoe_err(HMOE_EINPUT,
				"%s: tensor %s: %lld bytes in data_offsets but shape %s of %s "
				"needs %lld",
				what, name, (long long)(end - begin), hmoe_shape_str(t, sh, sizeof(sh)),
				hmoe_dtype_name(t->dtype),
				numel < 0 ? -1LL : (long long)(numel * (int64_t)hmoe_dtype_size(t->dtype)));
	}
	t->nbytes = (size_t)(end - begin);
	sp->begin = (uint64_t)begin;
	sp->end = (uint64_t)end;
	return 0;
}

static int parse_header(struct hmoe_st_file *f, const char *hdr, size_t hlen)
{
	const char *what = f->path, *parse_end = NULL;
	cJSON *root = cJSON_ParseWithLengthOpts(hdr, hlen, &parse_end, 0);
	const cJSON *e;
	struct span *spans = NULL;
	size_t names_len = 0;
	char *s;
	int n = 0, ret = 0, i;

	if (!root) {
		size_t at = parse_end ? (size_t)(parse_end - hdr) : 0;

		return hmoe_err(HMOE_EINPUT, "%s: malformed JSON header near byte %zu of %zu",
				what, at, hlen);
	}
	/* The header may be padded with spaces after the object, nothing else. */
	for (const char *p = parse_end; p < hdr + hlen; p++)
		if (*p != ' ' && *p != '\n' && *p != '\t' && *p != '\r' && *p != '\0') {
			ret = hmoe_err(HMOE_EINPUT, "%s: junk after the JSON header at byte %zu",
				       what, (size_t)(p - hdr));
			goto out;
		}
	if (!cJSON_IsObject(root)) {
		ret = hmoe_err(HMOE_EINPUT, "%s: JSON header is not an object", what);
		goto out;
	}
	cJSON_ArrayForEach(e, root) {
		if (!strcmp(e->string, "__metadata__")) {
			const cJSON *m;

			if (!cJSON_IsObject(e)) {
				ret = hmoe_err(HMOE_EINPUT, "%s: __metadata__ is not an object", what);
				goto out;
			}
			cJSON_ArrayForEach(m, e)
				if (!cJSON_IsString(m)) {
					ret = hmoe_err(HMOE_EINPUT,
						       "%s: __metadata__.%s is not a string", what,
						       m->string);
					goto out;
				}
			continue;
		}
		n++;
		names_len += strlen(e->string) + 1;
	}
	f->tensors = calloc((size_t)n + 1, sizeof(*f->tensors));
	spans = calloc((size_t)n + 1, sizeof(*spans));
	f->strings = malloc(names_len + 1);
	if (!f->tensors || !spans || !f->strings) {
		ret = hmoe_err(HMOE_ENOMEM, "%s: out of memory for %d tensor entries", what, n);
		goto out;
	}
	s = f->strings;
	i = 0;
	cJSON_ArrayForEach(e, root) {
		struct hmoe_tensor *t = &f->tensors[i];

		if (!strcmp(e->string, "__metadata__"))
			continue;
		ret = parse_entry(what, e, f->data_size, t, &spans[i]);
		if (ret)
			goto out;
		t->name = s;
		s = stpcpy(s, e->string) + 1;
		t->data = f->data + spans[i].begin;
		spans[i].name = t->name;
		i++;
	}
	f->n_tensors = n;

	/* No two tensors may share bytes (empty tensors share nothing): sorted by begin,
	 * each non-empty span must start at or after the furthest end seen so far. */
	qsort(spans, (size_t)n, sizeof(*spans), cmp_span);
	{
		const struct span *far = NULL;

		for (i = 0; i < n; i++) {
			const struct span *sp = &spans[i];

			if (sp->end == sp->begin)
				continue;
			if (far && far->end > sp->begin) {
				ret = hmoe_err(HMOE_EINPUT,
					       "%s: tensor %s: data_offsets [%llu, %llu] overlap "
					       "tensor %s [%llu, %llu]",
					       what, sp->name, (unsigned long long)sp->begin,
					       (unsigned long long)sp->end, far->name,
					       (unsigned long long)far->begin,
					       (unsigned long long)far->end);
				goto out;
			}
			if (!far || sp->end > far->end)
				far = sp;
		}
	}
	qsort(f->tensors, (size_t)n, sizeof(*f->tensors), cmp_tensor_name);
	for (i = 0; i + 1 < n; i++)
		if (!strcmp(f->tensors[i].name, f->tensors[i + 1].name)) {
			ret = hmoe_err(HMOE_EINPUT, "%s: tensor %s appears twice in the header", what,
				       f->tensors[i].name);
			goto out;
		}
out:
	free(spans);
	cJSON_Delete(root);
	return ret;
}

static int st_validate(struct hmoe_st_file *f)
{
	uint64_t hlen = 0;

	if (f->size < 8)
		return hmoe_err(HMOE_EINPUT,
				"%s: %zu bytes, too short for a safetensors file (8-byte header length)",
				f->path, f->size);
	for (int i = 7; i >= 0; i--)
		hlen = hlen << 8 | f->map[i];
	if (hlen > HMOE_ST_MAX_HEADER)
		return hmoe_err(HMOE_EINPUT,
				"%s: header length %llu is absurd (limit %u); not a safetensors file?",
				f->path, (unsigned long long)hlen, HMOE_ST_MAX_HEADER);
	if (hlen > f->size - 8)
		return hmoe_err(HMOE_EINPUT,
				"%s: header length %llu runs past the end of the %zu-byte file "
				"(truncated?)",
				f->path, (unsigned long long)hlen, f->size);
	if (hlen < 2 || f->map[8] != '{')
		return hmoe_err(HMOE_EINPUT, "%s: header does not start with a JSON object", f->path);
	f->data = f->map + 8 + hlen;
	f->data_size = f->size - 8 - (size_t)hlen;
	return parse_header(f, (const char *)f->map + 8, (size_t)hlen);
}

int hmoe_st_open_mem(struct hmoe_st_file **out, const void *buf, size_t size, const char *what)
{
	struct hmoe_st_file *f = calloc(1, sizeof(*f));
	int ret;

	*out = NULL;
	if (!f || !(f->path = strdup(what))) {
		free(f);
		return hmoe_err(HMOE_ENOMEM, "%s: out of memory", what);
	}
	f->map = buf;
	f->size = size;
	ret = st_validate(f);
	if (ret) {
		hmoe_st_close(f);
		return ret;
	}
	*out = f;
	return 0;
}

int hmoe_st_open(struct hmoe_st_file **out, const char *path)
{
	struct hmoe_st_file *f;
	struct stat st;
	void *map = NULL;
	int fd, ret;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return hmoe_err(errno == ENOENT || errno == EACCES ? HMOE_EINPUT : HMOE_EIO,
				"%s: cannot open: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		ret = hmoe_err(HMOE_EIO, "%s: stat failed: %s", path, strerror(errno));
		close(fd);
		return ret;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return hmoe_err(HMOE_EINPUT, "%s: not a regular file", path);
	}
	if (st.st_size > 0) {
		map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (map == MAP_FAILED) {
			ret = hmoe_err(HMOE_EIO, "%s: mmap of %lld bytes failed: %s", path,
				       (long long)st.st_size, strerror(errno));
			close(fd);
			return ret;
		}
	}
	close(fd); /* the mapping keeps the file */
	f = calloc(1, sizeof(*f));
	if (!f || !(f->path = strdup(path))) {
		free(f);
		if (map)
			munmap(map, (size_t)st.st_size);
		return hmoe_err(HMOE_ENOMEM, "%s: out of memory", path);
	}
	f->map = map;
	f->size = (size_t)st.st_size;
	f->owns_map = map != NULL;
	ret = st_validate(f);
	if (ret) {
		hmoe_st_close(f);
		return ret;
	}
	*out = f;
	return 0;
}

void hmoe_st_close(struct hmoe_st_file *f)
{
	if (!f)
		return;
	if (f->owns_map && f->map)
		munmap((void *)f->map, f->size);
	free(f->tensors);
	free(f->strings);
	free(f->path);
	free(f);
}

const struct hmoe_tensor *hmoe_st_find(const struct hmoe_st_file *f, const char *name)
{
	struct hmoe_tensor key = { .name = name };

	if (!f || !f->n_tensors)
		return NULL;
	return bsearch(&key, f->tensors, (size_t)f->n_tensors, sizeof(key), cmp_tensor_name);
}

/* ---------------------------------------------------------------------------------- */
/* writing */

static int cmp_write_order(const void *a, const void *b)
{
	const struct hmoe_tensor *x = *(const struct hmoe_tensor *const *)a;
	const struct hmoe_tensor *y = *(const struct hmoe_tensor *const *)b;
	size_t sx = hmoe_dtype_size(x->dtype), sy = hmoe_dtype_size(y->dtype);

	if (sx != sy)
		return sx > sy ? -1 : 1;
	return strcmp(x->name, y->name);
}

static void json_string(FILE *fp, const char *s)
{
	fputc('"', fp);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(fp, "\\%c", c);
		else if (c < 0x20)
			fprintf(fp, "\\u%04x", c);
		else
			fputc(c, fp);
	}
	fputc('"', fp);
}

int hmoe_st_write(const char *path, const struct hmoe_tensor *tensors, int n,
		  const char *metadata_json)
{
	const struct hmoe_tensor **order = calloc((size_t)n + 1, sizeof(*order));
	char *hdr = NULL, *tmp = NULL;
	size_t hdr_len = 0;
	FILE *mem = NULL, *fp = NULL;
	uint64_t off = 0, hlen;
	uint8_t len8[8];
	int ret = 0, i;

	if (!order)
		return hmoe_err(HMOE_ENOMEM, "%s: out of memory", path);
	for (i = 0; i < n; i++) {
		const struct hmoe_tensor *t = &tensors[i];
		int64_t numel = hmoe_tensor_numel(t);

		if ((unsigned)t->dtype >= HMOE_DT_COUNT || t->ndim < 0 || t->ndim > HMOE_MAX_DIMS ||
		    numel < 0 || (uint64_t)numel * hmoe_dtype_size(t->dtype) != t->nbytes ||
		    (t->nbytes && !t->data)) {
			ret = hmoe_err(HMOE_EINTERNAL, "%s: tensor %s: bad descriptor (dtype, shape "
				       "or %zu bytes do not agree)", path, t->name, t->nbytes);
			goto out;
		}
		order[i] = t;
	}
	qsort(order, (size_t)n, sizeof(*order), cmp_write_order);
	for (i = 0; i + 1 < n; i++)
		if (!strcmp(order[i]->name, order[i + 1]->name)) {
			ret = hmoe_err(HMOE_EINTERNAL, "%s: tensor %s given twice", path,
				       order[i]->name);
			goto out;
		}

	mem = open_memstream(&hdr, &hdr_len);
	if (!mem) {
		ret = hmoe_err(HMOE_ENOMEM, "%s: out of memory for the header", path);
		goto out;
	}
	fputc('{', mem);
	if (metadata_json)
		fprintf(mem, "\"__metadata__\":%s", metadata_json);
	for (i = 0; i < n; i++) {
		const struct hmoe_tensor *t = order[i];

		if (i || metadata_json)
			fputc(',', mem);
		json_string(mem, t->name);
		fprintf(mem, ":{\"dtype\":\"%s\",\"shape\":[", hmoe_dtype_name(t->dtype));
		for (int d = 0; d < t->ndim; d++)
			fprintf(mem, "%s%lld", d ? "," : "", (long long)t->shape[d]);
		fprintf(mem, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
			(unsigned long long)(off + t->nbytes));
		off += t->nbytes;
	}
	fputc('}', mem);
	/* Pad to 8 bytes so the data area, and with the size-descending order every tensor,
	 * is aligned to its element size. */
	while ((ftell(mem) + 8) % 8)
		fputc(' ', mem);
	if (fclose(mem)) {
		mem = NULL;
		ret = hmoe_err(HMOE_ENOMEM, "%s: out of memory for the header", path);
		goto out;
	}
	mem = NULL;
	hlen = hdr_len;
	for (i = 0; i < 8; i++)
		len8[i] = (uint8_t)(hlen >> (8 * i));

	/* Write beside the target and rename, so a reader never sees half a file. */
	if (asprintf(&tmp, "%s.tmp", path) < 0) {
		tmp = NULL;
		ret = hmoe_err(HMOE_ENOMEM, "%s: out of memory", path);
		goto out;
	}
	fp = fopen(tmp, "wb");
	if (!fp) {
		ret = hmoe_err(HMOE_EIO, "%s: cannot create: %s", tmp, strerror(errno));
		goto out;
	}
	if (fwrite(len8, 1, 8, fp) != 8 || fwrite(hdr, 1, hdr_len, fp) != hdr_len)
		goto err_write;
	for (i = 0; i < n; i++)
		if (order[i]->nbytes &&
		    fwrite(order[i]->data, 1, order[i]->nbytes, fp) != order[i]->nbytes)
			goto err_write;
	if (fclose(fp)) {
		fp = NULL;
		goto err_write;
	}
	fp = NULL;
	if (rename(tmp, path)) {
		ret = hmoe_err(HMOE_EIO, "%s: rename from %s failed: %s", path, tmp,
			       strerror(errno));
		unlink(tmp);
	}
	goto out;
err_write:
	ret = hmoe_err(HMOE_EIO, "%s: write failed: %s", tmp, strerror(errno));
	if (fp)
		fclose(fp);
	fp = NULL;
	unlink(tmp);
out:
	if (mem)
		fclose(mem);
	free(hdr);
	free(tmp);
	free(order);
	return ret;
}
