// SPDX-License-Identifier: GPL-2.0
/*
 * hmoe_emu.c: the emulated card. A platform device per card (module parameter
 * emu_cards), with
 *  - card memory: the shmem pages of card BOs, capacity emu_mem_mib;
 *  - a DMA engine that copies between host and card BOs and charges a modeled time of
 *    latency + bytes / bandwidth (slept for real only with emu_model_delay=1);
 *  - compute units that run the fixed-point expert kernel of hls/ (hmoe_ffn(), the same
 *    source as the CPU path), each with its own scratch buffer;
 *  - fault injection (debugfs, hmoe_debugfs.c): a hung engine, an error status, a
 *    corrupted completion record;
 *  - an energy model: idle power plus energy per byte moved and per multiply-accumulate,
 *    reported through hwmon as "modeled".
 */
#include <linux/delay.h>
#include <linux/dma-mapping.h>
#include <linux/iosys-map.h>
#include <linux/ktime.h>
#include <linux/math64.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/platform_device.h>
#include <linux/semaphore.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/version.h>

#include <drm/drm_drv.h>
#include <drm/drm_gem.h>
#include <drm/drm_managed.h>
#include <drm/drm_print.h>

#include "hmoe_drv.h"
#include "hmoe_fxp_glue.h"

#define EMU_MAX_CARDS 8
#define EMU_MAX_CUS 8
#define EMU_DMA_LATENCY_NS 2000ull            /* descriptor fetch to first byte */
#define EMU_HBM_BYTES_PER_SEC 400000000000ull /* compute units streaming weights */
#define EMU_CU_MACS_PER_SEC 500000000000ull   /* int8 MACs per second per unit; an A16
					       * job counts two per weight and token */
#define EMU_IDLE_POWER_MW 20000ull            /* board idle power */
#define EMU_DMA_PJ_PER_BYTE 20ull             /* PCIe + card memory, per byte moved */
#define EMU_MAC_FJ 500ull                     /* one int8 MAC, femtojoules */
#define EMU_MAX_DELAY_NS 20000000ull          /* emu_model_delay sleeps at most 20 ms */

static unsigned int emu_cards = 1;
module_param(emu_cards, uint, 0444);
MODULE_PARM_DESC(emu_cards, "Emulated cards to create (0..8, default 1)");
static unsigned int emu_mem_mib = 256;
module_param(emu_mem_mib, uint, 0444);
MODULE_PARM_DESC(emu_mem_mib, "Card memory of each emulated card, MiB (default 256)");
static unsigned int emu_compute_units = 2;
module_param(emu_compute_units, uint, 0444);
MODULE_PARM_DESC(emu_compute_units, "Expert compute units per emulated card (1..8, default 2)");
static unsigned int emu_dma_mbps = 16000;
module_param(emu_dma_mbps, uint, 0444);
MODULE_PARM_DESC(emu_dma_mbps, "Modeled DMA bandwidth, MB/s (default 16000)");
static bool emu_model_delay;
module_param(emu_model_delay, bool, 0644);
MODULE_PARM_DESC(emu_model_delay, "Sleep for the modeled time of each job (default off: charge it only)");

struct hmoe_emu {
	struct hmoe_device *hdev;
	u64 created_ns;               /* ktime_get_ns() at probe */
	atomic64_t dynamic_nj;        /* energy of jobs so far, nanojoules */
	struct semaphore cu_free;     /* counts idle compute units */
	spinlock_t cu_lock;           /* protects cu_busy */
	unsigned long cu_busy;        /* bit per compute unit in use */
	struct hmoe_ffn_scratch *scratch[EMU_MAX_CUS]; /* per compute unit */
};

static struct platform_device *emu_pdevs[EMU_MAX_CARDS];

/* ---------------------------------------------------------------- card memory access */

