/* hmoe_ktest: the tests of hmoe.ko that run inside the QEMU guest (tests/kmod/run_vm.sh).
 *
 * A static program with raw ioctls on the uapi header, so the guest needs no libraries.
 * `hmoe_ktest TEST...` runs the named tests (`all` for every one) and prints one line
 * per test, "KTEST <name> PASS" or "KTEST <name> FAIL <why>", which the harness reads
 * from the serial console. Exit status: 0 when every test passed.
 *
 * The expert FFN test compiles the same hls/ sources into this program and compares the
 * card's output with the user-space kernel's, byte for byte.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hmoe_drm.h"
#include "hmoe_ffn.h"

/* ---------------------------------------------------------------- test plumbing */

#define HMOE_MAX_QUEUES_PER_FILE_TEST 64 /* get_info.max_queues, checked in basic */

static char fail_msg[4608];

__attribute__((format(printf, 2, 3))) static void check_failed(int line, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(fail_msg, sizeof(fail_msg), "line %d: ", line);

	va_start(ap, fmt);
	vsnprintf(fail_msg + n, sizeof(fail_msg) - n, fmt, ap);
	va_end(ap);
}

#define CHECK(cond, ...)                                                               \
	do {                                                                           \
		if (!(cond)) {                                                         \
			check_failed(__LINE__, __VA_ARGS__);                           \
			return 1;                                                      \
		}                                                                      \
	} while (0)

/* ioctl returning 0 or -errno, retrying on EINTR/EAGAIN like drmIoctl(). */
static int xioctl(int fd, unsigned long req, void *arg)
{
	int r;

	do
		r = ioctl(fd, req, arg);
	while (r == -1 && (errno == EINTR || errno == EAGAIN));
	return r == -1 ? -errno : 0;
}

/* Expects an ioctl to fail with exactly `want` (negative errno). */
#define CHECK_ERR(fd, req, arg, want)                                                  \
	do {                                                                           \
		int got_ = xioctl(fd, req, arg);                                       \
		CHECK(got_ == (want), "%s: got %d (%s), want %d (%s)", #req, got_,     \
		      strerror(-got_), want, strerror(-(want)));                         \
	} while (0)

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Opens the n-th hmoe node (accel or render), checking the driver name. */
static int open_card(int n)
{
	static const char *const pat[] = { "/dev/accel/accel%d", "/dev/dri/renderD%d" };
	static const int first[] = { 0, 128 };
	char path[64], name[16];
	int seen = 0;

	for (int p = 0; p < 2; p++) {
		for (int i = first[p]; i < first[p] + 64; i++) {
			struct drm_version v = { 0 };
			int fd;

			snprintf(path, sizeof(path), pat[p], i);
			fd = open(path, O_RDWR | O_CLOEXEC);
			if (fd < 0)
				continue;
			memset(name, 0, sizeof(name));
			v.name = name;
			v.name_len = sizeof(name) - 1;
			if (!xioctl(fd, DRM_IOCTL_VERSION, &v) && !strcmp(name, "hmoe") &&
			    seen++ == n)
				return fd;
			close(fd);
		}
	}
	return -1;
}

static int bo_create(int fd, uint64_t size, uint32_t flags, uint32_t *handle)
{
	struct drm_hmoe_bo_create c = { .size = size, .flags = flags };
	int ret = xioctl(fd, DRM_IOCTL_HMOE_BO_CREATE, &c);

	*handle = c.handle;
	return ret;
}

static int bo_close(int fd, uint32_t handle)
{
	struct drm_gem_close c = { .handle = handle };

	return xioctl(fd, DRM_IOCTL_GEM_CLOSE, &c);
}

static void *bo_map(int fd, uint32_t handle, size_t size)
{
	struct drm_hmoe_bo_mmap_offset m = { .handle = handle };
	void *p;

	if (xioctl(fd, DRM_IOCTL_HMOE_BO_MMAP_OFFSET, &m))
		return NULL;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)m.offset);
	return p == MAP_FAILED ? NULL : p;
}

static int queue_create(int fd, uint32_t dir, uint32_t ring, uint32_t *id)
{
	struct drm_hmoe_queue_create c = { .direction = dir, .ring_size = ring };
	int ret = xioctl(fd, DRM_IOCTL_HMOE_QUEUE_CREATE, &c);

	*id = c.queue_id;
	return ret;
}

static int queue_destroy(int fd, uint32_t id)
{
	struct drm_hmoe_queue_destroy d = { .queue_id = id };

	return xioctl(fd, DRM_IOCTL_HMOE_QUEUE_DESTROY, &d);
}

static struct drm_hmoe_job copy_job(uint32_t src, uint64_t soff, uint32_t dst, uint64_t doff,
				    uint64_t size)
{
	struct drm_hmoe_job j = { .type = HMOE_JOB_COPY };

	j.copy.src_handle = src;
	j.copy.dst_handle = dst;
	j.copy.src_offset = soff;
	j.copy.dst_offset = doff;
	j.copy.size = size;
	return j;
}

static int submit(int fd, uint32_t q, struct drm_hmoe_job *jobs, uint32_t n, uint64_t *seqno)
{
	struct drm_hmoe_submit s = {
		.queue_id = q, .n_jobs = n, .jobs = (uintptr_t)jobs,
		.job_size = sizeof(*jobs),
	};
	int ret = xioctl(fd, DRM_IOCTL_HMOE_SUBMIT, &s);

	if (seqno)
		*seqno = s.seqno;
	return ret;
}

static int wait_job(int fd, uint32_t q, uint64_t seqno, int64_t timeout_ms, uint32_t *status)
{
	struct drm_hmoe_wait w = {
		.queue_id = q, .seqno = seqno, .timeout_ns = now_ns() + timeout_ms * 1000000,
	};
	int ret = xioctl(fd, DRM_IOCTL_HMOE_WAIT, &w);

	*status = w.status;
	return ret;
}

static int job_status(int fd, uint32_t q, uint64_t seqno, uint32_t *status)
{
	struct drm_hmoe_job_status s = { .queue_id = q, .seqno = seqno };
	int ret = xioctl(fd, DRM_IOCTL_HMOE_JOB_STATUS, &s);

	*status = s.status;
	return ret;
}

/* Copies size bytes host BO -> card BO -> host BO through an H2C and a C2H queue. */
static int roundtrip(int fd, uint32_t h2c, uint32_t c2h, uint32_t src, uint32_t card,
		     uint32_t dst, uint64_t size)
{
	struct drm_hmoe_job j;
	uint64_t seq;
	uint32_t st;
	int ret;

	j = copy_job(src, 0, card, 0, size);
	if ((ret = submit(fd, h2c, &j, 1, &seq)) || (ret = wait_job(fd, h2c, seq, 5000, &st)))
		return ret;
	if (st != HMOE_JOB_OK)
		return -EIO;
	j = copy_job(card, 0, dst, 0, size);
	if ((ret = submit(fd, c2h, &j, 1, &seq)) || (ret = wait_job(fd, c2h, seq, 5000, &st)))
		return ret;
	return st == HMOE_JOB_OK ? 0 : -EIO;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void fill_random(void *p, size_t n)
{
	uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)rng();
}

/* debugfs files of card 0 */
static const char *debugfs_dir(void)
{
	static char dir[320];
	DIR *d = opendir("/sys/kernel/debug/hmoe");
	struct dirent *e;

	if (!d)
		return NULL;
	dir[0] = 0;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, "hmoe_emu.0") || (!dir[0] && e->d_name[0] != '.'))
			snprintf(dir, sizeof(dir), "/sys/kernel/debug/hmoe/%s", e->d_name);
	}
	closedir(d);
	return dir[0] ? dir : NULL;
}

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY), ok;

	if (fd < 0)
		return -errno;
	ok = write(fd, text, strlen(text)) == (ssize_t)strlen(text);
	close(fd);
	return ok ? 0 : -EIO;
}

