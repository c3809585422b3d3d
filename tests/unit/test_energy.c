/* test_energy: the energy meters on fake sysfs trees (a temp dir as the sysfs root) and
 * a fake clock.
 *
 * What a user would notice if broken:
 *  - a RAPL counter wrap during a run shows up as a huge or negative energy;
 *  - a missing, unreadable or garbled sysfs file crashes or is silently read as 0
 *    instead of making that source unavailable with the reason;
 *  - a card's modeled energy is reported as measured, or the cards are numbered in
 *    directory order instead of hwmon order;
 *  - joules per token are not split by device and by prefill/decode;
 *  - an absent NVML library breaks the open.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hmoe_energy.h"
#include "hmoe_err.h"

#include "hmoe_test.h"

static char root[256];
static double fake_now;

static double fake_clock(void)
{
	return fake_now;
}

static void put(const char *rel, const char *fmt, ...)
{
	char path[512];
	va_list ap;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	/* mkdir -p of the file's folder */
	for (char *slash = strchr(path + strlen(root) + 1, '/'); slash;
	     slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		mkdir(path, 0755);
		*slash = '/';
	}
	f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "cannot write %s\n", path);
		exit(1);
	}
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fclose(f);
}

static void fresh_root(void)
{
	if (root[0])
		hmoe_test_rmdir(root);
	snprintf(root, sizeof(root), "/tmp/hmoe_energy_XXXXXX");
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		exit(1);
	}
}

static struct hmoe_energy *open_set(const char *model)
{
	struct hmoe_energy_opts o = { .sysfs_root = root, .nvml_lib = "libhmoe-no-such-nvml.so",
				      .cpu_watts = 0, .model = model, .now_s = fake_clock };
	struct hmoe_energy *e = NULL;
	int ret = hmoe_energy_open(&e, &o);

	if (ret) {
		fprintf(stderr, "hmoe_energy_open: %s\n", hmoe_last_error());
		exit(1);
	}
	return e;
}

static int find(const struct hmoe_energy *e, const char *device)
{
	for (int i = 0; i < hmoe_energy_n_meters(e); i++)
		if (!strcmp(hmoe_energy_meter_at(e, i)->device, device))
			return i;
	return -1;
}

static int unavailable_mentions(const struct hmoe_energy *e, const char *source,
				const char *needle)
{
	for (int i = 0; i < hmoe_energy_n_unavailable(e); i++) {
		const char *s, *r;

		hmoe_energy_unavailable_at(e, i, &s, &r);
		if (!strcmp(s, source) && strstr(r, needle))
			return 1;
	}
	return 0;
}

#define RAPL "class/powercap/intel-rapl:0"
#define MAX_UJ 262143328850ull

static void test_delta(void)
{
	CHECK(hmoe_energy_delta(100, 250, MAX_UJ) == 150, "plain increase");
	CHECK(hmoe_energy_delta(MAX_UJ - 10, 5, MAX_UJ) == 15, "wrap: 10 up to the top + 5");
	CHECK(hmoe_energy_delta(500, 20, 0) == 20, "no wrap range: a reset counts from 0");
	CHECK(hmoe_energy_delta(7, 7, MAX_UJ) == 0, "no change");
}

