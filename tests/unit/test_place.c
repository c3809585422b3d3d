/* test_place: expert placement.
 *
 * What a user would notice if broken:
 *  - a card is given more experts than its memory holds (the upload fails or evicts);
 *  - with too little card memory, experts vanish instead of going to the CPU tier;
 *  - hot experts are not the ones kept on cards, or are not replicated when room is left;
 *  - the same inputs give a different placement (runs are not reproducible);
 *  - a saved placement does not load back the same, or a bad file crashes or is
 *    accepted instead of one error naming the file and line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hmoe_err.h"
#include "hmoe_place.h"

#include "hmoe_test.h"

#define L 4
#define E 8
#define EB 1000

static const unsigned char is_moe[L] = { 0, 1, 1, 1 };

static struct hmoe_place *build(int n_dev, int64_t cap, const int64_t *counts, int max_rep)
{
	struct hmoe_place_device devs[4];
	struct hmoe_place_opts o = { .n_layers = L, .n_experts = E, .is_moe = is_moe,
				     .expert_bytes = EB, .n_devices = n_dev, .devices = devs,
				     .counts = counts, .max_replicas = max_rep };
	struct hmoe_place *p = NULL;

	for (int d = 0; d < n_dev; d++) {
		snprintf(devs[d].name, sizeof(devs[d].name), "card%d", d);
		devs[d].capacity_bytes = cap;
	}
	if (hmoe_place_build(&p, &o)) {
		fprintf(stderr, "hmoe_place_build: %s\n", hmoe_last_error());
		exit(1);
	}
	return p;
}

/* Recomputes each device's bytes from the assignment. */
static void check_capacity(const struct hmoe_place *p, const char *what)
{
	int64_t used[HMOE_PLACE_MAX_DEVICES] = { 0 };

	for (int l = 0; l < p->n_layers; l++)
		for (int e = 0; e < p->n_experts && p->is_moe[l]; e++) {
			const int8_t *devs;
			int n = hmoe_place_copies(p, l, e, &devs);

			for (int c = 0; c < n; c++) {
				used[devs[c]] += p->expert_bytes;
				for (int c2 = 0; c2 < c; c2++)
					CHECK(devs[c2] != devs[c], "%s: duplicate copy", what);
			}
		}
	for (int d = 0; d < p->n_devices; d++)
		CHECK(used[d] <= p->devices[d].capacity_bytes, "%s: device %d holds %lld > %lld",
		      what, d, (long long)used[d], (long long)p->devices[d].capacity_bytes);
}

static void test_capacity_and_cpu_tier(void)
{
	struct hmoe_place *p = build(2, 5 * EB + 999, NULL, 2);
	int n_cpu, n_rep, n_placed;

	check_capacity(p, "no stats");
	hmoe_place_summary(p, &n_cpu, &n_rep, &n_placed);
	CHECK(n_placed == 10 && n_cpu == 3 * E - 10 && n_rep == 0,
	      "2 cards x 5 experts: 10 placed, 14 on the CPU tier, no replicas without stats "
	      "(got %d placed, %d cpu, %d replicated)", n_placed, n_cpu, n_rep);
	CHECK(p->used_bytes[0] == 5 * EB && p->used_bytes[1] == 5 * EB, "balanced fill");
	hmoe_place_free(p);

	/* everything fits: nothing on the CPU tier */
	p = build(3, 100 * EB, NULL, 1);
	hmoe_place_summary(p, &n_cpu, &n_rep, &n_placed);
	CHECK(n_cpu == 0 && n_placed == 3 * E, "room for all: no CPU tier (%d)", n_cpu);
	for (int l = 1; l < L; l++) {
		int per[3] = { 0 };

		for (int e = 0; e < E; e++) {
			const int8_t *devs;

			if (hmoe_place_copies(p, l, e, &devs) == 1)
				per[devs[0]]++;
		}
		/* layers run one after another: each must be spread over the cards */
		CHECK(per[0] >= 2 && per[0] <= 3 && per[1] >= 2 && per[1] <= 3 && per[2] >= 2 &&
		      per[2] <= 3, "layer %d spread evenly over 3 cards (%d %d %d)", l, per[0],
		      per[1], per[2]);
	}
	hmoe_place_free(p);

	/* no devices: all on the CPU tier */
	p = build(0, 0, NULL, 1);
	hmoe_place_summary(p, &n_cpu, &n_rep, &n_placed);
	CHECK(n_cpu == 3 * E && n_placed == 0, "no cards: all experts on the CPU tier");
	hmoe_place_free(p);
}

static void test_hot_experts(void)
{
	int64_t counts[L * E];
	struct hmoe_place *p, *q;
	const int8_t *devs;
	int n_cpu, n_rep, n_placed;

	for (int l = 0; l < L; l++)
		for (int e = 0; e < E; e++)
			counts[l * E + e] = 10 + (l * 7 + e * 3) % 5;
	counts[1 * E + 6] = 400;  /* hot */
	counts[3 * E + 2] = 300;  /* hot */
	counts[2 * E + 7] = 0;    /* cold */

	/* tight: 2 cards x 4 experts; the hottest must be on cards, the cold on the CPU */
	p = build(2, 4 * EB, counts, 2);
	check_capacity(p, "tight");
	CHECK(hmoe_place_copies(p, 1, 6, &devs) >= 1, "hottest expert on a card");
	CHECK(hmoe_place_copies(p, 3, 2, &devs) >= 1, "second hottest on a card");
	CHECK(hmoe_place_copies(p, 2, 7, &devs) == 0, "cold expert on the CPU tier");
	hmoe_place_free(p);

	/* room to spare: the two hot experts get a second copy on the other card */
	p = build(2, 14 * EB, counts, 2);
	check_capacity(p, "roomy");
	hmoe_place_summary(p, &n_cpu, &n_rep, &n_placed);
	CHECK(hmoe_place_copies(p, 1, 6, &devs) == 2 && devs[0] != devs[1],
	      "hot expert replicated on both cards");
	CHECK(hmoe_place_copies(p, 3, 2, &devs) == 2, "second hot expert replicated");
	CHECK(n_rep == 2, "only the hot experts are replicated (%d)", n_rep);
	CHECK(n_placed == 24 - n_cpu && n_placed + n_rep <= 28,
	      "replicas only use spare room (%d placed, %d cpu)", n_placed, n_cpu);

	/* deterministic */
	q = build(2, 14 * EB, counts, 2);
	CHECK(hmoe_place_equal(p, q), "same inputs, same placement");
	hmoe_place_free(q);
	hmoe_place_free(p);
}

static char tmpdir[64];

static const char *write_file(const char *name, const char *text)
{
	static char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	if (!f) {
		perror(path);
		exit(1);
	}
	fputs(text, f);
	fclose(f);
	return path;
}

static void test_round_trip(void)
{
	int64_t counts[L * E];
	struct hmoe_place *p, *q = NULL;
	char path[128];
	int ret;

	for (int i = 0; i < L * E; i++)
		counts[i] = (i * 37) % 11;
	counts[9] = 100;
	p = build(3, 7 * EB, counts, 3);
	snprintf(path, sizeof(path), "%s/place.txt", tmpdir);
	ret = hmoe_place_save(p, path);
	CHECK(ret == 0, "save: %s", hmoe_last_error());
	ret = hmoe_place_load(&q, path);
	CHECK(ret == 0, "load: %s", hmoe_last_error());
	if (!ret) {
		CHECK(hmoe_place_equal(p, q), "round trip gives the same placement");
		CHECK(hmoe_place_check(q, L, E, is_moe, EB, path) == 0, "fits its model: %s",
		      hmoe_last_error());
		ret = hmoe_place_check(q, L, E, is_moe, EB * 2, path);
		CHECK(ret == -HMOE_EINPUT && strstr(hmoe_last_error(), "expert_bytes"),
		      "a different expert size is refused");
		{
			const unsigned char other[L] = { 0, 0, 1, 1 };

			ret = hmoe_place_check(q, L, E, other, EB, path);
			CHECK(ret == -HMOE_EINPUT && strstr(hmoe_last_error(), "layer 1"),
			      "different MoE layers refused: %s", hmoe_last_error());
		}
		hmoe_place_free(q);
	}
	hmoe_place_free(p);
}