/* The emulated card reaches BOs through kernel mappings of their pages (imported
 * dma-bufs through their exporter's vmap). From 6.2 on the mapping takes the BO's
 * reservation lock, which drm_gem_vmap_unlocked() does for us. */
static int emu_vmap(struct drm_gem_object *obj, struct iosys_map *map)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 2, 0)
	return drm_gem_vmap_unlocked(obj, map);
#else
	return drm_gem_shmem_vmap(&to_hmoe_bo(obj)->base, map);
#endif
}

static void emu_unmap(struct drm_gem_object *obj, struct iosys_map *map)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 2, 0)
	drm_gem_vunmap_unlocked(obj, map);
#else
	drm_gem_shmem_vunmap(&to_hmoe_bo(obj)->base, map);
#endif
}

static int emu_map(struct drm_gem_object *obj, struct iosys_map *map, u8 **vaddr)
{
	int ret;

	ret = emu_vmap(obj, map);
	if (ret)
		return ret;
	if (map->is_iomem) {
		emu_unmap(obj, map);
		return -EOPNOTSUPP;
	}
	*vaddr = map->vaddr;
	return 0;
}

/* ---------------------------------------------------------------- engines */

static int emu_copy(struct hmoe_emu *emu, struct hmoe_job *job, u64 *busy_ns)
{
	struct iosys_map src_map, dst_map;
	u8 *src, *dst;
	u64 done, chunk;
	int ret;

	ret = emu_map(job->bo[0], &src_map, &src);
	if (ret)
		return ret;
	ret = emu_map(job->bo[1], &dst_map, &dst);
	if (ret)
		goto out_src;
	for (done = 0; done < job->size; done += chunk) {
		chunk = min_t(u64, job->size - done, SZ_1M);
		memcpy(dst + job->offset[1] + done, src + job->offset[0] + done, chunk);
		cond_resched();
	}
	emu_unmap(job->bo[1], &dst_map);
	*busy_ns = EMU_DMA_LATENCY_NS +
		   div64_u64(job->size * 1000ull, max(1u, emu_dma_mbps));
	atomic64_add(div_u64(job->size * EMU_DMA_PJ_PER_BYTE, 1000), &emu->dynamic_nj);
out_src:
	emu_unmap(job->bo[0], &src_map);
	return ret;
}

static int emu_cu_get(struct hmoe_emu *emu)
{
	int cu;

	down(&emu->cu_free);
	spin_lock(&emu->cu_lock);
	cu = ffz(emu->cu_busy);
	__set_bit(cu, &emu->cu_busy);
	spin_unlock(&emu->cu_lock);
	return cu;
}

static void emu_cu_put(struct hmoe_emu *emu, int cu)
{
	spin_lock(&emu->cu_lock);
	__clear_bit(cu, &emu->cu_busy);
	spin_unlock(&emu->cu_lock);
	up(&emu->cu_free);
}

