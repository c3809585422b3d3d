/* SPDX-License-Identifier: GPL-2.0 */
/*
 * hmoe_drv.h: the types every part of hmoe.ko shares: the device, the per-file state,
 * buffer objects, queues and jobs, and the backend ops table that hides the emulated
 * card (hmoe_emu.c) and the PCIe card (hmoe_pci.c) from the rest of the driver.
 *
 * Files: hmoe_drv.c (module, DRM driver, get-info, files), hmoe_gem.c (BOs),
 * hmoe_job.c (queues, submit, fences, wait, hang handling), hmoe_emu.c, hmoe_pci.c
 * (backends), hmoe_hwmon.c (power/energy), hmoe_debugfs.c (counters, fault injection).
 */
#ifndef HMOE_DRV_H
#define HMOE_DRV_H

#include <linux/atomic.h>
#include <linux/dma-fence.h>
#include <linux/kref.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>

#include <drm/drm_device.h>
#include <drm/drm_file.h>
#include <drm/drm_gem_shmem_helper.h>
#include <drm/drm_mm.h>

#include "hmoe_drm.h"

#define HMOE_DRIVER_NAME "hmoe"
#define HMOE_MAX_QUEUES_PER_FILE 64
#define HMOE_MAX_RING_SIZE 1024
#define HMOE_MAX_JOBS_PER_SUBMIT 256
#define HMOE_MAX_BOS_PER_JOB 3

struct hmoe_device;
struct hmoe_queue;
struct hmoe_job;

/* ---------------------------------------------------------------- backends */

/* What a card writes back when a job ends. The driver checks it against the job, so a
 * corrupted completion fails the job instead of being believed. */
#define HMOE_CMPL_MAGIC 0x484d4f45u /* "HMOE" */
struct hmoe_cmpl {
	u32 magic;  /* HMOE_CMPL_MAGIC */
	u32 status; /* HMOE_JOB_OK or HMOE_JOB_ERROR */
	u64 seqno;  /* the job's sequence number */
	u64 busy_ns; /* card time the job took (modeled on emu) */
};

struct hmoe_backend_ops {
	const char *name;
	/* Runs one job to completion, in the queue's worker (may sleep), and fills *cmpl.
	 * Returns 0 when the card completed it (successfully or not: see cmpl->status),
	 * -ETIMEDOUT when abort() ended a hung job, another negative errno if the job
	 * could not be started. */
	int (*run)(struct hmoe_device *hdev, struct hmoe_queue *q, struct hmoe_job *job,
		   struct hmoe_cmpl *cmpl);
	/* Called by the watchdog when a job of q ran past job_timeout_ms: makes run()
	 * return -ETIMEDOUT and resets the engine that q uses. Atomic-safe not required. */
	void (*abort)(struct hmoe_device *hdev, struct hmoe_queue *q);
	/* Energy used since the card was created, microjoules; *measured says whether it
	 * comes from a sensor (true) or from the model in the backend (false). */
	u64 (*energy_uj)(struct hmoe_device *hdev, bool *measured);
};

extern const struct hmoe_backend_ops hmoe_emu_ops;
extern const struct hmoe_backend_ops hmoe_pci_ops;

/* ---------------------------------------------------------------- device */

struct hmoe_device {
	struct drm_device drm;
	const struct hmoe_backend_ops *ops;
	void *backend; /* struct hmoe_emu / struct hmoe_pci_card */
	u32 backend_id;        /* HMOE_BACKEND_* */
	u32 n_compute_units;
	u32 weight_formats;    /* bits (1 << HMOE_FORMAT_*) */
	u32 format_flags;      /* HMOE_FORMAT_A16...: mode flags the compute units run */
	u32 fxp_contract_version; /* of the compute units (hls/hmoe_fxp.h) */
	u64 dma_bytes_per_sec; /* for get_info and the DMA model */

	/* Card memory: addresses handed to card BOs. */
	struct mutex mm_lock; /* protects mm and card_mem_used */
	struct drm_mm mm;
	u64 card_mem_bytes;
	u64 card_mem_used;

	/* Every live queue of every file, for debugfs and device teardown. */
	struct mutex queues_lock; /* protects queues */
	struct list_head queues;

	/* Fault injection (debugfs): the next N jobs on this card hang / fail / complete
	 * with a corrupted completion record. */
	atomic_t inject_hang;
	atomic_t inject_error;
	atomic_t inject_corrupt;

	/* Device-wide counters since creation. */
	atomic64_t resets;

	struct dentry *debugfs_dir;
	struct device *hwmon;
	u64 hwmon_last_uj;  /* energy at the previous power1_input read */
	u64 hwmon_last_ns;  /* monotonic time of that read */
	u64 hwmon_last_uw;  /* power returned then */
	struct mutex hwmon_lock; /* protects the three hwmon_last_* fields */
};

static inline struct hmoe_device *to_hmoe(struct drm_device *drm)
{
	return container_of(drm, struct hmoe_device, drm);
}

/* ---------------------------------------------------------------- files */

struct hmoe_file {
	struct hmoe_device *hdev;
	struct xarray queues; /* queue id -> struct hmoe_queue *, ids 1..HMOE_MAX_QUEUES_PER_FILE */
};

/* ---------------------------------------------------------------- BOs */

