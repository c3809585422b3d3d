/* hmoe_cuda_emu: the emulator behind hmoe_cuda_emu.h (see there for what it models and
 * checks). One fiber (ucontext, own stack) per CUDA thread; all fibers of a CTA run on
 * the calling OS thread, switched only at the primitives, so every shared structure here
 * is touched by one fiber at a time. Under ASan every switch is announced to it
 * (__sanitizer_start/finish_switch_fiber); its one-time warning that it "doesn't fully
 * support makecontext/swapcontext" is printed regardless. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

#include <vector>

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/common_interface_defs.h>
#endif

#include "hmoe_cuda_emu.h"

emu_uint3 threadIdx, blockIdx, gridDim, blockDim;

namespace {

constexpr size_t STACK_BYTES = 256 * 1024;
constexpr uint32_t SMEM_BASE = 0x400;  /* shared-window address of the array's byte 0 */
constexpr size_t CHUNK = 16;           /* cp.async granule, bytes */
constexpr int N_BARS = 16;             /* bar.sync ids: 0 (__syncthreads) .. 15 */

enum coll_kind { C_NONE, C_SHFL, C_LDSM, C_LDSM_T, C_MMA };
const char *const coll_name[] = { "none", "__shfl_xor_sync", "ldmatrix.x4",
				  "ldmatrix.x4.trans", "mma.sync" };

struct cp_op {
	uint32_t off;               /* byte offset in the dynamic shared array */
	const unsigned char *src;
	bool valid;
};

enum fiber_state { F_RUN, F_BLOCKED, F_DONE };

struct fiber {
	ucontext_t ctx;
	unsigned char *stack;
	void *asan_fake;
	int tid, warp, lane;
	fiber_state st;
	int wait_bar;               /* blocked on: barrier id, or -1 (a warp collective) */
	std::vector<cp_op> open;                 /* issued, not committed */
	std::vector<std::vector<cp_op>> groups;  /* committed, oldest first */
	std::vector<uint32_t> vc;   /* vector clock; vc[tid] is this thread's epoch */
	int rpos;                   /* index in its warp's runnable list, or -1 */
};

struct warp_coll {
	int arrived, kind, param;
	uint32_t in[32][6];
	float fin[32][4];
	uint32_t out[32][4];
	float fout[32][4];
};

struct barrier {
	int arrived, expected;
	uint64_t phase_warps, used_warps;   /* warps of this phase / of every completed one */
	std::vector<int> lanes;             /* per warp, this phase */
	std::vector<int> waiters;
};

/* what we know of each 16 bytes of shared memory */
struct chunk {
	int pend;                   /* thread whose cp.async into it is in flight, or -1 */
	int wr_tid;                 /* thread whose completed cp.async wrote it last, or -1 */
	uint32_t wr_epoch;
};
struct chunk_read {
	int tid;                    /* last ldmatrix read of the chunk by this warp, or -1 */
	uint32_t epoch;
};

struct gbuf {
	const unsigned char *p;
	size_t n;
};

struct emu {
	const emu_launch *l = nullptr;
	void (*body)(void *) = nullptr;
	void *arg = nullptr;
	int nthreads = 0, nwarps = 0;
	std::vector<fiber> f;
	fiber *cur = nullptr;
	ucontext_t main_ctx;
	void *main_fake = nullptr;
	const void *main_bottom = nullptr;
	size_t main_size = 0;
	int n_done = 0;
	unsigned char poison = 0xff;
	/* scheduler */
	uint64_t rng = 1;
	uint64_t redraw_mask = 0;   /* redraw the warp priority when rand & mask == 0 */
	uint64_t switch_mask = 0;   /* reschedule at a point when rand & mask == 0 */
	std::vector<uint64_t> prio;
	std::vector<std::vector<int>> runnable;
	std::vector<warp_coll> wc;
	barrier bars[N_BARS];
	std::vector<chunk> ch;
	std::vector<chunk_read> rd;   /* [chunk][warp] */
	std::vector<gbuf> globals;
	const char *context = "";
	uint64_t seed = 0;
	long cta_index = 0;

