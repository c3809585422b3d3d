/* SPDX-License-Identifier: GPL-2.0 */
/*
 * hmoe_regs.h: the register map and descriptor formats of the hmoe PCIe card
 * (docs/kmod.md explains them). All registers are 32-bit, little-endian, in BAR0.
 * 64-bit values are LO/HI pairs; reading LO latches HI.
 */
#ifndef HMOE_REGS_H
#define HMOE_REGS_H

#include <linux/types.h>

#define HMOE_PCI_VENDOR_ID 0x10ee /* the FPGA vendor's ID, as the shell enumerates */
#define HMOE_PCI_DEVICE_ID 0x4d45 /* "ME": the hmoe expert shell */

/* ---------------------------------------------------------------- global registers */
#define HMOE_REG_ID 0x0000 /* RO: HMOE_REG_ID_VALUE */
#define HMOE_REG_ID_VALUE 0x484d4f45 /* "HMOE" */
#define HMOE_REG_VERSION 0x0004 /* RO: register map major << 16 | minor */
#define HMOE_REGS_VERSION_MAJOR 1
#define HMOE_REG_CAPS 0x0008 /* RO: see HMOE_CAPS_* */
#define HMOE_CAPS_CUS(c) ((c) & 0xff)                /* compute units (= compute rings) */
#define HMOE_CAPS_FORMAT_FLAGS(c) ((c) & 0xff00)     /* HMOE_FORMAT_A16...: mode flags */
#define HMOE_CAPS_FORMATS(c) (((c) >> 16) & 0xff)    /* bit per HMOE_FORMAT_* */
#define HMOE_CAPS_MAX_TOKENS(c) (((c) >> 24) & 0xff) /* token tile of the CUs */
#define HMOE_REG_FXP_CONTRACT 0x000c /* RO: fixed-point contract version of the CUs */
#define HMOE_REG_MEM_SIZE_LO 0x0010  /* RO: card memory, bytes */
#define HMOE_REG_MEM_SIZE_HI 0x0014
#define HMOE_REG_DMA_MBPS 0x0018     /* RO: DMA engine bandwidth, MB/s (nominal) */
#define HMOE_REG_CTRL 0x0020         /* RW */
#define HMOE_CTRL_RESET BIT(0)       /* self-clearing: stops and clears every ring */
#define HMOE_CTRL_ENABLE BIT(1)
#define HMOE_REG_STATUS 0x0024       /* RO */
#define HMOE_STATUS_READY BIT(0)
#define HMOE_STATUS_FATAL BIT(2)
#define HMOE_REG_POWER_UW 0x0030     /* RO: board power now, microwatts (sensor) */
#define HMOE_REG_ENERGY_UJ_LO 0x0038 /* RO: board energy since power-on, microjoules */
#define HMOE_REG_ENERGY_UJ_HI 0x003c

/* ---------------------------------------------------------------- rings
 * Ring 0: H2C DMA, ring 1: C2H DMA, rings 2..2+CUS-1: one per compute unit. Ring r's
 * registers are at HMOE_RING_BASE + r * HMOE_RING_STRIDE; MSI-X vector r is its. */
#define HMOE_RING_H2C 0
#define HMOE_RING_C2H 1
#define HMOE_RING_CU0 2
#define HMOE_MAX_RINGS 16
#define HMOE_RING_BASE 0x1000
#define HMOE_RING_STRIDE 0x100
#define HMOE_RING_DESC_LO 0x00 /* RW: bus address of the descriptor array */
#define HMOE_RING_DESC_HI 0x04
#define HMOE_RING_COUNT 0x08   /* RW: descriptors, power of two, <= 4096 */
#define HMOE_RING_HEAD 0x0c    /* RO: next descriptor the card fetches */
#define HMOE_RING_TAIL 0x10    /* RW: doorbell: one past the last valid descriptor */
#define HMOE_RING_CTRL 0x14
#define HMOE_RING_CTRL_ENABLE BIT(0)
#define HMOE_RING_CTRL_RESET BIT(1) /* self-clearing: stop, HEAD = TAIL = 0 */
#define HMOE_RING_WB_LO 0x18   /* RW: bus address of the completion array */
#define HMOE_RING_WB_HI 0x1c
#define HMOE_RING_STATUS 0x24  /* RO */
#define HMOE_RING_STATUS_IDLE BIT(0)
#define HMOE_RING_STATUS_ERROR BIT(1)

/* One descriptor: 64 bytes, little-endian. */
#define HMOE_DESC_COPY_H2C 1
#define HMOE_DESC_COPY_C2H 2
#define HMOE_DESC_FFN 3
#define HMOE_DESC_F_IRQ BIT(0)  /* raise the ring's MSI-X vector when done */
#define HMOE_DESC_F_LAST BIT(1) /* last descriptor of a job: writes a completion */
struct hmoe_desc {
	__le32 opcode;
	__le32 flags;
	__le64 seqno;
	__le64 addr0;   /* copy: host bus address;  ffn: weights card address */
	__le64 addr1;   /* copy: card address;      ffn: x card address */
	__le64 addr2;   /* copy: bytes;             ffn: y card address */
	__le32 format;  /* ffn: the job's mode, HMOE_FORMAT_* | flags, as in the uapi */
	__le32 dim;     /* ffn */
	__le32 inter;   /* ffn */
	__le32 n_tokens; /* ffn */
	__le64 reserved;
};

/* One completion, written by the card at WB + 32 * (descriptor index) for LAST
 * descriptors, in this order: busy_ns, seqno, status, then magic last. */
struct hmoe_desc_cmpl {
	__le32 magic; /* HMOE_CMPL_MAGIC */
	__le32 status; /* HMOE_JOB_OK or HMOE_JOB_ERROR */
	__le64 seqno;
	__le64 busy_ns;
	__le64 reserved;
};

#endif /* HMOE_REGS_H */
