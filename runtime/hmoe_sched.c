/* hmoe_sched: planning, device threads, timeouts and retries of one MoE layer's routed
 * work across expert devices (see hmoe_sched.h). */
#include "hmoe_sched.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hmoe_err.h"
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

/* One device: its backend, thread and buffers. */
struct sched_dev {
	struct hmoe_sched *s;
	int index;
	struct hmoe_sched_device d;
	pthread_t thread;
	int has_thread;

	/* protected by s->lock: */
	pthread_cond_t wake;         /* a job was posted, or stop */
	int posted;                  /* a job is waiting for or running on the thread */
	int done;                    /* the last posted job has finished */
	int out_of_service;          /* failed or hung: never used again */
	int ret;
	char err[256];

	/* The job. Written by the caller only while the device is idle, read by the
	 * device thread while posted: a hung device keeps these to itself. */
	struct hmoe_expert_batch job;
	int cap;
	float *x;                    /* (cap, dim) gathered activations */
	int *ids;                    /* (cap) expert of each row */
	float *y;                    /* (cap, dim) outputs */
	int *assign;                 /* (cap) assignment index of each row */
};

struct hmoe_sched {
	const struct hmoe_place *place;
	int n_devices;               /* cards; devs[n_devices] is the CPU tier */
	int dim, n_layers;
	struct hmoe_sched_opts opts;
	struct sched_dev *devs;      /* [n_devices + 1] */

	pthread_mutex_t lock;        /* protects the device fields marked above and stop */
	pthread_cond_t done;         /* a device finished a job */
	int stop;

	struct hmoe_sched_plan plan;
	unsigned char alive[HMOE_PLACE_MAX_DEVICES];
	int *retry;                  /* (retry_cap) assignments to plan again */
	int retry_cap;
	struct hmoe_sched_stats stats;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *dev_thread(void *arg)
{
	struct sched_dev *dv = arg;
	struct hmoe_sched *s = dv->s;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		struct hmoe_expert_backend *b = dv->d.backend;
		int ret;

