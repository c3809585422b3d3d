// SPDX-License-Identifier: GPL-2.0
/*
 * hmoe_job.c: queues, job submission, fences, wait and status, hang handling.
 *
 * A queue runs its jobs in submission order, one at a time, in a work item on the
 * driver's unbound workqueue; the backend's run() executes a job and returns when the
 * card completed it. While a job is in the backend a watchdog (timeout_work) is armed:
 * if it fires, the backend aborts the job (-ETIMEDOUT), the job ends TIMEDOUT, every job
 * queued behind it ends CANCELLED, and the queue accepts new work again. No job is
 * ever dropped without a status and a signalled fence.
 *
 * Sequence numbers are per queue, start at 1 and retire in order, so "job n has ended"
 * is retired_seqno >= n. The statuses of the last ring_size jobs are kept in a ring.
 */
#include <linux/file.h>
#include <linux/ktime.h>
#include <linux/log2.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/sync_file.h>
#include <linux/uaccess.h>

#include <drm/drm_print.h>

#include "hmoe_drv.h"
#include "hmoe_fxp_glue.h"

/* The uapi's layout: 64-bit aligned, no implicit padding, a job is one 64-byte line. */
static_assert(sizeof(struct drm_hmoe_job) == 64);
static_assert(sizeof(struct drm_hmoe_submit) == 48);
static_assert(sizeof(struct drm_hmoe_wait) == 40);
static_assert(sizeof(struct drm_hmoe_job_status) == 32);
static_assert(sizeof(struct drm_hmoe_get_info) == 96);

static struct workqueue_struct *hmoe_wq;

int hmoe_job_init(void)
{
	hmoe_wq = alloc_workqueue("hmoe", WQ_UNBOUND, 0);
	return hmoe_wq ? 0 : -ENOMEM;
}

void hmoe_job_fini(void)
{
	destroy_workqueue(hmoe_wq);
}

/* ---------------------------------------------------------------- fences */

static const char *hmoe_fence_driver_name(struct dma_fence *f)
{
	return HMOE_DRIVER_NAME;
}

/* A static name: the fence can outlive its queue. */
static const char *hmoe_fence_timeline_name(struct dma_fence *f)
{
	return "hmoe-queue";
}

static const struct dma_fence_ops hmoe_fence_ops = {
	.get_driver_name = hmoe_fence_driver_name,
	.get_timeline_name = hmoe_fence_timeline_name,
};

/* ---------------------------------------------------------------- jobs */

static void hmoe_job_put_bos(struct hmoe_job *job)
{
	u32 i;

	for (i = 0; i < job->n_bos; i++)
		drm_gem_object_put(job->bo[i]);
	job->n_bos = 0;
	dma_fence_put(job->in_fence);
	job->in_fence = NULL;
}

/* A job that never got a sequence number: its fence was never initialised. */
static void hmoe_job_free_unsubmitted(struct hmoe_job *job)
{
	hmoe_job_put_bos(job);
	kfree(job->fence);
	kfree(job);
}

static int hmoe_job_prepare_copy(struct hmoe_queue *q, struct drm_file *file,
				 const struct drm_hmoe_job_copy *c, struct hmoe_job *job)
{
	bool src_card = q->direction == HMOE_QUEUE_C2H;
	int ret;

	if (q->direction != HMOE_QUEUE_H2C && q->direction != HMOE_QUEUE_C2H)
		return -EINVAL;
	if (c->reserved[0] || c->reserved[1] || c->reserved[2] || !c->size)
		return -EINVAL;
	ret = hmoe_bo_lookup_range(file, c->src_handle, c->src_offset, c->size, src_card,
				   "copy source", &job->bo[0]);
	if (ret)
		return ret;
	job->n_bos = 1;
	ret = hmoe_bo_lookup_range(file, c->dst_handle, c->dst_offset, c->size, !src_card,
				   "copy destination", &job->bo[1]);
	if (ret)
		return ret;
	job->n_bos = 2;
	job->offset[0] = c->src_offset;
	job->offset[1] = c->dst_offset;
	job->size = c->size;
	return 0;
}

