/* test_st: the safetensors reader and writer.
 *
 * Round trip (writer -> reader: names, dtypes, shapes, bytes, alignment), then one
 * hand-made header per corruption class (each must fail with HMOE_EINPUT and a message
 * naming the tensor or the problem), then fuzzing: every truncation of a small file and
 * thousands of random byte flips must give either a valid file or a clean error, never a
 * crash (run under ASan/UBSan by `make SANITIZE=1 test`).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hmoe_err.h"
#include "hmoe_st.h"

#include "hmoe_test.h"

static char tmpdir[] = "/tmp/test_st.XXXXXX";

/* A file image: 8-byte length, the header text, then data_len bytes of 0x5a. */
static uint8_t *image(const char *header, size_t data_len, size_t *size)
{
	size_t hl = strlen(header);
	uint8_t *b = malloc(8 + hl + data_len + 1);

	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
	memcpy(b + 8, header, hl);
	memset(b + 8 + hl, 0x5a, data_len);
	*size = 8 + hl + data_len;
	return b;
}

/* Expects header + data_len bytes to be rejected with a message containing `want`. */
static void expect_bad(const char *header, size_t data_len, const char *want)
{
	struct hmoe_st_file *f = NULL;
	size_t size;
	uint8_t *b = image(header, data_len, &size);
	int ret = hmoe_st_open_mem(&f, b, size, "bad.safetensors");

	CHECK(ret == -HMOE_EINPUT, "header %s: ret %d, want EINPUT", header, ret);
	CHECK(f == NULL, "no file on error");
	if (ret)
		CHECK(strstr(hmoe_last_error(), want) && strstr(hmoe_last_error(), "bad.safetensors"),
		      "header %s: message '%s' should name '%s' and the file", header,
		      hmoe_last_error(), want);
	hmoe_st_close(f);
	free(b);
}

static void test_roundtrip(void)
{
	uint8_t codes[3 * 5];
	float scale[2] = { 0.5f, 0.25f };
	uint16_t bf[7] = { 0x3f80, 0xbf80, 0x4000, 0, 1, 2, 3 };
	int64_t i64 = -42;
	struct hmoe_tensor ts[5] = {
		{ .name = "b.weight", .dtype = HMOE_DT_F8E4M3, .ndim = 2, .shape = { 3, 5 },
		  .data = codes, .nbytes = sizeof(codes) },
		{ .name = "b.weight_scale_inv", .dtype = HMOE_DT_F32, .ndim = 2, .shape = { 1, 2 },
		  .data = scale, .nbytes = sizeof(scale) },
		{ .name = "a.norm", .dtype = HMOE_DT_BF16, .ndim = 1, .shape = { 7 }, .data = bf,
		  .nbytes = sizeof(bf) },
		{ .name = "scalar", .dtype = HMOE_DT_I64, .ndim = 0, .data = &i64, .nbytes = 8 },
		{ .name = "empty", .dtype = HMOE_DT_F32, .ndim = 2, .shape = { 0, 4 }, .data = NULL,
		  .nbytes = 0 },
	};
	char path[256];
	struct hmoe_st_file *f;
	const struct hmoe_tensor *t;

	for (int i = 0; i < (int)sizeof(codes); i++)
		codes[i] = (uint8_t)(i * 17);
	snprintf(path, sizeof(path), "%s/rt.safetensors", tmpdir);
	CHECK(hmoe_st_write(path, ts, 5, "{\"format\":\"pt\"}") == 0, "write: %s",
	      hmoe_last_error());
	CHECK(hmoe_st_open(&f, path) == 0, "open: %s", hmoe_last_error());
	if (!f)
		return;
	CHECK(f->n_tensors == 5, "%d tensors", f->n_tensors);
	for (int i = 0; i < 5; i++) {
		t = hmoe_st_find(f, ts[i].name);
		CHECK(t != NULL, "find %s", ts[i].name);
		if (!t)
			continue;
		CHECK(t->dtype == ts[i].dtype && t->ndim == ts[i].ndim &&
		      t->shape[0] == ts[i].shape[0] && t->shape[1] == ts[i].shape[1] &&
		      t->nbytes == ts[i].nbytes, "%s: descriptor differs", ts[i].name);
		CHECK(!t->nbytes || !memcmp(t->data, ts[i].data, t->nbytes), "%s: bytes differ",
		      ts[i].name);
		CHECK((uintptr_t)t->data % hmoe_dtype_size(t->dtype) == 0, "%s: unaligned",
		      ts[i].name);
	}
	CHECK(hmoe_st_find(f, "nope") == NULL, "absent name found");
	CHECK(hmoe_tensor_numel(hmoe_st_find(f, "scalar")) == 1, "scalar numel");
	hmoe_st_close(f);

	/* Writer refuses duplicates and inconsistent descriptors. */
	ts[1].name = "b.weight";
	CHECK(hmoe_st_write(path, ts, 2, NULL) < 0, "duplicate names written");
	ts[1].name = "b.weight_scale_inv";
	ts[1].nbytes = 4;
	CHECK(hmoe_st_write(path, ts, 2, NULL) < 0, "bad nbytes written");

	/* Missing file and non-regular file: EINPUT naming the path. */
	CHECK(hmoe_st_open(&f, "/nonexistent/x.safetensors") == -HMOE_EINPUT &&
	      strstr(hmoe_last_error(), "/nonexistent/x.safetensors"), "missing file: %s",
	      hmoe_last_error());
	CHECK(hmoe_st_open(&f, tmpdir) == -HMOE_EINPUT, "folder opened as a file");
}

