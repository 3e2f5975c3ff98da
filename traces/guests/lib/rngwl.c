#include "rngwl.h"
#include "console.h"
#include "virtio.h"
#include "dma.h"

static u8 bufs[RNGWL_BUFS][4096] ALIGNED(4096);

int rng_workload(const char *tag, enum rngwl_mode mode)
{
    struct virtio_dev v;
    u64 pool = virtio_rng_start(&v, tag);
    u64 maps = 0, unmaps = 0, rpcits = 0, flushes = 0, total = 0, short_reads = 0;
    for (u32 i = 0; i < RNGWL_REQUESTS; i++) {
        u8 *buf = bufs[i % RNGWL_BUFS];
        u32 slot = i % RNGWL_POOL_PAGES;
        u64 iova = pool + ((u64)slot << 12);
        if (v.platform) {
            if (mode == RNGWL_LAZY && slot == 0 && i) {
                /* pool wrapped: flush all stale translations at once */
                zpci_refresh(&v, pool, (u64)RNGWL_POOL_PAGES << 12);
                rpcits++;
                flushes++;
            }
            dma_map(iova, buf, 0);
            zpci_refresh(&v, iova, 0x1000);
            maps++;
            rpcits++;
        }
        virtio_post(&v, virtio_addr(&v, buf, iova), RNGWL_CHUNK, 1);
        virtio_notify(&v);
        u32 len;
        virtio_wait_used(&v, &len);
        total += len;
        if (len != RNGWL_CHUNK)
            short_reads++;
        if (v.platform) {
            dma_unmap(iova);
            unmaps++;
            if (mode == RNGWL_STRICT) {
                zpci_refresh(&v, iova, 0x1000);
                rpcits++;
            }
        }
    }
    if (v.platform && mode == RNGWL_LAZY) {
        zpci_refresh(&v, pool, (u64)RNGWL_POOL_PAGES << 12);
        rpcits++;
        flushes++;
    }
    puts_("I workload mode=");
    puts_(mode == RNGWL_STRICT ? "strict" : "lazy");
    puts_(" requests="); dec(RNGWL_REQUESTS);
    puts_(" bytes="); dec(total);
    puts_(" short="); dec(short_reads);
    puts_(" maps="); dec(maps);
    puts_(" unmaps="); dec(unmaps);
    puts_(" rpcits="); dec(rpcits);
    puts_(" global_flushes="); dec(flushes);
    puts_(" doorbells="); dec(v.doorbells);
    putc_('\n');
    virtio_close(&v);
    done(tag);
    return 0;
}
