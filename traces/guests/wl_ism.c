/* Workload: ISM-like device traffic.  ISM_BLOCKS PCISTB block moves of 64 to
 * 128 bytes (length cycling in steps of 8) to BAR 1, each followed by a
 * PCILG of the block's first doubleword (the "command" read-back).
 *
 * The target is the MSI-X table of a virtio function started with enough
 * vectors (virtio-rng-pci,vectors=64: a 1 KiB table in BAR 1, which accepts
 * 8-byte accesses); MSI-X stays disabled, so the writes have no effect
 * beyond the table.  QEMU 7.2 stores PCISTB doublewords in host byte order
 * (docs qemu-oracle.md, bug 2), so a read-back counts as good when it equals
 * the stored doubleword in either byte order; both counts are printed. */
#include "guest.h"
#include "console.h"
#include "zpci.h"
#include "clp.h"

#define TAG "WL-ISM"
#define ISM_BLOCKS   400
#define ISM_BAR      1
#define ISM_AREA     1024           /* bytes of BAR 1 used: the 64-vector MSI-X table */

static u8 data[128] ALIGNED(8);

int main(void)
{
    struct zpci_dev z;
    puts_(TAG " start\n");
    zpci_find_enable(TAG, 0x1af4, 0x1044, 0x1005, &z);
    puts_("I fn fid="); hex(z.fn.fid, 8);
    puts_(" fh="); hex(z.fh, 8);
    puts_(" bar1_size_log2="); dec(z.info.bar_size[ISM_BAR]);
    puts_(" maxstbl="); dec(z.grp.maxstbl);
    putc_('\n');
    if (z.grp.maxstbl < 128)
        fail(TAG, "maxstbl below 128");

    u64 bytes = 0, same = 0, swapped = 0, bad = 0, errors = 0;
    for (u32 i = 0; i < ISM_BLOCKS; i++) {
        u32 len = 64 + 8 * (i % 9);                     /* 64 .. 128 */
        u64 off = ((u64)i * 136) % (ISM_AREA - 128) & ~7UL;
        for (u32 j = 0; j < len; j++)
            data[j] = (u8)(i * 7 + j * 13 + 1);
        u64 req = ZREQ(z.fh, ISM_BAR, len);
        if (pcistb(&req, off, data) || pgm_code) {
            errors++;
            continue;
        }
        bytes += len;
        u64 val;
        req = ZREQ(z.fh, ISM_BAR, 8);
        if (pcilg(&val, &req, off) || pgm_code) {
            errors++;
            continue;
        }
        u64 want = be64(data);
        if (val == want)
            same++;
        else if (val == bswap64(want))
            swapped++;
        else
            bad++;
    }
    puts_("I workload blocks="); dec(ISM_BLOCKS);
    puts_(" bytes="); dec(bytes);
    puts_(" readback_ok="); dec(same + swapped);
    puts_(" readback_bad="); dec(bad);
    puts_(" errors="); dec(errors);
    putc_('\n');
    u32 fh;
    u16 rsp;
    if (clp_set(z.fh, CLP_SET_DISABLE, 0, &fh, &rsp) || rsp != CLP_RSP_OK)
        fail(TAG, "CLP SET PCI FUNCTION disable failed");
    done(TAG);
    return 0;
}
