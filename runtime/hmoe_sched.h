/* hmoe_sched: the token-batch scheduler of one MoE layer across expert devices.
 *
 * Given a placement (hmoe_place.h) and one expert backend per device plus one for the
 * host CPU tier, a run:
 *  1. plans: groups the layer's (token, slot) assignments by expert, looks each expert
 *     up in the placement and picks a live copy (the least-loaded replica in this batch;
 *     an expert with at least split_min assignments is split over all its live replicas);
 *     experts on no live device go to the CPU tier;
 *  2. gathers each device's share into that device's own buffers, rows grouped by
 *     expert: x (rows, dim), expert ids (rows, 1), and submits it as ONE call to the
 *     device's backend on the device's thread; all devices run concurrently, the CPU
 *     tier on the calling thread meanwhile;
 *  3. waits up to timeout_ms; a device that returned an error, or did not answer in
 *     time, is taken out of service for the rest of the run (logged and counted) and its
 *     assignments are planned again over the live devices (another replica, or the CPU
 *     tier); a hung device keeps its buffers, so a late answer cannot corrupt anything;
 *  4. scatters every row back to y at its (token, slot) place.
 * A backend's output for a token depends only on that token's activations and the
 * expert (hmoe_expert.h), so y is bit-identical whatever the placement, the number of
 * devices, micro-batching, replica choice or which devices failed.
 *
 * Residency: at create every device backend is told the experts the placement puts on
 * it (hmoe_expert_set_resident; the CPU tier holds everything). With replan_every = N,
 * after every N layer calls (run or submit) the placement is built again from the
 * routing counts seen so far (hmoe_place_build with the counts and max_replicas: hot
 * experts get replicas; deterministic; devices out of service get none), at the first
 * run or submit that finds no batch in flight (else it waits for one); each live device
 * whose set changed gets set_resident with its new set, then the new placement is
 * used. A device whose set_resident fails is taken out of service (logged, counted as
 * a failure). Outputs do not change: any copy of an expert gives the same bytes.
 *
 * Micro-batches: the batch's tokens are cut into micro_batches contiguous parts, each
 * planned and submitted (one call per device per micro-batch) in turn.
 *
 * Asynchronous use (the forward pass's two micro-batches, hmoe_expert.h submit/wait):
 * hmoe_sched_submit does steps 1-2 (and the CPU tier's share, on the calling thread) and
 * returns with the devices' shares queued on their threads; hmoe_sched_wait does 3-4.
 * Each of the HMOE_EXPERT_MAX_INFLIGHT tickets has its own buffers on every device, and
 * a device thread runs its queued jobs in submission order. A device that fails on one
 * batch is out of service for the other too: its job for the other batch is cancelled
 * (or, if already running, ignored) and those rows are planned again at that wait,
 * counted once as retried but not as another failure. The timeout counts from the
 * start of the wait.
 *
 * Threads: one per device, created at hmoe_sched_create. The CPU-tier backend may use
 * the caller's pool; each device backend must have its own pool (or none), since pools
 * are not reentrant. run, submit and wait are called from one thread (the caller's):
 * plan, statistics, slots and the retry list are that thread's; a device's job buffers
 * belong to the device thread from queueing until its job is done; the queue, done
 * flags, results and out_of_service are under the scheduler's lock.
 */
#ifndef HMOE_SCHED_H
#define HMOE_SCHED_H

#include <stdint.h>
#include <stdio.h>

#include "hmoe_expert.h"
#include "hmoe_place.h"

struct hmoe_pool;

/* ---- planning (pure, also timed by `hmoe bench sched`) ------------------------------ */

struct hmoe_sched_plan {
	int n_devices;       /* device d's share: order[first[d] .. first[d + 1]); the CPU
			      * tier is d = n_devices */
	int n_experts;
	int cap;             /* assignments the arrays hold */
	int n;               /* assignments planned */
	int *order;          /* (cap) assignment indices, by device, then expert ascending */
	int *first;          /* (n_devices + 2) */
	int64_t load[HMOE_PLACE_MAX_DEVICES + 1]; /* assignments per device in this plan */
	int *by_expert;      /* (cap) scratch: assignments sorted by expert */
	int *dev_of;         /* (cap) scratch: device of each by_expert position */
	int *count;          /* (n_experts + 1) scratch */
};

int hmoe_sched_plan_init(struct hmoe_sched_plan *pl, int n_devices, int n_experts);
void hmoe_sched_plan_fini(struct hmoe_sched_plan *pl);

/* Plans n assignments: subset[i] (or i when subset is NULL) indexes expert_ids.
 * alive: (n_devices) nonzero for devices in service, or NULL for all. Experts outside
 * [0, n_experts) are HMOE_EINPUT naming the layer and assignment. */
int hmoe_sched_plan(struct hmoe_sched_plan *pl, const struct hmoe_place *place, int layer,
		    const int *expert_ids, const int *subset, int n,
		    const unsigned char *alive, int split_min);

/* ---- the scheduler ------------------------------------------------------------------ */

