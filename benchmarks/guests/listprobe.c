/*
 * CLP LIST PCI FUNCTIONS and QUERY PCI FUNCTION of every function, printed
 * one line each (tests/test_boot_priv.py): shows the order, fid, uid and
 * handle QEMU gives each -device configuration.  Links with start.S.
 */
typedef unsigned long u64;
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;

static u8 sccb[4096] __attribute__((aligned(4096)));
static u8 lpcb[4096] __attribute__((aligned(4096)));
static u8 list[4096];
static char buf[256];
static u32 n;

static void flush(void)
{
    for (u32 i = 0; i < 16; i++)
        sccb[i] = 0;
    u32 tot = 8 + 6 + n, el = 6 + n;
    sccb[0] = tot >> 8; sccb[1] = tot;
    sccb[8] = el >> 8; sccb[9] = el; sccb[10] = 0x1a;
    for (u32 i = 0; i < n; i++)
        sccb[14 + i] = buf[i];
    asm volatile(".insn rre,0xb2200000,%[cmd],%[blk]"
                 : : [cmd] "d"((u64)0x00760005), [blk] "a"(sccb) : "cc", "memory");
    n = 0;
}

static void s(const char *p) { while (*p) buf[n++] = *p++; }
static void h(u64 v, int d) { for (int i = d - 1; i >= 0; i--) buf[n++] = "0123456789abcdef"[(v >> (4 * i)) & 0xf]; }
static u16 be16(const u8 *p) { return (u16)(p[0] << 8 | p[1]); }
static u32 be32(const u8 *p) { return (u32)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }

static int clp(void)
{
    int cc;
    u64 ign = 0;
    asm volatile(".insn rrf,0xb9a00000,%[ign],%[req],0,0\n\tipm %[cc]\n\tsrl %[cc],28"
                 : [cc] "=d"(cc), [ign] "+d"(ign) : [req] "a"(lpcb) : "cc", "memory");
    return cc;
}

static void zero(void) { for (u32 i = 0; i < sizeof lpcb; i++) lpcb[i] = 0; }

void main(void)
{
    zero();
    lpcb[1] = 32; lpcb[3] = 2; lpcb[32] = 0x0f; lpcb[33] = 0xe0;
    int cc = clp();
    u32 len = be16(lpcb + 32);
    for (u32 i = 0; i < len && i < sizeof list; i++)
        list[i] = lpcb[32 + i];
    u32 count = len > 32 ? (len - 32) / 16 : 0;
    s("LIST cc="); h(cc, 1); s(" rsp="); h(be16(lpcb + 34), 4); s(" count="); h(count, 2);
    buf[n++] = '\n'; flush();
    for (u32 i = 0; i < count; i++) {
        const u8 *e = list + 32 + 16 * i;
        u32 fh = be32(e + 12);
        zero();
        lpcb[1] = 32; lpcb[3] = 3;
        lpcb[16] = fh >> 24; lpcb[17] = fh >> 16; lpcb[18] = fh >> 8; lpcb[19] = fh;
        lpcb[32] = 0x0f; lpcb[33] = 0xe0;
        cc = clp();
        s("FN device="); h(be16(e), 4); s(" vendor="); h(be16(e + 2), 4);
        s(" config="); h(be32(e + 4), 8); s(" fid="); h(be32(e + 8), 8); s(" fh="); h(fh, 8);
        s(" qcc="); h(cc, 1); s(" qfid="); h(be32(lpcb + 32 + 20), 8);
        s(" uid="); h(be32(lpcb + 32 + 0x7c), 8); buf[n++] = '\n'; flush();
    }
    s("LISTPROBE done\n"); flush();
}