/* Package + dram, a wrap inside the decode span, per-phase per-token joules. */
static void test_rapl_wrap(void)
{
	struct hmoe_energy *e;
	int pkg, dram;

	fresh_root();
	put(RAPL "/name", "package-0\n");
	put(RAPL "/max_energy_range_uj", "%llu\n", MAX_UJ);
	put(RAPL "/energy_uj", "%llu\n", MAX_UJ - 1000000);
	put(RAPL "/intel-rapl:0:0/name", "core\n");
	put(RAPL "/intel-rapl:0:0/max_energy_range_uj", "%llu\n", MAX_UJ);
	put(RAPL "/intel-rapl:0:0/energy_uj", "5\n");
	put(RAPL "/intel-rapl:0:1/name", "dram\n");
	put(RAPL "/intel-rapl:0:1/max_energy_range_uj", "65712999613\n");
	put(RAPL "/intel-rapl:0:1/energy_uj", "1000\n");
	put("class/powercap/intel-rapl:1/name", "psys\n");
	fake_now = 10.0;
	e = open_set(NULL);
	pkg = find(e, "cpu0-package");
	dram = find(e, "cpu0-dram");
	CHECK(pkg >= 0 && dram >= 0, "package and dram meters found");
	CHECK(find(e, "cpu") < 0, "no modeled cpu meter when RAPL measures the package");
	CHECK(hmoe_energy_n_meters(e) == 2, "core and psys are not reported (got %d meters)",
	      hmoe_energy_n_meters(e));
	if (pkg < 0 || dram < 0)
		goto out;
	CHECK(hmoe_energy_meter_at(e, pkg)->measured, "RAPL is measured");

	/* prefill: 0.5 J package, 0.25 J dram over 4 tokens */
	hmoe_energy_begin(e, HMOE_ENERGY_PREFILL);
	put(RAPL "/energy_uj", "%llu\n", MAX_UJ - 500000);
	put(RAPL "/intel-rapl:0:1/energy_uj", "251000\n");
	fake_now = 11.0;
	hmoe_energy_end(e, HMOE_ENERGY_PREFILL, 4);
	/* decode: the package counter wraps: 500000 to the top, then 1500000 -> 2 J */
	hmoe_energy_begin(e, HMOE_ENERGY_DECODE);
	put(RAPL "/energy_uj", "1500000\n");
	put(RAPL "/intel-rapl:0:1/energy_uj", "1251000\n");
	fake_now = 13.0;
	hmoe_energy_end(e, HMOE_ENERGY_DECODE, 2);

	CHECK(hmoe_energy_joules(e, pkg, HMOE_ENERGY_PREFILL) == 0.5, "prefill package %.6f J",
	      hmoe_energy_joules(e, pkg, HMOE_ENERGY_PREFILL));
	CHECK(hmoe_energy_joules(e, dram, HMOE_ENERGY_PREFILL) == 0.25, "prefill dram %.6f J",
	      hmoe_energy_joules(e, dram, HMOE_ENERGY_PREFILL));
	CHECK(hmoe_energy_joules(e, pkg, HMOE_ENERGY_DECODE) == 2.0,
	      "decode package across the wrap: %.6f J (want 2)",
	      hmoe_energy_joules(e, pkg, HMOE_ENERGY_DECODE));
	CHECK(hmoe_energy_joules(e, dram, HMOE_ENERGY_DECODE) == 1.0, "decode dram %.6f J",
	      hmoe_energy_joules(e, dram, HMOE_ENERGY_DECODE));
	CHECK(hmoe_energy_tokens(e, HMOE_ENERGY_PREFILL) == 4 &&
	      hmoe_energy_tokens(e, HMOE_ENERGY_DECODE) == 2, "token counts per phase");
	CHECK(hmoe_energy_seconds(e, HMOE_ENERGY_DECODE) == 2.0, "decode seconds");

	/* the JSON report: decode package joules per token = 1 */
	{
		char *buf = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&buf, &len);
		cJSON *root_obj, *v;

		fputc('{', f);
		hmoe_energy_json(e, f);
		fputc('}', f);
		fclose(f);
		root_obj = cJSON_Parse(buf);
		CHECK(root_obj, "energy JSON parses: %s", buf);
		v = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(
			cJSON_GetObjectItem(cJSON_GetObjectItem(root_obj, "energy"), "phases"),
			"decode"), "by_device"), "cpu0-package"), "joules_per_token");
		CHECK(cJSON_IsNumber(v) && v->valuedouble == 1.0,
		      "JSON decode cpu0-package joules_per_token == 1");
		cJSON_Delete(root_obj);
		free(buf);
	}
	/* the counter turns to garbage mid-run: that meter fails, with the file named */
	put(RAPL "/energy_uj", "12abc\n");
	hmoe_energy_sample(e);
	CHECK(hmoe_energy_meter_at(e, pkg)->failed &&
	      strstr(hmoe_energy_meter_at(e, pkg)->error, "energy_uj"),
	      "garbled counter marks the meter failed, naming the file (error '%s')",
	      hmoe_energy_meter_at(e, pkg)->error);
	CHECK(!hmoe_energy_meter_at(e, dram)->failed, "dram meter unaffected");