static int read_file(const char *path, char *buf, size_t n)
{
	int fd = open(path, O_RDONLY);
	ssize_t r;

	if (fd < 0)
		return -errno;
	r = read(fd, buf, n - 1);
	close(fd);
	if (r < 0)
		return -EIO;
	buf[r] = 0;
	return 0;
}

static int inject(const char *what, int n)
{
	char path[400], num[16];
	const char *dir = debugfs_dir();

	if (!dir)
		return -ENOENT;
	snprintf(path, sizeof(path), "%s/inject_%s", dir, what);
	snprintf(num, sizeof(num), "%d", n);
	return write_file(path, num);
}

/* ---------------------------------------------------------------- tests */

/* get-info, BO create/mmap/info/sync/close, queues, DMA copies, wait, status, fence fd. */
static int test_basic(void)
{
	struct drm_hmoe_get_info info = { 0 };
	struct drm_hmoe_bo_info bi = { 0 };
	struct drm_hmoe_bo_sync sync = { 0 };
	const size_t size = 1 << 20;
	uint32_t src, dst, card, h2c, c2h, st;
	uint8_t *ps, *pd;
	int fd = open_card(0);

	CHECK(fd >= 0, "no hmoe node in /dev/accel or /dev/dri");
	CHECK(!xioctl(fd, DRM_IOCTL_HMOE_GET_INFO, &info), "get_info failed");
	CHECK(info.version_major == HMOE_DRM_VERSION_MAJOR && info.backend == HMOE_BACKEND_EMU &&
	      info.n_compute_units >= 1 && info.card_mem_bytes >= (64u << 20) &&
	      info.card_mem_free_bytes == info.card_mem_bytes &&
	      info.weight_formats == 7 && info.max_queues == HMOE_MAX_QUEUES_PER_FILE_TEST && info.max_tokens_per_job == HMOE_FXP_TILE &&
	      info.fxp_contract_version >= 1, "get_info: implausible values");
	/* the emulated card runs the hls/ kernel compiled into this program too */
	CHECK(info.version_minor >= 1 && info.fxp_contract_version == HMOE_FXP_CONTRACT_VERSION &&
	      info.format_flags == HMOE_FORMAT_A16,
	      "get_info: uapi %u.%u, contract %u, format flags %#x (want A16 of contract %d)",
	      info.version_major, info.version_minor, info.fxp_contract_version,
	      info.format_flags, HMOE_FXP_CONTRACT_VERSION);

	CHECK(!bo_create(fd, size, 0, &src) && !bo_create(fd, size, 0, &dst), "bo_create host");
	CHECK(!bo_create(fd, size + 1, HMOE_BO_CARD, &card), "bo_create card");
	bi.handle = card;
	CHECK(!xioctl(fd, DRM_IOCTL_HMOE_BO_INFO, &bi), "bo_info");
	CHECK(bi.flags == HMOE_BO_CARD && bi.size == size + 4096 && bi.card_addr != 0,
	      "bo_info card: flags %u size %llu addr %llu", bi.flags,
	      (unsigned long long)bi.size, (unsigned long long)bi.card_addr);
	memset(&info, 0, sizeof(info));
	CHECK(!xioctl(fd, DRM_IOCTL_HMOE_GET_INFO, &info) &&
	      info.card_mem_bytes - info.card_mem_free_bytes == size + 4096,
	      "card memory in use is not the card BO's size");

	ps = bo_map(fd, src, size);
	pd = bo_map(fd, dst, size);
	CHECK(ps && pd, "mmap of host BOs");
	fill_random(ps, size);
	memset(pd, 0, size);
	sync.handle = src;
	sync.direction = HMOE_SYNC_TO_CARD;
	sync.size = size;
	CHECK(!xioctl(fd, DRM_IOCTL_HMOE_BO_SYNC, &sync), "bo_sync");

	CHECK(!queue_create(fd, HMOE_QUEUE_H2C, 8, &h2c) && !queue_create(fd, HMOE_QUEUE_C2H, 8, &c2h),
	      "queue_create");
	CHECK(!roundtrip(fd, h2c, c2h, src, card, dst, size), "h2c + c2h round trip");
	CHECK(!memcmp(ps, pd, size), "data changed in the round trip");

	/* Ranges at offsets, several jobs per submit, sequence numbers, status. */
	{
		struct drm_hmoe_job j[4];
		struct drm_hmoe_submit s = {
			.queue_id = h2c, .n_jobs = 4, .jobs = (uintptr_t)j,
			.job_size = sizeof(j[0]), .flags = HMOE_SUBMIT_FENCE_FD,
		};
		struct pollfd pfd;
		uint64_t seq;

		for (int i = 0; i < 4; i++)
			j[i] = copy_job(src, 4096 * i + 7, card, 8192 * i + 3, 1000 + i);
		CHECK(!xioctl(fd, DRM_IOCTL_HMOE_SUBMIT, &s), "submit of 4 jobs with fence fd");
		CHECK(s.seqno == 5 && s.fence_fd >= 0, "seqno %llu (want 5), fence fd %d",
		      (unsigned long long)s.seqno, s.fence_fd);
		pfd.fd = s.fence_fd;
		pfd.events = POLLIN;
		CHECK(poll(&pfd, 1, 5000) == 1, "fence fd never signalled");
		close(s.fence_fd);
		CHECK(!job_status(fd, h2c, 5, &st) && st == HMOE_JOB_OK, "status of job 5: %u", st);
		CHECK(!wait_job(fd, h2c, 2, 0, &st) && st == HMOE_JOB_OK, "wait on a done job");
		memset(pd, 0, size);
		for (int i = 0; i < 4; i++)
			j[i] = copy_job(card, 8192 * i + 3, dst, 4096 * i + 7, 1000 + i);
		CHECK(!submit(fd, c2h, j, 4, &seq) && !wait_job(fd, c2h, seq, 5000, &st) &&
		      st == HMOE_JOB_OK, "c2h of 4 ranges");
		for (int i = 0; i < 4; i++)
			CHECK(!memcmp(ps + 4096 * i + 7, pd + 4096 * i + 7, 1000 + i),
			      "range %d differs", i);
	}
	/* A chain: the C2H job waits for the H2C job's fence; one wait at the end. */
	{
		struct drm_hmoe_job up = copy_job(src, 0, card, 0, size), down = copy_job(card, 0, dst, 0, size);
		struct drm_hmoe_submit s1 = {
			.queue_id = h2c, .n_jobs = 1, .jobs = (uintptr_t)&up,
			.job_size = sizeof(up), .flags = HMOE_SUBMIT_FENCE_FD,
		};
		struct drm_hmoe_submit s2 = {
			.queue_id = c2h, .n_jobs = 1, .jobs = (uintptr_t)&down,
			.job_size = sizeof(down), .flags = HMOE_SUBMIT_IN_FENCE,
		};

		fill_random(ps, size);
		memset(pd, 0, size);
		CHECK(!xioctl(fd, DRM_IOCTL_HMOE_SUBMIT, &s1), "chain: h2c");
		s2.in_fence_fd = s1.fence_fd;
		CHECK(!xioctl(fd, DRM_IOCTL_HMOE_SUBMIT, &s2), "chain: c2h with in-fence");
		close(s1.fence_fd);
		CHECK(!wait_job(fd, c2h, s2.seqno, 5000, &st) && st == HMOE_JOB_OK, "chain: %u", st);
		CHECK(!memcmp(ps, pd, size), "chain: the C2H copy ran before the H2C copy");
	}
	CHECK(!queue_destroy(fd, h2c) && !queue_destroy(fd, c2h), "queue_destroy");
	munmap(ps, size);
	munmap(pd, size);
	CHECK(!bo_close(fd, src) && !bo_close(fd, dst) && !bo_close(fd, card), "gem close");
	memset(&info, 0, sizeof(info));
	CHECK(!xioctl(fd, DRM_IOCTL_HMOE_GET_INFO, &info) &&
	      info.card_mem_free_bytes == info.card_mem_bytes, "card memory not freed by close");
	close(fd);
	return 0;
}

