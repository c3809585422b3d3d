/* hmoe_kmod: user-space client of hmoe.ko on libdrm. See hmoe_kmod.h. */
#include "hmoe_kmod.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <xf86drm.h>

#include "hmoe_err.h"
#include "hmoe_expert.h"
#include "hmoe_fxp.h"
#include "hmoe_fxp_pack.h"

/* ---------------------------------------------------------------- helpers */

static int kmod_ioctl(struct hmoe_kmod *k, unsigned long req, void *arg)
{
	k->n_ioctls++;
	return drmIoctl(k->fd, req, arg) ? -errno : 0;
}

/* Maps a driver errno to an hmoe error naming the node and the operation. */
static int kmod_fail(const struct hmoe_kmod *k, int neg_errno, const char *what)
{
	int code = neg_errno == -EINVAL || neg_errno == -ENOENT || neg_errno == -EPERM
			   ? HMOE_EINPUT
		   : neg_errno == -ENOMEM || neg_errno == -ENOSPC ? HMOE_ENOMEM
								 : HMOE_EDEVICE;

	return hmoe_err(code, "kmod %s: %s: %s", k->path, what, strerror(-neg_errno));
}

static int64_t kmod_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Opens path if it is an hmoe node; returns the fd or -1. */
static int kmod_try_node(const char *path)
{
	drmVersionPtr v;
	int fd, ok;

	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -1;
	v = drmGetVersion(fd);
	ok = v && v->name && !strcmp(v->name, "hmoe");
	drmFreeVersion(v);
	if (!ok) {
		close(fd);
		return -1;
	}
	return fd;
}

/* ---------------------------------------------------------------- lifetime */

int hmoe_kmod_open(struct hmoe_kmod *k, int card)
{
	int seen = 0, ret;

	memset(k, 0, sizeof(*k));
	k->fd = -1;
	if (card < 0)
		return hmoe_err(HMOE_EINPUT, "kmod: card index %d is negative", card);
	/* Accel nodes (kernels >= 6.2): libdrm does not enumerate them. */
	for (int i = 0; i < 64 && k->fd < 0; i++) {
		snprintf(k->path, sizeof(k->path), "/dev/accel/accel%d", i);
		k->fd = kmod_try_node(k->path);
		if (k->fd >= 0 && seen++ != card) {
			close(k->fd);
			k->fd = -1;
		}
	}
	/* Render nodes (6.1), scanned by number: drmGetDevices2() merges platform devices
	 * without a device-tree name (every emulated card) into one. */
	for (int i = 128; i < 192 && k->fd < 0; i++) {
		snprintf(k->path, sizeof(k->path), "/dev/dri/renderD%d", i);
		k->fd = kmod_try_node(k->path);
		if (k->fd >= 0 && seen++ != card) {
			close(k->fd);
			k->fd = -1;
		}
	}
	if (k->fd < 0)
		return hmoe_err(HMOE_EDEVICE, "kmod: no hmoe card %d (%d found; is hmoe.ko loaded?)",
				card, seen);
	ret = kmod_ioctl(k, DRM_IOCTL_HMOE_GET_INFO, &k->info);
	if (ret) {
		ret = kmod_fail(k, ret, "get_info");
		hmoe_kmod_close(k);
		return ret;
	}
	if (k->info.version_major != HMOE_DRM_VERSION_MAJOR) {
		ret = hmoe_err(HMOE_EDEVICE, "kmod %s: driver uapi %u.%u, this program speaks %d.x",
			       k->path, k->info.version_major, k->info.version_minor,
			       HMOE_DRM_VERSION_MAJOR);
		hmoe_kmod_close(k);
		return ret;
	}
	return 0;
}

void hmoe_kmod_close(struct hmoe_kmod *k)
{
	if (k->fd >= 0)
		close(k->fd); /* the driver frees every BO and queue of the file */
	k->fd = -1;
}

int hmoe_kmod_check_mode(const struct hmoe_kmod *k, int mode)
{
	uint32_t format = (uint32_t)hmoe_fxp_mode_format(mode);
	uint32_t flags = (uint32_t)mode & ~HMOE_FORMAT_MASK;

	if (!hmoe_fxp_mode_valid(mode))
		return hmoe_err(HMOE_EINPUT, "kmod %s: %#x is not a kernel mode", k->path,
				(unsigned)mode);
	/* Another contract gives other bytes: the CPU fallback and cpu-fxp would disagree. */
	if (k->info.fxp_contract_version != HMOE_FXP_CONTRACT_VERSION)
		return hmoe_err(HMOE_EDEVICE, "kmod %s: the card runs fixed-point contract %u, "
				"this program contract %d (load the matching hmoe.ko)", k->path,
				k->info.fxp_contract_version, HMOE_FXP_CONTRACT_VERSION);
	/* (an A16 mode's name is the bare format name) */
	if (format >= 32 || !(k->info.weight_formats & (1u << format)))
		return hmoe_err(HMOE_EDEVICE, "kmod %s: card does not run weight format %s",
				k->path, hmoe_fxp_format_name((int)format | HMOE_FXP_A16));
	if (flags & ~k->info.format_flags)
		return hmoe_err(HMOE_EDEVICE, "kmod %s: card does not run mode %s (two activation "
				"planes; use the -a8 mode)", k->path, hmoe_fxp_format_name(mode));
	return 0;
}