out:
	hmoe_energy_close(e);
}

/* Missing and non-numeric files: unavailable with the reason; the CPU falls back to a
 * meter labelled modeled. */
static void test_rapl_bad_files(void)
{
	struct hmoe_energy *e;
	int cpu;

	fresh_root();
	put(RAPL "/name", "package-0\n");
	put(RAPL "/energy_uj", "123\n");  /* no max_energy_range_uj */
	put("class/powercap/intel-rapl:1/name", "package-1\n");
	put("class/powercap/intel-rapl:1/max_energy_range_uj", "1000\n");
	put("class/powercap/intel-rapl:1/energy_uj", "not a number\n");
	fake_now = 0;
	e = open_set(NULL);
	CHECK(unavailable_mentions(e, "rapl", "max_energy_range_uj"),
	      "missing max_energy_range_uj named");
	CHECK(unavailable_mentions(e, "rapl", "not an unsigned integer"),
	      "non-numeric energy_uj named");
	cpu = find(e, "cpu");
	CHECK(cpu >= 0 && !hmoe_energy_meter_at(e, cpu)->measured,
	      "CPU falls back to a modeled meter");
	if (cpu >= 0)
		CHECK(strstr(hmoe_energy_meter_at(e, cpu)->note, "modeled") != NULL,
		      "the model's note says modeled and states its parameters: %s",
		      hmoe_energy_meter_at(e, cpu)->note);
	CHECK(unavailable_mentions(e, "nvml", "libhmoe-no-such-nvml.so"),
	      "absent NVML library is unavailable, not an error");
	hmoe_energy_close(e);

	/* no powercap at all */
	fresh_root();
	e = open_set(NULL);
	CHECK(unavailable_mentions(e, "rapl", "powercap"), "no powercap dir named");
	CHECK(unavailable_mentions(e, "hwmon", "hwmon"), "no hwmon dir named");
	hmoe_energy_close(e);

	/* an unreadable counter (only meaningful when not root) */
	if (geteuid() != 0) {
		char path[512];

		fresh_root();
		put(RAPL "/name", "package-0\n");
		put(RAPL "/max_energy_range_uj", "1000\n");
		put(RAPL "/energy_uj", "5\n");
		snprintf(path, sizeof(path), "%s/" RAPL "/energy_uj", root);
		chmod(path, 0);
		e = open_set(NULL);
		CHECK(unavailable_mentions(e, "rapl", "root"), "permission denied explained");
		CHECK(find(e, "cpu") >= 0, "modeled CPU meter instead");
		hmoe_energy_close(e);
		chmod(path, 0644);
	}
}

/* hwmon cards: found by name, ordered by hwmon index, measured vs modeled respected;
 * the model source: given watts x time. */
