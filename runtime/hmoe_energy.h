/* hmoe_energy: energy meters behind one interface, and joules per token by device and
 * by phase (prefill / decode).
 *
 * Sources (one file each, one ops table each):
 *   rapl   runtime/hmoe_energy_rapl.c   CPU package and its DRAM subzone through
 *                                       SYSFS/class/powercap/intel-rapl:N[:M]/energy_uj
 *                                       (uJ, wraps at max_energy_range_uj)         measured
 *   nvml   runtime/hmoe_energy_nvml.c   GPUs through libnvidia-ml.so.1, loaded with
 *                                       dlopen at run time: no build dependency
 *                                       (nvmlDeviceGetTotalEnergyConsumption, mJ)  measured
 *   hwmon  runtime/hmoe_energy_hwmon.c  hmoe cards: SYSFS/class/hwmon/hwmonN with name
 *                                       "hmoe", energy1_input (uJ, cumulative); the
 *                                       driver's energy_source attribute says whether
 *                                       the card measures or models it              either
 *   model  runtime/hmoe_energy.c        watts x seconds for anything unmeasured (the CPU
 *                                       when RAPL is unreadable, devices named in
 *                                       opts.model), parameters in the meter's note modeled
 * A source that cannot be used (no such files, permission denied, no library, no
 * device) is recorded as unavailable with the reason and never fails the open.
 *
 * Counters: every meter keeps its raw reading as an integer in its device's unit and
 * unfolds wrap-around into a 64-bit microjoule total; joules appear only in the report.
 * A meter must be sampled at least once per wrap period (RAPL: max_energy_range_uj,
 * typically minutes at full package power); spans sample at their start and end.
 *
 * Measured energy is the whole device's (a package meter counts every process on that
 * socket); the report says so. Not thread-safe: one caller.
 */
#ifndef HMOE_ENERGY_H
#define HMOE_ENERGY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "hmoe_err.h"

#define HMOE_ENERGY_MAX_METERS 32
#define HMOE_ENERGY_MAX_UNAVAIL 16

enum hmoe_energy_phase {
	HMOE_ENERGY_PREFILL,
	HMOE_ENERGY_DECODE,
	HMOE_ENERGY_N_PHASES
};

struct hmoe_energy;
struct hmoe_energy_meter;

/* One kind of meter. */
struct hmoe_energy_source {
	const char *name;
	/* Finds this source's devices and adds a meter for each (hmoe_energy_add); records
	 * hmoe_energy_unavailable() when there are none. Returns < 0 only for out of memory. */
	int (*probe)(struct hmoe_energy *e);
	/* Current raw counter in the meter's device unit. An error names the file/device. */
	int (*read)(struct hmoe_energy_meter *m, uint64_t *raw);
	void (*close)(struct hmoe_energy_meter *m);
};

extern const struct hmoe_energy_source hmoe_energy_rapl;
extern const struct hmoe_energy_source hmoe_energy_nvml;
extern const struct hmoe_energy_source hmoe_energy_hwmon;
extern const struct hmoe_energy_source hmoe_energy_model;

struct hmoe_energy_meter {
	const struct hmoe_energy_source *src;
	char device[48];        /* "cpu0-package", "cpu0-dram", "gpu0", "card0", "cpu" */
	int measured;           /* 1: a sensor; 0: a model (always labelled modeled) */
	char note[160];         /* where it comes from; for a model, its parameters */
	uint64_t unit_uj;       /* microjoules per raw unit: 1 (uJ), 1000 (NVML mJ) */
	uint64_t wrap;          /* raw counter range: wraps to 0 after this; 0 = never */
	uint64_t last_raw;      /* previous raw reading */
	uint64_t total_uj;      /* energy since open, wrap unfolded */
	int failed;             /* a read failed after open: excluded from then on */
	char error[160];        /* why it failed */

	/* source-private */
	char path[512];         /* rapl/hwmon: the counter file */
	double watts;           /* model: constant power */
	double t0_s;            /* model: time of open */
	double (*now_s)(void);  /* model: the set's clock */
	void *handle;           /* nvml: device handle */
	void *lib;              /* nvml: shared library state */
};

