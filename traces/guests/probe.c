/* zPCI probe: every zPCI instruction and its error paths against one
 * virtio-rng-pci function (fid 1, uid 1), one "R" line per result.
 *
 * Part 1 is the reference probe of docs qemu-oracle.md, unchanged in order
 * and names (its transcript is the regression baseline); part 2 adds SIC,
 * interrupt registration, RESET BLOCK, REREG IOAT, SET MEASURE, the MIO
 * forms and more CLP / RPCIT / PCISTB / STPCIFC error paths.
 *
 * Never touches an empty BAR (QEMU 7.2 crashes on it).  The
 * PCILG_BAR1_AFTER_STB lines show QEMU's host-endian PCISTB data. */
#include "guest.h"
#include "console.h"
#include "zpci.h"
#include "clp.h"
#include "dma.h"

static u8 dmapage[4096] ALIGNED(4096);
static u8 dmapage2[4096] ALIGNED(4096);
static u8 fib[80] ALIGNED(8);
static u8 blk[256] ALIGNED(8);
static u64 aibv[4] ALIGNED(8);
static u64 aisb[1] ALIGNED(8);
static u8 fmb[64] ALIGNED(16);
static u8 iib[32] ALIGNED(8);

#define lpcb clp_lpcb
#define TAG "ZPCI-PROBE"

static void clp_cmd(const char *name, u16 cmd, u32 fh, u8 oc, u8 ndas, u32 *newfh)
{
    u8 *q = clp_prepare(cmd);
    st32(q + 16, fh);
    q[22] = oc;
    q[23] = ndas;
    u16 rsp;
    int cc = clp_issue(&rsp);
    report(name, cc, 0, rsp);
    if (newfh)
        *newfh = be32(lpcb + 32 + 16);
}

/* PCILG / PCISTG of `len` bytes at `off` in address space `as` of `fh`,
 * and its result line */
static void lg(const char *name, u32 fh, int as, int len, u64 off)
{
    u64 reg = ZREQ(fh, as, len), val;
    int cc = pcilg(&val, &reg, off);
    report(name, cc, reg, val);
}

static void stg(const char *name, u32 fh, int as, int len, u64 off, u64 data)
{
    u64 reg = ZREQ(fh, as, len);
    int cc = pcistg(data, &reg, off);
    report(name, cc, reg, data);
}

static void reset_error(const char *name, u32 efh)
{
    u64 reg = ZREQ(efh, 0, MPCIFC_RESET_ERROR);
    int cc = mpcifc(&reg, fib);
    report(name, cc, reg, 0);
}

static void fib_dump(const char *name, const char *tag, u64 r1, u32 n)
{
    mset(fib, 0xaa, sizeof fib);
    int cc = stpcifc(&r1, fib);
    report(name, cc, r1, 0);
    dump(tag, fib, n);
}

static void part2(u32 fh, u32 efh, u64 sdma, u16 maxstbl);
static void part3(u32 fh, u64 sdma);

