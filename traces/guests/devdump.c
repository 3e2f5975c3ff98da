/* devdump: dump everything the device models behind the zPCI functions show.
 *
 * For every configured function: the CLP QUERY BAR facts, the whole
 * configuration space (PCILG PCIAS 15, 4-byte reads), short and out-of-range
 * config accesses, the write mask of every config dword (write all ones, read,
 * write the old value back), named registers of every BAR region at their
 * natural sizes, an access matrix (every length 1..8 at every offset of a
 * doubleword) per region, register round trips, and for virtio-rng and
 * virtio-net small driver runs (reset, negotiate, one queue, notify; DMA
 * errors; bus master; MSI-X) whose deterministic results are printed.
 * For virtio-blk one request of each kind (GET_ID, IN, OUT, FLUSH, DISCARD,
 * WRITE_ZEROES, unsupported and out-of-range ones) prints its status, used
 * length and a digest of the data buffer.
 * Random data is never printed.
 *
 * Line kinds (the model's dump in tests/test_devices_dump.py produces the
 * same lines except F and S, which depend on the bus):
 *   F <n> ...            CLP LIST entry
 *   S <n> ...            zPCI function state (STPCIFC fc byte, MPCIFC cc)
 *   Q <n> ...            CLP QUERY BAR values and sizes
 *   C/X/W <n> ...        config space: dump, odd accesses, write masks
 *   B/M <n> ...          BAR registers: named, and the access matrix
 *   E <n> ...            modern driver run (virtio 1.x over BAR4)
 *   L <n> ...            legacy driver run (virtio 0.9 over BAR0, big-endian rings)
 *   I <n> ...            MSI-X delivery into the adapter-interruption indicators
 * A value token is hex of the access width, "pgmXX" for a program
 * interruption with code XX, or "ccN" for a non-zero condition code.
 */
#include "guest.h"
#include "console.h"
#include "clp.h"
#include "dma.h"
#include "zpci.h"

#define MAXFN 8

static u32 fh;          /* enabled handle of the function being dumped */
static int fnum;        /* its position in the CLP list */

static u64 bswap(u64 v, int n)
{
    u64 r = 0;
    for (int i = 0; i < n; i++) {
        r = (r << 8) | (v & 0xff);
        v >>= 8;
    }
    return r;
}

/* One load/store of the function being dumped; nothing is printed, the
 * outcome stays in last_cc / pgm_code for tok(). */
static int last_cc;

static u64 ld(int as, u64 off, int len)
{
    u64 req = ZREQ(fh, as, len), v;
    last_cc = pcilg(&v, &req, off);
    return v;
}

static void st(int as, u64 off, int len, u64 v)
{
    u64 req = ZREQ(fh, as, len);
    last_cc = pcistg(v, &req, off);
}

static void tok(u64 v, int len)
{
    if (pgm_code) {
        puts_("pgm");
        hex(pgm_code & 0xff, 2);
    } else if (last_cc) {
        puts_("cc");
        hex((u64)last_cc, 1);
    } else {
        hex(v, 2 * len);
    }
}

static void head(char kind)
{
    putc_(kind);
    putc_(' ');
    hex((u64)fnum, 1);
    putc_(' ');
}

/* config space (little-endian value of the bytes, as the model keeps it) */
static u32 cfg32(u32 off) { return (u32)bswap(ld(PCIAS_CFG, off, 4), 4); }
static u8 cfg8(u32 off) { return (u8)ld(PCIAS_CFG, off, 1); }

/* BAR access with a little-endian value (virtio registers are LE) */
static u64 bar_le(int bar, u64 off, int len) { return bswap(ld(bar, off, len), len); }
static void bar_st_le(int bar, u64 off, int len, u64 v) { st(bar, off, len, bswap(v, len)); }

/* "<kind><n> b<bar>+<off> l<len>": the start of a register or matrix line */
static void loc(char kind, int bar, u64 off, int len)
{
    head(kind);
    puts_("b");
    hex((u64)bar, 1);
    putc_('+');
    hex(off, 4);
    puts_(" l");
    hex((u64)len, 1);
}

static void reg_head(int bar, u64 off, int len, const char *name)
{
    loc('B', bar, off, len);
    putc_(' ');
    puts_(name);
}

static void reg(int bar, u64 off, int len, const char *name)
{
    u64 v = ld(bar, off, len);
    reg_head(bar, off, len, name);
    puts_(" = ");
    tok(v, len);
    putc_('\n');
}

static void wreg(int bar, u64 off, int len, u64 leval, const char *name)
{
    bar_st_le(bar, off, len, leval);
    reg_head(bar, off, len, name);
    puts_(" <- ");
    hex(leval, 2 * len);
    puts_(" : ");
    tok(0, 0);
    putc_('\n');
}

/* write a register, then read it back */
static void wreg_reg(int bar, u64 off, int len, u64 leval, const char *name)
{
    wreg(bar, off, len, leval, name);
    reg(bar, off, len, name);
}

/* Every length 1..8 at every offset of the doubleword at bar+base. */
static void matrix(int bar, u64 base)
{
    for (int len = 1; len <= 8; len++) {
        loc('M', bar, base, len);
        putc_(':');
        for (int o = 0; o + len <= 8; o++) {
            u64 v = ld(bar, base + o, len);
            putc_(' ');
            tok(v, len);
        }
        putc_('\n');
    }
}

/* ---------------------------------------------------------------- config */

static void dump_config(void)
{
    for (u32 off = 0; off < 0x100; off += 16) {
        head('C');
        hex(off, 4);
        putc_(':');
        for (u32 i = 0; i < 16; i += 4) {
            u64 v = ld(PCIAS_CFG, off + i, 4);
            putc_(' ');
            tok(v, 4);
        }
        putc_('\n');
    }
    static const struct { u16 off; u8 len; } odd[] = {
        {0x00, 1}, {0x01, 1}, {0x02, 2}, {0x03, 1}, {0x06, 2}, {0x08, 1},
        {0x0e, 1}, {0x2c, 2}, {0x2e, 2}, {0x34, 1}, {0x3d, 1}, {0x3e, 2},
        {0x03, 2}, {0x01, 4}, {0xfe, 2}, {0xff, 1}, {0x100, 4}, {0x104, 4},
        {0x200, 1}, {0xffc, 4}, {0x1000, 4}, {0x1004, 1},
    };
    for (u32 i = 0; i < ARRAY_SIZE(odd); i++) {
        u64 v = ld(PCIAS_CFG, odd[i].off, odd[i].len);
        head('X');
        puts_("cfg+");
        hex(odd[i].off, 4);
        puts_(" l");
        hex(odd[i].len, 1);
        puts_(" = ");
        tok(v, odd[i].len);
        putc_('\n');
    }
}

