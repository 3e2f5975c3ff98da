/*
 * Benchmark guest of benchmarks/boot.py.  Built twice:
 *   -DMODE_ZPCI:  enables the first zPCI function, then ZPCI_LOOPS PCILG
 *                 config-space reads with a little plain code around each;
 *   -DMODE_VIRTIO: enables the first zPCI function (a virtio-pci function as
 *                 QEMU presents it) and issues what a virtio driver issues,
 *                 ZPCI_LOOPS times: PCILG of a config-space register, then
 *                 PCISTG and PCILG of an MSI-X table entry through its BAR
 *                 (the message data of a vector, read back);
 *   -DMODE_PLAIN: PLAIN_LOOPS rounds of a memory checksum, no zPCI at all.
 * Each prints one result line over the SCLP console and quiesces, so the
 * same ELF runs unchanged under qemu-system-s390x and zpci-emu boot.
 * bench_done marks the end of either loop for the hook-free
 * unicorn runs (in supervisor state unicorn runs zPCI instructions as no-ops,
 * so the zPCI loop still takes all its iterations, with no trap at all).
 * Links with traces/guests' start.S, link.ld and lib/ (see build.py).
 */
#include "clp.h"
#include "console.h"
#include "zpci.h"

static void line(const char *tag, u64 v)
{
    puts_(tag);
    hex(v, 16);
    putc_('\n');
}

void bench_done(void) __attribute__((noinline));
void bench_done(void) { asm volatile(""); }

#ifdef MODE_ZPCI
int main(void)
{
    u16 rsp;
    clp_prepare(CLP_LIST_PCI);                      /* the first function listed */
    clp_issue(&rsp);
    u32 fh = be32(clp_lpcb + 32 + 32 + 12);
    clp_set(fh, CLP_SET_ENABLE, 1, &fh, &rsp);      /* enable it, one DMA address space */
    u64 sum = 0, val, bad = 0;
    u64 req = ZREQ(fh, PCIAS_CFG, 4);
    for (u32 i = 0; i < ZPCI_LOOPS; i++) {
        if (pcilg(&val, &req, (i & 3) * 4))
            bad++;
        sum += val ^ i;
    }
    bench_done();
    line("BENCH zpci sum=", sum);
    line("BENCH zpci bad=", bad);
    return 0;
}
#elif defined(MODE_VIRTIO)
#define MSIX_BAR 1                  /* virtio-pci's exclusive MSI-X BAR */
#define MSIX_ENTRY 16               /* bytes per table entry */
#define MSIX_DATA 8                 /* message data within an entry */
#define MSIX_VECTORS 2              /* virtio-rng-pci's default vector count */

int main(void)
{
    u16 rsp;
    clp_prepare(CLP_LIST_PCI);
    clp_issue(&rsp);
    u32 fh = be32(clp_lpcb + 32 + 32 + 12);
    clp_set(fh, CLP_SET_ENABLE, 1, &fh, &rsp);
    u64 sum = 0, val, bad = 0;
    u64 cfg = ZREQ(fh, PCIAS_CFG, 4);
    u64 tab = ZREQ(fh, MSIX_BAR, 4);
    for (u32 i = 0; i < ZPCI_LOOPS; i++) {
        u64 entry = (i % MSIX_VECTORS) * MSIX_ENTRY + MSIX_DATA;
        if (pcilg(&val, &cfg, (i & 3) * 4))
            bad++;
        sum += val ^ i;
        if (pcistg(i * 0x9e3779b9u, &tab, entry))
            bad++;
        if (pcilg(&val, &tab, entry))
            bad++;
        sum += val;
    }
    bench_done();
    line("BENCH virtio sum=", sum);
    line("BENCH virtio bad=", bad);
    return 0;
}
#else
static u64 work[512];

int main(void)
{
    u64 sum = 0;
    for (u32 i = 0; i < 512; i++)
        work[i] = i * 2654435761u;
    for (u32 r = 0; r < PLAIN_LOOPS; r++) {
        for (u32 i = 0; i < 512; i++) {
            u64 w = work[i] + r;
            sum += w ^ (sum >> 3);
            work[i] = w;
        }
    }
    bench_done();
    line("BENCH plain sum=", sum);
    return 0;
}
#endif