static int hmoe_job_prepare_ffn(struct hmoe_queue *q, struct drm_file *file,
				const struct drm_hmoe_job_ffn *f, struct hmoe_job *job)
{
	struct hmoe_device *hdev = q->hdev;
	u64 bytes[HMOE_MAX_BOS_PER_JOB];
	u32 handles[HMOE_MAX_BOS_PER_JOB] = { f->weights_handle, f->x_handle, f->y_handle };
	u64 offsets[HMOE_MAX_BOS_PER_JOB] = { f->weights_offset, f->x_offset, f->y_offset };
	static const char *const what[HMOE_MAX_BOS_PER_JOB] = { "ffn weights", "ffn x", "ffn y" };
	int ret, i;

	if (q->direction != HMOE_QUEUE_COMPUTE || f->pad)
		return -EINVAL;
	ret = hmoe_glue_ffn_sizes(f, &bytes[0], &bytes[1], &bytes[2]);
	if (ret)
		return ret;
	/* a well-formed mode; this card must run its weight format and every flag */
	if (!(hdev->weight_formats & BIT(f->format & HMOE_FORMAT_MASK)) ||
	    (f->format & ~HMOE_FORMAT_MASK & ~hdev->format_flags))
		return -EINVAL;
	for (i = 0; i < HMOE_MAX_BOS_PER_JOB; i++) {
		ret = hmoe_bo_lookup_range(file, handles[i], offsets[i], bytes[i], true, what[i],
					   &job->bo[i]);
		if (ret)
			return ret;
		job->n_bos = i + 1;
		job->offset[i] = offsets[i];
	}
	job->ffn = *f;
	return 0;
}

static int hmoe_job_prepare(struct hmoe_queue *q, struct drm_file *file,
			    const struct drm_hmoe_job *uj, struct hmoe_job **out)
{
	struct hmoe_job *job;
	int ret;

	if (uj->flags)
		return -EINVAL;
	job = kzalloc(sizeof(*job), GFP_KERNEL);
	if (!job)
		return -ENOMEM;
	job->fence = kzalloc(sizeof(*job->fence), GFP_KERNEL);
	if (!job->fence) {
		ret = -ENOMEM;
		goto err_free;
	}
	spin_lock_init(&job->fence->lock);
	job->type = uj->type;
	switch (uj->type) {
	case HMOE_JOB_COPY:
		ret = hmoe_job_prepare_copy(q, file, &uj->copy, job);
		break;
	case HMOE_JOB_FFN:
		ret = hmoe_job_prepare_ffn(q, file, &uj->ffn, job);
		break;
	default:
		ret = -EINVAL;
	}
	if (ret)
		goto err_free;
	*out = job;
	return 0;

err_free:
	hmoe_job_free_unsubmitted(job);
	return ret;
}

static const int hmoe_status_errno[] = {
	[HMOE_JOB_ERROR] = -EIO,
	[HMOE_JOB_TIMEDOUT] = -ETIMEDOUT,
	[HMOE_JOB_CANCELLED] = -ECANCELED,
};

/* Ends a job: records its status, signals its fence, wakes waiters, frees it. Jobs of a
 * queue are retired in seqno order. */
static void hmoe_job_retire(struct hmoe_queue *q, struct hmoe_job *job, u32 status,
			    u64 busy_ns)
{
	struct dma_fence *fence = &job->fence->base;

	spin_lock(&q->lock);
	q->status[job->seqno & (q->ring_size - 1)].status = status;
	q->retired_seqno = job->seqno;
	if (q->running == job)
		q->running = NULL;
	q->stats.modeled_ns += busy_ns;
	switch (status) {
	case HMOE_JOB_OK:
		q->stats.ok++;
		if (job->type == HMOE_JOB_COPY)
			q->stats.bytes += job->size;
		else
			q->stats.tokens += job->ffn.n_tokens;
		break;
	case HMOE_JOB_TIMEDOUT:
		q->stats.timeouts++;
		break;
	case HMOE_JOB_CANCELLED:
		q->stats.cancelled++;
		break;
	default:
		q->stats.errors++;
	}
	spin_unlock(&q->lock);

	if (status != HMOE_JOB_OK)
		dma_fence_set_error(fence, hmoe_status_errno[status]);
	dma_fence_signal(fence);
	dma_fence_put(fence);
	wake_up_all(&q->done_wq);
	hmoe_job_put_bos(job);
	kfree(job);
}

/* Takes every job not yet started off the queue into `out` (to be cancelled). */
static void hmoe_queue_take_pending(struct hmoe_queue *q, struct list_head *out)
{
	spin_lock(&q->lock);
	list_splice_init(&q->pending, out);
	spin_unlock(&q->lock);
}