	~emu()
	{
		for (fiber &fb : f)
			free(fb.stack);
	}
};
emu E;

uint64_t rnd(void)
{
	uint64_t z = (E.rng += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

[[noreturn]] __attribute__((format(printf, 1, 2))) void fail(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	printf("EMU CHECK FAILED: %s: %s", E.context, E.l ? E.l->name : "?");
	printf(" CTA (%u,%u,%u)", blockIdx.x, blockIdx.y, blockIdx.z);
	if (E.cur)
		printf(" thread %d (warp %d lane %d)", E.cur->tid, E.cur->warp, E.cur->lane);
	printf(": ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n(seed %llu: HMOE_TEST_SEED replays this exact run)\n",
	       (unsigned long long)E.seed);
	fflush(stdout);
	_exit(1);
}

/* ---- fibers and the scheduler ---- */

void asan_start(void **fake, const void *bottom, size_t size)
{
#ifdef __SANITIZE_ADDRESS__
	__sanitizer_start_switch_fiber(fake, bottom, size);
#else
	(void)fake, (void)bottom, (void)size;
#endif
}

void asan_finish(void *fake, const void **bottom, size_t *size)
{
#ifdef __SANITIZE_ADDRESS__
	__sanitizer_finish_switch_fiber(fake, bottom, size);
#else
	(void)fake, (void)bottom, (void)size;
#endif
}

/* Runs `to` (nullptr: back to emu_run) until it switches away; `from` (nullptr: emu_run)
 * resumes here later. */
void switch_to(fiber *from, fiber *to)
{
	if (from == to)
		return;
	E.cur = to;
	if (to)
		threadIdx = emu_uint3{ (unsigned)to->tid, 0, 0 };
	asan_start(from ? &from->asan_fake : &E.main_fake, to ? to->stack : E.main_bottom,
		   to ? STACK_BYTES : E.main_size);
	swapcontext(from ? &from->ctx : &E.main_ctx, to ? &to->ctx : &E.main_ctx);
	asan_finish(from ? from->asan_fake : E.main_fake, nullptr, nullptr);
}

void make_runnable(fiber *f)
{
	std::vector<int> &r = E.runnable[f->warp];

	f->st = F_RUN;
	f->rpos = (int)r.size();
	r.push_back(f->tid);
}

void make_blocked(fiber *f, int bar)
{
	std::vector<int> &r = E.runnable[f->warp];
	int last = r.back();

	r[f->rpos] = last;
	E.f[last].rpos = f->rpos;
	r.pop_back();
	f->rpos = -1;
	f->st = F_BLOCKED;
	f->wait_bar = bar;
}

/* A runnable fiber of the highest-priority warp that has one (a random lane of it). */
fiber *pick(void)
{
	int best = -1;

	for (int w = 0; w < E.nwarps; w++)
		if (!E.runnable[w].empty() && (best < 0 || E.prio[w] > E.prio[best]))
			best = w;
	if (best < 0)
		return nullptr;
	std::vector<int> &r = E.runnable[best];
	return &E.f[r[rnd() % r.size()]];
}

[[noreturn]] void deadlock(void)
{
	char what[4096];
	size_t n = 0;

	what[0] = 0;
	for (int id = 0; id < N_BARS && n < sizeof(what); id++)
		if (E.bars[id].arrived)
			n += (size_t)snprintf(what + n, sizeof(what) - n,
					      " [barrier %d: %d of %d threads arrived]", id,
					      E.bars[id].arrived, E.bars[id].expected);
	for (int w = 0; w < E.nwarps && n < sizeof(what); w++)
		if (E.wc[w].arrived)
			n += (size_t)snprintf(what + n, sizeof(what) - n,
					      " [warp %d: %d of 32 lanes at %s]", w, E.wc[w].arrived,
					      coll_name[E.wc[w].kind]);
	E.cur = nullptr;
	fail("deadlock: %d of %d threads exited, the others wait:%s", E.n_done, E.nthreads,
	     what);
}

/* The current fiber blocked (or exited): run another. */
void schedule_away(void)
{
	fiber *next = pick();

	if (!next)
		deadlock();
	switch_to(E.cur, next);
}

/* A scheduling point (every primitive): maybe redraw this warp's priority, maybe hand
 * over to another fiber. */
void point(void)
{
	fiber *me = E.cur;

	if ((rnd() & E.redraw_mask) == 0)
		E.prio[me->warp] = rnd();
	if ((rnd() & E.switch_mask) == 0) {
		fiber *next = pick();

		switch_to(me, next);
	}
}

void fiber_main(void)
{
	fiber *me = E.cur;
	const void *from_bottom = nullptr;
	size_t from_size = 0;

	/* the first fiber ever is started from emu_run: remember that stack to go back */
	asan_finish(nullptr, &from_bottom, &from_size);
	if (!E.main_size) {
		E.main_bottom = from_bottom;
		E.main_size = from_size;
	}
	E.body(E.arg);
	if (!me->open.empty())
		fail("exits with %zu cp.async not committed", me->open.size());
	for (const std::vector<cp_op> &g : me->groups)
		if (!g.empty())
			fail("exits with %zu committed cp.async never waited for", g.size());
	make_blocked(me, -1);
	me->st = F_DONE;
	if (++E.n_done == E.nthreads) {
		E.cur = nullptr;
		asan_start(nullptr, E.main_bottom, E.main_size);
		setcontext(&E.main_ctx);
	}
	fiber *next = pick();

	if (!next)
		deadlock();
	E.cur = next;
	threadIdx = emu_uint3{ (unsigned)next->tid, 0, 0 };
	asan_start(nullptr, next->stack, STACK_BYTES);
	setcontext(&next->ctx);
	abort();
}

/* ---- vector clocks: a barrier orders everything its participants did before it ---- */

void sync_clocks(const std::vector<int> &tids)
{
	std::vector<uint32_t> m(E.nthreads, 0);

	for (int t : tids)
		for (int i = 0; i < E.nthreads; i++)
			if (E.f[t].vc[i] > m[i])
				m[i] = E.f[t].vc[i];
	for (int t : tids) {
		E.f[t].vc = m;
		E.f[t].vc[t]++;
	}
}

/* whether what thread t did at epoch e happens before the current fiber's next step */
bool ordered(int t, uint32_t e)
{
	return t < 0 || t == E.cur->tid || E.cur->vc[t] >= e;
}

/* ---- barriers ---- */

void bar_arrive(int id, int threads, const char *what)
{
	fiber *me = E.cur;
	barrier &b = E.bars[id];

	point();
	if (b.arrived == 0) {
		b.expected = threads;
		b.phase_warps = 0;
		b.lanes.assign(E.nwarps, 0);
		b.waiters.clear();
	} else if (threads != b.expected) {
		fail("%s: barrier %d with %d threads, other threads of this phase said %d", what,
		     id, threads, b.expected);
	}
	b.arrived++;
	b.lanes[me->warp]++;
	b.phase_warps |= 1ull << me->warp;
	b.waiters.push_back(me->tid);
	if (b.arrived < b.expected) {
		make_blocked(me, id);
		schedule_away();
		return;
	}
	for (int w = 0; w < E.nwarps; w++)
		if (b.lanes[w] != 0 && b.lanes[w] != 32)
			fail("%s: barrier %d completed with %d lanes of warp %d (whole warps only)",
			     what, id, b.lanes[w], w);
	if (id != 0) {
		if (b.used_warps == 0)
			b.used_warps = b.phase_warps;
		else if (b.used_warps != b.phase_warps)
			fail("%s: barrier %d joined by warps %#llx, earlier by %#llx (one set of "
			     "warps per id)", what, id, (unsigned long long)b.phase_warps,
			     (unsigned long long)b.used_warps);
	}
	sync_clocks(b.waiters);
	b.arrived = 0;
	for (int t : b.waiters)
		if (t != me->tid)
			make_runnable(&E.f[t]);
	point();
}

/* ---- warp collectives ---- */

void compute(warp_coll &c)
{
	switch (c.kind) {
	case C_SHFL:
		for (int l = 0; l < 32; l++)
			c.fout[l][0] = c.fin[l ^ c.param][0];
		break;
	case C_LDSM:
	case C_LDSM_T:
		for (int l = 0; l < 32; l++) {
			int g = l >> 2, t = l & 3;

			for (int j = 0; j < 4; j++) {
				uint16_t lo, hi;

				if (c.kind == C_LDSM) {   /* row g of matrix j, elements 2t, 2t + 1 */
					const unsigned char *row = E.l->smem + c.in[8 * j + g][0];

					memcpy(&lo, row + 4 * t, 2);
					memcpy(&hi, row + 4 * t + 2, 2);
				} else {                  /* element g of rows 2t, 2t + 1 */
					memcpy(&lo, E.l->smem + c.in[8 * j + 2 * t][0] + 2 * g, 2);
					memcpy(&hi, E.l->smem + c.in[8 * j + 2 * t + 1][0] + 2 * g, 2);
				}
				c.out[l][j] = (uint32_t)lo | (uint32_t)hi << 16;
			}
		}
		break;
	case C_MMA: {
		float A[16][16], B[16][8];

		for (int l = 0; l < 32; l++) {
			int g = l >> 2, t = l & 3;

			for (int e = 0; e < 2; e++) {
				/* a0 (g, 2t), a1 (g + 8, 2t), a2 (g, 2t + 8), a3 (g + 8, 2t + 8) */
				A[g][2 * t + e] = emu_bf2f((uint16_t)(c.in[l][0] >> 16 * e));
				A[g + 8][2 * t + e] = emu_bf2f((uint16_t)(c.in[l][1] >> 16 * e));
				A[g][2 * t + 8 + e] = emu_bf2f((uint16_t)(c.in[l][2] >> 16 * e));
				A[g + 8][2 * t + 8 + e] = emu_bf2f((uint16_t)(c.in[l][3] >> 16 * e));
				/* b0 (k 2t, n g), b1 (k 2t + 8, n g) */
				B[2 * t + e][g] = emu_bf2f((uint16_t)(c.in[l][4] >> 16 * e));
				B[2 * t + 8 + e][g] = emu_bf2f((uint16_t)(c.in[l][5] >> 16 * e));
			}
		}
		for (int l = 0; l < 32; l++) {
			int g = l >> 2, t = l & 3;

			/* c0, c1 (g, 2t..2t+1), c2, c3 (g + 8, 2t..2t+1) */
			for (int e = 0; e < 4; e++) {
				int row = g + 8 * (e >> 1), col = 2 * t + (e & 1);
				double s = c.fin[l][e];

				for (int k = 0; k < 16; k++)
					s += (double)A[row][k] * B[k][col];
				c.fout[l][e] = (float)s;
			}
		}
		break;
	}
	default:
		break;
	}
}

/* The current lane's inputs are in its slots; returns once the warp's collective has
 * completed, with its outputs in the slots. */
void coll_arrive(int kind, int param)
{
	fiber *me = E.cur;
	warp_coll &c = E.wc[me->warp];

	if (c.arrived == 0) {
		c.kind = kind;
		c.param = param;
	} else if (c.kind != kind || c.param != param) {
		fail("lanes of one warp at different collectives: %s (%d) here, %s (%d) for %d "
		     "other lanes", coll_name[kind], param, coll_name[c.kind], c.param, c.arrived);
	}
	if (++c.arrived < 32) {
		make_blocked(me, -1);
		schedule_away();
		return;
	}
	compute(c);
	c.arrived = 0;
	for (int l = 0; l < 32; l++) {
		fiber *o = &E.f[me->warp * 32 + l];

		if (o != me)
			make_runnable(o);
	}
}

/* ---- shared memory ---- */

size_t smem_off(uint32_t addr, size_t bytes, size_t align, const char *what)
{
	if (addr < SMEM_BASE || addr - SMEM_BASE + bytes > E.l->smem_bytes)
		fail("%s: shared address %#x (offset %lld) + %zu bytes outside the %zu-byte "
		     "dynamic shared memory", what, addr, (long long)addr - SMEM_BASE, bytes,
		     E.l->smem_bytes);
	if ((addr - SMEM_BASE) % align)
		fail("%s: shared offset %u not %zu-byte aligned", what, addr - SMEM_BASE, align);
	return addr - SMEM_BASE;
}

void ldsm(uint32_t r[4], uint32_t addr, bool trans)
{
	fiber *me = E.cur;
	const char *what = trans ? "ldmatrix.x4.trans" : "ldmatrix.x4";
	size_t off = smem_off(addr, 16, 16, what), ci = off / CHUNK;
	chunk &c = E.ch[ci];

	point();
	/* this lane's row is read when the warp's ldmatrix completes (below): the bytes must
	 * have landed and be ordered before this thread (the barrier after the wait_group) */
	if (c.pend >= 0)
		fail("%s reads shared offset %zu while thread %d's cp.async into it is in flight "
		     "(no wait_group completed it yet)", what, off, c.pend);
	if (!ordered(c.wr_tid, c.wr_epoch))
		fail("%s reads shared offset %zu, written by thread %d's cp.async, with no "
		     "barrier between that thread's wait_group and this read", what, off,
		     c.wr_tid);
	E.rd[ci * E.nwarps + me->warp] = chunk_read{ me->tid, me->vc[me->tid] };
	E.wc[me->warp].in[me->lane][0] = (uint32_t)off;
	coll_arrive(trans ? C_LDSM_T : C_LDSM, 0);
	memcpy(r, E.wc[me->warp].out[me->lane], 16);
}

}  // namespace

/* ---- the builtins and primitives ---- */

void __syncthreads(void)
{
	bar_arrive(0, E.nthreads, "__syncthreads");
}

float __shfl_xor_sync(unsigned mask, float v, int lane_mask)
{
	fiber *me = E.cur;

	point();
	if (mask != 0xffffffffu)
		fail("__shfl_xor_sync mask %#x (the kernels use full warps)", mask);
	if (lane_mask < 0 || lane_mask > 31)
		fail("__shfl_xor_sync lane mask %d", lane_mask);
	E.wc[me->warp].fin[me->lane][0] = v;
	coll_arrive(C_SHFL, lane_mask);
	return E.wc[me->warp].fout[me->lane][0];
}

uint32_t hmma_smem(const void *p)
{
	const unsigned char *c = (const unsigned char *)p;

	if (c < E.l->smem || c > E.l->smem + E.l->smem_bytes)
		fail("hmma_smem of a pointer outside the dynamic shared memory (offset %lld)",
		     (long long)(c - E.l->smem));
	return SMEM_BASE + (uint32_t)(c - E.l->smem);
}

void hmma_ldsm_x4(uint32_t r[4], uint32_t addr)
{
	ldsm(r, addr, false);
}

void hmma_ldsm_x4_trans(uint32_t r[4], uint32_t addr)
{
	ldsm(r, addr, true);
}

void hmma_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
	fiber *me = E.cur;
	warp_coll &w = E.wc[me->warp];

	point();
	memcpy(w.in[me->lane], a, 16);
	w.in[me->lane][4] = b0;
	w.in[me->lane][5] = b1;
	memcpy(w.fin[me->lane], c, 16);
	coll_arrive(C_MMA, 0);
	memcpy(c, w.fout[me->lane], 16);
}

