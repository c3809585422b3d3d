/* hmoe_sched: planning, device threads, timeouts and retries of one MoE layer's routed
 * work across expert devices (see hmoe_sched.h). */
#include "hmoe_sched.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hmoe_clock.h"
#include "hmoe_err.h"
#include "hmoe_fxp_pack.h"
#include "hmoe_pool.h"

/* ---- planning ----------------------------------------------------------------------- */

int hmoe_sched_plan_init(struct hmoe_sched_plan *pl, int n_devices, int n_experts)
{
	memset(pl, 0, sizeof(*pl));
	if (n_devices < 0 || n_devices > HMOE_PLACE_MAX_DEVICES || n_experts <= 0)
		return hmoe_err(HMOE_EINPUT, "sched plan: %d devices, %d experts", n_devices,
				n_experts);
	pl->n_devices = n_devices;
	pl->n_experts = n_experts;
	pl->first = calloc((size_t)n_devices + 2, sizeof(int));
	pl->count = calloc((size_t)n_experts + 1, sizeof(int));
	if (!pl->first || !pl->count) {
		hmoe_sched_plan_fini(pl);
		return hmoe_err(HMOE_ENOMEM, "sched plan: out of memory");
	}
	return 0;
}

void hmoe_sched_plan_fini(struct hmoe_sched_plan *pl)
{
	free(pl->order);
	free(pl->first);
	free(pl->by_expert);
	free(pl->dev_of);
	free(pl->count);
	memset(pl, 0, sizeof(*pl));
}

static int plan_reserve(struct hmoe_sched_plan *pl, int n)
{
	int *a, *b, *c;

	if (n <= pl->cap)
		return 0;
	a = realloc(pl->order, (size_t)n * sizeof(int));
	if (a)
		pl->order = a;
	b = realloc(pl->by_expert, (size_t)n * sizeof(int));
	if (b)
		pl->by_expert = b;
	c = realloc(pl->dev_of, (size_t)n * sizeof(int));
	if (c)
		pl->dev_of = c;
	if (!a || !b || !c)
		return hmoe_err(HMOE_ENOMEM, "sched plan: out of memory for %d assignments", n);
	pl->cap = n;
	return 0;
}

int hmoe_sched_plan(struct hmoe_sched_plan *pl, const struct hmoe_place *place, int layer,
		    const int *expert_ids, const int *subset, int n,
		    const unsigned char *alive, int split_min)
{
	int E = pl->n_experts, D = pl->n_devices, cpu = D, ret;
	int *count = pl->count, *first = pl->first;

	ret = plan_reserve(pl, n);
	if (ret)
		return ret;
	pl->n = n;
	if (split_min <= 0)
		split_min = 64;
	/* 1. counting sort by expert, stable in assignment order */
	memset(count, 0, (size_t)(E + 1) * sizeof(int));
	for (int i = 0; i < n; i++) {
		int a = subset ? subset[i] : i, e = expert_ids[a];

		if (e < 0 || e >= E)
			return hmoe_err(HMOE_EINPUT, "sched: layer %d assignment %d: expert %d outside "
					"[0, %d)", layer, a, e, E);
		count[e + 1]++;
	}
	for (int e = 0; e < E; e++)
		count[e + 1] += count[e];
	for (int i = 0; i < n; i++) {
		int a = subset ? subset[i] : i;

		pl->by_expert[count[expert_ids[a]]++] = a;
	}
	/* count[e] is now the end of expert e's run */

	/* 2. a device for each expert's run (or each part of it) */
	memset(pl->load, 0, sizeof(pl->load));
	for (int e = 0, lo = 0; e < E; lo = count[e], e++) {
		int hi = count[e], m = hi - lo, live[HMOE_PLACE_MAX_REPLICAS], n_live = 0;
		const int8_t *devs;
		int n_copies;

		if (m == 0)
			continue;
		n_copies = hmoe_place_copies(place, layer, e, &devs);
		for (int c = 0; c < n_copies; c++)
			if (!alive || alive[devs[c]])
				live[n_live++] = devs[c];
		if (n_live == 0) {
			for (int k = lo; k < hi; k++)
				pl->dev_of[k] = cpu;
			pl->load[cpu] += m;
		} else if (n_live > 1 && m >= split_min) {
			for (int r = 0; r < n_live; r++) {
				int a = lo + (int)((int64_t)m * r / n_live);
				int b = lo + (int)((int64_t)m * (r + 1) / n_live);

				for (int k = a; k < b; k++)
					pl->dev_of[k] = live[r];
				pl->load[live[r]] += b - a;
			}
		} else {
			int best = live[0];

			for (int r = 1; r < n_live; r++)
				if (pl->load[live[r]] < pl->load[best])
					best = live[r];
			for (int k = lo; k < hi; k++)
				pl->dev_of[k] = best;
			pl->load[best] += m;
		}
	}
	/* 3. counting sort by device, stable: each device's rows stay grouped by expert */
	memset(first, 0, (size_t)(D + 2) * sizeof(int));
	for (int d = 0; d <= D; d++)
		first[d + 1] = first[d] + (int)pl->load[d];
	{
		int at[HMOE_PLACE_MAX_DEVICES + 1];

		memcpy(at, first, (size_t)(D + 1) * sizeof(int));
		for (int k = 0; k < n; k++)
			pl->order[at[pl->dev_of[k]]++] = pl->by_expert[k];
	}
	return 0;
}