/* Every validation path: each bad request fails with its errno and changes nothing. */
static int test_validate(void)
{
	int fd = open_card(0), fd2 = open_card(0);
	uint32_t host, card, card2, h2c, c2h, comp, q2, other[3], st;
	struct drm_hmoe_job j[2];
	uint64_t seq;

	CHECK(fd >= 0 && fd2 >= 0, "open");
	{
		struct drm_hmoe_get_info i = { .reserved = { 0, 0, 1 } };

		CHECK_ERR(fd, DRM_IOCTL_HMOE_GET_INFO, &i, -EINVAL);
		memset(&i, 0, sizeof(i));
		i.pad = 1;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_GET_INFO, &i, -EINVAL);
		memset(&i, 0, sizeof(i));
		i.format_flags = ~0u; /* out: its input value is ignored */
		CHECK(!xioctl(fd, DRM_IOCTL_HMOE_GET_INFO, &i) && i.format_flags == HMOE_FORMAT_A16,
		      "get_info with format_flags set on input: flags %#x", i.format_flags);
	}
	{
		struct drm_hmoe_bo_create c = { .size = 4096 };

		c.size = 0;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_BO_CREATE, &c, -EINVAL);
		c.size = HMOE_BO_MAX_BYTES + 1;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_BO_CREATE, &c, -EINVAL);
		c.size = ~0ull;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_BO_CREATE, &c, -EINVAL);
		c.size = 4096;
		c.flags = 1u << 5;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_BO_CREATE, &c, -EINVAL);
		c.flags = 0;
		c.reserved = 1;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_BO_CREATE, &c, -EINVAL);
		/* More card memory than the card has. */
		c.reserved = 0;
		c.flags = HMOE_BO_CARD;
		c.size = HMOE_BO_MAX_BYTES;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_BO_CREATE, &c, -ENOSPC);
	}
	CHECK(!bo_create(fd, 65536, 0, &host) && !bo_create(fd, 65536, HMOE_BO_CARD, &card),
	      "bo_create");
	/* Handles of the second file: numbers the first file does not have. */
	for (int i = 0; i < 3; i++)
		CHECK(!bo_create(fd2, 4096, HMOE_BO_CARD, &other[i]), "bo_create fd2");
	card2 = other[2];
	{
		struct drm_hmoe_bo_mmap_offset m = { .handle = card };

		CHECK_ERR(fd, DRM_IOCTL_HMOE_BO_MMAP_OFFSET, &m, -EPERM);
		m.handle = 999;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_BO_MMAP_OFFSET, &m, -ENOENT);
		m.handle = host;
		m.pad = 1;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_BO_MMAP_OFFSET, &m, -EINVAL);
		m.pad = 0;
		m.reserved = 1;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_BO_MMAP_OFFSET, &m, -EINVAL);
	}
	/* mmap past the end of a BO, and of another file's BO through this file. */
	{
		struct drm_hmoe_bo_mmap_offset m = { .handle = host };
		uint32_t theirs;
		void *p;

		CHECK(!xioctl(fd, DRM_IOCTL_HMOE_BO_MMAP_OFFSET, &m), "mmap offset");
		p = mmap(NULL, 2 * 65536, PROT_READ, MAP_SHARED, fd, (off_t)m.offset);
		CHECK(p == MAP_FAILED, "mmap of twice the BO's size succeeded");
		CHECK(!bo_create(fd2, 65536, 0, &theirs), "bo_create fd2");
		m.handle = theirs;
		CHECK(!xioctl(fd2, DRM_IOCTL_HMOE_BO_MMAP_OFFSET, &m), "mmap offset fd2");
		p = mmap(NULL, 65536, PROT_READ, MAP_SHARED, fd, (off_t)m.offset);
		CHECK(p == MAP_FAILED && errno == EACCES,
		      "another file's BO mapped through this file (errno %d)", errno);
	}
	{
		struct drm_hmoe_bo_info b = { .handle = card2 };

		CHECK_ERR(fd, DRM_IOCTL_HMOE_BO_INFO, &b, -ENOENT);
		b.handle = host;
		b.reserved = 1;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_BO_INFO, &b, -EINVAL);
	}
	{
		struct drm_hmoe_bo_sync s = { .handle = host, .direction = 3, .size = 4096 };

		CHECK_ERR(fd, DRM_IOCTL_HMOE_BO_SYNC, &s, -EINVAL);
		s.direction = HMOE_SYNC_FROM_CARD;
		s.offset = 65536 - 100;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_BO_SYNC, &s, -EINVAL);
		s.offset = ~0ull - 10;
		s.size = 100;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_BO_SYNC, &s, -EINVAL);
		s.offset = 0;
		s.handle = card;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_BO_SYNC, &s, -EINVAL);
		s.handle = host;
		s.reserved = 1;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_BO_SYNC, &s, -EINVAL);
	}
	{
		struct drm_hmoe_queue_create c = { .direction = 0, .ring_size = 4 };

		CHECK_ERR(fd, DRM_IOCTL_HMOE_QUEUE_CREATE, &c, -EINVAL);
		c.direction = 4;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_QUEUE_CREATE, &c, -EINVAL);
		c.direction = HMOE_QUEUE_H2C;
		c.ring_size = 0;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_QUEUE_CREATE, &c, -EINVAL);
		c.ring_size = 3;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_QUEUE_CREATE, &c, -EINVAL);
		c.ring_size = 2048;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_QUEUE_CREATE, &c, -EINVAL);
		c.ring_size = 4;
		c.flags = 1;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_QUEUE_CREATE, &c, -EINVAL);
		c.flags = 0;
		c.reserved = 1;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_QUEUE_CREATE, &c, -EINVAL);
	}
	CHECK(!queue_create(fd, HMOE_QUEUE_H2C, 4, &h2c) && !queue_create(fd, HMOE_QUEUE_C2H, 4, &c2h) &&
	      !queue_create(fd, HMOE_QUEUE_COMPUTE, 4, &comp), "queue_create");
	CHECK(!queue_create(fd2, HMOE_QUEUE_H2C, 4, &q2), "queue_create fd2");
	/* The queue-count limit. */
	{
		uint32_t ids[HMOE_MAX_QUEUES_PER_FILE_TEST], n = 0, id;
		int ret;

		while (!(ret = queue_create(fd2, HMOE_QUEUE_C2H, 1, &id)) && n < HMOE_MAX_QUEUES_PER_FILE_TEST)
			ids[n++] = id;
		CHECK(ret == -EBUSY && n == HMOE_MAX_QUEUES_PER_FILE_TEST - 1,
		      "queue limit: %d after %u queues", ret, n);
		for (uint32_t i = 0; i < n; i++)
			CHECK(!queue_destroy(fd2, ids[i]), "destroy");
	}
	{
		struct drm_hmoe_queue_destroy d = { .queue_id = 77 };

		CHECK_ERR(fd, DRM_IOCTL_HMOE_QUEUE_DESTROY, &d, -ENOENT);
		d.queue_id = h2c;
		d.pad = 1;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_QUEUE_DESTROY, &d, -EINVAL);
	}

	/* submit: the request itself */
	j[0] = copy_job(host, 0, card, 0, 4096);
	{
		struct drm_hmoe_submit s = { .queue_id = h2c, .n_jobs = 1, .jobs = (uintptr_t)j,
					     .job_size = sizeof(j[0]) };

		s.n_jobs = 0;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_SUBMIT, &s, -EINVAL);
		s.n_jobs = 257;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_SUBMIT, &s, -EINVAL);
		s.n_jobs = 1;
		s.job_size = sizeof(j[0]) - 8;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_SUBMIT, &s, -EINVAL);
		s.job_size = sizeof(j[0]);
		s.flags = 1u << 7;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_SUBMIT, &s, -EINVAL);
		s.flags = 0;
		s.in_fence_fd = 1; /* without HMOE_SUBMIT_IN_FENCE */
		CHECK_ERR(fd, DRM_IOCTL_HMOE_SUBMIT, &s, -EINVAL);
		s.flags = HMOE_SUBMIT_IN_FENCE;
		s.in_fence_fd = -1;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_SUBMIT, &s, -EINVAL);
		s.in_fence_fd = fd; /* a DRM fd, not a sync_file */
		CHECK_ERR(fd, DRM_IOCTL_HMOE_SUBMIT, &s, -EINVAL);
		s.flags = 0;
		s.in_fence_fd = 0;
		s.reserved = 1;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_SUBMIT, &s, -EINVAL);
		s.reserved = 0;
		s.jobs = 16;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_SUBMIT, &s, -EFAULT);
		s.jobs = (uintptr_t)j;
		s.queue_id = 55;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_SUBMIT, &s, -ENOENT);
		/* Another file's queue: its id means nothing here (fd has queues 1..3). */
		s.queue_id = q2 + 3;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_SUBMIT, &s, -ENOENT);
	}
	/* submit: the jobs */