static void expect_bad(const char *name, const char *text, const char *needle)
{
	struct hmoe_place *p = NULL;
	const char *path = write_file(name, text);
	int ret = hmoe_place_load(&p, path);

	CHECK(ret == -HMOE_EINPUT && strstr(hmoe_last_error(), needle) &&
	      strstr(hmoe_last_error(), name),
	      "%s: want an input error naming the file and '%s', got %d '%s'", name, needle,
	      ret, hmoe_last_error());
	hmoe_place_free(p);
}

#define HDR "hmoe-place 1\nlayers 2 experts 3 expert_bytes 10\ndevice card0 20\ndevice c1 30\n"

static void test_bad_files(void)
{
	struct hmoe_place *p = NULL;
	int ret;

	ret = hmoe_place_load(&p, "/nonexistent/place.txt");
	CHECK(ret == -HMOE_EINPUT && strstr(hmoe_last_error(), "/nonexistent/place.txt"),
	      "missing file named");
	{
		const char *ok = write_file("ok.txt", "# comment\n" HDR "layer 1 0 cpu 1,0\n");

		ret = hmoe_place_load(&p, ok);
		CHECK(ret == 0, "a good file loads: %s", hmoe_last_error());
		if (!ret) {
			const int8_t *devs;

			CHECK(hmoe_place_copies(p, 1, 2, &devs) == 2 && devs[0] == 1 && devs[1] == 0,
			      "replica order kept");
			CHECK(p->is_moe[1] && !p->is_moe[0], "layer lines define the MoE layers");
		}
		hmoe_place_free(p);
	}
	expect_bad("empty.txt", "", "line 1");
	expect_bad("header.txt", "hmoe-placement 1\n", "line 1: expected the header");
	expect_bad("version.txt", "hmoe-place 2\n", "version 2");
	expect_bad("dims.txt", "hmoe-place 1\nlayers 2 experts x expert_bytes 10\n", "line 2");
	expect_bad("devidx.txt", HDR "layer 1 0 2 cpu\n", "device indices in [0, 2)");
	expect_bad("dup.txt", HDR "layer 1 0,0 1 cpu\n", "device 0 twice");
	expect_bad("short.txt", HDR "layer 1 0 1\n", "2 expert entries, expected 3");
	expect_bad("long.txt", HDR "layer 1 0 1 cpu 1\n", "more than 3 expert entries");
	expect_bad("layer.txt", HDR "layer 2 0 1 cpu\n", "layer index must be in [0, 2)");
	expect_bad("twice.txt", HDR "layer 1 0 1 cpu\nlayer 1 0 1 cpu\n", "layer 1 listed twice");
	expect_bad("cap.txt", HDR "layer 0 0 0 0\n", "over its capacity");
	expect_bad("neg.txt", HDR "layer 1 -1 1 cpu\n", "expected 'cpu'");
	expect_bad("name.txt", "hmoe-place 1\nlayers 2 experts 3 expert_bytes 10\ndevice c/1 5\n",
		   "device name");
	expect_bad("devdup.txt", HDR "device c1 5\n", "listed twice");
	expect_bad("order.txt", HDR "layer 1 0 1 cpu\ndevice c2 5\n", "before the layer lines");
	expect_bad("junk.txt", HDR "bogus\n", "unexpected 'bogus'");
	expect_bad("trail.txt", HDR "layer 1 0x 1 cpu\n", "expected 'cpu'");
}

int main(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/hmoe_place_XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_capacity_and_cpu_tier();
	test_hot_experts();
	test_round_trip();
	test_bad_files();
	hmoe_test_rmdir(tmpdir);
	if (failures) {
		fprintf(stderr, "%d check(s) failed\n", failures);
		return 1;
	}
	printf("place: all checks passed\n");
	return 0;
}
