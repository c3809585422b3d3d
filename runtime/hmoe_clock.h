/* hmoe_clock: the monotonic clock every timing in hmoe reads (library and commands). */
#ifndef HMOE_CLOCK_H
#define HMOE_CLOCK_H

#include <time.h>

/* Seconds on CLOCK_MONOTONIC. */
static inline double hmoe_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif
