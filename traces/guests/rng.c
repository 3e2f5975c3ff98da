/* virtio-rng driver over zPCI: CLP discovery, enable, virtio capabilities,
 * feature negotiation (VERSION_1, ACCESS_PLATFORM when offered), queue 0,
 * DMA translation tables + MPCIFC REG IOAT + RPCIT when the device goes
 * through the IOMMU, then RNG_REQUESTS requests of RNG_CHUNK bytes with a
 * PCISTG queue notify each, completions polled in the used ring.
 * Prints only facts that do not depend on the random data or on timing. */
#include "guest.h"
#include "console.h"
#include "virtio.h"
#include "dma.h"

#define TAG "VIRTIO-RNG"
#define RNG_REQUESTS 16
#define RNG_CHUNK    256
#define RNG_FILL     0x5a

static u8 buf[RNG_REQUESTS][RNG_CHUNK] ALIGNED(4096);   /* 4 KiB: one page */

int main(void)
{
    struct virtio_dev v;
    u64 iova = virtio_rng_start(&v, TAG);
    virtio_buffer_map(&v, iova, buf);
    mset(buf, RNG_FILL, sizeof buf);

    u64 total = 0, changed = 0, short_reads = 0, bad_ids = 0;
    for (int i = 0; i < RNG_REQUESTS; i++) {
        u16 id = virtio_post(&v, virtio_addr(&v, buf[i], iova + (u64)i * RNG_CHUNK),
                             RNG_CHUNK, 1);
        virtio_notify(&v);
        u32 len;
        if (virtio_wait_used(&v, &len) != id)
            bad_ids++;
        if (len != RNG_CHUNK)
            short_reads++;
        total += len;
        for (u32 j = 0; j < RNG_CHUNK; j++)
            if (buf[i][j] != RNG_FILL) {
                changed++;
                break;
            }
    }
    puts_("I rng requests="); dec(RNG_REQUESTS);
    puts_(" bytes="); dec(total);
    puts_(" chunks_changed="); dec(changed);
    puts_(" short="); dec(short_reads);
    puts_(" bad_ids="); dec(bad_ids);
    puts_(" doorbells="); dec(v.doorbells);
    putc_('\n');

    virtio_buffer_unmap(&v, iova);
    virtio_close(&v);
    done(TAG);
    return 0;
}