/* Ends every job of `jobs` CANCELLED, in list (= seqno) order. */
static void hmoe_job_cancel_list(struct hmoe_queue *q, struct list_head *jobs)
{
	struct hmoe_job *job, *tmp;

	list_for_each_entry_safe(job, tmp, jobs, link) {
		list_del(&job->link);
		hmoe_job_retire(q, job, HMOE_JOB_CANCELLED, 0);
	}
}

/* What the card's completion record says, checked against the job it claims to end. */
static u32 hmoe_job_check_cmpl(struct hmoe_queue *q, struct hmoe_job *job, int ret,
			       const struct hmoe_cmpl *cmpl)
{
	if (ret == -ETIMEDOUT)
		return HMOE_JOB_TIMEDOUT;
	if (ret)
		return HMOE_JOB_ERROR;
	if (cmpl->magic != HMOE_CMPL_MAGIC || cmpl->seqno != job->seqno ||
	    (cmpl->status != HMOE_JOB_OK && cmpl->status != HMOE_JOB_ERROR)) {
		drm_err(&q->hdev->drm, "queue %u job %llu: bad completion record (magic %#x, seqno %llu, status %u)\n",
			q->id, job->seqno, cmpl->magic, cmpl->seqno, cmpl->status);
		spin_lock(&q->lock);
		q->stats.bad_completions++;
		spin_unlock(&q->lock);
		return HMOE_JOB_ERROR;
	}
	return cmpl->status;
}

static bool hmoe_queue_dead(struct hmoe_queue *q)
{
	bool dead;

	spin_lock(&q->lock);
	dead = q->dead;
	spin_unlock(&q->lock);
	return dead;
}

/* Waits for a job's in-fence: 0 when it signalled without error, else the job must be
 * cancelled (the dependency failed, or the queue is being destroyed: the wait is done
 * in 50 ms slices so a fence that never signals cannot block a destroy). Waiting for a
 * dependency is not a hang: the watchdog is not armed yet. */
static int hmoe_job_wait_in_fence(struct hmoe_queue *q, struct hmoe_job *job)
{
	long left;

	if (!job->in_fence)
		return 0;
	for (;;) {
		left = dma_fence_wait_timeout(job->in_fence, false, msecs_to_jiffies(50));
		if (left < 0)
			return left;
		if (left > 0)
			break;
		if (hmoe_queue_dead(q))
			return -ECANCELED;
	}
	return dma_fence_get_status(job->in_fence) < 0 ? -ECANCELED : 0;
}

/* job_timeout_ms is writable at run time; below 10 ms every job would be a hang. */
static unsigned long hmoe_job_timeout_jiffies(void)
{
	return msecs_to_jiffies(max(READ_ONCE(hmoe_job_timeout_ms), 10u));
}

static void hmoe_queue_run_work(struct work_struct *work)
{
	struct hmoe_queue *q = container_of(work, struct hmoe_queue, run_work);
	struct hmoe_device *hdev = q->hdev;
	struct hmoe_cmpl cmpl;
	struct hmoe_job *job;
	u32 status;
	int ret;

	for (;;) {
		spin_lock(&q->lock);
		job = list_first_entry_or_null(&q->pending, struct hmoe_job, link);
		if (!job) {
			spin_unlock(&q->lock);
			return;
		}
		list_del(&job->link);
		q->running = job;
		q->aborted = false;
		spin_unlock(&q->lock);

		if (hmoe_job_wait_in_fence(q, job)) {
			hmoe_job_retire(q, job, HMOE_JOB_CANCELLED, 0);
			continue;
		}
		spin_lock(&q->lock);
		q->status[job->seqno & (q->ring_size - 1)].status = HMOE_JOB_RUNNING;
		spin_unlock(&q->lock);

		queue_delayed_work(hmoe_wq, &q->timeout_work, hmoe_job_timeout_jiffies());
		memset(&cmpl, 0, sizeof(cmpl));
		ret = hdev->ops->run(hdev, q, job, &cmpl);
		cancel_delayed_work_sync(&q->timeout_work);
		/* Past the deadline is a hang even if the engine finished in the end: the
		 * engine was reset and its result is not trusted. */
		if (hmoe_queue_aborted(q))
			ret = -ETIMEDOUT;

		status = hmoe_job_check_cmpl(q, job, ret, &cmpl);
		if (status == HMOE_JOB_TIMEDOUT) {
			LIST_HEAD(behind);

			/* The jobs queued behind the hang are taken before its fence signals:
			 * a job submitted by someone who saw that fence must run, not be
			 * cancelled with them. Retiring keeps seqno order. */
			hmoe_queue_take_pending(q, &behind);
			hmoe_job_retire(q, job, status, cmpl.busy_ns);
			atomic64_inc(&hdev->resets);
			hmoe_job_cancel_list(q, &behind);
		} else {
			hmoe_job_retire(q, job, status, cmpl.busy_ns);
		}
	}
}

