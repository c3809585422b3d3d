// SPDX-License-Identifier: GPL-2.0
/*
 * hmoe_debugfs.c: /sys/kernel/debug/hmoe/<card>/ (root only):
 *   queues          per-queue counters of every open queue (read)
 *   card            backend, card memory in use, resets (read)
 *   inject_hang     the next N jobs on this card hang until the watchdog resets them
 *   inject_error    the next N jobs complete with an error status
 *   inject_corrupt  the next N jobs write back a corrupted completion record
 * The inject_* files read back how many injections are still armed.
 */
#include <linux/debugfs.h>
#include <linux/seq_file.h>

#include "hmoe_drv.h"

static struct dentry *hmoe_debugfs_root;

static const char *const hmoe_queue_names[] = {
	[HMOE_QUEUE_H2C] = "h2c",
	[HMOE_QUEUE_C2H] = "c2h",
	[HMOE_QUEUE_COMPUTE] = "compute",
};

static int hmoe_debugfs_queues_show(struct seq_file *m, void *unused)
{
	struct hmoe_device *hdev = m->private;
	struct hmoe_queue_stats st;
	struct hmoe_queue *q;
	u64 next, retired;

	seq_puts(m, "queue pid dir ring submitted retired ok errors bad_completions timeouts cancelled bytes tokens modeled_ns submit_ioctls\n");
	mutex_lock(&hdev->queues_lock);
	list_for_each_entry(q, &hdev->queues, dev_link) {
		spin_lock(&q->lock);
		st = q->stats;
		next = q->next_seqno;
		retired = q->retired_seqno;
		spin_unlock(&q->lock);
		seq_printf(m, "%u %d %s %u %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu\n",
			   q->id, q->owner_pid, hmoe_queue_names[q->direction], q->ring_size,
			   next - 1, retired, st.ok, st.errors, st.bad_completions, st.timeouts,
			   st.cancelled, st.bytes, st.tokens, st.modeled_ns, st.submit_ioctls);
	}
	mutex_unlock(&hdev->queues_lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(hmoe_debugfs_queues);

static int hmoe_debugfs_card_show(struct seq_file *m, void *unused)
{
	struct hmoe_device *hdev = m->private;
	u64 used;

	mutex_lock(&hdev->mm_lock);
	used = hdev->card_mem_used;
	mutex_unlock(&hdev->mm_lock);
	seq_printf(m, "backend %s\ncard_mem_bytes %llu\ncard_mem_used %llu\ncompute_units %u\nresets %lld\n",
		   hdev->ops->name, hdev->card_mem_bytes, used, hdev->n_compute_units,
		   (long long)atomic64_read(&hdev->resets));
	seq_printf(m, "weight_formats %#x\nformat_flags %#x\nfxp_contract_version %u\n",
		   hdev->weight_formats, hdev->format_flags, hdev->fxp_contract_version);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(hmoe_debugfs_card);

void hmoe_debugfs_init(struct hmoe_device *hdev)
{
	struct dentry *dir;

	dir = debugfs_create_dir(dev_name(hdev->drm.dev), hmoe_debugfs_root);
	hdev->debugfs_dir = dir;
	debugfs_create_file("queues", 0400, dir, hdev, &hmoe_debugfs_queues_fops);
	debugfs_create_file("card", 0400, dir, hdev, &hmoe_debugfs_card_fops);
	debugfs_create_atomic_t("inject_hang", 0600, dir, &hdev->inject_hang);
	debugfs_create_atomic_t("inject_error", 0600, dir, &hdev->inject_error);
	debugfs_create_atomic_t("inject_corrupt", 0600, dir, &hdev->inject_corrupt);
}

void hmoe_debugfs_fini(struct hmoe_device *hdev)
{
	debugfs_remove_recursive(hdev->debugfs_dir);
	hdev->debugfs_dir = NULL;
}

void hmoe_debugfs_module_init(void)
{
	hmoe_debugfs_root = debugfs_create_dir(HMOE_DRIVER_NAME, NULL);
}

void hmoe_debugfs_module_fini(void)
{
	debugfs_remove_recursive(hmoe_debugfs_root);
}
