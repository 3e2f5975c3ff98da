/* Workload: doorbell-heavy, storage-like I/O.  Buffers are mapped once up
 * front (one RPCIT over the whole buffer area); then DB_REQUESTS requests of
 * DB_CHUNK bytes go to a virtio-rng device with up to DB_DEPTH in flight,
 * each published in the avail ring and announced with its own PCISTG queue
 * notify (doorbell); completions are polled in the used ring in memory.
 * The instruction sequence does not depend on timing: the program always
 * waits for exactly one completion before posting the next request once the
 * queue is DB_DEPTH deep. */
#include "guest.h"
#include "console.h"
#include "virtio.h"
#include "dma.h"

#define TAG "WL-DOORBELL"
#define DB_REQUESTS 512
#define DB_CHUNK    512
#define DB_DEPTH    4
#define DB_PAGES    16

static u8 bufs[DB_PAGES][4096] ALIGNED(4096);

static inline u8 *chunk(u32 i)
{
    return bufs[0] + ((u64)i * DB_CHUNK) % sizeof bufs;
}

int main(void)
{
    struct virtio_dev v;
    u64 base = virtio_rng_start(&v, TAG);
    if (v.platform) {
        for (u32 p = 0; p < DB_PAGES; p++)
            dma_map(base + ((u64)p << 12), bufs[p], 0);
        zpci_refresh(&v, base, (u64)DB_PAGES << 12);
    }
    u32 depth = DB_DEPTH < v.qsize ? DB_DEPTH : v.qsize;

    u32 posted = 0, completed = 0;
    u64 total = 0, short_reads = 0;
    while (completed < DB_REQUESTS) {
        while (posted < DB_REQUESTS && posted - completed < depth) {
            u8 *b = chunk(posted);
            u64 iova = base + (u64)(b - bufs[0]);
            virtio_post(&v, virtio_addr(&v, b, iova), DB_CHUNK, 1);
            virtio_notify(&v);
            posted++;
        }
        u32 len;
        virtio_wait_used(&v, &len);
        completed++;
        total += len;
        if (len != DB_CHUNK)
            short_reads++;
    }
    puts_("I workload requests="); dec(DB_REQUESTS);
    puts_(" depth="); dec(depth);
    puts_(" bytes="); dec(total);
    puts_(" short="); dec(short_reads);
    puts_(" doorbells="); dec(v.doorbells);
    putc_('\n');
    if (v.platform) {
        for (u32 p = 0; p < DB_PAGES; p++)
            dma_unmap(base + ((u64)p << 12));
        zpci_refresh(&v, base, (u64)DB_PAGES << 12);
    }
    virtio_close(&v);
    done(TAG);
    return 0;
}
