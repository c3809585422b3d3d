// SPDX-License-Identifier: GPL-2.0
/*
 * hmoe_drv.c: the module and the DRM driver of hmoe expert cards: the ioctl table,
 * get-info, per-file state, and the registration every backend shares.
 *
 * The node is an accel node (/dev/accel/accel*) on kernels with the compute-accelerator
 * subsystem (6.2+), a render node on older ones (Debian 12's 6.1). Nothing else differs.
 */
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/version.h>

#include <drm/drm_drv.h>
#include <drm/drm_gem.h>
#include <drm/drm_ioctl.h>
#include <drm/drm_managed.h>
#include <drm/drm_prime.h>
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 2, 0)
#include <drm/drm_accel.h>
#endif

#include "hmoe_drv.h"
#include "hmoe_fxp_glue.h"

unsigned int hmoe_job_timeout_ms = 1000;
module_param_named(job_timeout_ms, hmoe_job_timeout_ms, uint, 0644);
MODULE_PARM_DESC(job_timeout_ms, "A job still running after this many ms is a hang: it fails with TIMEDOUT and its queue is reset (default 1000)");

/* ---------------------------------------------------------------- get info */

static int hmoe_ioctl_get_info(struct drm_device *drm, void *data, struct drm_file *file)
{
	struct hmoe_device *hdev = to_hmoe(drm);
	struct drm_hmoe_get_info *args = data;
	int i;

	if (args->pad)
		return -EINVAL;
	for (i = 0; i < ARRAY_SIZE(args->reserved); i++)
		if (args->reserved[i])
			return -EINVAL;

	args->version_major = HMOE_DRM_VERSION_MAJOR;
	args->version_minor = HMOE_DRM_VERSION_MINOR;
	args->backend = hdev->backend_id;
	args->n_compute_units = hdev->n_compute_units;
	mutex_lock(&hdev->mm_lock);
	args->card_mem_bytes = hdev->card_mem_bytes;
	args->card_mem_free_bytes = hdev->card_mem_bytes - hdev->card_mem_used;
	mutex_unlock(&hdev->mm_lock);
	args->weight_formats = hdev->weight_formats;
	args->format_flags = hdev->format_flags;
	args->fxp_contract_version = hdev->fxp_contract_version;
	args->max_queues = HMOE_MAX_QUEUES_PER_FILE;
	args->max_ring_size = HMOE_MAX_RING_SIZE;
	args->max_jobs_per_submit = HMOE_MAX_JOBS_PER_SUBMIT;
	args->max_tokens_per_job = HMOE_GLUE_MAX_TOKENS;
	args->dma_bytes_per_sec = hdev->dma_bytes_per_sec;
	return 0;
}

/* ---------------------------------------------------------------- files */

static int hmoe_file_open(struct drm_device *drm, struct drm_file *file)
{
	struct hmoe_file *hf;

	hf = kzalloc(sizeof(*hf), GFP_KERNEL);
	if (!hf)
		return -ENOMEM;
	hf->hdev = to_hmoe(drm);
	xa_init_flags(&hf->queues, XA_FLAGS_ALLOC1);
	file->driver_priv = hf;
	return 0;
}

/* Runs after the file's GEM handles are gone; jobs hold their own BO references. */
static void hmoe_file_postclose(struct drm_device *drm, struct drm_file *file)
{
	struct hmoe_file *hf = file->driver_priv;

	hmoe_file_queues_fini(hf);
	xa_destroy(&hf->queues);
	kfree(hf);
	file->driver_priv = NULL;
}

/* ---------------------------------------------------------------- the DRM driver */

static const struct drm_ioctl_desc hmoe_ioctls[] = {
	DRM_IOCTL_DEF_DRV(HMOE_GET_INFO, hmoe_ioctl_get_info, DRM_RENDER_ALLOW),
	DRM_IOCTL_DEF_DRV(HMOE_BO_CREATE, hmoe_ioctl_bo_create, DRM_RENDER_ALLOW),
	DRM_IOCTL_DEF_DRV(HMOE_BO_MMAP_OFFSET, hmoe_ioctl_bo_mmap_offset, DRM_RENDER_ALLOW),
	DRM_IOCTL_DEF_DRV(HMOE_BO_INFO, hmoe_ioctl_bo_info, DRM_RENDER_ALLOW),
	DRM_IOCTL_DEF_DRV(HMOE_BO_SYNC, hmoe_ioctl_bo_sync, DRM_RENDER_ALLOW),
	DRM_IOCTL_DEF_DRV(HMOE_QUEUE_CREATE, hmoe_ioctl_queue_create, DRM_RENDER_ALLOW),
	DRM_IOCTL_DEF_DRV(HMOE_QUEUE_DESTROY, hmoe_ioctl_queue_destroy, DRM_RENDER_ALLOW),
	DRM_IOCTL_DEF_DRV(HMOE_SUBMIT, hmoe_ioctl_submit, DRM_RENDER_ALLOW),
	DRM_IOCTL_DEF_DRV(HMOE_WAIT, hmoe_ioctl_wait, DRM_RENDER_ALLOW),
	DRM_IOCTL_DEF_DRV(HMOE_JOB_STATUS, hmoe_ioctl_job_status, DRM_RENDER_ALLOW),
};

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 2, 0)
DEFINE_DRM_ACCEL_FOPS(hmoe_fops);
#define HMOE_NODE_FEATURE DRIVER_COMPUTE_ACCEL
#else
DEFINE_DRM_GEM_FOPS(hmoe_fops);
#define HMOE_NODE_FEATURE DRIVER_RENDER
#endif