#define BAD_JOB(queue, job, want)                                                      \
	do {                                                                           \
		struct drm_hmoe_job bj_ = (job);                                       \
		struct drm_hmoe_submit s_ = { .queue_id = (queue), .n_jobs = 1,        \
					      .jobs = (uintptr_t)&bj_,                 \
					      .job_size = sizeof(bj_) };               \
		CHECK_ERR(fd, DRM_IOCTL_HMOE_SUBMIT, &s_, want);                       \
	} while (0)
	{
		struct drm_hmoe_job b;

		b = j[0];
		b.type = 9;
		BAD_JOB(h2c, b, -EINVAL);
		b = j[0];
		b.flags = 1;
		BAD_JOB(h2c, b, -EINVAL);
		b = j[0];
		b.copy.reserved[1] = 1;
		BAD_JOB(h2c, b, -EINVAL);
		b = j[0];
		b.copy.size = 0;
		BAD_JOB(h2c, b, -EINVAL);
		BAD_JOB(h2c, copy_job(1234, 0, card, 0, 4096), -ENOENT);
		BAD_JOB(h2c, copy_job(host, 0, card2, 0, 4096), -ENOENT);  /* foreign handle */
		BAD_JOB(h2c, copy_job(host, 65536 - 10, card, 0, 4096), -EINVAL); /* past src */
		BAD_JOB(h2c, copy_job(host, 0, card, 65000, 4096), -EINVAL);      /* past dst */
		BAD_JOB(h2c, copy_job(host, ~0ull - 100, card, 0, 4096), -EINVAL); /* overflow */
		BAD_JOB(h2c, copy_job(host, 0, card, 0, ~0ull), -EINVAL);         /* overflow */
		BAD_JOB(h2c, copy_job(card, 0, host, 0, 4096), -EINVAL); /* C2H job on H2C */
		BAD_JOB(c2h, copy_job(host, 0, card, 0, 4096), -EINVAL); /* H2C job on C2H */
		BAD_JOB(h2c, copy_job(host, 0, host, 0, 4096), -EINVAL); /* host to host */
		BAD_JOB(comp, j[0], -EINVAL);                           /* copy on compute */

		memset(&b, 0, sizeof(b));
		b.type = HMOE_JOB_FFN;
		b.ffn.weights_handle = card;
		b.ffn.x_handle = card;
		b.ffn.y_handle = card;
		/* b is a valid job (int4 weights: 48 KiB fit the 64 KiB BO) but for its queue;
		 * each case below breaks one more thing */
		b.ffn.format = HMOE_FORMAT_INT4;
		b.ffn.dim = 128;
		b.ffn.inter = 128;
		b.ffn.n_tokens = 1;
		b.ffn.y_offset = 64;
		BAD_JOB(h2c, b, -EINVAL); /* ffn on a DMA queue */
		{
			struct drm_hmoe_job c = b;

			c.ffn.n_tokens = 0;
			BAD_JOB(comp, c, -EINVAL);
			c.ffn.n_tokens = HMOE_FXP_TILE + 1;
			BAD_JOB(comp, c, -EINVAL);
			c = b;
			c.ffn.format = 3;
			BAD_JOB(comp, c, -EINVAL);
			/* modes: unknown flag bits, a bad format under a good flag */
			c.ffn.format = HMOE_FORMAT_INT4 | (1u << 9);
			BAD_JOB(comp, c, -EINVAL);
			c.ffn.format = HMOE_FORMAT_INT4 | HMOE_FORMAT_A16 | (1u << 31);
			BAD_JOB(comp, c, -EINVAL);
			c.ffn.format = HMOE_FORMAT_INT4 | 0x80;
			BAD_JOB(comp, c, -EINVAL);
			c.ffn.format = 3 | HMOE_FORMAT_A16;
			BAD_JOB(comp, c, -EINVAL);
			/* A16 needs two planes of x: a range that holds one (A8) is too short */
			CHECK(hmoe_fxp_expert_lines(HMOE_FXP_INT4, 128, 128) * HMOE_FXP_LINE_BYTES <=
				      65536 - 192, "the validate FFN job's weights do not fit");
			c = b;
			c.ffn.format = HMOE_FORMAT_INT4 | HMOE_FORMAT_A16;
			c.ffn.x_offset = 65536 - 192; /* 132 bytes of A8 fit, 260 of A16 do not */
			BAD_JOB(comp, c, -EINVAL);
			c = b;
			c.ffn.dim = 0;
			BAD_JOB(comp, c, -EINVAL);
			c = b;
			c.ffn.inter = HMOE_FXP_MAX_INTER + 1;
			BAD_JOB(comp, c, -EINVAL);
			c = b;
			c.ffn.x_offset = 3; /* not line-aligned */
			BAD_JOB(comp, c, -EINVAL);
			c = b;
			c.ffn.pad = 1;
			BAD_JOB(comp, c, -EINVAL);
			c = b;
			c.ffn.dim = HMOE_FXP_MAX_DIM; /* weights run past the 64 KiB BO */
			BAD_JOB(comp, c, -EINVAL);
			c = b;
			c.ffn.weights_handle = host; /* weights must be in card memory */
			BAD_JOB(comp, c, -EINVAL);
		}
	}
	/* All or nothing: a bad last job queues nothing. */
	j[1] = copy_job(host, 0, card, 0, 1u << 20);
	CHECK(submit(fd, h2c, j, 2, NULL) == -EINVAL, "batch with a bad job accepted");
	CHECK(job_status(fd, h2c, 1, &st) == -EINVAL, "a rejected batch left job 1 behind");
	/* Ring full: ring_size 4 takes 4 jobs in flight, not 5. */
	{
		struct drm_hmoe_job many[5];

		for (int i = 0; i < 5; i++)
			many[i] = j[0];
		CHECK(submit(fd, h2c, many, 5, NULL) == -EBUSY, "5 jobs on a ring of 4");
		CHECK(!submit(fd, h2c, many, 4, &seq) && seq == 4, "4 jobs on a ring of 4");
		CHECK(!wait_job(fd, h2c, 4, 5000, &st) && st == HMOE_JOB_OK, "ring jobs");
	}
	/* wait / job_status */
	{
		struct drm_hmoe_wait w = { .queue_id = h2c, .seqno = 0, .timeout_ns = now_ns() };

		CHECK_ERR(fd, DRM_IOCTL_HMOE_WAIT, &w, -EINVAL);
		w.seqno = 5;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_WAIT, &w, -EINVAL); /* not submitted yet */
		w.seqno = 1;
		w.flags = 1;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_WAIT, &w, -EINVAL);
		w.flags = 0;
		w.reserved = 1;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_WAIT, &w, -EINVAL);
		w.reserved = 0;
		w.queue_id = q2;
		w.queue_id = 60;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_WAIT, &w, -ENOENT);
	}
	{
		struct drm_hmoe_job_status s = { .queue_id = h2c, .seqno = 1, .pad2 = 1 };

		CHECK_ERR(fd, DRM_IOCTL_HMOE_JOB_STATUS, &s, -EINVAL);
		s.pad2 = 0;
		s.seqno = 99;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_JOB_STATUS, &s, -EINVAL);
		/* 4 more jobs push job 1 out of the 4-entry status ring. */
		CHECK(!submit(fd, h2c, (struct drm_hmoe_job[]){ j[0], j[0], j[0], j[0] }, 4, &seq) &&
		      !wait_job(fd, h2c, seq, 5000, &st), "refill");
		s.seqno = 1;
		CHECK_ERR(fd, DRM_IOCTL_HMOE_JOB_STATUS, &s, -ENOENT);
		s.seqno = seq;
		CHECK(!xioctl(fd, DRM_IOCTL_HMOE_JOB_STATUS, &s) && s.status == HMOE_JOB_OK, "status");
	}
	/* Double destroy; then the id is gone for every ioctl. */
	CHECK(!queue_destroy(fd, c2h), "destroy");
	CHECK(queue_destroy(fd, c2h) == -ENOENT, "double destroy");
	CHECK(submit(fd, c2h, j, 1, NULL) == -ENOENT, "submit to a destroyed queue");
	/* A BO closed while a job holds it: the job keeps it alive. */
	CHECK(!submit(fd, h2c, j, 1, &seq), "submit");
	CHECK(!bo_close(fd, host), "close");
	CHECK(bo_close(fd, host) == -EINVAL, "double gem close");
	CHECK(!wait_job(fd, h2c, seq, 5000, &st) && st == HMOE_JOB_OK, "job on a closed BO");
	close(fd2);
	close(fd);
	return 0;
}

