/* hmoe_cuda: the GPU backend's lifetime and memory (device, stream, cuBLAS handle,
 * workspace, events) and the API table that libhmoe_cuda.so exports. The kernels live
 * in hmoe_cuda_{dense,sample,router,fxp,mla}.cu; their CPU references in hmoe_cuda_ref.c. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmoe_cuda.h"
#include "hmoe_cuda_common.cuh"

struct hcu_state hcu;

static __thread char hcu_msg[512];

int hcu_fail(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(hcu_msg, sizeof(hcu_msg), fmt, ap);
	va_end(ap);
	return -code;
}

static const char *hcu_last_error(void)
{
	return hcu_msg;
}

int hcu_need_init(void)
{
	if (!hcu.initialised)
		return hcu_fail(HMOE_EDEVICE, "cuda backend: init() was not called");
	return 0;
}

int hcu_workspace(size_t bytes, void **out)
{
	if (bytes > hcu.work_bytes) {
		CUDA_CHECK(cudaStreamSynchronize(hcu.stream));
		if (hcu.work)
			CUDA_CHECK(cudaFree(hcu.work));
		hcu.work = NULL;
		hcu.work_bytes = 0;
		CUDA_CHECK(cudaMalloc(&hcu.work, bytes));
		hcu.work_bytes = bytes;
	}
	*out = hcu.work;
	return 0;
}

/* ---- device ---- */

static int hcu_device_count(int *n)
{
	cudaError_t e = cudaGetDeviceCount(n);

	/* No driver, no device, or a driver that cannot run this runtime: zero devices
	 * (callers skip), with the reason kept in last_error. */
	if (e != cudaSuccess) {
		(void)cudaGetLastError();
		*n = 0;
		hcu_fail(HMOE_EDEVICE, "no CUDA device: %s", cudaGetErrorString(e));
	}
	return 0;
}

static int hcu_init(int device)
{
	int n = 0, optin = 0, cc_major = 0, ret;

	if (hcu.initialised)
		return hcu.device == device ? 0
			: hcu_fail(HMOE_EINPUT, "cuda backend: already on device %d", hcu.device);
	ret = hcu_device_count(&n);
	if (ret)
		return ret;
	if (n == 0)
		return -HMOE_EDEVICE;  /* message set by hcu_device_count */
	HCU_ARG(device >= 0 && device < n, "cuda device %d: %d device(s) visible", device, n);
	CUDA_CHECK(cudaSetDevice(device));
	CUDA_CHECK(cudaStreamCreateWithFlags(&hcu.stream, cudaStreamNonBlocking));
	CUBLAS_CHECK(cublasCreate(&hcu.blas));
	CUBLAS_CHECK(cublasSetStream(hcu.blas, hcu.stream));
	CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
	hcu.smem_optin = (size_t)optin;
	CUDA_CHECK(cudaDeviceGetAttribute(&hcu.n_sm, cudaDevAttrMultiProcessorCount, device));
	CUDA_CHECK(cudaDeviceGetAttribute(&cc_major, cudaDevAttrComputeCapabilityMajor, device));
	hcu.tc_bf16 = cc_major >= 8;
	hcu.auto_v1 = getenv("HMOE_MLA_AUTO_V1") && strcmp(getenv("HMOE_MLA_AUTO_V1"), "1") == 0;
	for (int i = 0; i < 8; i++)
		CUDA_CHECK(cudaEventCreate(&hcu.ev[i]));
	hcu.device = device;
	hcu.initialised = 1;
	return 0;
}

static int hcu_device_name(char *buf, size_t n)
{
	cudaDeviceProp p;
	int ret = hcu_need_init();

	if (ret)
		return ret;
	CUDA_CHECK(cudaGetDeviceProperties(&p, hcu.device));
	snprintf(buf, n, "%s, sm_%d%d, %.1f GiB", p.name, p.major, p.minor,
		 (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
	return 0;
}

static int hcu_versions(int *driver, int *runtime)
{
	CUDA_CHECK(cudaDriverGetVersion(driver));
	CUDA_CHECK(cudaRuntimeGetVersion(runtime));
	return 0;
}

/* ---- memory ---- */

static int hcu_malloc(void **ptr, size_t bytes)
{
	int ret = hcu_need_init();

	if (ret)
		return ret;
	CUDA_CHECK(cudaMalloc(ptr, bytes ? bytes : 1));
	return 0;
}

static int hcu_free(void *ptr)
{
	if (ptr)
		CUDA_CHECK(cudaFree(ptr));
	return 0;
}

static int hcu_h2d(void *dst, const void *src, size_t bytes)
{
	CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, hcu.stream));
	CUDA_CHECK(cudaStreamSynchronize(hcu.stream));
	return 0;
}

static int hcu_d2h(void *dst, const void *src, size_t bytes)
{
	CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, hcu.stream));
	CUDA_CHECK(cudaStreamSynchronize(hcu.stream));
	return 0;
}

static int hcu_d2d(void *dst, const void *src, size_t bytes)
{
	CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, hcu.stream));
	return 0;
}

static int hcu_copy2d(void *dst, size_t dpitch, const void *src, size_t spitch,
		      size_t width_bytes, size_t rows)
{
	if (rows == 0 || width_bytes == 0)
		return 0;
	CUDA_CHECK(cudaMemcpy2DAsync(dst, dpitch, src, spitch, width_bytes, rows,
				     cudaMemcpyDeviceToDevice, hcu.stream));
	return 0;
}

static int hcu_fill_nan(void *ptr, size_t bytes)
{
	CUDA_CHECK(cudaMemsetAsync(ptr, 0xff, bytes, hcu.stream));
	return 0;
}

static int hcu_sync(void)
{
	int ret = hcu_need_init();

	if (ret)
		return ret;
	CUDA_CHECK(cudaStreamSynchronize(hcu.stream));
	CUDA_CHECK(cudaGetLastError());
	return 0;
}

static int hcu_event_record(int i)
{
	HCU_ARG(i >= 0 && i < 8, "cuda event %d: only 0..7 exist", i);
	CUDA_CHECK(cudaEventRecord(hcu.ev[i], hcu.stream));
	return 0;
}

static int hcu_elapsed_ms(int a, int b, float *ms)
{
	HCU_ARG(a >= 0 && a < 8 && b >= 0 && b < 8, "cuda events %d, %d: only 0..7 exist", a, b);
	CUDA_CHECK(cudaEventElapsedTime(ms, hcu.ev[a], hcu.ev[b]));
	return 0;
}

/* ---- the table ---- */

static const struct hmoe_cuda_api hcu_api = {
	HMOE_CUDA_ABI,
	hcu_last_error,
	hcu_device_count,
	hcu_init,
	hcu_device_name,
	hcu_versions,
	hcu_malloc,
	hcu_free,
	hcu_h2d,
	hcu_d2h,
	hcu_d2d,
	hcu_fill_nan,
	hcu_sync,
	hcu_event_record,
	hcu_elapsed_ms,
	hcu_rmsnorm,
	hcu_add,
	hcu_silu_mul,
	hcu_copy2d,
	hcu_rope,
	hcu_embed,
	hcu_gemm_bf16,
	hcu_fp8_matvec,
	hcu_fp8_dequant,
	hcu_sample,
	hcu_route,
	hcu_fxp_quant_x,
	hcu_mla_decode,
	hcu_mla_absorb_q,
	hcu_mla_absorb_o,
	hcu_mla_prefill,
};

extern "C" __attribute__((visibility("default"))) const struct hmoe_cuda_api *
hmoe_cuda_get_api(void)
{
	return &hcu_api;
}