		while (!s->stop && !(dv->posted && !dv->done))
			pthread_cond_wait(&dv->wake, &s->lock);
		if (s->stop)
			break;
		pthread_mutex_unlock(&s->lock);
		hmoe_clear_error();
		ret = b->ops->run(b, &dv->job);
		pthread_mutex_lock(&s->lock);
		dv->ret = ret;
		if (ret)
			snprintf(dv->err, sizeof(dv->err), "%s", hmoe_last_error());
		dv->done = 1;
		dv->posted = 0;
		pthread_cond_broadcast(&s->done);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

static int dev_reserve(struct sched_dev *dv, int rows, int dim)
{
	if (rows <= dv->cap)
		return 0;
	free(dv->x);
	free(dv->y);
	free(dv->ids);
	free(dv->assign);
	dv->x = malloc((size_t)rows * dim * sizeof(float));
	dv->y = malloc((size_t)rows * dim * sizeof(float));
	dv->ids = malloc((size_t)rows * sizeof(int));
	dv->assign = malloc((size_t)rows * sizeof(int));
	if (!dv->x || !dv->y || !dv->ids || !dv->assign) {
		dv->cap = 0;
		return hmoe_err(HMOE_ENOMEM, "sched %s: out of memory for %d rows", dv->d.name, rows);
	}
	dv->cap = rows;
	return 0;
}

static void dev_close(struct sched_dev *dv)
{
	hmoe_expert_close(dv->d.backend);
	hmoe_pool_destroy(dv->d.pool);
	free(dv->x);
	free(dv->y);
	free(dv->ids);
	free(dv->assign);
	pthread_cond_destroy(&dv->wake);
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
	ret = hmoe_sched_plan_init(&s->plan, D, place->n_experts);
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
	free(s->retry);
	free(s->stats.routed);
	pthread_cond_destroy(&s->done);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* Gathers plan share d into device d's buffers as a one-slot batch. */
static int gather(struct hmoe_sched *s, struct sched_dev *dv, const struct hmoe_expert_batch *b,
		  int lo, int hi)
{
	int rows = hi - lo, K = b->top_k, dim = s->dim;
	int ret = dev_reserve(dv, rows, dim);

	if (ret)
		return ret;
	for (int r = 0; r < rows; r++) {
		int a = s->plan.order[lo + r];

		dv->assign[r] = a;
		dv->ids[r] = b->expert_ids[a];
		memcpy(dv->x + (size_t)r * dim, b->x + (size_t)(a / K) * dim,
		       (size_t)dim * sizeof(float));
	}
	dv->job = (struct hmoe_expert_batch){ .layer = b->layer, .n_tokens = rows, .top_k = 1,
					      .x = dv->x, .expert_ids = dv->ids, .y = dv->y };
	return 0;
}

static void scatter(struct hmoe_sched *s, const struct sched_dev *dv, int rows,
		    const struct hmoe_expert_batch *b)
{
	for (int r = 0; r < rows; r++)
		memcpy(b->y + (size_t)dv->assign[r] * s->dim, dv->y + (size_t)r * s->dim,
		       (size_t)s->dim * sizeof(float));
}

/* Takes device d out of service and queues its rows for another plan. */
static int fail_device(struct hmoe_sched *s, struct sched_dev *dv, int rows, int layer,
		       int timed_out, int *n_retry)
{
	if (*n_retry + rows > s->retry_cap) {
		int cap = (*n_retry + rows) * 2, *r = realloc(s->retry, (size_t)cap * sizeof(int));

		if (!r)
			return hmoe_err(HMOE_ENOMEM, "sched: out of memory");
		s->retry = r;
		s->retry_cap = cap;
	}
	memcpy(s->retry + *n_retry, dv->assign, (size_t)rows * sizeof(int));
	*n_retry += rows;
	dv->out_of_service = 1;
	s->alive[dv->index] = 0;
	s->stats.n_out_of_service++;
	s->stats.retried += rows;
	if (timed_out)
		s->stats.timeouts++;
	else
		s->stats.failures++;
	fprintf(s->opts.log, "hmoe: sched: %s %s on layer %d%s%s; taken out of service, its %d "
		"assignments planned again on the remaining devices\n", dv->d.name,
		timed_out ? "did not answer" : "failed", layer, timed_out ? "" : ": ",
		timed_out ? "" : dv->err, rows);
	if (timed_out)
		fprintf(s->opts.log, "hmoe: sched: (timeout %d ms)\n", s->opts.timeout_ms);
	return 0;
}

/* One micro-batch: plan, submit, wait, retry, scatter. */
static int run_micro(struct hmoe_sched *s, const struct hmoe_expert_batch *b)
{
	int D = s->n_devices, n = b->n_tokens * b->top_k, n_retry = 0, ret;
	const int *subset = NULL;
	struct sched_dev *cpu = &s->devs[D];

	for (int a = 0; a < n; a++) {
		int e = b->expert_ids[a];

		if (e >= 0 && e < s->place->n_experts)
			s->stats.routed[(size_t)b->layer * s->place->n_experts + e]++;
	}
	for (int round = 0;; round++) {
		int posted[HMOE_PLACE_MAX_DEVICES], n_posted = 0, rows[HMOE_PLACE_MAX_DEVICES + 1];
		double t0 = now_s(), t1;
		struct timespec deadline;

		ret = hmoe_sched_plan(&s->plan, s->place, b->layer, b->expert_ids, subset,
				      subset ? n_retry : n, s->alive, s->opts.split_min);
		if (ret)
			return ret;
		s->stats.plan_s += now_s() - t0;
		if (subset)
			n_retry = 0;  /* the retry list is consumed by this plan */
		t0 = now_s();
		for (int d = 0; d <= D; d++) {
			int lo = s->plan.first[d], hi = s->plan.first[d + 1];

			rows[d] = hi - lo;
			if (!rows[d])
				continue;
			ret = gather(s, &s->devs[d], b, lo, hi);
			if (ret)
				return ret;
			s->stats.submissions[d]++;
			s->stats.assignments[d] += rows[d];
			if (d == D)
				continue;
			pthread_mutex_lock(&s->lock);
			s->devs[d].done = 0;
			s->devs[d].posted = 1;
			pthread_cond_signal(&s->devs[d].wake);
			pthread_mutex_unlock(&s->lock);
			posted[n_posted++] = d;
		}
		s->stats.gather_s += now_s() - t0;

		/* the CPU tier meanwhile, on this thread */
		if (rows[D]) {
			ret = cpu->d.backend->ops->run(cpu->d.backend, &cpu->job);
			if (ret) {
				ret = hmoe_err_ctx(ret, "sched: CPU tier (%s), layer %d",
						   cpu->d.backend->ops->name, b->layer);
				/* devices still running keep their own buffers; wait for them */
			}
		}

		/* wait for the devices */
		t0 = now_s();
		clock_gettime(CLOCK_MONOTONIC, &deadline);
		deadline.tv_sec += s->opts.timeout_ms / 1000;
		deadline.tv_nsec += (long)(s->opts.timeout_ms % 1000) * 1000000L;
		if (deadline.tv_nsec >= 1000000000L) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000L;
		}
		pthread_mutex_lock(&s->lock);
		for (int i = 0; i < n_posted; i++) {
			struct sched_dev *dv = &s->devs[posted[i]];

			while (!dv->done)
				if (pthread_cond_timedwait(&s->done, &s->lock, &deadline) == ETIMEDOUT)
					break;
		}
		pthread_mutex_unlock(&s->lock);
		t1 = now_s();
		s->stats.wait_s += t1 - t0;
		if (ret)
			return ret;

		for (int i = 0; i < n_posted; i++) {
			struct sched_dev *dv = &s->devs[posted[i]];
			int done, dret;

			pthread_mutex_lock(&s->lock);
			done = dv->done;
			dret = dv->ret;
			pthread_mutex_unlock(&s->lock);
			if (done && !dret) {
				scatter(s, dv, rows[dv->index], b);
				continue;
			}
			ret = fail_device(s, dv, rows[dv->index], b->layer, !done, &n_retry);
			if (ret)
				return ret;
		}
		if (rows[D])
			scatter(s, cpu, rows[D], b);
		s->stats.scatter_s += now_s() - t1;
		if (!n_retry)
			return 0;
		if (round > D)
			return hmoe_err(HMOE_EINTERNAL, "sched: layer %d: retries do not converge",
					b->layer);
		/* The retry list moves to a scratch copy: plan() reads it while the failed
		 * devices' own assign[] stays theirs. */
		subset = s->retry;
	}
}

int hmoe_sched_run(struct hmoe_sched *s, const struct hmoe_expert_batch *batch)
{
	int T = batch->n_tokens, M = s->opts.micro_batches < T ? s->opts.micro_batches : T;

	if (batch->layer < 0 || batch->layer >= s->n_layers || !s->place->is_moe[batch->layer])
		return hmoe_err(HMOE_EINPUT, "sched: layer %d has no placement (not an MoE layer)",
				batch->layer);
	s->stats.runs++;
	if (M < 1)
		M = 1;
	for (int m = 0; m < M; m++) {
		int t0 = (int)((int64_t)T * m / M), t1 = (int)((int64_t)T * (m + 1) / M), ret;
		size_t K = (size_t)batch->top_k, dim = (size_t)s->dim;
		struct hmoe_expert_batch mb = {
			.layer = batch->layer, .n_tokens = t1 - t0, .top_k = batch->top_k,
			.x = batch->x + (size_t)t0 * dim,
			.expert_ids = batch->expert_ids + (size_t)t0 * K,
			.y = batch->y + (size_t)t0 * K * dim,
		};

		if (!mb.n_tokens)
			continue;
		s->stats.micro_batches++;
		ret = run_micro(s, &mb);
		if (ret)
			return ret;
	}
	return 0;
}

const struct hmoe_sched_stats *hmoe_sched_stats(const struct hmoe_sched *s)
{
	return &s->stats;
}

const char *hmoe_sched_device_name(const struct hmoe_sched *s, int d)
{
	return d >= 0 && d <= s->n_devices ? s->devs[d].d.name : "?";
}

int hmoe_sched_n_devices(const struct hmoe_sched *s)
{
	return s->n_devices;
}

void hmoe_sched_print_stats(const struct hmoe_sched *s, FILE *f)
{
	const struct hmoe_sched_stats *st = &s->stats;

	fprintf(f, "[sched: %lld layer passes;", (long long)st->runs);
	for (int d = 0; d <= s->n_devices; d++)
		fprintf(f, " %s %lld calls/%lld rows%s", s->devs[d].d.name,
			(long long)st->submissions[d], (long long)st->assignments[d],
			d < s->n_devices && !s->alive[d] ? " (out of service)" : "");
	fprintf(f, "; %lld failures, %lld timeouts, %lld assignments retried]\n",
		(long long)st->failures, (long long)st->timeouts, (long long)st->retried);
}