/* ---------------------------------------------------------------- buffer objects */

int hmoe_kmod_bo_create(struct hmoe_kmod *k, uint64_t size, uint32_t flags,
			struct hmoe_kmod_bo *bo)
{
	struct drm_hmoe_bo_create c = { .size = size, .flags = flags };
	struct drm_hmoe_bo_info info = { 0 };
	struct drm_hmoe_bo_mmap_offset m = { 0 };
	char what[80];
	int ret;

	memset(bo, 0, sizeof(*bo));
	snprintf(what, sizeof(what), "create %s BO of %llu bytes",
		 flags & HMOE_BO_CARD ? "card" : "host", (unsigned long long)size);
	ret = kmod_ioctl(k, DRM_IOCTL_HMOE_BO_CREATE, &c);
	if (ret)
		return kmod_fail(k, ret, what);
	bo->handle = c.handle;
	bo->flags = flags;
	info.handle = c.handle;
	ret = kmod_ioctl(k, DRM_IOCTL_HMOE_BO_INFO, &info);
	if (ret) {
		ret = kmod_fail(k, ret, "bo_info");
		goto err_close;
	}
	bo->size = info.size;
	if (flags & HMOE_BO_CARD)
		return 0;
	m.handle = c.handle;
	ret = kmod_ioctl(k, DRM_IOCTL_HMOE_BO_MMAP_OFFSET, &m);
	if (ret) {
		ret = kmod_fail(k, ret, "bo_mmap_offset");
		goto err_close;
	}
	bo->map = mmap(NULL, bo->size, PROT_READ | PROT_WRITE, MAP_SHARED, k->fd, (off_t)m.offset);
	if (bo->map == MAP_FAILED) {
		bo->map = NULL;
		ret = hmoe_err(HMOE_EIO, "kmod %s: mmap of a %llu-byte BO: %s", k->path,
			       (unsigned long long)bo->size, strerror(errno));
		goto err_close;
	}
	return 0;

err_close:
	hmoe_kmod_bo_free(k, bo);
	return ret;
}

void hmoe_kmod_bo_free(struct hmoe_kmod *k, struct hmoe_kmod_bo *bo)
{
	struct drm_gem_close c = { .handle = bo->handle };

	if (bo->map)
		munmap(bo->map, bo->size);
	if (bo->handle)
		kmod_ioctl(k, DRM_IOCTL_GEM_CLOSE, &c);
	memset(bo, 0, sizeof(*bo));
}

/* ---------------------------------------------------------------- queues and jobs */

int hmoe_kmod_queue_create(struct hmoe_kmod *k, uint32_t direction, uint32_t ring_size,
			   uint32_t *queue_id)
{
	struct drm_hmoe_queue_create c = { .direction = direction, .ring_size = ring_size };
	int ret = kmod_ioctl(k, DRM_IOCTL_HMOE_QUEUE_CREATE, &c);

	if (ret)
		return kmod_fail(k, ret, "queue_create");
	*queue_id = c.queue_id;
	return 0;
}

int hmoe_kmod_queue_destroy(struct hmoe_kmod *k, uint32_t queue_id)
{
	struct drm_hmoe_queue_destroy d = { .queue_id = queue_id };
	int ret = kmod_ioctl(k, DRM_IOCTL_HMOE_QUEUE_DESTROY, &d);

	return ret ? kmod_fail(k, ret, "queue_destroy") : 0;
}

struct drm_hmoe_job hmoe_kmod_copy(const struct hmoe_kmod_bo *src, uint64_t src_offset,
				   const struct hmoe_kmod_bo *dst, uint64_t dst_offset,
				   uint64_t bytes)
{
	struct drm_hmoe_job j;

	memset(&j, 0, sizeof(j));
	j.type = HMOE_JOB_COPY;
	j.copy.src_handle = src->handle;
	j.copy.dst_handle = dst->handle;
	j.copy.src_offset = src_offset;
	j.copy.dst_offset = dst_offset;
	j.copy.size = bytes;
	return j;
}

