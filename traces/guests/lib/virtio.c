#include "virtio.h"
#include "console.h"
#include "zpci.h"
#include "dma.h"

/* virtio common configuration layout (virtio 1.0, 4.1.4.3) */
#define VC_DFSELECT   0x00
#define VC_DF         0x04
#define VC_GFSELECT   0x08
#define VC_GF         0x0c
#define VC_MSIX       0x10
#define VC_NUMQ       0x12
#define VC_STATUS     0x14
#define VC_QSELECT    0x16
#define VC_QSIZE      0x18
#define VC_QMSIX      0x1a
#define VC_QENABLE    0x1c
#define VC_QNOTIFYOFF 0x1e
#define VC_QDESC      0x20
#define VC_QAVAIL     0x28
#define VC_QUSED      0x30

#define POLL_LIMIT 100000000UL

struct vq_desc { u64 addr; u32 len; u16 flags; u16 next; };  /* little-endian */

/* One page per ring part, so each maps with one PTE. */
static volatile struct vq_desc vq_desc[VQ_MAX] ALIGNED(4096);
static volatile u16 vq_avail[2048] ALIGNED(4096);             /* flags, idx, ring[], used_event */
static volatile u32 vq_used[1024] ALIGNED(4096);              /* flags|idx, {id, len}[] */

static void check(struct virtio_dev *v, int cc, const char *what)
{
    if (cc || pgm_code)
        fail(v->tag, what);
}

u64 virtio_read(struct virtio_dev *v, u8 bar, u64 off, int size)
{
    u64 req = ZREQ(v->z.fh, bar, size), val;
    check(v, pcilg(&val, &req, off), "PCILG to a virtio register failed");
    switch (size) {
    case 2: return bswap16((u16)val);
    case 4: return bswap32((u32)val);
    case 8: return bswap64(val);
    default: return val;
    }
}

void virtio_write(struct virtio_dev *v, u8 bar, u64 off, int size, u64 value)
{
    u64 req = ZREQ(v->z.fh, bar, size);
    switch (size) {
    case 2: value = bswap16((u16)value); break;
    case 4: value = bswap32((u32)value); break;
    case 8: value = bswap64(value); break;
    default: break;
    }
    check(v, pcistg(value, &req, off), "PCISTG to a virtio register failed");
}

u32 pci_cfg_read32(struct virtio_dev *v, u32 off)
{
    return (u32)virtio_read(v, PCIAS_CFG, off, 4);
}

void pci_cfg_write16(struct virtio_dev *v, u32 off, u16 value)
{
    virtio_write(v, PCIAS_CFG, off, 2, value);
}

static inline u64 common_read(struct virtio_dev *v, u32 off, int size)
{
    return virtio_read(v, v->common_bar, v->common_off + off, size);
}

static inline void common_write(struct virtio_dev *v, u32 off, int size, u64 value)
{
    virtio_write(v, v->common_bar, v->common_off + off, size, value);
}

static void print_cap(const char *name, u8 bar, u32 off)
{
    putc_(' ');
    puts_(name);
    putc_('=');
    hex(bar, 1);
    putc_(':');
    hex(off, 4);
}

