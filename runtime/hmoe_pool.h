/* hmoe_pool: a fixed set of worker threads running parallel-for loops.
 *
 * hmoe_pool_run(pool, n, fn, arg) calls fn(arg, i, thread) for every i in [0, n), spread
 * over the workers and the calling thread, and returns when all are done. Work is handed
 * out in contiguous chunks by an atomic counter, so the result never depends on which
 * thread ran which index as long as fn(i) writes only its own outputs.
 */
#ifndef HMOE_POOL_H
#define HMOE_POOL_H

#include <stdatomic.h>

struct hmoe_pool;

typedef void (*hmoe_pool_fn)(void *arg, long i, int thread);

/* n_threads <= 0: one per online CPU (or $HMOE_THREADS when set). */
int hmoe_pool_create(struct hmoe_pool **out, int n_threads);
void hmoe_pool_destroy(struct hmoe_pool *p);
int hmoe_pool_threads(const struct hmoe_pool *p);
/* Runs fn over [0, n). A NULL pool runs serially on the caller. Not reentrant. */
void hmoe_pool_run(struct hmoe_pool *p, long n, hmoe_pool_fn fn, void *arg);

/* Dependencies inside one loop: an item may wait for a flag that an earlier item (lower
 * index) sets. Indices are handed out in increasing order and each thread runs its own
 * in order, so the lowest unfinished item never waits and every wait ends.
 * hmoe_pool_await() returns once *flag >= value (acquire), spinning as idle workers do
 * (not when the pool has more threads than CPUs, where the thread waited for may need
 * this CPU) and then sleeping; hmoe_pool_post() sets *flag = value (release) and wakes
 * the sleepers. With a NULL pool (items run in order on the caller) a wait has nothing
 * to wait for and returns. */
void hmoe_pool_await(struct hmoe_pool *p, atomic_int *flag, int value);
void hmoe_pool_post(struct hmoe_pool *p, atomic_int *flag, int value);

#endif
