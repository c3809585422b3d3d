/* hmoe_test: what every unit test shares: a failure counter and CHECK, which reports
 * file, line and a message for a false condition and lets the test go on, so one run
 * shows every broken assertion. A test's main returns failures ? 1 : 0. */
#ifndef HMOE_TEST_H
#define HMOE_TEST_H

#include <stdio.h>

static int failures;

#define CHECK(cond, ...)                                                     \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);                        \
			fprintf(stderr, "\n");                               \
			failures++;                                          \
		}                                                            \
	} while (0)

#endif
