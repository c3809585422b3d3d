/* hmoe_pool: a fixed set of worker threads running parallel-for loops.
 *
 * hmoe_pool_run(pool, n, fn, arg) calls fn(arg, i, thread) for every i in [0, n), spread
 * over the workers and the calling thread, and returns when all are done. Work is handed
 * out in contiguous chunks by an atomic counter, so the result never depends on which
 * thread ran which index as long as fn(i) writes only its own outputs.
 */
#ifndef HMOE_POOL_H
#define HMOE_POOL_H

struct hmoe_pool;

typedef void (*hmoe_pool_fn)(void *arg, long i, int thread);

/* n_threads <= 0: one per online CPU (or $HMOE_THREADS when set). */
int hmoe_pool_create(struct hmoe_pool **out, int n_threads);
void hmoe_pool_destroy(struct hmoe_pool *p);
int hmoe_pool_threads(const struct hmoe_pool *p);
/* Runs fn over [0, n). A NULL pool runs serially on the caller. Not reentrant. */
void hmoe_pool_run(struct hmoe_pool *p, long n, hmoe_pool_fn fn, void *arg);

#endif
