/* hmoe_pool: worker threads for parallel-for (see hmoe_pool.h).
 *
 * Handing out a loop: the caller publishes fn/arg/n and bumps `generation` (release);
 * workers that see the new generation (acquire) take indices from the atomic `next` and
 * count themselves out of `busy`. A layer call is a chain of loops microseconds apart
 * (the fixed-point MoE runs two, the forward pass many more), so between loops the
 * workers and the caller spin on those counters for up to 200 us ($HMOE_POOL_SPIN_US; 0
 * turns spinning off, e.g. when idle cores' energy should not count) before they sleep
 * on a condition variable: waking sleeping threads costs tens of microseconds per loop
 * on a VM, which at one token on 16 cores was a tenth of the call. Spinning is off when
 * the pool has more threads than the machine has CPUs (a spinner would hold a CPU a
 * worker needs), and a spinner yields every few microseconds in case other pools'
 * threads need the CPU.
 * `generation` changes and `sleepers` are read under `lock`, so no wake-up is lost. */
#include "hmoe_pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "hmoe_err.h"

#define HMOE_POOL_SPIN_US 200 /* default: how long an idle thread spins before it sleeps */

struct hmoe_pool {
	int n_threads;              /* workers + the caller */
	long spin_ns;               /* how long idle threads spin; 0 when n_threads > CPUs */
	pthread_t *workers;         /* [n_threads - 1] */

	pthread_mutex_t lock;       /* held to change generation/stop and to sleep */
	pthread_cond_t wake;        /* workers sleep here for a new generation */
	pthread_cond_t done;        /* the caller sleeps here for busy == 0 */
	pthread_cond_t posted;      /* hmoe_pool_await() sleeps here for a post */
	atomic_int awaiting;        /* threads asleep (or about to be) in hmoe_pool_await */
	atomic_ulong generation;
	atomic_int stop;
	atomic_int busy;            /* workers still inside the current loop */
	int sleepers;               /* workers asleep on `wake` (under lock) */
	int caller_asleep;          /* the caller is asleep on `done` (under lock) */

	hmoe_pool_fn fn;            /* the current loop: written before generation++ */
	void *arg;
	long n;
	long chunk;
	atomic_long next;           /* next index to hand out */
};

static long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* Every 64 pauses of a spin: gives the CPU to any other runnable thread (a pool beside
 * this one, e.g. the sched backend's per-device pools, may have more threads in all than
 * the machine has CPUs) and says whether the spin has lasted spin_ns. */
static int spin_expired(long *t0, long spin_ns)
{
	long t;

	sched_yield();
	t = now_ns();
	if (!*t0)
		*t0 = t;
	return t - *t0 > spin_ns;
}

static int new_generation(const void *pool, long seen)
{
	const struct hmoe_pool *p = pool;

	return atomic_load_explicit(&p->generation, memory_order_acquire) != (unsigned long)seen;
}

static int all_done(const void *pool, long unused)
{
	const struct hmoe_pool *p = pool;

	(void)unused;
	return atomic_load_explicit(&p->busy, memory_order_acquire) == 0;
}

static int flag_reached(const void *flag, long value)
{
	return atomic_load_explicit((atomic_int *)flag, memory_order_acquire) >= value;
}

/* Spins until ready(obj, arg), for up to p->spin_ns; returns whether it became ready. */
static int spin_until(const struct hmoe_pool *p, int (*ready)(const void *, long),
		      const void *obj, long arg)
{
	long t0 = 0;

	for (int i = 0; p->spin_ns; i++) {
		if (ready(obj, arg))
			return 1;
		cpu_relax();
		if ((i & 63) == 63 && spin_expired(&t0, p->spin_ns))
			break;
	}
	return ready(obj, arg);
}

static void pool_work(struct hmoe_pool *p, int thread)
{
	for (;;) {
		long start = atomic_fetch_add(&p->next, p->chunk);
		long end;

		if (start >= p->n)
			return;
		end = start + p->chunk < p->n ? start + p->chunk : p->n;
		for (long i = start; i < end; i++)
			p->fn(p->arg, i, thread);
	}
}

struct worker_arg {
	struct hmoe_pool *pool;
	int thread;
};

static void *pool_worker(void *opaque)
{
	struct worker_arg *wa = opaque;
	struct hmoe_pool *p = wa->pool;
	int thread = wa->thread;
	unsigned long seen = 0;

	free(wa);
	for (;;) {
		if (!spin_until(p, new_generation, p, (long)seen)) {
			pthread_mutex_lock(&p->lock);
			p->sleepers++;
			while (!atomic_load(&p->stop) && atomic_load(&p->generation) == seen)
				pthread_cond_wait(&p->wake, &p->lock);
			p->sleepers--;
			pthread_mutex_unlock(&p->lock);
		}
		if (atomic_load(&p->stop))
			break;
		seen = atomic_load_explicit(&p->generation, memory_order_acquire);
		pool_work(p, thread);
		if (atomic_fetch_sub_explicit(&p->busy, 1, memory_order_acq_rel) == 1) {
			pthread_mutex_lock(&p->lock);
			if (p->caller_asleep)
				pthread_cond_signal(&p->done);
			pthread_mutex_unlock(&p->lock);
		}
	}
	return NULL;
}

