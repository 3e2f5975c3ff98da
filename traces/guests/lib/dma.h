/* zPCI DMA translation tables (region-third -> segment -> page, 4 KiB pages)
 * for one window of DMA_WINDOW_PAGES pages starting at a 1 MiB-aligned IOVA
 * (QEMU 7.2 accepts only an RTTO designation with the T bit).  Entries are
 * filled with the invalid bits, never with 0 (QEMU reports an all-zero entry
 * as a translation error). */
#ifndef DMA_H
#define DMA_H
#include "guest.h"

#define DMA_PT_COUNT      4                       /* page tables = MiB of window */
#define DMA_WINDOW_PAGES  (DMA_PT_COUNT * 256)
#define DMA_WINDOW_SIZE   ((u64)DMA_WINDOW_PAGES << 12)

#define RTE_INVALID  0x20
#define STE_INVALID  0x20
#define PTE_INVALID  0x400
#define PTE_PROTECT  0x200
#define IOTA_T       0x800
#define IOTA_DT_RTTO 0x4

extern u64 dma_base;                 /* first IOVA of the window */

void dma_init(u64 base);             /* base: 1 MiB aligned, window inside one RTE */
u64 dma_iota(void);                  /* RTTO | T | DT=RTTO */
u64 *dma_pte(u64 iova);              /* the PTE slot for iova (inside the window) */
void dma_map(u64 iova, const void *phys, int readonly);
void dma_unmap(u64 iova);
/* The raw table entries, for programs that build odd cases. */
u64 *dma_rte(u64 iova);
u64 *dma_ste(u64 iova);

/* MPCIFC REG IOAT for [pba, pal] with the tables above; returns cc, *r1 out. */
int zpci_reg_ioat(u32 fh, u64 pba, u64 pal, u64 *r1);

#endif