int main(void)
{
    int cc;
    u64 reg;
    puts_(TAG " start\n");

    /* ---- CLP LIST PCI FUNCTIONS */
    clp_prepare(CLP_LIST_PCI);
    cc = clp(lpcb);
    report("CLP_LIST", cc, 0, be16(lpcb + 34));
    dump("list", lpcb + 32, 64);
    u32 nent = (be16(lpcb + 32) - 32) / 16;
    u32 fh = 0;
    for (u32 i = 0; i < nent; i++) {
        u8 *e = lpcb + 32 + 32 + 16 * i;
        puts_("F vendor="); hex(be16(e + 2), 4);
        puts_(" device="); hex(be16(e), 4);
        puts_(" config="); hex(be32(e + 4), 8);
        puts_(" fid="); hex(be32(e + 8), 8);
        puts_(" fh="); hex(be32(e + 12), 8);
        putc_('\n');
        if (!fh && (be32(e + 4) & 0x80000000u))
            fh = be32(e + 12);
    }
    if (!fh)
        fail(TAG, "no configured function");

    /* ---- PCILG on the still-disabled handle */
    lg("PCILG_DISABLED", fh, 15, 4, 0);

    /* ---- CLP QUERY PCI FUNCTION */
    u8 *q = clp_prepare(CLP_QUERY_PCI);
    st32(q + 16, fh);
    cc = clp(lpcb);
    report("CLP_QUERY_FN", cc, 0, be16(lpcb + 34));
    dump("qfn", lpcb + 32, 160);
    u8 pfgid = lpcb[32 + 19];
    u64 sdma = be64(lpcb + 32 + 64);

    /* ---- CLP QUERY PCI FUNCTION GROUP */
    q = clp_prepare(CLP_QUERY_GRP);
    q[19] = pfgid;
    cc = clp(lpcb);
    report("CLP_QUERY_GRP", cc, 0, be16(lpcb + 34));
    dump("qgrp", lpcb + 32, 64);
    u16 maxstbl = be16(lpcb + 32 + 20);

    /* ---- CLP SET PCI FUNCTION (enable, ndas=1) */
    q = clp_prepare(CLP_SET_PCI);
    st32(q + 16, fh);
    q[22] = CLP_SET_ENABLE;
    q[23] = 1;
    cc = clp(lpcb);
    report("CLP_SET_ENABLE", cc, 0, be16(lpcb + 34));
    dump("set", lpcb + 32, 32);
    u32 efh = be32(lpcb + 32 + 16);

    /* ---- PCILG config space (PCIAS 15) */
    lg("PCILG_CFG_0_L4", efh, 15, 4, 0);
    lg("PCILG_CFG_0_L2", efh, 15, 2, 0);
    lg("PCILG_CFG_2_L2", efh, 15, 2, 2);
    lg("PCILG_CFG_BAR0", efh, 15, 4, 0x10);
    lg("PCILG_CFG_L3", efh, 15, 3, 0);
    lg("PCILG_AS7", efh, 7, 4, 0);
    lg("PCILG_BADFH", efh ^ 1, 15, 4, 0);

    /* ---- PCISTG config space: command register (offset 4, len 2) */
    stg("PCISTG_CFG_CMD", efh, 15, 2, 4, 0x0600);
    lg("PCILG_CFG_CMD", efh, 15, 2, 4);

    /* ---- BAR4 (virtio modern: common cfg @0, isr @0x1000, device @0x2000, notify @0x3000) */
    stg("PCISTG_BAR4_DFSEL1", efh, 4, 4, 0, 1);
    lg("PCILG_BAR4_DFSEL", efh, 4, 4, 0);
    lg("PCILG_BAR4_DF_HI", efh, 4, 4, 4);
    stg("PCISTG_BAR4_DFSEL0", efh, 4, 4, 0, 0);
    lg("PCILG_BAR4_0_L8", efh, 4, 8, 0);
    lg("PCILG_BAR4_NUMQ", efh, 4, 2, 0x12);
    lg("PCILG_BAR4_STATUS", efh, 4, 1, 0x14);
    lg("PCILG_BAR4_XDW", efh, 4, 8, 4);
    lg("PCILG_BAR4_LEN0", efh, 4, 0, 0);
    lg("PCILG_BAR4_OOR", efh, 4, 4, 0x4000);
    lg("PCILG_BAR4_UNAL", efh, 4, 4, 2);

    /* ---- BAR1 (MSI-X table): PCISTG/PCILG round trip */
    stg("PCISTG_BAR1_L8", efh, 1, 8, 0, 0x0123456789abcdefUL);
    lg("PCILG_BAR1_L8", efh, 1, 8, 0);
    lg("PCILG_BAR1_L4", efh, 1, 4, 0);
    lg("PCILG_BAR1_L2", efh, 1, 2, 0);

    /* ---- PCISTB to BAR1 (32 bytes = 2 MSI-X entries), read back */
    for (int i = 0; i < 256; i++)
        blk[i] = (u8)i;
    reg = ZREQ(efh, 1, 32); cc = pcistb(&reg, 0, blk); report("PCISTB_BAR1_32", cc, reg, 0);
    for (u64 off = 0; off < 0x20; off += 8) {
        lg("PCILG_BAR1_AFTER_STB", efh, 1, 8, off);
    }
    reg = ZREQ(efh, 1, 8);   cc = pcistb(&reg, 0x10, blk); report("PCISTB_BAR1_LEN8", cc, reg, 0);
    reg = ZREQ(efh, 1, 136); cc = pcistb(&reg, 0x10, blk); report("PCISTB_BAR1_LEN136", cc, reg, 0);
    reg = ZREQ(efh, 15, 16); cc = pcistb(&reg, 0, blk);    report("PCISTB_CFG", cc, reg, 0);

    /* ---- STPCIFC before IOAT */
    fib_dump("STPCIFC_0", "fib0", ZREQ(efh, 0, 0), 64);

    /* ---- I/O translation tables: iova sdma -> dmapage, the rest invalid */
    dma_init(sdma);
    u64 iova = sdma;
    dma_map(iova, dmapage, 0);

    /* ---- MPCIFC register IOAT (oc 4), pba..pal = 1 MiB */
    mset(fib, 0, sizeof fib);
    st64(fib + 16, iova);
    st64(fib + 24, iova + 0xfffff);
    st64(fib + 32, dma_iota());
    reg = ZREQ(efh, 0, MPCIFC_REG_IOAT); cc = mpcifc(&reg, fib); report("MPCIFC_REG_IOAT", cc, reg, 0);
    reg = ZREQ(efh, 0, MPCIFC_REG_IOAT); cc = mpcifc(&reg, fib); report("MPCIFC_REG_IOAT_AGAIN", cc, reg, 0);
    fib_dump("STPCIFC_1", "fib1", ZREQ(efh, 0, 0), 64);

    /* ---- RPCIT */
    reg = ZREQ(efh, 0, 0); cc = rpcit(&reg, iova, 0x1000);          report("RPCIT_MAP", cc, reg, 0);
    reg = ZREQ(efh, 0, 0); cc = rpcit(&reg, iova + 0x1000, 0x1000); report("RPCIT_INVALID_PTE", cc, reg, 0);
    reg = ZREQ(efh, 0, 0); cc = rpcit(&reg, 0x1000, 0x1000);        report("RPCIT_OOR", cc, reg, 0);
    fib_dump("STPCIFC_2", "fib2", ZREQ(efh, 0, 0), 16);
    lg("PCILG_IN_ERROR", efh, 15, 4, 0);
    reset_error("MPCIFC_RESET_ERR", efh);
    lg("PCILG_AFTER_RESET", efh, 15, 4, 0);

    /* ---- dereg IOAT, bad oc */
    reg = ZREQ(efh, 0, MPCIFC_DEREG_IOAT); cc = mpcifc(&reg, fib); report("MPCIFC_DEREG_IOAT", cc, reg, 0);
    reg = ZREQ(efh, 0, MPCIFC_DEREG_IOAT); cc = mpcifc(&reg, fib); report("MPCIFC_DEREG_AGAIN", cc, reg, 0);
    reg = ZREQ(efh, 0, 0x55);              cc = mpcifc(&reg, fib); report("MPCIFC_BAD_OC", cc, reg, 0);

    /* ---- CLP SET PCI FUNCTION (disable) */
    clp_cmd("CLP_SET_DISABLE", CLP_SET_PCI, efh, CLP_SET_DISABLE, 0, 0);
    lg("PCILG_AFTER_DISABLE", efh, 15, 4, 0);

    /* ---- CLP with bad request length */
    mset(lpcb, 0, sizeof lpcb);
    st16(lpcb + 0, 40); st16(lpcb + 2, CLP_LIST_PCI); st16(lpcb + 40, 4096 - 40);
    cc = clp(lpcb);
    report("CLP_BADLEN", cc, 0, be16(lpcb + 42));

    /* ---- edge cases (re-enable first) */
    clp_cmd("CLP_SET_ENABLE2", CLP_SET_PCI, fh, CLP_SET_ENABLE, 1, &efh);
    {   /* PCILG with odd R2 (R2=3): specification exception expected */
        u64 d = 0;
        register u64 r3 asm("3") = ZREQ(efh, 15, 4);
        register u64 r4 asm("4") = 0;
        pgm_code = 0;
        asm volatile(".insn rre,0xb9d20000,%[d],3\n\tipm %[cc]\n\tsrl %[cc],28"
                     : [cc] "=d"(cc), [d] "+d"(d), "+d"(r3), "+d"(r4) :: "cc", "memory");
        report("PCILG_ODD_R2", cc, r3, d);
    }
    clp_prepare(CLP_LIST_PCI); st16(lpcb + 32, 4096 - 40);   /* response length not 32+16n */
    cc = clp(lpcb); report("CLP_LIST_BADRSPLEN", cc, 0, be16(lpcb + 34));
    clp_prepare(CLP_LIST_PCI); st16(lpcb + 32, 40);          /* response length 40 (< 48) */
    cc = clp(lpcb); report("CLP_LIST_SHORTRSP", cc, 0, be16(lpcb + 34));
    clp_prepare(0x0077);                                     /* unknown command */
    cc = clp(lpcb); report("CLP_BADCMD", cc, 0, be16(lpcb + 34));
    mset(lpcb, 0, sizeof lpcb);                              /* request length 8 (< 16) */
    st16(lpcb + 0, 8); st16(lpcb + 2, CLP_LIST_PCI); st16(lpcb + 8, 4096 - 8);
    cc = clp(lpcb); report("CLP_REQLEN8", cc, 0, be16(lpcb + 10));
    reg = ZREQ(efh, 0, MPCIFC_REG_IOAT); cc = mpcifc(&reg, fib + 4); report("MPCIFC_UNALIGNED_FIB", cc, reg, 0);
    reg = ZREQ(efh, 1, 0);               cc = stpcifc(&reg, fib);    report("STPCIFC_DMAAS1", cc, reg, 0);
    reg = ZREQ(efh, 1, MPCIFC_REG_IOAT); cc = mpcifc(&reg, fib);     report("MPCIFC_REGIOAT_DMAAS1", cc, reg, 0);
    reg = ZREQ(efh, 0, 0); cc = rpcit(&reg, sdma, 0x1000); report("RPCIT_NO_IOAT", cc, reg, 0);
    reg = ZREQ(efh, 1, 8); cc = pcistb(&reg, 4, blk);      report("PCISTB_UNALIGNED_OFF", cc, reg, 0);
    reg = ZREQ(efh & ~FH_ENABLED, 1, 16); cc = pcistb(&reg, 0, blk); report("PCISTB_DISABLED_FH", cc, reg, 0);

    part2(fh, efh, sdma, maxstbl);

    done(TAG);
    return 0;
}