void hmma_cp16(uint32_t dst, const void *src, bool valid)
{
	fiber *me = E.cur;
	const unsigned char *s = (const unsigned char *)src;
	size_t off, ci;
	const gbuf *in = nullptr;

	point();
	off = smem_off(dst, 16, 16, "cp.async destination");
	ci = off / CHUNK;
	/* a zero-filling copy reads nothing, but its source must still point into (or just
	 * past) a buffer; a real one reads 16 aligned bytes inside one */
	for (const gbuf &g : E.globals)
		if (s >= g.p && s <= g.p + g.n && (!in || s + 16 <= g.p + g.n))
			in = &g;
	if (!in)
		fail("cp.async source %p (valid %d) in no global buffer of the launch", src, valid);
	if (valid && ((uintptr_t)s % 16 || s + 16 > in->p + in->n))
		fail("cp.async source at byte %lld of a %zu-byte buffer: must be 16-byte aligned "
		     "with 16 bytes inside", (long long)(s - in->p), in->n);
	chunk &c = E.ch[ci];

	if (c.pend >= 0)
		fail("cp.async into shared offset %zu while thread %d's cp.async into it is in "
		     "flight", off, c.pend);
	if (!ordered(c.wr_tid, c.wr_epoch))
		fail("cp.async into shared offset %zu, which thread %d's cp.async wrote with no "
		     "barrier in between", off, c.wr_tid);
	for (int w = 0; w < E.nwarps; w++) {
		const chunk_read &r = E.rd[ci * E.nwarps + w];

		if (w != me->warp && !ordered(r.tid, r.epoch))
			fail("cp.async into shared offset %zu, which thread %d (warp %d) read by "
			     "ldmatrix with no barrier between that read and this copy", off, r.tid,
			     w);
	}
	c.pend = me->tid;
	memset(E.l->smem + off, 0xff, 16);   /* NaN until the wait_group */
	me->open.push_back(cp_op{ (uint32_t)off, s, valid });
}