/* Several processes, each with its own file, queues and data, submitting at once. */
static int child_traffic(int id)
{
	const size_t size = 256 << 10;
	uint32_t src, dst, card, h2c, c2h;
	uint8_t *ps, *pd;
	int fd = open_card(0);

	rng_state += (uint64_t)id * 0x1234567ull;
	if (fd < 0 || bo_create(fd, size, 0, &src) || bo_create(fd, size, 0, &dst) ||
	    bo_create(fd, size, HMOE_BO_CARD, &card) || queue_create(fd, HMOE_QUEUE_H2C, 16, &h2c) ||
	    queue_create(fd, HMOE_QUEUE_C2H, 16, &c2h))
		return 2;
	ps = bo_map(fd, src, size);
	pd = bo_map(fd, dst, size);
	if (!ps || !pd)
		return 3;
	for (int round = 0; round < 30; round++) {
		fill_random(ps, size);
		if (roundtrip(fd, h2c, c2h, src, card, dst, size))
			return 4;
		if (memcmp(ps, pd, size))
			return 5;
	}
	close(fd);
	return 0;
}

static int test_multiproc(void)
{
	const int n = 4;
	pid_t pids[4];
	int status;

	for (int i = 0; i < n; i++) {
		pids[i] = fork();
		CHECK(pids[i] >= 0, "fork");
		if (!pids[i])
			_exit(child_traffic(i + 1));
	}
	for (int i = 0; i < n; i++) {
		CHECK(waitpid(pids[i], &status, 0) == pids[i], "waitpid");
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "process %d failed with status %d", i, WEXITSTATUS(status));
	}
	return 0;
}

#define TIMEOUT_PARAM "/sys/module/hmoe/parameters/job_timeout_ms"

/* Fault injection: hang -> TIMEDOUT + CANCELLED + recovery; error and corrupt -> ERROR;
 * wait deadline -> ETIME; close and destroy with jobs pending. */