/* Write mask: ones into each dword, read back, restore. */
static void dump_wmask(void)
{
    for (u32 off = 0; off < 0x100; off += 4) {
        u64 old = ld(PCIAS_CFG, off, 4);
        head('W');
        hex(off, 4);
        puts_(": ");
        tok(old, 4);
        st(PCIAS_CFG, off, 4, 0xffffffffUL);
        u64 ones = ld(PCIAS_CFG, off, 4);
        putc_(' ');
        tok(ones, 4);
        st(PCIAS_CFG, off, 4, old);
        u64 back = ld(PCIAS_CFG, off, 4);
        putc_(' ');
        tok(back, 4);
        putc_('\n');
    }
}

/* ------------------------------------------------------------ capabilities */

struct vcap { int present; u8 bar; u32 off, len, mult; u8 pos; };
static struct vcap vc[6];       /* by virtio cfg_type 1..5 */
static u8 msix_pos;
static u32 msix_n, msix_tbar, msix_toff, msix_pbar, msix_poff;

static void walk_caps(void)
{
    mset(vc, 0, sizeof vc);
    msix_pos = 0;
    u8 pos = cfg8(0x34) & 0xfc;
    for (int guard = 0; pos && guard < 48; guard++) {
        u8 id = cfg8(pos), next = cfg8(pos + 1) & 0xfc;
        if (id == 0x09) {
            u8 type = cfg8(pos + 3);
            if (type >= 1 && type <= 5) {
                vc[type].present = 1;
                vc[type].pos = pos;
                vc[type].bar = cfg8(pos + 4);
                vc[type].off = cfg32(pos + 8);
                vc[type].len = cfg32(pos + 12);
                if (type == 2)
                    vc[type].mult = cfg32(pos + 16);
            }
        } else if (id == 0x11) {
            msix_pos = pos;
            msix_n = (cfg32(pos) >> 16 & 0x7ff) + 1;
            u32 t = cfg32(pos + 4), p = cfg32(pos + 8);
            msix_tbar = t & 7;
            msix_toff = t & ~7u;
            msix_pbar = p & 7;
            msix_poff = p & ~7u;
        }
        pos = next;
    }
}

/* ---------------------------------------------------------------- MSI-X */

static void dump_msix(void)
{
    if (!msix_pos)
        return;
    int tb = (int)msix_tbar, pb = (int)msix_pbar;
    for (u32 v = 0; v < msix_n; v++) {
        u64 e = msix_toff + 16 * v;
        reg(tb, e + 0, 4, "msix.addr_lo");
        reg(tb, e + 4, 4, "msix.addr_hi");
        reg(tb, e + 8, 4, "msix.data");
        reg(tb, e + 12, 4, "msix.ctrl");
        reg(tb, e + 0, 8, "msix.addr");
        reg(tb, e + 8, 8, "msix.data_ctrl");
    }
    reg(tb, msix_toff + 16 * msix_n, 4, "msix.after_table");
    reg(pb, msix_poff, 4, "pba.0");
    reg(pb, msix_poff + 4, 4, "pba.4");
    reg(pb, msix_poff, 8, "pba.0_8");
    reg(pb, msix_poff + 8, 4, "pba.after");
    reg(pb, msix_poff - 4, 4, "pba.before");
    matrix(tb, msix_toff);
    matrix(tb, msix_toff + 8);
    matrix(pb, msix_poff);
    /* round trips on the last vector (unmasking an entry with no message
     * pending has no other effect) */
    u64 e = msix_toff + 16 * (msix_n - 1);
    wreg_reg(tb, e + 0, 4, 0x12345678, "msix.addr_lo");
    wreg(tb, e + 4, 4, 0x9abcdef0, "msix.addr_hi");
    reg(tb, e + 0, 8, "msix.addr");
    wreg(tb, e + 8, 4, 0xffffffff, "msix.data");
    wreg(tb, e + 12, 4, 0xfffffffe, "msix.ctrl");
    reg(tb, e + 8, 8, "msix.data_ctrl");
    wreg(tb, e + 8, 2, 0xbeef, "msix.data");
    wreg(tb, e + 10, 1, 0x55, "msix.data");
    reg(tb, e + 8, 4, "msix.data");
    wreg_reg(tb, e + 8, 8, 0x0000000100000000UL, "msix.data_ctrl");
    wreg_reg(tb, e + 0, 8, 0, "msix.addr");
    wreg_reg(pb, msix_poff, 4, 0xffffffff, "pba.0");
}

/* ---------------------------------------------------------------- legacy */

static void dump_legacy(u32 size)
{
    reg(0, 0, 4, "host_features");
    reg(0, 4, 4, "guest_features");
    reg(0, 8, 4, "queue_pfn");
    reg(0, 12, 2, "queue_num");
    reg(0, 14, 2, "queue_sel");
    reg(0, 16, 2, "queue_notify");
    reg(0, 18, 1, "status");
    reg(0, 19, 1, "isr");
    reg(0, 20, 2, "config_vector");
    reg(0, 22, 2, "queue_vector");
    for (u32 o = 20; o < size; o++)
        reg(0, o, 1, "dev");
    reg(0, size, 1, "beyond");
    for (u32 o = 0; o < size; o += 8)
        matrix(0, o);
    /* queue selection and round trips */
    for (u32 q = 0; q < 4; q++) {
        wreg(0, 14, 2, q, "queue_sel");
        reg(0, 12, 2, "queue_num");
        reg(0, 8, 4, "queue_pfn");
        reg(0, 22, 2, "queue_vector");
    }
    wreg(0, 14, 2, 0, "queue_sel");
    wreg_reg(0, 20, 2, 0, "config_vector");
    wreg_reg(0, 20, 2, 0x7ff, "config_vector");
    wreg_reg(0, 22, 2, 1, "queue_vector");
    wreg_reg(0, 22, 2, 0xffff, "queue_vector");
    wreg(0, 20, 2, 0xffff, "config_vector");
    wreg_reg(0, 4, 4, 0xffffffff, "guest_features");
    wreg_reg(0, 18, 1, 1, "status");
    wreg_reg(0, 18, 1, 0, "status");
    reg(0, 4, 4, "guest_features");
}

