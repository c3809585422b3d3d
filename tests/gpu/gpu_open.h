/* gpu_open: how every GPU test program finds its GPU, or says why it is skipped.
 * Returns 0 with *api ready (device 0 initialised), 77 after printing the skip reason
 * ("no CUDA device", "nvcc not found", "GPU backend not built"), or 1 when the device
 * exists but does not initialise. HMOE_CUDA_LIB (e.g. the CPU stand-in fake_cuda) is
 * trusted as is: it skips the nvidia-smi probe. */
#ifndef HMOE_GPU_OPEN_H
#define HMOE_GPU_OPEN_H

#include <stdio.h>
#include <stdlib.h>

#include "cuda/hmoe_cuda.h"

static int gpu_open_api(const struct hmoe_cuda_api **api)
{
	char why[512];
	int n = 0;

	if (!getenv("HMOE_CUDA_LIB") && system("nvidia-smi -L >/dev/null 2>&1") != 0) {
		printf("no CUDA device\n");
		return 77;
	}
	*api = hmoe_cuda_open(why, sizeof(why));
	if (!*api) {
		if (system("command -v nvcc >/dev/null 2>&1 || test -x /usr/local/cuda/bin/nvcc") != 0)
			printf("nvcc not found\n");
		else
			printf("GPU backend not built (run `make cuda`): %s\n", why);
		return 77;
	}
	if ((*api)->device_count(&n) < 0 || n == 0) {
		printf("no CUDA device\n");
		return 77;
	}
	if ((*api)->init(0) < 0) {
		fprintf(stderr, "cuda init: %s\n", (*api)->last_error());
		return 1;
	}
	return 0;
}

#endif