static void test_corruptions(void)
{
	struct hmoe_st_file *f = NULL;
	uint8_t small[5] = { 1, 0, 0, 0, 0 };
	size_t size;
	uint8_t *b;

	/* Shorter than the length field; length past EOF; absurd length. */
	CHECK(hmoe_st_open_mem(&f, small, sizeof(small), "bad.safetensors") == -HMOE_EINPUT &&
	      strstr(hmoe_last_error(), "too short"), "5-byte file: %s", hmoe_last_error());
	b = image("{}", 0, &size);
	b[0] = 200;
	CHECK(hmoe_st_open_mem(&f, b, size, "bad.safetensors") == -HMOE_EINPUT &&
	      strstr(hmoe_last_error(), "past the end"), "length past EOF: %s", hmoe_last_error());
	b[7] = 0x7f;
	CHECK(hmoe_st_open_mem(&f, b, size, "bad.safetensors") == -HMOE_EINPUT &&
	      strstr(hmoe_last_error(), "absurd"), "absurd length: %s", hmoe_last_error());
	free(b);

	expect_bad("[1, 2]", 0, "does not start with a JSON object");
	expect_bad("{\"a\": {\"dtype\": \"F32\"", 0, "malformed JSON");
	expect_bad("{\"a\": 1}", 0, "tensor a: header entry is not an object");
	expect_bad("{\"a\": {\"dtype\": \"F33\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
		   "tensor a: unknown dtype \"F33\"");
	expect_bad("{\"a\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, "tensor a: missing");
	expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", 4,
		   "tensor a: shape[0]");
	expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}", 4,
		   "tensor a: shape[0]");
	expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1], \"data_offsets\": [0, 4]}}",
		   4, "tensor a: 5 dimensions");
	expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}", 4,
		   "tensor a: \"data_offsets\"");
	expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 4,
		   "tensor a: data_offsets [0, 8] past the end");
	expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 0]}}", 8,
		   "tensor a: data_offsets [8, 0] run backwards");
	expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 4]}}", 8,
		   "tensor a: 4 bytes in data_offsets but shape [2] of F32 needs 8");
	expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], "
		   "\"data_offsets\": [0, 4]}}", 8, "tensor a:");
	expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
		   " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", 12,
		   "overlap");
	/* A big tensor overlapping one that starts after a smaller one inside it. */
	expect_bad("{\"a\": {\"dtype\": \"U8\", \"shape\": [10], \"data_offsets\": [0, 10]},"
		   " \"b\": {\"dtype\": \"U8\", \"shape\": [0], \"data_offsets\": [2, 2]},"
		   " \"c\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [5, 7]}}", 10,
		   "tensor c: data_offsets [5, 7] overlap tensor a");
	expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
		   " \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8,
		   "tensor a appears twice");
	expect_bad("{\"__metadata__\": {\"format\": 3}}", 0, "__metadata__.format");
	expect_bad("{\"__metadata__\": [1]}", 0, "__metadata__ is not an object");
	expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}} x", 4,
		   "junk after the JSON header");

	/* Valid: padding spaces after the object, metadata, empty tensor list. */
	b = image("{\"__metadata__\": {\"format\": \"pt\"}}      ", 0, &size);
	CHECK(hmoe_st_open_mem(&f, b, size, "ok.safetensors") == 0, "padded header: %s",
	      hmoe_last_error());
	CHECK(f && f->n_tensors == 0, "no tensors");
	hmoe_st_close(f);
	free(b);
}