/* ---------------------------------------------------------------- modern */

static void common_fields(int b, u64 c)
{
    reg(b, c + 0x00, 4, "dfselect");
    reg(b, c + 0x04, 4, "df");
    reg(b, c + 0x08, 4, "gfselect");
    reg(b, c + 0x0c, 4, "gf");
    reg(b, c + 0x10, 2, "msix_config");
    reg(b, c + 0x12, 2, "num_queues");
    reg(b, c + 0x14, 1, "status");
    reg(b, c + 0x15, 1, "config_generation");
    reg(b, c + 0x16, 2, "queue_select");
    reg(b, c + 0x18, 2, "queue_size");
    reg(b, c + 0x1a, 2, "queue_msix_vector");
    reg(b, c + 0x1c, 2, "queue_enable");
    reg(b, c + 0x1e, 2, "queue_notify_off");
    reg(b, c + 0x20, 4, "queue_desc_lo");
    reg(b, c + 0x24, 4, "queue_desc_hi");
    reg(b, c + 0x28, 4, "queue_avail_lo");
    reg(b, c + 0x2c, 4, "queue_avail_hi");
    reg(b, c + 0x30, 4, "queue_used_lo");
    reg(b, c + 0x34, 4, "queue_used_hi");
    reg(b, c + 0x38, 4, "after");
}

static void dump_modern(void)
{
    if (!vc[1].present)
        return;
    int b = vc[1].bar;
    u64 c = vc[1].off;
    common_fields(b, c);
    for (u32 sel = 0; sel < 3; sel++) {
        wreg(b, c + 0x00, 4, sel, "dfselect");
        reg(b, c + 0x04, 4, "df");
    }
    wreg(b, c + 0x00, 4, 0, "dfselect");
    for (u32 sel = 0; sel < 3; sel++) {
        wreg(b, c + 0x08, 4, sel, "gfselect");
        reg(b, c + 0x0c, 4, "gf");
    }
    wreg(b, c + 0x08, 4, 0, "gfselect");
    u32 nq = (u32)bar_le(b, c + 0x12, 2);
    for (u32 q = 0; q <= nq && q < 8; q++) {
        wreg(b, c + 0x16, 2, q, "queue_select");
        reg(b, c + 0x18, 2, "queue_size");
        reg(b, c + 0x1a, 2, "queue_msix_vector");
        reg(b, c + 0x1c, 2, "queue_enable");
        reg(b, c + 0x1e, 2, "queue_notify_off");
    }
    wreg(b, c + 0x16, 2, 0x400, "queue_select");       /* VIRTIO_QUEUE_MAX: ignored */
    reg(b, c + 0x16, 2, "queue_select");
    wreg(b, c + 0x16, 2, 0, "queue_select");
    /* round trips */
    wreg(b, c + 0x20, 4, 0x11223344, "queue_desc_lo");
    wreg(b, c + 0x24, 4, 0x55667788, "queue_desc_hi");
    wreg(b, c + 0x28, 4, 0x99aabbcc, "queue_avail_lo");
    wreg(b, c + 0x34, 4, 0xddeeff00, "queue_used_hi");
    reg(b, c + 0x20, 8, "queue_desc");
    reg(b, c + 0x28, 8, "queue_avail");
    reg(b, c + 0x30, 8, "queue_used");
    wreg_reg(b, c + 0x20, 8, 0, "queue_desc");
    wreg_reg(b, c + 0x18, 2, 0x40, "queue_size");
    wreg_reg(b, c + 0x18, 2, 0x0, "queue_size");
    wreg_reg(b, c + 0x18, 2, 0x1000, "queue_size");
    wreg_reg(b, c + 0x18, 2, 0x100, "queue_size");
    wreg_reg(b, c + 0x10, 2, 0, "msix_config");
    wreg_reg(b, c + 0x10, 2, msix_n, "msix_config");
    wreg_reg(b, c + 0x1a, 2, 1, "queue_msix_vector");
    wreg_reg(b, c + 0x1a, 2, 0xffff, "queue_msix_vector");
    wreg(b, c + 0x10, 2, 0xffff, "msix_config");
    wreg_reg(b, c + 0x14, 1, 3, "status");
    wreg_reg(b, c + 0x14, 1, 0, "status");
    wreg(b, c + 0x00, 1, 1, "dfselect");
    reg(b, c + 0x00, 4, "dfselect");
    wreg(b, c + 0x01, 1, 1, "dfselect+1");
    reg(b, c + 0x00, 4, "dfselect");
    wreg(b, c + 0x00, 8, 0x100000000UL, "dfselect_df");
    reg(b, c + 0x00, 4, "dfselect");
    wreg(b, c + 0x00, 4, 0, "dfselect");
    for (u64 o = 0; o < 0x40; o += 8)
        matrix(b, c + o);
    reg(b, c + 0xffc, 4, "common_end");
    reg(b, c + 0xffc, 8, "common_xend");
    if (vc[3].present) {
        reg(vc[3].bar, vc[3].off, 1, "isr");
        reg(vc[3].bar, vc[3].off + 1, 1, "isr+1");
        reg(vc[3].bar, vc[3].off, 4, "isr");
        matrix(vc[3].bar, vc[3].off);
        wreg_reg(vc[3].bar, vc[3].off, 1, 1, "isr");
    }
    if (vc[4].present) {
        for (u32 o = 0; o < 0x20; o++)
            reg(vc[4].bar, vc[4].off + o, 1, "dev");
        for (u32 o = 0; o < 0x10; o += 2)
            reg(vc[4].bar, vc[4].off + o, 2, "dev");
        for (u32 o = 0; o < 0x10; o += 4)
            reg(vc[4].bar, vc[4].off + o, 4, "dev");
        matrix(vc[4].bar, vc[4].off);
        matrix(vc[4].bar, vc[4].off + 8);
    }
    if (vc[2].present) {
        reg(vc[2].bar, vc[2].off, 2, "notify");
        reg(vc[2].bar, vc[2].off + vc[2].len - 4, 4, "notify_end");
        matrix(vc[2].bar, vc[2].off);
    }
    /* the VIRTIO_PCI_CAP_PCI_CFG window: bar/offset/length, then data */
    if (vc[5].present) {
        u8 p = vc[5].pos;
        st(PCIAS_CFG, p + 4, 1, vc[1].bar);
        st(PCIAS_CFG, p + 8, 4, bswap(c + 0x12, 4));
        st(PCIAS_CFG, p + 12, 4, bswap(2, 4));
        u64 v = ld(PCIAS_CFG, p + 16, 4);
        head('X');
        puts_("pcicfg num_queues l4 = ");
        tok(v, 4);
        putc_('\n');
        st(PCIAS_CFG, p + 12, 4, bswap(4, 4));
        st(PCIAS_CFG, p + 8, 4, bswap(c + 0x0, 4));
        st(PCIAS_CFG, p + 16, 4, bswap(1, 4));
        v = ld(PCIAS_CFG, p + 16, 2);
        head('X');
        puts_("pcicfg dfselect<-1 l2 = ");
        tok(v, 2);
        putc_('\n');
        reg(b, c, 4, "dfselect");
        wreg(b, c, 4, 0, "dfselect");
        st(PCIAS_CFG, p + 8, 4, 0);
        st(PCIAS_CFG, p + 12, 4, 0);
        st(PCIAS_CFG, p + 16, 4, 0);
        st(PCIAS_CFG, p + 4, 1, 0);
    }
}