static int emu_ffn(struct hmoe_emu *emu, struct hmoe_job *job, u64 *busy_ns)
{
	const struct drm_hmoe_job_ffn *f = &job->ffn;
	struct iosys_map wmap, xmap, ymap;
	u8 *w, *x, *y;
	u64 weights_bytes, x_bytes, y_bytes, macs, xq_token;
	const s32 *xs;
	u32 t;
	int cu, ret;

	ret = hmoe_glue_ffn_sizes(f, &weights_bytes, &x_bytes, &y_bytes);
	if (ret)
		return ret;
	ret = emu_map(job->bo[0], &wmap, &w);
	if (ret)
		return ret;
	ret = emu_map(job->bo[1], &xmap, &x);
	if (ret)
		goto out_w;
	ret = emu_map(job->bo[2], &ymap, &y);
	if (ret)
		goto out_x;

	/* One token per call: tokens are independent in the kernel (same bytes as one
	 * call over the tile), and the scheduler gets a chance between them. */
	cu = emu_cu_get(emu);
	x += job->offset[1];
	xq_token = hmoe_glue_ffn_xq_token_bytes(f);
	xs = (const s32 *)(x + f->n_tokens * xq_token);
	for (t = 0; t < f->n_tokens && !ret; t++) {
		ret = hmoe_ffn((const struct hmoe_fxp_line *)(w + job->offset[0]),
			       (const s8 *)x + t * xq_token,
			       xs + (u64)t * hmoe_fxp_groups(f->dim),
			       (s32 *)(y + job->offset[2]) + (u64)t * f->dim, emu->scratch[cu],
			       f->format, 1, f->dim, f->inter);
		cond_resched();
	}
	emu_cu_put(emu, cu);

	macs = hmoe_glue_ffn_macs(f);
	*busy_ns = EMU_DMA_LATENCY_NS +
		   max(div64_u64(weights_bytes * NSEC_PER_SEC, EMU_HBM_BYTES_PER_SEC),
		       div64_u64(macs * 1000ull, EMU_CU_MACS_PER_SEC / 1000000ull));
	atomic64_add(div_u64(macs * EMU_MAC_FJ, 1000000), &emu->dynamic_nj);

	emu_unmap(job->bo[2], &ymap);
out_x:
	emu_unmap(job->bo[1], &xmap);
out_w:
	emu_unmap(job->bo[0], &wmap);
	return ret;
}

/* ---------------------------------------------------------------- backend ops */

static int hmoe_emu_run(struct hmoe_device *hdev, struct hmoe_queue *q, struct hmoe_job *job,
			struct hmoe_cmpl *cmpl)
{
	struct hmoe_emu *emu = hdev->backend;
	u64 busy_ns = 0;
	int ret;

	if (atomic_dec_if_positive(&hdev->inject_hang) >= 0) {
		/* A stuck engine: nothing completes until the watchdog resets it. */
		wait_event(q->abort_wq, hmoe_queue_aborted(q));
		return -ETIMEDOUT;
	}
	if (job->type == HMOE_JOB_COPY)
		ret = emu_copy(emu, job, &busy_ns);
	else
		ret = emu_ffn(emu, job, &busy_ns);
	if (ret)
		return ret;
	if (emu_model_delay)
		usleep_range(div_u64(min(busy_ns, EMU_MAX_DELAY_NS), 1000) + 1,
			     div_u64(min(busy_ns, EMU_MAX_DELAY_NS), 1000) + 10);

	/* The completion record the card would write back. */
	cmpl->magic = HMOE_CMPL_MAGIC;
	cmpl->seqno = job->seqno;
	cmpl->status = HMOE_JOB_OK;
	cmpl->busy_ns = busy_ns;
	if (atomic_dec_if_positive(&hdev->inject_error) >= 0)
		cmpl->status = HMOE_JOB_ERROR;
	if (atomic_dec_if_positive(&hdev->inject_corrupt) >= 0)
		cmpl->seqno = ~job->seqno;
	return 0;
}

static void hmoe_emu_abort(struct hmoe_device *hdev, struct hmoe_queue *q)
{
	wake_up_all(&q->abort_wq);
}

static u64 hmoe_emu_energy_uj(struct hmoe_device *hdev, bool *measured)
{
	struct hmoe_emu *emu = hdev->backend;
	u64 alive_us = div_u64(ktime_get_ns() - emu->created_ns, 1000);

	*measured = false;
	return div_u64(alive_us * EMU_IDLE_POWER_MW, 1000) +
	       div_u64(atomic64_read(&emu->dynamic_nj), 1000);
}

const struct hmoe_backend_ops hmoe_emu_ops = {
	.name = "emu",
	.run = hmoe_emu_run,
	.abort = hmoe_emu_abort,
	.energy_uj = hmoe_emu_energy_uj,
};

/* ---------------------------------------------------------------- platform device */

static void emu_free_scratch(void *data)
{
	struct hmoe_emu *emu = data;
	int i;

	for (i = 0; i < EMU_MAX_CUS; i++)
		kvfree(emu->scratch[i]);
}