static void hmoe_queue_timeout_work(struct work_struct *work)
{
	struct hmoe_queue *q = container_of(to_delayed_work(work), struct hmoe_queue,
					    timeout_work);
	u64 seqno = 0;

	spin_lock(&q->lock);
	if (q->running)
		seqno = q->running->seqno;
	q->aborted = true;
	spin_unlock(&q->lock);
	drm_err(&q->hdev->drm, "queue %u job %llu: no completion after %u ms, resetting the queue\n",
		q->id, seqno, jiffies_to_msecs(hmoe_job_timeout_jiffies()));
	q->hdev->ops->abort(q->hdev, q);
}

bool hmoe_queue_aborted(struct hmoe_queue *q)
{
	bool aborted;

	spin_lock(&q->lock);
	aborted = q->aborted;
	spin_unlock(&q->lock);
	return aborted;
}

/* ---------------------------------------------------------------- queue lifetime */

static void hmoe_queue_release(struct kref *ref)
{
	struct hmoe_queue *q = container_of(ref, struct hmoe_queue, ref);
	struct hmoe_device *hdev = q->hdev;

	/* A submit racing with destroy may have queued run_work after the shutdown's
	 * flush; it finds no jobs, but must not run on freed memory. */
	cancel_work_sync(&q->run_work);
	cancel_delayed_work_sync(&q->timeout_work);
	mutex_lock(&hdev->queues_lock);
	list_del(&q->dev_link);
	mutex_unlock(&hdev->queues_lock);
	kvfree(q->status);
	kfree(q);
}

void hmoe_queue_put(struct hmoe_queue *q)
{
	kref_put(&q->ref, hmoe_queue_release);
}

static struct hmoe_queue *hmoe_queue_get(struct drm_file *file, u32 id)
{
	struct hmoe_file *hf = file->driver_priv;
	struct hmoe_queue *q;

	xa_lock(&hf->queues);
	q = xa_load(&hf->queues, id);
	if (q)
		kref_get(&q->ref);
	xa_unlock(&hf->queues);
	return q;
}

/* Stops a queue removed from its file: no more submits, pending jobs CANCELLED, the
 * running one finished (or timed out). Waiters all wake. */
static void hmoe_queue_shutdown(struct hmoe_queue *q)
{
	struct hmoe_job *job, *tmp;
	LIST_HEAD(cancelled);

	spin_lock(&q->lock);
	q->dead = true;
	list_splice_init(&q->pending, &cancelled);
	spin_unlock(&q->lock);
	flush_work(&q->run_work);
	cancel_delayed_work_sync(&q->timeout_work);
	list_for_each_entry_safe(job, tmp, &cancelled, link) {
		list_del(&job->link);
		hmoe_job_retire(q, job, HMOE_JOB_CANCELLED, 0);
	}
}

void hmoe_file_queues_fini(struct hmoe_file *hf)
{
	struct hmoe_queue *q;
	unsigned long id;

	xa_for_each(&hf->queues, id, q) {
		xa_erase(&hf->queues, id);
		hmoe_queue_shutdown(q);
		hmoe_queue_put(q);
	}
}