/* ---- the scheduler ------------------------------------------------------------------ */

/* Slots: a submitted batch (ticket k) uses slot k of every device, so two batches in
 * flight never share a buffer. HMOE_EXPERT_MAX_INFLIGHT slots. */
#define SCHED_SLOTS HMOE_EXPERT_MAX_INFLIGHT

/* One slot's work on one device. The buffers are written by the caller only while the
 * job is not queued, and read by the device thread while it is: a hung device keeps its
 * queued jobs' buffers to itself (it is out of service, so nobody gathers into them). */
struct sched_job {
	struct hmoe_expert_batch batch;
	int cap;
	float *x;                    /* (cap, dim) gathered activations */
	int8_t *xq;                  /* (cap, planes, groups * 128) their quantised form */
	int32_t *xs;                 /* (cap, groups) when the batch carries it */
	int *ids;                    /* (cap) expert of each row */
	float *y;                    /* (cap, dim) outputs */
	int *assign;                 /* (cap) assignment index of each row */
	int rows;                    /* rows of the current job */

	/* protected by s->lock: */
	int done;                    /* the last queued job has finished (or was cancelled) */
	int ret;
	char err[256];
};

/* One device: its backend, thread and per-slot jobs. */
struct sched_dev {
	struct hmoe_sched *s;
	int index;
	struct hmoe_sched_device d;
	pthread_t thread;
	int has_thread;

	/* protected by s->lock: */
	pthread_cond_t wake;         /* a job was queued, or stop */
	int queue[SCHED_SLOTS];      /* slots queued on the thread, oldest first: queue[0]
				      * is running or next */
	int n_queued;
	int out_of_service;          /* failed or hung: not used; its queued jobs are
				      * cancelled (an error, not a hang, may be revived) */
	int hung;                    /* taken out for a timeout: never probed again */

	struct sched_job job[SCHED_SLOTS];
};

/* A submitted batch, until it is waited. Touched by the calling thread only. */
struct sched_slot {
	int busy;
	struct hmoe_expert_batch b;  /* the part in flight (the last part of the batch) */
	int posted[HMOE_PLACE_MAX_DEVICES]; /* devices running a share of it */
	int n_posted;
	int cpu_ret;                 /* the CPU tier's result (it runs at submit) */
	char cpu_err[256];
	int8_t *xq;                  /* (xq_cap tokens, planes, groups * 128): the batch's */
	int32_t *xs;                 /* tokens quantised once, when the devices are all */
	int xq_cap;                  /* fixed point with the same planes */
};

struct hmoe_sched {
	const struct hmoe_place *place;
	int n_devices;               /* cards; devs[n_devices] is the CPU tier */
	int dim, n_layers;
	int planes, groups;          /* every device's activation planes (0: not all the
				      * same fixed-point kind) and groups(dim) */
	struct hmoe_sched_opts opts;
	struct sched_dev *devs;      /* [n_devices + 1] */

	pthread_mutex_t lock;        /* protects the device fields marked above and stop */
	pthread_cond_t done;         /* a device finished a job */
	int stop;

	/* the calling thread's state (submit, wait, run are called from one thread) */
	struct hmoe_sched_plan plan;
	unsigned char alive[HMOE_PLACE_MAX_DEVICES];
	int *retry;                  /* (retry_cap) assignments to plan again */
	int retry_cap;
	struct sched_slot slot[SCHED_SLOTS];
	int64_t n_submitted, n_waited; /* tickets: slot = count % SCHED_SLOTS */
	struct hmoe_sched_stats stats;
	/* re-placement (the calling thread's) */
	struct hmoe_place *own_place; /* the latest re-placement (place points at it), or NULL */
	uint8_t *mask_old, *mask_new; /* (n_layers, n_experts) scratch */
	int64_t since_replan;         /* layer calls since the last re-placement */
	int replan_pending;           /* due, waiting for a point with nothing in flight */
};