static int test_faults(void)
{
	uint32_t host, card, h2c, c2h, st, s2, s3;
	struct drm_hmoe_job j;
	uint64_t seq;
	int64_t t0;
	int fd = open_card(0);

	CHECK(fd >= 0, "open");
	CHECK(debugfs_dir(), "no /sys/kernel/debug/hmoe/<card>");
	CHECK(!write_file(TIMEOUT_PARAM, "300"), "cannot set %s", TIMEOUT_PARAM);
	CHECK(!bo_create(fd, 65536, 0, &host) && !bo_create(fd, 65536, HMOE_BO_CARD, &card) &&
	      !queue_create(fd, HMOE_QUEUE_H2C, 16, &h2c) &&
	      !queue_create(fd, HMOE_QUEUE_C2H, 16, &c2h), "setup");
	j = copy_job(host, 0, card, 0, 65536);

	/* A hang: job 1 times out (job_timeout_ms=300 here), 2 and 3 behind it are
	 * cancelled, and the queue runs job 4. */
	CHECK(!inject("hang", 1), "inject hang");
	CHECK(!submit(fd, h2c, (struct drm_hmoe_job[]){ j, j, j }, 3, &seq) && seq == 3, "submit");
	{
		struct drm_hmoe_wait w = { .queue_id = h2c, .seqno = 1, .timeout_ns = now_ns() + 50000000 };

		CHECK_ERR(fd, DRM_IOCTL_HMOE_WAIT, &w, -ETIME);
	}
	CHECK(!job_status(fd, h2c, 1, &st) && st == HMOE_JOB_RUNNING, "hung job status %u", st);
	t0 = now_ns();
	CHECK(!wait_job(fd, h2c, 1, 10000, &st) && st == HMOE_JOB_TIMEDOUT, "hung job: status %u", st);
	CHECK(now_ns() - t0 < 5000000000ll, "the watchdog took more than 5 s");
	CHECK(!wait_job(fd, h2c, 3, 5000, &st) && !job_status(fd, h2c, 2, &s2) &&
	      s2 == HMOE_JOB_CANCELLED && st == HMOE_JOB_CANCELLED,
	      "jobs behind the hang: %u %u", s2, st);
	CHECK(!submit(fd, h2c, &j, 1, &seq) && !wait_job(fd, h2c, seq, 5000, &st) &&
	      st == HMOE_JOB_OK, "queue did not recover after the reset: %u", st);
	/* A job chained (in-fence) to a hung job on another queue is cancelled. */
	{
		struct drm_hmoe_job down = copy_job(card, 0, host, 0, 4096);
		struct drm_hmoe_submit s1 = { .queue_id = h2c, .n_jobs = 1, .jobs = (uintptr_t)&j,
					      .job_size = sizeof(j), .flags = HMOE_SUBMIT_FENCE_FD };
		struct drm_hmoe_submit s2 = { .queue_id = c2h, .n_jobs = 1, .jobs = (uintptr_t)&down,
					      .job_size = sizeof(down), .flags = HMOE_SUBMIT_IN_FENCE };

		CHECK(!inject("hang", 1), "inject hang");
		CHECK(!xioctl(fd, DRM_IOCTL_HMOE_SUBMIT, &s1), "submit");
		s2.in_fence_fd = s1.fence_fd;
		CHECK(!xioctl(fd, DRM_IOCTL_HMOE_SUBMIT, &s2), "submit chained");
		close(s1.fence_fd);
		CHECK(!wait_job(fd, c2h, s2.seqno, 10000, &st) && st == HMOE_JOB_CANCELLED &&
		      !job_status(fd, h2c, s1.seqno, &s2.flags) && s2.flags == HMOE_JOB_TIMEDOUT,
		      "job chained to a hang: %u (want cancelled)", st);
	}

	/* An error status and a corrupted completion record. */
	CHECK(!inject("error", 1), "inject error");
	CHECK(!submit(fd, h2c, (struct drm_hmoe_job[]){ j, j }, 2, &seq), "submit");
	CHECK(!wait_job(fd, h2c, seq, 5000, &s3) && !job_status(fd, h2c, seq - 1, &st) &&
	      st == HMOE_JOB_ERROR && s3 == HMOE_JOB_OK, "error injection: %u then %u", st, s3);
	CHECK(!inject("corrupt", 1), "inject corrupt");
	CHECK(!submit(fd, h2c, &j, 1, &seq) && !wait_job(fd, h2c, seq, 5000, &st) &&
	      st == HMOE_JOB_ERROR, "corrupted completion accepted: %u", st);
	{
		char buf[4096], path[400];

		snprintf(path, sizeof(path), "%s/queues", debugfs_dir());
		CHECK(!read_file(path, buf, sizeof(buf)), "read debugfs queues");
		/* queue pid dir ring submitted retired ok errors bad timeouts cancelled ... */
		CHECK(strstr(buf, " h2c 16 8 8 2 2 1 2 2 "),
		      "debugfs counters do not match the jobs run:\n%s", buf);
	}

	/* Destroy with a hung job and jobs pending: returns after the timeout. */
	CHECK(!inject("hang", 1), "inject hang");
	CHECK(!submit(fd, h2c, (struct drm_hmoe_job[]){ j, j, j, j }, 4, NULL), "submit");
	CHECK(!queue_destroy(fd, h2c), "destroy with pending jobs");
	/* Close with jobs pending (not hung) and with a hang. */
	CHECK(!queue_create(fd, HMOE_QUEUE_H2C, 64, &h2c), "queue");
	for (int i = 0; i < 4; i++)
		CHECK(!submit(fd, h2c, (struct drm_hmoe_job[]){ j, j, j, j, j, j, j, j }, 8, NULL),
		      "submit");
	close(fd);
	fd = open_card(0);
	CHECK(fd >= 0 && !bo_create(fd, 65536, 0, &host) && !bo_create(fd, 65536, HMOE_BO_CARD, &card) &&
	      !queue_create(fd, HMOE_QUEUE_H2C, 16, &h2c), "setup 2");
	j = copy_job(host, 0, card, 0, 65536);
	CHECK(!inject("hang", 1), "inject hang");
	CHECK(!submit(fd, h2c, (struct drm_hmoe_job[]){ j, j }, 2, NULL), "submit");
	for (int i = 0; i < 1000 && !job_status(fd, h2c, 1, &st) && st != HMOE_JOB_RUNNING; i++)
		usleep(1000);
	CHECK(st == HMOE_JOB_RUNNING, "the hung job never started: %u", st);
	t0 = now_ns();
	close(fd);
	CHECK(now_ns() - t0 < 5000000000ll, "close with a hung job took more than 5 s");
	CHECK(!write_file(TIMEOUT_PARAM, "5000"), "cannot restore %s", TIMEOUT_PARAM);
	return 0;
}

/* Races: a process sharing the file submits and waits in a loop while another destroys
 * the queue under it; every call must end (ENOENT once the queue is gone, or a job
 * status), and the kernel must stay clean (the harness checks its log). */
static int test_race(void)
{
	for (int round = 0; round < 20; round++) {
		uint32_t host, card, q, st;
		struct drm_hmoe_job j;
		int fd = open_card(0), status;
		pid_t pid;

		CHECK(fd >= 0 && !bo_create(fd, 65536, 0, &host) &&
		      !bo_create(fd, 65536, HMOE_BO_CARD, &card) &&
		      !queue_create(fd, HMOE_QUEUE_H2C, 8, &q), "setup");
		j = copy_job(host, 0, card, 0, 65536);
		pid = fork();
		CHECK(pid >= 0, "fork");
		if (!pid) {
			/* Same open file: the queue id is valid here until destroyed. */
			for (;;) {
				uint64_t seq;
				int ret = submit(fd, q, (struct drm_hmoe_job[]){ j, j }, 2, &seq);

				if (ret == -ENOENT)
					_exit(0);
				if (ret == -EBUSY)
					continue;
				if (ret)
					_exit(10);
				ret = wait_job(fd, q, seq, 5000, &st);
				if (ret == -ENOENT)
					_exit(0);
				if (ret || (st != HMOE_JOB_OK && st != HMOE_JOB_CANCELLED))
					_exit(11);
			}
		}
		usleep(1000 * (round % 5));
		CHECK(!queue_destroy(fd, q), "destroy while another process submits");
		CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
		      WEXITSTATUS(status) == 0, "round %d: submitter exited %d", round,
		      WEXITSTATUS(status));
		close(fd);
	}
	return 0;
}