void virtio_open(struct virtio_dev *v, const char *tag, u16 modern, u16 transitional)
{
    mset(v, 0, sizeof *v);
    v->tag = tag;
    v->common_bar = v->notify_bar = v->isr_bar = v->device_bar = 0xff;
    zpci_find_enable(tag, VIRTIO_VENDOR, modern, transitional, &v->z);
    puts_("I fn vendor="); hex(v->z.fn.vendor, 4);
    puts_(" device="); hex(v->z.fn.device, 4);
    puts_(" fid="); hex(v->z.fn.fid, 8);
    puts_(" fh="); hex(v->z.fh, 8);
    puts_(" maxstbl="); hex(v->z.grp.maxstbl, 4);
    putc_('\n');

    /* memory space + bus master (QEMU drops DRIVER_OK without bus master) */
    pci_cfg_write16(v, 0x04, 0x0006);

    if (!((pci_cfg_read32(v, 0x04) >> 16) & 0x10))
        fail(tag, "no capability list");
    u32 ptr = pci_cfg_read32(v, 0x34) & 0xfc;
    for (int guard = 0; ptr && guard < 48; guard++) {
        u32 w0 = pci_cfg_read32(v, ptr);           /* vndr, next, len, cfg_type */
        u8 id = w0 & 0xff, next = (w0 >> 8) & 0xfc, type = (w0 >> 24) & 0xff;
        if (id == 0x09) {                          /* vendor specific: virtio */
            u8 bar = pci_cfg_read32(v, ptr + 4) & 0xff;
            u32 off = pci_cfg_read32(v, ptr + 8);
            switch (type) {
            case 1: v->common_bar = bar; v->common_off = off; break;
            case 2:
                v->notify_bar = bar; v->notify_off = off;
                v->notify_mult = pci_cfg_read32(v, ptr + 16);
                break;
            case 3: v->isr_bar = bar; v->isr_off = off; break;
            case 4: v->device_bar = bar; v->device_off = off; break;
            default: break;
            }
        }
        ptr = next;
    }
    if (v->common_bar > 5 || v->notify_bar > 5)
        fail(tag, "virtio common/notify capability missing");
    puts_("I caps");
    print_cap("common", v->common_bar, v->common_off);
    print_cap("notify", v->notify_bar, v->notify_off);
    puts_(" mult="); hex(v->notify_mult, 4);
    if (v->isr_bar <= 5)
        print_cap("isr", v->isr_bar, v->isr_off);
    if (v->device_bar <= 5)
        print_cap("device", v->device_bar, v->device_off);
    putc_('\n');
}

