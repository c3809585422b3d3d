/* tb_hmoe_ffn: C-simulation testbench of the fixed-point expert kernel, in the Vitis
 * style: golden vectors from an independent reference (hls/tb/ffn_ref.py, Python
 * integers), the kernel run on them, every output compared exactly, PASSED / FAILED and
 * the exit status (0 passed). Run by `make hls-csim` with gcc and by Vitis HLS csim
 * (hls/vitis/run_hls.tcl) with the same arguments:
 *
 *     tb_hmoe_ffn CASE.bin...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmoe_ffn.h"

#define CASE_MAGIC 0x46465848

static int32_t le32(const uint8_t *p)
{
	return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
			 (uint32_t)p[3] << 24);
}

static uint8_t *read_file(const char *path, long *size)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (*size = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)*size);
		if (buf && fread(buf, 1, (size_t)*size, f) != (size_t)*size) {
			free(buf);
			buf = NULL;
		}
	}
	fclose(f);
	return buf;
}

/* Returns 0 passed, 1 failed, 2 unreadable case. */
static int run_case(const char *path, struct hmoe_ffn_scratch *s)
{
	long size = 0;
	uint8_t *buf = read_file(path, &size), *p;
	int32_t hdr[7], *xs, *y_gold, *y;
	int8_t *xq;
	struct hmoe_fxp_line *pack;
	long need;
	int bad = 0, first = -1, ret;

	if (!buf || size < 28) {
		printf("%s: cannot read a case file\n", path);
		free(buf);
		return 2;
	}
	for (int i = 0; i < 7; i++)
		hdr[i] = le32(buf + 4 * i);
	int mode = hdr[2], n_tokens = hdr[3], dim = hdr[4], inter = hdr[5], pack_bytes = hdr[6];
	int dg = hmoe_fxp_groups(dim), planes = hmoe_fxp_mode_planes(mode);
	long xq_bytes = (long)n_tokens * planes * dg * HMOE_FXP_GROUP;

	need = 28 + (long)pack_bytes + xq_bytes + (long)n_tokens * dg * 4 +
	       (long)n_tokens * dim * 4;
	if (hdr[0] != CASE_MAGIC || hdr[1] != HMOE_FXP_CONTRACT_VERSION || n_tokens < 1 ||
	    n_tokens > HMOE_FXP_TILE || dim < 1 || dim > HMOE_FXP_MAX_DIM || inter < 1 ||
	    inter > HMOE_FXP_MAX_INTER || !hmoe_fxp_mode_valid(mode) ||
	    pack_bytes != hmoe_fxp_expert_lines(mode, dim, inter) * HMOE_FXP_LINE_BYTES ||
	    size != need) {
		printf("%s: not a case file of contract version %d (bad header or size)\n", path,
		       HMOE_FXP_CONTRACT_VERSION);
		free(buf);
		return 2;
	}
	pack = aligned_alloc(HMOE_FXP_LINE_BYTES, (size_t)pack_bytes);
	xq = malloc((size_t)xq_bytes);
	xs = malloc(sizeof(*xs) * n_tokens * dg);
	y_gold = malloc(sizeof(*y_gold) * n_tokens * dim);
	y = malloc(sizeof(*y) * n_tokens * dim);
	if (!pack || !xq || !xs || !y_gold || !y) {
		printf("%s: out of memory\n", path);
		exit(2);
	}
	p = buf + 28;
	memcpy(pack, p, (size_t)pack_bytes);
	p += pack_bytes;
	memcpy(xq, p, (size_t)xq_bytes);
	p += xq_bytes;
	for (int i = 0; i < n_tokens * dg; i++, p += 4)
		xs[i] = le32(p);
	for (int i = 0; i < n_tokens * dim; i++, p += 4)
		y_gold[i] = le32(p);

	ret = hmoe_ffn(pack, xq, xs, y, s, mode, n_tokens, dim, inter);
	for (int i = 0; !ret && i < n_tokens * dim; i++)
		if (y[i] != y_gold[i] && bad++ == 0)
			first = i;
	if (ret || bad) {
		if (ret)
			printf("%s: FAILED, hmoe_ffn returned %d\n", path, ret);
		else
			printf("%s: FAILED, %d of %d outputs differ; first y[%d][%d] = %d, golden %d\n",
			       path, bad, n_tokens * dim, first / dim, first % dim, y[first],
			       y_gold[first]);
	} else {
		printf("%s: PASSED (format %d, %d activation plane%s, %d tokens, dim %d, "
		       "inter %d)\n", path, hmoe_fxp_mode_format(mode), planes,
		       planes > 1 ? "s" : "", n_tokens, dim, inter);
	}
	free(buf);
	free(pack);
	free(xq);
	free(xs);
	free(y_gold);
	free(y);
	return ret || bad;
}

int main(int argc, char **argv)
{
	struct hmoe_ffn_scratch *s = malloc(sizeof(*s));
	int failed = 0;

	if (argc < 2 || !s) {
		fprintf(stderr, "usage: tb_hmoe_ffn CASE.bin...\n");
		return 2;
	}
	for (int i = 1; i < argc; i++)
		failed |= run_case(argv[i], s);
	free(s);
	printf("%s\n", failed ? "FAILED" : "PASSED");
	return failed ? 1 : 0;
}