int hmoe_ioctl_queue_create(struct drm_device *drm, void *data, struct drm_file *file)
{
	struct hmoe_device *hdev = to_hmoe(drm);
	struct hmoe_file *hf = file->driver_priv;
	struct drm_hmoe_queue_create *args = data;
	struct hmoe_queue *q;
	u32 id;
	int ret;

	if (args->flags || args->reserved)
		return -EINVAL;
	if (args->direction < HMOE_QUEUE_H2C || args->direction > HMOE_QUEUE_COMPUTE)
		return -EINVAL;
	if (!args->ring_size || args->ring_size > HMOE_MAX_RING_SIZE ||
	    !is_power_of_2(args->ring_size))
		return -EINVAL;

	q = kzalloc(sizeof(*q), GFP_KERNEL);
	if (!q)
		return -ENOMEM;
	q->status = kvcalloc(args->ring_size, sizeof(*q->status), GFP_KERNEL);
	if (!q->status) {
		ret = -ENOMEM;
		goto err_free;
	}
	kref_init(&q->ref);
	q->hdev = hdev;
	q->direction = args->direction;
	q->ring_size = args->ring_size;
	q->owner_pid = task_tgid_nr(current);
	q->fence_context = dma_fence_context_alloc(1);
	spin_lock_init(&q->lock);
	INIT_LIST_HEAD(&q->pending);
	q->next_seqno = 1;
	init_waitqueue_head(&q->done_wq);
	init_waitqueue_head(&q->abort_wq);
	INIT_WORK(&q->run_work, hmoe_queue_run_work);
	INIT_DELAYED_WORK(&q->timeout_work, hmoe_queue_timeout_work);

	mutex_lock(&hdev->queues_lock);
	list_add_tail(&q->dev_link, &hdev->queues);
	mutex_unlock(&hdev->queues_lock);

	ret = xa_alloc(&hf->queues, &id, q, XA_LIMIT(1, HMOE_MAX_QUEUES_PER_FILE), GFP_KERNEL);
	if (ret) {
		/* -EBUSY from xa_alloc means "no free id": the file has max_queues already. */
		hmoe_queue_put(q);
		return ret;
	}
	q->id = id;
	args->queue_id = id;
	return 0;

err_free:
	kfree(q);
	return ret;
}

int hmoe_ioctl_queue_destroy(struct drm_device *drm, void *data, struct drm_file *file)
{
	struct hmoe_file *hf = file->driver_priv;
	struct drm_hmoe_queue_destroy *args = data;
	struct hmoe_queue *q;

	if (args->pad || args->reserved)
		return -EINVAL;
	/* The file's reference passes to us; ioctls holding their own finish normally. */
	q = xa_erase(&hf->queues, args->queue_id);
	if (!q)
		return -ENOENT;
	hmoe_queue_shutdown(q);
	hmoe_queue_put(q);
	return 0;
}

/* ---------------------------------------------------------------- submit */

static int hmoe_submit_fence_fd(struct dma_fence *fence, s32 *fd_out)
{
	struct sync_file *sync;
	int fd;

	fd = get_unused_fd_flags(O_CLOEXEC);
	if (fd < 0)
		return fd;
	sync = sync_file_create(fence);
	if (!sync) {
		put_unused_fd(fd);
		return -ENOMEM;
	}
	fd_install(fd, sync->file);
	*fd_out = fd;
	return 0;
}

