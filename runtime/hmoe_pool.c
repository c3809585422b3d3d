/* hmoe_pool: worker threads for parallel-for (see hmoe_pool.h). */
#include "hmoe_pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "hmoe_err.h"

struct hmoe_pool {
	int n_threads;              /* workers + the caller */
	pthread_t *workers;         /* [n_threads - 1] */

	pthread_mutex_t lock;       /* protects generation, stop, fn, arg, n, chunk, busy */
	pthread_cond_t wake;        /* workers wait here for a new generation */
	pthread_cond_t done;        /* the caller waits here for busy == 0 */
	unsigned long generation;
	int stop;
	int busy;                   /* workers still inside the current loop */

	hmoe_pool_fn fn;
	void *arg;
	long n;
	long chunk;
	atomic_long next;           /* next index to hand out */
};

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
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->stop && p->generation == seen)
			pthread_cond_wait(&p->wake, &p->lock);
		if (p->stop)
			break;
		seen = p->generation;
		pthread_mutex_unlock(&p->lock);
		pool_work(p, thread);
		pthread_mutex_lock(&p->lock);
		if (--p->busy == 0)
			pthread_cond_signal(&p->done);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int hmoe_pool_create(struct hmoe_pool **out, int n_threads)
{
	struct hmoe_pool *p;
	const char *env = getenv("HMOE_THREADS");

	if (n_threads <= 0 && env && atoi(env) > 0)
		n_threads = atoi(env);
	if (n_threads <= 0) {
		long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		n_threads = ncpu > 0 ? (int)ncpu : 1;
	}
	if (n_threads > 256)
		n_threads = 256;
	p = calloc(1, sizeof(*p));
	if (!p)
		return hmoe_err(HMOE_ENOMEM, "thread pool: out of memory");
	p->n_threads = n_threads;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	pthread_cond_init(&p->done, NULL);
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
	p->stop = 1;
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);
	for (int t = 1; t < p->n_threads; t++)
		pthread_join(p->workers[t - 1], NULL);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->wake);
	pthread_cond_destroy(&p->done);
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
	pthread_mutex_lock(&p->lock);
	p->fn = fn;
	p->arg = arg;
	p->n = n;
	/* Small chunks balance uneven work; 4 chunks per thread bound the atomics. */
	p->chunk = n / ((long)p->n_threads * 4);
	if (p->chunk < 1)
		p->chunk = 1;
	atomic_store(&p->next, 0);
	p->busy = p->n_threads - 1;
	p->generation++;
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);

	pool_work(p, 0);

	pthread_mutex_lock(&p->lock);
	while (p->busy > 0)
		pthread_cond_wait(&p->done, &p->lock);
	pthread_mutex_unlock(&p->lock);
}