/* PRIME: export a host BO and import it in another file; import vgem's dma-buf. */
static int test_prime(void)
{
	int fd = open_card(0), fd2 = open_card(0), vg = -1;
	const size_t size = 1 << 16;
	uint32_t host, card, h2, h2c, c2h, out;
	struct drm_prime_handle ph = { 0 };
	struct drm_hmoe_bo_info bi = { 0 };
	uint8_t *p, *po;

	CHECK(fd >= 0 && fd2 >= 0, "open");
	CHECK(!bo_create(fd, size, 0, &host) && !bo_create(fd, size, HMOE_BO_CARD, &card), "bo");
	ph.handle = card;
	ph.flags = DRM_CLOEXEC;
	CHECK_ERR(fd, DRM_IOCTL_PRIME_HANDLE_TO_FD, &ph, -EPERM); /* card memory is not shared */
	ph.handle = host;
	CHECK(!xioctl(fd, DRM_IOCTL_PRIME_HANDLE_TO_FD, &ph) && ph.fd >= 0, "export");
	p = bo_map(fd, host, size);
	CHECK(p, "map");
	fill_random(p, size);
	{
		struct drm_prime_handle imp = { .fd = ph.fd };

		CHECK(!xioctl(fd2, DRM_IOCTL_PRIME_FD_TO_HANDLE, &imp), "import in another file");
		h2 = imp.handle;
	}
	close(ph.fd);
	po = bo_map(fd2, h2, size);
	CHECK(po && !memcmp(p, po, size), "the imported BO does not show the exporter's data");
	munmap(po, size);

	/* A foreign exporter: vgem (a "GPU" buffer). */
	for (int i = 0; i < 8 && vg < 0; i++) {
		char path[32];
		struct drm_version v = { 0 };
		char name[16] = { 0 };

		snprintf(path, sizeof(path), "/dev/dri/card%d", i);
		vg = open(path, O_RDWR);
		if (vg < 0)
			continue;
		v.name = name;
		v.name_len = sizeof(name) - 1;
		if (xioctl(vg, DRM_IOCTL_VERSION, &v) || strcmp(name, "vgem")) {
			close(vg);
			vg = -1;
		}
	}
	if (vg >= 0) {
		struct drm_mode_create_dumb d = { .width = size / 4, .height = 1, .bpp = 32 };
		struct drm_mode_map_dumb md = { 0 };
		struct drm_prime_handle e = { .flags = DRM_CLOEXEC | DRM_RDWR }, imp = { 0 };
		uint8_t *vp;
		uint32_t vh;

		CHECK(!xioctl(vg, DRM_IOCTL_MODE_CREATE_DUMB, &d), "vgem dumb");
		md.handle = d.handle;
		CHECK(!xioctl(vg, DRM_IOCTL_MODE_MAP_DUMB, &md), "vgem map");
		vp = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, vg, (off_t)md.offset);
		CHECK(vp != MAP_FAILED, "vgem mmap");
		fill_random(vp, size);
		e.handle = d.handle;
		CHECK(!xioctl(vg, DRM_IOCTL_PRIME_HANDLE_TO_FD, &e), "vgem export");
		imp.fd = e.fd;
		CHECK(!xioctl(fd, DRM_IOCTL_PRIME_FD_TO_HANDLE, &imp), "import vgem buffer");
		close(e.fd);
		vh = imp.handle;
		bi.handle = vh;
		CHECK(!xioctl(fd, DRM_IOCTL_HMOE_BO_INFO, &bi) && (bi.flags & HMOE_BO_INFO_IMPORTED),
		      "imported flag");
		{
			struct drm_hmoe_bo_sync s = { .handle = vh, .direction = HMOE_SYNC_TO_CARD, .size = size };

			CHECK(!xioctl(fd, DRM_IOCTL_HMOE_BO_SYNC, &s), "sync of an imported BO");
		}
		CHECK(!bo_create(fd, size, 0, &out) && !queue_create(fd, HMOE_QUEUE_H2C, 4, &h2c) &&
		      !queue_create(fd, HMOE_QUEUE_C2H, 4, &c2h), "setup");
		CHECK(!roundtrip(fd, h2c, c2h, vh, card, out, size), "vgem -> card -> host");
		po = bo_map(fd, out, size);
		CHECK(po && !memcmp(po, vp, size), "data from the vgem buffer differs");
		/* ...and the other way: card -> the vgem buffer. */
		memset(p, 0x5a, size);
		CHECK(!roundtrip(fd, h2c, c2h, host, card, vh, size), "host -> card -> vgem");
		CHECK(vp[0] == 0x5a && vp[size - 1] == 0x5a, "the card's write did not reach vgem");
		munmap(vp, size);
		close(vg);
	} else {
		printf("prime: vgem not loaded, foreign import not tested\n");
	}
	close(fd2);
	close(fd);
	return 0;
}

/* Builds a random but well-formed expert pack and quantised activations for a kernel
 * mode: xq (n_tokens, planes, groups * 128), xs (n_tokens, groups). */
static void make_ffn_inputs(int mode, int dim, int inter, int n_tokens, uint8_t *pack,
			    int8_t *xq, int32_t *xs)
{
	int format = hmoe_fxp_mode_format(mode), planes = hmoe_fxp_mode_planes(mode);
	int64_t lines = hmoe_fxp_expert_lines(format, dim, inter);
	int groups = hmoe_fxp_groups(dim);
	int e_base = format == HMOE_FXP_FP8 ? 36 : format == HMOE_FXP_INT8 ? 28 : 24;
	uint8_t *p = pack;

	fill_random(pack, (size_t)lines * HMOE_FXP_LINE_BYTES);
	for (int l = 0; l < 3; l++) {
		int out = l < 2 ? inter : dim, in = l < 2 ? dim : inter;
		int row_bytes = hmoe_fxp_row_lines(format, in) * HMOE_FXP_LINE_BYTES;
		int g_in = hmoe_fxp_groups(in);

		for (int r = 0; r < out; r++, p += row_bytes) {
			memset(p, 0, hmoe_fxp_scale_lines(in) * HMOE_FXP_LINE_BYTES);
			for (int g = 0; g < g_in; g++) {
				int32_t w = hmoe_fxp_scale_word(32768 + rng() % 32768,
								e_base + (int)(rng() % 4));

				memcpy(p + 4 * g, &w, 4);
			}
		}
	}
	for (int t = 0; t < n_tokens; t++) {
		for (int g = 0; g < groups; g++) {
			int64_t v[HMOE_FXP_GROUP];
			int n = dim - g * HMOE_FXP_GROUP < HMOE_FXP_GROUP ? dim - g * HMOE_FXP_GROUP
									  : HMOE_FXP_GROUP;
			size_t plane = (size_t)groups * HMOE_FXP_GROUP;
			int8_t *hi = xq + (size_t)t * planes * plane + (size_t)g * HMOE_FXP_GROUP;
			int8_t *lo = planes == 2 ? hi + plane : NULL;

			for (int i = 0; i < n; i++)
				v[i] = (int64_t)(rng() % (1ull << 34)) - (1ll << 33);
			if (t == 1 && g == 0)
				v[0] = 1ll << 40; /* one huge activation among small ones */
			memset(hi, 0, HMOE_FXP_GROUP);
			if (lo)
				memset(lo, 0, HMOE_FXP_GROUP);
			xs[t * groups + g] = hmoe_fxp_quant_group(v, n, planes, hi, lo);
		}
	}
}

/* Expert FFN jobs on the card vs the same hls/ kernel in this program, bit for bit, in
 * both activation modes (A16: two planes, A8: one) of every weight format. */