/* Every prefix of a real file, and random byte flips: a clean error or a valid file. */
static void test_fuzz(void)
{
	struct hmoe_tensor ts[3];
	uint8_t w[64 * 3];
	float s[4];
	uint16_t n[64];
	char path[256];
	FILE *fp;
	uint8_t *buf, *mut;
	long size;
	uint64_t rng = 12345;
	int ok = 0, bad = 0;

	for (int i = 0; i < (int)sizeof(w); i++)
		w[i] = (uint8_t)i;
	memset(s, 0, sizeof(s));
	memset(n, 0, sizeof(n));
	ts[0] = (struct hmoe_tensor){ .name = "model.layers.0.mlp.up_proj.weight",
				      .dtype = HMOE_DT_F8E4M3, .ndim = 2, .shape = { 3, 64 },
				      .data = w, .nbytes = sizeof(w) };
	ts[1] = (struct hmoe_tensor){ .name = "model.layers.0.mlp.up_proj.weight_scale_inv",
				      .dtype = HMOE_DT_F32, .ndim = 2, .shape = { 2, 2 },
				      .data = s, .nbytes = sizeof(s) };
	ts[2] = (struct hmoe_tensor){ .name = "model.norm.weight", .dtype = HMOE_DT_BF16,
				      .ndim = 1, .shape = { 64 }, .data = n, .nbytes = sizeof(n) };
	snprintf(path, sizeof(path), "%s/fuzz.safetensors", tmpdir);
	CHECK(hmoe_st_write(path, ts, 3, "{\"format\":\"pt\"}") == 0, "write: %s",
	      hmoe_last_error());
	fp = fopen(path, "rb");
	if (!fp) {
		CHECK(0, "reopen %s", path);
		return;
	}
	fseek(fp, 0, SEEK_END);
	size = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	buf = malloc((size_t)size);
	mut = malloc((size_t)size);
	CHECK(fread(buf, 1, (size_t)size, fp) == (size_t)size, "read back");
	fclose(fp);

	for (long cut = 0; cut < size; cut++) {
		struct hmoe_st_file *f = NULL;
		int ret;

		memcpy(mut, buf, (size_t)cut);
		ret = hmoe_st_open_mem(&f, mut, (size_t)cut, "cut.safetensors");
		CHECK(ret == -HMOE_EINPUT, "truncated to %ld of %ld bytes: ret %d", cut, size, ret);
		hmoe_st_close(f);
	}
	for (int iter = 0; iter < 20000; iter++) {
		struct hmoe_st_file *f = NULL;
		int flips = 1 + (int)(rng % 4), ret;

		memcpy(mut, buf, (size_t)size);
		for (int k = 0; k < flips; k++) {
			rng = rng * 6364136223846793005ull + 1442695040888963407ull;
			/* Mostly the header: that is where parsing happens. */
			long at = (long)((rng >> 33) % (uint64_t)(k ? size : size / 2 + 1));

			mut[at] ^= (uint8_t)(1u << ((rng >> 20) & 7));
		}
		ret = hmoe_st_open_mem(&f, mut, (size_t)size, "flip.safetensors");
		CHECK(ret == 0 || ret == -HMOE_EINPUT, "flip %d: ret %d", iter, ret);
		if (ret == 0) {
			/* Whatever parsed must lie inside the buffer. */
			for (int i = 0; i < f->n_tensors; i++) {
				const struct hmoe_tensor *t = &f->tensors[i];

				CHECK((const uint8_t *)t->data >= mut &&
				      (const uint8_t *)t->data + t->nbytes <= mut + size,
				      "flip %d: tensor %s outside the file", iter, t->name);
			}
			ok++;
		} else {
			CHECK(strstr(hmoe_last_error(), "flip.safetensors") != NULL,
			      "error does not name the file: %s", hmoe_last_error());
			bad++;
		}
		hmoe_st_close(f);
	}
	printf("fuzz: %ld truncations rejected; flips: %d still valid, %d rejected\n", size, ok,
	       bad);
	CHECK(bad > 1000, "flips should mostly break the header (%d rejected)", bad);
	free(buf);
	free(mut);
}

int main(void)
{
	char cmd[300];

	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_roundtrip();
	test_corruptions();
	test_fuzz();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd))
		fprintf(stderr, "warning: could not remove %s\n", tmpdir);
	if (failures) {
		fprintf(stderr, "%d checks failed\n", failures);
		return 1;
	}
	printf("test_st: all checks passed\n");
	return 0;
}
