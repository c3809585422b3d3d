/* bench_clock: the monotonic clock every command uses for its timings. */
#ifndef HMOE_BENCH_CLOCK_H
#define HMOE_BENCH_CLOCK_H

#include <time.h>

static inline double clock_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif
