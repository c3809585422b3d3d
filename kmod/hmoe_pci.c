// SPDX-License-Identifier: GPL-2.0
/*
 * hmoe_pci.c: the real card on PCIe (register map: hmoe_regs.h, docs/kmod.md).
 *
 * Probe checks the ID and register-map version, resets the card, reads its
 * capabilities, sets up one descriptor ring + completion array + MSI-X vector per
 * engine (H2C, C2H, one per compute unit) and registers the card like every backend.
 * A job becomes descriptors on its engine's ring (a copy: one per contiguous DMA
 * segment of the host BO; an FFN: one), the doorbell is rung, and run() sleeps until
 * the last descriptor's completion is written back (interrupt) or the watchdog aborts
 * it, which resets the ring. Card BOs are card-memory addresses from the drm_mm; their
 * shmem pages are never touched on this backend.
 */
#include <linux/delay.h>
#include <linux/dma-mapping.h>
#include <linux/interrupt.h>
#include <linux/io-64-nonatomic-lo-hi.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/scatterlist.h>

#include <drm/drm_drv.h>
#include <drm/drm_print.h>

#include "hmoe_drv.h"
#include "hmoe_regs.h"

#define PCI_RING_DESCS 256 /* descriptors per ring */

struct hmoe_pci_ring {
	struct hmoe_pci_card *card;
	u32 index;
	void __iomem *regs;          /* this ring's register block */
	struct hmoe_desc *desc;      /* [PCI_RING_DESCS], coherent */
	dma_addr_t desc_dma;
	struct hmoe_desc_cmpl *cmpl; /* [PCI_RING_DESCS], coherent, written by the card */
	dma_addr_t cmpl_dma;
	struct mutex lock;           /* serialises jobs on the ring; protects tail */
	u32 tail;                    /* next descriptor slot we fill */
	wait_queue_head_t wq;        /* woken by the ring's interrupt and by abort */
};

struct hmoe_pci_card {
	struct pci_dev *pdev;
	void __iomem *regs;
	u32 n_rings;
	struct hmoe_pci_ring rings[HMOE_MAX_RINGS];
};

/* ---------------------------------------------------------------- rings */

static void pci_ring_program(struct hmoe_pci_ring *r)
{
	writel(lower_32_bits(r->desc_dma), r->regs + HMOE_RING_DESC_LO);
	writel(upper_32_bits(r->desc_dma), r->regs + HMOE_RING_DESC_HI);
	writel(lower_32_bits(r->cmpl_dma), r->regs + HMOE_RING_WB_LO);
	writel(upper_32_bits(r->cmpl_dma), r->regs + HMOE_RING_WB_HI);
	writel(PCI_RING_DESCS, r->regs + HMOE_RING_COUNT);
	r->tail = 0;
	writel(0, r->regs + HMOE_RING_TAIL);
	writel(HMOE_RING_CTRL_ENABLE, r->regs + HMOE_RING_CTRL);
}

/* Stops the ring, waits for the card to clear it (10 ms), and starts it again. */
static int pci_ring_reset(struct hmoe_pci_ring *r)
{
	int i;

	writel(HMOE_RING_CTRL_RESET, r->regs + HMOE_RING_CTRL);
	for (i = 0; i < 100 && (readl(r->regs + HMOE_RING_CTRL) & HMOE_RING_CTRL_RESET); i++)
		usleep_range(100, 200);
	if (readl(r->regs + HMOE_RING_CTRL) & HMOE_RING_CTRL_RESET)
		return -ETIMEDOUT;
	memset(r->cmpl, 0, PCI_RING_DESCS * sizeof(*r->cmpl));
	pci_ring_program(r);
	return 0;
}

static irqreturn_t pci_ring_irq(int irq, void *arg)
{
	struct hmoe_pci_ring *r = arg;

	wake_up_all(&r->wq);
	return IRQ_HANDLED;
}

static bool pci_ring_free_slot(struct hmoe_pci_ring *r)
{
	return ((r->tail + 1) & (PCI_RING_DESCS - 1)) != readl(r->regs + HMOE_RING_HEAD);
}

/* Fills the next descriptor; waits for room while the ring is full. */
static int pci_ring_post(struct hmoe_pci_ring *r, struct hmoe_queue *q,
			 const struct hmoe_desc *d, u32 *slot)
{
	wait_event(r->wq, pci_ring_free_slot(r) || hmoe_queue_aborted(q));
	if (hmoe_queue_aborted(q))
		return -ETIMEDOUT;
	*slot = r->tail;
	r->desc[r->tail] = *d;
	memset(&r->cmpl[r->tail], 0, sizeof(r->cmpl[r->tail]));
	r->tail = (r->tail + 1) & (PCI_RING_DESCS - 1);
	return 0;
}

