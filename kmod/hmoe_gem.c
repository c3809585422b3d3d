// SPDX-License-Identifier: GPL-2.0
/*
 * hmoe_gem.c: buffer objects. Every BO is a shmem GEM object; a host BO can be mmapped
 * and exported as a dma-buf, a card BO (HMOE_BO_CARD) also owns a range of card memory
 * (an address from the device's drm_mm) and is reached only by jobs. On the emulated card
 * the shmem pages are the card memory; on a PCIe card they are the DMA bounce copy.
 */
#include <linux/dma-buf.h>
#include <linux/dma-direction.h>
#include <linux/overflow.h>
#include <linux/slab.h>

#include <drm/drm_gem.h>
#include <drm/drm_prime.h>
#include <drm/drm_vma_manager.h>

#include "hmoe_drv.h"

/* ---------------------------------------------------------------- object functions */

static void hmoe_bo_free(struct drm_gem_object *obj)
{
	struct hmoe_bo *bo = to_hmoe_bo(obj);
	struct hmoe_device *hdev = to_hmoe(obj->dev);

	if (drm_mm_node_allocated(&bo->node)) {
		mutex_lock(&hdev->mm_lock);
		hdev->card_mem_used -= bo->node.size;
		drm_mm_remove_node(&bo->node);
		mutex_unlock(&hdev->mm_lock);
	}
	drm_gem_shmem_free(&bo->base);
}

/* Card memory is not host memory: no CPU mapping, no sharing. */
static int hmoe_bo_mmap(struct drm_gem_object *obj, struct vm_area_struct *vma)
{
	if (to_hmoe_bo(obj)->flags & HMOE_BO_CARD)
		return -EPERM;
	return drm_gem_shmem_object_mmap(obj, vma);
}

static struct dma_buf *hmoe_bo_export(struct drm_gem_object *obj, int flags)
{
	if (to_hmoe_bo(obj)->flags & HMOE_BO_CARD)
		return ERR_PTR(-EPERM);
	return drm_gem_prime_export(obj, flags);
}

static const struct drm_gem_object_funcs hmoe_bo_funcs = {
	.free = hmoe_bo_free,
	.print_info = drm_gem_shmem_object_print_info,
	.pin = drm_gem_shmem_object_pin,
	.unpin = drm_gem_shmem_object_unpin,
	.get_sg_table = drm_gem_shmem_object_get_sg_table,
	.vmap = drm_gem_shmem_object_vmap,
	.vunmap = drm_gem_shmem_object_vunmap,
	.mmap = hmoe_bo_mmap,
	.export = hmoe_bo_export,
	.vm_ops = &drm_gem_shmem_vm_ops,
};

/* The DRM core's constructor hook: BOs it creates (ours and imported dma-bufs) are
 * struct hmoe_bo. */
struct drm_gem_object *hmoe_bo_create_object(struct drm_device *drm, size_t size)
{
	struct hmoe_bo *bo;

	bo = kzalloc(sizeof(*bo), GFP_KERNEL);
	if (!bo)
		return ERR_PTR(-ENOMEM);
	bo->base.base.funcs = &hmoe_bo_funcs;
	return &bo->base.base;
}

int hmoe_bo_lookup_range(struct drm_file *file, u32 handle, u64 offset, u64 size, bool card,
			 const char *what, struct drm_gem_object **out)
{
	struct drm_gem_object *obj;
	u64 end;

	obj = drm_gem_object_lookup(file, handle);
	if (!obj) {
		drm_dbg(file->minor->dev, "%s: no BO with handle %u\n", what, handle);
		return -ENOENT;
	}
	if (!!(to_hmoe_bo(obj)->flags & HMOE_BO_CARD) != card) {
		drm_dbg(obj->dev, "%s: BO %u is a %s BO, a %s BO is needed\n", what, handle,
			card ? "host" : "card", card ? "card" : "host");
		goto err_put;
	}
	if (check_add_overflow(offset, size, &end) || end > obj->size) {
		drm_dbg(obj->dev, "%s: range %llu+%llu runs past BO %u of %zu bytes\n", what,
			offset, size, handle, obj->size);
		goto err_put;
	}
	*out = obj;
	return 0;

err_put:
	drm_gem_object_put(obj);
	return -EINVAL;
}