void hmma_cp_commit(void)
{
	fiber *me = E.cur;

	point();
	me->groups.push_back(me->open);
	me->open.clear();
}

void emu_cp_wait(int n)
{
	fiber *me = E.cur;

	point();
	if (n < 0)
		fail("cp.async.wait_group %d", n);
	while ((int)me->groups.size() > n) {
		for (const cp_op &op : me->groups.front()) {
			chunk &c = E.ch[op.off / CHUNK];

			if (op.valid)
				memcpy(E.l->smem + op.off, op.src, 16);
			else
				memset(E.l->smem + op.off, 0, 16);
			c.pend = -1;
			c.wr_tid = me->tid;
			c.wr_epoch = me->vc[me->tid];
		}
		me->groups.erase(me->groups.begin());
	}
	point();
}

void hmma_bar(int id, int threads)
{
	if (id < 1 || id >= N_BARS)
		fail("named barrier id %d (1..15; 0 is __syncthreads')", id);
	if (threads <= 0 || threads % 32 || threads > E.nthreads)
		fail("named barrier %d for %d threads (a multiple of 32, at most the block's %d)",
		     id, threads, E.nthreads);
	bar_arrive(id, threads, "hmma_bar");
}

/* ---- launching ---- */

void emu_global(const void *p, size_t bytes)
{
	E.globals.push_back(gbuf{ (const unsigned char *)p, bytes });
}