static int hmoe_emu_probe(struct platform_device *pdev)
{
	struct hmoe_device *hdev;
	struct hmoe_emu *emu;
	u32 i, n_cus = clamp(emu_compute_units, 1u, (unsigned int)EMU_MAX_CUS);
	int ret;

	ret = dma_coerce_mask_and_coherent(&pdev->dev, DMA_BIT_MASK(64));
	if (ret)
		return ret;
	hdev = devm_drm_dev_alloc(&pdev->dev, &hmoe_drm_driver, struct hmoe_device, drm);
	if (IS_ERR(hdev))
		return PTR_ERR(hdev);
	emu = devm_kzalloc(&pdev->dev, sizeof(*emu), GFP_KERNEL);
	if (!emu)
		return -ENOMEM;
	ret = devm_add_action_or_reset(&pdev->dev, emu_free_scratch, emu);
	if (ret)
		return ret;
	for (i = 0; i < n_cus; i++) {
		emu->scratch[i] = kvzalloc(sizeof(*emu->scratch[i]), GFP_KERNEL);
		if (!emu->scratch[i])
			return -ENOMEM;
	}
	emu->hdev = hdev;
	emu->created_ns = ktime_get_ns();
	sema_init(&emu->cu_free, n_cus);
	spin_lock_init(&emu->cu_lock);

	hdev->ops = &hmoe_emu_ops;
	hdev->backend = emu;
	hdev->backend_id = HMOE_BACKEND_EMU;
	hdev->n_compute_units = n_cus;
	hdev->weight_formats = HMOE_GLUE_FORMATS;
	hdev->format_flags = HMOE_GLUE_FORMAT_FLAGS;
	hdev->fxp_contract_version = HMOE_GLUE_CONTRACT_VERSION;
	hdev->dma_bytes_per_sec = (u64)emu_dma_mbps * 1000000ull;
	hdev->card_mem_bytes = (u64)clamp(emu_mem_mib, 1u, 65536u) << 20;
	platform_set_drvdata(pdev, hdev);
	return hmoe_device_init(hdev);
}

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 11, 0)
static void hmoe_emu_remove(struct platform_device *pdev)
{
	hmoe_device_fini(platform_get_drvdata(pdev));
}
#else
static int hmoe_emu_remove(struct platform_device *pdev)
{
	hmoe_device_fini(platform_get_drvdata(pdev));
	return 0;
}
#endif

static struct platform_driver hmoe_emu_driver = {
	.probe = hmoe_emu_probe,
	.remove = hmoe_emu_remove,
	.driver = {
		.name = "hmoe_emu",
	},
};

int hmoe_emu_module_init(void)
{
	unsigned int i;
	int ret;

	if (emu_cards > EMU_MAX_CARDS) {
		pr_err("hmoe: emu_cards=%u: at most %u emulated cards\n", emu_cards,
		       EMU_MAX_CARDS);
		return -EINVAL;
	}
	ret = platform_driver_register(&hmoe_emu_driver);
	if (ret)
		return ret;
	for (i = 0; i < emu_cards; i++) {
		emu_pdevs[i] = platform_device_register_simple("hmoe_emu", i, NULL, 0);
		if (IS_ERR(emu_pdevs[i])) {
			ret = PTR_ERR(emu_pdevs[i]);
			emu_pdevs[i] = NULL;
			pr_err("hmoe: creating emulated card %u failed: %d\n", i, ret);
			hmoe_emu_module_fini();
			return ret;
		}
	}
	return 0;
}

void hmoe_emu_module_fini(void)
{
	unsigned int i;

	for (i = 0; i < EMU_MAX_CARDS; i++) {
		if (emu_pdevs[i])
			platform_device_unregister(emu_pdevs[i]);
		emu_pdevs[i] = NULL;
	}
	platform_driver_unregister(&hmoe_emu_driver);
}