struct hmoe_bo {
	struct drm_gem_shmem_object base;
	u32 flags;               /* HMOE_BO_* */
	struct drm_mm_node node; /* card BOs: where in card memory */
};

static inline struct hmoe_bo *to_hmoe_bo(struct drm_gem_object *obj)
{
	return container_of(to_drm_gem_shmem_obj(obj), struct hmoe_bo, base);
}

struct drm_gem_object *hmoe_bo_create_object(struct drm_device *drm, size_t size);
/* Looks up handle in file and checks [offset, offset + size) lies inside it and that its
 * placement is `card` (true: card BO, false: host BO). Returns a referenced object. */
int hmoe_bo_lookup_range(struct drm_file *file, u32 handle, u64 offset, u64 size, bool card,
			 const char *what, struct drm_gem_object **out);

/* ---------------------------------------------------------------- queues and jobs */

struct hmoe_fence {
	struct dma_fence base;
	spinlock_t lock; /* the dma_fence lock of base */
};

struct hmoe_job {
	struct list_head link; /* in queue->pending */
	u64 seqno;
	u32 type; /* HMOE_JOB_* */
	struct hmoe_fence *fence;
	struct dma_fence *in_fence; /* must signal before the job starts, or NULL */
	struct drm_gem_object *bo[HMOE_MAX_BOS_PER_JOB]; /* referenced until the job ends */
	u64 offset[HMOE_MAX_BOS_PER_JOB];
	u32 n_bos;
	u64 size;                     /* copy: bytes */
	struct drm_hmoe_job_ffn ffn;  /* ffn: the validated request */
};

/* Per-queue counters, shown in debugfs. */
struct hmoe_queue_stats {
	u64 submitted;
	u64 ok;
	u64 errors;
	u64 bad_completions;
	u64 timeouts;
	u64 cancelled;
	u64 bytes;         /* copied by DMA jobs */
	u64 tokens;        /* run through expert FFN jobs */
	u64 modeled_ns;    /* card time the backend's model charged */
	u64 submit_ioctls;
};

struct hmoe_queue {
	struct kref ref;
	struct hmoe_device *hdev;
	struct list_head dev_link; /* in hdev->queues, under hdev->queues_lock */
	u32 id;
	u32 direction; /* HMOE_QUEUE_* */
	u32 ring_size;
	pid_t owner_pid;
	u64 fence_context;

	spinlock_t lock; /* protects everything below except run_work/timeout_work */
	struct list_head pending;   /* jobs not started, in seqno order */
	struct hmoe_job *running;   /* the job in the backend, or NULL */
	u64 next_seqno;             /* given to the next submitted job */
	u64 retired_seqno;          /* every job <= this has ended */
	bool dead;                  /* destroyed: no more submits */
	bool aborted;               /* the watchdog fired for the running job */
	struct {
		u64 seqno;
		u32 status;
	} *status; /* [ring_size]: by seqno % ring_size */
	struct hmoe_queue_stats stats;

	wait_queue_head_t done_wq;        /* woken when retired_seqno moves */
	struct work_struct run_work;      /* runs pending jobs, one at a time */
	struct delayed_work timeout_work; /* armed while a job is in the backend */
	wait_queue_head_t abort_wq;       /* backends sleep here while "hung" */
};

int hmoe_job_init(void);
void hmoe_job_fini(void);
void hmoe_queue_put(struct hmoe_queue *q);
void hmoe_file_queues_fini(struct hmoe_file *hf);
/* True when a backend's run() should give up because the watchdog fired. */
bool hmoe_queue_aborted(struct hmoe_queue *q);

int hmoe_ioctl_bo_create(struct drm_device *drm, void *data, struct drm_file *file);
int hmoe_ioctl_bo_mmap_offset(struct drm_device *drm, void *data, struct drm_file *file);
int hmoe_ioctl_bo_info(struct drm_device *drm, void *data, struct drm_file *file);
int hmoe_ioctl_bo_sync(struct drm_device *drm, void *data, struct drm_file *file);
int hmoe_ioctl_queue_create(struct drm_device *drm, void *data, struct drm_file *file);
int hmoe_ioctl_queue_destroy(struct drm_device *drm, void *data, struct drm_file *file);
int hmoe_ioctl_submit(struct drm_device *drm, void *data, struct drm_file *file);
int hmoe_ioctl_wait(struct drm_device *drm, void *data, struct drm_file *file);
int hmoe_ioctl_job_status(struct drm_device *drm, void *data, struct drm_file *file);

/* ---------------------------------------------------------------- device lifetime */

/* Registers a card whose backend fields are filled in (ops, backend, sizes):
 * card memory allocator, DRM node, hwmon, debugfs. Undo with hmoe_device_fini(). */
int hmoe_device_init(struct hmoe_device *hdev);
void hmoe_device_fini(struct hmoe_device *hdev);

int hmoe_hwmon_init(struct hmoe_device *hdev);
void hmoe_debugfs_init(struct hmoe_device *hdev);
void hmoe_debugfs_fini(struct hmoe_device *hdev);
void hmoe_debugfs_module_init(void);
void hmoe_debugfs_module_fini(void);

int hmoe_emu_module_init(void);
void hmoe_emu_module_fini(void);
int hmoe_pci_module_init(void);
void hmoe_pci_module_fini(void);

extern const struct drm_driver hmoe_drm_driver;
extern unsigned int hmoe_job_timeout_ms;

#endif /* HMOE_DRV_H */