static void pci_ring_doorbell(struct hmoe_pci_ring *r)
{
	dma_wmb(); /* descriptors visible before the card reads TAIL */
	writel(r->tail, r->regs + HMOE_RING_TAIL);
}

static bool pci_cmpl_written(struct hmoe_pci_ring *r, u32 slot)
{
	return le32_to_cpu(READ_ONCE(r->cmpl[slot].magic)) != 0;
}

/* ---------------------------------------------------------------- jobs */

static u64 pci_card_addr(struct drm_gem_object *obj, u64 offset)
{
	return to_hmoe_bo(obj)->node.start + offset;
}

/* One descriptor per DMA segment of the host range [offset, offset + size). */
static int pci_post_copy(struct hmoe_pci_ring *r, struct hmoe_queue *q, struct hmoe_job *job,
			 u32 *last_slot)
{
	bool h2c = q->direction == HMOE_QUEUE_H2C;
	struct drm_gem_object *host = job->bo[h2c ? 0 : 1], *card = job->bo[h2c ? 1 : 0];
	u64 host_off = job->offset[h2c ? 0 : 1], card_addr;
	u64 left = job->size, pos = 0;
	struct sg_table *sgt;
	struct scatterlist *sg;
	struct hmoe_desc d;
	int i, ret;

	sgt = drm_gem_shmem_get_pages_sgt(&to_hmoe_bo(host)->base);
	if (IS_ERR(sgt))
		return PTR_ERR(sgt);
	card_addr = pci_card_addr(card, job->offset[h2c ? 1 : 0]);
	for_each_sgtable_dma_sg(sgt, sg, i) {
		u64 len = sg_dma_len(sg), skip, n;

		if (!left)
			break;
		if (pos + len <= host_off) {
			pos += len;
			continue;
		}
		skip = host_off > pos ? host_off - pos : 0;
		n = min(len - skip, left);
		memset(&d, 0, sizeof(d));
		d.opcode = cpu_to_le32(h2c ? HMOE_DESC_COPY_H2C : HMOE_DESC_COPY_C2H);
		d.seqno = cpu_to_le64(job->seqno);
		d.addr0 = cpu_to_le64(sg_dma_address(sg) + skip);
		d.addr1 = cpu_to_le64(card_addr);
		d.addr2 = cpu_to_le64(n);
		left -= n;
		if (!left)
			d.flags = cpu_to_le32(HMOE_DESC_F_IRQ | HMOE_DESC_F_LAST);
		ret = pci_ring_post(r, q, &d, last_slot);
		if (ret)
			return ret;
		if (left && !pci_ring_free_slot(r))
			pci_ring_doorbell(r); /* let the card drain while we wait for room */
		card_addr += n;
		pos += len;
	}
	return left ? -EINVAL : 0;
}

static int pci_post_ffn(struct hmoe_pci_ring *r, struct hmoe_queue *q, struct hmoe_job *job,
			u32 *slot)
{
	struct hmoe_desc d;

	memset(&d, 0, sizeof(d));
	d.opcode = cpu_to_le32(HMOE_DESC_FFN);
	d.flags = cpu_to_le32(HMOE_DESC_F_IRQ | HMOE_DESC_F_LAST);
	d.seqno = cpu_to_le64(job->seqno);
	d.addr0 = cpu_to_le64(pci_card_addr(job->bo[0], job->offset[0]));
	d.addr1 = cpu_to_le64(pci_card_addr(job->bo[1], job->offset[1]));
	d.addr2 = cpu_to_le64(pci_card_addr(job->bo[2], job->offset[2]));
	d.format = cpu_to_le32(job->ffn.format);
	d.dim = cpu_to_le32(job->ffn.dim);
	d.inter = cpu_to_le32(job->ffn.inter);
	d.n_tokens = cpu_to_le32(job->ffn.n_tokens);
	return pci_ring_post(r, q, &d, slot);
}

static struct hmoe_pci_ring *pci_ring_of(struct hmoe_pci_card *card, struct hmoe_queue *q)
{
	if (q->direction == HMOE_QUEUE_H2C)
		return &card->rings[HMOE_RING_H2C];
	if (q->direction == HMOE_QUEUE_C2H)
		return &card->rings[HMOE_RING_C2H];
	return &card->rings[HMOE_RING_CU0 + q->id % (card->n_rings - HMOE_RING_CU0)];
}