void virtio_negotiate(struct virtio_dev *v, u64 extra)
{
    common_write(v, VC_STATUS, 1, 0);                  /* reset */
    for (u64 i = 0; common_read(v, VC_STATUS, 1) != 0; i++)
        if (i > 1000)
            fail(v->tag, "device does not reset");
    common_write(v, VC_STATUS, 1, VIRTIO_STATUS_ACK);
    common_write(v, VC_STATUS, 1, VIRTIO_STATUS_ACK | VIRTIO_STATUS_DRIVER);

    common_write(v, VC_DFSELECT, 4, 0);
    u64 lo = common_read(v, VC_DF, 4);
    common_write(v, VC_DFSELECT, 4, 1);
    u64 hi = common_read(v, VC_DF, 4);
    v->dev_features = hi << 32 | lo;
    if (!(v->dev_features & (1UL << VIRTIO_F_VERSION_1)))
        fail(v->tag, "device does not offer VERSION_1");
    u64 want = (1UL << VIRTIO_F_VERSION_1) | (1UL << VIRTIO_F_ACCESS_PLATFORM) | extra;
    v->drv_features = v->dev_features & want;
    v->platform = (v->drv_features >> VIRTIO_F_ACCESS_PLATFORM) & 1;
    common_write(v, VC_GFSELECT, 4, 0);
    common_write(v, VC_GF, 4, v->drv_features & 0xffffffffUL);
    common_write(v, VC_GFSELECT, 4, 1);
    common_write(v, VC_GF, 4, v->drv_features >> 32);
    common_write(v, VC_STATUS, 1,
                 VIRTIO_STATUS_ACK | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
    if (!(common_read(v, VC_STATUS, 1) & VIRTIO_STATUS_FEATURES_OK))
        fail(v->tag, "FEATURES_OK not accepted");
    puts_("I features device="); hex(v->dev_features, 16);
    puts_(" driver="); hex(v->drv_features, 16);
    puts_(v->platform ? " dma=iommu\n" : " dma=physical\n");
}

void zpci_refresh(struct virtio_dev *v, u64 iova, u64 len)
{
    u64 r1 = ZREQ(v->z.fh, 0, 0);
    check(v, rpcit(&r1, iova, len), "RPCIT failed");
}

void virtio_dma_setup(struct virtio_dev *v)
{
    if (!v->platform)
        return;
    u64 base = v->z.info.sdma, r1;
    dma_init(base);
    check(v, zpci_reg_ioat(v->z.fh, base, base + DMA_WINDOW_SIZE - 1, &r1),
          "MPCIFC REG IOAT failed");
    dma_map(base + 0x0000, (const void *)vq_desc, 1);    /* device only reads descriptors */
    dma_map(base + 0x1000, (const void *)vq_avail, 1);   /* ... and the avail ring */
    dma_map(base + 0x2000, (const void *)vq_used, 0);
    zpci_refresh(v, base, 0x3000);
}

void virtio_setup_queue0(struct virtio_dev *v)
{
    common_write(v, VC_QSELECT, 2, 0);
    u16 max = (u16)common_read(v, VC_QSIZE, 2);
    if (!max)
        fail(v->tag, "queue 0 does not exist");
    v->qsize = max > VQ_MAX ? VQ_MAX : max;
    common_write(v, VC_QSIZE, 2, v->qsize);
    common_write(v, VC_QMSIX, 2, 0xffff);               /* no MSI-X vector: we poll */
    u64 base = v->z.info.sdma;
    u64 d = virtio_addr(v, (const void *)vq_desc, base + 0x0000);
    u64 a = virtio_addr(v, (const void *)vq_avail, base + 0x1000);
    u64 u = virtio_addr(v, (const void *)vq_used, base + 0x2000);
    common_write(v, VC_QDESC, 4, d & 0xffffffffUL);
    common_write(v, VC_QDESC + 4, 4, d >> 32);
    common_write(v, VC_QAVAIL, 4, a & 0xffffffffUL);
    common_write(v, VC_QAVAIL + 4, 4, a >> 32);
    common_write(v, VC_QUSED, 4, u & 0xffffffffUL);
    common_write(v, VC_QUSED + 4, 4, u >> 32);
    v->queue_notify_off = (u16)common_read(v, VC_QNOTIFYOFF, 2);
    v->notify_addr = v->notify_off + (u64)v->queue_notify_off * v->notify_mult;
    common_write(v, VC_QENABLE, 2, 1);
    common_write(v, VC_STATUS, 1, VIRTIO_STATUS_ACK | VIRTIO_STATUS_DRIVER |
                 VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
    u64 st = common_read(v, VC_STATUS, 1);
    if (!(st & VIRTIO_STATUS_DRIVER_OK))
        fail(v->tag, "DRIVER_OK not accepted");
    puts_("I queue0 max="); dec(max);
    puts_(" size="); dec(v->qsize);
    puts_(" notify_off="); hex(v->queue_notify_off, 4);
    puts_(" status="); hex(st, 2);
    putc_('\n');
}

u16 virtio_post(struct virtio_dev *v, u64 dev_addr, u32 len, int device_writes)
{
    u16 id = v->avail_idx % v->qsize;
    vq_desc[id].addr = bswap64(dev_addr);
    vq_desc[id].len = bswap32(len);
    vq_desc[id].flags = bswap16(device_writes ? VRING_DESC_F_WRITE : 0);
    vq_desc[id].next = 0;
    vq_avail[2 + id] = bswap16(id);          /* ring[avail_idx % qsize] == id */
    mb();
    v->avail_idx++;
    vq_avail[1] = bswap16(v->avail_idx);
    mb();
    return id;
}

void virtio_notify(struct virtio_dev *v)
{
    u64 req = ZREQ(v->z.fh, v->notify_bar, 2);
    check(v, pcistg(0, &req, v->notify_addr), "queue notify (PCISTG) failed");
    v->doorbells++;
}

u16 virtio_used_pending(struct virtio_dev *v)
{
    barrier();
    u16 idx = bswap16((u16)(vq_used[0] & 0xffff));   /* flags (hi half), idx (lo half) */
    return (u16)(idx - v->used_idx);
}

u16 virtio_wait_used(struct virtio_dev *v, u32 *len)
{
    for (u64 i = 0; !virtio_used_pending(v); i++)
        if (i > POLL_LIMIT)
            fail(v->tag, "no completion in the used ring");
    barrier();
    u16 slot = v->used_idx % v->qsize;
    u16 id = (u16)bswap32(vq_used[1 + 2 * slot]);
    *len = bswap32(vq_used[2 + 2 * slot]);
    v->used_idx++;
    return id;
}

void virtio_close(struct virtio_dev *v)
{
    common_write(v, VC_STATUS, 1, 0);
    u32 fh;
    u16 rsp;
    if (clp_set(v->z.fh, CLP_SET_DISABLE, 0, &fh, &rsp) || rsp != CLP_RSP_OK)
        fail(v->tag, "CLP SET PCI FUNCTION disable failed");
}
