/* hmoe_energy_hwmon: hmoe card energy through hwmon.
 *
 * The driver (kmod/hmoe_hwmon.c) registers one hwmon device per card, named "hmoe":
 * SYSFS/class/hwmon/hwmonN/energy1_input is the card's cumulative energy in uJ, and
 * energy_source says "measured" (the card's sensor) or "modeled" (the emulated card's
 * power model). Without energy_source the reading is labelled modeled: a number of
 * unknown origin is never passed off as a measurement. Cards are numbered card0.. in
 * ascending hwmon index order.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hmoe_energy.h"
#include "hmoe_err.h"

static int hwmon_read(struct hmoe_energy_meter *m, uint64_t *raw)
{
	return hmoe_energy_read_u64(m->path, raw);
}

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;

	return (x > y) - (x < y);
}

static int hwmon_probe(struct hmoe_energy *e)
{
	const char *root = hmoe_energy_options(e)->sysfs_root;
	char dir[256], path[512], text[64];
	long idx[256];
	int n_idx = 0, n_cards = 0;
	struct dirent *d;
	DIR *dh;

	snprintf(dir, sizeof(dir), "%s/class/hwmon", root);
	dh = opendir(dir);
	if (!dh) {
		hmoe_energy_unavailable(e, "hwmon", "%s: %s", dir, strerror(errno));
		return 0;
	}
	while ((d = readdir(dh)) && n_idx < 256) {
		char *end;
		long n;

		if (strncmp(d->d_name, "hwmon", 5))
			continue;
		n = strtol(d->d_name + 5, &end, 10);
		if (end != d->d_name + 5 && !*end)
			idx[n_idx++] = n;
	}
	closedir(dh);
	qsort(idx, (size_t)n_idx, sizeof(long), cmp_long);
	for (int i = 0; i < n_idx; i++) {
		struct hmoe_energy_meter m = { 0 };
		uint64_t v;

		snprintf(path, sizeof(path), "%s/hwmon%ld/name", dir, idx[i]);
		if (hmoe_energy_read_str(path, text, sizeof(text)) || strcmp(text, "hmoe"))
			continue;
		m.src = &hmoe_energy_hwmon;
		m.unit_uj = 1;
		snprintf(m.device, sizeof(m.device), "card%d", n_cards++);
		snprintf(m.path, sizeof(m.path), "%s/hwmon%ld/energy1_input", dir, idx[i]);
		if (hwmon_read(&m, &v)) {
			hmoe_energy_unavailable(e, "hwmon", "%s: %s", m.device, hmoe_last_error());
			continue;
		}
		snprintf(path, sizeof(path), "%s/hwmon%ld/energy_source", dir, idx[i]);
		if (hmoe_energy_read_str(path, text, sizeof(text)))
			snprintf(text, sizeof(text), "unknown");
		m.measured = !strcmp(text, "measured");
		snprintf(m.note, sizeof(m.note), "%s: hmoe card hwmon%ld energy1_input%s",
			 m.measured ? "measured" : "modeled", idx[i],
			 strcmp(text, "modeled") && !m.measured ? " (no energy_source attribute)" : "");
		if (!hmoe_energy_add(e, &m))
			return hmoe_err(HMOE_EINPUT, "energy: too many meters");
	}
	if (!n_cards)
		hmoe_energy_unavailable(e, "hwmon", "no hwmon device named hmoe under %s", dir);
	return 0;
}

const struct hmoe_energy_source hmoe_energy_hwmon = {
	.name = "hwmon",
	.probe = hwmon_probe,
	.read = hwmon_read,
};