const struct drm_driver hmoe_drm_driver = {
	.driver_features = DRIVER_GEM | HMOE_NODE_FEATURE,
	.open = hmoe_file_open,
	.postclose = hmoe_file_postclose,
	.gem_create_object = hmoe_bo_create_object,
	.gem_prime_import_sg_table = drm_gem_shmem_prime_import_sg_table,
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 6, 0)
	/* The defaults from 6.6 on. */
	.prime_handle_to_fd = drm_gem_prime_handle_to_fd,
	.prime_fd_to_handle = drm_gem_prime_fd_to_handle,
	.gem_prime_mmap = drm_gem_prime_mmap,
#endif
	.ioctls = hmoe_ioctls,
	.num_ioctls = ARRAY_SIZE(hmoe_ioctls),
	.fops = &hmoe_fops,
	.name = HMOE_DRIVER_NAME,
	.desc = "hmoe MoE expert cards",
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 14, 0)
	.date = "20261124",
#endif
	.major = HMOE_DRM_VERSION_MAJOR,
	.minor = HMOE_DRM_VERSION_MINOR,
};

/* ---------------------------------------------------------------- device lifetime */

static void hmoe_mm_fini(struct drm_device *drm, void *arg)
{
	drm_mm_takedown(&to_hmoe(drm)->mm);
}

int hmoe_device_init(struct hmoe_device *hdev)
{
	struct drm_device *drm = &hdev->drm;
	int ret;

	ret = drmm_mutex_init(drm, &hdev->mm_lock);
	if (ret)
		return ret;
	ret = drmm_mutex_init(drm, &hdev->queues_lock);
	if (ret)
		return ret;
	ret = drmm_mutex_init(drm, &hdev->hwmon_lock);
	if (ret)
		return ret;
	INIT_LIST_HEAD(&hdev->queues);
	/* Card address 0 is never handed out, so 0 can mean "no card address". */
	drm_mm_init(&hdev->mm, PAGE_SIZE, hdev->card_mem_bytes);
	ret = drmm_add_action_or_reset(drm, hmoe_mm_fini, NULL);
	if (ret)
		return ret;

	ret = drm_dev_register(drm, 0);
	if (ret) {
		drm_err(drm, "registering the DRM device failed: %d\n", ret);
		return ret;
	}
	ret = hmoe_hwmon_init(hdev);
	if (ret) {
		drm_err(drm, "registering hwmon failed: %d\n", ret);
		goto err_unregister;
	}
	hmoe_debugfs_init(hdev);
	drm_info(drm, "%s card: %llu MiB card memory, %u compute units\n", hdev->ops->name,
		 hdev->card_mem_bytes >> 20, hdev->n_compute_units);
	return 0;

err_unregister:
	drm_dev_unregister(drm);
	return ret;
}

void hmoe_device_fini(struct hmoe_device *hdev)
{
	hmoe_debugfs_fini(hdev);
	drm_dev_unregister(&hdev->drm);
}

/* ---------------------------------------------------------------- module */

static int __init hmoe_init(void)
{
	int ret;

	ret = hmoe_job_init();
	if (ret)
		return ret;
	hmoe_debugfs_module_init();
	ret = hmoe_pci_module_init();
	if (ret)
		goto err_debugfs;
	ret = hmoe_emu_module_init();
	if (ret)
		goto err_pci;
	return 0;

err_pci:
	hmoe_pci_module_fini();
err_debugfs:
	hmoe_debugfs_module_fini();
	hmoe_job_fini();
	return ret;
}

static void __exit hmoe_exit(void)
{
	hmoe_emu_module_fini();
	hmoe_pci_module_fini();
	hmoe_debugfs_module_fini();
	hmoe_job_fini();
}

module_init(hmoe_init);
module_exit(hmoe_exit);

MODULE_DESCRIPTION("hmoe MoE expert cards: DMA queues, buffer objects, emulated and PCIe cards");
MODULE_LICENSE("GPL");
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 13, 0)
MODULE_IMPORT_NS("DMA_BUF");
#else
MODULE_IMPORT_NS(DMA_BUF);
#endif
