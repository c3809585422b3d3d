/* bench_common: what every benchmark shares (see hmoe_bench.h): the machine's read
 * bandwidth measured in the same run, a monotonic clock, and the machine description. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hmoe_bench.h"
#include "hmoe_pool.h"

uint64_t bench_read_sum_avx512(const uint64_t *buf, size_t n_words);

struct read_job {
	const uint64_t *buf;  /* (n_words) */
	size_t n_words;
	long n_chunks;
	int wide;             /* 64-byte loads (AVX-512) rather than 8-byte ones */
	uint64_t *sums;       /* (n_chunks) keeps the reads from being optimised away */
};

static void read_chunk(void *arg, long i, int thread)
{
	struct read_job *j = arg;
	size_t per = (j->n_words + (size_t)j->n_chunks - 1) / (size_t)j->n_chunks;
	size_t lo = (size_t)i * per, hi = lo + per < j->n_words ? lo + per : j->n_words;
	uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;

	(void)thread;
	if (j->wide) {
		lo &= ~(size_t)7;  /* chunk starts on 64 bytes (buf is 64-byte aligned) */
		j->sums[i] = bench_read_sum_avx512(j->buf + lo, hi > lo ? hi - lo : 0);
		return;
	}
	/* Four independent chains so the loop is bound by loads, not by the adds. */
	for (size_t k = lo; k + 4 <= hi; k += 4) {
		s0 += j->buf[k];
		s1 += j->buf[k + 1];
		s2 += j->buf[k + 2];
		s3 += j->buf[k + 3];
	}
	j->sums[i] = s0 ^ s1 ^ s2 ^ s3;
}

struct bench_probe {
	struct hmoe_pool *pool;
	struct read_job j;
	size_t bytes;
	int passes;
};

struct bench_probe *bench_probe_open(size_t bytes, int n_threads)
{
	struct bench_probe *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->bytes = bytes;
	if (hmoe_pool_create(&p->pool, n_threads)) {
		free(p);
		return NULL;
	}
	p->j.n_chunks = (long)hmoe_pool_threads(p->pool) * 16;
	p->j.sums = calloc((size_t)p->j.n_chunks, sizeof(*p->j.sums));
	p->j.buf = aligned_alloc(64, bytes);
	p->j.n_words = bytes / sizeof(uint64_t);
	if (!p->j.sums || !p->j.buf) {
		bench_probe_close(p);
		return NULL;
	}
	memset((void *)p->j.buf, 1, bytes);  /* touch every page: the timing sees no faults */
	__builtin_cpu_init();
	return p;
}

double bench_probe_pass(struct bench_probe *p)
{
	double t0, dt;

	/* 8-byte and (where the CPU has them) 64-byte loads on alternate passes, so that
	 * the best pass is not slower than the kernels it is the yardstick for */
	p->j.wide = p->passes++ % 2 && __builtin_cpu_supports("avx512f");
	t0 = hmoe_now_s();
	hmoe_pool_run(p->pool, p->j.n_chunks, read_chunk, &p->j);
	dt = hmoe_now_s() - t0;
	return dt > 0 ? (double)p->bytes / dt : 0;
}

size_t bench_probe_bytes(const struct bench_probe *p)
{
	return p->bytes;
}

void bench_probe_close(struct bench_probe *p)
{
	if (!p)
		return;
	free((void *)p->j.buf);
	free(p->j.sums);
	hmoe_pool_destroy(p->pool);
	free(p);
}

double bench_read_bandwidth(size_t bytes, int reps, int n_threads)
{
	struct bench_probe *p = bench_probe_open(bytes, n_threads);
	double best = 0;

	if (!p)
		return 0;
	for (int r = 0; r < 2 * reps; r++) {
		double b = bench_probe_pass(p);

		best = b > best ? b : best;
	}
	bench_probe_close(p);
	return best;
}

static void cpu_model(char *out, size_t cap)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[512];

	snprintf(out, cap, "unknown");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':');

		if (strncmp(line, "model name", 10) || !colon)
			continue;
		colon += 2;
		colon[strcspn(colon, "\n")] = '\0';
		/* Keep the JSON string simple: drop quotes and backslashes. */
		for (char *p = colon; *p; p++)
			if (*p == '"' || *p == '\\')
				*p = ' ';
		snprintf(out, cap, "%s", colon);
		break;
	}
	fclose(f);
}

size_t bench_llc_bytes(void)
{
	long sc3 = sysconf(_SC_LEVEL3_CACHE_SIZE), sc4 = sysconf(_SC_LEVEL4_CACHE_SIZE);
	size_t best = 0;

	best = sc3 > 0 && (size_t)sc3 > best ? (size_t)sc3 : best;
	best = sc4 > 0 && (size_t)sc4 > best ? (size_t)sc4 : best;
	for (int i = 0; i < 16; i++) {
		char path[96], text[32];
		FILE *f;
		int level = 0;
		unsigned long size = 0;
		char unit = 0;

		snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
		f = fopen(path, "r");
		if (!f)
			break;
		if (fscanf(f, "%d", &level) != 1)
			level = 0;
		fclose(f);
		snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
		if (level < 3 || !(f = fopen(path, "r")))
			continue;
		/* "32768K", "300M" */
		if (fgets(text, sizeof(text), f) && sscanf(text, "%lu%c", &size, &unit) >= 1) {
			size_t bytes = (size_t)size << (unit == 'K' ? 10 : unit == 'M' ? 20
							: unit == 'G' ? 30 : 0);

			best = bytes > best ? bytes : best;
		}
		fclose(f);
	}
	return best;
}

void bench_json_machine(FILE *f)
{
	char cpu[256];
	const char *commit = getenv("HMOE_COMMIT");

	cpu_model(cpu, sizeof(cpu));
	__builtin_cpu_init();
	fprintf(f, "\"machine\": {\"cpu\": \"%s\", \"online_cpus\": %ld, "
		"\"avx2\": %s, \"avxvnni\": %s, \"avx512f\": %s, \"avx512vnni\": %s, "
		"\"llc_bytes\": %zu}, ",
		cpu, sysconf(_SC_NPROCESSORS_ONLN),
		__builtin_cpu_supports("avx2") ? "true" : "false",
		__builtin_cpu_supports("avxvnni") ? "true" : "false",
		__builtin_cpu_supports("avx512f") ? "true" : "false",
		__builtin_cpu_supports("avx512vnni") ? "true" : "false", bench_llc_bytes());
	fprintf(f, "\"commit\": \"%s\", ", commit ? commit : "unknown");
}
