/* hmoe_energy_rapl: CPU package and DRAM energy through the powercap sysfs class.
 *
 * SYSFS/class/powercap/intel-rapl:N is one package zone ("name" = package-K); its
 * subzone intel-rapl:N:M with "name" = dram is that package's memory. energy_uj is a
 * microjoule counter that wraps to 0 after max_energy_range_uj. Other subzones (core,
 * uncore) are part of the package figure and psys spans the platform, so neither is
 * reported (they would count energy twice). AMD CPUs expose the same intel-rapl zones.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hmoe_energy.h"
#include "hmoe_err.h"

static int rapl_read(struct hmoe_energy_meter *m, uint64_t *raw)
{
	int ret = hmoe_energy_read_u64(m->path, raw);

	if (ret)
		return ret;
	if (m->wrap && *raw > m->wrap)
		return hmoe_err(HMOE_EIO, "%s: %llu is above max_energy_range_uj %llu", m->path,
				(unsigned long long)*raw, (unsigned long long)m->wrap);
	return 0;
}

/* Adds the zone at dir as device `device`; unreadable files make it unavailable. */
static int rapl_add_zone(struct hmoe_energy *e, const char *dir, const char *device)
{
	struct hmoe_energy_meter m = { 0 };
	char path[512];
	uint64_t v;

	m.src = &hmoe_energy_rapl;
	m.measured = 1;
	m.unit_uj = 1;
	snprintf(m.device, sizeof(m.device), "%s", device);
	snprintf(path, sizeof(path), "%s/max_energy_range_uj", dir);
	if (hmoe_energy_read_u64(path, &m.wrap) || m.wrap == 0) {
		hmoe_energy_unavailable(e, "rapl", "%s: %s", device,
					m.wrap ? hmoe_last_error() : "max_energy_range_uj is 0");
		return 0;
	}
	snprintf(m.path, sizeof(m.path), "%s/energy_uj", dir);
	if (rapl_read(&m, &v)) {
		if (access(m.path, R_OK) != 0 && errno == EACCES)
			hmoe_energy_unavailable(e, "rapl", "%s: %s (energy_uj is readable only by "
						"root since Linux 5.10)", device, hmoe_last_error());
		else
			hmoe_energy_unavailable(e, "rapl", "%s: %s", device, hmoe_last_error());
		return 0;
	}
	snprintf(m.note, sizeof(m.note), "measured: RAPL %.140s", m.path);
	if (!hmoe_energy_add(e, &m))
		return hmoe_err(HMOE_EINPUT, "energy: too many meters");
	return 0;
}

/* intel-rapl:N -> N, intel-rapl:N:M -> N and M; returns the number of indexes. */
static int rapl_zone_index(const char *name, long *n, long *sub)
{
	char *end;

	if (strncmp(name, "intel-rapl:", 11))
		return 0;
	*n = strtol(name + 11, &end, 10);
	if (end == name + 11)
		return 0;
	if (!*end)
		return 1;
	if (*end != ':')
		return 0;
	name = end + 1;
	*sub = strtol(name, &end, 10);
	return end != name && !*end ? 2 : 0;
}

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;

	return (x > y) - (x < y);
}

static int rapl_probe(struct hmoe_energy *e)
{
	const char *root = hmoe_energy_options(e)->sysfs_root;
	char dir[256], path[512], name[64], device[48];
	long zones[64], subs[64];
	int n_zones = 0, n_before = hmoe_energy_n_meters(e), ret;
	struct dirent *d;
	DIR *dh;

	snprintf(dir, sizeof(dir), "%s/class/powercap", root);
	dh = opendir(dir);
	if (!dh) {
		hmoe_energy_unavailable(e, "rapl", "%s: %s (no powercap driver, or not x86)", dir,
					strerror(errno));
		return 0;
	}
	while ((d = readdir(dh)) && n_zones < 64) {
		long n, sub;

		if (rapl_zone_index(d->d_name, &n, &sub) == 1)
			zones[n_zones++] = n;
	}
	closedir(dh);
	qsort(zones, (size_t)n_zones, sizeof(long), cmp_long);
	for (int z = 0; z < n_zones; z++) {
		int n_subs = 0;
		const char *pkg;

		snprintf(path, sizeof(path), "%s/intel-rapl:%ld/name", dir, zones[z]);
		if (hmoe_energy_read_str(path, name, sizeof(name))) {
			hmoe_energy_unavailable(e, "rapl", "%s", hmoe_last_error());
			continue;
		}
		if (strncmp(name, "package-", 8))
			continue;  /* psys and others: not a package */
		pkg = name + 8;
		snprintf(device, sizeof(device), "cpu%.8s-package", pkg);
		snprintf(path, sizeof(path), "%s/intel-rapl:%ld", dir, zones[z]);
		ret = rapl_add_zone(e, path, device);
		if (ret)
			return ret;
		/* its dram subzone */
		snprintf(path, sizeof(path), "%s/intel-rapl:%ld", dir, zones[z]);
		dh = opendir(path);
		if (!dh)
			continue;
		while ((d = readdir(dh)) && n_subs < 64) {
			long n, sub;

			if (rapl_zone_index(d->d_name, &n, &sub) == 2 && n == zones[z])
				subs[n_subs++] = sub;
		}
		closedir(dh);
		qsort(subs, (size_t)n_subs, sizeof(long), cmp_long);
		for (int s = 0; s < n_subs; s++) {
			char sub_dir[400], sub_name[64];

			snprintf(sub_dir, sizeof(sub_dir), "%s/intel-rapl:%ld/intel-rapl:%ld:%ld", dir,
				 zones[z], zones[z], subs[s]);
			snprintf(path, sizeof(path), "%s/name", sub_dir);
			if (hmoe_energy_read_str(path, sub_name, sizeof(sub_name)) ||
			    strcmp(sub_name, "dram"))
				continue;
			snprintf(device, sizeof(device), "cpu%.8s-dram", pkg);
			ret = rapl_add_zone(e, sub_dir, device);
			if (ret)
				return ret;
		}
	}
	if (hmoe_energy_n_meters(e) == n_before && n_zones == 0)
		hmoe_energy_unavailable(e, "rapl", "%s has no intel-rapl:N package zone", dir);
	return 0;
}

const struct hmoe_energy_source hmoe_energy_rapl = {
	.name = "rapl",
	.probe = rapl_probe,
	.read = rapl_read,
};