static void test_hwmon_and_model(void)
{
	struct hmoe_energy *e;
	int c0, c1, c2, fan;

	fresh_root();
	put("class/hwmon/hwmon10/name", "hmoe\n");
	put("class/hwmon/hwmon10/energy1_input", "1000\n");
	put("class/hwmon/hwmon10/energy_source", "measured\n");
	put("class/hwmon/hwmon2/name", "hmoe\n");
	put("class/hwmon/hwmon2/energy1_input", "0\n");
	put("class/hwmon/hwmon2/energy_source", "modeled\n");
	put("class/hwmon/hwmon3/name", "k10temp\n");
	put("class/hwmon/hwmon3/energy1_input", "77\n");
	put("class/hwmon/hwmon4/name", "hmoe\n");
	put("class/hwmon/hwmon4/energy1_input", "0\n");  /* no energy_source */
	put("class/hwmon/hwmon5/name", "hmoe\n");
	put("class/hwmon/hwmon5/energy1_input", "-3\n");
	fake_now = 100.0;
	e = open_set("fan=2.5");
	c0 = find(e, "card0");
	c1 = find(e, "card1");
	c2 = find(e, "card3");
	fan = find(e, "fan");
	CHECK(c0 >= 0 && c1 >= 0 && c2 >= 0 && find(e, "card2") < 0 && find(e, "card4") < 0,
	      "three readable hmoe cards of four (k10temp ignored)");
	CHECK(unavailable_mentions(e, "hwmon", "card2: ") &&
	      unavailable_mentions(e, "hwmon", "not an unsigned integer"),
	      "card2's negative energy1_input makes it unavailable with the reason");
	if (c0 < 0 || c1 < 0 || c2 < 0 || fan < 0) {
		hmoe_energy_close(e);
		return;
	}
	CHECK(strstr(hmoe_energy_meter_at(e, c0)->path, "hwmon2/"), "card0 is hwmon2 (index order)");
	CHECK(!hmoe_energy_meter_at(e, c0)->measured, "hwmon2 says modeled");
	CHECK(strstr(hmoe_energy_meter_at(e, c1)->path, "hwmon4/") &&
	      !hmoe_energy_meter_at(e, c1)->measured, "no energy_source: labelled modeled");
	CHECK(hmoe_energy_meter_at(e, c2)->measured, "hwmon10 says measured");
	CHECK(!hmoe_energy_meter_at(e, fan)->measured, "opts.model meters are modeled");

	hmoe_energy_begin(e, HMOE_ENERGY_DECODE);
	put("class/hwmon/hwmon2/energy1_input", "3000000\n");
	put("class/hwmon/hwmon10/energy1_input", "1001000\n");
	fake_now = 104.0;
	hmoe_energy_end(e, HMOE_ENERGY_DECODE, 8);
	CHECK(hmoe_energy_joules(e, c0, HMOE_ENERGY_DECODE) == 3.0, "card0 3 J");
	CHECK(hmoe_energy_joules(e, c2, HMOE_ENERGY_DECODE) == 1.0, "card3 1 J");
	CHECK(hmoe_energy_joules(e, fan, HMOE_ENERGY_DECODE) == 10.0,
	      "model: 2.5 W x 4 s = 10 J (got %.6f)", hmoe_energy_joules(e, fan, HMOE_ENERGY_DECODE));
	{
		char *buf = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&buf, &len);

		hmoe_energy_print(e, f);
		fclose(f);
		CHECK(strstr(buf, "[energy decode:") && strstr(buf, "card0 0.375 (modeled)") &&
		      strstr(buf, "card3 0.125 (measured)"),
		      "text report splits J/token by device with labels:\n%s", buf);
		CHECK(!strstr(buf, "[energy prefill"), "no prefill line without prefill tokens");
		free(buf);
	}
	hmoe_energy_close(e);
}

static void test_bad_model_text(void)
{
	struct hmoe_energy_opts o = { .sysfs_root = root, .nvml_lib = "", .model = "card0=lots" };
	struct hmoe_energy *e = NULL;
	int ret;

	fresh_root();
	ret = hmoe_energy_open(&e, &o);
	CHECK(ret == -HMOE_EINPUT && strstr(hmoe_last_error(), "card0=lots"),
	      "bad --energy-model text is an input error naming it (%d: %s)", ret,
	      hmoe_last_error());
	o.model = "=5";
	ret = hmoe_energy_open(&e, &o);
	CHECK(ret == -HMOE_EINPUT, "empty device name rejected");
}

