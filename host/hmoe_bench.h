/* hmoe_bench: the benchmarks behind `hmoe bench`, one per file (host/bench_*.c), and
 * what they share: the machine's read bandwidth measured in the same run, so results are
 * ratios against it, and a JSON header naming the machine and the commit. */
#ifndef HMOE_BENCH_H
#define HMOE_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "hmoe_clock.h"

int bench_forward(int argc, char **argv);
int bench_mla(int argc, char **argv);     /* host/bench_mla.c: GPU, via dlopen */
int bench_kmod(int argc, char **argv);    /* host/bench_kmod.c: cards through hmoe.ko */
int bench_experts(int argc, char **argv); /* host/bench_experts.c: fixed-point experts */
int bench_sched(int argc, char **argv);   /* host/bench_sched.c: scheduler, modeled devices */

/* Read bandwidth of this machine in bytes/s: all threads summing a buffer of `bytes`
 * (well past the last-level cache), best of `reps` passes with 8-byte loads and `reps`
 * with 64-byte (AVX-512) loads where the CPU has them. */
double bench_read_bandwidth(size_t bytes, int reps, int n_threads);
/* The same probe kept open, for interleaving with a measurement: one pass per call
 * (8- and 64-byte loads alternately), bytes/s; open returns NULL when out of memory. */
struct bench_probe;
struct bench_probe *bench_probe_open(size_t bytes, int n_threads);
double bench_probe_pass(struct bench_probe *p);
size_t bench_probe_bytes(const struct bench_probe *p);
void bench_probe_close(struct bench_probe *p);
/* bench experts' routing summary: of the n_pairs (token, expert) pairs in ids (experts
 * 0 .. n_experts - 1), how many belong to experts that got 1, 2-4, 5-11 and 12 or more
 * tokens (pairs[0..3]), the sizes that decide the CPU kernels' path (docs/fxp.md section
 * 3). All 0 when out of memory. */
void bench_expert_tokens(const int *ids, int n_pairs, int n_experts, int pairs[4]);
/* The four-row kernels' read pattern without their arithmetic (host/bench_read_avx512.c;
 * AVX-512F only), for bench experts' pattern rate: bench_rows4_sum reads every line of the
 * four row records rows[0..3] (`in` columns of weight format `format`: the scale lines,
 * then the rows in turn a group at a time, fp8 two groups, in blocks of four such turns as
 * the kernels take them, each row by load and prefetch instructions of its own) once, each
 * line prefetched just before its load by the prefetch plan's L1 / L2 distances for the
 * four-row kernels, and returns the sum of their 64-bit words;
 * bench_rows4_touch has row_acc4's shape around it (a run of n quads, stride bytes
 * apart, each read by bench_rows4_sum) and gives 0 for every row and token where out
 * says, so that a layer call built on it streams exactly the kernels' bytes. */
struct hmoe_fxp_xtile;
struct hmoe_fxp_rowfix;
struct hmoe_fxp_rows4_out;
uint64_t bench_rows4_sum(const uint8_t *const *rows, int format, int in);
int bench_rows4_touch(const uint8_t *const *rows, size_t stride, int n, int format, int in,
		      const struct hmoe_fxp_xtile *x, const struct hmoe_fxp_rowfix *fix,
		      const struct hmoe_fxp_rows4_out *out);
/* The largest cache level 3 or beyond of this machine, in bytes: the most of glibc's
 * sysconf (cpuid; on some AMD parts the whole socket's L3) and the kernel's
 * /sys/devices/system/cpu/cpu0/cache (one instance); 0 when neither says. Benchmarks size
 * what must stream from DRAM from it. */
size_t bench_llc_bytes(void);
/* Writes `"machine": {...}` fields (CPU model, cores, ISA, commit) into an open JSON
 * object, followed by a comma. */
void bench_json_machine(FILE *f);

#endif