/* ---------------------------------------------------------------- driver run */

#define STATUS_ACK 1
#define STATUS_DRIVER 2
#define STATUS_DRIVER_OK 4
#define STATUS_FEATURES_OK 8

#define QSZ 8
struct vring_mem {
    u8 desc[QSZ * 16];
    u8 avail[4 + 2 * QSZ + 2];
    u8 pad[4096 - QSZ * 16 - (6 + 2 * QSZ)];
    u8 used[4 + 8 * QSZ + 2];
};
static struct vring_mem ring ALIGNED(4096);
static u8 bufpage[4096] ALIGNED(4096);
static u8 rdonly_page[4096] ALIGNED(4096);
static u8 fib[128] ALIGNED(8);   /* STPCIFC stores an 80-byte FIB */

static void put16(u8 *p, u16 v) { p[0] = (u8)v; p[1] = (u8)(v >> 8); }
static void put32(u8 *p, u32 v) { put16(p, (u16)v); put16(p + 2, (u16)(v >> 16)); }
static void put64(u8 *p, u64 v) { put32(p, (u32)v); put32(p + 4, (u32)(v >> 32)); }
static u16 get16(const volatile u8 *p) { return (u16)(p[0] | (p[1] << 8)); }
static u32 get32(const volatile u8 *p) { return get16(p) | ((u32)get16(p + 2) << 16); }

static u64 iova_base;   /* 0 when DMA is untranslated */
static int translated;

static u64 dmaaddr(const void *p)
{
    if (!translated)
        return (u64)p;
    /* ring page, buffer page, read-only page: consecutive IOVA pages */
    if ((const u8 *)p >= (const u8 *)&ring && (const u8 *)p < (const u8 *)&ring + sizeof ring)
        return iova_base + ((const u8 *)p - (const u8 *)&ring);
    if ((const u8 *)p >= bufpage && (const u8 *)p < bufpage + 4096)
        return iova_base + 0x2000 + ((const u8 *)p - bufpage);
    return iova_base + 0x3000 + ((const u8 *)p - rdonly_page);
}

static void state_line(const char *what)
{
    u64 r1 = ZREQ(fh, 0, 0);
    mset(fib, 0, sizeof fib);
    int cc = stpcifc(&r1, fib);
    head('S');
    puts_(what);
    puts_(" cc=");
    hex((u64)cc, 1);
    puts_(" fc=");
    hex(fib[8], 2);
    putc_('\n');
}

/* MPCIFC `oc` (dmaas 0, the shared fib) and RPCIT on the function being
 * dumped; only the cc of REG_INT is printed. */
static int fn_ctl(u8 oc)
{
    u64 r1 = ZREQ(fh, 0, oc);
    return mpcifc(&r1, fib);
}

static void refresh(u64 iova, u64 len)
{
    u64 r1 = ZREQ(fh, 0, 0);
    rpcit(&r1, iova, len);
}

static u16 avail_idx, used_seen, next_desc;

static u16 add_desc(u64 addr, u32 len, u16 flags)
{
    u16 slot = next_desc++ % QSZ;
    u8 *d = ring.desc + 16 * slot;
    put64(d, addr);
    put32(d + 8, len);
    put16(d + 12, flags);
    put16(d + 14, 0);
    return slot;
}

static void chain(u16 a, u16 b)
{
    u8 *d = ring.desc + 16 * a;
    put16(d + 12, (u16)(get16(d + 12) | 1));
    put16(d + 14, b);
}

static void publish(u16 head_slot)
{
    put16(ring.avail + 4 + 2 * (avail_idx % QSZ), head_slot);
    avail_idx++;
    mb();
    put16(ring.avail + 2, avail_idx);
    mb();
}

static void post(u64 addr, u32 len, u16 flags)
{
    publish(add_desc(addr, len, flags));
}

/* After a completion was seen (or not): a little longer, so a late one shows
 * up the same way, and the ring is read again afterwards. */
static void settle(void)
{
    for (volatile u32 i = 0; i < 2000000; i++)
        ;
    barrier();
}

/* Wait for the device (QEMU completes from a bottom half, asynchronously). */
static void wait_used(void)
{
    for (u32 i = 0; i < 40000000; i++) {
        if (get16(ring.used + 2) != used_seen)
            break;
        barrier();
    }
    settle();
}