/* ---------------------------------------------------------------- ioctls */

int hmoe_ioctl_bo_create(struct drm_device *drm, void *data, struct drm_file *file)
{
	struct hmoe_device *hdev = to_hmoe(drm);
	struct drm_hmoe_bo_create *args = data;
	struct drm_gem_shmem_object *shmem;
	struct hmoe_bo *bo;
	int ret;

	if (args->reserved || (args->flags & ~HMOE_BO_FLAGS_ALL))
		return -EINVAL;
	if (!args->size || args->size > HMOE_BO_MAX_BYTES)
		return -EINVAL;

	shmem = drm_gem_shmem_create(drm, args->size);
	if (IS_ERR(shmem))
		return PTR_ERR(shmem);
	bo = container_of(shmem, struct hmoe_bo, base);
	bo->flags = args->flags;

	if (bo->flags & HMOE_BO_CARD) {
		mutex_lock(&hdev->mm_lock);
		ret = drm_mm_insert_node(&hdev->mm, &bo->node, shmem->base.size);
		if (!ret)
			hdev->card_mem_used += bo->node.size;
		mutex_unlock(&hdev->mm_lock);
		if (ret) {
			drm_dbg(drm, "card memory full: %zu bytes wanted\n", shmem->base.size);
			goto err_put;
		}
	}

	ret = drm_gem_handle_create(file, &shmem->base, &args->handle);
err_put:
	/* On success the handle now holds the only reference. */
	drm_gem_object_put(&shmem->base);
	return ret;
}

int hmoe_ioctl_bo_mmap_offset(struct drm_device *drm, void *data, struct drm_file *file)
{
	struct drm_hmoe_bo_mmap_offset *args = data;
	struct drm_gem_object *obj;
	int ret;

	if (args->pad || args->reserved)
		return -EINVAL;
	obj = drm_gem_object_lookup(file, args->handle);
	if (!obj)
		return -ENOENT;
	if (to_hmoe_bo(obj)->flags & HMOE_BO_CARD) {
		ret = -EPERM;
		goto out_put;
	}
	ret = drm_gem_create_mmap_offset(obj);
	if (ret)
		goto out_put;
	args->offset = drm_vma_node_offset_addr(&obj->vma_node);
out_put:
	drm_gem_object_put(obj);
	return ret;
}

int hmoe_ioctl_bo_info(struct drm_device *drm, void *data, struct drm_file *file)
{
	struct drm_hmoe_bo_info *args = data;
	struct drm_gem_object *obj;
	struct hmoe_bo *bo;

	if (args->reserved)
		return -EINVAL;
	obj = drm_gem_object_lookup(file, args->handle);
	if (!obj)
		return -ENOENT;
	bo = to_hmoe_bo(obj);
	args->flags = bo->flags | (obj->import_attach ? HMOE_BO_INFO_IMPORTED : 0);
	args->size = obj->size;
	args->card_addr = drm_mm_node_allocated(&bo->node) ? bo->node.start : 0;
	drm_gem_object_put(obj);
	return 0;
}

int hmoe_ioctl_bo_sync(struct drm_device *drm, void *data, struct drm_file *file)
{
	struct drm_hmoe_bo_sync *args = data;
	struct drm_gem_object *obj;
	int ret;

	if (args->reserved)
		return -EINVAL;
	if (args->direction != HMOE_SYNC_TO_CARD && args->direction != HMOE_SYNC_FROM_CARD)
		return -EINVAL;
	ret = hmoe_bo_lookup_range(file, args->handle, args->offset, args->size, false,
				   "bo_sync", &obj);
	if (ret)
		return ret;
	/* Our own pages are cache-coherent with the (emulated or PCIe) card on x86; an
	 * imported dma-buf belongs to its exporter, which knows what a sync takes. */
	if (obj->import_attach) {
		struct dma_buf *buf = obj->import_attach->dmabuf;

		if (args->direction == HMOE_SYNC_TO_CARD)
			ret = dma_buf_end_cpu_access(buf, DMA_TO_DEVICE);
		else
			ret = dma_buf_begin_cpu_access(buf, DMA_FROM_DEVICE);
	}
	drm_gem_object_put(obj);
	return ret;
}
