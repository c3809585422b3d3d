/* SPDX-License-Identifier: MIT */
/*
 * hmoe_drm.h: the user-space interface of hmoe.ko, the driver for hmoe expert cards.
 *
 * Used unchanged by the kernel module and by user space (runtime/hmoe_kmod.c, the in-VM
 * tests). The node is /dev/accel/accel* on kernels with the accel subsystem (6.2+) and a
 * render node /dev/dri/renderD* on older ones (Debian 12's 6.1); the driver name is "hmoe".
 *
 * Conventions (every ioctl):
 *  - structs use fixed-width types only, are padded explicitly to 8 bytes, carry
 *    pointers as __u64;
 *  - every field marked "in" is validated; every reserved/pad field and every flag bit
 *    not defined here must be zero, else the ioctl fails with -EINVAL;
 *  - fields marked "out" are written by the driver; their input value is ignored;
 *  - every object (BO handle, queue id) belongs to the open file that created it and
 *    dies with it; another file's ids are simply unknown there (-ENOENT).
 *
 * Object model:
 *  - buffer object (BO): a GEM object. Host BOs live in system memory and can be mmapped
 *    and shared as dma-bufs (PRIME, the generic DRM_IOCTL_PRIME_* ioctls); card BOs
 *    (HMOE_BO_CARD) live in card memory, count against get_info.card_mem_bytes and are
 *    reached only by jobs. Closed with the generic DRM_IOCTL_GEM_CLOSE.
 *  - queue: a ring of jobs of one direction (H2C DMA, C2H DMA, or compute) run in order.
 *  - job: a DMA copy between a host BO and a card BO, or one expert FFN over a tile of
 *    tokens. Each job gets a per-queue sequence number (first job of a queue: 1).
 *    A job holds references to its BOs until it completes, so closing a BO handle
 *    while a job uses it is safe.
 */
#ifndef HMOE_DRM_H
#define HMOE_DRM_H

#if defined(__KERNEL__)
#include <drm/drm.h>
#else
#include "drm.h" /* libdrm's copy: `pkg-config --cflags libdrm` */
#endif