struct hmoe_sched_device {
	char name[HMOE_PLACE_NAME];          /* "card0"; the CPU tier is "cpu" */
	struct hmoe_expert_backend *backend; /* owned by the scheduler from create on */
	struct hmoe_pool *pool;              /* the backend's own pool or NULL; owned too */
};

struct hmoe_sched_opts {
	int timeout_ms;      /* a device silent this long is hung; <= 0: 10000 */
	int micro_batches;   /* >= 1 */
	int split_min;       /* <= 0: 64 (two kernel tiles) */
	FILE *log;           /* failures and retries; NULL: stderr */
	int replan_every;    /* re-placement after every N layer calls; 0: never */
	int max_replicas;    /* of a hot expert at re-placement (<= 1: none) */
	int verbose;         /* print each re-placement on log */
};

#define HMOE_SCHED_MAX_DEVICES (HMOE_PLACE_MAX_DEVICES + 1)

struct hmoe_sched_stats {
	int64_t runs;                /* hmoe_sched_run calls (MoE layer passes) */
	int64_t micro_batches;
	int64_t submissions[HMOE_SCHED_MAX_DEVICES]; /* calls per device, CPU tier last */
	int64_t assignments[HMOE_SCHED_MAX_DEVICES]; /* rows computed per device */
	int64_t failures;            /* device calls that returned an error */
	int64_t timeouts;            /* device calls that did not answer in time */
	int64_t retried;             /* assignments planned again after a failure */
	int n_out_of_service;        /* devices taken out of service */
	int64_t replans;             /* re-placements done */
	int revived;                 /* devices brought back into service at a re-placement */
	int64_t experts_moved;       /* (layer, expert, device) copies made resident by them */
	double plan_s, gather_s, scatter_s, wait_s; /* host seconds in each step */
	int64_t *routed;             /* (n_layers, n_experts) assignments seen per expert */
};

struct hmoe_sched;

/* devices: n_devices cards (the placement's, in its order) then the CPU tier, so
 * n_devices + 1 entries; the scheduler owns their backends and pools from here on (even
 * on failure), and tells each card its experts (set_resident; its error is returned).
 * place stays the caller's and must outlive the scheduler. dim: hidden size; n_layers:
 * routing statistics rows. */
int hmoe_sched_create(struct hmoe_sched **out, const struct hmoe_place *place,
		      struct hmoe_sched_device *devices, int dim, int n_layers,
		      const struct hmoe_sched_opts *opts);
/* Joins the device threads and closes the backends. A device still hung is given
 * timeout_ms more; then its thread is left behind, and with it the scheduler's memory
 * (a deliberate leak: freeing it under a running thread would be worse). */
void hmoe_sched_free(struct hmoe_sched *s);

/* Computes batch->y; fails only when the CPU tier fails or on bad input. May come
 * between a submit and its wait while a ticket is free. */
int hmoe_sched_run(struct hmoe_sched *s, const struct hmoe_expert_batch *batch);

/* The same work split in two (see above): submit plans and queues batch (its micro=
 * parts but the last complete here; the last stays in flight) and returns a ticket;
 * wait(ticket) completes it exactly as run would. At most HMOE_EXPERT_MAX_INFLIGHT
 * submitted and not waited, waited in submission order; a violation is HMOE_EINTERNAL.
 * A submit that fails leaves nothing in flight. */
int hmoe_sched_submit(struct hmoe_sched *s, const struct hmoe_expert_batch *batch,
		      int *ticket);
int hmoe_sched_wait(struct hmoe_sched *s, int ticket);

const struct hmoe_sched_stats *hmoe_sched_stats(const struct hmoe_sched *s);
const char *hmoe_sched_device_name(const struct hmoe_sched *s, int d);
int hmoe_sched_n_devices(const struct hmoe_sched *s);  /* cards, without the CPU tier */
/* The activation planes every device takes (fixed point, all alike), or 0: then a batch's
 * tokens are quantised once by the scheduler and the devices get their rows. */
int hmoe_sched_planes(const struct hmoe_sched *s);
/* The placement in use (the caller's, or the latest re-placement's). */
const struct hmoe_place *hmoe_sched_place(const struct hmoe_sched *s);
/* Device d's backend (d = n_devices: the CPU tier), e.g. for hmoe_expert_resident. */
struct hmoe_expert_backend *hmoe_sched_device_backend(const struct hmoe_sched *s, int d);

/* ---- the "sched" expert backend (runtime/hmoe_expert_sched.c) ---------------------- */

/* hmoe_expert_sched_ops is declared with the other backends in hmoe_expert.h.
 * The scheduler behind a "sched" backend, or NULL when b is another backend. */
struct hmoe_sched *hmoe_expert_sched_get(const struct hmoe_expert_backend *b);
/* One line: devices, submissions, failures, timeouts, retried assignments (and
 * re-placements when replan_every is set). */
void hmoe_sched_print_stats(const struct hmoe_sched *s, FILE *f);

#endif