void emu_globals_clear(void)
{
	E.globals.clear();
}

void emu_seed(uint64_t seed)
{
	E.seed = seed;
	E.rng = seed ^ 0x6a09e667f3bcc909ull;
}

void emu_context(const char *what)
{
	E.context = what;
}

static void run_cta(void)
{
	const emu_launch &l = *E.l;
	static const uint64_t masks[] = { 0, 1, 15, 255 };

	/* garbage shared memory: NaN (bf16 and fp32) or a huge finite value, so a read of
	 * anything never written shows; bytes past the launch's size stay as a canary */
	E.poison = rnd() & 1 ? 0xff : 0x7f;
	memset(l.smem, E.poison, l.smem_cap);
	for (chunk &c : E.ch)
		c = chunk{ -1, -1, 0 };
	for (chunk_read &r : E.rd)
		r = chunk_read{ -1, 0 };
	for (barrier &b : E.bars) {
		b.arrived = 0;
		b.used_warps = 0;
	}
	/* the schedule: warp priorities, and how often they change / fibers switch */
	E.redraw_mask = masks[rnd() % 4];
	E.switch_mask = masks[rnd() % 4];
	for (int w = 0; w < E.nwarps; w++) {
		E.prio[w] = rnd();
		E.runnable[w].clear();
		E.wc[w].arrived = 0;
	}
	E.n_done = 0;
	for (int t = 0; t < E.nthreads; t++) {
		fiber &f = E.f[t];

		f.tid = t;
		f.warp = t / 32;
		f.lane = t % 32;
		f.open.clear();
		f.groups.clear();
		f.vc.assign(E.nthreads, 0);
		f.vc[t] = 1;
		f.asan_fake = nullptr;
		getcontext(&f.ctx);
		f.ctx.uc_stack.ss_sp = f.stack;
		f.ctx.uc_stack.ss_size = STACK_BYTES;
		f.ctx.uc_link = nullptr;
		makecontext(&f.ctx, fiber_main, 0);
		make_runnable(&f);
	}
	switch_to(nullptr, pick());
	E.cur = nullptr;
	for (size_t i = l.smem_bytes; i < l.smem_cap; i++)
		if (l.smem[i] != E.poison)
			fail("shared byte %zu, past the %zu-byte dynamic shared memory, was written", i,
			     l.smem_bytes);
}