#if defined(__cplusplus)
extern "C" {
#endif

#define HMOE_DRM_VERSION_MAJOR 1
#define HMOE_DRM_VERSION_MINOR 1 /* 1: ffn job modes (HMOE_FORMAT_A16), format_flags */

/* ---------------------------------------------------------------- get info */

#define HMOE_BACKEND_EMU 1 /* software card inside the module */
#define HMOE_BACKEND_PCI 2 /* a real card on PCIe */

/* Weight formats of the expert FFN (hls/hmoe_fxp.h), as bits of weight_formats. */
#define HMOE_FORMAT_FP8 0
#define HMOE_FORMAT_INT8 1
#define HMOE_FORMAT_INT4 2

/* The `format` field of an FFN job is a mode (hls/hmoe_fxp.h, "kernel modes"): the
 * weight format in bits 0-7 and mode flags above it. Every flag set must be one the
 * card lists in get_info.format_flags, else the job is refused (-EINVAL).
 *  HMOE_FORMAT_A16: each activation is two int8 planes (hi, lo), q = 128 * hi + lo
 *  (fixed-point contract 2+): the x buffer holds two planes per token and the card
 *  makes two int8 passes over the weights. Without it: one plane, |q| <= 127 (A8). */
#define HMOE_FORMAT_MASK 0xffu
#define HMOE_FORMAT_A16 (1u << 8)
#define HMOE_FORMAT_FLAGS_ALL HMOE_FORMAT_A16

struct drm_hmoe_get_info {
	__u32 version_major;        /* out: HMOE_DRM_VERSION_MAJOR */
	__u32 version_minor;        /* out */
	__u32 backend;              /* out: HMOE_BACKEND_* */
	__u32 n_compute_units;      /* out: expert jobs that can run at once */
	__u64 card_mem_bytes;       /* out: card memory for HMOE_BO_CARD BOs, bytes */
	__u64 card_mem_free_bytes;  /* out: of which not allocated now, bytes */
	__u32 weight_formats;       /* out: bit (1 << HMOE_FORMAT_*) per supported format */
	__u32 fxp_contract_version; /* out: fixed-point contract of the compute units */
	__u32 max_queues;           /* out: queues per open file */
	__u32 max_ring_size;        /* out: largest queue ring, jobs */
	__u32 max_jobs_per_submit;  /* out */
	__u32 max_tokens_per_job;   /* out: token tile of one expert FFN job */
	__u64 dma_bytes_per_sec;    /* out: DMA engine bandwidth (modeled on emu), bytes/s */
	__u32 format_flags;         /* out: the HMOE_FORMAT_* mode flags FFN jobs may set
				     * (uapi 1.1; a 1.0 driver leaves it 0: A8 only) */
	__u32 pad;                  /* in: zero */
	__u64 reserved[3];          /* in: zero */
};

/* ---------------------------------------------------------------- buffer objects */

#define HMOE_BO_CARD (1u << 0) /* placed in card memory: no mmap, no export */
#define HMOE_BO_FLAGS_ALL HMOE_BO_CARD

/* Largest BO: 16 GiB. */
#define HMOE_BO_MAX_BYTES (1ull << 34)

struct drm_hmoe_bo_create {
	__u64 size;     /* in: bytes, 1..HMOE_BO_MAX_BYTES, rounded up to pages */
	__u32 flags;    /* in: HMOE_BO_* */
	__u32 handle;   /* out: GEM handle */
	__u64 reserved; /* in: zero */
};

struct drm_hmoe_bo_mmap_offset {
	__u32 handle;   /* in: host BO */
	__u32 pad;      /* in: zero */
	__u64 offset;   /* out: pass to mmap() on the node's fd */
	__u64 reserved; /* in: zero */
};

#define HMOE_BO_INFO_IMPORTED (1u << 31) /* out flag: imported dma-buf (PRIME) */

struct drm_hmoe_bo_info {
	__u32 handle;    /* in */
	__u32 flags;     /* out: HMOE_BO_* | HMOE_BO_INFO_IMPORTED */
	__u64 size;      /* out: bytes (page-rounded) */
	__u64 card_addr; /* out: card BOs: address in card memory; host BOs: 0 */
	__u64 reserved;  /* in: zero */
};

/* Makes CPU writes visible to the card (TO_CARD) or card writes visible to the CPU
 * (FROM_CARD) for a range of a host BO. Needed for imported dma-bufs; cheap otherwise. */
#define HMOE_SYNC_TO_CARD 1
#define HMOE_SYNC_FROM_CARD 2

struct drm_hmoe_bo_sync {
	__u32 handle;    /* in: host BO */
	__u32 direction; /* in: HMOE_SYNC_* */
	__u64 offset;    /* in: bytes */
	__u64 size;      /* in: bytes, offset + size <= BO size */
	__u64 reserved;  /* in: zero */
};

/* ---------------------------------------------------------------- queues */

#define HMOE_QUEUE_H2C 1     /* DMA host BO -> card BO */
#define HMOE_QUEUE_C2H 2     /* DMA card BO -> host BO */
#define HMOE_QUEUE_COMPUTE 3 /* expert FFN jobs on card BOs */

struct drm_hmoe_queue_create {
	__u32 direction; /* in: HMOE_QUEUE_* */
	__u32 ring_size; /* in: jobs in flight, power of two, 1..max_ring_size */
	__u32 flags;     /* in: zero (none defined) */
	__u32 queue_id;  /* out: nonzero */
	__u64 reserved;  /* in: zero */
};

/* Fails every job of the queue that has not completed (status CANCELLED), waits for the
 * one running, and frees the queue. A second destroy of the same id fails with -ENOENT. */
struct drm_hmoe_queue_destroy {
	__u32 queue_id; /* in */
	__u32 pad;      /* in: zero */
	__u64 reserved; /* in: zero */
};

/* ---------------------------------------------------------------- jobs */

#define HMOE_JOB_COPY 1 /* H2C or C2H queue */
#define HMOE_JOB_FFN 2  /* compute queue */

/* DMA copy of `size` bytes. On an H2C queue src is a host BO and dst a card BO; on a C2H
 * queue the reverse. Both ranges must lie inside their BOs. */
struct drm_hmoe_job_copy {
	__u32 src_handle;
	__u32 dst_handle;
	__u64 src_offset; /* bytes */
	__u64 dst_offset; /* bytes */
	__u64 size;       /* bytes, > 0 */
	__u64 reserved[3];
};

/* One expert FFN y = W2(silu(W1 x) * W3 x) over n_tokens tokens, with the layouts of
 * hls/hmoe_ffn.h (groups = ceil(dim / 128), planes = 2 with HMOE_FORMAT_A16, else 1).
 * All three BOs are card BOs; the ranges, in bytes, must lie inside them:
 *   weights: the expert's weight pack for (format & HMOE_FORMAT_MASK, dim, inter),
 *            hmoe_fxp_expert_lines() lines of 64 bytes
 *   x:       xq int8 (n_tokens, planes, groups * 128), then xs int32 (n_tokens, groups):
 *            n_tokens * groups * (128 * planes + 4) bytes
 *   y:       int32 (n_tokens, dim), Q16 fixed point: n_tokens * dim * 4 bytes
 * Offsets are multiples of 64.  */
struct drm_hmoe_job_ffn {
	__u32 weights_handle;
	__u32 x_handle;
	__u32 y_handle;
	__u32 format;   /* mode: HMOE_FORMAT_FP8/INT8/INT4 | optional HMOE_FORMAT_A16 */
	__u64 weights_offset;
	__u64 x_offset;
	__u64 y_offset;
	__u32 dim;      /* model hidden size (input/output of the expert) */
	__u32 inter;    /* expert intermediate size */
	__u32 n_tokens; /* 1..max_tokens_per_job */
	__u32 pad;
};

struct drm_hmoe_job {
	__u32 type;  /* in: HMOE_JOB_* */
	__u32 flags; /* in: zero */
	union {
		struct drm_hmoe_job_copy copy;
		struct drm_hmoe_job_ffn ffn;
		__u64 raw[7];
	};
};

#define HMOE_SUBMIT_FENCE_FD (1u << 0) /* also return a sync_file fd for the last job */
#define HMOE_SUBMIT_IN_FENCE (1u << 1) /* the first job waits for in_fence_fd */
#define HMOE_SUBMIT_FLAGS_ALL (HMOE_SUBMIT_FENCE_FD | HMOE_SUBMIT_IN_FENCE)

/* Queues n_jobs jobs, in order, atomically: either all are queued or none. Fails with
 * -EBUSY if the ring has fewer than n_jobs free slots (wait, then retry).
 * With HMOE_SUBMIT_IN_FENCE the first job starts only after the sync_file in_fence_fd
 * signals (e.g. the fence_fd of a submit to another queue, or a GPU's); if that fence
 * signals an error, the job ends CANCELLED. This chains H2C -> compute -> C2H without
 * a wait in between. */
struct drm_hmoe_submit {
	__u32 queue_id; /* in */
	__u32 n_jobs;   /* in: 1..max_jobs_per_submit */
	__u64 jobs;     /* in: pointer to struct drm_hmoe_job[n_jobs] */
	__u32 job_size; /* in: sizeof(struct drm_hmoe_job) */
	__u32 flags;    /* in: HMOE_SUBMIT_* */
	__u64 seqno;    /* out: sequence number of the last job; the first is seqno-n_jobs+1 */
	__s32 fence_fd;    /* out: with HMOE_SUBMIT_FENCE_FD, else -1 */
	__s32 in_fence_fd; /* in: with HMOE_SUBMIT_IN_FENCE, a sync_file fd; else zero */
	__u64 reserved;    /* in: zero */
};

/* Job status, as returned by wait and job_status. */
#define HMOE_JOB_PENDING 0   /* queued, not started */
#define HMOE_JOB_RUNNING 1
#define HMOE_JOB_OK 2
#define HMOE_JOB_ERROR 3     /* the card reported an error, or a bad completion */
#define HMOE_JOB_TIMEDOUT 4  /* the card hung on it; the queue was reset */
#define HMOE_JOB_CANCELLED 5 /* never ran: its queue was reset or destroyed */

/* Waits until job `seqno` of the queue has completed, or until CLOCK_MONOTONIC reaches
 * timeout_ns (absolute). Returns 0 with `status` set, or -ETIME at the deadline
 * (the wait may be retried), -EINTR on a signal. */
struct drm_hmoe_wait {
	__u32 queue_id;   /* in */
	__u32 flags;      /* in: zero */
	__u64 seqno;      /* in: 1..last submitted */
	__s64 timeout_ns; /* in: absolute CLOCK_MONOTONIC deadline, ns */
	__u32 status;     /* out: HMOE_JOB_* */
	__u32 pad;        /* in: zero */
	__u64 reserved;   /* in: zero */
};

/* Status of one job without waiting. A queue remembers the statuses of its last
 * ring_size jobs; older ones fail with -ENOENT. */
struct drm_hmoe_job_status {
	__u32 queue_id; /* in */
	__u32 pad;      /* in: zero */
	__u64 seqno;    /* in */
	__u32 status;   /* out: HMOE_JOB_* */
	__u32 pad2;     /* in: zero */
	__u64 reserved; /* in: zero */
};

/* ---------------------------------------------------------------- ioctl numbers */

#define DRM_HMOE_GET_INFO 0x00
#define DRM_HMOE_BO_CREATE 0x01
#define DRM_HMOE_BO_MMAP_OFFSET 0x02
#define DRM_HMOE_BO_INFO 0x03
#define DRM_HMOE_BO_SYNC 0x04
#define DRM_HMOE_QUEUE_CREATE 0x05
#define DRM_HMOE_QUEUE_DESTROY 0x06
#define DRM_HMOE_SUBMIT 0x07
#define DRM_HMOE_WAIT 0x08
#define DRM_HMOE_JOB_STATUS 0x09

#define DRM_IOCTL_HMOE_GET_INFO \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_HMOE_GET_INFO, struct drm_hmoe_get_info)
#define DRM_IOCTL_HMOE_BO_CREATE \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_HMOE_BO_CREATE, struct drm_hmoe_bo_create)
#define DRM_IOCTL_HMOE_BO_MMAP_OFFSET \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_HMOE_BO_MMAP_OFFSET, struct drm_hmoe_bo_mmap_offset)
#define DRM_IOCTL_HMOE_BO_INFO \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_HMOE_BO_INFO, struct drm_hmoe_bo_info)
#define DRM_IOCTL_HMOE_BO_SYNC \
	DRM_IOW(DRM_COMMAND_BASE + DRM_HMOE_BO_SYNC, struct drm_hmoe_bo_sync)
#define DRM_IOCTL_HMOE_QUEUE_CREATE \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_HMOE_QUEUE_CREATE, struct drm_hmoe_queue_create)
#define DRM_IOCTL_HMOE_QUEUE_DESTROY \
	DRM_IOW(DRM_COMMAND_BASE + DRM_HMOE_QUEUE_DESTROY, struct drm_hmoe_queue_destroy)
#define DRM_IOCTL_HMOE_SUBMIT \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_HMOE_SUBMIT, struct drm_hmoe_submit)
#define DRM_IOCTL_HMOE_WAIT \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_HMOE_WAIT, struct drm_hmoe_wait)
#define DRM_IOCTL_HMOE_JOB_STATUS \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_HMOE_JOB_STATUS, struct drm_hmoe_job_status)

#if defined(__cplusplus)
}
#endif

#endif /* HMOE_DRM_H */
