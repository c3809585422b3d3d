/* hmoe_energy_nvml: GPU energy through NVML, loaded at run time.
 *
 * libnvidia-ml.so.1 ships with the NVIDIA driver, not with a toolkit, so it is opened
 * with dlopen and its few entry points looked up by name: hmoe has no build dependency
 * on it and runs unchanged where it is absent. nvmlDeviceGetTotalEnergyConsumption is a
 * 64-bit millijoule counter since the driver loaded (Volta and newer); it does not wrap
 * in practice. The declarations below restate the stable C ABI of those functions.
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "hmoe_energy.h"
#include "hmoe_err.h"

typedef int nvml_return;          /* nvmlReturn_t: 0 = success */
typedef struct nvml_device *nvml_device; /* nvmlDevice_t: an opaque handle */

/* The library, shared by every GPU meter: closed when the last one is. */
struct nvml_lib {
	void *so;
	int refs;
	nvml_return (*init)(void);
	nvml_return (*shutdown)(void);
	nvml_return (*count)(unsigned int *n);
	nvml_return (*handle)(unsigned int i, nvml_device *dev);
	nvml_return (*energy_mj)(nvml_device dev, unsigned long long *mj);
	const char *(*error_string)(nvml_return r);
};

static const char *nvml_why(const struct nvml_lib *l, nvml_return r)
{
	return l->error_string ? l->error_string(r) : "NVML error";
}

static void nvml_unref(struct nvml_lib *l)
{
	if (--l->refs > 0)
		return;
	l->shutdown();
	dlclose(l->so);
	free(l);
}

static int nvml_read(struct hmoe_energy_meter *m, uint64_t *raw)
{
	struct nvml_lib *l = m->lib;
	unsigned long long mj;
	nvml_return r = l->energy_mj((nvml_device)m->handle, &mj);

	if (r)
		return hmoe_err(HMOE_EDEVICE, "%s: nvmlDeviceGetTotalEnergyConsumption: %s",
				m->device, nvml_why(l, r));
	*raw = mj;
	return 0;
}

static void nvml_close(struct hmoe_energy_meter *m)
{
	if (m->lib)
		nvml_unref(m->lib);
	m->lib = NULL;
}

/* dlsym returns void *; POSIX guarantees it converts to a function pointer. */
#define NVML_SYM(l, field, name)                                   \
	do {                                                       \
		void *p_ = dlsym((l)->so, name);                   \
		if (!p_)                                           \
			missing = name;                            \
		memcpy(&(l)->field, &p_, sizeof(p_));              \
	} while (0)

static int nvml_probe(struct hmoe_energy *e)
{
	const char *lib = hmoe_energy_options(e)->nvml_lib, *missing = NULL;
	struct nvml_lib *l;
	unsigned int n = 0;
	nvml_return r;

	if (!lib[0]) {
		hmoe_energy_unavailable(e, "nvml", "disabled");
		return 0;
	}
	l = calloc(1, sizeof(*l));
	if (!l)
		return hmoe_err(HMOE_ENOMEM, "energy nvml: out of memory");
	l->so = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
	if (!l->so) {
		const char *why = dlerror();

		/* dlerror() names the library already */
		hmoe_energy_unavailable(e, "nvml", "%s", why ? why : lib);
		free(l);
		return 0;
	}
	NVML_SYM(l, init, "nvmlInit_v2");
	NVML_SYM(l, shutdown, "nvmlShutdown");
	NVML_SYM(l, count, "nvmlDeviceGetCount_v2");
	NVML_SYM(l, handle, "nvmlDeviceGetHandleByIndex_v2");
	NVML_SYM(l, energy_mj, "nvmlDeviceGetTotalEnergyConsumption");
	NVML_SYM(l, error_string, "nvmlErrorString");
	if (missing) {
		hmoe_energy_unavailable(e, "nvml", "%s: no symbol %s", lib, missing);
		dlclose(l->so);
		free(l);
		return 0;
	}
	r = l->init();
	if (r) {
		hmoe_energy_unavailable(e, "nvml", "nvmlInit: %s", nvml_why(l, r));
		dlclose(l->so);
		free(l);
		return 0;
	}
	l->refs = 1;  /* the probe's own reference, dropped at the end */
	r = l->count(&n);
	if (r)
		hmoe_energy_unavailable(e, "nvml", "nvmlDeviceGetCount: %s", nvml_why(l, r));
	else if (n == 0)
		hmoe_energy_unavailable(e, "nvml", "no GPUs");
	for (unsigned int i = 0; !r && i < n; i++) {
		struct hmoe_energy_meter m = { 0 };
		nvml_device dev;
		unsigned long long mj;
		nvml_return ri = l->handle(i, &dev);

		if (!ri)
			ri = l->energy_mj(dev, &mj);
		if (ri) {
			hmoe_energy_unavailable(e, "nvml", "gpu%u: %s", i, nvml_why(l, ri));
			continue;
		}
		m.src = &hmoe_energy_nvml;
		m.measured = 1;
		m.unit_uj = 1000;  /* NVML counts millijoules */
		m.handle = dev;
		m.lib = l;
		snprintf(m.device, sizeof(m.device), "gpu%u", i);
		snprintf(m.note, sizeof(m.note), "measured: NVML total energy of GPU %u", i);
		l->refs++;
		if (!hmoe_energy_add(e, &m)) {
			l->refs--;
			break;
		}
	}
	nvml_unref(l);
	return 0;
}

const struct hmoe_energy_source hmoe_energy_nvml = {
	.name = "nvml",
	.probe = nvml_probe,
	.read = nvml_read,
	.close = nvml_close,
};