void emu_run(const emu_launch &l, void (*body)(void *), void *arg)
{
	long n_cta = (long)l.grid.x * l.grid.y * l.grid.z;
	std::vector<long> order((size_t)n_cta);

	E.l = &l;
	E.body = body;
	E.arg = arg;
	E.cur = nullptr;
	if (l.threads == 0 || l.threads % 32 || l.threads > 1024 || l.smem_bytes > l.smem_cap)
		fail("launch of %u threads, %zu bytes of shared memory (array %zu)", l.threads,
		     l.smem_bytes, l.smem_cap);
	E.nthreads = (int)l.threads;
	E.nwarps = E.nthreads / 32;
	while (E.f.size() < (size_t)E.nthreads) {
		E.f.emplace_back();
		E.f.back().stack = (unsigned char *)malloc(STACK_BYTES);
		if (!E.f.back().stack)
			fail("out of memory");
	}
	E.prio.assign(E.nwarps, 0);
	E.runnable.assign(E.nwarps, std::vector<int>());
	E.wc.assign(E.nwarps, warp_coll());
	E.ch.assign(l.smem_bytes / CHUNK + 1, chunk());
	E.rd.assign(E.ch.size() * E.nwarps, chunk_read());
	gridDim = l.grid;
	blockDim = emu_uint3{ l.threads, 1, 1 };
	for (long i = 0; i < n_cta; i++)
		order[(size_t)i] = i;
	for (long i = n_cta - 1; i > 0; i--) {
		long j = (long)(rnd() % (uint64_t)(i + 1)), t = order[(size_t)i];

		order[(size_t)i] = order[(size_t)j];
		order[(size_t)j] = t;
	}
	for (long i = 0; i < n_cta; i++) {
		long c = order[(size_t)i];

		blockIdx = emu_uint3{ (unsigned)(c % l.grid.x), (unsigned)(c / l.grid.x % l.grid.y),
				      (unsigned)(c / l.grid.x / l.grid.y) };
		E.cta_index++;
		run_cta();
	}
	E.l = nullptr;
}