/* The real machine: opening must never fail, whatever it has. */
static void test_real_machine(void)
{
	struct hmoe_energy *e = NULL;
	int ret = hmoe_energy_open(&e, NULL);

	CHECK(ret == 0, "opening the real machine's meters: %s", hmoe_last_error());
	if (ret)
		return;
	CHECK(hmoe_energy_n_meters(e) >= 1, "at least the CPU (measured or modeled)");
	hmoe_energy_begin(e, HMOE_ENERGY_DECODE);
	hmoe_energy_end(e, HMOE_ENERGY_DECODE, 1);
	for (int i = 0; i < hmoe_energy_n_meters(e); i++)
		CHECK(hmoe_energy_joules(e, i, HMOE_ENERGY_DECODE) < 1e6, "sane reading of %s",
		      hmoe_energy_meter_at(e, i)->device);
	hmoe_energy_print(e, stderr);
	hmoe_energy_close(e);
}

/* A continuous-batching step mixes prefill and decode tokens: its energy and time are
 * split by token share, exactly (the phases sum to the meter's total). */
static void test_split(void)
{
	struct hmoe_energy *e;
	int pkg;

	fresh_root();
	put(RAPL "/name", "package-0\n");
	put(RAPL "/max_energy_range_uj", "%llu\n", MAX_UJ);
	put(RAPL "/energy_uj", "1000\n");
	fake_now = 10.0;
	e = open_set(NULL);
	pkg = find(e, "cpu0-package");
	CHECK(pkg >= 0, "package meter found");
	/* step 1: 3 prefill + 1 decode tokens, 4.000001 J over 2 s */
	hmoe_energy_begin(e, HMOE_ENERGY_DECODE);
	put(RAPL "/energy_uj", "%llu\n", 1000ull + 4000001ull);
	fake_now = 12.0;
	hmoe_energy_end_split(e, 3, 1);
	/* step 2: decode only, 1 J over 1 s */
	hmoe_energy_begin(e, HMOE_ENERGY_DECODE);
	put(RAPL "/energy_uj", "%llu\n", 1000ull + 5000001ull);
	fake_now = 13.0;
	hmoe_energy_end_split(e, 0, 2);
	CHECK(hmoe_energy_tokens(e, HMOE_ENERGY_PREFILL) == 3, "prefill tokens %ld",
	      hmoe_energy_tokens(e, HMOE_ENERGY_PREFILL));
	CHECK(hmoe_energy_tokens(e, HMOE_ENERGY_DECODE) == 3, "decode tokens %ld",
	      hmoe_energy_tokens(e, HMOE_ENERGY_DECODE));
	CHECK(fabs(hmoe_energy_joules(e, pkg, HMOE_ENERGY_PREFILL) - 3.0) < 1e-5,
	      "prefill joules %.7f, want 3 (3/4 of step 1)",
	      hmoe_energy_joules(e, pkg, HMOE_ENERGY_PREFILL));
	CHECK(fabs(hmoe_energy_joules(e, pkg, HMOE_ENERGY_PREFILL) +
		   hmoe_energy_joules(e, pkg, HMOE_ENERGY_DECODE) - 5.000001) < 1e-9,
	      "the phases sum to the meter's total");
	CHECK(fabs(hmoe_energy_seconds(e, HMOE_ENERGY_PREFILL) - 1.5) < 1e-9 &&
	      fabs(hmoe_energy_seconds(e, HMOE_ENERGY_DECODE) - 1.5) < 1e-9,
	      "seconds split 1.5 / 1.5, got %.3f / %.3f",
	      hmoe_energy_seconds(e, HMOE_ENERGY_PREFILL),
	      hmoe_energy_seconds(e, HMOE_ENERGY_DECODE));
	hmoe_energy_end_split(e, 1, 1); /* no open span: nothing happens */
	CHECK(hmoe_energy_tokens(e, HMOE_ENERGY_DECODE) == 3, "a split without a span is ignored");
	hmoe_energy_close(e);
}

int main(void)
{
	test_delta();
	test_rapl_wrap();
	test_split();
	test_rapl_bad_files();
	test_hwmon_and_model();
	test_bad_model_text();
	test_real_machine();
	hmoe_test_rmdir(root);
	if (failures) {
		fprintf(stderr, "%d check(s) failed\n", failures);
		return 1;
	}
	printf("energy: all checks passed\n");
	return 0;
}