int hmoe_ioctl_submit(struct drm_device *drm, void *data, struct drm_file *file)
{
	struct drm_hmoe_submit *args = data;
	struct drm_hmoe_job *ujobs = NULL;
	struct hmoe_job **jobs = NULL;
	struct dma_fence *last_fence = NULL;
	struct hmoe_queue *q;
	u32 i, n_prepared = 0;
	int ret;

	if (args->reserved || (args->flags & ~HMOE_SUBMIT_FLAGS_ALL))
		return -EINVAL;
	if (!(args->flags & HMOE_SUBMIT_IN_FENCE) && args->in_fence_fd)
		return -EINVAL;
	args->fence_fd = -1;
	if (!args->n_jobs || args->n_jobs > HMOE_MAX_JOBS_PER_SUBMIT ||
	    args->job_size != sizeof(struct drm_hmoe_job))
		return -EINVAL;
	q = hmoe_queue_get(file, args->queue_id);
	if (!q)
		return -ENOENT;

	ujobs = kvmalloc_array(args->n_jobs, sizeof(*ujobs), GFP_KERNEL);
	jobs = kcalloc(args->n_jobs, sizeof(*jobs), GFP_KERNEL);
	if (!ujobs || !jobs) {
		ret = -ENOMEM;
		goto out;
	}
	if (copy_from_user(ujobs, u64_to_user_ptr(args->jobs),
			   (size_t)args->n_jobs * sizeof(*ujobs))) {
		ret = -EFAULT;
		goto out;
	}
	for (i = 0; i < args->n_jobs; i++) {
		ret = hmoe_job_prepare(q, file, &ujobs[i], &jobs[i]);
		if (ret) {
			drm_dbg(drm, "submit to queue %u: job %u rejected: %d\n", q->id, i, ret);
			goto out;
		}
		n_prepared++;
	}
	if (args->flags & HMOE_SUBMIT_IN_FENCE) {
		jobs[0]->in_fence = sync_file_get_fence(args->in_fence_fd);
		if (!jobs[0]->in_fence) {
			drm_dbg(drm, "submit: in_fence_fd %d is not a sync_file\n",
				args->in_fence_fd);
			ret = -EINVAL;
			goto out;
		}
	}

	spin_lock(&q->lock);
	q->stats.submit_ioctls++;
	if (q->dead) {
		ret = -ENOENT;
	} else if (q->next_seqno - 1 - q->retired_seqno + args->n_jobs > q->ring_size) {
		ret = -EBUSY;
	} else {
		for (i = 0; i < args->n_jobs; i++) {
			struct hmoe_job *job = jobs[i];

			job->seqno = q->next_seqno++;
			dma_fence_init(&job->fence->base, &hmoe_fence_ops, &job->fence->lock,
				       q->fence_context, job->seqno);
			q->status[job->seqno & (q->ring_size - 1)].seqno = job->seqno;
			q->status[job->seqno & (q->ring_size - 1)].status = HMOE_JOB_PENDING;
			list_add_tail(&job->link, &q->pending);
		}
		q->stats.submitted += args->n_jobs;
		args->seqno = q->next_seqno - 1;
		last_fence = dma_fence_get(&jobs[args->n_jobs - 1]->fence->base);
		n_prepared = 0; /* the queue owns them now */
		ret = 0;
	}
	spin_unlock(&q->lock);
	if (ret)
		goto out;
	queue_work(hmoe_wq, &q->run_work);

	/* The jobs are queued whatever happens here; on failure fence_fd stays -1. */
	if (args->flags & HMOE_SUBMIT_FENCE_FD)
		ret = hmoe_submit_fence_fd(last_fence, &args->fence_fd);
	dma_fence_put(last_fence);

out:
	for (i = 0; i < n_prepared; i++)
		hmoe_job_free_unsubmitted(jobs[i]);
	kfree(jobs);
	kvfree(ujobs);
	hmoe_queue_put(q);
	return ret;
}

/* ---------------------------------------------------------------- wait and status */

/* Checks seqno names a submitted job of q; returns its remembered status or -ENOENT. */
static int hmoe_queue_job_status(struct hmoe_queue *q, u64 seqno, u32 *status)
{
	int ret = 0;

	spin_lock(&q->lock);
	if (!seqno || seqno >= q->next_seqno)
		ret = -EINVAL;
	else if (q->status[seqno & (q->ring_size - 1)].seqno != seqno)
		ret = -ENOENT;
	else
		*status = q->status[seqno & (q->ring_size - 1)].status;
	spin_unlock(&q->lock);
	return ret;
}

static bool hmoe_queue_retired(struct hmoe_queue *q, u64 seqno)
{
	bool done;

	spin_lock(&q->lock);
	done = q->retired_seqno >= seqno;
	spin_unlock(&q->lock);
	return done;
}

int hmoe_ioctl_wait(struct drm_device *drm, void *data, struct drm_file *file)
{
	struct drm_hmoe_wait *args = data;
	struct hmoe_queue *q;
	u32 status;
	s64 left_ns;
	int ret;

	if (args->flags || args->pad || args->reserved)
		return -EINVAL;
	q = hmoe_queue_get(file, args->queue_id);
	if (!q)
		return -ENOENT;
	ret = hmoe_queue_job_status(q, args->seqno, &status);
	if (ret == -EINVAL)
		goto out;

	left_ns = args->timeout_ns - ktime_get_ns();
	if (left_ns < 0)
		left_ns = 0;
	/* Restarted after a signal with the same absolute deadline. */
	ret = wait_event_interruptible_hrtimeout(q->done_wq, hmoe_queue_retired(q, args->seqno),
						 ns_to_ktime(left_ns));
	if (ret)
		goto out;
	ret = hmoe_queue_job_status(q, args->seqno, &args->status);
out:
	hmoe_queue_put(q);
	return ret;
}

int hmoe_ioctl_job_status(struct drm_device *drm, void *data, struct drm_file *file)
{
	struct drm_hmoe_job_status *args = data;
	struct hmoe_queue *q;
	int ret;

	if (args->pad || args->pad2 || args->reserved)
		return -EINVAL;
	q = hmoe_queue_get(file, args->queue_id);
	if (!q)
		return -ENOENT;
	ret = hmoe_queue_job_status(q, args->seqno, &args->status);
	hmoe_queue_put(q);
	return ret;
}
