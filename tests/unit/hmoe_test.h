/* hmoe_test: what every unit test shares: a failure counter and CHECK, which reports
 * file, line and a message for a false condition and lets the test go on, so one run
 * shows every broken assertion. A test's main returns failures ? 1 : 0. */
#ifndef HMOE_TEST_H
#define HMOE_TEST_H

#include <stdio.h>
#include <stdlib.h>

static int failures;

/* Removes a test's temporary folder (rm -rf); a failure is only a warning. */
static inline void hmoe_test_rmdir(const char *dir)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd))
		fprintf(stderr, "warning: cannot remove %s\n", dir);
}

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
