#include "dma.h"
#include "zpci.h"

static u64 rtt[2048] ALIGNED(16384);
static u64 stt[2048] ALIGNED(16384);
static u64 pt[DMA_PT_COUNT][256] ALIGNED(4096);
static u8 fib[80] ALIGNED(8);
u64 dma_base;

void dma_init(u64 base)
{
    dma_base = base;
    for (int i = 0; i < 2048; i++) {
        rtt[i] = RTE_INVALID | 0x4 | 0x3;       /* invalid, type RTX, TL=3 */
        stt[i] = STE_INVALID;                   /* invalid, type SX */
    }
    for (int t = 0; t < DMA_PT_COUNT; t++)
        for (int i = 0; i < 256; i++)
            pt[t][i] = PTE_INVALID;
    rtt[(base >> 31) & 0x7ff] = (u64)stt | 0x4 | 0x3;   /* valid RTE -> stt */
    for (int t = 0; t < DMA_PT_COUNT; t++)
        stt[((base >> 20) + t) & 0x7ff] = (u64)pt[t];   /* valid STE, FC=0 */
}

u64 dma_iota(void)
{
    return (u64)rtt | IOTA_T | IOTA_DT_RTTO;
}

u64 *dma_rte(u64 iova) { return &rtt[(iova >> 31) & 0x7ff]; }
u64 *dma_ste(u64 iova) { return &stt[(iova >> 20) & 0x7ff]; }

u64 *dma_pte(u64 iova)
{
    u64 page = (iova - dma_base) >> 12;
    return &pt[page >> 8][page & 0xff];
}

void dma_map(u64 iova, const void *phys, int readonly)
{
    *dma_pte(iova) = ((u64)phys & ~0xfffUL) | (readonly ? PTE_PROTECT : 0);
}

void dma_unmap(u64 iova)
{
    *dma_pte(iova) = PTE_INVALID;
}

int zpci_reg_ioat(u32 fh, u64 pba, u64 pal, u64 *r1)
{
    mset(fib, 0, sizeof fib);
    st64(fib + 16, pba);
    st64(fib + 24, pal);
    st64(fib + 32, dma_iota());
    *r1 = ZREQ(fh, 0, MPCIFC_REG_IOAT);
    return mpcifc(r1, fib);
}