int hmoe_pool_create(struct hmoe_pool **out, int n_threads)
{
	struct hmoe_pool *p;
	const char *env = getenv("HMOE_THREADS"), *spin = getenv("HMOE_POOL_SPIN_US");
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN), spin_us = HMOE_POOL_SPIN_US;

	if (n_threads <= 0 && env && atoi(env) > 0)
		n_threads = atoi(env);
	if (n_threads <= 0)
		n_threads = ncpu > 0 ? (int)ncpu : 1;
	if (n_threads > 256)
		n_threads = 256;
	p = calloc(1, sizeof(*p));
	if (!p)
		return hmoe_err(HMOE_ENOMEM, "thread pool: out of memory");
	p->n_threads = n_threads;
	if (spin && *spin) {
		char *end;
		long v = strtol(spin, &end, 10);

		static int warned;

		if (*end || v < 0 || v > 1000000) {
			if (!__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
				fprintf(stderr, "hmoe: HMOE_POOL_SPIN_US=%s is not 0..1000000 "
					"microseconds; using %ld\n", spin, spin_us);
		} else
			spin_us = v;
	}
	p->spin_ns = ncpu > 0 && n_threads <= ncpu ? spin_us * 1000 : 0;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	pthread_cond_init(&p->done, NULL);
	pthread_cond_init(&p->posted, NULL);
	p->workers = calloc((size_t)n_threads, sizeof(*p->workers));
	if (!p->workers) {
		free(p);
		return hmoe_err(HMOE_ENOMEM, "thread pool: out of memory");
	}
	for (int t = 1; t < n_threads; t++) {
		struct worker_arg *wa = malloc(sizeof(*wa));

		if (!wa || (wa->pool = p, wa->thread = t,
			    pthread_create(&p->workers[t - 1], NULL, pool_worker, wa)) != 0) {
			free(wa);
			p->n_threads = t;
			hmoe_pool_destroy(p);
			return hmoe_err(HMOE_ENOMEM, "thread pool: cannot start thread %d", t);
		}
	}
	*out = p;
	return 0;
}

void hmoe_pool_destroy(struct hmoe_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	atomic_store(&p->stop, 1);
	atomic_fetch_add(&p->generation, 1);
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);
	for (int t = 1; t < p->n_threads; t++)
		pthread_join(p->workers[t - 1], NULL);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->wake);
	pthread_cond_destroy(&p->done);
	pthread_cond_destroy(&p->posted);
	free(p->workers);
	free(p);
}

int hmoe_pool_threads(const struct hmoe_pool *p)
{
	return p ? p->n_threads : 1;
}

void hmoe_pool_run(struct hmoe_pool *p, long n, hmoe_pool_fn fn, void *arg)
{
	if (n <= 0)
		return;
	if (!p || p->n_threads == 1 || n == 1) {
		for (long i = 0; i < n; i++)
			fn(arg, i, 0);
		return;
	}
	p->fn = fn;
	p->arg = arg;
	p->n = n;
	/* About 64 chunks per thread: a loop of a few hundred heavy items (the MoE's row
	 * blocks, tens of microseconds each) goes one item at a time, so no thread is left
	 * with a long last chunk while the others wait; many small items still take the
	 * counter rarely. */
	p->chunk = n / ((long)p->n_threads * 64);
	if (p->chunk < 1)
		p->chunk = 1;
	atomic_store_explicit(&p->next, 0, memory_order_relaxed);
	atomic_store_explicit(&p->busy, p->n_threads - 1, memory_order_relaxed);
	pthread_mutex_lock(&p->lock);
	atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
	if (p->sleepers)
		pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);

	pool_work(p, 0);

	if (!spin_until(p, all_done, p, 0)) {
		pthread_mutex_lock(&p->lock);
		p->caller_asleep = 1;
		while (atomic_load(&p->busy) > 0)
			pthread_cond_wait(&p->done, &p->lock);
		p->caller_asleep = 0;
		pthread_mutex_unlock(&p->lock);
	}
}

/* The sleeper counts itself in `awaiting` before it tests the flag under `lock`, and the
 * poster stores the flag before it reads `awaiting` (both sequentially consistent): so
 * either the poster sees the sleeper and broadcasts under `lock` (after the sleeper's
 * test, which holds `lock` until it waits), or the sleeper's test sees the flag. */
void hmoe_pool_await(struct hmoe_pool *p, atomic_int *flag, int value)
{
	if (!p || spin_until(p, flag_reached, flag, value))
		return;
	atomic_fetch_add(&p->awaiting, 1);
	pthread_mutex_lock(&p->lock);
	while (atomic_load(flag) < value)
		pthread_cond_wait(&p->posted, &p->lock);
	pthread_mutex_unlock(&p->lock);
	atomic_fetch_sub(&p->awaiting, 1);
}

void hmoe_pool_post(struct hmoe_pool *p, atomic_int *flag, int value)
{
	atomic_store(flag, value);
	if (p && atomic_load(&p->awaiting)) {
		pthread_mutex_lock(&p->lock);
		pthread_cond_broadcast(&p->posted);
		pthread_mutex_unlock(&p->lock);
	}
}