static void *dev_thread(void *arg)
{
	struct sched_dev *dv = arg;
	struct hmoe_sched *s = dv->s;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		struct hmoe_expert_backend *b = dv->d.backend;
		struct sched_job *job;
		int ret;

		while (!s->stop && !dv->n_queued)
			pthread_cond_wait(&dv->wake, &s->lock);
		if (s->stop)
			break;
		job = &dv->job[dv->queue[0]];
		if (dv->out_of_service) {
			/* queued behind the job that failed or hung: its rows are planned
			 * again elsewhere */
			ret = -HMOE_EDEVICE;
			snprintf(job->err, sizeof(job->err), "cancelled: out of service");
		} else {
			pthread_mutex_unlock(&s->lock);
			hmoe_clear_error();
			ret = hmoe_expert_run(b, &job->batch);
			pthread_mutex_lock(&s->lock);
			if (ret)
				snprintf(job->err, sizeof(job->err), "%s", hmoe_last_error());
		}
		job->ret = ret;
		job->done = 1;
		dv->n_queued--;
		memmove(dv->queue, dv->queue + 1, (size_t)dv->n_queued * sizeof(int));
		pthread_cond_broadcast(&s->done);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

static int job_reserve(struct sched_dev *dv, struct sched_job *job, int rows, int dim)
{
	struct hmoe_sched *s = dv->s;
	size_t xq_row = (size_t)s->planes * s->groups * HMOE_FXP_GROUP;

	if (rows <= job->cap)
		return 0;
	free(job->x);
	free(job->y);
	free(job->ids);
	free(job->assign);
	free(job->xq);
	free(job->xs);
	job->x = malloc((size_t)rows * dim * sizeof(float));
	job->y = malloc((size_t)rows * dim * sizeof(float));
	job->ids = malloc((size_t)rows * sizeof(int));
	job->assign = malloc((size_t)rows * sizeof(int));
	job->xq = s->planes ? malloc((size_t)rows * xq_row) : NULL;
	job->xs = s->planes ? malloc((size_t)rows * s->groups * sizeof(int32_t)) : NULL;
	if (!job->x || !job->y || !job->ids || !job->assign ||
	    (s->planes && (!job->xq || !job->xs))) {
		job->cap = 0;
		return hmoe_err(HMOE_ENOMEM, "sched %s: out of memory for %d rows", dv->d.name, rows);
	}
	job->cap = rows;
	return 0;
}

static void dev_close(struct sched_dev *dv)
{
	hmoe_expert_close(dv->d.backend);
	hmoe_pool_destroy(dv->d.pool);
	for (int k = 0; k < SCHED_SLOTS; k++) {
		free(dv->job[k].x);
		free(dv->job[k].y);
		free(dv->job[k].ids);
		free(dv->job[k].assign);
		free(dv->job[k].xq);
		free(dv->job[k].xs);
	}
	pthread_cond_destroy(&dv->wake);
}

/* ---- residency and re-placement ------------------------------------------------------ */

/* mask := the experts placement p puts on device d. Returns how many. */
static int device_mask(const struct hmoe_place *p, int d, uint8_t *mask)
{
	int n = 0;

	for (int l = 0; l < p->n_layers; l++)
		for (int e = 0; e < p->n_experts; e++) {
			size_t i = (size_t)l * p->n_experts + e;
			const int8_t *devs;
			int nc = p->is_moe[l] ? hmoe_place_copies(p, l, e, &devs) : 0, on = 0;

			for (int c = 0; c < nc; c++)
				on |= devs[c] == d;
			mask[i] = (uint8_t)on;
			n += on;
		}
	return n;
}

/* At create: every card is told its experts (before its thread starts). */
static int residency_init(struct hmoe_sched *s)
{
	size_t n = (size_t)s->place->n_layers * s->place->n_experts;

	s->mask_old = malloc(n);
	s->mask_new = malloc(n);
	if (!s->mask_old || !s->mask_new)
		return hmoe_err(HMOE_ENOMEM, "sched: out of memory");
	for (int d = 0; d < s->n_devices; d++) {
		int ret;

		device_mask(s->place, d, s->mask_new);
		ret = hmoe_expert_set_resident(s->devs[d].d.backend, s->mask_new);
		if (ret)
			return hmoe_err_ctx(ret, "sched %s", s->devs[d].d.name);
	}
	return 0;
}

/* A re-placement from the routing counts so far (see hmoe_sched.h); only called with
 * nothing in flight, so every live device's thread is idle. */
static int replan(struct hmoe_sched *s)
{
	const struct hmoe_place *old = s->place;
	struct hmoe_place_device devs[HMOE_PLACE_MAX_DEVICES];
	struct hmoe_place_opts o = {
		.n_layers = old->n_layers, .n_experts = old->n_experts, .is_moe = old->is_moe,
		.expert_bytes = old->expert_bytes, .n_devices = old->n_devices, .devices = devs,
		.counts = s->stats.routed, .max_replicas = s->opts.max_replicas,
	};
	struct hmoe_place *np = NULL;
	int64_t moved = 0;
	int ret;

	memcpy(devs, old->devices, (size_t)old->n_devices * sizeof(*devs));
	for (int d = 0; d < old->n_devices; d++)
		if (!s->alive[d])
			devs[d].capacity_bytes = 0;  /* out of service: nothing goes there */
	ret = hmoe_place_build(&np, &o);
	if (ret)
		return hmoe_err_ctx(ret, "sched: re-placement");
	for (int d = 0; d < s->n_devices; d++) {
		struct sched_dev *dv = &s->devs[d];
		size_t n = (size_t)old->n_layers * old->n_experts;

		if (!s->alive[d])
			continue;
		device_mask(old, d, s->mask_old);
		device_mask(np, d, s->mask_new);
		if (!memcmp(s->mask_old, s->mask_new, n))
			continue;
		for (size_t i = 0; i < n; i++)
			moved += s->mask_new[i] && !s->mask_old[i];
		ret = hmoe_expert_set_resident(dv->d.backend, s->mask_new);
		if (ret) {
			pthread_mutex_lock(&s->lock);
			dv->out_of_service = 1;
			pthread_mutex_unlock(&s->lock);
			s->alive[d] = 0;
			s->stats.n_out_of_service++;
			s->stats.failures++;
			fprintf(s->opts.log, "hmoe: sched: %s failed to take its experts at "
				"re-placement %lld: %s; taken out of service\n", dv->d.name,
				(long long)s->stats.replans + 1, hmoe_last_error());
		}
	}
	s->stats.replans++;
	s->stats.experts_moved += moved;
	if (s->opts.verbose) {
		int n_cpu, n_rep, n_placed;

		hmoe_place_summary(np, &n_cpu, &n_rep, &n_placed);
		fprintf(s->opts.log, "hmoe: sched: re-placement %lld after %lld layer calls: %lld "
			"experts moved; %d experts on cards, %d replicated, %d on the CPU tier\n",
			(long long)s->stats.replans, (long long)s->stats.runs, (long long)moved,
			n_placed, n_rep, n_cpu);
	}
	hmoe_place_free(s->own_place);
	s->own_place = np;
	s->place = np;
	return 0;
}

/* A device out of service after an error (not a hang: its thread must be idle) gets one
 * probe: a token through an expert it holds, which must equal the CPU tier's bytes (every
 * backend is bit-identical). Passing brings it back; the re-placement that follows gives
 * it experts again. Called with nothing in flight. */
static void try_revive(struct hmoe_sched *s, int d)
{
	struct sched_dev *dv = &s->devs[d], *cpu = &s->devs[s->n_devices];
	const uint8_t *mask = hmoe_expert_resident(dv->d.backend);
	int n = s->n_layers * s->place->n_experts, i = 0, id, idle;
	float *x = NULL, *y_dev = NULL, *y_cpu = NULL;
	struct hmoe_expert_batch b = { .n_tokens = 1, .top_k = 1, .expert_ids = &id };

	pthread_mutex_lock(&s->lock);
	idle = dv->out_of_service && !dv->hung && !dv->n_queued;
	pthread_mutex_unlock(&s->lock);
	if (!idle)
		return;
	for (; i < n; i++)  /* the first MoE expert it holds */
		if (s->place->is_moe[i / s->place->n_experts] && (!mask || mask[i]))
			break;
	if (i == n)
		return;
	b.layer = i / s->place->n_experts;
	id = i % s->place->n_experts;
	x = malloc(sizeof(float) * (size_t)s->dim);
	y_dev = calloc((size_t)s->dim, sizeof(float));
	y_cpu = calloc((size_t)s->dim, sizeof(float));
	if (x && y_dev && y_cpu) {
		int ok;

		for (int k = 0; k < s->dim; k++)
			x[k] = (float)((k * 37 + 11) % 23 - 11) / 8.0f;
		b.x = x;
		b.y = y_dev;
		ok = !hmoe_expert_run(dv->d.backend, &b);
		b.y = y_cpu;
		ok = ok && !hmoe_expert_run(cpu->d.backend, &b) &&
		     !memcmp(y_dev, y_cpu, sizeof(float) * (size_t)s->dim);
		if (ok) {
			pthread_mutex_lock(&s->lock);
			dv->out_of_service = 0;
			pthread_mutex_unlock(&s->lock);
			s->alive[d] = 1;
			s->stats.revived++;
			fprintf(s->opts.log, "hmoe: sched: %s answered a probe correctly; back in "
				"service\n", dv->d.name);
		}
	}
	hmoe_clear_error();
	free(x), free(y_dev), free(y_cpu);
}

/* At every run and submit: counts the call, re-places when due and nothing is in
 * flight (first probing the devices out of service, so it can give them experts). */
static int replan_point(struct hmoe_sched *s)
{
	int ret = 0, busy = 0;

	if (s->opts.replan_every <= 0)
		return 0;
	if (s->since_replan >= s->opts.replan_every)
		s->replan_pending = 1;
	for (int k = 0; k < SCHED_SLOTS; k++)
		busy |= s->slot[k].busy;
	if (s->replan_pending && !busy) {
		for (int d = 0; d < s->n_devices; d++)
			if (!s->alive[d])
				try_revive(s, d);
		ret = replan(s);
		s->replan_pending = 0;
		s->since_replan = 0;
	}
	s->since_replan++;
	return ret;
}

int hmoe_sched_create(struct hmoe_sched **out, const struct hmoe_place *place,
		      struct hmoe_sched_device *devices, int dim, int n_layers,
		      const struct hmoe_sched_opts *opts)
{
	int D = place->n_devices, ret;
	struct hmoe_sched *s = calloc(1, sizeof(*s));
	pthread_condattr_t ca;

	if (!s) {
		for (int d = 0; d <= D; d++) {
			hmoe_expert_close(devices[d].backend);
			hmoe_pool_destroy(devices[d].pool);
		}
		return hmoe_err(HMOE_ENOMEM, "sched: out of memory");
	}
	s->place = place;
	s->n_devices = D;
	s->dim = dim;
	s->n_layers = n_layers;
	if (opts)
		s->opts = *opts;
	if (s->opts.timeout_ms <= 0)
		s->opts.timeout_ms = 10000;
	if (s->opts.micro_batches < 1)
		s->opts.micro_batches = 1;
	if (!s->opts.log)
		s->opts.log = stderr;
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->done, &ca);
	pthread_condattr_destroy(&ca);
	s->devs = calloc((size_t)D + 1, sizeof(*s->devs));
	s->stats.routed = calloc((size_t)n_layers * place->n_experts, sizeof(int64_t));
	if (!s->devs || !s->stats.routed) {
		for (int d = 0; d <= D; d++) {
			hmoe_expert_close(devices[d].backend);
			hmoe_pool_destroy(devices[d].pool);
		}
		free(s->devs);
		s->devs = NULL;
		hmoe_sched_free(s);
		return hmoe_err(HMOE_ENOMEM, "sched: out of memory");
	}
	for (int d = 0; d <= D; d++) {
		struct sched_dev *dv = &s->devs[d];

		dv->s = s;
		dv->index = d;
		dv->d = devices[d];
		pthread_cond_init(&dv->wake, NULL);
		if (d < D)
			s->alive[d] = 1;
	}
	/* quantise once here when every device takes the same fixed-point activations */
	s->groups = hmoe_fxp_groups(dim);
	s->planes = devices[0].backend ? devices[0].backend->act_planes : 0;
	for (int d = 1; d <= D; d++)
		if (!devices[d].backend || devices[d].backend->act_planes != s->planes)
			s->planes = 0;
	ret = hmoe_sched_plan_init(&s->plan, D, place->n_experts);
	if (!ret)
		ret = residency_init(s);
	for (int d = 0; !ret && d < D; d++) {
		if (pthread_create(&s->devs[d].thread, NULL, dev_thread, &s->devs[d]))
			ret = hmoe_err(HMOE_EDEVICE, "sched %s: cannot start its thread",
				       s->devs[d].d.name);
		else
			s->devs[d].has_thread = 1;
	}
	if (ret) {
		hmoe_sched_free(s);
		return ret;
	}
	*out = s;
	return 0;
}

