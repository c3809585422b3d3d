/* test_kv: the latent KV cache keeps every row through growth, honours its length limit
 * with a clean error, and rewinds. A user would notice lost rows as decode drifting after
 * the cache grows past its first allocation. */
#include <stdio.h>
#include <stdlib.h>

#include "hmoe_err.h"
#include "hmoe_kv.h"

#include "hmoe_test.h"

static float mark(int layer, int pos, int i)
{
	return (float)(layer * 100000 + pos * 100 + i);
}

int main(void)
{
	struct hmoe_config c = { 0 };
	struct hmoe_kv *kv, *capped;
	int bad = 0, ret;

	c.num_hidden_layers = 3;
	c.kv_lora_rank = 20;
	c.qk_rope_head_dim = 8;
	if (hmoe_kv_create(&kv, &c, 0)) {
		fprintf(stderr, "%s\n", hmoe_last_error());
		return 1;
	}
	CHECK(kv->width == 28 && kv->len == 0, "new cache: width %d len %d", kv->width, kv->len);
	/* fill position by position, growing many times */
	for (int p = 0; p < 300; p++) {
		if ((ret = hmoe_kv_reserve(kv, p + 1))) {
			fprintf(stderr, "%s\n", hmoe_last_error());
			return 1;
		}
		for (int l = 0; l < 3; l++)
			for (int i = 0; i < kv->width; i++)
				hmoe_kv_row(kv, l, p)[i] = mark(l, p, i);
		kv->len = p + 1;
	}
	for (int l = 0; l < 3; l++)
		for (int p = 0; p < 300; p++)
			for (int i = 0; i < kv->width; i++)
				bad += hmoe_kv_row(kv, l, p)[i] != mark(l, p, i);
	CHECK(!bad, "%d cached values lost while growing to 300 positions", bad);
	CHECK(kv->cap >= 300 && hmoe_kv_bytes(kv) == (size_t)3 * kv->cap * 28 * sizeof(float),
	      "capacity %d, bytes %zu", kv->cap, hmoe_kv_bytes(kv));
	hmoe_kv_truncate(kv, 120);
	CHECK(kv->len == 120, "truncate to 120: len %d", kv->len);
	hmoe_kv_truncate(kv, 200);
	CHECK(kv->len == 120, "truncate cannot extend: len %d", kv->len);
	hmoe_kv_free(kv);

	if (hmoe_kv_create(&capped, &c, 50))
		return 1;
	CHECK(hmoe_kv_reserve(capped, 50) == 0, "reserve up to the limit failed");
	ret = hmoe_kv_reserve(capped, 51);
	CHECK(ret == -HMOE_EINPUT, "reserve past the limit: ret %d (%s)", ret, hmoe_last_error());
	CHECK(capped->cap == 50, "capacity %d past the limit 50", capped->cap);
	hmoe_kv_free(capped);

	c.kv_lora_rank = 0;
	ret = hmoe_kv_create(&kv, &c, 0);
	CHECK(ret == -HMOE_EINPUT, "cache for a config without latent: ret %d", ret);
	if (failures) {
		printf("%d checks failed\n", failures);
		return 1;
	}
	printf("all KV-cache checks passed\n");
	return 0;
}