static void used_line(const char *what, const u8 *buf, u32 n)
{
    u16 idx = get16(ring.used + 2);
    head('E');
    puts_(what);
    puts_(" used_idx=");
    hex(idx, 4);
    if (idx != used_seen) {
        u16 slot = (u16)((idx - 1) % QSZ);
        puts_(" id=");
        hex(get32(ring.used + 4 + 8 * slot), 4);
        puts_(" len=");
        hex(get32(ring.used + 8 + 8 * slot), 8);
    }
    if (buf) {
        u32 nz = 0;
        for (u32 i = 0; i < n; i++)
            nz |= buf[i];
        puts_(" written=");
        hex(nz != 0, 1);
    }
    putc_('\n');
    used_seen = idx;
}

static void notify(u32 q)
{
    st(vc[2].bar, vc[2].off + (u64)q * vc[2].mult, 2, bswap(q, 2));
}

static int verbose_setup;

static void setup_queue(u16 q, int want_platform)
{
    int b = vc[1].bar;
    u64 c = vc[1].off;
    mset(&ring, 0, sizeof ring);
    avail_idx = used_seen = next_desc = 0;
    bar_st_le(b, c + 0x14, 1, 0);
    if (verbose_setup && want_platform) {
        /* features without ACCESS_PLATFORM: FEATURES_OK must not stick
         * when the device requires it */
        bar_st_le(b, c + 0x14, 1, STATUS_ACK | STATUS_DRIVER);
        bar_st_le(b, c + 0x08, 4, 1);
        bar_st_le(b, c + 0x0c, 4, 1);
        bar_st_le(b, c + 0x14, 1, STATUS_ACK | STATUS_DRIVER | STATUS_FEATURES_OK);
        head('E');
        puts_("version1_only status=");
        hex(bar_le(b, c + 0x14, 1), 2);
        putc_('\n');
        bar_st_le(b, c + 0x14, 1, 0);
    }
    bar_st_le(b, c + 0x14, 1, STATUS_ACK | STATUS_DRIVER);
    bar_st_le(b, c + 0x08, 4, 0);
    bar_st_le(b, c + 0x0c, 4, 0);
    bar_st_le(b, c + 0x08, 4, 1);
    bar_st_le(b, c + 0x0c, 4, want_platform ? 3 : 1);    /* VERSION_1 (+ACCESS_PLATFORM) */
    bar_st_le(b, c + 0x14, 1, STATUS_ACK | STATUS_DRIVER | STATUS_FEATURES_OK);
    if (verbose_setup) {
        head('E');
        puts_("features_ok status=");
        hex(bar_le(b, c + 0x14, 1), 2);
        putc_('\n');
    }
    bar_st_le(b, c + 0x16, 2, q);
    bar_st_le(b, c + 0x18, 2, QSZ);
    bar_st_le(b, c + 0x20, 8, dmaaddr(ring.desc));
    bar_st_le(b, c + 0x28, 8, dmaaddr(ring.avail));
    bar_st_le(b, c + 0x30, 8, dmaaddr(ring.used));
    bar_st_le(b, c + 0x1c, 2, 1);
    bar_st_le(b, c + 0x14, 1, STATUS_ACK | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    if (verbose_setup) {
        head('E');
        puts_("driver_ok status=");
        hex(bar_le(b, c + 0x14, 1), 2);
        puts_(" q_enable=");
        hex(bar_le(b, c + 0x1c, 2), 4);
        putc_('\n');
    }
}

static void isr_line(void)
{
    u64 v = ld(vc[3].bar, vc[3].off, 1);
    head('E');
    puts_("isr=");
    tok(v, 1);
    v = ld(vc[1].bar, vc[1].off + 0x14, 1);
    puts_(" status=");
    tok(v, 1);
    puts_(" gen=");
    v = ld(vc[1].bar, vc[1].off + 0x15, 1);
    tok(v, 1);
    putc_('\n');
}

static void set_master(int on)
{
    st(PCIAS_CFG, 4, 2, bswap(on ? 0x0006 : 0x0002, 2));
}

static u16 drv_q;

/* One independent case: a fresh device set-up, one buffer, notify, wait. */
static void run_case(const char *name, u64 addr, u32 len, u16 flags, const u8 *buf, u32 n)
{
    setup_queue(drv_q, translated);
    if (buf)
        mset((void *)buf, 0, n);
    post(addr, len, flags);
    notify(drv_q);
    wait_used();
    used_line(name, buf, n);
    if (translated) {
        state_line(name);
        fn_ctl(MPCIFC_RESET_ERROR);
    }
    isr_line();
}

/* The ring, buffer page and (with `rdonly`) the read-only page mapped, the
 * IOAT registered and the first three pages refreshed, so a fourth page
 * stays unrefreshed. */
static void dma_register(int rdonly)
{
    dma_map(iova_base, &ring, 0);
    dma_map(iova_base + 0x1000, (u8 *)&ring + 0x1000, 0);
    dma_map(iova_base + 0x2000, bufpage, 0);
    if (rdonly)
        dma_map(iova_base + 0x3000, rdonly_page, 0);
    u64 r1;
    zpci_reg_ioat(fh, iova_base, iova_base + DMA_WINDOW_SIZE - 1, &r1);
    refresh(iova_base, 0x3000);
}

/* Whether the device's DMA is translated (ACCESS_PLATFORM, bit 33, offered),
 * printed after `tag`; if so, fresh tables and dma_register(rdonly). */
static void dma_setup(const struct zpci_dev *d, const char *tag, int rdonly)
{
    bar_st_le(vc[1].bar, vc[1].off, 4, 1);
    translated = (bar_le(vc[1].bar, vc[1].off + 4, 4) >> 1) & 1;
    bar_st_le(vc[1].bar, vc[1].off, 4, 0);
    head('E');
    puts_(tag);
    hex((u64)translated, 1);
    putc_('\n');
    if (!translated)
        return;
    iova_base = d->info.sdma;
    dma_init(iova_base);
    dma_register(rdonly);
}

static void run_driver(u16 device, const struct zpci_dev *d)
{
    int rng = device == 0x1005 || device == 0x1044;
    int net = device == 0x1000 || device == 0x1041;
    if ((!rng && !net) || !vc[1].present || !vc[2].present || !vc[3].present)
        return;
    dma_setup(d, "access_platform=", 1);
    if (translated)
        state_line("ioat");
    set_master(1);
    drv_q = rng ? 0 : 1;                      /* virtio-net: transmitq0 */
    u16 wr = rng ? 2 : 0;                     /* the buffers the device uses */

    /* a good buffer; rng fills it, net sends a 12-byte header + 62-byte frame */
    verbose_setup = 1;
    setup_queue(drv_q, translated);
    verbose_setup = 0;
    mset(bufpage, 0, sizeof bufpage);
    for (int i = 0; net && i < 74; i++)
        bufpage[i] = (u8)i;
    post(dmaaddr(bufpage), rng ? 64 : 74, wr);
    notify(drv_q);
    wait_used();
    used_line("good", rng ? bufpage : 0, 64);
    isr_line();
    isr_line();

    /* a chain of two buffers */
    mset(bufpage, 0, 0x100);
    {
        u16 a = add_desc(dmaaddr(bufpage), rng ? 8 : 12, wr);
        u16 b2 = add_desc(dmaaddr(bufpage + 0x100), rng ? 24 : 60, wr);
        chain(a, b2);
        publish(a);
    }
    notify(drv_q);
    wait_used();
    used_line("chain", rng ? bufpage : 0, 0x200);
    isr_line();

    /* the buffer of the wrong direction */
    run_case("wrong_direction", dmaaddr(bufpage), 16, rng ? 0 : 2, rng ? bufpage : 0, 16);
    /* a zero-length buffer */
    run_case("zero_length", dmaaddr(bufpage), 0, wr, 0, 0);
    /* (a virtio-net TX buffer shorter than the 12-byte header makes QEMU 7.2
     * abort in iov_copy when the NIC has no peer: not probed) */
    if (translated) {
        /* valid in the table but never refreshed by RPCIT: not in the IOTLB */
        run_case("not_refreshed", dmaaddr(rdonly_page), 16, wr, rng ? rdonly_page : 0, 16);
        /* refreshed read-only page */
        dma_map(iova_base + 0x3000, rdonly_page, 1);
        refresh(iova_base + 0x3000, 0x1000);
        run_case("protected", dmaaddr(rdonly_page), 16, wr, rng ? rdonly_page : 0, 16);
        /* outside the registered range */
        run_case("out_of_range", iova_base + DMA_WINDOW_SIZE + 0x1000, 16, wr, 0, 0);
        /* the ring itself unrefreshed: the avail ring reads fail */
        setup_queue(drv_q, translated);
        dma_unmap(iova_base);
        refresh(iova_base, 0x1000);
        post(dmaaddr(bufpage), 16, wr);
        notify(drv_q);
        wait_used();
        used_line("ring_unmapped", rng ? bufpage : 0, 16);
        state_line("ring_unmapped");
        fn_ctl(MPCIFC_RESET_ERROR);
        isr_line();
        dma_map(iova_base, &ring, 0);
        refresh(iova_base, 0x1000);
    } else {
        /* guest-absolute address beyond the 256 MiB of memory */
        run_case("beyond_memory", 0x20000000UL, 16, wr, 0, 0);
    }

    /* bus master off: the device is disabled and DRIVER_OK drops */
    setup_queue(drv_q, translated);
    set_master(0);
    isr_line();
    mset(bufpage, 0, 16);
    post(dmaaddr(bufpage), 16, wr);
    notify(drv_q);
    wait_used();
    used_line("no_master", rng ? bufpage : 0, 16);
    isr_line();
    /* bus master back on: still no DRIVER_OK, nothing happens until set */
    set_master(1);
    notify(drv_q);
    wait_used();
    used_line("master_again", rng ? bufpage : 0, 16);
    bar_st_le(vc[1].bar, vc[1].off + 0x14, 1,
              STATUS_ACK | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    wait_used();
    used_line("driver_ok_again", rng ? bufpage : 0, 16);
    notify(drv_q);
    wait_used();
    used_line("notify_again", rng ? bufpage : 0, 16);
    isr_line();
    /* reset */
    bar_st_le(vc[1].bar, vc[1].off + 0x14, 1, 0);
    isr_line();
    common_fields(vc[1].bar, vc[1].off);
    set_master(0);
    if (translated)
        fn_ctl(MPCIFC_DEREG_IOAT);
}

/* ---------------------------------------------------------------- virtio-blk requests */

/* One request in bufpage: the 16-byte header at 0, data at 0x100 (device-readable
 * for OUT, DISCARD and WRITE_ZEROES, device-writable otherwise), the status byte
 * at 0xff0.  Printed: used entry, status, and the first 8 bytes and the byte sum
 * of the data buffer. */
static void blk_req(const char *name, u32 type, u64 sector, u32 dlen, int data_in)
{
    u8 *hdr = bufpage, *data = bufpage + 0x100, *status = bufpage + 0xff0;
    put32(hdr, type);
    put32(hdr + 4, 0);
    put64(hdr + 8, sector);
    *status = 0xee;
    u16 a = add_desc(dmaaddr(hdr), 16, 0), last = a;
    if (dlen) {
        u16 d = add_desc(dmaaddr(data), dlen, data_in ? 2 : 0);
        chain(last, d);
        last = d;
    }
    u16 s = add_desc(dmaaddr(status), 1, 2);
    chain(last, s);
    publish(a);
    notify(drv_q);
    wait_used();
    used_line(name, 0, 0);
    u32 sum = 0;
    for (u32 i = 0; i < dlen; i++)
        sum += data[i];
    head('E');
    puts_(name);
    puts_(" status=");
    hex(*status, 2);
    puts_(" head=");
    hex(get32(data) | (u64)get32(data + 4) << 32, 16);
    puts_(" sum=");
    hex(sum, 8);
    putc_('\n');
}

static void blk_fill(u32 n, u8 v)
{
    mset(bufpage + 0x100, v, n);
}

static void blk_dwz(u64 sector, u32 num, u32 flags)
{
    put64(bufpage + 0x100, sector);
    put32(bufpage + 0x108, num);
    put32(bufpage + 0x10c, flags);
}

static void run_blk(u16 device, const struct zpci_dev *d)
{
    if ((device != 0x1001 && device != 0x1042) || !vc[1].present || !vc[2].present || !vc[3].present)
        return;
    dma_setup(d, "blk access_platform=", 0);
    set_master(1);
    drv_q = 0;
    verbose_setup = 1;
    setup_queue(0, translated);
    verbose_setup = 0;
    /* VERSION_1 negotiated: the configuration is little-endian now */
    u64 cap = bar_le(vc[4].bar, vc[4].off, 4) | bar_le(vc[4].bar, vc[4].off + 4, 4) << 32;
    head('E');
    puts_("capacity=");
    hex(cap, 16);
    putc_('\n');
    blk_fill(0x400, 0);
    blk_req("get_id", 8, 0, 20, 1);
    blk_fill(0x400, 0);
    blk_req("get_id_short", 8, 0, 4, 1);
    blk_fill(0x400, 0);
    blk_req("read0", 0, 0, 512, 1);
    blk_fill(0x400, 0);
    blk_req("read7", 0, 7, 1024, 1);
    blk_fill(0x200, 0x5a);
    blk_req("write3", 1, 3, 512, 0);
    blk_fill(0x400, 0);
    blk_req("read3", 0, 3, 512, 1);
    blk_req("flush", 4, 0, 0, 0);
    blk_fill(0x400, 0);
    blk_req("beyond", 0, cap, 512, 1);
    blk_req("last", 0, cap - 2, 1024, 1);
    blk_fill(0x400, 0);
    blk_req("partial", 0, 0, 100, 1);
    blk_req("sector_one", 0, 1, 1024, 1);
    blk_req("scsi_cmd", 2, 0, 0, 0);
    blk_req("lifetime", 10, 0, 0, 0);
    blk_req("unknown", 0x20, 0, 0, 0);
    blk_dwz(0, 8, 0);
    blk_req("discard", 11, 0, 16, 0);
    blk_dwz(0, 8, 1);
    blk_req("discard_unmap", 11, 0, 16, 0);
    blk_dwz(3, 1, 0);
    blk_req("write_zeroes", 13, 0, 16, 0);
    blk_fill(0x400, 0);
    blk_req("read3_again", 0, 3, 512, 1);
    blk_dwz(3, 1, 2);
    blk_req("wz_bad_flag", 13, 0, 16, 0);
    blk_dwz(cap, 1, 0);
    blk_req("wz_beyond", 13, 0, 16, 0);
    blk_req("dwz_in", 12, 0, 16, 1);
    isr_line();
    bar_st_le(vc[1].bar, vc[1].off + 0x14, 1, 0);
    set_master(0);
    if (translated)
        fn_ctl(MPCIFC_DEREG_IOAT);
}

/* ---------------------------------------------------------------- legacy driver */

/* A virtio 0.9 driver over BAR0: rings in the device's byte order, which a
 * legacy device on s390x keeps big-endian. */
static u8 lring[4 * 4096] ALIGNED(4096);

static void lline(const char *what)
{
    head('L');
    puts_(what);
    putc_('\n');
}

static void run_legacy(u16 device)
{
    int rng = device == 0x1005;
    if (device != 0x1005 && device != 0x1000)
        return;
    u16 q = rng ? 0 : 1;
    bar_st_le(0, 18, 1, 0);                      /* reset */
    bar_st_le(0, 18, 1, STATUS_ACK | STATUS_DRIVER);
    reg(0, 4, 4, "guest_features");
    u64 cmd = ld(PCIAS_CFG, 4, 2);
    head('L');
    puts_("command after ACK|DRIVER = ");
    tok(cmd, 2);
    putc_('\n');
    bar_st_le(0, 4, 4, 0);
    bar_st_le(0, 14, 2, q);
    u32 num = (u32)bar_le(0, 12, 2);
    mset(lring, 0, sizeof lring);
    u8 *desc = lring, *avail = lring + 16 * num;
    u64 used_off = ((16 * num + 4 + 2 * num) + 4095) & ~4095UL;
    u8 *used = lring + used_off;
    bar_st_le(0, 8, 4, (u64)lring >> 12);
    head('L');
    puts_("queue_pfn_is_ring=");
    hex(bar_le(0, 8, 4) == (u64)lring >> 12, 1);
    putc_('\n');
    bar_st_le(0, 18, 1, STATUS_ACK | STATUS_DRIVER | STATUS_DRIVER_OK);
    mset(bufpage, 0, sizeof bufpage);
    for (int i = 0; !rng && i < 70; i++)
        bufpage[i] = (u8)i;
    st64(desc, (u64)bufpage);
    st32(desc + 8, rng ? 32 : 70);              /* 10-byte header + 60-byte frame */
    st16(desc + 12, rng ? 2 : 0);
    st16(avail + 4, 0);
    mb();
    st16(avail + 2, 1);
    mb();
    bar_st_le(0, 16, 2, q);
    for (u32 i = 0; i < 40000000 && be16(used + 2) == 0; i++)
        barrier();
    settle();
    head('L');
    puts_("used_idx=");
    hex(be16(used + 2), 4);
    puts_(" id=");
    hex(be32(used + 4), 4);
    puts_(" len=");
    hex(be32(used + 8), 8);
    if (rng) {
        u32 nz = 0;
        for (int i = 0; i < 32; i++)
            nz |= bufpage[i];
        puts_(" written=");
        hex(nz != 0, 1);
    }
    putc_('\n');
    reg(0, 19, 1, "isr");
    reg(0, 19, 1, "isr");
    /* with MSI-X enabled the vector registers appear and device config moves to 24 */
    if (msix_pos) {
        st(PCIAS_CFG, msix_pos + 3, 1, 0x80);
        lline("msix enabled");
        reg(0, 20, 2, "config_vector");
        reg(0, 22, 2, "queue_vector");
        wreg_reg(0, 20, 2, 0, "config_vector");
        wreg_reg(0, 22, 2, 1, "queue_vector");
        wreg_reg(0, 22, 2, 0x40, "queue_vector");
        for (u32 o = 24; o < 32; o++)
            reg(0, o, 1, "dev");
        reg(0, 24, 4, "dev");
        wreg(0, 20, 2, 0xffff, "config_vector");
        st(PCIAS_CFG, msix_pos + 3, 1, 0);
        lline("msix disabled");
        reg(0, 20, 2, "dev");
    }
    bar_st_le(0, 8, 4, 0);                       /* PFN 0: reset */
    reg(0, 18, 1, "status");
    reg(0, 8, 4, "queue_pfn");
    set_master(0);
}

/* ---------------------------------------------------------------- MSI-X delivery */

static u8 aibv[8] ALIGNED(8);
static u8 aisb[8] ALIGNED(8);

static void ind_line(const char *what)
{
    head('I');
    puts_(what);
    puts_(" aibv=");
    hex(aibv[0], 2);
    puts_(" aisb=");
    hex(aisb[0], 2);
    puts_(" pba=");
    tok(ld((int)msix_pbar, msix_poff, 4), 4);
    putc_('\n');
}

static void run_msi(u16 device, const struct zpci_dev *d)
{
    int rng = device == 0x1005 || device == 0x1044;
    if (!rng || !msix_pos || !vc[1].present)
        return;
    int b = vc[1].bar, tb = (int)msix_tbar;
    u64 c = vc[1].off;
    /* adapter interruptions: ISC 3, 2 interrupts, AIBV/AISB offsets 0 */
    mset(fib, 0, sizeof fib);
    st32(fib + 40, (3u << 28) | (2u << 16));
    st64(fib + 48, (u64)aibv);
    st64(fib + 56, (u64)aisb);
    int cc = fn_ctl(MPCIFC_REG_INT);
    head('S');
    puts_("reg_int cc=");
    hex((u64)cc, 1);
    putc_('\n');
    if (translated)
        dma_register(0);
    set_master(1);
    setup_queue(0, translated);
    /* vector 0: message to the group's MSI address, data = vector number */
    bar_st_le(tb, msix_toff + 0, 8, d->grp.msia);
    bar_st_le(tb, msix_toff + 8, 4, 0);
    wreg(b, c + 0x16, 2, 0, "queue_select");
    wreg_reg(b, c + 0x1a, 2, 0, "queue_msix_vector");
    st(PCIAS_CFG, msix_pos + 3, 1, 0x80);        /* MSI-X enable */
    ind_line("enabled_masked");
    post(dmaaddr(bufpage), 16, 2);
    notify(0);
    wait_used();
    used_line("msi_masked", 0, 0);
    ind_line("after_masked");
    bar_st_le(tb, msix_toff + 12, 4, 0);         /* unmask: the pending message goes */
    ind_line("after_unmask");
    aibv[0] = aisb[0] = 0;
    post(dmaaddr(bufpage), 16, 2);
    notify(0);
    wait_used();
    used_line("msi_unmasked", 0, 0);
    ind_line("after_unmasked");
    reg(vc[3].bar, vc[3].off, 1, "isr");
    aibv[0] = aisb[0] = 0;
    st(PCIAS_CFG, msix_pos + 3, 1, 0xc0);        /* function mask */
    post(dmaaddr(bufpage), 16, 2);
    notify(0);
    wait_used();
    used_line("msi_function_masked", 0, 0);
    ind_line("after_function_masked");
    st(PCIAS_CFG, msix_pos + 3, 1, 0x80);
    ind_line("after_function_unmask");
    aibv[0] = aisb[0] = 0;
    set_master(0);                               /* no bus master: no MSI, no DRIVER_OK */
    bar_st_le(b, c + 0x14, 1, STATUS_ACK | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    set_master(0);
    ind_line("no_master");
    set_master(1);
    bar_st_le(b, c + 0x14, 1, 0);
    st(PCIAS_CFG, msix_pos + 3, 1, 0);
    set_master(0);
    fn_ctl(MPCIFC_DEREG_INT);
    if (translated)
        fn_ctl(MPCIFC_DEREG_IOAT);
}

/* ---------------------------------------------------------------- main */

int main(void)
{
    static struct zpci_fn fns[MAXFN];
    u32 n = 0;
    u16 rsp;
    puts_("DEVDUMP start\n");
    if (clp_list(fns, MAXFN, &n, &rsp) || rsp != CLP_RSP_OK)
        fail("DEVDUMP", "CLP LIST PCI failed");
    for (u32 i = 0; i < n; i++) {
        static struct zpci_dev d;
        fnum = (int)i;
        puts_("F ");
        hex(i, 1);
        puts_(" vendor=");
        hex(fns[i].vendor, 4);
        puts_(" device=");
        hex(fns[i].device, 4);
        puts_(" fid=");
        hex(fns[i].fid, 8);
        putc_('\n');
        if (!(fns[i].config & 0x80000000u))
            continue;
        d.fn = fns[i];
        if (clp_query_fn(fns[i].fh, &d.info, &rsp) || rsp != CLP_RSP_OK)
            fail("DEVDUMP", "CLP QUERY PCI FUNCTION failed");
        for (int b = 0; b < 6; b++) {
            head('Q');
            puts_("bar");
            hex((u64)b, 1);
            putc_('=');
            hex(d.info.bar[b], 8);
            puts_(" size=");
            hex(d.info.bar_size[b], 2);
            putc_('\n');
        }
        if (clp_set(fns[i].fh, CLP_SET_ENABLE, 1, &fh, &rsp) || rsp != CLP_RSP_OK)
            fail("DEVDUMP", "CLP SET PCI FUNCTION enable failed");
        dump_config();
        dump_wmask();
        walk_caps();
        dump_msix();
        /* QEMU 7.2 crashes on a load from a BAR without a region: only
         * the BARs CLP reports with a size are touched */
        if (d.info.bar_size[0])
            dump_legacy(1u << d.info.bar_size[0]);
        dump_modern();
        if (clp_query_grp(d.info.pfgid, &d.grp, &rsp) || rsp != CLP_RSP_OK)
            fail("DEVDUMP", "CLP QUERY PCI FUNCTION GROUP failed");
        run_driver(fns[i].device, &d);
        run_blk(fns[i].device, &d);
        if (d.info.bar_size[0])
            run_legacy(fns[i].device);
        run_msi(fns[i].device, &d);
        u32 nfh;
        clp_set(fh, CLP_SET_DISABLE, 0, &nfh, &rsp);
    }
    done("DEVDUMP");
    return 0;
}