void hmoe_sched_free(struct hmoe_sched *s)
{
	int left_behind = 0;

	if (!s)
		return;
	if (s->devs) {
		pthread_mutex_lock(&s->lock);
		s->stop = 1;
		for (int d = 0; d < s->n_devices; d++)
			pthread_cond_signal(&s->devs[d].wake);
		pthread_mutex_unlock(&s->lock);
		for (int d = 0; d <= s->n_devices; d++) {
			struct sched_dev *dv = &s->devs[d];

			if (dv->has_thread) {
				struct timespec ts;

				clock_gettime(CLOCK_REALTIME, &ts);
				ts.tv_sec += s->opts.timeout_ms / 1000 + 1;
				if (pthread_timedjoin_np(dv->thread, NULL, &ts)) {
					/* Still inside its backend: leave it that memory. */
					fprintf(s->opts.log, "hmoe: sched: %s does not return; leaving "
						"its thread and backend behind\n", dv->d.name);
					pthread_detach(dv->thread);
					left_behind = 1;
					continue;
				}
			}
			dev_close(dv);
		}
		/* A thread left behind still uses the lock and its device: keep them. */
		if (left_behind)
			return;
		free(s->devs);
	}
	hmoe_sched_plan_fini(&s->plan);
	hmoe_place_free(s->own_place);
	free(s->mask_old);
	free(s->mask_new);
	free(s->retry);
	for (int k = 0; k < SCHED_SLOTS; k++) {
		free(s->slot[k].xq);
		free(s->slot[k].xs);
	}
	free(s->stats.routed);
	pthread_cond_destroy(&s->done);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* Gathers plan share [lo, hi) into device dv's slot-k buffers as a one-slot batch. */
static int gather(struct hmoe_sched *s, struct sched_dev *dv, int k,
		  const struct hmoe_expert_batch *b, int lo, int hi)
{
	struct sched_job *job = &dv->job[k];
	int rows = hi - lo, K = b->top_k, dim = s->dim;
	int ret = job_reserve(dv, job, rows, dim);

	if (ret)
		return ret;
	for (int r = 0; r < rows; r++) {
		int a = s->plan.order[lo + r];

		job->assign[r] = a;
		job->ids[r] = b->expert_ids[a];
		memcpy(job->x + (size_t)r * dim, b->x + (size_t)(a / K) * dim,
		       (size_t)dim * sizeof(float));
		if (b->xq) {
			size_t row = (size_t)s->planes * s->groups * HMOE_FXP_GROUP;

			memcpy(job->xq + r * row, b->xq + (size_t)(a / K) * row, row);
			memcpy(job->xs + (size_t)r * s->groups, b->xs + (size_t)(a / K) * s->groups,
			       (size_t)s->groups * sizeof(int32_t));
		}
	}
	job->rows = rows;
	job->batch = (struct hmoe_expert_batch){ .layer = b->layer, .n_tokens = rows, .top_k = 1,
						 .x = job->x, .expert_ids = job->ids, .y = job->y };
	if (b->xq) {
		job->batch.xq = job->xq;
		job->batch.xs = job->xs;
		job->batch.xq_planes = s->planes;
	}
	return 0;
}

static void scatter(struct hmoe_sched *s, const struct sched_job *job,
		    const struct hmoe_expert_batch *b)
{
	for (int r = 0; r < job->rows; r++)
		memcpy(b->y + (size_t)job->assign[r] * s->dim, job->y + (size_t)r * s->dim,
		       (size_t)s->dim * sizeof(float));
}

/* Queues job rows for another plan. */
static int queue_retry(struct hmoe_sched *s, const struct sched_job *job, int *n_retry)
{
	if (*n_retry + job->rows > s->retry_cap) {
		int cap = (*n_retry + job->rows) * 2;
		int *r = realloc(s->retry, (size_t)cap * sizeof(int));

		if (!r)
			return hmoe_err(HMOE_ENOMEM, "sched: out of memory");
		s->retry = r;
		s->retry_cap = cap;
	}
	memcpy(s->retry + *n_retry, job->assign, (size_t)job->rows * sizeof(int));
	*n_retry += job->rows;
	s->stats.retried += job->rows;
	return 0;
}

/* Takes device dv out of service (its queued jobs are cancelled) and queues the rows of
 * its slot-k job for another plan. */
static int fail_device(struct hmoe_sched *s, struct sched_dev *dv, int k, int layer,
		       int timed_out, int *n_retry)
{
	const struct sched_job *job = &dv->job[k];

	/* first out of service, so that even without memory for the retry list nobody
	 * gathers into buffers the device may still be reading */
	pthread_mutex_lock(&s->lock);
	dv->out_of_service = 1;
	dv->hung |= timed_out;
	pthread_mutex_unlock(&s->lock);
	s->alive[dv->index] = 0;
	s->stats.n_out_of_service++;
	if (timed_out)
		s->stats.timeouts++;
	else
		s->stats.failures++;
	fprintf(s->opts.log, "hmoe: sched: %s %s on layer %d%s%s; taken out of service, its %d "
		"assignments planned again on the remaining devices\n", dv->d.name,
		timed_out ? "did not answer" : "failed", layer, timed_out ? "" : ": ",
		timed_out ? "" : job->err, job->rows);
	if (timed_out)
		fprintf(s->opts.log, "hmoe: sched: (timeout %d ms)\n", s->opts.timeout_ms);
	return queue_retry(s, job, n_retry);
}

/* Starts one round of part b in slot k: plan (n assignments: subset[i], or i when subset
 * is NULL), gather every share, queue the devices' shares on their threads, and run the
 * CPU tier's share here meanwhile. An error return means nothing was queued. */
static int part_begin(struct hmoe_sched *s, int k, const struct hmoe_expert_batch *b,
		      const int *subset, int n)
{
	struct sched_slot *sl = &s->slot[k];
	int D = s->n_devices, ret;
	struct sched_dev *cpu = &s->devs[D];
	double t0 = hmoe_now_s();

	ret = hmoe_sched_plan(&s->plan, s->place, b->layer, b->expert_ids, subset, n, s->alive,
			      s->opts.split_min);
	if (ret)
		return ret;
	s->stats.plan_s += hmoe_now_s() - t0;

	/* gather everything first, so that a failure leaves nothing queued */
	t0 = hmoe_now_s();
	sl->b = *b;
	sl->n_posted = 0;
	for (int d = 0; d <= D; d++) {
		int lo = s->plan.first[d], hi = s->plan.first[d + 1];

		s->devs[d].job[k].rows = 0;
		if (hi == lo)
			continue;
		ret = gather(s, &s->devs[d], k, b, lo, hi);
		if (ret)
			return ret;
	}
	for (int d = 0; d <= D; d++) {
		struct sched_dev *dv = &s->devs[d];

		if (!dv->job[k].rows)
			continue;
		s->stats.submissions[d]++;
		s->stats.assignments[d] += dv->job[k].rows;
		if (d == D)
			continue;
		pthread_mutex_lock(&s->lock);
		dv->job[k].done = 0;
		dv->queue[dv->n_queued++] = k;
		pthread_cond_signal(&dv->wake);
		pthread_mutex_unlock(&s->lock);
		sl->posted[sl->n_posted++] = d;
	}
	s->stats.gather_s += hmoe_now_s() - t0;

	/* the CPU tier meanwhile, on this thread */
	sl->cpu_ret = 0;
	if (cpu->job[k].rows) {
		sl->cpu_ret = hmoe_expert_run(cpu->d.backend, &cpu->job[k].batch);
		if (sl->cpu_ret)
			snprintf(sl->cpu_err, sizeof(sl->cpu_err), "%s", hmoe_last_error());
	}
	return 0;
}

/* Ends one round of slot k: waits up to timeout-ms for its devices, scatters the shares
 * that came back, and queues (into s->retry, *n_retry rows) those of devices that failed,
 * did not answer, or went out of service through another slot meanwhile. */
static int part_end(struct hmoe_sched *s, int k, int *n_retry)
{
	struct sched_slot *sl = &s->slot[k];
	const struct hmoe_expert_batch *b = &sl->b;
	struct sched_dev *cpu = &s->devs[s->n_devices];
	struct timespec deadline;
	double t0 = hmoe_now_s(), t1;
	int ret = 0;

	*n_retry = 0;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += s->opts.timeout_ms / 1000;
	deadline.tv_nsec += (long)(s->opts.timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < sl->n_posted; i++) {
		struct sched_dev *dv = &s->devs[sl->posted[i]];

		while (!dv->job[k].done && !dv->out_of_service)
			if (pthread_cond_timedwait(&s->done, &s->lock, &deadline) == ETIMEDOUT)
				break;
	}
	pthread_mutex_unlock(&s->lock);
	t1 = hmoe_now_s();
	s->stats.wait_s += t1 - t0;

	/* every posted device is settled (scattered, or out of service) even after an
	 * error: a slot is reused only once its devices gave its buffers back */
	for (int i = 0; i < sl->n_posted; i++) {
		struct sched_dev *dv = &s->devs[sl->posted[i]];
		int done, dret, gone, r = 0;

		pthread_mutex_lock(&s->lock);
		done = dv->job[k].done;
		dret = dv->job[k].ret;
		gone = dv->out_of_service;
		pthread_mutex_unlock(&s->lock);
		if (done && !dret)
			scatter(s, &dv->job[k], b);
		else if (gone)  /* failed on the other slot's batch: counted there */
			r = queue_retry(s, &dv->job[k], n_retry);
		else
			r = fail_device(s, dv, k, b->layer, !done, n_retry);
		if (r && !ret)
			ret = r;
	}
	if (!ret && sl->cpu_ret)
		ret = hmoe_err(sl->cpu_ret, "sched: CPU tier (%s), layer %d: %s",
			       cpu->d.backend->ops->name, b->layer, sl->cpu_err);
	if (!ret && cpu->job[k].rows)
		scatter(s, &cpu->job[k], b);
	s->stats.scatter_s += hmoe_now_s() - t1;
	return ret;
}

/* Completes slot k's part (begun by part_begin): waits, then plans the rows of failed
 * devices again over the live ones until every row is done. */
static int part_complete(struct hmoe_sched *s, int k)
{
	for (int round = 0;; round++) {
		int n_retry, ret = part_end(s, k, &n_retry);

		if (ret || !n_retry)
			return ret;
		if (round > s->n_devices)
			return hmoe_err(HMOE_EINTERNAL, "sched: layer %d: retries do not converge",
					s->slot[k].b.layer);
		/* plan() reads the retry list before part_end refills it; the failed
		 * devices' own assign[] stays theirs */
		ret = part_begin(s, k, &s->slot[k].b, s->retry, n_retry);
		if (ret)
			return ret;
	}
}

/* Part m of M of batch: contiguous tokens, counted in the routing statistics. */
static struct hmoe_expert_batch batch_part(struct hmoe_sched *s,
					   const struct hmoe_expert_batch *batch, int m, int M)
{
	int T = batch->n_tokens;
	int t0 = (int)((int64_t)T * m / M), t1 = (int)((int64_t)T * (m + 1) / M);
	size_t K = (size_t)batch->top_k, dim = (size_t)s->dim;
	struct hmoe_expert_batch mb = {
		.layer = batch->layer, .n_tokens = t1 - t0, .top_k = batch->top_k,
		.x = batch->x + (size_t)t0 * dim,
		.expert_ids = batch->expert_ids + (size_t)t0 * K,
		.y = batch->y + (size_t)t0 * K * dim,
	};

	if (batch->xq) {
		mb.xq = batch->xq + (size_t)t0 * s->planes * s->groups * HMOE_FXP_GROUP;
		mb.xs = batch->xs + (size_t)t0 * s->groups;
		mb.xq_planes = batch->xq_planes;
	}

	for (size_t a = 0; a < (size_t)mb.n_tokens * K; a++) {
		int e = mb.expert_ids[a];

		if (e >= 0 && e < s->place->n_experts)
			s->stats.routed[(size_t)batch->layer * s->place->n_experts + e]++;
	}
	if (mb.n_tokens)
		s->stats.micro_batches++;
	return mb;
}

/* Every device takes fixed-point activations with s->planes planes: the batch's tokens
 * are quantised once, here, into slot k (unless the batch brings them, e.g. from the
 * GPU), and the devices get their rows of them (gather). Otherwise q is left as is and
 * the devices quantise their rows themselves. */
static int quant_once(struct hmoe_sched *s, int k, struct hmoe_expert_batch *q)
{
	struct sched_slot *sl = &s->slot[k];
	size_t row = (size_t)s->planes * s->groups * HMOE_FXP_GROUP;

	if (!s->planes || q->n_tokens <= 0) {
		q->xq = NULL, q->xs = NULL, q->xq_planes = 0;
		return 0;
	}
	if (q->xq && q->xs && q->xq_planes == s->planes)
		return 0;
	if (q->n_tokens > sl->xq_cap) {
		free(sl->xq);
		free(sl->xs);
		sl->xq = malloc((size_t)q->n_tokens * row);
		sl->xs = malloc((size_t)q->n_tokens * s->groups * sizeof(int32_t));
		sl->xq_cap = sl->xq && sl->xs ? q->n_tokens : 0;
		if (!sl->xq_cap)
			return hmoe_err(HMOE_ENOMEM, "sched: out of memory for %d tokens", q->n_tokens);
	}
	for (int t = 0; t < q->n_tokens; t++)
		hmoe_fxp_quant_x(q->x + (size_t)t * s->dim, s->dim, s->planes,
				 sl->xq + (size_t)t * row, sl->xs + (size_t)t * s->groups);
	q->xq = sl->xq;
	q->xs = sl->xs;
	q->xq_planes = s->planes;
	return 0;
}

/* Runs batch in slot k: its micro= parts one after the other, all but the last
 * completed here; the last is left in flight when keep_last (submit). */
static int run_parts(struct hmoe_sched *s, int k, const struct hmoe_expert_batch *batch_in,
		     int keep_last, int *in_flight)
{
	struct hmoe_expert_batch q = *batch_in, *batch = &q;
	int T = batch->n_tokens, M = s->opts.micro_batches < T ? s->opts.micro_batches : T;
	int ret = quant_once(s, k, &q);

	if (ret)
		return ret;

	*in_flight = 0;
	if (batch->layer < 0 || batch->layer >= s->n_layers || !s->place->is_moe[batch->layer])
		return hmoe_err(HMOE_EINPUT, "sched: layer %d has no placement (not an MoE layer)",
				batch->layer);
	s->stats.runs++;
	if (M < 1)
		M = 1;
	for (int m = 0; m < M; m++) {
		struct hmoe_expert_batch mb = batch_part(s, batch, m, M);

		if (!mb.n_tokens)
			continue;
		ret = part_begin(s, k, &mb, NULL, mb.n_tokens * mb.top_k);
		if (ret)
			return ret;
		if (keep_last && m == M - 1) {
			*in_flight = 1;
			return 0;
		}
		ret = part_complete(s, k);
		if (ret)
			return ret;
	}
	return 0;
}

int hmoe_sched_run(struct hmoe_sched *s, const struct hmoe_expert_batch *batch)
{
	int k = 0, in_flight, ret;

	/* any free slot: a synchronous run may come between a submit and its wait */
	while (k < SCHED_SLOTS && s->slot[k].busy)
		k++;
	if (k == SCHED_SLOTS)
		return hmoe_err(HMOE_EINTERNAL, "sched: run with %d batches in flight",
				SCHED_SLOTS);
	ret = replan_point(s);
	return ret ? ret : run_parts(s, k, batch, 0, &in_flight);
}

int hmoe_sched_submit(struct hmoe_sched *s, const struct hmoe_expert_batch *batch,
		      int *ticket)
{
	int k = (int)(s->n_submitted % SCHED_SLOTS), in_flight, ret;

	if (s->slot[k].busy)
		return hmoe_err(HMOE_EINTERNAL, "sched: more than %d batches in flight",
				SCHED_SLOTS);
	ret = replan_point(s);
	if (ret)
		return ret;
	ret = run_parts(s, k, batch, 1, &in_flight);
	if (ret)
		return ret;
	/* an empty batch completes at once; its ticket is still waited in order */
	s->slot[k].busy = 1 + in_flight;
	*ticket = k;
	s->n_submitted++;
	return 0;
}

int hmoe_sched_wait(struct hmoe_sched *s, int ticket)
{
	int k = (int)(s->n_waited % SCHED_SLOTS), ret = 0;

	if (ticket != k || !s->slot[k].busy)
		return hmoe_err(HMOE_EINTERNAL, "sched: wait for ticket %d, but the oldest batch "
				"in flight is %s%d", ticket, s->slot[k].busy ? "" : "none, next ", k);
	if (s->slot[k].busy == 2)
		ret = part_complete(s, k);
	s->slot[k].busy = 0;
	s->n_waited++;
	return ret;
}

const struct hmoe_sched_stats *hmoe_sched_stats(const struct hmoe_sched *s)
{
	return &s->stats;
}

const char *hmoe_sched_device_name(const struct hmoe_sched *s, int d)
{
	return d >= 0 && d <= s->n_devices ? s->devs[d].d.name : "?";
}

int hmoe_sched_planes(const struct hmoe_sched *s)
{
	return s->planes;
}

int hmoe_sched_n_devices(const struct hmoe_sched *s)
{
	return s->n_devices;
}

const struct hmoe_place *hmoe_sched_place(const struct hmoe_sched *s)
{
	return s->place;
}

struct hmoe_expert_backend *hmoe_sched_device_backend(const struct hmoe_sched *s, int d)
{
	return d >= 0 && d <= s->n_devices ? s->devs[d].d.backend : NULL;
}

void hmoe_sched_print_stats(const struct hmoe_sched *s, FILE *f)
{
	const struct hmoe_sched_stats *st = &s->stats;

	fprintf(f, "[sched: %lld layer passes;", (long long)st->runs);
	for (int d = 0; d <= s->n_devices; d++)
		fprintf(f, " %s %lld calls/%lld rows%s", s->devs[d].d.name,
			(long long)st->submissions[d], (long long)st->assignments[d],
			d < s->n_devices && !s->alive[d] ? " (out of service)" : "");
	fprintf(f, "; %lld failures, %lld timeouts, %lld assignments retried",
		(long long)st->failures, (long long)st->timeouts, (long long)st->retried);
	if (s->opts.replan_every > 0)
		fprintf(f, "; %lld re-placements, %lld experts moved, %d devices revived",
			(long long)st->replans, (long long)st->experts_moved, st->revived);
	fprintf(f, "]\n");
}
