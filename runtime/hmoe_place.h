/* hmoe_place: which device holds each routed expert of each MoE layer.
 *
 * Three tiers: expert devices (cards, each with a memory capacity in bytes), replicas of
 * hot experts on further devices, and the host CPU tier for experts that fit on no
 * device (the host always holds every expert, so the CPU tier can run anything: it is
 * also where failed work goes). A placement is a pure function of its inputs: the same
 * options always give the same placement.
 *
 * Building (hmoe_place_build):
 *  1. (layer, expert) pairs are taken hottest first (observed routing count, then
 *     expert, then layer ascending: equally hot experts are spread evenly over the
 *     layers, so each layer keeps the same share on cards);
 *  2. each goes to the device with the least load in its layer (the routing counts of
 *     that layer's experts it holds, or their number when there are no counts; layers
 *     run one after another, so balance matters per layer) among those with room for
 *     it, ties to the most free bytes, then the lowest index; none with room: the CPU
 *     tier;
 *  3. with counts and max_replicas > 1, an expert at least hot_ratio times its layer's
 *     mean count gets further copies right after its primary (so the fill cannot crowd
 *     them out), each on the least-loaded device with room that lacks it, up to
 *     max_replicas copies; replicas only take slots no primary needs (the total slots
 *     minus the number of experts), so they never push an expert to the CPU tier.
 *
 * File format (text, one placement; '#' starts a comment line):
 *   hmoe-place 1
 *   layers 61 experts 256 expert_bytes 45088768
 *   device card0 34359738368            one line per device, in index order
 *   layer 3 0 1 0,1 cpu ...             one line per MoE layer: n_experts entries, each
 *                                       "cpu" or comma-separated device indices
 * Loading checks everything (numbers, ranges, duplicates, capacity) and names the file
 * and line of the first problem.
 */
#ifndef HMOE_PLACE_H
#define HMOE_PLACE_H

#include <stddef.h>
#include <stdint.h>

#define HMOE_PLACE_MAX_DEVICES 64
#define HMOE_PLACE_MAX_REPLICAS 8
#define HMOE_PLACE_NAME 32

struct hmoe_place_device {
	char name[HMOE_PLACE_NAME];   /* [A-Za-z0-9_.-]+ */
	int64_t capacity_bytes;       /* expert memory of the device */
};

struct hmoe_place_opts {
	int n_layers, n_experts;
	const unsigned char *is_moe;          /* (n_layers) nonzero: an MoE layer */
	int64_t expert_bytes;                 /* bytes one expert takes on a device (packed) */
	int n_devices;                        /* 0..HMOE_PLACE_MAX_DEVICES */
	const struct hmoe_place_device *devices;
	const int64_t *counts;                /* (n_layers, n_experts) routing counts, or NULL */
	int max_replicas;                     /* copies of a hot expert at most; <= 1: none */
	double hot_ratio;                     /* <= 0: 2.0 */
};

struct hmoe_place {
	int n_layers, n_experts, n_devices;
	int64_t expert_bytes;
	struct hmoe_place_device devices[HMOE_PLACE_MAX_DEVICES];
	int64_t used_bytes[HMOE_PLACE_MAX_DEVICES];
	unsigned char *is_moe;   /* (n_layers) */
	uint8_t *n_copies;       /* (n_layers, n_experts) devices holding it; 0: CPU tier */
	int8_t *copies;          /* (n_layers, n_experts, HMOE_PLACE_MAX_REPLICAS) device ids,
				  * first = primary */
};

int hmoe_place_build(struct hmoe_place **out, const struct hmoe_place_opts *o);
void hmoe_place_free(struct hmoe_place *p);

/* Devices holding (layer, expert): returns their number (0: CPU tier only) and points
 * *devs at their ids. */
static inline int hmoe_place_copies(const struct hmoe_place *p, int layer, int expert,
				    const int8_t **devs)
{
	size_t i = (size_t)layer * (size_t)p->n_experts + (size_t)expert;

	*devs = p->copies + i * HMOE_PLACE_MAX_REPLICAS;
	return p->n_copies[i];
}

/* Summary numbers: experts on the CPU tier, experts with more than one copy. */
void hmoe_place_summary(const struct hmoe_place *p, int *n_cpu, int *n_replicated,
			int *n_placed);

int hmoe_place_save(const struct hmoe_place *p, const char *path);
int hmoe_place_load(struct hmoe_place **out, const char *path);
/* Checks that a loaded placement fits a model: same layers, experts, MoE layers and
 * expert size; the error names `what` (the file). */
int hmoe_place_check(const struct hmoe_place *p, int n_layers, int n_experts,
		     const unsigned char *is_moe, int64_t expert_bytes, const char *what);
/* Nonzero when both hold the same assignment. */
int hmoe_place_equal(const struct hmoe_place *a, const struct hmoe_place *b);

#endif