/* ------------------------------------------------------------------ part 2
 * State on entry: function enabled as efh, in the ERROR state (RPCIT without
 * an IOAT above), no IOAT registered. */
static void part2(u32 fh, u32 efh, u64 sdma, u16 maxstbl)
{
    int cc;
    u64 reg, val;

    /* ---- RESET BLOCK (oc 9): ERROR -> BLOCKED, otherwise sequence error */
    reg = ZREQ(efh, 0, MPCIFC_RESET_BLOCK); cc = mpcifc(&reg, fib); report("MPCIFC_RESET_BLOCK", cc, reg, 0);
    fib_dump("STPCIFC_BLOCKED", "fibblk", ZREQ(efh, 0, 0), 16);
    lg("PCILG_BLOCKED", efh, 15, 4, 0);
    reg = ZREQ(efh, 0, MPCIFC_RESET_BLOCK); cc = mpcifc(&reg, fib); report("MPCIFC_RESET_BLOCK_AGAIN", cc, reg, 0);
    reset_error("MPCIFC_RESET_ERR_BLOCKED", efh);
    reset_error("MPCIFC_RESET_ERR_ENABLED", efh);
    lg("PCILG_ENABLED_AGAIN", efh, 15, 4, 0);

    /* ---- PCISTB length / alignment rules (function enabled) */
    reg = ZREQ(efh, 1, 8);       cc = pcistb(&reg, 4, blk);      report("PCISTB_UNALIGNED_OFF_EN", cc, reg, 0);
    /* the MSI-X table of a 2-vector device is 32 bytes: maxstbl runs past it */
    reg = ZREQ(efh, 1, maxstbl); cc = pcistb(&reg, 0, blk);      report("PCISTB_BAR1_MAXSTBL_PAST_TABLE", cc, reg, 0);
    reg = ZREQ(efh, 1, maxstbl + 8); cc = pcistb(&reg, 0, blk);  report("PCISTB_BAR1_OVER_MAXSTBL", cc, reg, 0);
    reg = ZREQ(efh, 1, 24);      cc = pcistb(&reg, 0, blk + 8);  report("PCISTB_BAR1_24", cc, reg, 0);
    reg = ZREQ(efh, 1, 16);      cc = pcistb(&reg, 0x10, blk + 64); report("PCISTB_BAR1_16", cc, reg, 0);
    reg = ZREQ(efh, 1, 24);      cc = pcistb(&reg, 0x10, blk);   report("PCISTB_BAR1_PAST_TABLE", cc, reg, 0);
    reg = ZREQ(efh, 1, 20);      cc = pcistb(&reg, 0, blk);      report("PCISTB_LEN20", cc, reg, 0);
    reg = ZREQ(efh, 1, 16);      cc = pcistb(&reg, 0, blk + 4);  report("PCISTB_UNALIGNED_DATA", cc, reg, 0);
    reg = ZREQ(efh, 1, 16);      cc = pcistb(&reg, 0xff8, blk);  report("PCISTB_CROSS_4K", cc, reg, 0);
    reg = ZREQ(efh, 7, 16);      cc = pcistb(&reg, 0, blk);      report("PCISTB_AS7", cc, reg, 0);
    reg = ZREQ(efh ^ 1, 1, 16);  cc = pcistb(&reg, 0, blk);      report("PCISTB_BADFH", cc, reg, 0);

    /* ---- PCILG/PCISTG remaining cases */
    lg("PCILG_CFG_INTPIN_L1", efh, 15, 1, 0x3d);
    lg("PCILG_CFG_XWORD", efh, 15, 4, 2);
    lg("PCILG_CFG_L8", efh, 15, 8, 0);
    stg("PCISTG_BAR4_OOR", efh, 4, 2, 0x4000, 0);
    stg("PCISTG_AS7", efh, 7, 4, 0, 0);
    stg("PCISTG_DISABLED_FH", efh & ~FH_ENABLED, 15, 4, 0, 0);

    /* ---- SIC: modes 0 and 1 accepted (cc left alone), others operand exc. */
    cc = sic(0, 3UL << 27, iib, 2); report("SIC_MODE0", cc, 0, 0);
    cc = sic(1, 3UL << 27, iib, 1); report("SIC_MODE1", cc, 0, 0);
    cc = sic(2, 3UL << 27, iib, 2); report("SIC_MODE2", cc, 0, 0);
    cc = sic(4, 3UL << 27, iib, 2); report("SIC_MODE4", cc, 0, 0);
    cc = sic(0x10, 0, iib, 3);      report("SIC_MODE16", cc, 0, 0);

    /* ---- interrupt registration (oc 2 / 3) */
    mset(fib, 0, sizeof fib);
    /* isc 3, noi 4, aibvo 0, sum 1, aisbo 5 */
    st32(fib + 40, (3u << 28) | (4u << 16) | (0u << 8) | (1u << 7) | 5u);
    st64(fib + 48, (u64)aibv);
    st64(fib + 56, (u64)aisb);
    reg = ZREQ(efh, 0, MPCIFC_REG_INT); cc = mpcifc(&reg, fib); report("MPCIFC_REG_INT", cc, reg, 0);
    reg = ZREQ(efh, 0, MPCIFC_REG_INT); cc = mpcifc(&reg, fib); report("MPCIFC_REG_INT_AGAIN", cc, reg, 0);
    mset(fib, 0xaa, sizeof fib);
    reg = ZREQ(efh, 0, 0); cc = stpcifc(&reg, fib);
    report("STPCIFC_INT", cc, reg, 0);
    /* aibv/aisb are addresses of this image: print whether they round-trip */
    puts_("I fc="); hex(fib[8], 2);
    puts_(" intword="); hex(be32(fib + 40), 8);
    puts_(" aibv="); puts_(be64(fib + 48) == (u64)aibv ? "same" : "DIFFERENT");
    puts_(" aisb="); puts_(be64(fib + 56) == (u64)aisb ? "same" : "DIFFERENT");
    putc_('\n');
    reg = ZREQ(efh, 0, MPCIFC_DEREG_INT); cc = mpcifc(&reg, fib); report("MPCIFC_DEREG_INT", cc, reg, 0);
    reg = ZREQ(efh, 0, MPCIFC_DEREG_INT); cc = mpcifc(&reg, fib); report("MPCIFC_DEREG_INT_AGAIN", cc, reg, 0);
    fib_dump("STPCIFC_NOINT", "fibnoint", ZREQ(efh, 0, 0), 64);

    /* ---- REREG IOAT (oc 6) */
    dma_init(sdma);
    dma_map(sdma, dmapage, 0);
    mset(fib, 0, sizeof fib);
    st64(fib + 16, sdma);
    st64(fib + 24, sdma + DMA_WINDOW_SIZE - 1);
    st64(fib + 32, dma_iota());
    reg = ZREQ(efh, 0, MPCIFC_REREG_IOAT); cc = mpcifc(&reg, fib); report("MPCIFC_REREG_NONE", cc, reg, 0);
    reg = ZREQ(efh, 0, MPCIFC_REG_IOAT);   cc = mpcifc(&reg, fib); report("MPCIFC_REG_IOAT2", cc, reg, 0);
    st64(fib + 24, sdma + 0x7ffff);
    reg = ZREQ(efh, 0, MPCIFC_REREG_IOAT); cc = mpcifc(&reg, fib); report("MPCIFC_REREG_IOAT", cc, reg, 0);
    reg = ZREQ(efh, 1, MPCIFC_REREG_IOAT); cc = mpcifc(&reg, fib); report("MPCIFC_REREG_DMAAS1", cc, reg, 0);
    reg = ZREQ(efh, 1, MPCIFC_DEREG_IOAT); cc = mpcifc(&reg, fib); report("MPCIFC_DEREG_DMAAS1", cc, reg, 0);
    mset(fib, 0xaa, sizeof fib);
    reg = ZREQ(efh, 0, 0); cc = stpcifc(&reg, fib); report("STPCIFC_REREG", cc, reg, 0);
    puts_("I fc="); hex(fib[8], 2);
    puts_(" pba="); hex(be64(fib + 16), 16);
    puts_(" pal="); hex(be64(fib + 24), 16);
    puts_(" iota="); puts_(be64(fib + 32) == dma_iota() ? "same" : "DIFFERENT");
    putc_('\n');

    /* ---- RPCIT: protected PTE, ranges, zero entry, odd R2 */
    dma_map(sdma + 0x1000, dmapage2, 1);
    reg = ZREQ(efh, 0, 0); cc = rpcit(&reg, sdma, 0x2000);           report("RPCIT_MAP_PROTECTED", cc, reg, 0);
    reg = ZREQ(efh, 0, 0); cc = rpcit(&reg, sdma + 0x7f000, 0x2000); report("RPCIT_PAST_PAL", cc, reg, 0);
    reg = ZREQ(efh, 0, 0); cc = rpcit(&reg, sdma + 0x1000, 0);       report("RPCIT_LEN0", cc, reg, 0);
    reg = ZREQ(efh, 0, 0); cc = rpcit(&reg, sdma + 0x80000, 0x1000); report("RPCIT_ABOVE_PAL", cc, reg, 0);
    fib_dump("STPCIFC_RPCIT_ERR", "fibrerr", ZREQ(efh, 0, 0), 16);
    reg = ZREQ(efh, 0, 0); cc = rpcit(&reg, sdma, 0x1000);           report("RPCIT_IN_ERROR", cc, reg, 0);
    reset_error("MPCIFC_RESET_ERR_RPCIT", efh);
    reg = ZREQ(efh, 0, 0); cc = rpcit(&reg, sdma - 0x2000, 0x1000);  report("RPCIT_BELOW_PBA", cc, reg, 0);
    reset_error("MPCIFC_RESET_ERR_RPCIT2", efh);
    *dma_pte(sdma + 0x3000) = 0;                  /* all-zero entry (not the invalid bit) */
    reg = ZREQ(efh, 0, 0); cc = rpcit(&reg, sdma + 0x3000, 0x1000);  report("RPCIT_ZERO_PTE", cc, reg, 0);
    reset_error("MPCIFC_RESET_ERR_RPCIT3", efh);
    dma_unmap(sdma + 0x3000);
    u64 ste = *dma_ste(sdma);
    *dma_ste(sdma) = ste | 0x4;                   /* valid segment entry with a region type */
    reg = ZREQ(efh, 0, 0); cc = rpcit(&reg, sdma, 0x1000);           report("RPCIT_BAD_STE_TYPE", cc, reg, 0);
    reset_error("MPCIFC_RESET_ERR_RPCIT4", efh);
    *dma_ste(sdma) = ste;
    u64 rte = *dma_rte(sdma);
    *dma_rte(sdma) = rte & ~0x3UL;                /* region-third entry with table length 0 */
    reg = ZREQ(efh, 0, 0); cc = rpcit(&reg, sdma, 0x1000);           report("RPCIT_BAD_RTE_TL", cc, reg, 0);
    reset_error("MPCIFC_RESET_ERR_RPCIT5", efh);
    *dma_rte(sdma) = rte;
    reg = ZREQ(efh, 0, 0); cc = rpcit(&reg, sdma, 0x1000);           report("RPCIT_AFTER_RESET", cc, reg, 0);
    {   /* RPCIT with odd R2 (R2=3): specification exception expected */
        register u64 r1 asm("1") = ZREQ(efh, 0, 0);
        register u64 r3 asm("3") = sdma;
        register u64 r4 asm("4") = 0x1000;
        pgm_code = 0;
        asm volatile(".insn rre,0xb9d30000,1,3\n\tipm %[cc]\n\tsrl %[cc],28"
                     : [cc] "=d"(cc), "+d"(r1), "+d"(r3), "+d"(r4) :: "cc", "memory");
        report("RPCIT_ODD_R2", cc, r1, 0);
    }
    reg = ZREQ(efh ^ 1, 0, 0); cc = rpcit(&reg, sdma, 0x1000);       report("RPCIT_BADFH", cc, reg, 0);

    /* ---- SET MEASURE (oc 10): key bits in the FMB address -> cc 1 */
    mset(fib, 0, sizeof fib);
    st64(fib + 64, (u64)fmb | 0x5);
    reg = ZREQ(efh, 0, MPCIFC_SET_MEASURE); cc = mpcifc(&reg, fib); report("MPCIFC_SET_MEASURE_KEY", cc, reg, 0);
    st64(fib + 64, (u64)fmb);
    reg = ZREQ(efh, 0, MPCIFC_SET_MEASURE); cc = mpcifc(&reg, fib); report("MPCIFC_SET_MEASURE", cc, reg, 0);
    st64(fib + 64, 0);
    reg = ZREQ(efh, 0, MPCIFC_SET_MEASURE); cc = mpcifc(&reg, fib); report("MPCIFC_SET_MEASURE_STOP", cc, reg, 0);
    reg = ZREQ(efh, 0, MPCIFC_DEREG_IOAT);  cc = mpcifc(&reg, fib); report("MPCIFC_DEREG_IOAT2", cc, reg, 0);
    fib[0] = 1;                                   /* FIB format 1 */
    reg = ZREQ(efh, 0, MPCIFC_SET_MEASURE); cc = mpcifc(&reg, fib); report("MPCIFC_FMT1", cc, reg, 0);
    fib[0] = 0;
    reg = ZREQ(efh ^ 1, 0, MPCIFC_SET_MEASURE); cc = mpcifc(&reg, fib); report("MPCIFC_BADFH", cc, reg, 0);

    /* ---- MIO forms: not in QEMU 7.2 */
    u64 len = 8;
    cc = pcilgi(&val, 0, &len);      report("PCILGI", cc, len, val);
    len = 8;
    cc = pcistgi(0, 0, &len);        report("PCISTGI", cc, len, 0);
    cc = pciwb();                    report("PCIWB", cc, 0, 0);
    len = 16;
    cc = pcistbi(&len, 0, blk);      report("PCISTBI", cc, len, 0);

    /* ---- CLP error responses */
    u8 *q = clp_prepare(CLP_QUERY_GRP);
    q[19] = 0x42;
    u16 rsp;
    cc = clp_issue(&rsp); report("CLP_QUERY_GRP_UNKNOWN", cc, 0, rsp);
    clp_cmd("CLP_QUERY_FN_BADFH", CLP_QUERY_PCI, fh ^ 0x7, 0, 0, 0);
    clp_cmd("CLP_SET_ENABLE_ALREADY", CLP_SET_PCI, efh, CLP_SET_ENABLE, 1, 0);
    clp_cmd("CLP_SET_ENABLE_OLDFH", CLP_SET_PCI, fh, CLP_SET_ENABLE, 1, 0);
    clp_cmd("CLP_SET_BADOC", CLP_SET_PCI, efh, 2, 0, 0);
    clp_cmd("CLP_SET_DISABLE2", CLP_SET_PCI, efh, CLP_SET_DISABLE, 0, &fh);
    clp_cmd("CLP_SET_DISABLE_AGAIN", CLP_SET_PCI, fh, CLP_SET_DISABLE, 0, 0);
    clp_cmd("CLP_SET_DISABLE_OLDFH", CLP_SET_PCI, efh, CLP_SET_DISABLE, 0, 0);
    puts_("I fh_after_disable="); hex(fh, 8); putc_('\n');

    /* ---- CLP block checks: format, reserved fields, resume token, lengths */
    clp_prepare(CLP_LIST_PCI); st32(clp_lpcb + 4, 0x10000000);     /* request fmt 1 */
    cc = clp_issue(&rsp); report("CLP_LIST_FMT1", cc, 0, rsp);
    clp_prepare(CLP_LIST_PCI); st64(clp_lpcb + 8, 1);              /* reserved != 0 */
    cc = clp_issue(&rsp); report("CLP_LIST_RESERVED", cc, 0, rsp);
    clp_prepare(CLP_LIST_PCI); st64(clp_lpcb + 16, 0x1234);        /* resume token */
    cc = clp_issue(&rsp); report("CLP_LIST_RESUME_BAD", cc, 0, rsp);
    clp_prepare(CLP_LIST_PCI); st64(clp_lpcb + 16, 0);
    cc = clp_issue(&rsp); report("CLP_LIST_AGAIN", cc, 0, rsp);
    puts_("I list_resume_token="); hex(be64(clp_lpcb + 32 + 16), 16); putc_('\n');
    q = clp_prepare(CLP_QUERY_PCI); st32(q + 16, fh); st32(q + 4, 0x10000000);
    cc = clp_issue(&rsp); report("CLP_QUERY_FN_FMT1", cc, 0, rsp);
    q = clp_prepare(CLP_QUERY_GRP); q[19] = 0xff; st32(q + 4, 0x10000000);
    cc = clp_issue(&rsp); report("CLP_QUERY_GRP_FMT1", cc, 0, rsp);
    clp_prepare(CLP_LIST_PCI);                                     /* request length 36 */
    st16(clp_lpcb, 36);
    cc = clp(clp_lpcb); report("CLP_REQLEN36", cc, 0, be16(clp_lpcb + 36 + 2));
    clp_prepare(CLP_LIST_PCI); st16(clp_lpcb + 32, 8192 - 24);     /* req + rsp > 8192 */
    cc = clp(clp_lpcb); report("CLP_RSPLEN_TOO_BIG", cc, 0, be16(clp_lpcb + 34));
    clp_prepare(CLP_LIST_PCI); st16(clp_lpcb + 32, 8192 - 32);     /* exactly 8 KiB: 32+16n */
    cc = clp(clp_lpcb); report("CLP_LIST_8K", cc, 0, be16(clp_lpcb + 34));

    /* ---- disabled function: STPCIFC, MPCIFC, RPCIT, PCISTB */
    fib_dump("STPCIFC_DISABLED", "fibdis", ZREQ(fh, 0, 0), 64);
    reg = ZREQ(efh, 0, 0); cc = stpcifc(&reg, fib);           report("STPCIFC_DISABLED_EFH", cc, reg, 0);
    reg = ZREQ(efh, 0, MPCIFC_REG_IOAT); cc = mpcifc(&reg, fib); report("MPCIFC_DISABLED", cc, reg, 0);
    reg = ZREQ(fh, 0, 0); cc = rpcit(&reg, sdma, 0x1000);     report("RPCIT_DISABLED", cc, reg, 0);
    reg = ZREQ(efh, 1, 16); cc = pcistb(&reg, 0, blk);        report("PCISTB_DISABLED", cc, reg, 0);

    /* ---- SET enable with bad ndas, then a good one */
    clp_cmd("CLP_SET_ENABLE_NDAS0", CLP_SET_PCI, fh, CLP_SET_ENABLE, 0, 0);
    clp_cmd("CLP_SET_ENABLE_NDAS2", CLP_SET_PCI, fh, CLP_SET_ENABLE, 2, 0);
    clp_cmd("CLP_SET_ENABLE3", CLP_SET_PCI, fh, CLP_SET_ENABLE, 1, &efh);
    lg("PCILG_AFTER_ENABLE3", efh, 15, 4, 0);
    clp_cmd("CLP_SET_DISABLE3", CLP_SET_PCI, efh, CLP_SET_DISABLE, 0, &fh);

    part3(fh, sdma);
}