struct drm_hmoe_job hmoe_kmod_ffn(const struct hmoe_kmod_bo *weights, uint64_t w_offset,
				  const struct hmoe_kmod_bo *x, uint64_t x_offset,
				  const struct hmoe_kmod_bo *y, uint64_t y_offset,
				  uint32_t mode, uint32_t dim, uint32_t inter,
				  uint32_t n_tokens)
{
	struct drm_hmoe_job j;

	memset(&j, 0, sizeof(j));
	j.type = HMOE_JOB_FFN;
	j.ffn.weights_handle = weights->handle;
	j.ffn.x_handle = x->handle;
	j.ffn.y_handle = y->handle;
	j.ffn.weights_offset = w_offset;
	j.ffn.x_offset = x_offset;
	j.ffn.y_offset = y_offset;
	j.ffn.format = mode;
	j.ffn.dim = dim;
	j.ffn.inter = inter;
	j.ffn.n_tokens = n_tokens;
	return j;
}

int hmoe_kmod_submit_chain(struct hmoe_kmod *k, uint32_t queue_id,
			   const struct drm_hmoe_job *jobs, uint32_t n, int in_fence_fd,
			   int *out_fence_fd, uint64_t *last_seqno)
{
	struct drm_hmoe_submit s = {
		.queue_id = queue_id, .n_jobs = n, .jobs = (uintptr_t)jobs,
		.job_size = sizeof(*jobs),
		.flags = (in_fence_fd >= 0 ? HMOE_SUBMIT_IN_FENCE : 0) |
			 (out_fence_fd ? HMOE_SUBMIT_FENCE_FD : 0),
		.in_fence_fd = in_fence_fd >= 0 ? in_fence_fd : 0,
	};
	int64_t give_up = kmod_now_ns() + 10000000000ll;
	char what[64];
	int ret;

	while ((ret = kmod_ioctl(k, DRM_IOCTL_HMOE_SUBMIT, &s)) == -EBUSY &&
	       kmod_now_ns() < give_up)
		usleep(50); /* ring full: the card drains it */
	if (ret) {
		snprintf(what, sizeof(what), "submit of %u jobs to queue %u", n, queue_id);
		return kmod_fail(k, ret, what);
	}
	if (out_fence_fd)
		*out_fence_fd = s.fence_fd;
	if (last_seqno)
		*last_seqno = s.seqno;
	return 0;
}

int hmoe_kmod_submit(struct hmoe_kmod *k, uint32_t queue_id, const struct drm_hmoe_job *jobs,
		     uint32_t n, uint64_t *last_seqno)
{
	return hmoe_kmod_submit_chain(k, queue_id, jobs, n, -1, NULL, last_seqno);
}

const char *hmoe_kmod_status_name(uint32_t status)
{
	static const char *const names[] = {
		[HMOE_JOB_PENDING] = "pending", [HMOE_JOB_RUNNING] = "running",
		[HMOE_JOB_OK] = "ok", [HMOE_JOB_ERROR] = "error",
		[HMOE_JOB_TIMEDOUT] = "timed out", [HMOE_JOB_CANCELLED] = "cancelled",
	};

	return status < sizeof(names) / sizeof(names[0]) ? names[status] : "unknown";
}

int hmoe_kmod_wait(struct hmoe_kmod *k, uint32_t queue_id, uint64_t seqno, int timeout_ms)
{
	struct drm_hmoe_wait w = {
		.queue_id = queue_id, .seqno = seqno,
		.timeout_ns = kmod_now_ns() + (int64_t)timeout_ms * 1000000,
	};
	char what[64];
	int ret;

	snprintf(what, sizeof(what), "wait for job %llu of queue %u", (unsigned long long)seqno,
		 queue_id);
	ret = kmod_ioctl(k, DRM_IOCTL_HMOE_WAIT, &w);
	if (ret)
		return kmod_fail(k, ret, what);
	if (w.status != HMOE_JOB_OK)
		return hmoe_err(HMOE_EDEVICE, "kmod %s: job %llu of queue %u ended %s", k->path,
				(unsigned long long)seqno, queue_id,
				hmoe_kmod_status_name(w.status));
	return 0;
}

/* ---------------------------------------------------------------- expert backend */

uint64_t hmoe_kmod_act_reserve(int mode, int dim)
{
	uint64_t groups = (uint64_t)hmoe_fxp_groups(dim);
	uint64_t planes = (uint64_t)hmoe_fxp_mode_planes(mode);
	/* a pair's x (planes, then scale words) and y rows, plus one tile's alignment */
	uint64_t per_pair = planes * groups * HMOE_FXP_GROUP + groups * sizeof(int32_t) +
			    (uint64_t)dim * sizeof(int32_t) + 2 * 64;

	return (uint64_t)HMOE_EXPERT_MAX_INFLIGHT * HMOE_KMOD_ACT_PAIRS * per_pair;
}

int hmoe_kmod_card_mem(int card, uint64_t *bytes)
{
	struct hmoe_kmod k;
	int ret = hmoe_kmod_open(&k, card);

	if (ret)
		return ret;
	*bytes = k.info.card_mem_bytes;
	hmoe_kmod_close(&k);
	return 0;
}