static int hmoe_pci_run(struct hmoe_device *hdev, struct hmoe_queue *q, struct hmoe_job *job,
			struct hmoe_cmpl *cmpl)
{
	struct hmoe_pci_ring *r = pci_ring_of(hdev->backend, q);
	u32 slot = 0;
	int ret;

	mutex_lock(&r->lock);
	if (job->type == HMOE_JOB_COPY)
		ret = pci_post_copy(r, q, job, &slot);
	else
		ret = pci_post_ffn(r, q, job, &slot);
	if (!ret) {
		pci_ring_doorbell(r);
		wait_event(r->wq, pci_cmpl_written(r, slot) || hmoe_queue_aborted(q));
		if (pci_cmpl_written(r, slot)) {
			dma_rmb(); /* magic is written last: read the rest after it */
			cmpl->magic = le32_to_cpu(r->cmpl[slot].magic);
			cmpl->status = le32_to_cpu(r->cmpl[slot].status);
			cmpl->seqno = le64_to_cpu(r->cmpl[slot].seqno);
			cmpl->busy_ns = le64_to_cpu(r->cmpl[slot].busy_ns);
		} else {
			ret = -ETIMEDOUT;
		}
	}
	if (ret == -ETIMEDOUT && pci_ring_reset(r))
		drm_err(&hdev->drm, "ring %u did not come out of reset\n", r->index);
	mutex_unlock(&r->lock);
	return ret;
}

/* The watchdog: run() sees the abort, resets the ring and returns -ETIMEDOUT. */
static void hmoe_pci_abort(struct hmoe_device *hdev, struct hmoe_queue *q)
{
	wake_up_all(&pci_ring_of(hdev->backend, q)->wq);
}

static u64 hmoe_pci_energy_uj(struct hmoe_device *hdev, bool *measured)
{
	struct hmoe_pci_card *card = hdev->backend;

	*measured = true;
	return lo_hi_readq(card->regs + HMOE_REG_ENERGY_UJ_LO);
}

const struct hmoe_backend_ops hmoe_pci_ops = {
	.name = "pci",
	.run = hmoe_pci_run,
	.abort = hmoe_pci_abort,
	.energy_uj = hmoe_pci_energy_uj,
};

/* ---------------------------------------------------------------- probe */

static int pci_card_reset(struct hmoe_pci_card *card)
{
	int i;

	writel(HMOE_CTRL_RESET, card->regs + HMOE_REG_CTRL);
	for (i = 0; i < 1000; i++) {
		if (!(readl(card->regs + HMOE_REG_CTRL) & HMOE_CTRL_RESET) &&
		    (readl(card->regs + HMOE_REG_STATUS) & HMOE_STATUS_READY))
			break;
		usleep_range(1000, 2000);
	}
	if (i == 1000)
		return -ETIMEDOUT;
	writel(HMOE_CTRL_ENABLE, card->regs + HMOE_REG_CTRL);
	return 0;
}

static int pci_rings_init(struct hmoe_pci_card *card)
{
	struct device *dev = &card->pdev->dev;
	u32 i;
	int ret;

	for (i = 0; i < card->n_rings; i++) {
		struct hmoe_pci_ring *r = &card->rings[i];

		r->card = card;
		r->index = i;
		r->regs = card->regs + HMOE_RING_BASE + i * HMOE_RING_STRIDE;
		mutex_init(&r->lock);
		init_waitqueue_head(&r->wq);
		r->desc = dmam_alloc_coherent(dev, PCI_RING_DESCS * sizeof(*r->desc),
					      &r->desc_dma, GFP_KERNEL);
		r->cmpl = dmam_alloc_coherent(dev, PCI_RING_DESCS * sizeof(*r->cmpl),
					      &r->cmpl_dma, GFP_KERNEL);
		if (!r->desc || !r->cmpl)
			return -ENOMEM;
		ret = devm_request_irq(dev, pci_irq_vector(card->pdev, i), pci_ring_irq, 0,
				       "hmoe", r);
		if (ret) {
			dev_err(dev, "ring %u: requesting MSI-X vector %u failed: %d\n", i, i, ret);
			return ret;
		}
		pci_ring_program(r);
	}
	return 0;
}