struct hmoe_energy_opts {
	const char *sysfs_root;   /* NULL: "/sys" (tests point it at a fake tree) */
	const char *nvml_lib;     /* NULL: "libnvidia-ml.so.1"; "": do not try NVML */
	double cpu_watts;         /* model for the CPU when RAPL gives no package meter;
				   * <= 0: HMOE_ENERGY_CPU_W_PER_CORE x online CPUs */
	const char *model;        /* extra modeled devices "name=WATTS[,name=WATTS]" or NULL */
	double (*now_s)(void);    /* clock in seconds; NULL: CLOCK_MONOTONIC */
};

/* The CPU model when nothing is measured: a stated constant per online CPU, not a
 * measurement of this machine (a server core under load draws roughly 3-10 W). */
#define HMOE_ENERGY_CPU_W_PER_CORE 5.0

/* Opens every source. Bad opts.model text is HMOE_EINPUT naming it. */
int hmoe_energy_open(struct hmoe_energy **out, const struct hmoe_energy_opts *opts);
void hmoe_energy_close(struct hmoe_energy *e);

/* ---- used by the sources' probe functions ---- */
const struct hmoe_energy_opts *hmoe_energy_options(const struct hmoe_energy *e);
/* Appends a meter (copied); takes its first reading. NULL when full. */
struct hmoe_energy_meter *hmoe_energy_add(struct hmoe_energy *e,
					  const struct hmoe_energy_meter *m);
void hmoe_energy_unavailable(struct hmoe_energy *e, const char *source, const char *fmt, ...)
	HMOE_PRINTF(3, 4);

/* Reads a sysfs file holding one unsigned decimal integer (trailing newline allowed).
 * Missing, unreadable, empty or non-numeric content is an error naming the file. */
int hmoe_energy_read_u64(const char *path, uint64_t *out);
/* Reads a short text file, trailing newline removed. */
int hmoe_energy_read_str(const char *path, char *buf, size_t cap);

/* ---- reading ---- */
/* Reads every meter and folds the new raw values into their totals. A meter whose read
 * fails is marked failed (with the reason) and skipped from then on. */
void hmoe_energy_sample(struct hmoe_energy *e);
/* Pure wrap arithmetic (exported for tests): the raw increase from prev to now for a
 * counter that wraps to 0 after `wrap` (0: never wraps; a decrease then means the
 * device reset its counter, and the increase is `now`). */
uint64_t hmoe_energy_delta(uint64_t prev, uint64_t now, uint64_t wrap);

/* Spans: begin/end a phase; time and energy between them add to that phase, and
 * n_tokens to its token count. One span open at a time. */
void hmoe_energy_begin(struct hmoe_energy *e, enum hmoe_energy_phase ph);
void hmoe_energy_end(struct hmoe_energy *e, enum hmoe_energy_phase ph, long n_tokens);
/* Ends the open span (whatever phase it began as) for a step that ran prefill_tokens
 * and decode_tokens together (continuous batching): its seconds and each meter's energy
 * are split between the phases by token share (integer microjoules; the rounding
 * remainder goes to decode, so the phases still sum to the meter's total). */
void hmoe_energy_end_split(struct hmoe_energy *e, long prefill_tokens, long decode_tokens);

int hmoe_energy_n_meters(const struct hmoe_energy *e);
const struct hmoe_energy_meter *hmoe_energy_meter_at(const struct hmoe_energy *e, int i);
/* Joules of meter i accumulated over phase ph's spans. */
double hmoe_energy_joules(const struct hmoe_energy *e, int i, enum hmoe_energy_phase ph);
long hmoe_energy_tokens(const struct hmoe_energy *e, enum hmoe_energy_phase ph);
double hmoe_energy_seconds(const struct hmoe_energy *e, enum hmoe_energy_phase ph);
int hmoe_energy_n_unavailable(const struct hmoe_energy *e);
/* Source name and reason of unavailable entry i. */
void hmoe_energy_unavailable_at(const struct hmoe_energy *e, int i, const char **source,
				const char **reason);

/* ---- report ---- */
/* One line per phase with tokens: "[energy decode: 1.23 J/token = cpu0-package 1.00
 * (measured) + card0 0.23 (modeled)]", a line per failed meter, and one line listing
 * the unavailable sources with their reasons. */
void hmoe_energy_print(const struct hmoe_energy *e, FILE *f);
/* Writes `"energy": {...}` (no trailing comma): per phase tokens, seconds, joules and
 * joules per token by device, each with "measured": true/false; unavailable sources. */
void hmoe_energy_json(const struct hmoe_energy *e, FILE *f);

#endif