static int test_ffn(void)
{
	static const struct { int format, dim, inter, n_tokens; } cases[] = {
		{ HMOE_FXP_FP8, 256, 128, 1 },  { HMOE_FXP_INT8, 200, 100, 5 },
		{ HMOE_FXP_INT4, 384, 256, 32 }, { HMOE_FXP_FP8, 129, 257, 7 },
		{ HMOE_FXP_INT8, 512, 384, 32 }, { HMOE_FXP_INT4, 130, 60, 3 },
	};
	struct hmoe_ffn_scratch *scratch = malloc(sizeof(*scratch));
	int fd = open_card(0);
	uint32_t h2c, c2h, comp, st;

	CHECK(fd >= 0 && scratch, "open");
	CHECK(!queue_create(fd, HMOE_QUEUE_H2C, 8, &h2c) && !queue_create(fd, HMOE_QUEUE_C2H, 8, &c2h) &&
	      !queue_create(fd, HMOE_QUEUE_COMPUTE, 8, &comp), "queues");
	for (size_t cm = 0; cm < 2 * sizeof(cases) / sizeof(cases[0]); cm++) {
		size_t c = cm / 2;
		int f = cases[c].format | (cm % 2 ? 0 : HMOE_FXP_A16);
		int dim = cases[c].dim, inter = cases[c].inter;
		int nt = cases[c].n_tokens, groups = hmoe_fxp_groups(dim);
		size_t wbytes = (size_t)hmoe_fxp_expert_lines(hmoe_fxp_mode_format(f), dim, inter) *
				HMOE_FXP_LINE_BYTES;
		size_t xq_bytes = (size_t)nt * hmoe_fxp_mode_planes(f) * groups * HMOE_FXP_GROUP;
		size_t xbytes = xq_bytes + (size_t)nt * groups * 4, ybytes = (size_t)nt * dim * 4;
		uint32_t hw, hx, hy, cw, cx, cy;
		uint8_t *pw, *px, *py;
		int32_t *yref = malloc(ybytes);
		struct drm_hmoe_job j;
		uint64_t seq;
		int nonzero = 0;

		CHECK(yref, "malloc");
		CHECK(!bo_create(fd, wbytes, 0, &hw) && !bo_create(fd, xbytes, 0, &hx) &&
		      !bo_create(fd, ybytes, 0, &hy) && !bo_create(fd, wbytes, HMOE_BO_CARD, &cw) &&
		      !bo_create(fd, xbytes + 64, HMOE_BO_CARD, &cx) &&
		      !bo_create(fd, ybytes + 128, HMOE_BO_CARD, &cy), "BOs");
		pw = bo_map(fd, hw, wbytes);
		px = bo_map(fd, hx, xbytes);
		py = bo_map(fd, hy, ybytes);
		CHECK(pw && px && py, "map");
		make_ffn_inputs(f, dim, inter, nt, pw, (int8_t *)px, (int32_t *)(px + xq_bytes));
		CHECK(hmoe_ffn((const struct hmoe_fxp_line *)pw, (const int8_t *)px,
			       (const int32_t *)(px + xq_bytes), yref, scratch, f, nt, dim, inter) == 0,
		      "user-space kernel refused case %zu", c);
		for (size_t i = 0; i < ybytes / 4; i++)
			nonzero += yref[i] != 0;
		CHECK(nonzero > (int)(ybytes / 8), "case %zu: reference output mostly zero", c);

		/* x at offset 64 and y at offset 128 of their card BOs: offsets are honoured. */
		j = copy_job(hw, 0, cw, 0, wbytes);
		CHECK(!submit(fd, h2c, &j, 1, NULL), "upload weights");
		j = copy_job(hx, 0, cx, 64, xbytes);
		CHECK(!submit(fd, h2c, &j, 1, &seq) && !wait_job(fd, h2c, seq, 10000, &st) &&
		      st == HMOE_JOB_OK, "upload");
		memset(&j, 0, sizeof(j));
		j.type = HMOE_JOB_FFN;
		j.ffn.weights_handle = cw;
		j.ffn.x_handle = cx;
		j.ffn.x_offset = 64;
		j.ffn.y_handle = cy;
		j.ffn.y_offset = 128;
		j.ffn.format = f;
		j.ffn.dim = dim;
		j.ffn.inter = inter;
		j.ffn.n_tokens = nt;
		CHECK(!submit(fd, comp, &j, 1, &seq) && !wait_job(fd, comp, seq, 60000, &st) &&
		      st == HMOE_JOB_OK, "ffn job: status %u", st);
		memset(py, 0xee, ybytes);
		j = copy_job(cy, 128, hy, 0, ybytes);
		CHECK(!submit(fd, c2h, &j, 1, &seq) && !wait_job(fd, c2h, seq, 10000, &st) &&
		      st == HMOE_JOB_OK, "download");
		CHECK(!memcmp(py, yref, ybytes),
		      "case %zu (mode %#x, %dx%d, %d tokens): card output differs from user space",
		      c, f, dim, inter, nt);
		printf("ffn: mode %#x (%d planes) dim %d inter %d tokens %d: %zu output bytes "
		       "identical\n", f, hmoe_fxp_mode_planes(f), dim, inter, nt, ybytes);
		munmap(pw, wbytes);
		munmap(px, xbytes);
		munmap(py, ybytes);
		free(yref);
		bo_close(fd, hw), bo_close(fd, hx), bo_close(fd, hy);
		bo_close(fd, cw), bo_close(fd, cx), bo_close(fd, cy);
	}
	free(scratch);
	close(fd);
	return 0;
}

/* hwmon: power and energy readable, energy grows, the source says "modeled". */
static int test_hwmon(void)
{
	char path[600], buf[64], dir[300] = "";
	long long e0, e1, p;
	DIR *d = opendir("/sys/class/hwmon");
	struct dirent *e;

	CHECK(d, "no /sys/class/hwmon");
	while ((e = readdir(d))) {
		snprintf(path, sizeof(path), "/sys/class/hwmon/%s/name", e->d_name);
		if (!read_file(path, buf, sizeof(buf)) && !strcmp(buf, "hmoe\n")) {
			snprintf(dir, sizeof(dir), "/sys/class/hwmon/%s", e->d_name);
			break;
		}
	}
	closedir(d);
	CHECK(dir[0], "no hwmon device named hmoe");
	snprintf(path, sizeof(path), "%s/energy_source", dir);
	CHECK(!read_file(path, buf, sizeof(buf)) && !strcmp(buf, "modeled\n"), "energy_source: %s", buf);
	snprintf(path, sizeof(path), "%s/energy1_input", dir);
	CHECK(!read_file(path, buf, sizeof(buf)), "read energy1_input");
	e0 = atoll(buf);
	usleep(200000);
	CHECK(!read_file(path, buf, sizeof(buf)), "read energy1_input");
	e1 = atoll(buf);
	CHECK(e1 > e0, "energy did not grow: %lld -> %lld", e0, e1);
	snprintf(path, sizeof(path), "%s/power1_input", dir);
	CHECK(!read_file(path, buf, sizeof(buf)), "read power1_input");
	p = atoll(buf);
	/* Idle power of the model is 20 W: the average must be at least that. */
	CHECK(p >= 19000000 && p < 1000000000, "power1_input %lld uW", p);
	return 0;
}

/* The smallest use of a card, for the load/unload cycles. */
static int test_smoke(void)
{
	uint32_t a, b, c, h2c, c2h;
	int fd = open_card(0);

	CHECK(fd >= 0, "open");
	CHECK(!bo_create(fd, 65536, 0, &a) && !bo_create(fd, 65536, 0, &b) &&
	      !bo_create(fd, 65536, HMOE_BO_CARD, &c) && !queue_create(fd, HMOE_QUEUE_H2C, 4, &h2c) &&
	      !queue_create(fd, HMOE_QUEUE_C2H, 4, &c2h), "setup");
	CHECK(!roundtrip(fd, h2c, c2h, a, c, b, 65536), "round trip");
	close(fd);
	return 0;
}

static const struct {
	const char *name;
	int (*run)(void);
} tests[] = {
	{ "basic", test_basic },     { "validate", test_validate }, { "multiproc", test_multiproc },
	{ "faults", test_faults },   { "race", test_race },         { "prime", test_prime },
	{ "ffn", test_ffn },
	{ "hwmon", test_hwmon },     { "smoke", test_smoke },
};

int main(int argc, char **argv)
{
	int failed = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: hmoe_ktest all|TEST...\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		int want = 0;

		for (int a = 1; a < argc; a++)
			want |= !strcmp(argv[a], tests[i].name) ||
				(!strcmp(argv[a], "all") && strcmp(tests[i].name, "smoke"));
		if (!want)
			continue;
		fail_msg[0] = 0;
		if (tests[i].run()) {
			printf("KTEST %s FAIL %s\n", tests[i].name, fail_msg);
			failed++;
		} else {
			printf("KTEST %s PASS\n", tests[i].name);
		}
	}
	return failed ? 1 : 0;
}