static int hmoe_pci_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct device *dev = &pdev->dev;
	struct hmoe_pci_card *card;
	struct hmoe_device *hdev;
	u32 magic, version, caps;
	int ret;

	ret = pcim_enable_device(pdev);
	if (ret)
		return ret;
	ret = pcim_iomap_regions(pdev, BIT(0), "hmoe_pci");
	if (ret) {
		dev_err(dev, "mapping BAR0 failed: %d\n", ret);
		return ret;
	}
	card = devm_kzalloc(dev, sizeof(*card), GFP_KERNEL);
	if (!card)
		return -ENOMEM;
	card->pdev = pdev;
	card->regs = pcim_iomap_table(pdev)[0];

	magic = readl(card->regs + HMOE_REG_ID);
	if (magic != HMOE_REG_ID_VALUE) {
		dev_info(dev, "ID register reads %#010x, not an hmoe card\n", magic);
		return -ENODEV;
	}
	version = readl(card->regs + HMOE_REG_VERSION);
	if (version >> 16 != HMOE_REGS_VERSION_MAJOR) {
		dev_err(dev, "register map version %u.%u, the driver knows %u.x\n", version >> 16,
			version & 0xffff, HMOE_REGS_VERSION_MAJOR);
		return -ENODEV;
	}
	ret = dma_set_mask_and_coherent(dev, DMA_BIT_MASK(64));
	if (ret)
		return ret;
	pci_set_master(pdev);
	ret = pci_card_reset(card);
	if (ret) {
		dev_err(dev, "card did not come out of reset\n");
		return ret;
	}
	caps = readl(card->regs + HMOE_REG_CAPS);
	card->n_rings = HMOE_RING_CU0 + HMOE_CAPS_CUS(caps);
	if (!HMOE_CAPS_CUS(caps) || card->n_rings > HMOE_MAX_RINGS) {
		dev_err(dev, "card reports %u compute units (1..%u supported)\n",
			HMOE_CAPS_CUS(caps), HMOE_MAX_RINGS - HMOE_RING_CU0);
		return -ENODEV;
	}
	ret = pci_alloc_irq_vectors(pdev, card->n_rings, card->n_rings, PCI_IRQ_MSIX);
	if (ret < 0) {
		dev_err(dev, "%u MSI-X vectors unavailable: %d\n", card->n_rings, ret);
		return ret;
	}
	ret = pci_rings_init(card);
	if (ret)
		return ret;

	hdev = devm_drm_dev_alloc(dev, &hmoe_drm_driver, struct hmoe_device, drm);
	if (IS_ERR(hdev))
		return PTR_ERR(hdev);
	hdev->ops = &hmoe_pci_ops;
	hdev->backend = card;
	hdev->backend_id = HMOE_BACKEND_PCI;
	hdev->n_compute_units = HMOE_CAPS_CUS(caps);
	hdev->weight_formats = HMOE_CAPS_FORMATS(caps);
	hdev->format_flags = HMOE_CAPS_FORMAT_FLAGS(caps) & HMOE_FORMAT_FLAGS_ALL;
	hdev->fxp_contract_version = readl(card->regs + HMOE_REG_FXP_CONTRACT);
	hdev->dma_bytes_per_sec = (u64)readl(card->regs + HMOE_REG_DMA_MBPS) * 1000000ull;
	hdev->card_mem_bytes = lo_hi_readq(card->regs + HMOE_REG_MEM_SIZE_LO);
	pci_set_drvdata(pdev, hdev);
	return hmoe_device_init(hdev);
}

static void hmoe_pci_remove(struct pci_dev *pdev)
{
	struct hmoe_device *hdev = pci_get_drvdata(pdev);
	struct hmoe_pci_card *card = hdev->backend;

	hmoe_device_fini(hdev);
	writel(HMOE_CTRL_RESET, card->regs + HMOE_REG_CTRL); /* stop all DMA */
}

static const struct pci_device_id hmoe_pci_ids[] = {
	{ PCI_DEVICE(HMOE_PCI_VENDOR_ID, HMOE_PCI_DEVICE_ID) },
	{ }
};
MODULE_DEVICE_TABLE(pci, hmoe_pci_ids);

static struct pci_driver hmoe_pci_driver = {
	.name = "hmoe_pci",
	.id_table = hmoe_pci_ids,
	.probe = hmoe_pci_probe,
	.remove = hmoe_pci_remove,
};

int hmoe_pci_module_init(void)
{
	return pci_register_driver(&hmoe_pci_driver);
}

void hmoe_pci_module_fini(void)
{
	pci_unregister_driver(&hmoe_pci_driver);
}
