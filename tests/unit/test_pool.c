/* test_pool: hmoe_pool runs every index of every loop exactly once and returns only when
 * all are done, through what a user's workload does to it: long chains of loops
 * microseconds apart (the workers spin between them), loops after a pause long enough
 * for every thread to fall asleep, loops with fewer items than threads, heavy uneven
 * items, more threads than CPUs and HMOE_POOL_SPIN_US=0 (no spinning), and a pool
 * destroyed while its workers spin or sleep, and items that await an earlier item's post
 * (hmoe_pool_await/post) with waits long enough to sleep. A lost wake-up hangs the test,
 * which an alarm ends after 120 s as a failure; a double or missed index, or a return before the
 * last item ends, fails a CHECK. */
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hmoe_pool.h"
#include "hmoe_test.h"

#define MAX_N 4096

struct job {
	atomic_int hits[MAX_N];
	atomic_int in_flight;    /* items started and not yet finished */
	atomic_int max_thread;
	long spin_every;         /* item i spins (i % spin_every == 0) ~20 us: uneven work */
	atomic_int posted[MAX_N];  /* chain: set by item i (hmoe_pool_post) */
	atomic_int early;          /* chain: items whose await returned before the post */
	struct hmoe_pool *pool;
};

static void sleep_us(long us)
{
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };

	nanosleep(&ts, NULL);
}

static void busy_us(long us)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	do
		clock_gettime(CLOCK_MONOTONIC, &t);
	while ((t.tv_sec - t0.tv_sec) * 1000000L + (t.tv_nsec - t0.tv_nsec) / 1000 < us);
}

static void item(void *arg, long i, int thread)
{
	struct job *j = arg;
	int m = atomic_load(&j->max_thread);

	atomic_fetch_add(&j->in_flight, 1);
	while (thread > m && !atomic_compare_exchange_weak(&j->max_thread, &m, thread))
		;
	if (j->spin_every && i % j->spin_every == 0)
		busy_us(20);
	atomic_fetch_add(&j->hits[i], 1);
	atomic_fetch_sub(&j->in_flight, 1);
}

/* A chain inside one loop: item i awaits item i - 1's post (every 8th item works ~300 us
 * first, long enough for the waiters to stop spinning and sleep), then posts its own. */
static void chain_item(void *arg, long i, int thread)
{
	struct job *j = arg;

	(void)thread;
	if (i > 0) {
		hmoe_pool_await(j->pool, &j->posted[i - 1], 1);
		if (atomic_load(&j->posted[i - 1]) != 1)
			atomic_fetch_add(&j->early, 1);
	}
	if (i % 8 == 7)
		busy_us(300);
	hmoe_pool_post(j->pool, &j->posted[i], 1);
}

static void chain_check(struct hmoe_pool *p, struct job *j, long n, const char *what)
{
	for (long i = 0; i < n; i++)
		atomic_store(&j->posted[i], 0);
	atomic_store(&j->early, 0);
	j->pool = p;
	hmoe_pool_run(p, n, chain_item, j);
	CHECK(atomic_load(&j->early) == 0, "%s: %d awaits returned before the post", what,
	      atomic_load(&j->early));
	for (long i = 0; i < n; i++)
		if (atomic_load(&j->posted[i]) != 1) {
			CHECK(0, "%s: item %ld never posted", what, i);
			break;
		}
}

/* One loop of n items; every index exactly once, none still running at return. */
static void run_check(struct hmoe_pool *p, struct job *j, long n, const char *what)
{
	int bad = 0;

	for (long i = 0; i < n; i++)
		atomic_store(&j->hits[i], 0);
	hmoe_pool_run(p, n, item, j);
	CHECK(atomic_load(&j->in_flight) == 0, "%s: returned with %d items running", what,
	      atomic_load(&j->in_flight));
	for (long i = 0; i < n; i++)
		bad += atomic_load(&j->hits[i]) != 1;
	CHECK(bad == 0, "%s, n %ld: %d indices not run exactly once", what, n, bad);
}

static void exercise(int n_threads)
{
	static struct job j;
	struct hmoe_pool *p = NULL;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	char what[96];

	memset(&j, 0, sizeof(j));
	CHECK(hmoe_pool_create(&p, n_threads) == 0, "create %d threads", n_threads);
	if (!p)
		return;
	CHECK(hmoe_pool_threads(p) == n_threads, "%d threads asked, %d made", n_threads,
	      hmoe_pool_threads(p));
	/* a chain of loops back to back, as one MoE layer call's phases */
	for (int r = 0; r < 2000; r++) {
		long n = 1 + (r * 37) % 700;

		snprintf(what, sizeof(what), "%d threads (%ld CPUs), chain loop %d", n_threads,
			 ncpu, r);
		run_check(p, &j, n, what);
	}
	/* fewer items than threads, and 0 items */
	for (long n = 0; n <= n_threads; n++) {
		snprintf(what, sizeof(what), "%d threads, %ld items", n_threads, n);
		run_check(p, &j, n, what);
	}
	/* heavy, uneven items */
	j.spin_every = 3;
	snprintf(what, sizeof(what), "%d threads, uneven items", n_threads);
	run_check(p, &j, 600, what);
	CHECK(atomic_load(&j.max_thread) < n_threads, "%d threads: an item ran on thread %d",
	      n_threads, atomic_load(&j.max_thread));
	j.spin_every = 0;
	/* items that wait for earlier items of the same loop (a lost wake-up hangs) */
	for (int r = 0; r < 3; r++) {
		snprintf(what, sizeof(what), "%d threads, await chain %d", n_threads, r);
		chain_check(p, &j, 200, what);
	}
	/* after a pause in which every thread has stopped spinning and sleeps */
	for (int r = 0; r < 20; r++) {
		sleep_us(r % 2 ? 1000 : 300);
		snprintf(what, sizeof(what), "%d threads, after a pause, loop %d", n_threads, r);
		run_check(p, &j, MAX_N, what);
	}
	hmoe_pool_destroy(p);
	/* destroyed at once (workers still spinning) and after they fell asleep */
	for (int r = 0; r < 2; r++) {
		p = NULL;
		CHECK(hmoe_pool_create(&p, n_threads) == 0, "create again");
		if (!p)
			return;
		run_check(p, &j, 100, "before destroy");
		if (r)
			sleep_us(2000);
		hmoe_pool_destroy(p);
	}
}

static void hung(int sig)
{
	static const char msg[] = "FAIL: the pool hung for 120 s (a lost wake-up?)\n";

	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0)
		_exit(2);
	_exit(1);
}

int main(void)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	static struct job j;

	signal(SIGALRM, hung);
	alarm(120);
	/* a NULL pool runs serially on the caller */
	run_check(NULL, &j, 50, "NULL pool");
	chain_check(NULL, &j, 50, "NULL pool");
	exercise(1);
	exercise(2);
	exercise(ncpu > 0 ? (int)ncpu : 2);
	exercise(ncpu > 0 ? 3 * (int)ncpu + 1 : 7);  /* oversubscribed: no spinning */
	/* spinning off by the environment (every hand-off through the condition variables) */
	setenv("HMOE_POOL_SPIN_US", "0", 1);
	exercise(2);
	exercise(ncpu > 0 ? (int)ncpu : 2);
	if (!failures)
		printf("pool: PASSED\n");
	return failures ? 1 : 0;
}
