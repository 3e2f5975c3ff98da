/* A minimal virtio 1.0 PCI (modern) driver over zPCI: capabilities from
 * config space (PCILG PCIAS 15), register access with PCILG/PCISTG to the
 * BARs the capabilities name, one split virtqueue in guest memory, queue
 * notify with PCISTG, completions polled in the used ring.
 *
 * PCI is little-endian: PCILG/PCISTG move the bytes in address order into a
 * big-endian register, so every multi-byte register value is byte-reversed
 * on the way (bswap*), and the rings are stored little-endian.
 *
 * With VIRTIO_F_ACCESS_PLATFORM negotiated the device DMAs through the zPCI
 * translation: virtio_dma_setup() registers the IOAT (window of lib/dma.h
 * at the function's sdma) and maps the ring pages (RPCIT).  Without it the
 * device DMAs to guest physical addresses and nothing is mapped. */
#ifndef VIRTIO_H
#define VIRTIO_H
#include "guest.h"
#include "clp.h"

#define VIRTIO_VENDOR            0x1af4
#define VIRTIO_F_VERSION_1       32
#define VIRTIO_F_ACCESS_PLATFORM 33

#define VIRTIO_STATUS_ACK         1
#define VIRTIO_STATUS_DRIVER      2
#define VIRTIO_STATUS_DRIVER_OK   4
#define VIRTIO_STATUS_FEATURES_OK 8

#define VQ_MAX 64                 /* largest queue size the driver uses */
#define VRING_DESC_F_WRITE 2

/* IOVA pages 0-2 of the DMA window hold the rings; programs map their
 * buffers from VIRTIO_IOVA_FIRST_FREE_PAGE on. */
#define VIRTIO_IOVA_FIRST_FREE_PAGE 16

struct virtio_dev {
    const char *tag;              /* program tag for FAIL lines */
    struct zpci_dev z;
    u8 common_bar, notify_bar, isr_bar, device_bar;
    u32 common_off, notify_off, isr_off, device_off;
    u32 notify_mult;
    u64 dev_features, drv_features;
    int platform;                 /* ACCESS_PLATFORM negotiated: addresses are IOVAs */
    u16 qsize, queue_notify_off;
    u16 avail_idx, used_idx;      /* next avail slot to publish, next used entry to consume */
    u64 notify_addr;              /* BAR offset of queue 0's notify register */
    u64 doorbells;                /* notifications issued */
};

/* Find (device id `modern` or `transitional`), enable, set bus master,
 * parse the capabilities.  Prints "I fn ..." and "I caps ..." lines. */
void virtio_open(struct virtio_dev *v, const char *tag, u16 modern, u16 transitional);
/* Reset and negotiate VERSION_1 (+ ACCESS_PLATFORM when offered) plus the
 * `extra` device features when offered; sets FEATURES_OK.  Prints "I features". */
void virtio_negotiate(struct virtio_dev *v, u64 extra);
/* With ACCESS_PLATFORM: register the IOAT and map + RPCIT the ring pages. */
void virtio_dma_setup(struct virtio_dev *v);
/* Queue 0 of up to VQ_MAX entries, then DRIVER_OK.  Prints "I queue0 ...". */
void virtio_setup_queue0(struct virtio_dev *v);

/* virtio_rng.c: the start of the virtio-rng programs (rng, wl_doorbell,
 * rngwl): prints "<tag> start", then the first virtio-rng function (modern
 * or transitional) through virtio_open, virtio_negotiate (no extra
 * features), virtio_dma_setup and virtio_setup_queue0.  Returns the IOVA of
 * page VIRTIO_IOVA_FIRST_FREE_PAGE, the first one free for buffers. */
u64 virtio_rng_start(struct virtio_dev *v, const char *tag);
/* With ACCESS_PLATFORM: map one device-writable buffer page at iova (and
 * RPCIT), or unmap it again (and RPCIT); nothing otherwise. */
void virtio_buffer_map(struct virtio_dev *v, u64 iova, const void *page);
void virtio_buffer_unmap(struct virtio_dev *v, u64 iova);

/* Device address of a guest buffer given its IOVA (used only if platform). */
static inline u64 virtio_addr(const struct virtio_dev *v, const void *phys, u64 iova)
{
    return v->platform ? iova : (u64)phys;
}
/* Publish one single-descriptor request (slot = avail_idx % qsize).
 * Returns the descriptor id.  Does not notify. */
u16 virtio_post(struct virtio_dev *v, u64 dev_addr, u32 len, int device_writes);
/* PCISTG to queue 0's notify register. */
void virtio_notify(struct virtio_dev *v);
/* Number of used entries not consumed yet (volatile read of used->idx). */
u16 virtio_used_pending(struct virtio_dev *v);
/* Wait for and consume the next used entry; *len = bytes the device wrote.
 * Fails the program (FAIL line, quiesce) if nothing arrives for a long time. */
u16 virtio_wait_used(struct virtio_dev *v, u32 *len);
/* Reset the device and disable the function (CLP SET). */
void virtio_close(struct virtio_dev *v);

/* Register access (value as the little-endian register means it). */
u64 virtio_read(struct virtio_dev *v, u8 bar, u64 off, int size);
void virtio_write(struct virtio_dev *v, u8 bar, u64 off, int size, u64 value);
u32 pci_cfg_read32(struct virtio_dev *v, u32 off);       /* aligned dword, LE value */
void pci_cfg_write16(struct virtio_dev *v, u32 off, u16 value);

/* RPCIT with FAIL on a non-zero cc. */
void zpci_refresh(struct virtio_dev *v, u64 iova, u64 len);

#endif
