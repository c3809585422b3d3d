/* hmoe_kmod: the user-space client of hmoe.ko (kmod/uapi/hmoe_drm.h), on libdrm: open a
 * card's node, buffer objects, queues, submit, wait. The expert scheduler's "kmod"
 * backend is built on it; `hmoe bench kmod` measures it.
 *
 * Every function returns 0 or a negative HMOE_E* code with a message naming the node and
 * the operation (hmoe_err.h). A missing card or driver is HMOE_EDEVICE; a request the
 * driver rejects as invalid is HMOE_EINPUT. Not thread-safe per handle: one struct
 * hmoe_kmod per thread, or a lock around it.
 */
#ifndef HMOE_KMOD_H
#define HMOE_KMOD_H

#include <stddef.h>
#include <stdint.h>

#include "hmoe_drm.h"

struct hmoe_kmod {
	int fd;
	char path[64];                 /* the node, for messages */
	struct drm_hmoe_get_info info; /* the card's capabilities */
	uint64_t n_ioctls;             /* ioctls issued through this handle */
};

struct hmoe_kmod_bo {
	uint32_t handle;
	uint32_t flags; /* HMOE_BO_* */
	uint64_t size;  /* bytes (page-rounded by the driver) */
	void *map;      /* host BOs: CPU mapping of `size` bytes; card BOs: NULL */
};

/* Opens the card-th hmoe card (0-based, in node order: accel nodes, then render nodes). */
int hmoe_kmod_open(struct hmoe_kmod *k, int card);
void hmoe_kmod_close(struct hmoe_kmod *k);

/* A host BO (mapped) or, with HMOE_BO_CARD, a card BO. */
int hmoe_kmod_bo_create(struct hmoe_kmod *k, uint64_t size, uint32_t flags,
			struct hmoe_kmod_bo *bo);
void hmoe_kmod_bo_free(struct hmoe_kmod *k, struct hmoe_kmod_bo *bo);

int hmoe_kmod_queue_create(struct hmoe_kmod *k, uint32_t direction, uint32_t ring_size,
			   uint32_t *queue_id);
int hmoe_kmod_queue_destroy(struct hmoe_kmod *k, uint32_t queue_id);

/* 0 when the card runs kernel mode `mode` (enum hmoe_fxp_format | optional
 * HMOE_FXP_A16, hls/hmoe_fxp.h) under this program's fixed-point contract; else an
 * HMOE_EDEVICE error naming the node and what it lacks (contract version, weight format,
 * mode flag), or HMOE_EINPUT for a mode that is none. A card that passes gives
 * hmoe_ffn()'s bytes for that mode. */
int hmoe_kmod_check_mode(const struct hmoe_kmod *k, int mode);

/* Job builders. An FFN job's `mode` goes into drm_hmoe_job_ffn.format unchanged. */
struct drm_hmoe_job hmoe_kmod_copy(const struct hmoe_kmod_bo *src, uint64_t src_offset,
				   const struct hmoe_kmod_bo *dst, uint64_t dst_offset,
				   uint64_t bytes);
struct drm_hmoe_job hmoe_kmod_ffn(const struct hmoe_kmod_bo *weights, uint64_t w_offset,
				  const struct hmoe_kmod_bo *x, uint64_t x_offset,
				  const struct hmoe_kmod_bo *y, uint64_t y_offset,
				  uint32_t mode, uint32_t dim, uint32_t inter,
				  uint32_t n_tokens);

/* Queues n jobs (all or none); *last_seqno gets the last job's sequence number.
 * A full ring is waited out (up to 10 s), not reported. */
int hmoe_kmod_submit(struct hmoe_kmod *k, uint32_t queue_id, const struct drm_hmoe_job *jobs,
		     uint32_t n, uint64_t *last_seqno);
/* The same, chained: the first job waits for the sync_file in_fence_fd (-1: none), and
 * with out_fence_fd non-NULL a sync_file fd of the last job is returned (the caller
 * closes it). Chains H2C -> compute -> C2H with one wait at the end. */
int hmoe_kmod_submit_chain(struct hmoe_kmod *k, uint32_t queue_id,
			   const struct drm_hmoe_job *jobs, uint32_t n, int in_fence_fd,
			   int *out_fence_fd, uint64_t *last_seqno);
/* Waits for job seqno up to timeout_ms; a job that ended other than OK is an
 * HMOE_EDEVICE error naming its status. */
int hmoe_kmod_wait(struct hmoe_kmod *k, uint32_t queue_id, uint64_t seqno, int timeout_ms);

const char *hmoe_kmod_status_name(uint32_t status);

/* ---- what the kmod expert backend needs of a card (runtime/hmoe_expert_kmod.c) ---- */

/* (token, expert) pairs per in-flight batch that the kmod expert backend's activation
 * and output card buffers are sized for when it keeps expert memory free for them; a
 * larger batch still runs when the card has room left. */
#define HMOE_KMOD_ACT_PAIRS 4096
/* Card bytes the kmod expert backend keeps for the activation and output buffers of
 * its HMOE_EXPERT_MAX_INFLIGHT batches in kernel mode `mode` at hidden size dim:
 * HMOE_KMOD_ACT_PAIRS pairs each (x planes, scales and Q16 y, 64-byte aligned tiles). */
uint64_t hmoe_kmod_act_reserve(int mode, int dim);
/* Card memory as the driver reports it (GET_INFO card_mem_bytes) of the card-th hmoe
 * card: opens the node, asks, closes. Errors as hmoe_kmod_open. */
int hmoe_kmod_card_mem(int card, uint64_t *bytes);

#endif