/* ------------------------------------------------------------------ part 3
 * Problem state: the eight classic instructions are privileged (privileged-
 * operation exception before anything else is checked); the MIO forms are
 * not, and QEMU 7.2 does not know them (operation exception). */
static void part3(u32 fh, u64 sdma)
{
    u32 efh;
    u16 rsp;
    int cc;
    u64 reg, val, len;
    if (clp_set(fh, CLP_SET_ENABLE, 1, &efh, &rsp) || rsp != CLP_RSP_OK)
        fail(TAG, "enable for part 3 failed");

#define PROBLEM(name, stmt, r, v)            \
    do {                                     \
        to_problem_state();                  \
        stmt;                                \
        to_supervisor_state();               \
        report(name, cc, r, v);              \
    } while (0)

    clp_prepare(CLP_LIST_PCI);
    PROBLEM("PS_CLP", cc = clp(clp_lpcb), 0, be16(clp_lpcb + 34));
    reg = ZREQ(efh, 15, 4);
    PROBLEM("PS_PCILG", cc = pcilg(&val, &reg, 0), reg, val);
    reg = ZREQ(efh, 15, 2);
    PROBLEM("PS_PCISTG", cc = pcistg(0x0600, &reg, 4), reg, 0);
    reg = ZREQ(efh, 1, 16);
    PROBLEM("PS_PCISTB", cc = pcistb(&reg, 0, blk), reg, 0);
    reg = ZREQ(efh, 0, 0);
    PROBLEM("PS_RPCIT", cc = rpcit(&reg, sdma, 0x1000), reg, 0);
    reg = ZREQ(efh, 0, MPCIFC_RESET_ERROR);
    PROBLEM("PS_MPCIFC", cc = mpcifc(&reg, fib), reg, 0);
    reg = ZREQ(efh, 0, 0);
    PROBLEM("PS_STPCIFC", cc = stpcifc(&reg, fib), reg, 0);
    PROBLEM("PS_SIC", cc = sic(0, 3UL << 27, iib, 2), 0, 0);
    len = 8;
    PROBLEM("PS_PCILGI", cc = pcilgi(&val, 0, &len), len, val);
    len = 8;
    PROBLEM("PS_PCISTGI", cc = pcistgi(0, 0, &len), len, 0);
    PROBLEM("PS_PCIWB", cc = pciwb(), 0, 0);
    len = 16;
    PROBLEM("PS_PCISTBI", cc = pcistbi(&len, 0, blk), len, 0);
#undef PROBLEM

    lg("PCILG_BACK_IN_SUPERVISOR", efh, 15, 4, 0);
    clp_cmd("CLP_SET_DISABLE4", CLP_SET_PCI, efh, CLP_SET_DISABLE, 0, 0);
}
